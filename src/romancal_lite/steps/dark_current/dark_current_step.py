"""The ``dark_current`` step: subtract the DARK reference rate from the slope image."""

from __future__ import annotations

from typing import Any

from romancal_lite import datamodels
from romancal_lite.errors import InputFileError
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
        shape = _image_shape(model)
        full = None if shape is None else (shape[0] + 2 * BORDER, shape[1] + 2 * BORDER)
        dark = self.open_reference(model, "dark", expected_shape=full)
        if dark is None:
            # before the image is looked at: there is nothing to subtract anyway
            self.mark_skipped("No DARK reference file applies; dark current not subtracted")
            return model
        with dark:
            if shape is None:
                raise InputFileError(f"{model!r}: dark_current needs a 2-D slope image in data")
            subtract_dark_current(model.data, model.dq, dark.dark_slope, dark.dq)
        return model


def _image_shape(model: Any) -> tuple[int, int] | None:
    """Return the (rows, columns) of a 2-D ``model.data``, or None if there is none."""
    try:
        data = model.data
    except (AttributeError, KeyError):
        return None
    shape = getattr(data, "shape", None)
    if shape is None or len(shape) != 2:
        return None
    return (int(shape[0]), int(shape[1]))
