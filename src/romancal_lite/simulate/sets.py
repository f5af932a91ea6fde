"""Sets of simulated exposures: the 18 detectors of a pointing, dithered exposures.

A set shares one sky scene: stars with fixed sky positions and fluxes (and per
exposure a flat sky level).  Every member (an exposure number and a detector) is an
ordinary simulated exposure (`simulate_exposure` with ``sky_stars``) with its own
random streams (its noise and cosmic rays are independent), written to
``r<visit_id>_<exposure:04d>_wfiNN_uncal.asdf`` (the official Level 1 file name:
``r`` + program, execution plan, pass, segment, observation and visit numbers, then
the exposure number and the detector).

* **Detectors**: each detector is placed where its DISTORTION reference puts it in the
  focal plane (V2/V3), so the 18 detectors of one pointing image adjacent, disjoint
  patches of one sky.
* **Dithers**: exposure ``k`` points the WFI_CEN reference point ``dither_offsets[k]``
  (arcsec east, north) from the set's ``ra, dec``, with the same roll.
* **Scene**: for each detector, stars are drawn uniformly over its footprint at the
  undithered pointing, grown by the largest dither offset and the PSF (so every member
  sees a uniform star density), with log-uniform fluxes; their sky positions come from
  the true WCS.  Density: `STARS_PER_FULL_FRAME` per full science array by default.
* **Sky**: a flat sky (no gradient, so that exposures differ only by their offsets)
  of ``sky + sky_offsets[k]`` e/s per pixel in exposure ``k``.

Truth beside the files: ``r<visit_id>_set_stars.ecsv`` (id, ra, dec, flux in e/s, AB
magnitude) and ``r<visit_id>_set_exposures.ecsv`` (one row per member: file, exposure,
detector, true pointing, dither offset, sky level, seed); each member file holds its
own full truth (`read_truth`), its stars carrying their ``id`` in the set.

Members are independent: :func:`simulate_set_member` takes plain arguments (paths,
numbers, strings) and writes one file, so any process pool (or a Dask cluster) can
run them; :func:`simulate_set` runs them serially or on a local process pool.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError, OutputError
from ..references._spec import BORDER, DETECTORS, FULL_SHAPE
from . import astrometry, scene
from ._exposure import (
    DEFAULT_SEED,
    STARS_PER_FULL_FRAME,
    _check_shape,
    _exposure_meta,
    _number,
    _time,
    write_exposure,
)
from ._patterns import DEFAULT_READ_PATTERN, FRAME_TIME, resolve_read_pattern

__all__ = [
    "DEFAULT_DITHER_STEP",
    "DEFAULT_VISIT_ID",
    "SetResult",
    "dither_offsets",
    "make_set_scene",
    "member_path",
    "parse_detectors",
    "read_set_stars",
    "simulate_set",
    "simulate_set_member",
]

#: Program 00001, plan 01, pass 001, segment 001, observation 001, visit 001.
DEFAULT_VISIT_ID = "0000101001001001001"
#: Default dither step (arcsec): about 13.6 pixels, not a whole number of pixels.
DEFAULT_DITHER_STEP = 1.5
#: Plate scale used to size footprints (arcsec per pixel).
_PIXEL_SCALE = 0.11
#: Seed stream of the set's scene (the members' seeds are derived separately).
_STREAM_SET_SCENE = 7


@dataclass
class SetResult:
    """Files written by :func:`simulate_set`.

    Attributes
    ----------
    files : list of Path
        The members' ``_uncal.asdf`` files, exposure-major, detector-minor.
    stars : Path
        The star truth table.
    exposures : Path
        The members' truth table.
    """

    files: list[Path]
    stars: Path
    exposures: Path


def parse_detectors(value: str | Sequence[str] | None) -> list[str]:
    """Return the detector names of ``"all"``, ``"WFI01,WFI02"`` or a sequence.

    Parameters
    ----------
    value : str, sequence of str or None
        ``"all"`` (or None): the 18 detectors; otherwise names such as ``WFI01``,
        ``wfi1`` or ``1``, comma-separated in a string.

    Returns
    -------
    list of str
        Upper-case ``WFInn`` names, in the given order, without repeats.

    Raises
    ------
    ValueError
        For an unknown detector or an empty list.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return list(DETECTORS)
    items = value.split(",") if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        text = str(item).strip().upper()
        if not text:
            continue
        digits = text[3:] if text.startswith("WFI") else text
        name = f"WFI{int(digits):02d}" if digits.isdigit() else text
        if name not in DETECTORS:
            raise ValueError(f"unknown detector {item!r}: use WFI01 ... WFI18 or 'all'")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("no detector given (use 'all' or e.g. 'WFI01,WFI02')")
    return names


