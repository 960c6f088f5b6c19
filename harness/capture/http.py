"""Replay: send one planned request over HTTP (streamed or not), time it, and guard against runaways.

Timing is taken on the client side, as a coding agent would see it, three ways: ``ttfb_s`` is the
time to the first byte of the body (a role-only chunk counts), ``ttft_s`` the time to the first
generated token of any kind (text, a tool call or reasoning), ``ttft_content_s`` the time to the
first visible text. A server that streams a role chunk at once and everything else at the end shows
a small ``ttfb_s`` and a ``ttft_s`` as long as the whole request. A stream that
goes past its budget or repeats one tool call is cut off as ``runaway``; one that stops sending bytes
for ``idle_timeout_s`` is cut off as ``stalled``. Either way the request becomes a row and the run
goes on.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from harness.capture import anthropic_events
from harness.core.sse import SSEReader, delta_has_content, delta_has_output

# The APIs replay speaks (``harness.core.rows.Protocol``).
OPENAI, ANTHROPIC = "openai", "anthropic"


@dataclass
class CapturedResponse:
    """What replay captured for one request."""

    stream: bool
    http_status: int | None
    body: bytes  # non-stream: the whole body; stream: the raw SSE bytes
    sse: SSEReader | None = None  # stream only: parsed events + framing faults
    transport_error: str | None = None  # None when the HTTP exchange completed
    # "runaway" / "stalled" when the harness cut the request off, "dropped" when the scenario did
    stop_cause: str | None = None
    request_body: bytes = b""  # the exact bytes sent, so a failing exchange can be replayed


@dataclass
class ReplayLimits:
    request_timeout_s: float = 300.0  # whole request, streamed or not
    idle_timeout_s: float = 120.0  # no byte for this long on a stream -> stalled
    max_events: int = 4096  # SSE events per answer -> runaway
    max_repeated_tool_calls: int = 8  # the same tool called again and again -> runaway
    max_markup_repeats: int = 16  # tool-call markup repeated in streamed text -> runaway


@dataclass
class Timed:
    """What the clock said about one request."""

    captured: CapturedResponse
    ttft_s: float | None  # first token of any kind
    total_s: float
    ttfb_s: float | None = None  # first byte of the body
    ttft_content_s: float | None = None  # first visible text


def conversation_sha(body: dict[str, Any]) -> str:
    """What a response cache keys on: the request's messages and tools (not stream, max_tokens or
    sampling), hashed; equal for two requests that carry the same conversation. A Messages API
    body's ``system`` (outside its messages) counts too."""
    fields = {"messages": body.get("messages"), "tools": body.get("tools")}
    if "system" in body:
        fields["system"] = body["system"]
    key = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


TOOL_MARKUP = ("<tool_call>", "<function=", "<|channel|>commentary", "[TOOL_REQUEST]")


def encode_body(body: dict[str, Any]) -> bytes:
    """The request body as sent: UTF-8 JSON, compact, non-ASCII kept (what httpx's ``json=`` sends)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def send(
    client: httpx.Client,
    url: str,
    body: dict[str, Any],
    limits: ReplayLimits,
    headers: dict[str, str] | None = None,
    protocol: str = OPENAI,
    drop_after: int | None = None,
) -> Timed:
    """Sends one request (chat completions, or the Messages API for ``protocol`` "anthropic") and
    captures everything needed for the checks. ``drop_after``: close a stream after that many
    events, as a client that stops reading does (``stop_cause`` "dropped")."""
    content = encode_body(body)
    sent = {"Content-Type": "application/json", **(headers or {})}
    if body.get("stream"):
        timed = _send_stream(client, url, content, limits, sent, protocol, drop_after)
    else:
        timed = _send_plain(client, url, content, limits, sent, protocol)
    timed.captured.request_body = content
    return timed


def event_has_output(payload: dict[str, Any] | None, protocol: str = OPENAI) -> bool:
    """Whether a stream event carries a generated token of any kind, in ``protocol``'s shape."""
    return anthropic_events.event_has_output(payload) if protocol == ANTHROPIC else delta_has_output(payload)


