"""Outlier detection against the median of several exposures (``outlier_detection``)."""

from .outlier_detection import (
    OnDiskMedian,
    abs_derivative,
    blot_median,
    flag_blocks,
    flag_crs,
    flag_resampled_crs,
    mask_low_weight,
    nanmedian_axis0,
    weight_threshold,
)
from .outlier_detection_step import OutlierDetectionStep

__all__ = [
    "OnDiskMedian",
    "OutlierDetectionStep",
    "abs_derivative",
    "blot_median",
    "flag_blocks",
    "flag_crs",
    "flag_resampled_crs",
    "mask_low_weight",
    "nanmedian_axis0",
    "weight_threshold",
]
