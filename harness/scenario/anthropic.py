"""Anthropic Messages API traffic -> the OpenAI chat-completions traffic that a coding-agent proxy
sends to an OpenAI-compatible backend in its place (``harness import`` of proxy traces).

The conversion rules, each applied where it is marked below (``R1`` ... ``R9``), and listed in
docs/sessions.md. A block or field that cannot be converted is never dropped silently:
it becomes a note on the turn, which the import prints and the report shows.

R1 system: a string becomes one ``system`` message; a list of text blocks becomes one ``system``
   message, their texts joined with a newline.
R2 ``cache_control`` markers (on system, message and tool blocks) are removed: the OpenAI format
   has no prompt-cache hints. One note per request says how many there were.
R3 user messages: string content stays a string. In a list, each ``tool_result`` block becomes a
   ``role: "tool"`` message with its ``tool_call_id``, in order, placed before the user's own
   content; what is left keeps its order: ``text`` blocks as text parts, ``image`` blocks as
   ``image_url`` parts (a base64 source as a data URL). One text part alone becomes a plain string.
R4 tool results: string content stays as it is; a list of text blocks is joined with a newline.
   An image inside a tool result cannot be carried (a tool message is text only): noted.
   ``is_error: true`` has no OpenAI counterpart: the content is kept as it is, and noted.
R5 assistant messages: the text and the tool calls of one turn stay in one message: ``content`` is
   the text blocks concatenated (``""`` when there are only tool calls) and each ``tool_use`` block
   becomes a ``tool_calls`` entry with its id, name and ``input`` as compact JSON ``arguments``.
   ``thinking`` and ``redacted_thinking`` blocks have no place in the request: noted and left out.
R6 tools: ``{name, description, input_schema}`` becomes ``{"type": "function", "function": {name,
   description, "parameters": input_schema}}``, the schema unchanged. A server tool (no
   ``input_schema``, e.g. web search) cannot be offered to a backend: noted and left out.
R7 tool_choice: ``auto`` -> ``"auto"``, ``any`` -> ``"required"``, ``none`` -> ``"none"``,
   ``tool`` -> ``{"type": "function", "function": {"name": ...}}``; ``disable_parallel_tool_use``
   -> ``parallel_tool_calls: false``.
R8 parameters: ``model``, ``max_tokens``, ``temperature``, ``top_p`` and ``stream`` keep their
   names, ``stop_sequences`` becomes ``stop``; any other field (``top_k``, ``metadata``,
   ``thinking``, ...) has no OpenAI counterpart: noted and left out.
R9 the recorded answer (a Messages object, or the SSE text of a streamed one) becomes a
   ``chat.completion`` object by R5, with ``stop_reason`` mapped (``end_turn`` and
   ``stop_sequence`` -> ``stop``, ``max_tokens`` -> ``length``, ``tool_use`` -> ``tool_calls``)
   and ``usage`` as prompt tokens (input plus cache reads and writes) and completion tokens.
   A thinking block in it is noted and left out.
Any other block type is noted and left out, naming the type.
"""

from __future__ import annotations

import json
from typing import Any

from harness.core.sse import SSEReader

# R8: fields with the same meaning in both formats, in the order they are written.
_SAME_PARAMS = ("max_tokens", "temperature", "top_p")
# R9
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
# R7
_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}


