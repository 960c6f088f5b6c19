"""Session-wide guard: no server process started by the tests may outlive them.

A server counts as ours when its command line names one of the server programs and either its
parent chain includes this pytest process or it carries this session's environment marker (which
every process started from here inherits, so an orphan re-parented to init is still found).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid

import psutil
import pytest

SERVER_MARKERS = (
    "servers/legacy_server.py",
    "mlx_textgen_launcher.py",
    "fault_server.py",
    "mlx_lm.server",
    "instant_server.py",
    "harness.cli.main record",
)
SESSION_ENV = "HARNESS_TEST_SESSION"
SESSION_ID = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
os.environ[SESSION_ENV] = SESSION_ID


def _ours(process: psutil.Process) -> bool:
    try:
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = " ".join(process.cmdline())
        if not any(marker in cmdline for marker in SERVER_MARKERS):
            return False
        if any(parent.pid == os.getpid() for parent in process.parents()):
            return True
        return process.environ().get(SESSION_ENV) == SESSION_ID
    except psutil.Error:
        return False


def server_processes(wait_s: float = 0.0) -> list[psutil.Process]:
    """Our server processes still alive, after waiting up to ``wait_s`` for them to go."""
    deadline = time.monotonic() + wait_s
    while True:
        found = [process for process in psutil.process_iter() if process.pid != os.getpid() and _ours(process)]
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


@pytest.fixture
def leftover_servers():
    """``leftover_servers()`` -> our server processes alive 2 s after the call (should be [])."""
    return lambda wait_s=2.0: server_processes(wait_s)


@pytest.fixture(scope="session", autouse=True)
def no_orphan_servers():
    yield
    orphans = server_processes(wait_s=3.0)
    described = [f"{process.pid}: {' '.join(process.cmdline())[:160]}" for process in orphans]
    for process in orphans:
        with contextlib.suppress(psutil.Error):
            process.kill()
    assert not described, f"{len(described)} server process(es) outlived the tests: {described}"
