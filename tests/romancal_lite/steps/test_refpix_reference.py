"""Tests of the REFPIX-reference correction (romancal 1.1's refpix algorithm).

Hand-computed cases of each part (offset, trends, amp33 interpolation, the Fourier
correction and its read-order mapping), differential tests against romancal 1.1's
``refpix.run_steps`` on the same inputs (non-zero coefficients, injected correlated
noise, bad reference pixels), the step's reference handling and fallback, and a truth
test on the simulator: the built-in REFPIX coefficients remove most of its row drift.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from romancal_lite import datamodels, simulate
from romancal_lite.errors import InputFileError, ReferenceFileError
from romancal_lite.references import build_reference, write_reference
from romancal_lite.references._content import reference_shape, refpix_drift_weights
from romancal_lite.steps.refpix import RefPixStep, correct_reference_pixels
from romancal_lite.steps.refpix.reference_correction import (
    ROW_SAMPLES,
    CoefficientError,
    _cosine_interpolate,
    _fft_interpolate,
    coefficient_length,
    correct_with_refpix_reference,
)
from romancore.dqflags import pixel

REF = np.uint32(pixel.REFERENCE_PIXEL)
BAD_REF = np.uint32(pixel.BAD_REF_PIXEL)
B = 4
CW = 128
USEAFTER = "2020-01-01T00:00:00"


def border_dq(ny, nx):
    dq = np.zeros((ny, nx), dtype=np.uint32)
    dq[:B] |= REF
    dq[-B:] |= REF
    dq[:, :B] |= REF
    dq[:, -B:] |= REF
    return dq


def zero_coeffs(ny, nch=32):
    z = np.zeros((nch, coefficient_length(ny)), dtype=np.complex128)
    return z, z.copy(), z.copy()


def time_index(ny, nx):
    """Sample time (row * 140 + read position) of every column, odd channels reversed."""
    j = np.arange(nx) % CW
    odd = (np.arange(nx) // CW) % 2 == 1
    pos = np.where(odd, CW - 1 - j, j)
    return np.arange(ny)[:, None] * ROW_SAMPLES + pos[None, :]


def noisy_ramp(n, ny, nx, rng, *, correlated=3.0):
    """Integer-valued ramp and amp33 with a read-time-correlated noise common to all.

    The common signal is a random walk in sample time shared by every channel (at the
    same read time) and amp33, on top of per-pixel levels, a signal growing with the
    resultant and white read noise.
    """
    t = time_index(ny, nx)
    walk = np.cumsum(rng.normal(0, correlated / 30, (n, ny * ROW_SAMPLES)), axis=1)
    common = walk.reshape(n, ny, ROW_SAMPLES)
    data = (6000 + rng.normal(0, 20, (1, ny, nx)) + 40 * np.arange(n)[:, None, None]
            + rng.normal(0, 4, (n, ny, nx)))
    data += walk[:, t]
    amp33 = 6100 + rng.normal(0, 20, (1, ny, CW)) + rng.normal(0, 4, (n, ny, CW))
    amp33 += common[:, :, :CW]
    return np.round(data).astype(np.float32), np.round(amp33).astype(np.uint16)


# ------------------------------------------------------------------ hand-computed cases


def test_offset_is_restored_and_trends_follow_the_reference_rows():
    # every pixel: its own level + a line in sample time that changes per resultant;
    # the reference rows measure that line exactly, so after the trend removal only the
    # mean over the resultants (the restored offset) is left
    rng = np.random.default_rng(1)
    n, ny, nx = 4, 16, 256
    t = time_index(ny, nx).astype(np.float64) - (ny * ROW_SAMPLES - 1) / 2
    level = rng.uniform(1000, 2000, (ny, nx))
    slope = np.array([0.0, 1e-3, -2e-3, 3e-3])[:, None, None]
    const = np.array([0.0, 5.0, -3.0, 8.0])[:, None, None]
    data = (level + slope * t + const).astype(np.float32)
    amp33 = np.full((n, ny, CW), 100, np.uint16)
    g, z, a = zero_coeffs(ny)
    out = data.copy()
    correct_with_refpix_reference(out, border_dq(ny, nx), amp33, g, z, a)
    expected = data.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), atol=2e-3)
    # without the trend removal (and zero coefficients) nothing changes
    out = data.copy()
    correct_with_refpix_reference(out, border_dq(ny, nx), amp33, g, z, a, remove_trends=False)
    np.testing.assert_allclose(out, data, atol=2e-3)
    assert np.abs(data - expected).max() > 5


def test_trend_is_fitted_per_channel_and_resultant():
    n, ny, nx = 3, 16, 256
    t = time_index(ny, nx).astype(np.float64) - (ny * ROW_SAMPLES - 1) / 2
    data = np.full((n, ny, nx), 500.0)
    # channel 1 only: resultant k has the line (k - 1) * (0.01 t + 2)
    data[:, :, CW:] += (np.arange(n) - 1)[:, None, None] * (0.01 * t[:, CW:] + 2)
    data = data.astype(np.float32)
    data[1, :, :] += 1e-3  # no sample exactly equal to its offset (0 = "no sample")
    g, z, a = zero_coeffs(ny)
    out = data.copy()
    correct_with_refpix_reference(out, border_dq(ny, nx), np.ones((n, ny, CW), np.uint16),
                                  g, z, a)
    np.testing.assert_allclose(out[:, :, CW:], 500.0 + 1e-3 / 3, atol=2e-3)


def test_fourier_correction_maps_read_order_to_columns():
    # constant real coefficients are a pure scaling in time: channel c loses
    # alpha * (2M / N) * amp33 sampled at the same read time (odd channels read right
    # to left), and gamma * 35 * (2M / N) * the left reference column read at the same
    # position (read positions 0-3 only)
    rng = np.random.default_rng(2)
    n, ny, nx = 2, 12, 512
    data = rng.uniform(0, 100, (n, ny, nx)).astype(np.float32)
    amp33 = rng.integers(1, 1000, (n, ny, CW)).astype(np.uint16)
    m = coefficient_length(ny)
    scale = 2 * m / (ny * ROW_SAMPLES)
    g, z, a = zero_coeffs(ny)
    a[:] = 0.25
    out = data.copy()
    flags = dict(remove_offset=False, remove_trends=False, cosine_interpolate=False,
                 fft_interpolate=False)
    correct_with_refpix_reference(out, border_dq(ny, nx), amp33, g, z, a, **flags)
    expected = data.astype(np.float64)
    for c in range(nx // CW):
        cols = slice(c * CW, (c + 1) * CW)
        seen = amp33[..., ::-1] if c % 2 else amp33
        expected[..., cols] -= 0.25 * scale * seen
    np.testing.assert_allclose(out, expected, atol=1e-3)

    g[:] = 0.5
    a[:] = 0.0
    out = data.copy()
    correct_with_refpix_reference(out, border_dq(ny, nx), amp33, g, z, a, **flags)
    expected = data.astype(np.float64)
    left = data[..., :B].astype(np.float64)
    for c in range(nx // CW):
        first = c * CW
        if c % 2:  # read positions 0-3 are the channel's last four columns, reversed
            expected[..., first + CW - B : first + CW] -= 0.5 * 35 * scale * left[..., ::-1]
        else:
            expected[..., first : first + B] -= 0.5 * 35 * scale * left
    np.testing.assert_allclose(out, expected, atol=1e-3)


def test_right_reference_columns_use_zeta():
    rng = np.random.default_rng(3)
    n, ny, nx = 2, 12, 256
    data = rng.uniform(0, 100, (n, ny, nx)).astype(np.float32)
    g, z, a = zero_coeffs(ny)
    z[0] = 1.0  # channel 0 only
    out = data.copy()
    correct_with_refpix_reference(out, border_dq(ny, nx), np.ones((n, ny, CW), np.uint16),
                                  g, z, a, remove_offset=False, remove_trends=False)
    scale = 2 * coefficient_length(ny) / (ny * ROW_SAMPLES) * ROW_SAMPLES / B
    expected = data.astype(np.float64)
    # the last channel (odd) reads its right-most column first
    expected[..., :B] -= scale * data[..., ::-1][..., :B]
    np.testing.assert_allclose(out, expected, atol=1e-3)


def test_channels_with_identical_coefficients_share_one_transform():
    # the shared path (every row equal, as in the built-in file) gives what the
    # per-channel path gives for the channels whose rows are still the same
    rng = np.random.default_rng(10)
    n, ny, nx = 3, 12, 512
    data, amp33 = noisy_ramp(n, ny, nx, rng)
    m = coefficient_length(ny)
    row = rng.normal(size=m) + 1j * rng.normal(size=m)
    g, z, a = zero_coeffs(ny)
    a[:] = row * 1e-2
    g[:] = row * 1e-3
    shared = data.copy()
    correct_with_refpix_reference(shared, border_dq(ny, nx), amp33, g, z, a)
    a[3] *= 1.5  # channel 3 differs: every channel gets its own transform
    each = data.copy()
    correct_with_refpix_reference(each, border_dq(ny, nx), amp33, g, z, a)
    np.testing.assert_array_equal(shared[..., : 3 * CW], each[..., : 3 * CW])
    assert np.abs(shared[..., 3 * CW :] - each[..., 3 * CW :]).max() > 0.01


def test_cosine_interpolation_fills_zero_samples():
    series = np.full(300, 7.0)
    series[[0, 50, 51, 52, 299]] = 0.0
    _cosine_interpolate(series, np.sin(np.arange(1, 33) * np.pi / 32))
    np.testing.assert_allclose(series, 7.0)
    # a line is filled by the weighted mean of its neighbours: exact where the
    # weights are symmetric about the gap
    x = np.arange(200, dtype=np.float64) + 1.0
    y = x.copy()
    y[100] = 0.0
    _cosine_interpolate(y, np.sin(np.arange(1, 33) * np.pi / 32))
    w = np.sin(np.arange(1, 33) * np.pi / 32)
    neigh = x[100 + 15 - np.arange(32)]  # numpy "same" convolution, kernel length 32
    keep = np.arange(32) != 15
    assert y[100] == pytest.approx((w[keep] * neigh[keep]).sum() / w[keep].sum())


def test_fft_interpolation_is_romancal_apodized_fft_on_the_pauses():
    # romancal: three times x[pause] <- irfft(rfft(x) (1 + cos(2 pi k / N)) / 2)[pause];
    # computed here as the equivalent circular 3-tap mean
    ny = 8
    n = ny * ROW_SAMPLES
    rng = np.random.default_rng(9)
    pause = np.zeros((ny, ROW_SAMPLES), bool)
    pause[:, CW:] = True
    pause = pause.ravel()
    series = np.where(pause, 0.0, rng.normal(0, 10, n))
    expected = series.copy()
    apodize = (1 + np.cos(2 * np.pi * np.arange(n // 2 + 1) / n)) / 2
    for _ in range(3):
        smooth = np.fft.irfft(np.fft.rfft(expected) * apodize, n)
        expected[pause] = smooth[pause]
    _fft_interpolate(series, pause)
    np.testing.assert_allclose(series, expected, rtol=0, atol=1e-12)
    assert np.abs(series[pause]).max() > 1


def test_amp33_output_interpolates_missing_samples():
    n, ny, nx = 2, 12, 128
    amp33 = np.full((n, ny, CW), 100, np.uint16)
    amp33[:, 5, 7] = 0
    g, z, a = zero_coeffs(ny)
    data = np.ones((n, ny, nx), np.float32)
    flags = dict(remove_offset=False, remove_trends=False)
    out33, _ = correct_with_refpix_reference(data, border_dq(ny, nx), amp33, g, z, a, **flags)
    np.testing.assert_allclose(out33, 100.0)
    out33, _ = correct_with_refpix_reference(data, border_dq(ny, nx), amp33, g, z, a,
                                             cosine_interpolate=False, **flags)
    assert (out33[:, 5, 7] == 0).all()


def test_bad_reference_pixels_are_zeroed_and_reported():
    n, ny, nx = 3, 12, 128
    data = np.full((n, ny, nx), 50.0, np.float32)
    dq = border_dq(ny, nx)
    dq[3, 1] |= BAD_REF
    g, z, a = zero_coeffs(ny)
    _, report = correct_with_refpix_reference(data, dq, np.ones((n, ny, CW), np.uint16),
                                              g, z, a)
    assert report.bad_reference_pixels == 1
    assert (data[:, 3, 1] == 0).all()
    assert report.coefficients_used == ()


def test_one_resultant_is_unchanged():
    rng = np.random.default_rng(4)
    data, amp33 = noisy_ramp(1, 12, 256, rng)
    g, z, a = zero_coeffs(12)
    a[:] = 1.0
    out = data.copy()
    correct_with_refpix_reference(out, border_dq(12, 256), amp33, g, z, a)
    np.testing.assert_array_equal(out, data)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda g: g[:, :-1], "has shape"),
        (lambda g: g[:1], "has shape"),
        (lambda g: g[0], "has shape"),
        (lambda g: np.where(np.arange(g.shape[1]) == 3, np.nan, g), "non-finite"),
        (lambda g: g.astype("U1"), "numbers"),
    ],
)
def test_bad_coefficients(change, message):
    ny, nx = 12, 256
    g, z, a = zero_coeffs(ny)
    data = np.zeros((2, ny, nx), np.float32)
    with pytest.raises(CoefficientError, match=message):
        correct_with_refpix_reference(data, border_dq(ny, nx), np.zeros((2, ny, CW)),
                                      change(g), z, a)


@pytest.mark.parametrize(
    ("shape", "amp33_shape", "message"),
    [
        ((2, 12, 200), (2, 12, 128), "128-column"),
        ((2, 12, 256), (2, 12, 64), "amp33"),
        ((2, 6, 256), (2, 6, 128), "too few"),
    ],
)
def test_bad_data(shape, amp33_shape, message):
    g, z, a = zero_coeffs(shape[1])
    with pytest.raises(ValueError, match=message):
        correct_with_refpix_reference(np.zeros(shape, np.float32),
                                      np.zeros(shape[1:], np.uint32),
                                      np.zeros(amp33_shape, np.uint16), g, z, a)


# ------------------------------------------------------------------ versus romancal 1.1

def _romancal(data, amp33, dq, g, z, a, flags):
    """romancal 1.1's ``run_steps`` on a roman_datamodels RampModel of the same arrays."""
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    romancal_refpix = pytest.importorskip("romancal.refpix.refpix")
    model = rdm.RampModel.create_fake_data(shape=(2, 2, 2))
    model.data = data.copy()
    model.amp33 = amp33.copy()
    model.pixeldq = dq.copy()
    ref = rdm.RefpixRefModel.create_fake_data({"gamma": g, "zeta": z, "alpha": a})
    romancal_refpix.run_steps(model, ref, True, *flags)
    return model


