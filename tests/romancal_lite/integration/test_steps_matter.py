"""Every step of ``roman_elp`` matters: skip one and the truth comparison fails.

One small exposure (264 x 512 read-out, 4 amplifiers, MA table 4: 9 resultants) is
simulated from the realistic references of ``tests/romancal_lite/realistic_refs.py``
(a cubic non-linearity of 4 % at 50 000 DN, a flat with +-5 % structure, a dark of
0.5-2 DN/s, per-pixel gain, read noise and saturation, a bad-pixel mask) with the
simulator's reference-pixel drifts and 1/f noise (``ref_drift_scale=1``), and
calibrated with the same files as overrides: the complete pipeline, then the pipeline
with each step skipped in turn, all on that one input.

``truth_check`` scores a calibrated image against the simulator's truth with a fixed
set of criteria (``CRITERIA``, the thresholds and why they are what they are are
given there); the complete pipeline passes all of them, every skipped step fails at
least the one(s) named in ``SKIPS``.  Steps that cannot be scored against the truth
are covered as far as they can be: ``dq_init`` and ``ramp_fit`` cannot be skipped
(the next step has no ramp / no image to work on, the run stops with an error), and
dq_init run with a MASK stripped of its bad pixels fails the bad-pixel criterion;
``assign_wcs`` and ``photom`` do not change the data (the simulator has no astrometric
or physical-flux truth), so they are checked against the pointing the simulator was
given and the PHOTOM reference.

The tests hold whichever linearity convention simulator and pipeline share (the
non-linearity on the level above the amplifier reference, or on the pixel's own
level), as long as they share it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from romancal_lite import datamodels, simulate
from romancal_lite.demo import score
from romancal_lite.pipeline import ExposurePipeline
from romancal_lite.references import builtin_cache, generate_cache
from romancal_lite.references._spec import BORDER
from romancore.dqflags import pixel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import realistic_refs  # noqa: E402

SHAPE = (264, 512)
DETECTOR = "WFI03"
ELEMENT = "F158"
NAME = "r0000101001001001001_0001_wfi03"
RA, DEC = 10.0, -30.0
#: Accumulated signal (DN) above which a pixel is "bright": the non-linearity there is
#: above 1 % (cubic LINEARITY, whatever the level it is applied to).
BRIGHT_DN = 15000.0
#: The amplifier width (columns) of the read-out.
CHANNEL = 128

#: name -> (test on the value, the bound as text for messages).  Each bound and why:
CRITERIA: dict[str, tuple[Any, str]] = {
    # sky pixels (faint half, unflagged): (data - truth) / err.  60 000 pixels, so the
    # statistical error of the median is 0.005: 0.1 is the bias allowed (as
    # test_pipeline_simulated), the dark alone (1 DN/s vs err ~0.1) is ~10.
    "sky_pull_median": (lambda v: abs(v) < 0.1, "|.| < 0.1"),
    # pulls of unit width: 1/f drift or a missing flat widen them
    "sky_pull_std": (lambda v: 0.9 < v < 1.15, "0.9 .. 1.15"),
    # the worst amplifier (~30 000 sky pixels each, error of the median 0.01):
    # amplifier offsets and drifts that cancel in the global median show here
    "amp_sky_pull_median_max": (lambda v: v < 0.15, "< 0.15"),
    # bright unsaturated pixels (>= BRIGHT_DN accumulated, no flag): median of
    # data / truth.  Each pixel is ~0.5 % precise, there are > 100, so the median is
    # known to ~0.1 %; 0.5 % allowed.  Without linearity it is off by 2-4 %.
    "bright_ratio_median": (lambda v: abs(v - 1.0) < 0.005, "|. - 1| < 0.005"),
    # their pulls: robust width (1.4826 MAD).  The reported err includes the flat
    # error (0.5 %), so the width is below 1 when all is right; a +-5 % flat left in
    # makes it ~4.
    "bright_pull_width": (lambda v: v < 1.5, "< 1.5"),
    # truly saturated pixels flagged SATURATED (the simulator levels off 2 % above the
    # threshold, so all must be caught, as in test_pipeline_simulated)
    "saturated_flagged": (lambda v: v == 1.0, "== 1"),
    # cosmic rays (as test_pipeline_simulated)
    "cr_found": (lambda v: v > 0.9, "> 0.9"),
    "jump_false": (lambda v: v < 1e-3, "< 1e-3"),
    # every MASK DO_NOT_USE pixel is DO_NOT_USE in the image
    "bad_pixels_flagged": (lambda v: v == 1.0, "== 1"),
    # the WCS exists, has the 0.11"/pixel scale and points at the simulated pointing
    "wcs_ok": (lambda v: v == 1.0, "== 1"),
    # meta.photometry holds the PHOTOM reference's conversion for the element
    "photometry_ok": (lambda v: v == 1.0, "== 1"),
}

#: Step skipped -> the criteria that must then fail (all others may pass).
SKIPS = {
    "saturation": ("saturated_flagged",),
    "refpix": ("sky_pull_median", "sky_pull_std"),
    "linearity": ("bright_ratio_median",),
    "dark_current": ("sky_pull_median",),
    "flatfield": ("bright_pull_width",),
    "assign_wcs": ("wcs_ok",),
    "photom": ("photometry_ok",),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The realistic references, the simulated exposure and its truth."""
    root = tmp_path_factory.mktemp("steps_matter")
    refs = realistic_refs.write_realistic_references(
        root / "refs", SHAPE, detector=DETECTOR, optical_element=ELEMENT
    )
    cache = generate_cache(root / "crds", full_shape=SHAPE)
    uncal = root / f"{NAME}_uncal.asdf"
    with builtin_cache(cache, hide_user_crds=True):
        simulate.write_exposure(
            uncal, shape=SHAPE, detector=DETECTOR, optical_element=ELEMENT,
            read_pattern="ma4", seed=7, cr_rate=1e-4, n_stars=120, ra=RA, dec=DEC,
            ref_drift_scale=1.0, references=realistic_refs.simulator_references(refs),
        )
    with datamodels.open(refs["mask"]) as mask:
        bad = (np.asarray(mask.dq) & pixel.DO_NOT_USE) != 0
    with datamodels.open(refs["photom"]) as photom:
        photmjsr = float(photom.phot_table[ELEMENT]["photmjsr"])
    return {"refs": refs, "cache": cache, "uncal": uncal, "truth": simulate.read_truth(uncal),
            "bad": bad[BORDER:-BORDER, BORDER:-BORDER], "photmjsr": photmjsr}


