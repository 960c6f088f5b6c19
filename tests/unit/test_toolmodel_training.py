"""The training data and loss of ``harness.models.training``, checked without training a model.

The committed tool-call models are only as good as their data: single requests must ask for exactly
the arguments of their call, the loss mask must leave the system prompt and tools out, batches must
share that prefix, and the loss computed on the shared prefix's keys/values must equal the plain
forward pass it stands in for (loss and gradients).
"""

from __future__ import annotations

import json
import random
from pathlib import PurePosixPath

import pytest

from harness.checks.toolcalls import parse_arguments
from harness.models.dialects import DIALECTS
from harness.models.training import (
    NAMES,
    ROOT_FILES,
    TOOL_MODELS,
    ConversationGenerator,
    Encoded,
    _batches,
    _loss,
    encode,
    tool_model_path,
)


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_single_requests_ask_for_the_arguments_of_their_call(dialect: str) -> None:
    generator = ConversationGenerator(dialect, seed=5)
    made_up = 0
    for _ in range(300):
        example = generator.single()
        user, answer = example.messages[-2], example.messages[-1]
        assert user["role"] == "user" and answer["role"] == "assistant" and answer["tool_calls"]
        if dialect == "harmony":  # one call per turn there
            assert len(answer["tool_calls"]) == 1
        for call in answer["tool_calls"]:
            arguments = parse_arguments(call["function"]["arguments"])
            for value in arguments.values():
                assert value in user["content"], (user["content"], call)
            path = arguments.get("file_path")
            made_up += (
                bool(path) and path not in ROOT_FILES and PurePosixPath(path).stem.removeprefix("test_") not in NAMES
            )
    assert made_up > 30  # names from no list: the model has to copy them, not recall them


def test_the_generator_is_deterministic_for_a_seed() -> None:
    def sample(seed: int) -> str:
        generator = ConversationGenerator("hermes", seed)
        return json.dumps(
            [generator.conversation().messages for _ in range(20)] + [generator.single().messages for _ in range(20)]
        )

    assert sample(3) == sample(3) != sample(4)


@pytest.fixture(scope="module")
def hermes_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tool_model_path("tools-hermes")))


@pytest.mark.parametrize("name", list(TOOL_MODELS))
def test_the_prefix_is_the_system_prompt_and_tools_and_takes_no_loss(name: str) -> None:
    from transformers import AutoTokenizer

    dialect = DIALECTS[TOOL_MODELS[name].dialect]
    tokenizer = AutoTokenizer.from_pretrained(str(tool_model_path(name)))
    generator = ConversationGenerator(dialect.name, seed=9)
    for example in [generator.single() for _ in range(10)] + [generator.conversation() for _ in range(10)]:
        item = encode(tokenizer, dialect, example)
        assert 0 < item.prefix < len(item.ids)
        assert set(item.labels[: item.prefix]) == {-100}
        assert tokenizer.decode(item.ids[item.prefix :]).startswith(dialect.user_start)
        assert dialect.user_start not in tokenizer.decode(item.ids[: item.prefix])
        assert any(label != -100 for label in item.labels[item.prefix :])  # the answers are learned


def test_batches_share_their_prefix_and_are_full(hermes_tokenizer) -> None:
    dialect = DIALECTS["hermes"]
    generator = ConversationGenerator("hermes", seed=2)
    encoded = [encode(hermes_tokenizer, dialect, generator.single()) for _ in range(200)]
    batches = _batches(encoded, batch_size=8, steps=1000, rng=random.Random(0))
    assert batches and len(batches) <= 200 // 8
    for prefix, batch in batches:
        assert len(batch) == 8
        assert all(item.ids[: item.prefix] == prefix for item in batch)


def test_loss_on_the_shared_prefix_equals_the_plain_forward_pass() -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            attn_implementation="sdpa",
        )
    )
    rng = random.Random(1)
    prefix = [rng.randrange(1, 64) for _ in range(7)]
    batch = []
    for length in (5, 9, 12):  # different lengths: right padding is exercised
        ids = prefix + [rng.randrange(1, 64) for _ in range(length)]
        labels = [-100] * len(ids)
        for t in range(len(prefix) + 1, len(ids) - 1):
            labels[t] = ids[t + 1]
        batch.append(Encoded(ids=ids, labels=labels, prefix=len(prefix)))

    def loss_and_grads(loss_fn):
        model.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters()]

    shared, shared_grads = loss_and_grads(lambda: _loss(model, prefix, batch, pad=0))
    plain, plain_grads = loss_and_grads(lambda: _loss(model, [], batch, pad=0))
    assert shared == pytest.approx(plain, rel=1e-5)
    for a, b in zip(shared_grads, plain_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
