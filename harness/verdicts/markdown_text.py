"""A markdown file as the passages claims are read from, through markdown-it-py's tokens.

Each passage keeps where it sits, because who a claim is about is often said there and not in the
claim: the headings above it (ATX or setext), the list items it is nested under, the lead-in
paragraph of its list ("Before:"), and for a table row its header. Code (fenced or indented) is no
passage: its lines with a figure are returned apart so that they can be listed as skipped. HTML
comments, on one line or several, are not text; other HTML blocks are kept apart like code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from markdown_it import MarkdownIt
from markdown_it.token import Token

TABLE, BULLET, SENTENCE = "table", "bullet", "sentence"


@dataclass
class Context:
    """Where a passage sits: the headings above it outermost first (the title, a level-1 heading,
    left out), and the labels of the lists it is nested in (each parent item's text, or the
    paragraph just before the list), outermost first."""

    headings: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


@dataclass
class Passage:
    form: str  # TABLE, BULLET or SENTENCE (a paragraph or a heading)
    text: str  # the passage's text; table rows: the row's cells joined with " | "
    lines: list[tuple[int, int]]  # (1-based line, offset in ``text`` where that line starts)
    context: Context
    header: list[str] = field(default_factory=list)  # table rows: the header cells...
    cells: list[str] = field(default_factory=list)  # ...and the row's, as written

    @property
    def line(self) -> int:
        return self.lines[0][0]

    def line_at(self, offset: int) -> int:
        """The line the character at ``offset`` of ``text`` is on."""
        return max(number for number, start in self.lines if start <= offset)


@dataclass
class Reading:
    passages: list[Passage]
    code: list[tuple[int, str, str]]  # (line, text, where: "a code block" / "an HTML block")


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def _render_inline(token: Token, first_line: int) -> tuple[str, list[tuple[int, int]]]:
    """The text of an inline token (``**`` and code backticks kept as written, other emphasis marks
    and link targets dropped, inline HTML such as comments left out) and where each of its source
    lines starts in that text."""
    parts: list[str] = []
    lines = [(first_line, 0)]
    line = first_line
    for child in token.children or []:
        kind = child.type
        if kind in ("text", "image"):
            parts.append(child.content)
        elif kind == "code_inline":
            parts.append(f"`{child.content}`")
        elif kind in ("strong_open", "strong_close"):
            parts.append("**")
        elif kind in ("softbreak", "hardbreak"):
            parts.append(" ")
            line += 1
            lines.append((line, len("".join(parts))))
    return "".join(parts), lines


def _lead_in(tokens: list[Token], index: int) -> str | None:
    """The paragraph right before the list opening at ``index`` ("Before:"), when it is short and
    ends with a colon: a label for the list's items."""
    if index < 3 or tokens[index - 1].type != "paragraph_close" or tokens[index - 2].type != "inline":
        return None
    text, _lines = _render_inline(tokens[index - 2], 0)
    text = text.strip()
    return text if text.endswith(":") and len(text) <= 120 else None


def read_markdown(text: str, has_figure: Callable[[str], bool]) -> Reading:
    """Every passage of a markdown text in document order, and the lines of code and HTML blocks
    for which ``has_figure`` holds (see the module docstring)."""
    tokens = _parser().parse(text)
    passages: list[Passage] = []
    code: list[tuple[int, str, str]] = []
    headings: list[tuple[int, str]] = []  # (level, text) of the headings above
    # The open lists and list items, outermost first: a list's label is its lead-in paragraph, an
    # item's is its first paragraph (a label for the items nested in it).
    stack: list[list[str | None]] = []
    header: list[str] = []
    row: list[str] = []
    row_line, in_head = 0, False

    def titled(above: list[tuple[int, str]]) -> list[str]:
        # A level-1 heading is the document's title: it frames everything below, both servers too.
        return [h for level, h in above if level > 1]

    def context(own_item: bool) -> Context:
        frames = stack[:-1] if own_item else stack
        return Context(titled(headings), [f[1] for f in frames if f[1]])

    def add_code(start: int, body: str, where: str) -> None:
        for k, raw in enumerate(body.splitlines()):
            if raw.strip() and has_figure(raw):
                code.append((start + k, raw.strip(), where))

    for i, token in enumerate(tokens):
        kind = token.type
        first = (token.map or [0])[0] + 1
        if kind == "heading_open":
            inline = tokens[i + 1]
            words, lines = _render_inline(inline, first)
            above = [(lv, h) for lv, h in headings if lv < int(token.tag[1])]
            passages.append(Passage(SENTENCE, words, lines, Context(titled(above), [])))
            headings = [*above, (int(token.tag[1]), words)]
        elif kind in ("bullet_list_open", "ordered_list_open"):
            stack.append(["list", _lead_in(tokens, i)])
        elif kind == "list_item_open":
            stack.append(["item", None])
        elif kind in ("bullet_list_close", "ordered_list_close", "list_item_close"):
            stack.pop()
        elif kind == "inline" and tokens[i - 1].type == "paragraph_open":
            words, lines = _render_inline(token, first)
            if not words.strip():
                continue
            in_item = bool(stack) and stack[-1][0] == "item"
            passages.append(Passage(BULLET if in_item else SENTENCE, words, lines, context(in_item)))
            if in_item and stack[-1][1] is None:
                stack[-1][1] = words
        elif kind == "thead_open":
            in_head = True
        elif kind == "thead_close":
            in_head = False
        elif kind == "tr_open":
            row, row_line = [], first
        elif kind == "inline" and tokens[i - 1].type in ("th_open", "td_open"):
            row.append(token.content.strip())
        elif kind == "tr_close" and in_head:
            header = row
        elif kind == "tr_close":
            passages.append(Passage(TABLE, " | ".join(row), [(row_line, 0)], context(False), list(header), row))
        elif kind == "fence":
            add_code(first + 1, token.content, "a code block")
        elif kind == "code_block":
            add_code(first, token.content, "a code block")
        elif kind == "html_block" and not token.content.lstrip().startswith("<!--"):
            add_code(first, token.content, "an HTML block")
    return Reading(passages, code)
