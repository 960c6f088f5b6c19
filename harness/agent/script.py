"""A scripted agent session: the prompts, the fixture project they work on, and how the client may
act (``scenarios/agent/claude-code.yaml`` is the built-in one). Format::

    name: claude-code-calc
    description: ...
    workspace: workspace          # a folder beside the file, copied fresh for each server and path
    tools: [Read, Glob, Grep, Edit, Write]
    permission_mode: acceptEdits
    max_output_tokens: 256        # the max_tokens the client asks for
    max_turns: 4                  # the most requests one prompt may take
    prompts: [first prompt, second prompt, ...]
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.core.errors import ConfigError
from harness.core.paths import builtin_scenarios_dir

PERMISSION_MODES = ("acceptEdits", "dontAsk", "plan", "manual")


class SessionScript(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    workspace: str
    tools: list[str] = Field(min_length=1)
    permission_mode: Literal["acceptEdits", "dontAsk", "plan", "manual"] = "acceptEdits"
    max_output_tokens: int = Field(default=256, ge=1)
    max_turns: int = Field(default=4, ge=1)
    prompts: list[str] = Field(min_length=1)
    # Where the file was read from: the workspace is found beside it.
    source: Path = Path()

    @property
    def workspace_dir(self) -> Path:
        return (self.source.parent / self.workspace).resolve()


def builtin_script() -> Path:
    return builtin_scenarios_dir() / "agent" / "claude-code.yaml"


def load_script(path: Path | None = None) -> SessionScript:
    """Reads and checks a session script; every problem names the file and the field."""
    path = Path(path) if path is not None else builtin_script()
    if not path.is_file():
        raise ConfigError(f"{path}: no such session script. Give a YAML file (see {builtin_script()}).")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a session script is a mapping with name, workspace, tools and prompts.")
    try:
        script = SessionScript.model_validate({**data, "source": path.resolve()})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors())
        raise ConfigError(f"{path}: {problems}. Fix these fields (format in harness/agent/script.py).") from None
    if not script.workspace_dir.is_dir():
        raise ConfigError(
            f"{path}: workspace {script.workspace!r} is not a folder beside the file ({script.workspace_dir})."
        )
    return script


def make_workspace(script: SessionScript, where: Path) -> Path:
    """A fresh copy of the script's fixture project at ``where`` (which must not exist yet)."""
    shutil.copytree(script.workspace_dir, where, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return where
