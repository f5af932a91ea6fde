# cython: language_level=3
"""The derivative-and-noise outlier test against a blotted median (private; see
:mod:`romancore.outlier`).

One pass per row computes, for each pixel, the blot's largest absolute difference
with its 4 neighbours, the difference ``|sci - blot - backg|`` and the two threshold
tests in float32 (the same operations, in the same order, as the numpy form of
stcal 1.20 ``flag_resampled_crs``); a second pass grows the first test by the 3x3
box and keeps the pixels that also pass the second.  No full-size float temporaries.
"""
from cython.parallel cimport parallel, prange
from libc.float cimport FLT_MAX
from libc.math cimport fabsf, isinf, isnan, NAN
from libc.stdlib cimport free, malloc

import numpy as np

cimport numpy as cnp


cdef inline float _largest_step(const float[:, ::1] b, Py_ssize_t i, Py_ssize_t j,
                                Py_ssize_t ny, Py_ssize_t nx) noexcept nogil:
    """max |b[n] - b[i, j]| over the 4 neighbours n; NaN differences count 0."""
    cdef float c = b[i, j]
    cdef float m = 0.0, d
    if isnan(c):
        return NAN
    if i > 0:
        d = fabsf(c - b[i - 1, j])
        if d > m:
            m = d
    if i < ny - 1:
        d = fabsf(b[i + 1, j] - c)
        if d > m:
            m = d
    if j > 0:
        d = fabsf(c - b[i, j - 1])
        if d > m:
            m = d
    if j < nx - 1:
        d = fabsf(b[i, j + 1] - c)
        if d > m:
            m = d
    return m


def flag_resampled(const float[:, ::1] sci, const float[:, ::1] err,
                   const float[:, ::1] blot, float snr1, float snr2, float scale1,
                   float scale2, float backg, unsigned char[:, ::1] first,
                   unsigned char[:, ::1] out, int n_threads):
    cdef Py_ssize_t ny = sci.shape[0], nx = sci.shape[1]
    cdef Py_ssize_t i, j, a, b, i0, i1, j0, j1
    cdef float deriv, diff, e, t1, t2
    cdef unsigned char grown
    with nogil:
        for i in prange(ny, num_threads=n_threads, schedule="static"):
            for j in range(nx):
                deriv = _largest_step(blot, i, j, ny, nx)
                e = err[i, j]
                if isnan(e):
                    e = 0.0
                elif isinf(e):
                    e = FLT_MAX if e > 0 else -FLT_MAX
                diff = fabsf((sci[i, j] - blot[i, j]) - backg)
                t1 = scale1 * deriv
                t1 = t1 + snr1 * e
                t2 = scale2 * deriv
                t2 = t2 + snr2 * e
                first[i, j] = diff > t1
                out[i, j] = diff > t2
        for i in prange(ny, num_threads=n_threads, schedule="static"):
            i0 = i - 1 if i > 0 else 0
            i1 = i + 1 if i < ny - 1 else ny - 1
            for j in range(nx):
                if not out[i, j]:
                    continue
                j0 = j - 1 if j > 0 else 0
                j1 = j + 1 if j < nx - 1 else nx - 1
                grown = 0
                for a in range(i0, i1 + 1):
                    for b in range(j0, j1 + 1):
                        if first[a, b]:
                            grown = 1
                out[i, j] = grown


cdef inline bint _kept(float v, float lo, float hi, bint bounded) noexcept nogil:
    """finite, non-zero and, when ``bounded``, inside ``[lo, hi]``."""
    if isnan(v) or isinf(v) or v == 0:
        return False
    if bounded and not (v >= lo and v <= hi):
        return False
    return True


def count_kept(const float[:, ::1] values, float lo, float hi, bint bounded,
               cnp.int64_t[::1] counts, int n_threads):
    """Per row, how many values are finite, non-zero (and inside ``[lo, hi]``)."""
    cdef Py_ssize_t ny = values.shape[0], nx = values.shape[1], i, j
    cdef cnp.int64_t c
    with nogil:
        for i in prange(ny, num_threads=n_threads, schedule="static"):
            c = 0
            for j in range(nx):
                if _kept(values[i, j], lo, hi, bounded):
                    c = c + 1
            counts[i] = c


def gather_kept(const float[:, ::1] values, float lo, float hi, bint bounded,
                const cnp.int64_t[::1] offsets, float[::1] out, int n_threads):
    """Copy the kept values of row ``i`` to ``out[offsets[i]:]``, in row order."""
    cdef Py_ssize_t ny = values.shape[0], nx = values.shape[1], i, j
    cdef cnp.int64_t at
    cdef float v
    with nogil:
        for i in prange(ny, num_threads=n_threads, schedule="static"):
            at = offsets[i]
            for j in range(nx):
                v = values[i, j]
                if _kept(v, lo, hi, bounded):
                    out[at] = v
                    at = at + 1


def nanmedian_axis0(const float[:, :, ::1] block, float[:, ::1] out, int n_threads):
    """The median along axis 0 ignoring NaN (NaN where every value is NaN).

    Per pixel, the finite values are insertion-sorted into a small buffer (NaN, which
    sorts last in numpy, is left out); the median is the middle one, or the two middle
    ones' float32 ``(a + b) / 2``, as ``numpy.sort`` and the numpy form take them.
    """
    cdef Py_ssize_t n = block.shape[0], ny = block.shape[1], nx = block.shape[2]
    cdef Py_ssize_t j, i, k, m, c
    cdef float* buf
    cdef float v
    with nogil, parallel(num_threads=n_threads):
        buf = <float*>malloc(max(n, 1) * sizeof(float))
        for j in prange(ny, schedule="static"):
            for i in range(nx):
                c = 0
                for k in range(n):
                    v = block[k, j, i]
                    if isnan(v):
                        continue
                    m = c
                    while m > 0 and buf[m - 1] > v:
                        buf[m] = buf[m - 1]
                        m = m - 1
                    buf[m] = v
                    c = c + 1
                if c == 0:
                    out[j, i] = NAN
                else:
                    out[j, i] = (buf[(c - 1) // 2] + buf[c // 2]) / <float>2.0
        free(buf)
