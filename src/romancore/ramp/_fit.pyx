# cython: language_level=3
"""Driver of the Casertano (2022) ramp fit with jump detection (private).

Rows are distributed over OpenMP threads.  Within a row, a vectorised fast path fits
every pixel's full ramp at once (loops run over resultants outside, contiguous pixels
inside) and evaluates its jump statistic.  Only pixels whose group DQ splits the ramp
or whose statistic crosses the threshold go through the per-pixel queue
(:func:`_queue_pixel`), which reproduces stcal 1.20's ``fit_jumps`` order of work.
Scratch memory is allocated once per thread; nothing is allocated per pixel.

A NaN or infinite resultant is flagged DO_NOT_USE in ``groupdq`` (in the per-pixel
path, which every such pixel takes: its full-ramp slope is not finite), so the ramp is
split around it exactly as around any other flagged resultant.
"""
from cython.parallel cimport parallel, prange
from libc.math cimport NAN, isfinite, isnan
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc

from romancore._dqflags cimport DQ_DO_NOT_USE, DQ_JUMP_DET
from romancore.ramp._jump cimport (J_DT1, J_DT1SQ, J_DT2, J_DT2SQ, J_RR1, J_RR2, J_VS1,
                                   J_VS2, nan_max, statistic, threshold)
from romancore.ramp._finish cimport bad_gain, finish_pixel
from romancore.ramp._segment cimport p_index, segment_slope

cdef enum:
    N_P = 6


cdef struct Tables:
    Py_ssize_t n            # resultants
    Py_ssize_t plane        # ny * nx, the stride between resultants
    const double* k
    const int64_t* k_offset
    const double* var_read
    const double* var_poisson
    const float* jump       # (8, n - 1)
    const float* t_bar
    bint use_jump
    float intercept
    float constant
    float lowest_threshold  # min over slopes of the threshold: a cheap pre-test


cdef inline float _jstat(const Tables* tb, const float* r, Py_ssize_t i, int j,
                         float rn2, float slope, float correct) noexcept nogil:
    """Statistic of the difference (i, i + j) for the pixel whose resultant 0 is r."""
    cdef Py_ssize_t m = tb.n - 1
    cdef int o = j - 1
    return statistic(r[i * tb.plane], r[(i + j) * tb.plane],
                     tb.jump[(J_DT1 + o) * m + i], tb.jump[(J_DT1SQ + o) * m + i],
                     tb.jump[(J_RR1 + o) * m + i], tb.jump[(J_VS1 + o) * m + i],
                     rn2, slope, correct)


cdef inline void _flag_nonfinite(const float* r, uint8_t* g, Py_ssize_t n,
                                 Py_ssize_t plane) noexcept nogil:
    """DO_NOT_USE on every NaN or infinite resultant of one pixel (steps by ``plane``)."""
    cdef Py_ssize_t i
    for i in range(n):
        if not isfinite(r[i * plane]):
            g[i * plane] |= DQ_DO_NOT_USE


