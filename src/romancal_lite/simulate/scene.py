"""The astrophysical scene: sky and stars, as an incident count rate in e/s per pixel.

* Sky: ``level * (1 + gradient * (a_x x + a_y y))`` with ``x, y`` running from -1 to
  1 across the science array and ``(a_x, a_y)`` a random unit direction.
* Stars: uniform positions over the science array, log-uniform fluxes (e/s), and a
  circular Gaussian PSF integrated exactly over each pixel (a product of error
  function differences), of width set by the optical element (diffraction FWHM
  ``1.03 lambda / D`` of the 2.36 m aperture, broadened by pointing jitter and
  charge diffusion).

Positions are 0-based pixel coordinates of the trimmed science array (the level 2
image): pixel ``(y, x)`` covers ``[x - 0.5, x + 0.5] x [y - 0.5, y + 0.5]``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

__all__ = [
    "EFFECTIVE_WAVELENGTH_UM",
    "make_sky",
    "make_star_catalog",
    "psf_sigma",
    "render_stars",
]

#: Effective wavelength (microns) of each optical element, for the PSF width.
EFFECTIVE_WAVELENGTH_UM: dict[str, float] = {
    "F062": 0.62,
    "F087": 0.87,
    "F106": 1.06,
    "F129": 1.29,
    "F146": 1.46,
    "F158": 1.58,
    "F184": 1.84,
    "F213": 2.13,
    "GRISM": 1.46,
    "PRISM": 1.28,
    "DARK": 1.46,
}

_APERTURE_M = 2.36
_PIXEL_SCALE_ARCSEC = 0.11
_JITTER_RMS_ARCSEC = 0.014
_CHARGE_DIFFUSION_PX = 0.1
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def psf_sigma(optical_element: str) -> float:
    """Return the Gaussian PSF sigma (pixels) used for an optical element.

    ``sigma**2 = (1.03 lambda / D / 2.3548)**2 + jitter**2 + diffusion**2`` with the
    0.11 arcsec pixel, 14 mas rms jitter and 0.1 pixel charge diffusion
    (romanisim's values); e.g. 0.57 px (FWHM 1.34 px) in F158.

    Parameters
    ----------
    optical_element : str
        Element name (``"F158"``...).

    Returns
    -------
    float
        Sigma in pixels.
    """
    lam = EFFECTIVE_WAVELENGTH_UM[optical_element.upper()] * 1e-6
    fwhm_px = 1.03 * lam / _APERTURE_M * 206264.80624709636 / _PIXEL_SCALE_ARCSEC
    jitter_px = _JITTER_RMS_ARCSEC / _PIXEL_SCALE_ARCSEC
    return math.sqrt((fwhm_px / _FWHM_PER_SIGMA) ** 2 + jitter_px**2 + _CHARGE_DIFFUSION_PX**2)


def make_sky(
    shape: tuple[int, int], level: float, gradient: float, rng: np.random.Generator
) -> np.ndarray:
    """Return the sky rate (e/s per pixel) over the science array.

    Parameters
    ----------
    shape : tuple of int
        Science array shape ``(ny, nx)``.
    level : float
        Mean sky rate (e/s per pixel).
    gradient : float
        Fractional amplitude of the linear gradient at the array edges.
    rng : numpy.random.Generator
        Draws the gradient direction.

    Returns
    -------
    numpy.ndarray of float32
        The sky, ``level * (1 + gradient * (a_x x + a_y y))``.
    """
    angle = rng.uniform(0.0, 2.0 * math.pi)
    ny, nx = shape
    y = np.linspace(-1.0, 1.0, ny, dtype=np.float32)[:, None] if ny > 1 else np.zeros((1, 1))
    x = np.linspace(-1.0, 1.0, nx, dtype=np.float32)[None, :] if nx > 1 else np.zeros((1, 1))
    sky = np.empty(shape, dtype=np.float32)
    sky[...] = np.float32(level) * (
        1.0 + np.float32(gradient) * (np.float32(math.cos(angle)) * x
                                      + np.float32(math.sin(angle)) * y)
    )
    return sky


def make_star_catalog(
    n_stars: int,
    shape: tuple[int, int],
    flux_range: tuple[float, float],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Draw star positions and fluxes.

    Parameters
    ----------
    n_stars : int
        Number of stars.
    shape : tuple of int
        Science array shape ``(ny, nx)``; positions are uniform over it.
    flux_range : tuple of float
        ``(min, max)`` total flux in e/s; fluxes are log-uniform in this range.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    dict
        ``x``, ``y`` (float64, science-array pixels) and ``flux`` (float64, e/s).
    """
    ny, nx = shape
    x = rng.uniform(-0.5, nx - 0.5, n_stars)
    y = rng.uniform(-0.5, ny - 0.5, n_stars)
    lo, hi = (math.log(f) for f in flux_range)
    flux = np.exp(rng.uniform(lo, hi, n_stars))
    return {"x": x, "y": y, "flux": flux}


def _pixel_fractions(center: float, sigma: float, lo: int, hi: int) -> np.ndarray:
    edges = (np.arange(lo, hi + 2, dtype=np.float64) - 0.5 - center) / sigma
    return np.diff(ndtr(edges))


def render_stars(rate: np.ndarray, catalog: dict[str, np.ndarray], sigma: float) -> None:
    """Add the stars of ``catalog`` to ``rate`` (in place), PSF integrated per pixel.

    Each star is drawn on a stamp of half-width ``ceil(6 sigma) + 1`` pixels (the
    flux outside it, and outside the array, is lost).

    Parameters
    ----------
    rate : numpy.ndarray, (ny, nx)
        Rate image (e/s), updated in place.
    catalog : dict
        ``x``, ``y``, ``flux`` as from :func:`make_star_catalog`.
    sigma : float
        Gaussian PSF sigma in pixels.
    """
    ny, nx = rate.shape
    half = math.ceil(6.0 * sigma) + 1
    for x, y, flux in zip(catalog["x"], catalog["y"], catalog["flux"], strict=True):
        ix, iy = round(x), round(y)
        x0, x1 = max(ix - half, 0), min(ix + half, nx - 1)
        y0, y1 = max(iy - half, 0), min(iy + half, ny - 1)
        if x1 < x0 or y1 < y0:
            continue
        fx = _pixel_fractions(x, sigma, x0, x1)
        fy = _pixel_fractions(y, sigma, y0, y1)
        rate[y0 : y1 + 1, x0 : x1 + 1] += (flux * np.outer(fy, fx)).astype(rate.dtype)
