"""What the launchers in this folder share: saying which shims they applied, one line each starting
with "launcher shim applied:" and a summary line "launcher shims: [...]". The harness copies these
lines into the report (harness.server.process.ServerProcess.shims): a shim is a difference from what
a Mac user runs, so it must be visible next to the numbers."""

from __future__ import annotations

import sys


def announce(applied: list[str]) -> None:
    for description in applied:
        print(f"launcher shim applied: {description}", file=sys.stderr, flush=True)
    print(f"launcher shims: {applied}", file=sys.stderr, flush=True)
