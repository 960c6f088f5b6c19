"""The corpus of known server bugs (scenarios/bugs/) and the detection matrix built from rows: the
built-in corpus loads and names real checks; a broken entry names its file and field; a cell is
flagged / clean / not reproduced from its rows; recall and false alarms count what they say; a
scenario can drop a stream mid-answer and ask a request again. Rows here are hand-made fakes of
what a run writes; the mechanism runs for real in tests/integration/test_bug_corpus_releases.py."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from harness.analysis.bugs import (
    CLEAN,
    FIXED,
    FLAGGED,
    HAS_IT,
    NOT_NAMED,
    NOT_REPRODUCED,
    cell,
    figures,
    release_unavailable,
)
from harness.capture.http import ReplayLimits, send
from harness.checks import conformance
from harness.checks.catalogue import BY_NAME
from harness.checks.pairs import repeat_difference
from harness.core.rows import ResultRow
from harness.presentation.bugs import render_matrix
from harness.scenario.bugs import BugCorpusError, load_corpus, load_entry
from harness.scenario.definition import ScenarioError, load_scenario, plan_requests

ENTRY = """\
server: mlx-lm
title: finish_reason "tool_call"
reference: ml-explore/mlx-lm#782
affected: ">=0.30.1,<0.30.5"
shown_on: "0.30.4"
fixed: "0.30.5"
checks: [stream.finish_reason_invalid]
needs: [tool_calls]
scenario:
  model: tools-hermes
  tools: ../tools/coding-tools-small.json
  stream: true
  turns:
    - user: "Please read src/app.py."
"""


def _entry(tmp_path: Path, text: str = ENTRY, name: str = "sample"):
    folder = tmp_path / "bugs"
    folder.mkdir(exist_ok=True)
    tools = tmp_path / "tools"
    tools.mkdir(exist_ok=True)
    (tools / "coding-tools-small.json").write_text(
        '[{"type": "function", "function": {"name": "Read", "parameters": {"type": "object", '
        '"properties": {"file_path": {"type": "string"}}}}}]'
    )
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def fake_row(server: str, failed: list[str] | None = None, calls: bool = True, **fields) -> ResultRow:
    """A row as a run writes it, made by hand (a fake: no server answered it)."""
    return ResultRow(
        run_id="r",
        server=server,
        scenario="bug-sample",
        turn=0,
        request_kind="first",
        stream=True,
        started_at=time.time(),
        checks_failed=failed or [],
        check_evidence={name: "evidence" for name in failed or []},
        tool_calls=[{"id": "c", "name": "Read", "arguments": {}}] if calls else [],
        **fields,
    )


def test_the_built_in_corpus_loads_with_real_checks_and_sources():
    entries = load_corpus()
    assert len(entries) >= 15
    assert len({entry.server for entry in entries}) >= 5
    for entry in entries:
        assert entry.reference or entry.seen_here, entry.id
        assert all(name in BY_NAME for name in entry.checks), (entry.id, entry.checks)
        assert entry.is_affected(entry.shown_on)
        assert entry.fixed is None or not entry.is_affected(entry.fixed)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("reference: ml-explore/mlx-lm#782", "reference: mlx-lm issue 782"), "reference"),
        (('shown_on: "0.30.4"', 'shown_on: "0.31.0"'), "shown_on"),
        (('fixed: "0.30.5"', 'fixed: "0.30.2"'), "fixed"),
        (('affected: ">=0.30.1,<0.30.5"', 'affected: "after 0.30"'), "affected"),
        (('    - user: "Please read src/app.py."', '    - tool_results: ["x"]'), "scenario"),
    ],
)
def test_a_broken_entry_names_its_file_and_field(tmp_path, change, field):
    path = _entry(tmp_path, ENTRY.replace(*change))
    with pytest.raises(BugCorpusError) as raised:
        load_entry(path)
    assert str(path) in str(raised.value) and field in str(raised.value)


def test_an_entry_writes_a_scenario_the_runner_plays(tmp_path):
    entry = load_entry(_entry(tmp_path))
    scenario = load_scenario(entry.write_scenario(tmp_path / "out", tmp_path / "bugs"))
    assert scenario.name == "bug-sample"
    assert [tool["function"]["name"] for tool in scenario.tool_schemas] == ["Read"]


def test_cells_are_flagged_clean_or_not_reproduced_with_the_reason(tmp_path):
    entry = load_entry(_entry(tmp_path))
    flagged = cell(entry, "mlx-lm", "0.30.4", [fake_row("a", ["stream.finish_reason_invalid", "stream.role_repeated"])])
    assert (flagged.status, flagged.expected, flagged.fired) == (FLAGGED, HAS_IT, ["stream.finish_reason_invalid"])
    assert flagged.other_failures == ["stream.role_repeated"]
    clean = cell(entry, "mlx-lm", "0.30.5", [fake_row("a", ["stream.role_repeated"])])
    assert (clean.status, clean.expected) == (CLEAN, FIXED)
    as_text = cell(entry, "mlx-lm", "0.30.0", [fake_row("a", ["tool.raw_markup_in_content"], calls=False)])
    assert as_text.status == NOT_REPRODUCED and as_text.expected == NOT_NAMED
    assert "calls as text" in as_text.reason
    start = fake_row("a", ["http.server_start"], error="server failed to start: exited with code 2")
    failed = cell(entry, "mlx-lm", "0.30.4", [start])
    assert failed.status == NOT_REPRODUCED and "does not install or start" in failed.reason
    missing = cell(entry, "llama-cpp", "0.3.36", [], unavailable="server not in catalogue")
    assert (missing.status, missing.reason) == (NOT_REPRODUCED, "server not in catalogue")
    refused = cell(entry, "mlx-lm", "0.30.4", [fake_row("a", ["http.status"], calls=False, http_status=404)])
    assert refused.status == NOT_REPRODUCED and "HTTP 404" in refused.reason


def test_recall_and_false_alarms_count_entries(tmp_path):
    first = load_entry(_entry(tmp_path, name="first"))
    second = load_entry(_entry(tmp_path, name="second"))
    bug = ["stream.finish_reason_invalid"]
    cells = [
        cell(first, "mlx-lm", "0.30.4", [fake_row("a", bug)]),
        cell(first, "mlx-lm", "0.30.5", [fake_row("b")]),
        cell(second, "mlx-lm", "0.30.4", [fake_row("a")]),  # missed
        cell(second, "mlx-lm", "0.30.5", [fake_row("b", bug)]),  # a false alarm
    ]
    result = figures([first, second], cells)
    assert result.recalled == ["first"] and result.reproducible == ["first", "second"]
    assert result.recall == 0.5
    assert result.false_alarms == ["second"] and result.false_alarm_rate == 0.5
    assert "clean on 0.30.4" in result.misses["second"]
    text = render_matrix([first, second], cells, result)
    assert "1 of 2 entries reproducible here flagged" in text
    assert "**flagged** (false alarm)" in text and "clean (missed)" in text


def test_repeat_difference_compares_text_and_calls_ids_aside():
    call = {"id": "a", "name": "Read", "arguments": {"file_path": "x"}}
    assert repeat_difference("No.", [], "No.", []) is None
    assert repeat_difference(None, [call], "", [{**call, "id": "b"}]) is None
    assert "again: 'Yes.'" in (repeat_difference("No.", [], "Yes.", []) or "")
    assert "again: no call" in (repeat_difference(None, [call], None, []) or "")


SCENARIO = """\
name: drops
turns:
  - user: "first"
    reply: {content: "ok"}
  - user: "second"
    drop_stream_after: 3
    reply: {content: "ok"}
  - user: "first"
    expect: {same_answer_as: 0}
