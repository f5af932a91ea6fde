# cython: language_level=3
"""Jump statistics of the queue-based detection (romancal docs ``seeds/000:1262-1306``).

For resultants ``i`` and ``i + j`` (``j = 1`` single, ``j = 2`` double difference) of a
ramp fitted with slope ``a`` over ``[start, end]``:

    delta = (R_{i+j} - R_i) / (t_{i+j} - t_i) - a
    var   = (RN^2 (1/N_i + 1/N_{i+j}) + a (tau_i + tau_{i+j} - 2 min(t_i, t_{i+j})))
            / (t_{i+j} - t_i)^2  -  a / (t_end - t_start)
    s     = delta / sqrt(var)

Where the seed is ambiguous we follow stcal 1.20: the read noise enters squared, the
Poisson term uses ``2 min(t)`` and the correction uses the ramp's own first and last
mean times.  The arithmetic is float32 in stcal's order so that statistics near the
threshold round the same way.
"""
from libc.math cimport log10, sqrtf

# Rows of the table built by romancore.ramp._tables._jump_terms.
cdef enum:
    J_DT1 = 0
    J_DT2 = 1
    J_DT1SQ = 2
    J_DT2SQ = 3
    J_RR1 = 4
    J_RR2 = 5
    J_VS1 = 6
    J_VS2 = 7


cdef inline float statistic(float r_lo, float r_hi, float dt, float dt_sq, float rr,
                            float vs, float rn2, float slope, float correct) noexcept nogil:
    """One single- or double-difference statistic ``s'_i`` or ``s''_i``."""
    cdef float local = (r_hi - r_lo) / dt
    cdef float delta = local - slope
    cdef float var = (rn2 * rr + slope * vs) / dt_sq
    return delta / sqrtf(var + correct)


cdef inline float nan_max(float a, float b) noexcept nogil:
    """C ``fmaxf``: the larger value, ignoring a NaN operand."""
    if b != b:
        return a
    if a > b:
        return a
    return b


cdef inline float threshold(float slope, float intercept, float constant) noexcept nogil:
    """``intercept - constant log10(slope)``, slope clamped to [1, 1e4] (000:1296)."""
    if not slope > 1:
        slope = 1
    if not slope < 1e4:
        slope = 1e4
    return <float>(intercept - constant * log10(slope))
