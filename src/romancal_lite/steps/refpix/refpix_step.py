"""`RefPixStep`: remove the read-out electronics signal measured by the reference pixels."""

from __future__ import annotations

from typing import Any

from romancal_lite import datamodels
from romancal_lite.errors import InputFileError
from romancal_lite.steps._arrays import writable_contiguous
from romancal_lite.steps.refpix.correction import correct_reference_pixels
from romancal_lite.stpipe import Step
from romancal_lite.stpipe.params import Param

__all__ = ["RefPixStep"]


class RefPixStep(Step):
    """Reference-pixel correction of a `~romancal_lite.datamodels.RampModel`, in place.

    Per resultant: optional amp33 row common mode, per-channel offsets from the top
    and bottom reference rows (odd and even columns apart by default), then the
    smoothed row signal of the side reference columns that ``pixeldq`` flags as
    reference pixels. Only the change of these estimates from resultant to resultant
    is subtracted, so every pixel keeps its own level (pedestal included), the level
    the official LINEARITY references are defined on, as after romancal 1.1's refpix.
    The algorithm is `correct_reference_pixels`; it needs no reference file. See
    ``docs/steps/refpix.md``.
    """

    class_alias = "refpix"
    reference_file_types = ()
    model_type = datamodels.RampModel

    odd_even_columns = Param(
        bool, True, "Estimate the channel offsets separately for odd and even columns"
    )
    use_side_ref_pixels = Param(
        bool, True, "Remove the row-correlated signal of the left/right reference columns"
    )
    side_smoothing_length = Param(
        int, 11, "Height in rows of the running median of the side reference signal",
        minimum=1,
    )
    side_gain = Param(
        float, 1.0, "Factor applied to the side reference signal before it is subtracted",
        minimum=0.0,
    )
    use_amp33 = Param(
        bool, False, "Remove the row common mode measured by the amp33 reference output"
    )

    def process(self, model: Any) -> Any:
        """Correct ``model.data`` in place and return the model.

        Parameters
        ----------
        model : RampModel
            Ramp with ``data``, ``pixeldq`` (REFERENCE_PIXEL flags set by ``dq_init``)
            and, if ``use_amp33``, ``amp33``.

        Returns
        -------
        RampModel
            The same model, corrected.

        Raises
        ------
        InputFileError
            If the model has no ``data``/``pixeldq`` or their shapes do not fit.
        """
        try:
            writable_contiguous(model, "data")
            data = model.data
            pixeldq = model.pixeldq
        except (AttributeError, KeyError) as exc:
            raise InputFileError(
                f"refpix needs a ramp with data and pixeldq, got {type(model).__name__}"
            ) from exc
        amp33 = model.amp33 if self.use_amp33 else None
        try:
            report = correct_reference_pixels(
                data,
                pixeldq,
                amp33,
                odd_even_columns=self.odd_even_columns,
                use_side_ref_pixels=self.use_side_ref_pixels,
                side_smoothing_length=self.side_smoothing_length,
                side_gain=self.side_gain,
                use_amp33=self.use_amp33,
            )
        except ValueError as exc:
            raise InputFileError(f"refpix cannot correct this ramp: {exc}") from exc

        if data.shape[0] < 2:
            self.log.info(
                "One resultant: no change between resultants to remove; data unchanged"
            )
        if report.uncorrected:
            channels = sorted({c for _, c in report.uncorrected})
            self.log.warning(
                "No usable top/bottom reference pixels in %d (resultant, channel) pairs;"
                " channels %s left without an offset correction there",
                len(report.uncorrected),
                channels,
            )
        if self.use_side_ref_pixels:
            if report.sides:
                self.log.info("Side reference columns used: %s", ", ".join(report.sides))
            else:
                self.log.info(
                    "No usable side reference columns in pixeldq; row-correlated"
                    " correction skipped"
                )
        if self.use_amp33 and not report.amp33_used:
            self.log.warning("amp33 holds only zeros; amp33 correction skipped")
        return model
