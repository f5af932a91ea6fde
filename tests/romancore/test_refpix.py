"""romancore.refpix: the per-pixel passes of the REFPIX correction.

Each kernel is checked against a hand-computed case and against the NumPy arithmetic
it replaces in ``steps/refpix/reference_correction.py`` (bit for bit), for 1 and 2
threads.
"""

from __future__ import annotations

import numpy as np
import pytest

from romancore import refpix


def _numpy_mean(cube: np.ndarray) -> np.ndarray:
    total = np.zeros(cube.shape[1:], dtype=np.float32)
    count = np.zeros(cube.shape[1:], dtype=np.int32)
    for plane in cube:
        finite = np.isfinite(plane)
        total += np.where(finite, plane, np.float32(0))
        count += finite
    return total / np.maximum(count, 1).astype(np.float32)


def _numpy_trends(plane, offset, read_pos, slope, intercept, row_time):
    col_slope = np.repeat(slope, 128)
    col_const = col_slope * read_pos + np.repeat(intercept, 128)
    trend = np.multiply.outer(row_time, col_slope) + col_const
    trend[plane == (0 if offset is None else offset)] = 0.0
    out = plane.copy()
    out -= trend
    return out


def test_mean_hand_case() -> None:
    cube = np.array([[[1.0, np.nan]], [[2.0, np.nan]], [[4.0, np.inf]]], dtype=np.float32)
    mean = refpix.mean_over_resultants(cube)
    assert mean.dtype == np.float32
    assert mean[0, 0] == np.float32(7.0 / 3.0)
    assert mean[0, 1] == 0.0  # no finite resultant


@pytest.mark.parametrize("n_threads", [1, 2])
def test_mean_matches_numpy(n_threads: int) -> None:
    rng = np.random.default_rng(3)
    cube = (6000 + rng.normal(0, 30, (7, 40, 256))).astype(np.float32)
    cube[2, 5, 7] = np.nan
    cube[:, 9, 9] = np.nan
    got = refpix.mean_over_resultants(cube, n_threads=n_threads)
    np.testing.assert_array_equal(got, _numpy_mean(cube))


def test_trends_hand_case() -> None:
    plane = np.full((2, 256), 10.0, dtype=np.float32)
    plane[1, 3] = 0.0  # "no sample" without an offset: left alone
    read_pos = np.concatenate([np.arange(128), np.arange(128)[::-1]])
    slope = np.array([1.0, 0.0])
    intercept = np.array([0.5, 2.0])
    row_time = np.array([0.0, 140.0])
    refpix.subtract_channel_trends(plane, None, read_pos, slope, intercept, row_time)
    assert plane[0, 0] == 10.0 - 0.5
    assert plane[0, 5] == 10.0 - 5.5
    assert plane[1, 5] == np.float32(10.0 - (140.0 + 5.0 + 0.5))
    assert plane[1, 3] == 0.0
    assert np.all(plane[:, 128:] == 8.0)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("with_offset", [False, True])
def test_trends_match_numpy(n_threads: int, with_offset: bool) -> None:
    rng = np.random.default_rng(4)
    ny, nx = 48, 512
    plane = (6000 + rng.normal(0, 30, (ny, nx))).astype(np.float32)
    offset = plane + rng.normal(0, 3, (ny, nx)).astype(np.float32) if with_offset else None
    if offset is not None:
        plane[3, :50] = offset[3, :50]  # samples equal to their offset are not changed
    else:
        plane[3, :50] = 0
    plane[4, 4] = np.nan
    read_pos = np.concatenate([np.arange(128)[:: (-1) ** c] for c in range(4)])
    slope = rng.normal(0, 1e-4, 4)
    intercept = rng.normal(0, 5, 4)
    row_time = np.arange(ny) * 140.0 - (ny * 140 - 1) / 2
    want = _numpy_trends(plane, offset, read_pos, slope, intercept, row_time)
    refpix.subtract_channel_trends(plane, offset, read_pos, slope, intercept, row_time,
                                   n_threads=n_threads)
    np.testing.assert_array_equal(plane, want)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_channel_correction_matches_numpy(n_threads: int) -> None:
    rng = np.random.default_rng(5)
    n, ny, nx, rs = 3, 16, 512, 140
    data = rng.normal(0, 10, (n, ny, nx)).astype(np.float32)
    corr = rng.normal(0, 1, (2, n, ny * rs)).astype(np.float32)
    want = data.copy()
    for g, c in enumerate((1, 2)):
        series = corr[g].reshape(n, ny, rs)
        cols = slice(c * 128, (c + 1) * 128)
        want[:, :, cols] -= series[:, :, 127::-1] if c % 2 else series[:, :, :128]
    refpix.subtract_channel_correction(data, corr, 1, n_threads=n_threads)
    np.testing.assert_array_equal(data, want)
    # one series for every channel
    data2 = want.copy()
    series = corr[:1]
    refpix.subtract_channel_correction(data2, series, None, n_threads=n_threads)
    s = series[0].reshape(n, ny, rs)
    for c in range(4):
        cols = slice(c * 128, (c + 1) * 128)
        want[:, :, cols] -= s[:, :, 127::-1] if c % 2 else s[:, :, :128]
    np.testing.assert_array_equal(data2, want)


def test_bad_arguments() -> None:
    data = np.zeros((2, 8, 256), dtype=np.float32)
    with pytest.raises(ValueError, match="float32"):
        refpix.mean_over_resultants(data.astype(np.float64))
    with pytest.raises(ValueError, match="128-column"):
        refpix.subtract_channel_trends(np.zeros((8, 100), np.float32), None,
                                       np.arange(100), np.zeros(1), np.zeros(1),
                                       np.zeros(8))
    with pytest.raises(ValueError, match="outside"):
        refpix.subtract_channel_correction(data, np.zeros((2, 2, 8 * 140), np.float32), 1)
    with pytest.raises(ValueError, match="shape"):
        refpix.subtract_channel_correction(data, np.zeros((1, 3, 8 * 140), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("n_threads", [1, 3])
def test_scan_rows_matches_numpy(dtype: type, n_threads: int) -> None:
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(7, 33)).astype(dtype)
    if np.issubdtype(dtype, np.complexfloating):
        rows.imag = rng.normal(size=rows.shape)
    rows[2] = rows[0]
    rows[3] = 0
    rows[4] = rows[0]
    rows[4, 5] = np.inf if not np.issubdtype(dtype, np.complexfloating) else complex(1, np.nan)
    rows[5] = rows[0]
    rows[5, -1] = -rows[5, -1]  # differs only in its last value
    flags = refpix.scan_rows(rows, n_threads=n_threads)
    want = np.array([[np.isfinite(r).all(), np.any(r), np.array_equal(r, rows[0])]
                     for r in rows])
    assert flags.dtype == bool
    np.testing.assert_array_equal(flags, want)


def test_scan_rows_hand_case_and_errors() -> None:
    rows = np.array([[0.0, -0.0], [0.0, 0.0], [0.0, 1.0]])
    # -0.0 == 0.0: the first two rows are equal and zero; the third is neither
    np.testing.assert_array_equal(
        refpix.scan_rows(rows), [[True, False, True], [True, False, True], [True, True, False]])
    np.testing.assert_array_equal(refpix.scan_rows(np.zeros((2, 0))), [[True, False, True]] * 2)
    with pytest.raises(ValueError, match="2-D"):
        refpix.scan_rows(np.zeros(3))
    with pytest.raises(ValueError, match="float32/64 or complex64/128"):
        refpix.scan_rows(np.zeros((2, 2), dtype=np.int32))
