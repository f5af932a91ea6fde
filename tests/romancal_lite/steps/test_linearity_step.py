"""Tests of the linearity step: a thin wrapper of romancore.apply_linearity."""

import numpy as np
import pytest
from astropy.time import Time

import romancore
from romancal_lite import datamodels
from romancal_lite.errors import ReferenceFileError
from romancal_lite.references import get_reference_file
from romancal_lite.steps.linearity import LinearityStep
from romancore.dqflags import group, pixel

SMALL_SHAPE = (40, 256)  # the full read-out of the builtin_refs cache (conftest)
READ_PATTERN = [[1], [2, 3], [4, 5, 6], [7], [8, 9]]
SHAPE = (len(READ_PATTERN), *SMALL_SHAPE)
LIN_C2 = 1.0e-7  # _content._LIN_C2: corrected = raw + 1e-7 raw**2


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
    ramp.data = np.sort(rng.uniform(0.0, 50000.0, SHAPE), axis=0).astype(np.float32)
    ramp.groupdq = np.zeros(SHAPE, np.uint8)
    ramp.groupdq[3:, 12, 34] = group.SATURATED
    ramp.pixeldq = np.zeros(SMALL_SHAPE, np.uint32)
    ramp.pixeldq[11, 11] = pixel.HOT
    return ramp


def direct(ramp, coeffs, coeffs_dq):
    data, gdq, pdq = ramp.data.copy(), ramp.groupdq.copy(), ramp.pixeldq.copy()
    romancore.apply_linearity(
        data, gdq, pdq, np.asarray(coeffs, np.float32), np.asarray(coeffs_dq, np.uint32)
    )
    return data, gdq, pdq


def write_linearity(path, coeffs, dq=None):
    ref = datamodels.LinearityRefModel.create_fake_data(shape=coeffs.shape)
    ref.coeffs = coeffs.astype(np.float32)
    if dq is not None:
        ref.dq = dq
    ref.save(str(path))
    return str(path)


def test_builtin_reference_equals_romancore(builtin_refs):
    ramp = make_ramp()
    raw = ramp.data.copy()
    path = get_reference_file(ramp, "linearity")
    with datamodels.open(path) as ref:
        data, gdq, pdq = direct(ramp, ref.coeffs, ref.dq)
    result = LinearityStep.call(ramp)
    assert result is ramp
    np.testing.assert_array_equal(result.data, data)
    np.testing.assert_array_equal(result.groupdq, gdq)
    np.testing.assert_array_equal(result.pixeldq, pdq)
    # the built-in coefficients: raw + 1e-7 raw**2, saturated resultants untouched
    expected = raw + LIN_C2 * raw.astype(np.float64) ** 2
    expected[3:, 12, 34] = raw[3:, 12, 34]
    np.testing.assert_allclose(result.data, expected, rtol=2e-7, atol=1e-3)
    assert not np.array_equal(result.data, raw)
    assert result.pixeldq[11, 11] == pixel.HOT
    assert np.count_nonzero(result.pixeldq) == 1
    assert result.meta.cal_step.linearity == "COMPLETE"
    assert result.meta.ref_file.linearity == path


def test_override_reference_arrays_are_used(builtin_refs, tmp_path):
    rng = np.random.default_rng(2)
    coeffs = np.zeros((4, *SMALL_SHAPE), np.float32)
    coeffs[0] = rng.uniform(-5.0, 5.0, SMALL_SHAPE)
    coeffs[1] = rng.uniform(0.9, 1.1, SMALL_SHAPE)
    coeffs[2] = rng.uniform(0.0, 1e-6, SMALL_SHAPE)
    coeffs[3] = rng.uniform(-1e-12, 1e-12, SMALL_SHAPE)
    coeffs[2, 7, 8] = np.nan
    coeffs[1, 9, 10] = 0.0
    dq = np.zeros(SMALL_SHAPE, np.uint32)
    dq[20, 30] = pixel.NO_LIN_CORR
    dq[21, 31] = pixel.DEAD
    path = write_linearity(tmp_path / "lin.asdf", coeffs, dq)
    ramp = make_ramp(seed=2)
    raw = ramp.data.copy()
    data, gdq, pdq = direct(ramp, coeffs, dq)
    LinearityStep.call(ramp, override_linearity=path)
    np.testing.assert_array_equal(ramp.data, data)
    np.testing.assert_array_equal(ramp.groupdq, gdq)
    np.testing.assert_array_equal(ramp.pixeldq, pdq)
    for y, x in ((7, 8), (9, 10), (20, 30)):
        assert ramp.pixeldq[y, x] & pixel.NO_LIN_CORR
        np.testing.assert_array_equal(ramp.data[:, y, x], raw[:, y, x])
    assert ramp.pixeldq[21, 31] == pixel.DEAD
    assert ramp.meta.ref_file.linearity == path


def test_not_applicable_skips(builtin_refs):
    ramp = make_ramp()
    data, pdq = ramp.data.copy(), ramp.pixeldq.copy()
    result = LinearityStep.call(ramp, override_linearity="N/A")
    assert result.meta.cal_step.linearity == "SKIPPED"
    np.testing.assert_array_equal(result.data, data)
    np.testing.assert_array_equal(result.pixeldq, pdq)


def test_not_applicable_via_the_runner_one_warning(builtin_refs, run_cli):
    run = run_cli("linearity", make_ramp(), "--override-linearity", "N/A")
    assert run.status == 0, run.err
    assert len(run.warnings) == 1 and "LINEARITY" in run.warnings[0], run.warnings
    (output,) = run.out.iterdir()
    with datamodels.open(output) as saved:
        assert saved.meta.cal_step.linearity == "SKIPPED"
        np.testing.assert_array_equal(saved.data, make_ramp().data)


def test_wrong_shape_rejected(builtin_refs, tmp_path):
    path = write_linearity(tmp_path / "lin.asdf", np.ones((2, 32, 248), np.float32))
    ramp = make_ramp()
    data = ramp.data.copy()
    with pytest.raises(ReferenceFileError, match="shape"):
        LinearityStep.call(ramp, override_linearity=path)
    np.testing.assert_array_equal(ramp.data, data)
