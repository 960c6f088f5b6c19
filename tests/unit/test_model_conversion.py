"""The GGUF conversion cache: one conversion per model checksum and converter, found again after;
the converter here is a fake (it writes bytes) that counts its calls. The real converter runs in
the llama-cpp run (docs/servers.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.errors import ConfigError
from harness.core.paths import server_programs_dir
from harness.models.builtin import model_checksum
from harness.server.catalogue import load_catalogue
from harness.server.model_conversion import ConversionSpec, ModelConversionError, ensure_gguf, gguf_path

CONVERSION = ConversionSpec(source="llama-cpp-python==0.3.36", script="convert.py", args=("--outtype", "f32"))


def model_folder(root: Path, name: str = "tiny", weights: bytes = b"weights") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "qwen2"}')
    (folder / "model.safetensors").write_bytes(weights)
    return folder


class FakeConverter:
    """Stands in for llama.cpp's converter: writes the model's name into the output file."""

    def __init__(self, writes: bool = True) -> None:
        self.calls: list[Path] = []
        self.writes = writes

    def __call__(self, model_dir: Path, out: Path, log: Path) -> str | None:
        self.calls.append(model_dir)
        log.write_text("converted\n")
        if self.writes:
            out.write_bytes(b"GGUF" + model_dir.name.encode())
        return "gpt-2"


def test_a_model_is_converted_once_then_found_again(tmp_path):
    model = model_folder(tmp_path / "models")
    cache = tmp_path / "gguf"
    fake = FakeConverter()
    first = ensure_gguf(model, CONVERSION, fake, say=lambda _: None, root=cache)
    again = ensure_gguf(model, CONVERSION, fake, say=lambda _: None, root=cache)
    assert len(fake.calls) == 1
    assert first.path == again.path == cache / f"tiny-{model_checksum(model)}-{CONVERSION.key()}.gguf"
    assert (first.reused, again.reused) == (False, True)
    assert again.seconds == round(first.seconds, 1)  # the first conversion's time, as recorded
    record = again.record()
    assert record["source_model"] == str(model.resolve()) and record["gguf"] == str(first.path)
    assert record["declared_pre_tokenizer"] == "gpt-2" and record["gguf_bytes"] == len(b"GGUFtiny")
    assert json.loads(first.path.with_suffix(".json").read_text())["reused"] is False


def test_a_changed_model_or_converter_is_converted_again(tmp_path):
    cache = tmp_path / "gguf"
    fake = FakeConverter()
    model = model_folder(tmp_path / "a")
    before = ensure_gguf(model, CONVERSION, fake, say=lambda _: None, root=cache)
    (model / "model.safetensors").write_bytes(b"other weights")
    after = ensure_gguf(model, CONVERSION, fake, say=lambda _: None, root=cache)
    f16 = ConversionSpec(source=CONVERSION.source, script=CONVERSION.script, args=("--outtype", "f16"))
    other_args = ensure_gguf(model, f16, fake, say=lambda _: None, root=cache)
    newer = ConversionSpec(source="llama-cpp-python==0.3.37", script=CONVERSION.script, args=CONVERSION.args)
    other_release = ensure_gguf(model, newer, fake, say=lambda _: None, root=cache)
    assert len(fake.calls) == 4
    assert len({before.path, after.path, other_args.path, other_release.path}) == 4
    assert not any(r.reused for r in (before, after, other_args, other_release))


def test_a_conversion_cut_short_is_done_again(tmp_path):
    model = model_folder(tmp_path / "models")
    cache = tmp_path / "gguf"
    target = gguf_path(model.resolve(), model_checksum(model), CONVERSION, cache)
    cache.mkdir()
    target.write_bytes(b"half")  # the file without its record: a run stopped before the record
    fake = FakeConverter()
    converted = ensure_gguf(model, CONVERSION, fake, say=lambda _: None, root=cache)
    assert len(fake.calls) == 1 and not converted.reused and target.read_bytes() == b"GGUFtiny"


def test_a_converter_that_writes_nothing_is_a_clear_error(tmp_path):
    model = model_folder(tmp_path / "models")
    with pytest.raises(ModelConversionError, match="wrote no file"):
        ensure_gguf(model, CONVERSION, FakeConverter(writes=False), say=lambda _: None, root=tmp_path / "gguf")
    assert not list((tmp_path / "gguf").glob("*.gguf"))


def test_gguf_entries_need_a_conversion_table(tmp_path):
    (tmp_path / "x.toml").write_text(
        'name = "x"\nlabel = "x"\nabout = "x"\nverified = ["1"]\ncache = "none"\nmodel_format = "gguf"\n'
        'install = [{ packages = ["x=={version}"] }]\ncommand = ["{python}"]\n'
    )
    load_catalogue.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"x\.toml.*\[conversion\] table"):
            load_catalogue(tmp_path)
    finally:
        load_catalogue.cache_clear()


def test_the_llama_cpp_entry_converts_with_its_own_release():
    spec = load_catalogue()["llama-cpp"].spec("0.3.30")
    assert spec.conversion is not None and spec.conversion.source == "llama-cpp-python==0.3.30"
    assert spec.conversion.pre_tokenizer == "gpt-2"
    assert "llama-cpp-python[server]==0.3.30" in spec.environment.steps[0].packages


def test_the_launcher_declares_the_pre_tokenizer_only_where_the_converter_stops(tmp_path):
    """servers/gguf_convert.py on a stand-in converter laid out as llama.cpp's (a script beside a
    `conversion` package whose TextModel refuses an unknown tokenizer)."""
    (tmp_path / "conversion").mkdir()
    (tmp_path / "conversion" / "__init__.py").write_text("")
    (tmp_path / "conversion" / "base.py").write_text(
        "class TextModel:\n"
        "    def get_vocab_base_pre(self, tokenizer):\n"
        "        if tokenizer == 'known':\n            return 'qwen2'\n"
        "        raise NotImplementedError('BPE pre-tokenizer was not recognized')\n"
    )
    script = tmp_path / "convert.py"
    script.write_text(
        "import sys\nfrom conversion.base import TextModel\n"
        "print('pre=' + TextModel().get_vocab_base_pre(sys.argv[1]), sys.argv[2:])\n"
    )
    launcher = server_programs_dir() / "gguf_convert.py"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(launcher), "--script", str(script), *args], capture_output=True, text=True, timeout=60
        )

    declared = run("--pre-tokenizer", "gpt-2", "--", "ours", "--outfile", "x.gguf")
    assert declared.returncode == 0, declared.stderr
    assert "declared pre-tokenizer: gpt-2" in declared.stdout
    assert "pre=gpt-2 ['--outfile', 'x.gguf']" in declared.stdout
    known = run("--pre-tokenizer", "gpt-2", "--", "known")
    assert "pre=qwen2" in known.stdout and "declared" not in known.stdout
    refused = run("--", "ours")
    assert refused.returncode != 0 and "not recognized" in refused.stderr
