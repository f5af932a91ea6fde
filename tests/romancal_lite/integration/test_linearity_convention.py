"""The official linearity convention, with a strongly non-linear reference.

The official LINEARITY coefficients are defined on a pixel's own raw level (pedestal
included) minus only the drifts and noise the reference pixels measure: romancal
1.1's refpix removes each pixel's intercept over the resultants, corrects and adds it
back.  romancal-lite's refpix keeps the level the same way (it subtracts only the
change of its reference-pixel estimates from resultant to resultant) and the
simulator applies the non-linearity in that convention, ``D = L^-1(L(p) + S/g)`` on
the pixel's level ``p``, the electronic offsets added after.

With the realistic references of ``tests/romancal_lite/realistic_refs.py`` (a cubic
LINEARITY, +4 % at 50 000 DN, its fitted INVERSELINEARITY, per-pixel gain, saturation,
a structured flat and a large dark) on a 16 x 4096 read-out (romancal's refpix needs
the full 4096-column width) with the simulator's reference-pixel drifts and 1/f noise:

* ``roman_elp`` recovers the simulator's truth on bright unsaturated pixels without
  bias and without a trend with the level (removing the level instead, as refpix did
  before, makes them ~0.9 % low, more at higher levels);
* romancal 1.1's own functions (``do_dqinit``, ``flag_saturation``, refpix
  ``run_steps`` with the REFPIX file, stcal's read-level ``linearity_correction`` with
  INVERSELINEARITY and the read pattern, exactly as its linearity step calls it, and
  ``ols_cas22``), run in this process, give the same slopes;
* on single-read resultants romancal's read-level linearity and our per-resultant
  polynomial are the same function; on a multi-read MA table they differ by a Jensen
  term, measured here on noise-free ramps (``docs/romancal-comparison.md``).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import romancore
from romancal_lite import datamodels, simulate
from romancal_lite.pipeline import ExposurePipeline
from romancal_lite.references import builtin_cache, generate_cache
from romancal_lite.references._spec import BORDER
from romancal_lite.steps.refpix import correction
from romancore.dqflags import pixel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import realistic_refs  # noqa: E402

SHAPE = (16, 4096)
DETECTOR = "WFI02"
ELEMENT = "F158"
NAME = "r0000101001001001001_0001_wfi02"
FRAME_TIME = 3.16247
#: 11 single-read resultants over 46 reads (uneven spacing, like an MA table).
SINGLE_READS = [[1], [2], [3], [5], [8], [12], [17], [23], [30], [38], [46]]
PATTERNS = {"single_reads": SINGLE_READS, "ma4": "ma4"}
#: Stars bright enough for many pixels to accumulate 15 000-55 000 DN unsaturated.
SCENE = {"seed": 3, "n_stars": 300, "star_flux_range": (300.0, 6000.0)}
#: Linear signal accumulated by the last read (DN) above which a pixel is "bright":
#: the non-linearity there is 1.2-4 %, and its slope 2.5-8 %.
BRIGHT_DN = 15000.0
#: Level bins (DN accumulated) of the trend test.
BINS = ((15000.0, 25000.0), (25000.0, 35000.0), (35000.0, 60000.0))
FLAGS = np.uint32(pixel.DO_NOT_USE | pixel.SATURATED | pixel.JUMP_DET)

pytestmark = pytest.mark.filterwarnings(
    "ignore::asdf.exceptions.AsdfPackageVersionWarning"
)


@pytest.fixture(scope="module")
def refs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("linearity_convention")
    paths = realistic_refs.write_realistic_references(
        root / "refs", SHAPE, detector=DETECTOR, optical_element=ELEMENT
    )
    cache = generate_cache(root / "crds", full_shape=SHAPE)
    arrays = {}
    for reftype, key in (("linearity", "coeffs"), ("inverselinearity", "coeffs"),
                         ("flat", "data"), ("dark", "dark_slope"), ("gain", "data")):
        with datamodels.open(paths[reftype]) as ref:
            arrays[reftype] = np.array(ref[key], dtype=np.float64)
    return {"paths": paths, "cache": cache, "root": root, "arrays": arrays}


@pytest.fixture(scope="module", params=list(PATTERNS))
def exposure(request: pytest.FixtureRequest, refs: dict[str, Any]) -> dict[str, Any]:
    """A simulated exposure (drifts and 1/f noise on) and its truth, per read pattern."""
    path = refs["root"] / request.param / f"{NAME}_uncal.asdf"
    path.parent.mkdir()
    with builtin_cache(refs["cache"], hide_user_crds=True):
        simulate.write_exposure(
            path, shape=SHAPE, detector=DETECTOR, optical_element=ELEMENT,
            read_pattern=PATTERNS[request.param], ref_drift_scale=1.0,
            references=realistic_refs.simulator_references(refs["paths"]), **SCENE,
        )
    truth = simulate.read_truth(path)
    t_last = truth["parameters"]["read_pattern"][-1][-1] * FRAME_TIME
    level = truth["rate"] * refs["arrays"]["flat"] * t_last  # linear DN (rate: per gain)
    return {"pattern": request.param, "path": path, "truth": truth, "level": level}


def run_ours(refs: dict[str, Any], exposure: dict[str, Any], out: Path,
             refpix: dict[str, Any] | None = None) -> dict[str, Any]:
    """``roman_elp`` with every reference overridden (``refpix``: more refpix
    parameters); the ``_cal`` arrays."""
    steps = realistic_refs.pipeline_overrides(refs["paths"])
    steps["refpix"].update(refpix or {})
    with builtin_cache(refs["cache"], hide_user_crds=True):
        image = ExposurePipeline.call(str(exposure["path"]), output_dir=str(out), steps=steps)
    return {"data": np.array(image.data, np.float64), "err": np.array(image.err, np.float64),
            "dq": np.array(image.dq)}


@pytest.fixture(scope="module")
def ours(refs: dict[str, Any], exposure: dict[str, Any]) -> dict[str, Any]:
    return run_ours(refs, exposure, exposure["path"].parent / "ours")


@pytest.fixture(scope="module")
def romancal(refs: dict[str, Any], exposure: dict[str, Any]) -> dict[str, Any]:
    """romancal 1.1's step functions dq_init .. ramp fit, then dark and flat."""
    pytest.importorskip("roman_datamodels")
    pytest.importorskip("romancal")
    return romancal_chain(exposure["path"], refs["paths"], refs["arrays"])


