"""The CI gate: thresholds from ``[tool.harness.gate]`` applied to one run folder.

Every speed figure gated here is a ratio measured within one run (reference and new server on the
same machine, model and scenarios, minutes apart), so a slow or noisy CI machine does not trip it.
Ratios are taken against the like-for-like reference when the run has one (the legacy server with
max_tokens honoured), as the README table and the claims do; that server is a measuring aid and is
not gated itself. Answers served without generation are in no ratio (harness.analysis.served).

    [tool.harness.gate]                    # or [gate] in harness.toml
    min_follow_up_speedup = 3.0            # speedup_follow_up of each new server >= 3x
    max_first_request_slowdown = 1.5       # speedup_first >= 1/1.5
    min_cache_files = 1                    # cache files created by each new server
    require_cache_reuse = true             # reuse reported on at least one follow-up
    no_behaviour_regressions = false       # true: every check that passes on the reference must pass
    expectations = "expectations.toml"     # behaviour failures known per server, scenario, variant
                                           # and check: a failure not listed fails the gate
                                           # (harness.verdicts.expectations); relative to the file
                                           # that sets it
    min_ratios = { speedup_decode = 0.5 }  # any ratio from harness.analysis.summary.RATIOS
    scenarios = ["agent-session"]          # where the ratio gates apply (default: the headline scenario)
    baseline = "reports/<run-id>"          # a saved run; ratios may not fall below it by more than:
    max_baseline_regression_pct = 25
    baseline_metrics = ["speedup_first", "speedup_follow_up"]
    clients = ["ai-sdk"]                   # real clients that may not break on an answer where they do
                                           # not break on the reference's (the client replay,
                                           # docs/clients.md); `harness gate --client NAME` sets it too

The settings are typed and checked when the configuration loads (harness/run/gate_settings.py).
A numeric gate set to ``false`` (or 0) is off. A part of the run that is missing (a server or a
scenario without rows, an interrupted run) fails the gate that needed it, with the cause named.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.analysis.run_folder import load_run
from harness.analysis.summary import ALL, RATIOS, Summary
from harness.core.errors import ConfigError
from harness.core.formatting import is_nan
from harness.core.rows import RESULTS_FILE
from harness.run.gate_settings import GateSettings
from harness.verdicts.expectations import compare, read_expectations, run_failures

GATE_SECTION = "[tool.harness.gate] in pyproject.toml (or [gate] in harness.toml)"


@dataclass
class GateResult:
    """One gate on one server (and scenario). ``passed`` is None for a line that is only reported."""

    gate: str
    subject: str
    value: str
    threshold: str
    passed: bool | None
    detail: str = ""

    def line(self) -> str:
        status = {True: "PASS", False: "FAIL", None: "INFO"}[self.passed]
        text = f"{status}  {self.gate:<24} {self.subject}: {self.value}  (threshold: {self.threshold})"
        return text + (f" — {self.detail}" if self.detail else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "subject": self.subject,
            "value": self.value,
            "threshold": self.threshold,
            "passed": self.passed,
            "detail": self.detail,
        }


def gate_settings(raw: GateSettings | Mapping[str, Any] | None) -> GateSettings:
    """The gate's settings: as loaded with the configuration, or a mapping validated here (a
    ConfigError naming the setting, where it is read from and what is allowed)."""
    if isinstance(raw, GateSettings):
        return raw
    try:
        return GateSettings.model_validate(dict(raw or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'gate'}: {err['msg']} (got {err['input']!r})"
            for err in exc.errors()
        )
        raise ConfigError(
            f"invalid gate settings in {GATE_SECTION}: {problems}. See harness/run/gate_settings.py."
        ) from None


def _x(value: Any) -> str:
    return "–" if is_nan(value) else f"{float(value):.2f}x"


def missing_ratio_reason(summary: Summary, scenario: str, server: str, ratio: str, reference: str | None = None) -> str:
    """Why a ratio could not be computed: which side has no successful measurement."""
    from harness.analysis.summary import METRICS, measured_rows

    kinds, _column, _unit = METRICS[RATIOS[ratio][0]]
    frame = summary.frame
    parts = []
    for side in (reference or summary.reference, server):
        rows = frame[(frame["server"] == side) & (frame["scenario"] == scenario)]
        if kinds is not None:
            rows = rows[rows["request_kind"].isin(kinds)]
        ok = measured_rows(rows)
        if rows.empty:
            parts.append(f"no {'/'.join(kinds or ['any'])} request recorded on {side}")
        elif ok.empty:
            errors = rows["error"].dropna()
            why = f" (e.g. {str(errors.iloc[0])[:80]})" if len(errors) else ""
            parts.append(f"all {len(rows)} {'/'.join(kinds or ['any'])} requests on {side} failed{why}")
    return "; ".join(parts) or "not measured"


def _ratio_gate(
    summary: Summary, gate: str, scenario: str, server: str, ratio: str, minimum: float, threshold_text: str
) -> GateResult:
    reference = summary.headline_reference
    subject = f"{server} vs {reference} [{scenario}]"
    found = summary.ratio(scenario, server, ratio, reference)
    if found is None or is_nan(found.get("ratio")):
        why = missing_ratio_reason(summary, scenario, server, ratio, reference)
        return GateResult(gate, subject, "missing", threshold_text, False, why)
    value = float(found["ratio"])
    ci = "" if is_nan(found.get("ci95_low")) else f", 95% CI {found['ci95_low']:.2f}–{found['ci95_high']:.2f}"
    detail = f"median of {found['n_reference']}/{found['n']} requests{ci}"
    return GateResult(gate, subject, _x(value), threshold_text, value >= minimum - 1e-12, detail)


def _coverage(summary: Summary, meta: dict[str, Any], servers: list[str]) -> list[GateResult]:
    results: list[GateResult] = []
    status = meta.get("status")
    if not meta:
        results.append(
            GateResult(
                "run.complete",
                "run.json",
                "missing",
                "status complete",
                False,
                "no run.json: the run's configuration and status are unknown",
            )
        )
    elif status != "complete":
        results.append(
            GateResult(
                "run.complete",
                str(meta.get("run_id", "run")),
                str(status or "unknown"),
                "status complete",
                False,
                f"gated on the {summary.n_rows} requests it recorded",
            )
        )
    config = meta.get("config") or {}
    expected_servers = list(dict.fromkeys([*(config.get("servers") or []), *summary.servers]))
    expected_scenarios = list((meta.get("scenario_models") or {}).keys()) or summary.scenarios
    repeats = int(config.get("repeats") or 1)
    frame = summary.frame
    live = frame[frame["request_kind"] != "warmup"] if not frame.empty else frame
    for server in expected_servers:
        missing = []
        for scenario in expected_scenarios:
            rows = live[(live["server"] == server) & (live["scenario"] == scenario)] if not live.empty else live
            seen = rows["repeat"].nunique() if not rows.empty else 0
            if seen < repeats:
                missing.append(f"{scenario} ({seen}/{repeats} repeats)")
        value = f"{len(expected_scenarios) - len(missing)}/{len(expected_scenarios)} scenarios recorded"
        detail = ("missing: " + ", ".join(missing)) if missing else ""
        results.append(GateResult("run.coverage", server, value, "every scenario, every repeat", not missing, detail))
    for server in servers:
        if server not in summary.servers and server not in expected_servers:
            results.append(
                GateResult(
                    "run.coverage",
                    server,
                    "no rows",
                    "present in the run",
                    False,
                    "the server to gate has no recorded request",
                )
            )
    return results


def evaluate(
    summary: Summary, meta: dict[str, Any], settings: GateSettings | Mapping[str, Any], baseline: Summary | None = None
) -> list[GateResult]:
    """Every gate line for every new (non-reference) server of the run."""
    settings = gate_settings(settings)
    reference = meta.get("reference_server") or summary.reference
    planned_servers = (meta.get("config") or {}).get("servers") or []
    aids = {reference, summary.like_for_like, meta.get("like_for_like_server")}
    servers = settings.servers or [s for s in dict.fromkeys([*summary.servers, *planned_servers]) if s not in aids]
    results = _coverage(summary, meta, servers)
    if summary.servers and reference not in summary.servers:
        # summarize() fell back to another server as the reference: no ratio of this run is valid.
        results.append(
            GateResult(
                "run.reference",
                reference,
                "no rows",
                "present in the run",
                False,
                "the reference server recorded no request, so no ratio can be formed",
            )
        )
        summary = dataclasses.replace(summary, ratios=summary.ratios.iloc[0:0], reference=reference)
    if not servers:
        results.append(
            GateResult(
                "run.servers",
                "run",
                "only the reference ran",
                "a new server to gate",
                False,
                f"no server other than {reference or 'the reference'}",
            )
        )
        return results
    planned = list((meta.get("scenario_models") or {}).keys())
    scenarios = settings.scenarios or ([summary.headline] if summary.headline else planned[:1])
    for server in servers:
        for scenario in scenarios:
            if settings.min_follow_up_speedup is not None:
                x = float(settings.min_follow_up_speedup)
                results.append(
                    _ratio_gate(summary, "speedup.follow_up", scenario, server, "speedup_follow_up", x, f">= {x:g}x")
                )
            if settings.max_first_request_slowdown:
                y = float(settings.max_first_request_slowdown)
                results.append(
                    _ratio_gate(
                        summary,
                        "speedup.first",
                        scenario,
                        server,
                        "speedup_first",
                        1 / y,
                        f">= {1 / y:.2f}x (slowdown <= {y:g}x)",
                    )
                )
            for name, minimum in settings.min_ratios.items():
                results.append(
                    _ratio_gate(
                        summary, f"ratio.{name}", scenario, server, name, float(minimum), f">= {float(minimum):g}x"
                    )
                )
        results += _cache_gates(summary, server, settings)
        if settings.no_behaviour_regressions or not settings.expectations:
            results.append(_behaviour_gate(summary, server, settings.no_behaviour_regressions))
        if baseline is not None:
            results += _baseline_gates(summary, baseline, server, scenarios, settings)
    if settings.expectations:
        results += expectation_gates(summary, settings.expectations)
    if settings.clients:
        results += client_gates(summary, servers, settings.clients)
    return results


def client_gates(summary: Summary, servers: list[str], clients: list[str]) -> list[GateResult]:
    """One line per server and named client: no answer on which the client breaks where it does not
    break on the reference's answer to the same request (harness.analysis.clients)."""
    from harness.analysis.clients import break_text
    from harness.analysis.findings import server_findings
    from harness.clients.replay import client_names

    clients = client_names(clients)
    threshold = "0 answers breaking the client"
    if summary.clients is None:
        why = "the run's answers were not replayed into clients: run `harness clients RUN_DIR` first"
        return [GateResult("clients.breaking", ", ".join(clients), "not replayed", threshold, False, why)]
    found = server_findings(summary)
    results = []
    for server in servers:
        verdicts = {v.client: v for v in (found[server].clients if server in found else [])}
        for client in clients:
            subject = f"{server} read by {client}"
            verdict = verdicts.get(client)
            if verdict is None or verdict.skipped:
                status = summary.clients.status(client)
                why = (verdict.skipped if verdict else None) or (status.skipped if status else None) or ""
                why = why or "not replayed in this run"
                results.append(GateResult("clients.breaking", subject, "not replayed", threshold, False, why))
                continue
            if not verdict.compared:
                results.append(
                    GateResult("clients.breaking", subject, "not determined", threshold, False, "no answer compared")
                )
                continue
            value = f"{verdict.breaking} of {verdict.compared} answers"
            detail = break_text(verdict.breaks[0]) if verdict.breaks else ""
            results.append(GateResult("clients.breaking", subject, value, threshold, not verdict.breaks, detail))
    return results


