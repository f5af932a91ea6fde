"""``roman_elp`` end to end on the built-in simulator's data, scored against its truth.

A small detector (full read-out ``SHAPE``, 4 amplifiers) with sky, stars (some
saturating), cosmic rays, non-linearity, read noise and reference-pixel drifts; the
references come from a built-in cache generated at that shape, exactly as the demo
and production select them.
"""

import tracemalloc

import numpy as np
import pytest

from romancal_lite import cli, datamodels, simulate
from romancal_lite.demo import score
from romancal_lite.pipeline import ExposurePipeline
from romancal_lite.references import builtin_cache, generate_cache
from romancore.dqflags import pixel

SHAPE = (264, 512)
NAME = "r0000101001001001001_0001_wfi03"
LATER_STEPS = ("refpix", "linearity", "ramp_fit", "dark", "assign_wcs", "photom", "flat_field")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return generate_cache(tmp_path_factory.mktemp("sim_crds"), full_shape=SHAPE)


@pytest.fixture(autouse=True)
def builtin(cache):
    with builtin_cache(cache, hide_user_crds=True):
        yield cache


def _simulate(directory, **kwargs):
    options = {
        "shape": SHAPE,
        "detector": "WFI03",
        "read_pattern": "ma4",
        "seed": 7,
        "cr_rate": 1e-4,
        "n_stars": 60,
    }
    options.update(kwargs)
    path = directory / f"{NAME}_uncal.asdf"
    simulate.write_exposure(path, **options)
    return path


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, cache):
    tmp = tmp_path_factory.mktemp("sim_run")
    with builtin_cache(cache, hide_user_crds=True):
        uncal = _simulate(tmp)
        result = ExposurePipeline.call(str(uncal), output_dir=str(tmp), save_results=True)
    return tmp / f"{NAME}_cal.asdf", simulate.read_truth(uncal), result


def test_recovers_the_truth(calibrated):
    cal, truth, _ = calibrated
    with datamodels.open(cal) as image:
        assert image.data.shape == (SHAPE[0] - 8, SHAPE[1] - 8)
        figures = score(image, truth)
    # sky pixels unbiased within their error bars, and the error bars right
    assert abs(figures["sky_pull_median"]) < 0.1
    assert 0.9 < figures["sky_pull_std"] < 1.15
    assert figures["cr_found"] > 0.9
    assert figures["jump_false"] < 1e-3
    assert figures["saturated_flagged"] == 1.0


def test_bright_star_rates(calibrated):
    cal, truth, _ = calibrated
    with datamodels.open(cal) as image:
        data, err, dq = image.data, image.err, image.dq
    rate = truth["rate"]
    usable = (dq & (pixel.DO_NOT_USE | pixel.SATURATED | pixel.JUMP_DET)) == 0
    bright = usable & (rate > 50 * np.median(rate))
    assert bright.sum() > 20
    pull = (data[bright] - rate[bright]) / err[bright]
    assert abs(np.median(pull)) < 0.5


def test_dq_as_documented(calibrated):
    cal, truth, _ = calibrated
    with datamodels.open(cal) as image:
        dq = np.asarray(image.dq)
        data = np.asarray(image.data)
        steps = image.meta.cal_step
        assert all(steps[k] == "COMPLETE" for k in ("dq_init", "saturation", *LATER_STEPS))
        assert image.meta.ref_file.flat.endswith(".asdf")
    # the border is trimmed: no reference pixel is left in the image
    assert not np.any(dq & pixel.REFERENCE_PIXEL)
    # a pixel saturated from its first resultant has no usable data
    first = truth["saturated_resultant"] == 0
    assert first.any()
    assert np.all(dq[first] & pixel.DO_NOT_USE)
    assert np.all(np.isnan(data[first]))
    # pixels saturating later keep the SATURATED flag and, with at least two
    # unsaturated resultants left (the one before the first saturated resultant may be
    # flagged by the dilution test), a rate
    sat_at = truth["saturated_resultant"]
    assert np.all(dq[sat_at > 0] & pixel.SATURATED)
    hits = (truth["dq"] & pixel.JUMP_DET).any(axis=0)[4:-4, 4:-4]
    later = (sat_at >= 3) & ~hits & ((dq & pixel.JUMP_DET) == 0)
    assert later.sum() > 10
    assert np.all(np.isfinite(data[later]))
    # everything else has a finite rate
    assert np.all(np.isfinite(data[(dq & pixel.DO_NOT_USE) == 0]))


