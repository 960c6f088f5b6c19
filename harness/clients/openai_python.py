"""The ``openai`` Python package as a client under replay.

The client is pointed at a mock transport (of ``httpx2``, the HTTP package openai 3 is built on, or
``httpx`` for older releases) that answers with the captured bytes, so its own
code reads them: ``chat.completions.create`` parses a non-streamed body into a ``ChatCompletion``,
and ``chat.completions.stream`` (the SDK's stream helper) parses the SSE events and assembles the
chunks into the final completion, tool calls included. A cut answer is replayed as the transport
ended it: the bytes that came, then ``RemoteProtocolError``. Arguments are parsed with
``json.loads`` as an application does; a call whose arguments do not parse keeps the raw string.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import httpx

from harness.clients.answers import OPENAI_CHAT, CapturedAnswer, ClientResult
from harness.clients.transport import describe, parsed_arguments, replay_transport

NAME = "openai-python"
PROTOCOLS = (OPENAI_CHAT,)
_MESSAGES: list[Any] = [{"role": "user", "content": "replay"}]


def version() -> str:
    import openai

    return str(openai.__version__)


def _http_package() -> ModuleType:
    """The HTTP package the installed openai is built on: ``httpx2`` from openai 3, else ``httpx``."""
    try:
        import httpx2
    except ImportError:
        return httpx
    return httpx2


def _read_message(result: ClientResult, completion: Any) -> None:
    choices = getattr(completion, "choices", None) or []
    if not choices:
        return
    choice = choices[0]
    message = getattr(choice, "message", None)
    result.text = (getattr(message, "content", None) or "") if message is not None else ""
    for call in getattr(message, "tool_calls", None) or []:
        function = getattr(call, "function", None)
        result.tool_calls.append(
            {
                "name": getattr(function, "name", None),
                "arguments": parsed_arguments(getattr(function, "arguments", None)),
            }
        )
    result.finish_reason = getattr(choice, "finish_reason", None)


def replay(answer: CapturedAnswer) -> ClientResult:
    import openai

    result = ClientResult(answer.key, NAME)
    transport = _http_package()
    with transport.Client(transport=replay_transport(answer, transport)) as http:
        client = openai.OpenAI(api_key="replay", base_url="http://replay.invalid/v1", http_client=http, max_retries=0)
        if not answer.stream:
            try:
                _read_message(result, client.chat.completions.create(model="replay", messages=_MESSAGES))
            except Exception as exc:  # what the client raised is the finding
                result.error = describe(exc)
            return result
        manager = client.chat.completions.stream(model="replay", messages=_MESSAGES)
        stream = None
        try:
            with manager as stream:
                for _event in stream:
                    pass
                _read_message(result, stream.get_final_completion())
        except Exception as exc:
            result.error = describe(exc)
            # What the application had read before the exception.
            try:
                snapshot = stream.current_completion_snapshot if stream is not None else None
            except AssertionError:  # no chunk was read before the failure
                snapshot = None
            if snapshot is not None:
                _read_message(result, snapshot)
        return result
