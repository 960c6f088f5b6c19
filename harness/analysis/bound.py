"""The cache-perfect bound as the report sees it: bound.json (written by ``harness.run.bound``) read
back and set against each server's follow-ups. Needs neither mlx nor a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.summary import Summary, describe, measured_rows
from harness.core.formatting import fmt_bytes, fmt_value
from harness.core.rows import BOUND_FILE


def load_bound(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(run_dir) / BOUND_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("scenarios") else None


def row_bounds(frame: pd.DataFrame, bound: dict[str, Any]) -> pd.DataFrame:
    """Follow-up and restart rows with their own bound (``bound_s``) and ``multiple`` = total_s / bound.

    A row's bound is the measured prefill of its new tokens plus the first token, plus the measured
    per-token decode cost for each further token the server actually generated."""
    records = []
    rows = measured_rows(frame[frame["request_kind"].isin(["follow-up", "restart"])])
    for _, row in rows.iterrows():
        entry = (bound.get("scenarios") or {}).get(row["scenario"])
        turn = next((t for t in (entry or {}).get("turns", []) if t["turn"] == row["turn"]), None)
        if turn is None or row["total_s"] is None or pd.isna(row["total_s"]):
            continue
        produced = row["completion_tokens"]
        if produced is None or pd.isna(produced) or produced < 1:
            value = turn["bound_s"]
        else:
            value = turn["prefill_s"] + (float(produced) - 1) * turn["decode_s_per_token"]
        if value > 0:
            records.append(
                {
                    "scenario": row["scenario"],
                    "server": row["server"],
                    "kind": row["request_kind"],
                    "turn": int(row["turn"]),
                    "total_s": float(row["total_s"]),
                    "bound_s": value,
                    "multiple": float(row["total_s"]) / value,
                }
            )
    return pd.DataFrame(records, columns=["scenario", "server", "kind", "turn", "total_s", "bound_s", "multiple"])


def bound_frames(summary: Summary, bound: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(follow-up multiples per scenario and server, first-request costs per scenario)."""
    per_row = row_bounds(summary.frame[summary.frame["request_kind"] != "warmup"], bound)
    follow = []
    order = {name: i for i, name in enumerate([*summary.scenarios, *summary.servers])}
    groups = sorted(
        per_row.groupby(["scenario", "server", "kind"], sort=False),
        key=lambda item: (order.get(item[0][0], 0), order.get(item[0][1], 0), item[0][2] != "follow-up"),
    )
    for (scenario, server, kind), part in groups:
        d = describe(part["multiple"])
        label = "follow-ups" if kind == "follow-up" else "after restart"
        follow.append(
            [
                scenario,
                server,
                label,
                d["n"],
                fmt_value(part["total_s"].median()),
                fmt_value(part["bound_s"].median()),
                f"{d['median']:.1f}x",
                f"{d['ci95_low']:.1f}x – {d['ci95_high']:.1f}x",
            ]
        )
    first = []
    for scenario in summary.scenarios:
        entry = (bound.get("scenarios") or {}).get(scenario) or {}
        f = entry.get("first")
        if not f:
            continue
        servers = [
            f"{s} {fmt_value(summary.stat(scenario, s, 'first_total_s')['median'])}"
            for s in summary.servers
            if summary.stat(scenario, s, "first_total_s")["n"]
        ]
        first.append(
            [
                scenario,
                f["prompt_tokens"],
                fmt_value(f["full_s"]),
                f"{fmt_value(f['cache_save_s'])} ({fmt_bytes(f['cache_save_bytes'])})",
                ", ".join(servers),
            ]
        )
    return (
        pd.DataFrame(
            follow,
            columns=[
                "Scenario",
                "Server",
                "Requests",
                "n",
                "Server median",
                "Bound median",
                "Multiple (median)",
                "95% CI",
            ],
        ),
        pd.DataFrame(
            first,
            columns=[
                "Scenario",
                "Prompt tokens",
                "Full prefill + decode (in-process)",
                "Writing its KV cache to a file",
                "Servers' first request (median)",
            ],
        ),
    )
