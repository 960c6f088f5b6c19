"""The fault-injecting test server (tests/faultserver/fault_server.py) as a server command for the
harness: the placeholders ({python}, {port}, {host}, {model}) are filled in by the harness."""

from __future__ import annotations

from pathlib import Path

FAULT_SERVER = Path(__file__).resolve().parents[1] / "faultserver" / "fault_server.py"


def fault_command(mode: str, *extra: str) -> list[str]:
    """The command of a fault server in ``mode`` (see the fault server's --mode), with ``extra`` args."""
    return ["{python}", str(FAULT_SERVER), "--port", "{port}", "--host", "{host}", "--mode", mode,
            "--model", "{model}", *extra]  # fmt: skip
