"""A local cache of reference files with their arrays decompressed.

Official reference files store their arrays compressed (lz4 or zlib blocks, written by
roman_datamodels); every read decompresses them again, which costs seconds per
exposure (a full-frame LINEARITY, INVERSELINEARITY or REFPIX file is 0.3-0.6 s each) and
keeps the whole array in private memory. When a cache directory is configured, a step
reads an uncompressed copy instead, written once per file: its arrays are read-only
memory maps of the page cache, shared by every process on the machine that reads the
same reference, and decompressed by none of them.

The cache is enabled by the environment variable ``ROMANCAL_LITE_REFERENCE_CACHE``
(a directory; created if needed). A copy is named by a hash of the original's real
path, size and modification time, so a changed file is never served from a stale copy.
Copies are written atomically (a temporary file and a rename): concurrent processes
never see a partial copy, and two that write the same copy at once both succeed. The
cache is never pruned automatically: ``romancal-lite`` users delete the directory to
reclaim the space (about 1.5 GB per detector for the full-frame references).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["CACHE_ENV", "has_compressed_arrays", "reference_cache_dir", "uncompressed_reference"]

#: Environment variable naming the cache directory (unset or empty: no cache).
CACHE_ENV = "ROMANCAL_LITE_REFERENCE_CACHE"


def reference_cache_dir() -> Path | None:
    """Return the configured cache directory, or None when the cache is off.

    Returns
    -------
    pathlib.Path or None
        ``$ROMANCAL_LITE_REFERENCE_CACHE`` (``~`` expanded), or None if unset or empty.
    """
    value = os.environ.get(CACHE_ENV, "").strip()
    return Path(os.path.expanduser(value)) if value else None


def has_compressed_arrays(path: str | os.PathLike[str]) -> bool:
    """Return whether an ASDF file stores any array block compressed.

    Only the block headers are read (no array is decompressed).

    Parameters
    ----------
    path : str or path-like
        An ASDF file.

    Returns
    -------
    bool
        True if a block header names a compression.

    Raises
    ------
    romancal_lite.errors.InputFileError
        If the file cannot be read as ASDF.
    """
    from romancal_lite.datamodels import open_asdf_file

    # only the block headers are looked at: the tree is not validated (the reader of
    # the file validates it)
    with open_asdf_file(path, validate=False) as af:
        return any(
            bytes(block.header.get("compression", b"")).strip(b"\0")
            for block in af._blocks.blocks
        )


def _copy_name(path: Path) -> str:
    st = path.stat()
    key = f"{os.path.realpath(path)}\0{st.st_size}\0{st.st_mtime_ns}".encode()
    return f"{hashlib.sha256(key).hexdigest()[:20]}_{path.name}"


def uncompressed_reference(
    path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Return a path to ``path``'s content with uncompressed arrays.

    A file without compressed arrays is its own answer. Otherwise its copy in the
    cache is returned, written first if it does not exist yet.

    Parameters
    ----------
    path : str or path-like
        A reference file.
    cache_dir : str or path-like, optional
        The cache directory (default :func:`reference_cache_dir`; with no cache
        configured, ``path`` itself is returned).

    Returns
    -------
    pathlib.Path
        The file to read.

    Raises
    ------
    romancal_lite.errors.InputFileError
        If ``path`` cannot be read as ASDF.
    OSError
        If the copy cannot be written.
    """
    source = Path(path)
    directory = Path(cache_dir) if cache_dir is not None else reference_cache_dir()
    if directory is None:
        return source
    try:
        target = directory / _copy_name(source)
    except OSError:  # missing or unreadable: the reader says what is wrong
        return source
    # a copy exists only for a file with compressed arrays (its name records the
    # original's path, size and time): found, the original is not opened at all
    if target.is_file():
        return target
    if not has_compressed_arrays(source):
        return source
    directory.mkdir(parents=True, exist_ok=True)
    _write_copy(source, target)
    return target


def _write_copy(source: Path, target: Path) -> None:
    """Write ``source``'s tree with uncompressed arrays to ``target``, atomically."""
    from romancal_lite.datamodels import open_asdf_file, write_asdf_atomic

    with open_asdf_file(source) as af:
        tree = {k: v for k, v in af.tree.items() if k not in ("asdf_library", "history")}
        write_asdf_atomic(target, tree, defer=False)
