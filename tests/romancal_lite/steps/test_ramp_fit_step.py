"""Tests of ramp_fit: fit_exposure (DN ramps -> trimmed DN/s images) and RampFitStep."""

import types
import warnings

import numpy as np
import pytest
from asdf.exceptions import AsdfPackageVersionWarning
from astropy.time import Time

import romancore
from romancal_lite import datamodels
from romancal_lite.errors import ReferenceFileError
from romancal_lite.references import get_reference_file
from romancal_lite.steps.ramp_fit import RampFitStep, fit_exposure, uniform_weights
from romancore.dqflags import group, pixel

SMALL_SHAPE = (40, 256)  # the full read-out of the builtin_refs cache (conftest)
READ_PATTERN = [[1], [2, 3], [4, 5, 6], [7], [8, 9]]
N_RES = len(READ_PATTERN)
SHAPE = (N_RES, *SMALL_SHAPE)
SCIENCE = (SMALL_SHAPE[0] - 8, SMALL_SHAPE[1] - 8)
FRAME_TIME = 3.16247
TIMES = np.array([np.mean(r) for r in READ_PATTERN]) * FRAME_TIME
F32_EPS = float(np.finfo(np.float32).eps)
SAT, DNU_G, JUMP_G = group.SATURATED, group.DO_NOT_USE, group.JUMP_DET
DNU, NO_GAIN = pixel.DO_NOT_USE, pixel.NO_GAIN_VALUE
BORDER_NAMES = [
    f"{prefix}border_ref_pix_{side}"
    for prefix in ("", "dq_")
    for side in ("left", "right", "top", "bottom")
]


def ramp_of(rate, bias=100.0):
    """Noise-free resultants (DN) of a constant count rate (DN/s)."""
    rate = np.broadcast_to(np.asarray(rate, np.float64), SMALL_SHAPE)
    return (bias + rate[None] * TIMES[:, None, None]).astype(np.float32)


def rate_field():
    return np.linspace(0.5, 50.0, np.prod(SMALL_SHAPE)).reshape(SMALL_SHAPE)


def noisy_rate(seed):
    """The rate field of ``noisy_ramp(seed)`` (its first random draw)."""
    return np.random.default_rng(seed).uniform(0.0, 300.0, SMALL_SHAPE)


def noisy_ramp(seed):
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.0, 300.0, SMALL_SHAPE)
    data = ramp_of(rate, bias=1000.0) + rng.normal(0.0, 8.0, SHAPE).astype(np.float32)
    data[3:, 10, 20] += 800.0  # a cosmic ray
    return data


def fit(data, groupdq=None, pixeldq=None, gain=1.7, read_noise=5.0, **kwargs):
    kwargs.setdefault("n_threads", 1)  # results do not depend on it; thread start-up does
    groupdq = np.zeros(SHAPE, np.uint8) if groupdq is None else groupdq
    pixeldq = np.zeros(SMALL_SHAPE, np.uint32) if pixeldq is None else pixeldq
    gain = np.broadcast_to(np.asarray(gain, np.float32), SMALL_SHAPE)
    read_noise = np.broadcast_to(np.asarray(read_noise, np.float32), SMALL_SHAPE)
    return fit_exposure(
        data, groupdq, pixeldq, gain, read_noise, READ_PATTERN, FRAME_TIME, **kwargs
    )


def sci(array):
    """The science part (reference border trimmed) of a full read-out array."""
    return array[..., 4:-4, 4:-4]


# ---------------------------------------------------------------- fit_exposure


def test_noise_free_slope_exact_and_trimmed():
    rate = rate_field()
    data = ramp_of(rate)
    for sl in ((slice(None), slice(None, 4)), (slice(-4, None), slice(None))):
        data[(slice(None), *sl)] = np.nan  # the border is never fitted
    groupdq = np.zeros(SHAPE, np.uint8)
    before = data.copy()
    res = fit(data, groupdq)
    np.testing.assert_array_equal(data, before)
    for name, array in res._asdict().items():
        assert array.shape == SCIENCE, name
        assert array.dtype == (np.uint32 if name == "dq" else np.float32), name
    np.testing.assert_allclose(res.slope, sci(rate), rtol=4 * F32_EPS)
    assert not res.dq.any()
    assert not groupdq.any()
    assert np.all(res.var_poisson > 0) and np.all(res.var_rnoise > 0)
    np.testing.assert_array_equal(res.err, np.sqrt(res.var_poisson + res.var_rnoise))
    # a straight ramp: the uniform-weight slope is the same
    np.testing.assert_allclose(res.dumo, 0.0, atol=1e-4)


