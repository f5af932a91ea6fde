"""The ``flatfield`` step: divide the image by the FLAT reference and propagate errors."""

from __future__ import annotations

from typing import Any

import numpy as np

from romancal_lite import datamodels
from romancal_lite.stpipe import Param, Step

from .flatfield import apply_flat_field

__all__ = ["FlatFieldStep"]


def _float32(model: Any, name: str) -> np.ndarray | None:
    """Return ``model.<name>`` as float32 (converted once if stored otherwise), or None."""
    value = getattr(model, name, None)
    if value is None:
        return None
    if value.dtype != np.float32:
        # err and the variances are float16 in the RAD schema (e.g. when read from a
        # file): compute in float32, the model converts back when saved
        value = value.astype(np.float32)
        setattr(model, name, value)
    return value


class FlatFieldStep(Step):
    """Flat-field a level 2 image with the FLAT reference of its detector and element.

    ``data`` (and ``dumo``) are divided by the flat, ``var_poisson`` and ``var_rnoise``
    by its square; with ``include_var_flat`` the flat's own error gives ``var_flat``
    and ``err`` becomes ``sqrt(var_poisson + var_rnoise + var_flat)`` (seeds/000:1695-1711),
    otherwise ``err`` is divided by the flat (romancal 1.1's default). Pixels with a
    NaN, zero or ``NO_FLAT_FIELD`` flat keep their values and are flagged
    ``NO_FLAT_FIELD | DO_NOT_USE``. See `apply_flat_field`. A FLAT reference of
    ``"N/A"`` leaves the image unchanged and records ``meta.cal_step.flat_field =
    "SKIPPED"``.
    """

    class_alias = "flatfield"
    cal_step_key = "flat_field"
    reference_file_types = ("flat",)
    suffix = Param(str, "flat", "Suffix of the output file name")
    model_type = datamodels.ImageModel

    include_var_flat = Param(
        bool, True, "Compute var_flat and include it in err (False: err is divided by the flat)"
    )

    def process(self, model: Any) -> Any:
        """Apply the flat field in place.

        Parameters
        ----------
        model : ImageModel
            Level 2 image (DN/s).

        Returns
        -------
        ImageModel
            The same model, flat-fielded; float16 ``err``/variances become float32.
        """
        flat = self.open_reference(model, "flat")
        if flat is None:
            self.mark_skipped("No FLAT reference file applies; flat field not applied")
            return model
        with flat:
            data = _float32(model, "data")
            var_flat = None
            if self.include_var_flat:
                var_flat = np.empty(data.shape, dtype=np.float32)
            n_bad = apply_flat_field(
                data,
                model.dq,
                flat.data,
                flat.dq,
                flat.err,
                var_poisson=_float32(model, "var_poisson"),
                var_rnoise=_float32(model, "var_rnoise"),
                var_flat=var_flat,
                err=_float32(model, "err"),
                dumo=getattr(model, "dumo", None),
            )
        if var_flat is not None:
            model.var_flat = var_flat
        if n_bad:
            self.log.info("%d pixels have no valid flat value (NO_FLAT_FIELD, DO_NOT_USE)", n_bad)
        return model

