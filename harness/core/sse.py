"""An incremental Server-Sent-Events reader that keeps framing faults as data.

Replay feeds it bytes as they arrive (to time the first token and to stop runaway streams), the
conformance checks read the same events and faults afterwards, and the importers read recorded
Anthropic streams through it: there is one SSE parser only. It lives in ``core`` because both the
scenario stage (recorded streams) and the capture stage (live streams) read SSE.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass, field
from typing import Any

# A line ends with CRLF, LF or a bare CR (the SSE standard; the `openai` client reads all three).
LINE_END = re.compile(r"\r\n|\r|\n")
# Fields a stream may carry besides `data`; the reader has no use for them but they are valid.
_IGNORED_FIELDS = {"event", "id", "retry"}


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
    _done: bool = False
    _after_cr: bool = False
    _decoder: Any = None

    def feed(self, chunk: bytes, now_s: float) -> list[SSEEvent]:
        """Adds bytes; returns the events completed by them."""
        if self._decoder is None:
            self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.raw.extend(chunk)
        self._buffer += self._decoder.decode(chunk)
        return self._read_lines(now_s)

    def close(self, now_s: float) -> list[SSEEvent]:
        """Ends the stream; a trailing event without its blank line is still read, but noted."""
        completed = self._read_lines(now_s)
        tail, self._buffer = self._buffer, ""
        if tail:
            if tail.startswith(":") or tail.partition(":")[0] in {"data", *_IGNORED_FIELDS}:
                self._line(tail)
            else:
                self.faults.append(f"stream ended with a partial line: {tail[:80]!r}")
        if self._pending:
            self.faults.append(f"last event not terminated by a blank line: {self._pending[-1][:80]!r}")
            completed.append(self._emit("\n".join(self._pending), now_s))
            self._pending = []
        return completed

    def _read_lines(self, now_s: float) -> list[SSEEvent]:
        completed: list[SSEEvent] = []
        if self._buffer:
            if self._after_cr and self._buffer.startswith("\n"):
                self._buffer = self._buffer[1:]  # the LF of a CRLF split across two reads
            self._after_cr = False
        start = 0
        for end in LINE_END.finditer(self._buffer):
            line = self._buffer[start : end.start()]
            start = end.end()
            # A CR that ends the read ends its line now (an event is not held back for the next
            # read); a LF that starts the next read is then the second half of a CRLF.
            self._after_cr = end.group() == "\r" and start == len(self._buffer)
            if line == "":
                if self._pending:
                    completed.append(self._emit("\n".join(self._pending), now_s))
                    self._pending = []
            else:
                self._line(line)
        self._buffer = self._buffer[start:]
        return completed

    def _line(self, line: str) -> None:
        """One non-blank line: a comment, a field, or a framing fault."""
        if line.startswith(":"):
            return  # SSE comment / keep-alive
        name, _, value = line.partition(":")
        if name == "data":
            self._pending.append(value[1:] if value.startswith(" ") else value)
        elif name not in _IGNORED_FIELDS:
            self.faults.append(f"line is not an SSE field: {line[:80]!r}")

    def _emit(self, data: str, now_s: float) -> SSEEvent:
        if self._done:
            self.faults.append(f"data after [DONE]: {data[:80]!r}")
        event = SSEEvent(data=data, arrived_s=now_s)
        if data.strip() == "[DONE]":
            event.is_done = self._done = True
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
