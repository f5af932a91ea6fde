"""Kernels of the decaying-signal corrections (romancal ``dark_decay``, ``wfi18_transient``).

The read-time map of a WFI frame repeats every 256 columns (two read-out channels),
so the corrections are held as one ``(rows, 256)`` column period and subtracted with
`subtract_periodic`. WFI18's transient fit needs, per row, a clipped mean of the first
resultant's residual (`clipped_row_means`) over pixels chosen with a median of a later
difference (`row_medians`).
"""

from __future__ import annotations

import numpy as np

from romancore import _decay
from romancore._threads import effective_n_threads
from romancore._validation import check_array, check_writeable

__all__ = ["PERIOD", "clipped_row_means", "row_medians", "subtract_periodic"]

#: Column period of the read-time map (two channels of 128 columns).
PERIOD = 256


def _window(shape: tuple[int, int], rows: tuple[int, int] | None,
            cols: tuple[int, int] | None) -> tuple[int, int, int, int]:
    ny, nx = shape
    r0, r1 = (0, ny) if rows is None else (int(rows[0]), int(rows[1]))
    c0, c1 = (0, nx) if cols is None else (int(cols[0]), int(cols[1]))
    if not (0 <= r0 <= r1 <= ny and 0 <= c0 <= c1 <= nx):
        raise ValueError(f"window rows {r0}:{r1}, columns {c0}:{c1} is outside {shape}")
    return r0, r1, c0, c1


def subtract_periodic(
    frame: np.ndarray,
    period: np.ndarray,
    rows: tuple[int, int] | None = None,
    cols: tuple[int, int] | None = None,
    *,
    n_threads: int | None = None,
) -> None:
    """Subtract ``period[y, x % 256]`` from ``frame[y, x]`` in a window, in place.

    The difference is taken in double precision and rounded to float32, which is
    what NumPy's ``frame -= full_map`` gives for a float64 map.

    Parameters
    ----------
    frame : numpy.ndarray of float32, (ny, nx), C-contiguous
        One resultant.
    period : numpy.ndarray of float64, (>= ny, 256), C-contiguous
        One column period of the map, indexed by frame row.
    rows, cols : tuple of int, optional
        ``(start, stop)`` of the window (default the whole frame).
    n_threads : int or None, optional
        Threads to use (see :func:`romancore.effective_n_threads`).

    Raises
    ------
    ValueError
        For arrays of the wrong dtype, shape or layout, or a window outside the frame.
    """
    check_array(frame, "frame", np.float32, 2)
    check_writeable(frame, "frame")
    check_array(period, "period", np.float64, 2, (None, PERIOD))
    r0, r1, c0, c1 = _window(frame.shape, rows, cols)
    if period.shape[0] < r1:
        raise ValueError(f"period has {period.shape[0]} rows, the window needs {r1}")
    _decay.subtract_periodic(frame, period, r0, r1, c0, c1, effective_n_threads(n_threads))


def row_medians(
    a: np.ndarray,
    b: np.ndarray,
    rows: tuple[int, int] | None = None,
    cols: tuple[int, int] | None = None,
    *,
    n_threads: int | None = None,
) -> np.ndarray:
    """Return, per row of a window, the median of ``a - b`` (float32, as ``numpy.median``).

    Exact: the middle order statistics found by a byte-wise radix selection on the
    values' order-preserving bit patterns.

    Parameters
    ----------
    a, b : numpy.ndarray of float32, (ny, nx), C-contiguous
        Two resultants.
    rows, cols : tuple of int, optional
        ``(start, stop)`` of the window (default the whole frame).
    n_threads : int or None, optional
        Threads to use.

    Returns
    -------
    numpy.ndarray of float32, (rows,)
        The medians (NaN for a row holding a NaN, as NumPy gives).
    """
    check_array(a, "a", np.float32, 2)
    check_array(b, "b", np.float32, 2, a.shape)
    r0, r1, c0, c1 = _window(a.shape, rows, cols)
    out = np.empty(r1 - r0, np.float32)
    _decay.row_medians(a, b, r0, r1, c0, c1, out, effective_n_threads(n_threads))
    return out


def clipped_row_means(
    resultants: tuple[np.ndarray, ...],
    dt: tuple[float, float],
    thresholds: np.ndarray,
    per_column: bool,
    rows: tuple[int, int] | None = None,
    cols: tuple[int, int] | None = None,
    *,
    sigma: float = 3.0,
    maxiters: int = 5,
    n_threads: int | None = None,
) -> np.ndarray:
    """Return, per row, the sigma-clipped mean of the first resultant's residual.

    For each pixel: ``r = (R2 - R1) / dt[1]``, residual ``R0 - (R1 - r dt[0])``
    (romancal 1.1 ``wfi18_transient``); it is used where ``R4 - R3`` is not above the
    threshold and the residual is finite. The row's mean is astropy's
    ``sigma_clipped_stats(..., sigma, maxiters, axis=1)[0]``: passes of median centre
    and standard deviation bounds (astropy's fast clipping), then the NumPy NaN-mean
    of the values within the final bounds. The row's usable residuals are sorted once
    (a bucket sort over their range), so that each pass reads the median by position
    and keeps a contiguous run found by bisection; the medians are exact order
    statistics, as astropy's selection gives, and the pass's mean and standard
    deviation are summed over the run in another order than astropy's (bounds equal
    to rounding; the final mean is summed as NumPy does).

    Parameters
    ----------
    resultants : tuple of 5 numpy.ndarray of float32, (ny, nx), C-contiguous
        ``R0 ... R4``.
    dt : tuple of float
        ``(t1 - t0, t2 - t1)``, differences of the resultants' mean read times (s).
    thresholds : numpy.ndarray of float32
        One per window column (``per_column``) or per window row.
    per_column : bool
        How ``thresholds`` is indexed.
    rows, cols : tuple of int, optional
        ``(start, stop)`` of the window (default the whole frame).
    sigma : float, optional
        Clipping threshold in standard deviations.
    maxiters : int, optional
        Largest number of clipping passes (-1: until nothing changes).
    n_threads : int or None, optional
        Threads to use.

    Returns
    -------
    numpy.ndarray of float64, (rows,)
        The clipped means (NaN where a row has no usable pixel).
    """
    if len(resultants) != 5:
        raise ValueError(f"resultants must be R0 ... R4 (5 arrays), got {len(resultants)}")
    first = check_array(resultants[0], "resultants[0]", np.float32, 2)
    for i, arr in enumerate(resultants[1:], start=1):
        check_array(arr, f"resultants[{i}]", np.float32, 2, first.shape)
    r0, r1, c0, c1 = _window(first.shape, rows, cols)
    want = (c1 - c0) if per_column else (r1 - r0)
    check_array(thresholds, "thresholds", np.float32, 1, (want,))
    out = np.empty(r1 - r0, np.float64)
    _decay.clipped_row_means(
        *resultants, float(dt[0]), float(dt[1]), thresholds, bool(per_column),
        r0, r1, c0, c1, float(sigma), int(maxiters), out, effective_n_threads(n_threads),
    )
    return out
