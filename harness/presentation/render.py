"""Report blocks rendered to markdown and to self-contained HTML: one document, two renderings that
never disagree. A block is ("h1"|"h2"|"h3"|"p", text), ("ul", items; an item starting with "  - "
belongs under the one before it), ("table", DataFrame) or ("img", path of a png, embedded)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

import pandas as pd

from harness.core.formatting import is_nan


def md_table(df: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
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
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    text = html.escape(str(text))
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


CSS = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
th{background:#f2f2f2}img{max-width:100%;display:block;margin:1rem 0}code{background:#f4f4f4;padding:0 .2rem}"""


def render_html(blocks: list[tuple], title: str) -> str:
    """One self-contained page: images are embedded as base64 data URIs."""
    body = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3", "p"):
            body.append(f"<{kind}>{_inline_html(payload)}</{kind}>")
        elif kind == "ul":
            # "  - " items belong under the item before them, as in the markdown.
            items: list[str] = []
            for i in payload:
                if i.startswith("  - ") and items:
                    items[-1] += f"<ul><li>{_inline_html(i[4:])}</li></ul>"
                else:
                    items.append(_inline_html(i))
            body.append("<ul>" + "".join(f"<li>{i}</li>" for i in items).replace("</ul><ul>", "") + "</ul>")
        elif kind == "table":
            if payload.empty:
                body.append("<p><em>none</em></p>")
                continue
            head = "".join(f"<th>{_inline_html(c)}</th>" for c in payload.columns)
            rows = "".join(
                "<tr>" + "".join(f"<td>{_inline_html('' if is_nan(v) else v)}</td>" for v in row) + "</tr>"
                for row in payload.itertuples(index=False)
            )
            body.append(f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>')
        elif kind == "img":
            data = base64.b64encode(Path(payload).read_bytes()).decode("ascii")
            body.append(f'<img alt="{html.escape(payload.stem)}" src="data:image/png;base64,{data}">')
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
