"""Real traffic -> recorded scenarios: requests told apart into sessions, secrets stripped, and each
session written as a scenario file whose turns are whole request bodies, replayed exactly.

``harness record`` (the recording proxy) and ``harness import`` (saved traffic) both end here.

Sessions. A coding agent sends every request of a conversation with the whole history before it,
so the requests of one conversation share a message prefix. A request continues an open session
when it offers the same tools (by name) as that session's latest request and shares at least its
first non-system message with it; of several such sessions, the one sharing the longest prefix
wins, then the one used most recently. Anything else starts a new session: a new conversation, or
a side request (a title, a summary) with its own short messages or no tools. System messages are
left out of the comparison, since a per-request header line in the system prompt (a billing tag)
changes on every request of one conversation. Two conversations that open with the same message
and the same tools are taken for one.

Secrets. API keys travel in headers (``Authorization``, ``x-api-key``, ``api-key``) and sometimes in
the body (``api_key``). Headers are never kept; key fields at the top of a body are removed; and
the values of those headers and fields are masked as ``***`` wherever they appear in what is kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Header names whose values are secrets (compared lower-cased, as substrings).
SECRET_HEADER_PARTS = ("authorization", "api-key", "api_key", "apikey", "token", "secret", "cookie")
# Body fields that carry a key: removed from the top level of every recorded body.
SECRET_BODY_FIELDS = frozenset({"api_key", "apikey", "api-key", "authorization", "x-api-key", "access_token"})
MASK = "***"
# Placeholders other tools write instead of a key: nothing to mask.
_PLACEHOLDERS = {"", "[redacted]", "***", "redacted"}
# Secrets shorter than this are not masked inside other text (a 1-3 character "key" would mangle it).
_MIN_SECRET_CHARS = 6


def header_secrets(headers: Mapping[str, Any] | None) -> list[str]:
    """The secret values in ``headers``: a bearer token without its scheme, an API key, a cookie."""
    found: list[str] = []
    for name, value in (headers or {}).items():
        if not any(part in str(name).lower() for part in SECRET_HEADER_PARTS):
            continue
        for item in value if isinstance(value, list) else [value]:
            text = str(item).strip()
            scheme, _, rest = text.partition(" ")
            if rest and scheme.lower() in ("bearer", "basic", "token"):
                text = rest.strip()
            if text.lower() not in _PLACEHOLDERS:
                found.append(text)
    return found


def strip_secrets(body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``body`` without its top-level key fields, and the values it carried there."""
    found = [str(value) for key, value in body.items() if key.lower() in SECRET_BODY_FIELDS and value]
    kept = {key: value for key, value in body.items() if key.lower() not in SECRET_BODY_FIELDS}
    return kept, [value for value in found if value.lower() not in _PLACEHOLDERS]


