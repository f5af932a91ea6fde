"""Public wrapper of the Casertano (2022) ramp fit with queue-based jump detection."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from romancore._threads import effective_n_threads
from romancore._validation import check_array, check_writeable
from romancore.ramp import _fit
from romancore.ramp._tables import FitTables, build_tables
from romancore.ramp.finish import RateImages
from romancore.readpattern import read_pattern_metadata, validate_read_pattern

__all__ = ["RampFitResult", "fit_ramps", "fit_rate_images"]


class RampFitResult(NamedTuple):
    """Outputs of :func:`fit_ramps`.

    Attributes
    ----------
    slope : numpy.ndarray of float32, shape (ny, nx)
        Count rate in the units of the resultants per second (e/s for electrons).
    var_read : numpy.ndarray of float32, shape (ny, nx)
        Read-noise variance of the slope.
    var_poisson : numpy.ndarray of float32, shape (ny, nx)
        Poisson variance of the slope (already scaled by ``max(slope, 0)``).
    groupdq : numpy.ndarray of uint8, shape (n_resultants, ny, nx)
        The caller's group DQ array (the same object), with JUMP_DET set on the
        resultants of every detected jump.
    """

    slope: np.ndarray
    var_read: np.ndarray
    var_poisson: np.ndarray
    groupdq: np.ndarray


def _pattern_key(read_pattern: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """Return the validated read pattern as a hashable key (ValueError if invalid)."""
    return tuple(tuple(reads) for reads in validate_read_pattern(read_pattern))


@functools.lru_cache(maxsize=16)
def _tables_for(pattern: tuple[tuple[int, ...], ...], frame_time: float) -> FitTables:
    """Tables of a read pattern, built once: callers fit many row blocks with one pattern."""
    tables = build_tables(read_pattern_metadata(pattern, frame_time))
    for array in tables:
        array.setflags(write=False)  # shared between calls; the kernel only reads them
    return tables


def _checked_tables(read_noise: np.ndarray, read_pattern: Sequence[Sequence[int]],
                    frame_time: float, n: int, threshold_intercept: float,
                    threshold_constant: float) -> FitTables:
    """Check the fit's arguments shared by both entry points; return the pattern's tables."""
    if np.any(read_noise < 0):
        raise ValueError("read_noise must be >= 0 (or NaN for unknown)")
    tables = _tables_for(_pattern_key(read_pattern), float(frame_time))
    if len(tables.t_bar32) != n:
        raise ValueError(f"read_pattern has {len(tables.t_bar32)} resultants but data has {n}")
    for name, value in (("threshold_intercept", threshold_intercept),
                        ("threshold_constant", threshold_constant)):
        if not np.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    return tables


def fit_ramps(
    resultants: np.ndarray,
    groupdq: np.ndarray,
    read_noise: np.ndarray | float,
    read_pattern: Sequence[Sequence[int]],
    frame_time: float,
    *,
    use_jump: bool = True,
    threshold_intercept: float = 5.5,
    threshold_constant: float = 1 / 3,
    n_threads: int | None = None,
) -> RampFitResult:
    """Fit up-the-ramp count rates to uneven resultants (Casertano et al. 2022).

    Implements romancal's ``ols_cas22`` ramp fit (``seeds/000:1190-1258``) and, with
    ``use_jump``, its queue-based jump detection (``seeds/000:1262-1306``):

    1. A pixel's ramp is split into *segments*, the runs of resultants whose group DQ
       is 0 (any flag, e.g. SATURATED, DO_NOT_USE or an earlier JUMP_DET, ends a run).
       A NaN or infinite resultant is first flagged DO_NOT_USE in ``groupdq``, so the
       ramp is split around it like around any flagged resultant.
    2. Each segment of two or more resultants is fitted with the optimal weights
       ``W_i = (1 + P) N_i / (1 + P N_i) |t_i - t_mid|^P``, P chosen from the segment's
       signal-to-noise ``S = (R_last - R_first) / sqrt(RN^2 + R_last - R_first)``
       (Table 2), giving the slope ``sum K_i R_i``, the read variance
       ``RN^2 sum K_i^2 / N_i`` and the Poisson variance per unit slope.
    3. With ``use_jump``, each fitted segment is tested: the single- and
       double-difference statistics (see ``romancore/ramp/_jump.pxd``) give
       ``S = max_i s_i``; if ``S > intercept - constant log10(slope)`` (slope clamped to
       [1, 1e4]) both candidate resultants get JUMP_DET and the sub-segments before and
       after them go back on the queue, until the queue is empty.
    4. Segments combine with weights ``1 / V_R``; the slope is their weighted mean, the
       read variance ``1 / sum(1 / V_R)``, the Poisson variance
       ``sum w^2 V_S / (sum w)^2`` times ``max(slope, 0)``.

    Special cases: a single-resultant segment carries no weight; a pixel with no usable
    segment (all resultants flagged or non-finite, a single resultant, or NaN read
    noise) gets NaN
    slope and variances; a pixel with zero read noise combines its segments with equal
    weights and has zero read variance.  Where the seed is ambiguous (the jump
    threshold comparison, ``2 min(t)`` in the difference variance, the correction term,
    the last-pair special case), the behaviour is that of stcal 1.20.  The differences
    from stcal 1.20 are listed in ``docs/romancore.md``: stcal returns 0, not NaN, for a
    pixel with no usable segment and for zero read noise.

    Parameters
    ----------
    resultants : numpy.ndarray of float32, shape (n_resultants, ny, nx)
        Resultants in electrons, C-contiguous.  Not modified.
    groupdq : numpy.ndarray of uint8, shape (n_resultants, ny, nx)
        Group DQ; JUMP_DET is OR-ed in place where jumps are found, DO_NOT_USE on
        every NaN or infinite resultant.
    read_noise : float or numpy.ndarray of shape (ny, nx)
        Read noise per read in electrons (>= 0 or NaN).
    read_pattern : sequence of sequences of int
        1-based read numbers of each resultant (integers; validated as by
        `romancore.read_pattern_metadata`).
    frame_time : float
        Seconds between reads.
    use_jump : bool, optional
        Run jump detection inside the fit (default True).
    threshold_intercept, threshold_constant : float, optional
        Parameters of the jump threshold (defaults 5.5 and 1/3).
    n_threads : int or None, optional
        Threads to use (see :func:`romancore.effective_n_threads`); results do not
        depend on it.

    Returns
    -------
    RampFitResult
        ``slope``, ``var_read``, ``var_poisson`` and the updated ``groupdq``.

    Raises
    ------
    ValueError
        For arrays of the wrong dtype, shape or layout, negative read noise, or a read
        pattern that is invalid or does not match the number of resultants.
    """
    check_array(resultants, "resultants", np.float32, 3)
    n, ny, nx = resultants.shape
    check_array(groupdq, "groupdq", np.uint8, 3, resultants.shape)
    check_writeable(groupdq, "groupdq")
    if np.ndim(read_noise) == 0:
        read_noise = np.full((ny, nx), read_noise, dtype=np.float32)
    read_noise = np.ascontiguousarray(read_noise, dtype=np.float32)
    check_array(read_noise, "read_noise", np.float32, 2, (ny, nx))
    tables = _checked_tables(read_noise, read_pattern, frame_time, n,
                             threshold_intercept, threshold_constant)
    slope = np.empty((ny, nx), dtype=np.float32)
    var_read = np.empty((ny, nx), dtype=np.float32)
    var_poisson = np.empty((ny, nx), dtype=np.float32)
    _fit.fit(
        resultants,
        groupdq,
        read_noise,
        tables.k,
        tables.k_offset,
        tables.var_read,
        tables.var_poisson,
        tables.jump,
        tables.t_bar32,
        slope,
        var_read,
        var_poisson,
        bool(use_jump),
        float(threshold_intercept),
        float(threshold_constant),
        effective_n_threads(n_threads),
    )
    return RampFitResult(slope, var_read, var_poisson, groupdq)


def fit_rate_images(
    data: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    gain: np.ndarray,
    read_noise: np.ndarray,
    read_pattern: Sequence[Sequence[int]],
    frame_time: float,
    uniform_weights: np.ndarray,
    *,
    use_jump: bool = True,
    threshold_intercept: float = 5.5,
    threshold_constant: float = 1 / 3,
    update_groupdq: bool = True,
    out: RateImages | None = None,
    n_threads: int | None = None,
) -> RateImages:
    """Fit DN ramps and return romancal 1.1's DN/s images, in one fused pass.

    For every row (OpenMP): the resultants and the read noise are converted to
    electrons with the gain (``data * g`` in float32; ``g = 1`` where the gain is not
    finite or ``<= 0``) in a per-thread row buffer, fitted exactly as
    :func:`fit_ramps` fits them (Casertano et al. 2022 with the queue-based jump
    detection), and finished as :func:`romancore.finish_ramp_fit` finishes them
    (DN/s, variances, ``err``, the DQ collapse, ``dumo``). The results are
    bit-identical to ``fit_ramps(data * g, ...)`` followed by ``finish_ramp_fit``,
    for any thread count, with no full-size temporary.

    Parameters
    ----------
    data : numpy.ndarray of float32, shape (n, ny, nx)
        Resultants in DN (any strides, e.g. the science columns of a ramp). Not
        modified.
    groupdq : numpy.ndarray of uint8, shape (n, ny, nx)
        Group DQ (any strides); with ``update_groupdq``, JUMP_DET (and DO_NOT_USE on
        non-finite resultants) is written back.
    pixeldq : numpy.ndarray of uint32, shape (ny, nx)
        Pixel DQ (any strides).
    gain, read_noise : numpy.ndarray, shape (ny, nx)
        Electrons per DN and read noise per read in DN (converted to float32).
    read_pattern : sequence of sequences of int
        1-based read numbers of each resultant.
    frame_time : float
        Seconds between reads.
    uniform_weights : numpy.ndarray, shape (n,)
        Weights of the uniform slope for ``dumo`` (float64).
    use_jump, threshold_intercept, threshold_constant
        As :func:`fit_ramps`.
    update_groupdq : bool, optional
        Write the jump flags back into ``groupdq`` (default True).
    out : RateImages, optional
        C-contiguous (ny, nx) arrays to write into (float32, ``dq`` uint32).
    n_threads : int or None, optional
        Threads (see :func:`romancore.effective_n_threads`); results do not depend on it.

    Returns
    -------
    RateImages
        ``out`` or new images.

    Raises
    ------
    ValueError
        For arrays of the wrong dtype or shape, negative read noise, or a read
        pattern that is invalid or does not match ``data``.
    """
    for name, arr, dtype, ndim in (("data", data, np.float32, 3),
                                   ("groupdq", groupdq, np.uint8, 3),
                                   ("pixeldq", pixeldq, np.uint32, 2)):
        if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.ndim != ndim:
            raise ValueError(f"{name} must be a {ndim}-D {np.dtype(dtype)} array")
        if arr.size == 0:
            raise ValueError(f"{name} is empty (shape {arr.shape})")
    n, ny, nx = data.shape
    if groupdq.shape != data.shape or pixeldq.shape != (ny, nx):
        raise ValueError(f"groupdq {groupdq.shape} and pixeldq {pixeldq.shape} do not match "
                         f"data {data.shape}")
    if data.strides[0] % data.itemsize:
        raise ValueError("data's resultant stride must be a whole number of elements")
    if update_groupdq:
        check_writeable(groupdq, "groupdq")
    gain = np.asarray(gain, dtype=np.float32)
    read_noise = np.asarray(read_noise, dtype=np.float32)
    for name, arr in (("gain", gain), ("read_noise", read_noise)):
        if arr.shape != (ny, nx):
            raise ValueError(f"{name} has shape {arr.shape}, expected {(ny, nx)}")
    tables = _checked_tables(read_noise, read_pattern, frame_time, n,
                             threshold_intercept, threshold_constant)
    weights = np.ascontiguousarray(uniform_weights, dtype=np.float64)
    if weights.shape != (n,):
        raise ValueError(f"uniform_weights must have {n} values")
    if out is None:
        out = RateImages(*(np.empty((ny, nx), np.uint32 if name == "dq" else np.float32)
                           for name in RateImages._fields))
    for name, arr in out._asdict().items():
        check_array(arr, name, np.uint32 if name == "dq" else np.float32, 2, (ny, nx))
    _fit.fit_rates(
        data, groupdq, pixeldq, gain, read_noise,
        tables.k, tables.k_offset, tables.var_read, tables.var_poisson, tables.jump,
        tables.t_bar32, weights,
        out.slope, out.dq, out.var_poisson, out.var_rnoise, out.err, out.dumo,
        bool(use_jump), float(threshold_intercept), float(threshold_constant),
        bool(update_groupdq), effective_n_threads(n_threads),
    )
    return out
