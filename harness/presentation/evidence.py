"""The evidence sections of a report: which request shape fails on which server, each failing request
a reader can open (the request, the raw answer with one SSE event per line, the evidence of each
failed check, the curl line that replays it), and the catalogue entries of every check the report
names. Check names anywhere in the report link to those entries, inside the same page, so the
report opens offline from the run folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.summary import Summary, row_failures
from harness.checks import catalogue
from harness.checks.exchange import REJECTED
from harness.core.formatting import is_nan
from harness.core.sse import LINE_END
from harness.presentation.render import FoldOut
from harness.run.captures import read_capture

MAX_FAILING_SHOWN = 150  # failing requests opened in the report; the rest are in captures/
MAX_STRING_CHARS = 1500  # a longer string of a shown request is cut (the capture keeps it whole)
MAX_EVENTS_SHOWN = 80  # SSE events shown of one answer: the first ones and the last few
MAX_BODY_CHARS = 8000
CHECKS_SHOWN_IN_A_CELL = 3

# The order in which a row's failures are named: what broke the exchange or the calls first, the
# chunk-shape details (which the legacy server fails on every request) last.
_FAMILY_RANK = ["http", "runaway", "request", "stop", "tool", "param", "expect", "stream", "schema"]


def _rank(name: str) -> tuple[int, int]:
    family = name.split(".")[0]
    place = _FAMILY_RANK.index(family) if family in _FAMILY_RANK else len(_FAMILY_RANK)
    return (place, int(name.startswith("stream.chunk_")))


def ordered(failures: list[str]) -> list[str]:
    return sorted(dict.fromkeys(failures), key=_rank)


def _present(value: Any) -> bool:
    return value is not None and not is_nan(value) and value != ""


def _notes(row: Any) -> list[str]:
    notes = row["check_notes"]
    return list(notes) if isinstance(notes, (list, tuple)) else []


def _status(row: Any) -> str:
    return f"HTTP {int(row['http_status'])}" if _present(row["http_status"]) else "no HTTP status"


def _is_shown(row: Any) -> bool:
    return bool(row_failures(row)) or REJECTED in _notes(row)


def evidence_rows(summary: Summary) -> pd.DataFrame:
    """The requests a reader needs to see: those failing a check, and the clear rejections."""
    frame = summary.frame
    if frame.empty:
        return frame
    live = frame[frame["request_kind"] != "warmup"]
    return live[live.apply(_is_shown, axis=1)] if not live.empty else live


def _mode(variant: str) -> str:
    return variant.replace("tool_choice=", "") or "default"


def row_cell(row: Any, everywhere: frozenset[str] = frozenset()) -> str:
    """One request's outcome in a few words: PASS, rejected, or the status and the first checks;
    ``everywhere``: checks left out because the server fails them on every request of the mode."""
    all_failures = ordered(row_failures(row))
    failures = [name for name in all_failures if name not in everywhere]
    if not all_failures:
        if REJECTED in _notes(row):
            message = str((row["check_evidence"] or {}).get(REJECTED, _status(row)))
            return f"rejected ({message[:80]})"
        return "PASS"
    if not failures:
        return "only the checks it fails on every request"
    shown = ", ".join(f"`{name}`" for name in failures[:CHECKS_SHOWN_IN_A_CELL])
    more = len(failures) - CHECKS_SHOWN_IN_A_CELL
    return f"{_status(row)}: {shown}" + (f" (+{more})" if more > 0 else "")


def failed_everywhere(frame: pd.DataFrame) -> dict[tuple[str, str, str], frozenset[str]]:
    """(server, scenario, variant) -> the checks failed on every one of its requests (at least two),
    such as the legacy server's missing ``id``: said once, not in every cell of the shapes table."""
    out: dict[tuple[str, str, str], frozenset[str]] = {}
    for key, part in frame.groupby(["server", "scenario", "variant"], sort=False):
        sets = [set(row_failures(row)) for _, row in part.iterrows()]
        common = set.intersection(*sets) if len(sets) > 1 else set()
        if common:
            out[(str(key[0]), str(key[1]), str(key[2]))] = frozenset(common)
    return out


