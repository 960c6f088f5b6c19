"""Finding claims in a markdown file, whatever their form, and reading what each one is about.

Three forms are read, outside fenced code blocks:

- **pipe tables** with at least three columns (Metric | old server | new server | Improvement): each
  row that names a metric is a claim; the columns are matched to the run's servers later
  (``claims.map_columns``);
- **bullet points** ("- Follow-up requests: ~50 s -> ~0.55 s (90x faster)");
- **sentences** in paragraphs and headings ("first request ~50 s -> ~3 s", "90x faster follow-ups").

A bullet or sentence is claim-like when it carries a figure (a factor, a time, a size), an arrow
between two values, or says a cache works or is broken. It becomes a claim when it has a comparison
in it: a factor, two values (``->``, ``→``, ``from X to Y``, ``X vs Y``), a working/broken
statement, or a metric with one absolute value; any other claim-like line is skipped, with the
reason.

What a claim is about (``classify``) is read from its whole wording, on three questions: which
requests (the first one, follow-ups, the first after a restart), which time (time to first token, or
the total time of the request), and for a cache: its files on disk or its reuse. A wording that
answers a question two ways, or leaves a time claim's requests unsaid, is *uncertain*: its verdict
is "not comparable" with that reason, never a figure of another metric.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TABLE, BULLET, SENTENCE = "table", "bullet", "sentence"

SEPARATOR = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
RATIO = re.compile(
    r"(\d+(?:\.\d+)?)\s*[x×]\s*(faster|quicker|slower|higher|lower|more|less|better|worse)?(?![a-z])", re.I
)
DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|milliseconds?|msec|s|secs?|seconds?|min|mins|minutes?)\b", re.I)
SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(KB|MB|GB|KiB|MiB|GiB|bytes|B)\b", re.I)
RATE = re.compile(r"(\d+(?:\.\d+)?)\s*(tok(?:ens)?/s|tokens per second|t/s)\b", re.I)
NEGATIVE = re.compile(
    r"❌|✗|\b(broken|none|no|not|never|nothing|missing|fails?|failed|disabled|doesn't|didn't)\b", re.I
)
POSITIVE = re.compile(r"✅|✓|✔|\b(working|works|work|yes|enabled|reused?|reuses|ok|hits?)\b", re.I)
ARROW = re.compile(r"\s*(?:->|→|=>|⇒|⟶)\s*")
FROM_TO = re.compile(r"\bfrom\s+(.+?)\s+to\s+(.+)$", re.I)
VERSUS = re.compile(r"\s+(?:vs\.?|versus)\s+", re.I)
BULLET_MARK = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(*_`])")

# Which requests
_TTFT = re.compile(r"time[- ]to[- ]first[- ]token|\bttft\b|first[- ]token|first[- ]byte|\btime to first\b", re.I)
_FIRST = re.compile(
    r"\bfirst\s+(?:and|or|&|/)\s+|\bfirst\s+(?:request|call|response|turn|prompt|message|query|completion)s?\b|\binitial\s+(?:request|call|"
    r"response|turn|prompt|message|query)s?\b|\bcold[- ](?:request|prompt|cache|start)s?\b",
    re.I,
)
_FOLLOW = re.compile(
    r"follow[- ]?ups?\b|\bsubsequent\b|\bwarm\b|\blater\s+(?:requests|turns|calls)\b|\bnext\s+(?:requests|turns)\b"
    r"|\brepeat(?:ed)?\s+(?:requests|turns|calls|prompts)\b|\bcached\s+(?:requests|prompts|turns)\b",
    re.I,
)
_RESTART = re.compile(r"\brestart", re.I)
# Which figure
_TOTAL = re.compile(r"\btotal\b|end[- ]to[- ]end|\bfull (?:request|response)\b", re.I)
_DECODE = re.compile(
    r"decod|generation (?:speed|rate)|output (?:speed|rate)|throughput|tok(?:ens)?/s|tokens per second", re.I
)
_PROMPT = re.compile(r"prompt[- ]processing|prefill|prompt (?:speed|rate|throughput)", re.I)
_FILES = re.compile(r"cache[- ]files?|files?\b|on[- ]disk|disk[- ]cache|\bdisk\b|safetensors|cache size|persist", re.I)
_CACHE = re.compile(r"\bcache|\bcaching|\bkv\b", re.I)

LATENCY_KINDS = {
    ("first", "total"): "speedup_first",
    ("follow-up", "total"): "speedup_follow_up",
    ("restart", "total"): "speedup_restart",
    ("first", "ttft"): "speedup_first_ttft",
    ("follow-up", "ttft"): "speedup_follow_up_ttft",
}


@dataclass
class Claim:
    source: str
    line: int  # 1-based
    form: str  # TABLE, BULLET or SENTENCE
    text: str  # the line (or sentence) as written
    subject: str  # the words that name the metric (a table's first cell, the text before ":")
    old: str = ""  # what the old server had
    new: str = ""  # what the new server has
    factor: str = ""  # the improvement cell or the text holding a factor
    header: list[str] = field(default_factory=list)  # table claims: the header...
    cells: list[str] = field(default_factory=list)  # ...and the row, matched to servers later


@dataclass
class Skipped:
    line: int
    text: str
    why: str


@dataclass
class ClaimSet:
    source: str
    claims: list[Claim]
    skipped: list[Skipped]


@dataclass
class Topic:
    """What a claim is about: ``kind`` is a ratio of harness.analysis.summary.RATIOS, "cache_files",
    "cache_reuse", None (something the harness does not measure) or "uncertain" (see ``why``)."""

    kind: str | None
    why: str = ""


def plain(text: str) -> str:
    return re.sub(r"(\*\*|__|`)", "", text).strip()


def cells(line: str) -> list[str]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


_SPEED_RATIO = re.compile(r"\d\s*[x×]\s*(?:faster|slower|quicker|speed-?up)", re.I)


def speaks_of_time(text: str) -> bool:
    """Whether ``text`` gives a time, or a factor of speed ("15x faster")."""
    return bool(DURATION.search(text) or _SPEED_RATIO.search(text))


def has_figure(text: str) -> bool:
    return bool(RATIO.search(text) or DURATION.search(text) or SIZE.search(text) or RATE.search(text))


def sentiment(text: str) -> bool | None:
    """True for text claiming it works (✅ Working), False for ❌ Broken / None created, else None."""
    text = plain(text)
    if NEGATIVE.search(text):
        return False
    if POSITIVE.search(text):
        return True
    return None


def cache_window(text: str, window: int = 40) -> str | None:
    """The words around the first mention of a cache that say it works or is broken; None when no
    mention does. A long sentence about something else is not taken for a cache claim."""
    text = plain(text)
    for match in _CACHE.finditer(text):
        words = text[max(0, match.start() - window) : match.end() + window]
        if sentiment(words) is not None:
            return words
    return None


def cache_sentiment(text: str) -> bool | None:
    """Whether ``text`` says a cache works (True) or is broken (False), read near the cache's name."""
    words = cache_window(text)
    return None if words is None else sentiment(words)


