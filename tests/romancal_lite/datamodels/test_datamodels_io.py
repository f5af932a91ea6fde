"""Save/open round trips, unknown tags, the roman_datamodels cross-check and bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import asdf
import numpy as np
import pytest
from asdf.tagged import TaggedDict
from astropy.time import Time

import romancal_lite.datamodels as dm
from romancal_lite.datamodels import filenames
from romancal_lite.errors import InputFileError, OutputError

PATTERN = [[1], [2, 3], [4, 5, 6]]
ROMAN = "asdf://stsci.edu/datamodels/roman/tags/"


def make_ramp(n: int = 3, ny: int = 16, nx: int = 12) -> dm.RampModel:
    rng = np.random.default_rng(1)
    data = rng.normal(1000, 5, (n, ny, nx)).astype("f4")
    model = dm.RampModel.create_fake_data(
        {
            "data": data,
            "groupdq": (rng.random((n, ny, nx)) > 0.9).astype("u1") * 4,
            "pixeldq": rng.integers(0, 3, (ny, nx)).astype("u4"),
            "meta": {"exposure": {"read_pattern": PATTERN, "frame_time": 3.04, "nresultants": n}},
        },
        shape=(n, ny, nx),
    )
    model.amp33 = rng.integers(0, 100, (n, ny, 128)).astype("u2")
    model.border_ref_pix_left = data[:, :, :4].copy()
    return model


def make_image(ramp: dm.RampModel) -> dm.ImageModel:
    ny, nx = ramp.data.shape[1:]
    shape = (ny - 8, nx - 8)
    rng = np.random.default_rng(2)
    arrays = {
        "data": rng.normal(5, 1, shape).astype("f4"),
        "dq": rng.integers(0, 5, shape).astype("u4"),
        "err": rng.random(shape).astype("f2"),
        "var_poisson": rng.random(shape).astype("f2"),
        "var_rnoise": rng.random(shape).astype("f2"),
        "chisq": np.zeros(shape, "f2"),
        "dumo": np.zeros(shape, "f2"),
    }
    carried = {k: getattr(ramp, k) for k in ramp if k == "amp33" or "border" in k}
    image = dm.ImageModel.from_model(ramp, **arrays, **carried)
    image.meta.cal_step.ramp_fit = "COMPLETE"
    return image


def assert_models_equal(a: dm.DataModel, b: dm.DataModel) -> None:
    assert type(a) is type(b) and a.tag == b.tag
    assert set(a) == set(b)
    for key in a:
        if key == "meta":
            continue
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
        assert getattr(a, key).dtype == getattr(b, key).dtype
    fa = {k: v for k, v in a.meta.to_flat_dict().items() if k not in ("filename", "file_date")}
    fb = {k: v for k, v in b.meta.to_flat_dict().items() if k not in ("filename", "file_date")}
    assert fa == fb


def test_ramp_round_trip(tmp_path):
    ramp = make_ramp()
    ramp.meta.cal_step.dq_init = "COMPLETE"
    out = ramp.save(tmp_path / "r1_dqinit.asdf")
    assert out == tmp_path / "r1_dqinit.asdf"
    with dm.open(out) as back:
        assert isinstance(back, dm.RampModel)
        assert back.tag == ROMAN + "ramp-2.1.0"
        assert back.meta.filename == "r1_dqinit.asdf"
        assert isinstance(back.meta.file_date, Time)
        assert isinstance(back.meta.exposure.start_time, Time)
        assert back.meta.cal_step.dq_init == "COMPLETE"
        assert dm.read_pattern(back) == PATTERN
        assert dm.frame_time(back) == 3.04
        assert_models_equal(ramp, back)
        # save again from the opened (lazy) model over itself
        back.save(out)
    with dm.open(out, model_type=dm.RampModel) as again:
        assert_models_equal(ramp, again)


def test_image_round_trip_and_copy(tmp_path):
    image = make_image(make_ramp())
    assert image.meta.model_type == "ImageModel"
    assert image.meta.wcs is None and "photometry" in image.meta
    out = image.save(tmp_path / "x_cal.asdf")
    with dm.open(out) as back:
        assert isinstance(back, dm.ImageModel)
        assert_models_equal(image, back)
        dup = back.copy()
    dup.data[0, 0] = -1.0
    dup.meta.instrument.detector = "WFI18"
    assert image.data[0, 0] != -1.0 and image.meta.instrument.detector == "WFI01"


def test_save_casts_to_schema_dtypes(tmp_path):
    image = make_image(make_ramp())
    image.err = image.err.astype("f4")
    with dm.open(image.save(tmp_path / "c_cal.asdf")) as back:
        assert back.err.dtype == np.float16
    assert image.err.dtype == np.float32  # the model itself is untouched


def test_cal_file_opens_with_roman_datamodels(tmp_path):
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    image = make_image(make_ramp())
    out = image.save(tmp_path / "r0000101001001001001_0001_wfi01_cal.asdf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rdm.open(out) as ref:
            assert type(ref).__name__ == "ImageModel"
            ref.validate()
            for name in ("data", "dq", "err", "var_poisson", "var_rnoise", "amp33"):
                np.testing.assert_array_equal(np.asarray(getattr(ref, name)), getattr(image, name))
            np.testing.assert_array_equal(
                np.asarray(ref.border_ref_pix_left), image.border_ref_pix_left
            )
            assert ref.meta.cal_step.ramp_fit == "COMPLETE"
            assert ref.meta.exposure.read_pattern == PATTERN


def test_ramp_file_opens_with_roman_datamodels(tmp_path):
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    ramp = make_ramp()
    out = ramp.save(tmp_path / "a_ramp.asdf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rdm.open(out) as ref:
            assert type(ref).__name__ == "RampModel"
            ref.validate()
            np.testing.assert_array_equal(np.asarray(ref.data), ramp.data)
            np.testing.assert_array_equal(np.asarray(ref.groupdq), ramp.groupdq)


def test_reference_models_round_trip(tmp_path):
    for cls in (
        dm.MaskRefModel,
        dm.SaturationRefModel,
        dm.LinearityRefModel,
        dm.DarkRefModel,
        dm.GainRefModel,
        dm.ReadnoiseRefModel,
        dm.FlatRefModel,
        dm.RefpixRefModel,
    ):
        model = cls.create_fake_data(shape=(3, 8, 8))
        out = model.save(tmp_path / f"{cls.__name__}.asdf")
        with dm.open(out) as back:
            assert type(back) is cls
            assert back.tag.startswith(ROMAN + "reference_files/")
            assert back.meta.reftype == model.meta.reftype
            assert isinstance(back.meta.useafter, Time)
            assert_models_equal(model, back)
    photom = dm.PhotomRefModel.create_minimal({"phot_table": {"F158": {"photmjsr": 1.5}}})
    with dm.open(photom.save(tmp_path / "photom.asdf")) as back:
        assert back.phot_table.F158.photmjsr == 1.5


def test_unknown_and_old_tags_round_trip(tmp_path):
    ramp = make_ramp()
    future = TaggedDict({"answer": 42, "nested": {"x": [1, 2]}}, ROMAN + "future_thing-9.9.9")
    ramp.meta.future = future
    ramp.meta.old_exposure = dm.TaggedNode({"type": "WFI_IMAGE"}, ROMAN + "exposure-1.0.0")
    ramp.meta.old_name = dm.TaggedStr("abc.asdf", ROMAN + "filename-1.0.0")
    out = ramp.save(tmp_path / "t.asdf")
    for _ in range(2):  # read, write again, read: tags survive twice
        with dm.open(out) as back:
            assert back.meta.future.answer == 42
            assert back.meta.future.nested.x == [1, 2]
            assert back.meta.old_exposure.tag == ROMAN + "exposure-1.0.0"
            assert back.meta.old_exposure.type == "WFI_IMAGE"
            assert back.meta.old_name == "abc.asdf"
            assert back.meta.old_name.tag == ROMAN + "filename-1.0.0"
            out = back.save(tmp_path / "t2.asdf")
    text = out.read_bytes()
    assert b"future_thing-9.9.9" in text and b"exposure-1.0.0" in text
    assert b"filename-1.0.0" in text


def test_meta_attribute_and_item_access():
    ramp = make_ramp()
    ramp.meta.exposure.frame_time = 3.5
    assert ramp.meta["exposure"]["frame_time"] == 3.5
    ramp.meta["exposure"]["nresultants"] = 7
    assert ramp.meta.exposure.nresultants == 7
    assert ramp.meta["exposure.nresultants"] == 7
    ramp.meta.new_block = {"a": {"b": 1}}
    assert ramp.meta.new_block.a.b == 1
    assert ramp.meta.cal_step.saturation == "INCOMPLETE"
    with pytest.raises(AttributeError):
        _ = ramp.meta.no_such_key


def test_open_model_returns_shared_copy():
    ramp = make_ramp()
    other = dm.open(ramp)
    assert other is not ramp and other.data is ramp.data
    with pytest.raises(InputFileError, match="not a ImageModel|not an? ImageModel"):
        dm.open(ramp, model_type=dm.ImageModel)


def test_atomic_save_keeps_old_file_on_error(tmp_path):
    ramp = make_ramp()
    out = ramp.save(tmp_path / "keep.asdf")
    before = out.read_bytes()
    ramp.pixeldq = np.zeros((2, 3, 4), "u4")  # wrong ndim: refused before writing
    with pytest.raises(ValueError, match="pixeldq"):
        ramp.save(out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.asdf"]
    with pytest.raises(OutputError):
        make_ramp().save(tmp_path / "missing_dir" / "x.asdf")


def test_filename_suffixes():
    assert filenames.replace_suffix("d/r0001_WFI01_uncal.asdf", "cal") == Path(
        "d/r0001_WFI01_cal.asdf"
    )
    assert filenames.replace_suffix("r0001_WFI01_uncal.asdf", "dq_init", "out").name == (
        "r0001_WFI01_dq_init.asdf"
    )
    assert filenames.replace_suffix("r0001_WFI01.asdf", "cal").name == "r0001_WFI01_cal.asdf"
    assert filenames.split_suffix("a_b_rampfit.asdf") == ("a_b", "rampfit")


# ---- bad input --------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        dm.open(tmp_path / "nope.asdf")


def test_not_asdf(tmp_path):
    path = tmp_path / "text.asdf"
    path.write_text("hello\n")
    with pytest.raises(InputFileError, match=r"text\.asdf: not an ASDF file"):
        dm.open(path)


def test_truncated(tmp_path):
    good = make_ramp().save(tmp_path / "good.asdf")
    raw = good.read_bytes()
    for cut in (len(raw) // 2, len(raw) - 200, 50):
        bad = tmp_path / "cut.asdf"
        bad.write_bytes(raw[:cut])
        with pytest.raises(InputFileError) as info:
            dm.open(bad)
        message = str(info.value)
        assert "cut.asdf" in message and "\n" not in message


def test_not_a_roman_file(tmp_path):
    path = tmp_path / "plain.asdf"
    asdf.AsdfFile({"x": np.arange(3)}).write_to(path)
    with pytest.raises(InputFileError, match="not a Roman data file"):
        dm.open(path)
    tagged = tmp_path / "other.asdf"
    af = asdf.AsdfFile({"roman": TaggedDict({"meta": {}}, ROMAN + "future_model-1.0.0")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        af.write_to(tagged)
    with pytest.raises(InputFileError, match="other.asdf"):
        dm.open(tagged)


def test_wrong_model_type(tmp_path):
    out = make_ramp().save(tmp_path / "w_ramp.asdf")
    with pytest.raises(InputFileError, match=r"w_ramp\.asdf: holds a RampModel, not a ImageModel"):
        dm.open(out, model_type=dm.ImageModel)
    with pytest.raises(InputFileError, match="holds a RampModel"):
        dm.ScienceRawModel(out)


def test_missing_exposure_metadata():
    ramp = make_ramp()
    del ramp.meta.exposure["read_pattern"]
    with pytest.raises(InputFileError, match="read_pattern is missing"):
        dm.read_pattern(ramp)
    ramp.meta.exposure.read_pattern = [[1], [2]]  # 2 resultants, data has 3
    with pytest.raises(InputFileError, match="2 resultants but data has 3"):
        dm.read_pattern(ramp)
    del ramp.meta.exposure["frame_time"]
    with pytest.raises(InputFileError, match="frame_time is missing"):
        dm.frame_time(ramp)


@pytest.mark.parametrize(
    "pattern",
    [
        [[1.5], [2], [3]],  # not truncated to 1
        [["1"], [2], [3]],  # not parsed from text
        [[1], [True], [3]],
        [[1], [], [3]],
        [[2], [1], [3]],
        [[0], [1], [2]],
        [[1], [2], [float("nan")]],
    ],
)
def test_read_pattern_must_be_integers_as_the_kernels_need(pattern):
    ramp = make_ramp()
    ramp.meta.exposure.read_pattern = pattern
    with pytest.raises(InputFileError, match=r"meta\.exposure\.read_pattern: "):
        dm.read_pattern(ramp)
    ramp.meta.exposure.read_pattern = [[1.0], [2], [3.0]]  # integral floats are integers
    assert dm.read_pattern(ramp) == [[1], [2], [3]]
    ramp.meta.exposure.frame_time = "soon"
    with pytest.raises(InputFileError, match="frame_time is not a number"):
        dm.frame_time(ramp)
    del ramp.meta["exposure"]
    with pytest.raises(InputFileError, match="no meta.exposure"):
        dm.frame_time(ramp)


def test_tagged_time_and_memmap(tmp_path):
    model = dm.GainRefModel.create_fake_data(shape=(8, 8))
    old = dm.TaggedTime(Time("2021-01-01T00:00:00"))
    old._roman_tag = ROMAN + "file_date-1.0.0"
    model.meta.old_date = old
    out = model.save(tmp_path / "g.asdf")
    with dm.open(out, memmap=True) as back:
        assert back.meta.old_date.tag == ROMAN + "file_date-1.0.0"
        assert back.meta.old_date.isot == "2021-01-01T00:00:00.000"
        assert not back.data.flags.writeable  # memory-mapped, read-only
        np.testing.assert_array_equal(back.data, model.data)


def test_kept_schema_documents_validate_the_same(tmp_path):
    """A batch worker keeps the parsed schemas: a bad tree is refused all the same."""
    import astropy.units as u

    from romancal_lite.datamodels import _core

    good = tmp_path / "good.asdf"
    asdf.AsdfFile({"q": 3.0 * u.m, "roman": {}}).write_to(good)
    text = good.read_bytes().decode()
    assert "value: 3.0}" in text
    bad = tmp_path / "bad.asdf"
    bad.write_text(text.replace("value: 3.0}", "value: bogus}"))  # not a number: invalid
    assert dm.keep_schema_documents() and dm.keep_schema_documents()  # idempotent
    dm.open_asdf_file(good).close()
    kept = dict(_core._SCHEMA_DOCUMENTS)
    assert kept  # the documents the quantity's schema refers to
    for _ in range(2):
        with pytest.raises(InputFileError, match="not valid"):
            dm.open_asdf_file(bad)
    dm.open_asdf_file(good).close()
    assert all(_core._SCHEMA_DOCUMENTS[k] is v for k, v in kept.items())  # parsed once


def test_mapped_array_gives_the_rows_the_model_reads(tmp_path):
    """`DataModel.mapped_array`: an unread uncompressed array mapped from its file,
    indexed by rows with any pending scale applied as the model applies it (float16
    variances: numpy's float32 product cast to float16, bit for bit)."""
    image = make_image(make_ramp(ny=40, nx=36))
    rng = np.random.default_rng(4)
    image.var_poisson = rng.uniform(1e-3, 2.0, image.data.shape).astype("f2")
    path = tmp_path / "x_cal.asdf"
    image.save(path)
    factor = 3.1e-3  # var_poisson x factor^2: many values float16 subnormals or zero
    for scales in ({}, {"data": factor, "var_poisson": factor**2}):
        with dm.open(path) as model:
            model._set_array_scales(scales)
            mapped = {n: model.mapped_array(n) for n in ("data", "var_poisson")}
            assert all(isinstance(m, dm.MappedArray) for m in mapped.values())
            rows = {n: m[5:17] for n, m in mapped.items()}
            sample = mapped["var_poisson"][::3, ::3]
            for name, m in mapped.items():
                whole = getattr(model, name)  # read whole (and scaled)
                assert m.shape == whole.shape and m.ndim == 2
                assert rows[name].dtype == whole.dtype
                assert rows[name].tobytes() == whole[5:17].tobytes()
            assert sample.tobytes() == model.var_poisson[::3, ::3].tobytes()
            assert model.mapped_array("data") is None  # in memory now
            assert model.mapped_array("missing") is None
    raw = np.asarray(image.var_poisson)
    expected = np.multiply(raw, np.float32(factor**2), dtype=np.float32).astype(np.float16)
    assert np.count_nonzero((expected != 0) & (np.abs(expected) < 6.1e-5)) > 100  # subnormal
    with dm.open(path) as model:
        model._set_array_scales({"var_poisson": factor**2})
        assert model.var_poisson.tobytes() == expected.tobytes()
    packed = tmp_path / "packed_cal.asdf"
    image.save(packed, all_array_compression="zlib")
    with dm.open(packed) as model:
        assert model.mapped_array("data") is None  # compressed: read whole
