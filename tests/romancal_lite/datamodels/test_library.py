"""ModelLibrary: borrowing one model at a time, groups, temporary files, originals."""

import hashlib
import json
import os

import numpy as np
import pytest

from romancal_lite import datamodels
from romancal_lite.associations import load_asn
from romancal_lite.datamodels import BorrowError, ImageModel, ModelLibrary
from romancal_lite.errors import InputFileError


def _image(exposure: int, detector: int, value: float, **meta) -> ImageModel:
    model = ImageModel.create_fake_data(shape=(12, 10))
    model.data[...] = value
    obs = model.meta.observation
    for key, val in {
        "program": 1, "execution_plan": 1, "pass": 1, "segment": 1, "observation": 1,
        "visit": 1, "visit_file_group": 1, "visit_file_sequence": 1,
        "visit_file_activity": "01", "exposure": exposure,
    }.items():  # fmt: skip
        obs[key] = val
    model.meta.instrument.detector = f"WFI{detector:02d}"
    for key, val in meta.items():
        model.meta[key] = val
    return model


@pytest.fixture
def four_files(tmp_path):
    """2 exposures x 2 detectors, observation_id unknown ("?"): groups from the fields."""
    paths = []
    for exposure in (1, 2):
        for detector in (1, 2):
            model = _image(exposure, detector, 10 * exposure + detector)
            paths.append(model.save(tmp_path / f"e{exposure}_wfi{detector:02d}_cal.asdf"))
    return paths


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest(), os.stat(path).st_mtime_ns


def test_groups_of_two_exposures_by_two_detectors(four_files):
    lib = ModelLibrary(four_files)
    assert len(lib) == 4 and lib.asn is None
    assert len(lib.group_names) == 2
    first, second = lib.group_names
    assert lib.group_indices == {first: [0, 1], second: [2, 3]}
    assert first.endswith("_1") and second.endswith("_2")


def test_group_from_observation_id_and_group_id(tmp_path):
    paths = []
    for i, (obs_id, group) in enumerate([("oA", None), ("oB", None), ("oA", None), ("x", "g")]):
        model = _image(i, 1, 0.0)
        model.meta.observation.observation_id = obs_id
        if group:
            model.meta["group_id"] = group
        paths.append(model.save(tmp_path / f"m{i}_cal.asdf"))
    lib = ModelLibrary(paths)
    assert lib.group_names == ["oA", "oB", "g"]
    assert lib.group_indices == {"oA": [0, 2], "oB": [1], "g": [3]}


def test_association_group_id_wins_and_reaches_the_model(four_files, tmp_path):
    members = [
        {"expname": p.name, "exptype": "science", "group_id": f"asn{i % 2}"}
        for i, p in enumerate(four_files)
    ]
    members[0]["tweakreg_catalog"] = "cat0.parquet"
    asn = tmp_path / "x_asn.json"
    asn.write_text(json.dumps({"products": [{"name": "x", "members": members}]}))
    for init in (asn, load_asn(asn)):
        lib = ModelLibrary(init)
        assert lib.asn is not None and lib.asn.name == "x"
        assert lib.group_names == ["asn0", "asn1"]
        assert lib.group_indices == {"asn0": [0, 2], "asn1": [1, 3]}
        assert [m.group_id for m in lib.members] == ["asn0", "asn1", "asn0", "asn1"]
        assert lib.members[0].tweakreg_catalog == str(tmp_path / "cat0.parquet")
        with lib:
            model = lib.borrow(0)
            assert model.meta.group_id == "asn0"
            assert model.meta.source_catalog.tweakreg_catalog_name.endswith("cat0.parquet")
            lib.shelve(model, 0)
        assert lib.read_meta(1).group_id == "asn1"


