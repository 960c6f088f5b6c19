"""Behaviour gating against an expectations file, and ratios gated like-for-like.

The project's own gate ([tool.harness.gate] in pyproject.toml and the committed expectations file, as
`make benchmark` uses them) passes on the known failures and fails on one injected failure that the
file does not list."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import run_folder

from harness.analysis.summary import summarize
from harness.cli import main as cli
from harness.core.rows import ResultRow
from harness.run.config import load_config
from harness.verdicts.expectations import read_expectations, run_failures, write_expectations
from harness.verdicts.gate import evaluate, failed, gate_run

REPO = Path(__file__).resolve().parents[2]

META = {
    "run_id": "r1",
    "status": "complete",
    "reference_server": "legacy",
    "like_for_like_server": "legacy-capped",
    "config": {"servers": ["legacy", "legacy-capped", "mlx-textgen"], "repeats": 1},
    "scenario_models": {"agent-session": {}, "tools": {}},
    "servers": {},
}
# server -> (first s, follow-up s, caches?)
PROFILE = {"legacy": (10.0, 9.0, False), "legacy-capped": (8.0, 7.0, False), "mlx-textgen": (4.0, 1.0, True)}


def make_rows(failing: dict[tuple[str, str, int], list[str]] | None = None) -> list[ResultRow]:
    """agent-session (4 turns) and tools (2 variants x 2 turns) on each server; ``failing``:
    (server, variant, turn) of the tools scenario -> failed checks."""
    rows, t = [], 0.0
    for server, (first, follow, caches) in PROFILE.items():
        for turn in range(4):
            t += 1
            rows.append(
                ResultRow(
                    run_id="r1", server=server, scenario="agent-session", variant="stream", turn=turn,
                    request_kind="first" if turn == 0 else "follow-up", stream=True, started_at=t,
                    total_s=(first if turn == 0 else follow) * (1 + 0.01 * turn), completion_tokens=32,
                    cache_reused=caches and turn > 0 if caches else None,
                    cache_files_new=1 if caches and turn == 0 else 0, cache_bytes_new=1000 if caches else 0,
                    cache_files=["a.safetensors"] if caches and turn == 0 else [],
                )
            )  # fmt: skip
        for variant in ("stream", "no-stream"):
            for turn in range(2):
                t += 1
                checks = (failing or {}).get((server, variant, turn), [])
                rows.append(
                    ResultRow(
                        run_id="r1", server=server, scenario="tools", variant=variant, turn=turn,
                        request_kind="first" if turn == 0 else "follow-up", stream=variant == "stream",
                        started_at=t, total_s=0.5, checks_failed=checks,
                        check_evidence={c: f"evidence of {c}" for c in checks},
                    )
                )  # fmt: skip
    return rows


KNOWN = {("mlx-textgen", "stream", 0): ["stream.empty", "tool.calls_missing"], ("legacy", "no-stream", 1): ["x.y"]}


def test_expectations_round_trip(tmp_path):
    summary = summarize(make_rows(KNOWN), like_for_like="legacy-capped")
    for name in ("expected.toml", "expected.json"):
        path = tmp_path / name
        assert write_expectations(path, summary, META) == 3
        read = read_expectations(path)
        assert set(read.known) == set(run_failures(summary))
        assert read.servers == ["legacy", "legacy-capped", "mlx-textgen"] and read.run_id == "r1"
        assert read.known[next(f for f in read.known if f.check == "stream.empty")].turns == [0]
    text = (tmp_path / "expected.toml").read_text()
    assert tomllib.loads(text)["known"][0]["server"] == "legacy" and text.startswith("# Behaviour failures")


def gate(tmp_path: Path, rows: list[ResultRow], expectations: Path, **settings) -> list:
    run_dir = run_folder.write_run(tmp_path / "run", rows, META)
    return gate_run(run_dir, {"expectations": str(expectations), **settings})


def test_known_failures_pass_new_ones_fail_and_fixed_ones_are_reported(tmp_path):
    expected = tmp_path / "expectations.toml"
    write_expectations(expected, summarize(make_rows(KNOWN), like_for_like="legacy-capped"), META)

    results = gate(tmp_path / "a", make_rows(KNOWN), expected)
    assert not failed(results)
    known = [r for r in results if r.gate == "behaviour.known"]
    assert len(known) == 2 and all(r.passed is None for r in known)  # a line per server, scenario and variant
    assert ("mlx-textgen [tools stream]", "stream.empty, tool.calls_missing") in {(r.subject, r.value) for r in known}
    assert next(r for r in results if r.gate == "behaviour.expected").value == "3 known, 0 new, 0 fixed"

    worse = {**KNOWN, ("mlx-textgen", "no-stream", 1): ["expect.tool_arguments"]}
    results = gate(tmp_path / "b", make_rows(worse), expected)
    bad = failed(results)
    assert [r.gate for r in bad] == ["behaviour.new_failure", "behaviour.expected"]
    assert bad[0].subject == "mlx-textgen [tools no-stream]" and bad[0].value == "expect.tool_arguments"
    assert "evidence of expect.tool_arguments" in bad[0].detail

    better = {k: v for k, v in KNOWN.items() if k[0] != "legacy"}
    results = gate(tmp_path / "c", make_rows(better), expected)
    fixed = [r for r in results if r.gate == "behaviour.fixed"]
    assert not failed(results) and [(r.subject, r.value) for r in fixed] == [("legacy [tools no-stream]", "x.y")]


def test_a_listed_failure_of_a_scenario_not_run_is_not_fixed(tmp_path):
    expected = tmp_path / "expectations.toml"
    write_expectations(expected, summarize(make_rows(KNOWN), like_for_like="legacy-capped"), META)
    rows = [r for r in make_rows(KNOWN) if r.scenario != "tools"]
    results = gate(tmp_path / "a", rows, expected, scenarios=["agent-session"])
    line = next(r for r in results if r.gate == "behaviour.expected")
    assert line.value == "0 known, 0 new, 0 fixed" and "3 listed failure(s) not run here" in line.detail


def test_write_and_gate_from_the_command_line(tmp_path, monkeypatch, capsys):
    run_dir = run_folder.write_run(tmp_path / "run", make_rows(KNOWN), META)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    assert cli.main(["gate", str(run_dir), "--write-expectations", "known.toml"]) == 0
    assert "known.toml: 3 known behaviour failure(s) of run r1" in capsys.readouterr().out
    (project / "harness.toml").write_text('[gate]\nexpectations = "known.toml"\n', encoding="utf-8")
    assert cli.main(["gate", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "INFO  behaviour.known" in out and "PASS  behaviour.expected" in out
    (project / "harness.toml").write_text('[gate]\nexpectations = "missing.toml"\n', encoding="utf-8")
    assert cli.main(["gate", str(run_dir)]) == 2
    assert "--write-expectations" in capsys.readouterr().err


def test_the_expectations_path_is_relative_to_the_file_that_names_it(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "harness.toml"
    config.write_text('[gate]\nexpectations = "known.toml"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_config(config, project_dir=tmp_path).gate.expectations == str(tmp_path / "conf" / "known.toml")


def test_ratios_are_gated_like_for_like_and_the_like_for_like_server_is_not_gated():
    summary = summarize(make_rows(), like_for_like="legacy-capped")
    results = evaluate(summary, META, {"min_follow_up_speedup": 7.5})
    follow = next(r for r in results if r.gate == "speedup.follow_up")
    # 7.07 s (legacy-capped) / 1.01 s: 7x like-for-like, where 9x as deployed would have passed.
    assert follow.subject == "mlx-textgen vs legacy-capped [agent-session]" and follow.passed is False
    assert {r.subject for r in results if r.gate == "cache.files"} == {"mlx-textgen"}
    assert not any(r.subject == "legacy-capped" for r in results if r.gate.startswith("cache"))


def test_the_project_gate_passes_on_its_known_failures_and_fails_on_an_injected_one(tmp_path):
    settings = load_config(project_dir=REPO).gate
    assert settings.expectations, "the project gates behaviour against its expectations file"
    expected = read_expectations(settings.expectations)
    assert expected.known, "the committed expectations list the default comparison's known failures"

    # Rows that fail exactly the known checks, as the default comparison does, and a clean row for
    # every server and scenario the file covers.
    def row(server: str, scenario: str, variant: str, turn: int, check: str | None) -> ResultRow:
        cut = check[len("stop.") :] if check and check.startswith("stop.") else None
        error = "HTTP 500" if check == "request.error" else None
        checks = [check] if check and not cut and not error else []
        kind = "first" if turn == 0 else "follow-up"
        return ResultRow(run_id="p", server=server, scenario=scenario, variant=variant, turn=turn, request_kind=kind,
                         stream=True, started_at=float(len(rows)), total_s=1.0, checks_failed=checks, error=error,
                         stop_cause=cut)  # fmt: skip

    rows: list[ResultRow] = []
    for server in expected.servers:
        for scenario in expected.scenarios:
            rows.append(row(server, scenario, "clean", 0, None))
    for failure in sorted(expected.known):
        for turn in expected.known[failure].turns or [0]:
            rows.append(row(failure.server, failure.scenario, failure.variant, turn, failure.check))
    t = float(len(rows))
    summary = summarize(rows)
    only_behaviour = {"min_follow_up_speedup": False, "max_first_request_slowdown": False, "min_cache_files": False,
                      "require_cache_reuse": False, "expectations": settings.expectations}  # fmt: skip
    meta = {"status": "complete", "run_id": "p", "config": {"servers": summary.servers}}
    results = evaluate(summary, meta, only_behaviour)
    assert not failed(results), [r.line() for r in failed(results)]
    server, scenario = sorted(expected.known)[0].server, sorted(expected.known)[0].scenario
    injected = ResultRow(run_id="p", server=server, scenario=scenario, variant="stream", turn=9,
                         request_kind="follow-up", stream=True, started_at=t + 1, total_s=1.0,
                         checks_failed=["stream.invented_failure"])  # fmt: skip
    results = evaluate(summarize([*rows, injected]), meta, only_behaviour)
    assert [r.gate for r in failed(results)] == ["behaviour.new_failure", "behaviour.expected"]
    assert failed(results)[0].value == "stream.invented_failure"


@pytest.mark.parametrize("value", [3, ["a"]])
def test_a_bad_expectations_setting_is_a_config_error(value):
    from harness.core.errors import ConfigError
    from harness.verdicts.gate import gate_settings

    with pytest.raises(ConfigError, match="expectations"):
        gate_settings({"expectations": value})


@pytest.mark.parametrize(
    "known, message",
    [
        ('server = "a"\nscenario = "s"\n', "known[0].check: Field required"),
        ('server = "a"\nscenario = "s"\ncheck = "c"\nchek = "c"\n', "known[0].chek: Extra inputs are not permitted"),
        (
            'server = "a"\nscenario = "s"\ncheck = "c"\nturns = ["0"]\n',
            "known[0].turns[0]: Input should be a valid integer",
        ),
        ('server = "a"\nscenario = 3\ncheck = "c"\n', "known[0].scenario: Input should be a valid string (got 3)"),
    ],
)
def test_a_bad_expectations_file_names_the_entry_and_field(tmp_path, known, message):
    from harness.core.errors import ConfigError

    path = tmp_path / "known.toml"
    path.write_text('servers = ["a"]\n\n[[known]]\n' + known, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_expectations(path)
    assert str(path) in str(caught.value) and message in str(caught.value), str(caught.value)
