"""romancore.finish_ramp_fit against the NumPy expressions of romancal 1.1's finishing."""

from __future__ import annotations

import numpy as np
import pytest

from romancore import RateImages, finish_ramp_fit
from romancore.dqflags import group, pixel


def _numpy_finish(slope_e, var_r, var_p, gdq, pdq, gain, data, weights):
    """The per-pixel arithmetic written with NumPy (float32 rates, float64 dumo)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        bad = ~np.isfinite(gain) | (gain <= 0)
        g = np.where(bad, np.float32(1), gain).astype(np.float32)
        s = slope_e / g
        g2 = g * g
        vp = var_p / g2
        vr = var_r / g2
        e = np.sqrt(vp + vr)
        for arr in (s, vp, vr, e):
            arr[bad] = np.nan
        keep = np.uint8(0xFF & ~int(group.DO_NOT_USE))
        dq = pdq | (np.bitwise_or.reduce(gdq, axis=0) & keep)
        usable = ((gdq & np.uint8(group.SATURATED | group.DO_NOT_USE)) == 0).any(axis=0)
        dnu = ~usable | ~np.isfinite(s) | ~(e > 0)
        dq[dnu] |= np.uint32(pixel.DO_NOT_USE)
        dq[bad] |= np.uint32(pixel.NO_GAIN_VALUE | pixel.DO_NOT_USE)
        uni = np.zeros(s.shape)
        for k in range(len(data)):
            uni += data[k] * weights[k]
        dumo = (uni - s).astype(np.float32)
    return RateImages(s, dq.astype(np.uint32), vp, vr, e, dumo)


def _case(seed=0, n=6, ny=23, nx=31):
    rng = np.random.default_rng(seed)
    slope_e = rng.normal(50, 30, (ny, nx)).astype(np.float32)
    slope_e[0, 0] = np.nan
    var_r = rng.uniform(0, 2, (ny, nx)).astype(np.float32)
    var_p = rng.uniform(0, 3, (ny, nx)).astype(np.float32)
    var_r[1, 1] = var_p[1, 1] = 0.0  # err = 0: DO_NOT_USE
    gdq = np.zeros((n, ny, nx), np.uint8)
    gdq[3:, 2, 2] = group.SATURATED
    gdq[:, 3, 3] = group.SATURATED  # nothing usable
    gdq[:, 4, 4] = group.DO_NOT_USE
    gdq[2, 5, 5] = group.JUMP_DET
    pdq = np.zeros((ny, nx), np.uint32)
    pdq[6, 6] = pixel.HOT
    gain = rng.uniform(1.5, 2.5, (ny, nx)).astype(np.float32)
    gain[7, 7], gain[7, 8], gain[7, 9] = 0.0, np.nan, -3.0
    data = (100 + np.cumsum(rng.uniform(0, 40, (n, ny, nx)), axis=0)).astype(np.float32)
    data[1, 8, 8] = np.inf
    weights = rng.normal(0, 0.01, n)
    return slope_e, var_r, var_p, gdq, pdq, gain, data, weights


def test_matches_numpy_bit_for_bit_and_special_cases():
    args = _case()
    ours = finish_ramp_fit(*args)
    expected = _numpy_finish(*args)
    for name in RateImages._fields:
        assert np.array_equal(getattr(ours, name), getattr(expected, name), equal_nan=True), name
    dq = ours.dq
    assert dq[2, 2] & pixel.SATURATED and not dq[2, 2] & pixel.DO_NOT_USE
    assert dq[3, 3] & pixel.DO_NOT_USE and dq[4, 4] & pixel.DO_NOT_USE
    assert dq[5, 5] & pixel.JUMP_DET and dq[6, 6] & pixel.HOT
    assert dq[1, 1] & pixel.DO_NOT_USE  # err = 0
    assert dq[0, 0] & pixel.DO_NOT_USE  # slope not finite
    for x in (7, 8, 9):
        assert dq[7, x] & pixel.NO_GAIN_VALUE and np.isnan(ours.slope[7, x])
    assert not np.isfinite(ours.dumo[8, 8])  # a non-finite resultant
    # the DN/s conversion by hand
    assert ours.slope[10, 10] == np.float32(args[0][10, 10] / args[5][10, 10])


def test_strided_inputs_out_arrays_and_threads():
    slope_e, var_r, var_p, gdq, pdq, gain, data, weights = _case(1, ny=40, nx=50)
    big_gdq = np.zeros((6, 48, 58), np.uint8)
    big_gdq[:, 4:-4, 4:-4] = gdq
    big_data = np.zeros((6, 48, 58), np.float32)
    big_data[:, 4:-4, 4:-4] = data
    big_pdq = np.zeros((48, 58), np.uint32)
    big_pdq[4:-4, 4:-4] = pdq
    expected = finish_ramp_fit(slope_e, var_r, var_p, gdq, pdq, gain, data, weights,
                               n_threads=1)
    full = RateImages(*(np.zeros((60, 50), np.uint32 if f == "dq" else np.float32)
                        for f in RateImages._fields))
    rows = RateImages(*(arr[10:50] for arr in full))
    for threads in (1, 2, 5):
        got = finish_ramp_fit(slope_e, var_r, var_p, big_gdq[:, 4:-4, 4:-4],
                              big_pdq[4:-4, 4:-4], gain, big_data[:, 4:-4, 4:-4], weights,
                              out=rows, n_threads=threads)
        assert got is rows
        for name in RateImages._fields:
            assert np.array_equal(getattr(got, name), getattr(expected, name),
                                  equal_nan=True)
    assert not full.slope[:10].any() and not full.slope[50:].any()


def test_bad_arguments():
    args = list(_case())
    with pytest.raises(ValueError, match="groupdq"):
        finish_ramp_fit(*args[:3], args[3].astype(np.uint16), *args[4:])
    with pytest.raises(ValueError, match="uniform_weights"):
        finish_ramp_fit(*args[:7], args[7][:-1])
    with pytest.raises(ValueError, match="data has shape"):
        finish_ramp_fit(*args[:6], args[6][:-1], args[7])


def _ramp_case(seed=2, n=7, ny=30, nx=41):
    rng = np.random.default_rng(seed)
    pattern = [[1], [2, 3], [4, 5, 6], [7], [8, 9], [10, 11, 12], [13]]
    data = (100 + np.cumsum(rng.uniform(0, 60, (n, ny, nx)), axis=0)).astype(np.float32)
    data[3:, 5, 5] += 900.0  # a cosmic ray
    data[:, 6, 6] = np.nan
    data[2, 7, 7] = np.inf
    gdq = np.zeros((n, ny, nx), np.uint8)
    gdq[4:, 8, 8] = group.SATURATED
    gdq[:, 9, 9] = group.SATURATED
    pdq = np.zeros((ny, nx), np.uint32)
    pdq[10, 10] = pixel.HOT
    gain = rng.uniform(1.6, 2.2, (ny, nx)).astype(np.float32)
    gain[11, 11], gain[11, 12] = 0.0, np.nan
    rn = rng.uniform(4, 8, (ny, nx)).astype(np.float32)
    rn[12, 12] = 0.0
    weights = rng.normal(0, 0.01, n)
    return data, gdq, pdq, gain, rn, pattern, weights


def test_fused_fit_equals_fit_then_finish():
    from romancore import fit_ramps, fit_rate_images

    data, gdq, pdq, gain, rn, pattern, weights = _ramp_case()
    g = np.where(~np.isfinite(gain) | (gain <= 0), np.float32(1), gain)
    gdq_two = gdq.copy()
    res = fit_ramps(np.multiply(data, g, dtype=np.float32), gdq_two, rn * g, pattern, 3.04)
    expected = finish_ramp_fit(res.slope, res.var_read, res.var_poisson, gdq_two, pdq, gain,
                               data, weights)
    for threads in (1, 2, 3):
        gdq_one = gdq.copy()
        got = fit_rate_images(data, gdq_one, pdq, gain, rn, pattern, 3.04, weights,
                              n_threads=threads)
        for name in RateImages._fields:
            assert np.array_equal(getattr(got, name), getattr(expected, name),
                                  equal_nan=True), name
        np.testing.assert_array_equal(gdq_one, gdq_two)
    assert gdq_two[:, 5, 5].any() and got.dq[5, 5] & pixel.JUMP_DET
    # without update_groupdq the caller's group DQ is left alone, the images are equal
    untouched = gdq.copy()
    again = fit_rate_images(data, untouched, pdq, gain, rn, pattern, 3.04, weights,
                            update_groupdq=False)
    np.testing.assert_array_equal(untouched, gdq)
    assert np.array_equal(again.slope, expected.slope, equal_nan=True)


def test_fused_fit_on_strided_science_columns():
    from romancore import fit_rate_images

    data, gdq, pdq, gain, rn, pattern, weights = _ramp_case(3)
    pad = lambda a: np.pad(a, [(0, 0)] * (a.ndim - 2) + [(4, 4), (4, 4)])  # noqa: E731
    big = [pad(a) for a in (data, gdq, pdq)]
    cut = (slice(4, -4), slice(4, -4))
    strided = fit_rate_images(big[0][(slice(None), *cut)], big[1][(slice(None), *cut)],
                              big[2][cut], gain, rn, pattern, 3.04, weights)
    plain = fit_rate_images(data, gdq.copy(), pdq, gain, rn, pattern, 3.04, weights)
    for name in RateImages._fields:
        assert np.array_equal(getattr(strided, name), getattr(plain, name), equal_nan=True)
    assert not big[1][:, :4].any()  # the border of the group DQ is not written


def test_fused_fit_bad_arguments():
    from romancore import fit_rate_images

    data, gdq, pdq, gain, rn, pattern, weights = _ramp_case()
    with pytest.raises(ValueError, match="read_noise must be >= 0"):
        fit_rate_images(data, gdq, pdq, gain, -rn, pattern, 3.04, weights)
    with pytest.raises(ValueError, match="resultants"):
        fit_rate_images(data, gdq, pdq, gain, rn, pattern[:-1], 3.04, weights)
    with pytest.raises(ValueError, match="data must be"):
        fit_rate_images(data.astype(np.float64), gdq, pdq, gain, rn, pattern, 3.04, weights)
    with pytest.raises(ValueError, match="gain has shape"):
        fit_rate_images(data, gdq, pdq, gain[:-1], rn, pattern, 3.04, weights)