def test_only_one_model_in_memory_and_closed_after_shelving(four_files, monkeypatch):
    opened = []
    real_open = datamodels._core.open

    def spy(path, *args, **kwargs):
        model = real_open(path, *args, **kwargs)
        opened.append(model)
        return model

    monkeypatch.setattr(datamodels._core, "open", spy)
    lib = ModelLibrary(four_files)
    peak = 0

    def work(model, index):
        nonlocal peak
        alive = [m for m in opened if m._asdf is not None]
        peak = max(peak, len(alive))
        return float(model.data.mean())

    assert list(lib.map_function(work)) == [11.0, 12.0, 21.0, 22.0]
    assert len(opened) == 4 and peak == 1
    assert all(m._asdf is None for m in opened)  # every borrowed model was closed
    assert not lib._borrowed


def test_modify_is_seen_later_and_originals_untouched(four_files, tmp_path):
    before = [_digest(p) for p in four_files]
    temp_parent = tmp_path / "scratch"
    temp_parent.mkdir()
    lib = ModelLibrary(four_files, temp_directory=temp_parent)

    def add(model, index):
        model.data += 100.0
        model.meta["background"] = {"level": 1.5, "subtracted": False, "method": "local"}
        return index

    assert list(lib.map_function(add, modify=True)) == [0, 1, 2, 3]
    # written uncompressed into the library's own directory, under the member's name
    temp = lib.temp_directory
    assert temp is not None and os.path.dirname(temp) == str(temp_parent)
    written = sorted(p.name for p in temp_parent.rglob("*.asdf"))
    assert written == sorted(p.name for p in four_files)
    with lib:
        model = lib.borrow(3)
        assert float(model.data[0, 0]) == 122.0
        assert model.meta.filename == four_files[3].name
        lib.shelve(model, 3)
    assert lib.read_meta(2).background.level == 1.5
    # a shelve without modify drops the change
    with lib:
        model = lib.borrow(0)
        model.data[...] = -1.0
        lib.shelve(model, 0, modify=False)
        model = lib.borrow(0)
        assert float(model.data[0, 0]) == 111.0
        lib.shelve(model, 0)
    assert [_digest(p) for p in four_files] == before
    lib.close()
    assert not os.path.exists(temp)
    assert list(temp_parent.iterdir()) == []


def test_meta_only_shelve_writes_nothing_and_is_seen_later(four_files, tmp_path):
    before = [_digest(p) for p in four_files]
    temp_parent = tmp_path / "scratch"
    temp_parent.mkdir()
    lib = ModelLibrary(four_files, temp_directory=temp_parent)
    with lib:
        model = lib.borrow(1)
        data = model.data.copy()
        model.meta["background"] = {"level": 2.5, "subtracted": False, "method": "match"}
        model.meta.cal_step["skymatch"] = "COMPLETE"
        lib.shelve(model, 1, modify="meta")
    assert list(temp_parent.rglob("*.asdf")) == []  # no member rewritten
    assert lib.read_meta(1).background.level == 2.5
    with lib:
        model = lib.borrow(1)
        assert model.meta.background.level == 2.5
        assert model.meta.cal_step["skymatch"] == "COMPLETE"
        np.testing.assert_array_equal(model.data, data)
        # a later change not kept does not leak into the kept metadata
        model.meta.background["level"] = -7.0
        lib.shelve(model, 1, modify=False)
        model = lib.borrow(1)
        assert model.meta.background.level == 2.5
        # a full modification afterwards carries it into the written copy
        model.data += 1.0
        lib.shelve(model, 1, modify=True)
        model = lib.borrow(1)
        assert model.meta.background.level == 2.5
        np.testing.assert_array_equal(model.data, data + 1.0)
        lib.shelve(model, 1)
    assert [_digest(p) for p in four_files] == before
    lib.close()


