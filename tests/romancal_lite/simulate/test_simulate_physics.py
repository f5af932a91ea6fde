"""The simulated ramps against their analytic form, the pipeline kernels and the truth.

The detector response is in the official LINEARITY convention: ``D = L^-1(L(p) + S/g)``
on the pixel's own level ``p`` (pedestal included), electronic offsets added after.
The pipeline's refpix keeps that level and removes only the change of the offsets from
resultant to resultant (`refpix_removes`), so the linearity correction maps the level
back to ``L(p) + S/g``.
"""

from __future__ import annotations

import numpy as np
import pytest
from _sim_helpers import (
    SMALL,
    amp33_offsets,
    offsets,
    refs,
    simulate_exposure,
)
from scipy.stats import poisson

import romancore
from romancal_lite.simulate import READ_PATTERNS
from romancal_lite.simulate.ramps import _Response
from romancore.dqflags import group, pixel

FRAME = 3.16247
BRIGHT = (2.0e3, 5.0e5)  # e/s: most of these stars saturate
NOISELESS = {"poisson": False, "read_noise": False, "cr_rate": 0.0}


def quadratic_inverse(coeffs, y):
    """Independent inverse of c0 + c1 x + c2 x**2 = y (root near y)."""
    c0, c1, c2 = (coeffs[i].astype(np.float64) for i in range(3))
    return (-c1 + np.sqrt(c1 * c1 + 4 * c2 * (y - c0))) / (2 * c2)


def refpix_removes(truth):
    """What the reference-pixel correction removes: the offsets' change from their mean."""
    off = offsets(truth)
    return off - off.mean(axis=0)


