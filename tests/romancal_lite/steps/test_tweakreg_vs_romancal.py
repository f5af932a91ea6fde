"""``tweakreg`` against romancal 1.1's ``TweakRegStep`` on the same image and catalogs.

The image is ``test_source_catalog_vs_romancal.py``'s simulated ``_cal`` exposure (512 x
504, 400 stars). Its WCS is the truth: the simulator's star positions mapped through it
make the reference catalog (an ECSV with ``RA``/``DEC`` in degrees, which stcal 1.20's
``absolute_align`` reads with ``Table.read`` when ``abs_refcat`` is an existing file,
with no proper-motion correction and no crop). The pointing is then moved by (+3",
-2") and rolled by 3', the WCS rebuilt as assign_wcs does, and the image written with
``meta.source_catalog.tweakreg_catalog_name`` naming the source catalog file, where
both steps read it.

The source catalog file is our ``source_catalog``'s ``<base>_cat.parquet`` of the
perturbed image, PSF photometry on (the EPSF and APCORR of the built-in references), as
``roman_elp`` writes it: both steps use its ``x_psf, y_psf`` (romancal renames them to
``x, y``) and drop rows flagged DO_NOT_USE in ``warning_flags``.

romancal runs offline in a subprocess (``benchmarks/_romancal.py``'s empty CRDS cache,
sockets refused), importing while we prepare the inputs; ours runs here. Both use
romancal 1.1's defaults (``general`` fit, 6" search radius, ...). Failure cases: six
reference stars (fewer than ``abs_minobj``), and six image sources (too few
matches). ``-s`` prints the measured differences.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# the shared input image and the worker plumbing (this directory is on sys.path)
from test_source_catalog_vs_romancal import (  # noqa: I001
    NAME,
    finish_romancal,
    pytestmark,  # noqa: F401 - the same skip (romancal missing) and filters
    send_job,
    simulated_cal,
    start_romancal,
    stop_romancal,
)

OFFSET = (3.0, -2.0)  # arcsec, along RA (times cos dec) and Dec
ROLL = 3.0  # arcmin
#: Reference stars (failure case "few_references") or image sources ("few_matches").
FEW = 6
#: Pixel grid (x, y) where the corrected WCSs are compared: 9 x 9 points, corners included.
GRID = np.meshgrid(np.linspace(0.0, 503.0, 9), np.linspace(0.0, 511.0, 9))
#: wcs_fit_results fields and the largest |ours - romancal| allowed (measured: 0).
FIT_TOLERANCES = {
    "matrix": 1e-12, "shift": 1e-9, "center": 1e-9, "proper_rot": 1e-10, "rot": 1e-10,
    "<rot>": 1e-10, "scale": 1e-12, "<scale>": 1e-12, "skew": 1e-10, "rmse": 1e-12,
    "mae": 1e-12,
}

#: romancal's side: ``python worker.py REPO OUTDIR``; after the imports, one JSON job
#: ``{"cal", "grid", "cases": {case: {"abs_refcat", "catalog"}}}`` on stdin.
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
    from romancal.tweakreg import TweakRegStep

    job = json.loads(sys.stdin.readline())
    x, y = (np.array(v) for v in job["grid"])
    result = {}
    for case, spec in job["cases"].items():
        model = rdm.open(job["cal"])
        model.validate()
        model.meta.source_catalog.tweakreg_catalog_name = spec["catalog"]
        start = time.perf_counter()
        with network_guard() as attempts:
            library = TweakRegStep.call(model, abs_refcat=spec["abs_refcat"])
        seconds = time.perf_counter() - start
        if attempts:
            raise RuntimeError(f"romancal tried to use the network: {attempts}")
        with library:
            image = library.borrow(0)
            ra, dec = image.meta.wcs(x, y)
            fit = {k: v if isinstance(v, str) else np.asarray(v).tolist()
                   for k, v in image.meta.wcs_fit_results.items()}
            result[case] = {
                "status": str(image.meta.cal_step.tweakreg), "fit": fit,
                "ra": ra.tolist(), "dec": dec.tolist(), "name": image.meta.wcs.name,
                "frames": image.meta.wcs.available_frames,
                "s_region": str(image.meta.wcsinfo.s_region), "seconds": seconds,
            }
            library.shelve(image, 0, modify=False)
    (out / "result.json").write_text(json.dumps(result))
''')


def _perturb(model: Any) -> Any:
    """Move the pointing in ``meta.wcsinfo`` and rebuild the WCS as assign_wcs does."""
    from romancal_lite.steps.assign_wcs import build_wcs, pointing_from_wcsinfo

    pointing = pointing_from_wcsinfo(model.meta.wcsinfo)
    moved = dataclasses.replace(
        pointing,
        ra_ref=pointing.ra_ref + OFFSET[0] / 3600.0 / math.cos(math.radians(pointing.dec_ref)),
        dec_ref=pointing.dec_ref + OFFSET[1] / 3600.0,
        roll_ref=pointing.roll_ref + ROLL / 60.0,
    )
    distortion = model.meta.wcs.pipeline[0].transform
    model.meta["wcs"] = build_wcs(distortion, moved, model.data.shape)
    for key in ("ra_ref", "dec_ref", "roll_ref"):
        model.meta.wcsinfo[key] = getattr(moved, key)
    return model


def _inputs(image: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Write the perturbed image, the source catalogs and the reference catalogs."""
    from astropy.table import Table

    from romancal_lite import datamodels, simulate
    from romancal_lite.references import builtin_cache
    from romancal_lite.steps.source_catalog import SourceCatalogStep

    stars = simulate.read_truth(image["uncal"])["stars"]
    x, y = np.asarray(stars["x"], float), np.asarray(stars["y"], float)
    model = datamodels.open(image["cal"])
    ra, dec = model.meta.wcs(x, y, with_bounding_box=False)
    truth = model.meta.wcs(*GRID)
    Table({"RA": ra, "DEC": dec}).write(tmp / "refcat.ecsv")
    Table({"RA": ra[:FEW], "DEC": dec[:FEW]}).write(tmp / "few_refcat.ecsv")

    model = _perturb(model)
    # our catalog of the perturbed image, written where both steps read it
    step = SourceCatalogStep(fit_psf=True, output_dir=str(tmp), save_results=True)
    with builtin_cache(image["cache"], hide_user_crds=True):
        step.run(model)
    catalog = tmp / f"{NAME}_cat.parquet"
    table = step.catalog.table
    Table({"x_psf": table["x_psf"][:FEW], "y_psf": table["y_psf"][:FEW]}).write(
        tmp / "few_cat.parquet")

    model.meta["source_catalog"] = {"tweakreg_catalog_name": str(catalog)}
    perturbed = tmp / f"{NAME}_cal.asdf"
    model.save(perturbed)
    cases = {
        "aligned": {"abs_refcat": str(tmp / "refcat.ecsv"), "catalog": str(catalog)},
        "few_references": {"abs_refcat": str(tmp / "few_refcat.ecsv"),
                           "catalog": str(catalog)},
        "few_matches": {"abs_refcat": str(tmp / "refcat.ecsv"),
                        "catalog": str(tmp / "few_cat.parquet")},
    }
    usable = (np.asarray(table["warning_flags"]) & 1) == 0
    return {"cal": perturbed, "cases": cases, "truth": truth, "n_sources": int(usable.sum()),
            "perturbed": model.meta.wcs(*GRID)}


