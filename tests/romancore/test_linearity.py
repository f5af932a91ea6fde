"""romancore.apply_linearity: hand-computed cases and a differential test vs stcal 1.20."""

from __future__ import annotations

import numpy as np
import pytest

import romancore
from romancore.dqflags import group, pixel

SAT = np.uint8(group.SATURATED)
NLC = np.uint32(pixel.NO_LIN_CORR)


def _run(data, coeffs, *, gdq=None, pdq=None, cdq=None, n_threads=None):
    data = np.ascontiguousarray(np.asarray(data, dtype=np.float32))
    shape = data.shape[1:]
    gdq = np.zeros(data.shape, np.uint8) if gdq is None else gdq
    pdq = np.zeros(shape, np.uint32) if pdq is None else pdq
    cdq = np.zeros(shape, np.uint32) if cdq is None else cdq
    romancore.apply_linearity(data, gdq, pdq, coeffs, cdq, n_threads=n_threads)
    return data, pdq


def _coeffs(c, shape=(1, 1)):
    c = np.asarray(c, dtype=np.float32)
    return np.ascontiguousarray(np.broadcast_to(c[:, None, None], (len(c), *shape)))


def test_cubic_hand_computed():
    # F_c = 2 + 1.5 F + 0.01 F^2 - 0.0001 F^3
    #   F = 0   -> 2
    #   F = 10  -> 2 + 15 + 1 - 0.1       = 17.9
    #   F = 100 -> 2 + 150 + 100 - 100     = 152
    #   F = -20 -> 2 - 30 + 4 + 0.8        = -23.2
    c = _coeffs([2.0, 1.5, 0.01, -1e-4])
    data, pdq = _run(np.array([0.0, 10.0, 100.0, -20.0])[:, None, None], c)
    np.testing.assert_allclose(data[:, 0, 0], [2.0, 17.9, 152.0, -23.2], rtol=1e-6)
    assert pdq[0, 0] == 0


def test_linear_and_high_order():
    # linear: F_c = -5 + 2 F
    data, _ = _run(np.array([1.0, 3.0])[:, None, None], _coeffs([-5.0, 2.0]))
    np.testing.assert_array_equal(data[:, 0, 0], [-3.0, 1.0])
    # order 6, F = 2: sum_k c_k 2^k with c = [1, 1, 1, 1, 1, 1, 1] = 127
    data, _ = _run(np.array([2.0])[:, None, None], _coeffs([1.0] * 7))
    assert data[0, 0, 0] == 127.0


def test_per_pixel_coefficients():
    data = np.full((2, 1, 3), 10.0, np.float32)
    c = np.array([[[0.0, 1.0, 5.0]], [[1.0, 2.0, 0.5]], [[0.0, 0.0, 0.1]]], np.float32)
    out, _ = _run(data, c)
    # pixel 0: 10; pixel 1: 1 + 20 = 21; pixel 2: 5 + 5 + 10 = 20
    np.testing.assert_allclose(out[:, 0, :], [[10.0, 21.0, 20.0]] * 2, rtol=1e-6)


def test_saturated_resultants_untouched():
    data = np.array([10.0, 20.0, 30.0, 40.0], np.float32)[:, None, None]
    gdq = np.zeros((4, 1, 1), np.uint8)
    gdq[2:] = SAT
    gdq[1] = np.uint8(group.DO_NOT_USE)  # other flags do not stop the correction
    out, _ = _run(data, _coeffs([1.0, 2.0]), gdq=gdq)
    assert out[:, 0, 0].tolist() == [21.0, 41.0, 30.0, 40.0]


@pytest.mark.parametrize("n_threads", [1, 2])
def test_nonfinite_resultants_stay_nonfinite_and_do_not_spread(n_threads):
    # A NaN stays NaN and an infinite value stays non-finite (the ramp fit flags them
    # DO_NOT_USE); nothing else in the pixel or the row changes and no flag is set.
    c = _coeffs([2.0, 1.5, 0.01, -1e-4], (2, 3))
    data = np.array([0.0, 10.0, 100.0, -20.0], np.float32)[:, None, None] * np.ones((2, 3))
    data = data.astype(np.float32)
    clean, _ = _run(data.copy(), c)
    bad = data.copy()
    bad[1, 0, 0], bad[2, 1, 1], bad[3, 1, 2] = np.nan, np.inf, -np.inf
    gdq = np.zeros(data.shape, np.uint8)
    out, pdq = _run(bad, c, gdq=gdq, n_threads=n_threads)
    mask = ~np.isfinite(bad)
    assert np.isnan(out[1, 0, 0]) and np.all(~np.isfinite(out[mask]))
    np.testing.assert_array_equal(out[~mask], clean[~mask])
    assert not gdq.any() and not pdq.any()


