"""What one Anthropic Messages API stream event carries, for replay's clocks and runaway guard.

The events are read by ``harness.core.sse.SSEReader`` like any other stream (the ``event:`` line
is ignored: every Messages event repeats its name in the payload's ``type``); these helpers only
look inside a parsed payload. A ``content_block_delta`` carries generated output: ``text_delta``
(visible text), ``input_json_delta`` (a tool call's arguments), ``thinking_delta`` (reasoning).
A ``content_block_start`` of a ``tool_use`` block names the tool before any argument arrives.
"""

from __future__ import annotations

from typing import Any

OUTPUT_DELTAS = ("text_delta", "input_json_delta", "thinking_delta")


def _delta(payload: dict[str, Any] | None) -> dict[str, Any]:
    if not isinstance(payload, dict) or payload.get("type") != "content_block_delta":
        return {}
    delta = payload.get("delta")
    return delta if isinstance(delta, dict) else {}


def event_has_output(payload: dict[str, Any] | None) -> bool:
    """True when the event carries a generated token of any kind: text, tool-call arguments or
    reasoning, or the start of a tool_use block (its name is generated too)."""
    if isinstance(payload, dict) and payload.get("type") == "content_block_start":
        block = payload.get("content_block")
        return isinstance(block, dict) and block.get("type") == "tool_use"
    delta = _delta(payload)
    return delta.get("type") in OUTPUT_DELTAS and bool(
        delta.get("text") or delta.get("partial_json") or delta.get("thinking")
    )


def event_has_content(payload: dict[str, Any] | None) -> bool:
    """True when the event carries visible text (what a chat client shows)."""
    delta = _delta(payload)
    return delta.get("type") == "text_delta" and bool(delta.get("text"))


def event_text(payload: dict[str, Any] | None) -> str:
    """The visible text an event adds ("" for any other event)."""
    delta = _delta(payload)
    text = delta.get("text") if delta.get("type") == "text_delta" else None
    return text if isinstance(text, str) else ""


def event_tool_name(payload: dict[str, Any] | None) -> str | None:
    """The tool named by a ``content_block_start`` of a ``tool_use`` block, else None."""
    if not isinstance(payload, dict) or payload.get("type") != "content_block_start":
        return None
    block = payload.get("content_block")
    if isinstance(block, dict) and block.get("type") == "tool_use" and isinstance(block.get("name"), str):
        return str(block["name"])
    return None
