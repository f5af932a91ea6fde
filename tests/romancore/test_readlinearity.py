"""romancore.apply_read_level_linearity: hand-computed cases and stcal 1.20 differentials.

The differential tests compare with stcal 1.20 ``linearity_correction`` called as
romancal 1.1's linearity step calls it (``ilin_coeffs``, ``read_pattern`` and, for
the integral non-linearity, an ``additional_correction`` that interpolates the
channel tables with ``numpy.interp`` like romancal's ``make_inl_correction``).  The
kernel repeats stcal's arithmetic operation by operation, so the tolerance is zero:
the corrected resultants and the pixel DQ are bit-identical.
"""

from __future__ import annotations

import numpy as np
import pytest

import romancore
from romancore.dqflags import group, pixel

SAT = np.uint8(group.SATURATED)
NLC = np.uint32(pixel.NO_LIN_CORR)

#: Real Roman MA tables (romanisim 0.14 ``parameters.read_pattern``): table 4,
#: 9 resultants over 44 reads, and table 109 of a real romanisim L1 file, 10 uneven
#: resultants with skipped reads.
MA4 = [[1], [2], [3, 4], [5, 6, 7, 8, 9], list(range(10, 18)), list(range(18, 26)),
       list(range(26, 34)), list(range(34, 44)), [44]]
MA109 = [[1], [2, 3], [5, 6, 7], list(range(10, 14)), list(range(15, 21)),
         list(range(21, 27)), list(range(27, 33)), list(range(33, 39)),
         list(range(39, 44)), [44]]


def _coeffs(c, shape=(1, 1)):
    c = np.asarray(c, dtype=np.float32)
    return np.ascontiguousarray(np.broadcast_to(c[:, None, None], (len(c), *shape)))


def _run(data, lin, ilin, pattern, *, gdq=None, pdq=None, ldq=None, **kw):
    data = np.array(data, dtype=np.float32)  # a copy: the kernel works in place
    shape = data.shape[1:]
    gdq = np.zeros(data.shape, np.uint8) if gdq is None else gdq
    pdq = np.zeros(shape, np.uint32) if pdq is None else pdq
    ldq = np.zeros(shape, np.uint32) if ldq is None else ldq
    romancore.apply_read_level_linearity(data, gdq, pdq, lin, ldq, ilin, pattern, **kw)
    return data, gdq, pdq


# ------------------------------------------------------------------ hand-computed cases
# L(x) = x + 0.01 x**2, L^-1(y) = y - 0.01 y**2 (a truncated inverse, used as given),
# read pattern [[1, 2], [3], [4]]: mean reads m = 1.5, 3, 4; resultants R = 10, 25, 40.
#
# * 3 unsaturated resultants -> q = 2, the last trusted resultant is R_1;
# * L(R_0) = 10 + 1 = 11, L(R_1) = 25 + 6.25 = 31.25;
#   count rate c = (31.25 - 11) / (3 - 1.5) = 13.5 DN per read;
# * resultant 0, reads 1 and 2 (r - m_0 = -0.5, +0.5):
#   linear reads 11 -+ 6.75 = 4.25, 17.75;
#   L^-1: 4.25 - 0.180625 = 4.069375, 17.75 - 3.150625 = 14.599375, mean 9.334375;
#   shift by 10 - 9.334375 = 0.665625: reads 4.735, 15.265;
#   L: 4.735 + 0.22420225 = 4.95920225, 15.265 + 2.33020225 = 17.59520225;
#   mean 11.27720225 (the classic L(10) = 11: the Jensen term of a 2-read mean);
# * resultants 1 and 2 are single reads: the shift puts the read on R_i itself, so
#   L(25) = 31.25 and L(40) = 40 + 16 = 56, the classic values.
HAND_PATTERN = [[1, 2], [3], [4]]
HAND_DATA = [10.0, 25.0, 40.0]
HAND_EXPECTED = [11.27720225, 31.25, 56.0]
# With an INL table 0.01 u on [0, 100] (u -> 1.01 u):
# * resultant 0: reads 4.735 -> 4.78235, 15.265 -> 15.41765;
#   L: 4.78235 + 0.228708... = 5.0110576, 15.41765 + 2.3770393 = 17.7946893;
#   mean 11.40287345;
# * resultant 1: 25.25 + 6.375625 = 31.625625; resultant 2: 40.4 + 16.3216 = 56.7216.
HAND_EXPECTED_INL = [11.40287345, 31.625625, 56.7216]


