"""DN/s -> MJy/sr: scaling of the data, error and variance arrays.

romancal 1.1 ``romancal/flux/flux_step.py`` (downstream.md 2.2): with
``c = meta.photometry.conversion_megajanskys`` (MJy/sr per DN/s), ``data`` and ``err``
are multiplied by ``c`` and the variances ``var_rnoise``, ``var_poisson`` and
``var_flat`` by ``c**2``; an image whose ``meta.cal_step.flux`` is ``COMPLETE`` is
left alone.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from romancal_lite.errors import InputFileError

__all__ = ["VARIANCE_ARRAYS", "apply_flux_correction", "conversion_factor", "flux_scales"]

#: The variance arrays scaled by c**2 (those an image has).
VARIANCE_ARRAYS = ("var_rnoise", "var_poisson", "var_flat")


def conversion_factor(model: Any) -> float:
    """Return ``meta.photometry.conversion_megajanskys`` of an image, checked.

    Parameters
    ----------
    model : ImageModel
        A level 2 image after ``photom``.

    Returns
    -------
    float
        MJy/sr per DN/s.

    Raises
    ------
    InputFileError
        If it is missing, a placeholder (-999999), not finite or not positive
        (``photom`` did not run or had no entry for the optical element).
    """
    photometry = model.meta.get("photometry") or {}
    value = photometry.get("conversion_megajanskys") if hasattr(photometry, "get") else None
    name = model.meta.get("filename") or "<in-memory image>"
    try:
        factor = float(value)
    except (TypeError, ValueError):
        factor = math.nan
    if not math.isfinite(factor) or factor <= 0 or factor == -999999:
        raise InputFileError(
            f"{name}: meta.photometry.conversion_megajanskys is {value!r}, not a positive "
            "number: the image has no flux calibration (photom not run, or no entry for "
            "its optical element); flux cannot convert it to MJy/sr"
        )
    return factor


def flux_scales(model: Any) -> dict[str, float]:
    """Return the factors that convert an image's arrays from DN/s to MJy/sr.

    Parameters
    ----------
    model : ImageModel
        A level 2 image after ``photom`` (its arrays are not read).

    Returns
    -------
    dict
        ``{"data": c, "err": c, "var_*": c**2}`` for the arrays the image has; empty
        if ``meta.cal_step.flux`` is already ``COMPLETE``.

    Raises
    ------
    InputFileError
        If the conversion factor is unusable (`conversion_factor`).
    """
    cal_step = model.meta.get("cal_step") or {}
    if cal_step.get("flux") == "COMPLETE":
        return {}
    factor = conversion_factor(model)
    scales = {"data": factor}
    if "err" in model:
        scales["err"] = factor
    for name in VARIANCE_ARRAYS:
        if name in model:
            scales[name] = factor * factor
    return scales


def apply_flux_correction(model: Any) -> bool:
    """Convert an image from DN/s to MJy/sr in place (unless already converted).

    Parameters
    ----------
    model : ImageModel
        The image; ``err`` and the variances are converted to float32 (the file
        stores them as float16).

    Returns
    -------
    bool
        False if ``meta.cal_step.flux`` was already ``COMPLETE`` (nothing done).

    Raises
    ------
    InputFileError
        If the conversion factor is unusable (`conversion_factor`).
    """
    scales = flux_scales(model)
    if not scales:
        return False
    for name, factor in scales.items():
        model[name] = np.multiply(model[name], np.float32(factor), dtype=np.float32)
    model.meta.cal_step["flux"] = "COMPLETE"
    return True
