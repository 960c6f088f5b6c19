"""Scenario loading, validation errors and request planning."""

import itertools
import json
from pathlib import Path

import pytest

from harness.scenario.definition import (
    ScenarioError,
    builtin_scenarios,
    load_scenario,
    plan_requests,
    resolve_scenarios,
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "Read",
            "description": "Read a file",
            "parameters": {"type": "object", "properties": {"file_path": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "Bash",
            "description": "Run a command",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
        },
    },
]


def write(tmp_path: Path, text: str, tools=TOOLS) -> Path:
    (tmp_path / "tools.json").write_text(json.dumps(tools))
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


SESSION = """
name: demo
system: "You are a coding agent."
tools: tools.json
params: {max_tokens: 8}
stream: true
turns:
  - user: "Read a.py"
    reply: {tool_calls: [{name: Read, arguments: {file_path: a.py}}]}
    expect: {tool_calls: [{name: Read}]}
  - tool_results: ["print(1)"]
    reply: {content: "It prints 1."}
  - user: "Thanks"
"""


def test_plan_gives_identical_growing_prefixes(tmp_path):
    requests = plan_requests(load_scenario(write(tmp_path, SESSION)))
    assert [r.turn for r in requests] == [0, 1, 2]
    # Each request's history starts with the whole previous request's messages.
    for earlier, later in itertools.pairwise(requests):
        assert later.messages[: len(earlier.messages)] == earlier.messages
    second = requests[1].messages
    assert second[0] == {"role": "system", "content": "You are a coding agent."}
    call = second[2]["tool_calls"][0]
    assert second[2]["content"] is None and call["function"]["name"] == "Read"
    assert json.loads(call["function"]["arguments"]) == {"file_path": "a.py"}
    assert second[3] == {"role": "tool", "tool_call_id": call["id"], "name": "Read", "content": "print(1)"}
    assert requests[2].messages[-2] == {"role": "assistant", "content": "It prints 1."}


def test_body_carries_model_params_and_tools(tmp_path):
    request = plan_requests(load_scenario(write(tmp_path, SESSION)), tool_choice="required")[0]
    body = request.body("tiny")
    assert body["model"] == "tiny" and body["stream"] is True and body["max_tokens"] == 8
    assert body["tool_choice"] == "required" and [t["function"]["name"] for t in body["tools"]] == ["Read", "Bash"]


def test_cache_bust_header_changes_every_request(tmp_path):
    text = SESSION.replace("stream: true", "stream: true\ncache_bust_header: true")
    requests = plan_requests(load_scenario(write(tmp_path, text)))
    firsts = [r.messages[0]["content"].splitlines()[0] for r in requests]
    assert len(set(firsts)) == len(firsts) and all(line.startswith("x-request-tag:") for line in firsts)


def test_expect_naming_unknown_tool_is_rejected_before_any_server(tmp_path):
    text = SESSION.replace("expect: {tool_calls: [{name: Read}]}", "expect: {tool_calls: [{name: Wrte}]}")
    with pytest.raises(ScenarioError) as err:
        load_scenario(write(tmp_path, text))
    message = str(err.value)
    assert "s.yaml" in message and "Wrte" in message and "tool list" in message


def test_malformed_tool_schema_is_rejected(tmp_path):
    with pytest.raises(ScenarioError, match=r"tools\[1\] is not a valid tool schema"):
        load_scenario(write(tmp_path, SESSION, tools=[TOOLS[0], {"name": "Bash"}]))


def test_validation_error_names_line_and_field(tmp_path):
    text = SESSION.replace('  - user: "Thanks"', '  - user: "Thanks"\n    colour: blue')
    with pytest.raises(ScenarioError) as err:
        load_scenario(write(tmp_path, text))
    message = str(err.value)
    assert "field 'turns.2.colour'" in message and "line 14" in message


def test_tool_results_must_match_the_calls(tmp_path):
    text = SESSION.replace('tool_results: ["print(1)"]', 'tool_results: ["a", "b"]')
    with pytest.raises(ScenarioError, match="2 result"):
        load_scenario(write(tmp_path, text))


def test_unknown_scenario_name_lists_the_known_ones():
    with pytest.raises(ScenarioError) as err:
        resolve_scenarios(["no-such-scenario"])
    assert "agent-session" in str(err.value)


def test_builtin_scenarios_load():
    found = builtin_scenarios()
    for name in ("agent-session", "short-chat", "cache-bust", "restart"):
        scenario = load_scenario(found[name])
        assert plan_requests(scenario)
    agent = load_scenario(found["agent-session"])
    assert len(agent.tool_schemas) == 16 and len(agent.turns) >= 6 and agent.stream is True
    assert any(turn.tool_results for turn in agent.turns)
