"""Argument checks shared by the model builders: bad sizes fail at construction, naming the argument."""

from __future__ import annotations

import numbers


def check_positive_int(name: str, value: object) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def check_probability(name: str, value: object) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    probability = float(value)
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return probability
