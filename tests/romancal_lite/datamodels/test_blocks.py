"""preload_lz4_block: an lz4 block (the official files) decompressed by a thread pool."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from test_datamodels_io import make_ramp

import romancal_lite.datamodels as dm
from romancal_lite.datamodels._blocks import preload_lz4_block
from romancal_lite.datamodels._core import open_asdf_file
from romancal_lite.errors import InputFileError

pytest.importorskip("lz4")


def _big_ramp_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A RampModel whose ``data`` block (27 MB, 7 lz4 chunks) is worth the pool."""
    ramp = make_ramp(n=3, ny=16, nx=12)
    rng = np.random.default_rng(9)
    data = rng.normal(1000, 30, (3, 1500, 1500)).astype(np.float32)
    data[:, :700] = np.round(data[:, :700])  # some compressible chunks, some not
    ramp.data = data
    ramp.groupdq = np.zeros(data.shape, np.uint8)
    ramp.pixeldq = np.zeros(data.shape[1:], np.uint32)
    path = tmp_path / "big_ramp.asdf"
    ramp.save(path, all_array_compression="lz4")
    return path, data


def _data_block(af):
    value = af.tree["roman"]._data["data"]
    callback = value._data_callback
    return value, callback._read_blocks_ref()[callback._index]


def test_parallel_read_gives_the_same_bytes(tmp_path: Path) -> None:
    path, data = _big_ramp_file(tmp_path)
    with open_asdf_file(path) as af:
        value, block = _data_block(af)
        assert block.header["compression"] == b"lz4\0"
        assert preload_lz4_block(value, 2)  # read by the pool, not by asdf
        assert block._cached_data is not None
        np.testing.assert_array_equal(value._make_array(), data)
        assert not preload_lz4_block(value, 2)  # already in memory: nothing to do
    with dm.open(path, memmap=True) as model:  # the pipeline's way in
        np.testing.assert_array_equal(model.data, data)
        np.testing.assert_array_equal(model.groupdq, 0)


def test_left_to_asdf_when_single_threaded_or_uncompressed(tmp_path: Path) -> None:
    path, data = _big_ramp_file(tmp_path)
    with open_asdf_file(path) as af:
        value, block = _data_block(af)
        assert not preload_lz4_block(value, 1)
        assert block._cached_data is None
    plain = tmp_path / "plain.asdf"
    with dm.open(path) as model:
        model.save(plain)
    with open_asdf_file(plain) as af:
        value, _ = _data_block(af)
        assert not preload_lz4_block(value, 2)


def test_corrupt_chunk_header_is_a_one_line_error(tmp_path: Path) -> None:
    path, _ = _big_ramp_file(tmp_path)
    with open_asdf_file(path) as af:
        _, block = _data_block(af)
        start = block.data_offset
    raw = bytearray(path.read_bytes())
    (length,) = struct.unpack(">I", raw[start : start + 4])
    raw[start : start + 4] = struct.pack(">I", length + 1000)  # runs into the next chunk
    path.write_bytes(bytes(raw))
    with dm.open(path) as model, pytest.raises(InputFileError, match="cannot read array 'data'"):
        _ = model.data


def _asdf_checksummed(tree: dict, path: Path, compression: str | None) -> bytes:
    import asdf

    from romancal_lite.datamodels import asdf_context, get_extension

    with asdf_context():
        af = asdf.AsdfFile(extensions=[get_extension()])
        af.tree = tree
        with open(path, "wb") as fh:
            af.write_to(fh, all_array_compression=compression, write_checksums=True)
    return path.read_bytes()


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_checksums_filled_in_parallel_are_asdfs(tmp_path: Path, compression: str | None) -> None:
    """write_asdf_atomic's file is byte for byte the one asdf writes with its checksums."""
    rng = np.random.default_rng(4)
    tree = {
        "a": rng.normal(size=(300, 200)).astype(np.float32),
        "b": np.arange(5000, dtype=np.uint32),
        "c": np.zeros((0,), np.float64),
        "d": rng.integers(0, 9, (40, 40)).astype(np.uint8),
        "meta": {"note": "x\n...\ny"},  # a YAML end marker inside a string
    }
    ours = dm.write_asdf_atomic(tmp_path / "ours.asdf", tree,
                                all_array_compression=compression)
    expected = _asdf_checksummed(tree, tmp_path / "asdf.asdf", compression)
    assert ours.read_bytes() == expected
    with open_asdf_file(ours) as af:
        blocks = list(af._blocks.blocks)
        assert len(blocks) >= 3 and all(any(b.header["checksum"]) for b in blocks)


