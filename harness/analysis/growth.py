"""Long sessions as the report sees them: how latency, the server's memory and its disk cache grow
turn after turn, as straight-line slopes per 10 turns, and whether memory or disk grows without bound.

Which scenarios: those run.json says were generated as long sessions (``scenario_info``), else any
conversation of at least ``MIN_TURNS`` turns. Slopes are least-squares fits (numpy) over the
follow-ups, turn 1 on: the first request loads the model (MLX-Textgen loads it lazily) and starts
from an empty cache, so it is a step, not growth.

Unbounded growth. A server that keeps only the conversation it is serving grows, per turn, by about
the KV cache of the tokens that turn adds, plus working buffers that grow with the context (a
prefill's attention scores: the legacy stand-in re-processes the whole prompt each turn). A server
that keeps something for every request (every prompt's cache, in memory or on disk, up to a capacity
it may never reach in one session) grows, per turn, by about the KV cache of the whole prompt. The
flag sits between the two: memory or disk is flagged when its fitted slope per turn is above
``UNBOUNDED_SHARE`` (half) of the KV cache of the session's median prompt, and above
``UNBOUNDED_FLOOR_MB`` per 10 turns (allocator noise on a tiny model). On the built-in model (1 KiB
of KV cache a token) and the default 100-turn long-session (median prompt about 6,550 tokens, about
64 tokens a turn) that is 33.5 MB per 10 turns, against about 0.65 MB for the added tokens' cache and
about 67 MB for a whole prompt's cache kept every turn; measured there, MLX-Textgen's disk grew
0.64 MB and the legacy stand-in's RSS 2.4 MB per 10 turns. The KV cache size per token comes from
the model's config.json (layers x KV heads x head size x 2 x bytes per value); a run without it falls
back to the floor alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.summary import measured_rows

PER_TURNS = 10
MIN_TURNS = 30
UNBOUNDED_SHARE = 0.5
UNBOUNDED_FLOOR_MB = 5.0
MB = 1e6

GROWTH_COLUMNS = [
    "scenario",
    "server",
    "turns",
    "prompt_tokens_first",
    "prompt_tokens_last",
    "total_s_first",
    "total_s_last",
    "rss_mb_first",
    "rss_mb_last",
    "cache_mb_last",
    "slope_prompt_tokens",
    "slope_total_s",
    "slope_ttft_s",
    "slope_rss_mb",
    "slope_cache_mb",
    "threshold_mb",
    "rss_unbounded",
    "disk_unbounded",
    "stopped_early",
]

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


def kv_bytes_per_token(model_dir: str | Path | None) -> int | None:
    """Bytes of KV cache one token takes on the model in ``model_dir`` (None without a config)."""
    if not model_dir:
        return None
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
        config = config.get("text_config", config)
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return layers * kv_heads * head_dim * 2 * DTYPE_BYTES.get(str(config.get("torch_dtype")), 2)


def long_scenarios(frame: pd.DataFrame, run_meta: dict[str, Any]) -> list[str]:
    """The scenarios whose growth is reported, in run order."""
    info = run_meta.get("scenario_info") or {}
    marked = {name for name, entry in info.items() if (entry.get("generated") or {}).get("kind") == "long-session"}
    live = frame[frame["request_kind"] != "warmup"]
    found = []
    for scenario in dict.fromkeys(live["scenario"]):
        part = live[live["scenario"] == scenario]
        longest = part.groupby(["server", "repeat", "variant", "conversation"])["turn"].nunique().max()
        if scenario in marked or (not info and longest >= MIN_TURNS):
            found.append(scenario)
    return found


def slope_per_turn(turns: Any, values: Any) -> float:
    """Least-squares slope of ``values`` against ``turns`` (NaN with fewer than three points)."""
    x = pd.to_numeric(pd.Series(turns), errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or np.ptp(x[keep]) == 0:
        return float("nan")
    return float(np.polyfit(x[keep], y[keep], 1)[0])


def growth_rows(frame: pd.DataFrame, scenario: str, server: str) -> pd.DataFrame:
    """One server's rows of a long session, warm-ups out, the median over repeats per turn."""
    part = frame[(frame["scenario"] == scenario) & (frame["server"] == server) & (frame["request_kind"] != "warmup")]
    if part.empty:
        return part
    measured = measured_rows(part)
    columns = {
        "prompt_tokens": part,
        "total_s": measured,
        "ttft_s": measured,
        "rss_after_bytes": part,
        "cache_bytes_total": part,
    }
    per_turn = pd.DataFrame(index=sorted(part["turn"].unique()))
    for column, rows in columns.items():
        values = pd.to_numeric(rows[column], errors="coerce")
        per_turn[column] = values.groupby(rows["turn"]).median()
    # A server that reports no usage on streams (the legacy stand-in) was sent the same prompts as
    # the others: their count stands in for its own.
    same = frame[(frame["scenario"] == scenario) & (frame["request_kind"] != "warmup")]
    others = pd.to_numeric(same["prompt_tokens"], errors="coerce").groupby(same["turn"]).median()
    per_turn["prompt_tokens"] = per_turn["prompt_tokens"].fillna(others)
    per_turn.index.name = "turn"
    return per_turn.reset_index()


