"""Three times to a first something on a streamed answer: the first byte of the body, the first token
of any kind (content, tool call or reasoning) and the first visible text; measured on an answer that
arrives piece by piece (httpx's mock transport, no server)."""

from __future__ import annotations

import json
import time

import httpx

from harness.capture.http import ReplayLimits, conversation_sha, send
from harness.core.sse import delta_has_content, delta_has_output

GAP_S = 0.05


def sse(delta: dict | None = None, finish: str | None = None) -> bytes:
    if delta is None:
        return b"data: [DONE]\n\n"
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


class PacedBody:
    """A streamed body whose pieces leave GAP_S apart. It notes when each piece was handed to the
    reader and when the reader came back for the next one: the reader saw piece k between the two,
    whatever the machine's load, so the tests bound each time by these instants, not by GAP_S."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.handed_at: list[float] = []
        self.taken_at: list[float] = []

    def __iter__(self):
        for piece in self.pieces:
            self.handed_at.append(time.perf_counter())
            yield piece
            self.taken_at.append(time.perf_counter())
            time.sleep(GAP_S)


class Streamed:
    def __init__(self, pieces: list[bytes]) -> None:
        self.body = PacedBody(pieces)
        transport = httpx.MockTransport(
            lambda request: httpx.Response(200, content=iter(self.body), headers={"content-type": "text/event-stream"})
        )
        with httpx.Client(transport=transport) as client:
            # send() starts its clock after `before` and before the first piece is handed over.
            self.before = time.perf_counter()
            self.timed = send(
                client, "http://server/v1/chat/completions", {"stream": True, "messages": []}, ReplayLimits()
            )

    def window(self, piece: int) -> tuple[float, float]:
        """Where a time measured from send()'s start must lie if it is piece ``piece``'s arrival."""
        return self.body.handed_at[piece] - self.body.handed_at[0], self.body.taken_at[piece] - self.before


def assert_within(value: float | None, window: tuple[float, float]) -> None:
    assert value is not None and window[0] <= value <= window[1], (value, window)


def test_role_then_reasoning_then_text():
    run = Streamed(
        [
            sse({"role": "assistant"}),
            sse({"reasoning_content": "think"}),
            sse({"content": "Hi"}),
            sse({}, "stop"),
            sse(),
        ]
    )
    timed = run.timed
    assert_within(timed.ttfb_s, run.window(0))  # the role chunk: the first byte
    assert_within(timed.ttft_s, run.window(1))  # reasoning: the first token of any kind
    assert_within(timed.ttft_content_s, run.window(2))  # the first visible text
    assert timed.ttfb_s < timed.ttft_s < timed.ttft_content_s <= timed.total_s


def test_a_stream_whose_first_delta_is_a_tool_call_has_a_ttft():
    call = {"index": 0, "id": "call_0", "type": "function", "function": {"name": "Read", "arguments": "{}"}}
    run = Streamed([sse({"role": "assistant"}), sse({"tool_calls": [call]}), sse({}, "tool_calls"), sse()])
    assert_within(run.timed.ttft_s, run.window(1))
    assert run.timed.ttft_content_s is None  # nothing visible was ever sent


def test_a_fake_stream_has_an_early_first_byte_and_a_late_first_token():
    # The legacy server's way: the role chunk at once, everything else once generation is done.
    run = Streamed([sse({"role": "assistant"}), b"", b"", sse({"content": "A"}) + sse({}, "stop") + sse()])
    assert_within(run.timed.ttfb_s, run.window(0))
    assert_within(run.timed.ttft_s, run.window(3))
    assert run.timed.ttft_s == run.timed.ttft_content_s


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
