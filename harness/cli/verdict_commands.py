"""Verdicts on a run folder, as `harness` subcommands:

    harness gate RUN_DIR [--baseline RUN_DIR]      CI thresholds (harness.verdicts.gate); exit 1 when one fails;
                 [--client ai-sdk]                 with the client replay's verdict for that client
    harness gate RUN_DIR --write-expectations F    the run's behaviour failures as the known ones of F
    harness claims README.md --run RUN_DIR          each claim of a file (tables, bullet points, sentences):
                                                    confirmed / refuted / not comparable / not measured
                                                    (harness.verdicts.claims), and the lines skipped
    harness readme RUN_DIR [--update README.md]     the comparison table, written between markers
                                                    (harness.presentation.readme_table)
    harness compare RUN_A RUN_B [...]               runs side by side (harness.analysis.compare); with
                                                    --fail-on-regression PCT, exit 1 on a regression

All three read only the rows and run.json the run wrote. Bad input (a missing or incomplete run
folder, a file without a claim, a gate naming an unknown metric) is a HarnessError: the CLI prints
it and exits 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.cli.options import comma_list
from harness.run.gate_settings import GateSettings
from harness.verdicts.gate import GateResult, failed, gate_run, require_run_dir, verdict_line


def load_gate_settings(config_file: str | None = None) -> GateSettings:
    """The gate section of the project's configuration ([tool.harness.gate] / harness.toml)."""
    from harness.run.config import load_config

    return load_config(Path(config_file) if config_file else None).gate


def run_gate(
    run_dir: str | Path, config_file: str | None = None, baseline: str | None = None, clients: list[str] | None = None
) -> tuple[list[GateResult], str]:
    """The gate results and the printed text (one line per gate, then the verdict). ``clients``:
    the clients gated on the client replay, in place of the configured ones."""
    settings = load_gate_settings(config_file)
    if clients:
        settings = settings.model_copy(update={"clients": clients})
    results = gate_run(run_dir, settings, baseline)
    return results, "\n".join([*(r.line() for r in results), verdict_line(results)])


def cmd_gate(args: argparse.Namespace) -> int:
    if args.write_expectations:
        return write_expectations_file(args.run_dir, args.write_expectations)
    results, text = run_gate(args.run_dir, args.config, args.baseline, comma_list(",".join(args.client or [])))
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_dict() for r in results], indent=2) + "\n", encoding="utf-8")
    print(text)
    return 1 if failed(results) else 0


def write_expectations_file(run_dir: str | Path, path: str | Path) -> int:
    """``harness gate RUN_DIR --write-expectations FILE``: the run's behaviour failures become the
    known ones of FILE (the gate then fails only on others)."""
    from harness.analysis.run_folder import load_run
    from harness.verdicts.expectations import write_expectations

    summary, meta = load_run(require_run_dir(run_dir))
    count = write_expectations(path, summary, meta)
    print(
        f"{path}: {count} known behaviour failure(s) of run {meta.get('run_id') or run_dir} "
        f"({', '.join(summary.servers)} on {', '.join(summary.scenarios)})"
    )
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    from harness.analysis.run_folder import load_run
    from harness.verdicts.claims import REFUTED, read_claims, report_markdown, verify_claims

    claims = read_claims(args.readme)
    run_dir = require_run_dir(args.run)
    summary, meta = load_run(run_dir)
    report = verify_claims(
        claims,
        summary,
        meta,
        reference=args.reference,
        server=args.server,
        scenario=args.scenario,
        tolerance=args.tolerance,
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps([v.as_dict() for v in report.verdicts], indent=2) + "\n", encoding="utf-8"
        )
    print(report_markdown(report))
    return 1 if args.strict and any(v.verdict == REFUTED for v in report.verdicts) else 0