def inl_raw(ref, level, b=4):
    """The raw read ``r`` with ``r + INL(r) = level`` (science columns), by iteration."""
    values, corrections = ref["inl"]
    x = np.asarray(values, dtype=np.float64)
    channel = (np.arange(b, b + level.shape[-1]) // 128)
    raw = level.copy()
    for _ in range(6):
        inl = np.empty_like(raw)
        for ch in np.unique(channel):
            cols = channel == ch
            inl[..., cols] = np.interp(raw[..., cols], x, corrections[ch])
        raw = level - inl
    return raw


def analytic_resultants(truth, ref, pattern, margin=0.02):
    """Noise-free resultants (before rounding) of every read-out pixel.

    ``L^-1(L(p) + min(S, S_full) / g)`` for every read, made raw for the integral
    non-linearity (`inl_raw`), averaged over the reads, plus the offsets.
    """
    b = 4
    ped = truth["pedestal"].astype(np.float64)
    lin = ref["linearity"].astype(np.float64)
    gain = ref["gain"]

    def forward(x):
        return lin[0] + lin[1] * x + lin[2] * x * x

    out = np.repeat(ped[None], len(pattern), axis=0)
    s = (slice(b, -b), slice(b, -b))
    q0 = forward(ped)[s]
    g = gain[s]
    detected = truth["rate"] * g * ref["flat"] + ref["dark"][s] * g
    full = (forward(ref["saturation"].astype(np.float64) * (1 + margin))[s] - q0) * g
    for i, reads in enumerate(pattern):
        levels = [
            inl_raw(ref, quadratic_inverse(lin[:, b:-b, b:-b],
                                           q0 + np.minimum(detected * r * FRAME, full) / g))
            for r in reads
        ]
        out[i][s] = np.mean(levels, axis=0)
    return out + offsets(truth)


@pytest.mark.parametrize("pattern", ["ma4", "ma109"])
def test_noise_free_resultants_equal_analytic_ramps(pattern):
    model, truth = simulate_exposure(shape=SMALL, read_pattern=pattern, n_stars=6,
                                     star_flux_range=BRIGHT, detector="WFI07", **NOISELESS)
    table = [list(r) for r in READ_PATTERNS[pattern].read_pattern]
    expected = analytic_resultants(truth, refs("WFI07"), table)
    diff = model.data.astype(np.float64) - np.clip(expected, 0, 65535)
    # rounding only (the float32 truth rate moves a few levels across a rounding edge)
    assert np.abs(diff).max() <= 0.51
    assert np.mean(model.data == np.rint(np.clip(expected, 0, 65535))) > 0.999
    assert (truth["saturated_resultant"] >= 0).any()  # the stars include saturated ones
    a33 = truth["amp33_pedestal"][None].astype(np.float64) + amp33_offsets(truth)
    assert np.abs(model.amp33 - a33).max() <= 0.5 + 1e-6


def pipeline_rate(model, detector="WFI01", subtract=None, use_jump=False):
    """(slope - dark) / flat as the pipeline kernels compute it; also the group DQ.

    Saturation is flagged on the raw data; ``subtract`` (the reference-pixel
    correction) is removed before the linearity correction, as in the pipeline.
    """
    ref = refs(detector)
    gdq = np.zeros(model.data.shape, np.uint8)
    pdq = np.zeros(model.data.shape[1:], np.uint32)
    pattern = [list(r) for r in model.meta.exposure.read_pattern]
    romancore.flag_saturation(model.data.astype(np.float32), gdq, pdq, ref["saturation"],
                              ref["saturation_dq"], pattern)
    data = model.data.astype(np.float64)
    if subtract is not None:
        data = data - subtract
    data = data.astype(np.float32)
    # the pipeline's default: read-level linearity with the integral non-linearity
    romancore.apply_read_level_linearity(
        data, gdq, pdq, ref["linearity"], ref["linearity_dq"], ref["inverselinearity"],
        pattern, inl_values=ref["inl"][0], inl_corrections=ref["inl"][1])
    fit = romancore.fit_ramps(data, gdq, ref["readnoise"].astype(np.float32), pattern,
                              model.meta.exposure.frame_time, use_jump=use_jump)
    s = (slice(4, -4), slice(4, -4))
    return (fit.slope[s] - ref["dark"][s]) / ref["flat"], gdq


@pytest.mark.parametrize("nonlinearity", ["linearity", "inverselinearity"])
def test_pipeline_kernels_recover_the_noise_free_rate(nonlinearity):
    model, truth = simulate_exposure(shape=SMALL, n_stars=8, star_flux_range=BRIGHT,
                                     nonlinearity=nonlinearity, **NOISELESS)
    rate, gdq = pipeline_rate(model, subtract=refpix_removes(truth))
    unsaturated = truth["saturated_resultant"] < 0
    # the only error left is the rounding of the resultants to integer DN
    assert np.abs(rate - truth["rate"])[unsaturated].max() < 0.01
    late = truth["saturated_resultant"] >= 3
    assert late.any()
    rel = np.abs(rate - truth["rate"])[late] / truth["rate"][late]
    assert rel.max() < 1e-3


def test_pipeline_saturation_flags_match_the_truth():
    model, truth = simulate_exposure(shape=SMALL, n_stars=8, star_flux_range=BRIGHT, **NOISELESS)
    _, gdq = pipeline_rate(model, subtract=refpix_removes(truth))
    flagged = (gdq[:, 4:-4, 4:-4] & group.SATURATED) != 0
    first = np.where(flagged.any(axis=0), flagged.argmax(axis=0), -1)
    truth_first = truth["saturated_resultant"]
    # the pipeline may flag one resultant earlier (resultant dilution), never later
    assert set(np.unique(first - truth_first)) <= {0, -1}
    assert np.mean(first == truth_first) > 0.99
    sat = truth_first >= 0
    n = model.data.shape[0]
    after = np.arange(n)[:, None, None] >= np.where(sat, truth_first, n)[None]
    ref = refs()
    assert (model.data[:, 4:-4, 4:-4][after] >= ref["saturation"][4:-4, 4:-4].max()).all()
    tdq = truth["dq"][:, 4:-4, 4:-4]
    assert np.array_equal((tdq & group.SATURATED) != 0, after)


def test_noisy_sky_slopes_match_the_truth():
    model, truth = simulate_exposure(shape=SMALL, read_pattern="ma6", n_stars=0, sky=2.0,
                                     cr_rate=0.0, seed=11)
    rate, _ = pipeline_rate(model)
    # (electronic offsets left in: their drift in time biases the slopes)
    biased = np.mean(rate - truth["rate"])
    rate, _ = pipeline_rate(model, subtract=refpix_removes(truth))
    err = rate - truth["rate"]
    sigma = err.std() / np.sqrt(err.size)
    assert abs(err.mean()) < 4 * sigma
    assert 0.03 < err.std() < 0.08  # mostly Poisson: sqrt(2 e/s * 294 s) / 294 s / 1.91 e/DN
    assert abs(biased - err.mean()) > 4 * sigma  # the injected drifts do matter


def test_cosmic_rays_mark_exactly_the_resultant_where_they_appear():
    kw = {"shape": SMALL, "n_stars": 0, "poisson": False, "read_noise": False, "seed": 5}
    clean, _ = simulate_exposure(cr_rate=0.0, **kw)
    hit, truth = simulate_exposure(cr_rate=5e-4, **kw)
    cr = truth["cosmic_rays"]
    assert len(cr["x"]) > 20
    diff = hit.data.astype(np.int64) - clean.data
    jump = (truth["dq"] & group.JUMP_DET) != 0
    changed = diff != 0
    first_change = np.where(changed.any(axis=0), changed.argmax(axis=0), -1)
    first_jump = np.where(jump.any(axis=0), jump.argmax(axis=0), -1)
    assert np.array_equal(first_change, first_jump)
    assert (diff >= 0).all()
    # catalog: read at or after the hit time, resultant holding that read
    pattern = truth["parameters"]["read_pattern"]
    for y, x, t, r, res in zip(cr["y"], cr["x"], cr["time"], cr["read"], cr["resultant"],
                               strict=True):
        assert (r - 1) * FRAME < t <= r * FRAME + 1e-9
        assert r in pattern[res]
        assert jump[res, y, x]
    assert not jump[:, :4].any() and not jump[:, :, :4].any()  # no hits on reference pixels


def test_cosmic_rays_in_skipped_reads_appear_in_the_next_resultant():
    _, truth = simulate_exposure(shape=SMALL, read_pattern="ma109", n_stars=0, cr_rate=2e-3,
                                 **{k: v for k, v in NOISELESS.items() if k != "cr_rate"})
    cr = truth["cosmic_rays"]
    skipped = {4, 8, 9, 14}
    t_read = np.floor(cr["time"] / FRAME - 1e-12).astype(int) + 1  # read during which it hit
    moved = np.isin(t_read, list(skipped))
    assert moved.any()
    pattern = truth["parameters"]["read_pattern"]
    for when, read, res in zip(t_read[moved], cr["read"][moved], cr["resultant"][moved],
                               strict=True):
        assert read == min(r for rs in pattern for r in rs if r >= when)
        assert read == pattern[res][0]


def test_saturate_all_saturates_every_science_pixel():
    model, truth = simulate_exposure(shape=SMALL, saturate_all=True)
    ref = refs()
    science = model.data[:, 4:-4, 4:-4]
    assert (science >= ref["saturation"][4:-4, 4:-4]).all()
    assert (truth["saturated_resultant"] == 0).all()
    gdq = np.zeros(model.data.shape, np.uint8)
    pdq = np.zeros(SMALL, np.uint32)
    romancore.flag_saturation(model.data.astype(np.float32), gdq, pdq, ref["saturation"],
                              ref["saturation_dq"], model.meta.exposure.read_pattern)
    assert ((gdq[:, 4:-4, 4:-4] & group.SATURATED) != 0).all()
    # the reference pixels are not affected
    assert (model.data[:, :4] < 20000).all() and (model.amp33 < 20000).all()


def test_reference_pixels_carry_the_injected_drifts():
    model, truth = simulate_exposure(shape=SMALL, n_stars=0, seed=3)
    off = offsets(truth)
    ped = truth["pedestal"][None].astype(np.float64)
    border = np.zeros(SMALL, bool)
    border[:4] = border[-4:] = True
    border[:, :4] = border[:, -4:] = True
    resid = (model.data - ped - off)[:, border]
    n_reads = np.array([len(r) for r in truth["parameters"]["read_pattern"]])
    rn = refs()["readnoise"][0, 0]
    assert abs(resid.mean()) < 0.2
    assert resid.std() < 1.3 * rn  # read noise (and rounding) only
    # the drifts are much larger than that noise: per channel, parity and resultant
    drifts = truth["ref_drifts"]
    assert drifts["channel_offsets"].shape == (len(n_reads), 3, 2)
    assert drifts["row_drift"].shape == (len(n_reads), SMALL[0])
    spread = drifts["channel_offsets"][:, :, 1] - drifts["channel_offsets"][:, :, 0]
    assert np.abs(spread).max() > 1.0  # odd and even columns differ
    assert np.ptp(drifts["channel_offsets"], axis=0).max() > 2.0  # offsets change in time
    assert drifts["row_drift"].std() > 0.2
    resid33 = model.amp33 - truth["amp33_pedestal"][None] - amp33_offsets(truth)
    assert abs(resid33.mean()) < 0.2 and resid33.std() < 1.3 * rn
    # the row drift is common to the left border columns and amp33: a correction can use it
    left = (model.data[:, :, :4] - ped[:, :, :4] - off[:, :, :4] + truth["ref_drifts"][
        "row_drift"][:, :, None]).mean(axis=2)
    a33 = (model.amp33 - truth["amp33_pedestal"][None] - amp33_offsets(truth) + truth[
        "ref_drifts"]["row_drift"][:, :, None]).mean(axis=2)
    # expected correlation: 1.5**2 / sqrt((1.5**2 + 5.05**2 / 4) (1.5**2 + 5.05**2 / 128))
    # = 0.49 (drift rms 1.5 DN, read noise 5.05 DN); its scatter over seeds is ~0.05
    assert np.corrcoef(left.ravel(), a33.ravel())[0, 1] > 0.35


def test_no_drifts_leaves_pedestal_only():
    model, truth = simulate_exposure(shape=SMALL, n_stars=0, ref_drift_scale=0.0, **NOISELESS)
    assert not truth["ref_drifts"]["channel_offsets"].any()
    assert not truth["ref_drifts"]["row_drift"].any()
    assert np.array_equal(model.data[:, :4], np.rint(truth["pedestal"][None, :4]).repeat(
        model.data.shape[0], axis=0))


def test_inverse_response_is_exact_for_the_linearity_polynomial():
    ref = refs()
    lin = ref["linearity"][:, 4:8, 4:8].astype(np.float64)
    inv = ref["inverselinearity"][:, 4:8, 4:8].astype(np.float64)
    y = np.linspace(5000.0, 62000.0, 16).reshape(4, 4)
    exact = _Response("linearity", lin, inv).inverse(y)
    forward = lin[0] + lin[1] * exact + lin[2] * exact**2
    assert np.abs(forward - y).max() < 1e-8
    # the INVERSELINEARITY polynomial (a truncated series) is off by up to ~0.05 DN
    approx = _Response("inverselinearity", lin, inv).inverse(y)
    off = np.abs(lin[0] + lin[1] * approx + lin[2] * approx**2 - y)
    assert 1e-3 < off.max() < 0.2
    # a cubic polynomial goes through the Newton iterations
    cubic = lin.copy()
    cubic[3] = 2e-13
    x = _Response("linearity", cubic, inv).inverse(y)
    assert np.abs(cubic[0] + cubic[1] * x + cubic[2] * x**2 + cubic[3] * x**3 - y).max() < 1e-7
    # the pipeline kernel (float32) maps the simulated levels back
    data = exact[None].astype(np.float32)
    romancore.apply_linearity(data, np.zeros(data.shape, np.uint8), np.zeros((4, 4), np.uint32),
                              ref["linearity"][:, 4:8, 4:8], ref["linearity_dq"][4:8, 4:8])
    assert np.abs(data[0] - y).max() < 0.02  # float32 rounding at 6e4 DN


def test_pixels_without_linearity_correction_stay_linear(tmp_path):
    from romancal_lite.references import build_reference, write_reference

    node = build_reference("linearity", "WFI01", SMALL, "2020-01-01T00:00:00")
    node["coeffs"][2, 10, 20] = np.nan
    node["dq"][11, 21] = pixel.NO_LIN_CORR
    path = tmp_path / "lin.asdf"
    write_reference(path, node)
    model, truth = simulate_exposure(shape=SMALL, n_stars=0, references={"linearity": path},
                                     **NOISELESS)
    assert truth["references"]["linearity"] == str(path)
    ref = refs()
    raw = model.data.astype(np.float64) - offsets(truth)
    for y, x in ((10, 20), (11, 21)):
        rate = truth["rate"][y - 4, x - 4] * ref["gain"][y, x] * ref["flat"][y - 4, x - 4]
        rate += ref["dark"][y, x] * ref["gain"][y, x]
        slope = (raw[-1, y, x] - raw[0, y, x]) / ((44 - 1) * FRAME)
        assert slope == pytest.approx(rate / ref["gain"][y, x], abs=0.01)


@pytest.mark.parametrize("mean", [0.02, 0.7, 3.3, 9.9, 10.1, 25.0, 3000.0])
def test_poisson_sampler_follows_the_poisson_distribution(mean):
    """The compiled sampler (inversion up to a mean of 10, PTRS above) against the pmf."""
    from romancore.simramps import poisson_stream

    draws = np.concatenate(
        [poisson_stream(np.full(20000, mean), 7, 1, row) for row in range(10)]
    ).astype(int)
    assert np.all(draws == np.rint(draws)) and draws.min() >= 0
    lo = int(max(mean - 8 * np.sqrt(mean) - 2, 0))
    counts = np.bincount(draws - lo)
    k = np.arange(counts.size) + lo
    expected = poisson.pmf(k, mean) * draws.size
    use = expected > 20
    chi2 = np.sum((counts[use] - expected[use]) ** 2 / expected[use])
    assert chi2 / use.sum() < 2.0
    assert draws.mean() == pytest.approx(mean, abs=5 * np.sqrt(mean / draws.size) + 1e-9)
    assert draws.var() == pytest.approx(mean, rel=0.05)
    # each row is its own stream: the same row gives the same draws, another row others
    again = poisson_stream(np.full(20000, mean), 7, 1, 0)
    assert np.array_equal(again, draws[:20000])
    if mean > 0.5:
        assert not np.array_equal(poisson_stream(np.full(20000, mean), 7, 1, 1), again)


def test_normal_stream_is_standard_normal():
    from scipy import stats

    from romancore.simramps import normal_stream

    x = normal_stream(200000, 3, 1, 5)
    assert abs(x.mean()) < 5 / np.sqrt(x.size)
    assert x.std() == pytest.approx(1.0, rel=0.01)
    assert stats.kstest(x, "norm").pvalue > 1e-3


def test_threads_do_not_change_the_exposure(monkeypatch):
    """Blocks run on several threads give exactly the single-thread exposure and truth."""
    from romancal_lite import simulate
    from romancal_lite.simulate.ramps import default_threads

    kw = {"shape": (72, 256), "seed": 12, "cr_rate": 2e-3, "n_stars": 30,
          "references": "builtin"}
    monkeypatch.setenv("ROMANCAL_LITE_SIM_THREADS", "1")
    assert default_threads() == 1
    one, t1 = simulate.simulate_exposure(**kw)
    monkeypatch.setenv("ROMANCAL_LITE_SIM_THREADS", "3")
    assert default_threads() == 3
    three, t3 = simulate.simulate_exposure(**kw)
    assert np.array_equal(one.data, three.data) and np.array_equal(one.amp33, three.amp33)
    for key in ("rate", "dq", "saturated_resultant"):
        assert np.array_equal(t1[key], t3[key]), key
    assert len(t1["cosmic_rays"]["x"]) > 10
    for key, values in t1["cosmic_rays"].items():
        assert np.array_equal(values, t3["cosmic_rays"][key]), key


@pytest.mark.parametrize("poisson", [True, False])
def test_resultant_difference_variance_is_poisson_plus_read_noise(poisson):
    """Var(r_{i+1} - r_i) of single-read resultants = R dt / g^2 + 2 rn^2 (+ rounding).

    Linear response and no cosmic rays, so in DN the difference of two consecutive reads
    is (Poisson(R dt) / g) plus two independent read noises; the electronic offsets
    (known from the truth) are removed.  Without Poisson draws only the read noise
    remains: the test tells the two apart (the Poisson part is ~45 % of the variance).
    """
    pattern = [[k] for k in range(1, 9)]
    model, truth = simulate_exposure(
        shape=(72, 256), read_pattern=pattern, n_stars=0, sky=50.0, sky_gradient=0.0,
        cr_rate=0.0, nonlinearity="none", poisson=poisson, seed=21,
    )
    ref = refs(shape=(72, 256))
    data = model.data.astype(np.float64) - offsets(truth, (72, 256))
    diff = np.diff(data, axis=0)[:, 4:-4, 4:-4]
    gain = ref["gain"][4:-4, 4:-4]
    rn = ref["readnoise"][4:-4, 4:-4]
    rate_e = truth["rate"] * gain * ref["flat"] + ref["dark"][4:-4, 4:-4] * gain  # e/s
    mean = rate_e * FRAME / gain
    poisson_var = rate_e * FRAME / gain**2 if poisson else 0.0
    var = poisson_var + 2.0 * rn**2 + 2.0 / 12.0  # rounding of each resultant
    z = (diff - mean) / np.sqrt(var)
    assert abs(z.mean()) < 5.0 / np.sqrt(z.size)
    assert z.var() == pytest.approx(1.0, abs=0.03)
    # the Poisson part alone: measured variance minus the read noise
    measured = np.mean((diff - mean) ** 2) - np.mean(2.0 * rn**2 + 2.0 / 12.0)
    expected = np.mean(poisson_var)
    assert measured == pytest.approx(expected, abs=0.06 * np.mean(2.0 * rn**2) + 0.05 * expected)
