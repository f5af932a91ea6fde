"""Data-quality flag values for Roman WFI data (the single source of truth).

The values are those of the romancal documentation, "Data Quality Flags"
(``seeds/000:5637-5680``): pixel DQ arrays are 32-bit, group DQ arrays are 8-bit and
only use the first eight flags.  Both :mod:`romancore` and :mod:`romancal_lite` import
them from here; the compiled kernels receive them as ``cdef enum`` mirrors in
``_dqflags.pxd`` and a test asserts the two agree.
"""

from __future__ import annotations

from enum import IntFlag

__all__ = ["group", "pixel"]


class pixel(IntFlag):  # noqa: N801 - lower-case to read like ``dqflags.pixel.SATURATED``
    """Flags of the 32-bit ``pixeldq`` and ``dq`` arrays."""

    GOOD = 0
    DO_NOT_USE = 1 << 0
    SATURATED = 1 << 1
    JUMP_DET = 1 << 2
    DROPOUT = 1 << 3
    GW_AFFECTED_DATA = 1 << 4
    PERSISTENCE = 1 << 5
    AD_FLOOR = 1 << 6
    OUTLIER = 1 << 7
    UNRELIABLE_ERROR = 1 << 8
    NON_SCIENCE = 1 << 9
    DEAD = 1 << 10
    HOT = 1 << 11
    WARM = 1 << 12
    LOW_QE = 1 << 13
    TELEGRAPH = 1 << 15
    NONLINEAR = 1 << 16
    BAD_REF_PIXEL = 1 << 17
    NO_FLAT_FIELD = 1 << 18
    NO_GAIN_VALUE = 1 << 19
    NO_LIN_CORR = 1 << 20
    NO_SAT_CHECK = 1 << 21
    UNRELIABLE_BIAS = 1 << 22
    UNRELIABLE_DARK = 1 << 23
    UNRELIABLE_SLOPE = 1 << 24
    UNRELIABLE_FLAT = 1 << 25
    RESERVED_5 = 1 << 26
    RESERVED_6 = 1 << 27
    UNRELIABLE_RESET = 1 << 28
    RESERVED_7 = 1 << 29
    OTHER_BAD_PIXEL = 1 << 30
    REFERENCE_PIXEL = 1 << 31


class group(IntFlag):  # noqa: N801
    """Flags of the 8-bit ``groupdq`` array (the first eight pixel flags)."""

    GOOD = 0
    DO_NOT_USE = pixel.DO_NOT_USE.value
    SATURATED = pixel.SATURATED.value
    JUMP_DET = pixel.JUMP_DET.value
    DROPOUT = pixel.DROPOUT.value
    GW_AFFECTED_DATA = pixel.GW_AFFECTED_DATA.value
    PERSISTENCE = pixel.PERSISTENCE.value
    AD_FLOOR = pixel.AD_FLOOR.value
    OUTLIER = pixel.OUTLIER.value
