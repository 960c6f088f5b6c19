"""Claude Code, the real agent, as the harness's client: installed once at a pinned version, run
headless (``claude -p ... --output-format json``) with everything it could touch pointed into the
run folder.

The npm package ``@anthropic-ai/claude-code`` carries the native binary in a per-platform package
(``@anthropic-ai/claude-code-linux-x64``, ...); the harness installs both into the per-user cache
(``~/.cache/mlx-migration-harness/npm/claude-code-<version>``) with ``--ignore-scripts`` and runs
the platform binary itself, so no install script runs and node is needed only by npm.
``HARNESS_CLAUDE_CODE_VERSION`` picks another release (docs/agent.md).

One invocation gets an environment built from nothing (no variable of the user's passes through):
``HOME`` and ``TMPDIR`` inside the run folder (the client writes its settings, sessions and sockets
there), ``ANTHROPIC_BASE_URL`` at the harness's proxy on 127.0.0.1, a dummy ``ANTHROPIC_API_KEY``,
``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``, and an HTTP(S) proxy on a closed local port with
127.0.0.1 exempt, so a request to anywhere else fails instead of leaving the machine.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.paths import user_cache_dir

PACKAGE = "@anthropic-ai/claude-code"
PINNED_VERSION = "2.1.328"
VERSION_ENV = "HARNESS_CLAUDE_CODE_VERSION"
INSTALL_TIMEOUT_S = 600
# A port nothing listens on: the proxy every request not bound for 127.0.0.1 is sent to.
CLOSED_PROXY = "http://127.0.0.1:9"


class ClientUnavailable(HarnessError):
    """Claude Code cannot be installed or run here; the message names what to install or fix."""


def version() -> str:
    return os.environ.get(VERSION_ENV) or PINNED_VERSION


def install_dir(release: str | None = None) -> Path:
    return user_cache_dir() / "npm" / f"claude-code-{release or version()}"


def _platform_package() -> str:
    system = {"Linux": "linux", "Darwin": "darwin"}.get(platform.system(), platform.system().lower())
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    return f"{PACKAGE}-{system}-{machine}"


def binary_path(folder: Path) -> Path:
    """The native binary inside an installed folder."""
    return folder / "node_modules" / _platform_package() / "claude"


def ensure_installed(release: str | None = None) -> Path:
    """The path of the ``claude`` binary of ``release`` (default: the pinned one), installing it with
    npm into the per-user cache the first time. Raises ClientUnavailable naming what is missing."""
    release = release or version()
    if shutil.which("npm") is None:
        raise ClientUnavailable(
            f"npm is not on PATH: install Node.js (20 or later) with npm, then run again; the harness installs "
            f"{PACKAGE}@{release} with it into {install_dir(release)}"
        )
    folder = install_dir(release)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install at a time (parallel test workers, runs)
        binary = binary_path(folder)
        if (folder / ".installed").is_file() and binary.is_file():
            return binary
        (folder / "package.json").write_text(json.dumps({"private": True}) + "\n")
        command = ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", str(folder)]
        command += [f"{PACKAGE}@{release}", f"{_platform_package()}@{release}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ClientUnavailable(f"npm install of {PACKAGE}@{release} into {folder} failed: {exc}") from None
        if done.returncode != 0 or not binary.is_file():
            tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-4:])[:500]
            raise ClientUnavailable(
                f"npm install of {PACKAGE}@{release} into {folder} failed (exit {done.returncode}): "
                f"{tail or 'no binary'}."
                f" Check that npm reaches its registry and that {_platform_package()} exists for this release."
            )
        (folder / ".installed").write_text(f"{PACKAGE}@{release}\n")
    return binary


def binary_version(binary: Path) -> str:
    """What ``claude --version`` says (``2.1.328 (Claude Code)``)."""
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() or done.stderr.strip()


def dummy_key() -> str:
    """A fresh dummy API key for one run: found nowhere it was not put, so a leak is findable."""
    return f"harness-dummy-{secrets.token_hex(12)}"


@dataclass
class ClientSettings:
    """How the client is run: the tools it has and may use, its permission mode, limits."""

    tools: list[str]
    permission_mode: str
    max_output_tokens: int
    max_turns: int
    timeout_s: float = 600.0


@dataclass
class Invocation:
    """One ``claude -p`` run, as the client itself reported it (its JSON result)."""

    prompt_index: int
    prompt: str
    argv: list[str]
    started_at: float  # wall clock, just before the process started
    wall_s: float  # the process's whole life, as the harness timed it
    exit_code: int | None
    session_id: str | None = None
    result: str | None = None
    is_error: bool | None = None
    subtype: str | None = None
    api_error_status: int | None = None
    num_turns: int | None = None
    ttft_ms: float | None = None
    time_to_request_ms: float | None = None
    ttft_stream_ms: float | None = None
    duration_ms: float | None = None
    duration_api_ms: float | None = None
    stop_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""
    problem: str | None = None  # no JSON result, a timeout, a crash: what went wrong

    @property
    def completed(self) -> bool:
        """The client finished the prompt without an error of its own."""
        return self.problem is None and self.is_error is False and self.subtype == "success"

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        data["completed"] = self.completed
        return data


# The fields of the client's JSON result kept on an Invocation, and their types.
_RESULT_FIELDS: dict[str, type] = {
    "session_id": str,
    "result": str,
    "is_error": bool,
    "subtype": str,
    "api_error_status": int,
    "num_turns": int,
    "ttft_ms": float,
    "time_to_request_ms": float,
    "ttft_stream_ms": float,
    "duration_ms": float,
    "duration_api_ms": float,
    "stop_reason": str,
}


def read_result(invocation: Invocation, stdout: str) -> None:
    """Fills ``invocation`` from the client's ``--output-format json`` result (the last JSON line
    that is a result object); a missing or unreadable one is the invocation's problem."""
    result: dict[str, Any] | None = None
    for line in reversed(stdout.strip().splitlines()):
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict) and parsed.get("type") == "result":
            result = parsed
            break
    if result is None:
        invocation.problem = invocation.problem or "the client printed no JSON result"
        return
    for name, kind in _RESULT_FIELDS.items():
        value = result.get(name)
        if value is None:
            continue
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            setattr(invocation, name, float(value))
        elif isinstance(value, kind):
            setattr(invocation, name, value)
    if isinstance(result.get("usage"), dict):
        usage = result["usage"].items()
        invocation.usage = {
            key: value for key, value in usage if isinstance(value, int) and not isinstance(value, bool)
        }


