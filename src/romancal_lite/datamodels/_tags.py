"""Roman tags known to RAD 1.1 (all versions), as written by roman_datamodels.

Generated from the RAD manifests ``datamodels-1.0`` .. ``datamodels-2.1.0`` and
``static-1.0.0`` .. ``static-1.2.0``; only the tag names and versions are kept.
"""

from __future__ import annotations

__all__ = ["ROMAN_TAG_PREFIX", "TAG_VERSIONS", "all_tag_uris", "split_tag", "tag_uri"]

ROMAN_TAG_PREFIX = "asdf://stsci.edu/datamodels/roman/tags/"

#: tag name -> versions (oldest first)
TAG_VERSIONS: dict[str, tuple[str, ...]] = {
    "associations": ("1.0.0",),
    "cal_logs": ("1.0.0",),
    "calibration_software_name": ("1.0.0",),
    "calibration_software_version": ("1.0.0",),
    "coordinates": ("1.0.0",),
    "ephemeris": ("1.0.0", "1.1.0"),
    "exposure": ("1.0.0", "1.1.0", "1.2.0", "1.3.0"),
    "file_date": ("1.0.0",),
    "filename": ("1.0.0",),
    "forced_image_source_catalog": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "2.0.0", "2.1.0"),
    "forced_mosaic_source_catalog": (
        "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "2.0.0", "2.1.0",
    ),
    "fps/cal_step": ("1.0.0",),
    "fps/calibration_software_version": ("1.0.0",),
    "fps/exposure": ("1.0.0",),
    "fps/file_date": ("1.0.0",),
    "fps/filename": ("1.0.0",),
    "fps/groundtest": ("1.0.0",),
    "fps/guidestar": ("1.0.0",),
    "fps/model_type": ("1.0.0",),
    "fps/origin": ("1.0.0",),
    "fps/prd_software_version": ("1.0.0",),
    "fps/ref_file": ("1.0.0",),
    "fps/sdf_software_version": ("1.0.0",),
    "fps/statistics": ("1.0.0",),
    "fps/telescope": ("1.0.0",),
    "fps/wfi_mode": ("1.0.0",),
    "fps": ("1.0.0",),
    "guidestar": ("1.0.0", "1.1.0", "1.2.0"),
    "guidewindow": ("1.0.0", "1.1.0", "1.2.0", "1.3.0"),
    "image_source_catalog": (
        "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0", "2.0.0", "2.1.0",
    ),
    "individual_image_meta": ("1.0.0",),
    "l1_detector_guidewindow": (
        "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "2.0.0", "2.1.0",
    ),
    "l1_face_guidewindow": (
        "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "2.0.0", "2.1.0",
    ),
    "l2_cal_step": ("1.0.0", "1.1.0", "1.2.0"),
    "l3_cal_step": ("1.0.0", "1.1.0"),
    "model_type": ("1.0.0",),
    "mosaic_associations": ("1.0.0",),
    "mosaic_basic": ("1.0.0", "1.1.0", "1.2.0"),
    "mosaic_segmentation_map": (
        "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0", "2.0.0", "2.1.0",
    ),
    "mosaic_source_catalog": (
        "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0", "1.8.0", "2.0.0",
        "2.1.0",
    ),
    "mosaic_wcsinfo": ("1.0.0",),
    "msos_stack": (
        "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0", "1.8.0", "2.0.0",
        "2.1.0",
    ),
    "multiband_segmentation_map": ("1.0.0", "1.1.0", "1.2.0", "2.0.0", "2.1.0"),
    "multiband_source_catalog": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "2.0.0", "2.1.0"),
    "observation": ("1.0.0", "1.1.0"),
    "origin": ("1.0.0",),
    "outlier_detection": ("1.0.0",),
    "photometry": ("1.0.0",),
    "pointing": ("1.0.0", "1.1.0"),
    "prd_version": ("1.0.0",),
    "product_type": ("1.0.0",),
    "program": ("1.0.0", "1.1.0"),
    "ramp": (
        "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0", "1.8.0", "2.0.0",
        "2.1.0",
    ),
    "ramp_fit_output": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0"),
    "rcs": ("1.0.0", "1.1.0"),
    "ref_file": ("1.0.0", "1.1.0"),
    "reference_files/abvegaoffset": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "2.0.0"),
    "reference_files/apcorr": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "2.0.0"),
    "reference_files/dark": (
        "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0", "2.0.0",
    ),
    "reference_files/darkdecaysignal": ("1.0.0", "1.1.0", "1.2.0", "2.0.0"),
    "reference_files/detectorstatus": ("1.0.0", "1.1.0", "1.2.0", "2.0.0"),
    "reference_files/distortion": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "2.0.0"),
    "reference_files/epsf": (
        "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "2.0.0",
    ),
    "reference_files/etc": ("1.0.0", "2.0.0", "2.1.0"),
    "reference_files/flat": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "2.0.0"),
    "reference_files/gain": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "2.0.0"),
    "reference_files/integralnonlinearity": ("1.0.0", "1.1.0", "1.2.0", "2.0.0"),
    "reference_files/inverselinearity": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "2.0.0"),
    "reference_files/ipc": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "2.0.0"),
    "reference_files/linearity": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "2.0.0"),
    "reference_files/mask": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "2.0.0"),
    "reference_files/matable": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "2.0.0"),
    "reference_files/pixelarea": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "2.0.0"),
    "reference_files/readnoise": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "2.0.0"),
    "reference_files/refpix": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "2.0.0"),
    "reference_files/saturation": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "2.0.0"),
    "reference_files/skycells": ("1.0.0", "1.1.0", "1.2.0", "2.0.0"),
    "reference_files/superbias": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "2.0.0"),
    "reference_files/wfi_img_photom": (
        "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "2.0.0",
    ),
    "resample": ("1.0.0",),
    "sdf_software_version": ("1.0.0",),
    "segmentation_map": (
        "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0", "2.0.0", "2.1.0",
    ),
    "sky_background": ("1.0.0",),
    "source_catalog": ("1.0.0",),
    "statistics": ("1.0.0",),
    "telescope": ("1.0.0",),
    "tvac/cal_step": ("1.0.0",),
    "tvac/calibration_software_version": ("1.0.0",),
    "tvac/exposure": ("1.0.0",),
    "tvac/file_date": ("1.0.0",),
    "tvac/filename": ("1.0.0",),
    "tvac/groundtest": ("1.0.0",),
    "tvac/guidestar": ("1.0.0",),
    "tvac/model_type": ("1.0.0",),
    "tvac/origin": ("1.0.0",),
    "tvac/prd_software_version": ("1.0.0",),
    "tvac/ref_file": ("1.0.0",),
    "tvac/sdf_software_version": ("1.0.0",),
    "tvac/statistics": ("1.0.0",),
    "tvac/telescope": ("1.0.0",),
    "tvac/wfi_mode": ("1.0.0",),
    "tvac": ("1.0.0",),
    "velocity_aberration": ("1.0.0",),
    "visit": ("1.0.0", "1.1.0", "1.2.0"),
    "wcsinfo": ("1.0.0", "1.1.0"),
    "wfi_image": (
        "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0", "1.8.0", "2.0.0",
        "2.1.0",
    ),
    "wfi_mode": ("1.0.0", "1.1.0", "1.2.0"),
    "wfi_mosaic": (
        "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0", "2.0.0", "2.1.0",
    ),
    "wfi_science_raw": (
        "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0", "1.8.0", "2.0.0",
        "2.1.0",
    ),
    "wfi_wcs": ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "2.0.0", "2.1.0"),
}


