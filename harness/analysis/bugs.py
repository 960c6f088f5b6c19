"""The detection matrix of the bug corpus: entry x release -> flagged / clean / not reproduced here,
and the two figures that say how good the harness is at known bugs:

- **recall**: entries flagged on at least one release that has them, over the entries that could be
  shown here (an affected release was played to a verdict);
- **false alarms**: entries flagged on the release that fixed them, over the entries whose fixed
  release was played to a verdict.

A cell is "flagged" when one of the entry's checks failed on a row of its scenario, "clean" when
none did, and "not reproduced" (with the reason) when the scenario could not show the bug there:
the entry says it cannot be shown here, the server is not in the catalogue, the release did not
install or start, or the model never produced what the bug needs (a tool call).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from packaging.version import InvalidVersion, Version

from harness.core.rows import ResultRow
from harness.scenario.bugs import BugEntry

FLAGGED, CLEAN, NOT_REPRODUCED = "flagged", "clean", "not reproduced"
# What the entry says of a release: it has the bug, it is the fix (or later), or it names neither.
HAS_IT, FIXED, NOT_NAMED = "affected", "fixed", "not named"
START_FAILED = "http.server_start"
RAW_MARKUP = "tool.raw_markup_in_content"
NOT_FOUND = 404


@dataclass
class Cell:
    entry: str
    server: str
    release: str
    status: str
    expected: str
    reason: str = ""  # why "not reproduced", or what fired for "flagged"
    fired: list[str] = field(default_factory=list)  # the entry's checks that failed
    other_failures: list[str] = field(default_factory=list)  # other checks that failed on its rows


@dataclass
class Figures:
    reproducible: list[str]
    recalled: list[str]
    fixed_played: list[str]
    false_alarms: list[str]
    misses: dict[str, str]  # entry -> why it was not flagged where it should have been

    @property
    def recall(self) -> float | None:
        return len(self.recalled) / len(self.reproducible) if self.reproducible else None

    @property
    def false_alarm_rate(self) -> float | None:
        return len(self.false_alarms) / len(self.fixed_played) if self.fixed_played else None


def expectation(entry: BugEntry, release: str) -> str:
    """What ``entry`` says of ``release``: it has the bug, it is the fix or later, or neither."""
    if entry.is_affected(release):
        return HAS_IT
    if entry.fixed is not None:
        try:
            if Version(release) >= Version(entry.fixed):
                return FIXED
        except InvalidVersion:
            pass
    return NOT_NAMED


def release_unavailable(rows: list[ResultRow]) -> str | None:
    """Why a release that started answers nothing here, judged on all its rows (every entry's): when
    no request got a 200, a failure of an entry's check says nothing about that entry's bug."""
    started = [row for row in rows if START_FAILED not in row.checks_failed]
    if not started or any(row.http_status == 200 for row in started):
        return None
    first = next((row for row in started if row.error), started[0])
    evidence = first.check_evidence.get("http.server_error_on_valid_request") or first.error or ""
    return f"the release answers no request here (all {len(started)} failed; first: {evidence[:160]})"


def cell(entry: BugEntry, server: str, release: str, rows: list[ResultRow], unavailable: str | None = None) -> Cell:
    """The verdict of one entry on one release from the rows of its scenario there. ``unavailable``:
    why the release could not be played at all (e.g. the server is not in the catalogue)."""
    expected = expectation(entry, release)
    made = Cell(entry.id, server, release, NOT_REPRODUCED, expected)
    if entry.not_reproducible:
        made.reason = entry.not_reproducible
        return made
    if unavailable:
        made.reason = unavailable
        return made
    if not rows:
        made.reason = "not played (no row of its scenario on this release)"
        return made
    if "anthropic" in entry.protocols:
        # A bug of the Messages API: its rows, not those of the same turns converted to chat.
        rows = [row for row in rows if row.protocol == "anthropic" or START_FAILED in row.checks_failed]
    started = [row for row in rows if START_FAILED not in row.checks_failed]
    if not started:
        first = rows[0].error or "the server did not start"
        made.reason = f"release does not install or start here: {first[:200]}"
        return made
    if all(row.http_status == NOT_FOUND for row in started):
        made.reason = f"release does not serve the route (HTTP 404): {started[0].error or ''}"[:240]
        return made
    fired = sorted({name for row in started for name in row.checks_failed if name in entry.checks})
    made.other_failures = sorted({name for row in started for name in row.checks_failed if name not in entry.checks})
    if fired:
        made.status, made.fired = FLAGGED, fired
        evidence = next(
            row.check_evidence.get(name, "") for row in started for name in row.checks_failed if name in entry.checks
        )
        made.reason = f"{', '.join(fired)}: {evidence[:160]}"
        return made
    if "tool_calls" in entry.needs and not any(row.tool_calls for row in started):
        as_text = any(RAW_MARKUP in row.checks_failed for row in started)
        made.reason = (
            "the server returned the model's calls as text (it does not parse this model's dialect)"
            if as_text
            else "the model made no tool call here"
        ) + ", so the scenario cannot show the bug"
        return made
    made.status = CLEAN
    return made


def figures(entries: list[BugEntry], cells: list[Cell]) -> Figures:
    by_entry: dict[str, list[Cell]] = {}
    for item in cells:
        by_entry.setdefault(item.entry, []).append(item)
    reproducible, recalled, fixed_played, false_alarms = [], [], [], []
    misses: dict[str, str] = {}
    for entry in entries:
        mine = by_entry.get(entry.id, [])
        affected = [c for c in mine if c.expected == HAS_IT and c.status != NOT_REPRODUCED]
        if affected:
            reproducible.append(entry.id)
            if any(c.status == FLAGGED for c in affected):
                recalled.append(entry.id)
            else:
                releases = ", ".join(c.release for c in affected)
                others = sorted({name for c in affected for name in c.other_failures})
                misses[entry.id] = f"clean on {releases} (affected); " + (
                    f"other checks failed there: {', '.join(others)}" if others else "no check failed there"
                )
        at_fix = [c for c in mine if c.release == entry.fixed and c.status != NOT_REPRODUCED]
        if at_fix:
            fixed_played.append(entry.id)
            if any(c.status == FLAGGED for c in at_fix):
                false_alarms.append(entry.id)
    return Figures(reproducible, recalled, fixed_played, false_alarms, misses)


def matrix_record(entries: list[BugEntry], cells: list[Cell], result: Figures, releases: list[str]) -> dict[str, Any]:
    """matrix.json: every entry with its cells, and the figures with what they are made of."""
    return {
        "releases": releases,
        "entries": [
            {
                "id": entry.id,
                "server": entry.server,
                "title": entry.title,
                "reference": entry.reference,
                "seen_here": entry.seen_here,
                "affected": entry.affected,
                "shown_on": entry.shown_on,
                "fixed": entry.fixed,
                "checks": entry.checks,
                "cells": [asdict(c) for c in cells if c.entry == entry.id],
            }
            for entry in entries
        ],
        "figures": {
            "recall": result.recall,
            "recalled": result.recalled,
            "reproducible": result.reproducible,
            "false_alarm_rate": result.false_alarm_rate,
            "false_alarms": result.false_alarms,
            "fixed_played": result.fixed_played,
            "misses": result.misses,
        },
    }
