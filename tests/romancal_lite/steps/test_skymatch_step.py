"""``skymatch``: geometry and solution by hand, injected sky offsets recovered, the step."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.modeling import models

from romancal_lite import datamodels
from romancal_lite.errors import ConfigError, InputFileError
from romancal_lite.steps.assign_wcs import Pointing, build_wcs
from romancal_lite.steps.skymatch import (
    SkyMatchStep,
    TangentPlane,
    bad_bits_from_dqbits,
    clip_polygon,
    footprint_radec,
    overlap_polygons,
    polygon_mask,
    solve_match,
    solve_sky,
)
from romancore.skystats import SkyStatistic

SHAPE = (160, 180)
#: (dRA", dDec", injected sky) of each synthetic exposure: 4 dithers, every pair overlaps
DITHERS = [(0.0, 0.0, 5.0), (6.0, 4.0, 7.5), (-5.0, 7.0, 4.0), (3.0, -8.0, 6.0)]
NOISE = 0.05


def make_image(dra, ddec, sky, seed, shape=SHAPE, noise=NOISE, n_stars=40, roll=0.0):
    """A ``_cal``-like image: flat sky + Gaussian noise + stars, a 0.11"/pixel WFI gwcs."""
    ny, nx = shape
    rng = np.random.default_rng(seed)
    distortion = ((models.Shift(-(nx - 1) / 2) & models.Shift(-(ny - 1) / 2))
                  | (models.Scale(0.11) & models.Scale(0.11)))
    ra = 10.0 + dra / 3600.0 / np.cos(np.radians(20.0))
    wcs = build_wcs(distortion, Pointing(ra, 20.0 + ddec / 3600.0, roll, 0.0, 0.0), shape)
    model = datamodels.ImageModel.create_fake_data(shape=shape)
    data = rng.normal(sky, noise, shape).astype(np.float32)
    yy, xx = np.mgrid[:ny, :nx]
    for x0, y0, flux in zip(rng.uniform(0, nx, n_stars), rng.uniform(0, ny, n_stars),
                            rng.uniform(5, 200, n_stars), strict=True):
        data += (flux * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 2.0)).astype(np.float32)
    model.data = data
    model.dq = np.zeros(shape, np.uint32)
    model.meta["wcs"] = wcs
    model.meta["filename"] = f"r0000101001001001001_000{seed}_wfi01_cal.asdf"
    return model


def dither_set(noise=NOISE):
    return [make_image(dx, dy, sky, k + 1, noise=noise)
            for k, (dx, dy, sky) in enumerate(DITHERS)]


def levels(result):
    return np.array([m.meta.background.level for m in result])


# ----------------------------------------------------------------------- geometry


def test_polygon_mask_by_hand():
    # the square of pixel edges around pixels 1..3 x 2..3: exactly those pixels
    x = [0.5, 3.5, 3.5, 0.5]
    y = [1.5, 1.5, 3.5, 3.5]
    mask = polygon_mask(x, y, (6, 6))
    expected = np.zeros((6, 6), bool)
    expected[2:4, 1:4] = True
    np.testing.assert_array_equal(mask, expected)
    # a right triangle (0,0)-(4,0)-(0,4): centres with x + y < 4, x >= 0, y >= 0
    # (edges on the left/bottom are in, on the hypotenuse out: half-open rule)
    tri = polygon_mask([0.0, 4.0, 0.0], [0.0, 0.0, 4.0], (6, 6))
    yy, xx = np.mgrid[:6, :6]
    np.testing.assert_array_equal(tri, (xx + yy < 4))
    # clipped at the array edges
    assert polygon_mask([-5, 100, 100, -5], [-5, -5, 100, 100], (4, 5)).all()
    assert not polygon_mask([10, 12, 12], [10, 10, 12], (4, 5)).any()


def test_clip_polygon_by_hand():
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    moved = square + 0.5
    inter = clip_polygon(square, moved[::-1])  # either orientation
    assert len(inter) == 4
    np.testing.assert_allclose(sorted(map(tuple, inter)),
                               [(0.5, 0.5), (0.5, 1.0), (1.0, 0.5), (1.0, 1.0)])
    assert len(clip_polygon(square, square + 2.0)) == 0


