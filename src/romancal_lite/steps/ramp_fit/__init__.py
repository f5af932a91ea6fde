"""``ramp_fit``: ramps to a count-rate image with romancore's Casertano fit."""

from .fitting import RampFitArrays, fit_exposure, uniform_weights
from .ramp_fit_step import RampFitStep

__all__ = ["RampFitArrays", "RampFitStep", "fit_exposure", "uniform_weights"]
