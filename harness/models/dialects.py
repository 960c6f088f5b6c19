"""Tool-call dialects: chat templates, special tokens and output parsers.

Three ways a model can write a tool call, each with a chat template that renders a system prompt,
tool schemas, assistant tool calls (arguments as a JSON string or a dict), tool results and the
generation prompt:

- ``hermes``: Hermes / Qwen2.5 JSON inside ``<tool_call>`` tags (the template of ``builtin.py``).
- ``qwen-xml``: Qwen3-Coder XML, ``<tool_call><function=NAME><parameter=KEY>VALUE</parameter>...``.
- ``harmony``: Harmony (GPT-OSS) messages; a call is
  ``<|start|>assistant<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{ARGS}<|call|>``
  and a plain answer goes to the ``final`` channel. One call per generation: ``<|call|>`` ends it.

``parse_output`` turns a model's raw generated text back into ``(content, calls)``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.models.builtin import HERMES_CHAT_TEMPLATE

# --- Qwen3-Coder style -------------------------------------------------------------------------

# ``xml_params`` renders the parameters of one call. Arguments may arrive as a dict (MLX-Textgen
# parses them) or as the JSON string of the OpenAI API (the legacy server passes them through):
# a string is read by a small state machine that handles a flat JSON object (string values with
# escapes, numbers, booleans, and nested objects/arrays kept as raw JSON text).
QWEN_XML_CHAT_TEMPLATE = r"""
{%- macro xml_params(args) -%}
{%- if args is mapping -%}
{%- for key, value in args.items() -%}
<parameter={{ key }}>
{{ value if value is string else value | tojson }}
</parameter>
{% endfor -%}
{%- elif args is string -%}
{%- set st = namespace(mode='key_wait', buf='', key='', esc=false, depth=0, instr=false) -%}
{%- for c in args -%}
{%- if st.mode == 'key_wait' -%}
{%- if c == '"' %}{% set st.mode = 'key' %}{% set st.buf = '' %}{% endif -%}
{%- elif st.mode == 'key' or st.mode == 'sval' -%}
{%- if st.esc -%}
{%- set st.buf = st.buf + ('\n' if c == 'n' else ('\t' if c == 't' else c)) -%}{%- set st.esc = false -%}
{%- elif c == '\\' -%}{%- set st.esc = true -%}
{%- elif c == '"' and st.mode == 'key' -%}{%- set st.key = st.buf -%}{%- set st.mode = 'colon' -%}
{%- elif c == '"' -%}
<parameter={{ st.key }}>
{{ st.buf }}
</parameter>
{% set st.mode = 'key_wait' -%}
{%- else -%}{%- set st.buf = st.buf + c -%}
{%- endif -%}
{%- elif st.mode == 'colon' -%}
{%- if c == ':' %}{% set st.mode = 'val_wait' %}{% endif -%}
{%- elif st.mode == 'val_wait' -%}
{%- if c == '"' -%}{%- set st.mode = 'sval' -%}{%- set st.buf = '' -%}
{%- elif c in '{[' -%}{%- set st.mode = 'raw' -%}{%- set st.buf = c -%}{%- set st.depth = 1 -%}{%- set st.instr = false -%}
{%- elif c.strip() -%}{%- set st.mode = 'lit' -%}{%- set st.buf = c -%}
{%- endif -%}
{%- elif st.mode == 'raw' -%}
{%- set st.buf = st.buf + c -%}
{%- if st.instr -%}
{%- if st.esc %}{% set st.esc = false %}{% elif c == '\\' %}{% set st.esc = true %}{% elif c == '"' %}{% set st.instr = false %}{% endif -%}
{%- elif c == '"' %}{% set st.instr = true -%}
{%- elif c in '{[' %}{% set st.depth = st.depth + 1 -%}
{%- elif c in '}]' %}{% set st.depth = st.depth - 1 -%}
{%- if st.depth == 0 -%}
<parameter={{ st.key }}>
{{ st.buf }}
</parameter>
{% set st.mode = 'key_wait' -%}
{%- endif -%}
{%- endif -%}
{%- elif st.mode == 'lit' -%}
{%- if c in ',}' -%}
<parameter={{ st.key }}>
{{ st.buf | trim }}
</parameter>
{% set st.mode = 'key_wait' -%}
{%- else -%}{%- set st.buf = st.buf + c -%}
{%- endif -%}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- set ns = namespace(system='') -%}
{%- if messages and messages[0].role in ['system', 'developer'] -%}{%- set ns.system = messages[0].content -%}{%- endif -%}
{%- if tools -%}
<|im_start|>system
{% if ns.system %}{{ ns.system }}

