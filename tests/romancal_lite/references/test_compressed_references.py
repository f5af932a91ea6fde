"""Official files have compressed blocks: every compression roman_datamodels writes reads.

roman_datamodels writes lz4 by default (every official CRDS reference file has lz4
blocks); asdf also writes zlib and bzp2. Each reference of ``roman_elp`` and the input
exposure are re-written by roman_datamodels itself with each compression, and the
pipeline must give exactly the result it gives with the uncompressed files.
"""

from __future__ import annotations

import importlib.metadata
import re

import asdf
import numpy as np
import pytest

from romancal_lite import cli, datamodels, simulate
from romancal_lite.references import builtin_cache, generate_cache, get_reference_files

rdm = pytest.importorskip("roman_datamodels.datamodels")

SHAPE = (40, 128)
NAME = "r0000101001001001001_0001_wfi07"
REFTYPES = ("mask", "saturation", "linearity", "inverselinearity", "integralnonlinearity",
            "readnoise", "gain", "dark", "distortion", "photom", "flat", "epsf", "apcorr",
            "darkdecaysignal", "refpix")
COMPRESSIONS = ("lz4", "zlib", "bzp2")


def test_lz4_is_a_declared_dependency():
    requires = importlib.metadata.requires("romancal-lite") or []
    names = {re.split(r"[ <>=!;\[]", r, maxsplit=1)[0].lower() for r in requires
             if "extra ==" not in r}
    assert "lz4" in names


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compressed")
    cache = generate_cache(tmp / "crds", full_shape=SHAPE)
    uncal = tmp / f"{NAME}_uncal.asdf"
    with builtin_cache(cache, hide_user_crds=True):
        simulate.write_exposure(uncal, shape=SHAPE, detector="WFI07", read_pattern="ma4",
                                seed=11, n_stars=4, cr_rate=1e-4)
        with datamodels.open(uncal) as model:
            paths = get_reference_files(model, REFTYPES)
    return tmp, cache, uncal, paths


def _calibrate(directory, uncal, overrides):
    # every reference is given: no CRDS and no built-in reference is needed
    argv = ["run", "roman_elp", str(uncal), "--output-dir", str(directory)]
    for reftype, path in overrides.items():
        argv += [f"--override-{reftype}", str(path)]
    assert cli.main(argv) == 0
    with datamodels.open(directory / f"{NAME}_cal.asdf") as cal:
        return {name: np.array(getattr(cal, name)) for name in ("data", "err", "dq")}


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_pipeline_reads_compressed_official_files(setup, compression):
    tmp, _, uncal, paths = setup
    reference = _calibrate(tmp / "plain", uncal, paths)
    work = tmp / compression
    work.mkdir()
    overrides = {}
    for reftype, path in paths.items():
        out = work / f"{reftype}.asdf"
        with rdm.open(path) as model:  # roman_datamodels' own reader and writer
            model.save(out, all_array_compression=compression)
        overrides[reftype] = out
    raw = work / uncal.name
    with rdm.open(uncal) as model:
        model.save(raw, all_array_compression=compression)
    for path in (*overrides.values(), raw):
        with asdf.open(path, lazy_load=True) as af:
            kinds = {bytes(b.header["compression"]).rstrip(b"\0") for b in af._blocks.blocks}
        if kinds:  # photom and distortion have no blocks
            assert kinds == {compression.encode()}, path
    result = _calibrate(work / "out", raw, overrides)
    for name, array in reference.items():
        np.testing.assert_array_equal(result[name], array, err_msg=name)


def _official_copies(setup, compression):
    tmp, _, uncal, paths = setup
    work = tmp / f"{compression}_copies"
    if not work.exists():
        work.mkdir()
        for reftype, path in paths.items():
            with rdm.open(path) as model:
                model.save(work / f"{reftype}.asdf", all_array_compression=compression)
    return {reftype: work / f"{reftype}.asdf" for reftype in paths}


def test_reference_cache_gives_the_same_result(setup, monkeypatch):
    """With ROMANCAL_LITE_REFERENCE_CACHE the steps read uncompressed copies, written once."""
    from romancal_lite.references import uncompressed

    tmp, _, uncal, paths = setup
    reference = _calibrate(tmp / "plain_for_cache", uncal, paths)
    overrides = _official_copies(setup, "lz4")
    cache = tmp / "refcache"
    monkeypatch.setenv(uncompressed.CACHE_ENV, str(cache))
    writes = []
    real_write = uncompressed._write_copy
    monkeypatch.setattr(uncompressed, "_write_copy",
                        lambda source, target: (writes.append(source.name),
                                                real_write(source, target)))
    for run in ("first", "second"):
        result = _calibrate(tmp / f"cached_{run}", uncal, overrides)
        for name, array in reference.items():
            np.testing.assert_array_equal(result[name], array, err_msg=name)
    copies = sorted(p.name.split("_", 1)[1] for p in cache.iterdir())
    compressed = sorted(p.name for p in overrides.values()
                        if uncompressed.has_compressed_arrays(p))
    # the image references of every step (EPSF, APCORR and the INL table are small
    # trees read by other means; refpix here uses its reference-free algorithm)
    images = {f"{t}.asdf" for t in ("mask", "saturation", "linearity", "inverselinearity",
                                      "dark", "gain", "readnoise", "flat")}
    assert images <= set(copies) <= set(compressed)
    assert sorted(writes) == copies  # written by the first run only
    for copy in cache.iterdir():
        assert not uncompressed.has_compressed_arrays(copy)
    # a changed original is not served from its old copy
    original = overrides["gain"]
    before = uncompressed.uncompressed_reference(original)
    original.touch()
    import os
    os.utime(original, ns=(0, os.stat(original).st_mtime_ns + 10**9))
    assert uncompressed.uncompressed_reference(original) != before


def test_reference_cache_off_by_default(setup, monkeypatch):
    from romancal_lite.references import uncompressed

    monkeypatch.delenv(uncompressed.CACHE_ENV, raising=False)
    path = _official_copies(setup, "lz4")["gain"]
    assert uncompressed.reference_cache_dir() is None
    assert uncompressed.uncompressed_reference(path) == path
