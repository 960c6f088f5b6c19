"""Pairs the streamed and the non-streamed answer to the same request, for the one check that needs
both (``tool.stream_arguments_differ``, defined in ``harness.checks.pairs``).

Why here, in the run: a pair can only be judged once both of its rows exist, and results.jsonl is
append-only (each row is written, flushed and never rewritten), so the check cannot wait for the
analysis without leaving the written row and its capture without it. The run holds the first row's
calls until the other mode of the same request comes; the failure then goes on the row answered
second, with both sides in its evidence. A scenario played streamed and not (``variants``) has its
pairs on one server, in one repeat and session: the same body apart from ``model``, ``stream`` and
``stream_options``, asking for greedy decoding (temperature 0).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from harness.checks.outcome import short
from harness.checks.pairs import STREAM_ARGUMENTS_DIFFER, is_greedy, stream_pair_difference
from harness.checks.toolcalls import canonical_json
from harness.core.rows import ResultRow

# What may differ between the two requests of a pair.
MODE_FIELDS = {"model", "stream", "stream_options"}


def pair_key(row: ResultRow, body: dict[str, Any]) -> tuple[Any, ...]:
    same = {key: value for key, value in body.items() if key not in MODE_FIELDS}
    digest = hashlib.sha256(canonical_json(same).encode("utf-8")).hexdigest()[:16]
    return (row.server, row.scenario, row.repeat, row.session, row.turn, digest)


def _answered(row: ResultRow) -> bool:
    return row.error is None and row.stop_cause is None and row.http_status == 200


class StreamPairs:
    """The first row of each pair, until its partner comes. Safe to share between session threads."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[Any, ...], tuple[bool, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def check(self, row: ResultRow, body: dict[str, Any]) -> None:
        """Adds ``tool.stream_arguments_differ`` to ``row`` when its partner, answered earlier in the
        other mode, made different calls; otherwise keeps ``row`` for its partner."""
        if row.request_kind == "warmup" or not is_greedy(body) or not _answered(row):
            return
        key = pair_key(row, body)
        with self._lock:
            partner = self._waiting.get(key)
            if partner is None or partner[0] == row.stream:
                self._waiting[key] = (row.stream, list(row.tool_calls))
                return
            del self._waiting[key]
        streamed, plain = (row.tool_calls, partner[1]) if row.stream else (partner[1], row.tool_calls)
        difference = stream_pair_difference(streamed, plain)
        if difference and STREAM_ARGUMENTS_DIFFER not in row.checks_failed:
            row.checks_failed.append(STREAM_ARGUMENTS_DIFFER)
            row.check_evidence[STREAM_ARGUMENTS_DIFFER] = short(difference)
