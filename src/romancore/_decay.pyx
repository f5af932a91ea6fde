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
from libc.math cimport NAN
from libc.stdlib cimport free, malloc

cdef enum:
    PERIOD = 256


cdef void _subtract_row(float* f, const double* p, Py_ssize_t col0,
                        Py_ssize_t col1) noexcept nogil:
    """f[x] -= p[x % 256] for col0 <= x < col1 (in double, stored as float).

    Period by period, so that the inner loop is contiguous in both arrays (vectorised).
    """
    cdef Py_ssize_t start, stop, k, k0
    start = col0
    while start < col1:
        k0 = start & (PERIOD - 1)
        stop = start - k0 + PERIOD
        if stop > col1:
            stop = col1
        for k in range(stop - start):
            f[start + k] = <float>(<double>f[start + k] - p[k0 + k])
        start = stop


def subtract_periodic(float[:, ::1] frame, const double[:, ::1] period,
                      Py_ssize_t row0, Py_ssize_t row1, Py_ssize_t col0, Py_ssize_t col1,
                      int n_threads):
    cdef Py_ssize_t y
    with nogil, parallel(num_threads=n_threads):
        for y in prange(row0, row1, schedule="static"):
            _subtract_row(&frame[y, 0], &period[y, 0], col0, col1)


