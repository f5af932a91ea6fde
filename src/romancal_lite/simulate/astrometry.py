"""Sky positions of the simulated stars, a Gaia-like reference catalog, pointing errors.

* **True WCS.** The stars are drawn in pixels of the science array. Their true sky
  positions (at the exposure's mid-time) are these pixel positions through the WCS that
  ``assign_wcs`` builds from the *true* pointing: the DISTORTION reference the pipeline
  selects (detector -> V2/V3), then the rotation of V2/V3 to the sky by the true
  ``ra_ref, dec_ref, roll_ref`` (`romancal_lite.steps.assign_wcs.build_wcs`).
* **Pointing error.** `apply_pointing_error` moves the recorded reference point by
  ``(dra, ddec)`` arcsec east and north of the true one (offsets in the spherical frame
  centred on it, astropy's ``spherical_offsets_by``) and adds ``droll`` arcmin to the
  roll (position angle of +V3, east of north). The stars stay where they are, so the WCS
  built from the recorded ``meta.wcsinfo`` maps the detector's reference point ``(dra,
  ddec)`` away from its true sky position and turns the field by ``droll`` about it.
* **Reference catalog** (`make_reference_catalog`): the stars brighter than a Gaia-like
  limit, with Gaia DR3's column names. Positions are at ``ref_epoch`` (2016.0 by
  default): the star's true position at the exposure epoch moved back by its proper
  motion and parallax with the model the ``tweakreg`` step uses to move them forward
  (`propagate`; inverted exactly by `back_propagate`), plus a drawn catalog error.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord, get_body_barycentric
from astropy.table import Table
from astropy.time import Time

from ..errors import OutputError, ReferenceFileError
from ..references import AB_ZEROPOINT

__all__ = [
    "GAIA_MAG_LIMIT",
    "GAIA_REF_EPOCH",
    "REFCAT_COLUMNS",
    "STREAM_ASTROMETRY",
    "PointingError",
    "ab_magnitude",
    "apply_pointing_error",
    "back_propagate",
    "earth_barycentric_au",
    "gaia_position_error",
    "load_distortion",
    "make_reference_catalog",
    "propagate",
    "refcat_path_for",
    "sky_wcs",
    "write_reference_catalog",
]

#: Reference epoch of the catalog positions (Julian year), Gaia DR3's.
GAIA_REF_EPOCH = 2016.0
#: Faintest magnitude in the reference catalog (about Gaia's completeness limit).
GAIA_MAG_LIMIT = 20.7
#: Random stream of the proper motions, parallaxes and catalog errors (see ``ramps``).
STREAM_ASTROMETRY = 6
#: Zero point of the elements without one (GRISM, PRISM, DARK).
DEFAULT_AB_ZEROPOINT = 26.4
#: Columns of the reference catalog, in order, with their units.
REFCAT_COLUMNS = {
    "source_id": None,
    "ra": "deg",
    "dec": "deg",
    "ra_error": "mas",
    "dec_error": "mas",
    "pmra": "mas / yr",
    "pmdec": "mas / yr",
    "parallax": "mas",
    "ref_epoch": "yr",
    "phot_g_mean_mag": "mag",
}

_MAS_DEG = 1.0 / 3.6e6


@dataclass(frozen=True)
class PointingError:
    """An error of the recorded pointing.

    Attributes
    ----------
    dra_arcsec : float
        Offset of the recorded reference point east of the true one (arcsec on the sky,
        i.e. RA difference times cos(dec)).
    ddec_arcsec : float
        Offset north (arcsec).
    roll_arcmin : float
        Added to ``roll_ref`` (arcmin; positive turns +V3 from north towards east).
    """

    dra_arcsec: float = 0.0
    ddec_arcsec: float = 0.0
    roll_arcmin: float = 0.0

    @classmethod
    def parse(cls, value: Any) -> PointingError:
        """Return a `PointingError` from None, a `PointingError` or three numbers.

        Parameters
        ----------
        value : None, PointingError or sequence of 3 float
            ``(dra_arcsec, ddec_arcsec, roll_arcmin)``; None is no error.

        Returns
        -------
        PointingError
            The error.

        Raises
        ------
        ValueError
            If ``value`` is not three finite numbers.
        """
        if value is None:
            return cls()
        if isinstance(value, PointingError):
            return value
        try:
            numbers = [float(v) for v in value]
            ok = len(numbers) == 3 and all(math.isfinite(v) for v in numbers)
            ok = ok and not any(isinstance(v, bool) for v in value)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(
                "pointing_error must be three finite numbers (dra_arcsec, ddec_arcsec, "
                f"roll_arcmin), got {value!r}"
            )
        return cls(*numbers)

    def __bool__(self) -> bool:
        return any((self.dra_arcsec, self.ddec_arcsec, self.roll_arcmin))

    def as_dict(self) -> dict[str, float]:
        """Return the error as a plain dict.

        Returns
        -------
        dict
            ``dra_arcsec``, ``ddec_arcsec``, ``roll_arcmin``.
        """
        return {
            "dra_arcsec": float(self.dra_arcsec),
            "ddec_arcsec": float(self.ddec_arcsec),
            "roll_arcmin": float(self.roll_arcmin),
        }


def apply_pointing_error(
    ra: float, dec: float, roll: float, error: PointingError
) -> tuple[float, float, float]:
    """Return the recorded ``(ra_ref, dec_ref, roll_ref)`` for a true pointing and an error.

    Parameters
    ----------
    ra, dec, roll : float
        True reference point and roll (deg).
    error : PointingError
        The error.

    Returns
    -------
    tuple of float
        ``(ra, dec, roll)`` in deg, RA in [0, 360): the point ``error.dra_arcsec`` east
        and ``error.ddec_arcsec`` north of the true one (astropy
        ``SkyCoord.spherical_offsets_by``), roll plus ``error.roll_arcmin / 60``.
    """
    if not error:
        return float(ra), float(dec), float(roll)
    moved = SkyCoord(ra * u.deg, dec * u.deg).spherical_offsets_by(
        error.dra_arcsec * u.arcsec, error.ddec_arcsec * u.arcsec
    )
    return float(moved.ra.deg) % 360.0, float(moved.dec.deg), float(roll) + error.roll_arcmin / 60


def load_distortion(
    model: Any, full_shape: tuple[int, int], references: str | Mapping[str, Any]
) -> tuple[Any, str]:
    """Return the DISTORTION transform the pipeline will use for the exposure.

    Parameters
    ----------
    model : ScienceRawModel
        The exposure (its metadata drives the selection).
    full_shape : tuple of int
        Full read-out shape (for the built-in content).
    references : {"crds", "builtin"} or mapping
        As `romancal_lite.simulate.simulate_exposure`'s ``references``; a mapping may
        hold ``"distortion"``.

    Returns
    -------
    transform : astropy.modeling.Model
        A copy of ``coordinate_distortion_transform`` (pixels -> V2/V3 arcsec).
    source : str
        The file used, or ``"builtin"``.

    Raises
    ------
    ReferenceFileError
        If no DISTORTION applies or the file has no usable transform.
    """
    from .. import datamodels
    from ..references import build_reference, get_reference_files, simulator_source
    from ..references._cache import DEFAULT_USEAFTERS

    meta = model.meta
    if isinstance(references, str) and references.lower() == "builtin":
        node = build_reference(
            "distortion",
            str(meta.instrument.detector),
            full_shape,
            DEFAULT_USEAFTERS[0],
            str(meta.instrument.optical_element),
        )
        return copy.deepcopy(node["coordinate_distortion_transform"]), "builtin"
    overrides = {}
    if isinstance(references, Mapping):
        overrides = {k.lower(): v for k, v in references.items() if k.lower() == "distortion"}
    path = get_reference_files(model, ("distortion",), overrides, simulator_source())[
        "distortion"
    ]
    if path == "N/A":
        raise ReferenceFileError(
            "no DISTORTION reference applies to this exposure: the stars have no sky "
            "positions (simulate without a reference catalog)"
        )
    with datamodels.open(path) as ref:
        transform = getattr(ref, "coordinate_distortion_transform", None)
        if transform is None or transform.n_inputs != 2 or transform.n_outputs != 2:
            raise ReferenceFileError(
                f"{Path(path).name}: DISTORTION reference has no 2-D "
                "coordinate_distortion_transform"
            )
        return copy.deepcopy(transform), str(path)


def sky_wcs(
    distortion: Any,
    wcsinfo: Mapping[str, float],
    science_shape: tuple[int, int],
) -> Any:
    """Build the WCS ``assign_wcs`` builds for a pointing (without velocity aberration).

    Parameters
    ----------
    distortion : astropy.modeling.Model
        Detector -> V2/V3 transform (copied, not modified).
    wcsinfo : mapping
        ``ra_ref``, ``dec_ref``, ``roll_ref`` (deg), ``v2_ref``, ``v3_ref`` (arcsec).
    science_shape : tuple of int
        ``(ny, nx)`` of the science array.

    Returns
    -------
    gwcs.WCS
        Pixel ``(x, y)`` (0-based, science array) -> ``(ra, dec)`` deg.
    """
    from ..steps.assign_wcs import build_wcs, pointing_from_wcsinfo

    return build_wcs(copy.deepcopy(distortion), pointing_from_wcsinfo(wcsinfo), science_shape)


def ab_magnitude(flux_e: np.ndarray, optical_element: str) -> np.ndarray:
    """Return the AB magnitude of a flux in e/s with the element's nominal zero point.

    Parameters
    ----------
    flux_e : numpy.ndarray
        Total flux (e/s).
    optical_element : str
        ``"F158"``...; elements without a zero point use 26.4.

    Returns
    -------
    numpy.ndarray
        ``zeropoint - 2.5 log10(flux)``.
    """
    zp = AB_ZEROPOINT.get(optical_element.upper(), DEFAULT_AB_ZEROPOINT)
    flux = np.asarray(flux_e, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return zp - 2.5 * np.log10(flux)


def gaia_position_error(mag: np.ndarray) -> np.ndarray:
    """Return a Gaia DR3-like position error (mas, per coordinate) at the reference epoch.

    ``sqrt(0.015**2 + (0.4 * 10**(0.3 (G - 20)))**2)``: 0.02 mas at G = 15, 0.05 at 17,
    0.4 at 20 and 0.8 at 21, as Lindegren et al. (2021) quote for the 5-parameter
    solutions.

    Parameters
    ----------
    mag : numpy.ndarray
        Magnitudes.

    Returns
    -------
    numpy.ndarray
        Errors (mas).
    """
    mag = np.asarray(mag, dtype=np.float64)
    return np.hypot(0.015, 0.4 * 10.0 ** (0.3 * (mag - 20.0)))


def earth_barycentric_au(epoch: Time) -> np.ndarray:
    """Return the Earth's barycentric position (AU, ICRS axes) at ``epoch``.

    Parameters
    ----------
    epoch : astropy.time.Time
        The time.

    Returns
    -------
    numpy.ndarray
        ``(X, Y, Z)``.
    """
    return np.asarray(get_body_barycentric("earth", epoch).xyz.to_value(u.AU), dtype=np.float64)


def _offsets_mas(
    ra: np.ndarray,
    dec: np.ndarray,
    pmra: np.ndarray,
    pmdec: np.ndarray,
    parallax: np.ndarray,
    dt_years: float,
    earth_au: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    a, d = np.radians(ra), np.radians(dec)
    x, y, z = earth_au
    d_ra = pmra * dt_years + parallax * (x * np.sin(a) - y * np.cos(a))
    d_dec = pmdec * dt_years + parallax * (
        x * np.cos(a) * np.sin(d) + y * np.sin(a) * np.sin(d) - z * np.cos(d)
    )
    return d_ra, d_dec


def propagate(
    ra: np.ndarray,
    dec: np.ndarray,
    pmra: np.ndarray,
    pmdec: np.ndarray,
    parallax: np.ndarray,
    dt_years: float,
    earth_au: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Move catalog positions forward by ``dt_years``: proper motion, then annual parallax.

    The model of the ``tweakreg`` step (``propagate_to_epoch``): ``dRA cos(DEC) = pmra
    dt + plx (X sin RA - Y cos RA)``, ``dDEC = pmdec dt + plx (X cos RA sin DEC + Y sin
    RA sin DEC - Z cos DEC)``, the coefficients evaluated at the catalog position.

    Parameters
    ----------
    ra, dec : numpy.ndarray
        Catalog positions (deg).
    pmra, pmdec : numpy.ndarray
        Proper motion (mas/yr, ``pmra`` includes cos(dec)).
    parallax : numpy.ndarray
        Parallax (mas).
    dt_years : float
        Epoch difference (Julian years).
    earth_au : numpy.ndarray
        Observer's barycentric position ``(X, Y, Z)`` (AU) at the new epoch.

    Returns
    -------
    tuple of numpy.ndarray
        ``(ra, dec)`` at the new epoch (deg, RA in [0, 360)).
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    d_ra, d_dec = _offsets_mas(ra, dec, pmra, pmdec, parallax, dt_years, earth_au)
    cos_dec = np.maximum(np.cos(np.radians(dec)), 1e-12)
    return (ra + d_ra * _MAS_DEG / cos_dec) % 360.0, dec + d_dec * _MAS_DEG


def back_propagate(
    ra: np.ndarray,
    dec: np.ndarray,
    pmra: np.ndarray,
    pmdec: np.ndarray,
    parallax: np.ndarray,
    dt_years: float,
    earth_au: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Invert `propagate`: the catalog positions that `propagate` moves to ``(ra, dec)``.

    Solved by fixed-point iteration (the coefficients depend on the catalog position
    only through sines and cosines: each iteration gains a factor ~1e-6 for offsets of
    a fraction of an arcsec); the result reproduces ``(ra, dec)`` through `propagate`
    to better than 1e-6 mas.

    Parameters
    ----------
    ra, dec : numpy.ndarray
        Positions at the later epoch (deg).
    pmra, pmdec, parallax : numpy.ndarray
        As `propagate`.
    dt_years : float
        Epoch difference (Julian years) from the catalog epoch to ``(ra, dec)``'s.
    earth_au : numpy.ndarray
        Observer's barycentric position (AU) at the later epoch.

    Returns
    -------
    tuple of numpy.ndarray
        Catalog ``(ra, dec)`` (deg, RA in [0, 360)).
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    ra0, dec0 = ra.copy(), dec.copy()
    for _ in range(4):
        d_ra, d_dec = _offsets_mas(ra0, dec0, pmra, pmdec, parallax, dt_years, earth_au)
        dec0 = dec - d_dec * _MAS_DEG
        cos_dec = np.maximum(np.cos(np.radians(dec0)), 1e-12)
        ra0 = ra - d_ra * _MAS_DEG / cos_dec
    return ra0 % 360.0, dec0


def make_reference_catalog(
    stars: Mapping[str, np.ndarray],
    epoch: Time,
    rng: np.random.Generator,
    *,
    mag_limit: float = GAIA_MAG_LIMIT,
    ref_epoch: float = GAIA_REF_EPOCH,
    error_scale: float = 1.0,
) -> dict[str, np.ndarray]:
    """Return the Gaia-like reference catalog of the stars brighter than ``mag_limit``.

    Parameters
    ----------
    stars : mapping
        ``ra``, ``dec`` (deg, true positions at ``epoch``), ``pmra``, ``pmdec``
        (mas/yr), ``parallax`` (mas), ``mag``.
    epoch : astropy.time.Time
        The exposure's epoch (mid-time).
    rng : numpy.random.Generator
        Draws the catalog errors.
    mag_limit : float, optional
        Faintest magnitude kept.
    ref_epoch : float, optional
        Epoch of the catalog positions (Julian year).
    error_scale : float, optional
        Multiplies the Gaia-like position errors (`gaia_position_error`), both the
        ``ra_error``/``dec_error`` reported and the noise drawn (0: exact positions).

    Returns
    -------
    dict
        The columns of `REFCAT_COLUMNS` (``source_id`` is the star's index in the
        truth's ``stars``).
    """
    mag = np.asarray(stars["mag"], dtype=np.float64)
    keep = np.flatnonzero(np.isfinite(mag) & (mag <= mag_limit))
    dt = float(epoch.jyear) - float(ref_epoch)
    earth = earth_barycentric_au(epoch)
    pmra = np.asarray(stars["pmra"], dtype=np.float64)[keep]
    pmdec = np.asarray(stars["pmdec"], dtype=np.float64)[keep]
    plx = np.asarray(stars["parallax"], dtype=np.float64)[keep]
    ra, dec = back_propagate(
        np.asarray(stars["ra"], dtype=np.float64)[keep],
        np.asarray(stars["dec"], dtype=np.float64)[keep],
        pmra,
        pmdec,
        plx,
        dt,
        earth,
    )
    sigma = gaia_position_error(mag[keep]) * float(error_scale)
    noise_ra = rng.normal(0.0, 1.0, keep.size) * sigma
    noise_dec = rng.normal(0.0, 1.0, keep.size) * sigma
    cos_dec = np.maximum(np.cos(np.radians(dec)), 1e-12)
    return {
        "source_id": keep.astype(np.int64),
        "ra": (ra + noise_ra * _MAS_DEG / cos_dec) % 360.0,
        "dec": dec + noise_dec * _MAS_DEG,
        "ra_error": sigma,
        "dec_error": sigma.copy(),
        "pmra": pmra,
        "pmdec": pmdec,
        "parallax": plx,
        "ref_epoch": np.full(keep.size, float(ref_epoch)),
        "phot_g_mean_mag": mag[keep],
    }


def refcat_path_for(exposure: str | os.PathLike[str]) -> Path:
    """Return the reference catalog path of an exposure file.

    Parameters
    ----------
    exposure : str or path-like
        ``<base>_uncal.asdf`` (or ``<base>.asdf``).

    Returns
    -------
    Path
        ``<base>_refcat.ecsv`` in the same directory.
    """
    path = Path(exposure)
    base = path.stem
    if base.endswith("_uncal"):
        base = base[: -len("_uncal")]
    return path.with_name(f"{base}_refcat.ecsv")


def write_reference_catalog(
    path: str | os.PathLike[str], columns: Mapping[str, np.ndarray], meta: Mapping[str, Any]
) -> Path:
    """Write the reference catalog as ECSV, atomically (temporary file, then rename).

    Parameters
    ----------
    path : str or path-like
        Output ``.ecsv`` file.
    columns : mapping
        From `make_reference_catalog`.
    meta : mapping
        Table metadata (``ref_epoch``, the exposure, how it was made).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputError
        If the file cannot be written.
    """
    path = Path(path)
    table = Table(meta=dict(meta))
    for name, unit in REFCAT_COLUMNS.items():
        table[name] = np.asarray(columns[name])
        if unit is not None:
            table[name].unit = unit
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        table.write(tmp, format="ascii.ecsv", overwrite=True)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write the reference catalog ({exc})") from None
    return path
