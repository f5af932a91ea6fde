"""Reference-pixel correction with the REFPIX reference file (romancal 1.1's algorithm).

The REFPIX reference holds, for every science channel (amplifier) ``c``, three sets of
complex Fourier-domain weights: ``gamma[c]`` for the left reference columns,
``zeta[c]`` for the right ones and ``alpha[c]`` for the amp33 reference output. They
predict the correlated (1/f) read noise of channel ``c`` from what the reference
pixels saw at the same time. The correction works on the *time series* of each
channel: pixels in the order the amplifier reads them (odd channels read their
columns right to left), each row followed by 12 samples of the line-turnaround pause,
so one row lasts ``128 + 12 = 140`` sample times. The steps, per resultant (the
sources are romancal 1.1 ``romancal/refpix/refpix.py`` ``run_steps`` and
``romancal/refpix/_data.py``):

1. (before everything) pixels flagged BAD_REF_PIXEL are set to 0 in every resultant
   (``refpix._mask_bad_ref_pixels``); 0 means "no sample" from then on.
2. ``remove_offset``: each pixel (amp33 included) loses its least-squares intercept
   over the resultants at the mean resultant index, which is its mean over the
   resultants (``StandardView.remove_offset``: ``(Sy Sxx - Sx Sxy) / (n Sxx - Sx^2)``
   with ``Sx = 0``); it is added back at the end.
3. ``remove_trends``: for every channel (the 32 science channels and amp33) a straight
   line ``m t + b`` in sample time ``t`` (``t = 140 row + read position``, centred on
   the mean over the frame) is fitted by least squares to the non-zero samples of the
   4 top and 4 bottom reference rows, and subtracted from every non-zero sample of
   the channel (``ChannelView.remove_trends``).
4. ``cosine_interpolate``: the zero samples of the amp33 series (the pauses, and any
   missing sample) are replaced by a weighted mean of their neighbours, the weights
   ``sin(pi i / 32)``, ``i = 1..32`` (``ChannelView.cosine_interpolate``).
5. ``fft_interpolate``: the pause samples of the amp33 series are then refined three
   times by ``x[pause] <- irfft(rfft(x) (1 + cos(2 pi k / N)) / 2)[pause]``
   (``ChannelView.fft_interpolate``; ``k`` the frequency index, ``N = 140 ny``).
6. The correction of channel ``c`` is (``ReferenceFFT.channel_correction``)::

       irfft( (2 M / N) [ (140/4) (L gamma[c] + R zeta[c]) + A alpha[c] ] )

   where ``L``, ``R`` and ``A`` are the real FFTs of the left, right and amp33
   series (the left/right series hold the 4 reference columns of each row at read
   positions 0-3 and zeros elsewhere, hence the factor 140/4), ``M`` the number of
   coefficients per channel and ``N = 140 ny`` the series length. It is subtracted
   from every sample of the channel, reference pixels included.

The cube is corrected in place in two passes: per resultant (steps 1-5 up to the
FFTs of the reference series), then per channel for all resultants of a chunk at once
(step 6, each coefficient row read once per chunk). The offset is not subtracted from
the cube and added back: the trends and corrections are subtracted from the raw values
(the same result to float32 rounding), the offset only deciding which samples are
"missing" and being taken off the reference samples. Besides the cube the memory holds
the offset plane, the reference spectra (``3 n M`` complex values) and per-channel
buffers of ``n M`` values, at most half the cube's size, never a second cube.
Intermediate values are float64 except the inverse FFT of the corrections (single
precision: the corrections are float32 values like the data); the results agree with
romancal's to float32 precision.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from scipy import fft

import romancore.refpix
from romancal_lite.references._spec import BORDER
from romancal_lite.steps._arrays import release_rows
from romancore import effective_n_threads
from romancore.dqflags import pixel

__all__ = [
    "CHANNEL_PAD",
    "CHANNEL_WIDTH",
    "ROW_SAMPLES",
    "CoefficientError",
    "ReferenceCorrectionReport",
    "coefficient_length",
    "correct_with_refpix_reference",
]

#: Columns read by one amplifier (channel).
CHANNEL_WIDTH = 128
#: Sample times of the line-turnaround pause after each row of a channel (romancal's
#: ``Const.PAD``).
CHANNEL_PAD = 12
#: Sample times per row of a channel's time series.
ROW_SAMPLES = CHANNEL_WIDTH + CHANNEL_PAD
#: Length of the cosine interpolation kernel (romancal: the number of science channels).
COSINE_LENGTH = 32
#: Iterations of the FFT interpolation of the amp33 pauses (romancal's default ``num``).
FFT_ITERATIONS = 3
#: Channels whose weighted spectra are formed together (bounds that buffer to
#: ``_CHANNEL_GROUP * n * M`` complex64 values: 83 MB for 9 full-frame resultants).
_CHANNEL_GROUP = 4
#: Frequencies per block of the weighted sums (the spectra block stays in cache).
_FREQ_BLOCK = 4096
#: Rows of a plane updated at once in the plane-wide passes.
_BLOCK_ROWS = 64

_BAD_REF = np.uint32(pixel.BAD_REF_PIXEL)


class CoefficientError(ValueError):
    """The REFPIX coefficients do not fit the data (shape, type or non-finite values)."""


class ReferenceCorrectionReport(NamedTuple):
    """What `correct_with_refpix_reference` did; the caller decides what to log.

    Attributes
    ----------
    bad_reference_pixels : int
        Pixels flagged BAD_REF_PIXEL that were set to 0 before the correction.
    trends_not_fitted : int
        ``(resultant, channel)`` pairs (amp33 counted as a channel) without any
        non-zero top/bottom reference sample, left without a trend removal.
    coefficients_used : tuple of str
        Which of ``gamma``, ``zeta``, ``alpha`` have a non-zero value for the channels
        of the data (none: no Fourier correction at all).
    """

    bad_reference_pixels: int
    trends_not_fitted: int
    coefficients_used: tuple[str, ...]


def coefficient_length(ny: int) -> int:
    """Return the number of REFPIX coefficients per channel for ``ny`` rows.

    Parameters
    ----------
    ny : int
        Rows of the full read-out.

    Returns
    -------
    int
        ``140 ny / 2 + 1``, the length of the real FFT of a channel's time series
        (286721 for the 4096-row WFI read-out).
    """
    return (ny * ROW_SAMPLES) // 2 + 1


def correct_with_refpix_reference(
    data: np.ndarray,
    pixeldq: np.ndarray,
    amp33: np.ndarray,
    gamma: np.ndarray,
    zeta: np.ndarray,
    alpha: np.ndarray,
    *,
    remove_offset: bool = True,
    remove_trends: bool = True,
    cosine_interpolate: bool = True,
    fft_interpolate: bool = True,
    zero_bad_ref_pixels: bool = True,
    amp33_out: np.ndarray | None = None,
) -> tuple[np.ndarray, ReferenceCorrectionReport]:
    """Subtract the correlated read noise the REFPIX coefficients predict, in place.

    See the module docstring for the algorithm (romancal 1.1 ``refpix.run_steps``).

    Parameters
    ----------
    data : numpy.ndarray
        Float32 (or float64) ramp ``[n_resultants, ny, nx]`` including the 4-pixel
        reference border; ``nx`` a multiple of 128 (the WFI: 4096). Modified in place.
    pixeldq : numpy.ndarray
        Integer pixel DQ ``[ny, nx]`` (only BAD_REF_PIXEL is read).
    amp33 : numpy.ndarray
        The amp33 reference output ``[n_resultants, ny, 128]`` (any real dtype); not
        modified.
    gamma, zeta, alpha : numpy.ndarray
        REFPIX coefficients ``[n_channels, coefficient_length(ny)]`` (complex), at
        least one row per science channel (``nx / 128``); extra rows are not used.
    remove_offset : bool, optional
        Remove each pixel's mean over the resultants first and restore it at the end.
    remove_trends : bool, optional
        Remove each channel's linear trend in time, fitted to its top/bottom
        reference rows.
    cosine_interpolate : bool, optional
        Fill the zero samples of amp33 (the pauses included) by cosine-weighted means.
    fft_interpolate : bool, optional
        Refine the amp33 pause samples by apodized FFT interpolation.
    zero_bad_ref_pixels : bool, optional
        Set BAD_REF_PIXEL pixels to 0 (excluded from the trend fits and the FFTs).
    amp33_out : numpy.ndarray, optional
        Writeable array of amp33's shape that receives amp33 as the correction leaves
        it, resultant by resultant (it may be ``amp33`` itself). An integer array gets
        the absolute value, clipped to its range and truncated, as romancal writes its
        uint16 ``amp33``. Default: a new float32 array (values as they are).

    Returns
    -------
    amp33_out : numpy.ndarray
        ``[n_resultants, ny, 128]``: amp33 as the correction leaves it (trend removed,
        missing samples interpolated, offset restored).
    report : ReferenceCorrectionReport
        Counts for the log.

    Raises
    ------
    CoefficientError
        If the coefficients have the wrong shape or type, or are not finite.
    ValueError
        If a data array has the wrong type, dimensions or shape.

    Notes
    -----
    Differences from romancal 1.1 (which gives the same values otherwise):
    with one resultant and ``remove_offset`` romancal divides 0 by 0 (every value
    NaN); here the offset of one resultant is its value, and the data come back
    unchanged. Non-finite reference samples are treated as missing (0) instead of
    spreading NaN over every channel through the FFTs. A trend fitted to a single
    sample is that sample's value (slope 0).
    """
    nch = _check_inputs(data, pixeldq, amp33, gamma, zeta, alpha)
    # which coefficient sets act on the channels present (an all-zero set adds
    # nothing); non-finite coefficients are refused before anything is changed
    coeffs = {"gamma": gamma, "zeta": zeta, "alpha": alpha}
    used, shared = _scan_coefficients(coeffs, nch)
    n_res, ny, nx = data.shape
    n_samples = ny * ROW_SAMPLES
    n_coeff = gamma.shape[1]

    bad = 0
    if zero_bad_ref_pixels:
        mask = (np.asarray(pixeldq) & _BAD_REF) != 0
        bad = int(mask.sum())
        if bad:
            data[:, mask] = 0

    if amp33_out is None:
        amp33_out = np.empty(amp33.shape, dtype=np.float32)
    elif (
        not isinstance(amp33_out, np.ndarray)
        or amp33_out.shape != amp33.shape
        or not amp33_out.flags.writeable
    ):
        raise ValueError(f"amp33_out must be a writeable array of shape {amp33.shape}")
    # the offset is never subtracted from the cube and added back: the trends and the
    # corrections are subtracted from the raw values directly (the same values to
    # float32 rounding, and a non-finite resultant cannot change the pixel's others);
    # it decides which samples count as "no sample" (equal to it) and is taken off the
    # reference samples the fits and FFTs use
    if remove_offset:
        offset = _mean_over_resultants(data)
        offset33 = _mean_over_resultants(amp33)
    else:
        offset = np.zeros((ny, nx), dtype=np.float32)
        offset33 = None

    # geometry of the time series: read position j of every column (odd channels are
    # read right to left), the pause samples, the centred sample time of a row start
    read_pos = _read_positions(nch)
    amp33_reversed = nch % 2 == 1  # amp33 is channel number nch (romancal's dstack)
    pos33 = np.arange(CHANNEL_WIDTH)[::-1] if amp33_reversed else np.arange(CHANNEL_WIDTH)
    t_mean = (n_samples - 1) / 2.0
    row_time = np.arange(ny, dtype=np.float64) * ROW_SAMPLES - t_mean
    ref_rows = np.r_[0:BORDER, ny - BORDER : ny]
    pause = np.zeros((ny, ROW_SAMPLES), dtype=bool)
    pause[:, CHANNEL_WIDTH:] = True
    pause = pause.reshape(-1)
    cosine = np.sin(np.arange(1, COSINE_LENGTH + 1) * np.pi / COSINE_LENGTH)
    # romancal: forward FFTs divided by N, left/right times 140/4, the sum times 2 M
    # (ChannelView.forward_fft, ReferenceFFT.channel_correction); irfft divides by N
    scale = 2.0 * n_coeff / n_samples
    side_scale = scale * ROW_SAMPLES / BORDER
    right_cols, right_pos = _right_columns(nch, nx)

    # resultants are processed in chunks whose spectra and FFT buffers take at most
    # half the cube's memory (all of them at once on a full frame; fewer on a narrow
    # read-out, where a channel's 140-sample rows are long next to the image rows)
    group = 1 if shared else min(_CHANNEL_GROUP, nch)
    per_resultant = (16 * len(used) + 8 * group + 24) * n_coeff
    chunk = max(1, min(n_res, int(data.nbytes // 2 // max(per_resultant, 1))))
    spectra = {name: np.empty((chunk, n_coeff), dtype=np.complex128) for name in used}
    not_fitted = 0
    n_threads = effective_n_threads()

    def first_pass(r: int, r0: int, kernel_threads: int) -> int:
        # pass 1 of resultant r: offset, trends, amp33 interpolation, the spectra of
        # the reference series; returns the channels whose trend could not be fitted
        missing = 0
        plane = data[r]
        a33 = amp33[r].astype(np.float32)
        if offset33 is not None:
            a33 -= offset33
        if remove_trends:
            missing += _remove_trends(plane, offset, read_pos, nch, row_time, ref_rows,
                                      n_threads=kernel_threads)
            missing += _remove_trends(a33, None, pos33, 1, row_time, ref_rows,
                                      n_threads=kernel_threads)
        if used or cosine_interpolate:
            # the amp33 time series (float64), zeros where nothing was sampled
            series33 = np.zeros((ny, ROW_SAMPLES), dtype=np.float64)
            series33[:, pos33] = a33
            series33 = series33.reshape(-1)
            _clean(series33)
            if cosine_interpolate:
                _cosine_interpolate(series33, cosine)
                a33[...] = series33.reshape(ny, ROW_SAMPLES)[:, pos33]
            if fft_interpolate and "alpha" in used:
                _fft_interpolate(series33, pause)
            if "gamma" in used:
                left = np.zeros((ny, ROW_SAMPLES), dtype=np.float64)
                left[:, :BORDER] = plane[:, :BORDER] - offset[:, :BORDER]
                spectra["gamma"][r - r0] = _spectrum(left, side_scale)
            if "zeta" in used:
                right = np.zeros((ny, ROW_SAMPLES), dtype=np.float64)
                right[:, right_pos] = plane[:, right_cols] - offset[:, right_cols]
                spectra["zeta"][r - r0] = _spectrum(right, side_scale)
            if "alpha" in used:
                spectra["alpha"][r - r0] = _spectrum(series33.reshape(ny, ROW_SAMPLES), scale)
        if offset33 is not None:
            a33 += offset33
        _store_amp33(amp33_out, r, a33)
        return missing

    for r0 in range(0, n_res, chunk):
        r1 = min(r0 + chunk, n_res)
        # pass 1, the resultants of the chunk in parallel (each changes its own plane,
        # amp33 plane and spectrum rows; NumPy, the FFTs and the kernels, each on one
        # thread then, release the GIL): the same values as one after the other
        workers = min(n_threads, r1 - r0)
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                not_fitted += sum(pool.map(first_pass, range(r0, r1), [r0] * (r1 - r0),
                                           [1] * (r1 - r0)))
        else:
            not_fitted += sum(first_pass(r, r0, n_threads) for r in range(r0, r1))

        # pass 2, per channel: the correction of the chunk's resultants at once
        if used:
            part = {name: spec[: r1 - r0] for name, spec in spectra.items()}
            _subtract_corrections(data[r0:r1], part, coeffs, nch, n_samples, shared)
    return amp33_out, ReferenceCorrectionReport(bad, not_fitted, used)


# ----------------------------------------------------------------------------- helpers


def _check_inputs(
    data: object,
    pixeldq: object,
    amp33: object,
    gamma: object,
    zeta: object,
    alpha: object,
) -> int:
    """Validate the arrays; return the number of science channels."""
    if not isinstance(data, np.ndarray) or data.ndim != 3:
        raise ValueError("data must be a 3-D numpy array [resultant, y, x]")
    if not np.issubdtype(data.dtype, np.floating) or not data.flags.writeable:
        raise ValueError(f"data must be a writeable float array, got {data.dtype}")
    n_res, ny, nx = data.shape
    if nx % CHANNEL_WIDTH or nx == 0:
        raise ValueError(
            f"the REFPIX correction needs whole {CHANNEL_WIDTH}-column channels, got"
            f" {nx} columns"
        )
    if ny < 2 * BORDER + 1:
        raise ValueError(f"{ny} rows are too few for {BORDER} top and bottom reference rows")
    if not isinstance(pixeldq, np.ndarray) or not np.issubdtype(pixeldq.dtype, np.integer):
        raise ValueError("pixeldq must be an integer numpy array")
    if pixeldq.shape != (ny, nx):
        raise ValueError(f"pixeldq shape {pixeldq.shape} does not match the planes {(ny, nx)}")
    if not isinstance(amp33, np.ndarray) or amp33.shape != (n_res, ny, CHANNEL_WIDTH):
        got = getattr(amp33, "shape", type(amp33).__name__)
        raise ValueError(
            f"amp33 must be an array of shape {(n_res, ny, CHANNEL_WIDTH)}, got {got}"
        )
    if not (np.issubdtype(amp33.dtype, np.integer) or np.issubdtype(amp33.dtype, np.floating)):
        raise ValueError(f"amp33 must be real numbers, got {amp33.dtype}")
    nch = nx // CHANNEL_WIDTH
    want = coefficient_length(ny)
    for name, c in (("gamma", gamma), ("zeta", zeta), ("alpha", alpha)):
        shape = getattr(c, "shape", None)
        if (
            not isinstance(c, np.ndarray)
            or c.ndim != 2
            or c.shape[0] < nch
            or c.shape[1] != want
        ):
            raise CoefficientError(
                f"REFPIX '{name}' has shape {shape}, expected (>= {nch}, {want}) for"
                f" {ny} x {nx} data"
            )
        if not (np.issubdtype(c.dtype, np.complexfloating) or np.issubdtype(c.dtype, np.floating)):
            raise CoefficientError(f"REFPIX '{name}' must hold (complex) numbers, got {c.dtype}")
    return nch


def _mean_over_resultants(cube: np.ndarray) -> np.ndarray:
    """Each pixel's mean over its finite resultants (float32, summed in order).

    romancal 1.1 ``StandardView.remove_offset``: the least-squares intercept at the
    centred resultant index, ``Sy Sxx / (n Sxx)`` since ``Sx = 0``, i.e. the mean.
    Non-finite values are left out (romancal's would be NaN); a pixel with none
    finite gets 0.
    """
    if cube.dtype == np.float32 and cube.flags.c_contiguous:
        return romancore.refpix.mean_over_resultants(cube)
    # other types (amp33 is uint16): the same sums with NumPy
    total = np.zeros(cube.shape[1:], dtype=np.float32)
    missing = None
    floating = np.issubdtype(cube.dtype, np.floating)
    for plane in cube:
        if floating:
            finite = np.isfinite(plane)
            if not finite.all():
                if missing is None:
                    missing = np.zeros(cube.shape[1:], dtype=np.int32)
                missing += ~finite
                total += np.where(finite, plane, 0)
                continue
        total += plane
    if missing is None:
        total /= np.float32(cube.shape[0])
    else:
        total /= np.maximum(cube.shape[0] - missing, 1).astype(np.float32)
    return total


def _read_positions(nch: int) -> np.ndarray:
    """Read position (0..127) of every column: odd channels are read right to left."""
    j = np.arange(CHANNEL_WIDTH)
    return np.concatenate([j[::-1] if c % 2 else j for c in range(nch)])


def _right_columns(nch: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the right reference columns and their read positions in the last channel."""
    cols = np.arange(nx - BORDER, nx)
    if (nch - 1) % 2:
        return cols, CHANNEL_WIDTH - 1 - (cols - (nch - 1) * CHANNEL_WIDTH)
    return cols, cols - (nch - 1) * CHANNEL_WIDTH


def _remove_trends(
    plane: np.ndarray,
    offset: np.ndarray | None,
    read_pos: np.ndarray,
    nch: int,
    row_time: np.ndarray,
    ref_rows: np.ndarray,
    *,
    n_threads: int | None = None,
) -> int:
    """Fit and subtract each channel's line in time (romancal ``remove_trends``).

    The fit uses ``plane - offset`` on the reference rows; samples equal to their
    offset (0 after its removal: "no sample") are neither fitted nor changed.
    Returns the number of channels without such a reference sample. ``n_threads``:
    the threads of the compiled subtraction.
    """
    width = CHANNEL_WIDTH
    ref = plane[ref_rows] if offset is None else plane[ref_rows] - offset[ref_rows]
    y = ref.astype(np.float64)
    t = row_time[ref_rows, None] + read_pos[None, :]
    use = (y != 0) & np.isfinite(y)
    y = np.where(use, y, 0.0).reshape(len(ref_rows), nch, width)
    t = np.where(use, t, 0.0).reshape(len(ref_rows), nch, width)
    n = use.reshape(len(ref_rows), nch, width).sum(axis=(0, 2)).astype(np.float64)
    st = t.sum(axis=(0, 2))
    sy = y.sum(axis=(0, 2))
    stt = (t * t).sum(axis=(0, 2))
    sty = (t * y).sum(axis=(0, 2))
    # least-squares line (np.polyfit deg 1 in romancal): m = cov(t, y) / var(t)
    denom = n * stt - st * st
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(denom > 0, (n * sty - st * sy) / np.where(denom > 0, denom, 1), 0.0)
        intercept = np.where(n > 0, (sy - slope * st) / np.maximum(n, 1), 0.0)
    missing = int((n == 0).sum())
    if missing == nch:
        return missing
    if plane.dtype == np.float32 and plane.flags.c_contiguous and (
        offset is None or (offset.dtype == np.float32 and offset.flags.c_contiguous)
    ):
        romancore.refpix.subtract_channel_trends(
            plane, offset, read_pos, np.ascontiguousarray(slope, dtype=np.float64),
            np.ascontiguousarray(intercept, dtype=np.float64),
            np.ascontiguousarray(row_time, dtype=np.float64), n_threads=n_threads,
        )
        return missing
    # float64 data: the same arithmetic with NumPy, by blocks of rows
    col_slope = np.repeat(slope, width)
    col_const = col_slope * read_pos + np.repeat(intercept, width)
    for start in range(0, plane.shape[0], _BLOCK_ROWS):
        block = plane[start : start + _BLOCK_ROWS]
        trend = np.multiply.outer(row_time[start : start + _BLOCK_ROWS], col_slope)
        trend += col_const
        # only samples that are not 0 after the offset (romancal: ``* frame_not_zero``)
        if offset is None:
            trend[block == 0] = 0.0
        else:
            trend[block == offset[start : start + _BLOCK_ROWS]] = 0.0
        block -= trend
    return missing


def _clean(series: np.ndarray) -> None:
    """Treat non-finite samples as missing (0)."""
    bad = ~np.isfinite(series)
    if bad.any():
        series[bad] = 0.0


def _cosine_interpolate(series: np.ndarray, kernel: np.ndarray) -> None:
    """Fill zero samples by cosine-weighted means of the non-zero ones, in place.

    romancal ``ChannelView.cosine_interpolate``: ``conv(x, w) / conv(x != 0, w)``
    with ``w_i = sin(pi i / 32)``, numpy's ``"same"`` convolution; 0 where no
    non-zero sample is within reach.
    """
    present = series != 0
    num = np.convolve(series, kernel, mode="same")
    den = np.convolve(present.astype(np.float64), kernel, mode="same")
    missing = ~present
    with np.errstate(invalid="ignore", divide="ignore"):
        fill = num[missing] / den[missing]
    fill[~np.isfinite(fill)] = 0.0
    series[missing] = fill


def _fft_interpolate(series: np.ndarray, pause: np.ndarray) -> None:
    """Refine the pause samples by three passes of romancal's apodized FFT smoothing.

    romancal ``ChannelView.fft_interpolate`` replaces the pause samples by
    ``irfft(rfft(x) (1 + cos(2 pi k / N)) / 2)``. Since
    ``(1 + cos(2 pi k / N)) / 2 = 1/2 + (e^{2 pi i k / N} + e^{-2 pi i k / N}) / 4``,
    that is the circular 3-tap mean ``x[t] / 2 + (x[t - 1] + x[t + 1]) / 4``, computed
    here directly on the pause samples (the same values to rounding, no FFT).
    """
    n = series.size
    idx = np.flatnonzero(pause)
    before = (idx - 1) % n
    after = (idx + 1) % n
    for _ in range(FFT_ITERATIONS):
        # the right-hand side is evaluated before any sample is replaced, as in romancal
        series[idx] = 0.5 * series[idx] + 0.25 * (series[before] + series[after])


def _spectrum(series: np.ndarray, scale: float) -> np.ndarray:
    """Return the real FFT of a ``[ny, 140]`` series (time order) times ``scale``."""
    _clean(series)
    spec = fft.rfft(series.reshape(-1))
    spec *= scale
    return spec


def _scan_coefficients(
    coeffs: dict[str, np.ndarray], nch: int
) -> tuple[tuple[str, ...], bool]:
    """Check the channels' coefficients; return the sets in use and whether all are shared.

    One compiled pass over each set's rows (`romancore.refpix.scan_rows`): every
    coefficient must be finite; a set whose rows are all zero adds nothing and is left
    out; the sets in use are "shared" when every channel has channel 0's coefficients
    (the built-in file: one transform serves all). Rows mapped from a file (the
    uncompressed cache) are handed back once scanned; each is read again when its
    channel is corrected.
    """
    used = []
    same = {}
    for name, c in coeffs.items():
        rows = c[:nch]
        flags = romancore.refpix.scan_rows(rows)  # one compiled pass over the rows
        release_rows(c, 0, nch)
        if not flags[:, 0].all():
            raise CoefficientError(f"REFPIX '{name}' holds non-finite coefficients")
        same[name] = bool(flags[:, 2].all())
        if flags[:, 1].any():
            used.append(name)
    return tuple(used), bool(used) and all(same[name] for name in used)


def _store_amp33(out: np.ndarray, r: int, values: np.ndarray) -> None:
    """Write resultant ``r`` of the processed amp33 (romancal: ``abs`` then the cast)."""
    if np.issubdtype(out.dtype, np.integer):
        info = np.iinfo(out.dtype)
        values = np.clip(np.abs(values), info.min, info.max)
    out[r] = values


def _subtract_corrections(
    data: np.ndarray,
    spectra: dict[str, np.ndarray],
    coeffs: dict[str, np.ndarray],
    nch: int,
    n_samples: int,
    shared: bool,
) -> None:
    """Subtract ``irfft(sum_s spectra[s] * coeffs[s][c])`` from every channel ``c``.

    Channels are taken in groups of :data:`_CHANNEL_GROUP`, all resultants together,
    so each coefficient row is read once. The weighted sums of a group are formed in
    complex128 over blocks of :data:`_FREQ_BLOCK` frequencies (the block of the
    spectra stays in cache across the group's channels) and stored in single
    precision for the inverse FFT: the corrections are float32 values, like the data
    they change. Channels with identical coefficients (the built-in file) share one
    transform.
    """
    n_res, ny, _ = data.shape
    n_coeff = next(iter(spectra.values())).shape[1]
    names = tuple(spectra)
    channels = [0] if shared else list(range(nch))
    group = min(_CHANNEL_GROUP, len(channels))
    sums = np.empty((group, n_res, n_coeff), dtype=np.complex64)
    total = np.empty((n_res, _FREQ_BLOCK), dtype=np.complex128)
    term = np.empty_like(total)
    workers = min(effective_n_threads(), n_res)
    for g0 in range(0, len(channels), group):
        chans = channels[g0 : g0 + group]
        for f0 in range(0, n_coeff, _FREQ_BLOCK):
            f1 = min(f0 + _FREQ_BLOCK, n_coeff)
            acc, tmp = total[:, : f1 - f0], term[:, : f1 - f0]
            for i, c in enumerate(chans):
                for j, name in enumerate(names):
                    weights = coeffs[name][c, f0:f1]
                    if j == 0:
                        np.multiply(spectra[name][:, f0:f1], weights, out=acc)
                    else:
                        np.multiply(spectra[name][:, f0:f1], weights, out=tmp)
                        acc += tmp
                sums[i, :, f0:f1] = acc
        for name in names:  # this group's coefficient rows are done with (if mapped)
            release_rows(coeffs[name], chans[0], chans[-1] + 1)
        if data.dtype == np.float32 and data.flags.c_contiguous:
            # the group's series at once (float32, as large as the weighted sums)
            corr = fft.irfft(sums[: len(chans)], n_samples, axis=-1, workers=workers)
            romancore.refpix.subtract_channel_correction(
                data, corr, None if shared else chans[0])
            continue
        # float64 data: the same with NumPy
        for i, c in enumerate(chans):
            corr = fft.irfft(sums[i], n_samples, axis=-1, workers=workers)
            corr = corr.reshape(n_res, ny, ROW_SAMPLES)
            for target in range(nch) if shared else (c,):
                cols = slice(target * CHANNEL_WIDTH, (target + 1) * CHANNEL_WIDTH)
                # column x of the channel was sampled at read position x (even
                # channels) or 127 - x (odd channels, read right to left)
                if target % 2:
                    data[:, :, cols] -= corr[:, :, CHANNEL_WIDTH - 1 :: -1]
                else:
                    data[:, :, cols] -= corr[:, :, :CHANNEL_WIDTH]
