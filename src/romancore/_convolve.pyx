# cython: language_level=3
"""Compiled masked convolution with a separable kernel (private; see
:mod:`romancore.convolve`).

The result is ``astropy.convolution.convolve(data, kernel, mask=bad,
boundary="fill", fill_value=0, normalize_kernel=True)`` for a rank-1 kernel
``K[a, b] = ky[a] * kx[b]``: the kernel-weighted sum of the good pixels divided by
the kernel weight of the good pixels, where pixels outside the image count as good
zeros.  Each output row is made from two 1-D passes through per-thread row buffers
(vertical over the ``len(ky)`` input rows it needs, then horizontal), so no
full-size temporary is allocated; rows are independent (OpenMP, static schedule)
and every sum runs in the same order whatever the thread count.
"""
from cython.parallel cimport parallel, prange
from libc.math cimport isfinite, NAN
from libc.stdint cimport uint8_t
from libc.stdlib cimport free, malloc


def convolve_separable(const double[:, ::1] data, const uint8_t[:, ::1] bad,
                       const double[::1] ky, const double[::1] kx,
                       double[:, ::1] out, int n_threads, double empty=NAN):
    """Write the normalized masked convolution of ``data`` into ``out``.

    ``ky``/``kx`` are the correlation weights (the kernel already flipped); ``bad``
    pixels and non-finite data are excluded from both sums; ``empty`` (NaN) where the
    good weight is ``<= 1e-12`` of the kernel sum.
    """
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1]
    cdef Py_ssize_t ly = ky.shape[0], lx = kx.shape[0]
    cdef Py_ssize_t hy = ly // 2, hx = lx // 2
    cdef Py_ssize_t y, x, a, b, yy
    cdef double ysum = 0.0, xsum = 0.0, floor_w, s, w, k, v
    cdef double* vnum
    cdef double* vw
    for a in range(ly):
        ysum += ky[a]
    for b in range(lx):
        xsum += kx[b]
    floor_w = 1e-12 * ysum * xsum
    with nogil, parallel(num_threads=n_threads):
        # padded row buffers: [hx zeros | nx values | hx zeros]
        vnum = <double*> malloc((nx + 2 * hx) * sizeof(double))
        vw = <double*> malloc((nx + 2 * hx) * sizeof(double))
        for y in prange(ny, schedule="static"):
            for x in range(nx + 2 * hx):
                vnum[x] = 0.0
                vw[x] = 0.0
            # outside the columns: zeros, each with the weight of a full column
            for x in range(hx):
                vw[x] = ysum
                vw[nx + hx + x] = ysum
            # vertical pass (input rows y - hy .. y + hy; outside rows are good zeros)
            for a in range(ly):
                yy = y + a - hy
                k = ky[a]
                if yy < 0 or yy >= ny:
                    for x in range(nx):
                        vw[hx + x] += k
                else:
                    for x in range(nx):
                        v = data[yy, x]
                        if bad[yy, x] == 0 and isfinite(v):
                            vnum[hx + x] += k * v
                            vw[hx + x] += k
            # horizontal pass
            for x in range(nx):
                s = 0.0
                w = 0.0
                for b in range(lx):
                    s = s + kx[b] * vnum[x + b]
                    w = w + kx[b] * vw[x + b]
                if w > floor_w:
                    out[y, x] = s / w
                else:
                    out[y, x] = empty
        free(vnum)
        free(vw)
