"""The one request path: a planned request sent to a server becomes a finished row.

Every way the harness sends a request goes through ``RequestExecutor``: a scenario played in order
(``runner``), N sessions at once (``concurrent``) and the warm-up after each start. It works in two
steps because what a request leaves on disk is only known later:

- ``send``: the HTTP exchange, timed (``capture.http``), its answer checked (``checks``), the row
  built, the API key masked in it, and the A/B diff against the reference server's row filled in;
- ``finish``: the cache files that appeared since the request was sent, the cache-reuse decision
  (``decide_cache_reuse``, the only place that rule lives), then the row goes to the sink
  (results.jsonl and the progress line).

When ``finish`` runs is the caller's schedule: the sequential runner finishes a row once the next
request is about to go (a server may save its cache just after answering); the concurrent runner
when the next answer in the batch completes.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from harness.capture import cachefiles
from harness.capture.http import ReplayLimits, conversation_sha, send
from harness.checks import conformance
from harness.core.rows import RequestKind, ResultRow
from harness.models.tokens import TokenCounter
from harness.scenario.definition import PlannedRequest, Scenario
from harness.server.process import ServerProcess, describe_exit

# Reusing a chat template's first few tokens is not a working prompt cache: reuse counts only when
# at least this share of the prompt came from the cache.
MIN_REUSED_SHARE = 0.5


def redact_row(row: ResultRow, secret: str | None) -> ResultRow:
    """The row with ``secret`` masked wherever it appears (content, error, evidence, tool calls)."""
    if not secret:
        return row
    text = row.model_dump_json()
    escaped = json.dumps(secret)[1:-1]  # the secret as it is written inside a JSON string
    if escaped not in text:
        return row
    return ResultRow.model_validate_json(text.replace(escaped, "***"))


def decide_cache_reuse(
    prompt_tokens: int | None,
    usage_cached_tokens: int | None,
    log_reused: bool | None,
    log_tokens: int | None,
) -> tuple[bool | None, int | None]:
    """(reused?, tokens reused) for one request; (None, None) when nothing says.

    The server's own usage figure (``prompt_tokens_details.cached_tokens``) wins over its log for the
    token count; the log decides reuse when it has a line for this request. Either way, reuse counts
    only when at least ``MIN_REUSED_SHARE`` of the prompt came from the cache.
    """
    reused, tokens = log_reused, log_tokens
    if usage_cached_tokens is not None:
        tokens = usage_cached_tokens
        if reused is None:
            reused = tokens > 0
    if reused and tokens is not None and prompt_tokens:
        reused = tokens >= MIN_REUSED_SHARE * prompt_tokens
    return reused, tokens


class ReferenceRows:
    """The reference server's rows, kept so that each other server's row of the same request (same
    scenario, mode, turn and session) gets an A/B diff. Safe to share between session threads."""

    def __init__(self, reference_server: str) -> None:
        self.reference_server = reference_server
        self._rows: dict[tuple[str, str, int, int], ResultRow] = {}
        self._lock = threading.Lock()

    def compare(self, row: ResultRow) -> None:
        key = (row.scenario, row.variant, row.turn, row.session)
        with self._lock:
            if row.server == self.reference_server:
                self._rows[key] = row
                return
            reference = self._rows.get(key)
        if reference is not None:
            row.ab_diff, row.ab_detail = conformance.ab_compare(reference, row)


@dataclass(frozen=True)
class RequestContext:
    """What stays the same for every request of one scenario mode on one server."""

    run_id: str
    run_dir: Path
    server: ServerProcess
    model_name: str  # the model folder's name, recorded on every row
    scenario: Scenario
    variant: str  # the mode's label, e.g. "stream,tool_choice=required"
    repeat: int
    tokens: TokenCounter
    limits: ReplayLimits


class RequestExecutor:
    """Turns (request, server, context) into a finished row; see the module docstring."""

    def __init__(
        self,
        context: RequestContext,
        sink: Callable[[ResultRow], None],
        references: ReferenceRows | None = None,
    ) -> None:
        self.context = context
        self.sink = sink
        self.references = references

    @property
    def server(self) -> ServerProcess:
        return self.context.server

    def send(self, client: httpx.Client, request: PlannedRequest, kind: RequestKind, session: int = 0) -> ResultRow:
        """Sends ``request``, checks the answer and returns its row (cache fields not yet filled)."""
        ctx, server = self.context, self.context.server
        spec = server.spec
        body = request.body(server.model_id or ctx.model_name)
        started_at = time.time()
        timed = send(client, server.base_url + "/v1/chat/completions", body, ctx.limits)
        answer = conformance.extract_answer(timed.captured)
        outcome = conformance.run_checks(timed.captured, answer, request)
        usage = answer.usage or {}
        output_text = (answer.content or "") + "".join(json.dumps(call.get("arguments")) for call in answer.tool_calls)
        counted = ctx.tokens.count(output_text) if ctx.tokens.available else None
        completion = usage.get("completion_tokens")
        decode = None
        if timed.ttft_s is not None and counted:
            span = timed.total_s - timed.ttft_s
            # Only a real stream spreads tokens over time; a fake stream sends all at once.
            if request.stream and span > 0.05 * timed.total_s and counted > 1:
                decode = (counted - 1) / span
        error = timed.captured.transport_error
        if error is None and timed.captured.http_status not in (200, None):
            error = f"HTTP {timed.captured.http_status}"
        if not spec.base_url:
            # A server that died during the request: say so, with how (e.g. killed by SIGKILL).
            dropped = timed.captured.transport_error is not None and timed.captured.stop_cause is None
            code = server.exit_status(wait_s=0.5 if dropped else 0.0)
            if code is not None:
                died = f"{spec.name} exited with {describe_exit(code)} during the request"
                error = f"{error}; {died}" if error else died
        details = usage.get("prompt_tokens_details") or {}
        row = ResultRow(
            run_id=ctx.run_id,
            server=spec.name,
            scenario=ctx.scenario.name,
            repeat=ctx.repeat,
            session=session,
            variant=ctx.variant,
            model=ctx.model_name,
            tool_choice=tool_choice_text(request.tool_choice),
            turn=request.turn,
            request_kind=kind,
            stream=request.stream,
            started_at=started_at,
            ttft_s=timed.ttft_s,
            total_s=timed.total_s,
            http_status=timed.captured.http_status,
            error=error,
            finish_reason=answer.finish_reason,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=completion if completion is not None else counted,
            tokens_source="usage" if completion is not None else ("counted" if counted is not None else None),
            decode_tok_s=decode,
            cached_tokens=details.get("cached_tokens") if isinstance(details, dict) else None,
            content=(answer.content or "")[:4000] if answer.content is not None else None,
            content_sha=hashlib.sha256((answer.content or "").encode()).hexdigest()[:16],
            tool_calls=answer.tool_calls,
            checks_failed=outcome.failed,
            check_evidence=outcome.evidence,
            check_notes=outcome.notes,
            stop_cause=timed.captured.stop_cause,
            context_tokens=ctx.scenario.context_tokens,
            ttfb_s=timed.ttfb_s,
            ttft_content_s=timed.ttft_content_s,
            conversation_sha=conversation_sha(body),
            server_session=server.session_id,
        )
        row = redact_row(row, spec.api_key)  # a server may echo the key back (content, error body)
        if self.references is not None:
            self.references.compare(row)
        return row

    def finish(
        self,
        row: ResultRow,
        before: cachefiles.CacheSnapshot,
        after: cachefiles.CacheSnapshot,
        log_text: str | None,
    ) -> ResultRow:
        """Completes ``row`` with the cache files that appeared between the two snapshots and the
        reuse decision, then hands it to the sink. ``log_text``: the server's log lines of this
        request alone, or None where they cannot be told apart (concurrent sessions)."""
        delta = cachefiles.diff(before, after)
        row.cache_files_new = len(delta.new_files)
        row.cache_bytes_new = delta.new_bytes
        row.cache_bytes_total = delta.total_bytes
        row.cache_files = [os.path.relpath(path, self.context.run_dir) for path in delta.new_files]
        log_reused, log_tokens = self.server.cache_reuse_from_log(log_text) if log_text else (None, None)
        row.cache_reused, tokens = decide_cache_reuse(row.prompt_tokens, row.cached_tokens, log_reused, log_tokens)
        if row.cached_tokens is None:
            row.cached_tokens = tokens
        if log_text:
            row.served_from_cache, row.prompt_tok_s = self.server.answer_facts_from_log(log_text)
        self.sink(row)
        return row


def tool_choice_text(choice: str | dict[str, Any] | None) -> str | None:
    """``tool_choice`` as the row keeps it: the string, or a named function's JSON, compact."""
    if choice is None or isinstance(choice, str):
        return choice
    return json.dumps(choice, separators=(",", ":"), sort_keys=True)
