"""Counting tokens with a model folder's own tokenizer (for rows whose server reports no usage, and
for growing or cutting a system prompt to a token size)."""

from __future__ import annotations

from pathlib import Path


class TokenCounter:
    """Counts tokens with the model's own tokenizer when the server reports none (or a bogus count).

    Uses the `tokenizers` library directly: importing transformers would cost the harness process
    hundreds of MB of memory.
    """

    def __init__(self, model_dir: Path | str | None) -> None:
        self._tokenizer = None
        if model_dir is None:
            return
        path = Path(model_dir) / "tokenizer.json"
        if path.is_file():
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(path))

    @property
    def available(self) -> bool:
        return self._tokenizer is not None

    def count(self, text: str) -> int | None:
        if self._tokenizer is None or not text:
            return 0 if self._tokenizer is not None else None
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)
