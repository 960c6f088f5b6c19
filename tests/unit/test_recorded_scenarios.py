"""Recorded scenarios: each turn a whole request body, replayed exactly as recorded."""

from __future__ import annotations

import textwrap

import pytest

from harness.run.request import tool_choice_text
from harness.scenario.definition import (
    RequestKinds,
    ScenarioError,
    Variant,
    load_scenario,
    plan_requests,
    resolve_scenarios,
)

RECORDED = """
name: recorded
turns:
  - request:
      model: claude-original
      stream: true
      stream_options: {include_usage: true}
      max_tokens: 64
      messages:
        - {role: system, content: [{type: text, text: "You are a coding agent."}]}
        - {role: user, content: "Read src/app.py"}
      tools:
        - {type: function, function: {name: Read, parameters: {type: object}}}
      tool_choice: {type: function, function: {name: Read}}
      x_unknown_field: kept
    response: {choices: [{message: {role: assistant, content: null}}]}
    notes: ["an image block was dropped: the backend is text-only"]
  - request:
      messages:
        - {role: user, content: "Read src/app.py"}
        - {role: assistant, content: "", tool_calls: [{id: c1, type: function,
           function: {name: Read, arguments: "{\\"file_path\\": \\"src/app.py\\"}"}}]}
        - {role: tool, tool_call_id: c1, content: "print('hi')"}
"""


def _write(tmp_path, text):
    path = tmp_path / "scenario.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_recorded_request_is_sent_as_recorded_with_only_the_model_swapped(tmp_path):
    scenario = load_scenario(_write(tmp_path, RECORDED))
    first, second = plan_requests(scenario)
    body = first.body("served-id")
    expected = dict(scenario.turns[0].request or {})
    expected["model"] = "served-id"
    assert body == expected
    assert list(body) == list(expected)  # the same keys in the same order
    assert first.stream is True and first.tool_choice == {"type": "function", "function": {"name": "Read"}}
    assert first.recorded_response == {"choices": [{"message": {"role": "assistant", "content": None}}]}
    assert second.body("m") == {**(scenario.turns[1].request or {}), "model": "m"}
    assert "stream" not in second.body("m")  # never added where the client did not send it
    assert first.body("a") is not first.raw  # a copy: replaying twice sends the same bytes


def test_a_mode_can_still_override_stream_and_the_label_says_as_recorded(tmp_path):
    scenario = load_scenario(_write(tmp_path, RECORDED))
    assert Variant().label(scenario) == "as-recorded"
    assert Variant(stream=False).label(scenario) == "no-stream"
    first, _second = plan_requests(scenario, stream=False)
    assert first.body("m")["stream"] is False
    assert plan_requests(scenario, stream=True)[1].body("m")["stream"] is True


def test_recorded_turns_are_first_then_follow_ups(tmp_path):
    kinds = RequestKinds()
    planned = plan_requests(load_scenario(_write(tmp_path, RECORDED)))
    assert [kinds.next(request) for request in planned] == ["first", "follow-up"]


def test_a_named_tool_choice_is_kept_on_the_row_as_compact_json():
    assert tool_choice_text({"type": "function", "function": {"name": "Read"}}) == (
        '{"function":{"name":"Read"},"type":"function"}'
    )
    assert tool_choice_text("required") == "required" and tool_choice_text(None) is None


@pytest.mark.parametrize(
    ("turn", "message"),
    [
        ("- request: {model: x}", "non-empty 'messages'"),
        ("- request: {messages: []}", "non-empty 'messages'"),
        ("- request: {messages: [{role: user, content: hi}]}\n    reply: {content: hello}", "drop 'reply'"),
        ("- user: hi\n    response: {}", "only allowed on a 'request' turn"),
        ("- user: hi\n    request: {messages: [{role: user, content: hi}]}", "exactly one of"),
    ],
)
def test_bad_recorded_turns_are_refused_with_the_field_named(tmp_path, turn, message):
    with pytest.raises(ScenarioError, match=message):
        load_scenario(_write(tmp_path, f"name: bad\nturns:\n  {turn}\n"))


# -- the recorded answer as the A/B reference, and the report's per-turn section ----------------------

ANSWER = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there."}, "finish_reason": "stop"}]
}
ONE_TURN = """
name: one
turns:
  - request: {messages: [{role: user, content: hi}], max_tokens: 8}
    response: {choices: [{index: 0, message: {role: assistant, content: Hello there.}, finish_reason: stop}]}
    notes: ["a thinking block left out"]
"""


def _executor(tmp_path, scenario):
    from harness.capture.http import ReplayLimits
    from harness.models.tokens import TokenCounter
    from harness.run.request import ReferenceRows, RequestContext, RequestExecutor
    from harness.server.process import ServerProcess
    from harness.server.spec import ServerSpec

    server = ServerProcess(
        ServerSpec(name="new", label="new", base_url="http://127.0.0.1:9"), "m", tmp_path, tmp_path / "log"
    )
    context = RequestContext(
        "run", tmp_path, server, "m", scenario, "as-recorded", 0, TokenCounter(None), ReplayLimits()
    )
    return RequestExecutor(context, sink=lambda row: None, references=ReferenceRows("legacy"))


