"""asdf_context: Roman files are read and written without roman_datamodels' extensions."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path

import asdf
import numpy as np
import pytest
from test_datamodels_io import make_image, make_ramp

import romancal_lite.datamodels as dm
from romancal_lite.datamodels._converters import (
    NOT_LOADED,
    NOT_LOADED_RESOURCES,
    _installed_extensions,
    _resource_manager,
)

HAVE_RDM = importlib.util.find_spec("roman_datamodels") is not None


def _run(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.skipif(not HAVE_RDM, reason="roman_datamodels not installed: nothing to leave out")
def test_reading_and_writing_never_import_roman_datamodels(tmp_path: Path) -> None:
    src = tmp_path / "ramp.asdf"
    make_ramp().save(src, all_array_compression="lz4")  # compressed: asdf's codec look-up
    out = tmp_path / "copy.asdf"
    lines = _run(
        "import sys, asdf\n"
        "import romancal_lite.datamodels as dm\n"
        # the schemas' resource manager is built once, not per file
        "with dm.asdf_context() as config:\n"
        "    manager = config.resource_manager\n"
        "with dm.asdf_context() as config:\n"
        "    print(int(manager is config.resource_manager))\n"
        f"m = dm.open({str(src)!r})\n"
        "m.load_arrays()\n"
        f"m.save({str(out)!r})\n"
        "m.close()\n"
        "print(int('roman_datamodels' in sys.modules),\n"
        "      int(asdf.get_config()._extensions is None))\n"
        # stpipe's schemas are not loaded (nor stpipe imported); asdf's own list untouched
        "print(int('stpipe' in sys.modules), int(asdf.get_config()._resource_mappings is None))\n"
        # the process's own asdf configuration is untouched: roman_datamodels still works
        "import roman_datamodels.datamodels as rdm\n"
        f"print(type(rdm.open({str(out)!r})).__name__)\n"
    )
    assert lines == ["1", "0", "1", "0", "1", "RampModel"]


def test_context_leaves_out_only_stpipe_schemas() -> None:
    names = {m.package_name for m in _resource_manager()[0]}
    assert not names & NOT_LOADED_RESOURCES
    assert {"asdf", "asdf_standard", "rad"} <= names
    everything = {m.package_name for m in asdf.get_config().resource_mappings}
    assert names == everything - NOT_LOADED_RESOURCES


def test_context_leaves_out_only_not_loaded_packages() -> None:
    names = {e.package_name for e in _installed_extensions()}
    assert not names & NOT_LOADED
    assert {"asdf", "asdf-astropy"} <= names  # core tags, Time, units
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        everything = {e.package_name for e in asdf.get_config().extensions}
    assert names == everything - NOT_LOADED
    # the same extensions, in asdf's order, from the same manifests (read with libyaml)
    def described(extensions):
        return [(e.package_name, e.extension_uri, sorted(t.tag_uri for t in e.tags),
                 e.legacy_class_names, [type(c.delegate).__name__ for c in e.converters])
                for e in extensions if e.package_name not in NOT_LOADED]

    assert described(_installed_extensions()) == described(asdf.get_config().extensions)
    with dm.asdf_context() as config:
        assert {e.package_name for e in config.extensions} == names
    # asdf's global configuration keeps every installed extension
    assert {e.package_name for e in asdf.get_config().extensions} == everything


def test_saved_float16_arrays_are_numpy_casts(tmp_path: Path) -> None:
    """The image's float16 arrays are written as NumPy would cast them (to_float16)."""
    image = make_image(make_ramp(ny=40, nx=36))
    rng = np.random.default_rng(5)
    tiny = (rng.standard_normal(image.data.shape) * 1e-5).astype(np.float32)  # subnormal
    tiny[0, :3] = [np.nan, 7e4, -np.inf]  # NaN, overflow, infinity
    image.var_rnoise = tiny
    image.err = np.sqrt(np.abs(tiny)).astype(np.float32)
    image.save(tmp_path / "x_cal.asdf")
    with dm.open(tmp_path / "x_cal.asdf") as back:
        for name in ("var_rnoise", "err"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                expected = getattr(image, name).astype(np.float16)
            got = getattr(back, name)
            assert got.dtype == np.float16
            np.testing.assert_array_equal(got.view(np.uint16), expected.view(np.uint16))


def test_schema_documents_kept_in_every_process(tmp_path: Path) -> None:
    # not only in batch workers: one pipeline call validates ~10 files against the same
    # schemas, each of which asdf would otherwise parse again
    src = tmp_path / "ramp.asdf"
    make_ramp().save(src)
    lines = _run(
        "import asdf.schema as s\n"
        "import romancal_lite.datamodels as dm\n"
        "from romancal_lite.datamodels import _core\n"
        f"dm.open({str(src)!r}).close()\n"
        "print(int(getattr(s._make_jsonschema_refresolver, '_romancal_lite_keeps', False)),\n"
        "      int(len(_core._SCHEMA_DOCUMENTS) > 0))\n"
    )
    assert lines == ["1", "1"]
