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

import copy
import functools
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
    "DEPENDENCIES",
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


#: Columns of a reference catalog `read_reference_catalog` looks for (lower case).
_REFCAT_COLUMNS = (
    "ra", "dec", "sky_centroid", "pmra", "pm_ra", "pmdec", "pm_dec", "parallax",
    "ref_epoch", "epoch",
)

#: The modules reading a reference catalog or a parquet catalog imports when it first
#: runs (a pipeline imports them in the background beforehand).
DEPENDENCIES = ("pyarrow.csv", "pyarrow.parquet", "yaml")

#: ECSV datatypes the fast reader converts to float64 (every other goes to astropy).
_ECSV_NUMERIC = {
    "float16", "float32", "float64", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64",
}


def _read_ecsv_columns(path: Path, wanted: tuple[str, ...]) -> Table | None:
    """Read the ``wanted`` numeric columns of a plain ECSV table fast, else return None.

    astropy's ECSV reader parses every value of every column in Python (~0.1 s for
    a few thousand rows of ten columns, a reference catalog). An ECSV file is a YAML
    header (``# `` lines: column names, units, datatypes, table meta) followed by
    the values, one row per line separated by the header's ``delimiter`` (a space by
    default), strings quoted, masked values empty (the ECSV 1.0 standard). Here the
    header is parsed with PyYAML's C loader and only the columns needed are parsed,
    by pyarrow's CSV reader, as float64 (both parsers round decimal strings
    correctly, so the values are those astropy reads). Units come from the header.
    None (the caller then uses astropy) whenever the file is not that simple: a
    header the safe loader cannot read (astropy-specific tags), a wanted column
    that is not a plain numeric one (subtype, string, SkyCoord parts...), a header
    line of names that differs from the datatype list, a masked or unparsable
    value.
    """
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv
    import yaml

    try:
        raw = path.read_bytes()
    except OSError:
        return None
    header: list[str] = []
    offset = 0
    while raw.startswith(b"#", offset):
        end = raw.find(b"\n", offset)
        if end < 0:
            return None
        line = raw[offset:end].decode("utf-8", "replace").rstrip("\r")
        header.append(line[2:] if line.startswith("# ") else line[1:])
        offset = end + 1
    if not header or not header[0].startswith("%ECSV"):
        return None
    try:
        meta_yaml = yaml.load("\n".join(header[1:]), Loader=yaml.CSafeLoader)
        columns = meta_yaml["datatype"]
        names = [str(c["name"]) for c in columns]
    except Exception:  # not the plain header this reader knows
        return None
    delimiter = meta_yaml.get("delimiter", " ")
    lower = {name.lower(): i for i, name in enumerate(names)}
    picked = [names[lower[w]] for w in wanted if w in lower]
    for name in picked:
        info = columns[names.index(name)]
        if info.get("datatype") not in _ECSV_NUMERIC or "subtype" in info:
            return None
    try:
        body = pacsv.read_csv(
            io.BytesIO(raw[offset:]),
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char='"'),
            convert_options=pacsv.ConvertOptions(
                include_columns=picked, column_types={n: pa.float64() for n in picked}
            ),
        )
    except Exception:  # pyarrow raises its own types for a malformed row
        return None
    if body.column_names != picked or list(body.schema.names) != picked:
        return None
    names_line = raw[offset:raw.find(b"\n", offset)].decode("utf-8", "replace").split()
    if [n.strip('"') for n in names_line] != names:
        return None
    out = Table()
    for name in picked:
        column = body.column(name)
        if column.null_count:
            return None
        unit = columns[names.index(name)].get("unit")
        try:
            out[name] = column.to_numpy()
            if unit is not None:
                out[name].unit = u.Unit(unit)
        except ValueError:  # a unit astropy does not know
            return None
    meta = meta_yaml.get("meta") or {}
    if isinstance(meta, list):  # !!omap: a list of (key, value) pairs
        try:
            meta = dict(meta)
        except (TypeError, ValueError):
            return None
    if not isinstance(meta, dict):
        return None
    out.meta.update(meta)
    return out


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
    table = None
    if path.name.lower().endswith(".ecsv"):
        table = _read_ecsv_columns(path, _REFCAT_COLUMNS)
        if table is not None and (_column(table, "ra") is None or _column(table, "dec") is None):
            table = None  # no RA/DEC among the plain columns: astropy, and its message
    if table is None:
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
    # the WCS's forward transform, built once (each call of the gwcs builds it again):
    # the centre, one pixel to the right of it and the four outer corners
    forward = wcs.forward_transform
    ra_p, dec_p = forward(
        np.array([xc, xc + 1.0, xmin, xmin, xmax, xmax]),
        np.array([yc, yc, ymin, ymax, ymax, ymin]),
        with_bounding_box=False,
    )
    ra_c, dec_c = ra_p[0], dec_p[0]
    scale = _separation_deg(ra_c, dec_c, ra_p[1], dec_p[1]) * 3600.0  # arcsec per pixel
    radius = np.max(_separation_deg(ra_c, dec_c, ra_p[2:], dec_p[2:]))
    ra, dec = np.asarray(refcat["RA"]), np.asarray(refcat["DEC"])
    near = _separation_deg(ra_c, dec_c, ra, dec) < radius * 1.5 + 2 * margin_arcsec / 3600.0
    if near.any():
        try:
            # what wcs.invert(..., with_bounding_box=False) evaluates (gwcs'
            # backward_transform is this inverse), without building it twice more
            x, y = forward.inverse(ra[near], dec[near], with_bounding_box=False)
        except NotImplementedError:  # no analytic inverse: gwcs' numerical one
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


