# cython: language_level=3, cdivision=True
"""Compiled kernels of the REFPIX reference-pixel correction (private; see
:mod:`romancore.refpix`).

* ``mean_over_resultants``: each pixel's mean over its finite resultants, summed in
  float32 in resultant order (romancal 1.1 ``StandardView.remove_offset``: the
  least-squares intercept at the centred resultant index is the mean);
* ``subtract_channel_trends``: ``plane[y, x] -= t_y m_c + (m_c j_x + b_c)`` for the
  line ``(m_c, b_c)`` of channel ``c = x // 128`` in read-out time, except on samples
  equal to their offset ("no sample"; romancal ``remove_trends``: ``* frame_not_zero``);
  the line is evaluated in double precision and the difference stored as float32.

Rows are distributed over threads; every value is computed by one thread in a fixed
order, so results do not depend on the thread count.
"""
from cython.parallel cimport parallel, prange
from libc.math cimport isfinite

cdef enum:
    CHANNEL_WIDTH = 128


def mean_over_resultants(const float[:, :, ::1] cube, float[:, ::1] out, int n_threads):
    cdef Py_ssize_t n = cube.shape[0], ny = cube.shape[1], nx = cube.shape[2]
    cdef Py_ssize_t y, x, k
    cdef float total, v
    cdef int used
    with nogil, parallel(num_threads=n_threads):
        for y in prange(ny, schedule="static"):
            for x in range(nx):
                total = 0.0
                used = 0
                for k in range(n):
                    v = cube[k, y, x]
                    if isfinite(v):
                        total = total + v
                        used = used + 1
                # numpy: divided by the float32 count of finite values (at least 1)
                if used == 0:
                    used = 1
                out[y, x] = total / <float>used


def subtract_channel_trends(float[:, ::1] plane, const float[:, ::1] offset,
                            bint has_offset, const double[::1] col_slope,
                            const double[::1] col_const, const double[::1] row_time,
                            int n_threads):
    cdef Py_ssize_t ny = plane.shape[0], nx = plane.shape[1]
    cdef Py_ssize_t y, x
    cdef float v, skip
    cdef double trend
    with nogil, parallel(num_threads=n_threads):
        for y in prange(ny, schedule="static"):
            for x in range(nx):
                v = plane[y, x]
                skip = offset[y, x] if has_offset else 0.0
                if v != skip:
                    # (t_y m) + const, then the difference, in double (numpy's order)
                    trend = row_time[y] * col_slope[x]
                    trend = trend + col_const[x]
                    plane[y, x] = <float>(<double>v - trend)


cdef inline void _subtract_channel_row(float* d, const float* c, bint reverse) noexcept nogil:
    """d[x] -= c[p(x)] over one channel's 128 columns, p(x) = x or 127 - x."""
    cdef Py_ssize_t x
    if reverse:
        for x in range(CHANNEL_WIDTH):
            d[x] = d[x] - c[CHANNEL_WIDTH - 1 - x]
    else:
        for x in range(CHANNEL_WIDTH):
            d[x] = d[x] - c[x]


def subtract_channel_correction(float[:, :, ::1] data, const float[:, :, ::1] corr,
                                Py_ssize_t row_samples, Py_ssize_t first_channel,
                                int n_threads):
    # data[k, y, x] -= corr[g, k, y * row_samples + p(x)] for the columns x of channel
    # first_channel + g (with first_channel -1: corr[0] for every channel), p(x) the read
    # position of column x: x mod 128 in even channels, 127 - x mod 128 in odd ones
    # (read right to left)
    cdef Py_ssize_t n = data.shape[0], ny = data.shape[1], nx = data.shape[2]
    cdef Py_ssize_t row, k, y, c, c0, c1, g
    cdef float* d
    if first_channel < 0:
        c0 = 0
        c1 = nx // CHANNEL_WIDTH
    else:
        c0 = first_channel
        c1 = first_channel + corr.shape[0]
    with nogil, parallel(num_threads=n_threads):
        for row in prange(n * ny, schedule="static"):
            k = row // ny
            y = row - k * ny
            d = &data[k, y, 0]
            for c in range(c0, c1):
                g = 0 if first_channel < 0 else c - c0
                _subtract_channel_row(d + c * CHANNEL_WIDTH, &corr[g, k, y * row_samples],
                                      c % 2 == 1)


ctypedef fused real_t:
    float
    double


def scan_rows(const real_t[:, ::1] rows, signed char[:, ::1] flags, int n_threads):
    # flags[i] = (every value finite, some value non-zero, row equal to row 0)
    cdef Py_ssize_t n = rows.shape[0], m = rows.shape[1]
    cdef Py_ssize_t i, k
    cdef real_t v
    cdef signed char finite, nonzero, same
    with nogil, parallel(num_threads=n_threads):
        for i in prange(n, schedule="static"):
            finite = 1
            nonzero = 0
            same = 1
            for k in range(m):
                v = rows[i, k]
                if not isfinite(v):
                    finite = 0
                if v != 0:
                    nonzero = 1
                if v != rows[0, k]:
                    same = 0
            flags[i, 0] = finite
            flags[i, 1] = nonzero
            flags[i, 2] = same
