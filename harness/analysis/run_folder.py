"""Reading a run folder back: its rows summarised, its run.json and the client replay
(clients.jsonl), any of which may be missing (an interrupted run still has a report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.analysis.summary import Summary, summarize
from harness.clients.answers import read_replay
from harness.core.rows import RESULTS_FILE, RUN_FILE, read_rows


def load_run_meta(run_dir: Path) -> dict[str, Any]:
    """run.json, or {} when it is missing or unreadable (a run killed before writing it)."""
    try:
        data = json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_run(
    run_dir: Path, *, reference: str | None = None, headline: str | None = None
) -> tuple[Summary, dict[str, Any]]:
    """The summary and run.json of a run folder; either file may be missing (an interrupted run)."""
    run_dir = Path(run_dir)
    run_meta = load_run_meta(run_dir)
    rows = read_rows(run_dir / RESULTS_FILE) if (run_dir / RESULTS_FILE).exists() else []
    summary = summarize(
        rows,
        reference=reference or run_meta.get("reference_server"),
        headline=headline,
        like_for_like=run_meta.get("like_for_like_server"),
    )
    summary.clients = read_replay(run_dir)
    return summary, run_meta
