"""Classic polynomial linearity correction (romancal ``linearity`` step)."""

from __future__ import annotations

import numpy as np

from romancore import _linearity
from romancore._threads import effective_n_threads
from romancore._validation import check_array, check_writeable

__all__ = ["MAX_COEFFS", "apply_linearity"]

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
