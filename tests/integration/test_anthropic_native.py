"""Native replay through the Anthropic Messages API (``--protocol anthropic|both``).

The harness's own path (planning a native request, sending it to the server's Messages endpoint,
reading and checking the answer, the reuse evidence, the side-by-side table) is driven against the
FAKE Messages server (tests/faultserver/fake_messages_server.py), started by the harness as a
declared command server: no model answers there, so these tests say nothing about any real server.
The real-server test at the end replays the fixture trace on vllm-mlx from the server catalogue.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.core.rows import ResultRow, read_rows
from harness.presentation.report import build_report
from harness.run.config import load_config
from harness.run.runner import Runner
from harness.scenario.importers import read_traffic, write_imported

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]
FAKE_MESSAGES = TESTS / "faultserver" / "fake_messages_server.py"
TRACE = TESTS / "fixtures" / "traces" / "coding-session"


def fake_config(tmp_path: Path, mode: str = "normal", prefix: str = "", **overrides):
    tmp_path.mkdir(parents=True, exist_ok=True)
    toml = tmp_path / "harness.toml"
    toml.write_text(
        textwrap.dedent(f"""
        servers = ["fake-messages"]
        reference = "fake-messages"
        [server.fake-messages]
        label = "fake Messages API server (test tool)"
        command = ["{{python}}", "{FAKE_MESSAGES}", "--port", "{{port}}", "--host", "{{host}}", "--mode", "{mode}",
                   "--prefix", "{prefix}"]
        ready_path = "/v1/models"
        ready_timeout_s = 30
        protocols = {{openai = "/v1/chat/completions", anthropic = "{prefix}/v1/messages"}}
    """)
    )
    overrides.setdefault("out", str(tmp_path / "runs"))
    return load_config(toml, overrides, project_dir=tmp_path)


def imported_trace(tmp_path: Path) -> Path:
    out = tmp_path / "imported"
    write_imported(read_traffic([TRACE]).exchanges, out, "coding", "the fixture trace")
    return out


def run(config) -> tuple[Path, list[ResultRow]]:
    run_dir = Runner(config).run()
    return run_dir, [row for row in read_rows(run_dir) if row.request_kind != "warmup"]


def test_the_fixture_trace_replays_both_ways_side_by_side(tmp_path):
    scenarios = imported_trace(tmp_path)
    config = fake_config(tmp_path, prefix="/anthropic", scenarios=[str(scenarios)], protocol="both")
    run_dir, rows = run(config)
    native = [row for row in rows if row.protocol == "anthropic"]
    converted = [row for row in rows if row.protocol == "openai"]
    # The trace's four replayable requests, each sent both ways, turn numbers lined up.
    assert [row.turn for row in native] == [row.turn for row in converted] == [0, 1, 2, 3]
    assert all(row.variant.endswith(",anthropic") for row in native)
    assert all(row.http_status == 200 and not row.checks_failed for row in native), [
        (row.turn, row.checks_failed, row.check_evidence) for row in native
    ]
    # Reuse evidence from the protocol itself: usage.cache_read_input_tokens on the follow-ups.
    follow_ups = [row for row in native if row.request_kind == "follow-up"]
    assert follow_ups and all(row.reuse_source == "protocol" and row.cached_tokens for row in follow_ups)
    assert all(row.prompt_tokens and row.prompt_tokens >= (row.cached_tokens or 0) for row in native)
    summary = build_report(run_dir)["summary_md"].read_text(encoding="utf-8")
    assert "Native (Anthropic Messages) vs converted (OpenAI chat)" in summary
    table = summary.split("Native (Anthropic Messages) vs converted (OpenAI chat)", 1)[1]
    assert "native reuse" in table and "converted TTFT" in table and "yes (" in table


def test_streamed_tool_call_as_text_is_flagged_and_the_plain_one_is_not(tmp_path):
    config = fake_config(tmp_path, mode="tool-as-text", scenarios=["cc-request-shapes"], protocol="anthropic")
    _run_dir, rows = run(config)
    forced = [row for row in rows if row.turn_name == "tool-choice-any"]
    streamed = next(row for row in forced if row.stream)
    plain = next(row for row in forced if not row.stream)
    assert "anthropic.tool_call_as_text" in streamed.checks_failed
    assert "<tool_call>" in streamed.check_evidence["anthropic.tool_call_as_text"]
    assert streamed.finish_reason == "stop"  # end_turn, as sent
    assert "anthropic.tool_call_as_text" not in plain.checks_failed
    assert plain.finish_reason == "tool_calls" and plain.tool_calls[0]["name"] == "Read"


def test_max_tokens_overrun_and_a_missing_message_stop_are_flagged(tmp_path):
    config = fake_config(
        tmp_path, mode="max-tokens-overrun", scenarios=["cc-billing-header-absent"], protocol="anthropic"
    )
    _run_dir, rows = run(config)
    assert rows and all("anthropic.max_tokens_exceeded" in row.checks_failed for row in rows)
    config = fake_config(
        tmp_path / "b", mode="no-message-stop", scenarios=["cc-billing-header-absent"], protocol="anthropic"
    )
    _run_dir, rows = run(config)
    assert rows and all("anthropic.stream_event_order" in row.checks_failed for row in rows)
    assert "without message_stop" in rows[0].check_evidence["anthropic.stream_event_order"]


def test_billing_header_changing_loses_follow_up_reuse_and_fixed_keeps_it(tmp_path):
    """On a server with a prefix cache (the fake keys its cached-token count on the shared prefix of
    system + messages), a billing header that changes per request reuses nothing."""
    config = fake_config(
        tmp_path, scenarios=["cc-billing-header-changing", "cc-billing-header-fixed"], protocol="anthropic"
    )
    _run_dir, rows = run(config)
    changing = [row for row in rows if row.scenario == "cc-billing-header-changing" and row.turn > 0]
    fixed = [row for row in rows if row.scenario == "cc-billing-header-fixed" and row.turn > 0]
    assert changing and all(row.cache_reused is False for row in changing), [
        (r.cached_tokens, r.prompt_tokens) for r in changing
    ]
    assert fixed and all(row.cache_reused is True for row in fixed)


def test_system_role_rejected_with_a_clear_422_is_accepted_as_unsupported(tmp_path):
    config = fake_config(tmp_path, mode="reject-system-role", scenarios=["cc-request-shapes"], protocol="anthropic")
    _run_dir, rows = run(config)
    shaped = [row for row in rows if row.turn_name == "system-message-inside-messages"]
    assert shaped and all(row.http_status == 422 for row in shaped)
    assert all("http.note_rejected_as_unsupported" in row.check_notes and not row.checks_failed for row in shaped)


def test_a_server_without_the_messages_api_is_skipped_with_a_note(tmp_path):
    import json

    config = fake_config(tmp_path, scenarios=["cc-billing-header-absent"], protocol="anthropic")
    config.server["fake-messages"].protocols = {"openai": "/v1/chat/completions"}
    run_dir, rows = run(config)
    assert rows == []
    notes = json.loads((run_dir / "run.json").read_text())["notes"]
    assert any("does not serve the anthropic protocol" in note for note in notes)


# A catalogue server that serves the Messages API, started from its own environment (built on first use).
CATALOGUE_SERVER = "vllm-mlx"


def test_the_fixture_trace_replays_natively_on_vllm_mlx(tmp_path):
    scenarios = imported_trace(tmp_path)
    config = load_config(
        None,
        {
            "servers": [CATALOGUE_SERVER],
            "reference": CATALOGUE_SERVER,
            "scenarios": [str(scenarios)],
            "protocol": "both",
            "out": str(tmp_path / "runs"),
        },
        project_dir=tmp_path,
    )
    run_dir, rows = run(config)
    native = [row for row in rows if row.protocol == "anthropic"]
    assert [row.turn for row in native] == [0, 1, 2, 3]
    assert all(row.http_status == 200 for row in native)
    assert "Native (Anthropic Messages) vs converted" in build_report(run_dir)["summary_md"].read_text(encoding="utf-8")
