"""The mosaic demo: a simulated dither set through ``roman_elp`` and ``roman_mos``, scored.

``romancal_lite demo --mosaic`` writes into ``--output-dir`` (default
``romancal_lite_mosaic_demo``):

* a simulated dither set (`romancal_lite.simulate.simulate_set`): `MOSAIC_DITHERS`
  exposures of one detector and one sky scene, dithered by `MOSAIC_DITHER_STEP`
  arcsec, each with its own sky offset (`MOSAIC_SKY_OFFSETS`) and independent noise
  and cosmic rays, all with the recorded pointing wrong by `MOSAIC_POINTING_ERROR`;
  made once and reused (``r<visit>_<exposure>_wfi01_uncal.asdf``, the set's truth
  tables ``r<visit>_set_stars.ecsv`` and ``r<visit>_set_exposures.ecsv``);
* ``field_refcat.ecsv``: the reference catalog of the field (the members' Gaia-like
  catalogs merged, one row per star of the set);
* the ``roman_elp`` products of every exposure (``_cal``, ``_cat``, ``_segm``,
  ``_wcs``), the exposures aligned together to ``field_refcat.ecsv`` by one
  ``tweakreg`` run;
* ``field_asn.json`` (`romancal_lite.associations.asn_from_list`), and the
  ``roman_mos`` products ``field_coadd.asdf``, ``field_cat.parquet``,
  ``field_segm.asdf``, with each input's copy after outlier detection
  (``<member>_outlier_detection.asdf``: its ``dq`` holds the OUTLIER flags, its
  ``meta.background`` the skymatch level);
* ``field_coadd.png``: a preview of the mosaic;

and prints how well the mosaic recovers the truth (`score_skymatch`,
`score_outliers`, `score_mosaic_crs`, `score_mosaic_photometry`, `score_mosaic_sky`,
`score_mosaic_astrometry`).

By default ``roman_elp`` runs without its in-ramp jump detection
(``--steps.ramp_fit.use_ramp_jump_detection false``): every cosmic ray then reaches the
``_cal`` images and outlier detection is what must remove them from the mosaic (with
the jump detection, ``--ramp-jumps``, nearly all of them are already gone from the
``_cal`` images and the demo says how few are left).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from romancal_lite.demo import _demo_n_stars, _separation_mas
from romancore.dqflags import pixel

__all__ = [
    "MOSAIC_DITHERS",
    "MOSAIC_DITHER_STEP",
    "MOSAIC_NAME",
    "MOSAIC_POINTING_ERROR",
    "MOSAIC_SHAPE",
    "MOSAIC_SKY",
    "MOSAIC_SKY_OFFSETS",
    "check_mosaic_options",
    "field_reference_catalog",
    "format_mosaic_scores",
    "member_image_sky",
    "member_sky_mjysr",
    "run_mosaic_demo",
    "score_mosaic_astrometry",
    "score_mosaic_crs",
    "score_mosaic_photometry",
    "score_mosaic_sky",
    "score_outliers",
    "score_skymatch",
    "star_truth",
]

#: Product name of the mosaic (``field_coadd.asdf``...).
MOSAIC_NAME = "field"
#: Default read-out shape of each exposure: 4 exposures of this size ran end to end in
#: 4.4 minutes on 2 busy cores, 1.7 minutes of CPU (docs/mosaic.md).
MOSAIC_SHAPE = (2048, 2048)
#: Number of dithered exposures.
MOSAIC_DITHERS = 4
#: Dither step (arcsec east; 0.6 of it north): about 13.6 pixels, not a whole number.
MOSAIC_DITHER_STEP = 1.5
#: Sky of the set (e/s per pixel) and each exposure's offset from it (e/s per pixel).
MOSAIC_SKY = 1.0
MOSAIC_SKY_OFFSETS = (0.0, 0.2, 0.5, 0.3)
#: Recorded-minus-true pointing of every exposure: 1" east, 0.7" south, roll +1'.
MOSAIC_POINTING_ERROR = (1.0, -0.7, 1.0)
_JUMP_DET = int(pixel.JUMP_DET)
_OUTLIER = int(pixel.OUTLIER)
_DO_NOT_USE = int(pixel.DO_NOT_USE)
_STEP_OUTLIER = "outlier_detection"


# ---------------------------------------------------------------------- truth


def field_reference_catalog(truth_list: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Merge the members' reference catalogs into one catalog of the field.

    Each member of a set writes the Gaia-like catalog of the stars it sees, with its
    own draw of the catalog errors; the field's catalog keeps each star of the set
    (``truth["stars"]["id"]``) once, from the first member that lists it, with
    ``source_id`` set to the star's id in the set.

    Parameters
    ----------
    truth_list : sequence of mapping
        The members' truths (`romancal_lite.simulate.read_truth`, with
        ``refcat["path"]``).
    path : str or Path
        The ECSV file to write (atomically).

    Returns
    -------
    Path
        ``path``.
    """
    import os

    from astropy.table import Table, vstack

    tables = []
    for truth in truth_list:
        table = Table.read(truth["refcat"]["path"], format="ascii.ecsv")
        ids = np.asarray(truth["stars"]["id"], dtype=np.int64)
        table["source_id"] = ids[np.asarray(table["source_id"], dtype=np.int64)]
        tables.append(table)
    merged = vstack(tables, metadata_conflicts="silent")
    _, first = np.unique(np.asarray(merged["source_id"]), return_index=True)
    merged = merged[np.sort(first)]
    merged.meta = {"ref_epoch": tables[0].meta.get("ref_epoch"),
                   "description": "the set's stars (members' reference catalogs merged)"}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        merged.write(tmp, format="ascii.ecsv", overwrite=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def member_sky_mjysr(truth: Mapping[str, Any], conversion: float) -> float:
    """Return a member's true sky (MJy/sr): the median of its noise-free rate.

    Parameters
    ----------
    truth : mapping
        The member's truth (``rate`` in DN/s on the science array).
    conversion : float
        Its ``meta.photometry.conversion_megajanskys`` (MJy/sr per DN/s).

    Returns
    -------
    float
        The sky level (the stars cover a negligible fraction of the pixels).
    """
    return float(np.median(np.asarray(truth["rate"], np.float64))) * float(conversion)


def star_truth(
    truth_list: Sequence[Mapping[str, Any]],
    conversions: Sequence[float],
    pixel_areas: Sequence[float],
    *,
    early_saturation: int = 2,
) -> dict[str, np.ndarray]:
    """Return each star of a set once, with its true flux in MJy and its sky position.

    Parameters
    ----------
    truth_list : sequence of mapping
        The members' truths: ``stars`` (``id``, ``ra``, ``dec``, ``x``, ``y``,
        ``flux_dn``) and ``saturated_resultant``.
    conversions, pixel_areas : sequence of float
        Each member's ``meta.photometry`` ``conversion_megajanskys`` (MJy/sr per DN/s)
        and ``pixel_area`` (sr).
    early_saturation : int, optional
        A star whose central pixel saturates before this resultant in any member is
        marked ``saturated``.

    Returns
    -------
    dict
        ``id``, ``ra``, ``dec`` (deg), ``flux_mjy`` (the mean over the members that see
        the star of ``flux_dn x conversion x pixel_area``), ``saturated`` (bool),
        ``n_members`` (members whose science array holds the star's centre).
    """
    flux: dict[int, list[float]] = {}
    position: dict[int, tuple[float, float]] = {}
    saturated: dict[int, bool] = {}
    for truth, conversion, area in zip(truth_list, conversions, pixel_areas, strict=True):
        stars = truth["stars"]
        first_sat = np.asarray(truth["saturated_resultant"])
        ny, nx = first_sat.shape
        x, y = np.asarray(stars["x"], np.float64), np.asarray(stars["y"], np.float64)
        ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
        inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        for k in np.flatnonzero(inside):
            sid = int(stars["id"][k])
            flux.setdefault(sid, []).append(
                float(stars["flux_dn"][k]) * float(conversion) * float(area)
            )
            position[sid] = (float(stars["ra"][k]), float(stars["dec"][k]))
            sat = 0 <= int(first_sat[iy[k], ix[k]]) < early_saturation
            saturated[sid] = saturated.get(sid, False) or sat
    ids = np.array(sorted(flux), dtype=np.int64)
    return {
        "id": ids,
        "ra": np.array([position[i][0] for i in ids], np.float64),
        "dec": np.array([position[i][1] for i in ids], np.float64),
        "flux_mjy": np.array([np.mean(flux[i]) for i in ids], np.float64),
        "saturated": np.array([saturated[i] for i in ids], dtype=bool),
        "n_members": np.array([len(flux[i]) for i in ids], dtype=np.int64),
    }


# ---------------------------------------------------------------------- scores


def member_image_sky(cal: Any, truth: Mapping[str, Any]) -> float:
    """Return the sky a ``_cal`` image holds (MJy/sr), where the truth has only sky.

    The median of the image over the pixels whose true rate is at most the median true
    rate (no star light), finite and without DO_NOT_USE, times the conversion: what
    skymatch can see, so that its own error can be told from the inputs' calibration
    error (`member_sky_mjysr` is the truth).

    Parameters
    ----------
    cal : ImageModel
        The ``_cal`` image (DN/s).
    truth : mapping
        Its truth (``rate``).

    Returns
    -------
    float
        The image's sky level.
    """
    data = np.asarray(cal.data, np.float64)
    rate = np.asarray(truth["rate"], np.float64)
    good = np.isfinite(data) & ((np.asarray(cal.dq) & _DO_NOT_USE) == 0)
    good &= rate <= np.median(rate)
    conversion = float(cal.meta.photometry.conversion_megajanskys)
    return float(np.median(data[good])) * conversion


def score_skymatch(levels: Sequence[float], true_sky: Sequence[float],
                   image_sky: Sequence[float] | None = None) -> dict[str, Any]:
    """Compare skymatch's levels with the true sky of each input (both MJy/sr).

    Only differences are compared: ``match`` finds the levels up to a constant (it
    sets the lowest to 0 with ``match_down``).

    Parameters
    ----------
    levels : sequence of float
        ``meta.background.level`` of each input.
    true_sky : sequence of float
        `member_sky_mjysr` of each input.
    image_sky : sequence of float, optional
        `member_image_sky` of each input.

    Returns
    -------
    dict
        ``levels`` and ``true_offsets`` (each minus that of the first input),
        ``max_error`` (largest difference between the two), ``max_offset`` (largest
        true offset); with ``image_sky``: ``image_offsets`` and ``max_image_error``
        (skymatch against the images' own sky differences).
    """
    lv = np.asarray(levels, np.float64)
    sky = np.asarray(true_sky, np.float64)
    found = lv - lv[0]
    true = sky - sky[0]
    out: dict[str, Any] = {
        "levels": found.tolist(),
        "true_offsets": true.tolist(),
        "max_error": float(np.max(np.abs(found - true))),
        "max_offset": float(np.max(np.abs(true))),
    }
    if image_sky is not None:
        img = np.asarray(image_sky, np.float64)
        out["image_offsets"] = (img - img[0]).tolist()
        out["max_image_error"] = float(np.max(np.abs(found - (img - img[0]))))
    return out


def _near_star(rate: np.ndarray, err: np.ndarray, y: np.ndarray, x: np.ndarray,
               half: int = 3) -> np.ndarray:
    """Whether a true source brighter than 2 err lies within ``half`` pixels."""
    from scipy.ndimage import maximum_filter

    sky = float(np.median(rate))
    bright = maximum_filter(rate - sky - 2.0 * err, size=2 * half + 1, mode="nearest") > 0
    return bright[y, x]


def score_outliers(
    cal: Any,
    flagged_dq: np.ndarray,
    truth: Mapping[str, Any],
    *,
    n_sigma: float = 5.0,
    star_sigma: float = 20.0,
) -> dict[str, Any]:
    """Score outlier detection on one input against its simulated cosmic rays.

    A cosmic ray *reaches* the ``_cal`` image when its pixel's value exceeds the true
    rate by ``n_sigma`` errors (``(data - rate) / err``); the others were removed by the
    ramp fit's jump detection or hit before the first read. *Star pixels* are pixels
    whose true rate is ``star_sigma`` errors above the sky and that no cosmic ray hit.

    Parameters
    ----------
    cal : ImageModel
        The ``_cal`` image (DN/s), with its WCS.
    flagged_dq : numpy.ndarray
        The ``dq`` after outlier detection (OUTLIER = 128).
    truth : mapping
        The input's truth (``rate``, ``cosmic_rays`` in read-out pixels).
    n_sigma, star_sigma : float, optional
        Thresholds (above).

    Returns
    -------
    dict
        ``n_hits`` (science pixels hit), ``n_jump`` (of those flagged JUMP_DET in the
        ``_cal``), ``n_reached``, ``n_reached_flagged``, ``n_star_pixels``,
        ``n_star_flagged``, ``n_flagged`` (every OUTLIER pixel), ``n_flagged_truth``
        (those that are a hit or next to one), and ``reached_ra``, ``reached_dec``,
        ``reached_on_sky`` (bool: no true source within 3 pixels) of the cosmic rays
        that reached the image.
    """
    from romancal_lite.references._spec import BORDER as b

    data = np.asarray(cal.data, np.float64)
    err = np.asarray(cal.err, np.float64)
    dq = np.asarray(cal.dq)
    flagged = (np.asarray(flagged_dq) & _OUTLIER) != 0
    rate = np.asarray(truth["rate"], np.float64)
    ny, nx = rate.shape
    cr = truth["cosmic_rays"]
    y = np.asarray(cr["y"], np.int64) - b
    x = np.asarray(cr["x"], np.int64) - b
    keep = (y >= 0) & (y < ny) & (x >= 0) & (x < nx)
    hit = np.zeros(rate.shape, dtype=bool)
    hit[y[keep], x[keep]] = True
    hy, hx = np.nonzero(hit)
    with np.errstate(divide="ignore", invalid="ignore"):
        pull = (data[hy, hx] - rate[hy, hx]) / err[hy, hx]
    usable = (dq[hy, hx] & _DO_NOT_USE) == 0
    reached = usable & np.isfinite(pull) & (pull > n_sigma)
    from scipy.ndimage import binary_dilation

    near_hit = binary_dilation(hit, np.ones((3, 3), bool))
    median_err = float(np.median(err[err > 0])) if (err > 0).any() else 0.0
    star = (rate - np.median(rate) > star_sigma * median_err) & ~near_hit
    star &= (dq & _DO_NOT_USE) == 0
    ry, rx = hy[reached], hx[reached]
    ra, dec = cal.meta.wcs(rx.astype(np.float64), ry.astype(np.float64), with_bounding_box=False)
    return {
        "n_hits": int(hy.size),
        "n_jump": int(((dq[hy, hx] & _JUMP_DET) != 0).sum()),
        "n_reached": int(reached.sum()),
        "n_reached_flagged": int(flagged[ry, rx].sum()),
        "n_star_pixels": int(star.sum()),
        "n_star_flagged": int((flagged & star).sum()),
        "n_flagged": int(flagged.sum()),
        "n_flagged_truth": int((flagged & near_hit).sum()),
        "reached_ra": np.atleast_1d(np.asarray(ra, np.float64)),
        "reached_dec": np.atleast_1d(np.asarray(dec, np.float64)),
        "reached_on_sky": ~_near_star(rate, err, ry, rx),
    }


def _mosaic_pixels(mosaic: Any, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = mosaic.meta.wcs.invert(np.asarray(ra, np.float64), np.asarray(dec, np.float64),
                                  with_bounding_box=False)
    return np.atleast_1d(np.asarray(x, np.float64)), np.atleast_1d(np.asarray(y, np.float64))


def score_mosaic_sky(mosaic: Any, expected: float, *, n_sigma: float = 3.0) -> dict[str, float]:
    """Compare the mosaic's sky with the expected level (MJy/sr).

    The sky is the median of the covered pixels within ``n_sigma`` robust deviations
    of the median (stars and their wings excluded by the clipping).

    Parameters
    ----------
    mosaic : MosaicModel
        The ``_coadd`` mosaic.
    expected : float
        The true sky the mosaic should hold: with skymatch's ``match`` levels
        subtracted, the lowest input sky.

    Returns
    -------
    dict
        ``sky`` (measured), ``expected``, ``error`` (sky - expected), ``noise`` (the
        robust standard deviation of the sky pixels).
    """
    data = np.asarray(mosaic.data, np.float64)
    values = data[np.isfinite(data)]
    median = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - median)))
    for _ in range(3):
        kept = values[np.abs(values - median) <= n_sigma * sigma]
        median = float(np.median(kept))
        sigma = 1.4826 * float(np.median(np.abs(kept - median)))
    return {"sky": median, "expected": float(expected), "error": median - float(expected),
            "noise": sigma}


