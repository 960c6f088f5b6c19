"""The run: for each server in turn (never two at once), start it, replay every scenario, stop it.

Every request becomes one row in results.jsonl, written before the next request is sent. run.json
records the exact config, versions, models, quirks and shims, and is rewritten as the run goes, so
an interrupted run still says what it was and can be reported on. Each request goes through the
one request path, ``harness.run.request``.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from harness.capture import cachefiles
from harness.capture.http import ReplayLimits
from harness.checks.damage import classify as classify_damage
from harness.checks.damage import classify_start_failure
from harness.core.errors import Interrupted, ServerError
from harness.core.rows import PROTOCOLS, RESULTS_FILE, ResultRow, ResultWriter
from harness.models.tokens import TokenCounter
from harness.run import bound, concurrent
from harness.run.config import RunConfig
from harness.run.meta import RunMeta, machine_info, model_record, new_run_id, package_versions, prepare_run_dir
from harness.run.model_groups import ModelGroup, ensure_models, group_by_model
from harness.run.pairs import StreamPairs
from harness.run.request import ReferenceRows, RequestContext, RequestExecutor, ServerObservations, redact_row
from harness.scenario.context_size import scale_groups
from harness.scenario.definition import (
    CACHE_DAMAGE_REFERENCES,
    PlannedRequest,
    RequestKinds,
    Scenario,
    Variant,
    plan_requests,
    resolve_scenarios,
)
from harness.scenario.generated import describe, materialize_groups
from harness.scenario.warmup import warmup_request
from harness.server import cache_damage, environments, model_conversion
from harness.server.environments import EnvironmentBuildError
from harness.server.model_conversion import ModelConversionError
from harness.server.process import ServerProcess
from harness.server.spec import ServerSpec, with_capacity

# After a scenario's last answer, a server that saves its cache after answering gets this long to
# finish writing before the cache dirs are looked at for the last time.
CACHE_SETTLE_S = 0.3
# How much of a failed start's message (the server log's last lines) a row keeps as evidence: enough
# for the lines a server prints about its command line and model before it fails.
START_EVIDENCE_CHARS = 2000


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
        materialize_groups(self.groups, config.turns, config.max_capacity)  # generate: blocks, --turns
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
        # The scenario being played: its time budget on the current server and when that ends.
        self.budget_s: float | None = None
        self.deadline: float | None = None
        # (server, scenario, mode, repeat) -> damage reference ("intact", "empty") -> its first row.
        self.damage_references: dict[tuple[str, str, str, int], dict[str, ResultRow]] = {}
        # Servers' own environments, by server name, once created or found.
        self.environments: dict[str, environments.Environment] = {}
        # Models converted for a server that loads another format (GGUF), by (server, model folder).
        self.converted: dict[tuple[str, Path], model_conversion.ConvertedModel] = {}

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
                "scenario_info": {
                    scenario.name: info
                    for group in self.groups
                    for scenario in group.scenarios
                    if (info := self._scenario_info(scenario))
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
                bound.measure_for_run(self.run_dir, self.groups, self.meta, self.say, self.config.turns)
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

    def _scenario_info(self, scenario: Scenario) -> dict[str, Any]:
        """What run.json says of a scenario beyond its name: how it was generated, the cache capacity
        and time budget it ran with, the cache damages it plays."""
        info: dict[str, Any] = {}
        generated = describe(scenario)
        if generated:
            info["generated"] = generated
        capacity = self.config.max_capacity or scenario.max_capacity
        if capacity:
            info["max_capacity"] = capacity
        budget = self.config.time_budget_s or scenario.time_budget_s
        if budget:
            info["time_budget_s"] = budget
        damages = [fault for turn in scenario.turns for fault in turn.damage_cache_after or []]
        if damages:
            info["cache_damage"] = damages
        return info

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
        own = self.environments.get(spec.name)
        converted = self.converted.get((spec.name, group.path))
        return ServerProcess(
            spec,
            converted.path if converted else group.path,
            home=home,
            log_path=log,
            python=str(own.python) if own else sys.executable,
        )

    def _environment(self, spec: ServerSpec) -> None:
        """Creates (or finds) the server's own environment before its first start, and records it in
        run.json; a failed install raises EnvironmentBuildError, which fails this server only."""
        if spec.environment is None or spec.base_url or spec.name in self.environments:
            return
        assert self.meta is not None
        entry = self.meta.server_entry(spec)
        try:
            env = environments.ensure(spec.environment, say=self.say, installer=self.config.installer)
        except EnvironmentBuildError as exc:
            entry["environment"] = {"name": spec.environment.name, "error": str(exc)}
            self.meta.save()
            raise
        self.environments[spec.name] = env
        entry["environment"] = env.record()
        entry["release"] = spec.release
        self.meta.save()

    def _converted_model(self, spec: ServerSpec, group: ModelGroup) -> None:
        """Converts the group's model for a server that loads another format (once per model and
        converter, cached), and records it in run.json; a failure raises ModelConversionError, which
        fails this server only."""
        if spec.conversion is None or spec.base_url or (spec.name, group.path) in self.converted:
            return
        assert self.meta is not None
        own = self.environments.get(spec.name)
        python = own.python if own else Path(sys.executable)
        sources = own.path / "sources" if own else model_conversion.gguf_dir() / "sources"
        converter = model_conversion.script_converter(spec.conversion, python, sources)
        conversions = self.meta.server_entry(spec).setdefault("model_conversions", {})
        try:
            converted = model_conversion.ensure_gguf(group.path, spec.conversion, converter, say=self.say)
        except ModelConversionError as exc:
            conversions[group.path.name] = {"source_model": str(group.path), "error": str(exc)}
            self.meta.save()
            raise
        self.converted[(spec.name, group.path)] = converted
        conversions[group.path.name] = converted.record()
        self.meta.save()

    def _start(self, server: ServerProcess) -> ServerProcess:
        assert self.meta is not None
        entry = self.meta.server_entry(server.spec)
        entry["command"] = server.public_command()
        told = server.told_args()
        if told:  # the report says so: a server that needed telling differs from one that found out
            entry.setdefault("told", {})[Path(server.model).name] = told
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
            self._environment(spec)
            self._converted_model(spec, group)
        except (EnvironmentBuildError, ModelConversionError) as exc:
            self.say(str(exc))
            assert self.meta is not None
            what = "model conversion failed" if isinstance(exc, ModelConversionError) else "environment failed"
            self.meta.server_entry(spec)["notes"].append(f"{what}: {str(exc).splitlines()[0]}")
            for scenario in group.scenarios:
                for variant in scenario.play_modes():
                    self._write_failed_start(spec, scenario, variant, repeat, group, str(exc))
            self.meta.save()
            return
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
        spec = with_capacity(spec, self.config.max_capacity or scenario.max_capacity)
        self.budget_s = self.config.time_budget_s or scenario.time_budget_s
        self.deadline = time.monotonic() + self.budget_s if self.budget_s else None
        server: ServerProcess | None = None
        try:
            for index, variant in enumerate(self._modes(spec, scenario)):
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
                    server = self._replay(executor, group, variant, tag, warm=index > 0)
        finally:
            if server is not None:
                self._stop(server)

    def _modes(self, spec: ServerSpec, scenario: Scenario) -> list[Variant]:
        """The scenario's modes, each once per protocol ``--protocol`` asks for that the server
        serves and the scenario can be sent through (natively: turns with an Anthropic body).
        A combination left out is said once in run.json's notes; none left means nothing to play."""
        wanted = list(PROTOCOLS) if self.config.protocol == "both" else [self.config.protocol]
        playable = []
        for protocol in wanted:
            if spec.protocol_path(protocol) is None:
                why = f"{spec.name} does not serve the {protocol} protocol ({', '.join(spec.protocols)} only)"
            elif protocol == "anthropic" and not scenario.has_anthropic:
                why = f"{scenario.name} has no turn with an Anthropic Messages body (anthropic_request)"
            else:
                playable.append(protocol)
                continue
            self._note(f"{scenario.name} not sent through {protocol} to {spec.name}: {why}")
        # Native first: its first request is then the cold one.
        playable.sort(key=lambda protocol: protocol != "anthropic")
        return [
            variant.model_copy(update={"protocol": protocol})
            for variant in scenario.play_modes()
            for protocol in playable
        ]

    def _note(self, text: str) -> None:
        assert self.meta is not None
        if text not in self.meta.data["notes"]:
            self.meta.data["notes"].append(text)
            self.say(text)
            self.meta.save()

    def _write_failed_start(
        self, spec: ServerSpec, scenario: Scenario, variant: Variant, repeat: int, group: ModelGroup, message: str
    ) -> None:
        row = self._failed_start_row(spec, scenario, variant, repeat, group, message)
        self.write_row(redact_row(row, spec.api_key))

    def _failed_start_row(
        self, spec: ServerSpec, scenario: Scenario, variant: Variant, repeat: int, group: ModelGroup, message: str
    ) -> ResultRow:
        return ResultRow(
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
            check_evidence={"http.server_start": message[-START_EVIDENCE_CHARS:]},
        )

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
        self, executor: RequestExecutor, group: ModelGroup, variant: Variant, tag: str, warm: bool
    ) -> ServerProcess | None:
        """Plays one mode of a scenario in order; returns the server (a new one after a restart, None
        once the session went on over damaged copies of the cache, whose servers are all stopped)."""
        scenario = executor.context.scenario
        planned = plan_requests(
            scenario,
            stream=variant.stream,
            tool_choice=variant.tool_choice,
            request_serial=self.request_serial,
            protocol=variant.protocol,
        )
        self.request_serial += len(planned)
        self.say(f"{executor.server.spec.name}: {scenario.name} [{executor.context.variant}] ({len(planned)} requests)")
        kinds = RequestKinds(first="first-warm" if warm else "first")
        return self._play(executor, planned, kinds, group, variant, tag)

    def _play(
        self,
        executor: RequestExecutor,
        planned: list[PlannedRequest],
        kinds: RequestKinds,
        group: ModelGroup,
        variant: Variant,
        tag: str,
    ) -> ServerProcess | None:
        """Sends ``planned`` in order through ``executor``'s server: restarts where a turn says so,
        and hands the rest of the session to ``_replay_damaged`` after a ``damage_cache_after`` turn."""
        assert self.writer is not None
        server, scenario = executor.server, executor.context.scenario
        spec = server.spec
        # A row is finished once the next request is about to go, so that cache files a server saves
        # just after answering are counted on the request that caused them.
        pending: tuple[ResultRow, cachefiles.CacheSnapshot] | None = None
        client = httpx.Client(headers=server.headers)
        result: ServerProcess | None = server
        try:
            for position, request in enumerate(planned):
                if self._budget_spent(spec, scenario, executor.context.variant, position, len(planned)):
                    break
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
                if request.damage_after and not spec.base_url:
                    time.sleep(CACHE_SETTLE_S)  # the server may save its cache just after answering
                    executor.finish(row, before, cachefiles.snapshot(server.cache_dirs), server.read_new_log())
                    pending = None
                    self._stop(server)
                    self._replay_damaged(executor, group, variant, tag, request.damage_after, planned[position + 1 :])
                    result = None
                    break
                if request.restart_after and not spec.base_url:
                    executor.finish(row, before, cachefiles.snapshot(server.cache_dirs), server.read_new_log())
                    pending = None
                    self._stop(server)
                    self.say(f"restarting {spec.name} on the same cache dir")
                    server = self._start(self._new_server(spec, group, server.home, tag + "-restart"))
                    result = server
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
        return result

    # -- a damaged cache -------------------------------------------------------------------
    def _replay_damaged(
        self,
        executor: RequestExecutor,
        group: ModelGroup,
        variant: Variant,
        tag: str,
        faults: list[str],
        rest: list[PlannedRequest],
    ) -> None:
        """The rest of a session once per damage: each time a copy of the stopped server's HOME, its
        cache dirs damaged (``harness.server.cache_damage``), a new server started on it, the rest of
        the session sent; the first request's row says what the server did (``checks.damage``)."""
        assert self.meta is not None
        spec, context = executor.server.spec, executor.context
        source = executor.server.home
        for fault in faults:
            label = f"{context.variant},damage={fault}"
            if not rest or self._budget_spent(spec, context.scenario, label, 0, len(rest)):
                break
            name = f"{spec.name}-{tag}-damage-{fault}"
            copy, number = self.run_dir / "homes" / name, 1
            while copy.exists():  # another mode of the scenario made this damage already
                number += 1
                copy = self.run_dir / "homes" / f"{name}-{number}"
            repointed = cache_damage.copy_home(source, copy)
            server = self._new_server(spec, group, copy, copy.name.removeprefix(f"{spec.name}-"))
            damage = cache_damage.apply(fault, server.cache_dirs)
            if repointed:
                names = ", ".join(path.name for path in repointed)
                damage.action += f" ({names} repointed at the copy)"
            self.say(f"{spec.name}: cache damage {fault}: {damage.action}")
            try:
                self._play_damaged(server, damage, context, label, group, variant, tag, rest)
            finally:
                if server.started:
                    self._stop(server)
                for problem in damage.release():
                    self.meta.data["notes"].append(f"cache damage {fault}: could not undo a mount: {problem}")
                    self.meta.save()

    def _play_damaged(
        self,
        server: ServerProcess,
        damage: cache_damage.CacheDamage,
        context: RequestContext,
        label: str,
        group: ModelGroup,
        variant: Variant,
        tag: str,
        rest: list[PlannedRequest],
    ) -> None:
        fault = damage.fault
        key = (server.spec.name, context.scenario.name, context.variant, context.repeat)
        references = self.damage_references.setdefault(key, {})
        try:
            self._start(server)
        except ServerError as exc:
            outcome, evidence = classify_start_failure(str(exc))
            row = self._failed_start_row(server.spec, context.scenario, variant, context.repeat, group, str(exc))
            row.variant, row.turn, row.request_kind = label, rest[0].turn, "restart"
            row.conversation = rest[0].conversation
            row.fault, row.fault_action, row.fault_outcome, row.fault_evidence = fault, damage.action, outcome, evidence
            self.write_row(redact_row(row, server.spec.api_key))
            return
        executor = self.executor(server, group, context.scenario, label, context.repeat, context.tokens)
        probed: list[ResultRow] = []

        def annotate(row: ResultRow, log_text: str | None) -> None:
            row.fault = fault
            if probed:
                return
            probed.append(row)
            row.fault_action = damage.action
            row.fault_outcome, row.fault_evidence = classify_damage(row, references, log_text, server.alive(), fault)
            if fault in CACHE_DAMAGE_REFERENCES:
                references[fault] = row

        executor.annotate = annotate
        kinds = RequestKinds()
        kinds.restarted()  # the first request after the damage measures what is left of the cache
        self._play(executor, rest, kinds, group, variant, f"{tag}-damage-{fault}")

    def _budget_spent(self, spec: ServerSpec, scenario: Scenario, label: str, sent: int, planned: int) -> bool:
        """Whether this scenario's time budget on this server is spent; says so once, in run.json."""
        if self.deadline is None or time.monotonic() < self.deadline:
            return False
        assert self.meta is not None
        stops = self.meta.data.setdefault("budget_stops", [])
        stop = {"server": spec.name, "scenario": scenario.name, "variant": label, "budget_s": self.budget_s}
        if not any(all(item.get(k) == v for k, v in stop.items()) for item in stops):
            stops.append({**stop, "sent": sent, "planned": planned})
            message = (
                f"{spec.name}: {scenario.name} [{label}]: time budget of {self.budget_s:g} s spent; "
                f"{planned - sent} of {planned} requests not sent"
            )
            self.meta.data["notes"].append(message)  # listed in the report's run details
            self.say(message)
            self.meta.save()
        return True


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