def test_nan_coefficient_no_correction():
    data = np.full((3, 1, 3), 7.0, np.float32)
    c = _coeffs([1.0, 2.0, 0.5], (1, 3)).copy()
    c[2, 0, 0] = np.nan
    c[0, 0, 1] = np.nan
    out, pdq = _run(data, c)
    assert np.all(out[:, 0, :2] == 7.0)
    np.testing.assert_allclose(out[:, 0, 2], 1 + 14 + 24.5, rtol=1e-6)
    assert pdq.tolist() == [[NLC, NLC, 0]]


def test_no_lin_corr_in_coeffs_dq():
    data = np.full((2, 1, 2), 7.0, np.float32)
    cdq = np.array([[NLC | np.uint32(pixel.DEAD), 0]], np.uint32)
    out, pdq = _run(data, _coeffs([1.0, 2.0], (1, 2)), cdq=cdq)
    assert out[:, 0, 0].tolist() == [7.0, 7.0]
    assert out[:, 0, 1].tolist() == [15.0, 15.0]
    assert pdq.tolist() == [[int(NLC | np.uint32(pixel.DEAD)), 0]]


def test_zero_linear_term_no_correction():
    # as stcal: c_1 == 0 means no correction and NO_LIN_CORR (other zero terms are fine)
    data = np.full((2, 1, 2), 7.0, np.float32)
    c = np.array([[[1.0, 0.0]], [[0.0, 2.0]], [[0.5, 0.0]]], np.float32)
    out, pdq = _run(data, c)
    assert out[:, 0, 0].tolist() == [7.0, 7.0]
    assert out[:, 0, 1].tolist() == [14.0, 14.0]
    assert pdq.tolist() == [[NLC, 0]]


def test_coeffs_dq_ored_into_pixeldq():
    hot, dead = np.uint32(pixel.HOT), np.uint32(pixel.DEAD)
    pdq = np.array([[hot, hot, 0]], np.uint32)
    cdq = np.array([[dead, 0, dead]], np.uint32)
    _, pdq = _run(np.ones((1, 1, 3)), _coeffs([0.0, 1.0], (1, 3)), pdq=pdq, cdq=cdq)
    assert pdq.tolist() == [[int(hot | dead), int(hot), int(dead)]]


def test_coefficients_converted_and_not_modified():
    c64 = np.array([0.5, 1.0, 1e-3])[:, None, None] * np.ones((3, 2, 2))
    c64[1, 0, 0] = np.nan
    keep = c64.copy()
    out, pdq = _run(np.full((1, 2, 2), 10.0), c64, cdq=np.zeros((2, 2), np.int64))
    np.testing.assert_array_equal(c64, keep)
    np.testing.assert_allclose(out[0, 1, 1], 0.5 + 10 + 0.1, rtol=1e-6)
    assert out[0, 0, 0] == 10.0 and pdq[0, 0] == NLC


# --------------------------------------------------------------------------------------
# Differential vs stcal 1.20 and threads
# --------------------------------------------------------------------------------------
stcal_lin = pytest.importorskip("stcal.linearity.linearity")
DQFLAGS = {f.name: int(f.value) for f in pixel}


