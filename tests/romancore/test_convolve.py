"""romancore.convolve_separable_masked against hand values and astropy's convolve."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.convolution import convolve

from romancore import convolve_separable_masked


def test_hand_computed_interpolation_and_edges():
    data = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    bad = np.zeros(data.shape, dtype=bool)
    bad[1, 1] = True
    k = np.array([1.0, 1.0, 1.0])
    out = convolve_separable_masked(data, bad, k, k)
    # centre: mean of its 8 good neighbours; corner: the 3 good in-image pixels
    # plus 5 good zeros beyond the edges, over 8 good weights
    assert out[1, 1] == pytest.approx((45.0 - 5.0) / 8.0, rel=1e-15)
    assert out[0, 0] == pytest.approx((1.0 + 2.0 + 4.0) / 8.0, rel=1e-15)
    # a bad pixel is not used by its neighbours either
    assert out[0, 1] == pytest.approx((1.0 + 2.0 + 3.0 + 4.0 + 6.0) / 8.0, rel=1e-15)


def test_asymmetric_kernel_is_flipped_as_a_convolution():
    data = np.zeros((7, 9))
    data[3, 4] = 1.0
    ky = np.array([1.0, 2.0, 4.0])
    kx = np.array([0.5, 1.0, 3.0, 1.0, 0.25])
    out = convolve_separable_masked(data, np.zeros(data.shape, bool), ky, kx)
    kernel = np.outer(ky, kx)
    # an impulse gives the (normalized) kernel, not its mirror image
    np.testing.assert_allclose(out[2:5, 2:7], kernel / kernel.sum(), rtol=1e-14)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_astropy_convolve(seed):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(120, 97))
    bad = rng.random(data.shape) < 0.05
    bad[40:60, 10:40] = True  # a hole larger than the kernel: NaN inside
    data[3, 5] = np.nan
    ky = np.exp(-0.5 * (np.arange(-3, 4) / 1.2) ** 2)
    kx = np.exp(-0.5 * (np.arange(-2, 3) / 0.9) ** 2) * (1 + 0.1 * np.arange(5))
    kernel = np.outer(ky, kx)
    expected = convolve(data, kernel / kernel.sum(), mask=bad | ~np.isfinite(data),
                        boundary="fill", fill_value=0.0, normalize_kernel=True,
                        nan_treatment="interpolate")
    out = convolve_separable_masked(data, bad, ky, kx)
    assert np.array_equal(np.isnan(out), np.isnan(expected))
    assert np.isnan(out).any()
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-13, equal_nan=True)
    # empty_value replaces exactly those NaN
    zero = convolve_separable_masked(data, bad, ky, kx, empty_value=0.0)
    assert np.array_equal(zero, np.where(np.isnan(out), 0.0, out))


def test_same_result_for_any_thread_count():
    rng = np.random.default_rng(3)
    data = rng.normal(size=(301, 64))
    bad = rng.random(data.shape) < 0.1
    k = np.array([0.2, 0.6, 1.0, 0.6, 0.2])
    one = convolve_separable_masked(data, bad, k, k, n_threads=1)
    for n in (2, 3, 7):
        assert np.array_equal(convolve_separable_masked(data, bad, k, k, n_threads=n), one,
                              equal_nan=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.zeros((4, 4), np.float32), np.zeros((4, 4), bool), [1.0], [1.0]), "dtype float64"),
        ((np.zeros((4, 4)), np.zeros((3, 4), bool), [1.0], [1.0]), "shape"),
        ((np.zeros((4, 4)), np.zeros((4, 4), bool), [1.0, 1.0], [1.0]), "odd length"),
        ((np.zeros((4, 4)), np.zeros((4, 4), bool), [1.0, np.nan, 1.0], [1.0]), "non-finite"),
        ((np.zeros((4, 4)), np.zeros((4, 4), bool), [1.0, -2.0, 1.0], [1.0]), "sums to zero"),
    ],
)
def test_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        convolve_separable_masked(*args)
