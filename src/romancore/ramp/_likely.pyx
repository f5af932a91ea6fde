# cython: language_level=3
"""Likelihood (generalised least-squares) ramp fit of Brandt (2024), private kernel.

Paper I: T. D. Brandt 2024, PASP 136, 045004 ("Optimal fitting and debiasing for
detectors read out up-the-ramp"); paper II: PASP 136, 045005 ("Likelihood-based jump
detection and cosmic ray rejection").  The order of operations follows stcal 1.20's
``stcal/ramp_fitting/likely_fit.py`` so that the results agree to rounding.

Per pixel (one thread owns a row; every buffer is per-thread scratch of O(n)):

1. the resultant differences per unit time ``d_i = (R_{i+1} - R_i) / dt_i`` (paper I
   Eq. 5), usable where neither resultant carries a DQ flag;
2. with jump detection, the covariance is evaluated at the median difference
   (clipped at 0) and the fit is repeated, omitting at each pass the single difference
   or the adjacent pair whose omission lowers chi^2 the most, while that improvement
   exceeds its threshold (paper II Sects. 3.1-3.2); the dropped differences flag
   their later resultant JUMP_DET;
3. the final fit of the kept differences with the covariance evaluated at the rate of
   the last jump pass (clipped at 0): slope, chi^2 and the read / Poisson variances of
   the slope from the weights (paper I Eqs. 27-29).

Each fit is the O(n) solution of the tridiagonal system: the leading and trailing
principal minors theta and phi (paper I Eqs. 38-43), the sums Phi, Theta (Eqs. 46-48)
and their data-weighted versions (paper II Eq. 4), giving C' and B' (Eqs. 71, 75) and
the scalars A, B, C (Eqs. 61-63): slope B / C, chi^2 A - B^2 / C.
"""
from cython.parallel cimport parallel, prange
from libc.math cimport NAN, erf, fabs, frexp, isfinite, isnan, ldexp, sqrt
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free, malloc

from romancore._dqflags cimport DQ_DO_NOT_USE, DQ_JUMP_DET


cdef struct Tab:
    Py_ssize_t n            # resultants
    Py_ssize_t m            # differences, n - 1
    Py_ssize_t plane        # elements between resultants
    const double* dt        # (m,) resultant mean-time differences
    const double* a_ph      # (m,) photon-noise diagonal per unit rate (paper I Eq. 28)
    const double* a_rn      # (m,) read-noise diagonal per unit variance (Eq. 28)
    const double* b_ph      # (m - 1,) photon-noise off-diagonal (Eq. 29)
    const double* b_rn      # (m - 1,) read-noise off-diagonal (Eq. 29)
    const double* ok2       # (m - 1,) 1 where a two-difference omission is allowed
    double t1               # chi^2 improvement to omit one difference
    double t2               # chi^2 improvement to omit an adjacent pair
    double tmin             # min(t1, t2); the step test's threshold^2 in step mode
    bint use_jump
    bint step               # the step test (one-sided, matched) instead of omissions
    Py_ssize_t nt           # step templates
    const int64_t* t_i      # (nt,) first difference of each template
    const double* t_u       # (nt,) its weight on difference t_i
    const double* t_v       # (nt,) its weight on difference t_i + 1 (0: none)
    double z2               # the step test's threshold, squared sigma
    bint debias             # apply the first-order bias correction


cdef struct Work:
    double* d       # differences per unit time
    double* dm      # d where used, else 0
    double* al      # diagonal of the (rescaled) covariance
    double* be      # off-diagonal (masked)
    double* th      # theta, m + 1
    double* ph      # phi, m + 1
    double* Ph      # Phi
    double* PhD     # Phi_D
    double* Th      # Theta
    double* ThD     # Theta_D, m + 1
    double* dC      # C'
    double* dB      # B'
    double* rate1   # slope omitting difference i
    double* chi1    # chi^2 omitting difference i
    double* rate2   # slope omitting differences j, j + 1
    double* chi2    # chi^2 omitting differences j, j + 1
    double* sort    # median scratch
    uint8_t* use    # difference used
    uint8_t* use0   # before the jump search


cdef struct Fit:
    double rate
    double chisq
    double var_p
    double var_r
    double A        # the scalars of paper I Eqs. 61-63 (rescaled covariance)
    double B
    double C
    double inv_tn   # 1 / theta_m, the inverse determinant (rescaled)
    double inv_scale


