"""Align images' WCS to an absolute reference catalog (``tweakreg``, tweakwcs)."""

from .tweakreg import (
    AlignImage,
    Alignment,
    TweakregFailure,
    align_images,
    crop_to_image,
    find_sources,
    fit_wcs,
    image_catalog,
    propagate_to_epoch,
    read_reference_catalog,
    read_source_catalog,
    reference_mask,
    serialize_fit_info,
    update_sky_columns,
)
from .tweakreg_step import TweakRegStep, exposure_group, image_shape

__all__ = [
    "AlignImage",
    "Alignment",
    "TweakRegStep",
    "TweakregFailure",
    "align_images",
    "crop_to_image",
    "exposure_group",
    "find_sources",
    "fit_wcs",
    "image_catalog",
    "image_shape",
    "propagate_to_epoch",
    "read_reference_catalog",
    "read_source_catalog",
    "reference_mask",
    "serialize_fit_info",
    "update_sky_columns",
]