def test_quadratic_two_read_resultant_hand_computed():
    lin, ilin = _coeffs([0.0, 1.0, 0.01]), _coeffs([0.0, 1.0, -0.01])
    data, gdq, pdq = _run(np.array(HAND_DATA)[:, None, None], lin, ilin, HAND_PATTERN)
    np.testing.assert_allclose(data[:, 0, 0], HAND_EXPECTED, rtol=1e-6)
    assert pdq[0, 0] == 0 and not gdq.any()
    # the classic per-resultant polynomial gives 11 for the 2-read resultant
    classic = np.array(HAND_DATA, np.float32)[:, None, None].copy()
    romancore.apply_linearity(classic, gdq, pdq.copy(), lin, np.zeros((1, 1), np.uint32))
    assert abs(classic[0, 0, 0] - 11.0) < 1e-5
    assert abs(data[0, 0, 0] - classic[0, 0, 0]) > 0.27


def test_quadratic_with_integral_nonlinearity_hand_computed():
    lin, ilin = _coeffs([0.0, 1.0, 0.01]), _coeffs([0.0, 1.0, -0.01])
    data, _, _ = _run(np.array(HAND_DATA)[:, None, None], lin, ilin, HAND_PATTERN,
                      inl_values=np.array([0, 100], np.uint16),
                      inl_corrections=np.array([[0.0, 1.0]]))
    np.testing.assert_allclose(data[:, 0, 0], HAND_EXPECTED_INL, rtol=1e-6)


def test_linear_response_is_exact():
    # L(x) = 2x with its exact inverse: every read is on the same line, the result
    # is 2 R for every resultant whatever the read pattern
    data = np.array([5.0, 17.0, 40.0, 61.0])[:, None, None]
    out, _, _ = _run(data, _coeffs([0.0, 2.0]), _coeffs([0.0, 0.5]),
                     [[1], [2, 3, 4], [5, 6], [7, 8, 9, 10]])
    np.testing.assert_allclose(out[:, 0, 0], 2.0 * data[:, 0, 0], rtol=1e-6)


@pytest.mark.parametrize("uniform", [False, True], ids=["bisected", "uniform"])
def test_inl_table_rules_and_channels(uniform):
    # identity polynomials and single-read resultants: out = R + INL_channel(R), with
    # numpy.interp's rules (constant beyond the table, exact abscissae, NaN stays NaN);
    # a uniform table takes the computed-bin path, another one the bisection
    values = np.array([0, 100, 200, 300 if uniform else 400], np.uint16)
    corr = np.array([[1.0, 2.0, -1.0, 3.0], [0.5, 0.5, 4.0, 4.0]])
    levels = np.array([-50.0, 0.0, 50.0, 100.0, 150.0, 299.5, 300.0, 399.0, 400.0, 500.0,
                       np.inf, -np.inf, 1e-300, 199.99999999, np.nan])
    data = np.empty((3, 1, 256), np.float32)
    data[0] = 0.0
    data[1] = 1.0
    data[2, 0, :] = np.resize(levels, 256)
    out, _, _ = _run(data, _coeffs([0.0, 1.0], (1, 256)), _coeffs([0.0, 1.0], (1, 256)),
                     [[1], [2], [3]], inl_values=values, inl_corrections=corr)
    x = data[2, 0].astype(np.float64)
    expected = np.concatenate([
        x[:128] + np.interp(x[:128], values.astype(float), corr[0]),
        x[128:] + np.interp(x[128:], values.astype(float), corr[1]),
    ]).astype(np.float32)
    np.testing.assert_array_equal(out[2, 0], expected)
    assert np.isnan(out[2, 0, 14]) and out[2, 0, 10] == np.inf
    # a table spanning more than the data: channels beyond the data are ignored
    out2, _, _ = _run(data, _coeffs([0.0, 1.0], (1, 256)), _coeffs([0.0, 1.0], (1, 256)),
                      [[1], [2], [3]], inl_values=values,
                      inl_corrections=np.vstack([corr, corr[:1]]))
    np.testing.assert_array_equal(out2, out)


def test_saturated_resultants_and_first_resultant():
    lin, ilin = _coeffs([0.0, 1.0, 0.01]), _coeffs([0.0, 1.0, -0.01])
    data = np.array(HAND_DATA + [60.0])[:, None, None]
    gdq = np.zeros((4, 1, 1), np.uint8)
    gdq[3] = SAT
    out, _, _ = _run(data, lin, ilin, HAND_PATTERN + [[5]], gdq=gdq)
    # 3 unsaturated resultants: the same fit as the hand case, R_3 untouched
    np.testing.assert_allclose(out[:3, 0, 0], HAND_EXPECTED, rtol=1e-6)
    assert out[3, 0, 0] == 60.0
    # all saturated: nothing changes, no flag
    gdq[:] = SAT
    out, _, pdq = _run(data, lin, ilin, HAND_PATTERN + [[5]], gdq=gdq)
    np.testing.assert_array_equal(out[:, 0, 0], data[:, 0, 0])
    assert pdq[0, 0] == 0


