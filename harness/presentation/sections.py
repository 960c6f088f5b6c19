"""Report sections that exist only for some runs: answers served without generation, recorded
sessions (``harness record`` / ``harness import`` scenarios), the cache-perfect bound (``--bound``),
the load table (``--concurrency``), growth over a long session, eviction under pressure (interleaved
sessions), damaged caches and the client replay. Each returns report blocks, or nothing when the run
has no such data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.bound import bound_frames, load_bound
from harness.analysis.clients import EFFECTS, mode_label
from harness.analysis.concurrency import load_frame
from harness.analysis.damage import damage_frame
from harness.analysis.eviction import eviction_frame
from harness.analysis.findings import ServerFindings
from harness.analysis.growth import PER_TURNS, UNBOUNDED_FLOOR_MB, UNBOUNDED_SHARE, growth_frame
from harness.analysis.protocols import protocol_frame
from harness.analysis.summary import Summary, no_generation_rows
from harness.core.formatting import fmt_value, is_nan
from harness.presentation.render import FoldOut

RECORDED_NOTE = (
    "Each request of a recorded session was replayed as recorded (messages, tools, tool_choice and "
    "parameters as the client sent them, only the model name swapped). Per turn and server: the time, "
    "what failed and why (an HTTP error with the start of its body), and how the answer compares with "
    "the one recorded with the request, where there is one."
)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and is_nan(value)) and value != ""


def turn_outcome(row: Any) -> str:
    """One request's outcome in a few words: ok, or what failed and its evidence."""
    evidence = row["check_evidence"] if isinstance(row["check_evidence"], dict) else {}
    failed = list(row["checks_failed"]) if isinstance(row["checks_failed"], (list, tuple)) else []
    if _present(row["error"]):
        text = evidence.get("http.status") or f"error: {row['error']}"
    elif failed:
        first = evidence.get(failed[0])
        text = "fails " + ", ".join(failed) + (f" ({first})" if first else "")
    else:
        text = "ok"
    if evidence.get("server.log"):
        text += f"; the server logged: {evidence['server.log']}"
    if _present(row["total_s"]):
        text = f"{fmt_value(row['total_s'])}: {text}"
    if row.get("ab_reference") == "recorded" and _present(row["ab_diff"]):
        text += f"; vs the recorded answer: {row['ab_diff']}"
    return text


def recorded_blocks(summary: Summary, run_meta: dict[str, Any]) -> list[tuple]:
    """The report's "Recorded sessions" section: per recorded scenario, each turn on each server,
    and the notes its recording or import left; empty when the run replayed none."""
    recorded = run_meta.get("recorded_scenarios") or {}
    frame = summary.frame
    if not recorded or frame.empty:
        return []
    blocks: list[tuple] = []
    for name, info in recorded.items():
        part = frame[(frame["scenario"] == name) & (frame["request_kind"] != "warmup")]
        if part.empty:
            continue
        servers = [server for server in summary.servers if server in set(part["server"])]
        several_modes = part["variant"].nunique() > 1
        rows = []
        for (variant, turn), at in part.groupby(["variant", "turn"], sort=True):
            cells: list[Any] = [variant] if several_modes else []
            cells += [int(turn), at.iloc[0]["request_kind"]]
            for server in servers:
                outcomes = [turn_outcome(row) for _, row in at[at["server"] == server].iterrows()]
                cells.append(" / ".join(dict.fromkeys(outcomes)) or "not run")
            rows.append(cells)
        columns = (["Mode"] if several_modes else []) + ["Turn", "Kind", *servers]
        turns = info.get("turns") or []
        blocks += [
            ("h3", f"{name} ({len(turns)} requests, from `{info.get('source', '?')}`)"),
            ("table", pd.DataFrame(rows, columns=columns)),
        ]
        notes = Counter(note for turn in turns for note in turn.get("notes") or [])
        if notes:
            blocks += [
                ("p", "What the recording or import could not carry over (requests affected):"),
                ("ul", [f"{note} ({count} of {len(turns)})" for note, count in notes.items()]),
            ]
    return [("h2", "Recorded sessions"), ("p", RECORDED_NOTE), *blocks] if blocks else []


