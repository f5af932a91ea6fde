"""Tests of the step test of romancore.fit_ramps_likely (``jump_test='step'``).

The reference here is written from the definitions: the covariance of the resultant
differences is built read by read (charge ``Poisson`` increments, read noise on each
read, resultants the means of their reads) and inverted densely; a step of 1 e- just
before read ``k`` is the change of the differences when every read from ``k`` on gains
1 e-; its significance with the slope profiled out is ``t^T P d / sqrt(t^T P t)``.
Nothing is shared with the kernel's recursions or with ``step_templates``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import romancore
from romancore.dqflags import group
from romancore.ramp import _likely
from romancore.ramp.likely import STEP_SAFETY, likely_tables, step_templates

FT = 3.0
JUMP = group.JUMP_DET


def _reads_model(pattern, rate, rn, frame_time=FT):
    """Dense covariance of the differences per unit time, and reads -> differences."""
    nread = pattern[-1][-1]
    t = np.arange(1, nread + 1) * frame_time
    avg = np.zeros((len(pattern), nread))
    for j, reads in enumerate(pattern):
        avg[j, np.array(reads) - 1] = 1.0 / len(reads)
    cov_res = (avg @ (rate * np.minimum.outer(t, t)) @ avg.T
               + np.diag([rn**2 / len(r) for r in pattern]))
    dt = np.diff(avg @ t)
    diff = (np.eye(len(pattern))[1:] - np.eye(len(pattern))[:-1]) / dt[:, None]
    return diff @ cov_res @ diff.T, diff @ avg


def _dense_best_step(resultants, pattern, rate, rn):
    """Largest positive step significance over reads 2..last, and its read."""
    cov, to_diff = _reads_model(pattern, rate, rn)
    # float32 differences (exact for the data's precision), then per unit time
    r32 = np.asarray(resultants, np.float32)
    d = (r32[1:] - r32[:-1]).astype(np.float64) / np.diff([np.mean(r) * FT for r in pattern])
    cinv = np.linalg.inv(cov)
    one = cinv.sum(axis=1)
    proj = cinv - np.outer(one, one) / one.sum()
    best, best_k = -np.inf, None
    for k in range(2, pattern[-1][-1] + 1):
        t = to_diff @ (np.arange(1, pattern[-1][-1] + 1) >= k).astype(float)
        z = (t @ proj @ d) / math.sqrt(t @ proj @ t)
        if z > best:
            best, best_k = z, k
    return best, best_k


def _fit(r, pattern, rn, dq=None, **kw):
    r = np.ascontiguousarray(np.asarray(r, np.float32).reshape(len(pattern), 1, -1))
    g = np.zeros(r.shape, np.uint8) if dq is None else np.asarray(dq, np.uint8).reshape(r.shape)
    return romancore.fit_ramps_likely(r, g, rn, pattern, FT, jump_test="step", **kw)


def test_templates_hand_computed():
    # Resultants of 1, 2, 4 and 1 reads: mean times 3, 7.5, 16.5, 24 s (dt 4.5, 9, 7.5).
    pattern = [[1], [2, 3], [4, 5, 6, 7], [8]]
    st = step_templates(pattern, FT)
    dt = [4.5, 9.0, 7.5]
    # read 2: all of resultant 1 -> difference 0 only; read 3: half of resultant 1;
    # read 4: difference 1 only; reads 5, 6, 7: 3/4, 1/2, 1/4 of resultant 2; read 8.
    expected = [(0, 1 / dt[0], 0.0), (0, 0.5 / dt[0], 0.5 / dt[1]), (1, 1 / dt[1], 0.0),
                (1, 0.75 / dt[1], 0.25 / dt[2]), (1, 0.5 / dt[1], 0.5 / dt[2]),
                (1, 0.25 / dt[1], 0.75 / dt[2]), (2, 1 / dt[2], 0.0)]
    assert st.index.tolist() == [e[0] for e in expected]
    np.testing.assert_allclose(st.u, [e[1] for e in expected], rtol=1e-15)
    np.testing.assert_allclose(st.v, [e[2] for e in expected], rtol=1e-15)
    # a skipped read merges with the first read of the next resultant
    skipped = step_templates([[1], [3], [5, 6]], FT)
    assert len(skipped.index) == 3  # reads 2-3, 4-5 and 6


def test_step_inside_a_resultant_noiseless():
    # A noiseless ramp with a 300 e step before read 6 (the middle of resultant 2):
    # both differences around resultant 2 are dropped, resultants 2 and 3 flagged,
    # and the slope of the rest is the exact rate.
    pattern = [[1], [2], [3, 4], [5, 6, 7, 8], [9], [10], [11]]
    rate = 20.0
    reads = rate * FT * np.arange(1, 12) + (np.arange(1, 12) >= 6) * 300.0
    r = [np.mean(reads[np.array(p) - 1]) for p in pattern]
    out = _fit(r, pattern, 5.0, step_threshold=5.0)
    flags = out.groupdq[:, 0, 0] & JUMP
    assert flags.tolist() == [0, 0, 0, JUMP, JUMP, 0, 0]
    assert out.slope[0, 0] == pytest.approx(rate, rel=1e-5)
    # the step test is one-sided: the same step downwards is not matched where it is
    # (its flags, if any, are elsewhere), while stcal's two-sided test drops it there
    reads_down = rate * FT * np.arange(1, 12) - (np.arange(1, 12) >= 6) * 300.0
    r_down = [np.mean(reads_down[np.array(p) - 1]) for p in pattern]
    down = _fit(r_down, pattern, 5.0, step_threshold=5.0)
    assert not down.groupdq[3, 0, 0] & JUMP
    two = romancore.fit_ramps_likely(
        np.asarray(r_down, np.float32).reshape(-1, 1, 1), np.zeros((7, 1, 1), np.uint8),
        5.0, pattern, FT)
    assert two.groupdq[3, 0, 0] & JUMP


def test_step_at_a_resultant_boundary_drops_one_difference():
    pattern = [[1], [2], [3, 4], [5, 6, 7, 8], [9], [10], [11]]
    reads = 5.0 * FT * np.arange(1, 12) + (np.arange(1, 12) >= 5) * 200.0
    r = [np.mean(reads[np.array(p) - 1]) for p in pattern]
    out = _fit(r, pattern, 5.0, step_threshold=5.0)
    assert (out.groupdq[:, 0, 0] & JUMP).tolist() == [0, 0, 0, JUMP, 0, 0, 0]
    assert out.slope[0, 0] == pytest.approx(5.0, rel=1e-5)


@pytest.mark.parametrize("pattern", [
    [[1], [2], [3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14, 15, 16, 17], [18]],
    [[1], [2, 3], [5, 6, 7], [10, 11, 12, 13], [15, 16, 17, 18, 19, 20], [22]],
])
def test_statistic_matches_dense_reference(pattern):
    # Noisy ramps: the kernel flags a pixel exactly when the dense maximum step
    # significance (covariance at the kernel's rate: the GLS slope of the clean fit)
    # exceeds the threshold.  Thresholds are put just above and below that maximum.
    rng = np.random.default_rng(11)
    n = len(pattern)
    nread = pattern[-1][-1]
    rn = 8.0
    checked = 0
    for trial in range(60):
        rate = float(rng.choice([0.0, 2.0, 40.0, 500.0]))
        reads = np.cumsum(rng.poisson(rate * FT, nread)).astype(float)
        k = int(rng.integers(2, nread + 1))
        reads[k - 1:] += rng.uniform(0, 150)
        r = np.array([np.mean(reads[np.array(p) - 1]) for p in pattern])
        r += rng.normal(0, rn, n) / np.sqrt([len(p) for p in pattern])
        r = r.astype(np.float32)
        # the kernel's covariance rate for the test: GLS slope at the median rate
        base = romancore.fit_ramps_likely(r.reshape(n, 1, 1), np.zeros((n, 1, 1), np.uint8),
                                          rn, pattern, FT, use_jump=False)
        d = (r[1:] - r[:-1]).astype(np.float64) / np.diff([np.mean(p) * FT for p in pattern])
        med = max(float(np.median(d)), 0.0)
        # re-derive the GLS slope at the median rate densely
        cov, _ = _reads_model(pattern, med, rn)
        ci = np.linalg.inv(cov)
        crate = max(float(ci.sum(axis=1) @ d / ci.sum()), 0.0)
        z, _ = _dense_best_step(r, pattern, crate, rn)
        assert np.isfinite(base.slope[0, 0])
        if not z > 2.0:
            continue
        for thr, flagged in ((z * (1 - 1e-5), True), (z * (1 + 1e-5), False)):
            out = _fit(r, pattern, rn, step_threshold=thr)
            assert bool((out.groupdq & JUMP).any()) == flagged, (trial, z, thr)
        checked += 1
    assert checked > 25


def test_flagged_difference_matches_dense_best_read():
    pattern = [[1], [2], [3, 4], [5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16], [17]]
    rng = np.random.default_rng(5)
    nread = 17
    for _ in range(30):
        reads = np.cumsum(rng.poisson(3.0, nread)).astype(float)
        k = int(rng.integers(2, nread + 1))
        reads[k - 1:] += 400.0
        r = np.array([np.mean(reads[np.array(p) - 1]) for p in pattern]).astype(np.float32)
        out = _fit(r, pattern, 0.5, step_threshold=6.0)
        flagged = np.flatnonzero(out.groupdq[:, 0, 0] & JUMP)
        hit = next(j for j, p in enumerate(pattern) if p[-1] >= k)  # resultant hit
        # a hit at a resultant's first read drops the difference before it (that
        # resultant flagged); inside it, both differences around it (it and the next)
        first = pattern[hit][0] == k
        expected = [hit] if first or hit == len(pattern) - 1 else [hit, hit + 1]
        assert flagged.tolist() == expected, (k, flagged)


def _sky_ramps(pattern, npix, rate, rn, jump, seed):
    """Read-by-read sky ramps; a jump of ``jump`` e at a random read 2..last if > 0."""
    rng = np.random.default_rng(seed)
    nread = pattern[-1][-1]
    charge = np.cumsum(rng.poisson(rate * FT, (nread, npix)), axis=0).astype(float)
    if jump > 0:
        k = rng.integers(2, nread + 1, npix)
        charge += jump * (np.arange(1, nread + 1)[:, None] >= k)
    r = np.stack([charge[np.array(p) - 1].mean(axis=0) for p in pattern])
    r += rng.normal(0, rn, r.shape) / np.sqrt([len(p) for p in pattern])[:, None]
    return np.ascontiguousarray(r.astype(np.float32).reshape(len(pattern), 1, npix))


MA6 = [[1], [2], [3, 4], *[list(range(5 + 6 * i, 11 + 6 * i)) for i in range(3)],
       *[list(range(23 + 8 * i, 31 + 8 * i)) for i in range(5)],
       *[list(range(63 + 10 * i, 73 + 10 * i)) for i in range(3)], [93]]


def test_statistical_recall_and_no_false_jumps():
    # MA table 6, sky 1 e/s, 10 e read noise: a 60 e jump at a random read is found on
    # most pixels (the bound of any test at 1e-6 false positives is ~0.9 here), and
    # 100 000 clean ramps give no jump (the omission test gives ~20).
    assert MA6[-2][-1] == 92 and len(MA6) == 15
    res = _sky_ramps(MA6, 4000, 1.0, 10.0, 60.0, seed=1)
    out = romancore.fit_ramps_likely(res, np.zeros(res.shape, np.uint8), 10.0, MA6, FT,
                                     jump_test="step")
    recall = (out.groupdq & JUMP).any(axis=0).mean()
    assert recall > 0.8
    clean = _sky_ramps(MA6, 100_000, 1.0, 10.0, 0.0, seed=2)
    out = romancore.fit_ramps_likely(clean, np.zeros(clean.shape, np.uint8), 10.0, MA6, FT,
                                     jump_test="step")
    assert not (out.groupdq & JUMP).any()
    assert abs(np.mean(out.slope) - 1.0) < 0.01


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_count_and_fast_path_invariance(threads):
    rng = np.random.default_rng(8)
    pattern = [[1], [2], [3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14, 15, 16, 17], [18]]
    ny, nx = 37, 150
    rate = rng.uniform(0, 50, (ny, nx))
    t = np.array([np.mean(p) * FT for p in pattern])
    r = (rate[None] * t[:, None, None] + rng.normal(0, 6, (6, ny, nx))).astype(np.float32)
    r[3:, rng.random((ny, nx)) < 0.3] += 300
    r[4:, rng.random((ny, nx)) < 0.2] += 200
    r[2, 3, 4] = np.nan
    g0 = np.zeros(r.shape, np.uint8)
    g0[4:, rng.random((ny, nx)) < 0.05] = group.SATURATED
    rn = rng.uniform(3, 20, (ny, nx)).astype(np.float32)
    one = romancore.fit_ramps_likely(r, g0.copy(), rn, pattern, FT, jump_test="step",
                                     n_threads=1)
    many = romancore.fit_ramps_likely(r, g0.copy(), rn, pattern, FT, jump_test="step",
                                      n_threads=threads)
    for a, b in zip(one, many, strict=True):
        np.testing.assert_array_equal(a, b)
    assert (one.groupdq & JUMP).any(axis=0).mean() > 0.2
    # the vectorised block path and the per-pixel path give the same bits
    st = step_templates(pattern, FT)
    z = romancore.step_threshold_for(pattern, FT)
    outs = [np.empty((ny, nx), np.float32) for _ in range(4)]
    g = g0.copy()
    _likely.fit(r, g, rn, *likely_tables(pattern, FT), *outs, True,
                *romancore.likely_thresholds(), threads, False, step_i=st.index,
                step_u=st.u, step_v=st.v, step_sigma=z)
    for a, b in zip((one.slope, one.var_read, one.var_poisson, one.chi2, one.groupdq),
                    (*outs, g), strict=True):
        np.testing.assert_array_equal(a, b)


def test_threshold_for_a_target_rate():
    z = romancore.step_threshold_for(MA6, FT)
    assert 5.0 < z < 6.0
    bound = romancore.step_false_positive_bound(MA6, FT, z)
    assert bound == pytest.approx(1e-6 / STEP_SAFETY, rel=1e-4)
    assert romancore.step_threshold_for(MA6, FT, 1e-4) < z
    # the bound is at least the one-template tail and at most the union (Bonferroni)
    from scipy.special import ndtr
    nt = len(step_templates(MA6, FT).index)
    assert ndtr(-z) < bound < nt * ndtr(-z)


def test_errors():
    pattern = [[1], [2], [3]]
    r = np.zeros((3, 1, 1), np.float32)
    g = np.zeros((3, 1, 1), np.uint8)
    with pytest.raises(ValueError, match="jump_test"):
        romancore.fit_ramps_likely(r, g, 5.0, pattern, FT, jump_test="bogus")
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="step_threshold"):
            romancore.fit_ramps_likely(r, g, 5.0, pattern, FT, jump_test="step",
                                       step_threshold=bad)
    with pytest.raises(ValueError, match="false_positive_rate"):
        romancore.fit_ramps_likely(r, g, 5.0, pattern, FT, jump_test="step",
                                   step_false_positive_rate=0.0)
