"""--concurrency N: N independent sessions of a scenario at once against one server, and what the
report says about them.

Each session is one thread with its own httpx client that plays the whole scenario in order, as one
coding agent would; all N start together. The sessions share the system prompt and tools (N agents
of one team), but each conversation is its own: the first user message of every request carries
``[session K]``. Identical copies would let a server answer session 2 from session 1's cache (or
the legacy server from its response cache) and hide the queueing this mode is meant to show.

What cannot be measured per request under concurrency is said so rather than guessed:
- cache files: a row's ``cache_files_new`` / ``cache_bytes_new`` are the files that appeared between
  that request's completion and the next completion in the batch (the first row also takes those
  from before it). Their sum over the batch is exact; the split between requests is not.
- cache reuse from the log: log lines cannot be matched to requests, so ``cache_reused`` comes from
  the server's usage figures only (through the same rule as every row, ``request.decide_cache_reuse``);
  the batch's reuse and miss line counts go to run.json.
- restart_after is ignored (a restart would cut every other session off).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from harness.capture import cachefiles
from harness.core.rows import ResultRow
from harness.run.request import RequestExecutor
from harness.scenario.definition import PlannedRequest, RequestKinds, Variant, plan_requests

START_TIMEOUT_S = 60.0


def session_tag(session: int) -> str:
    return f"[session {session}] "


def tag_session(planned: list[PlannedRequest], session: int) -> None:
    """Prefixes the first user message of every request (the same one through a conversation)."""
    for request in planned:
        for message in request.messages:
            if message.get("role") == "user" and isinstance(message.get("content"), str):
                message["content"] = session_tag(session) + message["content"]
                break


class _Batch:
    """The rows of one batch of sessions, finished as they complete: a row is finished once the next
    one completes (or the batch ends), so the files a server saves just after answering are counted
    on the batch's rows."""

    def __init__(self, executor: RequestExecutor) -> None:
        self.executor = executor
        self.lock = threading.Lock()
        self.start_snapshot = cachefiles.snapshot(executor.server.cache_dirs)
        self.mark = self.start_snapshot
        self.pending: ResultRow | None = None
        self.rows: list[ResultRow] = []

    def complete(self, row: ResultRow) -> None:
        with self.lock:
            snap = cachefiles.snapshot(self.executor.server.cache_dirs)
            if self.pending is not None:
                self._finish(self.pending, snap)
                self.mark = snap
            self.pending = row

    def close(self) -> cachefiles.CacheDelta:
        time.sleep(0.3)  # as after a sequential scenario: let a server finish writing its cache
        with self.lock:
            final = cachefiles.snapshot(self.executor.server.cache_dirs)
            if self.pending is not None:
                self._finish(self.pending, final)
                self.pending = None
        return cachefiles.diff(self.start_snapshot, final)

    def _finish(self, row: ResultRow, snap: cachefiles.CacheSnapshot) -> None:
        self.executor.finish(row, self.mark, snap, log_text=None)  # log lines cannot be told apart
        self.rows.append(row)


@dataclass
class BatchResult:
    record: dict[str, Any]  # for run.json's concurrency_batches, kept even when a session failed
    planned: int  # requests planned: the run's request serial moves on by as many
    failure: BaseException | None  # the first exception of a session thread, to re-raise


def replay_concurrent(
    executor: RequestExecutor, variant: Variant, sessions: int, request_serial: int, say: Callable[[str], None]
) -> BatchResult:
    """Plays ``sessions`` sessions of one scenario mode at once."""
    server, scenario, label = executor.server, executor.context.scenario, executor.context.variant
    spec = server.spec
    plans: list[list[PlannedRequest]] = []
    for session in range(sessions):
        planned = plan_requests(
            scenario,
            stream=variant.stream,
            tool_choice=variant.tool_choice,
            request_serial=request_serial,
            protocol=variant.protocol,
        )
        request_serial += len(planned)
        tag_session(planned, session)
        plans.append(planned)
    restart_ignored = any(request.restart_after for request in plans[0])
    say(
        f"{spec.name}: {scenario.name} [{label}] ({sessions} sessions at once, {len(plans[0])} requests each)"
        + ("; restart_after ignored" if restart_ignored else "")
    )
    log_start = server.log_position()
    batch = _Batch(executor)
    barrier = threading.Barrier(sessions)
    failures: list[BaseException] = []

    def play(session: int) -> None:
        try:
            with httpx.Client(headers=server.headers) as client:
                barrier.wait(timeout=START_TIMEOUT_S)
                kinds = RequestKinds()
                for request in plans[session]:
                    row = executor.send(client, request, kinds.next(request), session=session)
                    batch.complete(row)
                    if row.error and not server.alive() and not spec.base_url:
                        break
        except BaseException as exc:  # re-raised in the main thread
            failures.append(exc)
            barrier.abort()

    started = time.perf_counter()
    threads = [threading.Thread(target=play, args=(s,), name=f"session-{s}", daemon=True) for s in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall_s = time.perf_counter() - started
    delta = batch.close()
    # The batch's log, read as a whole; the next scenario starts reading after it.
    log = server.read_log_since(log_start)
    record = {
        "server": spec.name,
        "scenario": scenario.name,
        "variant": label,
        "repeat": executor.context.repeat,
        "sessions": sessions,
        "requests": len(batch.rows),
        "errors": sum(1 for r in batch.rows if r.error),
        "wall_s": round(wall_s, 4),
        "cache_files_new": len(delta.new_files),
        "cache_bytes_new": delta.new_bytes,
        "cache_bytes_total": delta.total_bytes,
        "log_reuse_lines": count_log_lines(spec.reuse_pattern, log),
        "log_miss_lines": count_log_lines(spec.miss_pattern, log),
        "restart_after_ignored": restart_ignored,
        "cache_observable": not spec.base_url,
    }
    real = [exc for exc in failures if not isinstance(exc, threading.BrokenBarrierError)]
    return BatchResult(record, sum(len(plan) for plan in plans), real[0] if real else None)


def count_log_lines(pattern: str | None, log: str) -> int | None:
    """Lines matching ``pattern``; a line repeating the previous one's message counts once
    (MLX-Textgen logs every message twice, through two handlers)."""
    if not pattern or not log:
        return None
    count, previous = 0, None
    for line in log.splitlines():
        match = re.search(pattern, line)
        message = line[match.start() :] if match else None
        if match and message != previous:
            count += 1
        previous = message
    return count
