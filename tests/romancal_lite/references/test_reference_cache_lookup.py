"""The reference cache: a cached copy is found without opening its original, and opened
without asdf validating its tree again (this package wrote it from a validated tree)."""

from __future__ import annotations

from pathlib import Path

import asdf
import numpy as np
import pytest

import romancal_lite.datamodels as dm
from romancal_lite.references import uncompressed
from romancal_lite.steps.saturation.saturation_step import SaturationStep

pytest.importorskip("lz4")


def _compressed_file(tmp_path: Path) -> Path:
    path = tmp_path / "roman_wfi_saturation_wfi01.asdf"
    dm.write_asdf_atomic(path, {"values": np.arange(20000, dtype=np.float32)},
                         all_array_compression="lz4")
    assert uncompressed.has_compressed_arrays(path)
    return path


def test_cached_copy_is_found_without_opening_the_original(tmp_path, monkeypatch) -> None:
    original = _compressed_file(tmp_path)
    cache = tmp_path / "cache"
    copy = uncompressed.uncompressed_reference(original, cache)
    assert copy != original and copy.parent == cache
    assert not uncompressed.has_compressed_arrays(copy)

    def refuse(*args, **kwargs):
        raise AssertionError("the original was opened")

    monkeypatch.setattr(uncompressed, "has_compressed_arrays", refuse)
    monkeypatch.setattr(dm, "open_asdf_file", refuse)
    assert uncompressed.uncompressed_reference(original, cache) == copy


def test_uncompressed_original_is_its_own_answer(tmp_path) -> None:
    path = tmp_path / "plain.asdf"
    dm.write_asdf_atomic(path, {"values": np.arange(10.0)})
    assert uncompressed.uncompressed_reference(path, tmp_path / "cache") == path
    assert not (tmp_path / "cache").exists()
    missing = tmp_path / "missing.asdf"  # the reader reports it, not the cache
    assert uncompressed.uncompressed_reference(missing, tmp_path / "cache") == missing


def test_open_without_validation(tmp_path, monkeypatch) -> None:
    path = tmp_path / "plain.asdf"
    dm.write_asdf_atomic(path, {"values": np.arange(10.0)})
    calls = []
    real = asdf.schema.validate
    monkeypatch.setattr(asdf.schema, "validate",
                        lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    with dm.open_asdf_file(path) as af:
        np.testing.assert_array_equal(af.tree["values"], np.arange(10.0))
    assert calls
    calls.clear()
    with dm.open_asdf_file(path, validate=False) as af:
        np.testing.assert_array_equal(af.tree["values"], np.arange(10.0))
    assert not calls
    # the context's setting does not leak into the next open
    with dm.open_asdf_file(path) as af:
        pass
    assert calls


class _Stop(Exception):
    pass


@pytest.mark.parametrize("cached", [True, False])
def test_open_reference_validates_only_originals(tmp_path, monkeypatch, cached) -> None:
    original = _compressed_file(tmp_path)
    if cached:
        monkeypatch.setenv(uncompressed.CACHE_ENV, str(tmp_path / "cache"))
    else:
        monkeypatch.delenv(uncompressed.CACHE_ENV, raising=False)
    opened = []

    def fake_open(path, **kwargs):
        opened.append((path, kwargs))
        raise _Stop

    monkeypatch.setattr(dm, "open", fake_open)
    step = SaturationStep(override_saturation=str(original))
    step._reference_files_used = []
    with pytest.raises(_Stop):
        step.open_reference(object(), "saturation")
    ((path, kwargs),) = opened
    assert (Path(path) != original) is cached
    assert kwargs["validate"] is (not cached)


def test_block_headers_read_without_validation(tmp_path, monkeypatch) -> None:
    original = _compressed_file(tmp_path)
    calls = []
    monkeypatch.setattr(asdf.schema, "validate", lambda *a, **k: calls.append(1))
    assert uncompressed.has_compressed_arrays(original)
    assert not calls