def romancal_chain(uncal: Path, paths: dict[str, str], arrays: dict[str, np.ndarray]
                   ) -> dict[str, Any]:
    """Calibrate ``uncal`` with romancal 1.1's functions, as its steps call them.

    dq_init (``do_dqinit``), saturation (``flag_saturation``), refpix (``run_steps``
    with the REFPIX file), linearity (stcal ``linearity_correction`` with LINEARITY,
    INVERSELINEARITY and the read pattern, no integral non-linearity, then the step's
    +-1e6 clip), ramp fit (``ols_cas22`` with jump detection); then the dark slope is
    subtracted and the result divided by the flat (both pipelines do exactly that,
    ``docs/romancal-comparison.md`` item 9).  Reference pixels of the border trimmed.
    """
    import roman_datamodels.datamodels as rdm
    from roman_datamodels.dqflags import group as rgroup
    from roman_datamodels.dqflags import pixel as rpixel
    from romancal.dq_init.dq_initialization import do_dqinit
    from romancal.ramp_fitting.ramp_fit_step import ols_cas22
    from romancal.refpix.refpix import run_steps
    from romancal.saturation.saturation import flag_saturation
    from stcal.linearity.linearity import linearity_correction

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecations, romancal's amp33 interpolation
        with rdm.open(uncal) as raw, rdm.open(paths["mask"]) as mask:
            model = do_dqinit(raw, mask=mask)
        with rdm.open(paths["saturation"]) as sat:
            model = flag_saturation(model, sat)
        with rdm.open(paths["refpix"]) as refpix:
            model = run_steps(model, refpix)
        with rdm.open(paths["linearity"]) as lin, rdm.open(paths["inverselinearity"]) as ilin:
            data, pdq, _ = linearity_correction(
                model.data[np.newaxis], model.groupdq[np.newaxis], model.pixeldq,
                np.array(lin.coeffs), np.array(lin.dq), rpixel,
                ilin_coeffs=np.array(ilin.coeffs),
                read_pattern=[list(r) for r in model.meta.exposure.read_pattern],
            )
        model.data = data[0]
        model.pixeldq = pdq
        wild = np.abs(model.data) > 1e6
        model.data[wild] = np.clip(model.data[wild], -1e6, 1e6)
        model.groupdq[wild] |= rgroup.DO_NOT_USE
        with rdm.open(paths["readnoise"]) as rn, rdm.open(paths["gain"]) as gain:
            image = ols_cas22(model, rn, gain, use_jump=True)
    science = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    slope = np.array(image.data, np.float64)
    flat = arrays["flat"]
    return {"data": (slope - arrays["dark"][science]) / flat,
            "err": np.array(image.err, np.float64) / flat,
            "dq": np.array(image.dq)}


