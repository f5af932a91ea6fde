"""Tests of romancore.fit_ramps_likely: hand-computed cases, a dense reference, errors.

The dense reference below is written from the definitions of Brandt (2024, paper I,
Eqs. 4-5, 11, 28-29): the covariance matrix of the resultant differences per unit
time is built element by element and inverted with NumPy; the GLS slope is
``1^T C^-1 d / 1^T C^-1 1``.  It shares no code with the kernel's O(n) recursions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import romancore
from romancore.dqflags import group

FT = 3.0


def _times(pattern, frame_time):
    t = np.array([np.mean(np.array(r) * frame_time) for r in pattern])
    tau = []
    for r in pattern:
        times = np.array(r) * frame_time
        n = len(times)
        tau.append(sum((2 * n + 1 - 2 * k) * times[k - 1] for k in range(1, n + 1)) / n**2)
    return t, np.array(tau), np.array([len(r) for r in pattern], dtype=float)


def dense_covariance(pattern, frame_time, rate, rn):
    """Covariance of the differences per unit time, from paper I Eqs. 28-29."""
    t, tau, nr = _times(pattern, frame_time)
    dt = np.diff(t)
    m = len(dt)
    cov = np.zeros((m, m))
    for i in range(m):
        cov[i, i] = (rn**2 * (1 / nr[i] + 1 / nr[i + 1])
                     + rate * (tau[i] + tau[i + 1] - 2 * t[i])) / dt[i] ** 2
    for i in range(m - 1):
        cov[i, i + 1] = cov[i + 1, i] = (
            -rn**2 / nr[i + 1] + rate * (t[i + 1] - tau[i + 1])) / (dt[i] * dt[i + 1])
    return cov, dt


def dense_fit(resultants, pattern, frame_time, rate, rn, use):
    """GLS slope, read and Poisson variances and chi^2 on the used differences."""
    r = np.asarray(resultants, dtype=np.float64)
    cov, dt = dense_covariance(pattern, frame_time, rate, rn)
    d = np.diff(r) / dt
    keep = np.flatnonzero(use)
    c = cov[np.ix_(keep, keep)]
    ci = np.linalg.inv(c)
    one = np.ones(len(keep))
    w = ci @ one / (one @ ci @ one)
    slope = w @ d[keep]
    chi2 = (d[keep] - slope) @ ci @ (d[keep] - slope)
    cov_r, _ = dense_covariance(pattern, frame_time, 0.0, rn)
    cov_p, _ = dense_covariance(pattern, frame_time, rate, 0.0)
    return (slope, w @ cov_r[np.ix_(keep, keep)] @ w, w @ cov_p[np.ix_(keep, keep)] @ w,
            chi2)


def _fit(resultants, pattern, rn, dq=None, **kw):
    r = np.ascontiguousarray(np.asarray(resultants, np.float32).reshape(len(pattern), 1, -1))
    g = np.zeros(r.shape, np.uint8) if dq is None else np.asarray(dq, np.uint8).reshape(r.shape)
    return romancore.fit_ramps_likely(r, g.copy(), rn, pattern, FT, **kw)


def test_two_differences_read_noise_only_closed_form():
    # Three single reads, a falling ramp (median difference < 0: the covariance is read
    # noise only).  C = s^2 / dt^2 [[2, -1], [-1, 2]] gives equal weights: the slope is
    # (R2 - R0) / (2 dt), its variance s^2 / (2 dt^2) and chi^2 = (d0 - d1)^2 dt^2 / (6 s^2).
    pattern = [[1], [2], [3]]
    s = 4.0
    r = [10.0, 4.0, -5.0]
    out = _fit(r, pattern, s)
    d0, d1 = (r[1] - r[0]) / FT, (r[2] - r[1]) / FT
    assert out.slope[0, 0] == pytest.approx((r[2] - r[0]) / (2 * FT), rel=1e-6)
    assert out.var_read[0, 0] == pytest.approx(s**2 / (2 * FT**2), rel=1e-6)
    assert out.var_poisson[0, 0] == 0
    assert out.chi2[0, 0] == pytest.approx((d0 - d1) ** 2 * FT**2 / (6 * s**2), rel=1e-5)


def test_poisson_only_single_reads_closed_form():
    # Single reads and no read noise: the differences are independent with variance
    # rate / dt, so the GLS slope is their mean, (R_n - R_0) / T, and the Poisson
    # variance is the covariance rate over T.
    pattern = [[1], [2], [3], [4]]
    r = [0.0, 30.0, 50.0, 95.0]
    out = _fit(r, pattern, 0.0)
    slope = (r[-1] - r[0]) / (3 * FT)
    assert out.slope[0, 0] == pytest.approx(slope, rel=1e-6)
    assert out.var_read[0, 0] == 0
    assert out.var_poisson[0, 0] == pytest.approx(slope / (3 * FT), rel=1e-6)


@pytest.mark.parametrize("pattern", [
    [[1], [2, 3], [4, 5, 6], [7, 8, 9, 10], [11]],
    [[1], [2], [3, 4], [5, 6, 7, 8, 9], [10, 11, 12], [13]],
])
def test_matches_dense_reference(pattern):
    rng = np.random.default_rng(3)
    n = len(pattern)
    t, _, _ = _times(pattern, FT)
    rn = 7.0
    for rate in (0.5, 20.0, 3e3):
        r = rate * t + rng.normal(0, 10, n)
        out = _fit(r, pattern, rn, use_jump=False)
        # the final covariance is evaluated at the rate of a first fit at the median
        d = np.diff(np.asarray(r, np.float32).astype(np.float64)) / np.diff(t)
        first = dense_fit(np.float32(r), pattern, FT, max(np.median(d), 0), rn,
                          np.ones(n - 1, bool))[0]
        ref = dense_fit(np.float32(r), pattern, FT, max(first, 0), rn, np.ones(n - 1, bool))
        got = (out.slope[0, 0], out.var_read[0, 0], out.var_poisson[0, 0], out.chi2[0, 0])
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-7)


def test_jump_is_omitted_and_flagged():
    pattern = [[1], [2], [3, 4], [5, 6, 7], [8, 9], [10], [11]]
    t, _, _ = _times(pattern, FT)
    rate, rn = 5.0, 5.0
    r = rate * t + np.array([0.3, -1.0, 0.5, 0.2, -0.4, 0.8, -0.6])
    r[4:] += 500.0  # a cosmic ray between resultants 3 and 4: difference 3
    dq = np.zeros(len(pattern), np.uint8)
    out = _fit(r, pattern, rn)
    flags = out.groupdq[:, 0, 0]
    assert flags[4] == group.JUMP_DET
    assert np.count_nonzero(flags) == 1
    use = np.ones(len(pattern) - 1, bool)
    use[3] = False
    assert out.slope[0, 0] == pytest.approx(rate, abs=0.2)
    # without jump detection the jump biases the slope
    off = _fit(r, pattern, rn, dq=dq, use_jump=False)
    assert not off.groupdq.any()
    assert off.slope[0, 0] > rate + 5


def test_flagged_differences_are_excluded():
    pattern = [[1], [2], [3], [4], [5], [6]]
    t, _, _ = _times(pattern, FT)
    r = 10.0 * t
    r[3] = 1e5  # garbage in a flagged resultant
    dq = np.zeros(6, np.uint8)
    dq[3] = group.DO_NOT_USE
    out = _fit(r, pattern, 3.0, dq=dq)
    assert out.slope[0, 0] == pytest.approx(10.0, rel=1e-5)
    assert out.groupdq[:, 0, 0].tolist() == [0, 0, 0, 1, 0, 0]


def test_special_cases():
    pattern = [[1], [2], [3], [4]]
    # all saturated after the first resultant: no usable difference -> NaN
    out = _fit([1.0, 2.0, 3.0, 4.0], pattern, 3.0, dq=[0, 2, 2, 2])
    assert np.isnan(out.slope[0, 0]) and np.isnan(out.var_read[0, 0])
    # NaN read noise -> NaN
    assert np.isnan(_fit([1.0, 2.0, 3.0, 4.0], pattern, np.nan).slope[0, 0])
    # a NaN resultant is flagged DO_NOT_USE and fitted around
    out = _fit([0.0, 3.0, np.nan, 9.0], pattern, 1.0)
    assert out.groupdq[:, 0, 0].tolist() == [0, 0, group.DO_NOT_USE, 0]
    assert out.slope[0, 0] == pytest.approx(1.0, rel=1e-6)


def test_thresholds_match_stcal_derivation():
    scipy_stats = pytest.importorskip("scipy.stats")
    scipy_special = pytest.importorskip("scipy.special")
    for s in (3.0, 4.5, 6.0):
        one, two = romancore.likely_thresholds(s)
        assert one == s * s
        pval = scipy_special.erfc(s / math.sqrt(2))
        assert two == pytest.approx(scipy_stats.chi2.isf(pval, 2), rel=1e-12)
    # p underflows: stcal falls back to s^2 + 10
    assert romancore.likely_thresholds(40.0) == (1600.0, 1610.0)


def test_thread_count_invariance():
    rng = np.random.default_rng(7)
    pattern = [[1], [2], [3, 4], [5, 6, 7, 8], [9, 10], [11, 12, 13], [14]]
    t, _, _ = _times(pattern, FT)
    ny, nx = 67, 53
    flux = np.exp(rng.uniform(np.log(0.1), np.log(1e4), (ny, nx)))
    r = (flux[None] * t[:, None, None] + rng.normal(0, 8, (len(t), ny, nx))).astype(np.float32)
    hit = rng.random((ny, nx)) < 0.2
    r[4:, hit] += 300
    g0 = np.zeros(r.shape, np.uint8)
    g0[5:, rng.random((ny, nx)) < 0.05] = group.SATURATED
    outs = [romancore.fit_ramps_likely(r, g0.copy(), 8.0, pattern, FT, n_threads=k)
            for k in (1, 2, 3)]
    assert outs[0].groupdq.any()
    for o in outs[1:]:
        for a, b in zip(o, outs[0], strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"resultants": np.zeros((4, 2, 2), np.float64)}, "dtype float32"),
    ({"resultants": np.zeros((1, 2, 2), np.float32), "groupdq": np.zeros((1, 2, 2), np.uint8)},
     "at least 2 resultants"),
    ({"read_noise": -1.0}, "read_noise"),
    ({"read_pattern": [[1], [2], [3]]}, "3 resultants but data has 4"),
    ({"read_pattern": [[1], [3], [2], [4]]}, "read_pattern"),
    ({"frame_time": 0.0}, "frame_time"),
    ({"threshold_one_omit": -1.0}, "threshold_one_omit"),
    ({"rejection_threshold": float("nan")}, "rejection_threshold"),
])
def test_bad_input(kwargs, match):
    args = {"resultants": np.zeros((4, 2, 2), np.float32),
            "groupdq": np.zeros((4, 2, 2), np.uint8), "read_noise": 1.0,
            "read_pattern": [[1], [2], [3], [4]], "frame_time": FT}
    args.update(kwargs)
    extra = {k: args.pop(k) for k in list(args) if k in (
        "threshold_one_omit", "rejection_threshold")}
    with pytest.raises(ValueError, match=match):
        romancore.fit_ramps_likely(*args.values(), **extra)


def test_block_fast_path_equals_per_pixel_path():
    # the vectorised block path (clean pixels below the omission thresholds) gives the
    # per-pixel path's results bit for bit
    from romancore.ramp import _likely
    from romancore.ramp.likely import likely_tables

    rng = np.random.default_rng(11)
    pattern = [[1], [2], [3, 4], [5, 6, 7, 8], [9, 10], [11, 12, 13], [14], [15, 16]]
    t, _, _ = _times(pattern, FT)
    ny, nx = 9, 150  # not a multiple of the block width
    flux = np.exp(rng.uniform(np.log(0.1), np.log(1e4), (ny, nx)))
    r = (flux[None] * t[:, None, None] + rng.normal(0, 8, (len(t), ny, nx))).astype(np.float32)
    r[4:, rng.random((ny, nx)) < 0.2] += 300
    r[2, 3, 4] = np.nan
    g0 = np.zeros(r.shape, np.uint8)
    g0[5:, rng.random((ny, nx)) < 0.05] = group.SATURATED
    rn = rng.uniform(3, 20, (ny, nx)).astype(np.float32)
    rn[5, 5] = np.nan
    results = []
    for use_block in (True, False):
        outs = [np.empty((ny, nx), np.float32) for _ in range(4)]
        g = g0.copy()
        _likely.fit(r, g, rn, *likely_tables(pattern, FT), *outs, True,
                    *romancore.likely_thresholds(), 1, use_block)
        results.append((*outs, g))
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def _dense_weights(pattern, rate, rn):
    cov, _ = dense_covariance(pattern, FT, rate, rn)
    ci = np.linalg.inv(cov)
    one = np.ones(len(cov))
    return ci @ one / (one @ ci @ one), cov


def test_bias_correction_is_the_first_order_formula():
    # slope - c^T Cov(a) dw/da x (1 + erf(a / sigma_c / sqrt 2)) / 2 (paper I Sect. 5),
    # with c the weights at the median rate, a the covariance rate: evaluated densely
    pattern = [[1], [2, 3], [4, 5, 6], [7, 8, 9, 10], [11, 12], [13]]
    t, _, _ = _times(pattern, FT)
    rn = 6.0
    r = (4.0 * t + np.array([0.5, -3.0, 2.0, 1.0, -2.5, 4.0])).astype(np.float32)
    plain = _fit(r, pattern, rn, use_jump=False)
    fixed = _fit(r, pattern, rn, use_jump=False, bias_correction=True)
    d = np.diff(r.astype(np.float64)) / np.diff(t)
    guess = max(np.median(d), 0.0)
    c, _ = _dense_weights(pattern, guess, rn)
    a = max(c @ d, 0.0)
    w0, cov = _dense_weights(pattern, a, rn)
    da = 1e-6 * (a + rn**2)
    w1, _ = _dense_weights(pattern, a + da, rn)
    sigma = math.sqrt(c @ cov @ c)
    bias = c @ cov @ ((w1 - w0) / da) * 0.5 * (1 + math.erf(a / sigma / math.sqrt(2)))
    ulp = float(np.spacing(plain.slope[0, 0]))
    assert abs(bias) > 20 * ulp  # a visible correction (it is small: 4e-6 relative here)
    assert fixed.slope[0, 0] == pytest.approx(plain.slope[0, 0] - bias, abs=2 * ulp)
    # the variances and flags are not changed
    assert fixed.var_poisson[0, 0] == plain.var_poisson[0, 0]
    # on by default? no: stcal has no correction
    assert _fit(r, pattern, rn, use_jump=False).slope[0, 0] == plain.slope[0, 0]
