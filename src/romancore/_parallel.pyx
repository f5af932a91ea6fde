"""Run-time view of how the compiled core was built."""
from romancore._openmp cimport ROMANCORE_OPENMP, omp_get_max_threads


def openmp_enabled():
    """Return True when the compiled kernels were built with OpenMP."""
    return bool(ROMANCORE_OPENMP)


def max_threads():
    """Return OpenMP's default thread count (1 in a serial build)."""
    return omp_get_max_threads()
