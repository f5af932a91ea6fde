"""``source_catalog`` against romancal 1.1's ``SourceCatalogStep`` on the same ``_cal`` image.

The image (module `simulated_cal`, shared with ``test_tweakreg_vs_romancal.py``): a
512 x 504 WFI03 exposure of 400 stars (100-30 000 e/s, the simulator's F158-like PSF,
sky and read noise, cosmic rays) made by ``romancal_lite.simulate`` and calibrated by
``roman_elp`` with the built-in references. roman_datamodels opens and validates it,
and both pipelines read that file.

romancal runs offline in a subprocess (``benchmarks/_romancal.py``'s empty CRDS cache,
sockets refused), importing while the image is made; ours runs in this process at the
same time, with the same parameters and the same EPSF and APCORR files (our built-in
ones). PSF photometry is on in both when our step fits PSFs (`ours_fits_psf`), else
off in both. romancal's ``dust_ebv`` lookup fails offline and is NaN, as romancal logs.
Sources are matched by label (the segmentation maps are identical) and every shared
column is compared with the tolerance stated next to it; the measured agreement and
the known differences are in docs/steps/source_catalog.md ("Differences from romancal
1.1"). ``-s`` prints the measured differences.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
NAME = "r0000101001001001001_0001_wfi03"
#: Read-out shape (the science image is 512 x 504: the 4-pixel reference border is cut).
FULL_SHAPE = (520, 512)
N_STARS = 400
SEED = 11
#: The steps' parameters (romancal 1.1's defaults, PSF fitting off in both).
PARAMS = {"bkg_boxsize": 1000, "kernel_fwhm": 2.0, "snr_threshold": 3.0, "npixels": 25,
          "deblend": False, "fit_psf": False}
#: Columns romancal 1.1 writes (with ``fit_psf=False``) that ours may lack (work in
#: progress; docs/steps/source_catalog.md): the test prints which ones it does.
MAY_LACK = {"sharpness", "roundness1", "is_extended", "dust_ebv"}
#: PSF-fitting columns: compared when our step fits PSFs (`ours_fits_psf`), else both
#: steps run with ``fit_psf=False``.
PSF_COLUMNS = {"x_psf", "x_psf_err", "y_psf", "y_psf_err", "ra_psf", "dec_psf", "ra_psf_err",
               "dec_psf_err", "psf_flux", "psf_flux_err", "psf_flags", "psf_gof"}
#: romancal 1.1 writes zero placeholders here; ours are propagated from ``err``.
CENTROID_ERRORS = ("x_centroid_err", "y_centroid_err", "x_centroid_win_err",
                   "y_centroid_win_err", "ra_centroid_err", "dec_centroid_err",
                   "ra_centroid_win_err", "dec_centroid_win_err")
#: ``roman.meta.*`` keys only ours writes (provenance of romancal-lite; two keys the
#: simulated image has and roman_datamodels' catalog model drops, not in its schema).
OUR_EXTRA_META = ("roman.meta.ref_file.pedigree.", "roman.meta.ref_file.source",
                  "roman.meta.exposure.mid_time", "roman.meta.visit.status")
#: ``roman.meta.*`` values that differ by construction (the product, the software, CRDS).
DIFFERENT_META = {"roman.meta.filename", "roman.meta.file_date", "roman.meta.model_type",
                  "roman.meta.calibration_software_version", "roman.meta.ref_file.apcorr",
                  "roman.meta.ref_file.crds.context", "roman.meta.ref_file.crds.version"}

_MISSING = [m for m in ("romancal", "roman_datamodels") if importlib.util.find_spec(m) is None]

pytestmark = [
    pytest.mark.skipif(bool(_MISSING), reason=f"romancal cannot run: {', '.join(_MISSING)}"
                       " not installed (the test extra installs them)"),
    # roman_datamodels reading our files: "created with extension ... not installed"
    pytest.mark.filterwarnings("ignore::asdf.exceptions.AsdfPackageVersionWarning"),
]

# ---------------------------------------------------------------------- romancal worker

#: romancal's side, run as ``python worker.py REPO OUTDIR``: import romancal while the
#: parent prepares the input, then read ``{"cal", "overrides", "params"}`` from stdin,
#: validate the input with roman_datamodels and run the step.
WORKER = textwrap.dedent('''
    import json, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from benchmarks._romancal import (
        _apply_environment, network_guard, offline_crds_environment)

    out = Path(sys.argv[2])
    _apply_environment(offline_crds_environment(out / "crds_offline"))
    import numpy as np
    import roman_datamodels.datamodels as rdm
    from romancal.source_catalog import SourceCatalogStep

    job = json.loads(sys.stdin.readline())
    cal = Path(job["cal"])
    with rdm.open(cal) as model:
        model.validate()
    start = time.perf_counter()
    with network_guard() as attempts:
        step = SourceCatalogStep(output_dir=str(out), save_results=True,
                                 override_apcorr=job["overrides"]["apcorr"], **job["params"])
        # romancal 1.1 reads EPSF without declaring it (no override_epsf parameter);
        # stpipe's get_reference_file still honours the attribute
        step.override_epsf = job["overrides"]["epsf"]
        step.run(str(cal))
    seconds = time.perf_counter() - start
    if attempts:
        raise RuntimeError(f"romancal tried to use the network: {attempts}")
    (out / "result.json").write_text(json.dumps({"seconds": seconds}))
''')


def start_romancal(script: str, out: Path) -> subprocess.Popen:
    """Start a romancal worker (``script REPO OUT``); it imports, then waits for its job.

    Its output goes to ``out/run.log``; `finish_romancal` sends the job and waits.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / "worker.py"
    path.write_text(script)
    log = open(out / "run.log", "w")  # noqa: SIM115 - closed by finish_romancal
    proc = subprocess.Popen([sys.executable, str(path), str(REPO), str(out)], cwd=out,
                            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                            text=True)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def send_job(proc: subprocess.Popen, job: dict[str, Any]) -> None:
    """Give a started worker its job (one JSON line on its stdin)."""
    assert proc.stdin is not None
    try:
        proc.stdin.write(json.dumps(job) + "\n")
        proc.stdin.close()
    except BrokenPipeError:  # it died while importing: finish_romancal shows why
        pass


