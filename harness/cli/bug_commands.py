"""``harness bugs``: the corpus of known bugs of local servers (``scenarios/bugs/``, docs/bugs.md).

Without ``--servers`` it lists the corpus. With ``--servers mlx-lm@0.26.3,mlx-lm@0.31.3`` it plays
every entry of those servers on each release (every entry of the server, not only those that name
the release: a bug that came back is seen), each release in its own environment through the
ordinary runner, then writes the detection matrix (matrix.md, matrix.json) with recall and false
alarms into one folder. ``--corpus`` plays each entry on the release it names as affected
(``shown_on``) and on its fixed release: the whole corpus, as docs/bugs.md reports it.
``--judge FOLDER`` judges the rows of such a folder again, without starting a server.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.cli.options import comma_list
from harness.core.errors import ConfigError

IDLE_TIMEOUT_S, REQUEST_TIMEOUT_S = 30.0, 90.0
# Servers the harness runs on its own interpreter: their one release is the installed package's.
BUILTIN_PACKAGES = {"mlx-textgen": "mlx-textgen"}


@dataclass(frozen=True)
class Target:
    """A release asked for: the server, its release, the name a run config takes (None when it
    cannot be played), why it cannot be played, and the item as given (NAME@VERSION)."""

    server: str
    release: str
    name: str | None
    unavailable: str | None
    item: str


def _target(item: str, catalogue: dict[str, Any]) -> Target:
    """``NAME@VERSION`` -> the release to play, or why it cannot be played here."""
    from harness.server.catalogue import split_release

    name, release = split_release(item)
    if name in BUILTIN_PACKAGES:
        installed = metadata.version(BUILTIN_PACKAGES[name])
        if release not in (None, installed):
            raise ConfigError(
                f"{item}: {name} is built in at {installed} (the harness's own pinned stack); "
                f"ask for {name} or {name}@{installed}."
            )
        return Target(name, installed, name, None, item)
    if name in catalogue:
        release = release or catalogue[name].verified[0]
        return Target(name, release, f"{name}@{release}", None, item)
    if release is None:
        raise ConfigError(f"{item}: give the release of a server outside the catalogue as NAME@VERSION.")
    return Target(name, release, None, f"server not in catalogue ({', '.join(catalogue)} are)", item)


def _corpus_targets(entries: list[Any]) -> list[str]:
    """Every release the corpus names: each entry's affected release and its fixed one."""
    seen: dict[str, None] = {}
    for entry in entries:
        for release in (entry.shown_on, entry.fixed):
            if release is not None:
                seen[f"{entry.server}@{release}"] = None
    return list(seen)


def _corpus(args: argparse.Namespace) -> tuple[Path, list[Any]]:
    """The corpus folder and its entries (only those ``--entries`` names), each check name known."""
    from harness.checks.catalogue import BY_NAME
    from harness.scenario.bugs import bugs_dir, load_corpus

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
    return folder, entries


def _play(entries: list[Any], targets: list[Target], run_dir: Path, folder: Path, args: argparse.Namespace) -> None:
    """Each server's playable entries on its releases, one ordinary run per server under runs/."""
    from rich.console import Console

    from harness.run.config import load_config
    from harness.run.runner import Runner
    from harness.server.process import stop_all

    console = Console(highlight=False, stderr=True)
    for server in dict.fromkeys(target.server for target in targets):
        playable = [entry for entry in entries if entry.server == server and not entry.not_reproducible]
        names = [target.name for target in targets if target.server == server and target.name]
        if not playable or not names:
            continue
        files = [str(entry.write_scenario(run_dir / "scenarios", folder)) for entry in playable]
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


