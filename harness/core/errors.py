"""The harness's exception tree. Every error a user can cause is a ``HarnessError`` whose message
names the cause and the fix; the CLI prints it as one paragraph and exits non-zero.

    HarnessError
    ├── ConfigError      bad harness.toml / CLI values, unknown server names, unwritable run folder
    ├── ModelError       model folder missing or not loadable by mlx-lm
    ├── ScenarioError    (harness.scenario.definition) invalid scenario or tool-schema file
    ├── InputError       `harness import`: a file that is not JSON or not a known traffic format, a folder
    │                    with nothing to import
    └── ServerError      a server exited during start-up, never became ready, or could not be started

    Interrupted (a BaseException, like KeyboardInterrupt): SIGINT/SIGTERM of the harness; it unwinds
    the run so that every server is stopped, the rows are kept and a partial report is written.
"""

from __future__ import annotations

from pathlib import Path


class HarnessError(Exception):
    """Root of every error the harness reports to the user."""


class ConfigError(HarnessError):
    pass


class ModelError(HarnessError):
    pass


class ServerError(HarnessError):
    pass


class InputError(HarnessError):
    pass


class Interrupted(BaseException):
    """Raised in the main thread on SIGINT/SIGTERM so every server is stopped on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def read_user_file(path: Path, fix: str, what: str = "", keep_line_ends: bool = False) -> str:
    """The text of a UTF-8 file the user named, or a ConfigError naming it (``what``: how to call
    it, e.g. "the expectations file") and saying what to do (``fix``). ``keep_line_ends``: CRLF
    stays as it is, for a file that is written back."""
    name = f"{what} {path}" if what else str(path)
    try:
        with Path(path).open(encoding="utf-8", newline="" if keep_line_ends else None) as handle:
            return handle.read()
    except FileNotFoundError:
        raise ConfigError(f"{name} does not exist. {fix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {name}: {exc}. {fix}") from None
