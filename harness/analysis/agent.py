"""agent.json (``harness agent``) -> per prompt, the client's own view beside the proxy's rows; per
server and path, what the client completed; and how far the client's time to first token agrees
with the proxy's.

Claude Code's JSON result counts ``ttft_ms`` from its own start, and ``time_to_request_ms`` up to
the moment it sent its first request: their difference is its time to first token of that request,
the figure the proxy measures too (from the request going upstream to the first generated token of
the first row). Where both exist and the request streamed, the difference of the two is the
agreement figure; the raw ``ttft_ms`` is shown beside it, since that is what the client reports. A
second figure compares it with the proxy's time to the first thing a client can show (a tool call or
text that is not only whitespace): an answer that opens with a newline tells the two apart.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.agent.session import AGENT_FILE


@dataclass
class PromptView:
    server: str
    path: str
    index: int
    prompt: str
    completed: bool
    client_failed_all_200: bool  # the client failed the prompt though every HTTP status was 200
    result: str
    problem: str | None
    api_error_status: int | None
    num_turns: int | None
    wall_s: float
    duration_ms: float | None
    ttft_ms: float | None
    client_request_ttft_ms: float | None  # ttft_ms - time_to_request_ms
    proxy_ttft_ms: float | None  # the first row's: its first generated token
    proxy_visible_ms: float | None  # the first row's first tool call or non-whitespace text
    requests: int
    statuses: list[int | None]
    checks_failed: list[str]
    reuse: str
    captures: list[str]


@dataclass
class LegView:
    server: str
    path: str
    model: str
    problem: str | None
    prompts: list[PromptView] = field(default_factory=list)
    conversion_notes: dict[str, int] = field(default_factory=dict)

    @property
    def completed(self) -> int:
        return sum(prompt.completed for prompt in self.prompts)


@dataclass
class Agreement:
    """Client TTFT minus proxy TTFT of the same request, in ms, over the prompts that have both."""

    count: int
    median_ms: float | None
    median_abs_ms: float | None
    max_abs_ms: float | None
    median_relative: float | None  # |difference| / proxy TTFT


@dataclass
class AgentSummary:
    run_id: str
    client: dict[str, Any]
    legs: list[LegView]
    agreement: Agreement
    visible_agreement: Agreement
    key_found_in: list[str]
    notes: list[str]


def _reuse(index: int, rows: list[dict[str, Any]], log: dict[str, Any], usage: dict[str, Any]) -> str:
    """Whether the server reused its cache for the prompt's first request, by the best evidence."""
    if index == 0:
        return "first prompt"
    first = rows[0] if rows else {}
    if first.get("cached_tokens"):
        return f"yes ({first['cached_tokens']} tokens, usage)"
    if log.get("reused") is True:
        return f"yes ({log.get('tokens') or '?'} tokens, server log)"
    if usage.get("cache_read_input_tokens"):
        return f"yes ({usage['cache_read_input_tokens']} tokens, client usage)"
    if log.get("reused") is False:
        return "no (server log)"
    if first.get("cached_tokens") == 0:
        return "no (usage)"
    return "not shown"


def prompt_view(server: str, path: str, prompt: dict[str, Any]) -> PromptView:
    rows = prompt.get("rows") or []
    statuses = [row.get("http_status") for row in rows]
    completed = bool(prompt.get("completed"))
    ttft_ms, to_request = prompt.get("ttft_ms"), prompt.get("time_to_request_ms")
    first = rows[0] if rows else {}
    proxy_ttft = first.get("ttft_s") if first.get("stream") else None
    visible = first.get("ttft_visible_s") if first.get("stream") else None
    return PromptView(
        server=server,
        path=path,
        index=int(prompt["prompt_index"]),
        prompt=str(prompt.get("prompt", "")),
        completed=completed,
        client_failed_all_200=not completed and bool(rows) and all(status == 200 for status in statuses),
        result=str(prompt.get("result") or ""),
        problem=prompt.get("problem"),
        api_error_status=prompt.get("api_error_status"),
        num_turns=prompt.get("num_turns"),
        wall_s=float(prompt.get("wall_s") or 0.0),
        duration_ms=prompt.get("duration_ms"),
        ttft_ms=ttft_ms,
        client_request_ttft_ms=ttft_ms - to_request if ttft_ms is not None and to_request is not None else None,
        proxy_ttft_ms=proxy_ttft * 1000 if proxy_ttft is not None else None,
        proxy_visible_ms=visible * 1000 if visible is not None else None,
        requests=len(rows),
        statuses=statuses,
        checks_failed=sorted({check for row in rows for check in row.get("checks_failed") or []}),
        reuse=_reuse(int(prompt["prompt_index"]), rows, prompt.get("log_reuse") or {}, prompt.get("usage") or {}),
        captures=[row["capture"] for row in rows if row.get("capture")],
    )


def agreement(prompts: list[PromptView], visible: bool = False) -> Agreement:
    """The client's TTFT against the proxy's first generated token, or (``visible``) against the
    proxy's first tool call or non-whitespace text."""
    pairs = [
        (p.client_request_ttft_ms, proxy)
        for p in prompts
        if p.client_request_ttft_ms is not None
        and (proxy := p.proxy_visible_ms if visible else p.proxy_ttft_ms) is not None
    ]
    if not pairs:
        return Agreement(0, None, None, None, None)
    diffs = [client - proxy for client, proxy in pairs]
    relative = [abs(client - proxy) / proxy for client, proxy in pairs if proxy > 0]
    return Agreement(
        count=len(pairs),
        median_ms=statistics.median(diffs),
        median_abs_ms=statistics.median(abs(d) for d in diffs),
        max_abs_ms=max(abs(d) for d in diffs),
        median_relative=statistics.median(relative) if relative else None,
    )


def load_agent_summary(run_dir: Path) -> AgentSummary:
    data = json.loads((Path(run_dir) / AGENT_FILE).read_text(encoding="utf-8"))
    legs = []
    for leg in data.get("legs", []):
        view = LegView(
            leg["server"], leg["path"], leg.get("model") or "", leg.get("problem"),
            conversion_notes=leg.get("conversion_notes") or {},
        )  # fmt: skip
        view.prompts = [prompt_view(leg["server"], leg["path"], prompt) for prompt in leg.get("prompts", [])]
        legs.append(view)
    every = [prompt for leg in legs for prompt in leg.prompts]
    return AgentSummary(
        run_id=str(data.get("run_id", "")),
        client=data.get("client") or {},
        legs=legs,
        agreement=agreement(every),
        visible_agreement=agreement(every, visible=True),
        key_found_in=list(data.get("key_found_in") or []),
        notes=list(data.get("notes") or []),
    )
