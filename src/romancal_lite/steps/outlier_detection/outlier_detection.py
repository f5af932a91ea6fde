"""Outlier (cosmic-ray) detection against the median of several exposures.

The statistics are romancal 1.1 ``outlier_detection/outlier_detection.py`` and stcal
1.20 ``outlier_detection/utils.py`` / ``median.py`` (downstream.md 2.4):

* weight threshold: ``maskpt`` times the mean of the finite non-zero weights after a
  3-sigma clip (5 iterations) (stcal ``compute_weight_threshold``); pixels whose weight
  is below it do not enter the median;
* the median over exposure groups ignores NaN, and is NaN where every value is NaN
  (stcal ``nanmedian3D`` / ``_OnDiskMedian``);
* blot: drizzle's ``blot_image`` with linear interpolation (computed by
  `romancore.drizzle.blot`), ``iscale = 1``, the pixel map of the input onto the median
  grid, pixels outside the input's bounding box mapped to -1 (stcal ``gwcs_blot``);
* with resampling (stcal ``flag_resampled_crs``): ``d = |sci - blot - backg|``,
  ``D`` = the largest absolute difference of the blot with its 4 neighbours,
  ``e`` = the error (NaN -> 0); a pixel is an outlier where
  ``d > scale1 D + snr1 e`` holds for it or one of its 8 neighbours (a 3x3 box), and
  ``d > scale2 D + snr2 e`` for itself;
* without resampling (stcal ``flag_crs``): ``|sci - median| > snr1 e``.

The median is never held as a cube of all groups: each group's image goes to a
float32 temporary file and the median is taken over blocks of rows read back from
them (`OnDiskMedian`), so memory does not grow with the number of exposures. No pass
holds a full-size float copy either: the low weights are masked as a group image is
written (`OnDiskMedian.add_masked`), the weight threshold gathers its values a block
of rows at a time, the median can go to a temporary file (``median(in_file=True)``)
and the blot and the flag test run by blocks of input rows (`flag_blocks`), the
pages of file-backed arrays handed back after each block.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Any

import numpy as np

from ...interrupts import remove_tree
from .._arrays import file_array, is_file_map, release_rows

__all__ = [
    "BLOCK_ROWS",
    "OnDiskMedian",
    "abs_derivative",
    "blot_median",
    "flag_blocks",
    "flag_crs",
    "flag_resampled_crs",
    "mask_low_weight",
    "nanmedian_axis0",
    "weight_threshold",
]

#: Rows of a full-size image handled at a time by the block-wise passes (the weight
#: threshold's gathering, `OnDiskMedian.add_masked`, `flag_blocks`).
BLOCK_ROWS = 512


def weight_threshold(weight: np.ndarray, maskpt: float) -> float:
    """Return the weight below which a pixel does not enter the median.

    Parameters
    ----------
    weight : numpy.ndarray
        Weights of one image (drizzled weight or input weight map).
    maskpt : float
        Fraction of the (clipped) mean weight.

    Returns
    -------
    float
        ``maskpt`` x the 3-sigma-clipped (5 iterations) mean of the finite, non-zero
        weights (stcal ``compute_weight_threshold``); NaN if there is none.
    """
    # the finite non-zero weights, gathered a block of rows at a time (a weight map
    # in a file has its pages handed back as it is read): no full-size boolean masks
    values = _gather(weight, None)
    if values.size == 0:
        return math.nan
    # astropy's sigma_clip(values, sigma=3, maxiters=5) with its defaults (centre:
    # median, spread: std) on a 1-D array: each pass keeps the values inside
    # [median - 3 std, median + 3 std] (float32 bounds) of the values kept so far,
    # until a pass keeps them all or 5 passes; then the mean (float64).  The kept
    # values always form one interval of the original values, so the values are
    # sorted once and each pass is a slice of them: its median is its middle, its
    # bounds two binary searches.  Differences from astropy: the std is accumulated
    # in float64 (astropy: float32), so a bound may differ in its last bit.
    from romancore.sigmaclip import mean_std

    ordered = values
    ordered.sort()  # in place: the original order is gathered again below
    ftype = values.dtype.type if values.dtype.kind == "f" else np.float64
    three = ftype(3.0)
    lo, hi = 0, ordered.size
    for _ in range(5):
        size = hi - lo
        kept = ordered[lo:hi]
        std = ftype(mean_std(kept)[1])
        middle = lo + size // 2
        # np.median's value: the middle one, or the mean of the two middle ones
        centre = np.median(ordered[middle - 1 + size % 2 : middle + 1])
        low, high = centre - std * three, centre + std * three
        lo = max(lo, int(np.searchsorted(ordered, low, side="left")))
        hi = min(hi, int(np.searchsorted(ordered, high, side="right")))
        hi = max(hi, lo)
        if hi - lo == size or hi == lo:
            break
    if hi == lo:
        return math.nan
    # the mean of the kept values in their original order (as astropy sums them):
    # gathered again from the weights, so the sorted copy and the original-order
    # copy of the values are never held together
    first, last = ordered[lo], ordered[hi - 1]
    del ordered, values, kept
    kept = _gather(weight, (first, last))
    return float(np.mean(kept, dtype="f8")) * float(maskpt)


def _row_blocks(array: np.ndarray) -> np.ndarray:
    """``array`` as 2-D rows (a view when it can be): blocks of rows keep its C order."""
    if array.ndim == 2:
        return array
    if array.ndim < 2:
        return array.reshape(1, -1)
    return array.reshape(array.shape[0], -1)


def _release_if_file(array: np.ndarray, r0: int, r1: int) -> None:
    """Hand rows ``r0:r1`` of a shared file map back to the OS (its values stay in the file)."""
    if is_file_map(array):
        release_rows(array, r0, r1)


def _gather(weight: np.ndarray, bounds: tuple[Any, Any] | None) -> np.ndarray:
    """Return the finite non-zero values of ``weight`` (within ``bounds``), in C order.

    Two passes over blocks of `BLOCK_ROWS` rows (count, then fill one array of the
    exact size), so only the result is full-size; the pages of a weight map in a
    file are handed back after each block.
    """
    rows = _row_blocks(np.asarray(weight))
    if rows.dtype == np.float32 and rows.flags.c_contiguous and rows.size:
        return _gather_compiled(rows, bounds)

    def select(block: np.ndarray) -> np.ndarray:
        keep = np.isfinite(block)
        keep &= block != 0
        if bounds is not None:
            keep &= block >= bounds[0]
            keep &= block <= bounds[1]
        return keep

    ny = rows.shape[0]
    counts = []
    for r0 in range(0, ny, BLOCK_ROWS):
        r1 = min(ny, r0 + BLOCK_ROWS)
        counts.append(int(np.count_nonzero(select(rows[r0:r1]))))
        _release_if_file(rows, r0, r1)
    out = np.empty(sum(counts), dtype=rows.dtype)
    at = 0
    for count, r0 in zip(counts, range(0, ny, BLOCK_ROWS), strict=True):
        r1 = min(ny, r0 + BLOCK_ROWS)
        if count:
            block = rows[r0:r1]
            out[at : at + count] = block[select(block)]
            at += count
            _release_if_file(rows, r0, r1)
    return out


def _gather_compiled(rows: np.ndarray, bounds: tuple[Any, Any] | None) -> np.ndarray:
    """`_gather` of float32 rows by `romancore.outlier` (the same values, same order)."""
    from romancore.outlier import count_kept, gather_kept

    ny = rows.shape[0]
    counts = np.empty(ny, np.int64)
    for r0 in range(0, ny, BLOCK_ROWS):
        r1 = min(ny, r0 + BLOCK_ROWS)
        counts[r0:r1] = count_kept(rows[r0:r1], bounds)
        _release_if_file(rows, r0, r1)
    out = np.empty(int(counts.sum()), dtype=rows.dtype)
    at = 0
    for r0 in range(0, ny, BLOCK_ROWS):
        r1 = min(ny, r0 + BLOCK_ROWS)
        if counts[r0:r1].any():
            at += gather_kept(rows[r0:r1], out[at:], bounds, counts=counts[r0:r1])
            _release_if_file(rows, r0, r1)
    return out


def mask_low_weight(data: np.ndarray, weight: np.ndarray, maskpt: float) -> np.ndarray:
    """Return a float32 copy of ``data`` with NaN where ``weight`` < the threshold.

    Parameters
    ----------
    data, weight : numpy.ndarray
        An image and its weights.
    maskpt : float
        See `weight_threshold`.

    Returns
    -------
    numpy.ndarray
        The masked copy.
    """
    out = np.array(data, dtype=np.float32, copy=True)
    threshold = weight_threshold(weight, maskpt)
    if math.isfinite(threshold):
        out[weight < threshold] = np.nan
    # no usable weight at all: every comparison with NaN is False in stcal, so
    # nothing is masked there either
    return out


def nanmedian_axis0(block: np.ndarray) -> np.ndarray:
    """Return the median along axis 0 ignoring NaN (NaN where all are NaN).

    Same values as ``numpy.nanmedian(block, axis=0)``: the middle value of the sorted
    finite values, or the mean of the two middle ones. A float32 block is handled by
    `romancore.outlier.nanmedian_axis0` (one parallel pass, the block unchanged; only
    the sign of a zero median can differ from numpy's, where ``+0`` and ``-0`` are
    both in the middle); other types by the numpy form below: NaN sorts last, so after
    one sort along the axis the ``n`` finite values come first.

    Parameters
    ----------
    block : numpy.ndarray
        ``(n_images, ...)``; a block that is not float32 is sorted in place.

    Returns
    -------
    numpy.ndarray
        The median, shape ``block.shape[1:]``.
    """
    if block.dtype == np.float32 and block.ndim == 3 and block.shape[0] > 0:
        from romancore.outlier import nanmedian_axis0 as compiled

        return compiled(block)
    if block.shape[0] == 2:
        # two images: the mean of the finite ones, as the sorted form below gives it
        # ((a + b) / 2, or (x + x) / 2 for one, NaN for none) without the sort
        a, b = block[0], block[1]
        first = np.where(np.isnan(a), b, a)
        second = np.where(np.isnan(b), a, b)
        first += second
        first /= block.dtype.type(2)
        return first
    block.sort(axis=0)
    count = block.shape[0] - np.isnan(block).sum(axis=0, dtype=np.int32)
    low = np.maximum((count - 1) // 2, 0)
    high = np.maximum(count // 2, 0)
    a = np.take_along_axis(block, low[None], axis=0)[0]
    b = np.take_along_axis(block, high[None], axis=0)[0]
    median = (a + b) / block.dtype.type(2)
    median[count == 0] = np.nan
    return median


class OnDiskMedian:
    """Median of equal-shape images, each written to a float32 temporary file.

    Images are added one at a time (`add`); `median` reads them back by blocks of
    rows (at most ``buffer_bytes`` of input at once, at least one row) through
    memory maps. The files live in a private temporary directory removed by `close`
    (also when used as a context manager and on error).

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of every image.
    n_images : int
        How many images will be added (sizes the blocks).
    buffer_bytes : int, optional
        Input bytes per block; default (0) one image's size (stcal's default).
    directory : str, optional
        Parent of the temporary directory (default: the system's).
    """

    def __init__(self, shape: tuple[int, int], n_images: int, *, buffer_bytes: int = 0,
                 directory: str | None = None) -> None:  # fmt: skip
        self.shape = (int(shape[0]), int(shape[1]))
        self.n_images = int(n_images)
        if self.n_images < 1:
            raise ValueError("the median needs at least one image")
        row_bytes = self.shape[1] * 4
        buffer = int(buffer_bytes) or self.shape[0] * row_bytes
        self.rows_per_block = max(1, min(self.shape[0], buffer // (self.n_images * row_bytes)))
        self.directory = tempfile.mkdtemp(prefix="outlier_median_", dir=directory)
        self.paths: list[str] = []

    def __enter__(self) -> OnDiskMedian:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def add(self, image: np.ndarray) -> None:
        """Write one image (converted to float32) to its temporary file.

        Parameters
        ----------
        image : numpy.ndarray
            ``shape`` array.

        Raises
        ------
        ValueError
            If its shape differs or more than ``n_images`` are added.
        """
        if image.shape != self.shape:
            raise ValueError(f"image shape {image.shape} is not the median's {self.shape}")
        if len(self.paths) >= self.n_images:
            raise ValueError(f"more than the {self.n_images} images announced")
        path = os.path.join(self.directory, f"{len(self.paths)}.f32")
        np.ascontiguousarray(image, dtype=np.float32).tofile(path)
        self.paths.append(path)

    def add_masked(self, image: np.ndarray, weight: np.ndarray, threshold: float) -> None:
        """Write one image with NaN where ``weight < threshold``, a block of rows at a time.

        The same values as ``add(mask_low_weight(image, weight, maskpt))`` with
        ``threshold = weight_threshold(weight, maskpt)``, without a full-size masked
        copy: each block is converted, masked and appended to the image's file, and
        the pages of ``image`` and ``weight`` are handed back after it when they lie in
        shared file maps (the drizzled group images).

        Parameters
        ----------
        image, weight : numpy.ndarray
            ``shape`` arrays.
        threshold : float
            Weights below it mask their pixel; NaN masks nothing (every comparison
            with NaN is False, as in stcal).

        Raises
        ------
        ValueError
            If a shape differs or more than ``n_images`` are added.
        """
        if image.shape != self.shape or np.shape(weight) != self.shape:
            raise ValueError(f"image shape {image.shape} / weight shape {np.shape(weight)} "
                             f"is not the median's {self.shape}")  # fmt: skip
        if len(self.paths) >= self.n_images:
            raise ValueError(f"more than the {self.n_images} images announced")
        # a Python float, as mask_low_weight compares with (NumPy casts it to the
        # weights' type: the same comparison)
        threshold = float(threshold)
        mask = math.isfinite(threshold)
        path = os.path.join(self.directory, f"{len(self.paths)}.f32")
        ny = self.shape[0]
        with open(path, "wb") as fh:
            for r0 in range(0, ny, BLOCK_ROWS):
                r1 = min(ny, r0 + BLOCK_ROWS)
                block = np.array(image[r0:r1], dtype=np.float32, copy=True, order="C")
                if mask:
                    block[weight[r0:r1] < threshold] = np.nan
                block.tofile(fh)
                _release_if_file(image, r0, r1)
                _release_if_file(weight, r0, r1)
        self.paths.append(path)

    def median(self, in_file: bool = False) -> np.ndarray:
        """Return the NaN-ignoring median of the images added.

        Parameters
        ----------
        in_file : bool, optional
            Write the median into an unnamed temporary file (`file_array`) whose
            pages are handed back as each block is done, instead of an in-memory
            array: it then takes memory only where it is read.

        Returns
        -------
        numpy.ndarray
            float32 ``shape`` array.
        """
        n = len(self.paths)
        if n == 0:
            raise ValueError("no image added")
        if in_file:
            out = file_array(self.shape, np.float32, self.directory)
        else:
            out = np.empty(self.shape, dtype=np.float32)
        step = max(1, min(self.shape[0], self.rows_per_block * self.n_images // n))
        block = np.empty((n, step, self.shape[1]), dtype=np.float32)
        row_bytes = self.shape[1] * 4
        # read with pread into one block buffer, not through memory maps: the pages of
        # a file map stay resident (and count in the process's memory) until unmapped,
        # which with 8 groups was 1.1 GB more at the end of the median
        handles = [open(p, "rb") for p in self.paths]  # noqa: SIM115
        try:
            for start in range(0, self.shape[0], step):
                stop = min(start + step, self.shape[0])
                part = block[:, : stop - start]
                for k, fh in enumerate(handles):
                    view = memoryview(part[k]).cast("B")
                    got = os.preadv(fh.fileno(), [view], start * row_bytes)
                    if got != view.nbytes:
                        raise OSError(f"short read of {self.paths[k]}: {got} of {view.nbytes}")
                out[start:stop] = nanmedian_axis0(part)
                if in_file:
                    release_rows(out, start, stop)
        finally:
            for fh in handles:
                fh.close()
        return out

    def close(self) -> None:
        """Delete the temporary files and their directory (idempotent)."""
        remove_tree(self.directory)
        self.paths = []


def abs_derivative(image: np.ndarray) -> np.ndarray:
    """Return, per pixel, the largest absolute difference with its 4 neighbours.

    As stcal ``_abs_deriv``: differences with a NaN neighbour are ignored (0 if all
    are), and a NaN pixel stays NaN.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image (the blotted median).

    Returns
    -------
    numpy.ndarray
        Same shape and dtype.
    """
    out = np.zeros_like(image)
    with np.errstate(invalid="ignore"):
        rows = np.abs(np.diff(image, axis=0))
        rows[np.isnan(rows)] = 0
        np.maximum(out[1:], rows, out=out[1:])
        np.maximum(out[:-1], rows, out=out[:-1])
        del rows
        cols = np.abs(np.diff(image, axis=1))
        cols[np.isnan(cols)] = 0
        np.maximum(out[:, 1:], cols, out=out[:, 1:])
        np.maximum(out[:, :-1], cols, out=out[:, :-1])
        del cols
    out[np.isnan(image)] = np.nan
    return out


def flag_resampled_crs(
    sci: np.ndarray,
    err: np.ndarray,
    blot: np.ndarray,
    snr1: float,
    snr2: float,
    scale1: float,
    scale2: float,
    backg: float,
) -> np.ndarray:
    """Return the outlier mask of an image against the blotted median.

    Parameters
    ----------
    sci, err : numpy.ndarray
        The image and its error (NaN error counts as 0).
    blot : numpy.ndarray
        The median blotted onto the image's pixels (NaN: no comparison).
    snr1, snr2 : float
        Signal-to-noise thresholds of the first (3x3-grown) and second test.
    scale1, scale2 : float
        Multipliers of the blot's derivative in the two tests.
    backg : float
        Background still in ``sci`` but not in the blot.

    Returns
    -------
    numpy.ndarray
        Boolean mask, True for outliers.

    Notes
    -----
    stcal 1.20 ``flag_resampled_crs``: with ``d = |sci - blot - backg|`` and ``D`` the
    blot's `abs_derivative`, a pixel is flagged where ``d > scale2 D + snr2 e`` and
    ``d > scale1 D + snr1 e`` holds somewhere in its 3x3 box (scipy
    ``ndimage.convolve`` of the boolean mask with a 3x3 box, ``mode="nearest"``, which
    is a binary dilation).
    """
    from romancore.outlier import flag_resampled

    # one compiled pass (the numpy form: tests/romancore/test_outlier.py)
    return flag_resampled(sci, err, blot, snr1, snr2, scale1, scale2, backg)


def flag_blocks(
    sci: np.ndarray,
    err: np.ndarray,
    median: np.ndarray,
    pixmap: np.ndarray,
    snr1: float,
    snr2: float,
    scale1: float,
    scale2: float,
    backg: float,
    *,
    fillval: float = math.nan,
    rows: int = BLOCK_ROWS,
) -> np.ndarray:
    """Return `flag_resampled_crs` against the blotted median, computed by blocks of rows.

    For each block of ``rows`` input rows the median is blotted onto those rows and
    two more on each side (the derivative compares a pixel with its neighbours and the
    first test is grown by a 3x3 box: a block's flags depend on the blot two rows
    beyond it), and the block's rows of the test are kept: the same mask bit for bit
    as ``flag_resampled_crs(sci, err, blot_median(...), ...)`` on the whole image,
    without its full-size float temporaries (the blot, float32 copies of the error).
    The pages of ``pixmap`` (a kept copy-on-write map of a file nothing writes to),
    and of ``median``, ``sci`` and ``err`` when they lie in shared file maps, are
    handed back after each block.

    Parameters
    ----------
    sci, err : numpy.ndarray
        The image and its error (NaN error counts as 0), ``(ny, nx)``.
    median : numpy.ndarray
        The median (float32) on the grid ``pixmap`` maps to.
    pixmap : numpy.ndarray
        ``(ny, nx, 2)`` float64: each input pixel's position on the median's grid
        (NaN: outside).
    snr1, snr2, scale1, scale2, backg : float
        As `flag_resampled_crs`.
    fillval : float, optional
        Blot value where nothing is interpolated.
    rows : int, optional
        Rows per block.

    Returns
    -------
    numpy.ndarray
        Boolean ``(ny, nx)`` mask, True for outliers.
    """
    from romancore.drizzle import blot
    from romancore.outlier import flag_resampled

    ny, nx = sci.shape
    if err.shape != sci.shape or pixmap.shape != (ny, nx, 2):
        raise ValueError(f"err {err.shape} and pixmap {pixmap.shape} do not match sci "
                         f"{sci.shape}")  # fmt: skip
    median = np.ascontiguousarray(median, dtype=np.float32)
    pixmap_in_file = is_file_map(pixmap, copy_on_write=True) and pixmap.flags.c_contiguous
    median_in_file = is_file_map(median)
    rows = max(1, int(rows))
    halo = 2
    mask = np.zeros((ny, nx), dtype=bool)
    for r0 in range(0, ny, rows):
        r1 = min(ny, r0 + rows)
        e0, e1 = max(0, r0 - halo), min(ny, r1 + halo)
        blotted = np.empty((e1 - e0, nx), dtype=np.float32)
        blot(median, np.ascontiguousarray(pixmap[e0:e1], dtype=np.float64), blotted,
             fillval=fillval, iscale=1.0)  # fmt: skip
        block = flag_resampled(sci[e0:e1], err[e0:e1], blotted, snr1, snr2, scale1, scale2,
                               backg)  # fmt: skip
        mask[r0:r1] = block[r0 - e0 : r1 - e0]
        del blotted, block
        if pixmap_in_file:
            release_rows(pixmap.reshape(ny, -1), e0, e1)
        if median_in_file:
            release_rows(median, 0, median.shape[0])
        _release_if_file(sci, e0, e1)
        _release_if_file(err, e0, e1)
    return mask


def flag_crs(sci: np.ndarray, err: np.ndarray, median: np.ndarray, snr: float) -> np.ndarray:
    """Return the outlier mask ``|sci - median| > snr * err`` (stcal ``flag_crs``).

    Parameters
    ----------
    sci, err, median : numpy.ndarray
        The image, its error (NaN -> 0) and the median of the inputs.
    snr : float
        Signal-to-noise threshold.

    Returns
    -------
    numpy.ndarray
        Boolean mask.
    """
    error = np.nan_to_num(np.asarray(err, dtype=np.float32), nan=0.0)
    with np.errstate(invalid="ignore"):
        return np.abs(np.asarray(sci, dtype=np.float32) - median) > np.float32(snr) * error


def blot_median(
    median: np.ndarray,
    median_wcs: Any,
    shape: tuple[int, int],
    wcs: Any,
    *,
    fillval: float = math.nan,
    stepsize: int = 10,
    order: int = 3,
    pixmap: np.ndarray | None = None,
) -> np.ndarray:
    """Return the median interpolated back onto an input's pixels (drizzle's blot).

    Parameters
    ----------
    median : numpy.ndarray
        The median on the grid of ``median_wcs``.
    median_wcs : gwcs.WCS
        Its WCS.
    shape : tuple of int
        The input's ``(ny, nx)``.
    wcs : gwcs.WCS
        The input's WCS.
    fillval : float, optional
        Value where nothing is interpolated.
    stepsize, order : int, optional
        Pixel-map interpolation (`romancal_lite.steps.resample.calc_pixmap`).
    pixmap : numpy.ndarray, optional
        That pixel map of the input onto the median's grid, if already computed.

    Returns
    -------
    numpy.ndarray
        float32 ``shape`` array.
    """
    from romancore.drizzle import blot

    from ..resample import calc_pixmap

    if pixmap is None:
        pixmap = calc_pixmap(wcs, median_wcs, shape, stepsize=stepsize, order=order)
    # stcal gwcs_blot maps NaN coordinates to -1 (outside); romancore's blot treats a
    # NaN position as outside itself
    out = np.empty(shape, dtype=np.float32)
    blot(np.ascontiguousarray(median, dtype=np.float32), pixmap, out, fillval=fillval, iscale=1.0)
    return out
