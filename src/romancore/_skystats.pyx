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


def masked_moments(const float[:, ::1] data, const unsigned char[:, ::1] mask,
                   float clipmin, float clipmax, int n_threads):
    """Count, sum, min and max of the masked values ``v`` with ``clipmin <= v <= clipmax``.

    Returns ``(n, total, vmin, vmax)``; ``vmin > vmax`` when ``n == 0``.
    """
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1], i, j
    cdef cnp.int64_t[::1] counts = np.zeros(ny, dtype=np.int64)
    cdef double[::1] sums = np.zeros(ny, dtype=np.float64)
    cdef float[::1] mins = np.full(ny, INFINITY, dtype=np.float32)
    cdef float[::1] maxs = np.full(ny, -INFINITY, dtype=np.float32)
    cdef float v, lo, hi
    cdef double s
    cdef cnp.int64_t c
    for i in prange(ny, nogil=True, schedule="static", num_threads=n_threads):
        c = 0
        s = 0.0
        lo = INFINITY
        hi = -INFINITY
        for j in range(nx):
            if mask[i, j]:
                v = data[i, j]
                if v >= clipmin and v <= clipmax:
                    c = c + 1
                    s = s + v
                    if v < lo:
                        lo = v
                    if v > hi:
                        hi = v
        counts[i] = c
        sums[i] = s
        mins[i] = lo
        maxs[i] = hi
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


def masked_sum_sq_dev(const float[:, ::1] data, const unsigned char[:, ::1] mask,
                      float vmin, float vmax, float mean, int n_threads):
    """Sum of ``(v - mean)**2`` over the masked values with ``vmin <= v <= vmax``.

    The difference and its square are float32 operations, accumulated in float64.
    """
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1], i, j
    cdef double[::1] sums = np.zeros(ny, dtype=np.float64)
    cdef float v, d
    cdef double s
    for i in prange(ny, nogil=True, schedule="static", num_threads=n_threads):
        s = 0.0
        for j in range(nx):
            if mask[i, j]:
                v = data[i, j]
                if v >= vmin and v <= vmax:
                    d = v - mean
                    s = s + <float> (d * d)
        sums[i] = s
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
