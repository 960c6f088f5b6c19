"""How to start (or reach) a server: ``ServerSpec``, and the built-in specs for the legacy stand-in
and MLX-Textgen, which run on the harness's own interpreter. Today's servers, each in its own
environment, are the catalogue (``servers/catalogue/``, ``harness.server.catalogue``); any other
command line can be declared in harness.toml (``harness.run.config``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from harness.core.errors import ConfigError
from harness.server.environments import EnvironmentSpec
from harness.server.model_conversion import ConversionSpec

# Protocols a server may speak (ServerSpec.protocols) and their usual paths.
OPENAI, ANTHROPIC = "openai", "anthropic"
OPENAI_CHAT_PATH = "/v1/chat/completions"
ANTHROPIC_MESSAGES_PATH = "/v1/messages"


@dataclass
class ServerSpec:
    """How to start (or reach) one server. Command items are templates: {python} {bin} {model}
    {port} {host} {home} {programs} {api_key} are filled in ({python}: the server's interpreter, that
    of its own environment when it has one; {bin}: that interpreter's folder, where its console
    scripts are; {programs}: the folder of the server programs, servers/); the command is an
    argument list, never a shell string."""

    name: str
    label: str
    command: list[str] = field(default_factory=list)
    ready_path: str = "/v1/models"
    # Directories whose files count as the server's on-disk cache (templates, usually under {home}).
    cache_dirs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # An already-running server: no start/stop, cache files not observable.
    base_url: str | None = None
    ready_timeout_s: float = 120.0
    # Behaviour switches of the server that make comparisons unfair, as they are set for this run.
    quirks: dict[str, bool] = field(default_factory=dict)
    # Log lines that tell, per request, whether the server reused a prompt cache.
    reuse_pattern: str | None = None
    miss_pattern: str | None = None
    # A log line saying a request was answered from a response cache, without generating.
    served_from_cache_pattern: str | None = None
    # A log line giving the prompt-processing rate of a request: its first group is the tokens/s.
    prompt_rate_pattern: str | None = None
    # An endpoint answering the server's own counters as JSON (read at the end of each session).
    counters_path: str | None = None
    # API key sent as a bearer token and, where the server takes one, passed on its command line.
    api_key: str | None = None
    api_key_args: list[str] = field(default_factory=list)
    # The `model` sent in each request when it is not the id that /v1/models lists.
    request_model: str | None = None
    # Whether the server's usage.prompt_tokens counts the tokens it took from its cache too (True),
    # or only the ones it processed (False). None: worked out from the numbers across turns.
    prompt_tokens_include_cached: bool | None = None
    # The Python packages whose versions name this server's release in the report's one-line
    # summary (all of them are recorded in run.json); empty: every known server package found.
    packages: list[str] = field(default_factory=list)
    # How to set the server's prompt-cache capacity (``{capacity}``: a number of cached prompts),
    # for scenarios that set one (max_capacity) and --max-capacity: extra arguments, environment.
    capacity_args: list[str] = field(default_factory=list)
    capacity_env: dict[str, str] = field(default_factory=dict)
    # The protocols the server speaks and the path of each: "openai" (chat completions) and, where
    # served, "anthropic" (the Messages API).
    protocols: dict[str, str] = field(default_factory=lambda: {OPENAI: OPENAI_CHAT_PATH})
    # A server with its own environment (harness.server.environments): what to install; None runs on
    # the harness's own interpreter. ``release``: the version asked for (``name@version``).
    environment: EnvironmentSpec | None = None
    release: str | None = None
    # The catalogue entry it came from, its kind of prompt cache (disk, in-memory prefix, paged, none).
    catalogue_name: str | None = None
    cache_kind: str | None = None
    # Arguments the server needs to parse a tool-call dialect ("hermes": [...]), added when the model
    # speaks that dialect; a dialect not listed is found by the server itself.
    dialect_args: dict[str, list[str]] = field(default_factory=dict)
    # A server that loads another format than the model folder (GGUF): how the folder is converted
    # (harness.server.model_conversion); None loads the folder as it is.
    conversion: ConversionSpec | None = None

    def protocol_path(self, protocol: str) -> str | None:
        """The path that serves ``protocol``, or None when the server does not speak it."""
        return self.protocols.get(protocol)

    @property
    def chat_path(self) -> str:
        """Where OpenAI chat completions are sent."""
        return self.protocols.get(OPENAI, OPENAI_CHAT_PATH)


def with_capacity(spec: ServerSpec, capacity: int | None) -> ServerSpec:
    """A copy of ``spec`` started with a prompt-cache capacity of ``capacity`` (the spec itself when
    it is None or the server has no such setting). The arguments go last, so they win over the same
    flag among a server's extra arguments."""
    if capacity is None or not (spec.capacity_args or spec.capacity_env):
        return spec
    fill = str(capacity)
    return replace(
        spec,
        command=[*spec.command, *(item.replace("{capacity}", fill) for item in spec.capacity_args)],
        env={**spec.env, **{key: value.replace("{capacity}", fill) for key, value in spec.capacity_env.items()}},
    )


