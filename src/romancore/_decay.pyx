# cython: language_level=3, cdivision=True
"""Compiled kernels of the decaying-signal corrections (private; see :mod:`romancore.decay`).

* ``subtract_periodic``: ``frame[y, x] -= period[y, x % 256]`` on a window of a frame,
  the difference taken in double precision and stored as float32 (what NumPy does for
  ``float32 -= float64``);
* ``row_medians``: per row, the median of ``a - b`` (float32), as ``numpy.median``;
* ``clipped_row_means``: per row, WFI18's first-resultant residual averaged over the
  weakly illuminated pixels with astropy's sigma clipping.

Rows are distributed over threads; each thread has its own buffers.
"""
from cython.parallel cimport parallel, prange
from libc.math cimport NAN, isfinite, isnan, sqrt
from libc.stdlib cimport free, malloc

cdef enum:
    PERIOD = 256


cdef void _subtract_row(float* f, const double* p, Py_ssize_t col0,
                        Py_ssize_t col1) noexcept nogil:
    """f[x] -= p[x % 256] for col0 <= x < col1 (in double, stored as float)."""
    cdef Py_ssize_t x
    for x in range(col0, col1):
        f[x] = <float>(<double>f[x] - p[x & (PERIOD - 1)])


def subtract_periodic(float[:, ::1] frame, const double[:, ::1] period,
                      Py_ssize_t row0, Py_ssize_t row1, Py_ssize_t col0, Py_ssize_t col1,
                      int n_threads):
    cdef Py_ssize_t y
    with nogil, parallel(num_threads=n_threads):
        for y in prange(row0, row1, schedule="static"):
            _subtract_row(&frame[y, 0], &period[y, 0], col0, col1)


ctypedef fused real:
    float
    double


