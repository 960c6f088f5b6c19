"""RunConfig merging and server specs."""

from pathlib import Path

import pytest

from harness.core.errors import ConfigError
from harness.run.config import load_config


def test_cli_overrides_file_and_pyproject(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.harness]\nrepeats = 2\nscenarios = ["short-chat"]\n')
    (tmp_path / "harness.toml").write_text("repeats = 3\n[server.legacy.quirks]\nmax_tokens_ignored = false\n")
    config = load_config(overrides={"servers": ["legacy"], "reference": "legacy"}, project_dir=tmp_path)
    assert config.repeats == 3 and config.scenarios == ["short-chat"]
    legacy = config.server_specs()[0]
    assert "--honour-max-tokens" in legacy.command and legacy.quirks["max_tokens_ignored"] is False


def test_unknown_server_names_the_fix(tmp_path):
    config = load_config(overrides={"servers": ["legacy", "vllm"]}, project_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"unknown server 'vllm'.*\[tool.harness.server.vllm\]"):
        config.server_specs()


def test_custom_command_server(tmp_path):
    (tmp_path / "harness.toml").write_text(
        'servers = ["legacy", "mine"]\n[server.mine]\ncommand = ["{python}", "my_server.py", "--port", "{port}"]\n'
        'ready_path = "/health"\n'
    )
    spec = load_config(project_dir=tmp_path).server_specs()[1]
    assert spec.command[1] == "my_server.py" and spec.ready_path == "/health"


def test_bad_field_names_the_file(tmp_path):
    (tmp_path / "harness.toml").write_text("repeats = 0\n")
    with pytest.raises(ConfigError, match=r"harness.toml.*repeats"):
        load_config(project_dir=tmp_path)


def test_api_key_is_masked_in_the_recorded_config(tmp_path):
    config = load_config(overrides={"api_key": "sk-secret-123"}, project_dir=tmp_path)
    assert "sk-secret-123" not in str(config.public_dump())


def test_a_server_like_a_builtin_with_a_quirk_switched(tmp_path):
    (tmp_path / "harness.toml").write_text(
        'servers = ["legacy", "legacy-hermes"]\n[server.legacy-hermes]\nlike = "legacy"\n'
        "[server.legacy-hermes.quirks]\nhermes_parsing = true\n"
    )
    default, hermes = load_config(project_dir=tmp_path).server_specs()
    assert "--parse-hermes" not in default.command and "--parse-hermes" in hermes.command
    assert hermes.name == "legacy-hermes" and hermes.quirks["hermes_parsing"] is True
    assert "hermes_parsing=True" in hermes.label and hermes.ready_path == "/health"


def test_like_must_name_a_builtin(tmp_path):
    (tmp_path / "harness.toml").write_text('servers = ["legacy", "x"]\n[server.x]\nlike = "vllm"\n')
    with pytest.raises(ConfigError, match="like = 'vllm' is not a built-in server"):
        load_config(project_dir=tmp_path).server_specs()


def test_run_folder_and_server_home_are_absolute_for_a_relative_out(tmp_path, monkeypatch):
    """A server runs with its HOME as working directory: a relative HOME would nest inside itself."""
    from harness.run.meta import prepare_run_dir
    from harness.server.process import ServerProcess
    from harness.server.spec import legacy_spec

    monkeypatch.chdir(tmp_path)
    run_dir = prepare_run_dir(Path("reports"), "r1")
    assert run_dir.is_absolute() and run_dir == tmp_path / "reports" / "r1"
    server = ServerProcess(legacy_spec(), "model", home=Path("reports/r1/homes/legacy"), log_path=run_dir / "l.log")
    assert server.home.is_absolute()
    assert all(Path(d).is_absolute() for d in server.cache_dirs)
