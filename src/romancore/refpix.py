"""Kernels of the reference-pixel correction with the REFPIX reference (romancal 1.1).

The per-pixel passes of the correction over whole resultants: the offset (each
pixel's mean over the resultants) and the subtraction of each channel's linear trend
in read-out time. The trend fits (on the eight reference rows), the amp33
interpolation and the Fourier-domain corrections stay in
``romancal_lite.steps.refpix.reference_correction``.
"""

from __future__ import annotations

import numpy as np

from romancore import _refpix
from romancore._threads import effective_n_threads
from romancore._validation import check_array, check_writeable

__all__ = [
    "CHANNEL_WIDTH",
    "mean_over_resultants",
    "scan_rows",
    "subtract_channel_correction",
    "subtract_channel_trends",
]

#: Columns per read-out channel.
CHANNEL_WIDTH = 128


def mean_over_resultants(cube: np.ndarray, *, n_threads: int | None = None) -> np.ndarray:
    """Return each pixel's mean over its finite resultants.

    romancal 1.1 ``StandardView.remove_offset`` removes the least-squares intercept at
    the centred resultant index, which is the mean. The sum is taken in float32 in
    resultant order and divided by the float32 count (what NumPy's ``total += plane``
    loop gives); non-finite resultants are left out, and a pixel with none finite gets 0.

    Parameters
    ----------
    cube : numpy.ndarray of float32, (n, ny, nx), C-contiguous
        The resultants.
    n_threads : int or None, optional
        Threads to use (see :func:`romancore.effective_n_threads`).

    Returns
    -------
    numpy.ndarray of float32, (ny, nx)
        The means.

    Raises
    ------
    ValueError
        For an array of the wrong dtype, dimensions or layout.
    """
    check_array(cube, "cube", np.float32, 3)
    out = np.empty(cube.shape[1:], dtype=np.float32)
    _refpix.mean_over_resultants(cube, out, effective_n_threads(n_threads))
    return out


def subtract_channel_trends(
    plane: np.ndarray,
    offset: np.ndarray | None,
    read_pos: np.ndarray,
    slope: np.ndarray,
    intercept: np.ndarray,
    row_time: np.ndarray,
    *,
    n_threads: int | None = None,
) -> None:
    """Subtract each channel's line in read-out time from one resultant, in place.

    For column ``x`` of channel ``c = x // 128``, sampled at read position
    ``read_pos[x]`` of row ``y`` whose first sample is at time ``row_time[y]``:
    ``plane[y, x] -= row_time[y] m_c + (m_c read_pos[x] + b_c)``, evaluated in double
    precision and stored as float32; samples equal to their ``offset`` (or to 0
    without one), romancal's "no sample", are left alone (romancal 1.1
    ``remove_trends``).

    Parameters
    ----------
    plane : numpy.ndarray of float32, (ny, nx), C-contiguous, writeable
        One resultant; ``nx`` a multiple of 128.
    offset : numpy.ndarray of float32, (ny, nx), C-contiguous, or None
        Each pixel's offset (its value where nothing was sampled).
    read_pos : numpy.ndarray of int, (nx,)
        Read position (0..127) of every column.
    slope, intercept : numpy.ndarray of float64, (nx // 128,)
        Each channel's line (per sample of read-out time).
    row_time : numpy.ndarray of float64, (ny,)
        Time of each row's first sample (centred).
    n_threads : int or None, optional
        Threads to use (see :func:`romancore.effective_n_threads`).

    Raises
    ------
    ValueError
        For arrays of the wrong dtype, shape or layout.
    """
    check_array(plane, "plane", np.float32, 2)
    check_writeable(plane, "plane")
    ny, nx = plane.shape
    if nx % CHANNEL_WIDTH:
        raise ValueError(f"plane must have whole {CHANNEL_WIDTH}-column channels, got {nx}")
    nch = nx // CHANNEL_WIDTH
    if offset is not None:
        check_array(offset, "offset", np.float32, 2, (ny, nx))
    read_pos = np.asarray(read_pos)
    if read_pos.shape != (nx,) or not np.issubdtype(read_pos.dtype, np.integer):
        raise ValueError(f"read_pos must be {nx} integers")
    check_array(slope, "slope", np.float64, 1, (nch,))
    check_array(intercept, "intercept", np.float64, 1, (nch,))
    check_array(row_time, "row_time", np.float64, 1, (ny,))
    # per column, as numpy broadcasts them: m_c and m_c j_x + b_c
    col_slope = np.repeat(slope, CHANNEL_WIDTH)
    col_const = col_slope * read_pos + np.repeat(intercept, CHANNEL_WIDTH)
    _refpix.subtract_channel_trends(
        plane, plane if offset is None else offset, offset is not None, col_slope,
        np.ascontiguousarray(col_const, dtype=np.float64), row_time,
        effective_n_threads(n_threads),
    )


