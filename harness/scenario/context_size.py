"""--context-tokens: replay scenarios with their system prompt grown or cut to a given size.

Each scenario that has a system prompt becomes one copy per size, named ``<name>@<N>``, whose system
prompt is about N tokens on the model's own tokenizer: the scenario's text repeated as often as
needed, then cut. The first line names the size, so two sizes never share a long prefix: without
it the 2,000-token prompt would start with the whole 1,000-token one, and a server that reuses
prefixes across conversations would make the larger size's "first" request a cached one.

Tools and the conversation come on top of N, unchanged. Scenarios without a system prompt are
replayed once, as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from harness.scenario.definition import Scenario

if TYPE_CHECKING:
    from harness.models.tokens import TokenCounter

SEPARATOR = "\n\n"
CHARS_PER_TOKEN = 4  # only when the model folder has no tokenizer.json to count with


def parse_sizes(value: str | int | Iterable[int | str] | None) -> list[int] | None:
    """'1000,2000,4K' -> [1000, 2000, 4000]; None or empty -> None. Sizes are kept in the order given,
    without duplicates; each must be a positive whole number of tokens."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else ([value] if isinstance(value, int) else list(value))
    sizes: list[int] = []
    for item in items:
        text = str(item).strip().lower().replace("_", "")
        if not text:
            continue
        match = re.fullmatch(r"(\d+)(k?)", text)
        if not match or int(match.group(1)) <= 0:
            raise ValueError(f"context size {item!r} is not a positive number of tokens (e.g. 1000 or 4K)")
        size = int(match.group(1)) * (1000 if match.group(2) else 1)
        if size not in sizes:
            sizes.append(size)
    return sizes or None


def split_name(name: str) -> tuple[str, int | None]:
    """'agent-session@2000' -> ('agent-session', 2000); a name without a size -> (name, None)."""
    base, sep, size = name.rpartition("@")
    if sep and size.isdigit():
        return base, int(size)
    return name, None


def _count(counter: TokenCounter, text: str) -> int:
    if counter.available:
        return counter.count(text) or 0
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def fit_text(text: str, tokens: int, counter: TokenCounter) -> str:
    """``text`` repeated (blank line between copies) until it has at least ``tokens`` tokens, then cut
    to the longest prefix that has at most that many."""
    if tokens <= 0 or not text:
        return ""
    grown = text
    while _count(counter, grown) < tokens:
        grown += SEPARATOR + text
    if _count(counter, grown) == tokens:
        return grown
    # The token count of a prefix grows with its length: binary search for the cut.
    low, high = 0, len(grown)
    while low < high:
        mid = (low + high + 1) // 2
        if _count(counter, grown[:mid]) <= tokens:
            low = mid
        else:
            high = mid - 1
    return grown[:low]


def size_header(tokens: int) -> str:
    return f"[context size: about {tokens} tokens]\n"


def scale_scenario(scenario: Scenario, tokens: int, counter: TokenCounter) -> Scenario:
    """A copy of ``scenario`` whose system prompt has about ``tokens`` tokens, named ``name@tokens``."""
    header = size_header(tokens)
    body = fit_text(scenario.system_text, max(1, tokens - _count(counter, header)), counter)
    return scenario.model_copy(
        update={
            "name": f"{scenario.name}@{tokens}",
            "system_text": header + body,
            "context_tokens": tokens,
        }
    )


def expand(scenarios: list[Scenario], sizes: list[int] | None, counter: TokenCounter) -> list[Scenario]:
    """Every scenario with a system prompt at every size (sizes in the order given); the others once."""
    if not sizes:
        return list(scenarios)
    out: list[Scenario] = []
    for scenario in scenarios:
        if scenario.system_text:
            out.extend(scale_scenario(scenario, size, counter) for size in sizes)
        else:
            out.append(scenario)
    return out


def scale_groups(groups: list, sizes: list[int] | None) -> None:
    """Applies ``expand`` to each model group of a run, counting on that group's model tokenizer."""
    if not sizes:
        return
    from harness.models.tokens import TokenCounter

    for group in groups:
        group.scenarios = expand(group.scenarios, sizes, TokenCounter(group.path))