def test_bad_coefficients_flagged():
    shape = (1, 4)
    lin = _coeffs([0.0, 1.0, 0.01], shape).copy()
    ilin = _coeffs([0.0, 1.0, -0.01], shape).copy()
    ldq = np.zeros(shape, np.uint32)
    ldq[0, 0] = NLC | np.uint32(pixel.DEAD)  # flagged in the reference: identity
    lin[2, 0, 1] = np.nan  # NaN LINEARITY coefficient: LINEARITY identity
    ilin[1, 0, 2] = 0.0  # zero linear inverse term: INVERSELINEARITY identity
    data = np.broadcast_to(np.array(HAND_DATA)[:, None, None], (3, *shape))
    out, _, pdq = _run(data, lin, ilin, HAND_PATTERN, ldq=ldq)
    assert pdq[0, 0] == NLC | np.uint32(pixel.DEAD)
    assert pdq[0, 1] == NLC and pdq[0, 2] == NLC and pdq[0, 3] == 0
    np.testing.assert_allclose(out[:, 0, 0], HAND_DATA, rtol=1e-6)
    np.testing.assert_allclose(out[:, 0, 1], HAND_DATA, rtol=1e-6)
    # identity inverse, quadratic L: single reads are still L(R)
    np.testing.assert_allclose(out[1:, 0, 2], HAND_EXPECTED[1:], rtol=1e-6)
    np.testing.assert_allclose(out[:, 0, 3], HAND_EXPECTED, rtol=1e-6)