@pytest.fixture(scope="module")
def full_width_case():
    """A 24-row, full-width (32 channels) ramp with correlated noise and random weights."""
    rng = np.random.default_rng(20261203)
    n, ny, nx = 5, 24, 4096
    data, amp33 = noisy_ramp(n, ny, nx, rng)
    dq = border_dq(ny, nx)
    dq[10, 2] |= BAD_REF
    dq[1, 300] |= BAD_REF
    amp33[:, 6, 40] = 0  # a missing amp33 sample
    m = coefficient_length(ny)

    def weights(size):
        return (rng.normal(size=(32, m)) + 1j * rng.normal(size=(32, m))) * size

    return data, amp33, dq, weights(2e-3), weights(2e-3), weights(2e-2)


FLAGS = [
    (True, True, True, True),
    (True, False, True, True),
    (True, True, False, True),
    (True, True, True, False),
    (False, True, True, True),
]


@pytest.mark.parametrize("flags", FLAGS)
def test_same_as_romancal(full_width_case, flags):
    data, amp33, dq, g, z, a = full_width_case
    theirs = _romancal(data, amp33, dq, g, z, a, flags)
    ours = data.copy()
    names = ("remove_offset", "remove_trends", "cosine_interpolate", "fft_interpolate")
    out33, _ = correct_with_refpix_reference(ours, dq, amp33, g, z, a,
                                             **dict(zip(names, flags, strict=True)))
    # float32 precision of the values (~6000 DN: 1 ulp = 0.0005 DN)
    tol = 2 * np.spacing(np.float32(np.abs(ours).max()))
    np.testing.assert_allclose(ours, theirs.data, rtol=0, atol=tol)
    np.testing.assert_array_equal(np.abs(out33).astype(np.uint16), theirs.amp33)
    # the correction is far larger than the tolerance, and every switch matters: the
    # default result differs from the one with a switch turned off
    assert np.abs(ours - data).max() > 1e3 * tol
    if flags != FLAGS[0]:
        default = data.copy()
        correct_with_refpix_reference(default, dq, amp33, g, z, a)
        assert np.abs(default - ours).max() > 10 * tol


