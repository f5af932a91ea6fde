"""Differential tests of romancore.fit_ramps against stcal 1.20 ``fit_ramps_casertano``.

Realistic ramps: Poisson signal from 0.1 to 1e4 e/s (log-uniform per pixel), read
noise 5-20 e, a pedestal of 1e3-2e4 e, cosmic rays at random reads, three real Roman
MA tables with 9, 12 and 15 uneven resultants, simulated read by read and averaged
into resultants (``conftest.simulate_ramps``).
"""

from __future__ import annotations

import numpy as np
import pytest

import romancore
from romancore.dqflags import group

stcal_fit = pytest.importorskip("stcal.ramp_fitting.ols_cas22_fit")

NY, NX = 100, 200
EPS32 = 2.0**-24  # unit roundoff of float32
RTOL = 1e-4
MA_TABLES = (4, 5, 7)


def _stcal(resultants, dq, read_noise, read_pattern, frame_time, use_jump):
    out = stcal_fit.fit_ramps_casertano(
        resultants.copy(), dq.astype(np.int32), read_noise, frame_time, read_pattern,
        use_jump=use_jump, threshold_intercept=5.5, threshold_constant=1 / 3,
    )
    return out.parameters[..., 1], out.variances[..., 0], out.variances[..., 1], out.dq


def _segments(dq_column):
    """Runs of resultants with dq == 0, as (a, b) inclusive, of length >= 2."""
    out, a = [], None
    for i, v in enumerate([*dq_column, 1]):
        if v == 0 and i < len(dq_column):
            a = i if a is None else a
        elif a is not None:
            if i - 1 > a:
                out.append((a, i - 1))
            a = None
    return out


def float32_accumulation_bounds(resultants, dq, read_noise, read_pattern, frame_time, cas22):
    """Per-pixel absolute error bounds of stcal's float32 accumulations.

    stcal's ``fit_ramp`` accumulates ``slope += K_i R_i`` into a float32 struct member,
    rounding after every one of the L terms of a segment; each rounding is at most
    ``EPS32 |partial sum| <= EPS32 sum_i |K_i R_i|``.  The weighted combination of the
    segments adds a few more float32 roundings of the same size.  Hence the slope of a
    pixel may differ from an exact evaluation by up to
    ``(L + 4) EPS32 max_segments sum_i |K_i R_i|``.  For a pixel with a large pedestal
    and a tiny slope this dominates: e.g. R ~ 2e4 e, sum|K| ~ 2 / 400 s gives ~1e-4 e/s
    absolute, i.e. 1e-3 relative at 0.1 e/s, far above RTOL; it is below RTOL for bright
    pixels.  The Poisson variance factor ``V_S`` is accumulated the same way
    (``poisson_var += K_i^2 tau_i + 2 K_i sum_{j<i} K_j t_j``, float32), bounded by
    ``(L + 4) EPS32 sum_i |K_i^2 tau_i + 2 K_i sum_{j<i} K_j t_j|``.

    The segments are those stcal used (runs of zeros in the dq it returns), ``K`` from
    the independent float64 reference of the spec equations.

    Returns
    -------
    atol_slope, atol_vs, v_s : arrays (ny, nx)
        The two bounds and the combined ``V_S = sum w^2 V_S,s / (sum w)^2``.
    """
    t_bar, tau, n_reads = cas22.times(read_pattern, frame_time)
    n = resultants.shape[0]
    r = resultants.reshape(n, -1).astype(np.float64)
    d = dq.reshape(n, -1)
    rn = np.asarray(read_noise, dtype=np.float64).ravel()
    atol_s = np.zeros(r.shape[1])
    atol_vs = np.zeros(r.shape[1])
    v_s = np.zeros(r.shape[1])

    def terms(k, rr, tb, ta):
        cum = np.cumsum(k * tb, axis=-1) - k * tb
        return np.abs(k * rr).sum(-1), np.abs(k * k * ta + 2 * k * cum).sum(-1), (
            k * k * ta + 2 * k * cum).sum(-1)

    # Unflagged pixels, vectorised: one segment [0, n - 1], K for the pixel's P bin.
    clean = ~(d != 0).any(axis=0)
    smax = np.maximum(r[-1, clean] - r[0, clean], 0)
    s = smax / np.sqrt(rn[clean] ** 2 + smax)
    p_bin = np.searchsorted([5.0, 10.0, 20.0, 50.0, 100.0], s, side="right")
    p_vals = np.array([0.0, 0.4, 1.0, 3.0, 6.0, 10.0])
    k_all = np.array([cas22.coefficients(t_bar, n_reads, p) for p in p_vals])
    k = k_all[p_bin]  # (npix, n)
    sum_kr, sum_vs_terms, vs = terms(k, r[:, clean].T, t_bar, tau)
    atol_s[clean] = (n + 4) * EPS32 * sum_kr
    atol_vs[clean] = (n + 4) * EPS32 * sum_vs_terms
    v_s[clean] = vs
    # Flagged pixels (jumps, saturation): loop over the segments stcal used.  The
    # combined slope is sum w_s s_s / sum w (w = 1 / V_R), so its error is at most the
    # same weighted mean of the segment bounds, plus the float32 roundings of the
    # combination itself, (m + 3) EPS32 sum w |s_s| / sum w for m segments.
    for pix in np.flatnonzero(~clean):
        acc = np.zeros(5)  # sum w, sum w atol_s, sum w |s|, sum w^2 atol_vs, sum w^2 V_S
        segs = _segments(d[:, pix])
        for a, b in segs:
            sl = slice(a, b + 1)
            rr = r[sl, pix]
            kk = cas22.coefficients(t_bar[sl], n_reads[sl], cas22.p_exponent(rr[0], rr[-1],
                                                                           rn[pix]))
            skr, svt, v = terms(kk, rr, t_bar[sl], tau[sl])
            w = 1.0 / np.sum(kk * kk / n_reads[sl])  # rn^2 cancels in the weighted means
            acc += [w, w * (b - a + 5) * EPS32 * skr, w * abs(kk @ rr),
                    w * w * (b - a + 5) * EPS32 * svt, w * w * v]
        if segs:
            atol_s[pix] = (acc[1] + (len(segs) + 3) * EPS32 * acc[2]) / acc[0]
            atol_vs[pix] = acc[3] / acc[0] ** 2
            v_s[pix] = acc[4] / acc[0] ** 2
    shape = resultants.shape[1:]
    return atol_s.reshape(shape), atol_vs.reshape(shape), v_s.reshape(shape)


