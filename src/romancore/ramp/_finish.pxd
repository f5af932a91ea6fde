# cython: language_level=3
"""Per-pixel finishing of a ramp fit: electrons to DN/s, DQ collapse, ``dumo``.

Shared by the finishing kernel (``_finish.pyx``) and the fused fit (``_fit.pyx``).
Each value uses the operations, precision and order of the NumPy expressions it
replaced (float32 rates and variances, a float64 sum over resultants in order for
``dumo``), so both paths give bit-identical images.
"""
from libc.math cimport NAN, isfinite, sqrtf
from libc.stdint cimport uint8_t, uint32_t

from romancore._dqflags cimport DQ_DO_NOT_USE, DQ_SATURATED

cdef enum:
    DQ_NO_GAIN_VALUE = 524288  # pixel.NO_GAIN_VALUE (1 << 19)


cdef inline bint bad_gain(float g) noexcept nogil:
    """A gain that cannot convert: not finite or not positive (seeds/000:1023)."""
    return not (isfinite(g) and g > 0)


cdef inline void finish_pixel(float slope_e, float var_read_e, float var_poisson_e,
                              float g, const uint8_t* gdq, Py_ssize_t gstride,
                              uint32_t pixeldq, const float* dn, Py_ssize_t dstride,
                              const double* weights, Py_ssize_t n,
                              float* slope, uint32_t* dq, float* var_poisson,
                              float* var_rnoise, float* err, float* dumo) noexcept nogil:
    """Write one pixel's DN/s values; ``gdq``/``dn`` step by their strides."""
    cdef bint bad = bad_gain(g)
    cdef float gf = 1.0 if bad else g
    cdef float g2 = gf * gf
    cdef float s, vp, vr, e
    cdef uint8_t flags, collapsed = 0
    cdef uint8_t collapse_mask = <uint8_t> (0xFF & ~DQ_DO_NOT_USE)
    cdef uint8_t unusable_mask = <uint8_t> (DQ_SATURATED | DQ_DO_NOT_USE)
    cdef bint usable = False
    cdef uint32_t d
    cdef double uni = 0.0
    cdef Py_ssize_t k
    if bad:
        s = NAN
        vp = NAN
        vr = NAN
        e = NAN
    else:
        s = slope_e / gf
        vp = var_poisson_e / g2
        vr = var_read_e / g2
        e = sqrtf(vp + vr)
    for k in range(n):
        flags = gdq[k * gstride]
        collapsed = collapsed | flags
        if (flags & unusable_mask) == 0:
            usable = True
    d = pixeldq | (collapsed & collapse_mask)
    # romancal 1.1: DO_NOT_USE where nothing is usable or the result is not usable
    if not usable or not isfinite(s) or not (e > 0):
        d = d | DQ_DO_NOT_USE
    if bad:
        d = d | DQ_NO_GAIN_VALUE | DQ_DO_NOT_USE
    # dumo: the uniformly weighted slope of the DN resultants minus the fitted one
    for k in range(n):
        uni = uni + <double> dn[k * dstride] * weights[k]
    slope[0] = s
    var_poisson[0] = vp
    var_rnoise[0] = vr
    err[0] = e
    dq[0] = d
    dumo[0] = <float> (uni - <double> s)
