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
from dataclasses import dataclass
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
    "ABSOLUTE_GROUP_ID",
    "FIT_RESULT_DROPPED_KEYS",
    "AlignImage",
    "Alignment",
    "align_images",
    "reference_mask",
    "update_sky_columns",
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


#: The columns of an image's source catalog the fit can use (`image_catalog`).
SOURCE_COLUMNS = ("x", "y", "x_psf", "y_psf", "x_centroid", "y_centroid", "warning_flags")


def _as_table(path: Path, fmt: str | None, columns: tuple[str, ...] | None = None) -> Table:
    name = path.name.lower()
    try:
        if name.endswith(".parquet") and columns is not None:
            # only the columns needed, with pyarrow alone: astropy's reader goes
            # through pyarrow.dataset, which imports pandas (~0.5 s)
            import pyarrow.parquet as pq

            with open(path, "rb") as fh:
                pfile = pq.ParquetFile(fh)
                present = [c for c in columns if c in pfile.schema_arrow.names]
                arrow = pfile.read(columns=present)
            return Table({c: arrow.column(c).to_numpy() for c in present})
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
        return image_catalog(_as_table(path, fmt, SOURCE_COLUMNS), bounding_box)
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


def reference_mask(
    refcat: Table, wcs: WCS, shape: tuple[int, int], margin_arcsec: float
) -> np.ndarray:
    """Return which reference sources are on the image or within ``margin_arcsec`` of it.

    Positions are put through the inverse WCS (without its bounding box) after a
    cone cut around the image centre that keeps the inverse on familiar ground.

    Parameters
    ----------
    refcat : astropy.table.Table
        ``RA``, ``DEC`` (deg).
    wcs : gwcs.WCS
        The image's WCS.
    shape : tuple of int
        ``(ny, nx)`` of the image (used when the WCS has no bounding box).
    margin_arcsec : float
        Margin (the absolute search radius).

    Returns
    -------
    numpy.ndarray of bool
        One flag per row of ``refcat``.
    """
    keep = np.zeros(len(refcat), dtype=bool)
    if len(refcat) == 0:
        return keep
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
    return keep


def crop_to_image(refcat: Table, wcs: WCS, shape: tuple[int, int], margin_arcsec: float) -> Table:
    """Keep the reference sources on the image or within ``margin_arcsec`` of its edges.

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
        The rows kept (`reference_mask`).
    """
    if len(refcat) == 0:
        return refcat
    return refcat[reference_mask(refcat, wcs, shape, margin_arcsec)]


def _separation_deg(ra1: Any, dec1: Any, ra2: Any, dec2: Any) -> np.ndarray:
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, dtype=float)) for v in (ra1, dec1, ra2, dec2))
    sdr = np.sin((dec2 - dec1) / 2) ** 2
    sdr = sdr + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(sdr, 0, 1))))


# ---------------------------------------------------------------------- the fit


#: ``group_id`` tweakwcs gets for the absolute fit: every image in one group, so that
#: one correction is fitted to all of them (the value stcal uses, recognisable in logs).
ABSOLUTE_GROUP_ID = 987654


@dataclass
class AlignImage:
    """One image of an alignment: its WCS, tangent point and source positions.

    Attributes
    ----------
    name : str
        Name in the log (the file name).
    wcs : gwcs.WCS
        The image's WCS (not modified).
    wcsinfo : mapping
        ``roll_ref`` (deg), ``v2_ref``, ``v3_ref`` (arcsec).
    catalog : astropy.table.Table
        ``x``, ``y`` (0-based pixels) of its sources.
    shape : tuple of int
        ``(ny, nx)``.
    group_id : object, optional
        Exposure the image belongs to: images of one exposure (the detectors read
        together) move together in the relative fit. None: a group of its own.
    """

    name: str
    wcs: WCS
    wcsinfo: Mapping[str, Any]
    catalog: Table
    shape: tuple[int, int]
    group_id: Any = None


@dataclass
class Alignment:
    """Result of `align_images`.

    Attributes
    ----------
    succeeded : bool
        Whether the absolute fit succeeded (then every ``wcs`` is set).
    wcs : list
        Corrected WCS per image, or None where the fit failed.
    fit_info : list
        tweakwcs' ``fit_info`` per image (None if no fit was attempted).
    message : str
        Why the absolute fit failed (empty on success).
    relative : str
        What the relative fit did (``"not needed"``, ``"done"`` or why it was dropped).
    aborted : bool
        The absolute fit was not done or raised (too few reference sources, no
        sources, a singular fit): romancal then writes ``status: FAILED`` whatever
        tweakwcs reported; otherwise tweakwcs' own status (e.g. ``"FAILED: not enough
        matches"``) is kept, as romancal keeps it.
    """

    succeeded: bool
    wcs: list[WCS | None]
    fit_info: list[dict[str, Any] | None]
    message: str = ""
    relative: str = "not needed"
    aborted: bool = True


