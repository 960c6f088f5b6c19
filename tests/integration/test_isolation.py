"""Isolation and secrets: servers never touch the user's own caches, bind 127.0.0.1 only, and the
API key never shows up in logs, rows, reports, run.json, error messages or console output.

The user's home is a temporary folder holding sentinel files in ``~/.cache/mlx_textgen`` and
``~/.anyclaude/kv-cache``; the user's environment also points XDG_CACHE_HOME and MLX_KV_CACHE_DIR
into it, as a real user's may.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from declared_servers import fault_command

from harness.cli import main as cli
from harness.core.rows import read_rows

pytestmark = pytest.mark.integration

HARNESS_BIN = Path(sys.executable).parent / "harness"
SECRET = "sk-test-5ecr3t-7f1c2a9e"
SERVER_PROGRAMS = {"legacy_server.py": "legacy", "mlx_textgen_launcher.py": "mlx-textgen", "fault_server.py": "fault"}


def fake_user_home(root: Path) -> Path:
    home = root / "user-home"
    for folder in (".cache/mlx_textgen", ".anyclaude/kv-cache"):
        (home / folder).mkdir(parents=True)
        (home / folder / "SENTINEL").write_text(f"the user's own {folder}\n")
    return home


def snapshot(home: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under the user's two cache folders: (size, mtime_ns, content)."""
    found = {}
    for folder in (".cache/mlx_textgen", ".anyclaude"):
        for path in sorted((home / folder).rglob("*")):
            stat = path.stat()
            found[str(path.relative_to(home))] = (
                stat.st_size,
                stat.st_mtime_ns,
                path.read_bytes() if path.is_file() else b"",
            )
    return found


def user_env(home: Path) -> dict[str, str]:
    return {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "MLX_KV_CACHE_DIR": str(home / ".anyclaude" / "kv-cache"),
    }


def files_containing(root: Path, secret: str) -> list[str]:
    return [str(path) for path in root.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]


def scenario_file(tmp_path: Path, stream: bool = False, turns: int = 2) -> str:
    data = {
        "name": "isolation-chat",
        "params": {"max_tokens": 8},
        "stream": stream,
        "system": "You are a test assistant.",
        "turns": [{"user": f"Question number {i}?", "reply": {"content": f"Answer {i}."}} for i in range(turns)],
    }
    path = tmp_path / "isolation-chat.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


def watch_servers(proc: subprocess.Popen, seen: dict[str, set[str]], envs: dict[str, dict[str, str]]) -> None:
    """Until ``proc`` exits: the listening addresses and environment of every server it starts."""
    while proc.poll() is None:
        for process in psutil.process_iter():
            try:
                cmdline = " ".join(process.cmdline())
                name = next((n for marker, n in SERVER_PROGRAMS.items() if marker in cmdline), None)
                if name is None or proc.pid not in [parent.pid for parent in process.parents()]:
                    continue
                envs.setdefault(name, process.environ())
                for conn in process.net_connections(kind="inet"):
                    if conn.status == psutil.CONN_LISTEN:
                        seen.setdefault(name, set()).add(conn.laddr.ip)
            except psutil.Error:
                continue
        time.sleep(0.1)


