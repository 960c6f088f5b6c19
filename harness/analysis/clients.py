"""Which findings break which real client: the client replay's results (``harness.clients``) read
against the answers the harness saw, the non-streamed answer to the same request and the reference
server's answer.

For one answer and one client, the client *breaks* when it

- **raises** (an exception where the application expected an answer),
- **loses tool calls**: it returns fewer calls than the answer carries, or none where the client got
  calls from the reference server's answer to the same request and this answer failed a check the
  reference passed (tool calls sent as text),
- returns a **different tool call**: another name or other arguments than the answer carries, or,
  streamed, than the same client got from the non-streamed answer to the same request,
- **loses text**: its text is not the answer's text.

Otherwise it *tolerates* whatever checks the answer failed: it recovers the same result. A client
verdict for a server counts the requests where the client breaks and does not break on the
reference's answer to the same request, grouped by effect, scenario and mode.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.analysis.summary import row_failures
from harness.checks.toolcalls import canonical_arguments
from harness.clients.answers import ClientReplay, ClientResult

RAISES = "raises"
LOSES_TOOL_CALLS = "loses tool calls"
DIFFERENT_TOOL_CALL = "different tool call"
LOSES_TEXT = "loses text"
EFFECTS = (RAISES, LOSES_TOOL_CALLS, DIFFERENT_TOOL_CALL, LOSES_TEXT)  # worst first


@dataclass
class Judgement:
    effects: list[str]
    detail: str = ""

    @property
    def breaking(self) -> bool:
        return bool(self.effects)


@dataclass
class ClientBreak:
    """Requests of one scenario mode where a client breaks (and does not on the reference)."""

    effect: str
    scenario: str
    variant: str
    breaking: int
    requests: int
    checks: list[str] = field(default_factory=list)  # the findings of those answers
    example: str = ""
    # Each breaking answer: (answer file, turn, what the client lost), for the report's drill-down.
    answers: list[tuple[str, int, str]] = field(default_factory=list)


@dataclass
class ClientVerdict:
    client: str
    server: str
    reference: str
    skipped: str | None = None  # why the client was not replayed
    compared: int = 0  # answers of the server with a reference answer, both replayed
    breaks: list[ClientBreak] = field(default_factory=list)
    tolerated: list[str] = field(default_factory=list)  # checks failed on answers it read the same

    @property
    def breaking(self) -> int:
        return sum(item.breaking for item in self.breaks)

    @property
    def drop_in(self) -> bool | None:
        if self.skipped or not self.compared:
            return None
        return not self.breaks


def _sha(text: str | None) -> str:
    return hashlib.sha256((text or "").encode()).hexdigest()[:16]


def _signature(calls: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(str(call.get("name") or ""), canonical_arguments(call.get("arguments"))) for call in calls or []]


def _calls_text(calls: list[dict[str, Any]]) -> str:
    return ", ".join(str(call.get("name") or "?") for call in calls) or "none"


def judge(
    row: Any, got: ClientResult, plain: ClientResult | None = None, reference: ClientResult | None = None
) -> Judgement:
    """What ``got`` (one client's result on ``row``'s answer) lost. ``plain``: the same client on the
    non-streamed answer to the same request (for a streamed row); ``reference``: the same client on
    the reference server's answer, given only where this answer failed a check the reference passed."""
    effects: list[str] = []
    details: list[str] = []
    if got.error:
        effects.append(RAISES)
        details.append(got.error)
    wire = list(row["tool_calls"]) if isinstance(row["tool_calls"], (list, tuple)) else []
    mine = _signature(got.tool_calls)
    if len(got.tool_calls) < len(wire):
        effects.append(LOSES_TOOL_CALLS)
        details.append(f"got {len(got.tool_calls)} tool call(s) of the {len(wire)} in the answer ({_calls_text(wire)})")
    elif mine != _signature(wire):
        effects.append(DIFFERENT_TOOL_CALL)
        details.append(f"got {_calls_text(got.tool_calls)} where the answer carries {_calls_text(wire)}")
    elif plain is not None and not plain.error and mine != _signature(plain.tool_calls):
        effects.append(LOSES_TOOL_CALLS if len(got.tool_calls) < len(plain.tool_calls) else DIFFERENT_TOOL_CALL)
        details.append(
            f"got {_calls_text(got.tool_calls)} streamed, {_calls_text(plain.tool_calls)} from the non-streamed answer"
        )
    reference_calls = reference.tool_calls if reference is not None and not reference.error else []
    if reference_calls and not got.tool_calls and LOSES_TOOL_CALLS not in effects:
        # e.g. the call came back as text where the reference's answer carried it
        effects.append(LOSES_TOOL_CALLS)
        details.append(f"got no tool call; from the reference's answer it got {_calls_text(reference_calls)}")
    content = row["content"] if isinstance(row["content"], str) else None
    if _sha(got.text) != (row["content_sha"] or _sha(content)):
        effects.append(LOSES_TEXT)
        details.append(f"got {len(got.text)} characters of text, the answer has {len(content or '')}")
    ordered = [effect for effect in EFFECTS if effect in effects]
    return Judgement(ordered, "; ".join(details))


