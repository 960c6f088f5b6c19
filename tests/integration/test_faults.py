"""Faults injected with the fault-injecting test server: each ends as a recorded row or a clear
error, the run goes on, and no process the harness started is left alive afterwards.

The server under test is ``tests/faultserver/fault_server.py`` started by the harness itself, through
a custom server command, so start-up, readiness, process groups and stop are the real ones. Timeouts
are shortened through RunConfig so the whole file takes well under a few minutes. Each test records
the time the harness took to detect its fault and what the user sees (``figures``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from declared_servers import FAULT_SERVER, fault_command

from harness.capture.http import ReplayLimits, send
from harness.cli import main as cli
from harness.core.errors import ConfigError
from harness.core.rows import ResultRow, read_rows
from harness.models.builtin import default_model_path, model_checksum
from harness.run.config import RunConfig, ServerOverride
from harness.run.runner import Runner
from harness.server import process as servers
from harness.server.process import ServerProcess
from harness.server.spec import ServerSpec

pytestmark = pytest.mark.integration

HARNESS_BIN = Path(sys.executable).parent / "harness"


def fault_module():
    spec = importlib.util.spec_from_file_location("fault_server", FAULT_SERVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "Read",
            "description": "Read a file",
            "parameters": {"type": "object", "properties": {"file_path": {"type": "string"}}},
        },
    }
]


def scenario_file(
    tmp_path: Path, name: str = "fault-chat", turns: int = 2, stream: bool = True, tools: bool = False
) -> str:
    data: dict[str, Any] = {
        "name": name,
        "params": {"max_tokens": 8},
        "stream": stream,
        "system": "You are a test assistant.",
        "turns": [{"user": f"Question number {i}?", "reply": {"content": f"Answer {i}."}} for i in range(turns)],
    }
    if tools:
        data["tools"] = TOOLS
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


@dataclass
class Run:
    run_dir: Path
    rows: list[ResultRow]
    meta: dict[str, Any]
    events: list[tuple[float, str]] = field(default_factory=list)
    row_times: list[tuple[float, ResultRow]] = field(default_factory=list)

    def rows_of(self, server: str, scenario: str | None = None) -> list[ResultRow]:
        return [r for r in self.rows if r.server == server and (scenario is None or r.scenario == scenario)]

    def event_time(self, prefix: str) -> float:
        return next(t for t, message in self.events if message.startswith(prefix))

    def row_time(self, server: str) -> float:
        return next(t for t, row in self.row_times if row.server == server)


def run_faults(tmp_path: Path, server_commands: dict[str, list[str]], scenarios: list[str], **limits: Any) -> Run:
    """One in-process run of the harness against fault servers; returns the rows and run.json."""
    settings = {"ready_timeout_s": 10.0, "request_timeout_s": 5.0, "idle_timeout_s": 3.0, **limits}
    config = RunConfig(
        servers=list(server_commands),
        reference=next(iter(server_commands)),
        scenarios=scenarios,
        out=str(tmp_path / "reports"),
        server={name: ServerOverride(command=command) for name, command in server_commands.items()},
        **settings,
    )
    events: list[tuple[float, str]] = []
    row_times: list[tuple[float, ResultRow]] = []
    runner = Runner(
        config,
        on_event=lambda message: events.append((time.monotonic(), message)),
        on_row=lambda row: row_times.append((time.monotonic(), row)),
    )
    run_dir = runner.run()
    meta = json.loads((run_dir / "run.json").read_text())
    return Run(run_dir, read_rows(run_dir), meta, events, row_times)


def clean(row: ResultRow) -> bool:
    return row.error is None and row.http_status == 200 and not row.checks_failed and row.stop_cause is None


def figures(request, fault: str, detect_s: float, user_sees: str) -> None:
    """The figures of one fault: kept as test properties and printed (shown with ``pytest -rP``)."""
    request.node.user_properties += [
        ("fault", fault),
        ("time_to_detect_s", round(detect_s, 2)),
        ("user_sees", user_sees[:300]),
    ]
    print(f"fault figure | {fault} | {detect_s:.2f} s | {' '.join(user_sees.split())[:300]}")


# -- 1. the server exits during start-up ----------------------------------------------------------


def test_server_exits_during_startup(tmp_path, leftover_servers, request):
    chat = scenario_file(tmp_path)
    run = run_faults(
        tmp_path,
        {"broken": fault_command("exit-at-start"), "ok": fault_command("normal")},
        [chat],
        ready_timeout_s=30.0,
    )
    [row] = run.rows_of("broken")
    assert row.error.startswith("server failed to start: broken exited with code 1 during start-up")
    assert row.checks_failed == ["http.server_start"]
    # The log's last lines are in the error: the server's own message names the cause.
    assert "config.json is not valid JSON" in row.check_evidence["http.server_start"]
    shown = next(message for _, message in run.events if "exited with code 1" in message)
    assert "Last lines of" in shown and "config.json is not valid JSON" in shown
    detect = run.row_time("broken") - run.event_time("starting broken")
    assert detect < 5.0, "an exit must be seen at once, not at the 30 s readiness deadline"
    assert run.meta["servers"]["broken"]["notes"][0].startswith("start-up failed: broken exited with code 1")
    # The run goes on with the next server.
    ok = run.rows_of("ok")
    assert [r.turn for r in ok] == [0, 1] and all(clean(r) for r in ok), [r.check_evidence for r in ok]
    assert leftover_servers() == []
    figures(request, "1. exits during start-up", detect, row.error)


def test_real_server_exits_on_a_model_it_cannot_load(tmp_path, leftover_servers, request):
    """The real legacy stand-in on a model folder that passes the harness's checks but cannot load."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    for item in default_model_path().iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    chat = scenario_file(tmp_path, turns=1, stream=False)
    config = RunConfig(
        servers=["legacy"],
        reference="legacy",
        scenarios=[chat],
        model=str(broken),
        out=str(tmp_path / "reports"),
        ready_timeout_s=120.0,
    )
    started = time.monotonic()
    run_dir = Runner(config).run()
    detect = time.monotonic() - started
    [row] = read_rows(run_dir)
    assert row.error.startswith("server failed to start: legacy exited with code"), row.error
    # The server's own last words (from its log) name the file it could not load.
    assert "model.safetensors" in row.check_evidence["http.server_start"]
    assert detect < 60.0
    assert leftover_servers() == []
    figures(request, "1. real server, unloadable model", detect, row.error)


