"""Checks on the exchange itself, before any answer is read: did the server answer a valid request?

The rule, for every request a scenario sends (they are all valid): a 200 with a conformant answer,
or, where the scenario accepts it (``unsupported_ok``), a clear 4xx whose body says what is
unsupported. A 5xx, a connection dropped before the answer ended, a hang, or an error event inside
a 200 stream is ``http.server_error_on_valid_request``, with the status and body as evidence.
"""

from __future__ import annotations

import json
from typing import Any

from harness.capture.http import CapturedResponse
from harness.checks.outcome import CheckOutcome
from harness.core.sse import SSEEvent
from harness.scenario.definition import PlannedRequest

SERVER_ERROR = "http.server_error_on_valid_request"
REJECTED = "http.note_rejected_as_unsupported"

# The statuses that say "I do not support this request": bad request, payload too large,
# unsupported media type, unprocessable entity. Auth, not-found and rate limits say something else.
REJECTION_STATUSES = {400, 413, 415, 422}
BODY_CHARS = 160


def error_message(body: bytes) -> str | None:
    """The human-readable message of an error body (OpenAI ``error.message``, FastAPI ``detail``,
    a top-level ``message``, or plain text), or None when the body says nothing."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    try:
        payload: Any = json.loads(text)
    except ValueError:
        return text if not text.startswith(("<", "{", "[")) else None
    if isinstance(payload, dict):
        error = payload.get("error")
        candidates = [
            error.get("message") if isinstance(error, dict) else error,
            payload.get("detail"),
            payload.get("message"),
        ]
        for value in candidates:
            if isinstance(value, list) and value:  # FastAPI validation errors: [{"msg": ...}, ...]
                value = "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in value)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


DROPPED_BY_SCENARIO = "http.note_dropped_by_scenario"


def _body(resp: CapturedResponse) -> str:
    text = (resp.body or b"").decode("utf-8", errors="replace")
    return repr(text[:BODY_CHARS]) + ("..." if len(text) > BODY_CHARS else "")


def check_exchange(resp: CapturedResponse, request: PlannedRequest, out: CheckOutcome) -> bool:
    """The exchange-level checks; True when there is no answer left to check."""
    status = resp.http_status
    if resp.stop_cause == "dropped":
        # The scenario closed the stream mid-answer on purpose: what it cut short is not checked.
        if status is not None and status >= 500:
            out.fail(SERVER_ERROR, f"HTTP {status}: {_body(resp)}")
        out.note(DROPPED_BY_SCENARIO, f"stream closed by the harness after {len(resp.body or b'')} bytes")
        return True
    dropped = bool(resp.transport_error) and resp.stop_cause is None
    if status is not None and status >= 500:
        out.fail(SERVER_ERROR, f"HTTP {status}: {_body(resp)}")
    elif dropped:
        where = "before any answer" if status is None else f"after {len(resp.body or b'')} bytes of a {status}"
        out.fail(SERVER_ERROR, f"connection dropped {where}: {resp.transport_error}")
    elif resp.stop_cause == "stalled":
        out.fail(SERVER_ERROR, f"hang: {resp.transport_error}")
    if resp.stop_cause:
        name = "runaway.stalled" if resp.stop_cause == "stalled" else "runaway.stopped"
        out.fail(name, f"cut off by the harness ({resp.stop_cause}) after {len(resp.body or b'')} bytes")
    if resp.transport_error:
        out.fail("http.transport_error", resp.transport_error)
    if status is not None and status >= 500:
        return True
    if status is not None and status != 200:
        message = error_message(resp.body or b"")
        if request.unsupported_ok and status in REJECTION_STATUSES and message:
            out.note(REJECTED, f"HTTP {status}: {message}")
        else:
            out.fail("http.status", f"HTTP {status}: {_body(resp)}")
        return True
    return status is None and not resp.body  # nothing came back: the transport error is the whole story


def check_error_events(events: list[SSEEvent], out: CheckOutcome) -> None:
    """An error object sent inside a 200 stream: the server failed after the status line went out."""
    for number, event in enumerate(events, 1):
        payload = event.payload
        if payload and "error" in payload and not payload.get("choices"):
            out.fail(SERVER_ERROR, f"event {number} of a 200 stream is an error: {event.data[:BODY_CHARS]!r}")
            return
