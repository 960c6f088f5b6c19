"""The legacy server's tool-call parsing: dialects, precedence and filtering rules."""

from __future__ import annotations

import json
import sys

import pytest

from harness.core.paths import server_programs_dir

sys.path.insert(0, str(server_programs_dir()))

import legacy_server
from legacy_toolparse import (
    balanced_json_object,
    parse_harmony,
    parse_qwen_xml,
    parse_tool_calls,
    strip_harmony_markers,
)


def tool(name: str, properties: dict | None = None) -> dict:
    params = {"type": "object", "properties": properties if properties is not None else {"path": {"type": "string"}}}
    return {"type": "function", "function": {"name": name, "description": f"{name} tool", "parameters": params}}


TOOLS = [tool("read_file"), tool("write_file"), tool("bash", {"command": {"type": "string"}})]


def args(call: dict) -> dict:
    return json.loads(call["arguments"])


# --- single dialects -------------------------------------------------------------------------


def test_lmstudio_call_parsed_even_without_tools():
    text = 'Sure.[TOOL_REQUEST]{"name": "read_file", "arguments": {"path": "a.py"}}[END_TOOL_REQUEST]'
    content, calls = parse_tool_calls(text, None)
    assert content == ""
    assert calls == [{"name": "read_file", "arguments": json.dumps({"path": "a.py"})}]


def test_lmstudio_invalid_json_is_left_as_text():
    text = "[TOOL_REQUEST]{not json}[END_TOOL_REQUEST]"
    assert parse_tool_calls(text, TOOLS) == (text, [])


def test_harmony_call_with_functions_prefix_and_constrain_marker():
    text = (
        "<|start|>assistant<|channel|>commentary to=functions.bash <|constrain|>json<|message|>"
        '{"command": "echo {hi}", "opts": {"x": 1}}<|call|>'
    )
    content, calls = parse_tool_calls(text, None)
    assert content == ""
    assert len(calls) == 1
    assert calls[0]["name"] == "bash"
    assert args(calls[0]) == {"command": "echo {hi}", "opts": {"x": 1}}


def test_harmony_call_without_functions_prefix():
    calls = parse_harmony('<|channel|>commentary to=read_file<|message|> {"path": "x"}')
    assert [(c["name"], args(c)) for c in calls] == [("read_file", {"path": "x"})]


def test_harmony_truncated_json_is_not_a_call():
    assert parse_harmony('<|channel|>commentary to=functions.bash<|message|>{"command": "ls') == []


def test_harmony_analysis_and_final_markers_stripped_from_text():
    text = "<|channel|>analysis<|message|>thinking. <|channel|>final<|message|>The answer."
    assert strip_harmony_markers(text) == "thinking. The answer."
    assert parse_tool_calls(text, TOOLS) == ("thinking. The answer.", [])


def test_qwen_xml_wrapped_values_are_strings_without_quotes():
    text = (
        '<tool_call>\n<function=write_file>\n<parameter=path>\n"src/a.py"\n</parameter>\n'
        "<parameter=content>'print(1)'</parameter>\n<parameter=mode>644</parameter>\n</function>\n</tool_call>"
    )
    content, calls = parse_tool_calls(text, TOOLS)
    assert content == ""
    assert calls[0]["name"] == "write_file"
    assert args(calls[0]) == {"path": "src/a.py", "content": "print(1)", "mode": "644"}


def test_qwen_xml_bare_form_only_when_no_wrapped_form():
    bare = "<function=read_file><parameter=path>b.py</parameter></function>"
    wrapped = "<tool_call><function=bash><parameter=command>ls</parameter></function></tool_call>"
    assert [c["name"] for c in parse_qwen_xml(bare)] == ["read_file"]
    # With a wrapped call present, the bare one next to it is ignored.
    assert [c["name"] for c in parse_qwen_xml(bare + wrapped)] == ["bash"]


