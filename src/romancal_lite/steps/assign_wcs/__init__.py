"""World coordinate system of a level 2 image (``assign_wcs``)."""

from .assign_wcs import (
    Pointing,
    build_wcs,
    compute_footprint,
    dva_correction,
    pointing_from_wcsinfo,
    s_region_polygon,
    v23tosky,
)
from .assign_wcs_step import AssignWcsStep

__all__ = [
    "AssignWcsStep",
    "Pointing",
    "build_wcs",
    "compute_footprint",
    "dva_correction",
    "pointing_from_wcsinfo",
    "s_region_polygon",
    "v23tosky",
]
