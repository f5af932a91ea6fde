# cython: language_level=3
"""Masked clipped moments and histogram of a float32 image (private; see
:mod:`romancore.skystats`).

Each pass reads the image row by row (``prange`` over rows) and only the pixels whose
mask byte is non-zero.  Sums are kept per row in float64 and added in row order at the
end, and histogram counts are integers, so results do not depend on the number of
threads.
"""
from cython.parallel cimport prange
from libc.math cimport INFINITY, isfinite

import numpy as np

cimport numpy as cnp


cdef inline void _moments_row(const float* d, const unsigned char* m, Py_ssize_t nx,
                              float clipmin, float clipmax, cnp.int64_t* c, double* s,
                              float* lo, float* hi) noexcept nogil:
    """One row of `masked_moments` (its values in column order)."""
    cdef Py_ssize_t j
    cdef float v
    c[0] = 0
    s[0] = 0.0
    lo[0] = INFINITY
    hi[0] = -INFINITY
    for j in range(nx):
        if m[j]:
            v = d[j]
            if v >= clipmin and v <= clipmax:
                c[0] += 1
                s[0] = s[0] + v
                if v < lo[0]:
                    lo[0] = v
                if v > hi[0]:
                    hi[0] = v


cdef inline void _moments_rows4(const float* d, const unsigned char* m, Py_ssize_t nx,
                                float clipmin, float clipmax, cnp.int64_t* c, double* s,
                                float* lo, float* hi) noexcept nogil:
    """Four consecutive rows of `masked_moments` at once.

    Each row's sum is still accumulated in its own column order (the same float64
    additions as `_moments_row`); the four independent chains of additions overlap in
    the processor instead of each waiting for the previous addition.
    """
    cdef Py_ssize_t j
    cdef float v0, v1, v2, v3
    cdef const float* d1 = d + nx
    cdef const float* d2 = d + 2 * nx
    cdef const float* d3 = d + 3 * nx
    cdef const unsigned char* m1 = m + nx
    cdef const unsigned char* m2 = m + 2 * nx
    cdef const unsigned char* m3 = m + 3 * nx
    cdef cnp.int64_t c0 = 0, c1 = 0, c2 = 0, c3 = 0
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef float lo0 = INFINITY, lo1 = INFINITY, lo2 = INFINITY, lo3 = INFINITY
    cdef float hi0 = -INFINITY, hi1 = -INFINITY, hi2 = -INFINITY, hi3 = -INFINITY
    for j in range(nx):
        if m[j]:
            v0 = d[j]
            if v0 >= clipmin and v0 <= clipmax:
                c0 += 1
                s0 = s0 + v0
                if v0 < lo0:
                    lo0 = v0
                if v0 > hi0:
                    hi0 = v0
        if m1[j]:
            v1 = d1[j]
            if v1 >= clipmin and v1 <= clipmax:
                c1 += 1
                s1 = s1 + v1
                if v1 < lo1:
                    lo1 = v1
                if v1 > hi1:
                    hi1 = v1
        if m2[j]:
            v2 = d2[j]
            if v2 >= clipmin and v2 <= clipmax:
                c2 += 1
                s2 = s2 + v2
                if v2 < lo2:
                    lo2 = v2
                if v2 > hi2:
                    hi2 = v2
        if m3[j]:
            v3 = d3[j]
            if v3 >= clipmin and v3 <= clipmax:
                c3 += 1
                s3 = s3 + v3
                if v3 < lo3:
                    lo3 = v3
                if v3 > hi3:
                    hi3 = v3
    c[0] = c0
    c[1] = c1
    c[2] = c2
    c[3] = c3
    s[0] = s0
    s[1] = s1
    s[2] = s2
    s[3] = s3
    lo[0] = lo0
    lo[1] = lo1
    lo[2] = lo2
    lo[3] = lo3
    hi[0] = hi0
    hi[1] = hi1
    hi[2] = hi2
    hi[3] = hi3


def masked_moments(const float[:, ::1] data, const unsigned char[:, ::1] mask,
                   float clipmin, float clipmax, int n_threads):
    """Count, sum, min and max of the masked values ``v`` with ``clipmin <= v <= clipmax``.

    Returns ``(n, total, vmin, vmax)``; ``vmin > vmax`` when ``n == 0``.
    """
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1], i, g, r
    cdef cnp.int64_t[::1] counts = np.zeros(max(ny, 1), dtype=np.int64)
    cdef double[::1] sums = np.zeros(max(ny, 1), dtype=np.float64)
    cdef float[::1] mins = np.full(max(ny, 1), INFINITY, dtype=np.float32)
    cdef float[::1] maxs = np.full(max(ny, 1), -INFINITY, dtype=np.float32)
    cdef Py_ssize_t groups = ny // 4
    if nx > 0:
        # four rows at a time (each row's sums as on its own), then the last rows
        for g in prange(groups, nogil=True, schedule="static", num_threads=n_threads):
            _moments_rows4(&data[4 * g, 0], &mask[4 * g, 0], nx, clipmin, clipmax,
                           &counts[4 * g], &sums[4 * g], &mins[4 * g], &maxs[4 * g])
        for r in range(4 * groups, ny):
            _moments_row(&data[r, 0], &mask[r, 0], nx, clipmin, clipmax, &counts[r],
                         &sums[r], &mins[r], &maxs[r])
    cdef cnp.int64_t n = 0
    cdef double total = 0.0
    cdef float vmin = INFINITY, vmax = -INFINITY
    for i in range(ny):
        n += counts[i]
        total += sums[i]
        if mins[i] < vmin:
            vmin = mins[i]
        if maxs[i] > vmax:
            vmax = maxs[i]
    return n, total, vmin, vmax


