"""The client replay (harness/clients) and the verdict it weighs (harness/analysis/clients.py,
findings.py): answers of known shape, checked by the real checks and read by the real client
libraries, show which client tolerates which finding.

The shapes: a role repeated in every streamed delta and a usage chunk whose object is
"chat.completion" (cosmetic: every client reads the same result), tool calls sent as Hermes markup
in the text (every client loses the call), a tool-call delta without an index (openai-python raises,
the AI SDK reads the call) and a stream cut mid-answer (every client raises). The AI SDK part needs
node and npm; where they cannot install it, those tests are skipped with the reason.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from harness.analysis.clients import LOSES_TOOL_CALLS, RAISES, ClientVerdict, verdict_text
from harness.analysis.findings import finding_text, server_findings
from harness.analysis.run_folder import load_run
from harness.capture.http import CapturedResponse
from harness.checks import catalogue
from harness.checks.conformance import extract_answer, run_checks
from harness.clients import ai_sdk, anthropic_python, openai_python
from harness.clients.answers import ANTHROPIC_MESSAGES, OPENAI_CHAT, CapturedAnswer, read_replay
from harness.clients.replay import replay_answers, replay_run
from harness.core.rows import ResultRow, ResultWriter
from harness.core.sse import SSEReader
from harness.presentation.report import build_report, verdict_lines
from harness.run.captures import read_answer, write_answer
from harness.scenario.definition import Expect, PlannedRequest
from harness.verdicts.gate import client_gates

READ = {"type": "function", "function": {"name": "Read", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def ai_sdk_ready() -> None:
    reason = ai_sdk.unavailable()
    if reason:
        pytest.skip(f"AI SDK not replayed: {reason}")


# --- answers of known shape ---------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **top: Any) -> dict[str, Any]:
    payload = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    payload["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    return {**payload, **top}


def usage_chunk(obj: str = "chat.completion.chunk") -> dict[str, Any]:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    return {"id": "chatcmpl-1", "object": obj, "created": 1, "model": "m", "choices": [], "usage": usage}


def sse(*events: Any) -> str:
    return "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events)


def body(content: str | None, calls: list[dict[str, Any]] | None = None) -> str:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    finish = "tool_calls" if calls else "stop"
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    choice = {"index": 0, "message": message, "finish_reason": finish}
    top = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m"}
    return json.dumps({**top, "choices": [choice], "usage": usage})


def call(path: str) -> dict[str, Any]:
    arguments = json.dumps({"file_path": path})
    return {"id": f"call_{path}", "type": "function", "function": {"name": "Read", "arguments": arguments}}


def text_stream(text: str) -> str:
    first, rest = text[:2], text[2:]
    opening = chunk({"role": "assistant", "content": first})
    return sse(opening, chunk({"content": rest}), chunk({}, "stop"), usage_chunk(), "[DONE]")


def tool_stream(path: str) -> str:
    start = {"index": 0, "id": f"call_{path}", "type": "function", "function": {"name": "Read", "arguments": ""}}
    rest = {"index": 0, "function": {"arguments": json.dumps({"file_path": path})}}
    return sse(
        chunk({"role": "assistant", "tool_calls": [start]}),
        chunk({"tool_calls": [rest]}),
        chunk({}, "tool_calls"),
        usage_chunk(),
        "[DONE]",
    )


ROLE_EVERY_DELTA_AND_USAGE_OBJECT = sse(
    chunk({"role": "assistant", "content": "He"}),
    chunk({"role": "assistant", "content": "llo there"}),
    chunk({"role": "assistant"}, "stop"),
    usage_chunk("chat.completion"),
    "[DONE]",
)
HERMES_MARKUP_AS_TEXT = sse(
    chunk({"role": "assistant", "content": "<tool_call>\n"}),
    chunk({"content": json.dumps({"name": "Read", "arguments": {"file_path": "a.py"}}) + "\n</tool_call>"}),
    chunk({}, "stop"),
    usage_chunk(),
    "[DONE]",
)
TOOL_DELTA_WITHOUT_INDEX = sse(
    chunk({"role": "assistant", "tool_calls": [call("b.py")]}),
    chunk({}, "tool_calls"),
    usage_chunk(),
    "[DONE]",
)
CUT_MID_ANSWER = sse(chunk({"role": "assistant", "content": "Do"})) + 'data: {"id":"chatcmpl-1","obj'
CUT_ERROR = "RemoteProtocolError: peer closed connection without sending complete message body"

# turn -> (expected call, reference answer streamed, candidate answer streamed, transport error)
TURNS: dict[int, tuple[str | None, str, str, str | None]] = {
    0: (None, text_stream("Hello there"), ROLE_EVERY_DELTA_AND_USAGE_OBJECT, None),
    1: ("a.py", tool_stream("a.py"), HERMES_MARKUP_AS_TEXT, None),
    2: ("b.py", tool_stream("b.py"), TOOL_DELTA_WITHOUT_INDEX, None),
    3: (None, text_stream("Done."), CUT_MID_ANSWER, CUT_ERROR),
}
PLAIN = {0: body("Hello there"), 1: body(None, [call("a.py")]), 2: body(None, [call("b.py")]), 3: body("Done.")}


def checked_row(run_dir: Path, server: str, turn: int, stream: bool, raw: str, error: str | None) -> ResultRow:
    """The row of one answer as the run builds it: the real answer reading and checks, the raw bytes
    kept in answers.raw."""
    path = TURNS[turn][0]
    expected = {"tool_calls": [{"name": "Read", "arguments": {"file_path": path}}]}
    expect = Expect.model_validate(expected) if path else None
    request = PlannedRequest("tools", turn, [{"role": "user", "content": "go"}], [READ], {}, stream, "auto", expect)
    reader = None
    if stream:
        reader = SSEReader()
        reader.feed(raw.encode(), 0.0)
        reader.close(1.0)
    captured = CapturedResponse(stream, 200, raw.encode(), reader, transport_error=error)
    answer = extract_answer(captured)
    outcome = run_checks(captured, answer, request)
    row = ResultRow(
        run_id="replay",
        server=server,
        scenario="tools",
        variant="stream" if stream else "no-stream",
        turn=turn,
        request_kind="first" if turn == 0 else "follow-up",
        stream=stream,
        started_at=float(turn),
        http_status=200,
        error=error,
        finish_reason=answer.finish_reason,
        content=answer.content,
        content_sha=hashlib.sha256((answer.content or "").encode()).hexdigest()[:16],
        tool_calls=answer.tool_calls,
        checks_failed=outcome.failed,
        check_evidence=outcome.evidence,
        check_notes=outcome.notes,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    row.answer = write_answer(run_dir, row, captured, None)
    return row


def write_shapes_run(run_dir: Path) -> Path:
    rows = []
    for server in ("reference", "candidate"):
        for turn, (_path, reference, candidate, cut) in TURNS.items():
            streamed, error = (reference, None) if server == "reference" else (candidate, cut)
            rows.append(checked_row(run_dir, server, turn, True, streamed, error))
            rows.append(checked_row(run_dir, server, turn, False, PLAIN[turn], None))
    with ResultWriter(run_dir / "results.jsonl") as writer:
        for row in rows:
            writer.write(row)
    meta = {"run_id": "replay", "reference_server": "reference", "status": "complete"}
    (run_dir / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    return run_dir


def answer(raw: str, stream: bool = True, cut: str | None = None, key: str = "a") -> CapturedAnswer:
    return CapturedAnswer(key, OPENAI_CHAT, stream, 200, raw.encode(), cut, ("Read",))


# --- each client on each shape ------------------------------------------------------------------


def test_openai_python_reads_cosmetic_faults_and_loses_what_is_lost() -> None:
    tolerated = openai_python.replay(answer(ROLE_EVERY_DELTA_AND_USAGE_OBJECT))
    assert (tolerated.text, tolerated.finish_reason, tolerated.error) == ("Hello there", "stop", None)
    markup = openai_python.replay(answer(HERMES_MARKUP_AS_TEXT))
    assert markup.tool_calls == [] and markup.text.startswith("<tool_call>")
    no_index = openai_python.replay(answer(TOOL_DELTA_WITHOUT_INDEX))
    assert no_index.error and no_index.error.startswith("TypeError")
    cut = openai_python.replay(answer(CUT_MID_ANSWER, cut=CUT_ERROR))
    assert cut.error and cut.error.startswith("APIConnectionError") and cut.text == "Do"
    plain = openai_python.replay(answer(PLAIN[2], stream=False))
    assert plain.tool_calls == [{"name": "Read", "arguments": {"file_path": "b.py"}}]
    assert plain.finish_reason == "tool_calls"


def test_openai_python_stream_helper_drops_chunks_of_another_object() -> None:
    """Why ``stream.chunk_object_wrong`` is not cosmetic: on every chunk, it empties the answer."""
    every_chunk = sse(chunk({"role": "assistant", "content": "Hi"}, "stop", object="text_completion"), "[DONE]")
    got = openai_python.replay(answer(every_chunk))
    assert got.error and got.error.startswith("AssertionError at openai/") and got.text == ""


def test_ai_sdk_reads_the_same_shapes(ai_sdk_ready: None) -> None:
    shapes = [
        answer(ROLE_EVERY_DELTA_AND_USAGE_OBJECT, key="role"),
        answer(HERMES_MARKUP_AS_TEXT, key="markup"),
        answer(TOOL_DELTA_WITHOUT_INDEX, key="no-index"),
        answer(CUT_MID_ANSWER, cut=CUT_ERROR, key="cut"),
        answer(PLAIN[2], stream=False, key="plain"),
    ]
    got = {result.answer: result for result in ai_sdk.replay_all(shapes)}
    assert (got["role"].text, got["role"].finish_reason, got["role"].error) == ("Hello there", "stop", None)
    assert got["markup"].tool_calls == [] and got["markup"].text.startswith("<tool_call>")
    # Unlike openai-python, the AI SDK takes a call without an index as the next call.
    assert got["no-index"].tool_calls == [{"name": "Read", "arguments": {"file_path": "b.py"}}]
    assert got["no-index"].error is None
    assert got["cut"].error and got["cut"].text == "Do"
    assert got["plain"].tool_calls == [{"name": "Read", "arguments": {"file_path": "b.py"}}]
    assert got["plain"].finish_reason == "tool_calls"


def anthropic_events(cut_before_tool: bool = False) -> str:
    def event(name: str, data: dict[str, Any]) -> str:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": []}
    message |= {"stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 0}}
    text = [
        event("message_start", {"message": message}),
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Reading it."}}),
        event("content_block_stop", {"index": 0}),
    ]
    tool = {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}
    usage = {"output_tokens": 9}
    rest = [
        event("content_block_start", {"index": 1, "content_block": tool}),
        *[
            event("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": part}})
            for part in ('{"file_', 'path":"a.py"}')
        ],
        event("content_block_stop", {"index": 1}),
        event("message_delta", {"delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": usage}),
        event("message_stop", {}),
    ]
    return "".join(text) + ("" if cut_before_tool else "".join(rest))


def test_anthropic_python_reads_anthropic_messages_answers() -> None:
    pytest.importorskip("anthropic", reason="the anthropic package is not installed (pip install anthropic)")
    streamed = CapturedAnswer("s", ANTHROPIC_MESSAGES, True, 200, anthropic_events().encode())
    got = anthropic_python.replay(streamed)
    assert (got.text, got.finish_reason, got.error) == ("Reading it.", "tool_use", None)
    assert got.tool_calls == [{"name": "Read", "arguments": {"file_path": "a.py"}}]
    cut = CapturedAnswer("c", ANTHROPIC_MESSAGES, True, 200, anthropic_events(cut_before_tool=True).encode(), CUT_ERROR)
    lost = anthropic_python.replay(cut)
    assert lost.error and lost.tool_calls == [] and lost.text == "Reading it."
    refused = anthropic_python.replay(CapturedAnswer("r", ANTHROPIC_MESSAGES, False, 529, b'{"type":"error"}'))
    assert refused.error


def test_each_client_reads_only_its_protocols() -> None:
    openai_answer = answer(PLAIN[0], stream=False, key="o")
    results, statuses = replay_answers([openai_answer], ["openai-python", "anthropic-python"])
    assert [r.client for r in results] == ["openai-python"]
    skipped = {s.name: s.skipped for s in statuses}
    assert skipped["openai-python"] is None
    assert skipped["anthropic-python"] == "no answer in its protocol (anthropic)"


# --- the verdict the replay weighs ----------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = write_shapes_run(tmp_path_factory.mktemp("shapes"))
    replay_run(run_dir, ["openai-python", "ai-sdk", "anthropic-python"])
    return run_dir


def verdicts_of(run_dir: Path) -> dict[str, ClientVerdict]:
    summary, _meta = load_run(run_dir)
    return {v.client: v for v in server_findings(summary)["candidate"].clients}


def test_openai_python_verdict_breaks_on_lost_calls_and_exceptions(shapes_run: Path) -> None:
    verdict = verdicts_of(shapes_run)["openai-python"]
    assert verdict.compared == 8 and verdict.drop_in is False
    groups = {(g.effect, g.variant): (g.breaking, g.requests) for g in verdict.breaks}
    # turn 2 (no index) and turn 3 (cut) raise; turn 1 (markup as text) loses the call
    assert groups == {(RAISES, "stream"): (2, 4), (LOSES_TOOL_CALLS, "stream"): (1, 4)}
    assert verdict.breaks[0].effect == RAISES
    assert {"stream.role_repeated", "stream.chunk_object_wrong"} <= set(verdict.tolerated)
    assert "stream.tool_delta_no_index" not in verdict.tolerated
    assert "breaks** on 3 of 8 answers" in verdict_text(verdict)


def test_ai_sdk_verdict_tolerates_the_missing_index(shapes_run: Path, ai_sdk_ready: None) -> None:
    verdict = verdicts_of(shapes_run)["ai-sdk"]
    groups = {(g.effect, g.variant): (g.breaking, g.requests) for g in verdict.breaks}
    assert groups == {(RAISES, "stream"): (1, 4), (LOSES_TOOL_CALLS, "stream"): (1, 4)}
    assert {"stream.role_repeated", "stream.chunk_object_wrong", "stream.tool_delta_no_index"} <= set(verdict.tolerated)


def test_findings_are_grouped_per_check_breaking_first_cosmetic_last(shapes_run: Path) -> None:
    summary, _meta = load_run(shapes_run)
    findings = server_findings(summary)["candidate"].findings
    names = [f.check for f in findings]
    assert len(names) == len(set(names))  # one line per check
    assert names.index("tool.raw_markup_in_content") < names.index("stream.role_repeated")
    cosmetic = [f for f in findings if f.cosmetic]
    assert [f.check for f in cosmetic] == ["stream.role_repeated"] and names[-1] == "stream.role_repeated"
    # Not cosmetic by nature (see the next test), but tolerated on a usage chunk: after the breaking ones.
    usage_object = next(f for f in findings if f.check == "stream.chunk_object_wrong")
    assert usage_object.clients["openai-python"].tolerated == 1 and not usage_object.breaks
    assert names.index("stream.chunk_object_wrong") > names.index("stream.tool_delta_no_index")
    markup = next(f for f in findings if f.check == "tool.raw_markup_in_content")
    counts = markup.clients["openai-python"]
    assert (counts.answers, counts.broken) == (1, 1) and markup.turns == [("tools", "stream", 1)]
    role = next(f for f in findings if f.check == "stream.role_repeated")
    counts = role.clients["openai-python"]
    assert (counts.broken, counts.tolerated) == (0, 1) and "tolerated by openai-python" in finding_text(role)


def test_report_and_console_carry_the_client_verdicts(shapes_run: Path) -> None:
    summary, _meta = load_run(shapes_run)
    lines = verdict_lines(summary)
    assert lines[0].startswith("**candidate: NOT a drop-in replacement for reference**")
    assert len(lines) <= 12
    client_lines = [line for line in lines if line.startswith("  - openai-python")]
    assert client_lines and "raises on tools [stream]: 2 of 4 requests" in client_lines[0]
    assert any("anthropic-python: not replayed — no answer in its protocol" in line for line in lines)
    out = build_report(shapes_run)
    markdown = out["summary_md"].read_text(encoding="utf-8")
    assert "openai-python: **breaks** on 3 of 8 answers" in markdown
    html = out["report_html"].read_text(encoding="utf-8")
    assert "openai-python: <strong>breaks</strong> on 3 of 8 answers" in html


def test_gate_per_client(shapes_run: Path) -> None:
    summary, _meta = load_run(shapes_run)
    [openai_gate] = client_gates(summary, ["candidate"], ["openai-python"])
    assert openai_gate.passed is False and openai_gate.value == "3 of 8 answers"
    assert openai_gate.detail.startswith("raises on tools [stream]")


def test_gate_on_a_run_never_replayed_fails_with_the_fix(tmp_path: Path) -> None:
    run_dir = write_shapes_run(tmp_path)
    summary, _meta = load_run(run_dir)
    assert read_replay(run_dir) is None
    [line] = client_gates(summary, ["candidate"], ["ai-sdk"])
    assert line.passed is False and "harness clients RUN_DIR" in line.detail


def test_cosmetic_checks_are_tolerated_by_the_replayed_clients(ai_sdk_ready: None) -> None:
    """Every check the catalogue calls cosmetic: its minimal failing answer gives each client the
    text, tool calls and finish reason the harness reads from it."""
    docs = [doc for doc in catalogue.CHECKS if doc.cosmetic]
    assert docs
    answers, expected = [], {}
    for doc in docs:
        example = doc.example
        assert isinstance(example, catalogue.Example)
        reader = None
        if example.stream:
            reader = SSEReader()
            reader.feed(example.answer.encode(), 0.0)
            reader.close(1.0)
        read = extract_answer(CapturedResponse(example.stream, 200, example.answer.encode(), reader))
        answers.append(CapturedAnswer(doc.name, OPENAI_CHAT, example.stream, 200, example.answer.encode()))
        expected[doc.name] = (read.content or "", [c["name"] for c in read.tool_calls], read.finish_reason)
    results, _statuses = replay_answers(answers, ["openai-python", "ai-sdk"])
    assert len(results) == 2 * len(docs)
    for result in results:
        got = (result.text, [c["name"] for c in result.tool_calls], result.finish_reason)
        assert result.error is None and got == expected[result.answer], (result.client, result.answer)


def test_gate_setting_names_clients() -> None:
    from harness.core.errors import ConfigError
    from harness.verdicts.gate import gate_settings

    assert gate_settings({"clients": ["ai-sdk"]}).clients == ["ai-sdk"]
    with pytest.raises(ConfigError, match=r"clients: Input should be a valid list"):
        gate_settings({"clients": "ai-sdk"})


def test_answers_share_one_file_each_in_its_own_slice(tmp_path: Path) -> None:
    """Answers without a capture are appended to answers.raw; each row reads back exactly its bytes,
    and masking a secret afterwards keeps every other slice in place."""
    from harness.run.captures import mask_written

    first = checked_row(tmp_path, "candidate", 0, True, text_stream("Hello there"), None)
    second = checked_row(tmp_path, "candidate", 3, False, json.dumps(body("key sk-abc in it")), None)
    assert first.answer.startswith("answers.raw#0+") and second.answer.startswith("answers.raw#")
    assert read_answer(tmp_path, first.answer) == text_stream("Hello there").encode()
    mask_written(tmp_path, second, ["sk-abc"])
    assert b"sk-abc" not in (tmp_path / "answers.raw").read_bytes()
    assert b"key ****** in it" in read_answer(tmp_path, second.answer)
    assert read_answer(tmp_path, first.answer) == text_stream("Hello there").encode()
