"""The built-in EPSF and APCORR references: the simulator's PSF, official format, selection."""

from __future__ import annotations

import json

import numpy as np
import pytest
from photutils.aperture import CircularAperture, aperture_photometry

from romancal_lite.references import (
    build_reference,
    check_reference,
    gaussian_encircled_energy,
    gaussian_epsf,
    generate_cache,
    get_reference_file,
    open_builtin_cache,
    open_reference_tree,
    write_reference,
)
from romancal_lite.references._cache import _STAMP, GENERATOR_VERSION
from romancal_lite.simulate import scene

SCIENCE = {
    "roman.meta.instrument.name": "WFI",
    "roman.meta.instrument.detector": "WFI07",
    "roman.meta.instrument.optical_element": "F158",
    "roman.meta.exposure.start_time": "2026-01-01T00:00:00",
    "roman.meta.exposure.type": "WFI_IMAGE",
}


def test_epsf_is_the_simulators_pixel_integrated_psf():
    sigma = scene.psf_sigma("F158")
    node = build_reference("epsf", "WFI07", (40, 48), "2020-01-01T00:00:00", "F158")
    meta = node["meta"]
    psf = node["psf"]
    assert psf.dtype == np.float32 and psf.ndim == 5
    assert psf.shape[:3] == (1, 3, 9) and meta["oversample"] == 4
    assert meta["instrument"]["optical_element"] == "F158"
    assert meta["pedigree"] == "DUMMY"
    # the grid spans the science array of this shape
    assert min(meta["pixel_x"]) == 0.0 and max(meta["pixel_x"]) == 39.0
    assert max(meta["pixel_y"]) == 31.0
    stamp = psf[0, 1, 4]
    assert stamp.sum() == pytest.approx(16.0, rel=1e-4)  # "new style": oversample**2
    # the samples at whole-pixel offsets are the pixels the simulator draws
    centre = (stamp.shape[0] - 1) // 2
    img = np.zeros((25, 25))
    scene.render_stars(img, {"x": np.array([12.0]), "y": np.array([12.0]),
                             "flux": np.array([1.0])}, sigma)
    sampled = stamp[centre - 48:centre + 49:4, centre - 48:centre + 49:4]
    assert np.allclose(sampled, img, atol=2e-7)
    # one sigma per element
    f062 = build_reference("epsf", "WFI07", (40, 48), "2020-01-01T00:00:00", "F062")
    assert f062["psf"][0, 1, 0].max() > stamp.max()


def test_epsf_custom_sigma():
    node = build_reference("epsf", "WFI07", (40, 48), "2020-01-01T00:00:00", "F158",
                           psf_sigma=1.0)
    assert np.allclose(node["psf"][0, 0, 0], gaussian_epsf(1.0))


def test_apcorr_encircled_energy_is_aperture_photometry():
    sigma = scene.psf_sigma("F158")
    node = build_reference("apcorr", "WFI07", (40, 48), "2020-01-01T00:00:00")
    entry = node["data"]["F158"]
    radii, fractions = entry["ee_radii"], entry["ee_fractions"]
    assert radii.dtype == fractions.dtype == np.float64
    assert np.all(np.diff(fractions) >= 0) and fractions[-1] == pytest.approx(1.0, abs=1e-4)
    assert np.allclose(entry["ap_corrections"], 1.0 / fractions)
    assert entry["sky_background_rin"] == pytest.approx(2.4 / 0.11)
    assert node["data"]["DARK"]["ee_fractions"] is None
    # phase-averaged exact-overlap aperture photometry of simulated stars (one per cell)
    rng = np.random.default_rng(3)
    cells = 15
    xy = (np.indices((cells, cells)).reshape(2, -1).T * 21 + 10).astype(float)
    xy += rng.uniform(-0.5, 0.5, xy.shape)
    img = np.zeros((cells * 21, cells * 21))
    scene.render_stars(img, {"x": xy[:, 0], "y": xy[:, 1], "flux": np.ones(len(xy))}, sigma)
    radii_check = (1.0, 1.818, 3.0)
    phot = aperture_photometry(img, [CircularAperture(xy, r) for r in radii_check])
    for i, radius in enumerate(radii_check):
        assert np.mean(phot[f"aperture_sum_{i}"]) == pytest.approx(
            float(gaussian_encircled_energy(sigma, [radius])[0]), abs=3e-3)


