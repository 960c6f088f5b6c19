"""The built-in model's folder is whole or absent, also when processes build it at once (as the
suite's workers do on a fresh clone)."""

from __future__ import annotations

import os
import subprocess
import sys

from harness.models.builtin import build_model, default_model_path, model_checksum

BUILD = "from harness.models.builtin import build_model, default_model_path; build_model(default_model_path())"


def test_two_processes_building_the_model_at_once_leave_one_whole_model(tmp_path):
    env = dict(os.environ, HARNESS_MODELS_DIR=str(tmp_path))
    builders = [subprocess.Popen([sys.executable, "-c", BUILD], env=env, stderr=subprocess.PIPE) for _ in range(2)]
    errors = [builder.communicate(timeout=300)[1].decode() for builder in builders]
    assert [builder.returncode for builder in builders] == [0, 0], errors
    built = tmp_path / default_model_path().name
    assert sorted(path.name for path in built.iterdir() if path.suffix == ".safetensors") == ["model.safetensors"]
    # Deterministic from its seed: the same model as the one the suite uses.
    assert model_checksum(built) == model_checksum(build_model(default_model_path()))
