"""The `harness` command: run a comparison, build the offline model, rebuild a report, replay a run's
answers into real client libraries, write the catalogue of checks (docs/checks.md), the verdict
commands (gate, claims, readme) and the traffic commands (record, import). Errors are one paragraph
naming the cause and the fix."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.cli import agent_commands, bug_commands, server_commands, traffic_commands
from harness.cli.options import comma_list
from harness.core.errors import HarnessError, Interrupted


def _raise_interrupted(signum: int, _frame: Any) -> None:
    # The first signal unwinds the run; a second one (Ctrl-C pressed twice) must not cut short the
    # stopping of the servers, so both are ignored until cmd_run restores the previous handlers.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.run.config import load_config
    from harness.run.runner import Runner
    from harness.server.process import stop_all

    overrides: dict[str, Any] = {
        "servers": comma_list(args.servers),
        "scenarios": comma_list(args.scenarios),
        "model": args.model,
        "out": args.out,
        "repeats": args.repeats,
        "reference": args.reference,
        "api_key": args.api_key,
        "context_tokens": args.context_tokens,
        "concurrency": args.concurrency,
        "warmup": args.warmup or None,
        "bound": args.bound,
        "turns": args.turns,
        "max_capacity": args.max_capacity,
        "time_budget_s": args.time_budget,
        "installer": args.installer,
        "protocol": args.protocol,
    }
    config = load_config(Path(args.config) if args.config else None, overrides)
    console = _console()

    def on_row(row) -> None:
        if row.error:
            status = "[red]error[/]"
        elif row.checks_failed:
            status = "[yellow]" + ",".join(row.checks_failed[:2]) + "[/]"
        else:
            status = "[green]ok[/]"
        total = f"{row.total_s:.2f}s" if row.total_s is not None else "-"
        variant = row.variant.replace("tool_choice=", "")
        # soft_wrap: one line per request even on a narrow (or non-tty, 80-column) console.
        console.print(
            f"  {row.server:13} {row.scenario:16} {variant:18} turn {row.turn:>2} {row.request_kind:10} "
            f"{total:>7}  {status}",
            soft_wrap=True,
        )

    runner = Runner(config, on_event=lambda message: console.print(f"[bold]>[/] {message}"), on_row=on_row)
    console.print(f"run folder: {runner.run_dir}")
    exit_code = 0
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        runner.run()
    except Interrupted as stop:
        exit_code = 128 + stop.signum
        console.print(f"[red]interrupted by signal {stop.signum}[/]: servers stopped, rows so far kept")
    finally:
        stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.clients != "none":
        _replay_clients(runner.run_dir, comma_list(args.clients), console)
    _print_report(runner.run_dir)
    print(runner.run_dir)
    return exit_code


def _replay_clients(run_dir: Path, names: list[str] | None, console: Any) -> None:
    from harness.clients.replay import replay_run

    replay_run(run_dir, names, on_event=lambda message: console.print(f"[bold]>[/] {message}", markup=True))


def cmd_clients(args: argparse.Namespace) -> int:
    """Replays a run folder's answers into real client libraries, then rebuilds its report."""
    run_dir = _existing_run_dir(args.run_dir)
    _replay_clients(run_dir, comma_list(args.clients), _console())
    _print_report(run_dir)
    print(run_dir)
    return 0


