"""Server lifecycle: start one server as its own process group, wait until ready, stop it cleanly.

Each server gets its own HOME (so MLX-Textgen's cache root and the legacy KV-cache dir live under the
run folder and the user's own caches are never touched), a free port on 127.0.0.1, and a log file
(never an unread PIPE). A server that exits during start-up or misses its readiness deadline raises
``ServerError`` with the log's last lines. Every started process is tracked so that nothing outlives
the harness: ``stop_all`` runs at exit and from the CLI's signal handlers.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from harness.core.errors import ServerError
from harness.core.paths import server_programs_dir
from harness.models.dialects import model_dialect
from harness.server.spec import ServerSpec

LOG_TAIL_LINES = 25
# Readiness probes after the spec's own ready path, in order (then a one-token completion).
READY_FALLBACKS = ["/v1/models", "/health"]
# Endpoints where a server may say its version.
VERSION_PATHS = ["/version", "/v1/version"]
# Packages whose versions identify a server, asked of the server's own interpreter.
SERVER_PACKAGES = [
    "mlx", "mlx-lm", "mlx-textgen", "mlx-vlm", "outlines", "transformers", "fastapi", "uvicorn",
    "vllm", "vllm-mlx", "llama-cpp-python", "sglang",
]  # fmt: skip


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(log is empty)"


def redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` replaced by ``***`` (nothing to do without a secret)."""
    return text.replace(secret, "***") if secret and text else text


def describe_exit(code: int | None) -> str:
    """``code 1``, or ``code -9 (killed by SIGKILL)`` for a process ended by a signal."""
    if code is not None and code < 0:
        try:
            return f"code {code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"code {code}"


_LIVE: set[ServerProcess] = set()
_LIVE_LOCK = threading.Lock()