def bright(exposure: dict[str, Any], *products: dict[str, Any]) -> np.ndarray:
    """Bright pixels unsaturated in the truth and unflagged, finite in ``products``."""
    truth = exposure["truth"]
    use = (exposure["level"] > BRIGHT_DN) & (truth["saturated_resultant"] < 0)
    for product in products:
        use &= ((product["dq"] & FLAGS) == 0) & np.isfinite(product["data"])
    return use


def ratio_stats(product: dict[str, Any], exposure: dict[str, Any]) -> dict[str, Any]:
    """Mean of data / truth on the bright pixels, overall and per level bin (with sem)."""
    use = bright(exposure, product)
    rate = exposure["truth"]["rate"]
    ratio = product["data"][use] / rate[use]
    level = exposure["level"][use]
    pull = (product["data"][use] - rate[use]) / product["err"][use]

    def mean_sem(x: np.ndarray) -> tuple[float, float]:
        return float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size))

    bins = {}
    for lo, hi in BINS:
        inside = (level >= lo) & (level < hi)
        bins[(lo, hi)] = (*mean_sem(ratio[inside]), int(inside.sum()))
    trend = np.polyfit((level - level.mean()) / 1e4, ratio, 1, cov=True)
    return {"n": int(use.sum()), "ratio": mean_sem(ratio), "bins": bins,
            "pull_mean": float(pull.mean()),
            "trend_per_10k": (float(trend[0][0]), float(np.sqrt(trend[1][0, 0])))}


def assert_unbiased(stats: dict[str, Any]) -> None:
    assert stats["n"] > 250
    mean, sem = stats["ratio"]
    assert abs(mean - 1.0) < max(4 * sem, 2e-4) and abs(mean - 1.0) < 1e-3, stats
    for (lo, hi), (m, s, n) in stats["bins"].items():
        assert n > 20, (lo, hi, n)
        assert abs(m - 1.0) < 4 * s + 2e-4, ((lo, hi), m, s)
    slope, sigma = stats["trend_per_10k"]
    assert abs(slope) < 4 * sigma + 1e-4, stats["trend_per_10k"]
    assert abs(stats["pull_mean"]) < 0.15, stats


# ----------------------------------------------------------------------------- tests


def test_the_references_are_strongly_non_linear(refs: dict[str, Any]) -> None:
    lin, inv = refs["arrays"]["linearity"], refs["arrays"]["inverselinearity"]
    excess = realistic_refs.polyval(lin, 50000.0) / 50000.0 - 1.0
    assert 0.03 < excess.min() and excess.max() < 0.06  # several % at 50 000 DN
    # the slope of L differs by 2 c2 p ~ 0.6 % between 0 and a 6000 DN pedestal: the
    # level the polynomial acts on matters at that order
    assert inv.shape[0] > 2 and realistic_refs.inverse_error(lin, inv, n=33) < 0.05


