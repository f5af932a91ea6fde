"""Validated accessors for the exposure metadata the ramp steps need."""

from __future__ import annotations

import math
from typing import Any

from ..errors import InputFileError
from ._core import DataModel

__all__ = ["frame_time", "read_pattern"]


def _exposure(model: DataModel, what: str) -> Any:
    meta = model._node._data.get("meta")
    exposure = meta.get("exposure") if isinstance(meta, dict) else None
    if not isinstance(exposure, dict):
        raise InputFileError(f"{model._describe()}: no meta.exposure (needed for {what})")
    return exposure


def read_pattern(model: DataModel) -> list[list[int]]:
    """Return ``meta.exposure.read_pattern``: the read numbers of each resultant.

    Parameters
    ----------
    model : DataModel
        An exposure model (raw, ramp or image).

    Returns
    -------
    list of list of int
        One list of (1-based) read numbers per resultant.

    Raises
    ------
    InputFileError
        If the read pattern is missing, empty, not a list of non-empty lists of
        positive increasing integers, or (for models with a 3-D ``data``) does
        not have one entry per resultant.
    """
    exposure = _exposure(model, "read_pattern")
    where = model._describe()
    pattern = exposure.get("read_pattern")
    if pattern is None:
        raise InputFileError(f"{where}: meta.exposure.read_pattern is missing")
    from romancore.readpattern import validate_read_pattern

    try:
        # the kernels' own rules: integers (2.0 is 2, never 1.5 -> 1 or "1" -> 1),
        # non-empty resultants, read numbers positive and increasing
        result = validate_read_pattern(pattern)
    except ValueError as exc:
        raise InputFileError(f"{where}: meta.exposure.read_pattern: {exc}") from None
    data = model._node._data.get("data")
    shape = getattr(data, "shape", None)
    if shape is not None and len(shape) == 3 and shape[0] != len(result):
        raise InputFileError(
            f"{where}: meta.exposure.read_pattern has {len(result)} resultants "
            f"but data has {shape[0]}"
        )
    return result


def frame_time(model: DataModel) -> float:
    """Return ``meta.exposure.frame_time`` in seconds.

    Parameters
    ----------
    model : DataModel
        An exposure model.

    Returns
    -------
    float
        Time between reads (s).

    Raises
    ------
    InputFileError
        If the frame time is missing, not a number, or not finite and positive.
    """
    exposure = _exposure(model, "frame_time")
    where = model._describe()
    value = exposure.get("frame_time")
    if value is None:
        raise InputFileError(f"{where}: meta.exposure.frame_time is missing")
    if isinstance(value, bool):
        raise InputFileError(f"{where}: meta.exposure.frame_time is not a number ({value!r})")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise InputFileError(
            f"{where}: meta.exposure.frame_time is not a number ({value!r})"
        ) from None
    if not math.isfinite(result) or result <= 0:
        raise InputFileError(f"{where}: meta.exposure.frame_time must be positive, got {result}")
    return result