def classify(wording: str, has_time_figure: bool) -> Topic:
    """What a claim worded ``wording`` is about (see the module docstring); ``has_time_figure``: the
    claim gives a time or a factor of speed (``speaks_of_time``)."""
    text = plain(wording)
    ttft = bool(_TTFT.search(text))
    rest = _TTFT.sub(" ", text)
    phases = [
        name
        for name, pattern in (("first", _FIRST), ("follow-up", _FOLLOW), ("restart", _RESTART))
        if pattern.search(rest)
    ]
    cache = bool(_CACHE.search(text))
    if cache and _FILES.search(text) and not has_time_figure:
        return Topic("cache_files")
    if cache and not has_time_figure and not phases:
        return Topic("cache_reuse")
    if _PROMPT.search(text):
        return Topic("speedup_prompt")
    if _DECODE.search(text):
        return Topic("speedup_decode")
    if not phases:
        if ttft or has_time_figure:
            return Topic(
                "uncertain",
                "the wording does not say which requests it is about (the first request, follow-ups or "
                "the first after a restart)",
            )
        return Topic(None)
    if len(phases) > 1:
        return Topic("uncertain", f"the wording names more than one kind of request ({' and '.join(phases)})")
    if ttft and _TOTAL.search(rest):
        return Topic("uncertain", "the wording names both the time to first token and the total time")
    kind = LATENCY_KINDS.get((phases[0], "ttft" if ttft else "total"))
    if kind is None:
        return Topic("uncertain", f"the harness has no time to first token for the {phases[0]} request")
    why = "" if ttft or _TOTAL.search(rest) else "read as the total time of a request (no time to first token named)"
    return Topic(kind, why)


