"""Claim verification: every claim of a markdown file (a README's comparison table, bullet points,
sentences; found by ``harness.verdicts.claim_text``) gets a verdict against a run: confirmed,
refuted, not comparable or not measured, with the measured value and the reason.

The tolerance rule (TOLERANCE = 2): a claimed speed-up of N x is *confirmed* when the ratio measured
in the run (same model, same machine, medians) is at least N / 2, and *refuted* below that (always
when the new server was slower). A claimed slow-down of N x is confirmed when the measured ratio is
at most 2 / N. Absolute times in a claim come from another machine (and often another model), so
they are never compared with the run's times: only the ratio they imply is, and a claim that gives
one absolute time and nothing to compare it with is *not comparable*. Ratios are taken against the
like-for-like reference when the run has one (the legacy server with max_tokens honoured), and the
ratio against the reference as deployed is shown next to it. A claim the run cannot measure
like-for-like (a server or a measurement missing, no figure in the claim, a wording that could mean
two metrics) is *not comparable*; a claim about something no run measures (code size, packaging) is
*not measured*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.analysis.summary import ALL, RATIOS, Summary
from harness.core.errors import ConfigError, read_user_file
from harness.core.formatting import fmt_bytes, fmt_value, is_nan
from harness.verdicts.attribution import BOTH, NEW, OLD, Attribution, Names, attribute
from harness.verdicts.capabilities import judge, run_with
from harness.verdicts.claim_text import (
    CAPABILITIES,
    CAPABILITY_NAMES,
    DURATION,
    RATIO,
    SIZE,
    TABLE,
    Claim,
    ClaimSet,
    Skipped,
    capability_claimed,
    classify,
    dialects,
    parse_claims,
    plain,
    sentiment,
    speaks_of_time,
)
from harness.verdicts.gate import missing_ratio_reason

TOLERANCE = 2.0

CONFIRMED, REFUTED, NOT_COMPARABLE, NOT_MEASURED = "confirmed", "refuted", "not comparable", "not measured"
VERDICTS = (CONFIRMED, REFUTED, NOT_COMPARABLE, NOT_MEASURED)

_FILE_KINDS = ("safetensors", "npz", "gguf", "bin", "pt", "pkl", "json", "arrow")


@dataclass
class ClaimVerdict:
    metric: str
    claimed: str
    measured: str
    verdict: str
    reason: str
    line: int = 0
    form: str = TABLE
    about: str = ""  # whose claim it is, and what that rests on

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "form": self.form,
            "about": self.about,
            "metric": self.metric,
            "claimed": self.claimed,
            "measured": self.measured,
            "verdict": self.verdict,
            "reason": self.reason,
        }


@dataclass
class ClaimsReport:
    source: str
    reference: str
    server: str
    columns: dict[str, str]  # README column header -> run server (and how it was matched)
    verdicts: list[ClaimVerdict]
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- figures in a claim ------------------------------------------------------------------------


def parse_ratio(text: str) -> float | None:
    """'**15x faster**' -> 15.0, '2x slower' -> 0.5; None when the cell gives no factor."""
    match = RATIO.search(plain(text))
    if not match:
        return None
    value = float(match.group(1))
    if value <= 0:
        return None
    word = (match.group(2) or "").lower()
    return 1 / value if word in ("slower", "lower", "less", "worse") else value


def parse_seconds(text: str) -> float | None:
    """'~50 seconds' -> 50.0, '**~0.55 seconds**' -> 0.55, '500 ms' -> 0.5, '2 min' -> 120."""
    match = DURATION.search(plain(text))
    if not match:
        return None
    value, unit = float(match.group(1)), match.group(2).lower()
    if unit.startswith("m") and unit not in ("min", "mins") and not unit.startswith("minute"):
        return value / 1000
    return value * 60 if unit.startswith("min") else value


def parse_bytes(text: str) -> float | None:
    match = SIZE.search(plain(text))
    if not match:
        return None
    unit = match.group(2).upper()
    scale = {"B": 1, "BYTES": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    return float(match.group(1)) * scale[unit]


# --- matching README columns to the run's servers -----------------------------------------------


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def default_server(summary: Summary) -> str | None:
    """The new server a claim is about: the first server under test (not the like-for-like aid)."""
    servers = summary.candidates or summary.others
    return servers[0] if servers else None


def map_columns(
    header: list[str], summary: Summary, meta: dict[str, Any], reference: str | None, server: str | None
) -> tuple[int, int, int | None, dict[str, str]]:
    """(old column, new column, improvement column or None, header -> server description)."""
    # The improvement column (the like-for-like one where a table gives both); other ratio columns
    # are no server's.
    ratio_cols = [
        i
        for i, h in enumerate(header)
        if i and re.search(r"improv|speed.?up|gain|change|factor|ratio|like.for.like|as deployed", h, re.I)
    ]
    improvement = next((i for i in ratio_cols if re.search(r"like.for.like", header[i], re.I)), None)
    improvement = improvement if improvement is not None else (ratio_cols[0] if ratio_cols else None)
    server_cols = [i for i in range(1, len(header)) if i not in ratio_cols]
    if len(server_cols) < 2:
        raise ConfigError(
            "the claims table needs two server columns (old and new) besides Metric and "
            f"Improvement; its header is {header}."
        )
    labels = {s: ((meta.get("servers") or {}).get(s) or {}).get("label") or s for s in summary.servers}
    ref = reference or summary.reference
    new = server or default_server(summary)
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


def _ratio_text(found: dict[str, Any], summary: Summary, scenario: str, ref: str, new: str, kind: str) -> str:
    metric = RATIOS[kind][0]
    unit = "tok/s" if metric.endswith("tok_s") else "s"
    ref_med = summary.stat(scenario, ref, metric)["median"]
    new_med = summary.stat(scenario, new, metric)["median"]
    ci = "" if is_nan(found.get("ci95_low")) else f", 95% CI {found['ci95_low']:.2f}–{found['ci95_high']:.2f}"
    return (
        f"{_fmt_ratio(float(found['ratio']))} ({ref} {fmt_value(ref_med, unit)} -> {new} {fmt_value(new_med, unit)}, "
        f"medians of {found['n_reference']}/{found['n']}{ci})"
    )


def _absolute_claim(
    kind: str, text: str, summary: Summary, servers: list[str], scenario: str | None
) -> tuple[str, str, str]:
    """A claim that gives one absolute figure and nothing to compare it with."""
    metric = RATIOS[kind][0]
    unit = "tok/s" if metric.endswith("tok_s") else "s"
    here = ", ".join(
        f"{s} {fmt_value(summary.stat(scenario, s, metric)['median'], unit)}" for s in servers if scenario is not None
    )
    return (
        here or "–",
        NOT_COMPARABLE,
        f"'{plain(text)}' is an absolute figure from another machine (and possibly another model), with no "
        "factor and no before/after to form a ratio from; only ratios are compared"
        + (f" (this run's medians: {here})" if here else ""),
    )


def _latency_claim(
    kind: str,
    cells: tuple[str, str, str],
    summary: Summary,
    ref: str,
    new: str | None,
    scenario: str | None,
    tolerance: float,
    how_factor: str = "the Improvement column",
    turned: bool = False,
) -> tuple[str, str, str]:
    old_cell, new_cell, impr_cell = cells
    claimed = parse_ratio(impr_cell)
    how = how_factor
    if claimed is not None and turned:
        claimed, how = 1 / claimed, how + ", said of the old server and turned round"
    rate = RATIOS[kind][0].endswith("tok_s")
    old_s, new_s = (None, None) if rate else (parse_seconds(old_cell), parse_seconds(new_cell))
    if claimed is None and old_s and new_s:
        claimed, how = old_s / new_s, "the two times given"
    if claimed is None:
        return "–", NOT_COMPARABLE, "the claim gives no factor and no pair of times to form one"
    claim_text = f"claimed {_fmt_ratio(claimed)} (from {how})"
    if old_s and new_s:
        claim_text += (
            f"; its absolute times ({fmt_value(old_s)} -> {fmt_value(new_s)}) come from another "
            "machine (and possibly another model), so only the ratio is compared"
        )
    if scenario is None or new is None:
        return "–", NOT_COMPARABLE, f"{claim_text}; the run has no {'new server' if new is None else 'scenario'}"
    # Like-for-like when the run has it (and the claim is against the reference as deployed).
    fair = summary.headline_reference if ref == summary.reference else ref
    found = summary.ratio(scenario, new, kind, fair)
    if found is None or is_nan(found.get("ratio")):
        why = missing_ratio_reason(summary, scenario, new, kind, fair)
        return "–", NOT_COMPARABLE, f"{claim_text}; the run cannot form this ratio on {scenario}: {why}"
    m = float(found["ratio"])
    measured = _ratio_text(found, summary, scenario, fair, new, kind)
    if fair != ref:
        measured = measured.replace(" (", " like-for-like (", 1)
        deployed = summary.ratio(scenario, new, kind, ref)
        if deployed is not None and not is_nan(deployed.get("ratio")):
            measured += "; as deployed " + _ratio_text(deployed, summary, scenario, ref, new, kind)
    verdict = ratio_verdict(claimed, m, tolerance)
    need = f">= {claimed / tolerance:.3g}x" if claimed >= 1 else f"<= {claimed * tolerance:.3g}x"
    reason = f"{claim_text}; confirming needs {need} measured (tolerance {tolerance:g}x)"
    if fair != ref:
        reason += f", against {fair} (like-for-like: the same output length)"
    if m < 1 <= claimed:
        reason += f"; {new} was slower than {fair} here"
    prompt = summary.frame.loc[summary.frame["scenario"] == scenario, "prompt_tokens"].dropna()
    if len(prompt) and not rate:
        reason += (
            f"; this run's prompts: {prompt.median():.0f} tokens (median; a cache's speed-up grows with "
            "prompt length and model size)"
        )
    tokens = {s: summary.stat(scenario, s, "completion_tokens")["median"] for s in (fair, new)}
    if not any(is_nan(t) or t <= 0 for t in tokens.values()) and max(tokens.values()) > 1.5 * min(tokens.values()):
        reason += (
            f"; caveat: not like-for-like output lengths ({fair} {tokens[fair]:.0f} vs {new} "
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


def _capability_claim(
    kind: str, claim: Claim, sides: dict[str, str], summary: Summary, meta: dict[str, Any], servers: dict[str, str]
) -> tuple[str, str, str]:
    """A capability claim, judged on each server it is said of (``sides``: side -> what is said)."""
    named = dialects(f"{claim.subject} {claim.text}") if kind == "tool_calling" else []
    what = CAPABILITY_NAMES[kind] + (f" ({', '.join(named)})" if named else "")
    verdicts, measured, reasons = [], [], []
    for side, said in sides.items():
        claimed = capability_claimed(said, kind)
        server = servers.get(side)
        if claimed is None or not said:
            continue
        if server is None or server not in summary.servers:
            return "–", NOT_COMPARABLE, f"the run has no rows for the {side} server"
        found = judge(kind, server, summary, meta, named)
        if found.rows:
            measured.append(found.measured)
        claim_words = f"{server} claimed {what} {'working' if claimed else 'broken or missing'}"
        if not found.rows:
            verdicts.append(NOT_MEASURED)
            reasons.append(f"{claim_words}: no request of this run measures it; run with --scenarios "
                           f"{run_with(kind, named)}")  # fmt: skip
        elif found.works is None:
            verdicts.append(NOT_COMPARABLE)
            reasons.append(f"{claim_words}: {found.detail}")
        else:
            verdicts.append(CONFIRMED if found.works == claimed else REFUTED)
            reasons.append(f"{claim_words}: {found.detail}")
        if found.rows and found.unmeasured:
            reasons.append(
                f"{', '.join(found.unmeasured)} not measured on {server}: run with --scenarios "
                + run_with(kind, list(found.unmeasured))
            )
    if not verdicts:
        return "–", NOT_COMPARABLE, f"the claim says {what} neither works nor is broken"
    if len(sides) == 1:  # the other server's figure, for scale
        other = servers.get(OLD if NEW in sides else NEW)
        if other in summary.servers:
            found = judge(kind, other, summary, meta, named)
            if found.rows:
                measured.append(f"for comparison {found.measured}")
    verdict = next((v for v in (REFUTED, NOT_COMPARABLE, NOT_MEASURED) if v in verdicts), CONFIRMED)
    return "; ".join(measured) or "–", verdict, "; ".join(reasons)


def _names(
    claims: ClaimSet, summary: Summary, meta: dict[str, Any], ref: str, new: str | None, server: str | None
) -> Names:
    """What stands for each server: run names and labels, the like-for-like aid (the old server's
    copy) and the document's own table column headers."""
    labels = {s: ((meta.get("servers") or {}).get(s) or {}).get("label") or s for s in summary.servers}
    old = [ref, labels.get(ref, ref)] + ([summary.like_for_like] if summary.like_for_like else [])
    fresh = [new, labels.get(new, new)] if new else []
    for claim in claims.claims:
        if claim.form == TABLE and len(claim.header) >= 3:
            try:
                old_col, new_col, _impr, _columns = map_columns(claim.header, summary, meta, ref, server)
            except ConfigError:
                continue
            old.append(plain(claim.header[old_col]))
            fresh.append(plain(claim.header[new_col]))
    return Names([n for n in old if n], [n for n in fresh if n])