def _correctors(images: list[AlignImage], shared: bool = False) -> list[Any]:
    from tweakwcs import RomanWCSCorrector

    corrector_class = _shared_corrector_class() if shared else RomanWCSCorrector
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
            corrector_class(
                wcs=image.wcs,  # tweakwcs' corrector keeps its own deep copy (not shared)
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


@functools.cache
def _shared_corrector_class() -> type:
    """Return ``RomanWCSCorrector`` without the deep copy of the WCS it makes when built.

    tweakwcs' ``WCSCorrector.__init__`` deep-copies the gwcs it is given (~10 ms for a
    Roman WCS with its distortion, and ``align_wcs`` builds one per image plus a
    copy of the first as the tangent plane). The copy is never needed here: the
    corrector only reads the WCS (``set_correction`` builds a new gwcs from a copy of
    the pipeline and leaves the given one as it was), and the step replaces the
    model's WCS by the corrected one. Everything else is tweakwcs' own code: the
    structure checks, the correction model (``_tpcorr_init``,
    ``_v2v3_to_tpcorr_from_full``), the transforms (``_update_transformations``) and
    all methods used by the fit.
    """
    from tweakwcs import RomanWCSCorrector

    class SharedWCSCorrector(RomanWCSCorrector):
        def __init__(self, wcs: WCS, wcsinfo: Mapping[str, float],
                     meta: Mapping[str, Any] | None = None):
            # ST_V2V3_WCSCorrector.__init__ (tweakwcs 0.9) with the WCS shared
            valid, message = self._check_wcs_structure(wcs)
            if not valid:
                raise ValueError(f"Unsupported WCS structure: {message}")
            self._owcs = wcs
            self._wcs = wcs
            self._meta = {} if meta is None else dict(meta)
            self._wcsinfo = {k: float(wcsinfo[k]) for k in ("v2_ref", "v3_ref", "roll_ref")}
            frames = wcs.available_frames
            if "v2v3corr" in frames:
                # an earlier correction: its own copy, since set_correction updates it
                self._v23name = "v2v3corr"
                self._tpcorr = copy.deepcopy(wcs.pipeline[frames.index("v2v3corr") - 1].transform)
                self._default_tpcorr = None
                if not self._check_tpcorr_structure(self._tpcorr):
                    raise ValueError("Unsupported tangent-plane correction type.")
                v2ref, v3ref, roll = self._tpcorr["det_to_optic_axis"].angles.value
                if not (
                    np.isclose(self._wcsinfo["v2_ref"], v2ref * 3600.0,
                               rtol=10 * np.finfo(float).eps)
                    and np.isclose(self._wcsinfo["v3_ref"], -v3ref * 3600.0,
                                   rtol=10 * np.finfo(float).eps)
                    and np.isclose(self._wcsinfo["roll_ref"], roll,
                                   rtol=10 * np.finfo(float).eps)
                ):
                    raise ValueError(
                        "WCS/TPCorr parameters 'v2ref', 'v3ref', and/or 'roll' differ from"
                        " the corresponding reference values."
                    )
                self._partial_tpcorr = self._v2v3_to_tpcorr_from_full(self._tpcorr)
            else:
                self._v23name = "v2v3vacorr" if "v2v3vacorr" in frames else "v2v3"
                self._tpcorr = None
                self._default_tpcorr = self._tpcorr_init(
                    v2_ref=self._wcsinfo["v2_ref"] / 3600.0,
                    v3_ref=self._wcsinfo["v3_ref"] / 3600.0,
                    roll_ref=self._wcsinfo["roll_ref"],
                    corrector_name=self.corrector_name,
                )
                self._partial_tpcorr = self._v2v3_to_tpcorr_from_full(self._default_tpcorr)
            self._update_transformations()

    return SharedWCSCorrector


def _valid_apply(func: Any, a: np.ndarray, b: np.ndarray,
                 valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``func(a, b)`` on the valid rows (NaN elsewhere), and the rows valid after it.

    As tweakwcs' ``wcsimage._apply_valid``: every row at once when all are valid.
    """
    a = np.asarray(a, dtype=np.double)
    b = np.asarray(b, dtype=np.double)
    if valid.all():
        out1, out2 = (np.asarray(v, dtype=np.double) for v in func(a, b))
    else:
        out1 = np.full(valid.shape, np.nan)
        out2 = np.full(valid.shape, np.nan)
        if valid.any():
            out1[valid], out2[valid] = func(a[valid], b[valid])
    return out1, out2, valid & np.isfinite(out1) & np.isfinite(out2)


@dataclass
class _FitInput:
    """One image of `_align_direct`: its current WCS, tangent point, sources and meta.

    ``meta`` is the corrector's ``meta`` after a relative fit (its ``fit_info`` is read
    and written as tweakwcs does), else a new dict.
    """

    wcs: WCS
    wcsinfo: Mapping[str, float]
    x: np.ndarray
    y: np.ndarray
    meta: dict[str, Any]


class _PlaneView:
    """The part of a ``RomanWCSCorrector`` that tweakwcs' ``_tp2tp`` reads of an image.

    ``det_to_world`` and ``world_to_tanp`` are the corrector's (tweakwcs 0.9
    ``ST_V2V3_WCSCorrector``): the WCS called with its bounding box, and the WCS's
    world -> V2V3 transform followed by the tangent-plane projection of the image's
    ``(v2_ref, v3_ref, roll_ref)``, in arcsec.
    """

    units = "arcsec"

    def __init__(self, wcs: WCS, forward: Any, v23name: str, partial_tpcorr: Any):
        self.wcs = wcs
        self.meta: dict[str, Any] = {}
        self._forward = forward
        self._world_to_v23 = wcs.get_transform(wcs.pipeline[-1].frame.name, v23name)
        self._partial_tpcorr = partial_tpcorr

    def det_to_world(self, x: Any, y: Any) -> tuple[Any, Any]:
        # gwcs' WCS.__call__ (bounding box on, NaN outside) on a built transform
        return self._forward(x, y, with_bounding_box=True, fill_value=np.nan)

    def world_to_tanp(self, ra: Any, dec: Any) -> tuple[Any, Any]:
        v2, v3 = self._world_to_v23(ra, dec)
        x, y = self._partial_tpcorr(v2, v3)
        return _RAD2ARCSEC * x, _RAD2ARCSEC * y


#: Radians to arcsec, as tweakwcs' correctors (``_RAD2ARCSEC``).
_RAD2ARCSEC = 3600.0 * np.rad2deg(1.0)


def _corrected_wcs(wcs: WCS, wcsinfo: Mapping[str, float], matrix: np.ndarray,
                   shift: np.ndarray, plane: Any, view: Any, tpcorr: Any = None) -> WCS:
    """Return ``wcs`` with the fitted correction as a new ``v2v3corr`` frame.

    The result of tweakwcs' ``ST_V2V3_WCSCorrector.set_correction(matrix, shift,
    ref_tpwcs=plane)`` for a WCS without an earlier correction: the fit (made in the
    tangent plane of ``plane``) carried to this image's own tangent plane with
    tweakwcs' ``_tp2tp`` (``M' = R M R^-1``, ``s' = R s - M' t + t``), then the
    correction model of tweakwcs (``_tpcorr_init``: V2V3 -> the plane tangent at
    ``(v2_ref, v3_ref)`` rolled by ``roll_ref``, the affine map, back to V2V3;
    ``_tpcorr_combine_affines``, shift in radians) put between the ``v2v3`` (or
    ``v2v3vacorr``) frame and a new ``v2v3corr`` frame. Unlike ``set_correction``,
    the model is not copied again (it is new), the other frames and transforms are
    those of ``wcs`` (not copies) and no corrector is rebuilt around the new WCS
    (only the WCS is used). ``tpcorr``: a correction model of ``_tpcorr_init`` for
    this image's ``wcsinfo``, not used elsewhere any more, to use (and change)
    instead of a new one.
    """
    from tweakwcs import RomanWCSCorrector
    from tweakwcs.correctors import ST_V2V3_WCSCorrector, _tp2tp
    from tweakwcs.linalg import inv

    r, t = _tp2tp(plane, view)
    matrix = np.linalg.multi_dot([r, matrix, inv(r)]).astype(np.double)
    shift = (np.dot(r, shift) - np.dot(matrix, t) + t).astype(np.double)
    if tpcorr is None:
        tpcorr = ST_V2V3_WCSCorrector._tpcorr_init(
            v2_ref=float(wcsinfo["v2_ref"]) / 3600.0,
            v3_ref=float(wcsinfo["v3_ref"]) / 3600.0,
            roll_ref=float(wcsinfo["roll_ref"]),
            corrector_name=RomanWCSCorrector.corrector_name,
        )
    ST_V2V3_WCSCorrector._tpcorr_combine_affines(tpcorr, matrix, np.asarray(shift) / _RAD2ARCSEC)
    frames = wcs.available_frames
    v23name = "v2v3vacorr" if "v2v3vacorr" in frames else "v2v3"
    index = frames.index(v23name)
    # set_correction deep-copies the whole pipeline (~20-70 ms with the distortion
    # models); here the new WCS shares the frames and transforms of ``wcs``, which the
    # step replaces by it, and none is changed in place afterwards (WfiWcsModel copies
    # the WCS before it moves the bounding box). Only the new frame is a copy.
    pipeline = [(step.frame, step.transform) for step in wcs.pipeline]
    frame, transform = pipeline[index]
    pipeline[index] = (frame, tpcorr)
    corr_frame = copy.deepcopy(frame)
    corr_frame.name = "v2v3corr"
    pipeline.insert(index + 1, (corr_frame, transform))
    return WCS(pipeline, name=wcs.name)


def _align_direct(items: list[_FitInput], refcat: Table,
                  params: Mapping[str, Any]) -> list[WCS] | None:
    """One joint fit of all images to ``refcat``: tweakwcs' pieces without ``align_wcs``.

    What ``align_wcs(correctors, refcat, enforce_user_order=True, expand_refcat=False,
    clip_accum=True, ...)`` does when every image is in one group (tweakwcs 0.9
    ``imalign.align_wcs`` and ``wcsimage.WCSGroupCatalog.align_to_ref``), in the same
    order and with the same library calls for the numbers:

    1. the group catalog: each image's ``x, y`` through its WCS (the corrector's
       ``det_to_world``), image after image; rows with non-finite positions are not
       used;
    2. the tangent plane of the first image (a corrector built from its WCS: what
       ``align_to_ref``'s deep copy of it is), the sources' and the references'
       tangent-plane positions (``world_to_tanp``);
    3. the match (``XYXYMatch`` on the valid rows, pixel scale from the first
       image's ``tanp_center_pixel_scale``); fewer than ``minobj`` matches: every
       ``fit_info`` is ``{"status": "FAILED: not enough matches"}``;
    4. ``linearfit.iter_linear_fit`` (reference, image), the shift moved to the
       origin of the tangent plane as ``fit2ref`` does;
    5. the correction of every image (`_corrected_wcs`, or the corrector's own
       ``set_correction`` when its WCS already has a ``v2v3corr`` frame) and its
       ``fit_info``.

    Left out because nothing here uses them: the spherical-polygon footprints and
    their union (used by ``align_wcs`` only to order several groups by overlap), the
    copies of the catalogs and WCSs, ``fit_RA``/``fit_DEC`` (dropped from
    ``wcs_fit_results``, `FIT_RESULT_DROPPED_KEYS`) and the recomputed sky positions
    of the group catalog.

    Returns
    -------
    list of gwcs.WCS or None
        The corrected WCS of each image; None when there were too few matches.

    Raises
    ------
    ValueError, RuntimeError, numpy.linalg.LinAlgError
        As ``align_wcs``: no valid reference or image source, or a fit that cannot
        be done (`_FIT_ERRORS`).
    """
    from tweakwcs.correctors import ST_V2V3_WCSCorrector
    from tweakwcs.imalign import NotEnoughCatalogs
    from tweakwcs.linearfit import SUPPORTED_FITGEOM_MODES, iter_linear_fit

    fitgeom = str(params["fitgeometry"]).lower()
    if fitgeom not in SUPPORTED_FITGEOM_MODES:
        raise ValueError(f"Unsupported 'fitgeom' {fitgeom!r}")
    ref_ra = np.asarray(refcat["RA"], dtype=np.double)
    ref_dec = np.asarray(refcat["DEC"], dtype=np.double)
    ref_valid = np.isfinite(ref_ra) & np.isfinite(ref_dec)
    if not ref_valid.any():
        raise ValueError("Reference catalog must contain at least one valid source.")
    # 1. the group catalog (WCSGroupCatalog.create_group_catalog)
    ras, decs, valids, forwards = [], [], [], []
    for item in items:
        # the WCS's forward transform, built once per image (a gwcs call builds it
        # each time); called as WCS.__call__ calls it: bounding box on, NaN outside
        forward = item.wcs.forward_transform
        forwards.append(forward)
        ra, dec, valid = _valid_apply(
            lambda x, y, f=forward: f(x, y, with_bounding_box=True, fill_value=np.nan),
            item.x, item.y, np.isfinite(item.x) & np.isfinite(item.y),
        )
        ras.append(ra)
        decs.append(dec)
        valids.append(valid)
    ra, dec, img_valid = (np.concatenate(v) for v in (ras, decs, valids))
    if ra.size == 0:
        for item in items:
            item.meta["fit_info"] = {"status": "FAILED: empty source catalog"}
        raise NotEnoughCatalogs(
            "Too few input images (or groups of images) with non-empty catalogs."
        )
    # 2. tangent-plane positions in the first image's plane (align_to_ref, calc_tanp_xy)
    first = items[0]
    meta = {"fit_info": copy.deepcopy(first.meta["fit_info"])} if "fit_info" in first.meta \
        else None
    plane = _shared_corrector_class()(first.wcs, first.wcsinfo, meta)
    img_tpx, img_tpy, img_valid = _valid_apply(plane.world_to_tanp, ra, dec, img_valid)
    ref_tpx, ref_tpy, ref_valid = _valid_apply(plane.world_to_tanp, ref_ra, ref_dec, ref_valid)
    # 3. the match (WCSGroupCatalog.match2ref): the valid rows only
    img_sel = np.flatnonzero(img_valid)
    ref_sel = np.flatnonzero(ref_valid)
    if img_sel.size and ref_sel.size:
        mref_loc, minput_loc = _match(params)(
            Table({"TPx": ref_tpx[ref_sel], "TPy": ref_tpy[ref_sel]}, copy=False),
            Table({"TPx": img_tpx[img_sel], "TPy": img_tpy[img_sel]}, copy=False),
            tp_pscale=plane.tanp_center_pixel_scale,
            tp_units=plane.units,
        )
        mref_idx = ref_sel[np.asarray(mref_loc, dtype=int)]
        minput_idx = img_sel[np.asarray(minput_loc, dtype=int)]
    else:
        mref_idx = minput_idx = np.array([], dtype=int)
    minobj = int(params["minobj"])
    if len(mref_idx) < minobj:
        for item in items:
            item.meta["fit_info"] = {"status": "FAILED: not enough matches"}
        return None
    # 4. the fit (WCSGroupCatalog.fit2ref): reference = fit(image)
    im_xy = np.asarray([img_tpx, img_tpy]).T[minput_idx]
    ref_xy = np.asarray([ref_tpx, ref_tpy]).T[mref_idx]
    fit = iter_linear_fit(
        ref_xy, im_xy, None, None, fitgeom=fitgeom, nclip=params["nclip"],
        sigma=(params["sigma"], "rmse"), center=None, clip_accum=True,
    )
    # the shift for a rotation about the plane's origin instead of the fit's centre
    fit["shift_ld"] += fit["center_ld"] - np.dot(fit["center_ld"], fit["matrix_ld"].T)
    fit["shift"] = fit["shift_ld"].astype(np.double)
    fit_info = {
        "fitgeom": fitgeom,
        "eff_minobj": minobj,
        "matrix": fit["matrix"],
        "shift": fit["shift"],
        "center": fit["center"],
        "fitmask": fit["fitmask"],
        "proper_rot": fit["proper_rot"],
        "proper": fit["proper"],
        "rot": fit["rot"],
        "<rot>": fit["<rot>"],
        "scale": fit["scale"],
        "<scale>": fit["<scale>"],
        "skew": fit["skew"],
        "rmse": fit["rmse"],
        "mae": fit["mae"],
        "status": "SUCCESS",
        "nmatches": len(mref_idx),
        "matched_ref_idx": mref_idx,
        "matched_input_idx": minput_idx,
    }
    # 5. the correction of every image (apply_affine_to_wcs), then its fit_info
    # ("status" first, as tweakwcs' WCSImageCatalog.fit_info updated with the fit)
    corrected: list[WCS | None] = [None] * len(items)
    # the first image last: its correction model is then the plane's own (the plane's
    # tangent-plane projection shares its affine map, which the correction changes)
    for index in [*range(1, len(items)), 0]:
        item = items[index]
        if "v2v3corr" in item.wcs.available_frames:
            # an earlier correction (a relative fit): tweakwcs combines the two
            corrector = _shared_corrector_class()(item.wcs, item.wcsinfo, item.meta)
            corrector.set_correction(fit["matrix"], fit["shift"], ref_tpwcs=plane)
            corrected[index] = corrector.wcs
            continue
        if index == 0:
            # the first image's corrector is the plane until corrected; the plane's
            # correction model (_tpcorr_init of the same wcsinfo) is free by now
            corrected[0] = _corrected_wcs(item.wcs, item.wcsinfo, fit["matrix"], fit["shift"],
                                          plane, plane, tpcorr=plane._default_tpcorr)
            continue
        else:
            same = all(float(item.wcsinfo[k]) == plane.ref_angles[k]
                       for k in ("v2_ref", "v3_ref", "roll_ref"))
            partial = plane._partial_tpcorr if same else \
                ST_V2V3_WCSCorrector._v2v3_to_tpcorr_from_full(
                    ST_V2V3_WCSCorrector._tpcorr_init(
                        float(item.wcsinfo["v2_ref"]) / 3600.0,
                        float(item.wcsinfo["v3_ref"]) / 3600.0,
                        float(item.wcsinfo["roll_ref"]),
                    )
                )
            frames = item.wcs.available_frames
            view = _PlaneView(item.wcs, forwards[index],
                              "v2v3vacorr" if "v2v3vacorr" in frames else "v2v3", partial)
        corrected[index] = _corrected_wcs(item.wcs, item.wcsinfo, fit["matrix"], fit["shift"],
                                          plane, view)
    for item in items:
        item.meta["fit_info"] = {"status": "SUCCESS", **copy.deepcopy(fit_info)}
    return corrected


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
    method: str = "direct",
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
    method : {"direct", "align_wcs"}, optional
        How the absolute fit calls tweakwcs: ``"direct"`` (default) calls its
        matching, fitting and correction directly (`_align_direct`, correctors that
        share the images' WCS); ``"align_wcs"`` goes through ``tweakwcs.align_wcs``
        as romancal does (footprint polygons and their union, copies of every WCS),
        the reference the direct path is tested against: same matches, fit and
        corrected WCS, 3-8x slower. The relative fit always uses ``align_wcs``.

    Returns
    -------
    Alignment
        Corrected WCSs when the absolute fit succeeded.
    """
    if method not in ("direct", "align_wcs"):
        raise ValueError(f"method must be 'direct' or 'align_wcs', not {method!r}")
    shared = method == "direct"
    n = len(images)
    failed = Alignment(False, [None] * n, [None] * n)
    if n == 0:
        failed.message = "no image with sources"
        return failed
    correctors: list[Any] | None = None
    relative_note = "not needed"
    groups = {
        image.group_id if image.group_id is not None else f"image-{index}"
        for index, image in enumerate(images)
    }
    if relative is not None and len(groups) > 1:
        correctors = _correctors(images, shared)
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
            correctors = None
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
    if correctors is None and not shared:
        correctors = _correctors(images)
    if correctors is not None:
        metas = [c.meta for c in correctors]
        for meta in metas:
            meta["group_id"] = ABSOLUTE_GROUP_ID
            info = meta.get("fit_info")
            if info is not None and "REFERENCE" in str(info.get("status", "")):
                del meta["fit_info"]
    else:
        metas = [{} for _ in images]
    try:
        if shared:
            sources = correctors if correctors is not None else images
            items = [
                _FitInput(
                    wcs=source.wcs,
                    wcsinfo={k: float(image.wcsinfo[k]) for k in ("roll_ref", "v2_ref", "v3_ref")},
                    x=np.asarray(image.catalog["x"], dtype=np.double),
                    y=np.asarray(image.catalog["y"], dtype=np.double),
                    meta=meta,
                )
                for source, image, meta in zip(sources, images, metas, strict=True)
            ]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                corrected = _align_direct(items, ref, absolute)
        else:
            _run_align(correctors, ref, absolute, enforce_user_order=True, expand_refcat=False)
            corrected = [c.wcs for c in correctors]
    except _FIT_ERRORS as exc:
        failed.message = f"the fit failed: {exc}"
        failed.fit_info = [dict(meta.get("fit_info") or {}) or None for meta in metas]
        return failed
    infos = [dict(meta.get("fit_info") or {}) for meta in metas]
    if not all("SUCCESS" in str(info.get("status", "")) for info in infos):
        info = infos[0]
        failed.message = (
            f"the fit did not succeed (status {info.get('status') or 'none'},"
            f" {info.get('nmatches', 0) or 0} matches, minobj {minobj})"
        )
        failed.fit_info = [info or None for info in infos]
        failed.aborted = False
        return failed
    return Alignment(True, list(corrected), infos, "", relative_note)


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
    method: str = "direct",
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
    method : {"direct", "align_wcs"}, optional
        See `align_images`.

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
    result = align_images([AlignImage(name, wcs, wcsinfo, catalog, shape)], refcat, params,
                          method=method)
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
