"""Generated scenarios: turns built from another scenario's material, deterministically from a seed.

A scenario with a ``generate:`` block (format in ``harness.scenario.definition``) has no turns of its
own. ``materialize`` builds them on the model's own tokenizer:

- the material scenario (``agent-session`` by default) is cut into episodes, each starting at a user
  turn and running through the tool results that answer it (read a file, run the tests, edit, ask);
- each episode is cut: user messages and tool calls as written, each tool result cut to a window of
  the material's result text at a seeded offset, each text reply cut short;
- episodes are drawn with ``random.Random(seed)`` among those that fit the token budget left, so
  that the history grows by about ``growth_tokens`` tokens a turn on average: short episodes (a
  question) build room up that a long one (an edit, whose tool call carries both versions of the
  code) spends;
- the system prompt is cut to about ``system_tokens`` tokens where that is set.

Two kinds:

- ``long-session``: one conversation of ``turns`` turns (``--turns N``), to watch latency, memory and
  the disk cache over a long session;
- ``interleaved``: ``sessions`` conversations of ``turns`` turns each (each its own seed and a
  ``[session K]`` first line, so they share no prefix), played two turns at a time in turn: each
  conversation is resumed after all the others, then continued at once. With more conversations than
  the server's prompt-cache capacity (``max_capacity``; raised to capacity + 1 when it is not), a
  server that evicts least-recently-used caches has lost each resumed conversation's cache, while
  the continued turn shows what a cache hit costs on the same server.

The same scenario file, seed, sizes and tokenizer always give the same turns.
"""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any

from harness.scenario.context_size import CHARS_PER_TOKEN, fit_text
from harness.scenario.definition import Generate, Reply, Scenario, Turn

if TYPE_CHECKING:
    from harness.models.tokens import TokenCounter

# What the chat template adds around one message (role line, end marker) and around one tool
# result (a user turn with <tool_response> tags), in tokens: measured on the built-in models'
# template; on another model's template the growth per turn is about, not exactly, the target.
MESSAGE_OVERHEAD_TOKENS = 6
TOOL_RESULT_OVERHEAD_TOKENS = 31
# Each tool result is cut to a window of about this many tokens, each text reply to about this many.
RESULT_TOKENS = 24
REPLY_TOKENS = 16
# The history may run ahead of its target by this many turns' growth before only shorter episodes
# fit again: without it, an episode costing several times the target per turn would never fit.
AHEAD_TURNS = 8
# Turns of one conversation played at once in an interleaved scenario: the first is resumed after
# the other conversations, the second continues at once (a cache hit where the server kept it).
VISIT_TURNS = 2


def count_tokens(counter: TokenCounter, text: str) -> int:
    if counter.available:
        return counter.count(text) or 0
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def episodes(material: Scenario) -> list[list[Turn]]:
    """The material's turns cut at each user turn: a user message and the tool results answering it.
    Side turns and recorded requests are left out (they are not part of the conversation)."""
    found: list[list[Turn]] = []
    for turn in material.turns:
        if turn.side or turn.request is not None:
            continue
        if turn.user is not None or not found:
            found.append([])
        found[-1].append(turn)
    # An episode must start with the user: one opening on tool results has nothing to answer.
    return [episode for episode in found if episode[0].user is not None]


def _calls_tokens(counter: TokenCounter, reply: Reply | None) -> int:
    """What a reply's tool calls add to the history (0 for a text reply)."""
    if reply is None or not reply.tool_calls:
        return 0
    text = "".join(
        "<tool_call>\n" + json.dumps({"name": call.name, "arguments": call.arguments}) + "\n</tool_call>\n"
        for call in reply.tool_calls
    )
    return count_tokens(counter, text) + MESSAGE_OVERHEAD_TOKENS


def cut_text(text: str, tokens: int, counter: TokenCounter) -> str:
    """``text`` cut at a word boundary to at most ``tokens`` tokens (at least its first word)."""
    if count_tokens(counter, text) <= tokens:
        return text
    cut = fit_text(text, tokens, counter)
    words = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return (words or text.split(" ", 1)[0]).rstrip(" ,;:") + " ..."


def cut_window(text: str, offset: int, tokens: int, counter: TokenCounter) -> str:
    """Lines of ``text`` from line ``offset`` on (wrapping around to the first line, each line at most
    once) while they fit in ``tokens``; at least one line."""
    lines = text.splitlines() or [text]
    out: list[str] = []
    used = 0
    for step in range(len(lines)):
        line = lines[(offset + step) % len(lines)]
        cost = count_tokens(counter, line + "\n")
        if out and used + cost > tokens:
            break
        out.append(line)
        used += cost
    return "\n".join(out)


