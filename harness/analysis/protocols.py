"""The same turn sent through both APIs (``--protocol both``): each turn's row through the Messages
API set beside its row through OpenAI chat completions, on the same server, mode, repeat and session.

A native mode's label is the OpenAI mode's plus ",anthropic" (``Variant.label``), so the two are
paired on the label without that suffix.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.core.formatting import fmt_value, is_nan

NATIVE_SUFFIX = ",anthropic"
FIGURES = ("status", "failures", "TTFT", "total", "reuse")


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and is_nan(value)) and value != ""


def status_text(row: Any) -> str:
    """HTTP status, or the error that stood for one."""
    if _present(row["http_status"]):
        text = str(int(row["http_status"]))
        return text if not _present(row["error"]) or text != "200" else f"200, {row['error']}"
    return str(row["error"]) if _present(row["error"]) else "–"


def reuse_text(row: Any) -> str:
    """Whether the request reused a prompt cache, how many tokens, and which layer said so."""
    reused = row["cache_reused"]
    if not _present(reused):
        return "unknown"
    tokens = f"{int(row['cached_tokens'])} tok, " if _present(row["cached_tokens"]) else ""
    return f"{'yes' if reused else 'no'} ({tokens}{row['reuse_source']})"


def _cells(row: Any | None) -> list[str]:
    if row is None:
        return ["not sent"] + ["–"] * (len(FIGURES) - 1)
    failed = row["checks_failed"] if isinstance(row["checks_failed"], (list, tuple)) else []
    return [
        status_text(row),
        ", ".join(failed) or "none",
        fmt_value(row["ttft_s"]),
        fmt_value(row["total_s"]),
        reuse_text(row),
    ]


def protocol_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per server, scenario, mode and turn that went through both APIs, the figures of
    each side by side; empty when no turn did."""
    if frame.empty or "protocol" not in frame or frame["protocol"].nunique() < 2:
        return pd.DataFrame()
    part = frame[frame["request_kind"] != "warmup"].copy()
    part["mode"] = part["variant"].str.removesuffix(NATIVE_SUFFIX)
    keys = ["server", "scenario", "mode", "repeat", "session", "turn"]
    lines = []
    for key, group in part.groupby(keys, sort=True):
        sides = {protocol: rows.iloc[0] for protocol, rows in group.groupby("protocol")}
        if len(sides) < 2:
            continue
        server, scenario, mode, repeat, _session, turn = key
        name = group.iloc[0]["turn_name"]
        label = f"{int(turn)}" + (f" ({name})" if _present(name) else "")
        lines.append(
            [server, scenario, mode, int(repeat), label, *_cells(sides.get("anthropic")), *_cells(sides.get("openai"))]
        )
    columns = ["Server", "Scenario", "Mode", "Repeat", "Turn"]
    columns += [f"native {figure}" for figure in FIGURES] + [f"converted {figure}" for figure in FIGURES]
    table = pd.DataFrame(lines, columns=columns)
    if table["Repeat"].nunique() <= 1:
        table = table.drop(columns=["Repeat"])
    return table
