# cython: language_level=3
"""Compiled per-source photometry kernels (private; see
:mod:`romancal_lite.steps.source_catalog.measure`).

Every function loops over sources (OpenMP ``prange``, dynamic schedule) and, inside a
source, over the pixels of its own bounding box, so nothing is padded.  The inputs are
validated by the Python wrapper: C-contiguous float64 ``data``/``error``, uint8 ``bad``
(1 = excluded: the mask or non-finite data), int32 ``segm`` and float64 per-source
vectors.

Aperture weights are the exact area of overlap of each pixel with a circle or an
ellipse, computed in the frame where the shape is the unit disk: the pixel becomes a
parallelogram and its overlap with the disk is the sum, over its four edges, of the
signed area of the disk cut by the triangle (origin, edge).
"""
from cython.parallel cimport parallel, prange
from libc.math cimport atan2, ceil, cos, exp, fabs, floor, isfinite, M_PI, NAN, sin, sqrt
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport free, malloc, qsort


cdef inline double _sector(double px, double py, double qx, double qy) noexcept nogil:
    """Signed area of the unit-disk sector between directions P and Q."""
    return 0.5 * atan2(px * qy - py * qx, px * qx + py * qy)


cdef double _edge_area(double ax, double ay, double bx, double by) noexcept nogil:
    """Signed area of (unit disk) intersected with the triangle (O, A, B)."""
    cdef double dx = bx - ax, dy = by - ay
    cdef double qa = dx * dx + dy * dy
    cdef double qb, qc, disc, s, t1, t2, t1c, t2c, px, py, qx, qy, area
    if qa == 0.0:
        return 0.0
    qb = ax * dx + ay * dy
    qc = ax * ax + ay * ay - 1.0
    disc = qb * qb - qa * qc
    if disc <= 0.0:
        return _sector(ax, ay, bx, by)
    s = sqrt(disc)
    t1 = (-qb - s) / qa
    t2 = (-qb + s) / qa
    if t1 >= 1.0 or t2 <= 0.0:
        return _sector(ax, ay, bx, by)
    t1c = t1 if t1 > 0.0 else 0.0
    t2c = t2 if t2 < 1.0 else 1.0
    px = ax + t1c * dx
    py = ay + t1c * dy
    qx = ax + t2c * dx
    qy = ay + t2c * dy
    area = 0.5 * (px * qy - py * qx)
    if t1 > 0.0:
        area += _sector(ax, ay, px, py)
    if t2 < 1.0:
        area += _sector(qx, qy, bx, by)
    return area


cdef struct Shape:
    # pixel -> unit-disk frame: u = m00 x + m01 y, v = m10 x + m11 y
    double m00, m01, m10, m11
    double ab       # area scale (a * b)
    double cmax     # largest |corner offset| of a pixel in the unit-disk frame
    double ox[4]    # corner offsets (counter-clockwise) in the unit-disk frame
    double oy[4]


cdef void _make_shape(Shape* sh, double a, double b, double theta) noexcept nogil:
    cdef double ct = cos(theta), st = sin(theta)
    cdef double cx[4]
    cdef double cy[4]
    cdef int k
    cdef double d2
    cx[0] = -0.5; cy[0] = -0.5
    cx[1] = 0.5; cy[1] = -0.5
    cx[2] = 0.5; cy[2] = 0.5
    cx[3] = -0.5; cy[3] = 0.5
    sh.m00 = ct / a
    sh.m01 = st / a
    sh.m10 = -st / b
    sh.m11 = ct / b
    sh.ab = a * b
    sh.cmax = 0.0
    for k in range(4):
        sh.ox[k] = sh.m00 * cx[k] + sh.m01 * cy[k]
        sh.oy[k] = sh.m10 * cx[k] + sh.m11 * cy[k]
        d2 = sh.ox[k] * sh.ox[k] + sh.oy[k] * sh.oy[k]
        if d2 > sh.cmax:
            sh.cmax = d2
    sh.cmax = sqrt(sh.cmax)


