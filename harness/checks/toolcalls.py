"""Tool calls as the client sees them: assembled from stream deltas, arguments parsed, compared.

A call is always the same small dict here, whatever the server's shape:
``{"id": str | None, "name": str, "arguments": <parsed JSON object, or the raw string>}``.
Arguments stay a raw string only when they are not a JSON object, which is itself a failure
(an OpenAI client's ``json.loads`` would raise on it).
"""

from __future__ import annotations

import json
from typing import Any

# Tool-call markup of the dialects the servers know. When one of these shows up in the text the
# model did try to call a tool, and the server did not turn it into a structured call.
MARKUP = (
    ("<tool_call>", "Hermes/Qwen <tool_call>"),
    ("<function=", "Qwen XML <function=...>"),
    ("<|channel|>", "Harmony <|channel|>"),
    ("[TOOL_REQUEST]", "LM Studio [TOOL_REQUEST]"),
    ("<|python_tag|>", "Llama <|python_tag|>"),
)


def find_markup(text: str | None) -> str | None:
    """Describes the first tool-call markup in ``text`` (dialect, offset, the bytes), or None."""
    if not text:
        return None
    hits = [(text.find(token), label) for token, label in MARKUP if token in text]
    if not hits:
        return None
    position, label = min(hits)
    return f"{label} at char {position}: {text[position : position + 60]!r}"


def parse_arguments(raw: Any) -> dict[str, Any] | str:
    """A JSON object string -> dict; anything else comes back as a string (the raw text)."""
    if isinstance(raw, dict):
        return raw  # some servers send an object instead of a JSON string; the schema check says so
    if raw is None:
        return ""
    if not isinstance(raw, str):
        return json.dumps(raw)
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, dict) else raw


def as_call(call: Any) -> dict[str, Any]:
    """Our call dict from an OpenAI ``tool_calls`` entry, or from a call dict already in our shape."""
    if not isinstance(call, dict):
        return {"id": None, "name": "", "arguments": str(call)}
    function = call.get("function")
    if isinstance(function, dict):
        name = function.get("name")
        arguments = function.get("arguments")
    else:
        name = call.get("name")
        arguments = call.get("arguments")
    return {
        "id": call.get("id") if isinstance(call.get("id"), str) else None,
        "name": name if isinstance(name, str) else "",
        "arguments": parse_arguments(arguments),
    }


class DeltaAssembler:
    """Joins streamed ``delta.tool_calls`` fragments into whole calls, keyed on their ``index``.

    A fragment without an index (a protocol fault, reported elsewhere) starts a new call when it
    carries an id or a name and the current call already has a name; otherwise it extends the
    current call, which is what a lenient client would do.
    """

    def __init__(self) -> None:
        self._slots: dict[Any, dict[str, Any]] = {}
        self._last: Any = None
        self._synthetic = 0

    def _slot(self, key: Any) -> dict[str, Any]:
        if key not in self._slots:
            self._slots[key] = {"id": None, "name": "", "arguments": "", "object_args": None}
        self._last = key
        return self._slots[key]

    def feed(self, deltas: Any) -> None:
        if not isinstance(deltas, list):
            return
        for delta in deltas:
            if not isinstance(delta, dict):
                continue
            function = delta.get("function")
            if not isinstance(function, dict):
                function = {}
            key = delta.get("index")
            if not isinstance(key, int) or isinstance(key, bool):
                starts = bool(delta.get("id") or function.get("name"))
                if self._last is None or (starts and self._slots[self._last]["name"]):
                    self._synthetic += 1
                    key = ("no-index", self._synthetic)
                else:
                    key = self._last
            slot = self._slot(key)
            if isinstance(delta.get("id"), str) and delta["id"]:
                slot["id"] = delta["id"]
            name = function.get("name")
            if isinstance(name, str) and name and name != slot["name"]:
                slot["name"] += name  # a name streamed in pieces; a repeated full name is kept once
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                slot["arguments"] += arguments
            elif isinstance(arguments, dict):
                slot["object_args"] = arguments

    def add_complete(self, calls: Any) -> None:
        """Whole calls sent at once (the legacy cache-hit stream puts them at choice level)."""
        if not isinstance(calls, list):
            return
        for call in calls:
            parsed = as_call(call)
            self._synthetic += 1
            slot = self._slot(("complete", self._synthetic))
            slot["id"], slot["name"] = parsed["id"], parsed["name"]
            if isinstance(parsed["arguments"], dict):
                slot["object_args"] = parsed["arguments"]
            else:
                slot["arguments"] = parsed["arguments"]

    def calls(self) -> list[dict[str, Any]]:
        result = []
        for slot in self._slots.values():
            arguments = slot["object_args"] if slot["object_args"] is not None else slot["arguments"]
            result.append({"id": slot["id"], "name": slot["name"], "arguments": parse_arguments(arguments)})
        return result


def canonical_json(value: Any) -> str:
    """One spelling per JSON value: sorted keys, no spaces (so key order and formatting vanish)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_arguments(arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            return canonical_json(json.loads(arguments))
        except ValueError:
            return arguments.strip()
    return canonical_json(arguments)


def signature(call: Any, canonical: bool = True) -> str:
    """``name(arguments)`` of a call, ids left out; ``canonical`` also drops key order/formatting."""
    parsed = as_call(call)
    arguments = parsed["arguments"]
    if canonical:
        text = canonical_arguments(arguments)
    else:
        text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return f"{parsed['name']}({text})"


def argument_mismatches(expected: dict[str, Any], actual: Any) -> list[str]:
    """Subset match: each expected key present with the same JSON value ("5" is not 5)."""
    if not isinstance(actual, dict):
        return [f"arguments are not a JSON object: {repr(actual)[:60]}"]
    problems = []
    for key, want in expected.items():
        if key not in actual:
            problems.append(f"{key}: missing")
        elif canonical_json(actual[key]) != canonical_json(want):
            got = json.dumps(actual[key], ensure_ascii=False)
            problems.append(f"{key}: expected {json.dumps(want, ensure_ascii=False)}, got {got}")
    return problems


def tool_names(tools: list[dict[str, Any]]) -> set[str]:
    names = set()
    for tool in tools or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return names


def declared_types(tools: list[dict[str, Any]], name: str) -> dict[str, set[str]]:
    """Parameter name -> JSON-schema types declared for tool ``name`` (empty when unknown)."""
    for tool in tools or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or function.get("name") != name:
            continue
        properties = (function.get("parameters") or {}).get("properties") or {}
        found: dict[str, set[str]] = {}
        for key, spec in properties.items():
            kind = spec.get("type") if isinstance(spec, dict) else None
            if isinstance(kind, str):
                found[key] = {kind}
            elif isinstance(kind, list):
                found[key] = {item for item in kind if isinstance(item, str)}
        return found
    return {}


def history_call_ids(messages: list[dict[str, Any]]) -> set[str]:
    """Every tool-call id already used earlier in the conversation."""
    ids: set[str] = set()
    for message in messages or []:
        if not isinstance(message, dict):
            continue
        if isinstance(message.get("tool_call_id"), str):
            ids.add(message["tool_call_id"])
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and isinstance(call.get("id"), str):
                ids.add(call["id"])
    return ids