def compact_json(value: Any) -> str:
    """JSON as a JavaScript client writes it (``JSON.stringify``): no spaces, non-ASCII kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _Conversion:
    """One request's conversion, collecting its notes."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.cache_markers = 0

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def count_cache_marker(self, block: Any) -> None:
        if isinstance(block, dict) and "cache_control" in block:
            self.cache_markers += 1

    # -- R1 ------------------------------------------------------------------------------------
    def system(self, system: Any) -> str | None:
        if system is None:
            return None
        if isinstance(system, str):
            return system
        if not isinstance(system, list):
            self.note(f"system: a {type(system).__name__} is neither text nor a list of blocks; left out")
            return None
        texts = []
        for index, block in enumerate(system):
            self.count_cache_marker(block)
            if isinstance(block, dict) and block.get("type") == "text":
                texts.append(str(block.get("text", "")))
            else:
                self.note(f"system[{index}]: a {_block_type(block)} block cannot be a system prompt; left out")
        return "\n".join(texts)

    # -- R3, R4 --------------------------------------------------------------------------------
    def user(self, index: int, content: Any) -> list[dict[str, Any]]:
        if isinstance(content, str):
            return [{"role": "user", "content": content}]
        tool_messages: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        for position, block in enumerate(_blocks(content)):
            where = f"messages[{index}].content[{position}]"
            self.count_cache_marker(block)
            kind = _block_type(block)
            if kind == "tool_result":
                tool_messages.append(self.tool_result(where, block))
            elif kind == "text":
                parts.append({"type": "text", "text": str(block.get("text", ""))})
            elif kind == "image":
                image = self.image(where, block)
                if image is not None:
                    parts.append(image)
            else:
                self.note(f"{where} (user): a {kind} block has no OpenAI counterpart; left out")
        messages = tool_messages
        if len(parts) == 1 and parts[0]["type"] == "text":
            messages.append({"role": "user", "content": parts[0]["text"]})
        elif parts:
            messages.append({"role": "user", "content": parts})
        return messages

    def tool_result(self, where: str, block: dict[str, Any]) -> dict[str, Any]:
        content = block.get("content")
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        else:
            texts = []
            for position, inner in enumerate(_blocks(content)):
                self.count_cache_marker(inner)
                kind = _block_type(inner)
                if kind == "text":
                    texts.append(str(inner.get("text", "")))
                elif kind == "image":
                    self.note(
                        f"{where}.content[{position}] (tool_result): an image in a tool result cannot be "
                        "carried (an OpenAI tool message is text only); left out"
                    )
                else:
                    self.note(f"{where}.content[{position}] (tool_result): a {kind} block left out")
            text = "\n".join(texts)
        if block.get("is_error"):
            self.note(
                f"{where} (tool_result for {block.get('tool_use_id')}): is_error has no OpenAI counterpart; "
                "the error text is sent as a plain tool result"
            )
        return {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text}

    def image(self, where: str, block: dict[str, Any]) -> dict[str, Any] | None:
        raw = block.get("source")
        source: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if source.get("type") == "base64" and source.get("data"):
            url = f"data:{source.get('media_type', 'image/png')};base64,{source['data']}"
        elif source.get("type") == "url" and source.get("url"):
            url = str(source["url"])
        else:
            self.note(f"{where} (image): a {source.get('type')!r} image source cannot be sent as a URL; left out")
            return None
        return {"type": "image_url", "image_url": {"url": url}}

    # -- R5 ------------------------------------------------------------------------------------
    def assistant(self, where: str, content: Any, answer: bool = False) -> dict[str, Any]:
        if isinstance(content, str):
            return {"role": "assistant", "content": content}
        text = ""
        calls = []
        for position, block in enumerate(_blocks(content)):
            self.count_cache_marker(block)
            kind = _block_type(block)
            if kind == "text":
                text += str(block.get("text", ""))
            elif kind == "tool_use":
                calls.append(
                    {
                        "id": str(block.get("id", "")),
                        "type": "function",
                        "function": {"name": str(block.get("name", "")), "arguments": compact_json(block.get("input"))},
                    }
                )
            elif kind in ("thinking", "redacted_thinking"):
                self.note(
                    f"{where}.content[{position}]: a {kind} block has no place in an OpenAI "
                    + ("answer; left out of the A/B reference" if answer else "request; left out")
                )
            else:
                self.note(f"{where}.content[{position}]: a {kind} block has no OpenAI counterpart; left out")
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = calls
        return message

    # -- R6 ------------------------------------------------------------------------------------
    def tools(self, tools: Any) -> list[dict[str, Any]]:
        converted = []
        for index, tool in enumerate(tools if isinstance(tools, list) else []):
            self.count_cache_marker(tool)
            if not isinstance(tool, dict) or not isinstance(tool.get("input_schema"), dict):
                name = tool.get("name") if isinstance(tool, dict) else None
                kind = tool.get("type") if isinstance(tool, dict) else type(tool).__name__
                self.note(
                    f"tools[{index}]: {name or '?'} ({kind or 'no type'}) has no input_schema (a server tool): "
                    "a backend cannot run it; left out"
                )
                continue
            function: dict[str, Any] = {"name": str(tool.get("name", ""))}
            if tool.get("description") is not None:
                function["description"] = tool["description"]
            function["parameters"] = tool["input_schema"]
            converted.append({"type": "function", "function": function})
        return converted

    # -- R7 ------------------------------------------------------------------------------------
    def tool_choice(self, choice: Any, body: dict[str, Any]) -> None:
        if not isinstance(choice, dict):
            self.note(f"tool_choice {choice!r} is not an object; left out")
            return
        kind = choice.get("type")
        if kind in _TOOL_CHOICE:
            body["tool_choice"] = _TOOL_CHOICE[kind]
        elif kind == "tool" and choice.get("name"):
            body["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        else:
            self.note(f"tool_choice type {kind!r} has no OpenAI counterpart; left out")
            return
        if choice.get("disable_parallel_tool_use"):
            body["parallel_tool_calls"] = False


def openai_tool_choice(choice: Any) -> str | dict[str, Any] | None:
    """R7 alone: the OpenAI form of a Messages API ``tool_choice`` (None when it has none)."""
    if not isinstance(choice, dict):
        return None
    body: dict[str, Any] = {}
    _Conversion().tool_choice(choice, body)
    found = body.get("tool_choice")
    return found if isinstance(found, str | dict) else None


def messages_tool_choice(choice: str | dict[str, Any]) -> dict[str, Any]:
    """R7 backwards, for a mode that sets ``tool_choice`` (given in the OpenAI form) on an Anthropic
    request: "required" -> ``any``, "auto" / "none" as they are, a named function -> ``tool``."""
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else choice.get("name")
        return {"type": "tool", "name": str(name)}
    back = {value: key for key, value in _TOOL_CHOICE.items()}
    return {"type": back[choice]} if choice in back else {"type": "tool", "name": choice}


def _blocks(content: Any) -> list[Any]:
    return content if isinstance(content, list) else [content]


def _block_type(block: Any) -> str:
    if isinstance(block, dict):
        return str(block.get("type") or "untyped")
    return type(block).__name__


def convert_request(anthropic: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The OpenAI chat-completions body for one Messages API request, and the conversion's notes."""
    conversion = _Conversion()
    messages: list[dict[str, Any]] = []
    system = conversion.system(anthropic.get("system"))  # R1
    if system is not None:
        messages.append({"role": "system", "content": system})
    for index, message in enumerate(anthropic.get("messages") or []):
        if not isinstance(message, dict):
            conversion.note(f"messages[{index}]: not an object; left out")
            continue
        role, content = message.get("role"), message.get("content")
        if role == "user":
            messages.extend(conversion.user(index, content))  # R3, R4
        elif role == "assistant":
            messages.append(conversion.assistant(f"messages[{index}]", content))  # R5
        else:
            conversion.note(f"messages[{index}]: role {role!r} is not user or assistant; left out")

    body: dict[str, Any] = {}
    if "model" in anthropic:
        body["model"] = anthropic["model"]
    body["messages"] = messages
    if "tools" in anthropic:
        tools = conversion.tools(anthropic["tools"])  # R6
        if tools:
            body["tools"] = tools
    if "tool_choice" in anthropic:
        conversion.tool_choice(anthropic["tool_choice"], body)  # R7
    for name in _SAME_PARAMS:  # R8
        if name in anthropic:
            body[name] = anthropic[name]
    if "stop_sequences" in anthropic:
        body["stop"] = anthropic["stop_sequences"]
    if "stream" in anthropic:
        body["stream"] = anthropic["stream"]
    handled = {"model", "messages", "system", "tools", "tool_choice", "stop_sequences", "stream", *_SAME_PARAMS}
    for name in anthropic:
        if name not in handled:
            conversion.note(f"parameter {name!r} has no OpenAI counterpart; left out")
    if conversion.cache_markers:  # R2
        conversion.note(
            f"cache_control removed from {conversion.cache_markers} block(s): "
            "the OpenAI format has no prompt-cache hints"
        )
    return body, conversion.notes


# -- R9: the recorded answer ---------------------------------------------------------------------


def _sse_message(text: str) -> dict[str, Any] | None:
    """The Messages object a streamed answer (Anthropic SSE events) adds up to; None if none."""
    message: dict[str, Any] | None = None
    blocks: dict[int, dict[str, Any]] = {}
    partial_json: dict[int, str] = {}
    reader = SSEReader()
    reader.feed(text.encode("utf-8"), 0.0)
    reader.close(0.0)
    for event in reader.events:
        payload = event.payload  # None for [DONE] and for an event that is not a JSON object
        if payload is None:
            continue
        kind = payload.get("type")
        if kind == "message_start" and isinstance(payload.get("message"), dict):
            message = dict(payload["message"])
            message["content"] = []
        elif kind == "content_block_start" and isinstance(payload.get("content_block"), dict):
            blocks[int(payload.get("index", len(blocks)))] = dict(payload["content_block"])
        elif kind == "content_block_delta" and isinstance(payload.get("delta"), dict):
            index, delta = int(payload.get("index", 0)), payload["delta"]
            block = blocks.setdefault(index, {"type": "text", "text": ""})
            if delta.get("type") == "text_delta":
                block["text"] = block.get("text", "") + str(delta.get("text", ""))
            elif delta.get("type") == "input_json_delta":
                partial_json[index] = partial_json.get(index, "") + str(delta.get("partial_json", ""))
            elif delta.get("type") == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + str(delta.get("thinking", ""))
        elif kind == "message_delta":
            message = message if message is not None else {"content": []}
            if isinstance(payload.get("delta"), dict):
                message.update({k: v for k, v in payload["delta"].items() if v is not None})
            if isinstance(payload.get("usage"), dict):
                message["usage"] = {**(message.get("usage") or {}), **payload["usage"]}
    if message is None and not blocks:
        return None
    message = message if message is not None else {}
    for index, raw in partial_json.items():
        try:
            blocks[index]["input"] = json.loads(raw) if raw else {}
        except ValueError:
            blocks[index]["input"] = raw
    message["content"] = [blocks[index] for index in sorted(blocks)]
    return message


def convert_response(body: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """The recorded answer as a ``chat.completion`` object (R9), and notes; None when there is none."""
    notes: list[str] = []
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            body = _sse_message(body)
    if not isinstance(body, dict) or not isinstance(body.get("content"), list):
        if body is not None:
            notes.append("the recorded answer is not a Messages object or stream; not kept as the A/B reference")
        return None, notes
    conversion = _Conversion()
    message = conversion.assistant("response", body["content"], answer=True)
    notes.extend(conversion.notes)
    calls = message.get("tool_calls")
    text = message["content"] if message["content"] or not calls else None
    answer: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        answer["tool_calls"] = calls
    completion: dict[str, Any] = {"object": "chat.completion"}
    if body.get("id"):
        completion["id"] = body["id"]
    if body.get("model"):
        completion["model"] = body["model"]
    stop = body.get("stop_reason")
    finish = STOP_REASONS.get(stop, stop) if isinstance(stop, str) else stop
    completion["choices"] = [{"index": 0, "message": answer, "finish_reason": finish}]
    usage = body.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("output_tokens"), int):
        prompt = sum(
            usage.get(key) or 0
            for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
            if isinstance(usage.get(key) or 0, int)
        )
        completion["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": usage["output_tokens"],
            "total_tokens": prompt + usage["output_tokens"],
        }
    return completion, notes
