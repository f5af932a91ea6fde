"""The ``wfi18_transient`` step: fit and remove WFI18's first-read transient."""

from __future__ import annotations

from typing import Any

from romancal_lite import datamodels
from romancal_lite.stpipe import Param, Step

from .._arrays import writable_contiguous
from ..dark_decay.dark_decay_step import detector_number, exposure_timing
from .wfi18_transient import correct_anomaly

__all__ = ["WFI18TransientStep"]


class WFI18TransientStep(Step):
    """Remove the first-read transient of detector WFI18, or flag the rows it affects.

    Runs after dark_decay (romancal 1.1's ``roman_elp``). Other detectors are left
    unchanged with ``meta.cal_step.wfi18_transient = "N/A"``. See
    `correct_anomaly` for the fit and its fall-back (first 1000 rows of the first
    resultant flagged ``DO_NOT_USE | WFI18_TRANSIENT``), which ``mask_rows`` forces.
    """

    class_alias = "wfi18_transient"
    reference_file_types = ()
    model_type = datamodels.RampModel
    mask_rows = Param(bool, False, "Mask the affected rows instead of fitting")

    def process(self, model: Any) -> Any:
        """Correct (or flag) the first resultant of a WFI18 ramp, in place.

        Parameters
        ----------
        model : RampModel
            Ramp in DN.

        Returns
        -------
        RampModel
            The same model.
        """
        detector, _ = detector_number(model)
        if detector != "WFI18":
            self.mark_not_applicable(f"detector {detector} is not WFI18")
            return model
        frame_time, read_pattern = exposure_timing(model)
        writable_contiguous(model, "data", "groupdq")
        self.log.info("Correcting the first-read transient of WFI18")
        result = correct_anomaly(
            model.data, model.groupdq, frame_time, read_pattern, mask_rows=self.mask_rows
        )
        if result.corrected:
            self.log.info(
                "Transient fit: a=%.4g DN, b=%.4g DN, tau_a=%.4g s, tau_b=%.4g s",
                *result.parameters,
            )
        elif result.reason.startswith("the transient fit failed"):
            self.log.warning("Transient fit failed; masking affected rows instead")
        else:
            self.log.info("Masking the affected rows: %s", result.reason)
        return model