cdef double _overlap(const Shape* sh, double x, double y) noexcept nogil:
    """Fraction of the unit pixel centred at (x, y) (shape-centred) inside the shape."""
    cdef double u = sh.m00 * x + sh.m01 * y
    cdef double v = sh.m10 * x + sh.m11 * y
    cdef double rc = sqrt(u * u + v * v)
    cdef double px[4]
    cdef double py[4]
    cdef int k
    cdef bint inside = True
    cdef double area
    if rc - sh.cmax >= 1.0:
        return 0.0
    if rc + sh.cmax <= 1.0:
        return 1.0
    for k in range(4):
        px[k] = u + sh.ox[k]
        py[k] = v + sh.oy[k]
        if px[k] * px[k] + py[k] * py[k] > 1.0:
            inside = False
    if inside:
        return 1.0
    area = 0.0
    for k in range(4):
        area += _edge_area(px[k], py[k], px[(k + 1) % 4], py[(k + 1) % 4])
    area = fabs(area) * sh.ab
    if area > 1.0:
        area = 1.0
    return area


cdef struct Image:
    const double* data
    const double* error
    const uint8_t* bad
    const int32_t* segm
    Py_ssize_t ny
    Py_ssize_t nx


cdef inline bint _excluded(const Image* im, Py_ssize_t k, int32_t label,
                           bint use_segm) noexcept nogil:
    """Pixel ``k`` (flat index) is masked, or (``use_segm``) in another segment."""
    if im.bad[k]:
        return True
    if use_segm:
        return im.segm[k] != label and im.segm[k] != 0
    return False


cdef inline bint _clip_box(const Image* im, Py_ssize_t bx0, Py_ssize_t bx1,
                           Py_ssize_t by0, Py_ssize_t by1, Py_ssize_t* box) noexcept nogil:
    """Clip a box to the image: False if nothing is left."""
    box[0] = bx0 if bx0 > 0 else 0
    box[1] = bx1 if bx1 < im.nx else im.nx
    box[2] = by0 if by0 > 0 else 0
    box[3] = by1 if by1 < im.ny else im.ny
    return box[0] < box[1] and box[2] < box[3]


cdef void _aperture_one(const Image* im, int32_t label, double x, double y, double a,
                        double b, double theta, bint use_segm, bint circle_bbox,
                        bint empty_nan, double max_size, double* flux,
                        double* flux_err) noexcept nogil:
    cdef double ct = cos(theta), st = sin(theta)
    cdef double xe = sqrt((a * ct) * (a * ct) + (b * st) * (b * st))
    cdef double ye = sqrt((a * st) * (a * st) + (b * ct) * (b * ct))
    cdef Py_ssize_t bx0, bx1, by0, by1, ix, iy, k, count = 0
    cdef Py_ssize_t box[4]
    cdef double w, e, s = 0.0, s2 = 0.0
    cdef Shape sh
    flux[0] = NAN
    flux_err[0] = NAN
    bx0 = <Py_ssize_t>floor(x - xe + 0.5)
    by0 = <Py_ssize_t>floor(y - ye + 0.5)
    if circle_bbox:
        bx1 = <Py_ssize_t>ceil(x + xe + 0.5)
        by1 = <Py_ssize_t>ceil(y + ye + 0.5)
    else:
        bx1 = <Py_ssize_t>floor(x + xe + 1.5)
        by1 = <Py_ssize_t>floor(y + ye + 1.5)
    if <double>(bx1 - bx0) * <double>(by1 - by0) > max_size:
        return
    if not _clip_box(im, bx0, bx1, by0, by1, box):
        return
    _make_shape(&sh, a, b, theta)
    for iy in range(box[2], box[3]):
        for ix in range(box[0], box[1]):
            k = iy * im.nx + ix
            if _excluded(im, k, label, use_segm):
                continue
            w = _overlap(&sh, ix - x, iy - y)
            if w > 0.0:
                s += w * im.data[k]
                e = im.error[k]
                s2 += w * (e * e)
                count += 1
    if count == 0 and empty_nan:
        return
    flux[0] = s
    flux_err[0] = sqrt(s2)


