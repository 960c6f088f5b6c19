"""From a run's rows to the figures a report shows: latency statistics with bootstrap confidence
intervals, speed-up ratios against the reference server, cache accounting, failures, and the
behaviour verdict (is the new server a drop-in replacement for the old one?).

Everything here is computed from the rows alone, so an interrupted run is summarised from what it
did measure. Bootstraps use a fixed seed: the same rows always give the same report.

Two references: ``reference`` is the server as users had it ("as deployed"); ``like_for_like``, when
the run has one, is the same server with the quirks that change the work switched off (the legacy
server with ``max_tokens`` honoured). Every ratio is formed against both; the headline uses the
like-for-like one. Answers served without generation (``harness.analysis.served``) are kept out of
every latency, rate and ratio, and counted on their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from harness.analysis import served
from harness.analysis.stats import NAN, bootstrap_median_ci, clean, describe, ratio_ci
from harness.checks.exchange import REJECTED
from harness.clients.answers import ClientReplay
from harness.core.rows import ResultRow, rows_frame

DEFAULT_REFERENCE = "legacy"
DEFAULT_HEADLINE = "agent-session"
ALL = "(all)"  # the scenario label of per-server totals

# metric -> (request kinds it covers, or None for every kind; frame column; unit). Three times to a
# first something: ttfb (first byte of the body), ttft (first token of any kind: content, tool call
# or reasoning) and ttft_content (first visible text).
METRICS: dict[str, tuple[tuple[str, ...] | None, str, str]] = {
    "first_total_s": (("first",), "total_s", "s"),
    "first_ttft_s": (("first",), "ttft_s", "s"),
    "first_ttfb_s": (("first",), "ttfb_s", "s"),
    "first_ttft_content_s": (("first",), "ttft_content_s", "s"),
    "follow_up_total_s": (("follow-up",), "total_s", "s"),
    "follow_up_ttft_s": (("follow-up",), "ttft_s", "s"),
    "follow_up_ttfb_s": (("follow-up",), "ttfb_s", "s"),
    "follow_up_ttft_content_s": (("follow-up",), "ttft_content_s", "s"),
    "restart_total_s": (("restart",), "total_s", "s"),
    "side_total_s": (("side",), "total_s", "s"),  # short requests outside the main conversation
    # Prompt processing on the cold first request (harness.analysis.served: logged or timed).
    "prompt_tok_s": (("first",), "prompt_rate", "tok/s"),
    "decode_tok_s": (None, "decode_tok_s", "tok/s"),
    "completion_tokens": (None, "completion_tokens", "tokens"),
    # Answers served without generation, on their own line (never mixed into the figures above).
    "no_generation_total_s": (None, "total_s", "s"),
}
NO_GENERATION_METRICS = {"no_generation_total_s"}

# ratio -> (metric it compares, higher_is_better). Every ratio is oriented so that > 1 means
# "the other server is better than the reference": reference/other for latencies,
# other/reference for rates.
RATIOS: dict[str, tuple[str, bool]] = {
    "speedup_first": ("first_total_s", False),
    "speedup_follow_up": ("follow_up_total_s", False),
    "speedup_restart": ("restart_total_s", False),
    "speedup_first_ttft": ("first_ttft_s", False),
    "speedup_follow_up_ttft": ("follow_up_ttft_s", False),
    "speedup_prompt": ("prompt_tok_s", True),
    "speedup_decode": ("decode_tok_s", True),
}

STAT_COLUMNS = ["scenario", "server", "metric", "n", "median", "p90", "ci95_low", "ci95_high", "unit"]
CSV_COLUMNS = [*STAT_COLUMNS, "reference", "n_reference", "significant"]


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
    # An answer served without generation (a response-cache hit) measures no generation at all.
    keep = df["error"].isna() & df["stop_cause"].isna()
    if "no_generation" in df:
        keep &= ~df["no_generation"].astype(bool)
    return df[keep]


def no_generation_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The answers served without generation (empty for a frame the summary has not marked)."""
    if "no_generation" not in df:
        return df.iloc[0:0]
    return df[df["no_generation"].astype(bool)]


