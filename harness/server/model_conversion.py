"""A model in the format a server loads: built-in models are mlx-lm folders; a server whose
catalogue entry says ``model_format = "gguf"`` (llama.cpp) is given a GGUF file converted from the
folder once and kept in the per-user cache.

The file is named by the model folder's name, its checksum (``model_checksum``) and a key of the
conversion (converter, its arguments, the declared pre-tokenizer): a changed model or converter gives
a new file, an unchanged one is found again. The converter writes to a ``.partial`` file renamed
when it succeeded, and a ``.json`` record beside the file is written last, so a conversion cut short
is done again. The converter comes from a source distribution (``pip download``), unpacked once
into the server's environment folder, and runs on the environment's Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import ServerError
from harness.core.paths import server_programs_dir, user_cache_dir
from harness.models.builtin import model_checksum
from harness.server.environments import locked, run_logged

GGUF_DIR_ENV = "HARNESS_GGUF_DIR"
CONVERT_TIMEOUT_S = 900
DOWNLOAD_TIMEOUT_S = 900
# What servers/gguf_convert.py prints when it declared the pre-tokenizer.
DECLARED_LINE = re.compile(r"^declared pre-tokenizer: (\S+)", re.MULTILINE)


class ModelConversionError(ServerError):
    """The model could not be converted to the format the server loads. The run goes on with the
    other servers."""


@dataclass(frozen=True)
class ConversionSpec:
    """How to convert: ``script`` (inside the source distribution of the requirement ``source``) with
    ``args``; ``pre_tokenizer`` names a BPE pre-tokenizer the converter does not recognise."""

    source: str
    script: str
    args: tuple[str, ...] = ()
    pre_tokenizer: str | None = None

    def key(self) -> str:
        identity = [self.source, self.script, list(self.args), self.pre_tokenizer]
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:8]


@dataclass
class ConvertedModel:
    """A converted model. ``reused``: found from an earlier conversion (``seconds`` is that one's)."""

    source_model: Path
    checksum: str
    path: Path
    reused: bool
    seconds: float
    declared_pre_tokenizer: str | None
    converter: str

    def record(self) -> dict[str, Any]:
        """run.json's account of it."""
        return {
            "format": "gguf",
            "source_model": str(self.source_model),
            "source_checksum": self.checksum,
            "gguf": str(self.path),
            "gguf_bytes": self.path.stat().st_size if self.path.exists() else None,
            "reused": self.reused,
            "seconds": round(self.seconds, 1),
            "declared_pre_tokenizer": self.declared_pre_tokenizer,
            "converter": self.converter,
        }


# A converter: (model folder, file to write, log) -> the pre-tokenizer it declared, if any.
Converter = Callable[[Path, Path, Path], "str | None"]


def gguf_dir() -> Path:
    """``$HARNESS_GGUF_DIR``, else ``<per-user cache>/mlx-migration-harness/gguf``."""
    if os.environ.get(GGUF_DIR_ENV):
        return Path(os.environ[GGUF_DIR_ENV]).expanduser().resolve()
    return user_cache_dir() / "gguf"


def gguf_path(model_dir: Path, checksum: str, conversion: ConversionSpec, root: Path) -> Path:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model_dir).name)
    return root / f"{name}-{checksum}-{conversion.key()}.gguf"