def stop_all() -> None:
    """Stops every server this process started (used at exit and on SIGINT/SIGTERM)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for server in live:
        server.stop()


atexit.register(stop_all)


class ServerProcess:
    """One running server. Use as a context manager; ``stop`` is safe to call twice.

    A stopped ServerProcess cannot be started again: make a new one (for a restart, with the same
    ``home`` so the on-disk cache carries over).
    """

    def __init__(
        self,
        spec: ServerSpec,
        model: Path | str,
        home: Path,
        log_path: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        python: str = sys.executable,
    ) -> None:
        self.spec = spec
        self.model = str(model)
        self.home = Path(home).resolve()  # the server's cwd is its HOME: a relative one would nest
        self.log_path = Path(log_path)
        self.host = host
        self.port = port
        self.python = python
        self.process: subprocess.Popen[bytes] | None = None
        self.model_id: str | None = None
        self.ready_probe: str | None = None
        self.time_to_ready_s: float | None = None
        self.peak_rss_bytes = 0
        self.started = False
        self.stopped = False
        self.exit_code: int | None = None
        self._log_offset = 0
        self.counters: dict[str, Any] | None = None  # the server's own counters, read before it stops
        self._rss_stop = threading.Event()
        self._rss_thread: threading.Thread | None = None

    # -- addresses -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self.spec.base_url:
            return self.spec.base_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.spec.api_key}"} if self.spec.api_key else {}

    def _fill(self, template: str) -> str:
        return template.format(
            python=self.python,
            bin=Path(self.python).parent,
            model=self.model,
            port=self.port,
            host=self.host,
            home=self.home,
            programs=server_programs_dir(),
            api_key=self.spec.api_key or "",
        )

    @property
    def cache_dirs(self) -> list[Path]:
        if self.spec.base_url:
            return []  # a remote server's disk is not ours to look at
        return [Path(self._fill(item)) for item in self.spec.cache_dirs]

    def told_args(self) -> list[str]:
        """The arguments this server is given to parse the model's tool-call dialect (empty when it
        finds the dialect by itself or has no parser for it)."""
        dialect = model_dialect(Path(self.model)) if self.spec.dialect_args else None
        return list(self.spec.dialect_args.get(dialect, [])) if dialect else []

    def command(self) -> list[str]:
        args = [self._fill(item) for item in self.spec.command] + self.told_args()
        if self.spec.api_key:
            args += [self._fill(item) for item in self.spec.api_key_args]
        return args

    def public_command(self) -> list[str]:
        """The command line with the API key masked, for logs and run.json."""
        key = self.spec.api_key
        return [item.replace(key, "***") if key else item for item in self.command()]

    def redact(self, text: str) -> str:
        """``text`` with the API key masked (servers may echo their command line or headers)."""
        return redact(text, self.spec.api_key)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> ServerProcess:
        if self.started:
            raise ServerError(f"{self.spec.name}: a ServerProcess cannot be started twice; create a new one.")
        self.started = True
        if self.spec.base_url:
            self._wait_ready(time.monotonic())
            return self
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            if self.port is None or not port_is_free(self.port, self.host):
                self.port = free_port(self.host)
            started_at = time.monotonic()
            self._spawn()
            try:
                self._wait_ready(started_at)
                return self
            except ServerError:
                # Another process may have taken the port between our check and the bind.
                if attempt < 2 and "address already in use" in log_tail(self.log_path).lower():
                    self.stop(_for_retry=True)
                    self.port = None
                    continue
                self.stop()
                raise
        return self

    def _spawn(self) -> None:
        env = dict(os.environ)
        # Cache locations the user may have exported point into their real home: every server gets
        # its own under its HOME instead (a spec's env can still set them). The harness's own API-key
        # variable is not passed on: a server that takes a key gets it through api_key_args.
        env.pop("HARNESS_API_KEY", None)
        env.update(
            {
                "XDG_CACHE_HOME": str(self.home / ".cache"),
                "XDG_CONFIG_HOME": str(self.home / ".config"),
                "XDG_DATA_HOME": str(self.home / ".local" / "share"),
                "MLX_KV_CACHE_DIR": str(self.home / ".anyclaude" / "kv-cache"),
            }
        )
        env.update({key: self._fill(value) for key, value in self.spec.env.items()})
        env["HOME"] = str(self.home)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        log = self.log_path.open("ab")
        header = f"# harness: starting {self.spec.name}: {' '.join(self.public_command())}\n"
        log.write(header.encode())
        log.flush()
        self._log_offset = self.log_path.stat().st_size
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=str(self.home),
                start_new_session=True,
            )
        except OSError as exc:
            raise ServerError(
                f"{self.spec.name}: could not start {self.command()[0]!r}: {exc}. "
                "Check the server's command in the config."
            ) from exc
        finally:
            log.close()
        with _LIVE_LOCK:
            _LIVE.add(self)
        self._rss_stop.clear()
        self._rss_thread = threading.Thread(target=self._sample_rss, daemon=True)
        self._rss_thread.start()

    def _wait_ready(self, started_at: float) -> None:
        """Polls until the server answers. The spec's ready path comes first; a server that answers
        it with 404 (a release without that endpoint) is probed on the next of ``READY_FALLBACKS``,
        and last with a one-token completion, so readiness never depends on one endpoint's body."""
        deadline = started_at + self.spec.ready_timeout_s
        probes = [self.spec.ready_path] + [path for path in READY_FALLBACKS if path != self.spec.ready_path]
        probe = 0
        last_error = "no answer yet"
        with httpx.Client(timeout=5.0, headers=self.headers) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    self.exit_code = self.process.returncode
                    tail = self.redact(log_tail(self.log_path))
                    raise ServerError(
                        f"{self.spec.name} exited with {describe_exit(self.exit_code)} during start-up "
                        f"(model {self.model}). Last lines of {self.log_path}:\n{tail}\n"
                        "Fix the cause shown in the log (often a model folder the server cannot load), then run again."
                    )
                try:
                    # A probe never outlasts the deadline, even against a server that accepts and hangs,
                    # and is short so that an exit is seen soon (the port may belong to another program).
                    timeout = min(2.0, max(0.05, deadline - time.monotonic()))
                    if probe < len(probes):
                        response = client.get(self.base_url + probes[probe], timeout=timeout)
                    else:
                        response = client.post(
                            self.base_url + self.spec.chat_path, json=self._tiny_completion(), timeout=timeout
                        )
                    if response.status_code == 200:
                        self.time_to_ready_s = time.monotonic() - started_at
                        self.ready_probe = probes[probe] if probe < len(probes) else "a one-token completion"
                        self.model_id = self._read_model_id(client)
                        return
                    last_error = f"HTTP {response.status_code}"
                    if response.status_code in (404, 405) and probe < len(probes):
                        probe += 1  # up, but without this endpoint: the next probe
                        continue
                except httpx.HTTPError as exc:
                    last_error = type(exc).__name__
                time.sleep(0.2)
        tried = ", ".join(probes[: probe + 1]) if probe < len(probes) else ", ".join(probes) + ", a completion"
        raise ServerError(
            f"{self.spec.name} did not become ready within {self.spec.ready_timeout_s:g} s "
            f"(probed {tried}: {last_error}). Last lines of {self.log_path}:\n{self.redact(log_tail(self.log_path))}\n"
            "Raise the server's ready_timeout_s if it is just slow, or fix the error in the log."
        )

    def _tiny_completion(self) -> dict[str, Any]:
        model = self._fill(self.spec.request_model) if self.spec.request_model else Path(self.model).name
        return {"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}

    def _read_model_id(self, client: httpx.Client) -> str:
        """The served model id, which MLX-Textgen requires in each request."""
        if self.spec.request_model:
            return self._fill(self.spec.request_model)
        try:
            data = client.get(self.base_url + "/v1/models").json()
            return str(data["data"][0]["id"])
        except Exception:
            return Path(self.model).name

    def tree_rss_bytes(self) -> int | None:
        """Resident memory of the whole server process tree now (the server and every process it
        started), in bytes; None for a remote server or one that is not running."""
        process = self.process
        if self.spec.base_url or process is None or process.poll() is not None:
            return None
        try:
            root = psutil.Process(process.pid)
            total = root.memory_info().rss
            for child in root.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
        except psutil.Error:
            return None
        return int(total)

    def _sample_rss(self) -> None:
        """Peak resident memory of the whole server process tree, sampled every 0.2 s."""
        while not self._rss_stop.is_set():
            total = self.tree_rss_bytes()
            if total is None:
                return
            self.peak_rss_bytes = max(self.peak_rss_bytes, total)
            self._rss_stop.wait(0.2)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_status(self, wait_s: float = 0.0) -> int | None:
        """The exit code once the process has ended, waiting up to ``wait_s`` for it; else None.
        (A server that died mid-answer closes its sockets a moment before it can be reaped.)"""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=wait_s) if wait_s > 0 else self.process.poll()
        except subprocess.TimeoutExpired:
            return None

    def _scrub_log(self) -> None:
        """Masks the API key in the log once the server is gone (it may have echoed its argv)."""
        key = self.spec.api_key
        try:
            data = self.log_path.read_bytes()
            if key and key.encode() in data:
                self.log_path.write_bytes(data.replace(key.encode(), b"***"))
        except OSError:
            pass

    def stop(self, timeout_s: float = 10.0, _for_retry: bool = False) -> None:
        """SIGTERM to the whole process group, then SIGKILL after ``timeout_s``. Idempotent."""
        if self.stopped and not _for_retry:
            return
        process = self.process
        if process is not None:
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=timeout_s)
            # Children the server forked may outlive it: the group is killed in every case.
            _signal_group(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
            self.exit_code = process.returncode
            self._scrub_log()
        self._rss_stop.set()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if _for_retry:
            self.process = None
        else:
            self.stopped = True

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- logs ------------------------------------------------------------------------------
    def read_new_log(self) -> str:
        """Log text written since the last call (per-request cache-reuse lines)."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(self._log_offset)
                data = handle.read()
        except OSError:
            return ""
        self._log_offset += len(data)
        return data.decode("utf-8", errors="replace")

    def log_position(self) -> int:
        """The log's current size: pass it to ``read_log_since`` to read what comes after."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def read_log_since(self, offset: int) -> str:
        """Log text written after ``offset`` (a batch of concurrent requests, read as a whole);
        ``read_new_log`` then goes on from the end of it."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except OSError:
            return ""
        self._log_offset = offset + len(data)
        return data.decode("utf-8", errors="replace")

    def cache_reuse_from_log(self, text: str) -> tuple[bool | None, int | None]:
        """(reused?, tokens reused) from the log lines of one request; (None, None) if unknown.

        The first reuse or miss line decides: it is the one about the request's prompt. (MLX-Textgen
        runs a second pass over the prompt and its answer for a tool call, which finds the cache the
        first pass has just written.)"""
        reuse = re.search(self.spec.reuse_pattern, text) if self.spec.reuse_pattern else None
        miss = re.search(self.spec.miss_pattern, text) if self.spec.miss_pattern else None
        if reuse and not (miss and miss.start() < reuse.start()):
            # A reuse line may carry no count (one alternative of a pattern with a counted one).
            return True, int(reuse.group(1)) if reuse.groups() and reuse.group(1) else None
        if miss:
            return False, 0
        return None, None

    @property
    def session_id(self) -> str:
        """Names this server process (a restart or a crash starts a new one): the log's name and the
        process id, or the address of a server the harness did not start."""
        if self.spec.base_url or self.process is None:
            return f"{self.spec.name}@{self.base_url}"
        return f"{self.log_path.stem}#{self.process.pid}"

    def answer_facts_from_log(self, text: str) -> tuple[bool | None, float | None]:
        """(answered from a response cache?, prompt tokens/s) from the log lines of one request;
        None for what the server's log does not say."""
        served = None
        if self.spec.served_from_cache_pattern:
            served = re.search(self.spec.served_from_cache_pattern, text) is not None
        rate = None
        if self.spec.prompt_rate_pattern:
            match = re.search(self.spec.prompt_rate_pattern, text)
            if match:
                with contextlib.suppress(ValueError, IndexError):
                    rate = float(match.group(1))
        return served, rate

    def read_counters(self) -> dict[str, Any] | None:
        """The server's own counters (``counters_path``, e.g. the legacy server's /health), kept on
        ``counters``; None when it has none or does not answer."""
        if not self.spec.counters_path or not self.started or self.stopped:
            return self.counters
        try:
            data = httpx.get(self.base_url + self.spec.counters_path, headers=self.headers, timeout=2.0).json()
        except (httpx.HTTPError, ValueError):
            return self.counters
        self.counters = data if isinstance(data, dict) else {"value": data}
        return self.counters

    def shims(self) -> list[str]:
        """Shims the MLX-Textgen launcher reports having applied (empty for other servers)."""
        found = []
        try:
            for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("launcher shim applied: "):
                    found.append(line.split(": ", 1)[1])
        except OSError:
            pass
        return sorted(set(found))

    def identity(self) -> dict[str, Any]:
        """Who this server is: the version it reports (``/version``-like endpoints), the versions of
        its Python packages asked of its own interpreter, its command line and the model it loaded.
        (``system_fingerprint`` values are collected from its answers by the request path.)"""
        reported: dict[str, str] = {}
        if self.alive() or self.spec.base_url:
            with httpx.Client(timeout=2.0, headers=self.headers) as client:
                for path in VERSION_PATHS:
                    try:
                        response = client.get(self.base_url + path)
                    except httpx.HTTPError:
                        continue
                    if response.status_code == 200 and response.text.strip():
                        reported[path] = self.redact(response.text.strip())[:200]
        interpreter = None if self.spec.base_url else server_interpreter(self.command())
        return {
            "reported": reported,
            "interpreter": interpreter,
            "packages": package_versions_of(interpreter, self.spec.packages) if interpreter else {},
            "release_packages": self.spec.packages,
            "command": self.public_command(),
            "model": self.model,
            "model_id": self.model_id,
            "ready_probe": self.ready_probe,
        }

    def session_record(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_id": self.model_id,
            "port": self.port,
            "time_to_ready_s": self.time_to_ready_s,
            "peak_rss_mb": round(self.peak_rss_bytes / 2**20, 1) if self.peak_rss_bytes else None,
            "log": str(self.log_path),
            "exit_code": self.exit_code,
            **({"counters": self.counters} if self.counters is not None else {}),
        }


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def server_interpreter(command: list[str]) -> str | None:
    """The Python interpreter a server command runs on: the command itself when it is one, or the
    interpreter named on the first line of a script (a console script such as ``mlx_textgen``)."""
    if not command:
        return None
    program = shutil.which(command[0]) or command[0]
    if re.match(r"python[\d.]*$", Path(program).name):
        return program
    try:
        with open(program, "rb") as handle:
            first = handle.readline(300).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if first.startswith("#!"):
        parts = first[2:].split()
        if parts and "python" in Path(parts[-1] if Path(parts[0]).name == "env" else parts[0]).name:
            return parts[-1] if Path(parts[0]).name == "env" else parts[0]
    return None


def package_versions_of(interpreter: str, extra: list[str] | None = None) -> dict[str, str]:
    """Versions of ``SERVER_PACKAGES`` and ``extra`` (a server's release packages) installed for
    ``interpreter`` (and its Python), asked of it."""
    script = (
        "import importlib.metadata as m, json, platform, sys\n"
        "found = {'python': platform.python_version()}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n        found[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n        pass\n"
        "print(json.dumps(found))"
    )
    try:
        done = subprocess.run(
            [interpreter, "-c", script, *dict.fromkeys([*SERVER_PACKAGES, *(extra or [])])],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        data = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