{% endif %}# Tools

You can call these functions:
<tools>
{% for tool in tools %}{% set fn = tool.function if tool.function is defined else tool %}<function>
<name>{{ fn.name }}</name>
{% if fn.description is defined %}<description>{{ fn.description }}</description>
{% endif %}<parameters>
{% if fn.parameters is defined and fn.parameters.properties is defined %}{% for pname, prop in fn.parameters.properties.items() %}<parameter>
<name>{{ pname }}</name>
<type>{{ prop.type if prop.type is defined else 'any' }}</type>
{% if prop.description is defined %}<description>{{ prop.description }}</description>
{% endif %}</parameter>
{% endfor %}{% endif %}</parameters>
</function>
{% endfor %}</tools>

To call a function, reply with:
<tool_call>
<function=NAME>
<parameter=KEY>
VALUE
</parameter>
</function>
</tool_call><|im_end|>
{% elif ns.system -%}
<|im_start|>system
{{ ns.system }}<|im_end|>
{% endif -%}
{%- for message in messages -%}
{%- if message.role in ['system', 'developer'] and loop.first -%}
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
<function={{ fn.name }}>
{{ xml_params(fn.arguments) }}</function>
</tool_call>
{% endfor %}<|im_end|>
{% else -%}
<|im_start|>{{ 'system' if message.role == 'developer' else message.role }}
{{ message.content }}<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif -%}
""".strip()  # noqa: E501 - Jinja source kept verbatim: wrapping a line changes the rendered text

# --- Harmony style -----------------------------------------------------------------------------

# Tools are declared as TypeScript-like signatures in a developer message. A tool result's sender
# is the tool's name: the message's ``name`` or, failing that, the name of the call it answers.
HARMONY_CHAT_TEMPLATE = r"""
{%- macro ts_type(prop) -%}
{%- if prop.enum is defined -%}{% for item in prop.enum %}{{ item | tojson }}{% if not loop.last %} | {% endif %}{% endfor -%}
{%- elif prop.type == 'string' -%}string
{%- elif prop.type in ['number', 'integer'] -%}number
{%- elif prop.type == 'boolean' -%}boolean
{%- elif prop.type == 'array' -%}{% if prop['items'] is defined %}{{ ts_type(prop['items']) }}[]{% else %}any[]{% endif -%}
{%- else -%}any
{%- endif -%}
{%- endmacro -%}
{%- macro render_args(args) -%}{%- if args is string -%}{{ args }}{%- else -%}{{ args | tojson }}{%- endif -%}{%- endmacro -%}
{%- set ns = namespace(system='') -%}
{%- if messages and messages[0].role in ['system', 'developer'] -%}{%- set ns.system = messages[0].content -%}{%- endif -%}
<|start|>system<|message|># Valid channels: commentary, final.
{%- if tools %} Calls to these tools must go to the commentary channel: 'functions'.{% endif %}<|end|>
{%- if ns.system or tools -%}
<|start|>developer<|message|>
{%- if ns.system %}# Instructions

{{ ns.system }}{% if tools %}{{ '\n\n' }}{% endif %}{% endif -%}
{%- if tools %}# Tools

## functions

