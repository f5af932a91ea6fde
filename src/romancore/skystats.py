"""Clipped sky statistics of the masked pixels of an image (stsci.imagestats' rules).

stcal 1.20's ``SkyStats`` (used by romancal 1.1's ``skymatch``) hands the good pixels
of an image to ``stsci.imagestats.ImageStats``; this module computes the same numbers
from the image and a mask, without copying the pixels out, in compiled row-parallel
passes.  The rules (from stsci.imagestats 1.8: ``ImageStats._computeStats``,
``computeMean.c``, ``buildHistogram.c``):

* clipping: ``nclip + 1`` passes; each keeps ``clipmin <= v <= clipmax`` (float32
  bounds) and gives ``n``, ``mean = float32(sum / n)``, the kept minimum and maximum,
  and ``stddev = float32(sqrt(sum((v - mean)^2) / (n - 1)))`` over
  ``min <= v <= max``; the next bounds are ``max(lower, mean - lsigma stddev)`` and
  ``min(upper, mean + usigma stddev)``.  The first bounds are ``lower``/``upper``,
  else the minimum/maximum of all values.  computeMean starts its running minimum at
  ``max(clipmin, v0)`` and its maximum at ``min(clipmax, v0)`` (``v0``: the first
  value), so a first value below (above) the bounds makes the reported minimum
  (maximum) the bound itself; this is kept, as it sets the histogram's range.
* ``median``: numpy's median of the values within the last bounds (of all values when
  ``nclip == 0``).
* ``mode`` and ``midpt``: a histogram of *all* values (not only the clipped ones)
  from ``min`` with ``nbins = int((max - min) / h) + 1`` bins of width
  ``(max - min) / (nbins - 1)``, ``h = binwidth x stddev``; the mode is the peak bin
  refined by a parabola through its neighbours, the midpoint interpolates the
  cumulative histogram at one half, both in units of ``h`` (IRAF's imstatistics).
* ``mean``: the clipped mean.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from romancore import _skystats
from romancore._threads import effective_n_threads
from romancore._validation import check_array

__all__ = ["SKY_STATISTICS", "SkyStatistic", "good_sky_pixels", "sky_statistic"]

#: The statistics `sky_statistic` computes (stcal's ``SkyStats`` names).
SKY_STATISTICS = ("mode", "median", "mean", "midpt")

_F32 = np.float32
#: imagestats: a bin width or data range below this means "one bin".
_MIN_FLOAT = 10.0 * float(np.finfo(np.float32).eps)
#: Images smaller than this many pixels per thread use fewer threads.
_PIXELS_PER_THREAD = 1 << 20


class SkyStatistic(NamedTuple):
    """A sky statistic and the number of pixels it used.

    Attributes
    ----------
    value : float or None
        The statistic; None when it cannot be computed (no pixel, limits outside the
        data, every pixel clipped, a non-positive sigma or bin width), where stcal's
        ``SkyImage.calc_sky`` returns None.
    npix : int
        Pixels within the final clipping bounds (0 when ``value`` is None).
    """

    value: float | None
    npix: int


_NONE = SkyStatistic(None, 0)


def good_sky_pixels(
    data: np.ndarray,
    dq: np.ndarray | None = None,
    bad_bits: int | None = None,
    *,
    n_threads: int | None = None,
) -> np.ndarray:
    """Return the pixels a sky statistic may use: finite, with none of ``bad_bits``.

    ``numpy.isfinite(data) & ((dq & bad_bits) == 0)`` in one parallel pass.

    Parameters
    ----------
    data : numpy.ndarray of float32, shape (ny, nx), C-contiguous
        The image.
    dq : numpy.ndarray of uint32, shape (ny, nx), C-contiguous, optional
        Its data-quality flags (None: only non-finite values are excluded).
    bad_bits : int or None, optional
        Flags that exclude a pixel (None: only non-finite values are excluded).
    n_threads : int or None, optional
        Threads (see :func:`romancore.effective_n_threads`).

    Returns
    -------
    numpy.ndarray of bool
        C-contiguous mask.

    Raises
    ------
    ValueError
        For arrays of the wrong dtype, shape or layout, or ``bad_bits`` outside 0-2**32-1.
    """
    data = check_array(data, "data", np.float32, 2)
    if bad_bits is None or dq is None:
        dq, bits = None, 0
    else:
        dq = check_array(dq, "dq", np.uint32, 2, data.shape)
        bits = int(bad_bits)
        if not 0 <= bits < 2**32:
            raise ValueError(f"bad_bits must fit in 32 bits, got {bad_bits!r}")
    out = np.empty(data.shape, dtype=bool)
    _skystats.good_pixels(data, dq, bits, out.view(np.uint8), effective_n_threads(n_threads))
    return out


def sky_statistic(
    data: np.ndarray,
    mask: np.ndarray,
    skystat: str = "mode",
    *,
    lower: float | None = None,
    upper: float | None = None,
    nclip: int = 5,
    lsigma: float = 4.0,
    usigma: float = 4.0,
    binwidth: float = 0.1,
    n_threads: int | None = None,
) -> SkyStatistic:
    """Return stcal ``SkyStats``' statistic of ``data[mask]``.

    Parameters
    ----------
    data : numpy.ndarray of float32, shape (ny, nx)
        The image: C-contiguous, or a window of one (contiguous rows, e.g.
        ``image[y0:y1, x0:x1]``: read in place, not copied).
    mask : numpy.ndarray of bool, shape (ny, nx), C-contiguous
        True where a pixel is used (the caller excludes non-finite values).
    skystat : {'mode', 'median', 'mean', 'midpt'}, optional
        The statistic.
    lower, upper : float or None, optional
        Usable range of pixel values (None: the data's minimum / maximum).
    nclip : int, optional
        Sigma-clipping iterations (>= 0).
    lsigma, usigma : float, optional
        Lower / upper clipping limits in standard deviations.
    binwidth : float, optional
        Histogram bin width in standard deviations (``mode``, ``midpt``).
    n_threads : int or None, optional
        Threads (see :func:`romancore.effective_n_threads`); the result does not
        depend on it.

    Returns
    -------
    SkyStatistic
        ``(value, npix)``; ``(None, 0)`` where stsci.imagestats raises.

    Raises
    ------
    ValueError
        For an unknown ``skystat``, a negative ``nclip``, or arrays of the wrong dtype,
        shape or layout.
    """
    if skystat not in SKY_STATISTICS:
        raise ValueError(f"skystat must be one of {SKY_STATISTICS}, got {skystat!r}")
    if int(nclip) != nclip or nclip < 0:
        raise ValueError(f"nclip must be a non-negative integer, got {nclip!r}")
    data = check_array(data, "data", np.float32, 2, rows=True)
    mask = check_array(mask, "mask", np.bool_, 2, data.shape)
    threads = effective_n_threads(n_threads)
    # a parallel region costs more than a pass over a small image
    threads = max(1, min(threads, data.size // _PIXELS_PER_THREAD))
    if lsigma <= 0 or usigma <= 0 or binwidth <= 0:
        return _NONE  # ImageStats raises ValueError
    m8 = mask.view(np.uint8)
    first = int(np.argmax(mask))  # stops at the first True
    if not mask.flat[first]:
        return _NONE  # no pixel: ImageStats raises ValueError
    v0 = _F32(data.flat[first])
    big = _F32(np.inf)
    everything = _skystats.masked_moments(data, m8, -big, big, threads)
    # with no limits the first clipping pass keeps every value: this pass is it
    unlimited = lower is None and upper is None
    dmin, dmax = float(everything[2]), float(everything[3])
    # the user's limits as ImageStats checks them
    if lower is None:
        lower = dmin
    elif lower > dmax:
        return _NONE
    elif upper is not None and lower > upper:
        return _NONE
    if upper is None:
        upper = dmax
    elif upper < dmin:
        return _NONE
    clipmin, clipmax = float(lower), float(upper)
    npix = 0
    mean = std = vmin = vmax = 0.0
    previous = None
    for iteration in range(int(nclip) + 1):
        lo32, hi32 = _F32(clipmin), _F32(clipmax)
        if previous == (lo32, hi32):
            # the same float32 bounds keep the same pixels: every further pass would
            # repeat the last one exactly, so stop (a saving, not an approximation)
            break
        previous = (lo32, hi32)
        if iteration == 0 and unlimited:
            npix, total, kmin, kmax = everything
        else:
            npix, total, kmin, kmax = _skystats.masked_moments(data, m8, lo32, hi32, threads)
        if npix <= 0:
            return _NONE
        # computeMean's running extremes start at max(clipmin, v0) / min(clipmax, v0)
        vmin = float(min(kmin, max(lo32, v0)))
        vmax = float(max(kmax, min(hi32, v0)))
        mean32 = _F32(total / npix)
        ssd = _skystats.masked_sum_sq_dev(data, m8, _F32(vmin), _F32(vmax), mean32, threads)
        with np.errstate(divide="ignore", invalid="ignore"):
            std = float(_F32(np.sqrt(np.float64(ssd) / np.float64(npix - 1))))
        mean = float(mean32)
        if iteration < nclip:
            # Python's max/min, as ImageStats: a NaN spread leaves the limits
            clipmin = max(lower, mean - lsigma * std)
            clipmax = min(upper, mean + usigma * std)
    if skystat == "mean":
        return SkyStatistic(mean, int(npix))
    if skystat == "median":
        if nclip > 0:
            keep = mask & (data <= _F32(clipmax)) & (data >= _F32(clipmin))
        else:
            keep = mask
        return SkyStatistic(float(np.median(data[keep])), int(npix))
    return SkyStatistic(
        _histogram_statistic(data, m8, skystat, vmin, vmax, std, binwidth, threads),
        int(npix),
    )


def _histogram_statistic(
    data: np.ndarray,
    m8: np.ndarray,
    skystat: str,
    vmin: float,
    vmax: float,
    std: float,
    binwidth: float,
    threads: int,
) -> float:
    """Return the ``mode`` or ``midpt`` of ImageStats' histogram (see the module)."""
    hwidth = binwidth * std
    drange = vmax - vmin
    if hwidth < _MIN_FLOAT or abs(drange) < _MIN_FLOAT or hwidth > drange:
        nbins, dz = 1, drange
    else:
        nbins = int(drange / hwidth) + 1
        dz = drange / (nbins - 1)
    width, start = _F32(dz), _F32(vmin)
    stop = _F32(start + width * _F32(nbins))
    if width > 0:
        bins = _skystats.masked_histogram(data, m8, nbins, width, start, stop, threads)
    else:
        bins = np.zeros(nbins, dtype=np.uint64)
    if skystat == "mode":
        # ImageStats: special cases for 1 and 2 bins, a parabola through the peak
        if nbins == 1:
            return vmin + 0.5 * hwidth
        if nbins == 2:
            if bins[0] > bins[1]:
                return vmin + 0.5 * hwidth
            if bins[0] < bins[1]:
                return vmin + 1.5 * hwidth
            return vmin + hwidth
        peak = int(np.argmax(bins))
        if peak == 0:
            return vmin + 0.5 * hwidth
        if peak == nbins - 1:
            return vmin + (nbins - 0.5) * hwidth
        dh1 = int(bins[peak]) - int(bins[peak - 1])
        dh2 = int(bins[peak]) - int(bins[peak + 1])
        if dh1 + dh2 == 0:
            return vmin + (peak + 0.5) * hwidth
        position = peak + 1 + 0.5 * (dh1 - dh2) / (dh1 + dh2)
        return vmin + (position - 0.5) * hwidth
    # midpt: IRAF's interpolated median of the histogram
    if nbins == 1:
        return float(bins[0])  # ImageStats returns the bin's count (sic)
    cum = np.cumsum(bins).astype(np.float32)
    cum = cum / cum[-1]
    lo = int(np.nonzero(cum >= 0.5)[0][0])
    # ImageStats' index is a NumPy integer: h1 is float64 and the sum below stays
    # float64 (a Python float would let the float32 terms round it to float32)
    h1 = np.float64(vmin + lo * hwidth)
    hdiff = cum[lo] if lo == 0 else cum[lo] - cum[lo - 1]
    if hdiff == 0:
        return h1
    if lo == 0:
        return float(h1 + 0.5 / hdiff * hwidth)
    return float(h1 + (0.5 - cum[lo - 1]) / hdiff * hwidth)
