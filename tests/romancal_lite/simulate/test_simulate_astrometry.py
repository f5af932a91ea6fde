"""The simulator's sky truth: the reference catalog beside the exposure, the pointing error.

The true WCS is built here with the ``assign_wcs`` step's own functions from the truth's
``wcsinfo_true`` and the DISTORTION file the pipeline selects; the wrong WCS from the
file's ``meta.wcsinfo``, exactly as ``assign_wcs`` does.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _sim_helpers import SMALL
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time

from romancal_lite import datamodels, simulate
from romancal_lite.references import get_reference_files, simulator_source
from romancal_lite.simulate import astrometry
from romancal_lite.simulate.__main__ import main
from romancal_lite.steps.assign_wcs import build_wcs, pointing_from_wcsinfo
from romancal_lite.steps.tweakreg import propagate_to_epoch, read_reference_catalog

PIXEL_MAS = 110.0


def _distortion(model):
    path = get_reference_files(model, ("distortion",), None, simulator_source())["distortion"]
    with datamodels.open(path) as ref:
        return ref.coordinate_distortion_transform


def _wcs(model, wcsinfo):
    """The WCS assign_wcs builds for ``model`` from ``wcsinfo``."""
    shape = (model.data.shape[-2] - 8, model.data.shape[-1] - 8)
    return build_wcs(_distortion(model), pointing_from_wcsinfo(wcsinfo), shape)


def _epoch(model):
    start, end = model.meta.exposure.start_time, model.meta.exposure.end_time
    return start + (end - start) / 2


def _sep_mas(ra1, dec1, ra2, dec2):
    a = SkyCoord(ra1 * u.deg, dec1 * u.deg)
    return a.separation(SkyCoord(ra2 * u.deg, dec2 * u.deg)).to_value(u.mas)


@pytest.fixture(scope="module")
def written(tmp_path_factory, sim_cache):
    from romancal_lite.references import builtin_cache

    tmp = tmp_path_factory.mktemp("astrometry")
    path = tmp / "r0000101001001001001_0001_wfi01_uncal.asdf"
    with builtin_cache(sim_cache, hide_user_crds=True):
        simulate.write_exposure(
            path, shape=SMALL, seed=5, n_stars=300, refcat_error_scale=0.0,
            pointing_error=(4.0, -3.0, 6.0), proper_motion=30.0, parallax=2.0,
            dec=-60.0, read_pattern=[[1], [2], [3]],
        )
    with datamodels.open(path) as model:
        model.data  # noqa: B018 - loaded before the file closes
    return {"path": path, "model": model, "truth": simulate.read_truth(path)}


def test_refcat_is_written_beside_the_exposure_and_recorded(written):
    path, truth = written["path"], written["truth"]
    refcat = path.with_name("r0000101001001001001_0001_wfi01_refcat.ecsv")
    assert refcat.is_file()
    assert truth["refcat"]["file"] == refcat.name
    assert truth["refcat"]["path"] == str(refcat)
    table = Table.read(refcat)
    assert table.colnames == list(astrometry.REFCAT_COLUMNS)
    assert table["ra"].unit == u.deg and table["pmra"].unit == u.mas / u.yr
    assert table["ra_error"].unit == u.mas and table["parallax"].unit == u.mas
    assert np.all(np.asarray(table["ref_epoch"]) == 2016.0)
    assert table.meta["ref_epoch"] == 2016.0
    assert len(table) == truth["refcat"]["n_sources"] >= 20
    assert np.array_equal(table["ra"], truth["refcat"]["ra"])
    assert np.array_equal(table["source_id"], truth["refcat"]["source_id"])


def test_refcat_holds_the_stars_brighter_than_the_limit(written):
    truth = written["truth"]
    stars, ids = truth["stars"], np.asarray(truth["refcat"]["source_id"])
    expected = 26.43 - 2.5 * np.log10(stars["flux"])  # F158 zero point, 1 e/s
    assert np.allclose(stars["mag"], expected)
    assert np.array_equal(ids, np.flatnonzero(stars["mag"] <= 20.7))
    assert np.allclose(truth["refcat"]["phot_g_mean_mag"], stars["mag"][ids])
    assert 0 < len(ids) < len(stars["mag"])


def test_true_positions_map_to_the_true_pixels(written):
    """stars.ra/dec are the true pixels through the true WCS; the pointing error is not in it."""
    model, truth = written["model"], written["truth"]
    stars = truth["stars"]
    true_wcs = _wcs(model, truth["wcsinfo_true"])
    x, y = true_wcs.invert(stars["ra"], stars["dec"], with_bounding_box=False)
    assert np.max(np.hypot(x - stars["x"], y - stars["y"])) * PIXEL_MAS < 1e-3
    assert truth["wcsinfo_true"]["ra_ref"] == 10.0 and truth["wcsinfo_true"]["dec_ref"] == -60.0


def test_refcat_propagated_by_the_tweakreg_step_gives_the_true_pixels(written):
    """Round trip: catalog at 2016.0 -> the step's propagation -> true WCS -> true pixels."""
    model, truth = written["model"], written["truth"]
    path = truth["refcat"]["path"]
    ids = np.asarray(truth["refcat"]["source_id"])
    stars = {k: np.asarray(v)[ids] for k, v in truth["stars"].items()}
    refcat = read_reference_catalog(path)
    # at the reference epoch the catalog is far from the stars (30 mas/yr over 10 years)
    at_2016 = _sep_mas(refcat["RA"], refcat["DEC"], stars["ra"], stars["dec"])
    assert np.median(at_2016) > 100.0
    moved = propagate_to_epoch(refcat, _epoch(model))
    assert np.max(_sep_mas(moved["RA"], moved["DEC"], stars["ra"], stars["dec"])) < 1e-3
    x, y = _wcs(model, truth["wcsinfo_true"]).invert(
        np.asarray(moved["RA"]), np.asarray(moved["DEC"]), with_bounding_box=False
    )
    assert np.max(np.hypot(x - stars["x"], y - stars["y"])) * PIXEL_MAS < 1.0


