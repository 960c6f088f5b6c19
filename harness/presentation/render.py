"""Report blocks rendered to markdown (summary.md) and to one self-contained HTML page (report.html).

A block is ``(kind, payload)``: ``("h1"|"h2"|"h3"|"p", text)``, ``("ul", items)`` (an item starting
with ``"  - "`` nests under the one before), ``("table", frame)``, ``("img", path)``,
``("details", [FoldOut, ...])`` (rows a reader opens: ``<details>`` in HTML, one list line each in
markdown) and ``("check", CheckDoc)`` (a catalogue entry, with its anchor). Text is inline markdown:
``**bold**``, ``\\`code\\``` and ``[text](#anchor)`` links to anchors of the same document, read by
markdown-it-py (CommonMark).

The page needs nothing but a browser: images are data URIs, styles inline, no script.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from markdown_it import MarkdownIt

from harness.checks.catalogue import CheckDoc, entry_markdown, example_lines
from harness.core.formatting import is_nan


@dataclass
class FoldOut:
    """One row a reader can open: a summary line, then labelled parts ("text" or "pre")."""

    summary: str
    # (label, kind, content): "text" inline markdown, "list" one inline item per line, "pre" verbatim
    parts: list[tuple[str, str, str]] = field(default_factory=list)
    anchor: str | None = None
    md_tail: str = ""  # what the markdown line adds after the summary (e.g. the capture folder)


def md_table(df: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        return ("" if v is None or is_nan(v) else str(v)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def render_markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + payload)
        elif kind == "p":
            out.append(payload)
        elif kind == "ul":
            out.append("\n".join(i if i.startswith("  - ") else f"- {i}" for i in payload))
        elif kind == "table":
            out.append(md_table(payload) if not payload.empty else "_none_")
        elif kind == "img":
            out.append(f"![{payload.stem}]({payload.name})")
        elif kind == "details":
            out.append(
                "\n".join(f"- {fold.summary}" + (f" — {fold.md_tail}" if fold.md_tail else "") for fold in payload)
            )
        elif kind == "check":
            out.append(entry_markdown(payload, level=3))
    return "\n\n".join(out) + "\n"


class _ReportInline(MarkdownIt):
    """Only what report text is written in: code spans, emphasis, links. No raw HTML (server text is
    shown, never run), no backslash escapes or entities (evidence keeps its backslashes and `&amp;`
    as sent), and a link only to an anchor of the same page."""

    def __init__(self) -> None:
        super().__init__("zero", {"html": False})
        self.enable(["backticks", "emphasis", "link"])

    def validateLink(self, url: str) -> bool:
        return url.startswith("#")


_INLINE = _ReportInline()


def inline_html(text: object) -> str:
    """Inline markdown as HTML, read by a CommonMark parser (a code span keeps its ``**`` as text)."""
    return _INLINE.renderInline(str(text))


CSS = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
th{background:#f2f2f2}img{max-width:100%;display:block;margin:1rem 0}code{background:#f4f4f4;padding:0 .2rem}
details{border:1px solid #ddd;border-radius:4px;margin:.3rem 0;padding:.2rem .6rem}
details[open]{background:#fcfcfc}summary{cursor:pointer}details h4{margin:.6rem 0 .2rem}
pre{background:#f4f4f4;padding:.5rem;overflow:auto;max-height:32rem;white-space:pre-wrap;word-break:break-all}
section.check{border-left:3px solid #bbb;padding-left:.8rem;margin:1rem 0}"""


def _details_html(fold: FoldOut) -> str:
    anchor = f' id="{html.escape(fold.anchor)}"' if fold.anchor else ""
    parts = []
    for number, (label, kind, content) in enumerate(fold.parts, 1):
        # Each part has its own id: a link to it opens the row (browsers expand a closed <details>
        # that holds the target of the address's #fragment).
        part_id = f' id="{html.escape(fold.anchor)}-{number}"' if fold.anchor else ""
        parts.append(f"<h4{part_id}>{inline_html(label)}</h4>")
        if kind == "pre":
            parts.append(f"<pre>{html.escape(content, quote=False)}</pre>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{inline_html(item)}</li>" for item in content.splitlines()) + "</ul>")
        else:
            parts.append(f"<p>{inline_html(content)}</p>")
    return f"<details{anchor}><summary>{inline_html(fold.summary)}</summary>{''.join(parts)}</details>"


def _check_html(doc: CheckDoc) -> str:
    kind = " (note)" if doc.note else ""
    out = [f'<section class="check" id="{html.escape(doc.name)}"><h3><code>{html.escape(doc.name)}</code>{kind}</h3>']
    out += [f"<p>{inline_html(doc.meaning)}</p>", f"<p>{inline_html('**Why a client cares.** ' + doc.why)}</p>"]
    lines = example_lines(doc)
    # The example's markdown: a line of text, then code blocks fenced by ```.
    text: list[str] = []
    code: list[str] = []
    in_code = False
    for line in lines:
        if line == "```":
            if in_code:
                out.append(f"<pre>{html.escape(chr(10).join(code), quote=False)}</pre>")
                code = []
            elif text:
                out.append(f"<p>{inline_html(' '.join(text))}</p>")
                text = []
            in_code = not in_code
        elif in_code:
            code.append(line)
        elif line:
            text.append(line)
    if text:
        out.append(f"<p>{inline_html(' '.join(text))}</p>")
    return "".join(out) + "</section>"


def render_html(blocks: list[tuple], title: str) -> str:
    """One self-contained page: images are embedded as base64 data URIs."""
    body = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3", "p"):
            body.append(f"<{kind}>{inline_html(payload)}</{kind}>")
        elif kind == "ul":
            # "  - " items belong under the item before them, as in the markdown.
            items: list[str] = []
            for i in payload:
                if i.startswith("  - ") and items:
                    items[-1] += f"<ul><li>{inline_html(i[4:])}</li></ul>"
                else:
                    items.append(inline_html(i))
            body.append("<ul>" + "".join(f"<li>{i}</li>" for i in items).replace("</ul><ul>", "") + "</ul>")
        elif kind == "table":
            if payload.empty:
                body.append("<p><em>none</em></p>")
                continue
            head = "".join(f"<th>{inline_html(c)}</th>" for c in payload.columns)
            rows = "".join(
                "<tr>" + "".join(f"<td>{inline_html('' if is_nan(v) else v)}</td>" for v in row) + "</tr>"
                for row in payload.itertuples(index=False)
            )
            body.append(f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>')
        elif kind == "img":
            data = base64.b64encode(Path(payload).read_bytes()).decode("ascii")
            body.append(f'<img alt="{html.escape(payload.stem)}" src="data:image/png;base64,{data}">')
        elif kind == "details":
            body.append("\n".join(_details_html(fold) for fold in payload))
        elif kind == "check":
            body.append(_check_html(payload))
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
