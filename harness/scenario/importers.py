"""``harness import``: saved traffic -> recorded scenarios (one per session).

What it reads, from files or folders (every ``*.json`` and ``*.jsonl`` directly in a folder):

- an OpenAI chat-completions request body (a JSON object with ``messages``);
- a recorded pair ``{"request": BODY, "response": ANSWER}``, ANSWER a ``chat.completion`` object or
  null (what ``harness record`` keeps in its ``exchanges.jsonl``);
- a proxy trace, as the coding-agent proxy of the README's origin story writes one per request:
  ``{"timestamp", "mode", "request": {"method", "url", "headers", "body"}, "response": {"statusCode",
  "headers", "body"}}``. A body sent to ``/v1/messages`` is an Anthropic Messages API request and is
  converted (``harness.scenario.anthropic``, rules R1-R9), and kept as it was too
  (``anthropic_request``), so that it can also be replayed natively (``--protocol anthropic``); one
  sent to ``/v1/chat/completions`` is kept as it is.

One object per ``.json`` file (or a JSON list of them), one per line of a ``.jsonl`` file. Requests
are taken in timestamp order when every one has a timestamp, else in the order read (files by name).
Requests with nothing to replay (``count_tokens``, a ``GET``) are skipped, each with a reason.
Headers are never kept; the keys they carried are masked wherever they appear
(``harness.scenario.recorded``). Anything else is an ``InputError`` naming the file and what was
expected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import InputError
from harness.scenario import anthropic
from harness.scenario.recorded import (
    RecordedExchange,
    WrittenScenario,
    header_secrets,
    mask_secrets,
    session_names,
    split_sessions,
    strip_secrets,
    write_sessions,
)

EXPECTED = (
    "Expected an OpenAI chat-completions request body (a JSON object with 'messages'), a recorded pair "
    '{"request": BODY, "response": ANSWER}, or a proxy trace {"timestamp", "mode", "request": {"method", '
    '"url", "headers", "body"}, "response": {"statusCode", "headers", "body"}}: one per .json file (or a '
    "JSON list of them), or one per line of a .jsonl file."
)
SUFFIXES = (".json", ".jsonl")
_ERROR_BODY_CHARS = 300


@dataclass
class ImportResult:
    """What the input held: the exchanges to replay, in order, and what was skipped and why."""

    exchanges: list[RecordedExchange] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)


def input_files(paths: list[Path]) -> list[Path]:
    """The files to read: each file given, and every .json / .jsonl file directly in each folder."""
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
            if not found:
                deeper = {p.parent.relative_to(path).as_posix() for p in path.rglob("*") if p.suffix in SUFFIXES}
                nested = sorted(deeper)
                hint = f" (its subfolder(s) {', '.join(nested[:5])} have some: pass one of those)" if nested else ""
                raise InputError(f"{path}: no .json or .jsonl file in this folder{hint}. {EXPECTED}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{path}: no such file or folder. Give a file or a folder of saved requests.")
    return files


def _objects(path: Path) -> list[tuple[str, Any]]:
    """(where, parsed JSON value) for each object in a file; a parse error names the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text. {EXPECTED}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    if not text.strip():
        raise InputError(f"{path}: the file is empty. {EXPECTED}")
    if path.suffix == ".jsonl":
        found = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                found.append((f"{path}:{number}", json.loads(line)))
            except ValueError as exc:
                raise InputError(f"{path}, line {number}: not JSON ({_reason(exc)}). {EXPECTED}") from None
        return found
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{path}: not JSON ({_reason(exc)}). {EXPECTED}") from None
    if isinstance(value, list):
        return [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    return [(str(path), value)]


def _reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    return str(exc)


def _kind(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    request = value.get("request")
    if isinstance(request, dict) and "body" in request:
        return "trace"
    if isinstance(request, dict) and isinstance(request.get("messages"), list):
        return "openai-pair"
    if isinstance(value.get("messages"), list):
        return "openai-body"
    return None


def _looks_anthropic(body: dict[str, Any]) -> bool:
    """A Messages API body: a system block list, or content blocks only that API has."""
    if isinstance(body.get("system"), list) or "stop_sequences" in body:
        return True
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        blocks = content if isinstance(content, list) else []
        if {block.get("type") for block in blocks if isinstance(block, dict)} & {"tool_use", "tool_result", "thinking"}:
            return True
    return False


def _openai_response(value: Any) -> tuple[dict[str, Any] | None, list[str]]:
    if value is None:
        return None, []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None, ["the recorded answer is raw text (a stream?), not a chat.completion object; not kept"]
    if isinstance(value, dict) and isinstance(value.get("choices"), list):
        return value, []
    return None, ["the recorded answer is not a chat.completion object; not kept"]


def _error_text(body: Any) -> str:
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return text if len(text) <= _ERROR_BODY_CHARS else text[: _ERROR_BODY_CHARS - 3] + "..."


def _from_trace(where: str, trace: dict[str, Any], result: ImportResult) -> RecordedExchange | None:
    request = trace["request"]
    method = str(request.get("method") or "POST").upper()
    url = str(request.get("url") or "")
    if method != "POST":
        result.skipped.append(f"{where}: a {method} {url or 'request'}, nothing to replay")
        return None
    if "count_tokens" in url:
        result.skipped.append(f"{where}: a token-count request ({url}), nothing to replay")
        return None
    body = request.get("body")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            raise InputError(f"{where}: request.body is a string that is not JSON. {EXPECTED}") from None
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise InputError(f"{where}: request.body has no 'messages' list, so it is not a chat request. {EXPECTED}")
    secrets = header_secrets(request.get("headers"))
    body, in_body = strip_secrets(body)
    secrets += in_body
    response = trace.get("response") if isinstance(trace.get("response"), dict) else None
    if response is not None:
        secrets += header_secrets(response.get("headers"))
    notes: list[str] = []
    anthropic_body = "chat/completions" not in url and ("/messages" in url or _looks_anthropic(body))
    if anthropic_body:
        converted, notes = anthropic.convert_request(body)
        result.formats["anthropic trace"] = result.formats.get("anthropic trace", 0) + 1
    else:
        converted = body
        result.formats["openai trace"] = result.formats.get("openai trace", 0) + 1
    answer = None
    if response is not None and response.get("body") is not None:
        status = response.get("statusCode", response.get("status"))
        if status not in (200, None):
            notes.append(f"the recorded answer was HTTP {status}: {_error_text(response.get('body'))}")
        elif anthropic_body:
            answer, more = anthropic.convert_response(response["body"])
            notes += more
        else:
            answer, more = _openai_response(response["body"])
            notes += more
    return RecordedExchange(
        request=mask_secrets(converted, secrets),
        response=mask_secrets(answer, secrets),
        notes=mask_secrets(notes, secrets),
        source=where,
        anthropic_request=mask_secrets(body, secrets) if anthropic_body else None,
    )


def _exchange(where: str, value: Any, result: ImportResult) -> RecordedExchange | None:
    kind = _kind(value)
    if kind is None:
        shape = f"a JSON {type(value).__name__}"
        if isinstance(value, dict):
            shape = f"a JSON object with keys {sorted(value)[:8]}"
        raise InputError(f"{where}: {shape} is not a format harness import reads. {EXPECTED}")
    if kind == "trace":
        return _from_trace(where, value, result)
    result.formats[kind] = result.formats.get(kind, 0) + 1
    body = value["request"] if kind == "openai-pair" else value
    body, secrets = strip_secrets(body)
    answer, notes = _openai_response(value.get("response")) if kind == "openai-pair" else (None, [])
    # A pair from ``harness record``'s journal keeps the Messages API body it was converted from.
    original = value.get("anthropic_request") if kind == "openai-pair" else None
    if isinstance(original, dict):
        original, more = strip_secrets(original)
        secrets += more
    return RecordedExchange(
        request=mask_secrets(body, secrets),
        response=mask_secrets(answer, secrets),
        notes=notes,
        source=where,
        anthropic_request=mask_secrets(original, secrets) if isinstance(original, dict) else None,
    )


def read_traffic(paths: list[Path]) -> ImportResult:
    """Every request in ``paths``, converted, in order; see the module docstring."""
    result = ImportResult()
    stamped: list[tuple[Any, RecordedExchange]] = []
    for path in input_files(paths):
        for where, value in _objects(path):
            exchange = _exchange(where, value, result)
            if exchange is not None:
                stamp = value.get("timestamp") if isinstance(value, dict) else None
                stamped.append((stamp, exchange))
    if all(isinstance(stamp, str) for stamp, _ in stamped):
        stamped.sort(key=lambda item: item[0])  # ISO 8601 times sort as text; the sort is stable
    result.exchanges = [exchange for _, exchange in stamped]
    if not result.exchanges:
        reasons = "; ".join(result.skipped[:3])
        raise InputError(f"{', '.join(map(str, paths))}: no request to replay ({reasons}). {EXPECTED}")
    return result


def write_imported(
    exchanges: list[RecordedExchange], out_dir: Path, base: str, description: str, force: bool = False
) -> list[WrittenScenario]:
    """Splits ``exchanges`` into sessions and writes one scenario file per session into ``out_dir``;
    existing files are kept unless ``force``."""
    sessions = split_sessions(exchanges)
    names = session_names(base, len(sessions))
    existing = [str(Path(out_dir) / f"{name}.yaml") for name in names if (Path(out_dir) / f"{name}.yaml").exists()]
    if existing and not force:
        raise InputError(
            f"{', '.join(existing)} already exist(s). Pass --force to overwrite, or choose another --name or --out."
        )
    return write_sessions(sessions, out_dir, base, description)
