"""Which model each scenario runs on: the user's ``--model``, the scenario's own built-in tool model,
or the default model. Scenarios on one model form a group, so each server starts once per model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.models.builtin import build_model, check_model_dir, default_model_path, tool_model_path
from harness.run.config import RunConfig
from harness.scenario.definition import Scenario


@dataclass
class ModelGroup:
    """Scenarios that run on one model, so each server is started once per model."""

    path: Path
    builtin: bool
    scenarios: list[Scenario] = field(default_factory=list)


def group_by_model(config: RunConfig, scenarios: list[Scenario]) -> list[ModelGroup]:
    groups: dict[Path, ModelGroup] = {}
    user_model = Path(config.model).expanduser().resolve() if config.model else None
    for scenario in scenarios:
        if user_model is not None:
            path, builtin = user_model, False
        elif scenario.model:
            path, builtin = tool_model_path(scenario.model), True
        else:
            path, builtin = default_model_path(), True
        groups.setdefault(path, ModelGroup(path, builtin)).scenarios.append(scenario)
    return list(groups.values())


def ensure_models(groups: list[ModelGroup]) -> None:
    for group in groups:
        if group.builtin and group.path == default_model_path():
            build_model(group.path)  # no-op when already built
        check_model_dir(group.path)
