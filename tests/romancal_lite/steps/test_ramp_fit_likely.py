"""``ramp_fit`` with ``algorithm='likely'``: the likelihood fit of Brandt (2024)."""

import numpy as np  # noqa: I001
import pytest

import romancore
from romancal_lite.steps.ramp_fit import RampFitStep
from romancal_lite.steps.ramp_fit.fitting import fit_exposure_likely
from romancore.dqflags import group, pixel

from test_ramp_fit_step import (
    FRAME_TIME,
    READ_PATTERN,
    SHAPE,
    SMALL_SHAPE,
    make_ramp,
    noisy_ramp,
    noisy_rate,
    ramp_of,
    sci,
)

likely_fit = pytest.importorskip("stcal.ramp_fitting.likely_fit")


def fit_likely(data, groupdq=None, gain=1.7, read_noise=5.0, **kwargs):
    kwargs.setdefault("n_threads", 1)
    groupdq = np.zeros(SHAPE, np.uint8) if groupdq is None else groupdq
    gain = np.broadcast_to(np.asarray(gain, np.float32), SMALL_SHAPE)
    read_noise = np.broadcast_to(np.asarray(read_noise, np.float32), SMALL_SHAPE)
    return fit_exposure_likely(data, groupdq, np.zeros(SMALL_SHAPE, np.uint32), gain,
                               read_noise, READ_PATTERN, FRAME_TIME, **kwargs)


def romancal_likely(data, groupdq, gain, read_noise):
    """stcal's likelihood fit on DN ramps, called exactly as romancal 1.1 calls it."""
    from types import SimpleNamespace

    ny, nx = data.shape[1:]
    ramp = SimpleNamespace(
        data=data[None].copy(), groupdq=groupdq[None].copy(),
        pixeldq=np.zeros((ny, nx), np.uint32), rejection_threshold=4.5,
        flags_jump_det=int(pixel.JUMP_DET), flags_saturated=int(pixel.SATURATED),
        flags_do_not_use=int(pixel.DO_NOT_USE),
        read_pattern=[list(np.array(r) * FRAME_TIME) for r in READ_PATTERN],
        zeroframe=None, average_dark_current=np.zeros((ny, nx)), nframes=1, groupgap=0,
        frame_time=FRAME_TIME)
    image, _, _ = likely_fit.likely_ramp_fit(ramp, read_noise * np.sqrt(2), gain)
    return image, ramp.groupdq[0]


def test_matches_romancal_likely_in_dn():
    rng = np.random.default_rng(5)
    data = noisy_ramp(3)
    hits = rng.random(SMALL_SHAPE) < 0.05
    data[2:, hits] += rng.uniform(100, 2000, hits.sum()).astype(np.float32)
    gdq = np.zeros(SHAPE, np.uint8)
    gdq[4, rng.random(SMALL_SHAPE) < 0.05] = group.SATURATED
    gain = rng.uniform(1.5, 2.5, SMALL_SHAPE).astype(np.float32)
    rn = rng.uniform(4.0, 8.0, SMALL_SHAPE).astype(np.float32)
    ours_gdq = gdq.copy()
    ours = fit_likely(data, ours_gdq, gain=gain, read_noise=rn)
    theirs, their_gdq = romancal_likely(data, gdq, gain, rn)
    # the reference border is not fitted; on the science pixels the jump flags are
    # identical but for the documented ambiguous class (stcal leaves one difference of
    # three, chosen by rounding noise: see tests/romancore/test_ramp_likely_stcal.py)
    border = np.ones(SMALL_SHAPE, bool)
    border[4:-4, 4:-4] = False
    assert not (ours_gdq[:, border] & group.JUMP_DET).any()
    ok = (gdq[1:] == 0) & (gdq[:-1] == 0)
    their_left = ((sci(their_gdq)[1:] == 0) & (sci(their_gdq)[:-1] == 0)).sum(axis=0)
    same = ~((sci(ok).sum(axis=0) <= 3) & (their_left <= 1))
    assert same.mean() > 0.995
    np.testing.assert_array_equal(sci(ours_gdq)[:, same], sci(their_gdq)[:, same])
    assert (their_gdq & group.JUMP_DET).any(axis=0).sum() > 0.03 * hits.size
    # we fit data * gain rounded to float32 (as the Casertano path), stcal fits DN:
    # resultants up to ~3e3 DN x 2.5 e/DN carry a rounding of <= 2.3e-4 e each; the
    # weights sum to |w| <= 2 / 25 s here, so the slopes may differ by ~2e-5 DN/s absolute
    # (the Poisson variance is proportional to that rate: the same relative error)
    slope = np.abs(sci(theirs["slope"])[same])
    vp = sci(theirs["var_poisson"])[same]
    np.testing.assert_array_less(np.abs(ours["var_poisson"][same] - vp),
                                 1e-4 * vp + vp * 3e-5 / slope + 1e-30)
    atol = {"slope": 3e-5, "var_rnoise": 0, "err": 0}
    for name, key in (("slope", "slope"), ("var_rnoise", "var_rnoise")):
        np.testing.assert_allclose(ours[name][same], sci(theirs[key])[same], rtol=1e-4,
                                   atol=atol[name], err_msg=name)
    # chi^2 moves by ~2 sqrt(chi^2) x (rounding / sigma) ~ 2 x 3 x 2.3e-4 e / 6 e ~ 2e-4
    np.testing.assert_allclose(ours["chisq"][same], sci(theirs["chisq"])[same], rtol=1e-4,
                               atol=3e-4)
    # DQ: the same JUMP_DET and SATURATED pixels
    for flag in (pixel.JUMP_DET, pixel.SATURATED):
        np.testing.assert_array_equal(ours["dq"][same] & flag,
                                      sci(theirs["dq"])[same] & flag)


