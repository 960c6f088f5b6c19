"""Disk-cache accounting: what a server wrote under its cache dirs during one request."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CacheSnapshot:
    """Files (path -> (size, mtime_ns)) under a set of directories at one moment."""

    files: dict[str, tuple[int, int]]

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self.files.values())


@dataclass(frozen=True)
class CacheDelta:
    new_files: list[str]
    new_bytes: int  # bytes of files that appeared plus growth of files that were rewritten
    total_bytes: int  # everything under the cache dirs afterwards


def snapshot(directories: list[Path]) -> CacheSnapshot:
    files: dict[str, tuple[int, int]] = {}
    for directory in directories:
        if not Path(directory).is_dir():
            continue
        for root, _dirs, names in os.walk(directory):
            for name in names:
                path = os.path.join(root, name)
                try:
                    stat = os.stat(path)
                except OSError:
                    continue  # deleted while we walked
                files[path] = (stat.st_size, stat.st_mtime_ns)
    return CacheSnapshot(files)


def diff(before: CacheSnapshot, after: CacheSnapshot) -> CacheDelta:
    new_files = sorted(path for path in after.files if path not in before.files)
    new_bytes = sum(after.files[path][0] for path in new_files)
    for path, (size, mtime) in after.files.items():
        if path in before.files and mtime != before.files[path][1]:
            new_bytes += max(0, size - before.files[path][0])
    return CacheDelta(new_files=new_files, new_bytes=new_bytes, total_bytes=after.total_bytes)
