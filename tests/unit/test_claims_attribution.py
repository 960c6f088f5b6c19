"""Whose claim it is, and capability claims judged from behaviour rows: a write-up with Old/New
bullets and a table, a blog paragraph and a changelog, checked against small hand-made runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import run_folder

from harness.analysis.summary import summarize
from harness.cli import main as cli
from harness.core.rows import ResultRow
from harness.verdicts.claim_text import parse_claims
from harness.verdicts.claims import CONFIRMED, NOT_COMPARABLE, NOT_MEASURED, REFUTED, read_claims, verify_claims
from harness.verdicts.markdown_text import read_markdown

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WRITEUP, BLOG, CHANGELOG = (FIXTURES / f"claims-{name}.md" for name in ("writeup", "blog", "changelog"))
META = {
    "run_id": "r1",
    "status": "complete",
    "model": {"name": "tiny"},
    "scenario_models": {"agent-session": {"name": "tiny"}, "tools-hermes": {"name": "tools-hermes"}},
    "servers": {"legacy": {"label": "legacy stand-in"}, "mlx-textgen": {"label": "MLX-Textgen"}},
}


class Rows:
    """Hand-made rows, numbered in the order they were sent."""

    def __init__(self) -> None:
        self.rows: list[ResultRow] = []

    def add(self, server: str, scenario: str, turn: int, kind: str, **fields) -> None:
        fields.setdefault("stream", True)
        fields.setdefault("total_s", 1.0)
        self.rows.append(
            ResultRow(
                run_id="r1",
                server=server,
                scenario=scenario,
                turn=turn,
                request_kind=kind,
                started_at=float(len(self.rows)),
                **fields,
            )
        )


def make_rows(
    *, tools: bool = True, side: bool = False, restart: bool = False, stream_fault: bool = False
) -> list[ResultRow]:
    rows = Rows()
    for server, first, follow, reuses in (("legacy", 10.0, 10.0, False), ("mlx-textgen", 4.0, 0.1, True)):
        for turn in range(4):
            kind = "first" if turn == 0 else "follow-up"
            no_done = stream_fault and server == "mlx-textgen" and turn == 1
            rows.add(server, "agent-session", turn, kind, total_s=first if turn == 0 else follow,
                     cache_reused=None if turn == 0 else reuses, reuse_source="log" if turn else None,
                     checks_failed=["stream.no_done"] if no_done else [])  # fmt: skip
        if tools:
            # tools-hermes played four ways; the new server drops the streamed calls under "auto".
            for stream in (True, False):
                for choice in ("auto", "required"):
                    for turn in range(3):
                        broken = server == "mlx-textgen" and stream and choice == "auto" and turn != 1
                        failed = ["tool.calls_missing", "expect.finish_reason"] if broken else []
                        rows.add(server, "tools-hermes", turn, "first" if turn == 0 else "follow-up",
                                 stream=stream, tool_choice=choice, variant=f"{stream},{choice}",
                                 checks_failed=failed)  # fmt: skip
        if side:
            rows.add(server, "side-requests", 0, "first")
            rows.add(server, "side-requests", 1, "side")
            rows.add(server, "side-requests", 2, "follow-up", cache_reused=reuses, reuse_source="log")
        if restart:
            rows.add(server, "restart", 0, "first")
            rows.add(server, "restart", 1, "restart", cache_reused=reuses, reuse_source="log")
    return rows.rows


def report(path: Path, rows: list[ResultRow], meta: dict = META):
    return verify_claims(read_claims(path), summarize(rows), meta)


def by_line(found) -> dict[int, list]:
    lines: dict[int, list] = {}
    for v in found.verdicts:
        lines.setdefault(v.line, []).append(v)
    return lines


# --- reading markdown --------------------------------------------------------------------------


def test_markdown_is_read_through_a_parser():
    text = (
        "Title\n=====\n\n"  # a setext heading
        "<!-- a comment over\ntwo lines: 15x faster -->\n\n"
        "Section\n-------\n\n"
        "Before:\n\n"
        "- **Old server**\n"
        "  - KV cache: broken\n"
        "    and slow\n"
        "- 90x faster follow-ups\n\n"
        "```\n10 s\n```\n"
    )
    reading = read_markdown(text, lambda line: "s" in line)
    texts = [(p.line, p.form, p.text) for p in reading.passages]
    assert texts == [
        (1, "sentence", "Title"),
        (7, "sentence", "Section"),
        (10, "sentence", "Before:"),
        (12, "bullet", "**Old server**"),
        (13, "bullet", "KV cache: broken and slow"),
        (15, "bullet", "90x faster follow-ups"),
    ]
    nested = reading.passages[4]
    # The title frames the whole document; the list's lead-in and the parent item label the item.
    assert nested.context.headings == ["Section"] and nested.context.labels == ["Before:", "**Old server**"]
    assert nested.line_at(nested.text.index("and slow")) == 14
    assert reading.code == [(18, "10 s", "a code block")]
    # Nothing of the comment is read; the figure in the code block is listed as skipped.
    found = parse_claims(text)
    assert [c.line for c in found.claims] == [13, 15] and [s.line for s in found.skipped] == [18]


# --- whose claim -------------------------------------------------------------------------------


def test_no_claim_about_the_old_server_is_checked_against_the_new_one():
    lines = by_line(report(WRITEUP, make_rows()))
    # Sentence ("the custom server") and heading ("## Old: ..."): the old server's broken cache is
    # checked on legacy, which reused nothing: confirmed, not refuted by the new server's reuse.
    for line, basis in ((9, "the sentence names 'custom server'"), (15, "the heading 'Old: vllm-mlx-server.py'")):
        (verdict,) = lines[line]
        assert verdict.about == f"legacy ({basis})"
        assert verdict.verdict == CONFIRMED and verdict.measured.startswith(
            "legacy: reuse on 0/11 follow-ups (3 reported)"
        )
    (new_cache,) = lines[22]
    assert new_cache.about.startswith("mlx-textgen (the heading 'New: MLX-Textgen')")
    assert new_cache.verdict == CONFIRMED and new_cache.measured.startswith(
        "mlx-textgen: reuse on 3/11 follow-ups (3 reported)"
    )
    # The direction of "X vs Y": X names the new server, so "our broken single cache" is the old one's.
    (versus,) = lines[11]
    assert "the comparison's sides" in versus.about and versus.verdict == NOT_MEASURED
    assert "legacy claimed multi-slot cache management broken" in versus.reason
    assert "mlx-textgen claimed multi-slot cache management working" in versus.reason
    # A table row: by its columns.
    (first,) = lines[30]
    assert first.about == "by column" and first.verdict == REFUTED
    # Nothing names a server: no verdict on a guessed one.
    (unknown,) = lines[34]
    assert unknown.verdict == NOT_COMPARABLE and unknown.reason.startswith("cannot tell which server")


def test_native_tool_calling_is_refuted_from_the_tool_call_failures():
    lines = by_line(report(WRITEUP, make_rows()))
    (native,) = lines[21]
    assert native.verdict == REFUTED
    assert native.measured.startswith("mlx-textgen: 2 of 12 hermes tool-call requests failed")
    assert "for comparison legacy: 0 of 12" in native.measured
    assert (
        "`tool.calls_missing` x2, `expect.finish_reason` x2 streamed with `tool_choice: auto` (hermes)" in native.reason
    )
    assert (
        "passes streamed with `tool_choice: required` (hermes), non-streamed with `tool_choice: auto` (hermes), "
        "non-streamed with `tool_choice: required` (hermes)" in native.reason
    )
    # Qwen XML is named too, and this run has no scenario for it.
    assert "qwen-xml not measured on mlx-textgen: run with --scenarios tools-qwen-xml" in native.reason
    # The old server's "Tool calling: ... working" is checked on legacy, which passed.
    (old,) = lines[16]
    assert old.about.startswith("legacy (the heading") and old.verdict == CONFIRMED


def test_a_claim_the_run_does_not_measure_says_which_scenarios_would():
    lines = by_line(report(WRITEUP, make_rows(tools=False)))
    (native,) = lines[21]
    assert native.verdict == NOT_MEASURED and native.measured == "–"
    assert "run with --scenarios tools-hermes,tools-qwen-xml" in native.reason
    (restart,) = lines[23]
    assert restart.verdict == NOT_MEASURED and "run with --scenarios restart" in restart.reason
    (structured,) = lines[24]
    assert structured.verdict == NOT_MEASURED and "client-shapes-hermes" in structured.reason


def test_blog_paragraph():
    found = report(BLOG, make_rows(side=True))
    lines = by_line(found)
    (old_cache,) = lines[3]  # "The old server's prompt cache never worked"
    assert old_cache.about == "legacy (the sentence names 'old')" and old_cache.verdict == CONFIRMED
    factor, tools = lines[4]  # one sentence, two clauses, two claims
    assert factor.about.startswith("legacy -> mlx-textgen (a factor") and factor.verdict == CONFIRMED  # 100x
    assert tools.about == "mlx-textgen (the sentence names 'MLX-Textgen')" and tools.verdict == REFUTED
    (streaming,) = lines[5]  # "still works": a claim about each server
    assert streaming.about.startswith("legacy -> mlx-textgen (the sentence names 'still')")
    assert (
        streaming.verdict == CONFIRMED
        and streaming.measured
        == "legacy: 0 of 13 streamed requests failed; mlx-textgen: 0 of 13 streamed requests failed"
    )
    (slots,) = lines[6]  # "X instead of Y": X is the new server's
    assert "'X instead of Y'" in slots.about and slots.verdict == CONFIRMED
    assert "mlx-textgen: reuse on 1 of 1 follow-ups sent after another conversation's request" in slots.measured
    assert not found.skipped


def test_changelog():
    lines = by_line(report(CHANGELOG, make_rows(tools=False, restart=True)))
    (replaced,) = lines[6]  # "Replaced the custom inference server with MLX-Textgen (first request 15x faster)"
    assert "'replaced Y with X'" in replaced.about and replaced.verdict == REFUTED  # 2.5x measured
    (slots,) = lines[9]
    assert slots.about == "mlx-textgen (the heading 'Added')" and slots.verdict == NOT_MEASURED
    assert "run with --scenarios side-requests" in slots.reason
    (harmony,) = lines[10]
    assert harmony.verdict == NOT_MEASURED and "run with --scenarios tools-harmony" in harmony.reason
    (removed,) = lines[13]
    assert removed.about == "legacy (the sentence names 'legacy')" and removed.verdict == CONFIRMED


@pytest.mark.parametrize(
    ("text", "about", "verdict"),
    [
        ("## Before\n\n- KV cache: broken\n", "legacy (the heading 'Before')", CONFIRMED),
        ("After:\n\n- KV cache: broken\n", "mlx-textgen (the list it is under 'After:')", REFUTED),
        ("- New setup\n  - KV cache: working\n", "mlx-textgen (the list it is under 'New setup')", CONFIRMED),
        ("- MLX-Textgen: KV cache working\n", "mlx-textgen (its label 'MLX-Textgen')", CONFIRMED),
        ("Unlike legacy, MLX-Textgen reuses its KV cache.\n", "cannot tell", NOT_COMPARABLE),
        ("The old server was 2x slower on follow-up requests.\n", "legacy -> mlx-textgen (a factor said of", CONFIRMED),
        ("- Restarts: the cache survives them\n\n## Old\n", "cannot tell", NOT_COMPARABLE),
    ],
)
def test_attribution_rules(text, about, verdict, tmp_path):
    path = tmp_path / "claims.md"
    path.write_text(text, encoding="utf-8")
    (found,) = report(path, make_rows(tools=False, restart=True)).verdicts
    assert found.about.startswith(about) and found.verdict == verdict


@pytest.mark.parametrize(
    ("claim", "rows", "verdict", "evidence"),
    [
        ("- Tool calling: working", make_rows(), REFUTED, "mlx-textgen: 2 of 12 tool-call requests failed"),
        ("- Tool calling: broken", make_rows(), CONFIRMED, "mlx-textgen: 2 of 12 tool-call requests failed"),
        ("- Streaming responses work", make_rows(tools=False), CONFIRMED, "mlx-textgen: 0 of 4 streamed requests"),
        # A tool call missing from a stream is a tool-calling failure, not a streaming one.
        ("- Streaming: working", make_rows(), CONFIRMED, "mlx-textgen: 0 of 10 streamed requests failed"),
        ("- Streaming: working", make_rows(stream_fault=True), REFUTED, "mlx-textgen: 1 of 10 streamed requests"),
        ("- Structured output: working", make_rows(), NOT_MEASURED, "–"),
        ("- Multi-slot prompt cache", make_rows(side=True), CONFIRMED, "mlx-textgen: reuse on 1 of 1 follow-ups"),
        ("- The cache survives a restart", make_rows(restart=True), CONFIRMED, "mlx-textgen: reuse on 1 of 1 first"),
    ],
)
def test_each_capability_family(claim, rows, verdict, evidence, tmp_path):
    path = tmp_path / "claims.md"
    path.write_text("## MLX-Textgen\n\n" + claim + "\n", encoding="utf-8")
    (found,) = report(path, rows).verdicts
    assert found.verdict == verdict and found.measured.startswith(evidence)


def test_structured_output_from_forced_named_tools(tmp_path):
    rows = make_rows(tools=False)
    named = '{"function":{"name":"Read"},"type":"function"}'
    extra = Rows()
    extra.rows = rows
    extra.add("mlx-textgen", "client-shapes-hermes", 0, "first", tool_choice=named)
    extra.add("mlx-textgen", "client-shapes-hermes", 1, "follow-up", tool_choice=named,
              checks_failed=["tool.named_choice_ignored"])  # fmt: skip
    path = tmp_path / "claims.md"
    path.write_text("## New\n\n- Structured output: working\n", encoding="utf-8")
    (found,) = report(path, rows).verdicts
    assert found.verdict == REFUTED and found.measured == "mlx-textgen: 1 of 2 named-tool (forced) requests failed"
    assert "`tool.named_choice_ignored` x1 streamed" in found.reason


def test_the_command_shows_whose_claim_it_is(tmp_path, capsys):
    run_dir = run_folder.write_run(tmp_path / "run", make_rows(), META)
    assert cli.main(["claims", str(WRITEUP), "--run", str(run_dir), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "| Line | Claim | About | Claimed |" in out
    assert "| 21 | Native tool calling (Hermes and Qwen XML) | mlx-textgen (the heading 'New: MLX-Textgen') |" in out
