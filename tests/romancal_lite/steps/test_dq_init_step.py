"""Tests of the dq_init step: raw uint16 exposure -> float32 ramp with initialised DQ."""

import hashlib

import numpy as np
import pytest
from astropy.time import Time

from romancal_lite import datamodels
from romancal_lite.errors import InputFileError, ReferenceFileError
from romancal_lite.references import get_reference_file
from romancal_lite.steps.dq_init import (
    GUIDE_STAR_TYPES,
    DQInitStep,
    border_reference_arrays,
    to_ramp_arrays,
)
from romancal_lite.steps.dq_init.dq_initialization import flag_guide_window
from romancore.dqflags import group, pixel

SMALL_SHAPE = (40, 256)  # the full read-out of the builtin_refs cache (conftest)
N_RES = 4
SHAPE = (N_RES, *SMALL_SHAPE)
AMP33_SHAPE = (N_RES, SMALL_SHAPE[0], 128)
GW = pixel.GW_AFFECTED_DATA | pixel.DO_NOT_USE
REF = pixel.REFERENCE_PIXEL
SIDES = ("left", "right", "top", "bottom")


def border_slices(b=4):
    return {
        "left": (slice(None), slice(None, b)),
        "right": (slice(None), slice(-b, None)),
        "top": (slice(None, b), slice(None)),
        "bottom": (slice(-b, None), slice(None)),
    }


def make_raw(seed=0, exposure_type="WFI_IMAGE", detector="WFI01"):
    rng = np.random.default_rng(seed)
    raw = datamodels.ScienceRawModel.create_fake_data(shape=SHAPE)
    meta = raw.meta
    meta.instrument.detector = detector
    meta.instrument.optical_element = "F158"
    meta.exposure.type = exposure_type
    meta.exposure.start_time = Time("2026-05-01T00:00:00", format="isot", scale="utc")
    meta.exposure.read_pattern = [[1], [2, 3], [4, 5, 6], [7]]
    meta.exposure.nresultants = N_RES
    meta.exposure.frame_time = 3.16247
    data = rng.integers(0, 65536, SHAPE, dtype=np.uint16)
    data[0, 0, 0], data[0, 0, 1] = 0, 65535
    raw.data = data
    raw.amp33 = rng.integers(0, 60000, AMP33_SHAPE, dtype=np.uint16)
    return raw


def set_window(model, xstart, xstop, ystart, ystop):
    gs = model.meta.guide_star
    gs.window_xstart, gs.window_xstop = xstart, xstop
    gs.window_ystart, gs.window_ystop = ystart, ystop


def write_mask(path, dq=None, shape=SMALL_SHAPE, detector="WFI01"):
    mask = datamodels.MaskRefModel.create_fake_data(shape=shape)
    mask.meta.instrument.detector = detector
    if dq is not None:
        mask.dq = dq
    mask.save(str(path))
    return str(path)


def builtin_mask(model):
    with datamodels.open(get_reference_file(model, "mask")) as mask:
        return np.array(mask.dq)


# ---------------------------------------------------------------- the step


def test_builtin_mask_conversion_and_status(builtin_refs):
    raw = make_raw()
    data = raw.data.copy()
    amp33 = raw.amp33.copy()
    ramp = DQInitStep.call(raw)
    assert isinstance(ramp, datamodels.RampModel)
    assert ramp.data.dtype == np.float32
    np.testing.assert_array_equal(ramp.data, data.astype(np.float32))
    assert ramp.data[0, 0, 0] == 0.0 and ramp.data[0, 0, 1] == 65535.0
    # the built-in MASK flags the 4-pixel border REFERENCE_PIXEL, nothing else
    expected = np.zeros(SMALL_SHAPE, np.uint32)
    for sl in border_slices().values():
        expected[sl] = REF
    assert ramp.pixeldq.dtype == np.uint32
    np.testing.assert_array_equal(ramp.pixeldq, expected)
    np.testing.assert_array_equal(ramp.pixeldq, builtin_mask(raw))
    assert ramp.groupdq.dtype == np.uint8
    np.testing.assert_array_equal(ramp.groupdq, np.zeros(SHAPE, np.uint8))
    np.testing.assert_array_equal(ramp.amp33, amp33)
    assert ramp.meta.cal_step.dq_init == "COMPLETE"
    assert ramp.meta.ref_file.mask == get_reference_file(raw, "mask")
    assert ramp.meta.model_type == "RampModel"
    assert "resultantdq" not in ramp


