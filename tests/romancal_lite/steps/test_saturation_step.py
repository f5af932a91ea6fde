"""Tests of the saturation step: a thin wrapper of romancore.flag_saturation."""

import numpy as np
import pytest
from astropy.time import Time

import romancore
from romancal_lite import datamodels
from romancal_lite.errors import InputFileError, ReferenceFileError
from romancal_lite.references import get_reference_file
from romancal_lite.steps.saturation import SaturationStep
from romancore.dqflags import group, pixel

SMALL_SHAPE = (40, 256)  # the full read-out of the builtin_refs cache (conftest)
READ_PATTERN = [[1], [2, 3], [4, 5, 6], [7], [8, 9]]
SHAPE = (len(READ_PATTERN), *SMALL_SHAPE)
LEVEL_WFI01 = 53000.0  # _content._saturation: 55000 + 250 * (1 - 9)


def make_ramp(seed=0):
    rng = np.random.default_rng(seed)
    ramp = datamodels.RampModel.create_fake_data(shape=SHAPE)
    meta = ramp.meta
    meta.instrument.detector = "WFI01"
    meta.instrument.optical_element = "F158"
    meta.exposure.start_time = Time("2026-05-01T00:00:00", format="isot", scale="utc")
    meta.exposure.read_pattern = READ_PATTERN
    meta.exposure.nresultants = len(READ_PATTERN)
    meta.exposure.frame_time = 3.16247
    # ramps from 0 to ~70000 DN: some cross the threshold at every resultant
    rate = rng.uniform(0.0, 2500.0, SMALL_SHAPE)
    times = np.array([np.mean(r) for r in READ_PATTERN]) * 3.16247
    data = 1000.0 + rate[None] * times[:, None, None]
    data[0, 5:8, 5:8] = -3.0  # A/D floor
    ramp.data = data.astype(np.float32)
    ramp.groupdq = np.zeros(SHAPE, np.uint8)
    ramp.groupdq[1, 10, 10] = group.JUMP_DET
    ramp.pixeldq = np.zeros(SMALL_SHAPE, np.uint32)
    ramp.pixeldq[11, 11] = pixel.HOT
    return ramp


def direct(ramp, threshold, threshold_dq, n_pix_grow_sat=0):
    data, gdq, pdq = ramp.data.copy(), ramp.groupdq.copy(), ramp.pixeldq.copy()
    romancore.flag_saturation(
        data,
        gdq,
        pdq,
        np.asarray(threshold, np.float32),
        np.asarray(threshold_dq, np.uint32),
        READ_PATTERN,
        n_pix_grow_sat=n_pix_grow_sat,
    )
    return data, gdq, pdq


def write_saturation(path, data, dq=None, shape=SMALL_SHAPE):
    ref = datamodels.SaturationRefModel.create_fake_data(shape=shape)
    ref.data = np.asarray(data, np.float32)
    if dq is not None:
        ref.dq = dq
    ref.save(str(path))
    return str(path)


def test_builtin_reference_equals_romancore(builtin_refs):
    ramp = make_ramp()
    path = get_reference_file(ramp, "saturation")
    with datamodels.open(path) as ref:
        np.testing.assert_array_equal(ref.data, LEVEL_WFI01)
        data, gdq, pdq = direct(ramp, ref.data, ref.dq)
    result = SaturationStep.call(ramp)
    assert result is ramp
    np.testing.assert_array_equal(result.data, data)
    np.testing.assert_array_equal(result.groupdq, gdq)
    np.testing.assert_array_equal(result.pixeldq, pdq)
    saturated = (result.groupdq & group.SATURATED) != 0
    assert saturated.any() and not saturated.all()
    assert (result.groupdq[0, 5:8, 5:8] & group.AD_FLOOR).all()
    assert result.groupdq[1, 10, 10] & group.JUMP_DET
    assert result.pixeldq[11, 11] == pixel.HOT
    assert result.meta.cal_step.saturation == "COMPLETE"
    assert result.meta.ref_file.saturation == path


