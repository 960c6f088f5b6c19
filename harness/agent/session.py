"""``harness agent``: a scripted Claude Code session against each server, through the harness's proxy.

For each server (started one at a time, each from its own environment where it has one) and each
path to it:

- **native**: the client's Messages API requests go to the server's own Messages endpoint through
  the recording proxy, unchanged but for ``model`` (the client's name swapped for the server's);
- **converted**: the converting proxy (``harness.record.converting``) turns each one into an OpenAI
  chat request for the server and the answer back into the Messages API, streamed too.

Either way every exchange with the server becomes a row (the recorder of ``harness record``), in a
recording folder of its own (``<server>-<path>/``: results.jsonl, exchanges.jsonl, scenarios/,
run.json). The client runs in a fresh copy of the fixture project with its own HOME and TMPDIR, all
inside that folder. ``agent.json`` at the top keeps, per prompt, what the client itself reported
beside the rows of the requests it made, the server log's reuse lines, and the audit of what was
written; run.json names the client's version.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.agent import claude_code
from harness.agent.claude_code import ClientSettings, Invocation
from harness.agent.script import SessionScript, make_workspace
from harness.capture.http import event_has_visible_output
from harness.core.errors import ConfigError, ServerError
from harness.core.rows import ResultRow, read_rows
from harness.core.sse import SSEReader
from harness.record.converting import ConvertingProxy
from harness.record.proxy import Exchange, RecordingProxy
from harness.record.recorder import Recorder
from harness.run.meta import RunMeta, machine_info, new_run_id, package_versions, prepare_run_dir
from harness.server import environments
from harness.server.environments import EnvironmentBuildError
from harness.server.process import ServerProcess
from harness.server.spec import ANTHROPIC, ANTHROPIC_MESSAGES_PATH, OPENAI, ServerSpec

NATIVE, CONVERTED = "native", "converted"
PATH_CHOICES = ("auto", NATIVE, CONVERTED, "both")
AGENT_FILE = "agent.json"
_KEY_SCAN_MAX_BYTES = 50_000_000


def paths_for(spec: ServerSpec, choice: str) -> tuple[list[str], list[str]]:
    """The paths to run ``spec`` by, and a note for each asked-for path it cannot take.
    ``auto``: native where the server serves the Messages API, else converted."""
    native = spec.protocol_path(ANTHROPIC) is not None
    chat = spec.protocol_path(OPENAI) is not None
    wanted = {"auto": [NATIVE if native else CONVERTED], "both": [NATIVE, CONVERTED]}.get(choice, [choice])
    paths, notes = [], []
    for path in wanted:
        if (path == NATIVE and not native) or (path == CONVERTED and not chat):
            protocol = "the Anthropic Messages API" if path == NATIVE else "OpenAI chat completions"
            notes.append(f"{spec.name} does not serve {protocol}: its {path} path is left out")
        else:
            paths.append(path)
    return paths, notes


def swap_model(model: str) -> Callable[[bytes], bytes]:
    """The proxy's rewrite for the native path: the request's ``model`` becomes the server's."""

    def rewrite(body: bytes) -> bytes:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return body
        if not isinstance(data, dict) or "model" not in data:
            return body
        data["model"] = model
        return json.dumps(data, ensure_ascii=False).encode()

    return rewrite


class ProxyThread:
    """An ASGI app served by uvicorn on 127.0.0.1 (a free port) in a thread of this process."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="on", server_header=False, date_header=False,
            timeout_graceful_shutdown=3,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ProxyThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise ServerError(f"the harness's proxy did not start on {self.url}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@dataclass
class Leg:
    """One server by one path: the client's prompts and the rows of what it sent."""

    server: str
    path: str
    folder: Path
    model: str
    invocations: list[Invocation] = field(default_factory=list)
    rows: list[list[dict[str, Any]]] = field(default_factory=list)  # per invocation
    log_reuse: list[dict[str, Any]] = field(default_factory=list)  # per invocation
    conversion_notes: Counter[str] = field(default_factory=Counter)
    # The proxy's time to the first visible output of each exchange, by its start time (the row's).
    visible: dict[float, float | None] = field(default_factory=dict)
    files_written: dict[str, list[str]] = field(default_factory=dict)
    problem: str | None = None

    def record(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "path": self.path,
            "folder": self.folder.name,
            "model": self.model,
            "problem": self.problem,
            "prompts": [
                {**invocation.record(), "rows": rows, "log_reuse": reuse}
                for invocation, rows, reuse in zip(self.invocations, self.rows, self.log_reuse, strict=True)
            ],
            "conversion_notes": dict(self.conversion_notes),
            "files_written": self.files_written,
        }


