# cython: language_level=3
"""Compiled saturation flagging (private; see :mod:`romancore.saturation`).

Each pass runs over rows in parallel (``prange``), pixel by pixel within a row; no
per-pixel allocation.  Because a saturated pixel stays saturated, the saturation state
of a pixel is one number: the index ``fs`` of its first saturated resultant
(``n_resultants`` when it never saturates).  Growing saturation to neighbours is then
a 2-D minimum filter of ``fs`` (done between passes by the Python wrapper), and flagging
is "SATURATED on every resultant ``i >= fs``".
"""
from cython.parallel cimport prange
from libc.math cimport isnan
from libc.stdint cimport int16_t, uint8_t, uint32_t

from romancore._dqflags cimport (DQ_AD_FLOOR, DQ_DO_NOT_USE, DQ_NO_SAT_CHECK,
                                 DQ_SATURATED)

cdef float ATOD_LIMIT = 65535.0


cdef inline bint _no_sat_check(float t, uint32_t tdq) noexcept nogil:
    """True when the pixel has no usable threshold (NaN or NO_SAT_CHECK, 000:560)."""
    return isnan(t) or (tdq & DQ_NO_SAT_CHECK) != 0


cdef inline float _threshold(float t, uint32_t tdq, uint32_t* pdq) noexcept nogil:
    """Resolve one pixel's threshold and OR the reference DQ into the pixel DQ."""
    pdq[0] |= tdq
    if _no_sat_check(t, tdq):
        pdq[0] |= DQ_NO_SAT_CHECK
        return ATOD_LIMIT
    return t


cdef inline int _first_saturated(const float[:, :, ::1] data, uint8_t[:, :, ::1] gdq,
                                 Py_ssize_t y, Py_ssize_t x, float t) noexcept nogil:
    """Flag the A/D floor and return the first resultant at or above threshold."""
    cdef Py_ssize_t n = data.shape[0], i
    cdef int fs = <int>n
    cdef float v
    for i in range(n):
        v = data[i, y, x]
        if v <= 0:
            gdq[i, y, x] |= DQ_AD_FLOOR | DQ_DO_NOT_USE
        if fs == n and (v >= t or (gdq[i, y, x] & DQ_SATURATED)):
            fs = <int>i
    return fs


cdef inline int _diluted(const float[:, :, ::1] data, uint8_t[:, :, ::1] gdq,
                         Py_ssize_t y, Py_ssize_t x, float t, bint nsc, int fs,
                         const double[::1] dilution) noexcept nogil:
    """Index of a resultant saturated by dilution, or ``n`` (000:562).

    Only the resultant just before the first saturated one can qualify, since the
    rule needs the next resultant saturated and this one not yet flagged.
    """
    cdef int n = <int>data.shape[0]
    cdef int g = fs - 1
    if nsc or g < 0 or g > n - 2 or dilution[g] == 1.0:
        return n
    if gdq[g, y, x] & (DQ_SATURATED | DQ_DO_NOT_USE):
        return n
    if data[g, y, x] >= <float>(t * dilution[g]):
        return g
    return n


cdef inline int _second_resultant(const float[:, :, ::1] data, Py_ssize_t y, Py_ssize_t x,
                                  float t, int fs, const double[::1] second) noexcept nogil:
    """stcal's check for a saturating event in the last reads of resultant 1.

    Flags resultant 1 when resultant 2 is the first saturated one, resultant 0
    extrapolated to the end of resultant 2 stays below threshold, and the step from
    resultant 0 to 1 exceeds the remaining headroom divided by the reads of resultant 1.
    ``second = [mean(reads_0), last(reads_2), len(reads_1)]``; empty when n < 3.
    """
    if second.shape[0] == 0 or fs != 2:
        return <int>data.shape[0]
    cdef float d0 = data[0, y, x], d1 = data[1, y, x]
    if ((d0 / second[0]) * second[1] < t) and (d1 - d0 > (t - d0) / second[2]):
        return 1
    return <int>data.shape[0]


cdef inline void _flag_from(uint8_t[:, :, ::1] gdq, Py_ssize_t y, Py_ssize_t x,
                            int first) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(first, gdq.shape[0]):
        gdq[i, y, x] |= DQ_SATURATED


def flag_all(const float[:, :, ::1] data, uint8_t[:, :, ::1] gdq, uint32_t[:, ::1] pdq,
             const float[:, ::1] thr, const uint32_t[:, ::1] thr_dq,
             const double[::1] dilution, const double[::1] second, int n_threads):
    """One fused pass: threshold, A/D floor, dilution, second-resultant check."""
    cdef Py_ssize_t ny = data.shape[1], nx = data.shape[2], y, x
    cdef float t
    cdef int fs, d, s, first
    cdef bint nsc
    for y in prange(ny, nogil=True, schedule="static", num_threads=n_threads):
        for x in range(nx):
            t = _threshold(thr[y, x], thr_dq[y, x], &pdq[y, x])
            nsc = _no_sat_check(thr[y, x], thr_dq[y, x])
            fs = _first_saturated(data, gdq, y, x, t)
            d = _diluted(data, gdq, y, x, t, nsc, fs, dilution)
            s = _second_resultant(data, y, x, t, fs, second)
            first = fs
            if d < first:
                first = d
            if s < first:
                first = s
            _flag_from(gdq, y, x, first)


def first_saturated(const float[:, :, ::1] data, uint8_t[:, :, ::1] gdq, uint32_t[:, ::1] pdq,
                    const float[:, ::1] thr, const uint32_t[:, ::1] thr_dq,
                    int16_t[:, ::1] fs_map, int n_threads):
    """Growth pass A: A/D floor, pixel DQ, and the first-saturated index map."""
    cdef Py_ssize_t ny = data.shape[1], nx = data.shape[2], y, x
    cdef float t
    for y in prange(ny, nogil=True, schedule="static", num_threads=n_threads):
        for x in range(nx):
            t = _threshold(thr[y, x], thr_dq[y, x], &pdq[y, x])
            fs_map[y, x] = <int16_t>_first_saturated(data, gdq, y, x, t)


def dilute_grown(const float[:, :, ::1] data, uint8_t[:, :, ::1] gdq,
                 const float[:, ::1] thr, const uint32_t[:, ::1] thr_dq,
                 const int16_t[:, ::1] fs_grown, int16_t[:, ::1] dil_map,
                 const double[::1] dilution, const double[::1] second, int n_threads):
    """Growth pass B: flag the grown saturation, find diluted resultants (to be grown)."""
    cdef Py_ssize_t ny = data.shape[1], nx = data.shape[2], y, x
    cdef float t
    cdef int fs, s
    cdef bint nsc
    for y in prange(ny, nogil=True, schedule="static", num_threads=n_threads):
        for x in range(nx):
            nsc = _no_sat_check(thr[y, x], thr_dq[y, x])
            t = ATOD_LIMIT if nsc else thr[y, x]
            fs = fs_grown[y, x]
            dil_map[y, x] = <int16_t>_diluted(data, gdq, y, x, t, nsc, fs, dilution)
            s = _second_resultant(data, y, x, t, fs, second)
            if s < fs:
                fs = s
            _flag_from(gdq, y, x, fs)


def flag_from_map(uint8_t[:, :, ::1] gdq, const int16_t[:, ::1] first, int n_threads):
    """Growth pass C: SATURATED on every resultant at or after ``first[y, x]``."""
    cdef Py_ssize_t ny = gdq.shape[1], nx = gdq.shape[2], y, x
    for y in prange(ny, nogil=True, schedule="static", num_threads=n_threads):
        for x in range(nx):
            _flag_from(gdq, y, x, first[y, x])
