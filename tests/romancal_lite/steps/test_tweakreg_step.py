"""``tweakreg``: alignment of one calibrated image to a local reference catalog.

A small simulated exposure is calibrated once (module scope) with ``roman_elp``. The
simulator's star truth gives the stars' true pixel positions; the image's own WCS maps
them to their true sky positions, which make the reference catalog. The pointing in
``meta.wcsinfo`` is then perturbed (offset of a few arcsec, roll of a few arcmin), the
WCS rebuilt, and ``tweakreg`` must bring it back.
"""

import dataclasses
import logging
import math

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import get_body_barycentric
from astropy.table import Table
from astropy.time import Time

from romancal_lite import cli, datamodels, simulate
from romancal_lite.errors import ConfigError, InputFileError
from romancal_lite.pipeline import ExposurePipeline
from romancal_lite.references import builtin_cache, generate_cache
from romancal_lite.steps.assign_wcs import build_wcs, compute_footprint, pointing_from_wcsinfo
from romancal_lite.steps.tweakreg import (
    TweakRegStep,
    crop_to_image,
    find_sources,
    image_catalog,
    propagate_to_epoch,
    read_reference_catalog,
    serialize_fit_info,
)
from romancal_lite.stpipe.registry import resolve

SHAPE = (264, 512)
NAME = "r0000101001001001001_0001_wfi03"
OFFSET = (3.0, -2.0)  # arcsec, along RA (times cos dec) and Dec
ROLL = 3.0  # arcmin


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tweakreg")
    cache = generate_cache(tmp / "crds", full_shape=SHAPE)
    uncal = tmp / f"{NAME}_uncal.asdf"
    with builtin_cache(cache, hide_user_crds=True):
        simulate.write_exposure(
            uncal,
            shape=SHAPE,
            detector="WFI03",
            read_pattern="ma4",
            seed=11,
            cr_rate=1e-4,
            n_stars=150,
            star_flux_range=(300.0, 3.0e4),
        )
        ExposurePipeline.call(str(uncal), output_dir=str(tmp), save_results=True)
    cal = tmp / f"{NAME}_cal.asdf"
    stars = simulate.read_truth(uncal)["stars"]
    x, y = np.asarray(stars["x"], float), np.asarray(stars["y"], float)
    with datamodels.open(cal) as image:
        ra, dec = image.meta.wcs(x, y, with_bounding_box=False)
    refcat = tmp / "refcat.ecsv"
    Table({"ra": ra, "dec": dec, "source_id": np.arange(len(ra))}).write(refcat)
    return {"cal": cal, "x": x, "y": y, "ra": ra, "dec": dec, "refcat": refcat, "dir": tmp}


def _open(data):
    return datamodels.open(data["cal"])


def _perturb(model, offset=OFFSET, roll_arcmin=ROLL):
    """Move the pointing in ``meta.wcsinfo`` and rebuild the WCS as assign_wcs does."""
    pointing = pointing_from_wcsinfo(model.meta.wcsinfo)
    moved = dataclasses.replace(
        pointing,
        ra_ref=pointing.ra_ref + offset[0] / 3600.0 / math.cos(math.radians(pointing.dec_ref)),
        dec_ref=pointing.dec_ref + offset[1] / 3600.0,
        roll_ref=pointing.roll_ref + roll_arcmin / 60.0,
    )
    distortion = model.meta.wcs.pipeline[0].transform
    model.meta["wcs"] = build_wcs(distortion, moved, model.data.shape)
    for key in ("ra_ref", "dec_ref", "roll_ref"):
        model.meta.wcsinfo[key] = getattr(moved, key)
    return model


def _errors_mas(wcs, data):
    ra, dec = wcs(data["x"], data["y"], with_bounding_box=False)
    dra = (ra - data["ra"] + 180.0) % 360.0 - 180.0
    return np.hypot(dra * np.cos(np.radians(data["dec"])), dec - data["dec"]) * 3.6e6


def test_registered():
    assert resolve("tweakreg") is TweakRegStep


