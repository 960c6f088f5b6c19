"""The row schema from end to end: ResultRow -> results.jsonl -> DataFrame -> Summary -> summary.csv.

Later stages read rows by column name, so a field dropped or renamed in ResultRow must fail here,
not in a report months later. The schema and the csv columns are written out below on purpose: a
change to either is a change to the files every earlier run left behind, and is made here too.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import run_folder

from harness.analysis.run_folder import load_run
from harness.analysis.summary import CSV_COLUMNS, summarize
from harness.core.rows import ResultRow, read_rows, rows_frame
from harness.presentation.report import build_report

# One line of results.jsonl, in order.
ROW_COLUMNS = [
    "run_id",
    "server",
    "scenario",
    "repeat",
    "session",
    "conversation",
    "context_tokens",
    "variant",
    "protocol",
    "model",
    "tool_choice",
    "turn",
    "turn_name",
    "request_kind",
    "stream",
    "started_at",
    "ttft_s",
    "total_s",
    "ttfb_s",
    "ttft_content_s",
    "http_status",
    "error",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "tokens_source",
    "decode_tok_s",
    "cached_tokens",
    "cache_reused",
    "reuse_source",
    "cache_files_new",
    "cache_bytes_new",
    "cache_bytes_total",
    "cache_files_total",
    "cache_files",
    "rss_before_bytes",
    "rss_after_bytes",
    "content",
    "content_sha",
    "tool_calls",
    "checks_failed",
    "check_evidence",
    "check_notes",
    "ab_diff",
    "ab_detail",
    "ab_reference",
    "stop_cause",
    "fault",
    "fault_action",
    "fault_outcome",
    "fault_evidence",
    "conversation_sha",
    "server_session",
    "served_from_cache",
    "prompt_tok_s",
    "capture",
    "answer",
]
# What the summary adds to the rows' frame (harness.analysis.served): answers served without
# generation, and each request's prompt-processing rate.
DERIVED_COLUMNS = ["no_generation", "no_generation_why", "prompt_rate", "prompt_rate_source"]
# summary.csv: one row per (scenario, server, metric), then the ratio rows against the reference.
SUMMARY_CSV_COLUMNS = [
    "scenario",
    "server",
    "metric",
    "n",
    "median",
    "p90",
    "ci95_low",
    "ci95_high",
    "unit",
    "reference",
    "n_reference",
    "significant",
]
RUN_META = {"run_id": "schema", "reference_server": "legacy", "status": "complete", "servers": {}, "notes": []}

# Per server, per repeat: (first request, follow-ups) total seconds.
TIMES = {"legacy": [(10.0, [9.0, 11.0]), (12.0, [10.0, 10.0])], "mlx-textgen": [(4.0, [1.0, 2.0]), (6.0, [1.0, 1.0])]}


def make_rows() -> list[ResultRow]:
    rows: list[ResultRow] = []
    clock = 0.0
    for server, repeats in TIMES.items():
        caches = server == "mlx-textgen"
        bytes_total = 0
        clock += 1
        rows.append(
            ResultRow(
                run_id="schema",
                server=server,
                scenario="agent-session",
                variant="stream",
                turn=0,
                request_kind="warmup",
                stream=True,
                started_at=clock,
                total_s=99.0,
                cache_files_new=1 if caches else 0,
                cache_bytes_new=500 if caches else 0,
                cache_bytes_total=500 if caches else 0,
                cache_files=["warm.json"] if caches else [],
            )
        )
        bytes_total += 500 if caches else 0
        for repeat, (first, follow_ups) in enumerate(repeats):
            for turn, total_s in enumerate([first, *follow_ups]):
                clock += 1
                new = 1000 if caches and turn == 0 else 0
                bytes_total += new
                rows.append(
                    ResultRow(
                        run_id="schema",
                        server=server,
                        scenario="agent-session",
                        variant="stream",
                        repeat=repeat,
                        turn=turn,
                        request_kind="first" if turn == 0 else "follow-up",
                        stream=True,
                        started_at=clock,
                        ttft_s=total_s / 2,
                        total_s=total_s,
                        completion_tokens=16 if caches else 64,
                        decode_tok_s=40.0 if caches else 20.0,
                        cache_reused=True if caches and turn > 0 else None,
                        cache_files_new=1 if new else 0,
                        cache_bytes_new=new,
                        cache_bytes_total=bytes_total,
                        cache_files=[f"kv-{repeat}.safetensors"] if new else [],
                        ab_diff=None if not caches else ("identical" if turn == 0 else "equivalent"),
                    )
                )
        # Turn 1 of the tools scenario: the reference passes, the other fails a check (a regression).
        for turn in range(2):
            clock += 1
            broken = caches and turn == 1
            rows.append(
                ResultRow(
                    run_id="schema",
                    server=server,
                    scenario="tools",
                    variant="stream",
                    turn=turn,
                    request_kind="first" if turn == 0 else "follow-up",
                    stream=True,
                    started_at=clock,
                    total_s=1.0,
                    cache_bytes_total=bytes_total,
                    checks_failed=["tool.calls_missing"] if broken else [],
                    check_evidence={"tool.calls_missing": "finish_reason stop, no tool_calls"} if broken else {},
                )
            )
        clock += 1
        rows.append(
            ResultRow(
                run_id="schema",
                server=server,
                scenario="tools",
                variant="stream",
                repeat=1,
                turn=0,
                request_kind="first",
                stream=True,
                started_at=clock,
                total_s=50.0,
                cache_bytes_total=bytes_total,
                **({"stop_cause": "runaway"} if caches else {"error": "ReadTimeout: no answer"}),
            )
        )
    return rows


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return run_folder.write_run(tmp_path_factory.mktemp("schema") / "run", make_rows(), RUN_META)


def test_result_row_fields_are_the_documented_schema():
    assert list(ResultRow.model_fields) == ROW_COLUMNS


def test_summary_frame_columns_are_the_row_fields(run_dir):
    summary, _ = load_run(run_dir)  # results.jsonl -> rows -> frame -> summary, as the report reads it
    assert list(summary.frame.columns) == [*ROW_COLUMNS, *DERIVED_COLUMNS]
    assert list(ResultRow.model_fields) == ROW_COLUMNS
    assert len(summary.frame) == len(make_rows())
    # An empty or missing results.jsonl still has every column: later stages select by name.
    assert list(summarize([]).frame.columns) == [*ROW_COLUMNS, *DERIVED_COLUMNS]
    assert list(rows_frame([]).columns) == ROW_COLUMNS


def test_every_field_survives_results_jsonl(tmp_path):
    """A row with no field left at its default comes back equal, each field its own key in the line."""
    full = ResultRow(
        run_id="r",
        server="s",
        scenario="sc",
        repeat=2,
        session=1,
        conversation=2,
        context_tokens=4000,
        variant="no-stream,anthropic",
        protocol="anthropic",
        model="m",
        tool_choice="required",
        turn=3,
        turn_name="content-null",
        request_kind="restart",
        stream=False,
        started_at=12.5,
        ttft_s=0.5,
        total_s=0.75,
        ttfb_s=0.01,
        ttft_content_s=0.6,
        http_status=200,
        error="boom",
        finish_reason="tool_calls",
        prompt_tokens=900,
        completion_tokens=12,
        tokens_source="usage",
        decode_tok_s=33.0,
        cached_tokens=800,
        cache_reused=True,
        reuse_source="log",
        cache_files_new=2,
        cache_bytes_new=2048,
        cache_bytes_total=4096,
        cache_files_total=3,
        cache_files=["a.safetensors"],
        rss_before_bytes=200_000_000,
        rss_after_bytes=210_000_000,
        content="hi",
        content_sha="abc",
        tool_calls=[{"id": "call_1", "function": {"name": "read_file"}}],
        checks_failed=["stream.empty"],
        check_evidence={"stream.empty": "no delta"},
        check_notes=["note"],
        ab_diff="different",
        ab_detail="text differs",
        ab_reference="legacy",
        stop_cause="stalled",
        fault="truncate",
        fault_action="cache_1.safetensors cut from 2,048 to 1,024 bytes",
        fault_outcome="error",
        fault_evidence="HTTP 500",
        conversation_sha="0123abcd",
        server_session="s-r0#123",
        served_from_cache=False,
        prompt_tok_s=512.0,
        capture="captures/0001-s-sc-no-stream-t3",
        answer="captures/0001-s-sc-no-stream-t3/response.raw",
    )
    left_at_default = [
        name
        for name, info in ResultRow.model_fields.items()
        if not info.is_required() and getattr(full, name) == info.get_default(call_default_factory=True)
    ]
    assert left_at_default == []
    run_folder.write_run(tmp_path, [full], None)
    line = json.loads((tmp_path / "results.jsonl").read_text(encoding="utf-8"))
    assert list(line) == ROW_COLUMNS
    assert read_rows(tmp_path) == [full]
    frame = rows_frame(read_rows(tmp_path))
    assert frame.iloc[0].to_dict() == full.model_dump()


def test_summary_reads_each_figure_from_its_field(run_dir):
    """Each figure depends on one row field; a renamed field breaks one of these."""
    summary, _ = load_run(run_dir)
    assert summary.reference == "legacy" and summary.servers == ["legacy", "mlx-textgen"]
    assert summary.scenarios == ["agent-session", "tools"]
    # request_kind (warm-ups out), total_s, ttft_s, completion_tokens, decode_tok_s
    assert summary.n_rows == len([r for r in make_rows() if r.request_kind != "warmup"])
    assert summary.stat("agent-session", "legacy", "first_total_s")["median"] == 11.0
    assert summary.stat("agent-session", "mlx-textgen", "follow_up_total_s")["median"] == 1.0
    assert summary.stat("agent-session", "mlx-textgen", "follow_up_ttft_s")["median"] == 0.5
    assert summary.stat("agent-session", "legacy", "completion_tokens")["median"] == 64
    assert summary.stat("agent-session", "mlx-textgen", "decode_tok_s")["median"] == 40.0
    ratio = summary.ratio("agent-session", "mlx-textgen", "speedup_follow_up")
    assert ratio is not None and ratio["ratio"] == 10.0 and ratio["reference"] == "legacy"
    # error and stop_cause rows are not measured
    assert summary.stat("tools", "legacy", "first_total_s")["n"] == 1
    assert summary.stat("tools", "mlx-textgen", "first_total_s")["n"] == 1
    # cache_files_new, cache_bytes_new, cache_files, cache_bytes_total, cache_reused
    cache = summary.cache_for("mlx-textgen")
    assert (cache["files_created"], cache["bytes_created"], cache["bytes_total_end"]) == (3, 2500, 2500)
    assert cache["kinds"] == [".json", ".safetensors"]
    assert (cache["follow_ups"], cache["reuse_known"], cache["reuse_seen"]) == (5, 4, 4)
    assert summary.cache_for("legacy")["reuse_known"] == 0
    # error, stop_cause, checks_failed, ab_diff
    failures = summary.failures_for("mlx-textgen")
    assert (failures["errors"], failures["runaway"], failures["check_failures"]) == (0, 1, 1)
    assert (failures["ab_identical"], failures["ab_equivalent"]) == (2, 4)
    assert summary.failures_for("legacy")["errors"] == 1
    # checks_failed + check_evidence against the reference, keyed by scenario, variant and turn
    verdict = summary.verdicts["mlx-textgen"]
    regressions = [(r.scenario, r.variant, r.turn, r.check, r.evidence) for r in verdict.regressions]
    assert ("tools", "stream", 1, "tool.calls_missing", "finish_reason stop, no tool_calls") in regressions
    assert verdict.drop_in is False


def _csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_summary_csv_has_the_documented_columns(run_dir):
    out = build_report(run_dir)
    assert out["summary_csv"] == run_dir / "summary.csv"
    header, records = _csv(out["summary_csv"])
    assert header == CSV_COLUMNS == SUMMARY_CSV_COLUMNS
    stats = [r for r in records if r["unit"] != "x"]
    ratios = [r for r in records if r["unit"] == "x"]
    assert stats and ratios
    assert all(r["reference"] == "" for r in stats)
    first = next(
        r for r in stats if (r["scenario"], r["server"], r["metric"]) == ("agent-session", "legacy", "first_total_s")
    )
    assert (int(first["n"]), float(first["median"]), first["unit"]) == (2, 11.0, "s")
    follow = next(
        r
        for r in ratios
        if (r["scenario"], r["server"], r["metric"]) == ("agent-session", "mlx-textgen", "speedup_follow_up")
    )
    assert follow["reference"] == "legacy" and float(follow["median"]) == 10.0
    assert int(follow["n"]) == 4 and int(follow["n_reference"]) == 4 and follow["p90"] == ""
    assert follow["significant"] in ("True", "False")


def test_summary_csv_of_an_empty_run_still_has_its_columns(tmp_path):
    run_dir = run_folder.write_run(tmp_path / "empty", [], dict(RUN_META, status="failed"))
    header, records = _csv(build_report(run_dir)["summary_csv"])
    assert header == SUMMARY_CSV_COLUMNS and records == []
