"""The ``anthropic`` Python package as a client under replay, for answers in the Anthropic Messages
protocol (``/v1/messages``).

As for the openai client, the client is pointed at a transport that answers with the captured bytes:
``messages.create`` parses a non-streamed body into a ``Message``, ``messages.stream`` (the SDK's
stream helper) parses the events and accumulates them into the final message, ``tool_use`` blocks
with their JSON input assembled from ``input_json_delta`` fragments. The package is optional
(``pip install anthropic``); without it this client is skipped with that reason.
"""

from __future__ import annotations

from typing import Any

from harness.clients.answers import ANTHROPIC_MESSAGES, CapturedAnswer, ClientResult
from harness.clients.transport import describe, parsed_arguments, replay_transport

NAME = "anthropic-python"
PROTOCOLS = (ANTHROPIC_MESSAGES,)
_MESSAGES: list[Any] = [{"role": "user", "content": "replay"}]


def version() -> str:
    import anthropic

    return str(anthropic.__version__)


def _read_message(result: ClientResult, message: Any) -> None:
    texts = []
    for block in getattr(message, "content", None) or []:
        kind = getattr(block, "type", None)
        if kind == "text":
            texts.append(getattr(block, "text", "") or "")
        elif kind == "tool_use":
            result.tool_calls.append(
                {"name": getattr(block, "name", None), "arguments": parsed_arguments(getattr(block, "input", None))}
            )
    result.text = "".join(texts)
    result.finish_reason = getattr(message, "stop_reason", None)


def replay(answer: CapturedAnswer) -> ClientResult:
    import anthropic
    import httpx2  # the anthropic package's own HTTP package

    result = ClientResult(answer.key, NAME)
    with httpx2.Client(transport=replay_transport(answer, httpx2)) as http:
        client = anthropic.Anthropic(
            api_key="replay", base_url="http://replay.invalid", http_client=http, max_retries=0
        )
        if not answer.stream:
            try:
                _read_message(result, client.messages.create(model="replay", max_tokens=64, messages=_MESSAGES))
            except Exception as exc:  # what the client raised is the finding
                result.error = describe(exc)
            return result
        stream = None
        try:
            with client.messages.stream(model="replay", max_tokens=64, messages=_MESSAGES) as stream:
                for _event in stream:
                    pass
                _read_message(result, stream.get_final_message())
        except Exception as exc:
            result.error = describe(exc)
            try:
                snapshot = stream.current_message_snapshot if stream is not None else None
            except (AssertionError, AttributeError):  # no message started before the failure
                snapshot = None
            if snapshot is not None:
                _read_message(result, snapshot)
        return result
