"""Stand-in for the legacy custom OpenAI-compatible server (FastAPI + uvicorn + mlx-lm).

Reproduces the observable behaviour described in legacy-server.md, quirks included, so the harness can
compare it with MLX-Textgen on the same model:

    python servers/legacy_server.py --model PATH [--port 8081] [--host 0.0.0.0]

Quirks kept by default, each with a switch that turns it off for a like-for-like comparison:
``--honour-max-tokens`` (otherwise every answer runs to 256 new tokens or EOS), ``--parse-hermes``
(otherwise Hermes ``<tool_call>{json}</tool_call>`` is left as text), ``--no-canned-fallback``
(otherwise a failed generation answers 200 with a canned text), ``--no-response-cache`` (otherwise an
LRU of whole answers short-circuits repeated requests).

Other quirks that have no switch: the KV-cache directory is created but never written (every request
re-processes the whole prompt), streaming is fake (the role chunk, then nothing until generation has
finished, then one character per event), non-streamed answers have no ``id``/``created`` and report
``completion_tokens`` as characters / 4, and a streamed response-cache hit is replayed in the old format:
no role chunk, chunks with ``object: "text_completion"`` and ``tool_calls`` at choice level, one
character per event, a final chunk with the finish reason, then ``[DONE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

# Run as a script (`python servers/legacy_server.py`) or imported by tests with that
# folder on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from legacy_toolparse import parse_tool_calls

log = logging.getLogger("legacy-server")

DEFAULT_MAX_TOKENS = 256  # mlx-lm's default, which the original always got


class ResponseCache:
    """In-memory LRU of whole answers keyed on messages + tools (the docs called it single-slot)."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(messages: Any, tools: Any) -> str:
        # stream, max_tokens and temperature are not part of the key: a quirk kept on purpose.
        return json.dumps({"messages": messages, "tools": tools}, sort_keys=True)

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self.items:
            self.items.move_to_end(key)
            self.hits += 1
            return self.items[key]
        self.misses += 1
        return None

    def put(self, key: str, answer: dict[str, Any]) -> None:
        self.items[key] = answer
        self.items.move_to_end(key)
        while len(self.items) > self.max_size:
            self.items.popitem(last=False)

    def stats(self) -> dict[str, Any]:
        total = self.hits + self.misses
        rate = 100.0 * self.hits / total if total else 0.0
        return {
            "hits": self.hits,
            "misses": self.misses,
            "total_requests": total,
            "hit_rate": f"{rate:.1f}%",
            "cached_items": len(self.items),
        }


def _text_of(content: Any) -> str:
    """List-valued content keeps its text parts only, joined by spaces."""
    if content is None:
        return ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
        return " ".join(parts)
    return str(content)


def normalise_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool results become user turns; list content becomes plain text."""
    call_names: dict[str, str] = {}
    out = []
    for message in messages:
        role = message.get("role", "user")
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and call.get("id"):
                call_names[call["id"]] = (call.get("function") or {}).get("name", "unknown")
        if role == "tool":
            name = message.get("name") or call_names.get(message.get("tool_call_id", ""), "unknown")
            out.append({"role": "user", "content": f"Tool {name} returned:\n{_text_of(message.get('content'))}"})
            continue
        converted = dict(message)
        converted["content"] = _text_of(message.get("content"))
        out.append(converted)
    return out


def normalise_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Every tool gets a parameters.properties object, which some chat templates require."""
    if not tools:
        return None
    out = []
    for tool in tools:
        tool = json.loads(json.dumps(tool))
        function = tool.get("function", tool)
        parameters = function.setdefault("parameters", {"type": "object"})
        if isinstance(parameters, dict):
            parameters.setdefault("properties", {})
        out.append(tool)
    return out


def plain_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    """Fallback when the chat template raises: `User:` / `Assistant:` lines plus the tool list."""
    lines = []
    for message in messages:
        role = str(message.get("role", "user")).capitalize()
        lines.append(f"{role}: {message.get('content', '')}")
    if tools:
        lines.append("Available tools:")
        for tool in tools:
            function = tool.get("function", tool)
            lines.append(f"- {function.get('name')}: {function.get('description', '')}")
    lines.append("Assistant:")
    return "\n".join(lines)


