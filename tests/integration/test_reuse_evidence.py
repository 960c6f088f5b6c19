"""Cache-reuse evidence that holds for any server and release, tested layer by layer against a fake
prefix-cache server (tests/stubs/prefix_cache_server.py) declared as a custom command server:
the protocol layer (usage cached_tokens, asked for on streams), the log layer (patterns declared in
harness.toml), the timing layer (no usage, no log), both prompt_tokens conventions, and what a
server says about itself (versions, fingerprints, readiness, the model name it accepts)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from harness.core.rows import ResultRow, read_rows
from harness.presentation.report import build_report
from harness.run.config import load_config
from harness.run.runner import Runner

pytestmark = pytest.mark.integration

FAKE = Path(__file__).resolve().parents[1] / "stubs" / "prefix_cache_server.py"
SYSTEM_WORDS = 1200  # a cold prompt long enough for timing to speak (~1.2 s at 1 ms a token)


def _scenario(tmp_path: Path) -> Path:
    path = tmp_path / "evidence.yaml"
    system = " ".join(f"rule{i}" for i in range(SYSTEM_WORDS))
    path.write_text(
        textwrap.dedent(f"""
            name: evidence
            system: "{system}"
            params: {{max_tokens: 4}}
            variants: [{{stream: true}}, {{stream: false}}]
            turns:
              - user: "first question"
                reply: {{content: "first answer"}}
              - user: "second question"
                reply: {{content: "second answer"}}
              - user: "third question"
                reply: {{content: "third answer"}}
        """)
    )
    return path


def _run(
    tmp_path: Path, *fake_args: str, extra: str = "", scenario: Path | None = None
) -> tuple[list[ResultRow], dict]:
    args = "".join(f', "{a}"' for a in fake_args)
    toml = tmp_path / "harness.toml"
    toml.write_text(
        textwrap.dedent(f"""
            servers = ["fake"]
            reference = "fake"
            [server.fake]
            command = ["{{python}}", "{FAKE}", "--port", "{{port}}", "--host", "{{host}}"{args}]
            ready_timeout_s = 30
        """)
        + textwrap.dedent(extra)
    )
    scenario = scenario or _scenario(tmp_path)
    config = load_config(toml, {"scenarios": [str(scenario)], "out": str(tmp_path / "runs")}, tmp_path)
    run_dir = Runner(config).run()
    build_report(run_dir)  # every layer's rows render
    return read_rows(run_dir), json.loads((run_dir / "run.json").read_text())["servers"]["fake"]


def _follow_ups(rows: list[ResultRow]) -> list[ResultRow]:
    follow = [r for r in rows if r.request_kind == "follow-up"]
    assert len(follow) == 4 and {r.stream for r in follow} == {True, False}  # 2 per mode
    assert all(r.error is None for r in rows), [r.error for r in rows]
    return follow


@pytest.mark.parametrize("counting", ["whole", "uncached"])
def test_protocol_layer_decides_on_streams_too_whatever_prompt_tokens_counts(tmp_path, counting):
    rows, server = _run(tmp_path, "--cached-tokens", "--stream-usage", "when-asked", "--prompt-tokens", counting)
    follow = _follow_ups(rows)
    assert [(r.cache_reused, r.reuse_source) for r in follow] == [(True, "protocol")] * 4
    assert all(r.cached_tokens and r.cached_tokens > SYSTEM_WORDS for r in follow)
    observed = server["observed"]
    assert observed["stream_usage"] == "sent"  # the harness asked, so streams carried usage
    assert observed["prompt_tokens_include_cached"] is (counting == "whole")
    assert "turn" in observed["prompt_tokens_evidence"]


def test_log_layer_uses_the_patterns_declared_for_the_server(tmp_path):
    patterns = """
        reuse_pattern = 'hit: (\\d+) tokens'
        miss_pattern = '^miss$'
    """
    rows, _ = _run(tmp_path, "--log", extra=patterns)
    follow = _follow_ups(rows)
    assert [(r.cache_reused, r.reuse_source) for r in follow] == [(True, "log")] * 4
    first = next(r for r in rows if r.request_kind == "first")
    assert (first.cache_reused, first.reuse_source) == (False, "log")


def test_timing_layer_decides_when_a_server_says_nothing(tmp_path):
    rows, _ = _run(tmp_path, "--prefill-ms", "1", "--stream-usage", "when-asked")
    assert [(r.cache_reused, r.reuse_source) for r in _follow_ups(rows)] == [(True, "timing")] * 4


def test_timing_layer_stays_silent_on_short_prompts(tmp_path):
    # 60 words: a request's fixed costs weigh as much as its prompt, so timing cannot tell.
    scenario = _scenario(tmp_path)
    scenario.write_text(scenario.read_text().replace(" ".join(f"rule{i}" for i in range(SYSTEM_WORDS)), "short"))
    rows, _ = _run(tmp_path, "--prefill-ms", "1", "--stream-usage", "when-asked", scenario=scenario)
    assert {(r.cache_reused, r.reuse_source) for r in _follow_ups(rows)} == {(None, None)}


def test_timing_layer_sees_a_server_that_never_reuses(tmp_path):
    rows, _ = _run(tmp_path, "--prefill-ms", "1", "--no-cache", "--stream-usage", "when-asked")
    follow = [r for r in _follow_ups(rows) if r.stream]  # the mode with its own cold first request
    assert [(r.cache_reused, r.reuse_source) for r in follow] == [(False, "timing")] * 2


def test_a_refused_stream_options_is_remembered_and_the_request_sent_as_written(tmp_path):
    rows, server = _run(tmp_path, "--stream-usage", "refuse", "--cached-tokens")
    assert server["observed"]["stream_usage"] == "refused"
    streamed = [r for r in rows if r.stream]
    assert streamed and all(r.error is None and r.http_status == 200 for r in streamed)
    # no usage on streams, so the protocol layer speaks only for the non-streamed mode
    assert {r.reuse_source for r in rows if not r.stream and r.request_kind == "follow-up"} == {"protocol"}


def test_identity_readiness_fallback_and_versions(tmp_path):
    rows, server = _run(
        tmp_path, "--no-models", "--version", "9.9.1", "--fingerprint", "fp_fake_1", extra='request_model = "fake"\n'
    )
    identity = server["identity"]
    assert identity["ready_probe"] == "a one-token completion"  # /v1/models and /health answer 404
    assert "9.9.1" in identity["reported"]["/version"]
    assert identity["packages"]["python"]  # asked of the server's own interpreter
    assert server["observed"]["system_fingerprints"] == ["fp_fake_1"]
    assert rows
    run_dirs = list((tmp_path / "runs").iterdir())
    text = (run_dirs[0] / "summary.md").read_text()
    assert "9.9.1" in text and "fp_fake_1" in text and "The harness's own environment" in text


def test_a_refused_model_name_says_how_to_fix_it(tmp_path):
    rows, _ = _run(tmp_path, extra='request_model = "not-the-served-id"\n')
    errors = {r.error for r in rows}
    assert len(errors) == 1
    (error,) = errors
    assert error and error.startswith("HTTP 404") and "not-the-served-id" in error and "request_model" in error
