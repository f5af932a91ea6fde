"""Threshold segmentation of a detection image (photutils' ``detect_sources``)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from romancore import _segmentation
from romancore._threads import effective_n_threads
from romancore._validation import check_array

__all__ = [
    "MOMENT_COLUMNS",
    "Segments",
    "bbox_slices",
    "detection_inputs",
    "label_above_threshold",
    "label_source_pixels",
    "masked_error",
    "segment_moments",
]

#: columns of :func:`segment_moments`
MOMENT_COLUMNS = ("m00", "x", "y", "sxx", "sxy", "syy", "flux", "error_sq", "area")


class Segments(NamedTuple):
    """Result of :func:`label_above_threshold`.

    Attributes
    ----------
    data : numpy.ndarray of int32, shape (ny, nx)
        Segmentation map: 0 outside segments, 1..n inside.
    bbox : numpy.ndarray of int32, shape (n, 4)
        ``(ymin, ymax, xmin, xmax)`` of each segment, inclusive.
    area : numpy.ndarray of int64, shape (n,)
        Pixels of each segment.
    """

    data: np.ndarray
    bbox: np.ndarray
    area: np.ndarray

    @property
    def n_labels(self) -> int:
        """Number of segments."""
        return len(self.area)

    @property
    def slices(self) -> list[tuple[slice, slice]]:
        """``(slice(ymin, ymax + 1), slice(xmin, xmax + 1))`` per segment."""
        return bbox_slices(self.bbox)


def bbox_slices(bbox: np.ndarray) -> list[tuple[slice, slice]]:
    """Return ``(slice(ymin, ymax + 1), slice(xmin, xmax + 1))`` per inclusive box.

    Parameters
    ----------
    bbox : numpy.ndarray, shape (n, 4)
        ``(ymin, ymax, xmin, xmax)`` per segment, as :class:`Segments` holds them.

    Returns
    -------
    list of tuple of slice
    """
    return [(slice(int(y0), int(y1) + 1), slice(int(x0), int(x1) + 1))
            for y0, y1, x0, x1 in bbox]


def _error_bits(error: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Return the error as the kernels read it: float32, or float16 as its bits."""
    if isinstance(error, np.ndarray) and error.dtype == np.float16:
        check_array(error, "error", np.float16, 2, shape)
        return error.view(np.uint16)
    return check_array(error, "error", np.float32, 2, shape)


