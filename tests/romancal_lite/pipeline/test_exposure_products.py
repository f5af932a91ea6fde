"""``roman_elp`` to the end: source_catalog and tweakreg in the pipeline, its four products,
and several exposures (an association, a list) aligned together.

Two detectors of one simulated exposure are written twice: once with the true pointing
(the reference catalog is made from the stars' true pixel positions through that true
WCS), and once with a pointing error put into ``meta.wcsinfo`` (an offset of a few
arcsec and a roll), which the pipeline must find and remove.
"""

import json
import logging
import math
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.table import Table, vstack

from romancal_lite import cli, datamodels, simulate
from romancal_lite.errors import InputFileError
from romancal_lite.pipeline import ExposurePipeline
from romancal_lite.references import builtin_cache, generate_cache

SHAPE = (264, 512)
BASE = "r0000101001001001001_0001_"
DETECTORS = ("wfi03", "wfi04")
OFFSET = (3.0, -2.0)  # arcsec along RA (x cos dec) and Dec
ROLL_ARCMIN = 0.3  # the two detectors are ~17' apart: see docs/steps/tweakreg.md


def _perturb_uncal(path, out):
    with datamodels.open(path) as model:
        w = model.meta.wcsinfo
        w["ra_ref"] = w["ra_ref"] + OFFSET[0] / 3600.0 / math.cos(math.radians(w["dec_ref"]))
        w["dec_ref"] = w["dec_ref"] + OFFSET[1] / 3600.0
        w["roll_ref"] = w["roll_ref"] + ROLL_ARCMIN / 60.0
        model.save(out)


@pytest.fixture(scope="module")
def exposures(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("elp_products")
    cache = generate_cache(tmp / "crds", full_shape=SHAPE)
    moved = tmp / "moved"
    moved.mkdir()
    truth = {}
    refs = []
    with builtin_cache(cache, hide_user_crds=True):
        for seed, det in enumerate(DETECTORS):
            name = BASE + det
            uncal = tmp / f"{name}_uncal.asdf"
            simulate.write_exposure(
                uncal, shape=SHAPE, detector=det.upper(), read_pattern="ma4", seed=20 + seed,
                n_stars=150, star_flux_range=(300.0, 3.0e4),
            )  # fmt: skip
            stars = simulate.read_truth(uncal)["stars"]
            x, y = np.asarray(stars["x"], float), np.asarray(stars["y"], float)
            true = ExposurePipeline.call(
                str(uncal), steps={"source_catalog": {"skip": True}, "flatfield": {"skip": True}}
            )
            ra, dec = true.meta.wcs(x, y, with_bounding_box=False)
            truth[det] = {"x": x, "y": y, "ra": ra, "dec": dec}
            refs.append(Table({"ra": ra, "dec": dec}))
            _perturb_uncal(uncal, moved / uncal.name)
    refcat = tmp / "refcat.ecsv"
    vstack(refs).write(refcat)
    return {"dir": tmp, "cache": cache, "moved": moved, "truth": truth, "refcat": refcat}


def _error_mas(wcs, truth):
    ra, dec = wcs(truth["x"], truth["y"], with_bounding_box=False)
    dra = (ra - truth["ra"]) * np.cos(np.radians(truth["dec"]))
    return np.hypot(dra, dec - truth["dec"]) * 3.6e6


def _run(exposures, inputs, out, **steps):
    with builtin_cache(exposures["cache"], hide_user_crds=True):
        return ExposurePipeline.call(
            inputs, save_results=True, output_dir=str(out), steps=steps or None
        )


def test_one_exposure_is_aligned_and_gets_four_products(exposures, tmp_path):
    det = DETECTORS[0]
    uncal = exposures["moved"] / f"{BASE}{det}_uncal.asdf"
    truth = exposures["truth"][det]
    with builtin_cache(exposures["cache"], hide_user_crds=True):
        before = ExposurePipeline.call(str(uncal), steps={"tweakreg": {"skip": True}})
    assert np.median(_error_mas(before.meta.wcs, truth)) > 2000  # the injected error
    refcat = str(exposures["refcat"])
    result = _run(exposures, str(uncal), tmp_path, tweakreg={"abs_refcat": refcat})
    assert result.meta.cal_step.source_catalog == "COMPLETE"
    assert result.meta.cal_step.tweakreg == "COMPLETE"
    assert np.median(_error_mas(result.meta.wcs, truth)) < 10
    assert result.meta.wcs_fit_results["status"] == "SUCCESS"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        f"{BASE}{det}_{s}" for s in ("cal.asdf", "wcs.asdf", "cat.parquet", "segm.asdf")
    )
    import roman_datamodels.datamodels as rdm

    with rdm.open(tmp_path / f"{BASE}{det}_cal.asdf") as cal:
        assert cal.meta.cal_step.tweakreg == "COMPLETE"
        assert cal.meta.source_catalog.tweakreg_catalog_name == f"{BASE}{det}_cat.parquet"
        assert "v2v3corr" in cal.meta.wcs.available_frames
    with rdm.open(tmp_path / f"{BASE}{det}_wcs.asdf") as wcs:
        assert type(wcs).__name__ == "WfiWcsModel"
        assert wcs.meta.wcs_fit_results["status"] == "SUCCESS"
        x, y = np.array([10.0, 250.0, 480.0]), np.array([5.0, 128.0, 250.0])
        np.testing.assert_allclose(wcs.wcs_l2(x, y), result.meta.wcs(x, y), rtol=0, atol=1e-12)
        np.testing.assert_allclose(wcs.wcs_l1(x + 4, y + 4), wcs.wcs_l2(x, y), rtol=0, atol=1e-12)
    with rdm.open(tmp_path / f"{BASE}{det}_segm.asdf") as segm:
        assert segm.data.shape == result.data.shape
    # the catalog's sky columns follow the aligned WCS, not the pointing's
    cat = Table.read(tmp_path / f"{BASE}{det}_cat.parquet")
    assert len(cat) > 100
    ra, dec = result.meta.wcs(np.asarray(cat["x_centroid"]), np.asarray(cat["y_centroid"]))
    np.testing.assert_allclose(np.asarray(cat["ra_centroid"]), ra, rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(cat["dec_centroid"]), dec, rtol=0, atol=1e-10)
    old_ra, _ = before.meta.wcs(np.asarray(cat["x_centroid"]), np.asarray(cat["y_centroid"]))
    assert np.median(np.abs(np.asarray(cat["ra_centroid"]) - old_ra)) * 3600 > 1.0
    assert pq.read_schema(tmp_path / f"{BASE}{det}_cat.parquet").metadata


