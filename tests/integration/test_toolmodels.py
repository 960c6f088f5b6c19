"""The committed tool-call models answer their scenarios correctly under plain mlx-lm.

For each dialect: load the committed folder with ``mlx_lm.load``, render every planned request of
``scenarios/tools-<dialect>.yaml`` with the model's own chat template, decode greedily, parse the
dialect's output and check it against the scenario's expectations: the right tool call (name and
arguments) where one is expected, and a plain answer everywhere else. This is the baseline a server
is compared with: if a server loses these calls, the server is at fault, not the model.
"""

from __future__ import annotations

import json

import pytest

from harness.core.paths import builtin_scenarios_dir
from harness.models.dialects import DIALECTS, parse_output
from harness.models.training import TOOL_MODELS, TOOLS, tool_model_path
from harness.scenario.definition import load_scenario, plan_requests

pytestmark = pytest.mark.integration

_LOADED: dict[str, tuple] = {}


def _load(name: str):
    if name not in _LOADED:
        from mlx_lm import load

        _LOADED[name] = load(str(tool_model_path(name)))
    return _LOADED[name]


def _greedy(model, tokenizer, prompt: str, max_tokens: int) -> str:
    """Greedy decoding up to an end-of-turn token; the text keeps the dialect's special tokens."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import make_sampler

    ids = tokenizer.encode(prompt, add_special_tokens=False)
    out: list[int] = []
    for token, _ in generate_step(mx.array(ids), model, max_tokens=max_tokens, sampler=make_sampler(temp=0.0)):
        token = int(token)
        if token in tokenizer.eos_token_ids:
            break
        out.append(token)
    return tokenizer.decode(out, skip_special_tokens=False)


def _answers(name: str):
    """(request, generated text, parsed content, parsed calls) for every request of the scenario."""
    spec = TOOL_MODELS[name]
    model, tokenizer = _load(name)
    scenario = load_scenario(builtin_scenarios_dir() / f"{name}.yaml")
    assert scenario.model == name
    requests = plan_requests(scenario)
    assert requests[-1].expect and requests[-1].expect.no_tool_calls
    for request in requests:
        prompt = tokenizer.apply_chat_template(
            request.messages, tools=request.tools, tokenize=False, add_generation_prompt=True
        )
        text = _greedy(model, tokenizer, prompt, request.params.get("max_tokens", 96))
        content, calls = parse_output(spec.dialect, text)
        yield request, text, content, calls


@pytest.mark.parametrize("name", list(TOOL_MODELS))
def test_scenario_calls_in_the_dialect_and_plain_answers(name: str) -> None:
    """What the behaviour checks rely on: a well-formed call to the right tool, or plain text."""
    for request, text, content, calls in _answers(name):
        where = f"{name} turn {request.turn}: generated {text!r}"
        expect = request.expect
        if expect and expect.tool_calls:
            assert [call["name"] for call in calls] == [want.name for want in expect.tool_calls], where
            assert all(isinstance(call["arguments"], dict) and call["arguments"] for call in calls), where
        else:
            # After a tool result and for a plain question the model answers in text.
            assert not calls and content, where


@pytest.mark.parametrize("name", list(TOOL_MODELS))
def test_scenario_arguments_copied_exactly(name: str) -> None:
    for request, text, _content, calls in _answers(name):
        expect = request.expect
        if expect and expect.tool_calls:
            for call, want in zip(calls, expect.tool_calls, strict=False):
                for key, value in (want.arguments or {}).items():
                    assert call["arguments"].get(key) == value, f"{name} turn {request.turn}: generated {text!r}"


@pytest.mark.parametrize("name", list(TOOL_MODELS))
def test_model_folder(name: str) -> None:
    folder = tool_model_path(name)
    record = json.loads((folder / "harness-model.json").read_text())
    dialect = DIALECTS[record["dialect"]]
    assert record["dialect"] == TOOL_MODELS[name].dialect
    assert {"seed", "steps", "final_loss"} <= set(record)
    config = json.loads((folder / "config.json").read_text())
    _, tokenizer = _load(name)
    end_ids = config["eos_token_id"] if isinstance(config["eos_token_id"], list) else [config["eos_token_id"]]
    assert sorted(end_ids) == sorted(tokenizer.convert_tokens_to_ids(tok) for tok in dialect.end_tokens)
    assert tokenizer.eos_token == dialect.eos_token
    # Each dialect token is a single token, and the folder stays small.
    for token in dialect.end_tokens + dialect.extra_special_tokens:
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1, token
    assert (folder / "model.safetensors").stat().st_size < 8 * 1024 * 1024


@pytest.mark.parametrize("name", list(TOOL_MODELS))
def test_template_takes_string_or_dict_arguments(name: str) -> None:
    _, tokenizer = _load(name)
    args = {"file_path": "src/a b.py", "command": 'echo "hi"\nls'}

    def conversation(arguments):
        call = {"id": "call_1", "type": "function", "function": {"name": "Read", "arguments": arguments}}
        return [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Read it."},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "x = 1"},
        ]

    as_string = tokenizer.apply_chat_template(conversation(json.dumps(args)), tools=TOOLS, tokenize=False)
    as_dict = tokenizer.apply_chat_template(conversation(args), tools=TOOLS, tokenize=False)
    assert as_string == as_dict
    _content, calls = parse_output(TOOL_MODELS[name].dialect, as_string.split("Read it.", 1)[1])
    assert calls[:1] == [{"name": "Read", "arguments": args}]


def test_scenario_tools_file_matches_training_tools() -> None:
    shipped = json.loads((builtin_scenarios_dir() / "tools" / "coding-tools-small.json").read_text())
    assert shipped == TOOLS
