"""The run: for each server in turn (never two at once), start it, replay every scenario, stop it.

Every request becomes one row in results.jsonl, written before the next request is sent. run.json
records the exact config, versions, models, quirks and shims, and is rewritten as the run goes, so
an interrupted run still says what it was and can be reported on. Each request goes through the
one request path, ``harness.run.request``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from harness.capture import cachefiles
from harness.capture.http import ReplayLimits
from harness.core.errors import Interrupted, ServerError
from harness.core.rows import RESULTS_FILE, ResultRow, ResultWriter
from harness.models.tokens import TokenCounter
from harness.run import bound, concurrent
from harness.run.config import RunConfig
from harness.run.meta import RunMeta, machine_info, model_record, new_run_id, package_versions, prepare_run_dir
from harness.run.model_groups import ModelGroup, ensure_models, group_by_model
from harness.run.pairs import StreamPairs
from harness.run.request import ReferenceRows, RequestContext, RequestExecutor, ServerObservations, redact_row
from harness.scenario.context_size import scale_groups
from harness.scenario.definition import RequestKinds, Scenario, Variant, plan_requests, resolve_scenarios
from harness.scenario.warmup import warmup_request
from harness.server.process import ServerProcess
from harness.server.spec import ServerSpec

# After a scenario's last answer, a server that saves its cache after answering gets this long to
# finish writing before the cache dirs are looked at for the last time.
CACHE_SETTLE_S = 0.3


class Runner:
    """One run. ``on_event`` gets progress messages, ``on_row`` each row as it is written."""

    def __init__(
        self,
        config: RunConfig,
        on_event: Callable[[str], None] | None = None,
        on_row: Callable[[ResultRow], None] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.config = config
        # Everything that can be checked is checked before the run folder exists or a server starts.
        self.specs = config.server_specs()
        self.scenarios = resolve_scenarios(config.scenarios)
        self.groups = group_by_model(config, self.scenarios)
        ensure_models(self.groups)
        scale_groups(self.groups, config.context_tokens)  # --context-tokens: NAME@N copies
        self.run_id = run_id or new_run_id()
        self.run_dir = prepare_run_dir(Path(config.out), self.run_id)
        self.limits = ReplayLimits(config.request_timeout_s, config.idle_timeout_s)
        self.say = on_event or (lambda message: None)
        self.on_row = on_row or (lambda row: None)
        self.references = ReferenceRows(config.reference)
        # What each server showed about itself (stream usage, prompt_tokens convention, fingerprints).
        self.observations: dict[str, ServerObservations] = {}
        self.pairs = StreamPairs()  # streamed and non-streamed answers to the same request
        self.writer: ResultWriter | None = None
        self.meta: RunMeta | None = None
        self.request_serial = 0  # numbers every planned request of the run (cache-bust lines)

    # -- the whole run ---------------------------------------------------------------------
    def run(self) -> Path:
        first = self.groups[0] if self.groups else None
        self.meta = RunMeta(
            self.run_dir,
            {
                "run_id": self.run_id,
                "created_at": dt.datetime.now().isoformat(timespec="seconds"),
                "finished_at": None,
                "status": "running",
                "reference_server": self.config.reference,
                "like_for_like_server": self.config.like_for_like_server(),
                "config": self.config.public_dump(),
                "model": model_record(first.path, first.builtin) if first else None,
                "scenario_models": {
                    scenario.name: model_record(group.path, group.builtin)
                    for group in self.groups
                    for scenario in group.scenarios
                },
                "recorded_scenarios": {
                    scenario.name: recorded_record(scenario)
                    for group in self.groups
                    for scenario in group.scenarios
                    if scenario.recorded
                },
                "machine": machine_info(),
                "versions": package_versions(),
                "servers": {},
                "notes": [],
            },
        )
        self.writer = ResultWriter(self.run_dir / RESULTS_FILE)
        try:
            for repeat in range(self.config.repeats):
                # Alternate the order (A B, B A, ...) so slow drift of the machine cancels out.
                order = self.specs if repeat % 2 == 0 else list(reversed(self.specs))
                for spec in order:
                    for group in self.groups:
                        self._run_server(spec, group, repeat)
            if self.config.bound:
                # bound.json, in a subprocess once every server has stopped
                bound.measure_for_run(self.run_dir, self.groups, self.meta, self.say)
            self.meta.data["status"] = "complete"
        except (KeyboardInterrupt, Interrupted):
            self.meta.data["status"] = "interrupted"
            raise
        except BaseException:
            self.meta.data["status"] = "failed"
            raise
        finally:
            self.writer.close()
            self.meta.data["finished_at"] = dt.datetime.now().isoformat(timespec="seconds")
            self.meta.save()
        return self.run_dir

    def write_row(self, row: ResultRow) -> None:
        """The sink of every finished row: results.jsonl, then the progress callback."""
        assert self.writer is not None
        self.writer.write(row)
        self.on_row(row)

    def executor(
        self,
        server: ServerProcess,
        group: ModelGroup,
        scenario: Scenario,
        variant: str,
        repeat: int,
        tokens: TokenCounter,
    ) -> RequestExecutor:
        context = RequestContext(
            run_id=self.run_id,
            run_dir=self.run_dir,
            server=server,
            model_name=group.path.name,
            scenario=scenario,
            variant=variant,
            repeat=repeat,
            tokens=tokens,
            limits=self.limits,
        )
        observations = self.observations.setdefault(server.spec.name, ServerObservations())
        return RequestExecutor(context, self.write_row, self.references, observations, self.pairs)

    # -- one server on one model -----------------------------------------------------------
    def _new_server(self, spec: ServerSpec, group: ModelGroup, home: Path, tag: str) -> ServerProcess:
        log = self.run_dir / "logs" / f"{spec.name}-{tag}.log"
        return ServerProcess(spec, group.path, home=home, log_path=log)

    def _start(self, server: ServerProcess) -> ServerProcess:
        assert self.meta is not None
        entry = self.meta.server_entry(server.spec)
        entry["command"] = server.public_command()
        self.say(f"starting {server.spec.name} on {Path(server.model).name}")
        try:
            server.start()
        finally:
            entry["shims"] = sorted(set(entry["shims"]) | set(server.shims()))
            entry["command"] = server.public_command()  # as run: with the port actually used
        self.say(f"{server.spec.name} ready in {server.time_to_ready_s:.1f} s on port {server.port}")
        if "identity" not in entry:  # once per server: the same command gives the same answers
            entry["identity"] = server.identity()
            self.meta.save()
        return server

    def _stop(self, server: ServerProcess) -> None:
        assert self.meta is not None
        server.read_counters()  # the server's own counters (response-cache hits), while it still answers
        server.stop()
        entry = self.meta.server_entry(server.spec)
        entry["sessions"].append(server.session_record())
        entry["shims"] = sorted(set(entry["shims"]) | set(server.shims()))
        if server.spec.name in self.observations:
            entry["observed"] = self.observations[server.spec.name].record()
        self.meta.save()

    def _run_server(self, spec: ServerSpec, group: ModelGroup, repeat: int) -> None:
        tokens = TokenCounter(group.path)
        try:
            for scenario in group.scenarios:
                self._run_scenario(spec, group, scenario, repeat, tokens)
        except ServerError as exc:
            self.say(str(exc))
            assert self.meta is not None
            self.meta.server_entry(spec)["notes"].append(f"start-up failed: {str(exc).splitlines()[0]}")
            self.meta.save()

    def _run_scenario(
        self, spec: ServerSpec, group: ModelGroup, scenario: Scenario, repeat: int, tokens: TokenCounter
    ) -> None:
        """One scenario on a fresh server with an empty cache dir, so its first request is cold."""
        tag = f"r{repeat}-{group.path.name}-{scenario.name}"
        home = self.run_dir / "homes" / f"{spec.name}-{tag}"
        server: ServerProcess | None = None
        try:
            for index, variant in enumerate(scenario.play_modes()):
                label = variant.label(scenario)
                if server is None or (not server.alive() and not spec.base_url):
                    if server is not None:
                        self._stop(server)
                    server = self._new_server(spec, group, home, tag)
                    try:
                        self._start(server)
                    except ServerError as exc:
                        self._stop(server)
                        self._write_failed_start(spec, scenario, variant, repeat, group, str(exc))
                        server = None
                        raise
                    self._warmup(self.executor(server, group, scenario, label, repeat, tokens), scenario, variant)
                executor = self.executor(server, group, scenario, label, repeat, tokens)
                # Later modes of a scenario share its server: their first request may find a warm cache.
                if self.config.concurrency > 1:
                    self._replay_concurrent(executor, variant)
                else:
                    server = self._replay(executor, group, variant, home, tag, warm=index > 0)
        finally:
            if server is not None:
                self._stop(server)

    def _write_failed_start(
        self, spec: ServerSpec, scenario: Scenario, variant: Variant, repeat: int, group: ModelGroup, message: str
    ) -> None:
        row = ResultRow(
            run_id=self.run_id,
            server=spec.name,
            scenario=scenario.name,
            repeat=repeat,
            variant=variant.label(scenario),
            model=group.path.name,
            turn=0,
            request_kind="first",
            stream=bool(variant.stream if variant.stream is not None else scenario.stream),
            started_at=time.time(),
            error=f"server failed to start: {message.splitlines()[0]}",
            checks_failed=["http.server_start"],
            check_evidence={"http.server_start": message[-500:]},
        )
        self.write_row(redact_row(row, spec.api_key))

    def _warmup(self, executor: RequestExecutor, scenario: Scenario, variant: Variant) -> None:
        """--warmup: one unmeasured request after each start, sharing no prefix with any scenario."""
        server = executor.server
        if not self.config.warmup or server.stopped or not server.started:
            return
        with httpx.Client(headers=server.headers) as client:
            server.read_new_log()  # skip log lines from before this request
            before = cachefiles.snapshot(server.cache_dirs)
            row = executor.send(client, warmup_request(scenario, variant), "warmup")
            time.sleep(CACHE_SETTLE_S)  # as after a scenario: let a server that saves its cache finish writing
            executor.finish(row, before, cachefiles.snapshot(server.cache_dirs), server.read_new_log())

    # -- one scenario in one mode ----------------------------------------------------------
    def _replay_concurrent(self, executor: RequestExecutor, variant: Variant) -> None:
        """--concurrency N: N sessions of the mode at once (``harness.run.concurrent``)."""
        assert self.meta is not None and self.writer is not None
        batch = concurrent.replay_concurrent(executor, variant, self.config.concurrency, self.request_serial, self.say)
        self.request_serial += batch.planned
        self.meta.data.setdefault("concurrency_batches", []).append(batch.record)
        self.meta.save()
        self.writer.sync()
        if batch.failure is not None:
            raise batch.failure

    def _replay(
        self, executor: RequestExecutor, group: ModelGroup, variant: Variant, home: Path, tag: str, warm: bool
    ) -> ServerProcess:
        """Plays one mode of a scenario in order; returns the server (a new one after a restart)."""
        assert self.writer is not None
        server, scenario = executor.server, executor.context.scenario
        spec = server.spec
        planned = plan_requests(
            scenario, stream=variant.stream, tool_choice=variant.tool_choice, request_serial=self.request_serial
        )
        self.request_serial += len(planned)
        self.say(f"{spec.name}: {scenario.name} [{executor.context.variant}] ({len(planned)} requests)")
        kinds = RequestKinds(first="first-warm" if warm else "first")
        # A row is finished once the next request is about to go, so that cache files a server saves
        # just after answering are counted on the request that caused them.
        pending: tuple[ResultRow, cachefiles.CacheSnapshot] | None = None
        client = httpx.Client(headers=server.headers)
        try:
            for request in planned:
                log_before = server.read_new_log()
                before = cachefiles.snapshot(server.cache_dirs)
                if pending:
                    executor.finish(*pending, after=before, log_text=log_before)
                    pending = None
                row = executor.send(client, request, kinds.next(request))
                pending = (row, before)
                if row.error and not server.alive() and not spec.base_url:
                    self.say(f"{spec.name} is no longer running ({row.error}); the rest of {scenario.name} is skipped")
                    break
                if request.restart_after and not spec.base_url:
                    executor.finish(row, before, cachefiles.snapshot(server.cache_dirs), server.read_new_log())
                    pending = None
                    self._stop(server)
                    self.say(f"restarting {spec.name} on the same cache dir")
                    server = self._start(self._new_server(spec, group, home, tag + "-restart"))
                    executor = self.executor(
                        server,
                        group,
                        scenario,
                        executor.context.variant,
                        executor.context.repeat,
                        executor.context.tokens,
                    )
                    self._warmup(executor, scenario, variant)
                    client.headers.update(server.headers)
                    kinds.restarted()
            if pending:
                time.sleep(CACHE_SETTLE_S)
                executor.finish(*pending, after=cachefiles.snapshot(server.cache_dirs), log_text=server.read_new_log())
        finally:
            client.close()
        self.writer.sync()
        return server


def recorded_record(scenario: Scenario) -> dict[str, Any]:
    """run.json's entry for a recorded scenario: where it came from and, per turn, its notes."""
    return {
        "source": scenario.source,
        "turns": [
            {"turn": index, "notes": list(turn.notes), "recorded_answer": turn.response is not None}
            for index, turn in enumerate(scenario.turns)
        ],
    }


def run(
    config: RunConfig,
    on_event: Callable[[str], None] | None = None,
    on_row: Callable[[ResultRow], None] | None = None,
    run_id: str | None = None,
) -> Path:
    """Validates everything that can be validated, then runs; returns the run folder."""
    return Runner(config, on_event, on_row, run_id).run()