def score_mosaic_crs(
    mosaic: Any, ra: np.ndarray, dec: np.ndarray, sky: float, *, n_sigma: float = 5.0
) -> dict[str, int]:
    """Count the cosmic rays still visible in the mosaic.

    Each cosmic ray (its sky position) falls on a few mosaic pixels: it is *visible*
    when the largest of ``(data - sky) / err`` over the 3 x 3 mosaic pixels around it
    exceeds ``n_sigma``. Give only cosmic rays on empty sky (``reached_on_sky`` of
    `score_outliers`).

    Parameters
    ----------
    mosaic : MosaicModel
        The mosaic.
    ra, dec : numpy.ndarray
        The cosmic rays' sky positions (deg).
    sky : float
        The mosaic's sky (MJy/sr, `score_mosaic_sky`).
    n_sigma : float, optional
        Threshold.

    Returns
    -------
    dict
        ``n_tested`` (inside the mosaic), ``n_visible``.
    """
    from scipy.ndimage import maximum_filter

    data = np.asarray(mosaic.data, np.float64)
    err = np.asarray(mosaic.err, np.float64)
    ny, nx = data.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        pull = (data - float(sky)) / err
    pull[~np.isfinite(pull)] = -np.inf
    peak = maximum_filter(pull, size=3, mode="constant", cval=-np.inf)
    x, y = _mosaic_pixels(mosaic, ra, dec)
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    inside = (ix >= 1) & (ix < nx - 1) & (iy >= 1) & (iy < ny - 1)
    visible = peak[iy[inside], ix[inside]] > n_sigma
    return {"n_tested": int(inside.sum()), "n_visible": int(visible.sum())}


