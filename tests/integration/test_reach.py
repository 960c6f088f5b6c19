"""The situations and servers of the reach features, for real on the built-in model: the disk cache
across a restart, cache-busting prompts, side requests against one cache slot, mlx-lm's own server
as a third server, a custom command line and a remote base_url.

System prompts are cut to a few hundred tokens with --context-tokens to keep the runs short (the 16
tool schemas still make each request some 2,700 tokens and up).
"""

from __future__ import annotations

import itertools
import json
import textwrap

import pytest

from harness.core.rows import read_rows
from harness.presentation.report import build_report
from harness.run.config import load_config
from harness.run.runner import Runner

pytestmark = pytest.mark.integration


def _run(tmp_path, config_text: str = "", **overrides):
    file = None
    if config_text:
        file = tmp_path / "harness.toml"
        file.write_text(textwrap.dedent(config_text))
    overrides.setdefault("out", str(tmp_path / "runs"))
    return Runner(load_config(file, overrides, project_dir=tmp_path)).run()


def _rows(run_dir, server, scenario):
    return [
        r for r in read_rows(run_dir) if r.server == server and r.scenario == scenario and r.request_kind != "warmup"
    ]


@pytest.fixture(scope="module")
def restart_and_bust(tiny_model, tmp_path_factory):
    return _run(
        tmp_path_factory.mktemp("reach"),
        servers=["legacy", "mlx-textgen"],
        scenarios=["restart", "cache-bust"],
        context_tokens=[200],
    )


def test_mlx_textgen_serves_the_request_after_a_restart_from_its_disk_cache(restart_and_bust):
    rows = _rows(restart_and_bust, "mlx-textgen", "restart@200")
    assert [r.request_kind for r in rows] == ["first", "follow-up", "restart", "follow-up", "follow-up"]
    assert all(r.error is None for r in rows), [r.error for r in rows]
    before, after = rows[1], rows[2]
    # A new process, yet it reused (nearly) the whole previous prompt, read back from disk.
    assert after.cache_reused is True and after.cached_tokens >= 0.9 * before.prompt_tokens
    sessions = json.loads((restart_and_bust / "run.json").read_text())["servers"]["mlx-textgen"]["sessions"]
    # Two processes for this scenario: the one stopped after turn 1 and the one after it.
    assert len([s for s in sessions if "-restart@200" in s["log"]]) == 2
    assert rows[1].cache_bytes_total > 1_000_000  # the files it came back from


def test_legacy_cannot_reuse_anything_after_a_restart(restart_and_bust):
    rows = _rows(restart_and_bust, "legacy", "restart@200")
    assert [r.request_kind for r in rows][2] == "restart"
    assert all(r.error is None for r in rows)
    assert all(r.cache_reused is not True for r in rows)
    assert all(r.cache_files_new == 0 and r.cache_bytes_total == 0 for r in rows)
    logs = sorted((restart_and_bust / "logs").glob("legacy-*-restart.log"))
    assert logs and "KV cache unavailable" in logs[0].read_text()


def test_cache_busting_sends_every_follow_up_back_to_first_request_cost(restart_and_bust):
    rows = _rows(restart_and_bust, "mlx-textgen", "cache-bust@200")
    assert len(rows) == 4 and all(r.error is None for r in rows)
    for row in rows[1:]:
        # Only the chat template's first tokens match: the changing first line breaks every prefix.
        assert row.prompt_tokens > 2000 and (row.cached_tokens or 0) < 50, (row.prompt_tokens, row.cached_tokens)
    # The same conversation without the changing line reuses almost everything (restart@200's turn 1).
    assert _rows(restart_and_bust, "mlx-textgen", "restart@200")[1].cached_tokens > 2000
    text = build_report(restart_and_bust)["summary_md"].read_text()
    assert "cache-bust@200" in text and "After restart" in text