def calibrate(setup: dict[str, Any], skip: str | None = None, **params: Any) -> Any:
    """Run ``roman_elp`` with every reference overridden, optionally skipping a step."""
    steps = realistic_refs.pipeline_overrides(setup["refs"])
    if skip is not None:
        steps[skip]["skip"] = True
    for key, value in params.items():
        step, name = key.split("__")
        steps[step][name] = value
    with builtin_cache(setup["cache"], hide_user_crds=True):
        return ExposurePipeline.call(str(setup["uncal"]), steps=steps)


def _wcs_ok(image: Any) -> float:
    wcs = image.meta.get("wcs")
    if wcs is None:
        return 0.0
    ny, nx = image.data.shape
    x0, y0 = (nx - 1) / 2.0, (ny - 1) / 2.0
    ra, dec = (np.asarray(v, np.float64) for v in wcs([x0, x0 + 1.0, x0], [y0, y0, y0 + 1.0]))
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        return 0.0
    cos_dec = np.cos(np.deg2rad(dec[0]))
    step_x = np.hypot((ra[1] - ra[0]) * cos_dec, dec[1] - dec[0]) * 3600.0
    step_y = np.hypot((ra[2] - ra[0]) * cos_dec, dec[2] - dec[0]) * 3600.0
    # the detector lies within the 0.8 deg WFI field around the pointing
    near = np.hypot((ra[0] - RA) * cos_dec, dec[0] - DEC) < 0.5
    return float(near and abs(step_x / 0.11 - 1) < 0.02 and abs(step_y / 0.11 - 1) < 0.02)


def truth_check(image: Any, setup: dict[str, Any]) -> dict[str, float]:
    """Score ``image`` against the truth: one value per entry of ``CRITERIA``."""
    truth = setup["truth"]
    figures = score(image, truth)
    data = np.asarray(image.data, np.float64)
    err = np.asarray(image.err, np.float64)
    dq = np.asarray(image.dq)
    rate = np.asarray(truth["rate"], np.float64)
    hits = (np.asarray(truth["dq"]) & pixel.JUMP_DET).any(axis=0)[BORDER:-BORDER, BORDER:-BORDER]
    sat = np.asarray(truth["saturated_resultant"]) >= 0
    flagged = (dq & (pixel.DO_NOT_USE | pixel.SATURATED | pixel.JUMP_DET)) != 0
    clean = ~flagged & ~hits & ~sat & (err > 0) & np.isfinite(data)

    # per amplifier: every clean pixel without a star (score()'s sky is the faint half
    # of the image, which the sky gradient puts in one corner)
    sky = clean & (rate <= 2.0 * np.median(rate))
    pull = np.zeros_like(data)
    pull[clean] = (data[clean] - rate[clean]) / err[clean]
    channel = (np.arange(data.shape[1]) + BORDER) // CHANNEL
    amp = [abs(float(np.median(pull[:, channel == c][sky[:, channel == c]])))
           for c in np.unique(channel)]

    t_last = float(truth["parameters"]["read_pattern"][-1][-1]) * float(
        truth["parameters"]["frame_time"])
    bright = clean & (rate * t_last >= BRIGHT_DN)
    ratio = data[bright] / rate[bright]
    bright_pull = pull[bright]
    mad = np.median(np.abs(bright_pull - np.median(bright_pull)))

    conversion = (image.meta.get("photometry") or {}).get("conversion_megajanskys")
    return {
        "sky_pull_median": figures["sky_pull_median"],
        "sky_pull_std": figures["sky_pull_std"],
        "amp_sky_pull_median_max": max(amp),
        "bright_ratio_median": float(np.median(ratio)),
        "bright_pull_width": float(1.4826 * mad),
        "bright_pixels": int(bright.sum()),
        "saturated_flagged": figures["saturated_flagged"],
        "cr_found": figures["cr_found"],
        "jump_false": figures["jump_false"],
        "bad_pixels_flagged": float(((dq[setup["bad"]] & pixel.DO_NOT_USE) != 0).mean()),
        "wcs_ok": _wcs_ok(image),
        "photometry_ok": float(conversion is not None
                               and abs(conversion / setup["photmjsr"] - 1.0) < 1e-6),
    }


