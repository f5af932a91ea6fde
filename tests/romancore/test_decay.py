"""romancore.decay against NumPy and astropy (the functions romancal 1.1 calls)."""

import warnings

import numpy as np
import pytest

from romancore.decay import PERIOD, clipped_row_means, row_medians, subtract_periodic

DT = (4.56, 6.08)


def resultants(ny=64, nx=300, seed=5):
    rng = np.random.default_rng(seed)
    out = [(rng.normal(0.0, 3.0, (ny, nx)) + 10.0 * i).astype(np.float32) for i in range(5)]
    out[4][:, ::7] += 50.0  # bright columns: masked as illuminated
    out[0][3, ::11] += 400.0  # outliers: clipped
    return out


def numpy_residual(r, rows, cols):
    sl = (slice(*rows), slice(*cols))
    rate = (r[2][sl] - r[1][sl]) / np.float64(DT[1])
    return r[0][sl] - (r[1][sl] - rate * np.float64(DT[0]))


@pytest.mark.parametrize("n_threads", [1, 2])
def test_row_medians_equal_numpy(n_threads):
    r = resultants(nx=301)
    r[4][5, 9] = np.nan
    for cols in ((4, 297), (0, 301), (4, 298)):
        got = row_medians(r[4], r[3], (2, 60), cols, n_threads=n_threads)
        want = np.median(r[4][2:60, slice(*cols)] - r[3][2:60, slice(*cols)], axis=1)
        np.testing.assert_array_equal(got, want)
    assert np.isnan(row_medians(r[4], r[3])[5])


@pytest.mark.parametrize("per_column", [False, True])
def test_clipped_means_equal_astropy(per_column):
    stats = pytest.importorskip("astropy.stats")
    r = resultants(ny=300, nx=300)
    r[0][7, 20] = np.nan
    rows = cols = (4, 296)
    med = row_medians(r[4], r[3], rows, cols)
    diff = r[4][4:296, 4:296] - r[3][4:296, 4:296]
    high = diff > (med[None, :] if per_column else med[:, None])
    res = numpy_residual(r, rows, cols)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want, _, _ = stats.sigma_clipped_stats(res, mask=high, sigma=3.0, axis=1)
    got = clipped_row_means(tuple(r), DT, med, per_column, rows, cols)
    np.testing.assert_array_equal(got, np.asarray(want))
    # the clip matters: the outlier row's plain mean is far off
    plain = np.nanmean(np.where(high, np.nan, res), axis=1)
    assert np.abs(plain - got).max() > 0.1


def test_clipped_means_without_usable_pixel():
    r = resultants()
    r[0][:] = np.nan
    got = clipped_row_means(tuple(r), DT, np.zeros(300, np.float32), True)
    assert np.all(np.isnan(got))


@pytest.mark.parametrize("n_threads", [1, 2])
def test_subtract_periodic_equals_numpy(n_threads):
    rng = np.random.default_rng(1)
    frame = rng.normal(100.0, 5.0, (40, 600)).astype(np.float32)
    period = rng.normal(0.0, 1.0, (50, PERIOD))
    want = frame.copy()
    full = period[:40, np.arange(600) % PERIOD]
    want[4:36, 4:596] -= full[4:36, 4:596]
    subtract_periodic(frame, period, (4, 36), (4, 596), n_threads=n_threads)
    np.testing.assert_array_equal(frame, want)


def test_validation():
    frame = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="period"):
        subtract_periodic(frame, np.zeros((8, 100)))
    with pytest.raises(ValueError, match="window"):
        subtract_periodic(frame, np.zeros((8, PERIOD)), (0, 9))
    with pytest.raises(ValueError, match="float32"):
        subtract_periodic(frame.astype(np.float64), np.zeros((8, PERIOD)))
    frame.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        subtract_periodic(frame, np.zeros((8, PERIOD)))
    r = resultants()
    with pytest.raises(ValueError, match="5 arrays"):
        clipped_row_means(tuple(r[:4]), DT, np.zeros(300, np.float32), True)
    with pytest.raises(ValueError, match="thresholds"):
        clipped_row_means(tuple(r), DT, np.zeros(3, np.float32), True)


