"""Tests of the wfi18_transient step: romancal 1.1's WFI18 first-read transient fit."""

import logging

import numpy as np
import pytest
from astropy.time import Time

from romancal_lite import datamodels
from romancal_lite.steps._readout import frame_read_times
from romancal_lite.steps.wfi18_transient import WFI18TransientStep, correct_anomaly
from romancal_lite.steps.wfi18_transient.wfi18_transient import (
    MASK_FLAGS,
    double_exponential,
    resultant_times,
)

FRAME_TIME = 3.04
PATTERN = [[1], [2, 3], [4, 5], [6, 7], [8, 9], [10]]
#: rows enough for the fit (the transient decays over ~1000 rows), few columns
SHAPE = (1032, 136)
TRANSIENT = (30.0, -3.0, 0.2, 0.8)


def make_ramp(detector="WFI18", shape=SHAPE, pattern=PATTERN, transient=TRANSIENT, seed=4):
    rng = np.random.default_rng(seed)
    n = len(pattern)
    model = datamodels.RampModel.create_fake_data(shape=(n, *shape))
    meta = model.meta
    meta.instrument.detector = detector
    meta.exposure.type = "WFI_IMAGE"
    meta.exposure.start_time = Time("2026-05-01T00:00:00", format="isot", scale="utc")
    meta.exposure.frame_time = FRAME_TIME
    meta.exposure.read_pattern = pattern
    rate = rng.gamma(1.0, 2.0, shape)
    t = resultant_times(pattern, FRAME_TIME)
    data = rate[None] * t[:, None, None] + rng.normal(0.0, 2.0, (n, *shape))
    if transient is not None:
        times = frame_read_times(FRAME_TIME, 18, shape)
        data[0, 4:-4, 4:-4] += double_exponential(times, *transient)[4:-4, 4:-4]
    model.data = data.astype(np.float32)
    model.groupdq = np.zeros(model.data.shape, np.uint8)
    model.pixeldq = np.zeros(shape, np.uint32)
    return model


def first_rows_bias(model):
    """Mean of resultant 0 minus the value extrapolated from 1, 2 over the first rows."""
    t = resultant_times(PATTERN, FRAME_TIME)
    d = model.data[:, 4:200, 4:-4].astype(np.float64)
    est = d[1] - (d[2] - d[1]) / (t[2] - t[1]) * (t[1] - t[0])
    return float(np.mean(d[0] - est))


def test_transient_is_removed():
    model = make_ramp()
    clean = make_ramp(transient=None)
    assert first_rows_bias(model) > 10  # the transient is there
    result = WFI18TransientStep.call(model)
    assert result.meta.cal_step.wfi18_transient == "COMPLETE"
    assert abs(first_rows_bias(result)) < 0.3
    # corrected to the transient-free ramp within the noise of the fit
    np.testing.assert_allclose(result.data[0], clean.data[0], atol=0.5)
    np.testing.assert_array_equal(result.data[1:], clean.data[1:])
    np.testing.assert_array_equal(result.groupdq, 0)


def test_skipped_leaves_transient():
    model = make_ramp()
    result = WFI18TransientStep.call(model, skip=True)
    assert first_rows_bias(result) > 10
    assert result.meta.cal_step.wfi18_transient == "SKIPPED"


def test_flat_data_unchanged():
    # romancal's own case: a constant ramp has a zero residual
    model = make_ramp(transient=None)
    model.data[:] = 1.0
    result = WFI18TransientStep.call(model)
    np.testing.assert_array_equal(result.data, 1.0)
    np.testing.assert_array_equal(result.groupdq, 0)


def test_other_detector_not_applicable():
    model = make_ramp("WFI05")
    before = model.data.copy()
    result = WFI18TransientStep.call(model)
    assert result.meta.cal_step.wfi18_transient == "N/A"
    np.testing.assert_array_equal(result.data, before)


