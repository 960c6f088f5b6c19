"""The client-shapes family: the request shapes real clients send, one per turn, on the tool models."""

from __future__ import annotations

from harness.scenario.definition import plan_requests, resolve_scenarios


def test_the_client_shapes_family_is_built_in():
    found = resolve_scenarios(["client-shapes"])
    assert [scenario.name for scenario in found] == ["client-shapes-hermes", "client-shapes-qwen-xml"]
    for scenario in found:
        names = [turn.name for turn in scenario.turns]
        assert all(names) and len(set(names)) == len(names)  # every shape is named, once
        assert scenario.unsupported_ok and {v.stream for v in scenario.variants} == {True, False}
    hermes = {request.name: request for request in plan_requests(found[0], stream=False)}
    assert len(hermes["tools-35"].tools) >= 30
    assert len(hermes["long-tool-result"].messages[-1]["content"]) >= 20_000


def test_every_shape_named_by_the_field_is_played():
    names = {turn.name for scenario in resolve_scenarios(["client-shapes"]) for turn in scenario.turns}
    for shape in (
        "history-text-and-tool-calls",
        "history-content-empty-string",
        "history-content-null",
        "history-parallel-tool-calls",
        "user-content-parts",
        "system-content-parts",
        "tool-content-parts",
        "schema-no-properties",
        "schema-empty-properties",
        "schema-nested-object",
        "schema-array",
        "schema-enum",
        "schema-anyof",
        "schema-no-description",
        "tools-35",
        "tool-choice-none",
        "tool-choice-auto",
        "tool-choice-required",
        "tool-choice-named",
        "stream-options-include-usage",
        "stop-sequences",
        "max-tokens-length",
        "sampling-params",
        "unknown-fields",
        "long-tool-result",
        "non-ascii-and-emoji",
        "image-part",
        "parallel-calls",
        "history-server-ids",
        "follow-up-after-tool-result",
    ):
        assert shape in names, shape


def test_every_shape_is_greedy_so_streamed_and_not_can_be_compared():
    for scenario in resolve_scenarios(["client-shapes"]):
        for request in plan_requests(scenario, stream=True):
            assert request.params.get("temperature") == 0, (scenario.name, request.name)
