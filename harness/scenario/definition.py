"""Scenarios: multi-turn conversations loaded from YAML, validated, and expanded into requests.

A scenario file looks like::

    name: agent-session
    system: {file: prompts/agent-system.md}    # or a plain string
    tools: tools/agent-tools.json               # a JSON list of OpenAI tool schemas (optional)
    params: {max_tokens: 32, temperature: 0}    # sampling params sent with every request
    stream: true                                # default for every turn
    turns:
      - user: "Read src/app.py"
        reply: {tool_calls: [{name: Read, arguments: {file_path: src/app.py}}]}
        expect: {tool_calls: [{name: Read}], finish_reason: tool_calls}
      - tool_results: ["<file text>"]           # answers the previous reply's calls, in order
        reply: {content: "The app defines ..."}
      - side: true                              # a side request: sent alone, no tools, not in history
        system: "Write a title of at most five words."
        user: "Read src/app.py"

Each turn is one request. The scripted ``reply`` (never the server's own answer) is appended to the
history afterwards, so every server sees byte-identical prefixes.

A recorded scenario (written by ``harness record`` or ``harness import``, or by hand) has turns that
each carry a whole request body instead, replayed exactly as recorded: the same messages, tools,
tool_choice and parameters, only ``model`` swapped for the server's own id::

    name: my-session
    turns:
      - request: {messages: [...], tools: [...], stream: true, max_tokens: 256}
        response: {...}        # the recorded answer, when there is one (the A/B reference)
        notes: ["..."]         # what the import could not convert, said once here
        expect: {...}          # optional, as on any turn
        name: content-null     # optional on any turn: a short label that reports show

A turn may also carry the request as an Anthropic Messages API body (``anthropic_request:``), as
Claude Code sends it: ``harness import`` of an Anthropic trace and ``harness record`` of a
``/v1/messages`` exchange keep it beside the converted ``request``, and an authored turn may give it
alone (its ``request`` is then the conversion, ``harness.scenario.anthropic``). With ``--protocol
anthropic`` it goes to the server's Messages endpoint as recorded, only ``model`` swapped (and a
mode's ``stream`` / ``tool_choice``); with ``openai`` the converted body goes to chat completions::

      - anthropic_request: {system: [...], messages: [...], tools: [...], max_tokens: 32000, stream: true}
        name: billing-header-changing

The harness never "cleans" a recorded request: the shapes real clients send are what breaks servers.
The one change besides ``model``: when a mode turns streaming off, ``stream_options`` goes too (it is
only valid on a streamed request, and a client that does not stream does not send it).

Scenarios that belong together name a ``family`` (e.g. ``client-shapes``); ``--scenarios FAMILY``
selects every built-in scenario of that family. ``unsupported_ok: true`` says that a clear 4xx
naming what is unsupported is an acceptable answer to any of the scenario's requests (a 5xx, a
dropped connection or a hang never is).

A generated scenario has a ``generate:`` block instead of ``turns`` (``harness.scenario.generated``
builds the turns, deterministically from a seed, out of another scenario's material)::

    name: long-session
    system: {file: prompts/agent-system.md}
    tools: tools/agent-tools.json
    generate: {kind: long-session, material: agent-session, turns: 100, seed: 15, growth_tokens: 45}
    time_budget_s: 1500                       # per server: no request is sent once this is spent

Turns may belong to several conversations played interleaved (``conversation: K``; each keeps its own
history, and with ``session_header: true`` its system prompt starts with ``[session K]``, so
conversations share no prefix), and the server's prompt-cache capacity can be set per scenario
(``max_capacity: N``, MLX-Textgen's ``--max-capacity``).

A damaged cache: ``damage_cache_after: [truncate, zeros, ...]`` on a turn stops the server after
that turn and plays the rest of the scenario once per listed damage, each time on a new server
started on a copy of the stopped server's HOME whose cache dirs were damaged (``CACHE_DAMAGE``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from harness.core.errors import HarnessError
from harness.core.paths import builtin_scenarios_dir
from harness.core.rows import Protocol, RequestKind
from harness.scenario import anthropic


class ScenarioError(HarnessError):
    """A scenario file is missing or invalid; the message names the file, line, field and fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolCallSpec(_Strict):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class Reply(_Strict):
    """A scripted assistant message: text or tool calls, never both (MLX-Textgen rejects both)."""

    content: str | None = None
    tool_calls: list[ToolCallSpec] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Reply:
        if (self.content is None) == (not self.tool_calls):
            raise ValueError("a reply needs exactly one of 'content' or 'tool_calls'")
        return self


