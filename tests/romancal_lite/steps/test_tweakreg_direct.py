"""``tweakreg``'s direct use of tweakwcs against its ``tweakwcs.align_wcs`` path.

The step's absolute fit calls tweakwcs' pieces (``XYXYMatch``, ``iter_linear_fit``,
the correction model of ``RomanWCSCorrector``) directly (``align_method="direct"``,
the default) instead of ``tweakwcs.align_wcs`` (``align_method="align_wcs"``, what
romancal does). Both must give the same matches, the same fit and the same corrected
WCS on the same inputs: one detector; four detectors of one exposure fitted jointly
(one group); two exposures of two detectors each (relative fit first, then the
absolute fit combines with the relative correction); and the same failures (too few
matches, no sources, a singular fit).

The inputs are built without the pipeline: each detector's WCS is assign_wcs'
``build_wcs`` with the built-in DISTORTION; stars are placed on the sky, the reference
catalog is their true positions, the image catalogs their pixel positions through the
true WCS (plus 0.02 px noise and some spurious sources), and each image's WCS is
rebuilt from a pointing moved by a few arcsec and rolled.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
from astropy.table import Table

from romancal_lite.references import build_reference
from romancal_lite.references._cache import DEFAULT_USEAFTERS
from romancal_lite.steps.assign_wcs import (
    Pointing,
    build_wcs,
    compute_footprint,
    s_region_polygon,
)
from romancal_lite.steps.tweakreg import tweakreg as tw

SHAPE = (256, 512)  # (ny, nx) of each detector's science array
V2V3_REF = (1546.3846181707652, -892.7916365721071)  # WFI_CEN, as the simulator
TRUE = Pointing(ra_ref=10.0, dec_ref=-30.0, roll_ref=0.05, v2_ref=V2V3_REF[0],
                v3_ref=V2V3_REF[1])
PARAMS = {"minobj": 10, "searchrad": 6.0, "separation": 1.0, "use2dhist": True,
          "tolerance": 0.7, "fitgeometry": "general", "nclip": 3, "sigma": 3.0}
RELATIVE = {**PARAMS, "searchrad": 2.0, "enforce_user_order": False, "expand_refcat": False}
#: A 9 x 9 grid of pixels (corners included) where the corrected WCSs are compared.
GRID = np.meshgrid(np.linspace(-0.5, SHAPE[1] - 0.5, 9), np.linspace(-0.5, SHAPE[0] - 0.5, 9))


def _moved(pointing: Pointing, dra: float, ddec: float, droll_arcmin: float) -> Pointing:
    cos_dec = math.cos(math.radians(pointing.dec_ref))
    return dataclasses.replace(
        pointing,
        ra_ref=pointing.ra_ref + dra / 3600.0 / cos_dec,
        dec_ref=pointing.dec_ref + ddec / 3600.0,
        roll_ref=pointing.roll_ref + droll_arcmin / 60.0,
    )


def _distortion(detector: str):
    node = build_reference("distortion", detector, (SHAPE[0] + 8, SHAPE[1] + 8),
                           DEFAULT_USEAFTERS[0], "F158")
    return node["coordinate_distortion_transform"]


def _exposure(detectors, true, recorded, seed, n_stars=120, group=None):
    """Images of one exposure: true WCS for the catalogs, recorded WCS to be fitted."""
    rng = np.random.default_rng(seed)
    images, sky = [], []
    for det in detectors:
        distortion = _distortion(det)
        true_wcs = build_wcs(copy.deepcopy(distortion), true, SHAPE)
        wcs = build_wcs(copy.deepcopy(distortion), recorded, SHAPE)
        x = rng.uniform(2.0, SHAPE[1] - 3.0, n_stars)
        y = rng.uniform(2.0, SHAPE[0] - 3.0, n_stars)
        ra, dec = true_wcs(x, y)
        sky.append((ra, dec))
        # measured positions (0.02 px noise) plus 10 sources the reference lacks
        xs = np.concatenate([x + rng.normal(0, 0.02, n_stars), rng.uniform(2, SHAPE[1] - 3, 10)])
        ys = np.concatenate([y + rng.normal(0, 0.02, n_stars), rng.uniform(2, SHAPE[0] - 3, 10)])
        wcsinfo = {"roll_ref": recorded.roll_ref, "v2_ref": recorded.v2_ref,
                   "v3_ref": recorded.v3_ref}
        images.append(tw.AlignImage(f"{det}-{seed}", wcs, wcsinfo,
                                    Table({"x": xs, "y": ys}), SHAPE, group))
    ra = np.concatenate([s[0] for s in sky])
    dec = np.concatenate([s[1] for s in sky])
    return images, ra, dec


def _refcat(ra, dec, seed=0, n_extra=40):
    """True positions plus stars the images do not see (around them)."""
    rng = np.random.default_rng(seed)
    extra_ra = rng.uniform(ra.min() - 0.01, ra.max() + 0.01, n_extra)
    extra_dec = rng.uniform(dec.min() - 0.01, dec.max() + 0.01, n_extra)
    return Table({"RA": np.concatenate([ra, extra_ra]), "DEC": np.concatenate([dec, extra_dec])})


@pytest.fixture(scope="module")
def one_detector():
    images, ra, dec = _exposure(["WFI02"], TRUE, _moved(TRUE, 3.0, -2.0, 3.0), seed=1)
    return images, _refcat(ra, dec)


@pytest.fixture(scope="module")
def four_detectors():
    images, ra, dec = _exposure(["WFI01", "WFI02", "WFI03", "WFI04"], TRUE,
                                _moved(TRUE, 3.0, -2.0, 0.3), seed=2, group="exp1")
    return images, _refcat(ra, dec)


@pytest.fixture(scope="module")
def two_exposures():
    """Two dithered exposures of the same two detectors, each its own pointing error."""
    second = _moved(TRUE, 20.0, 10.0, 0.0)
    a, ra_a, dec_a = _exposure(["WFI01", "WFI02"], TRUE, _moved(TRUE, 3.0, -2.0, 0.2),
                               seed=3, group="exp1")
    b, ra_b, dec_b = _exposure(["WFI01", "WFI02"], second, _moved(second, 2.2, -1.4, 0.1),
                               seed=4, group="exp2")
    # the second exposure sees the first's stars too (where they fall on it)
    for image in b:
        # through the true WCS of exposure 2
        true_wcs = build_wcs(copy.deepcopy(image.wcs.pipeline[0].transform), second, SHAPE)
        tx, ty = true_wcs.invert(ra_a, dec_a, with_bounding_box=False)
        on = (tx > 2) & (tx < SHAPE[1] - 3) & (ty > 2) & (ty < SHAPE[0] - 3)
        image.catalog = Table({"x": np.concatenate([np.asarray(image.catalog["x"]), tx[on]]),
                               "y": np.concatenate([np.asarray(image.catalog["y"]), ty[on]])})
    ra = np.concatenate([ra_a, ra_b])
    dec = np.concatenate([dec_a, dec_b])
    return a + b, _refcat(ra, dec)


def _both(images, refcat, relative=None):
    direct = tw.align_images(images, refcat, PARAMS, relative, method="direct")
    reference = tw.align_images(images, refcat, PARAMS, relative, method="align_wcs")
    return direct, reference


def _assert_same_fit(direct, reference):
    assert direct.succeeded == reference.succeeded
    assert direct.message == reference.message
    assert direct.relative == reference.relative
    assert direct.aborted == reference.aborted
    for got, want in zip(direct.fit_info, reference.fit_info, strict=True):
        if want is None:
            assert got is None
            continue
        # the same matches (indices into the reference and group catalogs) and clipping
        for key in ("matched_ref_idx", "matched_input_idx", "fitmask"):
            if key in want:
                np.testing.assert_array_equal(got[key], want[key])
        # the serialized results (wcs_fit_results): same keys, same values
        got_s, want_s = tw.serialize_fit_info(got), tw.serialize_fit_info(want)
        assert list(got_s) == list(want_s)
        for key, value in want_s.items():
            if isinstance(value, str | bool | int) or value is None:
                assert got_s[key] == value, key
            else:
                # shift/center/rmse in arcsec: 1e-6"; angles, scales, matrix: 1e-9 relative
                atol = 1e-6 if key in ("shift", "center", "rmse", "mae") else 0.0
                np.testing.assert_allclose(got_s[key], value, rtol=1e-9, atol=atol,
                                           err_msg=key)


def _assert_same_wcs(direct, reference):
    for got, want in zip(direct.wcs, reference.wcs, strict=True):
        if want is None:
            assert got is None
            continue
        assert got.available_frames == want.available_frames
        assert got.name == want.name
        ra_g, dec_g = got(*GRID)
        ra_w, dec_w = want(*GRID)
        assert np.max(np.abs(ra_g - ra_w)) * 3600 < 1e-9
        assert np.max(np.abs(dec_g - dec_w)) * 3600 < 1e-9
        x_g, y_g = got.invert(ra_w, dec_w)
        x_w, y_w = want.invert(ra_w, dec_w)
        np.testing.assert_allclose(x_g, x_w, atol=1e-9)
        np.testing.assert_allclose(y_g, y_w, atol=1e-9)
        assert s_region_polygon(compute_footprint(got)) == s_region_polygon(
            compute_footprint(want))
        # the correction model itself: same affine map, same tangent point
        index = got.available_frames.index("v2v3corr") - 1
        corr_g, corr_w = got.pipeline[index].transform, want.pipeline[index].transform
        assert corr_g.name == corr_w.name
        np.testing.assert_allclose(corr_g["tp_affine"].matrix.value,
                                   corr_w["tp_affine"].matrix.value, rtol=0, atol=1e-15)
        np.testing.assert_allclose(corr_g["tp_affine"].translation.value,
                                   corr_w["tp_affine"].translation.value, rtol=0, atol=1e-15)
        np.testing.assert_array_equal(corr_g["det_to_optic_axis"].angles.value,
                                      corr_w["det_to_optic_axis"].angles.value)


def _truth_error_mas(alignment, images, true):
    """Largest distance (mas) of the corrected WCS from the true one on the grid."""
    worst = 0.0
    for wcs, image in zip(alignment.wcs, images, strict=True):
        det_true = build_wcs(copy.deepcopy(image.wcs.pipeline[0].transform), true, SHAPE)
        ra_t, dec_t = det_true(*GRID)
        ra, dec = wcs(*GRID)
        sep = tw._separation_deg(ra, dec, ra_t, dec_t) * 3.6e6
        worst = max(worst, float(np.max(sep)))
    return worst


def test_one_detector_same_fit_and_wcs(one_detector):
    images, refcat = one_detector
    direct, reference = _both(images, refcat)
    assert direct.succeeded
    assert direct.fit_info[0]["nmatches"] >= 100
    _assert_same_fit(direct, reference)
    _assert_same_wcs(direct, reference)
    # and the fit is right: the injected (3", -2", 3') is removed
    assert _truth_error_mas(direct, images, TRUE) < 10.0
    # the images' own WCSs are left as they were (shared, not copied)
    assert "v2v3corr" not in images[0].wcs.available_frames


def test_four_detectors_one_joint_fit(four_detectors):
    images, refcat = four_detectors
    direct, reference = _both(images, refcat, RELATIVE)
    assert direct.succeeded and direct.relative == "not needed"
    assert direct.fit_info[0]["nmatches"] >= 400
    _assert_same_fit(direct, reference)
    _assert_same_wcs(direct, reference)
    assert _truth_error_mas(direct, images, TRUE) < 10.0


def test_two_exposures_relative_then_absolute(two_exposures):
    images, refcat = two_exposures
    direct, reference = _both(images, refcat, RELATIVE)
    assert direct.succeeded and direct.relative == "done"
    # every image's WCS carries one combined correction (relative x absolute)
    assert all(w.available_frames.count("v2v3corr") == 1 for w in direct.wcs)
    _assert_same_fit(direct, reference)
    _assert_same_wcs(direct, reference)


def test_already_corrected_wcs_is_corrected_again(one_detector):
    """A WCS with a v2v3corr frame (an aligned image aligned again): tweakwcs combines."""
    images, refcat = one_detector
    first = tw.align_images(images, refcat, PARAMS, method="direct")
    again = [dataclasses.replace(images[0], wcs=first.wcs[0])]
    direct, reference = _both(again, refcat)
    assert direct.succeeded
    assert direct.wcs[0].available_frames.count("v2v3corr") == 1
    _assert_same_fit(direct, reference)
    _assert_same_wcs(direct, reference)
    # nothing left to correct
    assert abs(direct.fit_info[0]["shift"]).max() < 1e-3


@pytest.mark.parametrize("case", ["few_matches", "no_sources", "few_references"])
def test_failures_are_the_same(one_detector, case):
    images, refcat = one_detector
    image = images[0]
    if case == "few_matches":  # six sources: fewer matches than minobj
        image = dataclasses.replace(image, catalog=image.catalog[:6])
    elif case == "no_sources":
        image = dataclasses.replace(image, catalog=image.catalog[:0])
    else:
        refcat = refcat[:5]
    direct, reference = _both([image], refcat)
    assert not direct.succeeded
    assert direct.wcs == [None]
    _assert_same_fit(direct, reference)
    if case == "few_matches":
        assert direct.fit_info[0] == {"status": "FAILED: not enough matches"}
        assert not direct.aborted
    elif case == "no_sources":
        assert direct.message.startswith("the fit failed: Too few input images")
        assert direct.fit_info[0] == {"status": "FAILED: empty source catalog"}
    else:
        assert direct.message.startswith("too few reference sources")


def test_coincident_sources_documented_difference(one_detector):
    """Sources all at one position: both fail, for different reasons (docs/steps/tweakreg.md).

    ``align_wcs`` builds a spherical polygon around the sources (for its ordering of
    several groups) and spherical_geometry refuses the degenerate one ("Polygon made
    of too few points"); the direct path builds none and finds too few matches. Both
    leave the WCS as it was.
    """
    images, refcat = one_detector
    image = dataclasses.replace(images[0], catalog=Table({"x": [100.0] * 20, "y": [80.0] * 20}))
    direct, reference = _both([image], refcat)
    assert not direct.succeeded and not reference.succeeded
    assert direct.wcs == reference.wcs == [None]
    assert "too few points" in reference.message
    assert direct.fit_info[0] == {"status": "FAILED: not enough matches"}


def test_direct_path_does_not_use_align_wcs(one_detector, four_detectors, monkeypatch):
    """The default path builds no footprint polygons, group catalogs or WCS copies.

    With ``align_wcs`` (or the deep copy of a WCS) made to fail, the default
    ``method`` still aligns; the test fails if the default goes through
    ``tweakwcs.align_wcs`` (the feature switched off).
    """
    import tweakwcs
    import tweakwcs.imalign
    import tweakwcs.wcsimage
    from gwcs import WCS

    def refuse(*args, **kwargs):
        raise AssertionError("tweakwcs.align_wcs / WCSGroupCatalog used")

    monkeypatch.setattr(tweakwcs, "align_wcs", refuse)
    monkeypatch.setattr(tweakwcs.imalign, "align_wcs", refuse)
    monkeypatch.setattr(tweakwcs.wcsimage.WCSGroupCatalog, "__init__", refuse)
    monkeypatch.setattr(WCS, "__deepcopy__", refuse, raising=False)
    for images, refcat in (one_detector, four_detectors):
        result = tw.align_images(images, refcat, PARAMS)
        assert result.succeeded
        assert _truth_error_mas(result, images, TRUE) < 10.0


def test_unknown_method_is_an_error(one_detector):
    images, refcat = one_detector
    with pytest.raises(ValueError, match="method"):
        tw.align_images(images, refcat, PARAMS, method="fast")


# ------------------------------------------------------------------ the ECSV reader


def _write_ecsv(path, table):
    table.write(path, format="ascii.ecsv", overwrite=True)
    return path


def _read_with_astropy(path, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(tw, "_read_ecsv_columns", lambda *args: None)
        return tw.read_reference_catalog(path)


def _same_table(a, b):
    assert a.colnames == b.colnames
    for name in a.colnames:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]))


def test_ecsv_fast_reader_reads_what_astropy_reads(tmp_path, monkeypatch):
    from astropy import units as u

    rng = np.random.default_rng(5)
    n = 300
    table = Table({
        "source_id": np.arange(n),
        "name": [f"star {i}" for i in range(n)],  # quoted strings, not read
        "ra": rng.uniform(9.5, 9.7, n) * u.deg,
        "dec": rng.uniform(-30.1, -29.9, n) * u.deg,
        "pmra": rng.normal(0, 5, n) * u.mas / u.yr,
        "pmdec": rng.normal(0, 5, n) * u.mas / u.yr,
        "parallax": np.abs(rng.normal(0, 1, n)) * u.mas,
        "ref_epoch": np.full(n, 2016.0) * u.yr,
    })
    path = _write_ecsv(tmp_path / "cat.ecsv", table)
    fast = tw.read_reference_catalog(path)
    _same_table(fast, _read_with_astropy(path, monkeypatch))
    assert tw._read_ecsv_columns(path, tw._REFCAT_COLUMNS) is not None
    # units in arcsec, a ref_epoch in the table meta, no proper motions
    t2 = Table({"RA": table["ra"].to(u.arcsec), "DEC": table["dec"].to(u.arcsec)})
    t2.meta["ref_epoch"] = 2015.5
    t2["pmra"] = table["pmra"]
    path2 = _write_ecsv(tmp_path / "cat2.ecsv", t2)
    fast2 = tw.read_reference_catalog(path2)
    _same_table(fast2, _read_with_astropy(path2, monkeypatch))
    assert np.all(fast2["ref_epoch"] == 2015.5)


def test_ecsv_fast_reader_is_used(tmp_path, monkeypatch):
    """A plain ECSV does not go through astropy's reader (fails with the feature off)."""
    from astropy import units as u

    path = _write_ecsv(tmp_path / "cat.ecsv", Table({"ra": [1.0, 2.0] * u.deg,
                                                     "dec": [3.0, 4.0] * u.deg}))

    def refuse(*args, **kwargs):
        raise AssertionError("astropy's ECSV reader used")

    monkeypatch.setattr(tw, "_as_table", refuse)
    out = tw.read_reference_catalog(path)
    np.testing.assert_array_equal(out["RA"], [1.0, 2.0])


@pytest.mark.parametrize("case", ["masked_ra", "skycoord", "no_radec", "string_ra"])
def test_ecsv_not_plain_goes_to_astropy(tmp_path, monkeypatch, case):
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    if case == "masked_ra":
        table = Table({"ra": np.ma.masked_array([1.0, 2.0, 3.0], [False, True, False]),
                       "dec": [1.0, 2.0, 3.0]})
    elif case == "skycoord":
        table = Table({"sky_centroid": SkyCoord([1.0, 2.0] * u.deg, [3.0, 4.0] * u.deg)})
    elif case == "no_radec":
        table = Table({"x": [1.0], "y": [2.0]})
    else:
        table = Table({"ra": ["1.0", "2.0"], "dec": [3.0, 4.0]})
    path = _write_ecsv(tmp_path / "cat.ecsv", table)
    if case in ("masked_ra", "skycoord", "string_ra"):
        if case != "skycoord":
            assert tw._read_ecsv_columns(path, tw._REFCAT_COLUMNS) is None
        _same_table(tw.read_reference_catalog(path), _read_with_astropy(path, monkeypatch))
    else:
        with pytest.raises(tw.InputFileError, match="no RA/DEC"):
            tw.read_reference_catalog(path)
