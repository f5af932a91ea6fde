"""The ``refpix`` step: reference-pixel correction of a ramp (see docs/steps/refpix.md)."""

from romancal_lite.steps.refpix.correction import RefPixReport, correct_reference_pixels
from romancal_lite.steps.refpix.reference_correction import (
    ReferenceCorrectionReport,
    correct_with_refpix_reference,
)
from romancal_lite.steps.refpix.refpix_step import RefPixStep

__all__ = [
    "RefPixReport",
    "RefPixStep",
    "ReferenceCorrectionReport",
    "correct_reference_pixels",
    "correct_with_refpix_reference",
]
