"""The detection matrix of the bug corpus as markdown (matrix.md; docs/bugs.md quotes one run's):
the figures first, then one table per server (entry x release), then every cell that is not a
plain verdict explained: what fired, and why an entry was not reproduced."""

from __future__ import annotations

from harness.analysis.bugs import CLEAN, FIXED, FLAGGED, HAS_IT, Cell, Figures
from harness.scenario.bugs import BugEntry

MARKS = {FLAGGED: "**flagged**", CLEAN: "clean"}


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _mark(item: Cell) -> str:
    text = MARKS.get(item.status, "not reproduced")
    if item.status == FLAGGED and item.expected == FIXED:
        text += " (false alarm)"
    elif item.status == FLAGGED and item.expected not in (HAS_IT, FIXED):
        text += " (not named)"
    elif item.status == CLEAN and item.expected == HAS_IT:
        text += " (missed)"
    return text


def _sort_key(release: str) -> tuple[int, ...]:
    parts = []
    for piece in release.split("."):
        parts.append(int(piece) if piece.isdigit() else 0)
    return tuple(parts)


def render_matrix(
    entries: list[BugEntry], cells: list[Cell], result: Figures, run_id: str = "", played_s: float = 0.0
) -> str:
    lines = ["# Known bugs: detection matrix", ""]
    if run_id:
        played = len({(c.server, c.release) for c in cells})
        lines += [
            f"Run `{run_id}`: {len(entries)} entries on {played} releases, {played_s / 60:.1f} min of play.",
            "",
        ]
    lines.append(
        f"- **Recall**: {len(result.recalled)} of {len(result.reproducible)} entries reproducible here flagged on "
        f"a release that has them ({_percent(result.recall)})."
    )
    lines.append(
        f"- **False alarms**: {len(result.false_alarms)} of {len(result.fixed_played)} entries whose fixed release "
        f"was played flagged there ({_percent(result.false_alarm_rate)})"
        + (f": {', '.join(result.false_alarms)}." if result.false_alarms else ".")
    )
    shown = [
        entry.id
        for entry in entries
        if any(c.entry == entry.id and c.expected == HAS_IT and c.status == FLAGGED for c in cells)
        and any(c.entry == entry.id and c.release == entry.fixed and c.status == CLEAN for c in cells)
    ]
    lines.append(
        f"- **Flagged on the affected release and clean on the fixed one**: {len(shown)} ({', '.join(shown)})."
    )
    not_shown = [entry for entry in entries if entry.id not in result.reproducible]
    lines.append(f"- **Not reproduced here**: {len(not_shown)} entries (reasons below).")
    lines.append("")
    servers = sorted({entry.server for entry in entries})
    for server in servers:
        mine = [entry for entry in entries if entry.server == server]
        releases = sorted({c.release for c in cells if c.server == server}, key=_sort_key)
        lines += [f"## {server}", ""]
        if not releases:
            lines += ["(no release played)", ""]
            continue
        lines.append("| entry | reported | affected | fixed | " + " | ".join(releases) + " |")
        lines.append("|---|---|---|---|" + "---|" * len(releases))
        for entry in mine:
            row = {c.release: c for c in cells if c.entry == entry.id}
            marks = [_mark(row[release]) if release in row else "-" for release in releases]
            lines.append(
                f"| `{entry.id}` {entry.title} | {entry.source} | `{entry.affected}` | {entry.fixed or 'none'} | "
                + " | ".join(marks)
                + " |"
            )
        lines.append("")
    lines += ["## Why", ""]
    for entry in entries:
        # One line per verdict and reason, with the releases it holds for.
        groups: dict[tuple[str, str], list[str]] = {}
        for item in sorted((c for c in cells if c.entry == entry.id), key=lambda c: _sort_key(c.release)):
            if item.status == CLEAN and item.expected != HAS_IT:
                continue
            why = item.reason or ("no check of " + ", ".join(entry.checks) + " failed")
            groups.setdefault((_mark(item), why), []).append(f"{item.release} ({item.expected})")
        for (mark, why), releases in groups.items():
            lines.append(f"- `{entry.id}` on {', '.join(releases)}: {mark}; {why}")
    if result.misses:
        lines += ["", "## Misses", ""]
        lines += [f"- `{name}`: {why}" for name, why in result.misses.items()]
    return "\n".join(lines) + "\n"


def render_listing(entries: list[BugEntry]) -> list[str]:
    """``harness bugs`` without --servers: one line per entry."""
    lines = []
    for entry in entries:
        fixed = entry.fixed or "no fix known"
        state = f"  [not reproducible here: {entry.not_reproducible}]" if entry.not_reproducible else ""
        lines.append(
            f"{entry.server:18} {entry.id:36} {entry.source:34} affected {entry.affected:18} fixed {fixed:12} "
            f"checks {', '.join(entry.checks)}{state}"
        )
    return lines
