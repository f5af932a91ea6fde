"""Where a run's references come from: never invented references applied silently.

The runner is driven in-process (``cli.main``) with the user's CRDS variables removed
and ``ROMANCAL_LITE_CRDS_CACHE`` pointing at a small generated cache, exactly as a
user without CRDS would run it; no cache is forced with ``builtin_cache`` (that is an
explicit opt-in of its own).
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import asdf
import numpy as np
import pytest

from romancal_lite import cli, datamodels, simulate
from romancal_lite.errors import ReferenceFileError
from romancal_lite.pipeline import ExposurePipeline
from romancal_lite.references import (
    CACHE_ENV_VAR,
    OVERRIDES_ONLY,
    DetectorConstants,
    allow_builtin_references,
    builtin_cache,
    generate_cache,
    input_origin,
    matched_cache,
    reference_source,
    romanisim_constants,
)
from romancal_lite.references._crds import USER_CRDS_VARS

SHAPE = (40, 128)
NAME = "r0000101001001001001_0001_wfi05"
REAL = Path(__file__).parents[3].parent / "shared" / "data" / (
    "romanisim_l1_strip_wfi02_ma109.asdf"
)
ROMANISIM_RECORD = {
    "version": "0.14.0",
    "usecrds": False,
    "simulate_reffiles": {
        "dark": 0.01,
        "darkdecaysignal": None,
        "distortion": None,
        "flat": None,
        "gain": 2,
        "integralnonlinearity": None,
        "inverselinearity": None,
        "ipc": None,
        "linearity": None,
        "readnoise": 5.0,
        "saturation": 55000,
    },
}
#: Every reference type roman_elp selects (refpix's REFPIX included; epsf and apcorr once
#: source_catalog is part of it).
ELP_REFTYPES = tuple(ExposurePipeline.reference_file_types)


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    return generate_cache(tmp_path_factory.mktemp("source_crds"), full_shape=SHAPE)


@pytest.fixture(scope="module")
def exposures(tmp_path_factory, small_cache):
    """A simulated exposure, and the same exposure without the simulator's record."""
    tmp = tmp_path_factory.mktemp("source_inputs")
    sim = tmp / f"{NAME}_uncal.asdf"
    with builtin_cache(small_cache, hide_user_crds=True):
        simulate.write_exposure(sim, shape=SHAPE, detector="WFI05", read_pattern="ma4",
                                seed=3, n_stars=3, cr_rate=0.0)
    other = tmp / "other" / f"{NAME}_uncal.asdf"
    other.parent.mkdir()
    with datamodels.open(sim) as model:
        model.save(other)  # only the "roman" node: an exposure of unknown origin
    return sim, other


@pytest.fixture
def no_crds(monkeypatch, small_cache):
    """A user without CRDS whose built-in cache is the small one."""
    for name in (*USER_CRDS_VARS, "CRDS_MODE", "CRDS_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(CACHE_ENV_VAR, str(small_cache.root))
    return small_cache


def run(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


# ---------------------------------------------------------------- romanisim's record


def test_romanisim_constants_from_the_record():
    constants, detail = romanisim_constants(ROMANISIM_RECORD)
    assert detail == ""
    assert constants == DetectorConstants(gain=2.0, readnoise=5.0, dark=0.01,
                                          saturation=55000.0, linear=True, flat=1.0,
                                          source="romanisim 0.14.0")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"linearity": "roman_wfi_linearity_0001.asdf"}, "linearity"),
        ({"gain": "crds://roman_wfi_gain_0001.asdf"}, "gain"),
        ({"flat": "roman_wfi_flat_0042.asdf"}, "flat"),
        ({"readnoise": None}, "readnoise"),
        ({"saturation": True}, "saturation"),
        ({"dark": float("nan")}, "dark"),
    ],
)
def test_romanisim_reference_files_cannot_be_matched(change, named):
    record = copy.deepcopy(ROMANISIM_RECORD)
    record["simulate_reffiles"].update(change)
    constants, detail = romanisim_constants(record)
    assert constants is None
    assert named in detail


def test_romanisim_record_malformed():
    assert romanisim_constants("nonsense")[0] is None
    assert romanisim_constants({"version": "0.14.0"})[0] is None
    record = copy.deepcopy(ROMANISIM_RECORD)
    record["simulate_reffiles"]["gain"] = -2
    assert romanisim_constants(record)[0] is None


