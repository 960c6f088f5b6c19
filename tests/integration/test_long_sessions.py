"""Long sessions and interleaved sessions, end to end but small: the growth plumbing (RSS and cache
size on every row, the growth section and plot, the time budget) on the instant stub server, and
eviction under pressure on MLX-Textgen with a prompt-cache capacity of two."""

from __future__ import annotations

import json

import pytest
from declared_servers import instant_stub_config

from harness.core.rows import read_rows
from harness.presentation.report import build_report
from harness.run.config import load_config
from harness.run.runner import Runner

pytestmark = pytest.mark.integration


def test_a_long_session_records_growth_on_every_row_and_reports_it(tmp_path):
    config = instant_stub_config(tmp_path, scenarios=["long-session"], turns=6)
    run_dir = Runner(config).run()
    rows = [r for r in read_rows(run_dir) if r.request_kind != "warmup"]
    assert [r.turn for r in rows] == list(range(6)) and all(r.error is None for r in rows)
    # The stub's process tree is measured around each request; its cache dir stays empty.
    assert all(r.rss_before_bytes and r.rss_after_bytes and r.rss_after_bytes > 10_000_000 for r in rows)
    assert all(r.cache_bytes_total == 0 and r.cache_files_total == 0 for r in rows)
    assert rows[-1].prompt_tokens > rows[0].prompt_tokens
    meta = json.loads((run_dir / "run.json").read_text())
    generated = meta["scenario_info"]["long-session"]["generated"]
    assert generated["kind"] == "long-session" and generated["turns"] == 6 and generated["seed"] == 15
    assert meta["config"]["turns"] == 6
    paths = build_report(run_dir)
    text = paths["summary_md"].read_text()
    assert "## Growth over a long session" in text and "instant (long-session, 6 turns): memory bounded" in text
    assert paths["growth_per_turn"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<h2>Growth over a long session</h2>" in paths["report_html"].read_text()


def test_the_time_budget_stops_a_session_and_the_report_says_so(tmp_path):
    config = instant_stub_config(tmp_path, "--delay-s", "0.3", scenarios=["long-session"], turns=40, time_budget_s=1.0)
    run_dir = Runner(config).run()
    rows = read_rows(run_dir)
    assert 1 <= len(rows) < 10
    meta = json.loads((run_dir / "run.json").read_text())
    [stop] = meta["budget_stops"]
    assert stop["server"] == "instant" and stop["budget_s"] == 1.0 and stop["planned"] == 40
    assert stop["sent"] == len(rows) and meta["status"] == "complete"
    assert "(stopped early: time budget spent)" in build_report(run_dir)["summary_md"].read_text()


EVICTION = """
name: eviction-small
system: "You are a helpful assistant working on the inventory service. Answer in one or two sentences."
params: {max_tokens: 8, temperature: 0}
stream: true
max_capacity: 2
time_budget_s: 120
generate: {kind: interleaved, material: short-chat, sessions: 3, turns: 4, seed: 1, growth_tokens: 40}
"""


def test_interleaved_sessions_beyond_the_capacity_lose_their_cache_on_mlx_textgen(tmp_path, tiny_model):
    scenario = tmp_path / "eviction-small.yaml"
    scenario.write_text(EVICTION)
    config = load_config(
        overrides={
            "servers": ["mlx-textgen"],
            "reference": "mlx-textgen",
            "scenarios": [str(scenario)],
            "out": str(tmp_path / "runs"),
        },
        project_dir=tmp_path,
    )
    run_dir = Runner(config).run()
    rows = read_rows(run_dir)
    assert [r.conversation for r in rows] == [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]
    assert all(r.error is None for r in rows), [r.error for r in rows]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["servers"]["mlx-textgen"]["command"][-2:] == ["--max-capacity", "2"]
    # Two prompt caches for three sessions: at most two cache files (plus the index) on disk.
    assert max(r.cache_files_total for r in rows) <= 3
    # Every session's turn right after its own finds its cache; no session resumed after the two
    # others finds all of it every time (MLX-Textgen evicts the least recently used).
    continued = [r for i, r in enumerate(rows) if r.turn % 2 == 1]
    resumed = [r for r in rows if r.turn >= 6 and r.turn % 2 == 0]
    assert all(r.cache_reused for r in continued), [(r.turn, r.cache_reused) for r in continued]
    assert not all(r.cache_reused for r in resumed), [(r.turn, r.cache_reused) for r in resumed]
    text = build_report(run_dir)["summary_md"].read_text()
    assert "## Eviction under pressure" in text
    assert "| eviction-small | mlx-textgen | 3 | 2 |" in text
