"""End-to-end timing and peak memory of romancal-lite's ``roman_elp`` beside romancal 1.1.

Run as a script::

    python benchmarks/pipeline.py [--size 4096x4096] [--resultants 9 [15]]
                                  [--through tweakreg|flatfield] [--stars 4000]
                                  [--asn-detectors 4] [--asn-size 512x4096]
                                  [--only ours|romancal] [--repeat 1] [--markdown]
                                  [--input auto|simulate|synthetic] [--workdir DIR]
                                  [--json FILE] [--from-json FILE]
                                  [--ramp-fit ols_cas22|likely]

For each number of resultants it writes the official-format reference files
romancal-lite generates for detector WFI02 at that shape and one Level 1 exposure
(``_uncal.asdf``, filter F158) made from them by ``romancal_lite.simulate`` (MA
tables "ma4" and "ma6"): :data:`STARS_PER_FULL_FRAME` stars per full frame (scaled by
area; source_catalog finds ~70 % of them) and the pointing error
:data:`POINTING_ERROR` (3", -2", roll 3') in the recorded pointing, with the
simulator's reference catalog of the stars (``<base>_refcat.ecsv``) beside it.  Then
it runs each pipeline, in its own fresh interpreter, through tweakreg with the SAME
input and the SAME reference files given as overrides:

* ours: ``romancal_lite.pipeline.ExposurePipeline`` (dq_init, saturation, refpix,
  linearity, ramp_fit with the Casertano fit and jump detection, dark_current,
  assign_wcs, photom, flatfield, source_catalog with PSF fitting, tweakreg);
* romancal 1.1 (when installed): ``romancal.pipeline.ExposurePipeline`` run offline as
  ``benchmarks/_romancal.py`` describes (``ols_cas22`` ramp fitting with jump
  detection; ``dark_decay`` and ``wfi18_transient`` skipped; source_catalog with
  ``fit_psf`` on, its default, and our EPSF and APCORR files; tweakreg).

Both give tweakreg the reference catalog file as ``abs_refcat`` (romancal: stcal
1.20 reads an existing path, no Gaia query; sockets are refused during its run).
``--through flatfield`` stops both after flatfield, as this benchmark did before.
``--ramp-fit likely`` runs both with the likelihood ramp fit (``algorithm='likely'``,
romancal 1.1's own default; ours: ``--steps.ramp_fit.algorithm likely``).

Then (unless ``--asn-detectors 0``) the association case: :data:`ASN_DETECTORS`
(WFI01-WFI04) of one simulated exposure, ``--asn-size`` each (default 512 x 4096:
romancal needs the full width), pointing error :data:`ASN_POINTING_ERROR`, listed in
one ``_asn.json`` with a shared ``group_id`` and run through each pipeline in one
call (one joint tweakreg fit); their reference catalogs are merged into one file.
An override is one file for every member, so here both pipelines select each
detector's references from an lz4 copy of romancal-lite's built-in CRDS cache
(``CRDS_PATH``, ``CRDS_CONTEXT``, serverless, offline).

Reported per pipeline: the wall time of each step's ``Step.run`` (summed over the
exposures of an association); the pipeline call ("through tweakreg": reading the
input, all steps, writing ``_cal``, ``_wcs``, ``_cat.parquet``, ``_segm``), which is
the number the speed-up is computed from, and the call without the two catalog steps;
the whole process (interpreter start and imports included); and the peak resident
memory of the process (Linux ``VmHWM``).  Below each table, per pipeline and
exposure (read back from the products, untimed): the catalog's number of sources,
tweakreg's fit (status, shift in arcsec, rotation in arcmin, matches) and the median
and largest separation between the simulated stars' true positions and their pixel
positions through the aligned WCS.  Reference-file generation is done (and cached in
``--workdir``) before anything is timed, and so is the input.

The size is ``--size`` or ``$ROMANCAL_LITE_BENCH_SIZE`` (``NY`` rows of the 4096-column
width, or ``NYxNX``); default the full 4096 x 4096 frame.  romancal's refpix step
needs the full 4096-column width (see ``benchmarks/_romancal.py``); with another width
only ours runs.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if __package__:
    from . import _romancal
    from ._data import FRAME_TIME, make_frame, read_pattern
else:  # run as a script: python benchmarks/pipeline.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import _romancal
    from benchmarks._data import FRAME_TIME, make_frame, read_pattern

__all__ = [
    "DETECTOR",
    "OPTICAL_ELEMENT",
    "STEPS",
    "Case",
    "bench_size",
    "make_references",
    "prepare_case",
    "run_ours",
    "run_ours_subprocess",
    "write_input",
    "write_uncal",
]

#: Detector and filter of the benchmark exposure.
DETECTOR = "WFI02"
OPTICAL_ELEMENT = "F158"

#: Rows of the tables: (label, names the step may have in ours, name in romancal).
STEPS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("dq_init", ("dq_init",), "dq_init"),
    ("saturation", ("saturation",), "saturation"),
    ("refpix", ("refpix",), "refpix"),
    ("dark_decay", ("dark_decay",), "dark_decay"),
    ("wfi18_transient", ("wfi18_transient",), "wfi18_transient"),
    ("linearity", ("linearity",), "linearity"),
    ("ramp_fit", ("ramp_fit", "rampfit"), "rampfit"),
    ("dark_current", ("dark_current", "dark"), "dark_current"),
    ("assign_wcs", ("assign_wcs",), "assign_wcs"),
    ("photom", ("photom",), "photom"),
    ("flatfield", ("flatfield", "flat_field"), "flatfield"),
    ("source_catalog", ("source_catalog",), "source_catalog"),
    ("tweakreg", ("tweakreg",), "tweakreg"),
)
#: The steps after flatfield, run only with a local reference catalog.
CATALOG_STEPS = ("source_catalog", "tweakreg")

#: Stars simulated per full 4088 x 4088 science array (scaled by area): with the
#: simulator's fluxes (5 - 1e5 e/s, log-uniform) source_catalog finds ~70 % of them.
STARS_PER_FULL_FRAME = 4000
#: Pointing error injected into the recorded pointing (RA offset x cos Dec and Dec offset
#: in arcsec, roll in arcmin): one detector, and several detectors aligned jointly (a
#: roll moves detectors far from the boresight: docs/steps/tweakreg.md, 0.3' is what a
#: joint fit of detectors 17' apart recovers).
POINTING_ERROR = (3.0, -2.0, 3.0)
ASN_POINTING_ERROR = (3.0, -2.0, 0.3)
#: Detectors and size of the association case.
ASN_DETECTORS = ("WFI01", "WFI02", "WFI03", "WFI04")
ASN_SIZE = (512, 4096)

SIZE_ENV = "ROMANCAL_LITE_BENCH_SIZE"
FULL_WIDTH = 4096
_BORDER = 4
_AMP33_WIDTH = 128


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"NY"`` (rows of the full 4096-column width) or ``"NYxNX"``.

    Parameters
    ----------
    text : str
        The size.

    Returns
    -------
    tuple of int
        ``(ny, nx)``.
    """
    text = text.strip().lower()
    if "x" in text:
        ny, nx = (int(s) for s in text.split("x"))
    else:
        ny, nx = int(text), FULL_WIDTH
    if ny < 2 * _BORDER + 1 or nx < 2 * _BORDER + 1:
        raise ValueError(f"size {text!r} leaves no science pixels inside the 4-pixel border")
    return ny, nx