def cmd_build_model(args: argparse.Namespace) -> int:
    from harness.models.builtin import build_model, default_model_path, model_checksum

    out = Path(args.out) if args.out else default_model_path()
    existed = (out / "model.safetensors").is_file()
    path = build_model(out, seed=args.seed, force=args.force)
    state = "already built" if existed and not args.force else "built"
    print(f"{path} ({state}, checksum {model_checksum(path)})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    run_dir = _existing_run_dir(args.run_dir)
    _print_report(run_dir)
    print(run_dir)
    return 0


def _print_report(run_dir: Path) -> None:
    """Writes every table and plot from the rows, and prints the headline comparison."""
    from rich.console import Console

    from harness.analysis.run_folder import load_run
    from harness.presentation.report import build_report, console_table, plain_text, verdict_lines

    build_report(run_dir)
    summary, meta = load_run(run_dir)
    console = Console(highlight=False)
    console.print(console_table(summary, meta))
    for line in verdict_lines(summary):
        console.print(plain_text(line), markup=False)  # wrapped at the terminal width, as the tables


def cmd_checks_doc(args: argparse.Namespace) -> int:
    """Writes docs/checks.md from the catalogue of checks; with --check, says whether it is stale."""
    from harness.checks.catalogue import DOC_PATH, render_markdown

    path = Path(args.out or DOC_PATH)
    text = render_markdown()
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            print(f"{path} is stale: run `harness checks-doc` to regenerate it", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(path)
    return 0


def _existing_run_dir(value: str) -> Path:
    from harness.core.errors import ConfigError

    run_dir = Path(value)
    if not (run_dir / "results.jsonl").is_file():
        raise ConfigError(
            f"{run_dir} is not a run folder (no results.jsonl). Pass a folder written by `harness run`, "
            "e.g. reports/<run-id>."
        )
    return run_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start each server in turn, replay the scenarios, write the report")
    run.add_argument(
        "--servers",
        help="comma-separated server names (default: legacy,legacy-capped,mlx-textgen); a catalogue server "
        "as NAME or NAME@VERSION (`harness servers` lists them)",
    )
    run.add_argument("--scenarios", help="comma-separated scenario names, YAML files, or folders of them")
    run.add_argument("--model", help="a local mlx-lm model folder (default: the built-in offline model)")
    run.add_argument("--out", help="folder for run folders (default: reports)")
    run.add_argument("--repeats", type=int, help="replay each scenario N times per server")
    run.add_argument("--reference", help="the server the others are compared with (default: legacy)")
    run.add_argument("--config", help="a harness.toml file")
    run.add_argument("--api-key", help="API key for the servers (or env HARNESS_API_KEY)")
    run.add_argument(
        "--context-tokens",
        metavar="N[,N...]",
        help="replay each scenario with its system prompt grown or cut to about N tokens, "
        "once per size (e.g. 1000,2000,4000); the scenario is named NAME@N",
    )
    run.add_argument(
        "--protocol",
        choices=["openai", "anthropic", "both"],
        help="the API requests go through: openai (chat completions, default; Anthropic-format turns "
        "converted), anthropic (the Messages API, turns with an Anthropic body sent as recorded), or "
        "both (each turn both ways, side by side in the report); see docs/anthropic.md",
    )
    run.add_argument("--concurrency", type=int, help="independent sessions at once against one server")
    run.add_argument("--warmup", action="store_true", help="send one unmeasured warm-up request per server")
    run.add_argument(
        "--bound",
        action="store_true",
        default=None,
        help="after the servers, measure the cache-perfect follow-up cost in-process with "
        "mlx-lm (bound.json; about a minute for agent-session on two cores)",
    )
    run.add_argument(
        "--turns",
        type=int,
        metavar="N",
        help="turns of each generated scenario (long-session: default 100; eviction: per session)",
    )
    run.add_argument(
        "--max-capacity",
        type=int,
        metavar="N",
        help="prompt-cache capacity each server starts with where it has one (MLX-Textgen's "
        "--max-capacity); the eviction scenario plays more sessions than this",
    )
    run.add_argument(
        "--time-budget",
        type=float,
        metavar="S",
        help="seconds each server may spend on each scenario; no request is sent once it is spent",
    )
    run.add_argument(
        "--installer",
        choices=["uv", "pip"],
        help="how servers with their own environment (catalogue servers, NAME@VERSION) are installed "
        "(default: uv when installed, else pip)",
    )
    run.add_argument(
        "--clients",
        metavar="NAMES",
        help="client libraries to replay every answer into at the end (default: all of openai-python, "
        "ai-sdk, anthropic-python; 'none' to skip); see docs/clients.md",
    )
    run.set_defaults(func=cmd_run)

    build = sub.add_parser("build-model", help="build the built-in offline model (no download)")
    build.add_argument(
        "--out",
        help="model folder (default: tiny-chat-qwen2 in $HARNESS_MODELS_DIR, else in "
        "~/.cache/mlx-migration-harness/models)",
    )
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--force", action="store_true", help="rebuild even if it exists")
    build.set_defaults(func=cmd_build_model)

    report = sub.add_parser("report", help="rebuild tables, plots and report.html from a run folder")
    report.add_argument("run_dir")
    report.set_defaults(func=cmd_report)

    clients = sub.add_parser(
        "clients", help="replay a run's answers into real client libraries (docs/clients.md), rebuild the report"
    )
    clients.add_argument("run_dir")
    clients.add_argument(
        "--clients", metavar="NAMES", help="comma-separated: openai-python, ai-sdk, anthropic-python (default: all)"
    )
    clients.set_defaults(func=cmd_clients)

    checks_doc = sub.add_parser("checks-doc", help="write docs/checks.md: every check, what it means, an example")
    checks_doc.add_argument("--out", help="file to write (default: docs/checks.md)")
    checks_doc.add_argument("--check", action="store_true", help="only say whether the file is up to date")
    checks_doc.set_defaults(func=cmd_checks_doc)

    _add_verdict_commands(sub)
    traffic_commands.register_commands(sub)
    server_commands.register_commands(sub)
    agent_commands.register_commands(sub)
    bug_commands.register_commands(sub)
    return parser


def _add_verdict_commands(sub: Any) -> None:
    """gate / claims / readme live in harness.cli.verdict_commands; absent until that module is installed."""
    try:
        from harness.cli import verdict_commands as verdicts
    except ImportError:
        return
    register: Callable[[Any], None] | None = getattr(verdicts, "register_commands", None)
    if register:
        register(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
