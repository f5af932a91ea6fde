"""flux: DN/s -> MJy/sr on data, err and variances; idempotent; libraries."""

import numpy as np
import pytest

from romancal_lite.datamodels import ImageModel, ModelLibrary
from romancal_lite.errors import InputFileError
from romancal_lite.steps.flux import FluxStep, apply_flux_correction

C = 0.25


def _image(c=C, seed=0, var_rnoise=True):
    rng = np.random.default_rng(seed)
    model = ImageModel.create_fake_data(shape=(6, 7))
    model.data = rng.uniform(1, 10, (6, 7)).astype(np.float32)
    model.err = rng.uniform(1, 2, (6, 7)).astype(np.float16)
    model.var_poisson = rng.uniform(0.5, 1, (6, 7)).astype(np.float16)
    if var_rnoise:
        model.var_rnoise = rng.uniform(0.1, 0.5, (6, 7)).astype(np.float16)
    model.var_flat = rng.uniform(0.01, 0.02, (6, 7)).astype(np.float16)
    model.meta.photometry.conversion_megajanskys = c
    model.meta.filename = f"img{seed}_cal.asdf"
    return model


def test_hand_case_and_idempotence():
    model = _image()
    before = {k: np.asarray(model[k], np.float64).copy()
              for k in ("data", "err", "var_poisson", "var_rnoise", "var_flat")}  # fmt: skip
    result = FluxStep.call(model)
    assert result.meta.cal_step.flux == "COMPLETE"
    np.testing.assert_allclose(result.data, before["data"] * C, rtol=1e-6)
    np.testing.assert_allclose(result.err, before["err"] * C, rtol=1e-6)
    for name in ("var_poisson", "var_rnoise", "var_flat"):
        np.testing.assert_allclose(result[name], before[name] * C**2, rtol=1e-6)
        assert result[name].dtype == np.float32
    again = FluxStep.call(result)  # already COMPLETE: unchanged
    np.testing.assert_allclose(again.data, before["data"] * C, rtol=1e-6)
    assert apply_flux_correction(again) is False


@pytest.mark.parametrize("bad", [-999999.0, None, 0.0, float("nan")])
def test_missing_conversion_is_a_clear_error(bad):
    with pytest.raises(InputFileError, match="conversion_megajanskys"):
        FluxStep.call(_image(c=bad))


def test_library_on_disk_converts_members_not_files(tmp_path):
    paths = [_image(seed=i).save(tmp_path / f"img{i}_cal.asdf") for i in range(3)]
    originals = [p.read_bytes() for p in paths]
    library = FluxStep.call(ModelLibrary(paths))
    assert isinstance(library, ModelLibrary)
    with library:
        for index, path in enumerate(paths):
            model = library.borrow(index)
            with ImageModel(path) as original:
                np.testing.assert_allclose(model.data, original.data * C, rtol=1e-6)
            assert model.meta.cal_step.flux == "COMPLETE"
            library.shelve(model, index)
    assert [p.read_bytes() for p in paths] == originals


def test_library_on_disk_records_the_conversion_without_rewriting(tmp_path):
    """On disk nothing is written: the library scales the arrays as they are read,
    bit for bit what converting in memory and writing the member (float16 err and
    variances) gives; a later modify=True write and the saved products keep it."""
    paths = [_image(seed=i).save(tmp_path / f"img{i}_cal.asdf") for i in range(2)]
    library = FluxStep.call(ModelLibrary(paths))
    assert library.temp_directory is None  # no member rewritten
    names = ("data", "err", "var_poisson", "var_rnoise", "var_flat")
    expected = []
    for i, path in enumerate(paths):
        with ImageModel(path) as model:
            model.load_arrays()
            apply_flux_correction(model)
            written = model.save(tmp_path / f"ref{i}.asdf")
        with ImageModel(written) as ref:
            expected.append({n: np.asarray(ref[n]).copy() for n in names})
    with library:
        model = library.borrow(0)
        for n in names:
            assert model[n].dtype == expected[0][n].dtype, n
            np.testing.assert_array_equal(model[n], expected[0][n], err_msg=n)
        model.dq = model.dq | np.uint32(4)  # a later step rewrites the member
        library.shelve(model, 0, modify=True)
    with library:
        for i in range(2):
            model = library.borrow(i)
            for n in names:
                np.testing.assert_array_equal(model[n], expected[i][n], err_msg=n)
            library.shelve(model, i)
    FluxStep.call(library)  # idempotent: nothing scaled twice
    out = tmp_path / "out"
    out.mkdir()
    FluxStep.call(library, save_results=True, output_dir=str(out))
    for i in range(2):
        with ImageModel(out / f"img{i}_flux.asdf") as saved:
            for n in names:
                np.testing.assert_array_equal(saved[n], expected[i][n], err_msg=n)


def test_library_saved_per_member(tmp_path):
    paths = [_image(seed=i).save(tmp_path / f"img{i}_cal.asdf") for i in range(2)]
    FluxStep.call(ModelLibrary(paths), save_results=True, output_dir=str(tmp_path / "out"))
    for i in range(2):
        with ImageModel(tmp_path / "out" / f"img{i}_flux.asdf") as saved:
            assert saved.meta.cal_step.flux == "COMPLETE"


def test_same_as_romancal(tmp_path):
    """romancal 1.1's flux correction on the same file gives the same arrays."""
    rc_flux = pytest.importorskip("romancal.flux.flux_step")
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    path = _image(var_rnoise=False).save(tmp_path / "img_cal.asdf")
    theirs = rdm.open(path)
    rc_flux.apply_flux_correction(theirs)  # (its step needs a CRDS server to start)
    theirs.meta.cal_step.flux = "COMPLETE"
    ours = FluxStep.call(str(path))
    for name in ("data", "err", "var_poisson", "var_flat"):
        np.testing.assert_allclose(ours[name], np.asarray(theirs[name], np.float32),
                                   rtol=2e-3, err_msg=name)  # fmt: skip
    assert "var_rnoise" not in ours and theirs.meta.cal_step.flux == "COMPLETE"