@pytest.mark.parametrize("case", ["few_resultants", "mask_rows", "nan", "too_few_rows"])
def test_masking_fallback(case, caplog):
    caplog.set_level(logging.INFO)
    kwargs = {}
    if case == "few_resultants":
        model = make_ramp(pattern=PATTERN[:4])
    elif case == "too_few_rows":
        model = make_ramp(shape=(10, 136))
    else:
        model = make_ramp()
    if case == "nan":
        model.data[:] = np.nan
    if case == "mask_rows":
        kwargs["mask_rows"] = True
    before = model.data.copy()
    result = WFI18TransientStep.call(model, **kwargs)
    assert result.meta.cal_step.wfi18_transient == "COMPLETE"
    np.testing.assert_array_equal(result.data, before)
    flags = result.groupdq
    np.testing.assert_array_equal(flags[0, :1000], MASK_FLAGS)
    np.testing.assert_array_equal(flags[0, 1000:], 0)
    np.testing.assert_array_equal(flags[1:], 0)
    assert MASK_FLAGS == 1 | 128
    if case == "nan":
        assert "Transient fit failed; masking affected rows instead" in caplog.text
    else:
        assert "Masking the affected rows" in caplog.text


def test_function_checks_shapes():
    with pytest.raises(ValueError, match="same 3-D shape"):
        correct_anomaly(np.zeros((5, 8, 8), np.float32), np.zeros((5, 8, 7), np.uint8),
                        FRAME_TIME, PATTERN[:5])
    with pytest.raises(ValueError, match="read pattern"):
        correct_anomaly(np.zeros((5, 8, 8), np.float32), np.zeros((5, 8, 8), np.uint8),
                        FRAME_TIME, PATTERN)


# ----------------------------------------------------------------- vs romancal 1.1


@pytest.mark.slow
def test_matches_romancal_full_frame():
    """A full-frame WFI18 ramp with a transient: romancal 1.1's correction and ours."""
    pytest.importorskip("romancal.wfi18_transient")
    from roman_datamodels import datamodels as rdm
    from romancal.wfi18_transient.wfi18_transient import correct_anomaly as theirs

    n = len(PATTERN)
    rng = np.random.default_rng(2)
    shape = (4096, 4096)
    times = frame_read_times(FRAME_TIME, 18, shape)
    t = resultant_times(PATTERN, FRAME_TIME)
    data = np.empty((n, *shape), np.float32)
    rate = rng.gamma(1.0, 2.0, shape).astype(np.float32)
    for i in range(n):
        data[i] = rate * np.float32(t[i]) + rng.normal(0, 3, shape).astype(np.float32)
    data[0] += double_exponential(times, *TRANSIENT).astype(np.float32)
    model = rdm.RampModel.create_fake_data(shape=(n, 4, 4))
    model.meta.exposure.frame_time = FRAME_TIME
    model.meta.exposure.read_pattern = PATTERN
    model.data = data.copy()
    model.groupdq = np.zeros((n, *shape), np.uint8)
    theirs(model)
    groupdq = np.zeros((n, *shape), np.uint8)
    result = correct_anomaly(data, groupdq, FRAME_TIME, PATTERN)
    assert result.corrected
    np.testing.assert_allclose(data, model.data, rtol=2e-7, atol=1e-5)
    # the correction was made (not the masking fall-back) and removed the transient
    np.testing.assert_array_equal(groupdq, 0)
    np.testing.assert_allclose(result.parameters, TRANSIENT, rtol=0.05)


def test_correction_is_the_fitted_curve_at_each_pixel():
    # the subtracted map, evaluated in blocks of rows (1032 rows: a partial last
    # block), is the fitted curve at every science pixel's read time, to the bit
    model = make_ramp()
    data = model.data.copy()
    result = correct_anomaly(data, np.zeros(data.shape, np.uint8), FRAME_TIME, PATTERN)
    assert result.corrected
    times = frame_read_times(FRAME_TIME, 18, SHAPE)
    want = model.data[0].copy()
    want[4:-4, 4:-4] -= double_exponential(times, *result.parameters)[4:-4, 4:-4]
    np.testing.assert_array_equal(data[0], want)
    np.testing.assert_array_equal(data[1:], model.data[1:])
