"""The run: for each server in turn (never two at once), start it, replay every scenario, stop it.

Every request becomes one row in results.jsonl, written before the next request is sent. run.json
records the exact config, versions, models, quirks and shims, and is rewritten as the run goes, so
an interrupted run still says what it was and can be reported on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import psutil

from harness import __version__

from harness.capture import cachefiles

from harness.checks import conformance
from harness.run.config import RunConfig
from harness.core.errors import ConfigError, HarnessError, Interrupted, ServerError
from harness.models.builtin import check_model_dir, default_model_path, model_checksum, tool_model_path
from harness.capture.http import ReplayLimits, send
from harness.models.tokens import TokenCounter
from harness.core.rows import RESULTS_FILE, RUN_FILE, ResultRow, ResultWriter
from harness.scenario.definition import PlannedRequest, Scenario, Variant, plan_requests, resolve_scenarios
from harness.scenario.context_size import scale_groups
from harness.server.process import ServerProcess, describe_exit
from harness.server.spec import ServerSpec
from harness.scenario.warmup import warmup_request



def redact_row(row: ResultRow, secret: str | None) -> ResultRow:
    """The row with ``secret`` masked wherever it appears (content, error, evidence, tool calls)."""
    if not secret:
        return row
    text = row.model_dump_json()
    escaped = json.dumps(secret)[1:-1]  # the secret as it is written inside a JSON string
    if escaped not in text:
        return row
    return ResultRow.model_validate_json(text.replace(escaped, "***"))


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def prepare_run_dir(out: Path, run_id: str) -> Path:
    """Creates the run folder, failing before any server starts if it cannot be written."""
    # Absolute: each server runs with its HOME as working directory, where a relative path would
    # point somewhere else entirely.
    run_dir = (Path(out) / run_id).resolve()
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot write the run folder {run_dir}: {exc.strerror or exc}. Choose a writable folder with --out DIR."
        ) from None
    return run_dir


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {"python": platform.python_version(), "harness": __version__}
    for name in ("mlx", "mlx-lm", "mlx-textgen", "transformers", "httpx"):
        try:
            found[name.replace("-", "_")] = version(name)
        except PackageNotFoundError:
            found[name.replace("-", "_")] = None
    return found


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def model_record(path: Path, builtin: bool) -> dict[str, Any]:
    return {"path": str(path), "name": path.name, "checksum": model_checksum(path), "builtin": builtin}


class RunMeta:
    """run.json, rewritten atomically whenever something worth keeping is learned."""

    def __init__(self, run_dir: Path, data: dict[str, Any]) -> None:
        self.path = run_dir / RUN_FILE
        self.data = data
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def server_entry(self, spec: ServerSpec) -> dict[str, Any]:
        return self.data["servers"].setdefault(
            spec.name,
            {"label": spec.label, "quirks": spec.quirks, "shims": [], "notes": [], "sessions": [],
             "remote": bool(spec.base_url)},
        )


@dataclass
class ModelGroup:
    """Scenarios that run on one model, so each server is started once per model."""

    path: Path
    builtin: bool
    scenarios: list[Scenario] = field(default_factory=list)


def group_by_model(config: RunConfig, scenarios: list[Scenario]) -> list[ModelGroup]:
    groups: dict[Path, ModelGroup] = {}
    user_model = Path(config.model).expanduser().resolve() if config.model else None
    for scenario in scenarios:
        if user_model is not None:
            path, builtin = user_model, False
        elif scenario.model:
            path, builtin = tool_model_path(scenario.model), True
        else:
            path, builtin = default_model_path(), True
        groups.setdefault(path, ModelGroup(path, builtin)).scenarios.append(scenario)
    return list(groups.values())


def ensure_models(groups: list[ModelGroup]) -> None:
    from harness.models.builtin import build_model

    for group in groups:
        if group.builtin and group.path == default_model_path():
            build_model(group.path)  # no-op when already built
        check_model_dir(group.path)


class Runner:
    """One run. ``on_row`` is called with each row as it is written (progress output)."""

    def __init__(self, config: RunConfig, on_event: Callable[[str], None] | None = None,
                 on_row: Callable[[ResultRow], None] | None = None, run_id: str | None = None) -> None:
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
        self.writer: ResultWriter | None = None
        self.meta: RunMeta | None = None
        self.reference_rows: dict[tuple[str, str, int], ResultRow] = {}
        self.request_serial = 0

    # -- the whole run ---------------------------------------------------------------------
    def run(self) -> Path:
        self.meta = RunMeta(self.run_dir, {
            "run_id": self.run_id,
            "created_at": dt.datetime.now().isoformat(timespec="seconds"),
            "finished_at": None,
            "status": "running",
            "reference_server": self.config.reference,
            "config": self.config.public_dump(),
            "model": model_record(self.groups[0].path, self.groups[0].builtin) if self.groups else None,
            "scenario_models": {
                scenario.name: model_record(group.path, group.builtin)
                for group in self.groups for scenario in group.scenarios
            },
            "machine": machine_info(),
            "versions": package_versions(),
            "servers": {},
            "notes": [],
        })
        self.writer = ResultWriter(self.run_dir / RESULTS_FILE)
        try:
            for repeat in range(self.config.repeats):
                # Alternate the order (A B, B A, ...) so slow drift of the machine cancels out.
                order = self.specs if repeat % 2 == 0 else list(reversed(self.specs))
                for spec in order:
                    for group in self.groups:
                        self._run_server(spec, group, repeat)
            from harness.run.bound import measure_for_run

            measure_for_run(self)  # bound.json, in a subprocess once every server has stopped
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
        return server

    def _stop(self, server: ServerProcess) -> None:
        assert self.meta is not None
        server.stop()
        entry = self.meta.server_entry(server.spec)
        entry["sessions"].append(server.session_record())
        entry["shims"] = sorted(set(entry["shims"]) | set(server.shims()))
        self.meta.save()

    def _run_server(self, spec: ServerSpec, group: ModelGroup, repeat: int) -> None:
        counter = TokenCounter(group.path)
        try:
            for scenario in group.scenarios:
                self._run_scenario(spec, group, scenario, repeat, counter)
        except ServerError as exc:
            self.say(str(exc))
            assert self.meta is not None
            self.meta.server_entry(spec)["notes"].append(f"start-up failed: {str(exc).splitlines()[0]}")
            self.meta.save()

    def _run_scenario(self, spec: ServerSpec, group: ModelGroup, scenario: Scenario, repeat: int,
                      counter: TokenCounter) -> None:
        """One scenario on a fresh server with an empty cache dir, so its first request is cold."""
        tag = f"r{repeat}-{group.path.name}-{scenario.name}"
        home = self.run_dir / "homes" / f"{spec.name}-{tag}"
        server: ServerProcess | None = None
        try:
            for index, variant in enumerate(scenario.play_modes()):
                if server is None or not server.alive() and not spec.base_url:
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
                    self._warmup(server, spec, group, scenario, variant, repeat, counter)
                # Later modes of a scenario share its server: their first request may find a warm cache.
                server = self._replay(server, spec, group, scenario, variant, repeat, counter, home, tag,
                                      warm=index > 0)
        finally:
            if server is not None:
                self._stop(server)

    def _write_failed_start(self, spec: ServerSpec, scenario: Scenario, variant: Variant, repeat: int,
                            group: ModelGroup, message: str) -> None:
        assert self.writer is not None
        row = ResultRow(
            run_id=self.run_id, server=spec.name, scenario=scenario.name, repeat=repeat,
            variant=variant.label(scenario), model=group.path.name, turn=0, request_kind="first",
            stream=bool(variant.stream if variant.stream is not None else scenario.stream),
            started_at=time.time(), error=f"server failed to start: {message.splitlines()[0]}",
            checks_failed=["http.server_start"], check_evidence={"http.server_start": message[-500:]},
        )
        row = redact_row(row, spec.api_key)
        self.writer.write(row)
        self.on_row(row)

    def _warmup(self, server: ServerProcess, spec: ServerSpec, group: ModelGroup, scenario: Scenario,
                variant: Variant, repeat: int, counter: TokenCounter) -> None:
        """--warmup: one unmeasured request after each start, sharing no prefix with any scenario."""
        if not self.config.warmup or (server.stopped or not server.started):
            return
        with httpx.Client(headers=server.headers) as client:
            before = cachefiles.snapshot(server.cache_dirs)
            row = self._request(client, server, spec, group, scenario, variant.label(scenario), repeat,
                                warmup_request(scenario, variant), "warmup", counter)
            time.sleep(0.3)  # as after a scenario: let a server that saves its cache finish writing
            self._finish(server, row, before, after=cachefiles.snapshot(server.cache_dirs))

    # -- one scenario in one mode ----------------------------------------------------------
    def _replay(self, server: ServerProcess, spec: ServerSpec, group: ModelGroup, scenario: Scenario,
                variant: Variant, repeat: int, counter: TokenCounter, home: Path, tag: str,
                warm: bool = False) -> ServerProcess:
        assert self.writer is not None
        if self.config.concurrency > 1:
            from harness.run.concurrent import replay_concurrent

            return replay_concurrent(self, server, spec, group, scenario, variant, repeat, counter)
        label = variant.label(scenario)
        planned = plan_requests(scenario, stream=variant.stream, tool_choice=variant.tool_choice,
                                request_serial=self.request_serial)
        self.request_serial += len(planned)
        self.say(f"{spec.name}: {scenario.name} [{label}] ({len(planned)} requests)")
        next_kind = "first-warm" if warm else "first"
        pending: tuple[ResultRow, cachefiles.CacheSnapshot] | None = None
        with httpx.Client(headers=server.headers) as client:
            for request in planned:
                before = cachefiles.snapshot(server.cache_dirs)
                if pending:
                    self._finish(server, *pending, after=before)
                    pending = None
                kind = "side" if request.side else next_kind
                row = self._request(client, server, spec, group, scenario, label, repeat, request, kind, counter)
                pending = (row, before)
                if not request.side:  # a side request is its own conversation: the main one goes on
                    next_kind = "follow-up"
                if row.error and not server.alive() and not spec.base_url:
                    self.say(f"{spec.name} is no longer running ({row.error}); the rest of {scenario.name} is skipped")
                    break
                if request.restart_after and not spec.base_url:
                    self._finish(server, *pending, after=cachefiles.snapshot(server.cache_dirs))
                    pending = None
                    self._stop(server)
                    self.say(f"restarting {spec.name} on the same cache dir")
                    server = self._start(self._new_server(spec, group, home, tag + "-restart"))
                    self._warmup(server, spec, group, scenario, variant, repeat, counter)
                    client.headers.update(server.headers)
                    next_kind = "restart"
        if pending:
            # Give a server that saves its cache after answering a moment to finish writing.
            time.sleep(0.3)
            self._finish(server, *pending, after=cachefiles.snapshot(server.cache_dirs))
        self.writer.sync()
        return server

    def _request(self, client: httpx.Client, server: ServerProcess, spec: ServerSpec, group: ModelGroup,
                 scenario: Scenario, label: str, repeat: int, request: PlannedRequest, kind: str,
                 counter: TokenCounter) -> ResultRow:
        server.read_new_log()  # skip log lines from before this request
        body = request.body(server.model_id or group.path.name)
        started_at = time.time()
        timed = send(client, server.base_url + "/v1/chat/completions", body, self.limits)
        answer = conformance.extract_answer(timed.captured)
        outcome = conformance.run_checks(timed.captured, answer, request)
        usage = answer.usage or {}
        output_text = (answer.content or "") + "".join(
            json.dumps(call.get("arguments")) for call in answer.tool_calls
        )
        counted = counter.count(output_text) if counter.available else None
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
            run_id=self.run_id, server=spec.name, scenario=scenario.name, repeat=repeat, variant=label,
            model=group.path.name, tool_choice=request.tool_choice, turn=request.turn,
            request_kind=kind, stream=request.stream, started_at=started_at,
            ttft_s=timed.ttft_s, total_s=timed.total_s, http_status=timed.captured.http_status, error=error,
            finish_reason=answer.finish_reason, prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=completion if completion is not None else counted,
            tokens_source="usage" if completion is not None else ("counted" if counted is not None else None),
            decode_tok_s=decode, cached_tokens=details.get("cached_tokens") if isinstance(details, dict) else None,
            content=(answer.content or "")[:4000] if answer.content is not None else None,
            content_sha=hashlib.sha256((answer.content or "").encode()).hexdigest()[:16],
            tool_calls=answer.tool_calls, checks_failed=outcome.failed, check_evidence=outcome.evidence,
            check_notes=outcome.notes, stop_cause=timed.captured.stop_cause,
            context_tokens=scenario.context_tokens,
        )
        row = redact_row(row, spec.api_key)  # a server may echo the key back (content, error body)
        if spec.name == self.config.reference:
            self.reference_rows[(scenario.name, label, request.turn)] = row
        else:
            reference = self.reference_rows.get((scenario.name, label, request.turn))
            if reference is not None:
                row.ab_diff, row.ab_detail = conformance.ab_compare(reference, row)
        return row

    def _finish(self, server: ServerProcess, row: ResultRow, before: cachefiles.CacheSnapshot,
                after: cachefiles.CacheSnapshot) -> None:
        """Completes a row with what the request left on disk and in the log, then writes it."""
        assert self.writer is not None
        delta = cachefiles.diff(before, after)
        row.cache_files_new = len(delta.new_files)
        row.cache_bytes_new = delta.new_bytes
        row.cache_bytes_total = delta.total_bytes
        row.cache_files = [os.path.relpath(path, self.run_dir) for path in delta.new_files]
        reused, tokens = server.cache_reuse_from_log(server.read_new_log())
        if row.cached_tokens is not None:
            tokens = row.cached_tokens
            reused = tokens > 0 if reused is None else reused
        if row.cached_tokens is None and tokens is not None:
            row.cached_tokens = tokens
        # Reusing a chat template's first few tokens is not a working prompt cache: count reuse
        # only when at least half of the prompt came from the cache.
        if reused and tokens is not None and row.prompt_tokens:
            reused = tokens >= 0.5 * row.prompt_tokens
        row.cache_reused = reused
        self.writer.write(row)
        self.on_row(row)


def run(config: RunConfig, on_event: Callable[[str], None] | None = None,
        on_row: Callable[[ResultRow], None] | None = None, run_id: str | None = None) -> Path:
    """Validates everything that can be validated, then runs; returns the run folder."""
    return Runner(config, on_event, on_row, run_id).run()


__all__ = ["run", "Runner", "RunMeta", "prepare_run_dir", "HarnessError", "RUN_FILE"]
