"""The way back of the live conversion (``harness.record.converting``, R10-R13) without a server: an
OpenAI answer, plain or streamed, becomes a Messages API answer that the harness's own ``anthropic.*``
checks (built on the ``anthropic`` package's types) pass, and that R9 reads back to the same answer;
and the pieces of ``harness agent`` that need no client: its paths, the model swap, the client's
result read, the script's errors and the TTFT agreement."""

from __future__ import annotations

import json

import pytest

from harness.agent.claude_code import ClientSettings, Invocation, client_argv, client_env, read_result
from harness.agent.script import load_script, make_workspace
from harness.agent.session import CONVERTED, NATIVE, paths_for, rows_of, swap_model
from harness.analysis.agent import agreement, prompt_view
from harness.capture.http import CapturedResponse
from harness.checks import messages
from harness.core.errors import ConfigError
from harness.core.rows import ResultRow
from harness.core.sse import SSEReader
from harness.record.converting import StreamConverter, messages_answer, stop_reason
from harness.scenario import anthropic
from harness.scenario.definition import anthropic_request
from harness.server.spec import legacy_spec

REQUEST = {
    "model": "claude-opus-5-5",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "Read a.py"}],
    "tools": [{"name": "Read", "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}],
}


def chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> dict:
    payload: dict = {"id": "c1", "object": "chat.completion.chunk", "choices": []}
    if delta is not None or finish is not None:
        payload["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    if usage is not None:
        payload["usage"] = usage
    return payload


def converted_stream(chunks: list[dict]) -> bytes:
    converter = StreamConverter("claude-opus-5-5")
    return b"".join(converter.feed(item) for item in chunks) + converter.finish()


def checks_of(body: bytes, stream: bool) -> list[str]:
    reader = SSEReader()
    if stream:
        reader.feed(body, 0.0)
        reader.close(0.0)
    captured = CapturedResponse(stream=stream, http_status=200, body=body, sse=reader if stream else None)
    planned = anthropic_request("s", 0, REQUEST)
    outcome = messages.run_checks(captured, messages.extract_answer(captured), planned)
    return outcome.failed


TEXT_THEN_CALL = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Let me "}),
    chunk({"content": "look."}),
    chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "Read"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"file_path": '}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"a.py"}'}}]}),
    chunk(finish="tool_calls"),
    chunk(usage={"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}),
]


def test_a_streamed_text_and_call_become_messages_events_that_pass_the_anthropic_checks():
    body = converted_stream(TEXT_THEN_CALL)
    assert checks_of(body, stream=True) == []
    completion, notes = anthropic.convert_response(body.decode())  # R9 reads it back
    assert notes == []
    assert completion is not None
    (choice,) = completion["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me look."
    (call,) = choice["message"]["tool_calls"]
    assert call["id"] == "call_1" and json.loads(call["function"]["arguments"]) == {"file_path": "a.py"}
    assert completion["usage"]["completion_tokens"] == 12


def test_a_plain_text_stream_ends_with_end_turn_and_an_empty_one_is_still_well_formed():
    body = converted_stream([chunk({"content": "hi"}), chunk(finish="length")])
    assert checks_of(body, stream=True) == []
    events = [e.payload for e in _events(body)]
    assert [e["type"] for e in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
        "message_stop",
    ]  # fmt: skip
    assert events[4]["delta"]["stop_reason"] == "max_tokens"
    empty = [e.payload["type"] for e in _events(converted_stream([]))]
    assert empty == ["message_start", "message_delta", "message_stop"]


def _events(body: bytes):
    reader = SSEReader()
    reader.feed(body, 0.0)
    reader.close(0.0)
    return [event for event in reader.events if event.payload]


def test_a_plain_completion_becomes_a_message_object_that_passes_the_checks():
    completion = {
        "id": "x",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "Read", "arguments": "{bad"}}],
                },
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3},
    }
    message = messages_answer(completion, "claude-opus-5-5")
    # R10: no empty text block; arguments that are not an object give {}; R11: a call means tool_use.
    assert [block["type"] for block in message["content"]] == ["tool_use"]
    assert message["content"][0]["input"] == {} and message["stop_reason"] == "tool_use"
    assert message["model"] == "claude-opus-5-5" and message["usage"] == {"input_tokens": 5, "output_tokens": 3}
    assert checks_of(json.dumps(message).encode(), stream=False) == []


@pytest.mark.parametrize(
    ("finish", "calls", "expected"),
    [("stop", False, "end_turn"), ("length", False, "max_tokens"), ("tool_calls", True, "tool_use"),
     ("content_filter", False, "end_turn"), (None, False, "end_turn"), ("stop", True, "tool_use")],
)  # fmt: skip
def test_finish_reasons_map_back(finish, calls, expected):
    assert stop_reason(finish, calls) == expected


def test_the_native_path_swaps_only_the_model():
    body = json.dumps({"model": "claude-opus-5-5", "messages": [{"role": "user", "content": "é"}]}).encode()
    swapped = json.loads(swap_model("harness-model")(body))
    assert swapped == {"model": "harness-model", "messages": [{"role": "user", "content": "é"}]}
    assert swap_model("m")(b"not json") == b"not json"