def test_qwen_xml_needs_tools_in_request():
    text = "<tool_call><function=read_file><parameter=path>a</parameter></function></tool_call>"
    assert parse_tool_calls(text, None) == (text, [])
    assert parse_tool_calls(text, []) == (text, [])


def test_loose_tool_key_form():
    text = 'I will call {"tool": "read_file", "arguments": {"path": "README.md"}} now'
    content, calls = parse_tool_calls(text, TOOLS)
    assert content == ""
    assert [(c["name"], args(c)) for c in calls] == [("read_file", {"path": "README.md"})]


def test_loose_function_call_form():
    content, calls = parse_tool_calls('bash({"command": "ls -la"})', TOOLS)
    assert content == ""
    assert [(c["name"], args(c)) for c in calls] == [("bash", {"command": "ls -la"})]


def test_loose_function_call_needs_closing_parenthesis():
    assert parse_tool_calls('bash({"command": "ls"} and more', TOOLS)[1] == []


def test_balanced_json_ignores_braces_inside_strings():
    text = 'x {"a": "}{", "b": {"c": "\\"}"}} tail'
    found = balanced_json_object(text, 2)
    assert found is not None
    assert json.loads(found[0]) == {"a": "}{", "b": {"c": '"}'}}
    assert text[found[1] :] == " tail"


# --- precedence ------------------------------------------------------------------------------


def test_lmstudio_wins_over_harmony_and_xml():
    text = (
        '<|channel|>commentary to=functions.bash<|message|>{"command": "ls"}'
        "<tool_call><function=write_file><parameter=path>p</parameter></function></tool_call>"
        '[TOOL_REQUEST]{"name": "read_file", "arguments": {"path": "a"}}[END_TOOL_REQUEST]'
    )
    assert [c["name"] for c in parse_tool_calls(text, TOOLS)[1]] == ["read_file"]


def test_harmony_wins_over_xml_and_loose():
    text = (
        "<tool_call><function=write_file><parameter=path>p</parameter></function></tool_call>"
        'read_file({"path": "z"})'
        '<|channel|>commentary to=functions.bash<|message|>{"command": "ls"}'
    )
    assert [c["name"] for c in parse_tool_calls(text, TOOLS)[1]] == ["bash"]


def test_xml_wins_over_loose_forms():
    text = 'bash({"command": "ls"}) <function=read_file><parameter=path>a</parameter></function>'
    assert [c["name"] for c in parse_tool_calls(text, TOOLS)[1]] == ["read_file"]


def test_loose_tool_key_wins_over_function_call_form():
    text = 'bash({"command": "ls"}) {"tool": "read_file", "arguments": {"path": "a"}}'
    assert [c["name"] for c in parse_tool_calls(text, TOOLS)[1]] == ["read_file"]


def test_falls_through_to_next_form_when_xml_calls_are_all_filtered():
    # The XML call names an unknown tool, so the loose form after it gets its turn.
    text = '<function=delete_all><parameter=x>1</parameter></function> bash({"command": "pwd"})'
    assert [c["name"] for c in parse_tool_calls(text, TOOLS)[1]] == ["bash"]


# --- step-3 filtering ------------------------------------------------------------------------


def test_only_tools_in_request_are_kept():
    text = (
        "<tool_call><function=rm_rf><parameter=path>/</parameter></function></tool_call>"
        "<tool_call><function=read_file><parameter=path>a</parameter></function></tool_call>"
    )
    assert [c["name"] for c in parse_tool_calls(text, TOOLS)[1]] == ["read_file"]


def test_one_call_per_name_the_first_one():
    text = "".join(
        f"<tool_call><function=read_file><parameter=path>{p}</parameter></function></tool_call>" for p in "abc"
    )
    calls = parse_tool_calls(text, TOOLS)[1]
    assert len(calls) == 1
    assert args(calls[0]) == {"path": "a"}