cdef void _queue_pixel(const Tables* tb, const float* r, uint8_t* g, float rn,
                       int32_t* stack, float* out_slope, float* out_vr,
                       float* out_vp) noexcept nogil:
    """Fit one pixel's ramp segment by segment, splitting at jumps (000:1266-1306).

    ``r`` and ``g`` point at the pixel's resultant 0 and step by ``tb.plane``.  Segments
    are the runs of resultants with no DQ flag (a NaN or infinite resultant is first
    flagged DO_NOT_USE); they are pushed on a stack in order and popped from the top
    (as stcal does).  A segment whose statistic exceeds the
    threshold gets its two candidate resultants flagged JUMP_DET and is replaced by the
    sub-segments before and after them.
    """
    cdef Py_ssize_t n = tb.n, plane = tb.plane
    cdef Py_ssize_t top = 0, i, a, b, arg, idx
    cdef int p
    cdef float rn2 = rn * rn, sf, correct, best, st
    cdef double slope, vr, vp, w
    cdef double sum_w = 0, sum_ws = 0, sum_wwvp = 0
    cdef Py_ssize_t count = 0
    cdef bint zero_rn = rn == 0

    out_slope[0] = NAN
    out_vr[0] = NAN
    out_vp[0] = NAN
    _flag_nonfinite(r, g, n, plane)
    if isnan(rn):
        return  # no noise model: no fit, no jump statistics (stcal gives NaN as well)

    # Initial segments: runs of resultants with no flag set.
    a = -1
    for i in range(n):
        if g[i * plane] == 0:
            if a < 0:
                a = i
        elif a >= 0:
            stack[2 * top] = <int32_t>a
            stack[2 * top + 1] = <int32_t>(i - 1)
            top += 1
            a = -1
    if a >= 0:
        stack[2 * top] = <int32_t>a
        stack[2 * top + 1] = <int32_t>(n - 1)
        top += 1

    while top > 0:
        top -= 1
        a = stack[2 * top]
        b = stack[2 * top + 1]
        if b <= a:
            continue  # a single resultant: no fit, no statistic, no weight
        idx = a * n + b
        p = p_index(r[a * plane], r[b * plane], rn)
        slope = segment_slope(tb.k + tb.k_offset[idx] + p * (b - a + 1), r + a * plane,
                              plane, b - a + 1)
        if tb.use_jump:
            sf = <float>slope
            correct = -sf / (tb.t_bar[b] - tb.t_bar[a])
            # The last pair has only its single difference; it seeds the maximum.
            arg = b - 1
            best = _jstat(tb, r, b - 1, 1, rn2, sf, correct)
            for i in range(a, b - 1):
                st = nan_max(_jstat(tb, r, i, 1, rn2, sf, correct),
                             _jstat(tb, r, i, 2, rn2, sf, correct))
                if st > best:
                    best = st
                    arg = i
            if best > threshold(sf, tb.intercept, tb.constant):
                g[arg * plane] |= DQ_JUMP_DET
                g[(arg + 1) * plane] |= DQ_JUMP_DET
                if arg > a:
                    stack[2 * top] = <int32_t>a
                    stack[2 * top + 1] = <int32_t>(arg - 1)
                    top += 1
                if arg + 1 < b:
                    stack[2 * top] = <int32_t>(arg + 2)
                    stack[2 * top + 1] = <int32_t>b
                    top += 1
                continue
        vr = tb.var_read[idx * N_P + p]
        vp = tb.var_poisson[idx * N_P + p]
        if isnan(vr) or isnan(slope):
            continue  # degenerate segment (D = 0) or NaN data
        # Segments combine with weights 1 / V_R (000:1238-1250).  With zero read
        # noise all V_R vanish and the weights are equal.
        w = 1.0 if zero_rn else 1.0 / (rn2 * vr)
        sum_w += w
        sum_ws += w * slope
        sum_wwvp += w * w * vp
        count += 1

    if count == 0:
        return  # no usable segment: NaN slope and variances
    slope = sum_ws / sum_w
    out_slope[0] = <float>slope
    out_vr[0] = 0.0 if zero_rn else <float>(1.0 / sum_w)
    out_vp[0] = <float>(sum_wwvp / (sum_w * sum_w) * (slope if slope > 0 else 0.0))


