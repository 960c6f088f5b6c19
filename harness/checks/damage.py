"""What a server did with a damaged cache: the outcome of the first request after the damage.

Acceptable: the server answers, from its cache or not (``answered``, ``cache-miss``), or refuses the
request with an error (``error``: an HTTP error status, the server still running; the evidence
quotes the body and the server's own log line, so a reader can judge whether it says what is wrong).
Findings: the server died (``crash``, during start-up or the request), never answered
(``hang``: not ready by its deadline, or the request cut off by the harness's timeouts), or answered
something else than the undamaged runs did (``wrong-answer``: under greedy decoding the answer must
match the run on an intact copy of the cache or the one on an emptied copy).
"""

from __future__ import annotations

import re

from harness.checks.conformance import ab_compare
from harness.core.rows import ResultRow

ACCEPTABLE = ("answered", "cache-miss", "error")
FINDINGS = ("crash", "hang", "wrong-answer")
# The references a damaged run's answer is compared with, in order.
REFERENCES = ("intact", "empty")
EVIDENCE_CHARS = 600
# A log line's level and time stamp ("[ERROR] 2026-01-02 03:04:05,678 - Server name - ", or
# "[(ERROR) 2026-01-02 03:04:05]: "), left out so that the same message logged twice is kept once.
LOG_PREFIX = r"^\[[^\]]*\]:?\s*(?:[\d\-: ,]+ - [^-]+ - )?"


def log_errors(log_text: str | None, lines: int = 3) -> list[str]:
    """The server's last error lines in ``log_text`` (exceptions, tracebacks' last lines, ERROR)."""
    found: dict[str, str] = {}  # message -> the line, once (some servers log each line twice)
    for line in (log_text or "").splitlines():
        if not re.search(r"(Error|Exception|Traceback|ERROR|error:|No space left|Read-only)", line):
            continue
        if line.lstrip().startswith("File "):
            continue
        message = re.sub(LOG_PREFIX, "", line.strip())
        found.setdefault(message, message)
    return list(found.values())[-lines:]


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EVIDENCE_CHARS else text[: EVIDENCE_CHARS - 3] + "..."


def classify_start_failure(message: str) -> tuple[str, str]:
    """The outcome of a server that did not start on the damaged copy (``ServerError`` text)."""
    outcome = "hang" if "did not become ready" in message else "crash"
    return outcome, _clip("the server did not start: " + message)


def classify(
    row: ResultRow, references: dict[str, ResultRow], log_text: str | None, alive: bool, fault: str | None = None
) -> tuple[str, str]:
    """(outcome, evidence) of the first request after the damage; see the module docstring.

    ``references``: the same request's rows on the intact and emptied copies (those present);
    ``log_text``: the server's log lines of the request; ``alive``: whether it still runs after it;
    ``fault``: the damage (a reference is compared with the other reference only)."""
    errors = log_errors(log_text)
    log_part = ("; server log: " + " | ".join(errors)) if errors else ""
    if row.stop_cause in ("stalled", "runaway") or (row.error and "Timeout" in row.error):
        cause = row.stop_cause or "timeout"
        return "hang", _clip(f"request cut off by the harness ({cause}): {row.error or ''}{log_part}")
    if not alive or (row.error and "exited with" in row.error):
        return "crash", _clip(f"{row.error or 'the server process ended'}{log_part}")
    if row.error or (row.http_status or 0) >= 400:
        status = (row.check_evidence or {}).get("http.status") or row.error or f"HTTP {row.http_status}"
        return "error", _clip(f"{status}{log_part}")
    reuse = {True: "cache reused", False: "no cache reused", None: "cache reuse undecided"}[row.cache_reused]
    if row.reuse_source:
        reuse += f" ({row.reuse_source})"
    compared = []
    for name in REFERENCES:
        reference = references.get(name)
        if reference is None or reference is row or name == fault or reference.error:
            continue
        verdict, detail = ab_compare(reference, row)
        if verdict != "different":
            return (
                "cache-miss" if row.cache_reused is False else "answered",
                _clip(f"HTTP {row.http_status}, {reuse}; same answer as on the {name} copy{log_part}"),
            )
        compared.append(f"{name}: {detail}")
    if compared:
        return "wrong-answer", _clip(f"HTTP {row.http_status}, {reuse}; differs from " + "; ".join(compared))
    what = f"the {fault} reference" if fault in REFERENCES else "no undamaged run to compare the answer with"
    outcome = "cache-miss" if row.cache_reused is False else "answered"
    return outcome, _clip(f"HTTP {row.http_status}, {reuse}; {what}{log_part}")
