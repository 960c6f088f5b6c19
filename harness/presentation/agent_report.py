"""agent.md: the report of a ``harness agent`` run. Per server and path, the prompts the real client
completed; per prompt, the client's result and timing beside the proxy's rows of the same requests;
the agreement of the two TTFTs; the failures with their captures."""

from __future__ import annotations

from pathlib import Path

from harness.analysis.agent import AgentSummary, Agreement, LegView, PromptView, load_agent_summary

REPORT_FILE = "agent.md"
RESULT_CHARS = 60


def _ms(value: float | None) -> str:
    return f"{value:.0f} ms" if value is not None else "-"


def _cell(text: str, limit: int = RESULT_CHARS) -> str:
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _state(prompt: PromptView) -> str:
    if prompt.completed:
        return "completed"
    why = prompt.problem or (f"API error {prompt.api_error_status}" if prompt.api_error_status else "is_error")
    return f"**failed** ({why})" + (" — every HTTP status 200" if prompt.client_failed_all_200 else "")


def _leg_lines(leg: LegView) -> list[str]:
    lines = [f"## {leg.server}, {leg.path}", ""]
    if leg.problem:
        return [*lines, leg.problem, ""]
    total = len(leg.prompts)
    times = ", ".join(f"{p.duration_ms / 1000:.1f} s" if p.duration_ms is not None else "-" for p in leg.prompts)
    lines += [f"Model `{leg.model}`. Prompts completed by the client: **{leg.completed}/{total}**; "
              f"time per prompt as the client saw it (duration_ms): {times}.", ""]  # fmt: skip
    lines += [
        "| # | client | turns | client duration | client ttft_ms | client TTFT of its request | proxy TTFT "
        "| proxy, first visible | requests (HTTP) | failed checks | reuse | client's result |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in leg.prompts:
        statuses = ",".join(str(s) for s in p.statuses) or "none"
        lines.append(
            f"| {p.index + 1} | {_state(p)} | {p.num_turns if p.num_turns is not None else '-'} "
            f"| {_ms(p.duration_ms)} | {_ms(p.ttft_ms)} | {_ms(p.client_request_ttft_ms)} | {_ms(p.proxy_ttft_ms)} "
            f"| {_ms(p.proxy_visible_ms)} "
            f"| {p.requests} ({statuses}) | {', '.join(p.checks_failed) or '-'} | {p.reuse} | {_cell(p.result)} |"
        )
    if any(p.requests and p.proxy_ttft_ms is None for p in leg.prompts):
        lines += ["", "A proxy TTFT of -: the prompt's first request streamed no generated token (an empty answer)."]
    failures = [p for p in leg.prompts if not p.completed or p.checks_failed]
    if failures:
        lines += ["", "Failures and their captures:", ""]
        for p in failures:
            where = ", ".join(f"`{leg.server}-{leg.path}/{capture}`" for capture in p.captures) or "no capture"
            lines.append(f"- prompt {p.index + 1}: {_state(p)}; checks {', '.join(p.checks_failed) or 'none'}; {where}")
    if leg.conversion_notes:
        lines += ["", "Conversion notes (Anthropic -> OpenAI, per request):", ""]
        lines += [f"- {count}x {note}" for note, count in leg.conversion_notes.items()]
    return [*lines, ""]


def _agreement_line(what: str, a: Agreement) -> str:
    if not a.count:
        return f"- {what}: no prompt had both figures."
    relative = f", median {a.median_relative:.1%} of the proxy's" if a.median_relative is not None else ""
    return (
        f"- {what}: over {a.count} prompt(s), median {a.median_ms:+.0f} ms, median |difference| "
        f"{a.median_abs_ms:.0f} ms, largest {a.max_abs_ms:.0f} ms{relative}."
    )


def agent_markdown(summary: AgentSummary) -> str:
    client = summary.client
    lines = [
        f"# Claude Code sessions, run {summary.run_id}",
        "",
        f"Client: {client.get('package')} {client.get('version')} (pinned {client.get('pinned')}; "
        f"`claude --version`: {client.get('reports')}).",
        "",
    ]
    lines += [
        "**TTFT agreement**: the client's TTFT of its request (ttft_ms - time_to_request_ms) minus the proxy's "
        "figure for the same request.",
        "",
        _agreement_line("to the first generated token (the rows' ttft_s)", summary.agreement),
        _agreement_line("to the first tool call or non-whitespace text", summary.visible_agreement),
        "",
    ]
    lines += [
        "| server | path | prompts completed | client failed with every status 200 | requests |",
        "|---|---|---|---|---|",
    ]
    for leg in summary.legs:
        silent = sum(p.client_failed_all_200 for p in leg.prompts)
        requests = sum(p.requests for p in leg.prompts)
        done = f"{leg.completed}/{len(leg.prompts)}" if not leg.problem else "not run"
        lines.append(f"| {leg.server} | {leg.path} | {done} | {silent} | {requests} |")
    lines.append("")
    if summary.key_found_in:
        lines += [f"**The dummy API key was found in written files**: {', '.join(summary.key_found_in)}", ""]
    else:
        lines += ["The dummy API key is in no file of the run folder.", ""]
    for note in summary.notes:
        lines += [f"Note: {note}", ""]
    for leg in summary.legs:
        lines += _leg_lines(leg)
    return "\n".join(lines)


def write_agent_report(run_dir: Path) -> Path:
    summary = load_agent_summary(run_dir)
    path = Path(run_dir) / REPORT_FILE
    path.write_text(agent_markdown(summary), encoding="utf-8")
    return path
