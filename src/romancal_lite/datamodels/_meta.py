"""Default metadata trees (RAD 2.x, as roman_datamodels 1.1 makes them) and meta helpers.

The values are the placeholders roman_datamodels' ``create_fake_data`` uses
(``"?"``, ``-999999``): enough for a file to validate against the RAD 1.1
schemas, clearly not real values.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from astropy.time import Time

__all__ = [
    "L2_CAL_STEPS",
    "deep_merge",
    "default_common_meta",
    "default_image_meta",
    "default_ramp_meta",
    "default_ref_meta",
]

_EPOCH = "2020-01-01T00:00:00.000"
_NA_INT = -999999
_NA_FLOAT = -999999.0

#: the step names of ``meta.cal_step`` (RAD ``l2_cal_step-2.0.0``)
L2_CAL_STEPS: tuple[str, ...] = (
    "assign_wcs",
    "dark",
    "dark_decay",
    "dq_init",
    "flat_field",
    "flux",
    "linearity",
    "outlier_detection",
    "photom",
    "ramp_fit",
    "refpix",
    "saturation",
    "skymatch",
    "source_catalog",
    "tweakreg",
    "wfi18_transient",
)

_REF_FILE_KEYS = (
    "apcorr",
    "area",
    "dark",
    "darkdecaysignal",
    "distortion",
    "epsf",
    "flat",
    "gain",
    "integralnonlinearity",
    "inverselinearity",
    "linearity",
    "mask",
    "photom",
    "readnoise",
    "refpix",
    "saturation",
)


def _time(value: str = _EPOCH) -> Time:
    return Time(value, format="isot", scale="utc")


def default_common_meta(model_type: str) -> dict[str, Any]:
    """Return the common exposure metadata (RAD ``meta/common-2.1.0``) with placeholders.

    Parameters
    ----------
    model_type : str
        Value of ``meta.model_type`` (the model class name).

    Returns
    -------
    dict
        A new metadata tree.
    """
    return {
        "calibration_software_name": "RomanCAL",
        "calibration_software_version": "?",
        "product_type": "?",
        "filename": "?",
        "file_date": _time(),
        "model_type": model_type,
        "origin": "STSCI/SOC",
        "prd_version": "?",
        "sdf_software_version": "?",
        "telescope": "ROMAN",
        "coordinates": {"reference_frame": "ICRS"},
        "ephemeris": {
            "ephemeris_reference_frame": "?",
            "spatial_x": _NA_FLOAT,
            "spatial_y": _NA_FLOAT,
            "spatial_z": _NA_FLOAT,
            "time": _NA_FLOAT,
            "type": "?",
            "velocity_x": _NA_FLOAT,
            "velocity_y": _NA_FLOAT,
            "velocity_z": _NA_FLOAT,
        },
        "exposure": {
            "data_problem": "?",
            "effective_exposure_time": _NA_FLOAT,
            "end_time": _time(),
            "engineering_quality": "?",
            "exposure_time": _NA_FLOAT,
            "frame_time": _NA_FLOAT,
            "hga_move": False,
            "ma_table_id": "?",
            "ma_table_name": "?",
            "ma_table_number": _NA_INT,
            "nresultants": _NA_INT,
            "read_pattern": [],
            "start_time": _time(),
            "truncated": False,
            "type": "WFI_IMAGE",
        },
        "guide_star": {
            "epoch": "?",
            "guide_mode": "?",
            "guide_star_id": "?",
            "guide_window_id": "?",
            "window_xstart": _NA_INT,
            "window_xstop": _NA_INT,
            "window_ystart": _NA_INT,
            "window_ystop": _NA_INT,
        },
        "instrument": {"detector": "WFI01", "name": "WFI", "optical_element": "F062"},
        "observation": {
            "execution_plan": _NA_INT,
            "exposure": _NA_INT,
            "observation": _NA_INT,
            "observation_id": "?",
            "pass": _NA_INT,
            "program": _NA_INT,
            "segment": _NA_INT,
            "visit": _NA_INT,
            "visit_file_activity": "?",
            "visit_file_group": _NA_INT,
            "visit_file_sequence": _NA_INT,
            "visit_id": "?",
            "wfi_parallel": False,
        },
        "pointing": {
            "dec_v1": _NA_FLOAT,
            "pa_aperture": _NA_FLOAT,
            "pa_v3": _NA_FLOAT,
            "pointing_engineering_source": "CALCULATED",
            "ra_v1": _NA_FLOAT,
            "target_aperture": "?",
            "target_dec": _NA_FLOAT,
            "target_ra": _NA_FLOAT,
        },
        "program": {
            "category": "?",
            "investigator_name": "?",
            "science_category": "?",
            "subcategory": "?",
            "title": "?",
        },
        "rcs": {"active": False, "bank": "1", "counts": _NA_INT, "electronics": "A", "led": "?"},
        "ref_file": {
            **{key: "?" for key in _REF_FILE_KEYS},
            "crds": {"context": "?", "version": "?"},
        },
        "velocity_aberration": {
            "dec_reference": _NA_FLOAT,
            "ra_reference": _NA_FLOAT,
            "scale_factor": _NA_FLOAT,
        },
        "visit": {
            "dither": {"executed_pattern": [], "primary_name": "?", "subpixel_name": "?"},
            "internal_target": False,
            "nexposures": _NA_INT,
            "start_time": _time(),
            "type": "?",
        },
        "wcsinfo": {
            "aperture_name": "WFI01_FULL",
            "dec_ref": _NA_FLOAT,
            "ra_ref": _NA_FLOAT,
            "roll_ref": _NA_FLOAT,
            "s_region": "?",
            "v2_ref": _NA_FLOAT,
            "v3_ref": _NA_FLOAT,
            "v3yangle": _NA_FLOAT,
            "vparity": -1,
        },
    }


def default_cal_step() -> dict[str, str]:
    """Return a ``meta.cal_step`` with every step ``"INCOMPLETE"``.

    Returns
    -------
    dict
        ``{step: "INCOMPLETE"}``.
    """
    return dict.fromkeys(L2_CAL_STEPS, "INCOMPLETE")


def default_ramp_meta(model_type: str = "RampModel") -> dict[str, Any]:
    """Return default metadata of a ramp (common meta plus ``cal_step``).

    Parameters
    ----------
    model_type : str, optional
        Value of ``meta.model_type``.

    Returns
    -------
    dict
        A new metadata tree.
    """
    meta = default_common_meta(model_type)
    meta["cal_step"] = default_cal_step()
    return meta


def image_only_meta() -> dict[str, Any]:
    """Return the metadata an L2 image has on top of the ramp metadata.

    Returns
    -------
    dict
        ``photometry`` (placeholders), ``wcs`` (``None``) and ``cal_logs`` (empty).
    """
    return {
        "photometry": {
            "conversion_megajanskys": _NA_FLOAT,
            "conversion_megajanskys_uncertainty": _NA_FLOAT,
            "pixel_area": _NA_FLOAT,
        },
        "wcs": None,
        "cal_logs": [],
    }


def default_image_meta(model_type: str = "ImageModel") -> dict[str, Any]:
    """Return default metadata of an L2 image.

    Parameters
    ----------
    model_type : str, optional
        Value of ``meta.model_type``.

    Returns
    -------
    dict
        A new metadata tree.
    """
    meta = default_ramp_meta(model_type)
    meta.update(image_only_meta())
    return meta


def default_ref_meta(
    reftype: str, *, exposure: bool = False, optical_element: bool = False
) -> dict[str, Any]:
    """Return default metadata of a reference file (RAD ``ref_common-2.0.0``).

    Parameters
    ----------
    reftype : str
        CRDS reference type, e.g. ``"DARK"``.
    exposure : bool, optional
        Add ``meta.exposure`` (``type`` and ``p_exptype``), as darks have.
    optical_element : bool, optional
        Add ``meta.instrument.optical_element``.

    Returns
    -------
    dict
        A new metadata tree.
    """
    meta: dict[str, Any] = {
        "author": "?",
        "description": "?",
        "instrument": {"detector": "WFI01", "name": "WFI"},
        "origin": "?",
        "pedigree": "?",
        "reftype": reftype,
        "telescope": "ROMAN",
        "useafter": _time(),
    }
    if optical_element:
        meta["instrument"]["optical_element"] = "F062"
    if exposure:
        meta["exposure"] = {"p_exptype": "WFI_IMAGE|", "type": "WFI_IMAGE"}
    return meta


def deep_merge(base: dict, update: Mapping) -> dict:
    """Merge ``update`` into ``base`` recursively (in place) and return ``base``.

    Mappings are merged key by key; any other value of ``update`` (deep-copied
    unless it is an array) replaces the one in ``base``.

    Parameters
    ----------
    base : dict
        Tree to update.
    update : Mapping
        New values.

    Returns
    -------
    dict
        ``base``.
    """
    for key, value in update.items():
        value = getattr(value, "_data", value) if type(value).__name__ in ("Node",) else value
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        elif hasattr(value, "shape") and hasattr(value, "dtype"):
            base[key] = value
        else:
            base[key] = copy.deepcopy(value)
    return base
