"""Sets of simulated exposures: detectors of one pointing, dithers, one sky scene."""

from __future__ import annotations

import asdf
import numpy as np
import pytest
from _sim_helpers import SMALL, offsets
from astropy.table import Table

from romancal_lite.datamodels import get_extension
from romancal_lite.errors import OutputError
from romancal_lite.references import builtin_cache
from romancal_lite.simulate import read_truth, simulate_set, simulate_set_member
from romancal_lite.simulate.__main__ import main
from romancal_lite.simulate.sets import (
    _footprint_wcs,
    dither_offsets,
    make_set_scene,
    member_path,
    parse_detectors,
    read_set_stars,
)


def _open(path):
    return asdf.open(path, extensions=[get_extension()])


FAST = {"decay_signals": False, "read_pattern": [[1], [2], [3, 4]]}
SCIENCE = (SMALL[0] - 8, SMALL[1] - 8)


@pytest.fixture(scope="module")
def dithered(tmp_path_factory, sim_cache):
    """Two detectors, three dithered exposures with sky offsets."""
    out = tmp_path_factory.mktemp("set")
    with builtin_cache(sim_cache, hide_user_crds=True):
        return simulate_set(
            out, detectors="WFI01,WFI02", dithers=3, dither_step=0.5, shape=SMALL,
            sky=1.0, sky_offsets=[0.0, 0.5, 1.5], n_stars=40, seed=9, cr_rate=2e-4, **FAST,
        )


def test_names_and_truth_tables(dithered):
    names = [f.name for f in dithered.files]
    assert names == [f"r0000101001001001001_{e:04d}_wfi{d:02d}_uncal.asdf"
                     for e in (1, 2, 3) for d in (1, 2)]
    assert all(f.is_file() for f in dithered.files)
    exposures = Table.read(dithered.exposures, format="ascii.ecsv")
    assert list(exposures["file"]) == names
    assert list(exposures["sky"]) == pytest.approx([1.0, 1.0, 1.5, 1.5, 2.5, 2.5])
    assert list(exposures["dra_arcsec"]) == pytest.approx([0, 0, 0.5, 0.5, 1, 1])
    assert list(exposures["ddec_arcsec"]) == pytest.approx([0, 0, 0.3, 0.3, 0.6, 0.6])
    assert len(set(exposures["seed"])) == 6  # every member its own random streams
    stars = read_set_stars(dithered.stars)
    assert len(stars["ra"]) == 80 and np.array_equal(stars["id"], np.arange(80))


def test_members_see_the_same_stars_at_their_sky_positions(dithered):
    stars = read_set_stars(dithered.stars)
    exposures = Table.read(dithered.exposures, format="ascii.ecsv")
    seen = {}
    for path, row in zip(dithered.files, exposures, strict=True):
        truth = read_truth(path)
        par = truth["parameters"]
        assert par["ra"] == pytest.approx(row["ra_ref"]) and par["sky"] == row["sky"]
        assert par["sky_gradient"] == 0.0
        s = truth["stars"]
        assert len(s["id"]) > 5
        # the same sky position and flux as the set's table
        np.testing.assert_allclose(s["ra"], stars["ra"][s["id"]], atol=1e-9)
        np.testing.assert_allclose(s["dec"], stars["dec"][s["id"]], atol=1e-9)
        np.testing.assert_array_equal(s["flux"], stars["flux"][s["id"]])
        for i, x, y in zip(s["id"], s["x"], s["y"], strict=True):
            seen.setdefault((row["detector"], int(i)), []).append((row["exposure"], x, y))
    # a star seen in exposures 1 and 3 moved on the detector by the dither (1" east,
    # 0.6" north: 10.6 pixels of 0.11")
    moves = []
    for visits in seen.values():
        pos = {e: (x, y) for e, x, y in visits}
        if 1 in pos and 3 in pos:
            moves.append(np.hypot(pos[3][0] - pos[1][0], pos[3][1] - pos[1][1]))
    assert len(moves) > 3
    expected = np.hypot(1.0, 0.6) / 0.11
    assert np.allclose(moves, expected, rtol=0.01)
    # a star is never on both detectors (they are apart in the focal plane)
    ids = {det: {i for (d, i) in seen if d == det} for det in ("WFI01", "WFI02")}
    assert not ids["WFI01"] & ids["WFI02"]


def test_members_have_independent_cosmic_rays_and_the_sky_offsets(dithered):
    truths = [read_truth(f) for f in dithered.files]
    hits = [set(zip(t["cosmic_rays"]["y"], t["cosmic_rays"]["x"], strict=True))
            for t in truths]
    assert all(len(h) > 5 for h in hits)
    assert len(hits[0] & hits[2]) <= 1  # WFI01 in exposures 1 and 2
    # the truth rate's sky follows the offsets: median rate difference = offset / gain
    rate = [np.median(t["rate"]) for t in truths]
    gain = truths[0]["stars"]["flux"][0] / truths[0]["stars"]["flux_dn"][0]
    assert rate[4] - rate[0] == pytest.approx(1.5 / gain, rel=0.05)
    # and so does the data: the last minus the first resultant, offsets removed
    slopes = []
    for path, truth in zip(dithered.files[::2], truths[::2], strict=True):
        with _open(path) as af:
            data = np.asarray(af["roman"]["data"], dtype=np.float64) - offsets(truth)
        slopes.append(np.median(data[-1, 4:-4, 4:-4] - data[0, 4:-4, 4:-4]))
    assert slopes[2] - slopes[0] == pytest.approx(1.5 / gain * 2.5 * 3.16247, rel=0.2)


