"""Tests of the refpix step: hand-computed cases, flags, layouts, validation, real data.

The correction removes only the change of the electronics signal from resultant to
resultant: every pixel keeps its mean level over the resultants (romancal 1.1's
convention, on which the official LINEARITY files are defined).  So the expected
output of an injected signal ``e_k`` is ``signal + mean_k(e_k)``, written
``sig + kept(e)`` below.
"""

from __future__ import annotations

import logging
import tracemalloc
import warnings
from pathlib import Path
from types import SimpleNamespace

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
    """offset[k, x]: differs per resultant, channel and column parity (exact in float32).

    The odd-even difference changes from resultant to resultant as well.
    """
    k = np.arange(n)[:, None]
    x = np.arange(nx)[None, :]
    return (1000.0 + 10.0 * k + 3.0 * (x // CW) + 0.5 * (x % 2) * (1 + k)).astype(np.float32)


def kept(signal):
    """What the correction leaves of an injected ``signal[k, ...]``: its mean over k."""
    return signal.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)


# ------------------------------------------------------------------ part 2: channel offsets


def test_channel_offsets_with_odd_even_columns_removed_exactly():
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 3, 40, 256
    sig = science_signal(n, ny, nx, rng)
    off = offset_pattern(n, nx)[:, None, :]
    data = sig + off
    report = correct_reference_pixels(data, border_dq(ny, nx))
    np.testing.assert_array_equal(data, sig + kept(off))
    assert report.sides == ("left", "right")
    assert report.uncorrected == ()
    assert not report.amp33_used


def test_without_odd_even_columns_one_offset_per_channel():
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 2, 40, 256
    sig = science_signal(n, ny, nx, rng)
    off = offset_pattern(n, nx)[:, None, :]
    data = sig + off
    correct_reference_pixels(data, border_dq(ny, nx), odd_even_columns=False,
                             use_side_ref_pixels=False)
    # the parity difference is 0.5 (1 + k): its change from the mean, +-0.5, is removed
    # by the channel mean only half, +-0.25 is left with the sign of the parity
    parity = np.where(np.arange(nx) % 2, 0.25, -0.25).astype(np.float32)
    step = np.array([-0.5, 0.5], dtype=np.float32)[:, None, None]
    np.testing.assert_array_equal(data, sig + kept(off) + parity * step)


def test_top_and_bottom_means_are_averaged():
    n, ny, nx = 2, 40, 128
    data = np.zeros((n, ny, nx), dtype=np.float32)
    data[0, :B], data[1, :B] = 10.0, 30.0  # top rows
    data[0, -B:], data[1, -B:] = 20.0, 60.0  # bottom rows
    correct_reference_pixels(data, border_dq(ny, nx), use_side_ref_pixels=False)
    # offsets 15 and 45, mean 30: -15 and +15 are removed
    np.testing.assert_array_equal(data[0, B:-B], 15.0)
    np.testing.assert_array_equal(data[1, B:-B], -15.0)


def test_one_resultant_is_left_unchanged():
    rng = np.random.default_rng(RNG_SEED)
    data = rng.normal(6000.0, 5.0, (1, 40, 256)).astype(np.float32)
    before = data.copy()
    report = correct_reference_pixels(data, border_dq(40, 256))
    np.testing.assert_array_equal(data, before)  # no change between resultants to remove
    assert report.sides == ("left", "right") and report.uncorrected == ()


def test_every_pixel_keeps_its_mean_level():
    # pedestal, offsets, a row signal in every resultant, amp33 and noise: the mean over
    # the resultants of every pixel is unchanged, and the differences between resultants
    # are those of the data minus its (noise-free) electronics signal
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 6, 256, 256
    pedestal = rng.normal(6000.0, 150.0, (1, ny, nx))
    ramp = np.linspace(0.0, 3000.0, n)[:, None, None] * rng.uniform(0, 1, (1, ny, nx))
    ramp[:, border_dq(ny, nx) != 0] = 0.0  # reference pixels see no light
    rows = np.cumsum(rng.normal(0.0, 0.5, (n, ny)), axis=1)[:, :, None]
    electronics = offset_pattern(n, nx)[:, None, :] + rows
    noise = rng.normal(0.0, 0.5, (n, ny, nx))
    data = (pedestal + ramp + electronics + noise).astype(np.float32)
    amp33 = (3000 + rows + rng.normal(0.0, 0.5, (n, ny, CW))).astype(np.uint16)
    mean_before = data.mean(axis=0, dtype=np.float64)
    correct_reference_pixels(data, border_dq(ny, nx), amp33, use_amp33=True)
    np.testing.assert_allclose(data.mean(axis=0, dtype=np.float64), mean_before, atol=2e-3)
    science = (slice(None), slice(B + 8, -B - 8), slice(B, -B))  # away from the ends
    step = np.diff(data[science], axis=0) - np.diff(ramp + noise, axis=0)[science]
    assert np.abs(step.mean()) < 0.01
    assert step.std() < 0.5  # the noise of the estimates, not the 10 DN offset steps


def test_discretization_bias_is_removed():
    # seeds/000:698-708: bias = -0.5 - 0.5 (N - 1) / N per resultant, the same in
    # reference and science pixels, so the reference pixels measure its change from
    # resultant to resultant; only its mean stays (a constant: no slope changes)
    rng = np.random.default_rng(RNG_SEED)
    n_reads = np.array([1, 2, 3, 4, 6, 6, 6, 6, 5, 1])  # MA table 109
    n, ny, nx = len(n_reads), 40, 128
    bias = (-0.5 - 0.5 * (n_reads - 1) / n_reads).astype(np.float32)
    sig = science_signal(n, ny, nx, rng)
    data = sig + bias[:, None, None]
    correct_reference_pixels(data, border_dq(ny, nx))
    np.testing.assert_allclose(data, sig + bias.mean(), atol=1e-4)


def test_keeps_the_level_romancal_1_1_keeps():
    # romancal 1.1's refpix (REFPIX coefficients zero, as our generated file) on the
    # same ramp: per-pixel intercept removed, per-channel trends of the reference rows
    # removed, intercept restored.  For offsets that change per resultant and channel
    # both leave pedestal + signal + the mean offset, to float32 rounding (~6000 DN
    # would separate them if ours removed the level).
    pytest.importorskip("roman_datamodels")
    refpix = pytest.importorskip("romancal.refpix.refpix")
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 4, 16, 4096  # romancal needs the full width of 32 channels
    pedestal = rng.normal(6000.0, 150.0, (1, ny, nx))
    ramp = np.arange(n)[:, None, None] * rng.uniform(0.0, 5000.0, (1, ny, nx))
    ramp[:, border_dq(ny, nx) != 0] = 0.0
    off = np.repeat(rng.normal(0.0, 20.0, (n, 1, nx // CW)), CW, axis=2)
    data = (pedestal + ramp + off).astype(np.float32)
    n_freq = ny * (CW + 12) // 2 + 1
    zeros = np.zeros((nx // CW, n_freq), dtype=np.complex64)
    coeffs = SimpleNamespace(gamma=zeros, zeta=zeros, alpha=zeros)
    model = SimpleNamespace(data=data.copy(), amp33=np.full((n, ny, CW), 5000, np.uint16),
                            pixeldq=border_dq(ny, nx), border_ref_pix_left=None,
                            border_ref_pix_right=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # its amp33 interpolation
        refpix.run_steps(model, coeffs)
    ours = data.copy()
    correct_reference_pixels(ours, border_dq(ny, nx))
    science = (slice(None), slice(B, -B), slice(B, -B))
    expected = (pedestal + ramp + off.mean(axis=0))[science]
    np.testing.assert_allclose(model.data[science], expected, atol=4e-3)
    np.testing.assert_allclose(ours[science], expected, atol=4e-3)
    np.testing.assert_allclose(ours[science], model.data[science], atol=4e-3)


# ------------------------------------------------------------------ part 3: side columns


def row_pattern(ny, amplitude=20.0, period=400.0):
    return (amplitude * np.sin(2 * np.pi * np.arange(ny) / period + 0.3)).astype(np.float32)


def time_varying_rows(ny):
    """A row signal of amplitude 20 in resultant 0 and 50 in resultant 1."""
    return np.stack([row_pattern(ny), row_pattern(ny, amplitude=50.0)])


def test_row_pattern_removed_to_smoothing_accuracy():
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 2, 512, 256
    sig = science_signal(n, ny, nx, rng)
    signal = offset_pattern(n, nx)[:, None, :] + time_varying_rows(ny)[:, :, None]
    data = sig + signal
    only_offsets = data.copy()
    correct_reference_pixels(data, border_dq(ny, nx))
    # running median of 11 rows on a 400-row sine of amplitude 15 (the change from
    # the mean): error < 15 (1 - cos(2 pi 3 / 400)) ~ 0.04 at the extrema; with mirrored
    # ends a monotonic signal is followed exactly from the 4th row on, so the science
    # rows are all within that
    np.testing.assert_allclose(data[:, B:-B], (sig + kept(signal))[:, B:-B], atol=0.06)
    correct_reference_pixels(only_offsets, border_dq(ny, nx), use_side_ref_pixels=False)
    assert np.abs(only_offsets - sig - kept(signal)).max() > 10


def test_side_gain_scales_the_row_signal():
    n, ny, nx = 2, 200, 128
    pattern = np.linspace(-5.0, 5.0, ny, dtype=np.float32)  # linear: exact under a median
    signs = np.array([-1.0, 1.0], dtype=np.float32)[:, None, None]
    data = (signs * pattern[None, :, None] * np.ones((n, ny, nx), np.float32)).copy()
    correct_reference_pixels(data, border_dq(ny, nx, right=False), side_gain=0.5)
    # the top/bottom mean of a linear ramp is 0 and the mean over the resultants is 0:
    # half of the row signal is left
    for k in range(n):
        np.testing.assert_allclose(data[k, B:-B, 64], 0.5 * signs[k, 0, 0] * pattern[B:-B],
                                   atol=1e-5)


def test_smoothing_length_one_follows_every_row():
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 3, 64, 128
    noise = rng.normal(0.0, 3.0, (n, ny)).astype(np.float32)
    data = np.broadcast_to(noise[:, :, None], (n, ny, nx)).copy()
    correct_reference_pixels(data, border_dq(ny, nx), side_smoothing_length=1)
    np.testing.assert_allclose(data, np.broadcast_to(kept(noise)[:, :, None], data.shape),
                               atol=1e-5)


def test_strip_layout_uses_left_columns_only():
    # the real strip: a left border only; its last 4 columns are science pixels
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 2, 512, 128
    sig = science_signal(n, ny, nx, rng)
    sig[:, B:-B, -B:] += 3000.0  # a bright source in the last columns must not matter
    signal = offset_pattern(n, nx)[:, None, :] + time_varying_rows(ny)[:, :, None]
    data = sig + signal
    dq = border_dq(ny, nx, right=False)
    dq[:B, -B:] |= REF  # corners only: not a side of reference columns
    report = correct_reference_pixels(data, dq)
    assert report.sides == ("left",)
    np.testing.assert_allclose(data[:, B:-B], (sig + kept(signal))[:, B:-B], atol=0.06)


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
    off = offset_pattern(n, nx)[:, None, :]
    data = sig + off
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
    np.testing.assert_allclose(data[science], (sig + kept(off))[science], atol=1e-3)


def test_channel_without_usable_reference_pixels_is_left_and_reported(caplog):
    rng = np.random.default_rng(RNG_SEED)
    n, ny, nx = 2, 40, 256
    sig = science_signal(n, ny, nx, rng)
    data = sig + offset_pattern(n, nx)[:, None, :]
    dq = border_dq(ny, nx, left=False, right=False)
    dq[:B, CW:] |= DNU
    dq[-B:, CW:] |= BAD_REF
    expected = data.copy()
    expected[:, :, :CW] = (sig + kept(offset_pattern(n, nx)[:, None, :]))[:, :, :CW]
    report = correct_reference_pixels(data, dq)
    assert report.uncorrected == ((0, 1), (1, 1))
    np.testing.assert_array_equal(data, expected)

    model = datamodels.RampModel.create_fake_data(shape=(n, ny, nx))
    model.data[...] = sig + offset_pattern(n, nx)[:, None, :]
    model.pixeldq[...] = dq
    with caplog.at_level(logging.WARNING):
        RefPixStep.call(model, algorithm="border")
    assert "channels [1]" in caplog.text


def test_parity_without_usable_pixels_takes_the_channel_mean():
    n, ny, nx = 2, 40, 128
    data = np.zeros((n, ny, nx), dtype=np.float32)
    data[0, :, 0::2], data[1, :, 0::2] = 4.0, 10.0
    data[0, :, 1::2], data[1, :, 1::2] = 2.0, 6.0
    dq = border_dq(ny, nx, left=False, right=False)
    dq[:B, 0::2] |= DNU
    dq[-B:, 0::2] |= DNU
    correct_reference_pixels(data, dq)
    # only odd columns are usable: both parities get their offsets, 2 and 6 (mean 4),
    # so -2 and +2 are removed from every column
    np.testing.assert_array_equal(data[0, 5, :4], [6.0, 4.0, 6.0, 4.0])
    np.testing.assert_array_equal(data[1, 5, :4], [8.0, 4.0, 8.0, 4.0])


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
    np.testing.assert_array_equal(parent[:, :, ::2], sig + kept(offset_pattern(n, nx)[:, None]))
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
    expected = sig + kept(offset_pattern(n, nx)[:, None, :]) + kept(common)[:, :, None]
    np.testing.assert_allclose(with_amp33, expected, atol=1e-3)
    correct_reference_pixels(data, border_dq(ny, nx))
    assert np.abs(data - expected).std() > 2


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
    assert RefPixStep.reference_file_types == ("refpix",)
    pars = RefPixStep().get_pars()
    assert pars["algorithm"] == "refpix_reference"
    assert not RefPixStep(algorithm="border").selects_references()
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
    result = RefPixStep.call(model, algorithm="border")
    assert result.meta.cal_step.refpix == "COMPLETE"
    assert result.data is data
    np.testing.assert_array_equal(result.data, sig + kept(offset_pattern(n, nx)[:, None, :]))


def test_step_skip_and_wrong_model():
    model = datamodels.RampModel.create_fake_data(shape=(1, 40, 128))
    model.data[...] = 7.0
    result = RefPixStep.call(model, skip=True)
    assert result.meta.cal_step.refpix == "SKIPPED"
    assert (result.data == 7.0).all()
    with pytest.raises(InputFileError, match="pixeldq"):
        RefPixStep(algorithm="border").run(datamodels.ImageModel.create_fake_data(shape=(40, 128)))


def test_step_bad_shapes_are_input_errors():
    model = datamodels.RampModel.create_fake_data(shape=(1, 40, 100))
    with pytest.raises(InputFileError, match="channel_width"):
        RefPixStep.call(model, algorithm="border")


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
    RefPixStep.call(_ramp(corrected, dq), algorithm="border")

    # reference pixels, per resultant (one amplifier): the channel offsets alone make
    # the top/bottom mean the same in every resultant exactly; the smoothed side signal
    # then moves it by its own noise at the 8 reference rows (4 noisy columns, 5 DN,
    # median of <= 11 rows: < 1 DN), while the injected offsets were ~50 DN
    offsets_only = injected.copy()
    correct_reference_pixels(offsets_only, dq, use_side_ref_pixels=False)

    def change(values):
        return np.abs(values - values.mean())

    assert change(ref_means(offsets_only)).max() < 1e-3
    assert change(ref_means(injected)).max() > 20
    assert change(ref_means(corrected)).max() < 3.5
    assert change(corrected[:, B:-B, :B].mean(axis=(1, 2))).max() < 0.5
    # science pixels: the injected signal is gone; the CDS noise is that of the clean
    # data plus the small row noise of a 4-column side signal (about 2 %)
    clean, before, after = cds_noise(data), cds_noise(injected), cds_noise(corrected)
    assert (after >= clean).all()
    assert (after <= 1.05 * clean).all(), (clean, after)
    assert (before > 1.5 * clean).all()
    # what is left of the injected signal is its mean over the resultants (the level)
    residual = corrected[:, B:-B, B:] - data[:, B:-B, B:]
    np.testing.assert_allclose(residual.mean(axis=0), kept(offsets + walk[:, :, None])[
        0, B:-B, B:], atol=1e-2)
    residual -= residual.mean(axis=0)
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
