"""Sky statistics, image overlaps and the sky-matching solution (romancal 1.1 / stcal 1.20).

The algorithm is stcal 1.20's ``stcal.skymatch`` as romancal 1.1's ``SkyMatchStep``
uses it, rearranged so that no more than one image is needed at a time:

1. **Footprints** (`footprint_radec`): the image's outer pixel edges (corners, plus a
   vertex every ``stepsize`` pixels if given) mapped to the sky, as stcal's
   ``_calc_bounding_polygon``.
2. **Overlaps** (`overlap_polygons`): stcal intersects the footprints as spherical
   polygons (great-circle edges, ``spherical_geometry``). Here every footprint is
   projected onto one tangent plane (gnomonic projection at the footprints' mean
   direction). The gnomonic projection maps great circles to straight lines, so
   the planar intersection of the projected polygons (Sutherland-Hodgman clipping;
   footprints are convex) is exactly the projection of the spherical intersection,
   and its vertices, projected back, are the spherical polygon's vertices. Areas are
   planar areas in the tangent plane (only compared with zero, as stcal does).
3. **Statistics** (`image_sky_statistics`): for one image, the statistic of its good
   pixels (``dqbits``, finite) over the whole image and inside each overlap
   polygon, whose vertices are mapped into the image's pixels through its inverse WCS
   and filled (`polygon_mask`: pixels whose centres are inside, even-odd rule),
   as stcal's ``SkyImage.calc_sky``; the statistic itself is
   `romancore.skystats.sky_statistic` (stsci.imagestats' rules).
4. **Solution** (`solve_sky`): stcal's ``skymatch``: for ``match``, each pair of
   overlapping images ``(i, j)`` with statistics ``s_ij`` (image ``i`` in the
   overlap) and pixel counts ``n_ij`` gives one equation
   ``w (d_i - d_j) = w (s_ij - s_ji)``, ``w = (n_ij + n_ji) / 2``, solved in the
   least-squares, minimum-norm sense (pseudo-inverse, rcond 1e-12), then shifted so
   that the lowest (``match_down``) or highest offset is 0; images in no valid pair get
   no offset. ``global`` takes the minimum of the whole-image statistics (minus each
   image's match offset) for every image, ``local`` each image's own.

Per image only its statistics are kept (one number and a pixel count per overlap),
so memory does not grow with the number of images beyond those numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from romancore.skystats import SkyStatistic, good_sky_pixels, sky_statistic

__all__ = [
    "SKY_METHODS",
    "SkyParameters",
    "SkySolution",
    "TangentPlane",
    "clip_polygon",
    "footprint_radec",
    "good_pixel_mask",
    "image_sky_statistics",
    "overlap_polygons",
    "polygon_area",
    "polygon_mask",
    "polygon_window",
    "solve_match",
    "solve_sky",
]

#: ``skymethod`` values (romancal 1.1's SkyMatchStep).
SKY_METHODS = ("local", "global", "match", "global+match")


# ----------------------------------------------------------------------- footprints


def footprint_radec(
    wcs: Callable[..., Any], shape: Sequence[int], stepsize: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return the image's bounding polygon on the sky (closed: last vertex = first).

    As stcal's ``_calc_bounding_polygon``: the outer pixel edges (pixel centres are
    integers, so the corners are at -0.5 and n - 0.5), counter-clockwise in pixels
    from (-0.5, -0.5); with ``stepsize`` each side is cut into
    ``max(2, ceil((n + 1) / stepsize))`` vertices.

    Parameters
    ----------
    wcs : callable
        ``wcs(x, y, with_bounding_box=False) -> (ra, dec)`` in degrees (a gwcs).
    shape : sequence of int
        ``(ny, nx)``.
    stepsize : int or None, optional
        Largest vertex spacing in pixels (None: the four corners only).

    Returns
    -------
    ra, dec : numpy.ndarray
        Vertices in degrees.
    """
    ny, nx = int(shape[0]), int(shape[1])
    if stepsize is None:
        nint_x = nint_y = 2
    else:
        nint_x = max(2, int(np.ceil((nx + 1.0) / stepsize)))
        nint_y = max(2, int(np.ceil((ny + 1.0) / stepsize)))
    xs = np.linspace(-0.5, nx - 0.5, nint_x)
    ys = np.linspace(-0.5, ny - 0.5, nint_y)[1:-1]
    x = np.concatenate([xs, np.full(ys.size, nx - 0.5), xs[::-1], np.full(ys.size, -0.5),
                        xs[:1]])
    y = np.concatenate([np.full(xs.size, -0.5), ys, np.full(xs.size, ny - 0.5), ys[::-1],
                        [-0.5]])
    ra, dec = wcs(x, y, with_bounding_box=False)
    ra, dec = np.array(ra, dtype=float), np.array(dec, dtype=float)
    ra[-1], dec[-1] = ra[0], dec[0]
    return ra, dec


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


