"""Build the gwcs of a WFI image: detector -> v2v3 -> v2v3vacorr -> world (ICRS).

The pipeline of transforms is that of romancal 1.1 (``romancal/assign_wcs/assign_wcs.py``),
built here from astropy and gwcs models only:

``detector`` -> ``v2v3``
    The DISTORTION reference's ``coordinate_distortion_transform``: 0-based pixel
    ``(x, y)`` to telescope ``(v2, v3)`` in arcsec (seeds/000:1563-1571).
``v2v3`` -> ``v2v3vacorr``
    Differential velocity aberration: ``v' = s v + (1 - s) v_ref`` per axis, with
    ``s = meta.velocity_aberration.scale_factor``; the identity when ``s`` is 1 or
    not a positive number (the RAD placeholder -999999).
``v2v3vacorr`` -> ``world``
    The rotation of the telescope sphere to the sky. ``(v2, v3)`` is a point on the
    V2V3 sphere (longitude v2, latitude v3); five rotations, applied in this order,
    about z by ``v2_ref``, y by ``-v3_ref``, x by ``roll_ref``, y by ``dec_ref`` and
    z by ``-ra_ref`` (``RotationSequence3D``, axes ``"zyxyz"``) bring
    ``(v2_ref, v3_ref)`` to the x axis, turn the field by the roll about it, and move it
    to ``(ra_ref, dec_ref)`` (the 3-D Euler rotation of seeds/000:1579-1591).

The keywords come from ``meta.wcsinfo``: ``ra_ref``, ``dec_ref``, ``roll_ref`` (deg),
``v2_ref``, ``v3_ref`` (arcsec). As in romancal 1.1, ``v3yangle`` and ``vparity`` are
not used (the parity and the detector's angle to V3 are in the distortion transform),
and neither is ``meta.pointing`` (``ra_v1``, ``pa_v3``...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy import coordinates as coord
from astropy import units as u
from astropy.modeling import Model, bind_bounding_box
from astropy.modeling.models import Identity, RotationSequence3D, Scale, Shift
from gwcs import WCS
from gwcs import coordinate_frames as cf
from gwcs.geometry import CartesianToSpherical, SphericalToCartesian

__all__ = [
    "PLACEHOLDER",
    "Pointing",
    "build_wcs",
    "compute_footprint",
    "dva_correction",
    "pointing_from_wcsinfo",
    "s_region_polygon",
    "v23tosky",
]

#: The RAD "not available" value of numeric metadata.
PLACEHOLDER = -999999.0


@dataclass(frozen=True)
class Pointing:
    """The reference point of an exposure: where ``(v2_ref, v3_ref)`` is on the sky.

    Attributes
    ----------
    ra_ref, dec_ref : float
        Sky position (ICRS, deg) of the reference point.
    roll_ref : float
        Position angle (deg) of the V3 axis at the reference point, east of north.
    v2_ref, v3_ref : float
        Telescope coordinates (arcsec) of the reference point.
    """

    ra_ref: float
    dec_ref: float
    roll_ref: float
    v2_ref: float
    v3_ref: float


def _number(wcsinfo: Mapping[str, Any], key: str) -> float:
    value = wcsinfo.get(key)
    if value is None or isinstance(value, bool):
        raise ValueError(f"meta.wcsinfo.{key} is missing")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"meta.wcsinfo.{key} is not a number: {value!r}") from None
    if not math.isfinite(number) or number == PLACEHOLDER:
        raise ValueError(f"meta.wcsinfo.{key} has no valid value ({value!r})")
    return number


def pointing_from_wcsinfo(wcsinfo: Mapping[str, Any]) -> Pointing:
    """Read and check the reference point from ``meta.wcsinfo``.

    Parameters
    ----------
    wcsinfo : mapping
        ``meta.wcsinfo`` with ``ra_ref``, ``dec_ref``, ``roll_ref`` (deg) and
        ``v2_ref``, ``v3_ref`` (arcsec).

    Returns
    -------
    Pointing
        The values as floats.

    Raises
    ------
    ValueError
        If a value is missing, not a finite number, the RAD placeholder -999999, or
        ``dec_ref`` is outside [-90, 90].
    """
    values = {key: _number(wcsinfo, key) for key in Pointing.__dataclass_fields__}
    if abs(values["dec_ref"]) > 90.0:
        raise ValueError(f"meta.wcsinfo.dec_ref is outside [-90, 90]: {values['dec_ref']}")
    return Pointing(**values)


def v23tosky(pointing: Pointing, wrap_v2_at: int = 180, wrap_lon_at: int = 360) -> Model:
    """Return the transform from telescope ``(v2, v3)`` (arcsec) to ``(ra, dec)`` (deg).

    Parameters
    ----------
    pointing : Pointing
        Reference point and roll.
    wrap_v2_at : {180, 360}, optional
        V2 (deg) is wrapped to ``[wrap_v2_at - 360, wrap_v2_at)``.
    wrap_lon_at : {360, 180}, optional
        RA (deg) is wrapped to ``[wrap_lon_at - 360, wrap_lon_at)``.

    Returns
    -------
    astropy.modeling.Model
        ``Scale & Scale | SphericalToCartesian | RotationSequence3D |
        CartesianToSpherical``, named ``"v23tosky"``, invertible.
    """
    angles = [
        pointing.v2_ref / 3600.0,
        -pointing.v3_ref / 3600.0,
        pointing.roll_ref,
        pointing.dec_ref,
        -pointing.ra_ref,
    ]
    rotation = RotationSequence3D(angles, axes_order="zyxyz")
    model = (
        (Scale(1.0 / 3600.0) & Scale(1.0 / 3600.0))
        | SphericalToCartesian(wrap_lon_at=wrap_v2_at)
        | rotation
        | CartesianToSpherical(wrap_lon_at=wrap_lon_at)
    )
    model.name = "v23tosky"
    model.inputs = ("v2", "v3")
    model.outputs = ("ra", "dec")
    return model


def dva_correction(scale: float | None, v2_ref: float = 0.0, v3_ref: float = 0.0) -> Model:
    """Return the differential velocity aberration correction in the V2V3 plane.

    Velocity aberration scales the field about the reference point by ``scale``:
    ``v' = scale * v + (1 - scale) * v_ref`` for ``v2`` and ``v3`` (arcsec).

    Parameters
    ----------
    scale : float or None
        ``meta.velocity_aberration.scale_factor``. None, 1, NaN or a value <= 0 (the
        placeholder -999999) give the identity.
    v2_ref, v3_ref : float, optional
        Reference point (arcsec) the scaling is about.

    Returns
    -------
    astropy.modeling.Model
        ``Identity(2)`` or ``Scale & Scale [| Shift & Shift]``.
    """
    if scale is None or not math.isfinite(scale) or scale <= 0 or scale == 1:
        model: Model = Identity(2)
    else:
        model = Scale(scale, name="dva_scale_v2") & Scale(scale, name="dva_scale_v3")
        if v2_ref or v3_ref:
            model = model | (
                Shift((1.0 - scale) * v2_ref, name="dva_v2_shift")
                & Shift((1.0 - scale) * v3_ref, name="dva_v3_shift")
            )
        model.name = "DVA_Correction"
    model.inputs = ("v2", "v3")
    model.outputs = ("v2", "v3")
    return model


def _bbox_from_shape(shape: Sequence[int]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Return the ``(x, y)`` bounding box of an image: pixel edges, 0-based centres."""
    return (-0.5, shape[-1] - 0.5), (-0.5, shape[-2] - 0.5)


