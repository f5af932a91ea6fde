# cython: language_level=3
"""Compiled classic linearity correction (private; see :mod:`romancore.linearity`)."""
from cython.parallel cimport prange
from libc.math cimport isnan
from libc.stdint cimport uint8_t, uint32_t

from romancore._dqflags cimport DQ_NO_LIN_CORR, DQ_SATURATED

cdef enum:
    MAX_COEFFS = 64


cdef inline void _correct_pixel(float[:, :, ::1] data, const uint8_t[:, :, ::1] gdq,
                                uint32_t[:, ::1] pdq, const float[:, :, ::1] coeffs,
                                const uint32_t[:, ::1] coeffs_dq,
                                Py_ssize_t y, Py_ssize_t x) noexcept nogil:
    cdef Py_ssize_t n = data.shape[0], m = coeffs.shape[0], i, j
    cdef float c[MAX_COEFFS]
    cdef float f, r
    cdef bint bad = (coeffs_dq[y, x] & DQ_NO_LIN_CORR) != 0
    pdq[y, x] |= coeffs_dq[y, x]
    for j in range(m):
        c[j] = coeffs[j, y, x]
        if isnan(c[j]):
            bad = True
    if bad or c[1] == 0:
        pdq[y, x] |= DQ_NO_LIN_CORR
        return
    for i in range(n):
        if gdq[i, y, x] & DQ_SATURATED:
            continue
        f = data[i, y, x]
        r = c[m - 1] * f
        for j in range(m - 2, 0, -1):
            r = (r + c[j]) * f
        data[i, y, x] = r + c[0]


def linearity(float[:, :, ::1] data, const uint8_t[:, :, ::1] gdq, uint32_t[:, ::1] pdq,
              const float[:, :, ::1] coeffs, const uint32_t[:, ::1] coeffs_dq,
              int n_threads):
    """Correct ``data`` in place, rows in parallel.

    Horner's scheme in float32, in the same order of operations as stcal 1.20's
    ``apply_polynomial`` (``r = c[m-1] F; r = (r + c[j]) F for j = m-2..1; r + c[0]``),
    so corrected values agree bit for bit.
    """
    cdef Py_ssize_t ny = data.shape[1], nx = data.shape[2], y, x
    for y in prange(ny, nogil=True, schedule="static", num_threads=n_threads):
        for x in range(nx):
            _correct_pixel(data, gdq, pdq, coeffs, coeffs_dq, y, x)
