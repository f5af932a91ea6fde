"""romancore.flag_saturation: hand-computed cases and differential tests vs stcal 1.20."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import romancore
from romancore.dqflags import group, pixel
from romancore.saturation import dilution_factors

SAT = np.uint8(group.SATURATED)
DNU = np.uint8(group.DO_NOT_USE)
ADF = np.uint8(group.AD_FLOOR)
NSC = np.uint32(pixel.NO_SAT_CHECK)


def _run(data, thresh, rp, *, tdq=None, gdq=None, pdq=None, k=0, n_threads=None):
    """Run on [n, ny, nx] data (or [n] for one pixel); return (gdq, pdq)."""
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, None, None]
    data = np.ascontiguousarray(data)
    shape = data.shape[1:]
    thresh = np.broadcast_to(np.asarray(thresh, dtype=np.float32), shape).copy()
    tdq = np.zeros(shape, np.uint32) if tdq is None else np.broadcast_to(
        np.asarray(tdq, dtype=np.uint32), shape).copy()
    gdq = np.zeros(data.shape, np.uint8) if gdq is None else gdq
    pdq = np.zeros(shape, np.uint32) if pdq is None else pdq
    romancore.flag_saturation(data, gdq, pdq, thresh, tdq, rp, n_pix_grow_sat=k,
                              n_threads=n_threads)
    return gdq, pdq


SINGLE4 = [[1], [2], [3], [4]]


# --------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([100, 499.9, 450, 480], [0, 0, 0, 0]),
        ([100, 500, 900, 1000], [0, 2, 2, 2]),  # >= threshold, and every later one
        ([100, 600, 400, 300], [0, 2, 2, 2]),  # later ones flagged even if below
        ([700, 100, 50, 20], [2, 2, 2, 2]),
        ([0, -5, 10, 600], [65, 65, 0, 2]),  # <= 0: AD_FLOOR | DO_NOT_USE, that one only
        ([10, 20, 600, -1], [0, 0, 2, 67]),  # both
    ],
)
def test_threshold_and_ad_floor(data, expected):
    gdq, pdq = _run(data, 500.0, SINGLE4)
    assert gdq[:, 0, 0].tolist() == expected
    assert pdq[0, 0] == 0


def test_no_sat_check_and_nan_threshold_use_65535():
    # columns: NaN threshold / NO_SAT_CHECK in threshold_dq (threshold 100 ignored) /
    # normal threshold 100.  Rows of data: below 65535, exactly 65535, above.
    data = np.zeros((4, 3, 3), np.float32)
    data[:2] = 50.0
    data[2:, 0] = 65534.5
    data[2:, 1] = 65535.0
    data[2:, 2] = 70000.0
    thresh = np.array([[np.nan, 100.0, 100.0]] * 3, np.float32)
    tdq = np.array([[0, NSC, 0]] * 3, np.uint32)
    gdq, pdq = _run(data, thresh, SINGLE4, tdq=tdq)
    for col in (0, 1):
        assert gdq[:, 0, col].tolist() == [0, 0, 0, 0]  # 65534.5 < 65535
        assert gdq[:, 1, col].tolist() == [0, 0, 2, 2]  # reaches the hard limit
        assert gdq[:, 2, col].tolist() == [0, 0, 2, 2]
        assert np.all(pdq[:, col] == NSC)
    assert np.all(gdq[:, :, 2] == np.array([0, 0, 2, 2])[:, None])  # 50 < 100 <= 65534.5
    assert np.all(pdq[:, 2] == 0)


def test_threshold_dq_ored_into_pixeldq():
    dead, hot = np.uint32(pixel.DEAD), np.uint32(pixel.HOT)
    pdq = np.array([[hot, 0, hot]], np.uint32)
    tdq = np.array([[dead, dead | NSC, 0]], np.uint32)
    data = np.full((4, 1, 3), 10.0, np.float32)
    _, pdq = _run(data, 1000.0, SINGLE4, tdq=tdq, pdq=pdq)
    assert pdq.tolist() == [[hot | dead, dead | NSC, hot]]


def test_existing_flags_are_kept():
    gdq = np.zeros((4, 1, 1), np.uint8)
    gdq[0] = np.uint8(group.JUMP_DET)
    gdq[1] = DNU
    gdq, _ = _run([10, 20, 30, 40], 1000.0, SINGLE4, gdq=gdq)
    assert gdq[:, 0, 0].tolist() == [4, 1, 0, 0]


def test_input_saturated_flag_propagates_forward():
    gdq = np.zeros((4, 1, 1), np.uint8)
    gdq[1] = SAT
    gdq, _ = _run([10, 20, 30, 40], 1000.0, SINGLE4, gdq=gdq)
    assert gdq[:, 0, 0].tolist() == [0, 2, 2, 2]


def test_dilution_factors():
    # mean(reads) / last(read): [1] -> 1, [2,3,4] -> 3/4, [5,6] -> 5.5/6, [2,4] -> 3/4
    np.testing.assert_allclose(dilution_factors([[1], [2, 3, 4], [5, 6], [7, 9]]),
                               [1.0, 0.75, 5.5 / 6, 8 / 9])


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # pattern [[1], [2, 3, 4], [5]], threshold 1000: resultant 1 has dilution 3/4,
        # i.e. a reduced threshold of 750.  R0 = 300 keeps stcal's resultant-1 check
        # quiet (300 / 1 * 5 = 1500 >= 1000).
        ([300, 760, 1200], [0, 2, 2]),  # 760 >= 750 and R2 saturated: diluted
        ([300, 750, 1200], [0, 2, 2]),  # exactly 750 counts
        ([300, 740, 1200], [0, 0, 2]),  # 740 < 750
        ([300, 800, 900], [0, 0, 0]),  # next resultant not saturated: no dilution
    ],
)
def test_dilution(data, expected):
    gdq, _ = _run(data, 1000.0, [[1], [2, 3, 4], [5]])
    assert gdq[:, 0, 0].tolist() == expected


def test_dilution_needs_multi_read_and_unflagged_resultant():
    # single-read resultant 1: dilution 1, 999 < 1000 stays unflagged
    gdq, _ = _run([300, 999, 1200], 1000.0, [[1], [2], [3]])
    assert gdq[:, 0, 0].tolist() == [0, 0, 2]
    # a DO_NOT_USE resultant is not re-flagged by dilution
    gdq = np.zeros((3, 1, 1), np.uint8)
    gdq[1] = DNU
    gdq, _ = _run([300, 900, 1200], 1000.0, [[1], [2, 3, 4], [5]], gdq=gdq)
    assert gdq[:, 0, 0].tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # pattern [[1], [2, 3], [4]], threshold 1000, dilution of resultant 1 = 2.5/3.
        # stcal's resultant-1 check: R2 first saturated, R0 / mean(reads_0) * last(reads_2)
        # = 100 * 4 = 400 < 1000, and R1 - R0 > (1000 - R0) / len(reads_1) = 450.
        ([100, 600, 1200], [0, 2, 2]),  # 500 > 450 (and 600 < 833: not dilution)
        ([100, 540, 1200], [0, 0, 2]),  # 440 < 450
        ([300, 800, 1200], [0, 0, 2]),  # 300 * 4 = 1200 >= 1000: not suspicious
    ],
)
def test_resultant_one_check(data, expected):
    gdq, _ = _run(data, 1000.0, [[1], [2, 3], [4]])
    assert gdq[:, 0, 0].tolist() == expected


@pytest.mark.parametrize("k", [1, 2])
def test_growth_square(k):
    n, ny, nx = 3, 7, 7
    data = np.full((n, ny, nx), 100.0, np.float32)
    data[1:, 3, 3] = 5000.0  # centre saturates at resultant 1
    data[2, 0, 6] = 5000.0  # corner saturates at resultant 2
    gdq, _ = _run(data, 1000.0, [[1], [2], [3]], k=k)
    sat1 = np.zeros((ny, nx), bool)
    sat1[3 - k:4 + k, 3 - k:4 + k] = True
    sat2 = sat1.copy()
    sat2[:k + 1, 6 - k:] = True  # clipped at the edges
    assert not gdq[0].any()
    np.testing.assert_array_equal(gdq[1] == SAT, sat1)
    np.testing.assert_array_equal(gdq[2] == SAT, sat2)
    np.testing.assert_array_equal(gdq[1:] & ~SAT, 0)


def test_growth_of_diluted_resultant():
    # [[1], [2, 3, 4], [5]], threshold 1000.  Centre: R1 = 800 >= 750 diluted, R2 own
    # saturation.  Neighbours never saturate; with k = 1 they get SATURATED from
    # resultant 1 on (dilution grown), pixels further away nothing.
    data = np.full((3, 5, 5), 300.0, np.float32)
    data[:, 2, 2] = [300, 800, 1200]
    gdq, _ = _run(data, 1000.0, [[1], [2, 3, 4], [5]], k=1)
    block = np.zeros((5, 5), bool)
    block[1:4, 1:4] = True
    assert not gdq[0].any()
    np.testing.assert_array_equal(gdq[1] == SAT, block)
    np.testing.assert_array_equal(gdq[2] == SAT, block)
    np.testing.assert_array_equal(gdq[1:][:, ~block], 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, 1, 2, 3])
def test_nonfinite_resultant_is_not_saturation(bad, where):
    # threshold 500, resultant 3 saturated. +inf is no saturation (which would flag
    # every later resultant and cut the ramp), NaN gets no flag, -inf is <= 0: the
    # A/D floor (AD_FLOOR | DO_NOT_USE) on that resultant only. The ramp fit flags all
    # three DO_NOT_USE and fits around them.
    data = np.array([100.0, 200.0, 300.0, 600.0])
    data[where] = bad
    gdq, pdq = _run(data, 500.0, SINGLE4)
    expected = [0, 0, 0, 0 if where == 3 else SAT]
    if bad == -np.inf:
        expected[where] = ADF | DNU
    assert gdq[:, 0, 0].tolist() == expected
    assert pdq[0, 0] == 0


def test_nonfinite_values_do_not_trigger_dilution_or_resultant_one_checks():
    # read pattern [[1], [2, 3, 4], [5], [6]]: dilution factor of resultant 1 = 3/4.
    rp = [[1], [2, 3, 4], [5], [6]]
    # dilution: a finite resultant 1 above 500 * 3/4 before a saturated resultant 2 is
    # flagged; a non-finite one is not
    gdq, _ = _run([100.0, 400.0, 600.0, 700.0], 500.0, rp)
    assert gdq[:, 0, 0].tolist() == [0, SAT, SAT, SAT]
    for bad in (np.nan, np.inf):
        gdq, _ = _run([100.0, bad, 600.0, 700.0], 500.0, rp)
        assert gdq[:, 0, 0].tolist() == [0, 0, SAT, SAT]
    # resultant-1 check (resultant 2 the first saturated; 300 is below the diluted
    # threshold 375): the step 10 -> 300 exceeds (500 - 10) / 3, so resultant 1 is
    # flagged; a non-finite resultant 0 or 1 takes no part in the check
    gdq, _ = _run([10.0, 300.0, 600.0, 700.0], 500.0, rp)
    assert gdq[:, 0, 0].tolist() == [0, SAT, SAT, SAT]
    for data, expected in (
        ([10.0, np.inf, 600.0, 700.0], [0, 0, SAT, SAT]),
        ([-np.inf, 300.0, 600.0, 700.0], [ADF | DNU, 0, SAT, SAT]),
        ([np.nan, 300.0, 600.0, 700.0], [0, 0, SAT, SAT]),
    ):
        gdq, _ = _run(data, 500.0, rp)
        assert gdq[:, 0, 0].tolist() == expected, data


@pytest.mark.parametrize("k", [0, 1])
def test_nonfinite_thread_invariance_and_growth(k):
    rng = np.random.default_rng(8)
    rp = [[1], [2, 3], [4, 5, 6], [7]]
    data = rng.uniform(0, 1200, (4, 30, 70)).cumsum(axis=0).astype(np.float32)
    bad = rng.random(data.shape) < 0.05
    data[bad] = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32), data.shape)[bad]
    # threshold 2500: finite values saturate too; the result is thread-independent
    out = [_run(data, 2500.0, rp, k=k, n_threads=t) for t in (1, 2)]
    np.testing.assert_array_equal(out[0][0], out[1][0])
    # threshold 1e4 (no finite value comes near it, even diluted): the only flags are
    # the A/D floor of -inf; +inf saturates nothing, not even by growth
    for t in (1, 2):
        gdq, pdq = _run(data, 1.0e4, rp, k=k, n_threads=t)
        np.testing.assert_array_equal(gdq, np.where(data == -np.inf, ADF | DNU, 0))
        assert not pdq.any()


def test_inputs_not_modified_and_thread_invariance():
    rng = np.random.default_rng(5)
    rp = [[1], [2, 3], [4, 5, 6], [7], [8, 9, 10, 11]]
    data = (rng.uniform(-50, 1500, (5, 64, 300)).cumsum(axis=0)).astype(np.float32)
    thresh = rng.uniform(1000, 5000, (64, 300)).astype(np.float32)
    thresh[rng.random(thresh.shape) < 0.05] = np.nan
    tdq = np.where(rng.random(thresh.shape) < 0.05, NSC, 0).astype(np.uint32)
    keep = (data.copy(), thresh.copy(), tdq.copy())
    results = []
    for k in (0, 1, 2):
        for n_threads in (1, 2):
            results.append((k, _run(data, thresh, rp, tdq=tdq, k=k, n_threads=n_threads)))
    for (k1, (g1, p1)), (k2, (g2, p2)) in zip(results[::2], results[1::2], strict=True):
        assert k1 == k2
        np.testing.assert_array_equal(g1, g2)
        np.testing.assert_array_equal(p1, p2)
        assert (g1 & SAT).any() and (g1 & ADF).any()
    np.testing.assert_array_equal(data, keep[0])
    np.testing.assert_array_equal(thresh, keep[1])
    np.testing.assert_array_equal(tdq, keep[2])


def _valid():
    data = np.ones((3, 2, 4), np.float32)
    return dict(data=data, groupdq=np.zeros(data.shape, np.uint8),
                pixeldq=np.zeros((2, 4), np.uint32), threshold=np.full((2, 4), 10.0),
                threshold_dq=np.zeros((2, 4), np.uint32), read_pattern=[[1], [2], [3]])


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize(
    "change",
    [
        {"data": np.ones((3, 2, 4), np.float64)},
        {"data": np.asfortranarray(np.ones((3, 2, 4), np.float32))},
        {"data": np.ones((3, 2, 4), np.float32)[:, :, ::1][..., :3]},
        {"data": np.ones((0, 2, 4), np.float32), "groupdq": np.zeros((0, 2, 4), np.uint8)},
        {"groupdq": np.zeros((3, 2, 4), np.uint16)},
        {"groupdq": np.zeros((2, 2, 4), np.uint8)},
        {"groupdq": _readonly(np.zeros((3, 2, 4), np.uint8))},
        {"pixeldq": np.zeros((2, 4), np.int32)},
        {"pixeldq": np.zeros((4, 2), np.uint32)},
        {"pixeldq": _readonly(np.zeros((2, 4), np.uint32))},
        {"threshold": np.ones((2, 3))},
        {"threshold_dq": np.zeros((3, 4))},
        {"read_pattern": [[1], [2]]},
        {"read_pattern": [[1], [2], [2]]},
        {"n_pix_grow_sat": -1},
        {"n_pix_grow_sat": True},
        {"n_pix_grow_sat": 1.5},
        {"n_threads": 0},
    ],
)
def test_input_validation(change):
    args = {**_valid(), **change}
    kw = {k: args.pop(k) for k in ("n_pix_grow_sat", "n_threads") if k in args}
    with pytest.raises(ValueError):
        romancore.flag_saturation(*args.values(), **kw)
    romancore.flag_saturation(*_valid().values())  # the valid call works


# --------------------------------------------------------------------------------------
# Differential tests vs stcal 1.20
# --------------------------------------------------------------------------------------
stcal_sat = pytest.importorskip("stcal.saturation.saturation")
DQFLAGS = {f.name: int(f.value) for f in pixel}


def _stcal(data, thresh, tdq, rp, k, gdq=None, pdq=None):
    gdq = np.zeros(data.shape, np.uint8) if gdq is None else gdq.copy()
    pdq = np.zeros(data.shape[1:], np.uint32) if pdq is None else pdq.copy()
    g, p, _ = stcal_sat.flag_saturated_pixels(
        data[None].copy(), gdq[None], pdq, thresh.copy(), tdq.copy(), 65535.0, DQFLAGS,
        n_pix_grow_sat=k, read_pattern=rp,
    )
    return g[0], p


def _stcal_to_ours(g_stcal, forward=True):
    """Map stcal's flags to ours.

    * Documented: where stcal sets DO_NOT_USE for saturation reasons (dilution, the
      resultant-1 check, growth of either) -- DO_NOT_USE without AD_FLOOR -- we set
      SATURATED instead.
    * ``forward``: our saturation is a first-saturated index, so SATURATED also goes on
      every later resultant.  This only changes anything when a grown diluted resultant
      lands on a neighbour that is not itself saturated in the next resultants, which
      needs a diluted pixel saturated only by growth (see
      ``test_grown_dilution_of_pixel_saturated_only_by_growth``).
    """
    g = g_stcal.copy()
    m = ((g & DNU) != 0) & ((g & ADF) == 0)
    g[m] = (g[m] & ~DNU) | SAT
    if forward:
        g[np.logical_or.accumulate((g & SAT) != 0, axis=0)] |= SAT
    return g


def _physical_scene(seed, rp, ny=120, nx=150):
    """Ramps that rise and then plateau a bit above the pixel's threshold (physical
    saturation), read noise, NaN thresholds, NO_SAT_CHECK pixels, other reference flags,
    and A/D-floor values (0 or negative) in faint pixels only."""
    rng = np.random.default_rng(seed)
    last = rp[-1][-1]
    thresh = rng.uniform(5e4, 6e4, (ny, nx)).astype(np.float32)
    rate = np.exp(rng.uniform(np.log(50), np.log(4 * 6e4 / last), (ny, nx)))
    rate[:, :15] = rng.uniform(1.0, 20.0, (ny, 15))  # a faint strip for A/D-floor values
    reads = np.arange(1, last + 1)[:, None, None]
    charge = 1000.0 + rate * reads
    # pixels plateau just above their threshold, or (as no-check pixels would) below or
    # above the 16-bit limit, avoiding [65535, 65536) where the documented difference
    # lies (tested apart)
    plateau = np.where(rng.random((ny, nx)) < 0.5, thresh * rng.uniform(1.0, 1.05, (ny, nx)),
                       np.where(rng.random((ny, nx)) < 0.5, rng.uniform(6.2e4, 6.5e4, (ny, nx)),
                                rng.uniform(6.6e4, 7e4, (ny, nx))))
    charge = np.minimum(charge, plateau)
    data = np.stack([charge[np.array(r) - 1].mean(axis=0) for r in rp])
    data += rng.normal(0, 5, data.shape)
    # (a whole 5x5 neighbourhood far from saturation: stcal's grown DO_NOT_USE would be
    # invisible on an A/D-floor resultant, which already has DO_NOT_USE)
    quiet = ndimage.maximum_filter(data.max(axis=0), size=5) < 3e4
    faint = quiet[None] & (rng.random(data.shape) < 0.01)
    data[faint] = rng.choice([0.0, -3.0], size=faint.sum())
    thresh[rng.random((ny, nx)) < 0.03] = np.nan
    tdq = np.zeros((ny, nx), np.uint32)
    tdq[rng.random((ny, nx)) < 0.03] |= NSC
    tdq[rng.random((ny, nx)) < 0.03] |= np.uint32(pixel.DEAD)
    data = data.astype(np.float32)
    data[(data >= 65535.0) & (data < 65536.0)] = 65536.5
    return data, thresh, tdq


MA_LIKE = [[1], [2, 3], [4, 5, 6, 7], [8, 9, 10], [11], [12, 13, 14, 15, 16], [17, 18]]


@pytest.mark.parametrize("k", [0, 1])
@pytest.mark.parametrize("rp_id", ["uneven", "roman4"])
def test_matches_stcal(k, rp_id, roman_read_patterns):
    rp = MA_LIKE if rp_id == "uneven" else roman_read_patterns[4]
    data, thresh, tdq = _physical_scene(10 + k, rp)
    pdq0 = np.where(np.random.default_rng(3).random(thresh.shape) < 0.05,
                    np.uint32(pixel.HOT), 0).astype(np.uint32)
    g_ours, p_ours = _run(data, thresh, rp, tdq=tdq, pdq=pdq0.copy(), k=k)
    g_st, p_st = _stcal(data, thresh, tdq, rp, k, pdq=pdq0)

    # pixel DQ identical
    np.testing.assert_array_equal(p_ours, p_st)
    # the resultants excluded from the ramp fit (SATURATED or DO_NOT_USE): we exclude
    # every resultant stcal excludes
    excl_ours = (g_ours & (SAT | DNU)) != 0
    excl_st = (g_st & (SAT | DNU)) != 0
    assert not (excl_st & ~excl_ours).any()
    # AD_FLOOR identical, and DO_NOT_USE only comes with AD_FLOOR in ours
    np.testing.assert_array_equal(g_ours & ADF, g_st & ADF)
    assert np.all(((g_ours & DNU) != 0) == ((g_ours & ADF) != 0))
    # bit choice: where stcal uses DO_NOT_USE for saturation, we use SATURATED
    changed = ((g_st & DNU) != 0) & ((g_st & ADF) == 0)
    assert changed.sum() > 20  # the scene exercises dilution / the resultant-1 check
    np.testing.assert_array_equal(g_ours[changed] & SAT, SAT)
    # ... and, with our forward propagation of SATURATED, that is the only difference:
    # exact equality after the mapping
    np.testing.assert_array_equal(g_ours, _stcal_to_ours(g_st))
    # Resultants we exclude and stcal keeps (the documented growth difference, see
    # test_grown_dilution_of_pixel_saturated_only_by_growth): none without growth,
    # a handful per 1e5 with growth.
    extra = excl_ours & ~excl_st
    if k == 0:
        assert not extra.any()
        np.testing.assert_array_equal(g_ours, _stcal_to_ours(g_st, forward=False))
    else:
        assert extra.mean() < 1e-3
    # the scene is not trivial
    assert (g_ours & SAT).any(axis=0).mean() > 0.2
    assert (g_ours & ADF).any()
    assert ((p_ours & NSC) != 0).sum() > 100


def test_documented_difference_no_check_at_65535():
    # A no-check pixel (NaN threshold or NO_SAT_CHECK) reaching exactly 65535 DN is
    # SATURATED for us (the seed: "reaches that hard limit"); stcal uses a threshold of
    # 65536 and does not flag it.  Above 65535 both flag.
    rp = SINGLE4
    data = np.array([[10.0, 100.0, 65535.0, 65535.0],
                     [10.0, 100.0, 65536.0, 65536.0]], np.float32).T[:, :, None]
    data = np.ascontiguousarray(np.repeat(data, 2, axis=2))  # (4, 2, 2)
    thresh = np.array([[np.nan, 100.0], [np.nan, 100.0]], np.float32)
    tdq = np.array([[0, NSC], [0, NSC]], np.uint32)
    g_ours, p_ours = _run(data, thresh, rp, tdq=tdq)
    g_st, p_st = _stcal(data, thresh, tdq, rp, 0)
    np.testing.assert_array_equal(p_ours, p_st)
    assert np.all(g_ours[:, 0, :] == np.array([0, 0, 2, 2])[:, None])
    assert not g_st[:, 0, :].any()
    np.testing.assert_array_equal(g_ours[:, 1, :], g_st[:, 1, :])
    assert np.all(g_st[:, 1, :] == np.array([0, 0, 2, 2])[:, None])


def test_documented_difference_plus_inf():
    stcal = pytest.importorskip("stcal.saturation.saturation")
    data = np.array([100.0, np.inf, 300.0, 400.0], np.float32)
    gdq, _ = _run(data, 500.0, SINGLE4)
    assert not gdq.any()
    flags = {"SATURATED": int(SAT), "DO_NOT_USE": int(DNU), "NO_SAT_CHECK": int(NSC),
             "AD_FLOOR": int(ADF)}
    theirs, _, _ = stcal.flag_saturated_pixels(
        data.reshape(1, 4, 1, 1), np.zeros((1, 4, 1, 1), np.uint8), np.zeros((1, 1), np.uint32),
        np.full((1, 1), 500.0, np.float32), np.zeros((1, 1), np.uint32), 65535, flags,
        n_pix_grow_sat=0, read_pattern=SINGLE4,
    )
    assert theirs.ravel().tolist() == [0, SAT, SAT, SAT]


def test_documented_difference_bits_on_diluted_and_resultant_one():
    rp = [[1], [2, 3, 4], [5]]
    data = np.array([[300, 760, 1200], [100, 500, 1200]], np.float32).T[:, None, :]
    data = np.ascontiguousarray(data)  # pixel 0: dilution; pixel 1: resultant-1 check
    thresh = np.full((1, 2), 1000.0, np.float32)
    tdq = np.zeros((1, 2), np.uint32)
    g_ours, _ = _run(data, thresh, rp, tdq=tdq)
    g_st, _ = _stcal(data, thresh, tdq, rp, 0)
    assert g_ours[:, 0].T.tolist() == [[0, 2, 2], [0, 2, 2]]
    assert g_st[:, 0].T.tolist() == [[0, 1, 2], [0, 1, 2]]


def test_documented_difference_grown_dilution_neighbours():
    # Centre diluted at resultant 1 and saturated at 2; k = 1.  stcal grows the dilution
    # as DO_NOT_USE, we as SATURATED; resultant 2 is SATURATED by growth in both.
    rp = [[1], [2, 3, 4], [5]]
    data = np.full((3, 5, 5), 300.0, np.float32)
    data[:, 2, 2] = [300, 800, 1200]
    thresh = np.full((5, 5), 1000.0, np.float32)
    tdq = np.zeros((5, 5), np.uint32)
    g_ours, _ = _run(data, thresh, rp, tdq=tdq, k=1)
    g_st, _ = _stcal(data, thresh, tdq, rp, 1)
    block = np.zeros((5, 5), bool)
    block[1:4, 1:4] = True
    assert np.all(g_st[1][block] == DNU) and not g_st[1][~block].any()
    assert np.all(g_ours[1][block] == SAT) and not g_ours[1][~block].any()
    np.testing.assert_array_equal(g_ours[2], g_st[2])
    np.testing.assert_array_equal(g_ours, _stcal_to_ours(g_st))


def test_grown_dilution_of_pixel_saturated_only_by_growth():
    # Middle row of a 5x5 image, k = 1, pattern [[1], [2, 3, 4], [5]], threshold 1000:
    #   A (x=0) saturates on its own at resultant 2;
    #   p (x=1) is SATURATED at 2 only by growth from A, its own R2 = 500 is low, and its
    #     R1 = 800 >= 750 is diluted (next resultant saturated);
    #   q (x=2) is 2 pixels from A: stcal gives it DO_NOT_USE on resultant 1 only (grown
    #     from p), resultant 2 stays usable.  We flag q's resultants 1 and 2: one usable
    #     resultant fewer than stcal, a difference not listed in flag_saturation's
    #     docstring.
    rp = [[1], [2, 3, 4], [5]]
    data = np.full((3, 5, 5), 300.0, np.float32)
    data[:, 2, 0] = [300, 500, 1200]
    data[:, 2, 1] = [300, 800, 500]
    thresh = np.full((5, 5), 1000.0, np.float32)
    tdq = np.zeros((5, 5), np.uint32)
    g_ours, _ = _run(data, thresh, rp, tdq=tdq, k=1)
    g_st, _ = _stcal(data, thresh, tdq, rp, 1)
    # Documented difference (docs/romancore.md): saturation persists, so a neighbour
    # grown from a diluted resultant is SATURATED from that resultant on.
    assert g_st[:, 2, 2].tolist() == [0, 1, 0]
    assert g_ours[:, 2, 2].tolist() == [0, 2, 2]
    # everything else in the image is the same after mapping stcal's bits to ours
    others = np.ones((5, 5), bool)
    others[2, 2] = False
    np.testing.assert_array_equal(g_ours[:, others], _stcal_to_ours(g_st)[:, others])


def test_dilution_boundary_compares_exact_product():
    # pattern [[1], [2, 3], [4]]: dilution of resultant 1 = 2.5 / 3.  threshold 1000:
    # exact reduced threshold 833.333...; float32(833.333...) = 833.33331298828125 is
    # BELOW it, so a resultant of exactly that value is not diluted-saturated (seed:
    # "above the saturation threshold times a dilution factor"; stcal: not flagged).
    rp = [[1], [2, 3], [4]]
    v = np.float32(np.float32(1000.0) * (2.5 / 3))
    assert float(v) < 1000.0 * 2.5 / 3
    data = np.array([300.0, v, 1200.0], np.float32)[:, None, None]
    thresh = np.full((1, 1), 1000.0, np.float32)
    tdq = np.zeros((1, 1), np.uint32)
    g_st, _ = _stcal(np.ascontiguousarray(data), thresh, tdq, rp, 0)
    assert g_st[:, 0, 0].tolist() == [0, 0, 2]
    g_ours, _ = _run(data, thresh, rp, tdq=tdq)
    assert g_ours[:, 0, 0].tolist() == [0, 0, 2]


def test_resultant_one_check_rounding_as_stcal():
    # pattern [[1], [2, 3, 4], [5]], threshold 1000, R0 = 102: headroom / 3 = 299.333...,
    # float32 -> 299.33334350585938 (rounded up).  R1 - R0 equal to that float32 value is
    # not "greater" for stcal (float32 comparison) but is for a float64 quotient.
    rp = [[1], [2, 3, 4], [5]]
    q32 = (np.float32(1000.0) - np.float32(102.0)) / np.float32(3)
    r1 = np.float32(np.float32(102.0) + q32)
    assert np.float32(r1 - np.float32(102.0)) == q32 and float(q32) > 898 / 3
    data = np.array([102.0, r1, 1200.0], np.float32)[:, None, None]
    thresh = np.full((1, 1), 1000.0, np.float32)
    tdq = np.zeros((1, 1), np.uint32)
    g_st, _ = _stcal(np.ascontiguousarray(data), thresh, tdq, rp, 0)
    assert g_st[:, 0, 0].tolist() == [0, 0, 2]
    g_ours, _ = _run(data, thresh, rp, tdq=tdq)
    assert g_ours[:, 0, 0].tolist() == [0, 0, 2]
