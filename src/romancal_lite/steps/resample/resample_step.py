"""The ``resample`` step: drizzle calibrated images onto one grid, a `MosaicModel`."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from romancal_lite import datamodels
from romancal_lite.errors import ConfigError, InputFileError
from romancal_lite.stpipe import Param, Step

from .._library import as_library, data_shape, product_name
from .grid import (
    compute_scale,
    image_footprint,
    load_output_wcs,
    mean_pixel_area,
    wcs_from_footprints,
)
from .pixmap import member_pixmap
from .resample import KERNELS, WEIGHT_TYPES, Resampler, check_memory, parse_fillval

__all__ = ["ResampleStep", "build_mosaic_meta", "parse_pair"]

_NA = -999999


def parse_pair(value: Any, name: str, kind: type = float) -> tuple | None:
    """Parse a two-number parameter (``"4096, 4096"``, ``"[1, 2]"`` or a sequence).

    Parameters
    ----------
    value : str, sequence or None
        The value.
    name : str
        Parameter name (messages).
    kind : type, optional
        ``int`` or ``float``.

    Returns
    -------
    tuple or None
        Two numbers, or None.

    Raises
    ------
    ConfigError
        If it is not two numbers of that kind.
    """
    if value is None:
        return None
    items: Sequence[Any]
    if isinstance(value, str):
        text = value.strip().strip("[]()")
        if not text or text.lower() == "none":
            return None
        items = [v for v in text.replace(",", " ").split() if v]
    else:
        items = list(value)
    try:
        if len(items) != 2:
            raise ValueError
        numbers = tuple(kind(float(v)) if kind is int else kind(v) for v in items)
        if kind is int and any(float(v) != int(float(v)) for v in items):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name} must be two {kind.__name__}s, e.g. '1, 2', not {value!r}"
        ) from None
    if not all(math.isfinite(v) for v in numbers):
        raise ConfigError(f"{name} must be finite, not {value!r}")
    return numbers


def _pairs_as_text(parameters: dict[str, Any]) -> dict[str, Any]:
    """Give ``output_shape``, ``crpix``, ``crval`` passed as sequences as ``"a, b"``."""
    for key in ("output_shape", "crpix", "crval"):
        value = parameters.get(key)
        if isinstance(value, list | tuple | np.ndarray):
            parameters[key] = ", ".join(str(v) for v in value)
    return parameters


def _number(meta: Any, *keys: str, default: float | None = None) -> float | None:
    node = meta
    for key in keys:
        node = node.get(key) if hasattr(node, "get") else None
        if node is None:
            return default
    try:
        value = float(node)
    except (TypeError, ValueError):
        return default
    return default if (not math.isfinite(value) or value == _NA) else value


class ResampleStep(Step):
    """Drizzle images onto one output grid (romancal 1.1 ``ResampleStep``).

    The grid is ``output_wcs`` if given, else the union of the input footprints
    (stcal ``wcs_from_sregions``: reference roll, ``pixel_scale_ratio`` or
    ``pixel_scale``, ``rotation``, ``crpix``, ``crval``, ``output_shape``). Inputs are
    borrowed one at a time from a `ModelLibrary` (an association, a list of files, or
    one image), drizzled with the ``drizzle`` package and merged; the result is a
    `MosaicModel`: ``data``, ``err``, ``context``, ``weight``, ``var_rnoise``,
    ``var_poisson`` [``var_flat``] and the exposure times in ``meta.coadd_info``.
    See `romancal_lite.steps.resample.resample` for the arithmetic and its two
    deliberate differences from romancal (cut-outs; the read-noise variance of inputs
    without ``var_rnoise``). Skycell grids (``resample_on_skycell``) need the CRDS
    skymap, which is not available: the footprint union is used, with one log line.
    """

    class_alias = "resample"
    model_type = datamodels.ImageModel
    accepts_many = True

    pixfrac = Param(float, 1.0, "Fraction of an input pixel's side its flux is dropped on",
                    minimum=0.0)  # fmt: skip
    kernel = Param(str, "square", "Drizzle kernel", choices=KERNELS)
    fillval = Param(str, "NAN", "Value of output pixels without data ('INDEF': 0)")
    weight_type = Param(str, "ivm-median", "Input weighting: 'ivm-median' (one inverse "
                        "median read-noise variance per input: flux-conserving), 'ivm' "
                        "(romancal's per-pixel inverse read-noise variance: bright sources "
                        "lose flux) or 'exptime'", choices=WEIGHT_TYPES)  # fmt: skip
    output_shape = Param(str, None, "Output shape 'nx, ny' (None: fit the inputs)")
    crpix = Param(str, None, "0-based pixel 'x, y' of the reference point (None: automatic)")
    crval = Param(str, None, "RA, Dec 'ra, dec' of the reference point (None: the centre)")
    rotation = Param(float, None, "Position angle of the output +y axis, degrees "
                     "(None: the first input's roll)")  # fmt: skip
    pixel_scale_ratio = Param(float, 1.0, "Output pixel scale over the input's", minimum=1e-3)
    pixel_scale = Param(float, None, "Output pixel scale in arcsec (wins over the ratio)",
                        minimum=1e-6)  # fmt: skip
    output_wcs = Param(str, "", "ASDF file with the output grid's WCS in tree['wcs']")
    resample_on_skycell = Param(bool, True, "Use the association's skycell grid "
                                "(needs the skymap: falls back to the footprints)")  # fmt: skip
    in_memory = Param(bool, False, "Keep the inputs in memory (default: read one at a time)")
    good_bits = Param(str, "~DO_NOT_USE", "DQ bits that do not exclude a pixel")
    include_var_flat = Param(bool, False, "Resample var_flat too")
    propagate_dq = Param(bool, False, "Propagate DQ (not supported: must be False)")
    pixmap_stepsize = Param(int, 10, "Evaluate the WCSs every this many pixels", minimum=1)
    pixmap_order = Param(int, 3, "Pixel-map spline order", choices=(1, 3))

    def __init__(self, name: str | None = None, parent: Step | None = None, **parameters: Any):
        super().__init__(name, parent, **_pairs_as_text(parameters))

    @classmethod
    def build_config(cls, config_file: Any = None, base: Any = None, **kwargs: Any) -> Any:  # noqa: D102
        return super().build_config(config_file, base, **_pairs_as_text(kwargs))

    # ------------------------------------------------------------------ input
    def open_input(self, input: Any) -> Any:  # noqa: A002
        """Return the input as a `ModelLibrary`.

        Parameters
        ----------
        input : path, association, list, model or ModelLibrary
            The images.

        Returns
        -------
        ModelLibrary
            The library.
        """
        library = as_library(input, on_disk=not self.in_memory)
        if self.parent is None and not self._input_name:
            self._input_name = product_name(library)
        elif self.parent is None and library.asn is not None:
            self._input_name = library.asn.name
        return library

    def record_status(self, model: Any, status: str) -> None:  # noqa: D102
        if isinstance(model, datamodels.ModelLibrary):
            return  # skipped: the library is passed on
        super().record_status(model, status)

    # ------------------------------------------------------------------ grid
    def _grid(self, library: Any, metas: list[Any]) -> tuple[Any, float, float]:
        """Return the output WCS, its pixel scale (arcsec) and the pixel scale ratio."""
        output_shape = parse_pair(self.output_shape, "output_shape", int)
        if output_shape is not None and min(output_shape) < 1:
            raise ConfigError(f"output_shape values must be >= 1: {self.output_shape}")
        first = metas[0]
        ref_wcs = first["wcs"]
        ref_shape = self._shape_of(library, 0, ref_wcs)
        # input pixel scale: photometry.pixel_area (sr) if known, else from the WCS
        # (stcal Resample._compute_pixel_scale_ratio)
        area = _number(first, "photometry", "pixel_area")
        if area is None or area <= 0:
            area = mean_pixel_area(ref_wcs, ref_shape)
        input_scale = 3600.0 * math.degrees(math.sqrt(area))
        if self.output_wcs:
            wcs = load_output_wcs(self.output_wcs, output_shape)
            out_area = mean_pixel_area(wcs, wcs.array_shape)
            out_scale = 3600.0 * math.degrees(math.sqrt(out_area))
            return wcs, out_scale, out_scale / input_scale
        asn = library.asn
        if self.resample_on_skycell and asn is not None:
            info = asn.extra.get("skycell_wcs_info")
            if isinstance(info, dict) or str(asn.extra.get("target") or "None") != "None":
                self.log.warning(
                    "The association names a skycell (%s), but skycell grids need the "
                    "CRDS skymap reference file, not available here: the output grid is "
                    "the union of the input footprints",
                    asn.extra.get("target"),
                )
        footprints = [
            image_footprint(meta["wcs"], self._shape_of(library, i, meta["wcs"]))
            for i, meta in enumerate(metas)
        ]
        wcsinfo = first.get("wcsinfo") or {}
        missing = [k for k in ("ra_ref", "dec_ref", "roll_ref", "v3yangle", "vparity")
                   if _number(wcsinfo, k) is None]  # fmt: skip
        if missing:
            raise InputFileError(
                f"{first.get('filename')}: meta.wcsinfo lacks {', '.join(missing)}: the "
                "output grid cannot be oriented (give output_wcs)"
            )
        ratio = float(self.pixel_scale_ratio)
        pscale = None
        if self.pixel_scale is not None:
            pscale = float(self.pixel_scale) / 3600.0
            ratio = pscale / math.degrees(math.sqrt(mean_pixel_area(ref_wcs, ref_shape)))
        try:
            wcs = wcs_from_footprints(
                footprints,
                ref_wcs,
                wcsinfo,
                pscale_ratio=ratio,
                pscale=pscale,
                rotation=self.rotation,
                shape=None if output_shape is None else output_shape[::-1],
                crpix=parse_pair(self.crpix, "crpix"),
                crval=parse_pair(self.crval, "crval"),
            )
        except ValueError as exc:
            raise ConfigError(f"cannot build the output grid: {exc}") from None
        if pscale is None:
            ref = (float(wcsinfo["ra_ref"]), float(wcsinfo["dec_ref"]))
            pscale = compute_scale(ref_wcs, ref, pscale_ratio=ratio)
        return wcs, pscale * 3600.0, ratio

    @staticmethod
    def _shape_of(library: Any, index: int, wcs: Any) -> tuple[int, int]:
        bbox = getattr(wcs, "bounding_box", None)
        if wcs.array_shape is not None:
            return tuple(int(v) for v in wcs.array_shape)
        if bbox is not None:
            (x0, x1), (y0, y1) = bbox.bounding_box(order="F")
            return int(math.ceil(y1 + 0.5)), int(math.ceil(x1 + 0.5))
        with library:
            model = library.borrow(index)
            shape = data_shape(model)
            library.shelve(model, index)
        return shape

    # ------------------------------------------------------------------ run
    def _check_inputs(self, library: Any, metas: list[Any]) -> None:
        names = [str(m.get("filename") or library.members[i].path.name)
                 for i, m in enumerate(metas)]  # fmt: skip
        for name, meta in zip(names, metas, strict=True):
            if meta.get("wcs") is None:
                raise InputFileError(f"{name}: no WCS (meta.wcs); run assign_wcs first")
        units = {(m.get("cal_step") or {}).get("flux") == "COMPLETE" for m in metas}
        if len(units) > 1:
            raise InputFileError(
                "the inputs are in different units: some are in MJy/sr (flux applied), "
                "others in DN/s; run flux on all of them"
            )
        elements = {str((m.get("instrument") or {}).get("optical_element")) for m in metas}
        if len(elements) > 1:
            raise InputFileError(
                f"the inputs use different optical elements ({', '.join(sorted(elements))}); "
                "a mosaic combines one filter"
            )

    def process(self, model: Any) -> Any:
        """Resample every image of the library onto one grid.

        Parameters
        ----------
        model : ModelLibrary
            The images.

        Returns
        -------
        MosaicModel
            The mosaic.

        Raises
        ------
        ConfigError
            Bad parameters, or a grid that would not fit in memory.
        InputFileError
            Inputs without WCS, in different units or filters, or not overlapping the
            output grid at all.
        """
        library = model
        if self.propagate_dq:
            raise ConfigError("propagate_dq is not supported (the mosaic has no dq array)")
        if len(library) == 0:
            raise InputFileError("resample needs at least one image")
        fillval = parse_fillval(self.fillval)
        start = time.perf_counter()
        metas = [library.read_meta(i) for i in range(len(library))]
        self._check_inputs(library, metas)
        wcs, out_scale, ratio = self._grid(library, metas)
        shape = tuple(int(v) for v in wcs.array_shape)
        variances = ("var_rnoise", "var_poisson") + (("var_flat",) if self.include_var_flat else ())
        input_shape = self._shape_of(library, 0, metas[0]["wcs"])
        scratch = getattr(library, "scratch_parent", None)
        need = check_memory(shape, len(library), len(variances), input_shape, scratch)
        self.log.info(
            "Output grid %d x %d at %.4f arcsec (ratio %.4g) for %d inputs, ~%.2f GiB; "
            "kernel %s, pixfrac %g, weight %s (grid in %.2f s)",
            shape[1], shape[0], out_scale, ratio, len(library), need / 2**30,
            self.kernel, self.pixfrac, self.weight_type, time.perf_counter() - start,
        )  # fmt: skip
        resampler = Resampler(
            wcs,
            len(library),
            pixel_scale_ratio=ratio,
            kernel=self.kernel,
            pixfrac=self.pixfrac,
            fillval=fillval,
            weight_type=self.weight_type,
            good_bits=self.good_bits,
            variances=variances,
            pixmap_stepsize=self.pixmap_stepsize,
            pixmap_order=self.pixmap_order,
            scratch_dir=scratch,
        )
        groups: list[str] = []
        group_of = {i: g for g, idx in library.group_indices.items() for i in idx}
        with library:
            for index in range(len(library)):
                image = library.borrow(index)
                try:
                    t0 = time.perf_counter()
                    meta = image.meta
                    exptime = _number(meta, "exposure", "exposure_time", default=1.0)
                    effective = _number(meta, "exposure", "effective_exposure_time",
                                        default=exptime)  # fmt: skip
                    background = meta.get("background") or {}
                    level = None
                    if background and not background.get("subtracted", False):
                        level = _number(background, "level")
                    # the last use of the map: its scratch file goes
                    pixmap = _member_pixmap(library, index, image, wcs, self, keep=False)
                    info = resampler.add(image, index, exposure_time=exptime,
                                         effective_time=effective, level=level,
                                         pixmap=pixmap)  # fmt: skip
                    del pixmap
                finally:
                    library.shelve(image, index, modify=False)
                name = library.members[index].path.name
                if not info["overlap"]:
                    self.log.warning("%s does not overlap the output grid", name)
                    continue
                if group_of[index] not in groups:
                    groups.append(group_of[index])
                self.log.info(
                    "%s resampled in %.2f s (read noise: %s%s)", name,
                    time.perf_counter() - t0, info["rnoise_source"],
                    "" if level is None else f"; sky level {level:.4g} subtracted",
                )  # fmt: skip
        if resampler.n_added == 0:
            raise InputFileError("no input overlaps the output grid")
        arrays = resampler.finalize()
        meta = build_mosaic_meta(library, metas, wcs, self, arrays, ratio, len(groups))
        mosaic = datamodels.MosaicModel({"meta": meta})
        for name in ("data", "err", "context", "weight", *variances):
            if name in arrays:
                mosaic[name] = arrays[name]
        mosaic.meta.filename = f"{product_name(library)}.asdf"
        return mosaic


def _member_pixmap(library: Any, index: int, image: Any, grid: Any, step: Any,
                   keep: bool = True) -> np.ndarray | None:  # fmt: skip
    """Return the member's pixel map onto ``grid`` (`member_pixmap`).

    None without a WCS or 2-D data (`Resampler.add` then says what is wrong).
    """
    wcs = image.meta.get("wcs")
    # the shape without reading the array (a read one is not mapped by the drizzles)
    shape = data_shape(image)
    if wcs is None or len(shape) != 2:
        return None
    return member_pixmap(library, index, wcs, grid, shape, stepsize=step.pixmap_stepsize,
                         order=step.pixmap_order, keep=keep)  # fmt: skip


def _iso(value: Any) -> Any:
    from astropy.time import Time

    try:
        return value if isinstance(value, Time) else Time(value)
    except (TypeError, ValueError):
        return None


def build_mosaic_meta(
    library: Any,
    metas: list[Any],
    wcs: Any,
    step: Any,
    arrays: dict[str, Any],
    ratio: float,
    pointings: int,
) -> dict[str, Any]:
    """Return the metadata of a mosaic (romancal ``ResampleData.finalize``, ``assign_l3_wcs``).

    Parameters
    ----------
    library : ModelLibrary
        The inputs.
    metas : list
        Their metadata.
    wcs : gwcs.WCS
        The output grid.
    step : ResampleStep
        Its parameters.
    arrays : dict
        `Resampler.finalize` output (exposure times).
    ratio : float
        Pixel scale ratio.
    pointings : int
        Exposure groups that contributed.

    Returns
    -------
    dict
        A ``wfi_mosaic`` meta tree.
    """
    from astropy.coordinates import SkyCoord

    from romancal_lite.datamodels._models import default_mosaic_meta
    from romancal_lite.steps.assign_wcs import s_region_polygon

    meta = default_mosaic_meta()
    first = metas[0]
    asn = library.asn
    meta["association"]["name"] = asn.path.name if asn is not None else "?"
    meta["data_release_id"] = str(asn.extra.get("data_release_id", "p")) if asn else "p"
    resample = meta["resample"]
    resample.update(
        {
            "good_bits": str(step.good_bits),
            "pixel_scale_ratio": float(ratio),
            "pixfrac": float(step.pixfrac),
            "pointings": int(pointings),
            "members": [m.path.name for m in library.members],
            "weight_type": str(step.weight_type),
            "pixmap_stepsize": int(step.pixmap_stepsize),
            "pixmap_order": int(step.pixmap_order),
        }
    )
    starts = [t for t in (_iso((m.get("exposure") or {}).get("start_time")) for m in metas) if t]
    ends = [t for t in (_iso((m.get("exposure") or {}).get("end_time")) for m in metas) if t]
    coadd = meta["coadd_info"]
    if starts:
        coadd["time_first"] = min(starts)
        from astropy.time import Time

        coadd["time_mean"] = Time(np.mean([t.mjd for t in starts]), format="mjd").utc
        coadd["time_mean"].format = "isot"
    if ends:
        coadd["time_last"] = max(ends)
    coadd["exposure_time"] = float(arrays["exposure_time"])
    coadd["max_exposure_time"] = float(arrays["max_exposure_time"])
    element = (first.get("instrument") or {}).get("optical_element")
    if element:
        meta["instrument"]["optical_element"] = str(element)
    observation = first.get("observation") or {}
    for key, value in meta["observation"].items():
        got = observation.get(key)
        if got is not None and type(got) is type(value):
            meta["observation"][key] = got
    program = first.get("program") or {}
    for key in meta["program"]:
        if isinstance(program.get(key), str):
            meta["program"][key] = program[key]
    for key in ("flux", "skymatch", "outlier_detection"):
        status = (first.get("cal_step") or {}).get(key)
        if isinstance(status, str):
            meta["cal_step"][key] = status
    meta["cal_step"]["resample"] = "COMPLETE"
    # provenance of the steps run on the mosaic (source_catalog's EPSF, APCORR)
    meta["ref_file"] = {"crds": {}}
    # wcs and wcsinfo (romancal resample/_l3_wcs.py assign_l3_wcs)
    meta["wcs"] = wcs
    ny, nx = (int(v) for v in wcs.array_shape)
    info = meta["wcsinfo"]
    info["image_shape"] = [ny, nx]
    center = ((nx - 1) / 2.0, (ny - 1) / 2.0)
    ra, dec = wcs(*center, with_bounding_box=False)
    info["ra"], info["dec"] = float(ra), float(dec)
    transform = wcs.forward_transform
    crpix = [float(v) for v in np.ravel(getattr(transform, "crpix", center))]
    info["x_ref"], info["y_ref"] = crpix[0], crpix[1]
    ref = wcs(crpix[0], crpix[1], with_bounding_box=False)
    info["ra_ref"], info["dec_ref"] = float(ref[0]), float(ref[1])
    cdelt = getattr(transform, "cdelt", None)
    info["pixel_scale_ref"] = float(np.ravel(cdelt)[0]) if cdelt is not None else (
        compute_scale(wcs, ref)
    )  # fmt: skip
    info["pixel_scale"] = compute_scale(wcs, (ra, dec))

    def position_angle(lon: float, lat: float) -> float:
        x, y = wcs.invert(lon, lat, with_bounding_box=False)
        up = SkyCoord(*wcs(x, y + 100, with_bounding_box=False), unit="deg")
        return float(SkyCoord(lon, lat, unit="deg").position_angle(up).degree)

    info["orientation"] = position_angle(ra, dec)
    info["orientation_ref"] = position_angle(ref[0], ref[1])
    pc = getattr(transform, "pc", None)
    info["rotation_matrix"] = np.asarray(getattr(pc, "value", pc)).tolist() if pc is not None \
        else [[1.0, 0.0], [0.0, 1.0]]  # fmt: skip
    corners = np.asarray(wcs.footprint(((-0.5, nx - 0.5), (-0.5, ny - 0.5)), center=False))
    region = s_region_polygon(corners)
    if region:
        info["s_region"] = region
    target = asn.extra.get("target") if asn is not None else None
    info["skycell_name"] = str(target) if target is not None else "None"
    meta["filename"] = os.path.basename(f"{product_name(library)}.asdf")
    return meta
