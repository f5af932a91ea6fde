"""Casertano (2022) fitting of unevenly sampled ramps with queue-based jump splitting."""

from romancore.ramp.fit import RampFitResult, fit_ramps

__all__ = ["RampFitResult", "fit_ramps"]
