"""The recording proxy: an ASGI app that passes every request to the upstream server unchanged and
streams the answer back unchanged, as it arrives, while keeping a copy of each chat exchange (OpenAI
chat completions, and the Anthropic Messages API at ``.../v1/messages``).

Nothing on the client's path waits for the recording: the request body is forwarded as received
(bytes, not re-encoded JSON), each chunk of the answer is sent on before anything else is done with
it, and the copy (the chunks with their arrival times) goes to ``on_exchange`` only once the client
has the whole answer. The checks and the row are built later, by the recorder, off this path.
The upstream hop goes through httpcore's connection pool (the transport under httpx) directly:
httpx's own request and response layers cost about 0.4 ms a request here, a fifth of the proxy's
whole budget, and a pass-through needs none of what they add.

Headers are forwarded except those that belong to one connection (``Host``, ``Content-Length``,
``Connection``, ``Transfer-Encoding``, ...), which each hop sets for itself; the client's
``Authorization`` reaches the upstream server but is never kept, only the fact that a secret was
sent, so it can be masked wherever it is echoed (``secrets`` of an exchange, never written).
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpcore

from harness.capture.http import describe_transport_error
from harness.scenario.recorded import header_secrets

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Set by each hop for itself (RFC 9110 7.6.1), plus the two a server computes from what it sends.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
# An answer's own length is still right when its bytes pass unchanged, so it is kept.
RESPONSE_DROPPED = HOP_BY_HOP - {b"content-length"}
RECORDED_PATHS = ("/v1/chat/completions", "/chat/completions")
# The Anthropic Messages API, wherever a server mounts it (``/v1/messages``, ``/anthropic/v1/messages``);
# ``/v1/messages/count_tokens`` answers no chat and passes through unrecorded.
MESSAGES_SUFFIX = "/v1/messages"


def recorded_path(path: str) -> bool:
    """Whether an exchange on ``path`` is a chat exchange the proxy keeps a copy of."""
    path = path.rstrip("/")
    return path in RECORDED_PATHS or path.endswith(MESSAGES_SUFFIX)


# httpcore's errors have no common base: the ones an upstream exchange can end with.
UPSTREAM_ERRORS = (
    httpcore.NetworkError,
    httpcore.TimeoutException,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
)
# No timeout on reading: an answer takes as long as the server needs (the client decides).
TIMEOUTS = {"connect": 10.0, "read": None, "write": None, "pool": None}


@dataclass
class Exchange:
    """One chat exchange as the proxy saw it. Times are seconds since the request went upstream."""

    method: str
    path: str
    started_at: float  # wall clock, when the request went upstream
    request_body: bytes
    secrets: list[str] = field(default_factory=list)  # values of secret headers: for masking only
    status: int | None = None
    content_type: str = ""
    content_encoding: str = ""
    chunks: list[tuple[bytes, float]] = field(default_factory=list)
    total_s: float = 0.0
    error: str | None = None  # the exchange did not complete: why

    def body(self) -> bytes:
        """The answer's bytes as the upstream server meant them (decompressed where it compressed)."""
        data = b"".join(chunk for chunk, _ in self.chunks)
        encoding = self.content_encoding.lower()
        if encoding in ("gzip", "deflate"):
            try:
                return zlib.decompress(data, wbits=47)  # gzip or zlib header, detected
            except zlib.error:
                return data
        return data

    @property
    def streamed(self) -> bool:
        return self.content_type.lower().startswith("text/event-stream")

    @property
    def protocol(self) -> str:
        """ "anthropic" for a Messages API exchange, else "openai" (chat completions)."""
        return "anthropic" if self.path.rstrip("/").endswith(MESSAGES_SUFFIX) else "openai"


