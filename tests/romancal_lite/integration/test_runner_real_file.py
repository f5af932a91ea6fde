"""The runner on the real romanisim Level 1 file, with real datamodels and references.

Exercises the issue-3 pieces together: ``python -m romancal_lite run`` opens the file with
``romancal_lite.datamodels``, selects a reference through ``romancal_lite.references``
(or takes ``--override-saturation``), checks it, saves atomically, and reports each bad
input in one line with exit status 1, writing nothing and leaving the input untouched.
"""

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from romancal_lite import cli, datamodels
from romancal_lite.stpipe import registry

REAL = Path(__file__).parents[3].parent / "shared" / "data" / (
    "romanisim_l1_strip_wfi02_ma109.asdf"
)
pytestmark = pytest.mark.skipif(not REAL.exists(), reason="../shared/data not present")


def _load_steps():
    name = "romancal_lite_integration_steps"
    if name not in sys.modules:
        path = Path(__file__).parent / "_realsteps.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def work(tmp_path, monkeypatch):
    _load_steps()
    monkeypatch.setattr(
        registry, "STEPS", {"sat_probe": "romancal_lite_integration_steps:SatProbeStep"}
    )
    monkeypatch.chdir(tmp_path)
    inp = tmp_path / "r0000101001001001001_0001_wfi02_uncal.asdf"
    shutil.copy(REAL, inp)
    # a saturation reference of the strip's shape, in the official format
    with datamodels.open(inp) as raw:
        shape = raw.data.shape[1:]
        sat = datamodels.SaturationRefModel.create_fake_data(shape=shape)
        sat.meta.instrument.detector = raw.meta.instrument.detector
        sat.data[...] = 55000.0
        sat.save(tmp_path / "sat.asdf")
    return tmp_path, inp


def run(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, err


def one_error_line(err):
    lines = [ln for ln in err.splitlines() if ln.startswith("romancal_lite: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_real_file_runs_and_saves(capsys, work):
    tmp, inp = work
    status, err = run(capsys, "run", "sat_probe", inp, "--override-saturation", "sat.asdf",
                      "--save_results", "true", "--output-dir", "out")
    assert status == 0, err
    out = tmp / "out" / "r0000101001001001001_0001_wfi02_sat_probe.asdf"
    with datamodels.open(out) as res, datamodels.open(inp) as raw:
        np.testing.assert_array_equal(res.data, raw.data)
        assert res.meta.exposure.read_pattern == raw.meta.exposure.read_pattern
    assert [p.name for p in (tmp / "out").iterdir()] == [out.name]


def _bad_inputs(tmp, inp):
    text = tmp / "notasdf_uncal.asdf"
    text.write_text("this is not an ASDF file\n")
    trunc = tmp / "trunc_uncal.asdf"
    trunc.write_bytes(inp.read_bytes()[: inp.stat().st_size // 2])
    with datamodels.open(inp) as raw:
        img = datamodels.ImageModel.create_fake_data(shape=(8, 8))
        img.meta.instrument.detector = raw.meta.instrument.detector
    wrong = tmp / "image_cal.asdf"
    img.save(wrong)
    return {"not an ASDF": text, "truncated": trunc, "wrong model": wrong}


@pytest.mark.parametrize("case", ["not an ASDF", "truncated", "wrong model"])
def test_bad_input_one_line_exit_1_nothing_written(capsys, work, case):
    tmp, inp = work
    bad = _bad_inputs(tmp, inp)[case]
    before = sorted(os.listdir(tmp))
    data_before = bad.read_bytes()
    status, err = run(capsys, "run", "sat_probe", bad, "--override-saturation", "sat.asdf",
                      "--save_results", "true")
    assert status == 1
    line = one_error_line(err)
    assert bad.name in line
    assert sorted(os.listdir(tmp)) == before
    assert bad.read_bytes() == data_before


def test_reference_of_wrong_shape(capsys, work):
    tmp, inp = work
    with datamodels.open(inp) as raw:
        small = datamodels.SaturationRefModel.create_fake_data(shape=(16, 16))
        small.meta.instrument.detector = raw.meta.instrument.detector
    small.save(tmp / "small_sat.asdf")
    before = sorted(os.listdir(tmp))
    status, err = run(capsys, "run", "sat_probe", inp, "--override-saturation",
                      "small_sat.asdf", "--save_results", "true")
    assert status == 1
    line = one_error_line(err)
    assert "small_sat.asdf" in line and "shape" in line
    assert sorted(os.listdir(tmp)) == before


def test_reference_of_wrong_detector(capsys, work):
    tmp, inp = work
    with datamodels.open(tmp / "sat.asdf") as sat:
        sat.meta.instrument.detector = "WFI07"
        sat.save(tmp / "wfi07_sat.asdf")
    status, err = run(capsys, "run", "sat_probe", inp, "--override-saturation",
                      "wfi07_sat.asdf")
    assert status == 1
    line = one_error_line(err)
    assert "wfi07_sat.asdf" in line and "WFI07" in line
