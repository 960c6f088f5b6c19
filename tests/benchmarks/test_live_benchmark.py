"""The live benchmark: `pytest --benchmark` starts the servers, replays the scenarios once (one
pytest-benchmark round), records the domain figures in extra_info and applies the CI gate.
Skipped, with the reason, without --benchmark."""

from __future__ import annotations

import pytest

from harness.cli.pytest_plugin import benchmark_figures
from harness.verdicts.gate import failed, verdict_line

pytestmark = pytest.mark.live_benchmark


@pytest.mark.benchmark(group="migration")
def test_migration_benchmark(benchmark, harness_session, harness_baseline):
    run_dir = benchmark.pedantic(harness_session.replay, rounds=1, iterations=1)
    summary, meta = harness_session.load()
    assert summary.n_rows, f"the run recorded no request: {run_dir}"
    benchmark.extra_info.update(benchmark_figures(summary, meta))
    benchmark.extra_info["run_dir"] = str(run_dir)

    results = harness_session.gate(harness_baseline)
    benchmark.extra_info["gate"] = [r.as_dict() for r in results]
    lines = "\n".join([*(r.line() for r in results), verdict_line(results)])
    print(f"\nrun folder: {run_dir}\n{lines}")
    if failed(results):
        pytest.fail(f"the gate failed for {run_dir}:\n{lines}", pytrace=False)