def metric_values(df: pd.DataFrame, metric: str) -> pd.Series:
    """The values of ``metric`` in ``df`` (already cut to one server and scenario), from the rows
    the metric reads: measured rows, or the answers served without generation."""
    kinds, column, _unit = METRICS[metric]
    rows = no_generation_rows(df) if metric in NO_GENERATION_METRICS else measured_rows(df)
    if kinds is not None:
        rows = rows[rows["request_kind"].isin(kinds)]
    return rows[column] if column in rows else pd.Series(dtype=float)


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
    reference: str  # the server as deployed
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
    # The reference's like-for-like counterpart (same output length), when the run has one.
    like_for_like: str | None = None
    # What real client libraries got from each answer (clients.jsonl), when the run was replayed.
    clients: ClientReplay | None = None

    @property
    def others(self) -> list[str]:
        return [s for s in self.servers if s != self.reference]

    @property
    def candidates(self) -> list[str]:
        """The servers under test: every server but the reference and its like-for-like counterpart."""
        return [s for s in self.servers if s not in (self.reference, self.like_for_like)]

    @property
    def headline_reference(self) -> str:
        """The server headline ratios are taken against: the like-for-like one when the run has it."""
        return self.like_for_like or self.reference

    def stat(self, scenario: str | None, server: str, metric: str) -> dict[str, Any]:
        hit = self.stats[
            (self.stats["scenario"] == scenario) & (self.stats["server"] == server) & (self.stats["metric"] == metric)
        ]
        if hit.empty:
            return {"n": 0, "median": NAN, "p90": NAN, "ci95_low": NAN, "ci95_high": NAN}
        return hit.iloc[0].to_dict()

    def ratio(
        self, scenario: str | None, server: str, name: str, reference: str | None = None
    ) -> dict[str, Any] | None:
        """``name`` for ``server`` against ``reference`` (default: the reference as deployed)."""
        hit = self.ratios[
            (self.ratios["scenario"] == scenario)
            & (self.ratios["server"] == server)
            & (self.ratios["metric"] == name)
            & (self.ratios["reference"] == (reference or self.reference))
        ]
        return None if hit.empty else hit.iloc[0].to_dict()

    def headline_ratio(self, scenario: str | None, server: str, name: str) -> dict[str, Any] | None:
        """``name`` against the headline reference (like-for-like when the run has one)."""
        return self.ratio(scenario, server, name, self.headline_reference)

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
    for scenario in scenarios:
        for server in servers:
            part = df[(df["scenario"] == scenario) & (df["server"] == server)]
            for metric, (_kinds, _column, unit) in METRICS.items():
                d = describe(metric_values(part, metric))
                if d["n"]:
                    records.append({"scenario": scenario, "server": server, "metric": metric, **d, "unit": unit})
    return pd.DataFrame(records, columns=STAT_COLUMNS)


def _ratios(df: pd.DataFrame, scenarios: list[str], pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Every ratio of RATIOS for each (reference, other) pair."""
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
    for scenario in scenarios:
        part = df[df["scenario"] == scenario]
        for name, (metric, higher) in RATIOS.items():
            for reference, other in pairs:
                ref = metric_values(part[part["server"] == reference], metric)
                oth = metric_values(part[part["server"] == other], metric)
                if clean(ref).size == 0 or clean(oth).size == 0:
                    continue
                r = ratio_ci(ref, oth, higher_is_better=higher)
                records.append({"scenario": scenario, "server": other, "metric": name, "reference": reference, **r})
    return pd.DataFrame(records, columns=cols)


def _cache_record(part: pd.DataFrame) -> dict[str, Any]:
    # Files and bytes count warm-up requests too: what a warm-up writes is really on disk.
    kinds = sorted(
        {PurePosixPath(str(name)).suffix or "(no extension)" for names in part["cache_files"] for name in (names or [])}
    )
    # Reuse is read on generated answers only: one served from a response cache says nothing of the
    # prompt cache.
    live = part[(part["request_kind"] != "warmup") & part["error"].isna()]
    if "no_generation" in live:
        live = live[~live["no_generation"].astype(bool)]
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
        "no_generation": len(no_generation_rows(live)),
        "no_generation_said": int((no_generation_rows(live)["served_from_cache"] == True).sum()),  # noqa: E712
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
    rows: list[ResultRow] | pd.DataFrame,
    *,
    reference: str | None = None,
    headline: str | None = None,
    like_for_like: str | None = None,
) -> Summary:
    """Summarises a run's rows. ``reference`` defaults to "legacy" (or the first server seen when no
    row is from it); ``headline`` to "agent-session" when present, else the first scenario seen;
    ``like_for_like`` (the reference's like-for-like counterpart) is used when it has rows."""
    df = rows if isinstance(rows, pd.DataFrame) else rows_frame(list(rows))
    df = served.mark(df.reset_index(drop=True))
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
    if like_for_like not in others:
        like_for_like = None
    candidates = [s for s in others if s != like_for_like]
    pairs = [(reference, other) for other in others]
    if like_for_like:
        pairs += [(like_for_like, other) for other in candidates]
    return Summary(
        reference=reference,
        servers=servers,
        scenarios=scenarios,
        headline=headline,
        stats=_stats(live, scenarios, servers),
        ratios=_ratios(live, scenarios, pairs),
        cache=_per_server(df, scenarios, servers, _cache_record),
        failures=_per_server(df, scenarios, servers, _failure_record),
        behaviour=_behaviour(live, servers),
        # The like-for-like counterpart is a measuring aid, not a server under test.
        verdicts=_verdicts(live, reference, candidates),
        frame=df,
        n_rows=len(live),
        like_for_like=like_for_like,
    )


__all__ = [
    "ALL",
    "CSV_COLUMNS",
    "METRICS",
    "RATIOS",
    "Summary",
    "bootstrap_median_ci",
    "describe",
    "measured_rows",
    "metric_values",
    "no_generation_rows",
    "ratio_ci",
    "row_failures",
    "summarize",
]