cdef inline double _ssd_row(const float* d, const unsigned char* m, Py_ssize_t nx,
                            float vmin, float vmax, float mean) noexcept nogil:
    """One row of `masked_sum_sq_dev` (its values in column order)."""
    cdef Py_ssize_t j
    cdef float v, t
    cdef double s = 0.0
    for j in range(nx):
        if m[j]:
            v = d[j]
            if v >= vmin and v <= vmax:
                t = v - mean
                s = s + <float> (t * t)
    return s


cdef inline void _ssd_rows4(const float* d, const unsigned char* m, Py_ssize_t nx,
                            float vmin, float vmax, float mean,
                            double* s) noexcept nogil:
    """Four consecutive rows of `masked_sum_sq_dev` at once (see `_moments_rows4`)."""
    cdef Py_ssize_t j
    cdef float v0, v1, v2, v3, t0, t1, t2, t3
    cdef const float* d1 = d + nx
    cdef const float* d2 = d + 2 * nx
    cdef const float* d3 = d + 3 * nx
    cdef const unsigned char* m1 = m + nx
    cdef const unsigned char* m2 = m + 2 * nx
    cdef const unsigned char* m3 = m + 3 * nx
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    for j in range(nx):
        if m[j]:
            v0 = d[j]
            if v0 >= vmin and v0 <= vmax:
                t0 = v0 - mean
                s0 = s0 + <float> (t0 * t0)
        if m1[j]:
            v1 = d1[j]
            if v1 >= vmin and v1 <= vmax:
                t1 = v1 - mean
                s1 = s1 + <float> (t1 * t1)
        if m2[j]:
            v2 = d2[j]
            if v2 >= vmin and v2 <= vmax:
                t2 = v2 - mean
                s2 = s2 + <float> (t2 * t2)
        if m3[j]:
            v3 = d3[j]
            if v3 >= vmin and v3 <= vmax:
                t3 = v3 - mean
                s3 = s3 + <float> (t3 * t3)
    s[0] = s0
    s[1] = s1
    s[2] = s2
    s[3] = s3


def masked_sum_sq_dev(const float[:, ::1] data, const unsigned char[:, ::1] mask,
                      float vmin, float vmax, float mean, int n_threads):
    """Sum of ``(v - mean)**2`` over the masked values with ``vmin <= v <= vmax``.

    The difference and its square are float32 operations, accumulated in float64.
    """
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1], i, g, r
    cdef double[::1] sums = np.zeros(max(ny, 1), dtype=np.float64)
    cdef Py_ssize_t groups = ny // 4
    if nx > 0:
        for g in prange(groups, nogil=True, schedule="static", num_threads=n_threads):
            _ssd_rows4(&data[4 * g, 0], &mask[4 * g, 0], nx, vmin, vmax, mean,
                       &sums[4 * g])
        for r in range(4 * groups, ny):
            sums[r] = _ssd_row(&data[r, 0], &mask[r, 0], nx, vmin, vmax, mean)
    cdef double total = 0.0
    for i in range(ny):
        total += sums[i]
    return total


def masked_histogram(const float[:, ::1] data, const unsigned char[:, ::1] mask,
                     Py_ssize_t nbins, float width, float start, float stop,
                     int n_threads):
    """Counts of the masked values ``start <= v < stop`` in bins ``start + k width``.

    Bin ``k = int((v - start) / width)`` (float32 arithmetic); an index at or past
    ``nbins`` (rounding at the top edge) counts in the last bin.
    """
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1], i, j, t, k
    cdef int nt = max(1, n_threads)
    cdef Py_ssize_t rows_per = (ny + nt - 1) // nt
    cdef cnp.uint32_t[:, ::1] hist = np.zeros((nt, nbins), dtype=np.uint32)
    cdef float v
    cdef float inv = (<float> 1.0) / width
    cdef Py_ssize_t r0, r1
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = t * rows_per
        r1 = min(ny, r0 + rows_per)
        for i in range(r0, r1):
            for j in range(nx):
                if mask[i, j]:
                    v = data[i, j]
                    if v >= start and v < stop:
                        k = <Py_ssize_t> (inv * (v - start))
                        if k >= nbins:
                            k = nbins - 1
                        elif k < 0:
                            k = 0
                        hist[t, k] += 1
    return np.asarray(hist).sum(axis=0, dtype=np.uint64)


def good_pixels(const float[:, ::1] data, object dq, unsigned int bad_bits,
                unsigned char[:, ::1] out, int n_threads):
    """``out = isfinite(data) & ((dq & bad_bits) == 0)`` (``dq`` None: finite alone)."""
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1], i, j
    cdef const unsigned int[:, ::1] flags
    cdef bint with_dq = dq is not None
    if with_dq:
        flags = dq
    else:
        flags = np.zeros((1, 1), dtype=np.uint32)
    for i in prange(ny, nogil=True, schedule="static", num_threads=n_threads):
        if with_dq:
            for j in range(nx):
                out[i, j] = isfinite(data[i, j]) and (flags[i, j] & bad_bits) == 0
        else:
            for j in range(nx):
                out[i, j] = isfinite(data[i, j])
