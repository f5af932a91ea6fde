"""Reference-pixel correction of a ramp, as pure array functions (no models, no logging).

Three estimates of the read-out electronics signal are made for each resultant
(read-out plane) from its reference pixels, in this order:

1. **amp33 common mode** (optional, off by default): the row-by-row mean of the
   33rd reference output, minus its mean over the plane, is a row-correlated signal
   shared by all outputs because amp33 is sampled in lock-step with the 32 science
   channels.
2. **Channel offsets** from the top and bottom reference rows: for every 128-column
   channel (amplifier), and separately for even and odd columns if asked, the mean of
   the usable top reference pixels and the mean of the usable bottom ones are averaged.
3. **Row-correlated (1/f) signal** from the left and right reference columns: after
   parts 1 and 2, the mean of the usable side reference pixels of each row is smoothed
   with a running median along the rows and scaled by ``side_gain``. A side takes
   part only if all its columns are flagged REFERENCE_PIXEL over the science rows.

4. **The pixel's level is kept.** Each estimate is centred on its mean over the
   resultants, and only that deviation (the time-varying part of the electronics
   signal) is subtracted. A pixel's mean over the resultants is therefore unchanged,
   so the ``linearity`` step sees the pixel's own level (pedestal included), the level
   the official LINEARITY reference files are defined on; this is the effect of
   romancal 1.1's ``remove_offset`` / ``apply_offset`` around its correction. A
   constant offset changes no slope, so the centring only matters through the
   non-linearity correction.

The estimates only need the reference rows, columns and amp33, which are copied
(vectors per resultant); each plane is then changed in place once, in blocks of
rows, so the memory overhead does not grow with the cube.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import median_filter

from romancal_lite.references._spec import BORDER
from romancore.dqflags import pixel

__all__ = [
    "BORDER",
    "CHANNEL_WIDTH",
    "RefPixReport",
    "correct_reference_pixels",
    "usable_reference_mask",
]

#: Columns per science amplifier (channel); a WFI detector has 32 of them.
CHANNEL_WIDTH = 128

#: Pixel flags that exclude a reference pixel from every estimate.
_EXCLUDE = np.uint32(pixel.DO_NOT_USE | pixel.BAD_REF_PIXEL)
_REFERENCE = np.uint32(pixel.REFERENCE_PIXEL)
#: Rows of a plane changed per block (32 rows x 4096 columns x 4 bytes = 512 KiB),
#: so that both subtractions of a block happen while it is in cache.
_BLOCK_ROWS = 32


class RefPixReport(NamedTuple):
    """What `correct_reference_pixels` could do; the caller decides what to log.

    Attributes
    ----------
    sides : tuple of str
        Side reference columns used for the row-correlated correction: a subset of
        ``("left", "right")``; empty if ``use_side_ref_pixels`` was false or no side
        is flagged as reference columns (or none of its pixels is usable).
    uncorrected : tuple of (int, int)
        ``(resultant, channel)`` pairs left without an offset correction because the
        channel had no usable top or bottom reference pixel in that resultant.
    amp33_used : bool
        Whether the amp33 common-mode term was subtracted in at least one resultant
        (false if not asked for, or if amp33 held only zeros).
    """

    sides: tuple[str, ...]
    uncorrected: tuple[tuple[int, int], ...]
    amp33_used: bool


def usable_reference_mask(pixeldq: np.ndarray) -> np.ndarray:
    """Return where a pixel is a reference pixel that may be used.

    Parameters
    ----------
    pixeldq : numpy.ndarray
        Integer pixel DQ array (any shape).

    Returns
    -------
    numpy.ndarray of bool
        True where REFERENCE_PIXEL is set and neither DO_NOT_USE nor BAD_REF_PIXEL is.
    """
    dq = np.asarray(pixeldq)
    return ((dq & _REFERENCE) != 0) & ((dq & _EXCLUDE) == 0)


def correct_reference_pixels(
    data: np.ndarray,
    pixeldq: np.ndarray,
    amp33: np.ndarray | None = None,
    *,
    odd_even_columns: bool = True,
    use_side_ref_pixels: bool = True,
    side_smoothing_length: int = 11,
    side_gain: float = 1.0,
    use_amp33: bool = False,
    channel_width: int = CHANNEL_WIDTH,
    border: int = BORDER,
) -> RefPixReport:
    """Remove the time-varying read-out electronics signal the reference pixels measure.

    A pixel is a *usable* reference pixel if ``pixeldq`` flags it REFERENCE_PIXEL and
    not DO_NOT_USE or BAD_REF_PIXEL, and its value is finite. For each resultant:

    1. If ``use_amp33``: ``a[r]`` = mean of the nonzero amp33 samples of row ``r``
       minus the mean of all nonzero samples of the plane (rows without a nonzero
       sample get ``a[r] = 0``). A sample of exactly 0 DN is taken as missing. The
       later estimates are made on data with ``a`` already removed.
    2. For each channel (block of ``channel_width`` columns) and, if
       ``odd_even_columns``, each column parity: the offset is the average of the mean
       of the usable pixels in the top ``border`` rows and the mean of those in the
       bottom ``border`` rows (only one of the two if the other has none). If one
       parity has no usable pixel, the channel's mean over both parities is used for
       it; if the channel has none at all, its offset is 0 and it is reported in
       `RefPixReport.uncorrected`.
    3. If ``use_side_ref_pixels``: a side (the first or last ``border`` columns) is
       used if all its pixels in the science rows ``border:ny-border`` are flagged
       REFERENCE_PIXEL and at least one of its pixels is usable. For each used side,
       the per-row mean of its usable pixels (after parts 1 and 2) is smoothed by a
       running median of ``side_smoothing_length`` rows centred on each row, the rows
       beyond either end being mirrored about the end row; rows without a usable
       pixel are left out of the windows. The signal ``s[r]`` is the mean of the
       sides that have a value at row ``r``; rows where no side has one (a window
       of unusable rows on every side) are filled by linear interpolation along the
       rows.

    4. Each estimate is centred on its mean over the resultants (over those in which
       it exists): ``offset_k - mean_k(offset_k)`` per column, ``a_k[r] - mean_k(a_k[r])``
       and ``s_k[r] - mean_k(s_k[r])`` per row. An estimate that does not exist in a
       resultant (a channel without usable top/bottom pixels, no usable side, an
       all-zero amp33) contributes 0 there.

    Finally the centred ``offset[channel, parity] + a[r] + side_gain * s[r]`` of
    resultant ``k`` is subtracted from every pixel (reference pixels included) of
    resultant ``k``. The correction sums to zero over the resultants, so every
    pixel keeps its mean level over the exposure: ``linearity`` then sees the raw
    level minus only the drifts and noise the reference pixels measure, as after
    romancal 1.1's refpix. With a single resultant nothing is changed.

    Parameters
    ----------
    data : numpy.ndarray
        Float ramp ``[n_resultants, ny, nx]``, the full read-out including the
        reference border. Modified in place.
    pixeldq : numpy.ndarray
        Integer pixel DQ ``[ny, nx]``; reference pixels carry REFERENCE_PIXEL.
    amp33 : numpy.ndarray, optional
        The 33rd-output samples ``[n_resultants, ny, width]``; required if
        ``use_amp33``, otherwise only its shape is checked.
    odd_even_columns : bool, optional
        Estimate separate offsets for even and odd columns of each channel.
    use_side_ref_pixels : bool, optional
        Remove the row-correlated signal of the side reference columns (part 3).
    side_smoothing_length : int, optional
        Height in rows of the running-median window (``>= 1``; 1 means no
        smoothing). The window is centred, so an even length ``L`` acts as ``L + 1``.
    side_gain : float, optional
        Factor applied to the side signal before it is subtracted (finite).
    use_amp33 : bool, optional
        Remove the amp33 row common mode (part 1).
    channel_width : int, optional
        Columns per channel; ``nx`` must be a multiple of it (even if
        ``odd_even_columns``).
    border : int, optional
        Width of the reference border (rows at the top and bottom, columns at the sides).

    Returns
    -------
    RefPixReport
        Sides used, channels left uncorrected and whether amp33 was used.

    Raises
    ------
    ValueError
        If an array has the wrong type, dimensions or shape, ``data`` is not a
        writeable float array, or a parameter is out of range.

    Notes
    -----
    Part 2 also removes the part of the discretization bias of the A/D conversion,
    ``-0.5 - 0.5 (N - 1) / N`` DN for a resultant of ``N`` reads (seeds/000:700-704),
    that changes from resultant to resultant: the reference pixels are digitized and
    averaged like the science pixels, so the per-resultant level they give contains
    the same bias (seeds/000:706). Its mean over the resultants stays in the level, as
    any constant does; it changes no slope.

    Compared with the JWST NIR algorithm (seeds/001:21655-21666) the reference means
    are not sigma-clipped, BAD_REF_PIXEL is excluded besides DO_NOT_USE, and the
    running median is taken over per-row means rather than over all pixels of the
    window. The REFPIX reference file of romancal (FFT weights) is not used.
    """
    _check_inputs(
        data, pixeldq, amp33, use_amp33, side_smoothing_length, side_gain, channel_width,
        border, odd_even_columns,
    )
    n_resultants, ny, nx = data.shape
    nchan = nx // channel_width
    groups = 2 if odd_even_columns else 1

    # static masks of usable reference pixels, from pixeldq only
    top_mask = usable_reference_mask(pixeldq[:border])
    bottom_mask = usable_reference_mask(pixeldq[ny - border :])
    side_cols = _side_columns(pixeldq, nx, border) if use_side_ref_pixels else {}
    side_masks = {
        name: usable_reference_mask(pixeldq[:, cols]) for name, cols in side_cols.items()
    }
    side_masks = {name: mask for name, mask in side_masks.items() if mask.any()}

    half = (side_smoothing_length // 2) if side_smoothing_length > 1 else 0
    rows_ref = np.r_[0:border, ny - border : ny]

    # pass 1: the estimates of every resultant, from the reference pixels only
    # (vectors of nx and ny values per resultant; the planes are not written)
    col_est = np.zeros((n_resultants, nx), dtype=np.float64)
    col_ok = np.zeros((n_resultants, nchan), dtype=bool)
    amp_est = np.zeros((n_resultants, ny), dtype=np.float64)
    amp_ok = np.zeros(n_resultants, dtype=bool)
    side_est = np.zeros((n_resultants, ny), dtype=np.float64)
    side_ok = np.zeros(n_resultants, dtype=bool)
    for k in range(n_resultants):
        plane = data[k]
        if use_amp33:
            assert amp33 is not None
            a = _amp33_row_term(amp33[k])
            if a is not None:
                amp_est[k] = a
                amp_ok[k] = True
        row_term = amp_est[k]

        # part 2: per-channel (and parity) offsets from the top and bottom rows
        ref_rows = plane[rows_ref].astype(np.float64)
        ref_rows -= row_term[rows_ref, None]
        top = _group_means(ref_rows[:border], top_mask, nchan, channel_width, groups)
        bottom = _group_means(ref_rows[border:], bottom_mask, nchan, channel_width, groups)
        offsets, missing = _combine_offsets(top, bottom)
        col_ok[k] = ~missing
        col_est[k] = _column_vector(offsets, channel_width, groups)

        # part 3: row-correlated signal of the side reference columns
        if side_masks:
            signals = []
            for name, mask in side_masks.items():
                cols = side_cols[name]
                values = (
                    plane[:, cols].astype(np.float64)
                    - row_term[:, None]
                    - col_est[k, None, cols]
                )
                sig = _side_signal(values, mask, half)
                if sig is not None:
                    signals.append(sig)
            combined = _combine_sides(signals) if signals else None
            if combined is not None:
                side_est[k] = combined
                side_ok[k] = True

    # part 4: keep each pixel's level, remove only the change from resultant to resultant
    col_corr = _deviation_from_mean(col_est, np.repeat(col_ok, channel_width, axis=1))
    row_corr = _deviation_from_mean(amp_est, amp_ok[:, None])
    row_corr += side_gain * _deviation_from_mean(side_est, side_ok[:, None])

    # pass 2: subtract, in place, in blocks of rows
    for k in range(n_resultants):
        plane = data[k]
        _subtract(plane, col_corr[k].astype(plane.dtype), row_corr[k].astype(plane.dtype))

    uncorrected = tuple((k, int(c)) for k, c in zip(*np.nonzero(~col_ok), strict=True))
    return RefPixReport(tuple(side_masks), uncorrected, bool(amp_ok.any()))


# ----------------------------------------------------------------------------- helpers


def _check_inputs(
    data: object,
    pixeldq: object,
    amp33: object,
    use_amp33: bool,
    side_smoothing_length: int,
    side_gain: float,
    channel_width: int,
    border: int,
    odd_even_columns: bool,
) -> None:
    if not isinstance(data, np.ndarray):
        raise ValueError(f"data must be a numpy array, got {type(data).__name__}")
    if data.ndim != 3:
        raise ValueError(f"data must be 3-D [resultant, y, x], got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.floating):
        raise ValueError(f"data must be a float array (it is corrected in place), got {data.dtype}")
    if not data.flags.writeable:
        raise ValueError("data must be writeable (it is corrected in place)")
    if not isinstance(pixeldq, np.ndarray) or not np.issubdtype(pixeldq.dtype, np.integer):
        raise ValueError("pixeldq must be an integer numpy array")
    if pixeldq.shape != data.shape[1:]:
        raise ValueError(
            f"pixeldq shape {pixeldq.shape} does not match the data planes {data.shape[1:]}"
        )
    if amp33 is not None:
        if not isinstance(amp33, np.ndarray) or amp33.ndim != 3:
            raise ValueError("amp33 must be a 3-D numpy array [resultant, y, width]")
        if amp33.shape[:2] != data.shape[:2] or amp33.shape[2] < 1:
            raise ValueError(
                f"amp33 shape {amp33.shape} does not match data {data.shape}: the number of"
                " resultants and rows must agree"
            )
    elif use_amp33:
        raise ValueError("use_amp33 is set but no amp33 array was given")
    if isinstance(side_smoothing_length, bool) or not isinstance(
        side_smoothing_length, int | np.integer
    ) or side_smoothing_length < 1:
        raise ValueError(
            f"side_smoothing_length must be an integer >= 1, got {side_smoothing_length!r}"
        )
    if isinstance(side_gain, bool) or not np.isfinite(side_gain):
        raise ValueError(f"side_gain must be a finite number, got {side_gain!r}")
    if not isinstance(border, int | np.integer) or isinstance(border, bool) or border < 1:
        raise ValueError(f"border must be an integer >= 1, got {border!r}")
    if (
        not isinstance(channel_width, int | np.integer)
        or isinstance(channel_width, bool)
        or channel_width < 1
    ):
        raise ValueError(f"channel_width must be an integer >= 1, got {channel_width!r}")
    if odd_even_columns and channel_width % 2:
        raise ValueError(
            f"channel_width must be even with odd_even_columns, got {channel_width}"
        )
    ny, nx = data.shape[1:]
    if nx % channel_width:
        raise ValueError(f"nx = {nx} is not a multiple of channel_width = {channel_width}")
    if ny <= 2 * border or nx < border:
        raise ValueError(
            f"planes of {ny} x {nx} pixels are too small for a {border}-pixel reference border"
        )


def _side_columns(pixeldq: np.ndarray, nx: int, border: int) -> dict[str, slice]:
    """Return the sides whose columns are all REFERENCE_PIXEL over the science rows."""
    science = pixeldq[border:-border]
    sides: dict[str, slice] = {}
    for name, cols in (("left", slice(0, border)), ("right", slice(nx - border, nx))):
        if science[:, cols].size and np.all(science[:, cols] & _REFERENCE):
            sides[name] = cols
    if nx < 2 * border:
        # the two sides would overlap: keep the left one only
        sides.pop("right", None)
    return sides


def _group_means(
    rows: np.ndarray, mask: np.ndarray, nchan: int, width: int, groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the usable pixels of ``rows`` per (channel, parity)."""
    use = mask & np.isfinite(rows)
    sums = np.where(use, rows, 0.0).sum(axis=0).reshape(nchan, width // groups, groups)
    counts = use.sum(axis=0).reshape(nchan, width // groups, groups)
    return sums.sum(axis=1), counts.sum(axis=1)


def _combine_offsets(
    top: tuple[np.ndarray, np.ndarray], bottom: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Average the top and bottom means per (channel, parity), with the fallbacks.

    Returns the offsets ``[nchan, groups]`` and a boolean ``[nchan]`` of channels
    without any usable pixel (offset 0).
    """

    def mean_of(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def top_bottom(t: np.ndarray, b: np.ndarray) -> np.ndarray:
        # mean of the available ones; NaN where both are missing
        both = np.stack([t, b])
        n = np.isfinite(both).sum(axis=0)
        return np.where(n > 0, np.nansum(both, axis=0) / np.maximum(n, 1), np.nan)

    offsets = top_bottom(mean_of(*top), mean_of(*bottom))
    # whole-channel value, for a parity without usable pixels
    channel = top_bottom(
        mean_of(top[0].sum(axis=1), top[1].sum(axis=1)),
        mean_of(bottom[0].sum(axis=1), bottom[1].sum(axis=1)),
    )
    offsets = np.where(np.isfinite(offsets), offsets, channel[:, None])
    missing = ~np.isfinite(channel)
    offsets[missing] = 0.0
    return offsets, missing


def _column_vector(offsets: np.ndarray, width: int, groups: int) -> np.ndarray:
    """Expand ``[nchan, groups]`` offsets to one value per column."""
    nchan = offsets.shape[0]
    return np.broadcast_to(offsets[:, None, :], (nchan, width // groups, groups)).reshape(-1)


def _side_signal(values: np.ndarray, mask: np.ndarray, half: int) -> np.ndarray | None:
    """Smooth one side's per-row means by a running median (None: no usable pixel).

    Rows whose window holds no usable row are NaN.
    """
    use = mask & np.isfinite(values)
    counts = use.sum(axis=1)
    good = counts > 0
    if not good.any():
        return None
    mean = np.full(values.shape[0], np.nan)
    mean[good] = np.where(use, values, 0.0).sum(axis=1)[good] / counts[good]
    if not half:
        return mean
    if good.all():
        # mirror-reflected ends (c b | a b c d | c b), as the JWST pipeline pads
        return median_filter(mean, size=2 * half + 1, mode="mirror")
    # rows without a usable pixel are left out of the windows that contain them
    # (numpy's "reflect" padding is scipy's "mirror")
    windows = sliding_window_view(np.pad(mean, half, mode="reflect"), 2 * half + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows stay NaN
        return np.nanmedian(windows, axis=1)


def _combine_sides(signals: list[np.ndarray]) -> np.ndarray | None:
    """Row-by-row mean of the sides' signals; rows missing everywhere interpolated."""
    stack = np.vstack(signals)
    n = np.isfinite(stack).sum(axis=0)
    good = n > 0
    if not good.any():
        return None
    signal = np.where(good, np.nansum(stack, axis=0) / np.maximum(n, 1), 0.0)
    if not good.all():
        rows = np.arange(signal.size)
        signal[~good] = np.interp(rows[~good], rows[good], signal[good])
    return signal


def _amp33_row_term(plane: np.ndarray) -> np.ndarray | None:
    """amp33 row means minus the plane mean, over nonzero samples; None if all zero."""
    present = plane != 0
    counts = present.sum(axis=1)
    total = counts.sum()
    if total == 0:
        return None
    sums = plane.sum(axis=1, dtype=np.float64)  # zeros add nothing
    level = sums.sum() / total
    term = np.zeros(plane.shape[0], dtype=np.float64)
    good = counts > 0
    term[good] = sums[good] / counts[good] - level
    return term


def _deviation_from_mean(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``values - mean over resultants``, the mean taken where ``ok``; 0 where not ``ok``.

    ``values`` is ``[n_resultants, m]``; ``ok`` broadcasts against it.  A column with
    no ``ok`` resultant is all 0.
    """
    ok = np.broadcast_to(ok, values.shape)
    counts = ok.sum(axis=0)
    mean = np.where(ok, values, 0.0).sum(axis=0) / np.maximum(counts, 1)
    return np.where(ok, values - mean, 0.0)


def _subtract(plane: np.ndarray, col: np.ndarray, row: np.ndarray) -> None:
    """``plane -= col[None, :] + row[:, None]`` in row blocks, without a full temporary."""
    any_row = bool(np.any(row))
    for start in range(0, plane.shape[0], _BLOCK_ROWS):
        block = plane[start : start + _BLOCK_ROWS]
        block -= col
        if any_row:
            block -= row[start : start + _BLOCK_ROWS, None]