def test_without_reference_catalog_tweakreg_is_skipped(exposures, tmp_path, caplog):
    uncal = exposures["moved"] / f"{BASE}{DETECTORS[0]}_uncal.asdf"
    with caplog.at_level(logging.WARNING):
        result = _run(exposures, str(uncal), tmp_path)
    assert result.meta.cal_step.source_catalog == "COMPLETE"
    assert result.meta.cal_step.tweakreg == "SKIPPED"
    assert "wcs_fit_results" not in result.meta
    assert any("abs_refcat" in r.getMessage() for r in caplog.records)
    assert (tmp_path / f"{BASE}{DETECTORS[0]}_wcs.asdf").exists()
    with datamodels.open(tmp_path / f"{BASE}{DETECTORS[0]}_cal.asdf") as cal:
        assert "tweakreg_catalog" not in (cal.meta.get("source_catalog") or {})


def _write_asn(directory, members, name="test_asn.json"):
    asn = {
        "asn_id": "a3001",
        "asn_type": "image",
        "products": [{"name": "prod", "members": [
            {"expname": m, "exptype": "science"} for m in members
        ]}],
    }  # fmt: skip
    path = directory / name
    path.write_text(json.dumps(asn))
    return path


def test_association_of_two_detectors_is_aligned_jointly(exposures, tmp_path):
    asn = _write_asn(exposures["moved"], [f"{BASE}{d}_uncal.asdf" for d in DETECTORS])
    refcat = str(exposures["refcat"])
    results = _run(exposures, str(asn), tmp_path, tweakreg={"abs_refcat": refcat})
    assert [r.meta.filename for r in results] == [f"{BASE}{d}_cal.asdf" for d in DETECTORS]
    for det in DETECTORS:
        with datamodels.open(tmp_path / f"{BASE}{det}_cal.asdf") as cal:
            assert cal.meta.cal_step.tweakreg == "COMPLETE"
            fit = cal.meta.wcs_fit_results
            assert fit["n_detector"] == 2
            # one fit of both: more matches than either detector has stars
            assert fit["nmatches"] > 160
            assert np.median(_error_mas(cal.meta.wcs, exposures["truth"][det])) < 10
            assert cal.data.shape == (SHAPE[0] - 8, SHAPE[1] - 8)
    names = {p.name for p in tmp_path.iterdir()}
    assert len(names) == 8, names  # four products each, no scratch left behind
    assert not any(n.startswith(".") for n in names)


def test_command_line_takes_several_inputs(exposures, tmp_path, capsys):
    inputs = [str(exposures["moved"] / f"{BASE}{d}_uncal.asdf") for d in DETECTORS]
    with builtin_cache(exposures["cache"], hide_user_crds=True):
        status = cli.main(
            ["run", "roman_elp", *inputs, "--steps.tweakreg.abs_refcat",
             str(exposures["refcat"]), "--output-dir", str(tmp_path)]
        )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    for det in DETECTORS:
        with datamodels.open(tmp_path / f"{BASE}{det}_cal.asdf") as cal:
            assert cal.meta.cal_step.tweakreg == "COMPLETE"


