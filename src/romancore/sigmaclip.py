"""Sigma-clipping bounds of astropy's median / ``mad_std`` clip, from sorted values."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from romancore import _sigmaclip
from romancore._threads import effective_n_threads

__all__ = ["clipped_stats_rows", "mean_std", "sigma_clip_bounds", "sigma_clip_bounds_rows"]


def _check(sigma_lower: float, sigma_upper: float, maxiters: int | None) -> int:
    for name, value in (("sigma_lower", sigma_lower), ("sigma_upper", sigma_upper)):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    if maxiters is None:
        return -1
    if int(maxiters) != maxiters or maxiters < 1:
        raise ValueError(f"maxiters must be a positive integer or None, got {maxiters!r}")
    return int(maxiters)


def _sorted_finite(row: np.ndarray) -> np.ndarray:
    values = row[np.isfinite(row)]
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    values.sort()  # numpy's sort releases the GIL: rows sort in parallel
    return values


def _bounds(row: np.ndarray, sigma_lower: float, sigma_upper: float, iters: int
            ) -> tuple[float, float]:
    return _sigmaclip.clip_bounds_sorted(_sorted_finite(row), sigma_lower, sigma_upper,
                                         iters)


def _stats(row: np.ndarray, sigma_lower: float, sigma_upper: float, iters: int
           ) -> tuple[float, float, float, float, int]:
    return _sigmaclip.clipped_stats_sorted(_sorted_finite(row), sigma_lower, sigma_upper,
                                           iters)


def _per_row(function: Any, data: np.ndarray, sigma_lower: float, sigma_upper: float,
             maxiters: int | None, n_threads: int | None) -> list[Any]:
    """``function(row, lower, upper, iters)`` for every row of 2-D ``data``."""
    iters = _check(sigma_lower, sigma_upper, maxiters)
    if data.ndim != 2:
        raise ValueError(f"data must be 2-D (rows of values), got shape {data.shape}")
    lo, hi = float(sigma_lower), float(sigma_upper)
    threads = min(effective_n_threads(n_threads), max(len(data), 1))
    if threads == 1:
        return [function(row, lo, hi, iters) for row in data]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda row: function(row, lo, hi, iters), data))


def sigma_clip_bounds(
    values: np.ndarray,
    sigma_lower: float = 3.0,
    sigma_upper: float = 3.0,
    maxiters: int | None = 10,
) -> tuple[float, float]:
    """Return the final bounds of ``astropy.stats.SigmaClip`` with median and mad_std.

    The same numbers, bit for bit, as the bounds of ``SigmaClip(sigma_lower=...,
    sigma_upper=..., maxiters=..., cenfunc="median", stdfunc="mad_std")`` (its
    compiled path): iterate centre = median, spread = 1.482602218505602 x MAD, keep
    ``[centre - sigma_lower spread, centre + sigma_upper spread]``, until nothing
    changes, nothing is left or ``maxiters``. Non-finite values are ignored. Values
    are sorted once; each iteration is then O(n) with no selection.

    Parameters
    ----------
    values : numpy.ndarray
        Values (any shape; flattened).
    sigma_lower, sigma_upper : float, optional
        Clipping limits in units of the spread.
    maxiters : int or None, optional
        Maximum number of iterations; None: until convergence.

    Returns
    -------
    lower, upper : float
        The bounds; a value ``v`` is kept when ``lower <= v <= upper``. NaN when no
        value is finite.

    Raises
    ------
    ValueError
        For negative or non-finite limits or a non-positive ``maxiters``.
    """
    iters = _check(sigma_lower, sigma_upper, maxiters)
    return _bounds(np.ravel(np.asarray(values)), float(sigma_lower), float(sigma_upper),
                   iters)


def sigma_clip_bounds_rows(
    data: np.ndarray,
    sigma_lower: float = 3.0,
    sigma_upper: float = 3.0,
    maxiters: int | None = 10,
    *,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return :func:`sigma_clip_bounds` of every row of a 2-D array.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_rows, n)
        Values; each row is clipped on its own.
    sigma_lower, sigma_upper, maxiters
        As :func:`sigma_clip_bounds`.
    n_threads : int or None, optional
        Rows processed at once (see :func:`romancore.effective_n_threads`); the
        result does not depend on it.

    Returns
    -------
    lower, upper : numpy.ndarray of float64, shape (n_rows,)
        The bounds of each row.

    Raises
    ------
    ValueError
        If ``data`` is not 2-D, or for the arguments of :func:`sigma_clip_bounds`.
    """
    data = np.asarray(data)
    pairs = _per_row(_bounds, data, sigma_lower, sigma_upper, maxiters, n_threads)
    out = np.array(pairs, dtype=np.float64).reshape(len(data), 2)
    return out[:, 0].copy(), out[:, 1].copy()


def clipped_stats_rows(
    data: np.ndarray,
    sigma_lower: float = 3.0,
    sigma_upper: float = 3.0,
    maxiters: int | None = 10,
    *,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, standard deviation and count of what the clip keeps, row by row.

    Each row is clipped as :func:`sigma_clip_bounds_rows` clips it (astropy's median /
    mad_std ``SigmaClip``; a value is kept when it is finite and within the final
    bounds), and the kept values are described from the row's values sorted once:
    what ``numpy.nanmedian``, ``numpy.nanstd`` and ``numpy.count_nonzero(~isnan)``
    give on the clipped row (NaN outside the bounds), without a second selection.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_rows, n)
        Values; each row is clipped on its own.
    sigma_lower, sigma_upper, maxiters
        As :func:`sigma_clip_bounds`.
    n_threads : int or None, optional
        Rows processed at once; the result does not depend on it.

    Returns
    -------
    median : numpy.ndarray, shape (n_rows,)
        In ``data``'s floating dtype (float64 for other dtypes); equal to numpy's
        median of the kept values (the two middle values averaged in that dtype).
    std : numpy.ndarray, shape (n_rows,)
        Population standard deviation of the kept values, accumulated in double and
        rounded to the dtype of ``median`` (numpy's float32 reduction can differ by a
        few units in the last place).
    count : numpy.ndarray of int64, shape (n_rows,)
        Number of values kept. Rows with none have NaN median and std.

    Raises
    ------
    ValueError
        If ``data`` is not 2-D, or for the arguments of :func:`sigma_clip_bounds`.
    """
    data = np.asarray(data)
    rows = _per_row(_stats, data, sigma_lower, sigma_upper, maxiters, n_threads)
    dtype = data.dtype if data.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    table = np.array([r[2:4] for r in rows], dtype=np.float64).reshape(len(data), 2)
    count = np.array([r[4] for r in rows], dtype=np.int64)
    return table[:, 0].astype(dtype), table[:, 1].astype(dtype), count


def mean_std(values: np.ndarray, n_threads: int | None = None) -> tuple[float, float]:
    """Return the mean and standard deviation (ddof 0) of values, in float64.

    Two passes as ``numpy.std(values, dtype=float64)``, summed by blocks of 4096
    values, without numpy's full-size float64 temporaries.

    Parameters
    ----------
    values : numpy.ndarray
        float32 or float64 values (flattened; copied only if not contiguous).
    n_threads : int or None, optional
        Threads summing the blocks; the result does not depend on it (each block is
        summed in order, the blocks' sums added in order).

    Returns
    -------
    tuple of float
        ``(mean, std)``; NaN for no values.
    """
    array = np.asarray(values)
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    return _sigmaclip.mean_std(np.ascontiguousarray(array.ravel()),
                               effective_n_threads(n_threads))  # fmt: skip
