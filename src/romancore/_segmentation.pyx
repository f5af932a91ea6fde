# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Threshold segmentation: 8-connected components above a per-pixel threshold.

The detection of photutils' ``detect_sources`` (romancal 1.1's source detection) in
one scan: a pixel is a source pixel where ``data > threshold`` and it is not masked
(NaN compares false); source pixels touching along edges or corners form one
segment; segments of fewer than ``npixels`` pixels are dropped; the rest are
numbered 1..n in the raster order of their first pixel (the numbering of
``scipy.ndimage.label`` after photutils' consecutive relabelling).

Method: one raster scan with a union-find of provisional labels (the decision tree
of Wu, Otoo & Suzuki 2009, "Optimizing two-pass connected-component labeling
algorithms", Pattern Anal. Appl. 12, 117, for 8-connectivity: if the pixel above
is a source pixel its label is taken and nothing else needs merging, because the
left, upper-left and upper-right neighbours all touch it), keeping per
provisional label its pixel count and bounding box; the union keeps the smaller
label as the root, so a root is the label its segment's first pixel opened. The
final labels are resolved in one pass over the provisional labels and written in
one pass over the image (OpenMP over rows).
"""

from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t
from libc.math cimport NAN
from libc.string cimport memcpy
from libc.stdlib cimport free, malloc, realloc

import numpy as np


ctypedef fused threshold_t:
    float
    double


cdef struct Table:
    int32_t* parent
    int64_t* count
    int32_t* ymin
    int32_t* ymax
    int32_t* xmin
    int32_t* xmax
    Py_ssize_t size       # labels in use, including 0
    Py_ssize_t capacity


cdef int _resize(void** p, Py_ssize_t nbytes) noexcept nogil:
    cdef void* q = realloc(p[0], nbytes)
    if q == NULL:
        return -1
    p[0] = q
    return 0


cdef int _grow(Table* t) noexcept nogil:
    """Double the table's capacity; -1 (table unchanged where it failed) on no memory."""
    cdef Py_ssize_t cap = t.capacity * 2
    if (_resize(<void**>&t.parent, cap * sizeof(int32_t))
            or _resize(<void**>&t.count, cap * sizeof(int64_t))
            or _resize(<void**>&t.ymin, cap * sizeof(int32_t))
            or _resize(<void**>&t.ymax, cap * sizeof(int32_t))
            or _resize(<void**>&t.xmin, cap * sizeof(int32_t))
            or _resize(<void**>&t.xmax, cap * sizeof(int32_t))):
        return -1
    t.capacity = cap
    return 0


cdef inline int32_t _find(int32_t* parent, int32_t a) noexcept nogil:
    cdef int32_t root = a, nxt
    while parent[root] != root:
        root = parent[root]
    while parent[a] != root:  # path compression
        nxt = parent[a]
        parent[a] = root
        a = nxt
    return root


cdef inline void _union(int32_t* parent, int32_t a, int32_t b) noexcept nogil:
    a = _find(parent, a)
    b = _find(parent, b)
    if a < b:
        parent[b] = a
    elif b < a:
        parent[a] = b


cdef inline void _add(Table* t, int32_t lab, int32_t y, int32_t x) noexcept nogil:
    t.count[lab] += 1
    if y > t.ymax[lab]:
        t.ymax[lab] = y
    if x < t.xmin[lab]:
        t.xmin[lab] = x
    if x > t.xmax[lab]:
        t.xmax[lab] = x


cdef inline int32_t _label_pixel(int32_t[:, ::1] out, Table* t, Py_ssize_t y,
                                 Py_ssize_t x) noexcept nogil:
    """The label of source pixel (y, x) from its scanned neighbours (left, upper-left,
    up, upper-right; 8-connectivity), merging the labels it joins, or a new one; its
    count and box updated and ``out[y, x]`` set. 0 on no memory.
    """
    cdef Py_ssize_t nx = out.shape[1]
    cdef int32_t lab, up, left, upleft, upright
    up = out[y - 1, x] if y > 0 else 0
    if up:
        lab = up
    else:
        left = out[y, x - 1] if x > 0 else 0
        upright = out[y - 1, x + 1] if (y > 0 and x + 1 < nx) else 0
        if left:
            lab = left
            if upright:
                _union(t.parent, left, upright)
        else:
            upleft = out[y - 1, x - 1] if (y > 0 and x > 0) else 0
            if upleft:
                lab = upleft
                if upright:
                    _union(t.parent, upleft, upright)
            elif upright:
                lab = upright
            else:
                if t.size == t.capacity and _grow(t) != 0:
                    return 0
                lab = <int32_t>t.size
                t.size += 1
                t.parent[lab] = lab
                t.count[lab] = 0
                t.ymin[lab] = <int32_t>y
                t.ymax[lab] = <int32_t>y
                t.xmin[lab] = <int32_t>x
                t.xmax[lab] = <int32_t>x
    out[y, x] = lab
    _add(t, lab, <int32_t>y, <int32_t>x)
    return lab


cdef int _scan(const double[:, ::1] data, const threshold_t[:, ::1] threshold,
               const uint8_t[:, ::1] mask, int32_t[:, ::1] out, Table* t) noexcept nogil:
    """First pass: provisional labels, their unions, counts and boxes; -1 on no memory."""
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1], y, x
    for y in range(ny):
        for x in range(nx):
            # (a float32 threshold compares as float64, as NumPy promotes it)
            if mask[y, x] or not (data[y, x] > <double>threshold[y, x]):
                out[y, x] = 0
            elif _label_pixel(out, t, y, x) == 0:
                return -1
    return 0