def _about(attribution: Attribution, ref: str, new: str | None) -> str:
    who = {OLD: ref, NEW: new or "(no new server)", BOTH: f"{ref} -> {new or '?'}"}.get(attribution.side or "")
    return f"{who} ({attribution.basis})" if who else f"cannot tell ({attribution.basis})"


def verify_claims(
    claims: ClaimSet,
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
    ref = reference or summary.reference
    new = server or default_server(summary)
    for name, label in (("reference", ref), ("server", new)):
        if label is not None and summary.servers and label not in summary.servers:
            raise ConfigError(f"--{name} {label}: no such server in the run (servers: {', '.join(summary.servers)}).")
    scenario = scenario or summary.headline
    if scenario is not None and summary.scenarios and scenario not in summary.scenarios:
        raise ConfigError(f"--scenario {scenario}: not in the run (scenarios: {', '.join(summary.scenarios)}).")
    names = _names(claims, summary, meta, ref, new, server)
    if claims.text:  # read again: a leading "MLX-Textgen:" is a label once the run's names are known
        claims = parse_claims(claims.text, claims.source, names.is_label)
    servers = {OLD: ref, NEW: new} if new else {OLD: ref}
    columns: dict[str, str] = {}
    verdicts = []
    for claim in claims.claims:
        attribution = attribute(claim, names)
        if claim.form == TABLE:
            old_col, new_col, impr_col, mapped = map_columns(claim.header, summary, meta, reference, server)
            columns.update(mapped)
            cells = (claim.cells[old_col], claim.cells[new_col], claim.cells[impr_col] if impr_col is not None else "")
            how = "the Improvement column"
        else:
            cells, how = (attribution.old, attribution.new, claim.factor), "the claim's text"
        old, new_text, factor = (plain(c) for c in cells)
        claimed = (
            f"{old} -> {new_text}" + (f" ({factor})" if factor else "") if claim.form == TABLE else plain(claim.text)
        )
        timed = any(speaks_of_time(c) for c in cells) or (claim.form != TABLE and speaks_of_time(claim.text))
        topic = classify(claim.subject, timed)
        if topic.kind is None and claim.form != TABLE:
            topic = classify(claim.text, timed)  # "Native tool calling" has no subject of its own
        kind = topic.kind
        about = "by column" if claim.form == TABLE else _about(attribution, ref, new)

        def add(
            measured: str, verdict: str, reason: str, claimed: str = claimed, claim: Claim = claim, about: str = about
        ) -> None:
            verdicts.append(
                ClaimVerdict(claim.subject, claimed, measured, verdict, reason, claim.line, claim.form, about)
            )

        absolute = kind in RATIOS and not factor and not (old and new_text and claim.form != TABLE)
        if kind is None:
            add("–", NOT_MEASURED, f"the harness does not measure '{claim.subject}'; not guessed")
        elif kind == "uncertain":
            add("–", NOT_COMPARABLE, f"not mapped to a metric: {topic.why}; not guessed")
        elif claim.form != TABLE and absolute:
            add(*_absolute_claim(kind, claim.text, summary, [s for s in (ref, new) if s], scenario))
        elif attribution.side is None:
            add("–", NOT_COMPARABLE, f"cannot tell which server: {attribution.basis}; not guessed")
        elif kind in CAPABILITIES:
            sides = {side: said for side, said in ((OLD, cells[0]), (NEW, cells[1])) if said}
            add(*_capability_claim(kind, claim, sides, summary, meta, servers))
        elif kind == "cache_files":
            add(*_cache_files_claim(cells, summary, ref, new))
        elif kind == "cache_reuse":
            add(*_cache_reuse_claim(cells, summary, ref, new))
        else:
            measured, verdict, reason = _latency_claim(
                kind, cells, summary, ref, new, scenario, tolerance, how, attribution.turned
            )
            add(measured, verdict, reason + (f"; {topic.why}" if topic.why else ""))
    model = (meta.get("model") or {}).get("name") or "the run's model"
    fair = summary.headline_reference if ref == summary.reference else ref
    notes = [
        f"Measured on {model}, scenario {scenario or '–'}, {ref} vs {new or '–'} in run "
        f"{meta.get('run_id', '?')}"
        + (
            f"; ratios like-for-like against {fair} (as deployed against {ref} shown next to them)"
            if fair != ref
            else ""
        )
        + ". Absolute times in a claim may come from another machine or model: they are compared as ratios only.",
    ]
    if meta.get("status") and meta["status"] != "complete":
        notes.append(f"The run is {meta['status']}: verdicts use only the requests it recorded.")
    return ClaimsReport(claims.source, ref, new or "", columns, verdicts, claims.skipped, notes)


def report_markdown(report: ClaimsReport) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    forms = {form: sum(v.form == form for v in report.verdicts) for form in ("table", "bullet", "sentence")}
    read = ", ".join(f"{n} from {'a table' if form == 'table' else form + 's'}" for form, n in forms.items() if n)
    lines = [
        f"Claims from {report.source}: {len(report.verdicts)} read ({read or 'none'}), "
        f"{len(report.skipped)} claim-like line(s) skipped."
        + (
            " Table columns: " + ", ".join(f"'{k}' -> {v}" for k, v in report.columns.items()) + "."
            if report.columns
            else ""
        ),
        *report.notes,
        f"Rule: a claimed N x is confirmed when the measured ratio is >= N/{TOLERANCE:g} "
        "(see harness/verdicts/claims.py).",
        "",
        "| Line | Claim | About | Claimed | Measured (this run) | Verdict | Reason |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {v.line} | {cell(v.metric)} | {cell(v.about)} | {cell(v.claimed)} | {cell(v.measured)} "
        f"| **{v.verdict}** | {cell(v.reason)} |"
        for v in report.verdicts
    ]
    counts = {k: sum(v.verdict == k for v in report.verdicts) for k in VERDICTS}
    lines += ["", "Verdicts: " + ", ".join(f"{n} {k}" for k, n in counts.items())]
    if report.skipped:
        lines += ["", "Skipped (claim-like, but no claim to check):"]
        lines += [f'- line {s.line}: "{s.text[:120]}" — {s.why}' for s in report.skipped]
    return "\n".join(lines)


def read_claims(path: str | Path) -> ClaimSet:
    """Every claim of a markdown file; a ConfigError when it has none."""
    path = Path(path)
    text = read_user_file(path, "Pass a UTF-8 markdown file with claims.")
    return parse_claims_or_fail(text, str(path))


def parse_claims_or_fail(text: str, source: str = "README") -> ClaimSet:
    found = parse_claims(text, source)
    if not found.claims:
        skipped = f"; {len(found.skipped)} claim-like line(s) skipped" if found.skipped else ""
        raise ConfigError(
            f"{source}: no claim found{skipped}. Claims are read from a table like "
            "`| Metric | <old server> | <new server> | Improvement |`, from bullet points and from sentences "
            "with a figure, e.g. `- Follow-up requests: ~50 s -> ~0.55 s (90x faster)`."
        )
    return found


__all__ = [
    "TOLERANCE",
    "parse_claims_or_fail",
    "parse_ratio",
    "parse_seconds",
    "ratio_verdict",
    "read_claims",
    "report_markdown",
    "sentiment",
    "verify_claims",
]
