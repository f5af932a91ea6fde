"""Tests of the refpix step: hand-computed cases, flags, layouts, validation, real data."""

from __future__ import annotations

import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from romancal_lite import datamodels
from romancal_lite.errors import ConfigError, InputFileError
from romancal_lite.steps.refpix import RefPixStep, correct_reference_pixels
from romancal_lite.steps.refpix.correction import usable_reference_mask
from romancore.dqflags import pixel

REF = np.uint32(pixel.REFERENCE_PIXEL)
DNU = np.uint32(pixel.DO_NOT_USE)
BAD_REF = np.uint32(pixel.BAD_REF_PIXEL)
B = 4  # reference border width
CW = 128  # channel width
STRIP = Path("/work/shared/data/romanisim_l1_strip_wfi02_ma109.asdf")
RNG_SEED = 20240917


def border_dq(ny, nx, *, left=True, right=True, top=True, bottom=True):
    dq = np.zeros((ny, nx), dtype=np.uint32)
    if top:
        dq[:B] |= REF
    if bottom:
        dq[-B:] |= REF
    if left:
        dq[:, :B] |= REF
    if right:
        dq[:, -B:] |= REF
    return dq


def science_signal(n, ny, nx, rng):
    """Integer-valued sky + sources, zero in the reference border (exact in float32)."""
    sig = np.zeros((n, ny, nx), dtype=np.float32)
    sig[:, B:-B, B:-B] = rng.integers(0, 500, (n, ny - 2 * B, nx - 2 * B))
    return sig


