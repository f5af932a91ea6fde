"""Compiled outlier test against a blotted median (outlier_detection's flag pass)."""

from __future__ import annotations

import numpy as np

from romancore import _outlier
from romancore._threads import effective_n_threads
from romancore._validation import check_array

__all__ = ["flag_resampled"]


def flag_resampled(
    sci: np.ndarray,
    err: np.ndarray,
    blot: np.ndarray,
    snr1: float,
    snr2: float,
    scale1: float,
    scale2: float,
    backg: float,
    *,
    n_threads: int | None = None,
) -> np.ndarray:
    """Return the outlier mask of an image against the blotted median (stcal 1.20).

    With ``d = |sci - blot - backg|``, ``D`` the largest absolute difference of the
    blot with its 4 neighbours (NaN differences count 0; NaN where the blot is NaN)
    and ``e`` the error (NaN -> 0, +-inf -> +-float32 max, as ``numpy.nan_to_num``),
    a pixel is flagged where ``d > scale2 D + snr2 e`` and ``d > scale1 D + snr1 e``
    holds for it or one of its 8 neighbours. All arithmetic in float32, in the order
    of the numpy form, so the mask is the same bit for bit.

    Parameters
    ----------
    sci, err, blot : numpy.ndarray
        2-D arrays of one shape (converted to C-contiguous float32).
    snr1, snr2, scale1, scale2 : float
        Thresholds of the first (grown) and second test.
    backg : float
        Background still in ``sci`` but not in the blot.
    n_threads : int or None, optional
        Threads (see :func:`romancore.effective_n_threads`); the result does not
        depend on it.

    Returns
    -------
    numpy.ndarray
        Boolean mask, True for outliers.
    """
    sci = check_array(np.ascontiguousarray(sci, dtype=np.float32), "sci", np.float32, 2)
    shape = sci.shape
    err = check_array(np.ascontiguousarray(err, dtype=np.float32), "err", np.float32, 2, shape)
    blot = check_array(np.ascontiguousarray(blot, dtype=np.float32), "blot", np.float32, 2,
                       shape)  # fmt: skip
    first = np.empty(shape, np.uint8)
    out = np.empty(shape, np.uint8)
    _outlier.flag_resampled(sci, err, blot, np.float32(snr1), np.float32(snr2),
                            np.float32(scale1), np.float32(scale2), np.float32(backg),
                            first, out, effective_n_threads(n_threads))  # fmt: skip
    return out.view(bool)