def cmd_readme(args: argparse.Namespace) -> int:
    from harness.presentation.readme_table import render, update_file

    run_dir = require_run_dir(args.run_dir)
    block = render(run_dir)
    if not args.update:
        print(block)
        return 0
    changed = update_file(Path(args.update), block, args.table)
    print(f"{args.update}: {args.table} table {'updated' if changed else 'already up to date'} (from {run_dir})")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.analysis.compare import compare_runs, load_runs, regressions
    from harness.core.errors import ConfigError
    from harness.presentation.compare_report import compare_blocks, write_compare
    from harness.presentation.render import render_markdown

    if len(args.runs) < 2:
        raise ConfigError("compare needs at least two run folders: RUN_A (the base) and RUN_B [RUN_C ...].")
    runs = load_runs([require_run_dir(path) for path in args.runs])
    comparison = compare_runs(runs, scenarios=comma_list(args.scenarios), servers=comma_list(args.servers))
    if comparison.mismatches and not args.allow_mismatch:
        raise ConfigError(
            "the runs are not comparable: "
            + "; ".join(comparison.mismatches)
            + ". Compare runs of the same model, machine and scenarios, or pass --allow-mismatch to compare "
            "them anyway (the output is then flagged)."
        )
    pct = args.fail_on_regression
    found = regressions(comparison, pct) if pct is not None else None
    blocks = compare_blocks(comparison, found, pct)
    print(render_markdown(blocks), end="")
    out = Path(args.out) if args.out else runs[-1].path
    paths = write_compare(comparison, out, blocks)
    print(f"\nwritten: {paths['md']} and {paths['html']}")
    return 1 if found is not None and not found.empty else 0


def register_commands(sub: Any) -> None:
    """Adds gate, claims and readme to the `harness` command's subparsers."""
    from harness.verdicts.claims import TOLERANCE

    gate = sub.add_parser("gate", help="apply the CI thresholds of [tool.harness.gate] to a run; exit 1 on a failure")
    gate.add_argument("run_dir")
    gate.add_argument("--config", help="a harness.toml file (default: pyproject.toml / harness.toml here)")
    gate.add_argument(
        "--baseline", help="a saved run folder: no ratio may fall below it by more than max_baseline_regression_pct"
    )
    gate.add_argument("--json", metavar="FILE", help="also write the gate results as JSON")
    gate.add_argument(
        "--client",
        action="append",
        metavar="NAME",
        help="gate on a real client (openai-python, ai-sdk, anthropic-python; repeat or comma-separate): "
        "fail where it breaks on an answer it reads fine from the reference (docs/clients.md)",
    )
    gate.add_argument(
        "--write-expectations",
        metavar="FILE",
        help="write the run's behaviour failures to FILE as the known ones (TOML, or JSON for .json), "
        "instead of gating; point [tool.harness.gate] expectations at it",
    )
    gate.set_defaults(func=cmd_gate)

    claims = sub.add_parser(
        "claims", help="verdict each claim of a markdown file (tables, bullet points, sentences) against a run"
    )
    claims.add_argument(
        "readme", help="markdown file with claims: a | Metric | old | new | Improvement | table, bullets or sentences"
    )
    claims.add_argument("--run", required=True, help="the run folder to check the claims against")
    claims.add_argument("--reference", help="run server standing for the table's old-server column")
    claims.add_argument("--server", help="run server standing for the table's new-server column")
    claims.add_argument("--scenario", help="scenario whose latencies are compared (default: the headline)")
    claims.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE,
        help=f"a claimed N x is confirmed from N/TOLERANCE measured (default {TOLERANCE:g})",
    )
    claims.add_argument("--strict", action="store_true", help="exit 1 when a claim is refuted")
    claims.add_argument("--json", metavar="FILE", help="also write the verdicts as JSON")
    claims.set_defaults(func=cmd_claims)

    readme = sub.add_parser("readme", help="render the comparison table of a run; --update writes it into a file")
    readme.add_argument("run_dir")
    readme.add_argument(
        "--update",
        metavar="FILE",
        help="replace the table between the <!-- harness:TABLE:start/end --> markers in FILE",
    )
    readme.add_argument(
        "--table",
        default="comparison",
        help="which marked table to replace (default: comparison; the README also has `leaving`)",
    )
    readme.set_defaults(func=cmd_readme)

    compare = sub.add_parser(
        "compare", help="runs side by side (before/after a change): medians, 95%% intervals, ratios, significance"
    )
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR", help="the base run, then the runs to compare with it")
    compare.add_argument(
        "--fail-on-regression",
        type=float,
        metavar="PCT",
        help="exit 1 when a figure of a later run is significantly worse than the base by more than PCT%%",
    )
    compare.add_argument("--scenarios", help="comma-separated scenarios to compare (default: those in common)")
    compare.add_argument("--servers", help="comma-separated servers to compare (default: those in common)")
    compare.add_argument(
        "--out", metavar="DIR", help="where compare-vs-<base run>.md and .html go (default: the last run folder)"
    )
    compare.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="compare runs of another model, machine or scenario set anyway, flagged",
    )
    compare.set_defaults(func=cmd_compare)
