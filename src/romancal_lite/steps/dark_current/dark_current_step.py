"""The ``dark_current`` step: subtract the DARK reference rate from the slope image."""

from __future__ import annotations

from typing import Any

from romancal_lite import datamodels
from romancal_lite.stpipe import Param, Step

from .dark_current import BORDER, subtract_dark_current

__all__ = ["DarkCurrentStep"]


class DarkCurrentStep(Step):
    """Subtract the dark current rate (DN/s) from a level 2 slope image.

    Runs after ramp fitting (seeds/002:35-37). The DARK reference covers the full
    detector read-out; its 4-pixel reference border is trimmed before use. See
    `subtract_dark_current` for the arithmetic. A DARK reference of ``"N/A"`` leaves
    the image unchanged and records ``meta.cal_step.dark = "SKIPPED"``.
    """

    class_alias = "dark_current"
    cal_step_key = "dark"
    reference_file_types = ("dark",)
    suffix = Param(str, "darkcurrent", "Suffix of the output file name")
    model_type = datamodels.ImageModel

    def process(self, model: Any) -> Any:
        """Subtract the dark rate and merge the dark DQ flags, in place.

        Parameters
        ----------
        model : ImageModel
            Slope image in DN/s.

        Returns
        -------
        ImageModel
            The same model, dark-subtracted.
        """
        ny, nx = model.data.shape[-2:]
        full = (ny + 2 * BORDER, nx + 2 * BORDER)
        dark = self.open_reference(model, "dark", expected_shape=full)
        if dark is None:
            self.mark_skipped("No DARK reference file applies; dark current not subtracted")
            return model
        with dark:
            subtract_dark_current(model.data, model.dq, dark.dark_slope, dark.dq)
        return model