def test_clip_flags_do_not_use():
    lin, ilin = _coeffs([0.0, 1.0, 1.0]), _coeffs([0.0, 1.0])
    data = np.array([1.0e3, 2.0e3, 3.0e3])[:, None, None]
    out, gdq, _ = _run(data, lin, ilin, [[1], [2], [3]], clip=1.0e6)
    np.testing.assert_array_equal(out[:, 0, 0], [1.0e6] * 3)
    np.testing.assert_array_equal(gdq[:, 0, 0], group.DO_NOT_USE)
    out, gdq, _ = _run(data, lin, ilin, [[1], [2], [3]])
    assert out[2, 0, 0] > 9.0e6 and not gdq.any()


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"read_pattern": [[1], [2]]}, "read_pattern has 2"),
        ({"inverse_coeffs": _coeffs([1.0], (2, 3))}, "inverse_coeffs must hold"),
        ({"inl_values": np.array([0, 10])}, "given together"),
        ({"inl_values": np.array([0, 10, 10]), "inl_corrections": np.zeros((1, 3))},
         "strictly increasing"),
        ({"inl_values": np.array([0, 10]), "inl_corrections": np.zeros((1, 3))},
         r"\(n_channels, 2\)"),
        ({"clip": -1.0}, "clip"),
    ],
)
def test_invalid_inputs(kwargs, match):
    args = {
        "data": np.zeros((3, 2, 3), np.float32),
        "groupdq": np.zeros((3, 2, 3), np.uint8),
        "pixeldq": np.zeros((2, 3), np.uint32),
        "coeffs": _coeffs([0.0, 1.0], (2, 3)),
        "coeffs_dq": np.zeros((2, 3), np.uint32),
        "inverse_coeffs": _coeffs([0.0, 1.0], (2, 3)),
        "read_pattern": [[1], [2], [3]],
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        romancore.apply_read_level_linearity(**args)


def test_single_resultant_rejected():
    with pytest.raises(ValueError, match="at least 2 resultants"):
        romancore.apply_read_level_linearity(
            np.zeros((1, 2, 2), np.float32), np.zeros((1, 2, 2), np.uint8),
            np.zeros((2, 2), np.uint32), _coeffs([0.0, 1.0], (2, 2)),
            np.zeros((2, 2), np.uint32), _coeffs([0.0, 1.0], (2, 2)), [[1]])


def test_too_few_inl_channels():
    with pytest.raises(ValueError, match="need 2"):
        _run(np.zeros((2, 1, 200)), _coeffs([0.0, 1.0], (1, 200)),
             _coeffs([0.0, 1.0], (1, 200)), [[1], [2]],
             inl_values=np.array([0, 10]), inl_corrections=np.zeros((1, 2)))


# ------------------------------------------------------------------ stcal differential
def _simulated(pattern, shape, seed):
    """Ramps read by read through a per-pixel cubic response, with saturation flags."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    n = len(pattern)
    # LINEARITY: corrected = raw + a raw^2 + b raw^3 (+ small offset), 1-4 % at 50 kDN
    a = rng.uniform(2e-7, 6e-7, shape)
    b = rng.uniform(-2e-12, 2e-12, shape)
    lin = np.zeros((4, ny, nx), np.float32)
    lin[0] = rng.uniform(-2.0, 2.0, shape)
    lin[1] = rng.uniform(0.98, 1.02, shape)
    lin[2], lin[3] = a, b
    # INVERSELINEARITY: the series inverse of the linear + quadratic + cubic terms
    ilin = np.zeros((4, ny, nx), np.float32)
    ilin[1] = 1.0 / lin[1]
    ilin[2] = -a / lin[1] ** 3
    ilin[3] = (2 * a**2 - lin[1] * b) / lin[1] ** 5
    # raw read k: the inverse of the rate ramp, averaged per resultant, plus noise
    rate = np.exp(rng.uniform(np.log(5.0), np.log(4000.0), shape))
    ped = rng.uniform(5000.0, 15000.0, shape)
    data = np.empty((n, ny, nx), np.float32)
    for i, reads in enumerate(pattern):
        t = np.asarray(reads, dtype=np.float64)[:, None, None]
        y = ped + rate * t
        raw = ilin[1] * y + ilin[2] * y**2 + ilin[3] * y**3
        data[i] = raw.mean(axis=0) + rng.normal(0.0, 6.0 / np.sqrt(len(reads)), shape)
    gdq = np.zeros((n, ny, nx), np.uint8)
    first = np.argmax(data >= 55000.0, axis=0)
    hit = (data >= 55000.0).any(axis=0)
    for i in range(n):
        gdq[i][hit & (first <= i)] = SAT
    pdq = np.where(rng.random(shape) < 0.05, np.uint32(pixel.HOT), np.uint32(0))
    ldq = np.zeros(shape, np.uint32)
    ldq[rng.random(shape) < 0.01] = NLC
    ldq[rng.random(shape) < 0.01] |= np.uint32(pixel.DEAD)
    lin[rng.integers(0, 4), rng.random(shape) < 0.005] = np.nan
    ilin[rng.integers(0, 4), rng.random(shape) < 0.005] = np.nan
    lin[1][rng.random(shape) < 0.005] = 0.0
    ilin[1][rng.random(shape) < 0.005] = 0.0
    data[:, 0, :3] = [np.nan, np.inf, -1.0e7]  # non-finite and absurd values
    return data, gdq, pdq.astype(np.uint32), lin, ldq, ilin


def _inl_table(nx, seed, start=0, step=32):
    rng = np.random.default_rng(seed)
    values = np.arange(start, 65536, step).astype(np.uint16)
    n_channels = -(-nx // 128)
    phase = rng.uniform(0, 2 * np.pi, (n_channels, 1))
    corr = rng.uniform(0.5, 1.5, (n_channels, 1)) * np.sin(
        2 * np.pi * values[None] / 16384.0 + phase) + rng.normal(0, 0.2, (n_channels, values.size))
    return values, corr


def _romancal_inl(values, corr):
    """romancal 1.1's INL callable: numpy.interp per 128-column channel."""
    lookup = values.astype("f4")

    def correction(data):
        out = np.zeros_like(data)
        for start in range(0, data.shape[-1], 128):
            out[..., start:start + 128] = np.interp(
                data[..., start:start + 128], lookup, corr[start // 128])
        return out

    return correction


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("use_inl", [True, False], ids=["inl", "no_inl"])
@pytest.mark.parametrize("pattern", [MA4, MA109], ids=["ma4", "ma109"])
def test_matches_stcal_bit_for_bit(pattern, use_inl):
    _check_stcal_bit_for_bit(pattern, use_inl)


# the uniform tables' two bin computations: from 0 with a power-of-two step (the bin
# is the floor of u / step, no correction), offset or with another step (a guess
# corrected by one bin where it rounds across a grid value)
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("start, step", [(0, 64), (16, 32), (0, 48), (7, 40)],
                         ids=["pow2", "offset", "step48", "offset_step40"])
def test_matches_stcal_uniform_tables(start, step):
    _check_stcal_bit_for_bit(MA4, True, start, step)


def _check_stcal_bit_for_bit(pattern, use_inl, start=0, step=32):
    stcal_lin = pytest.importorskip("stcal.linearity.linearity")
    shape = (24, 300)  # 3 channels, the last one partial
    data, gdq, pdq, lin, ldq, ilin = _simulated(pattern, shape, seed=len(pattern))
    assert (gdq & SAT).any() and not (gdq & SAT).all()
    values, corr = _inl_table(shape[1], seed=7, start=start, step=step)
    expected, expected_pdq, _ = stcal_lin.linearity_correction(
        data[np.newaxis].copy(), gdq[np.newaxis].copy(), pdq.copy(), lin.copy(), ldq,
        pixel, ilin_coeffs=ilin.copy(),
        additional_correction=_romancal_inl(values, corr) if use_inl else None,
        read_pattern=pattern)
    kw = {"inl_values": values, "inl_corrections": corr} if use_inl else {}
    # pixels (0, 0) and (0, 1) are all NaN / all +inf: no usable anchor, the documented
    # difference (stcal: NaN everywhere; ours: the classic polynomial, non-finite)
    finite = np.ones(shape, bool)
    finite[0, :2] = False
    for n_threads in (1, 2):
        out, out_gdq, out_pdq = data.copy(), gdq.copy(), pdq.copy()
        romancore.apply_read_level_linearity(out, out_gdq, out_pdq, lin, ldq, ilin,
                                             pattern, n_threads=n_threads, **kw)
        # tolerance: none (bit-identical)
        np.testing.assert_array_equal(out[:, finite], expected[0][:, finite])
        np.testing.assert_array_equal(out_pdq, expected_pdq)
        np.testing.assert_array_equal(out_gdq, gdq)
        assert np.isnan(out[:, 0, 0]).all() and np.isnan(expected[0][:, 0, 0]).all()
        assert not np.isfinite(out[:, 0, 1]).any()
    # the read-level correction is not the classic polynomial on multi-read resultants
    classic = data.copy()
    romancore.apply_linearity(classic, gdq, pdq.copy(), lin, ldq)
    unsat = (gdq[:, 1:] & SAT) == 0
    assert np.abs(classic - expected[0])[:, 1:][unsat].max() > 0.05


def test_inl_changes_the_result():
    shape = (8, 256)
    data, gdq, pdq, lin, ldq, ilin = _simulated(MA4, shape, seed=3)
    values, corr = _inl_table(shape[1], seed=1)
    with_inl, _, _ = _run(data.copy(), lin, ilin, MA4, gdq=gdq, pdq=pdq.copy(), ldq=ldq,
                          inl_values=values, inl_corrections=corr)
    without, _, _ = _run(data.copy(), lin, ilin, MA4, gdq=gdq, pdq=pdq.copy(), ldq=ldq)
    diff = np.abs(with_inl[:, 1:] - without[:, 1:])  # row 0 holds the absurd values
    assert 0.1 < diff.max() < 5.0


@pytest.mark.parametrize("bad", [0, 3, 7], ids=["first", "middle", "last_trusted"])
def test_bad_resultant_changes_only_itself(bad):
    # Not in stcal (which spreads a non-finite anchor to every read): a NaN resultant
    # and the same resultant flagged DO_NOT_USE give the same other resultants; with
    # only an unflagged finite value there (and R_0, R_7 usable) it is stcal's result
    data, gdq, pdq, lin, ldq, ilin = _simulated(MA4, (4, 130), seed=11)
    data, gdq = data[:, 1:], np.zeros_like(gdq[:, 1:])  # finite, unsaturated rows
    pdq, lin, ldq, ilin = pdq[1:], lin[:, 1:], ldq[1:], ilin[:, 1:]
    values, corr = _inl_table(130, seed=2)
    kw = {"inl_values": values, "inl_corrections": corr}
    with_nan = data.copy()
    with_nan[bad] = np.nan
    flagged = gdq.copy()
    flagged[bad] = group.DO_NOT_USE
    a, _, _ = _run(with_nan, lin, ilin, MA4, gdq=gdq.copy(), pdq=pdq.copy(), ldq=ldq, **kw)
    b, _, _ = _run(data, lin, ilin, MA4, gdq=flagged, pdq=pdq.copy(), ldq=ldq, **kw)
    others = np.arange(len(MA4)) != bad
    np.testing.assert_array_equal(a[others], b[others])
    assert np.isnan(a[bad]).all()
    stcal_like, _, _ = _run(data, lin, ilin, MA4, gdq=gdq.copy(), pdq=pdq.copy(), ldq=ldq, **kw)
    changed = np.abs(stcal_like[others] - b[others])
    assert (changed.max() > 0) == (bad in (0, 7))  # only an anchor moves the others
