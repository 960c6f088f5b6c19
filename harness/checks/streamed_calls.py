"""Checks on a stream delta by delta, the way the field's own suites check streamed tool calls
(vLLM's tool-use tests are the model): the role arrives once, each call's name arrives whole and
once under one id, a new call never reuses the index of an earlier one, and a stream asked for usage
(``stream_options.include_usage``) carries it in its last chunk.

What the assembled answer looks like (ids, JSON arguments, finish reason) is checked on the
``Answer`` in ``conformance``; here only what a client assembling deltas would trip over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.checks.outcome import CheckOutcome
from harness.core.sse import SSEEvent
from harness.scenario.definition import PlannedRequest

TOOL_ID_CHANGED = "stream.tool_id_changed"


@dataclass
class _Call:
    """What the deltas of one ``index`` said so far."""

    id: str | None = None
    names: list[tuple[int, str]] = field(default_factory=list)  # (event number, name fragment)
    arguments: str = ""


def _deltas(payload: dict[str, Any]) -> list[dict[str, Any]]:
    deltas = []
    for choice in payload.get("choices") or []:
        if isinstance(choice, dict) and choice.get("index") in (0, None) and isinstance(choice.get("delta"), dict):
            deltas.append(choice["delta"])
    return deltas


def wants_usage(request: PlannedRequest) -> bool:
    """Whether the request asked for a usage chunk (``stream_options: {include_usage: true}``)."""
    options = request.params.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def check_deltas(events: list[SSEEvent], request: PlannedRequest, out: CheckOutcome, complete: bool) -> None:
    """The delta-level checks of one stream; ``complete`` is False for a stream cut short."""
    role_events: list[int] = []
    calls: dict[int, _Call] = {}
    data_events: list[tuple[int, dict[str, Any]]] = []
    for number, event in enumerate(events, 1):
        if event.is_done or not event.payload:
            continue
        data_events.append((number, event.payload))
        for delta in _deltas(event.payload):
            if delta.get("role"):
                role_events.append(number)
            for fragment in delta.get("tool_calls") or []:
                if isinstance(fragment, dict):
                    _feed(calls, number, fragment, out)
    if complete and data_events and not role_events:
        out.fail("stream.role_missing", f"none of {len(data_events)} chunk(s) carries delta.role")
    if len(role_events) > 1:
        out.fail("stream.role_repeated", f"delta.role in events {role_events[:6]}")
    for index, call in calls.items():
        if len(call.names) > 1:
            pieces = " + ".join(repr(name) for _, name in call.names[:4])
            events_seen = [number for number, _ in call.names[:6]]
            out.fail("stream.tool_name_not_once", f"call index {index}: name sent in events {events_seen}: {pieces}")
            break
    if complete and wants_usage(request) and request.stream:
        usage_events = [number for number, payload in data_events if isinstance(payload.get("usage"), dict)]
        last = data_events[-1][0] if data_events else None
        if not usage_events:
            out.fail(
                "stream.usage_not_in_last_chunk",
                f"stream_options.include_usage is true; none of {len(data_events)} chunk(s) carries usage",
            )
        elif last not in usage_events:
            out.fail(
                "stream.usage_not_in_last_chunk",
                f"usage in event(s) {usage_events[:4]}, but the last chunk (event {last}) has none",
            )


def _feed(calls: dict[int, _Call], number: int, fragment: dict[str, Any], out: CheckOutcome) -> None:
    index = fragment.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        return  # a delta without an index is stream.tool_delta_no_index, from the chunk schema
    raw_function = fragment.get("function")
    function: dict[str, Any] = raw_function if isinstance(raw_function, dict) else {}
    call = calls.setdefault(index, _Call())
    raw_id, raw_name = fragment.get("id"), function.get("name")
    new_id = raw_id if isinstance(raw_id, str) and raw_id else None
    name = raw_name if isinstance(raw_name, str) and raw_name else None
    if new_id and call.id and new_id != call.id and not name:
        # The same call (no new name) under another id: a client that keys calls by id splits it,
        # and the id the tool result answers is not the one the call was announced with.
        out.fail(TOOL_ID_CHANGED, f"event {number}: call index {index} announced as {call.id!r}, now {new_id!r}")
        new_id = None
    if (new_id and call.id and new_id != call.id) or (name and call.arguments):
        # A second call's start (a new id, or a name after the first call's arguments) on an index
        # already used: a client appends it to the first call.
        seen = f"id {new_id!r} after {call.id!r}" if new_id and call.id and new_id != call.id else f"name {name!r}"
        out.fail(
            "stream.tool_index_reused",
            f"event {number}: {seen} on index {index}, which already carries a call with arguments "
            f"{call.arguments[:60]!r}",
        )
        calls[index] = call = _Call()
    if new_id and not call.id:
        call.id = new_id
    if name:
        call.names.append((number, name))
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        call.arguments += arguments
