"""The headline comparison on a terminal, fitted to its width.

The markdown table (metrics as rows, one column per server and per ratio) is far wider than a
terminal or a CI log. Here servers are rows and figures are columns under short headers, with a
legend; the ratios against the reference are a second table with compact wording. Each table is
laid out when it is printed, for the width it gets: as many figure columns as fit go in one table,
and the rest continue in another that repeats the server names, so that no server name and no figure
is cut or wrapped at 80 columns, and a wider terminal gets fewer, wider tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from harness.analysis.summary import Summary
from harness.core.formatting import factor_words, is_nan, sample_counts
from harness.presentation.comparison import (
    FILES_ROW,
    NO_GENERATION_ROW,
    REUSE_ROW,
    comparison_frame,
    comparison_notes,
    figure_notes,
    figures,
    improvement_columns,
    legend_text,
)

# What each short header stands for, in the order the columns come.
HEADER_MEANINGS = {
    "First": "total time of the first request",
    "Follow-ups": "total time of a follow-up request",
    "After restart": "total time of the first request after a restart",
    "Prompt": "prompt tokens per second on the cold first request",
    "Tokens": "output tokens per answer",
    "Decode": "decode rate",
    NO_GENERATION_ROW[1]: "answers served without generation, of all requests (all scenarios)",
    REUSE_ROW[1]: "follow-ups that reused the prompt cache (and what told)",
    FILES_ROW[1]: "cache files written to disk",
}
BOLD = "**"
UNBOUNDED = 100_000  # columns: wider than any table, so that measuring one gives its unwrapped width


@dataclass
class Column:
    header: str
    cells: list[str]  # one per row; **text** is a significant improvement, shown bold


@dataclass
class Block:
    """One logical table: the key columns (server names) repeat in every part it is split into."""

    title: str
    keys: list[Column]
    columns: list[Column]


def _cell(text: str) -> Text:
    if text.startswith(BOLD) and text.endswith(BOLD) and len(text) > 2 * len(BOLD):
        return Text(text[len(BOLD) : -len(BOLD)], style="bold green")
    return Text(text)


def _table(keys: list[Column], columns: list[Column]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in keys:
        table.add_column(column.header, justify="left", no_wrap=True)
    for column in columns:
        table.add_column(column.header, justify="right")
    rows = len(keys[0].cells) if keys else 0
    for i in range(rows):
        table.add_row(*(_cell(column.cells[i]) for column in [*keys, *columns]))
    return table


def fitted_tables(block: Block, console: Console, options: ConsoleOptions) -> list[Table]:
    """The block's columns packed, in order, into as few tables as fit ``options.max_width`` unwrapped.
    A column too wide even alone keeps a table of its own (and wraps: nothing narrower exists)."""

    unbounded = options.update_width(UNBOUNDED)  # a measurement is capped at the width it is given

    def width(columns: list[Column]) -> int:
        return Measurement.get(console, unbounded, _table(block.keys, columns)).maximum

    parts: list[list[Column]] = []
    for column in block.columns:
        if parts and width([*parts[-1], column]) <= options.max_width:
            parts[-1].append(column)
        else:
            parts.append([column])
    return [_table(block.keys, part) for part in parts]


def short_ratio_text(ratio: dict[str, Any] | None, better: str = "faster", worse: str = "slower") -> str:
    """The ratio in a table cell's width: '**12.0x faster**', '2.0x faster (n=1 vs 1, no CI)',
    'n.s. (1.05x, CI 0.95–1.15)'; the legend says what 'no CI' and 'n.s.' mean."""
    if not ratio or is_nan(ratio.get("ratio")):
        return "–"
    r = float(ratio["ratio"])
    word = factor_words(r, better, worse)
    if is_nan(ratio.get("ci95_low")):
        counts = f"{sample_counts(ratio)}, " if sample_counts(ratio) else ""
        return f"{word} ({counts}no CI)"
    if not ratio.get("significant"):
        return f"n.s. ({r:.2f}x, CI {ratio['ci95_low']:.2f}–{ratio['ci95_high']:.2f})"
    return f"{BOLD}{word}{BOLD}" if r >= 1 else word


def measured_block(summary: Summary, run_meta: dict[str, Any], title: str) -> Block:
    """The markdown table's server columns, turned: one row per server, one column per figure."""
    frame = comparison_frame(summary, run_meta).set_index("Metric")
    # The short figures first and the long texts last, so that the short ones share a table.
    rows = [(figure.title, figure.header) for figure in figures(summary)] + [NO_GENERATION_ROW, REUSE_ROW, FILES_ROW]
    columns = [Column(header, [str(frame.at[title, server]) for server in summary.servers]) for title, header in rows]
    return Block(title, [Column("Server", list(summary.servers))], columns)


def ratio_block(summary: Summary) -> Block | None:
    """One row per (server, reference) pair, the like-for-like one first; one column per ratio."""
    pairs = [(server, reference) for _title, server, reference in improvement_columns(summary)]
    if not pairs:
        return None
    pairs.sort(key=lambda pair: (summary.servers.index(pair[0]), pair[1] != summary.like_for_like))
    columns = [
        Column(
            figure.header,
            [
                short_ratio_text(
                    summary.ratio(summary.headline, server, figure.ratio, reference), figure.better, figure.worse
                )
                for server, reference in pairs
            ],
        )
        for figure in figures(summary)
        if figure.ratio
    ]
    keys = [Column("Server", [server for server, _ in pairs])]
    references = list(dict.fromkeys(reference for _, reference in pairs))
    if len(references) > 1:  # as deployed and like-for-like: each row says which
        keys.append(Column("Against", [reference for _, reference in pairs]))
    against = "the reference" if len(references) > 1 else references[0]
    return Block(f"Ratios against {against} (medians; bold: significant at 95%)", keys, columns)


@dataclass
class ConsoleComparison:
    """A rich renderable: the fitted tables, then the legend and the notes as wrapped paragraphs."""

    blocks: list[Block]
    notes: list[str]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Any]:
        for block in self.blocks:
            # The title is a paragraph of its own: as a table's title it would wrap at the table's width.
            yield Text(block.title, style="bold")
            for table in fitted_tables(block, console, options):
                yield table
                yield Text("")
        for note in self.notes:
            yield Text(note, style="dim")


def console_table(summary: Summary, run_meta: dict[str, Any]) -> ConsoleComparison | Group:
    """The headline comparison for the CLI to print."""
    if not summary.servers:
        return Group(Text("No requests were recorded in this run."))
    model = (run_meta.get("model") or {}).get("name")
    title = f"{summary.headline or 'no data'}" + (f" — {model}" if model else "") + " (medians, n = samples)"
    blocks = [measured_block(summary, run_meta, title)]
    ratios = ratio_block(summary)
    if ratios:
        blocks.append(ratios)
    shown = [column.header for block in blocks for column in block.columns]
    legend = "; ".join(f"{header}: {what}" for header, what in HEADER_MEANINGS.items() if header in shown)
    notes = [legend + "."]
    if ratios:
        notes.append("Ratios: no CI: too few samples for a 95% interval; n.s.: no significant difference.")
    notes += [x for x in [legend_text(summary, run_meta), *figure_notes(summary)] if x]
    not_alike = comparison_notes(summary, run_meta)
    if not_alike:
        notes += ["Not like-for-like:", *(f"- {note}" for note in not_alike)]
    return ConsoleComparison(blocks, notes)