def aperture_sums(const double[:, ::1] data, const double[:, ::1] error,
                  const uint8_t[:, ::1] bad, const int32_t[:, ::1] segm,
                  const int32_t[::1] labels, const double[::1] x, const double[::1] y,
                  const double[::1] a, const double[::1] b, const double[::1] theta,
                  const uint8_t[::1] valid, bint use_segm, bint circle_bbox,
                  bint empty_nan, double max_size,
                  double[::1] flux, double[::1] flux_err, int n_threads):
    """Exact-overlap sums of ``data`` and ``error**2`` in ellipses (a, b, theta).

    ``circle_bbox``: the box of `photutils.aperture.BoundingBox.from_float` (upper edge
    ``ceil(x + r + 0.5)``) instead of SourceCatalog's Kron box (``floor(x + r + 1.5)``);
    ``empty_nan``: NaN instead of 0 when no pixel has weight.
    """
    cdef Image im
    cdef Py_ssize_t i, n = labels.shape[0]
    im.data = &data[0, 0]
    im.error = &error[0, 0]
    im.bad = &bad[0, 0]
    im.segm = &segm[0, 0]
    im.ny = data.shape[0]
    im.nx = data.shape[1]
    for i in prange(n, nogil=True, schedule="dynamic", num_threads=n_threads):
        if valid[i]:
            _aperture_one(&im, labels[i], x[i], y[i], a[i], b[i], theta[i], use_segm,
                          circle_bbox, empty_nan, max_size, &flux[i], &flux_err[i])
        else:
            flux[i] = NAN
            flux_err[i] = NAN


cdef void _kron_one(const Image* im, int32_t label, double x, double y, double a,
                    double b, double theta, double cxx, double cxy, double cyy,
                    double scale, double max_size, double* numer,
                    double* denom) noexcept nogil:
    cdef double ct = cos(theta), st = sin(theta)
    cdef double hw = sqrt(a * a * ct * ct + b * b * st * st)
    cdef double hh = sqrt(a * a * st * st + b * b * ct * ct)
    cdef Py_ssize_t bx0, bx1, by0, by1, ix, iy, k
    cdef Py_ssize_t box[4]
    cdef double xx, yy, rr, d, sn = 0.0, sd = 0.0
    numer[0] = NAN
    denom[0] = NAN
    bx0 = <Py_ssize_t>floor(x - hw + 0.5)
    bx1 = <Py_ssize_t>floor(x + hw + 0.5) + 1
    by0 = <Py_ssize_t>floor(y - hh + 0.5)
    by1 = <Py_ssize_t>floor(y + hh + 0.5) + 1
    if <double>(bx1 - bx0) * <double>(by1 - by0) > max_size:
        return
    if not _clip_box(im, bx0, bx1, by0, by1, box):
        return
    for iy in range(box[2], box[3]):
        yy = <double>(iy - box[2]) - (y - box[2])
        for ix in range(box[0], box[1]):
            k = iy * im.nx + ix
            if _excluded(im, k, label, True):
                continue
            xx = <double>(ix - box[0]) - (x - box[0])
            rr = cxx * xx * xx + cxy * xx * yy + cyy * yy * yy
            rr = sqrt(rr if rr > 0.0 else 0.0)
            if rr <= scale:
                d = im.data[k]
                sn += d * rr
                sd += d
    numer[0] = sn
    denom[0] = sd


def kron_moments(const double[:, ::1] data, const uint8_t[:, ::1] bad,
                 const int32_t[:, ::1] segm, const int32_t[::1] labels,
                 const double[::1] x, const double[::1] y, const double[::1] a,
                 const double[::1] b, const double[::1] theta, const double[::1] cxx,
                 const double[::1] cxy, const double[::1] cyy,
                 const uint8_t[::1] valid, double scale, double max_size,
                 double[::1] numer, double[::1] denom, int n_threads):
    """First-moment sums (sum I r, sum I) inside the elliptical radius ``scale``.

    ``a`` and ``b`` are the already-scaled semi-axes that set the box; NaN where the
    source is not valid, its box is too large or misses the image.
    """
    cdef Image im
    cdef Py_ssize_t i, n = labels.shape[0]
    im.data = &data[0, 0]
    im.error = NULL
    im.bad = &bad[0, 0]
    im.segm = &segm[0, 0]
    im.ny = data.shape[0]
    im.nx = data.shape[1]
    for i in prange(n, nogil=True, schedule="dynamic", num_threads=n_threads):
        if valid[i]:
            _kron_one(&im, labels[i], x[i], y[i], a[i], b[i], theta[i], cxx[i], cxy[i],
                      cyy[i], scale, max_size, &numer[i], &denom[i])
        else:
            numer[i] = NAN
            denom[i] = NAN