class RecordingProxy:
    """The ASGI app. ``on_exchange`` gets each chat exchange once its answer is complete (or cut off);
    it must be quick (the recorder queues it)."""

    def __init__(
        self,
        upstream: str,
        on_exchange: Callable[[Exchange], None],
        rewrite: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.on_exchange = on_exchange
        # Applied to the body of each chat request before it goes upstream (``harness agent`` swaps
        # the model the client names for the server's); None passes every byte unchanged.
        self.rewrite = rewrite
        self.pool: httpcore.AsyncConnectionPool | None = None
        origin = httpcore.URL(self.upstream)
        # The Host header the upstream server expects (each hop sets its own).
        self.host = origin.host + (b":%d" % origin.port if origin.port else b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(self, receive, send, 100)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.pool is None:  # run without lifespan events
            self.pool = httpcore.AsyncConnectionPool(max_connections=100, max_keepalive_connections=20)
        whole = await read_body(receive)
        if whole is None:
            return
        body = bytearray(whole)
        method = scope["method"]
        recorded = method == "POST" and recorded_path(scope["path"])
        if recorded and self.rewrite is not None:
            body = bytearray(self.rewrite(bytes(body)))
        headers = [(b"host", self.host)]
        headers += [(name, value) for name, value in scope["headers"] if name.lower() not in HOP_BY_HOP]
        if body or scope["method"] not in ("GET", "HEAD"):
            headers.append((b"content-length", b"%d" % len(body)))
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string") or b""
        url = self.upstream + path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        exchange = Exchange(method, scope["path"], time.time(), bytes(body)) if recorded else None
        started = time.perf_counter()
        request = httpcore.Request(method, url, headers=headers, content=bytes(body), extensions={"timeout": TIMEOUTS})
        try:
            response = await self.pool.handle_async_request(request)
        except UPSTREAM_ERRORS as exc:
            message_text = (
                f"harness record: the upstream server {self.upstream} did not answer: {describe_transport_error(exc)}"
            )
            await _send_error(send, 502, message_text)
            if exchange is not None:
                exchange.error, exchange.total_s = message_text, time.perf_counter() - started
                self._hand_over(exchange, scope)
            return
        # A client that leaves mid-answer makes the proxy drop the upstream answer too, as its own
        # disconnect would have done without the proxy (uvicorn's send() ignores a gone client).
        done = asyncio.Event()
        watcher = asyncio.create_task(_close_on_disconnect(receive, response, done))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [(k, v) for k, v in response.headers if k.lower() not in RESPONSE_DROPPED],
                }
            )
            if exchange is not None:
                exchange.status = response.status
                exchange.content_type = header_value(response.headers, b"content-type")
                exchange.content_encoding = header_value(response.headers, b"content-encoding")
            async for chunk in response.aiter_stream():
                arrived = time.perf_counter() - started
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if exchange is not None:
                    exchange.chunks.append((chunk, arrived))
            done.set()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except BaseException as exc:  # the client left, the upstream broke off, or the proxy is stopping
            client_left = watcher.done() and not watcher.cancelled()
            if exchange is not None:
                left = "the client left before the answer was complete"
                exchange.error = left if client_left else cut_off_reason(exc)
            # The client's connection is dropped like the upstream one was (uvicorn closes a response
            # left incomplete); anything else, the proxy stopping included, goes on up.
            if not (client_left or isinstance(exc, UPSTREAM_ERRORS)) or isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            watcher.cancel()
            if exchange is not None:
                exchange.total_s = time.perf_counter() - started
                self._hand_over(exchange, scope)
            await response.aclose()

    def _hand_over(self, exchange: Exchange, scope: Scope) -> None:
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        exchange.secrets = header_secrets(headers)
        self.on_exchange(exchange)


async def _close_on_disconnect(receive: Receive, response: httpcore.Response, done: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not done.is_set():
                await response.aclose()
            return


def header_value(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    return next((value.decode("latin-1") for key, value in headers if key.lower() == name), "")


async def _send_error(send: Send, status: int, text: str) -> None:
    body = json.dumps({"error": {"message": text, "type": "upstream_unreachable"}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def cut_off_reason(exc: BaseException) -> str:
    if isinstance(exc, UPSTREAM_ERRORS):
        return f"the upstream server broke off the answer: {describe_transport_error(exc)}"
    if isinstance(exc, OSError):
        return f"the client left before the answer was complete ({describe_transport_error(exc)})"
    return f"the answer was cut off when the proxy stopped ({type(exc).__name__})"


async def read_body(receive: Receive) -> bytes | None:
    """The whole body of an ASGI request, or None when the client went away before sending it."""
    body = bytearray()
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return bytes(body)


async def serve_lifespan(app: Any, receive: Receive, send: Send, max_connections: int) -> None:
    """ASGI lifespan events for a proxy: its upstream connection pool (``app.pool``) is opened at
    start-up and closed at shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            app.pool = httpcore.AsyncConnectionPool(max_connections=max_connections, max_keepalive_connections=20)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if app.pool is not None:
                await app.pool.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
