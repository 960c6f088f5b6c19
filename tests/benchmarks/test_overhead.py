"""What the harness itself costs: per request, against a local stub server that answers at once
(tests/stubs/instant_server.py), the request path of a run (harness.run.request.RequestExecutor: the
timed exchange, the conformance checks, the token count, the cache snapshot and reuse rule, and the
row written to results.jsonl) against a bare httpx loop sending the same body; streamed and not.
Target: at most 2 ms of overhead per request (median). And the peak resident memory of the harness
process during a short real run (target: at most 400 MB).

The two loops alternate request by request so that load from other processes hits both alike.
The figures go to pytest-benchmark's extra_info; the harness's path is also timed by the
``benchmark`` fixture itself. Fast and self-contained: part of the normal test suite.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from local_processes import STUB, instant_stub

from harness.capture import cachefiles
from harness.capture.http import ReplayLimits
from harness.core.rows import ResultWriter, read_rows
from harness.models.tokens import TokenCounter
from harness.run.request import RequestContext, RequestExecutor
from harness.scenario.definition import plan_requests, resolve_scenarios
from harness.server.process import ServerProcess
from harness.server.spec import ServerSpec

OVERHEAD_TARGET_MS = 2.0
RSS_TARGET_MB = 400
PAIRS = 300
WARMUP_PAIRS = 30


@pytest.fixture(scope="module")
def instant_url():
    with instant_stub() as url:
        yield url


@pytest.fixture(scope="module")
def planned():
    """A realistic request: agent-session's third turn (long system prompt, 16 tools, history)."""
    return plan_requests(resolve_scenarios(["agent-session"])[0])[2]


def _bare(client: httpx.Client, url: str, body: dict) -> None:
    if body["stream"]:
        with client.stream("POST", url, json=body) as response:
            for _ in response.iter_raw():
                pass
    else:
        client.post(url, json=body).read()


def _executor(instant_url: str, planned, folder: Path, writer: ResultWriter) -> RequestExecutor:
    """The request path of a run (harness.run.request) on the stub, declared as a remote server."""
    from harness.models.builtin import default_model_path

    spec = ServerSpec(name="instant", label="instant stub", base_url=instant_url)
    context = RequestContext(
        run_id="bench",
        run_dir=folder,
        server=ServerProcess(spec, default_model_path(), home=folder, log_path=folder / "none.log"),
        model_name="instant",
        scenario=resolve_scenarios([planned.scenario])[0],
        variant="stream" if planned.stream else "no-stream",
        repeat=0,
        tokens=TokenCounter(default_model_path() if default_model_path().is_dir() else None),
        limits=ReplayLimits(),
    )
    return RequestExecutor(context, writer.write)


def _harness(client: httpx.Client, executor: RequestExecutor, request, cache_dir: Path) -> None:
    """The per-request work of a run: cache snapshot, send, checks, count, row, reuse rule, row written."""
    before = cachefiles.snapshot([cache_dir])
    row = executor.send(client, request, "follow-up")
    executor.finish(row, before, cachefiles.snapshot([cache_dir]), log_text=None)


