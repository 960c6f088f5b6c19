"""Recorded scenarios: each turn a whole request body, replayed exactly as recorded."""

from __future__ import annotations

import textwrap

import pytest

from harness.run.request import tool_choice_text
from harness.scenario.definition import RequestKinds, ScenarioError, Variant, load_scenario, plan_requests

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
