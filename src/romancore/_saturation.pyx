# cython: language_level=3
"""Compiled saturation flagging (private; see :mod:`romancore.saturation`).

Rows are distributed over threads; within a row every pass runs over the resultants
outside and the contiguous pixels inside, so the compiler vectorises it and each
resultant row is streamed once.  Because a saturated pixel stays saturated, the
saturation state of a pixel is one number: the index ``fs`` of its first saturated
resultant (``n_resultants`` when it never saturates).  Growing saturation to
neighbours is then a 2-D minimum filter of ``fs`` (done between passes by the Python
wrapper), and flagging is "SATURATED on every resultant ``i >= fs``".
"""
from cython.parallel cimport parallel, prange
from libc.math cimport isfinite, isnan
from libc.stdint cimport int16_t, int32_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc

from romancore._dqflags cimport (DQ_AD_FLOOR, DQ_DO_NOT_USE, DQ_NO_SAT_CHECK,
                                 DQ_SATURATED)

cdef float ATOD_LIMIT = 65535.0


cdef struct Pattern:
    Py_ssize_t n
    Py_ssize_t plane
    const double* dilution  # mean(t) / max(t) per resultant (000:562)
    const double* second    # [mean(reads_0), last(reads_2), len(reads_1)] or NULL


cdef void _thresholds(const float* thr, const uint32_t* tdq, uint32_t* pdq, float* t,
                      uint8_t* nsc, Py_ssize_t nx, bint update_pdq) noexcept nogil:
    """Resolve the row's thresholds: NaN or NO_SAT_CHECK -> the A/D limit (000:560).

    With ``update_pdq`` the reference DQ and NO_SAT_CHECK are OR-ed into the pixel DQ.
    """
    cdef Py_ssize_t x
    cdef bint no_check
    for x in range(nx):
        no_check = isnan(thr[x]) | ((tdq[x] & DQ_NO_SAT_CHECK) != 0)
        nsc[x] = no_check
        t[x] = ATOD_LIMIT if no_check else thr[x]
        if update_pdq:
            pdq[x] |= tdq[x] | (DQ_NO_SAT_CHECK if no_check else 0)


cdef extern from *:
    """
    #include <float.h>
    #include <stddef.h>
    #include <stdint.h>

    /* Flag the A/D floor of one resultant row and update the first-saturated index:
       fs[x] = i where d[x] >= t[x] (or SATURATED is already set) and fs[x] is unset (n).
       +inf is not saturation (`<= FLT_MAX`); NaN fails every comparison and -inf is
       <= 0 (A/D floor), as before.  The ramp fit flags all three DO_NOT_USE.
       Plain C with restrict pointers so that the compiler vectorises it. */
    static void romancore_saturation_resultant(
            const float *restrict d, uint8_t *restrict g, const float *restrict t,
            int32_t *restrict fs, ptrdiff_t nx, int32_t i, int32_t n,
            uint8_t floor_flags, uint8_t saturated)
    {
        ptrdiff_t x;
        for (x = 0; x < nx; x++) {
            float v = d[x];
            uint8_t gx = g[x] | (uint8_t)(v <= 0.0f ? floor_flags : 0);
            int32_t sat = ((v >= t[x]) & (v <= FLT_MAX)) | ((gx & saturated) != 0);
            g[x] = gx;
            fs[x] = (sat & (fs[x] == n)) ? i : fs[x];
        }
    }
    """
    void romancore_saturation_resultant(const float* d, uint8_t* g, const float* t,
                                        int32_t* fs, Py_ssize_t nx, int32_t i, int32_t n,
                                        uint8_t floor_flags,
                                        uint8_t saturated) noexcept nogil