@pytest.mark.parametrize("gain", [1.7, 2.3])
def test_variances_in_dn_are_electron_fit_over_gain_squared(gain):
    rate_e = np.linspace(1.0, 400.0, np.prod(SMALL_SHAPE)).reshape(SMALL_SHAPE)
    electrons = ramp_of(rate_e, bias=500.0)
    rn_e = np.full(SMALL_SHAPE, 9.0, np.float32)
    ref = romancore.fit_ramps(electrons, np.zeros(SHAPE, np.uint8), rn_e, READ_PATTERN, FRAME_TIME)
    data = (electrons / np.float32(gain)).astype(np.float32)
    res = fit(data, gain=gain, read_noise=rn_e / np.float32(gain))
    g2 = gain * gain
    np.testing.assert_allclose(res.slope, sci(ref.slope) / gain, rtol=1e-5)
    np.testing.assert_allclose(res.var_poisson, sci(ref.var_poisson) / g2, rtol=1e-5)
    np.testing.assert_allclose(res.var_rnoise, sci(ref.var_read) / g2, rtol=1e-5)
    np.testing.assert_array_equal(res.err, np.sqrt(res.var_poisson + res.var_rnoise))


def test_fit_is_romancore_on_electrons():
    # exactly the arrays fit_exposure hands romancore: DN * gain, RN * gain
    rng = np.random.default_rng(4)
    data = noisy_ramp(4)
    gain = rng.uniform(1.5, 2.5, SMALL_SHAPE).astype(np.float32)
    rn = rng.uniform(4.0, 7.0, SMALL_SHAPE).astype(np.float32)
    gdq_ref = np.zeros(SHAPE, np.uint8)
    ref = romancore.fit_ramps(
        np.multiply(data, gain, dtype=np.float32), gdq_ref, rn * gain, READ_PATTERN, FRAME_TIME
    )
    groupdq = np.zeros(SHAPE, np.uint8)
    res = fit(data, groupdq, gain=gain, read_noise=rn)
    g = sci(gain)
    np.testing.assert_array_equal(res.slope, sci(ref.slope) / g)
    np.testing.assert_array_equal(res.var_poisson, sci(ref.var_poisson) / (g * g))
    np.testing.assert_array_equal(res.var_rnoise, sci(ref.var_read) / (g * g))
    np.testing.assert_array_equal(sci(groupdq), sci(gdq_ref))
    assert groupdq[:, 10, 20].any()


def test_dq_collapse():
    rate = 20.0
    data = ramp_of(rate)
    groupdq = np.zeros(SHAPE, np.uint8)
    pixeldq = np.zeros(SMALL_SHAPE, np.uint32)
    gain = np.full(SMALL_SHAPE, 1.7, np.float32)
    expected = np.zeros(SCIENCE, np.uint32)
    nan_slope = np.zeros(SCIENCE, bool)

    groupdq[2, 10, 20] = JUMP_G  # an earlier jump
    expected[6, 16] = pixel.JUMP_DET
    groupdq[3:, 11, 21] = SAT  # saturated from resultant 3
    expected[7, 17] = pixel.SATURATED
    groupdq[:, 12, 22] = SAT  # saturated throughout
    expected[8, 18] = pixel.SATURATED | DNU
    nan_slope[8, 18] = True
    groupdq[2, 13, 23] = DNU_G  # one resultant not to use
    groupdq[:, 14, 24] = DNU_G  # none to use
    expected[10, 20] = DNU
    nan_slope[10, 20] = True
    groupdq[0, 15, 25] = group.AD_FLOOR | DNU_G  # other group flags are collapsed
    expected[11, 21] = pixel.AD_FLOOR
    groupdq[:2, 16, 26] = SAT
    groupdq[2:, 16, 26] = DNU_G  # all unusable, some saturated
    expected[12, 22] = pixel.SATURATED | DNU
    nan_slope[12, 22] = True
    for (y, x), value in zip(((17, 27), (18, 28), (19, 29)), (np.nan, 0.0, -1.0), strict=True):
        gain[y, x] = value
        expected[y - 4, x - 4] = NO_GAIN | DNU
        nan_slope[y - 4, x - 4] = True
    pixeldq[20, 30] = pixel.HOT
    expected[16, 26] = pixel.HOT
    pixeldq[0, 0] = pixel.REFERENCE_PIXEL  # border: trimmed
    groupdq[:, 0, 1] = SAT

    res = fit(data, groupdq, pixeldq, gain=gain)
    np.testing.assert_array_equal(res.dq, expected)
    np.testing.assert_array_equal(np.isnan(res.slope), nan_slope)
    for array in (res.var_poisson, res.var_rnoise, res.err):
        np.testing.assert_array_equal(np.isnan(array), nan_slope)
    good = ~nan_slope
    np.testing.assert_allclose(res.slope[good], rate, rtol=1e-5)
    assert np.all(res.err[good] > 0)
    # jump detection added nothing to this noise-free ramp
    assert np.count_nonzero(groupdq & JUMP_G) == 1