PROTOCOLS_NOTE = (
    "Each turn was sent twice to each server that serves both APIs: natively, through the Anthropic "
    "Messages API exactly as recorded (only the model name swapped), and converted to OpenAI chat "
    "completions the way a translating proxy sends it. Status, the checks each answer failed, time to "
    "first token, total time, and whether the request reused a prompt cache (with the layer of evidence "
    "that said so: the protocol's cached-token count, the server's log, or timing). See docs/anthropic.md."
)


def protocol_blocks(frame: pd.DataFrame) -> list[tuple]:
    """The report's "Native vs converted" section (``--protocol both``); empty when no turn was sent
    both ways."""
    table = protocol_frame(frame)
    if table.empty:
        return []
    return [("h2", "Native (Anthropic Messages) vs converted (OpenAI chat)"), ("p", PROTOCOLS_NOTE), ("table", table)]


MAX_NO_GENERATION_LISTED = 40


def counters_text(counters: Any) -> str:
    """A server's own counters (e.g. the legacy server's /health) as "cache.hits=15, ..."; numbers only."""
    found: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found.append(f"{prefix}={value:g}")

    walk("", counters)
    return ", ".join(found)


def no_generation_blocks(summary: Summary, run_meta: dict[str, Any]) -> list[tuple]:
    """The report's "Answered without generation" section: each such answer and why it was recognised,
    and the server's own counters where it keeps them. Empty when there was none."""
    rows = no_generation_rows(summary.frame)
    rows = rows[rows["request_kind"] != "warmup"]
    if rows.empty:
        return []
    text = (
        "These answers came without generation: a response cache replayed an identical earlier "
        "conversation. They are in the behaviour checks (a client receives them) but in no time, "
        "rate, ratio, gate or claim."
    )
    counts = rows.groupby("server").size()
    items = [f"{server}: {int(n)} answers" for server, n in counts.items()]
    for server, meta in (run_meta.get("servers") or {}).items():
        hits = [
            (s.get("counters") or {}).get("cache", {}).get("hits")
            for s in meta.get("sessions") or []
            if isinstance((s.get("counters") or {}).get("cache"), dict)
        ]
        hits = [h for h in hits if isinstance(h, int)]
        if hits:
            items.append(f"{server}'s own counters report {sum(hits)} response-cache hits over its sessions")
    shown = rows.sort_values("started_at").head(MAX_NO_GENERATION_LISTED)
    table = pd.DataFrame(
        [
            [r["server"], r["scenario"], r["variant"], r["turn"], fmt_value(r["total_s"]), r["no_generation_why"]]
            for _, r in shown.iterrows()
        ],
        columns=["Server", "Scenario", "Variant", "Turn", "Total time", "Why"],
    )
    return [("h2", "Answered without generation"), ("p", text), ("ul", items), ("table", table)]


def bound_blocks(summary: Summary, run_dir: Path) -> list[tuple]:
    """The report's "Cache-perfect bound" section; empty when the run has no bound.json."""
    bound = load_bound(run_dir)
    if bound is None:
        return []
    follow, first = bound_frames(summary, bound)
    text = (
        "Measured in-process with mlx-lm on the same model and prompts: prefill of only the tokens a "
        "follow-up adds to the previous request (its KV cache kept), plus decoding as many tokens as the "
        "server produced. 1x is a perfect prefix cache with no server overhead; a cache that misses "
        "pays the full prefill."
    )
    skipped = sorted({s["why"] for e in bound["scenarios"].values() for s in e.get("skipped", [])})
    blocks: list[tuple] = [("h2", "Cache-perfect bound"), ("p", text), ("table", follow)]
    if not first.empty:
        blocks += [
            (
                "p",
                "First request: the full prefill in-process, and what saving the KV cache of that prompt "
                "costs (MLX-Textgen writes such a file after each request).",
            ),
            ("table", first),
        ]
    if skipped:
        blocks.append(("p", "Not measured: " + "; ".join(skipped) + "."))
    return blocks


