"""Divide a slope image by the flat field and propagate the variances.

Per pixel, with ``f`` the FLAT ``data``, ``e_f`` its ``err`` and ``d' = d / f`` the
flat-fielded data (seeds/000:1682-1711, romancal 1.1 ``flatfield.flat_field``):

* a flat that is NaN, zero or flagged ``NO_FLAT_FIELD`` is not applied (``f`` is taken
  as 1, so the pixel keeps its value) and the pixel gets ``NO_FLAT_FIELD | DO_NOT_USE``;
* ``data = data / f``, ``dumo = dumo / f`` (a rate difference);
* ``var_poisson = var_poisson / f**2``, ``var_rnoise = var_rnoise / f**2``;
* ``var_flat = d'**2 / f**2 * e_f**2``, the flat's relative error times the
  flat-fielded signal, computed from ``d'`` as the seed (000:1705) and romancal do;
* ``err = sqrt(var_poisson + var_rnoise + var_flat)`` (seeds/000:1709-1711);
* ``dq = dq | flat dq``.

Without ``var_flat`` (romancal's default ``include_var_flat=False``) ``err`` is
divided by ``f`` instead. Everything is done in place, a block of rows at a time, so the
only temporaries are a few block-sized arrays.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from romancore import effective_n_threads
from romancore.dqflags import pixel

__all__ = ["BLOCK_ROWS", "apply_flat_field"]

#: Rows processed at a time (a 512 x 4088 float32 block is 8 MB).
BLOCK_ROWS = 512

_NO_FLAT = np.uint32(pixel.NO_FLAT_FIELD)
_NOT_APPLIED = np.uint32(pixel.NO_FLAT_FIELD | pixel.DO_NOT_USE)


def apply_flat_field(
    data: np.ndarray,
    dq: np.ndarray,
    flat: np.ndarray,
    flat_dq: np.ndarray,
    flat_err: np.ndarray,
    *,
    var_poisson: np.ndarray | None = None,
    var_rnoise: np.ndarray | None = None,
    var_flat: np.ndarray | None = None,
    err: np.ndarray | None = None,
    dumo: np.ndarray | None = None,
    block_rows: int = BLOCK_ROWS,
) -> int:
    """Flat-field an image and its variances in place.

    Parameters
    ----------
    data : numpy.ndarray
        Slope image (DN/s), shape ``(ny, nx)``; divided by the flat.
    dq : numpy.ndarray
        Image DQ flags (uint32); the flat's DQ is OR-ed in, and pixels whose flat is
        not applied get ``NO_FLAT_FIELD | DO_NOT_USE``.
    flat : numpy.ndarray
        Flat field (FLAT ``data``), same shape. Not modified.
    flat_dq : numpy.ndarray
        Flat DQ flags (uint32). Not modified.
    flat_err : numpy.ndarray
        Flat uncertainty (FLAT ``err``). Only used for ``var_flat``.
    var_poisson, var_rnoise : numpy.ndarray, optional
        Variance components (DN/s)**2, divided by ``flat**2``.
    var_flat : numpy.ndarray, optional
        Output: filled with the flat-field variance. When given, ``err`` is recomputed
        as ``sqrt(var_poisson + var_rnoise + var_flat)``; when not, ``err`` is divided
        by the flat.
    err : numpy.ndarray, optional
        Total error (DN/s), updated as described for ``var_flat``.
    dumo : numpy.ndarray, optional
        Uniform-minus-optimal slope difference (DN/s), divided by the flat.
    block_rows : int, optional
        Rows processed at a time.

    Returns
    -------
    int
        Number of pixels whose flat was not applied (NaN, zero or ``NO_FLAT_FIELD``).

    Raises
    ------
    ValueError
        If an array is not 2-D of the image shape, or ``var_flat`` is given without
        ``var_poisson`` while ``err`` is to be recomputed.
    """
    if data.ndim != 2:
        raise ValueError(f"data must be a 2-D image, got shape {data.shape}")
    arrays = {
        "dq": dq,
        "flat": flat,
        "flat_dq": flat_dq,
        "flat_err": flat_err,
        "var_poisson": var_poisson,
        "var_rnoise": var_rnoise,
        "var_flat": var_flat,
        "err": err,
        "dumo": dumo,
    }
    for name, array in arrays.items():
        if array is not None and array.shape != data.shape:
            raise ValueError(f"{name} has shape {array.shape}, the image has {data.shape}")
    if var_flat is not None and err is not None and var_poisson is None:
        raise ValueError("var_poisson is needed to recompute err from the variances")
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    def block(start: int) -> int:
        return _flat_block(
            slice(start, start + block_rows), data, dq, flat, flat_dq, flat_err,
            var_poisson, var_rnoise, var_flat, err, dumo,
        )

    starts = range(0, data.shape[0], block_rows)
    workers = min(effective_n_threads(), len(starts))
    if workers < 2:
        return sum(block(start) for start in starts)
    # the blocks are independent (each changes its own rows) and NumPy releases the
    # GIL on them: the same values on every core
    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(block, starts))


def _flat_block(
    rows: slice,
    data: np.ndarray,
    dq: np.ndarray,
    flat: np.ndarray,
    flat_dq: np.ndarray,
    flat_err: np.ndarray,
    var_poisson: np.ndarray | None,
    var_rnoise: np.ndarray | None,
    var_flat: np.ndarray | None,
    err: np.ndarray | None,
    dumo: np.ndarray | None,
) -> int:
    """Apply the flat to one block of rows; the arithmetic of romancal 1.1, in place."""
    f = flat[rows]
    fdq = flat_dq[rows]
    not_applied = np.isnan(f)
    not_applied |= f == 0
    not_applied |= (fdq & _NO_FLAT) != 0
    # a flat that is not applied divides by exactly 1
    f = np.where(not_applied, f.dtype.type(1), f)
    f_sq = f * f
    d = data[rows]
    d /= f
    if dumo is not None:
        dumo[rows] /= f
    for var in (var_poisson, var_rnoise):
        if var is not None:
            var[rows] /= f_sq
    if var_flat is not None:
        vf = var_flat[rows]
        np.square(d, out=vf)
        vf /= f_sq
        e = flat_err[rows]
        vf *= e * e
        if err is not None:
            total = err[rows]
            np.copyto(total, var_poisson[rows])
            if var_rnoise is not None:
                total += var_rnoise[rows]
            total += vf
            np.sqrt(total, out=total)
    elif err is not None:
        err[rows] /= f
    block_dq = dq[rows]
    block_dq |= fdq
    block_dq[not_applied] |= _NOT_APPLIED
    return int(np.count_nonzero(not_applied))
