"""A concurrent run (``--concurrency N``) as the report sees it: latency percentiles and throughput
per scenario and server, from the rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.summary import measured_rows

LOAD_COLUMNS = [
    "Scenario",
    "Server",
    "Sessions",
    "Requests",
    "Errors",
    "p50 total",
    "p90 total",
    "p50 TTFT",
    "p90 TTFT",
    "First-request TTFT (min – max)",
    "Requests/s",
    "Tokens/s",
]


def is_concurrent(frame: pd.DataFrame) -> bool:
    return "session" in frame.columns and bool((frame["session"].fillna(0) > 0).any())


def load_frame(frame: pd.DataFrame, servers: list[str]) -> pd.DataFrame:
    """Latency percentiles and throughput per (scenario, server) of a concurrent run, from the rows.

    Throughput is over each batch's wall time (first request sent to last answer received), summed
    over repeats; requests that failed count in Requests and Errors but not in the latencies."""
    live = frame[frame["request_kind"] != "warmup"]
    if live.empty or not is_concurrent(frame):
        return pd.DataFrame(columns=LOAD_COLUMNS)
    records: list[list[Any]] = []
    for scenario in dict.fromkeys(live["scenario"]):
        for server in servers:
            part = live[(live["scenario"] == scenario) & (live["server"] == server)]
            if part.empty:
                continue
            wall = 0.0
            for _, batch in part.groupby(["variant", "repeat"]):
                ends = batch["started_at"] + batch["total_s"].fillna(0)
                wall += float(ends.max() - batch["started_at"].min())
            ok = measured_rows(part)
            total = ok["total_s"].astype(float).dropna()
            ttft = ok["ttft_s"].astype(float).dropna()
            first = ok.loc[ok["request_kind"] == "first", "ttft_s"].astype(float).dropna()
            tokens = float(pd.to_numeric(ok["completion_tokens"], errors="coerce").fillna(0).sum())

            def pct(values: pd.Series, q: float) -> float:
                return float(np.percentile(values, q)) if len(values) else float("nan")

            records.append(
                [
                    scenario,
                    server,
                    int(part["session"].nunique()),
                    len(part),
                    int(part["error"].notna().sum()),
                    pct(total, 50),
                    pct(total, 90),
                    pct(ttft, 50),
                    pct(ttft, 90),
                    (float(first.min()), float(first.max())) if len(first) else None,
                    len(ok) / wall if wall > 0 else float("nan"),
                    tokens / wall if wall > 0 else float("nan"),
                ]
            )
    return pd.DataFrame(records, columns=LOAD_COLUMNS)
