"""The origin proxy's job, done live: a client that speaks the Anthropic Messages API (Claude Code)
in front of a server that speaks only OpenAI chat completions.

Each ``POST .../v1/messages`` is converted to an OpenAI chat request by the rules of
``harness.scenario.anthropic`` (R1-R8), its ``model`` swapped for the server's, and sent to the
server's chat path; the answer comes back converted into the Messages API, event by event as the
OpenAI chunks arrive when the client asked for a stream. The rules of the way back, each marked
where it is applied below:

R10 a non-streamed ``chat.completion`` becomes a Messages object: the message's text (when not
    empty) is a ``text`` block, each tool call a ``tool_use`` block with its id, name and its
    arguments parsed as the ``input`` object (arguments that are not a JSON object give ``{}``:
    the Messages API has no place for anything else); ``usage`` becomes ``input_tokens`` /
    ``output_tokens``; the ``model`` is the one the client asked for.
R11 ``finish_reason`` maps back: ``stop`` -> ``end_turn`` (``tool_use`` when the answer made tool
    calls), ``length`` -> ``max_tokens``, ``tool_calls`` / ``function_call`` -> ``tool_use``,
    anything else (``content_filter``, none at all) -> ``end_turn``.
R12 a stream becomes the Messages events: ``message_start`` when the first chunk arrives, a text
    block opened on the first text delta (``text_delta`` events), each new tool-call index closes the
    open block and opens a ``tool_use`` block whose argument fragments pass on unchanged as
    ``input_json_delta`` events, then ``content_block_stop``, ``message_delta`` (the stop reason by
    R11, output tokens from the stream's usage chunk, which the converted request asks for with
    ``stream_options.include_usage``) and ``message_stop``. ``reasoning_content`` deltas have no
    block here (a thinking block needs a signature the server cannot give): left out.
R13 an answer that is not a 200 becomes a Messages error object with the same status, the server's
    own error text as its message; a stream the server breaks off ends with an ``error`` event.

The OpenAI exchange with the server (the converted request, the server's own answer bytes and
their arrival times) is what ``on_exchange`` gets: the checks and the row judge what the server
did, not the conversion. Nothing is sent anywhere but to the one upstream server.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpcore

from harness.capture.http import describe_transport_error
from harness.core.sse import SSEReader
from harness.record.proxy import (
    MESSAGES_SUFFIX,
    TIMEOUTS,
    UPSTREAM_ERRORS,
    Exchange,
    Receive,
    Scope,
    Send,
    cut_off_reason,
    header_value,
    read_body,
    serve_lifespan,
)
from harness.scenario import anthropic
from harness.scenario.recorded import header_secrets

# R11
FINISH_TO_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use"}
_FORWARDED_HEADERS = (b"authorization", b"x-api-key", b"user-agent")


def stop_reason(finish_reason: Any, made_calls: bool) -> str:
    """R11: the Messages ``stop_reason`` for an OpenAI ``finish_reason``."""
    if made_calls and finish_reason in (None, "stop", "tool_calls", "function_call"):
        return "tool_use"
    return FINISH_TO_STOP.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"


def _tool_input(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) and arguments.strip() else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def messages_answer(completion: dict[str, Any], model: str) -> dict[str, Any]:
    """R10: a ``chat.completion`` as the Messages object a client of the Messages API reads."""
    choices = completion.get("choices") or [{}]
    choice: dict[str, Any] = choices[0] if isinstance(choices[0], dict) else {}
    message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls: list[Any] = message["tool_calls"] if isinstance(message.get("tool_calls"), list) else []
    for call in calls:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": str(call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}"),
                "name": str(function.get("name", "")),
                "input": _tool_input(function.get("arguments")),
            }
        )
    usage: dict[str, Any] = completion["usage"] if isinstance(completion.get("usage"), dict) else {}
    tokens = {
        "input_tokens": int(usage.get("prompt_tokens") or 0),
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }
    return {
        "id": f"msg_{completion.get('id') or uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason"), bool(calls)),
        "stop_sequence": None,
        "usage": tokens,
    }


def error_answer(status: int | None, text: str) -> dict[str, Any]:
    """R13: a Messages API error object carrying the server's own error text."""
    kind = "invalid_request_error" if status is not None and 400 <= status < 500 else "api_error"
    return {"type": "error", "error": {"type": kind, "message": text}}


