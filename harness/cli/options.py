"""Command-line values shared by the `harness` subcommands and the pytest plugin."""

from __future__ import annotations


def comma_list(value: str | None) -> list[str] | None:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; None (option not given) or an empty value -> None."""
    return [item.strip() for item in value.split(",") if item.strip()] if value else None
