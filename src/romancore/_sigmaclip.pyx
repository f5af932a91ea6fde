# cython: language_level=3
"""Sigma-clipping bounds from sorted values (private; see :mod:`romancore.sigmaclip`).

astropy's ``SigmaClip(cenfunc="median", stdfunc="mad_std")`` repeats: centre = median
of the kept values, spread = 1.482602218505602 x the median absolute deviation from
it, keep the values within ``[centre - sigma_lower spread, centre + sigma_upper
spread]``, until nothing changes, nothing is left, or ``maxiters``.  On sorted values
the kept values are always one contiguous run ``v[lo:hi]``: a median is read by
position, the absolute deviations of the run are two sorted sequences (left of the
median, walking down; right of it, walking up) whose middle order statistics are
found by binary search, and a clip moves ``lo`` and ``hi`` by binary search.  Medians
are exact order statistics, so the bounds equal astropy's bit for bit, at O(log n) per
iteration (after the one sort) instead of two selections.
"""
from cython.parallel cimport prange
from libc.math cimport NAN

import numpy as np

ctypedef fused real:
    float
    double

#: astropy.stats.mad_std's normalization (1 / Phi^-1(3/4)).
cdef double MAD_TO_STD = 1.482602218505602


cdef inline double _median_run(const real* v, Py_ssize_t lo, Py_ssize_t cnt) noexcept nogil:
    if cnt % 2 == 0:
        return 0.5 * (<double> v[lo + cnt // 2] + <double> v[lo + cnt // 2 - 1])
    return <double> v[lo + (cnt - 1) // 2]


cdef inline double _kth_deviation(const real* v, Py_ssize_t lo, Py_ssize_t mid,
                                  Py_ssize_t hi, double med, Py_ssize_t k) noexcept nogil:
    """The k-th smallest (0-based) |v - med| over the sorted run v[lo:hi].

    The deviations are two sorted sequences: A(i) = med - v[mid - 1 - i] (left of the
    median, walking down) and B(j) = v[mid + j] - med (walking up), ``mid`` the first
    index with v >= med.  The k-th smallest of their union is found by a binary search
    on how many of the k + 1 smallest come from A (O(log n), the classic selection in
    two sorted arrays); the value is the one a merge would reach, in the same double
    arithmetic.
    """
    cdef Py_ssize_t na = mid - lo, nb = hi - mid
    cdef Py_ssize_t ilo = k + 1 - nb if k + 1 > nb else 0
    cdef Py_ssize_t ihi = k + 1 if k + 1 < na else na
    cdef Py_ssize_t i, j
    cdef double a, b
    while ilo < ihi:
        i = (ilo + ihi) // 2
        j = k + 1 - i
        # take more from A while its next deviation is below B's last one taken
        if med - <double> v[mid - 1 - i] < <double> v[mid + j - 1] - med:
            ilo = i + 1
        else:
            ihi = i
    i = ilo
    j = k + 1 - i
    a = med - <double> v[mid - i] if i > 0 else -1.0
    b = <double> v[mid + j - 1] - med if j > 0 else -1.0
    return a if a > b else b


cdef double _mad_run(const real* v, Py_ssize_t lo, Py_ssize_t hi,
                     double med) noexcept nogil:
    """Median of |v - med| over the sorted run v[lo:hi] (two order statistics)."""
    cdef Py_ssize_t cnt = hi - lo
    cdef Py_ssize_t a, b, m, stop
    # first index of the right-hand side (v >= med)
    a = lo
    b = hi
    while a < b:
        m = (a + b) // 2
        if <double> v[m] < med:
            a = m + 1
        else:
            b = m
    stop = cnt // 2    # the order statistics needed: stop (and stop - 1 when even)
    if cnt % 2 == 0:
        return 0.5 * (_kth_deviation(v, lo, a, hi, med, stop)
                      + _kth_deviation(v, lo, a, hi, med, stop - 1))
    return _kth_deviation(v, lo, a, hi, med, stop)


cdef Py_ssize_t _first_at_least(const real* v, Py_ssize_t lo, Py_ssize_t hi,
                                double x) noexcept nogil:
    cdef Py_ssize_t m
    while lo < hi:
        m = (lo + hi) // 2
        if <double> v[m] < x:
            lo = m + 1
        else:
            hi = m
    return lo


cdef Py_ssize_t _first_above(const real* v, Py_ssize_t lo, Py_ssize_t hi,
                             double x) noexcept nogil:
    cdef Py_ssize_t m
    while lo < hi:
        m = (lo + hi) // 2
        if <double> v[m] <= x:
            lo = m + 1
        else:
            hi = m
    return lo


def clip_bounds_sorted(const real[::1] values, double sigma_lower, double sigma_upper,
                       int maxiters):
    """Return astropy's final ``(lower, upper)`` bounds for sorted finite ``values``.

    ``maxiters < 0``: iterate until convergence.  NaN bounds for no values.
    """
    cdef Py_ssize_t lo = 0, hi = values.shape[0], cnt, new_lo, new_hi
    cdef int it = 0
    cdef double med, std, lower = NAN, upper = NAN
    if hi == 0:
        return NAN, NAN
    with nogil:
        while True:
            cnt = hi - lo
            med = _median_run(&values[0], lo, cnt)
            std = _mad_run(&values[0], lo, hi, med) * MAD_TO_STD
            lower = med - sigma_lower * std
            upper = med + sigma_upper * std
            new_lo = _first_at_least(&values[0], lo, hi, lower)
            new_hi = _first_above(&values[0], new_lo, hi, upper)
            if new_hi - new_lo == cnt or new_hi == new_lo:
                break
            lo = new_lo
            hi = new_hi
            it += 1
            if maxiters >= 0 and it >= maxiters:
                break
    return lower, upper


def clipped_stats_sorted(const real[::1] values, double sigma_lower, double sigma_upper,
                         int maxiters):
    """Clip sorted finite ``values`` as ``clip_bounds_sorted`` and describe what is kept.

    Kept: ``lower <= v <= upper`` with the final bounds, a contiguous run of the
    sorted values.  Returns ``(lower, upper, median, std, count)`` of the kept run:
    the median as numpy's (the mean of the two middle values computed in the values'
    own precision), the population standard deviation (two passes in double), the
    number kept; NaN statistics and a zero count when nothing is kept.
    """
    cdef Py_ssize_t n = values.shape[0], lo, hi, cnt, i
    cdef double lower, upper, med = NAN, std = NAN, mean, acc, d
    cdef real pair
    lower, upper = clip_bounds_sorted(values, sigma_lower, sigma_upper, maxiters)
    if n == 0 or not (lower <= upper):
        return lower, upper, NAN, NAN, 0
    with nogil:
        lo = _first_at_least(&values[0], 0, n, lower)
        hi = _first_above(&values[0], lo, n, upper)
        cnt = hi - lo
        if cnt > 0:
            if cnt % 2 == 0:
                # numpy: mean of the two middle values in their own precision
                pair = values[lo + cnt // 2 - 1] + values[lo + cnt // 2]
                med = <double> pair * 0.5
            else:
                med = <double> values[lo + (cnt - 1) // 2]
            acc = 0.0
            for i in range(lo, hi):
                acc += <double> values[i]
            mean = acc / cnt
            acc = 0.0
            for i in range(lo, hi):
                d = <double> values[i] - mean
                acc += d * d
            std = (acc / cnt) ** 0.5
    return lower, upper, med, std, cnt


cdef inline double _sum_one_block(const real* v, Py_ssize_t m, double shift,
                                  int square) noexcept nogil:
    """Sum of ``v[:m]`` (or of ``(v - shift)**2``) in float64, in order.

    The values are first converted to float64 a chunk at a time (a loop the compiler
    vectorises), then added one by one: the same additions in the same order.
    """
    cdef double buf[256]
    cdef double part = 0.0, d
    cdef Py_ssize_t i, c, k
    for c in range(0, m, 256):
        k = m - c
        if k > 256:
            k = 256
        for i in range(k):
            buf[i] = <double>v[c + i]
        if square:
            for i in range(k):
                d = buf[i] - shift
                part = part + d * d
        else:
            for i in range(k):
                part = part + buf[i]
    return part


cdef double _block_sum(const real* v, Py_ssize_t n, double shift, int square,
                       double* parts, int n_threads) noexcept nogil:
    """Sum of ``v`` (or of ``(v - shift)**2``) in float64, by blocks of 4096 values.

    Each block is summed in order into ``parts`` (blocks in parallel), then the
    parts are added in block order: the same sum whatever ``n_threads``.
    """
    cdef Py_ssize_t b, start, stop, nblocks = (n + 4095) // 4096
    cdef double total = 0.0
    for b in prange(nblocks, schedule="static", num_threads=n_threads):
        start = b * 4096
        stop = start + 4096
        if stop > n:
            stop = n
        parts[b] = _sum_one_block(v + start, stop - start, shift, square)
    for b in range(nblocks):
        total += parts[b]
    return total


cdef tuple _mean_std(const real[::1] values, int n_threads):
    cdef Py_ssize_t n = values.shape[0]
    cdef double mean, var
    if n == 0:
        return NAN, NAN
    cdef double[::1] parts = np.empty((n + 4095) // 4096, dtype=np.float64)
    with nogil:
        mean = _block_sum(&values[0], n, 0.0, 0, &parts[0], n_threads) / n
        var = _block_sum(&values[0], n, mean, 1, &parts[0], n_threads) / n
    return mean, var ** 0.5


def mean_std(values, int n_threads=1):
    """Return ``(mean, std)`` of ``values`` accumulated in float64 (two passes, ddof 0).

    ``values``: a C-contiguous 1-D float32 or float64 array. NaN for no values.
    """
    cdef const float[::1] single
    cdef const double[::1] double_
    if values.dtype == np.float32:
        single = values
        return _mean_std(single, n_threads)
    double_ = values
    return _mean_std(double_, n_threads)
