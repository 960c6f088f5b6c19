"""harness import: saved traffic -> recorded scenarios, by the conversion rules of
harness.scenario.anthropic, split into sessions, secrets stripped, and replayed exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.cli.main import main
from harness.core.errors import InputError
from harness.scenario.anthropic import convert_request, convert_response
from harness.scenario.definition import RequestKinds, Variant, load_scenario, plan_requests, resolve_scenarios
from harness.scenario.importers import read_traffic, write_imported
from harness.scenario.recorded import (
    RecordedExchange,
    dump_scenario,
    header_secrets,
    mask_secrets,
    split_sessions,
    strip_secrets,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "traces" / "coding-session"
FIXTURE_KEY = "sk-ant-api03-FIXTURE0000-not-a-real-key-0000000000"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("imported")
    result = read_traffic([FIXTURE])
    written = write_imported(result.exchanges, out, "coding-session", "the fixture")
    return result, written


def test_the_fixture_becomes_one_session_of_four_requests(imported):
    result, written = imported
    assert len(written) == 1 and written[0].path.name == "coding-session.yaml"
    assert len(result.exchanges) == 4 and result.formats == {"anthropic trace": 4}
    assert len(result.skipped) == 1 and "token-count request" in result.skipped[0]


def test_conversion_rules_on_the_fixture(imported):
    result, _ = imported
    last = result.exchanges[-1].request
    messages = last["messages"]
    # R1: the two system blocks joined with a newline into one system message, first.
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith("You are Claude Code")
    assert "Anthropic's official CLI for Claude.\nYou are an interactive CLI tool" in messages[0]["content"]
    # R3: two text blocks stay two text parts; the cache_control marker is gone (R2).
    assert [part["type"] for part in messages[1]["content"]] == ["text", "text"]
    assert all("cache_control" not in part for part in messages[1]["content"])
    # R5: thinking left out, text and tool call in one message, arguments as compact JSON.
    assert messages[2] == {
        "role": "assistant",
        "content": "I'll start by reading the failing test.",
        "tool_calls": [{"id": "toolu_01Read0000000000000001", "type": "function",
                        "function": {"name": "Read", "arguments": '{"file_path":"tests/test_cart.py"}'}}],
    }  # fmt: skip
    # R4: each tool result a tool message with its call id.
    assert messages[3]["role"] == "tool" and messages[3]["tool_call_id"] == "toolu_01Read0000000000000001"
    assert messages[4]["content"] == "" and len(messages[4]["tool_calls"]) == 1  # tool calls only: content ""
    assert messages[5]["role"] == "tool" and "assert 810.0 == 900" in messages[5]["content"]
    assert messages[6]["content"].startswith("The discount is applied twice") and len(messages[6]["tool_calls"]) == 2
    assert [m["role"] for m in messages[7:]] == ["tool", "tool"] and messages[8]["content"] == ""
    # R6: input_schema becomes parameters unchanged; the server tool is left out.
    trace = json.loads(sorted(FIXTURE.glob("*.json"))[-1].read_text())
    tools = trace["request"]["body"]["tools"]
    schemas = {tool["name"]: tool["input_schema"] for tool in tools if "input_schema" in tool}
    assert {t["function"]["name"]: t["function"]["parameters"] for t in last["tools"]} == schemas
    # R8: same-named parameters kept; metadata is not.
    assert (last["max_tokens"], last["temperature"], last["stream"]) == (32, 1, True) and "metadata" not in last


def test_every_block_that_cannot_be_converted_is_a_note(imported):
    result, _ = imported
    notes = "\n".join(note for exchange in result.exchanges for note in exchange.notes)
    for expected in (
        "a thinking block has no place in an OpenAI request",
        "an image in a tool result cannot be carried",
        "is_error has no OpenAI counterpart",
        "web_search (web_search_20250305) has no input_schema",
        "parameter 'metadata' has no OpenAI counterpart",
        "cache_control removed from 4 block(s)",
        "the recorded answer was HTTP 529",
    ):
        assert expected in notes, expected


def test_recorded_answers_streamed_and_not_become_chat_completions(imported):
    result, _ = imported
    streamed, plain, missing, failed = (exchange.response for exchange in result.exchanges)
    assert streamed is not None and plain is not None and missing is None and failed is None
    choice = streamed["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll start by reading the failing test."
    call = choice["message"]["tool_calls"][0]["function"]
    assert call == {"name": "Read", "arguments": '{"file_path":"tests/test_cart.py"}'}
    assert streamed["usage"] == {"prompt_tokens": 1492, "completion_tokens": 58, "total_tokens": 1550}
    assert plain["choices"][0]["message"]["content"] is None
    assert plain["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "Bash"


def test_secrets_are_never_written(imported):
    _, written = imported
    text = written[0].path.read_text()
    assert FIXTURE_KEY not in text and "x-api-key" not in text
    assert "ANTHROPIC_API_KEY=***" in text  # the key echoed in a tool result is masked too


def test_the_imported_scenario_replays_each_request_exactly(imported):
    result, written = imported
    scenario = load_scenario(written[0].path)
    planned = plan_requests(scenario)
    for request, exchange in zip(planned, result.exchanges, strict=True):
        body = request.body("served-model")
        assert body == {**exchange.request, "model": "served-model"}
        assert list(body) == list(exchange.request)
    kinds = RequestKinds()
    assert [kinds.next(request) for request in planned] == ["first", "follow-up", "follow-up", "follow-up"]
    assert Variant().label(scenario) == "as-recorded"
    assert planned[0].recorded_response == result.exchanges[0].response
    assert scenario.turns[3].notes and planned[3].recorded_response is None
    # A folder of scenario files is accepted wherever a scenario path is.
    assert [s.name for s in resolve_scenarios([str(written[0].path.parent)])] == ["coding-session"]


def test_yaml_keeps_every_string_exactly():
    tricky = ["trailing  \n", "two\n\n", " lead\nx", "tab\there\n", "yes", "007", "ünïcode ✓\n", "a\r\nb", "x\n  "]
    data = {"name": "t", "turns": [{"request": {"messages": [{"role": "user", "content": s} for s in tricky]}}]}
    assert yaml.safe_load(dump_scenario(data)) == data


def _body(*messages: str, tools: tuple[str, ...] = ("Read",), system: str = "sys") -> dict:
    roles = ["user", "assistant"]
    return {
        "messages": [{"role": "system", "content": system}]
        + [{"role": roles[i % 2], "content": text} for i, text in enumerate(messages)],
        "tools": [{"type": "function", "function": {"name": name, "parameters": {}}} for name in tools],
    }


def test_sessions_are_told_apart_by_their_shared_prefix_and_tools():
    bodies = [
        _body("fix the bug", system="tag-1"),
        _body("write docs", system="tag-2"),  # another conversation
        _body("fix the bug", "ok", "go on", system="tag-3"),  # continues the first, new billing line
        _body("fix the bug", tools=()),  # a title request: same words, no tools
        _body("write docs", "done", "more"),
        _body("fix the bug", "ok", "go on", "x", "y"),
    ]
    sessions = split_sessions([RecordedExchange(request=body) for body in bodies])
    assert [[bodies.index(e.request) for e in session] for session in sessions] == [[0, 2, 5], [1, 4], [3]]


def test_secret_helpers():
    assert header_secrets({"Authorization": "Bearer sk-live-123456", "x-api-key": "[REDACTED]", "Accept": "x"}) == [
        "sk-live-123456"
    ]
    kept, found = strip_secrets({"api_key": "sk-body-999999", "model": "m", "messages": []})
    assert "api_key" not in kept and found == ["sk-body-999999"]
    assert mask_secrets({"a": ["key sk-body-999999 here"]}, found) == {"a": ["key *** here"]}


def test_openai_bodies_and_pairs_one_per_line(tmp_path):
    lines = [
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "api_key": "sk-secret-000000"},
        {"request": {"model": "m", "messages": [{"role": "user", "content": "hi"},
                                                {"role": "assistant", "content": "yo"},
                                                {"role": "user", "content": "again"}], "stream": True},
         "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": "sure"},
                                   "finish_reason": "stop"}]}},
        {"request": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, "response": "data: {}\n\n"},
    ]  # fmt: skip
    path = tmp_path / "bodies.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    result = read_traffic([path])
    assert result.formats == {"openai-body": 1, "openai-pair": 2}
    first, second, third = result.exchanges
    assert "api_key" not in first.request and first.response is None
    assert second.response == lines[1]["response"] and second.request == lines[1]["request"]
    assert third.response is None and "not a chat.completion object" in third.notes[0]


def test_anthropic_request_details():
    body, notes = convert_request(
        {
            "model": "claude",
            "system": "plain system",
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "hi"},
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
                    {"type": "document", "source": {"type": "text", "data": "x"}},
                ]},
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "stop_sequences": ["END"],
            "top_k": 5,
        }
    )  # fmt: skip
    assert body["messages"][:3] == [
        {"role": "system", "content": "plain system"},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
    ]
    assert body["messages"][3]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
    ]
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False and body["stop"] == ["END"]
    assert any("document block" in note for note in notes) and any("'top_k'" in note for note in notes)
    named, _ = convert_request({"messages": [], "tool_choice": {"type": "tool", "name": "Read"}})
    assert named["tool_choice"] == {"type": "function", "function": {"name": "Read"}}
    answer, _ = convert_response({"content": [{"type": "text", "text": "done"}], "stop_reason": "max_tokens"})
    assert answer is not None and answer["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("not json at all", ".json", "not JSON (Expecting value at line 1, column 1)"),
        ('{"hello": 1}', ".json", "a JSON object with keys ['hello'] is not a format harness import reads"),
        ("[1, 2]", ".json", "a JSON int is not a format"),
        ('{"messages": []}\n{oops\n', ".jsonl", "line 2: not JSON"),
        ("", ".json", "the file is empty"),
        ('{"timestamp": "t", "request": {"url": "/v1/messages", "body": {"model": "x"}}}', ".json", "no 'messages'"),
    ],
)
def test_bad_input_is_one_clear_error_naming_the_file(tmp_path, capsys, content, suffix, message):
    path = tmp_path / f"input{suffix}"
    path.write_text(content)
    with pytest.raises(InputError, match="Expected an OpenAI chat-completions request body") as caught:
        read_traffic([path])
    assert str(path) in str(caught.value) and message in str(caught.value)
    assert main(["import", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and "Traceback" not in err


def test_folders_with_nothing_to_import(tmp_path, capsys):
    (tmp_path / "traces" / "claude").mkdir(parents=True)
    with pytest.raises(InputError, match=r"no \.json or \.jsonl file in this folder\. Expected"):
        read_traffic([tmp_path / "traces"])
    (tmp_path / "traces" / "claude" / "a.json").write_text("{}")
    with pytest.raises(InputError, match="its subfolder\\(s\\) claude have some"):
        read_traffic([tmp_path / "traces"])
    assert main(["import", str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_import_command_writes_sessions_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["import", str(FIXTURE), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and f"harness run --scenarios {out}" in printed and "skipped" in printed
    assert (out / "coding-session.yaml").is_file()
    assert main(["import", str(FIXTURE), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["import", str(FIXTURE), "--out", str(out), "--force"]) == 0