def _run_ours(cal: Path, spec: dict[str, str]) -> dict[str, Any]:
    from romancal_lite import datamodels
    from romancal_lite.steps.tweakreg import TweakRegStep

    model = datamodels.open(cal)
    model.meta["source_catalog"] = {"tweakreg_catalog_name": spec["catalog"]}
    start = time.perf_counter()
    result = TweakRegStep.call(model, abs_refcat=spec["abs_refcat"])
    seconds = time.perf_counter() - start
    ra, dec = result.meta.wcs(*GRID)
    return {"status": str(result.meta.cal_step.tweakreg),
            "fit": dict(result.meta.wcs_fit_results), "ra": ra, "dec": dec,
            "name": result.meta.wcs.name, "frames": result.meta.wcs.available_frames,
            "s_region": str(result.meta.wcsinfo["s_region"]), "seconds": seconds}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both steps on every case; romancal in a subprocess while ours runs here."""
    tmp = tmp_path_factory.mktemp("tweakreg_vs_romancal")
    rc_out = tmp / "romancal"
    proc = start_romancal(WORKER, rc_out)  # romancal imports while we prepare
    try:
        image = simulated_cal(tmp_path_factory.getbasetemp())
        inputs = _inputs(image, tmp)
        send_job(proc, {"cal": str(inputs["cal"]), "cases": inputs["cases"],
                        "grid": [g.tolist() for g in GRID]})
        ours = {case: _run_ours(inputs["cal"], spec) for case, spec in inputs["cases"].items()}
    except BaseException:
        stop_romancal(proc)
        raise
    rc = finish_romancal(proc, rc_out)
    for case in ours:
        rc[case]["ra"], rc[case]["dec"] = np.array(rc[case]["ra"]), np.array(rc[case]["dec"])
        print(f"\n{case}: ours {ours[case]['seconds']:.2f} s, romancal"
              f" {rc[case]['seconds']:.2f} s")
    return {"inputs": inputs, "ours": ours, "romancal": rc}


def _sep_mas(ra1: Any, dec1: Any, ra2: Any, dec2: Any) -> np.ndarray:
    dra = (np.asarray(ra1) - np.asarray(ra2) + 180.0) % 360.0 - 180.0
    return np.hypot(dra * np.cos(np.radians(dec2)), np.asarray(dec1) - dec2) * 3.6e6


def test_fit_results_agree(runs):
    mine, theirs = runs["ours"]["aligned"]["fit"], runs["romancal"]["aligned"]["fit"]
    assert set(mine) == set(theirs)
    assert mine["status"] == theirs["status"] == "SUCCESS"
    assert mine["fitgeom"] == theirs["fitgeom"] == "general"
    assert mine["nmatches"] == theirs["nmatches"] > 0.8 * runs["inputs"]["n_sources"]
    assert mine["n_detector"] == theirs["n_detector"] == 1
    assert mine["proper"] == theirs["proper"]
    print("\nmax |ours - romancal| of wcs_fit_results:")
    for key, limit in FIT_TOLERANCES.items():
        worst = float(np.max(np.abs(np.asarray(mine[key], float)
                                    - np.asarray(theirs[key], float))))
        print(f"  {key:12s} {worst:.3g} (limit {limit:g})")
        assert worst <= limit, key


def test_corrected_wcs_agree(runs):
    mine, theirs = runs["ours"]["aligned"], runs["romancal"]["aligned"]
    assert mine["status"] == theirs["status"] == "COMPLETE"
    assert mine["frames"] == theirs["frames"] == [
        "detector", "v2v3", "v2v3vacorr", "v2v3corr", "world"]
    sep = _sep_mas(mine["ra"], mine["dec"], theirs["ra"], theirs["dec"])
    print(f"\ncorrected WCS, ours - romancal on a 9 x 9 grid: max {sep.max():.3g} mas")
    assert sep.max() < 1.0
    # both name the WCS after abs_refcat as given (a path here)
    assert theirs["name"] == f"FIT-LVL2-{runs['inputs']['cases']['aligned']['abs_refcat']}"
    assert mine["name"] == theirs["name"]
    # the same footprint (S_REGION) from the corrected WCS, to 1e-8 deg
    a, b = (np.array(s.split()[2:], float) for s in (mine["s_region"], theirs["s_region"]))
    assert mine["s_region"].split()[:2] == theirs["s_region"].split()[:2] == ["POLYGON", "ICRS"]
    assert np.allclose(a, b, rtol=0, atol=1e-8)


def test_both_recover_the_injected_pointing(runs):
    inputs = runs["inputs"]
    truth_ra, truth_dec = inputs["truth"]
    before = _sep_mas(*inputs["perturbed"], truth_ra, truth_dec)
    assert before.min() > 2000.0  # the perturbation is there (3.6" at the centre)
    print()
    for who in ("ours", "romancal"):
        run = runs[who]["aligned"]
        err = _sep_mas(run["ra"], run["dec"], truth_ra, truth_dec)
        print(f"{who}: corrected WCS - truth on the grid: median {np.median(err):.3g},"
              f" max {err.max():.3g} mas (before: {np.median(before):.0f} mas)")
        assert err.max() < 10.0
        # the fitted rotation undoes the injected roll (measured -3.03')
        assert run["fit"]["<rot>"] * 60.0 == pytest.approx(-ROLL, abs=0.1)


@pytest.mark.parametrize("case", ["few_references", "few_matches"])
def test_failure_leaves_the_wcs_unchanged(runs, case):
    mine, theirs = runs["ours"][case], runs["romancal"][case]
    print(f"\n{case}: wcs_fit_results ours {mine['fit']}, romancal {theirs['fit']}")
    assert mine["status"] == theirs["status"] == "FAILED"  # meta.cal_step.tweakreg
    # both keep tweakwcs' reason when the fit itself fails ("FAILED: not enough
    # matches"), and write "FAILED" when the fit is not attempted (too few references)
    expected = {"few_references": "FAILED", "few_matches": "FAILED: not enough matches"}
    assert theirs["fit"]["status"] == expected[case]
    assert mine["fit"] == theirs["fit"]
    assert {k: v for k, v in mine["fit"].items() if k != "status"} == {
        "nmatches": 0, "n_detector": 1}
    ra, dec = runs["inputs"]["perturbed"]
    for run in (mine, theirs):
        assert run["frames"] == ["detector", "v2v3", "v2v3vacorr", "world"]
        assert np.array_equal(run["ra"], ra) and np.array_equal(run["dec"], dec)