def _judge(entries: list[Any], targets: list[Target], run_dir: Path) -> str:
    """The detection matrix from the rows of every run under ``run_dir``/runs: matrix.md and
    matrix.json written, the markdown returned."""
    from harness.analysis import bugs as matrix
    from harness.core.rows import read_rows
    from harness.presentation.bugs import render_matrix

    rows_by: dict[tuple[str, str], list[Any]] = {}
    by_release: dict[str, list[Any]] = {}
    played_s = 0.0
    for results in sorted((run_dir / "runs").glob("*/results.jsonl")):
        for row in read_rows(results):
            rows_by.setdefault((row.server, row.scenario), []).append(row)
            by_release.setdefault(row.server, []).append(row)
        played_s += _run_seconds(results.parent / "run.json")
    cells = []
    for target in targets:
        got = by_release.get(target.name or "", [])
        # The runner plays no later scenario on a server that failed to start: its first row says why.
        failed = next((row for row in got if matrix.START_FAILED in row.checks_failed), None)
        silent = matrix.release_unavailable(got)
        for entry in entries:
            if entry.server != target.server:
                continue
            rows = rows_by.get((target.name or "", entry.scenario_name), [])
            unavailable = target.unavailable or silent
            if not rows and not unavailable and failed is not None:
                unavailable = f"release does not install or start here: {(failed.error or '')[:200]}"
            cells.append(matrix.cell(entry, target.server, target.release, rows, unavailable))
    played = [entry for entry in entries if any(c.entry == entry.id for c in cells)]
    result = matrix.figures(played, cells)
    record = matrix.matrix_record(played, cells, result, [target.item for target in targets])
    record["played_s"] = round(played_s, 1)
    (run_dir / "matrix.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    text = render_matrix(played, cells, result, run_dir.name, played_s)
    (run_dir / "matrix.md").write_text(text, encoding="utf-8")
    return text


def _run_seconds(run_json: Path) -> float:
    """How long one run under runs/ took, from its run.json (0 when it was cut short)."""
    import datetime as dt

    try:
        data = json.loads(run_json.read_text(encoding="utf-8"))
        started = dt.datetime.fromisoformat(data["created_at"])
        finished = dt.datetime.fromisoformat(data["finished_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0
    return (finished - started).total_seconds()


def cmd_bugs(args: argparse.Namespace) -> int:
    from rich.console import Console

    from harness.presentation.bugs import render_listing
    from harness.run.meta import new_run_id, prepare_run_dir
    from harness.server.catalogue import load_catalogue

    folder, entries = _corpus(args)
    if args.judge:
        # The rows of an earlier corpus run judged again (the corpus or the rules changed since).
        run_dir = Path(args.judge)
        try:
            items = json.loads((run_dir / "matrix.json").read_text(encoding="utf-8"))["releases"]
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"{run_dir}: not a folder written by `harness bugs` (no readable matrix.json: {exc})."
            ) from None
    elif args.servers or args.corpus:
        items = _corpus_targets(entries) if args.corpus else (comma_list(args.servers) or [])
    else:
        for line in render_listing(entries):
            print(line)
        print(f"{len(entries)} entries, {len({e.server for e in entries})} servers ({folder})")
        return 0
    catalogue = load_catalogue()
    targets = [_target(item, catalogue) for item in items]
    if not args.judge:
        run_dir = prepare_run_dir(Path(args.out), "bugs-" + new_run_id())
        Console(highlight=False, stderr=True).print(f"bug corpus run: {run_dir}")
        _play(entries, targets, run_dir, folder, args)
    text = _judge(entries, targets, run_dir)
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
    bugs.add_argument(
        "--judge",
        metavar="RUN_DIR",
        help="judge the rows of an earlier `harness bugs` folder again (after the corpus changed), no server started",
    )
    bugs.add_argument("--out", default="reports", help="folder for the run folder (default: reports)")
    bugs.add_argument("--corpus-dir", help="a folder of corpus entries (default: the built-in scenarios/bugs)")
    bugs.add_argument("--config", help="a harness.toml file")
    bugs.add_argument("--installer", choices=["uv", "pip"], help="fill environments with uv or pip")
    bugs.set_defaults(func=cmd_bugs)
