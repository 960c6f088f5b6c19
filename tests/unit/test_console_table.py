"""The comparison printed at the end of `harness run` fits the terminal: at 80 columns (a CI log) and
at 120, every server name and every figure is whole and on one line, and a wider terminal needs
fewer tables. The summaries are built from rows shaped like a real run's: the default three servers
with a like-for-like reference, and five servers with long names, a restart, a remote server and
ratios that are significant, not significant, and without an interval."""

from __future__ import annotations

import io
import random
import re

import pytest
import run_folder

from harness.analysis.run_folder import load_run
from harness.analysis.summary import Summary, summarize
from harness.cli.main import main
from harness.core.rows import ResultRow
from harness.presentation.comparison import comparison_frame, figures, improvement_columns
from harness.presentation.console_table import console_table, short_ratio_text

LEGACY_QUIRKS = {"max_tokens_ignored": True, "hermes_parsing": False, "canned_fallback": True, "response_cache": True}
DEFAULT_META = {
    "run_id": "20261129-235433-0eb4",
    "created_at": "2026-11-29T23:54:33",
    "status": "complete",
    "reference_server": "legacy",
    "like_for_like_server": "legacy-capped",
    "model": {"name": "tiny-chat-qwen2", "checksum": "f5f72675e472aa"},
    "machine": {"platform": "Linux-6.1-x86_64", "processor": "x86_64", "cpu_count": 2, "memory_gb": 23.5},
    "servers": {
        "legacy": {"label": "legacy stand-in", "quirks": LEGACY_QUIRKS},
        "legacy-capped": {
            "label": "legacy stand-in, max_tokens honoured",
            "quirks": {**LEGACY_QUIRKS, "max_tokens_ignored": False},
        },
        "mlx-textgen": {"label": "MLX-Textgen", "shims": ["wired_limit disabled (no Metal)"]},
    },
}
FIVE = ["mlx-lm@0.32.2", "vllm-mlx", "mlx-openai-server", "mlx-omni-server", "llama-cpp"]
FIVE_META = {
    "run_id": "20261201-101010-abcd",
    "reference_server": "mlx-lm@0.32.2",
    "model": {"name": "Qwen2.5-Coder-7B-Instruct-4bit"},
    "servers": {name: {"label": name} for name in FIVE} | {"mlx-omni-server": {"label": "omni", "remote": True}},
}


def session_rows(
    server: str,
    *,
    first_s: float,
    follow_s: float,
    tokens: int,
    repeats: int = 1,
    follow_ups: int = 7,
    restart_s: float | None = None,
    caches: bool = False,
    prompt_rate: float | None = None,
    seed: int = 0,
) -> list[ResultRow]:
    """One agent-session per repeat: a first request, follow-ups (and a restart), with the spread a
    shared CPU gives, as the runner writes them."""
    rng, rows = random.Random(seed), []
    kinds = ["first"] + ["follow-up"] * follow_ups + (["restart"] if restart_s is not None else [])
    for repeat in range(repeats):
        for turn, kind in enumerate(kinds):
            base = {"first": first_s, "follow-up": follow_s, "restart": restart_s or 0.0}[kind]
            total = base * rng.uniform(0.9, 1.1)
            new_files = 2 if caches and kind == "first" else 0
            rows.append(
                ResultRow(
                    run_id="r",
                    server=server,
                    scenario="agent-session",
                    variant="stream",
                    repeat=repeat,
                    turn=turn,
                    request_kind=kind,
                    stream=True,
                    started_at=float(len(rows) + 1000 * repeat),
                    ttft_s=total * 0.8,
                    total_s=total,
                    prompt_tokens=5936 + 400 * turn,
                    completion_tokens=tokens,
                    decode_tok_s=tokens / (total * 0.2),
                    cache_reused=(caches if kind != "first" else None),
                    reuse_source="log" if kind != "first" else None,
                    cache_files_new=new_files,
                    cache_bytes_new=6_000_000 if new_files else 0,
                    cache_bytes_total=12_000_000 if caches else 0,
                    cache_files=["cache_0.safetensors", "cached_prompts.json"] if new_files else [],
                    prompt_tok_s=prompt_rate if kind == "first" else None,
                )
            )
    return rows


def served_from_cache_rows(server: str, count: int) -> list[ResultRow]:
    """Answers a response cache replayed (the legacy server's tools-hermes modes)."""
    return [
        ResultRow(
            run_id="r",
            server=server,
            scenario="tools-hermes",
            variant="no-stream",
            turn=turn,
            request_kind="first" if turn == 0 else "follow-up",
            stream=False,
            started_at=5000.0 + turn,
            total_s=0.004,
            completion_tokens=32,
            served_from_cache=True,
        )
        for turn in range(count)
    ]


def default_summary() -> Summary:
    rows = [
        *session_rows("legacy", first_s=9.84, follow_s=9.54, tokens=256, prompt_rate=666.0),
        *served_from_cache_rows("legacy", 15),
        *session_rows("legacy-capped", first_s=6.56, follow_s=11.3, tokens=32, prompt_rate=927.0, seed=1),
        *served_from_cache_rows("legacy-capped", 15),
        *session_rows("mlx-textgen", first_s=4.98, follow_s=0.797, tokens=32, caches=True, prompt_rate=1467.0, seed=2),
    ]
    return summarize(rows, reference="legacy", like_for_like="legacy-capped")


