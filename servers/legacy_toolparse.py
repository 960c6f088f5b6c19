"""Tool-call parsing of generated text, as the legacy server did it (see legacy-server.md).

Pure functions, no model and no web framework, so they can be tested on their own. The order of the
dialects and the filtering rules are part of the behaviour being reproduced:

1. LM Studio  ``[TOOL_REQUEST]{"name": ..., "arguments": {...}}[END_TOOL_REQUEST]``
2. Harmony    ``<|channel|>commentary to=functions.NAME ... <|message|>{json}``
3. only when the request carried tools, the first of these that yields a call:
   Hermes JSON (only with ``parse_hermes``; the original never parsed it), Qwen XML wrapped in
   ``<tool_call>``, bare Qwen XML (only when no wrapped form exists), loose ``"tool": "X" ...
   "arguments": {...}``, loose ``X({...})``. Step 3 keeps only tools named in the request, at most one
   call per name, and drops calls without any parameter.

A call is ``{"name": str, "arguments": str}`` where ``arguments`` is a JSON string, as in the OpenAI API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

ToolCall = dict[str, str]

_LMSTUDIO = re.compile(r"\[TOOL_REQUEST\](.*?)\[END_TOOL_REQUEST\]", re.DOTALL)
# Whatever sits between the recipient and <|message|> (e.g. "<|constrain|>json") is skipped.
_HARMONY = re.compile(r"<\|channel\|>\s*commentary\s+to=(?:functions\.)?([A-Za-z0-9_\-.]+).*?<\|message\|>", re.DOTALL)
_HARMONY_TEXT_MARKERS = re.compile(r"<\|channel\|>\s*(?:analysis|final)\s*<\|message\|>")
_HERMES_OPEN = re.compile(r"<tool_call>\s*(?=\{)")
_XML_WRAPPED = re.compile(r"<tool_call>\s*<function=([^>\s]+)\s*>(.*?)</function>\s*</tool_call>", re.DOTALL)
_XML_BARE = re.compile(r"<function=([^>\s]+)\s*>(.*?)</function>", re.DOTALL)
_XML_PARAM = re.compile(r"<parameter=([^>\s]+)\s*>(.*?)</parameter>", re.DOTALL)
_LOOSE_TOOL = re.compile(r'"tool"\s*:\s*"([^"]+)"')
_LOOSE_ARGS = re.compile(r'"arguments"\s*:\s*(?=\{)')
_LOOSE_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_\-]*)\s*\(\s*(?=\{)")


def balanced_json_object(text: str, start: int) -> tuple[str, int] | None:
    """The ``{...}`` starting at ``text[start]``, braces inside JSON strings ignored; (object, end)."""
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    in_string = False
    escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start : index + 1], index + 1
    return None  # unbalanced: the generation was cut off mid-object


def _load_object(raw: str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _arguments_json(arguments: Any) -> str:
    # A model may already give the arguments as a JSON string; keep it rather than double-encoding.
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments if arguments is not None else {})


def _has_parameters(arguments: str) -> bool:
    value = _load_object(arguments)
    return bool(value)


def parse_lmstudio(text: str) -> list[ToolCall]:
    calls = []
    for match in _LMSTUDIO.finditer(text):
        payload = _load_object(match.group(1).strip())
        if payload and isinstance(payload.get("name"), str):
            calls.append({"name": payload["name"], "arguments": _arguments_json(payload.get("arguments", {}))})
    return calls


def parse_harmony(text: str) -> list[ToolCall]:
    calls = []
    for match in _HARMONY.finditer(text):
        start = match.end()
        while start < len(text) and text[start].isspace():
            start += 1
        found = balanced_json_object(text, start)
        if found is None:
            continue
        payload = _load_object(found[0])
        if payload is not None:
            calls.append({"name": match.group(1), "arguments": json.dumps(payload)})
    return calls


def strip_harmony_markers(text: str) -> str:
    """Removes the analysis/final channel markers that a Harmony model writes into plain text."""
    return _HARMONY_TEXT_MARKERS.sub("", text)


def parse_hermes(text: str) -> list[ToolCall]:
    calls = []
    for match in _HERMES_OPEN.finditer(text):
        found = balanced_json_object(text, match.end())
        if found is None:
            continue
        payload = _load_object(found[0])
        if payload and isinstance(payload.get("name"), str):
            calls.append({"name": payload["name"], "arguments": _arguments_json(payload.get("arguments", {}))})
    return calls


def _strip_quotes(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _xml_calls(matches: Iterable[re.Match[str]]) -> list[ToolCall]:
    calls = []
    for match in matches:
        # Values stay strings, even when they look like numbers: the original did not convert them.
        params = {key: _strip_quotes(value) for key, value in _XML_PARAM.findall(match.group(2))}
        calls.append({"name": match.group(1), "arguments": json.dumps(params)})
    return calls


def parse_qwen_xml(text: str) -> list[ToolCall]:
    wrapped = list(_XML_WRAPPED.finditer(text))
    if wrapped:
        return _xml_calls(wrapped)
    return _xml_calls(_XML_BARE.finditer(text))


def parse_loose_tool_key(text: str) -> list[ToolCall]:
    calls = []
    for match in _LOOSE_TOOL.finditer(text):
        args = _LOOSE_ARGS.search(text, match.end())
        if args is None:
            continue
        found = balanced_json_object(text, args.end())
        payload = _load_object(found[0]) if found else None
        if payload is not None:
            calls.append({"name": match.group(1), "arguments": json.dumps(payload)})
    return calls


def parse_loose_call(text: str) -> list[ToolCall]:
    calls = []
    for match in _LOOSE_CALL.finditer(text):
        found = balanced_json_object(text, match.end())
        if found is None or not text[found[1] :].lstrip().startswith(")"):
            continue
        payload = _load_object(found[0])
        if payload is not None:
            calls.append({"name": match.group(1), "arguments": json.dumps(payload)})
    return calls


def _keep(calls: list[ToolCall], tool_names: set[str]) -> list[ToolCall]:
    """Step-3 filter: known tools only, the first call per name, no call without parameters."""
    kept: list[ToolCall] = []
    seen: set[str] = set()
    for call in calls:
        if call["name"] not in tool_names or call["name"] in seen:
            continue
        if not _has_parameters(call["arguments"]):
            continue
        seen.add(call["name"])
        kept.append(call)
    return kept


def tool_names(tools: list[dict[str, Any]] | None) -> set[str]:
    names = set()
    for tool in tools or []:
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return names


def parse_tool_calls(
    text: str, tools: list[dict[str, Any]] | None, parse_hermes_json: bool = False
) -> tuple[str, list[ToolCall]]:
    """Returns (text for the answer, calls). Text is empty when calls were found: never both."""
    for parser in (parse_lmstudio, parse_harmony):
        calls = parser(text)
        if calls:
            return "", calls
    if tools:
        names = tool_names(tools)
        parsers = [parse_qwen_xml, parse_loose_tool_key, parse_loose_call]
        if parse_hermes_json:
            parsers.insert(0, parse_hermes)
        for parser in parsers:
            calls = _keep(parser(text), names)
            if calls:
                return "", calls
    return strip_harmony_markers(text), []
