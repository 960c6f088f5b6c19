"""pytest plugin (entry point ``pytest11``): ``pytest --benchmark`` runs the live server benchmarks.

Without ``--benchmark``, tests marked ``live_benchmark`` are reported as skipped with the reason, so
a plain ``pytest`` stays fast. With it, the ``harness_session`` fixture makes one harness run per
test session (the same Runner as ``harness run``, the same rows), a benchmark test times it through
pytest-benchmark's ``benchmark.pedantic`` (one round per replay) and puts the domain figures in
``benchmark.extra_info``, and the gate of ``[tool.harness.gate]`` decides whether the test passes.
pytest-benchmark's own options (``--benchmark-save``, ``--benchmark-compare-fail``,
``--benchmark-json``, ...) work as usual: ``--benchmark`` is an exact option name of its own.

Options (defaults from ``[tool.harness]`` in pyproject.toml / harness.toml):
    --harness-servers a,b   --harness-scenarios x,y   --harness-model DIR   --harness-repeats N
    --harness-config FILE   --harness-out DIR          --harness-baseline RUN_DIR (gate baseline)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.cli.options import comma_list

SKIP_REASON = "live server benchmark: pass --benchmark to start the servers and run it"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "migration harness (live server benchmarks)")
    group.addoption(
        "--benchmark",
        action="store_true",
        default=False,
        dest="harness_benchmark",
        help="run the live_benchmark tests: start the servers, replay the scenarios, apply the gate",
    )
    group.addoption("--harness-servers", metavar="A,B", help="servers to compare (default: [tool.harness] servers)")
    group.addoption("--harness-scenarios", metavar="X,Y", help="scenario names or YAML paths")
    group.addoption("--harness-model", metavar="DIR", help="a local mlx-lm model folder (default: built-in)")
    group.addoption("--harness-repeats", metavar="N", type=int, help="replay each scenario N times per server")
    group.addoption("--harness-config", metavar="FILE", help="a harness.toml file")
    group.addoption("--harness-out", metavar="DIR", help="folder for the run folder (default: [tool.harness] out)")
    group.addoption("--harness-baseline", metavar="RUN_DIR", help="a saved run the gate compares ratios with")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "live_benchmark: benchmark that starts real servers (needs --benchmark)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("harness_benchmark"):
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if "live_benchmark" in item.keywords:
            item.add_marker(skip)


class HarnessSession:
    """One harness run for the whole test session. ``replay()`` performs it (the benchmarked
    target); ``run_dir`` performs it on first use when no benchmark did."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.events: list[str] = []
        self._runner: Any = None
        self._run_dir: Path | None = None

    def prepare(self) -> None:
        """Everything before the first request (validation, model build, run folder): not timed."""
        from harness.run.runner import Runner

        if self._runner is None:
            self._runner = Runner(self.config, on_event=self.events.append)

    def replay(self) -> Path:
        """Starts each server in turn, replays every scenario, stops it: one round."""
        from harness.server.process import stop_all

        if self._run_dir is not None:
            raise RuntimeError("the harness run of this session has already been replayed; benchmark it with rounds=1")
        self.prepare()
        try:
            self._run_dir = self._runner.run()
        finally:
            stop_all()
        return self._run_dir

    @property
    def run_dir(self) -> Path:
        return self._run_dir if self._run_dir is not None else self.replay()

    def load(self) -> tuple[Any, dict[str, Any]]:
        from harness.analysis.run_folder import load_run

        return load_run(self.run_dir)

    def gate(self, baseline: str | None = None) -> list[Any]:
        from harness.verdicts.gate import gate_run

        return gate_run(self.run_dir, self.config.gate, baseline)


@pytest.fixture(scope="session")
def harness_config(pytestconfig: pytest.Config) -> Any:
    """The RunConfig of the live benchmarks: [tool.harness] overlaid with the --harness-* options."""
    from harness.run.config import load_config

    option = pytestconfig.getoption
    overrides = {
        "servers": comma_list(option("harness_servers")),
        "scenarios": comma_list(option("harness_scenarios")),
        "model": option("harness_model"),
        "repeats": option("harness_repeats"),
        "out": option("harness_out"),
    }
    config_file = option("harness_config")
    return load_config(Path(config_file) if config_file else None, overrides, project_dir=pytestconfig.rootpath)


@pytest.fixture(scope="session")
def harness_session(harness_config: Any):
    """The session's single harness run (not started until a test replays it or asks for run_dir)."""
    from harness.server.process import stop_all

    session = HarnessSession(harness_config)
    session.prepare()
    try:
        yield session
    finally:
        stop_all()


@pytest.fixture(scope="session")
def harness_baseline(pytestconfig: pytest.Config) -> str | None:
    return pytestconfig.getoption("harness_baseline")


def _num(value: Any) -> float | None:
    from harness.core.formatting import is_nan

    return None if is_nan(value) else round(float(value), 6)


def benchmark_figures(summary: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """The domain figures of a run for ``benchmark.extra_info`` (JSON-safe: NaN becomes null)."""
    from harness.analysis.summary import ALL

    scenario = summary.headline
    figures: dict[str, Any] = {
        "run_id": meta.get("run_id"),
        "model": (meta.get("model") or {}).get("name"),
        "scenario": scenario,
        "reference": summary.reference,
        "like_for_like": summary.like_for_like,
        "status": meta.get("status"),
        "servers": {},
        "ratios": {},
        "conformance": {},
    }
    for server in summary.servers:
        cache = summary.cache_for(server, ALL)
        fails = summary.failures_for(server, ALL)
        figures["servers"][server] = {
            "first_total_s": _num(summary.stat(scenario, server, "first_total_s")["median"]),
            "follow_up_total_s": _num(summary.stat(scenario, server, "follow_up_total_s")["median"]),
            "completion_tokens": _num(summary.stat(scenario, server, "completion_tokens")["median"]),
            "cache_files": int(cache.get("files_created") or 0),
            "cache_bytes": int(cache.get("bytes_created") or 0),
            "cache_reuse_seen": int(cache.get("reuse_seen") or 0),
            "requests": int(fails.get("requests") or 0),
            "errors": int(fails.get("errors") or 0),
            "rows_failing_checks": int(fails.get("check_failures") or 0),
            "answered_without_generation": int(fails.get("no_generation") or 0),
            "prompt_tok_s": _num(summary.stat(scenario, server, "prompt_tok_s")["median"]),
        }
    names = ("speedup_first", "speedup_follow_up", "speedup_restart", "speedup_prompt", "speedup_decode")
    for server in summary.others:
        figures["ratios"][server] = {
            name: _num((summary.ratio(scenario, server, name) or {}).get("ratio")) for name in names
        }
        if summary.like_for_like and server in summary.candidates:
            figures["ratios"][server]["like_for_like"] = {
                name: _num((summary.headline_ratio(scenario, server, name) or {}).get("ratio")) for name in names
            }
        verdict = summary.verdicts.get(server)
        figures["conformance"][server] = {
            "drop_in": verdict.drop_in if verdict else None,
            "regressions": [f"{r.scenario} turn {r.turn}: {r.check}" for r in (verdict.regressions if verdict else [])][
                :20
            ],
            "compared": verdict.compared if verdict else 0,
        }
    return figures
