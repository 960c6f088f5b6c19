"""The one request path: a planned request sent to a server becomes a finished row.

Every way the harness sends a request goes through ``RequestExecutor``: a scenario played in order
(``runner``), N sessions at once (``concurrent``) and the warm-up after each start. It works in two
steps because what a request leaves on disk is only known later:

- ``send``: the HTTP exchange, timed (``capture.http``), then ``build_row``: its answer checked
  (``checks``), the row built, the streamed / non-streamed pair check (``run.pairs``), the API key
  masked in it, the A/B diff filled in (against the answer recorded with the request where it
  carries one, else against the reference server's row), and, for a failing request, its capture
  (``run.captures``: exact request, raw answer, a curl line) written under the run folder.
  ``build_row`` takes any captured exchange, so an exchange the harness only observed
  (``harness record``) becomes a row by the same code;
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
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness.capture import cachefiles
from harness.capture.http import CapturedResponse, ReplayLimits, Timed, conversation_sha, send
from harness.checks import conformance, messages
from harness.checks.outcome import CheckOutcome
from harness.checks.pairs import SAME_ANSWER, repeat_difference
from harness.core.rows import RequestKind, ResultRow
from harness.models.tokens import TokenCounter
from harness.run.captures import needs_capture, write_answer, write_capture
from harness.run.pairs import StreamPairs
from harness.scenario.definition import PlannedRequest, Scenario
from harness.server.process import ServerProcess, describe_exit

# Sent with every Messages API request, as the anthropic client sends it.
MESSAGES_HEADERS = {"anthropic-version": "2023-06-01"}

# A row keeps this much of an answer's text (content_sha covers all of it).
ROW_CONTENT_CHARS = 4000

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


@dataclass
class ReuseDecision:
    reused: bool | None
    tokens: int | None  # tokens taken from the cache, where a layer says how many
    source: str | None  # "protocol", "log" or "timing": the first layer that could tell


def decide_cache_reuse(
    prompt_tokens: int | None,
    usage_cached_tokens: int | None,
    log_reused: bool | None,
    log_tokens: int | None,
    timing_reused: bool | None = None,
    includes_cached: bool | None = None,
) -> ReuseDecision:
    """Whether one request reused a prompt cache, from the first layer of evidence that can tell.

    In order: the protocol (``usage.prompt_tokens_details.cached_tokens``), the server's log lines,
    then timing (its prompt processing against its own first request). A count of reused tokens
    counts as reuse only when it is at least ``MIN_REUSED_SHARE`` of the prompt: the whole prompt is
    ``prompt_tokens`` when the server counts cached tokens in it (``includes_cached``), else
    ``prompt_tokens`` plus the cached ones; unknown is taken as "includes", the OpenAI convention.
    """

    def whole_prompt(tokens: int) -> int | None:
        if not prompt_tokens:
            return None
        return prompt_tokens if includes_cached is not False else prompt_tokens + tokens

    def enough(tokens: int) -> bool:
        whole = whole_prompt(tokens)
        return tokens > 0 if whole is None else tokens >= MIN_REUSED_SHARE * whole

    if usage_cached_tokens is not None:
        return ReuseDecision(enough(usage_cached_tokens), usage_cached_tokens, "protocol")
    if log_reused is not None:
        reused = log_reused
        if reused and log_tokens is not None:
            reused = enough(log_tokens)
        return ReuseDecision(reused, log_tokens, "log")
    if timing_reused is not None:
        return ReuseDecision(timing_reused, None, "timing")
    return ReuseDecision(None, None, None)


# The timing layer: a follow-up whose prompt processing took under this share of what processing
# its whole prompt from scratch takes on the same server reused a cache; over the second share, it
# did not; in between, timing cannot tell.
TIMING_REUSED_BELOW = 0.5
TIMING_MISSED_ABOVE = 0.8
# ... and only where the cold request's prompt was this long: below it, a request's fixed costs (a
# fresh server's first request pays one-off ones) weigh as much as processing the prompt, and a
# server that re-processes everything can look twice as fast on its second request.
TIMING_MIN_PROMPT_TOKENS = 1000


@dataclass
class ServerObservations:
    """What the harness learns about a server while talking to it, kept across its modes and restarts
    and written to run.json: whether it takes ``stream_options``, how it counts ``prompt_tokens``,
    the ``system_fingerprint`` values it reports."""

    # "unknown" until a stream has been asked for usage; then "sent" (usage came back), "ignored"
    # (accepted, no usage) or "refused" (a 4xx naming stream_options: never asked again).
    stream_usage: str = "unknown"
    prompt_tokens_include_cached: bool | None = None
    prompt_tokens_evidence: str = ""
    fingerprints: list[str] = field(default_factory=list)
    # (scenario, streamed) -> (seconds, prompt tokens) of the first cold request seen: the timing
    # layer's reference for modes whose own first request found a warm cache.
    cold: dict[tuple[str, bool], tuple[float, int | None]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self) -> dict[str, Any]:
        return {
            "stream_usage": self.stream_usage,
            "prompt_tokens_include_cached": self.prompt_tokens_include_cached,
            "prompt_tokens_evidence": self.prompt_tokens_evidence,
            "system_fingerprints": list(self.fingerprints),
        }


@dataclass
class _Conversation:
    """One conversation's first request and its last prompt size, for the timing layer and for
    working out how the server counts prompt_tokens."""

    first_seconds: float | None = None
    first_prompt_tokens: int | None = None
    last_whole_prompt: int | None = None


# The evidence key of the server's own log line about a failed request (not a check of its own).
SERVER_LOG_EVIDENCE = "server.log"
_LOG_ERROR = re.compile(r"\bERROR\b|\bError\b|Exception|Traceback")
_LOG_EVIDENCE_CHARS = 200


def server_log_error(log_text: str) -> str | None:
    """The first error a server logged for a request, with the line after it (where loggers put
    the message of a validation error or the cause of a traceback), on one line; None if none."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if _LOG_ERROR.search(line):
            text = " | ".join(lines[index : index + 2])
            return text if len(text) <= _LOG_EVIDENCE_CHARS else text[: _LOG_EVIDENCE_CHARS - 3] + "..."
    return None


