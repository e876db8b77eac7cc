"""Settings read from the environment (limits a user may raise without a flag), in one place."""

from __future__ import annotations

import os

from .errors import BadArgument


def env_int(name: str, default: int, unit: str) -> int:
    """$`name` as an integer (`unit` names what it counts, for the error), else `default`. A value that is not
    an integer is a bad argument (exit 2, one line)."""
    env = os.environ.get(name, "").strip()
    if not env:
        return default
    try:
        return int(env)
    except ValueError:
        raise BadArgument(f"{name}={env!r} is not a number of {unit}") from None
