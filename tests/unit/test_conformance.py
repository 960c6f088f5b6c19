"""Conformance checks on hand-made responses shaped like each server's (see the server notes)."""

from __future__ import annotations

import json
from typing import Any

from harness.capture.http import CapturedResponse
from harness.checks.conformance import Answer, ab_compare, extract_answer, run_checks
from harness.core.rows import ResultRow
from harness.core.sse import SSEReader
from harness.scenario.definition import Expect, ExpectedCall, PlannedRequest

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "Read",
            "description": "Read a file",
            "parameters": {
                "type": "object",
                "properties": {"file_path": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["file_path"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "Grep", "parameters": {"type": "object", "properties": {"pattern": {"type": "string"}}}},
    },
]

TEXT = "The app defines a small FastAPI service."  # 40 characters -> legacy counts 10 tokens


def request(tools: bool = False, expect: Expect | None = None, **extra: Any) -> PlannedRequest:
    return PlannedRequest(
        scenario="unit",
        turn=0,
        messages=[{"role": "user", "content": "Read src/app.py"}],
        tools=TOOLS if tools else [],
        params={"max_tokens": 32},
        stream=False,
        tool_choice="auto" if tools else None,
        expect=expect,
        **extra,
    )


def body_response(payload: Any, status: int = 200) -> CapturedResponse:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return CapturedResponse(stream=False, http_status=status, body=raw)


def sse_response(events: list[Any], tail: bytes = b"", **kwargs: Any) -> CapturedResponse:
    """Events as the server writes them: dicts become `data: <json>`, strings are sent as given."""
    raw = b""
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        raw += f"data: {data}\n\n".encode()
    raw += tail
    reader = SSEReader()
    # Fed in uneven pieces, the way bytes arrive from a socket.
    for start in range(0, len(raw), 7):
        reader.feed(raw[start : start + 7], 0.01 * start)
    reader.close(1.0)
    return CapturedResponse(stream=True, http_status=200, body=raw, sse=reader, **kwargs)


def check(resp: CapturedResponse, req: PlannedRequest | None = None):
    answer = extract_answer(resp)
    return answer, run_checks(resp, answer, req or request())


# -- OpenAI-correct shapes --------------------------------------------------------------------


def openai_body(
    content: str | None = TEXT, calls: list[dict] | None = None, finish: str | None = "stop", usage: dict | None = None
) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "tiny",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage or {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
    }


def openai_call(name: str, arguments: str, call_id: str = "call_abc") -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def chunk(delta: dict, finish: str | None = None, **extra: Any) -> dict:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "tiny"}
    base.update(extra)
    base["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return base


def test_openai_body_passes():
    answer, outcome = check(body_response(openai_body()))
    assert outcome.failed == []
    assert answer == Answer(TEXT, [], "stop", {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21})


def test_openai_tool_call_body_passes_expectations():
    calls = [openai_call("Read", '{"file_path": "src/app.py", "limit": 5}')]
    expect = Expect(
        tool_calls=[ExpectedCall(name="Read", arguments={"file_path": "src/app.py", "limit": 5})],
        finish_reason="tool_calls",
    )
    answer, outcome = check(body_response(openai_body(None, calls, "tool_calls")), request(True, expect))
    assert outcome.failed == []
    assert outcome.notes == []
    arguments = {"file_path": "src/app.py", "limit": 5}
    assert answer.tool_calls == [{"id": "call_abc", "name": "Read", "arguments": arguments}]


def test_openai_stream_passes():
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in ("The app ", "defines a small ", "FastAPI service.")]
    usage = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
    usage_chunk = {**chunk({}), "choices": [], "usage": usage}  # stream_options.include_usage
    events += [chunk({}, "stop"), usage_chunk, "[DONE]"]
    answer, outcome = check(sse_response(events))
    assert outcome.failed == []
    assert answer == Answer(TEXT, [], "stop", usage)

    usage_chunk["usage"] = {"prompt_tokens": 12, "completion_tokens": 0, "total_tokens": 12}
    _, outcome = check(sse_response(events))
    assert outcome.failed == ["stream.usage_implausible"]


def test_openai_tool_call_stream_passes():
    events = [
        chunk({"role": "assistant", "content": None}),
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_x", "type": "function", "function": {"name": "Read", "arguments": ""}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"file_path"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "a.py"}'}}]}),
        chunk({}, "tool_calls"),
        "[DONE]",
    ]
    expect = Expect(tool_calls=[ExpectedCall(name="Read", arguments={"file_path": "a.py"})])
    answer, outcome = check(sse_response(events), request(True, expect))
    assert outcome.failed == []
    assert answer.tool_calls == [{"id": "call_x", "name": "Read", "arguments": {"file_path": "a.py"}}]


