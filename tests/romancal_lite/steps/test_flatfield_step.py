"""Tests of the flatfield step: flat division and variance propagation."""

import numpy as np
import pytest
from astropy.time import Time

from romancal_lite import datamodels
from romancal_lite.errors import ReferenceFileError
from romancal_lite.references import build_reference, get_reference_file, write_reference
from romancal_lite.steps.flatfield import FlatFieldStep, apply_flat_field
from romancore.dqflags import pixel

SHAPE = (32, 248)
NOT_APPLIED = np.uint32(pixel.NO_FLAT_FIELD | pixel.DO_NOT_USE)
BAD = {(1, 2): np.nan, (5, 6): 0.0, (7, 8): "flag"}


def make_image(detector="WFI01", element="F158", seed=3):
    rng = np.random.default_rng(seed)
    model = datamodels.ImageModel.create_fake_data(shape=SHAPE)
    meta = model.meta
    meta.instrument.detector = detector
    meta.instrument.optical_element = element
    meta.exposure.type = "WFI_IMAGE"
    meta.exposure.start_time = Time("2026-05-01T00:00:00", format="isot", scale="utc")
    model.data = rng.normal(5.0, 2.0, SHAPE).astype(np.float32)
    model.dq = np.zeros(SHAPE, np.uint32)
    model.dq[0, 0] = pixel.JUMP_DET
    model.var_poisson = rng.uniform(0.01, 0.05, SHAPE).astype(np.float32)
    model.var_rnoise = rng.uniform(0.01, 0.02, SHAPE).astype(np.float32)
    model.err = np.sqrt(model.var_poisson + model.var_rnoise)
    model.dumo = rng.normal(0.0, 0.1, SHAPE).astype(np.float32)
    return model


def write_flat(path, detector="WFI01", element="F158", full_shape=(40, 256), bad=True):
    node = build_reference("flat", detector, full_shape, "2020-01-01T00:00:00", element)
    rng = np.random.default_rng(7)
    node["err"] = rng.uniform(0.001, 0.02, node["err"].shape).astype(np.float32)
    node["dq"][3, 3] = pixel.UNRELIABLE_FLAT
    if bad:
        for where, value in BAD.items():
            if value == "flag":
                node["dq"][where] = pixel.NO_FLAT_FIELD
            else:
                node["data"][where] = value
    write_reference(path, node)
    return str(path)


def expected(model, flat, flat_dq, flat_err):
    """The seeds/000:1695-1711 formulas in float64."""
    f = flat.astype(np.float64)
    bad = np.isnan(f) | (f == 0) | ((flat_dq & pixel.NO_FLAT_FIELD) != 0)
    f[bad] = 1.0
    data = model.data / f
    vp = model.var_poisson / f**2
    vr = model.var_rnoise / f**2
    vf = data**2 / f**2 * flat_err.astype(np.float64) ** 2
    dq = model.dq | flat_dq
    dq[bad] |= NOT_APPLIED
    return data, vp, vr, vf, np.sqrt(vp + vr + vf), model.dumo / f, dq


def test_builtin_flat(builtin_refs):
    model = make_image()
    path = get_reference_file(model, "flat")
    with datamodels.open(path) as ref:
        want = expected(model, ref.data, ref.dq, ref.err)
    result = FlatFieldStep.call(model)
    assert result is model
    got = (
        result.data,
        result.var_poisson,
        result.var_rnoise,
        result.var_flat,
        result.err,
        result.dumo,
    )
    for g, w in zip(got, want[:-1], strict=True):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=2e-6, atol=0)
    np.testing.assert_array_equal(result.dq, want[-1])
    assert result.meta.cal_step.flat_field == "COMPLETE"
    assert result.meta.ref_file.flat == path


def test_flat_not_applied_pixels(builtin_refs, tmp_path):
    flat = write_flat(tmp_path / "flat.asdf")
    model = make_image()
    before = model.copy()
    FlatFieldStep.call(model, override_flat=flat)
    with datamodels.open(flat) as ref:
        want = expected(before, ref.data, ref.dq, ref.err)
        flat_err = ref.err
    for where in BAD:
        assert model.data[where] == before.data[where]
        assert model.var_poisson[where] == before.var_poisson[where]
        assert model.dumo[where] == before.dumo[where]
        assert model.var_flat[where] == pytest.approx(
            before.data[where] ** 2 * flat_err[where] ** 2
        )
        assert model.dq[where] == NOT_APPLIED
    assert model.dq[3, 3] == pixel.UNRELIABLE_FLAT
    assert model.dq[0, 0] == pixel.JUMP_DET
    np.testing.assert_array_equal(model.dq, want[-1])
    assert np.isfinite(model.data).all() and np.isfinite(model.err).all()