def five_server_summary() -> Summary:
    rows = [
        *session_rows("mlx-lm@0.32.2", first_s=2.1, follow_s=1.9, tokens=128, repeats=3, restart_s=2.2, seed=3),
        *session_rows(
            "vllm-mlx", first_s=1.2, follow_s=0.31, tokens=128, repeats=3, restart_s=0.4, caches=True, seed=4
        ),
        # the same speed as the reference: a ratio that is not significant
        *session_rows("mlx-openai-server", first_s=2.1, follow_s=1.9, tokens=128, repeats=3, restart_s=2.2, seed=5),
        *session_rows("mlx-omni-server", first_s=3.9, follow_s=2.8, tokens=128, repeats=3, restart_s=4.1, seed=6),
        # one session, one first request: a ratio with no interval
        *session_rows("llama-cpp", first_s=1512.0, follow_s=0.9, tokens=128, restart_s=1.1, caches=True, seed=7),
    ]
    return summarize(rows, reference="mlx-lm@0.32.2")


def render(summary: Summary, meta: dict, width: int) -> str:
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, highlight=False).print(console_table(summary, meta))
    return buffer.getvalue()


def figure_texts(summary: Summary, meta: dict) -> list[str]:
    """Every figure the console shows: the markdown table's server cells and the compact ratios."""
    frame = comparison_frame(summary, meta)
    texts = [str(frame.at[i, server]) for i in frame.index for server in summary.servers]
    for _title, server, reference in improvement_columns(summary):
        for figure in figures(summary):
            if figure.ratio:
                ratio = summary.ratio(summary.headline, server, figure.ratio, reference)
                texts.append(short_ratio_text(ratio, figure.better, figure.worse).strip("*"))
    return [text for text in texts if text not in ("", "–")]


def tables_in(text: str) -> int:
    return sum(1 for line in text.splitlines() if re.fullmatch(r"─+", line.strip()))


CASES = {"default three servers": (default_summary, DEFAULT_META), "five servers": (five_server_summary, FIVE_META)}


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("case", CASES)
def test_every_name_and_figure_is_whole_on_one_line(case, width):
    make, meta = CASES[case]
    summary = make()
    text = render(summary, meta, width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in text
    for name in summary.servers:
        # a whole name, with a space (or the line's edge) on both sides: "legacy-ca" or a name
        # broken over two lines does not match
        assert any(re.search(rf"(^| ){re.escape(name)}( |$)", line) for line in lines), f"{name} cut at {width}"
    figures_shown = figure_texts(summary, meta)
    assert len(figures_shown) >= 5 * len(summary.servers)
    cut = [figure for figure in figures_shown if not any(figure in line for line in lines)]
    assert not cut, f"figures cut or wrapped at {width} columns: {cut}\n{text}"


@pytest.mark.parametrize("case", CASES)
def test_a_wider_terminal_gets_fewer_tables(case):
    make, meta = CASES[case]
    summary = make()
    narrow, wide = render(summary, meta, 80), render(summary, meta, 120)
    assert tables_in(wide) < tables_in(narrow)
    assert max(len(line) for line in wide.splitlines()) > 80  # the width is used


def test_the_cases_show_what_they_are_meant_to():
    """The summaries hold the cells that make a table wide: a like-for-like pair, a restart, a
    remote server, a ratio that is not significant and one without an interval."""
    default = render(default_summary(), DEFAULT_META, 120)
    assert "12.0x faster" not in default  # measured here, not copied from the README
    assert "Ratios against the reference" in default
    assert re.search(r"mlx-textgen +legacy-capped +.*faster", default)
    assert re.search(r"mlx-textgen +legacy +.*faster", default)
    assert "Reuse seen on 7/7 follow-ups (log: 7)" in default and "15 of 23" in default
    assert "2 files, 6.0 MB (.json, .safetensors)" in default
    five = render(five_server_summary(), FIVE_META, 120)
    assert "After restart" in five and "Not observable (remote server)" in five
    assert "n.s. (" in five and "(n=3 vs 1, no CI)" in five and re.search(r"1,\d{3} s \(n=1\)", five)
    assert "Ratios against mlx-lm@0.32.2" in five and "Against" not in five


def test_short_ratio_text():
    assert (
        short_ratio_text({"ratio": 12.04, "ci95_low": 9.0, "ci95_high": 14.0, "significant": True})
        == "**12.0x faster**"
    )
    assert short_ratio_text({"ratio": 0.8, "ci95_low": 0.7, "ci95_high": 0.9, "significant": True}) == "1.2x slower"
    assert (
        short_ratio_text({"ratio": 1.05, "ci95_low": 0.95, "ci95_high": 1.15, "significant": False})
        == "n.s. (1.05x, CI 0.95–1.15)"
    )
    one_each = {"ratio": 2.2, "ci95_low": float("nan"), "ci95_high": float("nan"), "n": 1, "n_reference": 1}
    assert short_ratio_text(one_each, "higher", "lower") == "2.2x higher (n=1 vs 1, no CI)"
    assert short_ratio_text(None) == "–"


def test_harness_report_prints_it_at_the_terminal_width(tmp_path, monkeypatch, capsys):
    """`COLUMNS=80 harness report RUN_DIR`, as a CI log shows the end of `harness run`."""
    rows = [
        *session_rows("legacy", first_s=9.84, follow_s=9.54, tokens=256, prompt_rate=666.0),
        *session_rows("legacy-capped", first_s=6.56, follow_s=11.3, tokens=32, prompt_rate=927.0, seed=1),
        *session_rows("mlx-textgen", first_s=4.98, follow_s=0.797, tokens=32, caches=True, prompt_rate=1467.0, seed=2),
    ]
    run_dir = run_folder.write_run(tmp_path / "run", rows, DEFAULT_META)
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    summary, meta = load_run(run_dir)
    cut = [figure for figure in figure_texts(summary, meta) if figure not in out]
    assert not cut and "legacy-capped" in out and "mlx-textgen" in out


def test_no_rows():
    assert "No requests were recorded" in render(summarize([]), {}, 80)