def test_paths_follow_the_protocols_a_server_declares():
    legacy = legacy_spec()
    assert paths_for(legacy, "auto") == ([CONVERTED], [])
    paths, notes = paths_for(legacy, "both")
    assert paths == [CONVERTED] and "does not serve the Anthropic Messages API" in notes[0]
    legacy.protocols = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
    assert paths_for(legacy, "auto") == ([NATIVE], [])
    assert paths_for(legacy, "both") == ([NATIVE, CONVERTED], [])


def test_the_client_runs_restricted_with_an_environment_built_from_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SOME_USER_SECRET", "x")
    env = client_env("http://127.0.0.1:1234", "dummy", tmp_path / "h", tmp_path / "t", 256)
    assert "SOME_USER_SECRET" not in env
    assert env["HOME"] == str(tmp_path / "h") and env["TMPDIR"] == str(tmp_path / "t")
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:1234"
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["HTTPS_PROXY"].startswith("http://127.0.0.1:") and "127.0.0.1" in env["NO_PROXY"]
    settings = ClientSettings(tools=["Read", "Edit"], permission_mode="acceptEdits", max_output_tokens=9, max_turns=2)
    argv = client_argv(tmp_path / "claude", "hi", settings, resume="abc")
    assert argv[1:3] == ["-p", "hi"] and "--restricted" in argv and argv[-2:] == ["--resume", "abc"]
    assert argv[argv.index("--tools") + 1] == "Read,Edit"


def test_the_client_result_is_read_and_a_missing_one_is_a_problem():
    invocation = Invocation(0, "hi", ["claude"], 0.0, 1.0, 0)
    result = {"type": "result", "subtype": "success", "is_error": False, "num_turns": 2, "ttft_ms": 480,
              "time_to_request_ms": 300, "result": "ok", "session_id": "s", "usage": {"output_tokens": 3}}  # fmt: skip
    read_result(invocation, "noise\n" + json.dumps(result) + "\n")
    assert invocation.completed and invocation.ttft_ms == 480.0 and invocation.usage == {"output_tokens": 3}
    broken = Invocation(0, "hi", ["claude"], 0.0, 1.0, 1)
    read_result(broken, "Error: something\n")
    assert not broken.completed and broken.problem == "the client printed no JSON result"


def test_a_failed_prompt_with_every_status_200_is_flagged_and_ttfts_are_compared():
    row = {"http_status": 200, "stream": True, "ttft_s": 0.5, "checks_failed": ["stream.chunk_id_missing"]}
    failed = {"prompt_index": 1, "completed": False, "is_error": True, "ttft_ms": 900.0,
              "time_to_request_ms": 380.0, "rows": [row], "log_reuse": {"reused": False}}  # fmt: skip
    view = prompt_view("legacy", CONVERTED, failed)
    assert view.client_failed_all_200 and view.client_request_ttft_ms == 520.0 and view.proxy_ttft_ms == 500.0
    assert view.reuse == "no (server log)"
    fine = prompt_view("legacy", CONVERTED, {**failed, "completed": True, "ttft_ms": 870.0})
    assert not fine.client_failed_all_200
    figures = agreement([view, fine])
    assert figures.count == 2 and figures.median_ms == pytest.approx(5.0) and figures.max_abs_ms == pytest.approx(20.0)


def test_rows_belong_to_the_prompt_that_was_running():
    def row(at: float) -> ResultRow:
        return ResultRow(run_id="r", server="s", scenario="x", turn=0, request_kind="first", stream=True, started_at=at)

    invocation = Invocation(0, "hi", ["claude"], started_at=100.0, wall_s=5.0, exit_code=0)
    assert [r.started_at for r in rows_of(invocation, [row(99.0), row(101.0), row(104.9), row(106.0)])] == [
        101.0,
        104.9,
    ]


def test_the_builtin_script_loads_and_a_bad_one_names_the_field(tmp_path):
    script = load_script()
    assert len(script.prompts) >= 3 and script.workspace_dir.is_dir()
    copy = make_workspace(script, tmp_path / "ws")
    assert (copy / "src" / "calc.py").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nworkspace: nowhere\ntools: []\nprompts: [hi]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: tools: .*Fix these fields"):
        load_script(bad)


def test_an_answer_opening_with_a_newline_is_visible_only_at_its_first_word():
    from harness.agent.session import first_visible_s
    from harness.record.proxy import Exchange

    exchange = Exchange("POST", "/v1/chat/completions", 0.0, b"{}", status=200, content_type="text/event-stream")
    for text, at in (("\n\n", 0.5), ("All", 0.9)):
        exchange.chunks.append((b"data: " + json.dumps(chunk({"content": text})).encode() + b"\n\n", at))
    assert first_visible_s(exchange) == 0.9
    plain = Exchange("POST", "/v1/chat/completions", 0.0, b"{}", status=200, content_type="application/json")
    assert first_visible_s(plain) is None
