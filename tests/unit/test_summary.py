"""Summary statistics on realistic rows: two servers, several turns and repeats, a failing check,
an error row, warm-ups that must not count."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.analysis.summary import (
    ALL,
    bootstrap_median_ci,
    describe,
    ratio_ci,
    summarize,
)
from harness.core.rows import ResultRow

# Per repeat: (first request, follow-ups on turns 1..3) in seconds.
LEGACY = [(50.0, [49.0, 51.0, 50.5]), (52.0, [48.5, 50.0, 49.5]), (48.0, [50.0, 51.5, 49.0])]
MLX = [(3.0, [0.55, 0.50, 0.60]), (3.2, [0.52, 0.58, 0.54]), (2.9, [0.56, 0.51, 0.57])]
# Side requests whose latencies overlap: no significant difference.
SIDE = {"legacy": [1.0, 1.2, 0.9, 1.1, 1.05], "mlx-textgen": [1.05, 0.95, 1.15, 1.0, 1.1]}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def _row(clock: Clock, **kw) -> ResultRow:
    base = dict(
        run_id="r1",
        stream=True,
        variant="stream",
        started_at=clock(),
        prompt_tokens=900,
        completion_tokens=32,
        decode_tok_s=20.0,
    )
    base.update(kw)
    if "ttft_s" not in base and base.get("total_s") is not None:
        base["ttft_s"] = base["total_s"] * 0.9
    return ResultRow(**base)


def make_rows() -> list[ResultRow]:
    clock = Clock()
    rows: list[ResultRow] = []
    for server, plan in (("legacy", LEGACY), ("mlx-textgen", MLX)):
        mlx = server == "mlx-textgen"
        total = 0
        # A warm-up far slower than anything else: it must never reach the statistics.
        rows.append(
            _row(
                clock,
                server=server,
                scenario="agent-session",
                turn=0,
                request_kind="warmup",
                total_s=500.0,
                cache_files_new=1 if mlx else 0,
                cache_bytes_new=1000 if mlx else 0,
                cache_files=["warm.safetensors"] if mlx else [],
            )
        )
        for repeat, (first, follow) in enumerate(plan):
            for turn, total_s in enumerate([first, *follow]):
                new = 2_000_000 if mlx and turn == 0 else 0
                total += new
                rows.append(
                    _row(
                        clock,
                        server=server,
                        scenario="agent-session",
                        repeat=repeat,
                        turn=turn,
                        request_kind="first" if turn == 0 else "follow-up",
                        total_s=total_s,
                        decode_tok_s=30.0 + repeat if mlx else 20.0 + repeat,
                        completion_tokens=32 if mlx else 256,
                        cache_reused=(turn > 0) if mlx else False,
                        cache_files_new=1 if new else 0,
                        cache_bytes_new=new,
                        cache_bytes_total=total,
                        cache_files=[f"kv-{repeat}.safetensors"] if new else [],
                    )
                )
        for repeat, total_s in enumerate(SIDE[server]):
            rows.append(
                _row(
                    clock,
                    server=server,
                    scenario="side",
                    repeat=repeat,
                    turn=0,
                    request_kind="first",
                    total_s=total_s,
                    cache_bytes_total=total,
                )
            )
        # Tool scenario: turn 1 loses its tool call on MLX-Textgen; turn 0 fails a schema check on
        # both servers (so it is not a regression).
        for repeat in range(2):
            rows.append(
                _row(
                    clock,
                    server=server,
                    scenario="tools",
                    repeat=repeat,
                    turn=0,
                    request_kind="first",
                    total_s=2.0,
                    checks_failed=["schema.id_missing"],
                    cache_bytes_total=total,
                )
            )
            rows.append(
                _row(
                    clock,
                    server=server,
                    scenario="tools",
                    repeat=repeat,
                    turn=1,
                    request_kind="follow-up",
                    total_s=1.0,
                    cache_bytes_total=total,
                    checks_failed=["tool.calls_missing", "expect.tool_name"] if mlx else [],
                    check_evidence={"tool.calls_missing": "no tool_calls in reply"} if mlx else {},
                )
            )
        if mlx:
            rows.append(
                _row(
                    clock,
                    server=server,
                    scenario="tools",
                    repeat=2,
                    turn=1,
                    request_kind="follow-up",
                    total_s=None,
                    ttft_s=None,
                    error="HTTP 500: internal error",
                    http_status=500,
                    cache_bytes_total=total,
                )
            )
            rows.append(
                _row(
                    clock,
                    server=server,
                    scenario="tools",
                    repeat=2,
                    turn=0,
                    request_kind="first",
                    total_s=9.0,
                    stop_cause="runaway",
                    checks_failed=["stop.runaway"],
                    cache_bytes_total=total,
                )
            )
    return rows


@pytest.fixture(scope="module")
def summary():
    return summarize(make_rows())


def exact_bootstrap_median_quantile(values: list[float], q: float) -> float:
    """The q-quantile of the median of a resample (odd n), in closed form: the median is at most the
    k-th smallest value exactly when more than half of the n draws are among the k smallest."""
    x, n = sorted(values), len(values)
    for k in range(1, n + 1):
        p = k / n
        cdf = sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(n // 2 + 1, n + 1))
        if cdf >= q:
            return x[k - 1]
    raise AssertionError("unreachable")


def test_bootstrap_interval_is_the_known_interval():
    # Eleven latencies, one outlier. The 2.5% and 97.5% points of the resampled median's
    # distribution fall on the 3rd and 9th smallest values, far from an edge (cumulative 0.007 ->
    # 0.051 and 0.949 -> 0.993), so 10,000 resamples land on them whatever the seed.
    x = [0.9, 1.4, 1.0, 1.3, 1.2, 1.1, 5.0, 0.95, 1.25, 1.05, 1.15]
    expected = (exact_bootstrap_median_quantile(x, 0.025), exact_bootstrap_median_quantile(x, 0.975))
    assert expected == (1.0, 1.3)
    assert bootstrap_median_ci(x) == expected
    assert bootstrap_median_ci(x, seed=7) == expected
    assert bootstrap_median_ci([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]) == (2.0, 6.0)  # cumulative .011/.108, .892/.990
    assert bootstrap_median_ci([7.0]) == (7.0, 7.0)
    assert all(math.isnan(v) for v in bootstrap_median_ci([]))
    d = describe([1.0, None, 3.0, float("nan"), 2.0])
    assert d["n"] == 3 and d["median"] == 2.0 and d["p90"] == pytest.approx(2.8)


def test_ratio_direction_and_significance():
    slow, fast = [10.0, 11.0, 9.0, 10.5], [1.0, 1.1, 0.9, 1.05]
    r = ratio_ci(slow, fast)
    assert r["ratio"] == pytest.approx(10.25 / 1.025)
    assert r["significant"] and r["ci95_low"] > 1
    worse = ratio_ci(fast, slow)  # the other server is the slow one: ratio < 1
    assert worse["ratio"] < 1 and worse["significant"] and worse["ci95_high"] < 1
    rate = ratio_ci([10.0, 10.0, 11.0], [20.0, 21.0, 19.0], higher_is_better=True)
    assert rate["ratio"] == pytest.approx(2.0)
    single = ratio_ci([10.0], [1.0])
    assert single["ratio"] == 10.0 and not single["significant"] and math.isnan(single["ci95_low"])


def test_servers_scenarios_headline(summary):
    assert summary.reference == "legacy"
    assert summary.servers == ["legacy", "mlx-textgen"]
    assert summary.scenarios == ["agent-session", "side", "tools"]
    assert summary.headline == "agent-session"
    assert summarize(make_rows(), headline="tools").headline == "tools"
    only_side = [r for r in make_rows() if r.scenario != "agent-session"]
    assert summarize(only_side).headline == "side"


def test_latency_medians_exclude_warmups_and_errors(summary):
    first = summary.stat("agent-session", "legacy", "first_total_s")
    assert first["n"] == 3 and first["median"] == 50.0
    assert first["ci95_low"] <= 50.0 <= first["ci95_high"]
    follow = summary.stat("agent-session", "mlx-textgen", "follow_up_total_s")
    assert follow["n"] == 9 and follow["median"] == pytest.approx(0.55)
    assert summary.stat("agent-session", "mlx-textgen", "first_ttft_s")["median"] == pytest.approx(2.7)
    assert summary.stat("agent-session", "mlx-textgen", "decode_tok_s")["median"] == 31.0
    # The error row (no total_s) and the runaway row (cut off at 9 s) are not latencies.
    tools_first = summary.stat("tools", "mlx-textgen", "first_total_s")
    assert tools_first["n"] == 2 and tools_first["median"] == 2.0


def test_speedups(summary):
    first = summary.ratio("agent-session", "mlx-textgen", "speedup_first")
    assert first["ratio"] == pytest.approx(50.0 / 3.0)
    assert first["significant"] and first["ci95_low"] > 1
    follow = summary.ratio("agent-session", "mlx-textgen", "speedup_follow_up")
    assert follow["ratio"] == pytest.approx(50.0 / 0.55)
    decode = summary.ratio("agent-session", "mlx-textgen", "speedup_decode")
    assert decode["ratio"] == pytest.approx(31.0 / 21.0)
    side = summary.ratio("side", "mlx-textgen", "speedup_first")
    assert side["ratio"] == pytest.approx(1.05 / 1.05)
    assert not side["significant"] and side["ci95_low"] < 1 < side["ci95_high"]


def test_cache_accounting(summary):
    mlx = summary.cache_for("mlx-textgen")
    assert mlx["files_created"] == 4  # 3 first requests + the warm-up
    assert mlx["bytes_created"] == 6_001_000
    assert mlx["kinds"] == [".safetensors"]
    assert mlx["bytes_total_end"] == 6_000_000
    head = summary.cache_for("mlx-textgen", "agent-session")
    assert (head["reuse_seen"], head["reuse_known"], head["follow_ups"]) == (9, 9, 9)
    legacy = summary.cache_for("legacy", "agent-session")
    assert legacy["files_created"] == 0 and legacy["reuse_seen"] == 0 and legacy["reuse_known"] == 9


def test_failures(summary):
    mlx = summary.failures_for("mlx-textgen", "tools")
    assert (mlx["errors"], mlx["runaway"], mlx["stalled"]) == (1, 1, 0)
    assert summary.failures_for("legacy", ALL)["errors"] == 0
    assert summary.failures_for("mlx-textgen")["requests"] == 12 + 5 + 6


def test_behaviour_and_verdict(summary):
    b = summary.behaviour.set_index(["scenario", "variant", "server"])
    assert b.loc[("agent-session", "stream", "mlx-textgen"), "status"] == "PASS"
    tools = b.loc[("tools", "stream", "mlx-textgen")]
    assert tools["status"] == "FAIL"
    assert (tools["first_failure"], tools["first_failure_turn"]) == ("schema.id_missing", 0)
    assert b.loc[("tools", "stream", "legacy"), "status"] == "FAIL"

    verdict = summary.verdicts["mlx-textgen"]
    assert verdict.drop_in is False
    found = {(r.scenario, r.turn, r.check) for r in verdict.regressions}
    assert found == {
        ("tools", 1, "tool.calls_missing"),
        ("tools", 1, "expect.tool_name"),
        ("tools", 1, "request.error"),
        ("tools", 0, "stop.runaway"),
    }
    # Failing on both servers is not a regression.
    assert not any(r.check == "schema.id_missing" for r in verdict.regressions)
    evidence = {r.check: r.evidence for r in verdict.regressions}
    assert evidence["tool.calls_missing"] == "no tool_calls in reply"
    assert evidence["request.error"].startswith("HTTP 500")


def test_drop_in_when_nothing_regresses():
    rows = [r for r in make_rows() if r.scenario != "tools"]
    verdict = summarize(rows).verdicts["mlx-textgen"]
    assert verdict.drop_in is True and not verdict.regressions and verdict.compared == 5


def test_interrupted_run_reports_missing_turns():
    rows = make_rows()
    cut = [r for r in rows if not (r.server == "mlx-textgen" and r.scenario != "agent-session")]
    s = summarize(cut)
    verdict = s.verdicts["mlx-textgen"]
    assert verdict.drop_in is True and len(verdict.missing) == 3  # side turn 0, tools turns 0-1
    assert s.ratio("side", "mlx-textgen", "speedup_first") is None


def test_reference_falls_back_and_empty_rows():
    rows = [r for r in make_rows() if r.server == "mlx-textgen"]
    s = summarize(rows)
    assert s.reference == "mlx-textgen" and s.others == [] and s.verdicts == {}
    empty = summarize([])
    assert empty.servers == [] and empty.headline is None and empty.n_rows == 0
    assert empty.csv_frame().empty
    assert empty.cache_for("legacy") == {}


def test_csv_frame(summary, tmp_path):
    path = summary.write_csv(tmp_path / "summary.csv")
    df = pd.read_csv(path)
    for col in ["scenario", "server", "metric", "n", "median", "p90", "ci95_low", "ci95_high", "unit"]:
        assert col in df.columns
    row = df[(df.scenario == "agent-session") & (df.server == "legacy") & (df.metric == "first_total_s")]
    assert row.iloc[0]["median"] == 50.0 and row.iloc[0]["n"] == 3 and row.iloc[0]["unit"] == "s"
    ratio = df[(df.scenario == "agent-session") & (df.metric == "speedup_follow_up")].iloc[0]
    assert ratio["server"] == "mlx-textgen" and ratio["unit"] == "x"
    assert ratio["median"] == pytest.approx(50.0 / 0.55, rel=1e-5)
    assert ratio["reference"] == "legacy" and bool(ratio["significant"]) is True
    side = df[(df.scenario == "side") & (df.metric == "speedup_first")].iloc[0]
    assert bool(side["significant"]) is False
    assert np.isfinite(df["median"]).all()


def test_call_level_checks_cannot_regress_where_the_reference_made_no_call():
    """Legacy without Hermes parsing returns no call: the new server's argument miss is not a regression."""
    from harness.analysis.summary import summarize
    from harness.core.rows import ResultRow

    def row(server, failed, turn=0):
        return ResultRow(
            run_id="r",
            server=server,
            scenario="tools",
            variant="no-stream",
            turn=turn,
            request_kind="first",
            stream=False,
            started_at=1.0,
            total_s=0.1,
            checks_failed=failed,
        )

    rows = [
        row("legacy", ["tool.calls_missing"]),
        row("new", ["expect.tool_arguments"]),
        row("legacy", [], turn=1),
        row("new", ["expect.tool_arguments"], turn=1),
    ]
    verdict = summarize(rows, reference="legacy").verdicts["new"]
    assert [(r.turn, r.check) for r in verdict.regressions] == [(1, "expect.tool_arguments")]