cdef void _row_statistic(const Tables* tb, const float* r0, const float* rn, Py_ssize_t nx,
                         const double* slope, float* best, float* sf, float* corr,
                         float* rn2) noexcept nogil:
    """Maximum jump statistic of every pixel's full ramp, vectorised over the row.

    Same arithmetic and order as :func:`_queue_pixel` (and stcal): the last pair's
    single difference seeds the maximum, then ``max(s'_i, s''_i)`` for ``i = 0..n-3``,
    a NaN never replacing the running maximum.
    """
    cdef Py_ssize_t n = tb.n, plane = tb.plane, m = tb.n - 1, x, i
    cdef const float* ra
    cdef const float* rb
    cdef const float* rc
    cdef const float* jt = tb.jump
    cdef float span = tb.t_bar[n - 1] - tb.t_bar[0]
    cdef float dt1, dt1sq, rr1, vs1, dt2, dt2sq, rr2, vs2, s1, s2, st, b
    for x in range(nx):
        sf[x] = <float>slope[x]
        corr[x] = -sf[x] / span
        rn2[x] = rn[x] * rn[x]
    i = n - 2
    ra = r0 + i * plane
    rb = ra + plane
    dt1 = jt[J_DT1 * m + i]
    dt1sq = jt[J_DT1SQ * m + i]
    rr1 = jt[J_RR1 * m + i]
    vs1 = jt[J_VS1 * m + i]
    for x in range(nx):
        best[x] = statistic(ra[x], rb[x], dt1, dt1sq, rr1, vs1, rn2[x], sf[x], corr[x])
    for i in range(n - 2):
        ra = r0 + i * plane
        rb = ra + plane
        rc = rb + plane
        dt1 = jt[J_DT1 * m + i]
        dt1sq = jt[J_DT1SQ * m + i]
        rr1 = jt[J_RR1 * m + i]
        vs1 = jt[J_VS1 * m + i]
        dt2 = jt[J_DT2 * m + i]
        dt2sq = jt[J_DT2SQ * m + i]
        rr2 = jt[J_RR2 * m + i]
        vs2 = jt[J_VS2 * m + i]
        for x in range(nx):
            s1 = statistic(ra[x], rb[x], dt1, dt1sq, rr1, vs1, rn2[x], sf[x], corr[x])
            s2 = statistic(ra[x], rc[x], dt2, dt2sq, rr2, vs2, rn2[x], sf[x], corr[x])
            # fmaxf(s1, s2) then "replace if greater", written as selects to vectorise
            st = s1 if ((s2 != s2) | (s1 > s2)) else s2
            b = best[x]
            best[x] = st if st > b else b


cdef void _fit_row(const Tables* tb, const float* r0, uint8_t* g0, const float* rn,
                   Py_ssize_t nx, float* out_slope, float* out_vr, float* out_vp,
                   uint8_t* flagged, int32_t* pidx, double* slope, float* best,
                   float* sf_buf, float* corr_buf, float* rn2_buf,
                   int32_t* stack) noexcept nogil:
    """Fit one row of ``nx`` pixels; ``r0``/``g0`` point at resultant 0 of the row."""
    cdef Py_ssize_t n = tb.n, plane = tb.plane, x, i, full
    cdef const float* r
    cdef const uint8_t* g
    cdef double kp[N_P]
    cdef int p

    if n < 2:
        for x in range(nx):
            _flag_nonfinite(r0 + x, g0 + x, n, plane)
            out_slope[x] = NAN
            out_vr[x] = NAN
            out_vp[x] = NAN
        return

    # Which pixels have any flag on any resultant (they take the queue path).
    for x in range(nx):
        flagged[x] = g0[x]
    for i in range(1, n):
        g = g0 + i * plane
        for x in range(nx):
            flagged[x] |= g[x]

    # Full-ramp fit of every pixel: P bin, then slope = sum_i K_i(P) R_i.
    full = n - 1  # segment (0, n - 1) has index 0 * n + (n - 1)
    r = r0 + (n - 1) * plane
    for x in range(nx):
        pidx[x] = p_index(r0[x], r[x], rn[x])
        slope[x] = 0
    for i in range(n):
        for p in range(N_P):
            kp[p] = tb.k[tb.k_offset[full] + p * n + i]
        r = r0 + i * plane
        for x in range(nx):
            slope[x] += kp[pidx[x]] * r[x]

    if tb.use_jump:
        _row_statistic(tb, r0, rn, nx, slope, best, sf_buf, corr_buf, rn2_buf)

    for x in range(nx):
        if not flagged[x] and tb.use_jump and best[x] > tb.lowest_threshold:
            if best[x] > threshold(<float>slope[x], tb.intercept, tb.constant):
                flagged[x] = 1
        # a non-finite slope means a NaN or infinite resultant: the queue flags and
        # splits around it
        if flagged[x] or isnan(rn[x]) or not isfinite(slope[x]):
            _queue_pixel(tb, r0 + x, g0 + x, rn[x], stack,
                         out_slope + x, out_vr + x, out_vp + x)
            continue
        p = pidx[x]
        if isnan(tb.var_read[full * N_P + p]):
            out_slope[x] = NAN
            out_vr[x] = NAN
            out_vp[x] = NAN
            continue
        out_slope[x] = <float>slope[x]
        out_vr[x] = <float>(<double>(rn[x] * rn[x]) * tb.var_read[full * N_P + p])
        out_vp[x] = <float>(tb.var_poisson[full * N_P + p] *
                            (slope[x] if slope[x] > 0 else 0.0))


