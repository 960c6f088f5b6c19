"""`harness compare` on real runs: servers the harness starts and times itself. The server under test
is the fault-injecting test server (tests/faultserver/fault_server.py) declared in a harness.toml,
answering after a fixed latency; a run where that latency is raised is a deliberately slowed server.
Two runs at the same latency compare without a regression; the slowed one fails
--fail-on-regression. (The two real runs of the default comparison are compared by hand, not here:
they take minutes.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from declared_servers import FAULT_SERVER

from harness.cli import main as cli
from harness.run.config import load_config
from harness.run.runner import Runner
from harness.server.process import stop_all

pytestmark = pytest.mark.integration


HARNESS_TOML = """
servers = ["reference", "service"]
reference = "reference"
scenarios = ["{scenario}"]
out = "{out}"

[server.reference]
command = ["{python}", "{fault}", "--port", "{{port}}", "--host", "{{host}}", "--model", "{{model}}",
           "--latency", "0.05"]

[server.service]
command = ["{python}", "{fault}", "--port", "{{port}}", "--host", "{{host}}", "--model", "{{model}}",
           "--latency", "{latency}"]
"""


def scenario(tmp_path: Path) -> Path:
    data = {
        "name": "chat",
        "system": "You are a test assistant.",
        "params": {"max_tokens": 8},
        "stream": False,
        "turns": [{"user": f"Question {i}?", "reply": {"content": f"Answer {i}."}} for i in range(10)],
    }
    path = tmp_path / "chat.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def run(tmp_path: Path, name: str, latency: float) -> Path:
    config_file = tmp_path / f"{name}.toml"
    config_file.write_text(
        HARNESS_TOML.format(
            scenario=scenario(tmp_path), out=tmp_path / name, python=sys.executable, fault=FAULT_SERVER, latency=latency
        ),
        encoding="utf-8",
    )
    try:
        return Runner(load_config(config_file, project_dir=tmp_path)).run()
    finally:
        stop_all()


def test_compare_passes_on_a_repeat_and_fails_on_a_slowed_server(tmp_path, capsys, leftover_servers):
    before = run(tmp_path, "before", 0.2)
    again = run(tmp_path, "again", 0.2)
    slowed = run(tmp_path, "slowed", 0.4)
    assert leftover_servers() == []
    capsys.readouterr()

    assert cli.main(["compare", str(before), str(again), "--fail-on-regression", "25"]) == 0
    out = capsys.readouterr().out
    assert "| chat | service | follow-ups, total time |" in out and "**No regression** beyond 25%" in out

    assert cli.main(["compare", str(before), str(slowed), "--fail-on-regression", "25"]) == 1
    out = capsys.readouterr().out
    assert "service · chat · follow-ups, total time: +" in out and "in " + slowed.name in out
    assert "reference · chat" not in out.split("regression(s)")[1]  # the unchanged server did not regress
    assert (slowed / f"compare-vs-{before.name}.html").is_file()
