# OpenMP guard: Cython wraps its own prange pragmas in #ifdef _OPENMP, but explicit
# omp_* calls need this indirection so the module also compiles without OpenMP.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define ROMANCORE_OPENMP 1
    #else
    #define ROMANCORE_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    static int omp_get_thread_num(void) { return 0; }
    #endif
    """
    int ROMANCORE_OPENMP
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
