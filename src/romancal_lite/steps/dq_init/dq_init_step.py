"""The ``dq_init`` step (seeds/000:377-392)."""

from __future__ import annotations

from typing import Any

import numpy as np

from romancal_lite import datamodels
from romancal_lite.errors import InputFileError
from romancal_lite.steps._arrays import writable_contiguous
from romancal_lite.stpipe import Param, Step

from .dq_initialization import (
    GUIDE_STAR_TYPES,
    border_reference_arrays,
    flag_guide_window,
    to_ramp_arrays,
)

__all__ = ["DQInitStep"]


class DQInitStep(Step):
    """Turn a Level 1 exposure into a ramp and initialise its data quality.

    The uint16 resultants become a float32 ``RampModel`` (a reference read subtracted
    on board is added back, a data-encoding offset removed), the MASK reference
    ``dq`` is OR-ed into ``pixeldq``, ``groupdq`` starts from the raw ``resultantdq``
    (or zeros), pixels under the guide window get ``GW_AFFECTED_DATA | DO_NOT_USE``,
    and the 4-pixel reference border is copied into the ``border_ref_pix_*`` arrays
    (seeds/000:694). ``amp33`` is carried over. Guide-star exposures
    (`GUIDE_STAR_TYPES`) keep their model: the MASK goes into their ``dq``.
    """

    class_alias = "dq_init"
    reference_file_types = ("mask",)
    suffix = Param(str, "dqinit", "Suffix of the output file name")
    expand_gw_flagging = Param(
        int, 0, "Grow the flagged guide-window region by this many pixels", minimum=0
    )

    def process(self, model: Any) -> Any:
        """Convert ``model`` to a `RampModel` with initialised DQ.

        Parameters
        ----------
        model : ScienceRawModel or RampModel
            The exposure (a ramp is updated, not converted).

        Returns
        -------
        RampModel
            The ramp (or the guide-star model, with its ``dq``).
        """
        if str(model.meta.exposure.type) in GUIDE_STAR_TYPES:
            return self._guide_star(model)
        shape = getattr(model, "shape", None) or model.data.shape
        if len(shape) != 3:
            raise InputFileError(
                f"{_name(model)}: expected a 3-D raw exposure (resultants, rows, columns),"
                f" got data of shape {tuple(shape)}"
            )
        mask = self.open_reference(model, "mask")
        mask_dq = None
        if mask is not None:
            with mask:
                mask_dq = mask.dq
        if isinstance(model, datamodels.RampModel):
            ramp = self._update_ramp(model, mask_dq)
        else:
            ramp = self._to_ramp(model, mask_dq)
        if mask_dq is None:
            self.mark_skipped("no MASK reference applies; pixel DQ left unflagged")
        return ramp

    def _update_ramp(self, ramp: Any, mask_dq: Any) -> Any:
        """Initialise the DQ of a ramp given as input, in place.

        Its data are already DN levels: the on-board reference read and the encoding
        offset are not applied again (romancal 1.1 subtracts the offset a second
        time). The MASK is OR-ed into ``pixeldq`` and the guide window flagged (both
        idempotent); missing DQ arrays start at zero and missing border arrays are
        copied from the ramp. Arrays that cannot be written (a memory-mapped input
        file) are replaced by copies first, and converted to the kernels' dtypes.
        """
        shape = ramp.data.shape
        names = set(ramp)
        if "groupdq" not in names:
            ramp.groupdq = np.zeros(shape, np.uint8)
        if "pixeldq" not in names:
            ramp.pixeldq = np.zeros(shape[1:], np.uint32)
        for name, dtype, want in (
            ("data", np.float32, shape),
            ("groupdq", np.uint8, shape),
            ("pixeldq", np.uint32, shape[1:]),
        ):
            setattr(ramp, name, _as_kernel_array(ramp, name, dtype, want))
        writable_contiguous(ramp, "data", "groupdq", "pixeldq")
        if mask_dq is not None:
            ramp.pixeldq |= np.asarray(mask_dq, dtype=np.uint32)
        self._flag_guide_window(ramp, ramp.pixeldq)
        for name, array in border_reference_arrays(ramp.data, ramp.pixeldq).items():
            if name not in names:
                setattr(ramp, name, array)
        return ramp

    def _flag_guide_window(self, model: Any, pixeldq: Any) -> None:
        gs = model.meta.guide_star
        window = (gs.window_xstart, gs.window_xstop, gs.window_ystart, gs.window_ystop)
        if flag_guide_window(pixeldq, window, self.expand_gw_flagging):
            self.log.info("Flagged the guide window %s", window)

    def _to_ramp(self, raw: Any, mask_dq: Any) -> datamodels.RampModel:
        offset = raw.meta.instrument.get("data_encoding_offset", 0) or 0
        names = set(raw)
        # an lz4 cube (the official files) converted chunk by chunk as it decompresses
        chunks = raw.array_chunks("data") if isinstance(raw, datamodels.DataModel) else None
        data, pixeldq, groupdq = to_ramp_arrays(
            raw.data if chunks is None else chunks,
            mask_dq,
            resultantdq=raw.resultantdq if "resultantdq" in names else None,
            reference_read=raw.reference_read if "reference_read" in names else None,
            encoding_offset=float(offset),
        )
        # before the border DQ is copied aside, so the copies carry the window flags
        self._flag_guide_window(raw, pixeldq)
        # a copy: no view may keep a memory-mapped input file (and its pages) alive
        amp33 = np.array(raw.amp33)
        if "reference_amp33" in names:
            amp33 = (amp33 + raw.reference_amp33).astype(amp33.dtype)
        if offset:
            amp33 = (amp33.astype("float32") - offset).clip(0, 65535).astype(amp33.dtype)
        arrays = {"data": data, "pixeldq": pixeldq, "groupdq": groupdq, "amp33": amp33}
        arrays.update(border_reference_arrays(data, pixeldq))
        ramp = datamodels.RampModel.from_model(raw, **arrays)
        if "resultantdq" in ramp:
            del ramp.resultantdq
        return ramp

    def _guide_star(self, model: Any) -> Any:
        mask = self.open_reference(model, "mask", expected_shape=model.data.shape[-2:])
        if mask is None:
            self.mark_skipped("no MASK reference applies; guide-star DQ left unflagged")
            return model
        with mask:
            if "dq" in model:
                writable_contiguous(model, "dq")
            else:
                model.dq = np.zeros(model.data.shape[-2:], dtype=np.uint32)
            model.dq |= mask.dq
        return model


