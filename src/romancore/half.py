"""float32 to float16 conversion (the RAD schema's float16 arrays of a ``_cal`` file)."""

from __future__ import annotations

import numpy as np

from romancore import _half
from romancore._threads import effective_n_threads

__all__ = ["scale_float16", "to_float16"]


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
    src, out = _source_and_output(array, np.float32)
    if src.size:
        _half.float16_bits(src.view(np.uint32), out.reshape(-1).view(np.uint16),
                           effective_n_threads(n_threads))
    return out


def scale_float16(array: np.ndarray, factor: float, *, widen: bool = False,
                  n_threads: int | None = None) -> np.ndarray:
    """Return a float16 array times ``factor``, computed in float32, as float16.

    Bit for bit ``numpy.multiply(array, numpy.float32(factor),
    dtype=numpy.float32).astype(numpy.float16)`` (each value widened exactly, one
    float32 product, rounded as `to_float16`), in one parallel pass without the
    float32 intermediate: how a flux-converted ``err`` or variance of a ``_cal`` file
    is read. With ``widen``, the rounded values come back as float32 (``...
    .astype(numpy.float32)``: what a float32 kernel reads), still in one pass.

    Parameters
    ----------
    array : numpy.ndarray of float16
        The values (any layout; a non-contiguous array is copied first).
    factor : float
        The scale, rounded to float32 first.
    widen : bool, optional
        Return float32 (the float16 results widened exactly) instead of float16.
    n_threads : int or None, optional
        See `romancore.effective_n_threads`.

    Returns
    -------
    numpy.ndarray of float16 (float32 with ``widen``)
        A new C-contiguous array of the shape of ``array``.

    Raises
    ------
    ValueError
        If ``array`` is not a float16 numpy array.
    """
    src, out = _source_and_output(array, np.float16, np.float32 if widen else np.float16)
    if src.size:
        flat = out.reshape(-1)
        _half.scale_float16_bits(
            src.view(np.uint16), float(np.float32(factor)),
            np.empty(0, np.uint16) if widen else flat.view(np.uint16),
            flat if widen else np.empty(0, np.float32), bool(widen),
            effective_n_threads(n_threads),
        )
    return out


def _source_and_output(array: np.ndarray, dtype: type, out_dtype: type = np.float16
                       ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Check ``array``; return its values flat and contiguous, and a new output array."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"array must be a numpy array, got {type(array).__name__}")
    if array.dtype != dtype:
        raise ValueError(f"array must have dtype {np.dtype(dtype).name}, got {array.dtype}")
    src = np.ascontiguousarray(array)
    return src.reshape(-1), np.empty(src.shape, dtype=out_dtype)