def build_wcs(
    distortion: Model,
    pointing: Pointing,
    shape: Sequence[int],
    va_scale: float | None = None,
) -> WCS:
    """Assemble the gwcs of a WFI image.

    Parameters
    ----------
    distortion : astropy.modeling.Model
        Detector ``(x, y)`` (0-based pixels) to ``(v2, v3)`` (arcsec). It is used as
        given (not copied) and gets a bounding box bound to it: its own, if it has one,
        else the image (``(-0.5, nx - 0.5), (-0.5, ny - 0.5)``), as romancal 1.1 does.
    pointing : Pointing
        Reference point and roll.
    shape : sequence of int
        ``(ny, nx)`` of the science array.
    va_scale : float, optional
        Velocity aberration scale factor (see `dva_correction`).

    Returns
    -------
    gwcs.WCS
        Frames ``detector``, ``v2v3``, ``v2v3vacorr``, ``world`` (ICRS).
    """
    try:
        bbox = distortion.bounding_box.bounding_box(order="F")
    except NotImplementedError:
        bbox = _bbox_from_shape(shape)
    bind_bounding_box(distortion, bbox, order="F")
    distortion.inputs = ("x", "y")
    distortion.outputs = ("v2", "v3")

    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    v2v3 = cf.Frame2D(
        name="v2v3", axes_order=(0, 1), axes_names=("v2", "v3"), unit=(u.arcsec, u.arcsec)
    )
    v2v3vacorr = cf.Frame2D(
        name="v2v3vacorr", axes_order=(0, 1), axes_names=("v2", "v3"), unit=(u.arcsec, u.arcsec)
    )
    world = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world")
    wcs = WCS(
        [
            (detector, distortion),
            (v2v3, dva_correction(va_scale, pointing.v2_ref, pointing.v3_ref)),
            (v2v3vacorr, v23tosky(pointing)),
            (world, None),
        ]
    )
    if wcs.bounding_box is None:  # pragma: no cover - bound above
        wcs.bounding_box = _bbox_from_shape(shape)
    return wcs