def test_border_arrays_are_slices_of_data_and_pixeldq(builtin_refs, tmp_path):
    rng = np.random.default_rng(3)
    dq = rng.integers(0, 2**31, SMALL_SHAPE, dtype=np.uint32)
    ramp = DQInitStep.call(make_raw(seed=3), override_mask=write_mask(tmp_path / "m.asdf", dq))
    for side, (rows, cols) in border_slices().items():
        ref = getattr(ramp, f"border_ref_pix_{side}")
        assert ref.dtype == np.float32
        np.testing.assert_array_equal(ref, ramp.data[:, rows, cols])
        refdq = getattr(ramp, f"dq_border_ref_pix_{side}")
        assert refdq.dtype == np.uint32
        np.testing.assert_array_equal(refdq, ramp.pixeldq[rows, cols])
    assert ramp.border_ref_pix_left.shape == (N_RES, SMALL_SHAPE[0], 4)
    assert ramp.border_ref_pix_top.shape == (N_RES, 4, SMALL_SHAPE[1])
    # copies, not views: later steps editing data leave the original border intact
    ramp.data[:, :4, :] += 1
    assert not np.shares_memory(ramp.border_ref_pix_top, ramp.data)
    np.testing.assert_array_equal(ramp.border_ref_pix_top, ramp.data[:, :4, :] - 1)


def test_reference_read_offset_and_resultantdq(builtin_refs):
    rng = np.random.default_rng(5)
    raw = make_raw(seed=5)
    raw.data = rng.integers(100, 60000, SHAPE, dtype=np.uint16)
    raw.reference_read = rng.integers(0, 5000, SMALL_SHAPE, dtype=np.uint16)
    raw.reference_amp33 = np.full(AMP33_SHAPE[1:], 40, np.uint16)
    raw.amp33 = rng.integers(100, 1000, AMP33_SHAPE, dtype=np.uint16)
    resultantdq = rng.integers(0, 256, SHAPE, dtype=np.uint8)
    raw.resultantdq = resultantdq
    raw.meta.instrument.data_encoding_offset = 37
    expected = (
        raw.data.astype(np.float64) + raw.reference_read.astype(np.float64)[None] - 37
    ).astype(np.float32)
    amp33 = raw.amp33.astype(np.int64) + 40 - 37
    ramp = DQInitStep.call(raw)
    np.testing.assert_array_equal(ramp.data, expected)
    np.testing.assert_array_equal(ramp.groupdq, resultantdq)
    assert ramp.groupdq.dtype == np.uint8
    assert not np.shares_memory(ramp.groupdq, resultantdq)
    np.testing.assert_array_equal(ramp.amp33, amp33)
    assert ramp.amp33.dtype == np.uint16
    for name in ("resultantdq", "reference_read", "reference_amp33"):
        assert name not in ramp
    np.testing.assert_array_equal(ramp.border_ref_pix_left, expected[:, :, :4])


def test_encoding_offset_below_zero_amp33_is_clipped(builtin_refs):
    raw = make_raw()
    raw.amp33 = np.full(AMP33_SHAPE, 5, np.uint16)
    raw.meta.instrument.data_encoding_offset = 10
    ramp = DQInitStep.call(raw)
    # romancal wraps the uint16 (65531); we clip at 0 (see test_matches_romancal)
    np.testing.assert_array_equal(ramp.amp33, 0)
    np.testing.assert_array_equal(ramp.data, raw.data.astype(np.float32) - 10)


def test_override_mask_is_ored(builtin_refs, tmp_path):
    dq = np.zeros(SMALL_SHAPE, np.uint32)
    dq[10, 11] = pixel.HOT | pixel.DO_NOT_USE
    dq[0, :] = pixel.DEAD
    path = write_mask(tmp_path / "mask.asdf", dq)
    raw = make_raw()
    raw.resultantdq = np.zeros(SHAPE, np.uint8)
    ramp = DQInitStep.call(raw, override_mask=path)
    np.testing.assert_array_equal(ramp.pixeldq, dq)
    assert ramp.meta.ref_file.mask == path
    assert ramp.meta.cal_step.dq_init == "COMPLETE"