def test_truth_recovered_without_bias(ours: dict[str, Any], exposure: dict[str, Any]) -> None:
    stats = ratio_stats(ours, exposure)
    print(f"\n{exposure['pattern']}: ours / truth {stats}")
    assert_unbiased(stats)


def test_removing_the_level_would_bias_the_slopes(
    refs: dict[str, Any], exposure: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # refpix subtracting its whole estimate (the convention before issue 8) on the same
    # input: linearity then acts ~6000 DN lower than the LINEARITY file is defined on
    # (shown with the border algorithm, whose centring is patched out)
    if exposure["pattern"] != "single_reads":
        pytest.skip("one pattern is enough")

    def whole_estimate(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
        return np.where(np.broadcast_to(ok, values.shape), values, 0.0)

    monkeypatch.setattr(correction, "_deviation_from_mean", whole_estimate)
    stats = ratio_stats(run_ours(refs, exposure, exposure["path"].parent / "old",
                                 refpix={"algorithm": "border"}), exposure)
    print(f"\nlevel removed: ours / truth {stats}")
    mean, _ = stats["ratio"]
    assert -0.012 < mean - 1.0 < -0.006  # ~ -(2 c2 + 3 c3 (2 D - p)) p / L'(D)
    low, high = stats["bins"][BINS[0]][0], stats["bins"][BINS[-1]][0]
    assert high < low  # and worse at higher levels


def test_romancal_recovers_the_same_truth(romancal: dict[str, Any],
                                          exposure: dict[str, Any]) -> None:
    # the simulator's convention is romancal's: its slopes are unbiased too
    stats = ratio_stats(romancal, exposure)
    print(f"\n{exposure['pattern']}: romancal / truth {stats}")
    assert_unbiased(stats)


def test_same_slopes_as_romancal(ours: dict[str, Any], romancal: dict[str, Any],
                                 exposure: dict[str, Any]) -> None:
    use = bright(exposure, ours, romancal)
    assert use.sum() > 250
    rel = ours["data"][use] / romancal["data"][use] - 1.0
    over_err = np.abs(ours["data"] - romancal["data"])[use] / romancal["err"][use]
    print(f"\n{exposure['pattern']}: ours / romancal - 1 on {use.sum()} bright pixels: "
          f"median {np.median(rel):.2e}, median |.| {np.median(np.abs(rel)):.2e}, "
          f"max |.| {np.abs(rel).max():.2e}, max |diff| / err {over_err.max():.3f}")
    # the two reference-pixel algorithms differ (docs/romancal-comparison.md item 1):
    # what is left is their noise, ~1e-4 of a bright rate, far below its error
    assert abs(np.median(rel)) < 1.5e-4
    assert np.median(np.abs(rel)) < 2e-4
    assert over_err.max() < 0.3


@pytest.mark.parametrize(("pattern", "single"), [("ma4", False), (SINGLE_READS, True)])
def test_classic_and_read_level_linearity(refs: dict[str, Any], pattern: Any,
                                          single: bool) -> None:
    """Our per-resultant polynomial against stcal's read-level correction (romancal).

    Noise-free ramps (no Poisson, read noise, drifts or cosmic rays), the same
    saturation flags and the same ramp fit after each linearity: on single-read
    resultants the two are the same function; on MA table 4 the polynomial of a
    resultant's mean read is not the mean of its reads' polynomials (Jensen), which
    lowers a slope by ~1e-5 for unsaturated pixels and by up to ~1e-3 for pixels
    bright enough to saturate during the ramp, whose reads spread widely within a
    resultant; the read-level correction recovers the truth there as well.
    """
    linearity = pytest.importorskip("stcal.linearity.linearity")
    paths = refs["paths"]
    with builtin_cache(refs["cache"], hide_user_crds=True):
        model, truth = simulate.simulate_exposure(
            shape=SHAPE, detector=DETECTOR, optical_element=ELEMENT, read_pattern=pattern,
            poisson=False, read_noise=False, cr_rate=0.0, ref_drift_scale=0.0,
            decay_signals=False,  # the kernels below do not include dark_decay
            references=realistic_refs.simulator_references(paths), **SCENE)
    reads = [list(r) for r in model.meta.exposure.read_pattern]
    arrays = {}
    for reftype, keys in (("saturation", ("data", "dq")), ("linearity", ("coeffs", "dq")),
                          ("inverselinearity", ("coeffs",)), ("gain", ("data",)),
                          ("readnoise", ("data",))):
        with datamodels.open(paths[reftype]) as ref:
            for key in keys:
                arrays[f"{reftype}.{key}"] = np.array(ref[key])
    raw = model.data.astype(np.float32)
    gdq = np.zeros(raw.shape, np.uint8)
    pdq = np.zeros(SHAPE, np.uint32)
    romancore.flag_saturation(raw, gdq, pdq, arrays["saturation.data"],
                              arrays["saturation.dq"], reads)
    classic = raw.copy()
    romancore.apply_linearity(classic, gdq, pdq.copy(), arrays["linearity.coeffs"],
                              arrays["linearity.dq"])
    read_level, _, _ = linearity.linearity_correction(
        raw[np.newaxis].copy(), gdq[np.newaxis].copy(), pdq.copy(),
        arrays["linearity.coeffs"].copy(), arrays["linearity.dq"], pixel,
        ilin_coeffs=arrays["inverselinearity.coeffs"].copy(), read_pattern=reads)
    gain = arrays["gain.data"]
    science = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    rate = truth["rate"]
    flat, dark = refs["arrays"]["flat"], refs["arrays"]["dark"][science]

    def calibrated(ramp: np.ndarray) -> np.ndarray:
        fit = romancore.fit_ramps(np.ascontiguousarray(ramp * gain, np.float32), gdq,
                                  (arrays["readnoise.data"] * gain).astype(np.float32),
                                  reads, FRAME_TIME, use_jump=False)
        return (fit.slope[science] / gain[science] - dark) / flat

    ours, theirs = calibrated(classic), calibrated(read_level[0])
    level = rate * flat * reads[-1][-1] * FRAME_TIME
    sat = truth["saturated_resultant"]
    unsaturated = (sat < 0) & (level > 1000.0)
    late = sat >= 3
    assert unsaturated.sum() > 1000 and late.sum() > 50
    if single:
        # the same linearized resultants up to float32 rounding (stcal goes through the
        # inverse and back: a few ulp of a 6000-60000 DN value), so the same slopes
        unsat = (gdq & pixel.SATURATED) == 0
        np.testing.assert_allclose(classic[unsat], read_level[0][unsat], rtol=5e-7)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=5e-5)
        return
    for name, use in (("unsaturated", unsaturated), ("saturating from resultant 3", late)):
        c, r = ours[use] / rate[use] - 1.0, theirs[use] / rate[use] - 1.0
        print(f"\n{name}: classic {np.median(c):+.2e} (max |.| {np.abs(c).max():.1e}), "
              f"read-level {np.median(r):+.2e} (max |.| {np.abs(r).max():.1e})")
    # unsaturated: both within the rounding of the resultants to integer DN
    top = unsaturated & (level > 30000.0)
    assert abs(np.median(theirs[top] / rate[top] - 1.0)) < 3e-6
    assert -3e-5 < np.median(ours[top] / rate[top] - 1.0) < 0.0
    # saturating during the ramp: the classic polynomial is measurably low
    assert abs(np.median(theirs[late] / rate[late] - 1.0)) < 1e-5
    assert -1e-3 < np.median(ours[late] / rate[late] - 1.0) < -1e-4
