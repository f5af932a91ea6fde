# cython: language_level=3
"""Compiled read-level linearity correction (private; see :mod:`romancore.linearity`).

One pass over the cube: rows are distributed over threads and each row is handled in
chunks of ``CHUNK`` pixels so that every scratch array of a chunk (coefficients in
float64, the reconstructed reads of one resultant) stays in the L1/L2 cache.  Within a
chunk every step is a loop over the chunk's pixels (one loop per polynomial
coefficient), so the compiler vectorises it; only the integral non-linearity table
look-up is scalar.  Each pixel's result depends on that pixel alone: the output is the
same for any number of threads.

The arithmetic reproduces stcal 1.20 ``linearity._linearity_correction_tile``
operation by operation (float32 where stcal computes in float32, float64 where NumPy
promotes to float64, sums over reads in read order), which is why ``setup.py`` builds
with ``-ffp-contract=off``.
"""
from cython.parallel cimport parallel, prange
from libc.stdint cimport uint8_t, uint32_t
from libc.math cimport frexp

from romancore._dqflags cimport DQ_DO_NOT_USE, DQ_NO_LIN_CORR, DQ_SATURATED

cdef extern from *:
    """
    #include <stddef.h>
    #include <stdint.h>
    #include <stdlib.h>
    #include <math.h>

    #define RC_CHUNK 128

    typedef struct {
        ptrdiff_t n, m, mi, nx, plane;
        const double *rsf;        /* read number minus the mean read of resultant 0 */
        const ptrdiff_t *rs_off;  /* reads of resultant i: rsf[rs_off[i] .. rs_off[i+1]) */
        const double *dreads;     /* mean read of resultant i minus that of resultant 0 */
        /* integral non-linearity: table abscissae, per-channel values and slopes */
        const double *inl_x, *inl_ys;
        ptrdiff_t nt, chw;
        double inl_scale;         /* (nt - 1) / (x[nt-1] - x[0]): first guess of the bin */
        double inl_h;             /* step of an exactly uniform table, else 0 */
        int inl_exact;            /* uniform from 0 with a power-of-two step: bins exact */
        int has_inl;
        int clip;                 /* romancal 1.1: |value| > clip_value -> clipped, DO_NOT_USE */
        double clip_value;
        uint32_t no_lin_corr;
        uint8_t saturated, do_not_use;
    } rc_rl_params;

    /* numpy.interp(u, x, y) for strictly increasing x, written from the rules NumPy
       documents and implements: NaN gives NaN; u <= x[0] gives y[0]; u >= x[-1] gives
       y[-1]; an exact abscissa gives its ordinate; otherwise the secant through the
       bin j (x[j] <= u < x[j+1]) with the slope s[j] = (y[j+1]-y[j])/(x[j+1]-x[j])
       NumPy precomputes and, if that gives NaN (infinite ordinates), the secant from
       the bin's right end.  `ys` interleaves (y[j], s[j]) so one cache line serves
       a look-up.  `h` > 0 says the table is exactly x[j] = x[0] + j h (checked by
       the wrapper in the same float64 operations), so the bin is computed, not
       searched; otherwise it is guessed and then bisected. */
    static inline double rc_interp(double u, const double *restrict x,
                                   const double *restrict ys, ptrdiff_t nt, double scale,
                                   double h)
    {
        ptrdiff_t j, lo, hi, mid;
        double r, xj, xk;
        if (u != u)
            return u;
        if (u <= x[0])
            return ys[0];
        if (u >= x[nt - 1])
            return ys[2 * (nt - 1)];
        r = (u - x[0]) * scale;
        j = (r < (double)(nt - 2)) ? (ptrdiff_t)r : nt - 2;
        if (j < 0)
            j = 0;
        if (h > 0.0) {
            xj = x[0] + (double)j * h;
            while (u < xj) {
                j--;
                xj = x[0] + (double)j * h;
            }
            while (u >= x[0] + (double)(j + 1) * h) {
                j++;
                xj = x[0] + (double)j * h;
            }
            xk = x[0] + (double)(j + 1) * h;
        } else {
            if (u < x[j]) {
                lo = 0; hi = j;            /* x[lo] <= u < x[hi] */
                while (hi - lo > 1) {
                    mid = lo + (hi - lo) / 2;
                    if (x[mid] <= u) lo = mid; else hi = mid;
                }
                j = lo;
            } else if (u >= x[j + 1]) {
                lo = j + 1; hi = nt - 1;   /* x[lo] <= u < x[hi] */
                while (hi - lo > 1) {
                    mid = lo + (hi - lo) / 2;
                    if (x[mid] <= u) lo = mid; else hi = mid;
                }
                j = lo;
            }
            xj = x[j];
            xk = x[j + 1];
        }
        if (xj == u)
            return ys[2 * j];
        r = ys[2 * j + 1] * (u - xj) + ys[2 * j];
        if (r != r) {
            r = ys[2 * j + 1] * (u - xk) + ys[2 * j + 2];
            if (r != r && ys[2 * j] == ys[2 * j + 2])
                r = ys[2 * j];
        }
        return r;
    }

    /* rc_interp for an exactly uniform table (h > 0) over a run of values, adding
       the correction to each: the bins in a branch-free vectorised pass, the table
       reads in a plain scalar pass (faster than emulated gathers), the table ends
       and NaN in a vectorised select.  The corrections are finite (checked by the
       wrapper), so NumPy's NaN fallback never applies.  u is clamped to the table
       (NaN to its start, a safe index); j is the bin with x[j] <= u < x[j+1] (the
       guess can be off by one next to a grid value, hence the two corrections); an
       exact abscissa gives s*0 + y = y, beyond the end y[nt-1], NaN stays NaN. */
    static inline __attribute__((always_inline)) void rc_interp_uniform(
            double *restrict u, ptrdiff_t n, double x0, double xl, double h,
            double scale, const double *restrict ys, int nt, int exact)
    {
        ptrdiff_t x;
        const double ylast = ys[2 * (nt - 1)];
        const double jmax = (double)(nt - 2);
        double jd[RC_CHUNK];
        double dd[RC_CHUNK];
        if (exact) {
            /* x0 = 0 and scale = 1/h, a power of two: (c - x0) * scale = c / h
               exactly, so its floor is the bin (x[j] = j h <= c < (j + 1) h) */
            for (x = 0; x < n; x++) {
                double v = u[x];
                double c = v >= x0 ? v : x0;
                c = c > xl ? xl : c;
                double j = floor((c - x0) * scale);
                j = j > jmax ? jmax : j;
                dd[x] = c - (x0 + j * h);
                jd[x] = j;
            }
        } else {
            for (x = 0; x < n; x++) {  /* bins and offsets: vectorised, all in double */
                double v = u[x];
                double c = v >= x0 ? v : x0;  /* NaN -> x0: a safe index (result: NaN) */
                c = c > xl ? xl : c;
                /* (c - x0) * scale >= 0: its floor is the integer conversion's value */
                double j = floor((c - x0) * scale);
                j = j > jmax ? jmax : j;
                double xj = x0 + j * h;
                /* one bin down or up where the product rounded across a grid value
                   (no bound checks needed: c >= x0 = the abscissa of bin 0, and bin
                   nt - 1, reached only for c = x[nt-1], exists in the table and its
                   value is replaced by y[nt-1] below) */
                j = c < xj ? j - 1.0 : j;
                j = c >= x0 + (j + 1.0) * h ? j + 1.0 : j;
                dd[x] = c - (x0 + j * h);
                jd[x] = j;
            }
        }
        for (x = 0; x < n; x++) {  /* the table reads: scalar loads */
            const double *restrict e = ys + 2 * (ptrdiff_t)jd[x];
            dd[x] = e[1] * dd[x] + e[0];
        }
        for (x = 0; x < n; x++) {  /* ends of the table, NaN: vectorised */
            double v = u[x];
            double r = (v >= xl) ? ylast : dd[x];
            r = v + r;
            u[x] = (v != v) ? v : r;
        }
    }

    /* A resultant that can anchor the count rate: finite, not DO_NOT_USE. */
    static inline int rc_usable(const float *data, const uint8_t *gdq, ptrdiff_t plane,
                                ptrdiff_t px, ptrdiff_t i, uint8_t do_not_use)
    {
        float v = data[i * plane + px];
        return (v - v == 0.0f) && !(gdq[i * plane + px] & do_not_use);
    }

    /* Phase 1 of one read (fused, one pass): the read on the linear ramp,
       v = first + c t; through the inverse polynomial (Horner, float64);
       stored in uk and summed into sum (read order).  `m` is a literal after
       inlining, so the coefficient loop is unrolled in the vectorised pass. */
    static inline __attribute__((always_inline)) void rc_phase1(
            double *restrict uk, double *restrict sum, const float *restrict first,
            const double *restrict cr, const double *restrict sh, double t,
            const double *restrict c, ptrdiff_t m, ptrdiff_t w, int k0)
    {
        ptrdiff_t j, x;
        for (x = 0; x < w; x++) {
            /* sh = 0 (t - 0 == t) unless the first anchor is not resultant 0 */
            double v = (double)first[x] + cr[x] * (t - sh[x]);
            double r = c[(m - 1) * RC_CHUNK + x] * v;
            for (j = m - 2; j > 0; j--)
                r = (r + c[j * RC_CHUNK + x]) * v;
            r = r + c[x];
            uk[x] = r;
            sum[x] = k0 ? r : sum[x] + r;
        }
    }

    /* Phase 2 of one read: u = uk + shift (or the INL-corrected u already in uk
       when `shifted`), through the LINEARITY polynomial, summed into acc. */
    static inline __attribute__((always_inline)) void rc_phase2(
            const double *restrict uk, const double *restrict shift, double *restrict acc,
            const double *restrict c, ptrdiff_t m, ptrdiff_t w, int k0, int shifted)
    {
        ptrdiff_t j, x;
        for (x = 0; x < w; x++) {
            double v = shifted ? uk[x] : uk[x] + shift[x];
            double r = c[(m - 1) * RC_CHUNK + x] * v;
            for (j = m - 2; j > 0; j--)
                r = (r + c[j * RC_CHUNK + x]) * v;
            r = r + c[x];
            acc[x] = k0 ? r : acc[x] + r;
        }
    }

#define RC_DISPATCH(M, CALL) \
    switch (M) { \
    case 2: { const ptrdiff_t mm = 2; CALL; } break; \
    case 3: { const ptrdiff_t mm = 3; CALL; } break; \
    case 4: { const ptrdiff_t mm = 4; CALL; } break; \
    case 5: { const ptrdiff_t mm = 5; CALL; } break; \
    case 6: { const ptrdiff_t mm = 6; CALL; } break; \
    default: { const ptrdiff_t mm = (M); CALL; } }

    /* The same polynomial in float32 on one value (the resultants of stcal are float32
       and so are its coefficients: NumPy keeps float32). */
    static inline float rc_horner32(float v, const double *restrict c, ptrdiff_t m,
                                    ptrdiff_t x)
    {
        ptrdiff_t j;
        float r = (float)c[(m - 1) * RC_CHUNK + x] * v;
        for (j = m - 2; j > 0; j--)
            r = (r + (float)c[j * RC_CHUNK + x]) * v;
        return r + (float)c[x];
    }

    /* Per-thread scratch: everything a chunk needs. */
    typedef struct {
        double *lc, *ic;          /* coefficients, (m|mi) x RC_CHUNK, identity if bad */
        double *u;                /* reads of one resultant, nread_max x RC_CHUNK */
        double *v, *sum, *acc, *cr;
        float *first;
        uint8_t *okl, *oki, *classic;
        int *last;
    } rc_rl_scratch;

    /* x86-64 Linux: AVX-512 and AVX2 clones of the chunk kernel, the best the CPU
       has chosen at load time (8 or 4 doubles per operation; AVX-512 took the full
       frame's kernel from 1.97 to 1.82 CPU s); the same IEEE operations in the same
       order (no FMA: -ffp-contract=off), so the same results as the baseline. */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define RC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
    #else
    #define RC_CLONES
    #endif

    /* Pixels x0 .. x0+w-1 of row y. */
    RC_CLONES static void rc_read_level_chunk(
            float *restrict data, uint8_t *restrict gdq, uint32_t *restrict pdq,
            const float *restrict lin, const uint32_t *restrict ldq,
            const float *restrict ilin, const rc_rl_params *p,
            ptrdiff_t y, ptrdiff_t x0, ptrdiff_t w, rc_rl_scratch *s)
    {
        const ptrdiff_t plane = p->plane, m = p->m, mi = p->mi, n = p->n;
        const ptrdiff_t base = y * p->nx + x0;
        ptrdiff_t i, j, k, x;
        double *restrict lc = s->lc, *restrict ic = s->ic;
        double *restrict sum = s->sum, *restrict acc = s->acc;
        double *restrict cr = s->cr;
        float *restrict first = s->first;
        uint8_t *restrict okl = s->okl, *restrict oki = s->oki;
        int *restrict last = s->last;
        double *restrict sh = s->v;
        uint8_t *restrict classic = s->classic;
        const uint8_t sat = p->saturated;

        /* 1. Which pixels each polynomial can correct (stcal prepare_coefficients,
           applied to LINEARITY and then to INVERSELINEARITY, both with the LINEARITY
           reference DQ): no NO_LIN_CORR in that DQ, no NaN coefficient, a non-zero
           linear term.  Others get the identity polynomial and NO_LIN_CORR; the
           reference DQ is OR-ed into the pixel DQ. */
        for (x = 0; x < w; x++) {
            int noflag = (ldq[base + x] & p->no_lin_corr) == 0;
            okl[x] = noflag & (lin[plane + base + x] != 0.0f);
            oki[x] = noflag & (ilin[plane + base + x] != 0.0f);
        }
        for (j = 0; j < m; j++)
            for (x = 0; x < w; x++) {
                float c = lin[j * plane + base + x];
                okl[x] &= (c == c);
            }
        for (j = 0; j < mi; j++)
            for (x = 0; x < w; x++) {
                float c = ilin[j * plane + base + x];
                oki[x] &= (c == c);
            }
        for (x = 0; x < w; x++)
            pdq[base + x] |= ldq[base + x] | ((okl[x] & oki[x]) ? 0u : p->no_lin_corr);
        for (j = 0; j < m; j++) {
            double ident = (j == 1) ? 1.0 : 0.0;
            for (x = 0; x < w; x++)
                lc[j * RC_CHUNK + x] = okl[x] ? (double)lin[j * plane + base + x] : ident;
        }
        for (j = 0; j < mi; j++) {
            double ident = (j == 1) ? 1.0 : 0.0;
            for (x = 0; x < w; x++)
                ic[j * RC_CHUNK + x] = oki[x] ? (double)ilin[j * plane + base + x] : ident;
        }

        /* 2. The count rate in linearised DN per read, from the first resultant and
           the last one trusted: the number of unsaturated resultants minus one
           (stcal: the last unsaturated one may be partly saturated), at least 2. */
        for (x = 0; x < w; x++)
            last[x] = -1;
        for (i = 0; i < n; i++) {
            const uint8_t *restrict g = gdq + i * plane + base;
            for (x = 0; x < w; x++)
                last[x] += (g[x] & sat) == 0;
        }
        for (x = 0; x < w; x++) {
            int lv = (last[x] < 2 ? 2 : last[x]) - 1, fi = 0;
            classic[x] = 0;
            sh[x] = 0.0;
            if (!rc_usable(data, gdq, plane, base + x, 0, p->do_not_use)
                    || !rc_usable(data, gdq, plane, base + x, lv, p->do_not_use)) {
                /* Not in stcal: an anchor that is non-finite or flagged DO_NOT_USE
                   would spread its value to every read of the pixel.  Take the
                   first usable resultant and the last usable one up to lv (else the
                   first unsaturated usable one after it) instead, so that a bad
                   resultant changes nothing but itself; no usable pair: the classic
                   per-resultant polynomial for this pixel. */
                int a = -1, b = -1;
                for (i = 0; i < n; i++)
                    if (rc_usable(data, gdq, plane, base + x, i, p->do_not_use)) {
                        a = (int)i;
                        break;
                    }
                for (i = lv; a >= 0 && i > a; i--)
                    if (rc_usable(data, gdq, plane, base + x, i, p->do_not_use)) {
                        b = (int)i;
                        break;
                    }
                for (i = lv + 1; a >= 0 && b < 0 && i < n; i++)
                    if (i > a && !(gdq[i * plane + base + x] & sat)
                            && rc_usable(data, gdq, plane, base + x, i, p->do_not_use)) {
                        b = (int)i;
                        break;
                    }
                if (b < 0) {
                    classic[x] = 1;
                    a = 0;
                    b = lv;
                }
                fi = a;
                lv = b;
                sh[x] = p->dreads[fi];
            }
            float f = data[fi * plane + base + x], l = data[lv * plane + base + x];
            float fl = (gdq[fi * plane + base + x] & sat) ? f : rc_horner32(f, lc, m, x);
            float ll = (gdq[lv * plane + base + x] & sat) ? l : rc_horner32(l, lc, m, x);
            first[x] = fl;
            last[x] = lv;
            cr[x] = (double)(ll - fl) / (p->dreads[lv] - p->dreads[fi]);
        }

        /* 3. Each resultant: its reads on the linear ramp, made non-linear with the
           inverse polynomial, shifted so that their mean is the measured resultant,
           corrected for integral non-linearity, linearised and averaged again. */
        for (i = 0; i < n; i++) {
            float *restrict d = data + i * plane + base;
            uint8_t *restrict g = gdq + i * plane + base;
            const ptrdiff_t r0 = p->rs_off[i], nr = p->rs_off[i + 1] - r0;
            int todo = 0;
            for (x = 0; x < w; x++)
                todo |= (g[x] & sat) == 0;
            if (todo) {
                for (k = 0; k < nr; k++) {
                    const double t = p->rsf[r0 + k];
                    double *restrict uk = s->u + k * RC_CHUNK;
                    RC_DISPATCH(mi, rc_phase1(uk, sum, first, cr, sh, t, ic, mm, w, k == 0))
                }
                for (x = 0; x < w; x++)  /* shift: resultant minus predicted mean */
                    sum[x] = (double)d[x] - sum[x] / (double)nr;
                for (k = 0; k < nr; k++) {
                    double *restrict uk = s->u + k * RC_CHUNK;
                    if (p->has_inl) {
                        /* integral non-linearity, channel by channel of the chunk */
                        ptrdiff_t xs = 0, xe, ch;
                        for (x = 0; x < w; x++)
                            uk[x] = uk[x] + sum[x];
                        while (xs < w) {
                            ch = (x0 + xs) / p->chw;
                            xe = (ch + 1) * p->chw - x0;
                            if (xe > w)
                                xe = w;
                            {
                                const double *restrict tys = p->inl_ys + 2 * ch * p->nt;
                                if (p->inl_h > 0.0)
                                    rc_interp_uniform(uk + xs, xe - xs, p->inl_x[0],
                                                      p->inl_x[p->nt - 1], p->inl_h,
                                                      p->inl_scale, tys, (int)p->nt,
                                                      p->inl_exact);
                                else
                                    for (x = xs; x < xe; x++)
                                        uk[x] = uk[x] + rc_interp(uk[x], p->inl_x, tys,
                                                                  p->nt, p->inl_scale, 0.0);
                            }
                            xs = xe;
                        }
                        RC_DISPATCH(m, rc_phase2(uk, sum, acc, lc, mm, w, k == 0, 1))
                    } else {
                        RC_DISPATCH(m, rc_phase2(uk, sum, acc, lc, mm, w, k == 0, 0))
                    }
                }
                for (x = 0; x < w; x++) {
                    float r = (float)(acc[x] / (double)nr);
                    if (classic[x])
                        r = rc_horner32(d[x], lc, m, x);
                    d[x] = (g[x] & sat) ? d[x] : r;
                }
            }
            if (p->clip) {
                /* romancal 1.1 LinearityStep: values beyond +-1e6 are clipped and
                   flagged DO_NOT_USE (NaN is left alone) */
                const float hi = (float)p->clip_value;
                for (x = 0; x < w; x++) {
                    float a = d[x];
                    if (fabsf(a) > hi) {
                        d[x] = a > 0 ? hi : -hi;
                        g[x] |= p->do_not_use;
                    }
                }
            }
        }
    }

    static void rc_scratch_free(rc_rl_scratch *s)
    {
        free(s->lc); free(s->ic); free(s->u); free(s->v); free(s->sum); free(s->acc);
        free(s->cr); free(s->first); free(s->okl); free(s->oki); free(s->last);
        free(s->classic);
    }

    static int rc_scratch_alloc(rc_rl_scratch *s, ptrdiff_t m, ptrdiff_t mi,
                                ptrdiff_t nread_max)
    {
        s->lc = malloc(m * RC_CHUNK * sizeof(double));
        s->ic = malloc(mi * RC_CHUNK * sizeof(double));
        s->u = malloc(nread_max * RC_CHUNK * sizeof(double));
        s->v = malloc(RC_CHUNK * sizeof(double));
        s->sum = malloc(RC_CHUNK * sizeof(double));
        s->acc = malloc(RC_CHUNK * sizeof(double));
        s->cr = malloc(RC_CHUNK * sizeof(double));
        s->first = malloc(RC_CHUNK * sizeof(float));
        s->okl = malloc(RC_CHUNK);
        s->oki = malloc(RC_CHUNK);
        s->last = malloc(RC_CHUNK * sizeof(int));
        s->classic = malloc(RC_CHUNK);
        if (!s->lc || !s->ic || !s->u || !s->v || !s->sum || !s->acc || !s->cr
                || !s->first || !s->okl || !s->oki || !s->last || !s->classic) {
            rc_scratch_free(s);
            return -1;
        }
        return 0;
    }

    static rc_rl_scratch *rc_scratch_new(ptrdiff_t m, ptrdiff_t mi, ptrdiff_t nread_max)
    {
        rc_rl_scratch *s = calloc(1, sizeof(rc_rl_scratch));
        if (s == NULL)
            return NULL;
        if (rc_scratch_alloc(s, m, mi, nread_max) != 0) {
            free(s);
            return NULL;
        }
        return s;
    }

    static void rc_scratch_delete(rc_rl_scratch *s)
    {
        if (s != NULL) {
            rc_scratch_free(s);
            free(s);
        }
    }

    /* One detector row, chunk by chunk. */
    static void rc_read_level_row(
            float *data, uint8_t *gdq, uint32_t *pdq, const float *lin,
            const uint32_t *ldq, const float *ilin, const rc_rl_params *p, ptrdiff_t y,
            rc_rl_scratch *s)
    {
        ptrdiff_t x0;
        for (x0 = 0; x0 < p->nx; x0 += RC_CHUNK) {
            ptrdiff_t w = p->nx - x0 < RC_CHUNK ? p->nx - x0 : RC_CHUNK;
            rc_read_level_chunk(data, gdq, pdq, lin, ldq, ilin, p, y, x0, w, s);
        }
    }
    """
    const int RC_CHUNK
    ctypedef struct rc_rl_params:
        Py_ssize_t n, m, mi, nx, plane
        const double* rsf
        const Py_ssize_t* rs_off
        const double* dreads
        const double* inl_x
        const double* inl_ys
        Py_ssize_t nt, chw
        double inl_scale
        double inl_h
        int inl_exact
        int has_inl
        int clip
        double clip_value
        uint32_t no_lin_corr
        uint8_t saturated, do_not_use
    ctypedef struct rc_rl_scratch:
        pass
    rc_rl_scratch* rc_scratch_new(Py_ssize_t m, Py_ssize_t mi,
                                  Py_ssize_t nread_max) noexcept nogil
    void rc_scratch_delete(rc_rl_scratch* s) noexcept nogil
    void rc_read_level_row(float* data, uint8_t* gdq, uint32_t* pdq, const float* lin,
                           const uint32_t* ldq, const float* ilin, const rc_rl_params* p,
                           Py_ssize_t y, rc_rl_scratch* s) noexcept nogil


