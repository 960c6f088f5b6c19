"""Every check and note the harness can report: what it means, why a client cares, and a minimal
failing answer. docs/checks.md is generated from this module (``harness checks-doc``), and reports
embed the entries of the checks a run failed, so the descriptions cannot drift from the code:

- a unit test runs every example below through the real checks and requires the entry's name among
  the failures (or notes), and every name the checks can emit must have an entry here;
- another fails when docs/checks.md is not what ``render_markdown()`` gives.

An example is the raw answer (a JSON body, or a stream's SSE bytes exactly as sent) plus, where the
check depends on it, what the request asked for. Checks that are not about one exchange (a server
that did not start, the summary's pseudo-checks) have a text example instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

DOC_PATH = "docs/checks.md"
FAMILIES = {
    "http": "the exchange itself",
    "schema": "the shape of a non-streamed answer",
    "stream": "the SSE stream and its chunks",
    "tool": "tool calls",
    "param": "request parameters the answer must honour",
    "expect": "the scenario's expectations for a turn",
    "anthropic": "answers of the Anthropic Messages API (--protocol anthropic)",
    "runaway": "requests the harness had to cut off",
    "request": "summary: rows with an error",
    "stop": "summary: rows the harness cut off",
}


@dataclass(frozen=True)
class Example:
    """A minimal failing exchange.

    ``request``: what was asked, where it matters: ``tools`` ({name: {param: JSON type}}),
    ``tool_choice``, ``params`` (stop, stream_options, temperature), ``expect`` (as in a scenario),
    ``history_ids`` (tool-call ids already in the conversation), ``unsupported_ok``.
    ``partner``: the other mode's answer to the same request (for the pair check).
    """

    answer: str
    stream: bool = False
    status: int | None = 200
    request: dict[str, Any] = field(default_factory=dict)
    transport_error: str | None = None
    stop_cause: str | None = None
    partner: str | None = None
    # The API the answer came through ("anthropic": a Messages API answer, read by checks.messages).
    protocol: str = "openai"
    # The same answer put right: a unit test requires that it does not fail the check.
    fixed: str | None = None


@dataclass(frozen=True)
class CheckDoc:
    name: str
    meaning: str
    why: str
    example: Example | str
    note: bool = False  # a documented quirk that is reported but is not a failure
    # Cosmetic by nature: a metadata field of the answer that clients do not read to build their
    # result (text, tool calls, finish reason). The client replay still decides per client.
    cosmetic: bool = False

    @property
    def anchor(self) -> str:
        return self.name


# --- building blocks of the examples -----------------------------------------------------------

_READ = {"Read": {"file_path": "string"}}


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _body(message: dict[str, Any] | None = None, finish: str | None = "stop", drop: tuple[str, ...] = (), **top: Any):
    """A conformant chat.completion, changed where an example needs it."""
    payload: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": message or {"role": "assistant", "content": "Done."}, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
    }
    payload.update(top)
    for key in drop:
        payload.pop(key, None)
    return _json(payload)


def _call(name: str = "Read", arguments: str = '{"file_path":"a.py"}', call_id: str = "call_a1") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _calls_body(*calls: dict[str, Any], finish: str | None = "tool_calls", content: str | None = None) -> str:
    return _body({"role": "assistant", "content": content, "tool_calls": list(calls)}, finish)


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **top: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    payload["choices"] = [{"index": 0, "delta": delta if delta is not None else {}, "finish_reason": finish}]
    payload.update(top)
    return payload


def _sse(*events: Any) -> str:
    """SSE bytes as a server sends them: each event a ``data:`` line and a blank line."""
    return "".join(f"data: {event if isinstance(event, str) else _json(event)}\n\n" for event in events)


def _stream(*middle: Any, finish: str = "stop") -> str:
    """A conformant stream around ``middle``: the role chunk first, the finish chunk and [DONE] last."""
    return _sse(_chunk({"role": "assistant", "content": ""}), *middle, _chunk(finish=finish), "[DONE]")


def _tool_delta(index: int | None, call_id: str | None = None, name: str | None = None, arguments: str | None = None):
    fragment: dict[str, Any] = {} if index is None else {"index": index}
    if call_id:
        fragment.update(id=call_id, type="function")
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    fragment["function"] = function
    return _chunk({"tool_calls": [fragment]})


def _text(content: str) -> dict[str, Any]:
    return _chunk({"content": content})


# Anthropic Messages API answers: a conformant message, and its stream as a server sends it.
_USAGE = {"input_tokens": 9, "output_tokens": 2}
_READ_INPUT = {"file_path": "a.py"}


def _message(*blocks: dict[str, Any], stop: str | None = "end_turn", drop: tuple[str, ...] = (), **top: Any) -> str:
    payload: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": list(blocks) or [{"type": "text", "text": "Done."}],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": dict(_USAGE),
    }
    payload.update(top)
    for key in drop:
        payload.pop(key, None)
    return _json(payload)


def _tool_use(arguments: Any = None) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "Read",
        "input": _READ_INPUT if arguments is None else arguments,
    }


def _events(*events: dict[str, Any]) -> str:
    """Messages API SSE as a server sends it: an ``event:`` line naming each event, then its data."""
    return "".join(f"event: {event['type']}\ndata: {_json(event)}\n\n" for event in events)


def _start() -> dict[str, Any]:
    message: dict[str, Any] = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": []}
    message.update(stop_reason=None, stop_sequence=None, usage={"input_tokens": 9, "output_tokens": 0})
    return {"type": "message_start", "message": message}


def _block(index: int, block: dict[str, Any], *deltas: dict[str, Any]) -> list[dict[str, Any]]:
    """One content block's events: started, its deltas, stopped."""
    return [
        {"type": "content_block_start", "index": index, "content_block": block},
        *({"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas),
        {"type": "content_block_stop", "index": index},
    ]


def _end(stop: str = "end_turn", output_tokens: int = 2) -> list[dict[str, Any]]:
    return [
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        {"type": "message_stop"},
    ]


def _text_events(text: str = "Done.", stop: str = "end_turn") -> str:
    return _events(
        _start(), *_block(0, {"type": "text", "text": ""}, {"type": "text_delta", "text": text}), *_end(stop)
    )


def _tool_events(*pieces: str) -> str:
    deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
    block = {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}
    return _events(_start(), *_block(0, block, *deltas), *_end("tool_use"))


# --- the catalogue -----------------------------------------------------------------------------

CHECKS: list[CheckDoc] = [
    # http.*
    CheckDoc(
        "http.server_error_on_valid_request",
        "The server answered a valid request with a 5xx, dropped the connection before the answer "
        "ended, went silent (a hang), or sent an error object inside a 200 stream.",
        "The client gets an exception instead of an answer, every time it sends that shape: the "
        "request is its own (its history, its tool schemas), so retrying cannot help. A clear 4xx "
        "would at least tell it what to stop sending.",
        Example('{"detail":"1 validation error for ChatMessage: Cannot have both content and tool_calls"}', status=500),
    ),
    CheckDoc(
        "http.status",
        "A non-200 status that is neither a server error nor a clear rejection the scenario accepts: "
        "a 4xx without a message, or a status such as 401, 404 or 429.",
        "The openai client raises `APIStatusError`; without a message the user cannot tell what to change.",
        Example("", status=400),
    ),
    CheckDoc(
        "http.transport_error",
        "The HTTP exchange did not complete: connection refused or reset, a body cut off, a timeout. "
        "The evidence is the transport's own error.",
        "The client sees a connection error or a half answer; a stream cut mid-call leaves a call "
        "with half its arguments.",
        Example(
            'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"ind',
            stream=True,
            transport_error="RemoteProtocolError: peer closed connection without sending complete message body",
        ),
    ),
    CheckDoc(
        "http.note_rejected_as_unsupported",
        "A clear 4xx (400, 413, 415 or 422 with a message) to a request of a scenario that accepts "
        "such refusals (`unsupported_ok: true`). Reported, not failed.",
        "A clear refusal lets a client adapt (drop the image part, stop sending the field); the "
        "report still lists which shapes a server refuses.",
        Example(
            '{"error":{"message":"image input is not supported by this model","type":"invalid_request_error"}}',
            status=400,
            request={"unsupported_ok": True},
        ),
        note=True,
    ),
    CheckDoc(
        "http.note_dropped_by_scenario",
        "The scenario closed this stream mid-answer on purpose (`drop_stream_after`), as a client whose "
        "user pressed stop does. Reported, not failed: only a 5xx before the cut is a failure.",
        "Clients drop streams all the time; what matters is the next request, which the scenario's "
        "later turns check (e.g. `expect.same_answer`).",
        Example(_sse(_chunk({"role": "assistant"}), _text("Let me")), stream=True, stop_cause="dropped"),
        note=True,
    ),
    CheckDoc(
        "http.server_start",
        "The server did not start (or did not become ready) for this scenario; the row stands for every "
        "request that could not be sent. Written by the run, not by a check on an answer.",
        "Nothing was measured: every figure of that server and scenario is missing.",
        "the server process exited during start-up, or its ready probe never answered within its deadline",
    ),
    # schema.*
    CheckDoc(
        "schema.not_json",
        "A non-streamed 200 whose body is not a JSON object.",
        "`client.chat.completions.create()` fails to parse the answer.",
        Example("<html>Internal error</html>"),
    ),
    CheckDoc(
        "schema.id_missing",
        "The completion has no `id`.",
        "Clients and proxies log, deduplicate and trace answers by id; the openai types require it.",
        Example(_body(drop=("id",))),
        cosmetic=True,
    ),
    CheckDoc(
        "schema.created_missing",
        "The completion has no `created` timestamp.",
        "The openai types require it; strict clients fail validation.",
        Example(_body(drop=("created",))),
        cosmetic=True,
    ),
    CheckDoc(
        "schema.model_missing",
        "The completion has no `model`.",
        "The openai types require it; clients that route or bill by model cannot.",
        Example(_body(drop=("model",))),
        cosmetic=True,
    ),
    CheckDoc(
        "schema.object_wrong",
        'The completion\'s `object` is not "chat.completion".',
        "Clients that dispatch on `object` take it for another kind of answer (the legacy server "
        'answers "text_completion").',
        Example(_body(object="text_completion")),
    ),
    CheckDoc(
        "schema.no_choices",
        "The completion has no `choices`, or an empty list.",
        "`response.choices[0]` raises: there is no answer to read.",
        Example(_body(choices=[])),
    ),
    CheckDoc(
        "schema.invalid",
        "The completion does not validate as `openai.types.chat.ChatCompletion` for a reason no more "
        "specific check names (the evidence gives the field).",
        "Typed clients reject the answer or lose the field.",
        Example(_body({"role": "bot", "content": "Done."})),
    ),
    CheckDoc(
        "schema.finish_reason_invalid",
        "`finish_reason` is a value outside the OpenAI set (stop, length, tool_calls, content_filter, function_call).",
        'Clients branch on the finish reason: an unknown value is neither "done" nor "call the tools".',
        Example(_body(finish="eos")),
    ),
    CheckDoc(
        "schema.choice_index_missing",
        "A choice has no `index`.",
        "Clients match choices (and stream deltas) by index.",
        Example(
            _json(
                {
                    **json.loads(_body()),
                    "choices": [{"message": {"role": "assistant", "content": "Done."}, "finish_reason": "stop"}],
                }
            )
        ),
    ),
    CheckDoc(
        "schema.finish_reason_missing",
        "The choice's `finish_reason` is null or absent in a non-streamed answer.",
        "The client cannot tell a complete answer from a cut-off one, or that it must run tools.",
        Example(_body(finish=None)),
    ),
    CheckDoc(
        "schema.finish_reason_inconsistent",
        '`finish_reason` contradicts the answer: tool calls with "stop", or "tool_calls" without a call.',
        'Agent loops run tools only on "tool_calls": with "stop" the calls are ignored and the turn ends.',
        Example(_calls_body(_call(), finish="stop"), request={"tools": _READ}),
    ),
    CheckDoc(
        "schema.usage_missing",
        "A non-streamed answer has no `usage`.",
        "Clients that count tokens (budgets, context trimming, billing) get nothing.",
        Example(_body(drop=("usage",))),
    ),
    CheckDoc(
        "schema.usage_implausible",
        "`usage` is there but wrong: counts not integers, negative, total not prompt + completion, "
        "a zero prompt, or zero completion tokens for a non-empty answer.",
        "Token budgets and context trimming built on these numbers go wrong.",
        Example(_body(usage={"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 20})),
    ),
    # stream.*
    CheckDoc(
        "stream.chunk_id_missing",
        "A stream chunk has no `id`.",
        "The openai types require it on every chunk; some clients key the stream on it.",
        Example(
            _sse(
                {k: v for k, v in _chunk({"role": "assistant", "content": "Hi"}, "stop").items() if k != "id"}, "[DONE]"
            ),
            stream=True,
        ),
        cosmetic=True,
    ),
    CheckDoc(
        "stream.chunk_created_missing",
        "A stream chunk has no `created`.",
        "The openai types require it; strict clients fail validation of the chunk.",
        Example(
            _sse(
                {k: v for k, v in _chunk({"role": "assistant", "content": "Hi"}, "stop").items() if k != "created"},
                "[DONE]",
            ),
            stream=True,
        ),
        cosmetic=True,
    ),
    CheckDoc(
        "stream.chunk_model_missing",
        "A stream chunk has no `model`.",
        "The openai types require it; strict clients fail validation of the chunk.",
        Example(
            _sse(
                {k: v for k, v in _chunk({"role": "assistant", "content": "Hi"}, "stop").items() if k != "model"},
                "[DONE]",
            ),
            stream=True,
        ),
        cosmetic=True,
    ),
    CheckDoc(
        "stream.chunk_object_wrong",
        'A stream chunk\'s `object` is not "chat.completion.chunk".',
        "Clients that dispatch on `object` drop the chunk: the openai package's stream helper "
        "(`chat.completions.stream`) skips every chunk that is not a `chat.completion.chunk`, so an answer "
        'whose chunks all say "text_completion" (the legacy server\'s) reaches it empty and it raises. '
        "On a usage-only chunk after the finish chunk the client replay finds no client that loses anything.",
        Example(
            _sse(_chunk({"role": "assistant", "content": "Hi"}, "stop", object="text_completion"), "[DONE]"),
            stream=True,
        ),
    ),
    CheckDoc(
        "stream.chunk_invalid",
        "A chunk does not validate as `openai.types.chat.ChatCompletionChunk` for a reason no more "
        "specific check names (e.g. a choice without `delta`).",
        "Typed clients reject the chunk or lose what it carried.",
        Example(
            _sse({**_chunk(), "choices": [{"index": 0, "text": "Hi", "finish_reason": "stop"}]}, "[DONE]"), stream=True
        ),
    ),
    CheckDoc(
        "stream.finish_reason_invalid",
        "A chunk's `finish_reason` is outside the OpenAI set.",
        "The client cannot tell how the answer ended.",
        Example(_sse(_chunk({"role": "assistant", "content": "Hi"}), _chunk(finish="eos"), "[DONE]"), stream=True),
    ),
    CheckDoc(
        "stream.choice_index_missing",
        "A chunk's choice has no `index`.",
        "Clients assemble deltas per choice index.",
        Example(
            _sse(
                {**_chunk(), "choices": [{"delta": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}]},
                "[DONE]",
            ),
            stream=True,
        ),
    ),
    CheckDoc(
        "stream.tool_delta_no_index",
        "A streamed tool-call delta has no `index`.",
        "Clients join a call's fragments by index: without one they cannot tell which call an "
        "argument fragment belongs to.",
        Example(
            _stream(_tool_delta(None, "call_a1", "Read", '{"file_path":"a.py"}'), finish="tool_calls"),
            stream=True,
            request={"tools": _READ},
        ),
    ),
    CheckDoc(
        "stream.data_after_done",
        "Events after `data: [DONE]`.",
        "Clients stop reading at [DONE]: whatever comes after is lost.",
        Example(_sse(_chunk({"role": "assistant", "content": "Hi"}), "[DONE]", _chunk(finish="stop")), stream=True),
    ),
    CheckDoc(
        "stream.note_done_unterminated",
        "The stream ends with `data: [DONE]` and no blank line after it (MLX-Textgen 0.2.1). Reported, not failed.",
        "A strict SSE parser drops an event without its blank line and waits for [DONE]; the openai client does not.",
        Example(_stream(_text("Hi"))[: -len("\n\n")], stream=True),
        note=True,
    ),
    CheckDoc(
        "stream.framing",
        "Bytes that are not SSE: a line that is not a `data:`/`event:`/`id:`/`retry:` field or a "
        "comment, or a stream that ends in the middle of an event.",
        "SSE parsers skip or choke on such lines; what they carried is lost.",
        Example("HELLO\n\n" + _stream(_text("Hi")), stream=True),
    ),
    CheckDoc(
        "stream.bad_json",
        "A `data:` event that is neither JSON nor `[DONE]`.",
        "The openai client raises on the event and the stream is lost.",
        Example(
            _sse(_chunk({"role": "assistant", "content": "Hi"}), "{not json", _chunk(finish="stop"), "[DONE]"),
            stream=True,
        ),
    ),
    CheckDoc(
        "stream.no_done",
        "A complete stream without `data: [DONE]`.",
        "Clients that wait for [DONE] hang until their read timeout.",
        Example(_sse(_chunk({"role": "assistant", "content": "Hi"}), _chunk(finish="stop")), stream=True),
    ),
    CheckDoc(
        "stream.no_finish_chunk",
        "No chunk carries a `finish_reason`.",
        "The client never learns whether to run tools or that the answer is complete.",
        Example(_sse(_chunk({"role": "assistant", "content": "Hi"}), "[DONE]"), stream=True),
    ),
    CheckDoc(
        "stream.empty",
        "A complete stream with no content and no tool call: at most the role chunk (the MLX-Textgen "
        "0.2.1 Hermes bug: role chunk, then [DONE]).",
        "The client gets an empty answer; an agent loop stops as if the model had nothing to say.",
        Example(_sse(_chunk({"role": "assistant"}), "[DONE]"), stream=True),
    ),
    CheckDoc(
        "stream.usage_implausible",
        "A stream's `usage` chunk has wrong numbers (see `schema.usage_implausible`).",
        "Token accounting built on the stream's usage goes wrong.",
        Example(
            _stream(
                _text("Hi"),
                {**_chunk(), "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 99}},
            ),
            stream=True,
        ),
    ),
    CheckDoc(
        "stream.multiple_finish_chunks",
        "More than one chunk carries a `finish_reason`.",
        "Clients finalise the answer (run tools, end the turn) more than once, or on the wrong reason.",
        Example(
            _sse(_chunk({"role": "assistant", "content": "Hi"}, "stop"), _chunk(finish="stop"), "[DONE]"), stream=True
        ),
    ),
    CheckDoc(
        "stream.finish_reason_inconsistent",
        'The stream\'s finish reason contradicts its calls: "stop" after tool calls, or "tool_calls" without one.',
        'Agent loops run tools only on "tool_calls".',
        Example(
            _stream(_tool_delta(0, "call_a1", "Read", '{"file_path":"a.py"}'), finish="stop"),
            stream=True,
            request={"tools": _READ},
        ),
    ),
    CheckDoc(
        "stream.role_missing",
        "No chunk carries `delta.role`.",
        "Clients build the assistant message from the first delta; without a role some (and the "
        "field's test suites) reject the stream.",
        Example(_sse(_chunk({"content": "Hi"}), _chunk(finish="stop"), "[DONE]"), stream=True),
    ),
    CheckDoc(
        "stream.role_repeated",
        "`delta.role` in more than one chunk.",
        "A client that starts a new message on each role delta splits one answer in two.",
        Example(_stream(_chunk({"role": "assistant", "content": "Hi"})), stream=True),
        cosmetic=True,
    ),
    CheckDoc(
        "stream.tool_name_not_once",
        "A call's `function.name` arrives in more than one delta: split in pieces, or repeated whole.",
        "The openai client concatenates every name fragment of an index: a repeated name becomes "
        '"ReadRead", an unknown tool. The field\'s suites require the name whole, once.',
        Example(
            _stream(
                _tool_delta(0, "call_a1", "Read", ""),
                _tool_delta(0, None, "Read", '{"file_path":"a.py"}'),
                finish="tool_calls",
            ),
            stream=True,
            request={"tools": _READ},
        ),
    ),
    CheckDoc(
        "stream.tool_index_reused",
        "A second call starts (a new id, or a name after the first call's arguments) on an index "
        "that already carries a call.",
        "Clients join deltas by index: the two calls merge into one with both argument strings "
        "concatenated, which is not JSON.",
        Example(
            _stream(
                _tool_delta(0, "call_a1", "Read", '{"file_path":"a.py"}'),
                _tool_delta(0, "call_a2", "Read", '{"file_path":"b.py"}'),
                finish="tool_calls",
            ),
            stream=True,
            request={"tools": _READ},
        ),
    ),
    CheckDoc(
        "stream.tool_id_changed",
        "A later delta of the same call (same `index`, no new name) carries another `id` than the one "
        "the call was announced with.",
        "A client that keys calls by id splits one call in two, or answers it under an id the server "
        "never gave it; the tool result then matches no call.",
        Example(
            _stream(
                _tool_delta(0, "call_a1", "Read", '{"file_path":'),
                _tool_delta(0, "call_b7", None, '"a.py"}'),
                finish="tool_calls",
            ),
            stream=True,
            request={"tools": _READ},
            fixed=_stream(
                _tool_delta(0, "call_a1", "Read", '{"file_path":'),
                _tool_delta(0, "call_a1", None, '"a.py"}'),
                finish="tool_calls",
            ),
        ),
    ),
    CheckDoc(
        "stream.usage_not_in_last_chunk",
        "The request set `stream_options: {include_usage: true}` and the last chunk before [DONE] "
        "carries no `usage` (or no chunk does).",
        "Clients read usage from the last chunk (the openai client's `stream.get_final_completion()`, "
        "cost trackers); elsewhere it is missed.",
        Example(_stream(_text("Hi")), stream=True, request={"params": {"stream_options": {"include_usage": True}}}),
    ),
    # tool.*
    CheckDoc(
        "tool.raw_markup_in_content",
        "The text holds tool-call markup of a known dialect (`<tool_call>`, `<function=`, Harmony "
        "`<|channel|>`, ...) that the server did not turn into `tool_calls`.",
        "The client shows the markup to the user as text and never runs the tool.",
        Example(
            _body(
                {
                    "role": "assistant",
                    "content": '<tool_call>{"name":"Read","arguments":{"file_path":"a.py"}}</tool_call>',
                }
            ),
            request={"tools": _READ},
        ),
    ),
    CheckDoc(
        "tool.calls_missing",
        "The turn expects a tool call and the answer has none.",
        "The agent does not act: the file is not read, the command not run.",
        Example(_body(), request={"tools": _READ, "expect": {"tool_calls": [{"name": "Read"}]}}),
    ),
    CheckDoc(
        "tool.unknown_name",
        "A call names a tool that the request did not offer.",
        "The client has no such tool to run; agents answer with an error turn or stop.",
        Example(_calls_body(_call("Delete")), request={"tools": _READ}),
    ),
    CheckDoc(
        "tool.repeated_call",
        "The same call (name and arguments) more than once in one answer.",
        "The tool runs twice (twice the side effects), a sign of a runaway generation.",
        Example(_calls_body(_call(), _call(call_id="call_a2")), request={"tools": _READ}),
    ),
    CheckDoc(
        "tool.arguments_not_json",
        "A call's `arguments` is not a JSON object string.",
        "`json.loads(call.function.arguments)` raises in the client.",
        Example(_calls_body(_call(arguments="file_path=a.py")), request={"tools": _READ}),
    ),
    CheckDoc(
        "tool.id_missing",
        "A call has no `id`.",
        "The client cannot answer it: a tool message needs the `tool_call_id` it answers.",
        Example(
            _calls_body({"type": "function", "function": {"name": "Read", "arguments": '{"file_path":"a.py"}'}}),
            request={"tools": _READ},
        ),
    ),
    CheckDoc(
        "tool.id_duplicate",
        "Two calls of one answer share an id.",
        "The two tool results cannot be told apart: one answers both calls.",
        Example(_calls_body(_call(), _call(arguments='{"file_path":"b.py"}')), request={"tools": _READ}),
    ),
    CheckDoc(
        "tool.id_reused_from_history",
        "A call's id is one already used earlier in the conversation (e.g. positional `call_0` on every turn).",
        "Clients and proxies that key tool results by id (or convert to APIs that require unique "
        "ids) pair the new call with the old result, or reject the conversation.",
        Example(_calls_body(_call(call_id="call_0")), request={"tools": _READ, "history_ids": ["call_0"]}),
    ),
    CheckDoc(
        "tool.required_ignored",
        '`tool_choice: "required"` and the answer has no call.',
        "The client asked for a call because its loop needs one; a text answer stalls it.",
        Example(_body(), request={"tools": _READ, "tool_choice": "required"}),
    ),
    CheckDoc(
        "tool.choice_none_ignored",
        '`tool_choice: "none"` and the answer calls a tool.',
        "The client said it will not run tools now (e.g. it wants a summary); the calls go unanswered.",
        Example(_calls_body(_call()), request={"tools": _READ, "tool_choice": "none"}),
    ),
    CheckDoc(
        "tool.named_choice_ignored",
        "`tool_choice` names one function and the answer does not call (only) that function.",
        "Clients force a named tool for structured output or a fixed step; anything else breaks that step.",
        Example(_body(), request={"tools": _READ, "tool_choice": {"type": "function", "function": {"name": "Read"}}}),
    ),
    CheckDoc(
        "tool.stream_arguments_differ",
        "The streamed and the non-streamed answers to the same greedy request (temperature 0) make "
        "different calls (names or arguments; ids aside). Found by pairing the two rows in the run; "
        "it goes on the row answered second.",
        "A client that switches streaming on or off (many do per request) gets different tool calls, "
        "so it works streamed and breaks non-streamed, or the other way round.",
        Example(
            _stream(_tool_delta(0, "call_a1", "Read", '{"file_path":"a.py"}'), finish="tool_calls"),
            stream=True,
            request={"tools": _READ},
            partner=_calls_body(_call(arguments='{"file_path":"b.py"}')),
        ),
    ),
    CheckDoc(
        "tool.note_ids_repeat_across_turns",
        "Positional call ids (`call_0`, `call_1`, ...) that restart in every answer. Reported, not "
        "failed: the failure comes when one is reused (`tool.id_reused_from_history`).",
        "The next turn's calls will carry ids the conversation already holds.",
        Example(_calls_body(_call(call_id="call_0")), request={"tools": _READ}),
        note=True,
    ),
    CheckDoc(
        "tool.note_xml_values_strings",
        "An argument the schema types as a number, boolean, array or object comes back as a string "
        "(how Qwen XML calls carry every value). Reported, not failed.",
        'A client that validates against the schema rejects `"limit": "5"`; most pass it on.',
        Example(
            _calls_body(_call(arguments='{"file_path":"a.py","limit":"5"}')),
            request={"tools": {"Read": {"file_path": "string", "limit": "integer"}}},
        ),
        note=True,
    ),
    # param.*
    CheckDoc(
        "param.stop_ignored",
        "A stop sequence of the request appears in the content (generation must end before it, and "
        "the answer never contains it).",
        "Clients use stop sequences to end at a delimiter they then parse; text past it breaks the parsing.",
        Example(_body({"role": "assistant", "content": "It is a library."}), request={"params": {"stop": ["."]}}),
    ),
    # expect.*
    CheckDoc(
        "expect.tool_name",
        "The calls' names (in order) are not the ones the turn expects.",
        "The agent runs the wrong tool.",
        Example(
            _calls_body(_call("Grep", '{"pattern":"x"}')),
            request={"tools": {**_READ, "Grep": {"pattern": "string"}}, "expect": {"tool_calls": [{"name": "Read"}]}},
        ),
    ),
    CheckDoc(
        "expect.tool_arguments",
        'An expected call\'s arguments miss a key or carry another value ("5" is not 5).',
        "The tool runs on the wrong file or command. On the tiny tool models this can be the model's "
        "doing: compare with the reference server's row.",
        Example(
            _calls_body(_call(arguments='{"file_path":"b.py"}')),
            request={"tools": _READ, "expect": {"tool_calls": [{"name": "Read", "arguments": {"file_path": "a.py"}}]}},
        ),
    ),
    CheckDoc(
        "expect.no_tool_calls",
        "The turn expects plain text (a question) and the answer calls a tool.",
        "The agent runs a tool nobody asked for instead of answering.",
        Example(_calls_body(_call()), request={"tools": _READ, "expect": {"no_tool_calls": True}}),
    ),
    CheckDoc(
        "expect.content_contains",
        "The content lacks the text the turn expects.",
        "The answer is not the one the scenario was written for.",
        Example(_body(), request={"expect": {"content_contains": "passed"}}),
    ),
    CheckDoc(
        "expect.content_empty",
        "The turn expects text (e.g. the follow-up after a tool result) and the answer has none.",
        "After running a tool the agent shows the user nothing; the field's suites require content here.",
        Example(_body({"role": "assistant", "content": ""}), request={"expect": {"content": True}}),
    ),
    CheckDoc(
        "expect.finish_reason",
        'The finish reason is not the one the turn expects (e.g. "length" when max_tokens is reached).',
        'A client that sees "stop" where the answer was cut at max_tokens takes a truncated answer for a whole one.',
        Example(_body(), request={"expect": {"finish_reason": "length"}}),
    ),
    CheckDoc(
        "expect.canned_fallback",
        "The answer is the legacy server's canned text for a failed generation (\"I received N "
        'message(s) and M tool(s) are available.") sent with a 200.',
        "The failure looks like an answer: fast, successful, and meaningless.",
        Example(_body({"role": "assistant", "content": "I received 3 message(s) and 2 tool(s) are available."})),
    ),
    CheckDoc(
        "expect.same_answer",
        "A greedy request asked again in the same session (`expect: {same_answer_as: N}`) got another "
        "answer (text or calls) than turn N did. Judged in the run, which holds both answers; what came "
        "between (another request, a stream dropped mid-answer) must not change it.",
        "At temperature 0 the same prompt gives the same answer; a different one means the server "
        "answered from a prompt cache that kept what it should not have: wrong output, silently.",
        'turn 0 `Please read src/app.py.` -> `Read({"file_path": "src/app.py"})`; turn 1 streamed, '
        "dropped after 3 events; turn 2, turn 0 asked again -> `'<|endoftext|>This is an example'`",
    ),
    # anthropic.*
    CheckDoc(
        "anthropic.message_invalid",
        "A Messages API answer (the body, or what its stream adds up to) is not a `Message` of the "
        "`anthropic` package: a wrong `type` or `role`, a missing `id` or `model`, content that is not "
        "a list of `text` / `tool_use` / `thinking` blocks, or a block missing a field of its type.",
        "The official clients parse the answer into these types; Claude Code and the SDKs drop or "
        "choke on an answer that is not one.",
        Example(
            _message(role="user"),
            protocol="anthropic",
            fixed=_message(),
        ),
    ),
    CheckDoc(
        "anthropic.stop_reason_invalid",
        "`stop_reason` is missing, null in the final message, or not one of the documented values "
        "(`end_turn`, `max_tokens`, `stop_sequence`, `tool_use`, `pause_turn`, `refusal`, ...).",
        "A client decides what to do next from `stop_reason` (run the tools, continue, stop); an "
        "OpenAI `finish_reason` such as `stop` leaked through a conversion is not one of them.",
        Example(_message(stop="stop"), protocol="anthropic", fixed=_message()),
    ),
    CheckDoc(
        "anthropic.usage_invalid",
        "`usage` is missing or not the documented object (`input_tokens`, `output_tokens`, integers).",
        "Clients count context and cost from it, and the cache-reuse evidence (`cache_read_input_tokens`) lives there.",
        Example(_message(drop=("usage",)), protocol="anthropic", fixed=_message()),
    ),
    CheckDoc(
        "anthropic.tool_use_invalid",
        "A `tool_use` block lacks its `id` or `name`, or its `input` is not a JSON object (e.g. the "
        "arguments as a JSON string, the OpenAI way).",
        "The client runs the tool with `input` as its arguments and answers with a `tool_result` "
        "naming the `id`: without them the call cannot be run or answered.",
        Example(
            _message(_tool_use('{"file_path":"a.py"}'), stop="tool_use"),
            protocol="anthropic",
            request={"tools": _READ},
            fixed=_message(_tool_use(), stop="tool_use"),
        ),
    ),
    CheckDoc(
        "anthropic.stream_event_invalid",
        "A stream event is not valid JSON, is not a Messages event of the `anthropic` package "
        "(`message_start`, `content_block_start`, `content_block_delta`, `content_block_stop`, "
        "`message_delta`, `message_stop`, `ping`, `error`), or lacks a field of its type (e.g. a delta "
        "without its block `index`).",
        "The SDKs' stream readers parse every event into these types and stop at one they cannot read.",
        Example(
            _events(
                _start(),
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Done."}},
                {"type": "content_block_stop", "index": 0},
                *_end(),
            ),
            stream=True,
            protocol="anthropic",
            fixed=_text_events(),
        ),
    ),
    CheckDoc(
        "anthropic.stream_event_order",
        "The stream's events are out of order: not `message_start` first; a block delta'd or stopped "
        "that is not open, started out of index order or while another is open, or given another "
        "block kind's delta; no `message_delta` with `stop_reason` and usage after the last block; "
        "no `message_stop` at the end, or an event after it (`ping` may come anywhere).",
        "Clients build the message from this sequence: a missing `message_delta` leaves them without "
        "a `stop_reason`, a missing `message_stop` leaves them waiting, a block never started is lost.",
        Example(
            _events(_start(), *_block(0, {"type": "text", "text": ""}, {"type": "text_delta", "text": "Done."})),
            stream=True,
            protocol="anthropic",
            fixed=_text_events(),
        ),
    ),
    CheckDoc(
        "anthropic.input_json_invalid",
        "The `input_json_delta` pieces of a streamed `tool_use` block do not join to a JSON object "
        "(the non-streamed `input` is one); whether they join to the same object as the non-streamed "
        "answer is `tool.stream_arguments_differ`, where a scenario is played both ways.",
        "The client parses the joined pieces as the tool's arguments: text that is not a JSON object "
        "makes the call fail.",
        Example(
            _tool_events('{"file_path":', '"a.py"'),
            stream=True,
            protocol="anthropic",
            request={"tools": _READ},
            fixed=_tool_events('{"file_path":', '"a.py"}'),
        ),
    ),
    CheckDoc(
        "anthropic.stop_reason_inconsistent",
        "The answer has a `tool_use` block but `stop_reason` is not `tool_use`, or `stop_reason` is "
        "`tool_use` with no `tool_use` block.",
        "Claude Code runs tools only when `stop_reason` is `tool_use`; with `end_turn` the call is "
        "ignored and the agent stops mid-task.",
        Example(
            _message(_tool_use(), stop="end_turn"),
            protocol="anthropic",
            request={"tools": _READ},
            fixed=_message(_tool_use(), stop="tool_use"),
        ),
    ),
    CheckDoc(
        "anthropic.max_tokens_exceeded",
        "`usage.output_tokens` is above the request's `max_tokens`.",
        "`max_tokens` is how a client bounds an answer's length and cost; a server that goes past it "
        "(or miscounts) breaks the client's budget.",
        Example(
            _message(usage={"input_tokens": 9, "output_tokens": 20}, stop="max_tokens"),
            protocol="anthropic",
            request={"params": {"max_tokens": 16}},
            fixed=_message(usage={"input_tokens": 9, "output_tokens": 16}, stop="max_tokens"),
        ),
    ),
    CheckDoc(
        "anthropic.tool_call_as_text",
        "A tool call arrives as text: a text block holds tool-call markup (`<tool_call>`, ...) or a "
        "JSON object naming one of the offered tools, instead of a `tool_use` block.",
        "The agent shows the call to the user instead of running it, and the task stops.",
        Example(
            _text_events('<tool_call>{"name": "Read", "arguments": {"file_path": "a.py"}}</tool_call>'),
            stream=True,
            protocol="anthropic",
            request={"tools": _READ},
            fixed=_tool_events('{"file_path":', '"a.py"}'),
        ),
    ),
    # runaway.*
    CheckDoc(
        "runaway.stopped",
        "The harness cut the request off: too many stream events, a tool call repeated again and "
        "again, tool-call markup repeated in the text, or the whole-request budget spent.",
        "A client without such a guard waits for (and pays for) the whole runaway generation.",
        Example(
            _sse(_chunk({"role": "assistant"}), *[_text("<function=Read>")] * 3),
            stream=True,
            transport_error="tool-call markup '<function=' repeated more than 16 times",
            stop_cause="runaway",
        ),
    ),
    CheckDoc(
        "runaway.stalled",
        "The stream (or body) sent no byte for the idle timeout and the harness gave up.",
        "A client without a read timeout hangs for ever.",
        Example(
            _sse(_chunk({"role": "assistant"})), stream=True, transport_error="no byte for 120 s", stop_cause="stalled"
        ),
    ),
    # summary pseudo-checks
    CheckDoc(
        "request.error",
        "The row has an error: no 200 (other than a clear rejection the scenario accepts), a "
        "transport error, or the server died during the request. Added by the summary to the row's checks.",
        "The request produced no usable answer; its latency is left out of every figure.",
        'a row with "error": "HTTP 500" or "RemoteProtocolError: peer closed connection ..."',
    ),
    CheckDoc(
        "stop.runaway",
        "The harness cut the request off as a runaway (see `runaway.stopped`); added by the summary.",
        "The request's duration is only a lower bound and is left out of the latency figures.",
        'a row with "stop_cause": "runaway"',
    ),
    CheckDoc(
        "stop.stalled",
        "The harness gave up on a silent request (see `runaway.stalled`); added by the summary.",
        "The request's duration is only a lower bound and is left out of the latency figures.",
        'a row with "stop_cause": "stalled"',
    ),
]

BY_NAME: dict[str, CheckDoc] = {doc.name: doc for doc in CHECKS}

COSMETIC_TEXT = (
    "**Cosmetic.** The openai Python client and the AI SDK build the same text, tool calls and finish "
    "reason from this answer as from a conformant one (a unit test replays the example above through "
    "them); a strict validator may still reject it. The client replay of a run decides per client "
    "(docs/clients.md)."
)


def entry(name: str) -> CheckDoc | None:
    return BY_NAME.get(name)


# --- rendering ---------------------------------------------------------------------------------


def request_text(request: dict[str, Any]) -> str:
    """The parts of the request an example depends on, in one line."""
    parts = []
    if request.get("tools"):
        parts.append("tools " + ", ".join(request["tools"]))
    if "tool_choice" in request:
        parts.append(f"tool_choice {_json(request['tool_choice'])}")
    for key, value in (request.get("params") or {}).items():
        parts.append(f"{key} {_json(value)}")
    if request.get("history_ids"):
        parts.append("ids already in the history: " + ", ".join(request["history_ids"]))
    if request.get("expect"):
        parts.append(f"the turn expects {_json(request['expect'])}")
    if request.get("unsupported_ok"):
        parts.append("the scenario accepts a clear 4xx (unsupported_ok)")
    return "; ".join(parts)


def example_lines(doc: CheckDoc) -> list[str]:
    """The minimal failing answer as markdown lines: what was asked, then the answer in a code block."""
    example = doc.example
    label = "**Example.**" if doc.note else "**Minimal failing answer.**"
    if isinstance(example, str):
        return [f"{label} {example}."]
    asked = request_text(example.request)
    head = f"HTTP {example.status}" if example.status is not None else "no status"
    what = [head, "a stream" if example.stream else "a body"]
    if example.transport_error:
        what.append(f"then {example.transport_error}")
    if example.stop_cause:
        what.append(f"cut off by the harness ({example.stop_cause})")
    lines = [f"{label} {'Request: ' + asked + '. ' if asked else ''}Answer: {', '.join(what)}:"]
    lines += ["", "```", example.answer.rstrip("\n") if example.answer else "(empty body)", "```"]
    if example.partner:
        lines += ["", "The same request, not streamed:", "", "```", example.partner, "```"]
    if example.fixed:
        lines += ["", "**A passing answer.**", "", "```", example.fixed.rstrip("\n"), "```"]
    return lines


def entry_markdown(doc: CheckDoc, level: int = 3) -> str:
    kind = " (note)" if doc.note else (" (cosmetic)" if doc.cosmetic else "")
    lines = [f'<a id="{doc.anchor}"></a>', "", f"{'#' * level} `{doc.name}`{kind}", "", doc.meaning, ""]
    lines += [f"**Why a client cares.** {doc.why}", ""]
    if doc.cosmetic:
        lines += [COSMETIC_TEXT, ""]
    lines += example_lines(doc)
    return "\n".join(lines)


def render_markdown() -> str:
    """docs/checks.md."""
    out = [
        "# Checks",
        "",
        "Every check and note the harness reports, grouped by family: what it means, why a client "
        "cares, and a minimal failing answer. Generated from `harness/checks/catalogue.py` by "
        "`harness checks-doc`; do not edit by hand (a unit test fails when this file is stale, "
        "another runs every example below through the checks).",
        "",
        "A check fails a request; a note is a documented quirk, reported but not failed. A cosmetic "
        "check is about a field no replayed client reads to build its result.",
        "",
    ]
    for family, title in FAMILIES.items():
        docs = [doc for doc in CHECKS if doc.name.split(".")[0] == family]
        if not docs:
            continue
        out += [f"## {family}.* — {title}", ""]
        out += [
            f"- [`{doc.name}`](#{doc.anchor})"
            + (" (note)" if doc.note else "")
            + (" (cosmetic)" if doc.cosmetic else "")
            for doc in docs
        ]
        out.append("")
        for doc in docs:
            out += [entry_markdown(doc), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.checks.catalogue [OUT]``: writes docs/checks.md (or OUT)."""
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else DOC_PATH)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(), encoding="utf-8")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