def test_back_propagate_inverts_propagate():
    rng = np.random.default_rng(1)
    n = 200
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-85, 85, n)
    pmra, pmdec, plx = rng.normal(0, 500, n), rng.normal(0, 500, n), rng.exponential(50, n)
    earth = astrometry.earth_barycentric_au(Time("2027-03-01T00:00:00"))
    back = astrometry.back_propagate(ra, dec, pmra, pmdec, plx, 11.2, earth)
    assert np.median(_sep_mas(ra, dec, *back)) > 1000.0
    forward = astrometry.propagate(*back, pmra, pmdec, plx, 11.2, earth)
    assert np.max(_sep_mas(ra, dec, *forward)) < 1e-6
    # the module's propagation is the tweakreg step's
    table = Table({"RA": back[0], "DEC": back[1], "pmra": pmra, "pmdec": pmdec,
                   "parallax": plx, "ref_epoch": np.full(n, 2016.0)})
    epoch = Time(2016.0 + 11.2, format="jyear")
    step = propagate_to_epoch(table, epoch)
    ours = astrometry.propagate(*back, pmra, pmdec, plx, 11.2,
                                astrometry.earth_barycentric_au(epoch))
    assert np.max(_sep_mas(step["RA"], step["DEC"], *ours)) < 1e-6


def test_catalog_errors_are_drawn_with_the_reported_sigma():
    kw = {"shape": SMALL, "seed": 8, "n_stars": 3000, "references": "builtin",
          "read_pattern": [[1], [2]], "cr_rate": 0.0}
    _, exact = simulate.simulate_exposure(refcat_error_scale=0.0, **kw)
    _, noisy = simulate.simulate_exposure(**kw)
    a, b = exact["refcat"], noisy["refcat"]
    assert np.array_equal(a["source_id"], b["source_id"]) and np.all(a["ra_error"] == 0)
    sigma = np.asarray(b["ra_error"])
    assert np.all(sigma == b["dec_error"])
    # mas, Gaia DR3-like: 0.05 mas at G = 17, 0.4 mas at G = 20
    assert 0.03 < np.median(sigma) < 0.3 and 0.3 < np.max(sigma) < 0.7
    ddec = (np.asarray(b["dec"]) - a["dec"]) * 3.6e6 / sigma
    dra = (np.asarray(b["ra"]) - a["ra"]) * 3.6e6 * np.cos(np.radians(a["dec"])) / sigma
    for pull in (dra, ddec):
        assert abs(np.mean(pull)) < 0.15 and 0.9 < np.std(pull) < 1.1