def _pixel_area_sr(mosaic: Any) -> float:
    scale_deg = float(mosaic.meta.wcsinfo["pixel_scale"])
    return math.radians(scale_deg) ** 2


def score_mosaic_photometry(
    mosaic: Any,
    stars: Mapping[str, np.ndarray],
    *,
    radius: float = 5.0,
    annulus: tuple[float, float] = (8.0, 12.0),
    isolation_arcsec: float = 1.5,
    min_flux_mjy: float = 0.0,
) -> dict[str, Any]:
    """Total flux of isolated stars in the mosaic over their true flux.

    For each star with no other star of the set within ``isolation_arcsec``, not
    saturated (`star_truth`), seen by every input, and whose aperture and annulus are
    fully covered: the sum of ``data - sky`` over the pixels whose centres are within
    ``radius`` mosaic pixels of the star (the sky is the median over the annulus),
    times the mosaic pixel's solid angle, over ``flux_mjy``. The radius holds the
    whole drizzled point-spread function (more than 8 sigma in F158).

    Parameters
    ----------
    mosaic : MosaicModel
        The mosaic (MJy/sr).
    stars : mapping
        `star_truth`.
    radius : float, optional
        Aperture radius (mosaic pixels).
    annulus : tuple of float, optional
        Sky annulus radii (mosaic pixels).
    isolation_arcsec : float, optional
        Isolation radius.
    min_flux_mjy : float, optional
        Faintest true flux used.

    Returns
    -------
    dict
        ``n_stars``, ``ratio_median``, ``ratio_scatter`` (1.4826 MAD), ``ratio_min``,
        ``ratio_max``, ``ratios`` (array).
    """
    from scipy.spatial import cKDTree

    data = np.asarray(mosaic.data, np.float64)
    ny, nx = data.shape
    ra, dec = np.asarray(stars["ra"]), np.asarray(stars["dec"])
    cos = math.cos(math.radians(float(np.mean(dec)))) if dec.size else 1.0
    xyz = np.column_stack([ra * cos * 3600.0, dec * 3600.0])
    isolated = np.ones(ra.size, dtype=bool)
    if ra.size > 1:
        pairs = cKDTree(xyz).query_pairs(isolation_arcsec, output_type="ndarray")
        isolated[pairs.ravel()] = False
    n_inputs = int(np.max(stars["n_members"])) if ra.size else 0
    use = isolated & ~np.asarray(stars["saturated"]) & (stars["n_members"] == n_inputs)
    use &= np.asarray(stars["flux_mjy"]) >= min_flux_mjy
    x, y = _mosaic_pixels(mosaic, ra, dec)
    outer = int(math.ceil(annulus[1])) + 1
    area = _pixel_area_sr(mosaic)
    ratios = []
    for k in np.flatnonzero(use):
        i, j = int(round(x[k])), int(round(y[k]))
        if not (outer <= i < nx - outer and outer <= j < ny - outer):
            continue
        box = data[j - outer : j + outer + 1, i - outer : i + outer + 1]
        gy, gx = np.mgrid[j - outer : j + outer + 1, i - outer : i + outer + 1]
        r = np.hypot(gx - x[k], gy - y[k])
        ring = (r >= annulus[0]) & (r <= annulus[1])
        aperture = r <= radius
        if not np.isfinite(box[ring | aperture]).all():
            continue
        sky = float(np.median(box[ring]))
        total = float(np.sum(box[aperture] - sky)) * area
        ratios.append(total / float(stars["flux_mjy"][k]))
    values = np.asarray(ratios, np.float64)
    median = float(np.median(values)) if values.size else math.nan
    return {
        "n_stars": int(values.size),
        "ratio_median": median,
        "ratio_scatter": float(1.4826 * np.median(np.abs(values - median)))
        if values.size else math.nan,
        "ratio_min": float(values.min()) if values.size else math.nan,
        "ratio_max": float(values.max()) if values.size else math.nan,
        "ratios": values,
    }