def test_official_format_and_check(tmp_path):
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    for reftype, elem in (("epsf", "F158"), ("apcorr", None)):
        path = tmp_path / f"{reftype}.asdf"
        write_reference(path, build_reference(reftype, "WFI07", (40, 48),
                                              "2020-01-01T00:00:00", elem))
        model = rdm.open(path)
        model.validate()
        check_reference(path, reftype, SCIENCE)
        with open_reference_tree(path) as node:
            assert str(node["meta"]["reftype"]) == reftype.upper()
    # romancal 1.1 reads the EPSF through photutils' GriddedPSFModel
    from romancal.source_catalog.psf import get_gridded_psf_model

    grid = get_gridded_psf_model(rdm.open(tmp_path / "epsf.asdf"))
    assert grid.evaluate(np.array([10.0]), np.array([10.0]), 1.0, 10.0, 10.0)[0] == (
        pytest.approx(float(gaussian_epsf(scene.psf_sigma("F158"))[48, 48]), rel=1e-5))


def test_epsf_check_rejects_bad_stamps(tmp_path):
    from romancal_lite.errors import ReferenceFileError

    node = build_reference("epsf", "WFI07", (40, 48), "2020-01-01T00:00:00", "F158")
    node["psf"] = node["psf"][0, 0]
    path = tmp_path / "bad_epsf.asdf"
    write_reference(path, node)
    with pytest.raises(ReferenceFileError, match="5-D"):
        check_reference(path, "epsf", SCIENCE)
    wrong = dict(SCIENCE, **{"roman.meta.instrument.optical_element": "F062"})
    good = tmp_path / "epsf.asdf"
    write_reference(good, build_reference("epsf", "WFI07", (40, 48), "2020-01-01T00:00:00",
                                          "F158"))
    with pytest.raises(ReferenceFileError, match="F158.*F062"):
        check_reference(good, "epsf", wrong)


def test_selected_per_detector_and_element(tmp_path):
    from romancal_lite.references import builtin_cache

    cache = generate_cache(tmp_path, full_shape=(40, 48))
    with builtin_cache(cache, hide_user_crds=True):
        epsf = get_reference_file(SCIENCE, "epsf")
        apcorr = get_reference_file(SCIENCE, "apcorr")
    assert epsf.endswith("roman_lite_wfi_epsf_wfi07_f158_0001.asdf")
    assert apcorr.endswith("roman_lite_wfi_apcorr_wfi07_0001.asdf")
    check_reference(epsf, "epsf", SCIENCE)


def test_older_cache_is_upgraded_with_its_settings(tmp_path):
    cache = generate_cache(tmp_path, full_shape=(40, 48), reftypes=("gain", "flat"))
    stamp_path = tmp_path / _STAMP
    stamp = json.loads(stamp_path.read_text())
    stamp["settings"]["generator_version"] = 1  # before EPSF, APCORR (2), INL (3), decay (4)
    stamp_path.write_text(json.dumps(stamp))
    cache.ensure_reference("roman_lite_wfi_gain_wfi07_0001.asdf")
    upgraded = open_builtin_cache(tmp_path)
    assert upgraded.full_shape == (40, 48)
    # each later version's added types: EPSF, APCORR (2), INL (3), DARKDECAYSIGNAL (4)
    assert set(upgraded.reftypes) == {"gain", "flat", "epsf", "apcorr",
                                      "integralnonlinearity", "darkdecaysignal"}
    assert json.loads(stamp_path.read_text())["settings"]["generator_version"] == (
        GENERATOR_VERSION)
    assert (tmp_path / "mappings" / "roman" / "roman_lite_wfi_epsf_0001.rmap").exists()