def compute_footprint(wcs: WCS, shape: Sequence[int] | None = None) -> np.ndarray:
    """Return the sky corners of the image: the outer pixel edges, RA in [0, 360).

    Parameters
    ----------
    wcs : gwcs.WCS
        The image's WCS.
    shape : sequence of int, optional
        ``(ny, nx)``, used only if the WCS has no bounding box.

    Returns
    -------
    numpy.ndarray
        ``(4, 2)`` array of ``(ra, dec)`` in deg.

    Raises
    ------
    ValueError
        If the WCS has no bounding box and no shape is given.
    """
    bbox = wcs.bounding_box
    if bbox is None:
        if shape is None:
            raise ValueError("the WCS has no bounding box and no shape was given")
        bbox = _bbox_from_shape(shape)
    corners = np.array(wcs.footprint(bbox, center=False, axis_type="spatial"), dtype=float)
    corners[:, 0] = np.where(corners[:, 0] < 0, corners[:, 0] + 360.0, corners[:, 0])
    return corners


def s_region_polygon(footprint: np.ndarray) -> str | None:
    """Format a footprint as an ``S_REGION`` value, as romancal and stcal do.

    Parameters
    ----------
    footprint : numpy.ndarray
        ``(4, 2)`` corners ``(ra, dec)`` in deg.

    Returns
    -------
    str or None
        ``"POLYGON ICRS  ra1 dec1 ... ra4 dec4"`` (9 decimals; two spaces after
        ``ICRS`` as stcal writes it), or None if a corner is not finite.

    Raises
    ------
    ValueError
        If ``footprint`` is not a ``(4, 2)`` array.
    """
    corners = np.asarray(footprint, dtype=float)
    if corners.shape != (4, 2):
        raise ValueError(f"footprint must have shape (4, 2), got {corners.shape}")
    if not np.isfinite(corners).all():
        return None
    return "POLYGON ICRS  " + " ".join(f"{value:.9f}" for value in corners.ravel())