def test_recovers_offset_and_roll(calibrated, tmp_path):
    model = _perturb(_open(calibrated))
    before = _errors_mas(model.meta.wcs, calibrated)
    assert np.median(before) > 2000  # the perturbation is there
    s_region_before = model.meta.wcsinfo["s_region"]

    result = TweakRegStep.call(
        model, abs_refcat=str(calibrated["refcat"]), output_dir=str(tmp_path), save_results=True
    )

    after = _errors_mas(result.meta.wcs, calibrated)
    assert np.median(after) < 10.0
    assert np.percentile(after, 90) < 20.0
    assert result.meta.cal_step.tweakreg == "COMPLETE"
    frames = result.meta.wcs.available_frames
    assert frames == ["detector", "v2v3", "v2v3vacorr", "v2v3corr", "world"]
    assert result.meta.wcs.name == f"FIT-LVL2-{calibrated['refcat']}"  # as given
    fit = result.meta.wcs_fit_results
    assert fit["status"] == "SUCCESS" and fit["fitgeom"] == "general"
    assert fit["nmatches"] >= 50 and fit["n_detector"] == 1
    assert {"matrix", "shift", "center", "rot", "scale", "skew", "rmse", "mae"} <= set(fit)
    assert not {"matched_ref_idx", "fitmask", "fit_RA"} & set(fit)
    assert fit["rmse"] < 0.02  # arcsec
    # the fitted rotation is the injected roll (to ~0.2': the lever arm of this small
    # detector is 30", with 8 mas residuals per star)
    assert abs(abs(fit["<rot>"]) * 60.0 - ROLL) < 0.5
    # S_REGION is that of the corrected WCS
    assert result.meta.wcsinfo["s_region"] != s_region_before
    corners = compute_footprint(result.meta.wcs, result.data.shape)
    numbers = [float(v) for v in result.meta.wcsinfo["s_region"].split()[2:]]
    assert np.allclose(np.reshape(numbers, (4, 2)), corners, atol=1e-8)
    # the saved file holds the corrected WCS and the fit results
    with datamodels.open(tmp_path / f"{NAME}_tweakreg.asdf") as saved:
        assert "v2v3corr" in saved.meta.wcs.available_frames
        assert np.median(_errors_mas(saved.meta.wcs, calibrated)) < 10.0
        assert saved.meta.wcs_fit_results["status"] == "SUCCESS"
        assert saved.meta.cal_step.tweakreg == "COMPLETE"


def test_correct_wcs_is_left_nearly_unchanged(calibrated):
    model = _open(calibrated)
    original = model.meta.wcs
    result = TweakRegStep.call(model, abs_refcat=str(calibrated["refcat"]))
    assert result.meta.cal_step.tweakreg == "COMPLETE"
    assert "v2v3corr" in result.meta.wcs.available_frames
    assert result.meta.wcs_fit_results["status"] == "SUCCESS"
    moved = _errors_mas(result.meta.wcs, calibrated)
    assert np.median(moved) < 3.0
    assert np.median(_errors_mas(original, calibrated)) < 1e-3  # the reference is exact


def test_source_catalog_file_and_meta_name(calibrated, tmp_path):
    rng = np.random.default_rng(3)
    n = len(calibrated["x"])
    x = calibrated["x"] + rng.normal(0, 0.01, n)
    y = calibrated["y"] + rng.normal(0, 0.01, n)
    # romancal's names when PSF photometry ran; a flagged row is far off and dropped
    flags = np.zeros(n, dtype=np.int32)
    x[0] += 30.0
    flags[0] = 1
    path = tmp_path / "image_cat.parquet"
    Table({"x_psf": x, "y_psf": y, "warning_flags": flags}).write(path)
    model = _perturb(_open(calibrated))
    model.meta["source_catalog"] = {"tweakreg_catalog_name": str(path)}
    result = TweakRegStep.call(model, abs_refcat=str(calibrated["refcat"]), find_snr=1e9)
    assert result.meta.cal_step.tweakreg == "COMPLETE"
    assert np.median(_errors_mas(result.meta.wcs, calibrated)) < 5.0
    # the catalog's rows were used: the finder finds nothing at this threshold (close
    # pairs, < separation, are left out of the match)
    assert result.meta.wcs_fit_results["nmatches"] >= 100


