"""RunConfig merging and server specs."""

import json
from pathlib import Path

import pytest

from harness.analysis.summary import RATIOS
from harness.core.errors import ConfigError
from harness.run.config import API_KEY_ENV, load_config
from harness.run.gate_settings import RATIO_NAMES


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


def test_api_key_is_masked_in_the_recorded_config_and_still_reaches_the_servers(tmp_path, monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    config = load_config(overrides={"api_key": "sk-secret-123"}, project_dir=tmp_path)
    dump = config.public_dump()
    assert dump["api_key"] == "***" and "sk-secret-123" not in json.dumps(dump)
    assert "sk-secret-123" not in repr(config) and "sk-secret-123" not in str(config)
    # Masked everywhere it is shown, but every server is started with (and sent) the real key.
    assert [spec.api_key for spec in config.server_specs()] == ["sk-secret-123"] * len(config.servers)
    # From the environment too; without a key nothing is masked and no key is sent.
    monkeypatch.setenv(API_KEY_ENV, "sk-from-env")
    assert load_config(project_dir=tmp_path).server_specs()[0].api_key == "sk-from-env"
    monkeypatch.delenv(API_KEY_ENV)
    keyless = load_config(project_dir=tmp_path)
    assert keyless.public_dump()["api_key"] is None and keyless.server_specs()[0].api_key is None


@pytest.mark.parametrize(
    "gate_toml, field, message",
    [
        ("min_speed = 2", "gate", "unknown gate setting 'min_speed'; known settings: min_follow_up_speedup"),
        ("min_follow_up_speedup = -1", "gate.min_follow_up_speedup", "greater than or equal to 0 (got -1)"),
        ('min_follow_up_speedup = "3x"', "gate.min_follow_up_speedup", "a valid number (got '3x')"),
        ("min_cache_files = 1.5", "gate.min_cache_files", "a valid integer (got 1.5)"),
        ("require_cache_reuse = 1", "gate.require_cache_reuse", "a valid boolean (got 1)"),
        ("min_ratios = { speedup_bogus = 1.0 }", "gate.min_ratios", "unknown metric 'speedup_bogus'; known ratio"),
        ("min_ratios = { speedup_decode = true }", "gate.min_ratios.speedup_decode", "a valid number (got True)"),
        ('baseline_metrics = ["first_latency"]', "gate.baseline_metrics", "unknown metric 'first_latency'"),
        ("expectations = 3", "gate.expectations", "a valid string (got 3)"),
    ],
)
def test_bad_gate_settings_fail_when_the_config_loads(tmp_path, gate_toml, field, message):
    (tmp_path / "pyproject.toml").write_text("[tool.harness.gate]\n" + gate_toml + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(project_dir=tmp_path)
    text = str(caught.value)
    assert f"{tmp_path / 'pyproject.toml'} [tool.harness]" in text and f"field '{field}'" in text, text
    assert message in text, text


def test_gate_settings_are_typed_with_false_as_off(tmp_path):
    (tmp_path / "harness.toml").write_text(
        "[gate]\nmin_follow_up_speedup = 4\nmax_first_request_slowdown = false\nexpectations = false\n"
        "min_ratios = { speedup_decode = 1 }\n"
    )
    gate = load_config(project_dir=tmp_path).gate
    assert gate.min_follow_up_speedup == 4.0 and gate.max_first_request_slowdown is None
    assert gate.expectations is None and gate.min_ratios == {"speedup_decode": 1.0}
    assert gate.baseline_metrics == ["speedup_first", "speedup_follow_up"] and gate.min_cache_files == 1


def test_the_gate_knows_every_ratio_the_analysis_forms():
    assert list(RATIO_NAMES) == list(RATIOS)


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
