"""A server that loads GGUF, run through the whole runner on the instant stub: the model is converted
before the first start by servers/gguf_convert.py running a converter script from an unpacked source
tree (laid out here in the sources folder, as a fetch leaves it, so nothing is downloaded), the
server is given the converted file, and run.json records the conversion; a converter that fails
fails that server's rows with the converter's own message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from declared_servers import instant_stub_config

from harness.core.rows import read_rows
from harness.presentation.report import build_report
from harness.run.runner import Runner
from harness.server.model_conversion import GGUF_DIR_ENV, ConversionSpec

pytestmark = pytest.mark.integration

SOURCE = "converter-pkg==1.0"

WRITES_GGUF = """
import sys
out = sys.argv[sys.argv.index("--outfile") + 1]
open(out, "wb").write(b"GGUF converted from " + sys.argv[1].encode())
"""

FAILS = """
import sys
print("this converter cannot read the model's tokenizer", file=sys.stderr)
sys.exit(3)
"""


def unpacked_source(gguf_root: Path, script: str) -> None:
    """The source tree of SOURCE with convert.py, marked complete as a finished fetch marks it."""
    folder = gguf_root / "sources" / "converter-pkg_1.0"
    (folder / "tree" / "converter-pkg-1.0").mkdir(parents=True, exist_ok=True)
    (folder / "tree" / "converter-pkg-1.0" / "convert.py").write_text(script)
    (folder / "complete").write_text("converter-pkg-1.0.tar.gz\n")


def gguf_runner(tmp_path: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> Runner:
    gguf_root = tmp_path / "gguf"
    monkeypatch.setenv(GGUF_DIR_ENV, str(gguf_root))
    unpacked_source(gguf_root, script)
    runner = Runner(instant_stub_config(tmp_path, "--model", "{model}", scenarios=["short-chat"]))
    assert runner.specs[0].environment is None  # runs on this interpreter: sys.executable converts
    runner.specs[0].conversion = ConversionSpec(source=SOURCE, script="convert.py", args=("--outtype", "f32"))
    return runner


def test_the_server_is_given_the_converted_model_once(tmp_path, monkeypatch):
    run_dir = gguf_runner(tmp_path, WRITES_GGUF, monkeypatch).run()
    rows = read_rows(run_dir)
    assert len(rows) == 4 and all(r.error is None for r in rows), [r.error for r in rows]
    entry = json.loads((run_dir / "run.json").read_text())["servers"]["instant"]
    [(model_name, record)] = entry["model_conversions"].items()
    gguf = Path(record["gguf"])
    assert record["reused"] is False and gguf.parent == tmp_path / "gguf" and gguf.suffix == ".gguf"
    assert gguf.read_bytes() == b"GGUF converted from " + record["source_model"].encode()
    assert Path(record["source_model"]).name == model_name
    assert str(gguf) in entry["command"]  # {model} is the converted file
    summary = build_report(run_dir)["summary_md"].read_text()
    assert f"instant stub ran on a GGUF conversion of {model_name} (convert.py from {SOURCE}" in summary
    again = json.loads((gguf_runner(tmp_path, WRITES_GGUF, monkeypatch).run() / "run.json").read_text())
    assert again["servers"]["instant"]["model_conversions"][model_name]["reused"] is True


def test_a_failed_conversion_fails_the_servers_rows_with_the_converters_message(tmp_path, monkeypatch):
    run_dir = gguf_runner(tmp_path, FAILS, monkeypatch).run()
    rows = read_rows(run_dir)
    assert rows and all(r.checks_failed == ["http.server_start"] for r in rows)
    assert rows[0].error.startswith("server failed to start: the model conversion failed converting")
    assert "cannot read the model's tokenizer" in rows[0].check_evidence["http.server_start"]
    entry = json.loads((run_dir / "run.json").read_text())["servers"]["instant"]
    assert entry["notes"][0].startswith("model conversion failed:")
    [record] = entry["model_conversions"].values()
    assert "exit 3" in record["error"] and not list((tmp_path / "gguf").glob("*.gguf"))