DEAD = np.zeros(SMALL_SHAPE, bool)  # pixels of _nonfinite_cases left without a segment
DEAD[15, 70] = DEAD[16, 80] = DEAD[17, 90] = True


def _nonfinite_cases(data, border=True):
    """Put NaN / +inf / -inf resultants into ``data``; return their mask."""
    bad = np.zeros(data.shape, bool)
    for k, (y, x) in enumerate([(10, 25), (11, 30), (12, 40), (13, 50), (14, 60)]):
        bad[k % N_RES, y, x] = True  # first, middle and last resultants
    bad[[1, 3], 15, 70] = True  # two in one pixel: three single resultants left
    bad[[0, 4], 18, 75] = True  # first and last
    bad[:, 16, 80] = True  # all
    bad[:, 17, 90] = True
    bad[2, 17, 90] = False  # one finite resultant left: no segment
    bad[2, 20, 2] = border  # reference border column: never fitted
    values = np.resize(np.array([np.nan, np.inf, -np.inf], np.float32), bad.sum())
    data[bad] = values
    return bad


@pytest.mark.filterwarnings("error::RuntimeWarning")  # numpy errors ignored in every thread
@pytest.mark.parametrize("use_jump", [True, False])
def test_nonfinite_resultants_fit_as_do_not_use(use_jump):
    # NaN and infinite resultants give the slopes, variances and DQ of the same ramp
    # with those resultants flagged DO_NOT_USE (the fit uses the resultants on both
    # sides); they get DO_NOT_USE in groupdq; a pixel left without two usable
    # resultants is DO_NOT_USE with a NaN slope.
    clean = noisy_ramp(5)
    data = clean.copy()
    bad = _nonfinite_cases(data)
    flagged = np.zeros(SHAPE, np.uint8)
    flagged[bad] = DNU_G
    flagged[:, 20, 2] = 0  # the border is not fitted: no flag there
    ref = fit(clean, flagged.copy(), use_jump=use_jump)
    groupdq = np.zeros(SHAPE, np.uint8)
    res = fit(data, groupdq, use_jump=use_jump, n_threads=2)
    np.testing.assert_array_equal(groupdq & DNU_G, flagged)
    for name in ("slope", "dq", "var_poisson", "var_rnoise", "err"):
        np.testing.assert_array_equal(getattr(res, name), getattr(ref, name), err_msg=name)
    dead = sci(DEAD)
    assert np.all(np.isnan(res.slope[dead])) and np.all(res.dq[dead] & DNU)
    hit = sci(bad.any(axis=0))
    assert hit.sum() == 9  # the border column is trimmed
    fine = hit & ~dead
    assert np.all(np.isfinite(res.slope[fine])) and not np.any(res.dq[fine] & DNU)
    np.testing.assert_allclose(res.slope[fine], sci(noisy_rate(5))[fine], rtol=0.05)
    # dumo ignores flags (as romancal's): not finite where a resultant is not
    np.testing.assert_array_equal(res.dumo[~hit], ref.dumo[~hit])


