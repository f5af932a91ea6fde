# cython: language_level=3
"""Fused drizzle (square / point / turbo kernels) and linear blot (private; see
:mod:`romancore.drizzle`).

Geometry, scan limits and arithmetic follow drizzle 2.2's C library (``cdrizzlemap.c``:
the bounding polygon of the input clipped to the output and scanned row by row;
``cdrizzlebox.c``: the kernels and the exact pixel-polygon overlap; ``cdrizzleblot.c``:
the bilinear blot).  What is new here is the organisation: one pass over an input adds
the data, the weight, the context bit, the square roots of the variances (weighted
like the data), and the exposure-time coverage; the output is cut into fixed bands of
rows, each band is owned by one thread at a time, and inside a band the input pixels
are visited in row order.  Per band the sums are float64; the band is then merged into
the float32 outputs.  The result does not depend on the number of threads.
"""
from cython.parallel cimport parallel, prange, threadid
from libc.float cimport DBL_MIN
from libc.math cimport INFINITY, NAN, copysign, fabs, isfinite, isnan, round
from libc.math cimport sqrt, sqrtf
from libc.stdlib cimport free, malloc
from libc.string cimport memset

import numpy as np

cimport numpy as cnp

cdef double VERTEX_ATOL = 1.0e-12
cdef double APPROX_ZERO = 1.0e3 * DBL_MIN
cdef double MAX_INV_ERR = 0.03
cdef double BIG_DOUBLE = 1.7976931348623158e+308
cdef double SMALL_DOUBLE = 2.2250738585072014e-308

cdef enum:
    K_SQUARE = 0
    K_POINT = 1
    K_TURBO = 2
    MAX_VAR = 4


cdef struct Vertex:
    double x
    double y


cdef struct Polygon:
    int npv
    Vertex v[8]


cdef struct Edge:
    Vertex v1
    Vertex v2
    double m
    double b
    double c
    int p


cdef struct Scanner:
    Edge left_edges[8]
    Edge right_edges[8]
    int left
    int right
    int nleft
    int nright
    double min_y
    double max_y
    int xmin
    int xmax
    int ymin
    int ymax


cdef struct PixMap:
    const double* p
    Py_ssize_t nx
    Py_ssize_t ny
    int xmin
    int xmax
    int ymin
    int ymax


