"""Compiled parts of outlier_detection.

The flag test against a blotted median, the weight threshold's selection and the
median of the exposure groups.
"""

from __future__ import annotations

import numpy as np

from romancore import _outlier
from romancore._threads import effective_n_threads
from romancore._validation import check_array, check_writeable

__all__ = ["count_kept", "flag_resampled", "gather_kept", "nanmedian_axis0"]


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


def _bounds(bounds: tuple[float, float] | None) -> tuple[np.float32, np.float32, bool]:
    if bounds is None:
        return np.float32(0), np.float32(0), False
    return np.float32(bounds[0]), np.float32(bounds[1]), True


def count_kept(values: np.ndarray, bounds: tuple[float, float] | None = None, *,
               n_threads: int | None = None) -> np.ndarray:  # fmt: skip
    """Return, per row, how many values are finite and non-zero (and within ``bounds``).

    The selection of outlier_detection's weight threshold (``isfinite(v) & (v != 0)``,
    and ``lo <= v <= hi``), without boolean temporaries.

    Parameters
    ----------
    values : numpy.ndarray of float32, shape (ny, nx), C-contiguous
        The values (e.g. a block of rows of a weight map).
    bounds : tuple of float, optional
        ``(lo, hi)`` (float32 values), inclusive.
    n_threads : int or None, optional
        Threads (the counts do not depend on them).

    Returns
    -------
    numpy.ndarray of int64
        ``(ny,)`` counts.
    """
    values = check_array(values, "values", np.float32, 2)
    counts = np.empty(values.shape[0], np.int64)
    lo, hi, bounded = _bounds(bounds)
    _outlier.count_kept(values, lo, hi, bounded, counts, effective_n_threads(n_threads))
    return counts


def gather_kept(values: np.ndarray, out: np.ndarray,
                bounds: tuple[float, float] | None = None, *,
                counts: np.ndarray | None = None, n_threads: int | None = None) -> int:  # fmt: skip
    """Copy the values `count_kept` counts into ``out``, in C order.

    The same values, in the same order, as ``values[np.isfinite(values) & (values !=
    0) & (values >= lo) & (values <= hi)]``.

    Parameters
    ----------
    values : numpy.ndarray of float32, shape (ny, nx), C-contiguous
        The values.
    out : numpy.ndarray of float32, 1-D, C-contiguous
        Receives them from its start (at least as long as their number).
    bounds : tuple of float, optional
        ``(lo, hi)``, inclusive.
    counts : numpy.ndarray of int64, optional
        ``count_kept(values, bounds)``, if already computed.
    n_threads : int or None, optional
        Threads (the result does not depend on them).

    Returns
    -------
    int
        How many values were copied.

    Raises
    ------
    ValueError
        If ``out`` is too short or ``counts`` does not fit.
    """
    values = check_array(values, "values", np.float32, 2)
    out = check_array(out, "out", np.float32, 1)
    check_writeable(out, "out")
    if counts is None:
        counts = count_kept(values, bounds, n_threads=n_threads)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (values.shape[0],):
        raise ValueError(f"counts has shape {counts.shape}, not ({values.shape[0]},)")
    offsets = np.zeros(values.shape[0], np.int64)
    np.cumsum(counts[:-1], out=offsets[1:])
    total = int(counts.sum())
    if total > out.shape[0]:
        raise ValueError(f"out holds {out.shape[0]} values, {total} are kept")
    lo, hi, bounded = _bounds(bounds)
    _outlier.gather_kept(values, lo, hi, bounded, offsets, out, effective_n_threads(n_threads))
    return total


def nanmedian_axis0(block: np.ndarray, *, n_threads: int | None = None) -> np.ndarray:
    """Return the median along axis 0 ignoring NaN (NaN where every value is NaN).

    The same values as ``numpy.nanmedian(block, axis=0)`` and as the numpy form of
    outlier_detection's median (sort along the axis, NaN last; the middle finite value,
    or the float32 mean ``(a + b) / 2`` of the two middle ones), in one parallel pass:
    each pixel's finite values are insertion-sorted in a buffer of ``n_images`` floats.
    Only the sign of a zero median can differ, where ``+0`` and ``-0`` are both in the
    middle.

    Parameters
    ----------
    block : numpy.ndarray of float32, shape (n_images, ny, nx)
        The images' values (not modified; copied to a C-contiguous float32 array
        if it is not one).
    n_threads : int or None, optional
        Threads (the result does not depend on them).

    Returns
    -------
    numpy.ndarray of float32
        ``(ny, nx)`` median.
    """
    block = np.asarray(block)
    if block.ndim != 3:
        raise ValueError(f"block must be 3-D (n_images, ny, nx), got shape {block.shape}")
    if block.dtype != np.float32 or not block.flags.c_contiguous:
        block = np.ascontiguousarray(block, dtype=np.float32)
    out = np.empty(block.shape[1:], np.float32)
    _outlier.nanmedian_axis0(block, out, effective_n_threads(n_threads))
    return out
