"""Dark current subtraction of a slope image (``dark_current``)."""

from .dark_current import subtract_dark_current
from .dark_current_step import DarkCurrentStep

__all__ = ["DarkCurrentStep", "subtract_dark_current"]