def _key(row: Any) -> tuple[Any, ...]:
    return (row["scenario"], row["variant"], int(row["turn"]), int(row["repeat"]), int(row["session"]))


def _plain_variant(variant: str) -> str | None:
    """The non-streamed mode of a streamed variant ("stream,x" -> "no-stream,x")."""
    parts = variant.split(",")
    if "stream" not in parts:
        return None
    return ",".join("no-stream" if part == "stream" else part for part in parts)


def mode_label(variant: str) -> str:
    """A scenario mode as the verdict names it: ``stream,auto`` for ``stream,tool_choice=auto``."""
    return variant.replace("tool_choice=", "") or "default"


class Weighing:
    """Client results joined with the rows: judgements per (answer, client), per-client verdicts."""

    def __init__(self, frame: pd.DataFrame, replay: ClientReplay, reference: str) -> None:
        self.replay, self.reference = replay, reference
        live = frame[frame["request_kind"] != "warmup"] if not frame.empty else frame
        self.rows: dict[str, Any] = {}
        self.by_key: dict[tuple[str, tuple[Any, ...]], list[Any]] = {}
        if "answer" in live:
            for _, row in live[live["answer"].notna()].iterrows():
                self.rows[row["answer"]] = row
                self.by_key.setdefault((row["server"], _key(row)), []).append(row)

    def result(self, row: Any, client: str) -> ClientResult | None:
        return self.replay.results.get((row["answer"], client))

    def judgement(self, row: Any, client: str, regression: bool) -> Judgement | None:
        """``client`` on ``row``; ``regression``: the row failed a check its reference answer passed."""
        got = self.result(row, client)
        if got is None:
            return None
        plain = None
        if row["stream"]:
            variant = _plain_variant(row["variant"])
            if variant is not None:
                key = (row["scenario"], variant, *_key(row)[2:])
                partners = self.by_key.get((row["server"], key)) or []
                plain = self.result(partners[0], client) if partners else None
        reference = None
        if regression and row["server"] != self.reference:
            ref_rows = self.by_key.get((self.reference, _key(row))) or []
            reference = self.result(ref_rows[0], client) if ref_rows else None
        return judge(row, got, plain, reference)

    def reference_rows(self, row: Any) -> list[Any]:
        return self.by_key.get((self.reference, _key(row))) or []


@dataclass
class Judged:
    """One answer of a server read by one client, next to the reference's answer to the same request."""

    row: Any
    checks: list[str]  # the checks it fails where the reference passes
    judgement: Judgement
    broke: bool  # the client breaks on it and not on the reference's answer
    culprits: list[str] = field(default_factory=list)  # the checks the break is put down to