def stop_romancal(proc: subprocess.Popen) -> None:
    """End a worker that will not get its job (our side failed)."""
    proc.kill()
    proc.wait()
    proc.log.close()  # type: ignore[attr-defined]


def finish_romancal(proc: subprocess.Popen, out: Path, timeout: float = 300) -> dict:
    """Wait for a worker; return its ``result.json`` or fail with its log's tail."""
    try:
        status = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        status = proc.wait()
    finally:
        proc.log.close()  # type: ignore[attr-defined]
    result = out / "result.json"
    if status != 0 or not result.is_file():
        tail = "\n".join((out / "run.log").read_text(errors="replace").splitlines()[-30:])
        pytest.fail(f"romancal worker failed ({status}):\n{tail}")
    return json.loads(result.read_text())


# ---------------------------------------------------------------------- the input image


def simulated_cal(base: Path) -> dict[str, Any]:
    """Simulate and calibrate the test exposure once per session (cached in ``base``).

    Returns
    -------
    dict
        ``cal`` (the ``_cal`` file), ``uncal`` (with the simulator's truth), ``cache``
        (the built-in references it was calibrated with) and ``seconds``.
    """
    from romancal_lite import simulate
    from romancal_lite.pipeline import ExposurePipeline
    from romancal_lite.references import builtin_cache, generate_cache

    folder = base / f"romancal_xcheck_{FULL_SHAPE[0]}x{FULL_SHAPE[1]}_{N_STARS}_{SEED}"
    cal = folder / f"{NAME}_cal.asdf"
    uncal = folder / f"{NAME}_uncal.asdf"
    start = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    cache = generate_cache(folder / "crds", full_shape=FULL_SHAPE)
    if not cal.is_file():
        with builtin_cache(cache, hide_user_crds=True):
            simulate.write_exposure(
                uncal, shape=FULL_SHAPE, detector="WFI03", read_pattern="ma4", seed=SEED,
                n_stars=N_STARS, star_flux_range=(100.0, 3.0e4),
            )
            # through flatfield: the catalog and the alignment are what is compared.
            # refpix: the border algorithm, the image the tolerances were measured on
            # (with the REFPIX default one source's PSF fit and three annulus
            # backgrounds next to NaN pixels differ beyond the limits: issue 10 report)
            ExposurePipeline.call(str(uncal), output_dir=str(folder), save_results=True,
                                  steps={"source_catalog": {"skip": True},
                                         "tweakreg": {"skip": True},
                                         "refpix": {"algorithm": "border"}})
    return {"cal": cal, "uncal": uncal, "cache": cache,
            "seconds": time.perf_counter() - start}