# -- The legacy server ------------------------------------------------------------------------


def legacy_body(content: str = TEXT, calls: list[dict] | None = None) -> dict:
    return {
        "object": "text_completion",
        "model": "tiny",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "tool_calls": calls},
                "finish_reason": "tool_calls" if calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 30,
            "completion_tokens": len(content) // 4,
            "total_tokens": 30 + len(content) // 4,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def legacy_chunk(delta: dict, finish: str | None = None) -> dict:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def legacy_stream(text: str = "", calls: list[tuple[str, dict]] = ()) -> list[Any]:
    events = [legacy_chunk({"role": "assistant"})]
    events += [legacy_chunk({"content": char}) for char in text]
    for i, (name, arguments) in enumerate(calls):
        events.append(
            legacy_chunk(
                {
                    "tool_calls": [
                        {"index": i, "id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": ""}}
                    ]
                }
            )
        )
        events.append(legacy_chunk({"tool_calls": [{"index": i, "function": {"arguments": json.dumps(arguments)}}]}))
    events += [legacy_chunk({}, "tool_calls" if calls else "stop"), "[DONE]"]
    return events


def test_legacy_body_fails_schema_only():
    answer, outcome = check(body_response(legacy_body()))
    assert outcome.failed == ["schema.id_missing", "schema.created_missing", "schema.object_wrong"]
    assert "'text_completion'" in outcome.evidence["schema.object_wrong"]
    assert answer.content == TEXT and answer.finish_reason == "stop"


def test_legacy_usage_of_short_answer_is_implausible():
    # characters / 4 rounds a two-character answer down to zero completion tokens
    _, outcome = check(body_response(legacy_body("Hi")))
    assert outcome.failed == [
        "schema.id_missing",
        "schema.created_missing",
        "schema.object_wrong",
        "schema.usage_implausible",
    ]
    assert "completion_tokens is 0" in outcome.evidence["schema.usage_implausible"]


def test_legacy_fake_stream_text():
    answer, outcome = check(sse_response(legacy_stream(TEXT)))
    assert outcome.failed == ["stream.chunk_id_missing", "stream.chunk_created_missing", "stream.chunk_model_missing"]
    assert outcome.evidence["stream.chunk_id_missing"] == "event 1: no 'id' field"
    assert answer.content == TEXT and answer.finish_reason == "stop"


def test_legacy_fake_stream_tool_calls():
    events = legacy_stream(calls=[("Read", {"file_path": "a.py"}), ("Grep", {"pattern": "def"})])
    expect = Expect(tool_calls=[ExpectedCall(name="Read"), ExpectedCall(name="Grep")], finish_reason="tool_calls")
    answer, outcome = check(sse_response(events), request(True, expect))
    assert outcome.failed == ["stream.chunk_id_missing", "stream.chunk_created_missing", "stream.chunk_model_missing"]
    assert outcome.notes == ["tool.note_ids_repeat_across_turns"]
    assert answer.tool_calls == [
        {"id": "call_0", "name": "Read", "arguments": {"file_path": "a.py"}},
        {"id": "call_1", "name": "Grep", "arguments": {"pattern": "def"}},
    ]


def test_legacy_xml_string_values_are_a_note_but_fail_a_typed_expectation():
    calls = [openai_call("Read", json.dumps({"file_path": "a.py", "limit": "5"}), "call_0")]
    expect = Expect(tool_calls=[ExpectedCall(name="Read", arguments={"file_path": "a.py", "limit": 5})])
    body = openai_body(None, calls, "tool_calls")
    _, outcome = check(body_response(body), request(True, expect))
    assert outcome.failed == ["expect.tool_arguments"]
    assert outcome.evidence["expect.tool_arguments"] == 'Read: limit: expected 5, got "5"'
    assert outcome.notes == ["tool.note_ids_repeat_across_turns", "tool.note_xml_values_strings"]
    assert "integer" in outcome.evidence["tool.note_xml_values_strings"]


def test_canned_fallback_is_a_failure_on_every_request():
    _, outcome = check(body_response(legacy_body("I received 3 message(s) and 0 tool(s) are available.")))
    assert "expect.canned_fallback" in outcome.failed
    _, outcome = check(
        sse_response(legacy_stream("I received 1 message(s) and 2 tool(s) are available.")), request(True)
    )
    assert outcome.failed == [
        "stream.chunk_id_missing",
        "stream.chunk_created_missing",
        "stream.chunk_model_missing",
        "expect.canned_fallback",
    ]