def growth_frame(frame: pd.DataFrame, servers: list[str], run_meta: dict[str, Any]) -> pd.DataFrame:
    """Per long-session scenario and server: sizes at both ends, slopes per 10 turns and the flags."""
    records = []
    stops = run_meta.get("budget_stops") or []
    for scenario in long_scenarios(frame, run_meta):
        model = (run_meta.get("scenario_models") or {}).get(scenario) or run_meta.get("model") or {}
        kv = kv_bytes_per_token(model.get("path"))
        for server in servers:
            rows = growth_rows(frame, scenario, server)
            if rows.empty:
                continue
            warm = rows[rows["turn"] >= 1]
            slopes = {
                column: slope_per_turn(warm["turn"], warm[column]) * PER_TURNS
                for column in ("prompt_tokens", "total_s", "ttft_s", "rss_after_bytes", "cache_bytes_total")
            }
            prompt = pd.to_numeric(rows["prompt_tokens"], errors="coerce").dropna()
            threshold = UNBOUNDED_FLOOR_MB
            if kv and len(prompt):
                threshold = max(threshold, UNBOUNDED_SHARE * kv * float(prompt.median()) * PER_TURNS / MB)
            rss_slope, cache_slope = slopes["rss_after_bytes"] / MB, slopes["cache_bytes_total"] / MB

            def ends(column: str, scale: float = 1.0, rows: pd.DataFrame = rows) -> tuple[float, float]:
                values = pd.to_numeric(rows[column], errors="coerce").dropna() / scale
                return (float(values.iloc[0]), float(values.iloc[-1])) if len(values) else (np.nan, np.nan)

            records.append(
                {
                    "scenario": scenario,
                    "server": server,
                    "turns": len(rows),
                    "prompt_tokens_first": ends("prompt_tokens")[0],
                    "prompt_tokens_last": ends("prompt_tokens")[1],
                    "total_s_first": ends("total_s")[0],
                    "total_s_last": ends("total_s")[1],
                    "rss_mb_first": ends("rss_after_bytes", MB)[0],
                    "rss_mb_last": ends("rss_after_bytes", MB)[1],
                    "cache_mb_last": ends("cache_bytes_total", MB)[1],
                    "slope_prompt_tokens": slopes["prompt_tokens"],
                    "slope_total_s": slopes["total_s"],
                    "slope_ttft_s": slopes["ttft_s"],
                    "slope_rss_mb": rss_slope,
                    "slope_cache_mb": cache_slope,
                    "threshold_mb": threshold,
                    "rss_unbounded": bool(np.isfinite(rss_slope) and rss_slope > threshold),
                    "disk_unbounded": bool(np.isfinite(cache_slope) and cache_slope > threshold),
                    "stopped_early": any(s.get("server") == server and s.get("scenario") == scenario for s in stops),
                }
            )
    return pd.DataFrame(records, columns=GROWTH_COLUMNS)