cdef int _scan_sources(int32_t[:, ::1] out, Table* t) noexcept nogil:
    """`_scan` of a map whose non-zero pixels are the source pixels, labelled in place.

    The pixel's own value is read before its label is written; the neighbours read
    (left, upper-left, up, upper-right) are labels already.
    """
    cdef Py_ssize_t ny = out.shape[0], nx = out.shape[1], y, x
    for y in range(ny):
        for x in range(nx):
            if out[y, x] != 0 and _label_pixel(out, t, y, x) == 0:
                return -1
    return 0


cdef int _table_init(Table* t) noexcept:
    """Allocate an empty table (label 0 only); -1 on no memory (free it either way)."""
    t.capacity = 4096
    t.size = 1
    t.parent = <int32_t*>malloc(t.capacity * sizeof(int32_t))
    t.count = <int64_t*>malloc(t.capacity * sizeof(int64_t))
    t.ymin = <int32_t*>malloc(t.capacity * sizeof(int32_t))
    t.ymax = <int32_t*>malloc(t.capacity * sizeof(int32_t))
    t.xmin = <int32_t*>malloc(t.capacity * sizeof(int32_t))
    t.xmax = <int32_t*>malloc(t.capacity * sizeof(int32_t))
    if (t.parent == NULL or t.count == NULL or t.ymin == NULL or t.ymax == NULL
            or t.xmin == NULL or t.xmax == NULL):
        return -1
    t.parent[0] = 0
    return 0


cdef void _table_free(Table* t) noexcept:
    free(t.parent)
    free(t.count)
    free(t.ymin)
    free(t.ymax)
    free(t.xmin)
    free(t.xmax)