def test_changed_arrays_only_are_written_and_seen_later(four_files, tmp_path):
    """modify="meta", arrays=("dq",): only dq is written (no member rewritten); later
    borrows see the new dq and metadata with the member's other arrays, scaled ones
    still scaled; a full modification afterwards keeps the dq."""
    before = [_digest(p) for p in four_files]
    temp_parent = tmp_path / "scratch"
    temp_parent.mkdir()
    lib = ModelLibrary(four_files, temp_directory=temp_parent)
    with lib:
        model = lib.borrow(2)
        data = model.data.copy()
        model.meta.cal_step["flux"] = "COMPLETE"
        lib.shelve(model, 2, modify="meta", scale={"data": 0.5})
        model = lib.borrow(2)
        dq = np.asarray(model.dq) | np.uint32(1 << 4)
        dq[3, 4] |= np.uint32(1)
        model.dq = dq
        model.meta.cal_step["outlier_detection"] = "COMPLETE"
        lib.shelve(model, 2, modify="meta", arrays=("dq",))
    assert list(temp_parent.rglob("*.asdf")) == []
    assert [p.name for p in temp_parent.rglob("*.npy")] == ["dq.npy"]
    with lib:
        model = lib.borrow(2)
        np.testing.assert_array_equal(model.dq, dq)
        np.testing.assert_array_equal(model.data, data * np.float32(0.5))
        assert model.meta.cal_step["outlier_detection"] == "COMPLETE"
        model.dq[0, 0] = 99  # a change not kept leaves the kept dq alone
        lib.shelve(model, 2)
        model = lib.borrow(2)
        np.testing.assert_array_equal(model.dq, dq)
        model.data += 1.0
        lib.shelve(model, 2, modify=True)
        model = lib.borrow(2)
        np.testing.assert_array_equal(model.dq, dq)
        np.testing.assert_array_equal(model.data, data * np.float32(0.5) + 1)
        lib.shelve(model, 2)
        other = lib.borrow(1)
        with pytest.raises(BorrowError, match="modify='meta'"):
            lib.shelve(other, 1, modify=True, arrays=("dq",))
        lib.shelve(other, 1)
    assert list(temp_parent.rglob("*.npy")) == []
    assert [_digest(p) for p in four_files] == before
    lib.close()


def test_temp_directory_removed_when_the_library_is_collected(four_files, tmp_path):
    import gc

    lib = ModelLibrary(four_files, temp_directory=tmp_path)
    with lib:
        model = lib.borrow(1)
        lib.shelve(model, 1, modify=True)
    temp = lib.temp_directory
    assert os.path.isdir(temp)
    del lib
    gc.collect()
    assert not os.path.exists(temp)


def test_read_meta_reads_no_arrays(four_files, monkeypatch):
    lib = ModelLibrary(four_files)
    calls = []
    real = datamodels.DataModel._load_array
    monkeypatch.setattr(
        datamodels.DataModel, "_load_array", lambda self, *a: calls.append(a) or real(self, *a)
    )
    meta = lib.read_meta(2)
    assert meta.instrument.detector == "WFI01" and meta.observation.exposure == 2
    assert calls == []


def test_borrowing_rules(four_files):
    lib = ModelLibrary(four_files)
    with pytest.raises(BorrowError, match="inside"):
        lib.borrow(0)
    with pytest.raises(BorrowError, match="1 borrowed and not shelved"):
        with lib:
            lib.borrow(1)
    assert not lib._borrowed
    with lib:
        model = lib.borrow(0)
        with pytest.raises(BorrowError, match="already borrowed"):
            lib.borrow(0)
        with pytest.raises(BorrowError, match="not borrowed"):
            lib.shelve(model, 2)
        lib.shelve(model)  # index found from the model
        with pytest.raises(IndexError, match="out of range"):
            lib.borrow(4)
    # an error inside the block closes what is borrowed and is not masked
    with pytest.raises(ZeroDivisionError):
        with lib:
            lib.borrow(2)
            raise ZeroDivisionError("inside")
    assert not lib._borrowed


def test_in_memory_models(four_files):
    models = [ImageModel(p) for p in four_files]
    lib = ModelLibrary(models, on_disk=True)
    assert not lib.on_disk and len(lib.group_names) == 2
    with lib:
        model = lib.borrow(0)
        assert model is models[0]
        replacement = model.copy()
        replacement.data[...] = 5.0
        lib.shelve(replacement, 0, modify=True)
        assert float(lib.borrow(0).data[0, 0]) == 5.0
        lib.shelve(replacement, 0)
    assert lib.temp_directory is None


def test_not_on_disk_keeps_models(four_files):
    lib = ModelLibrary(four_files, on_disk=False)
    with lib:
        model = lib.borrow(1)
        model.data[...] = 7.0
        lib.shelve(model, 1, modify=True)
    with lib:
        assert lib.borrow(1) is model
        lib.shelve(model, 1)
    assert lib.temp_directory is None


