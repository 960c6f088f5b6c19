"""The catalogue of today's servers: one TOML file each in ``servers/catalogue/``, read into
``CatalogueEntry`` and turned into a ``ServerSpec`` for a release (``name@version``).

An entry says how to install the server into its own environment (``install`` steps, with
``{version}`` filled in; a verified release may pin its own set under ``[releases."X.Y.Z"]``), how to
start it and know it is ready, the protocols it serves and where, its kind of prompt cache and how
it shows reuse, and the arguments it needs to parse each tool-call dialect ("told", as opposed to
finding the dialect in the model by itself). Adding a server is adding a file: see
docs/servers.md.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.core.errors import ConfigError
from harness.core.paths import server_programs_dir
from harness.server.environments import EnvironmentSpec, InstallStep
from harness.server.model_conversion import ConversionSpec
from harness.server.spec import OPENAI, ServerSpec

CACHE_KINDS = ("disk", "in-memory prefix", "paged", "none")
# Model formats a server may load: "mlx" (the model folder as built), "gguf" (converted once, cached).
MODEL_FORMATS = ("mlx", "gguf")


def catalogue_dir() -> Path:
    return server_programs_dir() / "catalogue"


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    packages: list[str]
    options: list[str] = Field(default_factory=list)
    uninstall: list[str] = Field(default_factory=list)


class ToolParser(BaseModel):
    """How the server parses one tool-call dialect: ``args`` added to its command line ("told"),
    or none when it finds the dialect by itself (``how`` says how)."""

    model_config = ConfigDict(extra="forbid")

    args: list[str] = Field(default_factory=list)
    how: str = ""


class Conversion(BaseModel):
    """How a model folder becomes the file a ``model_format = "gguf"`` server loads: ``script`` (a
    path inside the source distribution of ``source``, ``{version}`` filled in) run by the server's
    own Python with ``args``; ``pre_tokenizer`` names a BPE pre-tokenizer the converter does not
    recognise by itself."""

    model_config = ConfigDict(extra="forbid")

    source: str
    script: str
    args: list[str] = Field(default_factory=list)
    pre_tokenizer: str | None = None


class Release(BaseModel):
    """A release's own install steps (when the template's are not enough), notes, and, for a release
    that starts differently (an older command line), its own command, request model and parsers."""

    model_config = ConfigDict(extra="forbid")

    install: list[Step] | None = None
    # Steps run after the install steps (the template's or the release's own).
    extra: list[Step] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    command: list[str] | None = None
    request_model: str | None = None
    tool_parsers: dict[str, ToolParser] | None = None


class CatalogueEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    label: str
    about: str
    # Releases run here with the built-in models, newest first; the first is the default release.
    verified: list[str] = Field(min_length=1)
    platforms: list[str] = Field(default_factory=list)
    protocols: dict[str, str] = Field(default_factory=lambda: {OPENAI: "/v1/chat/completions"})
    cache: str
    cache_note: str = ""
    install: list[Step] = Field(min_length=1)
    releases: dict[str, Release] = Field(default_factory=dict)
    command: list[str] = Field(min_length=1)
    ready_path: str = "/v1/models"
    ready_timeout_s: float | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cache_dirs: list[str] = Field(default_factory=list)
    request_model: str | None = None
    reuse_pattern: str | None = None
    miss_pattern: str | None = None
    prompt_tokens_include_cached: bool | None = None
    # The packages whose versions name its release in the report.
    release_packages: list[str] = Field(default_factory=list)
    tool_parsers: dict[str, ToolParser] = Field(default_factory=dict)
    # What a launcher in servers/ patches for it to start here (listed by `harness servers`).
    shims: list[str] = Field(default_factory=list)
    capacity_args: list[str] = Field(default_factory=list)
    model_format: str = "mlx"
    conversion: Conversion | None = None

    @field_validator("cache")
    @classmethod
    def _known_cache_kind(cls, value: str) -> str:
        if value not in CACHE_KINDS:
            raise ValueError(f"must be one of {', '.join(CACHE_KINDS)}")
        return value

    @field_validator("model_format")
    @classmethod
    def _known_model_format(cls, value: str) -> str:
        if value not in MODEL_FORMATS:
            raise ValueError(f"must be one of {', '.join(MODEL_FORMATS)}")
        return value

    @model_validator(mode="after")
    def _conversion_for_gguf(self) -> CatalogueEntry:
        if self.model_format == "gguf" and self.conversion is None:
            raise ValueError('model_format = "gguf" needs a [conversion] table (source, script)')
        return self

    def environment(self, release: str) -> EnvironmentSpec:
        """The environment of ``release``: its own steps when it has them, else the template's."""
        own = self.releases.get(release)
        steps = (own.install if own and own.install else self.install) + (own.extra if own else [])
        return EnvironmentSpec(
            name=f"{self.name}@{release}",
            steps=tuple(
                InstallStep(
                    packages=tuple(p.replace("{version}", release) for p in step.packages),
                    options=tuple(step.options),
                    uninstall=tuple(step.uninstall),
                )
                for step in steps
            ),
            platforms=tuple(self.platforms),
        )

    def spec(self, release: str | None = None, name: str | None = None) -> ServerSpec:
        """The ServerSpec of ``release`` (default: the newest verified one), named ``name``."""
        release = release or self.verified[0]
        own = self.releases.get(release) or Release()
        spec = ServerSpec(
            name=name or self.name,
            label=f"{self.label} {release}",
            command=list(own.command or self.command),
            ready_path=self.ready_path,
            cache_dirs=list(self.cache_dirs),
            env=dict(self.env),
            request_model=own.request_model or self.request_model,
            reuse_pattern=self.reuse_pattern,
            miss_pattern=self.miss_pattern,
            prompt_tokens_include_cached=self.prompt_tokens_include_cached,
            packages=list(self.release_packages),
            capacity_args=list(self.capacity_args),
            protocols=dict(self.protocols),
        )
        spec.environment = self.environment(release)
        spec.release = release
        spec.catalogue_name = self.name
        spec.cache_kind = self.cache
        parsers = self.tool_parsers if own.tool_parsers is None else own.tool_parsers
        spec.dialect_args = {dialect: list(parser.args) for dialect, parser in parsers.items()}
        if self.ready_timeout_s is not None:
            spec.ready_timeout_s = self.ready_timeout_s
        if self.model_format == "gguf" and self.conversion is not None:
            spec.conversion = ConversionSpec(
                source=self.conversion.source.replace("{version}", release),
                script=self.conversion.script,
                args=tuple(self.conversion.args),
                pre_tokenizer=self.conversion.pre_tokenizer,
            )
        return spec


def split_release(name: str) -> tuple[str, str | None]:
    """``"mlx-lm@0.32.2"`` -> ``("mlx-lm", "0.32.2")``; ``"mlx-lm"`` -> ``("mlx-lm", None)``."""
    base, _, release = name.partition("@")
    return base, (release or None)


@cache
def load_catalogue(directory: Path | None = None) -> dict[str, CatalogueEntry]:
    """Every entry of the catalogue, by name. A broken file is a ConfigError naming it and the field."""
    entries: dict[str, CatalogueEntry] = {}
    for path in sorted((directory or catalogue_dir()).glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            entry = CatalogueEntry.model_validate(data)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}). Fix the syntax at the position given.") from None
        except ValidationError as exc:
            problems = "; ".join(f"field '{'.'.join(str(p) for p in e['loc'])}': {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{path}: invalid catalogue entry: {problems}. See docs/servers.md.") from None
        if entry.name in entries:
            raise ConfigError(f"{path}: a second entry named '{entry.name}'. Names must be unique.")
        entries[entry.name] = entry
    return entries
