"""The headline comparison of a run: the archive README's table (Metric | servers | Improvement),
with the model/machine/date line under it and the notes on what is not like-for-like.

Where the run has a like-for-like reference (the legacy server with ``max_tokens`` honoured), every
ratio is shown twice: "as deployed" (against the reference as users had it) and "like-for-like"
(against its counterpart, same output length); the like-for-like one is the headline. Times are
total times (the column says so); the per-scenario tables of the report give the three times to a
first something (byte, token of any kind, visible text). Answers served without generation are in
none of the figures and are counted on a line of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.summary import ALL, METRICS, Summary
from harness.core.formatting import fmt_bytes, fmt_value, improvement_text, is_nan
from harness.presentation.render import md_table

# quirk key -> (the value that means "the original's behaviour is on", what it does)
KNOWN_QUIRKS: dict[str, tuple[Any, str]] = {
    "max_tokens_ignored": (True, "ignores max_tokens"),
    "hermes_parsing": (False, "does not parse Hermes `<tool_call>` JSON"),
    "canned_fallback": (True, "answers generation failures with a canned HTTP 200 text"),
    "response_cache": (True, "answers repeated conversations from an in-memory response cache"),
}

METRIC_LABELS = {
    "first_total_s": "first request, total time",
    "first_ttft_s": "first request, time to first token (content, tool call or reasoning)",
    "first_ttfb_s": "first request, time to first byte",
    "first_ttft_content_s": "first request, time to first visible content",
    "follow_up_total_s": "follow-ups, total time",
    "follow_up_ttft_s": "follow-ups, time to first token (content, tool call or reasoning)",
    "follow_up_ttfb_s": "follow-ups, time to first byte",
    "follow_up_ttft_content_s": "follow-ups, time to first visible content",
    "restart_total_s": "first request after restart, total time",
    "side_total_s": "side requests, total time",
    "prompt_tok_s": "prompt processing, first request",
    "decode_tok_s": "decode rate",
    "completion_tokens": "completion tokens",
    "no_generation_total_s": "answered without generation (not in any figure)",
}


# --- cells ---------------------------------------------------------------------------------------


def reuse_text(cache: dict[str, Any]) -> str:
    if not cache or not cache.get("follow_ups"):
        return "–"
    if not cache.get("reuse_known"):
        return "Undecided (no usage figure, log line or timing said)"
    seen, n = cache["reuse_seen"], cache["reuse_known"]
    text = f"Reuse seen on {seen}/{n} follow-ups" if seen else f"Not seen (0/{n} follow-ups)"
    unknown = cache["follow_ups"] - n  # follow-ups where the server said nothing either way
    sources = cache.get("reuse_sources") or {}
    if sources:  # which evidence decided: the server's usage figures, its log, or timing
        text += " (" + ", ".join(f"{source}: {count}" for source, count in sorted(sources.items())) + ")"
    return text + (f"; {unknown} undecided" if unknown else "")


def files_text(cache: dict[str, Any]) -> str:
    if not cache or not cache.get("files_created"):
        return "None created"
    kinds = ", ".join(cache.get("kinds") or []) or "unknown kind"
    size = cache.get("bytes_created") or cache.get("bytes_total_end")
    return f"{cache['files_created']} files, {fmt_bytes(size)} ({kinds})"


def no_generation_text(failures: dict[str, Any]) -> str:
    """'15 of 60' (answers served without generation, of the requests), or '0 of 60'."""
    if not failures:
        return "–"
    return f"{int(failures.get('no_generation') or 0)} of {int(failures.get('requests') or 0)}"


def label(run_meta: dict[str, Any], server: str) -> str:
    return ((run_meta.get("servers") or {}).get(server) or {}).get("label") or server


# --- notes ---------------------------------------------------------------------------------------


def comparison_notes(summary: Summary, run_meta: dict[str, Any]) -> list[str]:
    """Where the comparison is not like-for-like: quirks on, shims applied, another model, a partial run."""
    notes: list[str] = []
    servers_meta = run_meta.get("servers") or {}
    scenario = summary.headline
    tokens = {s: summary.stat(scenario, s, "completion_tokens")["median"] for s in summary.servers}
    reference_quirks = (servers_meta.get(summary.reference) or {}).get("quirks") or {}
    for server in summary.servers:
        meta = servers_meta.get(server) or {}
        quirks = meta.get("quirks") or {}
        if server == summary.like_for_like and reference_quirks:
            # Named once: its quirks are the reference's but for the ones switched off.
            off = [k for k, v in quirks.items() if reference_quirks.get(k) != v]
            switched = [f"the {k} quirk {'on' if quirks[k] == KNOWN_QUIRKS.get(k, (True,))[0] else 'off'}" for k in off]
            notes.append(
                f"{server} is {summary.reference} with "
                + (" and ".join(switched) or "no quirk changed")
                + (" (it honours max_tokens)" if "max_tokens_ignored" in off else "")
                + f"; its other quirks are {summary.reference}'s"
            )
            continue
        for key, value in quirks.items():
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
                if summary.like_for_like:
                    note += f"; the like-for-like column compares with {summary.like_for_like} instead"
            notes.append(note)
        shims = meta.get("shims") or []
        if shims:
            notes.append(f"{label(run_meta, server)} runs with shims: " + "; ".join(map(str, shims)))
        for model_name, told in (meta.get("told") or {}).items():
            notes.append(
                f"{label(run_meta, server)} had to be told how to parse the tool calls of {model_name}: "
                + " ".join(map(str, told))
            )
        converted = [c for c in (meta.get("model_conversions") or {}).values() if c.get("gguf")]
        if converted:
            models = ", ".join(Path(c["source_model"]).name for c in converted)
            converters = "; ".join(sorted({str(c.get("converter")) for c in converted}))
            notes.append(
                f"{label(run_meta, server)} ran on a GGUF conversion of {models} ({converters}): "
                "the same weights, not the same files"
            )
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


def figure_notes(summary: Summary) -> list[str]:
    """What every figure of the table leaves out or is measured on."""
    notes = []
    hits = {s: int(summary.failures_for(s).get("no_generation") or 0) for s in summary.servers}
    if any(hits.values()):
        counted = ", ".join(f"{s} {n}" for s, n in hits.items() if n)
        notes.append(
            f"Answers served without generation (a response cache replaying an identical earlier "
            f"conversation) are left out of every time, rate and ratio: {counted} in this run."
        )
    prompt = [s for s in summary.servers if summary.stat(summary.headline, s, "prompt_tok_s")["n"]]
    if prompt:
        sources = summary.frame.loc[
            summary.frame["server"].isin(prompt) & summary.frame["prompt_rate"].notna(), "prompt_rate_source"
        ]
        how = " and ".join(sorted({"the server's log" if v == "log" else "time to first token" for v in sources}))
        notes.append(f"Prompt processing: prompt tokens per second on the cold first request, from {how}.")
    return notes


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One measured row of the comparison: its title in the markdown table, its short header on a
    terminal, the statistic, and the ratio against a reference with the words for better and worse."""

    title: str
    header: str
    metric: str
    ratio: str | None = None
    better: str = "faster"
    worse: str = "slower"