@dataclass(frozen=True)
class TangentPlane:
    """A gnomonic (TAN) projection about the direction ``center`` (a unit vector).

    Great circles project to straight lines, which makes planar polygon clipping exact
    for polygons with great-circle edges (Calabretta & Greisen 2002, sec. 5.1.3).
    """

    center: np.ndarray
    east: np.ndarray
    north: np.ndarray

    @classmethod
    def about(cls, ra: np.ndarray, dec: np.ndarray) -> TangentPlane:
        """Return the plane tangent at the mean direction of the given points.

        Parameters
        ----------
        ra, dec : numpy.ndarray
            Points (deg).

        Returns
        -------
        TangentPlane
            The projection.

        Raises
        ------
        ValueError
            If the points have no finite mean direction.
        """
        vectors = _unit(np.ravel(ra), np.ravel(dec))
        mean = vectors.mean(axis=0)
        norm = np.linalg.norm(mean)
        if not np.isfinite(norm) or norm < 1e-6:
            raise ValueError("the image footprints have no common tangent plane")
        center = mean / norm
        pole = np.array([0.0, 0.0, 1.0])
        east = np.cross(pole, center)
        if np.linalg.norm(east) < 1e-12:  # centre at a pole
            east = np.array([0.0, 1.0, 0.0])
        east /= np.linalg.norm(east)
        north = np.cross(center, east)
        return cls(center, east, north)

    def project(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Return ``(n, 2)`` plane coordinates (radians at the centre) of points.

        Parameters
        ----------
        ra, dec : numpy.ndarray
            Points (deg), in the hemisphere about the centre.

        Returns
        -------
        numpy.ndarray
            ``xi, eta`` per point.

        Raises
        ------
        ValueError
            If a point is 90 deg or more from the centre.
        """
        v = _unit(np.asarray(ra, float), np.asarray(dec, float))
        cos_c = v @ self.center
        if np.any(cos_c <= 1e-6):
            raise ValueError("image footprints span more than a hemisphere")
        return np.stack([(v @ self.east) / cos_c, (v @ self.north) / cos_c], axis=-1)

    def unproject(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(ra, dec)`` (deg) of plane points (inverse of `project`).

        Parameters
        ----------
        xy : numpy.ndarray
            ``(n, 2)`` plane coordinates.

        Returns
        -------
        ra, dec : numpy.ndarray
            Degrees, RA in [0, 360).
        """
        xy = np.asarray(xy, float)
        v = self.center + xy[:, :1] * self.east + xy[:, 1:2] * self.north
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        ra = np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360.0
        dec = np.degrees(np.arcsin(np.clip(v[:, 2], -1.0, 1.0)))
        return ra, dec


def polygon_area(xy: np.ndarray) -> float:
    """Signed area (shoelace formula) of an open polygon; positive if counter-clockwise.

    Parameters
    ----------
    xy : numpy.ndarray
        ``(n, 2)`` vertices, not repeating the first.

    Returns
    -------
    float
        The area.
    """
    if len(xy) < 3:
        return 0.0
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _open_ccw(xy: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy, float)
    if len(xy) > 1 and np.allclose(xy[0], xy[-1], rtol=0, atol=1e-15):
        xy = xy[:-1]
    return xy[::-1].copy() if polygon_area(xy) < 0 else xy


def clip_polygon(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Intersect a polygon with a convex polygon (Sutherland & Hodgman 1974).

    Parameters
    ----------
    subject : numpy.ndarray
        ``(n, 2)`` vertices (open or closed, either orientation).
    clip : numpy.ndarray
        ``(m, 2)`` vertices of a convex polygon (open or closed, either orientation).

    Returns
    -------
    numpy.ndarray
        ``(k, 2)`` open counter-clockwise vertices of the intersection (k < 3: none).
    """
    out = _open_ccw(subject)
    window = _open_ccw(clip)
    for a, b in zip(window, np.roll(window, -1, axis=0), strict=True):
        if len(out) == 0:
            break
        edge = b - a
        # > 0 on the inner (left) side of the directed edge a -> b
        side = edge[0] * (out[:, 1] - a[1]) - edge[1] * (out[:, 0] - a[0])
        kept: list[np.ndarray] = []
        for k in range(len(out)):
            p, q = out[k - 1], out[k]
            sp, sq = side[k - 1], side[k]
            if sq >= 0:
                if sp < 0:
                    kept.append(p + (q - p) * (sp / (sp - sq)))
                kept.append(q)
            elif sp >= 0:
                kept.append(p + (q - p) * (sp / (sp - sq)))
        out = np.array(kept, dtype=float).reshape(-1, 2)
    return out


def overlap_polygons(
    footprints: Sequence[tuple[np.ndarray, np.ndarray]],
) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray, float]]:
    """Return the overlap of every pair of footprints that intersect.

    Parameters
    ----------
    footprints : sequence of (ra, dec)
        Closed footprint polygons (`footprint_radec`), in degrees.

    Returns
    -------
    dict
        ``(i, j) -> (ra, dec, area)`` for ``i < j``: the intersection's vertices
        (closed polygon, degrees) and its area in the tangent plane (steradians near
        the centre); pairs with no overlap (area 0) are absent.

    Raises
    ------
    ValueError
        If the footprints are not finite or span more than a hemisphere.
    """
    if not footprints:
        return {}
    for ra, dec in footprints:
        if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
            raise ValueError("an image footprint has non-finite sky coordinates")
    plane = TangentPlane.about(np.concatenate([f[0] for f in footprints]),
                               np.concatenate([f[1] for f in footprints]))
    flat = [plane.project(ra, dec) for ra, dec in footprints]
    boxes = [(p.min(axis=0), p.max(axis=0)) for p in flat]
    result: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, float]] = {}
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            if np.any(boxes[i][1] < boxes[j][0]) or np.any(boxes[j][1] < boxes[i][0]):
                continue
            inter = clip_polygon(flat[i], flat[j])
            area = polygon_area(inter)
            if len(inter) < 3 or not area > 0.0:
                continue
            ra, dec = plane.unproject(np.vstack([inter, inter[:1]]))
            result[(i, j)] = (ra, dec, area)
    return result


# ----------------------------------------------------------------------- pixel masks


def polygon_mask(x: np.ndarray, y: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Return the pixels of an image whose centres are inside a polygon (even-odd rule).

    A centre on a left or bottom edge is inside, on a right or top edge outside (the
    half-open rule), so polygons sharing an edge share no pixel.

    Parameters
    ----------
    x, y : numpy.ndarray
        Vertices in pixel coordinates (pixel centres at integers), open or closed.
    shape : sequence of int
        ``(ny, nx)`` of the mask.

    Returns
    -------
    numpy.ndarray of bool
        The mask.
    """
    mask = np.zeros((int(shape[0]), int(shape[1])), dtype=bool)
    window = polygon_window(x, y, shape)
    if window is not None:
        box, inside = window
        mask[box] = inside
    return mask


def polygon_window(x: np.ndarray, y: np.ndarray, shape: Sequence[int]
                   ) -> tuple[tuple[slice, slice], np.ndarray] | None:  # fmt: skip
    """Return `polygon_mask` as its bounding box and the mask inside it.

    Parameters
    ----------
    x, y : numpy.ndarray
        Vertices in pixel coordinates (pixel centres at integers), open or closed.
    shape : sequence of int
        ``(ny, nx)`` of the image.

    Returns
    -------
    tuple or None
        ``(box, inside)``: ``box`` (two slices) bounds every pixel of the polygon and
        ``inside`` is ``polygon_mask(x, y, shape)[box]``; None when no pixel is inside.
    """
    ny, nx = int(shape[0]), int(shape[1])
    x, y = np.asarray(x, float), np.asarray(y, float)
    good = np.isfinite(x) & np.isfinite(y)
    x, y = x[good], y[good]
    if x.size < 3:
        return None
    x0, y0, x1, y1 = x, y, np.roll(x, -1), np.roll(y, -1)
    r0 = max(0, int(np.ceil(y.min())))
    r1 = min(ny - 1, int(np.ceil(y.max())) - 1)
    if r1 < r0:
        return None
    rows = np.arange(r0, r1 + 1, dtype=float)
    slanted = y0 != y1
    x0, y0, x1, y1 = x0[slanted], y0[slanted], x1[slanted], y1[slanted]
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    # crossing of row r with each edge, for lo <= r < hi
    with np.errstate(invalid="ignore", divide="ignore"):
        xs = x0[:, None] + (rows[None, :] - y0[:, None]) * ((x1 - x0) / (y1 - y0))[:, None]
    inside = (rows[None, :] >= lo[:, None]) & (rows[None, :] < hi[:, None])
    xs = np.sort(np.where(inside, xs, np.inf), axis=0)
    # columns c with x_a <= c < x_b for each pair of crossings
    cols = np.clip(np.ceil(np.where(np.isfinite(xs), xs, 0.0)), 0, nx).astype(np.int64)
    # the spans [start, stop) of each pair of crossings, as arrays (row, start, stop)
    first, second = xs[0:-1:2], xs[1::2]
    valid = np.isfinite(first) & np.isfinite(second) & (cols[1::2] > cols[0:-1:2])
    pair, rs = np.nonzero(valid)
    if rs.size == 0:
        return None
    starts, stops = cols[0:-1:2][pair, rs], cols[1::2][pair, rs]
    top, left = int(rs.min()), int(starts.min())
    box = (slice(r0 + top, r0 + int(rs.max()) + 1), slice(left, int(stops.max())))
    window = np.zeros((box[0].stop - box[0].start, box[1].stop - left), dtype=bool)
    for r, a, b in zip((rs - top).tolist(), (starts - left).tolist(), (stops - left).tolist(),
                       strict=True):  # fmt: skip
        window[r, a:b] = True
    return box, window


def good_pixel_mask(data: np.ndarray, dq: np.ndarray | None, bad_bits: int | None) -> np.ndarray:
    """Return finite pixels with none of ``bad_bits`` set (romancal's sky pixel mask).

    Parameters
    ----------
    data : numpy.ndarray
        The image.
    dq : numpy.ndarray or None
        Its DQ flags.
    bad_bits : int or None
        Flags that exclude a pixel (None: only non-finite values are excluded).

    Returns
    -------
    numpy.ndarray of bool
        C-contiguous mask.
    """
    data = np.ascontiguousarray(data, dtype=np.float32)
    if dq is not None and bad_bits is not None:
        dq = np.ascontiguousarray(dq, dtype=np.uint32)
    return good_sky_pixels(data, dq, bad_bits)


# ----------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class SkyParameters:
    """The sky statistic's parameters (romancal's ``skystat, lower, upper, nclip, ...``)."""

    skystat: str = "mode"
    lower: float | None = None
    upper: float | None = None
    nclip: int = 5
    lsigma: float = 4.0
    usigma: float = 4.0
    binwidth: float = 0.1

    def __call__(self, data: np.ndarray, mask: np.ndarray) -> SkyStatistic:
        """Return the statistic of ``data[mask]`` (`romancore.skystats.sky_statistic`).

        Parameters
        ----------
        data : numpy.ndarray of float32
            Image.
        mask : numpy.ndarray of bool
            Pixels used.

        Returns
        -------
        SkyStatistic
            Value (or None) and pixel count.
        """
        return sky_statistic(
            data, mask, self.skystat, lower=self.lower, upper=self.upper, nclip=self.nclip,
            lsigma=self.lsigma, usigma=self.usigma, binwidth=self.binwidth,
        )


def image_sky_statistics(
    data: np.ndarray,
    good: np.ndarray,
    world_to_pixel: Callable[..., Any] | None,
    overlaps: Mapping[int, tuple[np.ndarray, np.ndarray]],
    params: SkyParameters,
    *,
    whole: bool = True,
) -> tuple[SkyStatistic | None, dict[int, SkyStatistic]]:
    """Return one image's statistic over all good pixels and within each overlap.

    Parameters
    ----------
    data : numpy.ndarray of float32, shape (ny, nx)
        The image.
    good : numpy.ndarray of bool
        Its usable pixels (`good_pixel_mask`).
    world_to_pixel : callable or None
        ``f(ra, dec, with_bounding_box=False) -> (x, y)`` (the inverse WCS); needed
        only when ``overlaps`` is not empty.
    overlaps : mapping
        Other image's index -> overlap polygon ``(ra, dec)`` (closed, deg).
    params : SkyParameters
        The statistic.
    whole : bool, optional
        Also compute the whole-image statistic (``global``/``local``).

    Returns
    -------
    whole : SkyStatistic or None
        Over all good pixels (None when not asked).
    pairs : dict
        Other index -> statistic in the overlap (value None: no pixel or no value).
    """
    data = np.ascontiguousarray(data, dtype=np.float32)
    good = np.ascontiguousarray(good, dtype=bool)
    full = params(data, good) if whole else None
    pairs: dict[int, SkyStatistic] = {}
    for other, (ra, dec) in overlaps.items():
        if len(ra) < 4:  # stcal skips polygons of fewer than 3 distinct vertices
            pairs[other] = SkyStatistic(None, 0)
            continue
        x, y = world_to_pixel(ra, dec, with_bounding_box=False)
        # the statistic's passes read only the polygon's bounding box: the order of
        # the pixels, which the statistic depends on, is unchanged, and the pixels
        # outside the region add nothing
        window = polygon_window(x, y, data.shape)
        if window is not None:
            box, region = window
            region &= good[box]
        if window is None or not region.any():
            pairs[other] = SkyStatistic(None, 0)
            continue
        # the window is read in place (rows of the image), not copied
        pairs[other] = params(data[box], region)
    return full, pairs


# ----------------------------------------------------------------------- solution


def solve_match(
    n_images: int, pairs: Mapping[tuple[int, int], tuple[SkyStatistic, SkyStatistic]]
) -> tuple[np.ndarray, int]:
    """Return each image's relative sky offset from the pairwise overlap statistics.

    stcal's ``_find_optimum_sky_deltas``: for each pair ``(i, j)`` where both
    statistics exist with positive pixel counts, one row of ``K d = F`` with
    ``K[i] = w``, ``K[j] = -w``, ``F = w (s_ij - s_ji)``, ``w = (n_ij + n_ji) / 2``;
    ``d = pinv(K, rcond=1e-12) F``; images in no such pair get NaN.

    Parameters
    ----------
    n_images : int
        Number of images.
    pairs : mapping
        ``(i, j) -> (statistic of i in the overlap, statistic of j in the overlap)``.

    Returns
    -------
    deltas : numpy.ndarray of float64
        Offsets (NaN: unknown), not yet shifted (see `solve_sky`).
    rank : int
        Rank of ``K`` (below ``n_images - 1``: some images are not linked to the
        others, and each linked set is matched on its own).
    """
    rows: list[np.ndarray] = []
    rhs: list[float] = []
    used = np.zeros(n_images, dtype=bool)
    for (i, j) in sorted(pairs):
        s_i, s_j = pairs[(i, j)]
        if s_i.value is None or s_j.value is None or s_i.npix <= 0 or s_j.npix <= 0:
            continue
        w = 0.5 * (s_i.npix + s_j.npix)
        row = np.zeros(n_images)
        row[i], row[j] = w, -w
        rows.append(row)
        rhs.append(w * (s_i.value - s_j.value))
        used[i] = used[j] = True
    if not rows:
        return np.full(n_images, np.nan), 0
    k_mat = np.array(rows)
    deltas = np.linalg.pinv(k_mat, rcond=1.0e-12) @ np.array(rhs)
    deltas[~used] = np.nan
    return deltas, int(np.linalg.matrix_rank(k_mat, 1.0e-12))


@dataclass
class SkySolution:
    """Result of `solve_sky`, per image.

    Attributes
    ----------
    level : list of float
        ``meta.background.level``: the initial level plus the computed sky.
    subtract : list of float
        What ``subtract=True`` removes from the data (the computed sky).
    valid : list of bool
        Whether the sky could be computed (``cal_step.skymatch`` COMPLETE / SKIPPED).
    match : numpy.ndarray
        The match offsets (NaN where unknown; empty without ``match``).
    rank_deficient : bool
        Whether some images or groups of images are not linked by overlaps.
    """

    level: list[float]
    subtract: list[float]
    valid: list[bool]
    match: np.ndarray = field(default_factory=lambda: np.empty(0))
    rank_deficient: bool = False


def solve_sky(
    n_images: int,
    skymethod: str,
    *,
    match_down: bool = True,
    whole: Sequence[SkyStatistic | None] | None = None,
    pairs: Mapping[tuple[int, int], tuple[SkyStatistic, SkyStatistic]] | None = None,
    initial: Sequence[float] | None = None,
) -> SkySolution:
    """Combine the statistics into each image's sky, as stcal's ``skymatch``.

    Parameters
    ----------
    n_images : int
        Number of images.
    skymethod : {'local', 'global', 'match', 'global+match'}
        The method.
    match_down : bool, optional
        Match to the lowest (True) or highest sky.
    whole : sequence of SkyStatistic or None
        Each image's whole-image statistic (needed unless ``skymethod == 'match'``).
    pairs : mapping
        Overlap statistics (`solve_match`; needed for the match methods).
    initial : sequence of float, optional
        Starting sky of each image (romancal: the previous ``level`` when
        ``subtract=True``; else 0). It is added to the level, not subtracted.

    Returns
    -------
    SkySolution
        Levels, amounts to subtract and validity.

    Raises
    ------
    ValueError
        For an unknown ``skymethod`` or missing statistics.
    """
    method = skymethod.lower()
    if method not in SKY_METHODS:
        raise ValueError(f"skymethod must be one of {SKY_METHODS}, got {skymethod!r}")
    do_match = "match" in method
    do_global = "global" in method
    offset = np.zeros(n_images)
    valid = [False] * n_images
    match = np.empty(0)
    rank_deficient = False
    if do_match:
        if pairs is None:
            raise ValueError("the match methods need the overlap statistics")
        match, rank = solve_match(n_images, pairs)
        known = np.isfinite(match)
        if known.any():
            match[known] -= match[known].min() if match_down else match[known].max()
        offset = np.where(known, match, 0.0)
        valid = [bool(v) for v in known]
        rank_deficient = rank < n_images - 1
    if do_global or not do_match:
        if whole is None:
            raise ValueError("the local and global methods need whole-image statistics")
        # each image's statistic after its match offset (stcal: calc_sky(delta=True))
        values = [None if s is None or s.value is None else s.value - offset[k]
                  for k, s in enumerate(whole)]
        if do_global:
            finite = [v for v in values if v is not None]
            if finite:
                extra = [min(finite)] * n_images
                valid = [True] * n_images
            else:
                extra = [0.0] * n_images  # validity stays as the match left it
        else:
            extra = [0.0 if v is None else v for v in values]
            valid = [v is not None for v in values]
        offset = offset + np.asarray(extra, dtype=float)
    start = np.zeros(n_images) if initial is None else np.asarray(initial, dtype=float)
    return SkySolution(
        level=[float(v) for v in start + offset],
        subtract=[float(v) for v in offset],
        valid=valid,
        match=match,
        rank_deficient=rank_deficient,
    )
