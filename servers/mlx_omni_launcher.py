"""Runs `mlx-omni-server` with only the import-time stubs it needs on a machine without Metal,
PortAudio or a network.

Same command line as `mlx-omni-server`: `python servers/mlx_omni_launcher.py --host H --port P ...`.
mlx-omni-server imports its speech and audio stack when it starts, and three parts of it cannot be
imported here; none of them is used for chat or messages:
- misaki's G2P (text to speech) downloads a spaCy model when it is built, at import;
- `mx.fast.metal_kernel` is called at import by an audio model and needs Metal;
- `sounddevice` loads PortAudio at import.
Each stub replaces only what fails, and is logged on a line starting with "launcher shim applied:"
(the harness copies these lines into the report: a shim is a difference from what a Mac user runs).
"""

from __future__ import annotations

import os
import sys
import types

from launcher_shims import announce


def _unavailable(what: str):
    def fail(*_args, **_kwargs):
        raise RuntimeError(f"{what} is not available in this process (stubbed by the harness launcher)")

    return fail


def apply_shims() -> list[str]:
    applied: list[str] = []
    try:
        import sounddevice  # noqa: F401
    except OSError:
        stub = types.ModuleType("sounddevice")

        def missing(name: str):
            if name.startswith("__"):
                raise AttributeError(name)  # module machinery (torch scans modules' __file__)
            return _unavailable(f"sounddevice.{name}")

        stub.__getattr__ = missing  # type: ignore[method-assign]
        sys.modules["sounddevice"] = stub
        applied.append("sounddevice stubbed (PortAudio library not found)")
    except ImportError:
        pass

    import mlx.core as mx

    if not mx.metal.is_available():
        mx.fast.metal_kernel = lambda *args, **kwargs: _unavailable("mx.fast.metal_kernel")
        applied.append("mx.fast.metal_kernel stubbed (no Metal; called at import by an audio model)")

    if os.environ.get("HF_HUB_OFFLINE") == "1":
        try:
            import misaki.en
        except ImportError:
            misaki = None
        if misaki is not None:

            class OfflineG2P:
                """Stands in for misaki's G2P, whose constructor downloads a spaCy model."""

                def __init__(self, *args, **kwargs) -> None:
                    pass

                def __call__(self, *args, **kwargs):
                    raise RuntimeError("text to speech is not available offline (stubbed by the harness launcher)")

            misaki.en.G2P = OfflineG2P
            applied.append("misaki G2P stubbed (its constructor downloads a spaCy model; offline here)")
    return applied


def main() -> None:
    announce(apply_shims())
    from mlx_omni_server.main import start

    sys.argv[0] = "mlx-omni-server"
    start()


if __name__ == "__main__":
    main()
