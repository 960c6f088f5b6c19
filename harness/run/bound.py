"""The cache-perfect bound: what a follow-up request costs, at best, on this model and machine.

For each follow-up of a scenario, mlx-lm (in this process, no HTTP) renders the prompt with the
model's chat template, holds a KV cache of the previous request's prompt (built untimed), and times
prefilling only the tokens that prompt does not share, plus decoding. That is the floor a server
with a perfect prefix cache could reach; each server's follow-up latency is reported as a multiple
of it. The first request is timed with an empty cache (the full prefill), together with what
writing its KV cache to a file costs (MLX-Textgen saves one after each request).

Run as its own process so the harness never loads a model::

    python -m harness.run.bound --model DIR --scenario agent-session --scenario short-chat@1000 --out bound.json

Side requests are left out (they are other conversations); the main conversation's next request
is measured against the main conversation's previous one, as a cache with room for both would do.
Decode cost is measured per token so that a row's bound can use the number of tokens that server
really generated (the legacy server ignores max_tokens).

The report side is ``harness.analysis.bound``; it needs neither mlx nor a model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from harness.core.rows import BOUND_FILE
from harness.models.tokens import TokenCounter
from harness.run.meta import RunMeta
from harness.run.model_groups import ModelGroup
from harness.scenario.context_size import scale_scenario, split_name
from harness.scenario.definition import PlannedRequest, RequestKinds, plan_requests, resolve_scenarios
from harness.scenario.generated import materialize

DEFAULT_REPEATS = 3
SLOW_SAMPLE_S = 1.5  # a measurement slower than this is taken once, not ``repeats`` times
BUDGET_S = 900.0  # seconds of measuring per run; turns past it are left out (and listed as such)
DEFAULT_DECODE_TOKENS = 32
# Prefill chunk: on CPU 512 was as fast as or faster than mlx-lm's default 2048 (and MLX-Textgen
# uses 512); the bound should be the best this machine does.
PREFILL_STEP = 512


# --- measuring (in the subprocess) ----------------------------------------------------------------


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class _Model:
    """mlx-lm's model and tokenizer plus the few operations the bound needs."""

    def __init__(self, path: Path) -> None:
        import mlx.core as mx
        from mlx_lm import load

        self.mx = mx
        self.model, self.tokenizer = load(str(path))

    def tokens(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[int]:
        out = self.tokenizer.apply_chat_template(
            messages, tools=tools or None, add_generation_prompt=True, tokenize=True
        )
        return list(out)

    def new_cache(self) -> list[Any]:
        from mlx_lm.models.cache import make_prompt_cache

        return make_prompt_cache(self.model)

    @staticmethod
    def offset(cache: list[Any]) -> int:
        return int(cache[0].offset)

    def trim_to(self, cache: list[Any], length: int) -> None:
        from mlx_lm.models.cache import trim_prompt_cache

        extra = self.offset(cache) - length
        if extra > 0:
            trim_prompt_cache(cache, extra)

    def prefill(self, cache: list[Any], tokens: list[int], step: int = PREFILL_STEP) -> None:
        mx = self.mx
        for start in range(0, len(tokens), step):
            self.model(mx.array(tokens[start : start + step])[None], cache=cache)
            mx.eval([c.state for c in cache])

    def timed_generate(self, cache: list[Any], tokens: list[int], decode: int) -> float:
        """Seconds to prefill ``tokens`` on top of ``cache`` and produce ``decode`` tokens (greedy);
        the cache is put back to where it was."""
        from mlx_lm.generate import generate_step

        mx = self.mx
        start_len = self.offset(cache)
        started = time.perf_counter()
        for _ in generate_step(
            mx.array(tokens),
            self.model,
            max_tokens=decode,
            prompt_cache=cache,
            sampler=lambda logits: mx.argmax(logits, axis=-1),
            prefill_step_size=PREFILL_STEP,
        ):
            pass  # generate_step evaluates each token before yielding it
        elapsed = time.perf_counter() - started
        self.trim_to(cache, start_len)
        return elapsed

    def timed_cold(self, tokens: list[int], decode: int) -> float:
        """``timed_generate`` on an empty cache: the full prefill, as a first request pays it."""
        return self.timed_generate(self.new_cache(), tokens, decode)

    def save_cost(self, cache: list[Any]) -> tuple[float, int]:
        """Seconds and bytes to write ``cache`` as a safetensors file, as a disk-caching server does."""
        from mlx_lm.models.cache import save_prompt_cache

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "cache.safetensors")
            started = time.perf_counter()
            save_prompt_cache(path, cache)
            elapsed = time.perf_counter() - started
            return elapsed, os.path.getsize(path)


def _samples(fn, repeats: int) -> list[float]:
    first = fn()
    out = [first]
    if first < SLOW_SAMPLE_S:
        out += [fn() for _ in range(repeats - 1)]
    return out


def request_kinds(scenario: Any) -> list[str]:
    """The request_kind the runner gives each request of ``scenario`` (first / follow-up / restart / side)."""
    return _kinds(plan_requests(scenario))


def _kinds(planned: list[PlannedRequest]) -> list[str]:
    kinds, out = RequestKinds(), list[str]()
    for request in planned:
        out.append(kinds.next(request))
        if request.restart_after and not request.side:
            kinds.restarted()
    return out


