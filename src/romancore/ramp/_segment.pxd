# cython: language_level=3
"""One segment of the Casertano et al. (2022) fit, from the per-read-pattern tables.

Casertano, S. et al. 2022, "Optimal weighting for uneven ramps", STScI Technical
Report (Roman-STScI-000394); romancal docs ``seeds/000:1190-1258``.
"""
from libc.math cimport sqrt


cdef inline int p_index(float first, float last, float read_noise) noexcept nogil:
    """Bin of the weight exponent P for a segment (Casertano+22 Eq. 44, Table 2).

    ``S = max(R_last - R_first, 0) / sqrt(RN^2 + max(...))``; bins are
    ``[0,5) [5,10) [10,20) [20,50) [50,100) [100,inf)``.  Following stcal 1.20, the
    pedestal is removed with the first resultant of the segment, and a NaN ``S``
    (zero signal and zero read noise, or NaN read noise) takes the last bin.
    """
    cdef float diff = last - first
    if not diff > 0:
        diff = 0
    cdef double s = diff
    s = s / sqrt(<double>(read_noise * read_noise) + s)
    if s != s:
        return 5
    return (s >= 5) + (s >= 10) + (s >= 20) + (s >= 50) + (s >= 100)


cdef inline double segment_slope(const double* k, const float* r, Py_ssize_t plane,
                                 Py_ssize_t count) noexcept nogil:
    """Slope ``sum_i K_i R_i`` (Casertano+22 Eq. 38); ``r`` steps by ``plane``."""
    cdef double s = 0
    cdef Py_ssize_t i
    for i in range(count):
        s += k[i] * r[i * plane]
    return s
