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
            if mask_dq is not None:
                model.pixeldq |= mask_dq
            ramp = model
            self._flag_guide_window(ramp, ramp.pixeldq)
        else:
            ramp = self._to_ramp(model, mask_dq)
        if mask_dq is None:
            self.mark_skipped("no MASK reference applies; pixel DQ left unflagged")
        return ramp

    def _flag_guide_window(self, model: Any, pixeldq: Any) -> None:
        gs = model.meta.guide_star
        window = (gs.window_xstart, gs.window_xstop, gs.window_ystart, gs.window_ystop)
        if flag_guide_window(pixeldq, window, self.expand_gw_flagging):
            self.log.info("Flagged the guide window %s", window)

    def _to_ramp(self, raw: Any, mask_dq: Any) -> datamodels.RampModel:
        offset = raw.meta.instrument.get("data_encoding_offset", 0) or 0
        names = set(raw)
        data, pixeldq, groupdq = to_ramp_arrays(
            raw.data,
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
