"""Test servers declared to the harness as custom command servers: the fault-injecting server
(tests/faultserver/fault_server.py) and the instant stub (tests/stubs/instant_server.py). The
placeholders ({python}, {port}, {host}, {model}, {home}) are filled in by the harness."""

from __future__ import annotations

import textwrap
from pathlib import Path

from harness.run.config import RunConfig, load_config

TESTS = Path(__file__).resolve().parents[1]
FAULT_SERVER = TESTS / "faultserver" / "fault_server.py"
INSTANT_STUB = TESTS / "stubs" / "instant_server.py"


def fault_command(mode: str, *extra: str) -> list[str]:
    """The command of a fault server in ``mode`` (see the fault server's --mode), with ``extra`` args."""
    return ["{python}", str(FAULT_SERVER), "--port", "{port}", "--host", "{host}", "--mode", mode,
            "--model", "{model}", *extra]  # fmt: skip


def instant_stub_config(tmp_path: Path, *stub_args: str, **overrides) -> RunConfig:
    """A run of the instant stub alone (server "instant", its own reference), started with
    ``stub_args``; ``overrides`` as on the command line, the run folder under ``tmp_path``."""
    toml = tmp_path / "harness.toml"
    args = "".join(f', "{a}"' for a in stub_args)
    toml.write_text(
        textwrap.dedent(f"""
        servers = ["instant"]
        reference = "instant"
        [server.instant]
        label = "instant stub"
        command = ["{{python}}", "{INSTANT_STUB}", "--port", "{{port}}", "--host", "{{host}}"{args}]
        ready_path = "/health"
        ready_timeout_s = 30
        cache_dirs = ["{{home}}/cache"]
    """)
    )
    overrides.setdefault("out", str(tmp_path / "runs"))
    return load_config(toml, overrides, project_dir=tmp_path)