def sse_event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


class StreamConverter:
    """R12: OpenAI chat-completion chunks in, Messages API events out, one chunk at a time."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.index = -1  # the open content block; -1: none open
        self.open_kind: str | None = None
        self.call_blocks: dict[int, int] = {}  # OpenAI tool-call index -> content block index
        self.finish_reason: Any = None
        self.usage: dict[str, Any] = {}
        self.finished = False

    def _start(self, chunk_id: Any) -> bytes:
        self.started = True
        message: dict[str, Any] = {
            "id": f"msg_{chunk_id or uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return sse_event("message_start", {"type": "message_start", "message": message})

    def _close_block(self) -> bytes:
        if self.open_kind is None:
            return b""
        self.open_kind = None
        return sse_event("content_block_stop", {"type": "content_block_stop", "index": self.index})

    def _open_block(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close_block()
        self.index += 1
        self.open_kind = kind
        return out + sse_event(
            "content_block_start", {"type": "content_block_start", "index": self.index, "content_block": block}
        )

    def feed(self, payload: dict[str, Any]) -> bytes:
        """The events for one chunk of the OpenAI stream (a parsed ``data:`` object)."""
        out = b"" if self.started else self._start(payload.get("id"))
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        for choice in payload.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta: dict[str, Any] = choice["delta"] if isinstance(choice.get("delta"), dict) else {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self.open_kind != "text":
                    out += self._open_block("text", {"type": "text", "text": ""})
                delta_event = {"type": "text_delta", "text": text}
                out += sse_event(
                    "content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta_event}
                )
            for call in delta.get("tool_calls") or []:
                if not isinstance(call, dict):
                    continue
                position = int(call.get("index", len(self.call_blocks)))
                function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
                if position not in self.call_blocks:
                    block = {
                        "type": "tool_use",
                        "id": str(call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}"),
                        "name": str(function.get("name") or ""),
                        "input": {},
                    }
                    out += self._open_block("tool_use", block)
                    self.call_blocks[position] = self.index
                arguments = function.get("arguments")
                if isinstance(arguments, str) and arguments:
                    out += sse_event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": self.call_blocks[position],
                            "delta": {"type": "input_json_delta", "partial_json": arguments},
                        },
                    )
            if choice.get("finish_reason") is not None:
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self) -> bytes:
        """The closing events: the open block's stop, ``message_delta`` and ``message_stop``."""
        if self.finished:
            return b""
        self.finished = True
        out = b"" if self.started else self._start(None)
        out += self._close_block()
        delta = {"stop_reason": stop_reason(self.finish_reason, bool(self.call_blocks)), "stop_sequence": None}
        usage = {"output_tokens": int(self.usage.get("completion_tokens") or 0)}
        if self.usage.get("prompt_tokens") is not None:
            usage["input_tokens"] = int(self.usage["prompt_tokens"])
        out += sse_event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        return out + sse_event("message_stop", {"type": "message_stop"})

    @staticmethod
    def error(text: str) -> bytes:
        """R13: the event that ends a stream the server broke off."""
        return sse_event("error", {"type": "error", "error": {"type": "api_error", "message": text}})


