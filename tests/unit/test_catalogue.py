"""The catalogue of servers: every entry loads, releases are picked with NAME@VERSION, the
environment key follows the requirement set, and a broken entry is an error naming file and field."""

from __future__ import annotations

import pytest

from harness.core.errors import ConfigError
from harness.run.config import load_config
from harness.server.catalogue import load_catalogue, split_release
from harness.server.environments import uv_options_from_pip_config


def test_the_catalogue_lists_todays_servers_with_protocols_and_cache_kinds():
    catalogue = load_catalogue()
    assert {"mlx-lm", "vllm-mlx", "mlx-openai-server", "mlx-omni-server"} <= set(catalogue)
    assert catalogue["vllm-mlx"].protocols["anthropic"] == "/v1/messages"
    assert catalogue["mlx-omni-server"].protocols["anthropic"] == "/anthropic/v1/messages"
    for entry in catalogue.values():
        assert entry.verified and entry.cache and entry.install


def test_name_at_version_builds_that_release_in_its_own_environment(tmp_path):
    config = load_config(
        overrides={"servers": ["mlx-lm@0.31.3", "mlx-lm"], "reference": "mlx-lm"}, project_dir=tmp_path
    )
    older, default = config.server_specs()
    assert (older.name, older.release, default.name, default.release) == ("mlx-lm@0.31.3", "0.31.3", "mlx-lm", "0.32.2")
    assert "mlx-lm==0.31.3" in older.environment.steps[0].packages
    assert older.environment.key() != default.environment.key()
    # Any release, not only verified ones: the template's {version} is filled in.
    (unverified,) = load_config(
        overrides={"servers": ["mlx-lm@0.30.0"], "reference": "mlx-lm@0.30.0"}, project_dir=tmp_path
    ).server_specs()
    assert "mlx-lm==0.30.0" in unverified.environment.steps[0].packages


def test_an_unknown_release_base_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="NAME@VERSION picks a release of a catalogue server"):
        load_config(
            overrides={"servers": ["nosuch@1.0"], "reference": "nosuch@1.0"}, project_dir=tmp_path
        ).server_specs()


def test_split_release():
    assert split_release("mlx-lm@0.32.2") == ("mlx-lm", "0.32.2")
    assert split_release("legacy") == ("legacy", None)


def test_a_broken_entry_names_the_file_and_field(tmp_path):
    (tmp_path / "bad.toml").write_text('name = "x"\nlabel = "x"\nabout = "x"\nverified = ["1"]\ncache = "sometimes"\n')
    load_catalogue.cache_clear()
    try:
        with pytest.raises(ConfigError) as caught:
            load_catalogue(tmp_path)
    finally:
        load_catalogue.cache_clear()
    message = str(caught.value)
    assert "bad.toml" in message and "field 'cache'" in message and "field 'install'" in message


def test_pips_configuration_is_handed_to_uv():
    text = (
        "global.constraint='/etc/xdg/pip/constraints.txt'\n"
        "global.extra-index-url='file:///a/simple file:///b/simple'\n"
        "global.find-links='/opt/wheels'\n"
        ":env:.find-links='/opt/wheels'\n"
        "global.cert='/etc/ssl/certs/ca.crt'\n"
    )
    options = uv_options_from_pip_config(text)
    assert options == [
        "--constraint", "/etc/xdg/pip/constraints.txt",
        "--extra-index-url", "file:///a/simple",
        "--extra-index-url", "file:///b/simple",
        "--find-links", "/opt/wheels",
        "--index-strategy", "unsafe-best-match",
    ]  # fmt: skip
    assert uv_options_from_pip_config("") == []


def test_llama_cpp_reuse_is_read_from_its_log_lines(tmp_path):
    """Lines as llama-cpp-python 0.3.36 writes them (from a run's server log)."""
    from harness.server.process import ServerProcess

    spec = load_catalogue()["llama-cpp"].spec()
    server = ServerProcess(spec, tmp_path / "m.gguf", home=tmp_path, log_path=tmp_path / "log")
    hit = "Llama.generate: 160 prefix-match hit, remaining 105 prompt tokens to eval\nINFO: POST 200 OK\n"
    assert server.cache_reuse_from_log(hit) == (True, 160)
    assert server.cache_reuse_from_log("Llama.generate: full prompt already cached, skipping reset\n") == (True, None)
    refused = "Llama.generate: 90 prefix-match found but partial kv removal not supported, re-evaluating full prompt"
    assert server.cache_reuse_from_log(refused) == (False, 0)
    assert server.cache_reuse_from_log('INFO:     127.0.0.1:1 - "POST /v1/chat/completions HTTP/1.1" 200 OK') == (
        None,
        None,
    )