def event_has_content(payload: dict[str, Any] | None, protocol: str = OPENAI) -> bool:
    """Whether a stream event (or a non-streamed body) carries visible text, in ``protocol``'s shape."""
    if protocol != ANTHROPIC:
        return delta_has_content(payload)
    if isinstance(payload, dict) and payload.get("type") == "message":
        blocks = payload.get("content")
        return any(isinstance(b, dict) and b.get("type") == "text" and b.get("text") for b in blocks or [])
    return anthropic_events.event_has_content(payload)


def event_has_visible_output(payload: dict[str, Any] | None, protocol: str = OPENAI) -> bool:
    """Whether a stream event starts a tool call or adds text that is not only whitespace: the first
    thing a client can show (a leading newline is generated but shows nothing)."""
    names, texts = _event_output(payload, protocol)
    return bool(names) or any(text.strip() for text in texts)


def _send_plain(
    client: httpx.Client, url: str, content: bytes, limits: ReplayLimits, headers: dict[str, str], protocol: str
) -> Timed:
    started = time.perf_counter()
    timeout = httpx.Timeout(limits.request_timeout_s, connect=10.0)
    status: int | None = None
    data = bytearray()
    first_byte: float | None = None
    # The body is read as it arrives: httpx's read timeout only bounds the gap between two bytes,
    # so a server trickling a body forever is cut off here, at the whole-request budget.
    try:
        with client.stream("POST", url, content=content, timeout=timeout, headers=headers) as response:
            status = response.status_code
            for chunk in response.iter_bytes():
                if first_byte is None and chunk:
                    first_byte = time.perf_counter() - started
                data.extend(chunk)
                if time.perf_counter() - started > limits.request_timeout_s:
                    total = time.perf_counter() - started
                    captured = CapturedResponse(
                        stream=False,
                        http_status=status,
                        body=bytes(data),
                        sse=None,
                        stop_cause="runaway",
                        transport_error=f"answer still arriving after {limits.request_timeout_s:g} s "
                        f"({len(data)} bytes so far)",
                    )
                    return Timed(captured, ttft_s=None, total_s=total, ttfb_s=first_byte)
        total = time.perf_counter() - started
        captured = CapturedResponse(
            stream=False, http_status=status, body=bytes(data), sse=None, transport_error=None, stop_cause=None
        )
        # Nothing can be read before the whole body, so the first token (and any text) is seen when
        # the body is.
        return Timed(
            captured,
            ttft_s=total,
            total_s=total,
            ttfb_s=first_byte,
            ttft_content_s=_plain_content_at(data, total, protocol),
        )
    except httpx.TimeoutException as exc:
        total = time.perf_counter() - started
        error = (
            f"no answer within {limits.request_timeout_s:g} s ({type(exc).__name__})"
            if status is None
            else f"answer stopped after {len(data)} bytes: no byte for {limits.request_timeout_s:g} s"
        )
        captured = CapturedResponse(
            stream=False, http_status=status, body=bytes(data), sse=None, transport_error=error, stop_cause="stalled"
        )
        return Timed(captured, ttft_s=None, total_s=total, ttfb_s=first_byte)
    except httpx.HTTPError as exc:
        total = time.perf_counter() - started
        captured = CapturedResponse(
            stream=False,
            http_status=status,
            body=bytes(data),
            sse=None,
            transport_error=describe_transport_error(exc),
            stop_cause=None,
        )
        return Timed(captured, ttft_s=None, total_s=total, ttfb_s=first_byte)


def _plain_content_at(data: bytearray, total: float, protocol: str) -> float | None:
    """``total`` when a non-streamed body carries visible text, else None (a tool-call-only answer)."""
    try:
        parsed = json.loads(bytes(data))
    except ValueError:
        return None
    return total if isinstance(parsed, dict) and event_has_content(parsed, protocol) else None


