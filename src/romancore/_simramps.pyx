# cython: language_level=3
"""Compiled up-the-ramp sampling of the simulator (private; see :mod:`romancore.simramps`).

One call simulates a block of rows of the read-out; the rows are distributed over
threads.  Every row has its own random stream (xoshiro256++ seeded from the exposure
seed and the row number through splitmix64), so the result is the same for any
number of threads.  Within a row the pixels are processed together, read after
read, in per-thread scratch rows: the charge of each pixel, the sum of the reads of
the current resultant, and the Poisson means.  Nothing of the size of a cube is
allocated here; the outputs are written in place.
"""
from cython.parallel cimport parallel, prange
from libc.math cimport exp
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint64_t

from romancore._dqflags cimport DQ_JUMP_DET, DQ_SATURATED


cdef extern from *:
    """
    #include <math.h>
    #include <stddef.h>
    #include <stdint.h>
    #include <stdlib.h>
    #include <string.h>

    /* ---- random numbers ------------------------------------------------------ */
    /* splitmix64 (Steele, Lea & Flood 2014) seeds xoshiro256++ (Blackman & Vigna
       2019, "Scrambled linear pseudorandom number generators"). */
    typedef struct {
        uint64_t s[4];
        double spare;      /* second normal deviate of the polar method */
        int has_spare;
    } sr_rng;

    static inline uint64_t sr_splitmix(uint64_t *x)
    {
        uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }

    static inline uint64_t sr_rotl(uint64_t x, int k)
    {
        return (x << k) | (x >> (64 - k));
    }

    /* The stream of one row: a function of (seed, stream, row) only. */
    static void sr_rng_init(sr_rng *r, uint64_t seed, uint64_t stream, uint64_t row)
    {
        uint64_t x = seed;
        uint64_t key = sr_splitmix(&x);
        x = key ^ (stream * 0xD1B54A32D192ED03ULL);
        key = sr_splitmix(&x);
        x = key ^ ((row + 1) * 0x8CB92BA72F3D8DD7ULL);
        for (int i = 0; i < 4; i++)
            r->s[i] = sr_splitmix(&x);
        r->has_spare = 0;
        r->spare = 0.0;
    }

    static inline uint64_t sr_next(sr_rng *r)
    {
        uint64_t *s = r->s;
        const uint64_t result = sr_rotl(s[0] + s[3], 23) + s[0];
        const uint64_t t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = sr_rotl(s[3], 45);
        return result;
    }

    /* Uniform on [0, 1): the top 53 bits. */
    static inline double sr_uniform(sr_rng *r)
    {
        return (double)(int64_t)(sr_next(r) >> 11) * 0x1.0p-53;
    }

    /* Standard normal: Marsaglia's polar method (Marsaglia & Bray 1964), two deviates
       per accepted pair, the second kept for the next call. */
    static inline double sr_normal(sr_rng *r)
    {
        double u, v, s;
        if (r->has_spare) {
            r->has_spare = 0;
            return r->spare;
        }
        do {
            u = 2.0 * sr_uniform(r) - 1.0;
            v = 2.0 * sr_uniform(r) - 1.0;
            s = u * u + v * v;
        } while (s >= 1.0 || s == 0.0);
        s = sqrt(-2.0 * log(s) / s);
        r->spare = v * s;
        r->has_spare = 1;
        return u * s;
    }

    /* ---- Poisson deviates ------------------------------------------------------ */
    #define SR_SMALL_MEAN 10.0
    #define SR_KMAX 128
    #define SR_KT 64          /* per-pixel CDF table stride (a power of two) */
    static double sr_inv_k[SR_KMAX + 1];
    static double sr_log_fact[16];

    static void sr_tables(void)
    {
        sr_inv_k[0] = 0.0;
        for (int k = 1; k <= SR_KMAX; k++)
            sr_inv_k[k] = 1.0 / (double)k;
        sr_log_fact[0] = 0.0;
        for (int k = 1; k < 16; k++)
            sr_log_fact[k] = sr_log_fact[k - 1] + log((double)k);
    }

    /* log(k!): a table below 16, Stirling's series for lgamma(k + 1) above (error
       below 1e-13 there; Abramowitz & Stegun 6.1.41). */
    static inline double sr_lfact(double k)
    {
        if (k < 16.0)
            return sr_log_fact[(int)k];
        double x = k + 1.0, ix = 1.0 / x, ix2 = ix * ix;
        return (x - 0.5) * log(x) - x + 0.91893853320467274178
               + ix * (1.0 / 12.0 - ix2 * (1.0 / 360.0 - ix2 * (1.0 / 1260.0)));
    }

    /* Mean <= SR_SMALL_MEAN: inversion by sequential search, X = min{k : F(k) >= u}
       with P(0) = exp(-m) (``em``, computed once per pixel) and P(k) = P(k-1) m / k
       (Devroye 1986, "Non-Uniform Random Variate Generation", X.3.3).  The search stops
       once P(k) no longer changes F in double precision (u within an ulp of 1). */
    static inline double sr_poisson_small(sr_rng *r, double m, double em)
    {
        double u = sr_uniform(r);
        double p = em, f = em;
        int k = 0;
        while (u > f && k < SR_KMAX) {
            k++;
            p *= m * sr_inv_k[k];
            if (p < 1e-17 * f)
                break;
            f += p;
        }
        return (double)k;
    }

    /* Mean > SR_SMALL_MEAN: the transformed rejection method with squeeze, PTRS
       (Hoermann 1993, "The transformed rejection method for generating Poisson random
       variables", Insurance: Mathematics and Economics 12, 39-45), its constants
       as given in that paper. */
    static double sr_poisson_ptrs(sr_rng *r, double m)
    {
        const double slam = sqrt(m), loglam = log(m);
        const double b = 0.931 + 2.53 * slam;
        const double a = -0.059 + 0.02483 * b;
        const double invalpha = 1.1239 + 1.1328 / (b - 3.4);
        const double vr = 0.9277 - 3.6224 / (b - 2.0);
        for (;;) {
            double u = sr_uniform(r) - 0.5;
            double v = sr_uniform(r);
            double us = 0.5 - fabs(u);
            double k = floor((2.0 * a / us + b) * u + m + 0.43);
            if (us >= 0.07 && v <= vr)
                return k;
            if (k < 0.0 || (us < 0.013 && v > us))
                continue;
            if (log(v) + log(invalpha) - log(a / (us * us) + b)
                    <= -m + k * loglam - sr_lfact(k))
                return k;
        }
    }

    /* Tabulated inversion for a mean m <= SR_SMALL_MEAN used read after read: the
       cumulative distribution F(j) = sum_{i<=j} P(i), P(0) = exp(-m),
       P(j) = P(j-1) m / j, for j < K = ceil(m + 2 sqrt(m) + 2), is built once and
       padded with 2.0 up to the power of two n2 > K; a draw X = min{j : F(j) >= u} is
       the number of entries below u, found by a branch-free binary search
       (log2(n2) steps); u > F(K-1) (about 1 % of the draws) continues the sequential
       search from the last entry, so the draw is exactly that of sr_poisson_small
       for the same u.  ``last`` receives P(K-1); returns K, ``n2`` receives n2. */
    static inline int32_t sr_table_build(double m, double *f, double *last, int32_t *n2)
    {
        int32_t k = (int32_t)ceil(m + 2.0 * sqrt(m) + 2.0), p2 = 2;
        k = k > SR_KT / 2 ? SR_KT / 2 : k;
        double p = exp(-m), c = p;
        f[0] = c;
        for (int32_t j = 1; j < k; j++) {
            p *= m * sr_inv_k[j];
            c += p;
            f[j] = c;
        }
        while (p2 <= k)
            p2 *= 2;
        for (int32_t j = k; j < p2; j++)
            f[j] = 2.0;
        *last = p;
        *n2 = p2;
        return k;
    }

    static inline double sr_table_draw(sr_rng *r, const double *restrict f, int32_t k,
                                       int32_t n2, double m, double last)
    {
        double u = sr_uniform(r);
        ptrdiff_t c = 0;
        for (ptrdiff_t step = n2 >> 1; step > 0; step >>= 1)
            c += (f[c + step - 1] < u) ? step : 0;
        if (c < k)
            return (double)c;
        /* the tail: continue the sequential search after F(k-1) */
        {
            double fk = f[k - 1], p = last;
            int j = k - 1;
            while (u > fk && j < SR_KMAX) {
                j++;
                p *= m * sr_inv_k[j];
                if (p < 1e-17 * fk)
                    break;
                fk += p;
            }
            return (double)j;
        }
    }

    /* ---- the block ------------------------------------------------------------- */
    enum { SR_NONE = 0, SR_POLY = 1, SR_QUADRATIC = 2, SR_NEWTON = 3 };

    typedef struct {
        ptrdiff_t ny, nx, n_res, border, r0, s0, s1, nsx, n33;
        /* science block, rows s0..s1-1 of the read-out, columns border..border+nsx-1 */
        const double *detected, *ginv, *q0, *sfull, *thr;
        const double *lin; ptrdiff_t nlin;
        const double *inv; ptrdiff_t ninv;
        ptrdiff_t plane_s;          /* ns * nsx */
        int mode;
        /* chw: columns per amplifier channel (offsets, INL tables) */
        const double *inl_x, *inl_ys; ptrdiff_t nt, chw; double inl_h, inl_scale;
        int has_inl;
        const int64_t *res_first;   /* first sampled read of each resultant, n_res + 1 */
        const double *read_mean;    /* Poisson mean factor of each sampled read: gap * dt */
        const double *read_time;    /* time of each sampled read */
        const int64_t *owner;       /* resultant of each sampled read */
        double frame_time;
        int poisson, read_noise;
        const int64_t *cr_start, *cr_col, *cr_read; const double *cr_charge;
        /* every row of the block, rows r0.. of the read-out */
        const double *ped, *ped33, *rn; double rn33;
        const double *chan_off; ptrdiff_t nch1;   /* (n_res, nch1, 2) */
        const double *row_drift;                  /* (n_res, ny) */
        uint16_t *data; uint8_t *dq; uint16_t *amp33; int16_t *sat;
        const double *decay; ptrdiff_t period;   /* (n_res, ny, period) or NULL */
        uint64_t seed, stream;
        uint8_t jump, saturated;
    } sr_params;

    typedef struct {
        double *charge, *acc, *mean, *em, *level, *crcum;
        double *inl_xj, *inl_y0, *inl_sl;  /* each pixel's last INL bin (uniform table) */
        int32_t *inl_j;        /* its index, -1: none yet */
        double *cdf;           /* per-pixel tables F(0..K-1), SR_KT apart */
        int32_t *kx;           /* table length of each pixel (0: not tabulated) */
        int32_t *n2;           /* padded table length (a power of two > kx) */
        ptrdiff_t *off;        /* start of each pixel's table in cdf */
        int16_t *first_sat;
    } sr_scratch;

    static sr_scratch *sr_scratch_new(ptrdiff_t nx)
    {
        sr_scratch *s = (sr_scratch *)calloc(1, sizeof(sr_scratch));
        if (!s) return NULL;
        s->charge = (double *)malloc(9 * (size_t)(nx + 1) * sizeof(double));
        s->first_sat = (int16_t *)malloc((size_t)(nx + 1) * sizeof(int16_t));
        s->cdf = (double *)malloc((size_t)(nx + 1) * SR_KT * sizeof(double));
        s->off = (ptrdiff_t *)malloc((size_t)(nx + 1) * sizeof(ptrdiff_t));
        s->kx = (int32_t *)malloc(3 * (size_t)(nx + 1) * sizeof(int32_t));
        if (!s->charge || !s->first_sat || !s->cdf || !s->kx || !s->off) {
            free(s->charge); free(s->first_sat); free(s->cdf); free(s->kx); free(s->off);
            free(s);
            return NULL;
        }
        s->n2 = s->kx + (nx + 1);
        s->inl_j = s->n2 + (nx + 1);
        s->acc = s->charge + (nx + 1);
        s->mean = s->acc + (nx + 1);
        s->em = s->mean + (nx + 1);
        s->level = s->em + (nx + 1);
        s->crcum = s->level + (nx + 1);
        s->inl_xj = s->crcum + (nx + 1);
        s->inl_y0 = s->inl_xj + (nx + 1);
        s->inl_sl = s->inl_y0 + (nx + 1);
        return s;
    }

    static void sr_scratch_delete(sr_scratch *s)
    {
        if (s) {
            free(s->charge); free(s->first_sat); free(s->cdf); free(s->kx); free(s->off);
            free(s);
        }
    }

    static inline double sr_horner(const double *c, ptrdiff_t n, ptrdiff_t stride, double x)
    {
        double r = c[(n - 1) * stride];
        for (ptrdiff_t k = n - 2; k >= 0; k--)
            r = r * x + c[k * stride];
        return r;
    }

    /* D = L^-1(y) of pixel px of the science row (px indexes the coefficient planes).
       SR_QUADRATIC: the root of c0 + c1 D + c2 D^2 = y next to y, in the form
       2 (y - c0) / (c1 + sqrt(c1^2 + 4 c2 (y - c0))) that stays exact as c2 -> 0;
       SR_NEWTON: Newton's iterations on L(D) = y from the INVERSELINEARITY polynomial
       (or y), to a relative step of 1e-9; SR_POLY: the INVERSELINEARITY polynomial. */
    static inline double sr_response(const sr_params *p, ptrdiff_t px, double y)
    {
        const ptrdiff_t st = p->plane_s;
        if (p->mode == SR_QUADRATIC) {
            double c1 = p->lin[st + px];
            double c2 = p->nlin > 2 ? p->lin[2 * st + px] : 0.0;
            double d = y - p->lin[px];
            double t = c1 * c1 + 4.0 * c2 * d;
            t = t > 0.0 ? t : 0.0;
            return 2.0 * d / (sqrt(t) + c1);
        }
        if (p->mode == SR_POLY)
            return p->ninv > 0 ? sr_horner(p->inv + px, p->ninv, st, y) : y;
        if (p->mode == SR_NEWTON) {
            double x = p->ninv > 0 ? sr_horner(p->inv + px, p->ninv, st, y) : y;
            for (int it = 0; it < 50; it++) {
                double f = sr_horner(p->lin + px, p->nlin, st, x) - y;
                double df = 0.0;
                for (ptrdiff_t k = p->nlin - 1; k >= 1; k--)
                    df = df * x + (double)k * p->lin[k * st + px];
                double step = f / df;
                x -= step;
                double ax = fabs(x) > 1.0 ? fabs(x) : 1.0;
                if (!(fabs(step) > 1e-9 * ax))
                    break;
            }
            return x;
        }
        return y;
    }

    /* INL(u) of one channel, piecewise linear between the table's abscissae and
       constant beyond them (NumPy's interp, as the pipeline applies it). */
    /* INL(u) on an exactly uniform table x[j] = x0 + j h (checked by the wrapper):
       the bin is computed, then corrected by one either way, branch-free. */
    static inline __attribute__((always_inline)) double sr_inl_uniform(
            const double *restrict ys, double x0, double xl, double h, double scale,
            ptrdiff_t last, double u)
    {
        double c = u < x0 ? x0 : u;
        c = c > xl ? xl : c;
        int j = (int)((c - x0) * scale);
        j = j > (int)last ? (int)last : j;
        j = j < 0 ? 0 : j;
        j -= (c < x0 + (double)j * h) & (j > 0);
        j += (c >= x0 + (double)(j + 1) * h) & (j < (int)last);
        return ys[2 * j] + ys[2 * j + 1] * (c - (x0 + (double)j * h));
    }

    /* The raw read r = D - INL(D - INL(D)) on a uniform table; the second look-up
       reuses the first one's bin when D - INL(D) stays in it (almost always: the
       correction is a few DN, a bin hundreds), with the same arithmetic. */
    static inline __attribute__((always_inline)) double sr_raw_uniform(
            const double *restrict ys, double x0, double xl, double h, double scale,
            ptrdiff_t last, double d)
    {
        double c = d < x0 ? x0 : d;
        c = c > xl ? xl : c;
        int j = (int)((c - x0) * scale);
        j = j > (int)last ? (int)last : j;
        j = j < 0 ? 0 : j;
        j -= (c < x0 + (double)j * h) & (j > 0);
        j += (c >= x0 + (double)(j + 1) * h) & (j < (int)last);
        const double xj = x0 + (double)j * h;
        const double y0 = ys[2 * j], sl = ys[2 * j + 1];
        const double r1 = d - (y0 + sl * (c - xj));
        double c2 = r1 < x0 ? x0 : r1;
        c2 = c2 > xl ? xl : c2;
        if (c2 >= xj && (c2 < xj + h || (j == (int)last && c2 <= xl)))
            return d - (y0 + sl * (c2 - xj));
        return d - sr_inl_uniform(ys, x0, xl, h, scale, last, r1);
    }

    static inline double sr_inl(const sr_params *p, const double *ys, double u)
    {
        if (p->inl_h > 0.0) {
            /* exactly uniform abscissae x[j] = x[0] + j h (checked by the wrapper):
               the bin is computed, then corrected by one either way, branch-free */
            const double x0 = p->inl_x[0], xl = p->inl_x[p->nt - 1], h = p->inl_h;
            const ptrdiff_t last = p->nt - 2;
            double c = u < x0 ? x0 : u;
            c = c > xl ? xl : c;
            ptrdiff_t j = (ptrdiff_t)((c - x0) * p->inl_scale);
            j = j > last ? last : j;
            j = j < 0 ? 0 : j;
            j -= (c < x0 + (double)j * h) & (j > 0);
            j += (c >= x0 + (double)(j + 1) * h) & (j < last);
            return ys[2 * j] + ys[2 * j + 1] * (c - (x0 + (double)j * h));
        }
        const double *x = p->inl_x;
        const ptrdiff_t nt = p->nt;
        double c = u < x[0] ? x[0] : u;
        c = c > x[nt - 1] ? x[nt - 1] : c;
        ptrdiff_t j = (ptrdiff_t)((c - x[0]) * p->inl_scale);
        j = j > nt - 2 ? nt - 2 : j;
        j = j < 0 ? 0 : j;
        while (j > 0 && c < x[j]) j--;
        while (j < nt - 2 && c >= x[j + 1]) j++;
        return ys[2 * j] + ys[2 * j + 1] * (c - x[j]);
    }

    static inline double sr_offset(const sr_params *p, ptrdiff_t i, ptrdiff_t y,
                                   ptrdiff_t channel, ptrdiff_t parity)
    {
        return p->chan_off[(i * p->nch1 + channel) * 2 + parity] + p->row_drift[i * p->ny + y];
    }

    /* Round half to even (as numpy.rint) and clip to 0..65535.  Clipping first to
       the integer bounds gives the same result; adding and subtracting 1.5 * 2^52
       rounds to an integer in the default rounding mode without a libm call (no
       -ffast-math: the compiler keeps both operations).  NaN gives 0. */
    static inline uint16_t sr_to_uint16(double level)
    {
        const double big = 6755399441055744.0;
        level = level > 0.0 ? level : 0.0;
        level = level < 65535.0 ? level : 65535.0;
        double t = level + big;
        return (uint16_t)(t - big);
    }

    /* One row y of the read-out. */
    static void sr_row(const sr_params *p, ptrdiff_t y, sr_scratch *s)
    {
        sr_rng rng;
        const ptrdiff_t nx = p->nx, b = p->border, nsx = p->nsx;
        const ptrdiff_t plane = p->ny * nx, r = y - p->r0;
        const int sci = (y >= p->s0) && (y < p->s1);
        const ptrdiff_t sr = y - p->s0, off = sr * nsx;
        ptrdiff_t i, k, x, hit = 0, hit_end = 0;
        double cur_gap = -1.0;
        sr_rng_init(&rng, p->seed, p->stream, (uint64_t)y);
        if (sci) {
            hit = p->cr_start[sr];
            hit_end = p->cr_start[sr + 1];
            for (x = 0; x < nsx; x++) {
                s->charge[x] = 0.0;
                s->crcum[x] = 0.0;
                s->first_sat[x] = -1;
                s->inl_j[x] = -1;
                s->inl_xj[x] = 0.0;
            }
        }
        for (i = 0; i < p->n_res; i++) {
            const double nreads = (double)(p->res_first[i + 1] - p->res_first[i]);
            if (sci) {
                double *restrict acc = s->acc;
                for (x = 0; x < nsx; x++)
                    acc[x] = 0.0;
                for (k = p->res_first[i]; k < p->res_first[i + 1]; k++) {
                    double *restrict charge = s->charge;
                    const double *restrict det = p->detected + off;
                    if (p->poisson) {
                        /* charge S_k = S_k' + Poisson(R (t_k - t_k')) (ramps.py, step 1) */
                        if (p->read_mean[k] != cur_gap) {
                            cur_gap = p->read_mean[k];
                            ptrdiff_t used = 0;  /* tables packed one after another */
                            for (x = 0; x < nsx; x++) {
                                double m = det[x] * cur_gap;
                                s->mean[x] = m;
                                s->off[x] = used;
                                s->kx[x] = 0;
                                s->n2[x] = 0;
                                if (m > 0.0 && m <= SR_SMALL_MEAN) {
                                    s->kx[x] = sr_table_build(m, s->cdf + used, s->em + x,
                                                              s->n2 + x);
                                    used += s->n2[x];
                                }
                            }
                        }
                        for (x = 0; x < nsx; x++) {
                            double m = s->mean[x];
                            if (s->kx[x] > 0)
                                charge[x] += sr_table_draw(&rng, s->cdf + s->off[x],
                                                           s->kx[x], s->n2[x], m,
                                                           s->em[x]);
                            else if (m > SR_SMALL_MEAN)
                                charge[x] += sr_poisson_ptrs(&rng, m);
                        }
                    }
                    /* cosmic rays first seen in read k (sorted by read, then column) */
                    while (hit < hit_end && p->cr_read[hit] == k) {
                        ptrdiff_t c = p->cr_col[hit];
                        if (p->poisson)
                            charge[c] += p->cr_charge[hit];
                        else
                            s->crcum[c] += p->cr_charge[hit];
                        p->dq[p->owner[k] * plane + y * nx + b + c] |= p->jump;
                        hit++;
                    }
                    if (!p->poisson) {
                        const double t = p->read_time[k];
                        for (x = 0; x < nsx; x++)
                            charge[x] = det[x] * t + s->crcum[x];
                    }
                    /* full well, response D = L^-1(L(p) + min(S, S_full) / g), INL */
                    {
                        const double *restrict sf = p->sfull + off;
                        const double *restrict gi = p->ginv + off;
                        const double *restrict q0 = p->q0 + off;
                        double *restrict lev = s->level;
                        for (x = 0; x < nsx; x++) {
                            double c = charge[x] < sf[x] ? charge[x] : sf[x];
                            lev[x] = c * gi[x] + q0[x];
                        }
                        if (p->mode == SR_QUADRATIC) {
                            const ptrdiff_t st = p->plane_s;
                            const double *restrict c0 = p->lin + off;
                            const double *restrict c1 = p->lin + st + off;
                            const double *restrict c2 = p->lin + 2 * st + off;
                            const int has2 = p->nlin > 2;
                            for (x = 0; x < nsx; x++) {
                                double b1 = c1[x];
                                double b2 = has2 ? c2[x] : 0.0;
                                double d = lev[x] - c0[x];
                                double t = b1 * b1 + 4.0 * b2 * d;
                                t = t > 0.0 ? t : 0.0;
                                lev[x] = 2.0 * d / (sqrt(t) + b1);
                            }
                        } else if (p->mode != SR_NONE) {
                            for (x = 0; x < nsx; x++)
                                lev[x] = sr_response(p, off + x, lev[x]);
                        }
                        if (p->has_inl) {
                            /* the raw read r with r + INL(r) = D: r = D - INL(D - INL(D))
                               (ramps._IntegralNonlinearity) */
                            ptrdiff_t xa, xb;
                            for (xa = 0; xa < nsx; xa = xb) {  /* one channel at a time */
                                const ptrdiff_t ch = (b + xa) / p->chw;
                                const double *ys = p->inl_ys + 2 * p->nt * ch;
                                xb = (ch + 1) * p->chw - b;
                                xb = xb < nsx ? xb : nsx;
                                if (p->inl_h > 0.0) {
                                    const double x0 = p->inl_x[0];
                                    const double xl = p->inl_x[p->nt - 1];
                                    const double h = p->inl_h, sc = p->inl_scale;
                                    const ptrdiff_t last = p->nt - 2;
                                    for (x = xa; x < xb; x++) {
                                        /* the pixel's bin of the previous read, reused
                                           while its level stays in it (the same values
                                           as the look-up, sr_raw_uniform) */
                                        const double d = lev[x];
                                        double c = d < x0 ? x0 : d;
                                        c = c > xl ? xl : c;
                                        const double xj = s->inl_xj[x];
                                        if (s->inl_j[x] >= 0 && c >= xj && c < xj + h) {
                                            const double y0 = s->inl_y0[x];
                                            const double sl = s->inl_sl[x];
                                            const double r1 = d - (y0 + sl * (c - xj));
                                            double c2 = r1 < x0 ? x0 : r1;
                                            c2 = c2 > xl ? xl : c2;
                                            if (c2 >= xj && c2 < xj + h)
                                                lev[x] = d - (y0 + sl * (c2 - xj));
                                            else
                                                lev[x] = d - sr_inl_uniform(ys, x0, xl, h, sc,
                                                                            last, r1);
                                        } else {
                                            int j = (int)((c - x0) * sc);
                                            j = j > (int)last ? (int)last : j;
                                            j = j < 0 ? 0 : j;
                                            j -= (c < x0 + (double)j * h) & (j > 0);
                                            j += (c >= x0 + (double)(j + 1) * h)
                                                 & (j < (int)last);
                                            s->inl_j[x] = j;
                                            s->inl_xj[x] = x0 + (double)j * h;
                                            s->inl_y0[x] = ys[2 * j];
                                            s->inl_sl[x] = ys[2 * j + 1];
                                            lev[x] = sr_raw_uniform(ys, x0, xl, h, sc, last, d);
                                        }
                                    }
                                } else {
                                    for (x = xa; x < xb; x++) {
                                        double d = lev[x];
                                        double r1 = d - sr_inl(p, ys, d);
                                        lev[x] = d - sr_inl(p, ys, r1);
                                    }
                                }
                            }
                        }
                        for (x = 0; x < nsx; x++)
                            acc[x] += lev[x];
                    }
                }
                {
                    const double *restrict thr = p->thr + off;
                    for (x = 0; x < nsx; x++) {
                        acc[x] /= nreads;
                        if (s->first_sat[x] < 0 && acc[x] >= thr[x])
                            s->first_sat[x] = (int16_t)i;
                    }
                }
            }
            /* the resultant: level + electronic offsets + read noise / sqrt(n) */
            {
                const double *ped = p->ped + r * nx;
                const double *rn = p->rn + r * nx;
                const double scale = 1.0 / sqrt(nreads);
                uint16_t *out = p->data + i * plane + y * nx;
                const double drift = p->row_drift[i * p->ny + y];
                ptrdiff_t xa, xb;
                for (xa = 0; xa < nx; xa = xb) {  /* one amplifier channel at a time */
                    const ptrdiff_t ch = xa / p->chw;
                    const double *co = p->chan_off + (i * p->nch1 + ch) * 2;
                    const double even = co[0] + drift, odd = co[1] + drift;
                    xb = (ch + 1) * p->chw;
                    xb = xb < nx ? xb : nx;
                    for (x = xa; x < xb; x++) {
                        int in = sci && x >= b && x < b + nsx;
                        double level = in ? s->acc[x - b] : ped[x];
                        /* offsets per channel and column parity, plus the row drift */
                        level += (x & 1) ? odd : even;
                        if (p->read_noise)
                            level += sr_normal(&rng) * (rn[x] * scale);
                        out[x] = sr_to_uint16(level);
                        if (in && p->decay)  /* decaying signals: added, re-rounded */
                            out[x] = sr_to_uint16((double)out[x]
                                + p->decay[(i * p->ny + y) * p->period + x % p->period]);
                    }
                }
                const double *ped33 = p->ped33 + r * p->n33;
                uint16_t *out33 = p->amp33 + (i * p->ny + y) * p->n33;
                for (x = 0; x < p->n33; x++) {
                    double level = ped33[x] + sr_offset(p, i, y, p->nch1 - 1, x % 2);
                    if (p->read_noise)
                        level += sr_normal(&rng) * (p->rn33 * scale);
                    out33[x] = sr_to_uint16(level);
                }
            }
        }
        if (sci) {
            int16_t *sat = p->sat + (y - b) * nsx;
            for (x = 0; x < nsx; x++) {
                int16_t f = s->first_sat[x];
                sat[x] = f;
                if (f >= 0)
                    for (i = f; i < p->n_res; i++)
                        p->dq[i * plane + y * nx + b + x] |= p->saturated;
            }
        }
    }
    """
    ctypedef struct sr_params:
        Py_ssize_t ny, nx, n_res, border, r0, s0, s1, nsx, n33
        const double* detected
        const double* ginv
        const double* q0
        const double* sfull
        const double* thr
        const double* lin
        Py_ssize_t nlin
        const double* inv
        Py_ssize_t ninv
        Py_ssize_t plane_s
        int mode
        const double* inl_x
        const double* inl_ys
        Py_ssize_t nt, chw
        double inl_h, inl_scale
        int has_inl
        const int64_t* res_first
        const double* read_mean
        const double* read_time
        const int64_t* owner
        double frame_time
        int poisson, read_noise
        const int64_t* cr_start
        const int64_t* cr_col
        const int64_t* cr_read
        const double* cr_charge
        const double* ped
        const double* ped33
        const double* rn
        double rn33
        const double* chan_off
        Py_ssize_t nch1
        const double* row_drift
        uint16_t* data
        uint8_t* dq
        uint16_t* amp33
        int16_t* sat
        const double* decay
        Py_ssize_t period
        uint64_t seed, stream
        uint8_t jump, saturated
    ctypedef struct sr_scratch:
        pass
    ctypedef struct sr_rng:
        uint64_t s[4]
        double spare
        int has_spare
    void sr_tables() noexcept nogil
    sr_scratch* sr_scratch_new(Py_ssize_t nx) noexcept nogil
    void sr_scratch_delete(sr_scratch* s) noexcept nogil
    void sr_row(const sr_params* p, Py_ssize_t y, sr_scratch* s) noexcept nogil
    void sr_rng_init(sr_rng* r, uint64_t seed, uint64_t stream, uint64_t row) noexcept nogil
    double sr_uniform(sr_rng* r) noexcept nogil
    double sr_normal(sr_rng* r) noexcept nogil
    double sr_poisson_small(sr_rng* r, double m, double em) noexcept nogil
    double sr_poisson_ptrs(sr_rng* r, double m) noexcept nogil
    int SR_NONE, SR_POLY, SR_QUADRATIC, SR_NEWTON


