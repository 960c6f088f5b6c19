"""harness record without a server: the recorder on hand-made exchanges (rows by the request path,
sessions, the journal, secrets), the proxy's error answer, and the command's bad-input errors."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest

from harness.cli.main import main
from harness.core.rows import read_rows
from harness.record.proxy import Exchange, RecordingProxy
from harness.record.recorder import Recorder, answer_as_completion, timed_exchange
from harness.scenario.definition import load_scenario, plan_requests

KEY = "sk-proxy-secret-424242"


def _sse(*events: dict) -> bytes:
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip


STREAM = _sse(
    _chunk({"role": "assistant"}),
    _chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "Read"}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"file_path": "a.py"}'}}]}),
    _chunk({}, "tool_calls"),
)
PLAIN = json.dumps({
    "id": "c2", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": f"your key is {KEY}"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
}).encode()  # fmt: skip


def _exchange(messages: list, answer: bytes, streamed: bool, status: int = 200) -> Exchange:
    body = {"model": "m", "messages": messages, "stream": streamed, "api_key": "sk-in-the-body-777777"}
    exchange = Exchange("POST", "/v1/chat/completions", 1000.0, json.dumps(body).encode(), secrets=[KEY])
    exchange.status = status
    exchange.content_type = "text/event-stream" if streamed else "application/json"
    # Streamed: arrives in two pieces, the second (with the tool call) 0.2 s in.
    exchange.chunks = [(answer[:40], 0.1), (answer[40:], 0.2)] if streamed else [(answer, 0.3)]
    exchange.total_s = 0.3
    return exchange


def test_a_streamed_exchange_is_timed_and_assembled_as_a_client_reads_it():
    timed = timed_exchange(_exchange([{"role": "user", "content": "hi"}], STREAM, streamed=True))
    assert (timed.ttft_s, timed.total_s) == (0.2, 0.3)  # the first tool-call byte, not the role chunk
    completion = answer_as_completion(timed.captured)
    assert completion is not None and completion["choices"][0]["finish_reason"] == "tool_calls"
    call = completion["choices"][0]["message"]["tool_calls"][0]
    assert call["id"] == "call_a" and json.loads(call["function"]["arguments"]) == {"file_path": "a.py"}


def test_the_recorder_writes_rows_journal_and_sessions_with_secrets_masked(tmp_path):
    recorder = Recorder(tmp_path, "rec", "http://127.0.0.1:9", label="up", name="s")
    first = [{"role": "user", "content": "read a.py"}]
    follow = [*first, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}]
    other = [{"role": "user", "content": "a new conversation"}]
    recorder.record(_exchange(first, STREAM, streamed=True))
    recorder.record(_exchange(other, b'{"detail": "boom"}', streamed=False, status=500))
    recorder.record(_exchange(follow, PLAIN, streamed=False))
    recorder.record(Exchange("POST", "/v1/chat/completions", 1.0, b"not json"))
    written = recorder.close()
    assert recorder.close() == []  # closing twice writes nothing more

    rows = read_rows(tmp_path)
    assert [(r.scenario, r.turn, r.request_kind) for r in rows] == [
        ("s-1", 0, "first"), ("s-2", 0, "first"), ("s-1", 1, "follow-up")
    ]  # fmt: skip
    assert rows[0].tool_calls[0]["name"] == "Read" and rows[0].ttft_s == 0.2 and rows[0].server == "up"
    assert rows[1].error == "HTTP 500" and "http.server_error_on_valid_request" in rows[1].checks_failed
    assert rows[2].content == "your key is ***"
    assert [w.name for w in written] == ["s-1", "s-2"]
    scenario = load_scenario(tmp_path / "scenarios" / "s-1.yaml")
    assert [plan.body("x")["messages"] for plan in plan_requests(scenario)] == [first, follow]
    assert scenario.turns[0].response is not None and load_scenario(written[1].path).turns[0].notes == [
        'the recorded answer was HTTP 500: {"detail": "boom"}'
    ]
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["status"] == "complete" and set(meta["recorded_scenarios"]) == {"s-1", "s-2"}
    assert any("not a chat request" in note for note in meta["notes"])
    assert len((tmp_path / "exchanges.jsonl").read_text().splitlines()) == 3
    for path in tmp_path.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert KEY.encode() not in text and b"sk-in-the-body-777777" not in text, path


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_upstream_is_a_502_with_the_reason_and_still_a_row():
    seen: list[Exchange] = []
    app = RecordingProxy(f"http://127.0.0.1:{_closed_port()}", seen.append)

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as client:
            return await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]},
                                     headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip

    response = asyncio.run(post())
    assert response.status_code == 502 and "did not answer" in response.json()["error"]["message"]
    (exchange,) = seen
    assert exchange.status is None and "did not answer" in (exchange.error or "") and exchange.secrets == [KEY]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream", "localhost:8081"], "is not an http(s) URL"),
        (["--upstream", "http://127.0.0.1:1", "--model", "/no/such/model"], "no such folder"),
    ],
)
def test_record_refuses_bad_input_with_one_clear_error(tmp_path, capsys, args, message):
    assert main(["record", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_record_says_when_its_port_is_taken(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["record", "--upstream", "http://127.0.0.1:1", "--port", str(port), "--out", str(tmp_path)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written when it could not start