def test_step_same_as_romancal_with_a_reference_file(full_width_case, tmp_path, caplog):
    data, amp33, dq, g, z, a = full_width_case
    node = build_reference("refpix", "WFI01", data.shape[1:], USEAFTER)
    node["gamma"], node["zeta"], node["alpha"] = g, z, a
    path = tmp_path / "refpix.asdf"
    write_reference(path, node)
    model = datamodels.RampModel.create_fake_data(shape=data.shape)
    model.data = data.copy()
    model.amp33 = amp33.copy()
    model.pixeldq = dq.copy()
    with caplog.at_level(logging.INFO):
        result = RefPixStep.call(model, override_refpix=str(path))
    assert result.meta.cal_step.refpix == "COMPLETE"
    assert "REFPIX correction with gamma/zeta/alpha" in caplog.text
    theirs = _romancal(data, amp33, dq, g, z, a, (True, True, True, True))
    tol = 2 * np.spacing(np.float32(np.abs(result.data).max()))
    np.testing.assert_allclose(result.data, theirs.data, rtol=0, atol=tol)
    np.testing.assert_array_equal(result.amp33, theirs.amp33)
    np.testing.assert_array_equal(result.border_ref_pix_left, result.data[..., :B])
    np.testing.assert_allclose(result.border_ref_pix_right, theirs.border_ref_pix_right,
                               rtol=0, atol=tol)


