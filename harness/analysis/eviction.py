"""Interleaved sessions (eviction under pressure) as the report sees them: which follow-ups resumed
after the other sessions found their cache, and what a miss costs against a hit on the same server.

A follow-up is "resumed" when the request before it (in run order, same server, scenario, mode and
repeat) belonged to another conversation, and "continued" when it came right after its own. The
cost of a miss is the median prompt processing (time to first token on streams, the whole answer
otherwise) of resumed follow-ups that found no cache, less that of continued follow-ups that did.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

EVICTION_COLUMNS = [
    "scenario",
    "server",
    "sessions",
    "capacity",
    "first_s",
    "resumed",
    "resumed_reused",
    "resumed_s",
    "continued",
    "continued_reused",
    "continued_s",
    "miss_cost_s",
    "miss_cost_ratio",
]
DETAIL_COLUMNS = ["scenario", "server", "conversation", "turn", "kind", "cache_reused", "reuse_source", "seconds"]


def interleaved_scenarios(frame: pd.DataFrame, run_meta: dict[str, Any]) -> list[str]:
    info = run_meta.get("scenario_info") or {}
    live = frame[frame["request_kind"] != "warmup"]
    found = []
    for scenario in dict.fromkeys(live["scenario"]):
        generated = (info.get(scenario) or {}).get("generated") or {}
        part = live[live["scenario"] == scenario]
        if generated.get("kind") == "interleaved" or part["conversation"].nunique() > 1:
            found.append(scenario)
    return found


def _seconds(row: pd.Series) -> float:
    value = row["ttft_s"] if row["stream"] else row["total_s"]
    return float(value) if value is not None and not pd.isna(value) else float("nan")


def visits(frame: pd.DataFrame, scenario: str, server: str) -> pd.DataFrame:
    """Every request of one server's interleaved scenario with its kind: first / resumed / continued."""
    part = frame[(frame["scenario"] == scenario) & (frame["server"] == server) & (frame["request_kind"] != "warmup")]
    records = []
    for _, run in part.groupby(["repeat", "variant"], sort=False):
        previous = None
        for _, row in run.sort_values("started_at").iterrows():
            if row["request_kind"] in ("first", "first-warm"):
                kind = "first"
            elif row["request_kind"] == "side":
                kind = "side"
            else:
                kind = "continued" if previous == row["conversation"] else "resumed"
            previous = row["conversation"]
            failed = row["error"] is not None and not pd.isna(row["error"])
            records.append(
                [
                    scenario,
                    server,
                    int(row["conversation"]),
                    int(row["turn"]),
                    kind,
                    row["cache_reused"],
                    row["reuse_source"],
                    float("nan") if failed else _seconds(row),
                ]
            )
    return pd.DataFrame(records, columns=DETAIL_COLUMNS)


def eviction_frame(frame: pd.DataFrame, servers: list[str], run_meta: dict[str, Any]) -> pd.DataFrame:
    info = run_meta.get("scenario_info") or {}
    records = []
    for scenario in interleaved_scenarios(frame, run_meta):
        for server in servers:
            seen = visits(frame, scenario, server)
            if seen.empty:
                continue
            resumed, continued = seen[seen["kind"] == "resumed"], seen[seen["kind"] == "continued"]

            def median(rows: pd.DataFrame) -> float:
                values = rows["seconds"].dropna()
                return float(values.median()) if len(values) else float("nan")

            misses = median(resumed[resumed["cache_reused"] == False])  # noqa: E712 (None-safe)
            hits = median(continued[continued["cache_reused"] == True])  # noqa: E712
            records.append(
                {
                    "scenario": scenario,
                    "server": server,
                    "sessions": int(seen["conversation"].nunique()),
                    "capacity": (info.get(scenario) or {}).get("max_capacity"),
                    "first_s": median(seen[seen["kind"] == "first"]),
                    "resumed": len(resumed),
                    "resumed_reused": int((resumed["cache_reused"] == True).sum()),  # noqa: E712
                    "resumed_s": median(resumed),
                    "continued": len(continued),
                    "continued_reused": int((continued["cache_reused"] == True).sum()),  # noqa: E712
                    "continued_s": median(continued),
                    "miss_cost_s": misses - hits,
                    "miss_cost_ratio": misses / hits if hits and np.isfinite(hits) else float("nan"),
                }
            )
    return pd.DataFrame(records, columns=EVICTION_COLUMNS)
