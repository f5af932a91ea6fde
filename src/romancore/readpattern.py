"""Per-resultant timing derived from a read pattern (Casertano et al. 2022, Sect. 2)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["ReadPatternMetadata", "read_pattern_metadata", "validate_read_pattern"]


class ReadPatternMetadata(NamedTuple):
    """Timing of each resultant of a read pattern.

    Attributes
    ----------
    t_bar : numpy.ndarray of float64, shape (n_resultants,)
        Mean time of the reads of each resultant, in seconds.
    tau : numpy.ndarray of float64, shape (n_resultants,)
        The Casertano (2022) variance time of each resultant, in seconds.
    n_reads : numpy.ndarray of int32, shape (n_resultants,)
        Number of reads averaged into each resultant.
    """

    t_bar: np.ndarray
    tau: np.ndarray
    n_reads: np.ndarray


def validate_read_pattern(read_pattern: Sequence[Sequence[int]]) -> list[list[int]]:
    """Check a read pattern and return it as a list of lists of ``int``.

    Parameters
    ----------
    read_pattern : sequence of sequences of int
        For each resultant, the 1-based numbers of the reads averaged into it.

    Returns
    -------
    list of list of int

    Raises
    ------
    ValueError
        If the pattern or any resultant is empty, a read number is not a positive
        integer (a string, a boolean or a non-integral number such as 1.5; an
        integral float such as 2.0 is accepted), or the read numbers do not strictly
        increase through the pattern.
    """
    if read_pattern is None or isinstance(read_pattern, str | bytes):
        raise ValueError(f"read_pattern must be a list of lists of integers, got {read_pattern!r}")
    try:
        n_resultants = len(read_pattern)
    except TypeError as err:
        raise ValueError(
            f"read_pattern must be a list of lists of integers, got {read_pattern!r}"
        ) from err
    if n_resultants == 0:
        raise ValueError("read_pattern is empty")
    out: list[list[int]] = []
    previous = 0
    for i, resultant in enumerate(read_pattern):
        if isinstance(resultant, str | bytes):
            raise ValueError(
                f"read_pattern resultant {i} is not a list of integers: {resultant!r}"
            )
        try:
            reads = [_read_number(r) for r in resultant]
        except TypeError as err:
            raise ValueError(
                f"read_pattern resultant {i} is not a list of integers: {resultant!r}"
            ) from err
        except ValueError as err:
            raise ValueError(f"read_pattern resultant {i}: {err}") from None
        if not reads:
            raise ValueError(f"read_pattern resultant {i} is empty")
        for r in reads:
            if r <= previous:
                raise ValueError(
                    f"read_pattern must strictly increase from 1: read {r} in resultant {i} "
                    f"follows read {previous}"
                )
            previous = r
        out.append(reads)
    return out


def _read_number(value: object) -> int:
    """Return a read number as ``int``: an integer, or a float with an integral value.

    Raises
    ------
    ValueError
        For strings, booleans, non-numbers and non-integral or non-finite numbers.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ValueError(f"read number {value!r} is not an integer")
    if isinstance(value, numbers.Integral):
        return int(value)
    as_float = float(value)
    if not math.isfinite(as_float) or as_float != math.floor(as_float):
        raise ValueError(f"read number {value!r} is not an integer")
    return int(as_float)


def read_pattern_metadata(
    read_pattern: Sequence[Sequence[int]], frame_time: float
) -> ReadPatternMetadata:
    """Compute t̄, τ and N for every resultant of a read pattern.

    With the reads of a resultant at times ``t_k = r_k * frame_time`` (``r_k`` the
    1-based read numbers, ``k = 0..N-1``):

    * ``t_bar = mean(t_k)``
    * ``tau = (1 / N**2) * sum_k (2 (N - k) - 1) t_k`` (Casertano et al. 2022, Eq. 14),
      the effective time entering the Poisson variance of the resultant;
      ``tau == t_bar`` for a single read.

    Parameters
    ----------
    read_pattern : sequence of sequences of int
        For each resultant, the 1-based read numbers averaged into it
        (``meta.exposure.read_pattern``).
    frame_time : float
        Time between reads in seconds (``meta.exposure.frame_time``).

    Returns
    -------
    ReadPatternMetadata
        ``t_bar``, ``tau`` (float64) and ``n_reads`` (int32), one entry per resultant.

    Raises
    ------
    ValueError
        For an empty or non-increasing read pattern, or a frame time that is not a
        positive finite number.
    """
    pattern = validate_read_pattern(read_pattern)
    try:
        frame_time = float(frame_time)
    except (TypeError, ValueError) as err:
        raise ValueError(f"frame_time must be a number, got {frame_time!r}") from err
    if not math.isfinite(frame_time) or frame_time <= 0:
        raise ValueError(f"frame_time must be positive and finite, got {frame_time!r}")
    n = len(pattern)
    t_bar = np.empty(n, dtype=np.float64)
    tau = np.empty(n, dtype=np.float64)
    n_reads = np.empty(n, dtype=np.int32)
    for i, reads in enumerate(pattern):
        times = np.asarray(reads, dtype=np.float64) * frame_time
        nr = len(reads)
        k = np.arange(nr)
        n_reads[i] = nr
        t_bar[i] = times.mean()
        tau[i] = np.sum((2 * (nr - k) - 1) * times) / nr**2
    return ReadPatternMetadata(t_bar, tau, n_reads)
