"""What the client replay works on and what it records.

A ``CapturedAnswer`` is one answer as the server sent it: the protocol it speaks, streamed or not,
the status, the exact bytes and, for an answer that ended in a transport error (a cut stream, a
reset), that error, so the replay ends the bytes the same way. A ``ClientResult`` is what one
client library handed the application for it: the text, the tool calls with their arguments
parsed, the finish reason, or the exception it raised. Results go to ``clients.jsonl`` in the run
folder, one line per (answer, client), and ``clients.json`` says which clients ran, with their
versions, and why any did not.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.core.rows import Protocol, ResultRow
from harness.run.captures import read_answer

CLIENTS_FILE = "clients.jsonl"
CLIENTS_META_FILE = "clients.json"

# The wire protocols an answer can speak, in the words of ResultRow.protocol; each client declares
# the ones it reads.
OPENAI_CHAT: Protocol = "openai"  # /v1/chat/completions
ANTHROPIC_MESSAGES: Protocol = "anthropic"  # the Messages API


@dataclass(frozen=True)
class CapturedAnswer:
    key: str  # the answer file, relative to the run folder: unique within a run
    protocol: str
    stream: bool
    status: int | None
    body: bytes
    cut: str | None = None  # the transport error that ended the answer, if one did
    tool_names: tuple[str, ...] = ()  # the tools the harness saw called (a client may need them declared)


@dataclass
class ClientResult:
    answer: str  # CapturedAnswer.key
    client: str
    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"name", "arguments"}
    finish_reason: str | None = None
    error: str | None = None  # "ExceptionType: message" when the client raised

    def record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ClientStatus:
    """Whether a client ran on this run, its version, and why not where it did not."""

    name: str
    version: str | None = None
    skipped: str | None = None
    answers: int = 0

    def record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ClientReplay:
    """The replay of a run: each client's status and results, keyed by answer file."""

    statuses: list[ClientStatus]
    results: dict[tuple[str, str], ClientResult]  # (answer, client) -> result

    @property
    def ran(self) -> list[str]:
        return [status.name for status in self.statuses if not status.skipped]

    def status(self, client: str) -> ClientStatus | None:
        return next((status for status in self.statuses if status.name == client), None)

    @classmethod
    def of(cls, results: list[ClientResult], statuses: list[ClientStatus]) -> ClientReplay:
        return cls(statuses, {(result.answer, result.client): result for result in results})


def row_protocol(row: ResultRow) -> str:
    """The protocol of a row's answer: the row's own word where it carries one, else OpenAI chat."""
    protocol = getattr(row, "protocol", None)
    return protocol if isinstance(protocol, str) and protocol else OPENAI_CHAT


def replayable(row: ResultRow) -> bool:
    """An answer a client would really have received whole: not a warm-up, not one the harness cut
    off itself (runaway, stalled: a client would have read on), and with its bytes kept."""
    return bool(row.answer) and row.request_kind != "warmup" and row.stop_cause is None


def answer_of(run_dir: Path, row: ResultRow) -> CapturedAnswer | None:
    """The captured answer of ``row``, or None where its bytes are missing."""
    if not row.answer:
        return None
    try:
        body = read_answer(Path(run_dir), row.answer)
    except OSError:
        return None
    # An error on a 200 (or on no status at all) is the transport's: the bytes ended there.
    cut = row.error if row.error and row.http_status in (200, None) else None
    names = tuple(dict.fromkeys(str(call.get("name") or "") for call in row.tool_calls if call.get("name")))
    return CapturedAnswer(row.answer, row_protocol(row), row.stream, row.http_status, body, cut, names)


def write_results(run_dir: Path, results: list[ClientResult], statuses: list[ClientStatus]) -> None:
    run_dir = Path(run_dir)
    with (run_dir / CLIENTS_FILE).open("w", encoding="utf-8") as handle:
        for result in results:
            handle.write(json.dumps(result.record(), ensure_ascii=False) + "\n")
    meta = {"clients": [status.record() for status in statuses]}
    (run_dir / CLIENTS_META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def read_replay(run_dir: Path) -> ClientReplay | None:
    """The replay's statuses and results; None for a run that was never replayed."""
    run_dir = Path(run_dir)
    try:
        meta = json.loads((run_dir / CLIENTS_META_FILE).read_text(encoding="utf-8"))
        statuses = [ClientStatus(**item) for item in meta.get("clients") or []]
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    results: list[ClientResult] = []
    path = run_dir / CLIENTS_FILE
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    results.append(ClientResult(**json.loads(line)))
                except (ValueError, TypeError):
                    continue  # a torn last line
    return ClientReplay.of(results, statuses)
