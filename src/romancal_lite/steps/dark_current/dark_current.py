"""Subtract the dark current rate from a slope image.

The exposure pipeline runs this step after ramp fitting (seeds/002:35-37), so it works on
the level 2 slope image in DN/s: the DARK reference's ``dark_slope`` (DN/s) is subtracted
from ``data`` and its ``dq`` is OR-ed into the image ``dq``. This is what romancal 1.1 does
(``romancal.dark_current.dark_current_step.subtract_dark_current``); the ramp-level,
group-by-group algorithm of seeds/000:857-873 is not used by either.

Like romancal 1.1, the dark's uncertainty (``dark_slope_error``) is not propagated:
``err``, ``var_poisson`` and ``var_rnoise`` are left unchanged, and a NaN dark rate makes
the science pixel NaN.
"""

from __future__ import annotations

import numpy as np

from romancal_lite.references._spec import BORDER

__all__ = ["BORDER", "subtract_dark_current"]



def subtract_dark_current(
    data: np.ndarray,
    dq: np.ndarray,
    dark_slope: np.ndarray,
    dark_dq: np.ndarray,
    border: int = BORDER,
) -> None:
    """Subtract a dark rate from a slope image and merge the dark's DQ flags, in place.

    Parameters
    ----------
    data : numpy.ndarray
        Slope image (DN/s), shape ``(ny, nx)``; ``data -= dark_slope`` (trimmed).
    dq : numpy.ndarray
        Image DQ flags (uint32), same shape; the trimmed ``dark_dq`` is OR-ed in.
    dark_slope : numpy.ndarray
        Dark rate (DN/s) of the full detector read-out, shape
        ``(ny + 2 * border, nx + 2 * border)``.
    dark_dq : numpy.ndarray
        DQ flags of the dark, same shape as ``dark_slope``.
    border : int, optional
        Width of the reference-pixel border trimmed from the dark arrays (4 for WFI).

    Raises
    ------
    ValueError
        If the arrays are not 2-D or the dark arrays are not the image shape plus the
        border on each side.
    """
    if data.ndim != 2 or dq.shape != data.shape:
        raise ValueError(
            f"data and dq must be 2-D arrays of one shape, got {data.shape} and {dq.shape}"
        )
    want = (data.shape[0] + 2 * border, data.shape[1] + 2 * border)
    for name, array in (("dark_slope", dark_slope), ("dark_dq", dark_dq)):
        if array.shape != want:
            raise ValueError(
                f"{name} has shape {array.shape}, expected {want} (the image shape "
                f"{data.shape} plus a {border}-pixel border)"
            )
    inner = (slice(border, -border), slice(border, -border)) if border else (...,)
    np.subtract(data, dark_slope[inner], out=data)
    np.bitwise_or(dq, dark_dq[inner], out=dq)
