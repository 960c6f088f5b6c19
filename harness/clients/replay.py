"""The client replay: every answer a run kept, fed to real client libraries' own parsers.

``replay_run(run_dir)`` reads the rows, loads each answer's raw bytes (``ResultRow.answer``) and hands
every answer to each client that speaks its protocol: the ``openai`` Python package and the AI SDK
for OpenAI chat answers, the ``anthropic`` Python package for Anthropic Messages answers. What each
client got (text, tool calls, finish reason, or the exception) goes to ``clients.jsonl``; which
clients ran, their versions and why any was skipped, to ``clients.json``. The analysis
(``harness.analysis.clients``) then decides which findings break which client.

Answers the harness cut off itself (runaway, stalled) and warm-ups are not replayed: a client would
have read on, so what it got from the partial bytes says nothing about the server.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from harness.clients import ai_sdk, anthropic_python, openai_python
from harness.clients.answers import (
    CapturedAnswer,
    ClientResult,
    ClientStatus,
    answer_of,
    replayable,
    write_results,
)
from harness.core.errors import ConfigError
from harness.core.rows import RESULTS_FILE, read_rows

# Every client the replay knows, in report order; ``--clients`` picks among these names.
CLIENTS: dict[str, ModuleType] = {
    openai_python.NAME: openai_python,
    ai_sdk.NAME: ai_sdk,
    anthropic_python.NAME: anthropic_python,
}
_PYTHON_PACKAGES = {openai_python.NAME: "openai", anthropic_python.NAME: "anthropic"}


def client_names(names: list[str] | None) -> list[str]:
    """``names`` checked against the known clients (all of them when None)."""
    if not names:
        return list(CLIENTS)
    unknown = [name for name in names if name not in CLIENTS]
    if unknown:
        raise ConfigError(f"unknown client {', '.join(unknown)}: the replay knows {', '.join(CLIENTS)}.")
    return list(dict.fromkeys(names))


def _python_unavailable(name: str) -> str | None:
    package = _PYTHON_PACKAGES[name]
    try:
        __import__(package)
    except ImportError:
        return f"the {package} package is not installed here: `pip install {package}` to replay answers through it"
    return None


def run_answers(run_dir: Path) -> list[CapturedAnswer]:
    run_dir = Path(run_dir)
    rows = read_rows(run_dir / RESULTS_FILE)
    return [answer for row in rows if replayable(row) and (answer := answer_of(run_dir, row)) is not None]


def replay_answers(
    answers: list[CapturedAnswer], names: list[str] | None = None, on_event: Callable[[str], None] | None = None
) -> tuple[list[ClientResult], list[ClientStatus]]:
    """Each named client's results on the answers in its protocols, and each client's status."""
    results: list[ClientResult] = []
    statuses: list[ClientStatus] = []
    for name in client_names(names):
        module = CLIENTS[name]
        status = ClientStatus(name)
        statuses.append(status)
        mine = [answer for answer in answers if answer.protocol in module.PROTOCOLS]
        if not mine:
            status.skipped = f"no answer in its protocol ({', '.join(module.PROTOCOLS)})"
            continue
        status.skipped = ai_sdk.unavailable() if module is ai_sdk else _python_unavailable(name)
        if status.skipped:
            if on_event:
                on_event(f"client replay: {name} skipped: {status.skipped}")
            continue
        status.version = module.version()
        if module is ai_sdk:
            try:
                got = ai_sdk.replay_all(mine)
            except (RuntimeError, OSError, ValueError) as exc:
                status.skipped = f"the replay script failed: {exc}"
                continue
        else:
            got = [module.replay(answer) for answer in mine]
        status.answers = len(got)
        results += got
        if on_event:
            on_event(f"client replay: {len(got)} answers through {name} {status.version}")
    return results, statuses


def replay_run(
    run_dir: Path, names: list[str] | None = None, on_event: Callable[[str], None] | None = None
) -> list[ClientStatus]:
    """Replays every answer of the run folder and writes clients.jsonl and clients.json."""
    results, statuses = replay_answers(run_answers(run_dir), names, on_event)
    write_results(Path(run_dir), results, statuses)
    return statuses
