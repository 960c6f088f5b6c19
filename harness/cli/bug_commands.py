"""``harness bugs``: the corpus of known bugs of local servers (``scenarios/bugs/``, docs/bugs.md).

Without ``--servers`` it lists the corpus. With ``--servers mlx-lm@0.26.3,mlx-lm@0.31.3`` it plays
every entry of those servers on each release (every entry of the server, not only those that name
the release: a bug that came back is seen), each release in its own environment through the
ordinary runner, then writes the detection matrix (matrix.md, matrix.json) with recall and false
alarms into one folder. ``--corpus`` plays each entry on the release it names as affected
(``shown_on``) and on its fixed release: the whole corpus, as docs/bugs.md reports it.
"""

from __future__ import annotations

import argparse
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.cli.options import comma_list
from harness.core.errors import ConfigError

IDLE_TIMEOUT_S, REQUEST_TIMEOUT_S = 30.0, 90.0
# Servers the harness runs on its own interpreter: their one release is the installed package's.
BUILTIN_PACKAGES = {"mlx-textgen": "mlx-textgen"}


def _target(item: str, catalogue: dict[str, Any]) -> tuple[str, str, str | None, str | None]:
    """``NAME@VERSION`` -> (server, release, the name a run config takes, why it cannot be played)."""
    from harness.server.catalogue import split_release

    name, release = split_release(item)
    if name in BUILTIN_PACKAGES:
        installed = metadata.version(BUILTIN_PACKAGES[name])
        if release not in (None, installed):
            raise ConfigError(
                f"{item}: {name} is built in at {installed} (the harness's own pinned stack); "
                f"ask for {name} or {name}@{installed}."
            )
        return name, installed, name, None
    if name in catalogue:
        release = release or catalogue[name].verified[0]
        return name, release, f"{name}@{release}", None
    if release is None:
        raise ConfigError(f"{item}: give the release of a server outside the catalogue as NAME@VERSION.")
    return name, release, None, f"server not in catalogue ({', '.join(catalogue)} are)"


def _corpus_targets(entries: list[Any]) -> list[str]:
    """Every release the corpus names: each entry's affected release and its fixed one."""
    seen: dict[str, None] = {}
    for entry in entries:
        for release in (entry.shown_on, entry.fixed):
            if release is not None:
                seen[f"{entry.server}@{release}"] = None
    return list(seen)