def measure_scenario(model: _Model, scenario: Any, repeats: int, deadline: float) -> dict[str, Any]:
    decode = int(scenario.params.get("max_tokens") or DEFAULT_DECODE_TOKENS)
    planned = plan_requests(scenario)
    kinds = _kinds(planned)
    result: dict[str, Any] = {
        "base": split_name(scenario.name)[0],
        "context_tokens": scenario.context_tokens,
        "decode_tokens": decode,
        "repeats": repeats,
        "first": None,
        "turns": [],
        "skipped": [],
    }
    cache = model.new_cache()
    cached: list[int] = []
    for request, kind in zip(planned, kinds, strict=True):
        if kind == "side":
            result["skipped"].append({"turn": request.turn, "why": "side request (another conversation)"})
            continue
        if request.conversation != planned[0].conversation:
            result["skipped"].append({"turn": request.turn, "why": "another conversation (interleaved sessions)"})
            continue
        if time.monotonic() > deadline:
            result["skipped"].append({"turn": request.turn, "why": "time budget spent"})
            continue
        tokens = model.tokens(request.messages, request.tools)
        if kind == "first":
            full = _samples(partial(model.timed_cold, tokens, decode), repeats)
            model.prefill(cache, tokens)
            save_s, save_bytes = model.save_cost(cache)
            result["first"] = {
                "turn": request.turn,
                "prompt_tokens": len(tokens),
                "full_s": statistics.median(full),
                "full_samples": full,
                "cache_save_s": save_s,
                "cache_save_bytes": save_bytes,
            }
        else:
            reused = min(_common_prefix(cached, tokens), len(tokens) - 1)
            model.trim_to(cache, reused)
            new = tokens[reused:]
            one = _samples(partial(model.timed_generate, cache, new, 1), repeats)
            full = _samples(partial(model.timed_generate, cache, new, decode), repeats)
            per_token = max(0.0, (statistics.median(full) - statistics.median(one)) / max(1, decode - 1))
            result["turns"].append(
                {
                    "turn": request.turn,
                    "kind": kind,
                    "prompt_tokens": len(tokens),
                    "reused_tokens": reused,
                    "new_tokens": len(new),
                    "prefill_s": statistics.median(one),
                    "bound_s": statistics.median(full),
                    "decode_s_per_token": per_token,
                    "samples": full,
                }
            )
            model.prefill(cache, new)
        cached = tokens
    return result


def _load_scenario(spec: str, model_dir: Path, turns: int | None = None) -> Any:
    base, size = split_name(spec)
    scenario = materialize(resolve_scenarios([base])[0], TokenCounter(model_dir), turns)
    if size:
        scenario = scale_scenario(scenario, size, TokenCounter(model_dir))
    return scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.run.bound", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="mlx-lm model folder")
    parser.add_argument(
        "--scenario",
        action="append",
        required=True,
        help="scenario name or YAML path, with @N for a --context-tokens size (repeatable)",
    )
    parser.add_argument("--out", required=True, help="JSON file; scenarios are merged into it if it exists")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--turns", type=int, help="turns of generated scenarios, as the run had them")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=BUDGET_S,
        help="stop measuring (leaving turns out, said so in the file) after this long",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    model_dir = Path(args.model)
    scenarios = [(spec, _load_scenario(spec, model_dir, args.turns)) for spec in args.scenario]
    model = _Model(model_dir)
    out = Path(args.out)
    data: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    data.setdefault("scenarios", {})
    data.setdefault("models", {})[model_dir.name] = str(model_dir)
    deadline = started + args.max_seconds
    for _spec, scenario in scenarios:
        print(f"bound: {scenario.name}", flush=True)
        entry = measure_scenario(model, scenario, args.repeats, deadline)
        entry["model"] = model_dir.name
        data["scenarios"][scenario.name] = entry
        data["elapsed_s"] = round(float(data.get("elapsed_s") or 0) + time.monotonic() - started, 3)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, out)
    print(f"bound: done in {time.monotonic() - started:.1f} s", flush=True)
    return 0


# --- from the runner ------------------------------------------------------------------------------


def measure_for_run(
    run_dir: Path, groups: list[ModelGroup], meta: RunMeta, say: Callable[[str], None], turns: int | None = None
) -> Path | None:
    """With --bound: writes bound.json into the run folder (one subprocess per model, after every
    server has stopped); a failure becomes a note in run.json, never an error of the run."""
    budget = BUDGET_S
    out = run_dir / BOUND_FILE
    log_path = run_dir / "logs" / "bound.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"file": BOUND_FILE, "budget_s": budget, "status": "running"}
    meta.data["bound"] = record
    deadline = time.monotonic() + budget
    for group in groups:
        specs = [s.source + (f"@{s.context_tokens}" if s.context_tokens else "") for s in group.scenarios]
        left = deadline - time.monotonic()
        if not specs or left <= 0:
            continue
        say(f"measuring the cache-perfect bound in-process (mlx-lm) on {group.path.name}")
        command = [
            sys.executable,
            "-m",
            "harness.run.bound",
            "--model",
            str(group.path),
            "--out",
            str(out),
            "--max-seconds",
            f"{left:.0f}",
        ]
        for spec in specs:
            command += ["--scenario", spec]
        if turns:
            command += ["--turns", str(turns)]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(run_dir),
                start_new_session=True,
            )
            try:
                code = process.wait(timeout=left + 120)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        if code != 0:
            record["status"] = "failed"
            meta.data["notes"].append(
                f"cache-perfect bound on {group.path.name} failed (exit {code}); see logs/bound.log"
            )
    if record["status"] == "running":
        record["status"] = "complete" if out.is_file() else "not measured"
    meta.save()
    return out if out.is_file() else None


# --- the report's view ----------------------------------------------------------------------------


if __name__ == "__main__":
    sys.exit(main())
