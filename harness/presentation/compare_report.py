"""The comparison of runs as a document (``harness compare``): which runs, whether they can be
compared, the figures side by side and the speed-ups within each run; rendered to markdown and to a
self-contained HTML page like the run report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.analysis.compare import Comparison
from harness.core.formatting import fmt_value, is_nan
from harness.presentation.comparison import METRIC_LABELS
from harness.presentation.render import render_html, render_markdown


def _interval(low: float, high: float, unit: str) -> str:
    return "–" if is_nan(low) else f"{fmt_value(low, unit)} – {fmt_value(high, unit)}"


def _change(row: pd.Series) -> str:
    if is_nan(row["ratio"]):
        return "–"
    up = row["change_pct"] > 0
    if round(row["change_pct"]) == 0:
        text = "no change"
    elif row["unit"] != "s":
        text = f"{row['change_pct']:+.0f}% ({'higher' if up else 'lower'})"
    else:
        text = f"{row['change_pct']:+.0f}% ({'slower' if up else 'faster'})"
    if is_nan(row["ratio_low"]):
        return f"{text}; too few samples for a CI"
    if not row["significant"]:
        return f"{text}; not significant"
    return f"**{text}**" if row["worse"] else text


def figures_frame(comparison: Comparison) -> pd.DataFrame:
    f = comparison.figures
    if f.empty:
        return pd.DataFrame()
    base = comparison.runs[0].run_id
    rows = []
    for _, r in f.iterrows():
        unit = r["unit"]
        rows.append(
            [
                r["scenario"],
                r["server"],
                METRIC_LABELS.get(r["metric"], r["metric"]),
                f"{fmt_value(r['base_median'], unit)} [{_interval(r['base_low'], r['base_high'], unit)}] "
                f"(n={r['base_n']})",
                r["run"],
                f"{fmt_value(r['median'], unit)} [{_interval(r['low'], r['high'], unit)}] (n={r['n']})",
                "–" if is_nan(r["ratio"]) else f"{r['ratio']:.2f}x",
                "–" if is_nan(r["ratio_low"]) else f"{r['ratio_low']:.2f}x – {r['ratio_high']:.2f}x",
                _change(r),
            ]
        )
    columns = ["Scenario", "Server", "Metric", f"{base}: median [95% CI]", "Run", "Median [95% CI]"]
    return pd.DataFrame(rows, columns=[*columns, "Ratio", "Ratio 95% CI", "Change"])


def speedups_frame(comparison: Comparison) -> pd.DataFrame:
    s = comparison.speedups
    if s.empty:
        return pd.DataFrame()
    rows = [
        [
            r["run"],
            r["scenario"],
            f"{r['server']} vs {r['reference']}",
            r["metric"],
            f"{r['ratio']:.2f}x",
            "–" if is_nan(r["ci95_low"]) else f"{r['ci95_low']:.2f}x – {r['ci95_high']:.2f}x",
        ]
        for _, r in s.iterrows()
    ]
    return pd.DataFrame(rows, columns=["Run", "Scenario", "Servers", "Metric", "Ratio", "95% CI"])


def compare_blocks(comparison: Comparison, regressions: pd.DataFrame | None, pct: float | None) -> list[tuple]:
    runs = comparison.runs
    items = []
    for run in runs:
        model = (run.meta.get("model") or {}).get("name") or "?"
        versions = run.meta.get("versions") or {}
        stack = ", ".join(f"{k} {v}" for k, v in versions.items() if k in ("mlx", "mlx_lm", "mlx_textgen") and v)
        items.append(
            f"`{run.run_id}` ({run.path}): {', '.join(run.summary.servers)} on {', '.join(run.summary.scenarios)}; "
            f"model {model}; {stack or 'versions unknown'}; created {run.meta.get('created_at', '?')}"
        )
    blocks: list[tuple] = [
        ("h1", f"Runs compared with {runs[0].run_id}"),
        ("ul", items),
    ]
    if comparison.mismatches:
        blocks += [("p", "**Not comparable** (compared anyway, on request):"), ("ul", comparison.mismatches)]
    else:
        blocks.append(("p", "Same model, machine and scenarios in every run."))
    blocks += [
        (
            "p",
            "Each figure: the median with its 95% bootstrap interval in the first run and in the later one, the "
            "ratio later/first with its own interval, and the change. A change is significant when the "
            "ratio's interval excludes 1; answers served without generation are in no figure.",
        ),
        ("h2", "Figures"),
        ("table", figures_frame(comparison)),
    ]
    speedups = speedups_frame(comparison)
    if not speedups.empty:
        blocks += [("h2", "Headline speed-ups within each run"), ("table", speedups)]
    if comparison.notes:
        blocks += [("ul", comparison.notes)]
    if pct is not None and regressions is not None:
        if regressions.empty:
            blocks.append(("p", f"**No regression** beyond {pct:g}% (significant changes only)."))
        else:
            lines = [
                f"{r['server']} · {r['scenario']} · {METRIC_LABELS.get(r['metric'], r['metric'])}: "
                f"{r['change_pct']:+.0f}% in {r['run']}"
                for _, r in regressions.iterrows()
            ]
            blocks += [("p", f"**{len(lines)} regression(s)** beyond {pct:g}% (significant):"), ("ul", lines)]
    return blocks


def write_compare(comparison: Comparison, out_dir: Path, blocks: list[tuple]) -> dict[str, Path]:
    """compare-vs-<first run>.md and .html in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"compare-vs-{comparison.runs[0].run_id}"
    paths = {"md": out_dir / f"{stem}.md", "html": out_dir / f"{stem}.html"}
    paths["md"].write_text(render_markdown(blocks), encoding="utf-8")
    paths["html"].write_text(render_html(blocks, f"Runs compared with {comparison.runs[0].run_id}"), encoding="utf-8")
    return paths
