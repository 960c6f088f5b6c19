"""What ``harness record`` keeps of each exchange the proxy passed through, written into one folder:

- ``results.jsonl``: one row per exchange, built by the run's one request path
  (``RequestExecutor.build_row`` and ``finish``) from what the proxy observed: time to first
  token and total as the proxy saw them, tokens, and every conformance check on the answer;
- ``exchanges.jsonl``: each request body with its answer (as a ``chat.completion`` object,
  assembled when it was streamed), one per line as it completes, so a recording cut short by a
  crash can still be imported (``harness import DIR/exchanges.jsonl``);
- ``scenarios/NAME-N.yaml``: one recorded scenario per session, written when the recording stops;
- ``run.json``: what was recorded, from where, and each session's notes, so ``harness report``
  works on the folder like on a run folder.

The work happens on one thread, in the order the exchanges complete, so the proxy's event loop
only ever queues an exchange. Secrets (the values of ``Authorization`` / ``x-api-key`` headers and
``api_key`` fields) are masked in every one of these files.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.capture import cachefiles
from harness.capture.http import CapturedResponse, ReplayLimits, Timed, event_has_output
from harness.checks import conformance
from harness.core.rows import RESULTS_FILE, ResultRow, ResultWriter
from harness.core.sse import SSEReader
from harness.models.tokens import TokenCounter
from harness.record.proxy import Exchange
from harness.run.captures import mask_written
from harness.run.meta import RunMeta, machine_info, package_versions
from harness.run.request import RequestContext, RequestExecutor, redact_row
from harness.scenario import anthropic
from harness.scenario.definition import PlannedRequest, RequestKinds, Scenario, anthropic_request, recorded_request
from harness.scenario.recorded import (
    RecordedExchange,
    SessionSplitter,
    WrittenScenario,
    mask_secrets,
    strip_secrets,
    write_sessions,
)
from harness.server.process import ServerProcess
from harness.server.spec import ANTHROPIC, ANTHROPIC_MESSAGES_PATH, OPENAI, OPENAI_CHAT_PATH, ServerSpec

EXCHANGES_FILE = "exchanges.jsonl"
SCENARIOS_DIR = "scenarios"
VARIANT = "as-recorded"  # the label a replay of the recorded scenario gets, so the rows line up
_ERROR_BODY_CHARS = 300
_EMPTY = cachefiles.CacheSnapshot({})


def answer_as_completion(captured: CapturedResponse) -> dict[str, Any] | None:
    """The answer a client got, as a ``chat.completion`` object: the body itself when it was one,
    assembled from the chunks when it was streamed; None for an error or an unreadable answer."""
    if captured.http_status != 200:
        return None
    if not captured.stream:
        try:
            body = json.loads(captured.body)
        except (ValueError, UnicodeDecodeError):
            return None
        return body if isinstance(body, dict) and isinstance(body.get("choices"), list) else None
    answer = conformance.extract_answer(captured)
    first = next((event.payload for event in (captured.sse.events if captured.sse else []) if event.payload), {})
    message: dict[str, Any] = {"role": "assistant", "content": answer.content}
    if answer.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.get("id"),
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": call["arguments"]
                    if isinstance(call["arguments"], str)
                    else json.dumps(call["arguments"], ensure_ascii=False),
                },
            }
            for call in answer.tool_calls
        ]
    completion: dict[str, Any] = {"object": "chat.completion"}
    for key in ("id", "created", "model"):
        if key in first:
            completion[key] = first[key]
    completion["choices"] = [{"index": 0, "message": message, "finish_reason": answer.finish_reason}]
    if answer.usage is not None:
        completion["usage"] = answer.usage
    return completion


def timed_exchange(exchange: Exchange) -> Timed:
    """The exchange as the request path's capture of it: the same ``Timed`` that ``send`` returns,
    with the time to first token read from the chunks' arrival times."""
    if exchange.streamed:
        reader = SSEReader()
        first: float | None = None
        for chunk, arrived in exchange.chunks:
            for event in reader.feed(chunk, arrived):
                if first is None and event_has_output(event.payload, exchange.protocol):
                    first = event.arrived_s
        reader.close(exchange.total_s)
        captured = CapturedResponse(
            stream=True, http_status=exchange.status, body=bytes(reader.raw), sse=reader, transport_error=exchange.error
        )
        return Timed(captured, ttft_s=first, total_s=exchange.total_s)
    captured = CapturedResponse(
        stream=False, http_status=exchange.status, body=exchange.body(), transport_error=exchange.error
    )
    # As for a request the harness sends: nothing arrives before the whole body.
    return Timed(captured, ttft_s=None if exchange.error else exchange.total_s, total_s=exchange.total_s)


