"""Writes a run folder (rows + run.json) from hand-made rows, for tests of the reporting stages."""

from __future__ import annotations

import json
from pathlib import Path

from harness.core.rows import ResultRow, ResultWriter


def write_run(run_dir: Path, rows: list[ResultRow], meta: dict | None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    with ResultWriter(run_dir / "results.jsonl") as writer:
        for row in rows:
            writer.write(row)
    if meta is not None:
        (run_dir / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    return run_dir
