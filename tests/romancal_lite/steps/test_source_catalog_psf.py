"""PSF photometry of ``source_catalog``: truth, photutils, flags, references, new columns.

A 512 x 512 F158 image is drawn as the simulator draws stars (a circular Gaussian of
``psf_sigma("F158")`` integrated over each pixel: the built-in EPSF), with Gaussian
noise of a known per-pixel error, so the fit can be scored against the truth and
against photutils' ``PSFPhotometry`` with the same gridded PSF.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from scipy.spatial import cKDTree

from romancal_lite import datamodels
from romancal_lite.references import builtin_cache, generate_cache
from romancal_lite.simulate import scene
from romancal_lite.steps.source_catalog import SourceCatalogStep
from romancal_lite.steps.source_catalog.catalog import column_names, daofind_measures
from romancal_lite.steps.source_catalog.psf import (
    PSF_FLAGS,
    EPSFGrid,
    adjust_jitter,
    fit_psf_photometry,
)
from romancore.dqflags import pixel

SHAPE = (512, 512)
SKY = 0.8  # DN/s
SKY_ERR = 0.04  # DN/s per pixel
GAIN_TIME = 150.0  # electrons per DN/s: Poisson error of the stars
CONVERSION = 0.3  # MJy/sr per DN/s
PIXEL_AREA = 2.84e-13  # sr
TO_NJY = CONVERSION * PIXEL_AREA * 1e15


def _truth(seed: int = 7, n: int = 260):
    rng = np.random.default_rng(seed)
    x = rng.uniform(6, SHAPE[1] - 7, n)
    y = rng.uniform(6, SHAPE[0] - 7, n)
    flux = np.exp(rng.uniform(np.log(60.0), np.log(6000.0), n))
    # a close pair (fit together) and an extended source
    x[:2], y[:2], flux[:2] = (100.3, 104.3), (200.6, 202.4), (900.0, 700.0)
    return {"x": x, "y": y, "flux": flux}


def _image(truth, galaxy=(300.2, 400.7, 4000.0, 3.0)):
    rng = np.random.default_rng(11)
    rate = np.zeros(SHAPE)
    scene.render_stars(rate, truth, scene.psf_sigma("F158"))
    gx, gy, gflux, gsig = galaxy
    scene.render_stars(rate, {"x": np.array([gx]), "y": np.array([gy]),
                              "flux": np.array([gflux])}, gsig)
    err = np.sqrt(SKY_ERR**2 + np.maximum(rate, 0) / GAIN_TIME)
    data = rate + SKY + rng.normal(size=SHAPE) * err
    model = datamodels.ImageModel.create_fake_data(shape=SHAPE)
    model.meta.instrument.detector = "WFI03"
    model.meta.instrument.optical_element = "F158"
    model.meta.photometry.conversion_megajanskys = CONVERSION
    model.meta.photometry.pixel_area = PIXEL_AREA
    model.data = data.astype(np.float32)
    model.err = err.astype(np.float32)
    model.dq = np.zeros(SHAPE, dtype=np.uint32)
    return model


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return generate_cache(tmp_path_factory.mktemp("psfcrds"), full_shape=(520, 520))


@pytest.fixture(scope="module")
def run(cache):
    truth = _truth()
    model = _image(truth)
    step = SourceCatalogStep()
    with builtin_cache(cache, hide_user_crds=True):
        result = step.run(model)
    return {"truth": truth, "model": model, "result": result, "step": step,
            "table": step.catalog.table}


def _grid(cache):
    with builtin_cache(cache, hide_user_crds=True):
        from romancal_lite.references import get_reference_file

        path = get_reference_file({"roman.meta.instrument.name": "WFI",
                                   "roman.meta.instrument.detector": "WFI03",
                                   "roman.meta.instrument.optical_element": "F158",
                                   "roman.meta.exposure.start_time": "2026-01-01T00:00:00",
                                   "roman.meta.exposure.type": "WFI_IMAGE"}, "epsf")
    import roman_datamodels.datamodels as rdm

    ref = rdm.open(path)
    return ref, EPSFGrid.from_reference(ref)


def _matched(run):
    """Detected sources matched to isolated truth stars (no other star within 8 px)."""
    truth, table = run["truth"], run["table"]
    pts = np.column_stack([truth["x"], truth["y"]])
    tree = cKDTree(pts)
    near = tree.query(pts, k=2)[0][:, 1]
    dist, idx = tree.query(np.column_stack([table["x_centroid"], table["y_centroid"]]))
    ok = (dist < 1.0) & (near[idx] > 8.0)
    return np.flatnonzero(ok), idx[ok]


# ---------------------------------------------------------------- the step


def test_columns_are_romancals(run):
    from romancal.source_catalog._aperture import ApertureCatalog
    from romancal.source_catalog._column_schema import CatalogSchema

    table = run["table"]
    for fit_psf in (True, False):
        official = CatalogSchema("prompt", fit_psf,
                                 ApertureCatalog.aperture_flux_colnames_for_radii()).column_names
        assert column_names(fit_psf) == official
    assert table.colnames == column_names(True) and len(table.colnames) == 74
    for name in ("x_psf", "x_psf_err", "y_psf", "y_psf_err"):
        assert str(table[name].unit) == "pix" and table[name].dtype == np.float32
    for name in ("psf_flux", "psf_flux_err"):
        assert str(table[name].unit) == "nJy" and table[name].dtype == np.float32
    assert table["ra_psf"].dtype == np.float64 and str(table["ra_psf"].unit) == "deg"
    assert str(table["dec_psf_err"].unit) == "arcsec"
    assert table["psf_flags"].dtype == np.int32 and table["psf_flags"].unit is None
    assert table["psf_gof"].dtype == np.float32 and table["psf_gof"].unit is None
    assert table["is_extended"].dtype == np.bool_
    assert table["sharpness"].dtype == table["roundness1"].dtype == np.float32
    assert table["dust_ebv"].dtype == np.float32 and np.all(np.isnan(table["dust_ebv"]))
    # provenance: the EPSF and APCORR references through the Step machinery
    ref_file = run["result"].meta.ref_file
    assert ref_file.epsf.endswith("roman_lite_wfi_epsf_wfi03_f158_0001.asdf")
    assert ref_file.apcorr.endswith("roman_lite_wfi_apcorr_wfi03_0001.asdf")
    assert ref_file.pedigree["epsf"] == "DUMMY"


def test_psf_fit_recovers_the_truth(run):
    table, truth = run["table"], run["truth"]
    rows, stars = _matched(run)
    good = np.asarray(table["psf_flags"])[rows] == 0
    rows, stars = rows[good], stars[good]
    assert len(rows) > 150
    flux = np.asarray(table["psf_flux"], float)[rows]
    ratio = flux / (truth["flux"][stars] * TO_NJY)
    assert abs(np.median(ratio) - 1) < 0.005
    pulls = {
        "flux": (flux - truth["flux"][stars] * TO_NJY) / np.asarray(table["psf_flux_err"])[rows],
        "x": (np.asarray(table["x_psf"])[rows] - truth["x"][stars])
        / np.asarray(table["x_psf_err"])[rows],
        "y": (np.asarray(table["y_psf"])[rows] - truth["y"][stars])
        / np.asarray(table["y_psf_err"])[rows],
    }
    for name, p in pulls.items():
        width = 1.4826 * np.median(np.abs(p - np.median(p)))
        assert abs(np.median(p)) < 0.2, name
        assert 0.85 < width < 1.15, (name, width)
    # the reduced chi2 of a correct model is ~1
    assert 0.85 < np.median(np.asarray(table["psf_gof"])[rows]) < 1.15


def test_sky_positions_follow_the_psf_fit(run, cache):
    # the fixture image has no WCS: the sky columns are NaN, the pixel ones are not
    table = run["table"]
    assert np.all(np.isnan(table["ra_psf"])) and np.isfinite(table["x_psf"]).all()


def test_blended_pair_is_fit_together(run, cache):
    truth = run["truth"]
    # without deblending the pair is one segment, one start, one PSF (romancal's
    # behaviour): the fit settles on the brighter star
    table = run["table"]
    row = int(np.argmin(np.hypot(np.asarray(table["x_centroid"]) - 102.0,
                                 np.asarray(table["y_centroid"]) - 201.4)))
    assert np.hypot(table["x_psf"][row] - truth["x"][0], table["y_psf"][row] - truth["y"][0]
                    ) < 0.05
    assert table["psf_flux"][row] / (truth["flux"][0] * TO_NJY) == pytest.approx(1.0, abs=0.03)
    # deblended, the two starts are 4.4 px apart and fit as one group
    step = SourceCatalogStep(deblend=True, npixels=5)
    with builtin_cache(cache, hide_user_crds=True):
        step.run(_image(truth))
    table = step.catalog.table
    for star in (0, 1):
        d = np.hypot(np.asarray(table["x_psf"]) - truth["x"][star],
                     np.asarray(table["y_psf"]) - truth["y"][star])
        row = int(np.argmin(d))
        assert d[row] < 0.1
        assert table["psf_flux"][row] / (truth["flux"][star] * TO_NJY) == pytest.approx(
            1.0, abs=0.03)
        assert table["psf_flags"][row] == 0
    assert step.catalog.table["psf_flux"].size > 150

def test_is_extended_and_daofind(run):
    table = run["table"]
    galaxy = int(np.argmin(np.hypot(np.asarray(table["x_centroid"]) - 300.2,
                                    np.asarray(table["y_centroid"]) - 400.7)))
    assert bool(table["is_extended"][galaxy])
    rows, _ = _matched(run)
    bright = rows[np.asarray(table["psf_flux"])[rows] > 500 * TO_NJY]
    assert not np.any(np.asarray(table["is_extended"])[bright])
    assert table.meta["ee_fractions"][1] < table.meta["ee_fractions"][2] <= 1.0
    # stars are sharp and round, the galaxy is not sharp
    assert np.median(np.asarray(table["sharpness"])[bright]) > 0.5
    assert table["sharpness"][galaxy] < 0.7 * np.median(np.asarray(table["sharpness"])[bright])
    assert np.median(np.abs(np.asarray(table["roundness1"])[bright])) < 0.2


def test_daofind_matches_romancal(run):
    from romancal.source_catalog._daofind import DAOFindCatalog

    rng = np.random.default_rng(2)
    data = rng.normal(size=(60, 70))
    data[20:25, 30:35] += 5.0
    xy = np.array([[32.2, 22.7], [0.3, 1.2], [69.4, 59.6], [40.0, 10.0], [np.nan, 3.0]])
    ref = DAOFindCatalog(data, np.where(np.isfinite(xy), xy, -1000.0), 2.0)
    sharp, round1 = daofind_measures(data, xy[:, 0], xy[:, 1], 2.0)
    np.testing.assert_allclose(sharp, ref.sharpness, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(round1, ref.roundness1, rtol=1e-5, atol=1e-6)
    for fwhm in (1.0, 3.5):
        ref = DAOFindCatalog(data, xy[:4], fwhm)
        np.testing.assert_allclose(daofind_measures(data, xy[:4, 0], xy[:4, 1], fwhm)[0],
                                   ref.sharpness, rtol=1e-5, atol=1e-6)


def test_fit_psf_false_has_no_psf_columns(run, cache):
    step = SourceCatalogStep(fit_psf=False)
    with builtin_cache(cache, hide_user_crds=True):
        result = step.run(_image(run["truth"]))
    table = step.catalog.table
    assert table.colnames == column_names(False) and len(table.colnames) == 62
    assert not any("psf" in name for name in table.colnames)
    assert not str(result.meta.ref_file.epsf).endswith(".asdf")
    np.testing.assert_array_equal(table["kron_flux"], run["table"]["kron_flux"])


def test_epsf_not_applicable_warns_and_skips(run, cache, caplog):
    step = SourceCatalogStep(override_epsf="N/A")
    with caplog.at_level(logging.WARNING), builtin_cache(cache, hide_user_crds=True):
        step.run(run["model"])
    assert sum("No EPSF reference" in r.getMessage() for r in caplog.records) == 1
    assert step.catalog.table.colnames == column_names(False)


def test_override_epsf_is_used(run, cache, tmp_path):
    from romancal_lite.references import build_reference, write_reference

    path = tmp_path / "wide_epsf.asdf"
    write_reference(path, build_reference("epsf", "WFI03", (520, 520), "2020-01-01T00:00:00",
                                          "F158", psf_sigma=1.2))
    step = SourceCatalogStep(override_epsf=str(path))
    with builtin_cache(cache, hide_user_crds=True):
        result = step.run(run["model"])
    assert result.meta.ref_file.epsf == str(path)
    # a too-wide PSF fits the stars badly
    rows, _ = _matched(run)
    assert np.median(np.asarray(step.catalog.table["psf_gof"])[rows]) > 2 * np.median(
        np.asarray(run["table"]["psf_gof"])[rows])


# ---------------------------------------------------------------- the fitter


def test_fit_matches_photutils(cache):
    """Same gridded PSF, same image, same start: photutils' PSFPhotometry (test only)."""
    from astropy.table import Table
    from photutils.psf import PSFPhotometry, SourceGrouper
    from romancal.source_catalog.psf import get_gridded_psf_model

    ref, grid = _grid(cache)
    truth = _truth(seed=3, n=120)
    model = _image(truth, galaxy=(50.0, 50.0, 0.0, 1.0))
    data = np.asarray(model.data, float) - SKY
    err = np.asarray(model.err, float)
    mask = np.zeros(SHAPE, bool)
    mask[int(truth["y"][5]) - 1, int(truth["x"][5])] = True  # a masked pixel in a stamp
    rng = np.random.default_rng(5)
    x0 = truth["x"] + rng.normal(0, 0.15, len(truth["x"]))
    y0 = truth["y"] + rng.normal(0, 0.15, len(truth["x"]))
    x0[7], y0[7] = 1.2, 40.3  # trimmed at the edge
    ours = fit_psf_photometry(data, err, mask, x0, y0, grid)

    init = Table({"x_init": x0, "y_init": y0})
    phot = PSFPhotometry(get_gridded_psf_model(ref), (5, 5),
                         grouper=SourceGrouper(min_separation=5), aperture_radius=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = phot(data=data, error=err, mask=mask, init_params=init)
    assert (np.asarray(ours.group_size) > 1).sum() >= 2  # a group is compared too
    np.testing.assert_allclose(ours.flux, res["flux_fit"], rtol=2e-4)
    np.testing.assert_allclose(ours.x, res["x_fit"], rtol=0, atol=2e-4)
    np.testing.assert_allclose(ours.y, res["y_fit"], rtol=0, atol=2e-4)
    np.testing.assert_allclose(ours.flux_err, res["flux_err"], rtol=1e-3)
    np.testing.assert_allclose(ours.x_err, res["x_err"], rtol=1e-3)
    np.testing.assert_allclose(ours.y_err, res["y_err"], rtol=1e-3)
    np.testing.assert_allclose(ours.gof, res["reduced_chi2"], rtol=1e-3)
    np.testing.assert_array_equal(ours.n_pix, res["n_pixels_fit"])
    np.testing.assert_array_equal(ours.flags, res["flags"])
    assert ours.flags[7] & PSF_FLAGS.N_PIXELS_FIT_PARTIAL and ours.flags[5]


def test_failures_are_flagged_not_raised(cache):
    _, grid = _grid(cache)
    rng = np.random.default_rng(1)
    data = rng.normal(0, 0.05, (64, 64))
    err = np.full((64, 64), 0.05)
    scene.render_stars(data, {"x": np.array([30.0]), "y": np.array([30.0]),
                              "flux": np.array([100.0])}, scene.psf_sigma("F158"))
    mask = np.zeros((64, 64), bool)
    mask[8:15, 8:15] = True  # fully masks the cutout at (11, 11)
    mask[48:53, 48:53] = True
    mask[50, 51] = False
    mask[51, 51] = False  # two unmasked pixels: too few
    err[40, 20] = np.nan  # left out
    x = np.array([30.1, 11.0, 50.0, 200.0, np.nan, 20.0, 0.0, 45.0])
    y = np.array([29.8, 11.0, 50.0, 30.0, 3.0, 40.0, 0.0, 10.0])
    fit = fit_psf_photometry(data, err, mask, x, y, grid)
    f = fit.flags
    assert f[0] == 0 and abs(fit.flux[0] / 100 - 1) < 0.05 and np.isfinite(fit.x_err[0])
    assert f[1] & PSF_FLAGS.FULLY_MASKED and np.isnan(fit.flux[1])
    assert f[2] & PSF_FLAGS.TOO_FEW_PIXELS and np.isnan(fit.x[2])
    assert f[3] & PSF_FLAGS.NO_OVERLAP and np.isnan(fit.y[3])
    assert f[4] & PSF_FLAGS.NON_FINITE_POSITION and np.isnan(fit.flux[4])
    assert f[5] & PSF_FLAGS.N_PIXELS_FIT_PARTIAL and fit.n_pix[5] == 24
    assert f[6] & PSF_FLAGS.N_PIXELS_FIT_PARTIAL and fit.n_pix[6] == 9
    assert np.isfinite(fit.flux[5]) and np.isfinite(fit.flux[6])
    # pure noise: a fit that may wander, flagged rather than raised; a flux near 0
    assert np.isfinite(fit.flux[7]) or f[7]
    for i in (1, 2, 3, 4):
        assert f[i] & PSF_FLAGS.NO_COVARIANCE and np.isnan(fit.flux_err[i])


def test_masked_centre_pixel_in_the_step(run, cache):
    model = _image(run["truth"])
    rows, stars = _matched(run)
    star = stars[np.argmax(run["truth"]["flux"][stars])]
    ix, iy = round(run["truth"]["x"][star]), round(run["truth"]["y"][star])
    model.dq[iy, ix] = pixel.DO_NOT_USE
    step = SourceCatalogStep()
    with builtin_cache(cache, hide_user_crds=True):
        step.run(model)
    table = step.catalog.table
    row = int(np.argmin(np.hypot(np.asarray(table["x_centroid"]) - ix,
                                 np.asarray(table["y_centroid"]) - iy)))
    assert table["psf_flags"][row] & PSF_FLAGS.N_PIXELS_FIT_PARTIAL
    assert table["psf_flux"][row] / (run["truth"]["flux"][star] * TO_NJY) == pytest.approx(
        1.0, abs=0.02)


def test_jitter_adjustment_matches_romancal(cache):
    from romancal.source_catalog.psf import add_jitter

    ref, _ = _grid(cache)
    image = datamodels.ImageModel.create_minimal()

    class Meta(dict):
        __getattr__ = dict.get

    fake_image = type("Img", (), {"meta": Meta(guide_star=Meta(
        jitter_major=20.0, jitter_minor=12.0, jitter_position_angle=30.0))})()
    expected = add_jitter(ref, fake_image)
    ours = adjust_jitter(np.asarray(ref.psf, float), (8.0, 8.0, 0.0), (20.0, 12.0, 30.0),
                         int(ref.meta.oversample))
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6 * float(np.max(expected)))
    assert not np.allclose(ours, ref.psf, atol=1e-4)
    assert adjust_jitter(ref.psf, (8, 8, 0), (8, 8, 0), 4) is ref.psf
    del image