QUEUEING_NOTE = (
    "Both MLX servers (MLX-Textgen and mlx_lm.server) generate for one request at a time: with N "
    "sessions at once, requests wait in a queue, which shows as time to first token growing from the "
    "first session served to the last while throughput stays about what one session gets."
)


CACHE_NOTE = (
    "Cache files under concurrency are counted per batch of sessions: each row's new files are those "
    "that appeared around its completion, not necessarily its own; the batch totals are exact."
)


def load_blocks(frame: pd.DataFrame, servers: list[str], run_meta: dict[str, Any]) -> list[tuple]:
    """The report's "Load" section (empty when the run was not concurrent)."""
    table = load_frame(frame, servers)
    if table.empty:
        return []
    shown = table.copy()
    for column in ("p50 total", "p90 total", "p50 TTFT", "p90 TTFT"):
        shown[column] = shown[column].map(fmt_value)
    shown["First-request TTFT (min – max)"] = shown["First-request TTFT (min – max)"].map(
        lambda span: "–" if span is None else f"{fmt_value(span[0])} – {fmt_value(span[1])}"
    )
    shown["Requests/s"] = shown["Requests/s"].map(lambda v: fmt_value(v, "req/s"))
    shown["Tokens/s"] = shown["Tokens/s"].map(lambda v: fmt_value(v, "tok/s"))
    sessions = int(table["Sessions"].max())
    notes = [QUEUEING_NOTE, CACHE_NOTE]
    batches = run_meta.get("concurrency_batches") or []
    if any(b.get("restart_after_ignored") for b in batches):
        notes.append("restart_after turns were ignored: a restart would cut every other session off.")
    for b in batches:
        if b.get("log_reuse_lines") is not None:
            notes.append(
                f"{b['server']} · {b['scenario']} (repeat {b['repeat']}): cache reuse logged "
                f"{b['log_reuse_lines']} times, no suitable cache {b.get('log_miss_lines') or 0} times, "
                f"over {b['requests']} requests"
            )
    return [("h2", f"Load ({sessions} sessions at once)"), ("table", shown), ("ul", notes)]


def _signed(value: float, unit: str, digits: int = 3) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{value:+.{digits}g} {unit}"


def growth_verdict(row: pd.Series) -> str:
    """One line per server: whether memory and disk stayed bounded, with the figures."""

    def part(what: str, slope: float, flagged: bool) -> str:
        if slope is None or pd.isna(slope):
            return f"{what} not measured"
        state = "**grows without bound**" if flagged else "bounded"
        return f"{what} {state} ({_signed(slope, 'MB')} per {PER_TURNS} turns)"

    text = (
        f"{row['server']} ({row['scenario']}, {int(row['turns'])} turns): "
        + part("memory", row["slope_rss_mb"], bool(row["rss_unbounded"]))
        + "; "
        + part("disk cache", row["slope_cache_mb"], bool(row["disk_unbounded"]))
        + f"; threshold {row['threshold_mb']:.3g} MB per {PER_TURNS} turns"
    )
    if row["stopped_early"]:
        text += " (stopped early: time budget spent)"
    return text


GROWTH_NOTE = (
    "Slopes are least-squares fits over the follow-ups (turn 1 on; the first request loads the model "
    f"and starts from an empty cache), per {PER_TURNS} turns. Memory is the server process tree's RSS "
    "after each request (psutil); disk is everything under the server's cache dirs. Memory or disk is "
    f"flagged as growing without bound when its slope per turn is above {UNBOUNDED_SHARE:g} of the KV "
    "cache of the session's median prompt (the model's layers x KV heads x head size x 2 x bytes, per "
    f"token) and above {UNBOUNDED_FLOOR_MB:g} MB per {PER_TURNS} turns: a server that keeps only the "
    "conversation it serves grows by about the cache of the tokens a turn adds plus working buffers "
    "that grow with the context, one that keeps something for every request by about a whole "
    "prompt's cache per turn."
)