# -- 2. the server never becomes ready ------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, seen",
    [
        ("never-ready", "still loading the model"),  # the port is never opened
        ("never-ready-503", "HTTP 503"),  # the port answers 503 forever
        ("never-ready-hang", "Timeout"),  # the port accepts and never answers
    ],
)
def test_server_never_ready(tmp_path, leftover_servers, request, mode, seen):
    chat = scenario_file(tmp_path, turns=1)
    deadline = 2.0
    run = run_faults(
        tmp_path, {"stuck": fault_command(mode), "ok": fault_command("normal")}, [chat], ready_timeout_s=deadline
    )
    [row] = run.rows_of("stuck")
    assert row.error.startswith("server failed to start: stuck did not become ready within 2 s"), row.error
    assert seen in row.error + row.check_evidence["http.server_start"]
    detect = run.row_time("stuck") - run.event_time("starting stuck")
    assert deadline <= detect < deadline + 1.5, f"error after {detect:.2f} s for a {deadline} s deadline"
    assert len(run.rows_of("ok")) == 1 and clean(run.rows_of("ok")[0])
    assert leftover_servers() == []
    figures(request, f"2. never ready ({mode})", detect, row.error)


# -- 3. the server is killed mid-stream -----------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
def test_server_killed_mid_answer(tmp_path, leftover_servers, request, stream):
    first = scenario_file(tmp_path, "first", turns=3, stream=stream)
    second = scenario_file(tmp_path, "second", turns=2, stream=stream)
    # --child: a child in the server's process group that ignores SIGTERM and outlives the server.
    command = fault_command("die-mid-stream", "--child", "--marker-dir", str(tmp_path))
    run = run_faults(tmp_path, {"dies": command}, [first, second])
    [row] = run.rows_of("dies", "first")  # the rest of the scenario is skipped: the server is gone
    assert row.turn == 0 and row.http_status == 200
    assert "RemoteProtocolError" in row.error, row.error
    assert "dies exited with code -9 (killed by SIGKILL)" in row.error, row.error
    assert "http.transport_error" in row.checks_failed
    # The next scenario started a new server (each scenario gets its own): it answers normally.
    after = run.rows_of("dies", "second")
    assert [r.turn for r in after] == [0, 1] and all(clean(r) for r in after), [r.error for r in after]
    sessions = run.meta["servers"]["dies"]["sessions"]
    assert len(sessions) == 2 and sessions[0]["exit_code"] == -9
    assert sum(message.startswith("starting dies") for _, message in run.events) == 2
    assert leftover_servers() == []
    figures(request, f"3. SIGKILL mid-answer ({'stream' if stream else 'no-stream'})", row.total_s, row.error)