def test_tangent_plane_makes_great_circles_straight():
    plane = TangentPlane.about(np.array([10.0, 10.5]), np.array([20.0, 20.3]))
    # points along the great circle between two points project onto one line
    a = np.array([9.8, 19.7])
    b = np.array([10.9, 20.6])
    va, vb = (np.array([np.cos(np.radians(d)) * np.cos(np.radians(r)),
                        np.cos(np.radians(d)) * np.sin(np.radians(r)), np.sin(np.radians(d))])
              for r, d in (a, b))
    t = np.linspace(0, 1, 7)[:, None]
    v = (1 - t) * va + t * vb
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ra = np.degrees(np.arctan2(v[:, 1], v[:, 0]))
    dec = np.degrees(np.arcsin(v[:, 2]))
    xy = plane.project(ra, dec)
    d = xy[-1] - xy[0]
    cross = d[0] * (xy[:, 1] - xy[0, 1]) - d[1] * (xy[:, 0] - xy[0, 0])
    assert np.abs(cross).max() < 1e-15
    back = plane.unproject(xy)
    np.testing.assert_allclose(back[0], ra % 360, atol=1e-12)
    np.testing.assert_allclose(back[1], dec, atol=1e-12)


def test_overlaps_match_spherical_geometry():
    """The tangent-plane intersection has stcal's spherical intersection's vertices."""
    sp = pytest.importorskip("spherical_geometry.polygon")
    images = dither_set()
    feet = [footprint_radec(m.meta.wcs, SHAPE) for m in images]
    mine = overlap_polygons(feet)
    assert set(mine) == {(i, j) for i in range(4) for j in range(i + 1, 4)}
    for (i, j), (ra, dec, _area) in mine.items():
        theirs = sp.SphericalPolygon.from_radec(*feet[i]).intersection(
            sp.SphericalPolygon.from_radec(*feet[j]))
        tra, tdec = next(iter(theirs.to_radec()))
        ours = {(round(r % 360, 9), round(d, 9)) for r, d in zip(ra, dec, strict=True)}
        them = {(round(r % 360, 9), round(d, 9)) for r, d in zip(tra, tdec, strict=True)}
        assert ours == them


def test_no_overlap():
    far = make_image(400.0, 0.0, 5.0, 9)  # 400" away: 180 x 0.11" = 20" wide images
    near = make_image(0.0, 0.0, 5.0, 8)
    feet = [footprint_radec(m.meta.wcs, SHAPE) for m in (near, far)]
    assert overlap_polygons(feet) == {}


# ----------------------------------------------------------------------- solution


def _s(value, npix=100):
    return SkyStatistic(value, npix)


def test_solve_match_by_hand():
    # true offsets 0, 2, 5: each overlap measures the sky difference exactly
    sky = [0.0, 2.0, 5.0]
    pairs = {(0, 1): (_s(sky[0] + 10), _s(sky[1] + 10)),
             (1, 2): (_s(sky[1] + 3), _s(sky[2] + 3)),
             (0, 2): (_s(sky[0] + 1), _s(sky[2] + 1))}
    deltas, rank = solve_match(3, pairs)
    assert rank == 2
    np.testing.assert_allclose(deltas - deltas.min(), sky, atol=1e-12)
    down = solve_sky(3, "match", pairs=pairs)
    np.testing.assert_allclose(down.level, sky, atol=1e-12)
    up = solve_sky(3, "match", pairs=pairs, match_down=False)
    np.testing.assert_allclose(up.level, np.array(sky) - 5.0, atol=1e-12)
    # an inconsistent loop: the weighted least-squares compromise
    pairs[(0, 2)] = (_s(0.0, 100), _s(6.0, 100))  # says 6 where the others say 5
    deltas, _ = solve_match(3, pairs)
    d = deltas - deltas[0]
    # residuals (d1 - 2), (d2 - d1 - 3), (d2 - 6) with equal weights: d1 = 7/3, d2 = 17/3
    np.testing.assert_allclose(d, [0.0, 7 / 3, 17 / 3], atol=1e-12)


