"""Behaviour checks on every response, and the A/B comparison of two servers' answers.

Replay captures each exchange as a ``CapturedResponse``; ``extract_answer`` turns it into what an
OpenAI client would have got, and ``run_checks`` lists what a client depending on the OpenAI shape
would trip over. Failed checks are names with a family prefix, so reports and gates can group them:

- ``http.*``     the exchange itself (status, transport, a server error on a valid request):
                 ``harness.checks.exchange``
- ``schema.*``   non-streamed body shape (``openai.types.chat.ChatCompletion``), finish reason, usage
- ``stream.*``   SSE framing and chunk shape (``ChatCompletionChunk``), finish chunk, ``[DONE]``; the
                 deltas (role once, names whole, distinct indexes, usage last): ``harness.checks.streamed_calls``
- ``tool.*``     tool calls: missing, raw markup left in the text, unknown names, repeats, bad JSON,
                 ids, tool_choice none / named (``harness.checks.request_rules``), streamed vs not
                 (``harness.checks.pairs``)
- ``param.*``    request parameters the answer does not honour (``stop``): ``harness.checks.request_rules``
- ``expect.*``   the scenario's per-turn expectations, and the legacy canned fallback text
- ``runaway.*``  the harness had to cut the request off

Notes are documented quirks seen that are not failures (``tool.note_*``, ``stream.note_*``, ``http.note_*``).
Every name is described in ``harness.checks.catalogue`` (and docs/checks.md, generated from it).
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import ValidationError

from harness.capture.http import CapturedResponse
from harness.checks import exchange, request_rules, streamed_calls, toolcalls
from harness.checks.outcome import Answer, CheckOutcome, short
from harness.core.rows import ResultRow
from harness.core.sse import SSEReader, delta_has_output
from harness.scenario.definition import PlannedRequest

# The legacy server's answer when generation failed: HTTP 200 with this text (and it gets cached).
CANNED_FALLBACK = re.compile(r"\s*I received \d+ message\(s\) and \d+ tool\(s\) are available\.\s*")

# Non-string JSON-schema types that a string argument value does not satisfy.
_NON_STRING_TYPES = {"integer", "number", "boolean", "array", "object"}


# ----------------------------------------------------------------------------------------------
# Extracting the answer


def stream_reader(resp: CapturedResponse) -> SSEReader:
    """The parsed stream; built from the raw bytes when replay did not keep its reader."""
    if resp.sse is not None:
        return resp.sse
    reader = SSEReader()
    reader.feed(resp.body or b"", 0.0)
    reader.close(0.0)
    return reader


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _choices(payload: dict[str, Any]) -> list[dict[str, Any]]:
    choices = payload.get("choices")
    if not isinstance(choices, list):
        return []
    # n is always 1 here; a choice without an index is read as choice 0 (its absence is a failure).
    return [c for c in choices if isinstance(c, dict) and c.get("index") in (0, None)]


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts
        return "".join(p.get("text", "") for p in value if isinstance(p, dict))
    return str(value)


def extract_answer(resp: CapturedResponse) -> Answer:
    """The content, tool calls, finish reason and usage a client would have read; never raises."""
    empty = Answer(content=None, tool_calls=[], finish_reason=None, usage=None)
    if resp.http_status is not None and resp.http_status != 200:
        return empty
    if resp.stream:
        return _stream_answer(stream_reader(resp))
    payload = _json_object(resp.body or b"")
    if payload is None:
        return empty
    choices = _choices(payload)
    if not choices:
        return Answer(None, [], None, payload.get("usage") if isinstance(payload.get("usage"), dict) else None)
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    content = _text(message.get("content")) if message else _text(choice.get("text"))
    raw_calls = message.get("tool_calls") or choice.get("tool_calls") or []
    calls = [toolcalls.as_call(c) for c in raw_calls] if isinstance(raw_calls, list) else []
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else None
    return Answer(content, calls, choice.get("finish_reason"), usage)


def _stream_answer(reader: SSEReader) -> Answer:
    parts: list[str] = []
    assembler = toolcalls.DeltaAssembler()
    finish_reason = None
    usage = None
    for event in reader.events:
        payload = event.payload
        if not payload:
            continue
        if isinstance(payload.get("usage"), dict):
            usage = payload["usage"]
        for choice in _choices(payload):
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                delta = choice.get("message")
                if not isinstance(delta, dict):
                    delta = {}
            for text in (_text(delta.get("content")), _text(choice.get("text"))):
                if isinstance(text, str):
                    parts.append(text)
            assembler.feed(delta.get("tool_calls"))
            assembler.add_complete(choice.get("tool_calls"))  # legacy cache-hit replay format
            if choice.get("finish_reason") is not None:
                finish_reason = choice["finish_reason"]
    return Answer("".join(parts) if parts else None, assembler.calls(), finish_reason, usage)


# ----------------------------------------------------------------------------------------------
# Checks


def run_checks(resp: CapturedResponse, answer: Answer, request: PlannedRequest) -> CheckOutcome:
    """Every check that applies to this exchange; failures are recorded, never raised."""
    out = CheckOutcome()
    if exchange.check_exchange(resp, request, out):
        return out
    # A cut-off answer is partial: end-of-answer checks and expectations would only repeat that.
    complete = not (resp.stop_cause or resp.transport_error)
    if resp.stream:
        _check_stream(resp, answer, out, complete)
        streamed_calls.check_deltas(stream_reader(resp).events, request, out, complete)
    elif complete:
        _check_body(resp, answer, out)
    check_answer(answer, request, out, complete)
    return out


def check_answer(answer: Answer, request: PlannedRequest, out: CheckOutcome, complete: bool) -> None:
    """The checks on what a client read, whatever the protocol it came through: tool calls, the
    request's rules (tool_choice, stop) and the turn's expectations."""
    _check_tools(answer, request, out, complete)
    if complete:
        _check_expect(answer, request, out)
        request_rules.check_request_rules(answer, request, out)
    if answer.content and CANNED_FALLBACK.fullmatch(answer.content):
        out.fail("expect.canned_fallback", f"canned legacy text: {answer.content.strip()!r}")


def _map_validation(exc: ValidationError, out: CheckOutcome, stream: bool, where: str = "") -> None:
    """Turns pydantic errors into specific check names; what is left is ``*.invalid``."""
    family = "stream.chunk_" if stream else "schema."
    other = "stream.chunk_invalid" if stream else "schema.invalid"
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        kind = error.get("type", "")
        value = error.get("input")
        last = loc[-1] if loc else ""
        path = ".".join(str(part) for part in loc) or "(top level)"
        if len(loc) == 1 and last in ("id", "created", "model") and kind == "missing":
            out.fail(f"{family}{last}_missing", f"{where}no '{last}' field")
        elif loc == ("object",):
            seen = "no 'object' field" if kind == "missing" else f"object is {value!r}"
            out.fail(f"{family}object_wrong", f"{where}{seen}")
        elif loc == ("choices",) and kind == "missing":
            out.fail(other if stream else "schema.no_choices", f"{where}no 'choices' field")
        elif last == "finish_reason":
            if value is not None and kind != "missing":  # a missing finish reason has its own check
                prefix = "stream." if stream else "schema."
                out.fail(f"{prefix}finish_reason_invalid", f"{where}{path} is {value!r}")
        elif len(loc) == 3 and loc[0] == "choices" and last == "index" and kind == "missing":
            out.fail(f"{'stream' if stream else 'schema'}.choice_index_missing", f"{where}{path} missing")
        elif stream and "tool_calls" in loc and last == "index" and kind == "missing":
            out.fail("stream.tool_delta_no_index", f"{where}{path} missing")
        else:
            seen = "" if kind == "missing" else f" (got {short(repr(value), 60)})"
            out.fail(other, f"{where}{path}: {error.get('msg')}{seen}")


def _check_body(resp: CapturedResponse, answer: Answer, out: CheckOutcome) -> None:
    body = resp.body or b""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        out.fail("schema.not_json", f"{body[:80]!r}")
        return
    if not isinstance(payload, dict):
        out.fail("schema.not_json", f"JSON but not an object: {body[:80]!r}")
        return
    try:
        ChatCompletion.model_validate(payload)
    except ValidationError as exc:
        _map_validation(exc, out, stream=False)
    if isinstance(payload.get("choices"), list) and not payload["choices"]:
        out.fail("schema.no_choices", "choices is []")
    if not _choices(payload):
        return
    if answer.finish_reason is None:
        out.fail("schema.finish_reason_missing", "choices[0].finish_reason is null or absent")
    _check_finish_consistency(answer, out, "schema")
    _check_usage(answer.usage, answer, out, "schema", required=True)


def _check_finish_consistency(answer: Answer, out: CheckOutcome, family: str) -> None:
    calls, reason = len(answer.tool_calls), answer.finish_reason
    if calls and reason is not None and reason != "tool_calls":
        out.fail(f"{family}.finish_reason_inconsistent", f"finish_reason {reason!r} with {calls} tool call(s)")
    elif reason == "tool_calls" and not calls:
        out.fail(f"{family}.finish_reason_inconsistent", "finish_reason 'tool_calls' but no tool call")


def _check_usage(usage: Any, answer: Answer, out: CheckOutcome, family: str, required: bool) -> None:
    if not isinstance(usage, dict):
        if required:
            out.fail(f"{family}.usage_missing", "no 'usage' object" if usage is None else f"usage is {usage!r}")
        return
    counts: dict[str, Any] = {key: usage.get(key) for key in ("prompt_tokens", "completion_tokens", "total_tokens")}
    problems = []
    for key, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{key}={value!r} is not an integer")
        elif value < 0:
            problems.append(f"{key}={value} is negative")
    if not problems:
        prompt, completion, total = counts.values()
        if total != prompt + completion:
            problems.append(f"total_tokens {total} != {prompt} + {completion}")
        if prompt == 0:
            problems.append("prompt_tokens is 0")
        if completion == 0 and (answer.content or answer.tool_calls):
            problems.append("completion_tokens is 0 but the answer is not empty")
    if problems:
        out.fail(f"{family}.usage_implausible", "; ".join(problems))


def _check_stream(resp: CapturedResponse, answer: Answer, out: CheckOutcome, complete: bool) -> None:
    reader = stream_reader(resp)
    for fault in reader.faults:
        if fault.startswith("data after [DONE]"):
            out.fail("stream.data_after_done", fault)
        elif fault.startswith("last event not terminated") and "[DONE]" in fault:
            # MLX-Textgen 0.2.1 closes with `data: [DONE]` and no blank line. A strict SSE parser
            # drops that event; the openai client does not. Reported, but not a broken stream.
            out.note("stream.note_done_unterminated", fault)
        elif complete or not fault.startswith(("stream ended", "last event not terminated")):
            out.fail("stream.framing", fault)
    exchange.check_error_events(reader.events, out)
    done_at = None
    finish_events: list[int] = []
    has_output = False
    for number, event in enumerate(reader.events, 1):
        if done_at is not None:
            out.fail("stream.data_after_done", f"event {number} after [DONE] (event {done_at}): {event.data[:80]!r}")
        if event.is_done:
            done_at = done_at or number
            continue
        if event.json_error or event.payload is None:
            out.fail("stream.bad_json", f"event {number}: {event.json_error}")
            continue
        payload = event.payload
        try:
            ChatCompletionChunk.model_validate(payload)
        except ValidationError as exc:
            _map_validation(exc, out, stream=True, where=f"event {number}: ")
        if any(choice.get("finish_reason") is not None for choice in _choices(payload)):
            finish_events.append(number)
        has_output = has_output or delta_has_output(payload)
    count = len(reader.events)
    if complete:
        if done_at is None:
            out.fail("stream.no_done", f"stream ended after {count} event(s) without 'data: [DONE]'")
        if not finish_events:
            out.fail("stream.no_finish_chunk", f"none of {count} event(s) carries a finish_reason")
        if not has_output:
            out.fail("stream.empty", f"{count} event(s), none with content or a tool call")
    if complete:  # the last usage seen (a usage chunk is optional in a stream)
        _check_usage(answer.usage, answer, out, "stream", required=False)
    if len(finish_events) > 1:
        out.fail("stream.multiple_finish_chunks", f"finish_reason in events {finish_events[:6]}")
    if finish_events:
        _check_finish_consistency(answer, out, "stream")


def _check_tools(answer: Answer, request: PlannedRequest, out: CheckOutcome, complete: bool) -> None:
    offered = toolcalls.tool_names(request.tools)
    markup = toolcalls.find_markup(answer.content)
    if request.tools and markup:
        out.fail("tool.raw_markup_in_content", markup)
    expect = request.expect
    if complete and request.tools and expect and expect.tool_calls and not answer.tool_calls:
        if markup:
            evidence = f"no tool_calls; the text holds tool-call markup the server did not parse: {markup}"
        else:
            evidence = "no tool_calls, and no tool-call markup in the text"
        out.fail("tool.calls_missing", evidence)
    calls = answer.tool_calls
    if not calls:
        return
    # Call-level checks run whenever calls came back: a call when no tools were offered is unknown.
    unknown = [call["name"] for call in calls if call["name"] not in offered]
    if unknown:
        out.fail("tool.unknown_name", f"{unknown} not among the request's tools {sorted(offered)}")
    repeats = {sig: n for sig, n in Counter(toolcalls.signature(c) for c in calls).items() if n > 1}
    if repeats:
        sig, n = next(iter(repeats.items()))
        out.fail("tool.repeated_call", f"{n}x {sig}")
    if complete:
        for call in calls:
            if isinstance(call["arguments"], str):
                out.fail("tool.arguments_not_json", f"{call['name']}: {call['arguments'][:80]!r}")
                break
        missing_ids = [call["name"] for call in calls if not call.get("id")]
        if missing_ids:
            out.fail("tool.id_missing", f"no id on the call(s) to {missing_ids}")
    ids = Counter(call.get("id") for call in calls if call.get("id"))
    duplicated = [i for i, n in ids.items() if n > 1]
    if duplicated:
        out.fail("tool.id_duplicate", f"id(s) {duplicated} used for more than one call")
    _note_tool_quirks(calls, request, out)


def _note_tool_quirks(calls: list[dict[str, Any]], request: PlannedRequest, out: CheckOutcome) -> None:
    earlier = toolcalls.history_call_ids(request.messages)
    for position, call in enumerate(calls):
        call_id = call.get("id")
        if call_id and call_id in earlier:
            # The client already holds a call with this id: its tool result would answer both.
            out.fail("tool.id_reused_from_history", f"id {call_id!r} of the call to {call['name']} is in the history")
        elif call_id == f"call_{position}":
            # Positional ids (legacy: call_0, call_1, ...) restart every answer, so they will repeat.
            out.note("tool.note_ids_repeat_across_turns", f"id {call_id!r} is positional")
        arguments = call["arguments"]
        if not isinstance(arguments, dict):
            continue
        declared = toolcalls.declared_types(request.tools, call["name"])
        for key, value in arguments.items():
            kinds = declared.get(key, set())
            if isinstance(value, str) and kinds and "string" not in kinds and kinds & _NON_STRING_TYPES:
                out.note(
                    "tool.note_xml_values_strings",
                    f"{call['name']}.{key}={value!r} is a string; the schema says {'/'.join(sorted(kinds))}",
                )


def _check_expect(answer: Answer, request: PlannedRequest, out: CheckOutcome) -> None:
    calls = answer.tool_calls
    required = request.tool_choice == "required" and bool(request.tools)
    if required and not calls:
        # The client demanded a tool call; a text answer ignores the request's tool_choice.
        out.fail(
            "tool.required_ignored",
            f"tool_choice 'required' but no tool call; content {(answer.content or '')[:80]!r}",
        )
    expect = request.expect
    if expect is None:
        return
    # With no calls at all, tool.calls_missing is the finding; name/argument checks would repeat it.
    if expect.tool_calls and calls:
        wanted = [call.name for call in expect.tool_calls]
        got = [call["name"] for call in calls]
        if wanted != got:
            out.fail("expect.tool_name", f"expected {wanted}, got {got}")
        used: set[int] = set()
        for position, expected in enumerate(expect.tool_calls):
            candidates = [i for i, c in enumerate(calls) if c["name"] == expected.name and i not in used]
            if not candidates:
                continue
            chosen = position if position in candidates else candidates[0]
            used.add(chosen)
            if expected.arguments is None:
                continue
            problems = toolcalls.argument_mismatches(expected.arguments, calls[chosen]["arguments"])
            if problems:
                out.fail("expect.tool_arguments", f"{expected.name}: " + "; ".join(problems))
    # Under tool_choice "required" a call is the right answer even to a plain question.
    if expect.no_tool_calls and calls and not required:
        out.fail("expect.no_tool_calls", f"got {[toolcalls.signature(c) for c in calls][:3]}")
    if expect.content and not (answer.content or "").strip():
        what = f"{len(calls)} tool call(s) and " if calls else ""
        out.fail("expect.content_empty", f"{what}no text (content {answer.content!r})")
    if expect.content_contains is not None and expect.content_contains not in (answer.content or ""):
        out.fail("expect.content_contains", f"{expect.content_contains!r} not in {(answer.content or '')[:80]!r}")
    if expect.finish_reason is not None and answer.finish_reason != expect.finish_reason:
        out.fail("expect.finish_reason", f"expected {expect.finish_reason!r}, got {answer.finish_reason!r}")


# ----------------------------------------------------------------------------------------------
# A/B comparison


def _row_error(row: ResultRow) -> str | None:
    if row.error:
        return row.error
    if row.http_status is not None and row.http_status != 200:
        return f"HTTP {row.http_status}"
    return None


def _content_diff(a: str, b: str, max_lines: int = 4) -> list[str]:
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    first = next((op for op in matcher.get_opcodes() if op[0] != "equal"), None)
    lines = []
    if first is not None:
        _, i1, i2, j1, j2 = first
        lines.append(
            f"content differs at char {i1}: {a[max(0, i1 - 20) : i2 + 20]!r} vs {b[max(0, j1 - 20) : j2 + 20]!r}"
        )
    diff = difflib.unified_diff(a.splitlines(), b.splitlines(), "reference", "other", n=0, lineterm="")
    changed = [line for line in diff if line[:1] in "-+" and not line.startswith(("---", "+++"))]
    if len(a.splitlines()) > 1 or len(b.splitlines()) > 1:
        lines.extend(short(line, 100) for line in changed[:max_lines])
    return lines


def ab_compare(reference: ResultRow | None, other: ResultRow | None) -> tuple[str, str]:
    """("identical" | "equivalent" | "different", short text naming what differs).

    identical: same content, tool calls (name + arguments as sent) and finish reason; equivalent:
    the same once whitespace, tool-call ids and argument key order / JSON formatting are ignored.
    """
    if reference is None or other is None:
        return "different", "no reference row" if reference is None else "no row to compare"
    errors = [
        f"{label} ({row.server}) failed: {err}"
        for label, row in (("reference", reference), ("other", other))
        if (err := _row_error(row))
    ]
    if errors:
        return "different", short("; ".join(errors), 300)

    content_a, content_b = reference.content or "", other.content or ""
    sha_differs = reference.content is None and other.content is None and reference.content_sha != other.content_sha
    calls_a = [toolcalls.signature(c, canonical=False) for c in reference.tool_calls]
    calls_b = [toolcalls.signature(c, canonical=False) for c in other.tool_calls]
    same_finish = reference.finish_reason == other.finish_reason
    if content_a == content_b and not sha_differs and calls_a == calls_b and same_finish:
        return "identical", ""

    norm_a, norm_b = " ".join(content_a.split()), " ".join(content_b.split())
    canon_a = [toolcalls.signature(c) for c in reference.tool_calls]
    canon_b = [toolcalls.signature(c) for c in other.tool_calls]
    if norm_a == norm_b and not sha_differs and canon_a == canon_b and same_finish:
        what = []
        if content_a != content_b:
            what.append("whitespace in content")
        if calls_a != calls_b:
            what.append("tool-call argument key order/formatting")
        return "equivalent", "differs only in " + " and ".join(what)

    lines = []
    if not same_finish:
        lines.append(f"finish_reason: {reference.finish_reason!r} vs {other.finish_reason!r}")
    if canon_a != canon_b:
        lines.append(short(f"tool_calls: {canon_a} vs {canon_b}", 240))
    if norm_a != norm_b:
        lines.extend(_content_diff(content_a, content_b))
    elif sha_differs:
        lines.append(f"content_sha: {reference.content_sha} vs {other.content_sha}")
    return "different", "\n".join(lines[:6])