def score_mosaic_astrometry(
    table: Any,
    stars: Mapping[str, np.ndarray],
    *,
    match_arcsec: float = 0.5,
    min_flux_mjy: float = 0.0,
    isolation_arcsec: float = 1.5,
) -> dict[str, Any]:
    """Sky positions of the mosaic catalog's sources against the true star positions.

    Each isolated, unsaturated true star with at least ``min_flux_mjy`` is matched to
    the nearest catalog source (``ra_centroid``, ``dec_centroid``: the centroid through
    the mosaic's WCS) within ``match_arcsec``.

    Parameters
    ----------
    table : astropy.table.Table
        The mosaic's ``_cat.parquet``.
    stars : mapping
        `star_truth`.
    match_arcsec, min_flux_mjy, isolation_arcsec : float, optional
        Matching radius, faintest star, isolation radius.

    Returns
    -------
    dict
        ``n_matched``, ``n_tested``, ``median_mas``, ``max_mas``, ``mean_dra_mas``,
        ``mean_ddec_mas`` (mean offset, catalog minus truth: a WCS error shows as a
        common offset).
    """
    from scipy.spatial import cKDTree

    ra, dec = np.asarray(stars["ra"], np.float64), np.asarray(stars["dec"], np.float64)
    cra = np.asarray(np.ma.filled(np.ma.asarray(table["ra_centroid"], np.float64), np.nan))
    cdec = np.asarray(np.ma.filled(np.ma.asarray(table["dec_centroid"], np.float64), np.nan))
    ok = np.isfinite(cra) & np.isfinite(cdec)
    cra, cdec = cra[ok], cdec[ok]
    cos = math.cos(math.radians(float(np.mean(dec)))) if dec.size else 1.0
    truth_xy = np.column_stack([ra * cos * 3600.0, dec * 3600.0])
    isolated = np.ones(ra.size, dtype=bool)
    if ra.size > 1:
        pairs = cKDTree(truth_xy).query_pairs(isolation_arcsec, output_type="ndarray")
        isolated[pairs.ravel()] = False
    use = isolated & ~np.asarray(stars["saturated"]) & (stars["flux_mjy"] >= min_flux_mjy)
    out: dict[str, Any] = {"n_tested": int(use.sum()), "n_matched": 0, "median_mas": math.nan,
                           "max_mas": math.nan, "mean_dra_mas": math.nan,
                           "mean_ddec_mas": math.nan}
    if not use.any() or not cra.size:
        return out
    dist, nearest = cKDTree(np.column_stack([cra * cos * 3600.0, cdec * 3600.0])).query(
        truth_xy[use]
    )
    found = dist <= match_arcsec
    if not found.any():
        return out
    src = nearest[found]
    tra, tdec = ra[use][found], dec[use][found]
    sep = _separation_mas(cra[src], cdec[src], tra, tdec)
    dra = ((cra[src] - tra + 180.0) % 360.0 - 180.0) * cos * 3.6e6
    ddec = (cdec[src] - tdec) * 3.6e6
    out.update(n_matched=int(found.sum()), median_mas=float(np.median(sep)),
               max_mas=float(np.max(sep)), mean_dra_mas=float(np.mean(dra)),
               mean_ddec_mas=float(np.mean(ddec)))
    return out