cdef void _first_saturated(const Pattern* pt, const float* d0, uint8_t* g0,
                           const float* t, int32_t* fs, Py_ssize_t nx) noexcept nogil:
    """Flag the A/D floor; ``fs`` = first resultant >= threshold (or already SATURATED).

    +inf is not saturation; NaN is neither saturation nor floor (the ramp fit flags
    every non-finite resultant DO_NOT_USE).
    """
    cdef Py_ssize_t i, x
    cdef int32_t n = <int32_t>pt.n
    for x in range(nx):
        fs[x] = n
    for i in range(pt.n):
        romancore_saturation_resultant(d0 + i * pt.plane, g0 + i * pt.plane, t, fs, nx,
                                       <int32_t>i, n, DQ_AD_FLOOR | DQ_DO_NOT_USE,
                                       DQ_SATURATED)


cdef inline int32_t _diluted(const Pattern* pt, const float* d0, const uint8_t* g0,
                             Py_ssize_t x, float t, bint nsc, int32_t fs) noexcept nogil:
    """Index of a resultant saturated by dilution, or ``n`` (000:562).

    Only the resultant just before the first saturated one can qualify: the rule needs
    the next resultant saturated and this one not flagged SATURATED or DO_NOT_USE,
    nor infinite (a NaN fails the comparison).
    """
    cdef int32_t g = fs - 1
    if nsc or g < 0 or g > pt.n - 2 or pt.dilution[g] == 1.0:
        return <int32_t>pt.n
    if g0[g * pt.plane + x] & (DQ_SATURATED | DQ_DO_NOT_USE):
        return <int32_t>pt.n
    if not isfinite(d0[g * pt.plane + x]):
        return <int32_t>pt.n
    # Compared in float64, as stcal does (float32 data against a float64 product).
    if <double>d0[g * pt.plane + x] >= t * pt.dilution[g]:
        return g
    return <int32_t>pt.n


cdef inline int32_t _second_resultant(const Pattern* pt, const float* d0, Py_ssize_t x,
                                      float t, int32_t fs) noexcept nogil:
    """stcal 1.20's check for a saturating event in the last reads of resultant 1.

    Resultant 1 is flagged when resultant 2 is the first saturated one, resultant 0
    extrapolated to the end of resultant 2 stays below threshold, and the step from
    resultant 0 to 1 exceeds the remaining headroom divided by the reads of resultant 1.
    A NaN or infinite resultant 0 or 1 takes no part.
    """
    if pt.second == NULL or fs != 2:
        return <int32_t>pt.n
    cdef float v0 = d0[x], v1 = d0[pt.plane + x]
    if not (isfinite(v0) and isfinite(v1)):
        return <int32_t>pt.n
    # The precisions of stcal 1.20: the extrapolation in float64, the step test in float32.
    if ((v0 / pt.second[0]) * pt.second[1] < t) and (
            v1 - v0 > (t - v0) / <float>pt.second[2]):
        return 1
    return <int32_t>pt.n


cdef void _flag_from(const Pattern* pt, uint8_t* g0, const int32_t* first,
                     Py_ssize_t nx) noexcept nogil:
    """SATURATED on every resultant ``i >= first[x]``."""
    cdef Py_ssize_t i, x
    cdef uint8_t* g
    cdef int32_t ii, lo = <int32_t>pt.n
    for x in range(nx):
        lo = first[x] if first[x] < lo else lo
    for i in range(lo, pt.n):  # resultants before the row's earliest saturation: nothing
        g = g0 + i * pt.plane
        ii = <int32_t>i
        for x in range(nx):
            g[x] = g[x] | (<uint8_t>DQ_SATURATED if ii >= first[x] else 0)


cdef Pattern _pattern(Py_ssize_t n, Py_ssize_t plane, const double[::1] dilution,
                      const double[::1] second) noexcept:
    cdef Pattern pt
    pt.n = n
    pt.plane = plane
    pt.dilution = &dilution[0]
    pt.second = &second[0] if second.shape[0] == 3 else NULL
    return pt


cpdef enum Mode:
    MODE_ALL = 0      # no growth: everything in one pass
    MODE_FIRST = 1    # growth pass A: A/D floor, pixel DQ, first-saturated map
    MODE_DILUTE = 2   # growth pass B: flag grown saturation, map diluted resultants


