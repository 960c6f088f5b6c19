"""What the checks work on and what they produce: the answer a client would have read, and the
checks it failed (with short evidence) plus the notes (documented quirks that are not failures)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EVIDENCE_CHARS = 200


@dataclass
class Answer:
    """What the client would have got."""

    content: str | None
    tool_calls: list[dict[str, Any]]  # [{"id", "name", "arguments": dict or raw string}]
    finish_reason: str | None
    usage: dict[str, Any] | None


@dataclass
class CheckOutcome:
    failed: list[str] = field(default_factory=list)
    evidence: dict[str, str] = field(default_factory=dict)  # check or note name -> short evidence
    notes: list[str] = field(default_factory=list)

    def fail(self, name: str, evidence: str = "") -> None:
        """Records a failed check; the first evidence of a check is the one kept."""
        if name not in self.failed:
            self.failed.append(name)
            self.evidence[name] = short(evidence)

    def note(self, name: str, evidence: str = "") -> None:
        if name not in self.notes:
            self.notes.append(name)
            self.evidence[name] = short(evidence)

    @property
    def ok(self) -> bool:
        return not self.failed


def short(text: str, limit: int = EVIDENCE_CHARS) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
