"""The report of one run folder: summary.md, summary.csv, the plots and a self-contained report.html,
built only from ``results.jsonl`` and ``run.json``.

The document is assembled once as a list of blocks (headings, paragraphs, lists, tables, images,
failing rows a reader opens, catalogue entries) and rendered twice by ``harness.presentation.render``,
to markdown and to HTML, so the two never disagree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.run_folder import load_run
from harness.analysis.summary import ALL, Summary
from harness.core.formatting import fmt_bytes, fmt_value, improvement_text, is_nan
from harness.presentation.evidence import evidence_blocks, linked, named_checks, shapes_frame, shapes_note
from harness.presentation.render import md_table, render_html, render_markdown
from harness.presentation.sections import bound_blocks, load_blocks, recorded_blocks

MAX_ERRORS_LISTED = 20

# quirk key -> (the value that means "the original's behaviour is on", what it does)
KNOWN_QUIRKS: dict[str, tuple[Any, str]] = {
    "max_tokens_ignored": (True, "ignores max_tokens"),
    "hermes_parsing": (False, "does not parse Hermes `<tool_call>` JSON"),
    "canned_fallback": (True, "answers generation failures with a canned HTTP 200 text"),
    "response_cache": (True, "answers repeated conversations from an in-memory response cache"),
}

METRIC_LABELS = {
    "first_total_s": "first request",
    "first_ttft_s": "first request, time to first token",
    "follow_up_total_s": "follow-ups",
    "follow_up_ttft_s": "follow-ups, time to first token",
    "restart_total_s": "first request after restart",
    "side_total_s": "side requests",
    "decode_tok_s": "decode rate",
    "completion_tokens": "completion tokens",
}


# --- formatting ---------------------------------------------------------------------------------


def _reuse_text(cache: dict[str, Any]) -> str:
    if not cache or not cache.get("follow_ups"):
        return "–"
    if not cache.get("reuse_known"):
        return "Undecided (no usage figure, log line or timing said)"
    seen, n = cache["reuse_seen"], cache["reuse_known"]
    text = f"Reuse seen on {seen}/{n} follow-ups" if seen else f"Not seen (0/{n} follow-ups)"
    sources = cache.get("reuse_sources") or {}
    if sources:  # which evidence decided: the server's usage figures, its log, or timing
        text += " (" + ", ".join(f"{source}: {count}" for source, count in sorted(sources.items())) + ")"
    unknown = cache["follow_ups"] - n  # follow-ups where the server said nothing either way
    return text + (f"; {unknown} undecided" if unknown else "")


def _files_text(cache: dict[str, Any]) -> str:
    if not cache or not cache.get("files_created"):
        return "None created"
    kinds = ", ".join(cache.get("kinds") or []) or "unknown kind"
    size = cache.get("bytes_created") or cache.get("bytes_total_end")
    return f"{cache['files_created']} files, {fmt_bytes(size)} ({kinds})"


# --- the comparison table -----------------------------------------------------------------------


def _label(run_meta: dict[str, Any], server: str) -> str:
    return ((run_meta.get("servers") or {}).get(server) or {}).get("label") or server


def comparison_notes(summary: Summary, run_meta: dict[str, Any]) -> list[str]:
    """Where the comparison is not like-for-like: quirks on, shims applied, another model, a partial run."""
    notes: list[str] = []
    servers_meta = run_meta.get("servers") or {}
    scenario = summary.headline
    tokens = {s: summary.stat(scenario, s, "completion_tokens")["median"] for s in summary.servers}
    for server in summary.servers:
        meta = servers_meta.get(server) or {}
        for key, value in (meta.get("quirks") or {}).items():
            on_value, what = KNOWN_QUIRKS.get(key, (True, key.replace("_", " ")))
            if value != on_value:
                continue
            note = f"{server} {what} (quirk on)"
            if key == "max_tokens_ignored" and not is_nan(tokens.get(server)):
                vs = ", ".join(
                    f"{tokens[o]:.0f} ({o})" for o in summary.servers if o != server and not is_nan(tokens.get(o))
                )
                note += f": it generated {tokens[server]:.0f} tokens" + (f" vs {vs}" if vs else "")
                note += " (median per request)"
            notes.append(note)
        shims = meta.get("shims") or []
        if shims:
            notes.append(f"{_label(run_meta, server)} runs with shims: " + "; ".join(map(str, shims)))
    other_model = (run_meta.get("scenario_models") or {}).get(scenario or "")
    main_path = (run_meta.get("model") or {}).get("path")
    if other_model and other_model.get("path") != main_path:
        notes.append(
            f"{scenario} ran on {other_model.get('name') or other_model.get('path')}, not the run's main model"
        )
    status = run_meta.get("status")
    if status and status != "complete":
        notes.append(f"run {status}: figures come only from the requests recorded before it stopped")
    return notes


def comparison_frame(summary: Summary, run_meta: dict[str, Any]) -> pd.DataFrame:
    """The headline comparison as a table: Metric | servers... | Improvement (one per other server)."""
    scenario, servers, others = summary.headline, summary.servers, summary.others
    impr_cols = ["Improvement"] if len(others) == 1 else [f"Improvement ({o})" for o in others]

    def cell(server: str, metric: str, unit: str) -> str:
        stat = summary.stat(scenario, server, metric)
        text = fmt_value(stat["median"], unit)
        return f"{text} (n={int(stat['n'])})" if stat["n"] else text  # how many samples the median has

    def stat_row(label: str, metric: str, ratio: str, better="faster", worse="slower"):
        unit = "tok/s" if metric == "decode_tok_s" else "s"
        row = [label] + [cell(s, metric, unit) for s in servers]
        row += [improvement_text(summary.ratio(scenario, o, ratio), better, worse) for o in others]
        return row

    rows = [
        stat_row("First request", "first_total_s", "speedup_first"),
        stat_row("Follow-up requests", "follow_up_total_s", "speedup_follow_up"),
    ]
    if any(summary.stat(scenario, s, "restart_total_s")["n"] for s in servers):
        rows.append(stat_row("After restart", "restart_total_s", "speedup_restart"))
    rows.append(
        ["KV Cache"] + [_reuse_text(summary.cache_for(s, scenario or ALL)) for s in servers] + [""] * len(others)
    )
    remote = {s for s in servers if ((run_meta.get("servers") or {}).get(s) or {}).get("remote")}
    files = ["Not observable (remote server)" if s in remote else _files_text(summary.cache_for(s)) for s in servers]
    rows.append(["Cache files"] + files + [""] * len(others))
    rows.append(stat_row("Decode rate", "decode_tok_s", "speedup_decode", "higher", "lower"))
    return pd.DataFrame(rows, columns=["Metric", *servers, *impr_cols])


def _meta_line(summary: Summary, run_meta: dict[str, Any]) -> str:
    model, machine, parts = run_meta.get("model") or {}, run_meta.get("machine") or {}, []
    if model:
        checksum = str(model.get("checksum") or "")[:12]
        parts.append(f"Model: {model.get('name') or model.get('path')}" + (f" ({checksum})" if checksum else ""))
    if machine:
        mem = machine.get("memory_gb")
        parts.append(
            "Machine: "
            + ", ".join(
                str(x)
                for x in (
                    machine.get("platform"),
                    machine.get("processor"),
                    f"{machine['cpu_count']} CPUs" if machine.get("cpu_count") else None,
                    f"{float(mem):g} GB" if mem else None,
                )
                if x
            )
        )
    if run_meta.get("created_at"):
        parts.append(f"Date: {str(run_meta['created_at'])[:10]}")
    servers = [
        f"{name} {versions}"
        for name, meta in (run_meta.get("servers") or {}).items()
        if name in summary.servers and (versions := server_versions_text(meta))
    ]
    if servers:
        parts.append("Servers: " + "; ".join(servers))
    if summary.headline:
        n_first = summary.stat(summary.headline, summary.reference, "first_total_s")["n"]
        n_follow = summary.stat(summary.headline, summary.reference, "follow_up_total_s")["n"]
        parts.append(
            f"Scenario: {summary.headline} (medians; {summary.reference}: {n_first} first "
            f"requests, {n_follow} follow-ups)"
        )
    return " · ".join(parts)


# The packages that name a server's release in one line (the rest are listed in the run details).
HEADLINE_PACKAGES = ("mlx-textgen", "mlx-lm", "mlx", "vllm", "vllm-mlx", "llama-cpp-python", "sglang")


def server_versions_text(meta: dict[str, Any]) -> str:
    """'(mlx-textgen 0.2.1, mlx-lm 0.26.3, mlx 0.26.5)' from what the server's own interpreter and
    answers said; '' when it said nothing (a remote server with no version endpoint)."""
    identity = meta.get("identity") or {}
    packages = identity.get("packages") or {}
    names = identity.get("release_packages") or HEADLINE_PACKAGES
    parts = [f"{name} {packages[name]}" for name in names if name in packages]
    parts += [f"{path} {text}" for path, text in (identity.get("reported") or {}).items()]
    fingerprints = (meta.get("observed") or {}).get("system_fingerprints") or []
    parts += [f"fingerprint {value}" for value in fingerprints[:2]]
    return f"({', '.join(parts)})" if parts else ""


def _identity_lines(meta: dict[str, Any]) -> list[str]:
    identity, observed = meta.get("identity") or {}, meta.get("observed") or {}
    lines = []
    if identity.get("packages"):
        lines.append(
            f"packages of its interpreter `{identity.get('interpreter')}`: "
            + ", ".join(f"{k} {v}" for k, v in identity["packages"].items())
        )
    for path, text in (identity.get("reported") or {}).items():
        lines.append(f"reports its version at {path}: {text}")
    if observed.get("system_fingerprints"):
        lines.append("system_fingerprint: " + ", ".join(observed["system_fingerprints"]))
    if identity.get("ready_probe"):
        lines.append(f"readiness probed on {identity['ready_probe']}; model id `{identity.get('model_id')}`")
    usage = observed.get("stream_usage")
    if usage and usage != "unknown":
        lines.append(
            {
                "sent": "streams: usage sent when asked (stream_options.include_usage)",
                "ignored": "streams: stream_options accepted but no usage sent",
                "refused": "streams: stream_options refused, so streams carry no usage",
            }.get(usage, f"streams: {usage}")
        )
    convention = observed.get("prompt_tokens_include_cached")
    if convention is not None:
        lines.append(
            ("prompt_tokens counts cached tokens too" if convention else "prompt_tokens counts only uncached tokens")
            + f" ({observed.get('prompt_tokens_evidence')})"
        )
    return lines


def comparison_table_md(summary: Summary, run_meta: dict[str, Any]) -> str:
    """The archive README's table plus its model/machine/date line and like-for-like notes. A pure
    function of (summary, run_meta) so the README table can be regenerated from any run."""
    if not summary.servers:
        return "_No requests were recorded in this run._"
    out = [md_table(comparison_frame(summary, run_meta)), "", _meta_line(summary, run_meta)]
    notes = comparison_notes(summary, run_meta)
    if notes:
        out += ["", "Not like-for-like:"] + [f"- {n}" for n in notes]
    return "\n".join(out)


def console_table(summary: Summary, run_meta: dict[str, Any]):  # -> rich.table.Table
    """The headline comparison for the CLI to print."""
    from rich.table import Table

    model = (run_meta.get("model") or {}).get("name")
    title = f"{summary.headline or 'no data'}" + (f" — {model}" if model else "")
    table = Table(title=title, caption=" · ".join(comparison_notes(summary, run_meta)) or None)
    if not summary.servers:
        table.add_column("No requests were recorded in this run")
        return table
    frame = comparison_frame(summary, run_meta)
    for i, col in enumerate(frame.columns):
        table.add_column(str(col), justify="left" if i == 0 else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*[re.sub(r"\*\*(.+?)\*\*", r"[bold green]\1[/bold green]", str(v)) for v in row])
    return table


# --- the document -------------------------------------------------------------------------------


def _verdict_lines(summary: Summary) -> list[str]:
    lines = []
    for server, v in summary.verdicts.items():
        if v.drop_in is None:
            lines.append(f"**{server}: not determined** — no scenario turn could be compared with {v.reference}.")
        elif v.drop_in:
            lines.append(
                f"**{server}: drop-in replacement for {v.reference}** — every check that passed on "
                f"{v.reference} also passes ({v.compared} scenario turns compared)."
            )
        else:
            lines.append(
                f"**{server}: NOT a drop-in replacement for {v.reference}** — {len(v.regressions)} "
                f"regression(s) over {v.compared} scenario turns compared:"
            )
            for r in v.regressions:
                where = f"{r.scenario}" + (f" [{r.variant}]" if r.variant else "") + f" turn {r.turn}"
                lines.append(f"  - {where}: `{r.check}`" + (f" — {r.evidence[:160]}" if r.evidence else ""))
        if v.missing:
            lines.append(f"  - {len(v.missing)} scenario turn(s) run on {v.reference} were not run on {server}.")
    return lines


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
        label = f"{r.metric} vs {r.reference}" + ("" if r.significant else " (not significant)")
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
    }
    return f[list(cols)].rename(columns=cols)


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
        items += [f"  - {line}" for line in _identity_lines(meta)]
        for s in meta.get("sessions") or []:
            items.append(
                f"  - session: ready in {fmt_value(s.get('time_to_ready_s'))}, peak RSS "
                f"{fmt_value(s.get('peak_rss_mb'), 'MB')}, log `{s.get('log')}`"
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
        ("p", _meta_line(summary, run_meta)),
    ]
    notes = comparison_notes(summary, run_meta)
    if notes:
        blocks += [("p", "Not like-for-like:"), ("ul", notes)]
    blocks += [
        ("h2", "Migration verdict"),
        ("ul", _verdict_lines(summary) or ["Only one server ran."]),
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


def _extra_sections(summary: Summary, run_meta: dict[str, Any], run_dir: Path) -> list[tuple]:
    """Sections that exist only for some runs: recorded sessions, the cache-perfect bound
    (bound.json, --bound) and the load table (--concurrency)."""
    if not summary.n_rows:
        return []
    return (
        recorded_blocks(summary, run_meta)
        + bound_blocks(summary, run_dir)
        + load_blocks(summary.frame, summary.servers, run_meta)
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
    images = write_plots(summary, run_dir, (run_meta.get("model") or {}).get("name")) if summary.n_rows else {}
    blocks = report_blocks(summary, run_meta, images)
    blocks = _with_sections(blocks, _extra_sections(summary, run_meta, run_dir))
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