_CACHE: dict = {}


def _scene(ma, read_patterns, frame_time, simulate_ramps):
    """Simulated exposure for one MA table (cached: shared by the use_jump cases)."""
    if ma not in _CACHE:
        rng = np.random.default_rng(1000 + ma)
        rp = read_patterns[ma]
        flux = np.exp(rng.uniform(np.log(0.1), np.log(1e4), (NY, NX)))
        rn = rng.uniform(5.0, 20.0, (NY, NX)).astype(np.float32)
        pedestal = rng.uniform(1e3, 2e4, (NY, NX))
        res, cr_read = simulate_ramps(rp, frame_time, flux, rn, rng=rng, pedestal=pedestal,
                                      cr_prob=0.05)
        gdq = np.zeros(res.shape, np.uint8)
        if ma == 5:
            # Some realistic input flags: saturated tails on 3 % of the pixels and a few
            # scattered DO_NOT_USE resultants (the ramp must split around them).
            n = res.shape[0]
            sat = rng.random((NY, NX)) < 0.03
            first = rng.integers(1, n, (NY, NX))
            idx = np.arange(n)[:, None, None]
            gdq[(idx >= first) & sat] |= np.uint8(group.SATURATED)
            dnu = rng.random(res.shape) < 0.002
            gdq[dnu] |= np.uint8(group.DO_NOT_USE)
        _CACHE[ma] = (rp, flux, rn, res, gdq, cr_read)
    return _CACHE[ma]