def judged_answers(
    weighing: Weighing, server: str, client: str, new_checks: dict[tuple[str, str, int], set[str]]
) -> list[Judged]:
    """Every answer of ``server`` that ``client`` read, with a replayed reference answer. A break is
    put down to the answer's checks that the client never tolerates elsewhere in the run (a role
    repeated on an answer that also lost its call did not break anything); where it tolerates each
    of them elsewhere, to all of them together."""
    judged: list[Judged] = []
    for (owner, key), rows in weighing.by_key.items():
        ref_rows = weighing.by_key.get((weighing.reference, key)) or [] if owner == server else []
        theirs = weighing.judgement(ref_rows[0], client, regression=False) if ref_rows else None
        if theirs is None:
            continue
        for row in rows:
            checks = sorted(new_checks.get(key[:3], set()) & set(row_failures(row)))
            mine = weighing.judgement(row, client, regression=bool(checks))
            if mine is not None:
                judged.append(Judged(row, checks, mine, mine.breaking and not theirs.breaking))
    tolerated = {check for item in judged if not item.broke for check in item.checks}
    for item in judged:
        if item.broke:
            item.culprits = [c for c in item.checks if c not in tolerated] or list(item.checks)
    return judged


def client_verdicts(
    weighing: Weighing, server: str, new_checks: dict[tuple[str, str, int], set[str]]
) -> list[ClientVerdict]:
    """Each client's verdict on ``server`` against the reference. ``new_checks``: the checks each
    (scenario, variant, turn) fails on ``server`` and not on the reference (the behaviour verdict)."""
    verdicts = []
    for status in weighing.replay.statuses:
        client = status.name
        verdict = ClientVerdict(client, server, weighing.reference, skipped=status.skipped)
        verdicts.append(verdict)
        if status.skipped:
            continue
        groups: dict[tuple[str, str, str], ClientBreak] = {}
        requests: dict[tuple[str, str], int] = {}
        judged = judged_answers(weighing, server, client, new_checks)
        for item in judged:
            row, mine = item.row, item.judgement
            mode = (row["scenario"], row["variant"])
            requests[mode] = requests.get(mode, 0) + 1
            if item.broke:
                effect = mine.effects[0]
                group = groups.setdefault((effect, *mode), ClientBreak(effect, *mode, 0, 0, example=mine.detail))
                group.breaking += 1
                group.checks = sorted({*group.checks, *item.culprits})
                group.answers.append((row["answer"], int(row["turn"]), mine.detail))
        verdict.compared = len(judged)
        for group in groups.values():
            group.requests = requests[(group.scenario, group.variant)]
        verdict.breaks = sorted(groups.values(), key=lambda g: (EFFECTS.index(g.effect), -g.breaking))
        culprits = {check for item in judged for check in item.culprits}
        tolerated = {check: None for item in judged if not item.broke for check in item.checks}
        verdict.tolerated = [check for check in tolerated if check not in culprits]
    return verdicts


def break_text(group: ClientBreak) -> str:
    where = f"{group.scenario} [{mode_label(group.variant)}]"
    checks = f" ({', '.join(f'`{c}`' for c in group.checks)})" if group.checks else " (no check failed)"
    return f"{group.effect} on {where}: {group.breaking} of {group.requests} requests{checks}"


def verdict_text(verdict: ClientVerdict, max_groups: int = 3) -> str:
    """One line: ``openai-python: breaks on 12 of 56 answers — loses tool calls on ...``."""
    if verdict.skipped:
        return f"{verdict.client}: not replayed — {verdict.skipped}"
    if not verdict.compared:
        return f"{verdict.client}: not determined — no answer of {verdict.server} had a replayed reference answer"
    if not verdict.breaks:
        tolerated = ", ".join(f"`{c}`" for c in verdict.tolerated)
        return (
            f"{verdict.client}: drop-in — it reads all {verdict.compared} answers as it reads {verdict.reference}'s"
            + (f" (tolerates {tolerated})" if tolerated else "")
        )
    shown = "; ".join(break_text(group) for group in verdict.breaks[:max_groups])
    more = len(verdict.breaks) - max_groups
    return f"{verdict.client}: **breaks** on {verdict.breaking} of {verdict.compared} answers — {shown}" + (
        f"; and {more} more" if more > 0 else ""
    )
