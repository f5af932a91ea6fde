"""Saturation flagging of up-the-ramp resultants (romancal ``saturation`` step)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from romancore import _saturation
from romancore._threads import effective_n_threads
from romancore._validation import check_array, check_writeable
from romancore.readpattern import validate_read_pattern

__all__ = ["ATOD_LIMIT", "dilution_factors", "flag_saturation"]

#: Hard limit of the 16-bit analogue-to-digital converter, in DN (000:560).
ATOD_LIMIT = 65535.0


def dilution_factors(read_pattern: Sequence[Sequence[int]]) -> np.ndarray:
    """Return ⟨t⟩ / max(t) over the reads of each resultant (000:562).

    A resultant averaging reads of which only the later ones saturated can stay below
    the saturation threshold; scaling the threshold by this factor catches it.

    Parameters
    ----------
    read_pattern : sequence of sequences of int
        1-based read numbers of each resultant.

    Returns
    -------
    numpy.ndarray of float64, shape (n_resultants,)
        1 for single-read resultants.
    """
    pattern = validate_read_pattern(read_pattern)
    return np.array([np.mean(r) / r[-1] for r in pattern], dtype=np.float64)


def _second_resultant_constants(pattern: list[list[int]]) -> np.ndarray:
    if len(pattern) < 3:
        return np.empty(0, dtype=np.float64)
    return np.array(
        [np.mean(pattern[0]), pattern[2][-1], len(pattern[1])], dtype=np.float64
    )


def flag_saturation(
    data: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    threshold: np.ndarray,
    threshold_dq: np.ndarray,
    read_pattern: Sequence[Sequence[int]],
    *,
    n_pix_grow_sat: int = 0,
    n_threads: int | None = None,
) -> None:
    """Flag saturated and A/D-floor resultants, updating the DQ arrays in place.

    For each pixel (romancal ``saturation``, ``seeds/000:552-566``):

    * a resultant ``>= threshold`` is flagged SATURATED, and so is every later
      resultant of that pixel;
    * a resultant ``<= 0`` is flagged AD_FLOOR | DO_NOT_USE (that resultant only);
    * a NaN threshold, or NO_SAT_CHECK in ``threshold_dq``, means the threshold is the
      16-bit limit 65535 DN and NO_SAT_CHECK is set in ``pixeldq``;
    * dilution: the resultant just before the first saturated one is flagged
      SATURATED too when it averages several reads and reaches
      ``threshold * mean(t) / max(t)`` of its reads (the reads after saturation pull
      the average below the threshold);
    * as in stcal 1.20, resultant 1 is flagged SATURATED when resultant 2 is the first
      saturated one and the jump from resultant 0 to 1 is larger than the remaining
      headroom divided by the reads of resultant 1, while resultant 0 extrapolated to
      the end of resultant 2 stays below threshold (a saturating event late in
      resultant 1);
    * a non-finite value is no measurement: +inf is not saturation, NaN gets no flag,
      -inf is below the A/D floor, and none takes part in the dilution or resultant-1
      checks (`romancore.fit_ramps` flags every non-finite resultant DO_NOT_USE);
    * ``threshold_dq`` is OR-ed into ``pixeldq``;
    * with ``n_pix_grow_sat = k > 0`` the saturation (threshold and dilution) of each
      resultant is grown to the (2k + 1) x (2k + 1) square around each pixel.

    Differences from ``stcal.saturation.flag_saturated_pixels`` 1.20 (documented in
    ``docs/romancore.md`` and asserted by the tests):

    * resultants caught by dilution or by the resultant-1 check get SATURATED (the
      seed's wording), where stcal sets DO_NOT_USE; both exclude them from the ramp fit,
      and the linearity correction then leaves them untouched, as any saturated value;
    * a no-check pixel is saturated at ``>= 65535`` DN (the seed's "reaches that hard
      limit"); stcal uses ``>= 65536``, so it never flags a value of exactly 65535;
    * the growth of diluted resultants marks the neighbours SATURATED from that resultant
      on (saturation persists), where stcal marks DO_NOT_USE on that resultant only;
    * a +inf value is not saturation; stcal flags it (and every later resultant).

    Parameters
    ----------
    data : numpy.ndarray of float32, shape (n_resultants, ny, nx)
        Resultants in DN.  Not modified.
    groupdq : numpy.ndarray of uint8, shape (n_resultants, ny, nx)
        Group DQ, updated in place.
    pixeldq : numpy.ndarray of uint32, shape (ny, nx)
        Pixel DQ, updated in place.
    threshold : numpy.ndarray, shape (ny, nx)
        Saturation threshold in DN per pixel (converted to float32; not modified).
    threshold_dq : numpy.ndarray of integers, shape (ny, nx)
        DQ of the saturation reference (converted to uint32; not modified).
    read_pattern : sequence of sequences of int
        1-based read numbers of each resultant; its length must be ``n_resultants``.
    n_pix_grow_sat : int, optional
        Number of neighbouring pixels to grow saturation into (default 0).
    n_threads : int or None, optional
        Threads to use (see :func:`romancore.effective_n_threads`).

    Raises
    ------
    ValueError
        For arrays of the wrong dtype, shape or layout, a read pattern that does not
        match the number of resultants, or a negative ``n_pix_grow_sat``.
    """
    check_array(data, "data", np.float32, 3)
    n, ny, nx = data.shape
    check_array(groupdq, "groupdq", np.uint8, 3, data.shape)
    check_array(pixeldq, "pixeldq", np.uint32, 2, (ny, nx))
    check_writeable(groupdq, "groupdq")
    check_writeable(pixeldq, "pixeldq")
    threshold = np.ascontiguousarray(threshold, dtype=np.float32)
    threshold_dq = np.ascontiguousarray(threshold_dq, dtype=np.uint32)
    check_array(threshold, "threshold", np.float32, 2, (ny, nx))
    check_array(threshold_dq, "threshold_dq", np.uint32, 2, (ny, nx))
    pattern = validate_read_pattern(read_pattern)
    if len(pattern) != n:
        raise ValueError(
            f"read_pattern has {len(pattern)} resultants but data has {n}"
        )
    if isinstance(n_pix_grow_sat, bool) or int(n_pix_grow_sat) != n_pix_grow_sat:
        raise ValueError(f"n_pix_grow_sat must be an integer, got {n_pix_grow_sat!r}")
    if n_pix_grow_sat < 0:
        raise ValueError(f"n_pix_grow_sat must be >= 0, got {n_pix_grow_sat}")
    if n > np.iinfo(np.int16).max:
        raise ValueError(f"too many resultants ({n})")
    threads = effective_n_threads(n_threads)
    dilution = dilution_factors(pattern)
    second = _second_resultant_constants(pattern)

    unused = np.zeros((1, 1), dtype=np.int16)
    mode = _saturation.Mode
    if n_pix_grow_sat == 0:
        _saturation.saturation_pass(
            mode.MODE_ALL, data, groupdq, pixeldq, threshold, threshold_dq, unused, unused,
            dilution, second, threads,
        )
        return

    # Growth: saturation of a pixel is its first saturated index; growing it is a
    # minimum filter over the (2k+1)^2 box (outside the detector counts as unsaturated).
    size = 2 * int(n_pix_grow_sat) + 1
    fs = np.empty((ny, nx), dtype=np.int16)
    _saturation.saturation_pass(
        mode.MODE_FIRST, data, groupdq, pixeldq, threshold, threshold_dq, unused, fs,
        dilution, second, threads,
    )
    fs = ndimage.minimum_filter(fs, size=size, mode="constant", cval=n)
    dil = np.empty((ny, nx), dtype=np.int16)
    _saturation.saturation_pass(
        mode.MODE_DILUTE, data, groupdq, pixeldq, threshold, threshold_dq, fs, dil,
        dilution, second, threads,
    )
    del fs
    dil = ndimage.minimum_filter(dil, size=size, mode="constant", cval=n)
    _saturation.flag_from_map(groupdq, dil, threads)