cdef void _win_one(const Image* im, int32_t label, double xcen, double ycen,
                   double sigma, double max_size, int max_iters, double threshold,
                   double* xw, double* yw) noexcept nogil:
    cdef double inv2s2 = -1.0 / (2.0 * sigma * sigma)
    cdef double radius = 4.0 * sigma
    cdef double radius2 = radius * radius
    cdef Py_ssize_t half = <Py_ssize_t>(radius + 1.5)
    cdef Py_ssize_t x0, y0, ix, iy, k
    cdef Py_ssize_t box[4]
    cdef int it = 0
    cdef double dcen = 1.0, tot, sx, sy, dx, dy, xx, yy, rr2, w
    xw[0] = NAN
    yw[0] = NAN
    if <double>(2 * half + 1) * <double>(2 * half + 1) > max_size:
        return
    while it < max_iters and dcen > threshold:
        x0 = <Py_ssize_t>(xcen + 0.5) - half
        y0 = <Py_ssize_t>(ycen + 0.5) - half
        if not _clip_box(im, x0, x0 + 2 * half + 1, y0, y0 + 2 * half + 1, box):
            return
        tot = 0.0
        sx = 0.0
        sy = 0.0
        for iy in range(box[2], box[3]):
            yy = <double>(iy - box[2]) - (ycen - box[2])
            for ix in range(box[0], box[1]):
                k = iy * im.nx + ix
                if _excluded(im, k, label, True):
                    continue
                xx = <double>(ix - box[0]) - (xcen - box[0])
                rr2 = xx * xx + yy * yy
                if rr2 <= radius2:
                    w = im.data[k] * exp(rr2 * inv2s2)
                    tot += w
                    sx += w * xx
                    sy += w * yy
        dx = sx / tot
        dy = sy / tot
        dcen = sqrt(dx * dx + dy * dy)
        xcen = xcen + dx * 2.0
        ycen = ycen + dy * 2.0
        it += 1
    xw[0] = xcen
    yw[0] = ycen


def centroid_win(const double[:, ::1] data, const uint8_t[:, ::1] bad,
                 const int32_t[:, ::1] segm, const int32_t[::1] labels,
                 const double[::1] xc, const double[::1] yc, const double[::1] sigma,
                 const uint8_t[::1] valid, double max_size, int max_iters,
                 double threshold, double[::1] xw, double[::1] yw, int n_threads):
    """SourceExtractor's windowed-centroid iteration from ``(xc, yc)``.

    NaN where the window leaves the image, is too large, or its weights sum to zero
    (the caller applies photutils' fallback rules).
    """
    cdef Image im
    cdef Py_ssize_t i, n = labels.shape[0]
    im.data = &data[0, 0]
    im.error = NULL
    im.bad = &bad[0, 0]
    im.segm = &segm[0, 0]
    im.ny = data.shape[0]
    im.nx = data.shape[1]
    for i in prange(n, nogil=True, schedule="dynamic", num_threads=n_threads):
        if valid[i]:
            _win_one(&im, labels[i], xc[i], yc[i], sigma[i], max_size, max_iters,
                     threshold, &xw[i], &yw[i])
        else:
            xw[i] = NAN
            yw[i] = NAN


cdef struct Curve:
    const double* vals   # data values (0 where excluded)
    const double* ux     # pixel x offset from the centre
    const double* uy
    Py_ssize_t npix
    double norm


cdef double _curve(const Curve* cv, double r) noexcept nogil:
    """1 - (flux inside the circle of radius r) / norm."""
    cdef Shape sh
    cdef Py_ssize_t k
    cdef double s = 0.0
    _make_shape(&sh, r, r, 0.0)
    for k in range(cv.npix):
        if cv.vals[k] != 0.0:
            s += cv.vals[k] * _overlap(&sh, cv.ux[k], cv.uy[k])
    return 1.0 - s / cv.norm


