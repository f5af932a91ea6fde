"""Array work of ``ramp_fit``: DN ramps to trimmed DN/s images, streamed in row blocks.

The cube is never copied: `romancore.fit_rate_images` converts each row of the
science columns to electrons in a per-thread buffer, fits it and writes the DN/s
images, DQ and ``dumo`` straight into the border-trimmed outputs. Row blocks exist
only so that a pipeline can hand the fitted rows' memory back (``release_input``).
The reference border is never fitted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import romancore
from romancal_lite.references._spec import BORDER
from romancal_lite.steps._arrays import release_rows

__all__ = ["BORDER", "RampFitArrays", "fit_exposure", "fit_exposure_likely", "uniform_weights"]




#: The science-array (border-trimmed) outputs of :func:`fit_exposure`: ``slope``
#: (DN/s), ``dq``, ``var_poisson``, ``var_rnoise``, ``err``, ``dumo``
#: (`romancore.RateImages`).
RampFitArrays = romancore.RateImages


def uniform_weights(read_pattern: Sequence[Sequence[int]], frame_time: float) -> np.ndarray:
    """Return the weights of the read-noise-limited (uniform) least-squares slope.

    Each resultant ``i`` of ``N_i`` reads at mean time ``t_i`` gets
    ``w_i = (N N_i t_i - S_t N_i) / (N S_tt - S_t^2)`` with ``N = sum N_i``,
    ``S_t = sum N_i t_i``, ``S_tt = sum N_i t_i^2``: ``sum w_i R_i`` is the
    ordinary least-squares slope of the reads when each resultant stands for its
    reads (romancal's ``dumo`` reference slope).

    Parameters
    ----------
    read_pattern : sequence of sequences of int
        1-based read numbers of each resultant.
    frame_time : float
        Seconds between reads.

    Returns
    -------
    numpy.ndarray of float64
        One weight per resultant, 1/s.
    """
    n_i = np.array([len(r) for r in read_pattern], dtype=np.float64)
    t_i = np.array([np.mean(r) for r in read_pattern], dtype=np.float64) * frame_time
    n, s_t, s_tt = n_i.sum(), (n_i * t_i).sum(), (n_i * t_i**2).sum()
    denom = n * s_tt - s_t**2
    if denom <= 0:
        return np.zeros_like(n_i)
    return (n * n_i * t_i - s_t * n_i) / denom


def _check_exposure(data: np.ndarray, groupdq: np.ndarray, pixeldq: np.ndarray,
                    gain: np.ndarray, read_noise: np.ndarray, block_rows: int
                    ) -> tuple[int, int, int, int, int]:
    """Check a fit's arrays; return ``(n, ny, nx)`` and the trimmed ``(sy, sx)``."""
    if data.ndim != 3:
        raise ValueError(f"data must be 3-D (resultants, rows, columns), got {data.shape}")
    n, ny, nx = data.shape
    b = BORDER
    if ny <= 2 * b or nx <= 2 * b:
        raise ValueError(f"a {ny} x {nx} frame has no pixels inside the {b}-pixel border")
    for name, arr, shape in (
        ("groupdq", groupdq, data.shape),
        ("pixeldq", pixeldq, (ny, nx)),
        ("gain", gain, (ny, nx)),
        ("read_noise", read_noise, (ny, nx)),
    ):
        if arr.shape != shape:
            raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    if block_rows < 1:
        raise ValueError("block_rows must be >= 1")
    return n, ny, nx, ny - 2 * b, nx - 2 * b


def fit_exposure(
    data: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    gain: np.ndarray,
    read_noise: np.ndarray,
    read_pattern: Sequence[Sequence[int]],
    frame_time: float,
    *,
    use_jump: bool = True,
    threshold_intercept: float = 5.5,
    threshold_constant: float = 1.0 / 3.0,
    block_rows: int = 256,
    n_threads: int | None = None,
    release_input: bool = False,
) -> RampFitArrays:
    """Fit the count rate of every science pixel of a ramp, in DN/s.

    Per block of rows: ``R_e = R_DN * gain`` and ``RN_e = RN_DN * gain``; romancore's
    Casertano (2022) fit with its queue-based jump detection (JUMP_DET is OR-ed into
    ``groupdq`` in place); then ``slope / gain`` and ``var / gain**2``. The outputs are
    the science array only (the ``BORDER``-pixel reference frame is not fitted). A
    NaN or infinite resultant gets DO_NOT_USE in ``groupdq`` and the ramp is fitted
    around it, as around any flagged resultant (`romancore.fit_ramps`). The
    output ``dq`` is ``pixeldq`` OR every group flag set on any resultant except
    DO_NOT_USE (the collapse of seeds/000:1176), plus, as romancal 1.1 does,
    DO_NOT_USE where no resultant is usable (all SATURATED or DO_NOT_USE) or the slope
    is not finite or ``err <= 0``, and NO_GAIN_VALUE | DO_NOT_USE where the gain is
    not finite or ``<= 0`` (seeds/000:1023).

    Parameters
    ----------
    data : numpy.ndarray of float32, shape (n, ny, nx)
        Resultants in DN, including the reference border. Not modified.
    groupdq : numpy.ndarray of uint8, shape (n, ny, nx)
        Group DQ; JUMP_DET is set in place.
    pixeldq : numpy.ndarray of uint32, shape (ny, nx)
        Pixel DQ.
    gain : numpy.ndarray, shape (ny, nx)
        Gain, electrons per DN.
    read_noise : numpy.ndarray, shape (ny, nx)
        Read noise per read, DN.
    read_pattern : sequence of sequences of int
        1-based read numbers of each resultant.
    frame_time : float
        Seconds between reads.
    use_jump : bool, optional
        Detect jumps inside the fit (default True).
    threshold_intercept, threshold_constant : float, optional
        Jump threshold parameters (defaults 5.5 and 1/3).
    block_rows : int, optional
        Rows fitted at a time (bounds the temporary memory).
    n_threads : int or None, optional
        Threads for romancore (default: all available).
    release_input : bool, optional
        The caller discards ``data`` and ``groupdq`` afterwards: each block's rows
        are handed back to the OS once fitted (`romancal_lite.steps._arrays.
        release_rows`; a no-op for ordinary arrays), so the cube shrinks as the
        images grow, and ``groupdq`` is not updated with the jumps (its rows read
        as zeros afterwards).

    Returns
    -------
    RampFitArrays
        The trimmed images.

    Raises
    ------
    ValueError
        For inconsistent shapes or a frame smaller than the border.
    """
    n, ny, nx, sy, sx = _check_exposure(data, groupdq, pixeldq, gain, read_noise, block_rows)
    b = BORDER
    slope = np.empty((sy, sx), np.float32)
    var_p = np.empty((sy, sx), np.float32)
    var_r = np.empty((sy, sx), np.float32)
    err = np.empty((sy, sx), np.float32)
    dumo = np.empty((sy, sx), np.float32)
    dq = np.empty((sy, sx), np.uint32)
    weights = uniform_weights(read_pattern, frame_time)
    cols = slice(b, nx - b)

    for r0 in range(b, ny - b, block_rows):
        r1 = min(r0 + block_rows, ny - b)
        o = slice(r0 - b, r1 - b)
        # the science columns only (the reference border is never fitted): electrons,
        # the fit, DN/s, DQ and dumo in one compiled pass per row
        romancore.fit_rate_images(
            np.asarray(data[:, r0:r1, cols], dtype=np.float32),
            groupdq[:, r0:r1, cols],
            np.asarray(pixeldq[r0:r1, cols], dtype=np.uint32),
            gain[r0:r1, cols],
            read_noise[r0:r1, cols],
            read_pattern,
            frame_time,
            weights,
            use_jump=use_jump,
            threshold_intercept=threshold_intercept,
            threshold_constant=threshold_constant,
            update_groupdq=not release_input,
            out=RampFitArrays(slope[o], dq[o], var_p[o], var_r[o], err[o], dumo[o]),
            n_threads=n_threads,
        )
        if release_input:
            # the border rows (copied by dq_init) go with the first and last blocks
            lo, hi = (0 if r0 == b else r0), (ny if r1 == ny - b else r1)
            release_rows(data, lo, hi)
            release_rows(groupdq, lo, hi)
    return RampFitArrays(slope, dq, var_p, var_r, err, dumo)


def fit_exposure_likely(
    data: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    gain: np.ndarray,
    read_noise: np.ndarray,
    read_pattern: Sequence[Sequence[int]],
    frame_time: float,
    *,
    use_jump: bool = True,
    rejection_threshold: float = 4.5,
    jump_test: str = "omission",
    step_threshold: float | None = None,
    neighbor_pass: bool = False,
    neighbor_threshold: float | None = None,
    block_rows: int = 256,
    n_threads: int | None = None,
    release_input: bool = False,
) -> dict[str, np.ndarray]:
    """Fit every science pixel with the likelihood fit (Brandt 2024), in DN/s.

    romancal 1.1's ``algorithm='likely'`` (stcal 1.20 ``likely_ramp_fit``), per block
    of rows: ``R_e = R_DN * gain`` and ``RN_e = RN_DN * gain`` (gain 1 where it is
    not finite or ``<= 0``) in a block-sized temporary, `romancore.fit_ramps_likely`
    (JUMP_DET OR-ed into ``groupdq``), then `romancore.finish_ramp_fit` for the DN/s
    images, the DQ collapse and ``dumo`` (as :func:`fit_exposure`), plus ``chisq``.

    Parameters
    ----------
    data, groupdq, pixeldq, gain, read_noise, read_pattern, frame_time
        As :func:`fit_exposure`.
    use_jump : bool, optional
        Omit differences with jumps (default True).
    rejection_threshold : float, optional
        Jump threshold in sigma (default 4.5, romancal's).
    jump_test : {'omission', 'step'}, optional
        romancal's chi^2 omission test (default) or our step test
        (`romancore.fit_ramps_likely`).
    step_threshold : float or None, optional
        Threshold of the step test in sigma (None: set for 1e-6 false positives per
        pixel, `romancore.step_threshold_for`).
    neighbor_pass : bool, optional
        Search the neighbours of detected jumps again at a lower threshold
        (`romancore.fit_ramps_likely`; default False).
    neighbor_threshold : float or None, optional
        Its threshold in sigma (None: `romancore.neighbor_threshold_for`).
    block_rows : int, optional
        Rows fitted at a time (bounds the temporary memory).
    n_threads : int or None, optional
        Threads for romancore (default: all available).
    release_input : bool, optional
        As :func:`fit_exposure`.

    Returns
    -------
    dict
        The trimmed images of `RampFitArrays` by name and ``chisq``.

    Raises
    ------
    ValueError
        For inconsistent shapes or a frame smaller than the border.
    """
    n, ny, nx, sy, sx = _check_exposure(data, groupdq, pixeldq, gain, read_noise, block_rows)
    b = BORDER
    images = RampFitArrays(*(np.empty((sy, sx), np.uint32 if name == "dq" else np.float32)
                             for name in RampFitArrays._fields))
    chisq = np.empty((sy, sx), np.float32)
    weights = uniform_weights(read_pattern, frame_time)
    cols = slice(b, nx - b)

    # the neighbour pass needs the first-pass flags of the rows either side of a block:
    # each block is fitted with one more science row on each side (fitted again, kept
    # from the block that owns it), so the result does not depend on block_rows
    halo = 1 if neighbor_pass and use_jump else 0
    released = 0
    for r0 in range(b, ny - b, block_rows):
        r1 = min(r0 + block_rows, ny - b)
        e0, e1 = max(r0 - halo, b), min(r1 + halo, ny - b)
        inner = slice(r0 - e0, r1 - e0)
        o = slice(r0 - b, r1 - b)
        g = np.asarray(gain[e0:e1, cols], dtype=np.float32)
        g = np.where(np.isfinite(g) & (g > 0), g, np.float32(1.0))
        dn = np.asarray(data[:, e0:e1, cols], dtype=np.float32)
        electrons = dn * g  # float32, as romancal's data * gain
        gdq = np.ascontiguousarray(groupdq[:, e0:e1, cols], dtype=np.uint8)
        rn = np.asarray(read_noise[e0:e1, cols], dtype=np.float32) * g
        fit = romancore.fit_ramps_likely(
            electrons, gdq, rn, read_pattern, frame_time, use_jump=use_jump,
            rejection_threshold=rejection_threshold, jump_test=jump_test,
            step_threshold=step_threshold, neighbor_pass=neighbor_pass,
            neighbor_threshold=neighbor_threshold, n_threads=n_threads)
        del electrons
        if halo:
            gdq = np.ascontiguousarray(gdq[:, inner])
            dn = dn[:, inner]
        romancore.finish_ramp_fit(
            *(np.ascontiguousarray(a[inner]) for a in (fit.slope, fit.var_read,
                                                       fit.var_poisson)), gdq,
            np.asarray(pixeldq[r0:r1, cols], dtype=np.uint32), gain[r0:r1, cols], dn,
            weights, out=RampFitArrays(*(a[o] for a in images)), n_threads=n_threads)
        chisq[o] = fit.chi2[inner]
        if release_input:
            # keep the last row: the next block reads it again as its halo
            hi = ny if r1 == ny - b else r1 - halo
            release_rows(data, released, hi)
            release_rows(groupdq, released, hi)
            released = hi
        else:
            groupdq[:, r0:r1, cols] = gdq
    return {**images._asdict(), "chisq": chisq}