cdef real _kth(real* a, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """k-th smallest of a[0:n] by Wirth's (Hoare's) selection; a is reordered, as
    astropy's is, so that a following selection on a[0:k] sees the same order."""
    cdef Py_ssize_t lo = 0, hi = n - 1, i, j
    cdef real pivot, tmp
    while lo < hi:
        pivot = a[k]
        i = lo
        j = hi
        while True:
            while a[i] < pivot:
                i += 1
            while pivot < a[j]:
                j -= 1
            if i <= j:
                tmp = a[i]
                a[i] = a[j]
                a[j] = tmp
                i += 1
                j -= 1
            if i > j:
                break
        if j < k:
            lo = i
        if k < i:
            hi = j
    return a[k]


def row_medians(const float[:, ::1] a, const float[:, ::1] b, Py_ssize_t row0,
                Py_ssize_t row1, Py_ssize_t col0, Py_ssize_t col1, float[::1] out,
                int n_threads):
    cdef Py_ssize_t y, x, n = col1 - col0, h
    cdef float* buf
    cdef float lo, hi, s
    cdef bint has_nan
    with nogil, parallel(num_threads=n_threads):
        buf = <float*>malloc(max(n, 1) * sizeof(float))
        for y in prange(row0, row1, schedule="dynamic", chunksize=8):
            has_nan = False
            for x in range(n):
                buf[x] = a[y, col0 + x] - b[y, col0 + x]
                if isnan(buf[x]):
                    has_nan = True
            if has_nan or n == 0:
                out[y - row0] = NAN  # numpy.median propagates NaN
                continue
            h = n // 2
            hi = _kth(buf, n, h)
            if n % 2 == 1:
                out[y - row0] = hi
            else:
                # numpy: the float32 mean of the two middle values
                lo = _kth(buf, h, h - 1)
                s = lo + hi
                out[y - row0] = s / <float>2.0
        free(buf)


cdef void _clip_bounds(double* v, Py_ssize_t n, double sigma, int maxiters,
                       double* lower, double* upper) noexcept nogil:
    """astropy's fast sigma clip (median centre, standard deviation) of v[0:n].

    Each pass: centre = median, std about the mean; keep lower <= v <= upper;
    stop when nothing more is clipped, nothing is left, or after ``maxiters`` passes.
    """
    cdef Py_ssize_t i, kept, iteration = 0
    cdef double med, mean, std, d
    while True:
        if n % 2 == 0:
            med = 0.5 * (_kth(v, n, n // 2) + _kth(v, n, n // 2 - 1))
        else:
            med = _kth(v, n, (n - 1) // 2)
        mean = 0.0
        for i in range(n):
            mean += v[i]
        mean /= n
        std = 0.0
        for i in range(n):
            d = v[i] - mean
            std += d * d
        std = sqrt(std / n)
        lower[0] = med - sigma * std
        upper[0] = med + sigma * std
        kept = 0
        for i in range(n):
            if v[i] >= lower[0] and v[i] <= upper[0]:
                v[kept] = v[i]
                kept += 1
        if kept == n or kept == 0:
            return
        n = kept
        iteration += 1
        if maxiters != -1 and iteration >= maxiters:
            return


cdef double _pairwise_sum(const double* a, Py_ssize_t n) noexcept nogil:
    """NumPy's pairwise summation of a[0:n] (the sum np.sum takes along a row)."""
    cdef double r[8]
    cdef double res
    cdef Py_ssize_t i, n2
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    if n <= 128:
        for i in range(8):
            r[i] = a[i]
        i = 8
        while i < n - (n % 8):
            r[0] += a[i]
            r[1] += a[i + 1]
            r[2] += a[i + 2]
            r[3] += a[i + 3]
            r[4] += a[i + 4]
            r[5] += a[i + 5]
            r[6] += a[i + 6]
            r[7] += a[i + 7]
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            res += a[i]
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise_sum(a, n2) + _pairwise_sum(a + n2, n - n2)


cdef double _row_mean(const float* d0, const float* d1, const float* d2,
                      const float* d3, const float* d4, Py_ssize_t n, double dt0,
                      double dt1, const float* thr, bint per_column, float row_thr,
                      double sigma, int maxiters, double* res, double* work, double* row,
                      bint* usable) noexcept nogil:
    """Clipped mean residual of one row (pointers at the row's first science pixel)."""
    cdef Py_ssize_t x, count = 0, kept = 0
    cdef double rate, value, lower = 0.0, upper = 0.0
    cdef float diff, t
    for x in range(n):
        # romancal wfi18_transient: the first resultant extrapolated back from the
        # 2nd and 3rd (float32 differences, float64 arithmetic, as NumPy computes it)
        rate = <double>(d2[x] - d1[x]) / dt1
        value = <double>d0[x] - (<double>d1[x] - rate * dt0)
        res[x] = value
        diff = d4[x] - d3[x]
        t = thr[x] if per_column else row_thr
        usable[x] = (not (diff > t)) and isfinite(value)
        if usable[x]:
            work[count] = value
            count += 1
    if count == 0:
        return NAN
    _clip_bounds(work, count, sigma, maxiters, &lower, &upper)
    # the mean of what the final bounds keep, summed as numpy.nanmean does (the
    # others as zeros in a pairwise sum over the whole row)
    for x in range(n):
        if usable[x] and res[x] >= lower and res[x] <= upper:
            row[x] = res[x]
            kept += 1
        else:
            row[x] = 0.0
    if kept == 0:
        return NAN
    return _pairwise_sum(row, n) / <double>kept


def clipped_row_means(const float[:, ::1] d0, const float[:, ::1] d1,
                      const float[:, ::1] d2, const float[:, ::1] d3,
                      const float[:, ::1] d4, double dt0, double dt1,
                      const float[::1] thresholds, bint per_column,
                      Py_ssize_t row0, Py_ssize_t row1, Py_ssize_t col0, Py_ssize_t col1,
                      double sigma, int maxiters, double[::1] out, int n_threads):
    cdef Py_ssize_t y, n = col1 - col0
    cdef double* res
    cdef double* work
    cdef double* row
    cdef bint* usable
    cdef float row_thr
    with nogil, parallel(num_threads=n_threads):
        res = <double*>malloc(max(n, 1) * sizeof(double))
        work = <double*>malloc(max(n, 1) * sizeof(double))
        row = <double*>malloc(max(n, 1) * sizeof(double))
        usable = <bint*>malloc(max(n, 1) * sizeof(bint))
        for y in prange(row0, row1, schedule="dynamic", chunksize=8):
            row_thr = 0 if per_column else thresholds[y - row0]
            out[y - row0] = _row_mean(
                &d0[y, col0], &d1[y, col0], &d2[y, col0], &d3[y, col0], &d4[y, col0], n,
                dt0, dt1, &thresholds[0], per_column, row_thr, sigma, maxiters,
                res, work, row, usable)
        free(res)
        free(work)
        free(row)
        free(usable)
