"""The BLAS thread pool while a step runs.

romancal-lite's parallel work is its own (OpenMP over rows in ``romancore`` and a few
helper threads). NumPy's OpenBLAS also starts one thread per core for a large matrix
product, and after each product those threads spin, waiting for the next one, for a
while: on a machine where every core is already busy with a step's kernels, the
spinning takes cores from them. The one large product in the pipelines is the
background mesh's zoom in source_catalog (`ZoomedMesh`, a few row blocks of
``(rows x m) @ (m x nx)``); on the mosaic benchmark (2 cores) OpenBLAS's threads
spent about 1 CPU-second spinning during that step, and source_catalog took 2.1-2.3 s
with one BLAS thread against 2.5-2.7 s without.

A step run from the outside (not by a pipeline that is already running) therefore
runs with BLAS on one thread (`one_blas_thread`); the previous setting is restored
when it returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["one_blas_thread"]


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit the loaded BLAS libraries to one thread inside the block.

    Uses threadpoolctl; the libraries' previous thread counts are restored on exit.

    Yields
    ------
    None
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
