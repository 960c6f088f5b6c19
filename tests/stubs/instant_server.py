"""A test tool: an OpenAI-compatible chat-completions server that answers at once, with no model.

Used to measure what the harness itself costs per request (its overhead benchmark) and to exercise
the runner's concurrency without paying for generation. Streamed and plain answers are well-formed
(chunked SSE with a finish chunk, a usage chunk and ``[DONE]``; a plain body with usage).

    python tests/stubs/instant_server.py --port 8123 [--host 127.0.0.1] [--tokens 8]
        [--delay-s 0.05 [--serial]]

``--delay-s`` waits before answering; with ``--serial`` requests take turns (one at a time, like the
MLX servers), so N concurrent sessions queue behind each other.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_ID = "instant"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server
    # Headers and body go out in separate writes: with Nagle's algorithm on, the second one waits
    # for the client's delayed ACK (~40 ms), which would swamp every figure measured against this.
    disable_nagle_algorithm = True
    tokens = 8
    delay_s = 0.0
    serial_lock: threading.Lock | None = None

    def log_message(self, format: str, *args: object) -> None:
        pass  # no per-request log line: it would cost more than the answer

    def _send_json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path in ("/health", "/"):
            self._send_json(200, {"status": "ok"})
        elif self.path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "test"}]})
        else:
            self._send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path != "/v1/chat/completions":
            self._send_json(404, {"error": "not found"})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send_json(400, {"error": "body is not JSON"})
            return
        if self.serial_lock is not None:
            with self.serial_lock:
                self._answer(body)
        else:
            self._answer(body)

    def _answer(self, body: dict) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        n = min(self.tokens, int(body.get("max_tokens") or self.tokens))
        words = ["ok"] * n
        prompt_tokens = sum(len(str(m.get("content") or "").split()) + 4 for m in body.get("messages") or []) or 1
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
        base = {"id": "chatcmpl-instant", "created": int(time.time()), "model": body.get("model") or MODEL_ID}
        if not body.get("stream"):
            self._send_json(
                200,
                {
                    **base,
                    "object": "chat.completion",
                    "usage": usage,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": " ".join(words)},
                            "finish_reason": "length",
                        }
                    ],
                },
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = {**base, "object": "chat.completion.chunk"}
        events = [
            {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        ]
        events += [
            {
                **chunk,
                "choices": [{"index": 0, "delta": {"content": ("" if i == 0 else " ") + w}, "finish_reason": None}],
            }
            for i, w in enumerate(words)
        ]
        events.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
        events.append({**chunk, "choices": [], "usage": usage})
        for event in events:
            self._chunk(f"data: {json.dumps(event)}\n\n".encode())
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="instant OpenAI-compatible stub server (a test tool)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", help="ignored (accepted so it takes a server's usual command line)")
    parser.add_argument("--tokens", type=int, default=8, help="tokens in each answer")
    parser.add_argument("--delay-s", type=float, default=0.0, help="wait this long before each answer")
    parser.add_argument("--serial", action="store_true", help="answer one request at a time")
    args = parser.parse_args(argv)
    Handler.tokens = args.tokens
    Handler.delay_s = args.delay_s
    Handler.serial_lock = threading.Lock() if args.serial else None
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"instant stub server on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
