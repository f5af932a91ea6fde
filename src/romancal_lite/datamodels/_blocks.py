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
import weakref
from bisect import bisect_right
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import InputFileError

__all__ = [
    "DeferredBlockData",
    "Lz4Chunks",
    "Lz4Rows",
    "deferred_block_data",
    "fill_checksums",
    "preload_lz4_block",
    "released_while_written",
]

_LZ4 = b"lz4\0"
#: Smallest block worth a thread pool (smaller ones: asdf's own reader).
_MIN_PARALLEL_BYTES = 16 << 20


def _in_threads(work: Callable[[Any], Any], items: list[Any], n_threads: int) -> list[Any]:
    """``[work(item) for item in items]``, on up to ``n_threads`` threads when that helps."""
    workers = min(n_threads, len(items))
    if workers < 2:
        return [work(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(work, items))


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


def _lz4_source(lazy_array: Any) -> tuple[Any, int, list[tuple[int, int, int, int]]] | None:
    """Return ``(block, file descriptor, chunk table)`` of an unloaded lz4 array block.

    None when the block is not lz4, small (under `_MIN_PARALLEL_BYTES`), already read,
    not in a local file, laid out unexpectedly, or asdf's internals changed.
    """
    try:
        import lz4.block  # noqa: F401  (asdf's lz4 codec needs it too)

        callback = lazy_array._data_callback
        block = callback._read_blocks_ref()[callback._index]
        if block._cached_data is not None:
            return None
        header = block.header
        if header["compression"] != _LZ4 or header["data_size"] < _MIN_PARALLEL_BYTES:
            return None
        fileno = block._fd()._fd.fileno()
        start, used, data_size = block.data_offset, header["used_size"], header["data_size"]
    except Exception:  # asdf internals changed, or not a local file: asdf reads it
        return None
    if start is None:
        return None
    chunks = _chunk_table(fileno, int(start), int(used), int(data_size))
    return None if chunks is None else (block, fileno, chunks)


#: Each thread's buffer of compressed bytes (`_decompressed`).
_READ_BUFFERS = threading.local()


def _decompressed(fileno: int, chunk: tuple[int, int, int, int]) -> bytes:
    """Read and decompress one chunk of `_chunk_table`.

    The compressed bytes are read into a buffer the thread keeps (a new object per
    chunk would cost its page faults every time: ~0.1 s of CPU for a full-frame cube).
    """
    import lz4.block

    offset, csize, _, size = chunk
    buffer = getattr(_READ_BUFFERS, "buffer", None)
    if buffer is None or len(buffer) < csize:
        buffer = _READ_BUFFERS.buffer = memoryview(bytearray(csize))
    raw = buffer[:csize]
    if os.preadv(fileno, [raw], offset) != csize:
        raise OSError(f"short read of a compressed chunk at byte {offset}")
    data = lz4.block.decompress(raw)
    if len(data) != size:
        raise ValueError(f"lz4 chunk at byte {offset} decompresses to {len(data)} "
                         f"bytes, its header says {size}")
    return data


class Lz4Chunks:
    """An unloaded lz4-compressed array, handed over chunk by chunk as it decompresses.

    A consumer that converts the array (the Level 1 resultants into the float32 ramp)
    takes each decompressed chunk (4 MiB in roman_datamodels' files) and writes its
    result directly, instead of decompressing the whole block into a buffer as large
    as the array first and converting that: the same values, without the buffer's
    memory (302 MB for a full-frame Level 1 cube) and its first-touch page faults.

    Use `Lz4Chunks.of`; the file must stay open while `each` runs.

    Attributes
    ----------
    shape : tuple of int
        The array's shape.
    dtype : numpy.dtype
        Its dtype (as stored: the byte order may be big-endian).
    ndim : int
        ``len(shape)``.
    """

    def __init__(self, fileno: int, chunks: list[tuple[int, int, int, int]],
                 shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._fileno = fileno
        self._chunks = chunks
        self.shape = shape
        self.dtype = dtype
        self.ndim = len(shape)
        #: prefix of the ``InputFileError`` a corrupt chunk raises (None: raised as is)
        self.label: str | None = None

    @classmethod
    def of(cls, lazy_array: Any) -> Lz4Chunks | None:
        """Return the chunks of an unloaded lz4 array, or None (then read it whole).

        Parameters
        ----------
        lazy_array : asdf.tags.core.ndarray.NDArrayType
            An array of an open file, not read yet.

        Returns
        -------
        Lz4Chunks or None
            None unless the array is the whole block, C-contiguous, unmasked, with a
            fixed shape and every chunk a whole number of elements (and see
            `preload_lz4_block` for the block itself).
        """
        try:
            if lazy_array._array is not None or lazy_array._mask is not None:
                return None
            if lazy_array._offset not in (0, None) or lazy_array._strides is not None:
                return None
            if lazy_array._order not in ("C", "A", None):  # no strides: "A" is C order
                return None
            dtype = np.dtype(lazy_array._dtype)
            shape = tuple(int(n) for n in lazy_array._shape)
        except Exception:  # asdf internals changed, a structured or '*' shape
            return None
        if dtype.hasobject or dtype.fields is not None or dtype.itemsize == 0:
            return None
        source = _lz4_source(lazy_array)
        if source is None:
            return None
        _, fileno, chunks = source
        size = dtype.itemsize
        if chunks[-1][2] + chunks[-1][3] != int(np.prod(shape)) * size:
            return None
        if any(at % size or n % size for _, _, at, n in chunks):
            return None
        return cls(fileno, chunks, shape, dtype)

    def each(self, work: Callable[[int, np.ndarray], None], n_threads: int) -> None:
        """Call ``work(first, values)`` for every chunk, in ``n_threads`` threads.

        Parameters
        ----------
        work : callable
            Receives the flat index of the chunk's first element in the array and its
            values (1-D, read-only, the array's dtype); called from several threads at
            once for different chunks (``work`` should release the GIL: NumPy's copies
            and casts do).
        n_threads : int
            Threads reading, decompressing and handing over chunks.

        Raises
        ------
        InputFileError
            A chunk cannot be read or decompressed (with `label` set; without it,
            what the read or ``lz4.block.decompress`` raised).
        Exception
            What ``work`` raises.
        """
        size = self.dtype.itemsize

        def one(chunk: tuple[int, int, int, int]) -> None:
            try:
                data = _decompressed(self._fileno, chunk)
            except Exception as exc:
                if self.label is None:
                    raise
                text = str(exc).strip().splitlines()
                first = text[0] if text else ""
                raise InputFileError(
                    f"{self.label} ({type(exc).__name__}: {first})") from exc
            work(chunk[2] // size, np.frombuffer(data, dtype=self.dtype))

        _in_threads(one, self._chunks, n_threads)


    def detached(self) -> Lz4Rows:
        """Return the array as `Lz4Rows`: rows decompressed when indexed, the file kept open.

        Returns
        -------
        Lz4Rows
            It holds its own descriptor of the file (closed when it is collected), so
            it stays readable after the model's file is closed.
        """
        return Lz4Rows(os.dup(self._fileno), self._chunks, self.shape, self.dtype)


class Lz4Rows:
    """An lz4-compressed array whose rows are decompressed when indexed.

    For a reader that needs an array a block of rows at a time (the mosaic's
    resample): ``rows[r0:r1]`` decompresses only the chunks holding those rows (a
    full-frame float32 image: 16 chunks of 256 rows), so the whole array is never in
    memory. Other keys are applied to the rows they select, a block at a time.

    Parameters
    ----------
    fileno : int
        A descriptor of the file, owned (closed when the object is collected).
    chunks : list of tuple
        The block's chunk table (`_chunk_table`).
    shape : tuple of int
        The array's shape.
    dtype : numpy.dtype
        Its dtype as stored.
    """

    #: Rows decompressed at a time for a strided or fancy first-axis key.
    BLOCK_ROWS = 512

    def __init__(self, fileno: int, chunks: list[tuple[int, int, int, int]],
                 shape: tuple[int, ...], dtype: np.dtype) -> None:  # fmt: skip
        self._fileno = fileno
        self._finalizer = weakref.finalize(self, os.close, fileno)
        self._chunks = chunks
        self._starts = [chunk[2] for chunk in chunks]
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self._row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Return rows ``r0:r1`` of the first axis (a new array).

        Parameters
        ----------
        r0, r1 : int
            Row range, ``0 <= r0 <= r1 <= shape[0]``.

        Returns
        -------
        numpy.ndarray
            ``(r1 - r0, *shape[1:])`` of the stored dtype.
        """
        if not 0 <= r0 <= r1 <= self.shape[0]:
            raise IndexError(f"rows {r0}:{r1} of an array of {self.shape[0]} rows")
        out = np.empty((r1 - r0, *self.shape[1:]), dtype=self.dtype)
        start, stop = r0 * self._row_bytes, r1 * self._row_bytes
        if stop == start:
            return out
        target = out.reshape(-1).view(np.uint8)
        first = max(0, bisect_right(self._starts, start) - 1)
        for chunk in self._chunks[first:]:
            at, size = chunk[2], chunk[3]
            if at >= stop:
                break
            if at + size <= start:
                continue
            data = _decompressed(self._fileno, chunk)
            a, b = max(start, at), min(stop, at + size)
            target[a - start : b - start] = np.frombuffer(data, np.uint8, b - a, a - at)
        return out

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        head, rest = (key[0], key[1:]) if isinstance(key, tuple) and key else (key, ())
        ny = self.shape[0]
        if isinstance(head, (int, np.integer)):
            r = int(head) + ny if head < 0 else int(head)
            return self.rows(r, r + 1)[(0, *rest)]
        if isinstance(head, slice):
            r0, r1, step = head.indices(ny)
            if step == 1:
                return self.rows(r0, max(r0, r1))[(slice(None), *rest)]
            if step > 0:
                # a block of rows at a time: the selected rows of each, then the rest
                parts = []
                for b0 in range(r0, r1, self.BLOCK_ROWS * step):
                    b1 = min(r1, b0 + self.BLOCK_ROWS * step)
                    parts.append(self.rows(b0, b1)[(slice(None, None, step), *rest)])
                if parts:
                    return np.concatenate(parts)
                return self.rows(0, 0)[(slice(None), *rest)]
        return np.asarray(self)[key]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self.rows(0, self.shape[0])
        return values if dtype is None else values.astype(dtype, copy=False)


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
    if n_threads < 2:
        return False
    source = _lz4_source(lazy_array)
    if source is None:
        return False
    block, fileno, chunks = source
    out = np.empty(chunks[-1][2] + chunks[-1][3], dtype=np.uint8)

    def work(chunk: tuple[int, int, int, int]) -> None:
        at, size = chunk[2], chunk[3]
        out[at : at + size] = np.frombuffer(_decompressed(fileno, chunk), dtype=np.uint8)

    _in_threads(work, chunks, n_threads)
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


def fill_checksums(fileno: int, n_threads: int, known: dict[int, bytes] | None = None) -> bool:
    """Write the MD5 checksum of every block of an ASDF file written without them.

    Parameters
    ----------
    fileno : int
        The file, open for reading and writing (flushed), blocks without checksums.
    n_threads : int
        Threads hashing blocks.
    known : dict, optional
        Digests already computed, by the file offset of their block's data (what
        `DeferredBlockData.write` returns): those blocks are not read back.

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

            buffers = threading.local()
            hashed = known or {}

            def digest(block: tuple[int, int, int]) -> bytes:
                if block[1] in hashed:
                    return hashed[block[1]]
                # read in pieces, not through the map: mapped pages of the whole file
                # would count in the process's resident memory (its peak); each thread
                # reads into one buffer of its own (a new 8 MiB object per piece costs
                # its page faults every time: ~0.1 s of CPU per full-frame file)
                _, data, used = block
                buffer = getattr(buffers, "piece", None)
                if buffer is None:
                    buffer = buffers.piece = memoryview(bytearray(_HASH_PIECE))
                md5 = hashlib.md5(usedforsecurity=False)
                done = 0
                while done < used:
                    n = os.preadv(fileno, [buffer[: min(_HASH_PIECE, used - done)]], data + done)
                    if n <= 0:
                        raise OSError("the file ended inside a block")
                    md5.update(buffer[:n])
                    done += n
                return md5.digest()

            unknown = sum(block[1] not in hashed for block in blocks)
            digests = _in_threads(digest, blocks, n_threads if unknown > 1 else 1)
        finally:
            view.release()
    for (start, _, _), value in zip(blocks, digests, strict=True):
        os.pwrite(fileno, value, start + _CHECKSUM_AT)
    return True


#: Piece of a block written (and hashed) at a time by `DeferredBlockData.write`.
_WRITE_PIECE = 8 << 20


class DeferredBlockData:
    """The uncompressed block data asdf hands to a file, written later in parallel.

    Inside `deferred_block_data`, asdf writes the YAML tree, every block header and
    the block index as usual, but the data of each uncompressed block (asdf's
    ``RealFile.write_array``, one call per block) is only recorded with its offset
    and skipped over (a hole in the file).  `write` then writes those arrays with
    ``os.pwrite`` from several threads, each thread hashing the blocks it writes
    (``hashlib`` and ``pwrite`` release the GIL): a full-frame ``_cal`` is copied
    into the page cache on every core, and its MD5 checksums come from memory instead
    of being read back from the file.  The bytes of the file are the ones asdf would
    have written.
    """

    def __init__(self) -> None:
        self.pieces: list[tuple[int, memoryview]] = []

    def record(self, offset: int, data: np.ndarray) -> None:
        """Remember that ``data`` (1-D bytes) goes at ``offset``."""
        self.pieces.append((offset, memoryview(data).cast("B")))

    def write(self, fileno: int, n_threads: int, *, checksums: bool = True) -> dict[int, bytes]:
        """Write every recorded block at its offset; return the MD5s by offset.

        Parameters
        ----------
        fileno : int
            The file asdf wrote (flushed).
        n_threads : int
            Threads writing (the largest blocks are taken first).
        checksums : bool, optional
            Hash each block as it is written.

        Returns
        -------
        dict
            Block data offset -> MD5 digest (empty without ``checksums``).

        Raises
        ------
        OSError
            A write failed (e.g. no space left on the device).
        """
        order = sorted(self.pieces, key=lambda piece: -len(piece[1]))

        def one(piece: tuple[int, memoryview]) -> tuple[int, bytes]:
            offset, data = piece
            md5 = hashlib.md5(usedforsecurity=False) if checksums else None
            for start in range(0, len(data), _WRITE_PIECE):
                part = data[start : start + _WRITE_PIECE]
                done = 0
                while done < len(part):
                    done += os.pwrite(fileno, part[done:], offset + start + done)
                if md5 is not None:
                    md5.update(part)
            return offset, md5.digest() if md5 is not None else b""

        results = _in_threads(one, order, n_threads)
        return dict(results) if checksums else {}


#: Open files whose block data are being deferred (by file descriptor), see below.
_DEFERRING: dict[int, DeferredBlockData] = {}
_PATCH_LOCK = threading.Lock()


def _install_deferral() -> None:
    """Wrap asdf's ``RealFile.write_array`` once so that it can defer block data."""
    from asdf import generic_io

    with _PATCH_LOCK:
        original = generic_io.RealFile.write_array
        if getattr(original, "_romancal_lite_deferral", False):
            return

        def write_array(self: Any, arr: np.ndarray) -> None:
            try:
                deferred = _DEFERRING.get(self._fd.fileno())
            except (AttributeError, OSError, ValueError):
                deferred = None
            if (deferred is None or isinstance(arr, np.memmap) and getattr(arr, "fd", None) is self
                    or arr.ndim != 1 or not arr.flags.c_contiguous):
                original(self, arr)
                return
            fd = self._fd
            deferred.record(fd.tell(), arr)
            fd.seek(arr.nbytes, os.SEEK_CUR)

        write_array._romancal_lite_deferral = True  # type: ignore[attr-defined]
        generic_io.RealFile.write_array = write_array


@contextmanager
def deferred_block_data(fh: Any) -> Iterator[DeferredBlockData]:
    """Defer the data of the uncompressed blocks asdf writes to ``fh`` in the block.

    Parameters
    ----------
    fh : file object
        The binary file asdf is given (its ``write_to`` target), a real file: asdf
        writes to its descriptor's raw file object.

    Yields
    ------
    DeferredBlockData
        The recorded blocks; call its ``write`` after asdf's ``write_to`` (the file
        has holes where the data go until then).
    """
    _install_deferral()
    deferred = DeferredBlockData()
    fileno = fh.fileno()
    _DEFERRING[fileno] = deferred
    try:
        yield deferred
    finally:
        _DEFERRING.pop(fileno, None)


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
