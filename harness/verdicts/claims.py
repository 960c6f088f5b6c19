"""Claim verification: read a README's comparison table (Metric | old server | new server |
Improvement) and give each row a verdict against a run: confirmed, refuted, not comparable or not
measured, with the measured value and the reason.

The tolerance rule (TOLERANCE = 2): a claimed speed-up of N x is *confirmed* when the ratio measured
in the run (same model, same machine, medians) is at least N / 2, and *refuted* below that (always
when the new server was slower). A claimed slow-down of N x is confirmed when the measured ratio is
at most 2 / N. Absolute times in a claim come from another machine (and often another model), so
they are never compared with the run's times: only the ratio they imply is. A claim the run cannot
measure like-for-like (a server or a measurement missing, no figure in the claim) is *not
comparable*; a row about something no run measures (code size, packaging) is *not measured*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.analysis.summary import ALL, Summary
from harness.core.errors import ConfigError
from harness.core.formatting import fmt_bytes, fmt_value, is_nan
from harness.verdicts.gate import missing_ratio_reason

TOLERANCE = 2.0

CONFIRMED, REFUTED, NOT_COMPARABLE, NOT_MEASURED = "confirmed", "refuted", "not comparable", "not measured"

_SEPARATOR = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_RATIO = re.compile(r"(\d+(?:\.\d+)?)\s*[x×]\s*(faster|quicker|slower|higher|lower|more|less|better|worse)?", re.I)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|milliseconds?|msec|s|secs?|seconds?|min|mins|minutes?)\b", re.I)
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(KB|MB|GB|KiB|MiB|GiB|bytes|B)\b", re.I)
_NEGATIVE = re.compile(r"❌|✗|\b(broken|none|no|not|never|missing|fails?|failed|disabled)\b", re.I)
_POSITIVE = re.compile(r"✅|✓|✔|\b(working|works|yes|enabled|reused?|ok)\b", re.I)
_FILE_KINDS = ("safetensors", "npz", "gguf", "bin", "pt", "pkl", "json", "arrow")


@dataclass
class ClaimTable:
    source: str
    line: int  # 1-based line of the header
    header: list[str]
    rows: list[list[str]]


@dataclass
class ClaimVerdict:
    metric: str
    claimed: str
    measured: str
    verdict: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {
            "metric": self.metric,
            "claimed": self.claimed,
            "measured": self.measured,
            "verdict": self.verdict,
            "reason": self.reason,
        }


@dataclass
class ClaimsReport:
    table: ClaimTable
    reference: str
    server: str
    columns: dict[str, str]  # README column header -> run server (and how it was matched)
    verdicts: list[ClaimVerdict]
    notes: list[str] = field(default_factory=list)


# --- reading the table --------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


def find_tables(text: str) -> list[tuple[int, list[str], list[list[str]]]]:
    """Every pipe table outside fenced code blocks: (header line number, header, rows)."""
    lines = text.splitlines()
    tables, fence, i = [], None, 0
    while i < len(lines):
        stripped = lines[i].strip()
        marker = stripped[:3]
        if marker in ("```", "~~~"):
            fence = None if fence == marker else (fence or marker)
        elif (
            fence is None
            and "|" in stripped
            and i + 1 < len(lines)
            and _SEPARATOR.match(lines[i + 1].strip())
            and not lines[i].startswith("    ")
        ):
            header, rows, j = _cells(stripped), [], i + 2
            while j < len(lines) and lines[j].strip().startswith("|"):
                rows.append(_cells(lines[j]))
                j += 1
            tables.append((i + 1, header, rows))
            i = j
            continue
        i += 1
    return tables


def parse_claims_table(text: str, source: str = "README") -> ClaimTable:
    """The claims table: the first one whose first column is headed Metric/Claim, else the first
    table with at least three columns."""
    tables = find_tables(text)
    chosen = next((t for t in tables if re.search(r"metric|claim", t[1][0], re.I)), None)
    chosen = chosen or next((t for t in tables if len(t[1]) >= 3), None)
    if chosen is None or not chosen[2]:
        found = f"{len(tables)} table(s), none with a 'Metric' column and rows" if tables else "no markdown table"
        raise ConfigError(
            f"{source}: {found}. Expected a table like `| Metric | <old server> | <new server> | Improvement |` "
            "followed by `|---|---|---|---|` and one row per claim."
        )
    line, header, rows = chosen
    if len(header) < 3:
        raise ConfigError(
            f"{source} line {line}: the claims table needs at least three columns "
            "(Metric, old server, new server); it has " + str(len(header)) + "."
        )
    return ClaimTable(source, line, header, [r + [""] * (len(header) - len(r)) for r in rows])


def _plain(cell: str) -> str:
    return re.sub(r"(\*\*|__|`)", "", cell).strip()


# --- figures in a claim ------------------------------------------------------------------------


def parse_ratio(text: str) -> float | None:
    """'**15x faster**' -> 15.0, '2x slower' -> 0.5; None when the cell gives no factor."""
    match = _RATIO.search(_plain(text))
    if not match:
        return None
    value = float(match.group(1))
    if value <= 0:
        return None
    word = (match.group(2) or "").lower()
    return 1 / value if word in ("slower", "lower", "less", "worse") else value


def parse_seconds(text: str) -> float | None:
    """'~50 seconds' -> 50.0, '**~0.55 seconds**' -> 0.55, '500 ms' -> 0.5, '2 min' -> 120."""
    match = _DURATION.search(_plain(text))
    if not match:
        return None
    value, unit = float(match.group(1)), match.group(2).lower()
    if unit.startswith("m") and unit not in ("min", "mins") and not unit.startswith("minute"):
        return value / 1000
    return value * 60 if unit.startswith("min") else value


def parse_bytes(text: str) -> float | None:
    match = _SIZE.search(_plain(text))
    if not match:
        return None
    unit = match.group(2).upper()
    scale = {"B": 1, "BYTES": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    return float(match.group(1)) * scale[unit]


def sentiment(text: str) -> bool | None:
    """True for a cell claiming it works (✅ Working), False for ❌ Broken / None created, else None."""
    plain = _plain(text)
    if _NEGATIVE.search(plain):
        return False
    if _POSITIVE.search(plain):
        return True
    return None


def row_kind(metric: str) -> str | None:
    m = metric.lower()
    if "first" in m:
        return "speedup_first"
    if re.search(r"follow.?up|subsequent|warm", m):
        return "speedup_follow_up"
    if "restart" in m:
        return "speedup_restart"
    if re.search(r"decode|tok/s|tokens?/s|throughput|generation speed", m):
        return "speedup_decode"
    if re.search(r"cache (files?|size)|on disk|disk", m):
        return "cache_files"
    if "cache" in m:
        return "cache_reuse"
    return None


# --- matching README columns to the run's servers -----------------------------------------------


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def map_columns(
    header: list[str], summary: Summary, meta: dict[str, Any], reference: str | None, server: str | None
) -> tuple[int, int, int | None, dict[str, str]]:
    """(old column, new column, improvement column or None, header -> server description)."""
    improvement = next(
        (i for i, h in enumerate(header) if i and re.search(r"improv|speed.?up|gain|change|factor|ratio", h, re.I)),
        None,
    )
    server_cols = [i for i in range(1, len(header)) if i != improvement]
    if len(server_cols) < 2:
        raise ConfigError(
            "the claims table needs two server columns (old and new) besides Metric and "
            f"Improvement; its header is {header}."
        )
    labels = {s: ((meta.get("servers") or {}).get(s) or {}).get("label") or s for s in summary.servers}
    ref = reference or summary.reference
    new = server or (summary.others[0] if summary.others else None)
    by_name: dict[str, int] = {}
    for col in server_cols:
        for s in summary.servers:
            if _norm(header[col]) and _norm(header[col]) in (_norm(s), _norm(labels[s])):
                by_name[s] = col
    old_named = by_name.get(ref)
    new_named = by_name.get(new) if new is not None else None
    rest = [c for c in server_cols if c not in (old_named, new_named)]
    old_col = rest.pop(0) if old_named is None else old_named
    new_col = rest.pop(0) if new_named is None else new_named
    how = {
        old_col: "matched by name" if old_named == old_col else "by position",
        new_col: "matched by name" if new_named == new_col else "by position",
    }
    columns = {
        header[old_col]: f"{ref} (reference, {how[old_col]})",
        header[new_col]: f"{new or '(no new server in the run)'} ({how[new_col]})",
    }
    return old_col, new_col, improvement, columns


# --- verdicts ----------------------------------------------------------------------------------


def ratio_verdict(claimed: float, measured: float, tolerance: float = TOLERANCE) -> str:
    if claimed >= 1:
        return CONFIRMED if measured >= claimed / tolerance else REFUTED
    return CONFIRMED if measured <= claimed * tolerance else REFUTED


def _fmt_ratio(x: float) -> str:
    return f"{x:.3g}x" if x >= 1 else f"{1 / x:.3g}x slower"


def _latency_claim(
    kind: str,
    cells: tuple[str, str, str],
    summary: Summary,
    ref: str,
    new: str | None,
    scenario: str | None,
    tolerance: float,
) -> tuple[str, str, str]:
    old_cell, new_cell, impr_cell = cells
    claimed = parse_ratio(impr_cell)
    how = "the Improvement column"
    old_s, new_s = parse_seconds(old_cell), parse_seconds(new_cell)
    if kind == "speedup_decode":
        old_s = new_s = None  # rates are not durations
    if claimed is None and old_s and new_s:
        claimed, how = old_s / new_s, "the two times given"
    if claimed is None:
        return "–", NOT_COMPARABLE, "the claim gives no factor and no pair of times to form one"
    metric = {
        "speedup_first": "first_total_s",
        "speedup_follow_up": "follow_up_total_s",
        "speedup_restart": "restart_total_s",
        "speedup_decode": "decode_tok_s",
    }[kind]
    claim_text = f"claimed {_fmt_ratio(claimed)} (from {how})"
    if old_s and new_s:
        claim_text += (
            f"; its absolute times ({fmt_value(old_s)} -> {fmt_value(new_s)}) come from another "
            "machine (and possibly another model), so only the ratio is compared"
        )
    if scenario is None or new is None:
        return "–", NOT_COMPARABLE, f"{claim_text}; the run has no {'new server' if new is None else 'scenario'}"
    found = summary.ratio(scenario, new, kind)
    if found is None or is_nan(found.get("ratio")):
        return (
            "–",
            NOT_COMPARABLE,
            (
                f"{claim_text}; the run cannot form this ratio on {scenario}: "
                f"{missing_ratio_reason(summary, scenario, new, kind)}"
            ),
        )
    m = float(found["ratio"])
    unit = "tok/s" if kind == "speedup_decode" else "s"
    ref_med = summary.stat(scenario, ref, metric)["median"]
    new_med = summary.stat(scenario, new, metric)["median"]
    ci = "" if is_nan(found.get("ci95_low")) else f", 95% CI {found['ci95_low']:.2f}–{found['ci95_high']:.2f}"
    measured = (
        f"{_fmt_ratio(m)} ({ref} {fmt_value(ref_med, unit)} -> {new} {fmt_value(new_med, unit)}, "
        f"medians of {found['n_reference']}/{found['n']}{ci})"
    )
    verdict = ratio_verdict(claimed, m, tolerance)
    need = f">= {claimed / tolerance:.3g}x" if claimed >= 1 else f"<= {claimed * tolerance:.3g}x"
    reason = f"{claim_text}; confirming needs {need} measured (tolerance {tolerance:g}x)"
    if m < 1 <= claimed:
        reason += f"; {new} was slower than {ref} here"
    prompt = summary.frame.loc[summary.frame["scenario"] == scenario, "prompt_tokens"].dropna()
    if len(prompt) and kind != "speedup_decode":
        reason += (
            f"; this run's prompts: {prompt.median():.0f} tokens (median; a cache's speed-up grows with "
            "prompt length and model size)"
        )
    tokens = {s: summary.stat(scenario, s, "completion_tokens")["median"] for s in (ref, new)}
    if not any(is_nan(t) or t <= 0 for t in tokens.values()) and max(tokens.values()) > 1.5 * min(tokens.values()):
        reason += (
            f"; caveat: not like-for-like output lengths ({ref} {tokens[ref]:.0f} vs {new} "
            f"{tokens[new]:.0f} tokens per request, median)"
        )
    return measured, verdict, reason


def _cache_files_claim(
    cells: tuple[str, str, str], summary: Summary, ref: str, new: str | None
) -> tuple[str, str, str]:
    checks, measured, reasons = [], [], []
    for side, cell in ((ref, cells[0]), (new, cells[1])):
        claim_none = sentiment(cell) is False
        kinds = [k for k in _FILE_KINDS if re.search(rf"\b{k}\b", cell, re.I)]
        size = parse_bytes(cell)
        if not claim_none and not kinds and size is None:
            continue
        if side is None or side not in summary.servers:
            return "–", NOT_COMPARABLE, f"the run has no rows for the server in column '{cell}'"
        cache = summary.cache_for(side, ALL)
        files, got_kinds = int(cache.get("files_created") or 0), list(cache.get("kinds") or [])
        size_text = fmt_bytes(cache.get("bytes_created") or cache.get("bytes_total_end"))
        measured.append(f"{side}: {files} files" + (f", {size_text} ({', '.join(got_kinds)})" if files else ""))
        if claim_none:
            checks.append(files == 0)
            reasons.append(f"{side} claimed none: {'none' if files == 0 else files} created")
            continue
        ok = files > 0 and all(f".{k}" in got_kinds for k in kinds)
        checks.append(ok)
        text = f"{side} claimed {' '.join(kinds) or 'files'}" + (f" of {fmt_bytes(size)}" if size else "")
        text += f": {'created' if ok else 'not created'}"
        if size and ok:
            text += (
                f" ({size_text} here; the size depends on the model and the prompt length, "
                "so it is reported, not compared)"
            )
        reasons.append(text)
    if not checks:
        return "–", NOT_COMPARABLE, "the claim names no file kind, size or absence to check"
    return "; ".join(measured), CONFIRMED if all(checks) else REFUTED, "; ".join(reasons)


def _cache_reuse_claim(
    cells: tuple[str, str, str], summary: Summary, ref: str, new: str | None
) -> tuple[str, str, str]:
    checks, measured, reasons = [], [], []
    for side, cell in ((ref, cells[0]), (new, cells[1])):
        claim = sentiment(cell)
        if claim is None:
            continue
        if side is None or side not in summary.servers:
            return "–", NOT_COMPARABLE, f"the run has no rows for the server in column '{cell}'"
        cache = summary.cache_for(side, ALL)
        seen, known, follow = (int(cache.get(k) or 0) for k in ("reuse_seen", "reuse_known", "follow_ups"))
        files = int(cache.get("files_created") or 0)
        measured.append(f"{side}: reuse on {seen}/{follow} follow-ups ({known} reported), {files} cache files")
        if not follow:
            return "; ".join(measured), NOT_COMPARABLE, f"{side} had no successful follow-up request to observe"
        if not known and (claim or files):
            # Silence is evidence of "broken" only when no cache file was written either.
            return "; ".join(measured), NOT_COMPARABLE, f"{side} does not report cache reuse (log or usage)"
        works = seen > 0
        checks.append(works == claim)
        evidence = "reuse seen" if works else ("no reuse reported" if known else "no reuse reported, no cache file")
        reasons.append(f"{side} claimed {'working' if claim else 'broken'}: {evidence}")
    if not checks:
        return "–", NOT_COMPARABLE, "the claim says neither working nor broken"
    return "; ".join(measured), CONFIRMED if all(checks) else REFUTED, "; ".join(reasons)


def verify_claims(
    table: ClaimTable,
    summary: Summary,
    meta: dict[str, Any],
    *,
    reference: str | None = None,
    server: str | None = None,
    scenario: str | None = None,
    tolerance: float = TOLERANCE,
) -> ClaimsReport:
    if tolerance < 1:
        raise ConfigError(f"--tolerance must be >= 1 (a factor), not {tolerance}.")
    old_col, new_col, impr_col, columns = map_columns(table.header, summary, meta, reference, server)
    ref = reference or summary.reference
    new = server or (summary.others[0] if summary.others else None)
    for name, label in (("reference", ref), ("server", new)):
        if label is not None and summary.servers and label not in summary.servers:
            raise ConfigError(f"--{name} {label}: no such server in the run (servers: {', '.join(summary.servers)}).")
    scenario = scenario or summary.headline
    if scenario is not None and summary.scenarios and scenario not in summary.scenarios:
        raise ConfigError(f"--scenario {scenario}: not in the run (scenarios: {', '.join(summary.scenarios)}).")
    verdicts = []
    for row in table.rows:
        metric = _plain(row[0])
        cells = (row[old_col], row[new_col], row[impr_col] if impr_col is not None else "")
        claimed = f"{_plain(cells[0])} -> {_plain(cells[1])}" + (f" ({_plain(cells[2])})" if cells[2] else "")
        kind = row_kind(metric)
        if kind is None:
            verdicts.append(
                ClaimVerdict(
                    metric, claimed, "–", NOT_MEASURED, f"the harness does not measure '{metric}'; not guessed"
                )
            )
            continue
        if kind == "cache_files":
            measured, verdict, reason = _cache_files_claim(cells, summary, ref, new)
        elif kind == "cache_reuse":
            measured, verdict, reason = _cache_reuse_claim(cells, summary, ref, new)
        else:
            measured, verdict, reason = _latency_claim(kind, cells, summary, ref, new, scenario, tolerance)
        verdicts.append(ClaimVerdict(metric, claimed, measured, verdict, reason))
    model = (meta.get("model") or {}).get("name") or "the run's model"
    notes = [
        f"Measured on {model}, scenario {scenario or '–'}, {ref} vs {new or '–'} in run "
        f"{meta.get('run_id', '?')}. Absolute times in a claim may come from another machine or model: "
        "they are compared as ratios only."
    ]
    if meta.get("status") and meta["status"] != "complete":
        notes.append(f"The run is {meta['status']}: verdicts use only the requests it recorded.")
    return ClaimsReport(table, ref, new or "", columns, verdicts, notes)


def report_markdown(report: ClaimsReport) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        f"Claims from {report.table.source} (table at line {report.table.line}); columns: "
        + ", ".join(f"'{k}' -> {v}" for k, v in report.columns.items())
        + ".",
        *report.notes,
        f"Rule: a claimed N x is confirmed when the measured ratio is >= N/{TOLERANCE:g} "
        "(see harness/verdicts/claims.py).",
        "",
        "| Claim | Claimed | Measured (this run) | Verdict | Reason |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {cell(v.metric)} | {cell(v.claimed)} | {cell(v.measured)} | **{v.verdict}** | {cell(v.reason)} |"
        for v in report.verdicts
    ]
    counts = {
        k: sum(v.verdict == k for v in report.verdicts) for k in (CONFIRMED, REFUTED, NOT_COMPARABLE, NOT_MEASURED)
    }
    lines += ["", "Verdicts: " + ", ".join(f"{n} {k}" for k, n in counts.items())]
    return "\n".join(lines)


def read_claims(path: str | Path) -> ClaimTable:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist. Pass a markdown file with a claims table.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}. Pass a UTF-8 markdown file.") from None
    return parse_claims_table(text, str(path))


__all__ = [
    "TOLERANCE",
    "parse_claims_table",
    "parse_ratio",
    "parse_seconds",
    "ratio_verdict",
    "read_claims",
    "report_markdown",
    "sentiment",
    "verify_claims",
]
