"""Gate, claims and README-table verdicts on run folders written the way the runner writes them."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import run_folder

from harness.analysis.summary import summarize
from harness.cli import main as cli
from harness.cli.pytest_plugin import benchmark_figures
from harness.core.errors import ConfigError
from harness.core.rows import ResultRow
from harness.presentation.readme_table import END, START, replace_between_markers, update_file
from harness.verdicts.claims import (
    CONFIRMED,
    NOT_COMPARABLE,
    NOT_MEASURED,
    REFUTED,
    parse_claims_or_fail,
    parse_ratio,
    parse_seconds,
    ratio_verdict,
    read_claims,
    report_markdown,
    sentiment,
    verify_claims,
)
from harness.verdicts.gate import evaluate, failed, gate_settings, verdict_line

ARCHIVE = Path(__file__).resolve().parents[1] / "fixtures" / "archive-readme.md"

META = {
    "run_id": "r1",
    "created_at": "2026-01-02T03:04:05",
    "finished_at": "2026-01-02T03:10:00",
    "status": "complete",
    "reference_server": "legacy",
    "config": {"servers": ["legacy", "mlx-textgen"], "repeats": 2},
    "scenario_models": {"agent-session": {"name": "tiny"}},
    "model": {"path": "/m/tiny", "name": "tiny", "checksum": "abcdef0123456789", "builtin": True},
    "machine": {"platform": "Linux-x86_64", "processor": "x86_64", "cpu_count": 2, "memory_gb": 8},
    "servers": {
        "legacy": {"label": "legacy stand-in", "quirks": {}},
        "mlx-textgen": {"label": "MLX-Textgen", "quirks": {}},
    },
}

# server -> (first request s, follow-up s, caches?)
FAST = {"legacy": (2.2, 10.0, False), "mlx-textgen": (2.0, 0.1, True)}


def make_rows(
    profile=FAST,
    repeats: int = 2,
    turns: int = 4,
    scenario: str = "agent-session",
    failing: dict[str, list[str]] | None = None,
) -> list[ResultRow]:
    rows, t = [], 0.0
    for server, (first, follow, caches) in profile.items():
        for repeat in range(repeats):
            for turn in range(turns):
                t += 1
                new = 3_000_000 if caches and turn == 0 else 0
                rows.append(
                    ResultRow(
                        run_id="r1",
                        server=server,
                        scenario=scenario,
                        variant="stream",
                        repeat=repeat,
                        turn=turn,
                        request_kind="first" if turn == 0 else "follow-up",
                        stream=True,
                        started_at=t,
                        total_s=(first if turn == 0 else follow) * (1 + 0.01 * turn),
                        ttft_s=0.1,
                        prompt_tokens=2000,
                        completion_tokens=32,
                        cache_reused=(caches and turn > 0) if caches else None,
                        cache_files_new=1 if new else 0,
                        cache_bytes_new=new,
                        cache_bytes_total=new * (repeat + 1),
                        cache_files=[f"homes/x/kv-{repeat}.safetensors"] if new else [],
                        checks_failed=(failing or {}).get(server, []) if turn == 1 else [],
                    )
                )
    return rows


def write_run(run_dir: Path, rows: list[ResultRow], meta: dict | None = META) -> Path:
    return run_folder.write_run(run_dir, rows, meta)


def gate_cli(run_dir: Path, tmp_path: Path, monkeypatch, capsys, gate_toml: str = "", *extra: str):
    """`harness gate` with the project configuration of a scratch folder."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "harness.toml").write_text("[gate]\n" + gate_toml, encoding="utf-8")
    monkeypatch.chdir(project)
    code = cli.main(["gate", str(run_dir), *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


# --- claims ------------------------------------------------------------------------------------


def test_archive_table_is_parsed():
    claims = read_claims(ARCHIVE).claims
    assert claims[0].header == ["Metric", "vllm-mlx-server.py", "MLX-Textgen", "Improvement"]
    assert [c.subject for c in claims] == [
        "First request",
        "Follow-up requests",
        "KV Cache",
        "Cache files",
        "Code complexity",
    ]
    assert claims[1].cells[2] == "**~0.55 seconds**" and claims[0].line == 9 and claims[0].form == "table"


def test_figures_in_claim_cells():
    assert parse_ratio("**15x faster**") == 15 and parse_ratio("2× slower") == 0.5 and parse_ratio("N/A") is None
    assert parse_seconds("~50 seconds") == 50 and parse_seconds("**~0.55 seconds**") == 0.55
    assert parse_seconds("500 ms") == 0.5 and parse_seconds("2 min") == 120 and parse_seconds("pip package") is None
    assert sentiment("❌ Broken") is False and sentiment("✅ Working") is True and sentiment("None created") is False
    assert sentiment("26MB safetensors") is None


def test_tolerance_rule():
    assert ratio_verdict(15, 7.5) == CONFIRMED and ratio_verdict(15, 7.4) == REFUTED
    assert ratio_verdict(15, 40) == CONFIRMED and ratio_verdict(15, 1.1) == REFUTED
    assert ratio_verdict(2, 0.9) == REFUTED  # the new server was slower
    assert ratio_verdict(0.5, 0.9) == CONFIRMED and ratio_verdict(0.5, 1.2) == REFUTED  # a claimed 2x slow-down
    assert ratio_verdict(15, 5.1, tolerance=3) == CONFIRMED


def test_archive_claims_against_a_run():
    report = verify_claims(read_claims(ARCHIVE), summarize(make_rows()), META)
    by = {v.metric: v for v in report.verdicts}
    first = by["First request"]
    assert first.verdict == REFUTED and first.measured.startswith("1.1x")
    assert "another machine" in first.reason and ">= 7.5x" in first.reason
    follow = by["Follow-up requests"]  # 10 s -> 0.1 s: 100x measured against 90x claimed
    assert follow.verdict == CONFIRMED and follow.measured.startswith("100x")
    assert by["KV Cache"].verdict == CONFIRMED
    files = by["Cache files"]
    assert files.verdict == CONFIRMED and "6.0 MB" in files.measured and ".safetensors" in files.measured
    assert "reported, not compared" in files.reason
    assert by["Code complexity"].verdict == NOT_MEASURED and "not guessed" in by["Code complexity"].reason
    assert report.columns == {
        "vllm-mlx-server.py": "legacy (reference, by position)",
        "MLX-Textgen": "mlx-textgen (matched by name)",
    }
    md = report_markdown(report)
    assert "compared as ratios only" in md and "| First request |" in md and "**refuted**" in md


def test_claims_refuted_when_the_new_server_has_no_cache():
    nocache = {"legacy": (2.0, 2.0, False), "mlx-textgen": (2.0, 2.0, False)}
    by = {v.metric: v for v in verify_claims(read_claims(ARCHIVE), summarize(make_rows(nocache)), META).verdicts}
    assert by["Cache files"].verdict == REFUTED and by["Follow-up requests"].verdict == REFUTED
    assert by["KV Cache"].verdict == NOT_COMPARABLE  # silent about reuse: neither shown working nor broken


def test_claims_not_comparable_without_the_reference():
    rows = [r for r in make_rows() if r.server == "mlx-textgen"]
    errors = [r.model_copy(update={"error": "HTTP 422", "total_s": 0.01}) for r in make_rows() if r.server == "legacy"]
    by = {v.metric: v for v in verify_claims(read_claims(ARCHIVE), summarize(rows + errors), META).verdicts}
    assert by["First request"].verdict == NOT_COMPARABLE and "HTTP 422" in by["First request"].reason
    assert by["Follow-up requests"].verdict == NOT_COMPARABLE


def test_readme_without_a_claim_is_an_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no claim found"):
        parse_claims_or_fail("# Title\n\nJust prose, | and a pipe.\n", "x.md")
    fenced = "```\n| Metric | a | b |\n|---|---|---|\n| First request | 1 s | 2 s |\n```\n"
    with pytest.raises(ConfigError, match=r"no claim found; 1 claim-like line\(s\) skipped"):
        parse_claims_or_fail(fenced, "fenced.md")
    readme = tmp_path / "README.md"
    readme.write_text("# Nothing here\n", encoding="utf-8")
    run_dir = write_run(tmp_path / "run", make_rows())
    assert cli.main(["claims", str(readme), "--run", str(run_dir)]) == 2
    assert "README.md: no claim found" in capsys.readouterr().err


def test_claims_cli_and_bad_run_folder(tmp_path, capsys):
    run_dir = write_run(tmp_path / "run", make_rows())
    assert cli.main(["claims", str(ARCHIVE), "--run", str(run_dir)]) == 0
    assert "| Cache files |" in capsys.readouterr().out
    assert cli.main(["claims", str(ARCHIVE), "--run", str(run_dir), "--strict"]) == 1
    capsys.readouterr()
    assert cli.main(["claims", str(ARCHIVE), "--run", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "run.json").write_text(json.dumps(META))
    assert cli.main(["claims", str(ARCHIVE), "--run", str(tmp_path / "empty")]) == 2
    assert "no results.jsonl" in capsys.readouterr().err


# --- README table --------------------------------------------------------------------------------

README = "# Project\n\nIntro  \n\n" + START + "\nold table\n" + END + "\n\n## After\ntrailing text \n"


def test_marker_update_is_idempotent_and_keeps_the_rest(tmp_path):
    path = tmp_path / "README.md"
    path.write_bytes(README.encode())
    assert update_file(path, "| a | b |\n|---|---|\n| 1 | 2 |") is True
    text = path.read_bytes().decode()
    head, tail = README.split(START)[0], README.split(END)[1]
    assert text.startswith(head + START + "\n| a | b |") and text.endswith(END + tail)
    before = path.read_bytes()
    assert update_file(path, "| a | b |\n|---|---|\n| 1 | 2 |") is False
    assert path.read_bytes() == before


def test_marker_update_keeps_crlf(tmp_path):
    path = tmp_path / "README.md"
    path.write_bytes(README.replace("\n", "\r\n").encode())
    update_file(path, "table\nline two")
    data = path.read_bytes()
    assert b"\r\ntable\r\nline two\r\n" + END.encode() in data and b"\n" not in data.replace(b"\r\n", b"")


def test_no_markers_says_how_to_add_them(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no table markers") as err:
        replace_between_markers("# x\n", "t", "README.md")
    assert START in str(err.value) and END in str(err.value)
    with pytest.raises(ConfigError, match="exactly one"):
        replace_between_markers(START + START + END, "t")
    with pytest.raises(ConfigError, match="comes before"):
        replace_between_markers(END + "\n" + START, "t")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n", encoding="utf-8")
    run_dir = write_run(tmp_path / "run", make_rows())
    assert cli.main(["readme", str(run_dir), "--update", str(readme)]) == 2
    assert START in capsys.readouterr().err and readme.read_text() == "# x\n"


def test_readme_command_renders_and_updates(tmp_path, capsys):
    run_dir = write_run(tmp_path / "run", make_rows())
    readme = tmp_path / "README.md"
    readme.write_text(README, encoding="utf-8")
    assert cli.main(["readme", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "| Metric | legacy | mlx-textgen | Improvement |" in printed and "Model: tiny" in printed
    assert "Date: 2026-01-02" in printed and "2 CPUs" in printed and "from run `r1`" in printed
    assert cli.main(["readme", str(run_dir), "--update", str(readme)]) == 0
    assert "updated" in capsys.readouterr().out
    first = readme.read_bytes()
    assert cli.main(["readme", str(run_dir), "--update", str(readme)]) == 0
    assert "already up to date" in capsys.readouterr().out and readme.read_bytes() == first
    assert first.decode().endswith(END + "\n\n## After\ntrailing text \n")


# --- gate --------------------------------------------------------------------------------------


def test_gate_passes_on_a_good_run(tmp_path, monkeypatch, capsys):
    run_dir = write_run(tmp_path / "run", make_rows())
    code, out, _ = gate_cli(run_dir, tmp_path, monkeypatch, capsys)
    assert code == 0, out
    assert "PASS  speedup.follow_up" in out and "mlx-textgen vs legacy [agent-session]: 100.00x" in out
    assert "PASS  cache.files" in out and "PASS  cache.reuse" in out and "threshold: >= 3x" in out
    assert out.strip().splitlines()[-1] == "gate: passed (6 gates)"


def test_gate_fails_without_a_cache(tmp_path, monkeypatch, capsys):
    nocache = {"legacy": (2.0, 2.0, False), "mlx-textgen": (2.0, 2.0, False)}
    run_dir = write_run(tmp_path / "run", make_rows(nocache))
    code, out, _ = gate_cli(run_dir, tmp_path, monkeypatch, capsys)
    assert code == 1
    assert "FAIL  cache.files              mlx-textgen: 0 files  (threshold: >= 1)" in out
    assert "FAIL  cache.reuse" in out and "FAIL  speedup.follow_up" in out and "PASS  speedup.first" in out
    assert "gate: FAILED (3 of 6 gates failed: speedup.follow_up, cache.files, cache.reuse)" in out


def test_incomplete_run_is_gated_on_what_it_has(tmp_path, monkeypatch, capsys):
    rows = [r for r in make_rows() if r.server == "legacy" or (r.repeat == 0 and r.turn == 0)]
    meta = dict(META, status="interrupted", scenario_models={"agent-session": {}, "short-chat": {}})
    run_dir = write_run(tmp_path / "run", rows, meta)
    code, out, _ = gate_cli(run_dir, tmp_path, monkeypatch, capsys)
    assert code == 1
    assert "FAIL  run.complete             r1: interrupted" in out
    assert "FAIL  run.coverage             mlx-textgen: 0/2 scenarios recorded" in out
    assert "agent-session (1/2 repeats), short-chat (0/2 repeats)" in out
    assert "FAIL  speedup.follow_up        mlx-textgen vs legacy [agent-session]: missing" in out
    assert "no follow-up request recorded on mlx-textgen" in out
    assert "PASS  speedup.first" in out  # what it has is still gated


def test_gate_with_only_the_reference_or_no_run_json(tmp_path):
    only_ref = summarize([r for r in make_rows() if r.server == "legacy"])
    results = evaluate(only_ref, dict(META, config={"servers": ["legacy"], "repeats": 2}), {})
    assert [r.gate for r in failed(results)] == ["run.servers"]
    results = evaluate(summarize(make_rows()), {}, {})
    assert failed(results)[0].gate == "run.complete" and failed(results)[0].value == "missing"


def test_gate_configuration_errors(tmp_path, monkeypatch, capsys):
    with pytest.raises(ConfigError, match=r"unknown metric 'speedup_bogus'.*speedup_follow_up"):
        gate_settings({"min_ratios": {"speedup_bogus": 1.0}})
    with pytest.raises(ConfigError, match="unknown gate setting 'min_speed'"):
        gate_settings({"min_speed": 2})
    with pytest.raises(ConfigError, match=r"min_follow_up_speedup: Input should be a valid number \(got 'fast'\)"):
        gate_settings({"min_follow_up_speedup": "fast"})
    assert gate_settings({"min_follow_up_speedup": False}).min_follow_up_speedup is None
    run_dir = write_run(tmp_path / "run", make_rows())
    code, _out, err = gate_cli(run_dir, tmp_path, monkeypatch, capsys, 'baseline_metrics = ["first_latency"]\n')
    assert code == 2 and "unknown metric 'first_latency'" in err and "harness.toml" in err
    assert "field 'gate.baseline_metrics'" in err
    code, _, err = gate_cli(tmp_path / "missing", tmp_path, monkeypatch, capsys)
    assert code == 2 and "does not exist" in err


def test_behaviour_and_extra_ratio_gates(tmp_path):
    rows = make_rows(failing={"mlx-textgen": ["tool.calls_missing"]})
    summary = summarize(rows)
    info = next(r for r in evaluate(summary, META, {}) if r.gate == "behaviour.regressions")
    assert info.passed is None and "1 regressions" in info.line() and "INFO" in info.line()
    gated = evaluate(summary, META, {"no_behaviour_regressions": True, "min_ratios": {"speedup_first": 2}})
    names = [r.gate for r in failed(gated)]
    assert names == ["ratio.speedup_first", "behaviour.regressions"]
    assert "tool.calls_missing" in failed(gated)[1].line()
    assert "2 of" in verdict_line(gated)


def test_baseline_gate(tmp_path, monkeypatch, capsys):
    baseline = write_run(tmp_path / "base", make_rows())
    slower = {"legacy": (2.2, 10.0, False), "mlx-textgen": (2.0, 0.5, True)}  # 20x instead of 100x
    run_dir = write_run(tmp_path / "run", make_rows(slower))
    code, out, _ = gate_cli(run_dir, tmp_path, monkeypatch, capsys, "", "--baseline", str(baseline))
    assert code == 1
    assert "FAIL  baseline.speedup_follow_up" in out and "baseline 100.00x - 25%" in out
    assert "PASS  baseline.speedup_first" in out
    code, out, _ = gate_cli(baseline, tmp_path, monkeypatch, capsys, "", "--baseline", str(baseline))
    assert code == 0


def test_benchmark_figures_are_json_safe():
    rows = [r for r in make_rows() if r.request_kind == "first" or r.server == "legacy"]
    figures = benchmark_figures(summarize(rows), META)
    text = json.dumps(figures, allow_nan=False)
    assert figures["servers"]["mlx-textgen"]["cache_files"] == 2
    assert figures["servers"]["mlx-textgen"]["follow_up_total_s"] is None
    assert math.isclose(figures["ratios"]["mlx-textgen"]["speedup_first"], 1.1)
    assert "drop_in" in text


# --- the pytest plugin ---------------------------------------------------------------------------

PLUGIN_PROBE = """
import pytest

@pytest.mark.live_benchmark
def test_live(benchmark):
    benchmark.extra_info["figure"] = 1.5
    assert benchmark.pedantic(lambda: 42, rounds=1, iterations=1) == 42

def test_plain():
    pass
"""


def test_benchmark_flag_skips_and_coexists_with_pytest_benchmark_options(tmp_path):
    import subprocess
    import sys

    (tmp_path / "test_probe.py").write_text(PLUGIN_PROBE, encoding="utf-8")

    # The probe is a session of its own: when this suite runs on xdist workers, the worker's
    # variables must not reach it (pytest-benchmark disables itself inside a worker).
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_XDIST")}

    def pytest_run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args, "test_probe.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    plain = pytest_run()
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "1 passed, 1 skipped" in plain.stdout and "pass --benchmark to start the servers" in plain.stdout
    out = tmp_path / "bench.json"
    live = pytest_run(
        "--benchmark", f"--benchmark-json={out}", "--benchmark-save=probe", f"--benchmark-storage={tmp_path / 'store'}"
    )
    assert live.returncode == 0, live.stdout + live.stderr
    assert "2 passed" in live.stdout
    saved = json.loads(out.read_text())
    assert saved["benchmarks"][0]["name"] == "test_live" and saved["benchmarks"][0]["extra_info"] == {"figure": 1.5}
    compare = pytest_run(
        "--benchmark",
        "--benchmark-compare",
        "--benchmark-compare-fail=min:1000%",
        f"--benchmark-storage={tmp_path / 'store'}",
    )
    assert compare.returncode == 0, compare.stdout + compare.stderr


def test_gate_when_the_reference_recorded_nothing():
    rows = [r for r in make_rows() if r.server == "mlx-textgen"]
    results = evaluate(summarize(rows, reference="legacy"), META, {})
    by = {(r.gate, r.subject): r for r in results}
    assert by[("run.reference", "legacy")].passed is False
    assert by[("run.coverage", "legacy")].passed is False
    follow = by[("speedup.follow_up", "mlx-textgen vs legacy [agent-session]")]
    assert follow.passed is False and "no follow-up request recorded on legacy" in follow.detail
    assert by[("cache.files", "mlx-textgen")].passed is True  # what it has is still gated


def test_a_named_table_is_written_between_its_own_markers_only():
    from harness.presentation.readme_table import markers

    start, end = markers("leaving")
    text = f"intro\n{START}\nold default\n{END}\nmiddle\n{start}\nold leaving\n{end}\ntail\n"
    updated = replace_between_markers(text, "new leaving table", table="leaving")
    assert "old default" in updated and "old leaving" not in updated
    assert updated.index(start) < updated.index("new leaving table") < updated.index(end)
    with pytest.raises(ConfigError, match="harness:other:start"):
        replace_between_markers(text, "x", table="other")
