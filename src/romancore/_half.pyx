# cython: language_level=3
"""Compiled float32 -> float16 conversion (private; see :mod:`romancore.half`).

The bit-level IEEE 754 conversion (round to nearest, ties to even; overflow to a
signed infinity; subnormal halves; NaN keeps its sign and the top ten bits of its
payload, and stays a NaN), the same results bit for bit as NumPy's ``astype``.  It
differs from NumPy only in speed: NumPy raises the floating-point underflow and
overflow flags value by value, which costs ~60 ns for each value that underflows
(variances in DN^2/s^2 are often below float16's smallest normal number).
"""
from cython.parallel cimport prange
from libc.stdint cimport uint16_t, uint32_t


cdef inline uint16_t _half_bits(uint32_t f) noexcept nogil:
    cdef uint32_t f_exp = f & 0x7f800000u
    cdef uint32_t f_sig
    cdef uint16_t h_sgn = <uint16_t>((f & 0x80000000u) >> 16)
    cdef uint16_t h_sig, h_exp, nan_bits
    if f_exp >= 0x47800000u:  # beyond float16's range: infinity, or a NaN
        f_sig = f & 0x007fffffu
        if f_exp == 0x7f800000u and f_sig != 0:
            nan_bits = <uint16_t>(0x7c00u + (f_sig >> 13))
            if nan_bits == 0x7c00u:  # payload only in the dropped bits: keep it a NaN
                nan_bits = nan_bits + 1
            return h_sgn + nan_bits
        return h_sgn + 0x7c00u
    if f_exp <= 0x38000000u:  # a subnormal half, or a signed zero
        if f_exp < 0x33000000u:
            return h_sgn
        f_exp = f_exp >> 23
        f_sig = 0x00800000u + (f & 0x007fffffu)
        f_sig = f_sig >> (113 - f_exp)
        # ties to even: the shift may have dropped up to 11 low bits of the original
        if ((f_sig & 0x00003fffu) != 0x00001000u) or (f & 0x000007ffu) != 0:
            f_sig = f_sig + 0x00001000u
        return h_sgn + <uint16_t>(f_sig >> 13)
    h_exp = <uint16_t>((f_exp - 0x38000000u) >> 13)
    f_sig = f & 0x007fffffu
    if (f_sig & 0x00003fffu) != 0x00001000u:
        f_sig = f_sig + 0x00001000u
    # a carry out of the significand increments the exponent (up to infinity): correct
    h_sig = <uint16_t>(f_sig >> 13)
    return h_sgn + h_exp + h_sig


def float16_bits(const uint32_t[::1] src, uint16_t[::1] out, int n_threads):
    """Write the float16 bits of each float32 (given as its bits) of ``src`` to ``out``."""
    cdef Py_ssize_t n = src.shape[0]
    cdef Py_ssize_t chunk = 1 << 16
    cdef Py_ssize_t n_chunks = (n + chunk - 1) // chunk
    cdef Py_ssize_t c, i, stop
    for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        stop = min((c + 1) * chunk, n)
        for i in range(c * chunk, stop):
            out[i] = _half_bits(src[i])


cdef inline uint32_t _float_bits(uint16_t h) noexcept nogil:
    # the float32 bits of a float16: exact for numbers (NumPy's conversion); a NaN
    # keeps its sign and payload and is quiet
    cdef uint32_t h_exp = h & 0x7c00u
    cdef uint32_t f_sgn = (<uint32_t>h & 0x8000u) << 16
    cdef uint32_t h_sig
    cdef int shift
    if h_exp == 0x0000u:  # zero or subnormal
        h_sig = h & 0x03ffu
        if h_sig == 0:
            return f_sgn
        h_sig = h_sig << 1
        shift = 0
        while (h_sig & 0x0400u) == 0:
            h_sig = h_sig << 1
            shift = shift + 1
        return (f_sgn + ((<uint32_t>(127 - 15 - shift)) << 23)
                + ((h_sig & 0x03ffu) << 13))
    if h_exp == 0x7c00u:  # infinity, or a NaN made quiet (as the F16C conversion does)
        h_sig = (<uint32_t>h & 0x03ffu) << 13
        return f_sgn + 0x7f800000u + ((h_sig | 0x00400000u) if h_sig else 0u)
    return f_sgn + (((<uint32_t>h & 0x7fffu) + 0x1c000u) << 13)


cdef union _bits32:
    uint32_t u
    float f


def scale_float16_bits(const uint16_t[::1] src, float factor, uint16_t[::1] out,
                       float[::1] wide, bint widen, int n_threads):
    """``float16(float32(src) * factor)`` for each float16 of ``src`` (given as bits):
    into ``out`` (bits), or widened to float32 into ``wide`` when ``widen``."""
    cdef Py_ssize_t n = src.shape[0]
    cdef Py_ssize_t chunk = 1 << 16
    cdef Py_ssize_t n_chunks = (n + chunk - 1) // chunk
    cdef Py_ssize_t c, i, stop
    cdef _bits32 v
    cdef uint16_t h
    if factor != factor:
        # NumPy's product keeps the factor's NaN (a C compiler may swap the operands)
        v.f = factor
        h = _half_bits(v.u)
        v.u = _float_bits(h)
        for i in range(n):
            if widen:
                wide[i] = v.f
            else:
                out[i] = h
        return
    for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        stop = min((c + 1) * chunk, n)
        for i in range(c * chunk, stop):
            v.u = _float_bits(src[i])
            v.f = v.f * factor
            h = _half_bits(v.u)
            if widen:
                v.u = _float_bits(h)
                wide[i] = v.f
            else:
                out[i] = h
