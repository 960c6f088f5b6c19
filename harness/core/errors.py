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