# The built-in like-for-like counterpart of the legacy server (see ``legacy_capped_spec``).
LIKE_FOR_LIKE_SERVER = "legacy-capped"

LEGACY_QUIRK_FLAGS = {
    # quirk name: (flag that turns the quirk OFF or the switch ON, default value of the quirk)
    "max_tokens_ignored": ("--honour-max-tokens", True),
    "hermes_parsing": ("--parse-hermes", False),
    "canned_fallback": ("--no-canned-fallback", True),
    "response_cache": ("--no-response-cache", True),
}


def legacy_spec(quirks: dict[str, bool] | None = None) -> ServerSpec:
    """The legacy stand-in. ``quirks`` overrides the original's defaults (see LEGACY_QUIRK_FLAGS)."""
    state = {name: default for name, (_flag, default) in LEGACY_QUIRK_FLAGS.items()}
    unknown = set(quirks or {}) - set(state)
    if unknown:
        raise ConfigError(
            f"unknown legacy quirk(s) {sorted(unknown)}; known: {sorted(state)} "
            "(set them under [servers.legacy.quirks])."
        )
    state.update(quirks or {})
    command = ["{python}", "{programs}/legacy_server.py", "--model", "{model}", "--port", "{port}", "--host", "{host}"]
    for name, (flag, default) in LEGACY_QUIRK_FLAGS.items():
        if state[name] != default:
            command.append(flag)
    return ServerSpec(
        name="legacy",
        label="legacy stand-in",
        command=command,
        ready_path="/health",
        cache_dirs=["{home}/.anyclaude/kv-cache"],
        env={"MLX_KV_CACHE_DIR": "{home}/.anyclaude/kv-cache"},
        quirks=state,
        packages=["mlx-lm", "mlx", "fastapi"],
        # The stand-in logs each full re-process (the original's KV cache never loaded).
        miss_pattern=r"processing full prompt of \d+ tokens",
        # The original's KV-cache size limit (files); its cache never writes one, so it changes nothing.
        capacity_env={"MLX_KV_CACHE_MAX_SIZE": "{capacity}"},
        served_from_cache_pattern=r"response cache hit",
        prompt_rate_pattern=r"; prompt (\d+(?:\.\d+)?) tok/s",
        counters_path="/health",
    )


def legacy_capped_spec(quirks: dict[str, bool] | None = None) -> ServerSpec:
    """The legacy stand-in with only its ``max_tokens`` quirk off: answers as long as the request
    asks, like the new servers, so that its times can be compared like-for-like. Every other quirk
    stays as deployed."""
    spec = legacy_spec({"max_tokens_ignored": False, **(quirks or {})})
    spec.name = LIKE_FOR_LIKE_SERVER
    spec.label = "legacy stand-in, max_tokens honoured"
    return spec


def mlx_textgen_spec(extra_args: list[str] | None = None) -> ServerSpec:
    return ServerSpec(
        name="mlx-textgen",
        label="MLX-Textgen",
        command=[
            "{python}",
            "{programs}/mlx_textgen_launcher.py",
            "serve",
            "-m",
            "{model}",
            "-p",
            "{port}",
            "--host",
            "{host}",
            *(extra_args or []),
        ],
        ready_path="/v1/models",
        cache_dirs=["{home}/.cache/mlx_textgen/prompt_cache"],
        reuse_pattern=r'Reusing cache "?[\w-]+"?\. (\d+) tokens',
        miss_pattern=r"No suitable cache found",
        prompt_rate_pattern=r"Processed \d+ tokens in total\. Total time taken: [\d.]+s\. (\d+(?:\.\d+)?) t/s",
        api_key_args=["--api-key", "{api_key}"],
        packages=["mlx-textgen", "mlx-lm", "mlx"],
        capacity_args=["--max-capacity", "{capacity}"],
    )


# Each takes its own optional settings (quirks, extra arguments), hence the loose signature.
BUILTIN_SERVERS: dict[str, Callable[..., ServerSpec]] = {
    "legacy": legacy_spec,
    LIKE_FOR_LIKE_SERVER: legacy_capped_spec,
    "mlx-textgen": mlx_textgen_spec,
}
