"""Tests of the assign_wcs step: gwcs from pointing and DISTORTION, as romancal 1.1."""

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.modeling import models
from astropy.time import Time
from gwcs import WCS

from romancal_lite import datamodels
from romancal_lite.errors import InputFileError, ReferenceFileError
from romancal_lite.references import build_reference, get_reference_file, write_reference
from romancal_lite.steps.assign_wcs import (
    AssignWcsStep,
    Pointing,
    dva_correction,
    pointing_from_wcsinfo,
    s_region_polygon,
    v23tosky,
)

SHAPE = (32, 248)
CENTER = ((SHAPE[1] - 1) / 2, (SHAPE[0] - 1) / 2)
#: V2/V3 (arcsec) of the centre of WFI01 in the generated DISTORTION references
WFI01_V2V3 = (321.0, -1212.0)
#: the pointing of the real romanisim exposure in ../shared/data (aperture WFI_CEN)
REAL = {
    "ra_ref": 10.0,
    "dec_ref": -30.0,
    "roll_ref": 60,
    "v2_ref": 1546.3846181707652,
    "v3_ref": -892.7916365721071,
}
REAL_VA_SCALE = 1.0000001837037413


def make_image(detector="WFI01", element="F158", va_scale=1.0, **wcsinfo):
    model = datamodels.ImageModel.create_fake_data(shape=SHAPE)
    meta = model.meta
    meta.instrument.detector = detector
    meta.instrument.optical_element = element
    meta.exposure.type = "WFI_IMAGE"
    meta.exposure.start_time = Time("2026-05-01T00:00:00", format="isot", scale="utc")
    meta.velocity_aberration.scale_factor = va_scale
    pointing = {
        "ra_ref": 80.0,
        "dec_ref": 20.0,
        "roll_ref": 0.0,
        "v2_ref": WFI01_V2V3[0],
        "v3_ref": WFI01_V2V3[1],
    }
    pointing.update(wcsinfo)
    for key, value in pointing.items():
        meta.wcsinfo[key] = value
    return model


def sky(ra_dec):
    return SkyCoord(*ra_dec, unit="deg")


def test_reference_point_and_frames(builtin_refs):
    model = AssignWcsStep.call(make_image())
    wcs = model.meta.wcs
    assert isinstance(wcs, WCS)
    assert wcs.available_frames == ["detector", "v2v3", "v2v3vacorr", "world"]
    # the reference point is the centre of WFI01: it maps to (ra_ref, dec_ref)
    ra, dec = wcs(*CENTER)
    assert ra == pytest.approx(80.0, abs=1e-10) and dec == pytest.approx(20.0, abs=1e-10)
    x, y = wcs.invert(80.0, 20.0)
    assert (x, y) == pytest.approx(CENTER, abs=1e-6)
    assert wcs.bounding_box.bounding_box(order="F") == ((-0.5, 247.5), (-0.5, 31.5))
    assert model.meta.cal_step.assign_wcs == "COMPLETE"
    assert model.meta.ref_file.distortion == get_reference_file(model, "distortion")
    region = model.meta.wcsinfo.s_region
    assert region.startswith("POLYGON ICRS  ")
    corners = np.array(region.split()[2:], float).reshape(4, 2)
    np.testing.assert_allclose(corners, model.meta.wcs.footprint(center=False), atol=1e-9)


def test_off_detector_reference_point(builtin_refs):
    # the real exposure's reference point is the WFI_CEN aperture, off WFI01
    wcs = AssignWcsStep.call(make_image(**REAL)).meta.wcs
    ra, dec = wcs.get_transform("v2v3", "world")(REAL["v2_ref"], REAL["v3_ref"])
    assert (ra, dec) == pytest.approx((10.0, -30.0), abs=1e-10)
    assert sky(wcs(*CENTER)).separation(sky((10.0, -30.0))).arcsec == pytest.approx(
        np.hypot(REAL["v2_ref"] - WFI01_V2V3[0], REAL["v3_ref"] - WFI01_V2V3[1]), rel=1e-3
    )


@pytest.mark.parametrize("va_scale", [1.0, 1.0001])
def test_pixel_scale_and_velocity_aberration(builtin_refs, va_scale):
    wcs = AssignWcsStep.call(make_image(va_scale=va_scale)).meta.wcs
    centre = sky(wcs(*CENTER))
    for dx, dy in ((1, 0), (0, 1)):
        step = centre.separation(sky(wcs(CENTER[0] + dx, CENTER[1] + dy))).arcsec
        # 0.11"/pixel in V2V3; V2 is a longitude, so its arcs shrink by cos(v3): 2e-5 here
        assert step == pytest.approx(0.11 * va_scale, rel=2e-5)
    # the aberration scales about the reference point, which stays put
    dva = wcs.get_transform("v2v3", "v2v3vacorr")
    assert dva(*WFI01_V2V3) == pytest.approx(WFI01_V2V3, abs=1e-9)
    assert dva(WFI01_V2V3[0] + 100, WFI01_V2V3[1])[0] == pytest.approx(
        WFI01_V2V3[0] + 100 * va_scale, abs=1e-9
    )


