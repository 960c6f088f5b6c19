"""The SSE reader's framing faults, and disk-cache accounting."""

from harness.capture import cachefiles
from harness.capture.sse import SSEReader, delta_has_output


def feed_all(data: bytes, piece: int = 5) -> SSEReader:
    reader = SSEReader()
    for start in range(0, len(data), piece):
        reader.feed(data[start : start + piece], now_s=start / 1000)
    reader.close(1.0)
    return reader


def test_events_split_across_reads_are_reassembled():
    reader = feed_all(b'data: {"a": 1}\n\ndata: {"b": "\xc3\xa9"}\n\ndata: [DONE]\n\n', piece=3)
    assert [e.payload for e in reader.events[:2]] == [{"a": 1}, {"b": "é"}]
    assert reader.events[-1].is_done and reader.faults == []


def test_framing_faults_keep_the_bad_bytes():
    reader = feed_all(b'data: {"a": 1}\nnonsense line\n\ndata: [DONE]\n\ndata: {"late": true}')
    assert any("nonsense line" in fault for fault in reader.faults)
    assert any("data after [DONE]" in fault for fault in reader.faults)
    assert any("not terminated" in fault for fault in reader.faults)


def test_bad_json_is_recorded_not_raised():
    reader = feed_all(b"data: {not json\n\n")
    assert reader.events[0].payload is None and "not JSON" in reader.events[0].json_error


def test_role_only_chunk_is_not_output():
    assert not delta_has_output({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    assert delta_has_output({"choices": [{"index": 0, "delta": {"content": "h"}}]})
    assert delta_has_output({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0}]}}]})


def test_cache_delta_counts_new_and_grown_files(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "old.json").write_text("x" * 10)
    before = cachefiles.snapshot([cache, tmp_path / "missing"])
    (cache / "sub").mkdir()
    (cache / "sub" / "cache_0.safetensors").write_bytes(b"\0" * 1000)
    (cache / "old.json").write_text("x" * 25)
    import os

    os.utime(cache / "old.json", ns=(1, 1))  # make sure the mtime differs from the snapshot's
    delta = cachefiles.diff(before, cachefiles.snapshot([cache]))
    assert delta.new_files == [str(cache / "sub" / "cache_0.safetensors")]
    assert delta.new_bytes == 1000 + 15 and delta.total_bytes == 1025