cdef int _brent(const Curve* cv, double xa, double xb, double xtol, double rtol,
                int maxiter, double* root) noexcept nogil:
    """Brent's root finder (the classic variant that scipy's ``brentq`` implements).

    Returns 0 on success, -1 if f(xa) and f(xb) have the same sign or f is NaN.
    """
    cdef double xpre = xa, xcur = xb, xblk = 0.0, fpre, fcur, fblk = 0.0
    cdef double spre = 0.0, scur = 0.0, sbis, stry, dpre, dblk, delta, lim
    cdef int k
    fpre = _curve(cv, xpre)
    fcur = _curve(cv, xcur)
    if not (isfinite(fpre) and isfinite(fcur)):
        return -1
    if fpre == 0.0:
        root[0] = xpre
        return 0
    if fcur == 0.0:
        root[0] = xcur
        return 0
    if (fpre < 0.0) == (fcur < 0.0):
        return -1
    for k in range(maxiter):
        if fpre != 0.0 and fcur != 0.0 and ((fpre < 0.0) != (fcur < 0.0)):
            xblk = xpre
            fblk = fpre
            spre = xcur - xpre
            scur = spre
        if fabs(fblk) < fabs(fcur):
            xpre = xcur
            xcur = xblk
            xblk = xpre
            fpre = fcur
            fcur = fblk
            fblk = fpre
        delta = (xtol + rtol * fabs(xcur)) / 2.0
        sbis = (xblk - xcur) / 2.0
        if fcur == 0.0 or fabs(sbis) < delta:
            root[0] = xcur
            return 0
        if fabs(spre) > delta and fabs(fcur) < fabs(fpre):
            if xpre == xblk:
                stry = -fcur * (xcur - xpre) / (fcur - fpre)
            else:
                dpre = (fpre - fcur) / (xpre - xcur)
                dblk = (fblk - fcur) / (xblk - xcur)
                stry = -fcur * (fblk * dblk - fpre * dpre) / (dblk * dpre * (fblk - fpre))
            lim = 3.0 * fabs(sbis) - delta
            if fabs(spre) < lim:
                lim = fabs(spre)
            if 2.0 * fabs(stry) < lim:
                spre = scur
                scur = stry
            else:
                spre = sbis
                scur = sbis
        else:
            spre = sbis
            scur = sbis
        xpre = xcur
        fpre = fcur
        if fabs(scur) > delta:
            xcur += scur
        elif sbis > 0.0:
            xcur += delta
        else:
            xcur -= delta
        fcur = _curve(cv, xcur)
        if not isfinite(fcur):
            return -1
    root[0] = xcur
    return 0


cdef double _radius_one(const Image* im, int32_t label, double x, double y, double norm,
                        double rmax, double min_radius, double xtol, double rtol,
                        int maxiter, double max_size) noexcept nogil:
    cdef Py_ssize_t bx0, bx1, by0, by1, ix, iy, k, j = 0, npix
    cdef Py_ssize_t box[4]
    cdef double step = 0.1 * rmax, root = NAN, result = NAN
    cdef double* buf
    cdef Curve cv
    bx0 = <Py_ssize_t>floor(x - rmax + 0.5)
    bx1 = <Py_ssize_t>ceil(x + rmax + 0.5)
    by0 = <Py_ssize_t>floor(y - rmax + 0.5)
    by1 = <Py_ssize_t>ceil(y + rmax + 0.5)
    if <double>(bx1 - bx0) * <double>(by1 - by0) > max_size:
        return NAN
    if not _clip_box(im, bx0, bx1, by0, by1, box):
        return NAN
    npix = (box[1] - box[0]) * (box[3] - box[2])
    buf = <double*>malloc(3 * npix * sizeof(double))
    if buf == NULL:
        return NAN
    for iy in range(box[2], box[3]):
        for ix in range(box[0], box[1]):
            k = iy * im.nx + ix
            buf[j] = 0.0 if _excluded(im, k, label, True) else im.data[k]
            buf[npix + j] = <double>(ix - box[0]) - (x - box[0])
            buf[2 * npix + j] = <double>(iy - box[2]) - (y - box[2])
            j += 1
    cv.vals = buf
    cv.ux = buf + npix
    cv.uy = buf + 2 * npix
    cv.npix = npix
    cv.norm = norm
    while rmax > min_radius:
        if _brent(&cv, min_radius, rmax, xtol, rtol, maxiter, &root) == 0:
            result = root
            break
        rmax -= step
    free(buf)
    return result