def test_ramp_input_is_updated_not_converted(builtin_refs):
    raw = make_raw()
    ramp = DQInitStep.call(raw)
    ramp.pixeldq[20, 30] = pixel.HOT
    data = ramp.data.copy()
    again = DQInitStep.call(ramp)
    assert again is ramp
    np.testing.assert_array_equal(again.data, data)
    assert again.pixeldq[20, 30] == pixel.HOT
    assert again.pixeldq[0, 0] == REF


def test_not_applicable_mask_skips(builtin_refs):
    raw = make_raw()
    ramp = DQInitStep.call(raw, override_mask="N/A")
    assert isinstance(ramp, datamodels.RampModel)
    assert ramp.meta.cal_step.dq_init == "SKIPPED"
    np.testing.assert_array_equal(ramp.pixeldq, np.zeros(SMALL_SHAPE, np.uint32))
    np.testing.assert_array_equal(ramp.data, raw.data.astype(np.float32))
    assert ramp.meta.ref_file.mask == "N/A"


def test_not_applicable_via_the_runner_one_warning(builtin_refs, run_cli):
    run = run_cli("dq_init", make_raw(), "--override-mask", "N/A")
    assert run.status == 0, run.err
    assert len(run.warnings) == 1 and "MASK" in run.warnings[0], run.warnings
    (output,) = run.out.iterdir()
    with datamodels.open(output) as saved:
        assert saved.meta.cal_step.dq_init == "SKIPPED"
        assert not saved.pixeldq.any()


def test_two_dimensional_input_rejected(builtin_refs):
    raw = make_raw()
    raw.data = np.zeros(SMALL_SHAPE, np.uint16)
    with pytest.raises(InputFileError, match="3-D") as info:
        DQInitStep.call(raw)
    assert "\n" not in str(info.value)
    assert "(40, 256)" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"shape": (32, 248)}, "shape"), ({"detector": "WFI02"}, "WFI02")],
    ids=["shape", "detector"],
)
def test_unfit_mask_rejected(builtin_refs, tmp_path, kwargs, match):
    path = write_mask(tmp_path / "mask.asdf", **kwargs)
    with pytest.raises(ReferenceFileError, match=match):
        DQInitStep.call(make_raw(), override_mask=path)


def test_missing_override_rejected(builtin_refs, tmp_path):
    with pytest.raises(ReferenceFileError, match=r"override_mask: .*nope\.asdf: no such file"):
        DQInitStep.call(make_raw(), override_mask=str(tmp_path / "nope.asdf"))


# ---------------------------------------------------------------- guide window


def test_guide_window_flagged(builtin_refs):
    raw = make_raw()
    set_window(raw, 100, 120, 10, 14)
    ramp = DQInitStep.call(raw)
    gw = (ramp.pixeldq & GW) == GW
    expected = np.zeros(SMALL_SHAPE, bool)
    expected[10:14, 100:120] = True
    np.testing.assert_array_equal(gw, expected)
    assert not np.any(ramp.pixeldq[~expected] & GW)
    # only the pixel DQ: the resultants and their DQ are untouched
    np.testing.assert_array_equal(ramp.groupdq, 0)


def test_guide_window_expanded_and_clipped(builtin_refs):
    raw = make_raw()
    set_window(raw, 250, 254, 1, 3)
    ramp = DQInitStep.call(raw, expand_gw_flagging=3)
    expected = np.zeros(SMALL_SHAPE, bool)
    expected[0:6, 247:256] = True
    np.testing.assert_array_equal((ramp.pixeldq & GW) == GW, expected)
    np.testing.assert_array_equal((ramp.pixeldq & GW) != 0, expected)


@pytest.mark.parametrize(
    "window",
    [(-999999, -999999, -999999, -999999), (256, 300, 1, 3), (10, 20, 40, 45), (10, 10, 1, 3)],
    ids=["default", "beyond_x", "beyond_y", "empty"],
)
def test_guide_window_off_array_not_flagged(builtin_refs, window):
    raw = make_raw()
    set_window(raw, *window)
    ramp = DQInitStep.call(raw, expand_gw_flagging=2)
    assert not np.any(ramp.pixeldq & GW)