# --- finding claims ------------------------------------------------------------------------------


def _sides(text: str) -> tuple[str, str] | None:
    """(old, new) of "X -> Y", "from X to Y" or "X vs Y", else None."""
    parts = ARROW.split(text, maxsplit=1)
    if len(parts) == 2:
        return parts[0], parts[1]
    match = FROM_TO.search(text)
    if match:
        return match.group(1), match.group(2)
    parts = VERSUS.split(text, maxsplit=1)
    if len(parts) == 2:
        return parts[0], parts[1]
    return None


def _subject_and_body(text: str) -> tuple[str, str]:
    """ "First request: ~50 s -> ~3 s" -> ("First request", "~50 s -> ~3 s"); no colon: (text, text)."""
    match = re.match(r"^([^:]{2,80}?):\s+(.+)$", text)
    if match and not re.search(r"\d$", match.group(1)):
        return match.group(1).strip(), match.group(2).strip()
    return text, text


def _free_claim(source: str, number: int, form: str, text: str) -> Claim | Skipped | None:
    """A bullet or sentence as a claim, a skipped line, or None when it is not claim-like."""
    clean = plain(text)
    figure = has_figure(clean)
    cache_statement = cache_sentiment(clean) is not None
    # An arrow is a before/after in itself; "from X to Y" and "X vs Y" only with a figure on a side.
    arrow = len(ARROW.split(clean, maxsplit=1)) == 2
    sides = _sides(clean)
    if not (figure or cache_statement or arrow or (sides and (has_figure(sides[0]) or has_figure(sides[1])))):
        return None
    subject, body = _subject_and_body(clean)
    sides = _sides(body)
    factor = body if RATIO.search(body) else ""
    if sides:
        old, new = sides
        if subject == body:  # no colon: the words before the new value name the metric
            subject = body[: body.rfind(new)].strip() or old
    else:
        old, new = "", body
    topic = classify(subject if subject != body else clean, speaks_of_time(clean))
    if not sides and topic.kind in ("cache_reuse", "cache_files"):
        new = cache_window(body) or body  # what is said of the cache, not of the rest of the sentence
    comparison = bool(factor or sides or (topic.kind == "cache_reuse" and sentiment(new) is not None))
    absolute = topic.kind not in (None, "uncertain") and figure
    if not comparison and not absolute and topic.kind != "cache_files":
        return Skipped(number, text.strip(), "a figure with no comparison in it: no factor, no before/after, "
                       "no metric it belongs to")  # fmt: skip
    return Claim(source, number, form, text.strip(), subject, old=old, new=new, factor=factor)


def _tables(lines: list[str]) -> tuple[list[tuple[int, list[str], list[tuple[int, list[str]]]]], set[int]]:
    """Pipe tables outside code fences: (header line, header, [(line, row)]), and the lines they use."""
    tables: list[tuple[int, list[str], list[tuple[int, list[str]]]]] = []
    used: set[int] = set()
    fence, i = None, 0
    while i < len(lines):
        stripped = lines[i].strip()
        marker = stripped[:3]
        if marker in ("```", "~~~"):
            fence = None if fence == marker else (fence or marker)
        elif (
            fence is None
            and "|" in stripped
            and i + 1 < len(lines)
            and SEPARATOR.match(lines[i + 1].strip())
            and not lines[i].startswith("    ")
        ):
            header, rows, j = cells(stripped), [], i + 2
            while j < len(lines) and lines[j].strip().startswith("|"):
                rows.append((j + 1, cells(lines[j])))
                j += 1
            tables.append((i + 1, header, rows))
            used.update(range(i, j))
            i = j
            continue
        i += 1
    return tables, used


