"""`harness record` (a recording proxy in front of a server) and `harness import` (saved traffic):
the two ways a user's own sessions become scenarios that `harness run --scenarios PATH` replays."""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from harness.core.errors import ConfigError, Interrupted

NOTES_SHOWN = 12


def _print_written(written: list[Any], out_dir: Path) -> None:
    for scenario in written:
        notes = Counter(scenario.notes)
        print(f"wrote {scenario.path}: {len(scenario.exchanges)} request(s), {len(notes)} distinct note(s)")
        for note, count in list(notes.items())[:NOTES_SHOWN]:
            print(f"  note ({count}x): {note}")
        if len(notes) > NOTES_SHOWN:
            print(f"  ... {len(notes) - NOTES_SHOWN} more in the file's 'notes:' entries")
    print(f"replay with: harness run --scenarios {out_dir}")


def cmd_import(args: argparse.Namespace) -> int:
    from harness.scenario.importers import read_traffic, write_imported

    paths = [Path(item) for item in args.paths]
    result = read_traffic(paths)
    for skipped in result.skipped:
        print(f"skipped {skipped}")
    read = ", ".join(f"{count} {kind}" for kind, count in result.formats.items())
    print(f"read {len(result.exchanges)} request(s): {read}")
    base = args.name or (paths[0].resolve().stem if len(paths) == 1 else "imported")
    sources = ", ".join(str(path) for path in paths)
    description = f"Imported by harness import from {sources} ({len(result.exchanges)} requests)."
    out_dir = Path(args.out)
    written = write_imported(result.exchanges, out_dir, base, description, force=args.force)
    _print_written(written, out_dir)
    return 0


def _interrupted(signum: int, _frame: Any) -> None:
    # The first signal stops the proxy; a second one must not cut short the writing of what was
    # recorded, so both are ignored until cmd_record restores the previous handlers.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def _listening_socket(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP spelled out: asyncio switches Nagle's algorithm off (TCP_NODELAY) only on sockets
    # that say so, and without it every answer would wait ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}. Choose another --port (0 picks a free one)."
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _upstream_url(value: str) -> str:
    url = value.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"--upstream {value!r} is not an http(s) URL. Give the server's address, e.g. http://127.0.0.1:8081."
        )
    # Clients are given a base URL ending in /v1; the proxy forwards the paths it receives as they are.
    return url.removesuffix("/v1")


def _row_line(row: Any) -> str:
    if row.error:
        status = f"error: {row.error}"
    elif row.checks_failed:
        status = ",".join(row.checks_failed[:3])
    else:
        status = "ok"
    ttft = f"{row.ttft_s:.2f}s" if row.ttft_s is not None else "-"
    total = f"{row.total_s:.2f}s" if row.total_s is not None else "-"
    mode = "stream" if row.stream else "no-stream"
    where = f"{row.scenario:14} turn {row.turn:>2} {row.request_kind:9} {mode:9}"
    return f"  {where} ttft {ttft:>7} total {total:>7}  {status}"


def cmd_record(args: argparse.Namespace) -> int:
    import uvicorn

    from harness.presentation.report import build_report
    from harness.record.proxy import RecordingProxy
    from harness.record.recorder import SCENARIOS_DIR, Recorder
    from harness.run.meta import new_run_id, prepare_run_dir

    upstream = _upstream_url(args.upstream)
    model_dir = Path(args.model) if args.model else None
    if model_dir is not None and not model_dir.is_dir():
        raise ConfigError(f"--model {model_dir}: no such folder. Give a local model folder, or leave --model out.")
    sock = _listening_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    listen = f"http://{host}:{port}"
    run_id = new_run_id()
    try:
        run_dir = prepare_run_dir(Path(args.out), run_id)
        recorder = Recorder(
            run_dir, run_id, upstream, label=args.label, name=args.name, model_dir=model_dir,
            on_row=lambda row: print(_row_line(row), flush=True), listen=listen,
        )  # fmt: skip
    except BaseException:
        sock.close()
        raise
    app = RecordingProxy(upstream, recorder.submit)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", server_header=False, date_header=False,
        timeout_graceful_shutdown=3,
    )  # fmt: skip
    print(f"recording into {run_dir}", flush=True)
    print(f"proxy listening on {listen}: point your client's base URL at {listen}/v1 (upstream {upstream})", flush=True)
    print("Ctrl-C stops the recording and writes the sessions", flush=True)
    previous = {sig: signal.signal(sig, _interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    # The recorder's thread turns each finished exchange into its row while the proxy serves the
    # next request; a short switch interval lets the proxy's event loop take the GIL back within
    # 0.2 ms of a byte arriving, instead of the default 5 ms.
    sys.setswitchinterval(0.0002)
    exit_code = 0
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except Interrupted as stop:
        exit_code = 128 + stop.signum
    finally:
        sock.close()
        written = recorder.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    rows = sum(len(scenario.exchanges) for scenario in written)
    print(f"recorded {rows} request(s) in {len(written)} session(s)")
    if written:
        build_report(run_dir)
        _print_written(written, run_dir / SCENARIOS_DIR)
    for note in recorder.skipped:
        print(f"not recorded: {note}", file=sys.stderr)
    print(run_dir)
    return exit_code


def register_commands(sub: Any) -> None:
    record = sub.add_parser(
        "record",
        help="a recording proxy: pass a client's requests to a server, keep them as scenarios and rows",
        description="Listens as an OpenAI-compatible server, forwards every request unchanged to --upstream and "
        "streams each answer back as it arrives. Writes, into a new folder under --out: one scenario per "
        "session (scenarios/), a row per request with what was observed (results.jsonl, report.html) and "
        "each exchange as it completes (exchanges.jsonl). Ctrl-C stops it (exit code 130).",
    )
    record.add_argument("--upstream", required=True, help="the server to record, e.g. http://127.0.0.1:8081")
    record.add_argument("--port", type=int, default=8090, help="port to listen on (default 8090; 0: a free one)")
    record.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    record.add_argument("--out", default="recordings", help="folder for recording folders (default: recordings)")
    record.add_argument("--name", default="session", help="scenario name; sessions are NAME-1, NAME-2 ...")
    record.add_argument("--label", default="upstream", help="the server's name in the rows (default: upstream)")
    record.add_argument("--model", help="a local model folder whose tokenizer counts tokens the server does not report")
    record.set_defaults(func=cmd_record)

    imported = sub.add_parser(
        "import",
        help="turn saved traffic (OpenAI request bodies, proxy traces) into scenarios, one per session",
        description="Reads OpenAI chat-completions bodies (one per .json file or per .jsonl line, optionally "
        'as {"request": BODY, "response": ANSWER}) and proxy trace files (Anthropic Messages requests '
        "converted to the OpenAI request a proxy sends), and writes one scenario per session.",
    )
    imported.add_argument("paths", nargs="+", metavar="PATH", help="files, or folders of .json / .jsonl files")
    imported.add_argument("--out", default="imported", help="folder for the scenario files (default: imported)")
    imported.add_argument("--name", help="scenario name (default: the file or folder name); sessions get -1, -2 ...")
    imported.add_argument("--force", action="store_true", help="overwrite scenario files that exist")
    imported.set_defaults(func=cmd_import)
