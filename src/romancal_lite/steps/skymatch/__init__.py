"""Sky background matching of overlapping images (``skymatch``)."""

from .skymatch import (
    SKY_METHODS,
    SkyParameters,
    SkySolution,
    TangentPlane,
    clip_polygon,
    footprint_radec,
    good_pixel_mask,
    image_sky_statistics,
    overlap_polygons,
    polygon_mask,
    solve_match,
    solve_sky,
)
from .skymatch_step import SkyMatchStep, bad_bits_from_dqbits

__all__ = [
    "SKY_METHODS",
    "SkyMatchStep",
    "SkyParameters",
    "SkySolution",
    "TangentPlane",
    "bad_bits_from_dqbits",
    "clip_polygon",
    "footprint_radec",
    "good_pixel_mask",
    "image_sky_statistics",
    "overlap_polygons",
    "polygon_mask",
    "solve_match",
    "solve_sky",
]