def test_nonfinite_resultants_through_saturation_linearity_and_ramp_fit(builtin_refs):
    # The same through the steps with the built-in references: saturation, linearity
    # and ramp_fit on a ramp with NaN / +inf / -inf resultants give the image of the
    # ramp with those resultants flagged instead (-inf is <= 0: the saturation step's
    # A/D floor, AD_FLOOR | DO_NOT_USE).
    from romancal_lite.steps.linearity import LinearityStep
    from romancal_lite.steps.saturation import SaturationStep

    def run(ramp):
        for step in (SaturationStep, LinearityStep, RampFitStep):
            ramp = step.call(ramp)
        return ramp

    with_bad = make_ramp(rate=40.0)
    with_bad.data = noisy_ramp(9)
    flagged = make_ramp(rate=40.0)
    flagged.data = with_bad.data.copy()
    bad = _nonfinite_cases(with_bad.data, border=False)
    flagged.groupdq[bad] = np.where(with_bad.data[bad] == -np.inf,
                                    np.uint8(group.AD_FLOOR | DNU_G), DNU_G)
    image = run(with_bad)
    expected = run(flagged)
    np.testing.assert_array_equal(with_bad.groupdq, flagged.groupdq)
    for name in ("data", "dq", "var_poisson", "var_rnoise", "err"):
        np.testing.assert_array_equal(getattr(image, name), getattr(expected, name),
                                      err_msg=name)
    assert image.meta.cal_step.saturation == image.meta.cal_step.linearity == "COMPLETE"
    np.testing.assert_array_equal(np.isnan(image.data), sci(DEAD))
    assert np.all(image.dq[sci(DEAD)] & DNU)


@pytest.mark.parametrize("use_jump", [True, False])
def test_block_rows_invariance(use_jump):
    data = noisy_ramp(7)
    base_gdq = np.zeros(SHAPE, np.uint8)
    base_gdq[3:, 12:15, 40:44] = SAT
    base_gdq[1, 20, 50] = DNU_G
    gain = np.full(SMALL_SHAPE, 1.7, np.float32)
    gain[25, 60] = np.nan
    results = []
    for block_rows in (1, 7, 1000):
        groupdq = base_gdq.copy()
        res = fit(data, groupdq, gain=gain, use_jump=use_jump, block_rows=block_rows)
        results.append((res, groupdq))
    first, first_gdq = results[0]
    for res, groupdq in results[1:]:
        for name in first._fields:
            np.testing.assert_array_equal(getattr(res, name), getattr(first, name), err_msg=name)
        np.testing.assert_array_equal(groupdq, first_gdq)


def test_cosmic_ray_flagged_and_rate_recovered():
    rate = 7.0
    data = ramp_of(rate)
    data[3:, 10, 20] += 500.0  # a cosmic ray between resultants 2 and 3
    groupdq = np.zeros(SHAPE, np.uint8)
    res = fit(data, groupdq)
    jumps = (groupdq & JUMP_G) != 0
    assert jumps[3, 10, 20]
    assert jumps.sum() == jumps[:, 10, 20].sum() <= 2
    assert res.dq[6, 16] == pixel.JUMP_DET
    assert np.count_nonzero(res.dq) == 1
    np.testing.assert_allclose(res.slope[6, 16], rate, rtol=1e-5)
    np.testing.assert_allclose(res.slope, rate, rtol=1e-5)

    # without jump detection the cosmic ray biases the slope and nothing is flagged
    groupdq = np.zeros(SHAPE, np.uint8)
    res = fit(data, groupdq, use_jump=False)
    assert not groupdq.any() and not res.dq.any()
    assert res.slope[6, 16] > rate + 10.0


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold_intercept": 1000.0}, {"threshold_constant": -1000.0}],
    ids=["intercept", "constant"],
)
def test_jump_thresholds_passed_through(kwargs):
    data = ramp_of(7.0)
    data[3:, 10, 20] += 500.0
    groupdq = np.zeros(SHAPE, np.uint8)
    res = fit(data, groupdq, **kwargs)
    assert not groupdq.any() and not res.dq.any()
    # the opposite direction: a negative threshold makes every difference a jump
    groupdq = np.zeros(SHAPE, np.uint8)
    fit(ramp_of(7.0), groupdq, threshold_intercept=-1000.0)
    assert np.all(np.any(sci(groupdq) & JUMP_G, axis=0))


