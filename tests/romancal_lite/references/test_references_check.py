"""check_reference and the official format of the generated files."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from romancal_lite.errors import ReferenceFileError
from romancal_lite.references import (
    REFTYPES,
    build_reference,
    check_reference,
    get_spec,
    open_reference_tree,
    reference_shape,
    write_reference,
)

FULL = (32, 32)
SCI = (24, 24)
SCIENCE = {
    "roman.meta.instrument.name": "WFI",
    "roman.meta.instrument.detector": "WFI07",
    "roman.meta.instrument.optical_element": "F158",
    "roman.meta.exposure.start_time": "2026-01-01T00:00:00",
}


def element(reftype):
    return "F158" if get_spec(reftype).by_element else None


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    root = tmp_path_factory.mktemp("refs")
    paths = {}
    for reftype in REFTYPES:
        path = root / f"{reftype}.asdf"
        write_reference(
            path, build_reference(reftype, "WFI07", FULL, "2020-01-01T00:00:00", element(reftype))
        )
        paths[reftype] = path
    return paths


def expected(reftype):
    kind = get_spec(reftype).shape_kind
    return {"full": FULL, "science": SCI, "refpix": FULL, "none": None}[kind]


@pytest.mark.parametrize("reftype", sorted(REFTYPES))
def test_generated_reference_passes(refs, reftype):
    check_reference(refs[reftype], reftype, SCIENCE, expected_shape=expected(reftype))
    check_reference(str(refs[reftype]), reftype.upper(), SCIENCE)


def test_wrong_detector(refs):
    other = dict(SCIENCE, **{"roman.meta.instrument.detector": "WFI01"})
    with pytest.raises(ReferenceFileError) as info:
        check_reference(refs["gain"], "gain", other)
    msg = str(info.value)
    assert msg.startswith("gain.asdf:") and "WFI07" in msg and "WFI01" in msg
    assert "\n" not in msg


def test_wrong_optical_element(refs):
    other = dict(SCIENCE, **{"roman.meta.instrument.optical_element": "F062"})
    with pytest.raises(ReferenceFileError, match="flat.asdf: .*F158.*F062"):
        check_reference(refs["flat"], "flat", other)
    check_reference(refs["gain"], "gain", other)  # gain does not depend on the filter


def test_wrong_shape(refs):
    with pytest.raises(ReferenceFileError, match=r"mask.asdf: .*\(32, 32\).*\(4096, 4096\)"):
        check_reference(refs["mask"], "mask", SCIENCE, expected_shape=(4096, 4096))
    with pytest.raises(ReferenceFileError, match="flat.asdf: FLAT array 'data'"):
        check_reference(refs["flat"], "flat", SCIENCE, expected_shape=FULL)
    with pytest.raises(ReferenceFileError, match="linearity.asdf"):
        check_reference(refs["linearity"], "linearity", SCIENCE, expected_shape=(16, 16))
    with pytest.raises(ReferenceFileError, match="REFPIX coefficients"):
        check_reference(refs["refpix"], "refpix", SCIENCE, expected_shape=(64, 64))


def test_shape_from_science_model(refs):
    model = SimpleNamespace(
        data=np.zeros((3, *FULL), np.float32),
        get_crds_parameters=lambda: SCIENCE,
    )
    check_reference(refs["saturation"], "saturation", model)
    model.data = np.zeros((3, 8, 8), np.float32)
    with pytest.raises(ReferenceFileError, match="saturation.asdf"):
        check_reference(refs["saturation"], "saturation", model)


def test_wrong_reftype(refs):
    msg = "gain.asdf: is a GAIN reference file, expected FLAT"
    with pytest.raises(ReferenceFileError, match=msg):
        check_reference(refs["gain"], "flat", SCIENCE)
    with pytest.raises(ReferenceFileError, match="unknown reference type"):
        check_reference(refs["gain"], "bogus", SCIENCE)


def test_wrong_reftype_in_meta_only(refs):
    with open_reference_tree(refs["gain"]) as node:
        tree = {"meta": dict(node["meta"], reftype="DARK"), "data": np.zeros(FULL, np.float32)}
    with pytest.raises(ReferenceFileError, match="reftype 'DARK', expected 'GAIN'"):
        check_reference(tree, "gain", SCIENCE)
    tree["meta"]["reftype"] = "GAIN"
    check_reference({"roman": tree}, "gain", SCIENCE, expected_shape=FULL)
    del tree["data"]
    with pytest.raises(ReferenceFileError, match="lacks the 'data' array"):
        check_reference(tree, "gain", SCIENCE)


def test_missing_and_unreadable(tmp_path):
    (tmp_path / "folder.asdf").mkdir()
    with pytest.raises(ReferenceFileError, match=r"^folder.asdf: is a directory"):
        check_reference(tmp_path / "folder.asdf", "gain", SCIENCE)
    gone = r"^gone.asdf: no such file \(reference file .*gone.asdf\)"
    with pytest.raises(ReferenceFileError, match=gone):
        check_reference(tmp_path / "gone.asdf", "gain", SCIENCE)
    junk = tmp_path / "junk.asdf"
    junk.write_text("not asdf at all")
    with pytest.raises(ReferenceFileError, match="^junk.asdf: not an ASDF file"):
        check_reference(junk, "gain", SCIENCE)


def test_model_class_checked(refs):
    class FlatRefModel(SimpleNamespace):
        pass

    with open_reference_tree(refs["gain"]) as node:
        meta = dict(node["meta"])
    with pytest.raises(ReferenceFileError, match="is a FlatRefModel, expected GainRefModel"):
        check_reference(FlatRefModel(meta=meta, data=np.zeros(FULL)), "gain", SCIENCE)


def test_reference_shapes():
    assert reference_shape("mask", (4096, 4096)) == (4096, 4096)
    assert reference_shape("flat", (4096, 4096)) == (4088, 4088)
    assert reference_shape("refpix", (4096, 4096)) == (32, 286721)  # romancal's FFT length
    assert reference_shape("photom", (4096, 4096)) is None


def test_parkeys_match_crds_specs():
    import ast
    import importlib.util
    from pathlib import Path

    specs = Path(importlib.util.find_spec("crds").submodule_search_locations[0]) / "roman" / "specs"
    for reftype, spec in REFTYPES.items():
        text = (specs / f"wfi_{reftype}.rmap").read_text()
        header = ast.literal_eval(text.split("selector")[0].split("=", 1)[1].strip())
        assert tuple(tuple(k) for k in header["parkey"]) == spec.parkey, reftype


# --- the official format: roman_datamodels (reference implementation, tests only) ---


@pytest.mark.parametrize("reftype", sorted(REFTYPES))
def test_official_models_validate(refs, reftype):
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = rdm.open(refs[reftype])
    assert type(model).__name__ == get_spec(reftype).model_class
    model.validate()
    # DARKDECAYSIGNAL is one file for all detectors
    want = "NOT_CONFIGURED" if reftype == "darkdecaysignal" else "WFI07"
    assert model.meta.instrument.detector == want
    check_reference(model, reftype, SCIENCE, expected_shape=expected(reftype))


def test_official_files_are_read(tmp_path):
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    model = rdm.FlatRefModel.create_fake_data(shape=SCI)
    model.meta.instrument.detector = "WFI07"
    model.meta.instrument.optical_element = "F158"
    path = tmp_path / "roman_wfi_flat_0042.asdf"
    model.save(path)
    check_reference(path, "flat", SCIENCE, expected_shape=SCI)
    with pytest.raises(ReferenceFileError, match="roman_wfi_flat_0042.asdf: is a FLAT"):
        check_reference(path, "mask", SCIENCE)


def test_distortion_is_gwcs_compatible(refs):
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    transform = rdm.open(refs["distortion"]).coordinate_distortion_transform
    v2, v3 = transform(11.5, 11.5)
    x, y = transform.inverse(v2, v3)
    assert np.allclose((x, y), (11.5, 11.5))
    assert transform.bounding_box is not None
    v2b, _ = transform(12.5, 11.5)
    assert abs(np.hypot(v2b - v2, 0)) < 0.12


# --- interoperability with romancal_lite.datamodels (built by another worker) ---


# romancal_lite.datamodels has no EPSF/APCORR/INTEGRALNONLINEARITY model: source_catalog
# and linearity read those through open_reference_tree (tested in
# test_epsf_apcorr_content and tests/romancal_lite/steps/test_linearity_step.py)
LITE_MODEL_TYPES = sorted(set(REFTYPES) - {"epsf", "apcorr", "integralnonlinearity"})


@pytest.mark.parametrize("reftype", LITE_MODEL_TYPES)
def test_lite_datamodels_read_generated(refs, reftype):
    dm = pytest.importorskip("romancal_lite.datamodels")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dm.open(refs[reftype])
    want = "NOT_CONFIGURED" if reftype == "darkdecaysignal" else "WFI07"
    assert model.get_crds_parameters()["roman.meta.instrument.detector"] == want
    check_reference(model, reftype, SCIENCE, expected_shape=expected(reftype))
    wrong = "mask" if reftype != "mask" else "gain"
    with pytest.raises(ReferenceFileError, match=rf"^{reftype}.asdf: is a {reftype.upper()}"):
        check_reference(model, wrong, SCIENCE)
