"""Claude Code (the pinned npm release, headless) as the client: a two-prompt session on the built-in
Hermes tool model, against the legacy stand-in through the converting proxy and against vllm-mlx
(from the server catalogue, built from its own environment on first use) natively. Skipped only
where npm cannot install the client.

The harness process runs with HOME and TMPDIR pointed at empty folders of the test (its own cache
stays where it is, through XDG_CACHE_HOME), so anything the run wrote outside the run folder, where
the client's HOME, TMPDIR and workspace live, would show up there.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness.agent import claude_code
from harness.agent.script import load_script
from harness.agent.session import AgentRun, files_containing
from harness.analysis.agent import load_agent_summary
from harness.core.paths import user_cache_dir
from harness.core.rows import read_rows
from harness.models.builtin import tool_model_path
from harness.presentation.agent_report import write_agent_report
from harness.run.config import load_config

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVERS = ["legacy", "vllm-mlx"]


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def _untracked() -> set[str]:
    """Files of the checkout git does not know and does not ignore."""
    out = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout
    return set(out.splitlines())


@pytest.fixture(scope="module")
def agent_run(tmp_path_factory):
    try:
        claude_code.ensure_installed()
    except claude_code.ClientUnavailable as exc:
        pytest.skip(f"Claude Code cannot be installed here: {exc}")
    work = tmp_path_factory.mktemp("agent")
    outside_home, outside_tmp = work / "outside-home", work / "outside-tmp"
    outside_home.mkdir()
    outside_tmp.mkdir()
    script = load_script()
    script.prompts = script.prompts[:2]
    fixture_before = _tree_digest(script.workspace_dir)
    untracked_before = _untracked()
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_CACHE_HOME", str(user_cache_dir().parent))  # the harness's cache, as it was
    patch.setenv("HOME", str(outside_home))
    patch.setenv("TMPDIR", str(outside_tmp))
    patch.setattr(tempfile, "tempdir", None)
    try:
        specs = load_config(None, {"servers": SERVERS, "reference": SERVERS[0]}, project_dir=work).server_specs()
        run = AgentRun(specs, script, tool_model_path("tools-hermes"), work / "runs", say=print)
        run_dir = run.run()
    finally:
        patch.undo()
    write_agent_report(run_dir)
    return {
        "run": run,
        "run_dir": run_dir,
        "work": work,
        "outside_home": outside_home,
        "outside_tmp": outside_tmp,
        "fixture_same": _tree_digest(script.workspace_dir) == fixture_before,
        "new_in_checkout": sorted(_untracked() - untracked_before),
        "script": script,
    }


def _leg(agent_run, server: str) -> dict:
    data = json.loads((agent_run["run_dir"] / "agent.json").read_text())
    return next(leg for leg in data["legs"] if leg["server"] == server)


@pytest.mark.parametrize(("server", "path", "protocol", "model"), [
    ("legacy", "converted", "openai", "tools-hermes"),
    ("vllm-mlx", "native", "anthropic", "harness-model"),
])  # fmt: skip
def test_both_prompts_go_through_as_rows_beside_the_client_s_own_result(agent_run, server, path, protocol, model):
    leg = _leg(agent_run, server)
    assert leg["path"] == path and leg["problem"] is None
    prompts = leg["prompts"]
    assert len(prompts) == 2
    for prompt in prompts:
        # The client printed its result (success or its own error) with its own timings.
        assert prompt["problem"] is None, prompt
        assert prompt["subtype"] and prompt["ttft_ms"] and prompt["duration_ms"] and prompt["num_turns"] >= 1
        assert prompt["rows"], f"no request of prompt {prompt['prompt_index']} reached {server}"
        assert all(row["http_status"] == 200 for row in prompt["rows"]), prompt["rows"]
    # The second prompt resumed the first one's conversation.
    assert prompts[0]["session_id"] == prompts[1]["session_id"]
    rows = read_rows(agent_run["run_dir"] / leg["folder"])
    assert {row.protocol for row in rows} == {protocol}
    assert {row.model for row in rows} == {model}  # the client's model name was swapped for the server's
    journal = [json.loads(line) for line in (agent_run["run_dir"] / leg["folder"] / "exchanges.jsonl").open()]
    second = json.dumps(journal[len(prompts[0]["rows"])]["request"]["messages"])
    assert agent_run["script"].prompts[0] in second and agent_run["script"].prompts[1] in second


def test_the_client_s_ttft_agrees_with_the_proxy_s(agent_run):
    summary = load_agent_summary(agent_run["run_dir"])
    figures = summary.agreement
    assert figures.count == 4
    # The client measures the same request's first token through one more local hop.
    assert figures.median_abs_ms is not None and figures.median_abs_ms < 1000, figures
    report = (agent_run["run_dir"] / "agent.md").read_text()
    assert "TTFT agreement" in report and f"over {figures.count} prompt(s)" in report
    assert "| legacy | converted | " in report and "| vllm-mlx | native | " in report


def test_no_file_holds_the_key_and_nothing_was_written_outside_the_run(agent_run):
    key = agent_run["run"].key
    assert files_containing(agent_run["work"], key) == []
    assert json.loads((agent_run["run_dir"] / "agent.json").read_text())["key_found_in"] == []
    # HOME and TMPDIR of the harness process: nothing of the client's there (npm's own cache aside).
    home = [str(p.relative_to(agent_run["outside_home"])) for p in agent_run["outside_home"].rglob("*") if p.is_file()]
    assert [path for path in home if not path.startswith(".npm/")] == []
    tmp = [str(p.relative_to(agent_run["outside_tmp"])) for p in agent_run["outside_tmp"].rglob("*")]
    assert [path for path in tmp if "claude" in path or "cc-" in path] == [], tmp
    assert agent_run["fixture_same"]
    assert agent_run["new_in_checkout"] == []
    # What the client wrote is inside the leg's folder: its HOME, its TMPDIR and the workspace.
    for server in SERVERS:
        written = _leg(agent_run, server)["files_written"]
        assert any(path.startswith(".claude/projects/") for path in written["client-home"])
        assert "src/calc.py" in written["workspace"]
    run_json = json.loads((agent_run["run_dir"] / "run.json").read_text())
    assert run_json["client"]["version"] == claude_code.PINNED_VERSION
