"""Array preparation shared by the steps that hand model arrays to romancore in place."""

from __future__ import annotations

import math
import mmap
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "advise_scattered",
    "available_memory",
    "empty_releasable",
    "file_array",
    "is_file_map",
    "is_memory_mapped",
    "release_rows",
    "return_freed_memory",
    "rows_in_file",
    "writable_contiguous",
]


def writable_contiguous(model: Any, *names: str) -> None:
    """Make the named arrays of ``model`` C-contiguous and writable, in place on the model.

    romancore's in-place kernels need both; arrays read from a file written by other
    software can be strided or read-only (memory-mapped). Arrays that already qualify
    are left alone (no copy).

    Parameters
    ----------
    model : DataModel
        The model whose arrays are checked.
    *names : str
        Array attribute names, e.g. ``"data", "groupdq", "pixeldq"``.
    """
    for name in names:
        array = getattr(model, name)
        if not (array.flags.c_contiguous and array.flags.writeable):
            setattr(model, name, np.array(array, order="C", copy=True))


def empty_releasable(shape: tuple[int, ...], dtype: Any, huge_pages: bool = False) -> np.ndarray:
    """Return a zero-filled array whose rows can be handed back to the OS early.

    The memory is an anonymous private mapping (zero pages until written, like
    `numpy.zeros`); `release_rows` returns whole pages of finished rows while the
    array is still referenced, so a step that consumes a cube row block by row block
    (``ramp_fit`` in the pipeline) never holds its input and its output at once.

    Parameters
    ----------
    shape : tuple of int
        Array shape.
    dtype : numpy dtype
        Element type.
    huge_pages : bool, optional
        Advise transparent huge pages (``MADV_HUGEPAGE``): fewer TLB misses for
        scattered writes (the mosaic drizzle's band arrays), dearer first touches.

    Returns
    -------
    numpy.ndarray
        A writable C-contiguous array of zeros.
    """
    dt = np.dtype(dtype)
    count = math.prod(shape)
    if count == 0:
        return np.zeros(shape, dt)
    buffer = mmap.mmap(-1, count * dt.itemsize, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if huge_pages and advice is not None:
        try:
            buffer.madvise(advice)
        except OSError:  # pragma: no cover (kernels without transparent huge pages)
            pass
    return np.frombuffer(buffer, dtype=dt, count=count).reshape(shape)


def available_memory() -> int:
    """Return the memory new allocations can get now, in bytes.

    Linux's ``MemAvailable`` (free memory plus what the page cache can give back);
    elsewhere the free physical pages.

    Returns
    -------
    int
        Bytes (``1 << 40`` where nothing can be read).
    """
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 1 << 40


def _mapping(array: np.ndarray) -> mmap.mmap | None:
    base: Any = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None) if isinstance(base, np.ndarray) else getattr(
            base, "obj", None)
    return base


def is_memory_mapped(array: np.ndarray) -> bool:
    """Return whether an array's memory is an `mmap.mmap` (`release_rows` can act on it).

    Parameters
    ----------
    array : numpy.ndarray
        Any array.

    Returns
    -------
    bool
        True for `empty_releasable` arrays and memory-mapped file arrays.
    """
    return _mapping(array) is not None


