"""romancore.sigma_clip_bounds: astropy's median / mad_std clip bounds, bit for bit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.stats import SigmaClip

from romancore import clipped_stats_rows, sigma_clip_bounds, sigma_clip_bounds_rows


def _astropy_bounds(values, maxiters, lower=3.0, upper=3.0):
    clip = SigmaClip(sigma_lower=lower, sigma_upper=upper, stdfunc="mad_std",
                     maxiters=np.inf if maxiters is None else maxiters)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # axis=-1 takes astropy's compiled path (bounds in float64)
        _, lo, hi = clip(np.asarray(values)[None, :], axis=-1, masked=False,
                         return_bounds=True)
    return lo[0], hi[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 10, 11, 100, 1001, 20000])
def test_bounds_equal_astropy(dtype, n):
    rng = np.random.default_rng(n)
    for trial in range(4):
        values = rng.normal(size=n).astype(dtype)
        if n > 10:
            values[: n // 20] += rng.uniform(3, 30, n // 20).astype(dtype)  # outliers
        if n > 3:
            values[rng.random(n) < 0.1] = np.nan
        if trial == 3:
            values = np.round(values * 2) / 2  # many ties
        for maxiters in (1, 3, 10, None):
            for lower, upper in ((3.0, 3.0), (2.0, 4.0)):
                ours = sigma_clip_bounds(values, lower, upper, maxiters)
                theirs = _astropy_bounds(values, maxiters, lower, upper)
                assert np.array_equal(np.asarray(ours, dtype=np.asarray(theirs).dtype),
                                      np.asarray(theirs), equal_nan=True)


def test_hand_computed_bounds():
    # median 2, |v - 2| = 1 1 0 1 98 -> MAD 1: bounds 2 -+ 3 x 1.4826 keep 1..3;
    # then median 2, MAD 0.5 ... until nothing changes
    values = np.array([1.0, 2.0, 3.0, 100.0, 1.0, np.nan])
    lo, hi = sigma_clip_bounds(values, 3.0, 3.0, maxiters=1)
    spread = 1.482602218505602
    assert lo == pytest.approx(2.0 - 3.0 * spread) and hi == pytest.approx(2.0 + 3.0 * spread)
    assert np.isnan(sigma_clip_bounds(np.array([np.nan, np.inf]))).all()


def test_rows_do_not_depend_on_threads():
    rng = np.random.default_rng(7)
    data = rng.standard_cauchy(size=(9, 3001)).astype(np.float32)
    data[2] = np.nan
    one = sigma_clip_bounds_rows(data, n_threads=1)
    for n in (2, 5):
        got = sigma_clip_bounds_rows(data, n_threads=n)
        for a, b in zip(one, got, strict=True):
            assert np.array_equal(a, b, equal_nan=True)
    assert np.isnan(one[0][2]) and np.isnan(one[1][2])
    assert one[0][0] == sigma_clip_bounds(data[0])[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"sigma_lower": -1.0}, "sigma_lower"), ({"sigma_upper": np.nan}, "sigma_upper"),
     ({"maxiters": 0}, "maxiters"), ({"maxiters": 2.5}, "maxiters")],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sigma_clip_bounds(np.arange(5.0), **kwargs)
    with pytest.raises(ValueError, match="2-D"):
        sigma_clip_bounds_rows(np.arange(5.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clipped_stats_equal_numpy_on_the_clipped_rows(dtype):
    """Median exactly numpy's nanmedian of the clipped row; std to float rounding."""
    rng = np.random.default_rng(5)
    data = rng.normal(10.0, 2.0, size=(12, 3001)).astype(dtype)
    data[:, :60] += rng.uniform(10, 200, (12, 60)).astype(dtype)  # outliers to clip
    data[rng.random(data.shape) < 0.05] = np.nan
    data[3, :] = np.round(data[3, :])  # ties
    data[4, 1:] = np.nan  # one value: kept alone
    data[5, :] = np.nan  # nothing
    data[6, 1::2] = np.nan  # even and odd counts across rows
    data[7, 2:] = np.nan
    median, std, count = clipped_stats_rows(data, 3.0, 3.0, 5)
    lower, upper = sigma_clip_bounds_rows(data, 3.0, 3.0, 5)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        clipped = np.where((data >= lower[:, None]) & (data <= upper[:, None]), data, np.nan)
        want_median = np.nanmedian(clipped, axis=-1)
        want_std = np.nanstd(clipped.astype(np.float64), axis=-1)
    assert median.dtype == dtype and std.dtype == dtype
    np.testing.assert_array_equal(median, want_median.astype(dtype))
    np.testing.assert_array_equal(count, np.count_nonzero(~np.isnan(clipped), axis=-1))
    np.testing.assert_allclose(std, want_std.astype(dtype), rtol=1e-6 if dtype == np.float32
                               else 1e-12, equal_nan=True)
    assert np.isnan(median[5]) and np.isnan(std[5]) and count[5] == 0
    assert count[4] == 1 and std[4] == 0.0
    # hand case: 1..5 and an outlier at 1000 (clipped); median 3, population std sqrt(2)
    m, s, c = clipped_stats_rows(np.array([[1.0, 2, 3, 4, 5, 1000]]), 3.0, 3.0, None)
    assert (m[0], c[0]) == (3.0, 5) and s[0] == pytest.approx(np.sqrt(2.0), rel=1e-15)
    # thread count does not matter
    for n in (1, 3):
        again = clipped_stats_rows(data, 3.0, 3.0, 5, n_threads=n)
        for a, b in zip(again, (median, std, count), strict=True):
            np.testing.assert_array_equal(a, b)


def test_mean_std_matches_numpy_float64():
    from romancore.sigmaclip import mean_std

    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.float64):
        for n in (1, 5, 4096, 4097, 100_003):
            values = (rng.normal(1e4, 3.0, n)).astype(dtype)
            mean, std = mean_std(values)
            assert mean == pytest.approx(np.mean(values, dtype=np.float64), rel=1e-14)
            assert std == pytest.approx(np.std(values, dtype=np.float64), rel=1e-9, abs=1e-12)
    assert all(np.isnan(mean_std(np.array([], np.float32))))
    assert mean_std(np.array([[1.0, 3.0]])) == (2.0, 1.0)


def test_mean_std_same_on_any_threads():
    """The blocks summed in parallel, their sums added in order: the same bits."""
    from romancore.sigmaclip import mean_std

    rng = np.random.default_rng(8)
    for dtype in (np.float32, np.float64):
        for n in (1, 4095, 4096, 4097, 3 * 4096 + 5, 200_001):
            values = (rng.normal(1e4, 3.0, n) * rng.uniform(0.5, 2.0, n)).astype(dtype)
            one = mean_std(values, n_threads=1)
            assert mean_std(values, n_threads=2) == one
            assert mean_std(values, n_threads=3) == one
