"""Truth tests: the simulator's dark decay and WFI18 transient, removed by the steps.

A noiseless simulated exposure carries the built-in DARKDECAYSIGNAL decay (and on
WFI18 the first-read transient); roman_elp's ramp steps then fit slopes equal to the
truth only when dark_decay (and wfi18_transient) run.
"""

import numpy as np
import pytest

from romancal_lite import simulate
from romancal_lite.pipeline import ExposurePipeline
from romancal_lite.references import builtin_cache, generate_cache

TALL = (1032, 128)  # the transient decays over ~1000 rows


@pytest.fixture(scope="module")
def tall_refs(tmp_path_factory):
    cache = generate_cache(tmp_path_factory.mktemp("tall_crds"), full_shape=TALL,
                           detectors=("WFI18",))
    with builtin_cache(cache, hide_user_crds=True):
        yield cache

NOISELESS = {"poisson": False, "read_noise": False, "cr_rate": 0.0, "n_stars": 0,
             "references": "builtin", "ref_drift_scale": 0.0, "seed": 7}


def slope_error(model, truth, **skips):
    pipe = ExposurePipeline()
    for name in ("assign_wcs", "photom", "flatfield", "source_catalog", "tweakreg"):
        getattr(pipe, name).skip = True
    for name, skip in skips.items():
        getattr(pipe, name).skip = skip
    image = pipe.run(model)
    return np.asarray(image.data, np.float64) - truth["rate"], image


def test_dark_decay_removed(builtin_refs):
    model, truth = simulate.simulate_exposure(shape=(40, 256), detector="WFI05",
                                              read_pattern="ma6", **NOISELESS)
    assert truth["decay_signals"]["dark_decay"]["amplitude"] > 1
    err, image = slope_error(model.copy(), truth)
    assert image.meta.cal_step.dark_decay == "COMPLETE"
    assert image.meta.cal_step.wfi18_transient == "N/A"
    # rounding to whole DN only
    assert abs(err.mean()) < 2e-3
    err_off, image = slope_error(model.copy(), truth, dark_decay=True)
    assert image.meta.cal_step.dark_decay == "SKIPPED"
    assert err_off.mean() < -5 * abs(err.mean()) and err_off.mean() < -2e-3


@pytest.mark.parametrize("skip", [False, True])
def test_wfi18_transient_removed(tall_refs, skip):
    model, truth = simulate.simulate_exposure(shape=TALL, detector="WFI18",
                                              read_pattern="ma6", **NOISELESS)
    assert truth["decay_signals"]["wfi18_transient"][0] > 0
    err, image = slope_error(model, truth, wfi18_transient=skip)
    first_rows = err[:200].mean()
    if skip:
        assert image.meta.cal_step.wfi18_transient == "SKIPPED"
        assert abs(first_rows) > 0.01, first_rows
    else:
        assert image.meta.cal_step.wfi18_transient == "COMPLETE"
        assert abs(first_rows) < 0.003, first_rows
