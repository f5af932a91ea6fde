# cython: language_level=3
"""The per-pixel finishing of a ramp fit (private; see :mod:`romancore.ramp.finish`).

One pass per pixel (`finish_pixel` in ``_finish.pxd``), rows in parallel; results are
independent of the thread count.
"""
from cython.parallel cimport prange
from libc.stdint cimport uint8_t, uint32_t

from romancore.ramp._finish cimport finish_pixel


def finish(const float[:, ::1] slope_e, const float[:, ::1] var_read_e,
           const float[:, ::1] var_poisson_e, const uint8_t[:, :, :] groupdq,
           const uint32_t[:, :] pixeldq, const float[:, ::1] gain,
           const float[:, :, :] data, const double[::1] weights,
           float[:, ::1] slope, uint32_t[:, ::1] dq, float[:, ::1] var_poisson,
           float[:, ::1] var_rnoise, float[:, ::1] err, float[:, ::1] dumo,
           int n_threads):
    """Write the DN/s images of a block of rows."""
    cdef Py_ssize_t n = groupdq.shape[0], ny = slope.shape[0], nx = slope.shape[1]
    cdef Py_ssize_t y, x
    cdef Py_ssize_t gstride = groupdq.strides[0], dstride = data.strides[0] // sizeof(float)
    for y in prange(ny, nogil=True, schedule="static", num_threads=n_threads):
        for x in range(nx):
            finish_pixel(slope_e[y, x], var_read_e[y, x], var_poisson_e[y, x], gain[y, x],
                         &groupdq[0, y, x], gstride, pixeldq[y, x], &data[0, y, x], dstride,
                         &weights[0], n, &slope[y, x], &dq[y, x], &var_poisson[y, x],
                         &var_rnoise[y, x], &err[y, x], &dumo[y, x])
