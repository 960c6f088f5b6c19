"""The request path with a server answering from a script (httpx.MockTransport): failing requests
leave a replayable capture, the API key never reaches the disk, and the streamed and non-streamed
answers to the same request are compared once both exist."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import httpx

from harness.capture.http import ReplayLimits
from harness.models.tokens import TokenCounter
from harness.run.captures import read_capture
from harness.run.pairs import StreamPairs
from harness.run.request import RequestContext, RequestExecutor
from harness.scenario.definition import Scenario, Turn
from harness.server.process import ServerProcess
from harness.server.spec import ServerSpec

KEY = "sk-secret-123"
TOOLS = [{"type": "function", "function": {"name": "Read", "parameters": {"type": "object"}}}]


def _executor(tmp_path: Path, pairs: StreamPairs, rows: list) -> RequestExecutor:
    spec = ServerSpec(name="remote", label="remote", base_url="http://fake:9", api_key=KEY)
    server = ServerProcess(spec, tmp_path / "model", home=tmp_path / "home", log_path=tmp_path / "log")
    scenario = Scenario(name="shapes", turns=[Turn(user="x")])
    context = RequestContext(
        run_id="r1",
        run_dir=tmp_path,
        server=server,
        model_name="tiny",
        scenario=scenario,
        variant="stream",
        repeat=0,
        tokens=TokenCounter(None),
        limits=ReplayLimits(),
    )
    return RequestExecutor(context, rows.append, None, pairs=pairs)


def _answers(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    arguments = '{"file_path": "a.py"}' if body["stream"] else '{"file_path": "b.py"}'
    if body["messages"][-1]["content"] == "boom":
        return httpx.Response(500, stream=httpx.ByteStream(b'{"detail": "internal error, key sk-secret-123"}'))
    if body["stream"]:
        call = {"index": 0, "id": "call_s1", "type": "function", "function": {"name": "Read", "arguments": arguments}}
        chunks = [{"role": "assistant"}, {"tool_calls": [call]}]
        events = [
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            for delta in chunks
        ]
        events.append({**events[0], "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
        raw = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"
        return httpx.Response(200, stream=httpx.ByteStream(raw), headers={"content-type": "text/event-stream"})
    call = {"id": "call_p1", "type": "function", "function": {"name": "Read", "arguments": arguments}}
    answer = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    }
    return httpx.Response(200, stream=httpx.ByteStream(json.dumps(answer).encode()))


def _request(stream: bool, text: str = "Read a.py", **extra: Any):
    from harness.scenario.definition import PlannedRequest

    return PlannedRequest(
        scenario="shapes",
        turn=0,
        messages=[{"role": "user", "content": text}],
        tools=TOOLS,
        params={"temperature": 0, "max_tokens": 16, **extra},
        stream=stream,
        tool_choice=None,
        expect=None,
        name="baseline",
    )


def test_the_second_answer_of_a_pair_carries_the_difference_and_its_capture(tmp_path):
    rows: list = []
    executor = _executor(tmp_path, StreamPairs(), rows)
    with httpx.Client(transport=httpx.MockTransport(_answers)) as client:
        streamed = executor.send(client, _request(True, stream_options={"include_usage": True}), "first")
        plain = executor.send(client, _request(False), "follow-up")
    assert streamed.checks_failed == ["stream.usage_not_in_last_chunk"] and streamed.capture
    assert plain.checks_failed == ["tool.stream_arguments_differ"]
    assert plain.check_evidence["tool.stream_arguments_differ"] == (
        'streamed: [Read({"file_path": "a.py"})]; not streamed: [Read({"file_path": "b.py"})]'
    )
    assert plain.capture == "captures/remote.shapes.stream.t00"  # the context's mode label names it
    assert plain.turn_name == "baseline"


def test_a_capture_replays_the_exact_bytes_and_never_holds_the_key(tmp_path):
    rows: list = []
    executor = _executor(tmp_path, StreamPairs(), rows)
    seen: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return _answers(request)

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        row = executor.send(client, _request(False, "boom"), "first")
    assert row.checks_failed == ["http.server_error_on_valid_request"] and row.capture
    capture = read_capture(tmp_path, row.capture)
    assert capture is not None
    assert capture.request == seen[0]  # byte for byte what the server got
    assert capture.response == b'{"detail": "internal error, key ***"}'
    files = b"".join(path.read_bytes() for path in (tmp_path / row.capture).iterdir())
    assert KEY.encode() not in files
    curl = capture.curl
    words = shlex.split(curl)
    assert words[0] == "curl" and "--data-binary" in words and words[-1] == f"@{row.capture}/request.json"
    assert "${HARNESS_BASE_URL:-http://fake:9}/v1/chat/completions" in curl
    assert '"Authorization: Bearer $HARNESS_API_KEY"' in curl
    meta = json.loads((tmp_path / row.capture / "capture.json").read_text())
    assert meta["http_status"] == 500 and meta["turn_name"] == "baseline"


def test_passing_requests_leave_no_capture_and_pairs_need_greedy_requests(tmp_path):
    rows: list = []
    executor = _executor(tmp_path, StreamPairs(), rows)
    with httpx.Client(transport=httpx.MockTransport(_answers)) as client:
        first = executor.send(client, _request(True, temperature=0.7), "first")
        second = executor.send(client, _request(False, temperature=0.7), "follow-up")
    assert first.checks_failed == second.checks_failed == []
    assert first.capture is None and second.capture is None
    assert not (tmp_path / "captures").exists()
