"""Where the harness finds what it ships and where it writes what it builds.

Built-in scenarios, the server programs it starts and the committed tool-call models are package
data (``harness/data``), read through ``importlib.resources`` so that a wheel or ``pip install .``
works as well as an editable checkout. pip always installs packages unzipped, so the data folder is
a real directory that server processes can be pointed at.

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


def builtin_scenarios_dir() -> Path:
    return data_dir() / "scenarios"


def server_programs_dir() -> Path:
    """The programs the built-in server specs start: the legacy stand-in and the MLX-Textgen launcher."""
    return data_dir() / "servers"


def committed_models_dir() -> Path:
    """The tool-call models trained once and shipped with the package."""
    return data_dir() / "models"


def built_models_dir() -> Path:
    """Where ``harness build-model`` writes the default model (see the module docstring)."""
    if os.environ.get(MODELS_DIR_ENV):
        return Path(os.environ[MODELS_DIR_ENV]).expanduser().resolve()
    return user_cache_dir() / "models"


def user_cache_dir() -> Path:
    """The per-user folder for what the harness builds or installs (models, client packages):
    ``$XDG_CACHE_HOME/mlx-migration-harness``, else ``~/.cache/mlx-migration-harness``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser().resolve() / "mlx-migration-harness"
