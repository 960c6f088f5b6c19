"""The result row: one per request, appended to results.jsonl and flushed as it is written.

Every later stage (tables, plots, verdicts, gates, claims) reads these rows and nothing else, so a
partial or interrupted run can still be reported on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

# "side": a short request sent alone, outside the main conversation (a scenario turn with side: true).
RequestKind = Literal["first", "first-warm", "follow-up", "restart", "warmup", "side"]

# The API a request was sent through: OpenAI chat completions, or the Anthropic Messages API
# (a recorded Anthropic body sent as it was, only ``model`` swapped).
Protocol = Literal["openai", "anthropic"]
PROTOCOLS: tuple[Protocol, ...] = ("openai", "anthropic")

# "first-warm": the first request of a conversation sent to a server that has already served another
# mode of the same scenario, so its prefix may be cached; kept out of first-request statistics.
# "restart": the first request after the server was restarted on the same (or a damaged copy of its) cache.

# The files of a run folder that later stages read back.
RESULTS_FILE = "results.jsonl"  # one ResultRow per line
RUN_FILE = "run.json"  # config, versions, models, quirks, shims, server sessions, notes
BOUND_FILE = "bound.json"  # the cache-perfect bound (--bound)


class ResultRow(BaseModel):
    """What one request did. Failures are rows (``error`` set), never exceptions that end the run."""

    run_id: str
    server: str
    scenario: str
    repeat: int = 0
    # Which of the --concurrency N simultaneous copies of the scenario this request belongs to.
    session: int = 0
    # Which conversation of an interleaved scenario (several sessions resumed in turn) it belongs to.
    conversation: int = 0
    # The size (in tokens) the system prompt was grown or cut to with --context-tokens; None: as written.
    context_tokens: int | None = None
    # How the scenario was played, e.g. "stream" / "no-stream" plus "tool_choice=required": one
    # scenario can be replayed in several modes and rows of different variants are never compared.
    variant: str = ""
    # The API the request went through (see ``Protocol``); rows of one turn sent both ways are set
    # side by side by the report.
    protocol: Protocol = "openai"
    model: str | None = None
    tool_choice: str | None = None
    turn: int
    # The turn's label in the scenario (e.g. the request shape it sends), if it has one.
    turn_name: str | None = None
    request_kind: RequestKind
    stream: bool
    started_at: float
    # Time to the first token of any kind: content, tool-call or reasoning delta (not the role-only
    # chunk); for a non-streamed request it equals total_s because nothing arrives before the body.
    ttft_s: float | None = None
    total_s: float | None = None
    # Time to the first byte of the response body (a role-only chunk counts), and to the first
    # visible content (text the user would see; None when the answer has none).
    ttfb_s: float | None = None
    ttft_content_s: float | None = None
    http_status: int | None = None
    error: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # Where the token counts came from: "usage" (server-reported) or "counted" (our tokenizer).
    tokens_source: str | None = None
    decode_tok_s: float | None = None
    cached_tokens: int | None = None
    # Whether this request reused a prompt cache (at least half of its prompt), and which layer of
    # evidence decided it: "protocol" (usage.prompt_tokens_details.cached_tokens), "log" (the
    # server's log lines) or "timing" (its prompt-processing time against its own first request).
    # None when nothing could tell.
    cache_reused: bool | None = None
    reuse_source: str | None = None
    cache_files_new: int = 0
    cache_bytes_new: int = 0
    # Everything under the server's cache dirs after the request (apparent file sizes, every file
    # in every watched dir, recursively), and how many files that is.
    cache_bytes_total: int = 0
    cache_files_total: int = 0
    cache_files: list[str] = Field(default_factory=list)
    # Resident memory of the server's whole process tree just before the request was sent and just
    # after its answer ended (psutil); None for a remote server or one that was not running.
    rss_before_bytes: int | None = None
    rss_after_bytes: int | None = None
    content: str | None = None
    content_sha: str | None = None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    checks_failed: list[str] = Field(default_factory=list)
    check_evidence: dict[str, str] = Field(default_factory=dict)
    check_notes: list[str] = Field(default_factory=list)
    ab_diff: str | None = None
    ab_detail: str | None = None
    # What the A/B diff compared this answer with: the reference server's name, or "recorded" (the
    # answer recorded with a recorded request, the reference wherever there is one).
    ab_reference: str | None = None
    stop_cause: str | None = None  # "runaway" / "stalled" when the harness cut the request off
    # A damaged cache (a turn's damage_cache_after): the damage done to a copy of the server's cache
    # dirs before this part of the session ("truncate", ..., or the references "intact" / "empty"),
    # on every row played on that copy; on the first request after it, what the harness did
    # (``fault_action``), what the server did (``fault_outcome``: answered / cache-miss / error /
    # crash / hang / wrong-answer) and the evidence (``fault_evidence``).
    fault: str | None = None
    fault_action: str | None = None
    fault_outcome: str | None = None
    fault_evidence: str | None = None
    # What a response cache keys on: the SHA-256 (first 16 hex digits) of the request's messages and
    # tools, so an identical earlier conversation can be recognised whatever the transport options.
    conversation_sha: str | None = None
    # Which server process answered (a restart or a crash starts a new session): an in-memory
    # response cache lives only as long as its process.
    server_session: str | None = None
    # The server's own word (log line or counters) that it answered from a response cache without
    # generating; None when the server does not say.
    served_from_cache: bool | None = None
    # The prompt-processing rate the server logged for this request (tokens/s); None when it logs none.
    prompt_tok_s: float | None = None
    # The folder under the run folder (e.g. "captures/0007-legacy-...") that keeps this request's
    # exact body, the raw answer and a curl line replaying it; set for requests that failed a check.
    capture: str | None = None
    # Where the run folder keeps the exact bytes of the answer (the capture's response.raw for a
    # failing request, else its slice of answers.raw, "answers.raw#OFFSET+LENGTH";
    # harness.run.captures.read_answer), which the client replay feeds to real client libraries.
    answer: str | None = None


class ResultWriter:
    """Appends rows to results.jsonl, flushing each one, so nothing measured is lost on a crash."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, row: ResultRow) -> None:
        self._file.write(row.model_dump_json() + "\n")
        self._file.flush()

    def sync(self) -> None:
        """Forces rows to disk (called at the end of each scenario)."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_rows(path: Path) -> list[ResultRow]:
    """Reads every complete row; a torn last line (the run was killed mid-write) is skipped."""
    rows: list[ResultRow] = []
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(ResultRow.model_validate(json.loads(line)))
            except (json.JSONDecodeError, ValueError):
                continue
    return rows


def rows_frame(rows: list[ResultRow]):  # -> pandas.DataFrame
    """The rows as a DataFrame (pandas imported lazily: the CLI's hot path does not need it)."""
    import pandas as pd

    columns = list(ResultRow.model_fields)
    return pd.DataFrame([row.model_dump() for row in rows], columns=columns)