def _name(model: Any) -> str:
    try:
        name = str(model.meta.filename)
    except AttributeError:
        name = ""
    return name if name and name != "?" else type(model).__name__


def _as_kernel_array(model: Any, name: str, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    """Return ``model.<name>`` in the dtype the kernels work on.

    Real-valued data become float32 (the pipeline's precision); integer DQ arrays are
    converted when every value fits the DQ dtype.

    Raises
    ------
    InputFileError
        If the array has the wrong shape, is not numeric, or (for DQ arrays) holds
        values the DQ dtype cannot.
    """
    array = np.asarray(getattr(model, name))
    if array.shape != tuple(shape):
        raise InputFileError(
            f"{_name(model)}: {name} has shape {array.shape}, the ramp needs {tuple(shape)}"
        )
    if array.dtype == dtype:
        return array
    target = np.dtype(dtype)
    if target.kind == "f":
        if array.dtype.kind not in "fiu":
            raise InputFileError(
                f"{_name(model)}: {name} has dtype {array.dtype}, not real numbers"
            )
        return array.astype(target)
    if array.dtype.kind not in "iu":
        raise InputFileError(f"{_name(model)}: {name} has dtype {array.dtype}, not DQ flags")
    info = np.iinfo(target)
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise InputFileError(
            f"{_name(model)}: {name} holds values outside the {target} DQ flags"
        )
    return array.astype(target)
