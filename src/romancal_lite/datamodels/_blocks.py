"""ASDF binary blocks with every core: lz4 blocks read, MD5 checksums written.

roman_datamodels writes every array block with asdf's lz4 codec: the block is a series
of chunks (4 MiB of data each when asdf writes them), each a 4-byte big-endian length
then an ``lz4.block`` frame with its own decompressed size.  asdf decompresses them one
after the other as its reader hands over the file in pieces; here the chunk table is
read first (a few bytes per chunk), then the chunks are read and decompressed by a
pool of threads (``os.pread`` and ``lz4.block.decompress`` release the GIL) into the
block's buffer, which asdf then uses as if it had read it itself.  The result is the
same bytes; anything unexpected leaves the block to asdf.

asdf writes the MD5 checksum of each block into its header, hashing one block after
the other (~0.5 s for a full-frame ``_cal``); `fill_checksums` hashes the blocks of a
file written without them in threads (``hashlib`` releases the GIL) and writes the 16
bytes into each header, which gives the file asdf would have written.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["fill_checksums", "preload_lz4_block", "released_while_written"]

_LZ4 = b"lz4\0"
#: Smallest block worth a thread pool (smaller ones: asdf's own reader).
_MIN_PARALLEL_BYTES = 16 << 20


def _chunk_table(fileno: int, start: int, used: int, data_size: int
                 ) -> list[tuple[int, int, int, int]] | None:
    """Return ``(file offset, compressed size, output offset, size)`` of each chunk.

    None if the chunks do not tile the block exactly (left to asdf, which reports it).
    """
    chunks = []
    pos, end, out = start, start + used, 0
    while pos < end:
        head = os.pread(fileno, 8, pos)
        if len(head) < 8:
            return None
        csize = struct.unpack(">I", head[:4])[0]
        size = struct.unpack("<i", head[4:])[0]  # lz4.block's stored size (signed)
        if csize <= 4 or size <= 0 or pos + 4 + csize > end or out + size > data_size:
            return None
        chunks.append((pos + 4, csize, out, size))
        pos += 4 + csize
        out += size
    return chunks if out == data_size and pos == end else None


def preload_lz4_block(lazy_array: Any, n_threads: int) -> bool:
    """Decompress the lz4 block behind an unloaded asdf array with ``n_threads`` threads.

    Parameters
    ----------
    lazy_array : asdf.tags.core.ndarray.NDArrayType
        An array of an open file, not read yet.
    n_threads : int
        Threads decompressing chunks.

    Returns
    -------
    bool
        True if the block's data are now in memory (asdf's next read of the array uses
        them); False if the block was left to asdf: not lz4, small, already read, not a
        local file, a layout this reader does not expect, or asdf internals changed.

    Raises
    ------
    Exception
        What ``lz4.block.decompress`` or the file read raises on a corrupt chunk.
    """
    try:
        import lz4.block

        callback = lazy_array._data_callback
        block = callback._read_blocks_ref()[callback._index]
        if block._cached_data is not None:
            return False
        header = block.header
        if header["compression"] != _LZ4 or header["data_size"] < _MIN_PARALLEL_BYTES:
            return False
        fileno = block._fd()._fd.fileno()
        start, used, data_size = block.data_offset, header["used_size"], header["data_size"]
    except Exception:  # asdf internals changed, or not a local file: asdf reads it
        return False
    if start is None or n_threads < 2:
        return False
    chunks = _chunk_table(fileno, int(start), int(used), int(data_size))
    if chunks is None:
        return False
    out = np.empty(int(data_size), dtype=np.uint8)

    def work(chunk: tuple[int, int, int, int]) -> None:
        offset, csize, at, size = chunk
        raw = os.pread(fileno, csize, offset)
        if len(raw) != csize:
            raise OSError(f"short read of a compressed chunk at byte {offset}")
        data = lz4.block.decompress(raw)
        if len(data) != size:
            raise ValueError(f"lz4 chunk at byte {offset} decompresses to {len(data)} "
                             f"bytes, its header says {size}")
        out[at : at + size] = np.frombuffer(data, dtype=np.uint8)

    with ThreadPoolExecutor(min(n_threads, len(chunks))) as pool:
        list(pool.map(work, chunks))
    block._cached_data = out
    return True


_BLOCK_MAGIC = b"\xd3BLK"
#: Block header after the magic and its 2-byte size: flags, compression, allocated,
#: used and data sizes, checksum (ASDF standard, big-endian).
_HEADER = struct.Struct(">I4sQQQ16s")
_CHECKSUM_AT = 6 + 4 + 4 + 8 + 8 + 8  # the checksum's offset from the block's start
_STREAMED = 0x1


def _blocks_of(view: memoryview, first: int) -> list[tuple[int, int, int]] | None:
    """Return ``(block start, data start, used size)`` of every block from ``first``.

    None if the blocks do not follow one another as the standard says (or a block is
    streamed, or already has a checksum).
    """
    blocks = []
    pos, size = first, len(view)
    while pos + 6 <= size and view[pos : pos + 4] == _BLOCK_MAGIC:
        (header_size,) = struct.unpack(">H", view[pos + 4 : pos + 6])
        if header_size < _HEADER.size or pos + 6 + header_size > size:
            return None
        flags, _, allocated, used, _, checksum = _HEADER.unpack(
            view[pos + 6 : pos + 6 + _HEADER.size])
        data = pos + 6 + header_size
        if flags & _STREAMED or used > allocated or data + allocated > size or any(checksum):
            return None
        blocks.append((pos, data, used))
        pos = data + allocated
    return blocks


#: bytes read at a time when hashing a block
_HASH_PIECE = 8 << 20


def fill_checksums(fileno: int, n_threads: int) -> bool:
    """Write the MD5 checksum of every block of an ASDF file written without them.

    Parameters
    ----------
    fileno : int
        The file, open for reading and writing (flushed), blocks without checksums.
    n_threads : int
        Threads hashing blocks.

    Returns
    -------
    bool
        True if every block now has its checksum; False if the file's blocks were not
        found as expected (nothing was changed: the caller writes it again with asdf's
        checksums).
    """
    size = os.fstat(fileno).st_size
    if size == 0:
        return False
    with mmap.mmap(fileno, size, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            # the blocks follow the YAML tree's end marker; with no blocks, nothing to do
            end = mapped.find(b"\n...\n")
            first = mapped.find(_BLOCK_MAGIC, end if end >= 0 else 0)
            if first < 0:
                return True
            blocks = _blocks_of(view, first)
            if not blocks:
                return False

            def digest(block: tuple[int, int, int]) -> bytes:
                # read in pieces, not through the map: mapped pages of the whole file
                # would count in the process's resident memory (its peak)
                _, data, used = block
                md5 = hashlib.md5(usedforsecurity=False)
                done = 0
                while done < used:
                    piece = os.pread(fileno, min(_HASH_PIECE, used - done), data + done)
                    if not piece:
                        raise OSError("the file ended inside a block")
                    md5.update(piece)
                    done += len(piece)
                return md5.digest()

            with ThreadPoolExecutor(max(1, min(n_threads, len(blocks)))) as pool:
                digests = list(pool.map(digest, blocks))
        finally:
            view.release()
    for (start, _, _), value in zip(blocks, digests, strict=True):
        os.pwrite(fileno, value, start + _CHECKSUM_AT)
    return True


def _mapped_arrays(node: Any, found: list[np.ndarray], seen: set[int]) -> None:
    """Collect the memory-mapped arrays of a tree (dicts, lists, model nodes)."""
    from romancal_lite.steps._arrays import is_file_map

    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, np.ndarray):
        # shared maps of files only: their data stay in the file (a private map's
        # written pages, or an anonymous map's, would be lost)
        if node.ndim >= 2 and node.flags.c_contiguous and is_file_map(node):
            found.append(node)
        return
    inner = getattr(node, "_data", None)
    if isinstance(inner, dict | list):
        node = inner
    if isinstance(node, dict):
        for value in node.values():
            _mapped_arrays(value, found, seen)
    elif isinstance(node, list | tuple):
        for value in node:
            _mapped_arrays(value, found, seen)


#: How often the pages of memory-mapped arrays being written are handed back (s).
_RELEASE_INTERVAL = 0.05


@contextmanager
def released_while_written(tree: Any) -> Iterator[int]:
    """While the block is running, hand back the pages of the tree's file-mapped arrays.

    A mosaic's arrays live in files (the resample step's); asdf reads each one whole
    to compress it, which would bring every page of every array into the process's
    resident memory at once. A thread hands the pages back every 50 ms (the data
    stay in their files and are read again if touched), so the write holds about
    what it reads in that time.

    Parameters
    ----------
    tree : dict
        The tree being written.

    Yields
    ------
    int
        The number of memory-mapped arrays watched (0: no thread).
    """
    from romancal_lite.steps._arrays import release_rows

    arrays: list[np.ndarray] = []
    _mapped_arrays(tree, arrays, set())
    if not arrays:
        yield 0
        return
    done = threading.Event()

    def release_all() -> None:
        for array in arrays:
            release_rows(array, 0, array.shape[-2])

    def loop() -> None:
        while not done.wait(_RELEASE_INTERVAL):
            release_all()

    thread = threading.Thread(target=loop, name="release-written-pages", daemon=True)
    thread.start()
    try:
        yield len(arrays)
    finally:
        done.set()
        thread.join()
        release_all()