def expectation_gates(summary: Summary, path: str | Path) -> list[GateResult]:
    """The run's behaviour failures against the expectations file: the known ones (a line per server,
    scenario and variant), one line per new and per fixed failure, then the gate itself (no failure
    outside the file)."""
    expected = read_expectations(path)
    frame = summary.frame
    ran = set() if frame.empty else set(zip(frame["server"], frame["scenario"], strict=True))
    outcome = compare(run_failures(summary), expected, ran)
    name = Path(path).name
    # Known failures, one line per server, scenario and variant (a run has dozens).
    grouped: dict[str, list[str]] = {}
    for failure in sorted(outcome.known):
        grouped.setdefault(failure.where(), []).append(failure.check)
    results = [
        GateResult("behaviour.known", where, ", ".join(checks), f"listed in {name}", None)
        for where, checks in grouped.items()
    ]
    results += [
        GateResult(
            "behaviour.new_failure",
            f.where(),
            f.check,
            f"not in {name}",
            False,
            f"turns {seen.turns}" + (f": {seen.evidence[:160]}" if seen.evidence else ""),
        )
        for f, seen in sorted(outcome.new.items())
    ]
    results += [
        GateResult("behaviour.fixed", f.where(), f.check, f"listed in {name}", None, "no longer fails: remove it")
        for f in outcome.fixed
    ]
    value = f"{len(outcome.known)} known, {len(outcome.new)} new, {len(outcome.fixed)} fixed"
    detail = f"{len(outcome.not_run)} listed failure(s) not run here" if outcome.not_run else ""
    results.append(GateResult("behaviour.expected", "every server", value, f"no failure outside {name}",
                              not outcome.new, detail))  # fmt: skip
    return results