def flux_radius(const double[:, ::1] data, const uint8_t[:, ::1] bad,
                const int32_t[:, ::1] segm, const int32_t[::1] labels,
                const double[::1] x, const double[::1] y, const double[::1] norm,
                const double[::1] max_radius, const uint8_t[::1] valid,
                double min_radius, double xtol, double rtol, int maxiter,
                double max_size, double[::1] out, int n_threads):
    """Radius where the circular curve of growth reaches ``norm`` (photutils' rules).

    Brent on ``[min_radius, R]``; while the bracket has no sign change ``R`` shrinks by
    10 % of its first value, and the result is NaN once ``R <= min_radius``.
    """
    cdef Image im
    cdef Py_ssize_t i, n = labels.shape[0]
    im.data = &data[0, 0]
    im.error = NULL
    im.bad = &bad[0, 0]
    im.segm = &segm[0, 0]
    im.ny = data.shape[0]
    im.nx = data.shape[1]
    for i in prange(n, nogil=True, schedule="dynamic", num_threads=n_threads):
        if valid[i]:
            out[i] = _radius_one(&im, labels[i], x[i], y[i], norm[i], max_radius[i],
                                 min_radius, xtol, rtol, maxiter, max_size)
        else:
            out[i] = NAN


cdef int _cmp_double(const void* pa, const void* pb) noexcept nogil:
    cdef double a = (<const double*> pa)[0]
    cdef double b = (<const double*> pb)[0]
    return (a > b) - (a < b)


