"""Damaged caches as the report sees them: for each server and damage, what the harness did to the
copy of the cache, what the server did with the first request after it (the outcome and its
evidence), and how the requests after that one went."""

from __future__ import annotations

import pandas as pd

from harness.checks.damage import FINDINGS

DAMAGE_COLUMNS = ["scenario", "server", "fault", "action", "outcome", "finding", "evidence", "afterwards"]


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and pd.isna(value))


def _afterwards(rows: pd.DataFrame) -> str:
    """The requests after the first one on the damaged copy, in a few words each."""
    parts = []
    for _, row in rows.iterrows():
        reused = row["cache_reused"]
        if _present(row["error"]):
            what = str(row["error"])[:60]
        elif not _present(reused):
            what = "answered"
        else:
            what = "answered, cache reused" if bool(reused) else "answered, no cache reused"
        parts.append(f"turn {int(row['turn'])}: {what}")
    return "; ".join(parts) or "–"


def damage_frame(frame: pd.DataFrame, servers: list[str]) -> pd.DataFrame:
    """One row per (scenario, server, damage) in the order they were played."""
    if "fault" not in frame.columns:
        return pd.DataFrame(columns=DAMAGE_COLUMNS)
    damaged = frame[frame["fault"].notna()]
    records = []
    for scenario in dict.fromkeys(damaged["scenario"]):
        for server in servers:
            part = damaged[(damaged["scenario"] == scenario) & (damaged["server"] == server)]
            for fault in dict.fromkeys(part["fault"]):
                rows = part[part["fault"] == fault].sort_values("started_at")
                probes = rows[rows["fault_outcome"].notna()]
                if probes.empty:
                    continue
                probe = probes.iloc[0]
                later = rows[rows["started_at"] > probe["started_at"]]
                records.append(
                    {
                        "scenario": scenario,
                        "server": server,
                        "fault": fault,
                        "action": probe["fault_action"],
                        "outcome": probe["fault_outcome"],
                        "finding": probe["fault_outcome"] in FINDINGS,
                        "evidence": probe["fault_evidence"],
                        "afterwards": _afterwards(later),
                    }
                )
    return pd.DataFrame(records, columns=DAMAGE_COLUMNS)
