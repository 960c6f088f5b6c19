"""Scenario and config files are parsed safely (plain data only), and every error names the file,
the line and the field to fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.cli import main as cli
from harness.core.errors import ConfigError
from harness.run.config import load_config
from harness.scenario.definition import ScenarioError, load_scenario


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def scenario_error(path: Path) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return str(info.value)


# -- scenarios ---------------------------------------------------------------------------------------


def test_wrong_type_names_file_line_and_field(tmp_path):
    path = write(
        tmp_path,
        "wrong-type.yaml",
        """\
name: wrong-type
stream: true
turns:
  - user: "hello"
    reply: {content: "hi"}
  - user: ["not", "a", "string"]
""",
    )
    message = scenario_error(path)
    assert message.startswith(f"{path}: ")
    assert "line 6, field 'turns.1.user'" in message


def test_unknown_field_names_file_line_and_field(tmp_path):
    path = write(
        tmp_path,
        "typo.yaml",
        """\
name: typo
turns:
  - user: "hi"
    replay: {content: "x"}
""",
    )
    message = scenario_error(path)
    assert str(path) in message and "line 4, field 'turns.0.replay'" in message
    assert "Extra inputs are not permitted" in message


def test_missing_field_names_file_and_field(tmp_path):
    path = write(tmp_path, "no-turns.yaml", "name: no-turns\nstream: true\n")
    message = scenario_error(path)
    assert str(path) in message and "field 'turns'" in message and "line 1" in message


@pytest.mark.parametrize(
    "tag, field",
    [
        ('!!python/object/apply:os.system ["touch {marker}"]', "turns.0.user"),
        ('!!python/object/new:os.system ["touch {marker}"]', "turns.0.user"),
        ("!!python/name:os.system", "turns.0.user"),
        ("!!python/object:pathlib.Path {{}}", "turns.0.user"),
    ],
)
def test_python_tags_are_rejected_and_never_run(tmp_path, tag, field):
    marker = tmp_path / "PWNED"
    path = write(
        tmp_path,
        "evil.yaml",
        f"""\
name: evil
turns:
  - user: {tag.format(marker=marker)}
""",
    )
    message = scenario_error(path)
    assert not marker.exists(), "a YAML tag must never construct an object or run code"
    assert message.startswith(f"{path}: ")
    assert "line 3" in message and f"field '{field}'" in message
    assert "python/" in message  # the offending tag is named


def test_python_tag_in_a_top_level_field(tmp_path):
    path = write(
        tmp_path,
        "evil-params.yaml",
        """\
name: evil
params: !!python/name:os.system
turns:
  - user: "hi"
""",
    )
    message = scenario_error(path)
    assert str(path) in message and "line 2" in message and "field 'params'" in message


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(
        tmp_path,
        "syntax.yaml",
        """\
name: syntax
turns:
  - user: "hi"
    reply: {content: "x"
  - user: "b"
""",
    )
    message = scenario_error(path)
    assert message.startswith(f"{path}: ") and re.search(r"line [45]", message)
    assert "<unicode string>" not in message


def test_tools_file_errors_name_the_tools_file(tmp_path):
    write(tmp_path, "tools.json", '[{"type": "function", "function": {"name": "Read",}}]')
    path = write(tmp_path, "with-tools.yaml", "name: t\ntools: tools.json\nturns:\n  - user: hi\n")
    message = scenario_error(path)
    assert str(tmp_path / "tools.json") in message and str(path) in message and "line 1" in message


# -- harness.toml ------------------------------------------------------------------------------------


def config_error(tmp_path: Path, text: str) -> tuple[Path, str]:
    path = write(tmp_path, "harness.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path, project_dir=tmp_path)
    return path, str(info.value)


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path, message = config_error(tmp_path, 'servers = ["legacy"]\nrepeats = = 3\n')
    assert message.startswith(f"{path}: not valid TOML") and "line 2" in message


def test_toml_bad_value_names_file_and_field(tmp_path):
    path, message = config_error(tmp_path, 'servers = ["legacy"]\nrepeats = "three"\n')
    assert str(path) in message and "field 'repeats'" in message


def test_toml_unknown_field_names_file_and_field(tmp_path):
    path, message = config_error(tmp_path, 'servers = ["legacy"]\nrepaets = 3\n')
    assert str(path) in message and "field 'repaets'" in message


def test_server_command_must_be_an_argument_list_not_a_shell_string(tmp_path):
    path, message = config_error(
        tmp_path,
        """\
servers = ["mine"]
reference = "mine"
[server.mine]
command = "python server.py --port {port}; rm -rf /"
""",
    )
    assert str(path) in message and "field 'server.mine.command'" in message and "valid list" in message


def test_config_error_through_the_cli_is_one_paragraph(tmp_path, capsys):
    path = write(tmp_path, "harness.toml", 'servers = ["legacy"]\nrepeats = "three"\n')
    assert cli.main(["run", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