cdef object _finish(Table* t, int32_t[:, ::1] out, Py_ssize_t npixels, int n_threads):
    """Resolve the provisional labels of ``out``; return ``(n, bbox, area)``."""
    cdef Py_ssize_t ny = out.shape[0], nx = out.shape[1], y, x, p, n = 0
    cdef int32_t root, f
    cdef int32_t* final = NULL
    try:
        # roots first (a root is smaller than every label of its segment): fold the
        # counts and boxes into the roots
        for p in range(1, t.size):
            root = _find(t.parent, <int32_t>p)
            if root != p:
                t.count[root] += t.count[p]
                if t.ymin[p] < t.ymin[root]:
                    t.ymin[root] = t.ymin[p]
                if t.ymax[p] > t.ymax[root]:
                    t.ymax[root] = t.ymax[p]
                if t.xmin[p] < t.xmin[root]:
                    t.xmin[root] = t.xmin[p]
                if t.xmax[p] > t.xmax[root]:
                    t.xmax[root] = t.xmax[p]
        final = <int32_t*>malloc(t.size * sizeof(int32_t))
        if final == NULL:
            raise MemoryError("no memory for the segment table")
        final[0] = 0
        # number the kept roots in the order of their labels (first-pixel raster order)
        for p in range(1, t.size):
            if t.parent[p] == p:
                if t.count[p] >= npixels:
                    n += 1
                    final[p] = <int32_t>n
                else:
                    final[p] = 0
        bbox = np.empty((n, 4), dtype=np.int32)
        area = np.empty(n, dtype=np.int64)
        for p in range(1, t.size):
            if t.parent[p] == p:
                f = final[p]
                if f:
                    bbox[f - 1, 0] = t.ymin[p]
                    bbox[f - 1, 1] = t.ymax[p]
                    bbox[f - 1, 2] = t.xmin[p]
                    bbox[f - 1, 3] = t.xmax[p]
                    area[f - 1] = t.count[p]
            else:
                final[p] = final[t.parent[p]]  # parent is a root after the fold
        with nogil:
            for y in prange(ny, num_threads=n_threads, schedule="static"):
                for x in range(nx):
                    if out[y, x]:
                        out[y, x] = final[out[y, x]]
        return n, bbox, area
    finally:
        free(final)


def label_above(const double[:, ::1] data, const threshold_t[:, ::1] threshold,
                const uint8_t[:, ::1] mask, int32_t[:, ::1] out, Py_ssize_t npixels,
                int n_threads):
    """Label the segments of ``data > threshold`` outside ``mask`` into ``out``.

    Returns ``(n, bbox, area)``: the number of segments kept (``>= npixels`` pixels),
    their ``(ymin, ymax, xmin, xmax)`` (inclusive) as an ``(n, 4)`` int32 array and
    their pixel counts (int64).
    """
    cdef Table t
    cdef int status
    try:
        if _table_init(&t) != 0:
            raise MemoryError("no memory for the segment table")
        with nogil:
            status = _scan(data, threshold, mask, out, &t)
        if status != 0:
            raise MemoryError("no memory for the segment table")
        return _finish(&t, out, npixels, n_threads)
    finally:
        _table_free(&t)


def label_sources(int32_t[:, ::1] out, Py_ssize_t npixels, int n_threads):
    """Label in place the segments of the non-zero pixels of ``out``.

    The labels, boxes and areas `label_above` gives for the same source pixels.
    """
    cdef Table t
    cdef int status
    try:
        if _table_init(&t) != 0:
            raise MemoryError("no memory for the segment table")
        with nogil:
            status = _scan_sources(out, &t)
        if status != 0:
            raise MemoryError("no memory for the segment table")
        return _finish(&t, out, npixels, n_threads)
    finally:
        _table_free(&t)


cdef void _moments_one(const double[:, ::1] conv, const double[:, ::1] data,
                       const double[:, ::1] error, const uint8_t[:, ::1] mask,
                       const int32_t[:, ::1] segm, int32_t label, Py_ssize_t y0,
                       Py_ssize_t y1, Py_ssize_t x0, Py_ssize_t x1, double* out) noexcept nogil:
    """One segment's moments and sums (see ``segment_moments``)."""
    cdef Py_ssize_t y, x
    cdef double v, m00 = 0.0, m10 = 0.0, m01 = 0.0, flux = 0.0, var = 0.0, dx, dy
    cdef double mu20 = 0.0, mu11 = 0.0, mu02 = 0.0, xc, yc
    cdef Py_ssize_t area = 0
    for y in range(y0, y1 + 1):
        for x in range(x0, x1 + 1):
            if segm[y, x] != label or mask[y, x]:
                continue
            v = data[y, x]
            if v == v and v - v == 0.0:  # finite
                flux += v
                var += error[y, x] * error[y, x]
                area += 1
            v = conv[y, x]
            if v == v and v - v == 0.0 and v > 0.0:
                m00 += v
                m10 += (y - y0) * v
                m01 += (x - x0) * v
    yc = m10 / m00  # NaN when no pixel has moment data (as photutils)
    xc = m01 / m00
    for y in range(y0, y1 + 1):
        for x in range(x0, x1 + 1):
            if segm[y, x] != label or mask[y, x]:
                continue
            v = conv[y, x]
            if v == v and v - v == 0.0 and v > 0.0:
                dy = (y - y0) - yc
                dx = (x - x0) - xc
                mu20 += dy * dy * v
                mu11 += dy * dx * v
                mu02 += dx * dx * v
    out[0] = m00
    out[1] = xc + x0
    out[2] = yc + y0
    out[3] = mu02  # x variance sum
    out[4] = mu11
    out[5] = mu20  # y variance sum
    out[6] = flux
    out[7] = var
    out[8] = <double>area