def test_hermes_markup_left_in_content():
    text = '<tool_call>\n{"name": "Read", "arguments": {"file_path": "a.py"}}\n</tool_call>'
    expect = Expect(tool_calls=[ExpectedCall(name="Read")], finish_reason="tool_calls")
    _, outcome = check(body_response(openai_body(text)), request(True, expect))
    assert outcome.failed == ["tool.raw_markup_in_content", "tool.calls_missing", "expect.finish_reason"]
    assert "<tool_call>" in outcome.evidence["tool.calls_missing"]
    assert "not parse" in outcome.evidence["tool.calls_missing"]


# -- MLX-Textgen 0.2.1's streaming tool-call bug ----------------------------------------------


def test_mlx_textgen_empty_stream():
    events = [chunk({"role": "assistant"}), "[DONE]"]
    answer, outcome = check(sse_response(events), request(True))
    assert sorted(outcome.failed) == ["stream.empty", "stream.no_finish_chunk"]
    assert answer == Answer(None, [], None, None)


def test_mlx_textgen_empty_stream_with_expected_call():
    events = [chunk({"role": "assistant"}), "[DONE]"]
    expect = Expect(tool_calls=[ExpectedCall(name="Read")], finish_reason="tool_calls")
    _, outcome = check(sse_response(events), request(True, expect))
    assert outcome.failed == ["stream.no_finish_chunk", "stream.empty", "tool.calls_missing", "expect.finish_reason"]
    assert outcome.evidence["tool.calls_missing"] == "no tool_calls, and no tool-call markup in the text"


# -- Broken streams and bodies ----------------------------------------------------------------


def test_malformed_sse():
    events = [
        chunk({"role": "assistant"}),
        "{not json",
        chunk({"content": "ok"}),
        chunk({}, "stop"),
        "[DONE]",
        chunk({"content": "late"}),
    ]
    resp = sse_response(events, tail=b"garbage line\n\n")
    _, outcome = check(resp)
    assert outcome.failed == ["stream.data_after_done", "stream.framing", "stream.bad_json"]
    assert "garbage line" in outcome.evidence["stream.framing"]
    assert "{not json" in outcome.evidence["stream.bad_json"]


def test_stream_without_done_and_with_two_finish_chunks():
    events = [chunk({"role": "assistant"}), chunk({"content": "ok"}, "stop"), chunk({}, "stop")]
    _, outcome = check(sse_response(events))
    assert outcome.failed == ["stream.no_done", "stream.multiple_finish_chunks"]


def test_stream_tool_delta_without_index_and_bad_arguments():
    events = [
        chunk({"role": "assistant"}),
        chunk({"tool_calls": [{"id": "c1", "type": "function", "function": {"name": "Read", "arguments": '{"file'}}]}),
        chunk({"tool_calls": [{"function": {"arguments": "_path: a.py"}}]}),
        chunk({}, "tool_calls"),
        "[DONE]",
    ]
    answer, outcome = check(sse_response(events), request(True))
    assert outcome.failed == ["stream.tool_delta_no_index", "tool.arguments_not_json"]
    assert answer.tool_calls == [{"id": "c1", "name": "Read", "arguments": '{"file_path: a.py'}]


def test_stream_chunk_object_wrong_and_finish_inconsistent():
    events = [chunk({"role": "assistant"}, object="text_completion"), chunk({"content": "hi"}, "tool_calls"), "[DONE]"]
    _, outcome = check(sse_response(events))
    assert outcome.failed == ["stream.chunk_object_wrong", "stream.finish_reason_inconsistent"]
    assert outcome.evidence["stream.chunk_object_wrong"] == "event 1: object is 'text_completion'"


def test_non_json_body():
    _, outcome = check(body_response(b"<html>Internal error</html>"))
    assert outcome.failed == ["schema.not_json"]
    assert outcome.evidence["schema.not_json"] == "b'<html>Internal error</html>'"


def test_http_500():
    body = {"error": {"message": "boom", "type": "internal_server_error"}}
    answer, outcome = check(body_response(body, status=500))
    assert outcome.failed == ["http.server_error_on_valid_request"]
    assert outcome.evidence["http.server_error_on_valid_request"].startswith('HTTP 500: \'{"error"')
    assert answer == Answer(None, [], None, None)


def test_transport_error_before_any_response():
    resp = CapturedResponse(stream=True, http_status=None, body=b"", transport_error="ConnectError: refused")
    _, outcome = check(resp, request(True, Expect(tool_calls=[ExpectedCall(name="Read")])))
    assert outcome.failed == ["http.server_error_on_valid_request", "http.transport_error"]