"""


def test_a_scenario_drops_a_stream_and_asks_again(tmp_path):
    path = tmp_path / "drops.yaml"
    path.write_text(SCENARIO)
    planned = plan_requests(load_scenario(path), stream=True)
    assert [request.drop_after for request in planned] == [None, 3, None]
    assert planned[2].expect is not None and planned[2].expect.same_answer_as == 0
    path.write_text(SCENARIO.replace("same_answer_as: 0", "same_answer_as: 2"))
    with pytest.raises(ScenarioError, match=r"turns\[2\].expect.same_answer_as"):
        load_scenario(path)
    path.write_text(SCENARIO.replace("drop_stream_after: 3", "drop_stream_after: 3\n    stream: false"))
    with pytest.raises(ScenarioError, match="drop_stream_after"):
        load_scenario(path)


def test_a_dropped_stream_is_closed_after_n_events_and_only_noted(tmp_path):
    # One event per write, as servers stream them (a fake server: a mock transport).
    events = [f'data: {{"choices":[{{"index":0,"delta":{{"content":"w{i}"}}}}]}}\n\n'.encode() for i in range(9)]
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=iter(events)))
    with httpx.Client(transport=transport) as client:
        timed = send(client, "http://fake/v1/chat/completions", {"stream": True}, ReplayLimits(), drop_after=3)
    assert timed.captured.stop_cause == "dropped"
    assert timed.captured.sse is not None and len(timed.captured.sse.events) == 3
    path = tmp_path / "drops.yaml"
    path.write_text(SCENARIO)
    request = plan_requests(load_scenario(path), stream=True)[1]
    answer = conformance.extract_answer(timed.captured)
    outcome = conformance.run_checks(timed.captured, answer, request)
    assert outcome.failed == [] and outcome.notes == ["http.note_dropped_by_scenario"]


def test_a_release_that_answers_no_request_makes_no_verdict():
    failing = fake_row("a", ["http.server_error_on_valid_request"], calls=False, http_status=500, error="HTTP 500")
    assert "answers no request here" in (release_unavailable([failing, failing]) or "")
    assert release_unavailable([failing, fake_row("a", http_status=200)]) is None
    assert release_unavailable([fake_row("a", ["http.server_start"], error="no start")]) is None