def test_row_medians_ties_signs_and_lengths():
    # the radix selection against numpy.median: repeated middle values (the two middle
    # order statistics equal), all-equal rows, negative and positive values, zeros of
    # both signs, infinities, and odd and even lengths down to 1 and 2
    rng = np.random.default_rng(3)
    rows = [
        np.array([5.0, 1.0, 5.0, 5.0, 2.0, 9.0]),          # middle pair 5, 5
        np.array([3.0, 3.0, 3.0, 3.0]),                      # all equal
        np.array([-2.5, 7.0, -0.0, 0.0, 1e-30, -1e30]),     # signs, both zeros
        np.array([np.inf, -np.inf, 1.0, 2.0]),               # infinities
        np.array([4.0, 1.0, 1.0, 4.0]),                      # middle pair 1, 4
        np.round(rng.normal(0.0, 2.0, 301)),                 # many ties, odd
        np.round(rng.normal(-100.0, 2.0, 300)) / 4.0,        # many ties, even
    ]
    for row in rows:
        for n in {1, 2, 3, row.size}:
            a = row[:n].astype(np.float32)[None, :]
            got = row_medians(a, np.zeros_like(a))
            want = np.median(a, axis=1)
            np.testing.assert_array_equal(got, want)


def test_row_medians_lower_middle_at_every_byte():
    # even lengths whose two middle keys first differ in each of the four bytes of the
    # radix selection (and repeat): the lower middle value is found where the ranks
    # part, against numpy.median
    rng = np.random.default_rng(5)
    scales = [1.0e-30, 1.0e-3, 1.0, 3.0, 1.0e3, 1.0e30]
    for trial in range(300):
        n = int(rng.integers(1, 40)) * 2
        scale = scales[trial % len(scales)]
        kind = trial % 3
        if kind == 0:  # few distinct values: ties
            row = rng.integers(-3, 4, n) * scale
        elif kind == 1:  # neighbours in float32 (the last byte parts them)
            base = np.float32(scale)
            row = np.nextafter(base, np.float32(np.inf) * rng.choice([-1, 1], n))
            row = np.where(rng.random(n) < 0.5, base, row)
        else:
            row = rng.normal(0.0, scale, n)
        a = np.asarray(row, np.float32)[None, :]
        got = row_medians(a, np.zeros_like(a))
        np.testing.assert_array_equal(got, np.median(a, axis=1))


def test_clipped_means_extreme_spreads_equal_astropy():
    # the sorted clip against astropy on rows whose values are badly spread for a
    # bucket sort: one huge outlier (the bulk in a few buckets), geometric spacing
    # (one value split off per level: the depth fallback), heavy ties
    stats = pytest.importorskip("astropy.stats")
    rng = np.random.default_rng(11)
    nx = 400
    r = [np.zeros((6, nx), np.float32) for _ in range(5)]
    res = np.empty((6, nx))
    res[0] = rng.normal(30.0, 3.0, nx)
    res[0, 17] = 3.0e7
    res[1] = np.geomspace(1.0, 1.0e30, nx)
    res[2] = np.round(rng.normal(5.0, 1.0, nx))
    res[3] = rng.normal(-8.0, 0.5, nx)
    res[3, ::50] = -1.0e6
    res[4] = 7.0
    res[5] = rng.standard_cauchy(nx)
    # R1 = R2 = 0: the residual is R0 itself
    r[0][:] = res.astype(np.float32)
    thresholds = np.full(6, 1.0, np.float32)  # R4 - R3 = 0: every pixel usable
    got = clipped_row_means(tuple(r), DT, thresholds, False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want, _, _ = stats.sigma_clipped_stats(r[0].astype(np.float64), sigma=3.0, axis=1)
    np.testing.assert_array_equal(got, np.asarray(want))
