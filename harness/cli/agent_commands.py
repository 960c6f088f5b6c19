"""``harness agent``: a scripted Claude Code session (the real client, headless) against each server
through the harness's proxy, natively or converted; see docs/agent.md."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import Any

from harness.cli.options import comma_list
from harness.core.errors import ConfigError, Interrupted

DEFAULT_SERVERS = "legacy,vllm-mlx"
DEFAULT_MODEL = "tools-hermes"


def _interrupted(signum: int, _frame: Any) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut short the stopping of servers
    raise Interrupted(signum)


def _model_dir(value: str) -> Path:
    from harness.models.builtin import TOOL_MODEL_NAMES, tool_model_path

    if value in TOOL_MODEL_NAMES:
        return tool_model_path(value)
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"--model {value}: neither a built-in tool model ({', '.join(TOOL_MODEL_NAMES)}) nor a model folder."
        )
    return path


def cmd_agent(args: argparse.Namespace) -> int:
    from harness.agent.script import load_script
    from harness.agent.session import AgentRun
    from harness.presentation.agent_report import write_agent_report
    from harness.run.config import load_config

    script = load_script(Path(args.script) if args.script else None)
    if args.prompts:
        script.prompts = [line for line in Path(args.prompts).read_text(encoding="utf-8").splitlines() if line.strip()]
        if not script.prompts:
            raise ConfigError(f"--prompts {args.prompts}: the file has no prompt (one per line).")
    servers = args.servers or []
    # No comparison against a reference here: the first server named stands in as one.
    config = load_config(Path(args.config) if args.config else None, {"servers": servers, "reference": servers[0]})
    run = AgentRun(
        config.server_specs(),
        script,
        _model_dir(args.model),
        Path(args.out),
        path_choice=args.path,
        installer=args.installer or config.installer,
        prompt_timeout_s=args.prompt_timeout,
        say=lambda text: print(text, flush=True),
    )
    print(f"Claude Code {run.client_version}; writing {run.run_dir}", flush=True)
    previous = {sig: signal.signal(sig, _interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        run.run()
    except Interrupted as stop:
        print(f"interrupted; what was recorded is in {run.run_dir}")
        return 128 + stop.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    report = write_agent_report(run.run_dir)
    print(report.read_text(encoding="utf-8"))
    print(report)
    return 0


def register_commands(sub: Any) -> None:
    agent = sub.add_parser(
        "agent",
        help="run a scripted Claude Code session against each server through the harness's proxy",
        description="Installs the pinned Claude Code once (npm, into the per-user cache), copies the session "
        "script's fixture project into a throwaway workspace and runs its prompts (claude -p, then --resume) "
        "against each server: natively to its Messages API, or converted to OpenAI chat. Every request becomes "
        "a row; agent.md puts the client's own results and timings beside them.",
    )
    agent.add_argument(
        "--servers", type=comma_list, default=comma_list(DEFAULT_SERVERS),
        help=f"servers to run, NAME or NAME@VERSION, comma-separated (default: {DEFAULT_SERVERS})",
    )  # fmt: skip
    agent.add_argument(
        "--path", default="auto", choices=["auto", "native", "converted", "both"],
        help="how the client reaches each server: auto (native where it serves the Messages API, else "
        "converted), native, converted, or both",
    )  # fmt: skip
    agent.add_argument("--script", help="a session script (default: the built-in scenarios/agent/claude-code.yaml)")
    agent.add_argument("--prompts", help="a text file of prompts, one per line, in place of the script's")
    agent.add_argument("--model", default=DEFAULT_MODEL, help=f"a built-in tool model or a folder ({DEFAULT_MODEL})")
    agent.add_argument("--out", default="reports", help="folder for run folders (default: reports)")
    agent.add_argument("--config", help="a harness.toml declaring servers")
    agent.add_argument("--installer", choices=["uv", "pip"], help="how servers' own environments are built")
    agent.add_argument("--prompt-timeout", type=float, default=600.0, help="seconds one prompt may take (600)")
    agent.set_defaults(func=cmd_agent)
