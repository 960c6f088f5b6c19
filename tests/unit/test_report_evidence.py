"""The evidence in a report: the request-shapes table, each failing request openable with its exact
request, raw answer and replay line, and the catalogue entries of every check the report names,
linked from wherever a check is named, all inside the one page."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import run_folder

from harness.capture.http import CapturedResponse, encode_body
from harness.core.rows import ResultRow
from harness.presentation.report import build_report
from harness.run.captures import write_capture

META = {"run_id": "shapes-run", "status": "complete", "reference_server": "legacy", "servers": {}, "notes": []}
SSE = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    b'"delta":{"role":"assistant"},"finish_reason":null}]}\n\ndata: [DONE]\n\n'
)


def _row(server: str, turn: int, name: str, stream: bool, **extra) -> ResultRow:
    return ResultRow(
        run_id="shapes-run",
        server=server,
        scenario="client-shapes-hermes",
        variant="stream" if stream else "no-stream",
        turn=turn,
        turn_name=name,
        request_kind="first" if turn == 0 else "follow-up",
        stream=stream,
        started_at=float(turn) + (0.5 if stream else 0.0),
        total_s=0.1,
        **{"http_status": 200, **extra},
    )


def write_shapes_run(run_dir: Path) -> Path:
    """Two shapes, two servers, two modes; mlx-textgen fails both shapes, one with a 500."""
    body = {"model": "tools-hermes", "messages": [{"role": "user", "content": "Größe " + "x" * 5000}], "stream": True}
    rows = []
    for server in ("legacy", "mlx-textgen"):
        for stream in (True, False):
            rows.append(_row(server, 0, "baseline", stream))
            if server == "legacy":
                rows.append(_row(server, 1, "history-content-empty-string", stream))
                continue
            if stream:
                row = _row(
                    server,
                    1,
                    "history-content-empty-string",
                    True,
                    checks_failed=["stream.empty", "stream.no_finish_chunk"],
                    check_evidence={"stream.empty": "2 event(s), none with content or a tool call"},
                )
                captured = CapturedResponse(stream=True, http_status=200, body=SSE, request_body=encode_body(body))
            else:
                row = _row(
                    server,
                    1,
                    "history-content-empty-string",
                    False,
                    http_status=500,
                    error="HTTP 500",
                    checks_failed=["http.server_error_on_valid_request"],
                    check_evidence={
                        "http.server_error_on_valid_request": 'HTTP 500: \'{"detail":"Cannot have both"}\''
                    },
                )
                captured = CapturedResponse(
                    stream=False,
                    http_status=500,
                    body=b'{"detail":"Cannot have both content and tool_calls"}',
                    request_body=encode_body({**body, "stream": False}),
                )
            row.capture = write_capture(run_dir, row, captured, "http://127.0.0.1:8081/v1/chat/completions", None)
            rows.append(row)
    return run_folder.write_run(run_dir, rows, META)


def test_the_shapes_table_names_each_failing_shape_per_server_with_its_status(tmp_path):
    md = build_report(write_shapes_run(tmp_path / "run"))["summary_md"].read_text(encoding="utf-8")
    lines = [line for line in md.splitlines() if re.match(r"\| client-shapes-hermes \| \d \|", line)]
    assert lines[0] == "| client-shapes-hermes | 0 | baseline | PASS | PASS |"
    assert lines[1].startswith("| client-shapes-hermes | 1 | history-content-empty-string | PASS | ")
    assert (
        "no-stream: HTTP 500: [`http.server_error_on_valid_request`](#http.server_error_on_valid_request)" in lines[1]
    )
    assert "stream: HTTP 200: [`stream.empty`](#stream.empty)" in lines[1]
    # The markdown lists each failing request with its capture folder.
    assert "capture `captures/mlx-textgen.client-shapes-hermes.no-stream.t01`" in md


def test_each_failing_request_opens_on_its_request_raw_answer_and_replay_line(tmp_path):
    page = build_report(write_shapes_run(tmp_path / "run"))["report_html"].read_text(encoding="utf-8")
    folds = re.findall(r"<details[^>]*>.*?</details>", page, flags=re.S)
    assert len(folds) == 2
    stream_fold = next(fold for fold in folds if "[stream]" in fold)
    # One SSE event per line, exactly as it came.
    assert html.escape(SSE.decode().split("\n\n")[0], quote=False) + "\ndata: [DONE]</pre>" in stream_fold
    assert "Größe" in stream_fold and "more characters]" in stream_fold  # the long string is cut for display
    plain = next(fold for fold in folds if "[no-stream]" in fold)
    assert "Cannot have both content and tool_calls" in plain and "HTTP 500" in plain
    assert "--data-binary @captures/mlx-textgen.client-shapes-hermes.no-stream.t01/request.json" in plain
    assert "<script" not in page and "http://" not in page.replace("http://127.0.0.1:8081", "")


def test_every_check_link_resolves_inside_the_page(tmp_path):
    page = build_report(write_shapes_run(tmp_path / "run"))["report_html"].read_text(encoding="utf-8")
    targets = set(re.findall(r'href="#([^"]+)"', page))
    assert {"stream.empty", "http.server_error_on_valid_request", "stream.no_finish_chunk"} <= targets
    ids = set(re.findall(r'id="([^"]+)"', page))
    assert targets <= ids, targets - ids
    assert '<section class="check" id="http.server_error_on_valid_request">' in page
    assert "Why a client cares." in page


def test_a_report_of_rows_without_captures_still_lists_the_failing_requests(tmp_path):
    rows = [
        _row("mlx-textgen", 1, "history-content-null", True, checks_failed=["tool.calls_missing"]),
        _row("legacy", 1, "history-content-null", True),
    ]
    page = build_report(run_folder.write_run(tmp_path / "run", rows, META))["report_html"].read_text()
    assert "none kept for this request" in page and 'id="tool.calls_missing"' in page
    assert json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[0])["capture"] is None


def test_checks_failed_on_every_request_are_said_once_not_in_every_cell(tmp_path):
    everywhere = {"checks_failed": ["schema.id_missing"], "check_evidence": {"schema.id_missing": "no 'id' field"}}
    rows = [
        _row("legacy", 0, "baseline", False, **everywhere),
        _row(
            "legacy",
            1,
            "stop-sequences",
            False,
            **{**everywhere, "checks_failed": ["schema.id_missing", "param.stop_ignored"]},
        ),
        _row("mlx-textgen", 0, "baseline", False),
        _row("mlx-textgen", 1, "stop-sequences", False),
    ]
    md = build_report(run_folder.write_run(tmp_path / "run", rows, META))["summary_md"].read_text()
    assert "| client-shapes-hermes | 0 | baseline | no-stream: only the checks it fails on every request | PASS |" in md
    assert "| 1 | stop-sequences | no-stream: HTTP 200: [`param.stop_ignored`](#param.stop_ignored) | PASS |" in md
    assert "- legacy · client-shapes-hermes [no-stream]: [`schema.id_missing`](#schema.id_missing)" in md


def test_a_raw_stream_shows_one_line_per_line_whatever_its_line_endings():
    from harness.presentation.evidence import answer_text

    lf = b'data: {"a": 1}\n\ndata: {"b": "\xe2\x80\xa8"}\n\ndata: [DONE]\n\n'  # U+2028 is JSON text, not a line end
    shown = answer_text(lf, stream=True)
    assert shown == 'data: {"a": 1}\ndata: {"b": "\u2028"}\ndata: [DONE]'
    assert answer_text(lf.replace(b"\n", b"\r"), stream=True) == shown
    assert answer_text(lf.replace(b"\n", b"\r\n"), stream=True) == shown