def format_mosaic_scores(figures: Mapping[str, Any]) -> list[str]:
    """Return the printed lines of the mosaic demo's scores.

    Parameters
    ----------
    figures : mapping
        ``skymatch`` (`score_skymatch`), ``outliers`` (list of `score_outliers`),
        ``mosaic_crs`` and ``mosaic_crs_off`` (`score_mosaic_crs` with the flags and
        without them, or None), ``sky`` (`score_mosaic_sky`), ``photometry``
        (`score_mosaic_photometry`), ``astrometry`` (`score_mosaic_astrometry`),
        ``conversion`` (MJy/sr per DN/s), ``sky_offsets`` (injected, e/s).

    Returns
    -------
    list of str
        Lines to print.
    """
    sm = figures["skymatch"]
    pairs = ", ".join(
        f"{found:+.4f} ({true:+.4f})"
        for found, true in zip(sm["levels"][1:], sm["true_offsets"][1:], strict=True)
    )
    injected = ", ".join(f"{v:+g}" for v in figures["sky_offsets"][1:])
    lines = [
        f"skymatch: levels minus the first input's {pairs} MJy/sr (true, from the injected"
        f" {injected} e/s); largest error {sm['max_error']:.4f} MJy/sr"
        + (f", {sm['max_image_error']:.4f} against the _cal images' own sky differences"
           if "max_image_error" in sm else ""),
    ]
    od = figures["outliers"]
    total = {k: sum(o[k] for o in od) for k in (
        "n_hits", "n_jump", "n_reached", "n_reached_flagged", "n_star_pixels",
        "n_star_flagged", "n_flagged", "n_flagged_truth")}

    def pct(a: int, b: int) -> str:
        return f"{a / b:.1%}" if b else "-"

    crs = figures.get("mosaic_crs") or {}
    lines.append(
        f"cosmic rays: {total['n_hits']} pixels hit in {len(od)} inputs, {total['n_jump']}"
        f" flagged JUMP_DET by ramp_fit, {total['n_reached']} reach the _cal images"
        f" (> 5 sigma); outlier_detection flags {total['n_reached_flagged']} of them"
        f" ({pct(total['n_reached_flagged'], total['n_reached'])}); in the mosaic"
        f" {crs.get('n_visible', 0)} of {crs.get('n_tested', 0)} on empty sky still"
        " show (> 5 sigma)"
        + (f" (without the flags: {figures['mosaic_crs_off']['n_visible']})"
           if figures.get("mosaic_crs_off") else "")
    )
    lines.append(
        f"outlier_detection: {total['n_flagged']} pixels flagged, of which"
        f" {total['n_flagged_truth']} on or next to a cosmic ray; star pixels flagged"
        f" {total['n_star_flagged']} of {total['n_star_pixels']}"
        f" ({pct(total['n_star_flagged'], total['n_star_pixels'])})"
    )
    sky = figures["sky"]
    lines.append(
        f"mosaic sky: {sky['sky']:.4f} MJy/sr, expected {sky['expected']:.4f} (the lowest"
        f" input sky), error {sky['error']:+.4f} (pixel noise {sky['noise']:.4f})"
    )
    for key, label in (("photometry", "ivm-median weights, the default"),
                       ("photometry_ivm", "weight_type=ivm, romancal's default")):
        ph = figures.get(key)
        if not ph:
            continue
        lines.append(
            f"mosaic photometry ({label}): total flux / true flux median"
            f" {ph['ratio_median']:.4f}, scatter {ph['ratio_scatter']:.4f}, range"
            f" {ph['ratio_min']:.3f}-{ph['ratio_max']:.3f} ({ph['n_stars']} bright isolated"
            " stars)"
        )
    ast = figures["astrometry"]
    lines.append(
        f"mosaic astrometry: catalog centroids vs true positions median"
        f" {ast['median_mas']:.1f} mas, max {ast['max_mas']:.1f} mas, mean offset"
        f" {ast['mean_dra_mas']:+.1f} mas E {ast['mean_ddec_mas']:+.1f} mas N"
        f" ({ast['n_matched']} of {ast['n_tested']} bright isolated stars)"
    )
    return lines


