"""Streaming drizzle of calibrated images onto one output grid.

The arithmetic is romancal 1.1 / stcal 1.20's (``stcal/resample/resample.py``
``Resample.add_model``, ``resample_variance_arrays``, ``finalize_resample_variance``;
romancal ``resample/resample.py``, ``_exptime_resampler.py``; downstream.md 2.5):

* input weight (``build_driz_weight``): ``ivm``: ``1 / var_rnoise`` (0 where not
  finite), ``exptime``: the exposure time; times the good-pixel mask (``good_bits``);
  ours alone: ``ivm-median``, one weight per input, ``1 / median(var_rnoise)`` over its
  good pixels (the default of our step, see below);
* ``data - meta.background.level`` when the sky was measured and not subtracted;
* drizzle (``drizzle.resample.Drizzle.add_image``, ``in_units="cps"``, ``iscale=1``);
* each variance ``v`` in (``var_rnoise``, ``var_poisson`` [, ``var_flat``]): ``sqrt(v)``
  drizzled with the same weights, squared: ``r``; with ``w = 1 / r_rnoise`` (``ivm``)
  or the exposure time (``exptime``): ``S += r w^2``, ``W += w``, finally
  ``var = S / W^2 / pixel_scale_ratio^2``; ``err = sqrt(nansum(var_*))``;
* exposure time map: the sum over inputs of the effective exposure time where the
  input's good pixels land; ``exposure_time`` its mean where > 0, and its max;
* context: bit ``i % 32`` of plane ``i // 32`` where input ``i`` contributes.

What differs (on purpose):

* Only the output arrays are full size: each input is drizzled onto the cut-out of the
  grid it covers and merged (``D = (D W + d w) / (W + w)``, the weighted mean drizzle
  itself keeps), so the temporary arrays scale with the input, not the mosaic.
* An input without ``var_rnoise`` (romancal's ``_cal`` files written with its
  defaults): romancal rebuilds ``var_rnoise = err^2 - var_poisson - var_flat`` pixel by
  pixel from float16 arrays; on stars ``var_poisson`` dominates and the difference is
  rounding noise, often negative, so ``ivm`` weights there are wrong and
  point-source flux is lost (~17 %, see the issue). Here the read-noise variance of such
  an input is the median of that difference over its good sky pixels: one value per
  input, independent of the signal, which keeps ``ivm`` weighting flux-conserving.
* ``ivm-median``: romancal's per-pixel ``ivm`` weights lose flux on bright sources even
  with ``var_rnoise`` present: the ramp fit's read-noise variance grows with the signal
  (the optimal weights flatten, fewer resultants before saturation or after a jump),
  so each mosaic pixel leans towards the input in which that pixel is fainter (bright
  stars at 0.70 of their true flux in the mosaic demo, romancal's mosaic the same).
  One weight per input, the inverse of its median read-noise variance over good
  pixels, weights inputs by their noise as ``ivm`` does and is independent of the
  signal, so the weighted mean conserves flux; the variances are still resampled per
  pixel and combined with these weights (``S += r w^2``, ``W += w``).
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from romancal_lite.datamodels import MappedArray
from romancal_lite.errors import ConfigError, InputFileError

from .._arrays import (
    available_memory,
    empty_releasable,
    file_array,
    release_rows,
    return_freed_memory,
)
from .pixmap import calc_pixmap, resample_range, row_extents

__all__ = [
    "KERNELS",
    "Resampler",
    "WEIGHT_TYPES",
    "good_pixel_mask",
    "median_variance",
    "output_bytes",
    "parse_fillval",
    "read_noise_variance",
]

#: The drizzle kernels (drizzle 2.x).
KERNELS = ("square", "point", "turbo", "gaussian", "lanczos2", "lanczos3")

#: Input weightings: romancal's per-pixel ``ivm`` and ``exptime``, and ``ivm-median``
#: (one inverse median read-noise variance per input: flux-conserving).
WEIGHT_TYPES = ("ivm-median", "ivm", "exptime")

#: Kernels drizzled by romancore's fused kernel (the others by the drizzle package).
FUSED_KERNELS = ("square", "point", "turbo")

#: Variances resampled (romancal: ``variance_array_names``; ``var_flat`` optional).
VARIANCES = ("var_rnoise", "var_poisson")


def parse_fillval(value: Any) -> float:
    """Return the value of output pixels without data (``"NAN"``; ``"INDEF"`` -> 0, romancal).

    Parameters
    ----------
    value : str or float
        The ``fillval`` parameter.

    Returns
    -------
    float
        The fill value.

    Raises
    ------
    ConfigError
        If it is not a number, ``"NAN"`` or ``"INDEF"``.
    """
    if value is None:
        return math.nan
    text = str(value).strip().lower()
    if text == "indef":
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"fillval must be a number, 'NaN' or 'INDEF', not {value!r}") from None


def good_pixel_mask(dq: np.ndarray | None, good_bits: str | int | None, shape: tuple) -> np.ndarray:
    """Return True where a pixel is used (astropy ``bitfield_to_boolean_mask``, as stcal).

    Parameters
    ----------
    dq : numpy.ndarray or None
        The data-quality array (None: every pixel good).
    good_bits : str, int or None
        Bits that do not make a pixel bad: ``"~DO_NOT_USE"`` (default), ``"GOOD"``
        style names joined by ``+``/``,``, or an integer.
    shape : tuple
        Shape of the data.

    Returns
    -------
    numpy.ndarray
        Boolean mask.

    Raises
    ------
    ConfigError
        If ``good_bits`` names an unknown flag.
    """
    if dq is None:
        return np.ones(shape, dtype=bool)
    from astropy.nddata.bitmask import bitfield_to_boolean_mask

    from romancore.dqflags import pixel

    names = {flag.name: int(flag.value) for flag in pixel}
    try:
        return bitfield_to_boolean_mask(
            dq, good_bits, good_mask_value=True, dtype=bool, flag_name_map=names
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"good_bits {good_bits!r}: {exc}") from None


def _sample(good: np.ndarray) -> Any:
    """Return the sampling of an image for a median: every 3rd pixel of every 3rd row.

    ~2e6 pixels of a detector, plenty for a median; a small image is used whole.
    """
    return (slice(None, None, 3), slice(None, None, 3)) if good.size > 1 << 20 else ...


def read_noise_variance(model: Any, good: np.ndarray) -> tuple[np.ndarray | float, str]:
    """Return the read-noise variance of an input, and where it comes from.

    Parameters
    ----------
    model : ImageModel
        The input.
    good : numpy.ndarray
        Its good-pixel mask.

    Returns
    -------
    tuple
        ``(var_rnoise, source)``: the array (``"var_rnoise"``) or, without one, the
        median over good pixels of ``err^2 - var_poisson [- var_flat]`` where positive
        (``"median of err^2 - var_poisson"``), NaN if there is none.
    """
    if "var_rnoise" in model:
        value = np.asarray(model.var_rnoise)
        if value.shape == good.shape:
            return value, "var_rnoise"
    step = _sample(good)
    rest = np.square(np.asarray(model.err[step], dtype=np.float32))
    for name in ("var_poisson", "var_flat"):
        if name in model and np.shape(model[name]) == good.shape:
            rest -= np.asarray(model[name][step], dtype=np.float32)
    sample = rest[good[step] & np.isfinite(rest) & (rest > 0)]
    # romancal basic_utils.compute_var_rnoise: err^2 minus the other variances
    level = float(np.median(sample)) if sample.size else math.nan
    return level, "median of err^2 - var_poisson - var_flat"


def median_variance(values: np.ndarray | float, good: np.ndarray) -> float:
    """Return the median of a variance over the good pixels (one value per input).

    Parameters
    ----------
    values : numpy.ndarray or float
        The variance image (e.g. ``var_rnoise``) or one value (returned as it is).
    good : numpy.ndarray of bool
        The good-pixel mask.

    Returns
    -------
    float
        The median of the finite, positive values on good pixels (every third pixel of
        every third row of a large image: ~2e6 values of a detector), NaN if none.
    """
    if np.ndim(values) == 0:
        return float(values)
    step = _sample(good)
    sample = np.asarray(values[step], dtype=np.float32)
    sample = sample[good[step] & np.isfinite(sample) & (sample > 0)]
    return float(np.median(sample)) if sample.size else math.nan


def _constant_value(values: Any) -> float | None:
    """Return the value of a scalar or of an array with one value, else None."""
    if np.ndim(values) == 0:
        value = float(values)
        return value if math.isfinite(value) else None
    if isinstance(values, MappedArray):
        # stored values all the same bits: then so are the scaled ones
        raw = values.raw
        if isinstance(raw, np.ndarray) and raw.dtype.kind == "f" and raw.itemsize in (2, 4, 8):
            bits = raw.view(f"u{raw.itemsize}")
            first_bits = bits[0, 0]
            if all(not np.any(bits[r0 : r0 + BAND_ROWS] != first_bits)
                   for r0 in range(0, raw.shape[0], BAND_ROWS)):  # fmt: skip
                first = values[:1, :1].flat[0]
                return float(first) if np.isfinite(first) else None
        # else read (and scaled) a block of rows at a time: the same test
        row = values[0]
        first = row.flat[0]
        if not np.isfinite(first) or np.any(row != first):
            return None
        for r0 in range(0, values.shape[0], BAND_ROWS):
            if np.any(values[r0 : r0 + BAND_ROWS] != first):
                return None
        return float(first)
    array = np.asarray(values)
    first = array.flat[0]
    if not np.isfinite(first):
        return None
    # cheap rejection on a row first, then the whole array
    if np.any(array[0] != first) or np.any(array != first):
        return None
    return float(first)


def output_bytes(shape: tuple[int, int], n_inputs: int, n_variances: int) -> int:
    """Return the bytes of the full-size arrays a mosaic of ``shape`` needs.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)``.
    n_inputs : int
        Inputs (context planes: ``ceil(n / 32)``).
    n_variances : int
        Variances resampled.

    Returns
    -------
    int
        data, weight, exposure time (float32), context (uint32 planes), two
        float32 accumulators per variance, and at the end err and the variances.
    """
    pixels = int(shape[0]) * int(shape[1])
    planes = max(1, math.ceil(n_inputs / 32))
    return pixels * 4 * (3 + planes + 2 * n_variances + 1 + n_variances)


def _free_disk(directory: str | None) -> int:
    import shutil

    try:
        return shutil.disk_usage(directory or tempfile.gettempdir()).free
    except OSError:  # pragma: no cover
        return 1 << 50


def check_memory(shape: tuple[int, int], n_inputs: int, n_variances: int,
                 input_shape: tuple[int, int], scratch_dir: str | None = None) -> int:  # fmt: skip
    """Raise before any allocation if the mosaic would not fit in memory or on disk.

    The full-size arrays live in temporary files (`file_array`); the memory holds one
    input (its arrays, weight and mask: ~40 bytes a pixel), the working arrays of
    one band of ``BAND_ROWS`` output rows (the accumulators of a mosaic and the err)
    and the drizzle kernel's float64 buffers (one block of rows a thread). The disk
    holds the products and, until the end, each input's staged arrays (data,
    good-pixel mask, float16 variances: ~5 + 2 n_variances bytes a
    pixel; the pixel maps are the library's, kept by outlier_detection).

    Parameters
    ----------
    shape : tuple of int
        Output ``(ny, nx)``.
    n_inputs : int
        Number of inputs.
    n_variances : int
        Variances resampled.
    input_shape : tuple of int
        Shape of one input.
    scratch_dir : str, optional
        Where the temporary files go (default: the system's temporary directory).

    Returns
    -------
    int
        The bytes of memory needed.

    Raises
    ------
    ConfigError
        If they exceed the memory available now, or the files the free disk space.
    """
    input_pixels = int(np.prod(input_shape))
    planes = max(1, math.ceil(n_inputs / 32))
    from romancore import effective_n_threads
    from romancore.drizzle import BAND_ROWS as KERNEL_ROWS

    band = BAND_ROWS * int(shape[1]) * 4 * (4 + planes + 2 * n_variances)
    band += effective_n_threads() * KERNEL_ROWS * int(shape[1]) * 8 * (3 + n_variances)
    need = 40 * input_pixels + band
    available = available_memory()
    if need > available:
        raise ConfigError(
            f"the output grid {shape[0]} x {shape[1]} ({n_inputs} inputs) needs about "
            f"{need / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB available; "
            "use a larger pixel_scale / pixel_scale_ratio, an output_shape, or fewer inputs"
        )
    disk = output_bytes(shape, n_inputs, n_variances) + n_inputs * input_pixels * (
        5 + 2 * n_variances)
    free = _free_disk(scratch_dir)
    if disk > free:
        raise ConfigError(
            f"the output grid {shape[0]} x {shape[1]} ({n_inputs} inputs) needs about "
            f"{disk / 2**30:.1f} GiB of temporary files, more than the {free / 2**30:.1f} "
            f"GiB free in {scratch_dir or tempfile.gettempdir()}; use a larger pixel_scale "
            "/ pixel_scale_ratio, an output_shape, fewer inputs, or set TMPDIR"
        )
    return need


#: Output rows drizzled at a time by the fused kernels (the working set of one input).
BAND_ROWS = 512


def _file_array(shape: tuple[int, ...], dtype: Any, directory: str | None,
                fill: float | None = None) -> np.ndarray:  # fmt: skip
    """`file_array`, ``fill`` written band by band (released as it goes)."""
    array = file_array(shape, dtype, directory)
    if fill is not None:
        rows = array.shape[-2]
        for r0 in range(0, rows, BAND_ROWS):
            r1 = min(rows, r0 + BAND_ROWS)
            array[..., r0:r1, :] = fill
            release_rows(array, r0, r1)
    return array


def _to_file(array: Any, dtype: Any, directory: str | None,
             offset: Any = None) -> np.ndarray:  # fmt: skip
    """Return ``array`` (as ``dtype``) written to an unnamed temporary file, mapped read-only.

    ``offset`` (a number of ``dtype``): ``array - offset`` is written instead, computed
    a band of rows at a time (no full-size copy).
    """
    values = np.ascontiguousarray(array, dtype=dtype)
    with tempfile.TemporaryFile(prefix="romancal_lite_mosaic_", dir=directory) as fh:
        if offset is not None and values.ndim == 0:
            values = values - offset
        if offset is None or values.ndim == 0:
            values.tofile(fh)
        else:
            for r0 in range(0, values.shape[0], BAND_ROWS):
                (values[r0 : r0 + BAND_ROWS] - offset).tofile(fh)
        fh.flush()
        if values.size == 0:
            return values.copy()
        return np.memmap(fh, dtype=values.dtype, mode="r", shape=values.shape).view(np.ndarray)


def _write_rows(r0: int, products: list[tuple[_RowFile, np.ndarray]],
                reset: Any, arrays: dict[str, Any]) -> None:  # fmt: skip
    """Write one band's rows (from grid row ``r0``) to the products' files, then reset.

    ``reset(arrays)`` prepares the arrays for the band they take next (a helper
    thread's job).
    """
    for row_file, rows in products:
        row_file.write(r0, rows)
    reset(arrays)


class _RowFile:
    """An array in an unnamed temporary file, written row block by row block (``pwrite``).

    Nothing is mapped while it is written (no page faults, no pages to hand back);
    `array` maps the file (shared, writable) once it is complete. The file has no name
    and goes with the last map of it.
    """

    def __init__(self, shape: tuple[int, ...], dtype: Any, directory: str | None) -> None:
        self.shape = tuple(int(v) for v in shape)
        self.dtype = np.dtype(dtype)
        self._file = tempfile.TemporaryFile(prefix="romancal_lite_mosaic_", dir=directory)
        self._plane = self.shape[-2] * self.shape[-1] * self.dtype.itemsize
        self._row = self.shape[-1] * self.dtype.itemsize
        os.ftruncate(self._file.fileno(), self._plane * math.prod(self.shape[:-2]))

    def write(self, r0: int, rows: np.ndarray) -> None:
        """Write ``rows`` (``(..., n, nx)``, the planes' rows ``r0:r0 + n``)."""
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        planes = rows.reshape(-1, *rows.shape[-2:])
        fd = self._file.fileno()
        for k, plane in enumerate(planes):
            view = memoryview(plane).cast("B")
            offset = k * self._plane + r0 * self._row
            while view.nbytes:
                written = os.pwrite(fd, view, offset)
                view = view[written:]
                offset += written

    def array(self) -> np.ndarray:
        """Return the array (a map of the file; the file is closed)."""
        with self._file as fh:
            if math.prod(self.shape) == 0:
                return np.zeros(self.shape, self.dtype)
            mapped = np.memmap(fh, dtype=self.dtype, mode="r+", shape=self.shape)
        return mapped.view(np.ndarray)


def _mapped_array(model: Any, name: str) -> MappedArray | None:
    """Return ``model.<name>`` as a `MappedArray` if it is unread and mappable, else None."""
    mapped = getattr(model, "mapped_array", None)
    return mapped(name) if callable(mapped) else None


class _DataRows:
    """An input's data read from its file a block of rows at a time, minus a sky level.

    ``rows[s0:s1]`` is, bit for bit, what the staged copy held: ``model.data`` as
    float32 minus ``offset`` (float32).
    """

    def __init__(self, mapped: MappedArray, offset: np.float32 | None) -> None:
        self.mapped = mapped
        self.offset = offset

    @property
    def shape(self) -> tuple[int, ...]:
        """The data's shape."""
        return self.mapped.shape

    def __getitem__(self, rows: slice) -> np.ndarray:
        values = np.ascontiguousarray(self.mapped[rows], dtype=np.float32)
        return values if self.offset is None else values - self.offset


class _IvmRows:
    """``ivm`` weights computed a block of rows at a time from an input's ``var_rnoise``.

    ``rows[s0:s1]`` is, bit for bit, those rows of the full-size weight `Resampler.add`
    builds for ``weight_type="ivm"`` (``1 / var_rnoise`` as float32, 0 where that is
    not finite or the pixel is not good), computed from the variance read from the
    input's file (`_float32_rows`) and the good-pixel mask: no full-size variance, no
    full-size weight, nothing written to a staging file but the mask.
    """

    def __init__(self, rnoise: MappedArray, good: np.ndarray) -> None:
        self.rnoise = rnoise
        self.good = good

    @property
    def shape(self) -> tuple[int, ...]:
        """The weights' shape."""
        return self.good.shape

    def __getitem__(self, rows: slice) -> np.ndarray:
        s0, s1, _ = rows.indices(self.shape[0])
        values = _float32_rows(self.rnoise, s0, s1)
        with np.errstate(divide="ignore", invalid="ignore"):
            weight = np.reciprocal(np.asarray(values, dtype=np.float32))
        weight[~(np.isfinite(weight) & self.good[s0:s1])] = 0
        return weight

    def blocks(self, window: tuple[slice, slice]) -> Any:
        """Yield the weights and the good mask of ``window``, `BAND_ROWS` rows at a time."""
        rows, cols = window
        r0, r1, _ = rows.indices(self.shape[0])
        for b0 in range(r0, r1, BAND_ROWS):
            b1 = min(r1, b0 + BAND_ROWS)
            yield self[b0:b1][:, cols], self.good[b0:b1, cols]

    def staged(self, directory: str | None) -> _IvmRows:
        """Return the same weights with the good-pixel mask in an unnamed temporary file."""
        return _IvmRows(self.rnoise, _to_file(self.good, np.bool_, directory))


def _float32_rows(values: Any, s0: int, s1: int) -> Any:
    """Return rows ``s0:s1`` of a variance as float32 (a number as it is).

    A float16 array of a file with a unit conversion pending is scaled, rounded to
    float16 and widened in one compiled pass (`romancore.half.scale_float16(widen=True)`: the
    bits of the model's own scaling, then ``astype(float32)``).
    """
    if np.ndim(values) == 0:
        return values
    if (isinstance(values, MappedArray) and values.factor is not None
            and values.raw.dtype == np.dtype(np.float16)
            and values.dtype == np.dtype(np.float16)):  # fmt: skip
        from romancore.half import scale_float16

        # (a helper thread beside the kernel's: one thread)
        return scale_float16(values.raw[s0:s1], values.factor, widen=True, n_threads=1)
    return np.ascontiguousarray(values[s0:s1], dtype=np.float32)


def _raw(array: Any) -> Any:
    """Return the array whose pages hold an input's rows (the file map of a mapped one)."""
    if isinstance(array, _DataRows):
        array = array.mapped
    return array.raw if isinstance(array, MappedArray) else array


def _raw_arrays(array: Any) -> list[Any]:
    """`_raw` of a staged array; both arrays an `_IvmRows` reads."""
    if isinstance(array, _IvmRows):
        return [_raw(array.rnoise), array.good]
    return [_raw(array)]


def _is_file_map(array: np.ndarray) -> bool:
    """Whether a pixel map lies in a file whose pages can be handed back.

    The library's kept maps are copy-on-write maps nothing writes through.
    """
    from .._arrays import is_file_map

    return is_file_map(array, copy_on_write=True) and array.flags.c_contiguous


@dataclass
class _Staged:
    """One input waiting to be drizzled: its arrays in files, where its rows land."""

    index: int
    data: Any  # np.ndarray (staged) or _DataRows (read from the input's file)
    weight: Any  # float32 per pixel (an array or `_IvmRows`), or the good-pixel mask
    # (bool) x weight_value
    pixmap: np.ndarray
    box: tuple[int, int, int, int]
    extents: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    names: tuple[str, ...]
    values: list[Any]
    coverage: np.ndarray | None
    effective_time: float
    variance_weight: float
    weight_value: float = 1.0

    def variance_rows(self, s0: int, s1: int) -> list[Any]:
        """Return the variances of rows ``s0:s1`` for the kernel (float32 or a number)."""
        return [_float32_rows(v, s0, s1) for v in self.values]

    def rows_for(self, b0: int, b1: int, margin: int) -> tuple[int, ...] | None:
        """Input rows to drizzle for output rows ``b0:b1``, and the output rows touched.

        ``(s0, s1, y0, y1, r0, r1)``: the slice of rows given to the kernel (the rows
        whose pixels can reach the band, two more on each side: the kernel
        interpolates the map between neighbours), the box rows inside it, and the
        output rows the kernel can write; None if no row reaches the band.
        """
        lo, hi, _, _ = self.extents
        rows = np.flatnonzero((hi >= b0 - margin) & (lo <= b1 - 1 + margin))
        if rows.size == 0:
            return None
        j0, j1 = int(rows[0]), int(rows[-1])
        ny_in = self.data.shape[0]
        s0, s1 = max(0, j0 - 2), min(ny_in, j1 + 3)
        _, _, ymin, ymax = self.box
        y0, y1 = max(ymin, s0), min(ymax, s1 - 1)
        if y1 <= y0:
            return None
        r0 = max(0, int(math.floor(lo[j0 : j1 + 1].min())) - margin)
        r1 = int(math.ceil(hi[j0 : j1 + 1].max())) + margin + 1
        return s0, s1, y0, y1, r0, max(r0, r1)

    def band_rows(self, b0: int, b1: int, margin: int
                  ) -> tuple[tuple[int, int, int, int], Any, list[Any], Any] | None:  # fmt: skip
        """Return what the kernel needs of this input for output rows ``b0:b1``.

        ``((s0, s1, y0, y1), data, variances, weight)`` (see `rows_for`): the data rows,
        the variance rows as float32 (read, scaled and converted here) and the weight
        rows, or None if no row reaches the band.
        """
        reach = self.rows_for(b0, b1, margin)
        if reach is None:
            return None
        s0, s1, y0, y1, _, _ = reach
        return ((s0, s1, y0, y1), self.data[s0:s1], self.variance_rows(s0, s1),
                self.weight[s0:s1])  # fmt: skip

    def release(self, s0: int, s1: int) -> None:
        """Hand the pages of rows ``s0:s1`` of the staged arrays back to the OS."""
        arrays = [_raw(self.data), *_raw_arrays(self.weight),
                  self.pixmap.reshape(self.pixmap.shape[0], -1)]  # fmt: skip
        arrays += [_raw(v) for v in self.values if np.ndim(v) == 2]
        if self.coverage is not None:
            arrays.append(self.coverage)
        for array in arrays:
            release_rows(array, s0, s1)


@dataclass
class _Accumulator:
    """The full-size state of one mosaic, in temporary files (see `_file_array`)."""

    shape: tuple[int, int]
    n_inputs: int
    variances: tuple[str, ...]
    maps: bool = True
    directory: str | None = None
    data: np.ndarray = field(init=False)
    weight: np.ndarray = field(init=False)
    context: np.ndarray | None = field(init=False)
    exptime: np.ndarray | None = field(init=False)
    var_sum: dict[str, np.ndarray] = field(init=False)
    var_weight: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        planes = max(1, math.ceil(self.n_inputs / 32))
        new = _file_array
        where = self.directory
        self.data = new(self.shape, np.float32, where)
        self.weight = new(self.shape, np.float32, where)
        # the context and exposure-time maps only when the product needs them
        self.context = new((planes, *self.shape), np.uint32, where) if self.maps else None
        self.exptime = new(self.shape, np.float32, where) if self.maps else None
        self.var_sum = {name: new(self.shape, np.float32, where, fill=np.nan)
                        for name in self.variances}  # fmt: skip
        self.var_weight = {name: new(self.shape, np.float32, where) for name in self.variances}

    def arrays(self) -> list[np.ndarray]:
        """Every full-size array (context: all planes)."""
        out = [self.data, self.weight, *self.var_sum.values(), *self.var_weight.values()]
        out += [a for a in (self.context, self.exptime) if a is not None]
        return out

    def release(self, r0: int, r1: int) -> None:
        """Hand rows ``r0:r1`` of every array back to the OS (their data stay on disk)."""
        for array in self.arrays():
            release_rows(array, r0, r1)


class Resampler:
    """Drizzle images, one at a time, onto one output grid.

    Parameters
    ----------
    output_wcs : gwcs.WCS
        The grid (``array_shape`` set).
    n_inputs : int
        Number of inputs (context planes).
    pixel_scale_ratio : float
        Output over input pixel scale (drizzle's kernel scaling and the variance
        scaling).
    kernel, pixfrac, fillval, weight_type, good_bits
        romancal's resample parameters.
    variances : tuple of str, optional
        Variances resampled.
    pixmap_stepsize, pixmap_order : int, optional
        Pixel-map interpolation (`calc_pixmap`).
    maps : bool, optional
        Keep the context and exposure-time maps (False: only data and weight, e.g.
        outlier detection's group images; ``finalize`` then gives no context and
        exposure times of 0).
    scratch_dir : str, optional
        Directory of the temporary files holding the full-size arrays (default: the
        system's temporary directory); the files have no names and go with the arrays.
    """

    def __init__(
        self,
        output_wcs: Any,
        n_inputs: int,
        *,
        pixel_scale_ratio: float = 1.0,
        kernel: str = "square",
        pixfrac: float = 1.0,
        fillval: float = math.nan,
        weight_type: str = "ivm",
        good_bits: str | int | None = "~DO_NOT_USE",
        variances: tuple[str, ...] = VARIANCES,
        pixmap_stepsize: int = 10,
        pixmap_order: int = 3,
        maps: bool = True,
        scratch_dir: str | None = None,
    ) -> None:
        if kernel not in KERNELS:
            raise ConfigError(f"kernel must be one of {', '.join(KERNELS)}, not {kernel!r}")
        if weight_type not in WEIGHT_TYPES:
            raise ConfigError(f"weight_type must be one of {', '.join(WEIGHT_TYPES)}, "
                              f"not {weight_type!r}")
        self.wcs = output_wcs
        self.shape = tuple(int(v) for v in output_wcs.array_shape)
        self.pixel_scale_ratio = float(pixel_scale_ratio)
        self.kernel = kernel
        self.pixfrac = float(pixfrac)
        self.fillval = float(fillval)
        self.weight_type = weight_type
        self.good_bits = good_bits
        self.variances = tuple(variances)
        self.pixmap_stepsize = int(pixmap_stepsize)
        self.pixmap_order = int(pixmap_order)
        self.n_inputs = int(n_inputs)
        self.maps = bool(maps)
        self.scratch_dir = scratch_dir
        # drizzle-package kernels: full-size state in files, updated input by input;
        # fused kernels: inputs staged in files, drizzled band by band at the end
        self._acc = (None if kernel in FUSED_KERNELS else
                     _Accumulator(self.shape, self.n_inputs, self.variances, maps, scratch_dir))
        self._staged: list[_Staged] = []
        self.n_added = 0
        self._work: dict[str, Any] | None = None
        self.log_lines: list[str] = []

    # -------------------------------------------------------------------- one input
    def _margin(self) -> int:
        # how far (output pixels) a kernel reaches beyond the mapped pixel centres
        reach = {"square": 1.0, "point": 1.0, "turbo": 1.0, "gaussian": 3.0,
                 "lanczos2": 2.0, "lanczos3": 3.0}[self.kernel]  # fmt: skip
        return int(math.ceil(reach * max(1.0, self.pixfrac) / self.pixel_scale_ratio)) + 2

    def add(self, model: Any, index: int, *, exposure_time: float, effective_time: float,
            level: float | None, pixmap: np.ndarray | None = None) -> dict[str, Any]:  # fmt: skip
        """Drizzle one image onto the grid.

        Parameters
        ----------
        model : ImageModel
            The image (``data``, ``dq``, ``err``, variances, ``meta.wcs``).
        index : int
            Its context bit.
        exposure_time : float
            Its exposure time (``exptime`` weight, drizzle's ``exptime``).
        effective_time : float
            Its effective exposure time (the exposure-time map).
        level : float or None
            Sky level to subtract (None: none).
        pixmap : numpy.ndarray, optional
            The image's pixel map onto this grid (`calc_pixmap` with this resampler's
            ``pixmap_stepsize`` and ``pixmap_order``), e.g. kept from an earlier step
            (`member_pixmap`); computed when not given.

        Returns
        -------
        dict
            ``{"overlap": bool, "rnoise_source": str}``.

        Raises
        ------
        InputFileError
            If the image has no WCS or its arrays do not match.
        """
        name = model.meta.get("filename") or f"input {index}"
        wcs = model.meta.get("wcs")
        if wcs is None:
            raise InputFileError(f"{name}: no WCS (meta.wcs); run assign_wcs first")
        # fused kernels: an uncompressed array of the file is read a block of rows at a
        # time as it is drizzled (`MappedArray`), not copied to a staged file
        data: Any = _mapped_array(model, "data") if self.kernel in FUSED_KERNELS else None
        if data is None:
            data = np.asarray(model.data, dtype=np.float32)
        if data.ndim != 2:
            raise InputFileError(f"{name}: data is not a 2-D image (shape {data.shape})")
        dq = np.asarray(model.dq) if "dq" in model else None
        if dq is not None and dq.shape != data.shape:
            raise InputFileError(f"{name}: dq shape {dq.shape} does not match data {data.shape}")
        good = good_pixel_mask(dq, self.good_bits, data.shape)
        fused = self.kernel in FUSED_KERNELS
        mapped = _mapped_array(model, "var_rnoise") if fused else None
        if mapped is not None and mapped.shape == good.shape:
            # read_noise_variance's array, read from the file a block of rows at a time
            rnoise: Any = mapped
            source = "var_rnoise"
        else:
            mapped = None
            rnoise, source = read_noise_variance(model, good)
        # input weights: stcal resample/utils.py build_driz_weight; the variances are
        # combined with the same weights: per pixel 1 / r_rnoise (ivm) or one value per
        # input (``variance_weight``)
        variance_weight = float(exposure_time)
        weight: Any = None  # one value on the good pixels: not built
        if self.weight_type == "ivm-median":
            median = median_variance(rnoise, good)
            variance_weight = 1.0 / median if math.isfinite(median) and median > 0 else 0.0
        elif self.weight_type == "ivm" and mapped is not None:
            # fused kernels: computed from the variance's rows as they are drizzled
            weight = _IvmRows(mapped, good)
        elif self.weight_type == "ivm":
            with np.errstate(divide="ignore", invalid="ignore"):
                # one float32 copy, inverted in place (not a converted copy and then
                # its reciprocal: one full-size array less at once)
                inv = np.array(rnoise, dtype=np.float32, copy=True)
                np.reciprocal(inv, out=inv)
            if np.ndim(inv) == 0:
                inv = np.float32(inv if np.isfinite(inv) and inv > 0 else 0.0)
                weight = np.where(good, inv, np.float32(0)).astype(np.float32)
            else:
                # in place: the reciprocal becomes the weight (no full-size copies)
                inv[~(np.isfinite(inv) & good)] = 0
                weight = inv
                del inv
        offset = None
        if level is not None and math.isfinite(level):
            offset = np.float32(level)
            if self.kernel not in FUSED_KERNELS:
                data = data - offset
                offset = None
            # fused kernels: subtracted as the data are staged, a block of rows at a
            # time (the same float32 values, no full-size copy)

        if pixmap is None:
            pixmap = calc_pixmap(
                wcs, self.wcs, data.shape, stepsize=self.pixmap_stepsize,
                order=self.pixmap_order,
            )  # fmt: skip
        elif self.kernel not in FUSED_KERNELS:
            pixmap = np.array(pixmap)  # shifted in place below
        xmin, xmax, ymin, ymax = resample_range(data.shape, wcs)
        if self.kernel in FUSED_KERNELS:
            box = (xmin, xmax, ymin, ymax)
            return self._add_fused(model, index, data, weight, good, rnoise, source, pixmap,
                                   box, variance_weight, effective_time, offset)  # fmt: skip
        from drizzle.resample import Drizzle

        if weight is None:
            weight = np.where(good, np.float32(variance_weight), np.float32(0))
        used = pixmap[ymin : ymax + 1, xmin : xmax + 1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo = np.nanmin(used.reshape(-1, 2), axis=0)
            hi = np.nanmax(used.reshape(-1, 2), axis=0)
        margin = self._margin()
        ny, nx = self.shape
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            return {"overlap": False, "rnoise_source": source}
        x0 = max(0, int(math.floor(lo[0])) - margin)
        y0 = max(0, int(math.floor(lo[1])) - margin)
        x1 = min(nx, int(math.ceil(hi[0])) + margin + 1)
        y1 = min(ny, int(math.ceil(hi[1])) + margin + 1)
        if x1 <= x0 or y1 <= y0:
            return {"overlap": False, "rnoise_source": source}
        pixmap[..., 0] -= x0
        pixmap[..., 1] -= y0
        cut = (y1 - y0, x1 - x0)
        window = (slice(y0, y1), slice(x0, x1))
        common = {
            "exptime": float(exposure_time),
            "pixmap": pixmap,
            "iscale": 1.0,  # romancal: always 1 (romancal #1637)
            "pixel_scale_ratio": self.pixel_scale_ratio,
            "weight_map": weight,
            "wht_scale": 1.0,
            "pixfrac": self.pixfrac,
            "in_units": "cps",
            "xmin": xmin,
            "xmax": xmax,
            "ymin": ymin,
            "ymax": ymax,
        }
        driz = Drizzle(kernel=self.kernel, fillval=0.0, out_shape=cut, disable_ctx=True)
        driz.add_image(data, **common)
        cut_data, cut_wht = driz.out_img, driz.out_wht
        del driz
        covered = cut_wht != 0
        if not covered.any():
            return {"overlap": False, "rnoise_source": source}
        acc = self._acc
        # the weighted mean drizzle keeps: D = (D W + d w) / (W + w)
        total = acc.weight[window] + cut_wht
        with np.errstate(divide="ignore", invalid="ignore"):
            merged = (acc.data[window] * acc.weight[window] + cut_data * cut_wht) / total
        acc.data[window] = np.where(total != 0, merged, acc.data[window])
        acc.weight[window] = total
        plane, bit = divmod(index, 32)
        if acc.context is not None:
            acc.context[plane][window][covered] |= np.uint32(1 << bit)

        # exposure time map (romancal _exptime_resampler: unit weights on good pixels,
        # pixfrac 1): where this input's good pixels land
        if acc.exptime is None:
            pass
        elif (
            self.weight_type != "exptime"
            and self.kernel == "square"
            and self.pixfrac == 1.0
            and (np.array_equal(weight > 0, good))
        ):
            landed = covered
        else:
            unit = Drizzle(kernel=self.kernel, fillval=0.0, out_shape=cut, disable_ctx=True)
            unit.add_image(np.ones_like(data), **{**common, "weight_map": good.astype(np.float32),
                                                  "pixfrac": 1.0})  # fmt: skip
            landed = unit.out_wht > 0
            del unit
        if acc.exptime is not None:
            acc.exptime[window][landed] += np.float32(effective_time)

        # variances: sqrt(v) drizzled with the same weights, squared (stcal
        # _resample_one_variance_array), combined with w = 1/r_rnoise or exptime
        resampled: dict[str, np.ndarray] = {}
        for name in self.variances:
            if name == "var_rnoise":
                values = rnoise
            elif name in model and np.shape(model[name]) == data.shape:
                values = model[name]
            else:
                continue
            constant = _constant_value(values)
            if constant is not None:
                # the weighted mean of a constant is that constant wherever something
                # lands (the same pixels as the data): no drizzle needed
                value = np.float32(constant) if constant >= 0 else np.float32(np.nan)
                resampled[name] = np.where(covered, value, np.float32(np.nan))
                continue
            with np.errstate(invalid="ignore"):  # a negative variance: NaN, as stcal
                root = np.sqrt(np.asarray(values, dtype=np.float32))
            dv = Drizzle(kernel=self.kernel, fillval=math.nan, out_shape=cut, disable_ctx=True)
            dv.add_image(np.ascontiguousarray(root), **common)
            resampled[name] = np.square(dv.out_img)
            del dv, root
        if self.weight_type == "ivm":
            r = resampled.get("var_rnoise")
            if r is None:
                var_weight = np.zeros(cut, np.float32)
            else:
                ok = (r > 0) & np.isfinite(r)
                var_weight = np.zeros(cut, np.float32)
                var_weight[ok] = np.reciprocal(r[ok])
        else:
            var_weight = np.full(cut, np.float32(variance_weight), np.float32)
        for name, r in resampled.items():
            with np.errstate(invalid="ignore"):
                ok = (r >= 0) & np.isfinite(r) & (var_weight > 0)
                contribution = r * var_weight * var_weight
            s = acc.var_sum[name][window]
            # S = nansum(S, r w^2) where ok (stcal resample_variance_arrays)
            s[...] = np.where(ok, np.where(np.isnan(s), contribution, s + contribution), s)
            w = acc.var_weight[name][window]
            w += np.where(ok, var_weight, np.float32(0))
        acc.release(y0, y1)
        self.n_added += 1
        return {"overlap": True, "rnoise_source": source}

    def _add_fused(self, model: Any, index: int, data: np.ndarray, weight: np.ndarray | None,
                   good: np.ndarray, rnoise: np.ndarray | float, source: str,
                   pixmap: np.ndarray, box: tuple[int, int, int, int], variance_weight: float,
                   effective_time: float,
                   offset: np.float32 | None = None) -> dict[str, Any]:  # fmt: skip
        """Stage an input for `romancore.drizzle.add_image` (drizzled in `finalize`).

        Its arrays go to unnamed temporary files (the map stays where it is if it is
        already a file); ``variance_weight``: the weight combining this input's
        variances when it is one value per input (``exptime``, ``ivm-median``), and
        then also its weight on the good pixels (``weight`` is None: the good-pixel
        mask is staged); ``offset``: a sky level subtracted from the data as they are
        staged.
        """
        names, values = [], []
        for name in self.variances:
            if name == "var_rnoise":
                value = rnoise
            elif name in model:
                value = _mapped_array(model, name)
                if value is None:
                    value = model[name]
                if np.shape(value) != data.shape:
                    continue
            else:
                continue
            constant = _constant_value(value)
            if constant is not None:
                # the weighted mean of a constant is that constant wherever the input
                # lands: no square roots to resample
                values.append(constant)
            elif np.ndim(value) == 0:
                values.append(math.nan)
            elif isinstance(value, MappedArray):
                values.append(value)  # read a block of rows at a time from its file
            else:
                # staged as they are (float16 in _cal files: half the disk), float32
                # for the kernel a block of rows at a time (the same values)
                kind = np.dtype(getattr(value, "dtype", np.float32))
                kind = kind if kind in (np.float16, np.float32) else np.float32
                values.append(_to_file(value, kind, self.scratch_dir))
            names.append(name)
        # exposure-time map (romancal _exptime_resampler: unit weights on the good
        # pixels, pixfrac 1): where the input lands, unless the weights or pixfrac
        # make that differ from where its good pixels land
        weight_value = float(variance_weight)
        positive = bool(np.float32(weight_value) > 0)
        maps = self.maps
        if weight is None:
            # weight > 0 is the good-pixel mask, or nothing with a weight <= 0
            same_landing = self.pixfrac == 1.0 and (positive or not good.any())
        elif not maps:
            same_landing = True  # (no exposure-time map: not needed)
        elif isinstance(weight, _IvmRows):
            whole = (slice(None), slice(None))
            same_landing = self.pixfrac == 1.0 and all(
                np.array_equal(w > 0, g) for w, g in weight.blocks(whole))
        else:
            same_landing = self.pixfrac == 1.0 and np.array_equal(weight > 0, good)
        extents = row_extents(pixmap, box)
        lo, hi, left, right = extents
        ny, nx = self.shape
        xmin, xmax, ymin, ymax = box
        inside = (lo <= ny - 0.5) & (hi >= -0.5) & (left <= nx - 0.5) & (right >= -0.5)
        window = (slice(ymin, ymax + 1), slice(xmin, xmax + 1))
        if weight is None:
            weighted = positive and bool(good[window].any())
        elif isinstance(weight, _IvmRows):
            weighted = any(bool(np.any(w > 0)) for w, _ in weight.blocks(window))
        else:
            weighted = bool(np.any(weight[window] > 0))
        if not inside.any() or not weighted:
            return {"overlap": False, "rnoise_source": source}
        if not _is_file_map(pixmap):
            pixmap = _to_file(pixmap, np.float64, self.scratch_dir)
        # one weight on the good pixels (ivm-median, exptime): the mask is staged
        if isinstance(weight, _IvmRows):
            staged_weight: Any = weight.staged(self.scratch_dir)
        elif weight is None or (self.weight_type != "ivm" and np.array_equal(
            weight, np.where(good, np.float32(weight_value), np.float32(0))
        )):
            staged_weight = _to_file(good, np.bool_, self.scratch_dir)
        else:
            staged_weight = _to_file(weight, np.float32, self.scratch_dir)
        # the good-pixel mask for the exposure-time map (the ivm rows' own when staged)
        if same_landing or not maps:
            coverage = None
        elif isinstance(staged_weight, _IvmRows):
            coverage = staged_weight.good
        else:
            coverage = _to_file(good, np.bool_, self.scratch_dir)
        self._staged.append(_Staged(
            index=index, data=(_DataRows(data, offset) if isinstance(data, MappedArray)
                               else _to_file(data, np.float32, self.scratch_dir, offset)),
            weight=staged_weight, weight_value=weight_value, pixmap=pixmap, box=box,
            extents=extents, names=tuple(names), values=values, coverage=coverage,
            effective_time=float(effective_time), variance_weight=float(variance_weight),
        ))  # fmt: skip
        self.n_added += 1
        return {"overlap": True, "rnoise_source": source}

    def _finalize_fused(self) -> dict[str, Any]:
        """Drizzle the staged inputs band of output rows by band; write the products.

        For each band the inputs are added in order, each by one kernel call on the
        rows of the input that reach the band, writing only the band's rows
        (``out_row0``): the band's pixels get exactly the sums (and merges) of one
        call on the whole image. The band's working arrays and the kernel's per-thread
        buffers (`Workspace`) are allocated once and reused; the band's products
        (`finish_rows`) are written to their files with ``pwrite``.
        """
        from romancore.drizzle import Workspace, add_image, finish_rows

        ny, nx = self.shape
        names = list(self.variances)
        nvar = len(names)
        planes = max(1, math.ceil(self.n_inputs / 32))
        rows = min(BAND_ROWS, ny)
        # what staging the inputs freed, before the band's arrays are allocated
        return_freed_memory()
        work = self._work_arrays(rows, nvar)
        where = self.scratch_dir
        files = {"data": _RowFile(self.shape, np.float32, where),
                 "weight": _RowFile(self.shape, np.float32, where)}  # fmt: skip
        if self.maps:
            files["context"] = _RowFile((planes, ny, nx), np.uint32, where)
        for name in names:
            files[name] = _RowFile(self.shape, np.float32, where)
        if names:
            files["err"] = _RowFile(self.shape, np.float32, where)
        margin = self._band_margin()
        scaling = np.float32(1.0 / self.pixel_scale_ratio**2)
        workspace = Workspace()
        total, count, peak = 0.0, 0, 0.0
        # Two helper threads keep the cores busy while the kernel runs (numpy, pwrite
        # and the float16 conversion release the GIL): one reads (and converts) the
        # rows of the next input the kernel needs, one writes a finished band's
        # products and resets its arrays while the next band is drizzled into a second
        # set of them (the two sets used in turn). Same calls, same order: same bits.
        sets = [work, self._second_set(rows, nvar, work)]
        written: list[Future | None] = [None, None]
        jobs = [(b0, staged) for b0 in range(0, ny, BAND_ROWS) for staged in self._staged]
        with ThreadPoolExecutor(1, "resample-read") as reader, \
                ThreadPoolExecutor(1, "resample-write") as writer:  # fmt: skip
            def read(k: int) -> Future | None:
                if k >= len(jobs):
                    return None
                b0, staged = jobs[k]
                return reader.submit(staged.band_rows, b0, min(ny, b0 + BAND_ROWS), margin)

            def reset(out: dict[str, Any]) -> None:
                # the written arrays' start for their next band (the others: below)
                for array in (out["data"], out["weight"],
                              *((out["context"],) if self.maps else ())):  # fmt: skip
                    array.fill(0)
                for array in out["var_sum"]:
                    array.fill(np.nan)

            for out in sets:
                reset(out)
            ahead = read(0)
            job = 0
            for band, b0 in enumerate(range(0, ny, BAND_ROWS)):
                b1 = min(ny, b0 + BAND_ROWS)
                n = b1 - b0
                out = sets[band % 2]
                if written[band % 2] is not None:
                    written[band % 2].result()  # written and reset
                data, weight, exptime = out["data"][:n], out["weight"][:n], work["exptime"][:n]
                context = out["context"][:, :n]
                var_sum = [a[:n] for a in out["var_sum"]]
                var_weight = [a[:n] for a in work["var_weight"]]
                # (no context or exposure-time map without maps: their pages stay
                # untouched)
                for array in ((exptime,) if self.maps else ()), var_weight:
                    for a in array:
                        a.fill(0)
                for staged in self._staged:
                    inputs = ahead.result() if ahead is not None else None
                    job += 1
                    ahead = read(job)
                    if inputs is None:
                        continue
                    (s0, s1, y0, y1), rows_data, rows_variances, rows_weight = inputs
                    xmin, xmax, _, _ = staged.box
                    order = [names.index(v) for v in staged.names]
                    plane, bit = divmod(staged.index, 32)
                    add_image(
                        rows_data, staged.pixmap[s0:s1], data, weight,
                        weight=rows_weight, weight_value=staged.weight_value,
                        kernel=self.kernel, pixfrac=self.pixfrac,
                        pixel_scale_ratio=self.pixel_scale_ratio,
                        xmin=xmin, xmax=xmax, ymin=y0 - s0, ymax=y1 - s0,
                        out_ctx=context[plane] if self.maps else None, ctx_bit=bit,
                        exptime_map=exptime if self.maps else None,
                        exptime=staged.effective_time,
                        coverage_mask=None if staged.coverage is None
                        else staged.coverage[s0:s1],
                        variances=rows_variances,
                        var_sum=[var_sum[k] for k in order],
                        var_weight=[var_weight[k] for k in order],
                        var_weight_type="ivm" if self.weight_type == "ivm" else "exptime",
                        rnoise_index=(staged.names.index("var_rnoise")
                                      if "var_rnoise" in staged.names else None),
                        var_exptime=staged.variance_weight,
                        out_row0=b0, out_ny=ny, workspace=workspace,
                    )  # fmt: skip
                    staged.release(s0, s1)
                # the band is complete: its products (stcal finalize_resample_variance)
                err = out["err"][:n] if names else None
                band_total, band_count, band_peak = finish_rows(
                    data, weight, fillval=self.fillval,
                    exptime=exptime if self.maps else None, var_sum=var_sum,
                    var_weight=var_weight, scaling=scaling, err=err,
                )  # fmt: skip
                # float32 values summed in float64: exact in any order
                total += band_total
                count += band_count
                peak = max(peak, band_peak)
                products = [(files["data"], data), (files["weight"], weight)]
                if self.maps:
                    products.append((files["context"], context))
                products += [(files[name], v) for name, v in zip(names, var_sum, strict=True)]
                if err is not None:
                    products.append((files["err"], err))
                written[band % 2] = writer.submit(_write_rows, b0, products, reset, out)
            for pending in written:
                if pending is not None:
                    pending.result()
        self._staged = []
        self._work = None
        result: dict[str, Any] = {k: f.array() for k, f in files.items()}
        result["exposure_time"] = total / count if count else 0.0
        result["max_exposure_time"] = peak
        return result

    def _work_arrays(self, rows: int, n_variances: int) -> dict[str, Any]:
        """Return the arrays of one band of ``rows`` output rows the kernel writes into.

        Huge pages: fewer TLB misses for the kernel's merges and the products' pass.
        """
        if self._work is None or self._work["data"].shape[0] != rows:

            def new(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
                return empty_releasable(shape, dtype, huge_pages=True)

            nx = self.shape[1]
            planes = max(1, math.ceil(self.n_inputs / 32))
            self._work = {
                "data": new((rows, nx), np.float32),
                "weight": new((rows, nx), np.float32),
                "context": new((planes, rows, nx), np.uint32),
                "exptime": new((rows, nx), np.float32),
                "var_sum": [new((rows, nx), np.float32) for _ in range(n_variances)],
                "var_weight": [new((rows, nx), np.float32) for _ in range(n_variances)],
                "err": new((rows, nx), np.float32),
            }
        return self._work

    def _second_set(self, rows: int, n_variances: int,
                    work: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        """Return a second set of a band's product arrays (written while the next band runs).

        Only the arrays written to the products (data, weight, context, the variance
        sums, err): the exposure-time map and the variance weights are used up by
        `finish_rows` before the band is handed to the writer. Without context
        (``maps`` False) the first set's (never touched) serves both.
        """
        def new(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            return empty_releasable(shape, dtype, huge_pages=True)

        nx = self.shape[1]
        return {
            "data": new((rows, nx), np.float32),
            "weight": new((rows, nx), np.float32),
            "context": new(work["context"].shape, np.uint32) if self.maps else work["context"],
            "var_sum": [new((rows, nx), np.float32) for _ in range(n_variances)],
            "err": new((rows, nx), np.float32) if n_variances else work["err"],
        }

    def _band_margin(self) -> int:
        """Output rows beyond a band whose input pixels are drizzled with it.

        Generous: a pixel's footprint reaches ``~0.71 max(1, pixfrac) / ratio`` output
        pixels from its mapped centre (a square turned by 45 degrees).
        """
        return int(math.ceil(3.0 * max(1.0, self.pixfrac) / self.pixel_scale_ratio)) + 9

    # -------------------------------------------------------------------- result
    def finalize(self) -> dict[str, Any]:
        """Return the mosaic arrays and exposure-time statistics.

        Returns
        -------
        dict
            ``data``, ``weight``, ``context``, ``err`` and each variance (float32),
            ``exposure_time`` (mean of the exposure-time map where > 0) and
            ``max_exposure_time``.
        """
        if self._acc is None:
            return self._finalize_fused()
        acc = self._acc
        out: dict[str, Any] = {"data": acc.data, "weight": acc.weight}
        if acc.context is not None:
            out["context"] = acc.context
        scaling = np.float32(1.0 / self.pixel_scale_ratio**2)
        names = list(acc.var_sum)
        err = _file_array(self.shape, np.float32, acc.directory) if names else None
        fill = np.float32(self.fillval)
        total, count, peak = 0.0, 0, 0.0
        rows = self.shape[0]
        for r0 in range(0, rows, BAND_ROWS):
            r1 = min(rows, r0 + BAND_ROWS)
            band = slice(r0, r1)
            acc.data[band][acc.weight[band] == 0] = fill
            variances = []
            for name in names:
                s = acc.var_sum[name][band]
                w = acc.var_weight[name][band]
                with np.errstate(divide="ignore", invalid="ignore"):
                    s *= scaling
                    s /= w
                    s /= w
                variances.append(s)
            if err is not None:
                # err = sqrt(nansum(var_*)), NaN where every variance is NaN (stcal)
                e = np.zeros((r1 - r0, self.shape[1]), np.float32)
                all_nan = np.ones(e.shape, bool)
                for v in variances:
                    finite = ~np.isnan(v)
                    e[finite] += v[finite]
                    all_nan &= ~finite
                np.sqrt(e, out=e)
                e[all_nan] = np.nan
                err[band] = e
                release_rows(err, r0, r1)
            if acc.exptime is not None:
                # float32 values summed in float64: exact in any order
                t = acc.exptime[band]
                positive = t[t > 0]
                total += float(positive.sum(dtype="f8"))
                count += positive.size
                peak = max(peak, float(t.max()))
            acc.release(r0, r1)
        for name in names:
            out[name] = acc.var_sum.pop(name)
            del acc.var_weight[name]  # its file goes with the map
        if err is not None:
            out["err"] = err
        # plain arrays (still mapped on their files; asdf does not write memmaps)
        out = {k: v.view(np.ndarray) for k, v in out.items()}
        if acc.exptime is None:
            out["exposure_time"] = out["max_exposure_time"] = 0.0
            return out
        out["exposure_time"] = total / count if count else 0.0
        out["max_exposure_time"] = peak
        return out


