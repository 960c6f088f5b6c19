"""The legacy stand-in server, run for real on the built-in model: shapes, quirks, switches, signals."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx
import pytest

from harness.core.paths import server_programs_dir
from harness.core.sse import SSEReader

pytestmark = pytest.mark.integration

SERVERS_DIR = server_programs_dir()


def chat(server, messages, timeout=60.0, **fields) -> httpx.Response:
    body = {"model": "ignored", "messages": messages, **fields}
    return httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=timeout)


def stream_chat(server, messages, **fields) -> SSEReader:
    """Reads a streamed answer, stamping each event with its arrival time."""
    reader = SSEReader()
    body = {"messages": messages, "stream": True, **fields}
    with httpx.stream("POST", server.base_url + "/v1/chat/completions", json=body, timeout=60.0) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_raw():
            reader.feed(chunk, time.monotonic())
    reader.close(time.monotonic())
    assert reader.faults == []
    return reader


def health(server) -> dict:
    response = httpx.get(server.base_url + "/health", timeout=5.0)
    assert response.status_code == 200
    return response.json()


def generated_tokens_logged(server) -> list[int]:
    return [int(n) for n in re.findall(r"generated (\d+) tokens", server.log_text())]


# --- the default server (original quirks) -----------------------------------------------------


def test_health_and_models_shapes(legacy_server):
    body = health(legacy_server)
    assert body["status"] == "healthy"
    assert body["model"] == "tiny-chat-qwen2"
    assert body["model_loaded"] is True
    assert set(body["cache"]) == {"hits", "misses", "total_requests", "hit_rate", "cached_items"}
    assert re.fullmatch(r"\d+\.\d%", body["cache"]["hit_rate"])

    models = httpx.get(legacy_server.base_url + "/v1/models", timeout=5.0).json()
    assert models == {
        "object": "list",
        "data": [{"id": "tiny-chat-qwen2", "object": "model", "owned_by": "mlx-vllm", "permission": []}],
    }


def test_startup_logs_quirks_and_creates_empty_kv_cache_dir(legacy_server):
    log = legacy_server.log_text()
    assert (
        "legacy-server quirks: max_tokens_ignored=True, hermes_parsing=False, canned_fallback=True, "
        "response_cache=True" in log
    )
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", log, re.MULTILINE), "log lines carry timestamps"
    assert legacy_server.kv_cache_dir.is_dir()
    assert list(legacy_server.kv_cache_dir.iterdir()) == []


def test_non_streamed_answer_shape_and_quirks(legacy_server):
    response = chat(legacy_server, [{"role": "user", "content": "shape check"}], max_tokens=5, temperature=0.7)
    assert response.status_code == 200
    body = response.json()
    assert "id" not in body and "created" not in body
    assert body["object"] == "text_completion"
    assert body["model"] == "tiny-chat-qwen2"
    (choice,) = body["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["tool_calls"] is None
    text = choice["message"]["content"]
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] == len(text) // 4
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["cache_creation_input_tokens"] == usage["cache_read_input_tokens"] == 0
    # max_tokens=5 is ignored by default: the answer runs to 256 new tokens (or EOS).
    assert generated_tokens_logged(legacy_server)[-1] > 5
    assert f"processing full prompt of {usage['prompt_tokens']} tokens" in legacy_server.log_text()


def test_streamed_answer_is_fake_streaming_one_char_per_event(legacy_server):
    reader = stream_chat(legacy_server, [{"role": "user", "content": "stream check"}])
    events = reader.events
    assert events[0].payload == {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}],
    }
    assert events[-1].is_done
    final = events[-2].payload
    assert final["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    content_events = events[1:-2]
    assert content_events, "the tiny model always produces some text"
    for event in content_events:
        assert set(event.payload) == {"object", "choices"}  # no id, model or created
        assert event.payload["object"] == "chat.completion.chunk"
        assert len(event.payload["choices"][0]["delta"]["content"]) == 1
    assert all("usage" not in e.payload for e in events[:-1])
    # Nothing arrives while the model generates, then the whole text comes in one burst.
    wait = content_events[0].arrived_s - events[0].arrived_s
    burst = content_events[-1].arrived_s - content_events[0].arrived_s
    assert wait > burst


def test_identical_request_is_a_response_cache_hit(legacy_server):
    messages = [{"role": "user", "content": "cache me"}]
    before = health(legacy_server)["cache"]
    first = chat(legacy_server, messages).json()
    middle = health(legacy_server)["cache"]
    second = chat(legacy_server, messages, max_tokens=3, temperature=1.0).json()  # not part of the key
    after = health(legacy_server)["cache"]

    assert middle["misses"] == before["misses"] + 1 and middle["hits"] == before["hits"]
    assert after["hits"] == middle["hits"] + 1 and after["misses"] == middle["misses"]
    assert after["total_requests"] == before["total_requests"] + 2
    assert after["cached_items"] == before["cached_items"] + 1
    assert second == first  # old usage figures too
    assert legacy_server.log_text().count("response cache hit") == after["hits"]

    # A streamed hit is replayed in the pre-fix format, not as chat.completion.chunk.
    replay = stream_chat(legacy_server, messages)
    assert replay.events[-1].is_done
    payloads = [e.payload for e in replay.events[:-1]]
    assert {p["object"] for p in payloads} == {"text_completion"}
    assert all("tool_calls" in p["choices"][0] for p in payloads)
    assert (
        "".join(p["choices"][0]["delta"].get("content", "") for p in payloads)
        == first["choices"][0]["message"]["content"]
    )
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
    assert health(legacy_server)["cache"]["hits"] == after["hits"] + 1


def test_every_request_reprocesses_the_prompt_and_kv_dir_stays_empty(legacy_server):
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "one"}]
    chat(legacy_server, messages)
    follow_up = [*messages, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "two"}]
    usage = chat(legacy_server, follow_up).json()["usage"]
    assert usage["cache_read_input_tokens"] == 0
    log = legacy_server.log_text()
    assert f"processing full prompt of {usage['prompt_tokens']} tokens" in log
    assert list(legacy_server.kv_cache_dir.iterdir()) == []


def test_concurrent_requests_are_served_one_at_a_time(legacy_server):
    from concurrent.futures import ThreadPoolExecutor

    mark = len(legacy_server.log_text())
    prompts = [[{"role": "user", "content": f"parallel {i}"}] for i in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        statuses = [r.status_code for r in pool.map(lambda m: chat(legacy_server, m), prompts)]
    assert statuses == [200, 200, 200]
    steps = re.findall(r"(processing full prompt|generated \d+ tokens)", legacy_server.log_text()[mark:])
    # Strictly start, finish, start, finish...: a generation never starts while another runs.
    assert steps[0::2] == ["processing full prompt"] * 3
    assert all(step.startswith("generated") for step in steps[1::2]) and len(steps) == 6


def test_tool_results_and_tools_are_accepted(legacy_server):
    tools = [{"type": "function", "function": {"name": "read_file", "description": "Read a file"}}]
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "read it"}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "read_file", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "hello"},
    ]  # fmt: skip
    response = chat(legacy_server, messages, tools=tools)
    assert response.status_code == 200
    assert response.json()["choices"][0]["finish_reason"] in {"stop", "tool_calls"}


def test_malformed_body_is_http_500_json(legacy_server):
    response = httpx.post(
        legacy_server.base_url + "/v1/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=10.0,
    )
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "internal_server_error"
    assert error["message"]
    assert chat(legacy_server, "not a list").status_code == 500


# --- switches and process lifecycle ------------------------------------------------------------


def test_honour_max_tokens_switch_and_sigterm_report(legacy_server_factory):
    server = legacy_server_factory("--honour-max-tokens", "--no-response-cache")
    log = server.log_text()
    assert "max_tokens_ignored=False" in log and "response_cache=False" in log

    messages = [{"role": "user", "content": "count"}]
    short = chat(server, messages, max_tokens=5).json()
    assert generated_tokens_logged(server) == [5]
    assert short["usage"]["completion_tokens"] == len(short["choices"][0]["message"]["content"]) // 4
    chat(server, messages)  # no max_tokens: the 256-token default, and no cache hit with the cache off
    assert generated_tokens_logged(server)[-1] > 5
    assert health(server)["cache"]["total_requests"] == 0

    assert server.terminate() == 0
    assert re.search(r"cache report \(SIGTERM\): hits=0 misses=0 hit_rate=0\.0%", server.log_text())


def test_sigterm_after_traffic_reports_hits(legacy_server_factory):
    server = legacy_server_factory()
    messages = [{"role": "user", "content": "x"}]
    chat(server, messages)
    chat(server, messages)
    assert server.terminate() == 0
    assert re.search(r"cache report \(SIGTERM\): hits=1 misses=1 hit_rate=50\.0%", server.log_text())


def test_missing_model_path_exits_1_with_message(tmp_path):
    missing = tmp_path / "no-such-model"
    result = subprocess.run(
        [sys.executable, str(SERVERS_DIR / "legacy_server.py"), "--model", str(missing), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"model path does not exist: {missing}" in result.stderr


# --- in-process: the real app and model, with generation made to fail or to emit a tool call ----


class _BrokenModel:
    """The real model's layers (so mlx-lm can build its cache) but a forward pass that raises."""

    def __init__(self, model) -> None:
        self.layers = model.layers

    def __call__(self, *args, **kwargs):
        raise RuntimeError("simulated failure inside the model")


