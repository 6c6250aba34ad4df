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


def machine_memory() -> int:
    """Bytes of memory available to a new allocation on this machine (psutil when installed, else /proc, else the
    physical total)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: only the explicit bounds apply


def fits(flag: str, nbytes: float, what: str) -> None:
    """Refuse, before allocating, a setting whose estimated memory ``nbytes`` exceeds what this machine has."""
    have = machine_memory()
    if nbytes > have:
        raise ConfigError(f"{flag}: {what} needs about {amount(nbytes)}, more than the {amount(have)} of memory "
                          "available on this machine")


def on_device(flag: str, nbytes: float, what: str, device: str = "cpu") -> None:
    """``fits`` for what lives on ``device``: a CUDA device's free memory, else the host's."""
    if not str(device).startswith("cuda"):
        return fits(flag, nbytes, what)
    import torch

    free = int(torch.cuda.mem_get_info(torch.device(device))[0])
    if nbytes > free:
        raise ConfigError(f"{flag}: {what} needs about {amount(nbytes)}, more than the {amount(free)} free on "
                          f"{device}")


def amount(nbytes: float) -> str:
    """Bytes for a message: GiB, or MiB below a tenth of one."""
    return f"{nbytes / 2**30:,.1f} GiB" if nbytes >= 2**30 / 10 else f"{nbytes / 2**20:,.1f} MiB"


def at_most(flag: str, value, high: int) -> None:
    """An integer setting within d4m's sanity bound (more is a typo, not a plan)."""
    whole(flag, value, 1)
    if value > high:
        raise ConfigError(f"{flag} {value}: more than d4m runs ({high:,})")
