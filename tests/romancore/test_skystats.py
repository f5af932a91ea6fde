"""romancore.skystats: hand cases and stsci.imagestats (stcal's SkyStats engine)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from romancore.skystats import sky_statistic


def _stat(values, mask=None, skystat="mean", **kw):
    data = np.ascontiguousarray(np.atleast_2d(np.asarray(values, dtype=np.float32)))
    if mask is None:
        mask = np.ones(data.shape, dtype=bool)
    mask = np.ascontiguousarray(np.atleast_2d(np.asarray(mask, dtype=bool)))
    return sky_statistic(data, mask, skystat, **kw)


def test_mean_and_median_by_hand():
    # no clipping: plain mean / median of the masked values
    assert _stat([1, 2, 3, 4, 100], [1, 1, 1, 1, 0], "mean", nclip=0) == (2.5, 4)
    assert _stat([1, 2, 3, 4, 100], [1, 1, 1, 1, 0], "median", nclip=0) == (2.5, 4)


def test_clipping_by_hand():
    # 0..9 and one 1000: mean 91.36, sample std 298.95 -> upper bound 91.36 + 1 x 298.95
    # = 390.3 drops the 1000; the second pass keeps 0..9: mean 4.5, n 10
    values = [*range(10), 1000]
    value, npix = _stat(values, skystat="mean", nclip=1, lsigma=1.0, usigma=1.0)
    assert npix == 10
    assert value == pytest.approx(4.5)
    # 'lower'/'upper' bound the values before any clipping
    assert _stat(values, skystat="mean", nclip=0, upper=9.0) == (4.5, 10)
    assert _stat(values, skystat="mean", nclip=0, lower=5.0, upper=9.0) == (7.0, 5)


def test_mode_of_a_peaked_histogram():
    # a narrow peak at 3.0 on a broad flat distribution: the mode is close to 3
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.uniform(0, 10, 20000), rng.normal(3.0, 0.05, 20000)])
    value, _ = _stat(values.reshape(200, 200), skystat="mode", nclip=0, binwidth=0.01)
    assert value == pytest.approx(3.0, abs=0.02)


@pytest.mark.parametrize(
    ("values", "mask", "kw"),
    [
        ([1.0, 2.0], [0, 0], {}),  # no pixel
        ([1.0, 2.0], [1, 1], {"lower": 5.0}),  # lower above the data
        ([1.0, 2.0], [1, 1], {"upper": 0.5}),  # upper below the data
        ([1.0, 2.0], [1, 1], {"lower": 1.5, "upper": 1.2}),  # lower > upper
        ([1.0, 2.0], [1, 1], {"lsigma": 0.0}),  # stsci.imagestats rejects it
    ],
)
def test_no_value(values, mask, kw):
    assert _stat(values, mask, "mode", **kw) == (None, 0)


def test_argument_errors():
    data = np.zeros((3, 3), np.float32)
    mask = np.ones((3, 3), bool)
    with pytest.raises(ValueError, match="skystat"):
        sky_statistic(data, mask, "average")
    with pytest.raises(ValueError, match="nclip"):
        sky_statistic(data, mask, nclip=-1)
    with pytest.raises(ValueError, match="mask"):
        sky_statistic(data, mask[:2], "mean")
    with pytest.raises(ValueError, match="data"):
        sky_statistic(data.astype(np.float64), mask, "mean")


def test_threads_do_not_change_the_result():
    rng = np.random.default_rng(2)
    data = rng.normal(5.0, 1.0, (2048, 1024)).astype(np.float32)
    mask = rng.random(data.shape) < 0.95
    results = {sky_statistic(data, mask, s, n_threads=t) for s in ("mode",) for t in (1, 2, 3)}
    assert len(results) == 1


@pytest.mark.parametrize("skystat", ["mode", "median", "mean", "midpt"])
def test_against_stsci_imagestats(skystat):
    imagestats = pytest.importorskip("stsci.imagestats")
    rng = np.random.default_rng(3)
    for trial in range(24):
        ny, nx = rng.integers(5, 200, 2)
        data = rng.normal(10.0, 2.0, (ny, nx)).astype(np.float32)
        data[rng.random((ny, nx)) < 0.02] += rng.uniform(20, 500)  # sources / CRs
        mask = rng.random((ny, nx)) < 0.9
        kw = {
            "lower": None if trial % 3 else 4.0,
            "upper": None if trial % 4 else 30.0,
            "nclip": int(trial % 6),
            "binwidth": (0.1, 0.05, 0.3)[trial % 3],
        }
        with contextlib.redirect_stdout(io.StringIO()):  # its "1 bin" warnings
            try:
                theirs = imagestats.ImageStats(
                    data[mask], fields=f"npix,{skystat}", lsig=4.0, usig=3.0, **kw
                )
                expected = (float(getattr(theirs, skystat)), int(theirs.npix))
            except ValueError:
                expected = (None, 0)
        got = sky_statistic(data, mask, skystat, lsigma=4.0, usigma=3.0, **kw)
        assert got.npix == expected[1]
        if expected[0] is None:
            assert got.value is None
        else:
            assert got.value == expected[0]


@pytest.mark.parametrize("n_threads", [1, 3])
def test_good_sky_pixels_matches_numpy(n_threads):
    from romancore.skystats import good_sky_pixels

    rng = np.random.default_rng(5)
    data = rng.normal(size=(37, 53)).astype(np.float32)
    data[rng.random(data.shape) < 0.1] = np.nan
    data[rng.random(data.shape) < 0.05] = np.inf
    data[3, 4] = -np.inf
    dq = rng.integers(0, 2**32, size=data.shape, dtype=np.uint64).astype(np.uint32)
    dq[rng.random(data.shape) < 0.5] = 0
    for bits in (1, 0b1010, 2**31, 2**32 - 1, 0):
        expected = np.isfinite(data) & ((dq & np.uint32(bits)) == 0)
        got = good_sky_pixels(data, dq, bits, n_threads=n_threads)
        assert got.dtype == bool and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(good_sky_pixels(data, dq, None), np.isfinite(data))
    np.testing.assert_array_equal(good_sky_pixels(data, None, 7), np.isfinite(data))
    with pytest.raises(ValueError):
        good_sky_pixels(data, dq.astype(np.int64), 1)
    with pytest.raises(ValueError, match="32 bits"):
        good_sky_pixels(data, dq, 2**32)


@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (1, 7), (9, 13), (16, 4)])
def test_masked_passes_sum_each_row_in_column_order(shape):
    """The compiled passes (four rows at a time) give each row's float64 sum in column
    order, then the rows' sums in row order: bit for bit the sequential reference."""
    from romancore import _skystats

    rng = np.random.default_rng(sum(shape))
    data = rng.normal(0, 1e3, shape).astype(np.float32)
    mask = (rng.random(shape) < 0.7).astype(np.uint8)
    lo, hi, mean = np.float32(-900.0), np.float32(1100.0), np.float32(12.5)
    n, total, vmin, vmax = 0, 0.0, np.inf, -np.inf
    ssd = 0.0
    for row, keep in zip(data, mask, strict=True):
        s, q = 0.0, 0.0
        for v, k in zip(row, keep, strict=True):
            if k and lo <= v <= hi:
                n += 1
                s = s + float(v)
                d = np.float32(v - mean)
                q = q + float(np.float32(d * d))
                vmin, vmax = min(vmin, float(v)), max(vmax, float(v))
        total += s
        ssd += q
    for threads in (1, 2, 3):
        got = _skystats.masked_moments(data, mask, lo, hi, threads)
        assert got[0] == n and got[1] == total
        if n:
            assert (got[2], got[3]) == (vmin, vmax)
        assert _skystats.masked_sum_sq_dev(data, mask, lo, hi, mean, threads) == ssd


@pytest.mark.parametrize("skystat", ["mode", "median", "mean", "midpt"])
def test_window_read_in_place_as_its_copy(skystat):
    """A window of an image (contiguous rows, not each other's neighbours) gives the
    statistic of its contiguous copy; arrays whose rows are not contiguous are refused."""
    rng = np.random.default_rng(3)
    image = rng.normal(10.0, 2.0, (120, 150)).astype(np.float32)
    image[rng.random(image.shape) < 0.01] = 80.0
    window = image[17:101, 23:131]
    assert not window.flags.c_contiguous
    mask = rng.random(window.shape) < 0.8
    got = sky_statistic(window, mask, skystat, nclip=3)
    assert got == sky_statistic(np.ascontiguousarray(window), mask, skystat, nclip=3)
    assert got.npix > 1000
    for bad in (image[::-1][:84, :108], image[:84, ::2][:, :108], image.T[:84, :108]):
        with pytest.raises(ValueError, match="contiguous rows"):
            sky_statistic(bad, mask, skystat)
