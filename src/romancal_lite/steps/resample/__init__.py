"""Resampling calibrated images onto one sky grid with drizzle (``resample``)."""

from .grid import (
    compute_scale,
    fiducial_from_footprints,
    image_footprint,
    load_output_wcs,
    mean_pixel_area,
    wcs_from_footprints,
)
from .pixmap import calc_pixmap, member_pixmap, resample_range
from .resample import KERNELS, Resampler, good_pixel_mask, parse_fillval, read_noise_variance
from .resample_step import ResampleStep

__all__ = [
    "KERNELS",
    "ResampleStep",
    "Resampler",
    "calc_pixmap",
    "compute_scale",
    "fiducial_from_footprints",
    "good_pixel_mask",
    "image_footprint",
    "load_output_wcs",
    "mean_pixel_area",
    "member_pixmap",
    "parse_fillval",
    "read_noise_variance",
    "resample_range",
    "wcs_from_footprints",
]