def test_fully_saturated_exposure_gives_zeroed_image(tmp_path):
    uncal = _simulate(tmp_path, saturate_all=True)
    image = ExposurePipeline.call(str(uncal), output_dir=str(tmp_path), save_results=True)
    with datamodels.open(tmp_path / f"{NAME}_cal.asdf") as saved:
        for model in (image, saved):
            assert not np.any(model.data)
            assert not np.any(np.asarray(model.err, np.float32))
            assert not np.any(np.asarray(model.var_poisson, np.float32))
            assert np.all(model.dq & pixel.SATURATED)
            assert model.meta.cal_step.saturation == "COMPLETE"
            for key in LATER_STEPS:
                assert model.meta.cal_step[key] == "SKIPPED", key


@pytest.mark.parametrize(
    ("exposure_type", "element"), [("WFI_SPECTRAL", "GRISM"), ("WFI_IM_DARK", "DARK")]
)
def test_other_exposure_types_stop_after_photom(tmp_path, exposure_type, element):
    uncal = _simulate(tmp_path, exposure_type=exposure_type, optical_element=element,
                      n_stars=0)
    image = ExposurePipeline.call(str(uncal))
    steps = image.meta.cal_step
    assert steps.photom in ("COMPLETE", "SKIPPED")
    assert steps.ramp_fit == "COMPLETE"
    assert steps.flat_field == "SKIPPED"
    assert image.meta.photometry.conversion_megajanskys is None


def test_runner_saves_step_outputs_and_skips(tmp_path, capsys):
    uncal = _simulate(tmp_path, n_stars=5)
    status = cli.main([
        "run", "roman_elp", str(uncal), "--output-dir", str(tmp_path / "out"),
        "--steps.ramp_fit.save_results", "true", "--steps.refpix.skip", "true",
        "--steps.ramp_fit.use_ramp_jump_detection", "false",
    ])
    assert status == 0, capsys.readouterr().err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [f"{NAME}_{s}" for s in (
        "cal.asdf", "cat.parquet", "rampfit.asdf", "segm.asdf", "wcs.asdf")]
    with datamodels.open(tmp_path / "out" / f"{NAME}_cal.asdf") as image:
        assert image.meta.cal_step.refpix == "SKIPPED"
        assert not np.any(image.dq & pixel.JUMP_DET)
    with datamodels.open(tmp_path / "out" / f"{NAME}_rampfit.asdf") as fit:
        assert fit.meta.cal_step.ramp_fit == "COMPLETE"
        assert fit.meta.cal_step.flat_field == "INCOMPLETE"


def test_dq_init_cannot_be_skipped_on_a_raw_exposure(tmp_path, capsys):
    uncal = _simulate(tmp_path, n_stars=5)
    before = uncal.read_bytes()
    status = cli.main(["run", "roman_elp", str(uncal), "--output-dir", str(tmp_path / "out"),
                       "--steps.dq_init.skip", "true"])
    err = capsys.readouterr().err
    assert status == 1
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("romancal_lite: error:")]
    assert len(errors) == 1 and "dq_init cannot be skipped" in errors[0]
    assert not any((tmp_path / "out").glob("*"))
    assert uncal.read_bytes() == before


def test_no_step_holds_two_float32_cubes(tmp_path):
    """Peak traced memory of a whole run stays below 2.5 float32 cubes.

    Held at once at the worst moment (dq_init): the uint16 raw cube (1/2 cube), the
    float32 ramp (1), the uint8 group DQ (1/4), amp33 (1/8 here: 128 of 512 columns)
    and the border copies (1/20): 1.93 cubes; a second float32 copy of the cube
    anywhere would take the peak near 3. ``ramp_fit`` streams row blocks, which at
    this small size must be set small to stay a small part of the frame, as the
    default 256 rows are of a 4096-row detector.
    """
    uncal = _simulate(tmp_path, read_pattern="ma6", n_stars=20)
    with datamodels.open(uncal) as raw:
        cube = raw.data.size * 4
    steps = {"ramp_fit": {"block_rows": 8}}
    ExposurePipeline.call(str(uncal), steps=steps)  # warm up imports and references
    tracemalloc.start()
    try:
        ExposurePipeline.call(str(uncal), steps=steps)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2.5 * cube, f"peak {peak / cube:.2f} float32 cubes"
