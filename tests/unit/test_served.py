"""Answers served without generation are recognised (the server's word, or an identical earlier
conversation answered far below the cost of decoding it), kept out of every figure and counted; the
like-for-like reference gives the headline ratio next to the one as deployed; the prompt-processing
rate comes from the server's log or from timing."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.analysis.summary import summarize
from harness.core.rows import ResultRow
from harness.presentation.comparison import comparison_frame, comparison_table_md
from harness.server.process import ServerProcess
from harness.server.spec import legacy_spec, mlx_textgen_spec

META = {
    "run_id": "r",
    "status": "complete",
    "reference_server": "legacy",
    "like_for_like_server": "legacy-capped",
    "servers": {
        "legacy": {"label": "legacy stand-in", "quirks": {"max_tokens_ignored": True}},
        "legacy-capped": {"label": "legacy stand-in, max_tokens honoured", "quirks": {"max_tokens_ignored": False}},
        "mlx-textgen": {"label": "MLX-Textgen", "quirks": {}},
    },
}

# server -> (first s, follow-up s, completion tokens, decode tok/s or None)
PROFILE = {
    "legacy": (10.0, 9.0, 256, None),
    "legacy-capped": (9.0, 8.0, 32, None),
    "mlx-textgen": (4.0, 1.0, 32, 200.0),
}


class Clock:
    t = 0.0

    def __call__(self) -> float:
        self.t += 1
        return self.t


def conversation(
    server: str,
    clock: Clock,
    variant: str,
    served: bool | None = None,
    total: float | None = None,
    turns: int = 4,
    scenario: str = "agent-session",
) -> list[ResultRow]:
    first, follow, tokens, decode = PROFILE[server]
    rows = []
    for turn in range(turns):
        rows.append(
            ResultRow(
                run_id="r",
                server=server,
                scenario=scenario,
                variant=variant,
                model="tiny",
                turn=turn,
                request_kind=("first" if variant == "stream" else "first-warm") if turn == 0 else "follow-up",
                stream=True,
                started_at=clock(),
                total_s=total if total is not None else (first if turn == 0 else follow),
                ttft_s=(total if total is not None else (first if turn == 0 else follow)) * 0.9,
                completion_tokens=tokens,
                decode_tok_s=decode,
                prompt_tokens=6000 + 100 * turn,
                cached_tokens=6000 + 100 * (turn - 1) if decode and turn else 0,
                conversation_sha=f"{scenario}-{turn}",
                server_session=f"{server}#1",
                served_from_cache=served,
                prompt_tok_s=600.0 if decode is None and turn == 0 else None,
            )
        )
    return rows


def make_rows() -> list[ResultRow]:
    clock, rows = Clock(), []
    # legacy: the second mode replays the same conversation; its log says nothing (served None),
    # but every answer comes in 2 ms for 256 tokens: far below the cost of decoding them.
    rows += conversation("legacy", clock, "stream")
    rows += conversation("legacy", clock, "no-stream", total=0.002)
    # legacy-capped: its log says the second mode came from its response cache.
    rows += conversation("legacy-capped", clock, "stream")
    rows += conversation("legacy-capped", clock, "no-stream", served=True, total=0.002)
    # mlx-textgen: the same conversation again, fast from its prefix cache but really decoded
    # (32 tokens at 200 tok/s cost 0.16 s; 0.15 s is not under a quarter of that).
    rows += conversation("mlx-textgen", clock, "stream")
    rows += conversation("mlx-textgen", clock, "no-stream", total=0.15)
    return rows


@pytest.fixture(scope="module")
def summary():
    return summarize(make_rows(), like_for_like="legacy-capped")


def test_answers_served_without_generation_are_recognised(summary):
    frame = summary.frame
    marked = frame[frame["no_generation"]]
    assert sorted(marked.groupby("server").size().items()) == [("legacy", 4), ("legacy-capped", 4)]
    assert all(marked.loc[marked.server == "legacy-capped", "no_generation_why"].str.contains("log says"))
    why = marked.loc[marked.server == "legacy", "no_generation_why"].iloc[0]
    assert "identical conversation" in why and "200 tok/s" in why and "256 tokens" in why
    assert not frame.loc[frame.server == "mlx-textgen", "no_generation"].any()
    assert summary.failures_for("legacy")["no_generation"] == 4
    assert summary.failures_for("legacy-capped")["no_generation_said"] == 4


def test_no_figure_contains_one(summary):
    # legacy's follow-ups: 3 generated (9 s) and, in the second mode, 3 replayed ones (2 ms).
    follow = summary.stat("agent-session", "legacy", "follow_up_total_s")
    assert follow["n"] == 3 and follow["median"] == pytest.approx(9.0)
    assert summary.stat("agent-session", "legacy", "no_generation_total_s")["n"] == 4
    ratio = summary.ratio("agent-session", "mlx-textgen", "speedup_follow_up")
    assert ratio["n_reference"] == 3 and ratio["ratio"] == pytest.approx(9.0 / ((1.0 + 0.15) / 2))
    # mlx-textgen's replayed conversation is generated: it counts (3 + 3 follow-ups).
    assert summary.stat("agent-session", "mlx-textgen", "follow_up_total_s")["n"] == 6


def test_like_for_like_ratio_next_to_the_one_as_deployed(summary):
    assert summary.candidates == ["mlx-textgen"] and summary.headline_reference == "legacy-capped"
    deployed = summary.ratio("agent-session", "mlx-textgen", "speedup_first")
    fair = summary.headline_ratio("agent-session", "mlx-textgen", "speedup_first")
    assert deployed["ratio"] == pytest.approx(10 / 4) and fair["ratio"] == pytest.approx(9 / 4)
    assert set(summary.verdicts) == {"mlx-textgen"}  # the like-for-like server is not under test
    frame = comparison_frame(summary, META).set_index("Metric")
    assert list(frame.columns) == [
        "legacy",
        "legacy-capped",
        "mlx-textgen",
        "As deployed (vs legacy)",
        "Like-for-like (vs legacy-capped)",
    ]
    # one sample a side: a plain ratio with its counts, never bold
    assert frame.loc["First request (total time)", "As deployed (vs legacy)"].startswith("2.5x faster (n=1 vs 1")
    fair_text = frame.loc["First request (total time)", "Like-for-like (vs legacy-capped)"]
    assert fair_text.startswith("2.2x faster (n=1 vs 1")
    assert frame.loc["Output tokens per answer"].tolist()[:3] == ["256 (n=4)", "32 (n=4)", "32 (n=8)"]
    hits = frame.loc["Answered without generation (all scenarios)"].tolist()[:3]
    assert hits == ["4 of 8", "4 of 8", "0 of 8"]


def test_prompt_processing_rate_from_the_log_or_from_timing(summary):
    frame = summary.frame
    first = frame[frame["request_kind"] == "first"].set_index("server")
    assert first.loc["legacy", "prompt_rate"] == 600.0 and first.loc["legacy", "prompt_rate_source"] == "log"
    # mlx-textgen logged none here: 6000 prompt tokens, none cached, first token after 3.6 s.
    assert first.loc["mlx-textgen", "prompt_rate"] == pytest.approx(6000 / 3.6)
    assert first.loc["mlx-textgen", "prompt_rate_source"] == "timing"
    md = comparison_table_md(summary, META)
    assert "| Prompt processing (first request) | 600 tok/s (n=1) | 600 tok/s (n=1) | 1,667 tok/s (n=1) |" in md
    assert "left out of every time, rate and ratio: legacy 4, legacy-capped 4" in md
    assert "Like-for-like: against legacy-capped" in md


def test_without_a_decode_rate_only_the_server_can_say():
    rows = [r for r in make_rows() if r.server != "mlx-textgen"]
    marked = summarize(rows).frame.groupby("server")["no_generation"].sum().to_dict()
    assert marked == {"legacy": 0, "legacy-capped": 4}


def legacy_flagged(rows: list[ResultRow]) -> list[tuple[str, int]]:
    """(variant, turn) of legacy's rows marked as answered without generation."""
    frame = summarize(rows).frame
    marked = frame[(frame["server"] == "legacy") & frame["no_generation"]]
    return sorted(zip(marked["variant"], marked["turn"], strict=True))


