"""The growth, eviction and damaged-cache views of a run, from hand-made rows to the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import run_folder

from harness.analysis.damage import damage_frame
from harness.analysis.eviction import eviction_frame, visits
from harness.analysis.growth import growth_frame, kv_bytes_per_token, slope_per_turn
from harness.core.rows import ResultRow, rows_frame
from harness.presentation.report import build_report

MB = 1_000_000


def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    config = {"num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "hidden_size": 128}
    (folder / "config.json").write_text(json.dumps({**config, "torch_dtype": "float32"}))
    return folder


def long_rows(server: str, rss_per_turn: float, cache_per_turn: float, turns: int = 40) -> list[ResultRow]:
    rows = []
    for turn in range(turns):
        rows.append(
            ResultRow(
                run_id="g",
                server=server,
                scenario="long-session",
                variant="stream",
                turn=turn,
                request_kind="first" if turn == 0 else "follow-up",
                stream=True,
                started_at=1000.0 + turn + (0 if server == "legacy" else 500),
                total_s=2.0 + 0.05 * turn,
                ttft_s=1.0 + 0.05 * turn,
                # legacy streams carry no usage: its prompt size comes from the other server's rows
                prompt_tokens=None if server == "legacy" else 3000 + 60 * turn,
                rss_before_bytes=int(400 * MB + rss_per_turn * turn),
                rss_after_bytes=int(400 * MB + rss_per_turn * turn + 1),
                cache_bytes_total=int(cache_per_turn * turn),
                cache_files_total=2,
            )
        )
    return rows


def meta(tmp_path: Path, **extra) -> dict:
    return {
        "run_id": "g",
        "reference_server": "legacy",
        "status": "complete",
        "servers": {},
        "notes": [],
        "model": {"path": str(model_dir(tmp_path)), "name": "tiny"},
        "scenario_info": {"long-session": {"generated": {"kind": "long-session", "turns": 40}}},
        **extra,
    }


def test_kv_bytes_per_token_from_the_model_config(tmp_path):
    assert kv_bytes_per_token(model_dir(tmp_path)) == 2 * 1 * 64 * 2 * 4
    assert kv_bytes_per_token(tmp_path / "nowhere") is None


def test_slope_is_a_least_squares_fit():
    assert slope_per_turn([1, 2, 3, 4], [10, 12, 14, 16]) == pytest.approx(2.0)
    assert slope_per_turn([1, 2], [1, 2]) != slope_per_turn([1, 2], [1, 2])  # NaN: too few points


def test_growth_slopes_and_the_unbounded_flag(tmp_path):
    # legacy: 1 MB of RSS a turn (buffers growing with the context); mlx-textgen: a whole prompt's
    # KV cache (about 5 MB at 1 KiB a token) kept on disk every turn.
    rows = long_rows("legacy", 1.0 * MB, 0) + long_rows("mlx-textgen", 0.2 * MB, 5.0 * MB)
    frame = rows_frame(rows)
    table = growth_frame(frame, ["legacy", "mlx-textgen"], meta(tmp_path)).set_index("server")
    assert table.loc["legacy", "slope_rss_mb"] == pytest.approx(10.0, rel=1e-3)
    assert table.loc["legacy", "slope_total_s"] == pytest.approx(0.5)
    assert table.loc["legacy", "prompt_tokens_last"] == 3000 + 60 * 39  # from mlx-textgen's rows
    # half the KV cache of the median prompt (4,170 tokens x 1,024 bytes) per turn, per 10 turns
    assert table.loc["legacy", "threshold_mb"] == pytest.approx(0.5 * 1024 * 4170 * 10 / MB, rel=1e-3)
    assert not table.loc["legacy", "rss_unbounded"] and not table.loc["legacy", "disk_unbounded"]
    assert table.loc["mlx-textgen", "slope_cache_mb"] == pytest.approx(50.0, rel=1e-3)
    assert table.loc["mlx-textgen", "disk_unbounded"] and not table.loc["mlx-textgen", "rss_unbounded"]


def test_report_has_the_growth_section_with_its_plot(tmp_path):
    rows = long_rows("legacy", 1.0 * MB, 0) + long_rows("mlx-textgen", 0.2 * MB, 5.0 * MB)
    run_dir = run_folder.write_run(tmp_path / "run", rows, meta(tmp_path))
    paths = build_report(run_dir)
    text = paths["summary_md"].read_text()
    assert "## Growth over a long session" in text
    assert "mlx-textgen (long-session, 40 turns): memory bounded" in text
    assert "disk cache **grows without bound** (+50 MB per 10 turns)" in text
    assert paths["growth_per_turn"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The growth plot sits in its section, not again among the plots.
    assert text.count("![growth_per_turn]") == 1
    assert text.index("![growth_per_turn]") < text.index("## Plots")


def interleaved_rows(server: str, reused_after_others: bool) -> list[ResultRow]:
    order = [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]
    rows, seen = [], set()
    for turn, conversation in enumerate(order):
        first = conversation not in seen
        resumed = not first and order[turn - 1] != conversation
        seen.add(conversation)
        reused = None if server == "legacy" else (False if first else (reused_after_others or not resumed))
        rows.append(
            ResultRow(
                run_id="e",
                server=server,
                scenario="eviction",
                variant="stream",
                conversation=conversation,
                turn=turn,
                request_kind="first" if first else "follow-up",
                stream=True,
                started_at=2000.0 + turn + (0 if server == "legacy" else 100),
                ttft_s=3.0 if first or not reused else 0.2,
                total_s=3.5,
                cache_reused=reused,
            )
        )
    return rows


def test_eviction_tells_resumed_from_continued_follow_ups():
    frame = rows_frame(interleaved_rows("legacy", False) + interleaved_rows("mlx-textgen", False))
    kinds = visits(frame, "eviction", "mlx-textgen")["kind"].tolist()
    assert kinds == ["first", "continued"] * 3 + ["resumed", "continued"] * 3
    info = {"scenario_info": {"eviction": {"generated": {"kind": "interleaved"}, "max_capacity": 2}}}
    table = eviction_frame(frame, ["legacy", "mlx-textgen"], info).set_index("server")
    row = table.loc["mlx-textgen"]
    assert (row["sessions"], row["capacity"], row["resumed"], row["resumed_reused"]) == (3, 2, 3, 0)
    assert (row["continued"], row["continued_reused"]) == (6, 6)
    assert row["miss_cost_s"] == pytest.approx(2.8) and row["miss_cost_ratio"] == pytest.approx(15.0)


def test_damage_frame_keeps_the_first_row_after_each_damage():
    base = dict(run_id="d", server="mlx-textgen", scenario="damaged-cache", stream=False)
    rows = [
        ResultRow(**base, turn=0, request_kind="first", started_at=1.0, http_status=200),
        ResultRow(
            **base,
            variant="no-stream,damage=zeros",
            turn=2,
            request_kind="restart",
            started_at=2.0,
            error="HTTP 500",
            fault="zeros",
            fault_action="cache_0.safetensors overwritten with 10 bytes of zeros",
            fault_outcome="error",
            fault_evidence="HTTP 500: Invalid json header length",
        ),
        ResultRow(
            **base,
            variant="no-stream,damage=zeros",
            turn=3,
            request_kind="follow-up",
            started_at=3.0,
            error="HTTP 500",
            fault="zeros",
        ),
        ResultRow(
            **base,
            variant="no-stream,damage=truncate",
            turn=2,
            request_kind="restart",
            started_at=4.0,
            http_status=200,
            cache_reused=True,
            fault="truncate",
            fault_action="cut",
            fault_outcome="wrong-answer",
            fault_evidence="differs from intact",
        ),
    ]
    table = damage_frame(rows_frame(rows), ["legacy", "mlx-textgen"])
    assert table["fault"].tolist() == ["zeros", "truncate"]
    assert table["outcome"].tolist() == ["error", "wrong-answer"] and table["finding"].tolist() == [False, True]
    assert table.iloc[0]["afterwards"] == "turn 3: HTTP 500"
