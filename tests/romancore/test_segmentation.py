"""Threshold segmentation and segment moments (romancore.segmentation)."""

from __future__ import annotations

import numpy as np
import pytest

from romancore.segmentation import (
    MOMENT_COLUMNS,
    label_above_threshold,
    label_source_pixels,
    segment_moments,
)


def test_hand_case_connectivity_order_and_npixels():
    """8-connectivity (diagonals join), raster order of first pixels, small ones dropped."""
    img = np.zeros((6, 8))
    img[0, 5] = img[1, 4] = img[2, 3] = 1.0  # a diagonal: one segment of 3
    img[2, 0] = img[3, 0] = 1.0               # a vertical pair: 2 pixels
    img[4, 6] = img[5, 7] = img[5, 5] = 1.0   # a V shape opened at row 4
    img[0, 0] = 1.0                           # a single pixel, first in raster order
    found = label_above_threshold(img, np.full(img.shape, 0.5), npixels=2)
    expected = np.zeros(img.shape, dtype=np.int32)
    expected[0, 5] = expected[1, 4] = expected[2, 3] = 1
    expected[2, 0] = expected[3, 0] = 2
    expected[4, 6] = expected[5, 7] = expected[5, 5] = 3
    np.testing.assert_array_equal(found.data, expected)
    np.testing.assert_array_equal(found.area, [3, 2, 3])
    np.testing.assert_array_equal(found.bbox, [[0, 2, 3, 5], [2, 3, 0, 0], [4, 5, 5, 7]])
    assert found.slices[2] == (slice(4, 6), slice(5, 8))
    # npixels=1 keeps the single pixel, numbered first
    found1 = label_above_threshold(img, np.full(img.shape, 0.5), npixels=1)
    assert found1.n_labels == 4 and found1.data[0, 0] == 1 and found1.data[0, 5] == 2


def test_merges_late_u_shape_and_mask_and_nan():
    """Two branches that meet lower down are one segment labelled by its first pixel;
    masked and NaN pixels are never in a segment and can split one."""
    img = np.zeros((5, 5))
    img[0:4, 0] = img[0:4, 4] = 1.0
    img[4, :] = 1.0
    found = label_above_threshold(img, np.full(img.shape, 0.5))
    assert found.n_labels == 1 and found.area[0] == 13
    mask = np.zeros(img.shape, dtype=bool)
    mask[4, 2] = True
    split = label_above_threshold(img, np.full(img.shape, 0.5), mask)
    assert split.n_labels == 2 and list(split.area) == [6, 6]
    img[4, 2] = np.nan
    np.testing.assert_array_equal(label_above_threshold(img, np.full(img.shape, 0.5)).data,
                                  split.data)


@pytest.mark.parametrize("threshold_dtype", [np.float64, np.float32])
def test_equals_photutils_detect_sources(threshold_dtype):
    photutils = pytest.importorskip("photutils.segmentation")
    rng = np.random.default_rng(5)
    for _ in range(40):
        ny, nx = rng.integers(1, 70, 2)
        data = rng.normal(size=(ny, nx))
        data[rng.random((ny, nx)) < 0.03] = np.nan
        threshold = rng.uniform(-0.3, 1.2, (ny, nx)).astype(threshold_dtype)
        mask = rng.random((ny, nx)) < 0.08
        npixels = int(rng.integers(1, 7))
        if mask.all():
            continue
        ref = photutils.detect_sources(data, threshold, npixels, mask=mask)
        ours = label_above_threshold(data, threshold, mask, npixels)
        if ref is None:
            assert ours.n_labels == 0 and not ours.data.any()
            continue
        np.testing.assert_array_equal(ours.data, ref.data)
        assert ours.slices == ref.slices
        np.testing.assert_array_equal(ours.area, ref.areas)


def test_thread_invariance_and_many_labels():
    rng = np.random.default_rng(2)
    data = rng.normal(size=(700, 900))
    threshold = np.full_like(data, 1.5)
    one = label_above_threshold(data, threshold, n_threads=1)
    two = label_above_threshold(data, threshold, n_threads=2)
    assert one.n_labels > 4096  # the label table had to grow
    np.testing.assert_array_equal(one.data, two.data)
    np.testing.assert_array_equal(one.bbox, two.bbox)
    m1 = segment_moments(data, data, np.ones_like(data), np.zeros(data.shape, bool),
                         one.data, np.arange(1, one.n_labels + 1), one.bbox, n_threads=1)
    m2 = segment_moments(data, data, np.ones_like(data), np.zeros(data.shape, bool),
                         one.data, np.arange(1, one.n_labels + 1), one.bbox, n_threads=2)
    np.testing.assert_array_equal(m1, m2)