# ``ab_reference`` of a row whose A/B diff is against the answer recorded with its request.
RECORDED = "recorded"


def recorded_answer_row(response: dict[str, Any], like: ResultRow) -> ResultRow:
    """The answer recorded with a request (a ``chat.completion`` object) as a row like ``like``, read
    the way a client reads an answer, so the A/B diff compares it as it would a server's."""
    captured = CapturedResponse(stream=False, http_status=200, body=json.dumps(response).encode())
    answer = conformance.extract_answer(captured)
    return like.model_copy(
        update={
            "server": RECORDED,
            "http_status": 200,
            "error": None,
            "content": (answer.content or "")[:ROW_CONTENT_CHARS] if answer.content is not None else None,
            "content_sha": _content_sha(answer.content),
            "tool_calls": answer.tool_calls,
            "finish_reason": answer.finish_reason,
        }
    )


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
            row.ab_reference = self.reference_server


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
        observations: ServerObservations | None = None,
        pairs: StreamPairs | None = None,
    ) -> None:
        self.context = context
        self.sink = sink
        self.references = references
        self.observations = observations or ServerObservations()
        self._conversations: dict[tuple[int, int], _Conversation] = {}
        # (session, turn) -> the answer's text and calls, for a later turn's expect.same_answer_as.
        self._answers: dict[tuple[int, int], tuple[str | None, list[dict[str, Any]]]] = {}
        # Called with each finished row and its log text just before the row goes to the sink (the
        # damaged-cache runs fill in what the server did there).
        self.annotate: Callable[[ResultRow, str | None], None] | None = None
        self.pairs = pairs

    @property
    def server(self) -> ServerProcess:
        return self.context.server

    def send(self, client: httpx.Client, request: PlannedRequest, kind: RequestKind, session: int = 0) -> ResultRow:
        """Sends ``request``, checks the answer and returns its row (cache fields not yet filled)."""
        ctx, server = self.context, self.context.server
        body = request.body(server.model_id or ctx.model_name)
        url = self.url(request)
        ask_usage = self._ask_stream_usage(request)
        if ask_usage:
            body["stream_options"] = {"include_usage": True}
        headers = MESSAGES_HEADERS if request.protocol == "anthropic" else None
        rss_before = server.tree_rss_bytes()
        started_at = time.time()
        timed = send(client, url, body, ctx.limits, headers, request.protocol, request.drop_after)
        if ask_usage and _refuses_stream_options(timed.captured):
            # Remembered: this server is never asked again, and this request goes again as written.
            self.observations.stream_usage = "refused"
            body.pop("stream_options")
            started_at = time.time()
            timed = send(client, url, body, ctx.limits, headers, request.protocol, request.drop_after)
        rss_after = server.tree_rss_bytes()
        row = self.build_row(request, kind, timed, started_at, session, body=body, url=url)
        row.rss_before_bytes, row.rss_after_bytes = rss_before, rss_after
        if ask_usage and self.observations.stream_usage != "refused" and timed.captured.http_status == 200:
            # prompt_tokens comes only from usage: whether the stream carried any
            self.observations.stream_usage = "sent" if row.prompt_tokens is not None else "ignored"
        return row

    def _check_same_answer(
        self,
        request: PlannedRequest,
        session: int,
        captured: CapturedResponse,
        content: str | None,
        calls: list[dict[str, Any]],
        outcome: CheckOutcome,
    ) -> None:
        """Keeps each whole answer of this mode; a turn with ``expect.same_answer_as`` must repeat the
        answer of that earlier turn (judged only when both answers arrived whole)."""
        whole = captured.http_status == 200 and not captured.transport_error and not captured.stop_cause
        if not whole:
            return
        self._answers[(session, request.turn)] = (content, calls)
        earlier_turn = request.expect.same_answer_as if request.expect else None
        earlier = self._answers.get((session, earlier_turn)) if earlier_turn is not None else None
        if earlier is not None:
            evidence = repeat_difference(earlier[0], earlier[1], content, calls)
            if evidence:
                outcome.fail(SAME_ANSWER, f"turn {earlier_turn} asked again: {evidence}")

    def url(self, request: PlannedRequest) -> str:
        """Where ``request`` goes: the server's path for its protocol."""
        spec = self.context.server.spec
        path = spec.protocol_path(request.protocol)
        if path is None:
            raise ValueError(f"{spec.name} does not serve the {request.protocol} protocol")  # the runner skips it
        return self.context.server.base_url + path

    def build_row(
        self,
        request: PlannedRequest,
        kind: RequestKind,
        timed: Timed,
        started_at: float,
        session: int = 0,
        body: dict[str, Any] | None = None,
        url: str | None = None,
    ) -> ResultRow:
        """The row of one captured exchange: its answer checked, tokens counted, the API key masked
        and the A/B diff filled in (cache fields not yet filled). ``send`` calls it on the exchange
        it made; the recording proxy on each exchange it passed through."""
        ctx, server = self.context, self.context.server
        spec = server.spec
        model = server.model_id or ctx.model_name
        body = body if body is not None else request.body(model)  # as sent: the pair key, the capture
        url = url or server.base_url + (spec.protocol_path(request.protocol) or spec.chat_path)
        native = request.protocol == "anthropic"
        checks = messages if native else conformance
        answer = checks.extract_answer(timed.captured)
        self._note_fingerprint(timed.captured)
        outcome = checks.run_checks(timed.captured, answer, request)
        self._check_same_answer(request, session, timed.captured, answer.content, answer.tool_calls, outcome)
        usage = answer.usage or {}
        if native:
            prompt, completion, cached = messages.usage_figures(answer.usage)
        else:
            details = usage.get("prompt_tokens_details") or {}
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            cached = details.get("cached_tokens") if isinstance(details, dict) else None
        output_text = (answer.content or "") + "".join(json.dumps(call.get("arguments")) for call in answer.tool_calls)
        counted = ctx.tokens.count(output_text) if ctx.tokens.available else None
        decode = None
        if timed.ttft_s is not None and counted:
            span = timed.total_s - timed.ttft_s
            # Only a real stream spreads tokens over time; a fake stream sends all at once.
            if request.stream and span > 0.05 * timed.total_s and counted > 1:
                decode = (counted - 1) / span
        error = timed.captured.transport_error
        if error is None and timed.captured.http_status not in (200, None):
            error = f"HTTP {timed.captured.http_status}"
            if _refuses_model(timed.captured, model):
                error += (
                    f": the server refused the model name '{model}' "
                    f"({timed.captured.body[:200].decode('utf-8', 'replace')}). Set request_model for "
                    f"[tool.harness.server.{spec.name}] in harness.toml to the id the server expects "
                    "(GET /v1/models lists it)."
                )
        if not spec.base_url:
            # A server that died during the request: say so, with how (e.g. killed by SIGKILL).
            dropped = timed.captured.transport_error is not None and timed.captured.stop_cause is None
            code = server.exit_status(wait_s=0.5 if dropped else 0.0)
            if code is not None:
                died = f"{spec.name} exited with {describe_exit(code)} during the request"
                error = f"{error}; {died}" if error else died
        row = ResultRow(
            run_id=ctx.run_id,
            server=spec.name,
            scenario=ctx.scenario.name,
            repeat=ctx.repeat,
            session=session,
            conversation=request.conversation,
            variant=ctx.variant,
            protocol=request.protocol,
            model=ctx.model_name,
            tool_choice=tool_choice_text(request.tool_choice),
            turn=request.turn,
            turn_name=request.name,
            request_kind=kind,
            stream=request.stream,
            started_at=started_at,
            ttft_s=timed.ttft_s,
            total_s=timed.total_s,
            http_status=timed.captured.http_status,
            error=error,
            finish_reason=answer.finish_reason,
            prompt_tokens=prompt,
            completion_tokens=completion if completion is not None else counted,
            tokens_source="usage" if completion is not None else ("counted" if counted is not None else None),
            decode_tok_s=decode,
            cached_tokens=cached,
            content=(answer.content or "")[:ROW_CONTENT_CHARS] if answer.content is not None else None,
            content_sha=_content_sha(answer.content),
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
        if self.pairs is not None:
            self.pairs.check(row, body)
        row = redact_row(row, spec.api_key)  # a server may echo the key back (content, error body)
        if request.recorded_response is not None:
            recorded = recorded_answer_row(request.recorded_response, row)
            row.ab_diff, row.ab_detail = conformance.ab_compare(recorded, row)
            row.ab_reference = RECORDED
        elif self.references is not None:
            self.references.compare(row)
        if needs_capture(row):
            row.capture = write_capture(ctx.run_dir, row, timed.captured, url, spec.api_key)
        row.answer = write_answer(ctx.run_dir, row, timed.captured, spec.api_key)
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
        row.cache_files_total = len(after.files)
        row.cache_files = [os.path.relpath(path, self.context.run_dir) for path in delta.new_files]
        if log_text and (row.error or row.http_status not in (200, None)):
            # A server that fails mid-stream has already sent "200 OK": its log says why.
            logged = server_log_error(log_text)
            if logged:
                row.check_evidence[SERVER_LOG_EVIDENCE] = self.server.redact(logged)
        log_reused, log_tokens = self.server.cache_reuse_from_log(log_text) if log_text else (None, None)
        conversation = self._conversations.setdefault((row.session, row.conversation), _Conversation())
        reused_tokens = row.cached_tokens if row.cached_tokens is not None else log_tokens
        # A Messages API prompt_tokens is added up from its parts, cached ones included.
        includes = (
            True if row.protocol == "anthropic" else self._prompt_tokens_convention(row, conversation, reused_tokens)
        )
        decision = decide_cache_reuse(
            row.prompt_tokens, row.cached_tokens, log_reused, log_tokens, self._timing(row, conversation), includes
        )
        row.cache_reused, row.reuse_source = decision.reused, decision.source
        if row.cached_tokens is None:
            row.cached_tokens = decision.tokens
        if row.prompt_tokens is not None and row.request_kind != "side":
            extra = (row.cached_tokens or 0) if includes is False else 0
            conversation.last_whole_prompt = row.prompt_tokens + extra
        if log_text:
            row.served_from_cache, row.prompt_tok_s = self.server.answer_facts_from_log(log_text)
        if self.annotate is not None:
            self.annotate(row, log_text)
        self.sink(row)
        return row

    # -- what the request path learns about the server ---------------------------------------
    def _ask_stream_usage(self, request: PlannedRequest) -> bool:
        """Streams the harness writes itself ask for usage, unless the server refused it once;
        a recorded request is sent as recorded."""
        return request.stream and request.raw is None and self.observations.stream_usage != "refused"

    def _note_fingerprint(self, captured: CapturedResponse) -> None:
        found = _system_fingerprint(captured)
        if found:
            with self.observations.lock:
                if found not in self.observations.fingerprints:
                    self.observations.fingerprints.append(found)

    def _prompt_tokens_convention(self, row: ResultRow, conversation: _Conversation, reused: int | None) -> bool | None:
        """Whether ``prompt_tokens`` counts cached tokens: the spec's word, else what the numbers
        across turns showed. A follow-up that reused ``reused`` tokens but reports fewer prompt
        tokens than the whole previous request had counts only what it processed."""
        declared = self.server.spec.prompt_tokens_include_cached
        if declared is not None:
            self.observations.prompt_tokens_include_cached = declared
            self.observations.prompt_tokens_evidence = "declared in the server's spec"
            return declared
        known = self.observations.prompt_tokens_include_cached
        previous = conversation.last_whole_prompt
        if known is None and reused and row.prompt_tokens is not None and previous and row.request_kind != "side":
            includes = row.prompt_tokens >= previous
            with self.observations.lock:
                self.observations.prompt_tokens_include_cached = includes
                self.observations.prompt_tokens_evidence = (
                    f"{row.scenario} turn {row.turn}: {reused} tokens from the cache and prompt_tokens "
                    f"{row.prompt_tokens} {'>=' if includes else '<'} the previous request's {previous}"
                )
            return includes
        return known

    def _timing(self, row: ResultRow, conversation: _Conversation) -> bool | None:
        """The timing layer: the request's prompt processing (time to first token on streams, the
        whole answer otherwise) against a cold first request of the same scenario on this server,
        scaled to its prompt size."""
        seconds = row.ttft_s if row.stream else row.total_s
        if row.error or seconds is None:
            return None
        observations = self.observations
        if row.request_kind == "first":
            conversation.first_seconds, conversation.first_prompt_tokens = seconds, row.prompt_tokens
            with observations.lock:
                observations.cold.setdefault((row.scenario, row.stream), (seconds, row.prompt_tokens))
            return None
        if row.request_kind not in ("follow-up", "restart"):
            return None
        reference: tuple[float, int | None] | None = None
        if conversation.first_seconds:
            reference = (conversation.first_seconds, conversation.first_prompt_tokens)
        reference = reference or observations.cold.get((row.scenario, row.stream))
        only_reuse = False
        if reference is None and not row.stream:
            # Only a streamed cold request was seen: an answer, decoding included, faster than that
            # request's prompt processing alone still proves reuse; a slower one proves nothing.
            reference, only_reuse = observations.cold.get((row.scenario, True)), True
        if reference is None:
            return None
        cold, cold_prompt = reference
        if not cold_prompt or cold_prompt < TIMING_MIN_PROMPT_TOKENS:
            return None
        if row.prompt_tokens:
            cold *= max(1.0, row.prompt_tokens / cold_prompt)
        if seconds < TIMING_REUSED_BELOW * cold:
            return True
        if seconds > TIMING_MISSED_ABOVE * cold and not only_reuse:
            return False
        return None


def _refuses_stream_options(captured: CapturedResponse) -> bool:
    """A clear refusal of the ``stream_options`` field (a 4xx whose body names it)."""
    status = captured.http_status or 0
    return 400 <= status < 500 and b"stream_options" in captured.body


def _refuses_model(captured: CapturedResponse, model: str) -> bool:
    """A 404 (or 400) whose body names the model the harness sent: the server serves another id."""
    return captured.http_status in (400, 404) and model.encode() in captured.body


def _system_fingerprint(captured: CapturedResponse) -> str | None:
    """The ``system_fingerprint`` of an answer (the first streamed chunk that has one)."""
    payloads: list[Any] = []
    if captured.sse is not None:
        payloads = [event.payload for event in captured.sse.events[:3]]
    elif captured.http_status == 200:
        try:
            payloads = [json.loads(captured.body)]
        except ValueError:
            payloads = []
    for payload in payloads:
        if isinstance(payload, dict) and isinstance(payload.get("system_fingerprint"), str):
            return str(payload["system_fingerprint"])
    return None


def _content_sha(content: str | None) -> str:
    return hashlib.sha256((content or "").encode()).hexdigest()[:16]


def tool_choice_text(choice: str | dict[str, Any] | None) -> str | None:
    """``tool_choice`` as the row keeps it: the string, or a named function's JSON, compact."""
    if choice is None or isinstance(choice, str):
        return choice
    return json.dumps(choice, separators=(",", ":"), sort_keys=True)
