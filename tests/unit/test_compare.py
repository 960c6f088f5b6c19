"""`harness compare RUN_A RUN_B`: the same servers and scenarios across run folders, side by side, in
markdown and HTML; --fail-on-regression; runs of another model, machine or scenario set refused (or
flagged on request). On hand-made run folders: a slowed server is a run whose rows say so."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import run_folder

from harness.analysis.compare import compare_runs, load_runs, regressions
from harness.cli import main as cli
from harness.core.rows import ResultRow

META = {
    "run_id": "a",
    "status": "complete",
    "created_at": "2026-01-02T03:04:05",
    "reference_server": "legacy",
    "config": {"servers": ["legacy", "mlx-textgen"], "repeats": 1, "concurrency": 1, "context_tokens": None},
    "model": {"name": "tiny", "checksum": "abc"},
    "scenario_models": {"agent-session": {"checksum": "abc"}},
    "machine": {"platform": "Linux-x86_64", "processor": "x86_64", "cpu_count": 2, "memory_gb": 8},
    "versions": {"mlx_textgen": "0.2.1"},
    "servers": {},
}


def make_rows(run_id: str, slow: float = 1.0, seed: int = 0, scenario: str = "agent-session") -> list[ResultRow]:
    """legacy and mlx-textgen, 12 follow-ups each with a few percent of noise; mlx-textgen's times
    multiplied by ``slow``."""
    rng = random.Random(seed)
    rows, t = [], 0.0
    for server, (first, follow) in {"legacy": (10.0, 9.0), "mlx-textgen": (4.0, 1.0)}.items():
        factor = slow if server == "mlx-textgen" else 1.0
        for turn in range(13):
            t += 1
            base = first if turn == 0 else follow
            total = base * factor * (1 + rng.uniform(-0.04, 0.04))
            rows.append(
                ResultRow(
                    run_id=run_id,
                    server=server,
                    scenario=scenario,
                    variant="stream",
                    turn=turn,
                    request_kind="first" if turn == 0 else "follow-up",
                    stream=True,
                    started_at=t,
                    total_s=total,
                    ttft_s=total * 0.8,
                    completion_tokens=32,
                    decode_tok_s=100.0 / factor * (1 + rng.uniform(-0.04, 0.04)) if server == "mlx-textgen" else None,
                )
            )
    return rows


def write(tmp_path: Path, name: str, rows: list[ResultRow], **meta_changes) -> Path:
    meta = copy.deepcopy(META)
    meta["run_id"] = name
    for key, value in meta_changes.items():
        meta[key] = value
    return run_folder.write_run(tmp_path / name, rows, meta)


def test_two_runs_of_the_same_servers_print_a_table_and_exit_0(tmp_path, capsys):
    a = write(tmp_path, "a", make_rows("a", seed=1))
    b = write(tmp_path, "b", make_rows("b", seed=2))
    assert cli.main(["compare", str(a), str(b), "--fail-on-regression", "20"]) == 0
    out = capsys.readouterr().out
    assert "# Runs compared with a" in out and "Same model, machine and scenarios in every run." in out
    assert "| agent-session | mlx-textgen | follow-ups, total time | 0.995 s [0.978 s – 1 s] (n=12) | b |" in out
    assert "**No regression** beyond 20% (significant changes only)." in out
    assert (b / "compare-vs-a.md").is_file() and (b / "compare-vs-a.html").read_text().startswith("<!DOCTYPE html>")
    assert "| b | agent-session | mlx-textgen vs legacy | speedup_follow_up | 9." in out


def test_a_slowed_server_is_a_regression(tmp_path, capsys):
    a = write(tmp_path, "a", make_rows("a", seed=1))
    slowed = write(tmp_path, "slowed", make_rows("slowed", slow=1.5, seed=2))
    assert cli.main(["compare", str(a), str(slowed), "--fail-on-regression", "20", "--out", str(tmp_path / "o")]) == 1
    out = capsys.readouterr().out
    assert "**3 regression(s)** beyond 20% (significant):" in out
    assert "mlx-textgen · agent-session · follow-ups, total time: +50% in slowed" in out
    assert "mlx-textgen · agent-session · decode rate: -32% in slowed" in out
    assert "| 1.50x | 1.46x – 1.55x | **+50% (slower)** |" in out
    # The first request (one sample) is 55% slower too, but one sample makes no interval: not counted.
    assert "| 1.55x | – | +55% (slower); too few samples for a CI |" in out
    # Without the option the same comparison exits 0; with a bar above the change, too.
    assert cli.main(["compare", str(a), str(slowed), "--out", str(tmp_path / "o")]) == 0
    assert cli.main(["compare", str(a), str(slowed), "--fail-on-regression", "60", "--out", str(tmp_path / "o")]) == 0


def test_runs_of_another_model_machine_or_scenario_set_are_refused(tmp_path, capsys):
    a = write(tmp_path, "a", make_rows("a"))
    other_model = write(tmp_path, "m", make_rows("m"), model={"name": "big", "checksum": "zzz"})
    other_machine = write(tmp_path, "h", make_rows("h"), machine=dict(META["machine"], cpu_count=16))
    other_set = write(tmp_path, "s", make_rows("s", scenario="short-chat"))
    for run, why in ((other_model, "another model"), (other_machine, "another machine"),
                     (other_set, "another scenario set")):  # fmt: skip
        assert cli.main(["compare", str(a), str(run)]) == 2
        err = capsys.readouterr().err
        assert "not comparable" in err and why in err and "--allow-mismatch" in err
    assert cli.main(["compare", str(a), str(other_machine), "--allow-mismatch", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "**Not comparable** (compared anyway, on request):" in out and "cpu_count 2 vs 16" in out
    assert cli.main(["compare", str(a)]) == 2
    assert "at least two run folders" in capsys.readouterr().err


def test_the_comparison_frame(tmp_path):
    a = write(tmp_path, "a", make_rows("a", seed=1))
    b = write(tmp_path, "b", make_rows("b", slow=2.0, seed=2))
    comparison = compare_runs(load_runs([a, b]), servers=["mlx-textgen"])
    f = comparison.figures.set_index("metric")
    follow = f.loc["follow_up_total_s"]
    assert follow["server"] == "mlx-textgen" and follow["run"] == "b" and follow["base_n"] == 12
    assert 1.9 < follow["ratio"] < 2.1 and follow["ratio_low"] > 1.8 and follow["significant"] and follow["worse"]
    assert not f.loc["first_total_s", "significant"]  # one sample each: no interval
    found = regressions(comparison, 40)
    assert sorted(found["metric"]) == ["decode_tok_s", "follow_up_total_s", "follow_up_ttft_s"]
    assert regressions(comparison, 150).empty
