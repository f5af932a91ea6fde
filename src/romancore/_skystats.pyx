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


#: Rows a pass takes at a time (`_moments_rows`, `_ssd_rows`).
cdef enum:
    ROWS = 4


cdef inline void _moments_rows(const float* d, Py_ssize_t sd, const unsigned char* m,
                               Py_ssize_t nx, Py_ssize_t nr, float clipmin, float clipmax,
                               cnp.int64_t* c, double* s, float* lo,
                               float* hi) noexcept nogil:
    """`masked_moments` of ``nr <= ROWS`` consecutive rows, one result per row.

    Each row's sum is accumulated in its own column order (float64); the rows'
    independent chains of additions overlap in the processor instead of each addition
    waiting for the previous one.  ``sd``: the data's row stride (elements).
    """
    cdef Py_ssize_t j, r
    cdef float v
    cdef cnp.int64_t cr[ROWS]
    cdef double sr[ROWS]
    cdef float lr[ROWS]
    cdef float hr[ROWS]
    for r in range(nr):
        cr[r] = 0
        sr[r] = 0.0
        lr[r] = INFINITY
        hr[r] = -INFINITY
    for j in range(nx):
        for r in range(nr):
            if m[r * nx + j]:
                v = d[r * sd + j]
                if v >= clipmin and v <= clipmax:
                    cr[r] += 1
                    sr[r] = sr[r] + v
                    if v < lr[r]:
                        lr[r] = v
                    if v > hr[r]:
                        hr[r] = v
    for r in range(nr):
        c[r] = cr[r]
        s[r] = sr[r]
        lo[r] = lr[r]
        hi[r] = hr[r]


def masked_moments(const float[:, :] data, const unsigned char[:, ::1] mask,
                   float clipmin, float clipmax, int n_threads):
    """Count, sum, min and max of the masked values ``v`` with ``clipmin <= v <= clipmax``.

    Returns ``(n, total, vmin, vmax)``; ``vmin > vmax`` when ``n == 0``.  ``data``:
    rows of contiguous values (e.g. a window of an image), checked by the wrapper.
    """
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1], i, g, nr
    cdef Py_ssize_t sd = data.strides[0] // sizeof(float)
    cdef cnp.int64_t[::1] counts = np.zeros(max(ny, 1), dtype=np.int64)
    cdef double[::1] sums = np.zeros(max(ny, 1), dtype=np.float64)
    cdef float[::1] mins = np.full(max(ny, 1), INFINITY, dtype=np.float32)
    cdef float[::1] maxs = np.full(max(ny, 1), -INFINITY, dtype=np.float32)
    if nx > 0:
        for g in prange((ny + ROWS - 1) // ROWS, nogil=True, schedule="static",
                        num_threads=n_threads):
            nr = min(ROWS, ny - ROWS * g)
            if nr == ROWS:  # the constant: the compiler unrolls the rows
                _moments_rows(&data[ROWS * g, 0], sd, &mask[ROWS * g, 0], nx, ROWS,
                              clipmin, clipmax, &counts[ROWS * g], &sums[ROWS * g],
                              &mins[ROWS * g], &maxs[ROWS * g])
            else:
                _moments_rows(&data[ROWS * g, 0], sd, &mask[ROWS * g, 0], nx, nr,
                              clipmin, clipmax, &counts[ROWS * g], &sums[ROWS * g],
                              &mins[ROWS * g], &maxs[ROWS * g])
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


cdef inline void _ssd_rows(const float* d, Py_ssize_t sd, const unsigned char* m,
                           Py_ssize_t nx, Py_ssize_t nr, float vmin, float vmax, float mean,
                           double* s) noexcept nogil:
    """`masked_sum_sq_dev` of ``nr <= ROWS`` consecutive rows (see `_moments_rows`)."""
    cdef Py_ssize_t j, r
    cdef float v, t
    cdef double sr[ROWS]
    for r in range(nr):
        sr[r] = 0.0
    for j in range(nx):
        for r in range(nr):
            if m[r * nx + j]:
                v = d[r * sd + j]
                if v >= vmin and v <= vmax:
                    t = v - mean
                    sr[r] = sr[r] + <float> (t * t)
    for r in range(nr):
        s[r] = sr[r]


def masked_sum_sq_dev(const float[:, :] data, const unsigned char[:, ::1] mask,
                      float vmin, float vmax, float mean, int n_threads):
    """Sum of ``(v - mean)**2`` over the masked values with ``vmin <= v <= vmax``.

    The difference and its square are float32 operations, accumulated in float64.
    ``data``: rows of contiguous values, as `masked_moments`.
    """
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1], i, g, nr
    cdef Py_ssize_t sd = data.strides[0] // sizeof(float)
    cdef double[::1] sums = np.zeros(max(ny, 1), dtype=np.float64)
    if nx > 0:
        for g in prange((ny + ROWS - 1) // ROWS, nogil=True, schedule="static",
                        num_threads=n_threads):
            nr = min(ROWS, ny - ROWS * g)
            if nr == ROWS:  # the constant: the compiler unrolls the rows
                _ssd_rows(&data[ROWS * g, 0], sd, &mask[ROWS * g, 0], nx, ROWS, vmin,
                          vmax, mean, &sums[ROWS * g])
            else:
                _ssd_rows(&data[ROWS * g, 0], sd, &mask[ROWS * g, 0], nx, nr, vmin, vmax,
                          mean, &sums[ROWS * g])
    cdef double total = 0.0
    for i in range(ny):
        total += sums[i]
    return total


def masked_histogram(const float[:, :] data, const unsigned char[:, ::1] mask,
                     Py_ssize_t nbins, float width, float start, float stop,
                     int n_threads):
    """Counts of the masked values ``start <= v < stop`` in bins ``start + k width``.

    Bin ``k = int((v - start) / width)`` (float32 arithmetic); an index at or past
    ``nbins`` (rounding at the top edge) counts in the last bin.  ``data``: rows of
    contiguous values, as `masked_moments`.
    """
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1], i, j, t, k
    cdef int nt = max(1, n_threads)
    cdef Py_ssize_t rows_per = (ny + nt - 1) // nt
    cdef cnp.uint32_t[:, ::1] hist = np.zeros((nt, nbins), dtype=np.uint32)
    cdef float v
    cdef float inv = (<float> 1.0) / width
    cdef Py_ssize_t r0, r1
    cdef const float* d
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = t * rows_per
        r1 = min(ny, r0 + rows_per)
        for i in range(r0, r1):
            d = &data[i, 0]
            for j in range(nx):
                if mask[i, j]:
                    v = d[j]
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
