"""Damage done to a copy of a server's cache dirs, and how the first answer after it is classified."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from harness.checks.damage import classify, classify_start_failure
from harness.core.rows import ResultRow
from harness.server import cache_damage
from harness.server.process import ServerProcess
from harness.server.spec import mlx_textgen_spec, with_capacity


def make_home(root: Path) -> tuple[Path, Path]:
    """A HOME laid out as MLX-Textgen leaves it: a config naming its cache root, an index, two caches."""
    home = root / "home"
    cache = home / ".cache" / "mlx_textgen" / "prompt_cache" / "tiny"
    cache.mkdir(parents=True)
    config = home / ".config" / "mlx_textgen" / "venv" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"cache_dir": str(home / ".cache" / "mlx_textgen")}))
    (home / ".cache" / "mlx_textgen" / "api.log").write_text(f"started in {home}\n")
    (cache / "cache_0.safetensors").write_bytes(b"a" * 3000)
    (cache / "cache_1.safetensors").write_bytes(b"b" * 5000)
    os.utime(cache / "cache_0.safetensors", (1, 1))  # cache_1 is the newest
    (cache / "cached_prompts.json").write_text("{}")
    return home, home / ".cache" / "mlx_textgen" / "prompt_cache"


def test_copy_home_points_the_copy_at_itself(tmp_path):
    home, _ = make_home(tmp_path)
    copy = tmp_path / "copy"
    rewritten = cache_damage.copy_home(home, copy)
    config = copy / ".config" / "mlx_textgen" / "venv" / "config.json"
    assert rewritten == [config]
    assert json.loads(config.read_text())["cache_dir"] == str(copy / ".cache" / "mlx_textgen")
    # Logs are history: left as they were. The original is untouched.
    assert str(home) in (copy / ".cache" / "mlx_textgen" / "api.log").read_text()
    assert str(home) in (home / ".config" / "mlx_textgen" / "venv" / "config.json").read_text()


def test_file_damages_hit_the_newest_cache_file_or_the_index(tmp_path):
    for fault in ("truncate", "zeros", "delete-index", "empty", "intact"):
        _, cache = make_home(tmp_path / fault)
        damage = cache_damage.apply(fault, [cache])
        assert damage.applied, damage.action
        newest, oldest = cache / "tiny" / "cache_1.safetensors", cache / "tiny" / "cache_0.safetensors"
        index = cache / "tiny" / "cached_prompts.json"
        if fault == "truncate":
            assert newest.stat().st_size == 2500 and oldest.read_bytes() == b"a" * 3000
            assert damage.action == "cache_1.safetensors cut from 5,000 bytes to 2,500 bytes"
        elif fault == "zeros":
            assert newest.read_bytes() == b"\0" * 5000 and oldest.read_bytes() == b"a" * 3000
        elif fault == "delete-index":
            assert not index.exists() and newest.exists() and oldest.exists()
        elif fault == "empty":
            assert not any(path.is_file() for path in cache.rglob("*"))
        else:
            assert damage.action == "copied as it was: 3 files, 8,002 bytes"
        assert damage.release() == []


def test_a_damage_with_nothing_to_damage_is_not_applied(tmp_path):
    empty = tmp_path / "kv-cache"
    empty.mkdir()
    for fault in ("truncate", "zeros", "delete-index"):
        damage = cache_damage.apply(fault, [empty])
        assert not damage.applied and damage.action.startswith("not applied: no ")
    with pytest.raises(ValueError, match="unknown cache damage"):
        cache_damage.apply("shred", [empty])


def test_read_only_cache_dir_refuses_writes_until_released(tmp_path):
    _, cache = make_home(tmp_path)
    damage = cache_damage.apply("read-only", [cache])
    try:
        if not damage.applied:
            pytest.skip(damage.action)
        with pytest.raises(OSError) as refused:
            (cache / "tiny" / "new.safetensors").write_bytes(b"x")
        assert refused.value.errno in (errno.EROFS, errno.EACCES)
        assert (cache / "tiny" / "cache_1.safetensors").read_bytes() == b"b" * 5000  # still readable
    finally:
        assert damage.release() == []
    (cache / "tiny" / "new.safetensors").write_bytes(b"x")
    assert not os.path.ismount(cache)


def test_full_disk_leaves_only_a_little_room_and_keeps_the_files_on_release(tmp_path):
    _, cache = make_home(tmp_path)
    damage = cache_damage.apply("full-disk", [cache], free_bytes=16 * 1024)
    try:
        if not damage.applied:
            pytest.skip(damage.action)  # not root, or the machine refuses a tmpfs
        assert os.path.ismount(cache) and "16,384 bytes free" in damage.action
        (cache / "tiny" / "small.json").write_text("{}")  # a little still fits
        with pytest.raises(OSError) as full:
            (cache / "tiny" / "cache_2.safetensors").write_bytes(b"c" * 64 * 1024)
        assert full.value.errno == errno.ENOSPC
    finally:
        assert damage.release() == []
    assert not os.path.ismount(cache)
    # What the server left on the full disk stays in the copy as evidence.
    assert (cache / "tiny" / "cache_1.safetensors").read_bytes() == b"b" * 5000
    assert (cache / "tiny" / "small.json").exists()


def row(**fields) -> ResultRow:
    base = dict(run_id="r", server="s", scenario="d", turn=2, request_kind="restart", stream=False, started_at=1.0)
    return ResultRow(**{**base, **fields})


CALL = [{"id": "call_1", "name": "Bash", "arguments": {"command": "pytest -q"}}]


def test_outcomes_of_the_first_request_after_the_damage():
    intact = row(http_status=200, tool_calls=CALL, finish_reason="tool_calls", cache_reused=True)
    empty = row(http_status=200, tool_calls=CALL, finish_reason="tool_calls", cache_reused=False)
    refs = {"intact": intact, "empty": empty}
    same_miss = row(http_status=200, tool_calls=CALL, finish_reason="tool_calls", cache_reused=False)
    assert classify(same_miss, refs, "", True)[0] == "cache-miss"
    same_hit = row(http_status=200, tool_calls=CALL, finish_reason="tool_calls", cache_reused=True, reuse_source="log")
    outcome, evidence = classify(same_hit, refs, "", True)
    assert outcome == "answered" and "cache reused (log)" in evidence and "intact" in evidence
    garbage = row(http_status=200, content="<|endoftext|>" * 4, finish_reason="length", cache_reused=True)
    outcome, evidence = classify(garbage, refs, "", True)
    assert outcome == "wrong-answer" and "differs from intact" in evidence
    refused = row(
        http_status=500,
        error="HTTP 500",
        check_evidence={"http.status": 'HTTP 500: b\'{"detail":"[load_safetensors] Invalid json header"}\''},
    )
    log = "INFO ok\n[ERROR] 2026 - MLX Textgen - [load_safetensors] Invalid json header length file x\n"
    outcome, evidence = classify(refused, refs, log, True)
    assert outcome == "error" and "Invalid json header" in evidence and "server log" in evidence
    died = row(error="RemoteProtocolError; s exited with code -11 (killed by SIGSEGV) during the request")
    assert classify(died, refs, "", False)[0] == "crash"
    cut = row(error="no answer within 3 s", stop_cause="stalled")
    assert classify(cut, refs, "", True)[0] == "hang"
    # A reference is compared with the other reference, never with itself.
    assert classify(intact, {"intact": intact}, "", True, "intact")[1].endswith("the intact reference")
    assert classify_start_failure("s exited with code 1 during start-up")[0] == "crash"
    assert classify_start_failure("s did not become ready within 10 s")[0] == "hang"


def test_the_first_reuse_or_miss_line_of_a_request_decides(tmp_path):
    server = ServerProcess(mlx_textgen_spec(), tmp_path, home=tmp_path, log_path=tmp_path / "log")
    # MLX-Textgen's second pass over a tool call finds the cache its first pass has just written.
    two_passes = 'No suitable cache found. Time taken: 0.0s.\nReusing cache "cache_0". 398 tokens for each prompt'
    assert server.cache_reuse_from_log(two_passes) == (False, 0)
    assert server.cache_reuse_from_log('Reusing cache "cache_0". 378 tokens\nNo suitable cache found.') == (True, 378)


def test_capacity_goes_last_on_servers_that_have_one():
    spec = with_capacity(mlx_textgen_spec(["--max-capacity", "9"]), 2)
    assert spec.command[-4:] == ["--max-capacity", "9", "--max-capacity", "2"]
    assert with_capacity(mlx_textgen_spec(), None).command == mlx_textgen_spec().command
