"""The one exception type the `spa` command turns into a one-line error and a non-zero exit code."""

from __future__ import annotations


class SpaError(Exception):
    """A user-facing failure: bad file, bad argument, unwritable output, failed verification.

    `exit_code` groups the failures so scripts can tell them apart:
    2 = bad argument, 3 = unreadable or unsupported model, 4 = the pruned model failed verification,
    5 = the output could not be written, 6 = nothing was pruned (only with `--strict`).
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class BadArgument(SpaError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 2)


class BadModel(SpaError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 3)


class VerificationFailed(SpaError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 4)


class WriteFailed(SpaError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 5)


class NothingPruned(SpaError):
    """`--strict`: the plan removes no channel (no prunable group, or a ratio too small for every group)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 6)
