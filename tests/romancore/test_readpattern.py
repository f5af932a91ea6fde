import math

import numpy as np
import pytest

import romancore
from romancore.readpattern import validate_read_pattern


def test_hand_computed_three_resultants():
    # read_pattern [[1], [2, 3], [4, 5, 6]], frame_time 2 s: read times t_k = 2 r_k
    #   R0: t = [2]          t_bar = 2   tau = (1/1) (1*2)                 = 2
    #   R1: t = [4, 6]       t_bar = 5   tau = (1/4) (3*4 + 1*6)           = 18/4 = 4.5
    #   R2: t = [8, 10, 12]  t_bar = 10  tau = (1/9) (5*8 + 3*10 + 1*12)   = 82/9
    meta = romancore.read_pattern_metadata([[1], [2, 3], [4, 5, 6]], 2.0)
    np.testing.assert_allclose(meta.t_bar, [2.0, 5.0, 10.0], rtol=1e-15)
    np.testing.assert_allclose(meta.tau, [2.0, 4.5, 82.0 / 9.0], rtol=1e-15)
    np.testing.assert_array_equal(meta.n_reads, [1, 2, 3])
    assert meta.t_bar.dtype == np.float64
    assert meta.tau.dtype == np.float64
    assert meta.n_reads.dtype == np.int32
    # named-tuple access and unpacking agree
    t_bar, tau, n_reads = meta
    assert t_bar is meta.t_bar and tau is meta.tau and n_reads is meta.n_reads


def test_hand_computed_with_gaps():
    # [[2, 4], [7], [9, 10, 11, 12]], frame_time 0.5 (gaps = skipped reads)
    #   R0: t = [1, 2]             t_bar = 1.5    tau = (3*1 + 1*2)/4            = 1.25
    #   R1: t = [3.5]              t_bar = 3.5    tau = 3.5
    #   R2: t = [4.5, 5, 5.5, 6]   t_bar = 5.25   tau = (7*4.5 + 5*5 + 3*5.5 + 6)/16
    #                                                 = (31.5 + 25 + 16.5 + 6)/16 = 79/16
    meta = romancore.read_pattern_metadata([[2, 4], [7], [9, 10, 11, 12]], 0.5)
    np.testing.assert_allclose(meta.t_bar, [1.5, 3.5, 5.25], rtol=1e-15)
    np.testing.assert_allclose(meta.tau, [1.25, 3.5, 79.0 / 16.0], rtol=1e-15)
    np.testing.assert_array_equal(meta.n_reads, [2, 1, 4])


def test_single_read_tau_equals_t_bar_and_multi_read_tau_below_t_bar():
    rp = [[1], [3], [4, 5, 6, 7, 8], [20]]
    meta = romancore.read_pattern_metadata(rp, 3.04)
    single = meta.n_reads == 1
    np.testing.assert_allclose(meta.tau[single], meta.t_bar[single], rtol=1e-15)
    # for N > 1, tau < t_bar (earlier reads weigh more in the Poisson covariance)
    assert np.all(meta.tau[~single] < meta.t_bar[~single])


def test_scales_linearly_with_frame_time():
    rp = [[1, 2], [3, 4, 5], [9]]
    a = romancore.read_pattern_metadata(rp, 1.0)
    b = romancore.read_pattern_metadata(rp, 3.16247)
    np.testing.assert_allclose(b.t_bar, a.t_bar * 3.16247, rtol=1e-14)
    np.testing.assert_allclose(b.tau, a.tau * 3.16247, rtol=1e-14)


def test_accepts_numpy_and_tuples():
    rp = (np.array([1, 2]), (3,), [4, 5, 6])
    meta = romancore.read_pattern_metadata(rp, np.float32(2.0))
    np.testing.assert_allclose(meta.t_bar, [3.0, 6.0, 10.0])
    assert validate_read_pattern(rp) == [[1, 2], [3], [4, 5, 6]]


def test_integral_floats_accepted_as_ints():
    out = validate_read_pattern([[1.0, 2.0], [np.float32(3.0)], np.array([4.0, 5.0])])
    assert out == [[1, 2], [3], [4, 5]]
    assert all(type(r) is int for reads in out for r in reads)


@pytest.mark.parametrize(
    "read_pattern",
    [
        [],
        None,
        [[]],
        [[1], []],
        [[1, 2], [2, 3]],  # repeated read
        [[2, 1]],  # decreasing inside a resultant
        [[3], [1]],  # decreasing across resultants
        [[0], [1]],  # read numbers are 1-based
        [[-1]],
        [[1.5, 2]],  # non-integer
        [["a"]],
        [["1"], ["2"]],  # numbers as strings
        ["12", "3"],
        "123",
        [[b"1"]],
        [[True], [2]],
        [[1], [2.000001]],
        [[1], [math.inf]],
        [[1], [math.nan]],
        [[1], [None]],
        [[1], [2 + 0j]],
        [1, 2],  # resultants must be sequences
        5,
    ],
)
def test_invalid_read_patterns(read_pattern):
    with pytest.raises(ValueError):
        romancore.read_pattern_metadata(read_pattern, 3.0)


@pytest.mark.parametrize("frame_time", [0.0, -1.0, math.nan, math.inf, "fast", None])
def test_invalid_frame_time(frame_time):
    with pytest.raises(ValueError):
        romancore.read_pattern_metadata([[1], [2]], frame_time)
