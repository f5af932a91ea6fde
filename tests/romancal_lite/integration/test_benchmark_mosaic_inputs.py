"""The mosaic benchmark's inputs: official-format ``_cal`` files by default.

``benchmarks/mosaic.py`` gives both pipelines the files as roman_datamodels saves them
(every array block lz4-compressed); ``compressed=False`` (``--uncompressed-inputs``)
the uncompressed files romancal-lite wrote.  Small images here (the benchmark's are
full frames).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
SHAPE = (64, 64)

pytestmark = [
    # roman_datamodels reading our files: "created with extension ... not installed"
    pytest.mark.filterwarnings("ignore::asdf.exceptions.AsdfPackageVersionWarning"),
]


def _mosaic_benchmark() -> Any:
    pytest.importorskip("roman_datamodels")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from benchmarks import mosaic

    return mosaic


def _arrays(path: Path) -> dict[str, tuple[np.ndarray, str | None]]:
    """Every top-level array of ``roman``: its values and its block compression."""
    import asdf

    out = {}
    with asdf.open(path, lazy_load=False, memmap=False) as af:
        for name, value in af["roman"].items():
            if isinstance(value, np.ndarray):
                out[name] = (np.array(value), af.get_array_compression(value))
    return out


def _writer_software(path: Path) -> set[str]:
    import asdf

    with asdf.open(path, lazy_load=True) as af:
        return {str(ext.software["name"]) for ext in af["history"]["extensions"]
                if getattr(ext, "software", None)}  # fmt: skip


def _filename(path: Path) -> str:
    import asdf

    with asdf.open(path, lazy_load=True) as af:
        return str(af["roman"]["meta"]["filename"])


def _asn_members(asn: Path) -> list[Path]:
    tree = json.loads(asn.read_text())
    members = tree["products"][0]["members"]
    return [(asn.parent / m["expname"]).resolve() for m in members]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    mosaic = _mosaic_benchmark()
    workdir = tmp_path_factory.mktemp("mosaic")
    kwargs = {"var_rnoise": False, "n_stars": 5, "n_crs": 3}
    official, official_asn = mosaic.prepare_inputs(workdir, 2, SHAPE, **kwargs)
    plain, plain_asn = mosaic.prepare_inputs(workdir, 2, SHAPE, compressed=False, **kwargs)
    return {"official": (official, official_asn), "plain": (plain, plain_asn)}


def test_default_inputs_are_roman_datamodels_lz4_copies(inputs: dict[str, Any]) -> None:
    official, asn = inputs["official"]
    plain, _ = inputs["plain"]
    assert [p.name for p in official] == [p.name for p in plain]
    assert all(p.parent.name == "official" for p in official)
    assert _asn_members(asn) == [p.resolve() for p in official]
    for copy, original in zip(official, plain, strict=True):
        assert "roman_datamodels" in _writer_software(copy)
        assert _filename(copy) == copy.name  # as recorded by roman_datamodels' save
        copied, written = _arrays(copy), _arrays(original)
        assert sorted(copied) == sorted(written)
        assert "var_rnoise" not in copied  # romancal 1.1's _cal default (here)
        for name, (values, compression) in copied.items():
            assert compression == "lz4", name
            assert values.dtype == written[name][0].dtype, name
            assert np.array_equal(values, written[name][0], equal_nan=True), name


def test_uncompressed_inputs_are_romancal_lite_files(inputs: dict[str, Any]) -> None:
    plain, asn = inputs["plain"]
    assert _asn_members(asn) == [p.resolve() for p in plain]
    for path in plain:
        assert "roman_datamodels" not in _writer_software(path)
        assert all(c is None for _, c in _arrays(path).values())


def test_official_copies_are_reused(inputs: dict[str, Any]) -> None:
    mosaic = _mosaic_benchmark()
    official, _ = inputs["official"]
    plain, _ = inputs["plain"]
    stamps = [p.stat().st_mtime_ns for p in official]
    again = mosaic.official_inputs(plain, official[0].parent)
    assert again == official
    assert [p.stat().st_mtime_ns for p in again] == stamps