def test_guide_window_on_border_reaches_border_dq(builtin_refs):
    # the border DQ copies are taken after the guide window is flagged (as romancal)
    raw = make_raw()
    set_window(raw, 0, 10, 2, 8)
    ramp = DQInitStep.call(raw)
    assert ramp.pixeldq[2, 0] == REF | GW
    for side, (rows, cols) in border_slices().items():
        np.testing.assert_array_equal(
            getattr(ramp, f"dq_border_ref_pix_{side}"), ramp.pixeldq[rows, cols]
        )


def test_flag_guide_window_function():
    dq = np.full((6, 8), pixel.HOT, np.uint32)
    assert flag_guide_window(dq, (2, 4, 1, 3), expand=1)
    expected = np.full((6, 8), pixel.HOT, np.uint32)
    expected[0:4, 1:5] |= np.uint32(GW)
    np.testing.assert_array_equal(dq, expected)
    assert not flag_guide_window(dq, (8, 9, 0, 1))
    assert not flag_guide_window(dq, (-1, 2, 0, 1))
    np.testing.assert_array_equal(dq, expected)


# ---------------------------------------------------------------- guide-star exposures


def test_guide_star_types_are_the_seed_list():
    assert GUIDE_STAR_TYPES == {
        "WFI_WIM_ACQ",
        "WFI_WIM_TRACK",
        "WFI_WSM_ACQ1",
        "WFI_WSM_ACQ2",
        "WFI_WSM_TRACK",
    }


@pytest.mark.parametrize("exposure_type", ["WFI_WIM_ACQ", "WFI_WSM_TRACK"])
def test_guide_star_mask_goes_into_dq(builtin_refs, exposure_type):
    raw = make_raw(exposure_type=exposure_type)
    data = raw.data.copy()
    set_window(raw, 100, 120, 10, 14)
    result = DQInitStep.call(raw)
    assert result is raw
    assert isinstance(result, datamodels.ScienceRawModel)
    assert result.data.dtype == np.uint16
    np.testing.assert_array_equal(result.data, data)
    assert result.dq.dtype == np.uint32
    np.testing.assert_array_equal(result.dq, builtin_mask(raw))
    assert "pixeldq" not in result and "groupdq" not in result


def test_guide_star_existing_dq_kept(builtin_refs):
    raw = make_raw(exposure_type="WFI_WIM_TRACK")
    raw.dq = np.zeros(SMALL_SHAPE, np.uint32)
    raw.dq[20, 20] = pixel.HOT
    result = DQInitStep.call(raw)
    assert result.dq[20, 20] == pixel.HOT
    assert result.dq[0, 0] == REF
    assert np.count_nonzero(result.dq) == np.count_nonzero(builtin_mask(raw)) + 1


def test_guide_star_not_applicable_mask_skips(builtin_refs):
    # a guide-star exposure already held in a ramp model (it has meta.cal_step)
    ramp = DQInitStep.call(make_raw(), override_mask="N/A")
    ramp.meta.exposure.type = "WFI_WIM_ACQ"
    ramp.meta.cal_step.dq_init = "INCOMPLETE"
    result = DQInitStep.call(ramp, override_mask="N/A")
    assert result.meta.cal_step.dq_init == "SKIPPED"
    assert "dq" not in result


# ---------------------------------------------------------------- array functions


def test_to_ramp_arrays_defaults_and_errors():
    raw = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    data, pixeldq, groupdq = to_ramp_arrays(raw)
    np.testing.assert_array_equal(data, raw)
    assert (data.dtype, pixeldq.dtype, groupdq.dtype) == (np.float32, np.uint32, np.uint8)
    assert pixeldq.shape == (3, 4) and not pixeldq.any()
    assert groupdq.shape == (2, 3, 4) and not groupdq.any()
    data, _, _ = to_ramp_arrays(raw, encoding_offset=1.5)
    np.testing.assert_array_equal(data, raw.astype(np.float32) - 1.5)
    with pytest.raises(ValueError, match="3-D"):
        to_ramp_arrays(raw[0])
    with pytest.raises(ValueError, match="MASK dq"):
        to_ramp_arrays(raw, np.zeros((3, 5), np.uint32))
    with pytest.raises(ValueError, match="reference_read"):
        to_ramp_arrays(raw, reference_read=np.zeros((4, 3), np.uint16))
    with pytest.raises(ValueError, match="resultantdq"):
        to_ramp_arrays(raw, resultantdq=np.zeros((1, 3, 4), np.uint8))