def dither_offsets(n: int, step: float = DEFAULT_DITHER_STEP) -> list[tuple[float, float]]:
    """Return ``n`` dither offsets (arcsec east, north) of a simple sub-pixel pattern.

    Exposure ``k`` is offset by ``k * step`` east and ``0.6 k * step`` north (a line
    not aligned with the pixel grid, so each exposure samples other sub-pixel phases
    and other cosmic rays fall on each star); exposure 0 is undithered.

    Parameters
    ----------
    n : int
        Number of exposures (>= 1).
    step : float, optional
        Step (arcsec) east between consecutive exposures.

    Returns
    -------
    list of tuple of float
        ``(dra_arcsec, ddec_arcsec)`` per exposure.

    Raises
    ------
    ValueError
        If ``n < 1`` or ``step`` is not a finite number.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"the number of dithers must be an integer >= 1, got {n!r}")
    step = _number("dither_step", step, minimum=-math.inf)
    return [(k * step, 0.6 * k * step) for k in range(int(n))]


def member_path(
    output_dir: str | os.PathLike[str], exposure: int, detector: str,
    visit_id: str = DEFAULT_VISIT_ID,
) -> Path:
    """Return the file name of a member: ``r<visit_id>_<exposure:04d>_wfiNN_uncal.asdf``.

    Parameters
    ----------
    output_dir : str or path-like
        Directory.
    exposure : int
        Exposure number (1-based).
    detector : str
        ``WFInn``.
    visit_id : str, optional
        The 19 digits of program ... visit.

    Returns
    -------
    Path
        The path.
    """
    return Path(output_dir) / f"r{visit_id}_{int(exposure):04d}_{detector.lower()}_uncal.asdf"


def _check_visit_id(visit_id: str) -> str:
    text = str(visit_id)
    if len(text) != 19 or not text.isdigit():
        raise ValueError(
            f"visit_id must be 19 digits (program 5, plan 2, pass 3, segment 3, "
            f"observation 3, visit 3), got {visit_id!r}"
        )
    return text


def _member_seed(seed: int, exposure: int, detector: str) -> int:
    """Seed of one member: independent noise and cosmic rays for every member."""
    state = np.random.SeedSequence([int(seed), int(exposure), DETECTORS.index(detector)])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _footprint_wcs(
    detector: str, shape: tuple[int, int], ra: float, dec: float, roll: float,
    optical_element: str, start_time: str, references: Any,
) -> Any:
    """Return the true WCS (science pixels -> sky) of a detector at a pointing."""
    from ..datamodels import ScienceRawModel

    pattern, table = resolve_read_pattern(DEFAULT_READ_PATTERN, None)
    meta = _exposure_meta(
        read_pattern=pattern, ma_table_number=table, frame_time=FRAME_TIME,
        detector=detector, optical_element=optical_element, exposure_type="WFI_IMAGE",
        start=_time(start_time), ra=ra, dec=dec, roll=roll,
    )
    model = ScienceRawModel.create_minimal({"meta": meta})
    distortion, _ = astrometry.load_distortion(model, shape, references)
    science = (shape[0] - 2 * BORDER, shape[1] - 2 * BORDER)
    wcsinfo = {"ra_ref": ra % 360.0, "dec_ref": dec, "roll_ref": roll,
               "v2_ref": 1546.3846181707652, "v3_ref": -892.7916365721071}
    return astrometry.sky_wcs(distortion, wcsinfo, science)


def make_set_scene(
    detectors: Sequence[str],
    shape: tuple[int, int],
    *,
    ra: float = 10.0,
    dec: float = -30.0,
    roll: float = 0.0,
    margin_arcsec: float = 0.0,
    n_stars: int | None = None,
    star_flux_range: tuple[float, float] = (5.0, 1.0e5),
    optical_element: str = "F158",
    start_time: str = "2026-01-01T00:00:00",
    references: Any = "crds",
    seed: int = DEFAULT_SEED,
) -> dict[str, np.ndarray]:
    """Draw the stars of a set: uniform over each detector's footprint, grown by a margin.

    Parameters
    ----------
    detectors : sequence of str
        Detectors whose footprints (at the undithered pointing) are populated.
    shape : tuple of int
        Read-out shape of each detector.
    ra, dec, roll : float, optional
        Undithered pointing (deg).
    margin_arcsec : float, optional
        Growth of each footprint (the largest dither offset).
    n_stars : int, optional
        Stars per detector footprint (default: `STARS_PER_FULL_FRAME` per full science
        array, scaled by the grown footprint's area).
    star_flux_range : tuple of float, optional
        Log-uniform flux range (e/s).
    optical_element, start_time, references : optional
        Select the DISTORTION references (as the members will).
    seed : int, optional
        Seed of the scene.

    Returns
    -------
    dict
        ``id`` (int64), ``ra``, ``dec`` (deg), ``flux`` (e/s), ``mag`` (AB).
    """
    rng = np.random.default_rng([int(seed), _STREAM_SET_SCENE])
    science = (shape[0] - 2 * BORDER, shape[1] - 2 * BORDER)
    lo, hi = (float(f) for f in star_flux_range)
    if not 0 < lo <= hi < math.inf:
        raise ValueError(f"star_flux_range must satisfy 0 < min <= max, got {star_flux_range}")
    pad = max(float(margin_arcsec), 0.0) / _PIXEL_SCALE + 8.0  # pixels, PSF included
    ras, decs, fluxes = [], [], []
    full_area = float((FULL_SHAPE[0] - 2 * BORDER) ** 2)
    for det in detectors:
        wcs = _footprint_wcs(det, shape, ra, dec, roll, optical_element, start_time, references)
        w, h = science[1] + 2 * pad, science[0] + 2 * pad
        n = (max(1, round(STARS_PER_FULL_FRAME * w * h / full_area))
             if n_stars is None else int(n_stars))
        x = rng.uniform(-0.5 - pad, science[1] - 0.5 + pad, n)
        y = rng.uniform(-0.5 - pad, science[0] - 0.5 + pad, n)
        flux = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
        sra, sdec = wcs(x, y, with_bounding_box=False)
        ras.append(np.asarray(sra, float) % 360.0)
        decs.append(np.asarray(sdec, float))
        fluxes.append(flux)
    ra_all = np.concatenate(ras) if ras else np.zeros(0)
    flux_all = np.concatenate(fluxes) if fluxes else np.zeros(0)
    return {
        "id": np.arange(ra_all.size, dtype=np.int64),
        "ra": ra_all,
        "dec": np.concatenate(decs) if decs else np.zeros(0),
        "flux": flux_all,
        "mag": astrometry.ab_magnitude(flux_all, optical_element),
    }


def _write_table(path: Path, columns: Mapping[str, Any], meta: Mapping[str, Any],
                 units: Mapping[str, str]) -> Path:
    from astropy.table import Table

    table = Table({k: np.asarray(v) for k, v in columns.items()})
    for name, unit in units.items():
        if name in table.colnames:
            table[name].unit = unit
    table.meta.update(meta)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        table.write(tmp, format="ascii.ecsv", overwrite=True)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


def read_set_stars(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a set's star table (``..._set_stars.ecsv``).

    Parameters
    ----------
    path : str or path-like
        The table.

    Returns
    -------
    dict
        ``id``, ``ra``, ``dec``, ``flux``, ``mag`` arrays.

    Raises
    ------
    InputFileError
        If the file is missing or not a star table.
    """
    from astropy.table import Table

    path = Path(path)
    try:
        table = Table.read(path, format="ascii.ecsv")
        return {name: np.asarray(table[name]) for name in ("id", "ra", "dec", "flux", "mag")}
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except (KeyError, ValueError, OSError) as exc:
        raise InputFileError(f"{path}: not a set star table ({exc})") from None


def simulate_set_member(
    path: str,
    stars: str,
    *,
    exposure: int,
    detector: str,
    ra: float,
    dec: float,
    roll: float,
    sky: float,
    seed: int,
    options: Mapping[str, Any] | None = None,
    threads: int | None = None,
) -> str:
    """Simulate one member of a set and write it (plain arguments: for any worker pool).

    Parameters
    ----------
    path : str
        Output ``_uncal.asdf`` file.
    stars : str
        The set's star table (`read_set_stars`).
    exposure : int
        Exposure number (recorded in the truth).
    detector : str
        ``WFInn``.
    ra, dec, roll : float
        True pointing of this exposure (deg).
    sky : float
        Sky level of this exposure (e/s per pixel).
    seed : int
        Seed of this member.
    options : mapping, optional
        Further `simulate_exposure` arguments (shape, read_pattern, references, ...).
    threads : int, optional
        Threads of the ramp sampling (``ROMANCAL_LITE_SIM_THREADS``).

    Returns
    -------
    str
        ``path``.
    """
    if threads is not None:
        os.environ["ROMANCAL_LITE_SIM_THREADS"] = str(int(threads))
    kwargs = dict(options or {})
    kwargs.setdefault("sky_gradient", 0.0)
    write_exposure(
        path, detector=detector, ra=ra, dec=dec, roll=roll, sky=sky, seed=seed,
        sky_stars=read_set_stars(stars), **kwargs,
    )
    return str(path)


def simulate_set(
    output_dir: str | os.PathLike[str],
    *,
    detectors: str | Sequence[str] = "all",
    dithers: int = 1,
    dither_step: float = DEFAULT_DITHER_STEP,
    dither_pattern: Sequence[Sequence[float]] | None = None,
    sky: float = 1.0,
    sky_offsets: Sequence[float] | None = None,
    ra: float = 10.0,
    dec: float = -30.0,
    roll: float = 0.0,
    shape: tuple[int, int] = FULL_SHAPE,
    n_stars: int | None = None,
    star_flux_range: tuple[float, float] = (5.0, 1.0e5),
    seed: int = DEFAULT_SEED,
    visit_id: str = DEFAULT_VISIT_ID,
    workers: int = 1,
    executor: Any = None,
    **options: Any,
) -> SetResult:
    """Simulate a set: every detector of every exposure of a dithered pointing.

    Parameters
    ----------
    output_dir : str or path-like
        Existing directory for the files.
    detectors : str or sequence of str, optional
        ``"all"`` (default) or detector names (`parse_detectors`).
    dithers : int, optional
        Number of exposures (with `dither_offsets` of ``dither_step``).
    dither_step : float, optional
        Step of the default pattern (arcsec).
    dither_pattern : sequence of (float, float), optional
        Explicit offsets (arcsec east, north) of each exposure; overrides ``dithers``.
    sky : float, optional
        Sky level (e/s per pixel).
    sky_offsets : sequence of float, optional
        Added to ``sky`` in each exposure (one per exposure; default none).
    ra, dec, roll : float, optional
        Undithered pointing of the WFI_CEN reference point (deg).
    shape : tuple of int, optional
        Read-out shape of every detector (small shapes for tests).
    n_stars : int, optional
        Stars per detector footprint (default: the full-frame density).
    star_flux_range : tuple of float, optional
        Log-uniform flux range of the stars (e/s).
    seed : int, optional
        Seed of the set (scene and, derived, each member's).
    visit_id : str, optional
        19 digits of the file names.
    workers : int, optional
        Processes simulating members at once (1: in this process).
    executor : object, optional
        Run the members there instead: anything with ``submit(fn, **kwargs)``
        returning futures with ``result()``, e.g. a ``distributed.Client`` (the members
        then run on that Dask cluster; ``workers`` is ignored).
    **options
        Further `simulate_exposure` arguments shared by all members (``read_pattern``,
        ``references``, ``optical_element``, ``cr_rate``, ``start_time`` ...).

    Returns
    -------
    SetResult
        The files and the two truth tables.

    Raises
    ------
    ValueError
        For invalid arguments.
    romancal_lite.errors.OutputError
        If the directory does not exist or a file cannot be written.
    """
    out = Path(output_dir)
    if not out.is_dir():
        raise OutputError(f"{out}: output directory does not exist")
    names = parse_detectors(detectors)
    shape = _check_shape(shape)
    visit_id = _check_visit_id(visit_id)
    if dither_pattern is not None:
        try:
            offsets = [(float(a), float(b)) for a, b in dither_pattern]
        except (TypeError, ValueError):
            raise ValueError(
                f"dither_pattern must be pairs (dra_arcsec, ddec_arcsec), got {dither_pattern!r}"
            ) from None
        if not offsets or not all(math.isfinite(v) for o in offsets for v in o):
            raise ValueError("dither_pattern must hold at least one pair of finite offsets")
    else:
        offsets = dither_offsets(dithers, dither_step)
    sky = _number("sky", sky)
    if sky_offsets is None:
        levels = [sky] * len(offsets)
    else:
        extra = [float(v) for v in sky_offsets]
        if len(extra) != len(offsets):
            raise ValueError(
                f"sky_offsets has {len(extra)} values for {len(offsets)} exposures"
            )
        levels = [sky + v for v in extra]
        if any(not math.isfinite(v) or v < 0 for v in levels):
            raise ValueError(f"sky + sky_offsets must be finite and >= 0, got {levels}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    for name, value in (("ra", ra), ("dec", dec), ("roll", roll)):
        _number(name, value, minimum=-math.inf)

    margin = max(math.hypot(*o) for o in offsets)
    element = str(options.get("optical_element", "F158")).upper()
    start_time = str(options.get("start_time", "2026-01-01T00:00:00"))
    references = options.get("references", "crds")
    psf = scene.psf_sigma(element) if element in scene.EFFECTIVE_WAVELENGTH_UM else 1.0
    stars = make_set_scene(
        names, shape, ra=ra, dec=dec, roll=roll, margin_arcsec=margin + psf * 0.66,
        n_stars=n_stars, star_flux_range=star_flux_range, optical_element=element,
        start_time=start_time, references=references, seed=int(seed),
    )
    prefix = f"r{visit_id}_set"
    stars_path = _write_table(
        out / f"{prefix}_stars.ecsv", stars,
        {"description": "romancal_lite.simulate set: the stars of every member (true sky "
         "positions and total fluxes; id is the 'id' of the stars in each member's truth)",
         "optical_element": element, "seed": int(seed)},
        {"ra": "deg", "dec": "deg", "flux": "electron / s", "mag": "mag"},
    )
    rows: dict[str, list[Any]] = {k: [] for k in (
        "file", "exposure", "detector", "ra_ref", "dec_ref", "roll_ref", "dra_arcsec",
        "ddec_arcsec", "sky", "sky_offset", "seed")}
    jobs = []
    for k, (dra, ddec) in enumerate(offsets):
        pra, pdec, proll = astrometry.apply_pointing_error(
            float(ra), float(dec), float(roll), astrometry.PointingError(dra, ddec, 0.0)
        )
        for det in names:
            exposure = k + 1
            path = member_path(out, exposure, det, visit_id)
            member_seed = _member_seed(int(seed), exposure, det)
            for key, value in (("file", path.name), ("exposure", exposure),
                               ("detector", det), ("ra_ref", pra), ("dec_ref", pdec),
                               ("roll_ref", proll), ("dra_arcsec", dra),
                               ("ddec_arcsec", ddec), ("sky", levels[k]),
                               ("sky_offset", levels[k] - sky), ("seed", member_seed)):
                rows[key].append(value)
            jobs.append({
                "path": str(path), "stars": str(stars_path), "exposure": exposure,
                "detector": det, "ra": pra, "dec": pdec, "roll": proll, "sky": levels[k],
                "seed": member_seed,
                "options": {"shape": shape, "star_flux_range": star_flux_range, **options},
            })
    exposures_path = _write_table(
        out / f"{prefix}_exposures.ecsv", rows,
        {"description": "romancal_lite.simulate set: one row per member file; ra_ref, "
         "dec_ref, roll_ref are the true WFI_CEN pointing, dra/ddec its dither offset "
         "(arcsec east/north of the set's pointing), sky the exposure's flat sky",
         "ra": float(ra), "dec": float(dec), "roll": float(roll), "base_sky": sky,
         "visit_id": visit_id},
        {"ra_ref": "deg", "dec_ref": "deg", "roll_ref": "deg", "dra_arcsec": "arcsec",
         "ddec_arcsec": "arcsec", "sky": "electron / (s pix)",
         "sky_offset": "electron / (s pix)"},
    )
    if executor is not None:
        futures = [executor.submit(simulate_set_member, **job) for job in jobs]
        files = [Path(f.result()) for f in futures]
    elif workers > 1 and len(jobs) > 1:
        from .ramps import default_threads

        threads = max(1, default_threads() // int(workers))
        with ProcessPoolExecutor(max_workers=int(workers)) as pool:
            futures = [pool.submit(simulate_set_member, threads=threads, **job)
                       for job in jobs]
            files = [Path(f.result()) for f in futures]
    else:
        files = [Path(simulate_set_member(**job)) for job in jobs]
    return SetResult(files=files, stars=stars_path, exposures=exposures_path)
