"""Compiled up-the-ramp sampling for the simulator (romancal_lite.simulate.ramps).

:func:`simulate_ramp_block` draws the reads of a block of rows of a WFI read-out and
writes their resultants: Poisson charge accumulation read after read, cosmic-ray
charge, the full well, the detector response (inverse of the LINEARITY polynomial, or
the INVERSELINEARITY polynomial), the raw read under integral non-linearity, the mean
of the reads of each resultant, electronic offsets and read noise.  The formulas are
those of ``romancal_lite.simulate.ramps`` (its module docstring and
``docs/simulate.md``).

Random numbers: each row of the read-out has its own stream, a function of
``(seed, stream, row)`` only (xoshiro256++ seeded through splitmix64), so the result
does not depend on the number of threads nor on how rows are grouped into blocks.
Poisson deviates: inversion by sequential search for means up to 10, Hörmann's
transformed rejection (PTRS) above; normal deviates: Marsaglia's polar method.
"""

from __future__ import annotations

import numpy as np

from romancore import _simramps
from romancore._threads import effective_n_threads
from romancore._validation import check_array, check_writeable

__all__ = ["RESPONSE_MODES", "normal_stream", "poisson_stream", "simulate_ramp_block"]

#: Detector responses: ``none`` (D = y), ``inverselinearity`` (D = sum d_k y**k),
#: ``quadratic`` (the root of a quadratic LINEARITY polynomial), ``newton`` (Newton's
#: iterations on a LINEARITY polynomial of any degree, from INVERSELINEARITY).
RESPONSE_MODES = tuple(_simramps.MODES)


def _f64(value: object, name: str, ndim: int, shape: tuple | None = None) -> np.ndarray:
    arr = np.ascontiguousarray(value, dtype=np.float64)
    return check_array(arr, name, np.float64, ndim, shape)