@pytest.fixture(scope="module")
def server_module():
    sys.path.insert(0, str(SERVERS_DIR))
    import legacy_server

    return legacy_server


@pytest.fixture(scope="module")
def engine(server_module, tiny_model, tmp_path_factory):
    args = server_module.parse_args(["--model", str(tiny_model)])
    return server_module.LegacyEngine(tiny_model, args, tmp_path_factory.mktemp("kv"))


def emit_text(monkeypatch, text: str) -> None:
    """Makes generation produce ``text`` (the random model cannot write a tool call by itself)."""
    import mlx_lm

    class Step:
        def __init__(self, piece: str, n: int) -> None:
            self.text, self.generation_tokens = piece, n
            self.prompt_tps = self.generation_tps = 1.0

    def fake_stream_generate(model, tokenizer, prompt, **kwargs):
        for n, piece in enumerate(re.findall(r".{1,7}", text, re.DOTALL), start=1):
            yield Step(piece, n)

    monkeypatch.setattr(mlx_lm, "stream_generate", fake_stream_generate)


def test_generation_failure_answers_canned_text_and_caches_it(server_module, engine, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.setattr(engine, "model", _BrokenModel(engine.model))
    cache = server_module.ResponseCache(4)
    body = {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "tools": [
        {"type": "function", "function": {"name": "t"}}]}  # fmt: skip
    with TestClient(server_module.create_app(engine, cache, canned_fallback=True)) as client:
        response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200
        message = response.json()["choices"][0]["message"]
        assert message["content"] == "I received 2 message(s) and 1 tool(s) are available."
        assert cache.stats()["cached_items"] == 1
        assert client.post("/v1/chat/completions", json=body).json() == response.json()
        assert cache.stats()["hits"] == 1


def test_generation_failure_is_http_500_without_canned_fallback(server_module, engine, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.setattr(engine, "model", _BrokenModel(engine.model))
    cache = server_module.ResponseCache(4)
    with TestClient(server_module.create_app(engine, cache, canned_fallback=False)) as client:
        response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "a"}]})
        assert response.status_code == 500
        assert response.json()["error"]["type"] == "internal_server_error"
        assert "simulated failure" in response.json()["error"]["message"]
        assert cache.stats()["cached_items"] == 0