def row_view(row: ResultRow, visible: dict[float, float | None]) -> dict[str, Any]:
    """What the agent report shows of a row (the whole row stays in the leg's results.jsonl)."""
    return {
        "turn": row.turn,
        "started_at": row.started_at,
        "stream": row.stream,
        "http_status": row.http_status,
        "ttft_s": row.ttft_s,
        "ttft_visible_s": visible.get(row.started_at),
        "total_s": row.total_s,
        "finish_reason": row.finish_reason,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "cached_tokens": row.cached_tokens,
        "tool_calls": [call.get("name") for call in row.tool_calls],
        "checks_failed": list(row.checks_failed),
        "error": row.error,
        "capture": row.capture,
    }


def first_visible_s(exchange: Exchange) -> float | None:
    """When the first tool call or non-whitespace text of a streamed answer arrived (seconds after the
    request went upstream), None when none did: the proxy's time to something the client shows."""
    if not exchange.streamed:
        return None
    reader = SSEReader()
    for chunk, arrived in exchange.chunks:
        for event in reader.feed(chunk, arrived):
            if event_has_visible_output(event.payload, exchange.protocol):
                return event.arrived_s
    return None


def rows_of(invocation: Invocation, rows: list[ResultRow]) -> list[ResultRow]:
    """The rows of the requests sent while ``invocation`` ran (prompts run one after another)."""
    end = invocation.started_at + invocation.wall_s
    return [row for row in rows if invocation.started_at <= row.started_at <= end]


def _listing(root: Path, base: Path) -> list[str]:
    return sorted(str(path.relative_to(base)) for path in root.rglob("*") if path.is_file())


def files_containing(root: Path, needle: str) -> list[str]:
    """Files under ``root`` whose bytes contain ``needle`` (the dummy key must be in none)."""
    found = []
    data = needle.encode()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size <= _KEY_SCAN_MAX_BYTES:
            try:
                if data in path.read_bytes():
                    found.append(str(path.relative_to(root)))
            except OSError:
                continue
    return sorted(found)