def _i64(value: object, name: str) -> np.ndarray:
    arr = np.ascontiguousarray(value, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def simulate_ramp_block(
    data: np.ndarray,
    dq: np.ndarray,
    amp33: np.ndarray,
    saturated_resultant: np.ndarray,
    rows: tuple[int, int],
    science_rows: tuple[int, int],
    border: int,
    *,
    detected: np.ndarray,
    inverse_gain: np.ndarray,
    zero_level: np.ndarray,
    full_well: np.ndarray,
    threshold: np.ndarray,
    response: str,
    linearity: np.ndarray | None,
    inverse: np.ndarray | None,
    inl: tuple[np.ndarray, np.ndarray] | None,
    read_pattern: list[list[int]],
    frame_time: float,
    poisson: bool,
    read_noise: bool,
    cosmic_rays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
    pedestal: np.ndarray,
    amp33_pedestal: np.ndarray,
    read_noise_dn: np.ndarray,
    amp33_read_noise_dn: float,
    channel_offsets: np.ndarray,
    row_drift: np.ndarray,
    seed: int,
    stream: int,
    decay: np.ndarray | None = None,
    channel_width: int = 128,
    n_threads: int | None = None,
) -> None:
    """Simulate rows ``rows[0]:rows[1]`` of a read-out, writing the outputs in place.

    For each science pixel and each read ``k`` (``t_k = read * frame_time``):
    ``S_k = S_{k-1} + Poisson(R (t_k - t_{k-1}))`` plus cosmic-ray charge; the level
    ``y = L(p) + min(S_k, S_full) / g`` (``zero_level`` is ``L(p)``); the response
    ``D = L^-1(y)``; with INL the raw read ``r = D - INL(D - INL(D))``.  A resultant is
    the mean of its reads, plus ``channel_offsets[i, x // channel_width, x % 2] +
    row_drift[i, y]`` and ``N(0, rn / sqrt(n_reads))``, rounded (half to even) and
    clipped to 0..65535.  Reference pixels and amp33 get their pedestal, the offsets and
    read noise.  JUMP_DET marks the resultant where a cosmic ray appears, SATURATED
    every resultant from the first whose mean read reaches ``threshold``.

    Parameters
    ----------
    data : numpy.ndarray of uint16, (n_resultants, ny, nx)
        Output resultants (rows of the block written).
    dq : numpy.ndarray of uint8, (n_resultants, ny, nx)
        Truth group DQ (bits OR-ed in).
    amp33 : numpy.ndarray of uint16, (n_resultants, ny, n33)
        Output amp33 resultants.
    saturated_resultant : numpy.ndarray of int16, (ny - 2 border, nx - 2 border)
        First saturated resultant of each science pixel, or -1 (rows of the block).
    rows : tuple of int
        ``(r0, r1)``: the rows of the read-out simulated.
    science_rows : tuple of int
        ``(s0, s1)``: the science rows inside ``rows`` (``s0 == s1`` for none).
    border : int
        Width of the reference-pixel border.
    detected : numpy.ndarray, (s1 - s0, nx - 2 border)
        Detected rate ``R`` (e/s) of the science pixels of the block.
    inverse_gain, zero_level, full_well, threshold : numpy.ndarray, like ``detected``
        ``1 / g`` (DN/e), ``L(p)`` (DN), ``S_full`` (e) and the saturation threshold
        (DN) of each science pixel.
    response : str
        One of :data:`RESPONSE_MODES`.
    linearity : numpy.ndarray or None, (n_coeffs, s1 - s0, nx - 2 border)
        LINEARITY coefficients (``quadratic`` and ``newton``).
    inverse : numpy.ndarray or None, (n_coeffs, s1 - s0, nx - 2 border)
        INVERSELINEARITY coefficients (``inverselinearity``; Newton's first guess).
    inl : tuple of numpy.ndarray or None
        Integral non-linearity: abscissae ``(n_table,)`` and the correction of each
        channel ``(n_channels, n_table)``.
    read_pattern : list of list of int
        1-based read numbers of each resultant.
    frame_time : float
        Seconds between reads.
    poisson : bool
        Poisson charge (else the expected charge ``R t_k``).
    read_noise : bool
        Add read noise.
    cosmic_rays : tuple of numpy.ndarray or None
        ``(row, column, read_index, charge)`` of each hit: science-array row and
        column, 0-based index of the first sampled read that sees it, charge (e).
    pedestal : numpy.ndarray, (r1 - r0, nx)
        Pedestal (DN) of every pixel of the block.
    amp33_pedestal : numpy.ndarray, (r1 - r0, n33)
        Pedestal of amp33.
    read_noise_dn : numpy.ndarray, (r1 - r0, nx)
        Read noise per read (DN).
    amp33_read_noise_dn : float
        Read noise per read of amp33 (DN).
    channel_offsets : numpy.ndarray, (n_resultants, n_channels + 1, 2)
        Offsets per channel (last: amp33) and column parity.
    row_drift : numpy.ndarray, (n_resultants, ny)
        Row drift per resultant.
    seed, stream : int
        The random streams are those of ``(seed, stream, row)``.
    decay : numpy.ndarray or None, optional
        ``(n_resultants, ny, period)`` DN added to each science pixel's rounded
        resultant (``decay[i, y, x % period]``), which is then rounded again: signals
        after the detector response that repeat along the columns (dark decay).
    channel_width : int, optional
        Columns per amplifier (offsets and INL tables).
    n_threads : int or None, optional
        Threads (see :func:`romancore.effective_n_threads`); the result is the same
        for any number.

    Raises
    ------
    ValueError
        For inconsistent shapes, dtypes or arguments.
    """
    check_array(data, "data", np.uint16, 3)
    n_res, ny, nx = data.shape
    check_array(dq, "dq", np.uint8, 3, data.shape)
    check_array(amp33, "amp33", np.uint16, 3, (n_res, ny, None))
    for arr, name in ((data, "data"), (dq, "dq"), (amp33, "amp33"),
                      (saturated_resultant, "saturated_resultant")):
        check_writeable(arr, name)
    b = int(border)
    if b < 0 or 2 * b >= min(ny, nx):
        raise ValueError(f"border {border} does not fit a {ny} x {nx} read-out")
    check_array(saturated_resultant, "saturated_resultant", np.int16, 2,
                (ny - 2 * b, nx - 2 * b))
    r0, r1 = (int(v) for v in rows)
    s0, s1 = (int(v) for v in science_rows)
    if not 0 <= r0 < r1 <= ny:
        raise ValueError(f"rows {rows} outside 0..{ny}")
    if s1 > s0 and not (r0 <= s0 and s1 <= r1 and s0 >= b and s1 <= ny - b):
        raise ValueError(f"science_rows {science_rows} must be science rows inside {rows}")
    if response not in RESPONSE_MODES:
        raise ValueError(f"response must be one of {RESPONSE_MODES}, got {response!r}")
    if len(read_pattern) != n_res:
        raise ValueError(f"read_pattern has {len(read_pattern)} resultants, data {n_res}")
    if not frame_time > 0:
        raise ValueError(f"frame_time must be > 0, got {frame_time}")
    if int(channel_width) <= 0:
        raise ValueError(f"channel_width must be > 0, got {channel_width}")
    reads = np.array([r for res in read_pattern for r in res], dtype=np.int64)
    if reads.size == 0 or np.any(np.diff(reads) <= 0) or reads[0] < 1:
        raise ValueError("read_pattern must hold increasing 1-based read numbers")
    res_first = np.cumsum([0] + [len(r) for r in read_pattern]).astype(np.int64)
    owner = np.repeat(np.arange(n_res, dtype=np.int64), np.diff(res_first))
    read_time = reads.astype(np.float64) * frame_time
    read_mean = np.diff(reads, prepend=0).astype(np.float64) * frame_time

    n_sci = max(s1 - s0, 0)
    nsx = nx - 2 * b
    sci_shape = (max(n_sci, 1), nsx)
    if n_sci:
        detected = _f64(detected, "detected", 2, sci_shape)
        ginv = _f64(inverse_gain, "inverse_gain", 2, sci_shape)
        q0 = _f64(zero_level, "zero_level", 2, sci_shape)
        sfull = _f64(full_well, "full_well", 2, sci_shape)
        thr = _f64(threshold, "threshold", 2, sci_shape)
    else:
        detected = ginv = q0 = sfull = thr = np.zeros(sci_shape)
    dummy3 = np.zeros((1, 1, 1))
    lin = dummy3
    if response in ("quadratic", "newton"):
        if linearity is None:
            raise ValueError(f"response {response!r} needs the linearity coefficients")
        if n_sci:
            lin = _f64(linearity, "linearity", 3, (None, *sci_shape))
            if response == "quadratic" and lin.shape[0] > 3:
                raise ValueError("response 'quadratic' needs at most 3 coefficients")
            if lin.shape[0] < 2:
                raise ValueError("linearity needs at least 2 coefficients")
    has_inv = inverse is not None and n_sci > 0
    inv = _f64(inverse, "inverse", 3, (None, *sci_shape)) if has_inv else dummy3
    if inl is not None:
        inl_x = _f64(inl[0], "inl abscissae", 1)
        corr = _f64(inl[1], "inl corrections", 2, (None, inl_x.size))
        if inl_x.size < 2 or np.any(np.diff(inl_x) <= 0):
            raise ValueError("inl abscissae must be increasing, at least 2")
        need = -(-(nx - b) // int(channel_width))
        if corr.shape[0] < need:
            raise ValueError(f"inl has {corr.shape[0]} channels, the read-out needs {need}")
        with np.errstate(all="ignore"):
            slope = np.diff(corr, axis=1) / np.diff(inl_x)
        ys = np.zeros((corr.shape[0], inl_x.size, 2))
        ys[:, :, 0] = corr
        ys[:, :-1, 1] = slope
        step = (inl_x[-1] - inl_x[0]) / (inl_x.size - 1)
        uniform = np.array_equal(inl_x, inl_x[0] + np.arange(inl_x.size) * step)
        inl_h = float(step) if uniform else 0.0
    else:
        inl_x = np.arange(2.0)
        ys = np.zeros((1, 2, 2))
        inl_h = 0.0

    if cosmic_rays is not None and len(cosmic_rays[0]) and n_sci:
        cy, cx, ck, cq = (np.asarray(v) for v in cosmic_rays)
        cy = cy.astype(np.int64) - (s0 - b)
        if np.any((cy < 0) | (cy >= n_sci)) or np.any((cx < 0) | (cx >= nsx)):
            raise ValueError("cosmic_rays outside the science rows of the block")
        if np.any((ck < 0) | (ck >= reads.size)):
            raise ValueError("cosmic_rays read index outside the read pattern")
        order = np.lexsort((cx, ck, cy))
        cr_col = np.ascontiguousarray(cx[order], dtype=np.int64)
        cr_read = np.ascontiguousarray(ck[order], dtype=np.int64)
        cr_charge = np.ascontiguousarray(cq[order], dtype=np.float64)
        cr_start = np.searchsorted(cy[order], np.arange(n_sci + 1)).astype(np.int64)
    else:
        cr_col = cr_read = np.zeros(1, dtype=np.int64)
        cr_charge = np.zeros(1)
        cr_start = np.zeros(max(n_sci, 1) + 1, dtype=np.int64)

    nr = r1 - r0
    ped = _f64(pedestal, "pedestal", 2, (nr, nx))
    ped33 = _f64(amp33_pedestal, "amp33_pedestal", 2, (nr, amp33.shape[2]))
    rn = _f64(read_noise_dn, "read_noise_dn", 2, (nr, nx))
    need_ch = -(-nx // int(channel_width)) + 1
    chan = _f64(channel_offsets, "channel_offsets", 3, (n_res, None, 2))
    if chan.shape[1] < need_ch:
        raise ValueError(f"channel_offsets has {chan.shape[1]} channels, needs {need_ch}")
    drift = _f64(row_drift, "row_drift", 2, (n_res, ny))
    if isinstance(seed, bool) or int(seed) < 0 or int(stream) < 0:
        raise ValueError("seed and stream must be non-negative integers")
    if decay is not None:
        decay = _f64(decay, "decay", 3, (n_res, ny, None))
    threads = effective_n_threads(n_threads)
    _simramps.simulate_block(
        data, dq, amp33, saturated_resultant, r0, r1, s0, max(s1, s0), b,
        detected, ginv, q0, sfull, thr, lin, inv, bool(has_inv),
        _simramps.MODES[response], inl_x, ys, inl_h, inl is not None, int(channel_width),
        res_first, read_mean, read_time, owner, bool(poisson), bool(read_noise),
        cr_start, cr_col, cr_read, cr_charge, ped, ped33, rn, float(amp33_read_noise_dn),
        chan, drift, dummy3 if decay is None else decay, decay is not None,
        int(seed) % (1 << 64), int(stream), threads,
    )


def poisson_stream(mean: np.ndarray, seed: int, stream: int, row: int) -> np.ndarray:
    """Return one Poisson draw per mean from the random stream of ``(seed, stream, row)``.

    The sampler of :func:`simulate_ramp_block` (exposed for its tests).

    Parameters
    ----------
    mean : numpy.ndarray
        Means (1-D; values <= 0 give 0).
    seed, stream, row : int
        The stream.

    Returns
    -------
    numpy.ndarray of float64
        The draws.
    """
    mean = _f64(mean, "mean", 1)
    out = np.empty_like(mean)
    _simramps.poisson_draws(mean, int(seed), int(stream), int(row), out)
    return out


def normal_stream(n: int, seed: int, stream: int, row: int) -> np.ndarray:
    """Return ``n`` standard normal draws from the stream of ``(seed, stream, row)``.

    Parameters
    ----------
    n : int
        Number of draws.
    seed, stream, row : int
        The stream.

    Returns
    -------
    numpy.ndarray of float64
        The draws.
    """
    out = np.empty(int(n))
    _simramps.normal_draws(int(seed), int(stream), int(row), out)
    return out
