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
  the server's usage figures only; the batch's reuse and miss line counts go to run.json.
- restart_after is ignored (a restart would cut every other session off).
"""

from __future__ import annotations

import re
import threading
import time
from typing import TYPE_CHECKING

import httpx

from harness.capture import cachefiles

from harness.checks import conformance
from harness.core.rows import ResultRow
from harness.scenario.definition import PlannedRequest, plan_requests

if TYPE_CHECKING:

    from harness.models.tokens import TokenCounter
    from harness.run.runner import ModelGroup, Runner
    from harness.scenario.definition import Scenario, Variant
    from harness.server.process import ServerProcess
    from harness.server.spec import ServerSpec

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
    """The rows of one batch of sessions, written as they complete, with the pending-row scheme of
    the sequential runner: a row is written once the next one completes (or the batch ends), so the
    files a server saves just after answering are counted on the batch's rows."""

    def __init__(self, runner: Runner, server: ServerProcess) -> None:
        self.runner = runner
        self.server = server
        self.lock = threading.Lock()
        self.mark = cachefiles.snapshot(server.cache_dirs)
        self.start_snapshot = self.mark
        self.pending: ResultRow | None = None
        self.rows: list[ResultRow] = []

    def complete(self, row: ResultRow) -> None:
        with self.lock:
            snap = cachefiles.snapshot(self.server.cache_dirs)
            if self.pending is not None:
                self._write(self.pending, snap)
                self.mark = snap
            self.pending = row

    def close(self) -> cachefiles.CacheDelta:
        time.sleep(0.3)  # as after a sequential scenario: let a server finish writing its cache
        with self.lock:
            final = cachefiles.snapshot(self.server.cache_dirs)
            if self.pending is not None:
                self._write(self.pending, final)
                self.pending = None
        return cachefiles.diff(self.start_snapshot, final)

    def _write(self, row: ResultRow, snap: cachefiles.CacheSnapshot) -> None:
        import os

        delta = cachefiles.diff(self.mark, snap)
        row.cache_files_new = len(delta.new_files)
        row.cache_bytes_new = delta.new_bytes
        row.cache_bytes_total = delta.total_bytes
        row.cache_files = [os.path.relpath(path, self.runner.run_dir) for path in delta.new_files]
        row.cache_reused = True if row.cached_tokens else None
        assert self.runner.writer is not None
        self.runner.writer.write(row)
        self.runner.on_row(row)
        self.rows.append(row)


def replay_concurrent(runner: Runner, server: ServerProcess, spec: ServerSpec, group: ModelGroup,
                      scenario: Scenario, variant: Variant, repeat: int, counter: TokenCounter) -> ServerProcess:
    """Plays ``runner.config.concurrency`` sessions of one scenario variant at once; returns the server."""
    sessions = runner.config.concurrency
    label = variant.label(scenario)
    plans: list[list[PlannedRequest]] = []
    for session in range(sessions):
        planned = plan_requests(scenario, stream=variant.stream, tool_choice=variant.tool_choice,
                                request_serial=runner.request_serial)
        runner.request_serial += len(planned)
        tag_session(planned, session)
        plans.append(planned)
    restart_ignored = any(request.restart_after for request in plans[0])
    runner.say(f"{spec.name}: {scenario.name} [{label}] ({sessions} sessions at once, "
               f"{len(plans[0])} requests each)" + ("; restart_after ignored" if restart_ignored else ""))
    references: dict[tuple, ResultRow] = runner.__dict__.setdefault("_session_reference_rows", {})
    log_offset = server.log_path.stat().st_size if server.log_path.exists() else 0
    batch = _Batch(runner, server)
    barrier = threading.Barrier(sessions)
    failures: list[BaseException] = []

    def play(session: int) -> None:
        try:
            with httpx.Client(headers=server.headers) as client:
                barrier.wait(timeout=START_TIMEOUT_S)
                next_kind = "first"
                for request in plans[session]:
                    kind = "side" if request.side else next_kind
                    row = runner._request(client, server, spec, group, scenario, label, repeat, request, kind,
                                          counter)
                    row.session = session
                    _compare_in_session(runner, spec, references, (scenario.name, label, request.turn, session), row)
                    batch.complete(row)
                    if not request.side:
                        next_kind = "follow-up"
                    if row.error and not server.alive() and not spec.base_url:
                        break
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
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
    _record_batch(runner, server, spec, scenario.name, label, repeat, sessions, batch.rows, wall_s, delta,
                  log_offset, restart_ignored)
    assert runner.writer is not None
    runner.writer.sync()
    real = [exc for exc in failures if not isinstance(exc, threading.BrokenBarrierError)]
    if real:
        raise real[0]
    return server


def _compare_in_session(runner: Runner, spec: ServerSpec, references: dict[tuple, ResultRow],
                        key: tuple, row: ResultRow) -> None:
    """A/B against the reference server's row of the same session (the runner keys without sessions)."""
    if spec.name == runner.config.reference:
        references[key] = row
        row.ab_diff = row.ab_detail = None
        return
    reference = references.get(key)
    row.ab_diff, row.ab_detail = conformance.ab_compare(reference, row) if reference is not None else (None, None)


def count_log_lines(pattern: str | None, log: str) -> int | None:
    """Lines matching ``pattern``; a line repeating the previous one's message counts once
    (MLX-Textgen logs every message twice, through two handlers)."""
    if not pattern or not log:
        return None
    count, previous = 0, None
    for line in log.splitlines():
        match = re.search(pattern, line)
        message = line[match.start():] if match else None
        if match and message != previous:
            count += 1
        previous = message
    return count


def _record_batch(runner: Runner, server: ServerProcess, spec: ServerSpec, scenario: str, label: str,
                  repeat: int, sessions: int, rows: list[ResultRow], wall_s: float,
                  delta: cachefiles.CacheDelta, log_offset: int, restart_ignored: bool) -> None:
    log = ""
    try:
        with server.log_path.open("rb") as handle:
            handle.seek(log_offset)
            log = handle.read().decode("utf-8", errors="replace")
        # Threads read the log concurrently through read_new_log: start the next scenario at the end.
        server._log_offset = log_offset + len(log.encode("utf-8", errors="replace"))
    except OSError:
        pass
    reuse = count_log_lines(spec.reuse_pattern, log)
    miss = count_log_lines(spec.miss_pattern, log)
    assert runner.meta is not None
    runner.meta.data.setdefault("concurrency_batches", []).append({
        "server": spec.name, "scenario": scenario, "variant": label, "repeat": repeat, "sessions": sessions,
        "requests": len(rows), "errors": sum(1 for r in rows if r.error), "wall_s": round(wall_s, 4),
        "cache_files_new": len(delta.new_files), "cache_bytes_new": delta.new_bytes,
        "cache_bytes_total": delta.total_bytes, "log_reuse_lines": reuse, "log_miss_lines": miss,
        "restart_after_ignored": restart_ignored, "cache_observable": not spec.base_url,
    })
    runner.meta.save()


# --- the report's view ----------------------------------------------------------------------------







