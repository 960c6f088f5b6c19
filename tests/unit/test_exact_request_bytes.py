"""The bytes a request is sent as are the bytes the harness keeps: a capture replays exactly them."""

from __future__ import annotations

import json

import httpx

from harness.capture.http import ReplayLimits, encode_body, send

BODY = {"model": "m", "messages": [{"role": "user", "content": "Größe 🚀"}], "stream": False, "n": 1}


def _client(seen: list[httpx.Request], answer: bytes, content_type: str) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        # A stream, not content: the harness reads raw bytes as they arrive, as from a socket.
        return httpx.Response(200, stream=httpx.ByteStream(answer), headers={"content-type": content_type})

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_the_server_receives_exactly_the_kept_bytes_streamed_or_not():
    for stream, answer, kind in (
        (False, b'{"choices": []}', "application/json"),
        (True, b'data: {"choices": []}\n\ndata: [DONE]\n\n', "text/event-stream"),
    ):
        seen: list[httpx.Request] = []
        body = {**BODY, "stream": stream}
        with _client(seen, answer, kind) as client:
            timed = send(client, "http://server/v1/chat/completions", body, ReplayLimits(), {"Authorization": "x"})
        assert seen[0].content == timed.captured.request_body == encode_body(body)
        assert seen[0].headers["content-type"] == "application/json" and seen[0].headers["authorization"] == "x"
        assert timed.captured.body == answer
        assert json.loads(timed.captured.request_body) == body
        assert "Größe 🚀".encode() in timed.captured.request_body  # UTF-8 as written, not \\u escapes
