"""Shared fixtures for integration tests: the built-in offline model and real server processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import transformers.utils.import_utils as transformers_import_utils

from harness.core.paths import server_programs_dir
from harness.models.builtin import build_model, default_model_path

REPO_ROOT = Path(__file__).resolve().parents[2]
LEGACY_SERVER = server_programs_dir() / "legacy_server.py"

# transformers imports torch at start-up when it is installed, though no server here uses it (they
# run on MLX; outlines still imports torch itself when a request needs structured output). Off, a
# server is ready in about 1 s instead of 4, across some fifty starts in this suite. transformers
# reads the variable once, when it is imported: imported here first, the tests' own process keeps
# torch (the tool-model training tests use it) and only the processes started from the tests get
# USE_TORCH=0. `make benchmark` (tests/benchmarks alone) runs without it.
transformers_import_utils.is_torch_available()
os.environ.setdefault("USE_TORCH", "0")


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The built-in random-weight model (built once; a no-op when it already exists)."""
    return build_model(default_model_path())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LegacyServer:
    """The legacy stand-in as a real subprocess: own HOME, own KV-cache dir, log to a file."""

    def __init__(self, model: Path, workdir: Path, *extra_args: str) -> None:
        self.model = model
        self.workdir = workdir
        self.home = workdir / "home"
        self.kv_cache_dir = workdir / "kv-cache"
        self.log_path = workdir / "server.log"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self._log = None

    def command(self) -> list[str]:
        return [
            sys.executable, str(LEGACY_SERVER), "--model", str(self.model),
            "--port", str(self.port), "--host", "127.0.0.1", *self.extra_args,
        ]  # fmt: skip

    def start(self, deadline_s: float = 90.0) -> LegacyServer:
        self.home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, HOME=str(self.home), MLX_KV_CACHE_DIR=str(self.kv_cache_dir))
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - open while the server runs, closed by stop()
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        stop_at = time.monotonic() + deadline_s
        while time.monotonic() < stop_at:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.base_url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready after {deadline_s} s:\n{self.log_tail()}")

    def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, then wait; returns the exit status (SIGKILL if it hangs)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stop(self) -> None:
        """Always safe to call: kills the whole process group whatever state it is in."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.terminate(timeout_s=10.0)
            finally:
                if self.proc.poll() is None:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


@pytest.fixture
def legacy_server_factory(tiny_model: Path, tmp_path: Path) -> Iterator:
    """Starts legacy servers with extra arguments; every one is stopped at teardown."""
    started: list[LegacyServer] = []

    def start(*extra_args: str) -> LegacyServer:
        server = LegacyServer(tiny_model, tmp_path / f"legacy-{len(started)}", *extra_args)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def legacy_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LegacyServer]:
    """One legacy server with the default (original) quirks, shared by a test module."""
    server = LegacyServer(tiny_model, tmp_path_factory.mktemp("legacy-default"))
    try:
        yield server.start()
    finally:
        server.stop()