def test_varying_grid_matches_photutils(tmp_path):
    """Stamps that change across the detector: bilinear interpolation as photutils."""
    import roman_datamodels.datamodels as rdm
    from astropy.table import Table
    from photutils.psf import PSFPhotometry, SourceGrouper
    from romancal.source_catalog.psf import get_gridded_psf_model

    from romancal_lite.references import build_reference, gaussian_epsf, write_reference

    node = build_reference("epsf", "WFI03", (264, 264), "2020-01-01T00:00:00", "F158")
    sigmas = np.linspace(0.5, 0.9, 9)
    for g, sigma in enumerate(sigmas):
        node["psf"][0, :, g] = gaussian_epsf(sigma)
    path = tmp_path / "varying_epsf.asdf"
    write_reference(path, node)
    ref = rdm.open(path)
    grid = EPSFGrid.from_reference(ref)
    assert len(grid.stamps) == 9
    rng = np.random.default_rng(8)
    n = 40
    x0, y0 = rng.uniform(8, 248, n), rng.uniform(8, 248, n)
    data = rng.normal(0, 0.05, (256, 256))
    # stars drawn with photutils' model itself at the true positions
    phot = PSFPhotometry(get_gridded_psf_model(ref), (5, 5),
                         grouper=SourceGrouper(min_separation=5), aperture_radius=5)
    model = get_gridded_psf_model(ref)
    yy, xx = np.mgrid[:256, :256]
    for xi, yi in zip(x0, y0, strict=True):
        box = (slice(int(yi) - 6, int(yi) + 7), slice(int(xi) - 6, int(xi) + 7))
        data[box] += model.evaluate(xx[box], yy[box], 200.0, xi, yi)
    err = np.full(data.shape, 0.05)
    start_x = x0 + rng.normal(0, 0.2, n)
    start_y = y0 + rng.normal(0, 0.2, n)
    ours = fit_psf_photometry(data, err, None, start_x, start_y, grid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = phot(data=data, error=err, init_params=Table({"x_init": start_x,
                                                            "y_init": start_y}))
    np.testing.assert_allclose(ours.flux, res["flux_fit"], rtol=2e-4)
    np.testing.assert_allclose(ours.x, res["x_fit"], rtol=0, atol=2e-4)
    np.testing.assert_allclose(ours.y, res["y_fit"], rtol=0, atol=2e-4)
    np.testing.assert_allclose(ours.flux_err, res["flux_err"], rtol=2e-3)
    # and the right answer: the truth
    assert np.median(np.abs(ours.flux / 200.0 - 1)) < 0.01