def detection_inputs(
    data: np.ndarray,
    error: np.ndarray,
    dq: np.ndarray | None = None,
    exclude: int = 1,
    *,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the source mask and the masked image, in one pass.

    ``mask`` is True where the data or the error is not finite, the error is not
    positive, or ``dq & exclude`` is set; ``image`` is the data (float32) with NaN where
    masked: what ``numpy.where(mask, nan, data)`` gives, without the temporaries (a
    float16 error is converted exactly, as NumPy converts it). See `masked_error` for
    the error.

    Parameters
    ----------
    data : numpy.ndarray of float32, shape (ny, nx)
        Image (C-contiguous).
    error : numpy.ndarray of float16 or float32, shape (ny, nx)
        Its error.
    dq : numpy.ndarray of uint32, shape (ny, nx), optional
        Pixel DQ (None: not used).
    exclude : int, optional
        DQ bits that mask a pixel (``DO_NOT_USE``: 1).
    n_threads : int or None, optional
        Threads to use (see :func:`romancore.effective_n_threads`).

    Returns
    -------
    mask : numpy.ndarray of bool
    image : numpy.ndarray of float32

    Raises
    ------
    ValueError
        For arrays of the wrong dtype, shape or layout.
    """
    check_array(data, "data", np.float32, 2)
    error_in = _error_bits(error, data.shape)
    if dq is None:
        dq, exclude = np.zeros(data.shape, dtype=np.uint32), 0
    check_array(dq, "dq", np.uint32, 2, data.shape)
    mask = np.empty(data.shape, dtype=np.uint8)
    image = np.empty(data.shape, dtype=np.float32)
    _segmentation.detection_inputs(data, error_in, dq, int(exclude), mask, image,
                                   effective_n_threads(n_threads))
    return mask.view(np.bool_), image


def masked_error(
    error: np.ndarray, mask: np.ndarray, *, n_threads: int | None = None
) -> np.ndarray:
    """Return the error as float64 with NaN where ``mask``, in one pass.

    The same array as ``numpy.where(mask, nan, error).astype(numpy.float64)``.

    Parameters
    ----------
    error : numpy.ndarray of float16 or float32, shape (ny, nx)
        The error (C-contiguous).
    mask : numpy.ndarray of bool or uint8, shape (ny, nx)
        Pixels set to NaN.
    n_threads : int or None, optional
        Threads to use.

    Returns
    -------
    numpy.ndarray of float64

    Raises
    ------
    ValueError
        For arrays of the wrong dtype, shape or layout.
    """
    shape = np.shape(error)
    error_in = _error_bits(error, shape)
    if isinstance(mask, np.ndarray) and mask.dtype == np.bool_:
        mask = mask.view(np.uint8)
    check_array(mask, "mask", np.uint8, 2, shape)
    out = np.empty(shape, dtype=np.float64)
    _segmentation.masked_error(error_in, mask, out, effective_n_threads(n_threads))
    return out


def label_above_threshold(
    data: np.ndarray,
    threshold: np.ndarray,
    mask: np.ndarray | None = None,
    npixels: int = 1,
    *,
    n_threads: int | None = None,
) -> Segments:
    """Label the 8-connected segments of pixels above a per-pixel threshold.

    The segmentation of ``photutils.segmentation.detect_sources(data, threshold,
    npixels, connectivity=8, mask=mask)``, array for array: source pixels are those
    with ``data > threshold`` (NaN is never above) that are not masked; pixels
    touching along an edge or a corner belong to one segment; segments of fewer
    than ``npixels`` pixels are dropped; the others are numbered 1..n in the raster
    order of their first pixel. One scan with a union-find of provisional labels,
    then one parallel pass writing the final labels; no full-size temporary.

    Parameters
    ----------
    data : numpy.ndarray of float64, shape (ny, nx)
        Detection image (C-contiguous).
    threshold : numpy.ndarray of float32 or float64, shape (ny, nx)
        Per-pixel threshold (float32 values compare as float64, as in NumPy).
    mask : numpy.ndarray of bool or uint8, shape (ny, nx), optional
        Pixels that never belong to a segment (non-zero).
    npixels : int, optional
        Smallest segment kept, in pixels (>= 1).
    n_threads : int or None, optional
        Threads of the final pass (see :func:`romancore.effective_n_threads`); the
        result does not depend on it.

    Returns
    -------
    Segments
        The map (int32), each segment's bounding box and area.

    Raises
    ------
    ValueError
        For arrays of the wrong dtype, shape or layout, or ``npixels < 1``.
    """
    check_array(data, "data", np.float64, 2)
    if not isinstance(threshold, np.ndarray) or threshold.dtype != np.float32:
        check_array(threshold, "threshold", np.float64, 2, data.shape)
    else:
        check_array(threshold, "threshold", np.float32, 2, data.shape)
    if mask is None:
        mask = np.zeros(data.shape, dtype=np.uint8)
    elif isinstance(mask, np.ndarray) and mask.dtype == np.bool_:
        mask = mask.view(np.uint8)
    check_array(mask, "mask", np.uint8, 2, data.shape)
    if int(npixels) != npixels or npixels < 1:
        raise ValueError(f"npixels must be a positive integer, got {npixels!r}")
    if data.shape[0] * data.shape[1] >= 2**31:
        raise ValueError(f"data has too many pixels for int32 labels: shape {data.shape}")
    out = np.empty(data.shape, dtype=np.int32)
    _, bbox, area = _segmentation.label_above(data, threshold, mask, out, int(npixels),
                                              effective_n_threads(n_threads))
    return Segments(out, bbox, area)


def label_source_pixels(
    pixels: np.ndarray, npixels: int = 1, *, n_threads: int | None = None
) -> Segments:
    """Label, in place, the 8-connected segments of the non-zero pixels of a map.

    `label_above_threshold` for source pixels decided beforehand (e.g. a block of
    rows at a time, from a detection image that is never whole in memory): the same
    labels, in the same order, boxes and areas as `label_above_threshold` gives when
    its source pixels are the non-zero ``pixels``. ``pixels`` is overwritten by the
    map (no other full-size array is made).

    Parameters
    ----------
    pixels : numpy.ndarray of int32, shape (ny, nx)
        Non-zero at the source pixels (C-contiguous, writable); holds the map after.
    npixels : int, optional
        Smallest segment kept, in pixels (>= 1).
    n_threads : int or None, optional
        Threads of the final pass; the result does not depend on it.

    Returns
    -------
    Segments
        ``data`` is ``pixels`` itself.

    Raises
    ------
    ValueError
        For an array of the wrong dtype, shape or layout, or ``npixels < 1``.
    """
    check_array(pixels, "pixels", np.int32, 2)
    if not pixels.flags.writeable:
        raise ValueError("pixels is read-only but is labelled in place")
    if int(npixels) != npixels or npixels < 1:
        raise ValueError(f"npixels must be a positive integer, got {npixels!r}")
    if pixels.shape[0] * pixels.shape[1] >= 2**31:
        raise ValueError(f"pixels has too many pixels for int32 labels: shape {pixels.shape}")
    _, bbox, area = _segmentation.label_sources(pixels, int(npixels),
                                                effective_n_threads(n_threads))
    return Segments(pixels, bbox, area)


def segment_moments(
    conv: np.ndarray,
    data: np.ndarray,
    error: np.ndarray,
    mask: np.ndarray,
    segm: np.ndarray,
    labels: np.ndarray,
    bbox: np.ndarray,
    *,
    n_threads: int | None = None,
) -> np.ndarray:
    """Return the moments and sums of photutils' ``SourceCatalog`` for every segment.

    For segment ``labels[k]`` inside ``bbox[k]``, over its pixels not in ``mask``:
    the moment image is ``conv`` set to zero where it is not finite or negative
    (photutils' moment data when a convolved image is given); its sum ``m00``, its
    centroid ``x``, ``y`` (image pixels; NaN when ``m00`` is 0) and its central
    second moments ``sxx = sum (x - x̄)^2 w``, ``sxy``, ``syy`` (not normalised);
    ``flux``: the sum of the finite ``data`` (``segment_flux``), in raster order;
    ``error_sq``: the sum of ``error**2`` over the same pixels;
    ``area``: their count. OpenMP over segments; the same numbers for any thread
    count.

    Parameters
    ----------
    conv, data, error : numpy.ndarray of float64, shape (ny, nx)
        Detection (convolved) image, background-subtracted image and its error.
    mask : numpy.ndarray of bool or uint8, shape (ny, nx)
        Pixels left out (non-zero).
    segm : numpy.ndarray of int32, shape (ny, nx)
        Segmentation map.
    labels : numpy.ndarray of int32, shape (n,)
        Segments to measure.
    bbox : numpy.ndarray of int32, shape (n, 4)
        Their ``(ymin, ymax, xmin, xmax)``, inclusive (:class:`Segments`).
    n_threads : int or None, optional
        Threads to use (see :func:`romancore.effective_n_threads`).

    Returns
    -------
    numpy.ndarray of float64, shape (n, 9)
        Columns in the order of `MOMENT_COLUMNS`.

    Raises
    ------
    ValueError
        For arrays of the wrong dtype, shape or layout, or boxes outside the image.
    """
    check_array(conv, "conv", np.float64, 2)
    for name, arr in (("data", data), ("error", error)):
        check_array(arr, name, np.float64, 2, conv.shape)
    if isinstance(mask, np.ndarray) and mask.dtype == np.bool_:
        mask = mask.view(np.uint8)
    check_array(mask, "mask", np.uint8, 2, conv.shape)
    check_array(segm, "segm", np.int32, 2, conv.shape)
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    bbox = np.ascontiguousarray(bbox, dtype=np.int32).reshape(-1, 4)
    if labels.ndim != 1 or len(bbox) != len(labels):
        raise ValueError(f"labels ({labels.shape}) and bbox ({bbox.shape}) do not match")
    ny, nx = conv.shape
    if len(bbox) and (bbox[:, [0, 2]].min() < 0 or bbox[:, 1].max() >= ny
                      or bbox[:, 3].max() >= nx or np.any(bbox[:, 1] < bbox[:, 0])
                      or np.any(bbox[:, 3] < bbox[:, 2])):
        raise ValueError(f"a bounding box lies outside the {ny} x {nx} image or is empty")
    out = np.empty((len(labels), len(MOMENT_COLUMNS)), dtype=np.float64)
    if len(labels):
        _segmentation.segment_moments(conv, data, error, mask, segm, labels, bbox, out,
                                      effective_n_threads(n_threads))
    return out