def test_solve_sky_methods_by_hand():
    whole = [_s(10.0), _s(12.0), None]
    local = solve_sky(3, "local", whole=whole)
    assert local.level == [10.0, 12.0, 0.0] and local.valid == [True, True, False]
    glob = solve_sky(3, "global", whole=whole)
    assert glob.level == [10.0] * 3 and glob.valid == [True] * 3
    pairs = {(0, 1): (_s(11.0), _s(13.5))}  # image 1 is 2.5 above image 0
    gm = solve_sky(3, "global+match", whole=whole, pairs=pairs)
    # match: 0, 2.5, unknown; global: min(10 - 0, 12 - 2.5) = 9.5 added to all
    np.testing.assert_allclose(gm.level, [9.5, 12.0, 9.5])
    assert gm.valid == [True, True, True]
    match = solve_sky(3, "match", pairs=pairs)
    assert match.valid == [True, True, False] and match.level[2] == 0.0
    assert match.rank_deficient
    # subtract=True with a previous level: the level adds up, the data lose the new part
    again = solve_sky(3, "local", whole=whole, initial=[1.0, 0.0, 0.0])
    assert again.level[0] == 11.0 and again.subtract[0] == 10.0
    # no usable statistic at all: global leaves validity as it was
    none = solve_sky(2, "global", whole=[None, None])
    assert none.valid == [False, False] and none.level == [0.0, 0.0]


def test_dqbits():
    assert bad_bits_from_dqbits("~DO_NOT_USE") == 1
    assert bad_bits_from_dqbits("0") == 0xFFFFFFFF
    assert bad_bits_from_dqbits(None) is None
    assert bad_bits_from_dqbits("") is None
    assert bad_bits_from_dqbits("~DO_NOT_USE+NON_SCIENCE") == 1 | (1 << 9)
    with pytest.raises(ConfigError, match="dqbits"):
        bad_bits_from_dqbits("~NOT_A_FLAG")


# ----------------------------------------------------------------------- the step


@pytest.mark.parametrize("skystat", ["median", "mode"])
def test_recovers_injected_offsets(skystat):
    images = dither_set()
    result = SkyMatchStep(skystat=skystat).run(images)
    injected = np.array([d[2] for d in DITHERS])
    got = levels(result)
    # match_down: relative to the lowest sky (image 2, 4.0)
    tol = 0.01 if skystat == "median" else 0.02  # x NOISE=0.05: stars bias the overlaps
    np.testing.assert_allclose(got, injected - injected.min(), atol=tol)
    for model in result:
        assert model.meta.cal_step.skymatch == "COMPLETE"
        assert model.meta.background.method == "match"
        assert model.meta.background.subtracted is False
    # data untouched without subtract
    np.testing.assert_allclose(np.median(result[0].data), 5.0, atol=0.05)


def test_global_match_and_subtract():
    images = dither_set()
    injected = np.array([d[2] for d in DITHERS])
    result = SkyMatchStep(skymethod="global+match", skystat="median", subtract=True).run(images)
    np.testing.assert_allclose(levels(result), injected, atol=0.02)
    for model in result:
        assert model.meta.background.subtracted is True
        assert abs(float(np.median(model.data))) < 0.03  # sky removed from the data
    # a second pass with subtract=True is refused, as romancal refuses it
    with pytest.raises(InputFileError, match="already subtracted"):
        SkyMatchStep(subtract=True).run(result)
    # without subtract it runs (the level is measured again on the sky-free data)
    again = SkyMatchStep(skymethod="local", skystat="median").run(result)
    assert np.all(np.abs(levels(again)) < 0.03)


def test_local_and_global():
    images = dither_set()
    injected = np.array([d[2] for d in DITHERS])
    local = levels(SkyMatchStep(skymethod="local", skystat="median").run(images))
    np.testing.assert_allclose(local, injected, atol=0.02)
    glob = levels(SkyMatchStep(skymethod="global", skystat="median").run(images))
    np.testing.assert_allclose(glob, injected.min(), atol=0.02)


def test_switched_off():
    images = dither_set()
    result = SkyMatchStep(skip=True).run(images)
    for model in result:
        assert model.meta.cal_step.skymatch == "SKIPPED"
        assert model.meta.get("background") is None or model.meta.background.get("level") is None