# ------------------------------------------------------------------ the step


def _model(data, amp33, dq):
    model = datamodels.RampModel.create_fake_data(shape=data.shape)
    model.data = data.copy()
    model.amp33 = amp33.copy()
    model.pixeldq = dq.copy()
    return model


def test_step_falls_back_to_border_without_a_reference(caplog):
    rng = np.random.default_rng(5)
    data, amp33 = noisy_ramp(3, 40, 256, rng)
    dq = border_dq(40, 256)
    with caplog.at_level(logging.WARNING):
        result = RefPixStep.call(_model(data, amp33, dq), override_refpix="N/A")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "No REFPIX reference applies: the border algorithm (no reference file) is used"
        " instead"
    ]
    expected = data.copy()
    correct_reference_pixels(expected, dq)
    np.testing.assert_array_equal(result.data, expected)
    assert result.meta.cal_step.refpix == "COMPLETE"


def test_step_border_algorithm_reads_no_reference():
    rng = np.random.default_rng(6)
    data, amp33 = noisy_ramp(3, 40, 256, rng)
    dq = border_dq(40, 256)
    # no CRDS, no override: only possible because the border algorithm selects nothing
    result = RefPixStep.call(_model(data, amp33, dq), algorithm="border")
    expected = data.copy()
    correct_reference_pixels(expected, dq)
    np.testing.assert_array_equal(result.data, expected)