cdef extern from *:
    """
    #include <stddef.h>
    #include <stdint.h>
    #include <stdlib.h>
    #include <string.h>
    #include <math.h>

    /* x86-64 Linux: AVX2 clones of the row loops chosen at load time (the same
       operations in the same order: the same results as the baseline). */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define RC_DECAY_CLONES __attribute__((target_clones("avx2", "default")))
    #else
    #define RC_DECAY_CLONES
    #endif

    /* Order-preserving unsigned key of a non-NaN float32 (-0.0 sorts just below
       +0.0, which compare equal as floats: the value selected is the same). */
    static inline uint32_t rc_f32_key(float f)
    {
        uint32_t u;
        memcpy(&u, &f, sizeof u);
        return u ^ ((uint32_t)((int32_t)u >> 31) | 0x80000000u);
    }

    static inline float rc_key_f32(uint32_t k)
    {
        uint32_t u = (k & 0x80000000u) ? (k ^ 0x80000000u) : ~k;
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }

    /* The largest of keys[0:n] below k (0 if none): a max reduction, vectorised. */
    RC_DECAY_CLONES static uint32_t rc_max_below(const uint32_t *keys, ptrdiff_t n,
                                                 uint32_t k)
    {
        ptrdiff_t i;
        uint32_t mb = 0;
        for (i = 0; i < n; i++) {
            uint32_t c = keys[i] < k ? keys[i] : 0u;
            mb = c > mb ? c : mb;
        }
        return mb;
    }

    /* The key of rank r (0-based) among keys[0:n], by radix selection: a histogram
       of each byte in turn (most significant first; four interleaved histograms,
       so that runs of one bin do not wait on each other), keeping only the bin
       holding rank r (gathered into tmp, unless every key shares it).  Exact.
       *below (r >= 1): the key of rank r - 1, the same key while rank r - 1 shares
       rank r's bins, else, at the first byte where it does not, the largest key of
       the lower bins of that byte (a scan of the keys left at that byte only). */
    RC_DECAY_CLONES static uint32_t rc_select_key(const uint32_t *keys, ptrdiff_t n,
                                                  ptrdiff_t r, uint32_t *tmp,
                                                  uint32_t *hist, uint32_t *below)
    {
        const uint32_t *src = keys;
        ptrdiff_t m = n, i, j, cum;
        uint32_t prefix = 0, b, c;
        int s, have_below = r < 1;
        for (s = 24; s >= 0; s -= 8) {
            memset(hist, 0, 4 * 256 * sizeof(uint32_t));
            for (i = 0; i + 4 <= m; i += 4) {
                hist[(src[i] >> s) & 0xffu]++;
                hist[256 + ((src[i + 1] >> s) & 0xffu)]++;
                hist[512 + ((src[i + 2] >> s) & 0xffu)]++;
                hist[768 + ((src[i + 3] >> s) & 0xffu)]++;
            }
            for (; i < m; i++)
                hist[(src[i] >> s) & 0xffu]++;
            cum = 0;
            b = 0;
            for (;;) {
                c = hist[b] + hist[256 + b] + hist[512 + b] + hist[768 + b];
                if (cum + (ptrdiff_t)c > r)
                    break;
                cum += c;
                b++;
            }
            r -= cum;
            prefix |= b << s;
            if (!have_below && r == 0) {
                /* rank r - 1 lies in a lower bin of this byte, among src */
                *below = rc_max_below(src, m, prefix);
                have_below = 1;
            }
            if (s == 0) {
                if (!have_below)
                    *below = prefix;  /* the bin holds one key: r > 0 is a repeat */
                break;
            }
            if ((ptrdiff_t)c == m)
                continue;
            j = 0;
            for (i = 0; i < m; i++) {  /* branch-free gather of bin b */
                uint32_t k = src[i];
                tmp[j] = k;
                j += ((k >> s) & 0xffu) == b;
            }
            src = tmp;
            m = j;
        }
        return prefix;
    }

    /* numpy.median of keys[0:n] (n > 0, no NaN): the middle value, or the float32
       mean of the two middle values. */
    static float rc_median_keys(const uint32_t *keys, ptrdiff_t n, uint32_t *tmp,
                                uint32_t *hist)
    {
        uint32_t khi, kbelow = 0;
        float lo, hi, s;
        khi = rc_select_key(keys, n, n / 2, tmp, hist, &kbelow);
        if (n % 2 == 1)
            return rc_key_f32(khi);
        /* rank n/2 - 1 */
        lo = rc_key_f32(kbelow);
        hi = rc_key_f32(khi);
        s = lo + hi;
        return s / 2.0f;
    }

    static void rc_insertion_sort(double *v, ptrdiff_t n)
    {
        ptrdiff_t i, j;
        double x;
        for (i = 1; i < n; i++) {
            x = v[i];
            j = i;
            while (j > 0 && v[j - 1] > x) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = x;
        }
    }

    static int rc_cmp_double(const void *a, const void *b)
    {
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
    }

    /* Sort finite v[0:n] ascending: values spread over 2 n buckets by a monotone
       linear map of [min, max] (so buckets are in order), each bucket sorted on its
       own (insertion sort when small, the same method when large; qsort past a
       depth that only pathological spacings reach).  tmp, qi and qs hold n values
       each, cnt 2 n; a bucket's recursion uses the parent's scratch at its own
       positions (qi, qs) or after the parent is done with it (tmp, cnt). */
    static void rc_sort_finite_q(double *v, ptrdiff_t n, double *tmp, uint32_t *qi,
                                 uint32_t *qs, uint32_t *cnt, int depth)
    {
        ptrdiff_t i, j, nb, start;
        uint32_t cmax;
        double lo, hi, scale, l4[4], h4[4];
        if (n <= 24) {
            rc_insertion_sort(v, n);
            return;
        }
        if (depth > 12) {
            qsort(v, (size_t)n, sizeof(double), rc_cmp_double);
            return;
        }
        for (j = 0; j < 4; j++) {
            l4[j] = v[0];
            h4[j] = v[0];
        }
        for (i = 0; i + 4 <= n; i += 4)  /* four independent min/max chains */
            for (j = 0; j < 4; j++) {
                l4[j] = v[i + j] < l4[j] ? v[i + j] : l4[j];
                h4[j] = v[i + j] > h4[j] ? v[i + j] : h4[j];
            }
        for (; i < n; i++) {
            l4[0] = v[i] < l4[0] ? v[i] : l4[0];
            h4[0] = v[i] > h4[0] ? v[i] : h4[0];
        }
        lo = l4[0];
        hi = h4[0];
        for (j = 1; j < 4; j++) {
            lo = l4[j] < lo ? l4[j] : lo;
            hi = h4[j] > hi ? h4[j] : hi;
        }
        if (!(hi > lo))
            return;  /* all equal */
        nb = 2 * n;  /* two buckets a value: fewer values share one */
        /* max maps to ~nb - 0.5: min in bucket 0, max in a later one */
        scale = ((double)nb - 0.5) / (hi - lo);
        for (i = 0; i < n; i++) {
            ptrdiff_t q = (ptrdiff_t)((v[i] - lo) * scale);
            q = q < 0 ? 0 : (q >= nb ? nb - 1 : q);
            qi[i] = (uint32_t)q;
        }
        memset(cnt, 0, (size_t)nb * sizeof(uint32_t));
        for (i = 0; i < n; i++)
            cnt[qi[i]]++;
        start = 0;
        cmax = 0;
        for (j = 0; j < nb; j++) {  /* counts -> starts */
            uint32_t c = cnt[j];
            cnt[j] = (uint32_t)start;
            start += c;
            cmax = c > cmax ? c : cmax;
        }
        if (cmax <= 24) {
            /* small buckets: one insertion sort over the bucket-ordered values moves
               each value within its bucket only (the same order as sorting the
               buckets one by one), with no scan for the buckets' bounds */
            for (i = 0; i < n; i++)
                tmp[cnt[qi[i]]++] = v[i];
            memcpy(v, tmp, (size_t)n * sizeof(double));
            rc_insertion_sort(v, n);
            return;
        }
        for (i = 0; i < n; i++) {
            uint32_t p = cnt[qi[i]]++;
            tmp[p] = v[i];
            qs[p] = qi[i];
        }
        memcpy(v, tmp, (size_t)n * sizeof(double));
        /* each bucket is a run of one bucket number: sort the runs */
        i = 0;
        while (i < n) {
            uint32_t b = qs[i];
            j = i + 1;
            while (j < n && qs[j] == b)
                j++;
            if (j - i > 1)
                rc_sort_finite_q(v + i, j - i, tmp, qi + i, qs + i, cnt, depth + 1);
            i = j;
        }
    }

    /* Mean and population standard deviation of v[0:n] (two passes, eight
       independent partial sums so that the loops vectorise). */
    RC_DECAY_CLONES static void rc_mean_std(const double *restrict v, ptrdiff_t n,
                                            double *mean, double *std)
    {
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, m, t = 0.0;
        ptrdiff_t i, j;
        for (i = 0; i + 8 <= n; i += 8)
            for (j = 0; j < 8; j++)
                acc[j] += v[i + j];
        for (j = 0; j < 8; j++)
            t += acc[j];
        for (; i < n; i++)
            t += v[i];
        m = t / (double)n;
        for (j = 0; j < 8; j++)
            acc[j] = 0.0;
        t = 0.0;
        for (i = 0; i + 8 <= n; i += 8)
            for (j = 0; j < 8; j++) {
                double d = v[i + j] - m;
                acc[j] += d * d;
            }
        for (j = 0; j < 8; j++)
            t += acc[j];
        for (; i < n; i++) {
            double d = v[i] - m;
            t += d * d;
        }
        *mean = m;
        *std = sqrt(t / (double)n);
    }
    /* One row's first-resultant residuals (romancal wfi18_transient: R0 minus R1
       extrapolated back with the rate of R1 -> R2; float32 differences, float64
       arithmetic, as NumPy computes it) and which are usable: R4 - R3 not above the
       threshold and the residual finite.  Branch-free, so it vectorises (AVX2 clone
       on x86-64 Linux: the same operations, the same results). */
    RC_DECAY_CLONES static ptrdiff_t rc_residuals(
            const float *restrict d0, const float *restrict d1, const float *restrict d2,
            const float *restrict d3, const float *restrict d4, ptrdiff_t n, double dt0,
            double dt1, const float *restrict thr, int per_column, float row_thr,
            double *restrict res, unsigned char *restrict use, double *restrict work)
    {
        ptrdiff_t x, count = 0;
        if (per_column) {
            for (x = 0; x < n; x++) {
                double rate = (double)(d2[x] - d1[x]) / dt1;
                double value = (double)d0[x] - ((double)d1[x] - rate * dt0);
                float diff = d4[x] - d3[x];
                res[x] = value;
                use[x] = !(diff > thr[x]) & (value - value == 0.0);
            }
        } else {
            for (x = 0; x < n; x++) {
                double rate = (double)(d2[x] - d1[x]) / dt1;
                double value = (double)d0[x] - ((double)d1[x] - rate * dt0);
                float diff = d4[x] - d3[x];
                res[x] = value;
                use[x] = !(diff > row_thr) & (value - value == 0.0);
            }
        }
        for (x = 0; x < n; x++) {  /* the usable ones, in order */
            work[count] = res[x];
            count += use[x];
        }
        return count;
    }

    /* row[x] = res[x] where usable and within [lower, upper], else 0; the count. */
    RC_DECAY_CLONES static ptrdiff_t rc_kept(const double *restrict res,
                                             const unsigned char *restrict use,
                                             ptrdiff_t n, double lower, double upper,
                                             double *restrict row)
    {
        ptrdiff_t x, kept = 0;
        for (x = 0; x < n; x++) {
            int ok = use[x] & (res[x] >= lower) & (res[x] <= upper);
            row[x] = ok ? res[x] : 0.0;
            kept += ok;
        }
        return kept;
    }
    """
    unsigned int rc_f32_key(float f) noexcept nogil
    float rc_median_keys(const unsigned int* keys, Py_ssize_t n, unsigned int* tmp,
                         unsigned int* hist) noexcept nogil
    void rc_sort_finite_q(double* v, Py_ssize_t n, double* tmp, unsigned int* qi,
                          unsigned int* qs, unsigned int* cnt, int depth) noexcept nogil
    void rc_mean_std(const double* v, Py_ssize_t n, double* mean, double* std) noexcept nogil
    Py_ssize_t rc_residuals(const float* d0, const float* d1, const float* d2,
                            const float* d3, const float* d4, Py_ssize_t n, double dt0,
                            double dt1, const float* thr, int per_column, float row_thr,
                            double* res, unsigned char* use, double* work) noexcept nogil
    Py_ssize_t rc_kept(const double* res, const unsigned char* use, Py_ssize_t n,
                       double lower, double upper, double* row) noexcept nogil


