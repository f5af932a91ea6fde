"""The mosaic chain against the simulator's truth: raw exposures -> roman_elp -> roman_mos.

One run of ``romancal_lite demo --mosaic`` on small frames (3 dithered 256 x 256
exposures of one field, with sky offsets, independent cosmic rays and a pointing error
that tweakreg corrects) gives every product; each test compares one of them with the
truth the simulator recorded. No image here is made by hand: the inputs of roman_mos
are roman_elp's ``_cal`` files of simulated Level 1 ramps.
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
from astropy.table import Table

from romancal_lite import cli, datamodels, simulate
from romancal_lite.demo_mosaic import (
    MOSAIC_NAME,
    member_image_sky,
    member_sky_mjysr,
    score_mosaic_astrometry,
    score_mosaic_crs,
    score_mosaic_photometry,
    score_mosaic_sky,
    score_outliers,
    score_skymatch,
    star_truth,
)
from romancal_lite.steps.resample import ResampleStep
from romancal_lite.stpipe.naming import make_output_name

SHAPE = (256, 256)
DITHERS = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The mosaic demo from the command line, and the truth of its inputs."""
    mp = pytest.MonkeyPatch()
    mp.delenv("CRDS_PATH", raising=False)
    mp.delenv("CRDS_SERVER_URL", raising=False)
    out = tmp_path_factory.mktemp("mosaic_demo") / "demo"
    argv = ["demo", "--mosaic", "--output-dir", str(out), "--shape", *map(str, SHAPE),
            "--dithers", str(DITHERS), "--seed", "7"]
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            status = cli.main(argv)
    finally:
        mp.undo()
    uncal = sorted(out.glob("*_uncal.asdf"))
    cal = [p.with_name(p.name.replace("_uncal", "_cal")) for p in uncal]
    flagged = [out / make_output_name(p.name, "outlier_detection") for p in cal]
    truths = [simulate.read_truth(p) for p in uncal]
    conversions, areas = [], []
    for path in cal:
        with datamodels.open(path) as image:
            conversions.append(float(image.meta.photometry.conversion_megajanskys))
            areas.append(float(image.meta.photometry.pixel_area))
    return {"status": status, "text": buffer.getvalue(), "out": out, "uncal": uncal,
            "cal": cal, "flagged": flagged, "truths": truths, "conversions": conversions,
            "stars": star_truth(truths, conversions, areas)}


def _bright(stars):
    return float(np.percentile(stars["flux_mjy"], 50))


def test_products_preview_and_printed_scores(run):
    assert run["status"] == 0
    out = run["out"]
    assert len(run["uncal"]) == DITHERS
    for name in ("coadd.asdf", "cat.parquet", "segm.asdf", "asn.json", "refcat.ecsv"):
        assert (out / f"{MOSAIC_NAME}_{name}").is_file(), name
    assert all(p.is_file() for p in run["cal"] + run["flagged"])
    assert (out / f"{MOSAIC_NAME}_coadd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for words in ("skymatch: levels", "cosmic rays:", "mosaic sky:", "mosaic photometry",
                  "mosaic astrometry", "tweakreg SUCCESS", "combined in"):
        assert words in run["text"], run["text"]


def test_skymatch_recovers_the_injected_sky_offsets(run):
    """Levels relative to the first input vs the true sky differences (MJy/sr)."""
    levels, true_sky, image_sky = [], [], []
    for path, flagged, truth, conversion in zip(
        run["cal"], run["flagged"], run["truths"], run["conversions"], strict=True
    ):
        with datamodels.open(flagged) as image:
            levels.append(float((image.meta.get("background") or {}).get("level", 0.0)))
        with datamodels.open(path) as image:
            image_sky.append(member_image_sky(image, truth))
        true_sky.append(member_sky_mjysr(truth, conversion))
    result = score_skymatch(levels, true_sky, image_sky)
    # injected 0, 0.2, 0.5 e/s: 0.07 and 0.18 MJy/sr
    assert result["max_offset"] > 0.15
    # against the truth (5 % of the largest offset on these 248 x 248 frames: skymatch's
    # mode over the overlaps, and the inputs' own sky errors from refpix and ramp_fit)
    assert result["max_error"] < 0.012, result
    # against the images' own sky differences (median of their sky pixels)
    assert result["max_image_error"] < 0.008, result


