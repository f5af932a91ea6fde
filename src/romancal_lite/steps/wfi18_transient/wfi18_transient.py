"""Removal of the first-read transient of detector WFI18 (``wfi18_transient``).

WFI18's first read carries an extra signal that decays along the read-out, so it is
largest in the first rows read. Following romancal 1.1 (``romancal/wfi18_transient/
wfi18_transient.py``), on the science pixels (the 4-pixel border excluded):

1. the first resultant's expected value is extrapolated from the 2nd and 3rd,
   ``r = (R_2 - R_1) / (t_2 - t_1)``, ``E_0 = R_1 - r (t_1 - t_0)`` (``t_i`` the mean
   read time of resultant ``i``), and the residual ``R_0 - E_0`` formed;
2. the weakly illuminated pixels are those whose ``R_4 - R_3`` is at most a median
   of ``R_4 - R_3``; per row, the residual is averaged over them with a 3-sigma clip
   (astropy ``sigma_clipped_stats``: median centre, standard deviation, at most 5
   passes). romancal 1.1 means the pixel's own row median, but its expression
   ``diff > np.median(diff, axis=1)`` broadcasts the row medians along the columns,
   so on its (square, 4088 x 4088) science array pixel ``(y, x)`` is compared with
   the median of row ``x``. That is reproduced on square science arrays, so that the
   results agree with romancal's; on other shapes (which romancal cannot process)
   the row's own median is used;
3. the row means are fitted, against the row's mean read time (`_readout`), by
   ``a exp(-t / tau_a) + b exp(-t / tau_b)`` (scipy ``curve_fit``) from the guess
   ``(1.1 m_0, -0.1 m_0, t_row[300], t_row[1000])``;
4. the fitted curve, evaluated at each pixel's read time, is subtracted from the
   first resultant.

With fewer than 5 resultants, when asked (``mask_rows``) or when the fit fails, the
fall-back instead flags the first 1000 rows of the first resultant ``DO_NOT_USE |
WFI18_TRANSIENT`` in ``groupdq``.

The per-row statistics and the subtraction are compiled (`romancore.decay`, rows
over threads): no temporary of a frame's size.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from romancore.decay import clipped_row_means, row_medians, subtract_periodic
from romancore.dqflags import group

from .._readout import FULL_ROWS, PERIOD, read_time_period

__all__ = [
    "MASK_FLAGS",
    "MASKED_ROWS",
    "MIN_RESULTANTS",
    "TransientResult",
    "correct_anomaly",
    "double_exponential",
    "mask_affected_rows",
    "resultant_times",
    "row_residuals",
]

#: Border of reference pixels left out of the fit and the correction.
_BORDER = 4
#: Rows of the first resultant flagged by the fall-back (romancal 1.1: rows 0-999).
MASKED_ROWS = 1000
#: groupdq flags of the fall-back.
MASK_FLAGS = np.uint8(int(group.DO_NOT_USE) | 128)  # 128: WFI18_TRANSIENT (RAD group)
#: Fewer resultants than this: the fall-back (the estimate needs resultants 0 ... 4).
MIN_RESULTANTS = 5
#: Science rows of the starting guess's time constants (romancal 1.1: t_row[300], [1000]).
_GUESS_ROWS = (300, 1000)
#: Rows of the correction's column period evaluated at a time (temporaries of 256 kB).
_CURVE_ROWS = 128


@dataclass
class TransientResult:
    """What `correct_anomaly` did.

    Attributes
    ----------
    corrected : bool
        True if the fitted transient was subtracted, False if rows were masked.
    reason : str
        Why the rows were masked ("" when corrected).
    parameters : tuple of float or None
        Fitted ``(a, b, tau_a, tau_b)`` when corrected.
    """

    corrected: bool
    reason: str = ""
    parameters: tuple[float, float, float, float] | None = None


def mask_affected_rows(groupdq: np.ndarray) -> None:
    """Flag the first 1000 rows of the first resultant ``DO_NOT_USE | WFI18_TRANSIENT``.

    Parameters
    ----------
    groupdq : numpy.ndarray of uint8, (n_resultants, ny, nx)
        Updated in place.
    """
    groupdq[0, :MASKED_ROWS, :] |= MASK_FLAGS


def double_exponential(
    t: np.ndarray, a: float, b: float, tau_a: float, tau_b: float
) -> np.ndarray:
    """Return ``a exp(-t / tau_a) + b exp(-t / tau_b)``.

    Parameters
    ----------
    t : numpy.ndarray
        Times (s).
    a, b : float
        Amplitudes.
    tau_a, tau_b : float
        Time constants (s).

    Returns
    -------
    numpy.ndarray
        The curve at ``t``.
    """
    return a * np.exp(-t / tau_a) + b * np.exp(-t / tau_b)


def resultant_times(read_pattern: Sequence[Sequence[int]], frame_time: float) -> np.ndarray:
    """Return the mean read time (s) of each resultant: mean of ``k * frame_time``.

    Parameters
    ----------
    read_pattern : sequence of sequence of int
        Reads of each resultant.
    frame_time : float
        Frame time (s).

    Returns
    -------
    numpy.ndarray of float64
        One time per resultant.
    """
    return np.array([np.mean([r * frame_time for r in reads]) for reads in read_pattern])


def _row_times(period: np.ndarray, rows: slice, nx: int) -> np.ndarray:
    """Mean read time of frame rows ``rows`` over the science columns 4 ... nx - 5.

    Each period column weighted by how often it occurs among those columns (no
    frame-sized temporary; equal to the mean over the full map to rounding).
    """
    weights = np.bincount(np.arange(_BORDER, nx - _BORDER) % PERIOD, minlength=PERIOD)
    return period[rows] @ weights.astype(np.float64) / (nx - 2 * _BORDER)


def row_residuals(data: np.ndarray, t_resultant: np.ndarray) -> np.ndarray:
    """Return, per science row, the clipped mean first-resultant residual (steps 1-2).

    Parameters
    ----------
    data : numpy.ndarray of float32, (n_resultants >= 5, ny, nx), C-contiguous
        The ramp (DN), not modified.
    t_resultant : numpy.ndarray of float64
        Mean read time of each resultant (`resultant_times`).

    Returns
    -------
    numpy.ndarray of float64, (ny - 8,)
        Clipped mean residual of each science row (NaN for a row with no usable pixel).
    """
    ny, nx = data.shape[1:]
    b = _BORDER
    rows, cols = (b, ny - b), (b, nx - b)
    diff_time = np.diff(t_resultant)
    # weakly illuminated: R4 - R3 not above a median of R4 - R3 (module docstring:
    # romancal's threshold of pixel (y, x) on its square science array is the median
    # of row x)
    medians = row_medians(data[4], data[3], rows, cols)
    return clipped_row_means(
        tuple(data[:5]), (diff_time[0], diff_time[1]), medians, ny == nx, rows, cols,
        sigma=3.0, maxiters=5,
    )


def _fit(t_row: np.ndarray, means: np.ndarray, guess: list[float]) -> np.ndarray | None:
    """Fit the double exponential; None if scipy cannot."""
    from scipy import optimize

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optimize.OptimizeWarning)
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            params, _ = optimize.curve_fit(double_exponential, t_row, means, p0=guess)
    except (ValueError, RuntimeError, TypeError):
        # ValueError: NaN/inf values; RuntimeError: no convergence; TypeError: fewer
        # rows than parameters
        return None
    if not np.all(np.isfinite(params)):
        return None
    return params


def correct_anomaly(
    data: np.ndarray,
    groupdq: np.ndarray,
    frame_time: float,
    read_pattern: Sequence[Sequence[int]],
    mask_rows: bool = False,
) -> TransientResult:
    """Remove WFI18's first-read transient from a ramp, or flag the rows it affects.

    Parameters
    ----------
    data : numpy.ndarray of float32, (n_resultants, ny, nx), C-contiguous
        The ramp (DN); its first resultant's science pixels are corrected in place.
        ``ny <= 4096`` (a smaller frame is the lower-left corner of a full one).
    groupdq : numpy.ndarray of uint8, (n_resultants, ny, nx)
        Flagged in place by the fall-back.
    frame_time : float
        Frame time (s).
    read_pattern : sequence of sequence of int
        Reads of each resultant.
    mask_rows : bool, optional
        Flag the rows instead of fitting.

    Returns
    -------
    TransientResult
        Whether the transient was fitted and subtracted, or the rows flagged and why.
    """
    if data.ndim != 3 or groupdq.shape != data.shape:
        raise ValueError(
            f"data {data.shape} and groupdq {groupdq.shape} must be the same 3-D shape"
        )
    if len(read_pattern) != data.shape[0]:
        raise ValueError(
            f"the read pattern has {len(read_pattern)} resultants, the data {data.shape[0]}"
        )
    ny, nx = data.shape[1:]
    if ny > FULL_ROWS:
        raise ValueError(f"a WFI frame has at most {FULL_ROWS} rows, got {ny}")
    if mask_rows:
        mask_affected_rows(groupdq)
        return TransientResult(False, "masking requested (mask_rows)")
    if data.shape[0] < MIN_RESULTANTS:
        mask_affected_rows(groupdq)
        return TransientResult(
            False, f"{data.shape[0]} resultants (the fit needs {MIN_RESULTANTS})"
        )
    b = _BORDER
    if ny - 2 * b < 4 or nx - 2 * b < 1:
        mask_affected_rows(groupdq)
        return TransientResult(False, f"too few science rows ({max(ny - 2 * b, 0)}) to fit")
    means = row_residuals(data, resultant_times(read_pattern, frame_time))
    # after the compiled kernels: the product in _row_times may wake BLAS threads, whose
    # waiting for more work would take cores from the kernels' threads
    period = read_time_period(frame_time, 18)
    t_row = _row_times(period, slice(b, ny - b), nx)
    # the starting guess's time constants: those of science rows 300 and 1000 of a full
    # frame (the same rows whatever the frame's size)
    t_guess = [
        float(_row_times(period, slice(b + r, b + r + 1), FULL_ROWS)[0]) for r in _GUESS_ROWS
    ]
    m0 = float(means[0])
    params = _fit(t_row, means, [m0 * 1.1, m0 * -0.1, *t_guess])
    if params is None:
        mask_affected_rows(groupdq)
        return TransientResult(False, "the transient fit failed")
    a, bb, tau_a, tau_b = (float(p) for p in params)
    # the fitted curve at each pixel's read time, on one column period (in blocks of
    # rows, so that the temporaries stay small and in cache: the same values)
    correction = np.empty((ny, PERIOD))
    for r0 in range(0, ny, _CURVE_ROWS):
        r1 = min(r0 + _CURVE_ROWS, ny)
        correction[r0:r1] = double_exponential(period[r0:r1], a, bb, tau_a, tau_b)
    subtract_periodic(data[0], correction, (b, ny - b), (b, nx - b))
    return TransientResult(True, parameters=(a, bb, tau_a, tau_b))
