"""Tests of the photom step: meta.photometry from the PHOTOM table, as romancal 1.1."""

import numpy as np
import pytest
from astropy import units as u
from astropy.time import Time

from romancal_lite import datamodels
from romancal_lite.errors import ReferenceFileError
from romancal_lite.references import (
    OPTICAL_ELEMENTS,
    build_reference,
    get_reference_file,
    write_reference,
)
from romancal_lite.steps.photom import PhotomStep, select_photometry

SHAPE = (32, 248)
IMAGING = [e for e in OPTICAL_ELEMENTS if e.startswith("F")]
PLACEHOLDERS = {
    "conversion_megajanskys": -999999.0,
    "conversion_megajanskys_uncertainty": -999999.0,
    "pixel_area": -999999.0,
}


def make_image(element="F158", detector="WFI01"):
    model = datamodels.ImageModel.create_fake_data(shape=SHAPE)
    meta = model.meta
    meta.instrument.detector = detector
    meta.instrument.optical_element = element
    meta.exposure.type = "WFI_IMAGE" if element.upper().startswith("F") else "WFI_SPECTRAL"
    meta.exposure.start_time = Time("2026-05-01T00:00:00", format="isot", scale="utc")
    model.data = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    return model


def photometry(model):
    return {key: model.meta.photometry[key] for key in PLACEHOLDERS}


def write_photom(path, detector="WFI01", table=None):
    node = build_reference("photom", detector, (40, 256), "2020-01-01T00:00:00")
    if table is None:
        write_reference(path, node)
    else:
        # written by romancal_lite.datamodels, which does not validate the schema
        model = datamodels.PhotomRefModel(dict(node))
        model.phot_table = table
        model.save(path)
    return str(path)


@pytest.mark.parametrize("element", ["F158", "GRISM", "DARK"])
def test_step(builtin_refs, element):
    model = make_image(element)
    data = model.data.copy()
    result = PhotomStep.call(model)
    path = get_reference_file(model, "photom")
    with datamodels.open(path) as ref:
        assert photometry(result) == select_photometry(ref.phot_table, element)
    if element == "F158":
        assert all(v > 0 for v in photometry(result).values())
    else:
        assert photometry(result) == dict.fromkeys(PLACEHOLDERS)
    np.testing.assert_array_equal(result.data, data)
    assert result.meta.cal_step.photom == "COMPLETE"
    assert result.meta.ref_file.photom == path


def test_every_element_of_builtin_table(builtin_refs):
    path = get_reference_file(make_image(), "photom")
    with datamodels.open(path) as ref:
        table = ref.phot_table
        for element in OPTICAL_ELEMENTS:
            entry = table[element]
            expected = {
                "conversion_megajanskys": entry["photmjsr"],
                "conversion_megajanskys_uncertainty": entry["uncertainty"],
                "pixel_area": entry["pixelareasr"],
            }
            assert select_photometry(table, element) == expected
            if element in IMAGING:
                assert all(isinstance(v, float) and v > 0 for v in expected.values())
            else:
                # spectral elements and DARK: null in the table -> None in meta.photometry
                assert expected == dict.fromkeys(PLACEHOLDERS), element


def test_lower_case_element(builtin_refs):
    result = PhotomStep.call(make_image("f158"))
    assert result.meta.photometry.conversion_megajanskys > 0
    assert result.meta.cal_step.photom == "COMPLETE"


def test_matches_romancal(builtin_refs):
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    official = pytest.importorskip("romancal.photom.photom")
    ours = PhotomStep.call(make_image("PRISM"))
    path = get_reference_file(ours, "photom")
    with rdm.open(path) as theirs_ref, datamodels.open(path) as ours_ref:
        for element in OPTICAL_ELEMENTS:
            theirs = rdm.ImageModel.create_fake_data(shape=(2, 2))
            theirs.meta.instrument.optical_element = element
            official.apply_photom(theirs, theirs_ref)
            want = {key: theirs.meta.photometry[key] for key in PLACEHOLDERS}
            assert select_photometry(ours_ref.phot_table, element) == want, element
            if element == "PRISM":
                assert photometry(ours) == want


def test_element_missing_from_table(builtin_refs, tmp_path):
    entry = {
        "photmjsr": 1.0,
        "uncertainty": 0.1,
        "pixelareasr": 2.8e-13,
        "collecting_area": 3.7,
        "wavelength": np.ones(2, np.float32),
        "effective_area": np.ones(2, np.float32),
    }
    ref = write_photom(tmp_path / "photom.asdf", table={"F158": entry})
    result = PhotomStep.call(make_image("F062"), override_photom=ref)
    assert photometry(result) == PLACEHOLDERS
    assert result.meta.cal_step.photom == "SKIPPED"
    result = PhotomStep.call(make_image("F158"), override_photom=ref)
    assert photometry(result) == {
        "conversion_megajanskys": 1.0,
        "conversion_megajanskys_uncertainty": 0.1,
        "pixel_area": 2.8e-13,
    }


def test_malformed_entry(builtin_refs, tmp_path):
    ref = write_photom(tmp_path / "photom.asdf", table={"F158": {"photmjsr": 1.0}})
    with pytest.raises(ReferenceFileError, match="no 'uncertainty'"):
        PhotomStep.call(make_image("F158"), override_photom=ref)


def test_not_applicable_skips(builtin_refs):
    result = PhotomStep.call(make_image(), override_photom="N/A")
    assert photometry(result) == PLACEHOLDERS
    assert result.meta.cal_step.photom == "SKIPPED"


def test_not_applicable_via_the_runner_one_warning(builtin_refs, run_cli):
    model = make_image()
    del model.meta.instrument["optical_element"]  # not looked at without a reference
    assert PhotomStep.call(model, override_photom="N/A").meta.cal_step.photom == "SKIPPED"
    run = run_cli("photom", make_image(), "--override-photom", "N/A")
    assert run.status == 0, run.err
    assert len(run.warnings) == 1 and "PHOTOM" in run.warnings[0], run.warnings
    (output,) = run.out.iterdir()
    with datamodels.open(output) as saved:
        assert saved.meta.cal_step.photom == "SKIPPED"


def test_wrong_detector(builtin_refs, tmp_path):
    ref = write_photom(tmp_path / "photom.asdf", detector="WFI05")
    with pytest.raises(ReferenceFileError, match="detector WFI05"):
        PhotomStep.call(make_image(), override_photom=ref)


def test_wrong_reference_type(builtin_refs):
    flat = get_reference_file(make_image(), "flat")
    with pytest.raises(ReferenceFileError, match="FLAT reference file, expected PHOTOM"):
        PhotomStep.call(make_image(), override_photom=flat)


def test_select_photometry_values():
    table = {
        "F158": {"photmjsr": np.float32(0.5), "uncertainty": 0.01, "pixelareasr": 3e-13},
        "F213": {
            "photmjsr": 2.0 * u.MJy / u.sr,
            "uncertainty": 0.1 * u.MJy / u.sr,
            "pixelareasr": 1.0 * u.arcsec**2,
        },
    }
    values = select_photometry(table, "f158")
    assert values == {
        "conversion_megajanskys": 0.5,
        "conversion_megajanskys_uncertainty": 0.01,
        "pixel_area": 3e-13,
    }
    assert all(type(v) is float for v in values.values())
    values = select_photometry(table, "F213")
    assert values["conversion_megajanskys"] == 2.0
    assert values["pixel_area"] == pytest.approx((1 / 206264.80624709636) ** 2)
    assert select_photometry(table, "GRISM") is None
    assert select_photometry(table, None) is None