def test_border_reference_arrays_function():
    data = np.arange(2 * 10 * 12, dtype=np.float32).reshape(2, 10, 12)
    dq = np.arange(10 * 12, dtype=np.uint32).reshape(10, 12)
    arrays = border_reference_arrays(data, dq)
    assert set(arrays) == {f"{p}border_ref_pix_{s}" for p in ("", "dq_") for s in SIDES}
    for side, (rows, cols) in border_slices().items():
        np.testing.assert_array_equal(arrays[f"border_ref_pix_{side}"], data[:, rows, cols])
        np.testing.assert_array_equal(arrays[f"dq_border_ref_pix_{side}"], dq[rows, cols])
        assert not np.shares_memory(arrays[f"border_ref_pix_{side}"], data)


# ---------------------------------------------------------------- romancal cross-check


def test_matches_romancal(builtin_refs, tmp_path):
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    official = pytest.importorskip("romancal.dq_init.dq_initialization")
    rng = np.random.default_rng(11)
    data = rng.integers(0, 60000, SHAPE, dtype=np.uint16)
    amp33 = rng.integers(0, 60000, AMP33_SHAPE, dtype=np.uint16)
    amp33[0, 0, :5] = 0  # below the encoding offset: the uint16 difference below
    resultantdq = rng.integers(0, 256, SHAPE, dtype=np.uint8)
    reference_read = rng.integers(0, 5000, SMALL_SHAPE, dtype=np.uint16)
    reference_amp33 = rng.integers(0, 5000, AMP33_SHAPE[1:], dtype=np.uint16)
    reference_amp33[0, :5] = 0
    mask_dq = rng.integers(0, 2**32, SMALL_SHAPE, dtype=np.uint32)
    mask_dq &= ~np.uint32(GW)  # so the guide-window flags show
    offset, expand = 9, 2
    window = (20, 30, 5, 9)  # x inside the 40 rows romancal clips x against

    ours = make_raw()
    theirs = rdm.ScienceRawModel.create_fake_data(shape=SHAPE)
    for model in (ours, theirs):
        model.data = data.copy()
        model.amp33 = amp33.copy()
        model.resultantdq = resultantdq.copy()
        model.reference_read = reference_read.copy()
        model.reference_amp33 = reference_amp33.copy()
        model.meta.instrument.data_encoding_offset = offset
        set_window(model, *window)
    mask = rdm.MaskRefModel.create_fake_data(shape=SMALL_SHAPE)
    mask.dq = mask_dq.copy()
    expected = official.do_dqinit(theirs, mask, expand_gw_flagging=expand)
    result = DQInitStep.call(
        ours,
        override_mask=write_mask(tmp_path / "mask.asdf", mask_dq),
        expand_gw_flagging=expand,
    )
    assert expected.meta.cal_step.dq_init == result.meta.cal_step.dq_init == "COMPLETE"
    np.testing.assert_array_equal(result.data, expected.data)
    np.testing.assert_array_equal(result.groupdq, expected.groupdq)
    # romancal quirk: it also sets GW_AFFECTED_DATA on every row of the window's
    # columns (the x range), not only inside the window; we flag the window only.
    columns = np.zeros(SMALL_SHAPE, np.uint32)
    columns[:, window[0] : window[1]] = pixel.GW_AFFECTED_DATA
    assert np.any(result.pixeldq != expected.pixeldq)
    np.testing.assert_array_equal(result.pixeldq | columns, expected.pixeldq)
    for side, (rows, cols) in border_slices().items():
        name = f"border_ref_pix_{side}"
        np.testing.assert_array_equal(getattr(result, name), getattr(expected, name))
        # the same quirk reaches the top and bottom border DQ copies
        np.testing.assert_array_equal(
            getattr(result, f"dq_{name}") | columns[rows, cols], getattr(expected, f"dq_{name}")
        )
    # amp33 below the encoding offset: romancal wraps the uint16, we clip at 0
    low = (amp33.astype(np.int64) + reference_amp33[None]) < offset
    assert low.sum() == 5
    np.testing.assert_array_equal(result.amp33[low], 0)
    np.testing.assert_array_equal(
        expected.amp33[low], (amp33[low].astype(np.int64) + 65536 - offset).astype(np.uint16)
    )
    np.testing.assert_array_equal(result.amp33[~low], expected.amp33[~low])


