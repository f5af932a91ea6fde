"""Tests of the dark_decay step: romancal 1.1's decaying-dark subtraction."""

import math

import numpy as np
import pytest
from astropy.time import Time

from romancal_lite import datamodels
from romancal_lite.errors import InputFileError, ReferenceFileError
from romancal_lite.references import build_reference, get_reference_file, write_reference
from romancal_lite.references._content import dark_decay_values
from romancal_lite.steps._readout import frame_read_times, read_time_period
from romancal_lite.steps.dark_decay import DarkDecayStep, subtract_dark_decay

SHAPE = (40, 256)
PATTERN = [[1], [2, 3], [4, 5, 6]]
FRAME_TIME = 3.04


def make_ramp(detector="WFI01", shape=SHAPE, pattern=PATTERN, seed=3):
    rng = np.random.default_rng(seed)
    model = datamodels.RampModel.create_fake_data(shape=(len(pattern), *shape))
    meta = model.meta
    meta.instrument.detector = detector
    meta.instrument.optical_element = "F158"
    meta.exposure.type = "WFI_IMAGE"
    meta.exposure.start_time = Time("2026-05-01T00:00:00", format="isot", scale="utc")
    meta.exposure.frame_time = FRAME_TIME
    meta.exposure.read_pattern = pattern
    model.data = rng.normal(1000.0, 5.0, (len(pattern), *shape)).astype(np.float32)
    model.groupdq = np.zeros(model.data.shape, np.uint8)
    model.pixeldq = np.zeros(shape, np.uint32)
    return model


def write_decay(path, table=None):
    node = build_reference("darkdecaysignal", "ALL", SHAPE, "2020-01-01T00:00:00")
    if table is not None:
        node["decay_table"] = table
    write_reference(path, node)
    return str(path)


# ----------------------------------------------------------------- hand-computed cases


def test_read_times_by_hand():
    # one channel: clock = x + 142 y; guide window: (frame/clock - max) / 16 * 1.5
    ft = 3.04
    clock_max = 127 + 4095 * 142
    per_visit = (ft / 4.915263e-06 - clock_max) / 16 * 1.5
    denom = clock_max + 15 * per_visit + per_visit
    t = frame_read_times(ft, 1, (4096, 300))  # rows flipped for WFI01
    assert t[4095, 0] == 0.0
    assert math.isclose(t[4095, 5], ft * 5 / denom, rel_tol=1e-15)
    assert math.isclose(t[4095 - 300, 2], ft * (2 + 300 * 142 + per_visit) / denom,
                        rel_tol=1e-14)
    # the next channel reads the other way; the map repeats every 256 columns
    assert math.isclose(t[4095, 255], 0.0, abs_tol=0) and t[4095, 128] == t[4095, 127]
    np.testing.assert_array_equal(t[:, 256:300], t[:, :44])
    # WFI18 (sca % 3 == 0) flips the columns of the full frame instead of the rows
    t18 = frame_read_times(ft, 18, (2, 4096))
    assert t18[0, 4095] == 0.0 and t18[0, 0] == 0.0  # the two mirrored channel ends


def test_subtraction_by_hand():
    # A exp(-(t0 + (k - 1.5) ft) / tau) averaged over each resultant's reads
    amp, tau = 2.5, 20.0
    data = np.zeros((3, 8, 300), np.float32)
    subtract_dark_decay(data, amp, tau, FRAME_TIME, PATTERN, 7)
    t0 = frame_read_times(FRAME_TIME, 7, (8, 300))
    for i, reads in enumerate(PATTERN):
        want = np.mean([amp * np.exp(-(t0 + (k - 1.5) * FRAME_TIME) / tau) for k in reads],
                       axis=0)
        np.testing.assert_allclose(-data[i], want, rtol=1e-6)
    # one pixel by hand: resultant 1 averages reads 2 and 3
    t = t0[5, 17]
    want = amp * (math.exp(-(t + 0.5 * FRAME_TIME) / tau)
                  + math.exp(-(t + 1.5 * FRAME_TIME) / tau)) / 2
    assert math.isclose(-float(data[1, 5, 17]), want, rel_tol=1e-6)
    # the signal decays from resultant to resultant
    assert np.all(-data[0] > -data[1]) and np.all(-data[1] > -data[2])