class LegacyEngine:
    """Model, prompt building and greedy generation; one request at a time."""

    def __init__(self, model_path: Path, args: argparse.Namespace, kv_cache_dir: Path) -> None:
        started = time.perf_counter()
        from mlx_lm import load  # imported here: a bad --model fails fast, without loading MLX

        self.model_name = Path(os.path.abspath(model_path)).name
        self.args = args
        self.kv_cache_dir = kv_cache_dir
        self.model, self.tokenizer = load(str(model_path))
        log.info("mlx-lm imported and model %s loaded in %.2f s", self.model_name, time.perf_counter() - started)
        self.lock = threading.Lock()

    def build_prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[int]:
        messages = normalise_messages(messages)
        tools = normalise_tools(tools)
        try:
            prompt = self.tokenizer.apply_chat_template(
                messages, tools=tools, add_generation_prompt=True, tokenize=False
            )
        except Exception as exc:  # any template error falls back to plain text
            log.warning("chat template failed (%s); using plain User:/Assistant: prompt", exc)
            prompt = plain_prompt(messages, tools)
        bos = self.tokenizer.bos_token
        return self.tokenizer.encode(prompt, add_special_tokens=bos is None or not prompt.startswith(bos))

    def generate(self, body: dict[str, Any]) -> dict[str, Any]:
        """Runs one request to completion; returns the non-streamed answer."""
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_sampler

        with self.lock:
            messages, tools = body["messages"], body.get("tools") or None
            prompt = self.build_prompt(messages, tools)
            # The original's KV cache never worked: log it, as it did, and process the full prompt.
            log.info(
                "KV cache unavailable (dir %s stays empty): processing full prompt of %d tokens",
                self.kv_cache_dir,
                len(prompt),
            )
            max_tokens = DEFAULT_MAX_TOKENS
            if self.args.honour_max_tokens and isinstance(body.get("max_tokens"), int):
                max_tokens = max(1, body["max_tokens"])
            started = time.perf_counter()
            pieces, last = [], None
            for last in stream_generate(
                self.model, self.tokenizer, prompt, max_tokens=max_tokens, sampler=make_sampler(temp=0.0)
            ):
                pieces.append(last.text)
            raw = "".join(pieces)
            elapsed = time.perf_counter() - started
            log.info(
                "generated %d tokens in %.2f s (max_tokens=%d; prompt %.0f tok/s, generation %.1f tok/s)",
                last.generation_tokens if last else 0,
                elapsed,
                max_tokens,
                last.prompt_tps if last else 0.0,
                last.generation_tps if last else 0.0,
            )
        text, calls = parse_tool_calls(raw, tools, parse_hermes_json=self.args.parse_hermes)
        if calls:
            log.info("tool calls parsed: %s", ", ".join(call["name"] for call in calls))
        return self.answer(text, calls, len(prompt), len(raw))

    def answer(self, text: str, calls: list[dict[str, str]], prompt_tokens: int, chars: int) -> dict[str, Any]:
        tool_calls = [
            {"id": f"call_{i}", "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for i, c in enumerate(calls)
        ] or None
        completion_tokens = chars // 4  # the original estimated tokens from characters
        return {
            "object": "text_completion",
            "model": self.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "tool_calls": tool_calls},
                    "finish_reason": "tool_calls" if tool_calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }

    def canned(self, body: dict[str, Any]) -> dict[str, Any]:
        n_messages, n_tools = len(body.get("messages") or []), len(body.get("tools") or [])
        text = f"I received {n_messages} message(s) and {n_tools} tool(s) are available."
        return self.answer(text, [], 0, len(text))


def _sse(payload: Any) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
    return _sse(
        {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
    )


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "internal_server_error"}}


