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
from typing import TYPE_CHECKING, Any

import httpx

from harness import cachefiles, conformance
from harness.results import ResultRow
from harness.scenarios import PlannedRequest, plan_requests

if TYPE_CHECKING:
    import pandas as pd

    from harness.replay import TokenCounter
    from harness.runner import ModelGroup, Runner
    from harness.scenarios import Scenario, Variant
    from harness.servers import ServerProcess, ServerSpec

START_TIMEOUT_S = 60.0

QUEUEING_NOTE = (
    "Both MLX servers (MLX-Textgen and mlx_lm.server) generate for one request at a time: with N "
    "sessions at once, requests wait in a queue, which shows as time to first token growing from the "
    "first session served to the last while throughput stays about what one session gets."
)
CACHE_NOTE = (
    "Cache files under concurrency are counted per batch of sessions: each row's new files are those "
    "that appeared around its completion, not necessarily its own; the batch totals are exact."
)


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

LOAD_COLUMNS = ["Scenario", "Server", "Sessions", "Requests", "Errors", "p50 total", "p90 total",
                "p50 TTFT", "p90 TTFT", "First-request TTFT (min – max)", "Requests/s", "Tokens/s"]


def is_concurrent(frame: pd.DataFrame) -> bool:
    return "session" in frame.columns and bool((frame["session"].fillna(0) > 0).any())


def load_frame(frame: pd.DataFrame, servers: list[str]) -> pd.DataFrame:
    """Latency percentiles and throughput per (scenario, server) of a concurrent run, from the rows.

    Throughput is over each batch's wall time (first request sent to last answer received), summed
    over repeats; requests that failed count in Requests and Errors but not in the latencies."""
    import numpy as np
    import pandas as pd

    from harness.summary import measured_rows

    live = frame[frame["request_kind"] != "warmup"]
    if live.empty or not is_concurrent(frame):
        return pd.DataFrame(columns=LOAD_COLUMNS)
    records: list[list[Any]] = []
    for scenario in dict.fromkeys(live["scenario"]):
        for server in servers:
            part = live[(live["scenario"] == scenario) & (live["server"] == server)]
            if part.empty:
                continue
            wall = 0.0
            for _, batch in part.groupby(["variant", "repeat"]):
                ends = batch["started_at"] + batch["total_s"].fillna(0)
                wall += float(ends.max() - batch["started_at"].min())
            ok = measured_rows(part)
            total = ok["total_s"].astype(float).dropna()
            ttft = ok["ttft_s"].astype(float).dropna()
            first = ok.loc[ok["request_kind"] == "first", "ttft_s"].astype(float).dropna()
            tokens = float(pd.to_numeric(ok["completion_tokens"], errors="coerce").fillna(0).sum())

            def pct(values: pd.Series, q: float) -> float:
                return float(np.percentile(values, q)) if len(values) else float("nan")

            records.append([
                scenario, server, int(part["session"].nunique()), len(part), int(part["error"].notna().sum()),
                pct(total, 50), pct(total, 90), pct(ttft, 50), pct(ttft, 90),
                (float(first.min()), float(first.max())) if len(first) else None,
                len(ok) / wall if wall > 0 else float("nan"), tokens / wall if wall > 0 else float("nan"),
            ])
    return pd.DataFrame(records, columns=LOAD_COLUMNS)


def load_blocks(frame: pd.DataFrame, servers: list[str], run_meta: dict[str, Any]) -> list[tuple]:
    """The report's "Load" section (empty when the run was not concurrent)."""
    table = load_frame(frame, servers)
    if table.empty:
        return []
    from harness.report import fmt_value

    shown = table.copy()
    for column in ("p50 total", "p90 total", "p50 TTFT", "p90 TTFT"):
        shown[column] = shown[column].map(fmt_value)
    shown["First-request TTFT (min – max)"] = shown["First-request TTFT (min – max)"].map(
        lambda span: "–" if span is None else f"{fmt_value(span[0])} – {fmt_value(span[1])}")
    shown["Requests/s"] = shown["Requests/s"].map(lambda v: fmt_value(v, "req/s"))
    shown["Tokens/s"] = shown["Tokens/s"].map(lambda v: fmt_value(v, "tok/s"))
    sessions = int(table["Sessions"].max())
    notes = [QUEUEING_NOTE, CACHE_NOTE]
    batches = run_meta.get("concurrency_batches") or []
    if any(b.get("restart_after_ignored") for b in batches):
        notes.append("restart_after turns were ignored: a restart would cut every other session off.")
    for b in batches:
        if b.get("log_reuse_lines") is not None:
            notes.append(f"{b['server']} · {b['scenario']} (repeat {b['repeat']}): cache reuse logged "
                         f"{b['log_reuse_lines']} times, no suitable cache {b.get('log_miss_lines') or 0} times, "
                         f"over {b['requests']} requests")
    return [("h2", f"Load ({sessions} sessions at once)"), ("table", shown), ("ul", notes)]
