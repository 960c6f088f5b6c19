"""Generated scenarios (a ``generate:`` block): long sessions and interleaved sessions, built
deterministically from another scenario's material on the model's own tokenizer."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from harness.models.builtin import default_model_path
from harness.models.tokens import TokenCounter
from harness.scenario.definition import (
    RequestKinds,
    ScenarioError,
    load_scenario,
    plan_requests,
    resolve_scenarios,
    session_header,
)
from harness.scenario.generated import describe, episodes, materialize


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    # The tokenizer of the built-in model when it is built; else the 4-characters-a-token estimate.
    return TokenCounter(default_model_path())


def history_tokens(counter: TokenCounter, request) -> int:
    """Tokens of every message's text: a stand-in for the templated prompt's size."""
    text = "".join(str(message.get("content") or message.get("tool_calls")) for message in request.messages)
    return counter.count(text) if counter.available else len(text) // 4


def test_long_session_is_deterministic_and_sized_by_turns(counter):
    [scenario] = resolve_scenarios(["long-session"])
    assert scenario.turns == [] and scenario.generate is not None and scenario.generate.turns == 100
    built = materialize(scenario, counter)
    again = materialize(resolve_scenarios(["long-session"])[0], counter)
    assert len(built.turns) == 100
    assert [t.model_dump() for t in built.turns] == [t.model_dump() for t in again.turns]
    assert len(materialize(scenario, counter, turns=12).turns) == 12
    other_seed = scenario.model_copy(update={"generate": scenario.generate.model_copy(update={"seed": 16})})
    assert [t.model_dump() for t in materialize(other_seed, counter).turns] != [t.model_dump() for t in built.turns]
    # One conversation whose requests each carry the whole history before them.
    requests = plan_requests(built)
    assert {r.conversation for r in requests} == {0}
    for earlier, later in itertools.pairwise(requests):
        assert later.messages[: len(earlier.messages)] == earlier.messages
    assert describe(built)["turns"] == 100 and describe(built)["kind"] == "long-session"


def test_long_session_history_grows_by_about_the_target_per_turn(counter):
    [scenario] = resolve_scenarios(["long-session"])
    built = materialize(scenario, counter, turns=60)
    requests = plan_requests(built)
    first, last = history_tokens(counter, requests[0]), history_tokens(counter, requests[-1])
    per_turn = (last - first) / (len(requests) - 1)
    # The target counts the chat template's wrapping too, which this count leaves out.
    assert 0.4 * scenario.generate.growth_tokens < per_turn < 1.3 * scenario.generate.growth_tokens
    # The system prompt was cut to about system_tokens; tool results and replies come from the material.
    if counter.available:
        assert counter.count(built.system_text) <= scenario.generate.system_tokens
    material = " ".join(r for t in scenario.material_scenario.turns for r in t.tool_results or [])
    cut = [r for t in built.turns for r in t.tool_results or []]
    assert cut and all(line in material for result in cut for line in result.splitlines())
    # Every kind of episode of the material is played at least once in 60 turns but the edit (the
    # longest) is rarer than the questions (the shortest).
    users = [t.user for t in built.turns if t.user]
    assert len(set(users)) >= 3


def test_episodes_start_at_user_turns():
    [material] = resolve_scenarios(["agent-session"])
    cut = episodes(material)
    assert [len(e) for e in cut] == [2, 2, 3, 1]
    assert all(e[0].user is not None and all(t.user is None for t in e[1:]) for e in cut)


def test_interleaved_sessions_resume_each_after_the_others(counter):
    [scenario] = resolve_scenarios(["eviction"])
    built = materialize(scenario, counter)
    assert built.session_header and built.max_capacity == 2
    order = [t.conversation for t in built.turns]
    assert order == [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]
    requests = plan_requests(built)
    # Each conversation keeps its own history, which starts with its own [session K] line.
    for conversation in range(3):
        mine = [r for r in requests if r.conversation == conversation]
        assert mine[0].messages[0]["content"].startswith(session_header(conversation))
        for earlier, later in itertools.pairwise(mine):
            assert later.messages[: len(earlier.messages)] == earlier.messages
    kinds = RequestKinds()
    assert [kinds.next(r) for r in requests] == ["first", "follow-up"] * 3 + ["follow-up"] * 6
    # More sessions than the capacity the servers run with: --max-capacity 4 means five sessions.
    wider = materialize(scenario, counter, turns=2, capacity=4)
    assert sorted({t.conversation for t in wider.turns}) == [0, 1, 2, 3, 4] and wider.max_capacity == 4


def test_request_kinds_after_a_restart_and_per_conversation():
    [built] = [materialize(resolve_scenarios(["eviction"])[0], TokenCounter(None), turns=2)]
    requests = plan_requests(built)
    kinds = RequestKinds()
    assert kinds.next(requests[0]) == "first"
    kinds.restarted()
    assert [kinds.next(r) for r in requests[1:3]] == ["restart", "first"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def test_generated_scenario_errors_name_the_field(tmp_path):
    with pytest.raises(ScenarioError, match=r"generate\.material"):
        load_scenario(write(tmp_path, "name: g\ngenerate: {kind: long-session, material: nowhere}\n"))
    with pytest.raises(ScenarioError, match="field 'turns'"):
        load_scenario(write(tmp_path, 'name: g\ngenerate: {kind: long-session}\nturns: [{user: "hi"}]\n'))
    with pytest.raises(ScenarioError, match=r"generate\.kind"):
        load_scenario(write(tmp_path, "name: g\ngenerate: {kind: forever}\n"))


def test_damage_cache_after_is_validated(tmp_path):
    ok = load_scenario(
        write(
            tmp_path,
            'name: d\nturns:\n  - user: "a"\n    reply: {content: "b"}\n    damage_cache_after: [intact, zeros]\n'
            '  - user: "c"\n',
        )
    )
    assert plan_requests(ok)[0].damage_after == ["intact", "zeros"]
    with pytest.raises(ScenarioError, match="damage_cache_after"):
        load_scenario(write(tmp_path, 'name: d\nturns:\n  - user: "a"\n    damage_cache_after: [shred]\n'))
    with pytest.raises(ScenarioError, match="twice"):
        load_scenario(write(tmp_path, 'name: d\nturns:\n  - user: "a"\n    damage_cache_after: [zeros, zeros]\n'))
    with pytest.raises(ScenarioError, match="not both"):
        load_scenario(
            write(
                tmp_path,
                'name: d\nturns:\n  - user: "a"\n    restart_after: true\n    damage_cache_after: [zeros]\n',
            )
        )
