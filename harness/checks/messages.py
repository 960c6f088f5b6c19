"""Checks on an answer of the Anthropic Messages API (``--protocol anthropic``): what the official
``anthropic`` client would read, and what it would trip over.

``extract_answer`` reads a Messages object, or adds a stream's events up to one, into the same
``Answer`` the OpenAI path gives (text blocks joined, each ``tool_use`` block a call, ``stop_reason``
as the matching ``finish_reason``: ``tool_use`` -> ``tool_calls``, ``max_tokens`` -> ``length``,
``end_turn`` / ``stop_sequence`` -> ``stop``), so the tool, request-rule and expectation checks and
every report read both protocols alike. ``run_checks`` adds the ``anthropic.*`` family:

- the message shape, validated block by block against the ``anthropic`` package's own types
  (``Message``, ``TextBlock``, ``ToolUseBlock``, ...), never a hand-written schema;
- the stream's event order (``message_start``; each block started, delta'd with its own kind of
  delta and stopped, in index order; ``message_delta`` with ``stop_reason`` and usage;
  ``message_stop`` last; ``ping`` anywhere), each event validated against its SDK type;
- ``input_json_delta`` pieces joining to a JSON object;
- ``stop_reason: "tool_use"`` exactly when a ``tool_use`` block is present;
- ``max_tokens`` honoured (``usage.output_tokens`` at most the request's ``max_tokens``);
- a tool call never delivered as text (tool-call markup, or a JSON object naming an offered tool,
  in a text block).

Reuse evidence: ``usage.cache_read_input_tokens`` is the protocol layer's count of cached tokens
(``harness.run.request`` reads it through ``usage_figures``).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.capture.http import CapturedResponse
from harness.checks import conformance, exchange, toolcalls
from harness.checks.outcome import Answer, CheckOutcome, short
from harness.core.sse import SSEReader
from harness.scenario.anthropic import STOP_REASONS
from harness.scenario.definition import PlannedRequest

MESSAGE_INVALID = "anthropic.message_invalid"
STOP_REASON_INVALID = "anthropic.stop_reason_invalid"
USAGE_INVALID = "anthropic.usage_invalid"
TOOL_USE_INVALID = "anthropic.tool_use_invalid"
STREAM_EVENT_INVALID = "anthropic.stream_event_invalid"
STREAM_EVENT_ORDER = "anthropic.stream_event_order"
INPUT_JSON_INVALID = "anthropic.input_json_invalid"
STOP_REASON_INCONSISTENT = "anthropic.stop_reason_inconsistent"
MAX_TOKENS_EXCEEDED = "anthropic.max_tokens_exceeded"
TOOL_CALL_AS_TEXT = "anthropic.tool_call_as_text"


@cache
def sdk_types() -> tuple[type[BaseModel], dict[str, type[BaseModel]], dict[str, type[BaseModel]]]:
    """The SDK's ``Message``, its type of each content block a model answers with, and of each
    stream event ("ping" and "error" carry nothing to validate beyond their type). Imported on first
    use: the anthropic package takes a second or more to import, which no OpenAI-only run should pay."""
    from anthropic.types import (
        Message,
        RawContentBlockDeltaEvent,
        RawContentBlockStartEvent,
        RawContentBlockStopEvent,
        RawMessageDeltaEvent,
        RawMessageStartEvent,
        RawMessageStopEvent,
        RedactedThinkingBlock,
        TextBlock,
        ThinkingBlock,
        ToolUseBlock,
    )

    blocks: dict[str, type[BaseModel]] = {
        "text": TextBlock,
        "tool_use": ToolUseBlock,
        "thinking": ThinkingBlock,
        "redacted_thinking": RedactedThinkingBlock,
    }
    events: dict[str, type[BaseModel]] = {
        "message_start": RawMessageStartEvent,
        "message_delta": RawMessageDeltaEvent,
        "message_stop": RawMessageStopEvent,
        "content_block_start": RawContentBlockStartEvent,
        "content_block_delta": RawContentBlockDeltaEvent,
        "content_block_stop": RawContentBlockStopEvent,
    }
    return Message, blocks, events


# The delta kinds each block kind may receive.
DELTAS_OF = {
    "text": {"text_delta", "citations_delta"},
    "tool_use": {"input_json_delta"},
    "thinking": {"thinking_delta", "signature_delta"},
    "redacted_thinking": set(),
}


# ----------------------------------------------------------------------------------------------
# Reading the answer


def assemble_stream(reader: SSEReader) -> tuple[dict[str, Any] | None, dict[int, str]]:
    """The Messages object a stream adds up to (None when it has no ``message_start``), and each
    tool_use block's ``partial_json`` pieces joined, by block index."""
    message: dict[str, Any] | None = None
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    for event in reader.events:
        payload = event.payload or {}
        kind = payload.get("type")
        if kind == "message_start" and isinstance(payload.get("message"), dict):
            message = {**payload["message"], "content": []}
        elif kind == "content_block_start" and isinstance(payload.get("content_block"), dict):
            blocks[_index(payload)] = dict(payload["content_block"])
        elif kind == "content_block_delta" and isinstance(payload.get("delta"), dict):
            index, delta = _index(payload), payload["delta"]
            block = blocks.setdefault(index, {"type": "text", "text": ""})
            if delta.get("type") == "text_delta":
                block["text"] = str(block.get("text") or "") + str(delta.get("text") or "")
            elif delta.get("type") == "input_json_delta":
                partial[index] = partial.get(index, "") + str(delta.get("partial_json") or "")
            elif delta.get("type") == "thinking_delta":
                block["thinking"] = str(block.get("thinking") or "") + str(delta.get("thinking") or "")
            elif delta.get("type") == "signature_delta":
                block["signature"] = str(block.get("signature") or "") + str(delta.get("signature") or "")
        elif kind == "message_delta" and message is not None:
            if isinstance(payload.get("delta"), dict):
                message.update({key: value for key, value in payload["delta"].items() if value is not None})
            if isinstance(payload.get("usage"), dict):
                usage = {key: value for key, value in payload["usage"].items() if value is not None}
                message["usage"] = {**(message.get("usage") or {}), **usage}
    if message is None:
        return None, partial
    for index, joined in partial.items():
        try:
            blocks[index]["input"] = json.loads(joined) if joined else {}
        except ValueError:
            blocks[index]["input"] = joined  # kept as text: input_json_invalid says so
    message["content"] = [blocks[index] for index in sorted(blocks)]
    return message, partial


