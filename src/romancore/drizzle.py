"""Fused, multi-threaded drizzle (``square``, ``point``, ``turbo``) and linear blot.

`add_image` adds one input image to an output grid in one pass: the weighted mean of
the data and its weight (drizzle's ``Drizzle.add_image``), the context bit, the
exposure-time coverage, and resampled variances combined as romancal 1.1's resample
step does (stcal 1.20 ``resample_variance_arrays``). `blot` is drizzle's
``blot_image`` with ``interp="linear"``.

The geometry is drizzle 2.2's (``cdrizzlemap.c``, ``cdrizzlebox.c``):

* the input box (``xmin..xmax, ymin..ymax``, shrunk to the finite pixel-map values)
  is mapped to the output through its four corners, clipped to the output image, mapped
  back by inverting the pixel map, and scanned row by row; only pixels whose whole
  footprint is inside that polygon are drizzled;
* ``square``: the pixel shrunk by ``pixfrac`` has corners interpolated bilinearly from
  the pixel map; each output pixel receives ``overlap / jacobian x weight`` of it
  (the exact area of the quadrilateral inside the output pixel);
* ``point``: all of it lands in the output pixel nearest the mapped centre, weight
  ``weight``;
* ``turbo``: an output-aligned square of side ``pixfrac / pixel_scale_ratio`` around
  the mapped centre, weight ``overlap x pixel_scale_ratio^2 / pixfrac^2 x weight``;
* each output pixel keeps the weighted mean of what lands on it (``D = (D W + d w) /
  (W + w)``, ``W += w``); a pixel with ``w == 0`` is ignored (a NaN datum with weight
  0 does not propagate); the context bit is set where ``w > 0``.

Variances (the resample step's weighting): for each variance ``v`` the weighted mean
of ``sqrt(v)`` (same weights as the data) is squared into ``r``; with
``w_v = 1 / r_rnoise`` (``ivm``) or the exposure time (``exptime``),
``S += r w_v^2`` and ``W_v += w_v`` where ``r`` is finite and non-negative and
``w_v > 0``; ``S`` starts as NaN.  A variance given as a number is that number
wherever the input lands.

Exposure-time coverage: ``exptime`` is added where the input lands (its weight is
non-zero) or, with ``coverage_mask``, where the pixels of the mask drizzled with
``pixfrac = 1`` and unit weight land (romancal's exposure-time resampler).

Threads own bands of ``band_rows`` output rows; inside a band the input pixels are
visited in row order and summed in float64, then merged into the float32 outputs, so
the result does not depend on the number of threads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from romancore import _drizzle
from romancore._threads import effective_n_threads
from romancore._validation import check_array, check_writeable

__all__ = [
    "KERNELS",
    "SplineGridPair",
    "Workspace",
    "add_image",
    "blot",
    "finish_rows",
    "row_extents",
    "spline_grid",
    "spline_grid_pair",
]

#: Kernels computed here (drizzle's others: use the ``drizzle`` package).
KERNELS = ("square", "point", "turbo")
_KERNEL_CODE = {"square": 0, "point": 1, "turbo": 2}
#: Output rows per band (one thread's unit of work).
BAND_ROWS = 64


class Workspace:
    """The per-thread band buffers of `add_image`, kept from call to call.

    Without one, every call allocates (and first touches) one band buffer per thread:
    ``band_rows`` rows of the input's extent on the grid, in float64, for the data,
    the weight, each variance (and the coverage).  Given one, a call reserves buffers
    wide enough for the whole grid (only the part a call uses is touched) and the
    calls after it reuse them.  One workspace serves one call at a time.
    """

    def __init__(self) -> None:
        self._buffers = _drizzle.Buffers()

    @property
    def nbytes(self) -> int:
        """Bytes reserved (all threads; pages are touched only where used)."""
        return int(self._buffers.nbytes)

    def clear(self) -> None:
        """Free the buffers (the next call reserves them again)."""
        self._buffers = _drizzle.Buffers()


def add_image(
    data: np.ndarray,
    pixmap: np.ndarray,
    out_data: np.ndarray,
    out_wht: np.ndarray,
    *,
    weight: np.ndarray | None = None,
    kernel: str = "square",
    pixfrac: float = 1.0,
    pixel_scale_ratio: float = 1.0,
    iscale: float = 1.0,
    weight_scale: float = 1.0,
    xmin: int | None = None,
    xmax: int | None = None,
    ymin: int | None = None,
    ymax: int | None = None,
    out_ctx: np.ndarray | None = None,
    ctx_bit: int = 0,
    exptime_map: np.ndarray | None = None,
    exptime: float = 0.0,
    coverage_mask: np.ndarray | None = None,
    variances: Sequence[np.ndarray | float] = (),
    var_sum: Sequence[np.ndarray] = (),
    var_weight: Sequence[np.ndarray] = (),
    var_weight_type: str = "ivm",
    rnoise_index: int | None = 0,
    var_exptime: float = 1.0,
    band_rows: int = BAND_ROWS,
    n_threads: int | None = None,
    out_row0: int = 0,
    out_ny: int | None = None,
    workspace: Workspace | None = None,
    weight_value: float = 1.0,
) -> bool:
    """Drizzle one image onto the output arrays (updated in place).

    Parameters
    ----------
    data : numpy.ndarray of float32, shape (ny, nx), C-contiguous
        The input image.
    pixmap : numpy.ndarray of float64, shape (ny, nx, 2), C-contiguous
        Output ``(x, y)`` of each input pixel centre (NaN: not mapped).
    out_data, out_wht : numpy.ndarray of float32, shape (Ny, Nx), C-contiguous
        Weighted mean and total weight, updated: rows ``out_row0 .. out_row0 + Ny - 1``
        of the output grid (all of it by default).
    weight : numpy.ndarray of float32 or bool, optional
        Input weights (None: 1); a boolean mask: ``weight_value`` where True, 0
        elsewhere (the same as ``np.where(mask, np.float32(weight_value), 0)``,
        without building it).
    kernel : {'square', 'point', 'turbo'}, optional
        Drizzle kernel.  ``pixfrac <= 0.001`` uses ``point`` (as drizzle).
    pixfrac : float, optional
        Linear fraction of the pixel the flux is spread over.
    pixel_scale_ratio : float, optional
        Output over input pixel size (``turbo``'s kernel size; rounded to float32
        as drizzle does).
    iscale : float, optional
        Multiplies the data and the square roots of the variances.
    weight_scale : float, optional
        Multiplies the weights.
    xmin, xmax, ymin, ymax : int, optional
        Input box drizzled (inclusive; default the whole image; ``xmax``/``ymax``
        of 0 mean the whole image, as drizzle).
    out_ctx : numpy.ndarray of uint32, shape (Ny, Nx), optional
        Context plane: ``ctx_bit`` is set where a contribution has weight > 0.
    ctx_bit : int, optional
        Bit number (0-31).
    exptime_map : numpy.ndarray of float32, optional
        Exposure-time map: ``exptime`` is added where the input lands.
    exptime : float, optional
        The value added to ``exptime_map``.
    coverage_mask : numpy.ndarray of bool, optional
        If given, "lands" means: where these pixels, drizzled with ``pixfrac = 1``
        and unit weight, give weight > 0.
    variances : sequence of arrays (float32, input shape) or numbers, optional
        Variances resampled (at most 4).
    var_sum, var_weight : sequences of numpy.ndarray of float32, optional
        Their accumulators ``S`` (start NaN) and ``W_v`` (start 0).
    var_weight_type : {'ivm', 'exptime'}, optional
        ``w_v = 1 / r[rnoise_index]`` or ``var_exptime``.
    rnoise_index : int or None, optional
        Which variance is the read noise (None: ``ivm`` weights are 0).
    var_exptime : float, optional
        ``w_v`` for ``exptime``.
    band_rows : int, optional
        Output rows per band (does not change the result).
    n_threads : int or None, optional
        Threads (see :func:`romancore.effective_n_threads`); the result does not
        depend on it.
    out_row0 : int, optional
        The grid row of the output arrays' first row.
    out_ny : int, optional
        Rows of the output grid (default ``out_row0 + Ny``).  The input is clipped to
        the grid as drizzle does, and only the output arrays' rows are drizzled: they
        receive, bit for bit, what the same rows of a whole-grid output would.
    workspace : Workspace, optional
        Band buffers reused from call to call (default: allocated for this call).
    weight_value : float, optional
        The weight where a boolean ``weight`` is True (rounded to float32).

    Returns
    -------
    bool
        True if some output pixel (of the output arrays' rows) received weight.

    Raises
    ------
    ValueError
        For an unknown kernel, bad parameters, or arrays of the wrong dtype, shape
        or layout.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    pixfrac = float(pixfrac)
    if not pixfrac > 0 or not math.isfinite(pixfrac):
        raise ValueError(f"pixfrac must be positive, got {pixfrac}")
    if pixfrac <= 0.001:
        kernel = "point"
    ratio = np.float32(pixel_scale_ratio)
    if not (ratio > 0 and np.isfinite(ratio)):
        raise ValueError(f"pixel_scale_ratio must be positive, got {pixel_scale_ratio}")
    if not (iscale > 0 and math.isfinite(iscale)):
        raise ValueError(f"iscale must be positive, got {iscale}")
    if not (weight_scale > 0 and math.isfinite(weight_scale)):
        raise ValueError(f"weight_scale must be positive, got {weight_scale}")
    if var_weight_type not in ("ivm", "exptime"):
        raise ValueError(f"var_weight_type must be 'ivm' or 'exptime', got {var_weight_type!r}")
    if not 0 <= int(ctx_bit) < 32:
        raise ValueError(f"ctx_bit must be in 0..31, got {ctx_bit}")
    if int(band_rows) < 1:
        raise ValueError(f"band_rows must be positive, got {band_rows}")
    if workspace is not None and not isinstance(workspace, Workspace):
        raise ValueError("workspace must be a romancore.drizzle.Workspace")
    data = check_array(data, "data", np.float32, 2)
    shape = data.shape
    pixmap = check_array(pixmap, "pixmap", np.float64, 3, (*shape, 2))
    out_data = check_array(out_data, "out_data", np.float32, 2)
    out_shape = out_data.shape
    out_wht = check_array(out_wht, "out_wht", np.float32, 2, out_shape)
    out_row0 = int(out_row0)
    grid_ny = out_row0 + out_shape[0] if out_ny is None else int(out_ny)
    if out_row0 < 0 or out_row0 + out_shape[0] > grid_ny:
        raise ValueError(f"output rows {out_row0}..{out_row0 + out_shape[0] - 1} are not "
                         f"inside a grid of {grid_ny} rows")
    check_writeable(out_data, "out_data")
    check_writeable(out_wht, "out_wht")
    if weight is not None and getattr(weight, "dtype", None) == np.bool_:
        weight = check_array(weight, "weight", np.bool_, 2, shape).view(np.uint8)
    elif weight is not None:
        weight = check_array(weight, "weight", np.float32, 2, shape)
    if out_ctx is not None:
        out_ctx = check_array(out_ctx, "out_ctx", np.uint32, 2, out_shape)
        check_writeable(out_ctx, "out_ctx")
    if exptime_map is not None:
        exptime_map = check_array(exptime_map, "exptime_map", np.float32, 2, out_shape)
        check_writeable(exptime_map, "exptime_map")
    good = None
    if coverage_mask is not None:
        good = check_array(coverage_mask, "coverage_mask", np.bool_, 2, shape).view(np.uint8)
    n_var = len(variances)
    if n_var > 4:
        raise ValueError(f"at most 4 variances, got {n_var}")
    if len(var_sum) != n_var or len(var_weight) != n_var:
        raise ValueError("var_sum and var_weight need one array per variance")
    arrays: list[np.ndarray | None] = []
    constants: list[float] = []
    for k, values in enumerate(variances):
        if np.ndim(values) == 0:
            value = float(values)
            arrays.append(None)
            constants.append(value if value >= 0 else math.nan)
        else:
            arrays.append(check_array(values, f"variances[{k}]", np.float32, 2, shape))
            constants.append(math.nan)
        check_array(var_sum[k], f"var_sum[{k}]", np.float32, 2, out_shape)
        check_array(var_weight[k], f"var_weight[{k}]", np.float32, 2, out_shape)
        check_writeable(var_sum[k], f"var_sum[{k}]")
        check_writeable(var_weight[k], f"var_weight[{k}]")
    if rnoise_index is not None and not 0 <= rnoise_index < max(n_var, 1):
        raise ValueError(f"rnoise_index {rnoise_index} is not a variance index")

    # the input box (drizzle's add_image and tdriz), shrunk to valid pixel-map values
    ny, nx = shape
    x0 = 0 if xmin is None or xmin < 0 else int(xmin)
    y0 = 0 if ymin is None or ymin < 0 else int(ymin)
    x1 = nx - 1 if xmax is None or xmax == 0 or xmax > nx - 1 else int(xmax)
    y1 = ny - 1 if ymax is None or ymax == 0 or ymax > ny - 1 else int(ymax)
    if x1 <= x0 or y1 <= y0:
        return False
    x0, x1, y0, y1, ok = _drizzle.shrink_box(pixmap, x0, x1, y0, y1)
    if not ok:
        return False
    row_x1, row_x2 = _drizzle.scan_limits(pixmap, x0, x1, y0, y1, grid_ny, out_shape[1])
    threads = effective_n_threads(n_threads)
    return bool(
        _drizzle.add_image(
            data, weight, pixmap, row_x1, row_x2, 0, ny - 1,
            _KERNEL_CODE[kernel], pixfrac, float(ratio), float(iscale), float(weight_scale),
            out_data, out_wht, out_ctx, np.uint32(1 << int(ctx_bit)),
            exptime_map, float(exptime), good,
            arrays, constants, list(var_sum), list(var_weight),
            -1 if rnoise_index is None or n_var == 0 else int(rnoise_index),
            0 if var_weight_type == "ivm" else 1, float(var_exptime),
            int(band_rows), threads, out_row0, grid_ny,
            None if workspace is None else workspace._buffers, np.float32(weight_value),
        )  # fmt: skip
    )


def row_extents(
    pixmap: np.ndarray,
    xmin: int = 0,
    xmax: int | None = None,
    *,
    n_threads: int | None = None,
) -> np.ndarray:
    """Return, per row of a pixel map, the extent of its mapped pixels on the output.

    Parameters
    ----------
    pixmap : numpy.ndarray of float64, shape (ny, nx, 2), C-contiguous
        Output ``(x, y)`` of each input pixel (NaN: not mapped).
    xmin, xmax : int, optional
        Columns considered (inclusive; default all).
    n_threads : int or None, optional
        Threads (see :func:`romancore.effective_n_threads`).

    Returns
    -------
    numpy.ndarray of float64, shape (ny, 4)
        Lowest y, highest y, lowest x, highest x of each row's pixels whose two
        coordinates are finite; ``(+inf, -inf, +inf, -inf)`` for a row without one.

    Raises
    ------
    ValueError
        For a map of the wrong dtype, shape or layout, or columns outside it.
    """
    pixmap = check_array(pixmap, "pixmap", np.float64, 3)
    ny, nx = pixmap.shape[:2]
    if pixmap.shape[2] != 2:
        raise ValueError(f"pixmap must be (ny, nx, 2), got {pixmap.shape}")
    xmax = nx - 1 if xmax is None else int(xmax)
    if not 0 <= int(xmin) <= xmax < nx:
        raise ValueError(f"columns {xmin}..{xmax} are not inside 0..{nx - 1}")
    out = np.empty((ny, 4), np.float64)
    _drizzle.row_extents(pixmap, int(xmin), xmax, out, effective_n_threads(n_threads))
    return out


def finish_rows(
    data: np.ndarray,
    weight: np.ndarray,
    *,
    fillval: float = math.nan,
    exptime: np.ndarray | None = None,
    var_sum: Sequence[np.ndarray] = (),
    var_weight: Sequence[np.ndarray] = (),
    scaling: float = 1.0,
    err: np.ndarray | None = None,
    n_threads: int | None = None,
) -> tuple[float, int, float]:
    """Turn finished rows of `add_image`'s outputs into products, in one pass.

    In place, with float32 arithmetic (the values of the equivalent NumPy steps, bit
    for bit): ``data[weight == 0] = fillval``; each variance ``var_sum[k] *= scaling;
    var_sum[k] /= w; var_sum[k] /= w`` with ``w = var_weight[k]`` (stcal
    ``finalize_resample_variance``); ``err = sqrt(sum of the non-NaN variances)``,
    NaN where every variance is NaN.

    Parameters
    ----------
    data, weight : numpy.ndarray of float32, shape (ny, nx), C-contiguous
        The weighted mean (updated) and its weight.
    fillval : float, optional
        Value of the pixels without weight.
    exptime : numpy.ndarray of float32, optional
        Exposure-time map of the rows: its positive values are summed.
    var_sum, var_weight : sequences of numpy.ndarray of float32, optional
        The variance accumulators (``var_sum`` becomes the variances).
    scaling : float, optional
        ``1 / pixel_scale_ratio**2`` (rounded to float32).
    err : numpy.ndarray of float32, optional
        Receives the error (with at least one variance).
    n_threads : int or None, optional
        Threads.

    Returns
    -------
    tuple
        ``(sum, count, max)`` of the exposure times > 0 (sum in float64; max 0 when
        there is none; all 0 without ``exptime``).

    Raises
    ------
    ValueError
        For arrays of the wrong dtype, shape or layout, or more than 4 variances.
    """
    data = check_array(data, "data", np.float32, 2)
    check_writeable(data, "data")
    shape = data.shape
    weight = check_array(weight, "weight", np.float32, 2, shape)
    if len(var_sum) != len(var_weight) or len(var_sum) > 4:
        raise ValueError("var_sum and var_weight need one array per variance (at most 4)")
    sums = []
    for k, (s, w) in enumerate(zip(var_sum, var_weight, strict=True)):
        sums.append(check_array(s, f"var_sum[{k}]", np.float32, 2, shape))
        check_writeable(s, f"var_sum[{k}]")
        check_array(w, f"var_weight[{k}]", np.float32, 2, shape)
    if exptime is not None:
        exptime = check_array(exptime, "exptime", np.float32, 2, shape)
    if err is not None:
        err = check_array(err, "err", np.float32, 2, shape)
        check_writeable(err, "err")
    total, count, peak = _drizzle.finish_rows(
        data, weight, np.float32(fillval), exptime, sums, list(var_weight),
        np.float32(scaling), err, effective_n_threads(n_threads),
    )  # fmt: skip
    return float(total), int(count), float(peak)


def blot(
    data: np.ndarray,
    pixmap: np.ndarray,
    out: np.ndarray | None = None,
    *,
    fillval: float = math.nan,
    iscale: float = 1.0,
    n_threads: int | None = None,
) -> np.ndarray:
    """Interpolate ``data`` bilinearly at the positions of ``pixmap`` (drizzle's blot).

    Parameters
    ----------
    data : numpy.ndarray of float32, shape (Ny, Nx), C-contiguous
        The image sampled (e.g. a median mosaic).
    pixmap : numpy.ndarray of float64, shape (ny, nx, 2), C-contiguous
        For each output pixel, its ``(x, y)`` on ``data``.
    out : numpy.ndarray of float32, shape (ny, nx), optional
        Output (allocated if None).
    fillval : float, optional
        Value where the position is outside ``data`` or NaN (stcal maps NaN
        positions outside before calling drizzle).
    iscale : float, optional
        Multiplies the result.
    n_threads : int or None, optional
        Threads.

    Returns
    -------
    numpy.ndarray
        ``out``: drizzle's ``interp="linear"``: ``x = (int) x_out`` etc., bilinear in
        float32, one-dimensional on the last row/column, positions ``>= 0`` and
        ``< size``.

    Raises
    ------
    ValueError
        For arrays of the wrong dtype, shape or layout.
    """
    data = check_array(data, "data", np.float32, 2)
    pixmap = check_array(pixmap, "pixmap", np.float64, 3)
    if pixmap.shape[2] != 2:
        raise ValueError(f"pixmap must have shape (ny, nx, 2), got {pixmap.shape}")
    if out is None:
        out = np.empty(pixmap.shape[:2], dtype=np.float32)
    else:
        out = check_array(out, "out", np.float32, 2, pixmap.shape[:2])
        check_writeable(out, "out")
    if not (iscale > 0 and math.isfinite(iscale)):
        raise ValueError(f"iscale must be positive, got {iscale}")
    _drizzle.blot_linear(data, pixmap, out, np.float32(fillval), np.float32(iscale),
                         effective_n_threads(n_threads))  # fmt: skip
    return out


def spline_grid(
    tck: tuple[np.ndarray, np.ndarray, np.ndarray],
    degrees: tuple[int, int],
    rows: np.ndarray,
    cols: np.ndarray,
    out: np.ndarray,
    component: int,
    *,
    row0: int = 0,
    col0: int = 0,
    n_threads: int | None = None,
) -> None:
    """Evaluate a tensor-product B-spline on a grid into one component of ``out``.

    The values of ``scipy.interpolate.RectBivariateSpline(...)(rows, cols)`` (to
    rounding): ``z[i, j] = sum_a sum_b c[a, b] B_a(rows[i]) B_b(cols[j])``, computed as
    ``B_rows (C B_cols^T)`` with each output row a combination of ``k + 1`` rows of
    the small product, in parallel over rows.

    Parameters
    ----------
    tck : tuple
        ``(t_rows, t_cols, c)``: knots and coefficients (``RectBivariateSpline.tck``).
    degrees : tuple of int
        ``(k_rows, k_cols)``.
    rows, cols : numpy.ndarray of float64
        Evaluation points (inside the knots' base interval).
    out : numpy.ndarray of float64, shape (Ny, Nx, 2), C-contiguous
        Receives ``z`` at ``out[row0 + i, col0 + j, component]``.
    component : int
        0 or 1.
    row0, col0 : int, optional
        Offset of the grid in ``out``.
    n_threads : int or None, optional
        Threads.
    """
    small, start, weights = _spline_factors(tck, degrees, rows, cols)
    out = check_array(out, "out", np.float64, 3)
    if (row0 + len(rows) > out.shape[0] or col0 + len(cols) > out.shape[1]
            or component not in (0, 1) or out.shape[2] != 2):  # fmt: skip
        raise ValueError("the grid does not fit in out")
    _drizzle.combine_rows(small, start, weights, out, int(component), int(row0), int(col0),
                          effective_n_threads(n_threads))  # fmt: skip


def spline_grid_pair(
    tck_x: tuple[np.ndarray, np.ndarray, np.ndarray],
    tck_y: tuple[np.ndarray, np.ndarray, np.ndarray],
    degrees: tuple[int, int],
    rows: np.ndarray,
    cols: np.ndarray,
    out: np.ndarray,
    *,
    row0: int = 0,
    col0: int = 0,
    n_threads: int | None = None,
) -> None:
    """`spline_grid` of both components of a pixel map in one pass over ``out``.

    The same values, bit for bit, as `spline_grid` called for component 0 with
    ``tck_x`` and for component 1 with ``tck_y``; the two splines must share their
    knots (splines through the same grid of points do), and ``out`` is written once
    instead of every other value twice.

    Parameters
    ----------
    tck_x, tck_y : tuple
        ``(t_rows, t_cols, c)`` of the x and the y spline.
    degrees : tuple of int
        ``(k_rows, k_cols)``.
    rows, cols : numpy.ndarray of float64
        Evaluation points.
    out : numpy.ndarray of float64, shape (Ny, Nx, 2), C-contiguous
        Receives ``(x, y)`` at ``out[row0 + i, col0 + j]``.
    row0, col0 : int, optional
        Offset of the grid in ``out``.
    n_threads : int or None, optional
        Threads.

    Raises
    ------
    ValueError
        If the knots differ or the grid does not fit in ``out``.
    """
    SplineGridPair(tck_x, tck_y, degrees, cols).evaluate(rows, out, row0=row0, col0=col0,
                                                         n_threads=n_threads)  # fmt: skip


class SplineGridPair:
    """`spline_grid_pair` of two splines on one set of columns, for any rows.

    The columns' factor of each spline (``C B_cols^T``, the costly part of a call on a
    few rows) is computed once; `evaluate` then gives, for any ``rows``, what
    ``spline_grid_pair(tck_x, tck_y, degrees, rows, cols, out, ...)`` gives, bit for
    bit (a pixel map written a block of rows at a time pays the factor once).

    Parameters
    ----------
    tck_x, tck_y : tuple
        ``(t_rows, t_cols, c)`` of the x and the y spline (sharing their knots).
    degrees : tuple of int
        ``(k_rows, k_cols)``.
    cols : numpy.ndarray of float64
        Evaluation columns.

    Raises
    ------
    ValueError
        If the knots differ.
    """

    def __init__(
        self,
        tck_x: tuple[np.ndarray, np.ndarray, np.ndarray],
        tck_y: tuple[np.ndarray, np.ndarray, np.ndarray],
        degrees: tuple[int, int],
        cols: np.ndarray,
    ) -> None:
        if not (np.array_equal(tck_x[0], tck_y[0]) and np.array_equal(tck_x[1], tck_y[1])):
            raise ValueError("the two splines do not share their knots")
        self._small_x = _column_factor(tck_x, degrees, cols)
        self._small_y = _column_factor(tck_y, degrees, cols)
        self._t_rows = tck_x[0]
        self._k_rows = int(degrees[0])
        self._n_cols = len(cols)

    def evaluate(self, rows: np.ndarray, out: np.ndarray, *, row0: int = 0, col0: int = 0,
                 n_threads: int | None = None) -> None:  # fmt: skip
        """Write ``(x, y)`` at ``out[row0 + i, col0 + j]`` for ``rows[i]`` and the columns.

        Parameters
        ----------
        rows : numpy.ndarray of float64
            Evaluation rows.
        out : numpy.ndarray of float64, shape (Ny, Nx, 2), C-contiguous
            Receives the values.
        row0, col0 : int, optional
            Offset of the grid in ``out``.
        n_threads : int or None, optional
            Threads.

        Raises
        ------
        ValueError
            If the grid does not fit in ``out``.
        """
        start, weights = _row_weights(self._t_rows, self._k_rows, rows)
        out = check_array(out, "out", np.float64, 3)
        if (row0 + len(rows) > out.shape[0] or col0 + self._n_cols > out.shape[1]
                or out.shape[2] != 2):  # fmt: skip
            raise ValueError("the grid does not fit in out")
        _drizzle.combine_rows_pair(self._small_x, self._small_y, start, weights, out,
                                   int(row0), int(col0),
                                   effective_n_threads(n_threads))  # fmt: skip


def _spline_factors(
    tck: tuple[np.ndarray, np.ndarray, np.ndarray],
    degrees: tuple[int, int],
    rows: np.ndarray,
    cols: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``C B_cols^T`` and the rows' B-spline weights (first index and k + 1 weights)."""
    start, weights = _row_weights(tck[0], degrees[0], rows)
    return _column_factor(tck, degrees, cols), start, weights


def _column_factor(
    tck: tuple[np.ndarray, np.ndarray, np.ndarray],
    degrees: tuple[int, int],
    cols: np.ndarray,
) -> np.ndarray:
    """``C B_cols^T``: ``(n_coef_rows, len(cols))``."""
    from scipy.interpolate import BSpline

    t_rows, t_cols, coefs = tck
    k_rows, k_cols = degrees
    coefs = np.asarray(coefs, dtype=np.float64).reshape(
        len(t_rows) - k_rows - 1, len(t_cols) - k_cols - 1
    )
    b_cols = BSpline.design_matrix(np.asarray(cols, np.float64), t_cols, k_cols)
    return np.ascontiguousarray((b_cols @ coefs.T).T)


def _row_weights(t_rows: np.ndarray, k_rows: int, rows: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Return the rows' B-spline weights: each row's first coefficient row, its k + 1 weights."""
    from scipy.interpolate import BSpline

    b_rows = BSpline.design_matrix(np.asarray(rows, np.float64), t_rows, k_rows)
    b_rows = b_rows.tocsr()
    b_rows.sort_indices()
    counts = np.diff(b_rows.indptr)
    if not np.all(counts == k_rows + 1):
        raise ValueError("unexpected B-spline design matrix")
    start = np.ascontiguousarray(b_rows.indices[b_rows.indptr[:-1]], dtype=np.int64)
    weights = np.ascontiguousarray(b_rows.data.reshape(-1, k_rows + 1), dtype=np.float64)
    indices = b_rows.indices.reshape(-1, k_rows + 1)
    if not np.all(indices == start[:, None] + np.arange(k_rows + 1)):
        raise ValueError("unexpected B-spline design matrix")
    return start, weights
