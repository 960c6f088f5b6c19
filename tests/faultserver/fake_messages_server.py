"""A FAKE Anthropic Messages API server that injects faults on purpose. This is a TEST TOOL, not a
model server: it tests the harness's own native-replay path (``--protocol anthropic|both``), its
``anthropic.*`` checks and its reuse evidence, without a model.

    python tests/faultserver/fake_messages_server.py --port P [--host H] [--mode MODE] [--prefix /anthropic]

It answers ``GET /v1/models``, ``POST {prefix}/v1/messages`` (the Messages API, streamed or not, as
the request asks) and ``POST /v1/chat/completions`` (a plain, correct OpenAI answer, so a run with
``--protocol both`` has both sides). Every Messages answer reports
``usage.cache_read_input_tokens``: the length, in characters / 4, of the prefix the request's
``system`` + ``messages`` share with the previous request's, like a prefix cache would (a billing
header that changes at the top of ``system`` therefore reuses nothing). Modes:

    normal              a text answer; a ``tool_use`` of the first offered tool when tool_choice is
                        ``any`` or ``tool``, or the last user text says "use a tool"
    tool-as-text        like normal, but a streamed tool call arrives as a ``text_delta`` holding
                        ``<tool_call>...</tool_call>`` with ``stop_reason: "end_turn"`` (non-streamed: a
                        proper ``tool_use``)
    max-tokens-overrun  reports ``output_tokens`` 4 above the request's ``max_tokens``
    no-message-stop     streams end after ``message_delta``, without ``message_stop``
    reject-system-role  HTTP 422 naming the role when ``messages`` holds a ``role: "system"`` message

Standard library only; every request is logged as ``fake-messages: request N ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ["normal", "tool-as-text", "max-tokens-overrun", "no-message-stop", "reject-system-role"]
MODEL_ID = "fake-messages-model"


class State:
    def __init__(self, mode: str, prefix: str) -> None:
        self.mode = mode
        self.prefix = prefix
        self.previous = ""
        self.count = 0


def _prompt_text(body: dict[str, Any]) -> str:
    return json.dumps({"system": body.get("system"), "messages": body.get("messages")}, sort_keys=False)


def _shared(a: str, b: str) -> int:
    shared = 0
    for left, right in zip(a, b, strict=False):
        if left != right:
            break
        shared += 1
    return shared


def _wants_tool(body: dict[str, Any]) -> str | None:
    tools = [tool for tool in body.get("tools") or [] if isinstance(tool, dict) and tool.get("name")]
    if not tools:
        return None
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "none":
        return None
    if choice.get("type") == "tool":
        return str(choice.get("name"))
    if choice.get("type") == "any":
        return str(tools[0]["name"])
    last = (body.get("messages") or [{}])[-1]
    content = last.get("content")
    texts = [content] if isinstance(content, str) else [b.get("text", "") for b in content or [] if isinstance(b, dict)]
    return str(tools[0]["name"]) if any("use a tool" in str(text) for text in texts) else None


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            state.count += 1
            print(f"fake-messages: request {state.count} {self.path}", flush=True)
            if self.path == f"{state.prefix}/v1/messages":
                self._messages(body)
            elif self.path == "/v1/chat/completions":
                self._chat(body)
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def _chat(self, body: dict[str, Any]) -> None:
            message = {"role": "assistant", "content": "Done."}
            usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
            if not body.get("stream"):
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                payload = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": MODEL_ID}
                self._json(200, {**payload, "choices": [choice], "usage": usage})
                return
            head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL_ID}
            chunks = [
                {
                    **head,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                },
                {**head, "choices": [{"index": 0, "delta": {"content": "Done."}, "finish_reason": None}]},
                {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            ]
            self._sse([f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"])

        def _messages(self, body: dict[str, Any]) -> None:
            roles = [m.get("role") for m in body.get("messages") or [] if isinstance(m, dict)]
            if state.mode == "reject-system-role" and "system" in roles:
                self._json(
                    422,
                    {
                        "type": "error",
                        "error": {
                            "type": "invalid_request_error",
                            "message": "messages: role 'system' is not allowed; use the top-level system field",
                        },
                    },
                )
                return
            text = _prompt_text(body)
            cached = _shared(state.previous, text) // 4
            state.previous = text
            max_tokens = int(body.get("max_tokens") or 16)
            output = max_tokens + 4 if state.mode == "max-tokens-overrun" else min(2, max_tokens)
            usage = {
                "input_tokens": max(1, len(text) // 4 - cached),
                "cache_read_input_tokens": cached,
                "output_tokens": output,
            }
            tool = _wants_tool(body)
            if not body.get("stream"):
                if tool:
                    block: dict[str, Any] = {
                        "type": "tool_use",
                        "id": f"toolu_{state.count}",
                        "name": tool,
                        "input": {"file_path": "a.py"},
                    }
                else:
                    block = {"type": "text", "text": "Done."}
                payload = {"id": f"msg_{state.count}", "type": "message", "role": "assistant", "model": MODEL_ID}
                stop = "tool_use" if tool else "end_turn"
                self._json(
                    200, {**payload, "content": [block], "stop_reason": stop, "stop_sequence": None, "usage": usage}
                )
                return
            start = {
                "type": "message_start",
                "message": {
                    "id": f"msg_{state.count}",
                    "type": "message",
                    "role": "assistant",
                    "model": MODEL_ID,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {**usage, "output_tokens": 0},
                },
            }
            events: list[dict[str, Any]] = [start, {"type": "ping"}]
            if tool and state.mode != "tool-as-text":
                events += [
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "tool_use", "id": f"toolu_{state.count}", "name": tool, "input": {}},
                    },
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "input_json_delta", "partial_json": '{"file_path":'},
                    },
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "input_json_delta", "partial_json": ' "a.py"}'},
                    },
                ]
                stop = "tool_use"
            else:
                said = (
                    f'<tool_call>{{"name": "{tool}", "arguments": {{"file_path": "a.py"}}}}</tool_call>'
                    if tool
                    else "Done."
                )
                events += [
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": said}},
                ]
                stop = "end_turn"
            events += [
                {"type": "content_block_stop", "index": 0},
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": output},
                },
            ]
            if state.mode != "no-message-stop":
                events.append({"type": "message_stop"})
            self._sse([f"event: {event['type']}\ndata: {json.dumps(event)}\n\n" for event in events])

        def _sse(self, parts: list[str]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for part in parts:
                self.wfile.write(part.encode())
                self.wfile.flush()
            self.close_connection = True

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--prefix", default="", help="a path before /v1/messages (e.g. /anthropic)")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(State(args.mode, args.prefix.rstrip("/"))))
    print(f"fake-messages: pid {os.getpid()} mode {args.mode} on {args.host}:{args.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