def _named_rows(summary: Summary) -> pd.DataFrame:
    frame = summary.frame
    if frame.empty or "turn_name" not in frame or not frame["turn_name"].map(_present).any():
        return pd.DataFrame()
    live = frame[frame["request_kind"] != "warmup"]
    scenarios = set(live.loc[live["turn_name"].map(_present), "scenario"])
    return live[live["scenario"].isin(scenarios)]


def shapes_frame(summary: Summary) -> pd.DataFrame:
    """Scenario | Turn | Shape | one column per server: each named turn's outcome in every mode,
    leaving out the checks a server fails on every request of the mode (``shapes_note`` lists them)."""
    rows = _named_rows(summary)
    if rows.empty:
        return pd.DataFrame()
    everywhere = failed_everywhere(rows)
    records = []
    named = rows[rows["turn_name"].map(_present)]
    for (scenario, turn, name), part in named.groupby(["scenario", "turn", "turn_name"], sort=False):
        record: dict[str, Any] = {"Scenario": scenario, "Turn": int(turn), "Shape": name}
        for server in summary.servers:
            mine = part[part["server"] == server].sort_values(["variant", "repeat", "started_at"])
            if mine.empty:
                record[server] = "not run"
                continue
            cells = [
                (_mode(r["variant"]), row_cell(r, everywhere.get((server, scenario, r["variant"]), frozenset())))
                for _, r in mine.iterrows()
            ]
            if all(cell == "PASS" for _, cell in cells):
                record[server] = "PASS"
            else:
                record[server] = "; ".join(f"{mode}: {cell}" for mode, cell in cells)
        records.append(record)
    return pd.DataFrame(records).sort_values(["Scenario", "Turn"], kind="stable").reset_index(drop=True)


def shapes_note(summary: Summary) -> list[str]:
    """The checks each server fails on every request of a scenario mode, left out of the table."""
    rows = _named_rows(summary)
    if rows.empty:
        return []
    return [
        f"{server} · {scenario} [{variant}]: " + ", ".join(f"`{name}`" for name in ordered(list(names)))
        for (server, scenario, variant), names in failed_everywhere(rows).items()
    ]


# --- failing requests --------------------------------------------------------------------------


