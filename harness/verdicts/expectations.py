"""Behaviour gating against an expectations file: the failures a run is known to have, per server,
scenario, variant and check. A known failure is reported, a failure the file does not list fails the
gate, and a listed one that no longer happens is reported as fixed.

The file is written from a run (``harness gate RUN_DIR --write-expectations FILE``) and read by the
gate (``expectations = "FILE"`` in ``[tool.harness.gate]``). TOML (or JSON, by the suffix)::

    run_id = "20261129-222402-3951"            # the run it was written from
    servers = ["legacy", "mlx-textgen"]         # what that run covered: a listed failure of a
    scenarios = ["tools-hermes"]                # server or scenario another run did not play is
                                                # "not run", never "fixed"
    [[known]]
    server = "mlx-textgen"
    scenario = "tools-hermes"
    variant = "stream,tool_choice=auto"
    check = "stream.empty"
    turns = [0, 2]                              # where it was seen (information only)
    evidence = "..."                            # the first evidence (information only)

Every failure counts: failed checks, request errors and the harness's cut-offs (``request.error``,
``stop.runaway``, ``stop.stalled``), on every server and scenario of the run; notes do not.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.analysis.summary import Summary, row_failures
from harness.core.errors import ConfigError, read_user_file

WRITE_HINT = "Write one from a run with `harness gate RUN_DIR --write-expectations FILE`."


@dataclass(frozen=True, order=True)
class Failure:
    server: str
    scenario: str
    variant: str
    check: str

    def where(self) -> str:
        return f"{self.server} [{self.scenario}" + (f" {self.variant}" if self.variant else "") + "]"


@dataclass
class Seen:
    """Where a failure was seen in a run."""

    turns: list[int] = field(default_factory=list)
    evidence: str = ""


class KnownFailure(BaseModel):
    """One ``[[known]]`` table of the file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    server: str
    scenario: str
    variant: str = ""
    check: str
    turns: list[int] = Field(default_factory=list)  # where it was seen (information only)
    evidence: str = ""  # the first evidence (information only)


class ExpectationsFile(BaseModel):
    """The file as written by ``--write-expectations``; a misspelt key is an error, not ignored."""

    model_config = ConfigDict(extra="forbid", strict=True)

    run_id: str | None = None
    servers: list[str] = Field(default_factory=list)
    scenarios: list[str] = Field(default_factory=list)
    known: list[KnownFailure] = Field(default_factory=list)


@dataclass
class Expectations:
    path: Path
    known: dict[Failure, Seen]
    servers: list[str]
    scenarios: list[str]
    run_id: str | None = None


@dataclass
class Outcome:
    known: dict[Failure, Seen]  # listed and seen
    new: dict[Failure, Seen]  # seen, not listed
    fixed: list[Failure]  # listed, its server and scenario ran, not seen
    not_run: list[Failure]  # listed, its server or scenario did not run here


def run_failures(summary: Summary) -> dict[Failure, Seen]:
    """Every failure of the run (warm-ups aside), with the turns it was seen on."""
    found: dict[Failure, Seen] = {}
    frame = summary.frame
    if frame.empty:
        return found
    live = frame[frame["request_kind"] != "warmup"].sort_values(["server", "scenario", "variant", "turn"])
    for _, row in live.iterrows():
        for check in row_failures(row):
            key = Failure(str(row["server"]), str(row["scenario"]), str(row["variant"] or ""), check)
            seen = found.setdefault(key, Seen())
            if int(row["turn"]) not in seen.turns:
                seen.turns.append(int(row["turn"]))
            if not seen.evidence:
                evidence = (row["check_evidence"] or {}).get(check) if isinstance(row["check_evidence"], dict) else ""
                if not evidence and check == "request.error" and isinstance(row["error"], str):
                    evidence = row["error"]
                seen.evidence = str(evidence or "")[:200]
    return found


def compare(found: dict[Failure, Seen], expected: Expectations, ran: set[tuple[str, str]]) -> Outcome:
    """Sorts the run's failures against the file. ``ran``: the (server, scenario) pairs of the run."""
    known = {f: s for f, s in found.items() if f in expected.known}
    new = {f: s for f, s in found.items() if f not in expected.known}
    missing = [f for f in sorted(expected.known) if f not in found]
    fixed = [f for f in missing if (f.server, f.scenario) in ran]
    not_run = [f for f in missing if (f.server, f.scenario) not in ran]
    return Outcome(known=known, new=new, fixed=fixed, not_run=not_run)


def read_expectations(path: str | Path) -> Expectations:
    path = Path(path)
    text = read_user_file(path, WRITE_HINT, what="the expectations file")
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"the expectations file {path} is not valid {path.suffix or 'TOML'}: {exc}.") from None
    try:
        parsed = ExpectationsFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_where(err['loc'])}: {err['msg']}"
            + ("" if isinstance(err["input"], dict) else f" (got {err['input']!r})")
            for err in exc.errors()
        )
        raise ConfigError(f"the expectations file {path} is not valid: {problems}. {WRITE_HINT}") from None
    known = {
        Failure(entry.server, entry.scenario, entry.variant, entry.check): Seen(entry.turns, entry.evidence)
        for entry in parsed.known
    }
    return Expectations(
        path=path, known=known, servers=parsed.servers, scenarios=parsed.scenarios, run_id=parsed.run_id
    )


def _where(loc: tuple[int | str, ...]) -> str:
    """``("known", 0, "check")`` -> ``known[0].check`` (the first [[known]] table is known[0])."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the file"


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes), on one line.
    return json.dumps(value, ensure_ascii=False)


def expectations_text(summary: Summary, meta: dict[str, Any]) -> str:
    """The expectations file for the failures of this run (TOML)."""
    found = run_failures(summary)
    run_id = meta.get("run_id") or "?"
    lines = [
        "# Behaviour failures known in this comparison: the gate reports them as known, fails on any",
        "# failure not listed here, and reports a listed one that no longer happens as fixed.",
        f"# Written by `harness gate RUN_DIR --write-expectations FILE` from run {run_id}.",
        f"run_id = {_toml_string(str(run_id))}",
        "servers = [" + ", ".join(_toml_string(s) for s in summary.servers) + "]",
        "scenarios = [" + ", ".join(_toml_string(s) for s in summary.scenarios) + "]",
    ]
    for failure in sorted(found):
        seen = found[failure]
        lines += [
            "",
            "[[known]]",
            f"server = {_toml_string(failure.server)}",
            f"scenario = {_toml_string(failure.scenario)}",
            f"variant = {_toml_string(failure.variant)}",
            f"check = {_toml_string(failure.check)}",
            "turns = [" + ", ".join(str(t) for t in sorted(seen.turns)) + "]",
        ]
        if seen.evidence:
            lines.append(f"evidence = {_toml_string(seen.evidence)}")
    return "\n".join(lines) + "\n"


def write_expectations(path: str | Path, summary: Summary, meta: dict[str, Any]) -> int:
    """Writes the file (TOML, or JSON for a .json path); returns the number of known failures."""
    path = Path(path)
    if path.suffix == ".json":
        found = run_failures(summary)
        data = {
            "run_id": meta.get("run_id"),
            "servers": summary.servers,
            "scenarios": summary.scenarios,
            "known": [
                {**vars(f), "turns": sorted(found[f].turns), "evidence": found[f].evidence} for f in sorted(found)
            ],
        }
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return len(found)
    text = expectations_text(summary, meta)
    path.write_text(text, encoding="utf-8")
    return text.count("[[known]]")
