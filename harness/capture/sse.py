"""An incremental Server-Sent-Events reader that keeps framing faults as data.

Replay feeds it bytes as they arrive (to time the first token and to stop runaway streams) and the
conformance checks read the same events and faults afterwards, so there is one SSE parser only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SSEEvent:
    """One ``data:`` event. ``payload`` is the parsed JSON, or None for ``[DONE]`` / bad JSON."""

    data: str
    arrived_s: float
    payload: dict[str, Any] | None = None
    is_done: bool = False
    json_error: str | None = None


@dataclass
class SSEReader:
    """Splits a byte stream into events on blank lines, the way an OpenAI client does."""

    events: list[SSEEvent] = field(default_factory=list)
    # Framing faults, each with the first offending bytes: lines that are not `data:`/comments,
    # data after [DONE], a stream that ends mid-event.
    faults: list[str] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)
    _buffer: str = ""
    _pending: list[str] = field(default_factory=list)
    _decoder: Any = None

    def feed(self, chunk: bytes, now_s: float) -> list[SSEEvent]:
        """Adds bytes; returns the events completed by them."""
        import codecs

        if self._decoder is None:
            self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.raw.extend(chunk)
        self._buffer += self._decoder.decode(chunk)
        completed: list[SSEEvent] = []
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            line = line.rstrip("\r")
            if line == "":
                if self._pending:
                    completed.append(self._emit("\n".join(self._pending), now_s))
                    self._pending = []
                continue
            if line.startswith(":"):
                continue  # SSE comment / keep-alive
            if line.startswith("data:"):
                value = line[5:]
                self._pending.append(value[1:] if value.startswith(" ") else value)
            elif line.split(":", 1)[0] in {"event", "id", "retry"}:
                continue
            else:
                self.faults.append(f"line is not an SSE field: {line[:80]!r}")
        return completed

    def close(self, now_s: float) -> list[SSEEvent]:
        """Ends the stream; a trailing event without its blank line is still read, but noted."""
        completed: list[SSEEvent] = []
        tail = self._buffer.strip("\r\n")
        if tail:
            if tail.startswith("data:"):
                self._pending.append(tail[5:].lstrip(" "))
            else:
                self.faults.append(f"stream ended with a partial line: {tail[:80]!r}")
        if self._pending:
            self.faults.append(f"last event not terminated by a blank line: {self._pending[-1][:80]!r}")
            completed.append(self._emit("\n".join(self._pending), now_s))
            self._pending = []
        self._buffer = ""
        return completed

    def _emit(self, data: str, now_s: float) -> SSEEvent:
        if any(event.is_done for event in self.events):
            self.faults.append(f"data after [DONE]: {data[:80]!r}")
        event = SSEEvent(data=data, arrived_s=now_s)
        if data.strip() == "[DONE]":
            event.is_done = True
        else:
            try:
                parsed = json.loads(data)
                if isinstance(parsed, dict):
                    event.payload = parsed
                else:
                    event.json_error = f"event is JSON but not an object: {data[:80]!r}"
            except json.JSONDecodeError as exc:
                event.json_error = f"event is not JSON ({exc.msg}): {data[:80]!r}"
        self.events.append(event)
        return event


# Delta keys that carry model reasoning rather than visible text (servers differ in the name).
REASONING_KEYS = ("reasoning_content", "reasoning")


def _deltas(payload: dict[str, Any] | None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(choice, delta) for each choice of a chunk that has a dict delta (or message)."""
    found = []
    for choice in (payload or {}).get("choices") or []:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta") or choice.get("message") or {}
        if isinstance(delta, dict):
            found.append((choice, delta))
    return found


def delta_has_output(payload: dict[str, Any] | None) -> bool:
    """True when a chunk carries a generated token of any kind (text, a tool call or reasoning), not
    just the role."""
    for choice, delta in _deltas(payload):
        if delta.get("content") or delta.get("tool_calls") or any(delta.get(k) for k in REASONING_KEYS):
            return True
        if choice.get("text") or choice.get("tool_calls"):
            return True
    return False


def delta_has_content(payload: dict[str, Any] | None) -> bool:
    """True when a chunk carries visible text (what a chat client shows), not a tool call or reasoning."""
    return any(delta.get("content") or choice.get("text") for choice, delta in _deltas(payload))
