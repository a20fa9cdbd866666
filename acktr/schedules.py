"""Hyperparameters that may be constants or callables of the step, and their validation."""

from __future__ import annotations

import math
from collections.abc import Callable

Schedule = float | Callable[[int], float]
"""A hyperparameter: a number, or a function of the optimizer step (0-based) returning one."""


def resolve(value: Schedule, step: int) -> float:
    """Return the value of a hyperparameter at ``step`` (calling it if it is a schedule)."""
    return float(value(step)) if callable(value) else float(value)


def check_positive(name: str, value: Schedule, step: int = 0) -> float:
    """Validate that ``value`` (at ``step``) is a finite number > 0; return it."""
    v = resolve(value, step)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    return v


def check_non_negative(name: str, value: Schedule, step: int = 0) -> float:
    """Validate that ``value`` (at ``step``) is a finite number >= 0; return it."""
    v = resolve(value, step)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    return v


def check_decay(name: str, value: float) -> float:
    """Validate an exponential-moving-average decay: a number in [0, 1)."""
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def check_interval(name: str, value: int) -> int:
    """Validate an interval in steps: an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """Validate a string option against its allowed values."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value
