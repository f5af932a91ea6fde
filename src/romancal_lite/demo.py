"""The built-in demo: simulate a Roman exposure, calibrate and align it, score it.

``romancal_lite demo`` (README's main command) writes into ``--output-dir``
(default ``romancal_lite_demo``):

* ``<name>_uncal.asdf``: a simulated Level 1 exposure with its truth
  (`romancal_lite.simulate`), made once and reused; its pointing (``meta.wcsinfo``)
  is wrong by `DEMO_POINTING_ERROR` and its stars move (`DEMO_PROPER_MOTION`,
  `DEMO_PARALLAX`);
* ``<name>_refcat.ecsv``: the simulator's Gaia-like reference catalog (epoch 2016.0);
* ``<name>_cal.asdf``, ``<name>_cat.parquet``, ``<name>_segm.asdf``, ``<name>_wcs.asdf``:
  the ``roman_elp`` products, with ``tweakreg`` aligning the WCS to the reference
  catalog (``--steps.tweakreg.abs_refcat``);
* ``<name>_cal.png``: a preview of the calibrated image;

and prints how well the products recover the simulated truth: the image (`score`), the
source catalog (`score_catalog`) and the WCS before and after the alignment
(`score_astrometry`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "COMPLETENESS_MAG_BINS",
    "DEMO_MIN_STARS",
    "DEMO_NAME",
    "DEMO_PARALLAX",
    "DEMO_POINTING_ERROR",
    "DEMO_PROPER_MOTION",
    "PHOTOMETRY_APERTURE",
    "format_scores",
    "run_demo",
    "score",
    "score_astrometry",
    "score_catalog",
    "uncorrected_wcs",
]

#: Basename of the demo exposure (an official-style exposure file name).
DEMO_NAME = "r0000101001001001001_0001_wfi01"
#: Pointing error of the demo exposure: 3" east, 2" south, roll +3' (``pointing_error``).
DEMO_POINTING_ERROR = (3.0, -2.0, 3.0)
#: RMS proper motion per axis (mas/yr) of the demo's stars: ~50 mas in 10 years.
DEMO_PROPER_MOTION = 5.0
#: Mean parallax (mas) of the demo's stars.
DEMO_PARALLAX = 0.5
#: The demo simulates at least this many stars, so that a small frame still has a few
#: dozen reference stars to align on (a full frame has the simulator's 1500).
DEMO_MIN_STARS = 150
#: Magnitude bins (AB, the truth's ``stars.mag``) of the completeness.
COMPLETENESS_MAG_BINS = (13.0, 20.0, 21.0, 22.0, 23.0, 25.0)
#: Catalog column of the photometric score: the 0.4" radius aperture (3.6 pixels, 6
#: PSF sigmas in F158: the encircled energy of the simulated Gaussian is 1 - 1e-7).
PHOTOMETRY_APERTURE = ("aper04_flux", 0.4)


def score(image: Any, truth: dict[str, Any]) -> dict[str, float]:
    """Compare a calibrated image with the simulator's truth.

    Parameters
    ----------
    image : ImageModel
        The ``_cal`` image (DN/s, science array).
    truth : dict
        From `romancal_lite.simulate.read_truth`: ``rate`` (DN/s, science array),
        ``dq`` (per-resultant flags of the full read-out, JUMP_DET where a cosmic ray
        hit) and ``saturated_resultant`` (first saturated resultant or -1, science
        array).

    Returns
    -------
    dict
        ``sky_pull_median`` and ``sky_pull_std`` (``(data - rate) / err`` over
        unflagged sky pixels), ``cr_found`` (fraction of science pixels hit by a cosmic
        ray that carry JUMP_DET, among those not saturated), ``jump_false`` (fraction
        of pixels without a hit flagged JUMP_DET), ``saturated_flagged`` (fraction of
        truly saturated pixels flagged SATURATED).
    """
    from romancal_lite.references._spec import BORDER as b
    from romancore.dqflags import pixel

    data = np.asarray(image.data, np.float64)
    err = np.asarray(image.err, np.float64)
    dq = np.asarray(image.dq)
    rate = np.asarray(truth["rate"], np.float64)
    hits = (np.asarray(truth["dq"]) & pixel.JUMP_DET).any(axis=0)[b:-b, b:-b]
    first_sat = np.asarray(truth["saturated_resultant"])
    sat = first_sat >= 0
    jump = (dq & pixel.JUMP_DET) != 0
    bad = (dq & (pixel.DO_NOT_USE | pixel.SATURATED)) != 0
    sky = ~bad & ~hits & ~jump & ~sat & (rate <= np.percentile(rate, 50)) & (err > 0)
    pull = (data[sky] - rate[sky]) / err[sky]
    usable_hits = hits & ~sat
    return {
        "sky_pull_median": float(np.median(pull)) if pull.size else float("nan"),
        "sky_pull_std": float(np.std(pull)) if pull.size else float("nan"),
        "cr_found": float(jump[usable_hits].mean()) if usable_hits.any() else float("nan"),
        "jump_false": float(jump[~hits & ~sat].mean()),
        "saturated_flagged": float(((dq[sat] & pixel.SATURATED) != 0).mean())
        if sat.any()
        else float("nan"),
    }


# ---------------------------------------------------------------------- catalog


def _column(table: Any, name: str) -> tuple[np.ndarray, str]:
    """Return a column's values (float) and its unit as a string ('' without one)."""
    col = table[name]
    unit = getattr(col, "unit", None)
    values = np.ma.filled(np.ma.asarray(col, dtype=np.float64), np.nan)
    return np.asarray(values), "" if unit is None else str(unit)


