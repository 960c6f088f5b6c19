"""Medians with percentile-bootstrap confidence intervals, and ratios of medians with theirs.
Bootstraps use a fixed seed: the same values always give the same interval."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 1234
NAN = float("nan")


def clean(values: Any) -> np.ndarray:
    x = np.asarray(pd.to_numeric(pd.Series(values, dtype="object"), errors="coerce"), dtype=float)
    return x[np.isfinite(x)]


def _bootstrap_medians(x: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    # Chunked so a long run (thousands of rows) never builds one huge index matrix.
    out = np.empty(resamples)
    step = max(1, 2_000_000 // max(1, x.size))
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        out[start:stop] = np.median(x[idx], axis=1)
    return out


def bootstrap_median_ci(
    values: Any, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median; a single value is its own interval."""
    x = clean(values)
    if x.size == 0:
        return NAN, NAN
    if x.size == 1:
        return float(x[0]), float(x[0])
    meds = _bootstrap_medians(x, np.random.default_rng(seed), resamples)
    low, high = np.percentile(meds, [2.5, 97.5])
    return float(low), float(high)


def describe(values: Any, **kwargs: Any) -> dict[str, float]:
    """n, median, p90 and the bootstrap CI of the median (NaN when there is nothing to describe)."""
    x = clean(values)
    if x.size == 0:
        return {"n": 0, "median": NAN, "p90": NAN, "ci95_low": NAN, "ci95_high": NAN}
    low, high = bootstrap_median_ci(x, **kwargs)
    return {
        "n": int(x.size),
        "median": float(np.median(x)),
        "p90": float(np.percentile(x, 90)),
        "ci95_low": low,
        "ci95_high": high,
    }


def ratio_ci(
    reference: Any,
    other: Any,
    *,
    higher_is_better: bool = False,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """Ratio of medians (> 1: ``other`` is better) with a bootstrap CI, each side resampled on its
    own. With fewer than two samples on a side there is no interval and no claim of significance."""
    ref, oth = clean(reference), clean(other)
    out: dict[str, Any] = {
        "ratio": NAN,
        "ci95_low": NAN,
        "ci95_high": NAN,
        "significant": False,
        "n_reference": int(ref.size),
        "n": int(oth.size),
    }
    if ref.size == 0 or oth.size == 0:
        return out
    num, den = (np.median(oth), np.median(ref)) if higher_is_better else (np.median(ref), np.median(oth))
    if den <= 0:
        return out
    out["ratio"] = float(num / den)
    if ref.size < 2 or oth.size < 2:
        return out
    rng = np.random.default_rng(seed)
    ref_meds = _bootstrap_medians(ref, rng, resamples)
    oth_meds = _bootstrap_medians(oth, rng, resamples)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = oth_meds / ref_meds if higher_is_better else ref_meds / oth_meds
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size:
        low, high = np.percentile(ratios, [2.5, 97.5])
        out.update(ci95_low=float(low), ci95_high=float(high), significant=bool(low > 1 or high < 1))
    return out
