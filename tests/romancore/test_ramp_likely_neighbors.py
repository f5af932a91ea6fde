"""Tests of the neighbour pass of romancore.fit_ramps_likely (``neighbor_pass=True``).

The hand cases are noiseless ramps (rate 0, read noise in the covariance only), so the
significance of a step is known exactly: it is computed here densely from the
definitions (covariance built read by read, ``z = t^T P d / sqrt(t^T P t)`` at the
covariance of the fitted rate, as the step search evaluates it), and the neighbour's
jump is sized to fall between the neighbour threshold and the first-pass threshold.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import romancore
from romancore.dqflags import group
from romancore.ramp.likely import STEP_SAFETY

FT = 3.0
RN = 10.0
JUMP = group.JUMP_DET
# 8 resultants, 13 reads: single reads and 2-3-read resultants
PATTERN = [[1], [2], [3, 4], [5, 6, 7], [8, 9], [10], [11, 12], [13]]


def _cov(rate):
    nread = PATTERN[-1][-1]
    t = np.arange(1, nread + 1) * FT
    avg = np.zeros((len(PATTERN), nread))
    for j, reads in enumerate(PATTERN):
        avg[j, np.array(reads) - 1] = 1.0 / len(reads)
    cov_res = avg @ (rate * np.minimum.outer(t, t)) @ avg.T + np.diag(
        [RN**2 / len(r) for r in PATTERN])
    dt = np.diff(avg @ t)
    diff = (np.eye(len(PATTERN))[1:] - np.eye(len(PATTERN))[:-1]) / dt[:, None]
    return diff @ cov_res @ diff.T, diff @ avg


def _ramp(jump, read):
    """Noiseless resultants of a rate-0 pixel with a jump just before ``read``."""
    return np.array([jump * np.mean(np.array(r) >= read) for r in PATTERN], np.float32)


def _z(jump, read):
    """Significance of the step at ``read`` as the search sees it (dense, by hand)."""
    r = _ramp(jump, read)
    _, to_diff = _cov(0.0)
    dt = np.diff([np.mean(x) * FT for x in PATTERN])
    d = (r[1:] - r[:-1]).astype(np.float64) / dt
    # the fit at the median difference (0 here), then the covariance at its slope
    c0 = np.linalg.inv(_cov(max(float(np.median(d)), 0.0))[0])
    rate = max(float(c0.sum(axis=1) @ d / c0.sum()), 0.0)
    cinv = np.linalg.inv(_cov(rate)[0])
    one = cinv.sum(axis=1)
    proj = cinv - np.outer(one, one) / one.sum()
    t = to_diff @ (np.arange(1, PATTERN[-1][-1] + 1) >= read).astype(float)
    return (t @ proj @ d) / math.sqrt(t @ proj @ t)


def _between(read, lo, hi):
    """A jump whose significance at ``read`` is midway between ``lo`` and ``hi``."""
    target = (lo + hi) / 2
    a, b = 1.0, 500.0
    for _ in range(60):
        mid = (a + b) / 2
        a, b = (mid, b) if _z(mid, read) < target else (a, mid)
    return (a + b) / 2


def _fit(cube, **kw):
    gdq = np.zeros(cube.shape, np.uint8)
    out = romancore.fit_ramps_likely(cube, gdq, RN, PATTERN, FT, jump_test="step", **kw)
    return out, gdq


@pytest.fixture(scope="module")
def thresholds():
    return (romancore.neighbor_threshold_for(PATTERN, FT),
            romancore.step_threshold_for(PATTERN, FT))


def _scene(core_jump, core_read, nb_jump, nb_read):
    cube = np.zeros((len(PATTERN), 5, 5), np.float32)
    cube[:, 2, 2] = _ramp(core_jump, core_read)
    cube[:, 2, 3] = _ramp(nb_jump, nb_read)
    return cube


def test_weak_neighbour_found_only_with_the_pass(thresholds):
    h_nb, h_1 = thresholds
    assert h_nb < h_1 - 0.3
    read = 8   # the first read of resultant 4: the step touches difference 3 only
    jump = _between(read, h_nb, h_1)
    assert h_nb + 0.1 < _z(jump, read) < h_1 - 0.1
    cube = _scene(2000.0, read, jump, read)
    off, gdq_off = _fit(cube.copy())
    on, gdq_on = _fit(cube.copy(), neighbor_pass=True)
    # the core is found by the first pass either way, at resultant 4
    assert gdq_off[:, 2, 2].tolist() == gdq_on[:, 2, 2].tolist() == [0, 0, 0, 0, JUMP, 0, 0, 0]
    assert not (gdq_off[:, 2, 3] & JUMP).any()
    assert gdq_on[:, 2, 3].tolist() == [0, 0, 0, 0, JUMP, 0, 0, 0]
    # refitted without the dropped difference: the noiseless slope is the true 0
    assert abs(on.slope[2, 3]) < 1e-3 < off.slope[2, 3]
    assert on.chi2[2, 3] < 1e-3 < off.chi2[2, 3]
    # nothing else changed
    other = np.ones((5, 5), bool)
    other[2, 3] = False
    for a, b in zip(off[:4], on[:4], strict=True):
        np.testing.assert_array_equal(a[other], b[other])
    np.testing.assert_array_equal(gdq_off[:, other], gdq_on[:, other])


def test_no_detected_neighbour_no_search(thresholds):
    h_nb, h_1 = thresholds
    jump = _between(8, h_nb, h_1)
    out, gdq = _fit(_scene(0.0, 8, jump, 8), neighbor_pass=True)
    assert not (gdq & JUMP).any()


def test_only_the_neighbours_time_is_searched(thresholds):
    h_nb, h_1 = thresholds
    # the core's jump at read 2 (difference 0); the weak one at read 12 (inside
    # resultant 6: differences 5 and 6) is not at that time
    jump = _between(12, h_nb, h_1)
    out, gdq = _fit(_scene(2000.0, 2, jump, 12), neighbor_pass=True)
    assert gdq[:, 2, 2].tolist() == [0, JUMP, 0, 0, 0, 0, 0, 0]
    assert not (gdq[:, 2, 3] & JUMP).any()
    # ... and is found where the core was hit at its time (a resultant 6 or 7 flag)
    out, gdq = _fit(_scene(2000.0, 12, jump, 12), neighbor_pass=True)
    assert (gdq[6:, 2, 3] & JUMP).any()


def test_the_threshold_overrides(thresholds):
    h_nb, h_1 = thresholds
    jump = _between(8, h_nb, h_1)
    cube = _scene(2000.0, 8, jump, 8)
    _, gdq = _fit(cube.copy(), neighbor_pass=True, neighbor_threshold=h_1)
    assert not (gdq[:, 2, 3] & JUMP).any()
    # with the omission test as first pass the same neighbour is searched the same way
    gdq = np.zeros(cube.shape, np.uint8)
    romancore.fit_ramps_likely(cube.copy(), gdq, RN, PATTERN, FT, neighbor_pass=True,
                               rejection_threshold=h_1 + 1)
    assert (gdq[:, 2, 2] & JUMP).any() and (gdq[:, 2, 3] & JUMP).any()


def _crowded(seed=3, ny=48, nx=70):
    """Sky ramps with cosmic rays spread over 3x3 pixels (1-20 % to each neighbour)."""
    rng = np.random.default_rng(seed)
    nread = PATTERN[-1][-1]
    charge = np.zeros((ny, nx))
    acc = np.zeros((len(PATTERN), ny, nx))
    hits = [(rng.integers(ny), rng.integers(nx), rng.integers(2, nread + 1),
             rng.uniform(300, 3000)) for _ in range(120)]
    owner = {r: j for j, reads in enumerate(PATTERN) for r in reads}
    for k in range(1, nread + 1):
        charge += rng.poisson(1.0 * FT, (ny, nx))
        for y, x, kk, q in hits:
            if kk == k:
                frac = rng.uniform(0.01, 0.2, (3, 3))
                frac[1, 1] = 1.0
                y0, y1, x0, x1 = max(y - 1, 0), min(y + 2, ny), max(x - 1, 0), min(x + 2, nx)
                charge[y0:y1, x0:x1] += q * frac[y0 - y + 1:y1 - y + 1, x0 - x + 1:x1 - x + 1]
        if k in owner:
            acc[owner[k]] += charge
    n = np.array([len(r) for r in PATTERN], float)[:, None, None]
    return (acc / n + rng.standard_normal(acc.shape) * RN / np.sqrt(n)).astype(np.float32)


def test_thread_invariant_and_only_adds_flags():
    cube = _crowded()
    off, gdq_off = _fit(cube.copy(), n_threads=1)
    on1, gdq1 = _fit(cube.copy(), neighbor_pass=True, n_threads=1)
    on2, gdq2 = _fit(cube.copy(), neighbor_pass=True, n_threads=2)
    np.testing.assert_array_equal(gdq1, gdq2)
    for a, b in zip(on1[:4], on2[:4], strict=True):
        np.testing.assert_array_equal(a, b)
    added = (gdq1 & JUMP).any(axis=0) & ~(gdq_off & JUMP).any(axis=0)
    assert added.sum() >= 10          # the pass finds weak neighbours here
    # first-pass flags are kept; new ones only beside a first-pass jump
    assert not ((gdq_off & JUMP) & ~gdq1).any()
    seed = (gdq_off & JUMP).any(axis=0)
    from scipy.ndimage import binary_dilation
    assert not (added & ~binary_dilation(seed, np.ones((3, 3), bool))).any()
    # pixels the pass did not flag keep their first-pass outputs
    for a, b in zip(off[:4], on1[:4], strict=True):
        np.testing.assert_array_equal(a[~added], b[~added])


def test_neighbour_threshold_and_bound():
    h = romancore.neighbor_threshold_for(PATTERN, FT, 1e-5)
    assert romancore.neighbor_false_positive_bound(PATTERN, FT, h) == pytest.approx(
        1e-5 / STEP_SAFETY, rel=1e-4)
    # fewer templates than the whole search: lower than the first pass at the same rate
    assert h < romancore.step_threshold_for(PATTERN, FT, 1e-5)
    assert romancore.neighbor_threshold_for(PATTERN, FT, 1e-4) < h
    with pytest.raises(ValueError, match="false_positive_rate"):
        romancore.neighbor_threshold_for(PATTERN, FT, 0.0)
    cube = _scene(2000.0, 8, 50.0, 8)
    with pytest.raises(ValueError, match="neighbor_threshold"):
        _fit(cube, neighbor_pass=True, neighbor_threshold=-1.0)
