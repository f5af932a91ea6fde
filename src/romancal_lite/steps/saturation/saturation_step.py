"""The ``saturation`` step (seeds/000:530-600)."""

from __future__ import annotations

from typing import Any

import numpy as np

import romancore
from romancal_lite import datamodels
from romancal_lite.steps._arrays import writable_contiguous
from romancal_lite.stpipe import Param, Step

__all__ = ["SaturationStep"]


class SaturationStep(Step):
    """Flag saturated resultants (and A/D-floor values) in a ramp, in place.

    All the array work is `romancore.flag_saturation`: the SATURATION reference
    threshold (DN), the resultant dilution test of averaged reads, the second-resultant
    check, ``NO_SAT_CHECK`` / NaN thresholds at the 16-bit limit, and optional growth
    of saturation to neighbouring pixels (charge spilling).
    """

    class_alias = "saturation"
    reference_file_types = ("saturation",)
    model_type = datamodels.RampModel
    n_pix_grow_sat = Param(
        int, 0, "Grow saturation to this many pixels around each saturated pixel", minimum=0
    )

    def process(self, model: Any) -> Any:
        """Flag ``model``'s saturated resultants.

        Parameters
        ----------
        model : RampModel
            Ramp in DN; ``groupdq`` and ``pixeldq`` are updated in place.

        Returns
        -------
        RampModel
            The same model.
        """
        ref = self.open_reference(model, "saturation")
        if ref is None:
            self.mark_skipped("no SATURATION reference applies")
            return model
        writable_contiguous(model, "data", "groupdq", "pixeldq")
        with ref:
            romancore.flag_saturation(
                model.data,
                model.groupdq,
                model.pixeldq,
                np.ascontiguousarray(ref.data, dtype=np.float32),
                np.ascontiguousarray(ref.dq, dtype=np.uint32),
                datamodels.read_pattern(model),
                n_pix_grow_sat=self.n_pix_grow_sat,
            )
        return model
