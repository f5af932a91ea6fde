"""Flat-field correction of a level 2 image (``flatfield``)."""

from .flatfield import apply_flat_field
from .flatfield_step import FlatFieldStep

__all__ = ["FlatFieldStep", "apply_flat_field"]
