"""Parameter spaces of the procedural categories: sampling and validation of overrides.

A category declares ``SPACE``: an ordered dict from parameter name to either
- a list of choices (strings, bools or ints), drawn uniformly, or
- a ``(low, high)`` pair: floats drawn uniformly, or ints (both ends ints) drawn inclusively.
Draw order is the declaration order, so a (category, seed) pair is reproducible.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.data.errors import InvalidShapeParams

Space = dict[str, Any]


def sample_space(rng: np.random.Generator, space: Space) -> dict[str, Any]:
    """One JSON-safe parameter dict drawn from ``space`` (floats rounded to 4 decimals)."""
    out: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            value = spec[int(rng.integers(len(spec)))]
            out[name] = value.item() if isinstance(value, np.generic) else value
        else:
            lo, hi = spec
            if isinstance(lo, int) and isinstance(hi, int) and not isinstance(lo, bool):
                out[name] = int(rng.integers(lo, hi + 1))
            else:
                out[name] = round(float(rng.uniform(lo, hi)), 4)
    return out


def apply_overrides(params: dict[str, Any], overrides: dict[str, Any] | None, space: Space,
                    category: str) -> dict[str, Any]:
    """``params`` updated with ``overrides``, each checked against ``space``.

    Raises InvalidShapeParams for unknown names, wrong types, values outside a range or
    not among the choices.
    """
    if not overrides:
        return params
    if not isinstance(overrides, dict):
        raise InvalidShapeParams(f"Overrides must be a dict of parameter values, got {type(overrides).__name__}.")
    out = dict(params)
    for name, value in overrides.items():
        if name not in space:
            raise InvalidShapeParams(f"{category!r} has no parameter {name!r}; it has: {', '.join(space)}.",
                                     details={"category": category, "param": name})
        spec = space[name]
        if isinstance(spec, list):
            # bools compare equal to 0/1, so match on bool-ness too
            matches = [c for c in spec if c == value and isinstance(c, bool) == isinstance(value, bool)]
            if not matches:
                raise InvalidShapeParams(f"{category}.{name} must be one of {spec}, got {value!r}.",
                                         details={"category": category, "param": name})
            out[name] = matches[0]
        else:
            lo, hi = spec
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise InvalidShapeParams(f"{category}.{name} must be a number in [{lo}, {hi}], got {value!r}.",
                                         details={"category": category, "param": name})
            if not lo <= value <= hi:
                raise InvalidShapeParams(f"{category}.{name}={value} is outside [{lo}, {hi}].",
                                         details={"category": category, "param": name})
            is_int = isinstance(lo, int) and isinstance(hi, int)
            if is_int and value != int(value):
                raise InvalidShapeParams(f"{category}.{name} must be a whole number, got {value!r}.",
                                         details={"category": category, "param": name})
            out[name] = int(value) if is_int else round(float(value), 4)
    return out


def describe_space(space: Space) -> dict[str, Any]:
    """JSON-safe description of a space (choices or [low, high]) for docs and clients."""
    return {k: (list(v) if isinstance(v, list) else {"range": [v[0], v[1]]}) for k, v in space.items()}
