"""Pipelines: `ExposurePipeline` (``roman_elp``) and `MosaicPipeline` (``roman_mos``).

``roman_elp``: raw exposure to calibrated image; ``roman_mos`` (alias ``roman_hlp``):
calibrated images to a mosaic and its catalog.
"""

from .exposure_pipeline import ExposurePipeline, fully_saturated, zeroed_image
from .mosaic_pipeline import HighLevelPipeline, MosaicPipeline

__all__ = [
    "ExposurePipeline",
    "HighLevelPipeline",
    "MosaicPipeline",
    "fully_saturated",
    "zeroed_image",
]
