"""Casertano (2022) fitting of unevenly sampled ramps with queue-based jump splitting."""

from romancore.ramp.finish import RateImages, finish_ramp_fit
from romancore.ramp.fit import RampFitResult, fit_ramps, fit_rate_images

__all__ = ["RampFitResult", "RateImages", "finish_ramp_fit", "fit_ramps", "fit_rate_images"]