sr_tables()

MODES = {"none": SR_NONE, "inverselinearity": SR_POLY, "quadratic": SR_QUADRATIC,
         "newton": SR_NEWTON}


def simulate_block(uint16_t[:, :, ::1] data, uint8_t[:, :, ::1] dq,
                   uint16_t[:, :, ::1] amp33, int16_t[:, ::1] sat,
                   Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t s0, Py_ssize_t s1,
                   Py_ssize_t border,
                   const double[:, ::1] detected, const double[:, ::1] ginv,
                   const double[:, ::1] q0, const double[:, ::1] sfull,
                   const double[:, ::1] thr, const double[:, :, ::1] lin,
                   const double[:, :, ::1] inv, bint has_inv, int mode,
                   const double[::1] inl_x, const double[:, :, ::1] inl_ys, double inl_h,
                   bint has_inl,
                   Py_ssize_t channel_width,
                   const int64_t[::1] res_first, const double[::1] read_mean,
                   const double[::1] read_time, const int64_t[::1] owner,
                   bint poisson, bint read_noise,
                   const int64_t[::1] cr_start, const int64_t[::1] cr_col,
                   const int64_t[::1] cr_read, const double[::1] cr_charge,
                   const double[:, ::1] ped, const double[:, ::1] ped33,
                   const double[:, ::1] rn, double rn33,
                   const double[:, :, ::1] chan_off, const double[:, ::1] row_drift,
                   const double[:, :, ::1] decay, bint has_decay, uint64_t seed, uint64_t stream, int n_threads):
    """Simulate rows ``r0:r1`` of the read-out in place (arguments checked by the wrapper)."""
    cdef sr_params p
    cdef Py_ssize_t y
    cdef sr_scratch* s
    p.ny = data.shape[1]
    p.nx = data.shape[2]
    p.n_res = data.shape[0]
    p.border = border
    p.r0 = r0
    p.s0 = s0
    p.s1 = s1
    p.nsx = detected.shape[1]
    p.n33 = amp33.shape[2]
    p.detected = &detected[0, 0]
    p.ginv = &ginv[0, 0]
    p.q0 = &q0[0, 0]
    p.sfull = &sfull[0, 0]
    p.thr = &thr[0, 0]
    p.lin = &lin[0, 0, 0]
    p.nlin = lin.shape[0] if mode in (SR_QUADRATIC, SR_NEWTON) else 0
    p.inv = &inv[0, 0, 0]
    p.ninv = inv.shape[0] if has_inv else 0
    p.plane_s = detected.shape[0] * detected.shape[1]
    p.mode = mode
    p.inl_x = &inl_x[0]
    p.inl_ys = &inl_ys[0, 0, 0]
    p.nt = inl_x.shape[0]
    p.chw = channel_width
    p.inl_h = inl_h
    p.inl_scale = (p.nt - 1) / (inl_x[p.nt - 1] - inl_x[0]) if p.nt > 1 else 0.0
    p.has_inl = has_inl and p.nt > 1
    p.res_first = &res_first[0]
    p.read_mean = &read_mean[0]
    p.read_time = &read_time[0]
    p.owner = &owner[0]
    p.poisson = poisson
    p.read_noise = read_noise
    p.cr_start = &cr_start[0]
    p.cr_col = &cr_col[0]
    p.cr_read = &cr_read[0]
    p.cr_charge = &cr_charge[0]
    p.ped = &ped[0, 0]
    p.ped33 = &ped33[0, 0]
    p.rn = &rn[0, 0]
    p.rn33 = rn33
    p.chan_off = &chan_off[0, 0, 0]
    p.nch1 = chan_off.shape[1]
    p.row_drift = &row_drift[0, 0]
    p.data = &data[0, 0, 0]
    p.dq = &dq[0, 0, 0]
    p.amp33 = &amp33[0, 0, 0]
    p.sat = &sat[0, 0]
    p.decay = &decay[0, 0, 0] if has_decay else NULL
    p.period = decay.shape[2]
    p.seed = seed
    p.stream = stream
    p.jump = DQ_JUMP_DET
    p.saturated = DQ_SATURATED
    with nogil, parallel(num_threads=n_threads):
        s = sr_scratch_new(p.nx)
        if s == NULL:
            with gil:
                raise MemoryError("romancore.simulate_ramp_block: out of memory")
        for y in prange(r0, r1, schedule="dynamic", chunksize=1):
            sr_row(&p, y, s)
        sr_scratch_delete(s)


def poisson_draws(const double[::1] mean, uint64_t seed, uint64_t stream, Py_ssize_t row,
                  double[::1] out):
    """Fill ``out`` with one Poisson draw per mean, from the stream of ``row``."""
    cdef sr_rng rng
    cdef Py_ssize_t i
    cdef double m
    sr_rng_init(&rng, seed, stream, <uint64_t>row)
    for i in range(mean.shape[0]):
        m = mean[i]
        if m <= 0.0:
            out[i] = 0.0
        elif m <= 10.0:
            out[i] = sr_poisson_small(&rng, m, exp(-m))
        else:
            out[i] = sr_poisson_ptrs(&rng, m)


def normal_draws(uint64_t seed, uint64_t stream, Py_ssize_t row, double[::1] out):
    """Fill ``out`` with standard normal draws from the stream of ``row``."""
    cdef sr_rng rng
    cdef Py_ssize_t i
    sr_rng_init(&rng, seed, stream, <uint64_t>row)
    for i in range(out.shape[0]):
        out[i] = sr_normal(&rng)