def test_cosmic_ray_flagged_and_rate_recovered():
    data = noisy_ramp(4)
    gdq = np.zeros(SHAPE, np.uint8)
    out = fit_likely(data, gdq, gain=1.0)
    assert gdq[3, 10, 20] & group.JUMP_DET
    assert out["dq"][6, 16] & pixel.JUMP_DET
    assert out["slope"][6, 16] == pytest.approx(noisy_rate(4)[10, 20], abs=3.0)
    off_gdq = np.zeros(SHAPE, np.uint8)
    off = fit_likely(data, off_gdq, gain=1.0, use_jump=False)
    assert not off_gdq.any()
    assert off["slope"][6, 16] > noisy_rate(4)[10, 20] + 20


def test_block_rows_and_release_invariance():
    data = noisy_ramp(6)
    a = fit_likely(data, np.zeros(SHAPE, np.uint8), block_rows=256)
    b = fit_likely(data, np.zeros(SHAPE, np.uint8), block_rows=5)
    c = fit_likely(data.copy(), np.zeros(SHAPE, np.uint8), block_rows=7, release_input=True)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        np.testing.assert_array_equal(a[name], c[name], err_msg=name)


def test_step_likely(builtin_refs, monkeypatch):
    calls = {"likely": [], "cas22": 0}
    original = romancore.fit_ramps_likely
    original_cas22 = romancore.fit_rate_images

    def spy(*args, **kwargs):
        calls["likely"].append(kwargs)
        return original(*args, **kwargs)

    def spy_cas22(*args, **kwargs):
        calls["cas22"] += 1
        return original_cas22(*args, **kwargs)

    monkeypatch.setattr(romancore, "fit_ramps_likely", spy)
    monkeypatch.setattr(romancore, "fit_rate_images", spy_cas22)
    ramp = make_ramp(rate=7.0)
    ramp.data[3:, 10, 20] += 500.0
    image = RampFitStep.call(ramp, algorithm="likely", rejection_threshold=5.0)
    assert calls["cas22"] == 0 and calls["likely"]
    assert all(c["rejection_threshold"] == 5.0 and c["use_jump"] for c in calls["likely"])
    assert image.meta.cal_step.ramp_fit == "COMPLETE"
    assert image.dq[6, 16] & pixel.JUMP_DET
    np.testing.assert_allclose(image.data, 7.0, rtol=1e-4)
    assert np.isfinite(image.chisq).all() and image.chisq.shape == image.data.shape

    # the default stays the Casertano fit
    calls["likely"].clear()
    RampFitStep.call(make_ramp(rate=7.0))
    assert calls["cas22"] and not calls["likely"]

    image = RampFitStep.call(make_ramp(rate=7.0), algorithm="likely",
                             use_ramp_jump_detection=False)
    assert calls["likely"][-1]["use_jump"] is False


def test_step_rejects_unknown_algorithm(builtin_refs):
    with pytest.raises(Exception, match="algorithm"):
        RampFitStep.call(make_ramp(), algorithm="ols")


def test_cli_algorithm_likely(builtin_refs, run_cli):
    from romancal_lite import datamodels

    ramp = make_ramp(rate=7.0)
    ramp.data[3:, 10, 20] += 500.0
    run = run_cli("ramp_fit", ramp, "--algorithm", "likely")
    assert run.status == 0, run.err
    (path,) = run.out.glob("*_rampfit.asdf")
    with datamodels.open(str(path)) as image:
        assert image.dq[6, 16] & pixel.JUMP_DET
        np.testing.assert_allclose(image.data, 7.0, rtol=1e-4)
    bad = run_cli("ramp_fit", make_ramp(), "--algorithm", "likelihood")
    assert bad.status == 1 and len(bad.errors) == 1 and "algorithm" in bad.errors[0]


def test_step_jump_test_step(builtin_refs, monkeypatch):
    calls = []
    original = romancore.fit_ramps_likely

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(romancore, "fit_ramps_likely", spy)
    ramp = make_ramp(rate=7.0)
    ramp.data[3:, 10, 20] += 500.0
    image = RampFitStep.call(ramp, algorithm="likely", jump_test="step")
    expected = romancore.step_threshold_for(READ_PATTERN, FRAME_TIME)
    assert calls and all(c["jump_test"] == "step" for c in calls)
    assert all(c["step_threshold"] == expected for c in calls)
    assert image.dq[6, 16] & pixel.JUMP_DET
    assert np.count_nonzero(image.dq & pixel.JUMP_DET) == 1
    np.testing.assert_allclose(image.data, 7.0, rtol=1e-4)
    calls.clear()
    RampFitStep.call(make_ramp(rate=7.0), algorithm="likely", jump_test="step",
                     step_threshold=7.5)
    assert calls[-1]["step_threshold"] == 7.5
    calls.clear()
    RampFitStep.call(make_ramp(rate=7.0), algorithm="likely")
    assert calls[-1]["jump_test"] == "omission"