def _index(payload: dict[str, Any]) -> int:
    index = payload.get("index")
    return index if isinstance(index, int) else -1


def answer_message(resp: CapturedResponse) -> dict[str, Any] | None:
    """The Messages object of an answer (the body, or the stream added up), None if there is none."""
    if resp.http_status is not None and resp.http_status != 200:
        return None
    if resp.stream:
        return assemble_stream(conformance.stream_reader(resp))[0]
    try:
        payload = json.loads(resp.body or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def extract_answer(resp: CapturedResponse) -> Answer:
    """What a client of the Messages API read, as the ``Answer`` the OpenAI path gives (see the
    module docstring); never raises."""
    message = answer_message(resp)
    if message is None:
        return Answer(None, [], None, None)
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            arguments = block.get("input")
            calls.append(
                {
                    "id": block.get("id"),
                    "name": str(block.get("name") or ""),
                    "arguments": arguments if isinstance(arguments, dict) else toolcalls.parse_arguments(arguments),
                }
            )
    stop = message.get("stop_reason")
    finish = STOP_REASONS.get(stop, stop) if isinstance(stop, str) else None
    usage = message.get("usage") if isinstance(message.get("usage"), dict) else None
    return Answer("".join(texts) if texts else None, calls, finish, usage)


def usage_figures(usage: dict[str, Any] | None) -> tuple[int | None, int | None, int | None]:
    """(prompt tokens, completion tokens, cached tokens) of a Messages ``usage``: the prompt is
    ``input_tokens`` plus the cache reads and writes (the whole prompt, cached part included), the
    cached tokens ``cache_read_input_tokens`` (None when the server does not report it)."""
    if not isinstance(usage, dict):
        return None, None, None

    def count(key: str) -> int | None:
        value = usage.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    parts = [count(key) for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")]
    prompt = sum(part or 0 for part in parts) if parts[0] is not None else None
    return prompt, count("output_tokens"), parts[1]


# ----------------------------------------------------------------------------------------------
# Checks


def run_checks(resp: CapturedResponse, answer: Answer, request: PlannedRequest) -> CheckOutcome:
    """Every check that applies to one Messages API exchange; failures are recorded, never raised."""
    out = CheckOutcome()
    if exchange.check_exchange(resp, request, out):
        return out
    complete = not (resp.stop_cause or resp.transport_error)
    message: dict[str, Any] | None
    if resp.stream:
        reader = conformance.stream_reader(resp)
        exchange.check_error_events(reader.events, out)
        _check_events(reader, out, complete)
        message, partial = assemble_stream(reader)
        _check_input_json(partial, message, out)
        if message is None:
            if complete:
                out.fail(STREAM_EVENT_ORDER, f"{len(reader.events)} event(s) and no message_start")
            conformance.check_answer(answer, request, out, complete)
            return out
    else:
        message = answer_message(resp)
        if message is None:
            out.fail(MESSAGE_INVALID, f"not a JSON object: {(resp.body or b'')[:80]!r}")
            return out
    if complete:
        check_message(message, out)
        _check_stop_reason(message, out)
        _check_max_tokens(message, request, out)
    _check_tool_text(message, request, out)
    conformance.check_answer(answer, request, out, complete)
    return out


def _validation_text(exc: ValidationError, where: str = "") -> str:
    parts = []
    for error in exc.errors()[:3]:
        path = ".".join(str(part) for part in error.get("loc", ())) or "(top level)"
        value = "" if error.get("type") == "missing" else f" (got {short(repr(error.get('input')), 60)})"
        parts.append(f"{where}{path}: {error.get('msg')}{value}")
    return "; ".join(parts)


def check_message(message: dict[str, Any], out: CheckOutcome) -> None:
    """The final Messages object against the SDK's ``Message`` and block types."""
    blocks = message.get("content")
    try:
        sdk_types()[0].model_validate({**message, "content": []})
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error.get("loc", ()))
            if loc[:1] == ("stop_reason",):
                out.fail(STOP_REASON_INVALID, _validation_text(exc))
            elif loc[:1] == ("usage",):
                out.fail(USAGE_INVALID, _validation_text(exc))
            else:
                out.fail(MESSAGE_INVALID, _validation_text(exc))
    if message.get("stop_reason") is None:
        out.fail(STOP_REASON_INVALID, "stop_reason is null or absent in the final message")
    if not isinstance(blocks, list):
        out.fail(MESSAGE_INVALID, f"content is {short(repr(blocks), 60)}, not a list of blocks")
        return
    for position, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        model = sdk_types()[1].get(str(kind))
        if model is None:
            out.fail(MESSAGE_INVALID, f"content[{position}] is a {kind!r} block, not one a model answers with")
            continue
        try:
            model.model_validate(block)
        except ValidationError as exc:
            name = TOOL_USE_INVALID if kind == "tool_use" else MESSAGE_INVALID
            out.fail(name, _validation_text(exc, f"content[{position}] ({kind}) "))


def _check_events(reader: SSEReader, out: CheckOutcome, complete: bool) -> None:
    """Each event against its SDK type, and the order of the whole stream."""
    for fault in reader.faults:
        if complete or not fault.startswith(("stream ended", "last event not terminated")):
            out.fail(STREAM_EVENT_INVALID, fault)
    order = _Order()
    for number, event in enumerate(reader.events, 1):
        payload = event.payload
        if payload is None:
            out.fail(
                STREAM_EVENT_INVALID, f"event {number}: {event.json_error or 'data: [DONE] is not a Messages event'}"
            )
            continue
        kind = str(payload.get("type"))
        model = sdk_types()[2].get(kind)
        if model is not None:
            try:
                model.model_validate(payload)
            except ValidationError as exc:
                out.fail(STREAM_EVENT_INVALID, _validation_text(exc, f"event {number} ({kind}) "))
        elif kind not in ("ping", "error"):
            out.fail(STREAM_EVENT_INVALID, f"event {number}: unknown event type {kind!r}")
        problem = order.see(kind, payload)
        if problem:
            out.fail(STREAM_EVENT_ORDER, f"event {number} ({kind}): {problem}")
    if complete:
        problem = order.finish()
        if problem:
            out.fail(STREAM_EVENT_ORDER, problem)


class _Order:
    """The state of a stream's event order (see the module docstring); ``see`` returns the first
    thing wrong with the next event, or None."""

    def __init__(self) -> None:
        self.started = False
        self.open: dict[int, str] = {}  # index -> block kind, of blocks started and not stopped
        self.next_index = 0
        self.message_delta = False
        self.stopped = False

    def see(self, kind: str, payload: dict[str, Any]) -> str | None:
        if kind in ("ping", "error"):
            return None
        if self.stopped:
            return "after message_stop"
        if kind == "message_start":
            if self.started:
                return "a second message_start"
            self.started = True
            return None
        if not self.started:
            return "before message_start"
        index = payload.get("index")
        if kind == "content_block_start":
            if self.message_delta:
                return "a block started after message_delta"
            if self.open:
                return f"block {index} started while block {min(self.open)} is still open"
            if index != self.next_index:
                return f"block index {index}, expected {self.next_index}"
            block = payload.get("content_block")
            self.open[self.next_index] = str(block.get("type")) if isinstance(block, dict) else "?"
            self.next_index += 1
            return None
        if kind == "content_block_delta":
            if not isinstance(index, int) or index not in self.open:
                return f"a delta for block {index}, which is not open"
            delta = payload.get("delta")
            delta_kind = delta.get("type") if isinstance(delta, dict) else None
            allowed = DELTAS_OF.get(self.open[index])
            if allowed is not None and delta_kind not in allowed:
                return f"a {delta_kind} for a {self.open[index]} block"
            return None
        if kind == "content_block_stop":
            if not isinstance(index, int) or index not in self.open:
                return f"stops block {index}, which is not open"
            del self.open[index]
            return None
        if kind == "message_delta":
            if self.open:
                return f"message_delta while block {min(self.open)} is still open"
            if self.message_delta:
                return "a second message_delta"
            self.message_delta = True
            delta = payload.get("delta")
            if not isinstance(delta, dict) or delta.get("stop_reason") is None:
                return "message_delta without a stop_reason"
            if not isinstance(payload.get("usage"), dict):
                return "message_delta without usage"
            return None
        if kind == "message_stop":
            if not self.message_delta:
                return "message_stop without a message_delta before it"
            self.stopped = True
        return None

    def finish(self) -> str | None:
        if not self.started:
            return None  # said once, with the event count, by run_checks
        if self.open:
            return f"the stream ended with block {min(self.open)} still open"
        if not self.message_delta:
            return "the stream ended without a message_delta (no stop_reason, no output usage)"
        if not self.stopped:
            return "the stream ended without message_stop"
        return None


def _check_input_json(partial: dict[int, str], message: dict[str, Any] | None, out: CheckOutcome) -> None:
    for index, joined in sorted(partial.items()):
        try:
            value = json.loads(joined) if joined else {}
        except ValueError as exc:
            out.fail(INPUT_JSON_INVALID, f"block {index}: the input_json_delta pieces join to {joined[:80]!r} ({exc})")
            continue
        if not isinstance(value, dict):
            out.fail(
                INPUT_JSON_INVALID, f"block {index}: the pieces join to a JSON {type(value).__name__}, not an object"
            )


def _blocks(message: dict[str, Any]) -> list[Any]:
    content = message.get("content")
    return content if isinstance(content, list) else []


def _check_stop_reason(message: dict[str, Any], out: CheckOutcome) -> None:
    blocks = _blocks(message)
    uses = [b.get("name") for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"]
    stop = message.get("stop_reason")
    if uses and stop not in ("tool_use", None):
        out.fail(STOP_REASON_INCONSISTENT, f"stop_reason {stop!r} with tool_use block(s) for {uses}")
    elif stop == "tool_use" and not uses:
        out.fail(STOP_REASON_INCONSISTENT, "stop_reason 'tool_use' but no tool_use block")


def _check_max_tokens(message: dict[str, Any], request: PlannedRequest, out: CheckOutcome) -> None:
    limit = (request.raw or {}).get("max_tokens")
    usage = message.get("usage")
    produced = usage.get("output_tokens") if isinstance(usage, dict) else None
    if isinstance(limit, int) and isinstance(produced, int) and produced > limit:
        out.fail(MAX_TOKENS_EXCEEDED, f"usage.output_tokens {produced} > max_tokens {limit}")


def _check_tool_text(message: dict[str, Any], request: PlannedRequest, out: CheckOutcome) -> None:
    """A tool call sent as text: markup a parser should have turned into a tool_use block, or a JSON
    object naming one of the offered tools."""
    if not request.tools:
        return
    offered = toolcalls.tool_names(request.tools)
    for position, block in enumerate(_blocks(message)):
        if not isinstance(block, dict) or block.get("type") != "text":
            continue
        text = str(block.get("text") or "")
        found = toolcalls.find_markup(text) or _named_call_json(text, offered)
        if found:
            out.fail(
                TOOL_CALL_AS_TEXT, f"content[{position}] (text, stop_reason {message.get('stop_reason')!r}): {found}"
            )
            return


def _named_call_json(text: str, offered: set[str]) -> str | None:
    """Describes a JSON object in ``text`` that names an offered tool (``{"name": ..., "arguments"
    / "input" / "parameters": ...}``), or None."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start >= 0:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if (
            isinstance(value, dict)
            and value.get("name") in offered
            and {"arguments", "input", "parameters"} & set(value)
        ):
            return f"a JSON call to {value['name']!r} at char {start}: {text[start : start + 60]!r}"
        start = text.find("{", end)
    return None