# -- 4. runaway answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, stream, cause",
    [
        ("stream-forever", True, "stream still running after 2 s"),
        ("stream-forever", False, "answer still arriving after 2 s"),
        ("repeat-tool-call", True, "tool 'Read' called more than 8 times in one answer"),
    ],
    ids=["stream-forever", "body-forever", "repeat-tool-call"],
)
def test_runaway(tmp_path, leftover_servers, request, mode, stream, cause):
    chat = scenario_file(tmp_path, turns=2, stream=stream, tools=True)
    budget = 2.0
    run = run_faults(
        tmp_path,
        {"runaway": fault_command(mode, "--faulty-requests", "1")},
        [chat],
        request_timeout_s=budget,
        idle_timeout_s=1.5,
    )
    runaway, after = run.rows_of("runaway")
    assert runaway.stop_cause == "runaway" and runaway.error.startswith(cause), runaway.error
    assert "runaway.stopped" in runaway.checks_failed
    assert runaway.total_s < budget + 1.0
    if mode == "stream-forever":
        assert runaway.total_s >= budget
    assert clean(after), after.check_evidence  # the run goes on with the next request
    assert leftover_servers() == []
    figures(request, f"4. runaway ({mode}, {'stream' if stream else 'no-stream'})", runaway.total_s, runaway.error)


# -- 5. the server accepts and then goes silent ----------------------------------------------------


@pytest.mark.parametrize(
    "mode, stream, cause",
    [
        ("silent-after-accept", True, "no byte for 1.5 s (stream went silent)"),
        ("silent-after-role", True, "no byte for 1.5 s (stream went silent)"),
        ("silent-after-accept", False, "no answer within 2 s"),
    ],
    ids=["stream-silent", "stream-silent-after-role", "no-stream-silent"],
)
def test_stalled(tmp_path, leftover_servers, request, mode, stream, cause):
    chat = scenario_file(tmp_path, turns=3, stream=stream)
    run = run_faults(
        tmp_path,
        {"silent": fault_command(mode, "--normal-requests", "1", "--faulty-requests", "1")},
        [chat],
        request_timeout_s=2.0,
        idle_timeout_s=1.5,
    )
    before, stalled, after = run.rows_of("silent")
    assert clean(before) and clean(after), (before.check_evidence, after.check_evidence)
    assert stalled.stop_cause == "stalled" and stalled.error.startswith(cause), stalled.error
    assert "runaway.stalled" in stalled.checks_failed
    limit = 1.5 if stream else 2.0
    assert limit <= stalled.total_s < limit + 1.0
    assert leftover_servers() == []
    figures(request, f"5. silent ({mode}, {'stream' if stream else 'no-stream'})", stalled.total_s, stalled.error)


# -- 6. malformed answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, stream, check, first_bad_bytes",
    [
        ("malformed-sse", True, "stream.bad_json", '{"choices": [{"index": 0, "delta": {"content": "he'),
        ("malformed-sse", True, "stream.framing", "this line is not an SSE field"),
        ("malformed-sse", False, "schema.not_json", '{"id": "chatcmpl-fault", "choices": [{"index": 0'),
        ("non-json", False, "schema.not_json", "<html><body>502 Bad Gateway"),
        ("non-json", True, "stream.framing", "<html><body>502 Bad Gateway"),
        ("http-500", False, "http.server_error_on_valid_request", "boom: generation failed"),
        ("http-500", True, "http.server_error_on_valid_request", "boom: generation failed"),
    ],
)
def test_malformed_answers(tmp_path, leftover_servers, request, mode, stream, check, first_bad_bytes):
    chat = scenario_file(tmp_path, turns=2, stream=stream)
    run = run_faults(tmp_path, {"bad": fault_command(mode, "--faulty-requests", "1")}, [chat])
    bad, after = run.rows_of("bad")
    assert check in bad.checks_failed, bad.checks_failed
    assert first_bad_bytes in bad.check_evidence[check], bad.check_evidence[check]
    if mode == "http-500":
        assert bad.error == "HTTP 500" and bad.http_status == 500
    else:
        assert bad.error is None and bad.http_status == 200
    assert clean(after), after.check_evidence
    assert leftover_servers() == []
    figures(
        request,
        f"6. {mode} ({'stream' if stream else 'no-stream'})",
        bad.total_s,
        f"{check}: {bad.check_evidence[check]}",
    )


