"""Per-source photometry of ``SourceCatalog``, computed for all sources at once.

photutils' `~photutils.segmentation.SourceCatalog` loops in Python over the sources
for its aperture-based properties; on a full WFI frame (~3000 sources) that is most of
``source_catalog``'s time. The functions here compute the same numbers with compiled
per-source loops (`romancore._srcmeasure`, OpenMP over sources), following
photutils 3.0's definitions for a catalog built with ``aperture_mask_method="mask"``
and no local background (as `.catalog.make_source_catalog` builds it):

* `kron_radius`: the first-moment radius ``sum(r I) / sum(I)`` over the pixels whose
  centre lies inside 6 x the moment ellipse (elliptical radius
  ``r = sqrt(cxx dx**2 + cxy dx dy + cyy dy**2)``), then photutils' rules (``> 6``:
  NaN; non-positive sums or ``< kron_params[1]``: ``kron_params[1]``; circularized
  radius ``<= kron_params[2]``: 0);
* `kron_photometry`: sums of ``data`` and ``error**2`` weighted by the exact overlap
  of each pixel with the Kron ellipse (semi-axes ``kron_params[0] * kron_radius`` x
  the moment semi-axes);
* `flux_radius`: the radius of the circle (exact overlap) holding ``fraction`` of the
  Kron flux, by Brent's method on ``[0.1, R]`` (``R = kron_params[0] * kron_radius *
  semimajor``), shrinking ``R`` by 10 % while the bracket has no sign change;
* `windowed_centroids`: SourceExtractor's XWIN/YWIN iteration (Gaussian window of
  ``sigma = 2 r_hl / 2.3548``, ``r_hl >= 0.5``, pixel centres within ``4 sigma``, at
  most 16 steps of twice the weighted offset, stopping below 1e-4 pixel), reset to
  the isophotal centroid when it leaves the 1-sigma moment ellipse or fails;
* `circular_photometry`: `photutils.aperture.aperture_photometry` with exact circular
  apertures (masked pixels excluded, neighbouring sources included);
* `segment_properties`: the segment-based properties (isophotal centroid, area,
  ``segment_flux(_err)`` and the moment shape: covariance with SourceExtractor's
  1/12 increments for thin sources, semi-axes, ``fwhm``, orientation, ellipticity,
  ellipse coefficients) from `romancore.segmentation.segment_moments`.

In every property but `circular_photometry`, pixels that are masked, have non-finite
data, or belong to another segment are excluded (``aperture_mask_method="mask"``).
Pixel overlaps are computed in the frame where the aperture is the unit disk; they
equal photutils' ``"exact"`` overlaps to rounding (~1e-15 per pixel), so the results
agree to ~1e-12 relative (the root finder's 2e-12 pixel tolerance for `flux_radius`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MeasureImage",
    "all_masked",
    "annulus_background",
    "circular_photometry",
    "excluded_pixels",
    "flux_radius",
    "kron_photometry",
    "kron_radius",
    "max_flux_radius",
    "prepare_image",
    "windowed_centroids",
]

#: photutils' Kron measurement aperture: 6 x the moment ellipse.
_KRON_SCALE = 6.0
#: astropy's ``gaussian_fwhm_to_sigma``.
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
#: scipy's ``brentq`` defaults (used by photutils' ``flux_radius``).
_XTOL = 2e-12
_RTOL = 4.0 * np.finfo(float).eps
_MAXITER = 100


@dataclass(frozen=True)
class MeasureImage:
    """Pixel arrays in the layout the kernels read, prepared once per image.

    Attributes
    ----------
    data : numpy.ndarray
        C-contiguous float64 image.
    error : numpy.ndarray or None
        C-contiguous float64 1-sigma error, or None.
    bad : numpy.ndarray
        uint8, 1 where the pixel is masked or its data is not finite.
    segmentation : numpy.ndarray
        C-contiguous int32 segmentation map (0: background).
    max_size : float
        photutils' limit on an aperture's box (``max(data.size, 1e6)`` pixels).
    """

    data: np.ndarray
    error: np.ndarray | None
    bad: np.ndarray
    segmentation: np.ndarray
    max_size: float


def prepare_image(
    data: np.ndarray,
    mask: np.ndarray | None,
    segmentation: np.ndarray,
    error: np.ndarray | None = None,
    *,
    bad: np.ndarray | None = None,
) -> MeasureImage:
    """Validate and convert the pixel arrays once for several measurements.

    Parameters
    ----------
    data : numpy.ndarray
        2-D (background-subtracted) image.
    mask : numpy.ndarray of bool or None
        Pixels to exclude.
    segmentation : numpy.ndarray of int
        Segmentation map, same shape (labels must fit in int32).
    error : numpy.ndarray, optional
        1-sigma error, same shape.
    bad : numpy.ndarray of bool, optional
        The excluded pixels already known: ``mask`` or non-finite ``data`` (see
        `excluded_pixels`); given, ``data`` is not read whole here (an image in a
        file keeps only the pages the measurements read) and ``mask`` is not used.

    Returns
    -------
    MeasureImage

    Raises
    ------
    ValueError
        If the arrays are not 2-D with the same shape, or the image is empty.
    """
    data = np.ascontiguousarray(data, dtype=np.float64)
    if data.ndim != 2 or data.size == 0:
        raise ValueError("data must be a non-empty 2-D array")
    arrays = {"segmentation": segmentation, "mask": mask, "error": error}
    for name, value in arrays.items():
        if value is not None and np.shape(value) != data.shape:
            raise ValueError(f"{name} must have the shape of data {data.shape}")
    segm = np.asarray(segmentation)
    if not np.issubdtype(segm.dtype, np.integer):
        raise ValueError("segmentation must be an integer array")
    if segm.dtype != np.int32:
        if segm.size and (segm.max() > np.iinfo(np.int32).max or segm.min() < 0):
            raise ValueError("segmentation labels must be in [0, 2**31)")
        segm = segm.astype(np.int32)
    segm = np.ascontiguousarray(segm)
    bad = excluded_pixels(data, mask) if bad is None else _checked_bad(bad, data.shape)
    err = None if error is None else np.ascontiguousarray(error, dtype=np.float64)
    return MeasureImage(data, err, bad.view(np.uint8), segm,
                        float(max(data.size, 1_000_000)))


def excluded_pixels(data: np.ndarray, mask: np.ndarray | None, rows: int | None = None
                    ) -> np.ndarray:  # fmt: skip
    """Return ``mask`` or non-finite ``data``, the pixels every measurement leaves out.

    Parameters
    ----------
    data : numpy.ndarray
        2-D image.
    mask : numpy.ndarray of bool or None
        Excluded pixels.
    rows : int, optional
        Compute a block of this many rows at a time, handing each block of a
        memory-mapped ``data`` back to the OS once read (an image in a file is then
        never resident whole). None: one pass.

    Returns
    -------
    numpy.ndarray of bool
    """
    if rows is None:
        bad = ~np.isfinite(data)
        if mask is not None:
            bad |= np.asarray(mask, dtype=bool)
        return bad
    from .._arrays import release_rows

    bad = np.empty(data.shape, dtype=bool)
    for r0 in range(0, data.shape[0], rows):
        r1 = min(data.shape[0], r0 + rows)
        np.logical_not(np.isfinite(data[r0:r1]), out=bad[r0:r1])
        if mask is not None:
            bad[r0:r1] |= np.asarray(mask[r0:r1], dtype=bool)
        release_rows(data, r0, r1)
    return bad


def _checked_bad(bad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    bad = np.ascontiguousarray(bad, dtype=bool)
    if bad.shape != shape:
        raise ValueError(f"bad must have the shape of data {shape}")
    return bad


def annulus_background(
    data: np.ndarray,
    mask: np.ndarray | None,
    x: np.ndarray,
    y: np.ndarray,
    r_in: float,
    r_out: float,
    *,
    sigma: float = 3.0,
    maxiters: int = 5,
    n_threads: int | None = None,
    bad: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the sigma-clipped median of each annulus and its standard error.

    For each position: the pixels whose centres lie in ``r_in < r <= r_out``
    (photutils' ``"center"`` annulus mask) and are neither masked nor non-finite,
    clipped as ``astropy.stats.SigmaClip(sigma, maxiters)`` clips (median centre,
    population standard deviation, inclusive bounds, until nothing changes); then
    the median and ``sqrt(pi / 2N) * std`` of the ``N`` kept values. romancal 1.1's
    ``aper_bkg_flux`` and its error. NaN where no pixel is left or the position is
    not finite.

    Parameters
    ----------
    data : numpy.ndarray
        2-D image.
    mask : numpy.ndarray of bool or None
        Excluded pixels.
    x, y : numpy.ndarray
        Annulus centres (pixels).
    r_in, r_out : float
        Inner and outer radii (pixels), ``0 <= r_in < r_out``.
    sigma : float, optional
        Clipping limit in standard deviations.
    maxiters : int, optional
        Maximum number of clipping iterations.
    n_threads : int, optional
        OpenMP threads.
    bad : numpy.ndarray of bool, optional
        ``mask`` or non-finite ``data``, already computed (`excluded_pixels`); given,
        ``mask`` is not used and ``data`` is read only around the positions.

    Returns
    -------
    median, error : numpy.ndarray
        One value per position.

    Raises
    ------
    ValueError
        If the radii are not finite with ``0 <= r_in < r_out``, or the arrays do not
        match.
    """
    from romancore import _srcmeasure

    if not (np.isfinite(r_in) and np.isfinite(r_out) and 0 <= r_in < r_out):
        raise ValueError(f"annulus radii must satisfy 0 <= r_in < r_out, got {r_in}, {r_out}")
    data = np.ascontiguousarray(data, dtype=np.float64)
    if data.ndim != 2 or data.size == 0:
        raise ValueError("data must be a non-empty 2-D array")
    if mask is not None and np.shape(mask) != data.shape:
        raise ValueError(f"mask must have the shape of data {data.shape}")
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64).ravel())
    y = _vector(y, x.size, "y")
    med = np.full(x.size, np.nan)
    sem = np.full(x.size, np.nan)
    if x.size == 0:
        return med, sem
    bad = excluded_pixels(data, mask) if bad is None else _checked_bad(bad, data.shape)
    _srcmeasure.annulus_clipped_median(data, bad.view(np.uint8), x, y, float(r_in),
                                       float(r_out), float(sigma), int(maxiters), med, sem,
                                       _threads(n_threads))
    return med, sem


