"""Checks of the answer against what the request itself asked for (not the scenario's expectations):
its stop sequences, and a ``tool_choice`` of "none" or of one named function. (``"required"`` is
``tool.required_ignored``, checked with the expectations in ``conformance``.)"""

from __future__ import annotations

from typing import Any

from harness.checks import toolcalls
from harness.checks.outcome import Answer, CheckOutcome
from harness.scenario.definition import PlannedRequest


def stop_sequences(request: PlannedRequest) -> list[str]:
    """The request's ``stop`` as a list (a client may send one string or a list)."""
    stop = request.params.get("stop")
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list):
        return [item for item in stop if isinstance(item, str) and item]
    return []


def named_choice(choice: Any) -> str | None:
    """The function a ``tool_choice`` names (``{"type": "function", "function": {"name": N}}``)."""
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return function["name"]
    return None


def check_request_rules(answer: Answer, request: PlannedRequest, out: CheckOutcome) -> None:
    """Runs on a complete answer (a cut-off one would only repeat that it was cut off)."""
    content = answer.content or ""
    for stop in stop_sequences(request):
        at = content.find(stop)
        if at >= 0:
            out.fail(
                "param.stop_ignored",
                f"stop sequence {stop!r} at char {at} of the content: {content[max(0, at - 30) : at + 30]!r}",
            )
            break
    calls = answer.tool_calls
    if request.tool_choice == "none" and calls:
        out.fail(
            "tool.choice_none_ignored",
            f"tool_choice 'none' but {len(calls)} call(s): {[toolcalls.signature(c) for c in calls][:3]}",
        )
    name = named_choice(request.tool_choice)
    if name is not None and request.tools:
        names = [call["name"] for call in calls]
        if name not in names or any(other != name for other in names):
            got = f"calls to {names}" if names else f"no call; content {content[:60]!r}"
            out.fail("tool.named_choice_ignored", f"tool_choice names {name!r}, got {got}")