cdef void _clipped_stats(const double* v, Py_ssize_t lo, Py_ssize_t hi, double* med,
                         double* std) noexcept nogil:
    """Median and population standard deviation of the sorted run ``v[lo:hi]``."""
    cdef Py_ssize_t cnt = hi - lo, k
    cdef double mean = 0.0, var = 0.0, d
    med[0] = 0.5 * (v[lo + (cnt - 1) // 2] + v[lo + cnt // 2])
    for k in range(lo, hi):
        mean += v[k]
    mean /= cnt
    for k in range(lo, hi):
        d = v[k] - mean
        var += d * d
    std[0] = sqrt(var / cnt)


cdef void _annulus_one(const Image* im, double x, double y, double r_in2, double r_out2,
                       Py_ssize_t half, double sigma, int maxiters, double* buf,
                       double* med, double* sem) noexcept nogil:
    cdef Py_ssize_t cx = <Py_ssize_t> floor(x + 0.5), cy = <Py_ssize_t> floor(y + 0.5)
    cdef Py_ssize_t ix, iy, k, n = 0, lo, hi, new_lo, new_hi
    cdef double dy2, r2, centre, spread, low, high
    cdef int it
    for iy in range(cy - half, cy + half + 1):
        if iy < 0 or iy >= im.ny:
            continue
        dy2 = (iy - y) * (iy - y)
        for ix in range(cx - half, cx + half + 1):
            if ix < 0 or ix >= im.nx:
                continue
            r2 = dy2 + (ix - x) * (ix - x)
            # photutils' "center" annulus mask: r_in < r <= r_out
            if r2 <= r_out2 and r2 > r_in2:
                k = iy * im.nx + ix
                if not im.bad[k]:
                    buf[n] = im.data[k]
                    n += 1
    if n == 0:
        med[0] = NAN
        sem[0] = NAN
        return
    qsort(buf, n, sizeof(double), _cmp_double)
    # astropy's SigmaClip(sigma, maxiters, cenfunc="median", stdfunc="std"): the kept
    # values of a sorted array are a contiguous run [lo, hi), so a clip moves two indices
    lo = 0
    hi = n
    for it in range(maxiters):
        _clipped_stats(buf, lo, hi, &centre, &spread)
        low = centre - sigma * spread
        high = centre + sigma * spread
        new_lo = lo
        while new_lo < hi and buf[new_lo] < low:
            new_lo += 1
        new_hi = hi
        while new_hi > new_lo and buf[new_hi - 1] > high:
            new_hi -= 1
        if new_lo == lo and new_hi == hi:
            break
        lo = new_lo
        hi = new_hi
        if hi == lo:
            break
    if hi == lo:
        med[0] = NAN
        sem[0] = NAN
        return
    _clipped_stats(buf, lo, hi, &centre, &spread)
    med[0] = centre
    # standard error of the median: sqrt(pi / 2N) * std
    sem[0] = sqrt(M_PI / (2.0 * (hi - lo))) * spread


def annulus_clipped_median(const double[:, ::1] data, const uint8_t[:, ::1] bad,
                           const double[::1] x, const double[::1] y, double r_in,
                           double r_out, double sigma, int maxiters, double[::1] med,
                           double[::1] sem, int n_threads):
    """Sigma-clipped median (and its standard error) of each annulus' good pixels.

    Pixels whose centres lie in ``r_in < r <= r_out`` of ``(x, y)`` and are not
    ``bad``; NaN where none is left.
    """
    cdef Image im
    cdef Py_ssize_t i, n = x.shape[0]
    cdef Py_ssize_t half = <Py_ssize_t> ceil(r_out) + 1
    cdef Py_ssize_t width = 2 * half + 1
    cdef double* buf
    im.data = &data[0, 0]
    im.error = NULL
    im.bad = &bad[0, 0]
    im.segm = NULL
    im.ny = data.shape[0]
    im.nx = data.shape[1]
    with nogil, parallel(num_threads=n_threads):
        buf = <double*> malloc(width * width * sizeof(double))
        for i in prange(n, schedule="dynamic"):
            if isfinite(x[i]) and isfinite(y[i]):
                _annulus_one(&im, x[i], y[i], r_in * r_in, r_out * r_out, half, sigma,
                             maxiters, buf, &med[i], &sem[i])
            else:
                med[i] = NAN
                sem[i] = NAN
        free(buf)


cdef void _iso_error_one(const Image* im, const double* conv, const uint8_t* mask,
                         const double* kern, Py_ssize_t ks, int32_t label,
                         Py_ssize_t y0, Py_ssize_t y1, Py_ssize_t x0, Py_ssize_t x1,
                         double xc, double yc, double* x_err, double* y_err) noexcept nogil:
    """First-order error of the isophotal centroid of one segment (see the wrapper)."""
    cdef Py_ssize_t h = y1 - y0, w = x1 - x0, half = ks // 2, i, j, a, b, k, yy, xx
    cdef double total = 0.0, c, hx, hy, e, vx = 0.0, vy = 0.0
    cdef double* arm_x
    cdef double* arm_y
    x_err[0] = NAN
    y_err[0] = NAN
    if h <= 0 or w <= 0:
        return
    arm_x = <double*> malloc(h * w * sizeof(double))
    arm_y = <double*> malloc(h * w * sizeof(double))
    if arm_x == NULL or arm_y == NULL:
        free(arm_x)
        free(arm_y)
        return
    # the moment pixels: the segment's unmasked pixels with a finite c >= 0
    for i in range(h):
        for j in range(w):
            k = (y0 + i) * im.nx + x0 + j
            c = conv[k]
            if im.segm[k] == label and not mask[k] and c >= 0:
                total += c
                arm_x[i * w + j] = (x0 + j) - xc
                arm_y[i * w + j] = (y0 + i) - yc
            else:
                arm_x[i * w + j] = 0.0
                arm_y[i * w + j] = 0.0
    if not total > 0:
        free(arm_x)
        free(arm_y)
        return
    # var = sum_k err_k^2 h_k^2, h_k = sum_ab K'(a, b) arm(k + (a - half, b - half))
    for i in range(h):
        for j in range(w):
            k = (y0 + i) * im.nx + x0 + j
            if mask[k]:
                continue
            e = im.error[k]
            e = e * e
            if not isfinite(e):
                continue
            hx = 0.0
            hy = 0.0
            for a in range(ks):
                yy = i + a - half
                if yy < 0 or yy >= h:
                    continue
                for b in range(ks):
                    xx = j + b - half
                    if xx < 0 or xx >= w:
                        continue
                    hx += kern[a * ks + b] * arm_x[yy * w + xx]
                    hy += kern[a * ks + b] * arm_y[yy * w + xx]
            vx += e * hx * hx
            vy += e * hy * hy
    x_err[0] = sqrt(vx) / total
    y_err[0] = sqrt(vy) / total
    free(arm_x)
    free(arm_y)


def isophotal_errors(const double[:, ::1] conv, const double[:, ::1] error,
                     const uint8_t[:, ::1] mask, const int32_t[:, ::1] segm,
                     const double[:, ::1] kern, const int32_t[::1] labels,
                     const int64_t[::1] y0, const int64_t[::1] y1,
                     const int64_t[::1] x0, const int64_t[::1] x1,
                     const double[::1] xc, const double[::1] yc,
                     double[::1] x_err, double[::1] y_err, int n_threads):
    """Isophotal centroid errors of every source over its stamp (kernel flipped)."""
    cdef Image im
    cdef Py_ssize_t i, n = labels.shape[0]
    im.data = NULL
    im.error = &error[0, 0]
    im.bad = NULL
    im.segm = &segm[0, 0]
    im.ny = conv.shape[0]
    im.nx = conv.shape[1]
    for i in prange(n, nogil=True, schedule="dynamic", num_threads=n_threads):
        if isfinite(xc[i]) and isfinite(yc[i]):
            _iso_error_one(&im, &conv[0, 0], &mask[0, 0], &kern[0, 0], kern.shape[0],
                           labels[i], y0[i], y1[i], x0[i], x1[i], xc[i], yc[i],
                           &x_err[i], &y_err[i])
        else:
            x_err[i] = NAN
            y_err[i] = NAN


cdef void _win_error_one(const Image* im, const uint8_t* mask, int32_t label, double xw,
                         double yw, double rhl, double* x_err,
                         double* y_err) noexcept nogil:
    """First-order error of the windowed centroid of one source (see the wrapper)."""
    cdef double s = 2.0 * (rhl if rhl > 0.5 else 0.5) / 2.3548200450309493
    cdef double radius = 4.0 * s, dx, dy, r2, wgt, d, e2, s2 = s * s
    cdef double den_x = 0.0, den_y = 0.0, num_x = 0.0, num_y = 0.0
    cdef Py_ssize_t half = <Py_ssize_t> (radius + 1.5)
    cdef Py_ssize_t ix = <Py_ssize_t> (xw + 0.5), iy = <Py_ssize_t> (yw + 0.5)
    cdef Py_ssize_t y, x, k, sg
    cdef Py_ssize_t ya = iy - half if iy - half > 0 else 0
    cdef Py_ssize_t yb = iy + half + 1 if iy + half + 1 < im.ny else im.ny
    cdef Py_ssize_t xa = ix - half if ix - half > 0 else 0
    cdef Py_ssize_t xb = ix + half + 1 if ix + half + 1 < im.nx else im.nx
    x_err[0] = NAN
    y_err[0] = NAN
    if ya >= yb or xa >= xb:
        return
    for y in range(ya, yb):
        dy = y - yw
        for x in range(xa, xb):
            dx = x - xw
            r2 = dx * dx + dy * dy
            if r2 > radius * radius:
                continue
            k = y * im.nx + x
            sg = im.segm[k]
            if mask[k] or (sg != label and sg != 0):
                continue
            d = im.data[k]
            e2 = im.error[k]
            e2 = e2 * e2
            if not (isfinite(d) and isfinite(e2)):
                continue
            wgt = exp(-r2 / (2.0 * s2))
            den_x += wgt * d * (1.0 - dx * dx / s2)
            den_y += wgt * d * (1.0 - dy * dy / s2)
            num_x += wgt * wgt * e2 * dx * dx
            num_y += wgt * wgt * e2 * dy * dy
    if den_x > 0:
        x_err[0] = sqrt(num_x) / den_x
    if den_y > 0:
        y_err[0] = sqrt(num_y) / den_y


def windowed_errors(const double[:, ::1] data, const double[:, ::1] error,
                    const uint8_t[:, ::1] mask, const int32_t[:, ::1] segm,
                    const int32_t[::1] labels, const double[::1] xw, const double[::1] yw,
                    const double[::1] rhl, double[::1] x_err, double[::1] y_err,
                    int n_threads):
    """Windowed centroid errors of every source (NaN where undefined)."""
    cdef Image im
    cdef Py_ssize_t i, n = labels.shape[0]
    im.data = &data[0, 0]
    im.error = &error[0, 0]
    im.bad = NULL
    im.segm = &segm[0, 0]
    im.ny = data.shape[0]
    im.nx = data.shape[1]
    for i in prange(n, nogil=True, schedule="dynamic", num_threads=n_threads):
        if isfinite(xw[i]) and isfinite(yw[i]) and isfinite(rhl[i]):
            _win_error_one(&im, &mask[0, 0], labels[i], xw[i], yw[i], rhl[i], &x_err[i],
                           &y_err[i])
        else:
            x_err[i] = NAN
            y_err[i] = NAN