def _correctors(images: list[AlignImage]) -> list[Any]:
    from tweakwcs import RomanWCSCorrector

    correctors = []
    for index, image in enumerate(images):
        cat = Table(
            {
                "x": np.asarray(image.catalog["x"], float),
                "y": np.asarray(image.catalog["y"], float),
            }
        )
        cat.meta["name"] = image.name
        group = image.group_id if image.group_id is not None else f"image-{index}"
        correctors.append(
            RomanWCSCorrector(
                wcs=image.wcs,  # tweakwcs' corrector keeps its own deep copy
                wcsinfo={k: float(image.wcsinfo[k]) for k in ("roll_ref", "v2_ref", "v3_ref")},
                meta={"catalog": cat, "name": image.name, "group_id": group, "index": index},
            )
        )
    return correctors


def _match(params: Mapping[str, Any]) -> Any:
    from tweakwcs.matchutils import XYXYMatch

    return XYXYMatch(
        searchrad=params["searchrad"],
        separation=params["separation"],
        use2dhist=params["use2dhist"],
        tolerance=params["tolerance"],
        xoffset=0.0,
        yoffset=0.0,
    )


def _run_align(correctors: list[Any], refcat: Table | None, params: Mapping[str, Any],
               **options: Any) -> None:
    from tweakwcs import align_wcs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        align_wcs(
            correctors,
            refcat=refcat,
            minobj=params["minobj"],
            match=_match(params),
            fitgeom=params["fitgeometry"],
            nclip=params["nclip"],
            sigma=(params["sigma"], "rmse"),
            clip_accum=True,
            **options,
        )


def _correction_is_small(correctors: list[Any], images: list[AlignImage],
                         params: Mapping[str, Any]) -> bool:
    """Stcal's sanity check of a relative fit: no corner moved by more than the search."""
    limit = 2.0 * (params["searchrad"] + params["tolerance"]) / 3600.0
    if not params["use2dhist"]:
        limit = 2.0 * params["tolerance"] / 3600.0
    for corrector, image in zip(correctors, images, strict=True):
        before = np.asarray(image.wcs.footprint(axis_type="spatial"))
        after = np.asarray(corrector.wcs.footprint(axis_type="spatial"))
        moved = _separation_deg(before[:, 0], before[:, 1], after[:, 0], after[:, 1])
        if not np.all(moved < limit):
            return False
    return True


#: Errors tweakwcs raises for a fit that cannot be done (too few sources or matches,
#: a singular fit); they are failures of the alignment, not of the program.
_FIT_ERRORS = (ValueError, RuntimeError, np.linalg.LinAlgError)