def test_block_data_are_written_by_threads_with_their_checksums(tmp_path: Path,
                                                                monkeypatch) -> None:
    """Uncompressed block data are written after asdf's pass, hashed from memory."""
    from romancal_lite.datamodels import _blocks

    rng = np.random.default_rng(8)
    tree = {"a": rng.normal(size=(300, 200)).astype(np.float32),
            "b": np.arange(70000, dtype=np.uint32), "s": np.ones(3, np.uint8)}
    written, read_back = [], []
    real_write, real_fill = _blocks.DeferredBlockData.write, _blocks.fill_checksums

    def write(self, fileno, n_threads, *, checksums=True):
        written.extend(len(data) for _, data in self.pieces)
        return real_write(self, fileno, n_threads, checksums=checksums)

    def fill(fileno, n_threads, known=None):
        read_back.append(len(known or {}))
        return real_fill(fileno, n_threads, known)

    monkeypatch.setattr(_blocks.DeferredBlockData, "write", write)
    monkeypatch.setattr(_blocks, "_WRITE_PIECE", 4096)  # several pieces per block
    from romancal_lite.datamodels import _core

    monkeypatch.setattr(_core, "fill_checksums", fill)
    ours = dm.write_asdf_atomic(tmp_path / "ours.asdf", tree)
    assert sorted(written) == sorted(a.nbytes for a in tree.values())
    assert read_back == [3]  # every digest came from memory
    assert ours.read_bytes() == _asdf_checksummed(tree, tmp_path / "asdf.asdf", None)
    # without checksums: asdf's file without them
    plain = dm.write_asdf_atomic(tmp_path / "plain.asdf", tree, checksums=False)
    import asdf

    from romancal_lite.datamodels import asdf_context, get_extension

    with asdf_context():
        af = asdf.AsdfFile(extensions=[get_extension()])
        af.tree = tree
        with open(tmp_path / "asdf_plain.asdf", "wb") as fh:
            af.write_to(fh, write_checksums=False)
    assert plain.read_bytes() == (tmp_path / "asdf_plain.asdf").read_bytes()


def test_failed_block_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    from romancal_lite.datamodels import _blocks
    from romancal_lite.errors import OutputError

    def fail(self, fileno, n_threads, *, checksums=True):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_blocks.DeferredBlockData, "write", fail)
    with pytest.raises(OutputError, match="no space left"):
        dm.write_asdf_atomic(tmp_path / "out.asdf", {"a": np.ones((50, 50), np.float32)})
    assert list(tmp_path.iterdir()) == []


def test_checksums_not_found_fall_back_to_asdf(tmp_path: Path, monkeypatch) -> None:
    from romancal_lite.datamodels import _core

    tree = {"a": np.arange(1000, dtype=np.float32)}
    expected = _asdf_checksummed(tree, tmp_path / "asdf.asdf", None)
    monkeypatch.setattr(_core, "fill_checksums", lambda fileno, n, **kw: False)
    ours = dm.write_asdf_atomic(tmp_path / "ours.asdf", tree)
    assert ours.read_bytes() == expected


def test_mapped_arrays_are_released_while_written(tmp_path, monkeypatch):
    """Memory-mapped arrays of a tree have their pages handed back during the write."""
    from romancal_lite.datamodels import _blocks
    from romancal_lite.datamodels._core import write_asdf_atomic
    from romancal_lite.steps import _arrays

    mapped = _arrays.file_array((512, 256), np.float32)
    mapped[...] = np.arange(mapped.size, dtype=np.float32).reshape(mapped.shape)
    plain = np.ones((64, 64), np.float32)
    released = []
    real = _arrays.release_rows
    monkeypatch.setattr(_arrays, "release_rows",
                        lambda a, r0, r1: released.append(a is mapped) or real(a, r0, r1))
    with _blocks.released_while_written({"a": {"b": [mapped]}, "c": plain}) as count:
        assert count == 1
    assert released and all(released)
    path = write_asdf_atomic(tmp_path / "t.asdf", {"m": mapped, "p": plain})
    import asdf

    with asdf.open(path) as af:
        assert np.array_equal(af["m"], mapped) and np.array_equal(af["p"], plain)


def test_private_maps_keep_their_values_while_written(tmp_path):
    """Anonymous and copy-on-write maps are not handed back (that would lose their values)."""
    from romancal_lite.datamodels import _blocks
    from romancal_lite.datamodels._core import write_asdf_atomic
    from romancal_lite.steps import _arrays

    anonymous = _arrays.empty_releasable((512, 256), np.float32)
    anonymous[...] = 3.0
    np.save(tmp_path / "a.npy", np.ones((256, 256), np.float32))
    private = np.load(tmp_path / "a.npy", mmap_mode="c").view(np.ndarray)
    private[...] = 5.0
    with _blocks.released_while_written({"a": anonymous, "p": private}) as count:
        assert count == 0
    path = write_asdf_atomic(tmp_path / "t.asdf", {"a": anonymous, "p": private})
    assert np.all(anonymous == 3.0) and np.all(private == 5.0)
    import asdf

    with asdf.open(path) as af:
        assert np.all(af["a"] == 3.0) and np.all(af["p"] == 5.0)