def test_detectors_tile_the_focal_plane():
    names = parse_detectors("all")
    assert names == [f"WFI{i:02d}" for i in range(1, 19)]
    assert parse_detectors("wfi3, 1,WFI03") == ["WFI03", "WFI01"]
    with pytest.raises(ValueError, match="unknown detector"):
        parse_detectors("WFI19")
    with pytest.raises(ValueError, match="no detector"):
        parse_detectors(" , ")
    shape = (136, 136)
    science = (128, 128)
    stars = make_set_scene(names, shape, n_stars=3, references="builtin", seed=1)
    assert len(stars["ra"]) == 54
    # every star lands on the detector whose footprint it was drawn in, and only there
    owners = np.full(54, -1)
    centres = []
    for k, det in enumerate(names):
        wcs = _footprint_wcs(det, shape, 10.0, -30.0, 0.0, "F158", "2026-01-01T00:00:00",
                             "builtin")
        centres.append(wcs(63.5, 63.5, with_bounding_box=False))
        x, y = wcs.invert(stars["ra"], stars["dec"], with_bounding_box=False)
        on = (x > -9) & (x < science[1] + 8) & (y > -9) & (y < science[0] + 8)
        assert not np.any(owners[on] >= 0)
        owners[on] = k
    assert np.array_equal(owners, np.repeat(np.arange(18), 3))
    # the detector centres are spread over the ~0.8 x 0.4 deg field of the WFI
    ra, dec = np.array(centres).T
    span = np.ptp(ra) * np.cos(np.deg2rad(30.0)), np.ptp(dec)
    assert 0.5 < max(span) < 1.0 and 0.2 < min(span) < 0.6


def test_dither_offsets_and_member_path(tmp_path):
    assert dither_offsets(3, 1.0) == [(0.0, 0.0), (1.0, 0.6), (2.0, 1.2)]
    with pytest.raises(ValueError):
        dither_offsets(0)
    assert member_path(tmp_path, 12, "WFI07").name == (
        "r0000101001001001001_0012_wfi07_uncal.asdf"
    )


def test_members_in_a_process_pool_equal_the_serial_ones(tmp_path):
    serial, pool = tmp_path / "serial", tmp_path / "pool"
    serial.mkdir()
    pool.mkdir()
    kw = {"detectors": ["WFI05"], "dithers": 2, "shape": SMALL, "n_stars": 10, "seed": 4,
          "references": "builtin", **FAST}
    a = simulate_set(serial, **kw)
    b = simulate_set(pool, workers=2, **kw)
    for fa, fb in zip(a.files, b.files, strict=True):
        with _open(fa) as ma, _open(fb) as mb:
            assert np.array_equal(ma["roman"]["data"], mb["roman"]["data"])
            assert np.array_equal(ma["roman"]["amp33"], mb["roman"]["amp33"])
    # a member from plain arguments, as a worker would run it, is the same file again
    row = Table.read(a.exposures, format="ascii.ecsv")[1]
    again = simulate_set_member(
        str(tmp_path / "again_uncal.asdf"), str(a.stars), exposure=2, detector="WFI05",
        ra=float(row["ra_ref"]), dec=float(row["dec_ref"]), roll=float(row["roll_ref"]),
        sky=float(row["sky"]), seed=int(row["seed"]),
        options={"shape": SMALL, "references": "builtin", **FAST},
    )
    with _open(again) as m, _open(a.files[1]) as ref:
        assert np.array_equal(m["roman"]["data"], ref["roman"]["data"])


def test_set_errors(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        simulate_set(tmp_path / "missing", shape=SMALL)
    with pytest.raises(ValueError, match="sky_offsets has 1 values for 2"):
        simulate_set(tmp_path, dithers=2, sky_offsets=[1.0], shape=SMALL)
    with pytest.raises(ValueError, match="visit_id"):
        simulate_set(tmp_path, visit_id="12", shape=SMALL)
    with pytest.raises(ValueError, match="dither_pattern"):
        simulate_set(tmp_path, dither_pattern=[(1.0,)], shape=SMALL)
    with pytest.raises(ValueError, match="sky_stars"):
        from romancal_lite.simulate import simulate_exposure

        simulate_exposure(shape=SMALL, sky_stars={"ra": [1.0]})
    assert not list(tmp_path.iterdir())


def test_cli_writes_a_set(tmp_path, capsys):
    out = tmp_path / "set"
    code = main([str(out), "--shape", str(SMALL[0]), str(SMALL[1]), "--detectors",
                 "WFI01,WFI04", "--dither-pattern", "0,0;0.5,0.3", "--sky-offsets", "0,0.2",
                 "--n-stars", "5", "--cr-rate", "0", "--read-pattern", "[[1],[2]]"])
    assert code == 0
    assert "wrote 4 exposures" in capsys.readouterr().out
    files = sorted(p.name for p in out.iterdir())
    assert "r0000101001001001001_0002_wfi04_uncal.asdf" in files
    assert "r0000101001001001001_set_stars.ecsv" in files
    assert "r0000101001001001001_set_exposures.ecsv" in files


@pytest.mark.parametrize("argv, message", [
    (["--dithers", "2", "--pointing-error", "1", "1", "1"], "not available for sets"),
    (["--dithers", "0"], "integer >= 1"),
    (["--detectors", "WFI00"], "unknown detector"),
])
def test_cli_set_errors_are_one_line(tmp_path, capsys, argv, message):
    code = main([str(tmp_path / "s"), "--shape", str(SMALL[0]), str(SMALL[1]), *argv])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
