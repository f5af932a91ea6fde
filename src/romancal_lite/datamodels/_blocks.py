"""Reading an lz4-compressed ASDF block with every core (the official files' compression).

roman_datamodels writes every array block with asdf's lz4 codec: the block is a series
of chunks (4 MiB of data each when asdf writes them), each a 4-byte big-endian length
then an ``lz4.block`` frame with its own decompressed size.  asdf decompresses them one
after the other as its reader hands over the file in pieces; here the chunk table is
read first (a few bytes per chunk), then the chunks are read and decompressed by a
pool of threads (``os.pread`` and ``lz4.block.decompress`` release the GIL) into the
block's buffer, which asdf then uses as if it had read it itself.  The result is the
same bytes; anything unexpected leaves the block to asdf.
"""

from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["preload_lz4_block"]

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