def cmd_bugs(args: argparse.Namespace) -> int:
    from rich.console import Console

    from harness.analysis import bugs as matrix
    from harness.checks.catalogue import BY_NAME
    from harness.core.rows import read_rows
    from harness.presentation.bugs import render_listing, render_matrix
    from harness.run.config import load_config
    from harness.run.meta import new_run_id, prepare_run_dir
    from harness.run.runner import Runner
    from harness.scenario.bugs import bugs_dir, load_corpus
    from harness.server.catalogue import load_catalogue
    from harness.server.process import stop_all

    console = Console(highlight=False, stderr=True)
    folder = Path(args.corpus_dir) if args.corpus_dir else bugs_dir()
    entries = load_corpus(folder)
    for entry in entries:
        unknown = [name for name in entry.checks if name not in BY_NAME]
        if unknown:
            raise ConfigError(
                f"{folder / (entry.id + '.yaml')}: field 'checks' names {', '.join(unknown)}, not in the catalogue "
                "of checks (docs/checks.md); add the check or fix the name."
            )
    wanted = comma_list(args.entries)
    if wanted:
        missing = sorted(set(wanted) - {entry.id for entry in entries})
        if missing:
            raise ConfigError(f"unknown corpus entries {', '.join(missing)}; `harness bugs` lists them.")
        entries = [entry for entry in entries if entry.id in wanted]
    if not args.servers and not args.corpus:
        for line in render_listing(entries):
            print(line)
        print(f"{len(entries)} entries, {len({e.server for e in entries})} servers ({folder})")
        return 0

    catalogue = load_catalogue()
    items = _corpus_targets(entries) if args.corpus else (comma_list(args.servers) or [])
    targets = [_target(item, catalogue) for item in items]
    run_dir = prepare_run_dir(Path(args.out), "bugs-" + new_run_id())
    console.print(f"bug corpus run: {run_dir}")
    scenario_dir = run_dir / "scenarios"
    cells: list[matrix.Cell] = []
    for server in dict.fromkeys(target[0] for target in targets):
        mine = [entry for entry in entries if entry.server == server]
        releases = [target for target in targets if target[0] == server]
        playable = [entry for entry in mine if not entry.not_reproducible]
        names = [target[2] for target in releases if target[2] and target[3] is None]
        rows_by: dict[tuple[str, str], list[Any]] = {}
        failed_start: dict[str, str] = {}
        if playable and names:
            files = [str(entry.write_scenario(scenario_dir, folder)) for entry in playable]
            native = any("anthropic" in entry.protocols for entry in playable)
            config = load_config(
                Path(args.config) if args.config else None,
                {
                    "servers": names,
                    "scenarios": files,
                    "reference": names[0],
                    "out": str(run_dir / "runs"),
                    "installer": args.installer,
                    "protocol": "both" if native else "openai",
                    # The tiny models answer in seconds: a server that hangs costs this, not minutes.
                    "idle_timeout_s": IDLE_TIMEOUT_S,
                    "request_timeout_s": REQUEST_TIMEOUT_S,
                },
            )
            runner = Runner(config, on_event=lambda message: console.print(f"[bold]>[/] {message}"))
            console.print(f"{server}: {len(playable)} entries on {', '.join(names)} -> {runner.run_dir}")
            try:
                runner.run()
            finally:
                stop_all()
            for row in read_rows(runner.run_dir):
                rows_by.setdefault((row.server, row.scenario), []).append(row)
                if matrix.START_FAILED in row.checks_failed:
                    # The runner plays no later scenario on a server that failed to start.
                    failed_start.setdefault(row.server, row.error or "the server did not start")
        for entry in mine:
            for _, release, name, unavailable in releases:
                rows = rows_by.get((name or "", entry.scenario_name), [])
                if not rows and not unavailable and name in failed_start:
                    unavailable = f"release does not install or start here: {failed_start[name][:200]}"
                cells.append(matrix.cell(entry, server, release, rows, unavailable))
    played = [entry for entry in entries if any(c.entry == entry.id for c in cells)]
    result = matrix.figures(played, cells)
    (run_dir / "matrix.json").write_text(
        json.dumps(matrix.matrix_record(played, cells, result, items), indent=2) + "\n", encoding="utf-8"
    )
    text = render_matrix(played, cells, result)
    (run_dir / "matrix.md").write_text(text, encoding="utf-8")
    print(text)
    print(run_dir / "matrix.md")
    return 0


def register_commands(sub: Any) -> None:
    bugs = sub.add_parser(
        "bugs",
        help="list the corpus of known server bugs, or play it on releases and write the detection matrix",
    )
    bugs.add_argument(
        "--servers",
        metavar="NAME@VERSION[,...]",
        help="play every entry of these servers on each release (e.g. mlx-lm@0.26.3,mlx-lm@0.31.3)",
    )
    bugs.add_argument(
        "--corpus",
        action="store_true",
        help="play each entry on its affected release (shown_on) and its fixed release: the whole corpus",
    )
    bugs.add_argument("--entries", metavar="ID[,...]", help="only these entries (`harness bugs` lists them)")
    bugs.add_argument("--out", default="reports", help="folder for the run folder (default: reports)")
    bugs.add_argument("--corpus-dir", help="a folder of corpus entries (default: the built-in scenarios/bugs)")
    bugs.add_argument("--config", help="a harness.toml file")
    bugs.add_argument("--installer", choices=["uv", "pip"], help="fill environments with uv or pip")
    bugs.set_defaults(func=cmd_bugs)
