"""Subtraction of the decaying dark signal from each resultant (``dark_decay``).

After a reset the WFI detectors show a dark signal that decays exponentially with
time. The DARKDECAYSIGNAL reference gives, per detector, its amplitude ``A`` (DN)
and time constant ``tau`` (s). Following romancal 1.1 (``romancal/dark_decay/
dark_decay.py``), the signal of read ``k`` at pixel ``p`` is::

    s_k(p) = A * exp(-t_k(p) / tau),  t_k(p) = t_0(p) + (k - 1.5) * frame_time

with ``t_0`` the pixel's read time within a frame (`romancal_lite.steps._readout`)
and the offset 1.5 placing ``A`` at the middle of the first read. A resultant is the
mean of its reads, so its signal is the mean of the ``s_k`` of its reads, which is
subtracted from it (science and reference pixels alike, as romancal does).

``t_0`` repeats every 256 columns, so the signal is computed on one ``(rows, 256)``
period per resultant and subtracted column period by column period: no temporary of
a frame's size, and the same float64 values romancal computes on the full frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from romancore.decay import subtract_periodic

from .._readout import read_time_period

__all__ = ["FRAME_OFFSET", "dark_decay_signal", "subtract_dark_decay"]

#: Reads the amplitude refers to: 1.5 is the middle of the first read (romancal 1.1).
FRAME_OFFSET = 1.5


def dark_decay_signal(
    amplitude: float,
    time_constant: float,
    frame_time: float,
    reads: Sequence[int],
    sca: int,
    frame_offset: float = FRAME_OFFSET,
    base: np.ndarray | None = None,
) -> np.ndarray:
    """Return the decay signal of one resultant over one column period (DN).

    Parameters
    ----------
    amplitude : float
        Decay amplitude ``A`` (DN) of the detector.
    time_constant : float
        Decay time constant ``tau`` (s), > 0.
    frame_time : float
        Frame time (s).
    reads : sequence of int
        Read numbers averaged into the resultant (one entry of the read pattern).
    sca : int
        WFI detector number, 1 ... 18.
    frame_offset : float, optional
        Reads the amplitude refers to (default 1.5, the middle of the first read).
    base : numpy.ndarray, optional
        ``read_time_period(frame_time, sca)`` if already computed.

    Returns
    -------
    numpy.ndarray of float64, (rows of ``base``, default 4096; 256)
        ``signal[y, x % 256]`` for frame pixel ``(y, x)``: the mean over ``reads``
        of ``A exp(-t_k / tau)``.
    """
    if base is None:
        base = read_time_period(frame_time, sca)
    total = None
    for read in reads:
        # romancal dark_decay.subtract_dark_decay: frame_read_times(..., read - offset),
        # i.e. the frame-0 times plus (read - offset) * frame_time
        t = base + (read - frame_offset) * frame_time
        np.negative(t, out=t)
        t /= time_constant
        np.exp(t, out=t)
        term = amplitude * t
        # summed read after read, then divided: numpy's mean over the stacked reads
        total = term if total is None else np.add(total, term, out=total)
    if total is None:
        raise ValueError("a resultant must have at least one read")
    total /= len(reads)
    return total


def subtract_dark_decay(
    data: np.ndarray,
    amplitude: float,
    time_constant: float,
    frame_time: float,
    read_pattern: Sequence[Sequence[int]],
    sca: int,
    frame_offset: float = FRAME_OFFSET,
) -> None:
    """Subtract the decaying dark signal from every resultant, in place.

    Parameters
    ----------
    data : numpy.ndarray of float32, (n_resultants, ny, nx), C-contiguous
        The ramp (DN), corrected in place. ``ny <= 4096``; a frame smaller than
        4096 x 4096 is the lower-left corner of a full frame.
    amplitude : float
        Decay amplitude (DN) at ``frame_offset`` reads after the reset.
    time_constant : float
        Decay time constant (s), finite and > 0.
    frame_time : float
        Frame time (s), finite and > 0.
    read_pattern : sequence of sequence of int
        Reads of each resultant (``meta.exposure.read_pattern``).
    sca : int
        WFI detector number, 1 ... 18.
    frame_offset : float, optional
        See `dark_decay_signal`.

    Raises
    ------
    ValueError
        If the arguments do not describe a valid correction (shape, read pattern
        length, non-positive time constant or frame time, detector number).
    """
    if not isinstance(data, np.ndarray) or data.ndim != 3:
        raise ValueError("data must be a 3-D array (resultants, rows, columns)")
    if len(read_pattern) != data.shape[0]:
        raise ValueError(
            f"the read pattern has {len(read_pattern)} resultants, the data {data.shape[0]}"
        )
    if data.shape[1] > 4096:
        raise ValueError(f"a WFI frame has at most 4096 rows, got {data.shape[1]}")
    for name, value in (("time constant", time_constant), ("frame time", frame_time)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"the {name} must be finite and > 0, got {value!r}")
    if not math.isfinite(amplitude):
        raise ValueError(f"the amplitude must be finite, got {amplitude!r}")
    if not 1 <= sca <= 18:
        raise ValueError(f"WFI detector number must be 1 ... 18, got {sca}")
    # only the frame's rows: no temporary of more than (rows, 256)
    base = read_time_period(frame_time, sca, rows=data.shape[1])
    for i, reads in enumerate(read_pattern):
        signal = dark_decay_signal(amplitude, time_constant, frame_time, reads, sca,
                                   frame_offset, base=base)
        subtract_periodic(data[i], signal)  # checks dtype, layout, writeability