cdef struct Scratch:
    # per-thread row buffers of `_fit_row`
    uint8_t* flagged
    int32_t* pidx
    double* slope
    float* best
    float* work       # 3 * nx: statistic scratch
    int32_t* stack    # 2 * (n + 2): the segment queue


cdef Scratch _scratch_alloc(Py_ssize_t nx, Py_ssize_t n) noexcept nogil:
    """One thread's row buffers (returned by value: assigned inside a parallel block,
    the struct is private to the thread); check them with `_scratch_ok`."""
    cdef Scratch s
    s.flagged = <uint8_t*>malloc(nx * sizeof(uint8_t))
    s.pidx = <int32_t*>malloc(nx * sizeof(int32_t))
    s.slope = <double*>malloc(nx * sizeof(double))
    s.best = <float*>malloc(nx * sizeof(float))
    s.work = <float*>malloc(3 * nx * sizeof(float))
    s.stack = <int32_t*>malloc(2 * (n + 2) * sizeof(int32_t))
    return s


cdef bint _scratch_ok(const Scratch* s) noexcept nogil:
    return not (s.flagged == NULL or s.pidx == NULL or s.slope == NULL or s.best == NULL
                or s.work == NULL or s.stack == NULL)


cdef void _scratch_free(Scratch* s) noexcept nogil:
    free(s.flagged)
    free(s.pidx)
    free(s.slope)
    free(s.best)
    free(s.work)
    free(s.stack)


cdef Tables _tables(Py_ssize_t n, Py_ssize_t plane, const double[::1] k,
                    const int64_t[::1] k_offset, const double[::1] var_read,
                    const double[::1] var_poisson, const float[:, ::1] jump,
                    const float[::1] t_bar, bint use_jump, float intercept,
                    float constant):
    """The fit's tables for resultants ``plane`` values apart."""
    cdef Tables tb
    tb.n = n
    tb.plane = plane
    tb.k = &k[0]
    tb.k_offset = &k_offset[0]
    tb.var_read = &var_read[0]
    tb.var_poisson = &var_poisson[0]
    tb.jump = &jump[0, 0] if jump.shape[1] > 0 else NULL
    tb.t_bar = &t_bar[0]
    tb.use_jump = use_jump and n >= 2
    tb.intercept = intercept
    tb.constant = constant
    # min over slopes of the threshold: a cheap pre-test
    tb.lowest_threshold = intercept if intercept < intercept - 4 * constant else (
        intercept - 4 * constant)
    return tb


def fit(const float[:, :, ::1] resultants, uint8_t[:, :, ::1] groupdq,
        const float[:, ::1] read_noise,
        const double[::1] k, const int64_t[::1] k_offset,
        const double[::1] var_read, const double[::1] var_poisson,
        const float[:, ::1] jump, const float[::1] t_bar,
        float[:, ::1] out_slope, float[:, ::1] out_vr, float[:, ::1] out_vp,
        bint use_jump, float intercept, float constant, int n_threads):
    """Fit every pixel; outputs and ``groupdq`` (JUMP_DET) are written in place."""
    cdef Py_ssize_t n = resultants.shape[0], ny = resultants.shape[1]
    cdef Py_ssize_t nx = resultants.shape[2], y
    cdef Tables tb = _tables(n, ny * nx, k, k_offset, var_read, var_poisson, jump, t_bar,
                             use_jump, intercept, constant)
    cdef Scratch sc

    with nogil, parallel(num_threads=n_threads):
        sc = _scratch_alloc(nx, n)
        if not _scratch_ok(&sc):
            with gil:
                raise MemoryError("romancore.fit_ramps: out of memory for scratch rows")
        for y in prange(ny, schedule="dynamic", chunksize=4):
            _fit_row(&tb, &resultants[0, y, 0], &groupdq[0, y, 0], &read_noise[y, 0], nx,
                     &out_slope[y, 0], &out_vr[y, 0], &out_vp[y, 0],
                     sc.flagged, sc.pidx, sc.slope, sc.best, sc.work, sc.work + nx,
                     sc.work + 2 * nx, sc.stack)
        _scratch_free(&sc)