cdef Fit _fit(const Tab* tb, Work* w, double rate, double rn2,
              bint variances) noexcept nogil:
    """One GLS fit of the used differences with the covariance at ``rate``.

    Sets ``w.dC``, ``w.dB`` (and the minors) and returns the slope and chi^2 (and,
    with ``variances``, the read and Poisson variances).
    """
    cdef Py_ssize_t m = tb.m, i, j
    cdef double scale = 1.0, inv_scale = 1.0, inv_tn, s, bext, q
    cdef double A = 0.0, Asum = 0.0, B = 0.0, C = 0.0
    cdef double cd_j, cd_k, co, den, a, b, c, cpj, cjck, bcpj, chi, wi, wk
    cdef int e
    cdef Fit out
    cdef double* al = w.al
    cdef double* be = w.be
    cdef double* th = w.th
    cdef double* ph = w.ph
    cdef double* dm = w.dm
    cdef double* Ph = w.Ph
    cdef double* PhD = w.PhD
    cdef double* Th = w.Th
    cdef double* ThD = w.ThD
    cdef const uint8_t* use = w.use

    # Covariance of the differences (paper I Eqs. 28-29; rate in e/s, gain 1), scaled
    # by a power of two near its middle diagonal element, so that the minors below
    # cannot overflow for long ramps; a power of two rescales exactly (stcal rescales
    # to unit determinant for the same purpose) and chi^2 is scaled back.
    q = rate * tb.a_ph[m // 2] + rn2 * tb.a_rn[m // 2]
    if q > 0 and isfinite(q):
        frexp(q, &e)
        scale = ldexp(1.0, e)
        inv_scale = ldexp(1.0, -e)
    for i in range(m):
        al[i] = (rate * tb.a_ph[i] + rn2 * tb.a_rn[i]) * inv_scale
        dm[i] = w.d[i] if use[i] else 0.0
    for i in range(m - 1):
        be[i] = (rate * tb.b_ph[i] + rn2 * tb.b_rn[i]) * inv_scale
        if not (use[i] and use[i + 1]):
            be[i] = 0.0   # an omitted difference decouples from its neighbours

    # Forward: theta (paper I Eqs. 38-40), Theta (Eq. 47), Theta_D (Eq. 48).
    # Signs (-1)^(i+1): -1 for the first difference.
    th[0] = 1.0
    th[1] = al[0]
    Th[0] = -1.0
    ThD[0] = 0.0
    ThD[1] = -dm[0]
    s = -1.0
    for i in range(1, m):
        s = -s
        th[i + 1] = al[i] * th[i] - be[i - 1] * be[i - 1] * th[i - 1]
        Th[i] = Th[i - 1] * be[i - 1] + s * th[i]
        ThD[i + 1] = be[i - 1] * ThD[i] + s * dm[i] * th[i]
    # Backward: phi (Eqs. 41-43), Phi (Eq. 46), Phi_D (paper II Eq. 4).
    ph[m] = 1.0
    ph[m - 1] = al[m - 1]
    Ph[m - 1] = 0.0
    PhD[m - 1] = 0.0
    s = 1.0 if (m % 2) == 0 else -1.0   # sign of difference m - 1
    for i in range(m - 2, -1, -1):
        ph[i] = al[i] * ph[i + 1] - be[i] * be[i] * ph[i + 2]
        Ph[i] = (Ph[i + 1] + s * ph[i + 2]) * be[i]
        PhD[i] = (PhD[i + 1] + s * dm[i + 1] * ph[i + 2]) * be[i]
        s = -s

    # C' (Eq. 71), B' (Eq. 75) and A, B, C (Eqs. 61-63)
    inv_tn = 1.0 / th[m]
    s = 1.0
    for i in range(m):
        s = -s
        w.dC[i] = s * inv_tn * (ph[i + 1] * Th[i] + th[i] * Ph[i]) if use[i] else 0.0
        w.dB[i] = s * inv_tn * (ph[i + 1] * ThD[i + 1] + th[i] * PhD[i])
        bext = 1.0 if i == 0 else be[i - 1]
        A = A + dm[i] * s * bext * ph[i + 1] * ThD[i]
        Asum = Asum + dm[i] * dm[i] * th[i] * ph[i + 1]
        B = B + dm[i] * w.dC[i]
        C = C + w.dC[i]
    A = (2.0 * A + Asum) * inv_tn
    out.rate = B / C
    out.chisq = (A - B * B / C) * inv_scale
    out.var_p = NAN
    out.var_r = NAN
    out.A = A
    out.B = B
    out.C = C
    out.inv_tn = inv_tn
    out.inv_scale = inv_scale

    if variances:
        # Var = w^T Cov w with the weights w_i = C'_i / C (paper I Eqs. 27-29)
        a = 0.0
        b = 0.0
        for i in range(m):
            wi = w.dC[i] / C
            a = a + wi * wi * (rate * tb.a_ph[i])
            b = b + wi * wi * (rn2 * tb.a_rn[i])
        cd_j = 0.0
        cd_k = 0.0
        for i in range(m - 1):
            wi = w.dC[i] / C
            wk = w.dC[i + 1] / C
            cd_j = cd_j + wk * wi * (rate * tb.b_ph[i])
            cd_k = cd_k + wk * wi * (rn2 * tb.b_rn[i])
        out.var_p = a + 2.0 * cd_j
        out.var_r = b + 2.0 * cd_k

    return out


cdef void _omit(const Tab* tb, Work* w, const Fit* fit) noexcept nogil:
    """chi^2 and slope of every single and adjacent-pair omission (paper II
    Sects. 3.1-3.2) of the fit ``fit`` (made last with ``w``) into
    ``w.rate1/chi1/rate2/chi2``."""
    cdef Py_ssize_t m = tb.m, i, j
    cdef double A = fit.A, B = fit.B, C = fit.C, inv_tn = fit.inv_tn
    cdef double inv_scale = fit.inv_scale
    cdef double cd_j, cd_k, co, den, a, b, c, cpj, cjck, bcpj, chi
    cdef double* th = w.th
    cdef double* ph = w.ph
    cdef double* be = w.be
    cdef const uint8_t* use = w.use
    # Omit difference i: the slope a and jump b solve a 2x2 system (paper II Sect. 3.1).
    for i in range(m):
        cd_j = th[i] * ph[i + 1] * inv_tn if use[i] else 0.0   # diagonal of Cov^-1
        den = C * cd_j - w.dC[i] * w.dC[i]
        a = (cd_j * B - w.dB[i] * w.dC[i]) / den
        b = (w.dB[i] - a * w.dC[i]) / cd_j
        chi = (A + a * a * C - 2.0 * a * B + b * b * cd_j - 2.0 * b * w.dB[i]
               + 2.0 * a * b * w.dC[i])
        w.rate1[i] = a
        w.chi1[i] = chi * inv_scale
    # Omit differences j and j + 1: a 3x3 system (paper II Sect. 3.2).
    for j in range(m - 1):
        cd_j = th[j] * ph[j + 1] * inv_tn if use[j] else 0.0
        cd_k = th[j + 1] * ph[j + 2] * inv_tn if use[j + 1] else 0.0
        co = -be[j] * th[j] * ph[j + 2] * inv_tn           # off-diagonal of Cov^-1
        cpj = w.dC[j] * w.dC[j] - C * cd_j
        cjck = w.dC[j] * w.dC[j + 1] - C * co
        bcpj = B * w.dC[j] - w.dB[j] * C
        c = bcpj / cpj - (B * w.dC[j + 1] - w.dB[j + 1] * C) / cjck
        c = c / (cjck / cpj - (w.dC[j + 1] * w.dC[j + 1] - C * cd_k) / cjck)
        b = (bcpj - c * cjck) / cpj
        a = (B - b * w.dC[j] - c * w.dC[j + 1]) / C
        chi = A + a * a * C + b * b * cd_j + c * c * cd_k
        chi = chi - (2.0 * a * B + 2.0 * b * w.dB[j] + 2.0 * c * w.dB[j + 1])
        chi = chi + (2.0 * a * b * w.dC[j] + 2.0 * a * c * w.dC[j + 1] + 2.0 * b * c * co)
        w.rate2[j] = a
        w.chi2[j] = chi * inv_scale
    # An omission of an already omitted difference is the fit without it (stcal's
    # fill_masked_reads).
    for i in range(m):
        if not use[i]:
            w.rate1[i] = fit.rate
            w.chi1[i] = fit.chisq
    for j in range(m - 1):
        if not use[j + 1]:
            w.rate2[j] = w.rate1[j]
            w.chi2[j] = w.chi1[j]
        if not use[j]:
            w.rate2[j] = w.rate1[j + 1]
            w.chi2[j] = w.chi1[j + 1]


cdef double _median(double* v, Py_ssize_t k) noexcept nogil:
    """Median of ``v[:k]`` (sorted in place; mean of the middle two for even k)."""
    cdef Py_ssize_t i, j
    cdef double x
    for i in range(1, k):
        x = v[i]
        j = i - 1
        while j >= 0 and v[j] > x:
            v[j + 1] = v[j]
            j -= 1
        v[j + 1] = x
    if k % 2 == 1:
        return v[k // 2]
    return (v[k // 2 - 1] + v[k // 2]) / 2.0


cdef inline bint _pair_excluded(const Work* w, Py_ssize_t j, Py_ssize_t nuse) noexcept nogil:
    # omitting two used differences of three would leave one: chi^2 = 0 for every such
    # pair, so their order (and stcal's choice) is rounding noise; not a candidate
    return nuse <= 3 and w.use[j] and w.use[j + 1]


cdef bint _jump_pass(const Tab* tb, Work* w, double chisq, Py_ssize_t nuse,
                     double* new_rate) noexcept nogil:
    """Drop the best single difference or pair if its chi^2 gain passes the threshold.

    stcal 1.20's decision rule (``mask_jumps``): the largest improvements from one and
    from two omissions are compared after subtracting their thresholds; a NaN anywhere
    in the improvements (a degenerate omission) stops the search for the pixel.  Unlike
    stcal, an omission must leave at least two of the ``nuse`` used differences.
    Returns whether something was dropped; ``new_rate`` gets the slope without it.
    """
    cdef Py_ssize_t m = tb.m, i
    cdef double best1 = -1.0 / 0.0, best2 = -1.0 / 0.0, v, best
    cdef bint nan1 = False, nan2 = False, one_better, dropped = False
    cdef double acc = 0.0
    for i in range(m):
        v = chisq - w.chi1[i]
        if isnan(v):
            nan1 = True
        elif v > best1:
            best1 = v
    for i in range(m - 1):
        if _pair_excluded(w, i, nuse):
            continue
        v = (chisq - w.chi2[i]) * tb.ok2[i]   # NaN * 0 stays NaN, as in stcal
        if isnan(v):
            nan2 = True
        elif v > best2:
            best2 = v
    if nan1 or nan2 or m < 2:
        return False
    one_better = best1 - tb.t1 > best2 - tb.t2
    if one_better:
        best = best1 if best1 > tb.t1 else 0.0
    else:
        best = best2 if best2 > tb.t2 else 0.0
    if best == 0.0:
        return False
    # every candidate equal to the best is dropped (stcal's masks), applied after the scan
    cdef double* mark = w.sort   # free once the median is taken
    for i in range(m):
        mark[i] = 0.0
    if one_better:
        for i in range(m):
            if chisq - w.chi1[i] == best:
                dropped = True
                acc = acc + w.rate1[i]
                mark[i] = 1.0
            else:
                acc = acc + w.rate1[i] * 0.0
        for i in range(m):
            if mark[i] != 0.0:
                w.use[i] = 0
    else:
        for i in range(m - 1):
            if chisq - w.chi2[i] == best and not _pair_excluded(w, i, nuse):
                dropped = True
                acc = acc + w.rate2[i]
                mark[i] = 1.0
            else:
                acc = acc + w.rate2[i] * 0.0
        for i in range(m - 1):
            if mark[i] != 0.0:
                w.use[i] = 0
                w.use[i + 1] = 0
    new_rate[0] = acc
    return dropped


cdef bint _step_pass(const Tab* tb, Work* w, const Fit* fit, Py_ssize_t nuse,
                     const uint8_t* cand, double z2) noexcept nogil:
    """Drop the differences of the most significant positive step, if above threshold.

    The step test: a jump of ``J`` electrons just before read ``k`` adds ``J t_k`` to
    the differences, with ``t_k`` nonzero on at most two adjacent differences (the
    fraction ``f`` of the hit resultant's reads that see it over the first, ``1 - f``
    over the second, each divided by its ``dt``).  With the slope profiled out, the
    generalised least-squares estimate of ``J`` has the significance
    ``z = t^T P d / sqrt(t^T P t)``, ``P = C^-1 - C^-1 1 1^T C^-1 / (1^T C^-1 1)``:
    ``t^T C^-1 d`` from ``B'``, ``t^T C^-1 1`` from ``C'`` and ``t^T C^-1 t`` from the
    diagonal and off-diagonal of ``C^-1`` (the minors).  ``z^2`` is the chi^2 drop of
    fitting that step (one degree of freedom, at most chi^2 itself).  The template with
    the largest ``z^2`` among ``z > 0`` (cosmic rays add charge) wins if ``z^2`` exceeds
    ``z2``; its differences are dropped (the first such template on ties).  A drop
    must leave at least two used differences.  With ``cand`` (not NULL) only the
    templates ``k`` with ``cand[k]`` are tried (the neighbour pass).  Returns whether
    something was dropped.
    """
    cdef Py_ssize_t m = tb.m, k, i, best_k = -1, left
    cdef double B = fit.B, C = fit.C, inv_tn = fit.inv_tn, inv_scale = fit.inv_scale
    cdef double u, v, tB, tC, tT, cdi, cdk, co, num, den, q, best = z2
    cdef double* th = w.th
    cdef double* ph = w.ph
    cdef double* be = w.be
    cdef const uint8_t* use = w.use
    for k in range(tb.nt):
        if cand != NULL and not cand[k]:
            continue
        i = tb.t_i[k]
        u = tb.t_u[k] if use[i] else 0.0
        v = 0.0
        if i + 1 < m and use[i + 1]:
            v = tb.t_v[k]
        if u == 0.0 and v == 0.0:
            continue
        left = nuse - (u != 0.0) - (v != 0.0)
        if left < 2:
            continue
        cdi = th[i] * ph[i + 1] * inv_tn
        tB = u * w.dB[i]
        tC = u * w.dC[i]
        tT = u * u * cdi
        if v != 0.0:
            cdk = th[i + 1] * ph[i + 2] * inv_tn
            co = -be[i] * th[i] * ph[i + 2] * inv_tn
            tB = tB + v * w.dB[i + 1]
            tC = tC + v * w.dC[i + 1]
            tT = tT + 2.0 * u * v * co + v * v * cdk
        num = tB - tC * B / C
        den = tT - tC * tC / C
        if not (num > 0 and den > 0):
            continue
        q = num * num / den * inv_scale
        if q > best:
            best = q
            best_k = k
    if best_k < 0:
        return False
    i = tb.t_i[best_k]
    if tb.t_u[best_k] != 0.0:
        w.use[i] = 0
    if i + 1 < m and tb.t_v[best_k] != 0.0:
        w.use[i + 1] = 0
    return True


cdef double _step_search(const Tab* tb, Work* w, double rate, double rn2, Py_ssize_t nuse,
                         const uint8_t* cand, double z2) noexcept nogil:
    """The step test's passes from the fit at ``rate``; returns the last fitted slope.

    The covariance is evaluated at the fitted rate (clipped at 0), a far better estimate
    than the median at sky level, and refitted after each drop.  Drops are made in
    ``w.use``; ``cand`` / ``z2`` as in `_step_pass`.
    """
    cdef Py_ssize_t m = tb.m, i, _it
    cdef double crate = rate if rate > 0 else 0.0
    cdef Fit fit = _fit(tb, w, crate, rn2, False)
    for _it in range(m):
        if fit.chisq < z2 - 1e-9 * (fabs(fit.A * fit.inv_scale) + 1.0):
            break   # a step lowers chi^2 by at most chi^2
        if not _step_pass(tb, w, &fit, nuse, cand, z2):
            break
        fit = _fit(tb, w, crate, rn2, False)
        rate = fit.rate
        crate = rate if rate > 0 else 0.0
        fit = _fit(tb, w, crate, rn2, False)
        nuse = 0
        for i in range(m):
            nuse += w.use[i]
        if nuse <= 3:
            break
    return rate


cdef void _final_fit(const Tab* tb, Work* w, double rate, double guess, double rn2,
                     float* o_slope, float* o_vr, float* o_vp, float* o_chi) noexcept nogil:
    """Final fit with the covariance at ``rate`` (0 if negative, NaN stays); outputs."""
    cdef Fit fit
    if rate < 0 or rate == 0:
        rate = 0.0
    fit = _fit(tb, w, rate, rn2, True)
    o_slope[0] = <float>fit.rate
    o_chi[0] = <float>fit.chisq
    o_vp[0] = <float>fit.var_p
    o_vr[0] = <float>fit.var_r
    if tb.debias and isfinite(fit.rate):
        o_slope[0] = <float>(fit.rate - _bias(tb, w, rate, guess, rn2, fit.C))


cdef void _pixel(const Tab* tb, Work* w, const float* r, uint8_t* g, float rn,
                 float* o_slope, float* o_vr, float* o_vp, float* o_chi) noexcept nogil:
    """Fit one pixel; ``r`` / ``g`` point at its resultant 0 and step by ``tb.plane``."""
    cdef Py_ssize_t m = tb.m, plane = tb.plane, i, k, it, nuse
    cdef double rn2 = <double>rn * <double>rn, guess, rate
    cdef Fit fit
    cdef float diff

    o_slope[0] = NAN
    o_vr[0] = NAN
    o_vp[0] = NAN
    o_chi[0] = NAN
    for i in range(tb.n):
        if not isfinite(r[i * plane]):
            g[i * plane] |= DQ_DO_NOT_USE
    if isnan(rn):
        return  # no noise model, no fit
    k = 0
    for i in range(m):
        # float32 difference, then per unit time in float64 (paper I Eq. 5), as stcal
        diff = r[(i + 1) * plane] - r[i * plane]
        w.d[i] = <double>diff / tb.dt[i]
        w.use[i] = (g[i * plane] == 0) and (g[(i + 1) * plane] == 0)
        w.use0[i] = w.use[i]
        if isfinite(w.d[i]):
            w.sort[k] = w.d[i]
            k += 1
    # Covariance for the jump search at the median difference of the whole ramp,
    # flagged or not, clipped at 0 (stcal's mask_jumps).
    guess = _median(w.sort, k) if k > 0 else 0.0
    if not guess > 0:
        guess = 0.0
    fit = _fit(tb, w, guess, rn2, False)
    rate = fit.rate
    nuse = 0
    for i in range(m):
        nuse += w.use[i]
    # With two usable differences or fewer an omission cannot tell the bad one from
    # the good one (the one-omit chi^2 are 0 for both; stcal then decides on rounding
    # noise): no search, as for the three-or-fewer rule of later passes.
    if tb.use_jump and tb.step and nuse > 2:
        rate = _step_search(tb, w, rate, rn2, nuse, NULL, tb.z2)
        for i in range(m):
            if w.use0[i] and not w.use[i]:
                g[(i + 1) * plane] |= DQ_JUMP_DET
    elif tb.use_jump and nuse > 2:
        for it in range(m):
            if it > 0:
                fit = _fit(tb, w, guess, rn2, False)
            # An omission lowers chi^2 by at most chi^2 itself: below the thresholds
            # (with a margin for rounding) nothing can be dropped.
            if fit.chisq < tb.tmin - 1e-9 * (fabs(fit.A * fit.inv_scale) + 1.0):
                break
            _omit(tb, w, &fit)
            if not _jump_pass(tb, w, fit.chisq, nuse, &rate):
                break
            nuse = 0
            for i in range(m):
                nuse += w.use[i]
            if nuse <= 3:
                break  # too few differences left to tell a jump from a good one
        for i in range(m):
            if w.use0[i] and not w.use[i]:
                g[(i + 1) * plane] |= DQ_JUMP_DET
    _final_fit(tb, w, rate, guess, rn2, o_slope, o_vr, o_vp, o_chi)


cdef double _bias(const Tab* tb, Work* w, double rate, double guess, double rn2,
                  double C) noexcept nogil:
    """First-order bias of the slope from estimating the covariance (paper I Sect. 5).

    The final weights ``w(a)`` depend on the covariance rate ``a = c . d``, itself a
    linear estimate with weights ``c`` (the fit at the median rate on the same
    differences).  To first order ``E[slope] - true = c^T Cov (dw/da)`` (Brandt's
    ``calc_bias``), damped by the probability ``(1 + erf(a / sigma_c / sqrt 2)) / 2``
    that the estimate was not clipped at 0.  ``dw/da`` by a finite difference with
    ``da = 1e-7 (a + RN^2)``; ``w.dC`` holds the final fit (``C`` its sum) on entry.
    """
    cdef Py_ssize_t m = tb.m, i
    cdef double* w0 = w.rate1
    cdef double* c = w.chi1
    cdef double* w1 = w.rate2
    cdef double da = 1e-7 * (rate + rn2), bias = 0.0, var_c = 0.0, cov_c, fac
    cdef Fit f
    for i in range(m):
        w0[i] = w.dC[i] / C
    f = _fit(tb, w, rate + da, rn2, False)
    for i in range(m):
        w1[i] = w.dC[i] / f.C
    f = _fit(tb, w, guess, rn2, False)
    for i in range(m):
        c[i] = w.dC[i] / f.C
    # c^T Cov(a) (w1 - w0) / da and c^T Cov(a) c with the unscaled tridiagonal Cov(a)
    for i in range(m):
        cov_c = (rate * tb.a_ph[i] + rn2 * tb.a_rn[i]) * c[i]
        if i > 0:
            cov_c = cov_c + (rate * tb.b_ph[i - 1] + rn2 * tb.b_rn[i - 1]) * c[i - 1]
        if i < m - 1:
            cov_c = cov_c + (rate * tb.b_ph[i] + rn2 * tb.b_rn[i]) * c[i + 1]
        bias = bias + cov_c * (w1[i] - w0[i])
        var_c = var_c + cov_c * c[i]
    bias = bias / da
    fac = 0.5 * (1.0 + erf(rate / sqrt(var_c) / sqrt(2.0))) if var_c > 0 else 1.0
    return bias * fac


cdef Py_ssize_t _work_doubles(Py_ssize_t m) noexcept nogil:
    return 17 * (m + 1)


cdef Work _work_make(double* buf, uint8_t* ubuf, Py_ssize_t m) noexcept nogil:
    """One thread's scratch views (returned by value, so private inside ``parallel``)."""
    cdef Py_ssize_t s = m + 1
    cdef Work v
    cdef Work* w = &v
    w.d = buf
    w.dm = buf + s
    w.al = buf + 2 * s
    w.be = buf + 3 * s
    w.th = buf + 4 * s
    w.ph = buf + 5 * s
    w.Ph = buf + 6 * s
    w.PhD = buf + 7 * s
    w.Th = buf + 8 * s
    w.ThD = buf + 9 * s
    w.dC = buf + 10 * s
    w.dB = buf + 11 * s
    w.rate1 = buf + 12 * s
    w.chi1 = buf + 13 * s
    w.rate2 = buf + 14 * s
    w.chi2 = buf + 15 * s
    w.sort = buf + 16 * s
    w.use = ubuf
    w.use0 = ubuf + s
    return v



# --------------------------------------------------------------------------------------
# Fast path: blocks of BW pixels of a row, structure-of-arrays ([difference][pixel]) so
# that the loops over pixels vectorise.  It handles the common pixel (no group flag,
# finite data and read noise) whose first fit's chi^2 is below the omission thresholds
# (then nothing can be dropped), with the same arithmetic as `_fit` on all-used
# differences: the results are those of `_pixel`.  Every other pixel goes to `_pixel`.
# --------------------------------------------------------------------------------------
cdef enum:
    BW = 64


cdef struct Block:
    double* d       # (m, BW) differences per unit time
    double* al      # (m, BW)
    double* be      # (m, BW)
    double* th      # (m + 1, BW)
    double* ph      # (m + 1, BW)
    double* Ph      # (m, BW)
    double* PhD     # (m, BW)
    double* Th      # (m, BW)
    double* ThD     # (m + 1, BW)
    double* dC      # (m, BW)
    double* srt     # (m, BW) median network
    double* rate    # (BW,) covariance rate, then slope
    double* rn2     # (BW,)
    double* A       # (BW,)
    double* Asum    # (BW,)
    double* B       # (BW,)
    double* C       # (BW,)
    double* inv_tn  # (BW,)
    double* scale   # (BW,) inverse scale
    double* chisq   # (BW,)
    double* vp      # (BW,)
    double* vr      # (BW,)
    double* crate   # (BW,) the covariance rate of the final fit
    uint8_t* slow   # (BW,) pixel needs the per-pixel path


cdef Py_ssize_t _block_doubles(Py_ssize_t m) noexcept nogil:
    return (11 * (m + 1) + 13) * BW


cdef Block _block_make(double* buf, uint8_t* ubuf, Py_ssize_t m) noexcept nogil:
    cdef Block b
    cdef Py_ssize_t s = (m + 1) * BW
    b.d = buf
    b.al = buf + s
    b.be = buf + 2 * s
    b.th = buf + 3 * s
    b.ph = buf + 4 * s
    b.Ph = buf + 5 * s
    b.PhD = buf + 6 * s
    b.Th = buf + 7 * s
    b.ThD = buf + 8 * s
    b.dC = buf + 9 * s
    b.srt = buf + 10 * s
    buf = buf + 11 * s
    b.rate = buf
    b.rn2 = buf + BW
    b.A = buf + 2 * BW
    b.Asum = buf + 3 * BW
    b.B = buf + 4 * BW
    b.C = buf + 5 * BW
    b.inv_tn = buf + 6 * BW
    b.scale = buf + 7 * BW
    b.chisq = buf + 8 * BW
    b.vp = buf + 9 * BW
    b.vr = buf + 10 * BW
    b.crate = buf + 11 * BW
    b.slow = ubuf
    return b


# The block loops in C with restrict-qualified pointers, so that the compiler vectorises
# them without run-time alias checks (Cython cannot say restrict).  Same expressions, in
# the same order, as `_fit` (tested bit-identical).
cdef extern from *:
    """
    #include <math.h>
    #define RC_BW 64
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    static void rc_minmax(double *__restrict a, double *__restrict b, Py_ssize_t n) {
        Py_ssize_t x0 = 0;
    #if defined(__SSE2__)
        /* minpd(lo, hi) = lo < hi ? lo : hi and maxpd(hi, lo) = hi > lo ? hi : lo, lane
           by lane: the scalar expressions below, NaN included */
        for (; x0 + 2 <= n; x0 += 2) {
            __m128d lo = _mm_loadu_pd(a + x0), hi = _mm_loadu_pd(b + x0);
            _mm_storeu_pd(a + x0, _mm_min_pd(lo, hi));
            _mm_storeu_pd(b + x0, _mm_max_pd(hi, lo));
        }
    #endif
        for (Py_ssize_t x = x0; x < n; x++) {
            double lo = a[x], hi = b[x];
            a[x] = lo < hi ? lo : hi;
            b[x] = lo < hi ? hi : lo;
        }
    }
    static void rc_vfit(Py_ssize_t m, Py_ssize_t nb,
                        const double *__restrict aph_t, const double *__restrict arn_t,
                        const double *__restrict bph_t, const double *__restrict brn_t,
                        const double *__restrict d, double *__restrict al,
                        double *__restrict be, double *__restrict th,
                        double *__restrict ph, double *__restrict Ph,
                        double *__restrict PhD, double *__restrict Th,
                        double *__restrict ThD, double *__restrict dC,
                        double *__restrict rate, const double *__restrict rn2,
                        double *__restrict isc, double *__restrict A,
                        double *__restrict Asum, double *__restrict B,
                        double *__restrict C, double *__restrict itn,
                        double *__restrict chisq, double *__restrict vp,
                        double *__restrict vr, const double *__restrict crate,
                        int variances) {
        const Py_ssize_t W = RC_BW;
        Py_ssize_t i, x;
        double s;
        {
            double aph = aph_t[m / 2], arn = arn_t[m / 2];
            for (x = 0; x < nb; x++) {
                double q = rate[x] * aph + rn2[x] * arn;
                int e;
                isc[x] = 1.0;
                if (q > 0 && isfinite(q)) { frexp(q, &e); isc[x] = ldexp(1.0, -e); }
            }
        }
        for (i = 0; i < m; i++) {
            double aph = aph_t[i], arn = arn_t[i];
            for (x = 0; x < nb; x++) al[i * W + x] = (rate[x] * aph + rn2[x] * arn) * isc[x];
        }
        for (i = 0; i < m - 1; i++) {
            double bph = bph_t[i], brn = brn_t[i];
            for (x = 0; x < nb; x++) be[i * W + x] = (rate[x] * bph + rn2[x] * brn) * isc[x];
        }
        if (m == 1) for (x = 0; x < nb; x++) be[x] = 0.0;  /* read below as 0 * be */
        for (x = 0; x < nb; x++) {
            th[x] = 1.0; th[W + x] = al[x]; Th[x] = -1.0; ThD[x] = 0.0; ThD[W + x] = -d[x];
        }
        s = -1.0;
        for (i = 1; i < m; i++) {
            s = -s;
            const double *bp = be + (i - 1) * W, *ai = al + i * W, *ti = th + i * W,
                         *tp = th + (i - 1) * W, *di = d + i * W, *Tp = Th + (i - 1) * W,
                         *Dp = ThD + i * W;
            double *tn = th + (i + 1) * W, *Ti = Th + i * W, *Dn = ThD + (i + 1) * W;
            for (x = 0; x < nb; x++) {
                tn[x] = ai[x] * ti[x] - bp[x] * bp[x] * tp[x];
                Ti[x] = Tp[x] * bp[x] + s * ti[x];
                Dn[x] = bp[x] * Dp[x] + s * di[x] * ti[x];
            }
        }
        for (x = 0; x < nb; x++) {
            ph[m * W + x] = 1.0; ph[(m - 1) * W + x] = al[(m - 1) * W + x];
            Ph[(m - 1) * W + x] = 0.0; PhD[(m - 1) * W + x] = 0.0;
        }
        s = (m % 2) == 0 ? 1.0 : -1.0;
        for (i = m - 2; i >= 0; i--) {
            const double *ai = al + i * W, *bi = be + i * W, *p1 = ph + (i + 1) * W,
                         *p2 = ph + (i + 2) * W, *P1 = Ph + (i + 1) * W,
                         *D1 = PhD + (i + 1) * W, *d1 = d + (i + 1) * W;
            double *pi = ph + i * W, *Pi = Ph + i * W, *Di = PhD + i * W;
            for (x = 0; x < nb; x++) {
                pi[x] = ai[x] * p1[x] - bi[x] * bi[x] * p2[x];
                Pi[x] = (P1[x] + s * p2[x]) * bi[x];
                Di[x] = (D1[x] + s * d1[x] * p2[x]) * bi[x];
            }
            s = -s;
        }
        for (x = 0; x < nb; x++) {
            itn[x] = 1.0 / th[m * W + x]; A[x] = 0.0; Asum[x] = 0.0; B[x] = 0.0; C[x] = 0.0;
        }
        s = 1.0;
        for (i = 0; i < m; i++) {
            s = -s;
            const double *p1 = ph + (i + 1) * W, *Ti = Th + i * W, *ti = th + i * W,
                         *Pi = Ph + i * W, *di = d + i * W, *Di = ThD + i * W;
            /* beta extended by 1 for the first difference (a factor 1.0 is exact) */
            const double *bp = be + (i == 0 ? 0 : i - 1) * W;
            const double b0 = i == 0 ? 0.0 : 1.0, b1 = i == 0 ? 1.0 : 0.0;
            double *ci = dC + i * W;
            for (x = 0; x < nb; x++) {
                double dci = s * itn[x] * (p1[x] * Ti[x] + ti[x] * Pi[x]);
                double bext = b0 * bp[x] + b1;
                ci[x] = dci;
                A[x] = A[x] + di[x] * s * bext * p1[x] * Di[x];
                Asum[x] = Asum[x] + di[x] * di[x] * ti[x] * p1[x];
                B[x] = B[x] + di[x] * dci;
                C[x] = C[x] + dci;
            }
        }
        for (x = 0; x < nb; x++) {
            A[x] = (2.0 * A[x] + Asum[x]) * itn[x];
            chisq[x] = (A[x] - B[x] * B[x] / C[x]) * isc[x];
            A[x] = A[x] * isc[x];
            rate[x] = B[x] / C[x];
        }
        if (!variances) return;
        /* Asum and B are free now: the accumulators (A is kept for the step test's margin) */
        for (x = 0; x < nb; x++) { vp[x] = 0.0; vr[x] = 0.0; Asum[x] = 0.0; B[x] = 0.0; }
        for (i = 0; i < m; i++) {
            double aph = aph_t[i], arn = arn_t[i];
            const double *ci = dC + i * W;
            for (x = 0; x < nb; x++) {
                double wi = ci[x] / C[x];
                vp[x] = vp[x] + wi * wi * (crate[x] * aph);
                vr[x] = vr[x] + wi * wi * (rn2[x] * arn);
            }
        }
        for (i = 0; i < m - 1; i++) {
            double bph = bph_t[i], brn = brn_t[i];
            const double *ci = dC + i * W, *cn = dC + (i + 1) * W;
            for (x = 0; x < nb; x++) {
                double wi = ci[x] / C[x], wk = cn[x] / C[x];
                Asum[x] = Asum[x] + wk * wi * (crate[x] * bph);
                B[x] = B[x] + wk * wi * (rn2[x] * brn);
            }
        }
        for (x = 0; x < nb; x++) { vp[x] = vp[x] + 2.0 * Asum[x]; vr[x] = vr[x] + 2.0 * B[x]; }
    }
    """
    void rc_minmax(double* a, double* b, Py_ssize_t n) noexcept nogil
    void rc_vfit(Py_ssize_t m, Py_ssize_t nb, const double* aph_t, const double* arn_t,
                 const double* bph_t, const double* brn_t, const double* d, double* al,
                 double* be, double* th, double* ph, double* Ph, double* PhD, double* Th,
                 double* ThD, double* dC, double* rate, const double* rn2, double* isc,
                 double* A, double* Asum, double* B, double* C, double* itn, double* chisq,
                 double* vp, double* vr, const double* crate, int variances) noexcept nogil


cdef inline void _vfit(const Tab* tb, Block* b, Py_ssize_t nb, bint variances) noexcept nogil:
    """`_fit` of ``nb`` pixels with every difference used, covariance at ``b.rate``."""
    rc_vfit(tb.m, nb, tb.a_ph, tb.a_rn, tb.b_ph, tb.b_rn, b.d, b.al, b.be, b.th, b.ph,
            b.Ph, b.PhD, b.Th, b.ThD, b.dC, b.rate, b.rn2, b.scale, b.A, b.Asum, b.B, b.C,
            b.inv_tn, b.chisq, b.vp, b.vr, b.crate, variances)


cdef void _block(const Tab* tb, Block* b, Work* w, const float* r0, uint8_t* g0,
                 const float* rn, Py_ssize_t nb, float* o_slope, float* o_vr, float* o_vp,
                 float* o_chi) noexcept nogil:
    """Fit ``nb`` <= BW adjacent pixels of a row; ``r0``/``g0`` at resultant 0."""
    cdef Py_ssize_t n = tb.n, m = tb.m, plane = tb.plane, i, x, p, k
    cdef const float* ra
    cdef const float* rb
    cdef const uint8_t* g
    cdef double inv_dt, lo, hi, margin
    cdef float diff
    cdef double* srt = b.srt

    for x in range(nb):
        b.slow[x] = isnan(rn[x])
        b.rn2[x] = <double>rn[x] * <double>rn[x]
    for i in range(n):
        g = g0 + i * plane
        for x in range(nb):
            b.slow[x] = b.slow[x] | (g[x] != 0)
    for i in range(m):
        ra = r0 + i * plane
        rb = ra + plane
        inv_dt = tb.dt[i]
        for x in range(nb):
            diff = rb[x] - ra[x]
            b.d[i * BW + x] = <double>diff / inv_dt
            srt[i * BW + x] = b.d[i * BW + x]
        for x in range(nb):
            b.slow[x] = b.slow[x] | (not isfinite(b.d[i * BW + x]))
    # median of the differences: odd-even transposition sort (m rounds sort m values)
    for p in range(m):
        for i in range(p % 2, m - 1, 2):
            rc_minmax(srt + i * BW, srt + (i + 1) * BW, nb)
    k = m // 2
    for x in range(nb):
        if m % 2 == 1:
            lo = srt[k * BW + x]
        else:
            lo = (srt[(k - 1) * BW + x] + srt[k * BW + x]) / 2.0
        b.rate[x] = lo if lo > 0 else 0.0
    _vfit(tb, b, nb, False)
    if tb.use_jump and m > 2 and not tb.step:
        for x in range(nb):
            # as `_pixel`: below the thresholds no omission can pass
            margin = 1e-9 * (fabs(b.A[x]) + 1.0)
            if not (b.chisq[x] < tb.tmin - margin):
                b.slow[x] = 1
    for x in range(nb):
        lo = b.rate[x]
        if lo < 0 or lo == 0:
            lo = 0.0
        b.rate[x] = lo
        b.crate[x] = lo   # the covariance rate, for the variances
    _vfit(tb, b, nb, True)
    if tb.use_jump and m > 2 and tb.step:
        for x in range(nb):
            # the step test starts from this fit (covariance at the clipped slope)
            margin = 1e-9 * (fabs(b.A[x]) + 1.0)
            if not (b.chisq[x] < tb.tmin - margin):
                b.slow[x] = 1
    for x in range(nb):
        if b.slow[x]:
            _pixel(tb, w, r0 + x, g0 + x, rn[x], o_slope + x, o_vr + x, o_vp + x,
                   o_chi + x)
        else:
            o_slope[x] = <float>b.rate[x]
            o_chi[x] = <float>b.chisq[x]
            o_vp[x] = <float>b.vp[x]
            o_vr[x] = <float>b.vr[x]

def fit(const float[:, :, ::1] resultants, uint8_t[:, :, ::1] groupdq,
        const float[:, ::1] read_noise, const double[::1] dt,
        const double[::1] a_ph, const double[::1] a_rn,
        const double[::1] b_ph, const double[::1] b_rn, const double[::1] ok2,
        float[:, ::1] out_slope, float[:, ::1] out_vr, float[:, ::1] out_vp,
        float[:, ::1] out_chi, bint use_jump, double t1, double t2, int n_threads,
        bint use_block=True, bint debias=False, const int64_t[::1] step_i=None,
        const double[::1] step_u=None, const double[::1] step_v=None,
        double step_sigma=0.0):
    """Fit every pixel; the outputs and ``groupdq`` (JUMP_DET) are written in place.

    The tables ``b_ph``, ``b_rn`` and ``ok2`` have ``max(n - 2, 1)`` entries.
    ``use_block=False`` sends every pixel through the per-pixel path (for tests: the
    results are the same); ``debias`` applies the bias correction (per-pixel path).
    With the step templates ``step_i/u/v`` (see `romancore.ramp.likely.step_templates`)
    jumps are searched by the step test at ``step_sigma`` instead of the omissions.
    """
    cdef Py_ssize_t n = resultants.shape[0], ny = resultants.shape[1]
    cdef Py_ssize_t nx = resultants.shape[2], y, x
    cdef Tab tb
    cdef Work w
    cdef Block blk
    cdef double* buf
    cdef uint8_t* ubuf
    cdef double* bbuf
    cdef uint8_t* bubuf
    cdef Py_ssize_t x0, nb
    tb.n = n
    tb.m = n - 1
    tb.plane = ny * nx
    tb.dt = &dt[0]
    tb.a_ph = &a_ph[0]
    tb.a_rn = &a_rn[0]
    tb.b_ph = &b_ph[0]
    tb.b_rn = &b_rn[0]
    tb.ok2 = &ok2[0]
    tb.t1 = t1
    tb.t2 = t2
    tb.tmin = t1 if t1 < t2 else t2
    tb.step = step_i is not None
    tb.nt = 0
    tb.z2 = step_sigma * step_sigma
    if tb.step:
        if step_u is None or step_v is None or step_u.shape[0] != step_i.shape[0] \
                or step_v.shape[0] != step_i.shape[0]:
            raise ValueError("step_i, step_u and step_v must have the same length")
        for x in range(step_i.shape[0]):
            if not 0 <= step_i[x] < n - 1:
                raise ValueError("step template difference index out of range")
        tb.nt = step_i.shape[0]
        if tb.nt > 0:
            tb.t_i = &step_i[0]
            tb.t_u = &step_u[0]
            tb.t_v = &step_v[0]
        tb.tmin = tb.z2
    tb.use_jump = use_jump and n >= 3
    tb.debias = debias
    use_block = use_block and not debias

    with nogil, parallel(num_threads=n_threads):
        buf = <double*>malloc(_work_doubles(n - 1) * sizeof(double))
        ubuf = <uint8_t*>malloc(2 * n * sizeof(uint8_t))
        bbuf = <double*>malloc(_block_doubles(n - 1) * sizeof(double))
        bubuf = <uint8_t*>malloc(BW * sizeof(uint8_t))
        if buf == NULL or ubuf == NULL or bbuf == NULL or bubuf == NULL:
            with gil:
                raise MemoryError("romancore.fit_ramps_likely: out of memory for scratch")
        w = _work_make(buf, ubuf, n - 1)
        blk = _block_make(bbuf, bubuf, n - 1)
        for y in prange(ny, schedule="dynamic", chunksize=4):
            x0 = 0
            while x0 < nx:
                nb = nx - x0 if nx - x0 < BW else BW
                if use_block:
                    _block(&tb, &blk, &w, &resultants[0, y, x0], &groupdq[0, y, x0],
                           &read_noise[y, x0], nb, &out_slope[y, x0], &out_vr[y, x0],
                           &out_vp[y, x0], &out_chi[y, x0])
                else:
                    for x in range(x0, x0 + nb):
                        _pixel(&tb, &w, &resultants[0, y, x], &groupdq[0, y, x],
                               read_noise[y, x], &out_slope[y, x], &out_vr[y, x],
                               &out_vp[y, x], &out_chi[y, x])
                x0 = x0 + nb
        free(buf)
        free(ubuf)
        free(bbuf)
        free(bubuf)


# --------------------------------------------------------------------------------------
# Neighbour pass: after the first pass, a pixel with no jump whose 8 neighbours include
# one with a jump is searched again by the step test, at a lower threshold and only with
# the templates that touch a difference the neighbour lost (the same time).
# --------------------------------------------------------------------------------------
cdef bint _neighbor_pixel(const Tab* tb, Work* w, const float* r, uint8_t* g, float rn,
                          const uint8_t* cand, float* o_slope, float* o_vr, float* o_vp,
                          float* o_chi) noexcept nogil:
    """Search one first-pass-clean pixel for a step among the templates ``cand``.

    Rebuilds the pixel's differences and usable mask as `_pixel` did (its group DQ
    holds no JUMP_DET, so the mask is the first pass's), fits at the median rate, runs
    the step search at ``tb.z2`` restricted to ``cand`` and, only if something was
    dropped, flags the later resultant of each dropped difference and rewrites the
    outputs with the final fit.  Returns whether something was dropped.
    """
    cdef Py_ssize_t m = tb.m, plane = tb.plane, i, k = 0, nuse = 0
    cdef double rn2 = <double>rn * <double>rn, guess, rate
    cdef bint dropped = False
    cdef Fit fit
    cdef float diff
    if isnan(rn):
        return False
    for i in range(m):
        diff = r[(i + 1) * plane] - r[i * plane]
        w.d[i] = <double>diff / tb.dt[i]
        w.use[i] = (g[i * plane] == 0) and (g[(i + 1) * plane] == 0)
        w.use0[i] = w.use[i]
        nuse += w.use[i]
        if isfinite(w.d[i]):
            w.sort[k] = w.d[i]
            k += 1
    if nuse <= 2:
        return False
    guess = _median(w.sort, k) if k > 0 else 0.0
    if not guess > 0:
        guess = 0.0
    fit = _fit(tb, w, guess, rn2, False)
    rate = _step_search(tb, w, fit.rate, rn2, nuse, cand, tb.z2)
    for i in range(m):
        if w.use0[i] and not w.use[i]:
            g[(i + 1) * plane] |= DQ_JUMP_DET
            dropped = True
    if not dropped:
        return False
    _final_fit(tb, w, rate, guess, rn2, o_slope, o_vr, o_vp, o_chi)
    return True


def neighbors(const float[:, :, ::1] resultants, uint8_t[:, :, ::1] groupdq,
              const float[:, ::1] read_noise, const double[::1] dt,
              const double[::1] a_ph, const double[::1] a_rn,
              const double[::1] b_ph, const double[::1] b_rn,
              const int64_t[::1] step_i, const double[::1] step_u,
              const double[::1] step_v, double sigma,
              float[:, ::1] out_slope, float[:, ::1] out_vr, float[:, ::1] out_vp,
              float[:, ::1] out_chi, uint8_t[:, ::1] seed, int n_threads,
              bint debias=False):
    """The neighbour pass, after `fit`; returns the number of pixels it flagged.

    ``seed`` (scratch, shape (ny, nx)) gets 1 where the first pass left a JUMP_DET.
    Every pixel with ``seed`` 0 and a neighbour (8-connected) with ``seed`` 1 is
    searched at ``sigma`` with the templates whose differences all belong to the set
    ``{r - 1}`` of the resultants ``r >= 1`` flagged JUMP_DET in such neighbours; flags and outputs
    change only where it drops something.  Only seed pixels' group DQ is read across
    pixels and they are never written here, so the result does not depend on the
    order (thread count).  ``out_chi`` must hold the first pass's chi^2: pixels whose
    chi^2 is below ``sigma^2`` cannot hold a step that large and are not searched.
    """
    cdef Py_ssize_t n = resultants.shape[0], ny = resultants.shape[1]
    cdef Py_ssize_t nx = resultants.shape[2], m = n - 1, nt = step_i.shape[0]
    cdef Py_ssize_t y, x, i, k, yy, xx, found = 0
    cdef Tab tb
    cdef Work w
    cdef double* buf
    cdef uint8_t* ubuf
    cdef uint8_t* sdiff
    cdef uint8_t* cand
    cdef bint any_seed
    cdef float chi_floor = <float>(sigma * sigma * (1.0 - 1e-5))
    if n < 3 or nt == 0:
        return 0
    if step_u.shape[0] != nt or step_v.shape[0] != nt:
        raise ValueError("step_i, step_u and step_v must have the same length")
    for k in range(nt):
        if not 0 <= step_i[k] < m:
            raise ValueError("step template difference index out of range")
    tb.n = n
    tb.m = m
    tb.plane = ny * nx
    tb.dt = &dt[0]
    tb.a_ph = &a_ph[0]
    tb.a_rn = &a_rn[0]
    tb.b_ph = &b_ph[0]
    tb.b_rn = &b_rn[0]
    tb.ok2 = &b_rn[0]      # not read: no omission here
    tb.t1 = sigma * sigma
    tb.t2 = sigma * sigma
    tb.tmin = sigma * sigma
    tb.use_jump = True
    tb.step = True
    tb.nt = nt
    tb.t_i = &step_i[0]
    tb.t_u = &step_u[0]
    tb.t_v = &step_v[0]
    tb.z2 = sigma * sigma
    tb.debias = debias

    with nogil:
        for y in prange(ny, schedule="static", num_threads=n_threads):
            for x in range(nx):
                seed[y, x] = 0
            for i in range(n):
                for x in range(nx):
                    if groupdq[i, y, x] & DQ_JUMP_DET:
                        seed[y, x] = 1

    with nogil, parallel(num_threads=n_threads):
        buf = <double*>malloc(_work_doubles(m) * sizeof(double))
        ubuf = <uint8_t*>malloc((2 * n + m + nt) * sizeof(uint8_t))
        if buf == NULL or ubuf == NULL:
            with gil:
                raise MemoryError("romancore.fit_ramps_likely: out of memory for scratch")
        w = _work_make(buf, ubuf, m)
        sdiff = ubuf + 2 * n
        cand = sdiff + m
        for y in prange(ny, schedule="dynamic", chunksize=16):
            for x in range(nx):
                # A step lowers chi^2 by at most chi^2, and the first pass's chi^2 of a
                # pixel without a jump is that of the search's first fit (the same
                # differences, the covariance at the same clipped slope), to float32
                # rounding: below the threshold (with a margin) nothing can be found.
                if seed[y, x] or not (out_chi[y, x] >= chi_floor):
                    continue
                any_seed = False
                for yy in range(y - 1, y + 2):
                    if yy < 0 or yy >= ny:
                        continue
                    for xx in range(x - 1, x + 2):
                        if xx < 0 or xx >= nx or not seed[yy, xx]:
                            continue
                        if not any_seed:
                            for i in range(m):
                                sdiff[i] = 0
                            any_seed = True
                        for i in range(1, n):
                            if groupdq[i, yy, xx] & DQ_JUMP_DET:
                                sdiff[i - 1] = 1
                if not any_seed:
                    continue
                for k in range(nt):
                    # templates whose differences were all lost by a seed neighbour
                    i = tb.t_i[k]
                    cand[k] = sdiff[i]
                    if i + 1 < m and tb.t_v[k] != 0.0 and not sdiff[i + 1]:
                        cand[k] = 0
                if _neighbor_pixel(&tb, &w, &resultants[0, y, x], &groupdq[0, y, x],
                                   read_noise[y, x], cand, &out_slope[y, x],
                                   &out_vr[y, x], &out_vp[y, x], &out_chi[y, x]):
                    found += 1
        free(buf)
        free(ubuf)
    return found