@pytest.mark.parametrize(
    ("init", "message"),
    [
        ([], "at least one member"),
        ([1, 2], "not a list of int"),
        (3.0, "from a float"),
        ("image_cal.asdf", "association"),
    ],
)
def test_bad_init_is_one_clear_error(init, message):
    with pytest.raises(InputFileError, match=message):
        ModelLibrary(init)


def test_missing_member_file(tmp_path):
    with pytest.raises(InputFileError, match="nope_cal.asdf"):
        ModelLibrary([tmp_path / "nope_cal.asdf"])


def test_same_groups_as_romancal(four_files):
    """romancal 1.1's ModelLibrary reads the same groups from the same association."""
    rc_library = pytest.importorskip("romancal.datamodels.library")
    from romancal.associations.asn_from_list import asn_from_list

    asn = asn_from_list([str(p) for p in four_files], product_name="x")
    asn_path = four_files[0].parent / "rc_asn.json"
    _, text = asn.dump()
    tree = json.loads(text)
    for member in tree["products"][0]["members"]:
        member["expname"] = os.path.basename(member["expname"])
    asn_path.write_text(json.dumps(tree))
    # romancal reads observation_id (here unknown "?"): give each exposure one
    for exposure, pair in ((1, four_files[:2]), (2, four_files[2:])):
        for path in pair:
            with ImageModel(path) as model:
                model.load_arrays()
                model.meta.observation.observation_id = f"obs{exposure}"
                model.save(path)
    ours = ModelLibrary(asn_path)
    theirs = rc_library.ModelLibrary(str(asn_path))
    assert set(ours.group_names) == set(theirs.group_names)  # romancal: a set
    assert ours.group_indices == {k: list(v) for k, v in theirs.group_indices.items()}
    assert len(ours) == len(theirs) == 4


def test_scaled_float16_arrays_are_numpys_cast():
    """A scaled float16 array (err, variances after flux) is numpy's float32 product
    cast to float16, bit for bit, also where it underflows or overflows float16."""
    from romancal_lite.datamodels._core import _scale_array

    rng = np.random.default_rng(3)
    values = np.concatenate([
        rng.random(5000) * 1e-4,  # subnormal range of float16 after scaling
        rng.normal(0, 300, 4993), [0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 6e-8]])
    array = values.astype(np.float16).reshape(-1, 8)
    for factor in (0.5, 3.7e-3, 2.0):
        want = np.multiply(array, np.float32(factor), dtype=np.float32).astype(np.float16)
        got = _scale_array(array, factor, ("float16", 2))
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))
    kept = _scale_array(array, 0.5, None)
    assert kept.dtype == np.float32


def test_unchanged_member_is_validated_once(four_files, monkeypatch):
    """A member reopened by borrow is not schema-validated again while its file is
    unchanged; a file changed since (size, time) is validated again."""
    from romancal_lite.datamodels import _core

    calls = []
    real = _core.open_asdf_file
    monkeypatch.setattr(_core, "open_asdf_file",
                        lambda path, **kw: calls.append((os.path.basename(path),
                                                         kw.get("validate", True)))
                        or real(path, **kw))
    lib = ModelLibrary(four_files)
    with lib:
        for _ in range(3):
            lib.shelve(lib.borrow(0), 0)
        lib.shelve(lib.borrow(1), 1)
    assert calls == [("e1_wfi01_cal.asdf", True), ("e1_wfi01_cal.asdf", False),
                     ("e1_wfi01_cal.asdf", False), ("e1_wfi02_cal.asdf", True)]
    with datamodels.open(four_files[0]) as model:  # the file written again (new content)
        model.data[0, 0] += 1
        model.save(four_files[0])
    os.utime(four_files[0], ns=(1, 1))
    calls.clear()
    with lib:
        got = lib.borrow(0)
        assert got.data[0, 0] == model.data[0, 0]
        lib.shelve(got, 0)
    assert calls == [("e1_wfi01_cal.asdf", True)]
    lib.close()