def test_fit_exposure_passes_arguments_to_romancore(monkeypatch):
    calls = []
    original = romancore.fit_rate_images

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(romancore, "fit_rate_images", spy)
    fit(
        ramp_of(3.0),
        use_jump=False,
        threshold_intercept=9.5,
        threshold_constant=0.25,
        block_rows=16,
        n_threads=1,
    )
    assert len(calls) == 2  # science rows 4..36 in blocks of 16
    for args, kwargs in calls:
        assert args[5] == READ_PATTERN and args[6] == FRAME_TIME
        kwargs = {k: v for k, v in kwargs.items() if k != "out"}
        assert kwargs == {
            "use_jump": False,
            "threshold_intercept": 9.5,
            "threshold_constant": 0.25,
            "update_groupdq": True,
            "n_threads": 1,
        }
    # the science columns only (the reference border is never fitted)
    assert [args[0].shape for args, _ in calls] == [(N_RES, 16, 248), (N_RES, 16, 248)]


def test_fit_exposure_rejects_bad_shapes():
    data = ramp_of(1.0)
    with pytest.raises(ValueError, match="gain"):
        fit_exposure(
            data,
            np.zeros(SHAPE, np.uint8),
            np.zeros(SMALL_SHAPE, np.uint32),
            np.ones((3, 3)),
            np.ones(SMALL_SHAPE),
            READ_PATTERN,
            FRAME_TIME,
        )
    with pytest.raises(ValueError, match="block_rows"):
        fit(data, block_rows=0)
    with pytest.raises(ValueError, match="border"):
        fit_exposure(
            np.zeros((2, 8, 20), np.float32),
            np.zeros((2, 8, 20), np.uint8),
            np.zeros((8, 20), np.uint32),
            np.ones((8, 20)),
            np.ones((8, 20)),
            [[1], [2]],
            FRAME_TIME,
        )


# ---------------------------------------------------------------- uniform weights, dumo


def test_uniform_weights_are_least_squares():
    w = uniform_weights(READ_PATTERN, FRAME_TIME)
    assert w.shape == (N_RES,)
    # a linear ramp a + b t gives b, whatever a
    np.testing.assert_allclose(w.sum(), 0.0, atol=1e-15)
    np.testing.assert_allclose((w * TIMES).sum(), 1.0, rtol=1e-12)
    # a single resultant has no slope
    np.testing.assert_array_equal(uniform_weights([[1, 2, 3]], FRAME_TIME), [0.0])


@pytest.mark.parametrize(
    "read_pattern",
    [READ_PATTERN, [[1], [2], [3], [4]], [[1, 2], [3, 4, 5, 6], [7, 8, 9, 10, 11, 12], [13]]],
)
def test_uniform_weights_match_romancal(read_pattern):
    official = pytest.importorskip("romancal.ramp_fitting.ramp_fit_step")
    n = len(read_pattern)
    exposure = types.SimpleNamespace(
        nresultants=n, frame_time=FRAME_TIME, read_pattern=read_pattern
    )
    # unit resultants: romancal's slope of resultant i alone is its weight
    identity = np.eye(n)[:, None, :]
    model = types.SimpleNamespace(data=identity, meta=types.SimpleNamespace(exposure=exposure))
    theirs = official.slopes_uniform_weights(model)[0]
    np.testing.assert_allclose(
        uniform_weights(read_pattern, FRAME_TIME), theirs, rtol=1e-12, atol=1e-15
    )


def test_dumo_is_uniform_slope_minus_slope():
    data = noisy_ramp(9)
    gdq = np.zeros(SHAPE, np.uint8)
    gdq[2:, 30, 100] = SAT  # flags are ignored by the uniform slope
    res = fit(data, gdq)
    uniform = np.tensordot(uniform_weights(READ_PATTERN, FRAME_TIME), sci(data), axes=(0, 0))
    np.testing.assert_allclose(res.dumo, uniform - res.slope, atol=1e-4)
    assert np.abs(res.dumo[6, 16]) > 10.0  # the cosmic ray only the optimal fit removed
    official = pytest.importorskip("romancal.ramp_fitting.ramp_fit_step")
    exposure = types.SimpleNamespace(
        nresultants=N_RES, frame_time=FRAME_TIME, read_pattern=READ_PATTERN
    )
    model = types.SimpleNamespace(data=data, meta=types.SimpleNamespace(exposure=exposure))
    theirs = sci(official.slopes_uniform_weights(model))
    # both sum in float64: equal to float32 rounding
    np.testing.assert_allclose(res.dumo, theirs - res.slope, rtol=0, atol=1e-6)