FIRST = Figure("First request (total time)", "First", "first_total_s", "speedup_first")
FOLLOW_UP = Figure("Follow-up requests (total time)", "Follow-ups", "follow_up_total_s", "speedup_follow_up")
RESTART = Figure("After restart (total time)", "After restart", "restart_total_s", "speedup_restart")
PROMPT = Figure("Prompt processing (first request)", "Prompt", "prompt_tok_s", "speedup_prompt", "higher", "lower")
TOKENS = Figure("Output tokens per answer", "Tokens", "completion_tokens")
DECODE = Figure("Decode rate", "Decode", "decode_tok_s", "speedup_decode", "higher", "lower")
# The rows that are counts, not statistics: (title in the markdown table, header on a terminal).
REUSE_ROW = ("KV Cache", "KV cache reuse")
FILES_ROW = ("Cache files", "Cache files")
NO_GENERATION_ROW = ("Answered without generation (all scenarios)", "No generation")


def figures(summary: Summary) -> list[Figure]:
    """The measured rows this run has, in table order (a restart or a prompt rate only where measured)."""
    scenario, servers = summary.headline, summary.servers
    out = [FIRST, FOLLOW_UP]
    if any(summary.stat(scenario, s, RESTART.metric)["n"] for s in servers):
        out.append(RESTART)
    if any(summary.stat(scenario, s, PROMPT.metric)["n"] for s in servers):
        out.append(PROMPT)
    return [*out, TOKENS, DECODE]