def align_images(
    images: list[AlignImage],
    refcat: Table,
    absolute: Mapping[str, Any],
    relative: Mapping[str, Any] | None = None,
) -> Alignment:
    """Align images to each other, then all together to a reference catalog.

    romancal 1.1's tweakreg (through stcal 1.20): with images from more than one
    exposure (``group_id``), a relative fit first (``tweakwcs.align_wcs`` without a
    reference catalog, the first group as reference unless tweakwcs orders them, each
    exposure moved as a whole); it is dropped, with its reason in
    `Alignment.relative`, if it fails or moves any corner by more than
    2 x (``searchrad`` + ``tolerance``). Then one absolute fit of all images as a
    single group to the reference sources on any of the images (plus
    ``searchrad``).

    Parameters
    ----------
    images : list of AlignImage
        The images (each with at least one source).
    refcat : astropy.table.Table
        ``RA``, ``DEC`` (deg) at the exposures' epoch.
    absolute : mapping
        ``minobj``, ``searchrad``, ``separation``, ``use2dhist``, ``tolerance``,
        ``fitgeometry``, ``nclip``, ``sigma`` of the absolute fit.
    relative : mapping, optional
        The same keys plus ``enforce_user_order`` and ``expand_refcat`` for the
        relative fit; None: no relative fit.

    Returns
    -------
    Alignment
        Corrected WCSs when the absolute fit succeeded.
    """
    n = len(images)
    failed = Alignment(False, [None] * n, [None] * n)
    if n == 0:
        failed.message = "no image with sources"
        return failed
    correctors = _correctors(images)
    relative_note = "not needed"
    groups = {c.meta["group_id"] for c in correctors}
    if relative is not None and len(groups) > 1:
        try:
            _run_align(
                correctors,
                None,
                relative,
                enforce_user_order=bool(relative["enforce_user_order"]),
                expand_refcat=bool(relative["expand_refcat"]),
            )
        except _FIT_ERRORS as exc:
            relative_note = f"dropped: {exc}"
        else:
            relative_note = "done"
            if not _correction_is_small(correctors, images, relative):
                relative_note = (
                    "dropped: it moved an image by more than 2 x (searchrad + tolerance)"
                )
        if relative_note != "done":
            correctors = _correctors(images)
    failed.relative = relative_note
    minobj = int(absolute["minobj"])
    on_images = np.zeros(len(refcat), dtype=bool)
    for image in images:
        on_images |= reference_mask(refcat, image.wcs, image.shape, absolute["searchrad"])
    ref = Table({"RA": np.asarray(refcat["RA"], float)[on_images],
                 "DEC": np.asarray(refcat["DEC"], float)[on_images]})
    if len(ref) < minobj:
        failed.message = f"too few reference sources on the image(s) ({len(ref)} < {minobj})"
        return failed
    for corrector in correctors:
        corrector.meta["group_id"] = ABSOLUTE_GROUP_ID
        info = corrector.meta.get("fit_info")
        if info is not None and "REFERENCE" in str(info.get("status", "")):
            del corrector.meta["fit_info"]
    try:
        _run_align(correctors, ref, absolute, enforce_user_order=True, expand_refcat=False)
    except _FIT_ERRORS as exc:
        failed.message = f"the fit failed: {exc}"
        failed.fit_info = [dict(c.meta.get("fit_info") or {}) or None for c in correctors]
        return failed
    infos = [dict(c.meta.get("fit_info") or {}) for c in correctors]
    if not all("SUCCESS" in str(info.get("status", "")) for info in infos):
        info = infos[0]
        failed.message = (
            f"the fit did not succeed (status {info.get('status') or 'none'},"
            f" {info.get('nmatches', 0) or 0} matches, minobj {minobj})"
        )
        failed.fit_info = [info or None for info in infos]
        failed.aborted = False
        return failed
    return Alignment(True, [c.wcs for c in correctors], infos, "", relative_note)


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
    """Fit one image's WCS to the reference catalog (`align_images` of one image).

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
        ``RA``, ``DEC`` (deg), already cropped to the image.
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
    bbox = wcs.bounding_box
    shape = (
        (int(round(bbox[1][1] + 0.5)), int(round(bbox[0][1] + 0.5))) if bbox else (0, 0)
    )
    if len(catalog) < minobj:
        raise TweakregFailure(f"too few sources in the image ({len(catalog)} < {minobj})")
    if len(refcat) < minobj:
        raise TweakregFailure(
            f"too few reference sources on the image ({len(refcat)} < {minobj})"
        )
    params = {
        "minobj": minobj, "searchrad": searchrad, "separation": separation,
        "use2dhist": use2dhist, "tolerance": tolerance, "fitgeometry": fitgeometry,
        "nclip": nclip, "sigma": sigma,
    }
    result = align_images([AlignImage(name, wcs, wcsinfo, catalog, shape)], refcat, params)
    if not result.succeeded:
        raise TweakregFailure(result.message, result.fit_info[0])
    return result.wcs[0], result.fit_info[0] or {}


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


#: Sky columns of a catalog recomputed from pixel columns after a WCS change, as
#: romancal's ``TweakRegStep._update_catalog_coordinates``: (x, y, ra, dec).
SKY_COLUMNS = (
    ("x_centroid", "y_centroid", "ra_centroid", "dec_centroid"),
    ("x_centroid", "y_centroid", "ra", "dec"),
    ("x_centroid_win", "y_centroid_win", "ra_centroid_win", "dec_centroid_win"),
    ("x_psf", "y_psf", "ra_psf", "dec_psf"),
)


def update_sky_columns(table: Table, wcs: WCS) -> list[str]:
    """Recompute a catalog's sky positions from its pixel positions with a new WCS.

    Only columns already in the table change (their units are kept); the pairs are
    `SKY_COLUMNS`.

    Parameters
    ----------
    table : astropy.table.Table
        Source catalog (changed in place).
    wcs : gwcs.WCS
        The aligned WCS.

    Returns
    -------
    list of str
        The sky columns updated.
    """
    updated: list[str] = []
    for xcol, ycol, racol, deccol in SKY_COLUMNS:
        if not all(c in table.colnames for c in (xcol, ycol, racol, deccol)):
            continue
        if len(table):
            ra, dec = wcs(
                np.asarray(table[xcol], float), np.asarray(table[ycol], float),
                with_bounding_box=False,
            )
            for col, values in ((racol, ra), (deccol, dec)):
                unit = getattr(table[col], "unit", None)
                table[col][:] = np.asarray(values) * unit if unit is not None else values
        updated += [racol, deccol]
    return updated