@pytest.mark.parametrize("include_var_flat", [True, False])
def test_matches_romancal(builtin_refs, tmp_path, include_var_flat):
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    official = pytest.importorskip("romancal.flatfield.flat_field")
    flat = write_flat(tmp_path / "flat.asdf")
    ours = make_image()
    theirs = rdm.ImageModel.create_fake_data(shape=SHAPE)
    for name in ("data", "dq", "var_poisson", "var_rnoise", "err", "dumo"):
        theirs[name] = getattr(ours, name).copy()
    theirs.meta["cal_step"] = {}
    with rdm.open(flat) as ref:
        official.do_flat_field(theirs, ref, include_var_flat=include_var_flat)
    FlatFieldStep.call(ours, override_flat=flat, include_var_flat=include_var_flat)
    for name in ("data", "var_poisson", "var_rnoise", "dumo"):
        np.testing.assert_array_equal(getattr(ours, name), theirs[name], err_msg=name)
    if include_var_flat:
        np.testing.assert_array_equal(ours.var_flat, theirs.var_flat)
        # romancal: sqrt((err / flat)**2 + var_flat); here sqrt(var_poisson + var_rnoise
        # + var_flat) (seeds/000:1709), equal up to rounding as err**2 == the variances
        np.testing.assert_allclose(ours.err, theirs.err, rtol=1e-6)
    else:
        assert "var_flat" not in ours
        np.testing.assert_array_equal(ours.err, theirs.err)
    # romancal flags a flat that is not applied NO_FLAT_FIELD only; DO_NOT_USE is added here
    bad = (ours.dq & pixel.NO_FLAT_FIELD) != 0
    assert bad.sum() == len(BAD)
    np.testing.assert_array_equal(ours.dq, theirs.dq | np.where(bad, pixel.DO_NOT_USE, 0))


def test_float16_arrays_computed_in_float32(builtin_refs, tmp_path):
    model = make_image()
    for name in ("err", "var_poisson", "var_rnoise"):
        setattr(model, name, getattr(model, name).astype(np.float16))
    FlatFieldStep.call(model)
    for name in ("data", "err", "var_poisson", "var_rnoise", "var_flat"):
        assert getattr(model, name).dtype == np.float32, name
    saved = model.save(tmp_path / "flat_cal.asdf")
    with datamodels.open(saved) as reopened:
        assert reopened.var_flat.dtype == np.float16
        np.testing.assert_allclose(reopened.var_flat, model.var_flat, rtol=1e-3, atol=1e-7)


def test_function_blocks_and_optional_arrays():
    rng = np.random.default_rng(0)
    shape = (7, 5)
    flat = rng.uniform(0.9, 1.1, shape).astype(np.float32)
    flat[2, 2] = 0.0
    flat_dq = np.zeros(shape, np.uint32)
    flat_err = np.full(shape, 0.01, np.float32)
    data = rng.normal(10, 1, shape).astype(np.float32)
    vp = np.full(shape, 0.5, np.float32)
    results = []
    for block_rows in (1, 3, 512):
        d, dq, v, vf, e = (
            data.copy(),
            np.zeros(shape, np.uint32),
            vp.copy(),
            np.empty(shape, np.float32),
            np.empty(shape, np.float32),
        )
        n = apply_flat_field(
            d, dq, flat, flat_dq, flat_err, var_poisson=v, var_flat=vf, err=e, block_rows=block_rows
        )
        assert n == 1
        np.testing.assert_array_equal(e, np.sqrt(v + vf))  # no var_rnoise given
        results.append((d, dq, v, vf, e))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
    assert results[0][1][2, 2] == NOT_APPLIED
    assert flat[2, 2] == 0.0  # the flat itself is not modified


def test_function_errors():
    z = np.zeros((2, 2), np.float32)
    dq = np.zeros((2, 2), np.uint32)
    with pytest.raises(ValueError, match="flat has shape"):
        apply_flat_field(z, dq, np.ones((2, 3)), dq, z)
    with pytest.raises(ValueError, match="2-D"):
        apply_flat_field(np.zeros(4), dq, z, dq, z)
    with pytest.raises(ValueError, match="var_poisson is needed"):
        apply_flat_field(z, dq, z, dq, z, var_flat=z.copy(), err=z.copy())
    with pytest.raises(ValueError, match="block_rows"):
        apply_flat_field(z, dq, z, dq, z, block_rows=0)


def test_not_applicable_skips(builtin_refs):
    model = make_image()
    before = model.data.copy()
    result = FlatFieldStep.call(model, override_flat="N/A")
    np.testing.assert_array_equal(result.data, before)
    assert "var_flat" not in result
    assert result.meta.cal_step.flat_field == "SKIPPED"


def test_not_applicable_via_the_runner_one_warning(builtin_refs, run_cli):
    run = run_cli("flatfield", make_image(), "--override-flat", "N/A")
    assert run.status == 0, run.err
    assert len(run.warnings) == 1 and "FLAT" in run.warnings[0], run.warnings
    (output,) = run.out.iterdir()
    with datamodels.open(output) as saved:
        assert saved.meta.cal_step.flat_field == "SKIPPED"
        np.testing.assert_array_equal(saved.data, make_image().data)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"detector": "WFI03"}, "detector WFI03"),
        ({"element": "F062"}, "optical element F062"),
        ({"full_shape": (48, 256)}, "shape"),
    ],
)
def test_bad_reference(builtin_refs, tmp_path, kwargs, message):
    flat = write_flat(tmp_path / "flat.asdf", bad=False, **kwargs)
    with pytest.raises(ReferenceFileError, match=message):
        FlatFieldStep.call(make_image(), override_flat=flat)
