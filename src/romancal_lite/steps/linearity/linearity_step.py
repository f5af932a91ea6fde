"""The ``linearity`` step (seeds/000:710-760)."""

from __future__ import annotations

from typing import Any

import numpy as np

import romancore
from romancal_lite import datamodels
from romancal_lite.steps._arrays import writable_contiguous
from romancal_lite.stpipe import Step

__all__ = ["LinearityStep"]


class LinearityStep(Step):
    """Correct each resultant for the non-linear detector response, in place.

    ``corrected = sum_k c_k raw**k`` with the LINEARITY reference coefficients, by
    `romancore.apply_linearity`: saturated resultants are left as they are; pixels
    with NaN coefficients, ``NO_LIN_CORR`` or a zero linear term are left uncorrected
    and flagged ``NO_LIN_CORR``; the reference ``dq`` is OR-ed into ``pixeldq``.
    """

    class_alias = "linearity"
    reference_file_types = ("linearity",)
    model_type = datamodels.RampModel

    def process(self, model: Any) -> Any:
        """Linearise ``model``'s resultants.

        Parameters
        ----------
        model : RampModel
            Ramp in DN, updated in place.

        Returns
        -------
        RampModel
            The same model.
        """
        ref = self.open_reference(model, "linearity")
        if ref is None:
            self.mark_skipped("no LINEARITY reference applies")
            return model
        writable_contiguous(model, "data", "groupdq", "pixeldq")
        with ref:
            romancore.apply_linearity(
                model.data,
                model.groupdq,
                model.pixeldq,
                np.ascontiguousarray(ref.coeffs, dtype=np.float32),
                np.ascontiguousarray(ref.dq, dtype=np.uint32),
            )
        return model