def _chunks_of(af, name="data"):
    from romancal_lite.datamodels import Lz4Chunks

    return Lz4Chunks.of(af.tree["roman"]._data[name])


def test_chunks_hand_over_the_whole_array(tmp_path: Path) -> None:
    path, data = _big_ramp_file(tmp_path)
    with open_asdf_file(path) as af:
        chunks = _chunks_of(af)
        assert chunks is not None and len(chunks._chunks) == 7
        assert chunks.shape == data.shape and chunks.dtype == data.dtype
        out = np.full(data.size, np.nan, np.float32)
        seen = []

        def work(first: int, values: np.ndarray) -> None:
            seen.append((first, values.size))
            out[first : first + values.size] = values

        chunks.each(work, 2)
        assert sorted(seen)[0][0] == 0 and sum(n for _, n in seen) == data.size
        np.testing.assert_array_equal(out.reshape(data.shape), data)
        _, block = _data_block(af)
        assert block._cached_data is None  # the block itself was never read whole


def test_array_chunks_only_for_unread_lz4_arrays(tmp_path: Path) -> None:
    path, data = _big_ramp_file(tmp_path)
    with dm.open(path) as model:
        assert model.array_chunks("data") is not None
        assert model.array_chunks("missing") is None
        assert model.array_chunks("pixeldq") is None  # small: read by asdf
        np.testing.assert_array_equal(model.data, data)  # still readable whole
        assert model.array_chunks("data") is None  # now in memory
    plain = tmp_path / "plain.asdf"
    with dm.open(path) as model:
        model.save(plain)
    with dm.open(plain) as model:
        assert model.array_chunks("data") is None
    with dm.open(path) as model:
        model._set_array_scales({"data": 2.0})  # scaled when read: whole
        assert model.array_chunks("data") is None


def test_corrupt_chunk_in_chunks_is_a_one_line_error(tmp_path: Path) -> None:
    path, _ = _big_ramp_file(tmp_path)
    with open_asdf_file(path) as af:
        _, block = _data_block(af)
        start = block.data_offset
    raw = bytearray(path.read_bytes())
    raw[start + 8 : start + 72] = b"\xff" * 64  # the first chunk's lz4 data
    path.write_bytes(bytes(raw))
    with dm.open(path) as model:
        chunks = model.array_chunks("data")
        assert chunks is not None
        with pytest.raises(InputFileError, match="cannot read array 'data'"):
            chunks.each(lambda first, values: None, 2)


def test_mapped_array_reads_the_rows_of_an_lz4_block(tmp_path: Path, monkeypatch) -> None:
    """`DataModel.mapped_array` of an lz4 block: rows decompressed when indexed (only the
    chunks holding them), scaled as the model scales, readable after the model closed."""
    from test_datamodels_io import make_image

    from romancal_lite.datamodels import _blocks

    monkeypatch.setattr(_blocks, "_MIN_PARALLEL_BYTES", 1 << 10)
    image = make_image(make_ramp(n=1, ny=1308, nx=1308))
    rng = np.random.default_rng(3)
    image.data = rng.normal(5, 1, (1300, 1300)).astype("f4")  # 2 chunks, split mid-row
    image.var_poisson = rng.uniform(1e-3, 2.0, (1300, 1300)).astype("f2")
    path = tmp_path / "lz4_cal.asdf"
    image.save(path, all_array_compression="lz4")
    factor = 3.1e-3
    keys = (np.s_[800:815], np.s_[:], np.s_[5], np.s_[-1], np.s_[::3, ::3],
            np.s_[10:1290:7, 3:9], np.s_[5:5], np.s_[1299:], np.s_[[4, 900]])  # fmt: skip
    decoded = []
    real = _blocks._decompressed

    def counted(fileno: int, chunk: tuple[int, int, int, int]) -> bytes:
        decoded.append(chunk)
        return real(fileno, chunk)

    monkeypatch.setattr(_blocks, "_decompressed", counted)
    for scales in ({}, {"data": factor, "var_poisson": factor**2}):
        with dm.open(path) as model:
            model._set_array_scales(scales)
            mapped = {n: model.mapped_array(n) for n in ("data", "var_poisson")}
        raw = mapped["data"].raw
        assert isinstance(raw, _blocks.Lz4Rows) and len(raw._chunks) == 2
        decoded.clear()
        raw[0:10]
        assert len(decoded) == 1  # the first chunk only
        with dm.open(path) as model:  # the first model is closed: its rows still read
            model._set_array_scales(scales)
            for name, m in mapped.items():
                whole = getattr(model, name)
                assert m.shape == whole.shape and m.dtype == whole.dtype
                for key in keys:
                    got = m[key]
                    assert got.dtype == whole.dtype and got.tobytes() == whole[key].tobytes()
