"""Public wrapper of the likelihood ramp fit (Brandt 2024) with chi^2 jump detection."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from romancore._threads import effective_n_threads
from romancore._validation import check_array, check_writeable
from romancore.ramp import _likely
from romancore.readpattern import validate_read_pattern

__all__ = ["JUMP_TESTS", "LikelyFitResult", "LikelyTables", "StepTemplates",
           "fit_ramps_likely", "likely_tables", "likely_thresholds",
           "neighbor_false_positive_bound", "neighbor_threshold_for",
           "step_false_positive_bound", "step_templates", "step_threshold_for"]

#: stcal 1.20 / romancal 1.1's default rejection threshold (sigma) of the likelihood fit.
REJECTION_THRESHOLD = 4.5

#: Default target of the step test (``jump_test='step'``): false detections per clean
#: pixel, from which :func:`step_threshold_for` sets the threshold of a read pattern.
STEP_FALSE_POSITIVE_RATE = 1e-6

#: Safety factor of :func:`step_threshold_for`: the Gaussian bound is set to the target over
#: this (measured false-positive rates on simulated sky ramps exceed the Gaussian
#: prediction by up to ~2.8x: Poisson skew and the estimated covariance rate).
STEP_SAFETY = 3.0

#: Default target of the neighbour pass: false detections per clean pixel it searches
#: (a pixel with no jump beside one with a jump), from which
#: :func:`neighbor_threshold_for` sets its threshold.  The pass searches only the
#: neighbours of detected jumps (1.2-2.6 % of the pixels of a Roman exposure at
#: romanisim's cosmic-ray rate), so its share of the false positives per clean pixel is
#: at most 2.6e-7 (measured: 4e-8 to 1.1e-7).
NEIGHBOR_FALSE_POSITIVE_RATE = 1e-5

#: Jump tests of :func:`fit_ramps_likely`: stcal's omission chi^2 test, or the step test.
JUMP_TESTS = ("omission", "step")


class LikelyFitResult(NamedTuple):
    """Outputs of :func:`fit_ramps_likely`.

    Attributes
    ----------
    slope : numpy.ndarray of float32, shape (ny, nx)
        Count rate in the units of the resultants per second.
    var_read : numpy.ndarray of float32, shape (ny, nx)
        Read-noise variance of the slope.
    var_poisson : numpy.ndarray of float32, shape (ny, nx)
        Poisson variance of the slope, evaluated at the rate the covariance was built
        with (the jump search's rate, clipped at 0), as stcal does.
    chi2 : numpy.ndarray of float32, shape (ny, nx)
        chi^2 of the final fit.
    groupdq : numpy.ndarray of uint8, shape (n_resultants, ny, nx)
        The caller's group DQ array (the same object), with JUMP_DET set on the later
        resultant of every omitted difference.
    """

    slope: np.ndarray
    var_read: np.ndarray
    var_poisson: np.ndarray
    chi2: np.ndarray
    groupdq: np.ndarray


class LikelyTables(NamedTuple):
    """Covariance tables of the resultant differences of one read pattern (float64).

    With ``n`` resultants and ``m = n - 1`` differences (Brandt 2024, paper I,
    Eqs. 4, 11, 28 and 29; ``t_i`` the mean read time of resultant ``i``, ``tau_i``
    its variance-weighted time, ``N_i`` its number of reads, ``dt_i = t_{i+1} - t_i``):

    Attributes
    ----------
    dt : shape (m,)
        ``dt_i``.
    alpha_poisson : shape (m,)
        ``(tau_i + tau_{i+1} - 2 t_i) / dt_i^2``: variance of difference ``i`` per unit
        rate.
    alpha_read : shape (m,)
        ``(1 / N_i + 1 / N_{i+1}) / dt_i^2``: its variance per unit read variance.
    beta_poisson : shape (max(m - 1, 1),)
        ``(t_{i+1} - tau_{i+1}) / (dt_i dt_{i+1})``: covariance of differences ``i``
        and ``i + 1`` per unit rate.
    beta_read : shape (max(m - 1, 1),)
        ``-1 / (N_{i+1} dt_i dt_{i+1})``.
    two_omit_ok : shape (max(m - 1, 1),)
        1.0 where the pair ``(i, i + 1)`` may be omitted together (resultant ``i + 1``
        has more than one read, as in stcal), else 0.0.
    """

    dt: np.ndarray
    alpha_poisson: np.ndarray
    alpha_read: np.ndarray
    beta_poisson: np.ndarray
    beta_read: np.ndarray
    two_omit_ok: np.ndarray


@functools.lru_cache(maxsize=16)
def _tables(pattern: tuple[tuple[int, ...], ...], frame_time: float) -> LikelyTables:
    # read times as stcal builds them (read number * frame time), then paper I Eq. 4
    # (mean time) and Eq. 11 (tau = sum_k (2 N + 1 - 2 k) t_k / N^2, k = 1..N)
    mean_t, tau, n_reads = [], [], []
    for reads in pattern:
        times = np.array(reads, dtype=np.float64) * frame_time
        nr = len(times)
        k = np.arange(1, nr + 1)
        mean_t.append(np.mean(times))
        tau.append(np.sum((2 * nr + 1 - 2 * k) * times) / nr**2)
        n_reads.append(nr)
    t, ta, nr = np.array(mean_t), np.array(tau), np.array(n_reads, dtype=np.float64)
    dt = t[1:] - t[:-1]
    if np.any(dt <= 0):
        raise ValueError("read_pattern: resultant mean times must increase")
    # paper I Eqs. 28 (diagonal) and 29 (off-diagonal) of the difference covariance
    a_rn = (1 / nr[:-1] + 1 / nr[1:]) / dt**2
    a_ph = (ta[:-1] + ta[1:] - 2 * t[:-1]) / dt**2
    b_rn = -1 / (nr[1:-1] * dt[1:] * dt[:-1])
    b_ph = (t[1:-1] - ta[1:-1]) / (dt[1:] * dt[:-1])
    ok2 = (nr[1:-1] > 1).astype(np.float64)
    if len(dt) == 1:  # one difference: no pairs; keep one dummy entry for the kernel
        b_rn, b_ph, ok2 = np.zeros(1), np.zeros(1), np.zeros(1)
    tables = LikelyTables(*(np.ascontiguousarray(a, dtype=np.float64)
                            for a in (dt, a_ph, a_rn, b_ph, b_rn, ok2)))
    for array in tables:
        array.setflags(write=False)
    return tables


def likely_tables(read_pattern: Sequence[Sequence[int]], frame_time: float) -> LikelyTables:
    """Return the covariance tables of a read pattern (built once per pattern, cached).

    Parameters
    ----------
    read_pattern : sequence of sequences of int
        1-based read numbers of each resultant.
    frame_time : float
        Seconds between reads.

    Returns
    -------
    LikelyTables

    Raises
    ------
    ValueError
        For an invalid read pattern or frame time.
    """
    pattern = tuple(tuple(r) for r in validate_read_pattern(read_pattern))
    try:
        frame_time = float(frame_time)
    except (TypeError, ValueError) as err:
        raise ValueError(f"frame_time must be a number, got {frame_time!r}") from err
    if not math.isfinite(frame_time) or frame_time <= 0:
        raise ValueError(f"frame_time must be positive and finite, got {frame_time!r}")
    return _tables(pattern, frame_time)


class StepTemplates(NamedTuple):
    """Step templates of a read pattern: a jump just before each read, on the differences.

    A jump of 1 e- just before read ``k`` (reads ``>= k`` see it) raises resultant
    ``j`` by the fraction ``f_j`` of its reads at or after ``k``, so the difference
    per unit time ``i`` changes by ``(f_{i+1} - f_i) / dt_i``: nonzero on at most two
    adjacent differences.  Templates are listed once each (reads that give the same
    template, e.g. the first read of a resultant and the skipped reads before it, are
    merged), in read order; a jump before the first read changes no difference and is
    left out.

    Attributes
    ----------
    index : numpy.ndarray of int64, shape (nt,)
        First difference ``i`` of each template.
    u : numpy.ndarray of float64, shape (nt,)
        Its value on difference ``i``.
    v : numpy.ndarray of float64, shape (nt,)
        Its value on difference ``i + 1`` (0 where the template has one difference).
    """

    index: np.ndarray
    u: np.ndarray
    v: np.ndarray


@functools.lru_cache(maxsize=16)
def _steps(pattern: tuple[tuple[int, ...], ...], frame_time: float) -> StepTemplates:
    dt = _tables(pattern, frame_time).dt
    m = len(dt)
    seen: dict[tuple[int, float, float], None] = {}
    for k in range(1, pattern[-1][-1] + 1):
        frac = np.array([np.mean(np.array(reads) >= k) for reads in pattern])
        t = (frac[1:] - frac[:-1]) / dt
        nz = np.flatnonzero(t)
        if nz.size == 0:
            continue
        i = int(nz[0])
        if nz.size > 2 or (nz.size == 2 and nz[1] != i + 1):
            raise ValueError("read_pattern: a step touches non-adjacent differences")
        v = float(t[i + 1]) if i + 1 < m else 0.0
        seen.setdefault((i, float(t[i]), v), None)
    keys = list(seen)
    out = StepTemplates(np.array([k[0] for k in keys], dtype=np.int64),
                        np.array([k[1] for k in keys], dtype=np.float64),
                        np.array([k[2] for k in keys], dtype=np.float64))
    for array in out:
        array.setflags(write=False)
    return out


def step_templates(read_pattern: Sequence[Sequence[int]], frame_time: float) -> StepTemplates:
    """Return the step templates of a read pattern (built once per pattern, cached).

    Parameters
    ----------
    read_pattern : sequence of sequences of int
        1-based read numbers of each resultant.
    frame_time : float
        Seconds between reads.

    Returns
    -------
    StepTemplates
    """
    tables = likely_tables(read_pattern, frame_time)  # validates both arguments
    del tables
    pattern = tuple(tuple(r) for r in validate_read_pattern(read_pattern))
    return _steps(pattern, float(frame_time))


def _dense_covariance(tables: LikelyTables, rate: float, read_noise: float) -> np.ndarray:
    m = len(tables.dt)
    cov = np.diag(rate * tables.alpha_poisson + read_noise**2 * tables.alpha_read)
    if m > 1:
        off = rate * tables.beta_poisson + read_noise**2 * tables.beta_read
        cov += np.diag(off, 1) + np.diag(off, -1)
    return cov


def _step_correlations(pattern: tuple[tuple[int, ...], ...], frame_time: float,
                       rate: float, read_noise: float) -> np.ndarray:
    """Correlation matrix of the step statistics ``z_k`` of clean ramps (Gaussian)."""
    tables = _tables(pattern, frame_time)
    steps = _steps(pattern, frame_time)
    m = len(tables.dt)
    cinv = np.linalg.inv(_dense_covariance(tables, rate, read_noise))
    one = cinv.sum(axis=1)
    proj = cinv - np.outer(one, one) / one.sum()
    tmpl = np.zeros((len(steps.index), m))
    for k, (i, u, v) in enumerate(zip(steps.index, steps.u, steps.v, strict=True)):
        tmpl[k, i] = u
        if i + 1 < m:
            tmpl[k, i + 1] = v
    gram = tmpl @ proj @ tmpl.T
    norm = np.sqrt(np.diag(gram))
    return gram / np.outer(norm, norm)


#: Ratios ``rate / read_noise^2`` (1/s per e^2) over which :func:`step_threshold_for`
#: takes the worst case: read-noise dominated to photon-noise dominated.
_RATIOS = (0.0, 1e-2, 1.0, 1e2)


@functools.lru_cache(maxsize=256)
def _bound_edges(pattern: tuple[tuple[int, ...], ...], frame_time: float,
                 ratio: float, subset: tuple[int, ...] | None = None) -> np.ndarray:
    from scipy.sparse.csgraph import minimum_spanning_tree

    corr = _step_correlations(pattern, frame_time, ratio, 1.0)
    if subset is not None:
        corr = corr[np.ix_(subset, subset)]
    # the spanning tree of the strongest correlations (the tightest such bound)
    tree = minimum_spanning_tree(np.where(np.eye(len(corr)) > 0, 0.0, 2.0 - corr)).tocoo()
    rho = np.clip(2.0 - tree.data, -1 + 1e-12, 1 - 1e-12)
    return np.sqrt((1 - rho) / (1 + rho))


def step_false_positive_bound(read_pattern: Sequence[Sequence[int]], frame_time: float,
                              threshold: float) -> float:
    """Gaussian upper bound of the step test's false positives per clean pixel.

    Under the null hypothesis (no jump, Gaussian noise with the model covariance) the
    statistics ``z_k`` of the templates are standard normal with a known correlation
    matrix; the probability that any exceeds ``h`` is at most (Hunter-Worsley)
    ``Q(h) + 2 sum_e T(h, sqrt((1 - rho_e) / (1 + rho_e)))``, the sum over the edges
    of the spanning tree of strongest correlations, with ``Q`` the normal tail and
    ``T`` Owen's function (``Q(h) - 2 T(...)`` is the joint tail of a correlated pair).
    The worst case over rate-to-read-noise ratios from read-noise to photon-noise
    dominated ramps is returned.  This counts only the first pass (a clean ramp).

    Parameters
    ----------
    read_pattern : sequence of sequences of int
        1-based read numbers of each resultant.
    frame_time : float
        Seconds between reads.
    threshold : float
        ``h``, in sigma.

    Returns
    -------
    float
        The bound on the false-positive probability per pixel.
    """
    from scipy.special import ndtr, owens_t

    likely_tables(read_pattern, frame_time)  # validates
    pattern = tuple(tuple(r) for r in validate_read_pattern(read_pattern))
    h = float(threshold)
    worst = 0.0
    for ratio in _RATIOS:
        a = _bound_edges(pattern, float(frame_time), ratio)
        worst = max(worst, float(ndtr(-h) + 2.0 * np.sum(owens_t(h, a))))
    return worst


def _solve_threshold(bound: Any, pattern: tuple[tuple[int, ...], ...], frame_time: float,
                     rate: float) -> float:
    """Return the ``h`` at which ``bound(pattern, frame_time, h)`` is ``rate / STEP_SAFETY``."""
    from scipy.optimize import brentq

    target = rate / STEP_SAFETY
    return float(brentq(lambda h: math.log(bound(pattern, frame_time, h) / target),
                        1.0, 12.0, xtol=1e-6))


def _checked_pattern(read_pattern: Sequence[Sequence[int]], frame_time: float,
                     false_positive_rate: float) -> tuple[tuple[tuple[int, ...], ...], float]:
    """Return the read pattern as a hashable tuple and the rate, both validated."""
    rate = float(false_positive_rate)
    if not 0 < rate <= 0.1:
        raise ValueError(f"false_positive_rate must be in (0, 0.1], got {false_positive_rate!r}")
    likely_tables(read_pattern, frame_time)  # validates
    return tuple(tuple(r) for r in validate_read_pattern(read_pattern)), rate


@functools.lru_cache(maxsize=64)
def _threshold(pattern: tuple[tuple[int, ...], ...], frame_time: float,
               rate: float) -> float:
    return _solve_threshold(step_false_positive_bound, pattern, frame_time, rate)


def step_threshold_for(read_pattern: Sequence[Sequence[int]], frame_time: float,
                   false_positive_rate: float = STEP_FALSE_POSITIVE_RATE) -> float:
    """Threshold (sigma) of the step test for a target false-positive rate per pixel.

    The ``h`` at which :func:`step_false_positive_bound` equals
    ``false_positive_rate / STEP_SAFETY`` (cached per pattern).  For 1e-6 and the WFI
    frame time: 5.56 for MA table 4 (9 resultants, 44 reads), 5.68 for MA table 6
    (15, 93) and 5.58 for MA table 109 (10, 44).

    Parameters
    ----------
    read_pattern : sequence of sequences of int
        1-based read numbers of each resultant.
    frame_time : float
        Seconds between reads.
    false_positive_rate : float, optional
        Target false detections per clean pixel (default 1e-6), in (0, 0.1].

    Returns
    -------
    float
        The threshold in sigma.
    """
    pattern, rate = _checked_pattern(read_pattern, frame_time, false_positive_rate)
    return _threshold(pattern, float(frame_time), rate)


def _neighbor_subsets(pattern: tuple[tuple[int, ...], ...],
                      frame_time: float) -> list[tuple[int, ...]]:
    """Template sets the neighbour pass searches for one neighbouring jump.

    A jump dropped difference ``i`` alone or the pair ``(i, i + 1)``; the candidates
    are the templates whose differences are all among them (as the kernel selects
    them).
    """
    steps = _steps(pattern, frame_time)
    m = len(pattern) - 1
    touch = [{int(i)} | ({int(i) + 1} if v != 0.0 and i + 1 < m else set())
             for i, v in zip(steps.index, steps.v, strict=True)]
    seeds = [{i} for i in range(m)] + [{i, i + 1} for i in range(m - 1)]
    subsets = [tuple(k for k, t in enumerate(touch) if t <= s) for s in seeds]
    return [s for s in subsets if s]


def neighbor_false_positive_bound(read_pattern: Sequence[Sequence[int]], frame_time: float,
                                  threshold: float) -> float:
    """Gaussian bound of the neighbour pass's false positives per searched clean pixel.

    As :func:`step_false_positive_bound`, over the templates the neighbour pass tries
    for one neighbouring jump (those made of the one or two differences it lost),
    worst case over the jump's position and the rate-to-read-noise ratios.

    Parameters
    ----------
    read_pattern : sequence of sequences of int
        1-based read numbers of each resultant.
    frame_time : float
        Seconds between reads.
    threshold : float
        ``h``, in sigma.

    Returns
    -------
    float
        The bound on the probability that a clean pixel searched by the pass is flagged.
    """
    from scipy.special import ndtr, owens_t

    likely_tables(read_pattern, frame_time)  # validates
    pattern = tuple(tuple(r) for r in validate_read_pattern(read_pattern))
    h = float(threshold)
    worst = 0.0
    for subset in _neighbor_subsets(pattern, float(frame_time)):
        for ratio in _RATIOS:
            a = _bound_edges(pattern, float(frame_time), ratio, subset)
            worst = max(worst, float(ndtr(-h) + 2.0 * np.sum(owens_t(h, a))))
    return worst


@functools.lru_cache(maxsize=64)
def _neighbor_threshold(pattern: tuple[tuple[int, ...], ...], frame_time: float,
                        rate: float) -> float:
    return _solve_threshold(neighbor_false_positive_bound, pattern, frame_time, rate)


def neighbor_threshold_for(read_pattern: Sequence[Sequence[int]], frame_time: float,
                           false_positive_rate: float = NEIGHBOR_FALSE_POSITIVE_RATE
                           ) -> float:
    """Threshold (sigma) of the neighbour pass for a false-positive rate per searched pixel.

    The ``h`` at which :func:`neighbor_false_positive_bound` equals
    ``false_positive_rate / STEP_SAFETY`` (cached per pattern).  For 1e-5 and the WFI
    frame time: 4.83 for MA tables 4 and 6, 4.81 for MA table 109 (the first pass:
    5.56-5.68 for 1e-6).

    Parameters
    ----------
    read_pattern : sequence of sequences of int
        1-based read numbers of each resultant.
    frame_time : float
        Seconds between reads.
    false_positive_rate : float, optional
        Target false detections per clean pixel the pass searches (default 1e-5), in
        (0, 0.1].

    Returns
    -------
    float
        The threshold in sigma.
    """
    pattern, rate = _checked_pattern(read_pattern, frame_time, false_positive_rate)
    return _neighbor_threshold(pattern, float(frame_time), rate)


def likely_thresholds(rejection_threshold: float = REJECTION_THRESHOLD) -> tuple[float, float]:
    """chi^2 thresholds of the one- and two-difference omissions for a sigma threshold.

    As stcal 1.20's ``likely_ramp_fit``: one omission needs ``Delta chi^2 > s^2``; two
    need the chi^2 (2 degrees of freedom) value with the same two-sided Gaussian tail
    probability ``p = erfc(s / sqrt 2)``, i.e. ``-2 ln p`` (closed form of
    ``scipy.stats.chi2.isf(p, 2)``), or ``s^2 + 10`` where ``p`` underflows.

    Parameters
    ----------
    rejection_threshold : float
        ``s``, in sigma (default 4.5: 20.25 and 23.78).

    Returns
    -------
    tuple of float
        ``(threshold_one_omit, threshold_two_omit)``.
    """
    s = float(rejection_threshold)
    if not math.isfinite(s) or s < 0:
        raise ValueError(
            f"rejection_threshold must be finite and >= 0, got {rejection_threshold!r}")
    one = s * s
    p = math.erfc(s / math.sqrt(2.0))
    two = -2.0 * math.log(p) if p > 0 else math.inf
    if math.isinf(two):
        two = one + 10
    return one, two


def fit_ramps_likely(
    resultants: np.ndarray,
    groupdq: np.ndarray,
    read_noise: np.ndarray | float,
    read_pattern: Sequence[Sequence[int]],
    frame_time: float,
    *,
    use_jump: bool = True,
    rejection_threshold: float = REJECTION_THRESHOLD,
    threshold_one_omit: float | None = None,
    threshold_two_omit: float | None = None,
    bias_correction: bool = False,
    jump_test: str = "omission",
    step_threshold: float | None = None,
    step_false_positive_rate: float = STEP_FALSE_POSITIVE_RATE,
    neighbor_pass: bool = False,
    neighbor_threshold: float | None = None,
    neighbor_false_positive_rate: float = NEIGHBOR_FALSE_POSITIVE_RATE,
    n_threads: int | None = None,
) -> LikelyFitResult:
    """Fit count rates by maximum likelihood (Brandt 2024), with chi^2 jump detection.

    Implements stcal 1.20's ``likely_ramp_fit`` (romancal 1.1's default ramp fit,
    ``algorithm='likely'``) for data in electrons (gain 1):

    1. The differences ``d_i = (R_{i+1} - R_i) / dt_i`` of the resultants are fitted
       with a constant rate by generalised least squares, using their exact tridiagonal
       covariance (read noise and photon noise, paper I Eqs. 28-29) evaluated at an
       assumed rate; the solution costs O(n) per pixel (paper I Sect. 4).  A difference
       is used only if neither of its resultants has a group DQ flag (any flag).
    2. With ``use_jump``, the covariance is evaluated at the median of all differences
       (negative: 0), and the chi^2 of every fit omitting one difference, or two
       adjacent differences whose shared resultant has more than one read, is
       computed (paper II Sects. 3.1-3.2).  While the best improvement exceeds
       ``threshold_one_omit`` (one) or ``threshold_two_omit`` (two; the better of
       the two after subtracting each threshold), those differences are dropped and
       the fit repeated, up to ``n - 1`` passes, and only while more than three
       differences are left.  The later resultant of each dropped difference gets
       JUMP_DET.
    3. The final fit uses the kept differences with the covariance at the rate of the
       last pass (negative: 0): slope, chi^2, and the variances ``w^T Cov w`` of
       the weights with the read and Poisson parts of the covariance.

    With ``jump_test='step'`` (our detector, not in stcal) step 2 searches instead
    for the most significant *positive step*: for every read ``k``, the generalised
    least-squares amplitude of a jump just before read ``k`` (its template on the
    differences, :func:`step_templates`), with the slope profiled out, divided by its
    standard error, ``z_k``; if ``max z_k > step_threshold`` (one-sided: cosmic rays
    add charge), the one or two differences the template touches are dropped and the
    search repeats on the rest (same covariance rate, same stopping rules, same
    JUMP_DET flags).  ``z_k^2`` is the chi^2 drop of fitting that one step, so it is a
    one-degree-of-freedom test matched to a hit at any read, where the omissions test
    single differences (1 dof) and pairs (2 dof, a higher threshold) two-sided.

    With ``neighbor_pass`` (ours, not in stcal; either jump test) a second pass
    follows: every pixel left without a JUMP_DET whose 8 neighbours include one with a
    JUMP_DET (from the first pass, or passed in) is searched again with the step test,
    restricted to the templates made of differences such neighbours lost (a
    JUMP_DET on resultant ``r`` marks difference ``r - 1``: the same time), at the
    lower ``neighbor_threshold`` (default :func:`neighbor_threshold_for`
    ``(neighbor_false_positive_rate)``).  A cosmic ray's charge spreads over several
    pixels (interpixel capacitance, charge diffusion, tracks), and the weaker
    neighbours are the jumps a per-pixel test at the first-pass threshold misses.
    Where the pass drops a difference, the pixel is flagged and refitted as in the
    first pass; other pixels are untouched.  The pass searches only pixels beside
    detected jumps, so its false positives per clean pixel are its rate per searched
    pixel times the fraction of pixels searched.

    Without ``use_jump`` step 2 only provides that rate (no omission).  With
    ``bias_correction`` (off by default, as in stcal, which has none) the slope is
    corrected for the first-order bias of estimating the covariance from the data
    (paper I Sect. 5, Brandt's ``calc_bias``): ``c^T Cov (dw/da)``, with ``c`` the
    weights of the estimate ``a`` the covariance was evaluated at and ``w(a)`` the final
    weights, times the probability ``(1 + erf(a / sigma_a / sqrt 2)) / 2`` that ``a``
    was not clipped at 0; the variances are unchanged.  Special
    cases: a NaN or infinite resultant is flagged DO_NOT_USE (and its differences
    skipped, also in the median); a pixel with no usable difference or NaN read noise
    gets NaN outputs.  Differences from stcal are listed in ``docs/romancore.md``.

    Parameters
    ----------
    resultants : numpy.ndarray of float32, shape (n_resultants, ny, nx)
        Resultants in electrons, C-contiguous, ``n_resultants >= 2``.  Not modified.
    groupdq : numpy.ndarray of uint8, shape (n_resultants, ny, nx)
        Group DQ; JUMP_DET (and DO_NOT_USE on non-finite resultants) is OR-ed in place.
    read_noise : float or numpy.ndarray of shape (ny, nx)
        Read noise per read in electrons (>= 0 or NaN).
    read_pattern : sequence of sequences of int
        1-based read numbers of each resultant.
    frame_time : float
        Seconds between reads.
    use_jump : bool, optional
        Omit differences with jumps (default True).
    rejection_threshold : float, optional
        Jump threshold in sigma giving both chi^2 thresholds as stcal derives them
        (:func:`likely_thresholds`; default 4.5).
    threshold_one_omit, threshold_two_omit : float or None, optional
        Override the derived chi^2 thresholds.
    bias_correction : bool, optional
        Subtract the first-order bias of the slope (default False, as stcal).
    jump_test : {'omission', 'step'}, optional
        stcal's chi^2 omission test (default) or the step test.
    step_threshold : float or None, optional
        Threshold of the step test in sigma, one-sided; None (default): set by
        :func:`step_threshold_for` for ``step_false_positive_rate``.
    step_false_positive_rate : float, optional
        Target false detections per clean pixel of the step test (default 1e-6).
    neighbor_pass : bool, optional
        Search the neighbours of detected jumps again at a lower threshold (default
        False; needs ``use_jump``).
    neighbor_threshold : float or None, optional
        Threshold of the neighbour pass in sigma, one-sided; None (default): set by
        :func:`neighbor_threshold_for` for ``neighbor_false_positive_rate``.
    neighbor_false_positive_rate : float, optional
        Target false detections per clean pixel the neighbour pass searches (default
        1e-5).
    n_threads : int or None, optional
        Threads (see :func:`romancore.effective_n_threads`); results do not depend on it.

    Returns
    -------
    LikelyFitResult
        ``slope``, ``var_read``, ``var_poisson``, ``chi2`` and the updated ``groupdq``.

    Raises
    ------
    ValueError
        For arrays of the wrong dtype, shape or layout, fewer than two resultants,
        negative read noise, invalid thresholds, an unknown ``jump_test``, or a read
        pattern that is invalid or does not match the number of resultants.
    """
    check_array(resultants, "resultants", np.float32, 3)
    n, ny, nx = resultants.shape
    check_array(groupdq, "groupdq", np.uint8, 3, resultants.shape)
    check_writeable(groupdq, "groupdq")
    if n < 2:
        raise ValueError(f"the likelihood fit needs at least 2 resultants, got {n}")
    if np.ndim(read_noise) == 0:
        read_noise = np.full((ny, nx), read_noise, dtype=np.float32)
    read_noise = np.ascontiguousarray(read_noise, dtype=np.float32)
    check_array(read_noise, "read_noise", np.float32, 2, (ny, nx))
    if np.any(read_noise < 0):
        raise ValueError("read_noise must be >= 0 (or NaN for unknown)")
    tables = likely_tables(read_pattern, frame_time)
    if len(tables.dt) != n - 1:
        raise ValueError(f"read_pattern has {len(tables.dt) + 1} resultants but data has {n}")
    t1, t2 = likely_thresholds(rejection_threshold)
    t1 = t1 if threshold_one_omit is None else float(threshold_one_omit)
    t2 = t2 if threshold_two_omit is None else float(threshold_two_omit)
    for name, value in (("threshold_one_omit", t1), ("threshold_two_omit", t2)):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be positive and finite, got {value!r}")
    if jump_test not in JUMP_TESTS:
        raise ValueError(f"jump_test must be one of {JUMP_TESTS}, got {jump_test!r}")
    step: dict[str, object] = {}
    if jump_test == "step":
        if step_threshold is None:
            step_threshold = step_threshold_for(read_pattern, frame_time,
                                                step_false_positive_rate)
        z = float(step_threshold)
        if not math.isfinite(z) or z <= 0:
            raise ValueError(f"step_threshold must be positive and finite, got {step_threshold!r}")
        st = step_templates(read_pattern, frame_time)
        step = {"step_i": st.index, "step_u": st.u, "step_v": st.v, "step_sigma": z}
    neighbor_pass = bool(neighbor_pass) and bool(use_jump) and n >= 3
    if neighbor_pass:
        if neighbor_threshold is None:
            neighbor_threshold = neighbor_threshold_for(read_pattern, frame_time,
                                                        neighbor_false_positive_rate)
        zn = float(neighbor_threshold)
        if not math.isfinite(zn) or zn <= 0:
            raise ValueError(
                f"neighbor_threshold must be positive and finite, got {neighbor_threshold!r}")
    threads = effective_n_threads(n_threads)
    slope = np.empty((ny, nx), dtype=np.float32)
    var_read = np.empty((ny, nx), dtype=np.float32)
    var_poisson = np.empty((ny, nx), dtype=np.float32)
    chi2 = np.empty((ny, nx), dtype=np.float32)
    _likely.fit(resultants, groupdq, read_noise, *tables, slope, var_read, var_poisson,
                chi2, bool(use_jump), t1, t2, threads, debias=bool(bias_correction), **step)
    if neighbor_pass:
        st = step_templates(read_pattern, frame_time)
        seed = np.empty((ny, nx), dtype=np.uint8)
        _likely.neighbors(resultants, groupdq, read_noise, tables.dt, tables.alpha_poisson,
                          tables.alpha_read, tables.beta_poisson, tables.beta_read,
                          st.index, st.u, st.v, zn, slope, var_read, var_poisson, chi2,
                          seed, threads, debias=bool(bias_correction))
    return LikelyFitResult(slope, var_read, var_poisson, chi2, groupdq)
