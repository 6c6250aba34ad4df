"""Domain checks for numbers a user hands us: one ``ConfigError`` line naming the flag, never a quiet surprise."""

from __future__ import annotations

import math

from d4m.errors import ConfigError


def whole(flag: str, value, minimum: int = 0, optional: bool = False) -> None:
    """``value`` is an integer >= ``minimum`` (None allowed when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{flag} {value!r}: must be an integer >= {minimum}")


def finite(flag: str, value, low: float | None = None, high: float | None = None, low_open: bool = False) -> None:
    """``value`` is a finite number in [low, high] (``low_open``: (low, high])."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{flag} {value!r}: must be a finite number")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"{flag} {value}: must be {'>' if low_open else '>='} {low}")
    if high is not None and value > high:
        raise ConfigError(f"{flag} {value}: must be <= {high}")