def test_roll_orientation(builtin_refs):
    angles = {}
    for roll in (0.0, 30.0, 250.0):
        wcs = AssignWcsStep.call(make_image(roll_ref=roll)).meta.wcs
        to_sky = wcs.get_transform("v2v3", "world")
        v2, v3 = WFI01_V2V3
        origin = sky(to_sky(v2, v3))
        # roll_ref is the position angle (east of north) of +V3 at the reference point
        assert origin.position_angle(sky(to_sky(v2, v3 + 30))).deg == pytest.approx(
            roll % 360, abs=1e-6
        )
        assert origin.position_angle(sky(to_sky(v2 + 30, v3))).deg == pytest.approx(
            (roll + 90) % 360, abs=1e-3
        )
        angles[roll] = origin.position_angle(sky(wcs(CENTER[0], CENTER[1] + 10))).deg
    # the detector turns with the roll
    assert (angles[30.0] - angles[0.0]) % 360 == pytest.approx(30.0, abs=1e-6)
    assert (angles[250.0] - angles[0.0]) % 360 == pytest.approx(250.0, abs=1e-6)


@pytest.mark.parametrize(
    ("detector", "pointing", "va_scale"),
    [
        ("WFI01", REAL, REAL_VA_SCALE),
        ("WFI11", {"ra_ref": 359.99, "dec_ref": 0.01, "roll_ref": 123.0}, 1.0),
        ("WFI18", {"ra_ref": 200.0, "dec_ref": 89.9, "roll_ref": -45.0}, 0.9999),
    ],
)
def test_matches_romancal(builtin_refs, detector, pointing, va_scale):
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    official = pytest.importorskip("romancal.assign_wcs.assign_wcs")
    ours = AssignWcsStep.call(make_image(detector, va_scale=va_scale, **pointing))
    theirs = rdm.ImageModel.create_fake_data(shape=SHAPE)
    theirs.meta["cal_step"] = {}
    for key in ("ra_ref", "dec_ref", "roll_ref", "v2_ref", "v3_ref"):
        theirs.meta.wcsinfo[key] = ours.meta.wcsinfo[key]
    theirs.meta.velocity_aberration.scale_factor = va_scale
    official.load_wcs(theirs, {"distortion": get_reference_file(ours, "distortion")})
    y, x = np.mgrid[-0.4 : SHAPE[0] - 0.6 : 3.5, -0.4 : SHAPE[1] - 0.6 : 10.5]
    ra, dec = ours.meta.wcs(x, y)
    ra_t, dec_t = theirs.meta.wcs(x, y)
    np.testing.assert_allclose(dec, dec_t, rtol=0, atol=1e-9)
    np.testing.assert_allclose((ra - ra_t + 180) % 360 - 180, 0, atol=1e-9)
    xi, yi = ours.meta.wcs.invert(ra_t, dec_t)
    np.testing.assert_allclose(xi, x, atol=1e-5)
    np.testing.assert_allclose(yi, y, atol=1e-5)
    assert ours.meta.wcsinfo.s_region == theirs.meta.wcsinfo.s_region
    assert ours.meta.wcs.available_frames == theirs.meta.wcs.available_frames


def test_wcs_saves_and_reopens(builtin_refs, tmp_path):
    model = AssignWcsStep.call(make_image(**REAL, va_scale=REAL_VA_SCALE))
    path = model.save(tmp_path / "r0001_wfi01_assign_wcs.asdf")
    with datamodels.open(path) as reopened:
        wcs = reopened.meta.wcs
        assert isinstance(wcs, WCS)
        assert wcs.available_frames == model.meta.wcs.available_frames
        y, x = np.mgrid[0:32:5, 0:248:20]
        np.testing.assert_array_equal(np.array(wcs(x, y)), np.array(model.meta.wcs(x, y)))
        assert wcs.bounding_box.bounding_box(order="F") == ((-0.5, 247.5), (-0.5, 31.5))
        assert reopened.meta.wcsinfo.s_region == model.meta.wcsinfo.s_region