def client_env(base_url: str, api_key: str, home: Path, tmp: Path, max_output_tokens: int) -> dict[str, str]:
    """The whole environment of one invocation (see the module docstring)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": api_key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": str(max_output_tokens),
        "HTTP_PROXY": CLOSED_PROXY,
        "HTTPS_PROXY": CLOSED_PROXY,
        "NO_PROXY": "127.0.0.1,localhost",
    }


def client_argv(binary: Path, prompt: str, settings: ClientSettings, resume: str | None) -> list[str]:
    """``claude -p PROMPT`` with its tools restricted to the workspace (``--restricted``: no shell,
    no web, file tools confined to the working directory), resuming ``resume`` when given."""
    argv = [str(binary), "-p", prompt, "--output-format", "json", "--restricted"]
    argv += ["--tools", ",".join(settings.tools), "--allowedTools", ",".join(settings.tools)]
    argv += ["--permission-mode", settings.permission_mode, "--permission-prompts", "none"]
    argv += ["--max-turns", str(settings.max_turns), "--strict-mcp-config"]
    if resume:
        argv += ["--resume", resume]
    return argv


def invoke(
    binary: Path,
    prompt_index: int,
    prompt: str,
    settings: ClientSettings,
    env: dict[str, str],
    workspace: Path,
    resume: str | None,
) -> Invocation:
    """Runs one prompt to its end (or its timeout) in ``workspace`` and reads what the client said."""
    argv = client_argv(binary, prompt, settings, resume)
    started_at = time.time()
    started = time.perf_counter()
    process = subprocess.Popen(
        argv,
        cwd=str(workspace),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a timeout ends everything it started
    )
    problem = None
    try:
        stdout, stderr = process.communicate(timeout=settings.timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        problem = f"the client did not finish within {settings.timeout_s:g} s and was stopped"
    except BaseException:  # interrupted: the client and whatever it started go too
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    # The prompt goes last in the record: the binary's path stays, the key is never in argv.
    invocation = Invocation(
        prompt_index=prompt_index,
        prompt=prompt,
        argv=[Path(argv[0]).name, *argv[1:]],
        started_at=started_at,
        wall_s=time.perf_counter() - started,
        exit_code=process.returncode,
        stderr_tail="\n".join(stderr.strip().splitlines()[-5:])[:1000],
        problem=problem,
    )
    read_result(invocation, stdout)
    if invocation.problem is None and process.returncode not in (0, None) and invocation.is_error is None:
        invocation.problem = f"the client exited with {process.returncode}"
    return invocation