def test_real_servers_are_isolated_and_the_key_never_leaks(tmp_path, leftover_servers):
    """Both real servers on the built-in model, the key from HARNESS_API_KEY, a fake user home."""
    home = fake_user_home(tmp_path)
    before = snapshot(home)
    out = tmp_path / "reports"
    chat = scenario_file(tmp_path)
    env = dict(os.environ, **user_env(home), HARNESS_API_KEY=SECRET)
    log = (tmp_path / "harness.out").open("wb")
    proc = subprocess.Popen(
        [str(HARNESS_BIN), "run", "--servers", "legacy,mlx-textgen", "--scenarios", chat, "--out", str(out)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    listening: dict[str, set[str]] = {}
    envs: dict[str, dict[str, str]] = {}
    try:
        watch_servers(proc, listening, envs)
        assert proc.wait(timeout=300) == 0, (tmp_path / "harness.out").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    [run_dir] = list(out.iterdir())

    # The user's caches: not one byte changed, not one file added; no mlx_textgen config written.
    assert snapshot(home) == before
    assert not (home / ".config" / "mlx_textgen").exists()
    # Each server had its own HOME and caches under the run folder.
    assert list(run_dir.glob("homes/mlx-textgen-*/.cache/mlx_textgen/prompt_cache"))
    assert list(run_dir.glob("homes/legacy-*/.anyclaude/kv-cache"))
    for name, server_env in envs.items():
        assert server_env["HOME"].startswith(str(run_dir / "homes")), (name, server_env["HOME"])
        assert server_env["MLX_KV_CACHE_DIR"].startswith(str(run_dir / "homes"))
        assert server_env["XDG_CACHE_HOME"].startswith(str(run_dir / "homes"))
        assert "HARNESS_API_KEY" not in server_env

    # Both servers listened, on 127.0.0.1 only.
    assert set(listening) == {"legacy", "mlx-textgen"}, listening
    assert all(addresses == {"127.0.0.1"} for addresses in listening.values()), listening

    # The key was passed to MLX-Textgen (which takes --api-key) and sent as a bearer token: it answered.
    rows = read_rows(run_dir)
    textgen = [row for row in rows if row.server == "mlx-textgen"]
    assert len(textgen) == 2 and all(row.http_status == 200 for row in textgen), [r.error for r in textgen]
    assert {row.server for row in rows} == {"legacy", "mlx-textgen"}
    meta = json.loads((run_dir / "run.json").read_text())
    command = meta["servers"]["mlx-textgen"]["command"]
    assert command[command.index("--api-key") + 1] == "***"
    assert meta["config"]["api_key"] == "***"
    assert meta["servers"]["mlx-textgen"]["shims"], "the launcher's CPU shims are recorded"
    # ... and it is nowhere: logs, rows, run.json, tables, plots, report, console output.
    assert (run_dir / "report.html").is_file() and (run_dir / "summary.md").is_file()
    assert files_containing(tmp_path, SECRET) == []
    assert leftover_servers() == []


def write_config(tmp_path: Path, chat: str, servers: dict[str, list[str]]) -> Path:
    lines = [
        f"servers = {json.dumps(list(servers))}",
        f"reference = {json.dumps(next(iter(servers)))}",
        f"scenarios = [{json.dumps(chat)}]",
        "ready_timeout_s = 20.0",
        "request_timeout_s = 10.0",
    ]
    for name, command in servers.items():
        lines += [f"[server.{name}]", f"command = {json.dumps(command)}"]
    path = tmp_path / "harness.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("key_from", ["env", "cli"])
def test_key_echoed_by_a_server_is_redacted_everywhere(tmp_path, monkeypatch, capsys, leftover_servers, key_from):
    """A server that echoes its argv, the Authorization header and the key in its answers."""
    home = fake_user_home(tmp_path)
    before = snapshot(home)
    for name, value in user_env(home).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    args = []
    if key_from == "env":
        monkeypatch.setenv("HARNESS_API_KEY", SECRET)
    else:
        monkeypatch.delenv("HARNESS_API_KEY", raising=False)
        args = ["--api-key", SECRET]
    chat = scenario_file(tmp_path, stream=True)
    config = write_config(
        tmp_path,
        chat,
        {
            "keyed": fault_command("normal", "--api-key", "{api_key}", "--echo-key", "--touch-caches"),
            "keyed-broken": fault_command("exit-at-start", "--api-key", "{api_key}"),
        },
    )
    out = tmp_path / "reports"
    assert cli.main(["run", "--config", str(config), "--out", str(out), *args]) == 0
    console = capsys.readouterr()
    [run_dir] = list(out.iterdir())
    rows = read_rows(run_dir)

    keyed = [row for row in rows if row.server == "keyed"]
    # The fault server answers only with the right bearer token, and echoes it: masked in the rows.
    assert [row.http_status for row in keyed] == [200, 200]
    assert all(row.content == "You sent Bearer ***" for row in keyed), [row.content for row in keyed]
    [broken] = [row for row in rows if row.server == "keyed-broken"]
    # The start-up error carries the log's last lines, where the server printed its argv: masked.
    assert "'--api-key', '***'" in broken.check_evidence["http.server_start"]
    assert "Last lines of" in console.err and "***" in console.err  # the error as the user saw it
    assert SECRET not in console.out + console.err
    assert files_containing(tmp_path, SECRET) == []

    # The cache files the server wrote (HOME, MLX_KV_CACHE_DIR, XDG_CACHE_HOME) are in its own HOME.
    assert snapshot(home) == before
    assert not list((home / ".cache").glob("fault-server"))
    written = sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("homes/keyed-*/**/fault-cache.txt"))
    assert len(written) == 3, written
    assert leftover_servers() == []


def test_commands_are_argument_lists_never_shell_strings(tmp_path, leftover_servers):
    """Shell syntax in a configured command reaches the server as literal text and runs nothing."""
    marker = tmp_path / "PWNED"
    tricks = [f"; touch {marker}", f"$(touch {marker})", f"`touch {marker}`", f"| touch {marker} &&"]
    chat = scenario_file(tmp_path, turns=1)
    command = fault_command("normal", *[item for trick in tricks for item in ("--tag", trick)])
    config = write_config(tmp_path, chat, {"fault": command})
    assert cli.main(["run", "--config", str(config), "--out", str(tmp_path / "reports")]) == 0
    assert not marker.exists()
    [log] = list((tmp_path / "reports").glob("*/logs/fault-*.log"))
    argv_line = next(line for line in log.read_text().splitlines() if line.startswith("fault-server: argv"))
    assert all(repr(trick) in argv_line for trick in tricks), argv_line
    assert leftover_servers() == []