def release_rows(array: np.ndarray, r0: int, r1: int) -> int:
    """Give rows ``r0:r1`` of a memory-mapped array back to the OS.

    For a cube ``(n, ny, nx)`` the rows of every plane, for an image ``(ny, nx)`` its
    rows. Only the pages lying entirely inside those rows are released. An
    `empty_releasable` array reads as zeros there afterwards; a read-only map of a file
    (a reference array read through the uncompressed cache) reads the file's values
    again when touched. For any other array nothing happens.

    Parameters
    ----------
    array : numpy.ndarray, shape (n, ny, nx) or (ny, nx)
        A C-contiguous array whose memory is an `mmap.mmap` (or any array: then a
        no-op).
    r0, r1 : int
        Row range, ``0 <= r0 <= r1 <= ny``.

    Returns
    -------
    int
        Bytes released.
    """
    buffer = _mapping(array)
    if buffer is None or array.ndim not in (2, 3) or not array.flags.c_contiguous or r1 <= r0:
        return 0
    if array.size == 0:
        return 0
    # where the array starts inside the mapping (a file map holds the whole file)
    offset = array.ctypes.data - np.frombuffer(buffer, dtype=np.uint8).ctypes.data
    ny, nx = array.shape[-2:]
    n = array.shape[0] if array.ndim == 3 else 1
    row_bytes = nx * array.itemsize
    plane = ny * row_bytes
    page = mmap.PAGESIZE
    released = 0
    for k in range(n):
        start = offset + k * plane + r0 * row_bytes
        stop = offset + k * plane + r1 * row_bytes
        first = -(-start // page) * page
        last = stop // page * page
        if last > first:
            buffer.madvise(mmap.MADV_DONTNEED, first, last - first)
            released += last - first
    return released


def file_array(shape: tuple[int, ...], dtype: Any, directory: str | None = None, *,
               scattered_reads: bool = False) -> np.ndarray:
    """Return a zero-filled array in an unnamed temporary file, mapped shared.

    The file has no name and goes when the last map of it goes. Its pages are the
    file's: `release_rows` hands them back to the OS and the data stay in the file
    (read again when touched), so a full-size array that is written or read a band
    at a time does not count whole in the process's resident memory.

    Parameters
    ----------
    shape : tuple of int
        Array shape.
    dtype : numpy dtype
        Element type.
    directory : str, optional
        Where the file lies (default: the system's temporary directory).
    scattered_reads : bool, optional
        Advise random access (``MADV_RANDOM``) before anything is written: the
        file's pages are then base pages, not the large folios the file system
        otherwise makes, and no read-ahead brings in their neighbours, so reading
        small boxes of a large array (the measurements around sources) keeps far
        fewer pages resident (the kernel still maps up to 64 KB of cached
        neighbours per fault).

    Returns
    -------
    numpy.ndarray
        A writable C-contiguous array of zeros (a plain array over the map).
    """
    dt = np.dtype(dtype)
    if math.prod(shape) == 0:
        return np.zeros(shape, dt)
    with tempfile.TemporaryFile(prefix="romancal_lite_", dir=directory) as fh:
        mapped = np.memmap(fh, dtype=dt, mode="w+", shape=shape)
    if scattered_reads:
        advise_scattered(mapped)
    return mapped.view(np.ndarray)


def advise_scattered(array: np.ndarray) -> bool:
    """Advise random access (``MADV_RANDOM``) on the memory map under ``array``.

    Parameters
    ----------
    array : numpy.ndarray
        Any array.

    Returns
    -------
    bool
        Whether the advice was given (False: not a map, or no such advice here).
    """
    buffer = _mapping(array)
    advice = getattr(mmap, "MADV_RANDOM", None)
    if buffer is None or advice is None:
        return False
    try:
        buffer.madvise(advice)
    except OSError:  # pragma: no cover (a kernel refusing the advice)
        return False
    return True


def rows_in_file(
    shape: tuple[int, int], dtype: Any, fill: Callable[[int, int], np.ndarray], rows: int = 256,
    *, scattered_reads: bool = False,
) -> np.ndarray:
    """Return a `file_array` filled row block by row block, each block handed back.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)``.
    dtype : numpy dtype
        Element type.
    fill : callable
        ``fill(r0, r1)`` returns rows ``r0:r1``.
    rows : int, optional
        Rows per block.
    scattered_reads : bool, optional
        Advise random access (see `file_array`): for an array later read in small
        scattered boxes (the advice is given before the file's pages exist, so that
        they are small pages).

    Returns
    -------
    numpy.ndarray
        The array (its pages released).
    """
    out = file_array(shape, dtype, scattered_reads=scattered_reads)
    for r0 in range(0, shape[0], rows):
        r1 = min(shape[0], r0 + rows)
        out[r0:r1] = fill(r0, r1)
        release_rows(out, r0, r1)
    return out


def is_file_map(array: np.ndarray, *, copy_on_write: bool = False) -> bool:
    """Return whether an array lies in a map of a file whose pages can be handed back safely.

    True for a shared map (`file_array`, ``numpy.memmap`` modes ``r``, ``r+``,
    ``w+``): `release_rows` keeps the data (they are the file's). A copy-on-write
    map (mode ``c``) counts only with ``copy_on_write=True``, for a caller that
    knows nothing was written through it (handing back a written private page loses
    the write). Never for `empty_releasable` arrays (handing back zeroes them).

    Parameters
    ----------
    array : numpy.ndarray
        Any array.
    copy_on_write : bool, optional
        Accept copy-on-write maps too.

    Returns
    -------
    bool
        Whether `release_rows` keeps the array's values.
    """
    modes = ("r", "r+", "w+", "c") if copy_on_write else ("r", "r+", "w+")
    base: Any = array
    while isinstance(base, np.ndarray):
        if isinstance(base, np.memmap):
            return getattr(base, "mode", None) in modes and _mapping(base) is not None
        base = base.base
    return False


def return_freed_memory() -> bool:
    """Hand the memory the C heap keeps after ``free`` back to the OS (glibc ``malloc_trim``).

    numpy's arrays below glibc's mmap threshold (which grows, up to 32 MB, each time
    a larger mapped block is freed) come from the heap; once freed their pages stay
    with the process. A step that has read and dropped many such arrays (resample's
    staging of its inputs: ~0.14 GB on 4 full frames) calls this before it allocates
    its own working arrays, so its peak does not hold both.

    Returns
    -------
    bool
        True if memory was returned (False: none, or not glibc).
    """
    import ctypes
    import ctypes.util

    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
            _LIBC.malloc_trim.restype = ctypes.c_int
        except (OSError, AttributeError):
            _LIBC = False
    if not _LIBC:
        return False
    return bool(_LIBC.malloc_trim(0))


_LIBC: Any = None