def _true_flux(truth: Mapping[str, Any], unit: str, photometry: Mapping[str, Any] | None):
    """Return the stars' true total flux in ``unit`` (nJy, or DN/s without photom)."""
    flux_dn = np.asarray(truth["stars"]["flux_dn"], np.float64)
    compact = unit.replace(" ", "")
    if compact in ("DN/s", "DN/s/pix", ""):
        return flux_dn
    if compact != "nJy":
        raise ValueError(f"catalog flux unit {unit!r}: expected nJy or DN/s")
    photometry = photometry or {}
    conversion = photometry.get("conversion_megajanskys")
    area = photometry.get("pixel_area")
    if conversion is None or area is None:
        raise ValueError(
            "catalog fluxes are in nJy: the image's meta.photometry conversion_megajanskys"
            " and pixel_area are needed"
        )
    conversion = float(getattr(conversion, "value", conversion))  # MJy/sr per DN/s
    area = float(getattr(area, "value", area))  # sr
    return flux_dn * conversion * area * 1.0e15  # MJy -> nJy


def score_catalog(
    table: Any,
    truth: Mapping[str, Any],
    photometry: Mapping[str, Any] | None = None,
    *,
    match_radius: float = 1.0,
    isolation: float = 8.0,
    min_snr_flux_dn: float = 50.0,
    mag_bins: Sequence[float] = COMPLETENESS_MAG_BINS,
    aperture: tuple[str, float] = PHOTOMETRY_APERTURE,
    pixel_scale: float = 0.11,
) -> dict[str, Any]:
    """Compare a source catalog with the simulated stars.

    A true star is *found* when a catalog source's isophotal centroid (``x_centroid,
    y_centroid``) is within ``match_radius`` pixels of its true position. The flux
    ratio is the aperture flux over the true flux times the encircled energy of the
    simulated PSF (a Gaussian of ``truth["parameters"]["psf_sigma"]`` convolved with the
    pixel, variance ``s^2 + 1/12``) in that aperture, for *well-measured* stars: found,
    no other star within ``isolation`` pixels, at least ``isolation`` pixels from the
    edges, not saturated before the third resultant in their central pixel, ``warning_flags``
    0, and a true flux of at least ``min_snr_flux_dn`` DN/s.

    Parameters
    ----------
    table : astropy.table.Table
        The ``_cat.parquet`` catalog (``x_centroid``, ``y_centroid``, the aperture flux
        column with its unit, ``warning_flags``).
    truth : mapping
        From `romancal_lite.simulate.read_truth` (``stars``, ``saturated_resultant``,
        ``parameters.psf_sigma``).
    photometry : mapping, optional
        The image's ``meta.photometry`` (``conversion_megajanskys`` in MJy/sr per DN/s,
        ``pixel_area`` in sr); needed when the fluxes are in nJy.
    match_radius : float, optional
        Match radius (pixels).
    isolation : float, optional
        Isolation and edge distance (pixels) of the photometry sample.
    min_snr_flux_dn : float, optional
        Faintest true flux (DN/s) of the photometry sample.
    mag_bins : sequence of float, optional
        Edges of the completeness bins in the truth's AB magnitude.
    aperture : tuple of (str, float), optional
        Flux column and its radius (arcsec).
    pixel_scale : float, optional
        Arcsec per pixel (for the aperture radius).

    Returns
    -------
    dict
        ``n_true``, ``n_sources``, ``n_found``, ``n_spurious`` (sources matching no
        star), ``completeness``: a list of ``(mag_lo, mag_hi, n_true, n_found)``,
        ``completeness_isolated``: the same for the stars without a neighbour within
        ``isolation`` pixels (blends are not deblended by default),
        ``flux_ratio_median``, ``flux_ratio_scatter`` (1.4826 MAD), ``n_photometry``
        and ``flux_column``.
    """
    from scipy.spatial import cKDTree

    stars = truth["stars"]
    sx, sy = np.asarray(stars["x"], np.float64), np.asarray(stars["y"], np.float64)
    mag = np.asarray(stars["mag"], np.float64)
    n_true = sx.size
    x, _ = _column(table, "x_centroid")
    y, _ = _column(table, "y_centroid")
    ok = np.isfinite(x) & np.isfinite(y)
    src = np.flatnonzero(ok)
    found = np.zeros(n_true, dtype=bool)
    match = np.full(n_true, -1)
    matched_sources = np.zeros(len(x), dtype=bool)
    if n_true and src.size:
        dist, nearest = cKDTree(np.column_stack([x[src], y[src]])).query(
            np.column_stack([sx, sy])
        )
        found = dist <= match_radius
        match[found] = src[nearest[found]]
        matched_sources[match[found]] = True
    ny, nx = np.asarray(truth["saturated_resultant"]).shape
    isolated = np.ones(n_true, dtype=bool)
    if n_true > 1:
        tree = cKDTree(np.column_stack([sx, sy]))
        pairs = tree.query_pairs(isolation, output_type="ndarray")
        isolated[pairs.ravel()] = False
    edges = list(mag_bins)
    completeness, completeness_isolated = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (mag >= lo) & (mag < hi)
        completeness.append((float(lo), float(hi), int(sel.sum()), int(found[sel].sum())))
        sel &= isolated
        completeness_isolated.append(
            (float(lo), float(hi), int(sel.sum()), int(found[sel].sum()))
        )

    column, radius_arcsec = aperture
    flux, unit = _column(table, column)
    true_flux = _true_flux(truth, unit, photometry)
    sigma = float(truth["parameters"]["psf_sigma"])
    radius = radius_arcsec / pixel_scale
    ee = 1.0 - math.exp(-(radius**2) / (2.0 * (sigma**2 + 1.0 / 12.0)))
    inside = (
        (sx >= isolation) & (sx <= nx - 1 - isolation)
        & (sy >= isolation) & (sy <= ny - 1 - isolation)
    )
    ix = np.clip(np.rint(sx).astype(int), 0, nx - 1)
    iy = np.clip(np.rint(sy).astype(int), 0, ny - 1)
    first_sat = np.asarray(truth["saturated_resultant"])[iy, ix] if n_true else np.array([])
    unsaturated = (first_sat < 0) | (first_sat >= 2)
    flags = np.zeros(len(x), dtype=np.int64)
    if "warning_flags" in table.colnames:
        flags = np.asarray(table["warning_flags"], dtype=np.int64)
    good = found & isolated & inside & unsaturated
    good &= np.asarray(stars["flux_dn"], np.float64) >= min_snr_flux_dn
    good[good] &= flags[match[good]] == 0
    ratio = flux[match[good]] / (true_flux[good] * ee) if good.any() else np.array([])
    ratio = ratio[np.isfinite(ratio)]
    median = float(np.median(ratio)) if ratio.size else float("nan")
    scatter = float(1.4826 * np.median(np.abs(ratio - median))) if ratio.size else float("nan")
    return {
        "n_true": int(n_true),
        "n_sources": int(len(x)),
        "n_found": int(found.sum()),
        "n_spurious": int((ok & ~matched_sources).sum()),
        "completeness": completeness,
        "completeness_isolated": completeness_isolated,
        "flux_ratio_median": median,
        "flux_ratio_scatter": scatter,
        "n_photometry": int(ratio.size),
        "flux_column": column,
    }


