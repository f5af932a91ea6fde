"""romancore.fit_ramps: hand-computed cases, properties and the spec's special cases.

References are computed independently from the equations of the spec
(``seeds/000:1190-1306``) by the float64 helpers of ``conftest.py`` (fixture ``cas22``).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import romancore
from romancore.dqflags import group

EPS32 = 2.0**-24
JUMP = np.uint8(group.JUMP_DET)
SAT = np.uint8(group.SATURATED)
DNU = np.uint8(group.DO_NOT_USE)


def _cube(values, shape=(1, 1)):
    """[n] values -> C-contiguous float32 cube [n, *shape] with the same ramp everywhere."""
    v = np.asarray(values, dtype=np.float64)
    return np.ascontiguousarray(
        np.broadcast_to(v[:, None, None], (len(v), *shape)).astype(np.float32)
    )


def _zeros_dq(res):
    return np.zeros(res.shape, np.uint8)


# --------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_jump", [True, False])
def test_two_resultants_hand_computed(use_jump):
    # read pattern [[1, 2], [5, 6, 7]], frame time 2 s:
    #   t_bar = [3, 12], dt = 9;  N = [2, 3]
    #   tau_0 = (3*2 + 1*4) / 4 = 2.5;  tau_1 = (5*10 + 3*12 + 1*14) / 9 = 100/9
    # With two points, K_0 = (F0 t_0 - F1) W_0 / D = -1/dt and K_1 = +1/dt whatever the
    # weights W (D = W0 W1 dt^2), so:
    #   slope  = (R_1 - R_0) / dt = (190 - 100) / 9 = 10
    #   V_R    = RN^2 (K_0^2/N_0 + K_1^2/N_1) = RN^2 (1/2 + 1/3) / 81 = 100 * 5/6 / 81
    #   V_S    = K_0^2 tau_0 + K_1^2 tau_1 + 2 K_0 K_1 t_0 = (2.5 + 100/9 - 6) / 81
    #   var_poisson = V_S * slope
    rp = [[1, 2], [5, 6, 7]]
    res = _cube([100.0, 190.0], (2, 3))
    gdq = _zeros_dq(res)
    out = romancore.fit_ramps(res, gdq, 10.0, rp, 2.0, use_jump=use_jump)
    np.testing.assert_allclose(out.slope, 10.0, rtol=1e-6)
    np.testing.assert_allclose(out.var_read, 100 * (5 / 6) / 81, rtol=1e-6)
    np.testing.assert_allclose(out.var_poisson, 10 * (2.5 + 100 / 9 - 6) / 81, rtol=1e-6)
    assert out.slope.dtype == out.var_read.dtype == out.var_poisson.dtype == np.float32
    assert out.slope.shape == (2, 3)
    assert not gdq.any()


def test_two_resultants_negative_slope_has_zero_poisson_variance():
    # same pattern, R_1 < R_0: slope (80 - 100) / 9, var_poisson = V_S * max(slope, 0) = 0
    out = romancore.fit_ramps(_cube([100.0, 80.0]), _zeros_dq(_cube([0, 0])), 10.0,
                              [[1, 2], [5, 6, 7]], 2.0)
    np.testing.assert_allclose(out.slope, -20 / 9, rtol=1e-6)
    assert out.var_poisson[0, 0] == 0
    np.testing.assert_allclose(out.var_read, 100 * (5 / 6) / 81, rtol=1e-6)


def test_three_equal_single_reads_ols():
    # [[1], [2], [3]], frame time 1, tiny signal -> S < 5 -> P = 0 (equal weights):
    # OLS on t = 1, 2, 3: K = (t - 2) / 2 = [-1/2, 0, 1/2]
    #   slope = (R_2 - R_0) / 2;  V_R = RN^2 (1/4 + 0 + 1/4) = RN^2 / 2
    #   V_S = K0^2 t0 + K2^2 t2 + 2 K0 K2 t0 = 1/4 + 3/4 - 1/2 = 1/2
    res = _cube([10.0, 10.5, 11.0])
    out = romancore.fit_ramps(res, _zeros_dq(res), 20.0, [[1], [2], [3]], 1.0)
    np.testing.assert_allclose(out.slope, 0.5, rtol=1e-6)
    np.testing.assert_allclose(out.var_read, 400 / 2, rtol=1e-6)
    np.testing.assert_allclose(out.var_poisson, 0.5 * 0.5, rtol=1e-6)


# --------------------------------------------------------------------------------------
# Noiseless ramps: exact slope for any read pattern
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rp",
    [
        [[1], [2, 3], [4, 5, 6, 7], [8]],
        [[1, 2, 3, 4], [9], [10, 11], [30, 31, 32, 33, 34, 35]],
        [[2], [3], [5, 6], [7, 8, 9, 10, 11, 12, 13, 14], [15], [40, 41]],
    ],
)
def test_noiseless_uneven_ramps_exact(rp):
    meta = romancore.read_pattern_metadata(rp, 3.04)
    slopes = np.array([0.3, 2.0, 50.0, 700.0, 9000.0])
    res = (200.0 + slopes[None, :] * meta.t_bar[:, None]).astype(np.float32)[:, None, :]
    res = np.ascontiguousarray(res)
    gdq = _zeros_dq(res)
    out = romancore.fit_ramps(res, gdq, 8.0, rp, 3.04)
    np.testing.assert_allclose(out.slope[0], slopes, rtol=2e-5)
    assert not gdq.any()


@st.composite
def _read_patterns(draw):
    n = draw(st.integers(2, 10))
    pattern, nxt = [], 1
    for _ in range(n):
        nxt += draw(st.integers(0, 4))  # skipped reads
        k = draw(st.integers(1, 8))
        pattern.append(list(range(nxt, nxt + k)))
        nxt += k
    return pattern


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rp=_read_patterns(),
    frame_time=st.floats(0.5, 6.0),
    slope=st.floats(0.05, 5e3),
    pedestal=st.floats(0.0, 3e4),
    read_noise=st.floats(1.0, 40.0),
)
def test_property_noiseless_linear_ramp(rp, frame_time, slope, pedestal, read_noise, cas22):
    t_bar, _, n_reads = cas22.times(rp, frame_time)
    exact = pedestal + slope * t_bar
    res = _cube(exact, (1, 2))
    gdq = _zeros_dq(res)
    out = romancore.fit_ramps(res, gdq, read_noise, rp, frame_time)
    # The only error is the float32 rounding of the resultants (|dR_i| <= EPS32 |R_i|),
    # which moves the slope by at most sum_i |K_i| EPS32 |R_i|, K of the P bin in use.
    r32 = res[:, 0, 0].astype(np.float64)
    k = cas22.coefficients(t_bar, n_reads, cas22.p_exponent(r32[0], r32[-1], read_noise))
    atol = 1.01 * EPS32 * np.abs(k * r32).sum()
    np.testing.assert_allclose(out.slope, slope, rtol=1e-5, atol=atol)
    assert not gdq.any(), "no jump in a noiseless linear ramp"


# --------------------------------------------------------------------------------------
# Degenerate pixels
# --------------------------------------------------------------------------------------
def test_single_resultant_pattern_gives_nan():
    res = _cube([100.0], (2, 2))
    gdq = _zeros_dq(res)
    out = romancore.fit_ramps(res, gdq, 10.0, [[1, 2, 3]], 3.0)
    assert np.all(np.isnan(out.slope))
    assert np.all(np.isnan(out.var_read)) and np.all(np.isnan(out.var_poisson))
    assert not gdq.any()


@pytest.mark.parametrize("use_jump", [True, False])
def test_single_usable_resultant_and_all_saturated_give_nan(use_jump):
    rp = [[1], [2], [3, 4], [5]]
    res = _cube([10.0, 20.0, 35.0, 50.0], (1, 4))
    gdq = _zeros_dq(res)
    gdq[1:, 0, 0] = SAT  # only resultant 0 usable
    gdq[:, 0, 1] = SAT  # all saturated
    gdq[0, 0, 2] = DNU  # resultants 0 and 2 flagged: 1 and 3 are isolated singles
    gdq[2, 0, 2] = DNU
    before = gdq.copy()
    out = romancore.fit_ramps(res, gdq, 5.0, rp, 1.0, use_jump=use_jump)
    for arr in (out.slope, out.var_read, out.var_poisson):
        assert np.all(np.isnan(arr[0, :3]))
        assert np.isfinite(arr[0, 3])
    np.testing.assert_allclose(out.slope[0, 3], 10.0, rtol=1e-6)  # (R_i = 10 t_bar_i)
    np.testing.assert_array_equal(gdq, before)  # no jump flags on unusable pixels


# --------------------------------------------------------------------------------------
# Jumps
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("j", [1, 5, 9], ids=["first", "middle", "last"])
def test_jump_location_uniform_pattern(j):
    # 10 single-read resultants, 3 s apart; slope 20 e/s, pedestal 1000 e; a 800 e step
    # between resultants j-1 and j.  The declared read noise is 5 e (data noise-free).
    # The single difference s'_{j-1} = J / sqrt(2 RN^2 + a dt - a dt^2 / T) beats the
    # double differences spanning the step (J / sqrt(2 RN^2 + 2 a dt - 4 a dt^2 / T),
    # T = 27 s > 3 dt) and every difference without the step (delta ~ a - a_fit < 0),
    # so exactly resultants j-1 and j get JUMP_DET.  The remaining segments are exact
    # straight lines, so the slope is 20 again.
    rp = [[i] for i in range(1, 11)]
    t = 3.0 * np.arange(1, 11)
    r = 1000 + 20 * t
    r[j:] += 800
    res = _cube(r, (1, 3))
    gdq = _zeros_dq(res)
    out = romancore.fit_ramps(res, gdq, 5.0, rp, 3.0)
    flagged = np.flatnonzero(gdq[:, 0, 0] & JUMP)
    assert flagged.tolist() == [j - 1, j]
    assert np.all(gdq == (gdq[:, :1, :1] & JUMP))  # only JUMP_DET, same on every pixel
    np.testing.assert_allclose(out.slope, 20.0, rtol=1e-5)
    # without jump detection, the step biases the slope and nothing is flagged
    gdq2 = _zeros_dq(res)
    biased = romancore.fit_ramps(res, gdq2, 5.0, rp, 3.0, use_jump=False)
    assert not gdq2.any()
    assert np.all(biased.slope > 25)


@pytest.mark.parametrize("cr_read", [3, 20, 44], ids=["first", "middle", "last"])
def test_jump_roman_pattern_matches_reference(cr_read, roman_read_patterns,
                                              roman_frame_time, cas22):
    # MA table 4 (9 resultants); noise-free ramp of 30 e/s plus a 2000 e cosmic ray
    # arriving just before read ``cr_read`` (resultant 2 [3, 4], 4 [10..17] and the last
    # [44]).  The resultant containing the hit averages partial charge.
    rp = roman_read_patterns[4]
    ft = roman_frame_time
    reads = np.arange(1, rp[-1][-1] + 1)
    charge = 500 + 30 * ft * reads + np.where(reads >= cr_read, 2000.0, 0.0)
    r = np.array([charge[np.array(x) - 1].mean() for x in rp])
    res = _cube(r, (1, 2))
    gdq = _zeros_dq(res)
    out = romancore.fit_ramps(res, gdq, 12.0, rp, ft)
    t_bar, tau, n_reads = cas22.times(rp, ft)
    ref = cas22.fit_pixel(res[:, 0, 0], np.zeros(len(rp), int), 12.0, t_bar, tau, n_reads)
    hit = next(i for i, x in enumerate(rp) if cr_read <= x[-1])
    flagged = set(np.flatnonzero(gdq[:, 0, 0] & JUMP).tolist())
    assert flagged == ref.jumps
    assert hit in flagged
    assert len(flagged) == 2 and max(flagged) - min(flagged) == 1
    np.testing.assert_allclose(out.slope, ref.slope, rtol=1e-5)
    np.testing.assert_allclose(out.slope, 30.0, rtol=1e-4)
    np.testing.assert_allclose(out.var_read, ref.var_read, rtol=1e-5)
    np.testing.assert_allclose(out.var_poisson, ref.var_poisson, rtol=1e-5)


def test_noisy_ramps_match_float64_reference(roman_read_patterns, roman_frame_time,
                                             simulate_ramps, cas22):
    """Whole algorithm (segments, P bins, queue, threshold, combination) vs the float64
    reference of the spec on noisy ramps with cosmic rays and input flags."""
    rng = np.random.default_rng(7)
    rp = roman_read_patterns[5]
    ny, nx = 4, 100
    flux = np.exp(rng.uniform(np.log(0.5), np.log(5e3), (ny, nx)))
    rn = rng.uniform(5, 20, (ny, nx)).astype(np.float32)
    res, cr_read = simulate_ramps(rp, roman_frame_time, flux, rn, rng=rng, pedestal=100.0,
                                  cr_prob=0.3)
    gdq = _zeros_dq(res)
    gdq[rng.random(res.shape) < 0.02] = DNU
    gdq_in = gdq.copy()
    out = romancore.fit_ramps(res, gdq, rn, rp, roman_frame_time)
    t_bar, tau, n_reads = cas22.times(rp, roman_frame_time)
    same = 0
    for y in range(ny):
        for x in range(nx):
            ref = cas22.fit_pixel(res[:, y, x], gdq_in[:, y, x], float(rn[y, x]), t_bar,
                                  tau, n_reads)
            ours = set(np.flatnonzero(gdq[:, y, x] & JUMP).tolist())
            if ours != ref.jumps:
                continue  # a statistic within float32 rounding of the threshold
            same += 1
            np.testing.assert_allclose(out.slope[y, x], ref.slope, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(out.var_read[y, x], ref.var_read, rtol=1e-5)
            np.testing.assert_allclose(out.var_poisson[y, x], ref.var_poisson, rtol=1e-5,
                                       atol=1e-9)
    assert same >= ny * nx - 1
    assert (gdq & JUMP).any(axis=0)[cr_read > 0].mean() > 0.5


def test_jump_threshold_parameters():
    rp = [[i] for i in range(1, 11)]
    r = 1000 + 20 * 3.0 * np.arange(1, 11)
    r[5:] += 100  # a 100 e step: s ~ 100 / sqrt(2 * 25 + ...) ~ 9
    res = _cube(r)
    for intercept, expect in ((5.5, True), (50.0, False)):
        gdq = _zeros_dq(res)
        romancore.fit_ramps(res, gdq, 5.0, rp, 3.0, threshold_intercept=intercept)
        assert bool(gdq.any()) is expect
    # a large threshold_constant lowers the threshold at slope 20 (log10 20 > 0)
    gdq = _zeros_dq(res)
    romancore.fit_ramps(res, gdq, 5.0, rp, 3.0, threshold_intercept=50.0,
                        threshold_constant=40.0)
    assert gdq.any()


# --------------------------------------------------------------------------------------
# Read noise special cases
# --------------------------------------------------------------------------------------
def test_zero_read_noise_equal_weights():
    # Two segments around a DO_NOT_USE resultant, slopes 4 and 10, read noise 0:
    # all V_R vanish, the segments combine with equal weights -> (4 + 10) / 2 = 7,
    # var_read 0; var_poisson = (V_S1 + V_S2) / 4 * 7.
    rp = [[1], [2, 3], [4], [5, 6, 7], [8], [9], [10, 11]]
    ft = 2.0
    t_bar = romancore.read_pattern_metadata(rp, ft).t_bar
    r = 100 + 4 * t_bar
    r[4:] = 300 + 10 * t_bar[4:]
    res = _cube(r, (1, 2))
    gdq = _zeros_dq(res)
    gdq[3] = DNU
    out = romancore.fit_ramps(res, gdq, 0.0, rp, ft, use_jump=False)
    np.testing.assert_allclose(out.slope, 7.0, rtol=1e-6)
    assert np.all(out.var_read == 0)
    assert np.all(out.var_poisson > 0)
    # one clean noiseless segment with zero read noise, jump detection on: exact slope
    res1 = _cube(100 + 4 * t_bar)
    gdq1 = _zeros_dq(res1)
    out1 = romancore.fit_ramps(res1, gdq1, 0.0, rp, ft)
    np.testing.assert_allclose(out1.slope, 4.0, rtol=1e-6)
    assert out1.var_read[0, 0] == 0
    assert not gdq1.any()


def test_zero_read_noise_poisson_variance(cas22):
    rp = [[1], [2, 3], [4], [5, 6, 7], [8], [9], [10, 11]]
    ft = 2.0
    t_bar, tau, n_reads = cas22.times(rp, ft)
    r = 100 + 4 * t_bar
    r[4:] = 300 + 10 * t_bar[4:]
    res = _cube(r)
    gdq = _zeros_dq(res)
    gdq[3] = DNU
    out = romancore.fit_ramps(res, gdq, 0.0, rp, ft, use_jump=False)
    a = cas22.fit_segment(res[:3, 0, 0], t_bar[:3], tau[:3], n_reads[:3], 0.0)
    b = cas22.fit_segment(res[4:, 0, 0], t_bar[4:], tau[4:], n_reads[4:], 0.0)
    np.testing.assert_allclose(out.var_poisson[0, 0], (a.v_s + b.v_s) / 4 * 7, rtol=1e-5)


def test_nan_read_noise():
    rp = [[i] for i in range(1, 11)]
    r = 1000 + 60 * np.arange(1, 11.0)
    r[5:] += 5000  # a huge jump: still no flag, nothing can be computed
    res = _cube(r, (2, 2))
    rn = np.array([[np.nan, 5.0], [5.0, np.nan]], np.float32)
    gdq = _zeros_dq(res)
    out = romancore.fit_ramps(res, gdq, rn, rp, 3.0)
    nan = np.isnan(rn)
    for arr in out[:3]:
        assert np.all(np.isnan(arr[nan]))
        assert np.all(np.isfinite(arr[~nan]))
    assert not gdq[:, nan].any()
    assert gdq[:, ~nan].any()


# --------------------------------------------------------------------------------------
# DQ-split segments
# --------------------------------------------------------------------------------------
def test_dq_split_inverse_read_variance_weighting(roman_read_patterns, roman_frame_time,
                                                  simulate_ramps, cas22):
    # A DO_NOT_USE resultant (5) splits each ramp into [0..4] and [6..11].  Each segment
    # is fitted on its own (P from its own first/last resultant, Eqs. 35-40), then
    #   slope = sum w_s F_s / sum w_s,  w_s = 1 / V_R,s
    #   var_read = 1 / sum w_s,  var_poisson = sum w_s^2 V_S,s / (sum w_s)^2 * slope
    rp = roman_read_patterns[5]
    ft = roman_frame_time
    rng = np.random.default_rng(3)
    flux = np.geomspace(1.0, 3000.0, 12)[None, :]
    rn = np.full((1, 12), 9.0, np.float32)
    res, _ = simulate_ramps(rp, ft, flux, rn, rng=rng, pedestal=500.0)
    gdq = _zeros_dq(res)
    gdq[5] = DNU
    out = romancore.fit_ramps(res, gdq, rn, rp, ft, use_jump=False)
    t_bar, tau, n_reads = cas22.times(rp, ft)
    for x in range(12):
        r = res[:, 0, x]
        fits = [cas22.fit_segment(r[sl], t_bar[sl], tau[sl], n_reads[sl], 9.0)
                for sl in (slice(0, 5), slice(6, 12))]
        w = np.array([1 / f.v_r for f in fits])
        s = np.array([f.slope for f in fits])
        vs = np.array([f.v_s for f in fits])
        slope = (w * s).sum() / w.sum()
        np.testing.assert_allclose(out.slope[0, x], slope, rtol=1e-5)
        np.testing.assert_allclose(out.var_read[0, x], 1 / w.sum(), rtol=1e-5)
        np.testing.assert_allclose(out.var_poisson[0, x],
                                   (w * w * vs).sum() / w.sum() ** 2 * max(slope, 0),
                                   rtol=1e-5)
        # the split fit differs from the fit of the whole ramp
        whole = cas22.fit_segment(r, t_bar, tau, n_reads, 9.0)
        assert out.var_read[0, x] > whole.v_r
    assert np.all(gdq[5] == DNU) and not np.delete(gdq, 5, axis=0).any()


def test_any_flag_splits_the_ramp():
    # A noiseless ramp with a garbage value in resultant 3: flagged with any bit (here
    # the otherwise meaningless OUTLIER bit), it is excluded and the slope is exact.
    rp = [[1], [2], [3], [4], [5], [6], [7]]
    r = 10 + 5.0 * np.arange(1, 8)
    r[3] = 1e5
    res = _cube(r, (1, 2))
    gdq = _zeros_dq(res)
    gdq[3] = np.uint8(group.OUTLIER)
    out = romancore.fit_ramps(res, gdq, 3.0, rp, 1.0)
    np.testing.assert_allclose(out.slope, 5.0, rtol=1e-6)
    assert not (gdq & JUMP).any()


# --------------------------------------------------------------------------------------
# Non-finite resultants: flagged DO_NOT_USE, the ramp split around them
# --------------------------------------------------------------------------------------
UNIFORM5 = [[1], [2], [3], [4], [5]]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("use_jump", [True, False])
def test_nonfinite_middle_resultant_splits_hand_computed(bad, use_jump):
    # single reads at t = 1..5 s, R = 10 + 5 t, read noise 3; resultant 2 is bad.
    # Segments [0, 1] and [3, 4]: two points each, slope (R_b - R_a) / 1 = 5 exactly;
    #   V_R = RN^2 (K_0^2 + K_1^2) = 2 RN^2 = 18 each  -> var_read = 1 / (2 / 18) = 9
    #   V_S = tau_a + tau_b - 2 t_a = t_b - t_a = 1 each -> sum w^2 V_S / (sum w)^2 = 1/2
    #   var_poisson = 5 / 2
    r = 10 + 5.0 * np.arange(1, 6)
    res = _cube(r, (2, 3))
    res[2, 1, 2] = bad
    res[2, 0, 0] = bad
    gdq = _zeros_dq(res)
    out = romancore.fit_ramps(res, gdq, 3.0, UNIFORM5, 1.0, use_jump=use_jump)
    for y, x in ((0, 0), (1, 2)):
        np.testing.assert_allclose(out.slope[y, x], 5.0, rtol=1e-6)
        np.testing.assert_allclose(out.var_read[y, x], 9.0, rtol=1e-6)
        np.testing.assert_allclose(out.var_poisson[y, x], 2.5, rtol=1e-6)
        assert gdq[:, y, x].tolist() == [0, 0, DNU, 0, 0]
    # the other pixels: one segment of 5 points, untouched DQ
    assert not np.delete(gdq.reshape(5, -1), [0, 5], axis=1).any()
    np.testing.assert_allclose(out.slope, 5.0, rtol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, 4])
def test_nonfinite_first_or_last_resultant_hand_computed(bad, where):
    # R = 10 + 5 t at t = 1..5; dropping the first or last resultant leaves 4 evenly
    # spaced points; S = 15 / sqrt(9 + 15) < 5, so P = 0 (OLS): K = [-3, -1, 1, 3] / 10,
    #   var_read = RN^2 sum K^2 = 9 * 0.2 = 1.8,
    #   V_S = sum K^2 tau + 2 sum_{j<i} K_i K_j t_j = 0.34 for t = 1..4 and for t = 2..5
    #   (shift invariant), var_poisson = 5 * 0.34 = 1.7.
    r = 10 + 5.0 * np.arange(1, 6)
    res = _cube(r, (1, 2))
    res[where, 0, 0] = bad
    gdq = _zeros_dq(res)
    out = romancore.fit_ramps(res, gdq, 3.0, UNIFORM5, 1.0)
    np.testing.assert_allclose(out.slope[0, 0], 5.0, rtol=1e-6)
    np.testing.assert_allclose(out.var_read[0, 0], 1.8, rtol=1e-6)
    np.testing.assert_allclose(out.var_poisson[0, 0], 1.7, rtol=1e-6)
    expected = [0] * 5
    expected[where] = DNU
    assert gdq[:, 0, 0].tolist() == expected
    assert not gdq[:, 0, 1].any()


@pytest.mark.parametrize("n_threads", [1, 2])
def test_all_nonfinite_pixel_flagged_and_nan(n_threads):
    rp = [[1], [2, 3], [4]]
    res = _cube([10.0, 20.0, 30.0], (2, 3))
    res[:, 0, 1] = np.nan
    res[:, 1, 2] = [np.inf, np.nan, -np.inf]
    res[:2, 1, 0] = np.nan  # one finite resultant left: no segment
    gdq = _zeros_dq(res)
    out = romancore.fit_ramps(res, gdq, 2.0, rp, 1.0, n_threads=n_threads)
    for y, x in ((0, 1), (1, 2), (1, 0)):
        for arr in out[:3]:
            assert np.isnan(arr[y, x])
    assert (gdq[:, 0, 1] == DNU).all() and (gdq[:, 1, 2] == DNU).all()
    assert gdq[:, 1, 0].tolist() == [DNU, DNU, 0]
    good = np.ones((2, 3), bool)
    good[0, 1] = good[1, 2] = good[1, 0] = False
    assert np.all(np.isfinite(out.slope[good]))
    assert not gdq[:, good].any()


def test_nonfinite_flagged_with_nan_read_noise_and_single_resultant():
    # no fit is possible, but the bad resultant is still flagged
    res = _cube([1.0, np.nan, 3.0], (1, 2))
    gdq = _zeros_dq(res)
    out = romancore.fit_ramps(res, gdq, np.array([[np.nan, 1.0]], np.float32),
                              [[1], [2], [3]], 1.0)
    assert gdq[:, 0, 0].tolist() == [0, DNU, 0] == gdq[:, 0, 1].tolist()
    assert np.isnan(out.slope[0, 0]) and np.isnan(out.slope[0, 1])  # two single resultants
    one = _cube([np.inf], (1, 2))
    one[0, 0, 1] = 5.0
    g1 = _zeros_dq(one)
    romancore.fit_ramps(one, g1, 1.0, [[1, 2]], 1.0)
    assert g1[0, 0].tolist() == [DNU, 0]


@pytest.mark.parametrize("use_jump", [True, False], ids=["jump", "nojump"])
def test_nonfinite_same_as_do_not_use(use_jump, roman_read_patterns, roman_frame_time,
                                      simulate_ramps):
    # A realistic scene (cosmic rays, saturated tails, flagged resultants) with 2 % of
    # the resultants replaced by NaN, +inf or -inf gives bit for bit the slopes,
    # variances and flags of the same scene with those resultants flagged DO_NOT_USE
    # instead (and the original finite values kept), for any number of threads.
    rng = np.random.default_rng(21)
    rp = roman_read_patterns[4]
    shape = (40, 90)
    flux = np.exp(rng.uniform(np.log(0.5), np.log(5e3), shape))
    rn = rng.uniform(5, 20, shape).astype(np.float32)
    res, _ = simulate_ramps(rp, roman_frame_time, flux, rn, rng=rng, pedestal=3e3,
                            cr_prob=0.1)
    gdq = _zeros_dq(res)
    n = res.shape[0]
    sat = rng.random(shape) < 0.05
    first = rng.integers(1, n, shape)
    gdq[(np.arange(n)[:, None, None] >= first) & sat] |= SAT
    gdq[rng.random(res.shape) < 0.01] |= DNU
    bad = rng.random(res.shape) < 0.02
    bad[:, 0, 0] = True  # one all-bad pixel
    values = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32), res.shape)
    with_bad = np.where(bad, values, res).astype(np.float32)
    flagged = gdq.copy()
    flagged[bad] |= DNU
    ref = romancore.fit_ramps(res, flagged, rn, rp, roman_frame_time, use_jump=use_jump,
                              n_threads=1)
    assert np.isfinite(ref.slope).mean() > 0.95
    for n_threads in (1, 2):
        g = gdq.copy()
        out = romancore.fit_ramps(with_bad, g, rn, rp, roman_frame_time,
                                  use_jump=use_jump, n_threads=n_threads)
        np.testing.assert_array_equal(g, flagged)
        for a, b in zip(out[:3], ref[:3], strict=True):
            np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


# --------------------------------------------------------------------------------------
# Threads, identity, inputs
# --------------------------------------------------------------------------------------
def test_thread_count_invariance(roman_read_patterns, roman_frame_time, simulate_ramps):
    rng = np.random.default_rng(11)
    rp = roman_read_patterns[5]
    shape = (64, 300)
    flux = np.exp(rng.uniform(np.log(0.1), np.log(1e4), shape))
    rn = rng.uniform(5, 20, shape).astype(np.float32)
    rn[rng.random(shape) < 0.002] = np.nan
    res, _ = simulate_ramps(rp, roman_frame_time, flux, rn, rng=rng, pedestal=1e4,
                            cr_prob=0.1)
    gdq0 = _zeros_dq(res)
    gdq0[rng.random(res.shape) < 0.01] = SAT
    outs = []
    for n_threads in (1, 2, 2, -1):
        g = gdq0.copy()
        o = romancore.fit_ramps(res, g, rn, rp, roman_frame_time,
                                n_threads=n_threads)
        outs.append((o, g))
    (o1, g1) = outs[0]
    assert (g1 & JUMP).any()
    for o, g in outs[1:]:
        np.testing.assert_array_equal(g, g1)
        for a, b in zip(o[:3], o1[:3], strict=True):
            np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


def test_result_groupdq_is_callers_array_and_inputs_untouched():
    rp = [[1], [2], [3]]
    res = _cube([1.0, 2.0, 3.0], (2, 2))
    keep = res.copy()
    gdq = _zeros_dq(res)
    out = romancore.fit_ramps(res, gdq, 1.0, rp, 1.0)
    assert out.groupdq is gdq
    assert isinstance(out, romancore.RampFitResult)
    np.testing.assert_array_equal(res, keep)


def test_scalar_and_array_read_noise_agree():
    rp = [[1], [2, 3], [4], [5, 6]]
    rng = np.random.default_rng(0)
    res = (rng.normal(0, 3, (4, 3, 5)) + 50 * np.arange(4)[:, None, None]).astype(np.float32)
    a = romancore.fit_ramps(res, _zeros_dq(res), 7.0, rp, 2.0)
    b = romancore.fit_ramps(res, _zeros_dq(res), np.full((3, 5), 7.0), rp, 2.0)
    for x, y in zip(a[:3], b[:3], strict=True):
        np.testing.assert_array_equal(x, y)


def _valid():
    rp = [[1], [2], [3]]
    res = np.ones((3, 2, 4), np.float32) * np.arange(3, dtype=np.float32)[:, None, None]
    return res, np.zeros((3, 2, 4), np.uint8), np.ones((2, 4), np.float32), rp


@pytest.mark.parametrize(
    "mutate",
    [
        lambda a: {**a, "resultants": a["resultants"].astype(np.float64)},
        lambda a: {**a, "resultants": a["resultants"][:, :, ::2]},  # shape mismatch
        lambda a: {**a, "resultants": np.asfortranarray(a["resultants"])},
        lambda a: {**a, "resultants": a["resultants"].tolist()},
        lambda a: {**a, "resultants": a["resultants"][0]},  # 2-D
        lambda a: {**a, "resultants": np.zeros((3, 0, 4), np.float32),
                   "groupdq": np.zeros((3, 0, 4), np.uint8)},
        lambda a: {**a, "groupdq": a["groupdq"].astype(np.uint32)},
        lambda a: {**a, "groupdq": a["groupdq"][:2]},
        lambda a: {**a, "groupdq": np.asfortranarray(a["groupdq"])},
        lambda a: {**a, "groupdq": _readonly(a["groupdq"])},
        lambda a: {**a, "read_noise": np.ones((2, 5), np.float32)},
        lambda a: {**a, "read_noise": -1.0},
        lambda a: {**a, "read_pattern": [[1], [2]]},  # length mismatch
        lambda a: {**a, "read_pattern": [[1], [3], [2]]},
        lambda a: {**a, "read_pattern": [[1], [2], [3.5]]},  # non-integer read number
        lambda a: {**a, "read_pattern": [[1.5], [2], [3]]},  # would truncate to 1
        lambda a: {**a, "read_pattern": [["1"], ["2"], ["3"]]},  # strings
        lambda a: {**a, "read_pattern": ["1", "2", "3"]},
        lambda a: {**a, "read_pattern": "123"},
        lambda a: {**a, "read_pattern": [[True], [2], [3]]},
        lambda a: {**a, "read_pattern": [[1], [2], [np.inf]]},
        lambda a: {**a, "read_pattern": [[1], [2], [None]]},
        lambda a: {**a, "read_pattern": 3},
        lambda a: {**a, "frame_time": 0.0},
        lambda a: {**a, "threshold_intercept": np.nan},
        lambda a: {**a, "threshold_constant": np.inf},
        lambda a: {**a, "n_threads": 0},
    ],
)
def test_input_validation(mutate):
    res, gdq, rn, rp = _valid()
    args = {"resultants": res, "groupdq": gdq, "read_noise": rn, "read_pattern": rp,
            "frame_time": 1.0}
    args = mutate(args)
    kwargs = {k: args.pop(k) for k in ("threshold_intercept", "threshold_constant",
                                       "n_threads") if k in args}
    with pytest.raises(ValueError):
        romancore.fit_ramps(args["resultants"], args["groupdq"], args["read_noise"],
                            args["read_pattern"], args["frame_time"], **kwargs)
    # the valid call works
    romancore.fit_ramps(*_valid()[:3], _valid()[3], 1.0)


def test_read_pattern_error_names_the_problem():
    res, gdq, rn, _ = _valid()
    with pytest.raises(ValueError, match=r"resultant 0: read number 1.5 is not an integer"):
        romancore.fit_ramps(res, gdq, rn, [[1.5], [2], [3]], 1.0)
    with pytest.raises(ValueError, match="resultant 1: read number '2' is not an integer"):
        romancore.fit_ramps(res, gdq, rn, [[1], ["2"], [3]], 1.0)


def test_integral_float_and_numpy_read_patterns_accepted():
    res, _, rn, rp = _valid()
    ref = romancore.fit_ramps(res, np.zeros(res.shape, np.uint8), rn, rp, 1.0)
    for pattern in ([[1.0], [2.0], [3.0]], np.array([[1], [2], [3]]),
                    [np.array([1], np.int16), (np.float32(2),), [np.uint8(3)]]):
        out = romancore.fit_ramps(res, np.zeros(res.shape, np.uint8), rn, pattern, 1.0)
        for a, b in zip(out[:3], ref[:3], strict=True):
            np.testing.assert_array_equal(a, b)


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def test_tables_built_once_per_read_pattern_and_read_only():
    from romancore.ramp import fit as fit_module

    pattern = [[1], [2, 3], [4, 5, 6], [7]]
    fit_module._tables_for.cache_clear()
    data = np.cumsum(np.full((4, 2, 3), 10.0, np.float32), axis=0)
    for _ in range(3):
        res = fit_module.fit_ramps(data, np.zeros(data.shape, np.uint8), 5.0, pattern, 3.0)
        assert np.all(np.isfinite(res.slope))
    info = fit_module._tables_for.cache_info()
    assert (info.misses, info.hits) == (1, 2)
    tables = fit_module._tables_for(fit_module._pattern_key(pattern), 3.0)
    assert not any(array.flags.writeable for array in tables)