def test_mosaic_sky_is_the_lowest_input_sky(run):
    """skymatch's levels are subtracted by resample: the sky left is the lowest one."""
    true_sky = [member_sky_mjysr(t, c) for t, c in zip(run["truths"], run["conversions"],
                                                        strict=True)]
    with datamodels.open(run["out"] / f"{MOSAIC_NAME}_coadd.asdf") as mosaic:
        result = score_mosaic_sky(mosaic, min(true_sky))
    # the inputs' skies differ by up to 0.18 MJy/sr; their mean is 0.08 above the lowest
    assert abs(result["error"]) < 0.006, result


@pytest.mark.parametrize("weight_type", ["ivm-median", "exptime"])
def test_star_fluxes_conserved_through_resample(run, weight_type):
    """Total flux of bright isolated stars in the mosaic: the pipeline's own product
    (default ``ivm-median`` weights) and the inputs resampled with exposure-time weights."""
    if weight_type == "ivm-median":
        mosaic = datamodels.open(run["out"] / f"{MOSAIC_NAME}_coadd.asdf")
        assert mosaic.meta.resample.weight_type == "ivm-median"
    else:
        mosaic = ResampleStep.call([str(p) for p in run["flagged"]], weight_type=weight_type)
    with mosaic:
        result = score_mosaic_photometry(mosaic, run["stars"],
                                         min_flux_mjy=_bright(run["stars"]))
    assert result["n_stars"] >= 8
    assert result["ratio_median"] == pytest.approx(1.0, abs=0.005), result
    assert np.all(np.abs(result["ratios"] - 1.0) < 0.03), result["ratios"]


def test_romancal_ivm_weights_lose_star_flux(run):
    """romancal's per-pixel ``ivm`` weights on the same inputs: bright stars too faint
    (the ramp fit's read-noise variance grows with the signal)."""
    with ResampleStep.call([str(p) for p in run["flagged"]], weight_type="ivm") as mosaic:
        result = score_mosaic_photometry(mosaic, run["stars"],
                                         min_flux_mjy=_bright(run["stars"]))
    assert result["ratio_median"] < 0.97, result


def test_cosmic_rays_flagged_and_absent_from_the_mosaic(run):
    """Each exposure's own cosmic rays are flagged; star pixels are not."""
    totals = {}
    ra, dec = [], []
    for path, flagged, truth in zip(run["cal"], run["flagged"], run["truths"], strict=True):
        with datamodels.open(path) as image, datamodels.open(flagged) as after:
            result = score_outliers(image, np.asarray(after.dq), truth)
        on_sky = result.pop("reached_on_sky")
        ra.append(result.pop("reached_ra")[on_sky])
        dec.append(result.pop("reached_dec")[on_sky])
        for key, value in result.items():
            totals[key] = totals.get(key, 0) + value
    assert totals["n_reached"] > 100, totals  # ramp_fit's jump detection is off
    assert totals["n_reached_flagged"] >= 0.95 * totals["n_reached"], totals
    assert totals["n_flagged_truth"] >= 0.97 * totals["n_flagged"], totals
    assert totals["n_star_pixels"] > 300
    assert totals["n_star_flagged"] <= 0.01 * totals["n_star_pixels"], totals
    with datamodels.open(run["out"] / f"{MOSAIC_NAME}_coadd.asdf") as mosaic:
        sky = score_mosaic_sky(mosaic, 0.0)["sky"]
        crs = score_mosaic_crs(mosaic, np.concatenate(ra), np.concatenate(dec), sky)
    assert crs["n_tested"] > 100
    assert crs["n_visible"] <= 0.05 * crs["n_tested"], crs


