"""The bug corpus for real, on the subset that installs in seconds: mlx-lm 0.26.3 and 0.27.0, each in
its own environment (built on first use with uv, about 5 s each), play the prompt-cache corruption
of ml-explore/mlx-lm#405 (a stream dropped mid-answer, then the first question again). The release
that has it answers the repeat differently; the release that fixed it answers it the same.
The whole corpus runs through `harness bugs --corpus` (docs/bugs.md), not here."""

from __future__ import annotations

import json

import pytest

from harness.cli.main import main
from harness.server import environments

pytestmark = pytest.mark.integration

ENTRY = "mlx-lm-405-interrupted-stream-corrupts-cache"


@pytest.mark.skipif(environments.find_uv() is None, reason="uv is a harness dependency; this venv lacks it")
def test_the_interrupted_stream_bug_is_flagged_on_its_release_and_clean_on_the_fix(tmp_path, capsys):
    code = main(["bugs", "--servers", "mlx-lm@0.26.3,mlx-lm@0.27.0", "--entries", ENTRY, "--out", str(tmp_path)])
    assert code == 0
    (run_dir,) = tmp_path.iterdir()
    record = json.loads((run_dir / "matrix.json").read_text())
    (entry,) = record["entries"]
    cells = {cell["release"]: cell for cell in entry["cells"]}
    assert cells["0.26.3"]["status"] == "flagged", cells["0.26.3"]
    assert cells["0.26.3"]["fired"] == ["expect.same_answer"]
    assert cells["0.27.0"]["status"] == "clean", cells["0.27.0"]
    assert record["figures"]["recalled"] == [ENTRY] and record["figures"]["false_alarms"] == []
    text = (run_dir / "matrix.md").read_text()
    assert "1 of 1 entries reproducible here flagged" in text
    assert "| **flagged** | clean |" in text


def test_harness_bugs_lists_the_corpus(capsys):
    assert main(["bugs"]) == 0
    out = capsys.readouterr().out
    assert "ml-explore/mlx-lm#405" in out and "cubist38/mlx-openai-server#216" in out
    assert "[not reproducible here:" in out