def failures(figures: dict[str, float]) -> dict[str, str]:
    """Return the failed criteria: name -> "value (bound)"."""
    return {name: f"{figures[name]:.4g} (want {text})"
            for name, (ok, text) in CRITERIA.items() if not ok(figures[name])}


@pytest.fixture(scope="module")
def full(setup: dict[str, Any]) -> dict[str, float]:
    return truth_check(calibrate(setup), setup)


def test_realistic_references_are_realistic(setup: dict[str, Any]) -> None:
    """The files are official (roman_datamodels reads and validates them) and strong."""
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    refs = setup["refs"]
    for reftype, path in refs.items():
        with rdm.open(path) as model:
            model.validate()
            assert model.meta.reftype == reftype.upper()
    arrays = {}
    for reftype in ("linearity", "inverselinearity", "flat", "dark"):
        with datamodels.open(refs[reftype]) as model:
            name = {"flat": "data", "dark": "dark_slope"}.get(reftype, "coeffs")
            arrays[reftype] = np.array(getattr(model, name), np.float64)
    lin, inv = arrays["linearity"], arrays["inverselinearity"]
    # several % of non-linearity at 50 000 DN, varying per pixel
    excess = realistic_refs.polyval(lin, 50000.0) / 50000.0 - 1.0
    assert 0.03 < np.median(excess) < 0.05
    assert np.std(excess) > 1e-3
    # the inverse inverts it over the whole A/D range
    assert realistic_refs.inverse_error(lin, inv, n=65) < realistic_refs.INVERSE_TOLERANCE_DN
    # +-5 % flat: large-scale structure and pixel-to-pixel scatter
    flat = arrays["flat"]
    assert flat.shape == (SHAPE[0] - 2 * BORDER, SHAPE[1] - 2 * BORDER)
    assert abs(flat.mean() - 1.0) < 1e-3
    blocks = flat[: 256, : 504].reshape(8, 32, 8, 63).mean(axis=(1, 3))
    assert blocks.max() - blocks.min() > 0.06
    assert 0.01 < np.std(flat - np.median(flat)) < 0.05
    # a dark of 0.5-2 DN/s with structure on the science pixels, none on the border
    dark = arrays["dark"]
    science = dark[BORDER:-BORDER, BORDER:-BORDER]
    assert 0.5 <= science.min() and science.max() <= 2.0 and np.std(science) > 0.1
    assert not dark[:BORDER].any()


def test_full_pipeline_passes(full: dict[str, float]) -> None:
    print(f"\nfull pipeline: {full}")
    assert full["bright_pixels"] > 100
    assert not failures(full), (failures(full), full)


@pytest.mark.parametrize("step", list(SKIPS))
def test_skipping_a_step_fails_the_truth(setup: dict[str, Any], full: dict[str, float],
                                         step: str) -> None:
    figures = truth_check(calibrate(setup, skip=step), setup)
    failed = failures(figures)
    print(f"\n{step} skipped: failed {failed}")
    missing = [name for name in SKIPS[step] if name not in failed]
    assert not missing, (f"{step} skipped but {missing} still pass", figures, full)


def test_jump_detection_off_fails_the_truth(setup: dict[str, Any]) -> None:
    figures = truth_check(calibrate(setup, ramp_fit__use_ramp_jump_detection=False), setup)
    print(f"\njump detection off: failed {failures(figures)}")
    assert "cr_found" in failures(figures), figures


def test_dq_init_without_the_bad_pixel_mask_fails_the_truth(setup: dict[str, Any],
                                                           tmp_path: Path) -> None:
    """dq_init cannot be skipped; a MASK without the bad pixels shows its flags matter."""
    with datamodels.open(setup["refs"]["mask"]) as mask:
        good = datamodels.MaskRefModel.create_minimal(
            {"meta": mask.meta, "dq": np.asarray(mask.dq) & np.uint32(pixel.REFERENCE_PIXEL)})
    path = good.save(tmp_path / "good_mask.asdf")
    figures = truth_check(calibrate(setup, dq_init__override_mask=str(path)), setup)
    print(f"\nmask without bad pixels: failed {failures(figures)}")
    assert "bad_pixels_flagged" in failures(figures), figures


@pytest.mark.parametrize("step", ["dq_init", "ramp_fit"])
def test_steps_that_cannot_be_skipped_stop_the_run(setup: dict[str, Any], step: str) -> None:
    """Without dq_init there is no ramp, without ramp_fit no image: never a silent no-op."""
    with pytest.raises(Exception):  # noqa: B017, PT011 - any error, as long as it stops
        calibrate(setup, skip=step)
