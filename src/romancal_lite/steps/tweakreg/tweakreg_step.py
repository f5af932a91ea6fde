"""The ``tweakreg`` step: align one image's WCS to a local absolute reference catalog."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.time import Time

from romancal_lite import datamodels
from romancal_lite.errors import ConfigError, InputFileError, OutputError
from romancal_lite.stpipe import Param, Step
from romancal_lite.stpipe.naming import make_output_name
from romancal_lite.stpipe.step import COMPLETE, FAILED, SKIPPED

from ..assign_wcs import compute_footprint, s_region_polygon
from .tweakreg import (
    SOURCE_COLUMNS,
    AlignImage,
    align_images,
    find_sources,
    image_catalog,
    propagate_to_epoch,
    read_reference_catalog,
    read_source_catalog,
    serialize_fit_info,
)

__all__ = ["TweakRegStep", "exposure_group", "image_shape"]

#: romancal's default ``abs_refcat``: a network Gaia service, not used here.
NETWORK_REFCATS = {"GAIADR3_S3", "GAIADR3", "GAIADR2", "GAIADR1", "GAIAREFCAT"}
_FIT_GEOMETRIES = ("shift", "rshift", "rscale", "general")
_DO_NOT_USE = 1


class TweakRegStep(Step):
    """Align images' gwcs to an absolute reference catalog (tweakwcs), as romancal 1.1.

    Input: one image or a list of images (for example all detectors of several
    exposures). Each image's sources: the in-memory table
    ``meta.source_catalog.tweakreg_catalog`` (put there by ``roman_elp``), else the
    file ``tweakreg_catalog_name`` (parameter, else
    ``meta.source_catalog.tweakreg_catalog_name``), else stars found by
    `find_sources`. Reference: the local table ``abs_refcat``, propagated to the
    (first) exposure's epoch and cropped to the images plus ``abs_searchrad``.

    With images of more than one exposure (`exposure_group`), a relative fit between
    exposures first (the relative parameters), then one absolute fit of all images
    together (the ``abs_*`` parameters), as romancal's `align_images`. On success each
    image's ``meta.wcs`` gets a ``v2v3corr`` frame and the name
    ``FIT-LVL2-<catalog>``, ``meta.wcsinfo.s_region`` is recomputed,
    ``meta.wcs_fit_results`` holds the fit and ``meta.cal_step.tweakreg`` is
    COMPLETE. Too few sources, references or matches: the WCS is left as it was,
    ``wcs_fit_results.status`` and ``cal_step.tweakreg`` are ``"FAILED"`` (romancal's
    values), one warning. No ``abs_refcat``: SKIPPED with one warning.
    """

    class_alias = "tweakreg"
    suffix = Param(str, "tweakreg", "Suffix of the output file name")
    model_type = datamodels.ImageModel

    tweakreg_catalog_name = Param(
        str,
        None,
        "Source catalog file (parquet/ECSV/FITS, columns x,y or x_psf,y_psf or"
        " x_centroid,y_centroid); None: meta.source_catalog.tweakreg_catalog_name, else"
        " find stars in the image",
    )
    catalog_format = Param(str, "ascii.ecsv", "astropy format of non-parquet source catalogs")
    catalog_path = Param(str, "", "Accepted for romancal compatibility (unused)")
    enforce_user_order = Param(bool, False, "Relative fit: align exposures in input order")
    expand_refcat = Param(bool, False, "Relative fit: add aligned sources to the reference")
    minobj = Param(int, 10, "Relative fit: minimum number of matches", minimum=1)
    searchrad = Param(float, 2.0, "Relative fit: search radius (arcsec)", minimum=0)
    use2dhist = Param(bool, True, "Relative fit: initial offset from a 2-D histogram")
    separation = Param(float, 1.0, "Relative fit: minimum source separation (arcsec)",
                       minimum=0)
    tolerance = Param(float, 0.7, "Relative fit: matching tolerance (arcsec)", minimum=0)
    fitgeometry = Param(str, "general", "Relative fit: geometry", choices=_FIT_GEOMETRIES)
    nclip = Param(int, 3, "Relative fit: clipping iterations", minimum=0)
    sigma = Param(float, 3.0, "Relative fit: clipping limit (x RMSE)", minimum=0)
    abs_refcat = Param(
        str, None, "Absolute reference catalog file (ECSV, Parquet, FITS; RA/DEC in deg)"
    )
    abs_minobj = Param(int, 10, "Minimum number of sources, references and matches", minimum=1)
    abs_searchrad = Param(float, 6.0, "Search radius of a match (arcsec)", minimum=0)
    abs_use2dhist = Param(bool, True, "Find the initial offset with a 2-D histogram")
    abs_separation = Param(float, 1.0, "Minimum source separation (arcsec)", minimum=0)
    abs_tolerance = Param(float, 0.7, "Matching tolerance (arcsec)", minimum=0)
    abs_fitgeometry = Param(str, "general", "Fit geometry", choices=_FIT_GEOMETRIES)
    abs_nclip = Param(int, 3, "Number of clipping iterations of the fit", minimum=0)
    abs_sigma = Param(float, 3.0, "Clipping limit in units of the fit RMSE", minimum=0)
    align_method = Param(
        str,
        "direct",
        "How tweakwcs is called for the absolute fit: 'direct' (its matching, fitting and"
        " WCS correction called directly, no footprint polygons or WCS copies) or"
        " 'align_wcs' (tweakwcs.align_wcs as romancal; same result, slower)",
        choices=("direct", "align_wcs"),
    )
    find_fwhm = Param(float, 2.0, "Fallback finder: detection kernel FWHM (pixels)", minimum=0.5)
    find_snr = Param(float, 10.0, "Fallback finder: threshold in background sigmas", minimum=0)

    #: A list of images, or an association of ``_cal`` files, is aligned jointly.
    accepts_many = True

    #: Status of each image of the last run (by ``id``), for `record_status`.
    _statuses: dict[int, str]

    def process(self, model: Any) -> Any:
        """Fit the WCS of one image, or of several jointly, and record the result.

        Parameters
        ----------
        model : ImageModel or list of ImageModel
            Level 2 image(s) with ``meta.wcs`` (from ``assign_wcs``). Their arrays are
            not needed when each has a source catalog.

        Returns
        -------
        ImageModel or list of ImageModel
            The same model(s), their WCS corrected when the fit succeeded.

        Raises
        ------
        ConfigError
            If ``abs_separation`` is not larger than sqrt(2) x ``abs_tolerance``.
        InputFileError
            If a model has no WCS, or a catalog file is missing, unreadable or lacks
            the needed columns.
        """
        models = list(model) if isinstance(model, list | tuple) else [model]
        self._statuses = {}
        for sep, tol, prefix in (
            (self.abs_separation, self.abs_tolerance, "abs_"),
            (self.separation, self.tolerance, ""),
        ):
            if sep <= math.sqrt(2.0) * tol:
                raise ConfigError(
                    f"{prefix}separation must be larger than sqrt(2) x {prefix}tolerance to"
                    f" avoid source confusion ({sep} <= sqrt(2) x {tol})"
                )
        for image in models:
            if image.meta.get("wcs") is None:
                raise InputFileError(f"{image!r}: no WCS (meta.wcs); run assign_wcs first")
        refcat_name = (self.abs_refcat or "").strip()
        if not refcat_name:
            self.mark_skipped("no absolute reference catalog (abs_refcat); the WCS is unchanged")
            return model
        if refcat_name.upper() in NETWORK_REFCATS and not Path(refcat_name).exists():
            self.mark_skipped(
                f"abs_refcat {refcat_name} is a network catalog, which romancal_lite does not"
                " query (give a local file); the WCS is unchanged"
            )
            return model
        refcat = read_reference_catalog(refcat_name)
        epoch = _exposure_epoch(models[0])
        if epoch is not None:
            refcat = propagate_to_epoch(refcat, epoch)
        fitted: list[Any] = []
        items: list[AlignImage] = []
        for index, image in enumerate(models):
            catalog = self._image_catalog(image, image.meta["wcs"])
            if catalog is None:
                self._statuses[id(image)] = SKIPPED
                continue
            fitted.append(image)
            items.append(
                AlignImage(
                    name=_image_name(image, index),
                    wcs=image.meta["wcs"],
                    wcsinfo={k: image.meta.wcsinfo[k] for k in ("roll_ref", "v2_ref", "v3_ref")},
                    catalog=catalog,
                    shape=image_shape(image),
                    group_id=exposure_group(image) if len(models) > 1 else None,
                )
            )
        if not fitted:
            self.mark_skipped("no image has a source catalog; the WCS is unchanged")
            return model
        absolute = {
            "minobj": self.abs_minobj, "searchrad": self.abs_searchrad,
            "separation": self.abs_separation, "use2dhist": self.abs_use2dhist,
            "tolerance": self.abs_tolerance, "fitgeometry": self.abs_fitgeometry,
            "nclip": self.abs_nclip, "sigma": self.abs_sigma,
        }
        relative = {
            "minobj": self.minobj, "searchrad": self.searchrad,
            "separation": self.separation, "use2dhist": self.use2dhist,
            "tolerance": self.tolerance, "fitgeometry": self.fitgeometry,
            "nclip": self.nclip, "sigma": self.sigma,
            "enforce_user_order": self.enforce_user_order,
            "expand_refcat": self.expand_refcat,
        }
        self.log.info(
            "%d image(s) in %d exposure group(s); %d sources; reference catalog %s"
            " (%d sources)",
            len(items),
            len({item.group_id for item in items}),
            sum(len(item.catalog) for item in items),
            refcat_name,
            len(refcat),
        )
        result = align_images(items, refcat, absolute, relative, method=self.align_method)
        if result.relative != "not needed":
            self.log.info("Relative alignment: %s", result.relative)
        for image, wcs, info in zip(fitted, result.wcs, result.fit_info, strict=True):
            image.meta["wcs_fit_results"] = serialize_fit_info(info, n_detector=len(fitted))
            if not result.succeeded:
                if result.aborted:
                    image.meta["wcs_fit_results"]["status"] = "FAILED"
                self._statuses[id(image)] = FAILED
                continue
            wcs.name = f"FIT-LVL2-{self.abs_refcat}"  # as romancal: the value as given
            image.meta["wcs"] = wcs
            self._statuses[id(image)] = COMPLETE
            region = s_region_polygon(compute_footprint(wcs, image_shape(image)))
            if region is None:
                self.log.warning("The footprint has non-finite corners; S_REGION not updated")
            else:
                image.meta.wcsinfo["s_region"] = region
        if not result.succeeded:
            self.log.warning(
                "Step %s: alignment failed: %s; the WCS is unchanged", self.name, result.message
            )
            return model
        info = result.fit_info[0] or {}
        self.log.info(
            "Fit (%s) on %d matches: shift %s arcsec, rot %s deg, scale %s, rmse %.4g arcsec",
            info.get("fitgeom"),
            info.get("nmatches", 0),
            np.round(np.asarray(info.get("shift", [np.nan, np.nan]), float), 4).tolist(),
            np.round(np.asarray(info.get("rot", [np.nan, np.nan]), float), 6).tolist(),
            np.round(np.asarray(info.get("scale", [np.nan]), float), 7).tolist(),
            float(info.get("rmse", np.nan)),
        )
        return model

    def check_reference_catalog(self) -> None:
        """Check, before any work, that a local ``abs_refcat`` is a readable file.

        Raises
        ------
        InputFileError
            If ``abs_refcat`` names a local file that is missing or not a regular
            file (network catalog names and an empty value are left to `process`).
        """
        name = (self.abs_refcat or "").strip()
        if self.skip or not name:
            return
        if name.upper() in NETWORK_REFCATS and not Path(name).exists():
            return
        from romancal_lite.datamodels import check_regular_file

        try:
            check_regular_file(name)
        except InputFileError as exc:
            raise InputFileError(f"abs_refcat: {exc}") from None

    def open_input(self, input: Any) -> Any:  # noqa: A002
        """Open one image, a list of them, or the science members of an association.

        Parameters
        ----------
        input : str, path-like, model, list of those, or ``*_asn.json`` path
            The image(s). An association member's ``group_id`` and
            ``tweakreg_catalog`` go to ``meta.group_id`` and
            ``meta.source_catalog.tweakreg_catalog_name``, as romancal's model library
            does.

        Returns
        -------
        ImageModel or list of ImageModel
            The opened model(s).
        """
        from romancal_lite.associations import is_association, load_asn

        if is_association(input):
            models = []
            for member in load_asn(input).science():
                model = super().open_input(os.fspath(member.path))
                if member.group_id is not None:
                    model.meta["group_id"] = member.group_id
                if member.tweakreg_catalog is not None:
                    model.meta["source_catalog"] = {
                        "tweakreg_catalog_name": member.tweakreg_catalog
                    }
                models.append(model)
            self._many = models
            return models
        if isinstance(input, list | tuple):
            opened = []
            for item in input:  # (zero-argument super() does not work in a comprehension)
                opened.append(super().open_input(item))
            self._many = opened
            return opened
        self._many = None
        return super().open_input(input)

    _many: list[Any] | None = None

    def planned_outputs(self) -> list[Path]:
        """Return ``<name>_tweakreg.asdf`` and ``<name>_wcs.asdf`` of each image saved.

        Returns
        -------
        list of pathlib.Path
            Output paths (none unless saving).
        """
        if not self.saves_result():
            return []
        paths = []
        for name in self._output_bases():
            path = self._path_for(name)
            paths += [path, path.with_name(make_output_name(name, "wcs"))]
        return paths

    def _output_bases(self) -> list[str]:
        if self._many is None:
            return [self.output_file or self._root()._input_name or ""]
        return [str(m.file_path or m.meta.get("filename") or "") for m in self._many]

    def _path_for(self, base: str) -> Path:
        if not base:
            raise OutputError(f"cannot name the output of {self.name}: an input has no name")
        if self._many is None:
            return self.output_path()
        directory = self._search("output_dir") or ""
        suffix = self.suffix or "tweakreg"
        return Path(os.path.expanduser(directory)) / make_output_name(base, suffix)

    def save(self, model: Any, path: Path) -> None:
        """Write each image (``_tweakreg``) and its WCS product (``_wcs``), as romancal.

        Parameters
        ----------
        model : ImageModel or list of ImageModel
            The result.
        path : pathlib.Path
            The output path of a single image (a list names each after its file).
        """
        images = model if isinstance(model, list | tuple) else [model]
        for image, base in zip(images, self._output_bases(), strict=True):
            out = self._path_for(base) if isinstance(model, list | tuple) else path
            super().save(image, out)
            if image.meta.get("wcs") is not None:
                wcs_path = out.with_name(make_output_name(base or out.name, "wcs"))
                super().save(datamodels.WfiWcsModel.from_model_with_wcs(image), wcs_path)

    def record_status(self, model: Any, status: str) -> None:
        """Record each image's own status: COMPLETE, FAILED (fit failed) or SKIPPED.

        Parameters
        ----------
        model : ImageModel or list of ImageModel
            The result.
        status : str
            The run's status (used for images without one of their own).
        """
        statuses = getattr(self, "_statuses", {})
        for image in model if isinstance(model, list | tuple) else [model]:
            super().record_status(image, statuses.get(id(image), status))

    def finalize_result(self, model: Any) -> None:
        """Record provenance on each image (see `Step.finalize_result`).

        Parameters
        ----------
        model : ImageModel or list of ImageModel
            The result.
        """
        for image in model if isinstance(model, list | tuple) else [model]:
            super().finalize_result(image)

    def _image_catalog(self, model: Any, wcs: Any) -> Any:
        """Return the image's sources: in memory, from a file, or found in the image.

        In order: ``meta.source_catalog.tweakreg_catalog`` (a table the pipeline puts
        there; removed after use, as romancal does), the file ``tweakreg_catalog_name``
        (parameter, else ``meta.source_catalog.tweakreg_catalog_name``), else stars
        found in the image (None if the model has no pixels either).
        """
        bbox = wcs.bounding_box
        source_catalog = model.meta.get("source_catalog") or {}
        in_memory = source_catalog.get("tweakreg_catalog") if source_catalog else None
        if in_memory is not None:
            del model.meta["source_catalog"]["tweakreg_catalog"]
            # only the columns the fit reads (the catalog has ~100); all of them when
            # they are not there, for the error message
            names = list(getattr(in_memory, "colnames", None) or in_memory.keys())
            used = [c for c in names if c in SOURCE_COLUMNS]
            table = Table({c: in_memory[c] for c in used}) if used else Table(in_memory)
            return image_catalog(table, bbox)
        name = self.tweakreg_catalog_name
        if not name and source_catalog:
            name = source_catalog.get("tweakreg_catalog_name")
        if name:
            name = _beside(model, name)
            self.log.info("Using the source catalog %s", name)
            return read_source_catalog(name, self.catalog_format, bbox)
        data = getattr(model, "data", None) if "data" in model else None
        if data is None:
            self.log.warning("%s has no source catalog and no pixels: not aligned", model)
            return None
        mask = None
        dq = getattr(model, "dq", None) if "dq" in model else None
        if dq is not None:
            mask = (np.asarray(dq) & _DO_NOT_USE) != 0
        found = find_sources(data, mask, fwhm=self.find_fwhm, snr=self.find_snr)
        self.log.info("No source catalog: found %d stars in the image (DAOStarFinder)", len(found))
        return found


def _beside(model: Any, name: str) -> str:
    """Resolve a relative catalog name against the model's own directory if not here.

    ``roman_elp`` records the catalog's file name beside the ``_cal`` file it wrote
    with it; a run from another directory finds it there.
    """
    path = Path(name)
    source = getattr(model, "file_path", None)
    if path.is_absolute() or path.exists() or not source:
        return name
    candidate = Path(source).parent / path
    return str(candidate) if candidate.exists() else name


def image_shape(model: Any) -> tuple[int, int]:
    """Return an image's ``(ny, nx)``: its data's shape, else from the WCS bounding box.

    Parameters
    ----------
    model : ImageModel
        The image (its arrays may have been dropped).

    Returns
    -------
    tuple of int
        The shape.
    """
    if "data" in model:
        return tuple(model.data.shape[-2:])
    (_, xmax), (_, ymax) = model.meta["wcs"].bounding_box
    return (int(round(ymax + 0.5)), int(round(xmax + 0.5)))


#: ``meta.observation`` fields that together name one exposure (all its detectors).
_EXPOSURE_FIELDS = (
    "program", "execution_plan", "pass", "segment", "observation", "visit",
    "visit_file_group", "visit_file_sequence", "visit_file_activity", "exposure",
)


def exposure_group(model: Any) -> str:
    """Return the exposure an image belongs to, for the relative fit.

    As romancal's model library: ``meta.group_id`` if set, else
    ``meta.observation.observation_id`` if known, else the observation fields that
    name an exposure (program ... exposure), else the file name.

    Parameters
    ----------
    model : ImageModel
        The image.

    Returns
    -------
    str
        The group id.
    """
    meta = model.meta
    group = meta.get("group_id")
    if group:
        return str(group)
    observation = meta.get("observation") or {}
    obs_id = observation.get("observation_id") if observation else None
    if obs_id and str(obs_id) not in {"?", "None", "-999999"}:
        return str(obs_id)
    fields = [observation.get(k) for k in _EXPOSURE_FIELDS] if observation else []
    if fields and all(v is not None for v in fields):
        return "_".join(str(v) for v in fields)
    return str(meta.get("filename") or id(model))


def _image_name(model: Any, index: int) -> str:
    name = str(model.meta.get("filename") or f"image{index}")
    return Path(name).stem


def _exposure_epoch(model: Any) -> Time | None:
    """Return the exposure's mid time (start if no end), or None if unknown."""
    exposure = model.meta.get("exposure") or {}
    times = []
    for key in ("start_time", "end_time"):
        value = exposure.get(key)
        if value is None:
            continue
        try:
            times.append(value if isinstance(value, Time) else Time(value))
        except (TypeError, ValueError):
            continue
    if not times:
        return None
    return times[0] + (times[-1] - times[0]) / 2
