"""Reading the genuine romanisim Level 1 file, in a process without roman_datamodels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from astropy.time import Time

import romancal_lite.datamodels as dm

ROOT = Path(__file__).resolve().parents[3]
REAL_FILE = ROOT.parent / "shared" / "data" / "romanisim_l1_strip_wfi02_ma109.asdf"
MA109 = [
    [1],
    [2, 3],
    [5, 6, 7],
    [10, 11, 12, 13],
    [15, 16, 17, 18, 19, 20],
    [21, 22, 23, 24, 25, 26],
    [27, 28, 29, 30, 31, 32],
    [33, 34, 35, 36, 37, 38],
    [39, 40, 41, 42, 43],
    [44],
]

pytestmark = pytest.mark.skipif(not REAL_FILE.exists(), reason="real Level 1 file not available")

# Runs in a fresh interpreter: roman_datamodels / rad / romancal / romanisim are made
# unimportable *and* their asdf plugins (extensions + schema resource mappings) are
# removed from the asdf configuration before romancal_lite is imported.
CLEAN_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    for name in ("roman_datamodels", "rad", "romancal", "romanisim", "stpipe"):
        sys.modules[name] = None
    warnings.simplefilter("ignore")
    import asdf
    cfg = asdf.get_config()
    for pkg in ("roman_datamodels", "rad", "romancal", "romanisim"):
        cfg.remove_extension(package=pkg)
        cfg.remove_resource_mapping(package=pkg)
    roman_uris = [e.extension_uri for e in cfg.extensions
                  if (e.extension_uri or "").startswith("asdf://stsci.edu/datamodels/roman")]
    schema_known = "asdf://stsci.edu/datamodels/roman/schemas/wfi_science_raw-2.1.0" in (
        cfg.resource_manager)
    try:
        import roman_datamodels  # noqa: F401
        rdm_importable = True
    except ImportError:
        rdm_importable = False
    import romancal_lite.datamodels as dm
    from astropy.time import Time
    with dm.open(sys.argv[1]) as model:
        lazy_before = type(model._node._data["data"]).__name__
        out = {
            "roman_uris": roman_uris,
            "schema_known": schema_known,
            "rdm_importable": rdm_importable,
            "rdm_loaded": sorted(m for m in sys.modules
                                 if m.split(".")[0] in ("roman_datamodels", "rad")
                                 and sys.modules[m] is not None),
            "cls": type(model).__name__,
            "tag": model.tag,
            "read_pattern": dm.read_pattern(model),
            "frame_time": dm.frame_time(model),
            "start_is_time": isinstance(model.meta.exposure.start_time, Time),
            "start": model.meta.exposure.start_time.isot,
            "lazy_before": lazy_before,
            "shape": list(model.data.shape),
            "dtype": str(model.data.dtype),
            "lazy_amp33_after_data": type(model._node._data["amp33"]).__name__,
            "amp33": list(model.amp33.shape),
            "detector": model.meta.instrument.detector,
            "optical_element": model.meta["instrument"]["optical_element"],
            "checksum": int(model.data[:, 100:110, 10:20].astype("int64").sum()),
        }
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def clean_result() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", CLEAN_SCRIPT, str(REAL_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_clean_env_really_has_no_roman_datamodels(clean_result):
    assert clean_result["roman_uris"] == []
    assert not clean_result["schema_known"]
    assert not clean_result["rdm_importable"]
    assert clean_result["rdm_loaded"] == []


def test_clean_env_reads_real_file(clean_result):
    r = clean_result
    assert r["cls"] == "ScienceRawModel"
    assert r["tag"] == "asdf://stsci.edu/datamodels/roman/tags/wfi_science_raw-2.1.0"
    assert r["read_pattern"] == MA109
    assert r["frame_time"] == pytest.approx(3.16247)
    assert r["start_is_time"] and r["start"] == "2026-01-01T00:00:00.000"
    assert r["shape"] == [10, 4096, 128] and r["dtype"] == "uint16"
    assert r["amp33"] == [10, 4096, 128]
    assert r["detector"] == "WFI02" and r["optical_element"] == "F158"
    # arrays are lazy: nothing read before first access, amp33 still unread after data
    assert r["lazy_before"] == "NDArrayType"
    assert r["lazy_amp33_after_data"] == "NDArrayType"


def test_clean_env_matches_in_process_read(clean_result):
    with dm.open(REAL_FILE) as model:
        expected = int(model.data[:, 100:110, 10:20].astype("int64").sum())
    assert clean_result["checksum"] == expected


def test_open_real_file_in_process():
    with dm.open(REAL_FILE) as model:
        assert isinstance(model, dm.ScienceRawModel)
        assert model.crds_observatory == "roman"
        assert isinstance(model.meta.exposure.mid_time, Time)
        assert model.meta.exposure.read_pattern == MA109
        assert model.meta["exposure"]["nresultants"] == 10
        assert model.meta["exposure.ma_table_number"] == 109
        assert model.meta.filename == REAL_FILE.name
        assert model.shape == (10, 4096, 128)
        assert model.amp33.dtype == np.uint16
        params = model.get_crds_parameters()
        assert params["roman.meta.instrument.detector"] == "WFI02"
        assert params["roman.meta.exposure.start_time"] == "2026-01-01T00:00:00.000"
        assert all(k.startswith("roman.meta.") for k in params)


def test_model_type_and_constructor_check():
    with dm.ScienceRawModel(REAL_FILE) as model:
        assert model.meta.exposure.type == "WFI_IMAGE"
    with pytest.raises(dm_errors().InputFileError, match="not a RampModel"):
        dm.open(REAL_FILE, model_type=dm.RampModel)
    with pytest.raises(dm_errors().InputFileError, match="not a ImageModel|not an? ImageModel"):
        dm.ImageModel(REAL_FILE)


def test_crds_parameters_match_roman_datamodels():
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rdm.open(REAL_FILE) as ref:
            expected = ref.get_crds_parameters()
    with dm.open(REAL_FILE) as model:
        assert model.get_crds_parameters() == expected


def test_info_and_search(capsys):
    with dm.open(REAL_FILE) as model:
        model.info(max_rows=30)
        out = capsys.readouterr().out
        assert "roman (WfiScienceRaw)" in out
        assert "meta" in out
        result = model.search("read_pattern")
        assert "read_pattern" in repr(result)
        assert "cal_step" not in repr(model.search("cal_step"))


def dm_errors():
    import romancal_lite.errors as errors

    return errors
