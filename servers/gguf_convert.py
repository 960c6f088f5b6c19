"""Runs llama.cpp's `convert_hf_to_gguf.py` with one addition: a BPE pre-tokenizer named on the
command line for a tokenizer the converter does not recognise.

`python servers/gguf_convert.py --script PATH/convert_hf_to_gguf.py [--pre-tokenizer NAME] -- ARGS...`
runs the script as `python convert_hf_to_gguf.py ARGS...` would (its folder first on sys.path, so
that its `conversion` package and the gguf-py beside it are the ones imported).

The converter names a tokenizer's pre-tokenizer (how text is split before BPE) by hashing the tokens
of a test string, and stops on a hash it has no entry for. A tokenizer trained here has no entry, but
it splits text as a known one does (byte-level BPE with GPT-2's pattern): `--pre-tokenizer gpt-2`
says so. A tokenizer the converter recognises keeps its own name; the name declared is printed on a
line starting with "declared pre-tokenizer:" (the harness records it).
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path
from typing import Any


def declare_pre_tokenizer(name: str) -> None:
    """Makes the converter answer ``name`` where it would stop on an unrecognised pre-tokenizer."""
    from conversion.base import TextModel

    recognised = TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self: Any, tokenizer: Any) -> str:
        try:
            return str(recognised(self, tokenizer))
        except NotImplementedError:
            print(f"declared pre-tokenizer: {name} (the converter does not recognise this tokenizer)", flush=True)
            return name

    TextModel.get_vocab_base_pre = get_vocab_base_pre


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", type=Path, required=True, help="llama.cpp's convert_hf_to_gguf.py")
    parser.add_argument("--pre-tokenizer", help="name for a BPE pre-tokenizer the converter does not know")
    parser.add_argument("converter_args", nargs=argparse.REMAINDER, help="-- then the converter's arguments")
    args = parser.parse_args(argv)
    script = args.script.resolve()
    if not script.is_file():
        parser.error(f"no converter at {script}")
    rest = args.converter_args[1:] if args.converter_args[:1] == ["--"] else args.converter_args
    sys.path.insert(0, str(script.parent))
    if "NO_LOCAL_GGUF" not in os.environ:  # as the script itself does: its own gguf-py first
        sys.path.insert(1, str(script.parent / "gguf-py"))
    if args.pre_tokenizer:
        declare_pre_tokenizer(args.pre_tokenizer)
    sys.argv = [str(script), *rest]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