def growth_blocks(frame: pd.DataFrame, servers: list[str], run_meta: dict[str, Any], image: Any = None) -> list:
    """The report's "Growth over a long session" section (empty without a long session)."""
    table = growth_frame(frame, servers, run_meta)
    if table.empty:
        return []
    shown = pd.DataFrame(
        {
            "Scenario": table["scenario"],
            "Server": table["server"],
            "Turns": table["turns"],
            "Prompt tokens (first – last)": [
                f"{fmt_value(a, 'tokens')} – {fmt_value(b, 'tokens')}"
                for a, b in zip(table["prompt_tokens_first"], table["prompt_tokens_last"], strict=True)
            ],
            "Latency (first – last)": [
                f"{fmt_value(a, 's')} – {fmt_value(b, 's')}"
                for a, b in zip(table["total_s_first"], table["total_s_last"], strict=True)
            ],
            f"Latency / {PER_TURNS} turns": table["slope_total_s"].map(lambda v: _signed(v, "s")),
            f"TTFT / {PER_TURNS} turns": table["slope_ttft_s"].map(lambda v: _signed(v, "s")),
            "RSS (first – last)": [
                f"{fmt_value(a, 'MB')} – {fmt_value(b, 'MB')}"
                for a, b in zip(table["rss_mb_first"], table["rss_mb_last"], strict=True)
            ],
            f"RSS / {PER_TURNS} turns": table["slope_rss_mb"].map(lambda v: _signed(v, "MB")),
            "Cache on disk at end": table["cache_mb_last"].map(lambda v: fmt_value(v, "MB")),
            f"Cache / {PER_TURNS} turns": table["slope_cache_mb"].map(lambda v: _signed(v, "MB")),
        }
    )
    blocks: list[tuple] = [
        ("h2", "Growth over a long session"),
        ("p", GROWTH_NOTE),
        ("table", shown),
        ("ul", [growth_verdict(row) for _, row in table.iterrows()]),
    ]
    if image is not None:
        blocks.append(("img", image))
    return blocks


EVICTION_NOTE = (
    "Interleaved sessions, more than the server's prompt-cache capacity: each session is resumed after "
    "all the others (resumed), then continued at once (continued). Times are the prompt processing "
    "(time to first token on streams), medians. A miss costs the resumed follow-ups that found no cache "
    "against the continued ones that found theirs."
)


def eviction_blocks(frame: pd.DataFrame, servers: list[str], run_meta: dict[str, Any]) -> list:
    """The report's "Eviction under pressure" section (empty without interleaved sessions)."""
    table = eviction_frame(frame, servers, run_meta)
    if table.empty:
        return []
    shown = pd.DataFrame(
        {
            "Scenario": table["scenario"],
            "Server": table["server"],
            "Sessions": table["sessions"],
            "Capacity": table["capacity"].map(lambda v: "–" if v is None or pd.isna(v) else str(int(v))),
            "First request": table["first_s"].map(lambda v: fmt_value(v, "s")),
            "Resumed: found their cache": [
                f"{int(a)}/{int(b)}" for a, b in zip(table["resumed_reused"], table["resumed"], strict=True)
            ],
            "Resumed": table["resumed_s"].map(lambda v: fmt_value(v, "s")),
            "Continued: found their cache": [
                f"{int(a)}/{int(b)}" for a, b in zip(table["continued_reused"], table["continued"], strict=True)
            ],
            "Continued": table["continued_s"].map(lambda v: fmt_value(v, "s")),
            "A miss costs": [
                "–" if pd.isna(cost) else f"{fmt_value(cost, 's')} ({ratio:.3g}x a hit)"
                for cost, ratio in zip(table["miss_cost_s"], table["miss_cost_ratio"], strict=True)
            ],
        }
    )
    return [("h2", "Eviction under pressure"), ("p", EVICTION_NOTE), ("table", shown)]


