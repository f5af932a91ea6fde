"""The one thread policy shared by every kernel's ``n_threads`` argument."""

from __future__ import annotations

import numbers
import os
import warnings

from romancore._parallel import max_threads, openmp_enabled

__all__ = ["effective_n_threads"]


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def effective_n_threads(n_threads: int | None = None) -> int:
    """Resolve a user's ``n_threads`` into the number of threads a kernel will use.

    Parameters
    ----------
    n_threads : int or None
        ``None`` means ``OMP_NUM_THREADS`` if it is set, else every usable core;
        a positive number is taken as given (capped by nothing: oversubscription is the
        caller's choice); ``-1`` means all usable cores and ``-k`` all but ``k - 1``.

    Returns
    -------
    int
        At least 1.  Always 1 when the core was built without OpenMP.

    Raises
    ------
    ValueError
        If ``n_threads`` is 0 or not an integer.
    """
    if n_threads is not None:
        if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
            raise ValueError(f"n_threads must be an integer or None, got {n_threads!r}")
        n_threads = int(n_threads)
    if n_threads == 0:
        raise ValueError("n_threads must not be 0 (use None for the default)")
    cpus = _usable_cpus()
    if n_threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        resolved = int(env) if env.isdigit() and int(env) > 0 else min(max_threads(), cpus)
    elif n_threads < 0:
        resolved = max(cpus + 1 + n_threads, 1)
    else:
        resolved = n_threads
    if not openmp_enabled():
        if n_threads is not None and resolved > 1:
            warnings.warn(
                "romancore was built without OpenMP; running on 1 thread", stacklevel=3
            )
        return 1
    return max(int(resolved), 1)