@pytest.mark.parametrize(
    ("content", "verdict"), [("Hello there.", "identical"), ("Hello  there.", "equivalent"), ("Bye.", "different")]
)
def test_the_recorded_answer_is_the_ab_reference(tmp_path, content, verdict):
    import json

    from harness.capture.http import CapturedResponse, Timed

    scenario = load_scenario(_write(tmp_path, ONE_TURN))
    request = plan_requests(scenario)[0]
    answer = json.loads(json.dumps(ANSWER))
    answer["choices"][0]["message"]["content"] = content
    answer |= {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
               "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}  # fmt: skip
    timed = Timed(CapturedResponse(stream=False, http_status=200, body=json.dumps(answer).encode()), 0.1, 0.1)
    row = _executor(tmp_path, scenario).build_row(request, "first", timed, started_at=1.0)
    assert (row.ab_reference, row.ab_diff) == ("recorded", verdict)
    assert row.checks_failed == [] and row.content == content


EVIDENCE_500 = 'HTTP 500: b\'{"detail":"Assistant message has both content and tool calls"}\''


def test_the_report_shows_each_recorded_turn_per_server(tmp_path):
    import run_folder

    from harness.core.rows import ResultRow
    from harness.presentation.report import build_report

    def row(server, turn, **fields):
        base = dict(
            run_id="r",
            server=server,
            scenario="one",
            variant="as-recorded",
            turn=turn,
            stream=True,
            request_kind="first" if turn == 0 else "follow-up",
            started_at=float(turn),
            total_s=0.5,
        )
        return ResultRow(**(base | fields))  # fmt: skip

    rows = [
        row("legacy", 0, ab_diff="different", ab_reference="recorded", content="x"),
        row("legacy", 1),
        row("mlx-textgen", 0, ab_diff="identical", ab_reference="recorded", content="Hello there."),
        row("mlx-textgen", 1, error="HTTP 500", http_status=500, checks_failed=["http.status"],
            check_evidence={"http.status": EVIDENCE_500}),
    ]  # fmt: skip
    meta = {"run_id": "r", "status": "complete", "reference_server": "legacy", "servers": {}, "notes": [],
            "recorded_scenarios": {"one": {"source": "imported/one.yaml", "turns": [
                {"turn": 0, "notes": ["a thinking block left out"], "recorded_answer": True},
                {"turn": 1, "notes": ["a thinking block left out"], "recorded_answer": False}]}}}  # fmt: skip
    run_dir = run_folder.write_run(tmp_path / "run", rows, meta)
    markdown = build_report(run_dir)["summary_md"].read_text()
    section = markdown.split("## Recorded sessions", 1)[1]
    assert "### one (2 requests, from `imported/one.yaml`)" in section
    assert '| 1 | follow-up | 0.5 s: ok | 0.5 s: HTTP 500: b\'{"detail":"Assistant message has both' in section
    assert "0.5 s: ok; vs the recorded answer: identical" in section
    assert "- a thinking block left out (2 of 2)" in section
    assert "Recorded sessions" in (run_dir / "report.html").read_text()


def test_the_server_log_line_of_a_failed_request_is_kept():
    from harness.run.request import server_log_error

    log = (
        "INFO: 127.0.0.1 POST /v1/chat/completions 200\n"
        "[ERROR] 2026-11-29 22:50:08 - MLX Textgen - 1 validation error for ChatMessage\n"
        "  Value error, Cannot have both tool_calls and content.\n"
        "Traceback (most recent call last):\n"
    )
    assert server_log_error(log) == (
        "[ERROR] 2026-11-29 22:50:08 - MLX Textgen - 1 validation error for ChatMessage | "
        "Value error, Cannot have both tool_calls and content."
    )
    assert server_log_error("INFO: all fine\n") is None


def test_a_mode_that_turns_streaming_off_drops_stream_options(tmp_path):
    scenario = load_scenario(_write(tmp_path, RECORDED))
    no_stream = plan_requests(scenario, stream=False)[0].body("m")
    assert no_stream["stream"] is False and "stream_options" not in no_stream
    assert plan_requests(scenario, stream=True)[0].body("m")["stream_options"] == {"include_usage": True}


FAMILY = """
name: {name}
family: shapes
unsupported_ok: true
turns:
  - name: first-shape
    request: {{messages: [{{role: user, content: hi}}]}}
    expect: {{content: true}}
"""


def test_a_family_name_selects_every_scenario_of_the_family(tmp_path):
    for name in ("shapes-b", "shapes-a"):
        (tmp_path / f"{name}.yaml").write_text(FAMILY.format(name=name))
    (tmp_path / "other.yaml").write_text("name: other\nturns:\n  - user: hi\n")
    found = resolve_scenarios(["shapes"], tmp_path)
    assert [scenario.name for scenario in found] == ["shapes-a", "shapes-b"]
    assert [scenario.name for scenario in resolve_scenarios(["shapes-b"], tmp_path)] == ["shapes-b"]
    request = plan_requests(found[0])[0]
    assert request.name == "first-shape" and request.unsupported_ok is True and request.expect.content is True
    with pytest.raises(ScenarioError, match="families: shapes"):
        resolve_scenarios(["nothing"], tmp_path)
