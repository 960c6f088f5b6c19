"""RunConfig: what to compare, on which model, how often, where to write. Read from
``[tool.harness]`` in pyproject.toml, then ``harness.toml`` (or ``--config FILE``), then the CLI.

    [tool.harness]                      # or top level of harness.toml
    servers = ["legacy", "legacy-capped", "mlx-textgen"]
    scenarios = ["agent-session", "short-chat"]
    reference = "legacy"                # the server as deployed: "as deployed" ratios
    like_for_like = "legacy-capped"     # the reference with max_tokens honoured: headline ratios
    repeats = 1
    warmup = false                      # one unmeasured request after each server start
    context_tokens = [1000, 2000, 4000] # replay scenarios with their system prompt at these sizes
    concurrency = 1                     # sessions at once against one server
    bound = false                       # measure the cache-perfect bound (bound.json) after the servers
    turns = 100                         # turns of generated scenarios (long-session; eviction: per session)
    max_capacity = 2                    # prompt-cache capacity servers start with (MLX-Textgen --max-capacity)
    time_budget_s = 1500                # seconds per server per scenario (over a scenario's own budget)
    protocol = "both"                   # openai (default) | anthropic (Messages API, natively) | both
    [tool.harness.server.legacy.quirks] # legacy quirk switches (defaults as the original)
    max_tokens_ignored = false
    [tool.harness.server.mlx-textgen]   # extra arguments for MLX-Textgen (e.g. one cache slot)
    extra_args = ["--max-capacity", "1"]
    [tool.harness.server.my-legacy]     # any command line as a server
    command = ["/path/venv/bin/python", "vllm-mlx-server.py", "--model", "{model}", "--port", "{port}"]
    ready_path = "/health"
    protocols = {openai = "/v1/chat/completions", anthropic = "/v1/messages"}  # served APIs and paths
    [tool.harness.server.fleet]         # an already-running server: no start/stop, cache files not observable
    base_url = "http://127.0.0.1:8000"
    request_model = "Qwen/Qwen2.5-7B-Instruct"  # the `model` to send, when not the first id of /v1/models
    [tool.harness.server.textgen-next]  # a newer release, with the log lines it writes
    command = ["/other/venv/bin/mlx_textgen", "serve", "-m", "{model}", "-p", "{port}", "--host", "{host}"]
    cache_dirs = ["{home}/.cache/mlx_textgen/prompt_cache"]
    reuse_pattern = 'Reusing cache "?[\\w-]+"?\\. (\\d+) tokens'
    miss_pattern = "No suitable cache found"
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from harness.core.errors import ConfigError
from harness.core.rows import PROTOCOLS
from harness.run.gate_settings import GateSettings
from harness.server.catalogue import load_catalogue, split_release
from harness.server.spec import BUILTIN_SERVERS, LIKE_FOR_LIKE_SERVER, ServerSpec, legacy_spec

# The legacy server as deployed, the same server with max_tokens honoured (the like-for-like
# reference of the headline ratios), and the new server.
DEFAULT_SERVERS = ["legacy", LIKE_FOR_LIKE_SERVER, "mlx-textgen"]
DEFAULT_SCENARIOS = ["agent-session", "short-chat", "tools-hermes"]
API_KEY_ENV = "HARNESS_API_KEY"


class ServerOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = None
    command: list[str] | None = None
    ready_path: str | None = None
    cache_dirs: list[str] | None = None
    env: dict[str, str] | None = None
    base_url: str | None = None
    ready_timeout_s: float | None = None
    quirks: dict[str, bool] | None = None
    extra_args: list[str] | None = None
    request_model: str | None = None
    # Log lines that say, per request, whether the server reused its prompt cache (a regular
    # expression; a first group, where there is one, captures the number of tokens reused).
    reuse_pattern: str | None = None
    miss_pattern: str | None = None
    prompt_tokens_include_cached: bool | None = None
    packages: list[str] | None = None  # the packages that name its release in the report
    # How to set its prompt-cache capacity ({capacity} is filled in), for --max-capacity.
    capacity_args: list[str] | None = None
    # Start from a built-in server's spec under another name, e.g. the legacy stand-in with one
    # quirk switched, so both settings can be compared in one run.
    like: str | None = None
    # The protocols the server serves and the path of each, e.g.
    # {openai = "/v1/chat/completions", anthropic = "/v1/messages"} (default: OpenAI chat only).
    protocols: dict[str, str] | None = None

    @field_validator("protocols")
    @classmethod
    def _known_protocols(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, path in (value or {}).items():
            if name not in PROTOCOLS:
                raise ValueError(f"unknown protocol '{name}'; known: {', '.join(PROTOCOLS)}")
            if not path.startswith("/"):
                raise ValueError(f"the path of '{name}' must start with '/' (e.g. \"/v1/messages\"), not {path!r}")
        if value is not None and not value:
            raise ValueError('name at least one protocol, e.g. {openai = "/v1/chat/completions"}')
        return value

    @field_validator("reuse_pattern", "miss_pattern")
    @classmethod
    def _a_regular_expression(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc}); in TOML write it in single quotes") from None
        return value


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    servers: list[str] = Field(default_factory=lambda: list(DEFAULT_SERVERS))
    scenarios: list[str] = Field(default_factory=lambda: list(DEFAULT_SCENARIOS))
    reference: str = "legacy"
    # The reference's like-for-like counterpart (same output length): the headline ratios are taken
    # against it when it is among the servers, the "as deployed" ones against ``reference``.
    like_for_like: str | None = LIKE_FOR_LIKE_SERVER
    model: str | None = None
    repeats: int = Field(default=1, ge=1)
    out: str = "reports"
    warmup: bool = False
    # System-prompt sizes to replay each scenario at ("1000,2000" on the CLI, a list in TOML).
    context_tokens: list[int] | None = None
    concurrency: int = Field(default=1, ge=1)
    # Measure the in-process cache-perfect bound (harness.run.bound) after the servers: opt-in, since on
    # agent-session alone it costs about a minute on two cores.
    bound: bool = False
    # Turns of each generated scenario (long-session: its turns; eviction: each session's), over the
    # scenario's own number.
    turns: int | None = Field(default=None, ge=1)
    # The prompt-cache capacity every server that has one starts with (MLX-Textgen's --max-capacity),
    # over a scenario's own max_capacity.
    max_capacity: int | None = Field(default=None, ge=1)
    # Seconds each server may spend on each scenario, over a scenario's own time_budget_s.
    time_budget_s: float | None = Field(default=None, gt=0)
    ready_timeout_s: float = 180.0
    request_timeout_s: float = 300.0
    idle_timeout_s: float = 120.0
    # Sent as a bearer token and to servers that take one; never printed, never in run.json.
    api_key: SecretStr | None = None
    # How servers' own environments are filled: "uv" or "pip"; None takes uv when it is installed.
    installer: Literal["uv", "pip"] | None = None
    # Which API the requests go through: "openai" (chat completions; an Anthropic-format turn is
    # sent as its conversion), "anthropic" (the Messages API, natively: turns that carry an Anthropic
    # body, to servers that serve it) or "both" (each turn both ways, set side by side in the report).
    protocol: Literal["openai", "anthropic", "both"] = "openai"
    server: dict[str, ServerOverride] = Field(default_factory=dict)
    gate: GateSettings = Field(default_factory=GateSettings)

    @field_validator("context_tokens", mode="before")
    @classmethod
    def _sizes(cls, value: Any) -> list[int] | None:
        from harness.scenario.context_size import parse_sizes

        return parse_sizes(value)

    def like_for_like_server(self) -> str | None:
        """``like_for_like`` when it is compared in this run (and is not the reference), else None."""
        name = self.like_for_like
        return name if name and name in self.servers and name != self.reference else None

    def public_dump(self) -> dict[str, Any]:
        """The config as recorded in run.json: the API key never leaves memory."""
        data = self.model_dump()
        data["api_key"] = "***" if self.api_key else None
        return data

    def server_specs(self) -> list[ServerSpec]:
        specs = []
        catalogue = load_catalogue()
        for name in self.servers:
            override = self.server.get(name)
            listed, release = split_release(name)
            if override is None and listed in catalogue and listed not in BUILTIN_SERVERS:
                spec = catalogue[listed].spec(release, name=name)
                spec.ready_timeout_s = max(spec.ready_timeout_s, self.ready_timeout_s)
                spec.api_key = self.api_key.get_secret_value() if self.api_key else None
                specs.append(spec)
                continue
            if release is not None and override is None:
                raise ConfigError(
                    f"unknown server '{listed}' in '{name}': NAME@VERSION picks a release of a catalogue server "
                    f"({', '.join(catalogue)}); `harness servers` lists them."
                )
            base = name if name in BUILTIN_SERVERS else (override.like if override else None)
            if override and override.like and override.like not in BUILTIN_SERVERS:
                raise ConfigError(
                    f"[tool.harness.server.{name}] like = '{override.like}' is not a built-in server; "
                    f"use one of {', '.join(BUILTIN_SERVERS)}."
                )
            if base in BUILTIN_SERVERS:
                if base in ("legacy", LIKE_FOR_LIKE_SERVER):
                    spec = BUILTIN_SERVERS[base](override.quirks if override else None)
                elif base == "mlx-textgen":
                    spec = BUILTIN_SERVERS[base](override.extra_args if override else None)
                else:
                    spec = BUILTIN_SERVERS[base]()
                if base != name:
                    switched = [k for k, v in spec.quirks.items() if v != legacy_spec().quirks.get(k, v)]
                    spec.name = name
                    switches = ", ".join(f"{k}={spec.quirks[k]}" for k in switched)
                    spec.label = f"{spec.label} ({switches})" if switched else name
            elif override and (override.command or override.base_url):
                spec = ServerSpec(name=name, label=override.label or name, command=override.command or [])
            else:
                raise ConfigError(
                    f"unknown server '{name}'. Built-in servers: {', '.join(BUILTIN_SERVERS)}; catalogue servers "
                    f"(each in its own environment, NAME or NAME@VERSION): {', '.join(catalogue)}; or define "
                    f"[tool.harness.server.{name}] with a `command` (argument list) or a `base_url`."
                )
            if override:
                for field_name in (
                    "label",
                    "command",
                    "ready_path",
                    "cache_dirs",
                    "env",
                    "base_url",
                    "ready_timeout_s",
                    "request_model",
                    "reuse_pattern",
                    "miss_pattern",
                    "prompt_tokens_include_cached",
                    "packages",
                    "capacity_args",
                    "protocols",
                ):
                    value = getattr(override, field_name)
                    if value is not None:
                        setattr(spec, field_name, value)
            if override is None or override.ready_timeout_s is None:
                spec.ready_timeout_s = self.ready_timeout_s
            spec.api_key = self.api_key.get_secret_value() if self.api_key else None
            specs.append(spec)
        if self.reference not in self.servers:
            raise ConfigError(
                f"reference server '{self.reference}' is not among the servers compared ({', '.join(self.servers)}). "
                "Pass --reference NAME or add it to --servers."
            )
        return specs


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}). Fix the syntax at the position given.") from exc


def load_config(
    config_file: Path | None = None, overrides: dict[str, Any] | None = None, project_dir: Path | None = None
) -> RunConfig:
    """Merges pyproject's [tool.harness], the config file and CLI overrides (later wins)."""
    project_dir = project_dir or Path.cwd()
    data: dict[str, Any] = {}
    sources: list[str] = []
    pyproject = project_dir / "pyproject.toml"
    if pyproject.is_file():
        section = _read_toml(pyproject).get("tool", {}).get("harness", {})
        if section:
            data.update(_anchor_paths(section, pyproject.parent))
            sources.append(f"{pyproject} [tool.harness]")
    file = config_file or (project_dir / "harness.toml" if (project_dir / "harness.toml").is_file() else None)
    if file is not None:
        file = Path(file)
        if not file.is_file():
            raise ConfigError(f"config file {file} not found. Pass an existing file to --config.")
        _deep_merge(data, _anchor_paths(_read_toml(file), file.parent))
        sources.append(str(file))
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    data.setdefault("api_key", os.environ.get(API_KEY_ENV))
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc'])}': {err['msg']}"
            + ("" if isinstance(err["input"], dict) else f" (got {err['input']!r})")
            for err in exc.errors()
        )
        raise ConfigError(
            f"invalid harness configuration (from {', '.join(sources) or 'the command line'}): {problems}. "
            "Every field is listed in docs/usage.md (harness.toml) and at the top of harness/run/config.py "
            "(the gate's: harness/run/gate_settings.py)."
        ) from None


def _anchor_paths(section: dict[str, Any], base: Path) -> dict[str, Any]:
    """``section`` with the file paths it names made absolute against ``base``, the folder of the
    file that names them, so that they mean the same from any working directory."""
    gate = section.get("gate")
    if isinstance(gate, dict):
        for key in ("expectations",):
            value = gate.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                gate[key] = str((base / value).resolve())
    return section


def _deep_merge(into: dict[str, Any], data: dict[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value
