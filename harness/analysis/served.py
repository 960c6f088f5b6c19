"""Two facts about each request that need the whole run to tell: was it answered without generating
(from a response cache), and how fast did the server process its prompt?

**Answered without generation.** A server with a response cache (the legacy server's in-memory LRU,
keyed on messages and tools) answers a conversation it has seen before at once, from memory. Such an
answer costs nothing to produce, so a latency figure that mixes it with generated answers misleads
both ways. A row is marked when

- the server says so for that request (its log; ``served_from_cache`` on the row), or
- an identical conversation (same messages and tools, ``conversation_sha``) was answered earlier in
  the same server process (``server_session``), and this answer took less than ``HIT_SHARE`` of the
  cache-perfect cost of producing it: decoding its completion tokens at the fastest decode rate
  measured on the same model in the run (a perfect prefix cache still decodes every token).

A server that says it generated (``served_from_cache`` False) is taken at its word. Where the run
measured no decode rate on the model, only the server's own word can mark a row.

**Prompt-processing rate.** Tokens/s of the prompt part a server actually processed: the figure the
server logged for the request where it logs one (``prompt_tok_s``), else, for a real stream, the
prompt tokens not served from its cache divided by the time to the first token.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

# An answer faster than this share of the cache-perfect cost of decoding it was not generated.
HIT_SHARE = 0.25
# The "fastest decode rate" of a model: this percentile of the decode rates measured on it, so that
# one burst of chunks does not set it.
DECODE_RATE_PERCENTILE = 90

# Columns the summary adds to the rows' frame.
DERIVED_COLUMNS = ["no_generation", "no_generation_why", "prompt_rate", "prompt_rate_source"]


def _num(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _session_keys(df: pd.DataFrame) -> pd.Series:
    """The server process of each row; older rows without one fall back to (server, scenario, repeat,
    model), the lifetime of one server in a run without restarts."""
    fallback = (
        df["server"].astype(str)
        + "|"
        + df["scenario"].astype(str)
        + "|"
        + df["repeat"].astype(str)
        + "|"
        + df["model"].astype(str)
    )
    if "server_session" not in df:
        return fallback
    return df["server_session"].where(df["server_session"].notna(), fallback)


def _repeats(df: pd.DataFrame, sessions: pd.Series) -> pd.Series:
    """True where an identical conversation came earlier in the same server session."""
    repeated = pd.Series(False, index=df.index)
    if "conversation_sha" not in df:
        return repeated
    seen: set[tuple[str, str]] = set()
    for index in df.sort_values("started_at", kind="stable").index:
        sha = df.at[index, "conversation_sha"]
        if not isinstance(sha, str) or not sha:
            continue
        key = (str(sessions[index]), sha)
        repeated[index] = key in seen
        seen.add(key)
    return repeated


def decode_rates(df: pd.DataFrame, repeated: pd.Series) -> dict[str, float]:
    """Per model, the fastest decode rate measured on it (rows that cannot be replays only)."""
    rates: dict[str, float] = {}
    said = df["served_from_cache"] == True  # noqa: E712 (None-safe)
    usable = df[~repeated & ~said & df["error"].isna() & df["stop_cause"].isna()]
    for model, part in usable.groupby(usable["model"].astype(str)):
        values = pd.to_numeric(part["decode_tok_s"], errors="coerce").dropna()
        values = values[values > 0]
        if len(values):
            rates[str(model)] = float(np.percentile(values, DECODE_RATE_PERCENTILE))
    return rates


def mark(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the derived columns (``DERIVED_COLUMNS``) filled in."""
    df = df.copy()
    n = len(df)
    no_generation = pd.Series([False] * n, index=df.index, dtype=bool)
    why = pd.Series([None] * n, index=df.index, dtype=object)
    if n:
        sessions = _session_keys(df)
        repeated = _repeats(df, sessions)
        rates = decode_rates(df, repeated)
        for index, row in df.iterrows():
            said = _flag(row.get("served_from_cache"))
            if said is True:
                no_generation[index] = True
                why[index] = "the server's log says it answered from its response cache"
                continue
            if said is False or not repeated[index] or _present_text(row.get("error")):
                continue
            total, tokens = _num(row.get("total_s")), _num(row.get("completion_tokens"))
            rate = rates.get(str(row.get("model")))
            if total is None or not tokens or rate is None:
                continue
            floor = tokens / rate
            if total < HIT_SHARE * floor:
                no_generation[index] = True
                why[index] = (
                    f"an identical conversation was answered earlier by this server process, and this "
                    f"answer took {total:.3g} s for {tokens:.0f} tokens: under {HIT_SHARE:.0%} of the "
                    f"{floor:.3g} s that decoding them takes at the fastest decode rate measured on "
                    f"this model ({rate:.0f} tok/s)"
                )
    df["no_generation"] = no_generation
    df["no_generation_why"] = why
    rate_values, sources = _prompt_rates(df)
    df["prompt_rate"] = rate_values
    df["prompt_rate_source"] = sources
    return df


def _flag(value: Any) -> bool | None:
    """True, False or None (unknown), whatever numpy or pandas made of the column."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


def _present_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _prompt_rates(df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    values = pd.Series([math.nan] * len(df), index=df.index, dtype=float)
    sources = pd.Series([None] * len(df), index=df.index, dtype=object)
    for index, row in df.iterrows():
        if row["no_generation"] or _present_text(row.get("error")):
            continue
        logged = _num(row.get("prompt_tok_s"))
        if logged:
            values[index], sources[index] = logged, "log"
            continue
        prompt, ttft = _num(row.get("prompt_tokens")), _num(row.get("ttft_s"))
        # Only a real stream (a decode rate was measured) has a first token that marks the end of
        # prompt processing; in a fake stream or a plain body it comes with the whole answer.
        if not row.get("stream") or _num(row.get("decode_tok_s")) is None or not prompt or not ttft:
            continue
        processed = prompt - (_num(row.get("cached_tokens")) or 0.0)
        if processed > 0:
            values[index], sources[index] = processed / ttft, "timing"
    return values, sources