def bench_size(default: tuple[int, int] = (4096, 4096)) -> tuple[int, int]:
    """Return ``$ROMANCAL_LITE_BENCH_SIZE`` parsed (see :func:`parse_size`), else ``default``.

    Parameters
    ----------
    default : tuple of int, optional
        Used when the variable is unset or empty.

    Returns
    -------
    tuple of int
        ``(ny, nx)``.
    """
    text = os.environ.get(SIZE_ENV, "").strip()
    return parse_size(text) if text else default


def default_workdir() -> Path:
    """Return the directory caching inputs and reference files between runs.

    Returns
    -------
    Path
        ``$ROMANCAL_LITE_BENCH_DIR`` or ``<user cache>/romancal_lite/bench``.
    """
    env = os.environ.get("ROMANCAL_LITE_BENCH_DIR")
    if env:
        return Path(env).expanduser()
    from romancal_lite.references import default_cache_dir

    return default_cache_dir().parent / "bench"


# ----------------------------------------------------------------------------- inputs


def write_uncal(
    path: str | os.PathLike[str],
    shape: tuple[int, int],
    n_resultants: int,
    *,
    seed: int = 1,
    detector: str = DETECTOR,
    optical_element: str = OPTICAL_ELEMENT,
) -> Path:
    """Write a synthetic Level 1 exposure (``ScienceRawModel``) to ``path``.

    The science pixels are the synthetic scene of ``benchmarks/_data.py`` (sky, stars
    saturating in their cores, cosmic rays, read noise, 5000 DN pedestal; uneven
    romanisim MA-table read patterns).  The 4-pixel border and the ``amp33`` block
    hold only the pedestal and read noise, as reference pixels see no light.  The
    metadata is that of a WFI_IMAGE exposure started 2026-01-01, pointed like the
    romanisim examples (RA 10, Dec -30), with the read pattern, frame time and
    exposure time filled in.

    Parameters
    ----------
    path : path
        Output file (``*_uncal.asdf``).
    shape : tuple of int
        ``(ny, nx)`` of the read-out, border included.
    n_resultants : int
        Number of resultants (9 and 15 are romanisim MA tables 4 and 6).
    seed : int, optional
        Random seed of the scene.
    detector, optical_element : str, optional
        ``meta.instrument`` values.

    Returns
    -------
    Path
        The file written.
    """
    from astropy.time import Time

    from romancal_lite import datamodels

    ny, nx = shape
    frame = make_frame(n_resultants, ny, nx, seed=seed)
    data = frame.data
    rng = np.random.default_rng([seed, n_resultants, ny, nx, 1])
    border = np.zeros((ny, nx), dtype=bool)
    border[:_BORDER] = border[-_BORDER:] = True
    border[:, :_BORDER] = border[:, -_BORDER:] = True
    pedestal = 5000.0 + rng.normal(0.0, 100.0, int(border.sum()))
    for i, reads in enumerate(frame.read_pattern):
        noise = rng.normal(0.0, 5.0 / np.sqrt(len(reads)), pedestal.size)
        data[i][border] = np.rint(pedestal + noise)
    raw = np.clip(data, 0, 65535).astype(np.uint16)
    del data, frame.data
    amp33 = np.clip(np.rint(rng.normal(5000.0, 5.0, (n_resultants, ny, _AMP33_WIDTH))),
                    0, 65535).astype(np.uint16)
    pattern = [list(r) for r in frame.read_pattern]
    exposure_time = FRAME_TIME * pattern[-1][-1]
    start = Time("2026-01-01T00:00:00", scale="utc")
    end = Time(start.mjd + exposure_time / 86400.0, format="mjd", scale="utc")
    end.format = "isot"
    meta = {
        "exposure": {
            "type": "WFI_IMAGE",
            "start_time": start,
            "end_time": end,
            "nresultants": n_resultants,
            "read_pattern": pattern,
            "frame_time": FRAME_TIME,
            "exposure_time": exposure_time,
            "effective_exposure_time": exposure_time,
            "ma_table_name": "SYNTHETIC",
            "ma_table_number": {9: 4, 15: 6}.get(n_resultants, 999),
        },
        "instrument": {"name": "WFI", "detector": detector, "optical_element": optical_element},
        "pointing": {
            "target_ra": 10.0, "target_dec": -30.0, "ra_v1": 10.0, "dec_v1": -30.0,
            "pa_v3": 0.0, "pa_aperture": 0.0, "target_aperture": "WFI_CEN",
        },
        "velocity_aberration": {"ra_reference": 10.0, "dec_reference": -30.0,
                                "scale_factor": 1.0},
        "visit": {"start_time": start},
        "wcsinfo": {
            "aperture_name": "WFI_CEN", "ra_ref": 10.0, "dec_ref": -30.0, "roll_ref": 60.0,
            "v2_ref": 1546.3846181707652, "v3_ref": -892.7916365721071,
            "v3yangle": -60.0, "vparity": -1,
        },
    }
    model = datamodels.ScienceRawModel.create_minimal(
        {"meta": meta, "data": raw, "amp33": amp33}
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def make_references(
    cache_root: str | os.PathLike[str],
    shape: tuple[int, int],
    *,
    detector: str = DETECTOR,
    optical_element: str = OPTICAL_ELEMENT,
) -> dict[str, str]:
    """Generate (once) romancal-lite's reference files for one detector and shape.

    Parameters
    ----------
    cache_root : path
        Directory of a romancal-lite built-in CRDS cache for this shape.
    shape : tuple of int
        ``(ny, nx)`` of the detector read-out.
    detector, optical_element : str, optional
        Which files to write.

    Returns
    -------
    dict
        Reference type -> path, for every type romancal-lite generates.
    """
    from romancal_lite.references import generate_cache

    cache = generate_cache(cache_root, full_shape=shape, detectors=[detector])
    refs: dict[str, str] = {}
    for name, info in sorted(cache.files.items()):
        element = info.get("optical_element")
        if info["detector"] != detector.upper() or element not in (None, optical_element):
            continue
        refs[info["reftype"]] = str(cache.ensure_reference(name))
    return refs


#: Reference types ``romancal_lite.simulate`` takes its detector constants from.
SIMULATOR_REFTYPES = ("gain", "readnoise", "saturation", "linearity", "inverselinearity",
                      "dark", "flat", "distortion")
#: Named MA tables of the simulator, by number of resultants.
_SIMULATOR_PATTERNS = {9: "ma4", 15: "ma6", 10: "ma109"}


def write_input(
    path: str | os.PathLike[str],
    shape: tuple[int, int],
    n_resultants: int,
    refs: Mapping[str, str],
    *,
    seed: int = 1,
    source: str = "auto",
    detector: str = DETECTOR,
    **simulate_options: Any,
) -> str:
    """Write the benchmark exposure with the simulator or the synthetic scene.

    Parameters
    ----------
    path : path
        Output ``*_uncal.asdf``.
    shape : tuple of int
        ``(ny, nx)``.
    n_resultants : int
        Number of resultants (9, 15 and 10 are named MA tables of the simulator;
        other numbers use the read patterns of ``benchmarks/_data.py``).
    refs : mapping
        Reference files; the simulator takes its gain, read noise, saturation,
        non-linearity, dark and flat from them, so the data match the calibration.
    seed : int, optional
        Random seed.
    source : {"auto", "simulate", "synthetic"}, optional
        ``romancal_lite.simulate.write_exposure`` (``auto``: when importable) or
        :func:`write_uncal`.
    detector : str, optional
        ``meta.instrument.detector`` (the references must be that detector's).
    **simulate_options
        Further arguments of ``write_exposure`` (e.g. ``ref_drift_scale=0``); an
        error with the synthetic scene.

    Returns
    -------
    str
        ``"simulate"`` or ``"synthetic"``.
    """
    if source not in ("auto", "simulate", "synthetic"):
        raise ValueError(f"unknown input source {source!r}")
    if source != "synthetic":
        try:
            from romancal_lite.simulate import write_exposure
        except ImportError:
            if source == "simulate":
                raise
        else:
            write_exposure(
                path,
                shape=shape,
                read_pattern=_SIMULATOR_PATTERNS.get(n_resultants) or read_pattern(n_resultants),
                detector=detector,
                optical_element=OPTICAL_ELEMENT,
                seed=seed,
                references={k: v for k, v in refs.items() if k in SIMULATOR_REFTYPES},
                **simulate_options,
            )
            return "simulate"
    if simulate_options:
        raise ValueError(f"options of the simulator only: {sorted(simulate_options)}")
    write_uncal(path, shape, n_resultants, seed=seed, detector=detector)
    return "synthetic"


@dataclass
class Case:
    """One benchmark input: the exposure (or association) and its reference files.

    ``refcat`` (the simulator's reference catalog of the stars, for tweakreg's
    ``abs_refcat``) and ``truth`` (the simulated exposures, with their truth) are set
    when the input was simulated.  ``crds_cache`` (root, context): the references are
    selected from that CRDS cache (an association of several detectors) instead of
    given as overrides (``refs``).
    """

    uncal: Path
    refs: dict[str, str]
    shape: tuple[int, int]
    n_resultants: int
    workdir: Path
    source: str
    prepare_seconds: dict[str, float] = field(default_factory=dict)
    refcat: Path | None = None
    truth: list[Path] = field(default_factory=list)
    crds_cache: tuple[str, str] | None = None
    pointing_error: tuple[float, float, float] | None = None
    n_stars: int | None = None


def _stars_for(shape: tuple[int, int], per_full_frame: int) -> int:
    ny, nx = shape
    return max(1, round(per_full_frame * (ny - 2 * _BORDER) * (nx - 2 * _BORDER)
                        / (FULL_WIDTH - 2 * _BORDER) ** 2))


def _scene_tag(n_stars: int | None, pointing_error: Sequence[float] | None) -> str:
    tag = f"_stars{n_stars}" if n_stars is not None else ""
    if pointing_error is not None:
        tag += "_pe" + "_".join(f"{v:g}" for v in pointing_error)
    return tag


def prepare_case(
    workdir: str | os.PathLike[str],
    shape: tuple[int, int],
    n_resultants: int,
    *,
    seed: int = 1,
    source: str = "auto",
    n_stars: int | None = None,
    pointing_error: Sequence[float] | None = None,
) -> Case:
    """Write (or reuse) the input exposure and reference files of one case.

    Parameters
    ----------
    workdir : path
        Cache directory: ``refs_<ny>x<nx>/`` (a built-in CRDS cache) and
        ``<ny>x<nx>_n<N>_s<seed>.../r..._uncal.asdf``.
    shape : tuple of int
        ``(ny, nx)``.
    n_resultants : int
        Number of resultants.
    seed : int, optional
        Scene seed.
    source : {"auto", "simulate", "synthetic"}, optional
        Input writer, see :func:`write_input`.
    n_stars : int, optional
        Stars of the simulated scene (default: the simulator's).
    pointing_error : (dra_arcsec, ddec_arcsec, roll_arcmin), optional
        Error put into the recorded pointing by the simulator.

    Returns
    -------
    Case
        Paths and the seconds spent creating what was not cached.
    """
    workdir = Path(workdir)
    ny, nx = shape
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    refs = make_references(workdir / f"refs_{ny}x{nx}", shape)
    seconds["references"] = time.perf_counter() - start
    if source == "auto":
        source = "simulate" if importlib.util.find_spec("romancal_lite.simulate") else "synthetic"
    options: dict[str, Any] = {}
    if n_stars is not None:
        options["n_stars"] = int(n_stars)
    if pointing_error is not None:
        options["pointing_error"] = tuple(float(v) for v in pointing_error)
    case_dir = workdir / (f"{ny}x{nx}_n{n_resultants}_s{seed}_{source}"
                          + _scene_tag(n_stars, pointing_error))
    uncal = case_dir / f"r0000101001001001001_0001_{DETECTOR.lower()}_uncal.asdf"
    if not uncal.is_file():
        start = time.perf_counter()
        case_dir.mkdir(parents=True, exist_ok=True)
        tmp = case_dir / "partial_uncal.asdf"
        write_input(tmp, shape, n_resultants, refs, seed=seed, source=source, **options)
        if source == "simulate":
            refcat_tmp = case_dir / "partial_refcat.ecsv"
            if refcat_tmp.is_file():
                refcat_tmp.replace(case_dir / uncal.name.replace("_uncal.asdf", "_refcat.ecsv"))
        tmp.replace(uncal)
        seconds["input"] = time.perf_counter() - start
    refcat = case_dir / uncal.name.replace("_uncal.asdf", "_refcat.ecsv")
    start = time.perf_counter()
    official_refs = {
        reftype: str(official_copy(path, workdir / f"refs_{ny}x{nx}_official" / Path(path).name))
        for reftype, path in refs.items()
    }
    official_uncal = official_copy(uncal, case_dir / "official" / uncal.name)
    seconds["official copies"] = time.perf_counter() - start
    return Case(official_uncal, official_refs, shape, n_resultants, case_dir, source, seconds,
                refcat=refcat if refcat.is_file() else None,
                truth=[uncal] if source == "simulate" else [],
                pointing_error=options.get("pointing_error"), n_stars=n_stars)


def official_cache(cache: Any, root: str | os.PathLike[str]) -> Path:
    """Copy a built-in CRDS cache with every reference file in official (lz4) format.

    Parameters
    ----------
    cache : romancal_lite.references.BuiltinCache
        The generated cache.
    root : path
        Where the copy goes (``config``, ``mappings`` copied; ``references`` rewritten
        by :func:`official_copy`).

    Returns
    -------
    Path
        ``root``.
    """
    src, root = Path(cache.root), Path(root)
    for sub in ("config", "mappings"):
        shutil.copytree(src / sub, root / sub, dirs_exist_ok=True)
    for name in cache.files:
        path = Path(cache.ensure_reference(name))
        official_copy(path, root / path.relative_to(src))
    return root


def prepare_asn_case(
    workdir: str | os.PathLike[str],
    shape: tuple[int, int],
    n_resultants: int,
    detectors: Sequence[str] = ASN_DETECTORS,
    *,
    seed: int = 1,
    n_stars: int | None = None,
    pointing_error: Sequence[float] = ASN_POINTING_ERROR,
) -> Case:
    """Write (or reuse) several detectors of one simulated exposure and their association.

    Each detector is simulated with its own reference files (a built-in CRDS cache for
    all of them, copied in official lz4 format), the same pointing and pointing error;
    their reference catalogs are merged into one ``refcat.ecsv``.  The association
    (``r0000101001001001001_0001_asn.json``) lists the official copies with one shared
    ``group_id`` (one exposure, hence one joint absolute fit in both pipelines).

    Parameters
    ----------
    workdir : path
        Cache directory.
    shape : tuple of int
        ``(ny, nx)`` of each detector's read-out.
    n_resultants : int
        Number of resultants.
    detectors : sequence of str
        Detector names.
    seed : int, optional
        Scene seed (detector ``i`` uses ``seed + i``).
    n_stars : int, optional
        Stars per detector (default :data:`STARS_PER_FULL_FRAME` scaled by area).
    pointing_error : (dra_arcsec, ddec_arcsec, roll_arcmin), optional
        The exposure's pointing error.

    Returns
    -------
    Case
        ``uncal`` is the association; ``crds_cache`` the official cache and context.
    """
    from astropy.table import vstack

    from romancal_lite.references import generate_cache

    workdir = Path(workdir)
    ny, nx = shape
    detectors = [d.upper() for d in detectors]
    n_stars = _stars_for(shape, STARS_PER_FULL_FRAME) if n_stars is None else n_stars
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    cache = generate_cache(workdir / f"crds_{ny}x{nx}", full_shape=shape, detectors=detectors)
    seconds["references"] = time.perf_counter() - start
    case_dir = workdir / (f"asn_{ny}x{nx}_n{n_resultants}_s{seed}_{'-'.join(detectors)}"
                          + _scene_tag(n_stars, pointing_error))
    official_dir = case_dir / "official"
    official_dir.mkdir(parents=True, exist_ok=True)
    base = "r0000101001001001001_0001"
    uncals, refcats = [], []
    start = time.perf_counter()
    for index, det in enumerate(detectors):
        uncal = case_dir / f"{base}_{det.lower()}_uncal.asdf"
        refcat = case_dir / f"{base}_{det.lower()}_refcat.ecsv"
        if not (uncal.is_file() and refcat.is_file()):
            refs = {}
            for name, info in cache.files.items():
                if info["detector"] == det and info["reftype"] in SIMULATOR_REFTYPES and \
                        info.get("optical_element") in (None, OPTICAL_ELEMENT):
                    refs[info["reftype"]] = str(cache.ensure_reference(name))
            write_input(uncal, shape, n_resultants, refs, seed=seed + index,
                        source="simulate", detector=det, n_stars=int(n_stars),
                        pointing_error=tuple(float(v) for v in pointing_error))
        uncals.append(uncal)
        refcats.append(refcat)
    seconds["input"] = time.perf_counter() - start
    start = time.perf_counter()
    root = official_cache(cache, workdir / f"crds_{ny}x{nx}_official")
    members = [official_copy(u, official_dir / u.name) for u in uncals]
    seconds["official copies"] = time.perf_counter() - start
    refcat = official_dir / "refcat.ecsv"
    if not refcat.is_file():
        from astropy.table import Table

        vstack([Table.read(r) for r in refcats], metadata_conflicts="silent").write(
            refcat, overwrite=True)
    asn = official_dir / f"{base}_asn.json"
    asn.write_text(json.dumps({
        "asn_id": "a3001", "asn_type": "image", "asn_pool": "benchmark",
        "products": [{"name": base, "members": [
            {"expname": m.name, "exptype": "science", "group_id": base} for m in members
        ]}],
    }, indent=1))
    return Case(asn, {}, shape, n_resultants, case_dir, "simulate", seconds, refcat=refcat,
                truth=uncals, crds_cache=(str(root), cache.context),
                pointing_error=tuple(float(v) for v in pointing_error), n_stars=n_stars)


def official_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Rewrite ``src`` with roman_datamodels, as every official file is written (or reuse it).

    roman_datamodels' ``save`` compresses every array block with lz4 (its default), as
    the files of a real CRDS cache and the archive's exposures are: both pipelines then
    pay the decompression a user pays.

    Parameters
    ----------
    src, dst : path
        The file written by romancal-lite, and where its official copy goes.

    Returns
    -------
    Path
        ``dst``.
    """
    import roman_datamodels.datamodels as rdm

    dst = Path(dst)
    if dst.is_file() and dst.stat().st_mtime >= Path(src).stat().st_mtime:
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    # written under its own name (save records it as meta.filename, which romancal keeps)
    # in a folder beside it, then moved into place
    tmp = dst.parent / ".partial" / dst.name
    tmp.parent.mkdir(exist_ok=True)
    with rdm.open(src) as model:
        model.save(tmp)  # all_array_compression="lz4" by default
    tmp.replace(dst)
    return dst


# ------------------------------------------------------------------------------- ours


def run_ours(
    uncal_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    refs: Mapping[str, str | os.PathLike[str]],
    *,
    skip: tuple[str, ...] = (),
    abs_refcat: str | os.PathLike[str] | None = None,
    ramp_fit: str = "ols_cas22",
) -> tuple[Path | list[Path], dict[str, float]]:
    """Run romancal-lite's ExposurePipeline on one exposure with reference overrides.

    Parameters
    ----------
    uncal_path : path
        Level 1 input, or an ``_asn.json`` association of several.
    output_dir : path
        Output directory (created).
    refs : mapping
        Reference type -> file; the types the pipeline reads are given as
        ``override_<reftype>`` (empty: the references come from the CRDS the
        environment names).
    skip : tuple of str, optional
        Steps to skip (e.g. ``("refpix",)``).
    abs_refcat : path, optional
        A local reference catalog for tweakreg: source_catalog and tweakreg run.
        None: both are skipped (through flatfield, as ``_romancal.run_romancal``).
    ramp_fit : {"ols_cas22", "likely"}, optional
        ``ramp_fit``'s algorithm (default ``ols_cas22``).

    Returns
    -------
    cal_path : Path or list of Path
        The ``_cal`` file (a list for an association).
    per_step_seconds : dict
        Step name -> wall seconds of its ``Step.run``, plus ``"total"`` (the pipeline
        call: reading, steps, writing).
    """
    from romancal_lite import stpipe
    from romancal_lite.pipeline import ExposurePipeline

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    overrides = {
        f"override_{reftype}": str(refs[reftype])
        for reftype in ExposurePipeline.reference_file_types
        if reftype in refs
    }
    if refs:  # optional types not given are N/A, as for romancal (_romancal.NOT_APPLICABLE)
        for reftype in _romancal.NOT_APPLICABLE:
            if reftype in ExposurePipeline.reference_file_types and reftype not in refs:
                overrides[f"override_{reftype}"] = "N/A"
    steps: dict[str, dict[str, Any]] = {name: {"skip": True} for name in skip}
    if ramp_fit != "ols_cas22":
        steps.setdefault("ramp_fit", {})["algorithm"] = ramp_fit
    if abs_refcat is None:
        steps.update({name: {"skip": True} for name in CATALOG_STEPS})
    else:
        steps.setdefault("tweakreg", {})["abs_refcat"] = str(Path(abs_refcat).resolve())
    with _romancal.step_timer(stpipe.Step) as times:
        start = time.perf_counter()
        ExposurePipeline.call(
            str(uncal_path), output_dir=str(output_dir), save_results=True,
            steps=steps, **overrides,
        )
        total = time.perf_counter() - start
    cals = [_romancal.cal_path_for(m, output_dir) for m in _romancal.input_members(uncal_path)]
    for cal in cals:
        if not cal.is_file():
            raise RuntimeError(f"romancal_lite wrote no {cal.name} in {output_dir}")
    not_run = (ExposurePipeline.class_alias, "ExposurePipeline",
               *(CATALOG_STEPS if abs_refcat is None else ()))
    per_step = {name: seconds for name, seconds in times.items() if name not in not_run}
    per_step["total"] = total
    return (cals if Path(uncal_path).suffix == ".json" else cals[0]), per_step


def run_ours_subprocess(
    uncal_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    refs: Mapping[str, str | os.PathLike[str]],
    *,
    timeout: float | None = None,
    abs_refcat: str | os.PathLike[str] | None = None,
    crds_cache: tuple[str, str] | None = None,
    reference_cache: str | os.PathLike[str] | None = None,
    ramp_fit: str = "ols_cas22",
) -> dict[str, Any]:
    """Run :func:`run_ours` in a fresh interpreter (its own peak memory).

    Parameters
    ----------
    uncal_path : path
        Level 1 input (or an ``_asn.json`` association).
    output_dir : path
        Output directory (also receives ``run.log``).
    refs : mapping
        Reference type -> file.
    timeout : float, optional
        Seconds before the run is killed.
    abs_refcat : path, optional
        See :func:`run_ours`.
    crds_cache : (root, context), optional
        Select the references from this CRDS cache (``refs`` should be empty): the
        worker runs in ``_romancal.crds_cache_environment``, the "user's CRDS" of
        romancal-lite.
    reference_cache : path, optional
        Run with ``ROMANCAL_LITE_REFERENCE_CACHE`` set to this directory (uncompressed
        copies of compressed references; see :func:`prime_reference_cache`).
    ramp_fit : {"ols_cas22", "likely"}, optional
        See :func:`run_ours`.

    Returns
    -------
    dict
        See ``_romancal.run_script_subprocess``.
    """
    args = ["--worker", str(uncal_path), str(output_dir), f"--ramp-fit={ramp_fit}"]
    if abs_refcat is not None:
        args.append(f"--abs-refcat={abs_refcat}")
    env = dict(_romancal.crds_cache_environment(*crds_cache)) if crds_cache is not None else {}
    if reference_cache is not None:
        from romancal_lite.references.uncompressed import CACHE_ENV

        env[CACHE_ENV] = str(Path(reference_cache).resolve())
    env = env or None
    return _romancal.run_script_subprocess(
        Path(__file__).resolve(), args, Path(output_dir), refs, timeout=timeout, env=env,
    )


def _worker(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="pipeline.py --worker")
    parser.add_argument("uncal", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--refs", type=Path, required=True)
    parser.add_argument("--result", type=Path)
    parser.add_argument("--abs-refcat", type=Path, default=None)
    parser.add_argument("--ramp-fit", choices=["ols_cas22", "likely"], default="ols_cas22")
    args = parser.parse_args(argv)
    refs = json.loads(args.refs.read_text())
    import romancal_lite.pipeline  # noqa: F401  (imports before the "before" RSS)

    runner = functools.partial(run_ours, abs_refcat=args.abs_refcat, ramp_fit=args.ramp_fit)
    result = _romancal.run_worker("ours", args.uncal, args.output_dir, refs, runner)
    import romancore

    result["threads"] = romancore.effective_n_threads()
    text = json.dumps(result)
    if args.result:
        args.result.write_text(text)
    print(text)
    return 0


# ----------------------------------------------------------------------------- checks


def _sep_mas(ra1: Any, dec1: Any, ra2: Any, dec2: Any) -> np.ndarray:
    dra = (np.asarray(ra1, float) - np.asarray(ra2, float) + 180.0) % 360.0 - 180.0
    return np.hypot(dra * np.cos(np.radians(np.asarray(dec2, float))),
                    np.asarray(dec1, float) - np.asarray(dec2, float)) * 3.6e6


def describe_products(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    truth: Sequence[str | os.PathLike[str]] = (),
) -> list[dict[str, Any]]:
    """Summarise each exposure's products: catalog size, tweakreg fit, WCS error.

    Run in the parent after a pipeline run (not timed).  The catalog size is the
    row count of ``<name>_cat.parquet``; the fit is the ``_cal`` file's
    ``meta.wcs_fit_results`` (shift in arcsec, rotation in degrees, matches); the
    WCS error is the separation between the simulated stars' true sky positions and
    their pixel positions through the ``_cal`` file's (aligned) WCS.

    Parameters
    ----------
    input_path : path
        The pipeline's input (an exposure or an association).
    output_dir : path
        Its output directory.
    truth : sequence of path
        The simulated exposures (holding the truth), in the input's order, or empty.

    Returns
    -------
    list of dict
        One entry per exposure.
    """
    import warnings

    import asdf

    names = _romancal.output_names(input_path, output_dir)
    truths = list(truth) or [None] * len(names)
    out = []
    for name, truth_path in zip(names, truths, strict=True):
        entry: dict[str, Any] = {"name": name}
        cat = Path(output_dir) / f"{name}_cat.parquet"
        if cat.is_file():
            import pyarrow.parquet as pq

            entry["n_sources"] = int(pq.read_metadata(cat).num_rows)
        cal = Path(output_dir) / f"{name}_cal.asdf"
        with warnings.catch_warnings():
            # "created with extension ... romancal-lite ... not installed"
            warnings.simplefilter("ignore", asdf.exceptions.AsdfPackageVersionWarning)
            af = asdf.open(cal, lazy_load=True, memmap=False)
        with af:
            meta = af.tree["roman"]["meta"]
            entry["tweakreg"] = str(meta["cal_step"].get("tweakreg", ""))
            fit = meta.get("wcs_fit_results")
            if fit is not None:
                entry["fit"] = {
                    key: (np.asarray(fit[key]).tolist() if key in fit else None)
                    for key in ("status", "fitgeom", "shift", "<rot>", "<scale>", "nmatches",
                                "rmse", "n_detector")
                }
                entry["fit"]["status"] = str(fit.get("status"))
            if truth_path is not None:
                from romancal_lite.simulate import read_truth

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", asdf.exceptions.AsdfPackageVersionWarning)
                    stars = read_truth(truth_path)["stars"]
                x, y = np.asarray(stars["x"], float), np.asarray(stars["y"], float)
                ra, dec = meta["wcs"](x, y, with_bounding_box=False)
                err = _sep_mas(ra, dec, stars["ra"], stars["dec"])
                entry["wcs_error_mas"] = {"median": float(np.median(err)),
                                          "max": float(np.max(err)), "n_stars": int(len(x))}
        out.append(entry)
    return out


def describe_line(label: str, products: Sequence[Mapping[str, Any]]) -> str:
    """One line per pipeline: sources, fit shift and rotation, matches, WCS error."""
    parts = []
    for p in products:
        fit = p.get("fit") or {}
        text = f"{p['name'].split('_')[-1]}: {p.get('n_sources', '-')} sources"
        if fit:
            shift = fit.get("shift") or [float("nan")] * 2
            rot = fit.get("<rot>")
            text += (f", tweakreg {fit.get('status')} shift ({shift[0]:+.3f}, {shift[1]:+.3f})"
                     f"\" rot {rot * 60 if rot is not None else float('nan'):+.3f}'"
                     f" {fit.get('nmatches')} matches")
        else:
            text += f", tweakreg {p.get('tweakreg') or '-'}"
        if "wcs_error_mas" in p:
            e = p["wcs_error_mas"]
            text += f", WCS - truth median {e['median']:.2f} mas (max {e['max']:.2f})"
        parts.append(text)
    return f"{label}: " + "; ".join(parts)


# ------------------------------------------------------------------------------ table


def _step_seconds(result: Mapping[str, Any] | None, names: Sequence[str]) -> float | None:
    if not result:
        return None
    for name in names:
        if name in result["steps"]:
            return float(result["steps"][name])
    return None


def _fmt(value: float | None, spec: str = "8.2f") -> str:
    return format(value, spec) if value is not None else format("-", ">" + spec.split(".")[0])


def _ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None or den <= 0:
        return "      -"
    return f"{num / den:6.1f}x"


def format_table(
    shape: tuple[int, int],
    n_resultants: int,
    ours: Mapping[str, Any] | None,
    romancal: Mapping[str, Any] | None,
    *,
    markdown: bool = False,
    title: str | None = None,
    checks: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> str:
    """Return the table of one case.

    Parameters
    ----------
    shape : tuple of int
        Frame shape.
    n_resultants : int
        Number of resultants.
    ours, romancal : mapping or None
        Worker results (None: not run).
    markdown : bool, optional
        Markdown table instead of aligned text.
    title : str, optional
        Replaces the default title (shape, resultants).
    checks : mapping, optional
        ``{"ours": [...], "romancal": [...]}`` of :func:`describe_products`: printed
        below the table, one line per pipeline.

    Returns
    -------
    str
        The table.
    """
    rows: list[tuple[str, str, str, str]] = []
    ran_catalog = False
    for label, ours_names, rc_name in STEPS:
        t_ours = _step_seconds(ours, ours_names)
        t_rc = _step_seconds(romancal, (rc_name,))
        if label in CATALOG_STEPS:
            if t_ours is None and t_rc is None:
                continue
            ran_catalog = True
        rows.append((label, _fmt(t_ours), _fmt(t_rc), _ratio(t_rc, t_ours)))
    sums = [sum(r["steps"].get(n, 0.0) for n in r["steps"]) if r else None
            for r in (ours, romancal)]
    rows.append(("sum of steps", _fmt(sums[0]), _fmt(sums[1]), _ratio(sums[1], sums[0])))
    totals = [r["total"] if r else None for r in (ours, romancal)]
    outside = [t - s if t is not None and s is not None else None
               for t, s in zip(totals, sums, strict=True)]
    rows.append(("outside steps (I/O, setup)", _fmt(outside[0]), _fmt(outside[1]),
                 _ratio(outside[1], outside[0])))
    through = "THROUGH TWEAKREG (call)" if ran_catalog else "THROUGH FLATFIELD (call)"
    rows.append((through, _fmt(totals[0]), _fmt(totals[1]), _ratio(totals[1], totals[0])))
    if ran_catalog:
        before = [_call_without_catalog(r) for r in (ours, romancal)]
        rows.append(("call - catalog steps", _fmt(before[0]), _fmt(before[1]),
                     _ratio(before[1], before[0])))
    walls = [r["wall"] if r else None for r in (ours, romancal)]
    rows.append(("process wall (+imports)", _fmt(walls[0]), _fmt(walls[1]),
                 _ratio(walls[1], walls[0])))
    mem = [r["peak_rss"] / 2**20 if r else None for r in (ours, romancal)]
    rows.append(("peak RSS [MB]", _fmt(mem[0], "8.0f"), _fmt(mem[1], "8.0f"),
                 _ratio(mem[1], mem[0])))
    base = [r["rss_before"] / 2**20 if r else None for r in (ours, romancal)]
    rows.append(("RSS after imports [MB]", _fmt(base[0], "8.0f"), _fmt(base[1], "8.0f"), ""))
    title = title or (f"{shape[0]} x {shape[1]} pixels, {n_resultants} resultants "
                      f"(times in s; ratio = romancal / ours)")
    head = ("step", "ours", "romancal 1.1", "ratio")
    notes = [describe_line(who, checks[who]) for who in ("ours", "romancal")
             if checks and checks.get(who)]
    if markdown:
        lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|---|---:|---:|---:|"]
        lines += ["| " + " | ".join(c.strip() for c in row) + " |" for row in rows]
        if notes:
            lines += [""] + [f"* {n}" for n in notes]
        return "\n".join(lines)
    lines = [title, f"{head[0]:<26}{head[1]:>10}{head[2]:>14}{head[3]:>9}"]
    lines += [f"{a:<26}{b:>10}{c:>14}{d:>9}" for a, b, c, d in rows]
    lines += notes
    return "\n".join(lines)


def _call_without_catalog(result: Mapping[str, Any] | None) -> float | None:
    if not result:
        return None
    return result["total"] - sum(result["steps"].get(n, 0.0) for n in CATALOG_STEPS)


def verdict(ours: Mapping[str, Any] | None, romancal: Mapping[str, Any] | None) -> str:
    """Return the target check of issue 9 (or of the through-flatfield comparison).

    With the catalog steps: source_catalog and tweakreg each >= 10x faster, the
    speed-up of the whole call at least that of the call without them (the two steps
    gain rather than lose), peak memory <= 1/4.  Without: the through-flatfield
    speed-up >= 20 and the memory.

    Parameters
    ----------
    ours, romancal : mapping or None
        Worker results.

    Returns
    -------
    str
        One line.
    """
    if not ours or not romancal:
        return "targets: need both pipelines"
    speed = romancal["total"] / ours["total"]
    memory = ours["peak_rss"] / romancal["peak_rss"]
    mem_text = (f"peak memory ours/romancal {memory:.3f} (<= 0.25: "
                f"{'yes' if memory <= 0.25 else 'NO'})")
    if not all(n in ours["steps"] and n in romancal["steps"] for n in CATALOG_STEPS):
        return (f"targets: speed-up {speed:.1f}x (>= 20: {'yes' if speed >= 20 else 'NO'}), "
                + mem_text)
    parts = []
    for name in CATALOG_STEPS:
        r = romancal["steps"][name] / max(ours["steps"][name], 1e-9)
        parts.append(f"{name} {r:.1f}x (>= 10: {'yes' if r >= 10 else 'NO'})")
    without = _call_without_catalog(romancal) / max(_call_without_catalog(ours), 1e-9)
    parts.append(f"through tweakreg {speed:.1f}x vs {without:.1f}x without the catalog steps "
                 f"(gains: {'yes' if speed >= without else 'NO'})")
    return "targets: " + ", ".join(parts) + ", " + mem_text


def _have_romancal() -> bool:
    return _romancal.romancal_version() is not None


def _best(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Fastest run (by the pipeline call); its peak memory is the largest seen."""
    best = dict(min(results, key=lambda r: r["total"]))
    best["peak_rss"] = max(r["peak_rss"] for r in results)
    return best


_LARGE_OUTPUTS = ("_cal.asdf", "_wcs.asdf", "_segm.asdf")


def _remove_outputs(directory: Path) -> None:
    for suffix in _LARGE_OUTPUTS:
        for f in directory.glob(f"*{suffix}"):
            f.unlink()


def prime_reference_cache(refs: Mapping[str, str | os.PathLike[str]],
                          directory: str | os.PathLike[str]) -> float:
    """Write the uncompressed copies of ``refs`` into ``directory``; return the seconds.

    What the first exposure of a detector pays once with ``ROMANCAL_LITE_REFERENCE_CACHE``
    (later runs only map the copies); not part of the timed runs.
    """
    from romancal_lite.references.uncompressed import uncompressed_reference

    start = time.perf_counter()
    for path in refs.values():
        if Path(path).is_file():
            uncompressed_reference(path, directory)
    return time.perf_counter() - start


def run_case(case: Case, which: Sequence[str], *, repeat: int = 1, through: str = "tweakreg",
             timeout: float | None = None, keep_outputs: bool = False, tag: str = "",
             reference_cache: str | os.PathLike[str] | None = None,
             ramp_fit: str = "ols_cas22") -> dict[str, Any]:
    """Run the pipelines on one case; return their results and the product checks.

    Parameters
    ----------
    case : Case
        The input (an exposure or an association).
    which : sequence of str
        ``"ours"`` and/or ``"romancal"``.
    repeat : int, optional
        Runs of ours (fastest reported, largest peak memory); romancal runs once.
    through : {"tweakreg", "flatfield"}, optional
        With "tweakreg" (and a reference catalog) both run source_catalog and tweakreg.
    timeout : float, optional
        Seconds before a run is killed.
    keep_outputs : bool, optional
        Keep the ``_cal``, ``_wcs`` and ``_segm`` files (catalogs are always kept).
    tag : str, optional
        Prefix of the output directories.
    reference_cache : path, optional
        Ours reads uncompressed copies of the references from this directory (primed
        before the timed runs, the priming reported but not timed).
    ramp_fit : {"ols_cas22", "likely"}, optional
        The ramp-fit algorithm of both pipelines.

    Returns
    -------
    dict
        ``ours``, ``romancal`` (worker results or None) and ``checks``.
    """
    abs_refcat = case.refcat if through == "tweakreg" else None
    if through == "tweakreg" and abs_refcat is None:
        raise ValueError("through tweakreg needs a simulated input with a reference catalog")
    results: dict[str, Any] = {"ours": None, "romancal": None, "checks": {}}
    if "ours" in which:
        if reference_cache is not None:
            seconds = prime_reference_cache(case.refs, reference_cache)
            print(f"# reference cache {reference_cache}: primed in {seconds:.1f} s (not timed)")
            results["reference_cache_prime_seconds"] = seconds
        runs = []
        for i in range(max(repeat, 1)):
            out = case.workdir / f"{tag}out_ours_{i}"
            shutil.rmtree(out, ignore_errors=True)
            runs.append(run_ours_subprocess(case.uncal, out, case.refs, timeout=timeout,
                                            abs_refcat=abs_refcat,
                                            crds_cache=case.crds_cache,
                                            reference_cache=reference_cache,
                                            ramp_fit=ramp_fit))
            if i == 0:
                results["checks"]["ours"] = describe_products(case.uncal, out, case.truth)
            if not keep_outputs:
                _remove_outputs(out)
        results["ours"] = _best(runs)
    if "romancal" in which:
        out = case.workdir / f"{tag}out_romancal"
        shutil.rmtree(out, ignore_errors=True)
        results["romancal"] = _romancal.run_romancal_subprocess(
            case.uncal, out, case.refs, timeout=timeout, abs_refcat=abs_refcat,
            crds_cache=case.crds_cache, ramp_fit=ramp_fit,
        )
        results["checks"]["romancal"] = describe_products(case.uncal, out, case.truth)
        if not keep_outputs:
            _remove_outputs(out)
    return results


def _asn_title(entry: Mapping[str, Any]) -> str:
    ny, nx = entry["shape"]
    dets = entry.get("detectors") or []
    return (f"association of {len(dets)} detectors of one exposure ({', '.join(dets)}), "
            f"{ny} x {nx} pixels each, {entry['n_resultants']} resultants, joint tweakreg "
            f"(times in s, summed over the detectors; ratio = romancal / ours)")


def _print_entry(entry: Mapping[str, Any], markdown: bool) -> None:
    title = _asn_title(entry) if entry.get("case") == "association" else None
    if title is None and entry.get("pointing_error") is not None:
        ny, nx = entry["shape"]
        title = (f"{ny} x {nx} pixels, {entry['n_resultants']} resultants, "
                 f"{entry.get('n_stars')} stars simulated, pointing error "
                 f"{tuple(entry['pointing_error'])} (arcsec, arcsec, arcmin) "
                 f"(times in s; ratio = romancal / ours)")
    print(format_table(tuple(entry["shape"]), entry["n_resultants"], entry["ours"],
                       entry["romancal"], markdown=markdown, title=title,
                       checks=entry.get("checks")))
    if markdown:
        print()
    print(verdict(entry["ours"], entry["romancal"]))
    print()
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; see the module docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _worker(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=None,
                        help=f"NY or NYxNX (default ${SIZE_ENV} or 4096x4096)")
    parser.add_argument("--resultants", type=int, nargs="+", default=[9])
    parser.add_argument("--only", choices=["ours", "romancal"], default=None)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of ours per case (best is reported); romancal runs once")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--input", choices=["auto", "simulate", "synthetic"], default="auto",
                        help="input writer: romancal_lite.simulate or the benchmarks/_data.py "
                             "scene (auto: the simulator when available)")
    parser.add_argument("--through", choices=["tweakreg", "flatfield"], default="tweakreg",
                        help="run source_catalog and tweakreg too (default; needs the "
                             "simulator), or stop after flatfield")
    parser.add_argument("--stars", type=int, default=STARS_PER_FULL_FRAME,
                        help="simulated stars per full 4088 x 4088 frame (scaled by area)")
    parser.add_argument("--asn-detectors", type=int, default=len(ASN_DETECTORS),
                        help="detectors of the association case (0: no association case)")
    parser.add_argument("--asn-size", type=parse_size, default=ASN_SIZE,
                        help="NY or NYxNX of each detector of the association case")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="cache of inputs, references and outputs "
                             "(default $ROMANCAL_LITE_BENCH_DIR or ~/.cache/romancal_lite/bench)")
    parser.add_argument("--timeout", type=float, default=7200.0,
                        help="seconds before a pipeline run is killed")
    parser.add_argument("--keep-outputs", action="store_true",
                        help="keep the _cal, _wcs and _segm files (default: removed after "
                             "each run; catalogs are kept)")
    parser.add_argument("--reference-cache", type=Path, default=None, metavar="DIR",
                        help="ours reads uncompressed copies of the (compressed) references "
                             "from DIR (ROMANCAL_LITE_REFERENCE_CACHE), primed before timing")
    parser.add_argument("--ramp-fit", choices=["ols_cas22", "likely"], default="ols_cas22",
                        help="ramp-fit algorithm of both pipelines (likely: the likelihood "
                             "fit, romancal 1.1's own default)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path, help="write all results to this file")
    parser.add_argument("--from-json", type=Path,
                        help="only print the tables of a file written by --json")
    args = parser.parse_args(argv)
    if args.from_json:
        for entry in json.loads(args.from_json.read_text()):
            _print_entry(entry, args.markdown)
        return 0

    shape = args.size or bench_size()
    workdir = args.workdir or default_workdir()
    which = [w for w in ("ours", "romancal") if args.only in (None, w)]
    if "romancal" in which and not _have_romancal():
        print("romancal is not installed: only ours runs", file=sys.stderr)
        which.remove("romancal")
    if "romancal" in which and shape[1] != FULL_WIDTH:
        print(f"romancal's refpix needs {FULL_WIDTH} columns: only ours runs at {shape}",
              file=sys.stderr)
        which.remove("romancal")
    if not which:
        return 1
    catalog = args.through == "tweakreg"
    if catalog and args.input == "synthetic":
        parser.error("--through tweakreg needs the simulator (--input simulate or auto)")

    import romancore

    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, numpy {np.__version__}, "
          f"romancore OpenMP {romancore.openmp_enabled()}, "
          f"romancal {_romancal.romancal_version() or 'not installed'}")
    print(f"# workdir {workdir}; pipelines in fresh subprocesses, one at a time")
    all_results: list[dict[str, Any]] = []

    def record(entry: dict[str, Any]) -> None:
        _print_entry(entry, args.markdown)
        all_results.append(entry)
        if args.json:
            args.json.write_text(json.dumps(all_results, indent=1))

    for n in args.resultants:
        options: dict[str, Any] = {}
        if catalog:
            options = {"n_stars": _stars_for(shape, args.stars),
                       "pointing_error": POINTING_ERROR}
        case = prepare_case(workdir, shape, n, seed=args.seed, source=args.input, **options)
        done = ", ".join(f"{k} {v:.1f} s" for k, v in case.prepare_seconds.items())
        print(f"# input {case.uncal} ({case.source}, {n} resultants); prepared: {done} "
              "(not timed)")
        if catalog:
            print(f"# abs_refcat {case.refcat}; {case.n_stars} stars, pointing error "
                  f"{case.pointing_error}")
        results = run_case(case, which, repeat=args.repeat, through=args.through,
                           timeout=args.timeout, keep_outputs=args.keep_outputs,
                           reference_cache=args.reference_cache, ramp_fit=args.ramp_fit)
        print()
        record({"case": "exposure", "shape": list(shape), "n_resultants": n,
                "ramp_fit": args.ramp_fit,
                "input": case.source, "n_stars": case.n_stars,
                "pointing_error": case.pointing_error, **results})
    if catalog and args.asn_detectors > 0:
        asn_shape = args.asn_size
        detectors = ASN_DETECTORS[: args.asn_detectors]
        if len(detectors) < args.asn_detectors:
            detectors = tuple(f"WFI{i:02d}" for i in range(1, args.asn_detectors + 1))
        asn_which = [w for w in which if w == "ours" or asn_shape[1] == FULL_WIDTH]
        n = args.resultants[0]
        case = prepare_asn_case(workdir, asn_shape, n, detectors, seed=args.seed,
                                n_stars=_stars_for(asn_shape, args.stars))
        done = ", ".join(f"{k} {v:.1f} s" for k, v in case.prepare_seconds.items())
        print(f"# association {case.uncal} ({len(detectors)} detectors); references from "
              f"the CRDS cache {case.crds_cache[0]} ({case.crds_cache[1]}); prepared: "
              f"{done} (not timed)")
        results = run_case(case, asn_which, repeat=args.repeat, through=args.through,
                           timeout=args.timeout, keep_outputs=args.keep_outputs,
                           ramp_fit=args.ramp_fit)
        print()
        record({"case": "association", "shape": list(asn_shape), "n_resultants": n,
                "input": case.source, "detectors": list(detectors), "n_stars": case.n_stars,
                "pointing_error": case.pointing_error, **results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