namespace functions {
{% for tool in tools %}{% set fn = tool.function if tool.function is defined else tool %}
{% if fn.description is defined %}// {{ fn.description }}
{% endif %}type {{ fn.name }} = (_: {
{%- if fn.parameters is defined and fn.parameters.properties is defined -%}
{%- set required = fn.parameters.required if fn.parameters.required is defined else [] -%}
{%- for pname, prop in fn.parameters.properties.items() -%}
{{ pname }}{% if pname not in required %}?{% endif %}: {{ ts_type(prop) }}{% if not loop.last %}, {% endif %}
{%- endfor -%}
{%- endif -%}
}) => any;
{% endfor %}
} // namespace functions{% endif %}<|end|>
{%- endif -%}
{%- for message in messages -%}
{%- if message.role in ['system', 'developer'] and loop.first -%}
{%- elif message.role in ['system', 'developer'] -%}
<|start|>developer<|message|>{{ message.content }}<|end|>
{%- elif message.role == 'user' -%}
<|start|>user<|message|>{{ message.content }}<|end|>
{%- elif message.role == 'assistant' and message.tool_calls -%}
{%- if message.content -%}
<|start|>assistant<|channel|>commentary<|message|>{{ message.content }}<|end|>
{%- endif -%}
{%- for call in message.tool_calls -%}
{%- set fn = call.function if call.function is defined else call -%}
<|start|>assistant<|channel|>commentary to=functions.{{ fn.name }} <|constrain|>json<|message|>{{ render_args(fn.arguments) }}<|call|>
{%- endfor -%}
{%- elif message.role == 'assistant' -%}
<|start|>assistant<|channel|>final<|message|>{{ message.content }}<|end|>
{%- elif message.role == 'tool' -%}
{%- set tn = namespace(name=message.name if message.name is defined and message.name else '') -%}
{%- if not tn.name -%}
{%- for earlier in messages[:loop.index0] if earlier.role == 'assistant' and earlier.tool_calls -%}
{%- for call in earlier.tool_calls -%}
{%- set fn = call.function if call.function is defined else call -%}
{%- if call.id is defined and message.tool_call_id is defined and call.id == message.tool_call_id %}{% set tn.name = fn.name %}{% endif -%}
{%- if not tn.name and message.tool_call_id is not defined %}{% set tn.name = fn.name %}{% endif -%}
{%- endfor -%}
{%- endfor -%}
{%- endif -%}
<|start|>functions.{{ tn.name }} to=assistant<|channel|>commentary<|message|>{{ message.content }}<|end|>
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt %}<|start|>assistant{% endif -%}
""".strip()  # noqa: E501 - Jinja source kept verbatim: wrapping a line changes the rendered text

HARMONY_SPECIAL_TOKENS = [
    "<|start|>",
    "<|end|>",
    "<|message|>",
    "<|channel|>",
    "<|constrain|>",
    "<|call|>",
    "<|return|>",
]


@dataclass(frozen=True)
class Dialect:
    """What a tool-call dialect needs: its template, extra special tokens and stop tokens."""

    name: str
    chat_template: str
    # Tokens the tokenizer must keep whole (on top of those of ``fixtures.SPECIAL_TOKENS``).
    extra_special_tokens: tuple[str, ...] = ()
    # The tokenizer's ``eos_token`` (what MLX-Textgen stops on) and every end-of-turn token
    # (``config.json`` ``eos_token_id``: what mlx-lm stops on).
    eos_token: str = "<|im_end|>"
    end_tokens: tuple[str, ...] = ("<|im_end|>",)
    # Where a user turn starts, where the model's answer starts, and the tokens that end an answer.
    user_start: str = "<|im_start|>user"
    answer_start: str = "<|im_start|>assistant\n"
    answer_ends: tuple[str, ...] = ("<|im_end|>",)
    # Harmony renders a past final answer with <|end|> but the model ends a new one with <|return|>.
    final_label_swap: dict[str, str] = field(default_factory=dict)
    # Keys added to tokenizer_config.json so that servers which choose their tool parser from the
    # model find this dialect on their own (mlx-lm >= 0.29 reads "tool_parser_type").
    tokenizer_config_extra: dict[str, str] = field(default_factory=dict)


DIALECTS: dict[str, Dialect] = {
    "hermes": Dialect(
        name="hermes", chat_template=HERMES_CHAT_TEMPLATE, tokenizer_config_extra={"tool_parser_type": "json_tools"}
    ),
    "qwen-xml": Dialect(name="qwen-xml", chat_template=QWEN_XML_CHAT_TEMPLATE),
    "harmony": Dialect(
        name="harmony",
        chat_template=HARMONY_CHAT_TEMPLATE,
        extra_special_tokens=tuple(HARMONY_SPECIAL_TOKENS),
        eos_token="<|return|>",
        end_tokens=("<|return|>", "<|call|>", "<|end|>"),
        user_start="<|start|>user",
        answer_start="<|start|>assistant",
        answer_ends=("<|call|>", "<|end|>"),
        final_label_swap={"<|end|>": "<|return|>"},
    ),
}


# --- Parsing generated text --------------------------------------------------------------------

_HERMES_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)
_XML_CALL = re.compile(r"<tool_call>\s*<function=([^>\n]+)>(.*?)</function>\s*</tool_call>", re.DOTALL)
_XML_PARAM = re.compile(r"<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>", re.DOTALL)
_HARMONY_CALL = re.compile(
    r"(?:<\|channel\|>)?commentary to=(?:functions\.)?([\w.-]+)\s*(?:<\|constrain\|>\s*\w+)?\s*<\|message\|>(.*?)"
    r"(?=<\|call\|>|<\|end\|>|<\|start\|>|$)",
    re.DOTALL,
)
_HARMONY_FINAL = re.compile(r"<\|channel\|>final<\|message\|>(.*?)(?=<\|return\|>|<\|end\|>|<\|start\|>|$)", re.DOTALL)
_HARMONY_TOKENS = re.compile(r"<\|(?:start|end|message|channel|constrain|call|return)\|>")


def _xml_value(raw: str) -> Any:
    """A Qwen XML parameter value: JSON where it parses as a non-string (numbers, lists), else text."""
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return raw if isinstance(value, str) else value


def parse_output(dialect: str, text: str) -> tuple[str, list[dict[str, Any]]]:
    """Splits generated text into plain content and tool calls ``[{"name", "arguments": dict}]``.

    A call whose arguments do not parse is returned with ``arguments`` set to the raw string, so a
    caller can tell "no call" from "a broken call".
    """
    calls: list[dict[str, Any]] = []
    if dialect == "hermes":
        for match in _HERMES_CALL.finditer(text):
            try:
                payload = json.loads(match.group(1))
                calls.append({"name": payload.get("name"), "arguments": payload.get("arguments", {})})
            except (ValueError, AttributeError):
                calls.append({"name": None, "arguments": match.group(1)})
        content = _HERMES_CALL.sub("", text)
    elif dialect == "qwen-xml":
        for match in _XML_CALL.finditer(text):
            params = {key.strip(): _xml_value(value) for key, value in _XML_PARAM.findall(match.group(2))}
            calls.append({"name": match.group(1).strip(), "arguments": params})
        content = _XML_CALL.sub("", text)
    elif dialect == "harmony":
        for match in _HARMONY_CALL.finditer(text):
            raw = match.group(2).strip()
            try:
                arguments: Any = json.loads(raw)
            except ValueError:
                arguments = raw
            calls.append({"name": match.group(1), "arguments": arguments})
        finals = _HARMONY_FINAL.findall(text)
        content = "".join(finals) if finals else ("" if calls else _HARMONY_TOKENS.sub("", text))
    else:
        raise ValueError(f"unknown dialect {dialect!r}; known: {', '.join(DIALECTS)}")
    return content.strip(), calls


def model_dialect(model_dir: Path) -> str | None:
    """The tool-call dialect a model folder speaks: the one its harness-model.json names (the built-in
    tool models), else Hermes when its chat template writes ``<tool_call>`` (the default model and
    Qwen2.5-style models), else None (unknown: no parser arguments are added for it)."""
    try:
        named = json.loads((model_dir / "harness-model.json").read_text(encoding="utf-8")).get("dialect")
    except (OSError, ValueError, AttributeError):
        named = None
    if isinstance(named, str) and named in DIALECTS:
        return named
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        try:
            if "<tool_call>" in (model_dir / name).read_text(encoding="utf-8"):
                return "hermes"
        except OSError:
            continue
    return None