def _vector(value: np.ndarray | float, n: int, name: str) -> np.ndarray:
    arr = np.ascontiguousarray(np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D")
    return arr


def _labels(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1 or (lab.size and not np.issubdtype(lab.dtype, np.integer)):
        raise ValueError("labels must be a 1-D integer array")
    if lab.size and (lab.min() <= 0 or lab.max() > np.iinfo(np.int32).max):
        raise ValueError("labels must be positive int32 values")
    return np.ascontiguousarray(lab, dtype=np.int32)


def _threads(n_threads: int | None) -> int:
    from romancore._threads import effective_n_threads

    return effective_n_threads(n_threads)


def all_masked(image: MeasureImage, labels: np.ndarray) -> np.ndarray:
    """Flag the sources without a usable segment pixel (photutils' ``_all_masked``).

    Parameters
    ----------
    image : MeasureImage
        The `prepare_image` arrays.
    labels : numpy.ndarray of int
        Source labels.

    Returns
    -------
    numpy.ndarray of bool
        True where every pixel of the segment is masked or not finite (or the label
        is absent).
    """
    return _all_masked(image, _labels(labels))


def _all_masked(image: MeasureImage, labels: np.ndarray) -> np.ndarray:
    if labels.size == 0:
        return np.zeros(0, dtype=bool)
    top = int(labels.max())
    segm = image.segmentation
    good = segm[(image.bad == 0) & (segm > 0) & (segm <= top)]
    counts = np.bincount(good, minlength=top + 1)
    return counts[labels] == 0


def _as_image(
    data: np.ndarray | MeasureImage,
    mask: np.ndarray | None,
    segmentation: np.ndarray | None,
    error: np.ndarray | None = None,
) -> MeasureImage:
    if isinstance(data, MeasureImage):
        return data
    if segmentation is None:
        raise ValueError("segmentation is required")
    return prepare_image(data, mask, segmentation, error)


def kron_radius(
    data: np.ndarray | MeasureImage,
    mask: np.ndarray | None,
    segmentation: np.ndarray | None,
    labels: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    semimajor: np.ndarray,
    semiminor: np.ndarray,
    orientation: np.ndarray,
    cxx: np.ndarray,
    cxy: np.ndarray,
    cyy: np.ndarray,
    *,
    kron_params: tuple[float, float, float] = (2.5, 1.4, 0.0),
    all_masked: np.ndarray | None = None,
    n_threads: int | None = None,
) -> np.ndarray:
    """Return photutils' (unscaled, first-moment) ``kron_radius`` in pixels.

    Parameters
    ----------
    data : numpy.ndarray or MeasureImage
        Background-subtracted image, or the `prepare_image` of it (then ``mask`` and
        ``segmentation`` are ignored).
    mask : numpy.ndarray of bool or None
        Excluded pixels.
    segmentation : numpy.ndarray of int
        Segmentation map.
    labels : numpy.ndarray of int
        The sources' labels.
    x, y : numpy.ndarray
        Isophotal centroids (``x_centroid``, ``y_centroid``).
    semimajor, semiminor : numpy.ndarray
        Moment semi-axes (``semimajor_axis``, ``semiminor_axis``), pixels.
    orientation : numpy.ndarray
        Moment orientation, degrees.
    cxx, cxy, cyy : numpy.ndarray
        Moment-ellipse coefficients (``ellipse_cxx`` ...), pixels**-2.
    kron_params : tuple of float, optional
        ``(scale, minimum radius, minimum circular radius)``; only ``0`` is supported
        as the minimum circular radius.
    all_masked : numpy.ndarray of bool, optional
        Sources without any usable segment pixel (computed if omitted).
    n_threads : int, optional
        OpenMP threads (`romancore` policy).

    Returns
    -------
    numpy.ndarray
        Kron radius (NaN where undefined, 0 where the circularized Kron radius is
        ``<= kron_params[2]``).
    """
    from romancore import _srcmeasure

    image = _as_image(data, mask, segmentation)
    k0, kmin, kcirc = (float(v) for v in kron_params)
    if kcirc != 0.0:
        raise ValueError("only kron_params[2] == 0 (no minimum circular radius) is supported")
    lab = _labels(labels)
    n = lab.size
    x, y, a, b, th = (_vector(v, n, name) for v, name in (
        (x, "x"), (y, "y"), (semimajor, "semimajor"), (semiminor, "semiminor"),
        (orientation, "orientation")))
    cxx, cxy, cyy = (_vector(v, n, "c") for v in (cxx, cxy, cyy))
    if n == 0:
        return np.zeros(0)
    masked = _all_masked(image, lab) if all_masked is None else np.asarray(all_masked, bool)
    a6 = a * _KRON_SCALE
    b6 = b * _KRON_SCALE
    theta = np.deg2rad(th)
    valid = (~masked & np.isfinite(x) & np.isfinite(y) & np.isfinite(a6) & np.isfinite(b6)
             & np.isfinite(theta) & ~((a6 == 0) & (b6 == 0)))
    numer = np.empty(n)
    denom = np.empty(n)
    _srcmeasure.kron_moments(image.data, image.bad, image.segmentation, lab, x, y, a6, b6,
                             theta, cxx, cxy, cyy, valid.view(np.uint8), _KRON_SCALE,
                             image.max_size, numer, denom, _threads(n_threads))
    with np.errstate(invalid="ignore", divide="ignore"):
        radius = np.where((numer <= 0) | (denom <= 0), kmin, numer / denom)
        radius[np.isnan(numer) | np.isnan(denom)] = np.nan
        radius[radius > _KRON_SCALE] = np.nan
        radius[radius < kmin] = kmin
        circ = k0 * radius * np.sqrt(a * b)
        radius[circ <= kcirc] = 0.0
    return radius


def kron_photometry(
    data: np.ndarray | MeasureImage,
    error: np.ndarray | None,
    mask: np.ndarray | None,
    segmentation: np.ndarray | None,
    labels: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    semimajor: np.ndarray,
    semiminor: np.ndarray,
    orientation: np.ndarray,
    kron_radius: np.ndarray,
    *,
    kron_params: tuple[float, float, float] = (2.5, 1.4, 0.0),
    all_masked: np.ndarray | None = None,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return photutils' ``kron_flux`` and ``kron_flux_err``.

    The exact-overlap sums of ``data`` and ``error**2`` in the ellipse of semi-axes
    ``kron_params[0] * kron_radius * (semimajor, semiminor)``, excluding masked
    pixels and other segments; NaN where the Kron radius or the shape is not finite,
    the source is all masked, the aperture misses the image or holds no usable pixel.

    Parameters
    ----------
    data : numpy.ndarray or MeasureImage
        Background-subtracted image, or its `prepare_image` (with the error).
    error : numpy.ndarray or None
        1-sigma error (ignored with a `MeasureImage`).
    mask, segmentation, labels, x, y, semimajor, semiminor, orientation
        As for `kron_radius`.
    kron_radius : numpy.ndarray
        `kron_radius` of each source.
    kron_params : tuple of float, optional
        As for `kron_radius`.
    all_masked : numpy.ndarray of bool, optional
        As for `kron_radius`.
    n_threads : int, optional
        OpenMP threads.

    Returns
    -------
    flux, flux_err : numpy.ndarray
    """
    from romancore import _srcmeasure

    image = _as_image(data, mask, segmentation, error)
    if image.error is None:
        raise ValueError("kron_photometry needs the error array")
    lab = _labels(labels)
    n = lab.size
    x, y, a, b, th, kr = (_vector(v, n, "vector") for v in (
        x, y, semimajor, semiminor, orientation, kron_radius))
    if n == 0:
        return np.zeros(0), np.zeros(0)
    masked = _all_masked(image, lab) if all_masked is None else np.asarray(all_masked, bool)
    scale = kr * float(kron_params[0])
    major = a * scale
    minor = b * scale
    theta = np.deg2rad(th)
    valid = (~masked & np.isfinite(x) & np.isfinite(y) & np.isfinite(major)
             & np.isfinite(minor) & np.isfinite(theta) & (major > 0) & (minor > 0))
    flux = np.empty(n)
    flux_err = np.empty(n)
    _srcmeasure.aperture_sums(image.data, image.error, image.bad, image.segmentation, lab,
                              x, y, major, minor, theta, valid.view(np.uint8), True, False,
                              True, image.max_size, flux, flux_err, _threads(n_threads))
    return flux, flux_err


def max_flux_radius(
    semimajor: np.ndarray,
    kron_radius: np.ndarray,
    kron_params: tuple[float, float, float] = (2.5, 1.4, 0.0),
) -> np.ndarray:
    """Return photutils' upper bracket of `flux_radius` (the circular Kron radius).

    Parameters
    ----------
    semimajor, kron_radius : numpy.ndarray
        ``semimajor_axis`` and `kron_radius` (pixels).
    kron_params : tuple of float, optional
        As for `kron_radius`.

    Returns
    -------
    numpy.ndarray
        ``semimajor * kron_radius * kron_params[0]``, ``kron_params[2]`` where that
        is 0.
    """
    radius = np.asarray(semimajor, float) * np.asarray(kron_radius, float) * kron_params[0]
    return np.where(radius == 0, float(kron_params[2]), radius)


def flux_radius(
    data: np.ndarray | MeasureImage,
    mask: np.ndarray | None,
    segmentation: np.ndarray | None,
    labels: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    kron_flux: np.ndarray,
    max_radius: np.ndarray,
    fraction: float = 0.5,
    *,
    n_threads: int | None = None,
) -> np.ndarray:
    """Return photutils' ``flux_radius(fraction)`` (radius enclosing that Kron fraction).

    The circular curve of growth (exact pixel overlaps, masked pixels and other
    segments excluded) around the isophotal centroid is solved for
    ``fraction * kron_flux`` with Brent's method on ``[0.1, max_radius]``; without a
    sign change the upper end shrinks by ``0.1 * max_radius`` until it reaches 0.1.

    Parameters
    ----------
    data : numpy.ndarray or MeasureImage
        Background-subtracted image, or its `prepare_image`.
    mask, segmentation, labels, x, y
        As for `kron_radius`.
    kron_flux : numpy.ndarray
        `kron_photometry` flux.
    max_radius : numpy.ndarray
        Upper bracket (`max_flux_radius`).
    fraction : float, optional
        In (0, 1].
    n_threads : int, optional
        OpenMP threads.

    Returns
    -------
    numpy.ndarray
        Radius in pixels; NaN where the Kron flux is 0 or not finite, or no root is
        found.

    Raises
    ------
    ValueError
        If ``fraction`` is not in (0, 1].
    """
    from romancore import _srcmeasure

    if not 0 < fraction <= 1:
        raise ValueError("fraction must be > 0 and <= 1")
    image = _as_image(data, mask, segmentation)
    lab = _labels(labels)
    n = lab.size
    x, y, kf, rmax = (_vector(v, n, "vector") for v in (x, y, kron_flux, max_radius))
    if n == 0:
        return np.zeros(0)
    valid = (np.isfinite(x) & np.isfinite(y) & np.isfinite(kf) & np.isfinite(rmax)
             & (kf != 0))
    out = np.empty(n)
    _srcmeasure.flux_radius(image.data, image.bad, image.segmentation, lab, x, y,
                            kf * fraction, rmax, valid.view(np.uint8), 0.1, _XTOL, _RTOL,
                            _MAXITER, image.max_size, out, _threads(n_threads))
    return out


def windowed_centroids(
    data: np.ndarray | MeasureImage,
    mask: np.ndarray | None,
    segmentation: np.ndarray | None,
    labels: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    half_light_radius: np.ndarray,
    cxx: np.ndarray,
    cxy: np.ndarray,
    cyy: np.ndarray,
    *,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return photutils' ``x_centroid_win`` and ``y_centroid_win``.

    Starting at the isophotal centroid, each step moves the position by twice the
    Gaussian-weighted mean offset of the usable pixels (centres within ``4 sigma``;
    ``sigma = 2 max(r_hl, 0.5) / 2.3548``) until the offset is below 1e-4 pixel or
    after 16 steps. The isophotal centroid is returned instead when the result lies
    outside the moment ellipse ``cxx dx**2 + cxy dx dy + cyy dy**2 <= 1`` or the
    iteration fails (window off the image, zero weights); NaN where the half-light
    radius is not finite.

    Parameters
    ----------
    data : numpy.ndarray or MeasureImage
        Background-subtracted image, or its `prepare_image`.
    mask, segmentation, labels, x, y, cxx, cxy, cyy
        As for `kron_radius`.
    half_light_radius : numpy.ndarray
        ``flux_radius(0.5)`` (pixels).
    n_threads : int, optional
        OpenMP threads.

    Returns
    -------
    x_win, y_win : numpy.ndarray
    """
    from romancore import _srcmeasure

    image = _as_image(data, mask, segmentation)
    lab = _labels(labels)
    n = lab.size
    x, y, rhl = (_vector(v, n, "vector") for v in (x, y, half_light_radius))
    cxx, cxy, cyy = (_vector(v, n, "c") for v in (cxx, cxy, cyy))
    if n == 0:
        return np.zeros(0), np.zeros(0)
    nan_hl = ~np.isfinite(rhl)
    rhl = np.where(np.isfinite(rhl) & (rhl < 0.5), 0.5, rhl)
    sigma = 2.0 * rhl * _FWHM_TO_SIGMA
    valid = ~nan_hl & np.isfinite(x) & np.isfinite(y)
    xw = np.empty(n)
    yw = np.empty(n)
    _srcmeasure.centroid_win(image.data, image.bad, image.segmentation, lab, x, y, sigma,
                             valid.view(np.uint8), image.max_size, 16, 1e-4, xw, yw,
                             _threads(n_threads))
    dx = x - xw
    dy = y - yw
    with np.errstate(invalid="ignore"):
        reset = (cxx * dx**2 + cxy * dx * dy + cyy * dy**2) > 1
    reset |= (np.isnan(xw) | np.isnan(yw)) & ~nan_hl
    xw[reset] = x[reset]
    yw[reset] = y[reset]
    return xw, yw


def circular_photometry(
    data: np.ndarray,
    error: np.ndarray | None,
    mask: np.ndarray | None,
    x: np.ndarray,
    y: np.ndarray,
    radii: Sequence[float] | np.ndarray,
    *,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return `~photutils.aperture.aperture_photometry`'s exact circular sums.

    For each radius and position: ``sum(w * data)`` and ``sqrt(sum(w * error**2))``
    over the unmasked pixels with a positive exact overlap ``w`` (other sources are
    not excluded; unmasked non-finite data give NaN, as in photutils); 0 when no
    pixel is usable, NaN when the aperture misses the image or the position is not
    finite.

    Parameters
    ----------
    data : numpy.ndarray
        2-D image.
    error : numpy.ndarray or None
        1-sigma error (same shape).
    mask : numpy.ndarray of bool or None
        Excluded pixels.
    x, y : numpy.ndarray
        Aperture centres (pixels).
    radii : sequence of float
        Positive radii (pixels).
    n_threads : int, optional
        OpenMP threads.

    Returns
    -------
    sums : numpy.ndarray, shape (n_radii, n_positions)
    errors : numpy.ndarray of the same shape, or None without ``error``.

    Raises
    ------
    ValueError
        If a radius is not positive and finite or the arrays do not match.
    """
    from romancore import _srcmeasure

    data = np.ascontiguousarray(data, dtype=np.float64)
    if data.ndim != 2 or data.size == 0:
        raise ValueError("data must be a non-empty 2-D array")
    for name, value in (("error", error), ("mask", mask)):
        if value is not None and np.shape(value) != data.shape:
            raise ValueError(f"{name} must have the shape of data {data.shape}")
    rad = np.atleast_1d(np.asarray(radii, dtype=np.float64))
    if rad.ndim != 1 or not np.all(np.isfinite(rad) & (rad > 0)):
        raise ValueError("radii must be positive and finite")
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64).ravel())
    y = _vector(y, x.size, "y")
    n = x.size
    sums = np.empty((rad.size, n))
    errs = np.empty((rad.size, n))
    if n == 0:
        return sums, (None if error is None else errs)
    bad = (np.zeros(data.shape, dtype=bool) if mask is None
           else np.ascontiguousarray(mask, dtype=bool)).view(np.uint8)
    err = (np.zeros_like(data) if error is None
           else np.ascontiguousarray(error, dtype=np.float64))
    segm = np.zeros((1, 1), dtype=np.int32)  # not read: neighbours are included
    lab = np.ones(n, dtype=np.int32)
    valid = (np.isfinite(x) & np.isfinite(y)).view(np.uint8)
    theta = np.zeros(n)
    threads = _threads(n_threads)
    for k, r in enumerate(rad):
        radius = np.full(n, r)
        _srcmeasure.aperture_sums(data, err, bad, segm, lab, x, y, radius, radius, theta,
                                  valid, False, True, False, float(max(data.size, 1_000_000)),
                                  sums[k], errs[k], threads)
    return sums, (None if error is None else errs)


def segment_properties(
    conv: np.ndarray,
    data: np.ndarray,
    error: np.ndarray,
    mask: np.ndarray,
    segm: np.ndarray,
    labels: np.ndarray,
    bbox: np.ndarray,
    *,
    n_threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Return ``SourceCatalog``'s segment-based properties for every segment.

    The numbers of photutils 3.0's `~photutils.segmentation.SourceCatalog` built from
    ``data`` (background-subtracted), ``convolved_data=conv``, ``error`` and
    ``mask``, for the properties `.catalog.make_source_catalog` uses: ``x_centroid``,
    ``y_centroid`` and the moment shape from ``conv`` (negative and non-finite values
    set to zero), ``area`` (unmasked finite-data pixels; NaN when none),
    ``segment_flux`` and ``segment_flux_err``, ``covariance`` (``(n, 2, 2)``),
    ``semimajor_axis``, ``semiminor_axis``, ``fwhm``, ``orientation`` (degrees in
    [0, 360)), ``ellipticity``, ``ellipse_cxx``, ``ellipse_cxy``, ``ellipse_cyy``
    (all in pixels, without units). Sums run in raster order and the moments are
    accumulated per pixel where photutils multiplies matrices, so they agree to
    rounding (~1e-15 relative; up to ~1e-11 on near-zero off-diagonal terms).

    Parameters
    ----------
    conv, data, error, mask, segm, labels, bbox
        As `romancore.segmentation.segment_moments`.
    n_threads : int or None, optional
        Threads to use.

    Returns
    -------
    dict of str to numpy.ndarray
        One array per property, in the order of ``labels``.
    """
    from romancore.segmentation import segment_moments

    mom = segment_moments(conv, data, error, mask, segm, labels, bbox, n_threads=n_threads)
    m00, x, y, sxx, sxy, syy, flux, error_sq, area = mom.T
    with np.errstate(invalid="ignore", divide="ignore"):
        covar = np.empty((len(labels), 2, 2))
        covar[:, 0, 0] = sxx / m00
        covar[:, 0, 1] = covar[:, 1, 0] = sxy / m00
        covar[:, 1, 1] = syy / m00
        # SourceExtractor's prescription for "infinitely thin" sources (photutils):
        # not positive semi-definite -> NaN; determinant < (1/12)^2 -> add 1/12 to the
        # diagonal until it is not
        delta = 1.0 / 12
        det = np.linalg.det(covar)
        covar[det < 0] = np.nan
        thin = np.flatnonzero(det < delta**2)
        while thin.size:
            covar[thin, 0, 0] += delta
            covar[thin, 1, 1] += delta
            det = np.linalg.det(covar)
            thin = np.flatnonzero(det < delta**2)
        eig = np.full((len(labels), 2), np.nan)
        finite = np.unique(np.nonzero(np.isfinite(covar))[0])
        eig[finite] = np.linalg.eigvalsh(covar[finite])
        eig[np.unique(np.nonzero(eig < 0)[0])] = np.nan
        a = np.sqrt(eig[:, 1])
        b = np.sqrt(eig[:, 0])
        theta_deg = np.rad2deg(0.5 * np.arctan2(2.0 * covar[:, 0, 1],
                                                covar[:, 0, 0] - covar[:, 1, 1])) % 360
        theta = np.deg2rad(theta_deg)  # as astropy evaluates cos/sin of degrees
        cos, sin = np.cos(theta), np.sin(theta)
        all_masked = area == 0
        area = np.where(all_masked, np.nan, area)
        flux = np.where(all_masked, np.nan, flux)
        flux_err = np.where(all_masked, np.nan, np.sqrt(error_sq))
        return {
            "x_centroid": x, "y_centroid": y, "area": area,
            "segment_flux": flux, "segment_flux_err": flux_err,
            "covariance": covar, "semimajor_axis": a, "semiminor_axis": b,
            "fwhm": 2.0 * np.sqrt(np.log(2.0) * (a**2 + b**2)),
            "orientation": theta_deg, "ellipticity": 1.0 - b / a,
            "ellipse_cxx": (cos / a) ** 2 + (sin / b) ** 2,
            "ellipse_cyy": (sin / a) ** 2 + (cos / b) ** 2,
            "ellipse_cxy": 2.0 * cos * sin * (1.0 / a**2 - 1.0 / b**2),
        }
