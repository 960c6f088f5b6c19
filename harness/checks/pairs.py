"""The check that needs two answers: the streamed and the non-streamed answer to the same greedy
request must make the same tool calls (names and arguments, ids aside).

A client that switches streaming on or off must not get different calls. Only the run sees both
exchanges of a pair, so ``harness.run.pairs`` pairs the rows as they come and calls this; the
failure goes on the row answered second, with both sides as evidence.

The same holds for a greedy request asked twice in one session (a turn's ``expect.same_answer_as``):
the second answer must be the first one, whatever the server's cache did in between.
"""

from __future__ import annotations

from typing import Any

from harness.checks import toolcalls

STREAM_ARGUMENTS_DIFFER = "tool.stream_arguments_differ"


def is_greedy(body: dict[str, Any]) -> bool:
    """Whether the request asks for greedy decoding (temperature 0), so two answers must agree."""
    temperature = body.get("temperature")
    return isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature == 0


def _listing(calls: list[dict[str, Any]]) -> str:
    return "[" + ", ".join(toolcalls.signature(call, canonical=False) for call in calls) + "]" if calls else "no call"


def stream_pair_difference(streamed: list[dict[str, Any]], plain: list[dict[str, Any]]) -> str | None:
    """Evidence when the two answers' calls differ in name, order or arguments (ids and JSON key
    order aside); None when they agree, or when neither answer made a call."""
    if not streamed and not plain:
        return None
    if [toolcalls.signature(c) for c in streamed] == [toolcalls.signature(c) for c in plain]:
        return None
    return f"streamed: {_listing(streamed)}; not streamed: {_listing(plain)}"


SAME_ANSWER = "expect.same_answer"


def repeat_difference(
    earlier_content: str | None,
    earlier_calls: list[dict[str, Any]],
    content: str | None,
    calls: list[dict[str, Any]],
) -> str | None:
    """Evidence when a greedy request asked again (``expect.same_answer_as``) got another answer
    than the first time: other text, or other calls (ids aside); None when both agree."""
    same_calls = [toolcalls.signature(c) for c in earlier_calls] == [toolcalls.signature(c) for c in calls]
    if (earlier_content or "") == (content or "") and same_calls:
        return None
    if not same_calls:
        return f"first: {_listing(earlier_calls)}; again: {_listing(calls)}"
    return f"first: {(earlier_content or '')[:80]!r}; again: {(content or '')[:80]!r}"
