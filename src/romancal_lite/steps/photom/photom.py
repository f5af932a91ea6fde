"""Pick the photometric calibration of one optical element from a PHOTOM table.

The PHOTOM reference (``WfiImgPhotomRefModel``) has a ``phot_table`` with one entry per
optical element (F062 ... F213, GRISM, PRISM, DARK). The entry of the exposure's element
gives three values that romancal 1.1 copies into ``meta.photometry``; the pixel values
are not changed (seeds/000:1826-1838), the data stay in DN/s:

==========================================  ==================  ====================
``meta.photometry`` field                   ``phot_table`` key  unit
==========================================  ==================  ====================
``conversion_megajanskys``                  ``photmjsr``        MJy/sr per DN/s
``conversion_megajanskys_uncertainty``      ``uncertainty``     MJy/sr per DN/s
``pixel_area``                              ``pixelareasr``     sr
==========================================  ==================  ====================

Spectral elements and DARK have null values in the table; they are copied as ``None``
(the RAD ``photometry`` schema allows null), exactly as romancal 1.1 does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["PHOTOMETRY_KEYS", "select_photometry"]

#: ``meta.photometry`` field -> (``phot_table`` key, unit of the value).
PHOTOMETRY_KEYS: dict[str, tuple[str, str]] = {
    "conversion_megajanskys": ("photmjsr", "MJy / sr"),
    "conversion_megajanskys_uncertainty": ("uncertainty", "MJy / sr"),
    "pixel_area": ("pixelareasr", "sr"),
}


def _scalar(value: Any, unit: str) -> float | None:
    """Return ``value`` as a plain float (``None`` stays ``None``).

    RAD 1.x reference files stored quantities; their value is taken in ``unit``.
    """
    if value is None:
        return None
    if hasattr(value, "unit") and hasattr(value, "to_value"):
        from astropy import units as u

        return float(value.to_value(u.Unit(unit)))
    return float(value)


def select_photometry(
    phot_table: Mapping[str, Any], optical_element: str | None
) -> dict[str, float | None] | None:
    """Return the ``meta.photometry`` values for an optical element.

    Parameters
    ----------
    phot_table : mapping
        The ``phot_table`` of a PHOTOM reference: element name -> entry with
        ``photmjsr``, ``uncertainty`` and ``pixelareasr`` (numbers or None).
    optical_element : str or None
        The exposure's ``meta.instrument.optical_element``; matched upper-cased.

    Returns
    -------
    dict or None
        ``{"conversion_megajanskys": ..., "conversion_megajanskys_uncertainty": ...,
        "pixel_area": ...}`` (floats, or None where the table has null), or None if
        the table has no entry for the element.

    Raises
    ------
    ValueError
        If the entry lacks one of the three keys.
    """
    if not isinstance(optical_element, str) or not optical_element:
        return None
    entry = phot_table.get(optical_element.upper())
    if entry is None:
        return None
    values: dict[str, float | None] = {}
    for field, (key, unit) in PHOTOMETRY_KEYS.items():
        if key not in entry:
            raise ValueError(f"phot_table entry {optical_element.upper()} has no {key!r}")
        values[field] = _scalar(entry[key], unit)
    return values