#: The real type each accepted dtype of `scan_rows` is read as.
_SCAN_TYPES = {np.dtype(np.complex64): np.float32, np.dtype(np.complex128): np.float64,
               np.dtype(np.float32): np.float32, np.dtype(np.float64): np.float64}


def scan_rows(rows: np.ndarray, *, n_threads: int | None = None) -> np.ndarray:
    """Say, for each row of a 2-D array, whether it is finite, non-zero and equal to row 0.

    One read of every value (what ``np.isfinite(row).all()``, ``np.any(row)`` and
    ``np.array_equal(row, rows[0])`` tell about a row of finite values): used to check
    the REFPIX reference's coefficient rows.

    Parameters
    ----------
    rows : numpy.ndarray, (n, m), C-contiguous rows
        Real (float32, float64) or complex (complex64, complex128) values; a complex
        value counts as its real and imaginary parts.
    n_threads : int or None, optional
        Threads to use (see :func:`romancore.effective_n_threads`).

    Returns
    -------
    numpy.ndarray of bool, (n, 3)
        Per row: every value finite; some value non-zero; every value equal to the
        value of row 0 at the same place (a row with a NaN is never equal).

    Raises
    ------
    ValueError
        For an array of another dtype, dimension or layout.
    """
    if not isinstance(rows, np.ndarray) or rows.ndim != 2:
        raise ValueError("rows must be a 2-D numpy array")
    real = _SCAN_TYPES.get(rows.dtype)
    if real is None:
        raise ValueError(f"rows must be native float32/64 or complex64/128, got {rows.dtype}")
    flags = np.zeros((rows.shape[0], 3), dtype=np.int8)
    if rows.size:
        # a complex row as its real and imaginary parts (a copy only if not contiguous)
        values = np.ascontiguousarray(rows).view(real)
        _refpix.scan_rows(values, flags, effective_n_threads(n_threads))
    elif rows.shape[0]:
        flags[:] = (1, 0, 1)  # empty rows: finite, zero, equal
    return flags.astype(bool)


def subtract_channel_correction(
    data: np.ndarray,
    correction: np.ndarray,
    first_channel: int | None = None,
    *,
    n_threads: int | None = None,
) -> None:
    """Subtract channels' correction time series from their columns, in place.

    ``correction[g, k]`` is the series of channel ``first_channel + g`` for resultant
    ``k`` in read-out order: ``ny`` rows of ``row_samples`` samples (128 read positions
    then the pause). Column ``x`` of a channel was sampled at read position
    ``x mod 128`` in even channels and ``127 - x mod 128`` in odd ones (read right to
    left). The difference is float32, as NumPy's ``data -= series``.

    Parameters
    ----------
    data : numpy.ndarray of float32, (n, ny, nx), C-contiguous, writeable
        The resultants; ``nx`` a multiple of 128.
    correction : numpy.ndarray of float32, (g, n, ny * row_samples), C-contiguous
        The series of ``g`` consecutive channels, ``row_samples >= 128``.
    first_channel : int or None, optional
        The channel (0-based) of ``correction[0]``; None: ``g`` must be 1 and every
        channel gets that series.
    n_threads : int or None, optional
        Threads to use (see :func:`romancore.effective_n_threads`).

    Raises
    ------
    ValueError
        For arrays of the wrong dtype, shape or layout, or channels out of range.
    """
    check_array(data, "data", np.float32, 3)
    check_writeable(data, "data")
    n, ny, nx = data.shape
    if nx % CHANNEL_WIDTH:
        raise ValueError(f"data must have whole {CHANNEL_WIDTH}-column channels, got {nx}")
    check_array(correction, "correction", np.float32, 3)
    g, n_corr, length = correction.shape
    if n_corr != n or length % ny:
        raise ValueError(f"correction has shape {correction.shape}, expected (g, {n}, ny * s)")
    row_samples = length // ny
    if row_samples < CHANNEL_WIDTH:
        raise ValueError(f"correction rows have {row_samples} samples, fewer than 128")
    nch = nx // CHANNEL_WIDTH
    if first_channel is None:
        if g != 1:
            raise ValueError("one series for every channel needs correction.shape[0] == 1")
    elif not (0 <= first_channel and first_channel + g <= nch):
        raise ValueError(f"channels {first_channel}..{first_channel + g - 1} are outside"
                         f" 0..{nch - 1}")
    _refpix.subtract_channel_correction(
        data, correction, row_samples, -1 if first_channel is None else int(first_channel),
        effective_n_threads(n_threads),
    )
