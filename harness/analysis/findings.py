"""The behaviour verdict grouped by check: one finding per check a server fails where the reference
passes, with how many scenario turns, where, one example of evidence, whether the catalogue calls
the check cosmetic, and, where the run was replayed into real clients, which clients it breaks and
which tolerate it. Findings that break a client come first, cosmetic ones last.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.analysis.clients import ClientVerdict, Weighing, client_verdicts, judged_answers, mode_label
from harness.analysis.summary import Summary, Verdict
from harness.checks import catalogue

MAX_MODES_NAMED = 3  # scenario modes named in a finding's "where"; the rest are counted


@dataclass
class ClientCounts:
    """One client on the answers failing one check: how many it read, broke on (the break put down
    to this check) and read as it reads the reference's answer."""

    answers: int = 0
    broken: int = 0
    tolerated: int = 0


@dataclass
class Finding:
    check: str
    turns: list[tuple[str, str, int]]  # (scenario, variant, turn) where it fails and the reference passes
    example: str
    cosmetic: bool
    clients: dict[str, ClientCounts] = field(default_factory=dict)

    @property
    def breaks(self) -> list[str]:
        return [client for client, counts in self.clients.items() if counts.broken]

    @property
    def tolerated_by(self) -> list[str]:
        return [client for client, counts in self.clients.items() if counts.tolerated and not counts.broken]


@dataclass
class ServerFindings:
    verdict: Verdict
    findings: list[Finding]
    clients: list[ClientVerdict]  # empty when the run was not replayed


def new_checks(verdict: Verdict) -> dict[tuple[str, str, int], set[str]]:
    found: dict[tuple[str, str, int], set[str]] = {}
    for regression in verdict.regressions:
        found.setdefault((regression.scenario, regression.variant, regression.turn), set()).add(regression.check)
    return found


def _rank(finding: Finding) -> tuple[int, int, str]:
    if finding.breaks:
        tier = 0
    elif finding.cosmetic:
        tier = 3
    elif finding.tolerated_by:
        tier = 2
    else:
        tier = 1  # not judged by any client, not cosmetic: as serious as the catalogue says
    return (tier, -len(finding.turns), finding.check)


def server_findings(summary: Summary) -> dict[str, ServerFindings]:
    """Each candidate server's findings against the reference, worst first."""
    weighing = Weighing(summary.frame, summary.clients, summary.reference) if summary.clients else None
    out: dict[str, ServerFindings] = {}
    for server, verdict in summary.verdicts.items():
        checks = new_checks(verdict)
        grouped: dict[str, Finding] = {}
        for regression in verdict.regressions:
            doc = catalogue.entry(regression.check)
            finding = grouped.setdefault(
                regression.check,
                Finding(regression.check, [], regression.evidence, bool(doc and doc.cosmetic)),
            )
            finding.turns.append((regression.scenario, regression.variant, regression.turn))
            finding.example = finding.example or regression.evidence
        if weighing is not None:
            _weigh(weighing, server, checks, grouped)
        findings = sorted(grouped.values(), key=_rank)
        verdicts = client_verdicts(weighing, server, checks) if weighing is not None else []
        out[server] = ServerFindings(verdict, findings, verdicts)
    return out


def _weigh(weighing: Weighing, server: str, checks: dict[tuple[str, str, int], set[str]], grouped: dict) -> None:
    """Fills each finding's per-client counts: answers failing the check that the client breaks on
    (the break put down to it) or reads as it reads the reference's answer."""
    for client in weighing.replay.ran:
        for item in judged_answers(weighing, server, client, checks):
            for check in item.checks:
                counts = grouped[check].clients.setdefault(client, ClientCounts())
                counts.answers += 1
                if check in item.culprits:
                    counts.broken += 1
                elif not item.broke:
                    counts.tolerated += 1


def _ranges(turns: list[int]) -> str:
    turns = sorted(set(turns))
    parts: list[str] = []
    start = prev = turns[0]
    for turn in [*turns[1:], None]:
        if turn is not None and turn == prev + 1:
            prev = turn
            continue
        parts.append(f"{start}" if start == prev else f"{start}–{prev}")
        if turn is not None:
            start = prev = turn
    return ",".join(parts)


def where_text(turns: list[tuple[str, str, int]]) -> str:
    """``agent-session [stream] turns 0–9; short-chat [no-stream] turn 1; and 2 more modes``."""
    modes: dict[tuple[str, str], list[int]] = {}
    for scenario, variant, turn in turns:
        modes.setdefault((scenario, variant), []).append(turn)
    named = []
    for (scenario, variant), numbers in list(modes.items())[:MAX_MODES_NAMED]:
        mode = mode_label(variant)
        label = "turn" if len(set(numbers)) == 1 else "turns"
        named.append(f"{scenario} [{mode}] {label} {_ranges(numbers)}")
    more = len(modes) - MAX_MODES_NAMED
    return "; ".join(named) + (f"; and {more} more mode(s)" if more > 0 else "")


def _answers(n: int) -> str:
    return f"{n} answer" + ("" if n == 1 else "s")


def _clients_text(finding: Finding, skipped: list[str]) -> str:
    parts = []
    if finding.breaks:
        counts = finding.clients
        parts.append(
            "**breaks** " + ", ".join(f"{c} ({counts[c].broken} of {counts[c].answers})" for c in finding.breaks)
        )
    if finding.tolerated_by:
        parts.append(
            "tolerated by " + ", ".join(f"{c} ({_answers(finding.clients[c].tolerated)})" for c in finding.tolerated_by)
        )
    if not parts:
        parts.append("not replayed into a client" if not skipped else "no replayed client read these answers")
    return "; ".join(parts)


def merged(findings: list[Finding]) -> list[list[Finding]]:
    """Findings on exactly the same turns with the same client outcome, together (a cut stream
    fails four checks at once: one line says so), in the order of the first of each."""
    groups: dict[tuple, list[Finding]] = {}
    for finding in findings:
        counts = tuple(sorted((client, c.broken, c.tolerated) for client, c in finding.clients.items()))
        key = (tuple(finding.turns), counts, finding.cosmetic)
        groups.setdefault(key, []).append(finding)
    return list(groups.values())


def finding_text(
    finding: Finding, skipped: list[str] | None = None, example_chars: int = 140, also: list[Finding] | None = None
) -> str:
    """One line per check (or per checks failing together, ``also``): name, count, where, what the
    clients did, one example."""
    kind = " (cosmetic)" if finding.cosmetic else ""
    n = len(finding.turns)
    names = ", ".join(f"`{f.check}`" for f in [finding, *(also or [])])
    line = f"{names}{kind} ×{n} — {where_text(finding.turns)} — {_clients_text(finding, skipped or [])}"
    if finding.example:
        example = " ".join(finding.example.split())
        line += " — e.g. " + (example if len(example) <= example_chars else example[: example_chars - 1] + "…")
    return line


def headline_client_text(clients: list[ClientVerdict]) -> str:
    """``breaks openai-python, ai-sdk; drop-in for anthropic-python`` (replayed clients only)."""
    broken = [v.client for v in clients if v.drop_in is False]
    fine = [v.client for v in clients if v.drop_in]
    parts = []
    if broken:
        parts.append("breaks " + ", ".join(broken))
    if fine:
        parts.append("drop-in for " + ", ".join(fine))
    return "; ".join(parts)


def skipped_clients(summary: Summary) -> list[str]:
    return [status.name for status in (summary.clients.statuses if summary.clients else []) if status.skipped]
