"""`harness record` (a recording proxy in front of a server) and `harness import` (saved traffic):
the two ways a user's own sessions become scenarios that `harness run --scenarios PATH` replays."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

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


def register_commands(sub: Any) -> None:
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
