"""Safe file access for untrusted inputs and atomic, all-or-nothing outputs.

Every file romancal_lite reads or writes goes through here, never through a path
string handed to asdf: asdf reads a string as a URI, so ``#`` starts a fragment
(``out#1/x.asdf`` is written to ``out``) and ``%41`` is decoded (``a%41.asdf`` opens
``aA.asdf``). We open the file ourselves and give asdf the open file.

* `open_regular_file` opens an input without blocking (a FIFO never hangs the reader)
  and refuses anything that is not a regular file (directory, FIFO, device, socket),
  naming what it is.
* `scan_asdf_tree` checks the YAML tree of an ASDF file *before* asdf parses it, in
  one streaming pass of bounded memory: aliases may not expand the tree by more than
  `MAX_ALIAS_NODES` nodes (an alias "billion laughs" bomb hangs asdf), no alias may
  refer to a node containing it (a recursive tree), and nesting is at most
  `MAX_DEPTH` deep, and the tree is at most `MAX_YAML_BYTES` (read before parsing).
* `atomic_write` writes to a temporary file in the target directory and renames it
  over the target; inside `deferred_outputs` the renames wait until the block ends
  without an error, so a run writes either all its outputs or none (and leaves a
  previous output intact). SIGINT and SIGTERM are held back while a temporary file is
  created or the outputs are renamed, so an interruption never leaves a temporary
  file behind; output directories created for the run are removed again (if still
  empty) when it fails.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import InputFileError, OutputError
from ..interrupts import raise_lost_signal, signals_held

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "MAX_YAML_BYTES",
    "atomic_write",
    "check_regular_file",
    "created_directories",
    "deferred_outputs",
    "describe_file_type",
    "open_regular_file",
    "outputs_committed",
    "read_yaml_part",
    "scan_asdf_tree",
]

#: Largest number of nodes YAML aliases may add to a tree (a Roman file has none, or
#: a few small ones written by asdf for shared objects).
MAX_ALIAS_NODES = 1_000_000
#: Deepest nesting of mappings and sequences accepted (Roman trees are < 30 deep;
#: asdf walks trees recursively and fails far below Python's recursion limit).
MAX_DEPTH = 200

#: Largest YAML tree read (a Roman file's tree is a few kB to a few MB; arrays are in
#: binary blocks): a bigger one is refused before it is held in memory.
MAX_YAML_BYTES = 256 << 20

_YAML_END = (b"\n...\n", b"\n...\r\n")
_BLOCK_MAGIC = b"\xd3BLK"
_CHUNK = 1 << 20


def describe_file_type(mode: int) -> str | None:
    """Return what a non-regular file is (``"a directory"``...), None for a regular file.

    Parameters
    ----------
    mode : int
        ``st_mode`` of ``os.stat``.

    Returns
    -------
    str or None
        A phrase naming the kind of file, or None if it is a regular file.
    """
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular_file(
    path: str | os.PathLike[str], error: type[Exception] = InputFileError
) -> IO[bytes]:
    """Open a regular file for binary reading, never blocking on a FIFO or device.

    Parameters
    ----------
    path : str or path-like
        The file (a literal path: ``#`` and ``%`` are ordinary characters).
    error : type, optional
        Exception class raised (default `InputFileError`).

    Returns
    -------
    file object
        Open for reading in binary mode (the caller closes it).

    Raises
    ------
    InputFileError
        (or ``error``) if the file does not exist, cannot be read, or is not a
        regular file (the message says what it is).
    """
    name = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO without a writer returns at once instead of
        # waiting; the type is then checked on the open descriptor (no race).
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{name}: no such file") from None
    except IsADirectoryError:
        raise error(f"{name}: is a directory, not a file") from None
    except OSError as exc:
        raise error(f"{name}: cannot open ({exc.strerror or exc})") from None
    try:
        kind = describe_file_type(os.fstat(fd).st_mode)
        if kind is not None:
            raise error(f"{name}: is {kind}, not a regular file")
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    # Not inside the ``try``: once ``fdopen`` has made the file object, the
    # object owns the descriptor, and an interruption arriving then (the object
    # dropped, the descriptor closed with it) must not be followed by a second
    # ``os.close`` (EBADF would replace the interruption).
    return os.fdopen(fd, "rb")


def check_regular_file(
    path: str | os.PathLike[str], error: type[Exception] = InputFileError
) -> None:
    """Raise ``error`` unless ``path`` is an existing regular file (see `open_regular_file`).

    Parameters
    ----------
    path : str or path-like
        The file.
    error : type, optional
        Exception class raised (default `InputFileError`).
    """
    open_regular_file(path, error).close()


# ---------------------------------------------------------------------- YAML guard


def read_yaml_part(fh: IO[bytes], name: str) -> bytes:
    """Return the YAML part of an ASDF file (up to its end marker or first block).

    Parameters
    ----------
    fh : file object
        Positioned at the start of the file; left at an arbitrary position.
    name : str
        File name for messages.

    Returns
    -------
    bytes
        The header and YAML document, without the binary blocks.

    Raises
    ------
    InputFileError
        If the YAML part is larger than `MAX_YAML_BYTES`.
    """
    buffer = bytearray()
    searched = 0
    while True:
        chunk = fh.read(_CHUNK)
        buffer += chunk
        start = max(0, searched - 8)
        # the document ends with its "..." line, or (without one) at the first block
        ends = [i + 1 for i in (buffer.find(m, start) for m in _YAML_END) if i >= 0]
        magic = buffer.find(_BLOCK_MAGIC, start)
        if magic >= 0:
            ends.append(magic)
        if ends:
            return bytes(buffer[: min(ends)])
        if not chunk:
            return bytes(buffer)
        if len(buffer) > MAX_YAML_BYTES:
            raise InputFileError(
                f"{name}: the metadata tree is larger than {MAX_YAML_BYTES >> 20} MiB"
            )
        searched = len(buffer)


def scan_asdf_tree(text: bytes, name: str) -> None:
    """Refuse a YAML tree that expands without bound, is recursive or nests too deeply.

    One streaming pass over the parser events (no tree is built): the expanded size of
    every anchored node is recorded, so aliases are counted at their full expanded
    size in constant time each.

    Parameters
    ----------
    text : bytes
        The YAML part of an ASDF file (`read_yaml_part`).
    name : str
        File name for messages.

    Raises
    ------
    InputFileError
        If aliases add more than `MAX_ALIAS_NODES` nodes, an alias refers to a node
        that contains it, nesting exceeds `MAX_DEPTH`, or the YAML cannot be parsed.
    """
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = []  # [expanded size so far, anchor]
    added = 0
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.CollectionStartEvent):
                stack.append([1, event.anchor])
                if len(stack) > MAX_DEPTH:
                    raise InputFileError(
                        f"{name}: the metadata tree nests deeper than {MAX_DEPTH} levels"
                    )
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                size, anchor = stack.pop()
                if anchor is not None:
                    sizes[anchor] = size
            elif isinstance(event, yaml.ScalarEvent):
                size = 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
            elif isinstance(event, yaml.AliasEvent):
                if any(frame[1] == event.anchor for frame in stack):
                    raise InputFileError(
                        f"{name}: the metadata tree is recursive (alias *{event.anchor} "
                        "inside the node it refers to)"
                    )
                size = sizes.get(event.anchor, 1)
                added += size - 1
                if added > MAX_ALIAS_NODES:
                    raise InputFileError(
                        f"{name}: YAML aliases expand the metadata tree by more than "
                        f"{MAX_ALIAS_NODES:,} nodes (an alias bomb?)"
                    )
            else:
                continue
            if stack:
                stack[-1][0] += size
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())
        raise InputFileError(f"{name}: not valid YAML ({message})") from None


# ---------------------------------------------------------------------- outputs


_PENDING: list[list[tuple[str, Path]]] = []
_CREATED: list[list[Path]] = []
#: Whether the outermost `deferred_outputs` block last entered has put its outputs in
#: place (an interruption right after it must not claim that nothing was written).
_COMMITTED: list[bool] = [False]


def outputs_committed() -> bool:
    """Return whether the last outermost `deferred_outputs` block put its outputs in place.

    Returns
    -------
    bool
        True once every output of that block has been renamed into place.
    """
    return _COMMITTED[0]


def created_directories(paths: list[Path]) -> None:
    """Record output directories just created, to remove (if empty) if the run fails.

    Outside `deferred_outputs` this does nothing.

    Parameters
    ----------
    paths : list of Path
        The directories created, in any order.
    """
    if _CREATED:
        _CREATED[-1].extend(paths)


def _pop(stack: list[list[Any]], item: list[Any]) -> None:
    """Remove ``item`` from ``stack`` by identity (equal empty lists are not the same)."""
    for index in range(len(stack) - 1, -1, -1):
        if stack[index] is item:
            del stack[index]
            return


def _remove_empty(paths: list[Path]) -> None:
    for path in sorted(set(paths), key=lambda p: len(p.parts), reverse=True):
        try:
            path.rmdir()  # only if empty: never anything the run did not create
        except OSError:
            pass


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[IO[bytes]], None], *, defer: bool = True
) -> Path:
    """Write ``path`` through a temporary file in its directory and a rename.

    Inside `deferred_outputs` the rename waits for the end of that block (unless
    ``defer`` is false).

    Parameters
    ----------
    path : str or path-like
        Destination (a literal path).
    write : callable
        Called with the temporary file, open for binary writing.
    defer : bool, optional
        False for files that must exist at once (e.g. a cache read back in the same
        run): renamed now even inside `deferred_outputs`.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputError
        If the file cannot be written; the temporary file is removed.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    tmp: str | None = None
    fh: IO[bytes] | None = None

    def discard() -> None:
        with signals_held():
            if fh is not None:
                with contextlib.suppress(OSError):  # the write's error is the one reported
                    fh.close()
            if tmp is not None:
                _unlink_quietly(tmp)

    try:
        # A signal held while the temporary is made is delivered as the block
        # ends: inside this ``try``, with the temporary already known, so that
        # it is removed (not left behind beside the outputs).
        with signals_held():
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
            except OSError as exc:
                raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
            fh = os.fdopen(fd, "wb")
        with fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_umask())
        if _PENDING and defer:
            _PENDING[-1].append((tmp, path))
        else:
            os.replace(tmp, path)
    except OSError as exc:
        discard()
        if exc.errno == errno.ENOSPC:
            raise OutputError(f"{path}: cannot write (no space left on device)") from exc
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        discard()
        raise
    return path


