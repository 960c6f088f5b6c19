"""Capability claims judged from the run's behaviour rows: which rows measure a capability, which of
their failed checks count against it, and what the rows say of one server.

- tool calling (one dialect when the claim names it): the rows of scenarios played on a tool-call
  model (hermes, qwen-xml, harmony); counted: ``tool.*``, ``expect.*``, ``stream.tool_*``, errors
  and cut-offs; else run with ``--scenarios tools-hermes,...``;
- streaming: the streamed rows; counted: ``stream.*``, errors and cut-offs (``agent-session``);
- structured output: the rows that force a named tool (``tool_choice: {function}``); counted:
  ``tool.*``, ``expect.*``, errors and cut-offs (``client-shapes-hermes``);
- multi-slot cache management: follow-ups sent right after another conversation's request (a side
  request, an interleaved session) where the scenario's cache capacity holds every conversation;
  reuse seen or not (``side-requests``);
- surviving a restart: the first requests after a restart on the intact cache; reuse seen or not
  (``restart``).

Notes (``*.note_*``) never count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.analysis.summary import Summary, row_failures
from harness.models.dialects import DIALECTS


@dataclass
class Finding:
    """What a run's rows say of one capability on one server. ``works``: True, False, or None when
    the rows cannot tell (``rows`` 0: nothing measured it)."""

    server: str
    rows: int
    works: bool | None
    measured: str  # e.g. "mlx-textgen: 2 of 20 tool-call requests failed"
    detail: str  # which checks failed where, and where it passed
    unmeasured: tuple[str, ...] = ()  # tool-call dialects the claim names that no row measured


RUN_WITH = {
    "tool_calling": "tools-hermes,tools-qwen-xml,tools-harmony",
    "streaming": "agent-session",
    "structured_output": "client-shapes-hermes (its turns that force a named tool; no built-in scenario sends "
    "`response_format`)",
    "multi_slot_cache": "side-requests",
    "restart_survival": "restart",
}

_ERRORS = ("request.error", "http.", "stop.")
_FAMILIES: dict[str, tuple[str, ...]] = {
    "tool_calling": ("tool.", "expect.", "stream.tool_", *_ERRORS),
    "streaming": ("stream.", *_ERRORS),
    "structured_output": ("tool.", "expect.", *_ERRORS),
}


def run_with(kind: str, dialects: list[str]) -> str:
    """The --scenarios that measure ``kind`` (the named dialects' scenarios for tool calling)."""
    if kind == "tool_calling" and dialects:
        return ",".join(f"tools-{d}" for d in dialects)
    return RUN_WITH[kind]


def dialect_of(scenario: str, model: Any, meta: dict[str, Any]) -> str | None:
    """The tool-call dialect a scenario was played in: the one its model (or name) names."""
    recorded = ((meta.get("scenario_models") or {}).get(scenario) or {}).get("name") or ""
    for text in (recorded, model if isinstance(model, str) else "", scenario):
        for name in DIALECTS:
            if name in str(text).lower():
                return name
    return None


def _live(summary: Summary, server: str) -> pd.DataFrame:
    frame = summary.frame
    return frame[(frame["server"] == server) & (frame["request_kind"] != "warmup")]


def _counted(row: Any, kind: str) -> list[str]:
    return [c for c in row_failures(row) if c.startswith(_FAMILIES[kind]) and ".note_" not in c]


def _mode(row: Any, dialect: str | None) -> str:
    choice = row["tool_choice"]
    words = ["streamed" if row["stream"] else "non-streamed"]
    if isinstance(choice, str) and choice:
        words.append(f"with `tool_choice: {choice}`")
    if dialect:
        words.append(f"({dialect})")
    return " ".join(words)


def _failures(server: str, rows: pd.DataFrame, kind: str, label: str, dialects: Any) -> Finding:
    """A check-based capability: the share of ``rows`` failing a counted check, by mode."""
    failing: dict[str, dict[str, int]] = {}
    passing: dict[str, int] = {}
    bad = 0
    for _, row in rows.iterrows():
        mode = _mode(row, dialects.get(row["scenario"]))
        failed = _counted(row, kind)
        if failed:
            bad += 1
            for check in failed:
                failing.setdefault(mode, {}).setdefault(check, 0)
                failing[mode][check] += 1
        else:
            passing[mode] = passing.get(mode, 0) + 1
    parts = [
        ", ".join(f"`{check}` x{n}" for check, n in sorted(checks.items(), key=lambda c: -c[1])) + f" {mode}"
        for mode, checks in failing.items()
    ]
    clean = [mode for mode in passing if mode not in failing]
    detail = "; ".join(parts)
    if clean:
        detail += ("; " if detail else "") + "passes " + ", ".join(clean)
    measured = f"{server}: {bad} of {len(rows)} {label} requests failed"
    return Finding(server, len(rows), bad == 0, measured, detail)


def _reuse(server: str, rows: pd.DataFrame, label: str) -> Finding:
    """A cache capability: whether ``rows`` found their prompt cache."""
    known = rows[rows["cache_reused"].notna()]
    seen = int((known["cache_reused"] == True).sum())  # noqa: E712 (object column)
    measured = f"{server}: reuse on {seen} of {len(rows)} {label} ({len(known)} reported)"
    if seen:
        return Finding(server, len(rows), True, measured, f"{server} found its cache on {seen} of them")
    if len(known):
        return Finding(server, len(rows), False, measured, f"{server} reported no reuse on any of them")
    return Finding(server, len(rows), None, measured, f"{server} does not report cache reuse (log or usage)")


def _resumed(summary: Summary, server: str, meta: dict[str, Any]) -> pd.DataFrame:
    """Follow-ups sent right after a request of another conversation (a side request, another
    interleaved session), in scenarios whose cache capacity holds every conversation they play."""
    info = meta.get("scenario_info") or {}
    keep: list[int] = []
    live = _live(summary, server)
    for scenario, part in live.groupby("scenario", sort=False):
        capacity = (info.get(scenario) or {}).get("max_capacity")
        contexts = part["conversation"].nunique() + int((part["request_kind"] == "side").any())
        if capacity and contexts > capacity:
            continue  # misses are what such a scenario is for, whatever the number of slots
        for _, run in part.groupby(["variant", "repeat", "session"], sort=False):
            previous = None
            for index, row in run.sort_values("started_at").iterrows():
                other = previous is not None and (previous[0] == "side" or previous[1] != row["conversation"])
                if row["request_kind"] == "follow-up" and other:
                    keep.append(index)
                previous = (row["request_kind"], row["conversation"])
    return summary.frame.loc[keep]


def judge(kind: str, server: str, summary: Summary, meta: dict[str, Any], dialects: list[str]) -> Finding:
    """What the run's rows say of capability ``kind`` on ``server`` (``dialects``: the tool-call
    dialects the claim names; none: every one)."""
    live = _live(summary, server)
    if kind == "tool_calling":
        of = {s: dialect_of(s, None, meta) for s in live["scenario"].unique()}
        rows = live[[of.get(s) is not None and (not dialects or of[s] in dialects) for s in live["scenario"]]]
        played = {of[s] for s in rows["scenario"].unique()}
        named = "/".join(d for d in dialects if d in played) + " " if dialects else ""
        found = _failures(server, rows, kind, f"{named}tool-call", of)
        found.unmeasured = tuple(d for d in dialects if d not in played)
        return found
    if kind == "streaming":
        return _failures(server, live[live["stream"] == True], kind, "streamed", {})  # noqa: E712
    if kind == "structured_output":
        forced = live["tool_choice"].map(lambda c: isinstance(c, str) and c.startswith("{"))
        return _failures(server, live[forced], kind, "named-tool (forced)", {})
    if kind == "multi_slot_cache":
        return _reuse(server, _resumed(summary, server, meta), "follow-ups sent after another conversation's request")
    if kind == "restart_survival":
        intact = live["fault"].isna() | (live["fault"] == "intact")
        restarts = live[(live["request_kind"] == "restart") & intact]
        return _reuse(server, restarts, "first requests after a restart")
    raise ValueError(f"unknown capability {kind!r}")
