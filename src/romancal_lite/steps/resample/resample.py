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
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from romancal_lite.errors import ConfigError, InputFileError

from .pixmap import calc_pixmap, resample_range

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


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 1 << 40


def check_memory(shape: tuple[int, int], n_inputs: int, n_variances: int,
                 input_shape: tuple[int, int]) -> int:  # fmt: skip
    """Raise before any allocation if the mosaic would not fit in the available memory.

    Parameters
    ----------
    shape : tuple of int
        Output ``(ny, nx)``.
    n_inputs : int
        Number of inputs.
    n_variances : int
        Variances resampled.
    input_shape : tuple of int
        Shape of one input (its pixel map and temporaries: ~40 bytes a pixel).

    Returns
    -------
    int
        The bytes needed.

    Raises
    ------
    ConfigError
        If they exceed the memory available now.
    """
    need = output_bytes(shape, n_inputs, n_variances) + 40 * int(np.prod(input_shape))
    available = _available_memory()
    if need > available:
        raise ConfigError(
            f"the output grid {shape[0]} x {shape[1]} ({n_inputs} inputs) needs about "
            f"{need / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB available; "
            "use a larger pixel_scale / pixel_scale_ratio, an output_shape, or fewer inputs"
        )
    return need


@dataclass
class _Accumulator:
    """The full-size state of one mosaic."""

    shape: tuple[int, int]
    n_inputs: int
    variances: tuple[str, ...]
    maps: bool = True
    data: np.ndarray = field(init=False)
    weight: np.ndarray = field(init=False)
    context: np.ndarray | None = field(init=False)
    exptime: np.ndarray | None = field(init=False)
    var_sum: dict[str, np.ndarray] = field(init=False)
    var_weight: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        planes = max(1, math.ceil(self.n_inputs / 32))
        self.data = np.zeros(self.shape, np.float32)
        self.weight = np.zeros(self.shape, np.float32)
        # the context and exposure-time maps only when the product needs them
        self.context = np.zeros((planes, *self.shape), np.uint32) if self.maps else None
        self.exptime = np.zeros(self.shape, np.float32) if self.maps else None
        self.var_sum = {name: np.full(self.shape, np.nan, np.float32) for name in self.variances}
        self.var_weight = {name: np.zeros(self.shape, np.float32) for name in self.variances}


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
        self._acc = _Accumulator(self.shape, self.n_inputs, self.variances, maps)
        self.n_added = 0
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
        data = np.asarray(model.data, dtype=np.float32)
        if data.ndim != 2:
            raise InputFileError(f"{name}: data is not a 2-D image (shape {data.shape})")
        dq = np.asarray(model.dq) if "dq" in model else None
        if dq is not None and dq.shape != data.shape:
            raise InputFileError(f"{name}: dq shape {dq.shape} does not match data {data.shape}")
        good = good_pixel_mask(dq, self.good_bits, data.shape)
        rnoise, source = read_noise_variance(model, good)
        # input weights: stcal resample/utils.py build_driz_weight; the variances are
        # combined with the same weights: per pixel 1 / r_rnoise (ivm) or one value per
        # input (``variance_weight``)
        variance_weight = float(exposure_time)
        if self.weight_type == "ivm-median":
            median = median_variance(rnoise, good)
            variance_weight = 1.0 / median if math.isfinite(median) and median > 0 else 0.0
            weight = np.where(good, np.float32(variance_weight), np.float32(0))
        elif self.weight_type == "ivm":
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = np.reciprocal(np.asarray(rnoise, dtype=np.float32))
            if np.ndim(inv) == 0:
                inv = np.float32(inv if np.isfinite(inv) and inv > 0 else 0.0)
                weight = np.where(good, inv, np.float32(0)).astype(np.float32)
            else:
                # in place: the reciprocal becomes the weight (no full-size copies)
                inv[~(np.isfinite(inv) & good)] = 0
                weight = inv
                del inv
        else:
            weight = np.where(good, np.float32(exposure_time), np.float32(0))
        if level is not None and math.isfinite(level):
            data = data - np.float32(level)

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
                                   box, variance_weight, effective_time)  # fmt: skip
        from drizzle.resample import Drizzle

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
        self.n_added += 1
        return {"overlap": True, "rnoise_source": source}

    def _add_fused(self, model: Any, index: int, data: np.ndarray, weight: np.ndarray,
                   good: np.ndarray, rnoise: np.ndarray | float, source: str,
                   pixmap: np.ndarray, box: tuple[int, int, int, int], variance_weight: float,
                   effective_time: float) -> dict[str, Any]:  # fmt: skip
        """One pass of `romancore.drizzle.add_image` straight into the full-size arrays.

        ``variance_weight``: the weight combining this input's variances when it is one
        value per input (``exptime``, ``ivm-median``).
        """
        from romancore.drizzle import add_image

        acc = self._acc
        names, values = [], []
        for name in self.variances:
            if name == "var_rnoise":
                value = rnoise
            elif name in model and np.shape(model[name]) == data.shape:
                value = model[name]
            else:
                continue
            constant = _constant_value(value)
            if constant is not None:
                # the weighted mean of a constant is that constant wherever the input
                # lands: no square roots to resample
                values.append(constant)
            elif np.ndim(value) == 0:
                values.append(math.nan)
            else:
                values.append(np.ascontiguousarray(value, dtype=np.float32))
            names.append(name)
        # exposure-time map (romancal _exptime_resampler: unit weights on the good
        # pixels, pixfrac 1): where the input lands, unless the weights or pixfrac
        # make that differ from where its good pixels land
        same_landing = self.pixfrac == 1.0 and np.array_equal(weight > 0, good)
        plane, bit = divmod(index, 32)
        xmin, xmax, ymin, ymax = box
        covered = add_image(
            np.ascontiguousarray(data, dtype=np.float32), pixmap, acc.data, acc.weight,
            weight=np.ascontiguousarray(weight, dtype=np.float32), kernel=self.kernel,
            pixfrac=self.pixfrac, pixel_scale_ratio=self.pixel_scale_ratio,
            xmin=xmin, xmax=xmax, ymin=ymin, ymax=ymax,
            out_ctx=None if acc.context is None else acc.context[plane], ctx_bit=bit,
            exptime_map=acc.exptime, exptime=float(effective_time),
            coverage_mask=(None if same_landing or acc.exptime is None
                           else np.ascontiguousarray(good)),
            variances=values,
            var_sum=[acc.var_sum[n] for n in names],
            var_weight=[acc.var_weight[n] for n in names],
            var_weight_type="ivm" if self.weight_type == "ivm" else "exptime",
            rnoise_index=names.index("var_rnoise") if "var_rnoise" in names else None,
            var_exptime=float(variance_weight),
        )
        if not covered:
            return {"overlap": False, "rnoise_source": source}
        self.n_added += 1
        return {"overlap": True, "rnoise_source": source}

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
        acc = self._acc
        out: dict[str, Any] = {}
        empty = acc.weight == 0
        acc.data[empty] = self.fillval
        out["data"] = acc.data
        out["weight"] = acc.weight
        if acc.context is not None:
            out["context"] = acc.context
        scaling = 1.0 / self.pixel_scale_ratio**2
        variances = []
        for name in self.variances:
            w = acc.var_weight.pop(name)
            s = acc.var_sum.pop(name)
            with np.errstate(divide="ignore", invalid="ignore"):
                s *= np.float32(scaling)
                s /= w
                s /= w
            out[name] = s
            variances.append(s)
            del w
        if variances:
            # err = sqrt(nansum(var_*)), NaN where every variance is NaN (stcal finalize)
            err = np.zeros(self.shape, np.float32)
            all_nan = np.ones(self.shape, bool)
            for v in variances:
                finite = ~np.isnan(v)
                err[finite] += v[finite]
                all_nan &= ~finite
                del finite
            np.sqrt(err, out=err)
            err[all_nan] = np.nan
            out["err"] = err
        if acc.exptime is None:
            out["exposure_time"] = out["max_exposure_time"] = 0.0
            return out
        positive = acc.exptime > 0
        out["exposure_time"] = float(np.mean(acc.exptime[positive], dtype="f8")) if (
            positive.any()
        ) else 0.0  # fmt: skip
        out["max_exposure_time"] = float(acc.exptime.max()) if acc.exptime.size else 0.0
        return out
