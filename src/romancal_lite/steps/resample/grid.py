"""The output grid of a mosaic: a TAN WCS covering the union of the input footprints.

The construction follows stcal 1.20 ``alignment/util.py`` (``wcs_from_sregions``,
``compute_scale``, ``calc_rotation_matrix``) as romancal 1.1's ``make_output_wcs``
calls it (downstream.md 2.5, "Output grid"):

* fiducial (CRVAL): the centre of the bounding box, in 3-D unit vectors, of every
  footprint corner (``_calculate_fiducial_from_spatial_footprint``), unless ``crval``;
* pixel scale: that of the reference (first) input at its ``(ra_ref, dec_ref)``
  (distance to the +1 pixel neighbours in x and y, geometric mean) times
  ``pixel_scale_ratio``, or ``pixel_scale``;
* orientation: ``PC`` from the reference's ``roll_ref``, ``v3yangle``, ``vparity``
  (``rotation`` replaces the roll: ``roll = rotation + vparity * v3yangle``);
* extent: the footprints projected on the new plane; CRPIX puts the lowest corner at
  pixel 0 (or ``crpix`` is the fiducial's pixel); shape ``int(max + 0.5)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from romancal_lite.errors import ConfigError, InputFileError

__all__ = [
    "calc_rotation_matrix",
    "compute_scale",
    "fiducial_from_footprints",
    "image_footprint",
    "load_output_wcs",
    "mean_pixel_area",
    "wcs_from_footprints",
]


def image_footprint(wcs: Any, shape: Sequence[int]) -> np.ndarray:
    """Return the sky corners ``(4, 2)`` (degrees) of an image's bounding box.

    Parameters
    ----------
    wcs : gwcs.WCS
        The image's WCS.
    shape : sequence of int
        ``(ny, nx)``, used when the WCS has no bounding box.

    Returns
    -------
    numpy.ndarray
        RA, Dec of the corners (pixel edges), as gwcs ``footprint(center=False)``.
    """
    bbox = wcs.bounding_box
    if bbox is None:
        ny, nx = shape
        bbox = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    return np.asarray(wcs.footprint(bbox, center=False), dtype=float)


def fiducial_from_footprints(footprints: Sequence[np.ndarray]) -> tuple[float, float]:
    """Return the centre of the footprints (stcal ``_calculate_fiducial_from_spatial_footprint``).

    Parameters
    ----------
    footprints : sequence of numpy.ndarray
        ``(N, 2)`` RA, Dec corners in degrees.

    Returns
    -------
    tuple of float
        RA (0..360) and Dec of the midpoint of the corners' bounding box in x, y, z.
    """
    lon, lat = np.deg2rad(np.vstack(footprints)).T
    xyz = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    x, y, z = (xyz.max(axis=1) + xyz.min(axis=1)) / 2.0
    return float(np.rad2deg(np.arctan2(y, x)) % 360.0), float(
        np.rad2deg(np.arctan2(z, math.hypot(x, y)))
    )


def compute_scale(wcs: Any, fiducial: Sequence[float], pscale_ratio: float | None = None) -> float:
    """Return the pixel scale (degrees) of ``wcs`` at a sky position (stcal ``compute_scale``).

    Parameters
    ----------
    wcs : gwcs.WCS
        The WCS.
    fiducial : sequence of float
        RA, Dec (degrees).
    pscale_ratio : float, optional
        Factor applied to the result.

    Returns
    -------
    float
        ``sqrt(sx * sy)``: angular distances from the fiducial's pixel to its +x and +y
        neighbours.
    """
    from astropy.coordinates import SkyCoord

    with np.errstate(invalid="ignore"):
        x, y = wcs.invert(*fiducial, with_bounding_box=False)
    ra, dec = wcs(np.array([x, x + 1, x]), np.array([y, y, y + 1]), with_bounding_box=False)
    points = SkyCoord(ra=ra, dec=dec, unit="deg")
    sx = points[0].separation(points[1]).deg
    sy = points[0].separation(points[2]).deg
    if pscale_ratio is not None:
        sx, sy = sx * pscale_ratio, sy * pscale_ratio
    return float(np.sqrt(sx * sy))


def calc_rotation_matrix(roll_ref: float, v3i_yangle: float, vparity: int = 1) -> np.ndarray:
    """Return the 2x2 PC matrix of a roll (stcal ``calc_rotation_matrix``).

    Parameters
    ----------
    roll_ref : float
        Roll of V3 (North over East) at the reference point, radians.
    v3i_yangle : float
        Angle between the ideal Y axis and V3, radians.
    vparity : int, optional
        x-axis parity (1 or -1).

    Returns
    -------
    numpy.ndarray
        ``[[pc11, pc12], [pc21, pc22]]`` with ``rel = roll - vparity * v3i_yangle``:
        ``pc11 = vparity cos rel``, ``pc12 = sin rel``, ``pc21 = -vparity sin rel``,
        ``pc22 = cos rel``.
    """
    if vparity not in (1, -1):
        raise ValueError(f"vparity must be 1 or -1, got {vparity!r}")
    rel = roll_ref - vparity * v3i_yangle
    return np.array(
        [[vparity * math.cos(rel), math.sin(rel)], [-vparity * math.sin(rel), math.cos(rel)]]
    )


def mean_pixel_area(wcs: Any, shape: Sequence[int]) -> float:
    """Return the mean pixel area (sr) of an image from the sky area of its outline.

    The outline through the centres of the edge pixels (every <= 15 pixels, as stcal
    ``compute_mean_pixel_area``) is projected on the tangent plane at its centre; the
    area of that polygon over the pixel area it encloses. (stcal measures the area on
    the sphere; on a WFI detector the two differ by ~1e-6.)

    Parameters
    ----------
    wcs : gwcs.WCS
        The image's WCS.
    shape : sequence of int
        ``(ny, nx)``.

    Returns
    -------
    float
        Steradians per pixel.
    """
    ny, nx = (int(v) for v in shape)
    xmin, xmax, ymin, ymax = 0, nx - 1, 0, ny - 1
    if xmax < 1 or ymax < 1:
        raise ValueError(f"cannot measure the pixel area of a {ny} x {nx} image")
    nxs = max(2, int(math.ceil((xmax - xmin) / 15)) + 1)
    nys = max(2, int(math.ceil((ymax - ymin) / 15)) + 1)
    xs = np.linspace(xmin, xmax, nxs)
    ys = np.linspace(ymin, ymax, nys)
    px = np.concatenate([xs, np.full(nys - 2, xmax), xs[::-1], np.full(nys - 2, xmin)])
    py = np.concatenate([np.full(nxs, ymin), ys[1:-1], np.full(nxs, ymax), ys[-2:0:-1]])
    ra, dec = wcs(px, py, with_bounding_box=False)
    ra0, dec0 = wcs((xmin + xmax) / 2.0, (ymin + ymax) / 2.0, with_bounding_box=False)
    # gnomonic projection about the centre
    ra, dec, ra0, dec0 = (np.deg2rad(v) for v in (ra, dec, ra0, dec0))
    cos_c = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
    u = np.cos(dec) * np.sin(ra - ra0) / cos_c
    v = (np.cos(dec0) * np.sin(dec) - np.sin(dec0) * np.cos(dec) * np.cos(ra - ra0)) / cos_c
    area = 0.5 * abs(np.dot(u, np.roll(v, -1)) - np.dot(v, np.roll(u, -1)))
    return float(area / ((xmax - xmin) * (ymax - ymin)))


def _tan_wcs(crpix: Sequence[float], crval: Sequence[float], cdelt: float, pc: np.ndarray,
             ref_wcs: Any | None = None) -> Any:  # fmt: skip
    from astropy import coordinates
    from astropy import units as u
    from astropy.modeling import models
    from gwcs import WCS, FITSImagingWCSTransform, coordinate_frames

    transform = FITSImagingWCSTransform(
        models.Pix2Sky_TAN(), crpix=list(crpix), crval=list(crval), cdelt=[cdelt, cdelt], pc=pc
    )
    if ref_wcs is not None:
        input_frame, output_frame = ref_wcs.input_frame, ref_wcs.output_frame
    else:
        input_frame = coordinate_frames.Frame2D(
            name="detector", axes_names=("x", "y"), unit=(u.pix, u.pix)
        )
        output_frame = coordinate_frames.CelestialFrame(
            reference_frame=coordinates.ICRS(), name="icrs", unit=(u.deg, u.deg)
        )
    return WCS([(input_frame, transform), (output_frame, None)])


def wcs_from_footprints(
    footprints: Sequence[np.ndarray],
    ref_wcs: Any,
    ref_wcsinfo: Any,
    *,
    pscale_ratio: float = 1.0,
    pscale: float | None = None,
    rotation: float | None = None,
    shape: Sequence[int] | None = None,
    crpix: Sequence[float] | None = None,
    crval: Sequence[float] | None = None,
) -> Any:
    """Return a TAN WCS whose grid covers every footprint (stcal ``wcs_from_sregions``).

    Parameters
    ----------
    footprints : sequence of numpy.ndarray
        ``(N, 2)`` RA, Dec corners of each input.
    ref_wcs : gwcs.WCS
        WCS of the reference (first) input: frames and pixel scale.
    ref_wcsinfo : Mapping
        Its ``meta.wcsinfo``: ``ra_ref``, ``dec_ref``, ``roll_ref``, ``v3yangle``,
        ``vparity``.
    pscale_ratio : float, optional
        Output pixel scale over the reference's.
    pscale : float, optional
        Output pixel scale in degrees (wins over ``pscale_ratio``).
    rotation : float, optional
        Position angle of the output +y axis, degrees (None: the reference's roll).
    shape : sequence of int, optional
        ``(ny, nx)`` of the output (None: just large enough).
    crpix : sequence of float, optional
        0-based pixel of the fiducial.
    crval : sequence of float, optional
        RA, Dec of the fiducial (None: the footprints' centre).

    Returns
    -------
    gwcs.WCS
        With ``bounding_box`` and ``pixel_shape`` set.

    Raises
    ------
    ValueError
        If the grid would be smaller than 2 pixels on a side.
    """
    from astropy.modeling import models

    fiducial = tuple(float(v) for v in crval) if crval is not None else (
        fiducial_from_footprints(footprints)
    )  # fmt: skip
    v3yangle = math.radians(float(ref_wcsinfo["v3yangle"]))
    vparity = int(ref_wcsinfo["vparity"])
    if rotation is None:
        roll = math.radians(float(ref_wcsinfo["roll_ref"]))
    else:
        roll = math.radians(float(rotation)) + vparity * v3yangle
    pc = calc_rotation_matrix(roll, v3yangle, vparity)
    if not pscale:
        ref = (float(ref_wcsinfo["ra_ref"]), float(ref_wcsinfo["dec_ref"]))
        pscale = compute_scale(ref_wcs, ref, pscale_ratio=pscale_ratio)
    plane = (
        models.AffineTransformation2D(matrix=pc)
        | models.Scale(pscale) & models.Scale(pscale)
        | models.Pix2Sky_TAN()
        | models.RotateNative2Celestial(fiducial[0], fiducial[1], 180)
    )
    inverse = plane.inverse
    corners = np.hstack([np.asarray(inverse(*np.asarray(f).T)) for f in footprints])
    low, high = corners.min(axis=1), corners.max(axis=1)
    native = np.asarray(inverse(*fiducial), dtype=float)
    if crpix is None:
        offsets = native - low  # the lowest corner lands on pixel 0
    else:
        offsets = np.asarray(crpix, dtype=float) - native
    low, high = low + offsets, high + offsets
    if shape is None:
        shape = tuple(int(v + 0.5) for v in high[::-1])
        bbox = tuple((-0.5, n - 0.5) for n in shape[::-1])
    else:
        shape = tuple(int(v) for v in shape)
        bbox = tuple(
            (max(0, int(lo + 0.5)) - 0.5, min(int(hi + 0.5), n) - 0.5)
            for lo, hi, n in zip(low, high, shape[::-1], strict=True)
        )
    if any(n < 2 for n in shape):
        raise ValueError(f"the output grid would be {shape[0]} x {shape[1]} pixels")
    wcs = _tan_wcs(offsets, fiducial, pscale, pc, ref_wcs)
    wcs.bounding_box = bbox
    wcs.pixel_shape = shape[::-1]
    return wcs


def load_output_wcs(path: str | os.PathLike[str], output_shape: Sequence[int] | None) -> Any:
    """Read a custom output WCS: an ASDF file with ``tree["wcs"]`` (romancal's ``output_wcs``).

    Parameters
    ----------
    path : str or path-like
        The file.
    output_shape : sequence of int, optional
        ``(nx, ny)`` (romancal's order); otherwise the WCS's ``pixel_shape`` or
        bounding box gives the shape.

    Returns
    -------
    gwcs.WCS
        A copy, with ``array_shape`` set.

    Raises
    ------
    InputFileError
        If the file cannot be read or has no ``wcs``.
    ConfigError
        If no shape can be found.
    """
    import copy

    from romancal_lite.datamodels import open_asdf_file

    af = open_asdf_file(path)
    try:
        wcs = af.tree.get("wcs")
        if wcs is None or not hasattr(wcs, "forward_transform"):
            raise InputFileError(f"{os.fspath(path)}: output_wcs file has no 'wcs' (a gwcs)")
        wcs = copy.deepcopy(wcs)
    finally:
        af.close()
    if output_shape is not None:
        wcs.array_shape = tuple(int(v) for v in output_shape[::-1])
    elif wcs.pixel_shape is not None:
        wcs.array_shape = tuple(wcs.pixel_shape[::-1])
    elif wcs.bounding_box is not None:
        wcs.array_shape = tuple(
            int(hi - lo + 0.5) for lo, hi in wcs.bounding_box.bounding_box(order="C")
        )
    else:
        raise ConfigError(
            f"{os.fspath(path)}: the output WCS has no pixel_shape or bounding box; "
            "give output_shape"
        )
    return wcs