def _cut_strings(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        return value[: MAX_STRING_CHARS // 2] + f" … [{len(value) - MAX_STRING_CHARS // 2:,} more characters]"
    if isinstance(value, list):
        return [_cut_strings(item) for item in value]
    if isinstance(value, dict):
        return {key: _cut_strings(item) for key, item in value.items()}
    return value


def request_text(raw: bytes) -> str:
    """The request body, indented, with very long strings cut (the capture has the exact bytes)."""
    try:
        return json.dumps(_cut_strings(json.loads(raw)), indent=2, ensure_ascii=False)
    except ValueError:
        return raw.decode("utf-8", errors="replace")[:MAX_BODY_CHARS]


def answer_text(raw: bytes, stream: bool) -> str:
    """The raw answer: a stream one event (``data:`` line) per line, a body as it came."""
    text = raw.decode("utf-8", errors="replace")
    if not text:
        return "(no bytes)"
    if not stream:
        return text if len(text) <= MAX_BODY_CHARS else text[:MAX_BODY_CHARS] + f" … [{len(text):,} characters]"
    lines = [line for line in LINE_END.split(text) if line.strip()]
    if len(lines) > MAX_EVENTS_SHOWN:
        tail = 8
        skipped = len(lines) - MAX_EVENTS_SHOWN
        lines = [*lines[: MAX_EVENTS_SHOWN - tail], f"… {skipped} more lines …", *lines[-tail:]]
    return "\n".join(lines)


def _where(row: Any) -> str:
    name = f" `{row['turn_name']}`" if _present(row["turn_name"]) else ""
    extra = "".join(
        part
        for part, shown in (
            (f" repeat {int(row['repeat'])}", row["repeat"]),
            (f" session {int(row['session'])}", row["session"]),
        )
        if shown
    )
    return f"**{row['server']}** · {row['scenario']} [{row['variant']}] turn {int(row['turn'])}{name}{extra}"


def failing_requests(summary: Summary, run_dir: Path) -> list[FoldOut]:
    folds = []
    for number, (_, row) in enumerate(evidence_rows(summary).head(MAX_FAILING_SHOWN).iterrows(), 1):
        failures = ordered(row_failures(row))
        evidence = row["check_evidence"] or {}
        named = ", ".join(f"`{name}`" for name in failures[:4]) + (
            f" (+{len(failures) - 4})" if len(failures) > 4 else ""
        )
        verdict = named or row_cell(row)
        parts: list[tuple[str, str, str]] = []
        lines = []
        for name in failures + [note for note in _notes(row) if note == REJECTED]:
            detail = evidence.get(name) or (row["error"] if name == "request.error" else "")
            lines.append(f"`{name}`" + (f": {detail}" if detail else ""))
        parts.append(("Evidence", "list", "\n".join(lines)))
        capture = read_capture(run_dir, row["capture"]) if _present(row["capture"]) else None
        if capture is not None:
            parts.append(("Request (as sent; long strings cut here)", "pre", request_text(capture.request)))
            parts.append(("Raw answer", "pre", answer_text(capture.response, bool(row["stream"]))))
            parts.append(("Replay (from the run folder, against a server on the same model)", "pre", capture.curl))
            tail = f"capture `{row['capture']}`"
        else:
            parts.append(("Capture", "text", "none kept for this request (a run from before captures existed)"))
            tail = ""
        folds.append(
            FoldOut(
                summary=f"{_where(row)}: {_status(row)}, {verdict}",
                parts=parts,
                anchor=f"request-{number}",
                md_tail=tail,
            )
        )
    return folds


# --- the checks named in the report ------------------------------------------------------------


def named_checks(summary: Summary) -> list[str]:
    """Every check and note the report names, in catalogue order."""
    names: set[str] = set()
    rows = evidence_rows(summary)
    for _, row in rows.iterrows():
        names.update(row_failures(row))
        names.update(note for note in _notes(row) if note == REJECTED)
    for verdict in summary.verdicts.values():
        names.update(r.check for r in verdict.regressions)
    known = [doc.name for doc in catalogue.CHECKS if doc.name in names]
    return known + sorted(names - set(known))


def link_checks(text: str, names: list[str]) -> str:
    """``text`` with each of ``names`` (bare or in backticks) linked to its entry in the page."""
    if not names or not isinstance(text, str):
        return text
    pattern = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    regex = re.compile(rf"(?<![\w.#\[/-])(`?)({pattern})\1(?![\w-])")
    return regex.sub(lambda m: f"[{m[1]}{m[2]}{m[1]}](#{m[2]})", text)


def linked(blocks: list[tuple], names: list[str]) -> list[tuple]:
    """The blocks with check names linked (headings, code and catalogue entries left as they are)."""
    documented = [name for name in names if catalogue.entry(name) is not None]
    out: list[tuple] = []
    for kind, payload in blocks:
        if kind == "p":
            payload = link_checks(payload, documented)
        elif kind == "ul":
            payload = [link_checks(item, documented) for item in payload]
        elif kind == "table" and not payload.empty:
            payload = payload.map(lambda v: link_checks(v, documented) if isinstance(v, str) else v)
        elif kind == "details":
            payload = [
                FoldOut(
                    summary=link_checks(fold.summary, documented),
                    parts=[(label, k, c if k == "pre" else link_checks(c, documented)) for label, k, c in fold.parts],
                    anchor=fold.anchor,
                    md_tail=fold.md_tail,
                )
                for fold in payload
            ]
        out.append((kind, payload))
    return out


def evidence_blocks(summary: Summary, run_dir: Path) -> list[tuple]:
    """ "Failing requests" and "Checks in this report"; empty when no request failed."""
    folds = failing_requests(summary, run_dir)
    if not folds:
        return []
    total = len(evidence_rows(summary))
    intro = (
        f"{total} request(s) failed a check or were refused; open one to see what was sent, what came "
        "back and why it fails. Each is kept under `captures/` in the run folder (exact request, raw "
        "answer, a `curl` line to replay it)."
    )
    if total > len(folds):
        intro += f" The first {len(folds)} are shown here."
    blocks: list[tuple] = [("h2", "Failing requests"), ("p", intro), ("details", folds)]
    docs = [doc for name in named_checks(summary) if (doc := catalogue.entry(name)) is not None]
    if docs:
        blocks += [
            ("h2", "Checks in this report"),
            (
                "p",
                "What each check named above means, why a client cares, and a minimal failing answer "
                "(the whole catalogue: docs/checks.md).",
            ),
        ]
        blocks += [("check", doc) for doc in docs]
    return blocks
