"""A test tool: a fake OpenAI-compatible server with a simulated prefix cache and no model.

It stands in for the many releases of real servers that say differently whether they reused their
prompt cache, so the harness's reuse evidence can be tested layer by layer:

- ``--cached-tokens``: reports ``usage.prompt_tokens_details.cached_tokens`` (the protocol layer);
- ``--prompt-tokens whole|uncached``: counts the cached part in ``prompt_tokens`` or not;
- ``--stream-usage always|when-asked|never|refuse``: usage in streams always, only with
  ``stream_options.include_usage``, never, or a 400 naming ``stream_options`` when it is sent;
- ``--log``: writes one line per request to stdout (``hit: N tokens`` / ``miss``), the log layer;
- ``--prefill-ms F``: waits F ms per uncached prompt token before answering (the timing layer);
- ``--fingerprint X`` and ``--version V``: ``system_fingerprint`` on answers, ``GET /version``;
- ``--no-models``: ``GET /v1/models`` and ``/health`` answer 404 (readiness must fall back);
- ``--model-id ID``: any other ``model`` in a request gets a 404 naming it;
- ``--no-cache``: never reuses anything (every prompt processed whole).

A "token" is a whitespace-separated word of the messages; the cache is the previous request's
words, and a request reuses their common prefix.

    python tests/stubs/prefix_cache_server.py --port 8123 [options]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    options: argparse.Namespace
    cache: ClassVar[list[str]] = []
    lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        opts = self.options
        if self.path in ("/v1/models", "/health") and not opts.no_models:
            self._json(200, {"object": "list", "data": [{"id": opts.model_id, "object": "model"}]})
        elif self.path == "/version" and opts.version:
            self._json(200, {"version": opts.version})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw)
        opts = self.options
        if body.get("model") != opts.model_id:
            self._json(404, {"error": f"model {body.get('model')!r} not found"})
            return
        stream = bool(body.get("stream"))
        asked = bool((body.get("stream_options") or {}).get("include_usage"))
        if "stream_options" in body and opts.stream_usage == "refuse":
            self._json(400, {"error": "unrecognized request argument: stream_options"})
            return
        words = [w for m in body.get("messages") or [] for w in str(m.get("content") or "").split()]
        with self.lock:
            reused = next(
                (i for i, (mine, theirs) in enumerate(zip(self.cache, words, strict=False)) if mine != theirs),
                min(len(self.cache), len(words)),
            )
            if opts.no_cache:
                reused = 0
            Handler.cache = words
            if opts.log:
                print(f"hit: {reused} tokens" if reused else "miss", flush=True)
            time.sleep(opts.prefill_ms / 1000 * (len(words) - reused))
        completion = min(4, int(body.get("max_tokens") or 4))
        usage: dict[str, Any] = {
            "prompt_tokens": len(words) if opts.prompt_tokens == "whole" else len(words) - reused,
            "completion_tokens": completion,
        }
        usage["total_tokens"] = usage["prompt_tokens"] + completion
        if opts.cached_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": reused}
        base: dict[str, Any] = {"id": "chatcmpl-fake", "created": int(time.time()), "model": opts.model_id}
        if opts.fingerprint:
            base["system_fingerprint"] = opts.fingerprint
        text = " ".join(["ok"] * completion)
        if not stream:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
            self._json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
            return
        send_usage = opts.stream_usage == "always" or (opts.stream_usage == "when-asked" and asked)
        chunk = {**base, "object": "chat.completion.chunk"}
        events = [
            {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
            {**chunk, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]},
            {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
        ]
        if send_usage:
            events.append({**chunk, "choices": [], "usage": usage})
        payload = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fake prefix-cache server (a test tool)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", help="ignored (accepted so it takes a server's usual command line)")
    parser.add_argument("--model-id", default="fake")
    parser.add_argument("--cached-tokens", action="store_true")
    parser.add_argument("--no-cache", action="store_true", help="never reuse: every prompt is processed whole")
    parser.add_argument("--prompt-tokens", choices=["whole", "uncached"], default="whole")
    parser.add_argument("--stream-usage", choices=["always", "when-asked", "never", "refuse"], default="never")
    parser.add_argument("--log", action="store_true")
    parser.add_argument("--prefill-ms", type=float, default=0.0)
    parser.add_argument("--fingerprint")
    parser.add_argument("--version")
    parser.add_argument("--no-models", action="store_true")
    Handler.options = parser.parse_args(argv)
    server = ThreadingHTTPServer((Handler.options.host, Handler.options.port), Handler)
    server.daemon_threads = True
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