def test_bare_cr_line_endings_read_as_clean_events(tmp_path, leftover_servers):
    # Valid SSE that the `openai` client reads: no framing fault, no bad JSON, the whole answer.
    pieces = fault_module().ANSWER_PIECES
    spec = ServerSpec(name="cr", label="cr", command=fault_command("cr-line-endings"), ready_timeout_s=10.0)
    with (
        ServerProcess(spec, default_model_path(), tmp_path / "home", tmp_path / "cr.log") as server,
        httpx.Client() as client,
    ):
        body = {"model": "fault-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        timed = send(client, server.base_url + "/v1/chat/completions", body, ReplayLimits(request_timeout_s=10))
    raw, reader = timed.captured.body, timed.captured.sse
    assert b"\r" in raw and b"\n" not in raw  # what the server sent: bare CRs only
    assert reader is not None and reader.faults == [] and [e.json_error for e in reader.events] == [None] * 8
    assert [e.payload["choices"][0]["delta"].get("content") for e in reader.events[1:6]] == pieces
    assert reader.events[-1].is_done and timed.ttft_s is not None
    # The same stream through a run: rows without a failed check, with the whole answer.
    chat = scenario_file(tmp_path, turns=2, stream=True)
    rows = run_faults(tmp_path, {"cr": fault_command("cr-line-endings")}, [chat]).rows_of("cr")
    assert len(rows) == 2
    for row in rows:
        assert clean(row), (row.checks_failed, row.check_evidence)
        assert row.content == "".join(pieces) and row.finish_reason == "stop"
    assert leftover_servers() == []


# -- 7. slow drip -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
def test_slow_drip_one_byte_per_second_is_cut_at_the_budget(tmp_path, leftover_servers, request, stream):
    chat = scenario_file(tmp_path, turns=1, stream=stream)
    budget = 3.0
    started = time.monotonic()
    # 1 byte/s never trips the 2 s idle timeout; the whole-request budget must end it.
    run = run_faults(
        tmp_path, {"drip": fault_command("slow-drip")}, [chat], request_timeout_s=budget, idle_timeout_s=2.0
    )
    wall = time.monotonic() - started
    [row] = run.rows_of("drip")
    assert row.stop_cause == "runaway", (row.error, row.stop_cause)
    assert budget <= row.total_s < budget + 1.5
    assert wall < budget + 15.0, "the harness must not hang on a slow drip"
    assert leftover_servers() == []
    figures(request, f"7. slow drip 1 B/s ({'stream' if stream else 'no-stream'})", row.total_s, row.error)


def test_slow_drip_timing_is_correct(tmp_path, leftover_servers, request):
    chat = scenario_file(tmp_path, turns=1, stream=True)
    interval = 0.004
    # Each event takes longer to arrive than the idle timeout: the bytes in between keep it alive.
    run = run_faults(
        tmp_path,
        {"drip": fault_command("slow-drip", "--drip-interval", str(interval))},
        [chat],
        request_timeout_s=30.0,
        idle_timeout_s=0.4,
    )
    [row] = run.rows_of("drip")
    assert clean(row), (row.error, row.check_evidence)
    assert row.content == "Hello from the fault server."
    fault = fault_module()
    events = fault.stream_events(default_model_path().name, 1)
    # The role chunk comes at once; TTFT is when the first content event is complete.
    expected_ttft = len(events[1]) * interval
    expected_total = len(b"".join(events[1:])) * interval
    assert min(len(event) for event in events[1:-1]) * interval > 0.4
    assert expected_ttft - 0.05 <= row.ttft_s <= expected_ttft + 0.5, (row.ttft_s, expected_ttft)
    assert expected_total - 0.1 <= row.total_s <= expected_total + 1.0, (row.total_s, expected_total)
    assert row.ttft_s < row.total_s
    assert leftover_servers() == []
    figures(
        request,
        "7. slow drip, timing",
        row.total_s,
        f"ttft {row.ttft_s:.2f} s (expected {expected_ttft:.2f}), total {row.total_s:.2f} s "
        f"(expected {expected_total:.2f})",
    )


# -- 8. the port is already in use ------------------------------------------------------------------


def test_port_in_use_another_free_port_is_chosen(tmp_path, leftover_servers, request, monkeypatch):
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy = blocker.getsockname()[1]
    spec = ServerSpec(name="fault", label="fault", command=fault_command("normal"), ready_timeout_s=10.0)
    try:
        # Asked for a port that is taken: another is chosen before the server starts.
        with ServerProcess(spec, default_model_path(), tmp_path / "home-a", tmp_path / "a.log", port=busy) as server:
            assert server.port != busy
            assert httpx.get(server.base_url + "/v1/models", timeout=5).status_code == 200
        # Lost the race: the free port found is taken before the server binds it; the server exits
        # with "Address already in use" and is started again on another port.
        real_free_port = servers.free_port
        handed_out: list[int] = []

        def racy_free_port(host: str = "127.0.0.1") -> int:
            handed_out.append(busy if not handed_out else real_free_port(host))
            return handed_out[-1]

        monkeypatch.setattr(servers, "free_port", racy_free_port)
        started = time.monotonic()
        with ServerProcess(spec, default_model_path(), tmp_path / "home-b", tmp_path / "b.log") as server:
            recovered = time.monotonic() - started
            assert handed_out[0] == busy and server.port == handed_out[-1] != busy
            assert httpx.get(server.base_url + "/v1/models", timeout=5).status_code == 200
        assert "Address already in use" in (tmp_path / "b.log").read_text()
    finally:
        blocker.close()
    assert leftover_servers() == []
    figures(request, "8. port in use", recovered, f"started on port {handed_out[-1]} instead of {busy}")


# -- 9. Ctrl-C and SIGTERM of the harness -----------------------------------------------------------


def _config_file(tmp_path: Path, command: list[str], scenario: str, **settings: Any) -> Path:
    lines = [
        'servers = ["fault"]',
        'reference = "fault"',
        f"scenarios = [{json.dumps(scenario)}]",
        f"out = {json.dumps(str(tmp_path / 'reports'))}",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    lines += ["[server.fault]", f"command = {json.dumps(command)}"]
    path = tmp_path / "harness.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _wait_for_log(tmp_path: Path, text: str, proc: subprocess.Popen, timeout_s: float = 60.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for log in (tmp_path / "reports").glob("*/logs/*.log"):
            if text in log.read_text(errors="replace"):
                return log.parents[1]
        assert proc.poll() is None, f"harness exited early with {proc.returncode}"
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in a server log")


def _harness(tmp_path: Path, *args: str) -> subprocess.Popen:
    out = (tmp_path / "harness.out").open("wb")
    return subprocess.Popen([str(HARNESS_BIN), *args], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_during_a_request(tmp_path, leftover_servers, request, sig, code):
    chat = scenario_file(tmp_path, turns=3, stream=True)
    command = fault_command("silent-after-accept", "--normal-requests", "1", "--child")
    config = _config_file(tmp_path, command, chat, idle_timeout_s=120.0, request_timeout_s=120.0)
    proc = _harness(tmp_path, "run", "--config", str(config))
    try:
        run_dir = _wait_for_log(tmp_path, "request 2 POST", proc)  # hanging in the second request
        time.sleep(0.3)
        sent = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == code
        detect = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = (tmp_path / "harness.out").read_text(errors="replace")
    assert f"interrupted by signal {int(sig)}" in output
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "interrupted" and meta["finished_at"]
    rows = read_rows(run_dir)
    assert [(r.turn, r.error) for r in rows] == [(0, None)]  # the row before the signal is kept
    assert (run_dir / "summary.md").is_file() and (run_dir / "report.html").is_file()
    assert leftover_servers() == [], "the server and its SIGTERM-proof child must be gone"
    # The report can be rebuilt from the rows of the interrupted run.
    for name in ("summary.md", "summary.csv", "report.html"):
        (run_dir / name).unlink()
    assert cli.main(["report", str(run_dir)]) == 0
    assert "fault" in (run_dir / "summary.md").read_text() and (run_dir / "report.html").is_file()
    figures(
        request,
        f"9. {sig.name} during a request",
        detect,
        f"exit {code}; 'interrupted by signal {int(sig)}: servers stopped, rows so far kept'; partial report",
    )


def test_signal_during_server_startup(tmp_path, leftover_servers, request):
    chat = scenario_file(tmp_path, turns=1)
    config = _config_file(tmp_path, fault_command("never-ready", "--child"), chat, ready_timeout_s=120.0)
    proc = _harness(tmp_path, "run", "--config", str(config))
    try:
        run_dir = _wait_for_log(tmp_path, "still loading", proc)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
        detect = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "interrupted"
    assert read_rows(run_dir) == []
    assert (run_dir / "summary.md").is_file() and (run_dir / "report.html").is_file()
    assert leftover_servers() == []
    figures(request, "9. SIGTERM during start-up", detect, "exit 143; empty partial report")


# -- 10. the run folder cannot be written ------------------------------------------------------------


def test_unwritable_run_folder_fails_before_any_server_starts(tmp_path, leftover_servers, request, monkeypatch, capsys):
    chat = scenario_file(tmp_path)
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("not a folder")
    spawned: list[Any] = []
    real_popen = subprocess.Popen
    monkeypatch.setattr(servers.subprocess, "Popen", lambda *a, **k: spawned.append(a) or real_popen(*a, **k))
    config = RunConfig(
        servers=["fault"],
        reference="fault",
        scenarios=[chat],
        out=str(not_a_dir / "reports"),
        server={"fault": ServerOverride(command=fault_command("normal"))},
    )
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"cannot write the run folder .*Choose a writable folder with --out DIR"):
        Runner(config).run()
    detect = time.monotonic() - started
    # The same through the command line: one clear paragraph, exit code 2.
    toml = _config_file(tmp_path, fault_command("normal"), chat)
    assert cli.main(["run", "--config", str(toml), "--out", str(not_a_dir / "reports")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write the run folder") and "Traceback" not in err
    assert spawned == []
    assert leftover_servers() == []
    figures(request, "10. run folder not writable", detect, err.strip())


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_read_only_run_folder(tmp_path, leftover_servers):
    chat = scenario_file(tmp_path)
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o500)
    try:
        config = RunConfig(
            servers=["fault"],
            reference="fault",
            scenarios=[chat],
            out=str(out),
            server={"fault": ServerOverride(command=fault_command("normal"))},
        )
        with pytest.raises(ConfigError, match="cannot write the run folder"):
            Runner(config).run()
    finally:
        out.chmod(0o700)
    assert leftover_servers() == []


# -- nothing lost ----------------------------------------------------------------------------------


def test_rows_flushed_per_request_and_run_folder_records_the_run(tmp_path, leftover_servers, monkeypatch):
    first = scenario_file(tmp_path, "first", turns=2)
    second = scenario_file(tmp_path, "second", turns=2, stream=False)
    rows_at_fsync: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target.endswith("results.jsonl"):
            rows_at_fsync.append(len(Path(target).read_text().splitlines()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    config = RunConfig(
        servers=["fault"],
        reference="fault",
        scenarios=[first, second],
        out=str(tmp_path / "reports"),
        server={"fault": ServerOverride(command=fault_command("normal"))},
        request_timeout_s=7.0,
    )
    on_disk: list[int] = []
    runner = Runner(
        config, on_row=lambda row: on_disk.append(len((runner.run_dir / "results.jsonl").read_text().splitlines()))
    )
    run_dir = runner.run()
    # Each row is on disk by the time it is reported, and rows are fsynced at each scenario's end.
    assert on_disk == [1, 2, 3, 4]
    assert rows_at_fsync[:2] == [2, 4], rows_at_fsync  # at the end of each of the two scenarios
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "complete"
    assert meta["config"]["scenarios"] == [first, second] and meta["config"]["request_timeout_s"] == 7.0
    assert meta["config"]["server"]["fault"]["command"] == fault_command("normal")
    assert {"python", "mlx", "mlx_lm", "mlx_textgen"} <= set(meta["versions"])
    assert meta["model"]["checksum"] == model_checksum(default_model_path())
    entry = meta["servers"]["fault"]
    assert "shims" in entry and "quirks" in entry
    # The command as it was run, with the real port (not the template's placeholder).
    port = entry["sessions"][-1]["port"]  # each scenario has its own server; the last one's command
    assert entry["command"][entry["command"].index("--port") + 1] == str(port)
    assert leftover_servers() == []


def test_a_second_signal_does_not_cut_the_cleanup_short():
    """After the first SIGINT/SIGTERM the handlers ignore more until cmd_run restores them."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(cli.Interrupted) as info:
            cli._raise_interrupted(signal.SIGINT, None)
        assert info.value.signum == signal.SIGINT
        assert all(signal.getsignal(sig) == signal.SIG_IGN for sig in previous)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