class AgentRun:
    """One ``harness agent`` run over ``specs`` with ``script``; ``say`` gets progress lines."""

    def __init__(
        self,
        specs: list[ServerSpec],
        script: SessionScript,
        model_dir: Path,
        out: Path,
        path_choice: str = "auto",
        installer: str | None = None,
        prompt_timeout_s: float = 600.0,
        say: Callable[[str], None] = print,
    ) -> None:
        if path_choice not in PATH_CHOICES:
            raise ConfigError(f"--path {path_choice!r}: choose one of {', '.join(PATH_CHOICES)}.")
        self.specs = specs
        self.script = script
        self.model_dir = Path(model_dir).resolve()
        self.path_choice = path_choice
        self.installer = installer
        self.say = say
        self.settings = ClientSettings(
            tools=script.tools,
            permission_mode=script.permission_mode,
            max_output_tokens=script.max_output_tokens,
            max_turns=script.max_turns,
            timeout_s=prompt_timeout_s,
        )
        self.binary = claude_code.ensure_installed()  # before the run folder: a clear error first
        self.client_version = claude_code.binary_version(self.binary)
        self.run_id = new_run_id()
        self.run_dir = prepare_run_dir(Path(out), self.run_id)
        self.key = claude_code.dummy_key()  # only ever in the client's environment and its headers
        self.legs: list[Leg] = []
        self.notes: list[str] = []
        self.meta = RunMeta(
            self.run_dir,
            {
                "run_id": self.run_id,
                "kind": "agent",
                "created_at": dt.datetime.now().isoformat(timespec="seconds"),
                "finished_at": None,
                "status": "running",
                "client": {
                    "package": claude_code.PACKAGE,
                    "version": claude_code.version(),
                    "pinned": claude_code.PINNED_VERSION,
                    "reports": self.client_version,
                    "install_dir": str(claude_code.install_dir()),
                    "settings": {
                        "tools": script.tools,
                        "permission_mode": script.permission_mode,
                        "max_output_tokens": script.max_output_tokens,
                        "max_turns": script.max_turns,
                        "restricted": True,
                    },
                },
                "script": {"name": script.name, "source": str(script.source), "prompts": script.prompts},
                "model": str(self.model_dir),
                "paths": path_choice,
                "machine": machine_info(),
                "versions": package_versions(),
                "servers": {},
                "notes": self.notes,
            },
        )
        self.meta.save()

    def run(self) -> Path:
        try:
            for spec in self.specs:
                self._run_server(spec)
            self.meta.data["status"] = "complete"
        except BaseException:
            self.meta.data["status"] = "interrupted"
            raise
        finally:
            self._write()
            self.meta.data["finished_at"] = dt.datetime.now().isoformat(timespec="seconds")
            self.meta.save()
        return self.run_dir

    def _write(self) -> None:
        leaks = files_containing(self.run_dir, self.key)
        data = {
            "run_id": self.run_id,
            "client": self.meta.data["client"],
            "script": self.meta.data["script"],
            "legs": [leg.record() for leg in self.legs],
            "key_found_in": leaks,
            "notes": self.notes,
        }
        (self.run_dir / AGENT_FILE).write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")

    def _run_server(self, spec: ServerSpec) -> None:
        paths, notes = paths_for(spec, self.path_choice)
        self.notes.extend(notes)
        for note in notes:
            self.say(note)
        if not paths:
            return
        entry = self.meta.server_entry(spec)
        python = sys.executable
        if spec.environment is not None and not spec.base_url:
            try:
                env = environments.ensure(spec.environment, say=self.say, installer=self.installer)
            except EnvironmentBuildError as exc:
                self._failed(spec, paths, f"its environment could not be built: {str(exc).splitlines()[0]}")
                return
            python = str(env.python)
            entry["environment"] = env.record()
            entry["release"] = spec.release
        server = ServerProcess(
            spec,
            self.model_dir,
            home=self.run_dir / "servers" / spec.name,
            log_path=self.run_dir / "logs" / f"{spec.name}.log",
            python=python,
        )
        self.say(f"starting {spec.name} on {self.model_dir.name}")
        try:
            server.start()
        except ServerError as exc:
            self._failed(spec, paths, f"it did not start: {str(exc).splitlines()[0]}")
            return
        entry["command"] = server.public_command()
        entry["identity"] = server.identity()
        self.meta.save()
        try:
            for path in paths:
                self.legs.append(self._run_leg(server, path))
        finally:
            server.stop()
            entry["sessions"].append(server.session_record())
            self.meta.save()

    def _failed(self, spec: ServerSpec, paths: list[str], why: str) -> None:
        self.say(f"{spec.name}: {why}")
        for path in paths:
            folder = self.run_dir / f"{spec.name}-{path}"
            self.legs.append(Leg(spec.name, path, folder, "", problem=f"{spec.name} was not run: {why}"))

    def _run_leg(self, server: ServerProcess, path: str) -> Leg:
        spec = server.spec
        folder = self.run_dir / f"{spec.name}-{path}"
        model = server.model_id or self.model_dir.name
        leg = Leg(spec.name, path, folder, model)
        folder.mkdir(parents=True)
        messages_path = spec.protocol_path(ANTHROPIC) or ANTHROPIC_MESSAGES_PATH
        prefix = messages_path.removesuffix(ANTHROPIC_MESSAGES_PATH) if path == NATIVE else ""
        recorder = Recorder(
            folder, self.run_id, server.base_url + prefix, label=spec.name, name=f"agent-{path}",
            model_dir=self.model_dir,
        )  # fmt: skip

        def observe(exchange: Exchange) -> None:
            leg.visible[exchange.started_at] = first_visible_s(exchange)
            recorder.submit(exchange)

        app: Any
        if path == NATIVE:
            app = RecordingProxy(server.base_url + prefix, observe, rewrite=swap_model(model))
        else:
            app = ConvertingProxy(server.base_url, spec.chat_path, model, observe, leg.conversion_notes.update)
        workspace = make_workspace(self.script, folder / "workspace")
        home, tmp = folder / "client-home", folder / "client-tmp"
        home.mkdir()
        tmp.mkdir()
        self.say(f"{spec.name} ({path}): {len(self.script.prompts)} prompt(s) through {type(app).__name__}")
        try:
            with ProxyThread(app) as proxy:
                env = claude_code.client_env(proxy.url, self.key, home, tmp, self.script.max_output_tokens)
                session: str | None = None
                for index, prompt in enumerate(self.script.prompts):
                    offset = server.log_position()
                    invocation = claude_code.invoke(
                        self.binary, index, prompt, self.settings, env, workspace, resume=session
                    )
                    session = invocation.session_id or session
                    leg.invocations.append(invocation)
                    reused, tokens = server.cache_reuse_from_log(server.read_log_since(offset))
                    leg.log_reuse.append({"reused": reused, "tokens": tokens})
                    self.say(_prompt_line(spec.name, path, invocation))
        finally:
            recorder.close()
        rows = read_rows(folder)
        leg.rows = [[row_view(row, leg.visible) for row in rows_of(invocation, rows)] for invocation in leg.invocations]
        leg.files_written = {
            "workspace": _listing(workspace, workspace),
            "client-home": _listing(home, home),
            "client-tmp": _listing(tmp, tmp),
        }
        return leg


def _prompt_line(server: str, path: str, invocation: Invocation) -> str:
    state = "completed" if invocation.completed else f"FAILED ({invocation.problem or invocation.subtype})"
    ttft = f"{invocation.ttft_ms:.0f} ms" if invocation.ttft_ms is not None else "-"
    return (
        f"  {server} ({path}) prompt {invocation.prompt_index + 1}: {state}, {invocation.num_turns or 0} turn(s), "
        f"client ttft {ttft}, {invocation.wall_s:.1f} s"
    )
