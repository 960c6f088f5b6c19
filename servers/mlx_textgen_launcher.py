"""Runs the normal `mlx_textgen` CLI, with only the CPU shims the installed MLX needs.

Same command line as `mlx_textgen`: `python servers/mlx_textgen_launcher.py serve -m MODEL -p PORT ...`.
Each shim applied is logged on one line starting with "launcher shim applied:" and the summary line
"launcher shims: [...]", which the harness copies into the report: a shim is a difference from what a
Mac user runs, so it must be visible next to the numbers.
"""

from __future__ import annotations

import contextlib
import sys
import threading

from launcher_shims import announce


def _metal_working_set_readable(mx) -> bool:
    """MLX-Textgen's wired_limit reads this key; without Metal it raises or is missing."""
    try:
        return "max_recommended_working_set_size" in mx.metal.device_info()
    except Exception:
        return False


def _generation_stream_usable(mx, model_utils) -> bool:
    """mlx >= 0.32 made streams thread-local; MLX-Textgen generates in worker threads."""
    outcome: list[bool] = []

    def probe() -> None:
        try:
            with mx.stream(model_utils.GENERATION_STREAM):
                mx.eval(mx.array([1.0]) + 1)
            outcome.append(True)
        except Exception:
            outcome.append(False)

    worker = threading.Thread(target=probe)
    worker.start()
    worker.join()
    return bool(outcome and outcome[0])


def apply_shims() -> list[str]:
    """Patches MLX-Textgen where this MLX build needs it; returns a description of each patch."""
    import mlx.core as mx
    import mlx_textgen.model_utils as model_utils

    applied: list[str] = []
    if not _metal_working_set_readable(mx):

        @contextlib.contextmanager
        def no_wired_limit(*_args, **_kwargs):
            yield

        model_utils.wired_limit = no_wired_limit
        applied.append(
            "wired_limit disabled (mx.metal.device_info has no max_recommended_working_set_size without Metal)"
        )
    if not _generation_stream_usable(mx, model_utils):
        model_utils.GENERATION_STREAM = mx.default_device()
        applied.append("GENERATION_STREAM set to mx.default_device() (thread-local streams in this MLX)")
    return applied


def main() -> None:
    announce(apply_shims())
    from mlx_textgen.cli import main as textgen_main

    sys.argv[0] = "mlx_textgen"
    textgen_main()


if __name__ == "__main__":
    main()
