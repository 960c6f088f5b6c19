"""The SSE reader's framing faults, and disk-cache accounting."""

from harness.capture import cachefiles
from harness.core.sse import SSEReader, delta_has_output


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


def test_bare_cr_and_crlf_line_endings_read_like_lf():
    lf = b'data: {"a": 1}\n\n: keep-alive\nevent: x\ndata: {"b": 2}\n\ndata: [DONE]\n\n'
    for ending in (b"\r", b"\r\n"):
        for piece in (1, 2, 7, 1000):  # a CRLF split across two reads must not end two lines
            reader = feed_all(lf.replace(b"\n", ending), piece=piece)
            assert [e.payload for e in reader.events[:2]] == [{"a": 1}, {"b": 2}], (ending, piece)
            assert len(reader.events) == 3 and reader.events[-1].is_done
            assert reader.faults == [], (ending, piece, reader.faults)


def test_an_event_ended_by_cr_at_the_end_of_a_read_is_not_held_back():
    # The first token's time is taken when feed returns its event, not when the next read comes.
    reader = SSEReader()
    assert [e.payload for e in reader.feed(b'data: {"a": 1}\r\r', 0.1)] == [{"a": 1}]
    assert [e.payload for e in reader.feed(b'data: {"b": 2}\r', 0.2)] == []
    assert [e.payload for e in reader.feed(b"\n\r\n", 0.3)] == [{"b": 2}]  # CRLF split: one line end
    assert reader.close(0.4) == [] and reader.faults == []


def test_feed_and_close_strip_the_same_single_leading_space():
    # Only one space after "data:" is framing; a second one belongs to the data, read as it arrives
    # (feed) or as the last unterminated line of the stream (close).
    terminated = feed_all(b"data:  [DONE]\n\n", piece=1000)
    unterminated = feed_all(b"data:  two spaces", piece=1000)
    assert terminated.events[0].data == " [DONE]" and terminated.events[0].is_done
    assert unterminated.events[0].data == " two spaces"
    assert any("not terminated" in fault for fault in unterminated.faults)


def test_data_after_done_is_a_fault_once_per_late_event():
    reader = feed_all(b'data: [DONE]\n\ndata: {"a": 1}\n\ndata: {"b": 2}\n\n')
    assert [f for f in reader.faults if "after [DONE]" in f] == [
        "data after [DONE]: '{\"a\": 1}'",
        "data after [DONE]: '{\"b\": 2}'",
    ]


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