def ensure_gguf(
    model_dir: Path,
    conversion: ConversionSpec,
    converter: Converter,
    say: Callable[[str], None] = print,
    root: Path | None = None,
) -> ConvertedModel:
    """The GGUF file of ``model_dir``: found when converted before, else made with ``converter``
    (under a lock, so two harness processes never convert one model at once). Raises
    ModelConversionError with the converter's last lines."""
    model_dir = Path(model_dir).resolve()
    root = root or gguf_dir()
    root.mkdir(parents=True, exist_ok=True)
    checksum = model_checksum(model_dir)
    target = gguf_path(model_dir, checksum, conversion, root)
    record_path = target.with_suffix(".json")
    with locked(target.with_suffix(".lock")):
        found = _found(model_dir, checksum, target, record_path, conversion)
        if found is not None:
            return found
        partial = target.with_name(target.name + ".partial")
        log = target.with_suffix(".log")
        partial.unlink(missing_ok=True)
        log.unlink(missing_ok=True)
        say(f"converting {model_dir.name} to GGUF with {conversion.script} ({conversion.source})")
        started = time.monotonic()
        declared = converter(model_dir, partial, log)
        seconds = time.monotonic() - started
        if not partial.is_file() or partial.stat().st_size == 0:
            raise ModelConversionError(
                f"the conversion of {model_dir} to GGUF wrote no file ({partial}). Look at {log}."
            )
        partial.replace(target)
        converted = ConvertedModel(model_dir, checksum, target, False, seconds, declared, _describe(conversion))
        record = {**converted.record(), "created_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        record_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        say(f"{model_dir.name} converted in {seconds:.1f} s: {target}")
        return converted


def _found(
    model_dir: Path, checksum: str, target: Path, record_path: Path, conversion: ConversionSpec
) -> ConvertedModel | None:
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not target.is_file():
        return None
    return ConvertedModel(
        model_dir,
        checksum,
        target,
        True,
        float(record.get("seconds") or 0.0),
        record.get("declared_pre_tokenizer"),
        _describe(conversion),
    )


def _describe(conversion: ConversionSpec) -> str:
    return " ".join([conversion.script, "from", conversion.source, *conversion.args])


def script_converter(conversion: ConversionSpec, python: Path, sources_dir: Path) -> Converter:
    """The converter that runs ``conversion.script`` from its source distribution (fetched into
    ``sources_dir`` on first use) on ``python``, through servers/gguf_convert.py."""

    def convert(model_dir: Path, out: Path, log: Path) -> str | None:
        script = source_tree(conversion.source, sources_dir, log) / conversion.script
        if not script.is_file():
            raise ModelConversionError(
                f"{conversion.source}'s source distribution has no {conversion.script}. "
                "Fix [conversion].script in the server's catalogue entry."
            )
        command = [str(python), str(server_programs_dir() / "gguf_convert.py"), "--script", str(script)]
        if conversion.pre_tokenizer:
            command += ["--pre-tokenizer", conversion.pre_tokenizer]
        command += ["--", str(model_dir), "--outfile", str(out), *conversion.args]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        _call(command, log, f"converting {model_dir}", env=env, cwd=out.parent, timeout_s=CONVERT_TIMEOUT_S)
        match = DECLARED_LINE.search(log.read_text(encoding="utf-8", errors="replace"))
        return match.group(1) if match else None

    return convert


def source_tree(requirement: str, sources_dir: Path, log: Path) -> Path:
    """The unpacked source distribution of ``requirement`` (fetched with the harness's pip, as pip is
    configured), kept under ``sources_dir``."""
    folder = sources_dir / re.sub(r"[^A-Za-z0-9._-]+", "_", requirement)
    sources_dir.mkdir(parents=True, exist_ok=True)
    with locked(sources_dir / f"{folder.name}.lock"):
        tree = folder / "tree"
        if (folder / "complete").is_file():
            return _single_root(tree)
        if folder.exists():
            shutil.rmtree(folder)  # a fetch cut short: start again
        download = folder / "download"
        download.mkdir(parents=True)
        command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check"]
        command += ["--no-binary", ":all:", "--no-deps", "--dest", str(download), requirement]
        _call(command, log, f"fetching the source distribution of {requirement}", timeout_s=DOWNLOAD_TIMEOUT_S)
        archives = sorted(download.iterdir())
        if len(archives) != 1:
            raise ModelConversionError(f"pip download {requirement} gave {len(archives)} files in {download}, not one.")
        _unpack(archives[0], tree)
        (folder / "complete").write_text(archives[0].name + "\n", encoding="utf-8")
        return _single_root(tree)


def _unpack(archive: Path, into: Path) -> None:
    into.mkdir(parents=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(into)
    else:
        with tarfile.open(archive) as handle:
            handle.extractall(into, filter="data")


def _single_root(tree: Path) -> Path:
    entries = [p for p in tree.iterdir() if p.is_dir()]
    return entries[0] if len(entries) == 1 else tree


def _call(
    command: list[str],
    log: Path,
    what: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = CONVERT_TIMEOUT_S,
) -> None:
    code, tail = run_logged(command, log, timeout_s, env=env, cwd=cwd)
    if code != 0:
        raise ModelConversionError(
            f"the model conversion failed {what} (exit {code}). Last lines of {log}:\n{tail}\n"
            "Fix the cause shown (the model, or [conversion] in the server's catalogue entry), or leave the "
            "server out of --servers."
        )
