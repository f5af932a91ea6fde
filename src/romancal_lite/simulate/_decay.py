"""Decaying signals after the reset: the dark decay (all detectors), WFI18's transient.

Both are additive DN signals of the read-out, after the detector response (like the
electronic offsets): what romancal 1.1 removes after refpix and before linearity.
They are added to the finished resultants of the science pixels (the reference
pixels, which refpix reads, see neither), each resultant re-rounded to whole DN:

* dark decay: ``A exp(-t_k / tau)`` averaged over each resultant's reads, with
  ``t_k`` the pixel's read time in read ``k`` counted from the middle of the first
  read (romancal_lite.steps.dark_decay), ``A`` and ``tau`` those of the
  DARKDECAYSIGNAL reference the pipeline will select (nothing when it is N/A);
* WFI18 transient (detector WFI18 only): ``a exp(-t / tau_a) + b exp(-t / tau_b)``
  added to the first resultant, ``t`` the pixel's read time within the frame (the
  model romancal_lite.steps.wfi18_transient fits).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..references import NOT_APPLICABLE, get_reference_files, simulator_source
from ..references._content import dark_decay_values
from ..references._spec import BORDER
from ..steps._readout import read_time_period
from ..steps.dark_decay import dark_decay_signal
from ..steps.dark_decay.dark_decay_step import decay_values
from ..steps.wfi18_transient.wfi18_transient import double_exponential
from .ramps import _to_uint16

__all__ = ["WFI18_TRANSIENT", "add_decay_signals", "decay_signal_periods", "decay_signals"]

#: The injected WFI18 first-read transient ``(a, b, tau_a, tau_b)`` (DN, DN, s, s).
WFI18_TRANSIENT = (40.0, -4.0, 0.2, 0.8)


def _decay_reference(model: Any, references: Any) -> tuple[tuple[float, float] | None, str]:
    """Return the (amplitude, time constant) the pipeline will use, and their source."""
    from .. import datamodels

    detector = str(model.meta.instrument.detector)
    if isinstance(references, str) and references.lower() == "builtin":
        return dark_decay_values(detector), "builtin"
    overrides = {}
    if isinstance(references, Mapping):
        overrides = {k: v for k, v in references.items() if k.lower() == "darkdecaysignal"}
    path = get_reference_files(model, ["darkdecaysignal"], overrides, simulator_source())[
        "darkdecaysignal"
    ]
    if path == NOT_APPLICABLE:
        return None, NOT_APPLICABLE
    with datamodels.open(path) as ref:
        amplitude, time_constant = decay_values(ref, detector)
    if amplitude is None or time_constant is None:
        return None, os.fspath(path)
    return (amplitude, time_constant), os.fspath(path)


def decay_signal_periods(
    detector: str,
    shape: tuple[int, int],
    read_pattern: list[list[int]],
    frame_time: float,
    values: tuple[float, float] | None,
) -> np.ndarray | None:
    """Return the decaying signals of every resultant over one column period (DN).

    Parameters
    ----------
    detector : str
        ``"WFI01"`` ... ``"WFI18"`` (the transient is WFI18's only).
    shape : tuple of int
        ``(ny, nx)`` of the read-out.
    read_pattern : list of list of int
        Reads of each resultant.
    frame_time : float
        Frame time (s).
    values : tuple of float or None
        Dark decay ``(amplitude, time_constant)``, None when not injected.

    Returns
    -------
    numpy.ndarray of float64, (n_resultants, ny, 256), or None
        ``periods[i, y, x % 256]`` is added to science pixel ``(y, x)`` of resultant
        ``i`` (the read times repeat every 256 columns); None when nothing is added.
    """
    ny = shape[0]
    sca = int(detector[3:])
    transient = WFI18_TRANSIENT if detector == "WFI18" else None
    if values is None and transient is None:
        return None
    periods = np.zeros((len(read_pattern), ny, 256))
    if values is not None:
        base = read_time_period(frame_time, sca)
        for i, reads in enumerate(read_pattern):
            signal = dark_decay_signal(values[0], values[1], frame_time, reads, sca, base=base)
            periods[i] = signal[:ny]
    if transient is not None:
        times = read_time_period(frame_time, 18)[:ny]
        periods[0] += double_exponential(times, *transient)
    return periods


def decay_signals(
    model: Any, references: Any = "crds"
) -> tuple[tuple[float, float] | None, dict[str, Any]]:
    """Return the dark decay ``(amplitude, time_constant)`` to inject and the truth.

    Parameters
    ----------
    model : ScienceRawModel
        The exposure (its metadata selects the DARKDECAYSIGNAL reference).
    references : {"crds", "builtin"} or mapping, optional
        Where the DARKDECAYSIGNAL reference comes from.

    Returns
    -------
    values : tuple of float or None
        For `decay_signal_periods`; None when the reference is N/A.
    truth : dict
        As `add_decay_signals` returns.
    """
    detector = str(model.meta.instrument.detector)
    values, source = _decay_reference(model, references)
    transient = WFI18_TRANSIENT if detector == "WFI18" else None
    truth = {
        "dark_decay": {
            "amplitude": None if values is None else values[0],
            "time_constant": None if values is None else values[1],
            "source": source,
        },
        "wfi18_transient": None if transient is None else list(transient),
    }
    return values, truth


def add_decay_signals(
    model: Any,
    read_pattern: list[list[int]],
    frame_time: float,
    references: Any = "crds",
) -> dict[str, Any]:
    """Add the dark decay (and, on WFI18, the first-read transient) to ``model.data``.

    Parameters
    ----------
    model : ScienceRawModel
        The simulated exposure; its uint16 ``data`` (resultants) is updated in place.
    read_pattern : list of list of int
        Reads of each resultant.
    frame_time : float
        Frame time (s).
    references : {"crds", "builtin"} or mapping, optional
        Where the DARKDECAYSIGNAL reference comes from (as the simulator's other
        references).

    Returns
    -------
    dict
        Truth: ``dark_decay`` (amplitude, time constant, source; None values when not
        injected) and ``wfi18_transient`` (the parameters, or None).
    """
    data = model.data
    ny, nx = data.shape[1:]
    b = BORDER
    detector = str(model.meta.instrument.detector)
    values, truth = decay_signals(model, references)
    periods = decay_signal_periods(detector, (ny, nx), read_pattern, frame_time, values)
    if periods is not None:
        # column period by column period: no temporary of a frame's size
        for i in range(len(read_pattern)):
            for c in range(0, nx, 256):
                lo, hi = max(c, b), min(c + 256, nx - b)
                if hi <= lo:
                    continue
                level = data[i, b : ny - b, lo:hi].astype(np.float64)
                level += periods[i, b : ny - b, lo - c : hi - c]
                data[i, b : ny - b, lo:hi] = _to_uint16(level)
    return truth