# ----------------------------------------------------------------------- pixel map
cdef inline const double* _pm(const PixMap* m, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    return m.p + 2 * (j * m.nx + i)


cdef inline long _nint(double x) noexcept nogil:
    """``round(x)`` (half away from zero) without the libm call (|x| < 2**52)."""
    cdef long r = <long>x
    cdef double d = x - <double>r
    if d >= 0.5:
        r += 1
    elif d <= -0.5:
        r -= 1
    return r


cdef int _interp_point(const PixMap* m, double xin, double yin,
                       double* xout, double* yout) noexcept nogil:
    """Bilinear interpolation of the pixel map (extrapolation beyond the edges)."""
    cdef int i0 = <int>xin, j0 = <int>yin
    cdef int nx2 = <int>m.nx - 2, ny2 = <int>m.ny - 2
    cdef double x, y, x1, y1
    cdef const double* a
    cdef const double* b
    cdef const double* c
    cdef const double* d
    if i0 < 0:
        i0 = 0
    elif i0 > nx2:
        i0 = nx2
    if j0 < 0:
        j0 = 0
    elif j0 > ny2:
        j0 = ny2
    x = xin - i0
    y = yin - j0
    x1 = 1.0 - x
    y1 = 1.0 - y
    a = _pm(m, i0, j0)
    b = _pm(m, i0 + 1, j0)
    c = _pm(m, i0, j0 + 1)
    d = _pm(m, i0 + 1, j0 + 1)
    xout[0] = a[0] * x1 * y1 + b[0] * x * y1 + c[0] * x1 * y + d[0] * x * y
    yout[0] = a[1] * x1 * y1 + b[1] * x * y1 + c[1] * x1 * y + d[1] * x * y
    if isnan(xout[0]) or isnan(yout[0]):
        return 1
    return 0


cdef int _interp_four(const PixMap* m, int ic, int jc, double h,
                      double* xo, double* yo) noexcept nogil:
    """Corners (clockwise: (-h,+h), (+h,+h), (+h,-h), (-h,-h)) of an interior pixel."""
    cdef double f[3][3]
    cdef double g[3][3]
    cdef int i, j
    cdef double fac
    cdef const double* q
    ic -= 1
    jc -= 1
    for j in range(3):
        for i in range(3):
            q = _pm(m, i + ic, j + jc)
            if i == 1 and j == 1:
                fac = (1 - h) * (1 - h)
            elif i == 1 or j == 1:
                fac = (1 - h) * h
            else:
                fac = h * h
            f[i][j] = q[0] * fac
            g[i][j] = q[1] * fac
    xo[0] = f[0][1] + f[1][1] + f[0][2] + f[1][2]
    yo[0] = g[0][1] + g[1][1] + g[0][2] + g[1][2]
    xo[1] = f[1][1] + f[2][1] + f[1][2] + f[2][2]
    yo[1] = g[1][1] + g[2][1] + g[1][2] + g[2][2]
    xo[2] = f[1][0] + f[2][0] + f[1][1] + f[2][1]
    yo[2] = g[1][0] + g[2][0] + g[1][1] + g[2][1]
    xo[3] = f[0][0] + f[1][0] + f[0][1] + f[1][1]
    yo[3] = g[0][0] + g[1][0] + g[0][1] + g[1][1]
    for i in range(4):
        if isnan(xo[i]) or isnan(yo[i]):
            return 1
    return 0


cdef int _map_point(const PixMap* m, double xin, double yin,
                    double* xout, double* yout) noexcept nogil:
    cdef int i = <int>xin, j = <int>yin
    cdef const double* q
    if <double>i == xin and <double>j == yin:
        if i >= m.xmin and i <= m.xmax and j >= m.ymin and j <= m.ymax:
            q = _pm(m, i, j)
            xout[0] = q[0]
            yout[0] = q[1]
            return 1 if (isnan(q[0]) or isnan(q[1])) else 0
        return 1
    return _interp_point(m, xin, yin, xout, yout)


cdef int _eval_inversion(const PixMap* m, double x, double y, double xref, double yref,
                         double* dist2) noexcept nogil:
    cdef double xo, yo, dx, dy
    if _interp_point(m, x, y, &xo, &yo):
        return 1
    dx = xo - xref
    dy = yo - yref
    dist2[0] = dx * dx + dy * dy
    return 0


cdef int _invert(const PixMap* m, double xout, double yout,
                 double* xin, double* yin) noexcept nogil:
    """Golden-section search of the input point that maps to (xout, yout)."""
    cdef double gr = 0.6180339887498948482
    cdef int niter = 0, nmax = 50
    cdef double xmin = (<double>m.xmin) - 0.5, xmax = (<double>m.xmax) + 0.5
    cdef double ymin = (<double>m.ymin) - 0.5, ymax = (<double>m.ymax) + 0.5
    cdef double dx = xmax - xmin, dy = ymax - ymin
    cdef double x1, x2, y1, y2, d11, d12, d21, d22
    while (dx > MAX_INV_ERR or dy > MAX_INV_ERR) and niter < nmax:
        niter += 1
        x1 = xmax - gr * dx
        x2 = xmin + gr * dx
        y1 = ymax - gr * dy
        y2 = ymin + gr * dy
        if _eval_inversion(m, x1, y1, xout, yout, &d11):
            return 1
        if _eval_inversion(m, x1, y2, xout, yout, &d12):
            return 1
        if _eval_inversion(m, x2, y1, xout, yout, &d21):
            return 1
        if _eval_inversion(m, x2, y2, xout, yout, &d22):
            return 1
        if d11 < d12 and d11 < d21 and d11 < d22:
            xmax = x2
            ymax = y2
        elif d12 < d11 and d12 < d21 and d12 < d22:
            xmax = x2
            ymin = y1
        elif d21 < d11 and d21 < d12 and d21 < d22:
            xmin = x1
            ymax = y2
        else:
            xmin = x1
            ymin = y1
        dx = xmax - xmin
        dy = ymax - ymin
    xin[0] = 0.5 * (xmin + xmax)
    yin[0] = 0.5 * (ymin + ymax)
    if niter == nmax:
        return 1
    return 0


# ----------------------------------------------------------------------- polygons
cdef inline int _mod(int a, int b) noexcept nogil:
    return (a + b) % b


cdef inline double _cross(Vertex a, Vertex b) noexcept nogil:
    return a.x * b.y - a.y * b.x


cdef inline int _strictly_in_hp(Vertex pt, Vertex v_, Vertex v) noexcept nogil:
    return (_cross(v, pt) - _cross(v_, pt) - _cross(v, v_)) > 0.0


cdef inline int _same_vertex(Vertex a, Vertex b) noexcept nogil:
    return fabs(a.x - b.x) < VERTEX_ATOL and fabs(a.y - b.y) < VERTEX_ATOL


cdef void _append(Polygon* p, Vertex v) noexcept nogil:
    if p.npv > 0 and _same_vertex(p.v[p.npv - 1], v):
        return
    if p.npv > 0 and _same_vertex(p.v[0], v):
        return
    if p.npv >= 8:
        return
    p.v[p.npv] = v
    p.npv += 1


cdef void _simplify(Polygon* p) noexcept nogil:
    """Drop vertices lying on the line through their two neighbours."""
    cdef Polygon hull
    cdef Vertex dp, dq
    cdef int k, iprev, icur, inext
    if p.npv < 3:
        return
    hull.npv = 0
    iprev = p.npv - 1
    icur = 0
    inext = 1
    for k in range(p.npv):
        dp.x = p.v[inext].x - p.v[iprev].x
        dp.y = p.v[inext].y - p.v[iprev].y
        dq.x = p.v[icur].x - p.v[iprev].x
        dq.y = p.v[icur].y - p.v[iprev].y
        if fabs(_cross(dp, dq)) > APPROX_ZERO and sqrt(dp.x * dp.x + dp.y * dp.y) > VERTEX_ATOL:
            hull.v[hull.npv] = p.v[icur]
            hull.npv += 1
        iprev = icur
        icur = inext
        inext = _mod(2 + k, p.npv)
    p.npv = hull.npv
    for k in range(p.npv):
        p.v[k] = hull.v[k]


cdef void _orient_ccw(Polygon* p) noexcept nogil:
    cdef int k, m
    cdef Vertex v1, v2, cm
    if p.npv < 3:
        return
    cm.x = 0.0
    cm.y = 0.0
    for k in range(p.npv):
        cm.x += p.v[k].x
        cm.y += p.v[k].y
    cm.x /= p.npv
    cm.y /= p.npv
    v1 = p.v[0]
    v2 = p.v[1]
    v1.x -= cm.x
    v1.y -= cm.y
    v2.x -= cm.x
    v2.y -= cm.y
    if _cross(v1, v2) >= 0.0:
        return
    for k in range(p.npv // 2):
        v1 = p.v[k]
        m = p.npv - 1 - k
        p.v[k] = p.v[m]
        p.v[m] = v1


cdef int _clip(Polygon* p, Polygon* wnd, Polygon* cp) noexcept nogil:
    """Sutherland-Hodgman clip of ``p`` by the convex window ``wnd``."""
    cdef Polygon p1, p2
    cdef Polygon* pin
    cdef Polygon* pout
    cdef Polygon* tmp
    cdef int _k, _j, in1, in2, iw, iw_, ip, ip_
    cdef Vertex dp, dw, vi
    cdef double d, app_, aww_
    if p.npv < 3 or wnd.npv < 3:
        return 1
    _orient_ccw(p)
    _orient_ccw(wnd)
    p1 = p[0]
    pin = &p2
    pout = &p1
    iw_ = wnd.npv - 1
    iw = 0
    for _k in range(wnd.npv):
        dw.x = wnd.v[iw].x - wnd.v[iw_].x
        dw.y = wnd.v[iw].y - wnd.v[iw_].y
        tmp = pin
        pin = pout
        pout = tmp
        pout.npv = 0
        ip_ = pin.npv - 1
        ip = 0
        for _j in range(pin.npv):
            dp.x = pin.v[ip].x - pin.v[ip_].x
            dp.y = pin.v[ip].y - pin.v[ip_].y
            in1 = _strictly_in_hp(wnd.v[iw_], wnd.v[iw], pin.v[ip_])
            in2 = _strictly_in_hp(wnd.v[iw_], wnd.v[iw], pin.v[ip])
            if in2 != in1:
                d = _cross(dp, dw)
                app_ = _cross(pin.v[ip], pin.v[ip_])
                aww_ = _cross(wnd.v[iw], wnd.v[iw_])
                vi.x = (app_ * dw.x - aww_ * dp.x) / d
                vi.y = (app_ * dw.y - aww_ * dp.y) / d
                if isfinite(vi.x) and isfinite(vi.y):
                    _append(pout, vi)
                if in2:
                    _append(pout, pin.v[ip])
            elif in1:
                _append(pout, pin.v[ip])
            ip_ = ip
            ip = ip + 1
        iw_ = iw
        iw = iw + 1
    _orient_ccw(pout)
    _simplify(pout)
    cp[0] = pout[0]
    return 0


cdef void _init_edge(Edge* e, Vertex v1, Vertex v2, int position) noexcept nogil:
    e.v1 = v1
    e.v2 = v2
    e.p = position
    e.m = (v2.x - v1.x) / (v2.y - v1.y)
    e.b = (v1.x * v2.y - v1.y * v2.x) / (v2.y - v1.y)
    e.c = e.b - copysign(0.5 + 0.5 * fabs(e.m), <double>position)


cdef int _init_scanner(Polygon* p, const PixMap* m, Scanner* s) noexcept nogil:
    cdef int k, i1, i2, min_right, min_left, max_right, max_left
    cdef double min_y, max_y
    s.left = -1
    s.right = -1
    s.nleft = 0
    s.nright = 0
    if p.npv < 3:
        return 1
    min_y = p.v[0].y
    min_left = 0
    for k in range(1, p.npv):
        if p.v[k].y < min_y:
            min_left = k
            min_y = p.v[k].y
    i1 = _mod(min_left - 1, p.npv)
    i2 = _mod(min_left + 1, p.npv)
    min_right = i1 if p.v[i1].y < p.v[i2].y else i2
    if p.v[min_right].y <= min_y * (1.0 + copysign(VERTEX_ATOL, min_y)):
        if p.v[min_left].x > p.v[min_right].x:
            k = min_left
            min_left = min_right
            min_right = k
    else:
        min_right = min_left
    max_y = p.v[0].y
    max_right = 0
    for k in range(1, p.npv):
        if p.v[k].y > max_y:
            max_right = k
            max_y = p.v[k].y
    i1 = _mod(max_right - 1, p.npv)
    i2 = _mod(max_right + 1, p.npv)
    max_left = i1 if p.v[i1].y > p.v[i2].y else i2
    if p.v[max_left].y >= max_y * (1.0 - copysign(VERTEX_ATOL, max_y)):
        if p.v[max_left].x > p.v[max_right].x:
            k = max_left
            max_left = max_right
            max_right = k
    else:
        max_left = max_right
    if max_left > min_left:
        min_left += p.npv
    s.nleft = min_left - max_left
    for k in range(s.nleft):
        i1 = _mod(min_left - k, p.npv)
        i2 = _mod(i1 - 1, p.npv)
        _init_edge(&s.left_edges[k], p.v[i1], p.v[i2], -1)
    if max_right < min_right:
        max_right += p.npv
    s.nright = max_right - min_right
    for k in range(s.nright):
        i1 = _mod(min_right + k, p.npv)
        i2 = _mod(i1 + 1, p.npv)
        _init_edge(&s.right_edges[k], p.v[i1], p.v[i2], 1)
    s.left = 0
    s.right = 0
    s.min_y = min_y
    s.max_y = max_y
    s.xmin = m.xmin
    s.xmax = m.xmax
    s.ymin = m.ymin
    s.ymax = m.ymax
    return 0


cdef int _scanline(Scanner* s, int y, int* x1, int* x2) noexcept nogil:
    """x-limits of row ``y`` (0 ok, 1 scan ended, 2 row outside, 3 empty row)."""
    cdef double pyb, pyt, xlb, xlt, xrb, xrt, edge_ymax, xmin, xmax
    cdef Edge* el
    cdef Edge* er
    if s.ymax >= s.ymin and (y < 0 or y > s.ymax):
        return 2
    pyb = <double>y - 0.5
    pyt = <double>y + 0.5
    if pyt <= s.min_y or pyb >= s.max_y + 1:
        return 2
    if s.left < 0 or s.right < 0:
        return 1
    while pyb > s.left_edges[s.left].v2.y:
        if s.left == s.nleft - 1:
            s.left = -1
            s.right = -1
            return 1
        s.left += 1
    while pyb > s.right_edges[s.right].v2.y:
        if s.right == s.nright - 1:
            s.left = -1
            s.right = -1
            return 1
        s.right += 1
    el = &s.left_edges[s.left]
    er = &s.right_edges[s.right]
    xlb = el.m * y + el.c - MAX_INV_ERR
    xrb = er.m * y + er.c + MAX_INV_ERR
    edge_ymax = el.v2.y + 0.5 + MAX_INV_ERR
    while pyt > edge_ymax:
        if s.left == s.nleft - 1:
            s.left = -1
            s.right = -1
            return 1
        s.left += 1
        edge_ymax = s.left_edges[s.left].v2.y + 0.5 + MAX_INV_ERR
    edge_ymax = er.v2.y + 0.5 + MAX_INV_ERR
    while pyt > edge_ymax:
        if s.right == s.nright - 1:
            s.left = -1
            s.right = -1
            return 1
        s.right += 1
        edge_ymax = s.right_edges[s.right].v2.y + 0.5 + MAX_INV_ERR
    el = &s.left_edges[s.left]
    er = &s.right_edges[s.right]
    xlt = el.m * y + el.c - MAX_INV_ERR
    xrt = er.m * y + er.c + MAX_INV_ERR
    xmin = s.xmin
    xmax = s.xmax
    if s.xmax >= s.xmin:
        if xlb < xmin:
            xlb = xmin
        if xlt < xmin:
            xlt = xmin
        if xrb > xmax:
            xrb = xmax
        if xrt > xmax:
            xrt = xmax
    if xlt >= xrt:
        x1[0] = <int>round(xlb)
        x2[0] = <int>round(xrb)
        if xlb >= xrb:
            return 3
    elif xlb >= xrb:
        x1[0] = <int>round(xlt)
        x2[0] = <int>round(xrt)
    else:
        x1[0] = <int>round(xlb if xlb > xlt else xlt)
        x2[0] = <int>round(xrb if xrb < xrt else xrt)
    return 0


cdef int _image_scanner(const PixMap* m, Py_ssize_t out_nx, Py_ssize_t out_ny, Scanner* s,
                        int* ymin, int* ymax) noexcept nogil:
    """Input bounding box -> output, clipped to the output, back to the input; scanner."""
    cdef Polygon p, q, pq, inpq
    cdef int k, n
    cdef double xi, yi
    inpq.npv = 4
    inpq.v[0].x = m.xmin - 0.5
    inpq.v[0].y = m.ymin - 0.5
    inpq.v[1].x = m.xmax + 0.5
    inpq.v[1].y = inpq.v[0].y
    inpq.v[2].x = inpq.v[1].x
    inpq.v[2].y = m.ymax + 0.5
    inpq.v[3].x = inpq.v[0].x
    inpq.v[3].y = inpq.v[2].y
    for k in range(inpq.npv):
        if _map_point(m, inpq.v[k].x, inpq.v[k].y, &p.v[k].x, &p.v[k].y):
            break
    else:
        p.npv = inpq.npv
        q.npv = 4
        q.v[0].x = -0.5
        q.v[0].y = -0.5
        q.v[1].x = <double>out_nx - 0.5
        q.v[1].y = -0.5
        q.v[2].x = <double>out_nx - 0.5
        q.v[2].y = <double>out_ny - 0.5
        q.v[3].x = -0.5
        q.v[3].y = <double>out_ny - 0.5
        if not _clip(&p, &q, &pq):
            for k in range(pq.npv):
                if _invert(m, pq.v[k].x, pq.v[k].y, &xi, &yi):
                    break
                inpq.v[k].x = xi
                inpq.v[k].y = yi
            else:
                inpq.npv = pq.npv
                _orient_ccw(&inpq)
    n = _init_scanner(&inpq, m, s)
    if n:
        return n
    ymin[0] = max(0, <int>(s.min_y + 0.5 + 2.0 * MAX_INV_ERR))
    ymax[0] = min(s.ymax, <int>(s.max_y + 2.0 * MAX_INV_ERR))
    return 0


def row_extents(const double[:, :, ::1] pixmap, int xmin, int xmax, double[:, ::1] out,
                int n_threads):
    """Per row: lowest y, highest y, lowest x, highest x of the mapped pixels of columns
    ``xmin..xmax`` (a pixel with a NaN coordinate skipped); ``+inf, -inf, +inf, -inf``
    for a row without one."""
    cdef Py_ssize_t ny = pixmap.shape[0], j
    cdef int i
    cdef double x, y, ymn, ymx, xmn, xmx
    for j in prange(ny, nogil=True, schedule="static", num_threads=n_threads):
        ymn = INFINITY
        ymx = -INFINITY
        xmn = INFINITY
        xmx = -INFINITY
        for i in range(xmin, xmax + 1):
            x = pixmap[j, i, 0]
            y = pixmap[j, i, 1]
            if isnan(x) or isnan(y):
                continue
            if y < ymn:
                ymn = y
            if y > ymx:
                ymx = y
            if x < xmn:
                xmn = x
            if x > xmx:
                xmx = x
        out[j, 0] = ymn
        out[j, 1] = ymx
        out[j, 2] = xmn
        out[j, 3] = xmx


def scan_limits(const double[:, :, ::1] pixmap, int xmin, int xmax, int ymin, int ymax,
                Py_ssize_t out_ny, Py_ssize_t out_nx):
    """Rows and x-limits of the input pixels drizzle visits.

    ``(xmin, xmax, ymin, ymax)`` is the (already shrunk) input box.  Returns
    ``(x1, x2)`` int32 arrays over input rows; a row is skipped where ``x1 > x2``.
    """
    cdef PixMap m
    cdef Scanner s
    cdef int jlo = 0, jhi = -1, j, n, a = 0, b = 0
    cdef Py_ssize_t ny = pixmap.shape[0]
    x1 = np.ones(ny, dtype=np.int32)
    x2 = np.zeros(ny, dtype=np.int32)
    cdef int[::1] v1 = x1
    cdef int[::1] v2 = x2
    m.p = &pixmap[0, 0, 0]
    m.nx = pixmap.shape[1]
    m.ny = pixmap.shape[0]
    m.xmin = xmin
    m.xmax = xmax
    m.ymin = ymin
    m.ymax = ymax
    with nogil:
        if _image_scanner(&m, out_nx, out_ny, &s, &jlo, &jhi) == 0:
            for j in range(jlo, jhi + 1):
                n = _scanline(&s, j, &a, &b)
                if n == 1:
                    break
                if n == 0:
                    v1[j] = a
                    v2[j] = b
    return x1, x2


def shrink_box(const double[:, :, ::1] pixmap, int xmin, int xmax, int ymin, int ymax):
    """drizzle's ``shrink_image_section``: the box of finite pixel-map values.

    Returns ``(xmin, xmax, ymin, ymax, ok)``; ``ok`` is False with fewer than two
    valid columns or rows.
    """
    cdef int i, j, imin = xmax, jmin = ymax, imax, jmax
    cdef const double* q
    for j in range(ymin, ymax + 1):
        for i in range(xmin, xmax + 1):
            q = &pixmap[j, i, 0]
            if not (isnan(q[0]) or isnan(q[1])):
                if i < imin:
                    imin = i
                if j < jmin:
                    jmin = j
                break
    imax = imin
    jmax = jmin
    for j in range(ymax, ymin - 1, -1):
        for i in range(xmax, xmin - 1, -1):
            q = &pixmap[j, i, 0]
            if not (isnan(q[0]) or isnan(q[1])):
                if i > imax:
                    imax = i
                if j > jmax:
                    jmax = j
                break
    return imin, imax, jmin, jmax, not (imin >= imax or jmin >= jmax)


# ----------------------------------------------------------------------- overlaps
cdef inline double _sgarea_tail(double x1, double y1, double x2, double y2, double dx,
                                double dy, double sgn_dx, double xlo, double xhi, double ylo,
                                double yhi) noexcept nogil:
    """`_sgarea` once the segment is known to cross the bottom or the top of the square."""
    cdef double det, xtop
    det = x1 * y2 - y1 * x2
    if ylo < 0.0:
        ylo = 0.0
        xlo = det / dy
    if yhi < 0.0:
        yhi = 0.0
        xhi = det / dy
    if ylo <= 1.0:
        if yhi <= 1.0:
            return sgn_dx * 0.5 * (xhi - xlo) * (yhi + ylo)
        xtop = (dx + det) / dy
        return sgn_dx * (0.5 * (xtop - xlo) * (1.0 + ylo) + xhi - xtop)
    xtop = (dx + det) / dy
    return sgn_dx * (0.5 * (xhi - xtop) * (1.0 + yhi) + xtop - xlo)


cdef inline double _sgarea(double x1, double y1, double x2, double y2) noexcept nogil:
    """Signed area under the segment within the unit square at the origin."""
    cdef double xlo, xhi, ylo, yhi, dx, dy, sgn_dx, slope
    dx = x2 - x1
    dy = y2 - y1
    if dx == 0:
        return 0.0
    if dx < 0:
        sgn_dx = -1.0
        xlo = x2
        xhi = x1
    else:
        sgn_dx = 1.0
        xlo = x1
        xhi = x2
    if xlo >= 1.0 or xhi <= 0.0:
        return 0.0
    xlo = xlo if xlo > 0.0 else 0.0
    xhi = xhi if xhi < 1.0 else 1.0
    slope = dy / dx
    ylo = y1 + slope * (xlo - x1)
    yhi = y1 + slope * (xhi - x1)
    if ylo <= 0.0 and yhi <= 0.0:
        return 0.0
    if ylo >= 1.0 and yhi >= 1.0:
        return sgn_dx * (xhi - xlo)
    return _sgarea_tail(x1, y1, x2, y2, dx, dy, sgn_dx, xlo, xhi, ylo, yhi)


cdef inline double _boxer(double is_, double js, const double* x, const double* y) noexcept nogil:
    """Signed area of the quadrilateral (x, y) inside output pixel (is_, js)."""
    cdef double px[4]
    cdef double py[4]
    cdef double total = 0.0
    cdef int i
    is_ -= 0.5
    js -= 0.5
    for i in range(4):
        px[i] = x[i] - is_
        py[i] = y[i] - js
    for i in range(4):
        total += _sgarea(px[i], py[i], px[(i + 1) & 3], py[(i + 1) & 3])
    return total


cdef enum:
    MAX_GRID = 6

cdef bint _use_grid = True
_last_grid_count = 0


cdef int _boxer_grid(const double* x, const double* y, long lo_i, long hi_i, long lo_j,
                     long hi_j, double* ov) noexcept nogil:
    """`_boxer` of every output pixel of columns ``lo_i..hi_i``, rows ``lo_j..hi_j``.

    ``ov[(jj - lo_j) * ncol + ii - lo_i]`` receives exactly (bit for bit) what `_boxer`
    returns: when every shift ``x - (ii - 0.5)`` and ``y - (jj - 0.5)`` of a corner is
    exact (both positive and within a factor 2 of each other, Sterbenz), an edge's
    ``dx``, ``dy`` and slope do not depend on the pixel, its clipped x-range and the
    slope's products depend on the column only, and its end heights are the row's
    shift plus those products; only the pixels that the edge crosses need the rest
    of `_sgarea`.  Returns 1 (nothing computed) when the shifts might round or the
    block is larger than ``MAX_GRID`` a side.
    """
    cdef long nc = hi_i - lo_i + 1, nr = hi_j - lo_j + 1
    cdef double xmn, xmx, ymn, ymx, x1, x2, dx, dy, slope, s, t
    cdef double px1, px2, plo, phi, xlo, xhi, py1, ylo, yhi, total
    cdef int e, c, r
    cdef double sgn[4]
    cdef double edx[4]
    cdef double edy[4]
    cdef double cx1[4][MAX_GRID]
    cdef double cx2[4][MAX_GRID]
    cdef double cxlo[4][MAX_GRID]
    cdef double cxhi[4][MAX_GRID]
    cdef double alo[4][MAX_GRID]
    cdef double ahi[4][MAX_GRID]
    cdef double full[4][MAX_GRID]
    cdef unsigned char live[4][MAX_GRID]
    if nc < 1 or nr < 1 or nc > MAX_GRID or nr > MAX_GRID or lo_i < 1 or lo_j < 1:
        return 1
    xmn = _min4(x)
    xmx = _max4(x)
    ymn = _min4(y)
    ymx = _max4(y)
    if not (xmn >= 0.5 * (<double>hi_i - 0.5) and xmx <= 2.0 * (<double>lo_i - 0.5)
            and ymn >= 0.5 * (<double>hi_j - 0.5) and ymx <= 2.0 * (<double>lo_j - 0.5)):
        return 1
    for e in range(4):
        x1 = x[e]
        x2 = x[(e + 1) & 3]
        dx = x2 - x1
        dy = y[(e + 1) & 3] - y[e]
        edx[e] = dx
        edy[e] = dy
        if dx == 0:
            for c in range(nc):
                live[e][c] = 0
            continue
        sgn[e] = -1.0 if dx < 0 else 1.0
        slope = dy / dx
        for c in range(nc):
            s = <double>(lo_i + c) - 0.5
            px1 = x1 - s
            px2 = x2 - s
            if dx < 0:
                plo = px2
                phi = px1
            else:
                plo = px1
                phi = px2
            if plo >= 1.0 or phi <= 0.0:
                live[e][c] = 0
                continue
            live[e][c] = 1
            xlo = plo if plo > 0.0 else 0.0
            xhi = phi if phi < 1.0 else 1.0
            cx1[e][c] = px1
            cx2[e][c] = px2
            cxlo[e][c] = xlo
            cxhi[e][c] = xhi
            alo[e][c] = slope * (xlo - px1)
            ahi[e][c] = slope * (xhi - px1)
            full[e][c] = sgn[e] * (xhi - xlo)
    for r in range(nr):
        t = <double>(lo_j + r) - 0.5
        for c in range(nc):
            total = 0.0
            for e in range(4):
                if not live[e][c]:
                    continue
                py1 = y[e] - t
                ylo = py1 + alo[e][c]
                yhi = py1 + ahi[e][c]
                if ylo <= 0.0 and yhi <= 0.0:
                    continue
                if ylo >= 1.0 and yhi >= 1.0:
                    total += full[e][c]
                    continue
                total += _sgarea_tail(cx1[e][c], py1, cx2[e][c], y[(e + 1) & 3] - t, edx[e],
                                      edy[e], sgn[e], cxlo[e][c], cxhi[e][c], ylo, yhi)
            ov[r * nc + c] = total
    return 0


cdef inline double _over(long i, long j, double xmin, double xmax,
                         double ymin, double ymax) noexcept nogil:
    cdef double dx, dy, a, b
    a = xmax if xmax < (<double>i) + 0.5 else (<double>i) + 0.5
    b = xmin if xmin > (<double>i) - 0.5 else (<double>i) - 0.5
    dx = a - b
    a = ymax if ymax < (<double>j) + 0.5 else (<double>j) + 0.5
    b = ymin if ymin > (<double>j) - 0.5 else (<double>j) - 0.5
    dy = a - b
    if dx > 0.0 and dy > 0.0:
        return dx * dy
    return 0.0


cdef inline double _min4(const double* a) noexcept nogil:
    cdef double v = BIG_DOUBLE
    cdef int k
    for k in range(4):
        if a[k] < v:
            v = a[k]
    return v


cdef inline double _max4(const double* a) noexcept nogil:
    cdef double v = SMALL_DOUBLE
    cdef int k
    for k in range(4):
        if a[k] > v:
            v = a[k]
    return v


cdef int _square_corners(const PixMap* m, int i, int j, double dh,
                         double* xo, double* yo) noexcept nogil:
    cdef double xin[4]
    cdef double yin[4]
    cdef int k
    if i > 0 and i < m.nx - 2 and j > 0 and j < m.ny - 2:
        return _interp_four(m, i, j, dh, xo, yo)
    yin[0] = <double>j + dh
    yin[1] = yin[0]
    yin[2] = <double>j - dh
    yin[3] = yin[2]
    xin[0] = <double>i - dh
    xin[3] = xin[0]
    xin[1] = <double>i + dh
    xin[2] = xin[1]
    for k in range(4):
        if _interp_point(m, xin[k], yin[k], &xo[k], &yo[k]):
            return 1
    return 0


# ----------------------------------------------------------------------- the kernel
cdef struct Job:
    PixMap m
    int kernel
    double dh
    double pfo
    double dover_scale
    double pfo1
    double dover_scale1
    float iscale
    float wscale
    const float* data
    const float* weights
    const unsigned char* wmask
    float wvalue
    const unsigned char* good
    int nvar
    const float* var[4]
    double var_const[4]
    const int* x1
    const int* x2
    const double* row_ymin
    const double* row_ymax
    int jlo
    int jhi
    double reach
    # output (the grid's size; the arrays hold grid rows row0.. onwards)
    Py_ssize_t out_nx
    Py_ssize_t out_ny
    long row0
    long ox0
    long ox1
    float* out_data
    float* out_wht
    unsigned int* out_ctx
    unsigned int bit
    float* out_exptime
    float exptime_value
    float* var_sum[4]
    float* var_wsum[4]
    int rn_index
    int weight_mode
    float exptime_weight


cdef inline void _accumulate(const Job* jb, double* acc, unsigned char* flags, long width,
                             long band_cells, long cell, float dow, float d,
                             const float* roots) noexcept nogil:
    cdef int k
    if dow > 0.0:
        flags[cell] |= 1
    if dow == 0.0:
        return
    acc[cell] += dow
    acc[band_cells + cell] += <double>dow * d
    for k in range(jb.nvar):
        if jb.var[k] != NULL:
            acc[(2 + k) * band_cells + cell] += <double>dow * roots[k]


cdef int _top_right_corner(const PixMap* m, int ic, int jc, double* xo,
                           double* yo) noexcept nogil:
    """Corner 1 (+h,+h) of an interior pixel for h = 0.5, as `_interp_four`."""
    cdef const double* a = _pm(m, ic, jc)
    cdef const double* b = _pm(m, ic + 1, jc)
    cdef const double* c = _pm(m, ic, jc + 1)
    cdef const double* d = _pm(m, ic + 1, jc + 1)
    cdef double q = 0.25
    xo[1] = a[0] * q + b[0] * q + c[0] * q + d[0] * q
    yo[1] = a[1] * q + b[1] * q + c[1] * q + d[1] * q
    if isnan(xo[1]) or isnan(yo[1]):
        return 1
    return 0


cdef int _right_corners(const PixMap* m, int ic, int jc, double* xo, double* yo) noexcept nogil:
    """Corners 1 (+h,+h) and 2 (+h,-h) of an interior pixel for h = 0.5, as `_interp_four`."""
    cdef const double* a = _pm(m, ic, jc)
    cdef const double* b = _pm(m, ic + 1, jc)
    cdef const double* c = _pm(m, ic, jc + 1)
    cdef const double* d = _pm(m, ic + 1, jc + 1)
    cdef const double* e = _pm(m, ic, jc - 1)
    cdef const double* f = _pm(m, ic + 1, jc - 1)
    cdef double q = 0.25
    xo[1] = a[0] * q + b[0] * q + c[0] * q + d[0] * q
    yo[1] = a[1] * q + b[1] * q + c[1] * q + d[1] * q
    xo[2] = e[0] * q + f[0] * q + a[0] * q + b[0] * q
    yo[2] = e[1] * q + f[1] * q + a[1] * q + b[1] * q
    if isnan(xo[1]) or isnan(yo[1]) or isnan(xo[2]) or isnan(yo[2]):
        return 1
    return 0


cdef inline int _drizzle_quad(const Job* jb, const double* xo, const double* yo, double w,
                              long b0, long b1, long width, long band_cells, double* acc,
                              unsigned char* flags, float d, const float* roots, double* ov,
                              int coverage, long* nfast, int known) noexcept nogil:
    """Add the quadrilateral (xo, yo) with weight ``w`` per unit area to the band.

    ``coverage``: only the coverage plane (weights ``overlap x w``).  ``known``: ``ov``
    already holds `_boxer_grid`'s overlaps of this same quadrilateral (the previous
    call's, which returned 1).  Returns 1 when ``ov`` holds them after the call, else 0.
    """
    cdef long lo_i, hi_i, lo_j, hi_j, ii, jj, cell, n = 0
    cdef double dover
    cdef float dow
    cdef bint grid
    lo_j = max(max(_nint(_min4(yo)), 0), b0)
    hi_j = min(min(_nint(_max4(yo)), jb.out_ny - 1), b1)
    lo_i = max(_nint(_min4(xo)), 0)
    hi_i = min(_nint(_max4(xo)), jb.out_nx - 1)
    if lo_i > hi_i or lo_j > hi_j:
        return 0
    # the block's overlaps precomputed (`_boxer_grid`), or each from `_boxer`
    if known:
        grid = True
    else:
        grid = _use_grid and _boxer_grid(xo, yo, lo_i, hi_i, lo_j, hi_j, ov) == 0
        if grid:
            nfast[0] += 1
    for jj in range(lo_j, hi_j + 1):
        for ii in range(lo_i, hi_i + 1):
            if grid:
                dover = ov[n]
                n += 1
            else:
                dover = _boxer(<double>ii, <double>jj, xo, yo)
            if dover != 0.0:
                dow = <float>(dover * w)
                cell = (jj - b0) * width + (ii - jb.ox0)
                if coverage:
                    acc[(2 + jb.nvar) * band_cells + cell] += dow
                else:
                    _accumulate(jb, acc, flags, width, band_cells, cell, dow, d, roots)
    return 1 if grid else 0


cdef void _do_band(const Job* jb, long b0, long b1, double* acc, unsigned char* flags,
                   int* any_covered, long* nfast, double* nodes, int* stamp) noexcept nogil:
    """Drizzle every input pixel that reaches output rows [b0, b1]; merge the band."""
    cdef long width = jb.ox1 - jb.ox0 + 1
    cdef long rows = b1 - b0 + 1
    cdef long band_cells = width * rows
    cdef int nacc = 3 + jb.nvar if jb.good != NULL else 2 + jb.nvar
    cdef long cell, ii, jj, lo_i, hi_i, lo_j, hi_j
    cdef int i, j, k
    cdef double xo[4]
    cdef double yo[4]
    cdef double ox, oy, jaco, w, dover, xxi, xxa, yyi, yya
    cdef float d, dow, wt
    cdef float roots[4]
    cdef const double* q
    cdef Py_ssize_t pix, nx = jb.m.nx
    cdef double top = <double>b1 + 0.5 + jb.reach
    cdef double bottom = <double>b0 - 0.5 - jb.reach
    cdef double sw, mean, total
    cdef float w_in, W, r, rr, vw, c, S
    cdef float rvals[4]
    cdef Py_ssize_t o
    cdef Py_ssize_t ny = jb.m.ny
    cdef int prev_i, bad = 0, known = 0
    cdef double ov[MAX_GRID * MAX_GRID]
    # counted here and stored once: the bands' counters share cache lines, and a
    # store per pixel into them made the threads fight over those lines
    cdef long fast = 0
    cdef int covered = 0
    memset(acc, 0, nacc * band_cells * sizeof(double))
    memset(flags, 0, band_cells)
    for j in range(jb.jlo, jb.jhi + 1):
        if jb.x1[j] > jb.x2[j]:
            continue
        if not (jb.row_ymin[j] <= top and jb.row_ymax[j] >= bottom):
            continue
        prev_i = -2
        for i in range(jb.x1[j], jb.x2[j] + 1):
            pix = j * nx + i
            q = _pm(&jb.m, i, j)
            oy = q[1]
            if not (oy <= top and oy >= bottom):
                continue
            d = jb.data[pix] * jb.iscale
            if jb.weights != NULL:
                wt = jb.weights[pix] * jb.wscale
            elif jb.wmask != NULL:
                # one weight where the mask is set: np.where(mask, value, 0) * wscale
                wt = (jb.wvalue if jb.wmask[pix] else <float>0.0) * jb.wscale
            else:
                wt = 1.0
            for k in range(jb.nvar):
                if jb.var[k] != NULL:
                    roots[k] = sqrtf(jb.var[k][pix]) * jb.iscale
            if jb.kernel == K_SQUARE:
                if jb.dh == 0.5 and i > 0 and i < nx - 2 and j > 0 and j < ny - 2:
                    # pixfrac 1: a corner is the mean of the 4 map values around it,
                    # summed in the same order by both pixels that share it, so the
                    # left corners are the previous pixel's right ones, bit for bit
                    # (and the bottom-right one the top-right one of the pixel below,
                    # kept per column while this thread visited the row below)
                    if _use_grid and prev_i == i - 1:
                        xo[0] = xo[1]
                        yo[0] = yo[1]
                        xo[3] = xo[2]
                        yo[3] = yo[2]
                        if stamp[i] == j - 1:
                            xo[2] = nodes[2 * i]
                            yo[2] = nodes[2 * i + 1]
                            bad = _top_right_corner(&jb.m, i, j, xo, yo)
                        else:
                            bad = _right_corners(&jb.m, i, j, xo, yo)
                    else:
                        bad = _interp_four(&jb.m, i, j, 0.5, xo, yo)
                    if bad == 0:
                        prev_i = i
                        nodes[2 * i] = xo[1]
                        nodes[2 * i + 1] = yo[1]
                        stamp[i] = j
                    else:
                        prev_i = -2
                else:
                    bad = _square_corners(&jb.m, i, j, jb.dh, xo, yo)
                    prev_i = -2
                known = 0
                if bad == 0:
                    jaco = 0.5 * ((xo[1] - xo[3]) * (yo[0] - yo[2])
                                  - (xo[0] - xo[2]) * (yo[1] - yo[3]))
                    w = (<double>wt) / jaco
                    # a weightless pixel adds nothing (every dow is +-0)
                    if not (wt == 0.0 and jaco != 0.0 and isfinite(jaco)):
                        known = _drizzle_quad(jb, xo, yo, w, b0, b1, width, band_cells, acc,
                                              flags, d, roots, ov, 0, &fast, 0)
                if jb.good != NULL and jb.good[pix]:
                    if jb.dh != 0.5:
                        bad = _square_corners(&jb.m, i, j, 0.5, xo, yo)
                        prev_i = -2
                        known = 0
                    if bad == 0:
                        jaco = 0.5 * ((xo[1] - xo[3]) * (yo[0] - yo[2])
                                      - (xo[0] - xo[2]) * (yo[1] - yo[3]))
                        # pixfrac 1: the same quadrilateral, so the same overlaps
                        _drizzle_quad(jb, xo, yo, 1.0 / jaco, b0, b1, width, band_cells, acc,
                                      flags, d, roots, ov, 1, &fast, known)
            elif jb.kernel == K_POINT:
                ox = q[0]
                if isnan(ox) or isnan(oy):
                    continue
                ii = _nint(ox)
                jj = _nint(oy)
                if ii < 0 or ii >= jb.out_nx or jj < 0 or jj >= jb.out_ny:
                    continue
                if jj < b0 or jj > b1:
                    continue
                cell = (jj - b0) * width + (ii - jb.ox0)
                _accumulate(jb, acc, flags, width, band_cells, cell, wt, d, roots)
                if jb.good != NULL and jb.good[pix]:
                    acc[(2 + jb.nvar) * band_cells + cell] += 1.0
            else:  # turbo
                ox = q[0]
                if isnan(ox) or isnan(oy):
                    continue
                w = <double>wt
                xxi = ox - jb.pfo
                xxa = ox + jb.pfo
                yyi = oy - jb.pfo
                yya = oy + jb.pfo
                lo_i = max(_nint(xxi), 0)
                hi_i = min(_nint(xxa), jb.out_nx - 1)
                lo_j = max(max(_nint(yyi), 0), b0)
                hi_j = min(min(_nint(yya), jb.out_ny - 1), b1)
                for jj in range(lo_j, hi_j + 1):
                    for ii in range(lo_i, hi_i + 1):
                        dover = _over(ii, jj, xxi, xxa, yyi, yya)
                        if dover > 0.0:
                            dover = dover * jb.dover_scale
                            dow = <float>(dover * w)
                            cell = (jj - b0) * width + (ii - jb.ox0)
                            _accumulate(jb, acc, flags, width, band_cells, cell, dow, d, roots)
                if jb.good != NULL and jb.good[pix]:
                    xxi = ox - jb.pfo1
                    xxa = ox + jb.pfo1
                    yyi = oy - jb.pfo1
                    yya = oy + jb.pfo1
                    lo_i = max(_nint(xxi), 0)
                    hi_i = min(_nint(xxa), jb.out_nx - 1)
                    lo_j = max(max(_nint(yyi), 0), b0)
                    hi_j = min(min(_nint(yya), jb.out_ny - 1), b1)
                    for jj in range(lo_j, hi_j + 1):
                        for ii in range(lo_i, hi_i + 1):
                            dover = _over(ii, jj, xxi, xxa, yyi, yya)
                            if dover > 0.0:
                                dow = <float>(dover * jb.dover_scale1)
                                cell = (jj - b0) * width + (ii - jb.ox0)
                                acc[(2 + jb.nvar) * band_cells + cell] += dow

    # merge the band into the outputs
    for jj in range(b0, b1 + 1):
        for ii in range(jb.ox0, jb.ox1 + 1):
            cell = (jj - b0) * width + (ii - jb.ox0)
            o = (jj - jb.row0) * jb.out_nx + ii
            if flags[cell] & 1 and jb.out_ctx != NULL:
                jb.out_ctx[o] |= jb.bit
            sw = acc[cell]
            if jb.good != NULL:
                if acc[(2 + jb.nvar) * band_cells + cell] > 0.0 and jb.out_exptime != NULL:
                    jb.out_exptime[o] += jb.exptime_value
            elif sw != 0.0 and jb.out_exptime != NULL:
                jb.out_exptime[o] += jb.exptime_value
            if sw == 0.0:
                continue
            covered = 1
            # the weighted mean drizzle keeps: D = (D W + d w) / (W + w)
            w_in = <float>sw
            mean = acc[band_cells + cell] / sw
            W = jb.out_wht[o]
            total = W + w_in
            if <float>total != 0.0:
                if W == 0.0:
                    jb.out_data[o] = <float>mean
                else:
                    jb.out_data[o] = <float>((jb.out_data[o] * <double>W
                                              + <double>(<float>mean) * w_in) / <float>total)
            jb.out_wht[o] = <float>total
            if jb.nvar == 0:
                continue
            # variances: the weighted mean of sqrt(v), squared; S += r w^2, W += w
            for k in range(jb.nvar):
                if jb.var[k] != NULL:
                    r = <float>(acc[(2 + k) * band_cells + cell] / sw)
                    rvals[k] = r * r
                else:
                    rvals[k] = <float>jb.var_const[k]
            if jb.weight_mode == 0:
                if jb.rn_index >= 0:
                    rr = rvals[jb.rn_index]
                    vw = 1.0 / rr if (rr > 0 and isfinite(rr)) else 0.0
                else:
                    vw = 0.0
            else:
                vw = jb.exptime_weight
            for k in range(jb.nvar):
                r = rvals[k]
                if r >= 0 and isfinite(r) and vw > 0:
                    c = r * vw
                    c = c * vw
                    S = jb.var_sum[k][o]
                    jb.var_sum[k][o] = c if isnan(S) else S + c
                    jb.var_wsum[k][o] = jb.var_wsum[k][o] + vw
    nfast[0] = fast
    if covered:
        any_covered[0] = 1


cdef void _row_extent(const PixMap* m, int j, int x1, int x2, double* e) noexcept nogil:
    """Row ``j``'s output y range, x range and largest steps to the next pixel in x and
    in y (``e``: ymin, ymax, xmin, xmax, |dx| and |dy| along x, |dx| and |dy| along y);
    NaN map values are skipped."""
    cdef double ymn = BIG_DOUBLE, ymx = -BIG_DOUBLE, xmn = BIG_DOUBLE, xmx = -BIG_DOUBLE
    cdef double dxi = 0.0, dyi = 0.0, dxj = 0.0, dyj = 0.0, t
    cdef const double* q
    cdef const double* qn
    cdef int i
    for i in range(x1, x2 + 1):
        q = _pm(m, i, j)
        if isnan(q[0]) or isnan(q[1]):
            continue
        if q[1] < ymn:
            ymn = q[1]
        if q[1] > ymx:
            ymx = q[1]
        if q[0] < xmn:
            xmn = q[0]
        if q[0] > xmx:
            xmx = q[0]
        if i + 1 < m.nx:
            qn = _pm(m, i + 1, j)
            t = fabs(qn[0] - q[0])
            if t > dxi:
                dxi = t
            t = fabs(qn[1] - q[1])
            if t > dyi:
                dyi = t
        if j + 1 < m.ny:
            qn = _pm(m, i, j + 1)
            t = fabs(qn[0] - q[0])
            if t > dxj:
                dxj = t
            t = fabs(qn[1] - q[1])
            if t > dyj:
                dyj = t
    e[0] = ymn
    e[1] = ymx
    e[2] = xmn
    e[3] = xmx
    e[4] = dxi
    e[5] = dyi
    e[6] = dxj
    e[7] = dyj


cdef class Buffers:
    """Per-thread band buffers of `add_image` (sums, flags, a row of corners, stamps).

    Grown on demand, never shrunk; freed with the object.  Reused from call to call
    they are allocated and first touched once.
    """
    cdef int n
    cdef size_t acc_cap
    cdef size_t cell_cap
    cdef size_t col_cap
    cdef double** acc
    cdef unsigned char** flags
    cdef double** nodes
    cdef int** stamp

    def __cinit__(self):
        self.n = 0
        self.acc_cap = 0
        self.cell_cap = 0
        self.col_cap = 0
        self.acc = NULL
        self.flags = NULL
        self.nodes = NULL
        self.stamp = NULL

    def __dealloc__(self):
        self._free()

    cdef void _free(self) noexcept:
        cdef int t
        for t in range(self.n):
            free(self.acc[t])
            free(self.flags[t])
            free(self.nodes[t])
            free(self.stamp[t])
        free(self.acc)
        free(self.flags)
        free(self.nodes)
        free(self.stamp)
        self.acc = NULL
        self.flags = NULL
        self.nodes = NULL
        self.stamp = NULL
        self.n = 0
        self.acc_cap = 0
        self.cell_cap = 0
        self.col_cap = 0

    def reserve(self, int n_threads, size_t acc_values, size_t cells, size_t columns):
        """Make room for ``n_threads`` threads, each ``acc_values`` float64 sums,
        ``cells`` flags and ``columns`` input columns."""
        cdef int t, n
        if (n_threads <= self.n and acc_values <= self.acc_cap and cells <= self.cell_cap
                and columns <= self.col_cap):
            return
        n = max(n_threads, self.n)
        acc_values = max(acc_values, self.acc_cap)
        cells = max(cells, self.cell_cap)
        columns = max(columns, self.col_cap)
        self._free()
        self.acc = <double**>malloc(n * sizeof(double*))
        self.flags = <unsigned char**>malloc(n * sizeof(unsigned char*))
        self.nodes = <double**>malloc(n * sizeof(double*))
        self.stamp = <int**>malloc(n * sizeof(int*))
        if self.acc == NULL or self.flags == NULL or self.nodes == NULL or self.stamp == NULL:
            self._free()  # n is 0 here: frees the pointer arrays alone
            raise MemoryError("drizzle: cannot allocate the band buffers")
        for t in range(n):
            self.acc[t] = <double*>malloc(max(acc_values, 1) * sizeof(double))
            self.flags[t] = <unsigned char*>malloc(max(cells, 1))
            self.nodes[t] = <double*>malloc(max(2 * columns, 1) * sizeof(double))
            self.stamp[t] = <int*>malloc(max(columns, 1) * sizeof(int))
        self.n = n
        for t in range(n):
            if (self.acc[t] == NULL or self.flags[t] == NULL or self.nodes[t] == NULL
                    or self.stamp[t] == NULL):
                self._free()
                raise MemoryError("drizzle: cannot allocate the band buffers")
        self.acc_cap = acc_values
        self.cell_cap = cells
        self.col_cap = columns

    @property
    def nbytes(self):
        """Bytes reserved (all threads)."""
        return self.n * (self.acc_cap * sizeof(double) + self.cell_cap
                         + self.col_cap * (2 * sizeof(double) + sizeof(int)))


def add_image(const float[:, ::1] data, object weights, const double[:, :, ::1] pixmap,
              const int[::1] x1, const int[::1] x2, int jlo, int jhi,
              int kernel, double pixfrac, float pscale_ratio, float iscale, float wscale,
              float[:, ::1] out_data, float[:, ::1] out_wht, object out_ctx, unsigned int bit,
              object out_exptime, float exptime_value, object good,
              list variances, list var_const, list var_sum, list var_wsum,
              int rn_index, int weight_mode, float exptime_weight,
              int band_rows, int n_threads, long out_row0=0, long grid_ny=-1,
              Buffers buffers=None, float weight_value=1.0):
    """Add one input; see :func:`romancore.drizzle.add_image`.  Returns True if any
    output pixel received weight.

    The output arrays hold rows ``out_row0 ..`` of a grid of ``grid_ny`` rows (-1:
    the arrays' rows); only those rows are drizzled.  ``buffers``: the per-thread
    band buffers, kept between calls (None: allocated for this call).  ``weights``
    of uint8: a mask, the weight is ``weight_value`` where it is set, 0 elsewhere."""
    cdef Job jb
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1]
    cdef const float[:, ::1] wv
    cdef const unsigned char[:, ::1] mv
    cdef const unsigned char[:, ::1] gv
    cdef unsigned int[:, ::1] cv
    cdef float[:, ::1] ev
    cdef const float[:, ::1] vv
    cdef float[:, ::1] sv
    cdef int k, j, i, nb, b, nt = n_threads
    cdef double ymn, ymx, dyi = 0.0, dyj = 0.0, dxi = 0.0, dxj = 0.0
    cdef double gxmin = BIG_DOUBLE, gxmax = -BIG_DOUBLE, gymin = BIG_DOUBLE, gymax = -BIG_DOUBLE
    cdef double reach_x, hmax
    cdef long oy0, oy1
    cdef double* acc
    cdef double** accs
    cdef unsigned char** flagss
    cdef double** nodess
    cdef int** stamps
    cdef int tid
    cdef long row_hi
    cdef unsigned char* flags
    cdef double* nodes
    cdef int* stamp
    cdef long width, cells
    cdef int nacc
    row_ymin_a = np.full(ny, np.inf)
    row_ymax_a = np.full(ny, -np.inf)
    cdef double[::1] row_ymin = row_ymin_a
    cdef double[::1] row_ymax = row_ymax_a
    covered_a = np.zeros(max(1, (out_data.shape[0] + band_rows - 1) // band_rows), np.int32)
    cdef int[::1] covered = covered_a
    nfast_a = np.zeros(covered_a.shape[0], np.int64)
    cdef long[::1] nfast_v = nfast_a
    global _last_grid_count
    _last_grid_count = 0

    jb.m.p = &pixmap[0, 0, 0]
    jb.m.nx = nx
    jb.m.ny = ny
    jb.m.xmin = 0
    jb.m.xmax = <int>nx - 1
    jb.m.ymin = 0
    jb.m.ymax = <int>ny - 1
    jb.kernel = kernel
    jb.dh = 0.5 * pixfrac
    jb.pfo = pixfrac / pscale_ratio / 2.0
    jb.dover_scale = (1.0 / (pixfrac * pixfrac)) * <double>pscale_ratio * <double>pscale_ratio
    jb.pfo1 = 1.0 / pscale_ratio / 2.0
    jb.dover_scale1 = <double>pscale_ratio * <double>pscale_ratio
    jb.iscale = iscale
    jb.wscale = wscale
    jb.data = &data[0, 0]
    jb.weights = NULL
    jb.wmask = NULL
    jb.wvalue = weight_value
    if weights is not None:
        if weights.dtype == np.uint8:
            mv = weights
            jb.wmask = &mv[0, 0]
        else:
            wv = weights
            jb.weights = &wv[0, 0]
    jb.good = NULL
    if good is not None:
        gv = good
        jb.good = &gv[0, 0]
    jb.nvar = len(variances)
    for k in range(jb.nvar):
        jb.var_const[k] = float(var_const[k])
        if variances[k] is None:
            jb.var[k] = NULL
        else:
            vv = variances[k]
            jb.var[k] = &vv[0, 0]
        sv = var_sum[k]
        jb.var_sum[k] = &sv[0, 0]
        sv = var_wsum[k]
        jb.var_wsum[k] = &sv[0, 0]
    jb.x1 = &x1[0]
    jb.x2 = &x2[0]
    jb.jlo = jlo
    jb.jhi = jhi
    if grid_ny < 0:
        grid_ny = out_row0 + out_data.shape[0]
    if out_row0 < 0 or out_row0 + out_data.shape[0] > grid_ny:
        raise ValueError("the output rows are not inside the grid")
    jb.out_nx = out_data.shape[1]
    jb.out_ny = grid_ny
    jb.row0 = out_row0
    row_hi = out_row0 + out_data.shape[0] - 1
    jb.out_data = &out_data[0, 0]
    jb.out_wht = &out_wht[0, 0]
    jb.out_ctx = NULL
    if out_ctx is not None:
        cv = out_ctx
        jb.out_ctx = &cv[0, 0]
    jb.bit = bit
    jb.out_exptime = NULL
    if out_exptime is not None:
        ev = out_exptime
        jb.out_exptime = &ev[0, 0]
    jb.exptime_value = exptime_value
    jb.rn_index = rn_index
    jb.weight_mode = weight_mode
    jb.exptime_weight = exptime_weight

    # extent of the visited pixels on the output, and how far a footprint reaches
    # beyond its pixel's mapped centre (a bound: the largest neighbour step); rows
    # in parallel, then the rows' extremes (order-free) in order
    ext_a = np.empty((ny, 8), np.float64)
    cdef double[:, ::1] ext = ext_a
    for j in prange(jlo, jhi + 1, nogil=True, schedule="static", num_threads=nt):
        _row_extent(&jb.m, j, x1[j], x2[j], &ext[j, 0])
    with nogil:
        for j in range(jlo, jhi + 1):
            if x1[j] > x2[j]:
                continue
            ymn = ext[j, 0]
            ymx = ext[j, 1]
            if ext[j, 2] < gxmin:
                gxmin = ext[j, 2]
            if ext[j, 3] > gxmax:
                gxmax = ext[j, 3]
            if ext[j, 4] > dxi:
                dxi = ext[j, 4]
            if ext[j, 5] > dyi:
                dyi = ext[j, 5]
            if ext[j, 6] > dxj:
                dxj = ext[j, 6]
            if ext[j, 7] > dyj:
                dyj = ext[j, 7]
            row_ymin[j] = ymn
            row_ymax[j] = ymx
            if ymn < gymin:
                gymin = ymn
            if ymx > gymax:
                gymax = ymx
    if gxmin > gxmax or gymin > gymax:
        return False
    hmax = max(jb.dh, 0.5) + 1.0
    jb.reach = hmax * (dyi + dyj) + max(jb.pfo, jb.pfo1) + 1.0
    reach_x = hmax * (dxi + dxj) + max(jb.pfo, jb.pfo1) + 1.0
    jb.row_ymin = &row_ymin[0]
    jb.row_ymax = &row_ymax[0]
    jb.ox0 = max(0, <long>(gxmin - reach_x) - 1)
    jb.ox1 = min(jb.out_nx - 1, <long>(gxmax + reach_x) + 1)
    oy0 = max(out_row0, <long>(gymin - jb.reach) - 1)
    oy1 = min(row_hi, <long>(gymax + jb.reach) + 1)
    if jb.ox1 < jb.ox0 or oy1 < oy0:
        return False
    nb = <int>((oy1 - oy0 + band_rows) // band_rows)
    width = jb.ox1 - jb.ox0 + 1
    cells = width * band_rows
    nacc = 3 + jb.nvar if jb.good != NULL else 2 + jb.nvar  # (coverage plane last)
    nt = max(1, min(nt, nb))
    if buffers is None:
        buffers = Buffers()
        buffers.reserve(nt, nacc * cells, cells, nx)
    else:
        # sized for the widest band of the grid: kept from call to call
        buffers.reserve(nt, nacc * band_rows * jb.out_nx, band_rows * jb.out_nx, nx)
    accs = buffers.acc
    flagss = buffers.flags
    nodess = buffers.nodes
    stamps = buffers.stamp
    with nogil, parallel(num_threads=nt):
        tid = threadid()
        acc = accs[tid]
        flags = flagss[tid]
        nodes = nodess[tid]
        stamp = stamps[tid]
        for i in range(nx):
            stamp[i] = -2
        for b in prange(nb, schedule="dynamic"):
            _do_band(&jb, oy0 + b * band_rows, min(oy0 + (b + 1) * band_rows - 1, oy1),
                     acc, flags, &covered[b], &nfast_v[b], nodes, stamp)
    _last_grid_count = int(nfast_a.sum())
    return bool(covered_a.any())


def set_fast_square(bint on):
    """Square kernel: share corners between neighbouring pixels and compute a pixel's
    overlaps with `_boxer_grid` (True, the default), or compute every corner and every
    overlap on its own (`_interp_four`, `_boxer`); the results are the same bit for bit
    (tests)."""
    global _use_grid
    _use_grid = on


def last_grid_count():
    """Square-kernel footprints whose overlaps `_boxer_grid` computed in the last call."""
    return _last_grid_count


# ----------------------------------------------------------------------- band products
def finish_rows(float[:, ::1] data, const float[:, ::1] weight, float fillval,
                object exptime, list var_sum, list var_weight, float scaling, object err,
                int n_threads):
    """The products of finished rows, in place (see :func:`romancore.drizzle.finish_rows`).

    ``data`` takes ``fillval`` where ``weight == 0``; each ``var_sum[k]`` becomes
    ``var_sum * scaling / w / w`` (float32, in that order) with ``w = var_weight[k]``;
    ``err = sqrt(sum of the non-NaN variances)``, NaN where all are NaN.  Returns the
    sum (float64) and count of the positive exposure times and their maximum (0 if
    none is larger).
    """
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1], j, i
    cdef int k, nvar = len(var_sum), allnan
    cdef float* sums[MAX_VAR]
    cdef const float* wsums[MAX_VAR]
    cdef float[:, ::1] sv
    cdef const float[:, ::1] wv
    cdef float[:, ::1] ev
    cdef const float[:, ::1] tv
    cdef float* e = NULL
    cdef const float* t = NULL
    cdef float v, w, acc, tt
    cdef double rs
    cdef long rc
    cdef float rp
    if nvar > MAX_VAR or len(var_weight) != nvar:
        raise ValueError("at most 4 variances, each with its weights")
    if weight.shape[0] != ny or weight.shape[1] != nx:
        raise ValueError("weight does not match data")
    for k in range(nvar):
        sv = var_sum[k]
        wv = var_weight[k]
        if sv.shape[0] != ny or sv.shape[1] != nx or wv.shape[0] != ny or wv.shape[1] != nx:
            raise ValueError("a variance does not match data")
        sums[k] = &sv[0, 0]
        wsums[k] = &wv[0, 0]
    if err is not None:
        ev = err
        if ev.shape[0] != ny or ev.shape[1] != nx:
            raise ValueError("err does not match data")
        e = &ev[0, 0]
    if exptime is not None:
        tv = exptime
        if tv.shape[0] != ny or tv.shape[1] != nx:
            raise ValueError("exptime does not match data")
        t = &tv[0, 0]
    row_sum_a = np.zeros(ny, np.float64)
    row_count_a = np.zeros(ny, np.int64)
    row_peak_a = np.zeros(ny, np.float32)
    cdef double[::1] row_sum = row_sum_a
    cdef cnp.int64_t[::1] row_count = row_count_a
    cdef float[::1] row_peak = row_peak_a
    if ny == 0 or nx == 0:
        return 0.0, 0, 0.0
    cdef float* dp = &data[0, 0]
    cdef const float* wp = &weight[0, 0]
    for j in prange(ny, nogil=True, schedule="static", num_threads=n_threads):
        rs = 0.0
        rc = 0
        rp = 0.0
        for i in range(j * nx, (j + 1) * nx):
            if wp[i] == 0:
                dp[i] = fillval
            if t != NULL:
                tt = t[i]
                if tt > 0:
                    rs = rs + <double>tt
                    rc = rc + 1
                    if tt > rp:
                        rp = tt
            if nvar == 0:
                continue
            acc = 0.0
            allnan = 1
            for k in range(nvar):
                w = wsums[k][i]
                v = sums[k][i] * scaling
                v = v / w
                v = v / w
                sums[k][i] = v
                if not isnan(v):
                    acc = acc + v
                    allnan = 0
            if e != NULL:
                e[i] = <float>NAN if allnan else sqrtf(acc)
        row_sum[j] = rs
        row_count[j] = rc
        row_peak[j] = rp
    return float(row_sum_a.sum()), int(row_count_a.sum()), float(row_peak_a.max())


# ----------------------------------------------------------------------- blot
def blot_linear(const float[:, ::1] data, const double[:, :, ::1] pixmap, float[:, ::1] out,
                float fillval, float scale, int n_threads):
    """drizzle's ``blot_image`` with ``interp="linear"`` (NaN map -> ``fillval``)."""
    cdef Py_ssize_t ony = out.shape[0], onx = out.shape[1]
    cdef Py_ssize_t iny = data.shape[0], inx = data.shape[1]
    cdef Py_ssize_t i, j
    cdef int nx_, ny_
    cdef float xo, yo, sx, sy, tx, ty, f00, v
    cdef float one = 1.0
    cdef float zero = 0.0
    for j in prange(ony, nogil=True, schedule="static", num_threads=n_threads):
        for i in range(onx):
            xo = <float>pixmap[j, i, 0]
            yo = <float>pixmap[j, i, 1]
            if not (xo >= zero and xo < <float>inx and yo >= zero and yo < <float>iny):
                out[j, i] = fillval
                continue
            nx_ = <int>xo
            ny_ = <int>yo
            f00 = data[ny_, nx_]
            if nx_ == inx - 1:
                if ny_ == iny - 1:
                    v = f00
                else:
                    sy = yo - <float>ny_
                    v = (one - sy) * f00 + sy * data[ny_ + 1, nx_]
            elif ny_ == iny - 1:
                sx = xo - <float>nx_
                v = (one - sx) * f00 + sx * data[ny_, nx_ + 1]
            else:
                sx = xo - <float>nx_
                tx = one - sx
                sy = yo - <float>ny_
                ty = one - sy
                v = (tx * ty * f00 + sx * ty * data[ny_, nx_ + 1]
                     + sy * tx * data[ny_ + 1, nx_] + sx * sy * data[ny_ + 1, nx_ + 1])
            out[j, i] = v * scale


# ----------------------------------------------------------------------- B-spline grids
def combine_rows(const double[:, ::1] m, const cnp.int64_t[::1] start, const double[:, ::1] w,
                 double[:, :, ::1] out, int component, Py_ssize_t row0, Py_ssize_t col0,
                 int n_threads):
    """``out[row0 + i, col0 + c, component] = sum_q w[i, q] m[start[i] + q, c]``."""
    cdef Py_ssize_t n = start.shape[0], ncol = m.shape[1], nq = w.shape[1], i, c, q
    cdef double v
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        for c in range(ncol):
            v = 0.0
            for q in range(nq):
                v = v + w[i, q] * m[start[i] + q, c]
            out[row0 + i, col0 + c, component] = v


def combine_rows_pair(const double[:, ::1] m0, const double[:, ::1] m1,
                      const cnp.int64_t[::1] start, const double[:, ::1] w,
                      double[:, :, ::1] out, Py_ssize_t row0, Py_ssize_t col0, int n_threads):
    """`combine_rows` of both components in one pass (``m0`` -> x, ``m1`` -> y)."""
    cdef Py_ssize_t n = start.shape[0], ncol = m0.shape[1], nq = w.shape[1], i, c, q
    cdef double v, u
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        for c in range(ncol):
            v = 0.0
            u = 0.0
            for q in range(nq):
                v = v + w[i, q] * m0[start[i] + q, c]
                u = u + w[i, q] * m1[start[i] + q, c]
            out[row0 + i, col0 + c, 0] = v
            out[row0 + i, col0 + c, 1] = u
