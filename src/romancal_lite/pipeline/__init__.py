"""Pipelines: `ExposurePipeline` (``roman_elp``), raw exposure to calibrated image."""

from .exposure_pipeline import ExposurePipeline, fully_saturated, zeroed_image

__all__ = ["ExposurePipeline", "fully_saturated", "zeroed_image"]