def test_pointing_error_moves_the_assign_wcs_wcs_as_stated(written):
    """The recorded reference point is (4", -3") east/north of the true one, roll +6'."""
    model, truth = written["model"], written["truth"]
    info, true = model.meta.wcsinfo, truth["wcsinfo_true"]
    assert truth["pointing_error"] == {"dra_arcsec": 4.0, "ddec_arcsec": -3.0, "roll_arcmin": 6.0}
    # direction, by hand: east = larger RA, north = larger Dec
    cos_dec = math.cos(math.radians(true["dec_ref"]))
    assert (info["ra_ref"] - true["ra_ref"]) * 3600 * cos_dec == pytest.approx(4.0, abs=1e-3)
    assert (info["dec_ref"] - true["dec_ref"]) * 3600 == pytest.approx(-3.0, abs=1e-3)
    assert (info["roll_ref"] - true["roll_ref"]) * 60 == pytest.approx(6.0, abs=1e-9)
    assert info["v2_ref"] == true["v2_ref"] and info["v3_ref"] == true["v3_ref"]
    assert model.meta.velocity_aberration.ra_reference == info["ra_ref"]
    assert model.meta.pointing.target_ra == true["ra_ref"]

    wrong, right = _wcs(model, info), _wcs(model, true)
    # the reference point (V2_ref, V3_ref) is put 4" east, 3" south of its true position
    v2, v3 = true["v2_ref"], true["v3_ref"]
    ra_w, dec_w = wrong.get_transform("v2v3vacorr", "world")(v2, v3)
    ra_t, dec_t = right.get_transform("v2v3vacorr", "world")(v2, v3)
    east, north = SkyCoord(ra_t * u.deg, dec_t * u.deg).spherical_offsets_to(
        SkyCoord(ra_w * u.deg, dec_w * u.deg)
    )
    assert east.to_value(u.arcsec) == pytest.approx(4.0, abs=1e-6)
    assert north.to_value(u.arcsec) == pytest.approx(-3.0, abs=1e-6)
    # the field is turned by +6' (position angles east of north grow by the roll)
    x = np.array([0.0, 247.0])
    y = np.array([0.0, 31.0])
    pa_w = SkyCoord(*wrong(x[0], y[0]), unit="deg").position_angle(
        SkyCoord(*wrong(x[1], y[1]), unit="deg"))
    pa_t = SkyCoord(*right(x[0], y[0]), unit="deg").position_angle(
        SkyCoord(*right(x[1], y[1]), unit="deg"))
    assert (pa_w - pa_t).wrap_at(180 * u.deg).to_value(u.arcmin) == pytest.approx(6.0, abs=0.05)
    # so the stars, at their true positions, are seconds of arc from where the WCS puts them
    stars = truth["stars"]
    ra, dec = wrong(stars["x"], stars["y"])
    sep = _sep_mas(ra, dec, stars["ra"], stars["dec"])
    assert 3000 < np.median(sep) < 12000


def test_pointing_error_with_only_a_roll_turns_about_the_reference_point():
    kw = {"shape": SMALL, "seed": 2, "n_stars": 5, "references": "builtin",
          "read_pattern": [[1], [2]]}
    model, truth = simulate.simulate_exposure(pointing_error=(0, 0, -30.0), **kw)
    info, true = model.meta.wcsinfo, truth["wcsinfo_true"]
    assert info["ra_ref"] == pytest.approx(true["ra_ref"], abs=1e-12)
    assert info["dec_ref"] == pytest.approx(true["dec_ref"], abs=1e-12)
    assert info["roll_ref"] == pytest.approx(true["roll_ref"] - 0.5)


def test_no_pointing_error_by_default_and_zero_motions():
    model, truth = simulate.simulate_exposure(
        shape=SMALL, seed=2, n_stars=50, references="builtin", read_pattern=[[1], [2]]
    )
    info, true = model.meta.wcsinfo, truth["wcsinfo_true"]
    assert [info[k] for k in true] == list(true.values())
    assert truth["pointing_error"] == {"dra_arcsec": 0.0, "ddec_arcsec": 0.0, "roll_arcmin": 0.0}
    cat = truth["refcat"]
    assert np.all(cat["pmra"] == 0) and np.all(cat["pmdec"] == 0) and np.all(cat["parallax"] == 0)
    ids = cat["source_id"]
    sep = _sep_mas(cat["ra"], cat["dec"], truth["stars"]["ra"][ids], truth["stars"]["dec"][ids])
    assert np.max(sep / cat["ra_error"]) < 6  # only the drawn catalog error


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pointing_error": (1.0, 2.0)}, "pointing_error"),
        ({"pointing_error": (1.0, float("nan"), 0.0)}, "pointing_error"),
        ({"pointing_error": "abc"}, "pointing_error"),
        ({"proper_motion": -1.0}, "proper_motion"),
        ({"parallax": float("inf")}, "parallax"),
        ({"refcat_error_scale": -0.5}, "refcat_error_scale"),
    ],
)
def test_bad_astrometry_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate.simulate_exposure(shape=SMALL, references="builtin", **kwargs)


