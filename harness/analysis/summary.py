"""From a run's rows to the figures a report shows: latency statistics with bootstrap confidence
intervals, speed-up ratios against the reference server, cache accounting, failures, and the
behaviour verdict (is the new server a drop-in replacement for the old one?).

Everything here is computed from the rows alone, so an interrupted run is summarised from what it
did measure. Bootstraps use a fixed seed: the same rows always give the same report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from harness.checks.exchange import REJECTED
from harness.core.rows import ResultRow, rows_frame

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 1234
DEFAULT_REFERENCE = "legacy"
DEFAULT_HEADLINE = "agent-session"
ALL = "(all)"  # the scenario label of per-server totals

# metric -> (request kinds it covers, or None for every kind; row column; unit)
METRICS: dict[str, tuple[tuple[str, ...] | None, str, str]] = {
    "first_total_s": (("first",), "total_s", "s"),
    "first_ttft_s": (("first",), "ttft_s", "s"),
    "follow_up_total_s": (("follow-up",), "total_s", "s"),
    "follow_up_ttft_s": (("follow-up",), "ttft_s", "s"),
    "restart_total_s": (("restart",), "total_s", "s"),
    "side_total_s": (("side",), "total_s", "s"),  # short requests outside the main conversation
    "decode_tok_s": (None, "decode_tok_s", "tok/s"),
    "completion_tokens": (None, "completion_tokens", "tokens"),
}

# ratio -> (metric it compares, higher_is_better). Every ratio is oriented so that > 1 means
# "the other server is better than the reference": reference/other for latencies,
# other/reference for rates.
RATIOS: dict[str, tuple[str, bool]] = {
    "speedup_first": ("first_total_s", False),
    "speedup_follow_up": ("follow_up_total_s", False),
    "speedup_restart": ("restart_total_s", False),
    "speedup_decode": ("decode_tok_s", True),
}

STAT_COLUMNS = ["scenario", "server", "metric", "n", "median", "p90", "ci95_low", "ci95_high", "unit"]
CSV_COLUMNS = [*STAT_COLUMNS, "reference", "n_reference", "significant"]

NAN = float("nan")


# --- statistics ---------------------------------------------------------------------------------


def _clean(values: Any) -> np.ndarray:
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
    x = _clean(values)
    if x.size == 0:
        return NAN, NAN
    if x.size == 1:
        return float(x[0]), float(x[0])
    meds = _bootstrap_medians(x, np.random.default_rng(seed), resamples)
    low, high = np.percentile(meds, [2.5, 97.5])
    return float(low), float(high)


def describe(values: Any, **kwargs: Any) -> dict[str, float]:
    """n, median, p90 and the bootstrap CI of the median (NaN when there is nothing to describe)."""
    x = _clean(values)
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
    ref, oth = _clean(reference), _clean(other)
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


# --- row helpers --------------------------------------------------------------------------------


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value != ""


def row_failures(row: Any) -> list[str]:
    """The checks a row failed, with an error or a harness cut-off as pseudo-checks. A clear 4xx
    that the scenario accepts (``unsupported_ok``) is an answer, not a failure."""
    checks = row["checks_failed"]
    failed = list(checks) if isinstance(checks, (list, tuple)) else []
    notes = row["check_notes"]
    rejected = isinstance(notes, (list, tuple)) and REJECTED in notes
    if _present(row["error"]) and not rejected:
        failed.insert(0, "request.error")
    cause = row["stop_cause"]
    if _present(cause) and f"stop.{cause}" not in failed:
        failed.append(f"stop.{cause}")
    return failed


def measured_rows(df: pd.DataFrame) -> pd.DataFrame:
    # Latency comes only from requests that completed: an error has no meaningful duration and a
    # runaway/stalled request was cut off by the harness, so its duration is only a lower bound.
    return df[df["error"].isna() & df["stop_cause"].isna()]


def _order(values: pd.Series) -> list[str]:
    return list(dict.fromkeys(values.tolist()))


# --- the summary --------------------------------------------------------------------------------


@dataclass
class Regression:
    scenario: str
    variant: str
    turn: int
    check: str
    evidence: str = ""


@dataclass
class Verdict:
    """Whether ``server`` passes every check that passed on the reference (same scenario, variant,
    turn). ``drop_in`` is None when nothing could be compared."""

    server: str
    reference: str
    drop_in: bool | None
    regressions: list[Regression] = field(default_factory=list)
    compared: int = 0
    missing: list[tuple[str, str, int]] = field(default_factory=list)  # on the reference, not run here


@dataclass
class Summary:
    reference: str
    servers: list[str]
    scenarios: list[str]
    headline: str | None
    stats: pd.DataFrame
    ratios: pd.DataFrame
    cache: pd.DataFrame
    failures: pd.DataFrame
    behaviour: pd.DataFrame
    verdicts: dict[str, Verdict]
    frame: pd.DataFrame = field(repr=False)  # every row, warm-ups included (plots need per-turn data)
    n_rows: int

    @property
    def others(self) -> list[str]:
        return [s for s in self.servers if s != self.reference]

    def stat(self, scenario: str | None, server: str, metric: str) -> dict[str, Any]:
        hit = self.stats[
            (self.stats["scenario"] == scenario) & (self.stats["server"] == server) & (self.stats["metric"] == metric)
        ]
        if hit.empty:
            return {"n": 0, "median": NAN, "p90": NAN, "ci95_low": NAN, "ci95_high": NAN}
        return hit.iloc[0].to_dict()

    def ratio(self, scenario: str | None, server: str, name: str) -> dict[str, Any] | None:
        hit = self.ratios[
            (self.ratios["scenario"] == scenario) & (self.ratios["server"] == server) & (self.ratios["metric"] == name)
        ]
        return None if hit.empty else hit.iloc[0].to_dict()

    def cache_for(self, server: str, scenario: str = ALL) -> dict[str, Any]:
        hit = self.cache[(self.cache["scenario"] == scenario) & (self.cache["server"] == server)]
        return {} if hit.empty else hit.iloc[0].to_dict()

    def failures_for(self, server: str, scenario: str = ALL) -> dict[str, Any]:
        hit = self.failures[(self.failures["scenario"] == scenario) & (self.failures["server"] == server)]
        return {} if hit.empty else hit.iloc[0].to_dict()

    def csv_frame(self) -> pd.DataFrame:
        """One row per (scenario, server, metric), then the ratio rows (server = the other server)."""
        stats = self.stats.assign(reference="", n_reference=pd.NA, significant=pd.NA)
        ratios = self.ratios.rename(columns={"ratio": "median"}).assign(p90=NAN, unit="x")
        ratios = ratios.assign(significant=ratios["significant"].astype(object))
        parts = [p for p in (stats, ratios) if not p.empty]
        if not parts:
            return pd.DataFrame(columns=CSV_COLUMNS)
        return pd.concat([p[CSV_COLUMNS] for p in parts], ignore_index=True)

    def write_csv(self, path: Path) -> Path:
        path = Path(path)
        self.csv_frame().to_csv(path, index=False, float_format="%.6g")
        return path


def _stats(df: pd.DataFrame, scenarios: list[str], servers: list[str]) -> pd.DataFrame:
    records = []
    measured = measured_rows(df)
    for scenario in scenarios:
        for server in servers:
            part = measured[(measured["scenario"] == scenario) & (measured["server"] == server)]
            for metric, (kinds, column, unit) in METRICS.items():
                sel = part if kinds is None else part[part["request_kind"].isin(kinds)]
                d = describe(sel[column])
                if d["n"]:
                    records.append({"scenario": scenario, "server": server, "metric": metric, **d, "unit": unit})
    return pd.DataFrame(records, columns=STAT_COLUMNS)


def _ratios(df: pd.DataFrame, scenarios: list[str], reference: str, others: list[str]) -> pd.DataFrame:
    cols = [
        "scenario",
        "server",
        "metric",
        "reference",
        "n",
        "n_reference",
        "ratio",
        "ci95_low",
        "ci95_high",
        "significant",
    ]
    records = []
    measured = measured_rows(df)
    for scenario in scenarios:
        part = measured[measured["scenario"] == scenario]
        for name, (metric, higher) in RATIOS.items():
            kinds, column, _ = METRICS[metric]
            sel = part if kinds is None else part[part["request_kind"].isin(kinds)]
            ref = sel.loc[sel["server"] == reference, column]
            for other in others:
                oth = sel.loc[sel["server"] == other, column]
                if _clean(ref).size == 0 or _clean(oth).size == 0:
                    continue
                r = ratio_ci(ref, oth, higher_is_better=higher)
                records.append({"scenario": scenario, "server": other, "metric": name, "reference": reference, **r})
    return pd.DataFrame(records, columns=cols)


def _cache_record(part: pd.DataFrame) -> dict[str, Any]:
    # Files and bytes count warm-up requests too: what a warm-up writes is really on disk.
    kinds = sorted(
        {PurePosixPath(str(name)).suffix or "(no extension)" for names in part["cache_files"] for name in (names or [])}
    )
    live = part[(part["request_kind"] != "warmup") & part["error"].isna()]
    follow = live[live["request_kind"] == "follow-up"]
    restart = live[live["request_kind"] == "restart"]
    end = part.sort_values("started_at")["cache_bytes_total"]
    return {
        "files_created": int(part["cache_files_new"].sum()),
        "bytes_created": int(part["cache_bytes_new"].sum()),
        "kinds": kinds,
        "bytes_total_end": int(end.iloc[-1]) if len(end) else 0,
        "follow_ups": len(follow),
        "reuse_known": int(follow["cache_reused"].notna().sum()),
        "reuse_seen": int((follow["cache_reused"] == True).sum()),  # noqa: E712 (None-safe)
        # which layer of evidence decided reuse (protocol / log / timing), follow-ups per layer
        "reuse_sources": {
            str(k): int(v) for k, v in follow.loc[follow["cache_reused"].notna(), "reuse_source"].value_counts().items()
        }
        if "reuse_source" in follow
        else {},
        "restarts": len(restart),
        "restart_reuse_seen": int((restart["cache_reused"] == True).sum()),  # noqa: E712
    }


def _failure_record(part: pd.DataFrame) -> dict[str, Any]:
    live = part[part["request_kind"] != "warmup"]
    ab = live["ab_diff"]
    return {
        "requests": len(live),
        "errors": int(live["error"].notna().sum()),
        "runaway": int((live["stop_cause"] == "runaway").sum()),
        "stalled": int((live["stop_cause"] == "stalled").sum()),
        "check_failures": int(live["checks_failed"].map(lambda c: bool(c)).sum()),
        "ab_identical": int((ab == "identical").sum()),
        "ab_equivalent": int((ab == "equivalent").sum()),
        "ab_different": int((ab == "different").sum()),
    }


def _per_server(df: pd.DataFrame, scenarios: list[str], servers: list[str], fn) -> pd.DataFrame:
    records = []
    for scenario in [*scenarios, ALL]:
        for server in servers:
            part = df[df["server"] == server]
            if scenario != ALL:
                part = part[part["scenario"] == scenario]
            if part.empty:
                continue
            records.append({"scenario": scenario, "server": server, **fn(part)})
    return pd.DataFrame(records) if records else pd.DataFrame(columns=["scenario", "server"])


def _behaviour(live: pd.DataFrame, servers: list[str]) -> pd.DataFrame:
    cols = ["scenario", "variant", "server", "rows", "failed_rows", "status", "first_failure", "first_failure_turn"]
    records = []
    for (scenario, variant), part in live.groupby(["scenario", "variant"], sort=False):
        for server in servers:
            rows = part[part["server"] == server].sort_values(["turn", "repeat", "started_at"])
            if rows.empty:
                continue
            failing = [(r["turn"], row_failures(r)) for _, r in rows.iterrows()]
            failing = [(t, f) for t, f in failing if f]
            first = failing[0] if failing else None
            records.append(
                {
                    "scenario": scenario,
                    "variant": variant,
                    "server": server,
                    "rows": len(rows),
                    "failed_rows": len(failing),
                    "status": "FAIL" if failing else "PASS",
                    "first_failure": first[1][0] if first else None,
                    "first_failure_turn": int(first[0]) if first else None,
                }
            )
    return pd.DataFrame(records, columns=cols)


# Checks that only run on the tool calls an answer actually contains.
CALL_LEVEL_CHECKS = {
    "expect.tool_name",
    "expect.tool_arguments",
    "tool.arguments_not_json",
    "tool.unknown_name",
    "tool.repeated_call",
    "tool.id_missing",
    "tool.id_duplicate",
    "tool.id_reused_from_history",
    "tool.stream_arguments_differ",
    "stream.tool_name_not_once",
    "stream.tool_index_reused",
}


def _verdicts(live: pd.DataFrame, reference: str, others: list[str]) -> dict[str, Verdict]:
    def by_key(server: str) -> dict[tuple[str, str, int], list[Any]]:
        keyed: dict[tuple[str, str, int], list[Any]] = {}
        rows = live[live["server"] == server].sort_values(["turn", "repeat", "started_at"])
        for _, r in rows.iterrows():
            keyed.setdefault((r["scenario"], r["variant"], int(r["turn"])), []).append(r)
        return keyed

    ref = by_key(reference)
    verdicts: dict[str, Verdict] = {}
    for other in others:
        oth = by_key(other)
        verdict = Verdict(server=other, reference=reference, drop_in=None)
        for key, ref_rows in ref.items():
            # A check "passed on the reference" only where the reference answered at all.
            if all(_present(r["error"]) for r in ref_rows):
                continue
            if key not in oth:
                verdict.missing.append(key)
                continue
            verdict.compared += 1
            ref_failed = {c for r in ref_rows for c in row_failures(r)}
            # Where the reference returned no tool call at all, its call-level checks never ran:
            # they did not pass there, so they cannot regress here.
            if "tool.calls_missing" in ref_failed:
                ref_failed |= CALL_LEVEL_CHECKS
            seen: set[str] = set()
            for r in oth[key]:
                for check in row_failures(r):
                    if check in ref_failed or check in seen:
                        continue
                    seen.add(check)
                    evidence = (r["check_evidence"] or {}).get(check) or (
                        r["error"] if check == "request.error" and _present(r["error"]) else ""
                    )
                    verdict.regressions.append(Regression(*key, check=check, evidence=str(evidence)))
        if verdict.compared:
            verdict.drop_in = not verdict.regressions
        verdicts[other] = verdict
    return verdicts


def summarize(
    rows: list[ResultRow] | pd.DataFrame, *, reference: str | None = None, headline: str | None = None
) -> Summary:
    """Summarises a run's rows. ``reference`` defaults to "legacy" (or the first server seen when no
    row is from it); ``headline`` to "agent-session" when present, else the first scenario seen."""
    df = rows if isinstance(rows, pd.DataFrame) else rows_frame(list(rows))
    df = df.reset_index(drop=True)
    live = df[df["request_kind"] != "warmup"]
    seen_servers = _order(df["server"])
    reference = reference or DEFAULT_REFERENCE
    if seen_servers and reference not in seen_servers:
        reference = seen_servers[0]
    servers = [reference, *[s for s in seen_servers if s != reference]] if seen_servers else []
    scenarios = _order(live["scenario"]) or _order(df["scenario"])
    if headline is None or headline not in scenarios:
        headline = DEFAULT_HEADLINE if DEFAULT_HEADLINE in scenarios else (scenarios[0] if scenarios else None)
    others = [s for s in servers if s != reference]
    return Summary(
        reference=reference,
        servers=servers,
        scenarios=scenarios,
        headline=headline,
        stats=_stats(live, scenarios, servers),
        ratios=_ratios(live, scenarios, reference, others),
        cache=_per_server(df, scenarios, servers, _cache_record),
        failures=_per_server(df, scenarios, servers, _failure_record),
        behaviour=_behaviour(live, servers),
        verdicts=_verdicts(live, reference, others),
        frame=df,
        n_rows=len(live),
    )
