"""Linearity correction (romancal ``linearity`` step): classic and read-level."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from romancore import _linearity, _readlinearity
from romancore._threads import effective_n_threads
from romancore._validation import check_array, check_writeable
from romancore.readpattern import validate_read_pattern

__all__ = [
    "INL_CHANNEL_WIDTH",
    "MAX_COEFFS",
    "RESULTANT_CLIP",
    "apply_linearity",
    "apply_read_level_linearity",
]

#: Columns per amplifier channel, the unit of the integral non-linearity tables.
INL_CHANNEL_WIDTH = 128

#: romancal 1.1 clips linearised values beyond +-1e6 DN and flags them DO_NOT_USE.
RESULTANT_CLIP = 1.0e6

#: Largest number of polynomial coefficients the kernel accepts (order 63).
MAX_COEFFS = 64


def apply_linearity(
    data: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    coeffs: np.ndarray,
    coeffs_dq: np.ndarray,
    *,
    n_threads: int | None = None,
) -> None:
    """Apply ``F_c = sum_k c_k F**k`` to every resultant, in place.

    Following romancal ``linearity`` (``seeds/000:710-760``):

    * the polynomial, of any order, is evaluated by Horner's scheme in float32;
    * resultants flagged SATURATED in ``groupdq`` are left untouched;
    * a pixel with any NaN coefficient, or NO_LIN_CORR in ``coeffs_dq``, is not
      corrected and gets NO_LIN_CORR in ``pixeldq``;
    * as in stcal 1.20, a pixel whose linear coefficient ``c_1`` is zero is treated
      the same way (such a polynomial cannot describe a working pixel);
    * ``coeffs_dq`` is OR-ed into ``pixeldq``.

    Parameters
    ----------
    data : numpy.ndarray of float32, shape (n_resultants, ny, nx)
        Resultants in DN, corrected in place.
    groupdq : numpy.ndarray of uint8, shape (n_resultants, ny, nx)
        Group DQ (read only).
    pixeldq : numpy.ndarray of uint32, shape (ny, nx)
        Pixel DQ, updated in place.
    coeffs : numpy.ndarray, shape (n_coeffs, ny, nx)
        Polynomial coefficients ``c_0 .. c_{n_coeffs-1}`` (converted to float32);
        ``2 <= n_coeffs <= 64``.
    coeffs_dq : numpy.ndarray of integers, shape (ny, nx)
        DQ of the linearity reference (converted to uint32).
    n_threads : int or None, optional
        Threads to use (see :func:`romancore.effective_n_threads`).

    Raises
    ------
    ValueError
        For arrays of the wrong dtype, shape or layout, or an unsupported number of
        coefficients.
    """
    check_array(data, "data", np.float32, 3)
    n, ny, nx = data.shape
    check_array(groupdq, "groupdq", np.uint8, 3, data.shape)
    check_array(pixeldq, "pixeldq", np.uint32, 2, (ny, nx))
    check_writeable(data, "data")
    check_writeable(pixeldq, "pixeldq")
    coeffs = np.ascontiguousarray(coeffs, dtype=np.float32)
    coeffs_dq = np.ascontiguousarray(coeffs_dq, dtype=np.uint32)
    check_array(coeffs, "coeffs", np.float32, 3, (None, ny, nx))
    check_array(coeffs_dq, "coeffs_dq", np.uint32, 2, (ny, nx))
    if not 2 <= coeffs.shape[0] <= MAX_COEFFS:
        raise ValueError(
            f"coeffs must hold between 2 and {MAX_COEFFS} coefficients, got {coeffs.shape[0]}"
        )
    _linearity.linearity(
        data, groupdq, pixeldq, coeffs, coeffs_dq, effective_n_threads(n_threads)
    )


def _coefficients(coeffs: np.ndarray, name: str, ny: int, nx: int) -> np.ndarray:
    coeffs = np.ascontiguousarray(coeffs, dtype=np.float32)
    check_array(coeffs, name, np.float32, 3, (None, ny, nx))
    if not 2 <= coeffs.shape[0] <= MAX_COEFFS:
        raise ValueError(
            f"{name} must hold between 2 and {MAX_COEFFS} coefficients, got {coeffs.shape[0]}"
        )
    return coeffs


def _inl_tables(
    inl_values: np.ndarray | None,
    inl_corrections: np.ndarray | None,
    nx: int,
    channel_width: int,
) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """Validate the INL table.

    Returns the abscissae (float64), the per-channel interleaved (value, slope)
    table ``(n_channels, n_table, 2)``, the step of an exactly uniform table (else 0)
    and whether a table was given.
    """
    if inl_values is None and inl_corrections is None:
        return np.arange(2.0), np.zeros((1, 2, 2)), 0.0, False
    if inl_values is None or inl_corrections is None:
        raise ValueError("inl_values and inl_corrections must be given together")
    if isinstance(channel_width, bool) or not isinstance(channel_width, int | np.integer):
        raise ValueError(f"channel_width must be an integer, got {channel_width!r}")
    if channel_width < 1:
        raise ValueError(f"channel_width must be positive, got {channel_width}")
    # romancal reads the table abscissae as float32 and np.interp works in float64
    xp = np.asarray(inl_values)
    if xp.ndim != 1 or xp.size < 2 or not np.issubdtype(xp.dtype, np.number):
        raise ValueError(
            f"inl_values must be a 1-D numeric table of at least 2 entries, got shape {xp.shape}"
        )
    xp = np.ascontiguousarray(xp.astype(np.float32).astype(np.float64))
    if not np.all(np.isfinite(xp)) or np.any(np.diff(xp) <= 0):
        raise ValueError("inl_values must be finite and strictly increasing")
    fp = np.asarray(inl_corrections)
    if fp.ndim != 2 or fp.shape[1] != xp.size or not np.issubdtype(fp.dtype, np.number):
        raise ValueError(
            f"inl_corrections must be (n_channels, {xp.size}) numbers, got shape {fp.shape}"
        )
    n_channels = -(-nx // channel_width)
    if fp.shape[0] < n_channels:
        raise ValueError(
            f"inl_corrections has {fp.shape[0]} channels; {nx} columns of "
            f"{channel_width} per channel need {n_channels}"
        )
    fp = np.asarray(fp[:n_channels], dtype=np.float64)
    if not np.all(np.isfinite(fp)):
        raise ValueError("inl_corrections must be finite")
    table = np.zeros((n_channels, xp.size, 2), dtype=np.float64)
    table[:, :, 0] = fp
    # the bin slopes NumPy's interp uses (the same float64 operations)
    with np.errstate(all="ignore"):
        table[:, :-1, 1] = (fp[:, 1:] - fp[:, :-1]) / (xp[1:] - xp[:-1])
    # an exactly uniform grid (x_j == x_0 + j h in float64, as the kernel computes it)
    h = float(xp[1] - xp[0])
    uniform = np.array_equal(xp, xp[0] + np.arange(xp.size, dtype=np.float64) * h)
    return xp, table, (h if uniform else 0.0), True


def apply_read_level_linearity(
    data: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    coeffs: np.ndarray,
    coeffs_dq: np.ndarray,
    inverse_coeffs: np.ndarray,
    read_pattern: Sequence[Sequence[int]],
    *,
    inl_values: np.ndarray | None = None,
    inl_corrections: np.ndarray | None = None,
    channel_width: int = INL_CHANNEL_WIDTH,
    clip: float | None = None,
    rows: tuple[int, int] | None = None,
    n_threads: int | None = None,
) -> None:
    """Linearise every read of every resultant and re-average them, in place.

    A resultant is the mean of several non-linear reads, and the mean of non-linear
    values is not the non-linear value of the mean, so the polynomial is applied to
    reconstructed reads (stcal 1.20 ``linearity_correction`` with ``ilin_coeffs``,
    ``read_pattern`` and ``additional_correction``, as romancal 1.1 calls it).  Per
    pixel, with ``L`` the LINEARITY polynomial, ``L^-1`` the INVERSELINEARITY one,
    ``m_i`` the mean read number of resultant ``i`` and ``R_i`` the resultants:

    1. ``q`` = number of unsaturated resultants minus one, at least 2; the last
       trusted resultant is ``l = q - 1``;
    2. count rate ``c = (L(R_l) - L(R_0)) / (m_l - m_0)`` (linear DN per read);
    3. for resultant ``i`` with reads ``r``: ``u_r = L^-1(L(R_0) + c (r - m_0))``,
       shifted by ``R_i - mean_r(u_r)`` so that their mean is the measured ``R_i``;
    4. integral non-linearity: ``u_r += INL_ch(u_r)``, ``INL_ch`` the piecewise
       linear table of the pixel's amplifier channel (``numpy.interp`` rules,
       constant beyond the table);
    5. ``R_i = mean_r(L(u_r))``.

    As stcal: SATURATED resultants are not changed (their ``L(R)`` in steps 1-2 is
    the raw value); a pixel with NO_LIN_CORR in ``coeffs_dq``, a NaN coefficient or
    a zero linear term in either polynomial gets the identity for that polynomial and
    NO_LIN_CORR in ``pixeldq`` (its reads are still reconstructed and INL corrected);
    ``coeffs_dq`` is OR-ed into ``pixeldq``.  Not in stcal: when ``R_0`` or ``R_l``
    is non-finite or flagged DO_NOT_USE, the first usable resultant and the last usable
    one up to ``l`` (else the first unsaturated usable one after it) anchor the rate
    instead (reads at ``r - m_f``), and with no usable pair the pixel gets the classic
    polynomial, so a bad resultant changes only itself.  ``L(R_0)``, ``L(R_l)`` and their
    difference are float32, everything after float64; the result is rounded to
    float32.

    Parameters
    ----------
    data : numpy.ndarray of float32, shape (n_resultants, ny, nx)
        Resultants in DN, corrected in place; at least 2 resultants.
    groupdq : numpy.ndarray of uint8, shape (n_resultants, ny, nx)
        Group DQ (read only unless ``clip`` is given).
    pixeldq : numpy.ndarray of uint32, shape (ny, nx)
        Pixel DQ, updated in place.
    coeffs : numpy.ndarray, shape (n_coeffs, ny, nx)
        LINEARITY coefficients ``c_0 .. c_{n-1}`` (converted to float32), 2 to 64.
    coeffs_dq : numpy.ndarray of integers, shape (ny, nx)
        DQ of the LINEARITY reference (also decides where the inverse applies).
    inverse_coeffs : numpy.ndarray, shape (n_inverse, ny, nx)
        INVERSELINEARITY coefficients (converted to float32), 2 to 64.
    read_pattern : sequence of sequences of int
        1-based read numbers of each resultant.
    inl_values : numpy.ndarray, shape (n_table,), optional
        INTEGRALNONLINEARITY ``value`` table (DN, strictly increasing); with
        ``inl_corrections``.  Omitted: no integral non-linearity correction.
    inl_corrections : numpy.ndarray, shape (n_channels, n_table), optional
        The correction (DN, added) of each channel at ``inl_values``; channel ``k``
        covers columns ``k * channel_width`` to ``(k + 1) * channel_width - 1``.
    channel_width : int, optional
        Columns per channel (128 for the WFI).
    clip : float, optional
        If given, values beyond ``+-clip`` after the correction are clipped and
        flagged DO_NOT_USE in ``groupdq`` (romancal 1.1 uses 1e6).
    rows : tuple of int, optional
        ``(start, stop)``: correct only these rows (default all); each pixel's result
        does not depend on the others, so a cube corrected by row blocks is the same.
    n_threads : int or None, optional
        Threads to use (see :func:`romancore.effective_n_threads`).

    Raises
    ------
    ValueError
        For arrays of the wrong dtype, shape or layout, a read pattern that does not
        match the resultants, fewer than 2 resultants, an unsupported number of
        coefficients, an invalid INL table or rows outside the data.
    """
    check_array(data, "data", np.float32, 3)
    n, ny, nx = data.shape
    check_array(groupdq, "groupdq", np.uint8, 3, data.shape)
    check_array(pixeldq, "pixeldq", np.uint32, 2, (ny, nx))
    check_writeable(data, "data")
    check_writeable(pixeldq, "pixeldq")
    if n < 2:
        raise ValueError(
            f"read-level linearity needs at least 2 resultants, data has {n}"
        )
    coeffs = _coefficients(coeffs, "coeffs", ny, nx)
    inverse_coeffs = _coefficients(inverse_coeffs, "inverse_coeffs", ny, nx)
    coeffs_dq = np.ascontiguousarray(coeffs_dq, dtype=np.uint32)
    check_array(coeffs_dq, "coeffs_dq", np.uint32, 2, (ny, nx))
    pattern = validate_read_pattern(read_pattern)
    if len(pattern) != n:
        raise ValueError(
            f"read_pattern has {len(pattern)} resultants, data has {n}"
        )
    if clip is not None:
        clip = float(clip)
        if not np.isfinite(clip) or clip <= 0:
            raise ValueError(f"clip must be a positive finite number, got {clip!r}")
        check_writeable(groupdq, "groupdq")
    # Read times in units of reads relative to the first resultant (stcal 1.20:
    # mean read number of each resultant; reads minus the mean of resultant 0).
    mean_read = np.array([np.mean(reads) for reads in pattern], dtype=np.float64)
    rsf = np.concatenate([np.array(reads) - mean_read[0] for reads in pattern])
    rs_off = np.zeros(n + 1, dtype=np.intp)
    rs_off[1:] = np.cumsum([len(reads) for reads in pattern])
    dreads = np.ascontiguousarray(mean_read - mean_read[0])
    xp, table, step, has_inl = _inl_tables(inl_values, inl_corrections, nx, channel_width)
    row0, row1 = (0, ny) if rows is None else (int(rows[0]), int(rows[1]))
    if not 0 <= row0 <= row1 <= ny:
        raise ValueError(f"rows {row0}:{row1} are outside 0:{ny}")
    _readlinearity.read_level_linearity(
        data,
        groupdq,
        pixeldq,
        coeffs,
        coeffs_dq,
        inverse_coeffs,
        np.ascontiguousarray(rsf, dtype=np.float64),
        rs_off,
        dreads,
        xp,
        table,
        step,
        int(channel_width),
        has_inl,
        clip is not None,
        clip if clip is not None else 0.0,
        row0,
        row1,
        effective_n_threads(n_threads),
    )
