"""What the behaviour checks find, unaided, on the built-in tool-calling models.

One run: the legacy stand-in with its default switches, the same with Hermes parsing on, and
MLX-Textgen, over the three dialect scenarios, each played streamed and not, with tool_choice auto
and required. The assertions are the facts the harness exists to surface.
"""

from __future__ import annotations

import pytest

from harness.analysis.summary import summarize
from harness.core.rows import read_rows
from harness.presentation.report import build_report
from harness.run.config import load_config
from harness.run.runner import Runner

pytestmark = pytest.mark.integration

CONFIG = """
servers = ["legacy", "legacy-hermes", "mlx-textgen"]
scenarios = ["tools-hermes", "tools-qwen-xml", "tools-harmony"]
[server.legacy-hermes]
like = "legacy"
[server.legacy-hermes.quirks]
hermes_parsing = true
"""


@pytest.fixture(scope="module")
def behaviour_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("behaviour")
    (folder / "harness.toml").write_text(CONFIG)
    config = load_config(overrides={"out": str(folder / "runs")}, project_dir=folder)
    return Runner(config).run()


def rows(run_dir, server, scenario, variant):
    found = [r for r in read_rows(run_dir) if r.server == server and r.scenario == scenario and r.variant == variant]
    assert found, (server, scenario, variant)
    return found


def test_mlx_textgen_streamed_hermes_tool_call_is_lost(behaviour_run):
    """Role chunk and [DONE], nothing else: the post-mortem's "stream stops after 2 tokens"."""
    streamed = rows(behaviour_run, "mlx-textgen", "tools-hermes", "stream,tool_choice=auto")
    first = streamed[0]
    assert first.tool_calls == [] and not first.content
    assert {"stream.empty", "stream.no_finish_chunk", "tool.calls_missing"} <= set(first.checks_failed)
    plain = rows(behaviour_run, "mlx-textgen", "tools-hermes", "no-stream,tool_choice=auto")[0]
    assert plain.finish_reason == "tool_calls" and [c["name"] for c in plain.tool_calls] == ["Read"]
    # Non-streamed, the call is right; the only finding is that it differs from the lost streamed one.
    failures = [c for c in plain.checks_failed if c.startswith(("tool.", "expect.", "stream."))]
    assert failures == ["tool.stream_arguments_differ"], failures
    assert plain.check_evidence["tool.stream_arguments_differ"].startswith("streamed: no call; not streamed: [Read(")


def test_legacy_does_not_parse_hermes_unless_switched_on(behaviour_run):
    default = rows(behaviour_run, "legacy", "tools-hermes", "no-stream,tool_choice=auto")[0]
    assert "tool.calls_missing" in default.checks_failed and "<tool_call>" in (default.content or "")
    switched = rows(behaviour_run, "legacy-hermes", "tools-hermes", "no-stream,tool_choice=auto")[0]
    assert not [c for c in switched.checks_failed if c.startswith(("tool.", "expect."))]
    assert [c["name"] for c in switched.tool_calls] == ["Read"]


@pytest.mark.parametrize("scenario", ["tools-qwen-xml", "tools-harmony"])
def test_legacy_parses_qwen_xml_and_harmony(behaviour_run, scenario):
    for variant in ("stream,tool_choice=auto", "no-stream,tool_choice=auto"):
        played = rows(behaviour_run, "legacy", scenario, variant)
        tool_failures = [c for r in played for c in r.checks_failed if c.startswith(("tool.", "expect."))]
        assert tool_failures == [], (variant, tool_failures)
        # Its shape quirks are still reported, in their own family.
        assert any(c.startswith(("schema.", "stream.")) for r in played for c in r.checks_failed)


@pytest.mark.parametrize("scenario", ["tools-qwen-xml", "tools-harmony"])
def test_mlx_textgen_returns_qwen_xml_and_harmony_calls_as_plain_text(behaviour_run, scenario):
    """With tool_choice auto the model's call comes back as content, finish_reason stop."""
    for variant in ("stream,tool_choice=auto", "no-stream,tool_choice=auto"):
        first = rows(behaviour_run, "mlx-textgen", scenario, variant)[0]
        assert first.tool_calls == [] and first.finish_reason == "stop", variant
        assert {"tool.raw_markup_in_content", "tool.calls_missing"} <= set(first.checks_failed), variant


def test_report_has_a_behaviour_table_and_a_verdict(behaviour_run):
    markdown = build_report(behaviour_run)["summary_md"].read_text()
    assert "stream.empty" in markdown
    verdicts = summarize(read_rows(behaviour_run), reference="legacy").verdicts
    assert verdicts["mlx-textgen"].drop_in is False
    assert any(r.check == "stream.empty" for r in verdicts["mlx-textgen"].regressions)


def test_every_answer_is_replayed_into_real_clients(behaviour_run):
    """The lost streamed Hermes call, read by real clients: every answer kept, each client's verdict
    names the loss first, and the verdict of each server fits in a dozen lines."""
    from harness.analysis.findings import server_findings
    from harness.analysis.run_folder import load_run
    from harness.clients import ai_sdk
    from harness.clients.replay import replay_run
    from harness.presentation.report import verdict_lines

    answered = [r for r in read_rows(behaviour_run) if r.request_kind != "warmup"]
    from harness.run.captures import read_answer

    assert all(r.answer and read_answer(behaviour_run, r.answer) for r in answered)
    clients = ["openai-python"] + ([] if ai_sdk.unavailable() else ["ai-sdk"])
    statuses = replay_run(behaviour_run, clients)
    assert all(s.skipped is None and s.answers == len(answered) for s in statuses), statuses
    summary, _meta = load_run(behaviour_run)
    found = server_findings(summary)["mlx-textgen"]
    for verdict in found.clients:
        assert verdict.drop_in is False
        hermes = [g for g in verdict.breaks if (g.scenario, g.variant) == ("tools-hermes", "stream,tool_choice=auto")]
        assert hermes and "stream.empty" in hermes[0].checks, verdict.breaks
    # The findings that break a client come before those every client tolerates.
    ranks = [bool(f.breaks) for f in found.findings]
    assert ranks == sorted(ranks, reverse=True) and ranks[0]
    lines = verdict_lines(summary)
    heads = [i for i, line in enumerate(lines) if not line.startswith("  - ")]
    for start, end in zip(heads, [*heads[1:], len(lines)], strict=True):
        assert end - start <= 12, lines[start:end]