# ---------------------------------------------------------------- a ramp as input


def _saved_ramp(tmp_path, name="r0000101001001001001_0001_wfi01_dqinit.asdf"):
    ramp = DQInitStep.call(make_raw())
    path = tmp_path / name
    ramp.save(str(path))
    return path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_memory_mapped_ramp_is_copied_never_written(builtin_refs, tmp_path):
    # A ramp opened memory-mapped has read-only arrays: they are copied before the
    # MASK is OR-ed in (this crashed with "output array is read-only"), the file is
    # untouched, and the result equals that of the same ramp in memory.
    path = _saved_ramp(tmp_path)
    before = _digest(path)
    with datamodels.open(path, memmap=True) as mapped:
        assert not mapped.pixeldq.flags.writeable
        hot = np.zeros(SMALL_SHAPE, np.uint32)
        hot[20, 30] = pixel.HOT
        mask = write_mask(tmp_path / "mask.asdf", hot)
        result = DQInitStep.call(mapped, override_mask=mask)
        assert result is mapped and result.meta.cal_step.dq_init == "COMPLETE"
        assert result.pixeldq.flags.writeable
        assert result.pixeldq[20, 30] == pixel.HOT
    with datamodels.open(path) as in_memory:
        again = DQInitStep.call(in_memory, override_mask=mask)
        np.testing.assert_array_equal(again.pixeldq, result.pixeldq)
        np.testing.assert_array_equal(again.data, result.data)
    assert _digest(path) == before


def test_ramp_input_offsets_not_applied_twice_and_arrays_completed(builtin_refs):
    raw = make_raw()
    raw.meta.instrument.data_encoding_offset = 7
    ramp = DQInitStep.call(raw)
    data = ramp.data.copy()
    # other dtypes of the same values are converted; missing arrays are created
    ramp.data = data.astype(np.float64)
    ramp.groupdq = np.zeros(SHAPE, np.int64)
    ramp.groupdq[1, 3, 5] = 4
    for name in [n for n in ramp if "border_ref_pix" in n]:
        delattr(ramp, name)
    out = DQInitStep.call(ramp)
    np.testing.assert_array_equal(out.data, data)  # the offset is not subtracted again
    assert out.data.dtype == np.float32 and out.groupdq.dtype == np.uint8
    assert out.groupdq[1, 3, 5] == 4
    arrays = border_reference_arrays(out.data, out.pixeldq)
    for name, array in arrays.items():
        np.testing.assert_array_equal(getattr(out, name), array, err_msg=name)


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("groupdq", np.full(SHAPE, 300, np.int32), "outside the uint8"),
        ("pixeldq", np.full(SMALL_SHAPE, -1, np.int64), "outside the uint32"),
        ("data", np.zeros(SHAPE, np.complex64), "not real numbers"),
        ("groupdq", np.zeros(SHAPE, np.float32), "not DQ flags"),
        ("pixeldq", np.zeros((3, 3), np.uint32), "pixeldq has shape"),
    ],
)
def test_unusable_ramp_arrays_rejected(builtin_refs, name, value, match):
    ramp = DQInitStep.call(make_raw())
    setattr(ramp, name, value)
    with pytest.raises(InputFileError, match=match):
        DQInitStep.call(ramp)


def _cal_arrays(path):
    with datamodels.open(path) as cal:
        assert cal.meta.cal_step.ramp_fit == "COMPLETE"
        return {n: np.array(getattr(cal, n)) for n in ("data", "dq", "err", "var_rnoise")}


