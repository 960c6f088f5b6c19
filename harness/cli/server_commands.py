"""``harness servers``: the servers the harness can start, built in and from the catalogue, with the
releases verified here, whether their environment is installed, the protocols they serve and their
kind of prompt cache; ``--install NAME[@VERSION]`` creates an environment ahead of a run."""

from __future__ import annotations

import argparse
from typing import Any

# The built-in servers run on the harness's own interpreter (its pinned mlx 0.26 stack).
BUILTIN_ROWS = [
    ("legacy", "stand-in, as deployed", "disk (never written)", "no parser (quirk)"),
    ("legacy-capped", "stand-in, max_tokens honoured", "disk (never written)", "no parser (quirk)"),
    ("mlx-textgen", "0.2.1 (CPU shims)", "disk", "by itself"),
]


def cmd_servers(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness.core.errors import ConfigError
    from harness.server import environments
    from harness.server.catalogue import load_catalogue, split_release

    catalogue = load_catalogue()
    console = Console(highlight=False)
    if args.install:
        for item in [part.strip() for part in args.install.split(",") if part.strip()]:
            name, release = split_release(item)
            if name not in catalogue:
                raise ConfigError(f"'{name}' is not in the catalogue ({', '.join(catalogue)}).")
            env = environments.ensure(
                catalogue[name].environment(release or catalogue[name].verified[0]),
                say=lambda text: console.print(text),
                installer=args.installer,
            )
            state = "created" if env.created else "already there"
            console.print(f"{env.spec.name}: {state} ({env.path}, {len(env.frozen)} packages)")
        return 0

    table = Table(title="Servers the harness starts", show_lines=False)
    for column in ("name", "releases verified here", "environment", "protocols", "prompt cache", "Hermes tool calls"):
        table.add_column(column, overflow="fold")
    for name, about, cache, parser_how in BUILTIN_ROWS:
        table.add_row(name, about, "the harness's own", "openai", cache, parser_how)
    for entry in catalogue.values():
        installed = [
            release for release in entry.verified if environments.existing(entry.environment(release)) is not None
        ]
        parser = entry.tool_parsers.get("hermes")
        state = f"installed: {', '.join(installed)}" if installed else "not installed"
        table.add_row(
            entry.name,
            ", ".join(entry.verified),
            state + ("; the model converted to GGUF once" if entry.model_format == "gguf" else ""),
            ", ".join(entry.protocols),
            entry.cache,
            parser.how if parser else "no parser",
        )
    console.print(table)
    console.print(
        "Run a catalogue server by name (its newest verified release) or as NAME@VERSION, any release: "
        "its environment is created on first use under "
        f"{environments.environments_dir()}."
    )
    return 0


def register_commands(sub: Any) -> None:
    servers = sub.add_parser(
        "servers", help="list the servers the harness starts (built in and catalogue) and their environments"
    )
    servers.add_argument("--install", metavar="NAME[@VERSION][,...]", help="create these environments now")
    servers.add_argument("--installer", choices=["uv", "pip"], help="fill environments with uv or pip")
    servers.set_defaults(func=cmd_servers)
