"""Finding claims in a markdown file, whatever their form, and reading what each one is about.

The markdown is read through markdown-it-py (``harness.verdicts.markdown_text``): three forms are
read, outside code blocks and HTML comments, each with the headings and list labels it sits under:

- **pipe tables** with at least three columns (Metric | old server | new server | Improvement): each
  row that names a metric is a claim; the columns are matched to the run's servers later
  (``claims.map_columns``);
- **bullet points** ("- Follow-up requests: ~50 s -> ~0.55 s (90x faster)");
- **sentences** in paragraphs and headings ("first request ~50 s -> ~3 s", "90x faster follow-ups").

A bullet or sentence is claim-like when it carries a figure (a factor, a time, a size), an arrow
between two values, says a cache works or is broken, or names a capability (tool calling and its
dialects, streaming, structured output, multi-slot cache management, surviving a restart). It
becomes a claim when it has a comparison in it: a factor, two values (``->``, ``→``, ``from X to
Y``; ``X vs Y``, ``X instead of Y``, whose direction ``harness.verdicts.attribution`` reads), a
working/broken statement, a capability, or a metric with one absolute value; any other claim-like
line is skipped, with the reason.

What a claim is about (``classify``) is read from its whole wording, on three questions: which
requests (the first one, follow-ups, the first after a restart), which time (time to first token, or
the total time of the request), and for a cache: its files on disk or its reuse. A wording that
answers a question two ways, or leaves a time claim's requests unsaid, is *uncertain*: its verdict
is "not comparable" with that reason, never a figure of another metric.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.verdicts.markdown_text import TABLE, Context, read_markdown

RATIO = re.compile(
    r"(\d+(?:\.\d+)?)\s*[x×]\s*(faster|quicker|slower|higher|lower|more|less|better|worse)?(?![a-z])", re.I
)
DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|milliseconds?|msec|s|secs?|seconds?|min|mins|minutes?)\b", re.I)
SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(KB|MB|GB|KiB|MiB|GiB|bytes|B)\b", re.I)
RATE = re.compile(r"(\d+(?:\.\d+)?)\s*(tok(?:ens)?/s|tokens per second|t/s)\b", re.I)
NEGATIVE = re.compile(
    r"❌|✗|\b(broken|none|no|not|never|nothing|missing|fails?|failed|disabled|doesn't|didn't)\b", re.I
)
POSITIVE = re.compile(r"✅|✓|✔|\b(working|works|worked|work|yes|enabled|reused?|reuses|ok|hits?)\b", re.I)
ARROW = re.compile(r"\s*(?:->|→|=>|⇒|⟶)\s*")
FROM_TO = re.compile(r"\bfrom\s+(.+?)\s+to\s+(.+)$", re.I)
# Two sides whose direction is read from the words around them (harness.verdicts.attribution).
VERSUS = re.compile(
    r"\s+(?:vs\.?|versus|instead of|rather than|compared (?:to|with)|in place of|replacing|replaces)\s+", re.I
)
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

# Capabilities, judged from the run's behaviour rows (harness.verdicts.capabilities); the first that
# matches wins, so "tool calls streamed" is a tool-calling claim.
CAPABILITIES: dict[str, re.Pattern[str]] = {
    "tool_calling": re.compile(
        r"tool[- ]?call(?:s|ing)?\b|function[- ]call(?:s|ing)?\b|\btool use\b|\btools? support|"
        r"\bhermes\b|\bqwen[- ]?(?:3[- ]?)?(?:coder[- ]?)?xml\b|\bharmony\b",
        re.I,
    ),
    "structured_output": re.compile(
        r"structured (?:output|generation)|\bjson mode\b|response_format|json[- ]schema|"
        r"constrained (?:decoding|generation)",
        re.I,
    ),
    "multi_slot_cache": re.compile(
        r"multi[- ]?slot|\b(?:several|multiple|many) (?:prompt |kv )?caches\b|(?:prompt |kv )?cache slots?\b|"
        r"(?:automatic|auto|smart) (?:prompt |kv )?cache(?: management)?|cache management|\bLRU\b|\bevict",
        re.I,
    ),
    "restart_survival": re.compile(
        r"\brestarts?\b|\breboots?\b|\bsurviv|persist(?:s|ent|ed)? across|across (?:server )?restarts", re.I
    ),
    "streaming": re.compile(
        r"\bstreaming\b|\bSSE\b|server-sent events|\bstream(?:ed|s)? (?:responses|output|answers|tokens|completions)",
        re.I,
    ),
}
CAPABILITY_NAMES = {
    "tool_calling": "tool calling",
    "structured_output": "structured output",
    "multi_slot_cache": "multi-slot cache management",
    "restart_survival": "a cache that survives a restart",
    "streaming": "streaming",
}
# The tool-call dialects of harness.models.dialects, as a write-up names them.
DIALECT_WORDS = {
    "hermes": re.compile(r"\bhermes\b", re.I),
    "qwen-xml": re.compile(r"\bqwen[- ]?(?:3[- ]?)?(?:coder[- ]?)?xml\b|\bxml tool", re.I),
    "harmony": re.compile(r"\bharmony\b|\bgpt-oss\b", re.I),
}


def capability(text: str) -> str | None:
    """The capability ``text`` speaks of (a key of CAPABILITIES), or None."""
    clean = plain(text)
    return next((name for name, pattern in CAPABILITIES.items() if pattern.search(clean)), None)


def dialects(text: str) -> list[str]:
    """The tool-call dialects ``text`` names ("Hermes and Qwen XML" -> ["hermes", "qwen-xml"])."""
    clean = plain(text)
    return [name for name, pattern in DIALECT_WORDS.items() if pattern.search(clean)]


def capability_claimed(text: str, kind: str, window: int = 40) -> bool | None:
    """Whether ``text`` says the capability ``kind`` works (True: named or said to work, as in
    "native tool calling") or not (False: "no streaming", "tool calling broken"), read near its
    name; None when ``text`` does not name it and says neither."""
    clean = plain(text)
    match = CAPABILITIES[kind].search(clean)
    if match is None:
        return sentiment(clean)
    words = clean[max(0, match.start() - window) : match.end() + window]
    return sentiment(words) is not False


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
    # "X vs Y", "X instead of Y": (X, Y, the connecting words); which side is whose is attributed later
    pair: tuple[str, str, str] | None = None
    context: Context = field(default_factory=Context)  # the headings and list labels it sits under
    label: str = ""  # a leading "Old:" / "MLX-Textgen:" taken off the text, said of the whole claim


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
    text: str = ""  # the markdown, read again once the run's server names are known


@dataclass
class Topic:
    """What a claim is about: ``kind`` is a ratio of harness.analysis.summary.RATIOS, "cache_files",
    "cache_reuse", None (something the harness does not measure) or "uncertain" (see ``why``)."""

    kind: str | None
    why: str = ""


def plain(text: str) -> str:
    return re.sub(r"(\*\*|__|`)", "", text).strip()


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
    found = None if has_time_figure else capability(text)
    if found:
        return Topic(found)
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
    """(old, new) of "X -> Y" or "from X to Y", else None."""
    parts = ARROW.split(text, maxsplit=1)
    if len(parts) == 2:
        return parts[0], parts[1]
    match = FROM_TO.search(text)
    if match:
        return match.group(1), match.group(2)
    return None


_REPLACED = re.compile(r"\breplac(?:ed|ing)\s+(.+?)\s+(?:with|by)\s+(.+)$", re.I)


def _pair(text: str) -> tuple[str, str, str] | None:
    """(X, Y, connecting words) of "X vs Y", "X instead of Y", ..., else None; "replaced Y with X"
    gives (X, Y, "replaced y with x")."""
    replaced = _REPLACED.search(text)
    if replaced:
        return replaced.group(2).strip(), replaced.group(1).strip(), "replaced y with x"
    match = VERSUS.search(text)
    if match is None:
        return None
    return text[: match.start()].strip(), text[match.end() :].strip(), match.group(0).strip().lower()


def _subject_and_body(text: str) -> tuple[str, str]:
    """ "First request: ~50 s -> ~3 s" -> ("First request", "~50 s -> ~3 s"); no colon: (text, text)."""
    match = re.match(r"^([^:]{2,80}?):\s+(.+)$", text)
    if match and not re.search(r"\d$", match.group(1)):
        return match.group(1).strip(), match.group(2).strip()
    return text, text


def _free_claim(
    source: str, number: int, form: str, text: str, context: Context, is_label: Callable[[str], bool]
) -> Claim | Skipped | None:
    """A bullet or sentence as a claim, a skipped line, or None when it is not claim-like.
    ``is_label`` tells a leading "Old:" (a label of the claim) from a metric's name."""
    clean = plain(text)
    label = ""
    lead, rest = _subject_and_body(clean)
    if rest != clean and is_label(lead):
        label, clean = lead, rest
    figure = has_figure(clean)
    cache_statement = cache_sentiment(clean) is not None
    # An arrow is a before/after in itself; "from X to Y" and "X vs Y" only with a figure on a side.
    arrow = len(ARROW.split(clean, maxsplit=1)) == 2
    sides = _sides(clean)
    pair = _pair(clean)
    two = sides or (pair[:2] if pair else None)
    named = capability(clean) if not speaks_of_time(clean) else None
    if not (figure or cache_statement or arrow or named or (two and (has_figure(two[0]) or has_figure(two[1])))):
        return None
    subject, body = _subject_and_body(clean)
    sides = _sides(body)
    pair = None if sides else _pair(body)
    factor = body if RATIO.search(body) else ""
    if sides:
        old, new = sides
        if subject == body:  # no colon: the words before the new value name the metric
            subject = body[: body.rfind(new)].strip() or old
    else:
        old, new = "", body
        if pair and subject == body:
            subject = pair[0]
    topic = classify(subject if subject != body else clean, speaks_of_time(clean))
    if topic.kind is None and subject != body:  # "It works: the cache is reused"
        topic = classify(clean, speaks_of_time(clean))
    if not sides and topic.kind in ("cache_reuse", "cache_files"):
        # What is said of the cache, not of the rest of the sentence
        new = cache_window(body) or cache_window(clean) or body
    comparison = bool(factor or sides or pair or (topic.kind == "cache_reuse" and sentiment(new) is not None))
    absolute = topic.kind not in (None, "uncertain") and figure
    if not comparison and not absolute and topic.kind != "cache_files" and topic.kind not in CAPABILITIES:
        return Skipped(number, text.strip(), "a figure with no comparison in it: no factor, no before/after, "
                       "no metric it belongs to")  # fmt: skip
    return Claim(
        source, number, form, text.strip(), subject, old=old, new=new, factor=factor, pair=pair, context=context,
        label=label,
    )  # fmt: skip