DAMAGE_NOTE = (
    "Each damage was done to a copy of the server's own cache dirs, between two requests of the "
    "session: the server was stopped, its HOME copied and the copy's cache damaged, and a new server "
    "started on the copy. Acceptable: the server answers (a cache miss is fine) or refuses with an "
    "error; a crash, a hang or an answer that differs from the undamaged runs (intact and emptied "
    "copies) under greedy decoding is a finding."
)


def damage_blocks(frame: pd.DataFrame, servers: list[str]) -> list:
    """The report's "Damaged cache" section (empty when no damage was played)."""
    table = damage_frame(frame, servers)
    if table.empty:
        return []
    shown = pd.DataFrame(
        {
            "Scenario": table["scenario"],
            "Server": table["server"],
            "Damage": table["fault"],
            "What was done": table["action"],
            "Outcome": [
                f"**{o}** (finding)" if f else o for o, f in zip(table["outcome"], table["finding"], strict=True)
            ],
            "Evidence": table["evidence"],
            "Requests after it": table["afterwards"],
        }
    )
    findings = table[table["finding"]]
    lines = [f"{r['server']}: {r['fault']} → {r['outcome']}" for _, r in findings.iterrows()]
    blocks: list[tuple] = [("h2", "Damaged cache"), ("p", DAMAGE_NOTE), ("table", shown)]
    blocks.append(("ul", lines or ["No finding: every server answered or refused with an error."]))
    return blocks


MAX_BREAKING_SHOWN = 60  # breaking answers opened in the client section; the rest are counted

CLIENTS_NOTE = (
    "Every answer of the run was fed, as the exact bytes the server sent, to real client libraries' "
    "own parsers (docs/clients.md). A client breaks on an answer when it raises, loses text or tool "
    "calls, or gets another tool call than the answer (or, streamed, than the non-streamed answer to "
    "the same request) carries; the table counts only answers where it does not break on the "
    "reference's answer to the same request."
)


def client_blocks(summary: Summary, found: dict[str, ServerFindings]) -> list[tuple]:
    """The client replay: which clients ran (versions, or why not), a line per server and client,
    and each answer a client breaks on, to open."""
    replay = summary.clients
    if replay is None:
        return []
    ran = [f"{s.name} {s.version} ({s.answers} answers)" for s in replay.statuses if not s.skipped]
    skipped = [f"{s.name}: not replayed — {s.skipped}" for s in replay.statuses if s.skipped]
    blocks: list[tuple] = [("h2", "Client replay"), ("p", CLIENTS_NOTE), ("ul", [*ran, *skipped])]
    records = []
    folds: list[FoldOut] = []
    for server, findings in found.items():
        for verdict in findings.clients:
            if verdict.skipped:
                continue
            effects = {effect: sum(g.breaking for g in verdict.breaks if g.effect == effect) for effect in EFFECTS}
            records.append(
                {
                    "Server": server,
                    "Client": verdict.client,
                    "Answers compared": verdict.compared,
                    "Breaking": verdict.breaking,
                    **{effect.capitalize(): n for effect, n in effects.items()},
                    "Tolerated checks": ", ".join(verdict.tolerated) or "–",
                }
            )
            for group in verdict.breaks:
                for answer, turn, detail in group.answers:
                    folds.append(
                        FoldOut(
                            f"{server} · {verdict.client} · {group.scenario} [{mode_label(group.variant)}] "
                            f"turn {turn}: {group.effect}",
                            [("What the client got", "text", detail), ("The answer's bytes", "text", f"`{answer}`")],
                            md_tail=f"{detail[:160]} (`{answer}`)",
                        )
                    )
    if records:
        blocks.append(("table", pd.DataFrame(records)))
    if folds:
        shown = folds[:MAX_BREAKING_SHOWN]
        blocks.append(("h3", f"Answers a client breaks on ({len(folds)})"))
        if len(folds) > len(shown):
            blocks.append(("p", f"The first {len(shown)}; clients.jsonl in the run folder has every result."))
        blocks.append(("details", shown))
    elif records:
        blocks.append(("p", "No client breaks on an answer it reads fine from the reference."))
    return blocks