def test_connection_reset_mid_stream_keeps_the_partial_answer():
    resp = sse_response([chunk({"role": "assistant"}), chunk({"content": "par"})], transport_error="ReadError: reset")
    answer, outcome = check(resp)
    assert outcome.failed == ["http.server_error_on_valid_request", "http.transport_error"]
    assert answer.content == "par"


def test_runaway_stream_is_not_judged_on_its_missing_end():
    events = [chunk({"role": "assistant"})] + [chunk({"content": "<function=Read>"})] * 3
    resp = sse_response(events, stop_cause="runaway")
    _, outcome = check(resp, request(True, Expect(tool_calls=[ExpectedCall(name="Read")])))
    assert outcome.failed == ["runaway.stopped", "tool.raw_markup_in_content"]
    stalled = sse_response([chunk({"role": "assistant"})], stop_cause="stalled")
    assert check(stalled)[1].failed == ["http.server_error_on_valid_request", "runaway.stalled"]


def test_body_schema_specifics():
    body = openai_body(usage={"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 20})
    body["choices"][0]["finish_reason"] = None
    _, outcome = check(body_response(body))
    assert outcome.failed == ["schema.finish_reason_missing", "schema.usage_implausible"]
    assert outcome.evidence["schema.usage_implausible"] == "total_tokens 20 != 12 + 9"

    body = openai_body()
    del body["usage"]
    body["choices"][0]["message"]["role"] = "bot"
    _, outcome = check(body_response(body))
    assert outcome.failed == ["schema.invalid", "schema.usage_missing"]
    assert outcome.evidence["schema.invalid"].startswith("choices.0.message.role:")

    body = openai_body()
    body["choices"][0]["finish_reason"] = "eos"
    _, outcome = check(body_response(body))
    assert outcome.failed == ["schema.finish_reason_invalid"]
    assert outcome.evidence["schema.finish_reason_invalid"] == "choices.0.finish_reason is 'eos'"


def test_tool_call_problems_in_body():
    calls = [
        openai_call("Read", '{"file_path": "a.py"}', "c1"),
        openai_call("Read", '{"file_path":"a.py"}', "c1"),
        openai_call("Write", "{}", "c3"),
    ]
    _, outcome = check(body_response(openai_body(None, calls, "stop")), request(True))
    assert outcome.failed == [
        "schema.finish_reason_inconsistent",
        "tool.unknown_name",
        "tool.repeated_call",
        "tool.id_duplicate",
    ]
    assert outcome.evidence["tool.repeated_call"] == '2x Read({"file_path":"a.py"})'


def test_expectation_mismatches():
    calls = [openai_call("Grep", '{"pattern": "x"}')]
    expect = Expect(tool_calls=[ExpectedCall(name="Read")], finish_reason="stop")
    _, outcome = check(body_response(openai_body(None, calls, "tool_calls")), request(True, expect))
    assert outcome.failed == ["expect.tool_name", "expect.finish_reason"]
    assert outcome.evidence["expect.tool_name"] == "expected ['Read'], got ['Grep']"

    _, outcome = check(body_response(openai_body(None, calls, "tool_calls")), request(True, Expect(no_tool_calls=True)))
    assert outcome.failed == ["expect.no_tool_calls"]

    _, outcome = check(body_response(openai_body()), request(False, Expect(content_contains="Flask")))
    assert outcome.failed == ["expect.content_contains"]

    calls = [openai_call("Read", '{"limit": 5}')]
    expect = Expect(tool_calls=[ExpectedCall(name="Read", arguments={"file_path": "a.py"})])
    _, outcome = check(body_response(openai_body(None, calls, "tool_calls")), request(True, expect))
    assert outcome.failed == ["expect.tool_arguments"]
    assert outcome.evidence["expect.tool_arguments"] == "Read: file_path: missing"


def test_legacy_cache_hit_stream_is_read():
    # the pre-fix replay format: object text_completion, text and tool calls at choice level
    events = [{"object": "text_completion", "choices": [{"index": 0, "text": TEXT, "finish_reason": "stop"}]}, "[DONE]"]
    answer, outcome = check(sse_response(events))
    assert answer.content == TEXT
    assert sorted(outcome.failed) == [
        "stream.chunk_created_missing",
        "stream.chunk_id_missing",
        "stream.chunk_invalid",
        "stream.chunk_model_missing",
        "stream.chunk_object_wrong",
        "stream.role_missing",
    ]
    assert outcome.evidence["stream.chunk_invalid"] == "event 1: choices.0.delta: Field required"


# -- A/B --------------------------------------------------------------------------------------


def row(
    server: str, content: str | None = TEXT, calls: list[dict] | None = None, finish: str | None = "stop", **extra: Any
) -> ResultRow:
    return ResultRow(
        run_id="r",
        server=server,
        scenario="s",
        turn=0,
        request_kind="first",
        stream=False,
        started_at=0.0,
        content=content,
        tool_calls=calls or [],
        finish_reason=finish,
        **extra,
    )


def test_ab_identical():
    call = [{"id": "call_0", "name": "Read", "arguments": {"file_path": "a.py"}}]
    other = [{"id": "chatcmpl-tool-9", "name": "Read", "arguments": {"file_path": "a.py"}}]
    result = ab_compare(row("legacy", None, call, "tool_calls"), row("mlx", None, other, "tool_calls"))
    assert result == ("identical", "")
    assert ab_compare(row("legacy"), row("mlx"))[0] == "identical"


def test_ab_equivalent():
    verdict, detail = ab_compare(row("legacy", "a  b\n c"), row("mlx", "a b c"))
    assert (verdict, detail) == ("equivalent", "differs only in whitespace in content")
    a = [{"id": "x", "name": "Read", "arguments": {"file_path": "a.py", "limit": 5}}]
    b = [{"id": "y", "name": "Read", "arguments": '{"limit":5,  "file_path":"a.py"}'}]
    verdict, detail = ab_compare(row("legacy", None, a, "tool_calls"), row("mlx", None, b, "tool_calls"))
    assert verdict == "equivalent" and "argument" in detail


def test_ab_different():
    verdict, detail = ab_compare(row("legacy", "The answer is 42."), row("mlx", "The answer is 41."))
    assert verdict == "different"
    assert "content differs at char 15" in detail

    call = [{"id": "x", "name": "Read", "arguments": {"limit": 5}}]
    verdict, detail = ab_compare(row("legacy", None, call, "tool_calls"), row("mlx", "", [], "stop"))
    assert verdict == "different"
    assert detail.splitlines()[0] == "finish_reason: 'tool_calls' vs 'stop'"
    assert "tool_calls: ['Read({\"limit\":5})'] vs []" in detail


def test_ab_rows_with_errors():
    verdict, detail = ab_compare(row("legacy"), row("mlx", None, finish=None, error="HTTP 500: boom"))
    assert verdict == "different" and "mlx" in detail and "HTTP 500: boom" in detail
    assert ab_compare(row("legacy"), row("mlx", http_status=404))[0] == "different"
    assert ab_compare(None, row("mlx")) == ("different", "no reference row")


def test_done_without_its_blank_line_is_a_note_not_a_failure():
    """MLX-Textgen 0.2.1 ends its streams with `data: [DONE]` and no blank line."""
    from harness.capture.http import CapturedResponse
    from harness.checks.conformance import extract_answer, run_checks
    from harness.core.sse import SSEReader
    from harness.scenario.definition import PlannedRequest

    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None}],
    }
    final = dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
    raw = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(final)}\n\ndata: [DONE]".encode()
    reader = SSEReader()
    reader.feed(raw, 0.1)
    reader.close(0.2)
    resp = CapturedResponse(stream=True, http_status=200, body=raw, sse=reader, transport_error=None, stop_cause=None)
    request = PlannedRequest(
        scenario="s", turn=0, messages=[], tools=[], params={}, stream=True, tool_choice=None, expect=None
    )
    outcome = run_checks(resp, extract_answer(resp), request)
    assert outcome.failed == []
    assert any(note.startswith("stream.note_done_unterminated") for note in outcome.notes)


def test_tool_choice_required_demands_a_call_and_lifts_no_tool_calls():
    from harness.capture.http import CapturedResponse
    from harness.checks.conformance import Answer, extract_answer, run_checks
    from harness.scenario.definition import Expect, PlannedRequest

    body = json.dumps(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Yes."}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }
    ).encode()
    resp = CapturedResponse(stream=False, http_status=200, body=body, sse=None, transport_error=None, stop_cause=None)
    tools = [{"type": "function", "function": {"name": "Read", "parameters": {"type": "object", "properties": {}}}}]
    request = PlannedRequest(
        scenario="s",
        turn=4,
        messages=[],
        tools=tools,
        params={},
        stream=False,
        tool_choice="required",
        expect=Expect(no_tool_calls=True),
    )
    text = run_checks(resp, extract_answer(resp), request)
    assert text.failed == ["tool.required_ignored"]
    call = Answer(
        content=None, tool_calls=[{"id": "x", "name": "Read", "arguments": {}}], finish_reason="tool_calls", usage=None
    )
    assert "expect.no_tool_calls" not in run_checks(resp, call, request).failed
