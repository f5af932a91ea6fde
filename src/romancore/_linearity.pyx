# cython: language_level=3
"""Compiled classic linearity correction (private; see :mod:`romancore.linearity`).

Rows are distributed over threads.  Within a row, Horner's scheme runs one coefficient
at a time over the whole row (contiguous pixels inside), so it vectorises; the
coefficient rows of the pixel row stay in cache across resultants.
"""
from cython.parallel cimport parallel, prange
from libc.math cimport isnan
from libc.stdint cimport uint8_t, uint32_t
from libc.stdlib cimport free, malloc

from romancore._dqflags cimport DQ_NO_LIN_CORR, DQ_SATURATED


cdef void _correct_row(float* d0, const uint8_t* g0, uint32_t* pdq, const float* c0,
                       const uint32_t* cdq, Py_ssize_t n, Py_ssize_t m, Py_ssize_t nx,
                       Py_ssize_t plane, float* acc, uint8_t* good) noexcept nogil:
    cdef Py_ssize_t i, j, x
    cdef const float* c
    cdef float* d
    cdef const uint8_t* g
    cdef bint bad
    # Which pixels can be corrected (000:744-748; zero linear term as stcal 1.20).
    for x in range(nx):
        bad = (cdq[x] & DQ_NO_LIN_CORR) != 0
        bad = bad | (c0[plane + x] == 0)
        good[x] = not bad
    for j in range(m):
        c = c0 + j * plane
        for x in range(nx):
            good[x] = good[x] & (not isnan(c[x]))
    for x in range(nx):
        pdq[x] |= cdq[x] | (0 if good[x] else DQ_NO_LIN_CORR)
    for i in range(n):
        d = d0 + i * plane
        g = g0 + i * plane
        # Horner in float32 in stcal 1.20's order of operations:
        # r = c[m-1] F; r = (r + c[j]) F for j = m-2..1; r + c[0]
        c = c0 + (m - 1) * plane
        for x in range(nx):
            acc[x] = c[x] * d[x]
        for j in range(m - 2, 0, -1):
            c = c0 + j * plane
            for x in range(nx):
                acc[x] = (acc[x] + c[x]) * d[x]
        for x in range(nx):
            # SATURATED resultants and uncorrectable pixels keep their value.
            d[x] = (acc[x] + c0[x]) if (good[x] & ((g[x] & DQ_SATURATED) == 0)) else d[x]


def linearity(float[:, :, ::1] data, const uint8_t[:, :, ::1] gdq, uint32_t[:, ::1] pdq,
              const float[:, :, ::1] coeffs, const uint32_t[:, ::1] coeffs_dq,
              int n_threads):
    """Correct ``data`` in place, rows in parallel (bit-identical to stcal 1.20)."""
    cdef Py_ssize_t n = data.shape[0], ny = data.shape[1], nx = data.shape[2], y
    cdef Py_ssize_t m = coeffs.shape[0], plane = ny * nx
    cdef float* acc
    cdef uint8_t* good
    with nogil, parallel(num_threads=n_threads):
        acc = <float*>malloc(nx * sizeof(float))
        good = <uint8_t*>malloc(nx * sizeof(uint8_t))
        if acc == NULL or good == NULL:
            with gil:
                raise MemoryError("romancore.apply_linearity: out of memory")
        for y in prange(ny, schedule="static"):
            _correct_row(&data[0, y, 0], &gdq[0, y, 0], &pdq[y, 0], &coeffs[0, y, 0],
                         &coeffs_dq[y, 0], n, m, nx, plane, acc, good)
        free(acc)
        free(good)
