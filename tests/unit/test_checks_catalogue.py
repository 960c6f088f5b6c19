"""The catalogue of checks (harness/checks/catalogue.py) and docs/checks.md cannot drift from the
code: every example fails its check through the real checks, every name the code can emit has an
entry, and the committed docs/checks.md is what the catalogue renders."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from harness.capture.http import CapturedResponse
from harness.checks import catalogue, conformance, messages
from harness.checks.pairs import stream_pair_difference
from harness.core.sse import SSEReader
from harness.scenario.definition import Expect, PlannedRequest

ROOT = Path(__file__).resolve().parents[2]
FAMILY = "|".join(catalogue.FAMILIES)
NAME = re.compile(rf"^({FAMILY})\.[a-z][a-z_]*[a-z]$")
NOT_CHECKS = {"request.json", "http.disconnect"}  # a file name and an ASGI message type that look like check names


def planned(example: catalogue.Example) -> PlannedRequest:
    request = example.request
    tools = [
        {
            "type": "function",
            "function": {
                "name": name,
                "parameters": {"type": "object", "properties": {key: {"type": kind} for key, kind in params.items()}},
            },
        }
        for name, params in (request.get("tools") or {}).items()
    ]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Read a.py"}]
    for call_id in request.get("history_ids") or []:
        call = {"id": call_id, "type": "function", "function": {"name": "Read", "arguments": "{}"}}
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call_id, "content": "x"},
        ]
    expect = request.get("expect")
    planned = PlannedRequest(
        scenario="catalogue",
        turn=0,
        messages=messages,
        tools=tools,
        params=dict(request.get("params") or {}),
        stream=example.stream,
        tool_choice=request.get("tool_choice", "auto" if tools else None),
        expect=Expect.model_validate(expect) if expect else None,
        unsupported_ok=bool(request.get("unsupported_ok")),
    )
    if example.protocol == "anthropic":
        # The Messages body sent: what the checks read of it is max_tokens.
        planned.protocol = "anthropic"
        max_tokens = planned.params.get("max_tokens", 1024)
        planned.raw = {"model": "m", "messages": [{"role": "user", "content": "Read a.py"}], "max_tokens": max_tokens}
    return planned


def captured(answer: str, stream: bool, example: catalogue.Example) -> CapturedResponse:
    raw = answer.encode("utf-8")
    reader = None
    if stream:
        reader = SSEReader()
        reader.feed(raw, 0.0)
        reader.close(1.0)
    return CapturedResponse(
        stream=stream,
        http_status=example.status,
        body=raw,
        sse=reader,
        transport_error=example.transport_error,
        stop_cause=example.stop_cause,
    )


def outcome_of(doc: catalogue.CheckDoc, answer_text: str | None = None) -> tuple[list[str], list[str]]:
    """The failures and notes of the entry's example (or of ``answer_text`` asked the same way)."""
    example = doc.example
    assert isinstance(example, catalogue.Example)
    checks = messages if example.protocol == "anthropic" else conformance
    resp = captured(example.answer if answer_text is None else answer_text, example.stream, example)
    answer = checks.extract_answer(resp)
    outcome = checks.run_checks(resp, answer, planned(example))
    failed = list(outcome.failed)
    if example.partner is not None:
        other = captured(example.partner, not example.stream, example)
        extract = checks.extract_answer
        streamed, plain = (answer, extract(other)) if example.stream else (extract(other), answer)
        if stream_pair_difference(streamed.tool_calls, plain.tool_calls):
            failed.append("tool.stream_arguments_differ")
    return failed, outcome.notes


EXECUTABLE = [doc for doc in catalogue.CHECKS if isinstance(doc.example, catalogue.Example)]


@pytest.mark.parametrize("doc", EXECUTABLE, ids=[doc.name for doc in EXECUTABLE])
def test_each_example_fails_its_check(doc):
    failed, notes = outcome_of(doc)
    assert doc.name in (notes if doc.note else failed), (failed, notes)
    assert set(failed) | set(notes) <= set(catalogue.BY_NAME), "an example emits a name with no entry"


FIXED = [doc for doc in EXECUTABLE if isinstance(doc.example, catalogue.Example) and doc.example.fixed]


@pytest.mark.parametrize("doc", FIXED, ids=[doc.name for doc in FIXED])
def test_each_fixed_answer_passes_its_check(doc):
    """The good half of each bad/good pair: the entry's answer put right fails nothing at all."""
    failed, _notes = outcome_of(doc, doc.example.fixed)
    assert failed == [], failed


def test_every_anthropic_check_has_a_passing_answer():
    anthropic_docs = [doc.name for doc in catalogue.CHECKS if doc.name.startswith("anthropic.")]
    assert len(anthropic_docs) >= 10
    assert set(anthropic_docs) <= {doc.name for doc in FIXED}


def test_names_are_unique_and_in_known_families():
    names = [doc.name for doc in catalogue.CHECKS]
    assert len(names) == len(set(names))
    assert all(NAME.match(name) for name in names), [name for name in names if not NAME.match(name)]
    assert all(doc.meaning and doc.why for doc in catalogue.CHECKS)
    assert all(doc.note == (".note_" in doc.name) for doc in catalogue.CHECKS)


def test_every_name_written_in_the_code_has_an_entry():
    found = set()
    for path in (ROOT / "harness").rglob("*.py"):
        if "data" in path.relative_to(ROOT / "harness").parts or path.name == "catalogue.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.match(node.value):
                found.add(node.value)
    missing = sorted(found - set(catalogue.BY_NAME) - NOT_CHECKS)
    assert not missing, f"checks without a catalogue entry in harness/checks/catalogue.py: {missing}"
    assert len(found) > 40  # the scan does see the checks


def test_docs_checks_md_is_up_to_date():
    committed = (ROOT / catalogue.DOC_PATH).read_text(encoding="utf-8")
    assert committed == catalogue.render_markdown(), (
        "docs/checks.md is stale: regenerate it with `harness checks-doc` (or python -m harness.checks.catalogue)"
    )


def test_each_entry_has_an_anchor_in_the_document():
    text = catalogue.render_markdown()
    for doc in catalogue.CHECKS:
        assert f'<a id="{doc.anchor}"></a>' in text and f"](#{doc.anchor})" in text


def test_the_checks_doc_command_writes_and_checks_the_file(tmp_path, capsys):
    from harness.cli.main import main

    out = tmp_path / "checks.md"
    assert main(["checks-doc", "--out", str(out), "--check"]) == 1  # missing: stale
    assert main(["checks-doc", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == catalogue.render_markdown()
    assert main(["checks-doc", "--out", str(out), "--check"]) == 0
    assert "stale" in capsys.readouterr().err