def improvement_columns(summary: Summary) -> list[tuple[str, str, str]]:
    """(column title, server, reference) for each improvement column."""
    candidates = summary.candidates
    several = len(candidates) > 1
    columns = []
    for server in candidates:
        who = f"{server} vs " if several else "vs "
        if summary.like_for_like:
            columns.append((f"As deployed ({who}{summary.reference})", server, summary.reference))
            columns.append((f"Like-for-like ({who}{summary.like_for_like})", server, summary.like_for_like))
        else:
            columns.append(("Improvement" if not several else f"Improvement ({server})", server, summary.reference))
    return columns


def comparison_frame(summary: Summary, run_meta: dict[str, Any]) -> pd.DataFrame:
    """The headline comparison as a table: Metric | servers... | one improvement column per other
    server (two, as deployed and like-for-like, where the run has a like-for-like reference)."""
    scenario, servers = summary.headline, summary.servers
    improvements = improvement_columns(summary)
    blank = [""] * len(improvements)

    def cell(server: str, metric: str, unit: str) -> str:
        stat = summary.stat(scenario, server, metric)
        text = fmt_value(stat["median"], unit)
        return f"{text} (n={int(stat['n'])})" if stat["n"] else text  # how many samples the median has

    def stat_row(figure: Figure) -> list[str]:
        unit = METRICS[figure.metric][2]
        row = [figure.title] + [cell(s, figure.metric, unit) for s in servers]
        if figure.ratio is None:
            return row + blank
        return row + [
            improvement_text(summary.ratio(scenario, server, figure.ratio, reference), figure.better, figure.worse)
            for _title, server, reference in improvements
        ]

    measured = figures(summary)
    rows = [stat_row(figure) for figure in measured if figure is not DECODE]
    rows.append([REUSE_ROW[0]] + [reuse_text(summary.cache_for(s, scenario or ALL)) for s in servers] + blank)
    remote = {s for s in servers if ((run_meta.get("servers") or {}).get(s) or {}).get("remote")}
    files = ["Not observable (remote server)" if s in remote else files_text(summary.cache_for(s)) for s in servers]
    rows.append([FILES_ROW[0], *files, *blank])
    rows += [stat_row(figure) for figure in measured if figure is DECODE]
    rows.append([NO_GENERATION_ROW[0]] + [no_generation_text(summary.failures_for(s)) for s in servers] + blank)
    return pd.DataFrame(rows, columns=["Metric", *servers, *(title for title, _s, _r in improvements)])


def meta_line(summary: Summary, run_meta: dict[str, Any]) -> str:
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
    # What its environment resolved (run.json's frozen list), under what its interpreter said.
    frozen = (meta.get("environment") or {}).get("frozen") or []
    packages = {
        **{name.lower(): version for name, _, version in (line.partition("==") for line in frozen) if version},
        **(identity.get("packages") or {}),
    }
    names = identity.get("release_packages") or HEADLINE_PACKAGES
    parts = [f"{name} {packages[name]}" for name in names if name in packages]
    parts += [f"{path} {text}" for path, text in (identity.get("reported") or {}).items()]
    fingerprints = (meta.get("observed") or {}).get("system_fingerprints") or []
    parts += [f"fingerprint {value}" for value in fingerprints[:2]]
    return f"({', '.join(parts)})" if parts else ""


def identity_lines(meta: dict[str, Any]) -> list[str]:
    """A server's identity and what it showed about itself, for the run details."""
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


def legend_text(summary: Summary, run_meta: dict[str, Any]) -> str | None:
    if not summary.like_for_like:
        return None
    return (
        f"As deployed: against {summary.reference} ({label(run_meta, summary.reference)}), quirks as users had "
        f"them. Like-for-like: against {summary.like_for_like} ({label(run_meta, summary.like_for_like)}), the "
        "same server with the same output length; the headline figure."
    )


def comparison_table_md(summary: Summary, run_meta: dict[str, Any]) -> str:
    """The table plus its model/machine/date line and notes. A pure function of (summary, run_meta)
    so the README table can be regenerated from any run."""
    if not summary.servers:
        return "_No requests were recorded in this run._"
    out = [md_table(comparison_frame(summary, run_meta)), "", meta_line(summary, run_meta)]
    legend = legend_text(summary, run_meta)
    if legend:
        out += ["", legend]
    for note in figure_notes(summary):
        out += ["", note]
    notes = comparison_notes(summary, run_meta)
    if notes:
        out += ["", "Not like-for-like:"] + [f"- {n}" for n in notes]
    return "\n".join(out)