def test_segment_moments_hand_case():
    conv = np.zeros((4, 5))
    conv[1, 1], conv[1, 2], conv[2, 2] = 1.0, 3.0, -2.0  # negative: no moment weight
    conv[2, 3] = np.inf  # not finite: no moment weight
    data = np.full((4, 5), 2.0)
    data[2, 3] = np.nan  # not finite: not in the sums
    err = np.full((4, 5), 0.5)
    segm = np.zeros((4, 5), dtype=np.int32)
    segm[1, 1] = segm[1, 2] = segm[2, 2] = segm[2, 3] = 7
    segm[0, 0] = 7  # masked below
    mask = np.zeros((4, 5), dtype=bool)
    mask[0, 0] = True
    out = segment_moments(conv, data, err, mask, segm, np.array([7]),
                          np.array([[0, 2, 0, 3]]))
    got = dict(zip(MOMENT_COLUMNS, out[0], strict=True))
    assert got["m00"] == 4.0
    assert got["x"] == pytest.approx((1 * 1 + 2 * 3) / 4) and got["y"] == 1.0
    assert got["sxx"] == pytest.approx(1 * (1 - 1.75) ** 2 + 3 * (2 - 1.75) ** 2)
    assert got["sxy"] == 0.0 and got["syy"] == 0.0
    assert got["flux"] == 6.0 and got["error_sq"] == 0.75 and got["area"] == 3


def test_errors():
    good = np.zeros((4, 4))
    with pytest.raises(ValueError, match="threshold must have dtype"):
        label_above_threshold(good, np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match="threshold has shape"):
        label_above_threshold(good, np.zeros((4, 5)))
    with pytest.raises(ValueError, match="npixels"):
        label_above_threshold(good, good, npixels=0)
    with pytest.raises(ValueError, match="data must have dtype"):
        label_above_threshold(good.astype(np.float32), good)
    segm = np.zeros((4, 4), np.int32)
    with pytest.raises(ValueError, match="outside"):
        segment_moments(good, good, good, np.zeros((4, 4), bool), segm, np.array([1]),
                        np.array([[0, 4, 0, 0]]))
    with pytest.raises(ValueError, match="do not match"):
        segment_moments(good, good, good, np.zeros((4, 4), bool), segm, np.array([1, 2]),
                        np.array([[0, 1, 0, 1]]))


@pytest.mark.parametrize("error_dtype", [np.float16, np.float32])
def test_detection_inputs_equal_numpy(error_dtype):
    from romancore.segmentation import detection_inputs, masked_error

    rng = np.random.default_rng(9)
    shape = (70, 90)
    data = rng.normal(size=shape).astype(np.float32)
    data[rng.random(shape) < 0.02] = np.nan
    data[rng.random(shape) < 0.01] = np.inf
    err = np.abs(rng.normal(size=shape)).astype(error_dtype)
    err[rng.random(shape) < 0.02] = 0
    err[rng.random(shape) < 0.02] = -1
    err[rng.random(shape) < 0.02] = np.nan
    err[rng.random(shape) < 0.01] = -np.inf
    err[0, :5] = np.array([6e-8, 1e-5, 65504, 2**-24, 3e-6], dtype=error_dtype)  # subnormals
    dq = rng.integers(0, 8, shape).astype(np.uint32)
    mask, image = detection_inputs(data, err, dq, 1, n_threads=2)
    error = masked_error(err, mask, n_threads=2)
    with np.errstate(invalid="ignore"):
        by_values = ~np.isfinite(data) | ~np.isfinite(err) | ~(err > 0)
    expected = by_values | ((dq & 1) != 0)
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(image, np.where(expected, np.float32(np.nan), data))
    np.testing.assert_array_equal(error, np.where(expected, np.nan, err.astype(np.float64)))
    assert error.dtype == np.float64 and image.dtype == np.float32
    # without DQ: only the values decide
    mask2, _ = detection_inputs(data, err)
    np.testing.assert_array_equal(mask2, by_values)
    np.testing.assert_array_equal(masked_error(err, mask, n_threads=1), error)


@pytest.mark.parametrize("npixels", [1, 3, 8])
def test_label_source_pixels_equals_label_above_threshold(npixels):
    """Source pixels decided beforehand (e.g. a row block at a time), labelled in place:
    the map, boxes and areas of label_above_threshold, for random maps with masks,
    NaN and segments that merge late (U shapes across many rows)."""
    rng = np.random.default_rng(npixels)
    for _ in range(40):
        ny, nx = (int(v) for v in rng.integers(1, 70, 2))
        data = rng.normal(size=(ny, nx))
        data[rng.random((ny, nx)) < 0.05] = np.nan
        threshold = np.full((ny, nx), rng.uniform(-0.6, 0.8), dtype=np.float32)
        mask = rng.random((ny, nx)) < 0.1
        expected = label_above_threshold(data, threshold, mask, npixels)
        pixels = np.zeros((ny, nx), dtype=np.int32)
        for r0 in range(0, ny, 7):  # decided a block of rows at a time
            above = np.greater(data[r0:r0 + 7], threshold[r0:r0 + 7]) & ~mask[r0:r0 + 7]
            pixels[r0:r0 + 7] = above
        found = label_source_pixels(pixels, npixels)
        assert found.data is pixels
        np.testing.assert_array_equal(found.data, expected.data)
        np.testing.assert_array_equal(found.bbox, expected.bbox)
        np.testing.assert_array_equal(found.area, expected.area)


def test_label_source_pixels_checks():
    with pytest.raises(ValueError, match="int32"):
        label_source_pixels(np.zeros((3, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="npixels"):
        label_source_pixels(np.zeros((3, 3), dtype=np.int32), 0)
    frozen = np.zeros((3, 3), dtype=np.int32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        label_source_pixels(frozen)
    empty = label_source_pixels(np.zeros((4, 5), dtype=np.int32))
    assert empty.n_labels == 0 and not empty.data.any()