class ExpectedCall(_Strict):
    name: str
    # A subset match: every key given here must be present with this value.
    arguments: dict[str, Any] | None = None


class Expect(_Strict):
    tool_calls: list[ExpectedCall] | None = None
    no_tool_calls: bool = False
    # The answer carries text (e.g. the follow-up after a tool result): not empty, not only calls.
    content: bool = False
    content_contains: str | None = None
    finish_reason: str | None = None
    # The answer (text and calls) must be the one given to the earlier turn of this index in the
    # same mode: the same greedy request asked again, after whatever came between (a prompt cache
    # that kept what it should not have answers differently).
    same_answer_as: int | None = Field(default=None, ge=0)


# What ``damage_cache_after`` can do to a copy of a server's cache dirs: two references (the copy as
# it is, and emptied), then the damages (see harness.server.cache_damage).
CACHE_DAMAGE_REFERENCES = ("intact", "empty")
CACHE_DAMAGE_FAULTS = ("truncate", "zeros", "delete-index", "read-only", "full-disk")
CACHE_DAMAGE = CACHE_DAMAGE_REFERENCES + CACHE_DAMAGE_FAULTS


class Turn(_Strict):
    # A short label of what the turn is about (e.g. the request shape), shown in reports.
    name: str | None = None
    user: str | None = None
    tool_results: list[str] | None = None
    # A recorded request body, replayed as it is (see the module docstring), with the answer that
    # was recorded for it and what its import could not convert.
    request: dict[str, Any] | None = None
    # The same request as an Anthropic Messages API body, sent as it is with --protocol anthropic.
    anthropic_request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    notes: list[str] = Field(default_factory=list)
    reply: Reply | None = None
    expect: Expect | None = None
    stream: bool | None = None
    tool_choice: str | None = None
    # Stop the server after this request and start it again on the same cache dirs (restart case).
    restart_after: bool = False
    # Stop the server after this request and play the rest once per damage listed, each on a new
    # server over a damaged copy of the cache dirs (see the module docstring).
    damage_cache_after: list[str] | None = None
    # Close the connection after this many stream events, as a client whose user pressed stop does
    # (the answer is cut on purpose: its row carries no failed check, only a note).
    drop_stream_after: int | None = Field(default=None, ge=1)
    # Which conversation of the scenario this turn belongs to (interleaved sessions); each keeps
    # its own history.
    conversation: int = Field(default=0, ge=0)
    # A side request: sent alone as its own short conversation (``system`` if given, then ``user``),
    # without tools, and never appended to the main history (like a coding agent's title request).
    side: bool = False
    system: str | None = None

    @model_validator(mode="after")
    def _one_input(self) -> Turn:
        if self.anthropic_request is not None:
            messages = self.anthropic_request.get("messages")
            if not isinstance(messages, list) or not messages:
                raise ValueError("'anthropic_request' must be a Messages API body with a non-empty 'messages' list")
            if self.user is not None or self.tool_results is not None:
                raise ValueError("an 'anthropic_request' turn carries its own history: drop 'user' / 'tool_results'")
            if self.request is None:
                # Authored in the Anthropic format only: the OpenAI path sends what a proxy would.
                self.request, notes = anthropic.convert_request(self.anthropic_request)
                self.notes = [*self.notes, *(note for note in notes if note not in self.notes)]
        given = [name for name in ("user", "tool_results", "request") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("a turn needs exactly one of 'user', 'tool_results' or 'request'")
        if self.request is not None:
            messages = self.request.get("messages")
            if not isinstance(messages, list) or not messages:
                raise ValueError("'request' must be a chat-completions body with a non-empty 'messages' list")
            if self.reply is not None:
                raise ValueError("a 'request' turn carries its own history: drop 'reply'")
        elif self.response is not None:
            raise ValueError("'response' is only allowed on a 'request' turn")
        if self.side and self.tool_results is not None:
            raise ValueError("a side turn (side: true) needs 'user' or 'request', not 'tool_results'")
        if self.system is not None and not self.side:
            raise ValueError("'system' is only allowed on a side turn (side: true)")
        if self.damage_cache_after is not None:
            unknown = [name for name in self.damage_cache_after if name not in CACHE_DAMAGE]
            if unknown or not self.damage_cache_after:
                raise ValueError(
                    f"damage_cache_after lists {unknown or 'nothing'}; give one or more of {', '.join(CACHE_DAMAGE)}"
                )
            if len(set(self.damage_cache_after)) != len(self.damage_cache_after):
                raise ValueError("damage_cache_after lists a damage twice; list each once")
            if self.restart_after:
                raise ValueError("a turn takes restart_after or damage_cache_after, not both")
        if self.drop_stream_after is not None and self.stream is False:
            raise ValueError("drop_stream_after cuts a stream: drop 'stream: false' from the turn")
        return self


class Variant(_Strict):
    """One way to play a scenario; ``None`` keeps the scenario's own setting."""

    stream: bool | None = None
    tool_choice: str | None = None
    # The API the mode goes through; set by the run (--protocol), not in a scenario file.
    protocol: Protocol = Field(default="openai", exclude=True)

    def label(self, scenario: Scenario) -> str:
        stream = self.stream if self.stream is not None else scenario.stream
        # A recorded request streams or not as it was recorded unless the mode says otherwise.
        recorded = self.stream is None and scenario.recorded
        parts = ["as-recorded"] if recorded else ["stream" if stream else "no-stream"]
        choice = self.tool_choice or scenario.tool_choice
        if choice:
            parts.append(f"tool_choice={choice}")
        if self.protocol != "openai":
            parts.append(self.protocol)
        return ",".join(parts)


class TextOrFile(_Strict):
    file: str | None = None
    text: str | None = None


class Generate(_Strict):
    """How ``harness.scenario.generated`` builds a scenario's turns (a ``generate:`` block)."""

    # "long-session": one conversation of ``turns`` turns; "interleaved": ``sessions`` conversations
    # of ``turns`` turns each, each resumed after the others (eviction under pressure).
    kind: str = Field(pattern=r"^(long-session|interleaved)$")
    # The scenario whose turns (tool results, replies, questions) the generated turns are cut from:
    # a built-in name or a path relative to this file.
    material: str = "agent-session"
    turns: int = Field(default=100, ge=1)
    seed: int = 0
    # About how many tokens each turn adds to the history, on average (tool results are cut to fit).
    growth_tokens: int = Field(default=45, ge=1)
    # The system prompt cut to about this many tokens (None: as it is).
    system_tokens: int | None = Field(default=None, ge=1)
    sessions: int = Field(default=3, ge=1)


class Scenario(_Strict):
    name: str
    description: str = ""
    # Scenarios of one family are selected together by the family's name (``--scenarios FAMILY``).
    family: str | None = None
    # A clear 4xx that names what is unsupported is an acceptable answer to this scenario's requests.
    unsupported_ok: bool = False
    system: str | TextOrFile | None = None
    tools: str | list[dict[str, Any]] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    stream: bool = False
    tool_choice: str | None = None
    # A per-request header line placed at the top of the system prompt that changes every request
    # (like a coding agent's billing tag): it defeats every prefix cache, on purpose.
    cache_bust_header: bool = False
    # A built-in model this scenario needs (e.g. one trained to emit a tool-call dialect); used when
    # the run is on the default built-in model, ignored when the user passes --model.
    model: str | None = None
    # Modes to replay the whole scenario in (e.g. streamed and not, tool_choice auto and required);
    # empty means once, as the scenario says.
    variants: list[Variant] = Field(default_factory=list)
    # Turns built by harness.scenario.generated instead of written out (see the module docstring).
    generate: Generate | None = None
    turns: list[Turn] = Field(default_factory=list, validate_default=True)
    # Each conversation's system prompt starts with a line naming it, so conversations share no prefix.
    session_header: bool = False
    # The prompt-cache capacity servers are started with for this scenario, where they have such a
    # setting (MLX-Textgen's --max-capacity); None: the server's default.
    max_capacity: int | None = Field(default=None, ge=1)
    # Seconds each server may spend on this scenario; no request is sent once it is spent.
    time_budget_s: float | None = Field(default=None, gt=0)

    # Resolved at load time (not part of the YAML).
    source: str = ""
    system_text: str = ""
    tool_schemas: list[dict[str, Any]] = Field(default_factory=list)
    # Set by harness.scenario.context_size when the system prompt was grown or cut to about this many tokens.
    context_tokens: int | None = None
    # A generated scenario's material (``generate.material``), loaded with it.
    material_scenario: Scenario | None = None

    @field_validator("turns")
    @classmethod
    def _turns_or_generate(cls, turns: list[Turn], info: ValidationInfo) -> list[Turn]:
        generated = info.data.get("generate") is not None
        if not turns and not generated:
            raise ValueError("a scenario needs at least one turn (or a 'generate' block that builds them)")
        if turns and generated:
            raise ValueError("a generated scenario (generate:) has no 'turns': they are built from its material")
        return turns

    def play_modes(self) -> list[Variant]:
        return self.variants or [Variant()]

    @property
    def recorded(self) -> bool:
        """Whether the scenario's turns are recorded request bodies (replayed exactly)."""
        return any(turn.request is not None for turn in self.turns)

    @property
    def has_anthropic(self) -> bool:
        """Whether any turn carries an Anthropic Messages body (so it can be replayed natively)."""
        return any(turn.anthropic_request is not None for turn in self.turns)


@dataclass
class PlannedRequest:
    """One request of a scenario, with the full message history before it."""

    scenario: str
    turn: int
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    params: dict[str, Any]
    stream: bool
    tool_choice: str | dict[str, Any] | None
    expect: Expect | None
    restart_after: bool = False
    side: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # The conversation this request belongs to (interleaved sessions), and the damages to play the
    # rest of the scenario under once this request is answered.
    conversation: int = 0
    damage_after: list[str] | None = None
    # A recorded request body: sent as it is, with only ``model`` (and a mode's stream or
    # tool_choice override) changed.
    raw: dict[str, Any] | None = None
    # The answer recorded with it, when there is one.
    recorded_response: dict[str, Any] | None = None
    # The turn's label (``name:`` in the scenario), if it has one.
    name: str | None = None
    # A clear 4xx naming what is unsupported is an acceptable answer (the scenario's ``unsupported_ok``).
    unsupported_ok: bool = False
    # The API it goes through: "anthropic" sends ``raw`` (a Messages API body) to the Messages
    # endpoint; ``messages``, ``tools`` and ``params`` are then its OpenAI conversion, for the checks.
    protocol: Protocol = "openai"
    # Close the stream after this many events (the turn's ``drop_stream_after``).
    drop_after: int | None = None

    def body(self, model_id: str) -> dict[str, Any]:
        """The JSON body of the request (chat completions, or the Messages API for "anthropic")."""
        if self.raw is not None:
            raw = copy.deepcopy(self.raw)
            raw["model"] = model_id
            if bool(raw.get("stream", False)) != self.stream:
                raw["stream"] = self.stream
                if not self.stream:
                    raw.pop("stream_options", None)  # only valid on a streamed request
            if self.protocol == "anthropic":
                # tool_choice is held in the OpenAI form: a mode that changed it is mapped back (R7).
                recorded = anthropic.openai_tool_choice(raw.get("tool_choice"))
                if self.tool_choice is not None and self.tool_choice != recorded:
                    raw["tool_choice"] = anthropic.messages_tool_choice(self.tool_choice)
            elif self.tool_choice != raw.get("tool_choice") and self.tool_choice is not None:
                raw["tool_choice"] = self.tool_choice
            return raw
        body: dict[str, Any] = {"model": model_id, "messages": self.messages, "stream": self.stream}
        body.update(self.params)
        if self.tools:
            body["tools"] = self.tools
            if self.tool_choice:
                body["tool_choice"] = self.tool_choice
        return body


class RequestKinds:
    """The ``request_kind`` of each request of a scenario mode, the only place this rule lives.

    The first request of each conversation is "first" (or "first-warm" when the server already
    served another mode of the scenario, so its prefix may be cached), every later one "follow-up",
    the one after a server restart (or a restart on a damaged copy of the cache) "restart". A side
    request is its own short conversation ("side") and leaves the main conversation where it was.
    (Warm-up requests, sent outside any conversation, are "warmup".)
    """

    def __init__(self, first: RequestKind = "first") -> None:
        self._first: RequestKind = first
        self._started: set[int] = set()
        self._restarted = False

    def next(self, request: PlannedRequest) -> RequestKind:
        """The kind of ``request``, sent next. Each conversation of an interleaved scenario has its
        own first request."""
        if request.side:
            return "side"
        new = request.conversation not in self._started
        self._started.add(request.conversation)
        if self._restarted:
            self._restarted = False
            return "restart"
        return self._first if new else "follow-up"

    def restarted(self) -> None:
        """The server was restarted on the same cache: the next request measures the disk cache."""
        self._restarted = True


def _yaml_line(source_text: str, loc: tuple[Any, ...]) -> int | None:
    """The line (1-based) of the YAML node at a pydantic error location, for error messages."""
    try:
        node = yaml.compose(source_text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _yaml_field_at(source_text: str, index: int) -> str | None:
    """The dotted field whose value starts at ``index`` (e.g. a refused tag), if the YAML composes."""
    try:
        root = yaml.compose(source_text, Loader=yaml.SafeLoader)  # composing builds no objects
    except yaml.YAMLError:
        return None

    def walk(node: Any, path: list[str]) -> list[str] | None:
        if path and node.start_mark.index == index:
            return path
        children = []
        if isinstance(node, yaml.MappingNode):
            children = [(str(key.value), value) for key, value in node.value]
        elif isinstance(node, yaml.SequenceNode):
            children = [(str(i), value) for i, value in enumerate(node.value)]
        for name, child in children:
            found = walk(child, [*path, name])
            if found:
                return found
        return None

    found = walk(root, []) if root is not None else None
    return ".".join(found) if found else None


def _format_yaml_error(path: Path, text: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(position unknown)"
    field_name = _yaml_field_at(text, mark.index) if mark else None
    if field_name:
        where += f", field '{field_name}'"
    detail = f"{context}: {problem}" if context else problem
    fix = "Fix the YAML syntax there."
    if isinstance(exc, yaml.constructor.ConstructorError):
        fix = "Scenario files are plain data: remove the tag (YAML tags that build Python objects are refused)."
    return f"{path}: {where}: not valid YAML: {detail}. {fix}"


def _format_validation_error(path: Path, text: str, err: ValidationError) -> str:
    lines = [f"{path}: invalid scenario."]
    for item in err.errors():
        loc = tuple(part for part in item["loc"] if not str(part).startswith("function-after"))
        field_name = ".".join(str(part) for part in loc) or "(top level)"
        line = _yaml_line(text, loc)
        where = f"line {line}, " if line else ""
        lines.append(f"  {where}field '{field_name}': {item['msg']}")
    lines.append("  Fix the field(s) above; the format is described at the top of harness/scenario/definition.py.")
    return "\n".join(lines)


def _tool_names(schemas: list[dict[str, Any]]) -> list[str]:
    return [schema.get("function", {}).get("name", "") for schema in schemas]


def _validate_tools(path: Path, schemas: Any) -> list[dict[str, Any]]:
    if not isinstance(schemas, list):
        raise ScenarioError(f"{path}: field 'tools' must be a JSON list of tool schemas.")
    for index, schema in enumerate(schemas):
        function = schema.get("function") if isinstance(schema, dict) else None
        if (
            not isinstance(schema, dict)
            or schema.get("type") != "function"
            or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("parameters", {}), dict)
        ):
            raise ScenarioError(
                f"{path}: tools[{index}] is not a valid tool schema. Each entry must be "
                '{"type": "function", "function": {"name": STR, "description": STR, "parameters": {JSON schema}}}.'
            )
    return schemas


def load_scenario(path: Path) -> Scenario:
    """Loads and validates one scenario file; every error names the file and the field to fix."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: scenario file not found.")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)  # plain data only: tags that build Python objects are refused
    except yaml.YAMLError as exc:
        raise ScenarioError(_format_yaml_error(path, text, exc)) from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario must be a YAML mapping with 'name' and 'turns'.")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_format_validation_error(path, text, exc)) from None
    scenario.source = str(path)

    base = path.parent
    if isinstance(scenario.system, TextOrFile):
        if scenario.system.file:
            system_path = base / scenario.system.file
            if not system_path.is_file():
                raise ScenarioError(f"{path}: field 'system.file': {system_path} does not exist.")
            scenario.system_text = system_path.read_text(encoding="utf-8")
        else:
            scenario.system_text = scenario.system.text or ""
    elif isinstance(scenario.system, str):
        scenario.system_text = scenario.system

    if isinstance(scenario.tools, str):
        tools_path = base / scenario.tools
        if not tools_path.is_file():
            raise ScenarioError(f"{path}: field 'tools': {tools_path} does not exist.")
        try:
            schemas = json.loads(tools_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"{tools_path}: not valid JSON ({exc}); referenced from {path}.") from exc
        scenario.tool_schemas = _validate_tools(tools_path, schemas)
    elif isinstance(scenario.tools, list):
        scenario.tool_schemas = _validate_tools(path, scenario.tools)

    if scenario.generate is not None:
        scenario.material_scenario = _load_material(path, scenario.generate.material)
    _check_turns(path, scenario)
    return scenario


def _load_material(path: Path, material: str) -> Scenario:
    """The scenario a generated one is cut from: a built-in name, or a path relative to ``path``."""
    known = builtin_scenarios()
    source = known.get(material) or path.parent / material
    if not source.is_file():
        raise ScenarioError(
            f"{path}: field 'generate.material': '{material}' is neither a built-in scenario "
            f"({', '.join(known)}) nor a file next to this one."
        )
    loaded = load_scenario(source)
    if loaded.generate is not None:
        raise ScenarioError(f"{path}: field 'generate.material': {source} is itself generated; name a written one.")
    return loaded


def _check_turns(path: Path, scenario: Scenario) -> None:
    names = set(_tool_names(scenario.tool_schemas))
    pending: dict[int, int] = {}  # tool calls awaiting results, per conversation
    for index, turn in enumerate(scenario.turns):
        earlier = turn.expect.same_answer_as if turn.expect else None
        if earlier is not None and earlier >= index:
            raise ScenarioError(
                f"{path}: turns[{index}].expect.same_answer_as is {earlier}; name an earlier turn (0 to {index - 1})."
            )
        if turn.request is not None:
            continue  # a recorded request is checked by the server it is replayed to, not here
        pending_calls = pending.get(turn.conversation, 0)
        if turn.tool_results is not None and len(turn.tool_results) != pending_calls:
            raise ScenarioError(
                f"{path}: turns[{index}].tool_results has {len(turn.tool_results)} result(s) but the "
                f"previous reply made {pending_calls} tool call(s); give one result per call."
            )
        for kind, calls in (
            ("reply", turn.reply.tool_calls if turn.reply else None),
            ("expect", turn.expect.tool_calls if turn.expect else None),
        ):
            for call in calls or []:
                if call.name not in names:
                    raise ScenarioError(
                        f"{path}: turns[{index}].{kind}.tool_calls names tool '{call.name}', which is not "
                        f"in the scenario's tool list ({', '.join(sorted(names)) or 'none'}). Add its "
                        "schema to the tools file or fix the name."
                    )
        if turn.side:
            continue  # a side request is its own conversation: the main one still awaits its results
        pending[turn.conversation] = len(turn.reply.tool_calls or []) if turn.reply else 0


def builtin_scenarios(directory: Path | None = None) -> dict[str, Path]:
    """Scenario name -> file, for the scenarios shipped with the package (``scenarios/``)."""
    found: dict[str, Path] = {}
    for file in sorted((directory or builtin_scenarios_dir()).glob("*.yaml")):
        found[file.stem] = file
    return found


def builtin_families(directory: Path | None = None) -> dict[str, list[Path]]:
    """Family name -> the built-in scenario files that belong to it, in name order."""
    families: dict[str, list[Path]] = {}
    for path in builtin_scenarios(directory).values():
        try:
            family = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("family")
        except (OSError, yaml.YAMLError, AttributeError):
            continue  # a broken file is reported when it is selected by name
        if isinstance(family, str) and family:
            families.setdefault(family, []).append(path)
    return families


def resolve_scenarios(names_or_paths: list[str], directory: Path | None = None) -> list[Scenario]:
    """Loads scenarios by built-in name, family name, file path, or every ``*.yaml`` of a folder (the
    sessions ``harness record`` or ``harness import`` wrote); an unknown name lists the known ones."""
    known = builtin_scenarios(directory)
    families: dict[str, list[Path]] | None = None
    loaded = []
    for item in names_or_paths:
        if item in known:
            loaded.append(load_scenario(known[item]))
            continue
        if Path(item).is_file():
            loaded.append(load_scenario(Path(item)))
            continue
        if Path(item).is_dir():
            files = sorted(Path(item).glob("*.yaml"))
            if not files:
                raise ScenarioError(f"{item}: a folder with no .yaml scenario file in it. Give a scenario file or name")
            loaded.extend(load_scenario(file) for file in files)
            continue
        families = builtin_families(directory) if families is None else families
        if item in families:
            loaded.extend(load_scenario(path) for path in families[item])
            continue
        raise ScenarioError(
            f"unknown scenario '{item}'. Built-in scenarios: {', '.join(known) or 'none'}; families: "
            f"{', '.join(families) or 'none'}; or give the path of a scenario YAML file, or of a folder of them."
        )
    names = [scenario.name for scenario in loaded]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ScenarioError(
            f"scenario name(s) {', '.join(repeated)} given more than once: rows are told apart by scenario "
            "name, so each scenario may run once per run. Rename one ('name:' in its file) or drop it."
        )
    return loaded


def _assistant_message(reply: Reply, turn_index: int) -> dict[str, Any]:
    if reply.tool_calls:
        calls = []
        for call_index, call in enumerate(reply.tool_calls):
            calls.append(
                {
                    "id": call.id or f"call_t{turn_index}_{call_index}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
            )
        return {"role": "assistant", "content": None, "tool_calls": calls}
    return {"role": "assistant", "content": reply.content}


def plan_requests(
    scenario: Scenario,
    stream: bool | None = None,
    tool_choice: str | None = None,
    request_serial: int = 0,
    protocol: Protocol = "openai",
) -> list[PlannedRequest]:
    """Expands a scenario into its requests, each carrying the full history before it.

    ``stream`` / ``tool_choice`` override the scenario's defaults (used to run one scenario in
    several modes). ``request_serial`` feeds the cache-busting header so it differs per request.
    ``protocol`` "anthropic" plans only the turns that carry an Anthropic body, each sent natively
    (turn numbers stay those of the scenario, so both protocols' rows of a turn line up).
    """
    histories: dict[int, list[dict[str, Any]]] = {}
    pending_calls: dict[int, list[dict[str, Any]]] = {}
    planned: list[PlannedRequest] = []
    for index, turn in enumerate(scenario.turns):
        if protocol == "anthropic":
            if turn.anthropic_request is not None:
                planned.append(_recorded_request(scenario, turn, index, stream, tool_choice, protocol))
            continue
        if turn.request is not None:
            planned.append(_recorded_request(scenario, turn, index, stream, tool_choice))
            continue
        if turn.side:
            planned.append(_side_request(scenario, turn, index, stream))
            continue
        messages = histories.setdefault(turn.conversation, [])
        last_calls = pending_calls.get(turn.conversation, [])
        system_text = scenario.system_text
        if scenario.session_header and system_text:
            system_text = session_header(turn.conversation) + system_text
        if turn.user is not None:
            messages.append({"role": "user", "content": turn.user})
        else:
            for call, result in zip(last_calls, turn.tool_results or [], strict=False):
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "name": call["function"]["name"], "content": result}
                )
        history = copy.deepcopy(messages)
        if system_text:
            text = system_text
            if scenario.cache_bust_header:
                # Changes on every request, like a billing tag: no prefix can ever be reused.
                text = f"x-request-tag: req-{request_serial + index:06d}\n" + text
            history.insert(0, {"role": "system", "content": text})
        choice = tool_choice or turn.tool_choice or scenario.tool_choice
        planned.append(
            PlannedRequest(
                scenario=scenario.name,
                turn=index,
                messages=history,
                tools=scenario.tool_schemas,
                params=dict(scenario.params),
                stream=stream if stream is not None else (turn.stream if turn.stream is not None else scenario.stream),
                tool_choice=choice,
                expect=turn.expect,
                restart_after=turn.restart_after,
                conversation=turn.conversation,
                damage_after=turn.damage_cache_after,
                name=turn.name,
                unsupported_ok=scenario.unsupported_ok,
            )
        )
        if turn.reply is not None:
            assistant = _assistant_message(turn.reply, index)
            messages.append(assistant)
            pending_calls[turn.conversation] = assistant.get("tool_calls") or []
        else:
            pending_calls[turn.conversation] = []
    for request in planned:
        request.drop_after = scenario.turns[request.turn].drop_stream_after
    return planned


def session_header(conversation: int) -> str:
    """The first line of conversation K's system prompt in a scenario with ``session_header``."""
    return f"[session {conversation}]\n"


def _side_request(scenario: Scenario, turn: Turn, index: int, stream: bool | None) -> PlannedRequest:
    """A side request: its own short messages, no tools, nothing taken from or added to the history."""
    messages = ([{"role": "system", "content": turn.system}] if turn.system else []) + [
        {"role": "user", "content": turn.user}
    ]
    return PlannedRequest(
        scenario=scenario.name,
        turn=index,
        messages=messages,
        tools=[],
        params=dict(scenario.params),
        stream=stream if stream is not None else (turn.stream if turn.stream is not None else scenario.stream),
        tool_choice=None,
        expect=turn.expect,
        restart_after=turn.restart_after,
        side=True,
        name=turn.name,
        unsupported_ok=scenario.unsupported_ok,
    )


def _recorded_request(
    scenario: Scenario,
    turn: Turn,
    index: int,
    stream: bool | None,
    tool_choice: str | None,
    protocol: Protocol = "openai",
) -> PlannedRequest:
    """A recorded request, replayed as recorded; a mode's ``stream`` / ``tool_choice`` still apply."""
    if protocol == "anthropic":
        planned = anthropic_request(scenario.name, index, turn.anthropic_request or {}, turn.request, stream)
        planned.tool_choice = tool_choice or planned.tool_choice  # the OpenAI form; body() maps it back
        planned.recorded_response = turn.response
    else:
        planned = recorded_request(scenario.name, index, turn.request or {}, turn.response, stream, tool_choice)
    planned.expect = turn.expect
    planned.restart_after = turn.restart_after
    planned.side = turn.side
    planned.name = turn.name
    planned.unsupported_ok = scenario.unsupported_ok
    return planned


def recorded_request(
    scenario: str,
    turn: int,
    body: dict[str, Any],
    response: dict[str, Any] | None = None,
    stream: bool | None = None,
    tool_choice: str | None = None,
) -> PlannedRequest:
    """The PlannedRequest of a whole chat-completions ``body``, sent as it is (see ``body``); also how
    the recording proxy describes a request it passed through, so the checks see it the same way."""
    params = {key: value for key, value in body.items() if key not in _BODY_FIELDS}
    messages = body.get("messages")
    tools = body.get("tools")
    return PlannedRequest(
        scenario=scenario,
        turn=turn,
        messages=messages if isinstance(messages, list) else [],
        tools=tools if isinstance(tools, list) else [],
        params=params,
        stream=stream if stream is not None else bool(body.get("stream", False)),
        tool_choice=tool_choice or body.get("tool_choice"),
        expect=None,
        raw=body,
        recorded_response=response,
    )


def anthropic_request(
    scenario: str,
    turn: int,
    body: dict[str, Any],
    converted: dict[str, Any] | None = None,
    stream: bool | None = None,
) -> PlannedRequest:
    """The PlannedRequest of a whole Messages API ``body``, sent natively as it is; its messages,
    tools and parameters are those of ``converted`` (its OpenAI conversion, made here when not
    given), so the checks read the conversation the same way for both protocols."""
    if converted is None:
        converted, _notes = anthropic.convert_request(body)
    planned = recorded_request(scenario, turn, converted, stream=stream)
    planned.raw = body
    planned.protocol = "anthropic"
    planned.stream = stream if stream is not None else bool(body.get("stream", False))
    return planned


# The fields of a request body that PlannedRequest holds on their own; the rest are parameters.
_BODY_FIELDS = {"model", "messages", "tools", "tool_choice", "stream"}
