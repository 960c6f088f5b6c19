"""The corpus of known bugs of local servers: one YAML file per bug in ``scenarios/bugs/``.

Each entry says which server has the bug, where it was reported (``owner/repo#N``) or what was seen
here, which releases have it and which release fixed it, the scenario that shows it and the checks
that must fire on it::

    server: mlx-lm
    title: finish_reason "tool_call" instead of "tool_calls"
    reference: ml-explore/mlx-lm#782          # or seen_here: "what was observed, on which release"
    affected: ">=0.30.0,<0.30.5"              # a version specifier set (PEP 440)
    shown_on: "0.30.4"                        # the affected release the corpus run plays it on
    fixed: "0.30.5"                           # or null: no fix known
    checks: [stream.finish_reason_invalid]    # any of them firing flags the bug
    needs: [tool_calls]                       # what the model must produce for "clean" to mean clean
    not_reproducible: "..."                   # optional: why it cannot be shown here (not played)
    scenario:                                 # an ordinary scenario (harness.scenario.definition)
      model: tools-hermes
      turns: [...]

The scenario is written out as ``bug-<id>.yaml`` (the entry's file name without ``.yaml`` is its
id) with its file references made absolute, so the ordinary runner plays it. ``harness bugs``
(``harness.cli.bug_commands``) plays the entries of each server on the releases asked for and
``harness.analysis.bugs`` turns the rows into the detection matrix.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any, Literal

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.core.errors import HarnessError
from harness.core.paths import builtin_scenarios_dir
from harness.scenario.definition import Scenario, load_scenario

REFERENCE = re.compile(r"^[\w.-]+/[\w.-]+#\d+$")
SCENARIO_PREFIX = "bug-"


class BugCorpusError(HarnessError):
    """A corpus entry is missing or invalid; the message names the file, the field and the fix."""


def bugs_dir() -> Path:
    return builtin_scenarios_dir() / "bugs"


class BugEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = ""  # the file's name, set at load time
    server: str
    title: str
    reference: str | None = None
    seen_here: str | None = None
    affected: str
    shown_on: str
    fixed: str | None = None
    checks: list[str] = Field(min_length=1)
    # "tool_calls": some answer of the scenario must carry a tool call, else the model did not
    # produce what the bug needs and "clean" would mean nothing.
    needs: list[Literal["tool_calls"]] = Field(default_factory=list)
    not_reproducible: str | None = None
    scenario: dict[str, Any]

    @field_validator("reference")
    @classmethod
    def _reference_form(cls, value: str | None) -> str | None:
        if value is not None and not REFERENCE.match(value):
            raise ValueError(f"write a public reference as owner/repo#N (e.g. ml-explore/mlx-lm#711), not {value!r}")
        return value

    @field_validator("affected")
    @classmethod
    def _a_specifier(cls, value: str) -> str:
        try:
            SpecifierSet(value)
        except InvalidSpecifier:
            raise ValueError(f"not a version specifier set (e.g. '<0.27.0' or '>=0.30.0,<0.30.5'): {value!r}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BugEntry:
        if not self.reference and not self.seen_here:
            raise ValueError("give 'reference' (owner/repo#N) or 'seen_here' (what was observed, on which release)")
        for field_name in ("shown_on", "fixed"):
            value = getattr(self, field_name)
            if value is not None:
                try:
                    Version(value)
                except InvalidVersion:
                    raise ValueError(f"'{field_name}' must be a release number such as 0.30.5, not {value!r}") from None
        if not self.is_affected(self.shown_on):
            raise ValueError(f"'shown_on' {self.shown_on} is not within 'affected' ({self.affected})")
        if self.fixed is not None and self.is_affected(self.fixed):
            raise ValueError(f"'fixed' {self.fixed} is within 'affected' ({self.affected}); one of them is wrong")
        return self

    def is_affected(self, release: str) -> bool:
        """Whether ``release`` is one the entry says has the bug."""
        try:
            return Version(release) in SpecifierSet(self.affected)
        except InvalidVersion:
            return False

    @property
    def scenario_name(self) -> str:
        return SCENARIO_PREFIX + self.id

    @property
    def source(self) -> str:
        return self.reference or "seen here"

    @property
    def protocols(self) -> set[str]:
        """The APIs its scenario goes through: "anthropic" when a turn carries a Messages body."""
        turns = self.scenario.get("turns") or []
        native = any(isinstance(turn, dict) and "anthropic_request" in turn for turn in turns)
        return {"openai", "anthropic"} if native else {"openai"}

    def write_scenario(self, folder: Path, entry_dir: Path) -> Path:
        """The entry's scenario as a file the runner plays (file references made absolute)."""
        data = dict(self.scenario)
        data["name"] = self.scenario_name
        data.setdefault("description", f"{self.title} ({self.source})")
        tools = data.get("tools")
        if isinstance(tools, str):
            data["tools"] = str((entry_dir / tools).resolve())
        system = data.get("system")
        if isinstance(system, dict) and isinstance(system.get("file"), str):
            data["system"] = {"file": str((entry_dir / system["file"]).resolve())}
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.scenario_name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path


def load_entry(path: Path) -> BugEntry:
    """One corpus entry; its scenario is validated too, so a broken one fails here, not mid-run."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BugCorpusError(f"{path}: cannot be read as YAML ({exc}).") from None
    if not isinstance(data, dict):
        raise BugCorpusError(f"{path}: a corpus entry is a YAML mapping (server, title, affected, ...).")
    data["id"] = path.stem
    try:
        entry = BugEntry.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"field '{'.'.join(str(p) for p in e['loc']) or '-'}': {e['msg']}" for e in exc.errors())
        raise BugCorpusError(f"{path}: invalid corpus entry: {problems}. The format is in docs/bugs.md.") from None
    try:
        _validate_scenario(entry, path)
    except HarnessError as exc:
        raise BugCorpusError(f"{path}: field 'scenario': {exc}") from None
    return entry


def _validate_scenario(entry: BugEntry, path: Path) -> Scenario:
    with tempfile.TemporaryDirectory() as folder:
        return load_scenario(entry.write_scenario(Path(folder), path.parent))


def load_corpus(directory: Path | None = None) -> list[BugEntry]:
    """Every entry of the corpus, by server then id."""
    folder = directory or bugs_dir()
    if not folder.is_dir():
        raise BugCorpusError(f"{folder}: no corpus folder here (expected scenarios/bugs/ with one YAML file per bug).")
    entries = [load_entry(path) for path in sorted(folder.glob("*.yaml"))]
    return sorted(entries, key=lambda entry: (entry.server, entry.id))