def _assert_same_cal(a, b):
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


#: the test exposures have no pointing: no WCS (assign_wcs skipped)
ELP_ARGS = ("--override-distortion", "N/A", "--builtin-references")


def test_roman_elp_runs_on_a_ramp_file(builtin_refs, run_cli):
    # The raw exposure through roman_elp, saving the dq_init and linearity ramps; the
    # pipeline on either ramp file (runner) gives the same calibrated image, runs only
    # the steps the ramp has not had, and leaves the ramp file untouched.
    first = run_cli("roman_elp", make_raw(), *ELP_ARGS,
                    "--steps.dq_init.save_results", "true",
                    "--steps.linearity.save_results", "true")
    assert first.status == 0, first.err
    names = {p.name.rsplit("_", 1)[-1]: p for p in first.out.iterdir()}
    # no distortion (N/A): no WCS, hence no _wcs product, but a catalog and its map
    assert set(names) == {"dqinit.asdf", "linearity.asdf", "cal.asdf", "cat.parquet",
                          "segm.asdf"}
    expected = _cal_arrays(names["cal.asdf"])
    for kind, repeated in (("dqinit.asdf", True), ("linearity.asdf", False)):
        ramp_file = names[kind]
        before = _digest(ramp_file)
        run = run_cli("roman_elp", str(ramp_file), *ELP_ARGS)
        assert run.status == 0 and not run.errors, run.err
        assert "Traceback" not in run.err
        (cal,) = (p for p in run.out.iterdir() if p.name.endswith("_cal.asdf"))
        assert cal.name == "r0000101001001001001_0001_wfi01_cal.asdf"
        _assert_same_cal(_cal_arrays(cal), expected)
        assert ("Step linearity running" in run.err) is repeated
        assert ("linearity already applied" in run.err) is not repeated
        assert "Step dq_init running" in run.err
        assert _digest(ramp_file) == before
        with datamodels.open(cal) as image:
            for step in ("dq_init", "saturation", "linearity", "ramp_fit", "photom"):
                assert image.meta.cal_step[step] == "COMPLETE", step


def test_roman_elp_python_api_on_ramps(builtin_refs, tmp_path):
    from romancal_lite.pipeline import ExposurePipeline

    pars = {"override_distortion": "N/A"}
    expected = ExposurePipeline.call(make_raw(), **pars)
    path = _saved_ramp(tmp_path)
    before = _digest(path)
    # a file name, and a model the caller opened memory-mapped (read-only arrays)
    from_path = ExposurePipeline.call(str(path), **pars)
    with datamodels.open(path, memmap=True) as mapped:
        from_mapped = ExposurePipeline.call(mapped, **pars)
    for image in (from_path, from_mapped):
        assert isinstance(image, datamodels.ImageModel)
        for name in ("data", "dq", "err", "var_rnoise"):
            np.testing.assert_array_equal(getattr(image, name), getattr(expected, name),
                                          err_msg=name)
    assert _digest(path) == before
    # the result of a file input no longer depends on the (closed) file
    np.testing.assert_array_equal(from_path.border_ref_pix_left, expected.border_ref_pix_left)


def test_roman_elp_ramp_with_nan_resultants(builtin_refs, tmp_path, run_cli):
    # A float ramp file with NaN / infinite resultants: flagged and fitted around, the
    # same image as with those resultants flagged DO_NOT_USE.
    ramp = DQInitStep.call(make_raw(seed=3))
    ramp.data = np.clip(ramp.data, 0, 30000).astype(np.float32)  # unsaturated ramps
    ramp.data.sort(axis=0)
    flagged = ramp.copy()
    bad = np.zeros(SHAPE, bool)
    bad[1, 10, 20] = bad[0, 11, 40] = bad[3, 12, 60] = True
    ramp.data[bad] = [np.nan, np.inf, -np.inf]
    flagged.groupdq[bad] |= np.uint8(group.DO_NOT_USE)
    flagged.groupdq[3, 12, 60] |= np.uint8(group.AD_FLOOR)  # -inf is <= 0: A/D floor
    results = []
    for model in (ramp, flagged):
        path = tmp_path / f"{len(results)}" / "r0000101001001001001_0001_wfi01_dqinit.asdf"
        path.parent.mkdir()
        model.save(str(path))
        # the border refpix: the REFPIX algorithm would spread the random values of the
        # fake reference pixels and amp33 (thousands of DN) through the FFT weights
        run = run_cli("roman_elp", str(path), *ELP_ARGS, "--steps.refpix.algorithm", "border")
        assert run.status == 0, run.err
        results.append(_cal_arrays(next(run.out.glob("*_cal.asdf"))))
    _assert_same_cal(*results)
    assert np.all(np.isfinite(results[0]["data"][[6, 7, 8], [16, 36, 56]]))


