"""The report sections for the reach features, from rows and run files alone: the cache-perfect
bound (bound.json), the load table of a --concurrency run, side requests, remote servers."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from harness.analysis.bound import bound_frames, load_bound, row_bounds
from harness.analysis.concurrency import is_concurrent, load_frame
from harness.analysis.summary import summarize
from harness.core.rows import BOUND_FILE, RESULTS_FILE, ResultRow
from harness.presentation.report import build_report, comparison_frame
from harness.run.concurrent import tag_session
from harness.scenario.definition import plan_requests, resolve_scenarios

BOUND = {
    "scenarios": {
        "agent-session": {
            "base": "agent-session",
            "context_tokens": None,
            "decode_tokens": 32,
            "repeats": 3,
            "first": {
                "turn": 0,
                "prompt_tokens": 5936,
                "full_s": 4.0,
                "full_samples": [4.0],
                "cache_save_s": 0.03,
                "cache_save_bytes": 6_000_000,
            },
            "turns": [
                {
                    "turn": t,
                    "kind": "follow-up",
                    "prompt_tokens": 6000 + t,
                    "reused_tokens": 5900,
                    "new_tokens": 100,
                    "prefill_s": 0.2,
                    "bound_s": 0.51,
                    "decode_s_per_token": 0.01,
                    "samples": [0.51],
                }
                for t in (1, 2, 3)
            ],
            "skipped": [],
        }
    }
}


def _row(t: float, **kw) -> ResultRow:
    base = dict(run_id="r", scenario="agent-session", stream=True, variant="stream", started_at=t)
    base.update(kw)
    return ResultRow(**base)


def _rows() -> list[ResultRow]:
    rows, t = [], 1000.0
    for server, first, follow, tokens in (("legacy", 10.0, 10.0, 64), ("mlx-textgen", 5.0, 1.0, 32)):
        for repeat in range(2):
            for turn in range(4):
                t += 20
                rows.append(
                    _row(
                        t,
                        server=server,
                        repeat=repeat,
                        turn=turn,
                        request_kind="first" if turn == 0 else "follow-up",
                        total_s=first if turn == 0 else follow + 0.01 * repeat,
                        ttft_s=0.5,
                        completion_tokens=tokens,
                    )
                )
    return rows


def test_each_follow_up_is_a_multiple_of_its_own_bound():
    frame = summarize(_rows()).frame
    per_row = row_bounds(frame, BOUND)
    assert len(per_row) == 12 and set(per_row["kind"]) == {"follow-up"}
    legacy = per_row[per_row["server"] == "legacy"]
    # The bound uses the tokens that server generated: 0.2 + 63 * 0.01 for legacy, 0.2 + 31 * 0.01 here.
    assert legacy["bound_s"].iloc[0] == pytest.approx(0.83)
    textgen = per_row[per_row["server"] == "mlx-textgen"]
    assert textgen["bound_s"].iloc[0] == pytest.approx(0.51)
    assert textgen["multiple"].iloc[0] == pytest.approx(1.0 / 0.51)


def test_the_bound_tables_name_servers_multiples_and_the_cache_write_cost():
    summary = summarize(_rows())
    follow, first = bound_frames(summary, BOUND)
    assert list(follow["Server"]) == ["legacy", "mlx-textgen"]
    assert follow.iloc[1]["Multiple (median)"] == "2.0x"
    assert first.iloc[0]["Prompt tokens"] == 5936
    assert "6.0 MB" in first.iloc[0]["Writing its KV cache to a file"]
    assert "legacy 10 s" in first.iloc[0]["Servers' first request (median)"]


def test_summary_md_gains_a_bound_section_only_when_bound_json_exists(tmp_path):
    with (tmp_path / RESULTS_FILE).open("w") as out:
        for row in _rows():
            out.write(row.model_dump_json() + "\n")
    build_report(tmp_path)
    assert "Cache-perfect bound" not in (tmp_path / "summary.md").read_text()
    assert load_bound(tmp_path) is None
    (tmp_path / BOUND_FILE).write_text(json.dumps(BOUND))
    build_report(tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "## Cache-perfect bound" in text and "| agent-session | mlx-textgen | follow-ups |" in text
    assert text.index("## Cache-perfect bound") < text.index("## Run details")
    assert "## Load" not in text  # not a concurrent run


def _concurrent_rows() -> list[ResultRow]:
    """Three sessions against a server that answers one request at a time (0.1 s each)."""
    rows, t = [], 1000.0
    for turn in range(2):
        for session in range(3):
            wait = 0.1 * session
            rows.append(
                _row(
                    t,
                    server="mlx-textgen",
                    scenario="short-chat",
                    session=session,
                    turn=turn,
                    request_kind="first" if turn == 0 else "follow-up",
                    ttft_s=0.1 + wait,
                    total_s=0.1 + wait,
                    completion_tokens=10,
                )
            )
        t += 0.3
    return rows


def test_the_load_table_shows_queueing_and_throughput():
    rows = _concurrent_rows()
    frame = summarize(rows).frame
    assert is_concurrent(frame) and not is_concurrent(summarize(_rows()).frame)
    table = load_frame(frame, ["mlx-textgen"])
    row = table.iloc[0]
    assert row["Sessions"] == 3 and row["Requests"] == 6 and row["Errors"] == 0
    low, high = row["First-request TTFT (min – max)"]
    assert low == pytest.approx(0.1) and high == pytest.approx(0.3)  # the third session waited for two
    # Wall time: first request sent at 1000.0, last answer at 1000.3 + 0.3.
    assert row["Requests/s"] == pytest.approx(6 / 0.6)
    assert row["Tokens/s"] == pytest.approx(60 / 0.6)


def test_a_concurrent_run_report_has_a_load_section_with_the_notes(tmp_path):
    with (tmp_path / RESULTS_FILE).open("w") as out:
        for row in _concurrent_rows():
            out.write(row.model_dump_json() + "\n")
    (tmp_path / "run.json").write_text(
        json.dumps(
            {
                "run_id": "x",
                "reference_server": "mlx-textgen",
                "concurrency_batches": [
                    {
                        "server": "mlx-textgen",
                        "scenario": "short-chat",
                        "repeat": 0,
                        "requests": 6,
                        "log_reuse_lines": 3,
                        "log_miss_lines": 3,
                        "restart_after_ignored": False,
                    }
                ],
            }
        )
    )
    build_report(tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "## Load (3 sessions at once)" in text
    assert "one request at a time" in text and "counted per batch" in text
    assert "cache reuse logged 3 times" in text


def test_sessions_are_tagged_on_their_first_user_message_only():
    planned = plan_requests(resolve_scenarios(["short-chat"])[0])
    tag_session(planned, 2)
    for request in planned:
        users = [m["content"] for m in request.messages if m["role"] == "user"]
        assert users[0].startswith("[session 2] ") and not any(u.startswith("[session") for u in users[1:])
    assert planned[0].messages[0]["role"] == "system" and "[session" not in planned[0].messages[0]["content"]


def test_side_requests_have_their_own_statistic_and_never_count_as_follow_ups():
    rows = _rows() + [
        _row(5000.0 + i, server="mlx-textgen", turn=9, request_kind="side", total_s=0.05) for i in range(3)
    ]
    summary = summarize(rows)
    assert summary.stat("agent-session", "mlx-textgen", "side_total_s")["median"] == pytest.approx(0.05)
    assert summary.stat("agent-session", "mlx-textgen", "follow_up_total_s")["median"] > 1.0


def test_a_remote_server_s_cache_files_are_not_observable():
    rows = [r.model_copy(update={"server": "fleet"}) if r.server == "mlx-textgen" else r for r in _rows()]
    summary = summarize(rows)
    meta = {"servers": {"legacy": {"remote": False}, "fleet": {"remote": True}}}
    frame = comparison_frame(summary, meta).set_index("Metric")
    assert frame.loc["Cache files", "fleet"] == "Not observable (remote server)"
    assert frame.loc["Cache files", "legacy"] == "None created"


def test_rows_default_to_session_zero_and_no_size():
    row = _row(1.0, server="s", turn=0, request_kind="first")
    assert row.session == 0 and row.context_tokens is None
    assert isinstance(pd.DataFrame([row.model_dump()]).loc[0, "session"].item(), int)
    assert not math.isnan(row.session)


def test_log_lines_of_a_batch_are_counted_once_even_when_the_server_logs_them_twice():
    from harness.run.concurrent import count_log_lines
    from harness.server.spec import legacy_spec, mlx_textgen_spec

    textgen = mlx_textgen_spec()
    log = "\n".join(
        [
            "[INFO] 2026-01-01 10:00:00,001 - MLX Textgen - No suitable cache found. Time taken: 0.000s.",
            "[(INFO) 2026-01-01 10:00:00]: No suitable cache found. Time taken: 0.000s.",
            "[INFO] 2026-01-01 10:00:01,001 - MLX Textgen - "
            'Reusing cache "cache_0". 57 tokens for each prompt prefilled.',
            '[(INFO) 2026-01-01 10:00:01]: Reusing cache "cache_0". 57 tokens for each prompt prefilled.',
            "[INFO] 2026-01-01 10:00:02,001 - MLX Textgen - "
            'Reusing cache "cache_1". 160 tokens for each prompt prefilled.',
            '[(INFO) 2026-01-01 10:00:02]: Reusing cache "cache_1". 160 tokens for each prompt prefilled.',
        ]
    )
    assert count_log_lines(textgen.reuse_pattern, log) == 2
    assert count_log_lines(textgen.miss_pattern, log) == 1
    assert count_log_lines(None, log) is None and count_log_lines(textgen.reuse_pattern, "") is None
    legacy = legacy_spec()
    lines = "processing full prompt of 129 tokens\nresponse cache hit\nprocessing full prompt of 232 tokens"
    assert (
        count_log_lines(legacy.miss_pattern, lines) == 2
        and count_log_lines(legacy.served_from_cache_pattern, lines) == 1
    )
