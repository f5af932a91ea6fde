"""The README's main command, ``romancal_lite demo``, at a small detector size; its scores."""

import math
import struct

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table

from romancal_lite import cli, datamodels, simulate
from romancal_lite.demo import (
    DEMO_NAME,
    DEMO_POINTING_ERROR,
    format_scores,
    run_demo,
    score_astrometry,
    score_catalog,
    uncorrected_wcs,
)

SHAPE = ("264", "512")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One demo run from the command line (output and files)."""
    mp = pytest.MonkeyPatch()
    mp.delenv("CRDS_PATH", raising=False)
    mp.delenv("CRDS_SERVER_URL", raising=False)
    out = tmp_path_factory.mktemp("demo") / "demo"
    argv = ["demo", "--output-dir", str(out), "--shape", *SHAPE, "--seed", "3"]
    lines: list[str] = []
    try:
        import contextlib
        import io

        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            status = cli.main(argv)
        lines = buffer.getvalue().splitlines()
        # a second run reuses the simulated input and returns the figures
        second: list[str] = []
        figures = run_demo(out, shape=(264, 512), seed=3, log=second.append)
    finally:
        mp.undo()
    return {"out": out, "status": status, "text": "\n".join(lines), "figures": figures,
            "second": second}


def test_demo_writes_the_products_and_prints_the_scores(demo):
    assert demo["status"] == 0
    text = demo["text"]
    for words in ("cosmic rays flagged", "completeness", "photometry: aper04_flux",
                  "before tweakreg", "after median", "tweakreg SUCCESS"):
        assert words in text, text
    out = demo["out"]
    for suffix in ("uncal.asdf", "refcat.ecsv", "cal.asdf", "cat.parquet", "segm.asdf"):
        assert (out / f"{DEMO_NAME}_{suffix}").is_file(), suffix
    with datamodels.open(out / f"{DEMO_NAME}_cal.asdf") as image:
        assert image.data.shape == (256, 504)
        assert image.meta.cal_step.flat_field == "COMPLETE"
        assert image.meta.cal_step.tweakreg == "COMPLETE"
        assert image.meta.wcs_fit_results["status"] == "SUCCESS"
        assert "v2v3corr" in image.meta.wcs.available_frames
    head = (out / f"{DEMO_NAME}_cal.png").read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (504, 256)
    assert any("reusing" in line for line in demo["second"])


def test_demo_input_has_the_pointing_error_and_a_reference_catalog(demo):
    truth = simulate.read_truth(demo["out"] / f"{DEMO_NAME}_uncal.asdf")
    assert truth["pointing_error"] == dict(
        zip(("dra_arcsec", "ddec_arcsec", "roll_arcmin"), DEMO_POINTING_ERROR, strict=True)
    )
    assert truth["refcat"]["n_sources"] >= 20
    assert np.std(truth["refcat"]["pmra"]) > 1.0  # the stars move (mas/yr)


def test_demo_figures(demo):
    f = demo["figures"]
    assert abs(f["sky_pull_median"]) < 0.1 and 0.9 < f["sky_pull_std"] < 1.1
    # the pointing error is there before tweakreg (3.6" offset and a 3' roll), gone after
    assert 2000 < f["before_median_mas"] < 6000
    assert f["after_median_mas"] < 5.0 and f["after_max_mas"] < 20.0
    assert f["fit"]["status"] == "SUCCESS" and f["fit"]["nmatches"] >= 20
    # photometry: the 0.4" aperture holds the whole flux of the simulated PSF
    assert abs(f["flux_ratio_median"] - 1.0) < 0.02 and f["flux_ratio_scatter"] < 0.03
    assert f["n_photometry"] >= 20
    # isolated bright stars are found (a few at the edges are off by more than 1 px)
    lo, hi, n, found = f["completeness_isolated"][0]
    assert n >= 20 and found >= 0.9 * n
    assert f["n_found"] > 0.5 * f["n_true"] and f["n_spurious"] < 0.1 * f["n_sources"]


def test_uncorrected_wcs_rebuilds_assign_wcs(demo):
    out = demo["out"]
    truth = simulate.read_truth(out / f"{DEMO_NAME}_uncal.asdf")
    with datamodels.open(out / f"{DEMO_NAME}_cal.asdf") as image:
        exact = uncorrected_wcs(image, truth["wcsinfo_true"])
        with datamodels.open(out / f"{DEMO_NAME}_uncal.asdf") as raw:
            wrong = uncorrected_wcs(image, raw.meta.wcsinfo)
    figures = score_astrometry(exact, wrong, truth)
    assert figures["before_max_mas"] < 1e-3  # the true pointing gives the true positions
    assert figures["after_median_mas"] == pytest.approx(demo["figures"]["before_median_mas"])


def test_demo_bad_option_exits_nonzero(capsys):
    try:
        status = cli.main(["demo", "--shape", "x"])
    except SystemExit as exc:  # argparse
        status = exc.code
    assert status != 0


# ---------------------------------------------------------------------- scores by hand

CONVERSION = 0.25  # MJy/sr per DN/s
AREA = 2.8e-13  # sr
SIGMA = 0.5  # px


def _truth(x, y, flux_dn, mag, shape=(100, 100), saturated=None):
    sat = np.full(shape, -1, dtype=np.int16)
    for (i, j), value in (saturated or {}).items():
        sat[j, i] = value
    return {
        "stars": {"x": np.asarray(x, float), "y": np.asarray(y, float),
                  "flux_dn": np.asarray(flux_dn, float), "mag": np.asarray(mag, float)},
        "saturated_resultant": sat,
        "parameters": {"psf_sigma": SIGMA},
    }


def _njy(flux_dn):
    ee = 1.0 - math.exp(-((0.4 / 0.11) ** 2) / (2 * (SIGMA**2 + 1 / 12)))
    return np.asarray(flux_dn, float) * CONVERSION * AREA * 1e15 * ee


def _table(x, y, flux, unit="nJy", flags=None):
    table = Table({"x_centroid": np.asarray(x, float), "y_centroid": np.asarray(y, float)})
    table["aper04_flux"] = np.asarray(flux, float) * u.Unit(unit)
    table["warning_flags"] = np.zeros(len(x), int) if flags is None else np.asarray(flags)
    return table


PHOT = {"conversion_megajanskys": CONVERSION, "pixel_area": AREA}


def test_score_catalog_completeness_and_spurious():
    truth = _truth([20, 40, 60, 80], [20, 40, 60, 80], [100, 100, 100, 100],
                   [19.5, 20.5, 21.5, 24.0])
    # star 0 exactly, star 1 0.8 px away, star 2 3 px away (missed), star 3 absent,
    # one source where there is no star
    table = _table([20, 40.8, 63, 10], [20, 40, 60, 90], _njy([100, 100, 100, 5]))
    f = score_catalog(table, truth, PHOT, mag_bins=(19, 20, 21, 22, 25))
    assert f["n_true"] == 4 and f["n_sources"] == 4
    assert f["n_found"] == 2 and f["n_spurious"] == 2
    assert f["completeness"] == [(19, 20, 1, 1), (20, 21, 1, 1), (21, 22, 1, 0), (22, 25, 1, 0)]
    assert f["completeness_isolated"] == f["completeness"]
    tight = score_catalog(table, truth, PHOT, match_radius=0.5)
    assert tight["n_found"] == 1


def test_score_catalog_photometry_units_and_sample():
    x = [20, 40, 60, 80, 30, 33, 70]
    y = [20, 40, 60, 80, 70, 70, 20]
    flux = [100, 200, 300, 400, 100, 100, 100]
    saturated = {(70, 20): 0}  # saturated from the first resultant: no slope
    truth = _truth(x, y, flux, [20] * 7, saturated=saturated)
    factors = np.array([1.0, 1.02, 0.98, 1.01, 5.0, 5.0, 5.0])  # the last 3 are excluded
    table = _table(x, y, _njy(flux) * factors)
    f = score_catalog(table, truth, PHOT)
    assert f["n_photometry"] == 4  # the close pair (3 px) and the saturated star left out
    assert f["flux_ratio_median"] == pytest.approx(1.005)
    # |ratio - 1.005| = .005 .015 .025 .005: median .010
    assert f["flux_ratio_scatter"] == pytest.approx(1.4826 * 0.010)
    # a flagged source is left out; a faint star too
    flagged = _table(x, y, _njy(flux) * factors, flags=[1, 0, 0, 0, 0, 0, 0])
    assert score_catalog(flagged, truth, PHOT)["n_photometry"] == 3
    assert score_catalog(table, truth, PHOT, min_snr_flux_dn=250)["n_photometry"] == 2
    # fluxes in DN/s (photom skipped) are compared with the truth in DN/s
    ee = _njy(1.0)[()] / (CONVERSION * AREA * 1e15)
    in_dn = _table(x, y, np.asarray(flux, float) * ee * factors, unit="DN / s")
    assert score_catalog(in_dn, truth)["flux_ratio_median"] == pytest.approx(1.005)
    # nJy without the conversion, or an unknown unit, is an error
    with pytest.raises(ValueError, match="meta.photometry"):
        score_catalog(table, truth, None)
    with pytest.raises(ValueError, match="unit"):
        score_catalog(_table(x, y, flux, unit="Jy"), truth, PHOT)
    # a wrong conversion shows in the ratio
    off = score_catalog(table, truth, {**PHOT, "conversion_megajanskys": 2 * CONVERSION})
    assert off["flux_ratio_median"] == pytest.approx(0.5025)


class _ShiftedWcs:
    """A stand-in WCS: the true positions moved north by ``dec_mas`` (per star)."""

    def __init__(self, truth, dec_mas):
        self.ra = np.asarray(truth["stars"]["ra"], float)
        self.dec = np.asarray(truth["stars"]["dec"], float) + np.asarray(dec_mas) / 3.6e6

    def __call__(self, x, y, with_bounding_box=True):
        assert np.array_equal(x, np.arange(4.0))  # evaluated at the true pixels
        return self.ra, self.dec


def test_score_astrometry_by_hand():
    truth = {"stars": {"x": np.arange(4.0), "y": np.zeros(4), "ra": np.full(4, 10.0),
                       "dec": np.array([-30.0, -30.1, -30.2, -30.3])}}
    before = _ShiftedWcs(truth, [1000.0, 1000.0, 1000.0, 1000.0])
    after = _ShiftedWcs(truth, [0.0, 1.0, -2.0, 3.0])
    f = score_astrometry(before, after, truth)
    assert f["n_stars"] == 4
    assert f["before_median_mas"] == pytest.approx(1000.0, rel=1e-6)
    assert f["before_max_mas"] == pytest.approx(1000.0, rel=1e-6)
    assert f["after_median_mas"] == pytest.approx(1.5, abs=1e-6)
    assert f["after_max_mas"] == pytest.approx(3.0, abs=1e-6)
    # RA offsets count with cos(dec)
    east = _ShiftedWcs(truth, np.zeros(4))
    east.ra = east.ra + 1.0 / 3600 / np.cos(np.radians(truth["stars"]["dec"]))
    g = score_astrometry(east, None, truth)
    assert g["before_median_mas"] == pytest.approx(1000.0, rel=1e-4)
    assert math.isnan(g["after_median_mas"])


def test_format_scores():
    figures = {
        "n_sources": 10, "n_found": 8, "n_true": 12, "n_spurious": 2,
        "completeness": [(13.0, 20.0, 4, 4), (20.0, 21.0, 0, 0)],
        "completeness_isolated": [(13.0, 20.0, 3, 3), (20.0, 21.0, 0, 0)],
        "flux_column": "aper04_flux", "flux_ratio_median": 0.9987,
        "flux_ratio_scatter": 0.0061, "n_photometry": 5, "n_stars": 12,
        "before_median_mas": 3600.4, "before_max_mas": 3700.0,
        "after_median_mas": 1.23, "after_max_mas": 4.56,
        "fit": {"status": "SUCCESS", "nmatches": 9, "rmse": 0.0081},
    }
    text = "\n".join(format_scores(figures))
    assert "8 of 12 stars found" in text and "13-20 mag 100% (4/4; isolated 100%)" in text
    assert "20-21 mag - (0/0; isolated -)" in text
    assert "median 0.9987, scatter 0.0061 (5 " in text
    assert "before tweakreg median 3600 mas, max 3700 mas" in text
    assert "after median 1.23 mas, max 4.56 mas" in text and "9 matches, rms 8.1 mas" in text
    assert "tweakreg did not fit" in "\n".join(format_scores({**figures, "fit": None}))
