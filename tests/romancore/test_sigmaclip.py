"""romancore.sigma_clip_bounds: astropy's median / mad_std clip bounds, bit for bit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.stats import SigmaClip

from romancore import sigma_clip_bounds, sigma_clip_bounds_rows


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
