"""Native replay's own rules, without a server: a turn's Anthropic body planned and sent as recorded
(only ``model`` swapped, a mode's stream / tool_choice mapped back), the protocols a server declares,
the Messages usage read as figures, and the native-vs-converted table."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.analysis.protocols import protocol_frame
from harness.checks.messages import usage_figures
from harness.core.errors import ConfigError
from harness.core.rows import ResultRow, rows_frame
from harness.run.config import RunConfig, load_config
from harness.scenario.definition import Scenario, ScenarioError, load_scenario, plan_requests, resolve_scenarios

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 32,
    "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.328.a3f;"}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Read a.py", "cache_control": {"type": "ephemeral"}}]}
    ],
    "tools": [{"name": "Read", "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "stream": True,
}


def scenario(*turns: dict) -> Scenario:
    return Scenario.model_validate({"name": "s", "turns": list(turns)})


def test_an_anthropic_only_turn_gets_its_conversion_and_its_notes():
    (turn,) = scenario({"anthropic_request": BODY}).turns
    assert turn.request is not None and turn.request["messages"][0] == {
        "role": "system",
        "content": BODY["system"][0]["text"],
    }
    assert turn.request["tool_choice"] == "auto" and turn.request["parallel_tool_calls"] is False
    assert any("cache_control removed" in note for note in turn.notes)


def test_native_plan_sends_the_body_as_recorded_with_only_the_model_swapped():
    planned = plan_requests(scenario({"anthropic_request": BODY}, {"user": "hi"}), protocol="anthropic")
    assert [(p.turn, p.protocol) for p in planned] == [(0, "anthropic")]  # the OpenAI-only turn is not sent natively
    body = planned[0].body("served-id")
    assert body == {**BODY, "model": "served-id"}
    assert planned[0].tools[0]["function"]["name"] == "Read"  # the checks read the conversion
    converted = plan_requests(scenario({"anthropic_request": BODY}), protocol="openai")[0].body("served-id")
    assert converted["messages"][0]["role"] == "system" and "system" not in converted


def test_a_mode_s_stream_and_tool_choice_are_mapped_back_to_the_messages_form():
    planned = plan_requests(
        scenario({"anthropic_request": BODY}), stream=False, tool_choice="required", protocol="anthropic"
    )
    body = planned[0].body("m")
    assert body["stream"] is False and body["tool_choice"] == {"type": "any"}
    named = plan_requests(scenario({"anthropic_request": BODY}), tool_choice="Read", protocol="anthropic")[0].body("m")
    assert named["tool_choice"] == {"type": "tool", "name": "Read"}
    same = plan_requests(scenario({"anthropic_request": BODY}), tool_choice="auto", protocol="anthropic")[0].body("m")
    assert same["tool_choice"] == BODY["tool_choice"]  # unchanged: disable_parallel_tool_use kept


def test_a_bad_anthropic_turn_names_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nturns:\n  - anthropic_request: {max_tokens: 5}\n")
    with pytest.raises(ScenarioError, match=r"field 'turns.0'.*'anthropic_request' must be a Messages API body"):
        load_scenario(path)


def test_the_claude_code_shapes_family_loads_with_its_expectations():
    loaded = resolve_scenarios(["claude-code-shapes"])
    assert {s.name for s in loaded} >= {"cc-billing-header-changing", "cc-billing-header-fixed", "cc-request-shapes"}
    assert all(item.has_anthropic and "Expectation:" in item.description for item in loaded)
    shapes = next(s for s in loaded if s.name == "cc-request-shapes")
    assert all(turn.expect is not None for turn in shapes.turns)
    names = {turn.name for turn in shapes.turns}
    assert {"tool-choice-auto", "tool-choice-any", "tool-choice-tool", "tool-choice-none", "large-tool-list"} <= names
    changing = next(s for s in loaded if s.name == "cc-billing-header-changing")
    headers = [turn.anthropic_request["system"][0]["text"] for turn in changing.turns]
    assert len(set(headers)) == len(headers) and all(h.startswith("x-anthropic-billing-header:") for h in headers)


def test_a_server_declares_its_protocols_and_a_wrong_one_is_named(tmp_path):
    toml = tmp_path / "harness.toml"
    toml.write_text(
        'servers = ["s"]\nreference = "s"\n[server.s]\nbase_url = "http://127.0.0.1:1"\n'
        'protocols = {openai = "/v1/chat/completions", anthropic = "/anthropic/v1/messages"}\n'
    )
    (spec,) = load_config(toml, project_dir=tmp_path).server_specs()
    assert spec.protocol_path("anthropic") == "/anthropic/v1/messages" and spec.chat_path == "/v1/chat/completions"
    toml.write_text('servers = ["s"]\nreference = "s"\n[server.s]\nbase_url = "http://x"\nprotocols = {grpc = "/x"}\n')
    with pytest.raises(ConfigError, match=r"server.s.protocols.*unknown protocol 'grpc'"):
        load_config(toml, project_dir=tmp_path)
    with pytest.raises(ValueError):
        RunConfig(protocol="soap")  # type: ignore[arg-type]


def test_messages_usage_figures_count_the_cached_prompt_in():
    assert usage_figures({"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 3}) == (100, 3, 90)
    assert usage_figures({"input_tokens": 10, "output_tokens": 3}) == (10, 3, None)
    assert usage_figures(None) == (None, None, None)


def _row(protocol: str, turn: int, **fields) -> ResultRow:
    variant = "as-recorded" + (",anthropic" if protocol == "anthropic" else "")
    base = dict(
        run_id="r",
        server="s",
        scenario="c",
        turn=turn,
        request_kind="first" if turn == 0 else "follow-up",
        stream=True,
        started_at=0.0,
        variant=variant,
        protocol=protocol,
        http_status=200,
        total_s=1.0,
    )
    return ResultRow(**{**base, **fields})


def test_the_side_by_side_table_pairs_each_turn_across_protocols():
    rows = [
        _row("anthropic", 0, ttft_s=0.5),
        _row("anthropic", 1, ttft_s=0.1, cache_reused=True, cached_tokens=90, reuse_source="protocol"),
        _row("openai", 0, ttft_s=0.6),
        _row("openai", 1, http_status=500, error="HTTP 500", checks_failed=["http.server_error_on_valid_request"]),
    ]
    table = protocol_frame(rows_frame(rows))
    assert list(table["Turn"]) == ["0", "1"]
    second = table.iloc[1]
    assert second["native reuse"] == "yes (90 tok, protocol)" and second["native status"] == "200"
    assert second["converted status"] == "500" and second["converted failures"] == "http.server_error_on_valid_request"
    assert protocol_frame(rows_frame(rows[:2])).empty  # one protocol only: no table
    assert protocol_frame(pd.DataFrame()).empty