def mask_secrets(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` (any JSON value) with every secret replaced by ``***`` inside its strings."""
    wanted = sorted({s for s in secrets if len(s) >= _MIN_SECRET_CHARS}, key=len, reverse=True)
    if not wanted:
        return value

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            for secret in wanted:
                if secret in item:
                    item = item.replace(secret, MASK)
            return item
        if isinstance(item, dict):
            return {walk(key) if isinstance(key, str) else key: walk(val) for key, val in item.items()}
        if isinstance(item, list):
            return [walk(val) for val in item]
        return item

    return walk(value)


@dataclass
class RecordedExchange:
    """One chat-completions request as the client sent it, with the answer it got.

    ``response`` is the answer as a ``chat.completion`` object (assembled from the chunks when it
    was streamed), or None when there was none to keep (an error, a request-only trace).
    ``notes`` say what could not be kept or converted, one sentence each.
    """

    request: dict[str, Any]
    response: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    source: str = ""  # where it came from, for messages (a file, file:line, or "proxy")
    # The request as the client sent it to a Messages API endpoint, when it did (``request`` is then
    # its conversion): kept so that it can be replayed natively (--protocol anthropic).
    anthropic_request: dict[str, Any] | None = None

    def turn(self) -> dict[str, Any]:
        """The scenario turn: ``request`` (and ``anthropic_request``), then ``response`` and
        ``notes`` where there are any."""
        turn: dict[str, Any] = {"request": self.request}
        if self.anthropic_request is not None:
            turn["anthropic_request"] = self.anthropic_request
        if self.response is not None:
            turn["response"] = self.response
        if self.notes:
            turn["notes"] = list(self.notes)
        return turn


def _canonical(message: Any) -> str:
    return json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _conversation_keys(body: Mapping[str, Any]) -> list[str]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [
        _canonical(message)
        for message in messages
        if not (isinstance(message, dict) and message.get("role") in ("system", "developer"))
    ]


def _tool_names(body: Mapping[str, Any]) -> tuple[str, ...]:
    names = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            function = tool.get("function")
            names.append(str(function.get("name")) if isinstance(function, dict) else str(tool.get("name")))
    return tuple(sorted(names))


def _shared_prefix(a: list[str], b: list[str]) -> int:
    shared = 0
    for left, right in zip(a, b, strict=False):
        if left != right:
            break
        shared += 1
    return shared


@dataclass
class Session:
    """The requests of one conversation, in the order they were sent."""

    exchanges: list[RecordedExchange] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # the latest request's non-system messages
    tools: tuple[str, ...] = ()
    last_used: int = 0


class SessionSplitter:
    """Assigns each request to a session by the rule in the module docstring."""

    def __init__(self) -> None:
        self.sessions: list[Session] = []
        self._clock = 0

    def add(self, exchange: RecordedExchange) -> int:
        """Adds ``exchange`` to its session; returns the session's index (0-based)."""
        self._clock += 1
        keys = _conversation_keys(exchange.request)
        tools = _tool_names(exchange.request)
        best: int | None = None
        best_rank = (0, 0)
        for index, session in enumerate(self.sessions):
            if session.tools != tools:
                continue
            shared = _shared_prefix(session.keys, keys)
            rank = (shared, session.last_used)
            if shared >= 1 and rank > best_rank:
                best, best_rank = index, rank
        if best is None:
            self.sessions.append(Session(tools=tools))
            best = len(self.sessions) - 1
        session = self.sessions[best]
        session.exchanges.append(exchange)
        session.keys = keys
        session.last_used = self._clock
        return best


def split_sessions(exchanges: list[RecordedExchange]) -> list[list[RecordedExchange]]:
    """``exchanges`` (in the order they were sent) as sessions, in the order each one began."""
    splitter = SessionSplitter()
    for exchange in exchanges:
        splitter.add(exchange)
    return [session.exchanges for session in splitter.sessions]


def session_names(base: str, count: int, numbered: bool = False) -> list[str]:
    """``base`` for a single session, else ``base-1`` ... ``base-N``; always numbered when
    ``numbered`` (a recording names its sessions as they begin, before it knows how many)."""
    if count == 1 and not numbered:
        return [base]
    return [f"{base}-{n}" for n in range(1, count + 1)]


def scenario_data(name: str, exchanges: list[RecordedExchange], description: str) -> dict[str, Any]:
    """A recorded scenario as YAML data (the format at the top of ``harness.scenario.definition``)."""
    return {"name": name, "description": description, "turns": [exchange.turn() for exchange in exchanges]}


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Plain YAML data; text with line breaks as literal blocks, so prompts stay readable."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # The emitter falls back to a quoted scalar wherever a block cannot hold the text exactly.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_scenario(data: dict[str, Any]) -> str:
    """The YAML text of a scenario: keys in the order given, every value as it loads back."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100_000)


def write_scenario(path: Path, data: dict[str, Any]) -> Path:
    """Writes ``data`` to ``path`` atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dump_scenario(data), encoding="utf-8")
    tmp.replace(path)
    return path


@dataclass
class WrittenScenario:
    path: Path
    name: str
    exchanges: list[RecordedExchange]

    @property
    def notes(self) -> list[str]:
        return [note for exchange in self.exchanges for note in exchange.notes]


def write_sessions(
    sessions: list[list[RecordedExchange]], out_dir: Path, base: str, description: str, numbered: bool = False
) -> list[WrittenScenario]:
    """One scenario file per session in ``out_dir``, named by ``session_names``."""
    written = []
    for name, exchanges in zip(session_names(base, len(sessions), numbered), sessions, strict=True):
        path = write_scenario(Path(out_dir) / f"{name}.yaml", scenario_data(name, exchanges, description))
        written.append(WrittenScenario(path, name, exchanges))
    return written
