"""How numbers are written in tables, reports and verdicts: one place, imported by every stage that
prints, importing nothing of the harness."""

from __future__ import annotations

import math
from typing import Any


def is_nan(value: Any) -> bool:
    try:
        return value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def fmt_value(value: Any, unit: str = "s") -> str:
    if is_nan(value):
        return "–"
    value = float(value)
    if unit == "s":
        return f"{value:,.0f} s" if value >= 1000 else f"{value:.3g} s"
    if unit == "tokens":
        return f"{value:.0f}"
    return f"{value:,.0f} {unit}" if value >= 1000 else f"{value:.3g} {unit}"


def fmt_bytes(n: Any) -> str:
    n = 0 if is_nan(n) else float(n)
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def factor_words(ratio: float, better: str = "faster", worse: str = "slower") -> str:
    """'12.0x faster' for a ratio above 1, '1.2x slower' for 0.8: the factor is always at least 1."""
    factor = ratio if ratio >= 1 else 1 / ratio
    factor_text = f"{factor:.1f}" if round(factor, 1) != 1.0 else f"{factor:.2f}"  # never "1.0x slower"
    return f"{factor_text}x {better if ratio >= 1 else worse}"


def sample_counts(ratio: dict[str, Any]) -> str:
    """'n=1 vs 3' (the reference's samples, then the other server's), or '' when not recorded."""
    if ratio.get("n") is None or ratio.get("n_reference") is None:
        return ""
    return f"n={int(ratio['n_reference'])} vs {int(ratio['n'])}"


def improvement_text(ratio: dict[str, Any] | None, better: str = "faster", worse: str = "slower") -> str:
    """'**31.2x faster**', '1.1x slower', or 'no significant difference' when the CI crosses 1.

    Bold is for a measured, significant improvement only: a ratio with too few samples for an
    interval is printed plain, with the sample counts beside it ('1.6x faster (n=1 vs 1: ...)')."""
    if not ratio or is_nan(ratio.get("ratio")):
        return "–"
    r = float(ratio["ratio"])
    if is_nan(ratio.get("ci95_low")):
        counts = f"{sample_counts(ratio)}: " if sample_counts(ratio) else ""
        return f"{factor_words(r, better, worse)} ({counts}too few samples for a CI)"
    word = f"**{factor_words(r, better, worse)}**" if r >= 1 else factor_words(r, better, worse)
    if not ratio.get("significant"):
        return f"no significant difference ({r:.2f}x, 95% CI {ratio['ci95_low']:.2f}–{ratio['ci95_high']:.2f})"
    return word