def _cache_gates(summary: Summary, server: str, settings: GateSettings) -> list[GateResult]:
    cache = summary.cache_for(server, ALL)
    results = []
    if settings.min_cache_files:
        n = int(settings.min_cache_files)
        files = int(cache.get("files_created") or 0)
        detail = ""
        if cache:
            kinds = ", ".join(cache.get("kinds") or []) or "none"
            detail = f"{cache.get('bytes_created', 0)} bytes created; kinds: {kinds}"
        else:
            detail = "no rows from this server"
        results.append(GateResult("cache.files", server, f"{files} files", f">= {n}", files >= n, detail))
    if settings.require_cache_reuse:
        seen, known, follow = (int(cache.get(k) or 0) for k in ("reuse_seen", "reuse_known", "follow_ups"))
        if not follow:
            value, detail = "no follow-ups", "no successful follow-up request to observe reuse on"
        elif not known:
            value, detail = "undecided", "neither usage figures, log lines nor timing showed reuse or a miss"
        else:
            value, detail = f"{seen}/{known} follow-ups", ""
        results.append(GateResult("cache.reuse", server, value, ">= 1 follow-up reusing the cache", seen >= 1, detail))
    return results


def _behaviour_gate(summary: Summary, server: str, gated: bool) -> GateResult:
    verdict = summary.verdicts.get(server)
    threshold = "0 regressions" if gated else "not gated (no_behaviour_regressions = false)"
    if verdict is None or verdict.drop_in is None:
        return GateResult(
            "behaviour.regressions",
            f"{server} vs {summary.reference}",
            "not determined",
            threshold,
            False if gated else None,
            "no scenario turn could be compared",
        )
    first = verdict.regressions[0] if verdict.regressions else None
    detail = (
        f"first: {first.scenario} turn {first.turn} `{first.check}`"
        if first
        else f"{verdict.compared} scenario turns compared"
    )
    value = f"{len(verdict.regressions)} regressions"
    return GateResult(
        "behaviour.regressions",
        f"{server} vs {summary.reference}",
        value,
        threshold,
        (not verdict.regressions) if gated else None,
        detail,
    )


