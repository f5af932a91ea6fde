import numpy as np

import romancore


def test_noiseless_ramp_exact_slope():
    rp = [[1], [2, 3], [4, 5, 6, 7], [8]]
    meta = romancore.read_pattern_metadata(rp, 3.0)
    res = (5.0 * meta.t_bar + 100.0).astype(np.float32)[:, None, None] * np.ones(
        (1, 2, 3), np.float32
    )
    dq = np.zeros(res.shape, np.uint8)
    out = romancore.fit_ramps(res, dq, 10.0, rp, 3.0)
    np.testing.assert_allclose(out.slope, 5.0, rtol=1e-5)
    assert not dq.any()