class ConvertingProxy:
    """The ASGI app: Messages API requests converted to OpenAI chat for ``upstream``; anything else
    is answered 404 (the client's other calls have no OpenAI counterpart). ``on_exchange`` gets the
    OpenAI exchange with the server once it is complete; ``on_notes`` the conversion's notes."""

    def __init__(
        self,
        upstream: str,
        chat_path: str,
        model: str,
        on_exchange: Callable[[Exchange], None],
        on_notes: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.chat_path = chat_path
        self.model = model
        self.on_exchange = on_exchange
        self.on_notes = on_notes or (lambda notes: None)
        self.pool: httpcore.AsyncConnectionPool | None = None
        origin = httpcore.URL(self.upstream)
        self.host = origin.host + (b":%d" % origin.port if origin.port else b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(self, receive, send, 20)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.pool is None:
            self.pool = httpcore.AsyncConnectionPool(max_connections=20)
        body = await read_body(receive)
        if body is None:
            return
        path = scope["path"].rstrip("/")
        if scope["method"] != "POST" or not path.endswith(MESSAGES_SUFFIX):
            text = f"{scope['method']} {scope['path']} has no OpenAI counterpart on this converting proxy"
            await _send_json(send, 404, error_answer(404, text))
            return
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            request = None
        if not isinstance(request, dict):
            await _send_json(send, 400, error_answer(400, "the request body is not a JSON object"))
            return
        client_model = str(request.get("model") or "")
        converted, notes = anthropic.convert_request(request)
        converted["model"] = self.model
        streamed = bool(converted.get("stream"))
        if streamed:
            converted["stream_options"] = {"include_usage": True}  # R12: output tokens for message_delta
        if notes:
            self.on_notes(notes)
        sent = json.dumps(converted, ensure_ascii=False).encode()
        headers = [(b"host", self.host), (b"content-type", b"application/json"), (b"content-length", b"%d" % len(sent))]
        headers += [(name, value) for name, value in scope["headers"] if name.lower() in _FORWARDED_HEADERS]
        exchange = Exchange("POST", self.chat_path, time.time(), sent)
        client_headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        exchange.secrets = header_secrets(client_headers)
        started = time.perf_counter()
        upstream_request = httpcore.Request(
            "POST", self.upstream + self.chat_path, headers=headers, content=sent, extensions={"timeout": TIMEOUTS}
        )
        try:
            response = await self.pool.handle_async_request(upstream_request)
        except UPSTREAM_ERRORS as exc:
            exchange.error = f"the upstream server {self.upstream} did not answer: {describe_transport_error(exc)}"
            exchange.total_s = time.perf_counter() - started
            self.on_exchange(exchange)
            await _send_json(send, 502, error_answer(502, exchange.error))
            return
        exchange.status = response.status
        exchange.content_type = header_value(response.headers, b"content-type")
        exchange.content_encoding = header_value(response.headers, b"content-encoding")
        try:
            if response.status != 200 or not exchange.streamed:
                await self._plain(response, exchange, started, send, client_model)
            else:
                await self._stream(response, exchange, started, send, client_model)
        except BaseException as exc:
            exchange.error = exchange.error or cut_off_reason(exc)
            if not isinstance(exc, UPSTREAM_ERRORS | OSError):
                raise
        finally:
            exchange.total_s = time.perf_counter() - started
            await response.aclose()
            self.on_exchange(exchange)

    async def _plain(
        self, response: httpcore.Response, exchange: Exchange, started: float, send: Send, model: str
    ) -> None:
        async for chunk in response.aiter_stream():
            exchange.chunks.append((chunk, time.perf_counter() - started))
        text = exchange.body().decode("utf-8", errors="replace")
        if response.status != 200:
            await _send_json(send, response.status, error_answer(response.status, text))  # R13
            return
        try:
            completion = json.loads(text)
        except ValueError:
            completion = None
        if not isinstance(completion, dict):
            await _send_json(send, 502, error_answer(502, f"the server's answer is not JSON: {text[:300]}"))
            return
        await _send_json(send, 200, messages_answer(completion, model))  # R10

    async def _stream(
        self, response: httpcore.Response, exchange: Exchange, started: float, send: Send, model: str
    ) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        converter = StreamConverter(model)
        reader = SSEReader()
        try:
            async for chunk in response.aiter_stream():
                exchange.chunks.append((chunk, time.perf_counter() - started))
                out = b""
                for event in reader.feed(chunk, 0.0):
                    if event.payload is not None:
                        out += converter.feed(event.payload)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
        except UPSTREAM_ERRORS as exc:
            exchange.error = cut_off_reason(exc)
            ending = StreamConverter.error(exchange.error)
            await send({"type": "http.response.body", "body": ending, "more_body": False})
            return
        await send({"type": "http.response.body", "body": converter.finish(), "more_body": False})


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
