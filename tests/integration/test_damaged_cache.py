"""Each damaged-cache fault against the real MLX-Textgen on the Hermes tool model: one run of the
built-in ``damaged-cache`` scenario (its first two turns, then the rest once per damage, each on a
new server over a damaged copy of the cache), shared by one test per damage that checks what its row
records. The outcomes pinned here are what MLX-Textgen 0.2.1 was measured to do; a new release that
does better fails the test that describes the old behaviour, on purpose."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.core.rows import ResultRow, read_rows
from harness.presentation.report import build_report
from harness.run.config import load_config
from harness.run.runner import Runner

pytestmark = pytest.mark.integration

FAULTS = ["intact", "empty", "truncate", "zeros", "delete-index", "read-only", "full-disk"]


@pytest.fixture(scope="module")
def damaged_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("damaged")
    config = load_config(
        overrides={
            "servers": ["mlx-textgen"],
            "reference": "mlx-textgen",
            "scenarios": ["damaged-cache"],
            "out": str(out),
            # A hang must show as one, not hold the suite for the default five minutes.
            "request_timeout_s": 60.0,
            "idle_timeout_s": 30.0,
            "ready_timeout_s": 60.0,
        },
        project_dir=out,
    )
    return Runner(config).run()


def first_after(run_dir: Path, fault: str) -> ResultRow:
    """The first request after ``fault`` was done to the copy: the row that says what happened."""
    rows = [r for r in read_rows(run_dir) if r.fault == fault and r.fault_outcome is not None]
    assert len(rows) == 1, f"{fault}: {len(rows)} rows with an outcome"
    row = rows[0]
    assert row.turn == 2 and row.request_kind == "restart" and row.variant == f"no-stream,damage={fault}"
    return row


def later(run_dir: Path, fault: str) -> list[ResultRow]:
    return [r for r in read_rows(run_dir) if r.fault == fault and r.fault_outcome is None]


def test_every_damage_was_played_and_nothing_is_left_mounted(damaged_run):
    rows = read_rows(damaged_run)
    assert [r.turn for r in rows if r.fault is None] == [0, 1]
    assert [r.fault for r in rows if r.fault_outcome is not None] == FAULTS
    mounts = Path("/proc/mounts").read_text() if Path("/proc/mounts").exists() else ""
    assert str(damaged_run) not in mounts
    # Every copy started from the same two cached prompts; the original was left as it was.
    homes = sorted(path.name for path in (damaged_run / "homes").iterdir())
    assert len(homes) == 1 + len(FAULTS)
    meta = json.loads((damaged_run / "run.json").read_text())
    assert meta["scenario_info"]["damaged-cache"]["cache_damage"] == FAULTS
    text = build_report(damaged_run)["summary_md"].read_text()
    assert "## Damaged cache" in text and "| damaged-cache | mlx-textgen | truncate |" in text


def test_intact_copy_is_reused_after_the_restart(damaged_run):
    row = first_after(damaged_run, "intact")
    assert row.fault_action.startswith("copied as it was: 2 files")
    assert "config.json repointed at the copy" in row.fault_action  # MLX-Textgen's absolute cache root
    assert row.fault_outcome == "answered" and row.cache_reused is True
    assert [call["name"] for call in row.tool_calls] == ["Bash"]


def test_emptied_copy_is_a_cache_miss_with_the_same_answer(damaged_run):
    row = first_after(damaged_run, "empty")
    assert row.fault_action == "emptied: 2 files removed (config.json repointed at the copy)"
    assert row.fault_outcome == "cache-miss" and row.cache_reused is False
    assert "same answer as on the intact copy" in row.fault_evidence


def test_truncated_cache_file_gives_a_wrong_answer(damaged_run):
    row = first_after(damaged_run, "truncate")
    assert " cut from " in row.fault_action and row.fault_action.startswith("cache_")
    # MLX-Textgen 0.2.1 loads the cut file without a word and decodes from garbage.
    assert row.fault_outcome == "wrong-answer", row.fault_evidence
    assert row.http_status == 200 and row.cache_reused is True
    assert "differs from intact" in row.fault_evidence and not row.tool_calls


def test_cache_file_of_zeros_is_refused_with_a_clear_error_every_time(damaged_run):
    row = first_after(damaged_run, "zeros")
    assert "overwritten with" in row.fault_action and "of zeros" in row.fault_action
    assert row.fault_outcome == "error" and row.http_status == 500
    assert "Invalid json header length" in row.fault_evidence and "server log" in row.fault_evidence
    # It never recovers: the damaged file is chosen again for the next request.
    assert [r.http_status for r in later(damaged_run, "zeros")] == [500]


def test_deleted_index_is_a_cache_miss_then_a_new_cache(damaged_run):
    row = first_after(damaged_run, "delete-index")
    assert row.fault_action.startswith("removed cached_prompts.json")
    assert row.fault_outcome == "cache-miss" and "same answer" in row.fault_evidence
    assert [r.cache_reused for r in later(damaged_run, "delete-index")] == [True]


def test_read_only_cache_dir_fails_every_request(damaged_run):
    row = first_after(damaged_run, "read-only")
    if row.fault_action.startswith("not applied"):
        pytest.skip(row.fault_action)
    assert row.fault_outcome == "error" and row.http_status == 500
    # A read-only bind mount as root; without root the write bits are removed instead.
    assert "Read-only file system" in row.fault_evidence or "Permission denied" in row.fault_evidence
    assert [r.http_status for r in later(damaged_run, "read-only")] == [500]


def test_nearly_full_disk_answers_and_silently_loses_the_cache(damaged_run):
    row = first_after(damaged_run, "full-disk")
    if row.fault_action.startswith("not applied"):
        pytest.skip(row.fault_action)
    assert "tmpfs" in row.fault_action and "65,536 bytes free" in row.fault_action
    assert row.fault_outcome == "answered" and row.http_status == 200
    # The new cache did not fit, the old one was dropped first, and no error was logged or returned:
    # the next request finds no cache.
    [after] = later(damaged_run, "full-disk")
    assert after.http_status == 200 and after.cache_reused is False
    copy = next(p for p in (damaged_run / "homes").iterdir() if p.name.endswith("damage-full-disk"))
    assert not os.path.ismount(copy / ".cache" / "mlx_textgen" / "prompt_cache")