def _baseline_gates(
    summary: Summary, baseline: Summary, server: str, scenarios: list[str], settings: GateSettings
) -> list[GateResult]:
    pct = settings.max_baseline_regression_pct
    if pct is None:
        return []
    results = []
    for scenario in scenarios:
        for name in settings.baseline_metrics:
            base = baseline.headline_ratio(scenario, server, name)
            if base is None or is_nan(base.get("ratio")):
                continue  # nothing to compare with
            floor = float(base["ratio"]) * (1 - float(pct) / 100)
            result = _ratio_gate(
                summary,
                f"baseline.{name}",
                scenario,
                server,
                name,
                floor,
                f">= {floor:.2f}x (baseline {_x(base['ratio'])} - {float(pct):g}%)",
            )
            results.append(result)
    return results


def failed(results: list[GateResult]) -> list[GateResult]:
    return [r for r in results if r.passed is False]


def verdict_line(results: list[GateResult]) -> str:
    bad = failed(results)
    gated = [r for r in results if r.passed is not None]
    if not bad:
        return f"gate: passed ({len(gated)} gates)"
    names = ", ".join(dict.fromkeys(r.gate for r in bad))
    return f"gate: FAILED ({len(bad)} of {len(gated)} gates failed: {names})"


def require_run_dir(path: str | Path, *, need_rows: bool = True) -> Path:
    """A run folder, or a ConfigError saying what is missing and what to pass instead."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise ConfigError(
            f"run folder {run_dir} does not exist. Pass a folder written by `harness run`, e.g. reports/<run-id>."
        )
    has_rows = (run_dir / RESULTS_FILE).is_file()
    if not has_rows and (need_rows or not (run_dir / "run.json").is_file()):
        raise ConfigError(
            f"{run_dir} is not a complete run folder: it has no {RESULTS_FILE} (the run recorded "
            "no request). Pass a folder written by `harness run`, e.g. reports/<run-id>."
        )
    return run_dir


def gate_run(
    run_dir: str | Path, settings: GateSettings | Mapping[str, Any], baseline_dir: str | Path | None = None
) -> list[GateResult]:
    """Loads the run (and the baseline run, if any) and evaluates the gates."""
    run_dir = require_run_dir(run_dir, need_rows=False)
    settings = gate_settings(settings)
    summary, meta = load_run(run_dir)
    baseline_dir = baseline_dir or settings.baseline
    baseline = None
    if baseline_dir:
        base_dir = require_run_dir(baseline_dir)
        baseline, _ = load_run(base_dir, reference=summary.reference or None, headline=summary.headline)
        if baseline.headline_reference != summary.headline_reference:
            raise ConfigError(
                f"the baseline {base_dir} forms its ratios against {baseline.headline_reference}, this run "
                f"against {summary.headline_reference}: the ratios cannot be compared. Use a baseline run "
                "with the same servers."
            )
    return evaluate(summary, meta, settings, baseline)
