"""Side requests (a turn with ``side: true``) and the warm-up request: both are conversations of their
own, so neither may share the main conversation's history, tools or prefix."""

from __future__ import annotations

import itertools
import textwrap

import pytest

from harness.run.bound import request_kinds
from harness.scenario.definition import ScenarioError, load_scenario, plan_requests, resolve_scenarios
from harness.scenario.warmup import WARMUP_TURN, warmup_request


def _write(tmp_path, body: str):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_the_side_requests_scenario_interleaves_short_tool_less_requests():
    scenario = resolve_scenarios(["side-requests"])[0]
    planned = plan_requests(scenario)
    side = [r for r in planned if r.side]
    main = [r for r in planned if not r.side]
    assert len(side) == 3 and len(main) == 6
    for request in side:
        assert request.tools == [] and request.tool_choice is None
        assert [m["role"] for m in request.messages] == ["system", "user"]
        assert request.messages[0]["content"] != scenario.system_text
    for request in main:
        assert request.tools == scenario.tool_schemas
        assert request.messages[0]["content"] == scenario.system_text
        # Nothing of a side conversation ever enters the main history.
        assert not any("isNewTopic" in str(m.get("content")) for m in request.messages)
    # Each main request extends the previous one: the prefix a cache can reuse.
    for before, after in itertools.pairwise(main):
        assert after.messages[: len(before.messages)] == before.messages


def test_a_side_request_between_a_tool_call_and_its_result_keeps_the_call_pending():
    scenario = resolve_scenarios(["side-requests"])[0]
    planned = plan_requests(scenario)
    assert planned[1].side and planned[2].messages[-1]["role"] == "tool"
    call_id = planned[2].messages[-2]["tool_calls"][0]["id"]
    assert planned[2].messages[-1]["tool_call_id"] == call_id


def test_request_kinds_skip_side_requests_and_mark_restarts():
    assert request_kinds(resolve_scenarios(["side-requests"])[0]) == [
        "first",
        "side",
        "follow-up",
        "follow-up",
        "side",
        "follow-up",
        "follow-up",
        "side",
        "follow-up",
    ]
    assert request_kinds(resolve_scenarios(["restart"])[0]) == [
        "first",
        "follow-up",
        "restart",
        "follow-up",
        "follow-up",
    ]


def test_side_turns_are_validated(tmp_path):
    with pytest.raises(ScenarioError, match="side turn"):
        load_scenario(
            _write(
                tmp_path,
                """
            name: bad
            turns:
              - user: hi
                reply: {content: hello}
              - side: true
                tool_results: ["x"]
        """,
            )
        )
    with pytest.raises(ScenarioError, match="only allowed on a side turn"):
        load_scenario(
            _write(
                tmp_path,
                """
            name: bad
            turns:
              - user: hi
                system: "a system prompt on a main turn"
        """,
            )
        )


def test_a_side_turn_without_a_system_prompt_is_just_the_user_message(tmp_path):
    scenario = load_scenario(
        _write(
            tmp_path,
            """
        name: s
        system: main system
        stream: true
        turns:
          - user: first
            reply: {content: one}
          - side: true
            user: quota
            stream: false
          - user: second
    """,
        )
    )
    _first, side, second = plan_requests(scenario)
    assert side.messages == [{"role": "user", "content": "quota"}] and side.stream is False
    assert [m["content"] for m in second.messages] == ["main system", "first", "one", "second"]


def test_the_warm_up_shares_no_prefix_with_the_scenario():
    scenario = resolve_scenarios(["agent-session"])[0]
    variant = scenario.play_modes()[0]
    request = warmup_request(scenario, variant)
    assert request.turn == WARMUP_TURN and request.tools == [] and request.tool_choice is None
    assert [m["role"] for m in request.messages] == ["user"]  # no system block to share
    assert request.params["max_tokens"] <= 8 and request.params["temperature"] == 0
    assert request.stream is True  # warms the streaming path when the scenario streams
    body = request.body("m")
    assert "tools" not in body and body["model"] == "m"
