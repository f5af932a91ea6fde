# cython: language_level=3
"""The per-pixel finishing of a ramp fit (private; see :mod:`romancore.ramp.finish`).

One pass per pixel, rows in parallel: electrons to DN/s with the gain, the variances,
``err``, the group DQ collapsed into the pixel DQ with romancal 1.1's DO_NOT_USE and
NO_GAIN_VALUE rules, and ``dumo`` (the uniformly weighted slope over all resultants
minus the fitted one).  Each value is computed with the same operations, in the same
precision and order, as the NumPy expressions it replaces (float32 arithmetic for the
rates and variances, a float64 sum over resultants in order for ``dumo``), so the
results are bit-identical to them and independent of the thread count.
"""
from cython.parallel cimport prange
from libc.math cimport NAN, isfinite, sqrtf
from libc.stdint cimport uint8_t, uint32_t

from romancore._dqflags cimport DQ_DO_NOT_USE, DQ_SATURATED

cdef uint32_t NO_GAIN_VALUE = 524288  # pixel.NO_GAIN_VALUE (1 << 19)


def finish(const float[:, ::1] slope_e, const float[:, ::1] var_read_e,
           const float[:, ::1] var_poisson_e, const uint8_t[:, :, :] groupdq,
           const uint32_t[:, :] pixeldq, const float[:, ::1] gain,
           const float[:, :, :] data, const double[::1] weights,
           float[:, ::1] slope, uint32_t[:, ::1] dq, float[:, ::1] var_poisson,
           float[:, ::1] var_rnoise, float[:, ::1] err, float[:, ::1] dumo,
           int n_threads):
    """Write the DN/s images of a block of rows (see the module docstring)."""
    cdef Py_ssize_t n = groupdq.shape[0], ny = slope.shape[0], nx = slope.shape[1]
    cdef Py_ssize_t y, x, k
    cdef float g, g2, s, vp, vr, e
    cdef uint8_t flags, collapsed
    cdef uint8_t collapse_mask = <uint8_t> (0xFF & ~DQ_DO_NOT_USE)
    cdef uint8_t unusable_mask = <uint8_t> (DQ_SATURATED | DQ_DO_NOT_USE)
    cdef uint32_t d
    cdef bint usable, bad_gain
    cdef double uni
    for y in prange(ny, nogil=True, schedule="static", num_threads=n_threads):
        for x in range(nx):
            g = gain[y, x]
            bad_gain = not (isfinite(g) and g > 0)
            if bad_gain:
                g = 1.0
            g2 = g * g
            if bad_gain:
                s = NAN
                vp = NAN
                vr = NAN
                e = NAN
            else:
                s = slope_e[y, x] / g
                vp = var_poisson_e[y, x] / g2
                vr = var_read_e[y, x] / g2
                e = sqrtf(vp + vr)
            collapsed = 0
            usable = False
            for k in range(n):
                flags = groupdq[k, y, x]
                collapsed = collapsed | flags
                if (flags & unusable_mask) == 0:
                    usable = True
            d = pixeldq[y, x] | (collapsed & collapse_mask)
            if not usable or not isfinite(s) or not (e > 0):
                d = d | DQ_DO_NOT_USE
            if bad_gain:
                d = d | NO_GAIN_VALUE | DQ_DO_NOT_USE
            uni = 0.0
            for k in range(n):
                uni = uni + <double> data[k, y, x] * weights[k]
            slope[y, x] = s
            var_poisson[y, x] = vp
            var_rnoise[y, x] = vr
            err[y, x] = e
            dq[y, x] = d
            dumo[y, x] = <float> (uni - <double> s)
