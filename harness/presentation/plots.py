"""The report's plots. matplotlib is imported inside each function (Agg backend, no display) so the
rest of the harness never pays for it; a plot with nothing to show is skipped (returns None).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.growth import growth_rows, long_scenarios
from harness.analysis.summary import Summary, measured_rows

MARKERS = ["o", "s", "^", "D"]
STYLES = ["-", "--", "-.", ":"]  # so equal lines of two servers stay visible on top of each other
MAX_SUBPLOTS = 6  # past this many scenarios, only the headline one is drawn: panels get unreadable
LOG_SPREAD = 20.0  # a log y-axis once the largest value is this many times the smallest


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _integer_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _title(what: str, model: str | None) -> str:
    return f"{what} — {model}" if model else what


def _scenarios_to_draw(summary: Summary, frame: pd.DataFrame) -> list[str]:
    present = [s for s in summary.scenarios if (frame["scenario"] == s).any()]
    if len(present) > MAX_SUBPLOTS and summary.headline in present:
        return [summary.headline]
    return present[:MAX_SUBPLOTS]


def latency_per_turn(summary: Summary, out_dir: Path, model: str | None = None) -> Path | None:
    """total_s per turn, one line per server, one panel per scenario (median over repeats)."""
    frame = measured_rows(summary.frame[summary.frame["request_kind"] != "warmup"])
    frame = frame[frame["total_s"].notna()]
    scenarios = _scenarios_to_draw(summary, frame)
    if not scenarios:
        return None
    plt = _pyplot()
    cols = min(len(scenarios), 3)
    rows = (len(scenarios) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, scenario in zip(axes.flat, scenarios, strict=False):  # the grid may have spare cells
        part = frame[frame["scenario"] == scenario]
        values: list[float] = []
        for i, server in enumerate(summary.servers):
            mine = part[part["server"] == server]
            if mine.empty:
                continue
            # The median over repeats per turn; the band shows the spread of the repeats.
            grouped = mine.assign(_v=mine["total_s"].astype(float)).groupby("turn")["_v"]
            med, low, high = grouped.median(), grouped.min(), grouped.max()
            # Later servers get smaller markers so equal points of two servers both show.
            (line,) = ax.plot(
                med.index,
                med.values,
                label=server,
                marker=MARKERS[i % len(MARKERS)],
                markersize=max(3, 8 - 2 * i),
                linestyle=STYLES[i % len(STYLES)],
            )
            if (high > low).any():
                ax.fill_between(med.index, low.values, high.values, alpha=0.15, color=line.get_color())
            values.extend(v for v in np.concatenate([low.values, high.values]) if v > 0)
        if values and max(values) / min(values) >= LOG_SPREAD:
            ax.set_yscale("log")
        ax.set_title(scenario)
        turns = part["turn"].unique()
        if len(turns) == 1:  # one turn: keep the axis around it instead of a ±0.05 range
            ax.set_xlim(turns[0] - 1, turns[0] + 1)
        ax.xaxis.set_major_locator(_integer_locator())
        ax.set_xlabel("turn")
        ax.set_ylabel("total time (s)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(scenarios) :]:
        ax.set_visible(False)
    fig.suptitle(_title("Request latency per turn", model))
    return _save(fig, out_dir, "latency_per_turn.png")


def cache_bytes_per_turn(summary: Summary, out_dir: Path, model: str | None = None) -> Path | None:
    """Bytes in each server's cache directories after every request, in run order.

    The total is cumulative over the whole run, so it is drawn against the request sequence (one
    point per turn of each repeat) rather than averaged per turn, which would blur its growth."""
    live = summary.frame[summary.frame["request_kind"] != "warmup"]
    if live.empty or not summary.servers:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.2))
    longest = None
    for i, server in enumerate(summary.servers):
        mine = live[live["server"] == server].sort_values("started_at").reset_index(drop=True)
        if mine.empty:
            continue
        ax.plot(
            mine.index + 1,
            mine["cache_bytes_total"].astype(float) / 1e6,
            label=server,
            marker=MARKERS[i % len(MARKERS)],
            markersize=3,
            linestyle=STYLES[i % len(STYLES)],
        )
        if longest is None or len(mine) > len(longest):
            longest = mine
    assert longest is not None  # ``live`` has rows, and every row's server is in summary.servers
    # Scenario boundaries, so a jump can be traced to the conversation that caused it.
    starts = longest.index[longest["scenario"] != longest["scenario"].shift()]
    for start in starts:
        ax.axvline(start + 0.5, color="grey", alpha=0.4, linewidth=0.8)
        ax.text(
            start + 0.7,
            1.0,
            longest.loc[start, "scenario"],
            rotation=90,
            va="top",
            ha="left",
            fontsize="x-small",
            color="grey",
            transform=ax.get_xaxis_transform(),
        )
    ax.xaxis.set_major_locator(_integer_locator())
    ax.set_xlabel("request, in run order (every turn of every repeat)")
    ax.set_ylabel("cache on disk (MB)")
    ax.set_title(_title("KV cache on disk after each request", model))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, out_dir, "cache_bytes_per_turn.png")


def first_vs_followup(summary: Summary, out_dir: Path, model: str | None = None) -> Path | None:
    """Median first-request vs follow-up latency per server (headline scenario), with 95% CIs."""
    scenario = summary.headline
    kinds = [
        ("first_total_s", "first request"),
        ("follow_up_total_s", "follow-ups"),
        ("restart_total_s", "after restart"),
    ]
    table: dict[str, list[dict[str, Any]]] = {
        label: [summary.stat(scenario, s, m) for s in summary.servers] for m, label in kinds
    }
    table = {k: v for k, v in table.items() if any(d["n"] for d in v)}
    if not table or not summary.servers:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 2.2 * len(summary.servers) + 2), 4.2))
    x = np.arange(len(summary.servers))
    width = 0.8 / len(table)
    for i, (label, stats) in enumerate(table.items()):
        med = np.array([d["median"] for d in stats], dtype=float)
        low = np.array([d["ci95_low"] for d in stats], dtype=float)
        high = np.array([d["ci95_high"] for d in stats], dtype=float)
        yerr = np.nan_to_num(np.vstack([med - low, high - med]), nan=0.0).clip(min=0)
        bars = ax.bar(
            x + (i - (len(table) - 1) / 2) * width, np.nan_to_num(med), width, yerr=yerr, capsize=4, label=label
        )
        ax.bar_label(bars, labels=[f"{v:.3g} s" if np.isfinite(v) else "" for v in med], fontsize="small")
    ax.set_xticks(x, summary.servers)
    ax.set_ylabel("median total time (s)")
    ax.set_title(_title(f"First request vs follow-ups ({scenario})", model))
    ax.legend(fontsize="small")
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, out_dir, "first_vs_followup.png")


def latency_vs_context(summary: Summary, out_dir: Path, model: str | None = None) -> Path | None:
    """--context-tokens runs: median first-request and follow-up latency per server against the
    system-prompt size, one panel per scenario (the name before "@N")."""
    frame = measured_rows(summary.frame[summary.frame["request_kind"].isin(["first", "follow-up"])])
    if "context_tokens" not in frame.columns:
        return None
    frame = frame[frame["context_tokens"].notna() & frame["total_s"].notna()]
    if frame.empty or frame["context_tokens"].nunique() < 2:
        return None
    frame = frame.assign(
        _base=frame["scenario"].str.rsplit("@", n=1).str[0],
        _size=frame["context_tokens"].astype(int),
        _v=frame["total_s"].astype(float),
    )
    bases = list(dict.fromkeys(frame["_base"]))[:MAX_SUBPLOTS]
    plt = _pyplot()
    cols = min(len(bases), 2)
    rows = (len(bases) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 4.2 * rows), squeeze=False)
    for ax, base in zip(axes.flat, bases, strict=False):  # the grid may have spare cells
        part = frame[frame["_base"] == base]
        for i, server in enumerate(summary.servers):
            mine = part[part["server"] == server]
            for kind, style in (("first", "-"), ("follow-up", "--")):
                med = mine[mine["request_kind"] == kind].groupby("_size")["_v"].median()
                if med.empty:
                    continue
                ax.plot(
                    med.index,
                    med.values,
                    label=f"{server} {kind}",
                    linestyle=style,
                    marker=MARKERS[i % len(MARKERS)],
                    color=f"C{i}",
                )
        sizes = sorted(part["_size"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
        ax.minorticks_off()
        values = part["_v"][part["_v"] > 0]
        if len(values) and values.max() / values.min() >= LOG_SPREAD:
            from matplotlib.ticker import FuncFormatter

            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            # Minor ticks labelled at 2, 3 and 5 times a power of ten only, so labels never collide.
            ax.yaxis.set_minor_formatter(
                FuncFormatter(lambda v, _pos: f"{v:g}" if v > 0 and f"{v:.0e}"[0] in "235" else "")
            )
        ax.set_title(f"{base} (solid: first request, dashed: follow-ups)", fontsize="medium")
        ax.set_xlabel("system prompt (tokens, --context-tokens)")
        ax.set_ylabel("median total time (s)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(bases) :]:
        ax.set_visible(False)
    fig.suptitle(_title("Latency against context size", model))
    return _save(fig, out_dir, "latency_vs_context.png")


def growth_per_turn(
    summary: Summary, out_dir: Path, model: str | None = None, run_meta: dict[str, Any] | None = None
) -> Path | None:
    """Long sessions: latency, the server's RSS, its cache on disk and the prompt size per turn, one
    line per server (the first long-session scenario of the run; median over repeats)."""
    scenarios = long_scenarios(summary.frame, run_meta or {})
    if not scenarios:
        return None
    scenario = scenarios[0]
    panels = [
        ("total_s", 1.0, "total time (s)", "latency"),
        ("rss_after_bytes", 1e6, "RSS after the request (MB)", "server process tree RSS"),
        ("cache_bytes_total", 1e6, "cache dirs on disk (MB)", "disk cache"),
        ("prompt_tokens", 1.0, "prompt tokens", "prompt size"),
    ]
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.2), squeeze=False)
    drawn = False
    for ax, (column, scale, label, title) in zip(axes.flat, panels, strict=True):
        for i, server in enumerate(summary.servers):
            rows = growth_rows(summary.frame, scenario, server)
            if rows.empty or rows[column].isna().all():
                continue
            ax.plot(
                rows["turn"],
                rows[column].astype(float) / scale,
                label=server,
                marker=MARKERS[i % len(MARKERS)],
                markersize=2.5,
                linestyle=STYLES[i % len(STYLES)],
                linewidth=1.0,
            )
            drawn = True
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("turn")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(_integer_locator())
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    if not drawn:
        plt.close(fig)
        return None
    fig.suptitle(_title(f"Growth over a long session ({scenario})", model))
    return _save(fig, out_dir, "growth_per_turn.png")


def _save(fig, out_dir: Path, name: str) -> Path:
    """Lays out, writes and closes a figure (an open figure would leak memory across reports)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(out_dir) / name
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_plots(
    summary: Summary, out_dir: Path, model: str | None = None, run_meta: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Writes every plot there is data for; the keys are the file stems."""
    out: dict[str, Path] = {}
    for fn in (latency_per_turn, first_vs_followup, cache_bytes_per_turn, latency_vs_context):
        path = fn(summary, out_dir, model)
        if path is not None:
            out[path.stem] = path
    growth = growth_per_turn(summary, out_dir, model, run_meta)
    if growth is not None:
        out[growth.stem] = growth
    return out