@pytest.mark.parametrize("case", ["missing_refcat", "missing_member", "not_json"])
def test_bad_inputs_stop_before_any_work(exposures, tmp_path, capsys, case):
    moved = exposures["moved"]
    refcat = str(exposures["refcat"])
    if case == "missing_refcat":
        refcat = str(tmp_path / "nowhere.ecsv")
        inputs = [str(moved / f"{BASE}{DETECTORS[0]}_uncal.asdf")]
        expected = "nowhere.ecsv"
    elif case == "missing_member":
        first = str(moved / f"{BASE}{DETECTORS[0]}_uncal.asdf")
        inputs = [str(_write_asn(tmp_path, [first, "gone.asdf"]))]
        expected = "gone.asdf"
    else:
        bad = tmp_path / "bad_asn.json"
        bad.write_text("{ not json")
        inputs = [str(bad)]
        expected = "bad_asn.json"
    out = tmp_path / "out"
    with builtin_cache(exposures["cache"], hide_user_crds=True):
        status = cli.main(
            ["run", "roman_elp", *inputs, "--steps.tweakreg.abs_refcat", refcat,
             "--output-dir", str(out)]
        )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("romancal_lite: error:")]
    assert len(errors) == 1 and expected in errors[0], err
    assert not out.exists() or not any(out.iterdir())


def test_reference_catalog_that_does_not_overlap_fails_the_fit_not_the_run(exposures, tmp_path):
    far = tmp_path / "far.ecsv"
    table = Table.read(exposures["refcat"])
    table["ra"] = table["ra"] + 1.0
    table.write(far)
    uncal = exposures["moved"] / f"{BASE}{DETECTORS[0]}_uncal.asdf"
    result = _run(exposures, str(uncal), tmp_path / "out", tweakreg={"abs_refcat": str(far)})
    assert result.meta.cal_step.tweakreg == "FAILED"
    assert result.meta.wcs_fit_results["status"] == "FAILED"
    assert "v2v3corr" not in result.meta.wcs.available_frames
    assert len(os.listdir(tmp_path / "out")) == 4


def test_python_list_without_saving_returns_full_images(exposures):
    inputs = [str(exposures["moved"] / f"{BASE}{d}_uncal.asdf") for d in DETECTORS]
    with builtin_cache(exposures["cache"], hide_user_crds=True):
        results = ExposurePipeline.call(
            inputs, steps={"tweakreg": {"abs_refcat": str(exposures["refcat"])}}
        )
    assert len(results) == 2
    for det, image in zip(DETECTORS, results, strict=True):
        assert image.data.shape == (SHAPE[0] - 8, SHAPE[1] - 8)
        assert image.meta.cal_step.tweakreg == "COMPLETE"
        assert np.median(_error_mas(image.meta.wcs, exposures["truth"][det])) < 10


def test_missing_reference_catalog_is_an_input_error_in_python(exposures, tmp_path):
    uncal = exposures["moved"] / f"{BASE}{DETECTORS[0]}_uncal.asdf"
    with pytest.raises(InputFileError, match="abs_refcat"):
        _run(exposures, str(uncal), tmp_path, tweakreg={"abs_refcat": str(tmp_path / "x.ecsv")})


def test_tweakreg_alone_on_an_association_of_cal_files(exposures, tmp_path, capsys):
    # the pipeline without alignment, then the step on its products (as romancal's
    # tweakreg on an association of _cal files): same joint fit
    cals = tmp_path / "cal"
    inputs = [str(exposures["moved"] / f"{BASE}{d}_uncal.asdf") for d in DETECTORS]
    _run(exposures, inputs, cals, tweakreg={"skip": True})
    asn = _write_asn(cals, [f"{BASE}{d}_cal.asdf" for d in DETECTORS], name="cal_asn.json")
    out = tmp_path / "aligned"
    status = cli.main(
        ["run", "tweakreg", str(asn), "--abs_refcat", str(exposures["refcat"]),
         "--output-dir", str(out)]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{BASE}{d}_{s}.asdf" for d in DETECTORS for s in ("tweakreg", "wcs")
    )
    for det in DETECTORS:
        with datamodels.open(out / f"{BASE}{det}_tweakreg.asdf") as image:
            assert image.meta.cal_step.tweakreg == "COMPLETE"
            assert image.meta.wcs_fit_results["n_detector"] == 2
            assert np.median(_error_mas(image.meta.wcs, exposures["truth"][det])) < 10


def test_exposure_without_sources_gives_empty_catalog_and_failed_fit(exposures, tmp_path):
    uncal = tmp_path / f"{BASE}wfi05_uncal.asdf"
    with builtin_cache(exposures["cache"], hide_user_crds=True):
        simulate.write_exposure(
            uncal, shape=SHAPE, detector="WFI05", read_pattern="ma4", seed=3, n_stars=0,
            cr_rate=0.0, refcat=False,
        )  # fmt: skip
    out = tmp_path / "out"
    result = _run(exposures, str(uncal), out, tweakreg={"abs_refcat": str(exposures["refcat"])})
    assert result.meta.cal_step.source_catalog == "COMPLETE"
    assert result.meta.cal_step.tweakreg == "FAILED"
    assert "v2v3corr" not in result.meta.wcs.available_frames
    cat = Table.read(out / f"{BASE}wfi05_cat.parquet")
    assert len(cat) == 0 and "x_centroid" in cat.colnames
    with datamodels.open(out / f"{BASE}wfi05_segm.asdf") as segm:
        assert not segm.data.any()