REPLAYED = [("no-stream", turn) for turn in range(4)]  # legacy's second mode, answered in 2 ms


def test_a_server_that_says_it_generated_is_believed():
    rows = make_rows()
    assert legacy_flagged(rows) == REPLAYED  # the log says nothing: timing flags them
    for row in rows:
        if row.server == "legacy" and row.variant == "no-stream":
            row.served_from_cache = False
    assert legacy_flagged(rows) == []


def test_another_process_has_its_own_cache():
    rows = make_rows()
    assert legacy_flagged(rows) == REPLAYED  # same process, same conversation: flagged
    for row in rows:
        if row.server == "legacy" and row.variant == "no-stream":
            row.server_session = "legacy#2"  # restarted in between: an in-memory cache is gone
    assert legacy_flagged(rows) == []


def test_log_lines_give_cache_hits_and_prompt_rates(tmp_path: Path):
    legacy = ServerProcess(legacy_spec(), tmp_path, home=tmp_path, log_path=tmp_path / "l.log")
    text = (
        "INFO legacy-server: generated 256 tokens in 11.28 s (max_tokens=256; prompt 579 tok/s, "
        "generation 249.1 tok/s)\n"
    )
    assert legacy.answer_facts_from_log(text) == (False, 579.0)
    assert legacy.answer_facts_from_log("INFO legacy-server: response cache hit (16.7%)\n") == (True, None)
    textgen = ServerProcess(mlx_textgen_spec(), tmp_path, home=tmp_path, log_path=tmp_path / "m.log")
    line = "[INFO] x - MLX Textgen - Processed 5936 tokens in total. Total time taken: 4.274s. 1388.805 t/s.\n"
    assert textgen.answer_facts_from_log(line + line.replace("[INFO]", "[(INFO)]")) == (None, 1388.805)


def test_the_report_lists_them_with_the_server_s_own_counters(tmp_path: Path):
    import run_folder

    from harness.presentation.report import build_report

    meta = {**META, "servers": {**META["servers"]}}
    meta["servers"]["legacy-capped"] = {
        **META["servers"]["legacy-capped"],
        "sessions": [{"log": "l.log", "counters": {"status": "healthy", "cache": {"hits": 4, "misses": 4}}}],
    }
    run_dir = run_folder.write_run(tmp_path / "run", make_rows(), meta)
    md = build_report(run_dir)["summary_md"].read_text()
    assert "## Answered without generation" in md
    assert "- legacy: 4 answers" in md and "- legacy-capped's own counters report 4 response-cache hits" in md
    assert "its own counters at the end: cache.hits=4, cache.misses=4" in md
    assert "| Answered without generation (all scenarios) | 4 of 8 | 4 of 8 | 0 of 8 |  |  |" in md
    assert "| mlx-textgen | speedup_follow_up vs legacy-capped (like-for-like) | 3/6 | 13.91x |" in md
    assert "follow-ups, time to first byte" not in md  # these rows have no first-byte times
