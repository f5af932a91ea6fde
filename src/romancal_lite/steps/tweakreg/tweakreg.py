"""Align an image's gwcs to an absolute reference catalog (``tweakreg``), with tweakwcs.

The algorithm is romancal 1.1's absolute alignment of one image
(``romancal/tweakreg/tweakreg_step.py`` and ``stcal/tweakreg/tweakreg.py``):

1. The image's sources: ``x, y`` (0-based pixels) from its source catalog (columns
   ``x, y``, else ``x_psf, y_psf`` as romancal; else ``x_centroid, y_centroid``), rows
   outside the WCS bounding box and rows whose ``warning_flags`` has DO_NOT_USE dropped.
   Without a catalog, `find_sources` detects stars itself (a documented fallback).
2. The reference catalog: a local table with ``RA``/``DEC`` in degrees (any case) or a
   ``sky_centroid`` column; proper motion and parallax, if given, are propagated to the
   exposure's epoch (`propagate_to_epoch`; romancal does this only for its Gaia service);
   rows farther than ``abs_searchrad`` outside the image are dropped (`crop_to_image`).
3. ``tweakwcs.align_wcs`` with a ``RomanWCSCorrector`` (the correction is a tangent-plane
   linear transform in the V2V3 frame, inserted as a ``v2v3corr`` frame) and an
   ``XYXYMatch`` (2-D histogram pre-offset, ``searchrad``, ``separation``,
   ``tolerance``); the fit is ``fitgeom`` with ``nclip`` clipping iterations at
   ``sigma`` x RMSE, accumulated clipping, as romancal.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import get_body_barycentric
from astropy.table import Table
from astropy.time import Time
from gwcs import WCS

from romancal_lite.errors import InputFileError

__all__ = [
    "FIT_RESULT_DROPPED_KEYS",
    "TweakregFailure",
    "crop_to_image",
    "find_sources",
    "fit_wcs",
    "image_catalog",
    "read_reference_catalog",
    "read_source_catalog",
    "propagate_to_epoch",
    "serialize_fit_info",
]

#: ``fit_info`` keys romancal removes before writing ``meta.wcs_fit_results``.
FIT_RESULT_DROPPED_KEYS = (
    "eff_minobj",
    "matched_ref_idx",
    "matched_input_idx",
    "fit_RA",
    "fit_DEC",
    "fitmask",
)

#: The DO_NOT_USE bit of ``warning_flags`` (romancal's ``dqflags.pixel.DO_NOT_USE``).
DO_NOT_USE = 1

#: Julian year (days), to turn epoch differences into years.
_JULIAN_YEAR = 365.25


class TweakregFailure(Exception):
    """The fit cannot be done or failed (too few sources or matches); not an error.

    Parameters
    ----------
    message : str
        Why.
    fit_info : dict, optional
        tweakwcs' ``fit_info`` when a fit was attempted.
    """

    def __init__(self, message: str, fit_info: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.fit_info = dict(fit_info) if fit_info else None


# ---------------------------------------------------------------------- image sources


def _as_table(path: Path, fmt: str | None) -> Table:
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            return Table.read(path, format="parquet")
        if name.endswith(".ecsv"):
            return Table.read(path, format="ascii.ecsv")
        if name.endswith((".fits", ".fit", ".fits.gz")):
            return Table.read(path, format="fits")
        return Table.read(path, format=fmt) if fmt else Table.read(path)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except Exception as exc:  # astropy raises many types for unreadable tables
        raise InputFileError(f"{path}: cannot read the table: {exc}") from None


def image_catalog(table: Table, bounding_box: Any = None) -> Table:
    """Return the ``x, y`` columns of a source catalog usable for the fit.

    Parameters
    ----------
    table : astropy.table.Table
        Source catalog with ``x, y`` (0-based pixels), or ``x_psf, y_psf`` (romancal's
        fallback), or ``x_centroid, y_centroid`` (used when neither is there).
    bounding_box : tuple, optional
        ``((xmin, xmax), (ymin, ymax))``; rows outside it (strictly) are dropped.

    Returns
    -------
    astropy.table.Table
        Columns ``x``, ``y`` (float), finite values only; rows whose ``warning_flags``
        has DO_NOT_USE are dropped.

    Raises
    ------
    InputFileError
        If no pair of centroid columns is present.
    """
    for xcol, ycol in (("x", "y"), ("x_psf", "y_psf"), ("x_centroid", "y_centroid")):
        if xcol in table.colnames and ycol in table.colnames:
            break
    else:
        raise InputFileError(
            "the source catalog has no 'x'/'y', 'x_psf'/'y_psf' or 'x_centroid'/'y_centroid'"
            f" columns (it has {', '.join(table.colnames) or 'none'})"
        )
    x = np.asarray(u.Quantity(table[xcol]).value, dtype=float)
    y = np.asarray(u.Quantity(table[ycol]).value, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    if "warning_flags" in table.colnames:
        flags = np.asarray(table["warning_flags"]).astype(np.int64, copy=False)
        keep &= (flags & DO_NOT_USE) == 0
    if bounding_box is not None:
        (xmin, xmax), (ymin, ymax) = bounding_box
        keep &= (x > xmin) & (x < xmax) & (y > ymin) & (y < ymax)
    return Table({"x": x[keep], "y": y[keep]})


def read_source_catalog(
    path: str | os.PathLike[str], fmt: str | None = None, bounding_box: Any = None
) -> Table:
    """Read an image's source catalog (Parquet, ECSV, FITS or ``fmt``) for the fit.

    Parameters
    ----------
    path : str or path-like
        Catalog file; ``.parquet`` is read as Parquet (as romancal), others by
        extension or with ``fmt``.
    fmt : str, optional
        astropy format of files with another extension (romancal's ``catalog_format``).
    bounding_box : tuple, optional
        See `image_catalog`.

    Returns
    -------
    astropy.table.Table
        ``x``, ``y`` of the usable sources.

    Raises
    ------
    InputFileError
        If the file is missing, unreadable or lacks centroid columns.
    """
    path = Path(path)
    try:
        return image_catalog(_as_table(path, fmt), bounding_box)
    except InputFileError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise InputFileError(f"{path}: {exc}") from None


def find_sources(
    data: np.ndarray,
    mask: np.ndarray | None = None,
    fwhm: float = 2.0,
    snr: float = 10.0,
    max_sources: int = 2000,
) -> Table:
    """Detect point sources with photutils' ``DAOStarFinder`` (fallback source list).

    The background level and noise are the 3-sigma-clipped median and standard
    deviation of the unmasked pixels; stars are local peaks of the image convolved with
    a Gaussian of ``fwhm`` above ``snr`` x noise, with DAOFIND's sharpness (0.2-1) and
    roundness (|r| < 1) cuts; masked pixels are set to the background first so they
    make no sources. The brightest ``max_sources`` are kept. Centroids come from 1-D
    Gaussian fits to the marginal profiles (DAOStarFinder's ``xcentroid, ycentroid``).

    Parameters
    ----------
    data : numpy.ndarray
        2-D image.
    mask : numpy.ndarray of bool, optional
        Pixels to ignore (True); non-finite pixels are always ignored.
    fwhm : float, optional
        FWHM (pixels) of the detection kernel, about that of the PSF.
    snr : float, optional
        Detection threshold in units of the background noise.
    max_sources : int, optional
        Keep at most this many sources, brightest first.

    Returns
    -------
    astropy.table.Table
        Columns ``x``, ``y`` (0-based pixels) and ``flux``; empty if the image has no
        usable pixel or no source.
    """
    from astropy.stats import sigma_clipped_stats
    from photutils.detection import DAOStarFinder
    from photutils.utils.exceptions import NoDetectionsWarning

    image = np.asarray(data, dtype=float)
    bad = ~np.isfinite(image)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    empty = Table({"x": np.zeros(0), "y": np.zeros(0), "flux": np.zeros(0)})
    if bad.all():
        return empty
    _, median, std = sigma_clipped_stats(image[~bad], sigma=3.0, maxiters=10)
    if not np.isfinite(std) or std <= 0:
        return empty
    image = np.where(bad, median, image) - median
    # photutils 3 renamed ``brightest`` and ``xcentroid``; both spellings are handled
    try:
        finder = DAOStarFinder(threshold=snr * std, fwhm=fwhm, n_brightest=max_sources)
    except TypeError:
        finder = DAOStarFinder(threshold=snr * std, fwhm=fwhm, brightest=max_sources)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)  # an empty result says it
        found = finder(image)
    if found is None or len(found) == 0:
        return empty
    xcol, ycol = (
        ("x_centroid", "y_centroid")
        if "x_centroid" in found.colnames
        else ("xcentroid", "ycentroid")
    )
    return Table(
        {
            "x": np.asarray(found[xcol], dtype=float),
            "y": np.asarray(found[ycol], dtype=float),
            "flux": np.asarray(found["flux"], dtype=float),
        }
    )


# ---------------------------------------------------------------------- reference catalog


def _column(table: Table, *names: str) -> str | None:
    lower = {c.lower(): c for c in table.colnames}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    return None


def _degrees(column: Any) -> np.ndarray:
    if getattr(column, "unit", None) is not None:
        return np.asarray(u.Quantity(column).to_value(u.deg), dtype=float)
    return np.asarray(column, dtype=float)


def read_reference_catalog(path: str | os.PathLike[str]) -> Table:
    """Read a local absolute reference catalog.

    Parameters
    ----------
    path : str or path-like
        ECSV, Parquet or FITS table (other astropy-readable formats are tried by
        extension) with ``RA`` and ``DEC`` in degrees (any case) or a ``sky_centroid``
        SkyCoord column. Optional: proper motions ``pmra``/``pm_ra``, ``pmdec``/``pm_dec``
        (mas/yr, ``pmra`` including cos(dec)), ``parallax`` (mas) and ``ref_epoch``
        (Julian year; a column or a table meta value).

    Returns
    -------
    astropy.table.Table
        Columns ``RA``, ``DEC`` (deg) and, when present, ``pmra``, ``pmdec``,
        ``parallax``, ``ref_epoch``; rows with non-finite RA/DEC dropped.

    Raises
    ------
    InputFileError
        If the file is missing or unreadable, or has no RA/DEC.
    """
    path = Path(path)
    table = _as_table(path, None)
    ra_col, dec_col = _column(table, "ra"), _column(table, "dec")
    sky_col = _column(table, "sky_centroid")
    if ra_col is not None and dec_col is not None:
        ra, dec = _degrees(table[ra_col]), _degrees(table[dec_col])
    elif sky_col is not None and hasattr(table[sky_col], "ra"):
        ra, dec = table[sky_col].ra.deg, table[sky_col].dec.deg
    else:
        raise InputFileError(
            f"{path}: the reference catalog has no RA/DEC (or sky_centroid) columns"
            f" (it has {', '.join(table.colnames) or 'none'})"
        )
    out = Table({"RA": np.asarray(ra, dtype=float), "DEC": np.asarray(dec, dtype=float)})
    for key, names in (
        ("pmra", ("pmra", "pm_ra")),
        ("pmdec", ("pmdec", "pm_dec")),
        ("parallax", ("parallax",)),
        ("ref_epoch", ("ref_epoch", "epoch")),
    ):
        col = _column(table, *names)
        if col is not None:
            values = table[col]
            if getattr(values, "unit", None) is not None and key != "ref_epoch":
                values = u.Quantity(values).to_value(u.mas if key == "parallax" else u.mas / u.yr)
            out[key] = np.ma.filled(np.ma.asarray(values, dtype=float), np.nan)
    if "ref_epoch" not in out.colnames:
        meta = {k.lower(): v for k, v in table.meta.items()}
        if "ref_epoch" in meta:
            out["ref_epoch"] = np.full(len(out), float(meta["ref_epoch"]))
    keep = np.isfinite(out["RA"]) & np.isfinite(out["DEC"]) & (np.abs(out["DEC"]) <= 90)
    return out[keep]


def propagate_to_epoch(refcat: Table, epoch: Time) -> Table:
    """Move reference positions to ``epoch``: proper motion, then annual parallax.

    Proper motion is linear on the sky: ``dRA cos(DEC) = pmra dt``,
    ``dDEC = pmdec dt`` (``dt`` in Julian years from ``ref_epoch``). Parallax moves a
    star away from the observer's barycentric position ``(X, Y, Z)`` (AU; the Earth's,
    within 1 % of Roman's at L2): ``dRA cos(DEC) = plx (X sin RA - Y cos RA)``,
    ``dDEC = plx (X cos RA sin DEC + Y sin RA sin DEC - Z cos DEC)``. Missing
    (NaN) values, or no ``ref_epoch``, leave a row where it is; so does a catalog
    without these columns.

    Parameters
    ----------
    refcat : astropy.table.Table
        From `read_reference_catalog`.
    epoch : astropy.time.Time
        Exposure time.

    Returns
    -------
    astropy.table.Table
        A copy with ``RA``, ``DEC`` (deg) moved.
    """
    out = refcat.copy()
    ra = np.radians(np.asarray(out["RA"], dtype=float))
    dec = np.radians(np.asarray(out["DEC"], dtype=float))
    d_ra = np.zeros(len(out))  # mas, times cos(dec)
    d_dec = np.zeros(len(out))
    n = len(out)
    if "ref_epoch" in out.colnames and ("pmra" in out.colnames or "pmdec" in out.colnames):
        dt = epoch.jyear - np.asarray(out["ref_epoch"], dtype=float)
        for key, delta in (("pmra", d_ra), ("pmdec", d_dec)):
            if key in out.colnames:
                step = np.asarray(out[key], dtype=float) * dt
                delta += np.where(np.isfinite(step), step, 0.0)
    if "parallax" in out.colnames:
        plx = np.asarray(out["parallax"], dtype=float)
        plx = np.where(np.isfinite(plx), plx, 0.0)
        if np.any(plx):
            x, y, z = get_body_barycentric("earth", epoch).xyz.to_value(u.AU)
            d_ra += plx * (x * np.sin(ra) - y * np.cos(ra))
            d_dec += plx * (
                x * np.cos(ra) * np.sin(dec) + y * np.sin(ra) * np.sin(dec) - z * np.cos(dec)
            )
    if n and (np.any(d_ra) or np.any(d_dec)):
        mas = math.pi / (180.0 * 3.6e6)
        cos_dec = np.maximum(np.cos(dec), 1e-12)
        out["RA"] = np.degrees(ra + d_ra * mas / cos_dec) % 360.0
        out["DEC"] = np.degrees(np.clip(dec + d_dec * mas, -math.pi / 2, math.pi / 2))
    return out


def crop_to_image(refcat: Table, wcs: WCS, shape: tuple[int, int], margin_arcsec: float) -> Table:
    """Keep the reference sources on the image or within ``margin_arcsec`` of its edges.

    Positions are put through the inverse WCS (without its bounding box) after a
    cone cut around the image centre that keeps the inverse on familiar ground.

    Parameters
    ----------
    refcat : astropy.table.Table
        ``RA``, ``DEC`` (deg).
    wcs : gwcs.WCS
        The image's WCS.
    shape : tuple of int
        ``(ny, nx)`` of the image.
    margin_arcsec : float
        Margin (the absolute search radius).

    Returns
    -------
    astropy.table.Table
        The rows kept.
    """
    if len(refcat) == 0:
        return refcat
    ny, nx = shape
    (xmin, xmax), (ymin, ymax) = wcs.bounding_box or ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    xc, yc = 0.5 * (xmin + xmax), 0.5 * (ymin + ymax)
    ra_c, dec_c = wcs(xc, yc, with_bounding_box=False)
    ra_e, dec_e = wcs(xc + 1.0, yc, with_bounding_box=False)
    scale = _separation_deg(ra_c, dec_c, ra_e, dec_e) * 3600.0  # arcsec per pixel
    corners = np.array(wcs.footprint(((xmin, xmax), (ymin, ymax)), center=False))
    radius = np.max(_separation_deg(ra_c, dec_c, corners[:, 0], corners[:, 1]))
    ra, dec = np.asarray(refcat["RA"]), np.asarray(refcat["DEC"])
    near = _separation_deg(ra_c, dec_c, ra, dec) < radius * 1.5 + 2 * margin_arcsec / 3600.0
    keep = np.zeros(len(refcat), dtype=bool)
    if near.any():
        x, y = wcs.invert(ra[near], dec[near], with_bounding_box=False)
        pad = margin_arcsec / scale if scale > 0 else 0.0
        inside = (
            np.isfinite(x)
            & np.isfinite(y)
            & (x > xmin - pad)
            & (x < xmax + pad)
            & (y > ymin - pad)
            & (y < ymax + pad)
        )
        keep[np.flatnonzero(near)[inside]] = True
    return refcat[keep]


def _separation_deg(ra1: Any, dec1: Any, ra2: Any, dec2: Any) -> np.ndarray:
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, dtype=float)) for v in (ra1, dec1, ra2, dec2))
    sdr = np.sin((dec2 - dec1) / 2) ** 2
    sdr = sdr + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(sdr, 0, 1))))


# ---------------------------------------------------------------------- the fit


def fit_wcs(
    wcs: WCS,
    wcsinfo: Mapping[str, Any],
    catalog: Table,
    refcat: Table,
    *,
    name: str = "image",
    minobj: int = 10,
    searchrad: float = 6.0,
    use2dhist: bool = True,
    separation: float = 1.0,
    tolerance: float = 0.7,
    fitgeometry: str = "general",
    nclip: int = 3,
    sigma: float = 3.0,
) -> tuple[WCS, dict[str, Any]]:
    """Fit the image's WCS to the reference catalog with tweakwcs.

    Parameters
    ----------
    wcs : gwcs.WCS
        The image's WCS, with a ``v2v3`` (and optionally ``v2v3vacorr``) frame. It is
        not modified.
    wcsinfo : mapping
        ``roll_ref`` (deg), ``v2_ref``, ``v3_ref`` (arcsec): the tangent point of the
        correction.
    catalog : astropy.table.Table
        ``x``, ``y`` of the image's sources.
    refcat : astropy.table.Table
        ``RA``, ``DEC`` (deg).
    name : str, optional
        Name of the image in tweakwcs' log.
    minobj : int, optional
        Minimum number of matches (and of sources on each side) for a fit.
    searchrad, separation, tolerance : float, optional
        ``XYXYMatch`` parameters (arcsec).
    use2dhist : bool, optional
        Find the initial offset with a 2-D histogram of the pair offsets.
    fitgeometry : {"shift", "rshift", "rscale", "general"}, optional
        Fit geometry.
    nclip : int, optional
        Clipping iterations.
    sigma : float, optional
        Clipping limit in units of the fit's RMSE.

    Returns
    -------
    wcs : gwcs.WCS
        The corrected WCS (a ``v2v3corr`` frame after ``v2v3``/``v2v3vacorr``).
    fit_info : dict
        tweakwcs' ``fit_info`` (``status`` is ``"SUCCESS"``).

    Raises
    ------
    TweakregFailure
        If there are fewer than ``minobj`` sources or references, or matches, or the
        fit does not succeed; the message says why.
    """
    from tweakwcs import RomanWCSCorrector, align_wcs
    from tweakwcs.matchutils import XYXYMatch

    if len(catalog) < minobj:
        raise TweakregFailure(f"too few sources in the image ({len(catalog)} < {minobj})")
    if len(refcat) < minobj:
        raise TweakregFailure(
            f"too few reference sources on the image ({len(refcat)} < {minobj})"
        )
    cat = Table({"x": np.asarray(catalog["x"], float), "y": np.asarray(catalog["y"], float)})
    cat.meta["name"] = name
    ref = Table({"RA": np.asarray(refcat["RA"], float), "DEC": np.asarray(refcat["DEC"], float)})
    corrector = RomanWCSCorrector(
        wcs=_copy_wcs(wcs),
        wcsinfo={key: float(wcsinfo[key]) for key in ("roll_ref", "v2_ref", "v3_ref")},
        meta={"catalog": cat, "name": name, "group_id": 987654},
    )
    match = XYXYMatch(
        searchrad=searchrad,
        separation=separation,
        use2dhist=use2dhist,
        tolerance=tolerance,
        xoffset=0.0,
        yoffset=0.0,
    )
    try:
        align_wcs(
            [corrector],
            refcat=ref,
            enforce_user_order=True,
            expand_refcat=False,
            minobj=minobj,
            match=match,
            fitgeom=fitgeometry,
            nclip=nclip,
            sigma=(sigma, "rmse"),
            clip_accum=True,
        )
    except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
        raise TweakregFailure(f"the fit failed: {exc}") from None
    fit_info = dict(corrector.meta.get("fit_info") or {})
    status = str(fit_info.get("status", ""))
    if "SUCCESS" not in status:
        nmatches = fit_info.get("nmatches", 0) or 0
        raise TweakregFailure(
            f"the fit did not succeed (status {status or 'none'}, {nmatches} matches,"
            f" minobj {minobj})",
            fit_info,
        )
    return corrector.wcs, fit_info


def _copy_wcs(wcs: WCS) -> WCS:
    from copy import deepcopy

    return deepcopy(wcs)


def serialize_fit_info(fit_info: Mapping[str, Any] | None, n_detector: int = 1) -> dict[str, Any]:
    """Turn tweakwcs' ``fit_info`` into ``meta.wcs_fit_results`` as romancal writes it.

    Parameters
    ----------
    fit_info : mapping or None
        From the corrector (None if no fit was attempted).
    n_detector : int, optional
        Number of images in the fit.

    Returns
    -------
    dict
        Python scalars and lists: every key but `FIT_RESULT_DROPPED_KEYS`; ``status``
        ``"FAILED"`` when there is none, ``nmatches`` 0 when there is none, and
        ``n_detector``.
    """
    out: dict[str, Any] = {}
    for key, value in (fit_info or {}).items():
        if key in FIT_RESULT_DROPPED_KEYS:
            continue
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    if not out.get("status"):
        out["status"] = "FAILED"
    if out.get("nmatches") is None:
        out["nmatches"] = 0
    out["n_detector"] = n_detector
    return out