class _Builder:
    """Builds one conversation's turns from the material's episodes, keeping the running token count."""

    def __init__(self, material: list[list[Turn]], spec: Generate, seed: int, counter: TokenCounter) -> None:
        self.material = material
        self.spec = spec
        self.counter = counter
        self.added = 0  # tokens the generated turns have added to the history so far
        # What each episode adds once cut (its tool-result windows differ a little by offset).
        probe = random.Random(0)
        self.costs = [sum(self._cut(turn, 0, probe)[1] for turn in episode) for episode in material]
        self.rng = random.Random(seed)

    def turns(self, count: int, conversation: int = 0) -> list[Turn]:
        out: list[Turn] = []
        while len(out) < count:
            # Drawn among the episodes that fit the room left: short ones (a question) build room up,
            # a long one (an edit, whose tool call carries both versions of the code) spends it.
            # When none fits, among the cheapest per turn.
            growth = self.spec.growth_tokens
            fitting = [
                i
                for i, episode in enumerate(self.material)
                if self.costs[i] <= growth * (len(out) + len(episode) + AHEAD_TURNS) - self.added
            ]
            if not fitting:
                per_turn = [cost / len(episode) for cost, episode in zip(self.costs, self.material, strict=True)]
                fitting = [i for i, value in enumerate(per_turn) if value == min(per_turn)]
            for turn in self.material[self.rng.choice(fitting)]:
                if len(out) == count:
                    break
                cut, cost = self._cut(turn, conversation, self.rng)
                out.append(cut)
                self.added += cost
        return out

    def _cut(self, turn: Turn, conversation: int, rng: random.Random) -> tuple[Turn, int]:
        """The material's turn with its text reply cut short and each tool result cut to a window at
        a seeded offset (user messages and tool calls stay as written), and the tokens it adds."""
        cost = _calls_tokens(self.counter, turn.reply)
        update: dict[str, Any] = {"conversation": conversation, "expect": None}
        if turn.user is not None:
            cost += count_tokens(self.counter, turn.user) + MESSAGE_OVERHEAD_TOKENS
        if turn.reply is not None and turn.reply.content is not None:
            text = cut_text(turn.reply.content, REPLY_TOKENS, self.counter)
            update["reply"] = Reply(content=text)
            cost += count_tokens(self.counter, text) + MESSAGE_OVERHEAD_TOKENS
        if turn.tool_results:
            windows = []
            for text in turn.tool_results:
                offset = rng.randrange(max(1, len(text.splitlines())))
                windows.append(cut_window(text, offset, RESULT_TOKENS, self.counter))
                cost += count_tokens(self.counter, windows[-1]) + TOOL_RESULT_OVERHEAD_TOKENS
            update["tool_results"] = windows
        return turn.model_copy(update=update), cost


def materialize(
    scenario: Scenario, counter: TokenCounter, turns: int | None = None, capacity: int | None = None
) -> Scenario:
    """The scenario with its turns built (a copy); a scenario without ``generate`` is returned as it is.

    ``turns`` overrides the block's (``--turns N``: a long session's turns, or each interleaved
    conversation's); ``capacity`` is the prompt-cache capacity the servers run with (``--max-capacity``),
    which an interleaved scenario exceeds by at least one conversation."""
    spec = scenario.generate
    if spec is None or scenario.turns:
        return scenario
    material = scenario.material_scenario
    if material is None:
        raise ValueError(f"{scenario.name}: generated scenario has no material loaded")
    cut = episodes(material)
    if not cut:
        raise ValueError(f"{scenario.name}: its material {material.name} has no turn that starts with a user message")
    count = turns or spec.turns
    system_text = scenario.system_text
    if spec.system_tokens and system_text:
        system_text = fit_text(system_text, spec.system_tokens, counter)
    update: dict[str, Any] = {"system_text": system_text}
    if spec.kind == "long-session":
        update["turns"] = _Builder(cut, spec, spec.seed, counter).turns(count)
    else:
        sessions = spec.sessions
        limit = capacity or scenario.max_capacity
        if limit is not None and sessions <= limit:
            sessions = limit + 1
        per_session = [_Builder(cut, spec, spec.seed + k, counter).turns(count, k) for k in range(sessions)]
        interleaved: list[Turn] = []
        for start in range(0, count, VISIT_TURNS):
            for conversation in per_session:
                interleaved.extend(conversation[start : start + VISIT_TURNS])
        update.update(turns=interleaved, session_header=True)
        if capacity is not None:
            update["max_capacity"] = capacity
    return scenario.model_copy(update=update)


def describe(scenario: Scenario) -> dict[str, Any] | None:
    """What run.json records of a generated scenario: its kind, sizes and seed as it was played."""
    spec = scenario.generate
    if spec is None:
        return None
    conversations = {turn.conversation for turn in scenario.turns}
    return {
        "kind": spec.kind,
        "material": scenario.material_scenario.name if scenario.material_scenario else spec.material,
        "seed": spec.seed,
        "turns": len(scenario.turns),
        "conversations": len(conversations),
        "growth_tokens": spec.growth_tokens,
        "system_tokens": spec.system_tokens,
        "max_capacity": scenario.max_capacity,
        "time_budget_s": scenario.time_budget_s,
    }


def materialize_groups(groups: list, turns: int | None, capacity: int | None) -> None:
    """Builds the turns of every generated scenario of a run, each on its model group's tokenizer."""
    from harness.models.tokens import TokenCounter

    for group in groups:
        if any(scenario.generate is not None for scenario in group.scenarios):
            counter = TokenCounter(group.path)
            group.scenarios = [materialize(scenario, counter, turns, capacity) for scenario in group.scenarios]
