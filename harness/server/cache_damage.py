"""Damage done to a copy of a server's cache dirs, between two requests of a session.

The runner stops the server after a turn, copies its HOME (``copy_home``, which repoints paths that
named the original HOME at the copy) and damages the copy's cache dirs (``apply``) before a new
server process starts on the copy; the original stays as the server left it. What each damage does:

- ``intact``: nothing (the reference: a restart on an undamaged copy);
- ``empty``: every file under the cache dirs removed (the reference for a cold cache);
- ``truncate``: the newest cache data file (the one the next request of the session would reuse)
  cut to half its size;
- ``zeros``: that file overwritten with zero bytes, same length;
- ``delete-index``: the index files removed (``*.json``, e.g. MLX-Textgen's ``cached_prompts.json``),
  the data files left;
- ``read-only``: the cache dirs made read-only: a read-only bind mount where the harness runs as root
  (root ignores permission bits), else the write bits removed;
- ``full-disk``: the cache dirs moved onto a tmpfs of their size plus ``free_bytes`` (64 KiB by
  default), so the next cache file does not fit. Mounting needs root; elsewhere it is not applied.

A damage that cannot be done (no cache file to cut, no permission to mount) is not applied, and its
``action`` says why. Every mount is undone by ``release`` (and at exit, whatever happened), which also
gives write permission back so that the run folder can be removed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from harness.scenario.definition import CACHE_DAMAGE

INDEX_SUFFIXES = (".json",)
FULL_DISK_FREE_BYTES = 64 * 1024
PAGE = 4096
# Only files up to this size are searched for the original HOME's path (configs, small indexes).
REWRITE_MAX_BYTES = 256 * 1024

_MOUNTS: set[Path] = set()
_MOUNTS_LOCK = threading.Lock()


@dataclass
class CacheDamage:
    """One damage as it was done (or why it was not) and what ``release`` has to undo."""

    fault: str
    action: str
    applied: bool
    mounts: list[Path] = field(default_factory=list)
    read_only: list[Path] = field(default_factory=list)
    # Mounts whose files exist only there (a tmpfs): copied back under the mount point on release,
    # so the copy keeps what the server left as evidence.
    volatile: list[Path] = field(default_factory=list)

    def release(self) -> list[str]:
        """Unmounts (keeping a tmpfs's files) and gives write permission back; returns what could
        not be undone."""
        problems: list[str] = []
        for path in reversed(self.mounts):
            kept = None
            if path in self.volatile:
                kept = Path(tempfile.mkdtemp(prefix=".left-", dir=path.parent))
                shutil.copytree(path, kept, symlinks=True, dirs_exist_ok=True)
            problem = unmount(path)
            if problem:
                problems.append(problem)
            elif kept is not None:
                shutil.copytree(kept, path, symlinks=True, dirs_exist_ok=True)
            if kept is not None:
                shutil.rmtree(kept, ignore_errors=True)
        self.mounts.clear()
        self.volatile.clear()
        for path in self.read_only:
            _make_writable(path)
        self.read_only.clear()
        return problems


def copy_home(source: Path, target: Path) -> list[Path]:
    """A copy of a server's HOME (cache dirs, config, logs), links kept as links, that points at
    itself: small text files naming the original HOME (MLX-Textgen keeps its cache root as an absolute
    path in ``~/.config/mlx_textgen/.../config.json``) name the copy instead, or the server started on
    the copy would use the original's cache. Returns the files rewritten so."""
    shutil.copytree(source, target, symlinks=True)
    old, new = str(Path(source).resolve()).encode(), str(Path(target).resolve()).encode()
    rewritten = []
    for path in sorted(Path(target).rglob("*")):
        if not path.is_file() or path.is_symlink() or path.stat().st_size > REWRITE_MAX_BYTES:
            continue
        data = path.read_bytes()
        if old in data and b"\0" not in data and path.suffix != ".log":
            path.write_bytes(data.replace(old, new))
            rewritten.append(path)
    return rewritten


def _files(directories: list[Path]) -> list[Path]:
    found = []
    for directory in directories:
        if directory.is_dir():
            found += [path for path in sorted(directory.rglob("*")) if path.is_file() and not path.is_symlink()]
    return found


def _size_text(size: int) -> str:
    return f"{size:,} bytes"


def data_files(directories: list[Path]) -> list[Path]:
    """Cache data files, newest first (the index files left out)."""
    files = [path for path in _files(directories) if path.suffix not in INDEX_SUFFIXES]
    return sorted(files, key=lambda path: (path.stat().st_mtime_ns, path.stat().st_size), reverse=True)


def apply(fault: str, cache_dirs: list[Path], free_bytes: int = FULL_DISK_FREE_BYTES) -> CacheDamage:
    """Damages ``cache_dirs`` (a copy's) as ``fault`` says; see the module docstring."""
    if fault not in CACHE_DAMAGE:
        raise ValueError(f"unknown cache damage {fault!r}; known: {', '.join(CACHE_DAMAGE)}")
    where = ", ".join(f"{path.parent.name}/{path.name}" for path in cache_dirs) or "(no cache dir)"
    files = _files(cache_dirs)
    if fault == "intact":
        total = sum(path.stat().st_size for path in files)
        return CacheDamage(fault, f"copied as it was: {len(files)} files, {_size_text(total)}", True)
    if fault == "empty":
        for path in files:
            path.unlink()
        return CacheDamage(fault, f"emptied: {len(files)} files removed", True)
    if fault in ("truncate", "zeros"):
        newest = data_files(cache_dirs)
        if not newest:
            return CacheDamage(fault, f"not applied: no cache data file under {where}", False)
        target, size = newest[0], newest[0].stat().st_size
        if fault == "truncate":
            os.truncate(target, size // 2)
            return CacheDamage(fault, f"{target.name} cut from {_size_text(size)} to {_size_text(size // 2)}", True)
        with target.open("r+b") as handle:
            handle.write(b"\0" * size)
        return CacheDamage(fault, f"{target.name} overwritten with {_size_text(size)} of zeros", True)
    if fault == "delete-index":
        index = [path for path in files if path.suffix in INDEX_SUFFIXES]
        if not index:
            return CacheDamage(fault, f"not applied: no index file (*.json) under {where}", False)
        for path in index:
            path.unlink()
        return CacheDamage(fault, "removed " + ", ".join(path.name for path in index), True)
    if fault == "read-only":
        return _read_only(cache_dirs)
    return _full_disk(cache_dirs, free_bytes)


def _read_only(cache_dirs: list[Path]) -> CacheDamage:
    damage = CacheDamage("read-only", "", False)
    if not cache_dirs:
        damage.action = "not applied: the server has no cache dir"
        return damage
    how = []
    for directory in cache_dirs:
        directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            problem = _mount(["--bind", str(directory), str(directory)], directory)
            if problem is None:
                damage.mounts.append(directory)
                problem = _run(["mount", "-o", "remount,bind,ro", str(directory)])
            if problem:
                damage.release()
                damage.action = f"not applied: a read-only bind mount was refused ({problem})"
                return damage
            how.append("read-only bind mount")
        else:
            for path in [directory, *directory.rglob("*")]:
                if not path.is_symlink():
                    path.chmod(path.stat().st_mode & ~0o222)
            damage.read_only.append(directory)
            how.append("write permission removed")
    if not all(_refuses_writes(directory) for directory in cache_dirs):
        damage.release()
        damage.action = "not applied: the cache dir still accepted a new file"
        return damage
    damage.applied = True
    damage.action = f"cache dirs made read-only ({', '.join(sorted(set(how)))}); a test write was refused"
    return damage


def _refuses_writes(directory: Path) -> bool:
    probe = directory / ".harness-write-probe"
    try:
        probe.write_bytes(b"x")
    except OSError:
        return True
    probe.unlink()
    return False


def _full_disk(cache_dirs: list[Path], free_bytes: int) -> CacheDamage:
    damage = CacheDamage("full-disk", "", False)
    if not cache_dirs:
        damage.action = "not applied: the server has no cache dir"
        return damage
    if os.geteuid() != 0:
        damage.action = "not applied: mounting a size-limited tmpfs needs root"
        return damage
    details = []
    for directory in cache_dirs:
        directory.mkdir(parents=True, exist_ok=True)
        files = _files([directory])
        # tmpfs counts whole pages per file; the rest of the size is what is left free.
        used = sum((path.stat().st_size + PAGE - 1) // PAGE * PAGE for path in files)
        size = used + (free_bytes + PAGE - 1) // PAGE * PAGE
        aside = Path(tempfile.mkdtemp(prefix=".contents-", dir=directory.parent))
        for child in list(directory.iterdir()):
            shutil.move(str(child), str(aside / child.name))
        problem = _mount(["-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory)], directory)
        if problem is None:
            damage.mounts.append(directory)
            damage.volatile.append(directory)
        try:
            shutil.copytree(aside, directory, symlinks=True, dirs_exist_ok=True)
        except OSError as exc:
            problem = problem or f"copying the cache onto the tmpfs failed: {exc}"
        shutil.rmtree(aside, ignore_errors=True)
        if problem:
            damage.release()
            damage.action = f"not applied: {problem}"
            return damage
        stats = os.statvfs(directory)
        details.append(
            f"{directory.name} on a {_size_text(size)} tmpfs holding {len(files)} files, "
            f"{_size_text(stats.f_bavail * stats.f_frsize)} free"
        )
    damage.applied = True
    damage.action = "; ".join(details)
    return damage


def _run(command: list[str]) -> str | None:
    """None when ``command`` succeeded, else what it said."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if done.returncode != 0:
        return (done.stderr or done.stdout).strip() or f"exit {done.returncode}"
    return None


def _mount(arguments: list[str], target: Path) -> str | None:
    problem = _run(["mount", *arguments])
    if problem is None:
        with _MOUNTS_LOCK:
            _MOUNTS.add(target)
    return problem


def unmount(path: Path) -> str | None:
    """Unmounts ``path`` (lazily if it is still busy); None once it is no longer mounted."""
    problem = _run(["umount", str(path)])
    if problem is not None and os.path.ismount(path):
        problem = _run(["umount", "-l", str(path)])
    with _MOUNTS_LOCK:
        _MOUNTS.discard(path)
    return None if problem is None or not os.path.ismount(path) else f"{path}: {problem}"


def release_all() -> None:
    """Undoes every mount this process made (at exit, and from the runner when a run ends)."""
    with _MOUNTS_LOCK:
        mounts = sorted(_MOUNTS, key=lambda path: len(path.parts), reverse=True)
    for path in mounts:
        unmount(path)


def _make_writable(directory: Path) -> None:
    for path in [directory, *directory.rglob("*")]:
        if not path.is_symlink():
            with contextlib.suppress(OSError):
                path.chmod(path.stat().st_mode | 0o200)


atexit.register(release_all)