def test_cli_jump_test_step(builtin_refs, run_cli):
    ramp = make_ramp(rate=7.0)
    ramp.data[3:, 10, 20] += 500.0
    run = run_cli("ramp_fit", ramp, "--algorithm", "likely", "--jump_test", "step")
    assert run.status == 0, run.err
    bad = run_cli("ramp_fit", make_ramp(), "--algorithm", "likely", "--jump_test", "chi2")
    assert bad.status == 1 and len(bad.errors) == 1 and "jump_test" in bad.errors[0]


def test_cli_step_threshold_must_be_positive(builtin_refs, run_cli):
    bad = run_cli("ramp_fit", make_ramp(), "--algorithm", "likely", "--jump_test", "step",
                  "--step_threshold", "0")
    assert bad.status == 1 and len(bad.errors) == 1 and "step_threshold" in bad.errors[0]


def _crowded_ramp(seed=8):
    """Low-rate DN ramps with cosmic rays whose neighbours get 3-15 % of the charge,
    many of them on rows that straddle blocks of 5 and 7 rows."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.5, 2.0, SMALL_SHAPE)
    data = ramp_of(rate, bias=1000.0) + rng.normal(0.0, 5.0, SHAPE).astype(np.float32)
    for k in range(400):
        y, x = 5 + (k % 30), 5 + (k * 37) % 246
        first = 1 + k % (SHAPE[0] - 1)
        q = rng.uniform(300.0, 1500.0)
        frac = rng.uniform(0.03, 0.15, (3, 3))
        frac[1, 1] = 1.0
        data[first:, y - 1:y + 2, x - 1:x + 2] += (q * frac).astype(np.float32)
    return data


def test_neighbor_pass_block_rows_and_release_invariance():
    data = _crowded_ramp()
    kw = {"gain": 1.0, "jump_test": "step", "neighbor_pass": True}
    off_gdq = np.zeros(SHAPE, np.uint8)
    off = fit_likely(data, off_gdq, gain=1.0, jump_test="step")
    a_gdq = np.zeros(SHAPE, np.uint8)
    a = fit_likely(data, a_gdq, block_rows=256, **kw)
    b_gdq = np.zeros(SHAPE, np.uint8)
    b = fit_likely(data, b_gdq, block_rows=5, **kw)
    c = fit_likely(data.copy(), np.zeros(SHAPE, np.uint8), block_rows=7,
                   release_input=True, **kw)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        np.testing.assert_array_equal(a[name], c[name], err_msg=name)
    np.testing.assert_array_equal(a_gdq, b_gdq)
    added = (a["dq"] & pixel.JUMP_DET) & ~(off["dq"] & pixel.JUMP_DET)
    rows = np.nonzero(added.any(axis=1))[0] + 4   # full-frame rows
    assert added.any()
    # some of the pass's flags sit on the first or last row of a 5-row block
    assert np.isin((rows - 4) % 5, (0, 4)).any()


def test_step_neighbor_pass(builtin_refs, monkeypatch):
    calls = []
    original = romancore.fit_ramps_likely

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(romancore, "fit_ramps_likely", spy)
    RampFitStep.call(make_ramp(rate=7.0), algorithm="likely", jump_test="step",
                     neighbor_pass=True)
    expected = romancore.neighbor_threshold_for(READ_PATTERN, FRAME_TIME)
    assert calls and all(c["neighbor_pass"] and c["neighbor_threshold"] == expected
                         for c in calls)
    calls.clear()
    RampFitStep.call(make_ramp(rate=7.0), algorithm="likely", neighbor_pass=True,
                     neighbor_threshold=4.0)
    assert calls[-1]["neighbor_threshold"] == 4.0 and calls[-1]["jump_test"] == "omission"
    calls.clear()
    RampFitStep.call(make_ramp(rate=7.0), algorithm="likely")
    assert not calls[-1]["neighbor_pass"]


def test_cli_neighbor_pass(builtin_refs, run_cli):
    ramp = make_ramp(rate=7.0)
    ramp.data[3:, 10, 20] += 500.0
    run = run_cli("ramp_fit", ramp, "--algorithm", "likely", "--jump_test", "step",
                  "--neighbor_pass", "true")
    assert run.status == 0, run.err
    bad = run_cli("ramp_fit", make_ramp(), "--algorithm", "likely", "--neighbor_pass",
                  "true", "--neighbor_threshold", "0")
    assert bad.status == 1 and len(bad.errors) == 1 and "neighbor_threshold" in bad.errors[0]
