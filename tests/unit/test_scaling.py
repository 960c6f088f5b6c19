"""--context-tokens: sizes parsed from the CLI and TOML, system prompts grown or cut to about N tokens
on the model's tokenizer, scenario copies named NAME@N, and the rows and plot that carry the size."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.cli.main import build_parser
from harness.core.errors import ConfigError
from harness.core.rows import ResultRow
from harness.models.builtin import build_model, default_model_path
from harness.models.tokens import TokenCounter
from harness.run.config import load_config
from harness.scenario.context_size import expand, fit_text, parse_sizes, scale_groups, scale_scenario, split_name
from harness.scenario.definition import plan_requests, resolve_scenarios


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter(build_model(default_model_path()))


@pytest.mark.parametrize(
    "value, sizes",
    [
        ("1000,2000,4000", [1000, 2000, 4000]),
        ("4K, 8k", [4000, 8000]),
        ("512", [512]),
        ([1000, "2000"], [1000, 2000]),
        (3000, [3000]),
        ("1000,1000", [1000]),
        ("", None),
        (None, None),
    ],
)
def test_sizes_are_parsed_from_strings_lists_and_numbers(value, sizes):
    assert parse_sizes(value) == sizes


@pytest.mark.parametrize("bad", ["0", "-5", "1000,abc", "2.5k"])
def test_bad_sizes_are_refused_with_the_offending_item(bad):
    with pytest.raises(ValueError, match="not a positive number of tokens"):
        parse_sizes(bad)


def test_the_cli_takes_a_comma_list_and_the_config_keeps_a_list(tmp_path):
    args = build_parser().parse_args(["run", "--context-tokens", "1000,2000"])
    assert args.context_tokens == "1000,2000"
    config = load_config(overrides={"context_tokens": args.context_tokens}, project_dir=tmp_path)
    assert config.context_tokens == [1000, 2000]
    (tmp_path / "harness.toml").write_text("context_tokens = [500, 1500]\n")
    assert load_config(project_dir=tmp_path).context_tokens == [500, 1500]
    with pytest.raises(ConfigError, match="context_tokens"):
        load_config(overrides={"context_tokens": "lots"}, project_dir=tmp_path)


def test_names_split_into_scenario_and_size():
    assert split_name("agent-session@2000") == ("agent-session", 2000)
    assert split_name("agent-session") == ("agent-session", None)
    assert split_name("me@example") == ("me@example", None)


@pytest.mark.parametrize("target", [40, 1000, 5000])
def test_text_is_grown_by_repeating_itself_or_cut_to_about_n_tokens(counter, target):
    text = resolve_scenarios(["agent-session"])[0].system_text  # about 3,400 tokens
    fitted = fit_text(text, target, counter)
    assert target - 3 <= counter.count(fitted) <= target
    assert fitted.startswith(text[:100])
    if target > counter.count(text):
        assert text in fitted  # grown from its own text, not from filler


def test_a_scaled_scenario_is_a_named_copy_whose_system_prompt_has_about_n_tokens(counter):
    base = resolve_scenarios(["agent-session"])[0]
    for size in (300, 2000, 8000):
        scaled = scale_scenario(base, size, counter)
        assert scaled.name == f"agent-session@{size}" and scaled.context_tokens == size
        assert abs(counter.count(scaled.system_text) - size) <= 3
        assert scaled.turns == base.turns and scaled.tool_schemas == base.tool_schemas
    assert base.name == "agent-session" and base.context_tokens is None  # the original is untouched


def test_two_sizes_do_not_share_a_long_prefix(counter):
    """Otherwise a server caching across conversations would serve the larger size from the smaller."""
    base = resolve_scenarios(["agent-session"])[0]
    small, large = (scale_scenario(base, n, counter).system_text for n in (1000, 2000))
    shared = next(i for i, (a, b) in enumerate(zip(small, large, strict=False)) if a != b)
    assert shared < 40


def test_expand_gives_every_size_of_each_scenario_with_a_system_prompt(counter):
    with_system, short = resolve_scenarios(["agent-session", "short-chat"])
    without = short.model_copy(update={"system": None, "system_text": "", "name": "no-system"})
    out = expand([with_system, without], [1000, 2000], counter)
    assert [s.name for s in out] == ["agent-session@1000", "agent-session@2000", "no-system"]
    assert expand([with_system], None, counter) == [with_system]


def test_scaled_requests_carry_the_grown_system_prompt(counter):
    scaled = scale_scenario(resolve_scenarios(["short-chat"])[0], 500, counter)
    planned = plan_requests(scaled)
    assert all(request.messages[0]["content"] == scaled.system_text for request in planned)
    assert {request.scenario for request in planned} == {"short-chat@500"}


def test_scale_groups_works_per_model_group(counter):
    class Group:
        path = default_model_path()
        scenarios = resolve_scenarios(["short-chat"])

    group = Group()
    scale_groups([group], [100, 200])
    assert [s.name for s in group.scenarios] == ["short-chat@100", "short-chat@200"]


def test_rows_carry_the_size_and_the_plot_draws_latency_against_it(tmp_path):
    from harness.analysis.summary import summarize
    from harness.presentation.plots import latency_vs_context

    rows = []
    t = 1000.0
    for server, per_token in (("legacy", 1e-3), ("mlx-textgen", 4e-4)):
        for size in (1000, 2000, 4000):
            for turn in range(3):
                t += 1
                kind = "first" if turn == 0 else "follow-up"
                total = size * per_token * (1 if turn == 0 or server == "legacy" else 0.1)
                rows.append(
                    ResultRow(
                        run_id="r",
                        server=server,
                        scenario=f"agent-session@{size}",
                        turn=turn,
                        request_kind=kind,
                        stream=True,
                        started_at=t,
                        total_s=total,
                        ttft_s=total,
                        context_tokens=size,
                    )
                )
    assert (
        ResultRow(
            run_id="r", server="s", scenario="x", turn=0, request_kind="first", stream=False, started_at=0
        ).context_tokens
        is None
    )
    path = latency_vs_context(summarize(rows), tmp_path, "tiny")
    assert path is not None and path.name == "latency_vs_context.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # One size only (or a run without --context-tokens): nothing to draw against.
    assert latency_vs_context(summarize([r for r in rows if r.context_tokens == 1000]), tmp_path) is None
    frame = pd.DataFrame([r.model_dump() for r in rows])
    assert set(frame["context_tokens"]) == {1000, 2000, 4000}
