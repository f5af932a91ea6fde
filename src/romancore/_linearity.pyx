# cython: language_level=3
"""Compiled classic linearity correction (private; see :mod:`romancore.linearity`).

Rows are distributed over threads.  Within a row, Horner's scheme runs one coefficient
at a time over the whole row (contiguous pixels inside), so it vectorises; the
coefficient rows of the pixel row stay in cache across resultants.  The row kernel is
plain C (``restrict`` pointers) so that the compiler vectorises every pass.
"""
from cython.parallel cimport parallel, prange
from libc.stdint cimport uint8_t, uint32_t
from libc.stdlib cimport free, malloc

from romancore._dqflags cimport DQ_NO_LIN_CORR, DQ_SATURATED

cdef extern from *:
    """
    #include <stddef.h>
    #include <stdint.h>
    #include <string.h>

    /* Horner over one resultant row.  With `fused` (m a compile-time constant after
       inlining) the coefficient loop is unrolled inside one vectorised pass; otherwise
       one pass per coefficient through the scratch row `acc`.  Same operations in the
       same order either way: r = c[m-1] F; r = (r + c[j]) F, j = m-2..1; r + c[0]. */
    static inline __attribute__((always_inline)) void romancore_horner(
            float *restrict d, const uint8_t *restrict g, const float *restrict c0,
            ptrdiff_t plane, ptrdiff_t m, ptrdiff_t nx, float *restrict acc,
            const uint8_t *restrict good, uint8_t saturated, int fused)
    {
        ptrdiff_t j, x;
        if (fused) {
            for (x = 0; x < nx; x++) {
                float f = d[x], r = c0[(m - 1) * plane + x] * f;
                for (j = m - 2; j > 0; j--)
                    r = (r + c0[j * plane + x]) * f;
                acc[x] = r;
            }
        } else {
            const float *restrict c = c0 + (m - 1) * plane;
            for (x = 0; x < nx; x++)
                acc[x] = c[x] * d[x];
            for (j = m - 2; j > 0; j--) {
                c = c0 + j * plane;
                for (x = 0; x < nx; x++)
                    acc[x] = (acc[x] + c[x]) * d[x];
            }
        }
        /* SATURATED resultants and uncorrectable pixels keep their value; a
           branch-free select on the bit patterns, so that it vectorises. */
        for (x = 0; x < nx; x++) {
            float r = acc[x] + c0[x], v = d[x];
            uint32_t ri, vi, keep;
            keep = (uint32_t)0 - (uint32_t)(good[x] & ((g[x] & saturated) == 0));
            memcpy(&ri, &r, 4);
            memcpy(&vi, &v, 4);
            ri = (ri & keep) | (vi & ~keep);
            memcpy(&d[x], &ri, 4);
        }
    }

    /* One detector row: d0/g0/c0 point at resultant (coefficient) 0 of the row and
       step by `plane` elements.  Horner in float32 in stcal 1.20's order:
       r = c[m-1] F; r = (r + c[j]) F for j = m-2..1; r + c[0]. */
    static void romancore_linearity_row(
            float *restrict d0, const uint8_t *restrict g0, uint32_t *restrict pdq,
            const float *restrict c0, const uint32_t *restrict cdq,
            ptrdiff_t n, ptrdiff_t m, ptrdiff_t nx, ptrdiff_t plane,
            float *restrict acc, uint8_t *restrict good,
            uint32_t no_lin_corr, uint8_t saturated)
    {
        ptrdiff_t i, j, x;
        /* Which pixels can be corrected: no NO_LIN_CORR in the reference DQ, no NaN
           coefficient, and (as stcal 1.20) a non-zero linear term. */
        for (x = 0; x < nx; x++)
            good[x] = ((cdq[x] & no_lin_corr) == 0) & (c0[plane + x] != 0.0f);
        for (j = 0; j < m; j++) {
            const float *restrict c = c0 + j * plane;
            for (x = 0; x < nx; x++)
                good[x] &= (c[x] == c[x]);
        }
        for (x = 0; x < nx; x++)
            pdq[x] |= cdq[x] | (good[x] ? 0u : no_lin_corr);
        for (i = 0; i < n; i++) {
            float *restrict d = d0 + i * plane;
            const uint8_t *restrict g = g0 + i * plane;
            switch (m) {  /* common orders: Horner unrolled in one pass over the row */
            case 2: romancore_horner(d, g, c0, plane, 2, nx, acc, good, saturated, 1); break;
            case 3: romancore_horner(d, g, c0, plane, 3, nx, acc, good, saturated, 1); break;
            case 4: romancore_horner(d, g, c0, plane, 4, nx, acc, good, saturated, 1); break;
            case 5: romancore_horner(d, g, c0, plane, 5, nx, acc, good, saturated, 1); break;
            case 6: romancore_horner(d, g, c0, plane, 6, nx, acc, good, saturated, 1); break;
            case 7: romancore_horner(d, g, c0, plane, 7, nx, acc, good, saturated, 1); break;
            case 8: romancore_horner(d, g, c0, plane, 8, nx, acc, good, saturated, 1); break;
            default: romancore_horner(d, g, c0, plane, m, nx, acc, good, saturated, 0);
            }
        }
    }
    """
    void romancore_linearity_row(float* d0, const uint8_t* g0, uint32_t* pdq,
                                 const float* c0, const uint32_t* cdq, Py_ssize_t n,
                                 Py_ssize_t m, Py_ssize_t nx, Py_ssize_t plane, float* acc,
                                 uint8_t* good, uint32_t no_lin_corr,
                                 uint8_t saturated) noexcept nogil


def linearity(float[:, :, ::1] data, const uint8_t[:, :, ::1] gdq, uint32_t[:, ::1] pdq,
              const float[:, :, ::1] coeffs, const uint32_t[:, ::1] coeffs_dq,
              int n_threads):
    """Correct ``data`` in place, rows in parallel (bit-identical to stcal 1.20)."""
    cdef Py_ssize_t n = data.shape[0], ny = data.shape[1], nx = data.shape[2], y
    cdef Py_ssize_t m = coeffs.shape[0], plane = ny * nx
    cdef float* acc
    cdef uint8_t* good
    with nogil, parallel(num_threads=n_threads):
        acc = <float*>malloc(nx * sizeof(float))
        good = <uint8_t*>malloc(nx * sizeof(uint8_t))
        if acc == NULL or good == NULL:
            with gil:
                raise MemoryError("romancore.apply_linearity: out of memory")
        for y in prange(ny, schedule="static"):
            romancore_linearity_row(&data[0, y, 0], &gdq[0, y, 0], &pdq[y, 0],
                                    &coeffs[0, y, 0], &coeffs_dq[y, 0], n, m, nx, plane,
                                    acc, good, DQ_NO_LIN_CORR, DQ_SATURATED)
        free(acc)
        free(good)