def test_dq_excluded_pixels():
    # a bright DO_NOT_USE region in image 1's overlap: ignored, the answer is unchanged
    images = dither_set()
    base = levels(SkyMatchStep(skystat="median").run(dither_set()))
    images[1].data[:, :120] += 50.0
    images[1].dq[:, :120] = 1
    np.testing.assert_allclose(levels(SkyMatchStep(skystat="median").run(images)), base,
                               atol=0.01)
    # the same pixels used (dqbits "": flags ignored) move image 1's sky
    moved = levels(SkyMatchStep(skystat="median", dqbits="").run(images))
    assert moved[1] - base[1] > 1.0


def test_non_overlapping_images_are_skipped():
    images = [make_image(0.0, 0.0, 5.0, 1), make_image(500.0, 0.0, 6.0, 2)]
    result = SkyMatchStep().run(images)
    assert [m.meta.cal_step.skymatch for m in result] == ["SKIPPED", "SKIPPED"]
    assert list(levels(result)) == [0.0, 0.0]


def test_bad_input():
    image = dither_set()[0]
    del image.meta["wcs"]
    with pytest.raises(InputFileError, match="no WCS"):
        SkyMatchStep().run([image, dither_set()[1]])
    broken = dither_set()
    broken[0].meta["background"] = {"level": None, "subtracted": True, "method": "local"}
    with pytest.raises(InputFileError, match="level is undefined"):
        SkyMatchStep().run(broken)
    with pytest.raises(ConfigError):
        SkyMatchStep(skymethod="best")


def test_library_one_image_at_a_time(tmp_path):
    """Files in, a model library out; never two images borrowed at once."""
    from romancal_lite.datamodels import ModelLibrary

    paths = []
    for model in dither_set():
        path = tmp_path / model.meta.filename
        model.save(str(path))
        paths.append(str(path))
    library = ModelLibrary(paths)
    borrowed: set[int] = set()
    peak = [0]
    original_borrow, original_shelve = library.borrow, library.shelve

    def borrow(index):
        borrowed.add(index)
        peak[0] = max(peak[0], len(borrowed))
        return original_borrow(index)

    def shelve(model, index=None, modify=False):
        borrowed.discard(index)
        return original_shelve(model, index, modify=modify)

    library.borrow, library.shelve = borrow, shelve
    result = SkyMatchStep(skystat="median").run(library)
    assert result is library and peak[0] == 1
    injected = np.array([d[2] for d in DITHERS])
    with library:
        got = []
        for index in range(len(library)):
            model = library.borrow(index)
            got.append(model.meta.background.level)
            assert model.meta.cal_step.skymatch == "COMPLETE"
            library.shelve(model, index)
    np.testing.assert_allclose(got, injected - injected.min(), atol=0.01)
    # a list of file names is opened as a library
    again = SkyMatchStep(skystat="median").run(paths)
    assert isinstance(again, ModelLibrary)


def test_association_and_single_image(tmp_path):
    import json

    from romancal_lite.datamodels import ModelLibrary

    names = []
    for model in dither_set()[:2]:
        model.save(str(tmp_path / model.meta.filename))
        names.append(model.meta.filename)
    asn = tmp_path / "mosaic_asn.json"
    asn.write_text(json.dumps({
        "asn_id": "a3001", "asn_pool": "none",
        "products": [{"name": "mosaic", "members": [
            {"expname": name, "exptype": "science"} for name in names]}],
    }))
    result = SkyMatchStep(skystat="median").run(str(asn))
    assert isinstance(result, ModelLibrary) and len(result) == 2
    with result:
        got = []
        for index in range(2):
            model = result.borrow(index)
            got.append(model.meta.background.level)
            result.shelve(model, index)
    np.testing.assert_allclose(got, [0.0, 2.5], atol=0.01)
    # one image: local works, match has nothing to match (SKIPPED, level 0, as romancal)
    one = make_image(0.0, 0.0, 5.0, 1)
    assert SkyMatchStep(skymethod="local", skystat="median").run(one) is one
    assert one.meta.background.level == pytest.approx(5.0, abs=0.01)
    SkyMatchStep().run(one)
    assert one.meta.cal_step.skymatch == "SKIPPED" and one.meta.background.level == 0.0
