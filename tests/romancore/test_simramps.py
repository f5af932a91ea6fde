"""romancore.simulate_ramp_block: the compiled ramp sampling of the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from romancore.dqflags import group
from romancore.simramps import simulate_ramp_block

PATTERN = [[1], [2, 3], [4, 5, 6]]
NY, NX, B = 24, 264, 4
NS = (NY - 2 * B, NX - 2 * B)


def _outputs():
    n = len(PATTERN)
    return (np.zeros((n, NY, NX), np.uint16), np.zeros((n, NY, NX), np.uint8),
            np.zeros((n, NY, 128), np.uint16), np.full(NS, -1, np.int16))


def _block(r0, r1, **over):
    """Arguments of rows r0:r1 of a detector with a 2 e/s sky and a few bright pixels."""
    rng = np.random.default_rng(0)
    s0, s1 = max(r0, B), min(r1, NY - B)
    ns = max(s1 - s0, 0)
    detected = np.full((NY - 2 * B, NX - 2 * B), 2.0)
    detected[3, 5] = 500.0  # PTRS
    detected[7, 9] = 2.0e5  # saturates
    kw = {
        "rows": (r0, r1), "science_rows": (s0, max(s1, s0)), "border": B,
        "detected": detected[s0 - B : s1 - B] if ns else None,
        "inverse_gain": np.full((ns, NS[1]), 0.5), "zero_level": np.full((ns, NS[1]), 6000.0),
        "full_well": np.full((ns, NS[1]), 1.0e5), "threshold": np.full((ns, NS[1]), 5.0e4),
        "response": "none", "linearity": None, "inverse": None, "inl": None,
        "read_pattern": PATTERN, "frame_time": 3.0, "poisson": True, "read_noise": True,
        "cosmic_rays": None, "pedestal": np.full((r1 - r0, NX), 6000.0),
        "amp33_pedestal": np.full((r1 - r0, 128), 6100.0),
        "read_noise_dn": np.full((r1 - r0, NX), 5.0), "amp33_read_noise_dn": 5.0,
        "channel_offsets": rng.normal(0, 3, (3, 4, 2)), "row_drift": rng.normal(0, 1, (3, NY)),
        "seed": 42, "stream": 1,
    }
    kw.update(over)
    return kw


def test_same_result_for_any_threads_and_row_blocks():
    one = _outputs()
    simulate_ramp_block(*one, **_block(0, NY), n_threads=1)
    two = _outputs()
    simulate_ramp_block(*two, **_block(0, NY), n_threads=2)
    split = _outputs()
    for r0, r1 in ((0, 3), (3, 11), (11, NY)):  # rows are their own random streams
        simulate_ramp_block(*split, **_block(r0, r1), n_threads=2)
    for a, b, c in zip(one, two, split, strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    data, dq, _, sat = one
    # a saturating pixel: flagged from its first resultant at the threshold on
    assert sat[7, 9] == 0 and np.all(dq[:, 7 + B, 9 + B] & group.SATURATED)
    assert sat[0, 0] == -1 and not dq[:, B:-B, B:-B][:, 0, 0].any()
    # the bright (PTRS) pixel's ramp: 500 e/s * 3 s / 2 e/DN per read
    ramp = data[:, 3 + B, 5 + B].astype(float)
    assert (ramp[2] - ramp[0]) / 4.0 == pytest.approx(750.0, rel=0.05)


def test_cosmic_rays_are_added_and_flagged():
    base = _outputs()
    simulate_ramp_block(*base, **_block(0, NY, read_noise=False, poisson=False))
    hit = _outputs()
    crs = (np.array([2]), np.array([10]), np.array([3]), np.array([1000.0]))  # science px
    simulate_ramp_block(*hit, **_block(0, NY, read_noise=False, poisson=False,
                                       cosmic_rays=crs))
    delta = hit[0].astype(int) - base[0].astype(int)
    # read index 3 is the first read of resultant 2: 1000 e / 2 e/DN, that resultant only
    assert delta[:, B + 2, B + 10].tolist() == [0, 0, 500]
    assert np.count_nonzero(delta) == 1
    assert hit[1][2, B + 2, B + 10] & group.JUMP_DET
    assert not hit[1][:2, B + 2, B + 10].any()


@pytest.mark.parametrize("over, match", [
    ({"response": "cubic"}, "response must be one of"),
    ({"read_pattern": [[1], [2]]}, "read_pattern has 2"),
    ({"frame_time": 0.0}, "frame_time"),
    ({"response": "quadratic"}, "needs the linearity"),
    ({"rows": (0, NY + 1)}, "rows"),
    ({"channel_offsets": np.zeros((3, 2, 2))}, "channel_offsets has 2 channels"),
    ({"cosmic_rays": (np.array([NY]), np.array([0]), np.array([0]), np.array([1.0]))},
     "cosmic_rays outside"),
])
def test_bad_arguments(over, match):
    with pytest.raises(ValueError, match=match):
        simulate_ramp_block(*_outputs(), **_block(0, NY, **over))