@contextlib.contextmanager
def deferred_outputs() -> Iterator[None]:
    """Make the outputs written inside the block appear together, or not at all.

    Files written with `atomic_write` stay temporary until the block ends; then they
    are renamed into place (with SIGINT and SIGTERM held back). If the block raises
    (including KeyboardInterrupt), every temporary file is removed and no output,
    new or previous, is touched.

    Yields
    ------
    None

    Raises
    ------
    OutputError
        If an output cannot be renamed into place.
    """
    pending: list[tuple[str, Path]] = []
    created: list[Path] = []
    if not _PENDING:
        _COMMITTED[0] = False
    _PENDING.append(pending)
    _CREATED.append(created)
    try:
        yield
        raise_lost_signal()  # a Ctrl-C dropped by Python on the way: nothing is kept
    except BaseException:
        with signals_held():
            _pop(_PENDING, pending)
            _pop(_CREATED, created)
            for tmp, _ in pending:
                _unlink_quietly(tmp)
            _remove_empty(created)
        raise
    with signals_held():
        _pop(_PENDING, pending)
        _pop(_CREATED, created)
        if _PENDING:  # nested: the enclosing block decides
            _PENDING[-1].extend(pending)
            _CREATED[-1].extend(created)
            return
        final: dict[Path, str] = {}
        for tmp, path in pending:
            if path in final:  # written twice: the last one wins
                _unlink_quietly(final[path])
            final[path] = tmp
        done = 0
        try:
            for path, tmp in final.items():
                os.replace(tmp, path)
                done += 1
        except OSError as exc:
            for tmp in list(final.values())[done:]:
                _unlink_quietly(tmp)
            raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
        _COMMITTED[0] = True