def test_proper_motions_are_propagated(calibrated, tmp_path):
    rng = np.random.default_rng(5)
    n = len(calibrated["ra"])
    pmra, pmdec = rng.normal(0, 150.0, n), rng.normal(0, 150.0, n)  # mas/yr
    with _open(calibrated) as image:
        epoch = image.meta.exposure.start_time
    dt = epoch.jyear - 2016.0
    dec = calibrated["dec"] - pmdec * dt / 3.6e6
    ra = calibrated["ra"] - pmra * dt / 3.6e6 / np.cos(np.radians(calibrated["dec"]))
    path = tmp_path / "gaia_like.fits"
    Table(
        {"RA": ra, "DEC": dec, "pmra": pmra, "pmdec": pmdec, "ref_epoch": np.full(n, 2016.0)}
    ).write(path)
    result = TweakRegStep.call(_perturb(_open(calibrated)), abs_refcat=str(path))
    assert result.meta.cal_step.tweakreg == "COMPLETE"
    assert np.median(_errors_mas(result.meta.wcs, calibrated)) < 10.0


def _one_warning(caplog):
    # ours (tweakwcs logs its own details, as under romancal)
    warnings = [
        r for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("romancal_lite")
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    return warnings[0].getMessage()


@pytest.mark.parametrize("case", ["few_references", "no_overlap", "few_sources"])
def test_too_few_sources_or_matches_leave_the_wcs(calibrated, tmp_path, caplog, case):
    model = _perturb(_open(calibrated))
    wcs = model.meta.wcs
    refcat = calibrated["refcat"]
    params = {}
    if case == "few_references":
        refcat = tmp_path / "few.ecsv"
        Table({"RA": calibrated["ra"][:6], "DEC": calibrated["dec"][:6]}).write(refcat)
    elif case == "no_overlap":
        refcat = tmp_path / "far.ecsv"
        Table({"RA": calibrated["ra"] + 1.0, "DEC": calibrated["dec"]}).write(refcat)
    else:
        few = tmp_path / "few_cat.ecsv"
        Table({"x": calibrated["x"][:5], "y": calibrated["y"][:5]}).write(few)
        params["tweakreg_catalog_name"] = str(few)
    with caplog.at_level(logging.WARNING):
        result = TweakRegStep.call(model, abs_refcat=str(refcat), **params)
    message = _one_warning(caplog)
    reason = "not enough matches" if case == "few_sources" else "too few"
    assert reason in message and "WCS is unchanged" in message
    assert result.meta.wcs is wcs
    assert result.meta.cal_step.tweakreg == "FAILED"
    # tweakwcs' reason is kept when it attempted the fit, as romancal keeps it
    status = "FAILED: not enough matches" if case == "few_sources" else "FAILED"
    assert result.meta.wcs_fit_results["status"] == status
    assert result.meta.wcs_fit_results["nmatches"] == 0


def test_no_abs_refcat_skips_with_one_warning(calibrated, caplog):
    model = _open(calibrated)
    wcs = model.meta.wcs
    with caplog.at_level(logging.WARNING):
        result = TweakRegStep.call(model)
    assert "abs_refcat" in _one_warning(caplog)
    assert result.meta.cal_step.tweakreg == "SKIPPED"
    assert result.meta.wcs is wcs
    assert "wcs_fit_results" not in result.meta
    with caplog.at_level(logging.WARNING):
        caplog.clear()
        TweakRegStep.call(_open(calibrated), abs_refcat="GAIADR3_S3")
    assert "network" in _one_warning(caplog)


@pytest.mark.parametrize("case", ["missing", "garbage", "no_radec"])
def test_bad_reference_catalog_is_one_clear_error(calibrated, tmp_path, capsys, case):
    path = tmp_path / "ref.ecsv"
    if case == "garbage":
        path.write_bytes(b"\x00\x01 not a table \xff" * 10)
    elif case == "no_radec":
        Table({"x": [1.0, 2.0], "y": [3.0, 4.0]}).write(path)
    with pytest.raises(InputFileError, match="ref.ecsv"):
        TweakRegStep.call(_open(calibrated), abs_refcat=str(path))
    out = tmp_path / "out"
    status = cli.main(
        ["run", "tweakreg", str(calibrated["cal"]), "--abs_refcat", str(path),
         "--output-dir", str(out)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status != 0 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("romancal_lite: error:")]
    assert len(errors) == 1 and "ref.ecsv" in errors[0]
    if case == "no_radec":
        assert "RA/DEC" in errors[0]
    assert not out.exists() or not any(out.iterdir())


def test_image_without_wcs_is_an_input_error(calibrated):
    model = _open(calibrated)
    model.meta["wcs"] = None
    with pytest.raises(InputFileError, match="assign_wcs"):
        TweakRegStep.call(model, abs_refcat=str(calibrated["refcat"]))


def test_command_line_run(calibrated, tmp_path, capsys):
    status = cli.main(
        ["run", "tweakreg", str(calibrated["cal"]), "--abs_refcat", str(calibrated["refcat"]),
         "--output-dir", str(tmp_path)]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    with datamodels.open(tmp_path / f"{NAME}_tweakreg.asdf") as saved:
        assert saved.meta.cal_step.tweakreg == "COMPLETE"
        assert "v2v3corr" in saved.meta.wcs.available_frames


def test_separation_must_exceed_sqrt2_tolerance(calibrated):
    with pytest.raises(ConfigError, match="abs_separation"):
        TweakRegStep.call(
            _open(calibrated), abs_refcat=str(calibrated["refcat"]), abs_separation=0.9
        )


# ---------------------------------------------------------------------- functions


def test_find_sources_recovers_positions_and_honours_the_mask():
    rng = np.random.default_rng(1)
    ny, nx = 120, 160
    yy, xx = np.mgrid[0:ny, 0:nx]
    truth = np.column_stack([rng.uniform(10, nx - 10, 25), rng.uniform(10, ny - 10, 25)])
    image = rng.normal(10.0, 1.0, (ny, nx))
    sigma = 1.2
    for x0, y0 in truth:
        image += 800.0 / (2 * np.pi * sigma**2) * np.exp(
            -((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2)
        )
    found = find_sources(image, fwhm=2.355 * sigma, snr=10.0)
    assert len(found) >= 22
    dist = np.hypot(found["x"][:, None] - truth[:, 0], found["y"][:, None] - truth[:, 1])
    assert np.median(dist.min(axis=1)) < 0.05
    mask = np.zeros_like(image, dtype=bool)
    mask[:, : nx // 2] = True
    image[mask] = np.nan
    masked = find_sources(image, mask)
    assert len(masked) > 0 and np.all(masked["x"] > nx // 2 - 3)
    assert len(find_sources(image, np.ones_like(mask))) == 0
    assert len(find_sources(np.full((20, 20), 5.0))) == 0


def test_image_catalog_columns_flags_and_bounding_box():
    table = Table(
        {
            "x_centroid": [1.0, 2.0, 3.0, 500.0],
            "y_centroid": [1.0, 2.0, np.nan, 1.0],
            "x_psf": [1.5, 2.5, 3.5, 4.5],
            "y_psf": [1.5, 2.5, 3.5, 4.5],
            "warning_flags": [0, 1, 0, 0],
        }
    )
    cat = image_catalog(table, ((-0.5, 9.5), (-0.5, 9.5)))
    assert list(cat["x"]) == [1.5, 3.5, 4.5]  # psf preferred, DO_NOT_USE dropped
    cat = image_catalog(table[["x_centroid", "y_centroid"]], ((-0.5, 9.5), (-0.5, 9.5)))
    assert list(cat["x"]) == [1.0, 2.0]  # NaN and out-of-box rows dropped
    with pytest.raises(InputFileError, match="x_psf"):
        image_catalog(Table({"ra": [1.0]}))


def test_reference_catalog_columns_and_units(tmp_path):
    path = tmp_path / "ref.parquet"
    Table(
        {"Ra": [10.0, np.nan] * u.deg, "Dec": [-30.0, 1.0] * u.deg, "pm_ra": [1.0, 2.0]}
    ).write(path)
    ref = read_reference_catalog(path)
    assert list(ref["RA"]) == [10.0] and list(ref["DEC"]) == [-30.0]
    assert list(ref["pmra"]) == [1.0]


def test_propagate_to_epoch_proper_motion_and_parallax():
    epoch = Time("2026-07-01T00:00:00", scale="utc")
    dt = epoch.jyear - 2016.0
    ref = Table({"RA": [40.0], "DEC": [60.0], "pmra": [1000.0], "pmdec": [-500.0],
                 "ref_epoch": [2016.0]})  # fmt: skip
    moved = propagate_to_epoch(ref, epoch)
    assert moved["RA"][0] - 40.0 == pytest.approx(dt / 3600.0 / math.cos(math.radians(60)), 1e-6)
    assert moved["DEC"][0] - 60.0 == pytest.approx(-0.5 * dt / 3600.0, 1e-6)
    # parallax: the direction u - plx * r_obs, computed with vectors
    plx_mas = 500.0
    ref = Table({"RA": [40.0], "DEC": [60.0], "parallax": [plx_mas]})
    moved = propagate_to_epoch(ref, epoch)
    ra, dec = np.radians(40.0), np.radians(60.0)
    unit = np.array([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    r_obs = get_body_barycentric("earth", epoch).xyz.to_value(u.AU)
    apparent = unit - np.radians(plx_mas / 3.6e6) * r_obs
    exp_ra = np.degrees(np.arctan2(apparent[1], apparent[0])) % 360
    exp_dec = np.degrees(np.arcsin(apparent[2] / np.linalg.norm(apparent)))
    shift = np.hypot((moved["RA"][0] - 40.0) * np.cos(dec), moved["DEC"][0] - 60.0) * 3.6e6
    assert 100.0 < shift <= plx_mas * 1.02
    assert moved["RA"][0] == pytest.approx(exp_ra, abs=1e-3 / 3.6e6 / np.cos(dec) * 1e3)
    assert moved["DEC"][0] == pytest.approx(exp_dec, abs=1e-3 / 3.6e3)
    # nothing to propagate: unchanged
    plain = Table({"RA": [1.0], "DEC": [2.0]})
    assert propagate_to_epoch(plain, epoch)["RA"][0] == 1.0


def test_crop_to_image_keeps_margin_only(calibrated):
    with _open(calibrated) as image:
        wcs, shape = image.meta.wcs, image.data.shape
    x = np.array([250.0, -20.0, -80.0, 600.0, 250.0])
    y = np.array([120.0, 120.0, 120.0, 120.0, 10000.0])
    ra, dec = wcs(x, y, with_bounding_box=False)
    kept = crop_to_image(Table({"RA": ra, "DEC": dec}), wcs, shape, 6.0)
    # 6" is about 55 pixels: -20 is kept, -80 and the far points are not
    assert np.allclose(kept["RA"], ra[:2])


def test_serialize_fit_info():
    info = {"status": "SUCCESS", "shift": np.array([1.0, 2.0]), "rmse": np.float64(0.5),
            "fitmask": np.ones(3, bool), "matched_ref_idx": np.arange(3)}  # fmt: skip
    out = serialize_fit_info(info)
    assert out == {"status": "SUCCESS", "shift": [1.0, 2.0], "rmse": 0.5, "nmatches": 0,
                   "n_detector": 1}  # fmt: skip
    assert serialize_fit_info(None)["status"] == "FAILED"