def tag_uri(name: str, version: str | None = None) -> str:
    """Return the full tag URI of a Roman tag name.

    Parameters
    ----------
    name : str
        Tag name without prefix and version, e.g. ``"wfi_image"`` or
        ``"reference_files/dark"``.
    version : str, optional
        Tag version; the newest known version when omitted.

    Returns
    -------
    str
        The tag URI, e.g. ``asdf://stsci.edu/datamodels/roman/tags/wfi_image-2.1.0``.
    """
    if version is None:
        version = TAG_VERSIONS[name][-1]
    return f"{ROMAN_TAG_PREFIX}{name}-{version}"


def split_tag(uri: str) -> tuple[str, str] | None:
    """Split a Roman tag URI into its name and version.

    Parameters
    ----------
    uri : str
        A tag URI.

    Returns
    -------
    tuple of str or None
        ``(name, version)``, or ``None`` when ``uri`` is not a Roman tag.
    """
    if not uri.startswith(ROMAN_TAG_PREFIX):
        return None
    name, sep, version = uri[len(ROMAN_TAG_PREFIX):].rpartition("-")
    if not sep or not name:
        return None
    return name, version


def all_tag_uris() -> list[str]:
    """Return every known Roman tag URI (all names, all versions).

    Returns
    -------
    list of str
        The URIs, grouped by name.
    """
    return [tag_uri(name, v) for name, versions in TAG_VERSIONS.items() for v in versions]