def row_medians(const float[:, ::1] a, const float[:, ::1] b, Py_ssize_t row0,
                Py_ssize_t row1, Py_ssize_t col0, Py_ssize_t col1, float[::1] out,
                int n_threads):
    cdef Py_ssize_t y, x, n = col1 - col0
    cdef unsigned int* keys
    cdef unsigned int* tmp
    cdef unsigned int* hist
    cdef const float* pa
    cdef const float* pb
    cdef float d
    cdef int has_nan
    with nogil, parallel(num_threads=n_threads):
        keys = <unsigned int*>malloc(max(n, 1) * sizeof(unsigned int))
        tmp = <unsigned int*>malloc(max(n, 1) * sizeof(unsigned int))
        hist = <unsigned int*>malloc(4 * 256 * sizeof(unsigned int))
        for y in prange(row0, row1, schedule="dynamic", chunksize=8):
            pa = &a[y, col0]
            pb = &b[y, col0]
            has_nan = 0
            for x in range(n):
                d = pa[x] - pb[x]
                has_nan = has_nan | (d != d)
                keys[x] = rc_f32_key(d)
            if has_nan or n == 0:
                out[y - row0] = NAN  # numpy.median propagates NaN
            else:
                out[y - row0] = rc_median_keys(keys, n, tmp, hist)
        free(keys)
        free(tmp)
        free(hist)


