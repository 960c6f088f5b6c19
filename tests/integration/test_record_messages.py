"""`harness record` in front of a Messages API server, driven by the `anthropic` Python package (a
client nobody here wrote): a tool loop of one plain and one streamed request goes through the proxy
unchanged, is recorded with its Anthropic body, and the recorded session replays natively.

The code under test is the proxy and the recorder; the upstream is the FAKE Messages server
(tests/faultserver/fake_messages_server.py), since no server the suite starts on its own serves the
Messages API (the real ones come from the server catalogue, see test_anthropic_native.py).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anthropic
import httpx
import pytest
from recording_proxy import record_session

from harness.core.rows import read_rows
from harness.run.config import load_config
from harness.run.runner import Runner
from harness.scenario.definition import load_scenario

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE_MESSAGES = REPO_ROOT / "tests" / "faultserver" / "fake_messages_server.py"
SECRET = "sk-ant-record-test-0123456789"
TOOLS = [
    {
        "name": "Read",
        "description": "Read a file.",
        "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]},
    }
]
SYSTEM = [{"type": "text", "text": "You are a coding assistant.", "cache_control": {"type": "ephemeral"}}]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def upstream():
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(FAKE_MESSAGES), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _tool_loop(base_url: str) -> tuple[list[str], str]:
    """A tool call (not streamed), its result sent back, the answer streamed."""
    client = anthropic.Anthropic(base_url=base_url, api_key=SECRET, max_retries=0, timeout=60)
    common = {"model": "claude-test", "max_tokens": 64, "system": SYSTEM, "tools": TOOLS}
    messages: list = [{"role": "user", "content": "Read src/app.py; use a tool."}]
    first = client.messages.create(messages=messages, **common)
    (use,) = [block for block in first.content if block.type == "tool_use"]
    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "def main(): pass"}]},
    ]
    with client.messages.stream(messages=messages, **common) as stream:
        final = stream.get_final_message()
    text = "".join(block.text for block in final.content if block.type == "text")
    return [first.stop_reason, final.stop_reason], text


@pytest.fixture(scope="module")
def recording(upstream, tmp_path_factory):
    work = tmp_path_factory.mktemp("record")
    code, output, run_dir, (stops, text) = record_session(upstream, work, "claude", "fake-messages", _tool_loop)
    return code, output, run_dir, stops, text


def test_the_anthropic_client_goes_through_and_the_bodies_are_kept(recording):
    code, output, run_dir, stops, text = recording
    assert code == 130, output
    assert stops == ["tool_use", "end_turn"] and text == "Done."
    scenario = load_scenario(run_dir / "scenarios" / "claude-1.yaml")
    originals = [turn.anthropic_request or {} for turn in scenario.turns]
    assert [bool(body.get("stream")) for body in originals] == [False, True]
    assert all(body["system"] == SYSTEM and body["tools"] == TOOLS for body in originals)
    assert originals[1]["messages"][2]["content"][0]["type"] == "tool_result"  # as the client sent it
    # ... and the converted request beside it, with the recorded answer as the A/B reference.
    assert scenario.turns[1].request["messages"][3]["role"] == "tool"
    assert scenario.turns[0].response["choices"][0]["finish_reason"] == "tool_calls"


def test_the_observed_rows_are_checked_natively_and_no_key_is_written(recording):
    _code, _output, run_dir, _stops, _text = recording
    rows = read_rows(run_dir)
    assert [(row.protocol, row.stream, row.request_kind) for row in rows] == [
        ("anthropic", False, "first"),
        ("anthropic", True, "follow-up"),
    ]
    assert all(row.http_status == 200 and not row.checks_failed for row in rows), [r.checks_failed for r in rows]
    assert rows[0].tool_calls[0]["name"] == "Read" and rows[1].ttft_s and rows[1].ttft_s <= rows[1].total_s
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_the_recorded_session_replays_natively(recording, tmp_path):
    _code, _output, run_dir, _stops, _text = recording
    toml = tmp_path / "harness.toml"
    toml.write_text(
        textwrap.dedent(f"""
        servers = ["fake-messages"]
        reference = "fake-messages"
        [server.fake-messages]
        command = ["{{python}}", "{FAKE_MESSAGES}", "--port", "{{port}}", "--host", "{{host}}"]
        ready_timeout_s = 30
        protocols = {{anthropic = "/v1/messages"}}
    """)
    )
    config = load_config(
        toml,
        {"scenarios": [str(run_dir / "scenarios")], "protocol": "anthropic", "out": str(tmp_path / "runs")},
        project_dir=tmp_path,
    )
    rows = [row for row in read_rows(Runner(config).run()) if row.request_kind != "warmup"]
    assert [(row.turn, row.protocol, row.http_status) for row in rows] == [(0, "anthropic", 200), (1, "anthropic", 200)]
    assert [row.ab_reference for row in rows] == ["recorded", "recorded"]
    assert rows[0].ab_diff in ("identical", "equivalent"), rows[0].ab_detail