def saturation_pass(int mode, const float[:, :, ::1] data, uint8_t[:, :, ::1] gdq,
                    uint32_t[:, ::1] pdq, const float[:, ::1] thr,
                    const uint32_t[:, ::1] thr_dq, int16_t[:, ::1] map_in,
                    int16_t[:, ::1] map_out, const double[::1] dilution,
                    const double[::1] second, int n_threads):
    """One parallel pass over the rows; ``mode`` says which (see the MODE_* enum).

    ``map_in`` is read in MODE_DILUTE (the grown first-saturated index), ``map_out``
    written in MODE_FIRST (first-saturated index) and MODE_DILUTE (diluted resultant);
    unused maps may be any (1, 1) array.
    """
    cdef Py_ssize_t n = data.shape[0], ny = data.shape[1], nx = data.shape[2], y, x
    cdef Pattern pt = _pattern(n, ny * nx, dilution, second)
    cdef float* t
    cdef uint8_t* nsc
    cdef int32_t* fs
    cdef int32_t d, s
    cdef const float* d0
    cdef uint8_t* g0
    with nogil, parallel(num_threads=n_threads):
        t = <float*>malloc(nx * sizeof(float))
        nsc = <uint8_t*>malloc(nx * sizeof(uint8_t))
        fs = <int32_t*>malloc(nx * sizeof(int32_t))
        if t == NULL or nsc == NULL or fs == NULL:
            with gil:
                raise MemoryError("romancore.flag_saturation: out of memory")
        for y in prange(ny, schedule="static"):
            d0 = &data[0, y, 0]
            g0 = &gdq[0, y, 0]
            _thresholds(&thr[y, 0], &thr_dq[y, 0], &pdq[y, 0], t, nsc, nx, mode != MODE_DILUTE)
            if mode == MODE_DILUTE:
                for x in range(nx):
                    fs[x] = map_in[y, x]
            else:
                _first_saturated(&pt, d0, g0, t, fs, nx)
            if mode == MODE_FIRST:
                for x in range(nx):
                    map_out[y, x] = <int16_t>fs[x]
                continue
            for x in range(nx):
                d = <int32_t>n
                if 0 < fs[x] < n:
                    d = _diluted(&pt, d0, g0, x, t[x], nsc[x], fs[x])
                    s = _second_resultant(&pt, d0, x, t[x], fs[x])
                    if mode == MODE_ALL:
                        d = s if s < d else d
                        fs[x] = d if d < fs[x] else fs[x]
                    else:
                        # the diluted resultant is grown separately (stcal grows it as
                        # a new flag array); the resultant-1 check is not grown
                        fs[x] = s if s < fs[x] else fs[x]
                if mode == MODE_DILUTE:
                    map_out[y, x] = <int16_t>d
            _flag_from(&pt, g0, fs, nx)
        free(t)
        free(nsc)
        free(fs)


def flag_from_map(uint8_t[:, :, ::1] gdq, const int16_t[:, ::1] first, int n_threads):
    """Growth pass C: SATURATED on every resultant at or after ``first[y, x]``."""
    cdef Py_ssize_t n = gdq.shape[0], ny = gdq.shape[1], nx = gdq.shape[2], y, x
    cdef double dummy[3]
    cdef Pattern pt
    pt.n = n
    pt.plane = ny * nx
    pt.dilution = dummy
    pt.second = NULL
    cdef int32_t* fs
    with nogil, parallel(num_threads=n_threads):
        fs = <int32_t*>malloc(nx * sizeof(int32_t))
        if fs == NULL:
            with gil:
                raise MemoryError("romancore.flag_saturation: out of memory")
        for y in prange(ny, schedule="static"):
            for x in range(nx):
                fs[x] = first[y, x]
            _flag_from(&pt, &gdq[0, y, 0], fs, nx)
        free(fs)
