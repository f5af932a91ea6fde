"""Removal (or masking) of detector WFI18's first-read transient (``wfi18_transient``)."""

from .wfi18_transient import correct_anomaly, mask_affected_rows
from .wfi18_transient_step import WFI18TransientStep

__all__ = ["WFI18TransientStep", "correct_anomaly", "mask_affected_rows"]
