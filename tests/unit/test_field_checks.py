"""The checks the field's own suites run on real clients' requests (vLLM's tool-use and tool-parser
tests, llama.cpp's server tool-call tests): each one fails on a hand-made bad answer and passes on
the good answer next to it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.capture.http import CapturedResponse
from harness.checks.conformance import extract_answer, run_checks
from harness.checks.pairs import is_greedy, stream_pair_difference
from harness.core.sse import SSEReader
from harness.scenario.definition import Expect, PlannedRequest

TOOLS = [
    {"type": "function", "function": {"name": "Read", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "Bash", "parameters": {"type": "object"}}},
]
USAGE = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}


def planned(
    stream: bool = True, tool_choice: Any = "auto", expect: Expect | None = None, history: bool = False, **params: Any
) -> PlannedRequest:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Read a.py and run make"}]
    if history:
        call = {"id": "call_0", "type": "function", "function": {"name": "Read", "arguments": "{}"}}
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_0", "content": "x = 1"},
        ]
    return PlannedRequest(
        scenario="unit",
        turn=0,
        messages=messages,
        tools=TOOLS,
        params={"max_tokens": 32, **params},
        stream=stream,
        tool_choice=tool_choice,
        expect=expect,
        unsupported_ok=True,
    )


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "tiny"}
    base["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    base.update(extra)
    return base


def call_delta(index: int, call_id: str | None = None, name: str | None = None, arguments: str | None = None):
    fragment: dict[str, Any] = {"index": index, "function": {}}
    if call_id:
        fragment.update(id=call_id, type="function")
    if name is not None:
        fragment["function"]["name"] = name
    if arguments is not None:
        fragment["function"]["arguments"] = arguments
    return {"tool_calls": [fragment]}


def stream(events: list[Any], **kwargs: Any) -> CapturedResponse:
    raw = b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events)
    reader = SSEReader()
    reader.feed(raw, 0.0)
    reader.close(1.0)
    return CapturedResponse(stream=True, http_status=200, body=raw, sse=reader, **kwargs)


def body(payload: Any, status: int = 200, **kwargs: Any) -> CapturedResponse:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return CapturedResponse(stream=False, http_status=status, body=raw, **kwargs)


def completion(content: str | None = "done", calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": c.get("id", f"call_{i}x"), "type": "function", "function": {"name": c["name"], "arguments": "{}"}}
            for i, c in enumerate(calls)
        ]
    finish = "tool_calls" if calls else "stop"
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "tiny",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": USAGE,
    }


def failed(resp: CapturedResponse, request: PlannedRequest | None = None) -> list[str]:
    return run_checks(resp, extract_answer(resp), request or planned(stream=resp.stream)).failed


GOOD_CALL_STREAM = [
    chunk({"role": "assistant", "content": None}),
    chunk(call_delta(0, "call_a1", "Read", "")),
    chunk(call_delta(0, arguments='{"file_path": ')),
    chunk(call_delta(0, arguments='"a.py"}')),
    chunk(call_delta(1, "call_a2", "Bash", '{"command": "make"}')),
    chunk(finish="tool_calls"),
    "[DONE]",
]


def test_a_good_streamed_parallel_call_passes_every_check():
    resp = stream(GOOD_CALL_STREAM)
    answer = extract_answer(resp)
    assert [call["name"] for call in answer.tool_calls] == ["Read", "Bash"]
    assert run_checks(resp, answer, planned(history=True)).failed == []


# -- http.server_error_on_valid_request --------------------------------------------------------


@pytest.mark.parametrize(
    ("resp", "evidence"),
    [
        (body({"detail": "Cannot have both text and tool calls"}, status=500), 'HTTP 500: \'{"detail"'),
        (CapturedResponse(stream=True, http_status=200, body=b"data: {", transport_error="peer closed"), "dropped"),
        (CapturedResponse(stream=False, http_status=None, body=b"", transport_error="ConnectError"), "before any"),
        (
            CapturedResponse(stream=True, http_status=200, body=b"", transport_error="no byte", stop_cause="stalled"),
            "hang",
        ),
        (stream([chunk({"role": "assistant"}), {"error": {"message": "boom"}}, "[DONE]"]), "is an error"),
    ],
)
def test_a_5xx_a_dropped_connection_a_hang_or_an_error_event_is_a_server_error(resp, evidence):
    outcome = run_checks(resp, extract_answer(resp), planned(stream=resp.stream))
    assert "http.server_error_on_valid_request" in outcome.failed
    assert evidence in outcome.evidence["http.server_error_on_valid_request"]


def test_a_clear_4xx_is_an_accepted_rejection_but_not_an_unclear_one():
    clear = body({"error": {"message": "image input is not supported", "type": "invalid_request_error"}}, 400)
    outcome = run_checks(clear, extract_answer(clear), planned(stream=False))
    assert outcome.failed == [] and outcome.notes == ["http.note_rejected_as_unsupported"]
    assert outcome.evidence["http.note_rejected_as_unsupported"] == "HTTP 400: image input is not supported"
    fastapi = body({"detail": [{"msg": "Field required", "loc": ["body", "x"]}]}, 422)
    assert run_checks(fastapi, extract_answer(fastapi), planned(stream=False)).notes
    assert failed(body(b"", 400)) == ["http.status"]  # no message: not clear
    assert failed(body({"error": {"message": "no"}}, 404)) == ["http.status"]  # not a rejection status
    strict = planned(stream=False)
    strict.unsupported_ok = False
    assert failed(clear, strict) == ["http.status"]  # the scenario does not accept rejections
    assert failed(body(completion())) == []


# -- the role, the names and the indexes of a stream ---------------------------------------------


def test_the_role_must_come_once():
    no_role = [chunk({"content": "hi"}), chunk(finish="stop"), "[DONE]"]
    assert failed(stream(no_role), planned(tool_choice=None)) == ["stream.role_missing"]
    twice = [
        chunk({"role": "assistant"}),
        chunk({"role": "assistant", "content": "hi"}),
        chunk(finish="stop"),
        "[DONE]",
    ]
    assert failed(stream(twice), planned(tool_choice=None)) == ["stream.role_repeated"]
    once = [chunk({"role": "assistant", "content": "hi"}), chunk(finish="stop"), "[DONE]"]
    assert failed(stream(once), planned(tool_choice=None)) == []


@pytest.mark.parametrize("pieces", [("Re", "ad"), ("Read", "Read")])
def test_a_call_name_must_arrive_whole_and_once(pieces):
    events = [
        chunk({"role": "assistant"}),
        chunk(call_delta(0, "call_a1", pieces[0], "")),
        chunk(call_delta(0, name=pieces[1])),
        chunk(call_delta(0, arguments="{}")),
        chunk(finish="tool_calls"),
        "[DONE]",
    ]
    outcome = run_checks(stream(events), extract_answer(stream(events)), planned())
    assert "stream.tool_name_not_once" in outcome.failed
    assert repr(pieces[0]) in outcome.evidence["stream.tool_name_not_once"]


def test_parallel_calls_need_distinct_indexes():
    events = [
        chunk({"role": "assistant"}),
        chunk(call_delta(0, "call_a1", "Read", '{"file_path": "a.py"}')),
        chunk(call_delta(0, "call_a2", "Bash", '{"command": "make"}')),  # the second call on index 0
        chunk(finish="tool_calls"),
        "[DONE]",
    ]
    outcome = run_checks(stream(events), extract_answer(stream(events)), planned())
    assert "stream.tool_index_reused" in outcome.failed
    assert "'call_a2'" in outcome.evidence["stream.tool_index_reused"]
    no_ids = [
        events[0],
        chunk(call_delta(0, None, "Read", "{}")),
        chunk(call_delta(0, None, "Read", "{}")),
        *events[3:],
    ]
    assert "stream.tool_index_reused" in failed(stream(no_ids))
    assert "stream.tool_index_reused" not in failed(stream(GOOD_CALL_STREAM))


def test_include_usage_puts_usage_in_the_last_chunk():
    request = planned(tool_choice=None, stream_options={"include_usage": True})
    text = [chunk({"role": "assistant", "content": "hi"}), chunk(finish="stop")]
    usage_chunk = {**chunk(), "choices": [], "usage": USAGE}
    assert failed(stream([*text, "[DONE]"]), request) == ["stream.usage_not_in_last_chunk"]
    early = [text[0], {**text[1], "usage": USAGE}, chunk({"content": "!"}), "[DONE]"]
    assert failed(stream(early), request) == ["stream.usage_not_in_last_chunk"]
    assert failed(stream([*text, usage_chunk, "[DONE]"]), request) == []
    assert failed(stream([*text, "[DONE]"]), planned(tool_choice=None)) == []  # not asked for: optional


# -- ids, follow-ups and the request's own parameters --------------------------------------------


def test_an_id_from_the_history_must_not_be_reused():
    reused = completion(None, [{"name": "Bash", "id": "call_0"}])
    outcome = run_checks(body(reused), extract_answer(body(reused)), planned(stream=False, history=True))
    assert outcome.failed == ["tool.id_reused_from_history"]
    fresh = completion(None, [{"name": "Bash", "id": "call_9f2"}])
    assert failed(body(fresh), planned(stream=False, history=True)) == []
    # A positional id not (yet) in the history is only a note: it will repeat on the next turn.
    positional = completion(None, [{"name": "Bash", "id": "call_0"}])
    outcome = run_checks(body(positional), extract_answer(body(positional)), planned(stream=False))
    assert outcome.failed == [] and outcome.notes == ["tool.note_ids_repeat_across_turns"]


def test_the_follow_up_after_a_tool_result_returns_content():
    request = planned(stream=False, history=True, expect=Expect(content=True))
    assert failed(body(completion("")), request) == ["expect.content_empty"]
    assert failed(body(completion(None, [{"name": "Read", "id": "call_1b"}])), request) == ["expect.content_empty"]
    assert failed(body(completion("It defines x.")), request) == []


def test_stop_sequences_must_not_appear_in_the_content():
    request = planned(stream=False, tool_choice=None, stop=[" a ", "."])
    assert failed(body(completion("It is a library.")), request) == ["param.stop_ignored"]
    assert failed(body(completion("It is")), request) == []
    assert failed(body(completion("It is.")), planned(stream=False, tool_choice=None, stop=".")) == [
        "param.stop_ignored"
    ]


def test_tool_choice_none_and_named_are_honoured():
    call = completion(None, [{"name": "Read", "id": "call_1c"}])
    assert failed(body(call), planned(stream=False, tool_choice="none")) == ["tool.choice_none_ignored"]
    assert failed(body(completion("text")), planned(stream=False, tool_choice="none")) == []
    named = {"type": "function", "function": {"name": "Bash"}}
    assert failed(body(call), planned(stream=False, tool_choice=named)) == ["tool.named_choice_ignored"]
    assert failed(body(completion("text")), planned(stream=False, tool_choice=named)) == ["tool.named_choice_ignored"]
    bash = completion(None, [{"name": "Bash", "id": "call_1d"}])
    assert failed(body(bash), planned(stream=False, tool_choice=named)) == []


# -- streamed and non-streamed answers to the same request ---------------------------------------


def test_streamed_calls_must_equal_the_non_streamed_calls():
    read = {"id": "call_s", "name": "Read", "arguments": {"file_path": "a.py", "limit": 5}}
    same = {"id": "other-id", "name": "Read", "arguments": {"limit": 5, "file_path": "a.py"}}
    assert stream_pair_difference([read], [same]) is None  # ids and key order aside
    assert stream_pair_difference([], []) is None
    other = {"id": "x", "name": "Read", "arguments": {"file_path": "b.py", "limit": 5}}
    assert "b.py" in (stream_pair_difference([read], [other]) or "")
    assert (
        stream_pair_difference([], [read])
        == 'streamed: no call; not streamed: [Read({"file_path": "a.py", "limit": 5})]'
    )
    assert is_greedy({"temperature": 0}) and not is_greedy({}) and not is_greedy({"temperature": 0.7})


def test_an_accepted_rejection_is_not_a_failing_row():
    from harness.analysis.summary import row_failures

    row = {"checks_failed": [], "check_notes": ["http.note_rejected_as_unsupported"], "error": "HTTP 400"}
    assert row_failures({**row, "stop_cause": None}) == []
    assert row_failures({**row, "check_notes": [], "stop_cause": None}) == ["request.error"]