def _messages_answer(exchange: Exchange) -> tuple[dict[str, Any] | None, list[str]]:
    """A Messages API answer (its body, or its SSE text) as a ``chat.completion`` object (R9)."""
    return anthropic.convert_response(exchange.body().decode("utf-8", errors="replace"))


class Recorder:
    """Turns the proxy's exchanges into rows, a journal and, on ``close``, scenario files."""

    def __init__(
        self,
        run_dir: Path,
        run_id: str,
        upstream: str,
        label: str = "upstream",
        name: str = "session",
        model_dir: Path | None = None,
        on_row: Callable[[ResultRow], None] | None = None,
        listen: str = "",
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.name = name
        self.on_row = on_row or (lambda row: None)
        self.spec = ServerSpec(
            name=label,
            label=f"{label} (observed by harness record)",
            base_url=upstream,
            protocols={OPENAI: OPENAI_CHAT_PATH, ANTHROPIC: ANTHROPIC_MESSAGES_PATH},
        )
        # A server the harness only observes: never started or stopped, its disk not looked at.
        self.server = ServerProcess(self.spec, model_dir or "", home=self.run_dir, log_path=self.run_dir / "none.log")
        self.tokens = TokenCounter(model_dir)
        self.splitter = SessionSplitter()
        self.kinds: list[RequestKinds] = []
        self.executors: list[RequestExecutor] = []
        self.skipped: list[str] = []
        self.writer = ResultWriter(self.run_dir / RESULTS_FILE)
        self.journal = (self.run_dir / EXCHANGES_FILE).open("a", encoding="utf-8")
        self.meta = RunMeta(
            self.run_dir,
            {
                "run_id": run_id,
                "kind": "recording",
                "created_at": dt.datetime.now().isoformat(timespec="seconds"),
                "finished_at": None,
                "status": "recording",
                "reference_server": label,
                "config": {"record": {"upstream": upstream, "listen": listen, "name": name}},
                "model": None,
                "machine": machine_info(),
                "versions": package_versions(),
                "servers": {},
                "notes": [],
            },
        )
        entry = self.meta.server_entry(self.spec)
        entry["base_url"] = upstream
        self.meta.save()
        self._queue: queue.SimpleQueue[Exchange | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="harness-recorder", daemon=True)
        self._thread.start()
        self.closed = False

    # -- the proxy's side ------------------------------------------------------------------
    def submit(self, exchange: Exchange) -> None:
        """Queues an exchange (called on the proxy's event loop: returns at once)."""
        self._queue.put(exchange)

    # -- the recorder's thread -------------------------------------------------------------
    def _work(self) -> None:
        while True:
            exchange = self._queue.get()
            if exchange is None:
                return
            try:
                self.record(exchange)
            except Exception as exc:  # one odd exchange must not end the recording
                self.skipped.append(f"an exchange could not be recorded: {type(exc).__name__}: {exc}")
                print(f"harness record: {self.skipped[-1]}", file=sys.stderr)

    def _executor(self, session: int) -> RequestExecutor:
        while len(self.executors) <= session:
            scenario = Scenario.model_construct(name=f"{self.name}-{len(self.executors) + 1}", turns=[])
            context = RequestContext(
                run_id=self.run_id,
                run_dir=self.run_dir,
                server=self.server,
                model_name="",
                scenario=scenario,
                variant=VARIANT,
                repeat=0,
                tokens=self.tokens,
                limits=ReplayLimits(),
            )
            self.executors.append(RequestExecutor(context, self._sink))
            self.kinds.append(RequestKinds())
        return self.executors[session]

    def _sink(self, row: ResultRow) -> None:
        self.writer.write(row)
        self.on_row(row)

    def record(self, exchange: Exchange) -> ResultRow | None:
        """One exchange: its row, its journal line and its place in a session; None if it is not a
        chat request that can be replayed (a body that is not JSON with messages)."""
        try:
            body = json.loads(exchange.request_body)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            self.skipped.append(f"a {exchange.method} {exchange.path} whose body is not a chat request with messages")
            return None
        body, in_body = strip_secrets(body)
        secrets = exchange.secrets + in_body
        timed = timed_exchange(exchange)
        native = exchange.protocol == ANTHROPIC
        notes: list[str] = []
        # A Messages API exchange is kept as sent and as its conversion (harness.scenario.anthropic).
        converted, notes = anthropic.convert_request(body) if native else (body, [])
        if exchange.error:
            notes.append(f"the recorded exchange did not complete: {exchange.error}")
        elif exchange.status != 200:
            text = exchange.body().decode("utf-8", errors="replace")[:_ERROR_BODY_CHARS]
            notes.append(f"the recorded answer was HTTP {exchange.status}: {text}")
        if native:
            answer, more = (None, []) if exchange.status != 200 or exchange.error else _messages_answer(exchange)
            notes += more
        else:
            answer = answer_as_completion(timed.captured)
        recorded = RecordedExchange(
            request=mask_secrets(converted, secrets),
            response=mask_secrets(answer, secrets),
            notes=mask_secrets(notes, secrets),
            source="harness record",
            anthropic_request=mask_secrets(body, secrets) if native else None,
        )
        session = self.splitter.add(recorded)
        executor = self._executor(session)
        turn = len(self.splitter.sessions[session].exchanges) - 1
        name = executor.context.scenario.name
        planned: PlannedRequest = (
            anthropic_request(name, turn, body, converted) if native else recorded_request(name, turn, body)
        )
        row = executor.build_row(planned, self.kinds[session].next(planned), timed, exchange.started_at)
        if native:
            row.variant = f"{VARIANT},{ANTHROPIC}"  # as a native replay of the recorded scenario labels it
        row.model = str(body.get("model")) if body.get("model") is not None else None
        for secret in secrets:
            row = redact_row(row, secret)
        mask_written(self.run_dir, row, secrets)
        executor.finish(row, _EMPTY, _EMPTY, None)
        line: dict[str, Any] = {"request": recorded.request, "response": recorded.response}
        if recorded.anthropic_request is not None:
            line["anthropic_request"] = recorded.anthropic_request
        if recorded.notes:
            line["notes"] = recorded.notes
        self.journal.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.journal.flush()
        return row

    # -- stopping --------------------------------------------------------------------------
    def close(self, status: str = "complete") -> list[WrittenScenario]:
        """Records what is still queued, writes one scenario file per session and run.json; safe to
        call twice (the second call writes nothing)."""
        if self.closed:
            return []
        self.closed = True
        self._queue.put(None)
        self._thread.join()
        sessions = [session.exchanges for session in self.splitter.sessions]
        written = write_sessions(
            sessions,
            self.run_dir / SCENARIOS_DIR,
            self.name,
            f"Recorded by harness record from {self.spec.base_url} (run {self.run_id}).",
            numbered=True,
        )
        self.writer.close()
        self.journal.close()
        # The same entry a replay of these files puts into its run.json (``recorded_record``).
        self.meta.data["recorded_scenarios"] = {
            scenario.name: {
                "source": str(scenario.path),
                "turns": [
                    {"turn": index, "notes": list(exchange.notes), "recorded_answer": exchange.response is not None}
                    for index, exchange in enumerate(scenario.exchanges)
                ],
            }
            for scenario in written
        }
        self.meta.data["notes"].extend(self.skipped)
        self.meta.data["status"] = status
        self.meta.data["finished_at"] = dt.datetime.now().isoformat(timespec="seconds")
        self.meta.save()
        return written