def test_dq_collapse_matches_romancal_get_pixeldq_flags():
    official = pytest.importorskip("romancal.ramp_fitting.ramp_fit_step")
    rng = np.random.default_rng(13)
    groupdq = np.zeros(SHAPE, np.uint8)
    first_sat = rng.integers(0, 2 * N_RES, SMALL_SHAPE)  # >= N_RES: never saturated
    groupdq[np.arange(N_RES)[:, None, None] >= first_sat[None]] |= np.uint8(SAT)
    groupdq[rng.random(SHAPE) < 0.2] |= np.uint8(DNU_G)
    groupdq[rng.random(SHAPE) < 0.1] |= np.uint8(JUMP_G)
    pixeldq = rng.integers(0, 2**32, SMALL_SHAPE, dtype=np.uint32)
    pixeldq &= ~np.uint32(DNU | pixel.JUMP_DET | pixel.SATURATED | NO_GAIN)
    gain = rng.uniform(1.5, 2.5, SMALL_SHAPE).astype(np.float32)
    bad = rng.random(SMALL_SHAPE)
    gain[bad < 0.03] = np.nan
    gain[(bad >= 0.03) & (bad < 0.06)] = -1.0
    gain[(bad >= 0.06) & (bad < 0.09)] = 0.0
    data = noisy_ramp(13)
    gdq_in = groupdq.copy()
    res = fit(data, groupdq, pixeldq, gain=gain, use_jump=False)
    np.testing.assert_array_equal(groupdq, gdq_in)
    theirs = official.get_pixeldq_flags(
        sci(groupdq), sci(pixeldq), res.slope, res.err, sci(gain)
    ).astype(np.uint32)
    ours = res.dq

    for flag in (pixel.JUMP_DET, DNU):
        np.testing.assert_array_equal(ours & flag, theirs & flag, err_msg=str(flag))
    # NO_GAIN_VALUE: the seed flags a non-positive gain; romancal only a negative one
    zero_gain = sci(gain) == 0
    assert zero_gain.any()
    np.testing.assert_array_equal((ours & NO_GAIN) != 0, ((theirs & NO_GAIN) != 0) | zero_gain)
    assert not np.any(theirs[zero_gain] & NO_GAIN)
    # SATURATED: we collapse (any resultant), romancal flags only all-saturated pixels
    sat = (sci(groupdq) & SAT) != 0
    np.testing.assert_array_equal((ours & pixel.SATURATED) != 0, sat.any(axis=0))
    np.testing.assert_array_equal((theirs & pixel.SATURATED) != 0, sat.all(axis=0))
    partial = sat.any(axis=0) & ~sat.all(axis=0)
    assert partial.any() and sat.all(axis=0).any()
    # everything else: the input pixeldq is carried by both
    rest = ~np.uint32(pixel.JUMP_DET | DNU | NO_GAIN | pixel.SATURATED)
    np.testing.assert_array_equal(ours & rest, theirs & rest)


# ---------------------------------------------------------------- the step