def _scene(seed, n=8, ny=96, nx=160, order=5):
    rng = np.random.default_rng(seed)
    data = np.sort(rng.uniform(1.0, 6e4, (n, ny, nx)), axis=0).astype(np.float32)
    data[0, :4, :] = rng.uniform(-100, 0.5, (4, nx))  # includes negatives and ~0
    data[data == 0] = 1.0  # -0.0 / +0.0 bit patterns are not informative
    c = np.empty((order + 1, ny, nx), np.float32)
    c[0] = rng.normal(0, 20, (ny, nx))
    c[1] = rng.normal(1.0, 0.02, (ny, nx))
    for k in range(2, order + 1):
        c[k] = rng.normal(0, 1, (ny, nx)) * 10.0 ** (-4.5 * k + 4)
    c[:, rng.random((ny, nx)) < 0.02] = np.nan
    c[min(3, order), rng.random((ny, nx)) < 0.02] = np.nan
    c[1, rng.random((ny, nx)) < 0.02] = 0.0
    c[min(2, order), rng.random((ny, nx)) < 0.02] = 0.0
    cdq = np.zeros((ny, nx), np.uint32)
    cdq[rng.random((ny, nx)) < 0.03] |= NLC
    cdq[rng.random((ny, nx)) < 0.03] |= np.uint32(pixel.DEAD)
    gdq = np.zeros(data.shape, np.uint8)
    sat_from = rng.integers(1, n + 3, (ny, nx))
    gdq[np.arange(n)[:, None, None] >= sat_from] = SAT
    gdq[rng.random(data.shape) < 0.01] |= np.uint8(group.JUMP_DET)
    pdq = np.where(rng.random((ny, nx)) < 0.05, np.uint32(pixel.HOT), 0).astype(np.uint32)
    return data, gdq, pdq, c, cdq


@pytest.mark.parametrize("order", [1, 3, 5])
def test_matches_stcal_bit_for_bit(order):
    data, gdq, pdq, c, cdq = _scene(order, order=order)
    ours, ours_pdq = _run(data.copy(), c.copy(), gdq=gdq.copy(), pdq=pdq.copy(),
                          cdq=cdq.copy())
    st_data, st_pdq, _ = stcal_lin.linearity_correction(
        data[None].copy(), gdq[None].copy(), pdq.copy(), c.copy(), cdq.copy(), DQFLAGS)
    np.testing.assert_array_equal(ours_pdq, st_pdq)
    np.testing.assert_array_equal(ours.view(np.uint32), st_data[0].view(np.uint32))
    # the scene exercises every branch
    assert ((ours_pdq & NLC) != 0).mean() > 0.03
    assert (ours != data).mean() > 0.5
    assert np.array_equal(ours[gdq == SAT], data[gdq == SAT])


def test_thread_invariance():
    data, gdq, pdq, c, cdq = _scene(9)
    outs = [_run(data.copy(), c, gdq=gdq, pdq=pdq.copy(), cdq=cdq, n_threads=t)
            for t in (1, 2, -1)]
    for o, p in outs[1:]:
        np.testing.assert_array_equal(o.view(np.uint32), outs[0][0].view(np.uint32))
        np.testing.assert_array_equal(p, outs[0][1])


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _valid():
    return dict(data=np.ones((3, 2, 4), np.float32), groupdq=np.zeros((3, 2, 4), np.uint8),
                pixeldq=np.zeros((2, 4), np.uint32), coeffs=np.ones((3, 2, 4)),
                coeffs_dq=np.zeros((2, 4), np.uint32))


@pytest.mark.parametrize(
    "change",
    [
        {"data": np.ones((3, 2, 4), np.float64)},
        {"data": np.asfortranarray(np.ones((3, 2, 4), np.float32))},
        {"data": _readonly(np.ones((3, 2, 4), np.float32))},
        {"data": np.ones((3, 0, 4), np.float32), "groupdq": np.zeros((3, 0, 4), np.uint8),
         "pixeldq": np.zeros((0, 4), np.uint32), "coeffs": np.ones((3, 0, 4)),
         "coeffs_dq": np.zeros((0, 4), np.uint32)},
        {"groupdq": np.zeros((3, 2, 4), np.uint32)},
        {"groupdq": np.zeros((2, 2, 4), np.uint8)},
        {"pixeldq": np.zeros((2, 4), np.uint8)},
        {"pixeldq": _readonly(np.zeros((2, 4), np.uint32))},
        {"coeffs": np.ones((1, 2, 4))},  # fewer than 2 coefficients
        {"coeffs": np.ones((65, 2, 4))},  # more than 64
        {"coeffs": np.ones((3, 2, 5))},
        {"coeffs": np.ones((2, 4))},
        {"coeffs_dq": np.zeros((2, 5), np.uint32)},
        {"n_threads": 0},
        {"n_threads": True},
    ],
)
def test_input_validation(change):
    args = {**_valid(), **change}
    kw = {"n_threads": args.pop("n_threads")} if "n_threads" in args else {}
    with pytest.raises(ValueError):
        romancore.apply_linearity(*args.values(), **kw)
    romancore.apply_linearity(*_valid().values())  # the valid call works
