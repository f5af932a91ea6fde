# Compile-time mirror of romancore/dqflags.py for the kernels (tests assert they agree).
cdef enum:
    DQ_DO_NOT_USE = 1
    DQ_SATURATED = 2
    DQ_JUMP_DET = 4
    DQ_AD_FLOOR = 64
    DQ_NO_LIN_CORR = 1048576
    DQ_NO_SAT_CHECK = 2097152