def test_cli_pointing_error_and_refcat(tmp_path, capsys):
    out = tmp_path / "cli_uncal.asdf"
    argv = [str(out), "--shape", "40", "256", "--seed", "3", "--read-pattern", "[[1], [2]]",
            "--n-stars", "200", "--pointing-error", "2", "-1", "3", "--proper-motion", "4",
            "--parallax", "0.5", "--refcat-mag-limit", "19"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "cli_refcat.ecsv" in text
    truth = simulate.read_truth(out)
    assert truth["pointing_error"] == {"dra_arcsec": 2.0, "ddec_arcsec": -1.0, "roll_arcmin": 3.0}
    assert truth["parameters"]["proper_motion"] == 4.0 and truth["parameters"]["parallax"] == 0.5
    table = Table.read(tmp_path / "cli_refcat.ecsv")
    assert len(table) and np.all(table["phot_g_mean_mag"] <= 19.0)
    assert np.std(table["pmra"]) > 1.0
    with datamodels.open(out) as model:
        assert model.meta.wcsinfo.roll_ref == pytest.approx(0.05)
    # --no-refcat writes none and records none
    out2 = tmp_path / "plain_uncal.asdf"
    assert main([str(out2), "--shape", "40", "256", "--read-pattern", "[[1], [2]]",
                 "--no-refcat"]) == 0
    assert not (tmp_path / "plain_refcat.ecsv").exists()
    assert simulate.read_truth(out2)["refcat"]["file"] is None


def test_refcat_path_for():
    assert simulate.refcat_path_for("/a/b/x_uncal.asdf").as_posix() == "/a/b/x_refcat.ecsv"
    assert simulate.refcat_path_for("y.asdf").as_posix() == "y_refcat.ecsv"


def test_dark_exposure_gets_an_empty_refcat(tmp_path):
    path = tmp_path / "dark_uncal.asdf"
    simulate.write_exposure(path, shape=SMALL, exposure_type="WFI_IM_DARK",
                            optical_element="DARK", read_pattern=[[1], [2]])
    truth = simulate.read_truth(path)
    assert truth["refcat"]["n_sources"] == 0 and "distortion" not in truth["references"]
    assert len(Table.read(truth["refcat"]["path"])) == 0


def test_distortion_override_is_used(tmp_path, sim_cache):
    """A ``references`` mapping may name the DISTORTION file: the sky positions follow it."""
    from astropy.modeling import models

    from romancal_lite.references import build_reference
    from romancal_lite.references._cache import DEFAULT_USEAFTERS

    node = build_reference("distortion", "WFI01", SMALL, DEFAULT_USEAFTERS[0], "F158")
    # the same detector moved by 10" in V2
    node["coordinate_distortion_transform"] = node["coordinate_distortion_transform"] | (
        models.Shift(10.0) & models.Shift(0.0)
    )
    node["coordinate_distortion_transform"].bounding_box = ((-0.5, 31.5), (-0.5, 247.5))
    import asdf

    moved = tmp_path / "distortion.asdf"
    asdf.AsdfFile({"roman": node}).write_to(moved)
    kw = {"shape": SMALL, "seed": 4, "n_stars": 20, "read_pattern": [[1], [2]]}
    _, plain = simulate.simulate_exposure(**kw)
    _, shifted = simulate.simulate_exposure(references={"distortion": moved}, **kw)
    assert shifted["references"]["distortion"] == str(moved)
    sep = _sep_mas(plain["stars"]["ra"], plain["stars"]["dec"],
                   shifted["stars"]["ra"], shifted["stars"]["dec"])
    assert np.allclose(sep, 10000.0, rtol=1e-3)