def test_step_wrong_reference_shape_is_a_reference_error(tmp_path):
    rng = np.random.default_rng(7)
    data, amp33 = noisy_ramp(2, 40, 256, rng)
    path = tmp_path / "refpix.asdf"
    write_reference(path, build_reference("refpix", "WFI01", (48, 256), USEAFTER))
    with pytest.raises(ReferenceFileError, match=r"REFPIX 'gamma' has shape \(32, 3361\)"):
        RefPixStep.call(_model(data, amp33, border_dq(40, 256)), override_refpix=str(path))
    write_reference(path, build_reference("refpix", "WFI01", (64, 256), USEAFTER))
    with pytest.raises(ReferenceFileError, match="REFPIX coefficients have shape"):
        RefPixStep.call(_model(data, amp33, border_dq(40, 256)), override_refpix=str(path))


def test_step_wrong_amp33_is_an_input_error(tmp_path):
    rng = np.random.default_rng(8)
    data, _ = noisy_ramp(2, 40, 256, rng)
    path = tmp_path / "refpix.asdf"
    write_reference(path, build_reference("refpix", "WFI01", (40, 256), USEAFTER))
    model = _model(data, np.zeros((2, 40, 128), np.uint16), border_dq(40, 256))
    model.amp33 = np.zeros((2, 40, 64), np.uint16)
    with pytest.raises(InputFileError, match="amp33"):
        RefPixStep.call(model, override_refpix=str(path))


