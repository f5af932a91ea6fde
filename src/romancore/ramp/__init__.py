"""Ramp fits of unevenly sampled ramps.

Casertano (2022) with queue-based jump splitting, and the likelihood fit of Brandt
(2024) with chi^2 jump detection.
"""

from romancore.ramp.finish import RateImages, finish_ramp_fit
from romancore.ramp.fit import RampFitResult, fit_ramps, fit_rate_images
from romancore.ramp.likely import (
    LikelyFitResult,
    fit_ramps_likely,
    likely_thresholds,
    neighbor_false_positive_bound,
    neighbor_threshold_for,
    step_false_positive_bound,
    step_threshold_for,
)

__all__ = [
    "LikelyFitResult",
    "RampFitResult",
    "RateImages",
    "finish_ramp_fit",
    "fit_ramps",
    "fit_ramps_likely",
    "fit_rate_images",
    "likely_thresholds",
    "neighbor_false_positive_bound",
    "neighbor_threshold_for",
    "step_false_positive_bound",
    "step_threshold_for",
]
