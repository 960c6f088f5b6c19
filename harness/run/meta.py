"""run.json and the run folder: what a run was (config, versions, machine, models, servers as they
were started), written before the first server starts and rewritten as the run learns more, so an
interrupted run still says what it was."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import secrets
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

from harness import __version__
from harness.core.errors import ConfigError
from harness.core.rows import RUN_FILE
from harness.models.builtin import model_checksum
from harness.server.spec import ServerSpec


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def prepare_run_dir(out: Path, run_id: str) -> Path:
    """Creates the run folder, failing before any server starts if it cannot be written."""
    # Absolute: each server runs with its HOME as working directory, where a relative path would
    # point somewhere else entirely.
    run_dir = (Path(out) / run_id).resolve()
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot write the run folder {run_dir}: {exc.strerror or exc}. Choose a writable folder with --out DIR."
        ) from None
    return run_dir


def package_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version(), "harness": __version__}
    for name in ("mlx", "mlx-lm", "mlx-textgen", "transformers", "httpx"):
        try:
            found[name.replace("-", "_")] = version(name)
        except PackageNotFoundError:
            found[name.replace("-", "_")] = None
    return found


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def model_record(path: Path, builtin: bool) -> dict[str, Any]:
    return {"path": str(path), "name": path.name, "checksum": model_checksum(path), "builtin": builtin}


class RunMeta:
    """run.json, rewritten atomically whenever something worth keeping is learned."""

    def __init__(self, run_dir: Path, data: dict[str, Any]) -> None:
        self.path = run_dir / RUN_FILE
        self.data = data
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def server_entry(self, spec: ServerSpec) -> dict[str, Any]:
        return self.data["servers"].setdefault(
            spec.name,
            {
                "label": spec.label,
                "quirks": spec.quirks,
                "shims": [],
                "notes": [],
                "sessions": [],
                "remote": bool(spec.base_url),
            },
        )