def _blocks(lines: list[str], used: set[int], skipped: list[Skipped]) -> list[tuple[list[tuple[int, int]], str, str]]:
    """([(line number, offset in the text)], BULLET or SENTENCE, text) of each bullet item and each
    paragraph or heading, their wrapped lines joined with spaces; code (fenced or indented) is left
    out, a figure in it noted as skipped. HTML comments are not text."""
    blocks: list[tuple[list[tuple[int, int]], str, str]] = []
    fence: str | None = None
    current: list[str] = []
    numbers: list[int] = []
    form = SENTENCE

    def close() -> None:
        nonlocal current, numbers
        if current:
            starts, at = [], 0
            for number, piece in zip(numbers, current, strict=True):
                starts.append((number, at))
                at += len(piece) + 1
            blocks.append((starts, form, " ".join(current)))
        current, numbers = [], []

    for index, raw in enumerate(lines):
        number = index + 1
        line = re.sub(r"<!--.*?-->", "", raw)
        stripped = line.strip()
        if stripped[:3] in ("```", "~~~"):
            close()
            fence = None if fence == stripped[:3] else (fence or stripped[:3])
            continue
        if index in used or not stripped:
            close()
            continue
        if fence is not None or (line.startswith("    ") and not current):
            if has_figure(stripped):
                skipped.append(Skipped(number, stripped, "inside a code block"))
            continue
        if BULLET_MARK.match(line):
            close()
            form, current, numbers = BULLET, [BULLET_MARK.sub("", line).strip()], [number]
        elif stripped.startswith("#"):
            close()
            form, current, numbers = SENTENCE, [stripped], [number]
            close()
        elif current and (form == SENTENCE or line.startswith("  ")):
            current.append(stripped)  # a wrapped line of the paragraph or bullet
            numbers.append(number)
        else:
            close()
            form, current, numbers = SENTENCE, [stripped], [number]
    close()
    return blocks


def parse_claims(text: str, source: str = "README") -> ClaimSet:
    """Every claim of a markdown text, and the claim-like lines skipped (see the module docstring)."""
    lines = text.splitlines()
    tables, used = _tables(lines)
    claims: list[Claim] = []
    skipped: list[Skipped] = []
    for _line, header, rows in tables:
        if len(header) < 3:
            for number, row in rows:
                if any(has_figure(c) for c in row):
                    skipped.append(Skipped(number, " | ".join(row), "a table of fewer than three columns: no "
                                           "old server, new server and claim to read"))  # fmt: skip
            continue
        for number, row in rows:
            row = row + [""] * (len(header) - len(row))
            if not plain(row[0]):
                skipped.append(Skipped(number, " | ".join(row), "a table row that names no metric"))
                continue
            claims.append(Claim(source, number, TABLE, " | ".join(row), plain(row[0]), header=header, cells=row))
    for starts, form, block in _blocks(lines, used, skipped):
        text = re.sub(r"^#+\s*|^>\s*", "", block)
        offset = len(block) - len(text)
        for piece in SENTENCE_END.split(text):
            at = block.index(piece, offset)
            offset = at + len(piece)
            number = max(line for line, start in starts if start <= at)  # the line the sentence starts on
            found = _free_claim(source, number, form, piece)
            if isinstance(found, Claim):
                claims.append(found)
            elif isinstance(found, Skipped):
                skipped.append(found)
    claims.sort(key=lambda c: c.line)
    skipped.sort(key=lambda s: s.line)
    return ClaimSet(source, claims, skipped)
