"""``saturation``: flag saturated resultants with `romancore.flag_saturation`."""

from .saturation_step import SaturationStep

__all__ = ["SaturationStep"]