TOOLS = [
    {"type": "function", "function": {"name": "read_file", "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "bash", "parameters": {"type": "object", "properties": {}}}},
]
XML_CALLS = (
    "<tool_call><function=read_file><parameter=path>a.py</parameter></function></tool_call>"
    "<tool_call><function=bash><parameter=command>ls</parameter></function></tool_call>"
)


def test_streamed_tool_calls_layout_and_not_cached(server_module, engine, monkeypatch):
    from fastapi.testclient import TestClient

    emit_text(monkeypatch, XML_CALLS)
    cache = server_module.ResponseCache(4)
    body = {"messages": [{"role": "user", "content": "go"}], "tools": TOOLS}
    with TestClient(server_module.create_app(engine, cache, canned_fallback=True)) as client:
        reader = SSEReader()
        reader.feed(client.post("/v1/chat/completions", json={**body, "stream": True}).content, 0.0)
        deltas = [e.payload["choices"][0]["delta"] for e in reader.events if e.payload]
        assert deltas == [
            {"role": "assistant"},
            {"tool_calls": [{"index": 0, "id": "call_0", "type": "function",
                             "function": {"name": "read_file", "arguments": ""}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"path": "a.py"}'}}]},
            {"tool_calls": [{"index": 1, "id": "call_1", "type": "function",
                             "function": {"name": "bash", "arguments": ""}}]},
            {"tool_calls": [{"index": 1, "function": {"arguments": '{"command": "ls"}'}}]},
            {},
        ]  # fmt: skip
        assert reader.events[-2].payload["choices"][0]["finish_reason"] == "tool_calls"
        assert reader.events[-1].is_done

        # Non-streamed: the same calls, no text, and still no cache entry (tool answers are not stored).
        answer = client.post("/v1/chat/completions", json=body).json()
        choice = answer["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        assert choice["message"]["content"] == ""
        assert [c["id"] for c in choice["message"]["tool_calls"]] == ["call_0", "call_1"]
        assert cache.stats() == {"hits": 0, "misses": 2, "total_requests": 2, "hit_rate": "0.0%", "cached_items": 0}


def test_hermes_tool_call_is_text_by_default_and_a_call_with_the_switch(server_module, engine, monkeypatch, tiny_model):
    from fastapi.testclient import TestClient

    hermes = '<tool_call>{"name": "bash", "arguments": {"command": "ls"}}</tool_call>'
    emit_text(monkeypatch, hermes)
    body = {"messages": [{"role": "user", "content": "go"}], "tools": TOOLS}
    with TestClient(server_module.create_app(engine, None, canned_fallback=True)) as client:
        choice = client.post("/v1/chat/completions", json=body).json()["choices"][0]
        assert (choice["finish_reason"], choice["message"]["content"]) == ("stop", hermes)

    monkeypatch.setattr(engine, "args", server_module.parse_args(["--model", str(tiny_model), "--parse-hermes"]))
    with TestClient(server_module.create_app(engine, None, canned_fallback=True)) as client:
        choice = client.post("/v1/chat/completions", json=body).json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        assert choice["message"]["tool_calls"][0]["function"] == {"name": "bash", "arguments": '{"command": "ls"}'}