@pytest.mark.parametrize("use_jump", [True, False], ids=["jump", "nojump"])
@pytest.mark.parametrize("ma", MA_TABLES)
def test_matches_stcal(ma, use_jump, roman_read_patterns, roman_frame_time, simulate_ramps,
                       cas22):
    rp, flux, rn, res, gdq_in, cr_read = _scene(ma, roman_read_patterns, roman_frame_time,
                                                simulate_ramps)
    assert 6 <= len(rp) <= 16
    gdq = gdq_in.copy()
    ours = romancore.fit_ramps(res, gdq, rn, rp, roman_frame_time, use_jump=use_jump,
                               threshold_intercept=5.5, threshold_constant=1 / 3)
    s_slope, s_vr, s_vp, s_dq = _stcal(res, gdq_in, rn, rp, roman_frame_time, use_jump)

    # Jump flags: JUMP_DET set by us vs. by stcal (which sets dq = JUMP_DET = 4 on
    # resultants that had dq == 0).  Identical on >= 99.99 % of the pixels.
    ours_jump = (gdq & np.uint8(group.JUMP_DET)) != 0
    stcal_jump = (s_dq & int(group.JUMP_DET)) != 0
    assert not (gdq_in & np.uint8(group.JUMP_DET)).any()
    same_pixel = np.all(ours_jump == stcal_jump, axis=0)
    agreement = same_pixel.mean()
    assert agreement >= 0.9999, f"jump-flag agreement {agreement:.6f}"
    # Our other flags are untouched.
    np.testing.assert_array_equal(gdq & ~np.uint8(group.JUMP_DET), gdq_in)
    if use_jump:
        hit = cr_read > 0
        # sanity of the scene: most cosmic rays are found (they are >= 200 e)
        assert ours_jump.any(axis=0)[hit].mean() > 0.5
    else:
        assert not ours_jump.any()

    # Compare fits where both used the same segments.
    m = same_pixel
    fin = np.isfinite(ours.slope)
    # stcal returns 0 where we return NaN (no usable segment): those are only the pixels
    # with no fit at all, checked in test_documented_differences.
    assert np.all(s_slope[m & ~fin] == 0)
    m &= fin
    assert m.mean() > 0.99
    atol_s, atol_vs, v_s = float32_accumulation_bounds(
        res, s_dq, rn, rp, roman_frame_time, cas22)

    diff = np.abs(ours.slope.astype(np.float64) - s_slope)
    tol = RTOL * np.abs(s_slope) + atol_s
    bad = m & (diff > tol)
    assert not bad.any(), (
        f"{bad.sum()} slopes differ; worst ratio {np.max(diff[m] / tol[m]):.3g}"
    )
    # The atol only matters at low rate / high pedestal; bright pixels agree on a tight
    # rtol alone (observed <= 1e-6: float32 t_bar and frame time in stcal, ~1e-7).
    bright = m & (np.abs(s_slope) > 100)
    assert bright.sum() > 1000
    np.testing.assert_allclose(ours.slope[bright], s_slope[bright], rtol=1e-5)

    # Read variance: a sum of positive terms, no cancellation: rtol only.
    np.testing.assert_allclose(ours.var_read[m], s_vr[m], rtol=RTOL)
    # Poisson variance V_S max(slope, 0): slope error times V_S, V_S accumulation error
    # times the slope, plus rtol.
    tol_vp = RTOL * np.abs(s_vp) + v_s * atol_s + np.maximum(s_slope, 0) * atol_vs
    dvp = np.abs(ours.var_poisson.astype(np.float64) - s_vp)
    assert not (m & (dvp > tol_vp)).any(), f"worst {np.max(dvp[m] / tol_vp[m]):.3g}"


def test_float32_bound_is_needed_but_not_loose(roman_read_patterns, roman_frame_time,
                                               simulate_ramps, cas22):
    """The atol is real (some low-rate pixels exceed RTOL) yet stays a few percent of
    the slope noise, and the observed differences are well inside it."""
    rp, flux, rn, res, gdq_in, _ = _scene(4, roman_read_patterns, roman_frame_time,
                                          simulate_ramps)
    ours = romancore.fit_ramps(res, gdq_in.copy(), rn, rp, roman_frame_time)
    s_slope, s_vr, s_vp, s_dq = _stcal(res, gdq_in, rn, rp, roman_frame_time, True)
    atol_s, _, _ = float32_accumulation_bounds(res, s_dq, rn, rp, roman_frame_time, cas22)
    diff = np.abs(ours.slope.astype(np.float64) - s_slope)
    ok = np.isfinite(ours.slope)
    assert (diff[ok] > RTOL * np.abs(s_slope[ok])).sum() > 0
    assert np.max(diff[ok] / atol_s[ok]) < 0.5
    # the allowance is small compared with the statistical error of the slope
    assert np.max(atol_s[ok] / np.sqrt(s_vr[ok] + s_vp[ok])) < 0.02


