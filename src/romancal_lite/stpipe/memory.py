"""How a running step takes fresh memory for its large arrays.

NumPy asks the kernel for transparent huge pages (``madvise(MADV_HUGEPAGE)``) on every
allocation of 4 MiB or more. On a machine whose transparent-huge-page ``defrag`` policy
is ``madvise`` (the common default), a fault in such a region makes the kernel find, and
if need be compact, a free 2 MiB block before the array can be written; in virtual
machines the block is often guest memory the host has never backed, so each first touch
costs host faults too. Measured on the project's benchmark machine (2 cores, 24 GiB,
a Firecracker VM): the first fill of a fresh 600 MB array took 1.37 s with huge pages
and 0.19 s with ordinary pages, and ``source_catalog`` on a full frame (a dozen fresh
64 MB images) took 1.93-1.99 s against 1.13-1.26 s, with no step slower beyond noise.

Huge pages are not worse everywhere: the mosaic's resample, whose drizzle adds every
input pixel into scattered places of large output arrays, took 8.3 s with ordinary pages
against 6.6 s with huge pages (fewer TLB misses). A step therefore says which it wants
(``Step.huge_pages``); one that declines runs inside `ordinary_pages`, which restores
NumPy's setting when it returns. A user who sets ``NUMPY_MADVISE_HUGEPAGE`` in the
environment keeps their choice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ordinary_pages"]


def _madvise_switch():
    """NumPy's (private, long-standing) getter and setter of the huge-page advice."""
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy < 2
        from numpy.core import multiarray
    getter = getattr(multiarray, "_get_madvise_hugepage", None)
    setter = getattr(multiarray, "_set_madvise_hugepage", None)
    if getter is None or setter is None:
        return None
    return getter, setter


@contextmanager
def ordinary_pages() -> Iterator[bool]:
    """Within the block, NumPy does not advise huge pages for new arrays.

    Yields
    ------
    bool
        True when the advice was switched off here (and is restored on exit); False when
        the user chose through ``NUMPY_MADVISE_HUGEPAGE`` or NumPy has no switch.
    """
    switch = None if "NUMPY_MADVISE_HUGEPAGE" in os.environ else _madvise_switch()
    if switch is None:
        yield False
        return
    getter, setter = switch
    previous = bool(getter())
    setter(False)
    try:
        yield True
    finally:
        setter(previous)