def make_ramp(rate=None):
    rng = np.random.default_rng(21)
    ramp = datamodels.RampModel.create_fake_data(shape=SHAPE)
    meta = ramp.meta
    meta.instrument.detector = "WFI01"
    meta.instrument.optical_element = "F158"
    meta.exposure.start_time = Time("2026-05-01T00:00:00", format="isot", scale="utc")
    meta.exposure.read_pattern = READ_PATTERN
    meta.exposure.nresultants = N_RES
    meta.exposure.frame_time = FRAME_TIME
    meta.cal_step.saturation = "COMPLETE"
    ramp.data = ramp_of(rate_field() if rate is None else rate)
    ramp.amp33 = rng.integers(0, 60000, (N_RES, SMALL_SHAPE[0], 128), dtype=np.uint16)
    ramp.border_ref_pix_left = rng.normal(size=(N_RES, SMALL_SHAPE[0], 4)).astype(np.float32)
    ramp.border_ref_pix_right = rng.normal(size=(N_RES, SMALL_SHAPE[0], 4)).astype(np.float32)
    ramp.border_ref_pix_top = rng.normal(size=(N_RES, 4, SMALL_SHAPE[1])).astype(np.float32)
    ramp.border_ref_pix_bottom = rng.normal(size=(N_RES, 4, SMALL_SHAPE[1])).astype(np.float32)
    for side, shape in (
        ("left", (40, 4)),
        ("right", (40, 4)),
        ("top", (4, 256)),
        ("bottom", (4, 256)),
    ):
        setattr(ramp, f"dq_border_ref_pix_{side}", np.full(shape, 7, np.uint32))
    ramp.pixeldq[15, 15] = pixel.HOT
    return ramp


def test_step_builtin_references(builtin_refs, tmp_path, monkeypatch):
    calls = []
    original = romancore.fit_rate_images

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(romancore, "fit_rate_images", spy)
    ramp = make_ramp()
    gain_path = get_reference_file(ramp, "gain")
    rn_path = get_reference_file(ramp, "readnoise")
    with datamodels.open(gain_path) as g, datamodels.open(rn_path) as r:
        gain, rn = np.array(g.data), np.array(r.data)
    expected = fit(
        ramp.data.copy(), ramp.groupdq.copy(), ramp.pixeldq.copy(), gain=gain, read_noise=rn
    )
    calls.clear()

    image = RampFitStep.call(ramp)
    assert isinstance(image, datamodels.ImageModel)
    assert calls and all(
        (c["use_jump"], c["threshold_intercept"], c["threshold_constant"]) == (True, 5.5, 1.0 / 3.0)
        for c in calls
    )
    assert image.meta.cal_step.ramp_fit == "COMPLETE"
    assert image.meta.cal_step.saturation == "COMPLETE"
    assert image.meta.product_type == "l2"
    assert image.meta.ref_file.gain == gain_path
    assert image.meta.ref_file.readnoise == rn_path
    assert image.data.shape == SCIENCE
    np.testing.assert_array_equal(image.data, expected.slope)
    np.testing.assert_array_equal(image.dq, expected.dq)
    np.testing.assert_array_equal(image.err, expected.err)
    np.testing.assert_array_equal(image.var_poisson, expected.var_poisson)
    np.testing.assert_array_equal(image.var_rnoise, expected.var_rnoise)
    np.testing.assert_array_equal(image.dumo, expected.dumo)
    np.testing.assert_array_equal(image.chisq, 0)
    np.testing.assert_allclose(image.data, sci(rate_field()), rtol=1e-5)
    assert image.dq[11, 11] == pixel.HOT
    np.testing.assert_array_equal(image.amp33, ramp.amp33)
    for name in BORDER_NAMES:
        np.testing.assert_array_equal(getattr(image, name), getattr(ramp, name), err_msg=name)

    # the image saves and reopens
    path = image.save(str(tmp_path / "exposure_rampfit.asdf"))
    with datamodels.open(path) as reopened:
        assert isinstance(reopened, datamodels.ImageModel)
        np.testing.assert_array_equal(reopened.data, image.data)
        np.testing.assert_array_equal(reopened.dq, image.dq)
        np.testing.assert_allclose(reopened.err, image.err, rtol=1e-3)
        np.testing.assert_array_equal(reopened.amp33, ramp.amp33)
        np.testing.assert_array_equal(reopened.border_ref_pix_top, ramp.border_ref_pix_top)
        assert reopened.meta.cal_step.ramp_fit == "COMPLETE"
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    with warnings.catch_warnings():
        # the file names the romancal-lite ASDF extension, unknown to roman_datamodels
        warnings.simplefilter("ignore", AsdfPackageVersionWarning)
        official = rdm.open(path)
    with official:
        official.validate()
        assert type(official).__name__ == "ImageModel"
        np.testing.assert_array_equal(official.data, image.data)
        assert official.meta.product_type == "l2"


