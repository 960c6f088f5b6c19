"""What the Python clients share in a replay: a transport that answers with the captured bytes
(ended by the transport error that ended them, where one did), and reading a result the way an
application does.

The transport is built from the HTTP package the client itself uses: ``openai`` 3 and ``anthropic`` 2
are built on ``httpx2`` (httpx's fork, same API; anthropic refuses httpx objects), older releases on
``httpx``.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

from harness.clients.answers import CapturedAnswer


def replay_transport(answer: CapturedAnswer, http: ModuleType = httpx) -> Any:
    """A mock transport of package ``http`` whose every response is ``answer``."""

    class ReplayStream(http.SyncByteStream):  # type: ignore[name-defined]
        def __iter__(self) -> Iterator[bytes]:
            if answer.body:
                yield answer.body
            if answer.cut:
                raise http.RemoteProtocolError(f"replayed transport error: {answer.cut}")

    content_type = "text/event-stream" if answer.stream else "application/json"

    def handler(request: Any) -> Any:
        if answer.status is None:  # the server never answered (refused, or dropped before the headers)
            raise http.ConnectError(f"replayed transport error: {answer.cut or 'no answer'}", request=request)
        return http.Response(
            answer.status, headers={"content-type": content_type}, stream=ReplayStream(), request=request
        )

    return http.MockTransport(handler)


def parsed_arguments(raw: Any) -> Any:
    """A call's arguments as an application reads them: the parsed JSON, else the raw string."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def describe(exc: BaseException) -> str:
    """``Type: message``; for an exception without a message (a failed assert in the client), the
    client code that raised it: ``AssertionError at openai/lib/streaming/chat/_completions.py:342``."""
    message = str(exc)[:300]
    if message:
        return f"{type(exc).__name__}: {message}"
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    frame = frames[-1]
    parts = Path(frame.filename).parts
    inside = parts[parts.index("site-packages") + 1 :] if "site-packages" in parts else parts[-1:]
    where = "/".join(inside)
    return f"{type(exc).__name__} at {where}:{frame.lineno}"