def test_calls_without_parameters_are_dropped():
    text = (
        "<tool_call><function=bash></function></tool_call>"
        "<tool_call><function=read_file><parameter=path>a</parameter></function></tool_call>"
    )
    assert [c["name"] for c in parse_tool_calls(text, TOOLS)[1]] == ["read_file"]
    assert parse_tool_calls("bash({})", TOOLS)[1] == []


def test_text_without_any_call_is_returned_unchanged():
    text = "Just some text with a <b>tag</b> and {braces}."
    assert parse_tool_calls(text, TOOLS) == (text, [])


# --- Hermes switch ---------------------------------------------------------------------------

HERMES = '<tool_call>\n{"name": "read_file", "arguments": {"path": "main.py"}}\n</tool_call>'


def test_hermes_json_not_parsed_by_default():
    assert parse_tool_calls(HERMES, TOOLS) == (HERMES, [])


def test_hermes_json_parsed_with_the_switch():
    content, calls = parse_tool_calls(HERMES, TOOLS, parse_hermes_json=True)
    assert content == ""
    assert [(c["name"], args(c)) for c in calls] == [("read_file", {"path": "main.py"})]


def test_hermes_switch_keeps_step_three_filters():
    text = HERMES + '<tool_call>{"name": "unknown", "arguments": {"a": 1}}</tool_call>'
    assert [c["name"] for c in parse_tool_calls(text, TOOLS, parse_hermes_json=True)[1]] == ["read_file"]
    assert parse_tool_calls(HERMES, None, parse_hermes_json=True)[1] == []


def test_hermes_arguments_given_as_json_string_are_kept_verbatim():
    text = '<tool_call>{"name": "bash", "arguments": "{\\"command\\": \\"ls\\"}"}</tool_call>'
    calls = parse_tool_calls(text, TOOLS, parse_hermes_json=True)[1]
    assert calls == [{"name": "bash", "arguments": '{"command": "ls"}'}]


# --- prompt building and response cache (pure parts of the server) --------------------------


def test_tool_messages_become_user_turns_and_list_content_is_joined():
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "look"}, {"type": "image_url"}, {"type": "text", "text": "here"}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {"role": "tool", "name": "read_file", "content": "data"},
    ]
    out = legacy_server.normalise_messages(messages)
    assert out[0] == {"role": "user", "content": "look here"}
    assert out[1]["content"] == ""
    assert out[2] == {"role": "user", "content": "Tool bash returned:\nok"}
    assert out[3] == {"role": "user", "content": "Tool read_file returned:\ndata"}


def test_tools_get_empty_properties_without_changing_the_request():
    tools = [{"type": "function", "function": {"name": "now"}}, tool("read_file")]
    out = legacy_server.normalise_tools(tools)
    assert out[0]["function"]["parameters"]["properties"] == {}
    assert out[1]["function"]["parameters"]["properties"] == {"path": {"type": "string"}}
    assert "parameters" not in tools[0]["function"]


def test_plain_prompt_fallback_lists_roles_and_tools():
    prompt = legacy_server.plain_prompt([{"role": "user", "content": "hi"}], [tool("bash")])
    assert prompt.splitlines() == ["User: hi", "Available tools:", "- bash: bash tool", "Assistant:"]


@pytest.mark.parametrize("size", [1, 2])
def test_response_cache_is_an_lru_keyed_on_messages_and_tools(size):
    cache = legacy_server.ResponseCache(size)
    first = cache.key([{"role": "user", "content": "a"}], None)
    second = cache.key([{"role": "user", "content": "b"}], None)
    assert first != cache.key([{"role": "user", "content": "a"}], [tool("bash")])
    cache.put(first, {"n": 1})
    cache.put(second, {"n": 2})
    assert cache.get(second) == {"n": 2}
    assert (cache.get(first) is None) == (size == 1)
    stats = cache.stats()
    assert stats["cached_items"] == size
    assert stats["hits"] + stats["misses"] == stats["total_requests"] == 2
    assert stats["hit_rate"] == ("50.0%" if size == 1 else "100.0%")