def test_lz4_cube_converted_chunk_by_chunk(tmp_path):
    # the official Level 1 files: an lz4 cube is converted as it decompresses (chunks of
    # 4 MiB that straddle the planes here), with the same values as the whole cube
    from romancal_lite.datamodels import write_asdf_atomic

    rng = np.random.default_rng(12)
    cube = rng.integers(0, 65536, (3, 1400, 2100), dtype=np.uint16).astype(">u2")
    cube[:, :700] //= 64  # some chunks compress, some do not
    read = rng.integers(0, 3000, cube.shape[1:], dtype=np.uint16)
    path = tmp_path / "cube.asdf"
    write_asdf_atomic(path, {"cube": cube}, all_array_compression="lz4")
    with datamodels.open_asdf_file(path) as af:
        chunks = datamodels.Lz4Chunks.of(af.tree["cube"])
        assert chunks is not None and len(chunks._chunks) > 3
        assert chunks.dtype == np.dtype(">u2")
        for kwargs in ({}, {"reference_read": read, "encoding_offset": 37.0}):
            got = to_ramp_arrays(chunks, **kwargs)
            want = to_ramp_arrays(np.asarray(cube), **kwargs)
            for a, b in zip(got, want, strict=True):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(a, b)


def test_lz4_input_data_never_read_whole(builtin_refs, tmp_path, monkeypatch):
    from romancal_lite.datamodels import _blocks

    monkeypatch.setattr(_blocks, "_MIN_PARALLEL_BYTES", 0)  # the small cube too
    raw = make_raw(seed=8)
    raw.reference_read = np.random.default_rng(8).integers(0, 5000, SMALL_SHAPE, np.uint16)
    raw.meta.instrument.data_encoding_offset = 11
    path = tmp_path / "r0000101001001001001_0001_wfi01_uncal.asdf"
    raw.save(path, all_array_compression="lz4")
    want = DQInitStep.call(raw)
    loaded = []
    real = datamodels.DataModel._load_array
    monkeypatch.setattr(datamodels.DataModel, "_load_array",
                        lambda self, name, value: (loaded.append(name),
                                                   real(self, name, value))[1])
    ramp = DQInitStep.call(str(path))
    assert "data" not in loaded
    for name in ("data", "pixeldq", "groupdq", "amp33", "border_ref_pix_left"):
        np.testing.assert_array_equal(getattr(ramp, name), getattr(want, name), err_msg=name)


def test_ramp_and_groupdq_are_advised_huge_pages():
    """The fresh ramp and groupdq ask for transparent huge pages ("hg" in VmFlags): with
    4 KiB pages, the first touch of a full-frame groupdq in saturation cost ~0.8 s CPU."""
    import mmap
    import os

    if not os.path.exists("/proc/self/smaps") or not hasattr(mmap, "MADV_HUGEPAGE"):
        pytest.skip("needs Linux /proc/self/smaps and MADV_HUGEPAGE")
    from test_arrays_step import _vm_flags  # the test directory is on sys.path

    from romancal_lite.steps.dq_init.dq_initialization import to_ramp_arrays

    raw = np.arange(3 * 64 * 64, dtype=np.uint16).reshape(3, 64, 64)
    for resultantdq in (None, np.zeros(raw.shape, np.uint8)):
        data, _, groupdq = to_ramp_arrays(raw, resultantdq=resultantdq)
        assert "hg" in _vm_flags(data) and "hg" in _vm_flags(groupdq)
        np.testing.assert_array_equal(data, raw.astype(np.float32))
        assert not groupdq.any()
