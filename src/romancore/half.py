"""float32 to float16 conversion (the RAD schema's float16 arrays of a ``_cal`` file)."""

from __future__ import annotations

import numpy as np

from romancore import _half
from romancore._threads import effective_n_threads

__all__ = ["scaled_float16", "to_float16"]


def to_float16(array: np.ndarray, *, n_threads: int | None = None) -> np.ndarray:
    """Return ``array`` (float32, any shape) converted to float16.

    The result is bit for bit ``array.astype(numpy.float16)``: IEEE round to nearest,
    ties to even; values beyond float16's range become a signed infinity, small ones
    subnormal halves or signed zeros; a NaN stays a NaN with its sign and the top of
    its payload.  NumPy's conversion raises the floating-point status flags value by
    value, which makes each value that underflows or overflows ~25 times slower to
    convert (~1 s for a 4088 x 4088 variance image in DN^2/s^2); this one raises no
    flag and no warning, and converts in parallel.

    Parameters
    ----------
    array : numpy.ndarray of float32
        The values (any layout; a non-contiguous array is copied first).
    n_threads : int or None, optional
        See `romancore.effective_n_threads`.

    Returns
    -------
    numpy.ndarray of float16
        A new C-contiguous array of the shape of ``array``.

    Raises
    ------
    ValueError
        If ``array`` is not a float32 numpy array.
    """
    if not isinstance(array, np.ndarray):
        raise ValueError(f"array must be a numpy array, got {type(array).__name__}")
    if array.dtype != np.float32:
        raise ValueError(f"array must have dtype float32, got {array.dtype}")
    src = np.ascontiguousarray(array)
    out = np.empty(src.shape, dtype=np.float16)
    if src.size:
        _half.float16_bits(src.reshape(-1).view(np.uint32), out.reshape(-1).view(np.uint16),
                           effective_n_threads(n_threads))
    return out


def scaled_float16(values: np.ndarray, factor: float, *,
                   n_threads: int | None = None) -> np.ndarray:  # fmt: skip
    """Return float16 ``values`` times ``factor`` rounded to float16, as float32.

    Bit for bit ``np.multiply(values, np.float32(factor), dtype=np.float32)
    .astype(np.float16).astype(np.float32)`` (a float16 array scaled as a model scales
    it, then widened for a float32 kernel), in one pass and without NumPy's slow
    path for the products that underflow float16.

    Parameters
    ----------
    values : numpy.ndarray of float16 (native byte order)
        The values (any shape; a non-contiguous array is copied first).
    factor : float
        The scale (rounded to float32).
    n_threads : int or None, optional
        See `romancore.effective_n_threads`.

    Returns
    -------
    numpy.ndarray of float32
        A new C-contiguous array of the shape of ``values``.

    Raises
    ------
    ValueError
        If ``values`` is not a float16 numpy array in native byte order.
    """
    if not isinstance(values, np.ndarray):
        raise ValueError(f"values must be a numpy array, got {type(values).__name__}")
    if values.dtype != np.dtype(np.float16):
        raise ValueError(f"values must have dtype float16 (native order), got {values.dtype}")
    src = np.ascontiguousarray(values)
    out = np.empty(src.shape, dtype=np.float32)
    if src.size:
        flat = src.reshape(1, -1) if src.ndim != 2 else src
        _half.scaled_float16(flat.view(np.uint16), float(factor),
                             out.reshape(flat.shape), effective_n_threads(n_threads))  # fmt: skip
    return out
