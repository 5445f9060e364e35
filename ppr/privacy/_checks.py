"""Input validation shared by the privacy modules (messages name the argument and the value)."""

from __future__ import annotations

import math
from typing import Any

from ppr.errors import ConfigError


def fmt(value: Any) -> str:
    """Format a number for an error message: ``-1.0`` -> ``-1``, ``0.01`` -> ``0.01``."""
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def is_concrete_number(value: Any) -> bool:
    """True for a Python/NumPy scalar (not a traced JAX value)."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    except Exception:  # jax ConcretizationTypeError and friends: a traced value
        return False
    return True


def check_positive(name: str, value: Any) -> None:
    """Require ``value > 0`` and finite; skipped for traced values (inside ``jax.jit``)."""
    if not is_concrete_number(value):
        return
    v = float(value)
    if not (v > 0.0) or math.isinf(v):
        raise ConfigError(f"`{name}` must be positive. Found {fmt(value)}.")


def check_non_negative(name: str, value: Any) -> None:
    """Require ``value >= 0`` and finite; skipped for traced values."""
    if not is_concrete_number(value):
        return
    v = float(value)
    if not (v >= 0.0) or math.isinf(v):
        raise ConfigError(f"`{name}` must be non-negative. Found {fmt(value)}.")


def check_rate(name: str, value: Any) -> None:
    """Require ``0 < value <= 1`` (a sampling rate)."""
    v = float(value)
    if not (0.0 < v <= 1.0):
        raise ConfigError(f"`{name}` must be in (0, 1]. Found {fmt(value)}.")


def check_delta(name: str, value: Any) -> None:
    """Require ``0 < value < 1``."""
    v = float(value)
    if not (0.0 < v < 1.0):
        raise ConfigError(f"`{name}` must be in (0, 1). Found {fmt(value)}.")


def check_count(name: str, value: Any, minimum: int = 1) -> None:
    """Require an integer ``>= minimum``."""
    if isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise ConfigError(f"`{name}` must be an integer >= {minimum}. Found {fmt(value)}.")
