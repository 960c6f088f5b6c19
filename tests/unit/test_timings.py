"""Three times to a first something on a streamed answer: the first byte of the body, the first token
of any kind (content, tool call or reasoning) and the first visible text; measured on an answer that
arrives piece by piece (httpx's mock transport, no server)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from harness.capture.http import ReplayLimits, conversation_sha, send
from harness.core.sse import delta_has_content, delta_has_output

GAP_S = 0.05


def sse(delta: dict | None = None, finish: str | None = None) -> bytes:
    if delta is None:
        return b"data: [DONE]\n\n"
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


def client_for(pieces: list[bytes], gap_s: float = GAP_S) -> httpx.Client:
    def body():
        for piece in pieces:
            yield piece
            time.sleep(gap_s)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    return httpx.Client(transport=httpx.MockTransport(handler))


def stream(pieces: list[bytes]):
    with client_for(pieces) as client:
        return send(client, "http://server/v1/chat/completions", {"stream": True, "messages": []}, ReplayLimits())


def test_role_then_reasoning_then_text():
    timed = stream(
        [
            sse({"role": "assistant"}),
            sse({"reasoning_content": "think"}),
            sse({"content": "Hi"}),
            sse({}, "stop"),
            sse(),
        ]
    )
    assert timed.ttfb_s is not None and timed.ttft_s is not None and timed.ttft_content_s is not None
    # Each piece arrives GAP_S after the one before it.
    assert timed.ttfb_s < GAP_S / 2
    assert timed.ttft_s == pytest.approx(GAP_S, abs=GAP_S / 2)
    assert timed.ttft_content_s == pytest.approx(2 * GAP_S, abs=GAP_S / 2)
    assert timed.ttfb_s < timed.ttft_s < timed.ttft_content_s <= timed.total_s


def test_a_stream_whose_first_delta_is_a_tool_call_has_a_ttft():
    call = {"index": 0, "id": "call_0", "type": "function", "function": {"name": "Read", "arguments": "{}"}}
    timed = stream([sse({"role": "assistant"}), sse({"tool_calls": [call]}), sse({}, "tool_calls"), sse()])
    assert timed.ttft_s == pytest.approx(GAP_S, abs=GAP_S / 2)
    assert timed.ttft_content_s is None  # nothing visible was ever sent


def test_a_fake_stream_has_an_early_first_byte_and_a_late_first_token():
    # The legacy server's way: the role chunk at once, everything else once generation is done.
    timed = stream([sse({"role": "assistant"}), b"", b"", sse({"content": "A"}) + sse({}, "stop") + sse()])
    assert timed.ttfb_s < GAP_S / 2 and timed.ttft_s == timed.ttft_content_s
    assert timed.ttft_s > 2 * GAP_S


def test_a_plain_body_has_all_three_at_its_end_and_content_only_with_text():
    def plain(message: dict) -> httpx.Client:
        body = {"object": "chat.completion", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
        return httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body)))

    with plain({"role": "assistant", "content": "Hi"}) as client:
        timed = send(client, "http://server/v1/chat/completions", {"messages": []}, ReplayLimits())
    assert timed.ttft_s == timed.total_s == timed.ttft_content_s and timed.ttfb_s <= timed.total_s
    call = {"id": "c", "type": "function", "function": {"name": "Read", "arguments": "{}"}}
    with plain({"role": "assistant", "content": None, "tool_calls": [call]}) as client:
        timed = send(client, "http://server/v1/chat/completions", {"messages": []}, ReplayLimits())
    assert timed.ttft_s == timed.total_s and timed.ttft_content_s is None


def test_delta_kinds():
    role = {"choices": [{"delta": {"role": "assistant"}}]}
    call = {"choices": [{"delta": {"tool_calls": [{"index": 0}]}}]}
    reasoning = {"choices": [{"delta": {"reasoning": "hm"}}]}
    text = {"choices": [{"delta": {"content": "x"}}]}
    assert [delta_has_output(p) for p in (role, call, reasoning, text)] == [False, True, True, True]
    assert [delta_has_content(p) for p in (role, call, reasoning, text)] == [False, False, False, True]


def test_conversation_sha_ignores_transport_options():
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}
    same = dict(body, stream=True, max_tokens=5, tool_choice="required", temperature=0)
    assert conversation_sha(body) == conversation_sha(same)
    assert conversation_sha(body) != conversation_sha(dict(body, messages=[{"role": "user", "content": "ho"}]))