cdef void _clip_bounds(double* v, Py_ssize_t n, double sigma, int maxiters,
                       double* work, unsigned int* cnt, double* lower,
                       double* upper) noexcept nogil:
    """astropy's fast sigma clip (median centre, standard deviation) of v[0:n].

    Each pass: centre = median, std about the mean; keep lower <= v <= upper;
    stop when nothing more is clipped, nothing is left, or after ``maxiters`` passes.
    The values are sorted once, so that the median is read by position and what a
    pass keeps is a contiguous run found by bisection; the mean and the spread are
    summed over the run (sorted, in eight partial sums: astropy sums in the order its
    selections leave, so the bounds can differ from its by rounding only).
    """
    cdef Py_ssize_t lo = 0, hi = n, cnt_run, a, b, m, top, iteration = 0
    cdef double med, mean, std
    rc_sort_finite_q(v, n, work, cnt, cnt + n, cnt + 2 * n, 0)
    while True:
        cnt_run = hi - lo
        if cnt_run % 2 == 0:
            med = 0.5 * (v[lo + cnt_run // 2] + v[lo + cnt_run // 2 - 1])
        else:
            med = v[lo + (cnt_run - 1) // 2]
        rc_mean_std(v + lo, cnt_run, &mean, &std)
        lower[0] = med - sigma * std
        upper[0] = med + sigma * std
        # kept: the run v[a:b] with lower <= v <= upper (two bisections)
        a = lo
        b = hi
        while a < b:
            m = (a + b) // 2
            if v[m] < lower[0]:
                a = m + 1
            else:
                b = m
        top = hi
        b = a
        while b < top:
            m = (b + top) // 2
            if v[m] <= upper[0]:
                b = m + 1
            else:
                top = m
        if b - a == cnt_run or b == a:
            return
        lo = a
        hi = b
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
                      unsigned int* cnt, unsigned char* usable) noexcept nogil:
    """Clipped mean residual of one row (pointers at the row's first science pixel)."""
    cdef Py_ssize_t count, kept
    cdef double lower = 0.0, upper = 0.0
    count = rc_residuals(d0, d1, d2, d3, d4, n, dt0, dt1, thr, per_column, row_thr,
                         res, usable, work)
    if count == 0:
        return NAN
    # row: scratch of the sort here, the kept values below
    _clip_bounds(work, count, sigma, maxiters, row, cnt, &lower, &upper)
    # the mean of what the final bounds keep, summed as numpy.nanmean does (the
    # others as zeros in a pairwise sum over the whole row)
    kept = rc_kept(res, usable, n, lower, upper, row)
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
    cdef unsigned char* usable
    cdef unsigned int* cnt
    cdef float row_thr
    with nogil, parallel(num_threads=n_threads):
        res = <double*>malloc(max(n, 1) * sizeof(double))
        work = <double*>malloc(max(n, 1) * sizeof(double))
        row = <double*>malloc(max(n, 1) * sizeof(double))
        usable = <unsigned char*>malloc(max(n, 1))
        cnt = <unsigned int*>malloc(4 * max(n, 1) * sizeof(unsigned int))
        for y in prange(row0, row1, schedule="dynamic", chunksize=8):
            row_thr = 0 if per_column else thresholds[y - row0]
            out[y - row0] = _row_mean(
                &d0[y, col0], &d1[y, col0], &d2[y, col0], &d3[y, col0], &d4[y, col0], n,
                dt0, dt1, &thresholds[0], per_column, row_thr, sigma, maxiters,
                res, work, row, cnt, usable)
        free(res)
        free(work)
        free(row)
        free(usable)
        free(cnt)
