"""--warmup: the one unmeasured request sent after each server start.

MLX-Textgen loads its weights on the first request, and every server pays some one-off cost there
(imports, compiled kernels, allocator growth). A warm-up request takes that out of the measured
"first" request, so the first request then measures what it should: a prompt no cache has seen.

The warm-up therefore shares no prefix with any scenario: one short user message and no system
prompt (every scenario prompt starts with its system block, so only the chat template's first
marker token is shared), no tools, a few tokens of output. Sending the scenario's own first request (or its system
prompt) instead would put that prefix in a prompt cache, and the "first" request would be a cached
one. It is streamed when the scenario variant is, so the streaming path is warmed up as well.

Its row has request_kind "warmup" and turn -1; the summary leaves it out of every statistic, while
any cache file it writes still counts as disk use. One is sent after every start, restarts included:
the request after a restart then measures the disk cache, not the model loading.
"""

from __future__ import annotations

from harness.scenario.definition import PlannedRequest, Scenario, Variant

WARMUP_TURN = -1
WARMUP_USER = "Warm-up request from the benchmark harness; its answer is not used. Reply with one word."
WARMUP_MAX_TOKENS = 4


def warmup_request(scenario: Scenario, variant: Variant) -> PlannedRequest:
    stream = variant.stream if variant.stream is not None else scenario.stream
    params = {key: value for key, value in scenario.params.items() if key != "max_tokens"}
    params["max_tokens"] = WARMUP_MAX_TOKENS
    return PlannedRequest(
        scenario=scenario.name,
        turn=WARMUP_TURN,
        messages=[{"role": "user", "content": WARMUP_USER}],
        tools=[],
        params=params,
        stream=stream,
        tool_choice=None,
        expect=None,
    )
