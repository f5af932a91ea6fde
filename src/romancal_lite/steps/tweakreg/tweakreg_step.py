"""The ``tweakreg`` step: align one image's WCS to a local absolute reference catalog."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from astropy.time import Time

from romancal_lite import datamodels
from romancal_lite.errors import ConfigError, InputFileError
from romancal_lite.stpipe import Param, Step

from ..assign_wcs import compute_footprint, s_region_polygon
from .tweakreg import (
    TweakregFailure,
    crop_to_image,
    find_sources,
    fit_wcs,
    propagate_to_epoch,
    read_reference_catalog,
    read_source_catalog,
    serialize_fit_info,
)

__all__ = ["TweakRegStep"]

#: romancal's default ``abs_refcat``: a network Gaia service, not used here.
NETWORK_REFCATS = {"GAIADR3_S3", "GAIADR3", "GAIADR2", "GAIADR1", "GAIAREFCAT"}
_FIT_GEOMETRIES = ("shift", "rshift", "rscale", "general")
_DO_NOT_USE = 1


class TweakRegStep(Step):
    """Align the image's gwcs to an absolute reference catalog (one image, tweakwcs).

    Sources: the file ``tweakreg_catalog_name`` (parameter, else
    ``meta.source_catalog.tweakreg_catalog_name`` as romancal reads it), else stars
    found by `find_sources`. Reference: the local table ``abs_refcat``, propagated to
    the exposure epoch and cropped to the image plus ``abs_searchrad``. The fit uses the
    ``abs_*`` parameters, as romancal's absolute alignment does (the relative-alignment
    parameters are accepted for parameter-file compatibility; with one image there is
    no relative fit). On success ``meta.wcs`` gets a ``v2v3corr`` frame and the name
    ``FIT-LVL2-<catalog>``, ``meta.wcsinfo.s_region`` is recomputed and
    ``meta.wcs_fit_results`` holds the fit. Too few sources, references or matches:
    the WCS is left as it was, ``meta.wcs_fit_results.status`` is ``"FAILED"`` and the
    step records SKIPPED with one warning. No ``abs_refcat``: SKIPPED with one warning.
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
    enforce_user_order = Param(bool, False, "Relative alignment only (unused for one image)")
    expand_refcat = Param(bool, False, "Relative alignment only (unused for one image)")
    minobj = Param(int, 10, "Relative alignment only (unused for one image)", minimum=1)
    searchrad = Param(float, 2.0, "Relative alignment only (unused for one image)", minimum=0)
    use2dhist = Param(bool, True, "Relative alignment only (unused for one image)")
    separation = Param(float, 1.0, "Relative alignment only (unused for one image)", minimum=0)
    tolerance = Param(float, 0.7, "Relative alignment only (unused for one image)", minimum=0)
    fitgeometry = Param(str, "general", "Relative alignment only", choices=_FIT_GEOMETRIES)
    nclip = Param(int, 3, "Relative alignment only (unused for one image)", minimum=0)
    sigma = Param(float, 3.0, "Relative alignment only (unused for one image)", minimum=0)
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
    find_fwhm = Param(float, 2.0, "Fallback finder: detection kernel FWHM (pixels)", minimum=0.5)
    find_snr = Param(float, 10.0, "Fallback finder: threshold in background sigmas", minimum=0)

    def process(self, model: Any) -> Any:
        """Fit the WCS and record the result.

        Parameters
        ----------
        model : ImageModel
            Level 2 image with ``meta.wcs`` (from ``assign_wcs``).

        Returns
        -------
        ImageModel
            The same model, its WCS corrected when the fit succeeded.

        Raises
        ------
        ConfigError
            If ``abs_separation`` is not larger than sqrt(2) x ``abs_tolerance``.
        InputFileError
            If the model has no WCS, or a catalog file is missing, unreadable or
            lacks the needed columns.
        """
        if self.abs_separation <= math.sqrt(2.0) * self.abs_tolerance:
            raise ConfigError(
                "abs_separation must be larger than sqrt(2) x abs_tolerance to avoid"
                f" source confusion ({self.abs_separation} <= sqrt(2) x {self.abs_tolerance})"
            )
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
        wcs = model.meta.get("wcs")
        if wcs is None:
            raise InputFileError(f"{model!r}: no WCS (meta.wcs); run assign_wcs first")
        refcat = read_reference_catalog(refcat_name)
        catalog = self._image_catalog(model, wcs)
        epoch = _exposure_epoch(model)
        if epoch is not None:
            refcat = propagate_to_epoch(refcat, epoch)
        refcat = crop_to_image(refcat, wcs, model.data.shape, self.abs_searchrad)
        self.log.info(
            "%d image sources, %d reference sources within the image + %g\"",
            len(catalog),
            len(refcat),
            self.abs_searchrad,
        )
        wcsinfo = model.meta.wcsinfo
        try:
            corrected, fit_info = fit_wcs(
                wcs,
                {key: wcsinfo[key] for key in ("roll_ref", "v2_ref", "v3_ref")},
                catalog,
                refcat,
                name=str(model.meta.get("filename") or "image"),
                minobj=self.abs_minobj,
                searchrad=self.abs_searchrad,
                use2dhist=self.abs_use2dhist,
                separation=self.abs_separation,
                tolerance=self.abs_tolerance,
                fitgeometry=self.abs_fitgeometry,
                nclip=self.abs_nclip,
                sigma=self.abs_sigma,
            )
        except TweakregFailure as exc:
            model.meta["wcs_fit_results"] = serialize_fit_info(exc.fit_info)
            if exc.fit_info is None or "SUCCESS" in str(exc.fit_info.get("status", "")):
                model.meta["wcs_fit_results"]["status"] = "FAILED"
            self.mark_skipped(f"alignment failed: {exc}; the WCS is unchanged")
            return model
        corrected.name = f"FIT-LVL2-{Path(refcat_name).name}"
        model.meta["wcs"] = corrected
        model.meta["wcs_fit_results"] = serialize_fit_info(fit_info)
        self.log.info(
            "Fit (%s) on %d matches: shift %s arcsec, rot %s deg, scale %s, rmse %.4g arcsec",
            fit_info.get("fitgeom"),
            fit_info.get("nmatches", 0),
            np.round(np.asarray(fit_info.get("shift", [np.nan, np.nan]), float), 4).tolist(),
            np.round(np.asarray(fit_info.get("rot", [np.nan, np.nan]), float), 6).tolist(),
            np.round(np.asarray(fit_info.get("scale", [np.nan]), float), 7).tolist(),
            float(fit_info.get("rmse", np.nan)),
        )
        region = s_region_polygon(compute_footprint(corrected, model.data.shape))
        if region is None:
            self.log.warning("The footprint has non-finite corners; S_REGION not updated")
        else:
            model.meta.wcsinfo["s_region"] = region
        return model

    def _image_catalog(self, model: Any, wcs: Any) -> Any:
        """Read the image's source catalog, or find sources when there is none."""
        bbox = wcs.bounding_box
        name = self.tweakreg_catalog_name
        if not name:
            source_catalog = model.meta.get("source_catalog") or {}
            name = source_catalog.get("tweakreg_catalog_name") if source_catalog else None
        if name:
            self.log.info("Using the source catalog %s", name)
            return read_source_catalog(name, self.catalog_format, bbox)
        mask = None
        dq = getattr(model, "dq", None)
        if dq is not None:
            mask = (np.asarray(dq) & _DO_NOT_USE) != 0
        found = find_sources(model.data, mask, fwhm=self.find_fwhm, snr=self.find_snr)
        self.log.info("No source catalog: found %d stars in the image (DAOStarFinder)", len(found))
        return found


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
