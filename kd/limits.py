"""Bounds read from the environment, and the helpers that make their messages one line.

Torch-free: the store, the leases and a worker waiting for its turn use them too.
"""

from __future__ import annotations

import os

from kd.errors import DataError, KDError


def env_limit(
    name: str, default: float, zero_ok: bool = False, whole: bool = False, error: type[KDError] = DataError
) -> float:
    """A bound from the environment (KD_MAX_*, KD_MIN_FREE_MB, KD_LEASE_LAPSE_S), read at each call
    so a changed variable counts; a value that is not a positive number (or >= 0 with zero_ok, or
    whole with whole) is an `error` naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    ok = value >= 0 if zero_ok else value > 0  # both refuse nan
    if not ok or (whole and not value.is_integer()):
        kind = "number >= 0" if zero_ok else "positive " + ("whole number" if whole else "number")
        raise error(f"{name}={raw!r} is not a {kind}; unset it for the default ({num(default)})")
    return value


def short(text: object, n: int = 120) -> str:
    """A path or name cut to n characters, so a very long one still makes a one-line message."""
    text = str(text)
    return text if len(text) <= n else text[:n] + "…"


def reason(e: BaseException, about: object = None) -> str:
    """The first line of an error, its file named unless it is `about` (already in the message)."""
    if isinstance(e, OSError) and e.strerror:
        named = e.filename is not None and str(e.filename) != str(about)
        return f"{e.strerror}: {short(e.filename)}" if named else e.strerror
    return short(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, 200)


def num(v: float) -> str:
    """4096 -> '4,096', 0.01 -> '0.01': a limit as a person typed it."""
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,g}"


def human_bytes(n: float) -> str:
    """8.8 GB, 138 MB, 4.42 MB, 0.006 MB."""
    return f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.0f} MB" if n >= 1e7 else f"{n / 1e6:.3g} MB"