def test_mlx_lm_server_runs_as_a_third_server(tiny_model, tmp_path):
    run_dir = _run(tmp_path, servers=["legacy", "mlx-textgen", "mlx-lm"], scenarios=["short-chat"])
    rows = _rows(run_dir, "mlx-lm", "short-chat")
    assert len(rows) == 4 and all(r.error is None and r.http_status == 200 for r in rows), [r.error for r in rows]
    # A catalogue server: mlx_lm.server at its newest verified release, from its own environment.
    meta = json.loads((run_dir / "run.json").read_text())["servers"]["mlx-lm"]
    assert meta["release"] == "0.32.2" and meta["environment"]["name"] == "mlx-lm@0.32.2"
    assert any(line.startswith("mlx-lm==0.32.2") for line in meta["environment"]["frozen"])
    assert meta["identity"]["packages"]["mlx-lm"] == "0.32.2"  # asked of the server's own interpreter
    # Its in-memory prompt cache, told by the protocol: each follow-up reuses the previous prompt
    # (a short chat's first follow-up may reuse less than half of its prompt: not counted as reuse).
    assert rows[0].cache_reused is False and rows[0].reuse_source == "protocol"
    assert all(r.reuse_source == "protocol" and r.cached_tokens > 50 for r in rows[1:]), [r.cached_tokens for r in rows]
    assert rows[-1].cache_reused is True
    assert all(r.cache_files_new == 0 for r in rows)  # nothing on disk
    text = build_report(run_dir)["summary_md"].read_text()
    assert "| Metric | legacy | mlx-textgen | mlx-lm | Improvement (mlx-textgen) | Improvement (mlx-lm) |" in text


def test_a_custom_command_and_a_remote_base_url_are_servers_too(legacy_server, tmp_path):
    run_dir = _run(
        tmp_path,
        f"""
        [server.my-legacy]
        label = "legacy stand-in under another name"
        command = ["{{python}}", "{{programs}}/legacy_server.py", "--model", "{{model}}",
                   "--port", "{{port}}", "--host", "{{host}}", "--no-response-cache"]
        ready_path = "/health"
        cache_dirs = ["{{home}}/kv"]
        env = {{MLX_KV_CACHE_DIR = "{{home}}/kv"}}
        [server.fleet]
        base_url = "{legacy_server.base_url}"
    """,
        servers=["my-legacy", "fleet"],
        reference="my-legacy",
        scenarios=["short-chat"],
    )
    for server in ("my-legacy", "fleet"):
        rows = _rows(run_dir, server, "short-chat")
        assert len(rows) == 4 and all(r.error is None for r in rows), [r.error for r in rows]
    remote = _rows(run_dir, "fleet", "short-chat")
    assert all(r.cache_files_new == 0 and r.cache_bytes_new == 0 and r.cache_bytes_total == 0 for r in remote)
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["servers"]["fleet"]["remote"] is True and meta["servers"]["my-legacy"]["remote"] is False
    assert any("legacy_server.py" in part for part in meta["servers"]["my-legacy"]["command"])
    # {home} and env filled in: each scenario's server has its own home under the run folder.
    assert [home for home in (run_dir / "homes").glob("my-legacy-r0-tiny-chat-qwen2-*") if (home / "kv").is_dir()]
    assert not (run_dir / "homes" / "fleet-r0-tiny-chat-qwen2").exists()  # nothing started for it
    text = build_report(run_dir)["summary_md"].read_text()
    assert "Not observable (remote server)" in text


def test_side_requests_take_mlx_textgen_s_only_cache_slot(tiny_model, tmp_path):
    run_dir = _run(
        tmp_path,
        """
        [server.mlx-textgen]
        extra_args = ["--max-capacity", "1"]
    """,
        servers=["mlx-textgen"],
        reference="mlx-textgen",
        scenarios=["side-requests"],
        context_tokens=[100],
        warmup=True,
    )
    every = [r for r in read_rows(run_dir) if r.server == "mlx-textgen"]
    assert every[0].request_kind == "warmup" and every[0].error is None
    rows = every[1:]
    assert [r.request_kind for r in rows] == [
        "first",
        "side",
        "follow-up",
        "follow-up",
        "side",
        "follow-up",
        "follow-up",
        "side",
        "follow-up",
    ]
    assert all(r.error is None for r in rows), [r.error for r in rows]
    main = [(previous, row) for previous, row in itertools.pairwise(rows) if row.request_kind == "follow-up"]
    after_side = [row for previous, row in main if previous.request_kind == "side"]
    after_main = [row for previous, row in main if previous.request_kind != "side"]
    assert len(after_side) == 3 and len(after_main) == 2
    # Right after a side request the one slot holds the side conversation: the main one is prefilled again.
    assert all((r.cached_tokens or 0) < 50 for r in after_side), [r.cached_tokens for r in after_side]
    assert all(r.cached_tokens > 2000 for r in after_main), [r.cached_tokens for r in after_main]
