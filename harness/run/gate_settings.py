"""The CI gate's settings, ``[tool.harness.gate]`` in pyproject.toml (or ``[gate]`` in harness.toml),
typed and validated when the configuration loads: an unknown setting, a value out of range or an
unknown metric stops the run before any server starts, with the file and the field named.
What each setting gates is described in harness/verdicts/gate.py.

    [tool.harness.gate]
    min_follow_up_speedup = 3.0            # number >= 0, or false: off
    max_first_request_slowdown = 1.5       # number >= 0, or false (or 0): off
    min_cache_files = 1                    # whole number >= 0, or false (or 0): off
    require_cache_reuse = true
    no_behaviour_regressions = false
    expectations = "expectations.toml"     # or false; relative to the file that sets it
    min_ratios = { speedup_decode = 0.5 }  # ratio metric -> minimum
    scenarios = ["agent-session"]
    servers = ["mlx-textgen"]
    baseline = "reports/<run-id>"
    max_baseline_regression_pct = 25       # number >= 0, or false: off
    baseline_metrics = ["speedup_first", "speedup_follow_up"]
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The ratios a gate may name: harness.analysis.summary.RATIOS holds how each is formed (a unit test
# keeps the two lists equal; the analysis stage sits above this one, so the names are kept here).
RATIO_NAMES = (
    "speedup_first",
    "speedup_follow_up",
    "speedup_restart",
    "speedup_first_ttft",
    "speedup_follow_up_ttft",
    "speedup_prompt",
    "speedup_decode",
)

Threshold = Annotated[float, Field(ge=0)]


class GateSettings(BaseModel):
    """Typed ``[tool.harness.gate]``. A numeric gate that is None is off (``false`` in TOML)."""

    # Strict: "3" is not a number and 1 is not true, as in TOML itself.
    model_config = ConfigDict(extra="forbid", strict=True)

    min_follow_up_speedup: Threshold | None = 3.0
    max_first_request_slowdown: Threshold | None = 1.5
    min_cache_files: Annotated[int, Field(ge=0)] | None = 1
    require_cache_reuse: bool = True
    no_behaviour_regressions: bool = False
    expectations: str | None = None
    min_ratios: dict[str, float] = Field(default_factory=dict)
    scenarios: list[str] | None = None
    servers: list[str] | None = None
    # Client libraries whose breaking answers fail the gate (harness.clients; e.g. ["ai-sdk"]).
    clients: list[str] | None = None
    baseline: str | None = None
    max_baseline_regression_pct: Threshold | None = 25.0
    baseline_metrics: list[str] = Field(default_factory=lambda: ["speedup_first", "speedup_follow_up"])

    @model_validator(mode="before")
    @classmethod
    def _known_settings(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [key for key in data if key not in cls.model_fields]
            if unknown:
                raise ValueError(f"unknown gate setting '{unknown[0]}'; known settings: {', '.join(cls.model_fields)}")
        return data

    @field_validator(
        "min_follow_up_speedup",
        "max_first_request_slowdown",
        "min_cache_files",
        "max_baseline_regression_pct",
        "expectations",
        mode="before",
    )
    @classmethod
    def _false_is_off(cls, value: Any) -> Any:
        return None if value is False else value

    @field_validator("min_ratios", mode="before")
    @classmethod
    def _ratio_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            _known_ratios(value)
        return value

    @field_validator("baseline_metrics", mode="before")
    @classmethod
    def _ratio_list(cls, value: Any) -> Any:
        if value is None or value is False:
            return []
        if isinstance(value, list):
            _known_ratios(value)
        return value


def _known_ratios(names: Any) -> None:
    for name in names:
        if name not in RATIO_NAMES:
            raise ValueError(f"unknown metric '{name}'; known ratio metrics: {', '.join(RATIO_NAMES)}")
