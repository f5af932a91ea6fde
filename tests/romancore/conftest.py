"""Shared helpers of the romancore tests: a read-by-read ramp simulator and an
independent float64 reference of the Casertano (2022) fit with queue-based jump
detection, written from the equations of the spec (``seeds/000:1190-1306``), not from
``romancore.ramp._tables``.

The helpers are exposed as session fixtures (``simulate_ramps``, ``cas22``) so that test
modules do not import ``conftest`` by name.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

#: Frame (read) time of the WFI in seconds (romanisim ``parameters.read_time``).
ROMAN_FRAME_TIME = 3.16247

#: Real Roman multi-accumulation tables (romanisim ``models/parameters.py``,
#: ``read_pattern`` dict, "Rev F"), keyed by MA table number.  All have uneven
#: resultants; 9, 12 and 15 resultants respectively.
ROMAN_READ_PATTERNS = {
    4: [[1], [2], [3, 4], [5, 6, 7, 8, 9],
        [10 + x for x in range(8)],
        [18 + x for x in range(8)],
        [26 + x for x in range(8)],
        [34 + x for x in range(10)], [44]],
    5: [[1], [2], [3, 4], [5, 6, 7, 8, 9, 10],
        [11 + x for x in range(6)],
        [17 + x for x in range(6)],
        [23 + x for x in range(6)],
        [29 + x for x in range(6)],
        [35 + x for x in range(8)],
        [43 + x for x in range(10)],
        [53 + x for x in range(10)], [63]],
    7: [[1], [2], [3, 4],
        [5 + x for x in range(8)],
        [13 + x for x in range(8)],
        [21 + x for x in range(10)],
        [31 + x for x in range(10)],
        [41 + x for x in range(12)],
        [53 + x for x in range(12)],
        [65 + x for x in range(12)],
        [77 + x for x in range(12)],
        [89 + x for x in range(12)],
        [101 + x for x in range(12)],
        [113 + x for x in range(12)], [125]],
}

# Casertano et al. (2022) Table 2: lower S edges and the weight exponent P of each bin.
P_EDGES = (5.0, 10.0, 20.0, 50.0, 100.0)
P_VALUES = (0.0, 0.4, 1.0, 3.0, 6.0, 10.0)


# --------------------------------------------------------------------------------------
# Simulator
# --------------------------------------------------------------------------------------
def _simulate_ramps(
    read_pattern,
    frame_time,
    flux,
    read_noise,
    *,
    rng,
    pedestal=0.0,
    cr_prob=0.0,
    cr_amplitude=(200.0, 5000.0),
):
    """Simulate ramps read by read and average the reads into resultants.

    Parameters
    ----------
    read_pattern : list of list of int
    frame_time : float
    flux : array (ny, nx), e/s
    read_noise : float or array (ny, nx), e per read
    rng : numpy.random.Generator
    pedestal : float or array (ny, nx), e (added to every read)
    cr_prob : float
        Probability that a pixel is hit by one cosmic ray during the exposure; the hit
        happens just before a uniformly drawn read (1-based ``cr_read``), with a
        log-uniform amplitude in ``cr_amplitude``.

    Returns
    -------
    resultants : float32 array (n_resultants, ny, nx)
    cr_read : int array (ny, nx)
        1-based read number of the first read containing the cosmic ray, 0 for none.
    """
    flux = np.asarray(flux, dtype=np.float64)
    shape = flux.shape
    rn = np.broadcast_to(np.asarray(read_noise, dtype=np.float64), shape)
    last = read_pattern[-1][-1]
    hit = rng.random(shape) < cr_prob
    cr_read = np.where(hit, rng.integers(1, last + 1, size=shape), 0)
    lo, hi = np.log(cr_amplitude[0]), np.log(cr_amplitude[1])
    cr_amp = np.exp(rng.uniform(lo, hi, size=shape))
    which = {r: i for i, reads in enumerate(read_pattern) for r in reads}
    sums = np.zeros((len(read_pattern), *shape))
    charge = np.zeros(shape)
    mu = np.clip(flux, 0, None) * frame_time
    for read in range(1, last + 1):
        charge += rng.poisson(mu)
        charge += np.where(cr_read == read, cr_amp, 0.0)
        if read in which:
            sums[which[read]] += charge + pedestal + rng.normal(0.0, 1.0, shape) * rn
    n = np.array([len(r) for r in read_pattern], dtype=np.float64)[:, None, None]
    return (sums / n).astype(np.float32), cr_read


# --------------------------------------------------------------------------------------
# Independent float64 reference of the fit (spec equations)
# --------------------------------------------------------------------------------------
def read_pattern_times(read_pattern, frame_time):
    """t_bar, tau, N straight from the definitions (000:1190-1258, Casertano Eq. 14)."""
    t_bar, tau, n_reads = [], [], []
    for reads in read_pattern:
        t = [r * frame_time for r in reads]
        nr = len(t)
        t_bar.append(sum(t) / nr)
        tau.append(sum((2 * (nr - k) - 1) * t[k] for k in range(nr)) / nr**2)
        n_reads.append(nr)
    return np.array(t_bar), np.array(tau), np.array(n_reads, dtype=np.float64)


def p_exponent(first, last, rn):
    """P of Table 2 from S = S_max / sqrt(RN^2 + S_max), S_max = max(last - first, 0)."""
    smax = max(float(last) - float(first), 0.0)
    denom = math.sqrt(float(rn) ** 2 + smax)
    s = smax / denom if denom > 0 else math.nan
    if math.isnan(s):
        return P_VALUES[-1]
    return P_VALUES[sum(s >= e for e in P_EDGES)]


def segment_coefficients(t_bar, n_reads, p):
    """K_i of Eq. 37 with the weights of Eq. 45 (unscaled |t - t_mid|^P)."""
    t = np.asarray(t_bar, dtype=np.float64)
    nr = np.asarray(n_reads, dtype=np.float64)
    t_mid = 0.5 * (t[0] + t[-1])
    w = (1 + p) * nr / (1 + p * nr) * np.abs(t - t_mid) ** p
    f0, f1, f2 = w.sum(), (w * t).sum(), (w * t * t).sum()
    d = f2 * f0 - f1 * f1
    return (f0 * t - f1) * w / d


def fit_segment(r, t_bar, tau, n_reads, rn):
    """One segment: slope, V_R (with RN^2), V_S (per unit slope) and K."""
    r = np.asarray(r, dtype=np.float64)
    p = p_exponent(r[0], r[-1], rn)
    k = segment_coefficients(t_bar, n_reads, p)
    slope = float(k @ r)
    v_r = float(rn) ** 2 * float(np.sum(k * k / n_reads))
    v_s = float(np.sum(k * k * tau))
    for i in range(len(k)):
        for j in range(i + 1, len(k)):
            v_s += 2 * k[i] * k[j] * t_bar[i]
    return SimpleNamespace(slope=slope, v_r=v_r, v_s=v_s, k=k, p=p)


def _statistic(r, t_bar, tau, n_reads, rn, slope, a, b, i, j):
    dt = t_bar[i + j] - t_bar[i]
    delta = (r[i + j] - r[i]) / dt - slope
    var = (rn**2 * (1 / n_reads[i] + 1 / n_reads[i + j])
           + slope * (tau[i] + tau[i + j] - 2 * min(t_bar[i], t_bar[i + j]))) / dt**2
    var -= slope / (t_bar[b] - t_bar[a])
    return delta / math.sqrt(var) if var > 0 else math.nan


def _jump_statistic(r, t_bar, tau, n_reads, rn, slope, a, b):
    """S = max_i s_i and its argmax over the segment [a, b] (000:1276-1290)."""
    best, arg = -math.inf, None
    for i in range(a, b):
        s = _statistic(r, t_bar, tau, n_reads, rn, slope, a, b, i, 1)
        if i + 2 <= b:
            s2 = _statistic(r, t_bar, tau, n_reads, rn, slope, a, b, i, 2)
            s = s2 if math.isnan(s) or s2 > s else s
        if not math.isnan(s) and s > best:
            best, arg = s, i
    return best, arg


def _fit_pixel(r, dq, rn, t_bar, tau, n_reads, *, use_jump=True, intercept=5.5,
               constant=1 / 3):
    """Reference fit of one pixel; returns slope, var_read, var_poisson, jump set.

    Segments are runs of resultants with dq == 0.  With ``use_jump`` a segment whose
    statistic exceeds ``intercept - constant log10(clip(slope, 1, 1e4))`` is replaced by
    the sub-segments around the flagged pair.  Segments combine with w = 1 / V_R.
    """
    r = np.asarray(r, dtype=np.float64)
    n = len(r)
    queue, a = [], None
    for i in range(n + 1):
        if i < n and dq[i] == 0:
            a = i if a is None else a
        elif a is not None:
            queue.append((a, i - 1))
            a = None
    jumps, fits = set(), []
    while queue:
        a, b = queue.pop()
        if b <= a:
            continue
        sl = slice(a, b + 1)
        fit = fit_segment(r[sl], t_bar[sl], tau[sl], n_reads[sl], rn)
        if use_jump:
            stat, arg = _jump_statistic(r, t_bar, tau, n_reads, rn, fit.slope, a, b)
            thr = intercept - constant * math.log10(min(max(fit.slope, 1.0), 1e4))
            if arg is not None and stat > thr:
                jumps |= {arg, arg + 1}
                if arg > a:
                    queue.append((a, arg - 1))
                if arg + 1 < b:
                    queue.append((arg + 2, b))
                continue
        fits.append(fit)
    if not fits:
        return SimpleNamespace(slope=math.nan, var_read=math.nan, var_poisson=math.nan,
                               jumps=jumps, fits=fits)
    w = np.array([1.0 / f.v_r for f in fits])
    slopes = np.array([f.slope for f in fits])
    v_s = np.array([f.v_s for f in fits])
    slope = float((w * slopes).sum() / w.sum())
    return SimpleNamespace(
        slope=slope,
        var_read=float(1.0 / w.sum()),
        var_poisson=float((w * w * v_s).sum() / w.sum() ** 2 * max(slope, 0.0)),
        jumps=jumps,
        fits=fits,
    )


@pytest.fixture(scope="session")
def simulate_ramps():
    """The read-by-read simulator (see :func:`_simulate_ramps`)."""
    return _simulate_ramps


@pytest.fixture(scope="session")
def cas22():
    """Namespace of the float64 reference of the fit."""
    return SimpleNamespace(
        times=read_pattern_times,
        p_exponent=p_exponent,
        coefficients=segment_coefficients,
        fit_segment=fit_segment,
        fit_pixel=_fit_pixel,
        jump_statistic=_jump_statistic,
    )


@pytest.fixture(scope="session")
def roman_read_patterns():
    """Real Roman MA tables with 9, 12 and 15 resultants."""
    return ROMAN_READ_PATTERNS


@pytest.fixture(scope="session")
def roman_frame_time():
    return ROMAN_FRAME_TIME