_CLAUSE = re.compile(r";\s+|,\s+(?:and|but|while)\s+")


def _clauses(sentence: str) -> list[str]:
    """A sentence's clauses ("A; B", "A, and B"): each is a claim of its own when more than one is."""
    parts = [p.strip() for p in _CLAUSE.split(sentence) if p.strip()]
    return parts if len(parts) > 1 else []


def parse_claims(text: str, source: str = "README", is_label: Callable[[str], bool] | None = None) -> ClaimSet:
    """Every claim of a markdown text, and the claim-like lines skipped (see the module docstring).
    ``is_label``: whether the words before a colon name a server rather than a metric ("Old:")."""
    label_test = is_label or (lambda _words: False)
    reading = read_markdown(text, has_figure)
    claims: list[Claim] = []
    skipped = [Skipped(number, line, f"inside {where}") for number, line, where in reading.code]
    for passage in reading.passages:
        if passage.form == TABLE:
            header, row = passage.header, passage.cells
            if len(header) < 3:
                if any(has_figure(c) for c in row):
                    skipped.append(Skipped(passage.line, passage.text, "a table of fewer than three columns: no "
                                           "old server, new server and claim to read"))  # fmt: skip
                continue
            row = row + [""] * (len(header) - len(row))
            if not plain(row[0]):
                skipped.append(Skipped(passage.line, " | ".join(row), "a table row that names no metric"))
                continue
            subject = plain(row[0])
            claims.append(Claim(source, passage.line, TABLE, " | ".join(row), subject, header=header, cells=row))
            claims[-1].context = passage.context
            continue
        offset = 0
        for piece in SENTENCE_END.split(passage.text):
            at = passage.text.index(piece, offset)
            offset = at + len(piece)
            number = passage.line_at(at)
            found = _free_claim(source, number, passage.form, piece, passage.context, label_test)
            clauses = [
                _free_claim(source, number, passage.form, c, passage.context, label_test) for c in _clauses(piece)
            ]
            if sum(isinstance(c, Claim) for c in clauses) > 1:  # "90x faster, and it has tool calling"
                claims += [c for c in clauses if isinstance(c, Claim)]
                skipped += [c for c in clauses if isinstance(c, Skipped)]
            elif isinstance(found, Claim):
                claims.append(found)
            elif isinstance(found, Skipped):
                skipped.append(found)
    claims.sort(key=lambda c: c.line)
    skipped.sort(key=lambda s: s.line)
    return ClaimSet(source, claims, skipped, text)
