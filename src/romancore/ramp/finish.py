"""The per-pixel work after a ramp fit: DN/s images, DQ collapse and ``dumo``."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from romancore._threads import effective_n_threads
from romancore._validation import check_array
from romancore.ramp import _finish

__all__ = ["RateImages", "finish_ramp_fit"]


class RateImages(NamedTuple):
    """Output images of :func:`finish_ramp_fit` (float32 but ``dq``, uint32).

    Attributes
    ----------
    slope : numpy.ndarray
        Count rate, DN/s.
    dq : numpy.ndarray
        Pixel DQ with the group flags collapsed in.
    var_poisson, var_rnoise : numpy.ndarray
        Poisson and read-noise variances, (DN/s)^2.
    err : numpy.ndarray
        ``sqrt(var_poisson + var_rnoise)``.
    dumo : numpy.ndarray
        Uniformly weighted slope over all resultants minus ``slope``.
    """

    slope: np.ndarray
    dq: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    err: np.ndarray
    dumo: np.ndarray


def finish_ramp_fit(
    slope_e: np.ndarray,
    var_read_e: np.ndarray,
    var_poisson_e: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    gain: np.ndarray,
    data: np.ndarray,
    uniform_weights: np.ndarray,
    *,
    out: RateImages | None = None,
    n_threads: int | None = None,
) -> RateImages:
    """Turn a fit in electrons into romancal 1.1's DN/s images, one pass per pixel.

    For each pixel, with ``g`` the gain (``g`` not finite or ``<= 0``: a bad gain):

    * ``slope = slope_e / g``, ``var_poisson = var_poisson_e / g**2``,
      ``var_rnoise = var_read_e / g**2``, ``err = sqrt(var_poisson + var_rnoise)``
      (float32), all NaN for a bad gain;
    * ``dq = pixeldq | (OR over resultants of groupdq, without DO_NOT_USE)``, plus
      DO_NOT_USE where no resultant is usable (each SATURATED or DO_NOT_USE), the
      slope is not finite or ``err <= 0``, and NO_GAIN_VALUE | DO_NOT_USE for a bad
      gain (romancal 1.1);
    * ``dumo = sum_k w_k data_k - slope`` (float64 sum in resultant order), the
      uniformly weighted slope of the DN resultants minus the fitted one.

    Parameters
    ----------
    slope_e, var_read_e, var_poisson_e : numpy.ndarray of float32, shape (ny, nx)
        `romancore.fit_ramps` outputs in electrons.
    groupdq : numpy.ndarray of uint8, shape (n, ny, nx)
        Group DQ after the fit (any strides).
    pixeldq : numpy.ndarray of uint32, shape (ny, nx)
        Pixel DQ (any strides).
    gain : numpy.ndarray, shape (ny, nx)
        Electrons per DN (converted to float32).
    data : numpy.ndarray of float32, shape (n, ny, nx)
        The resultants in DN (any strides).
    uniform_weights : numpy.ndarray, shape (n,)
        Weights of the uniform slope (converted to float64).
    out : RateImages, optional
        C-contiguous arrays of shape (ny, nx) to write into (e.g. row slices of the
        full images); new arrays otherwise.
    n_threads : int or None, optional
        Threads (see :func:`romancore.effective_n_threads`); results do not depend on it.

    Returns
    -------
    RateImages
        ``out`` or the new images.

    Raises
    ------
    ValueError
        For arrays of the wrong dtype or shape.
    """
    check_array(slope_e, "slope_e", np.float32, 2)
    shape = slope_e.shape
    check_array(var_read_e, "var_read_e", np.float32, 2, shape)
    check_array(var_poisson_e, "var_poisson_e", np.float32, 2, shape)
    for name, arr, dtype, ndim in (("groupdq", groupdq, np.uint8, 3),
                                   ("pixeldq", pixeldq, np.uint32, 2),
                                   ("data", data, np.float32, 3)):
        if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.ndim != ndim:
            raise ValueError(f"{name} must be a {ndim}-D {np.dtype(dtype)} array")
        if arr.shape[-2:] != shape:
            raise ValueError(f"{name} has shape {arr.shape}, the images {shape}")
    if data.shape != groupdq.shape:
        raise ValueError(f"data has shape {data.shape}, groupdq {groupdq.shape}")
    weights = np.ascontiguousarray(uniform_weights, dtype=np.float64)
    if weights.shape != (data.shape[0],):
        raise ValueError(f"uniform_weights must have {data.shape[0]} values")
    gain = np.ascontiguousarray(gain, dtype=np.float32)
    check_array(gain, "gain", np.float32, 2, shape)
    if out is None:
        out = RateImages(*(np.empty(shape, np.uint32 if name == "dq" else np.float32)
                           for name in RateImages._fields))
    for name, arr in out._asdict().items():
        check_array(arr, name, np.uint32 if name == "dq" else np.float32, 2, shape)
    _finish.finish(slope_e, var_read_e, var_poisson_e, groupdq, pixeldq, gain, data,
                   weights, out.slope, out.dq, out.var_poisson, out.var_rnoise, out.err,
                   out.dumo, effective_n_threads(n_threads))
    return out