def write_references(tmp: Path) -> dict[str, Path]:
    """Write our built-in EPSF and APCORR for the image; both steps get them as overrides.

    They are the simulator's F158 PSF (a pixel-integrated Gaussian, 4x oversampled, in
    romancal's 5-D EPSF layout) and its encircled energy, and roman_datamodels reads
    them as ``EpsfRefModel`` and ``ApcorrRefModel``.
    """
    from romancal_lite.references import build_reference, write_reference

    paths = {}
    for reftype, element in (("epsf", "F158"), ("apcorr", None)):
        paths[reftype] = tmp / f"{reftype}.asdf"
        write_reference(paths[reftype], build_reference(
            reftype, "WFI03", FULL_SHAPE, "2020-01-01T00:00:00", element))
    return paths


def ours_fits_psf() -> bool:
    """Whether our step does PSF photometry with an EPSF reference (then PSF is compared)."""
    from romancal_lite.steps.source_catalog import SourceCatalogStep

    return "epsf" in getattr(SourceCatalogStep, "reference_file_types", ())


# ---------------------------------------------------------------------- fixture


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both steps on the same file, romancal in a subprocess while ours runs here."""
    from astropy.table import Table

    from romancal_lite.references import builtin_cache
    from romancal_lite.steps.source_catalog import SourceCatalogStep

    tmp = tmp_path_factory.mktemp("srccat_vs_romancal")
    rc_out, our_out = tmp / "romancal", tmp / "ours"
    proc = start_romancal(WORKER, rc_out)  # romancal imports while we simulate
    try:
        image = simulated_cal(tmp_path_factory.getbasetemp())
        refs = write_references(tmp)
        params = {**PARAMS, "fit_psf": ours_fits_psf()}
        send_job(proc, {"cal": str(image["cal"]), "params": params,
                        "overrides": {k: str(v) for k, v in refs.items()}})
        ours_params = dict(params)
        for reftype in getattr(SourceCatalogStep, "reference_file_types", ()):
            if reftype in refs:
                ours_params[f"override_{reftype}"] = str(refs[reftype])
        start = time.perf_counter()
        step = SourceCatalogStep(output_dir=str(our_out), save_results=True, **ours_params)
        with builtin_cache(image["cache"], hide_user_crds=True):
            step.run(str(image["cal"]))
        ours_seconds = time.perf_counter() - start
    except BaseException:
        stop_romancal(proc)
        raise
    rc = finish_romancal(proc, rc_out)
    print(f"\nsimulation {image['seconds']:.1f} s, ours {ours_seconds:.2f} s, romancal step"
          f" {rc['seconds']:.2f} s")
    rc_cat = rc_out / f"{NAME}_cat.parquet"
    return {
        "image": image,
        "refs": refs,
        "psf": params["fit_psf"],
        "step": step,
        "ours": step.catalog.table,
        "romancal": Table.read(rc_cat),
        "ours_parquet": our_out / f"{NAME}_cat.parquet",
        "romancal_parquet": rc_cat,
        "ours_segm": our_out / f"{NAME}_segm.asdf",
        "romancal_segm": rc_out / f"{NAME}_segm.asdf",
    }


def _col(table: Any, name: str) -> np.ndarray:
    return np.asarray(table[name], dtype=np.float64)


def _report(name: str, value: float, limit: float) -> None:
    print(f"  {name:34s} {value:11.3g}   (limit {limit:.3g})")


def _masked_pixels(image: dict[str, Any]) -> np.ndarray:
    import roman_datamodels.datamodels as rdm

    from romancal_lite.steps.source_catalog.catalog import source_mask

    with rdm.open(image["cal"]) as model:
        return source_mask(np.asarray(model.data), np.asarray(model.err), np.asarray(model.dq))


def _touches(mask: np.ndarray, x: np.ndarray, y: np.ndarray, r_in: float, r_out: float
             ) -> np.ndarray:
    """Whether a masked pixel is within (r_in - 1, r_out + 1) pixels of each position."""
    iy, ix = np.nonzero(mask)
    out = np.zeros(len(x), dtype=bool)
    for n, (x0, y0) in enumerate(zip(x, y, strict=True)):
        r = np.hypot(ix - x0, iy - y0)
        out[n] = bool(np.any((r > r_in - 1.0) & (r < r_out + 1.0)))
    return out


# ---------------------------------------------------------------------- tests


def test_same_sources_and_segmentation(runs):
    import roman_datamodels.datamodels as rdm

    ours, rc = runs["ours"], runs["romancal"]
    assert len(ours) == len(rc) > 200
    # same labels in the same order, so rows match one to one
    assert np.array_equal(ours["label"], rc["label"])
    with rdm.open(runs["ours_segm"]) as mine, rdm.open(runs["romancal_segm"]) as theirs:
        assert isinstance(mine, rdm.SegmentationMapModel)
        mine.validate()
        assert np.array_equal(np.asarray(mine.data), np.asarray(theirs.data))  # 0 pixels
        assert np.asarray(mine.data).dtype == np.asarray(theirs.data).dtype == np.uint32
        assert "detection_image" in theirs and "detection_image" not in mine
    # and the in-memory map is the saved one
    assert np.array_equal(runs["step"].catalog.segmentation,
                          np.asarray(rdm.open(runs["ours_segm"]).data))


def test_columns_names_units_dtypes(runs):
    ours, rc = runs["ours"], runs["romancal"]
    print(f"\ncolumns only romancal writes: {sorted(set(rc.colnames) - set(ours.colnames))}")
    assert set(rc.colnames) - set(ours.colnames) <= MAY_LACK
    assert set(ours.colnames) - set(rc.colnames) == set()
    # PSF columns on both sides when ours fits PSFs (both then ran with fit_psf=True)
    assert (PSF_COLUMNS <= set(rc.colnames)) is runs["psf"]
    assert (PSF_COLUMNS <= set(ours.colnames)) is runs["psf"]
    # romancal's order without its extra columns
    assert [c for c in rc.colnames if c in ours.colnames] == ours.colnames
    for name in ours.colnames:
        assert ours[name].unit == rc[name].unit, name
        assert ours[name].dtype == rc[name].dtype, name


#: column -> (kind, limit, unit). kinds: "exact"; "abs" |ours - romancal| <= limit;
#: "rel" |ours - romancal| <= limit x |romancal|; "scaled" <= limit x max(1, |romancal|);
#: "sigma" <= limit x romancal's error.
TOLERANCES: dict[str, tuple[str, float, str]] = {
    "label": ("exact", 0, ""), "flagged_spatial_id": ("exact", 0, ""),
    "bbox_xmin": ("exact", 0, ""), "bbox_xmax": ("exact", 0, ""),
    "bbox_ymin": ("exact", 0, ""), "bbox_ymax": ("exact", 0, ""),
    "segment_area": ("exact", 0, "same map, same pixel area"),
    "nn_label": ("exact", 0, ""), "warning_flags": ("exact", 0, ""),
    "image_flags": ("exact", 0, ""),
    # dust_ebv: NaN on both sides (no dust map offline)
    "dust_ebv": ("exact", 0, ""),
    # DAOFind measures on the float32 (romancal) / float64 (ours) image: float32
    # rounding, relative to the value once it exceeds 1 (measured 1.5e-5 and 1.8e-7;
    # a sharpness of -38.74 differs by 1.3e-4, 3.4e-6 of it); romancal is NaN when a
    # NaN pixel is in the 5 x 5 kernel
    "sharpness": ("scaled", 1e-4, ""), "roundness1": ("scaled", 1e-4, ""),
    # float32 columns: romancal measures on the float32 background-subtracted image,
    # we on a float64 copy; a float32 ulp at x = 512 is 6.1e-5 px
    "x_centroid": ("abs", 1e-4, "px"), "y_centroid": ("abs", 1e-4, "px"),
    "x_centroid_win": ("abs", 1e-4, "px"), "y_centroid_win": ("abs", 1e-4, "px"),
    # 1e-9 deg = 3.6 micro-arcsec
    "ra": ("abs", 1e-9, "deg"), "dec": ("abs", 1e-9, "deg"),
    "ra_centroid": ("abs", 1e-9, "deg"), "dec_centroid": ("abs", 1e-9, "deg"),
    "ra_centroid_win": ("abs", 1e-9, "deg"), "dec_centroid_win": ("abs", 1e-9, "deg"),
    "segment_flux": ("rel", 1e-6, ""), "segment_flux_err": ("rel", 1e-6, ""),
    "kron_flux": ("rel", 1e-6, ""), "kron_flux_err": ("rel", 1e-6, ""),
    "kron_abmag": ("abs", 1e-5, "mag"), "kron_abmag_err": ("abs", 1e-6, "mag"),
    "semimajor": ("rel", 1e-6, ""), "semiminor": ("rel", 1e-6, ""),
    "fwhm": ("rel", 1e-6, ""), "kron_radius": ("rel", 1e-6, ""),
    "fluxfrac_radius_50": ("rel", 1e-6, ""), "ellipticity": ("abs", 1e-6, ""),
    "nn_distance": ("rel", 1e-5, ""),
    # aperture sums: romancal centres the apertures on its float32 centroids (rounded
    # by up to 3e-5 px at x ~ 500), ours on the float64 ones; near a bright neighbour's
    # edge that moves the sum by up to 0.005 sigma (measured; 14 nJy on 8e5 nJy), the
    # float32 image adds 4e-7 relative. "sigma": |ours - romancal| <= limit x error
    **{f"aper{r}_flux": ("sigma", 0.02, "") for r in ("01", "02", "04", "08", "16")},
    **{f"aper{r}_flux_err": ("rel", 1e-4, "") for r in ("01", "02", "04", "08", "16")},
}


def test_measured_columns_agree(runs):
    ours, rc = runs["ours"], runs["romancal"]
    mask = _masked_pixels(runs["image"])
    radii = dict(zip(["01", "02", "04", "08", "16"],
                     ours.meta["aperture_radii"]["circle_pix"], strict=True))
    print("\nmax |ours - romancal| (relative for 'rel' columns):")
    for name, (kind, limit, _) in TOLERANCES.items():
        if name not in ours.colnames and name in MAY_LACK:
            continue
        a, b = _col(ours, name), _col(rc, name)
        if kind == "exact":
            assert np.array_equal(a, b, equal_nan=True), name
            continue
        ok = np.isfinite(b)
        if name in ("sharpness", "roundness1"):
            near = _touches(mask, _col(ours, "x_centroid"), _col(ours, "y_centroid"), 0, 4.0)
            assert np.all(near[~ok]), f"{name}: romancal NaN away from masked pixels"
            assert np.all(np.isfinite(a)), name
        elif name.startswith("aper"):
            # romancal passes no mask to aperture_photometry: an aperture that reaches a
            # NaN (masked) pixel is NaN there; ours leaves masked pixels out
            radius = radii[name[4:6]]
            near = _touches(mask, _col(ours, "x_centroid"), _col(ours, "y_centroid"), 0,
                            radius)
            assert np.all(near[~ok]), f"{name}: romancal NaN away from masked pixels"
            assert np.all(np.isfinite(a)), name
        else:
            assert np.array_equal(np.isnan(a), np.isnan(b)), name
        ok &= np.isfinite(a)
        diff = np.abs(a[ok] - b[ok])
        if kind == "rel":
            diff = diff / np.abs(b[ok])
        elif kind == "scaled":
            diff = diff / np.maximum(1.0, np.abs(b[ok]))
        elif kind == "sigma":
            diff = diff / _col(rc, f"{name}_err")[ok]
        worst = float(diff.max()) if diff.size else 0.0
        _report(name, worst, limit)
        assert worst <= limit, f"{name}: {worst:.3g} > {limit}"


def test_every_shared_column_is_compared(runs):
    special = {"orientation_pix", "orientation_sky", "cxx", "cxy", "cyy", "aper_bkg_flux",
               "aper_bkg_flux_err", "is_extended", *CENTROID_ERRORS, *PSF_COLUMNS}
    shared = set(runs["ours"].colnames) & set(runs["romancal"].colnames)
    assert shared - special - set(TOLERANCES) == set()


def test_orientation_and_ellipse_coefficients(runs):
    ours, rc = runs["ours"], runs["romancal"]
    ell = _col(rc, "ellipticity")
    for name in ("orientation_pix", "orientation_sky"):
        d = np.abs((_col(ours, name) - _col(rc, name) + 180.0) % 360.0 - 180.0)
        # the angle of a nearly round source is ill-defined: compare the ellipse
        # displacement it causes, angle (rad) x ellipticity (measured 1e-7)
        worst = float(np.max(np.radians(d) * ell))
        _report(f"{name} x ellipticity", worst, 1e-6)
        assert worst <= 1e-6, name
        assert float(np.max(d[ell > 0.05])) <= 1e-3, name  # deg; measured 3e-5
    # the same WCS angle (sky - pix is the North angle at the image centre)
    offset = (_col(ours, "orientation_sky") - _col(ours, "orientation_pix")
              - _col(rc, "orientation_sky") + _col(rc, "orientation_pix"))
    worst = float(np.max(np.abs((offset + 180.0) % 360.0 - 180.0)))
    _report("orientation_sky - orientation_pix", worst, 1e-4)
    assert worst <= 1e-4  # deg: float32 rounding of angles up to 360
    scale = np.sqrt(_col(rc, "cxx") * _col(rc, "cyy"))
    for name in ("cxx", "cxy", "cyy"):
        worst = float(np.max(np.abs(_col(ours, name) - _col(rc, name)) / scale))
        _report(f"{name} / sqrt(cxx cyy)", worst, 1e-5)
        assert worst <= 1e-5, name


def test_annulus_background_agrees(runs):
    ours, rc = runs["ours"], runs["romancal"]
    mask = _masked_pixels(runs["image"])
    r_in, r_out = ours.meta["aperture_radii"]["annulus_pix"]
    near = _touches(mask, _col(ours, "x_centroid"), _col(ours, "y_centroid"), r_in, r_out)
    err = _col(rc, "aper_bkg_flux_err")
    for name in ("aper_bkg_flux", "aper_bkg_flux_err"):
        d = np.abs(_col(ours, name) - _col(rc, name)) / err
        # the median over the pixels whose centres are in the annulus: the float32
        # centroid (romancal) can move one pixel across the edge, and romancal keeps
        # the NaN of masked pixels out by sigma clipping, ours by the mask
        worst = float(d.max())
        _report(f"{name} / err (n > 1e-4: {(d > 1e-4).sum()}, near NaN {near.sum()})",
                worst, 0.05)
        assert worst <= 0.05, name
        assert np.median(d) <= 1e-5, name


def test_centroid_errors_are_ours_only(runs):
    ours, rc = runs["ours"], runs["romancal"]
    for name in CENTROID_ERRORS:
        assert np.all(_col(rc, name) == 0.0), f"romancal now fills {name}: compare them"
        mine = _col(ours, name)
        assert np.all(np.isfinite(mine) & (mine > 0)), name
        assert np.median(mine) < (0.1 if name[0] in "xy" else 0.01), name  # px / arcsec


def test_parquet_columns_and_units_match_romancal(runs):
    import pyarrow.parquet as pq
    from astropy.table import Table

    mine = pq.read_schema(runs["ours_parquet"])
    theirs = pq.read_schema(runs["romancal_parquet"])
    assert set(theirs.names) - set(mine.names) <= MAY_LACK
    assert set(mine.names) <= set(theirs.names)
    assert [n for n in theirs.names if n in mine.names] == mine.names
    for name in mine.names:
        field, ref = mine.field(name), theirs.field(name)
        assert field.metadata == ref.metadata, name  # {b"unit": b"..."}, "None" included
        assert field.type == ref.type, name
    # the schema metadata: the table meta and the image meta, as strings
    ours_meta = {k.decode(): v.decode() for k, v in mine.metadata.items()}
    rc_meta = {k.decode(): v.decode() for k, v in theirs.metadata.items()}
    assert ours_meta["source_catalog.aperture_mask_method"] == "mask"
    assert rc_meta["source_catalog.aperture_mask_method"] == "mask"
    for key in ("circle_arcsec", "circle_pix", "annulus_arcsec", "annulus_pix"):
        key = f"source_catalog.aperture_radii.{key}"
        a = np.array(json.loads(ours_meta[key]))
        b = np.array(rc_meta[key].strip("[]").split(), dtype=float)
        assert np.allclose(a, b, rtol=1e-8), key
    rc_image_keys = {k for k in rc_meta if k.startswith("roman.meta.")}
    ours_image_keys = {k for k in ours_meta if k.startswith("roman.meta.")}
    # the catalog model's keys (l2_catalog_common and meta.image); ours also carries the
    # image's provenance romancal-lite records (reference pedigrees and source) and
    # meta.exposure.mid_time, which roman_datamodels drops as not in its schema
    assert rc_image_keys <= ours_image_keys, sorted(rc_image_keys - ours_image_keys)
    extra = ours_image_keys - rc_image_keys
    assert all(k.startswith(OUR_EXTRA_META) for k in extra), [
        k for k in sorted(extra) if not k.startswith(OUR_EXTRA_META)]
    for key in sorted(rc_image_keys - DIFFERENT_META):
        assert ours_meta[key] == rc_meta[key], key
    assert ours_meta["roman.meta.model_type"] == rc_meta["roman.meta.model_type"]
    assert ours_meta["roman.meta.filename"].endswith("_cat.parquet")
    # astropy restores the same table from both files
    back = Table.read(runs["ours_parquet"])
    for name in back.colnames:
        assert back[name].unit == runs["romancal"][name].unit, name
        assert np.array_equal(np.asarray(back[name]), np.asarray(runs["ours"][name]),
                              equal_nan=True), name


def test_is_extended_same_rule_different_encircled_energy(runs):
    """Both apply romancal's rule; the EE fractions differ (romancal's radius units)."""
    ours, rc = runs["ours"], runs["romancal"]
    if "is_extended" not in ours.colnames:
        return  # not written (yet): listed by test_columns_names_units_dtypes
    ee_ours = np.asarray(ours.meta["ee_fractions"], float)
    ee_rc = np.asarray(rc.meta["ee_fractions"], float)
    for table, ee in ((ours, ee_ours), (rc, ee_rc)):
        rule = _col(table, "aper04_flux") > _col(table, "aper02_flux") * 1.2 * ee[2] / ee[1]
        assert np.array_equal(rule, np.asarray(table["is_extended"]))
    # romancal's rule on our fluxes gives romancal's flags (where its fluxes are finite)
    rule = _col(ours, "aper04_flux") > _col(ours, "aper02_flux") * 1.2 * ee_rc[2] / ee_rc[1]
    finite = np.isfinite(_col(rc, "aper04_flux") * _col(rc, "aper02_flux"))
    assert np.array_equal(rule[finite], np.asarray(rc["is_extended"])[finite])
    # the EE curve of the same APCORR file, read at the radii in pixels (ours) and, by
    # romancal 1.1, at the radii's values in arcsec (its spline is in pixels)
    import roman_datamodels.datamodels as rdm

    with rdm.open(runs["refs"]["apcorr"]) as apcorr:
        table = apcorr.data["F158"]
        radii, fractions = np.asarray(table["ee_radii"]), np.asarray(table["ee_fractions"])
    circle = ours.meta["aperture_radii"]
    big = np.asarray(circle["circle_arcsec"]) >= radii[0]  # inside the table
    assert np.allclose(ee_ours, np.interp(circle["circle_pix"], radii, fractions), atol=0.02)
    assert np.allclose(ee_rc[big], np.interp(np.asarray(circle["circle_arcsec"])[big], radii,
                                             fractions), atol=0.02)
    differ = np.asarray(ours["is_extended"]) != np.asarray(rc["is_extended"])
    print(f"\nis_extended differs for {differ.sum()} of {len(ours)} sources;"
          f" ee_fractions ours {np.round(ee_ours, 4)}, romancal {np.round(ee_rc, 4)}")


#: PSF columns of sources unflagged on both sides: (kind, limit), as `TOLERANCES`.
PSF_TOLERANCES = {
    "x_psf": ("abs", 1e-3), "y_psf": ("abs", 1e-3),  # px; measured 3e-5
    "x_psf_err": ("rel", 1e-4), "y_psf_err": ("rel", 1e-4),  # measured 6.7e-6
    "psf_flux": ("rel", 1e-4), "psf_flux_err": ("rel", 1e-4),  # 8.1e-6, 2.5e-6
    "psf_gof": ("rel", 1e-3),  # measured 6.8e-5
    "ra_psf": ("abs", 1e-8), "dec_psf": ("abs", 1e-8),  # deg (36 micro-arcsec); 7e-10
}


def test_psf_photometry_agrees(runs):
    ours, rc = runs["ours"], runs["romancal"]
    if not runs["psf"]:  # our step fits no PSF: both ran with fit_psf=False
        assert not PSF_COLUMNS & (set(ours.colnames) | set(rc.colnames))
        return
    flags_ours, flags_rc = np.asarray(ours["psf_flags"]), np.asarray(rc["psf_flags"])
    same_flags = float(np.mean(flags_ours == flags_rc))
    both = (flags_ours == 0) & (flags_rc == 0)
    print(f"\nPSF: psf_flags equal for {same_flags:.1%} of {len(ours)} sources, unflagged in"
          f" both {both.sum()}; flags only romancal sets: "
          f"{np.unique(flags_rc[flags_ours != flags_rc]).tolist()}, ours: "
          f"{np.unique(flags_ours[flags_ours != flags_rc]).tolist()}")
    assert same_flags >= 0.95  # measured 96.4 % (photutils' fit reports non-convergence)
    # photutils' fit in romancal can also stop, unflagged, far from the minimum on a
    # bright blend (reduced chi2 ~5e3, a flux 1000x too small) where ours converges:
    # such fits (romancal's chi2 > 100 x ours) are not compared; they must stay rare
    gof_ours, gof_rc = _col(ours, "psf_gof"), _col(rc, "psf_gof")
    stalled = both & (gof_rc > 100.0 * np.maximum(gof_ours, 1.0))
    print(f"romancal fits stalled unflagged: {int(stalled.sum())}, our gof there "
          f"{gof_ours[stalled].tolist()}")
    assert stalled.sum() <= 0.01 * len(ours)
    both &= ~stalled
    assert both.sum() >= 0.85 * len(ours)
    for name, (kind, limit) in PSF_TOLERANCES.items():
        a, b = _col(ours, name)[both], _col(rc, name)[both]
        diff = np.abs(a - b) / (np.abs(b) if kind == "rel" else 1.0)
        _report(f"{name} (unflagged)", float(diff.max()), limit)
        assert float(diff.max()) <= limit, name
    for name in ("ra_psf_err", "dec_psf_err"):  # romancal 1.1: zero placeholders
        assert np.all(_col(rc, name) == 0.0), f"romancal now fills {name}: compare them"
        mine = _col(ours, name)[both]
        assert np.all(np.isfinite(mine) & (mine > 0)), name

