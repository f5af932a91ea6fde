"""Input checks shared by the public kernel wrappers (one way to do each check)."""

from __future__ import annotations

import numpy as np

__all__ = ["check_array"]


def check_array(
    arr: object, name: str, dtype: type | np.dtype, ndim: int, shape: tuple | None = None,
    *, rows: bool = False,
) -> np.ndarray:
    """Check that ``arr`` is a C-contiguous, non-empty array of the given dtype and shape.

    The kernels work in place or read large cubes, so nothing is converted silently:
    a wrong dtype or layout is an error naming the argument.

    Parameters
    ----------
    arr : object
        The candidate array.
    name : str
        Argument name used in error messages.
    dtype : numpy dtype
        Required dtype.
    ndim : int
        Required number of dimensions.
    shape : tuple or None
        Required shape (``None`` entries are free).
    rows : bool, optional
        Accept a 2-D array whose rows are contiguous but not each other's neighbours
        (a window of a larger image: unit stride along the rows, a positive stride
        between them) instead of requiring a C-contiguous one.

    Returns
    -------
    numpy.ndarray
        ``arr`` itself.

    Raises
    ------
    ValueError
        Naming the argument and what is wrong with it.
    """
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(arr).__name__}")
    if arr.dtype != np.dtype(dtype):
        raise ValueError(f"{name} must have dtype {np.dtype(dtype)}, got {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if rows and arr.ndim == 2:
        if (arr.shape[1] > 1 and arr.strides[1] != arr.itemsize) or (arr.shape[0] > 1 and (
                arr.strides[0] <= 0 or arr.strides[0] % arr.itemsize)):  # fmt: skip
            raise ValueError(f"{name} must have contiguous rows (use numpy.ascontiguousarray)")
    elif not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use numpy.ascontiguousarray)")
    if shape is not None:
        for got, want in zip(arr.shape, shape, strict=True):
            if want is not None and got != want:
                raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    return arr


def check_writeable(arr: np.ndarray, name: str) -> None:
    """Raise ValueError if an array the kernel updates in place is read-only."""
    if not arr.flags.writeable:
        raise ValueError(f"{name} is read-only but is updated in place")