def _send_stream(
    client: httpx.Client,
    url: str,
    content: bytes,
    limits: ReplayLimits,
    headers: dict[str, str],
    protocol: str,
    drop_after: int | None = None,
) -> Timed:
    reader = SSEReader()
    started = time.perf_counter()
    first_output: float | None = None
    first_byte: float | None = None
    first_content: float | None = None
    status: int | None = None
    transport_error: str | None = None
    stop_cause: str | None = None
    call_names: dict[str, int] = {}
    text_so_far: list[str] = []
    # The read timeout is the idle timeout: httpx raises when no byte arrives for that long.
    timeout = httpx.Timeout(limits.idle_timeout_s, connect=10.0)
    try:
        with client.stream("POST", url, content=content, timeout=timeout, headers=headers) as response:
            status = response.status_code
            for chunk in response.iter_raw():
                now = time.perf_counter() - started
                if first_byte is None and chunk:
                    first_byte = now
                for event in reader.feed(chunk, now):
                    if first_output is None and event_has_output(event.payload, protocol):
                        first_output = event.arrived_s
                    if first_content is None and event_has_content(event.payload, protocol):
                        first_content = event.arrived_s
                    calls, text = _event_output(event.payload, protocol)
                    cause = _runaway_cause(calls, text, call_names, text_so_far, len(reader.events), limits)
                    if cause:
                        stop_cause = "runaway"
                        transport_error = cause
                        break
                    if drop_after is not None and len(reader.events) >= drop_after:
                        stop_cause = "dropped"  # leaving the block closes the connection mid-answer
                        break
                if stop_cause:
                    break
                if now > limits.request_timeout_s:
                    stop_cause = "runaway"
                    transport_error = f"stream still running after {limits.request_timeout_s:g} s"
                    break
    except httpx.ReadTimeout:
        stop_cause = "stalled"
        transport_error = f"no byte for {limits.idle_timeout_s:g} s (stream went silent)"
    except httpx.TimeoutException as exc:
        transport_error = describe_transport_error(exc)
        stop_cause = "stalled"
    except httpx.HTTPError as exc:
        transport_error = describe_transport_error(exc)
    total = time.perf_counter() - started
    reader.close(total)
    captured = CapturedResponse(
        stream=True,
        http_status=status,
        body=bytes(reader.raw),
        sse=reader,
        transport_error=transport_error,
        stop_cause=stop_cause,
    )
    return Timed(captured, ttft_s=first_output, total_s=total, ttfb_s=first_byte, ttft_content_s=first_content)


def _event_output(payload: dict[str, Any] | None, protocol: str) -> tuple[list[str], list[str]]:
    """The tool names a stream event starts and the text pieces it adds, in ``protocol``'s shape."""
    if protocol == ANTHROPIC:
        name = anthropic_events.event_tool_name(payload)
        return ([name] if name else []), [anthropic_events.event_text(payload)]
    names: list[str] = []
    texts: list[str] = []
    for choice in (payload or {}).get("choices") or []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        for call in delta.get("tool_calls") or []:
            name = ((call or {}).get("function") or {}).get("name")
            if name:
                names.append(name)
        content = delta.get("content")
        if isinstance(content, str):
            texts.append(content)
    return names, texts


def _runaway_cause(
    names: list[str],
    texts: list[str],
    call_names: dict[str, int],
    text_so_far: list[str],
    event_count: int,
    limits: ReplayLimits,
) -> str | None:
    if event_count > limits.max_events:
        return f"more than {limits.max_events} stream events"
    for name in names:
        call_names[name] = call_names.get(name, 0) + 1
        if call_names[name] > limits.max_repeated_tool_calls:
            return f"tool '{name}' called more than {limits.max_repeated_tool_calls} times in one answer"
    for content in texts:
        if content:
            text_so_far.append(content)
            if any(marker in content for marker in ("<", "[")):
                joined = "".join(text_so_far)
                for marker in TOOL_MARKUP:
                    if joined.count(marker) > limits.max_markup_repeats:
                        return f"tool-call markup {marker!r} repeated more than {limits.max_markup_repeats} times"
    return None


def describe_transport_error(exc: BaseException) -> str:
    """A short cause for a transport failure (connection refused, reset mid-stream, ...): the
    exception's type and message, else its cause's."""
    cause = exc.__cause__ or exc.__context__
    detail = str(exc) or (str(cause) if cause else "")
    return f"{type(exc).__name__}: {detail}".strip().rstrip(":")[:300]
