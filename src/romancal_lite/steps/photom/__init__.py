"""Photometric calibration metadata (``photom``)."""

from .photom import PHOTOMETRY_KEYS, select_photometry
from .photom_step import PhotomStep

__all__ = ["PHOTOMETRY_KEYS", "PhotomStep", "select_photometry"]
