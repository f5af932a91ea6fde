"""Masked convolution with a separable kernel (source detection image)."""

from __future__ import annotations

import numpy as np

from romancore import _convolve
from romancore._threads import effective_n_threads
from romancore._validation import check_array

__all__ = ["convolve_separable_masked"]


def convolve_separable_masked(
    data: np.ndarray,
    bad: np.ndarray,
    kernel_y: np.ndarray,
    kernel_x: np.ndarray,
    *,
    empty_value: float = np.nan,
    n_threads: int | None = None,
) -> np.ndarray:
    """Convolve ``data`` with ``outer(kernel_y, kernel_x)``, ignoring bad pixels.

    The same numbers as ``astropy.convolution.convolve(data, kernel, mask=bad)``
    (``boundary="fill"``, ``fill_value=0``, ``normalize_kernel=True``,
    ``nan_treatment="interpolate"``) for the rank-1 ``kernel``: each output pixel is
    the kernel-weighted sum of the good input pixels divided by the kernel weight of
    those pixels; pixels beyond the edges count as good zeros; bad pixels and
    non-finite data are left out of both sums, so they are interpolated from their
    neighbours. Row-parallel, no full-size temporary, identical for any thread count.

    Parameters
    ----------
    data : numpy.ndarray of float64, shape (ny, nx)
        C-contiguous image.
    bad : numpy.ndarray of bool or uint8, shape (ny, nx)
        Pixels to leave out (non-zero).
    kernel_y, kernel_x : numpy.ndarray
        The 1-D factors of the kernel (odd lengths), as convolution kernels: they are
        flipped here, as a convolution flips its kernel.
    empty_value : float, optional
        The value of pixels with no good pixel under the kernel (NaN, as astropy).
    n_threads : int or None, optional
        Threads to use (see :func:`romancore.effective_n_threads`).

    Returns
    -------
    numpy.ndarray of float64, shape (ny, nx)
        The convolved image; ``empty_value`` where no good pixel lies under the
        kernel (good weight ``<= 1e-12`` of the kernel's sum).

    Raises
    ------
    ValueError
        For arrays of the wrong dtype, shape or layout, even-length or non-finite
        kernels, or a kernel summing to zero.
    """
    check_array(data, "data", np.float64, 2)
    if isinstance(bad, np.ndarray) and bad.dtype == np.bool_:
        bad = bad.view(np.uint8)
    check_array(bad, "bad", np.uint8, 2, data.shape)
    factors = []
    for name, k in (("kernel_y", kernel_y), ("kernel_x", kernel_x)):
        k = np.asarray(k, dtype=np.float64)
        if k.ndim != 1 or k.size % 2 != 1:
            raise ValueError(f"{name} must be 1-D of odd length, got shape {k.shape}")
        if not np.all(np.isfinite(k)):
            raise ValueError(f"{name} has non-finite values")
        factors.append(np.ascontiguousarray(k[::-1]))
    if factors[0].sum() * factors[1].sum() == 0.0:
        raise ValueError("the kernel sums to zero: it cannot be normalized")
    out = np.empty(data.shape, dtype=np.float64)
    _convolve.convolve_separable(
        data, bad, factors[0], factors[1], out, effective_n_threads(n_threads),
        float(empty_value),
    )
    return out
