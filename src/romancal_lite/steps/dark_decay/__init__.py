"""Subtraction of the decaying dark signal from each resultant (``dark_decay``)."""

from .dark_decay import dark_decay_signal, subtract_dark_decay
from .dark_decay_step import DarkDecayStep

__all__ = ["DarkDecayStep", "dark_decay_signal", "subtract_dark_decay"]