def test_zero_amplitude_changes_nothing():
    data = np.full((3, 8, 16), 7.0, np.float32)
    subtract_dark_decay(data, 0.0, 20.0, FRAME_TIME, PATTERN, 1)
    np.testing.assert_array_equal(data, 7.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"time_constant": 0.0}, "time constant"),
        ({"time_constant": float("nan")}, "time constant"),
        ({"frame_time": -1.0}, "frame time"),
        ({"amplitude": float("inf")}, "amplitude"),
        ({"sca": 19}, "1 ... 18"),
        ({"read_pattern": [[1], [2]]}, "resultants"),
    ],
)
def test_function_errors(kwargs, match):
    args = {"amplitude": 1.0, "time_constant": 20.0, "frame_time": FRAME_TIME,
            "read_pattern": PATTERN, "sca": 1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        subtract_dark_decay(np.zeros((3, 4, 4), np.float32), **args)


# ----------------------------------------------------------------- the step


def test_builtin_reference_is_subtracted(builtin_refs):
    model = make_ramp("WFI05")
    before = model.data.copy()
    result = DarkDecayStep.call(model)
    assert result.meta.cal_step.dark_decay == "COMPLETE"
    path = get_reference_file(model, "darkdecaysignal")
    assert result.meta.ref_file.darkdecaysignal == path
    amp, tau = dark_decay_values("WFI05")
    assert amp > 1 and tau > 10  # realistic, non-zero
    want = before.copy()
    subtract_dark_decay(want, amp, tau, FRAME_TIME, PATTERN, 5)
    np.testing.assert_array_equal(result.data, want)
    # the first resultant loses about the amplitude, later ones less
    drop = (before - result.data).mean(axis=(1, 2))
    assert amp * 0.8 < drop[0] < amp * 1.1 and drop[0] > drop[1] > drop[2] > 0


def test_feature_off_leaves_data(builtin_refs):
    model = make_ramp()
    before = model.data.copy()
    result = DarkDecayStep.call(model, skip=True)
    np.testing.assert_array_equal(result.data, before)
    assert result.meta.cal_step.dark_decay == "SKIPPED"


def test_not_applicable_skips(builtin_refs, caplog):
    model = make_ramp()
    before = model.data.copy()
    result = DarkDecayStep.call(model, override_darkdecaysignal="N/A")
    np.testing.assert_array_equal(result.data, before)
    assert result.meta.cal_step.dark_decay == "SKIPPED"
    assert "DARKDECAYSIGNAL" in caplog.text


def test_null_values_skip(builtin_refs, tmp_path):
    table = {d: {"amplitude": 1.0, "time_constant": 10.0} for d in ("WFI01", "WFI02")}
    table["WFI01"] = {"amplitude": None, "time_constant": None}
    ref = write_decay(tmp_path / "decay.asdf", table)
    model = make_ramp()
    before = model.data.copy()
    result = DarkDecayStep.call(model, override_darkdecaysignal=ref)
    np.testing.assert_array_equal(result.data, before)
    assert result.meta.cal_step.dark_decay == "SKIPPED"


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"WFI02": {"amplitude": 1.0, "time_constant": 10.0}}, "no entry for detector WFI01"),
        ({"WFI01": {"amplitude": 1.0, "time_constant": 0.0}}, "time constant"),
        ({"WFI01": {"amplitude": "big", "time_constant": 3.0}}, "amplitude"),
        ({"WFI01": {"amplitude": 1.0}}, "lacks 'time_constant'"),
    ],
)
def test_bad_reference(builtin_refs, tmp_path, table, match):
    ref = write_decay(tmp_path / "decay.asdf", table)
    with pytest.raises(ReferenceFileError, match=match):
        DarkDecayStep.call(make_ramp(), override_darkdecaysignal=ref)


def test_wrong_reference_type(builtin_refs, tmp_path):
    node = build_reference("gain", "WFI01", SHAPE, "2020-01-01T00:00:00")
    write_reference(tmp_path / "gain.asdf", node)
    with pytest.raises(ReferenceFileError, match="GAIN reference file, expected DARKDECAY"):
        DarkDecayStep.call(make_ramp(), override_darkdecaysignal=str(tmp_path / "gain.asdf"))


def test_bad_exposure_metadata(builtin_refs):
    model = make_ramp()
    model.meta.exposure.frame_time = 0.0
    with pytest.raises(InputFileError, match="frame_time"):
        DarkDecayStep.call(model)
    model = make_ramp()
    model.meta.exposure.read_pattern = [[1], [2]]
    with pytest.raises(InputFileError, match="read pattern"):
        DarkDecayStep.call(model)


def test_cli_one_line_error(builtin_refs, run_cli, tmp_path):
    ref = write_decay(tmp_path / "decay.asdf", {"WFI02": {"amplitude": 1, "time_constant": 2}})
    run = run_cli("dark_decay", make_ramp(), "--override-darkdecaysignal", ref)
    assert run.status != 0
    assert len(run.errors) == 1 and "no entry for detector WFI01" in run.errors[0]
    assert "Traceback" not in run.err


# ----------------------------------------------------------------- vs romancal 1.1


def test_matches_romancal_full_frame(tmp_path):
    """Same ramp, same reference: romancal 1.1's step and ours agree exactly."""
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    official = pytest.importorskip("romancal.dark_decay")
    pattern = [[1], [2, 3]]
    theirs = rdm.RampModel.create_fake_data(shape=(2, 4096, 4096))
    theirs.meta.instrument.detector = "WFI03"  # sca % 3 == 0: columns flipped
    theirs.meta.exposure.frame_time = FRAME_TIME
    theirs.meta.exposure.read_pattern = pattern
    rng = np.random.default_rng(0)
    theirs.data = rng.normal(500.0, 5.0, (2, 4096, 4096)).astype(np.float32)
    ref = rdm.DarkdecaysignalRefModel.create_fake_data()
    ref.decay_table["WFI03"] = {"amplitude": 3.0, "time_constant": 17.0}
    ref_path = str(tmp_path / "decay.asdf")
    ref.save(ref_path)
    ours = datamodels.RampModel.create_fake_data(shape=(2, 4, 4))
    ours.meta.instrument.detector = "WFI03"
    ours.meta.exposure.frame_time = FRAME_TIME
    ours.meta.exposure.read_pattern = pattern
    ours.data = theirs.data.copy()
    result = official.DarkDecayStep.call(theirs, override_darkdecaysignal=ref_path)
    DarkDecayStep.call(ours, override_darkdecaysignal=ref_path)
    np.testing.assert_array_equal(ours.data, result.data)
    assert not np.array_equal(ours.data, theirs.data * 0 + 500.0)
    # the same on WFI01 (rows flipped), at the array level
    a = theirs.data[:1].copy() * 0
    b = a.copy()
    from romancal.dark_decay.dark_decay import subtract_dark_decay as theirs_fn

    theirs_fn(a, 2.0, 30.0, FRAME_TIME, [[1, 2, 3]], 1)
    subtract_dark_decay(b, 2.0, 30.0, FRAME_TIME, [[1, 2, 3]], 1)
    np.testing.assert_array_equal(a, b)
    assert read_time_period(FRAME_TIME, 1).shape == (4096, 256)
