"""The report of one run folder: summary.md, summary.csv, the plots and a self-contained report.html,
built only from ``results.jsonl`` and ``run.json``.

The document is assembled once as a list of blocks (headings, paragraphs, lists, tables, images,
failing rows a reader opens, catalogue entries) and rendered twice by ``harness.presentation.render``,
to markdown and to HTML, so the two never disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.clients import verdict_text
from harness.analysis.findings import finding_text, headline_client_text, merged, server_findings, skipped_clients
from harness.analysis.run_folder import load_run
from harness.analysis.summary import ALL, Summary
from harness.core.formatting import fmt_bytes, fmt_value, is_nan
from harness.presentation.comparison import (
    METRIC_LABELS,
    comparison_frame,
    comparison_notes,
    comparison_table_md,
    figure_notes,
    identity_lines,
    legend_text,
    meta_line,
)
from harness.presentation.console_table import console_table
from harness.presentation.evidence import evidence_blocks, linked, named_checks, shapes_frame, shapes_note
from harness.presentation.render import render_html, render_markdown
from harness.presentation.sections import (
    bound_blocks,
    client_blocks,
    counters_text,
    damage_blocks,
    eviction_blocks,
    growth_blocks,
    load_blocks,
    no_generation_blocks,
    protocol_blocks,
    recorded_blocks,
)

MAX_ERRORS_LISTED = 20
# Lines of one server's verdict: the verdict, a line per client, the findings, then one line naming
# the findings left over.
MAX_VERDICT_LINES = 12
MIN_FINDINGS_LISTED = 4

# --- the document -------------------------------------------------------------------------------


def verdict_lines(summary: Summary) -> list[str]:
    """Per server: the verdict, then one line per replayed client (breaking ones first), then one line
    per check it fails where the reference passes (breaking findings first, cosmetic ones last)."""
    lines = []
    skipped = skipped_clients(summary)
    for server, found in server_findings(summary).items():
        v = found.verdict
        clients = headline_client_text(found.clients)
        if v.drop_in is None:
            lines.append(f"**{server}: not determined** — no scenario turn could be compared with {v.reference}.")
        elif v.drop_in:
            lines.append(
                f"**{server}: drop-in replacement for {v.reference}** — every check that passed on "
                f"{v.reference} also passes ({v.compared} scenario turns compared)"
                + (f"; {clients}." if clients else ".")
            )
        else:
            lines.append(
                f"**{server}: NOT a drop-in replacement for {v.reference}** — {len(v.regressions)} "
                f"regression(s) of {len(found.findings)} check(s) over {v.compared} scenario turns compared"
                + (f"; {clients}." if clients else ".")
            )
        ordered = sorted(found.clients, key=lambda c: (c.drop_in is not False, c.skipped is not None))
        lines += [f"  - {verdict_text(client)}" for client in ordered]
        groups = merged(found.findings)
        room = max(MIN_FINDINGS_LISTED, MAX_VERDICT_LINES - 2 - len(found.clients))
        shown = groups if len(groups) <= room + 1 else groups[:room]
        lines += [f"  - {finding_text(group[0], skipped, also=group[1:])}" for group in shown]
        if len(groups) > len(shown):
            rest = [finding for group in groups[len(shown) :] for finding in group]
            lines.append(
                f"  - and {len(rest)} more check(s) ({sum(len(f.turns) for f in rest)} turns, listed under "
                "Behaviour and the failing requests): " + ", ".join(f"`{f.check}`" for f in rest)
            )
        if v.missing:
            lines.append(f"  - {len(v.missing)} scenario turn(s) run on {v.reference} were not run on {server}.")
    return lines


def plain_text(line: str) -> str:
    """A report line for the console: no markdown emphasis or code marks."""
    return line.replace("**", "").replace("`", "")


def _behaviour_frame(summary: Summary) -> pd.DataFrame:
    b = summary.behaviour
    if b.empty:
        return pd.DataFrame()

    def cell(r: pd.Series) -> str:
        return "PASS" if r["status"] == "PASS" else f"FAIL ({r['first_failure']} @ turn {int(r['first_failure_turn'])})"

    b = b.assign(cell=b.apply(cell, axis=1))
    wide = b.pivot_table(index=["scenario", "variant"], columns="server", values="cell", aggfunc="first", sort=False)
    wide = wide.reindex(columns=[s for s in summary.servers if s in wide.columns]).fillna("not run")
    return wide.reset_index().rename(columns={"scenario": "Scenario", "variant": "Variant"})


def _scenario_frame(summary: Summary, scenario: str) -> pd.DataFrame:
    s = summary.stats[summary.stats["scenario"] == scenario]
    rows = [
        [
            r.server,
            METRIC_LABELS.get(r.metric, r.metric),
            r.n,
            fmt_value(r.median, r.unit),
            fmt_value(r.p90, r.unit),
            f"{fmt_value(r.ci95_low, r.unit)} – {fmt_value(r.ci95_high, r.unit)}",
        ]
        for r in s.itertuples()
    ]
    for r in summary.ratios[summary.ratios["scenario"] == scenario].itertuples():
        ci = "–" if is_nan(r.ci95_low) else f"{r.ci95_low:.2f}x – {r.ci95_high:.2f}x"
        kind = " (like-for-like)" if r.reference == summary.like_for_like else ""
        label = f"{r.metric} vs {r.reference}{kind}" + ("" if r.significant else " (not significant)")
        rows.append([r.server, label, f"{r.n_reference}/{r.n}", f"{r.ratio:.2f}x", "", ci])
    return pd.DataFrame(rows, columns=["Server", "Metric", "n", "Median", "p90", "95% CI"])


def _cache_frame(summary: Summary) -> pd.DataFrame:
    c = summary.cache[summary.cache["scenario"] == ALL] if not summary.cache.empty else summary.cache
    return pd.DataFrame(
        [
            [
                r["server"],
                r["files_created"],
                fmt_bytes(r["bytes_created"]),
                ", ".join(r["kinds"]) or "–",
                fmt_bytes(r["bytes_total_end"]),
                f"{r['reuse_seen']}/{r['reuse_known']} (of {r['follow_ups']})",
                f"{r['restart_reuse_seen']}/{r['restarts']}",
            ]
            for _, r in c.iterrows()
        ],
        columns=[
            "Server",
            "Files created",
            "Bytes created",
            "Kinds",
            "On disk at end",
            "Reuse on follow-ups (seen/reported)",
            "Reuse after restart",
        ],
    )


def _failures_frame(summary: Summary) -> pd.DataFrame:
    f = summary.failures
    if f.empty:
        return pd.DataFrame()
    cols = {
        "scenario": "Scenario",
        "server": "Server",
        "requests": "Requests",
        "errors": "Errors",
        "runaway": "Runaway",
        "stalled": "Stalled",
        "check_failures": "Rows failing checks",
        "ab_identical": "A/B identical",
        "ab_equivalent": "A/B equivalent",
        "ab_different": "A/B different",
        "no_generation": "Answered without generation",
    }
    return f[[c for c in cols if c in f]].rename(columns=cols)


def _errors_frame(summary: Summary) -> pd.DataFrame:
    err = summary.frame[summary.frame["error"].notna()].head(MAX_ERRORS_LISTED)
    return pd.DataFrame(
        [
            [r["server"], r["scenario"], r["variant"], r["repeat"], r["turn"], str(r["error"])[:200]]
            for _, r in err.iterrows()
        ],
        columns=["Server", "Scenario", "Variant", "Repeat", "Turn", "Error"],
    )


def _details(summary: Summary, run_meta: dict[str, Any]) -> list[str]:
    items = []
    model = run_meta.get("model") or {}
    if model:
        items.append(
            f"Model: {model.get('name')} — `{model.get('path')}` (checksum {model.get('checksum')}"
            + (", built-in" if model.get("builtin") else "")
            + ")"
        )
    for scenario, m in (run_meta.get("scenario_models") or {}).items():
        items.append(f"Scenario {scenario} model: {m.get('name')} — `{m.get('path')}` ({m.get('checksum')})")
    if run_meta.get("machine"):
        items.append("Machine: " + ", ".join(f"{k}={v}" for k, v in run_meta["machine"].items()))
    if run_meta.get("versions"):
        items.append(
            "The harness's own environment (not the servers'): "
            + ", ".join(f"{k} {v}" for k, v in run_meta["versions"].items())
        )
    for name, meta in (run_meta.get("servers") or {}).items():
        quirks = ", ".join(f"{k}={v}" for k, v in (meta.get("quirks") or {}).items()) or "none"
        items.append(
            f"Server {name} ({meta.get('label', name)}): quirks {quirks}; shims: "
            + ("; ".join(meta.get("shims") or []) or "none")
        )
        if meta.get("command"):
            items.append(f"  - command: `{' '.join(map(str, meta['command']))}`")
        items += [f"  - {line}" for line in identity_lines(meta)]
        for s in meta.get("sessions") or []:
            counters = counters_text(s.get("counters"))
            items.append(
                f"  - session: ready in {fmt_value(s.get('time_to_ready_s'))}, peak RSS "
                f"{fmt_value(s.get('peak_rss_mb'), 'MB')}, log `{s.get('log')}`"
                + (f"; its own counters at the end: {counters}" if counters else "")
            )
        items += [f"  - {n}" for n in meta.get("notes") or []]
    items += [f"Note: {n}" for n in run_meta.get("notes") or []]
    return items


def report_blocks(summary: Summary, run_meta: dict[str, Any], images: dict[str, Path]) -> list[tuple]:
    """The report as blocks: ("h1"|"h2"|"h3"|"p", text), ("ul", items), ("table", frame), ("img", path)."""
    status = run_meta.get("status") or ("interrupted" if run_meta and not run_meta.get("finished_at") else None)
    blocks: list[tuple] = [("h1", f"Run {run_meta.get('run_id', '(unknown id)')}")]
    if status and status != "complete":
        blocks.append(
            (
                "p",
                f"**Status: {status}** — the run did not finish; everything below comes from "
                f"the {summary.n_rows} requests it recorded.",
            )
        )
    blocks.append(
        (
            "p",
            f"Started {run_meta.get('created_at', '?')}, finished {run_meta.get('finished_at') or '—'}; "
            f"reference server: {summary.reference or '—'}.",
        )
    )
    if not summary.n_rows:
        blocks.append(("p", "**No requests were recorded in this run**, so there is nothing to compare."))
        blocks += [("h2", "Run details"), ("ul", _details(summary, run_meta))]
        return blocks
    blocks += [
        ("h2", f"Comparison ({summary.headline})"),
        ("table", comparison_frame(summary, run_meta)),
        ("p", meta_line(summary, run_meta)),
    ]
    legend = legend_text(summary, run_meta)
    blocks += [("p", note) for note in [legend, *figure_notes(summary)] if note]
    notes = comparison_notes(summary, run_meta)
    if notes:
        blocks += [("p", "Not like-for-like:"), ("ul", notes)]
    blocks += [
        ("h2", "Migration verdict"),
        ("ul", verdict_lines(summary) or ["Only one server ran."]),
        ("h2", "Behaviour"),
        ("table", _behaviour_frame(summary)),
    ]
    shapes = shapes_frame(summary)
    if not shapes.empty:
        blocks += [
            ("h3", "Request shapes"),
            (
                "p",
                "Each named turn (a request shape) on each server, in every mode: PASS, a clear refusal, or "
                "the status and the first checks it fails. The failing requests below show the evidence.",
            ),
            ("table", shapes),
        ]
        everywhere = shapes_note(summary)
        if everywhere:
            blocks += [
                ("p", "Left out of the table: the checks a server fails on every request of a mode."),
                ("ul", everywhere),
            ]
    blocks += [("h2", "Latency per scenario")]
    for scenario in summary.scenarios:
        blocks += [("h3", scenario), ("table", _scenario_frame(summary, scenario))]
    blocks += [
        ("h2", "Cache"),
        ("table", _cache_frame(summary)),
        ("h2", "Failures"),
        ("table", _failures_frame(summary)),
    ]
    errors = _errors_frame(summary)
    if not errors.empty:
        blocks += [("h3", f"Errors (first {MAX_ERRORS_LISTED})"), ("table", errors)]
    if images:
        blocks.append(("h2", "Plots"))
        blocks += [("img", path) for path in images.values()]
    blocks += [("h2", "Run details"), ("ul", _details(summary, run_meta))]
    return blocks


def _extra_sections(
    summary: Summary, run_meta: dict[str, Any], run_dir: Path, images: dict[str, Path] | None = None
) -> list[tuple]:
    """Sections that exist only for some runs: answers served without generation, recorded sessions,
    the cache-perfect bound (bound.json, --bound), the load table (--concurrency), growth over a long
    session (with its plot), eviction under pressure and damaged caches."""
    if not summary.n_rows:
        return []
    frame, servers = summary.frame, summary.servers
    return (
        no_generation_blocks(summary, run_meta)
        + recorded_blocks(summary, run_meta)
        + protocol_blocks(frame)
        + bound_blocks(summary, run_dir)
        + load_blocks(frame, servers, run_meta)
        + growth_blocks(frame, servers, run_meta, (images or {}).get("growth_per_turn"))
        + eviction_blocks(frame, servers, run_meta)
        + damage_blocks(frame, servers)
        + client_blocks(summary, server_findings(summary))
    )


def _with_sections(blocks: list[tuple], extra: list[tuple]) -> list[tuple]:
    """``extra`` inserted before the plots (or the run details), after the tables."""
    if not extra:
        return blocks
    heads = [i for i, b in enumerate(blocks) if b in (("h2", "Plots"), ("h2", "Run details"))]
    at = heads[0] if heads else len(blocks)
    return blocks[:at] + extra + blocks[at:]


def _before_details(blocks: list[tuple], extra: list[tuple]) -> list[tuple]:
    """``extra`` inserted before the run details (the last section)."""
    at = next((i for i, b in enumerate(blocks) if b == ("h2", "Run details")), len(blocks))
    return blocks[:at] + extra + blocks[at:]


def build_report(run_dir: Path, *, reference: str | None = None, headline: str | None = None) -> dict[str, Path]:
    """Writes summary.md, summary.csv, the plots and report.html into ``run_dir``; returns them by
    name ("summary_md", "summary_csv", plot stems, "report_html")."""
    from harness.presentation.plots import write_plots

    run_dir = Path(run_dir)
    summary, run_meta = load_run(run_dir, reference=reference, headline=headline)
    model = (run_meta.get("model") or {}).get("name")
    images = write_plots(summary, run_dir, model, run_meta) if summary.n_rows else {}
    # The growth plot goes in its own section, not among the other plots.
    shown = {name: path for name, path in images.items() if name != "growth_per_turn"}
    blocks = report_blocks(summary, run_meta, shown)
    blocks = _with_sections(blocks, _extra_sections(summary, run_meta, run_dir, images))
    blocks = _before_details(blocks, evidence_blocks(summary, run_dir))
    blocks = linked(blocks, named_checks(summary))
    out = {
        "summary_md": run_dir / "summary.md",
        "summary_csv": summary.write_csv(run_dir / "summary.csv"),
        **images,
        "report_html": run_dir / "report.html",
    }
    out["summary_md"].write_text(render_markdown(blocks), encoding="utf-8")
    title = f"Run {run_meta.get('run_id', run_dir.name)}"
    out["report_html"].write_text(render_html(blocks, title), encoding="utf-8")
    return out


__all__ = [
    "build_report",
    "comparison_frame",
    "comparison_notes",
    "comparison_table_md",
    "console_table",
    "plain_text",
    "report_blocks",
    "verdict_lines",
]
