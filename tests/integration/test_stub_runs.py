"""Whole runs against the instant stub server (tests/stubs/instant_server.py) started as a custom
command server: warm-up rows, --concurrency sessions and their queueing, --context-tokens copies and
their plot, and --bound writing bound.json. The stub answers in milliseconds, so these runs measure
the harness's own plumbing rather than a model."""

from __future__ import annotations

import json

import pytest
from declared_servers import instant_stub_config

from harness.core.rows import read_rows
from harness.presentation.report import build_report
from harness.run.runner import Runner

pytestmark = pytest.mark.integration


def test_warm_up_is_one_unmeasured_row_per_server_start(tmp_path):
    config = instant_stub_config(tmp_path, scenarios=["short-chat", "restart"], warmup=True, context_tokens=[60])
    run_dir = Runner(config).run()
    rows = read_rows(run_dir)
    warm = [r for r in rows if r.request_kind == "warmup"]
    # One per server start: each scenario gets a fresh server, and restart.yaml restarts once.
    assert len(warm) == 3 and all(r.turn == -1 and r.error is None for r in warm)
    restart_rows = [r for r in rows if r.scenario == "restart@60"]
    kinds = [r.request_kind for r in restart_rows]
    assert kinds == ["warmup", "first", "follow-up", "warmup", "restart", "follow-up", "follow-up"]
    paths = build_report(run_dir)
    stats = paths["summary_csv"].read_text()
    # Four short-chat requests (one first, three follow-ups); the warm-up counts nowhere.
    assert "short-chat@60,instant,first_total_s,1," in stats
    assert "short-chat@60,instant,follow_up_total_s,3," in stats


def test_concurrent_sessions_queue_on_a_server_that_serialises(tmp_path):
    config = instant_stub_config(tmp_path, "--delay-s", "0.1", "--serial", scenarios=["short-chat"], concurrency=3)
    run_dir = Runner(config).run()
    rows = [r for r in read_rows(run_dir) if r.request_kind != "warmup"]
    assert len(rows) == 12 and {r.session for r in rows} == {0, 1, 2}
    assert all(r.error is None and not r.checks_failed for r in rows), [r.checks_failed for r in rows]
    for session in range(3):
        assert [r.turn for r in rows if r.session == session] == [0, 1, 2, 3]
    # Every session's conversation is its own: the first user message names the session.
    first_ttft = sorted(r.ttft_s for r in rows if r.request_kind == "first")
    assert first_ttft[0] < 0.2 and first_ttft[-1] > 0.25  # the last one waited for the other two
    meta = json.loads((run_dir / "run.json").read_text())
    batch = meta["concurrency_batches"][0]
    assert batch["sessions"] == 3 and batch["requests"] == 12 and batch["wall_s"] >= 1.1
    text = build_report(run_dir)["summary_md"].read_text()
    assert "## Load (3 sessions at once)" in text and "one request at a time" in text


def test_context_sizes_replay_each_scenario_once_per_size_and_plot_it(tmp_path):
    config = instant_stub_config(tmp_path, scenarios=["short-chat"], context_tokens="100,400")
    run_dir = Runner(config).run()
    rows = read_rows(run_dir)
    assert [(r.scenario, r.context_tokens) for r in rows if r.turn == 0] == [
        ("short-chat@100", 100),
        ("short-chat@400", 400),
    ]
    assert all(r.prompt_tokens for r in rows)
    small = next(r for r in rows if r.context_tokens == 100 and r.turn == 0).prompt_tokens
    large = next(r for r in rows if r.context_tokens == 400 and r.turn == 0).prompt_tokens
    assert large > small
    paths = build_report(run_dir)
    assert paths["latency_vs_context"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["config"]["context_tokens"] == [100, 400]


def test_bound_json_is_written_at_the_end_of_a_run_and_reported(tmp_path):
    config = instant_stub_config(tmp_path, scenarios=["short-chat"], bound=True)
    run_dir = Runner(config).run()
    bound = json.loads((run_dir / "bound.json").read_text())
    entry = bound["scenarios"]["short-chat"]
    assert entry["first"]["prompt_tokens"] > 20 and entry["first"]["full_s"] > 0
    assert entry["first"]["cache_save_bytes"] > 0
    turns = entry["turns"]
    assert [t["turn"] for t in turns] == [1, 2, 3]
    for turn in turns:
        assert turn["reused_tokens"] > 0 and turn["new_tokens"] > 0
        assert turn["reused_tokens"] + turn["new_tokens"] == turn["prompt_tokens"]
        assert turn["prefill_s"] > 0 and turn["bound_s"] > 0
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["bound"]["status"] == "complete" and meta["status"] == "complete"
    text = build_report(run_dir)["summary_md"].read_text()
    assert "## Cache-perfect bound" in text and "| short-chat | instant | follow-ups | 3 |" in text
