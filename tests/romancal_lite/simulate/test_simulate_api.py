"""The simulator's API: read patterns, metadata, references, files, errors and the CLI."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import asdf
import numpy as np
import pytest
from _sim_helpers import SMALL, simulate_exposure

import romancal_lite.datamodels as dm
from romancal_lite import simulate
from romancal_lite.errors import InputFileError, ReferenceFileError
from romancal_lite.references import build_reference, generate_cache, use_builtin_cache
from romancal_lite.simulate import READ_PATTERNS, read_truth, write_exposure
from romancal_lite.simulate.__main__ import main

ROOT = Path(__file__).resolve().parents[3]
REAL_FILE = ROOT.parent / "shared" / "data" / "romanisim_l1_strip_wfi02_ma109.asdf"
TINY = {"shape": SMALL, "n_stars": 2}


def real_meta():
    with dm.open(REAL_FILE) as model:
        return model.meta


@pytest.mark.skipif(not REAL_FILE.exists(), reason="real Level 1 file not available")
def test_metadata_has_the_fields_of_the_real_romanisim_file():
    model, _ = simulate_exposure(read_pattern="ma109", detector="WFI02", **TINY)
    real = real_meta()
    meta = model.meta
    for section in ("exposure", "instrument", "wcsinfo", "pointing", "observation", "ephemeris",
                    "velocity_aberration", "visit", "ref_file", "guide_star", "rcs"):
        assert set(meta[section]) == set(real[section]), section
    assert set(meta) >= set(real) - {"wcs", "photometry"}
    for key in ("read_pattern", "nresultants", "ma_table_number", "ma_table_id", "frame_time",
                "type", "truncated"):
        assert meta.exposure[key] == real["exposure"][key], key
    for key in ("exposure_time", "effective_exposure_time"):
        assert meta.exposure[key] == pytest.approx(real["exposure"][key], abs=1e-3)
    for key in ("detector", "optical_element", "name"):
        assert meta.instrument[key] == real["instrument"][key]
    for key in ("aperture_name", "v2_ref", "v3_ref", "v3yangle", "vparity", "ra_ref", "dec_ref"):
        assert meta.wcsinfo[key] == real["wcsinfo"][key], key
    assert meta.exposure.start_time.isot == real["exposure"]["start_time"].isot
    assert meta.exposure.end_time.isot == real["exposure"]["end_time"].isot
    assert meta.exposure.mid_time.isot == real["exposure"]["mid_time"].isot
    assert model.data.dtype == np.uint16 and model.amp33.dtype == np.uint16
    assert model.amp33.shape == (10, SMALL[0], 128)


@pytest.mark.parametrize(("name", "n"), [("ma4", 9), ("ma6", 15), ("ma109", 10)])
def test_named_read_patterns(name, n):
    model, truth = simulate_exposure(read_pattern=name, cr_rate=0, **TINY)
    table = READ_PATTERNS[name]
    assert model.data.shape == (n, *SMALL)
    assert model.meta.exposure.read_pattern == [list(r) for r in table.read_pattern]
    assert model.meta.exposure.nresultants == n
    assert model.meta.exposure.ma_table_number == table.number
    assert model.meta.exposure.exposure_time == pytest.approx(table.n_reads * 3.16247)
    assert truth["parameters"]["read_pattern"] == model.meta.exposure.read_pattern


def test_presets_match_romanisim_tables():
    parameters = pytest.importorskip("romanisim.models.parameters")
    for name in ("ma4", "ma6"):
        table = READ_PATTERNS[name]
        assert [list(r) for r in table.read_pattern] == parameters.read_pattern[table.number]


def test_explicit_read_pattern_and_frame_time():
    pattern = [[1], [3, 4], [7, 8, 9], [12]]
    model, truth = simulate_exposure(read_pattern=pattern, frame_time=3.04, cr_rate=0, **TINY)
    assert model.meta.exposure.read_pattern == pattern
    assert model.meta.exposure.ma_table_number == -999999
    assert model.meta.exposure.frame_time == 3.04
    assert model.data.shape[0] == 4
    assert (np.diff(model.data[:, 10:30, 10:240].astype(float).mean(axis=(1, 2))) > 0).all()
    model, _ = simulate_exposure(read_pattern=pattern, ma_table_number=3, **TINY)
    assert model.meta.exposure.ma_table_number == 3


def test_seed_makes_it_reproducible():
    a, ta = simulate_exposure(seed=9, **TINY)
    b, tb = simulate_exposure(seed=9, **TINY)
    c, _ = simulate_exposure(seed=10, **TINY)
    assert np.array_equal(a.data, b.data) and np.array_equal(a.amp33, b.amp33)
    assert np.array_equal(ta["dq"], tb["dq"]) and np.array_equal(ta["rate"], tb["rate"])
    assert not np.array_equal(a.data, c.data)
    d, td = simulate_exposure(seed=None, **TINY)
    e, _ = simulate_exposure(seed=td["seed"], **TINY)
    assert np.array_equal(d.data, e.data)
    # switching cosmic rays off leaves the other random streams alone
    f, _ = simulate_exposure(seed=9, cr_rate=0, **TINY)
    clean = (ta["dq"] & 4).sum(axis=0) == 0
    assert np.array_equal(a.data[:, clean], f.data[:, clean])


def test_crds_selected_files_give_the_builtin_content(sim_cache):
    for detector, element in (("WFI01", "F158"), ("WFI14", "F087")):
        kw = {"shape": SMALL, "detector": detector, "optical_element": element, "seed": 4}
        a, ta = simulate.simulate_exposure(references="crds", **kw)
        b, tb = simulate.simulate_exposure(references="builtin", **kw)
        assert np.array_equal(a.data, b.data) and np.array_equal(a.amp33, b.amp33)
        assert np.allclose(ta["stars"]["ra"], tb["stars"]["ra"], rtol=0, atol=1e-12)
        used = ta["references"]
        assert set(used) == {"gain", "readnoise", "saturation", "linearity",
                             "inverselinearity", "integralnonlinearity", "dark", "flat",
                             "distortion"}
        assert all(Path(p).is_file() and str(sim_cache.root) in p for p in used.values())
        assert detector.lower() in Path(used["gain"]).name
        assert element.lower() in Path(used["flat"]).name


def test_wrongly_shaped_references_are_refused(tmp_path):
    use_builtin_cache(generate_cache(tmp_path / "crds", full_shape=(48, 256)))
    with pytest.raises(ReferenceFileError, match=r"needs \(40, 256\).*references='builtin'"):
        simulate.simulate_exposure(shape=SMALL)


def test_star_catalog_and_truth_units():
    model, truth = simulate_exposure(shape=SMALL, n_stars=5, star_flux_range=(100.0, 1000.0))
    stars = truth["stars"]
    assert len(stars["x"]) == 5
    assert ((stars["flux"] >= 100) & (stars["flux"] <= 1000)).all()
    gain = np.asarray(build_reference("gain", "WFI01", SMALL, "2020-01-01T00:00:00")["data"])
    assert np.allclose(stars["flux_dn"], stars["flux"] / gain[0, 0])
    assert ((stars["x"] >= -0.5) & (stars["x"] <= 247.5)).all()
    assert truth["rate"].shape == (32, 248) and truth["rate"].dtype == np.float32
    assert truth["saturated_resultant"].shape == (32, 248)
    assert truth["dq"].shape == model.data.shape and truth["dq"].dtype == np.uint8
    assert truth["pedestal"].shape == SMALL
    assert set(truth["units"]) >= {"rate", "stars.flux", "cosmic_rays.charge"}
    # the total flux of a star sits in the rate image (it is away from the edges)
    sky_free, t2 = simulate_exposure(shape=(72, 256), n_stars=1, sky=0.0,
                                     star_flux_range=(500.0, 500.0), seed=2)
    x, y = t2["stars"]["x"][0], t2["stars"]["y"][0]
    assert 6 < x < 241 and 6 < y < 58
    assert t2["rate"].sum() * gain[0, 0] == pytest.approx(500.0, rel=1e-4)


def test_dark_exposure_has_no_scene():
    model, truth = simulate_exposure(exposure_type="WFI_IM_DARK", optical_element="DARK", **TINY)
    assert model.meta.exposure.type == "WFI_IM_DARK"
    assert not truth["rate"].any() and len(truth["stars"]["x"]) == 0


def test_write_read_and_open_with_both_datamodels(tmp_path):
    path = write_exposure(tmp_path / "sim_wfi03_uncal.asdf", detector="WFI03", seed=1,
                          references="builtin", decay_signals=False, **TINY)
    model, truth = simulate_exposure(detector="WFI03", seed=1, **TINY)
    assert path.name == "sim_wfi03_uncal.asdf"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with dm.open(path) as lite:
        assert isinstance(lite, dm.ScienceRawModel)
        assert np.array_equal(lite.data, model.data) and np.array_equal(lite.amp33, model.amp33)
        assert lite.meta.filename == path.name
        assert lite.meta.instrument.detector == "WFI03"
    back = read_truth(path)
    assert set(back) == set(truth)
    for key in ("rate", "saturated_resultant", "dq", "pedestal"):
        assert np.array_equal(back[key], truth[key]) and back[key].dtype == truth[key].dtype
    assert back["parameters"] == truth["parameters"] | {"shape": list(SMALL)}
    assert np.array_equal(back["cosmic_rays"]["x"], truth["cosmic_rays"]["x"])
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    with warnings.catch_warnings():
        # the romancal_lite extension named in the file history is not installed there
        warnings.simplefilter("ignore", asdf.exceptions.AsdfPackageVersionWarning)
        official = rdm.open(path)
    with official:
        assert type(official).__name__ == "ScienceRawModel"
        official.validate()
        assert np.array_equal(official.data, model.data)
        pattern = [list(r) for r in official.meta.exposure.read_pattern]
        assert pattern == model.meta.exposure.read_pattern


def test_read_truth_errors(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        read_truth(tmp_path / "missing.asdf")
    (tmp_path / "junk.asdf").write_text("not asdf")
    with pytest.raises(InputFileError, match="cannot be read"):
        read_truth(tmp_path / "junk.asdf")
    model, _ = simulate_exposure(**TINY)
    plain = model.save(tmp_path / "plain.asdf")
    with pytest.raises(InputFileError, match="no simulation truth"):
        read_truth(plain)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (8, 256)}, "each side must be between 9"),
        ({"shape": (40, 5000)}, "each side must be between"),
        ({"shape": (40,)}, "two integers"),
        ({"shape": "big"}, "two integers"),
        ({"read_pattern": "ma9"}, "unknown read pattern 'ma9'.*ma4 \\(9 resultants\\)"),
        ({"read_pattern": []}, "empty"),
        ({"read_pattern": [[1], [1, 2]]}, "strictly increase"),
        ({"read_pattern": [[0], [1]]}, "strictly increase|positive"),
        ({"read_pattern": [[1], []]}, "empty"),
        ({"read_pattern": [1, 2]}, "not a list of integers"),
        ({"read_pattern": [["a"]]}, "not a list of integers"),
        ({"read_pattern": 9}, "preset name or a list"),
        ({"frame_time": 0}, "frame_time"),
        ({"detector": "WFI19"}, "detector must be one of"),
        ({"optical_element": "F999"}, "optical_element must be one of"),
        ({"exposure_type": "WFI_MOVIE"}, "exposure_type must be one of"),
        ({"exposure_type": "WFI_IM_DARK"}, "needs optical_element='DARK'"),
        ({"start_time": "yesterday"}, "start_time must be an ISO"),
        ({"seed": -1}, "seed must be"),
        ({"seed": 1.5}, "seed must be"),
        ({"dec": 100.0}, "dec must be"),
        ({"sky": -1.0}, "sky must be"),
        ({"sky_gradient": 1.5}, "sky_gradient"),
        ({"n_stars": -3}, "n_stars"),
        ({"star_flux_range": (10.0, 1.0)}, "star_flux_range"),
        ({"star_flux_range": 5}, "star_flux_range"),
        ({"psf_sigma": 0.0}, "psf_sigma"),
        ({"cr_rate": float("nan")}, "cr_rate"),
        ({"nonlinearity": "cubic"}, "nonlinearity must be one of"),
        ({"references": "somewhere"}, "references must be"),
        ({"references": {"bias": "x.asdf"}}, "unknown reference type"),
    ],
)
def test_bad_arguments_raise_clear_value_errors(kwargs, match):
    options = {"shape": SMALL, "references": "builtin"} | kwargs
    with pytest.raises(ValueError, match=match):
        simulate.simulate_exposure(**options)


def test_write_exposure_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="must end in .asdf"):
        write_exposure(tmp_path / "x.fits", **TINY)
    with pytest.raises(Exception, match="does not exist"):
        write_exposure(tmp_path / "nope" / "x.asdf", **TINY)


def test_cli_writes_a_file_and_preview(tmp_path, capsys):
    out = tmp_path / "cli_uncal.asdf"
    png = tmp_path / "cli.png"
    code = main([str(out), "--shape", "40", "256", "--references", "builtin", "--seed", "3",
                 "--read-pattern", "[[1], [2, 3], [4]]", "--n-stars", "2", "--preview", str(png)])
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    truth = read_truth(out)
    assert truth["seed"] == 3 and truth["parameters"]["read_pattern"] == [[1], [2, 3], [4]]
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "argv",
    [
        ["x_uncal.asdf", "--read-pattern", "ma9"],
        ["x_uncal.asdf", "--read-pattern", "[[1], [1]]"],
        ["x_uncal.asdf", "--read-pattern", "[[1], "],
        ["x_uncal.asdf", "--shape", "48", "256"],  # the references in use are 40 x 256
        ["x_uncal.fits", "--shape", "40", "256"],
        ["nodir/x_uncal.asdf", "--shape", "40", "256"],
        ["x_uncal.asdf", "--detector", "WFI99"],
        ["x_uncal.asdf", "--shape", "40"],
        ["x_uncal.asdf", "--bogus"],
        [],
    ],
)
def test_cli_errors_are_one_line_with_status_1(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().count("\n") == 0 and "error" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.asdf"))


def test_cli_as_a_module(tmp_path):
    out = tmp_path / "mod_uncal.asdf"
    bad = subprocess.run(
        [sys.executable, "-m", "romancal_lite.simulate", str(out), "--read-pattern", "ma9"],
        capture_output=True, text=True, check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert "unknown read pattern 'ma9'" in bad.stderr and not out.exists()