def offset_pattern(n, nx):
    """offset[k, x]: differs per resultant, channel and column parity (exact in float32)."""
    k = np.arange(n)[:, None]
    x = np.arange(nx)[None, :]
    return (1000.0 + 10.0 * k + 3.0 * (x // CW) + 0.5 * (x % 2)).astype(np.float32)


# ------------------------------------------------------------------ part 2: channel offsets


def test_channel_offsets_with_odd_even_columns_removed_exactly():
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 3, 40, 256
    sig = science_signal(n, ny, nx, rng)
    data = sig + offset_pattern(n, nx)[:, None, :]
    report = correct_reference_pixels(data, border_dq(ny, nx))
    np.testing.assert_array_equal(data, sig)
    assert report.sides == ("left", "right")
    assert report.uncorrected == ()
    assert not report.amp33_used


def test_without_odd_even_columns_one_offset_per_channel():
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 2, 40, 256
    sig = science_signal(n, ny, nx, rng)
    data = sig + offset_pattern(n, nx)[:, None, :]
    correct_reference_pixels(data, border_dq(ny, nx), odd_even_columns=False,
                             use_side_ref_pixels=False)
    # the channel mean of the parity offsets (0 and 0.5) is 0.25: +-0.25 is left
    parity = np.where(np.arange(nx) % 2, 0.25, -0.25).astype(np.float32)
    np.testing.assert_array_equal(data, sig + parity)


def test_top_and_bottom_means_are_averaged():
    n, ny, nx = 1, 40, 128
    data = np.zeros((n, ny, nx), dtype=np.float32)
    data[:, :B] = 10.0  # top rows
    data[:, -B:] = 20.0  # bottom rows
    correct_reference_pixels(data, border_dq(ny, nx), use_side_ref_pixels=False)
    np.testing.assert_array_equal(data[0, B:-B], -15.0)


def test_discretization_bias_is_removed():
    # seeds/000:698-708: bias = -0.5 - 0.5 (N - 1) / N per resultant, the same in
    # reference and science pixels, so subtracting the reference level removes it
    rng = np.random.default_rng(RNG_SEED)
    n_reads = np.array([1, 2, 3, 4, 6, 6, 6, 6, 5, 1])  # MA table 109
    n, ny, nx = len(n_reads), 40, 128
    bias = (-0.5 - 0.5 * (n_reads - 1) / n_reads).astype(np.float32)
    sig = science_signal(n, ny, nx, rng)
    data = sig + bias[:, None, None]
    correct_reference_pixels(data, border_dq(ny, nx))
    np.testing.assert_allclose(data, sig, atol=1e-4)


# ------------------------------------------------------------------ part 3: side columns


def row_pattern(ny, amplitude=20.0, period=400.0):
    return (amplitude * np.sin(2 * np.pi * np.arange(ny) / period + 0.3)).astype(np.float32)


def test_row_pattern_removed_to_smoothing_accuracy():
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 2, 512, 256
    sig = science_signal(n, ny, nx, rng)
    pattern = row_pattern(ny)
    data = sig + offset_pattern(n, nx)[:, None, :] + pattern[None, :, None]
    only_offsets = data.copy()
    correct_reference_pixels(data, border_dq(ny, nx))
    # running median of 11 rows on a 400-row sine of amplitude 20: error < 20 (1 - cos(2 pi
    # 3 / 400)) ~ 0.05 at the extrema; with mirrored ends a monotonic signal is followed
    # exactly from the 4th row on, so the science rows are all within that
    np.testing.assert_allclose(data[:, B:-B], sig[:, B:-B], atol=0.06)
    correct_reference_pixels(only_offsets, border_dq(ny, nx), use_side_ref_pixels=False)
    assert np.abs(only_offsets - sig).max() > 10


def test_side_gain_scales_the_row_signal():
    n, ny, nx = 1, 200, 128
    pattern = np.linspace(-5.0, 5.0, ny, dtype=np.float32)  # linear: exact under a median
    data = np.broadcast_to(pattern[None, :, None], (n, ny, nx)).copy()
    correct_reference_pixels(data, border_dq(ny, nx, right=False), side_gain=0.5)
    # the top/bottom mean of a linear ramp is 0, half of the row signal is left
    np.testing.assert_allclose(data[0, B:-B, 64], 0.5 * pattern[B:-B], atol=1e-5)


def test_smoothing_length_one_follows_every_row():
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 1, 64, 128
    noise = rng.normal(0.0, 3.0, ny).astype(np.float32)
    data = np.broadcast_to(noise[None, :, None], (n, ny, nx)).copy()
    correct_reference_pixels(data, border_dq(ny, nx), side_smoothing_length=1)
    np.testing.assert_allclose(data, 0.0, atol=1e-5)


def test_strip_layout_uses_left_columns_only():
    # the real strip: a left border only; its last 4 columns are science pixels
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 2, 512, 128
    sig = science_signal(n, ny, nx, rng)
    sig[:, B:-B, -B:] += 3000.0  # a bright source in the last columns must not matter
    pattern = row_pattern(ny)
    data = sig + offset_pattern(n, nx)[:, None, :] + pattern[None, :, None]
    dq = border_dq(ny, nx, right=False)
    dq[:B, -B:] |= REF  # corners only: not a side of reference columns
    report = correct_reference_pixels(data, dq)
    assert report.sides == ("left",)
    np.testing.assert_allclose(data[:, B:-B], sig[:, B:-B], atol=0.06)


def test_no_side_reference_columns_means_offsets_only():
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 2, 64, 256
    data = science_signal(n, ny, nx, rng) + rng.normal(0, 5, (n, ny, nx)).astype(np.float32)
    dq = border_dq(ny, nx, left=False, right=False)
    a, b = data.copy(), data.copy()
    report = correct_reference_pixels(a, dq)
    correct_reference_pixels(b, dq, use_side_ref_pixels=False)
    assert report.sides == ()
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ flags and robustness


def test_flagged_and_nonfinite_reference_pixels_are_ignored():
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 2, 512, 256
    sig = science_signal(n, ny, nx, rng)
    data = sig + offset_pattern(n, nx)[:, None, :]
    dq = border_dq(ny, nx)
    dq[1, 10] |= BAD_REF
    dq[-2, 200:203] |= DNU
    dq[100:110, 2] |= BAD_REF  # left side
    dq[300:330, -4:] |= DNU  # whole rows of the right side
    bad = (slice(None), [1, ny - 2, ny - 2, ny - 2] + list(range(100, 110)),
           [10, 200, 201, 202] + [2] * 10)
    data[bad] = 1e6
    data[bad[0], 300:330, -4:] = -1e6
    data[0, 2, 77] = np.nan  # an unflagged NaN reference pixel is skipped too
    report = correct_reference_pixels(data, dq)
    assert report.uncorrected == ()
    science = (slice(None), slice(B, -B), slice(B, -B))
    np.testing.assert_allclose(data[science], sig[science], atol=1e-3)


def test_channel_without_usable_reference_pixels_is_left_and_reported(caplog):
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 2, 40, 256
    sig = science_signal(n, ny, nx, rng)
    data = sig + offset_pattern(n, nx)[:, None, :]
    dq = border_dq(ny, nx, left=False, right=False)
    dq[:B, CW:] |= DNU
    dq[-B:, CW:] |= BAD_REF
    expected = data.copy()
    expected[:, :, :CW] = sig[:, :, :CW]
    report = correct_reference_pixels(data, dq)
    assert report.uncorrected == ((0, 1), (1, 1))
    np.testing.assert_array_equal(data, expected)

    model = datamodels.RampModel.create_fake_data(shape=(n, ny, nx))
    model.data[...] = sig + offset_pattern(n, nx)[:, None, :]
    model.pixeldq[...] = dq
    with caplog.at_level(logging.WARNING):
        RefPixStep.call(model)
    assert "channels [1]" in caplog.text


def test_parity_without_usable_pixels_takes_the_channel_mean():
    n, ny, nx = 1, 40, 128
    data = np.zeros((n, ny, nx), dtype=np.float32)
    data[:, :, 0::2] = 4.0
    data[:, :, 1::2] = 2.0
    dq = border_dq(ny, nx, left=False, right=False)
    dq[:B, 0::2] |= DNU
    dq[-B:, 0::2] |= DNU
    correct_reference_pixels(data, dq)
    # only odd columns are usable: both parities get their mean, 2
    np.testing.assert_array_equal(data[0, 5, :4], [2.0, 0.0, 2.0, 0.0])


def test_usable_reference_mask():
    dq = np.array([0, REF, REF | pixel.DO_NOT_USE, REF | pixel.BAD_REF_PIXEL,
                   REF | pixel.HOT, pixel.DO_NOT_USE], dtype=np.uint32)
    np.testing.assert_array_equal(usable_reference_mask(dq),
                                  [False, True, False, False, True, False])


def test_corrects_a_non_contiguous_view_in_place():
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 2, 40, 256
    sig = science_signal(n, ny, nx, rng)
    parent = np.zeros((n, ny, 2 * nx), dtype=np.float32)
    view = parent[:, :, ::2]
    view[...] = sig + offset_pattern(n, nx)[:, None, :]
    correct_reference_pixels(view, border_dq(ny, nx))
    np.testing.assert_array_equal(parent[:, :, ::2], sig)
    assert not parent[:, :, 1::2].any()


def test_no_plane_sized_temporaries():
    n, ny, nx = 2, 1024, 512
    data = np.random.default_rng(RNG_SEED).normal(1000, 5, (n, ny, nx)).astype(np.float32)
    dq = border_dq(ny, nx)
    amp33 = np.full((n, ny, CW), 3000, dtype=np.uint16)
    tracemalloc.start()
    try:
        correct_reference_pixels(data, dq, amp33, use_amp33=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < data[0].nbytes / 4


# ------------------------------------------------------------------ amp33


def test_amp33_common_mode_is_removed():
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 2, 256, 256
    sig = science_signal(n, ny, nx, rng)
    common = rng.integers(-8, 9, (n, ny)).astype(np.float32)  # white: no median removes it
    data = sig + offset_pattern(n, nx)[:, None, :] + common[:, :, None]
    amp33 = (3000 + common[:, :, None] + np.arange(CW)[None, None, :] % 3).astype(np.uint16)
    with_amp33 = data.copy()
    report = correct_reference_pixels(with_amp33, border_dq(ny, nx), amp33, use_amp33=True)
    assert report.amp33_used
    np.testing.assert_allclose(with_amp33, sig, atol=1e-3)
    correct_reference_pixels(data, border_dq(ny, nx))
    assert np.abs(data - sig).std() > 2


def test_all_zero_amp33_is_not_used():
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 2, 64, 128
    data = rng.normal(1000, 5, (n, ny, nx)).astype(np.float32)
    a, b = data.copy(), data.copy()
    report = correct_reference_pixels(a, border_dq(ny, nx), np.zeros((n, ny, CW), np.uint16),
                                      use_amp33=True)
    correct_reference_pixels(b, border_dq(ny, nx))
    assert not report.amp33_used
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": np.zeros((40, 128), np.float32)}, "3-D"),
        ({"data": np.zeros((1, 40, 128), np.uint16)}, "float"),
        ({"data": np.zeros((1, 40, 100), np.float32)}, "multiple of channel_width"),
        ({"data": np.zeros((1, 8, 128), np.float32)}, "too small"),
        ({"pixeldq": np.zeros((40, 256), np.uint32)}, "pixeldq shape"),
        ({"pixeldq": np.zeros((40, 128), np.float32)}, "integer"),
        ({"amp33": np.zeros((2, 40, 128), np.uint16)}, "amp33 shape"),
        ({"use_amp33": True}, "no amp33"),
        ({"side_smoothing_length": 0}, "side_smoothing_length"),
        ({"side_smoothing_length": 2.5}, "side_smoothing_length"),
        ({"side_gain": float("nan")}, "side_gain"),
        ({"channel_width": 127, "data": np.zeros((1, 40, 127), np.float32)}, "even"),
        ({"border": 0}, "border"),
    ],
)
def test_invalid_inputs(kwargs, message):
    args = {"data": np.zeros((1, 40, 128), np.float32), **kwargs}
    data = args.pop("data")
    pixeldq = args.pop("pixeldq", np.zeros(data.shape[1:], np.uint32))
    with pytest.raises(ValueError, match=message):
        correct_reference_pixels(data, pixeldq, **args)


def test_read_only_data_rejected():
    data = np.zeros((1, 40, 128), np.float32)
    data.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        correct_reference_pixels(data, np.zeros((40, 128), np.uint32))


@pytest.mark.parametrize(
    "params",
    [{"side_smoothing_length": 0}, {"side_gain": -1.0}, {"odd_even_columns": "maybe"},
     {"no_such_parameter": 1}],
)
def test_step_parameter_validation(params):
    with pytest.raises(ConfigError):
        RefPixStep(**params)


# ------------------------------------------------------------------ the step


def test_step_defaults_and_declarations():
    assert RefPixStep.class_alias == "refpix"
    assert RefPixStep.reference_file_types == ()
    pars = RefPixStep().get_pars()
    assert {k: pars[k] for k in ("odd_even_columns", "use_side_ref_pixels",
                                 "side_smoothing_length", "side_gain", "use_amp33")} == {
        "odd_even_columns": True, "use_side_ref_pixels": True,
        "side_smoothing_length": 11, "side_gain": 1.0, "use_amp33": False}


def test_step_call_corrects_in_place_and_records_status():
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 3, 40, 256
    sig = science_signal(n, ny, nx, rng)
    model = datamodels.RampModel.create_fake_data(shape=(n, ny, nx))
    model.data[...] = sig + offset_pattern(n, nx)[:, None, :]
    model.pixeldq[...] = border_dq(ny, nx)
    data = model.data
    result = RefPixStep.call(model)
    assert result.meta.cal_step.refpix == "COMPLETE"
    assert result.data is data
    np.testing.assert_array_equal(result.data, sig)


def test_step_skip_and_wrong_model():
    model = datamodels.RampModel.create_fake_data(shape=(1, 40, 128))
    model.data[...] = 7.0
    result = RefPixStep.call(model, skip=True)
    assert result.meta.cal_step.refpix == "SKIPPED"
    assert (result.data == 7.0).all()
    with pytest.raises(InputFileError, match="pixeldq"):
        RefPixStep().run(datamodels.ImageModel.create_fake_data(shape=(40, 128)))


def test_step_bad_shapes_are_input_errors():
    model = datamodels.RampModel.create_fake_data(shape=(1, 40, 100))
    with pytest.raises(InputFileError, match="channel_width"):
        RefPixStep.call(model)


# ------------------------------------------------------------------ the real strip


@pytest.fixture(scope="module")
def strip():
    if not STRIP.is_file():
        pytest.skip(f"{STRIP} not available")
    with datamodels.open(STRIP) as raw:
        data = raw.data.astype(np.float32)
        n_reads = np.array([len(reads) for reads in raw.meta.exposure.read_pattern])
    ny, nx = data.shape[1:]
    return data, border_dq(ny, nx, right=False), n_reads


def cds_noise(data):
    """Standard deviation of consecutive-resultant differences of the science pixels.

    Values beyond 5 robust sigmas (cosmic rays, bright sources) are left out; a plain
    MAD would be quantized by the integer DN of the raw data.
    """
    diff = np.diff(data[:, B:-B, B:], axis=0).reshape(data.shape[0] - 1, -1)
    noise = []
    for d in diff.astype(np.float64):
        med = np.median(d)
        sigma = 1.4826 * np.median(np.abs(d - med))
        noise.append(d[np.abs(d - med) < 5 * sigma].std())
    return np.array(noise)


def test_real_strip_reference_pixels_are_zero_and_left_unchanged(strip):
    # romanisim 0.14 writes 0 DN in every border reference pixel (and in amp33):
    # the correction then subtracts exactly nothing
    data, dq, _ = strip
    ref = usable_reference_mask(dq)
    assert not data[:, ref].any()
    corrected = data.copy()
    report = correct_reference_pixels(corrected, dq)
    assert report.sides == ("left",)
    np.testing.assert_array_equal(corrected, data)  # so the CDS noise is unchanged too


def test_real_strip_with_injected_electronics_signal(strip):
    data, dq, n_reads = strip
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = data.shape
    ref = usable_reference_mask(dq)
    # per-resultant, per-parity offsets; a random-walk row signal (1/f^2) different in
    # every resultant; in the (noiseless) reference pixels the simulator's read noise,
    # 5 DN per read averaged over the resultant's reads
    offsets = (rng.normal(0, 50, (n, 1, 1)) + np.array([0.0, 3.0])[np.arange(nx) % 2]
               ).astype(np.float32)
    walk = np.cumsum(rng.normal(0, 0.3, (n, ny)), axis=1).astype(np.float32)
    injected = data + offsets + walk[:, :, None]
    read_noise = 5.0 / np.sqrt(n_reads)[:, None]
    injected[:, ref] += (rng.normal(0, 1, (n, int(ref.sum()))) * read_noise).astype(np.float32)

    corrected = injected.copy()
    RefPixStep.call(_ramp(corrected, dq))

    # reference pixels, per resultant (one amplifier): the channel offsets alone zero
    # the top/bottom mean exactly; the smoothed side signal then moves it by its own
    # noise at the 8 reference rows (4 noisy columns, 5 DN, median of <= 11 rows:
    # < 1 DN), while the injected offsets were ~50 DN
    offsets_only = injected.copy()
    correct_reference_pixels(offsets_only, dq, use_side_ref_pixels=False)
    assert np.abs(ref_means(offsets_only)).max() < 1e-3
    assert np.abs(ref_means(injected)).max() > 20
    assert np.abs(ref_means(corrected)).max() < 3.5
    assert np.abs(corrected[:, B:-B, :B].mean(axis=(1, 2))).max() < 0.5
    # science pixels: the injected signal is gone; the CDS noise is that of the clean
    # data plus the small row noise of a 4-column side signal (about 2 %)
    clean, before, after = cds_noise(data), cds_noise(injected), cds_noise(corrected)
    assert (after >= clean).all()
    assert (after <= 1.05 * clean).all(), (clean, after)
    assert (before > 1.5 * clean).all()
    residual = corrected[:, B:-B, B:] - data[:, B:-B, B:]
    residual -= residual.mean(axis=(1, 2), keepdims=True)
    assert residual.std() < 1.5


def ref_means(data):
    """Mean of the top and bottom reference rows of each resultant."""
    return np.concatenate([data[:, :B], data[:, -B:]], axis=1).mean(axis=(1, 2))


def _ramp(data, dq):
    model = datamodels.RampModel.create_fake_data(shape=data.shape)
    model.data = data
    model.pixeldq[...] = dq
    return model
