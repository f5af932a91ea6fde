"""Flux calibration of level 2 images: DN/s -> MJy/sr (``flux``)."""

from .flux import apply_flux_correction, conversion_factor, flux_scales
from .flux_step import FluxStep

__all__ = ["FluxStep", "apply_flux_correction", "conversion_factor", "flux_scales"]
