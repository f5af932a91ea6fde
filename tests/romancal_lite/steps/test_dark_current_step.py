"""Tests of the dark_current step: slope-image dark subtraction as in romancal 1.1."""

import numpy as np
import pytest
from astropy.time import Time

from romancal_lite import datamodels
from romancal_lite.errors import InputFileError, ReferenceFileError
from romancal_lite.references import build_reference, get_reference_file, write_reference
from romancal_lite.steps.dark_current import DarkCurrentStep, subtract_dark_current
from romancore.dqflags import pixel

SHAPE = (32, 248)


def make_image(detector="WFI01", seed=1):
    rng = np.random.default_rng(seed)
    model = datamodels.ImageModel.create_fake_data(shape=SHAPE)
    meta = model.meta
    meta.instrument.detector = detector
    meta.instrument.optical_element = "F158"
    meta.exposure.type = "WFI_IMAGE"
    meta.exposure.start_time = Time("2026-05-01T00:00:00", format="isot", scale="utc")
    model.data = rng.normal(1.0, 0.5, SHAPE).astype(np.float32)
    model.dq = np.zeros(SHAPE, np.uint32)
    model.dq[3, 4] = pixel.JUMP_DET
    model.var_poisson = rng.uniform(0.01, 0.02, SHAPE).astype(np.float32)
    model.var_rnoise = rng.uniform(0.01, 0.02, SHAPE).astype(np.float32)
    model.err = np.sqrt(model.var_poisson + model.var_rnoise)
    return model


def write_dark(path, detector="WFI01", full_shape=(40, 256), flag=None):
    node = build_reference("dark", detector, full_shape, "2020-01-01T00:00:00")
    node["dark_slope"] = np.linspace(0.0, 0.1, np.prod(full_shape), dtype=np.float32).reshape(
        full_shape
    )
    if flag is not None:
        node["dq"][flag] = pixel.HOT | pixel.DO_NOT_USE
    write_reference(path, node)
    return str(path)


def test_builtin_dark_is_subtracted(builtin_refs):
    model = make_image()
    before = model.data.copy()
    err = model.err.copy()
    var_poisson = model.var_poisson.copy()
    result = DarkCurrentStep.call(model)
    path = get_reference_file(model, "dark")
    with datamodels.open(path) as dark:
        slope = dark.dark_slope[4:-4, 4:-4]
    assert result is model
    np.testing.assert_array_equal(result.data, before - slope)
    np.testing.assert_array_equal(result.err, err)
    np.testing.assert_array_equal(result.var_poisson, var_poisson)
    assert result.dq[3, 4] == pixel.JUMP_DET
    assert result.meta.cal_step.dark == "COMPLETE"
    assert result.meta.ref_file.dark == path


def test_override_with_flags(builtin_refs, tmp_path):
    dark = write_dark(tmp_path / "dark.asdf", flag=(4 + 3, 4 + 4))
    model = make_image()
    before = model.data.copy()
    DarkCurrentStep.call(model, override_dark=dark)
    slope = datamodels.open(dark).dark_slope[4:-4, 4:-4]
    np.testing.assert_array_equal(model.data, before - slope)
    assert model.dq[3, 4] == pixel.JUMP_DET | pixel.HOT | pixel.DO_NOT_USE
    assert np.count_nonzero(model.dq) == 1


def test_matches_romancal(builtin_refs, tmp_path):
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    official = pytest.importorskip("romancal.dark_current.dark_current_step")
    dark = write_dark(tmp_path / "dark.asdf", flag=(10, 20))
    ours = make_image()
    theirs = rdm.ImageModel.create_fake_data(shape=SHAPE)
    theirs.data = ours.data.copy()
    theirs.dq = ours.dq.copy()
    theirs.meta["cal_step"] = {}
    with rdm.open(dark) as ref:
        official.subtract_dark_current(theirs, ref)
    DarkCurrentStep.call(ours, override_dark=dark)
    np.testing.assert_array_equal(ours.data, theirs.data)
    np.testing.assert_array_equal(ours.dq, theirs.dq)


def test_function_nan_and_flags():
    data = np.ones((2, 3), np.float32)
    dq = np.array([[0, 1, 0], [0, 0, 4]], np.uint32)
    slope = np.full((4, 5), 0.25, np.float32)
    slope[1, 2] = np.nan
    dark_dq = np.zeros((4, 5), np.uint32)
    dark_dq[2, 3] = pixel.HOT
    dark_dq[0, 0] = pixel.DEAD  # in the border: trimmed away
    subtract_dark_current(data, dq, slope, dark_dq, border=1)
    np.testing.assert_array_equal(data, [[0.75, np.nan, 0.75], [0.75, 0.75, 0.75]])
    np.testing.assert_array_equal(dq, [[0, 1, 0], [0, 0, 4 | pixel.HOT]])


def test_function_shape_errors():
    data = np.zeros((2, 3), np.float32)
    dq = np.zeros((2, 3), np.uint32)
    with pytest.raises(ValueError, match="dark_slope has shape"):
        subtract_dark_current(data, dq, np.zeros((2, 3), np.float32), np.zeros((2, 3), np.uint32))
    with pytest.raises(ValueError, match="data and dq"):
        subtract_dark_current(data, dq[:1], np.zeros((10, 11)), np.zeros((10, 11), np.uint32))


def test_not_applicable_skips(builtin_refs):
    model = make_image()
    before = model.data.copy()
    result = DarkCurrentStep.call(model, override_dark="N/A")
    np.testing.assert_array_equal(result.data, before)
    assert result.meta.cal_step.dark == "SKIPPED"


def test_not_applicable_skips_before_the_image_is_checked(builtin_refs, run_cli):
    # without a DARK reference there is nothing to subtract: the image is not looked
    # at (here data that is no image); with a reference, it is a one-line error
    model = make_image()
    model.data = np.zeros(7, np.float32)
    result = DarkCurrentStep.call(model, override_dark="N/A")
    assert result.meta.cal_step.dark == "SKIPPED"
    with pytest.raises(InputFileError, match="needs a 2-D slope image"):
        DarkCurrentStep.call(model)
    run = run_cli("dark_current", make_image(), "--override-dark", "N/A")
    assert run.status == 0, run.err
    assert len(run.warnings) == 1 and "DARK" in run.warnings[0], run.warnings
    (output,) = run.out.iterdir()
    with datamodels.open(output) as saved:
        assert saved.meta.cal_step.dark == "SKIPPED"
        np.testing.assert_array_equal(saved.data, make_image().data)


def test_wrong_detector(builtin_refs, tmp_path):
    dark = write_dark(tmp_path / "dark.asdf", detector="WFI02")
    with pytest.raises(ReferenceFileError, match="detector WFI02"):
        DarkCurrentStep.call(make_image(), override_dark=dark)


def test_science_shaped_dark_rejected(builtin_refs, tmp_path):
    # a dark without the reference border (science shape) does not fit
    dark = write_dark(tmp_path / "dark.asdf", full_shape=SHAPE)
    with pytest.raises(ReferenceFileError, match="shape"):
        DarkCurrentStep.call(make_image(), override_dark=dark)
