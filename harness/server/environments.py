"""A server's own Python environment: created once per requirement set, kept in the per-user cache
and reused while the set is unchanged (as tox, nox and uv do for their targets).

A server that needs other packages than the harness (a newer mlx-lm, vllm-mlx, ...) declares them
as ``InstallStep``s; ``ensure`` returns a ready ``Environment`` for them. The folder is named by a
hash of what defines the result (the steps, the Python version, the platform), so two releases of
one server get two folders, a changed requirement gets a new one, and an unchanged one is found
again. ``environment.json`` is written last, once the install succeeded: a folder without it is a
build that was cut short and is built again.

Environments are filled with ``uv`` when it is installed (the harness depends on it) and with
``venv`` + ``pip`` otherwise. uv does not read pip's configuration, so the find-links, indexes and
constraints pip is configured with are handed to uv as options: both installers see the same
packages. What was resolved (the frozen package list) is kept and goes into run.json.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import ServerError
from harness.core.paths import user_cache_dir

ENVS_DIR_ENV = "HARNESS_ENVS_DIR"
INSTALLERS = ("uv", "pip")
RECORD_FILE = "environment.json"
INSTALL_LOG = "install.log"
# Lines of the installer's output an error quotes.
ERROR_TAIL_LINES = 15
# A whole install may take long (a source build of llama-cpp-python is ~5 minutes on two cores).
INSTALL_TIMEOUT_S = 1800


class EnvironmentBuildError(ServerError):
    """A server's environment could not be created: the installer failed, or the platform is not
    one the server supports. The run goes on with the other servers."""


@dataclass(frozen=True)
class InstallStep:
    """One installer call: ``packages`` (requirement strings), extra installer ``options`` (such as
    ``--no-deps``), then ``uninstall``: packages removed again (a GPU build a package pulls in)."""

    packages: tuple[str, ...]
    options: tuple[str, ...] = ()
    uninstall: tuple[str, ...] = ()

    def describe(self) -> str:
        text = " ".join([*self.options, *self.packages])
        return text + (f"; then uninstall {' '.join(self.uninstall)}" if self.uninstall else "")


@dataclass(frozen=True)
class EnvironmentSpec:
    """What a server's environment holds. ``name`` names it in messages and in its folder."""

    name: str
    steps: tuple[InstallStep, ...]
    # Platforms (``sys.platform``) the server installs on; empty: any.
    platforms: tuple[str, ...] = ()

    def key(self) -> str:
        """Content key: the same steps on the same Python and platform give the same environment."""
        identity = {
            "steps": [[list(s.packages), list(s.options), list(s.uninstall)] for s in self.steps],
            "python": platform.python_version(),
            "platform": f"{sys.platform}-{platform.machine()}",
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]

    def folder_name(self) -> str:
        return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', self.name)}-{self.key()}"


@dataclass
class Environment:
    """A ready environment. ``created``: built by this call (False: found and reused)."""

    spec: EnvironmentSpec
    path: Path
    installer: str
    created: bool
    build_seconds: float
    frozen: list[str] = field(default_factory=list)

    @property
    def python(self) -> Path:
        return self.path / "venv" / "bin" / "python"

    @property
    def bin_dir(self) -> Path:
        return self.path / "venv" / "bin"

    def record(self) -> dict[str, Any]:
        """run.json's account of it: where, how built, what was resolved."""
        return {
            "name": self.spec.name,
            "key": self.spec.key(),
            "path": str(self.path),
            "installer": self.installer,
            "reused": not self.created,
            "build_seconds": round(self.build_seconds, 1),
            "steps": [step.describe() for step in self.spec.steps],
            "frozen": self.frozen,
        }


def environments_dir() -> Path:
    """``$HARNESS_ENVS_DIR``, else ``<per-user cache>/mlx-migration-harness/envs``."""
    if os.environ.get(ENVS_DIR_ENV):
        return Path(os.environ[ENVS_DIR_ENV]).expanduser().resolve()
    return user_cache_dir() / "envs"


def find_uv() -> str | None:
    """The uv beside this interpreter (the harness's own venv), else one on PATH."""
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("uv")


