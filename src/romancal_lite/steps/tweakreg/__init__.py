"""Align an image's WCS to an absolute reference catalog (``tweakreg``, tweakwcs)."""

from .tweakreg import (
    TweakregFailure,
    crop_to_image,
    find_sources,
    fit_wcs,
    image_catalog,
    propagate_to_epoch,
    read_reference_catalog,
    read_source_catalog,
    serialize_fit_info,
)
from .tweakreg_step import TweakRegStep

__all__ = [
    "TweakRegStep",
    "TweakregFailure",
    "crop_to_image",
    "find_sources",
    "fit_wcs",
    "image_catalog",
    "propagate_to_epoch",
    "read_reference_catalog",
    "read_source_catalog",
    "serialize_fit_info",
]