def test_step_parameters_passed_through(builtin_refs, monkeypatch):
    calls = []
    original = romancore.fit_rate_images

    def spy(*args, **kwargs):
        calls.append((args[0].shape, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(romancore, "fit_rate_images", spy)
    ramp = make_ramp(rate=7.0)
    ramp.data[3:, 10, 20] += 500.0
    image = RampFitStep.call(
        ramp,
        use_ramp_jump_detection=False,
        threshold_intercept=9.5,
        threshold_constant=0.25,
        block_rows=7,
    )
    assert [shape for shape, _ in calls] == [(N_RES, 7, 248)] * 4 + [(N_RES, 4, 248)]
    for _, kwargs in calls:
        assert kwargs["use_jump"] is False
        assert kwargs["threshold_intercept"] == 9.5
        assert kwargs["threshold_constant"] == 0.25
    assert not np.any(ramp.groupdq & JUMP_G)
    assert not np.any(image.dq & pixel.JUMP_DET)
    assert image.data[6, 16] > 17.0


@pytest.mark.parametrize("reftype", ["gain", "readnoise"])
def test_step_not_applicable_reference_rejected(builtin_refs, reftype):
    with pytest.raises(ReferenceFileError, match=reftype.upper()):
        RampFitStep.call(make_ramp(), **{f"override_{reftype}": "N/A"})


@pytest.mark.parametrize("reftype", ["gain", "readnoise"])
def test_not_applicable_reference_rejected_before_the_ramp_is_touched(builtin_refs, reftype,
                                                                      run_cli):
    # ramp_fit cannot be skipped (it makes the image): a reference that does not apply
    # is one clear error, given before the ramp's arrays are looked at or copied
    ramp = make_ramp()
    ramp.groupdq.flags.writeable = False
    groupdq = ramp.groupdq
    with pytest.raises(ReferenceFileError, match=reftype.upper()):
        RampFitStep.call(ramp, **{f"override_{reftype}": "N/A"})
    assert ramp.groupdq is groupdq
    run = run_cli("ramp_fit", make_ramp(), f"--override-{reftype}", "N/A",
                  "--builtin-references")
    assert run.status == 1 and len(run.errors) == 1, run.err
    assert f"needs a {reftype.upper()} reference" in run.errors[0]
    assert "Traceback" not in run.err
    assert not run.out.exists() or not any(run.out.iterdir())  # nothing written


def test_release_input_gives_the_same_images_and_frees_the_cube():
    """The pipeline's memory saving: identical outputs, the input rows handed back."""
    from romancal_lite.steps._arrays import empty_releasable

    rng = np.random.default_rng(5)
    n, ny, nx = 6, 40, 1032
    pattern = [[1], [2, 3], [4, 5], [6, 7], [8, 9], [10]]
    level = 100.0 + np.cumsum(rng.uniform(0, 50, (n, ny, nx)), axis=0)
    level[3:, 7, 9] += 500.0  # a jump
    gain = np.full((ny, nx), 2.0, np.float32)
    rn = np.full((ny, nx), 5.0, np.float32)

    def arrays(releasable):
        data = empty_releasable((n, ny, nx), np.float32) if releasable else np.empty(
            (n, ny, nx), np.float32)
        data[...] = level
        gdq = empty_releasable((n, ny, nx), np.uint8) if releasable else np.zeros(
            (n, ny, nx), np.uint8)
        return data, gdq, np.zeros((ny, nx), np.uint32)

    data, gdq, pdq = arrays(False)
    kept = fit_exposure(data, gdq, pdq, gain, rn, pattern, 3.04, block_rows=8)
    assert gdq[:, 7, 9].any()  # jumps written back to groupdq
    data, gdq, pdq = arrays(True)
    freed = fit_exposure(data, gdq, pdq, gain, rn, pattern, 3.04, block_rows=8,
                         release_input=True)
    for name in kept._fields:
        np.testing.assert_array_equal(getattr(freed, name), getattr(kept, name))
    assert int(kept.dq[3, 5]) & pixel.JUMP_DET  # (7, 9) in the trimmed frame
    # the whole pages inside fitted rows went back (a row is not a whole page here)
    assert np.count_nonzero(data) < 0.2 * data.size