def test_mosaic_wcs_puts_sources_at_their_true_positions(run):
    """Catalog centroids through the mosaic's WCS vs the stars' true sky positions."""
    table = Table.read(run["out"] / f"{MOSAIC_NAME}_cat.parquet")
    result = score_mosaic_astrometry(table, run["stars"], min_flux_mjy=_bright(run["stars"]))
    assert result["n_matched"] >= 10 and result["n_matched"] >= 0.9 * result["n_tested"]
    assert result["median_mas"] < 5.0, result  # the pointing error was 1.2" (1220 mas)
    assert result["max_mas"] < 50.0, result
    assert math.hypot(result["mean_dra_mas"], result["mean_ddec_mas"]) < 3.0, result


# ---------------------------------------------------------------- the scores by hand


def _stars_table(ra, dec, flux):
    n = len(ra)
    return {"id": np.arange(n), "ra": np.asarray(ra, float), "dec": np.asarray(dec, float),
            "flux_mjy": np.asarray(flux, float), "saturated": np.zeros(n, bool),
            "n_members": np.full(n, DITHERS)}


def test_scores_by_hand(run):
    """A Gaussian star and a spike added to a flat copy of the mosaic, scored."""
    with datamodels.open(run["out"] / f"{MOSAIC_NAME}_coadd.asdf") as mosaic:
        ny, nx = mosaic.data.shape
        sky, flux_mjy = 0.3, 2.0e-6
        area = math.radians(float(mosaic.meta.wcsinfo["pixel_scale"])) ** 2
        x0, y0 = nx / 2 + 0.3, ny / 2 - 0.2
        yy, xx = np.mgrid[0:ny, 0:nx]
        star = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 0.9**2)) / (2 * math.pi * 0.81)
        mosaic.data = (sky + star * flux_mjy / area).astype(np.float32)
        mosaic.err = np.full((ny, nx), 0.01, np.float32)
        mosaic.data[40, 50] += 1.0  # a cosmic ray left in
        ra, dec = mosaic.meta.wcs([x0, 50.0, 80.0], [y0, 40.0, 60.0])
        photometry = score_mosaic_photometry(mosaic, _stars_table(ra[:1], dec[:1], [flux_mjy]))
        assert photometry["n_stars"] == 1
        assert photometry["ratio_median"] == pytest.approx(1.0, abs=1e-4)
        # a second star 1" away: neither is isolated any more
        both = _stars_table([ra[0], ra[0]], [dec[0], dec[0] + 1 / 3600], [flux_mjy] * 2)
        assert score_mosaic_photometry(mosaic, both)["n_stars"] == 0
        assert score_mosaic_sky(mosaic, 0.25)["error"] == pytest.approx(0.05, abs=1e-6)
        crs = score_mosaic_crs(mosaic, ra[1:], dec[1:], sky)
        assert crs == {"n_tested": 2, "n_visible": 1}
    table = Table({"ra_centroid": [ra[0] + 1e-6 / math.cos(math.radians(dec[0]))],
                   "dec_centroid": [dec[0]]})
    astrometry = score_mosaic_astrometry(table, _stars_table(ra[:1], dec[:1], [1.0]))
    assert astrometry["n_matched"] == 1
    assert astrometry["median_mas"] == pytest.approx(3.6, rel=1e-3)
    assert astrometry["mean_dra_mas"] == pytest.approx(3.6, rel=1e-3)
    skymatch = score_skymatch([0.2, 0.3, 0.1], [1.0, 1.1, 0.95])
    assert skymatch["levels"] == pytest.approx([0.0, 0.1, -0.1])
    assert skymatch["max_error"] == pytest.approx(0.05)


def test_mosaic_demo_bad_options(capsys):
    for argv, words in (
        (["--shape", "256", "200"], "multiple of 128"),
        (["--dithers", "1"], "dithers must be an integer from 2 to 8"),
    ):
        assert cli.main(["demo", "--mosaic", *argv]) == 1
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert cli.main(["demo", "--dithers", "3"]) == 1
    assert "options of demo --mosaic" in capsys.readouterr().err
