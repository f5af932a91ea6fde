"""roman_mos on bad input: one clear line and exit status 1, or the documented skip.

Every error case also checks that nothing is written: no output at all in a fresh
directory, and an earlier product left byte for byte as it was.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from romancal_lite import datamodels
from romancal_lite.associations import asn_from_list, write_asn
from romancal_lite.cli import main
from romancal_lite.datamodels import ModelLibrary
from romancal_lite.pipeline.mosaic_pipeline import footprint_coverage
from romancal_lite.references import builtin_cache, generate_cache

sys.path.insert(0, str(Path(__file__).parents[1] / "steps"))
import mosaic_data as md  # noqa: E402

SKIP_CATALOG = ["--steps.source_catalog.skip", "true"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("crds")
    return generate_cache(root, full_shape=(72, 72), reftypes=("epsf", "apcorr"))


def _image(exposure, detector=1, dither=(0.0, 0.0)):
    stars = [(a, b, 20 * f) for a, b, f in md.stars_in((64, 64), 8, 3)]
    return md.make_image(exposure, detector, dither=dither, stars=stars, sigma=2.0)


def _asn(directory, models, name="field"):
    paths = [m.save(directory / m.meta.filename) for m in models]
    asn = directory / f"{name}_asn.json"
    write_asn(asn_from_list(paths, name, relative_to=directory), asn)
    return asn


def _run(cache, asn, out, *extra):
    with builtin_cache(cache, hide_user_crds=True):
        return main(["run", "roman_mos", str(asn), "--output-dir", str(out), *extra])


def _one_error_line(capsys, *words):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _assert_nothing_written(out, before=None):
    if before is None:
        assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
    else:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def _previous_product(out):
    out.mkdir()
    (out / "field_coadd.asdf").write_bytes(b"an earlier mosaic")
    return {"field_coadd.asdf": b"an earlier mosaic"}


def test_missing_member_file_in_the_association(cache, tmp_path, capsys):
    asn = _asn(tmp_path, [_image(1), _image(2, dither=(5.3, 3.1))])
    tree = json.loads(asn.read_text())
    tree["products"][0]["members"].append({"expname": "lost_cal.asdf", "exptype": "science"})
    asn.write_text(json.dumps(tree))
    out = tmp_path / "out"
    before = _previous_product(out)
    assert _run(cache, asn, out, *SKIP_CATALOG) == 1
    _one_error_line(capsys, "lost_cal.asdf")
    _assert_nothing_written(out, before)


def test_missing_file_given_on_the_command_line(cache, tmp_path, capsys):
    path = _image(1).save(tmp_path / "e1_wfi01_cal.asdf")
    with builtin_cache(cache, hide_user_crds=True):
        status = main(["run", "roman_mos", str(path), str(tmp_path / "nothere_cal.asdf"),
                       "--output-dir", str(tmp_path / "out")])
    assert status == 1
    _one_error_line(capsys, "nothere_cal.asdf")
    _assert_nothing_written(tmp_path / "out")
    assert main(["asn", "-o", str(tmp_path / "x_asn.json"), "--product-name", "x",
                 str(path), str(tmp_path / "gone_cal.asdf")]) == 1
    _one_error_line(capsys, "gone_cal.asdf")
    assert not (tmp_path / "x_asn.json").exists()


def test_inputs_far_apart_are_refused(cache, tmp_path, capsys):
    """2 degrees apart: the footprint union would be a ~65000-pixel, empty grid."""
    asn = _asn(tmp_path, [_image(1), _image(2, dither=(7200.0, 0.0))])
    out = tmp_path / "out"
    before = _previous_product(out)
    assert _run(cache, asn, out, *SKIP_CATALOG) == 1
    line = _one_error_line(capsys, "do not overlap", "e1_wfi01_cal.asdf", "min_coverage")
    assert "2 deg" in line
    _assert_nothing_written(out, before)
    with ModelLibrary(asn) as library:
        coverage, extent, names = footprint_coverage(library)
    assert coverage < 0.01 and extent == pytest.approx(2.0, rel=0.01)
    assert names == ["e1_wfi01_cal.asdf", "e2_wfi01_cal.asdf"]


def test_inputs_side_by_side_without_overlap_are_combined(cache, tmp_path, caplog):
    """Adjacent detectors do not overlap either: a valid mosaic, skymatch skipped."""
    asn = _asn(tmp_path, [_image(1, 1), _image(1, 2)])
    with ModelLibrary(asn) as library:
        coverage, _, _ = footprint_coverage(library)
    assert 0.2 < coverage <= 1.0  # two 64-pixel squares in a box tilted 30 deg
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        assert _run(cache, asn, out, *SKIP_CATALOG) == 0
    assert any("no two images overlap" in r.getMessage() for r in caplog.records)
    with datamodels.open(out / "field_coadd.asdf") as mosaic:
        assert mosaic.meta.cal_step.skymatch == "SKIPPED"
        covered = np.isfinite(mosaic.data)
        assert covered.sum() >= 0.95 * 2 * 64 * 64
        assert np.nanmedian(mosaic.data) == pytest.approx(0.5, abs=1e-3)


def test_single_input_skips_the_comparisons(cache, tmp_path, caplog):
    """One image: skymatch and outlier_detection are skipped (documented), the mosaic made."""
    asn = _asn(tmp_path, [_image(1)])
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        assert _run(cache, asn, out) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("outlier_detection skipped" in m for m in messages), messages
    assert sorted(p.name for p in out.iterdir()) == [
        "field_cat.parquet", "field_coadd.asdf", "field_segm.asdf"]
    with datamodels.open(out / "field_coadd.asdf") as mosaic:
        assert mosaic.meta.cal_step.outlier_detection == "SKIPPED"
        assert mosaic.meta.cal_step.skymatch == "SKIPPED"
        assert mosaic.meta.resample.members == ["e1_wfi01_cal.asdf"]


def test_inputs_in_different_filters_are_refused(cache, tmp_path, capsys):
    other = _image(2, dither=(5.3, 3.1))
    other.meta.instrument.optical_element = "F129"
    asn = _asn(tmp_path, [_image(1), other])
    out = tmp_path / "out"
    before = _previous_product(out)
    assert _run(cache, asn, out, *SKIP_CATALOG) == 1
    _one_error_line(capsys, "F129", "F158")
    _assert_nothing_written(out, before)


def test_inputs_in_different_units_are_brought_to_one(cache, tmp_path):
    """One input still in DN/s (flux not applied), one already in MJy/sr: one mosaic."""
    dn = _image(2, dither=(5.3, 3.1))
    dn.data = dn.data / np.float32(0.5)  # DN/s with 0.5 MJy/sr per DN/s
    dn.meta.photometry.conversion_megajanskys = 0.5
    dn.meta.cal_step.flux = "INCOMPLETE"
    asn = _asn(tmp_path, [_image(1), dn])
    out = tmp_path / "out"
    assert _run(cache, asn, out, *SKIP_CATALOG, "--steps.skymatch.skip", "true") == 0
    with datamodels.open(out / "field_coadd.asdf") as mosaic:
        assert np.nanmedian(mosaic.data) == pytest.approx(0.5, abs=1e-3)
        assert mosaic.meta.cal_step.flux == "COMPLETE"


def test_input_without_a_unit_conversion_is_refused(cache, tmp_path, capsys):
    """DN/s without meta.photometry's conversion: it cannot be put in MJy/sr."""
    dn = _image(2, dither=(5.3, 3.1))
    dn.meta.photometry.conversion_megajanskys = -999999.0
    dn.meta.cal_step.flux = "INCOMPLETE"
    asn = _asn(tmp_path, [_image(1), dn])
    out = tmp_path / "out"
    before = _previous_product(out)
    assert _run(cache, asn, out, *SKIP_CATALOG) == 1
    _one_error_line(capsys, "e2_wfi01_cal.asdf")
    _assert_nothing_written(out, before)