def test_matched_cache_holds_the_constants(tmp_path):
    constants = DetectorConstants(gain=2.5, readnoise=7.0, dark=0.2, saturation=50000.0,
                                  source="romanisim 0.14.0")
    cache = matched_cache(constants, (24, 24), tmp_path)
    assert cache.root.parent == tmp_path / "matched"
    files = {info["reftype"]: name for name, info in cache.files.items()
             if info["detector"] == "WFI01" and info.get("optical_element") in (None, "F158")}
    read = {}
    for reftype in ("gain", "readnoise", "dark", "saturation", "linearity", "flat"):
        path = cache.ensure_reference(files[reftype])
        with asdf.open(path, lazy_load=False) as af:
            node = af.tree["roman"]
            assert node["meta"]["pedigree"] == "SIMULATION"
            assert "romanisim 0.14.0" in node["meta"]["description"]
            read[reftype] = {k: np.asarray(v) for k, v in node.items() if k != "meta"}
    assert np.all(read["gain"]["data"] == 2.5)
    assert np.all(read["readnoise"]["data"] == 7.0)
    np.testing.assert_allclose(read["dark"]["dark_slope"], 0.2 / 2.5, rtol=1e-6)
    assert np.all(read["saturation"]["data"] == 50000.0)
    coeffs = read["linearity"]["coeffs"]
    assert np.all(coeffs[1] == 1) and not np.any(np.delete(coeffs, 1, axis=0))
    assert np.all(read["flat"]["data"] == 1.0)
    # other constants get a cache of their own; the same ones reuse it
    other = matched_cache(DetectorConstants(2.0, 5.0, 0.01, 55000.0), (24, 24), tmp_path)
    assert other.root != cache.root
    assert matched_cache(constants, (24, 24), tmp_path).root == cache.root


# ---------------------------------------------------------------- origin and source


def test_origin_of_files(exposures):
    sim, other = exposures
    with datamodels.open(sim) as model:
        assert input_origin(model).kind == "romancal_lite.simulate"
    with datamodels.open(other) as model:
        assert input_origin(model).kind == "unknown"
    model, _ = simulate.simulate_exposure(shape=SHAPE, references="builtin", seed=1)
    assert input_origin(model).kind == "unknown"  # in memory: no record to go by


@pytest.mark.skipif(not REAL.exists(), reason="../shared/data not present")
def test_origin_of_the_romanisim_strip():
    with datamodels.open(REAL) as model:
        origin = input_origin(model)
    assert origin.kind == "romanisim"
    assert origin.constants.gain == 2.0 and origin.constants.saturation == 55000.0


def test_source_rules(exposures, no_crds, monkeypatch):
    sim, other = exposures
    with datamodels.open(sim) as model:
        source = reference_source(model)
        assert source.kind == "simulator" and not source.invented
        assert source.cache.root == no_crds.root
    with datamodels.open(other) as model:
        with pytest.raises(ReferenceFileError, match="CRDS_PATH.*--builtin-references"):
            reference_source(model)
        with allow_builtin_references():
            source = reference_source(model)
        assert source.invented and "INVENTED" in source.description
        with builtin_cache(no_crds):  # choosing a cache in Python is an opt-in too
            assert reference_source(model).invented
        monkeypatch.setenv("CRDS_PATH", str(no_crds.root))
        source = reference_source(model)
        assert source.kind == "crds" and source.cache is None and not source.invented


# ---------------------------------------------------------------- the runner


def _listing(directory):
    return sorted(p.name for p in Path(directory).rglob("*"))


def test_unknown_exposure_without_crds_is_refused(capsys, exposures, no_crds, tmp_path):
    _, other = exposures
    before = other.read_bytes()
    status, _, err = run(capsys, "run", "roman_elp", other, "--output-dir", tmp_path / "out")
    assert status == 1
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("romancal_lite: error:")]
    assert len(errors) == 1, err
    assert other.name in errors[0]
    assert "CRDS_PATH" in errors[0] and "--override-" in errors[0]
    assert "--builtin-references" in errors[0]
    assert "Traceback" not in err
    assert _listing(tmp_path / "out") == []  # nothing written
    assert other.read_bytes() == before


def test_builtin_references_opt_in_warns_and_marks(capsys, exposures, no_crds, tmp_path):
    _, other = exposures
    status, _, err = run(capsys, "run", "roman_elp", other, "--output-dir", tmp_path,
                         "--builtin-references")
    assert status == 0, err
    assert "WARNING" in err and "INVENTED" in err
    with datamodels.open(tmp_path / f"{NAME}_cal.asdf") as cal:
        ref_file = cal.meta.ref_file
        assert "INVENTED" in ref_file.source
        assert dict(ref_file.pedigree) == dict.fromkeys(ELP_REFTYPES, "DUMMY")
        assert ref_file.crds.context == no_crds.context
        assert any("INVENTED" in line for line in cal.meta.cal_logs)