def test_placeholder_pointing_rejected(builtin_refs):
    model = datamodels.ImageModel.create_fake_data(shape=SHAPE)
    model.meta.instrument.detector = "WFI01"
    with pytest.raises(InputFileError, match="ra_ref has no valid value"):
        AssignWcsStep.call(model)


def test_not_applicable_skips(builtin_refs):
    model = AssignWcsStep.call(make_image(), override_distortion="N/A")
    assert model.meta.wcs is None
    assert model.meta.wcsinfo.s_region == "?"
    assert model.meta.cal_step.assign_wcs == "SKIPPED"


def test_not_applicable_skips_before_the_pointing_is_checked(builtin_refs, run_cli):
    # without a DISTORTION reference there is no WCS to build: a placeholder pointing
    # (which the step rejects when it does apply) does not matter
    model = datamodels.ImageModel.create_fake_data(shape=SHAPE)
    model.meta.instrument.detector = "WFI01"
    result = AssignWcsStep.call(model, override_distortion="N/A")
    assert result.meta.cal_step.assign_wcs == "SKIPPED"
    assert result.meta.wcs is None
    run = run_cli("assign_wcs", model, "--override-distortion", "N/A")
    assert run.status == 0, run.err
    assert len(run.warnings) == 1 and "skipped" in run.warnings[0], run.warnings
    assert "DISTORTION" in run.warnings[0] and not run.errors
    (output,) = run.out.iterdir()
    with datamodels.open(output) as saved:
        assert saved.meta.cal_step.assign_wcs == "SKIPPED"
        assert saved.meta.ref_file.distortion == "N/A"


def write_distortion(path, detector="WFI01", element="F158", transform=None):
    node = build_reference("distortion", detector, (40, 256), "2020-01-01T00:00:00", element)
    if transform is None:
        write_reference(path, node)
    else:
        model = datamodels.DistortionRefModel(dict(node))
        model.coordinate_distortion_transform = transform
        model.save(path)
    return str(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"detector": "WFI02"}, "detector WFI02"),
        ({"element": "F213"}, "optical element F213"),
        ({"transform": models.Shift(1.0)}, "no 2-D coordinate_distortion_transform"),
    ],
)
def test_bad_reference(builtin_refs, tmp_path, kwargs, message):
    ref = write_distortion(tmp_path / "distortion.asdf", **kwargs)
    with pytest.raises(ReferenceFileError, match=message):
        AssignWcsStep.call(make_image(), override_distortion=ref)


def test_dva_correction():
    for scale in (None, 1.0, 0.0, -999999.0, float("nan")):
        assert isinstance(dva_correction(scale, 10.0, 20.0), models.Identity)
    model = dva_correction(1.01, 10.0, 20.0)
    assert model(10.0, 20.0) == pytest.approx((10.0, 20.0))
    assert model(110.0, 20.0) == pytest.approx((10.0 + 101.0, 20.0))
    assert dva_correction(1.01)(100.0, -50.0) == pytest.approx((101.0, -50.5))


def test_v23tosky_round_trip():
    model = v23tosky(Pointing(30.0, 45.0, 10.0, 500.0, -300.0))
    ra, dec = model(500.0, -300.0)
    assert (ra, dec) == pytest.approx((30.0, 45.0), abs=1e-10)
    assert model.inverse(*model(600.0, -250.0)) == pytest.approx((600.0, -250.0), abs=1e-7)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dec_ref": 91.0}, "outside"),
        ({"roll_ref": float("nan")}, "roll_ref has no valid value"),
        ({"v2_ref": "abc"}, "v2_ref is not a number"),
        ({"v3_ref": None}, "v3_ref is missing"),
    ],
)
def test_pointing_errors(change, message):
    wcsinfo = {"ra_ref": 1.0, "dec_ref": 2.0, "roll_ref": 3.0, "v2_ref": 4.0, "v3_ref": 5.0}
    assert pointing_from_wcsinfo(wcsinfo) == Pointing(1.0, 2.0, 3.0, 4.0, 5.0)
    with pytest.raises(ValueError, match=message):
        pointing_from_wcsinfo({**wcsinfo, **change})


def test_s_region_polygon():
    stcal_util = pytest.importorskip("stcal.alignment.util")
    corners = np.array([[359.9, -1.0], [0.1, -1.0], [0.1, 1.0], [359.9, 1.0]])
    assert s_region_polygon(corners) == stcal_util.compute_s_region_keyword(corners)
    corners[2, 1] = np.nan
    assert s_region_polygon(corners) is None
    with pytest.raises(ValueError, match="shape"):
        s_region_polygon(np.zeros((3, 2)))
