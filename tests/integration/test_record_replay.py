"""Real traffic, end to end: a multi-turn tool loop driven by the `openai` package (a client nobody
here wrote) through `harness record` in front of the legacy stand-in on the Hermes tool model; the
recording stopped with Ctrl-C; then the recorded session and the import of the trace fixture
replayed with the harness's Runner against legacy and MLX-Textgen, and the report read back.

To keep the suite short, one replay run covers both scenarios, and its legacy server is the one
that was recorded, reached by its address (response cache off, so every answer is generated
again); MLX-Textgen is started by the Runner as in any run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai import OpenAI
from recording_proxy import record_session

from harness.core.rows import read_rows
from harness.models.builtin import tool_model_path
from harness.presentation.report import build_report
from harness.run.config import RunConfig, ServerOverride
from harness.run.runner import Runner
from harness.scenario.definition import load_scenario
from harness.scenario.importers import read_traffic, write_imported
from harness.server.process import ServerProcess
from harness.server.spec import legacy_spec

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
# The legacy stand-in as recorded and as replayed: Hermes calls parsed, max_tokens honoured, and
# no response cache (the replay must generate each answer again).
LEGACY_QUIRKS = {"hermes_parsing": True, "max_tokens_ignored": False, "response_cache": False}
SECRET = "sk-live-record-test-0123456789"
TOOLS = json.loads((REPO_ROOT / "scenarios/tools/coding-tools-small.json").read_text())
SYSTEM = (
    "You are a coding assistant working in a software repository. Use the tools to read files and run "
    "commands. Keep answers short."
)
FILE_TEXT = "import os\n\ndef create_app(config):\n    return None\n\ndef main():\n    return True"
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "traces" / "coding-session"
MAX_TOKENS = 48


def _stream(client: OpenAI, **request) -> tuple[str, list[dict]]:
    """Streams one answer as an agent does: the text, and the tool calls joined from their deltas."""
    text, calls = "", {}
    for chunk in client.chat.completions.create(stream=True, **request):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    return text, [calls[index] for index in sorted(calls)]


def _tool_loop(base_url: str, model: str) -> list[str]:
    """Read a file, answer about it, run the tests: three requests, the first one not streamed."""
    client = OpenAI(base_url=base_url, api_key=SECRET, max_retries=0, timeout=120)
    common = {"model": model, "tools": TOOLS, "max_tokens": MAX_TOKENS, "temperature": 0}
    messages: list = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Please read src/app.py."}]
    first = client.chat.completions.create(messages=messages, **common)
    (call,) = first.choices[0].message.tool_calls
    messages += [first.choices[0].message, {"role": "tool", "tool_call_id": call.id, "content": FILE_TEXT}]
    text, calls = _stream(client, messages=messages, **common)
    messages += [
        {"role": "assistant", "content": text},
        {"role": "user", "content": "Now run the tests with pytest -q."},
    ]
    _text, calls = _stream(client, messages=messages, **common)
    return [call.function.name, *(c["name"] for c in calls)]


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    work = tmp_path_factory.mktemp("legacy")
    server = ServerProcess(legacy_spec(LEGACY_QUIRKS), tool_model_path("tools-hermes"), work / "home", work / "log")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def recording(legacy, tmp_path_factory):
    """`harness record` in front of the legacy stand-in, driven by the openai package, stopped with
    SIGINT. Returns (exit code, output, recording folder, the calls the client saw)."""
    work = tmp_path_factory.mktemp("record")
    return record_session(
        legacy.base_url + "/v1", work, "agent", "legacy", lambda listen: _tool_loop(listen + "/v1", "tools-hermes")
    )


def test_ctrl_c_writes_the_recorded_session_and_exits_130(recording):
    code, output, run_dir, calls = recording
    assert code == 130, output
    assert calls == ["Read", "Bash"], output  # the tool loop went through the proxy unchanged
    assert "recorded 3 request(s) in 1 session(s)" in output
    scenario = load_scenario(run_dir / "scenarios" / "agent-1.yaml")
    bodies = [turn.request or {} for turn in scenario.turns]
    assert [bool(body.get("stream")) for body in bodies] == [False, True, True]
    assert all(body["tools"] == TOOLS and body["max_tokens"] == MAX_TOKENS for body in bodies)
    assert [m["role"] for m in bodies[2]["messages"]] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert bodies[1]["messages"][2]["tool_calls"][0]["function"]["name"] == "Read"  # as the client sent it back
    assert all(turn.response is not None for turn in scenario.turns)


def test_the_observed_rows_and_no_secret_anywhere(recording):
    _code, _output, run_dir, _calls = recording
    rows = read_rows(run_dir)
    assert [(r.scenario, r.turn, r.request_kind, r.stream) for r in rows] == [
        ("agent-1", 0, "first", False), ("agent-1", 1, "follow-up", True), ("agent-1", 2, "follow-up", True),
    ]  # fmt: skip
    assert all(r.server == "legacy" and r.http_status == 200 and r.ttft_s and r.ttft_s <= r.total_s for r in rows)
    assert [call["name"] for call in rows[0].tool_calls] == ["Read"]
    assert len((run_dir / "exchanges.jsonl").read_text().splitlines()) == 3
    assert (run_dir / "report.html").is_file()
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.fixture(scope="module")
def replay(legacy, recording, tmp_path_factory):
    """The recorded session on legacy (the recorded server, by its address) and MLX-Textgen."""
    _code, _output, run_dir, _calls = recording
    config = RunConfig(
        servers=["legacy", "mlx-textgen"],
        scenarios=[str(run_dir / "scenarios")],
        model=str(tool_model_path("tools-hermes")),
        out=str(tmp_path_factory.mktemp("replay")),
        server={"legacy": ServerOverride(quirks=LEGACY_QUIRKS, base_url=legacy.base_url)},
    )
    replay_dir = Runner(config).run()
    return replay_dir, read_rows(replay_dir)


@pytest.fixture(scope="module")
def imported_replay(tmp_path_factory):
    """The trace fixture, imported, on MLX-Textgen (docs/sessions.md has the run on both servers)."""
    imported = tmp_path_factory.mktemp("imported")
    write_imported(read_traffic([FIXTURE]).exchanges, imported, "coding-session", "the trace fixture")
    config = RunConfig(
        servers=["mlx-textgen"],
        reference="mlx-textgen",
        scenarios=[str(imported / "coding-session.yaml")],
        model=str(tool_model_path("tools-hermes")),
        out=str(tmp_path_factory.mktemp("imported-replay")),
    )
    replay_dir = Runner(config).run()
    return replay_dir, read_rows(replay_dir)


def _rows(rows, server, scenario):
    return sorted((r for r in rows if r.server == server and r.scenario == scenario), key=lambda r: r.turn)


def _recorded_section(run_dir: Path) -> str:
    return build_report(run_dir)["summary_md"].read_text().split("## Recorded sessions", 1)[1]


def test_the_recorded_session_replays_exactly_on_both_servers(replay):
    replay_dir, rows = replay
    legacy, textgen = _rows(rows, "legacy", "agent-1"), _rows(rows, "mlx-textgen", "agent-1")
    assert [r.request_kind for r in legacy] == [r.request_kind for r in textgen] == ["first", "follow-up", "follow-up"]
    assert {r.variant for r in legacy + textgen} == {"as-recorded"}
    # The same server, model and settings as when it was recorded: the same answers, turn by turn.
    assert [(r.ab_reference, r.ab_diff) for r in legacy] == [("recorded", "identical")] * 3, [
        r.ab_detail for r in legacy
    ]
    assert all(r.http_status == 200 and not r.error for r in legacy)
    assert all(r.ab_reference == "recorded" and r.ab_diff for r in textgen)
    # MLX-Textgen's turns each end as a row: an answer checked, or an error with its evidence.
    for row in textgen:
        assert not row.error or {"http.status", "server.log"} & set(row.check_evidence), row
    section = _recorded_section(replay_dir)
    assert "### agent-1 (3 requests" in section and "| Turn | Kind | legacy | mlx-textgen |" in section


def test_the_imported_fixture_replays_and_the_report_says_which_turns_failed(imported_replay):
    replay_dir, rows = imported_replay
    turns = _rows(rows, "mlx-textgen", "coding-session")
    assert [(r.turn, r.request_kind) for r in turns] == [
        (0, "first"),
        (1, "follow-up"),
        (2, "follow-up"),
        (3, "follow-up"),
    ]
    # The first two turns carry Claude's recorded answer, the last two none (request-only, HTTP 529).
    assert [r.ab_reference for r in turns] == ["recorded", "recorded", None, None]
    assert turns[0].http_status == 200 and not turns[0].error
    # Every later request has the first assistant turn (text and a tool call in one message) in
    # its history, which MLX-Textgen 0.2.1 refuses after it has answered 200.
    for row in turns[1:]:
        assert row.error and "Cannot have both tool_calls and content" in row.check_evidence["server.log"], row
    section = _recorded_section(replay_dir)
    assert "### coding-session (4 requests" in section and "| Turn | Kind | mlx-textgen |" in section
    assert "an image in a tool result cannot be carried" in section
    assert section.count("Cannot have both tool_calls and content") == 3
