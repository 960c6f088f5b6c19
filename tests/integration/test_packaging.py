"""The harness as a wheel: built, installed into a plain folder, and run from there.

The package data (scenarios, server programs, tool-call models, the tokenizer corpus) must travel in
the wheel and be found through the installed package, not through the checkout. So the commands run
from an empty folder (``python -m`` puts the working directory first on ``sys.path``) with the
installed copy on ``PYTHONPATH``. That copy wins over the checkout's editable install: setuptools'
editable finder is appended to ``sys.meta_path``, after the path finder that reads ``PYTHONPATH``.
The venv's python supplies the dependencies, so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# What a wheel must carry besides the modules.
DATA_FILES = [
    "harness/data/servers/legacy_server.py",
    "harness/data/servers/legacy_toolparse.py",
    "harness/data/servers/mlx_textgen_launcher.py",
    "harness/data/models/tools-hermes/model.safetensors",
    "harness/data/models/tools-hermes/tokenizer.json",
    "harness/data/tokenizer-corpus.txt",
    "harness/data/scenarios/short-chat.yaml",
    "harness/data/scenarios/agent-session.yaml",
]


def _run(
    command: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """Runs a command to its end; on a hang it is sent SIGTERM (the harness then stops its servers)."""
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"{' '.join(command)} still running after {timeout_s} s:\n{out[-3000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out, "")


def _build_wheel(tmp: Path) -> Path:
    # Built from a copy of the sources: setuptools writes build/ and *.egg-info next to pyproject.toml,
    # and a stale build/lib in the checkout would end up in the wheel.
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, src / name)
    for folder in ("harness", "servers", "scenarios"):
        shutil.copytree(REPO_ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # No build isolation, so nothing is fetched: the venv's setuptools builds it (torch's pin brings
    # setuptools >= 77, which makes wheels without the separate `wheel` package).
    dist = tmp / "dist"
    done = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            ".",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--no-index",
            "-w",
            str(dist),
        ],
        cwd=src,
        timeout_s=180,
    )
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout[-3000:]}"
    wheels = list(dist.glob("mlx_migration_harness-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.mark.integration
def test_wheel_installs_and_runs_from_anywhere(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    missing = [name for name in DATA_FILES if name not in names]
    assert not missing, f"missing from {wheel.name}: {missing}"
    scenarios = sorted(n for n in names if n.startswith("harness/data/scenarios/") and n.endswith(".yaml"))
    on_disk = sorted(
        "harness/data/" + p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "scenarios").rglob("*.yaml")
    )
    assert scenarios == on_disk
    assert "harness/cli/main.py" in names and not any("__pycache__" in n for n in names)

    site = tmp_path / "site"
    done = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(wheel),
        ],
        cwd=tmp_path,
        timeout_s=120,
    )
    assert done.returncode == 0, f"pip install failed:\n{done.stdout[-3000:]}"

    elsewhere = tmp_path / "elsewhere"  # not the checkout: no ./harness to import by accident
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), HARNESS_MODELS_DIR=str(tmp_path / "models"))
    env.pop("PYTHONSAFEPATH", None)

    where = _run(
        [
            sys.executable,
            "-c",
            "import harness, harness.core.paths as p; "
            "print(harness.__file__); print(p.data_dir()); print(p.built_models_dir()); "
            "print(p.server_programs_dir()); print(p.builtin_scenarios_dir())",
        ],
        cwd=elsewhere,
        env=env,
        timeout_s=60,
    )
    assert where.returncode == 0, where.stdout
    package_file, data_dir, models_dir, programs_dir, scenarios_dir = (Path(line) for line in where.stdout.split())
    assert package_file == site / "harness" / "__init__.py", f"imported {package_file}, not the installed copy"
    assert data_dir == site / "harness" / "data"
    assert models_dir == tmp_path / "models"
    # The wheel reads its own copy of servers/ and scenarios/, the same files as the checkout's.
    assert (programs_dir, scenarios_dir) == (data_dir / "servers", data_dir / "scenarios")
    for name in ("servers/legacy_server.py", "scenarios/agent-session.yaml", "scenarios/tools/agent-tools.json"):
        assert (data_dir / name).read_bytes() == (REPO_ROOT / name).read_bytes(), name

    built = _run([sys.executable, "-m", "harness.cli.main", "build-model"], cwd=elsewhere, env=env, timeout_s=180)
    assert built.returncode == 0, f"build-model failed:\n{built.stdout[-3000:]}"
    assert (tmp_path / "models" / "tiny-chat-qwen2" / "model.safetensors").is_file()

    reports = tmp_path / "reports"
    ran = _run(
        [
            sys.executable,
            "-m",
            "harness.cli.main",
            "run",
            "--scenarios",
            "short-chat",
            "--servers",
            "legacy",
            "--out",
            str(reports),
        ],
        cwd=elsewhere,
        env=env,
        timeout_s=300,
    )
    assert ran.returncode == 0, f"run failed:\n{ran.stdout[-3000:]}"
    run_dirs = [p for p in reports.iterdir() if p.is_dir()]
    assert len(run_dirs) == 1, run_dirs
    run_dir = run_dirs[0]
    rows = [
        json.loads(line)
        for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    assert rows, ran.stdout[-3000:]
    assert [row["error"] for row in rows if row["error"]] == []
    assert all(row["http_status"] == 200 and row["scenario"] == "short-chat" for row in rows)
    # The server program started was the installed one, on the model built into HARNESS_MODELS_DIR.
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    command = meta["servers"]["legacy"]["command"]
    assert str(site / "harness" / "data" / "servers" / "legacy_server.py") in command, command
    assert meta["model"]["path"] == str(tmp_path / "models" / "tiny-chat-qwen2")
    assert (run_dir / "summary.csv").is_file() and (run_dir / "report.html").is_file()
    assert list(elsewhere.iterdir()) == []  # nothing written to the working directory