# ---------------------------------------------------------------------- the run


def check_mosaic_options(shape: Sequence[int], dithers: int) -> tuple[int, int]:
    """Check the mosaic demo's shape and number of dithers.

    Parameters
    ----------
    shape : sequence of int
        Read-out shape ``(ny, nx)``: ``ny`` from 64 to 4096, ``nx`` a multiple of the
        128-column amplifier up to 4096.
    dithers : int
        Number of exposures, 2 to 8.

    Returns
    -------
    tuple of int
        The shape.

    Raises
    ------
    ValueError
        Naming the bad value.
    """
    ny, nx = (int(v) for v in shape)
    if isinstance(dithers, bool) or int(dithers) != dithers or not 2 <= dithers <= 8:
        raise ValueError(f"dithers must be an integer from 2 to 8, got {dithers!r}")
    if nx % 128 or not 64 <= ny <= 4096 or not 128 <= nx <= 4096:
        raise ValueError(
            f"shape must be NY in 64..4096 and NX a multiple of 128 (the amplifier width)"
            f" up to 4096, got {ny} {nx}"
        )
    return ny, nx


def run_mosaic_demo(
    output_dir: str | Path = "romancal_lite_mosaic_demo",
    *,
    shape: tuple[int, int] = MOSAIC_SHAPE,
    dithers: int = MOSAIC_DITHERS,
    seed: int = 42,
    ramp_jumps: bool = False,
    read_pattern: str | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Simulate a dither set (once), calibrate it, combine it, preview and score it.

    Parameters
    ----------
    output_dir : str or Path, optional
        Where the files go (created if needed).
    shape : tuple of int, optional
        Full read-out shape of each exposure (columns a multiple of 128).
    dithers : int, optional
        Number of exposures (2 to 8; their sky offsets cycle through
        `MOSAIC_SKY_OFFSETS`).
    seed : int, optional
        Seed of the set.
    ramp_jumps : bool, optional
        Keep roman_elp's in-ramp jump detection (default off: the cosmic rays reach the
        ``_cal`` images, for outlier_detection).
    read_pattern : str, optional
        Named read pattern (default the simulator's).
    log : callable, optional
        Receives one progress line at a time.

    Returns
    -------
    dict
        Paths (``uncal``: list, ``cal``: list, ``asn``, ``coadd``, ``cat``, ``png``),
        timings (``simulate_s``, ``calibrate_s``, ``mosaic_s``, ``score_s``) and the
        figures of `format_mosaic_scores`.
    """
    from romancal_lite import references, simulate
    from romancal_lite.references._spec import FULL_SHAPE

    shape = check_mosaic_options(shape, dithers)
    read_pattern = read_pattern or simulate.DEFAULT_READ_PATTERN
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    args = (out, shape, int(dithers), int(seed), bool(ramp_jumps), read_pattern, log)
    if shape == FULL_SHAPE or references.user_configured():
        return _run(*args)
    cache_dir = out / f".crds_{shape[0]}x{shape[1]}"
    log(f"built-in references for a {shape[0]} x {shape[1]} detector in {cache_dir}")
    with references.builtin_cache(references.generate_cache(cache_dir, full_shape=shape)):
        return _run(*args)


def _simulate(out: Path, shape: tuple[int, int], dithers: int, seed: int, read_pattern: str,
              log: Any) -> list[Path]:
    from romancal_lite import simulate

    n_stars = _demo_n_stars(shape)
    offsets = [MOSAIC_SKY_OFFSETS[k % len(MOSAIC_SKY_OFFSETS)] for k in range(dithers)]
    tag = (f"{shape[0]}x{shape[1]}_{read_pattern}_s{seed}_n{n_stars}_d{dithers}"
           f"x{MOSAIC_DITHER_STEP}_sky{MOSAIC_SKY}{offsets}_pe{MOSAIC_POINTING_ERROR}")
    stamp = out / ".mosaic_demo_input"
    from romancal_lite.simulate.sets import member_path

    files = [member_path(out, k + 1, "WFI01") for k in range(dithers)]
    if stamp.exists() and stamp.read_text() == tag and all(f.exists() for f in files):
        log(f"reusing the simulated set in {out}")
        return files
    stamp.unlink(missing_ok=True)
    log(
        f"simulating {dithers} dithered {shape[0]} x {shape[1]} exposures ({read_pattern},"
        f" {n_stars} stars, dither step {MOSAIC_DITHER_STEP}\", sky offsets"
        f" {', '.join(f'{v:g}' for v in offsets)} e/s, pointing error"
        f" {MOSAIC_POINTING_ERROR[0]:g}\" E, {MOSAIC_POINTING_ERROR[1]:g}\" N, roll"
        f" {MOSAIC_POINTING_ERROR[2]:g}')"
    )
    result = simulate.simulate_set(
        out, detectors="WFI01", dithers=dithers, dither_step=MOSAIC_DITHER_STEP,
        sky=MOSAIC_SKY, sky_offsets=offsets, shape=shape, n_stars=n_stars, seed=seed,
        read_pattern=read_pattern, pointing_error=MOSAIC_POINTING_ERROR,
    )
    stamp.write_text(tag)
    return list(result.files)


def _run(out: Path, shape: tuple[int, int], dithers: int, seed: int, ramp_jumps: bool,
         read_pattern: str, log: Any) -> dict[str, Any]:
    from astropy.table import Table

    from romancal_lite import datamodels, preview, simulate
    from romancal_lite.associations import asn_from_list, write_asn
    from romancal_lite.pipeline import ExposurePipeline, MosaicPipeline
    from romancal_lite.steps.resample import ResampleStep
    from romancal_lite.stpipe.naming import make_output_name

    t0 = time.perf_counter()
    uncal = _simulate(out, shape, dithers, seed, read_pattern, log)
    truths = [simulate.read_truth(f) for f in uncal]
    refcat = field_reference_catalog(truths, out / f"{MOSAIC_NAME}_refcat.ecsv")
    t1 = time.perf_counter()
    log(
        f"calibrating {len(uncal)} exposures with roman_elp (in-ramp jump detection"
        f" {'on' if ramp_jumps else 'off'}), aligned together to {refcat.name}"
    )
    steps: dict[str, dict[str, Any]] = {"tweakreg": {"abs_refcat": str(refcat)}}
    if not ramp_jumps:
        steps["ramp_fit"] = {"use_ramp_jump_detection": False}
    ExposurePipeline.call([str(f) for f in uncal], output_dir=str(out), save_results=True,
                          steps=steps)
    cal = [f.with_name(f.name.replace("_uncal.asdf", "_cal.asdf")) for f in uncal]
    t2 = time.perf_counter()
    asn = out / f"{MOSAIC_NAME}_asn.json"
    write_asn(asn_from_list(cal, MOSAIC_NAME, relative_to=out), asn)
    log(f"combining with roman_mos: {asn.name} -> {MOSAIC_NAME}_coadd.asdf")
    MosaicPipeline.call(str(asn), output_dir=str(out), save_results=True,
                        steps={_STEP_OUTLIER: {"save_results": True}})
    t3 = time.perf_counter()
    coadd = out / f"{MOSAIC_NAME}_coadd.asdf"
    cat = out / f"{MOSAIC_NAME}_cat.parquet"
    png = out / f"{MOSAIC_NAME}_coadd.png"
    flagged = [out / make_output_name(p.name, _STEP_OUTLIER) for p in cal]
    outliers, levels, true_sky, image_sky, conversions, areas, fits = [], [], [], [], [], [], []
    cr_ra, cr_dec = [], []
    for path, flagged_path, truth in zip(cal, flagged, truths, strict=True):
        with datamodels.open(path) as image, datamodels.open(flagged_path) as after:
            conversion = float(image.meta.photometry.conversion_megajanskys)
            conversions.append(conversion)
            areas.append(float(image.meta.photometry.pixel_area))
            background = after.meta.get("background") or {}  # none: skymatch skipped
            levels.append(float(background.get("level", 0.0)))
            true_sky.append(member_sky_mjysr(truth, conversion))
            image_sky.append(member_image_sky(image, truth))
            fit = image.meta.get("wcs_fit_results")
            fits.append(dict(fit) if fit is not None else {})
            result = score_outliers(image, np.asarray(after.dq), truth)
        on_sky = result.pop("reached_on_sky")
        cr_ra.append(result.pop("reached_ra")[on_sky])
        cr_dec.append(result.pop("reached_dec")[on_sky])
        outliers.append(result)
    stars = star_truth(truths, conversions, areas)
    table = Table.read(cat)
    bright = float(np.percentile(stars["flux_mjy"], 50)) if stars["id"].size else 0.0
    with datamodels.open(coadd) as mosaic:
        preview.write_png(mosaic.data, png)
        sky = score_mosaic_sky(mosaic, min(true_sky))
        crs = score_mosaic_crs(mosaic, np.concatenate(cr_ra), np.concatenate(cr_dec),
                               sky["sky"])
        photometry = score_mosaic_photometry(mosaic, stars, min_flux_mjy=bright)
        astrometry = score_mosaic_astrometry(table, stars, min_flux_mjy=bright)
    # the same inputs (flagged, sky levels measured) resampled with romancal's
    # per-pixel inverse-variance weights: the read-noise variance of a ramp fit grows
    # with the signal, so they favour the input where a star is faintest
    log("resampling the flagged inputs again with weight_type=ivm (romancal's default)")
    with ResampleStep.call([str(f) for f in flagged], weight_type="ivm") as mosaic:
        photometry_ivm = score_mosaic_photometry(mosaic, stars, min_flux_mjy=bright)
    figures: dict[str, Any] = {
        "skymatch": score_skymatch(levels, true_sky, image_sky),
        "outliers": outliers,
        "mosaic_crs": crs,
        "sky": sky,
        "photometry": photometry,
        "photometry_ivm": photometry_ivm,
        "astrometry": astrometry,
        "conversion": conversions[0],
        "sky_offsets": [MOSAIC_SKY_OFFSETS[k % len(MOSAIC_SKY_OFFSETS)]
                        for k in range(dithers)],
        "fit": fits[0],
    }
    t4 = time.perf_counter()
    log(f"wrote {coadd}, {cat} and {png}")
    fit = fits[0]
    log(f"tweakreg {fit.get('status', 'not run')}: {fit.get('nmatches', 0)} matches, rms"
        f" {1000 * float(fit.get('rmse', math.nan)):.1f} mas")
    for line in format_mosaic_scores(figures):
        log(line)
    return {
        "uncal": uncal, "cal": cal, "asn": asn, "coadd": coadd, "cat": cat, "png": png,
        "refcat": refcat, "simulate_s": t1 - t0, "calibrate_s": t2 - t1,
        "mosaic_s": t3 - t2, "score_s": t4 - t3, **figures,
    }