def test_documented_differences():
    """stcal returns slope 0 where romancore returns the equal-weight fit (zero read
    noise) or NaN (no usable segment)."""
    rp = [[1], [2, 3], [4, 5, 6], [7], [8, 9], [10]]
    ft = 3.0
    t_bar = romancore.read_pattern_metadata(rp, ft).t_bar
    n = len(rp)
    # pixel 0: zero read noise, one clean noiseless ramp (slope 7)
    # pixel 1: zero read noise, two segments with slopes 4 and 10 (resultant 3 flagged)
    # pixel 2: all resultants saturated; pixel 3: one usable resultant
    # pixel 4: NaN read noise (both NaN); pixel 5: normal (both agree)
    res = np.zeros((n, 1, 6), np.float32)
    res[:, 0, 0] = 50 + 7 * t_bar
    seg2 = 200 + 4 * t_bar
    seg2[4:] = 900 + 10 * t_bar[4:]
    res[:, 0, 1] = seg2
    res[:, 0, 2:] = (100 + 20 * t_bar)[:, None]
    gdq = np.zeros(res.shape, np.uint8)
    gdq[3, 0, 1] = group.DO_NOT_USE
    gdq[:, 0, 2] = group.SATURATED
    gdq[1:, 0, 3] = group.SATURATED
    rn = np.array([[0.0, 0.0, 10.0, 10.0, np.nan, 10.0]], np.float32)

    ours = romancore.fit_ramps(res, gdq.copy(), rn, rp, ft, use_jump=False)
    s_slope, s_vr, s_vp, _ = _stcal(res, gdq, rn, rp, ft, False)

    np.testing.assert_allclose(ours.slope[0, 0], 7.0, rtol=1e-5)
    assert ours.var_read[0, 0] == 0
    np.testing.assert_allclose(ours.slope[0, 1], 7.0, rtol=1e-5)  # (4 + 10) / 2
    assert ours.var_read[0, 1] == 0
    assert s_slope[0, 0] == 0 and s_slope[0, 1] == 0
    assert np.all(np.isnan(ours.slope[0, 2:5]))
    assert np.all(np.isnan(ours.var_read[0, 2:5])) and np.all(np.isnan(ours.var_poisson[0, 2:5]))
    assert s_slope[0, 2] == 0 and s_slope[0, 3] == 0
    assert np.isnan(s_slope[0, 4])
    np.testing.assert_allclose(ours.slope[0, 5], s_slope[0, 5], rtol=1e-6)
    np.testing.assert_allclose(ours.slope[0, 5], 20.0, rtol=1e-5)
    np.testing.assert_allclose(ours.var_read[0, 5], s_vr[0, 5], rtol=1e-5)
    np.testing.assert_allclose(ours.var_poisson[0, 5], s_vp[0, 5], rtol=1e-5)


def test_documented_difference_nonfinite_resultant():
    """stcal gives slope 0 (NaN resultant) or an infinite slope (infinite resultant)
    and no flag; romancore flags DO_NOT_USE and fits the resultants on both sides,
    exactly like stcal fits the same ramp with that resultant flagged DO_NOT_USE."""
    rp = [[1], [2, 3], [4, 5, 6], [7], [8, 9], [10]]
    ft = 3.0
    t_bar = romancore.read_pattern_metadata(rp, ft).t_bar
    res = np.zeros((len(rp), 1, 2), np.float32)
    res[:] = (100 + 20 * t_bar)[:, None, None]
    res[2, 0, 0] = np.nan
    res[2, 0, 1] = np.inf
    rn = np.full((1, 2), 10.0, np.float32)
    s_slope, _, _, s_dq = _stcal(res, np.zeros(res.shape, np.uint8), rn, rp, ft, True)
    assert s_slope[0, 0] == 0 and np.isinf(s_slope[0, 1]) and not s_dq.any()
    gdq = np.zeros(res.shape, np.uint8)
    ours = romancore.fit_ramps(res, gdq, rn, rp, ft)
    assert (gdq[2] == group.DO_NOT_USE).all() and not np.delete(gdq, 2, axis=0).any()
    flagged = np.zeros(res.shape, np.uint8)
    flagged[2] = group.DO_NOT_USE
    f_slope, f_vr, f_vp, _ = _stcal(np.where(np.isfinite(res), res, 0), flagged, rn, rp, ft,
                                    True)
    np.testing.assert_allclose(ours.slope, 20.0, rtol=1e-5)
    np.testing.assert_allclose(ours.slope, f_slope, rtol=1e-5)
    np.testing.assert_allclose(ours.var_read, f_vr, rtol=1e-5)
    np.testing.assert_allclose(ours.var_poisson, f_vp, rtol=1e-5)
