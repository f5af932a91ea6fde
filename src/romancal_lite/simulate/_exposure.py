"""Simulated Level 1 exposures: metadata, scene, ramps and truth; writing and reading."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.time import Time

from .. import __version__
from ..datamodels import ScienceRawModel, get_extension, write_asdf_atomic
from ..errors import InputFileError, OutputError
from ..references._spec import BORDER, DETECTORS, EXPOSURE_TYPES, FULL_SHAPE, OPTICAL_ELEMENTS
from . import astrometry, scene
from ._decay import decay_signal_periods
from ._decay import decay_signals as decay_signals_of
from ._patterns import DEFAULT_READ_PATTERN, FRAME_TIME, resolve_read_pattern
from ._refs import load_references
from .ramps import (
    BLOCK_ROWS,
    STREAM_SCENE,
    CosmicRayModel,
    make_electronics,
    simulate_ramps,
)

__all__ = [
    "DEFAULT_SEED",
    "TRUTH_KEY",
    "read_truth",
    "simulate_exposure",
    "write_exposure",
]

#: Top-level ASDF key of the truth (next to ``roman``, as romanisim's ``romanisim``).
TRUTH_KEY = "romancal_lite_truth"
#: Seed used when none is given (the demo data are reproducible).
DEFAULT_SEED = 20260101
#: Stars per full 4088 x 4088 science array when ``n_stars`` is not given.
STARS_PER_FULL_FRAME = 1500
#: Reference point of the WFI_CEN aperture in V2/V3 (arcsec), as romanisim writes it.
WFI_CEN_V2V3 = (1546.3846181707652, -892.7916365721071)

_DARK_TYPES = ("WFI_IM_DARK", "WFI_SP_DARK")
_NONLINEARITY = ("linearity", "inverselinearity", "none")
#: What the response polynomial acts on (``truth["parameters"]["nonlinearity_level"]``).
NONLINEARITY_LEVEL = (
    "pixel: D = L^-1(L(pedestal) + charge / gain) on the pixel's own raw level, pedestal "
    "included (the official LINEARITY convention); electronic offsets added after"
)

#: Units of the truth entries (also stored in the file under ``units``).
TRUTH_UNITS = {
    "rate": "DN/s",
    "saturated_resultant": "resultant index (-1: never)",
    "dq": "bit flags (4 JUMP_DET, 2 SATURATED)",
    "pedestal": "DN",
    "amp33_pedestal": "DN",
    "reference_level": "DN",
    "stars.x": "pixel (science array)",
    "stars.y": "pixel (science array)",
    "stars.flux": "e/s",
    "stars.flux_dn": "DN/s",
    "stars.ra": "deg (true position at the exposure mid-time)",
    "stars.dec": "deg (true position at the exposure mid-time)",
    "stars.pmra": "mas/yr (times cos dec)",
    "stars.pmdec": "mas/yr",
    "stars.parallax": "mas",
    "stars.mag": "AB mag (nominal zero point of the element)",
    "wcsinfo_true.ra_ref": "deg",
    "wcsinfo_true.dec_ref": "deg",
    "wcsinfo_true.roll_ref": "deg",
    "wcsinfo_true.v2_ref": "arcsec",
    "wcsinfo_true.v3_ref": "arcsec",
    "pointing_error.dra_arcsec": "arcsec east (recorded minus true)",
    "pointing_error.ddec_arcsec": "arcsec north (recorded minus true)",
    "pointing_error.roll_arcmin": "arcmin (recorded minus true roll_ref)",
    "refcat.ra": "deg (at refcat.ref_epoch)",
    "refcat.dec": "deg (at refcat.ref_epoch)",
    "refcat.ra_error": "mas (times cos dec)",
    "refcat.dec_error": "mas",
    "refcat.pmra": "mas/yr",
    "refcat.pmdec": "mas/yr",
    "refcat.parallax": "mas",
    "refcat.ref_epoch": "Julian year",
    "refcat.epoch": "Julian year (the exposure mid-time)",
    "cosmic_rays.x": "pixel (read-out)",
    "cosmic_rays.y": "pixel (read-out)",
    "cosmic_rays.time": "s",
    "cosmic_rays.charge": "e",
    "ref_drifts.channel_offsets": "DN",
    "ref_drifts.row_drift": "DN",
}


def _check_shape(shape: Any) -> tuple[int, int]:
    try:
        ny, nx = (int(n) for n in shape)
        ok = all(float(n) == int(n) for n in shape)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"shape must be two integers (ny, nx), got {shape!r}")
    lo = 2 * BORDER + 1
    if not (lo <= ny <= FULL_SHAPE[0] and lo <= nx <= FULL_SHAPE[1]):
        raise ValueError(
            f"shape {ny} x {nx}: each side must be between {lo} (the 4-pixel reference "
            f"border plus one science pixel) and {FULL_SHAPE[0]}"
        )
    return ny, nx


def _choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    text = str(value).strip().upper() if isinstance(value, str) else None
    if text not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return text


def _number(name: str, value: Any, *, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < minimum or (strict and number == minimum):
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {relation} {minimum}, got {value!r}")
    return number


def _time(value: Any) -> Time:
    if isinstance(value, Time):
        return Time(value.utc.isot, format="isot", scale="utc")
    try:
        return Time(Time(str(value), scale="utc").isot, format="isot", scale="utc")
    except ValueError:
        raise ValueError(
            f"start_time must be an ISO date/time such as '2026-01-01T00:00:00', got {value!r}"
        ) from None


def _seed(seed: Any) -> int:
    if seed is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return int(seed)


def _exposure_meta(
    *,
    read_pattern: list[list[int]],
    ma_table_number: int,
    frame_time: float,
    detector: str,
    optical_element: str,
    exposure_type: str,
    start: Time,
    ra: float,
    dec: float,
    roll: float,
    recorded: tuple[float, float, float] | None = None,
) -> dict[str, Any]:
    """Return the metadata (as in the real romanisim L1 file) of the exposure.

    ``recorded`` is the ``(ra_ref, dec_ref, roll_ref)`` the observatory reports (the
    true pointing plus a pointing error); ``target_ra/dec`` stay the true ``ra, dec``.
    """
    from astropy import units as u

    exposure_time = read_pattern[-1][-1] * frame_time
    ra_ref, dec_ref, roll_ref = recorded if recorded is not None else (ra, dec, roll)
    return {
        "exposure": {
            "type": exposure_type,
            "start_time": start,
            "mid_time": start + 0.5 * exposure_time * u.s,
            "end_time": start + exposure_time * u.s,
            "exposure_time": exposure_time,
            "effective_exposure_time": exposure_time,
            "frame_time": frame_time,
            "nresultants": len(read_pattern),
            "read_pattern": read_pattern,
            "ma_table_number": ma_table_number,
            "ma_table_id": f"SCI{ma_table_number:04d}" if ma_table_number >= 0 else "?",
            "truncated": False,
        },
        "instrument": {"name": "WFI", "detector": detector, "optical_element": optical_element},
        "ephemeris": {"time": float(start.mjd)},
        "observation": {
            "visit_file_activity": "01",
            "visit_file_group": 0,
            "visit_file_sequence": 1,
        },
        "pointing": {
            "target_ra": ra,
            "target_dec": dec,
            "target_aperture": "WFI_CEN",
            "pa_aperture": roll_ref,
        },
        "velocity_aberration": {
            "ra_reference": ra_ref,
            "dec_reference": dec_ref,
            "scale_factor": 1.0,
        },
        "visit": {"start_time": start, "status": "SUCCESSFUL"},
        "wcsinfo": {
            "aperture_name": "WFI_CEN",
            "ra_ref": ra_ref,
            "dec_ref": dec_ref,
            "roll_ref": roll_ref,
            "v2_ref": WFI_CEN_V2V3[0],
            "v3_ref": WFI_CEN_V2V3[1],
            "v3yangle": -60.0,
            "vparity": -1,
        },
    }


def simulate_exposure(
    *,
    shape: tuple[int, int] = FULL_SHAPE,
    read_pattern: str | Sequence[Sequence[int]] = DEFAULT_READ_PATTERN,
    frame_time: float = FRAME_TIME,
    detector: str = "WFI01",
    optical_element: str = "F158",
    exposure_type: str = "WFI_IMAGE",
    start_time: str | Time = "2026-01-01T00:00:00",
    seed: int | None = DEFAULT_SEED,
    ra: float = 10.0,
    dec: float = -30.0,
    roll: float = 0.0,
    sky: float = 1.0,
    sky_gradient: float = 0.2,
    n_stars: int | None = None,
    star_flux_range: tuple[float, float] = (5.0, 1.0e5),
    psf_sigma: float | None = None,
    cr_rate: float = 2.0e-5,
    cr_charge: float = 1500.0,
    saturate_all: bool = False,
    poisson: bool = True,
    read_noise: bool = True,
    nonlinearity: str = "linearity",
    ref_drift_scale: float = 1.0,
    pedestal: float = 6000.0,
    full_well_margin: float = 0.02,
    references: str | Mapping[str, str | os.PathLike[str]] = "crds",
    ma_table_number: int | None = None,
    pointing_error: Sequence[float] | astrometry.PointingError | None = None,
    proper_motion: float = 0.0,
    parallax: float = 0.0,
    refcat_mag_limit: float = astrometry.GAIA_MAG_LIMIT,
    refcat_ref_epoch: float = astrometry.GAIA_REF_EPOCH,
    refcat_error_scale: float = 1.0,
    decay_signals: bool = True,
    sky_stars: Mapping[str, Any] | None = None,
) -> tuple[ScienceRawModel, dict[str, Any]]:
    """Simulate a Level 1 (``_uncal``) WFI exposure and return it with its truth.

    The detector constants (gain, read noise, saturation, linearity, dark, flat)
    are those of the reference files the pipeline selects for the exposure, so
    that calibrating it with them recovers ``truth["rate"]``.  See
    ``docs/simulate.md`` for every formula.

    Parameters
    ----------
    shape : tuple of int, optional
        ``(ny, nx)`` of the full read-out including the 4-pixel reference border
        (default the whole 4096 x 4096 detector; at least 9 x 9).
    read_pattern : str or list of list of int, optional
        A preset of :data:`READ_PATTERNS` (``"ma4"``: 9 resultants, ``"ma6"``: 15,
        ``"ma109"``: 10) or an explicit pattern of 1-based read numbers.
    frame_time : float, optional
        Seconds between reads.
    detector : str, optional
        ``"WFI01"`` ... ``"WFI18"``.
    optical_element : str, optional
        Filter or element (``"F062"`` ... ``"F213"``, ``"GRISM"``, ``"PRISM"``, ``"DARK"``).
    exposure_type : str, optional
        ``meta.exposure.type``; the dark types need ``optical_element="DARK"``.
    start_time : str or astropy.time.Time, optional
        Exposure start (UTC); also selects the references by date.
    seed : int or None, optional
        Seed of every random stream; None draws one (recorded in the truth).
    ra, dec, roll : float, optional
        Pointing of the WFI_CEN reference point and roll (degrees).
    sky : float, optional
        Mean sky rate (e/s per pixel).
    sky_gradient : float, optional
        Fractional amplitude of the sky gradient across the array.
    n_stars : int, optional
        Number of stars; default 1500 per full science array, scaled by area.
    star_flux_range : tuple of float, optional
        Log-uniform range of total star fluxes (e/s).
    psf_sigma : float, optional
        Gaussian PSF sigma (pixels); default from the optical element.
    cr_rate : float, optional
        Cosmic-ray hits per pixel per second (0: none).
    cr_charge : float, optional
        Median cosmic-ray charge (e), log-normal with ln-sigma 0.9.
    saturate_all : bool, optional
        Make every science pixel saturate before its first read.
    poisson : bool, optional
        Poisson charge accumulation (False: the expected charge).
    read_noise : bool, optional
        Add read noise.
    nonlinearity : {"linearity", "inverselinearity", "none"}, optional
        Detector response: exact inverse of the LINEARITY polynomial (default), the
        INVERSELINEARITY polynomial, or linear; applied to the pixel's own level,
        pedestal included (the official LINEARITY convention), before the
        electronic offsets are added.
    ref_drift_scale : float, optional
        Scale of the electronic offsets and drifts (0: none).
    pedestal : float, optional
        Mean bias level (DN).
    full_well_margin : float, optional
        Pixels stop accumulating at ``(1 + margin)`` times the saturation threshold.
    references : {"crds", "builtin"} or mapping, optional
        Where the reference files come from: CRDS selection (default), built-in
        content for this shape without files, or ``{reftype: path}`` overrides.
    ma_table_number : int, optional
        ``meta.exposure.ma_table_number`` (default the preset's; -999999 otherwise).
    pointing_error : sequence of 3 float or PointingError, optional
        ``(dra_arcsec, ddec_arcsec, roll_arcmin)``: the ``meta.wcsinfo`` reference point
        is recorded that far east and north of the true ``ra, dec`` and its roll that
        much larger, while the stars stay at their true sky positions (default: none).
    proper_motion : float, optional
        RMS proper motion per axis (mas/yr) of the stars (default 0: none).
    parallax : float, optional
        Mean parallax (mas) of the stars, exponentially distributed (default 0: none).
    refcat_mag_limit : float, optional
        Faintest magnitude of the Gaia-like reference catalog (default 20.7).
    refcat_ref_epoch : float, optional
        Epoch (Julian year) of the reference catalog positions (default 2016.0).
    refcat_error_scale : float, optional
        Scale of the Gaia-like catalog position errors (reported and drawn; 0: exact).
    decay_signals : bool, optional
        Add the dark decay of the DARKDECAYSIGNAL reference and, on WFI18, the
        first-read transient (`romancal_lite.simulate._decay`); truth under
        ``decay_signals`` (None when off).
    sky_stars : mapping, optional
        A fixed sky scene instead of randomly drawn stars: ``ra``, ``dec`` (deg) and
        ``flux`` (e/s) arrays, optionally ``id``.  The stars are placed through the true
        WCS of this detector and pointing (the DISTORTION reference and ``ra``, ``dec``,
        ``roll``); those whose PSF touches the science array are rendered, and the
        truth's ``stars`` lists them with their ``id`` (default: the index in
        ``sky_stars``).  ``n_stars`` is then ignored (`romancal_lite.simulate.sets`
        uses this for multi-detector and dithered sets).

    Returns
    -------
    model : ScienceRawModel
        The exposure (uint16 ``data`` and ``amp33``).
    truth : dict
        ``rate`` (DN/s, science array), ``saturated_resultant``, ``dq``, ``stars``,
        ``cosmic_rays``, ``ref_drifts``, ``pedestal``, ``amp33_pedestal``,
        ``reference_level``, ``seed``, ``wcsinfo_true``, ``pointing_error``,
        ``refcat`` (the reference catalog's columns; its ``file`` is set when written),
        ``parameters``, ``references`` and ``units`` (see ``docs/simulate.md``).

    Raises
    ------
    ValueError
        For invalid arguments.
    romancal_lite.errors.ReferenceFileError
        If the references cannot be selected or do not match the shape.
    """
    ny, nx = _check_shape(shape)
    pattern, table = resolve_read_pattern(read_pattern, ma_table_number)
    frame_time = _number("frame_time", frame_time, strict=True)
    detector = _choice("detector", detector, DETECTORS)
    optical_element = _choice("optical_element", optical_element, OPTICAL_ELEMENTS)
    exposure_type = _choice("exposure_type", exposure_type, EXPOSURE_TYPES)
    if exposure_type in _DARK_TYPES and optical_element != "DARK":
        raise ValueError(f"exposure_type {exposure_type} needs optical_element='DARK'")
    start = _time(start_time)
    seed = _seed(seed)
    for name, value in (("ra", ra), ("dec", dec), ("roll", roll)):
        _number(name, value, minimum=-math.inf)
    if not -90.0 <= float(dec) <= 90.0:
        raise ValueError(f"dec must be between -90 and 90 degrees, got {dec!r}")
    sky = _number("sky", sky)
    sky_gradient = _number("sky_gradient", sky_gradient)
    if sky_gradient >= 1.0:
        raise ValueError(f"sky_gradient must be < 1 (a fraction of the sky), got {sky_gradient}")
    science_shape = (ny - 2 * BORDER, nx - 2 * BORDER)
    area = science_shape[0] * science_shape[1] / (FULL_SHAPE[0] - 2 * BORDER) ** 2
    if n_stars is None:
        n_stars = max(1, round(STARS_PER_FULL_FRAME * area))
    if isinstance(n_stars, bool) or not isinstance(n_stars, int | np.integer) or n_stars < 0:
        raise ValueError(f"n_stars must be a non-negative integer, got {n_stars!r}")
    try:
        flux_lo, flux_hi = (float(f) for f in star_flux_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"star_flux_range must be two fluxes (min, max) in e/s, got {star_flux_range!r}"
        ) from None
    if not (0 < flux_lo <= flux_hi < math.inf):
        raise ValueError(f"star_flux_range must satisfy 0 < min <= max, got {star_flux_range!r}")
    if psf_sigma is None:
        psf_sigma = scene.psf_sigma(optical_element)
    psf_sigma = _number("psf_sigma", psf_sigma, strict=True)
    cr_rate = _number("cr_rate", cr_rate)
    cr_charge = _number("cr_charge", cr_charge, strict=True)
    if not isinstance(nonlinearity, str) or nonlinearity.lower() not in _NONLINEARITY:
        raise ValueError(
            f"nonlinearity must be one of {', '.join(_NONLINEARITY)}, got {nonlinearity!r}"
        )
    nonlinearity = nonlinearity.lower()
    ref_drift_scale = _number("ref_drift_scale", ref_drift_scale)
    pedestal = _number("pedestal", pedestal)
    full_well_margin = _number("full_well_margin", full_well_margin)
    error = astrometry.PointingError.parse(pointing_error)
    proper_motion = _number("proper_motion", proper_motion)
    parallax = _number("parallax", parallax)
    refcat_mag_limit = _number("refcat_mag_limit", refcat_mag_limit, minimum=-math.inf)
    refcat_ref_epoch = _number("refcat_ref_epoch", refcat_ref_epoch, minimum=-math.inf)
    refcat_error_scale = _number("refcat_error_scale", refcat_error_scale)
    distortion_override = None
    if isinstance(references, Mapping):
        references = dict(references)
        key = next((k for k in references if str(k).lower() == "distortion"), None)
        if key is not None:
            distortion_override = {"distortion": references.pop(key)}
    recorded = astrometry.apply_pointing_error(float(ra), float(dec), float(roll), error)

    meta = _exposure_meta(
        read_pattern=pattern,
        ma_table_number=table,
        frame_time=frame_time,
        detector=detector,
        optical_element=optical_element,
        exposure_type=exposure_type,
        start=start,
        ra=float(ra),
        dec=float(dec),
        roll=float(roll),
        recorded=recorded,
    )
    model = ScienceRawModel.create_minimal({"meta": meta})

    wcsinfo_true = {
        "ra_ref": float(ra) % 360.0,
        "dec_ref": float(dec),
        "roll_ref": float(roll),
        "v2_ref": WFI_CEN_V2V3[0],
        "v3_ref": WFI_CEN_V2V3[1],
    }
    dark_scene = exposure_type in _DARK_TYPES or optical_element == "DARK"
    rng = np.random.default_rng([seed, STREAM_SCENE])
    rate_e = scene.make_sky(science_shape, 0.0 if dark_scene else sky, sky_gradient, rng)
    star_ids = None
    if sky_stars is not None:
        catalog, star_ids = _place_sky_stars(
            model, sky_stars, (ny, nx), distortion_override or references, wcsinfo_true,
            math.ceil(6.0 * psf_sigma) + 1, empty=dark_scene,
        )
    else:
        catalog = scene.make_star_catalog(0 if dark_scene else int(n_stars), science_shape,
                                          (flux_lo, flux_hi), rng)
    scene.render_stars(rate_e, catalog, psf_sigma)
    electronics = make_electronics(
        (ny, nx), pattern, frame_time, seed, pedestal_level=pedestal, drift_scale=ref_drift_scale
    )
    cosmic = CosmicRayModel(rate=cr_rate, median_charge=cr_charge) if cr_rate > 0 else None

    decays = None
    periods = None
    if decay_signals:
        values, decays = decay_signals_of(model, references)
        periods = decay_signal_periods(detector, (ny, nx), pattern, frame_time, values)
    with load_references(model, (ny, nx), references) as refs:
        result = simulate_ramps(
            rate_e,
            refs,
            electronics,
            pattern,
            frame_time,
            seed,
            cosmic_rays=cosmic,
            poisson=bool(poisson),
            read_noise=bool(read_noise),
            nonlinearity=nonlinearity,
            full_well_margin=full_well_margin,
            saturate_all=bool(saturate_all),
            decay=periods,
        )
        ix = np.clip(np.rint(catalog["x"]).astype(int), 0, science_shape[1] - 1) + BORDER
        iy = np.clip(np.rint(catalog["y"]).astype(int), 0, science_shape[0] - 1) + BORDER
        star_gain = np.array([float(refs.gain[y, x]) for y, x in zip(iy, ix, strict=True)])
        sources = dict(refs.sources)
    del rate_e
    model.data = result.data
    model.amp33 = result.amp33
    del periods

    stars, refcat = _sky_truth(
        model,
        catalog,
        (ny, nx),
        distortion_override or references,
        wcsinfo_true,
        optical_element,
        np.random.default_rng([seed, astrometry.STREAM_ASTROMETRY]),
        proper_motion=proper_motion,
        parallax=parallax,
        mag_limit=refcat_mag_limit,
        ref_epoch=refcat_ref_epoch,
        error_scale=refcat_error_scale,
    )
    if "distortion" in refcat:
        sources["distortion"] = refcat.pop("distortion")

    truth: dict[str, Any] = {
        "rate": result.rate,
        "saturated_resultant": result.saturated_resultant,
        "dq": result.dq,
        "stars": {
            "x": catalog["x"],
            "y": catalog["y"],
            "flux": catalog["flux"],
            "flux_dn": catalog["flux"] / star_gain if len(star_gain) else catalog["flux"],
            **stars,
            **({} if star_ids is None else {"id": star_ids}),
        },
        "cosmic_rays": result.cosmic_rays,
        "decay_signals": decays,
        "ref_drifts": {
            "channel_offsets": electronics.channel_offsets,
            "row_drift": electronics.row_drift,
        },
        "pedestal": electronics.pedestal,
        "amp33_pedestal": electronics.amp33_pedestal,
        "reference_level": electronics.reference_level,
        "seed": seed,
        "wcsinfo_true": wcsinfo_true,
        "pointing_error": error.as_dict(),
        "refcat": refcat,
        "parameters": {
            "shape": [ny, nx],
            "read_pattern": pattern,
            "ma_table_number": table,
            "frame_time": frame_time,
            "detector": detector,
            "optical_element": optical_element,
            "exposure_type": exposure_type,
            "start_time": start.isot,
            "ra": float(ra),
            "dec": float(dec),
            "roll": float(roll),
            "sky": sky,
            "sky_gradient": sky_gradient,
            "n_stars": int(len(catalog["x"])),
            "star_flux_range": [flux_lo, flux_hi],
            "psf_sigma": psf_sigma,
            "cr_rate": cr_rate,
            "cr_charge": cr_charge,
            "cr_charge_sigma": CosmicRayModel().sigma,
            "saturate_all": bool(saturate_all),
            "poisson": bool(poisson),
            "read_noise": bool(read_noise),
            "nonlinearity": nonlinearity,
            "nonlinearity_level": NONLINEARITY_LEVEL,
            "ref_drift_scale": ref_drift_scale,
            "pedestal": pedestal,
            "full_well_margin": full_well_margin,
            "block_rows": BLOCK_ROWS,
            "pointing_error": [error.dra_arcsec, error.ddec_arcsec, error.roll_arcmin],
            "proper_motion": proper_motion,
            "parallax": parallax,
            "refcat_mag_limit": refcat_mag_limit,
            "refcat_ref_epoch": refcat_ref_epoch,
            "refcat_error_scale": refcat_error_scale,
            "software": f"romancal_lite {__version__}",
        },
        "references": sources,
        "units": dict(TRUTH_UNITS),
    }
    return model, truth


def _place_sky_stars(
    model: ScienceRawModel,
    sky_stars: Mapping[str, Any],
    full_shape: tuple[int, int],
    references: str | Mapping[str, Any],
    wcsinfo_true: Mapping[str, float],
    margin: int,
    *,
    empty: bool = False,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return the pixel catalog of the sky stars that fall on (or near) this detector."""
    try:
        ra = np.asarray(sky_stars["ra"], dtype=np.float64)
        dec = np.asarray(sky_stars["dec"], dtype=np.float64)
        flux = np.asarray(sky_stars["flux"], dtype=np.float64)
        ids = np.asarray(sky_stars.get("id", np.arange(ra.size)), dtype=np.int64)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ValueError(
            "sky_stars must be a mapping of equal-length arrays 'ra', 'dec', 'flux' "
            "(and optionally 'id')"
        ) from None
    if not (ra.ndim == dec.ndim == flux.ndim == ids.ndim == 1) or not (
        ra.size == dec.size == flux.size == ids.size
    ):
        raise ValueError("sky_stars 'ra', 'dec', 'flux' (and 'id') must be 1-D, equal length")
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec)) and np.all(flux > 0)
            and np.all(np.isfinite(flux))):
        raise ValueError("sky_stars need finite positions and positive finite fluxes")
    science_shape = (full_shape[0] - 2 * BORDER, full_shape[1] - 2 * BORDER)
    none = {"x": np.zeros(0), "y": np.zeros(0), "flux": np.zeros(0)}
    if empty or ra.size == 0:
        return none, np.zeros(0, dtype=np.int64)
    distortion, _ = astrometry.load_distortion(model, full_shape, references)
    wcs = astrometry.sky_wcs(distortion, wcsinfo_true, science_shape)
    # only stars within a generous radius of the detector centre are inverted
    cx, cy = (science_shape[1] - 1) / 2.0, (science_shape[0] - 1) / 2.0
    ra0, dec0 = (float(v) for v in wcs(cx, cy, with_bounding_box=False))
    cosd = np.cos(np.deg2rad(dec0))
    dist = np.hypot(((ra - ra0 + 180.0) % 360.0 - 180.0) * cosd, dec - dec0)
    radius = 0.11 / 3600.0 * (math.hypot(*science_shape) / 2.0 + margin) * 1.5
    near = np.flatnonzero(dist < radius)
    if near.size == 0:
        return none, np.zeros(0, dtype=np.int64)
    x, y = wcs.invert(ra[near], dec[near], with_bounding_box=False)
    x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
    inside = (
        np.isfinite(x) & np.isfinite(y)
        & (x >= -0.5 - margin) & (x <= science_shape[1] - 0.5 + margin)
        & (y >= -0.5 - margin) & (y <= science_shape[0] - 0.5 + margin)
    )
    keep = near[inside]
    return {"x": x[inside], "y": y[inside], "flux": flux[keep]}, ids[keep]