def test_step_parameters():
    pars = RefPixStep().get_pars()
    assert {k: pars[k] for k in ("algorithm", "remove_offset", "remove_trends",
                                 "cosine_interpolate", "fft_interpolate")} == {
        "algorithm": "refpix_reference", "remove_offset": True, "remove_trends": True,
        "cosine_interpolate": True, "fft_interpolate": True}
    with pytest.raises(Exception, match="algorithm"):
        RefPixStep(algorithm="fourier")


# ------------------------------------------------------------------ built-in reference


def test_builtin_reference_shape_and_weights():
    assert reference_shape("refpix", (4096, 4096)) == (32, 286721)
    assert reference_shape("refpix", (40, 256)) == (32, coefficient_length(40))
    node = build_reference("refpix", "WFI03", (40, 256), USEAFTER)
    assert node["alpha"].dtype == np.complex128 and node["alpha"].shape == (32, 2801)
    assert not node["gamma"].any() and not node["zeta"].any()
    w = refpix_drift_weights(40, 5.15)
    m = 2801
    np.testing.assert_allclose(node["alpha"][5].real, w * (m - 1) / m)
    # a low-pass: passes the slow drift, not the white noise between rows
    assert w[0] == 0 and w[1] > 0.9 and w[-1] < 1e-3 and (w >= 0).all() and (w < 1).all()


def _row_noise(cube, clean):
    """Rms of the row-correlated residual: per resultant and row, the mean over the
    science columns of ``cube - clean``, less its mean over the resultants (the kept
    level) and over the rows of the resultant."""
    rows = (cube[:, B:-B, B:-B].astype(np.float64) - clean[:, B:-B, B:-B]).mean(axis=2)
    rows -= rows.mean(axis=0)
    rows -= rows.mean(axis=1, keepdims=True)
    return rows.std()


def test_simulator_row_drift_drops_with_the_builtin_reference(tmp_path):
    ny, nx = 96, 256
    kw = dict(shape=(ny, nx), references="builtin", seed=3, n_stars=0, cr_rate=0.0,
              read_pattern="ma4")
    raw, _ = simulate.simulate_exposure(**kw)
    clean, _ = simulate.simulate_exposure(ref_drift_scale=0.0, **kw)
    path = tmp_path / "refpix.asdf"
    detector = raw.meta.instrument.detector
    write_reference(path, build_reference("refpix", detector, (ny, nx), USEAFTER))
    dq = border_dq(ny, nx)
    truth = clean.data.astype(np.float64)

    def run(**params):
        model = datamodels.RampModel.create_fake_data(shape=raw.data.shape)
        model.meta.instrument.detector = detector
        model.data = raw.data.astype(np.float32)
        model.amp33 = raw.amp33.copy()
        model.pixeldq = dq.copy()
        return RefPixStep.call(model, override_refpix=str(path), **params).data

    skipped = _row_noise(run(skip=True), truth)
    corrected = _row_noise(run(), truth)
    # the drift per resultant is ~1.5 / sqrt(reads) DN; the correction leaves the
    # Wiener residual (~30 %) and the amp33 read noise it transfers
    assert skipped > 0.4, skipped
    assert corrected < 0.45 * skipped, (skipped, corrected)
    # without the Fourier part (offsets and trends only) the drift stays
    none_path = tmp_path / "refpix_zero.asdf"
    node = build_reference("refpix", detector, (ny, nx), USEAFTER)
    node["alpha"] = np.zeros_like(node["alpha"])
    write_reference(none_path, node)
    model = datamodels.RampModel.create_fake_data(shape=raw.data.shape)
    model.meta.instrument.detector = detector
    model.data = raw.data.astype(np.float32)
    model.amp33 = raw.amp33.copy()
    model.pixeldq = dq.copy()
    trends_only = _row_noise(RefPixStep.call(model, override_refpix=str(none_path)).data,
                             truth)
    assert trends_only > 0.8 * skipped, (skipped, trends_only)