def existing(spec: EnvironmentSpec, root: Path | None = None) -> Environment | None:
    """The environment of ``spec`` if it was built completely before, else None."""
    path = (root or environments_dir()) / spec.folder_name()
    try:
        data = json.loads((path / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (path / "venv" / "bin" / "python").exists():
        return None
    return Environment(
        spec,
        path,
        str(data.get("installer")),
        False,
        float(data.get("build_seconds", 0.0)),
        list(data.get("frozen", [])),
    )


def ensure(
    spec: EnvironmentSpec,
    say: Callable[[str], None] = print,
    installer: str | None = None,
    root: Path | None = None,
) -> Environment:
    """The ready environment of ``spec``: reused when it exists, else built (under a lock, so two
    harness processes never fill one folder). ``installer``: "uv" or "pip"; None takes uv when it is
    installed. Raises EnvironmentBuildError naming the step, the packages and the installer's last
    lines."""
    if spec.platforms and sys.platform not in spec.platforms:
        raise EnvironmentBuildError(
            f"{spec.name} does not install on this platform ({sys.platform}); it supports "
            f"{', '.join(spec.platforms)}. Leave it out of --servers here."
        )
    if installer is not None and installer not in INSTALLERS:
        raise EnvironmentBuildError(f"unknown installer {installer!r}; use one of {', '.join(INSTALLERS)}.")
    root = root or environments_dir()
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / f"{spec.folder_name()}.lock"):
        found = existing(spec, root)
        if found is not None:
            return found
        chosen = installer or ("uv" if find_uv() else "pip")
        path = root / spec.folder_name()
        if path.exists():
            shutil.rmtree(path)  # a build cut short: start again
        path.mkdir(parents=True)
        say(f"creating the environment of {spec.name} with {chosen} in {path}")
        started = time.monotonic()
        _build(spec, path, chosen)
        seconds = time.monotonic() - started
        env = Environment(spec, path, chosen, True, seconds, _freeze(path, chosen))
        record = {**env.record(), "created_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (path / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        say(f"environment of {spec.name} ready in {seconds:.1f} s ({len(env.frozen)} packages)")
        return env


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``path`` (created if missing): one builder of a cached thing at a time."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(spec: EnvironmentSpec, path: Path, installer: str) -> None:
    venv = path / "venv"
    python = venv / "bin" / "python"
    log = path / INSTALL_LOG
    if installer == "uv":
        uv = find_uv()
        if uv is None:
            raise EnvironmentBuildError("uv is not installed; pass --installer pip or install uv.")
        _call([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], log, spec, "creating the venv")
        base = [uv, "pip", "install", "--python", str(python), *pip_settings_for_uv()]
        remove = [uv, "pip", "uninstall", "--python", str(python)]
    else:
        _call([sys.executable, "-m", "venv", str(venv)], log, spec, "creating the venv")
        base = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
        remove = [str(python), "-m", "pip", "uninstall", "--yes"]
    for step in spec.steps:
        _call([*base, *step.options, *step.packages], log, spec, f"installing {step.describe()}")
        if step.uninstall:
            _call([*remove, *step.uninstall], log, spec, f"uninstalling {' '.join(step.uninstall)}")


def _call(command: list[str], log: Path, spec: EnvironmentSpec, what: str) -> None:
    code, tail = run_logged(command, log, INSTALL_TIMEOUT_S)
    if code != 0:
        raise EnvironmentBuildError(
            f"the environment of {spec.name} failed {what} (exit {code}). Last lines of {log}:\n{tail}\n"
            "Fix the requirement in the server's catalogue entry (or pick another release with NAME@VERSION)."
        )


def run_logged(
    command: list[str],
    log: Path,
    timeout_s: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[int | str, str]:
    """Runs ``command`` with its output appended to ``log``: (exit code, or why it did not run to
    the end; the log's last ``ERROR_TAIL_LINES`` lines)."""
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        try:
            done = subprocess.run(
                command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=str(cwd) if cwd else None,
                timeout=timeout_s,
                check=False,
            )
            code: int | str = done.returncode
        except subprocess.TimeoutExpired:
            code = f"timeout after {timeout_s:g} s"
        except OSError as exc:
            code = str(exc)
    lines = log.read_text(encoding="utf-8", errors="replace").rstrip().splitlines()[-ERROR_TAIL_LINES:]
    return code, "\n".join(lines)


def _freeze(path: Path, installer: str) -> list[str]:
    python = path / "venv" / "bin" / "python"
    uv = find_uv()
    command = (
        [uv, "pip", "freeze", "--python", str(python)]
        if installer == "uv" and uv
        else [str(python), "-m", "pip", "freeze", "--disable-pip-version-check"]
    )
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(line for line in done.stdout.splitlines() if line.strip() and not line.startswith("#"))


def pip_settings_for_uv() -> list[str]:
    """pip's configured find-links, indexes and constraints as uv options, so that uv installs from
    the same places pip would (uv reads no pip.conf). With extra indexes, uv is told to pick the best
    match across all of them, as pip does, rather than the first index that has a package."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return uv_options_from_pip_config(done.stdout)


def uv_options_from_pip_config(text: str) -> list[str]:
    """``pip config list`` output -> uv options (see ``pip_settings_for_uv``)."""
    flags = {
        "find-links": "--find-links",
        "extra-index-url": "--extra-index-url",
        "index-url": "--index-url",
        "constraint": "--constraint",
    }
    options: list[str] = []
    seen: set[tuple[str, str]] = set()
    for line in text.splitlines():
        match = re.match(r"^[^.]*\.([a-z-]+)='(.*)'$", line.strip())
        if not match or match.group(1) not in flags:
            continue
        for value in match.group(2).split():
            key = (match.group(1), value)
            if key not in seen:
                seen.add(key)
                options += [flags[match.group(1)], value]
    if any(option in ("--extra-index-url", "--find-links") for option in options):
        options += ["--index-strategy", "unsafe-best-match"]
    return options