def create_app(engine: LegacyEngine, cache: ResponseCache | None, canned_fallback: bool):
    # One worker thread: requests queue up behind each other, as in the original.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="legacy-server", lifespan=lifespan)

    def cache_stats() -> dict[str, Any]:
        return cache.stats() if cache else ResponseCache(0).stats()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "healthy", "model": engine.model_name, "model_loaded": True, "cache": cache_stats()}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": engine.model_name, "object": "model", "owned_by": "mlx-vllm", "permission": []}],
        }

    async def run_generation(body: dict[str, Any], key: str | None) -> dict[str, Any]:
        """Generates off the event loop; on failure the canned text (cached) unless switched off."""
        try:
            answer = await asyncio.get_running_loop().run_in_executor(executor, engine.generate, body)
        except Exception as exc:
            log.exception("generation failed")
            if not canned_fallback:
                raise
            log.warning("answering with the canned fallback text after: %s", exc)
            answer = engine.canned(body)
        if cache is not None and key is not None and answer["choices"][0]["message"]["content"]:
            cache.put(key, answer)
        return answer

    async def live_stream(body: dict[str, Any], key: str | None) -> AsyncIterator[str]:
        yield _chunk({"role": "assistant"})
        try:
            answer = await run_generation(body, key)
        except Exception as exc:  # status 200 is already sent
            yield _sse(_error(str(exc)))
            yield "data: [DONE]\n\n"
            return
        choice = answer["choices"][0]
        for char in choice["message"]["content"] or "":
            yield _chunk({"content": char})
        for i, call in enumerate(choice["message"]["tool_calls"] or []):
            name = call["function"]["name"]
            head = {"index": i, "id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": ""}}
            yield _chunk({"tool_calls": [head]})
            yield _chunk({"tool_calls": [{"index": i, "function": {"arguments": call["function"]["arguments"]}}]})
        yield _chunk({}, choice["finish_reason"])
        yield "data: [DONE]\n\n"

    async def replay_stream(answer: dict[str, Any]) -> AsyncIterator[str]:
        # The pre-fix streaming format, which the cache-hit path never lost.
        choice = answer["choices"][0]
        tool_calls = choice["message"]["tool_calls"]
        for char in choice["message"]["content"] or "":
            yield _sse(
                {
                    "object": "text_completion",
                    "model": engine.model_name,
                    "choices": [
                        {"index": 0, "delta": {"content": char}, "tool_calls": tool_calls, "finish_reason": None}
                    ],
                }
            )
        yield _sse(
            {
                "object": "text_completion",
                "model": engine.model_name,
                "choices": [
                    {"index": 0, "delta": {}, "tool_calls": tool_calls, "finish_reason": choice["finish_reason"]}
                ],
            }
        )
        yield "data: [DONE]\n\n"

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = await request.json()
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                raise ValueError("request body must be a JSON object with a 'messages' list")
            if not all(isinstance(m, dict) for m in body["messages"]):
                raise ValueError("each message must be a JSON object")
            tools = body.get("tools")
            if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
                raise ValueError("'tools' must be a list of objects")
        except Exception as exc:  # the original answered every bad body with a 500
            log.warning("malformed request: %s", exc)
            return JSONResponse(_error(f"malformed request: {exc}"), status_code=500)

        stream = bool(body.get("stream", False))
        log.info(
            "request: %d message(s), %d tool(s), stream=%s, max_tokens=%s",
            len(body["messages"]),
            len(body.get("tools") or []),
            stream,
            body.get("max_tokens"),
        )
        key = ResponseCache.key(body["messages"], body.get("tools")) if cache is not None else None
        cached = cache.get(key) if cache is not None and key is not None else None
        if cache is not None and cached is not None:
            log.info("response cache hit (%s)", cache.stats()["hit_rate"])
            if stream:
                return StreamingResponse(replay_stream(cached), media_type="text/event-stream")
            return JSONResponse(cached)
        if stream:
            return StreamingResponse(live_stream(body, key), media_type="text/event-stream")
        try:
            return JSONResponse(await run_generation(body, key))
        except Exception as exc:
            return JSONResponse(_error(f"generation failed: {exc}"), status_code=500)

    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Legacy MLX OpenAI-compatible server (stand-in).")
    parser.add_argument("--model", required=True, help="path to a local mlx-lm model folder")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--host", default="0.0.0.0")
    quirks = parser.add_argument_group("quirk switches (defaults reproduce the original)")
    quirks.add_argument("--honour-max-tokens", action="store_true", help="pass max_tokens to generation")
    quirks.add_argument("--parse-hermes", action="store_true", help="parse Hermes <tool_call>{json}</tool_call>")
    quirks.add_argument("--no-canned-fallback", action="store_true", help="answer 500 when generation fails")
    quirks.add_argument("--no-response-cache", action="store_true", help="disable the LRU response cache")
    return parser.parse_args(argv)


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        log.warning("%s is not an integer; using %d", name, default)
        return default


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout, force=True
    )
    model_path = Path(args.model).expanduser()
    if not model_path.exists():
        print(f"error: model path does not exist: {model_path}", file=sys.stderr, flush=True)
        return 1

    cache = None if args.no_response_cache else ResponseCache(_env_int("VLLM_CACHE_SIZE", 256))
    reported = False

    def print_report(reason: str) -> None:
        nonlocal reported
        if not reported:
            reported = True
            stats = (cache or ResponseCache(0)).stats()
            print(
                f"cache report ({reason}): hits={stats['hits']} misses={stats['misses']} "
                f"hit_rate={stats['hit_rate']} cached_items={stats['cached_items']}",
                flush=True,
            )

    def report_and_exit(signum: int, _frame: Any) -> None:
        print_report(signal.Signals(signum).name)
        sys.exit(0)

    # uvicorn swaps these out while it runs and re-raises the signal after its graceful shutdown,
    # so they also fire then: the report is printed once and the exit status is 0.
    signal.signal(signal.SIGTERM, report_and_exit)
    signal.signal(signal.SIGINT, report_and_exit)

    kv_cache_dir = Path(os.environ.get("MLX_KV_CACHE_DIR", "~/.anyclaude/kv-cache")).expanduser()
    kv_cache_dir.mkdir(parents=True, exist_ok=True)
    log.info(
        "KV cache dir %s (max %d files); response cache %s",
        kv_cache_dir,
        _env_int("MLX_KV_CACHE_MAX_SIZE", 100),
        f"LRU of {cache.max_size}" if cache else "off",
    )
    log.info(
        "legacy-server quirks: max_tokens_ignored=%s, hermes_parsing=%s, canned_fallback=%s, response_cache=%s",
        not args.honour_max_tokens,
        args.parse_hermes,
        not args.no_canned_fallback,
        not args.no_response_cache,
    )

    try:
        engine = LegacyEngine(model_path, args, kv_cache_dir)  # before binding: port open == ready
    except Exception as exc:
        print(f"error: cannot load model from {model_path}: {exc}", file=sys.stderr, flush=True)
        return 1

    import uvicorn

    app = create_app(engine, cache, canned_fallback=not args.no_canned_fallback)
    log.info("serving %s on http://%s:%d", engine.model_name, args.host, args.port)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_config=None, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run()
    print_report("server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