def fit_rates(const float[:, :, :] data, uint8_t[:, :, :] groupdq,
              const uint32_t[:, :] pixeldq, const float[:, :] gain,
              const float[:, :] read_noise,
              const double[::1] k, const int64_t[::1] k_offset,
              const double[::1] var_read, const double[::1] var_poisson,
              const float[:, ::1] jump, const float[::1] t_bar, const double[::1] weights,
              float[:, ::1] out_slope, uint32_t[:, ::1] out_dq, float[:, ::1] out_vp,
              float[:, ::1] out_vr, float[:, ::1] out_err, float[:, ::1] out_dumo,
              bint use_jump, float intercept, float constant, bint write_groupdq,
              int n_threads):
    """Fit DN ramps and write romancal's DN/s images, one row per thread at a time.

    Per row: the resultants and read noise times the gain (1 where the gain is bad)
    into a row buffer (float32, as ``data * gain``), the group DQ into another;
    `_fit_row` on them; the group DQ written back (``write_groupdq``); then
    `finish_pixel` on every pixel.  Bit-identical to `fit` on ``data * gain`` followed
    by ``_finish.finish``.
    """
    cdef Py_ssize_t n = data.shape[0], ny = data.shape[1], nx = data.shape[2], y, x, i
    cdef Py_ssize_t dstride = data.strides[0] // sizeof(float)
    # the row buffers hold one row of every resultant: resultants nx values apart
    cdef Tables tb = _tables(n, nx, k, k_offset, var_read, var_poisson, jump, t_bar,
                             use_jump, intercept, constant)
    cdef Scratch sc
    cdef float* rbuf
    cdef uint8_t* gbuf
    cdef float* rowf      # gain used, read noise in e-, slope, var_read, var_poisson
    cdef float g

    with nogil, parallel(num_threads=n_threads):
        rbuf = <float*>malloc(n * nx * sizeof(float))
        gbuf = <uint8_t*>malloc(n * nx * sizeof(uint8_t))
        rowf = <float*>malloc(5 * nx * sizeof(float))
        sc = _scratch_alloc(nx, n)
        if not _scratch_ok(&sc) or rbuf == NULL or gbuf == NULL or rowf == NULL:
            with gil:
                raise MemoryError("romancore.fit_rate_images: out of memory for scratch rows")
        for y in prange(ny, schedule="dynamic", chunksize=4):
            for x in range(nx):
                g = gain[y, x]
                if bad_gain(g):
                    g = 1.0
                rowf[x] = g
                rowf[nx + x] = read_noise[y, x] * g
            for i in range(n):
                for x in range(nx):
                    rbuf[i * nx + x] = data[i, y, x] * rowf[x]
                    gbuf[i * nx + x] = groupdq[i, y, x]
            _fit_row(&tb, rbuf, gbuf, rowf + nx, nx,
                     rowf + 2 * nx, rowf + 3 * nx, rowf + 4 * nx,
                     sc.flagged, sc.pidx, sc.slope, sc.best, sc.work, sc.work + nx,
                     sc.work + 2 * nx, sc.stack)
            if write_groupdq:
                for i in range(n):
                    for x in range(nx):
                        groupdq[i, y, x] = gbuf[i * nx + x]
            for x in range(nx):
                finish_pixel(rowf[2 * nx + x], rowf[3 * nx + x], rowf[4 * nx + x],
                             gain[y, x], gbuf + x, nx, pixeldq[y, x], &data[0, y, x],
                             dstride, &weights[0], n, &out_slope[y, x], &out_dq[y, x],
                             &out_vp[y, x], &out_vr[y, x], &out_err[y, x], &out_dumo[y, x])
        _scratch_free(&sc)
        free(rbuf)
        free(gbuf)
        free(rowf)
