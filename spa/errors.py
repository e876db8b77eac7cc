"""The one exception type the `spa` command turns into a one-line error and a non-zero exit code."""

from __future__ import annotations

import re

_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: object, limit: int | None = None) -> str:
    """`text` safe for a terminal: control characters (escape sequences, carriage returns, bidi overrides)
    shown as `\\xNN` / `\\uNNNN` instead of being interpreted. Model and path names go through this before
    they are printed; `limit` shortens very long ones."""
    s = str(text)
    if limit is not None and len(s) > limit:
        s = s[:limit] + "…"
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                            else f"\\u{ord(m.group()):04x}", s)


class SpaError(Exception):
    """A user-facing failure: bad file, bad argument, unwritable output, failed verification.

    `exit_code` groups the failures so scripts can tell them apart:
    2 = bad argument, 3 = unreadable or unsupported model, 4 = the pruned model failed verification,
    5 = the output could not be written, 6 = nothing was pruned (only with `--strict`).
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(printable(message).replace("\n", " "))
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


def first_line(exc: BaseException) -> str:
    """`Type: first line of the message` of an exception, for one-line errors."""
    s = str(exc).strip()
    line = s.splitlines()[0] if s else ""
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
