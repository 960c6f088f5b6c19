"""`harness record` run as a user runs it, for the tests that drive a real client through it: a
subprocess on a free port, its address read from its first lines, stopped with SIGINT (Ctrl-C)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def record_session(upstream: str, work: Path, name: str, label: str, drive: Callable[[str], Any]):
    """Starts `harness record` in front of ``upstream``, calls ``drive(address)`` (the client's
    session), stops it with SIGINT and returns (exit code, its output, the recording folder, what
    ``drive`` returned)."""
    proxy = subprocess.Popen(
        [sys.executable, "-m", "harness.cli.main", "record", "--upstream", upstream,
         "--port", "0", "--out", str(work), "--name", name, "--label", label],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT), COLUMNS="200"),
    )  # fmt: skip
    try:
        lines = []
        for line in proxy.stdout or []:
            lines.append(line)
            if line.startswith("proxy listening on "):
                listen = line.split()[3].rstrip(":")
                break
        else:
            pytest.fail("harness record did not start:\n" + "".join(lines))
        driven = drive(listen)
        proxy.send_signal(signal.SIGINT)
        output, _ = proxy.communicate(timeout=60)
        (run_dir,) = work.iterdir()
        return proxy.returncode, "".join(lines) + output, run_dir, driven
    finally:
        if proxy.poll() is None:
            proxy.kill()
            proxy.wait()
