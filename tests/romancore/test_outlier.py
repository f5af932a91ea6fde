"""romancore.outlier.flag_resampled against the numpy form of stcal's flag_resampled_crs."""

import warnings

import numpy as np
import pytest
from scipy import ndimage

from romancal_lite.steps.outlier_detection import abs_derivative
from romancore.outlier import flag_resampled


def _numpy_form(sci, err, blot, snr1, snr2, scale1, scale2, backg):
    error = np.nan_to_num(np.asarray(err, dtype=np.float32), nan=0.0)
    deriv = abs_derivative(np.asarray(blot, dtype=np.float32))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(np.asarray(sci, dtype=np.float32) - blot - np.float32(backg))
        first = diff > np.float32(scale1) * deriv + np.float32(snr1) * error
        grown = ndimage.binary_dilation(first, structure=np.ones((3, 3), bool))
        second = diff > np.float32(scale2) * deriv + np.float32(snr2) * error
    return grown & second


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (2, 2), (57, 43), (300, 211)])
def test_same_mask_as_the_numpy_form(shape):
    rng = np.random.default_rng(sum(shape))
    blot = rng.normal(1.0, 0.3, shape).astype(np.float32)
    sci = (blot + rng.normal(0, 0.05, shape)).astype(np.float32)
    hits = rng.random(shape) < 0.03
    sci[hits] += rng.uniform(0.1, 5, hits.sum()).astype(np.float32)
    err = rng.uniform(0.01, 0.1, shape).astype(np.float32)
    for array, value, fraction in ((blot, np.nan, 0.05), (sci, np.nan, 0.02),
                                   (err, np.nan, 0.05), (err, np.inf, 0.01),
                                   (blot, np.inf, 0.005), (err, -np.inf, 0.005)):  # fmt: skip
        array[rng.random(shape) < fraction] = value
    for args in ((5.0, 4.0, 1.2, 0.7, 0.0), (3.0, 2.0, 0.5, 0.3, 0.05), (5, 4, 0, 0, -1)):
        expected = _numpy_form(sci, err, blot, *args)
        got = flag_resampled(sci, err, blot, *args)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(flag_resampled(sci, err, blot, *args, n_threads=1),
                                      expected)  # fmt: skip


def test_float16_error_and_shape_check():
    blot = np.ones((5, 6), np.float32)
    sci = blot.copy()
    sci[2, 3] = 9.0
    err = np.full((5, 6), 0.1, np.float16)
    mask = flag_resampled(sci, err, blot, 5.0, 4.0, 1.2, 0.7, 0.0)
    assert mask.dtype == bool and mask.sum() == 1 and mask[2, 3]
    with pytest.raises(ValueError):
        flag_resampled(sci, err[:4], blot, 5.0, 4.0, 1.2, 0.7, 0.0)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (37, 53)])
def test_kept_values_as_numpy(shape):
    """count_kept / gather_kept: numpy's boolean selection, same values, same order."""
    from romancore.outlier import count_kept, gather_kept

    rng = np.random.default_rng(sum(shape))
    values = rng.normal(10.0, 3.0, shape).astype(np.float32)
    special = rng.random(shape)
    values[special < 0.1] = 0
    values[(special >= 0.1) & (special < 0.15)] = np.nan
    values[(special >= 0.15) & (special < 0.18)] = np.inf
    values[(special >= 0.18) & (special < 0.2)] = -np.inf
    finite = np.isfinite(values) & (values != 0)
    for bounds in (None, (np.float32(8.5), np.float32(12.25))):
        keep = finite.copy()
        if bounds is not None:
            keep &= (values >= bounds[0]) & (values <= bounds[1])
        counts = count_kept(values, bounds)
        assert np.array_equal(counts, keep.sum(axis=1))
        for threads in (1, 2):
            out = np.full(values.size + 2, -1.0, np.float32)
            assert gather_kept(values, out, bounds, n_threads=threads) == keep.sum()
            assert np.array_equal(out[: keep.sum()], values[keep])
            assert (out[keep.sum() :] == -1).all()
    with pytest.raises(ValueError, match="out holds"):
        gather_kept(np.ones((2, 2), np.float32), np.empty(3, np.float32))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 13, 16, 33])
def test_nanmedian_axis0_as_numpy(n):
    """The compiled median equals numpy.nanmedian bit for bit, up to the sign of a
    zero median; NaN, +-inf, all-NaN pixels and the rows of a non-contiguous block."""
    from romancore.outlier import nanmedian_axis0

    rng = np.random.default_rng(n)
    full = rng.normal(size=(n, 41, 57)).astype(np.float32)
    full[rng.random(full.shape) < 0.3] = np.nan
    full[rng.random(full.shape) < 0.03] = np.inf
    full[rng.random(full.shape) < 0.03] = -np.inf
    full[:, 0, :5] = np.nan
    full[:, 1, :3] = 2.5  # ties
    block = full[:, :29]  # a block of rows, as the on-disk median reads them
    assert n == 1 or not block.flags.c_contiguous
    before = block.copy()
    got = nanmedian_axis0(block)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(block, axis=0)
    assert np.array_equal(block, before, equal_nan=True)  # not modified
    same_bits = got.view(np.uint32) == expected.view(np.uint32)
    assert np.all(same_bits | ((got == 0) & (expected == 0)))
    assert np.isnan(got[0, :5]).all() and (got[1, :3] == 2.5).all()


def test_nanmedian_axis0_checks_its_input():
    from romancore.outlier import nanmedian_axis0

    with pytest.raises(ValueError, match="3-D"):
        nanmedian_axis0(np.zeros((3, 4), np.float32))
    # other types are converted (float32 values)
    got = nanmedian_axis0(np.array([[[1.0]], [[np.nan]], [[4.0]]]))
    assert got.dtype == np.float32 and got[0, 0] == 2.5
