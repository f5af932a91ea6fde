"""The ``dark_decay`` step: subtract the DARKDECAYSIGNAL decay from every resultant."""

from __future__ import annotations

import math
from typing import Any

from romancal_lite import datamodels
from romancal_lite.errors import InputFileError, ReferenceFileError
from romancal_lite.steps._arrays import writable_contiguous
from romancal_lite.stpipe import Step

from .dark_decay import subtract_dark_decay

__all__ = ["DarkDecayStep", "exposure_timing"]


class DarkDecayStep(Step):
    """Subtract the decaying dark signal of the detector from each resultant, in place.

    Runs after refpix and before linearity (romancal 1.1's ``roman_elp``). The
    DARKDECAYSIGNAL reference (one file for all detectors) gives the detector's
    amplitude (DN) and time constant (s); see `subtract_dark_decay` for the signal. A
    reference of ``"N/A"``, or null values for the detector, leave the ramp unchanged
    and record ``meta.cal_step.dark_decay = "SKIPPED"``.
    """

    class_alias = "dark_decay"
    reference_file_types = ("darkdecaysignal",)
    model_type = datamodels.RampModel

    def process(self, model: Any) -> Any:
        """Subtract the decay signal from ``model.data``.

        Parameters
        ----------
        model : RampModel
            Ramp in DN, updated in place.

        Returns
        -------
        RampModel
            The same model.

        Raises
        ------
        InputFileError
            If the ramp's detector, frame time or read pattern are unusable.
        ReferenceFileError
            If the reference has no usable entry for the detector.
        """
        ref = self.open_reference(model, "darkdecaysignal")
        if ref is None:
            self.mark_skipped("no DARKDECAYSIGNAL reference applies; dark decay not subtracted")
            return model
        detector, sca = detector_number(model)
        with ref:
            amplitude, time_constant = decay_values(ref, detector)
        if amplitude is None or time_constant is None:
            self.mark_skipped(
                f"the DARKDECAYSIGNAL reference has no decay values for {detector} (null)"
            )
            return model
        frame_time, read_pattern = exposure_timing(model)
        self.log.info(
            "Dark decay of %s: amplitude %g DN, time constant %g s", detector, amplitude,
            time_constant,
        )
        writable_contiguous(model, "data")
        subtract_dark_decay(model.data, amplitude, time_constant, frame_time, read_pattern, sca)
        return model


def detector_number(model: Any) -> tuple[str, int]:
    """Return the detector name and number (``"WFI07"``, 7) of an exposure.

    Parameters
    ----------
    model : DataModel
        The exposure.

    Returns
    -------
    tuple of (str, int)
        Name and number.

    Raises
    ------
    InputFileError
        If ``meta.instrument.detector`` is not WFI01 ... WFI18.
    """
    try:
        detector = str(model.meta.instrument.detector).upper()
    except (AttributeError, KeyError):
        detector = ""
    if len(detector) == 5 and detector.startswith("WFI") and detector[3:].isdigit():
        number = int(detector[3:])
        if 1 <= number <= 18:
            return detector, number
    raise InputFileError(
        f"{model!r}: meta.instrument.detector is {detector or 'missing'!r}, not WFI01 ... WFI18"
    )


def decay_values(ref: Any, detector: str) -> tuple[float | None, float | None]:
    """Return the (amplitude, time constant) of ``detector`` in a DARKDECAYSIGNAL model.

    Parameters
    ----------
    ref : DarkdecaysignalRefModel
        The opened reference (already checked by ``check_reference``).
    detector : str
        ``"WFI01"`` ... ``"WFI18"``.

    Returns
    -------
    tuple
        Each value a float, or None where the reference holds null.

    Raises
    ------
    ReferenceFileError
        If the table has no entry for the detector.
    """
    table = getattr(ref, "decay_table", None)
    entry = None if table is None else _item(table, detector)
    if entry is None:
        raise ReferenceFileError(
            f"{ref!r}: DARKDECAYSIGNAL decay_table has no entry for detector {detector}"
        )
    values = []
    for key in ("amplitude", "time_constant"):
        value = _item(entry, key)
        values.append(None if value is None else float(value))
    return values[0], values[1]


def _item(node: Any, key: str) -> Any:
    try:
        return node[key]
    except (KeyError, TypeError, IndexError):
        return getattr(node, key, None)


def exposure_timing(model: Any) -> tuple[float, list[list[int]]]:
    """Return the frame time (s) and read pattern of a ramp, checked against its data.

    Parameters
    ----------
    model : RampModel
        The ramp.

    Returns
    -------
    tuple of (float, list of list of int)
        ``meta.exposure.frame_time`` and ``meta.exposure.read_pattern``.

    Raises
    ------
    InputFileError
        If the frame time is not a number > 0, the read pattern is not one list of
        read numbers per resultant, or the frame has more than 4096 rows.
    """
    data = model.data
    try:
        exposure = model.meta.exposure
        frame_time = float(exposure.frame_time)
        pattern = [[int(r) for r in reads] for reads in exposure.read_pattern]
    except (AttributeError, KeyError, TypeError, ValueError):
        raise InputFileError(
            f"{model!r}: meta.exposure needs a numeric frame_time and a read_pattern "
            "(a list of read numbers per resultant)"
        ) from None
    if not (math.isfinite(frame_time) and frame_time > 0):
        raise InputFileError(f"{model!r}: meta.exposure.frame_time is {frame_time}, not > 0")
    if getattr(data, "ndim", 0) != 3 or len(pattern) != data.shape[0] or not all(pattern):
        raise InputFileError(
            f"{model!r}: the read pattern has {len(pattern)} resultants (each needs a read),"
            f" the data shape is {getattr(data, 'shape', None)}"
        )
    if data.shape[1] > 4096:
        raise InputFileError(f"{model!r}: a WFI frame has at most 4096 rows, not {data.shape[1]}")
    return frame_time, pattern