def segment_moments(const double[:, ::1] conv, const double[:, ::1] data,
                    const double[:, ::1] error, const uint8_t[:, ::1] mask,
                    const int32_t[:, ::1] segm, const int32_t[::1] labels,
                    const int32_t[:, ::1] bbox, double[:, ::1] out, int n_threads):
    """Fill ``out[k, :]`` with source k's moments and sums (OpenMP over sources).

    Columns: sum of the moment image, x and y centroid (image pixels), the central
    second moments sum (x-x̄)², sum (x-x̄)(y-ȳ), sum (y-ȳ)² of the moment image, the
    segment's data sum, its error-squared sum and its count of finite data pixels.
    The moment image is ``conv`` on the segment's unmasked pixels, zero where it is
    not finite or negative (photutils' ``SourceCatalog`` moment data).
    """
    cdef Py_ssize_t n = labels.shape[0], k
    with nogil:
        for k in prange(n, num_threads=n_threads, schedule="dynamic", chunksize=16):
            _moments_one(conv, data, error, mask, segm, labels[k], bbox[k, 0], bbox[k, 1],
                         bbox[k, 2], bbox[k, 3], &out[k, 0])


cdef inline float _half_to_float(uint16_t h) noexcept nogil:
    """IEEE binary16 -> binary32 (exact: every half value is a float)."""
    cdef uint32_t sign = (<uint32_t>(h & 0x8000)) << 16
    cdef uint32_t exponent = (h >> 10) & 0x1F
    cdef uint32_t mantissa = h & 0x3FF
    cdef uint32_t bits
    cdef float out
    if exponent == 0x1F:  # inf, NaN
        bits = sign | 0x7F800000 | (mantissa << 13)
    elif exponent != 0:  # normal
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13)
    elif mantissa == 0:  # signed zero
        bits = sign
    else:  # subnormal: normalise
        exponent = 113
        while not (mantissa & 0x400):
            mantissa <<= 1
            exponent -= 1
        bits = sign | (exponent << 23) | ((mantissa & 0x3FF) << 13)
    memcpy(&out, &bits, 4)
    return out


ctypedef fused error_t:
    float
    uint16_t  # float16 bits


def detection_inputs(const float[:, ::1] data, const error_t[:, ::1] error,
                     const uint32_t[:, ::1] dq, uint32_t exclude, uint8_t[:, ::1] mask,
                     float[:, ::1] image, int n_threads):
    """Mask and masked float32 image in one pass (OpenMP over rows).

    ``mask`` = data or error not finite, error <= 0, or ``dq & exclude``; ``image`` is
    the data with NaN where masked.
    """
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1], y, x
    cdef float d, e
    cdef bint bad
    with nogil:
        for y in prange(ny, num_threads=n_threads, schedule="static"):
            for x in range(nx):
                d = data[y, x]
                if error_t is float:
                    e = error[y, x]
                else:
                    e = _half_to_float(error[y, x])
                bad = (not (d - d == 0.0) or not (e - e == 0.0) or not (e > 0.0)
                       or (dq[y, x] & exclude) != 0)
                mask[y, x] = bad
                image[y, x] = NAN if bad else d


def masked_error(const error_t[:, ::1] error, const uint8_t[:, ::1] mask,
                 double[:, ::1] out, int n_threads):
    """``out`` = the error as float64, NaN where ``mask`` (OpenMP over rows)."""
    cdef Py_ssize_t ny = error.shape[0], nx = error.shape[1], y, x
    with nogil:
        for y in prange(ny, num_threads=n_threads, schedule="static"):
            for x in range(nx):
                if mask[y, x]:
                    out[y, x] = NAN
                elif error_t is float:
                    out[y, x] = error[y, x]
                else:
                    out[y, x] = _half_to_float(error[y, x])
