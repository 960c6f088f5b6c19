"""The report stage on a run folder written the way the runner writes it: results.jsonl + run.json."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest
import run_folder

from harness.analysis.summary import summarize
from harness.core.formatting import improvement_text
from harness.core.rows import ResultRow
from harness.presentation.render import inline_html
from harness.presentation.report import build_report, comparison_table_md, console_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ["latency_per_turn", "first_vs_followup", "cache_bytes_per_turn"]

RUN_META = {
    "run_id": "2026-01-02-legacy-vs-mlx",
    "created_at": "2026-01-02T03:04:05",
    "finished_at": "2026-01-02T03:30:00",
    "status": "complete",
    "reference_server": "legacy",
    "config": {"servers": ["legacy", "mlx-textgen"], "repeats": 3},
    "model": {"path": "/models/tiny-qwen", "name": "tiny-qwen", "checksum": "0123456789abcdef", "builtin": True},
    "machine": {"platform": "Linux-6.1-x86_64", "processor": "x86_64", "cpu_count": 2, "memory_gb": 7.8},
    "versions": {"python": "3.11.2", "mlx": "0.26.5", "mlx_lm": "0.26.3", "mlx_textgen": "0.2.1"},
    "servers": {
        "legacy": {
            "label": "legacy stand-in",
            "command": ["python", "servers/legacy_server.py"],
            "quirks": {
                "max_tokens_ignored": True,
                "hermes_parsing": False,
                "canned_fallback": True,
                "response_cache": True,
            },
            "shims": [],
            "sessions": [
                {"model": "tiny-qwen", "time_to_ready_s": 2.5, "peak_rss_mb": 310.0, "log": "logs/legacy-1.log"}
            ],
        },
        "mlx-textgen": {
            "label": "MLX-Textgen",
            "quirks": {},
            "shims": ["wired_limit: mx.metal.device_info has no max_recommended_working_set_size on CPU"],
        },
    },
    "notes": [],
}

# Per server, per repeat: first request then three follow-ups (seconds).
TIMES = {
    "legacy": [[50.0, 49.0, 51.0, 50.5], [52.0, 48.5, 50.0, 49.5], [48.0, 50.0, 51.5, 49.0]],
    "mlx-textgen": [[3.0, 0.55, 0.50, 0.60], [3.2, 0.52, 0.58, 0.54], [2.9, 0.56, 0.51, 0.57]],
}


def make_rows(times: dict[str, list[list[float]]] = TIMES, tools: bool = True) -> list[ResultRow]:
    rows, t = [], 0.0
    for server, repeats in times.items():
        caches = server != "legacy"
        total = 0
        for repeat, turns in enumerate(repeats):
            for turn, total_s in enumerate(turns):
                t += 1
                new = 2_000_000 if caches and turn == 0 else 0
                total += new
                rows.append(
                    ResultRow(
                        run_id="r",
                        server=server,
                        scenario="agent-session",
                        variant="stream",
                        repeat=repeat,
                        turn=turn,
                        request_kind="first" if turn == 0 else "follow-up",
                        stream=True,
                        started_at=t,
                        ttft_s=total_s * 0.9,
                        total_s=total_s,
                        completion_tokens=32 if caches else 256,
                        decode_tok_s=30.0 if caches else 20.0,
                        cache_reused=caches and turn > 0,
                        cache_files_new=1 if new else 0,
                        cache_bytes_new=new,
                        cache_bytes_total=total,
                        cache_files=[f"kv-{repeat}.safetensors"] if new else [],
                    )
                )
        if tools:
            for turn in range(2):
                t += 1
                broken = caches and turn == 1
                rows.append(
                    ResultRow(
                        run_id="r",
                        server=server,
                        scenario="tools",
                        variant="stream",
                        turn=turn,
                        request_kind="first" if turn == 0 else "follow-up",
                        stream=True,
                        started_at=t,
                        total_s=1.0,
                        cache_bytes_total=total,
                        checks_failed=["tool.calls_missing"] if broken else [],
                    )
                )
            if caches:
                t += 1
                rows.append(
                    ResultRow(
                        run_id="r",
                        server=server,
                        scenario="tools",
                        variant="stream",
                        repeat=1,
                        turn=0,
                        request_kind="first",
                        stream=True,
                        started_at=t,
                        error="ReadTimeout: no answer in 60 s",
                        cache_bytes_total=total,
                    )
                )
    return rows


def write_run(run_dir: Path, rows: list[ResultRow], meta: dict | None = RUN_META) -> Path:
    return run_folder.write_run(run_dir, rows, meta)


def test_comparison_table_layout_and_notes():
    md = comparison_table_md(summarize(make_rows()), RUN_META)
    lines = md.splitlines()
    assert lines[0] == "| Metric | legacy | mlx-textgen | Improvement |"
    assert "| First request (total time) | 50 s (n=3) | 3 s (n=3) | **16.7x faster** |" in lines
    assert "| Follow-up requests (total time) | 50 s (n=9) | 0.55 s (n=9) | **90.9x faster** |" in lines
    kv = next(line for line in lines if line.startswith("| KV Cache"))
    assert "Not seen (0/9 follow-ups)" in kv and "Reuse seen on 9/9 follow-ups" in kv
    files = next(line for line in lines if line.startswith("| Cache files"))
    assert "None created" in files and "3 files, 6.0 MB (.safetensors)" in files
    assert "| Decode rate | 20 tok/s (n=12) | 30 tok/s (n=12) | **1.5x higher** |" in lines
    assert "Model: tiny-qwen (0123456789ab)" in md and "2 CPUs" in md and "Date: 2026-01-02" in md
    assert "legacy ignores max_tokens (quirk on): it generated 256 tokens vs 32 (mlx-textgen)" in md
    assert "MLX-Textgen runs with shims: wired_limit" in md
    # A pure function: same inputs, same text.
    assert md == comparison_table_md(summarize(make_rows()), RUN_META)


def test_slower_and_not_significant_wording():
    slower = {"legacy": TIMES["mlx-textgen"], "mlx-textgen": TIMES["legacy"]}
    md = comparison_table_md(summarize(make_rows(slower, tools=False)), {})
    assert "| First request (total time) | 3 s (n=3) | 50 s (n=3) | 16.7x slower |" in md
    overlap = {"legacy": [[1.0, 1.1, 0.9], [1.2, 1.0, 1.05]], "mlx-textgen": [[1.05, 1.0, 1.1], [0.95, 1.15, 1.0]]}
    md = comparison_table_md(summarize(make_rows(overlap, tools=False)), {})
    assert "| First request (total time) | 1.1 s (n=2) | 1 s (n=2) | no significant difference" in md
    assert "Follow-up requests" in md and md.count("no significant difference") >= 2
    assert (
        improvement_text({"ratio": 1.25, "ci95_low": 1.1, "ci95_high": 1.4, "significant": True}) == "**1.2x faster**"
    )
    assert improvement_text({"ratio": 0.8, "ci95_low": 0.7, "ci95_high": 0.9, "significant": True}) == "1.2x slower"


def test_three_servers_get_one_improvement_column_each():
    times = dict(TIMES, **{"other": [[25.0, 10.0, 11.0, 9.0], [26.0, 10.5, 9.5, 10.0]]})
    md = comparison_table_md(summarize(make_rows(times, tools=False)), {})
    header = md.splitlines()[0]
    assert header == "| Metric | legacy | mlx-textgen | other | Improvement (mlx-textgen) | Improvement (other) |"
    first = next(line for line in md.splitlines() if line.startswith("| First request"))
    assert "**16.7x faster**" in first and "**2.0x faster**" in first


def test_build_report_writes_everything(tmp_path):
    run_dir = write_run(tmp_path / "run", make_rows())
    out = build_report(run_dir)
    assert set(out) == {"summary_md", "summary_csv", "report_html", *PLOTS}
    for name in PLOTS:
        data = out[name].read_bytes()
        assert out[name] == run_dir / f"{name}.png" and len(data) > 1000 and data.startswith(PNG_MAGIC)

    md = out["summary_md"].read_text()
    assert "Status:" not in md  # a complete run has no warning at the top
    assert "| Metric | legacy | mlx-textgen | Improvement |" in md
    assert "**mlx-textgen: NOT a drop-in replacement for legacy**" in md
    # Check names link to their entries, which the report carries (it opens offline).
    # One line per check: its count, where, what clients did (this run was not replayed).
    assert "[`tool.calls_missing`](#tool.calls_missing) ×1 — tools [stream] turn 1 — not replayed into a client" in md
    assert '<a id="tool.calls_missing"></a>' in md
    # The error (turn 0 of repeat 1) comes before the lost tool call (turn 1) in turn order.
    assert "| tools | stream | PASS | FAIL ([request.error](#request.error) @ turn 0) |" in md
    assert "ReadTimeout: no answer in 60 s" in md
    assert "mlx_textgen 0.2.1" in md and "![latency_per_turn](latency_per_turn.png)" in md

    csv = pd.read_csv(out["summary_csv"])
    speedup = csv[(csv.metric == "speedup_first") & (csv.scenario == "agent-session")].iloc[0]
    assert speedup["server"] == "mlx-textgen" and speedup["median"] == pytest.approx(50 / 3, rel=1e-4)

    page = out["report_html"].read_text()
    assert page.count('src="data:image/png;base64,iVBORw0KGgo') == 3
    assert "<th>Metric</th><th>legacy</th><th>mlx-textgen</th><th>Improvement</th>" in page
    assert "<strong>16.7x faster</strong>" in page
    assert 'src="latency' not in page  # nothing refers to a file next to the page


def test_interrupted_run(tmp_path):
    rows = [r for r in make_rows() if not (r.server == "mlx-textgen" and r.scenario == "tools")]
    meta = dict(RUN_META, status="interrupted", finished_at=None)
    run_dir = write_run(tmp_path / "run", rows, meta)
    # A torn last line, as when the runner was killed mid-write.
    with (run_dir / "results.jsonl").open("a") as handle:
        handle.write('{"run_id": "r", "server": "mlx-te')
    out = build_report(run_dir)
    md = out["summary_md"].read_text()
    assert md.splitlines()[2].startswith("**Status: interrupted**")
    assert "run interrupted: figures come only from the requests recorded" in md
    assert "| tools | stream | PASS | not run |" in md
    assert "2 scenario turn(s) run on legacy were not run on mlx-textgen" in md
    assert "Status: interrupted" in out["report_html"].read_text()


def test_zero_rows_and_missing_run_json(tmp_path):
    run_dir = write_run(tmp_path / "empty", [], dict(RUN_META, status="failed"))
    out = build_report(run_dir)
    assert not any(name in out for name in PLOTS)
    md = out["summary_md"].read_text()
    assert "No requests were recorded in this run" in md and "Status: failed" in md
    assert "No requests were recorded" in out["report_html"].read_text()
    assert pd.read_csv(out["summary_csv"]).empty

    bare = tmp_path / "bare"
    bare.mkdir()
    out = build_report(bare)  # neither results.jsonl nor run.json
    assert "No requests were recorded" in out["summary_md"].read_text()

    no_meta = write_run(tmp_path / "no-meta", make_rows(tools=False), meta=None)
    out = build_report(no_meta)
    assert "**16.7x faster**" in out["summary_md"].read_text()
    assert out["first_vs_followup"].read_bytes().startswith(PNG_MAGIC)


def test_console_table():
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(console_table(summarize(make_rows()), RUN_META))
    text = buffer.getvalue()
    # servers as rows, short headers; the ratios in a table of their own, never in markdown bold
    assert re.search(r"Server +First +Follow-ups", text) and re.search(r"mlx-textgen +3 s \(n=3\)", text)
    assert "Ratios against legacy" in text and "16.7x faster" in text and "**" not in text and "tiny-qwen" in text
    buffer = io.StringIO()
    Console(file=buffer, width=80).print(console_table(summarize([]), {}))
    assert "No requests were recorded" in buffer.getvalue()


def test_improvement_near_one_keeps_two_decimals():
    text = improvement_text({"ratio": 0.97, "ci95_low": 0.95, "ci95_high": 0.99, "significant": True})
    assert text == "1.03x slower"
    assert improvement_text(None) == "–"
    assert (
        improvement_text({"ratio": 12.0, "ci95_low": float("nan"), "ci95_high": float("nan"), "significant": False})
        == "12.0x faster (too few samples for a CI)"
    )
    # one sample a side: never bold, and the counts are said
    one_each = {"ratio": 1.6, "ci95_low": float("nan"), "ci95_high": float("nan"), "n": 1, "n_reference": 1}
    assert improvement_text(one_each) == "1.6x faster (n=1 vs 1: too few samples for a CI)"


def test_inline_markdown_is_read_by_a_parser():
    # A code span keeps what is inside it: `**` there is text, not bold.
    assert inline_html("`f(**a, **b)`") == "<code>f(**a, **b)</code>"
    assert inline_html("**bold** then `x<y>`") == "<strong>bold</strong> then <code>x&lt;y&gt;</code>"
    # Links go to anchors of the page only; server text never becomes markup.
    assert inline_html("[the row](#row-3)") == '<a href="#row-3">the row</a>'
    assert inline_html("[out](https://example.com) <b>x</b>") == "[out](https://example.com) &lt;b&gt;x&lt;/b&gt;"
    # Evidence keeps its backslashes and entities as sent.
    assert inline_html('"a\\"b" &amp;') == "&quot;a\\&quot;b&quot; &amp;amp;"
