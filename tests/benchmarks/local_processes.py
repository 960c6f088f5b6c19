"""Processes the benchmarks start themselves (the instant stub server, `harness record`): a free
port, waiting until one answers HTTP, and stopping it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

STUB = Path(__file__).resolve().parents[1] / "stubs" / "instant_server.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, what: str) -> None:
    """Returns once ``url`` answers; fails the test if ``process`` exits or 30 s pass first."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    pytest.fail(f"{what} did not start")


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    """Sends ``sig`` and returns the exit status (SIGKILL after 30 s)."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@contextmanager
def instant_stub() -> Iterator[str]:
    """The instant stub server on a free port, for the block's duration; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(STUB), "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", process, "the instant stub server")
        yield url
    finally:
        stop(process)
