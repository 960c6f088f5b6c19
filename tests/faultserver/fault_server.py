"""A fault-injecting OpenAI-compatible server. This is a TEST TOOL, not a model server.

The harness's reliability tests start it as a real subprocess, through a custom ``ServerSpec``::

    ["{python}", "tests/faultserver/fault_server.py", "--port", "{port}", "--host", "{host}", "--mode", MODE]

It answers ``GET /v1/models`` and ``POST /v1/chat/completions`` with a fixed, well-formed answer
(streamed or not, the way the request asks), and misbehaves on purpose in the way ``--mode`` names:

    normal              answer correctly
    exit-at-start       print a load error and exit 1 before binding the port (a bad model path)
    never-ready         never bind the port (a model load that never finishes)
    never-ready-503     bind, but answer 503 to every request
    never-ready-hang    bind and accept, but never answer anything
    die-mid-stream      send ``--chunks`` chunks of the first chat answer, then SIGKILL itself; once
                        per ``--marker-dir`` (default HOME; a marker file), so a later server answers normally
    stream-forever      stream text (or, not streamed, trickle the body) and never finish
    repeat-tool-call    stream the same tool call again and again
    silent-after-accept read the request, then send nothing, ever
    silent-after-role   send the headers and the role chunk, then nothing, ever
    malformed-sse       a stream with a truncated JSON event and a line that is not an SSE field
    non-json            HTTP 200 whose body is HTML, not JSON (or SSE)
    http-500            HTTP 500 with an error body
    slow-drip           the normal answer, one byte every ``--drip-interval`` seconds (default 1)
    cr-line-endings     the normal streamed answer with bare CR line endings (valid SSE), a comment
                        and an ``event:`` field; the CR that ends each event is written on its own

``--normal-requests N`` answers the first N chat requests normally before the fault applies, and
``--faulty-requests M`` limits the fault to the M requests after those (0, the default: all of them).
``--api-key KEY`` requires ``Authorization: Bearer KEY`` (401 otherwise); ``--echo-key`` puts the
received Authorization header into the log and the answer (to test that the harness redacts it).
``--touch-caches`` writes a file where real servers keep caches (``~/.cache/mlx_textgen``,
``$MLX_KV_CACHE_DIR`` or ``~/.anyclaude/kv-cache``, ``$XDG_CACHE_HOME``), for the isolation tests.
``--child`` starts a child process in the server's process group that ignores SIGTERM (to test
that the whole group is stopped). ``--latency SECONDS`` delays every chat answer (a slowed server,
for ``harness compare --fail-on-regression``). Every request is logged as ``fault-server: request N ...``.
Standard library only, so it starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MODES = [
    "normal",
    "exit-at-start",
    "never-ready",
    "never-ready-503",
    "never-ready-hang",
    "die-mid-stream",
    "stream-forever",
    "repeat-tool-call",
    "silent-after-accept",
    "silent-after-role",
    "malformed-sse",
    "non-json",
    "http-500",
    "slow-drip",
    "cr-line-endings",
]
ANSWER_PIECES = ["Hello", " from", " the", " fault", " server."]
TOOL_CALL = {"name": "Read", "arguments": json.dumps({"file_path": "src/app.py"})}
DIED_MARKER = ".fault-server-died"


def marker_dir(args: argparse.Namespace) -> Path:
    return Path(args.marker_dir) if args.marker_dir else Path.home()


FOREVER = 24 * 3600


def log(message: str) -> None:
    print(f"fault-server: {message}", flush=True)


# -- answers (module-level so the tests can compute the exact bytes of an answer) ----------------


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def sse(payload: Any) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def usage(prompt_tokens: int) -> dict[str, int]:
    completion = len(ANSWER_PIECES)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


def stream_events(model: str, prompt_tokens: int, pieces: list[str] = ANSWER_PIECES) -> list[bytes]:
    """The SSE events of a normal streamed answer: role, one event per piece, finish, [DONE]."""
    events = [sse(_chunk(model, {"role": "assistant"}))]
    events += [sse(_chunk(model, {"content": piece})) for piece in pieces]
    events.append(sse(_chunk(model, {}, "stop", usage=usage(prompt_tokens))))
    events.append(sse("[DONE]"))
    return events


def completion_body(model: str, prompt_tokens: int, text: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text or "".join(ANSWER_PIECES)},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage(prompt_tokens),
    }
    return json.dumps(body).encode()


def prompt_tokens_of(request: dict[str, Any]) -> int:
    words = 0
    for message in request.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        words += len(str(content or "").split())
    return max(words, 1)


# -- the server ----------------------------------------------------------------------------------


class State:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lock = threading.Lock()
        self.requests = 0

    def next_request(self) -> int:
        with self.lock:
            self.requests += 1
            return self.requests


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault-server/1"
    state: State  # set on the class by main()

    def log_message(self, format: str, *args: Any) -> None:
        log(f"{self.address_string()} {format % args}")

    # -- plumbing ------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _start_chunked(self, content_type: str = "text/event-stream") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def _chunk_out(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _authorized(self) -> bool:
        args = self.state.args
        received = self.headers.get("Authorization")
        if args.echo_key:
            log(f"received Authorization header: {received!r}")
        if args.api_key and received != f"Bearer {args.api_key}":
            body = {
                "error": {
                    "message": f"invalid API key: {received!r}" if args.echo_key else "invalid API key",
                    "type": "invalid_request_error",
                }
            }
            self._send(401, json.dumps(body).encode())
            return False
        return True

    def _hang(self) -> None:
        time.sleep(FOREVER)

    # -- endpoints -----------------------------------------------------------------------------
    def do_GET(self) -> None:
        mode = self.state.args.mode
        if mode == "never-ready-hang":
            self._hang()
            return
        if mode == "never-ready-503":
            self._send(503, b'{"error": {"message": "model still loading"}}')
            return
        if not self._authorized():
            return
        if self.path in ("/v1/models", "/health"):
            model = self.state.args.model_id
            self._send(
                200,
                json.dumps(
                    {
                        "object": "list",
                        "data": [{"id": model, "object": "model", "created": 1700000000, "owned_by": "fault-server"}],
                    }
                ).encode(),
            )
        else:
            self._send(404, b'{"error": {"message": "not found"}}')

    def do_POST(self) -> None:
        args = self.state.args
        if args.mode == "never-ready-hang":
            self._hang()
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path != "/v1/chat/completions":
            self._send(404, b'{"error": {"message": "not found"}}')
            return
        number = self.state.next_request()
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, b'{"error": {"message": "body is not JSON"}}')
            return
        stream = bool(request.get("stream"))
        log(f"request {number} POST /v1/chat/completions stream={stream}")
        if not self._authorized():
            return
        faulty = number > args.normal_requests and (
            not args.faulty_requests or number <= args.normal_requests + args.faulty_requests
        )
        mode = args.mode if faulty else "normal"
        model, prompt = args.model_id, prompt_tokens_of(request)
        if mode == "die-mid-stream" and (marker_dir(args) / DIED_MARKER).exists():
            mode = "normal"  # died once already: the server started after it behaves
        answer = getattr(self, "fault_" + mode.replace("-", "_"))
        if args.latency:
            time.sleep(args.latency)  # a slower server: every chat answer starts this much later
        answer(model, prompt, stream)
        log(f"request {number} answered ({mode})")

    # -- behaviours ----------------------------------------------------------------------------
    def fault_normal(self, model: str, prompt: int, stream: bool) -> None:
        text = None
        if self.state.args.echo_key:
            text = "You sent " + str(self.headers.get("Authorization"))
        if not stream:
            self._send(200, completion_body(model, prompt, text))
            return
        self._start_chunked()
        for event in stream_events(model, prompt, [text] if text else ANSWER_PIECES):
            self._chunk_out(event)
        self._end_chunked()

    def fault_die_mid_stream(self, model: str, prompt: int, stream: bool) -> None:
        (marker_dir(self.state.args) / DIED_MARKER).write_text(str(os.getpid()))
        if stream:
            self._start_chunked()
            for event in stream_events(model, prompt)[: self.state.args.chunks]:
                self._chunk_out(event)
                time.sleep(0.05)
        else:
            body = completion_body(model, prompt)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
        log("killing myself with SIGKILL mid-answer")
        os.kill(os.getpid(), signal.SIGKILL)

    def fault_stream_forever(self, model: str, prompt: int, stream: bool) -> None:
        self._start_chunked("text/event-stream" if stream else "application/json")
        if stream:
            self._chunk_out(sse(_chunk(model, {"role": "assistant"})))
        else:
            self._chunk_out(b'{"id": "chatcmpl-fault", "choices": [{"index": 0, "message": {"content": "')
        while True:
            self._chunk_out(sse(_chunk(model, {"content": "la "})) if stream else b"la ")
            time.sleep(0.01)

    def fault_repeat_tool_call(self, model: str, prompt: int, stream: bool) -> None:
        if not stream:
            calls = [{"id": f"call_{i}", "type": "function", "function": TOOL_CALL} for i in range(50)]
            body = {
                "id": "chatcmpl-fault",
                "object": "chat.completion",
                "created": 1700000000,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": None, "tool_calls": calls},
                        "finish_reason": "tool_calls",
                    }
                ],
                "usage": usage(prompt),
            }
            self._send(200, json.dumps(body).encode())
            return
        self._start_chunked()
        self._chunk_out(sse(_chunk(model, {"role": "assistant"})))
        index = 0
        while True:
            call = {"index": index, "id": f"call_{index}", "type": "function", "function": TOOL_CALL}
            self._chunk_out(sse(_chunk(model, {"tool_calls": [call]})))
            index += 1
            time.sleep(0.01)

    def fault_silent_after_accept(self, model: str, prompt: int, stream: bool) -> None:
        self._hang()

    def fault_silent_after_role(self, model: str, prompt: int, stream: bool) -> None:
        if stream:
            self._start_chunked()
            self._chunk_out(sse(_chunk(model, {"role": "assistant"})))
        self._hang()

    def fault_malformed_sse(self, model: str, prompt: int, stream: bool) -> None:
        if not stream:
            self._send(200, b'{"id": "chatcmpl-fault", "choices": [{"index": 0, "message": {"content": "he')
            return
        self._start_chunked()
        self._chunk_out(sse(_chunk(model, {"role": "assistant"})))
        self._chunk_out(b'data: {"choices": [{"index": 0, "delta": {"content": "he\n\n')
        self._chunk_out(b"this line is not an SSE field\n\n")
        self._chunk_out(sse(_chunk(model, {}, "stop")))
        self._chunk_out(sse("[DONE]"))
        self._end_chunked()

    def fault_cr_line_endings(self, model: str, prompt: int, stream: bool) -> None:
        if not stream:
            self._send(200, completion_body(model, prompt))
            return
        self._start_chunked()
        self._chunk_out(b": keep-alive\r")
        for event in stream_events(model, prompt):
            framed = b"event: chunk\r" + event.replace(b"\n", b"\r")
            self._chunk_out(framed[:-1])  # the event's last CR comes with the next write
            self._chunk_out(framed[-1:])
        self._end_chunked()

    def fault_non_json(self, model: str, prompt: int, stream: bool) -> None:
        self._send(200, b"<html><body>502 Bad Gateway (proxy page)</body></html>", "text/html")

    def fault_http_500(self, model: str, prompt: int, stream: bool) -> None:
        self._send(500, b'{"error": {"message": "boom: generation failed", "type": "internal_server_error"}}')

    def fault_slow_drip(self, model: str, prompt: int, stream: bool) -> None:
        interval = self.state.args.drip_interval
        if stream:
            events = stream_events(model, prompt)
            self._start_chunked()
            self._chunk_out(events[0])  # the role chunk at once, the rest byte by byte
            rest = b"".join(events[1:])
        else:
            rest = completion_body(model, prompt)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(rest)))
            self.end_headers()
            self.wfile.flush()
        started = time.monotonic()
        for position in range(len(rest)):
            # An absolute schedule: byte i leaves at (i + 1) * interval, whatever the sleeps' jitter.
            delay = started + (position + 1) * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            byte = rest[position : position + 1]
            if stream:
                self._chunk_out(byte)
            else:
                self.wfile.write(byte)
                self.wfile.flush()
        if stream:
            self._end_chunked()


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def get_request(self):  # type: ignore[no-untyped-def]
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


def start_child(tag: str) -> None:
    """A child in this process group that ignores SIGTERM: only a group SIGKILL ends it."""
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"
    child = subprocess.Popen([sys.executable, "-c", code, "fault_server.py-child", tag])
    log(f"started child process {child.pid}")


def touch_caches() -> None:
    """Writes a file where a real server keeps its caches, the way each one finds the place."""
    places = [
        Path.home() / ".cache" / "mlx_textgen",
        Path(os.environ.get("MLX_KV_CACHE_DIR", "~/.anyclaude/kv-cache")).expanduser(),
        Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "fault-server",
    ]
    for place in places:
        place.mkdir(parents=True, exist_ok=True)
        (place / "fault-cache.txt").write_text("written by the fault server\n")
        log(f"wrote cache file in {place}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fault-injecting OpenAI-compatible test server.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--model", default=None, help="ignored except for its name (the served model id)")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--echo-key", action="store_true")
    parser.add_argument("--normal-requests", type=int, default=0, help="answer the first N chat requests normally")
    parser.add_argument("--faulty-requests", type=int, default=0, help="misbehave on N requests only (0: all)")
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--drip-interval", type=float, default=1.0)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--touch-caches", action="store_true", help="write a file in each usual cache dir")
    parser.add_argument("--tag", default="", help="free text, logged and otherwise ignored")
    parser.add_argument("--marker-dir", default=None, help="where die-mid-stream leaves its marker (default: HOME)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each chat answer")
    args = parser.parse_args(argv)
    args.model_id = Path(args.model).name if args.model else "fault-model"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Like many servers, it echoes its command line (with any key in it) and its environment's HOME.
    log(f"argv {sys.argv[1:]}")
    log(f"HOME={os.environ.get('HOME')} pid={os.getpid()} pgid={os.getpgid(0)}")
    if args.touch_caches:
        touch_caches()
    if args.child:
        start_child(args.tag)
    if args.mode == "exit-at-start":
        log(f"loading model {args.model} ...")
        time.sleep(0.2)
        print(f"Error: cannot load model {args.model}: config.json is not valid JSON", file=sys.stderr, flush=True)
        return 1
    if args.mode == "never-ready":
        for _ in range(FOREVER):
            log("still loading the model ...")
            time.sleep(1.0)
    Handler.state = State(args)
    server = Server((args.host, args.port), Handler)
    log(f"listening on http://{args.host}:{args.port} mode={args.mode}")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
