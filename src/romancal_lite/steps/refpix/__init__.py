"""The ``refpix`` step: reference-pixel correction of a ramp (see docs/steps/refpix.md)."""

from romancal_lite.steps.refpix.correction import RefPixReport, correct_reference_pixels
from romancal_lite.steps.refpix.refpix_step import RefPixStep

__all__ = ["RefPixReport", "RefPixStep", "correct_reference_pixels"]
