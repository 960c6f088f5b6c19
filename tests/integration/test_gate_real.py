"""The gate does fail: a real run where the "new" server is the legacy stand-in itself (no working
KV cache), started under another name, must fail the cache gate with a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main as cli
from harness.run.config import load_config
from harness.run.runner import Runner
from harness.server.process import stop_all

pytestmark = pytest.mark.integration

HARNESS_TOML = """
servers = ["legacy", "legacy-as-new"]
scenarios = ["short-chat"]
reference = "legacy"
out = "{out}"

[server.legacy-as-new]
label = "legacy stand-in posing as the new server"
command = [
    "{{python}}", "{{programs}}/legacy_server.py", "--model", "{{model}}", "--port", "{{port}}", "--host", "{{host}}",
]
ready_path = "/health"
cache_dirs = ["{{home}}/.anyclaude/kv-cache"]
env = {{ MLX_KV_CACHE_DIR = "{{home}}/.anyclaude/kv-cache" }}

[gate]
min_follow_up_speedup = 3.0
max_first_request_slowdown = 1.5
min_cache_files = 1
require_cache_reuse = true
"""


def test_gate_fails_when_the_new_server_has_no_cache(tmp_path, capsys):
    config_file = tmp_path / "harness.toml"
    config_file.write_text(HARNESS_TOML.format(out=tmp_path / "reports"), encoding="utf-8")
    config = load_config(config_file, project_dir=Path(__file__).resolve().parents[2])
    try:
        run_dir = Runner(config).run()
    finally:
        stop_all()
    capsys.readouterr()

    code = cli.main(["gate", str(run_dir), "--config", str(config_file)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "FAIL  cache.files              legacy-as-new: 0 files" in out
    assert "FAIL  cache.reuse              legacy-as-new" in out
    assert "FAIL  speedup.follow_up        legacy-as-new vs legacy [short-chat]" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("gate: FAILED") and "cache.files" in last
    # Both servers answered: the failure is the cache, not a run that fell over.
    assert "PASS  run.coverage             legacy-as-new: 1/1 scenarios recorded" in out