def test_override_reference_arrays_are_used(builtin_refs, tmp_path):
    rng = np.random.default_rng(1)
    threshold = rng.uniform(20000.0, 60000.0, SMALL_SHAPE)
    threshold[3, 100] = np.nan
    dq = np.zeros(SMALL_SHAPE, np.uint32)
    dq[20, 30] = pixel.NO_SAT_CHECK
    dq[21, 31] = pixel.DEAD
    path = write_saturation(tmp_path / "sat.asdf", threshold, dq)
    ramp = make_ramp(seed=1)
    data, gdq, pdq = direct(ramp, threshold, dq)
    SaturationStep.call(ramp, override_saturation=path)
    np.testing.assert_array_equal(ramp.groupdq, gdq)
    np.testing.assert_array_equal(ramp.pixeldq, pdq)
    np.testing.assert_array_equal(ramp.data, data)
    assert ramp.pixeldq[3, 100] & pixel.NO_SAT_CHECK
    assert ramp.pixeldq[20, 30] & pixel.NO_SAT_CHECK
    assert ramp.pixeldq[21, 31] & pixel.DEAD
    assert ramp.meta.ref_file.saturation == path


def test_n_pix_grow_sat_passed_through(builtin_refs, tmp_path):
    threshold = np.full(SMALL_SHAPE, 60000.0, np.float32)
    path = write_saturation(tmp_path / "sat.asdf", threshold)
    ramp = make_ramp()
    ramp.data = np.full(SHAPE, 100.0, np.float32)
    ramp.data[2:, 20, 40] = 65000.0  # one saturated pixel from resultant 2
    _, plain, _ = direct(ramp, threshold, np.zeros(SMALL_SHAPE, np.uint32))
    _, grown, _ = direct(ramp, threshold, np.zeros(SMALL_SHAPE, np.uint32), n_pix_grow_sat=2)
    SaturationStep.call(ramp, override_saturation=path, n_pix_grow_sat=2)
    np.testing.assert_array_equal(ramp.groupdq, grown)
    assert np.count_nonzero(plain[2] & group.SATURATED) == 1
    assert np.count_nonzero(ramp.groupdq[2] & group.SATURATED) == 25
    assert np.all(ramp.groupdq[2:, 18:23, 38:43] & group.SATURATED)
    assert not np.any(ramp.groupdq[:2] & group.SATURATED)


def test_not_applicable_skips(builtin_refs):
    ramp = make_ramp()
    data, gdq, pdq = ramp.data.copy(), ramp.groupdq.copy(), ramp.pixeldq.copy()
    result = SaturationStep.call(ramp, override_saturation="N/A")
    assert result.meta.cal_step.saturation == "SKIPPED"
    np.testing.assert_array_equal(result.data, data)
    np.testing.assert_array_equal(result.groupdq, gdq)
    np.testing.assert_array_equal(result.pixeldq, pdq)


def test_not_applicable_via_the_runner_one_warning(builtin_refs, run_cli):
    # SKIPPED with one warning, before the read pattern is looked at (here one that
    # does not match the data)
    ramp = make_ramp()
    ramp.meta.exposure.read_pattern = [[1], [2]]
    assert SaturationStep.call(ramp, override_saturation="N/A").meta.cal_step.saturation == (
        "SKIPPED"
    )
    run = run_cli("saturation", make_ramp(), "--override-saturation", "N/A")
    assert run.status == 0, run.err
    assert len(run.warnings) == 1 and "SATURATION" in run.warnings[0], run.warnings
    (output,) = run.out.iterdir()
    with datamodels.open(output) as saved:
        assert saved.meta.cal_step.saturation == "SKIPPED"
        np.testing.assert_array_equal(saved.groupdq, make_ramp().groupdq)


def test_wrong_shape_rejected(builtin_refs, tmp_path):
    path = write_saturation(tmp_path / "sat.asdf", np.zeros((32, 248)), shape=(32, 248))
    ramp = make_ramp()
    gdq = ramp.groupdq.copy()
    with pytest.raises(ReferenceFileError, match="shape"):
        SaturationStep.call(ramp, override_saturation=path)
    np.testing.assert_array_equal(ramp.groupdq, gdq)


def test_missing_read_pattern_rejected(builtin_refs):
    ramp = make_ramp()
    ramp.meta.exposure.read_pattern = []
    with pytest.raises(InputFileError, match="read_pattern"):
        SaturationStep.call(ramp)