def read_level_linearity(float[:, :, ::1] data, uint8_t[:, :, ::1] gdq, uint32_t[:, ::1] pdq,
                         const float[:, :, ::1] lin, const uint32_t[:, ::1] lin_dq,
                         const float[:, :, ::1] ilin, const double[::1] rsf,
                         const Py_ssize_t[::1] rs_off, const double[::1] dreads,
                         const double[::1] inl_x, const double[:, :, ::1] inl_ys,
                         double inl_h, Py_ssize_t channel_width, bint has_inl,
                         bint clip, double clip_value, Py_ssize_t row0, Py_ssize_t row1,
                         int n_threads):
    """Correct rows ``row0:row1`` of ``data`` in place, in parallel (stcal 1.20's
    arithmetic)."""
    cdef rc_rl_params p
    cdef Py_ssize_t y, ny = data.shape[1], nread_max = 1, i
    cdef rc_rl_scratch* s
    cdef int expo
    for i in range(rs_off.shape[0] - 1):
        nread_max = max(nread_max, rs_off[i + 1] - rs_off[i])
    p.n = data.shape[0]
    p.m = lin.shape[0]
    p.mi = ilin.shape[0]
    p.nx = data.shape[2]
    p.plane = ny * data.shape[2]
    p.rsf = &rsf[0]
    p.rs_off = &rs_off[0]
    p.dreads = &dreads[0]
    p.inl_x = &inl_x[0]
    p.inl_ys = &inl_ys[0, 0, 0]
    p.inl_h = inl_h
    p.nt = inl_x.shape[0]
    p.chw = channel_width
    p.inl_scale = (p.nt - 1) / (inl_x[p.nt - 1] - inl_x[0]) if p.nt > 1 else 0.0
    # the bin guess floor(u * scale) is exact when the grid starts at 0 and its step
    # is a power of two whose inverse the scale is (both products are then exact)
    p.inl_exact = (inl_h > 0.0 and inl_x[0] == 0.0 and p.inl_scale * inl_h == 1.0
                   and frexp(inl_h, &expo) == 0.5)
    p.has_inl = has_inl
    p.clip = clip
    p.clip_value = clip_value
    p.no_lin_corr = DQ_NO_LIN_CORR
    p.saturated = DQ_SATURATED
    p.do_not_use = DQ_DO_NOT_USE
    with nogil, parallel(num_threads=n_threads):
        s = rc_scratch_new(p.m, p.mi, nread_max)
        if s == NULL:
            with gil:
                raise MemoryError("romancore.apply_read_level_linearity: out of memory")
        # rows handed out a few at a time: on a shared machine a descheduled thread
        # does not hold up the other (each pixel depends on itself alone: the same
        # results whatever the assignment)
        for y in prange(row0, row1, schedule="dynamic", chunksize=4):
            rc_read_level_row(&data[0, 0, 0], &gdq[0, 0, 0], &pdq[0, 0], &lin[0, 0, 0],
                              &lin_dq[0, 0], &ilin[0, 0, 0], &p, y, s)
        rc_scratch_delete(s)