def _sky_truth(
    model: ScienceRawModel,
    catalog: Mapping[str, np.ndarray],
    full_shape: tuple[int, int],
    references: str | Mapping[str, Any],
    wcsinfo_true: Mapping[str, float],
    optical_element: str,
    rng: np.random.Generator,
    *,
    proper_motion: float,
    parallax: float,
    mag_limit: float,
    ref_epoch: float,
    error_scale: float,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return the stars' sky truth and the reference catalog (see ``astrometry``)."""
    n = len(catalog["x"])
    science_shape = (full_shape[0] - 2 * BORDER, full_shape[1] - 2 * BORDER)
    exposure = model.meta.exposure
    epoch = exposure.start_time + 0.5 * (exposure.end_time - exposure.start_time)
    stars: dict[str, np.ndarray] = {
        "ra": np.zeros(n),
        "dec": np.zeros(n),
        # drawn even without proper motion / parallax: the other draws stay the same
        "pmra": rng.normal(0.0, 1.0, n) * proper_motion,
        "pmdec": rng.normal(0.0, 1.0, n) * proper_motion,
        "parallax": rng.exponential(1.0, n) * parallax,
        "mag": astrometry.ab_magnitude(catalog["flux"], optical_element),
    }
    refcat: dict[str, Any] = {
        "file": None,
        "epoch": float(epoch.jyear),
        "mag_limit": mag_limit,
        "error_scale": error_scale,
    }
    if n:
        distortion, source = astrometry.load_distortion(model, full_shape, references)
        wcs = astrometry.sky_wcs(distortion, wcsinfo_true, science_shape)
        ra, dec = wcs(catalog["x"], catalog["y"], with_bounding_box=False)
        stars["ra"], stars["dec"] = np.asarray(ra, float) % 360.0, np.asarray(dec, float)
        refcat["distortion"] = source
    columns = astrometry.make_reference_catalog(
        stars, epoch, rng, mag_limit=mag_limit, ref_epoch=ref_epoch, error_scale=error_scale
    )
    refcat.update(columns)
    refcat["n_sources"] = int(len(columns["ra"]))
    return stars, refcat


def _plain(value: Any) -> Any:
    """Convert numpy scalars (and nested containers) to plain Python for YAML."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_model_with_truth(
    model: ScienceRawModel, truth: dict[str, Any], path: Path, *, refcat: bool = True
) -> Path:
    """Write the reference catalog, then ``model`` and ``truth``, each atomically.

    The exposure goes under ``roman`` and the truth under :data:`TRUTH_KEY`; the
    reference catalog (``truth["refcat"]``) to ``<base>_refcat.ecsv`` next to it, whose
    name is recorded as ``truth["refcat"]["file"]``.

    Parameters
    ----------
    model : ScienceRawModel
        The exposure.
    truth : dict
        The truth dict of :func:`simulate_exposure` (``refcat.file`` is set).
    path : Path
        Output ``.asdf`` file.
    refcat : bool, optional
        Write the reference catalog (default True).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputError
        If a file cannot be written.
    """
    path = Path(path)
    cat = truth.get("refcat")
    if isinstance(cat, dict):
        cat["file"] = None
        if refcat:
            refcat_path = astrometry.refcat_path_for(path)
            meta = {
                "ref_epoch": float(truth["parameters"]["refcat_ref_epoch"]),
                "exposure": path.name,
                "exposure_epoch": cat["epoch"],
                "mag_limit": cat["mag_limit"],
                "description": "romancal_lite.simulate Gaia-like reference catalog: true "
                "positions moved back to ref_epoch by proper motion and parallax, plus "
                "ra_error/dec_error noise; source_id is the index of the star in the truth",
            }
            astrometry.write_reference_catalog(refcat_path, cat, meta)
            cat["file"] = refcat_path.name
    model.meta.filename = path.name
    model.meta.file_date = Time(Time.now().isot, format="isot", scale="utc")
    tree = _plain(truth)
    tree_all = {"roman": model.to_node(), TRUTH_KEY: tree}
    compressed = [tree[name] for name in ("dq", "saturated_resultant")]
    write_asdf_atomic(path, tree_all, compressed=compressed)
    return path


def write_exposure(path: str | os.PathLike[str], *, refcat: bool = True, **kwargs: Any) -> Path:
    """Simulate an exposure and write it, with its truth, to an ASDF file.

    The ``roman`` node is the official-format ``WfiScienceRaw`` (readable by
    roman_datamodels); the truth is a separate top-level node ``romancal_lite_truth``
    (read it back with :func:`read_truth`).  The file is written to a temporary
    file in the target directory and renamed into place. The stars' Gaia-like
    reference catalog goes to ``<base>_refcat.ecsv`` beside it (``<base>`` the file
    name without ``.asdf`` and ``_uncal``).

    Parameters
    ----------
    path : str or path-like
        Output file, ending in ``.asdf`` (conventionally ``..._uncal.asdf``).
    refcat : bool, optional
        Also write the reference catalog (default True).
    **kwargs
        Arguments of :func:`simulate_exposure`.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ValueError
        For invalid arguments or a path not ending in ``.asdf``.
    romancal_lite.errors.OutputError
        If the file cannot be written.
    """
    path = Path(path)
    if path.suffix != ".asdf":
        raise ValueError(f"{path}: the output file name must end in .asdf")
    if not (path.parent if str(path.parent) else Path(".")).is_dir():
        raise OutputError(f"{path}: directory {path.parent} does not exist")
    model, truth = simulate_exposure(**kwargs)
    return write_model_with_truth(model, truth, path, refcat=refcat)


def read_truth(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the truth written by :func:`write_exposure` (arrays loaded into memory).

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`write_exposure`.

    Returns
    -------
    dict
        The truth dict, as :func:`simulate_exposure` returned it; when a reference
        catalog was written, ``truth["refcat"]["path"]`` is its full path (the file
        name ``truth["refcat"]["file"]`` in the exposure's directory).

    Raises
    ------
    romancal_lite.errors.InputFileError
        If the file is missing, not ASDF, or has no truth.
    """
    import asdf

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            af = asdf.open(path, lazy_load=True, memmap=False, extensions=[get_extension()])
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise InputFileError(
            f"{path}: cannot be read as ASDF ({' '.join(str(exc).split())[:200]})"
        ) from None
    with af:
        if TRUTH_KEY not in af.tree:
            raise InputFileError(f"{path}: holds no simulation truth (no '{TRUTH_KEY}' node)")
        truth = _load(af.tree[TRUTH_KEY])
    cat = truth.get("refcat")
    if isinstance(cat, dict) and cat.get("file"):
        cat["path"] = str(path.parent / cat["file"])
    return truth


def _load(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {k: _load(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_load(v) for v in node]
    if hasattr(node, "shape") and hasattr(node, "dtype"):
        return np.array(node)
    return node