def test_simulated_exposure_uses_its_references(capsys, exposures, no_crds, tmp_path):
    sim, _ = exposures
    status, _, err = run(capsys, "run", "roman_elp", sim, "--output-dir", tmp_path)
    assert status == 0, err
    assert "INVENTED" not in err
    assert "romancal_lite.simulate made this exposure with" in err
    with datamodels.open(tmp_path / f"{NAME}_cal.asdf") as cal:
        assert "romancal_lite.simulate" in cal.meta.ref_file.source
        assert not any("INVENTED" in line for line in cal.meta.cal_logs)
        assert Path(cal.meta.ref_file.gain).parent == no_crds.reference_dir


def test_simulated_exposure_finds_its_own_cache(capsys, exposures, monkeypatch, tmp_path):
    """Simulated with a small cache: that cache, not the (full-size) default one."""
    sim, _ = exposures
    for name in (*USER_CRDS_VARS, "CRDS_MODE", "CRDS_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "default_cache"))
    status, _, err = run(capsys, "run", "roman_elp", sim, "--output-dir", tmp_path / "out")
    assert status == 0, err
    truth = simulate.read_truth(sim)
    with datamodels.open(tmp_path / "out" / f"{NAME}_cal.asdf") as cal:
        assert cal.meta.ref_file.gain == truth["references"]["gain"]
    assert not (tmp_path / "default_cache").exists()


def test_overrides_for_every_type_need_no_source(capsys, exposures, no_crds, tmp_path):
    _, other = exposures
    with datamodels.open(other) as model:
        params = model.get_crds_parameters()
    with builtin_cache(no_crds):
        from romancal_lite.references import get_reference_files

        paths = get_reference_files(params, ELP_REFTYPES)
    refs = tmp_path / "refs"
    refs.mkdir()
    argv = []
    for reftype, path in paths.items():
        copied = refs / f"my_{reftype}.asdf"
        shutil.copy(path, copied)
        argv += [f"--override-{reftype}", copied]
    status, _, err = run(capsys, "run", "roman_elp", other, "--output-dir", tmp_path, *argv)
    assert status == 0, err
    assert "References: the override files given for every reference type" in err
    with datamodels.open(tmp_path / f"{NAME}_cal.asdf") as cal:
        assert cal.meta.ref_file.source == OVERRIDES_ONLY.description
        assert cal.meta.ref_file.gain == os.fspath(refs / "my_gain.asdf")
        assert cal.meta.ref_file.pedigree["gain"] == "DUMMY"
        assert not any("INVENTED" in line for line in cal.meta.cal_logs)


def test_cal_with_provenance_is_read_by_roman_datamodels(capsys, exposures, no_crds, tmp_path):
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    sim, _ = exposures
    assert run(capsys, "run", "roman_elp", sim, "--output-dir", tmp_path)[0] == 0
    with rdm.open(tmp_path / f"{NAME}_cal.asdf") as cal:
        cal.validate()
        assert cal.meta.ref_file.pedigree["flat"] == "DUMMY"


def test_unusable_cache_location_is_one_clear_error(capsys, exposures, monkeypatch, tmp_path):
    _, other = exposures
    for name in (*USER_CRDS_VARS, "CRDS_MODE", "CRDS_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache should be")
    monkeypatch.setenv(CACHE_ENV_VAR, str(blocker))
    status, _, err = run(capsys, "run", "roman_elp", other, "--output-dir", tmp_path / "out",
                         "--builtin-references")
    assert status == 1
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("romancal_lite: error:")]
    assert len(errors) == 1 and str(blocker) in errors[0] and CACHE_ENV_VAR in errors[0]
    assert blocker.read_text() == "a file where the cache should be"
    assert _listing(tmp_path / "out") == []


def test_cache_in_a_folder_with_hash_and_percent(exposures, tmp_path):
    """Reference files are written and read by literal path ('#' is no URI fragment)."""
    cache = generate_cache(tmp_path / "crds#1%41", full_shape=SHAPE)
    (tmp_path / "crds").write_bytes(b"a neighbour that must stay")
    sim, _ = exposures
    with builtin_cache(cache, hide_user_crds=True):
        with datamodels.open(sim) as model:
            from romancal_lite.references import get_reference_files

            paths = get_reference_files(model, ["gain", "flat"])
    for path in paths.values():
        assert Path(path).parent == cache.reference_dir and Path(path).stat().st_size > 0
        with datamodels.open(path) as ref:
            assert ref.data.shape[-1] in (SHAPE[1], SHAPE[1] - 8)
    assert (tmp_path / "crds").read_bytes() == b"a neighbour that must stay"
