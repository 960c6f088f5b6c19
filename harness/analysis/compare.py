"""Runs side by side: the same servers and scenarios across two or more run folders (two versions of
a server, before and after a change), each figure with its median, 95% interval, the ratio to the
first run with its own interval, and whether the change is significant.

Only runs that measured the same thing can be compared: another model, another machine or another
scenario set (or other request sizes or concurrency) makes every difference meaningless, so such runs
are refused unless the caller accepts the mismatch, and then flagged with the reason
(``comparability``). Answers served without generation are in no figure, as everywhere.

A *regression* is a figure of a later run worse than the first run's by more than a given percentage
(slower for times, lower for rates) with a 95% interval of the ratio that excludes 1: a change the
samples cannot tell from noise is reported, never counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.run_folder import load_run
from harness.analysis.stats import clean, describe, ratio_ci
from harness.analysis.summary import METRICS, Summary, metric_values

# The figures compared, in the order shown.
COMPARE_METRICS = [
    "first_total_s",
    "follow_up_total_s",
    "first_ttft_s",
    "follow_up_ttft_s",
    "restart_total_s",
    "side_total_s",
    "prompt_tok_s",
    "decode_tok_s",
]
HIGHER_IS_BETTER = {"prompt_tok_s", "decode_tok_s"}
MACHINE_KEYS = ("platform", "processor", "cpu_count", "memory_gb")
SETTING_KEYS = ("context_tokens", "concurrency")

COLUMNS = [
    "scenario",
    "server",
    "metric",
    "unit",
    "run",
    "base_n",
    "base_median",
    "base_low",
    "base_high",
    "n",
    "median",
    "low",
    "high",
    "ratio",
    "ratio_low",
    "ratio_high",
    "significant",
    "change_pct",
    "worse",
]


@dataclass
class RunFolder:
    path: Path
    run_id: str
    summary: Summary
    meta: dict[str, Any]


@dataclass
class Comparison:
    runs: list[RunFolder]
    figures: pd.DataFrame  # COLUMNS: one row per (scenario, server, metric, later run)
    speedups: pd.DataFrame  # the headline ratios within each run, side by side
    mismatches: list[str]  # why the runs are not comparable (empty: they are)
    notes: list[str] = field(default_factory=list)


def load_runs(paths: list[Path]) -> list[RunFolder]:
    runs = []
    for path in paths:
        summary, meta = load_run(Path(path))
        runs.append(RunFolder(Path(path), str(meta.get("run_id") or Path(path).name), summary, meta))
    return runs


def _models(meta: dict[str, Any]) -> dict[str, Any]:
    found = {"(run)": (meta.get("model") or {}).get("checksum")}
    for scenario, model in (meta.get("scenario_models") or {}).items():
        found[scenario] = (model or {}).get("checksum")
    return found


def comparability(runs: list[RunFolder]) -> list[str]:
    """Why the runs do not measure the same thing; empty when they do."""
    problems: list[str] = []
    base = runs[0]
    for run in runs[1:]:
        who = f"{run.run_id} vs {base.run_id}"
        base_models, models = _models(base.meta), _models(run.meta)
        other = [s for s in base_models if s in models and base_models[s] and models[s] and base_models[s] != models[s]]
        if other:
            names = ", ".join("the run's main model" if s == "(run)" else s for s in other)
            problems.append(f"{who}: another model ({names}: checksums differ)")
        m1, m2 = base.meta.get("machine") or {}, run.meta.get("machine") or {}
        diff = [k for k in MACHINE_KEYS if m1.get(k) != m2.get(k)]
        if diff:
            problems.append(
                f"{who}: another machine (" + "; ".join(f"{k} {m1.get(k)} vs {m2.get(k)}" for k in diff) + ")"
            )
        s1, s2 = set(base.summary.scenarios), set(run.summary.scenarios)
        if s1 != s2:
            problems.append(
                f"{who}: another scenario set (only in {base.run_id}: {', '.join(sorted(s1 - s2)) or '–'}; "
                f"only in {run.run_id}: {', '.join(sorted(s2 - s1)) or '–'})"
            )
        c1, c2 = base.meta.get("config") or {}, run.meta.get("config") or {}
        settings = [k for k in SETTING_KEYS if c1.get(k) != c2.get(k)]
        if settings:
            problems.append(
                f"{who}: other settings (" + "; ".join(f"{k} {c1.get(k)} vs {c2.get(k)}" for k in settings) + ")"
            )
    return problems


def _figure(scenario: str, server: str, metric: str, base: RunFolder, run: RunFolder) -> dict[str, Any] | None:
    def values(folder: RunFolder) -> Any:
        frame = folder.summary.frame
        mine = (frame["scenario"] == scenario) & (frame["server"] == server)
        part = frame[mine & (frame["request_kind"] != "warmup")]
        return clean(metric_values(part, metric))

    a, b = values(base), values(run)
    if a.size == 0 or b.size == 0:
        return None
    da, db = describe(a), describe(b)
    # later / first, whatever the direction: > 1 is slower for a time, faster for a rate.
    r = ratio_ci(a, b, higher_is_better=True)
    higher = metric in HIGHER_IS_BETTER
    change = (r["ratio"] - 1) * 100
    return {
        "scenario": scenario,
        "server": server,
        "metric": metric,
        "unit": METRICS[metric][2],
        "run": run.run_id,
        "base_n": da["n"],
        "base_median": da["median"],
        "base_low": da["ci95_low"],
        "base_high": da["ci95_high"],
        "n": db["n"],
        "median": db["median"],
        "low": db["ci95_low"],
        "high": db["ci95_high"],
        "ratio": r["ratio"],
        "ratio_low": r["ci95_low"],
        "ratio_high": r["ci95_high"],
        "significant": bool(r["significant"]),
        "change_pct": change,
        "worse": bool(change < 0 if higher else change > 0),
    }


def compare_runs(
    runs: list[RunFolder], *, scenarios: list[str] | None = None, servers: list[str] | None = None
) -> Comparison:
    """Every figure of COMPARE_METRICS for each server and scenario common to the first run and a
    later one."""
    base = runs[0]
    notes: list[str] = []
    records = []
    speedups = []
    for run in runs[1:]:
        common_scenarios = [s for s in base.summary.scenarios if s in run.summary.scenarios]
        common_servers = [s for s in base.summary.servers if s in run.summary.servers]
        alone = sorted(set(base.summary.servers) ^ set(run.summary.servers))
        if alone:
            notes.append(f"{run.run_id} vs {base.run_id}: servers in one run only, not compared: {', '.join(alone)}")
        for scenario in scenarios or common_scenarios:
            if scenario not in common_scenarios:
                continue
            for server in servers or common_servers:
                if server not in common_servers:
                    continue
                for metric in COMPARE_METRICS:
                    record = _figure(scenario, server, metric, base, run)
                    if record is not None:
                        records.append(record)
    for run in runs:
        s = run.summary
        for server in s.candidates:
            for name in ("speedup_first", "speedup_follow_up"):
                found = s.headline_ratio(s.headline, server, name)
                if found is not None:
                    speedups.append(
                        {
                            "run": run.run_id,
                            "scenario": s.headline,
                            "server": server,
                            "metric": name,
                            "reference": s.headline_reference,
                            "ratio": found["ratio"],
                            "ci95_low": found["ci95_low"],
                            "ci95_high": found["ci95_high"],
                        }
                    )
    figures = pd.DataFrame(records, columns=COLUMNS)
    return Comparison(runs, figures, pd.DataFrame(speedups), comparability(runs), notes)


def regressions(comparison: Comparison, pct: float) -> pd.DataFrame:
    """The figures worse than the first run's by more than ``pct`` percent, significantly."""
    f = comparison.figures
    if f.empty:
        return f
    higher = f["metric"].isin(HIGHER_IS_BETTER)
    beyond = (~higher & (f["change_pct"] > pct)) | (higher & (f["change_pct"] < -pct))
    return f[beyond & f["significant"] & f["worse"]]


__all__ = ["COMPARE_METRICS", "Comparison", "comparability", "compare_runs", "load_runs", "regressions"]
