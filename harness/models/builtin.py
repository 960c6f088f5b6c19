"""Offline models: built here, deterministically from a seed, because no machine can download one.

``build_model`` writes an mlx-lm loadable folder (config.json, model.safetensors, a BPE tokenizer of
our own and a chat template) that both servers serve. The weights are random: latency and cache
behaviour are real, the text is noise. Models trained to emit tool calls are trained by ``training.py``
and shipped in ``harness/data/models``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from harness.core.paths import built_models_dir, committed_models_dir, data_dir

DEFAULT_MODEL_NAME = "tiny-chat-qwen2"
DEFAULT_SEED = 0

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]

# Qwen2.5/Hermes-style template: system prompt, a <tools> block, assistant tool calls as JSON inside
# <tool_call> tags, and tool results as <tool_response> blocks in a user turn.
HERMES_CHAT_TEMPLATE = r"""
{%- set ns = namespace(system='') -%}
{%- if messages and messages[0].role == 'system' -%}{%- set ns.system = messages[0].content -%}{%- endif -%}
{%- if tools -%}
<|im_start|>system
{{ ns.system }}

# Tools

You may call one or more functions to assist with the user query.
Function signatures are given within <tools></tools> tags:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>

To call a function, answer with a JSON object inside <tool_call></tool_call> tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif ns.system -%}
<|im_start|>system
{{ ns.system }}<|im_end|>
{% endif -%}
{%- for message in messages -%}
{%- if message.role == 'system' and loop.first -%}
{%- elif message.role == 'tool' -%}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}<|im_start|>user
{% endif -%}
<tool_response>
{{ message.content }}
</tool_response>
{% if loop.last or messages[loop.index0 + 1].role != 'tool' %}<|im_end|>
{% endif -%}
{%- elif message.role == 'assistant' and message.tool_calls -%}
<|im_start|>assistant
{% if message.content %}{{ message.content }}
{% endif -%}
{%- for call in message.tool_calls -%}
{%- set fn = call.function if call.function is defined else call -%}
<tool_call>
{"name": "{{ fn.name }}", "arguments": {% if fn.arguments is string %}{{ fn.arguments }}{% else %}{{ fn.arguments | tojson }}{% endif %}}
</tool_call>
{% endfor %}<|im_end|>
{% else -%}
<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif -%}
""".strip()  # noqa: E501 - Jinja source kept verbatim: wrapping a line changes the rendered text

# Small and fast on two CPU cores, yet long prompts still cost real prefill time.
TINY_QWEN2_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    # Two layers and two heads: attention dominates prefill on MLX's CPU backend, and the default
    # comparison must re-process ~5K-token prompts many times within minutes.
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
}


def corpus_texts() -> list[str]:
    """The tokenizer's training text: a fixed committed corpus, so the tokenizer never drifts."""
    return (data_dir() / "tokenizer-corpus.txt").read_text(encoding="utf-8").splitlines()


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048):
    """A byte-level BPE tokenizer (no unknown tokens), wrapped for transformers with our template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        chat_template=HERMES_CHAT_TEMPLATE,
    )
    return wrapped


def build_model(
    out_dir: Path,
    seed: int = DEFAULT_SEED,
    config_overrides: dict | None = None,
    chat_template: str | None = None,
    force: bool = False,
) -> Path:
    """Writes a random-weight qwen2 model that mlx-lm, the legacy server and MLX-Textgen can load.

    ``model.safetensors`` is written last, under its own name only once complete, so its presence
    means a whole model. Processes building the same folder at once (test workers) take turns on a
    lock beside it: the first builds, the others find the model and return."""
    out_dir = Path(out_dir)
    weights_file = out_dir / "model.safetensors"
    if weights_file.is_file() and not force:
        return out_dir  # before importing mlx: that alone costs the harness process ~300 MB
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f".{out_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if weights_file.is_file() and not force:
            return out_dir
        _write_model(out_dir, seed, config_overrides, chat_template)
    return out_dir


def _write_model(out_dir: Path, seed: int, config_overrides: dict | None, chat_template: str | None) -> None:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen2

    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tokenizer(corpus_texts())
    if chat_template:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(out_dir)

    config = dict(TINY_QWEN2_CONFIG)
    config.update(config_overrides or {})
    config["vocab_size"] = len(tokenizer)
    config["eos_token_id"] = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config["bos_token_id"] = tokenizer.convert_tokens_to_ids("<|endoftext|>")

    mx.random.seed(seed)
    model = qwen2.Model(qwen2.ModelArgs.from_dict(config))
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out_dir / "harness-model.json").write_text(
        json.dumps({"builder": "harness.models.builtin.build_model", "seed": seed}, indent=2) + "\n", encoding="utf-8"
    )
    # float32: MLX on CPU has no half-precision matmul with bias (AddMM).
    weights = {name: value.astype(mx.float32) for name, value in tree_flatten(model.parameters())}
    partial = out_dir / ".building.safetensors"  # hidden from mlx-lm, which loads model*.safetensors
    mx.save_safetensors(str(partial), weights, metadata={"format": "mlx"})
    os.replace(partial, out_dir / "model.safetensors")


def default_model_path() -> Path:
    return built_models_dir() / DEFAULT_MODEL_NAME


TOOL_MODEL_NAMES = ("tools-hermes", "tools-qwen-xml", "tools-harmony")


def tool_model_path(name: str) -> Path:
    """The committed folder of a tool-call model (``tools-hermes``, ``tools-qwen-xml``, ``tools-harmony``)."""
    if name not in TOOL_MODEL_NAMES:
        raise KeyError(f"unknown tool model {name!r}; known: {', '.join(TOOL_MODEL_NAMES)}")
    return committed_models_dir() / name


def model_checksum(model_dir: Path) -> str:
    """SHA-256 over the weight and config files, so a run records exactly which model it used."""
    digest = hashlib.sha256()
    model_dir = Path(model_dir)
    for path in sorted(model_dir.glob("*")):
        if path.suffix in {".safetensors", ".json", ".jinja"} and path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def check_model_dir(model_dir: Path) -> None:
    """Raises a clear error when a folder is not something mlx-lm can load."""
    from harness.core.errors import ModelError

    model_dir = Path(model_dir)
    if not model_dir.exists():
        raise ModelError(
            f"model path {model_dir} does not exist. Build the built-in model with `harness build-model`, "
            "or pass --model PATH to a local mlx-lm model folder."
        )
    if not model_dir.is_dir():
        raise ModelError(f"model path {model_dir} is a file; --model needs a model folder.")
    missing = [name for name in ("config.json",) if not (model_dir / name).is_file()]
    if not list(model_dir.glob("*.safetensors")):
        missing.append("*.safetensors")
    if not ((model_dir / "tokenizer.json").is_file() or (model_dir / "tokenizer.model").is_file()):
        missing.append("tokenizer.json")
    if missing:
        raise ModelError(
            f"model folder {model_dir} cannot be loaded by mlx-lm: missing {', '.join(missing)}. "
            "Point --model at a folder with config.json, *.safetensors and a tokenizer "
            "(e.g. one made by `mlx_lm.convert`), or run `harness build-model`."
        )