# ---------------------------------------------------------------------- astrometry


def uncorrected_wcs(image: Any, wcsinfo: Mapping[str, Any]) -> Any:
    """Rebuild the WCS ``assign_wcs`` gave an image, before any alignment.

    Parameters
    ----------
    image : ImageModel
        An image with ``meta.wcs`` (whose first transform, detector -> V2/V3, is the
        DISTORTION reference's; tweakreg inserts its correction after it).
    wcsinfo : mapping
        The pointing ``assign_wcs`` used: ``ra_ref``, ``dec_ref``, ``roll_ref``,
        ``v2_ref``, ``v3_ref`` (e.g. the ``_uncal`` file's ``meta.wcsinfo``).

    Returns
    -------
    gwcs.WCS
        ``build_wcs(distortion, pointing_from_wcsinfo(wcsinfo), shape, va_scale)``.
    """
    from romancal_lite.steps.assign_wcs import build_wcs, pointing_from_wcsinfo

    distortion = copy.deepcopy(image.meta.wcs.pipeline[0].transform)
    va = image.meta.get("velocity_aberration", {}).get("scale_factor")
    return build_wcs(distortion, pointing_from_wcsinfo(wcsinfo), image.data.shape, va_scale=va)


def _separation_mas(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle separation (mas), haversine formula."""
    r1, d1, r2, d2 = (np.radians(np.asarray(v, np.float64)) for v in (ra1, dec1, ra2, dec2))
    h = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1)))) * 3.6e6


def score_astrometry(wcs_before: Any, wcs_after: Any, truth: Mapping[str, Any]) -> dict:
    """Sky error of a WCS before and after alignment, at the simulated stars.

    Each WCS is evaluated at the stars' true pixel positions (``truth["stars"]["x"],
    ["y"]``) and compared with their true sky positions at the exposure epoch
    (``["ra"], ["dec"]``): this is the error of the WCS alone, not of the centroids.

    Parameters
    ----------
    wcs_before, wcs_after : gwcs.WCS or None
        The WCSs (None: that half is NaN).
    truth : mapping
        From `romancal_lite.simulate.read_truth`.

    Returns
    -------
    dict
        ``before_median_mas``, ``before_max_mas``, ``after_median_mas``,
        ``after_max_mas``, ``n_stars``.
    """
    stars = truth["stars"]
    x, y = np.asarray(stars["x"], np.float64), np.asarray(stars["y"], np.float64)
    out: dict[str, Any] = {"n_stars": int(x.size)}
    for key, wcs in (("before", wcs_before), ("after", wcs_after)):
        if wcs is None or not x.size:
            out[f"{key}_median_mas"] = out[f"{key}_max_mas"] = float("nan")
            continue
        ra, dec = wcs(x, y, with_bounding_box=False)
        sep = _separation_mas(ra, dec, stars["ra"], stars["dec"])
        out[f"{key}_median_mas"] = float(np.median(sep))
        out[f"{key}_max_mas"] = float(np.max(sep))
    return out


def format_scores(figures: Mapping[str, Any]) -> list[str]:
    """Return the demo's printed lines for the catalog and astrometry scores.

    Parameters
    ----------
    figures : mapping
        `score_catalog` and `score_astrometry` results merged, plus ``fit`` (the
        ``wcs_fit_results`` or None).

    Returns
    -------
    list of str
        Lines to print.
    """
    def fraction(found: int, n: int) -> str:
        return f"{found / n:.0%}" if n else "-"

    bins = ", ".join(
        f"{lo:g}-{hi:g} mag {fraction(found, n)} ({found}/{n}; isolated"
        f" {fraction(found_i, n_i)})"
        for (lo, hi, n, found), (_, _, n_i, found_i) in zip(
            figures["completeness"], figures["completeness_isolated"], strict=True
        )
    )
    lines = [
        f"catalog: {figures['n_sources']} sources, {figures['n_found']} of"
        f" {figures['n_true']} stars found ({figures['n_spurious']} unmatched sources);"
        f" completeness {bins}",
        f"photometry: {figures['flux_column']} / true flux median"
        f" {figures['flux_ratio_median']:.4f}, scatter {figures['flux_ratio_scatter']:.4f}"
        f" ({figures['n_photometry']} isolated unsaturated stars)",
    ]
    fit = figures.get("fit") or {}
    fit_text = (
        f"tweakreg {fit.get('status', '?')}: {fit.get('nmatches', 0)} matches,"
        f" rms {1000 * float(fit.get('rmse', math.nan)):.1f} mas"
        if fit
        else "tweakreg did not fit"
    )
    lines.append(
        f"astrometry (WCS at the {figures['n_stars']} true star positions): before tweakreg"
        f" median {figures['before_median_mas']:.0f} mas, max {figures['before_max_mas']:.0f}"
        f" mas; after median {figures['after_median_mas']:.2f} mas, max"
        f" {figures['after_max_mas']:.2f} mas ({fit_text})"
    )
    return lines


# ---------------------------------------------------------------------- the run


def run_demo(
    output_dir: str | Path = "romancal_lite_demo",
    *,
    shape: tuple[int, int] = (4096, 4096),
    read_pattern: str | None = None,
    seed: int = 42,
    log: Any = print,
) -> dict[str, Any]:
    """Simulate (once), calibrate and align, preview and score the demo exposure.

    Parameters
    ----------
    output_dir : str or Path, optional
        Where the files go (created if needed).
    shape : tuple of int, optional
        Full read-out shape of the simulated detector (default a full 4096 x 4096).
    read_pattern : str, optional
        Named read pattern of `romancal_lite.simulate` (default: its default, "ma4",
        9 resultants).
    seed : int, optional
        Random seed of the simulation.
    log : callable, optional
        Receives one progress line at a time.

    Returns
    -------
    dict
        Paths (``uncal``, ``refcat``, ``cal``, ``cat``, ``png``), timings
        (``simulate_s``, ``calibrate_s``) and the figures of `score`, `score_catalog`
        and `score_astrometry`, and ``fit`` (``meta.wcs_fit_results``).
    """
    from romancal_lite import references, simulate
    from romancal_lite.references._spec import FULL_SHAPE

    read_pattern = read_pattern or simulate.DEFAULT_READ_PATTERN
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    shape = (int(shape[0]), int(shape[1]))
    if shape == FULL_SHAPE or references.user_configured():
        return _run(out, shape, read_pattern, seed, log)
    # the default built-in cache describes full detectors: give this size its own
    cache_dir = out / f".crds_{shape[0]}x{shape[1]}"
    log(f"built-in references for a {shape[0]} x {shape[1]} detector in {cache_dir}")
    with references.builtin_cache(references.generate_cache(cache_dir, full_shape=shape)):
        return _run(out, shape, read_pattern, seed, log)


def _demo_n_stars(shape: tuple[int, int]) -> int:
    from romancal_lite.references._spec import BORDER, FULL_SHAPE
    from romancal_lite.simulate._exposure import STARS_PER_FULL_FRAME

    area = (shape[0] - 2 * BORDER) * (shape[1] - 2 * BORDER) / (FULL_SHAPE[0] - 2 * BORDER) ** 2
    return max(DEMO_MIN_STARS, round(STARS_PER_FULL_FRAME * area))


def _calibrate(uncal: Path, refcat: Path, out: Path) -> None:
    """Run roman_elp with tweakreg aligning to ``refcat``; writes _cal, _cat, _segm, _wcs."""
    from romancal_lite.pipeline import ExposurePipeline

    ExposurePipeline.call(
        str(uncal),
        output_dir=str(out),
        save_results=True,
        steps={"tweakreg": {"abs_refcat": str(refcat)}},
    )


def _run(out: Path, shape: tuple[int, int], read_pattern: str, seed: int, log: Any) -> dict:
    from astropy.table import Table

    from romancal_lite import datamodels, preview, simulate

    error = DEMO_POINTING_ERROR
    n_stars = _demo_n_stars(shape)
    tag = (
        f"{shape[0]}x{shape[1]}_{read_pattern}_s{seed}_n{n_stars}_pe{error}"
        f"_pm{DEMO_PROPER_MOTION}_plx{DEMO_PARALLAX}"
    )
    uncal = out / f"{DEMO_NAME}_uncal.asdf"
    refcat = simulate.refcat_path_for(uncal)
    stamp = out / ".demo_input"
    t0 = time.perf_counter()
    fresh = uncal.exists() and refcat.exists() and stamp.exists() and stamp.read_text() == tag
    if not fresh:
        log(
            f"simulating a {shape[0]} x {shape[1]} exposure ({read_pattern}, {n_stars} stars,"
            f" pointing error {error[0]:g}\" E, {error[1]:g}\" N, roll {error[2]:g}') -> {uncal}"
        )
        simulate.write_exposure(
            uncal,
            shape=shape,
            read_pattern=read_pattern,
            seed=seed,
            n_stars=n_stars,
            pointing_error=error,
            proper_motion=DEMO_PROPER_MOTION,
            parallax=DEMO_PARALLAX,
        )
        stamp.write_text(tag)
    else:
        log(f"reusing {uncal}")
    t1 = time.perf_counter()
    log(
        f"calibrating with roman_elp, aligning to {refcat.name} (the first run also generates"
        " the reference files)"
    )
    _calibrate(uncal, refcat, out)
    t2 = time.perf_counter()
    cal = out / f"{DEMO_NAME}_cal.asdf"
    cat = out / f"{DEMO_NAME}_cat.parquet"
    png = out / f"{DEMO_NAME}_cal.png"
    truth = simulate.read_truth(uncal)
    with datamodels.open(uncal) as raw:
        wcsinfo = {k: float(raw.meta.wcsinfo[k]) for k in truth["wcsinfo_true"]}
    table = Table.read(cat)
    with datamodels.open(cal) as image:
        preview.write_png(image.data, png, dq=image.dq)
        figures = score(image, truth)
        photometry = dict(image.meta.get("photometry") or {})
        fit = image.meta.get("wcs_fit_results")
        fit = dict(fit) if fit is not None else None
        before = uncorrected_wcs(image, wcsinfo)
        after = image.meta.wcs
        figures.update(score_catalog(table, truth, photometry))
        figures.update(score_astrometry(before, after, truth))
    figures["fit"] = fit
    log(f"wrote {cal}, {cat} and {png}")
    log(
        "truth check: sky (data - truth)/err median {sky_pull_median:+.3f}, std"
        " {sky_pull_std:.3f}; cosmic rays flagged {cr_found:.1%} (false {jump_false:.3%});"
        " saturated pixels flagged {saturated_flagged:.1%}".format(**figures)
    )
    for line in format_scores(figures):
        log(line)
    return {
        "uncal": uncal,
        "refcat": refcat,
        "cal": cal,
        "cat": cat,
        "png": png,
        "simulate_s": t1 - t0,
        "calibrate_s": t2 - t1,
        **figures,
    }
