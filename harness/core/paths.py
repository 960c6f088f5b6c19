"""Where the harness finds what it ships and where it writes what it builds.

The server programs it starts and the built-in scenarios live at the top of the repository
(``servers/``, ``scenarios/``); a wheel carries them as ``harness/data/servers`` and
``harness/data/scenarios`` (mapped in at build time, see pyproject.toml). ``shipped_dir`` is the one
place that tells the two apart: the packaged copy when there is one, else the checkout's folder, so an
editable install and a wheel read the same files. The committed tool-call models and the tokenizer
corpus are package data (``harness/data``) in both. pip always installs packages unzipped, so these
are real directories that server processes can be pointed at.

The random-weight default model is built, not shipped: it goes to a per-user folder
(``$HARNESS_MODELS_DIR``, else ``$XDG_CACHE_HOME/mlx-migration-harness/models``, else
``~/.cache/mlx-migration-harness/models``), so an installed harness never writes into site-packages.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

MODELS_DIR_ENV = "HARNESS_MODELS_DIR"


def data_dir() -> Path:
    """``harness/data`` of the installed package."""
    return Path(str(files("harness") / "data"))


def shipped_dir(name: str) -> Path:
    """A top-level folder of the repository that the wheel carries in the package (``servers`` or
    ``scenarios``): ``harness/data/<name>`` in an installed wheel, ``<checkout>/<name>`` otherwise."""
    packaged = data_dir() / name
    if packaged.is_dir():
        return packaged
    return Path(str(files("harness"))).parent / name


def builtin_scenarios_dir() -> Path:
    """The built-in scenarios (``scenarios/``)."""
    return shipped_dir("scenarios")


def server_programs_dir() -> Path:
    """The programs the built-in server specs start (``servers/``): the legacy stand-in and the
    MLX-Textgen launcher."""
    return shipped_dir("servers")


def committed_models_dir() -> Path:
    """The tool-call models trained once and shipped with the package."""
    return data_dir() / "models"


def user_cache_dir() -> Path:
    """The harness's per-user cache: ``$XDG_CACHE_HOME/mlx-migration-harness``, else
    ``~/.cache/mlx-migration-harness`` (built models, servers' environments)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser().resolve() / "mlx-migration-harness"


def built_models_dir() -> Path:
    """Where ``harness build-model`` writes the default model (see the module docstring)."""
    if os.environ.get(MODELS_DIR_ENV):
        return Path(os.environ[MODELS_DIR_ENV]).expanduser().resolve()
    return user_cache_dir() / "models"