@pytest.mark.benchmark(group="harness-overhead")
@pytest.mark.parametrize("stream", [False, True], ids=["no-stream", "stream"])
def test_per_request_overhead(benchmark, instant_url, planned, stream, tmp_path):
    url = instant_url + "/v1/chat/completions"
    planned.stream = stream
    body = planned.body("instant")
    bare, harness = [], []
    with httpx.Client() as client, ResultWriter(tmp_path / "results.jsonl") as writer:
        executor = _executor(instant_url, planned, tmp_path, writer)
        for i in range(WARMUP_PAIRS + PAIRS):
            started = time.perf_counter()
            _bare(client, url, body)
            middle = time.perf_counter()
            _harness(client, executor, planned, tmp_path)
            ended = time.perf_counter()
            if i >= WARMUP_PAIRS:
                bare.append(middle - started)
                harness.append(ended - middle)
        benchmark.pedantic(
            _harness, args=(client, executor, planned, tmp_path), rounds=50, warmup_rounds=5, iterations=1
        )
    rows = read_rows(tmp_path)
    assert len(rows) >= WARMUP_PAIRS + PAIRS + 1 and all(row.http_status == 200 and not row.error for row in rows)
    bare_ms, harness_ms = statistics.median(bare) * 1e3, statistics.median(harness) * 1e3
    overhead_ms = harness_ms - bare_ms
    benchmark.extra_info.update(
        {
            "stream": stream,
            "requests": PAIRS,
            "request_body_bytes": len(httpx.Request("POST", url, json=body).content),
            "bare_httpx_median_ms": round(bare_ms, 3),
            "harness_median_ms": round(harness_ms, 3),
            "overhead_median_ms": round(overhead_ms, 3),
            "overhead_target_ms": OVERHEAD_TARGET_MS,
        }
    )
    print(
        f"\n{'stream' if stream else 'no-stream'}: bare httpx {bare_ms:.3f} ms, harness {harness_ms:.3f} ms, "
        f"overhead {overhead_ms:.3f} ms per request (median of {PAIRS})"
    )
    assert overhead_ms <= OVERHEAD_TARGET_MS, (
        f"the harness adds {overhead_ms:.2f} ms per request (bare {bare_ms:.2f} ms, harness {harness_ms:.2f} ms)"
    )


# The peak of the harness process alone. On Linux that is VmHWM: getrusage's ru_maxrss also keeps the
# peak of the process before its exec, i.e. of the forked copy of whichever test process started it
# (a pytest worker that has imported mlx and transformers weighs 600 MB). macOS has no /proc; its
# ru_maxrss is in bytes.
RSS_PROBE = textwrap.dedent("""
    import resource, sys
    from pathlib import Path
    from harness.cli.main import main
    code = main(sys.argv[1:])
    status = Path("/proc/self/status")
    if status.exists():
        peak_kb = int(next(line.split()[1] for line in status.read_text().splitlines() if line.startswith("VmHWM:")))
    else:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print("PEAK_RSS_KB", peak_kb, flush=True)
    print("HEAVY_IMPORTS", *sorted({"mlx", "torch", "transformers", "matplotlib", "pandas"} & set(sys.modules)))
    sys.exit(code)
""")


@pytest.mark.benchmark(group="harness-overhead")
def test_harness_process_peak_rss(benchmark, tmp_path):
    """`harness run --scenarios short-chat` (report included) against the stub, as a custom command
    server: the harness process's own peak RSS (servers are other processes)."""
    config = tmp_path / "harness.toml"
    config.write_text(
        textwrap.dedent(f"""
        [server.instant]
        label = "instant stub"
        command = ["{{python}}", "{STUB}", "--port", "{{port}}", "--host", "{{host}}"]
        ready_path = "/health"
    """)
    )
    command = [
        sys.executable,
        "-c",
        RSS_PROBE,
        "run",
        "--config",
        str(config),
        "--servers",
        "instant",
        "--reference",
        "instant",
        "--scenarios",
        "short-chat",
        "--out",
        str(tmp_path / "runs"),
    ]

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=300, cwd=str(tmp_path), env=dict(os.environ, COLUMNS="120")
        )

    done = benchmark.pedantic(run, rounds=1, iterations=1)
    assert done.returncode == 0, done.stderr[-2000:]
    peak_kb = int(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("PEAK_RSS_KB")))
    peak_mb = peak_kb / 1024
    benchmark.extra_info.update({"harness_peak_rss_mb": round(peak_mb, 1), "rss_target_mb": RSS_TARGET_MB})
    print(f"\nharness process peak RSS: {peak_mb:.0f} MB")
    heavy = next(line for line in done.stdout.splitlines() if line.startswith("HEAVY_IMPORTS"))
    assert peak_mb <= RSS_TARGET_MB, f"the harness process peaked at {peak_mb:.0f} MB ({heavy})"
