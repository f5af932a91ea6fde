"""Official-format content of the built-in (generated) reference files.

Each builder returns the ``roman`` node of a reference file as an
:class:`asdf.tagged.TaggedDict` carrying the official rad tag, with the
metadata ``ref_common`` requires (reftype, author, pedigree, description,
useafter, telescope, origin, instrument) and the arrays, dtypes and
dimensions of the rad 2.0.0 schemas.  The values are plausible defaults for a
WFI H4RG detector, not measurements:

* gain 1.9-2.1 e/DN, read noise 5-6 DN, saturation 55000 DN;
* dark current 0.01 e/s (converted to DN/s with the gain);
* flat field 1 with a gentle (< 1 %) large-scale gradient;
* linearity a weak quadratic, ``x + 1e-7 x**2`` (0.5 % at 50000 DN), and its
  inverse; mask all good except the 4-pixel border flagged ``REFERENCE_PIXEL``;
* integral non-linearity: for each of the 32 amplifier channels a smooth correction
  of at most about 1.5 DN (two sinusoids of 16384 and 2048 DN period, amplitude and
  phase differing per channel and detector) tabulated every 32 DN; zero when the
  cache follows a simulator's constants;
* photom per optical element (imaging filters get a conversion factor, the
  spectral elements only a collecting area, DARK only nulls);
* distortion an affine detector -> V2/V3 (arcsec) transform with 0.11"/pixel,
  placing the 18 detectors on an approximate 6 x 3 focal-plane grid;
* refpix: ``alpha`` the Wiener weights that estimate the simulator's row drift
  (common to all channels and amp33) from amp33 (`refpix_drift_weights`), the same
  for every channel; ``gamma`` and ``zeta`` zero;
* epsf per detector and optical element: the simulator's PSF
  (``romancal_lite.simulate.scene.psf_sigma``, a circular Gaussian) integrated over
  a native pixel and sampled 4x finer, the "new style" romancal 1.1 reads
  (``psf[defocus, spectral_type, grid, y, x]``, each stamp summing to
  ``oversample**2``), identical at the 3 x 3 grid positions and for the three
  spectral types;
* darkdecaysignal one file for all 18 detectors (the official rmap selects by date
  only): per detector a decay amplitude of 1.6-3.2 DN and a time constant of
  18-33 s (`dark_decay_values`), the values the simulator injects;
* apcorr per detector: for every imaging filter the encircled energy of that PSF
  as exact-overlap aperture photometry measures it (the Gaussian convolved with
  the pixel twice, `gaussian_encircled_energy`) at fixed radii in pixels, its
  inverse as the aperture correction, and the 2.4-2.8" sky annulus in pixels.

A cache can instead be generated from a simulator's recorded detector constants
(:class:`DetectorConstants`, e.g. those romanisim writes under
``romanisim.simulate_reffiles``): gain, read noise, dark current and saturation are
then those constants everywhere, linearity the identity and the flat 1 when the
simulator applied none, and the files carry pedigree ``SIMULATION``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from asdf.tagged import TaggedDict

from romancore.dqflags import pixel

from ._spec import BORDER, DETECTORS, EXPOSURE_TYPES, IMAGING_ELEMENTS, OPTICAL_ELEMENTS, get_spec

__all__ = [
    "ROW_DRIFT_RMS",
    "DetectorConstants",
    "build_reference",
    "dark_decay_values",
    "gaussian_encircled_energy",
    "gaussian_epsf",
    "reference_shape",
    "refpix_drift_weights",
    "write_reference",
]

_AUTHOR = "romancal-lite built-in reference generator"
_ORIGIN = "romancal-lite"
_PEDIGREE = "DUMMY"

#: Number of readout channels (amplifiers) of the science array.
_N_CHANNELS = 32
#: Columns read by one amplifier (romancal refpix ``Const.CHAN_WIDTH``).
_CHANNEL_WIDTH = 128
#: Zero columns padded after each channel for uniform time sampling (romancal refpix).
_CHANNEL_PAD = 12

#: Rms (DN) of the simulator's per-read row drift, common to all channels and amp33
#: (``romancal_lite.simulate.ramps.make_electronics``); the built-in REFPIX
#: coefficients estimate it from amp33.
ROW_DRIFT_RMS = 1.5

#: Linearity: corrected = raw + _LIN_C2 * raw**2.
_LIN_C2 = 1.0e-7

#: Integral non-linearity: columns per channel (romancal), table step and length (DN).
_INL_CHANNEL_WIDTH = 128
_INL_STEP = 32
_INL_SIZE = 65536 // _INL_STEP

#: AB magnitude of 1 e/s per imaging filter: the built-in PHOTOM's conversion (the
#: simulator's reference catalog uses the same numbers).
AB_ZEROPOINT = {
    "F062": 26.56,
    "F087": 26.30,
    "F106": 26.44,
    "F129": 26.40,
    "F146": 27.65,
    "F158": 26.43,
    "F184": 25.95,
    "F213": 25.42,
}
#: Approximate bandpass (min, max) in microns per element.
_BANDPASS = {
    "F062": (0.48, 0.76),
    "F087": (0.76, 0.98),
    "F106": (0.93, 1.19),
    "F129": (1.13, 1.45),
    "F146": (0.93, 2.00),
    "F158": (1.38, 1.77),
    "F184": (1.68, 2.00),
    "F213": (1.95, 2.30),
    "GRISM": (1.00, 1.93),
    "PRISM": (0.75, 1.80),
}
_PIXEL_SCALE_ARCSEC = 0.11
_PIXEL_AREA_SR = float((_PIXEL_SCALE_ARCSEC / 206264.80624709636) ** 2)
_COLLECTING_AREA_M2 = 3.757


@dataclass(frozen=True)
class DetectorConstants:
    """Detector constants a simulator recorded, used instead of the built-in defaults.

    Attributes
    ----------
    gain : float
        Gain (electron/DN), the same for every pixel.
    readnoise : float
        Read noise of one read (DN).
    dark : float
        Dark current (electron/s); the DARK reference holds ``dark / gain`` DN/s.
    saturation : float
        Saturation threshold (DN).
    linear : bool
        True when the simulator applied no non-linearity: LINEARITY and
        INVERSELINEARITY are then the identity polynomial.
    flat : float
        Uniform flat-field value (1 when the simulator applied no flat).
    source : str
        Who recorded the constants (written into every file's description).
    """

    gain: float
    readnoise: float
    dark: float
    saturation: float
    linear: bool = True
    flat: float = 1.0
    source: str = "a simulator"

    def to_dict(self) -> dict[str, Any]:
        """Return the constants as a JSON-friendly dict (the cache's settings).

        Returns
        -------
        dict
            Field name to value.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> DetectorConstants | None:
        """Rebuild constants written by `to_dict` (None stays None).

        Parameters
        ----------
        values : mapping or None
            The dict.

        Returns
        -------
        DetectorConstants or None
            The constants.
        """
        return None if values is None else cls(**dict(values))


_C = DetectorConstants | None


def _det_index(detector: str) -> int:
    return int(detector[3:])


def reference_shape(reftype: str, full_shape: tuple[int, int]) -> tuple[int, ...] | None:
    """Return the shape of the image arrays of a generated reference file.

    Parameters
    ----------
    reftype : str
        CRDS reference type.
    full_shape : tuple of int
        ``(ny, nx)`` of the full detector read-out (science plus reference border).

    Returns
    -------
    tuple of int or None
        Shape of the 2-D arrays, or None for types without image arrays.
    """
    kind = get_spec(reftype).shape_kind
    ny, nx = full_shape
    if kind == "full":
        return (ny, nx)
    if kind == "science":
        return (ny - 2 * BORDER, nx - 2 * BORDER)
    if kind == "refpix":
        # romancal's channel time series: 128 columns + 12 pause samples per row, for
        # any read-out height (refpix/_data.py Const); one row of weights per channel
        width = _CHANNEL_WIDTH + _CHANNEL_PAD
        return (_N_CHANNELS, (ny * width) // 2 + 1)
    return None


def _meta(
    reftype: str,
    detector: str,
    useafter: str,
    optical_element: str | None = None,
    exposure: bool = False,
    constants: DetectorConstants | None = None,
) -> dict:
    from astropy.time import Time

    if constants is None:
        what, pedigree = "plausible defaults, not calibration data", _PEDIGREE
    else:
        what = f"matched to the detector constants recorded by {constants.source}"
        pedigree = "SIMULATION"

    instrument = {"name": "WFI", "detector": detector}
    if optical_element is not None:
        instrument["optical_element"] = optical_element
    meta = {
        "reftype": reftype.upper(),
        "author": _AUTHOR,
        "description": (
            f"romancal-lite built-in {reftype.upper()} reference for {detector}"
            + (f" {optical_element}" if optical_element else "")
            + f", use after {useafter}: {what}."
        ),
        "pedigree": pedigree,
        "useafter": Time(useafter, format="isot", scale="utc"),
        "telescope": "ROMAN",
        "origin": _ORIGIN,
        "instrument": instrument,
    }
    if exposure:
        meta["exposure"] = {
            "type": "WFI_IMAGE",
            "p_exptype": "|".join(EXPOSURE_TYPES) + "|",
        }
    return meta


def _border_mask(shape: tuple[int, int]) -> np.ndarray:
    dq = np.zeros(shape, dtype=np.uint32)
    b = BORDER
    flag = np.uint32(pixel.REFERENCE_PIXEL)
    dq[:b, :] = flag
    dq[-b:, :] = flag
    dq[:, :b] = flag
    dq[:, -b:] = flag
    return dq


def _const(shape: tuple[int, ...], value: float, dtype: type = np.float32) -> np.ndarray:
    return np.full(shape, value, dtype=dtype)


def _mask(det: str, shape, useafter: str, elem: str | None, c: _C) -> dict:
    return {"meta": _meta("mask", det, useafter, constants=c), "dq": _border_mask(shape)}


def _saturation(det: str, shape, useafter: str, elem: str | None, c: _C) -> dict:
    level = c.saturation if c else 55000.0 + 250.0 * (_det_index(det) - 9)
    return {
        "meta": _meta("saturation", det, useafter, constants=c),
        "data": _const(shape, level),
        "dq": np.zeros(shape, dtype=np.uint32),
    }


def _linearity_coeffs(shape, inverse: bool, c: _C) -> np.ndarray:
    c2 = 0.0 if c is not None and c.linear else _LIN_C2
    values = (0.0, 1.0, -c2, 2.0 * c2 * c2) if inverse else (0.0, 1.0, c2, 0.0)
    coeffs = np.empty((len(values), *shape), dtype=np.float32)
    for i, v in enumerate(values):
        coeffs[i] = v
    return coeffs


def _linearity(det: str, shape, useafter: str, elem: str | None, c: _C) -> dict:
    return {
        "meta": _meta("linearity", det, useafter, constants=c),
        "coeffs": _linearity_coeffs(shape, inverse=False, c=c),
        "dq": np.zeros(shape, dtype=np.uint32),
    }


def _inverselinearity(det: str, shape, useafter: str, elem: str | None, c: _C) -> dict:
    return {
        "meta": _meta("inverselinearity", det, useafter, constants=c),
        "coeffs": _linearity_coeffs(shape, inverse=True, c=c),
        "dq": np.zeros(shape, dtype=np.uint32),
    }


def _integralnonlinearity(det: str, shape, useafter: str, elem: str | None, c: _C) -> dict:
    meta = _meta("integralnonlinearity", det, useafter, constants=c)
    meta["n_channels"] = _N_CHANNELS
    meta["n_pixels_per_channel"] = _INL_CHANNEL_WIDTH * 4096
    value = np.arange(0, 65536, _INL_STEP, dtype=np.uint16)
    phase = 2.0 * np.pi * value.astype(np.float64)
    rng = np.random.default_rng(_det_index(det))
    table = {}
    for k in range(_N_CHANNELS):
        amp, phi, amp2, phi2 = rng.uniform((0.5, 0.0, 0.1, 0.0), (1.0, 2 * np.pi, 0.4, 2 * np.pi))
        corr = amp * np.sin(phase / 16384.0 + phi) + amp2 * np.sin(phase / 2048.0 + phi2)
        if c is not None:  # a simulator's constants: it applied no integral non-linearity
            corr = np.zeros_like(corr)
        table[f"science_channel_{k + 1:02d}"] = {
            "instrument_channel": k,
            "correction": np.ascontiguousarray(corr, dtype=np.float64),
        }
    return {"meta": meta, "inl_table": table, "value": value}


def _gain_value(det: str, c: _C) -> float:
    return c.gain if c else 1.9 + 0.01 * _det_index(det)


def _gain(det: str, shape, useafter: str, elem: str | None, c: _C) -> dict:
    return {
        "meta": _meta("gain", det, useafter, constants=c),
        "data": _const(shape, _gain_value(det, c)),
    }


def _readnoise(det: str, shape, useafter: str, elem: str | None, c: _C) -> dict:
    return {
        "meta": _meta("readnoise", det, useafter, exposure=True, constants=c),
        "data": _const(shape, c.readnoise if c else 5.0 + 0.05 * _det_index(det)),
    }


def _dark(det: str, shape, useafter: str, elem: str | None, c: _C) -> dict:
    dark_e = c.dark if c else 0.01
    slope = dark_e / _gain_value(det, c)  # e/s in DN/s
    return {
        "meta": _meta("dark", det, useafter, optical_element="DARK", exposure=True, constants=c),
        "dq": np.zeros(shape, dtype=np.uint32),
        "dark_slope": _const(shape, slope),
        "dark_slope_error": _const(shape, 0.1 * slope),
    }


def _flat(det: str, shape, useafter: str, elem: str | None, c: _C) -> dict:
    if c is not None:
        return {
            "meta": _meta("flat", det, useafter, optical_element=elem, constants=c),
            "data": _const(shape, c.flat),
            "dq": np.zeros(shape, dtype=np.uint32),
            "err": _const(shape, 0.0),
        }
    ny, nx = shape
    y = np.linspace(-1.0, 1.0, ny, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, nx, dtype=np.float32)[None, :]
    tilt = 0.001 * (_det_index(det) % 5)
    data = (1.0 + tilt * x - 0.004 * (x * x + y * y)).astype(np.float32)
    data /= np.float32(data.mean())
    return {
        "meta": _meta("flat", det, useafter, optical_element=elem, constants=c),
        "data": data,
        "dq": np.zeros(shape, dtype=np.uint32),
        "err": _const(shape, 0.005),
    }


def _phot_entry(elem: str) -> dict:
    if elem == "DARK":
        return dict.fromkeys(
            (
                "photmjsr",
                "uncertainty",
                "pixelareasr",
                "collecting_area",
                "wavelength",
                "effective_area",
            )
        )
    lo, hi = _BANDPASS[elem]
    wavelength = np.linspace(lo, hi, 32, dtype=np.float32)
    throughput = np.sin(np.linspace(0.0, np.pi, 32)) ** 0.25
    effective_area = (0.6 * _COLLECTING_AREA_M2 * throughput).astype(np.float32)
    entry = {
        "photmjsr": None,
        "uncertainty": None,
        "pixelareasr": None,
        "collecting_area": _COLLECTING_AREA_M2,
        "wavelength": wavelength,
        "effective_area": effective_area,
    }
    if elem in IMAGING_ELEMENTS:
        # 1 e/s in Jy, times 2 e/DN, per pixel solid angle, in MJy/sr per DN/s.
        jy_per_eps = 3631.0 * 10.0 ** (-0.4 * AB_ZEROPOINT[elem])
        photmjsr = 2.0 * jy_per_eps / _PIXEL_AREA_SR / 1.0e6
        entry.update(
            photmjsr=float(photmjsr),
            uncertainty=float(0.01 * photmjsr),
            pixelareasr=_PIXEL_AREA_SR,
        )
    return entry


def _photom(det: str, shape, useafter: str, elem: str | None, c: _C) -> dict:
    return {
        "meta": _meta("photom", det, useafter, constants=c),
        "phot_table": {e: _phot_entry(e) for e in OPTICAL_ELEMENTS},
    }


def _detector_v2v3(det: str) -> tuple[float, float, float]:
    """Approximate (v2, v3, rotation deg) of a detector centre on a 6 x 3 grid."""
    i = _det_index(det) - 1
    column, row = i // 3, i % 3
    v2 = 1546.0 + (column - 2.5) * 490.0
    v3 = -892.0 + (row - 1) * 470.0 + 60.0 * abs(column - 2.5)
    return v2, v3, -60.0


def _distortion(
    det: str, shape, useafter: str, elem: str | None, c: _C, science_shape=None
) -> dict:
    from astropy.modeling import models

    ny, nx = science_shape
    v2, v3, angle = _detector_v2v3(det)
    theta = np.deg2rad(angle)
    s = _PIXEL_SCALE_ARCSEC
    matrix = s * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    transform = (models.Shift(-(nx - 1) / 2.0) & models.Shift(-(ny - 1) / 2.0)) | (
        models.AffineTransformation2D(matrix=matrix, translation=[v2, v3])
    )
    transform.inputs = ("x", "y")
    transform.outputs = ("v2", "v3")
    transform.bounding_box = ((-0.5, ny - 0.5), (-0.5, nx - 0.5))
    transform.name = f"{det.lower()}_{(elem or 'all').lower()}_distortion"
    return {
        "meta": _meta("distortion", det, useafter, optical_element=elem, constants=c),
        "coordinate_distortion_transform": transform,
    }


def refpix_drift_weights(
    ny: int, read_noise: float, drift_rms: float = ROW_DRIFT_RMS
) -> np.ndarray:
    """Return the Wiener weights that estimate the simulator's row drift from amp33.

    The simulator (``romancal_lite.simulate.ramps.make_electronics``) adds to every
    read a drift ``d[row]`` common to all channels and amp33: 1/f noise along the rows
    (power ``1/q`` at row frequency ``q``, none at ``q = 0``) of rms ``drift_rms``
    DN, constant over the 140 sample times of a row. In a channel's time series of
    ``N = 140 ny`` samples its expected power at frequency index ``k`` is
    ``|B_k|^2 P_d(k mod ny)``, ``B_k = sin(pi k / ny) / sin(pi k / N)`` the transform
    of the 140-sample row (``B_0 = 140``) and ``P_d(q) = drift_rms^2 ny^2 p_q / sum p``,
    ``p_q = 1 / min(q, ny - q)``. amp33 sees the drift plus white read noise of power
    ``read_noise^2 N``. The least-squares (Wiener) estimate of the drift from amp33
    multiplies its spectrum by ``W_k = S_k / (S_k + read_noise^2 N)``. The same
    ratio holds for every read pattern: a resultant averages both the drift and the
    noise of its reads.

    Parameters
    ----------
    ny : int
        Rows of the read-out.
    read_noise : float
        Read noise of one amp33 read (DN).
    drift_rms : float, optional
        Rms of the simulator's row drift in one read (DN).

    Returns
    -------
    numpy.ndarray of float64
        ``W_k`` for ``k = 0 .. 70 ny`` (``70 ny + 1`` values).
    """
    n = ny * (_CHANNEL_WIDTH + _CHANNEL_PAD)
    q = np.arange(ny)
    folded = np.minimum(q, ny - q)
    p = np.zeros(ny)
    p[folded > 0] = 1.0 / folded[folded > 0]
    drift_power = drift_rms**2 * ny**2 * p / max(p.sum(), 1e-300)
    k = np.arange(n // 2 + 1)
    row = np.full(k.shape, float(_CHANNEL_WIDTH + _CHANNEL_PAD) ** 2)
    nonzero = k > 0
    row[nonzero] = (np.sin(np.pi * k[nonzero] / ny) / np.sin(np.pi * k[nonzero] / n)) ** 2
    signal = row * drift_power[k % ny]
    return signal / (signal + max(read_noise, 1e-6) ** 2 * n)


def _refpix(det: str, shape, useafter: str, elem: str | None, c: _C) -> dict:
    # alpha: the Wiener estimate of the simulator's row drift from amp33, the same for
    # every channel (the drift is common to all); romancal multiplies the weighted sum
    # by 2 M / N (refpix/_data.py ReferenceFFT.channel_correction), undone here so
    # that the correction is irfft(rfft(amp33) W). gamma, zeta: the 4-column side
    # references add little to amp33's 128 columns and are left at zero.
    n_chan, n_coeff = shape
    ny = 2 * (n_coeff - 1) // (_CHANNEL_WIDTH + _CHANNEL_PAD)
    read_noise = c.readnoise if c else 5.0 + 0.05 * _det_index(det)
    weights = refpix_drift_weights(ny, read_noise) * (2 * (n_coeff - 1)) / (2 * n_coeff)
    alpha = np.empty(shape, dtype=np.complex128)
    alpha[...] = weights[None, :]
    zeros = np.zeros(shape, dtype=np.complex128)
    return {
        "meta": _meta("refpix", det, useafter, constants=c),
        "gamma": zeros,
        "zeta": zeros.copy(),
        "alpha": alpha,
    }


#: EPSF: oversampling factor, stamp half-width (native pixels), grid points per axis.
EPSF_OVERSAMPLE = 4
EPSF_HALF_WIDTH = 12
_EPSF_GRID = 3
#: romancal's jitter (mas) assumed for an image without guide-star jitter metadata.
_DEFAULT_JITTER_MAS = 8.0
#: APCORR radii (native pixels) at which the encircled energy is tabulated.
APCORR_RADII_PX: tuple[float, ...] = (
    0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0,
    10.0, 12.0, 15.0, 20.0, 25.0, 30.0,
)
_SKY_ANNULUS_ARCSEC = (2.4, 2.8)


def _element_sigma(elem: str | None, psf_sigma: float | None) -> float:
    if psf_sigma is not None:
        return float(psf_sigma)
    from romancal_lite.simulate.scene import psf_sigma as simulator_sigma

    return simulator_sigma(elem or "F158")


def _pixel_profile(offsets: np.ndarray, sigma: float) -> np.ndarray:
    """Fraction of a 1-D Gaussian falling in a unit pixel centred at ``offsets``."""
    from scipy.special import ndtr

    return ndtr((offsets + 0.5) / sigma) - ndtr((offsets - 0.5) / sigma)


def gaussian_epsf(
    sigma: float, oversample: int = EPSF_OVERSAMPLE, half_width: int = EPSF_HALF_WIDTH
) -> np.ndarray:
    """Return the ePSF of a circular Gaussian PSF, as romancal's EPSF stamps hold it.

    The value at offset ``(dx, dy)`` (native pixels, a multiple of ``1/oversample``)
    is the fraction of the star's flux that falls in a native pixel whose centre is
    ``(dx, dy)`` from the star: the PSF integrated over the pixel, which is how the
    simulator draws stars (`romancal_lite.simulate.scene.render_stars`).

    Parameters
    ----------
    sigma : float
        Gaussian sigma in native pixels.
    oversample : int, optional
        Samples per native pixel.
    half_width : int, optional
        Half-width of the stamp in native pixels.

    Returns
    -------
    numpy.ndarray of float32
        Square stamp of side ``2 * half_width * oversample + 1``, centred on the star,
        summing to about ``oversample**2``.
    """
    n = 2 * half_width * oversample + 1
    offsets = (np.arange(n) - (n - 1) / 2.0) / oversample
    profile = _pixel_profile(offsets, sigma)
    return np.outer(profile, profile).astype(np.float32)


def _triangle_profile(x: np.ndarray, sigma: float) -> np.ndarray:
    """Return a 1-D Gaussian convolved twice with a unit box (pixel response, grid).

    ``sigma [H((x+1)/sigma) - 2 H(x/sigma) + H((x-1)/sigma)]`` with
    ``H(z) = z Phi(z) + phi(z)``, the integral of the normal CDF.
    """
    from scipy.special import ndtr

    def h(z: np.ndarray) -> np.ndarray:
        return z * ndtr(z) + np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)

    return sigma * (h((x + 1.0) / sigma) - 2.0 * h(x / sigma) + h((x - 1.0) / sigma))


def gaussian_encircled_energy(sigma: float, radii: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """Return the encircled energy that aperture photometry measures for a Gaussian PSF.

    Exact-overlap circular-aperture photometry of a star drawn as the simulator
    draws it (the PSF integrated over each pixel), averaged over the star's
    position within a pixel, measures the integral over the disk of the PSF
    convolved twice with the unit pixel box: once by the pixel response, once by
    the pixel grid (the aperture weights each pixel by its overlap). This returns
    that integral, computed in polar coordinates.

    Parameters
    ----------
    sigma : float
        Gaussian sigma in native pixels.
    radii : array-like
        Aperture radii in native pixels.

    Returns
    -------
    numpy.ndarray of float64
        Encircled-energy fractions.
    """
    radii = np.asarray(radii, dtype=np.float64)
    r_max = float(max(radii.max(), 1.0))
    rho = np.linspace(0.0, r_max, int(r_max * 200) + 1)
    theta = (np.arange(128) + 0.5) * (2.0 * np.pi / 128)
    x = rho[:, None] * np.cos(theta)
    y = rho[:, None] * np.sin(theta)
    ring = (_triangle_profile(x, sigma) * _triangle_profile(y, sigma)).mean(axis=1)
    integrand = ring * rho * 2.0 * np.pi
    cumulative = np.concatenate(
        [[0.0], np.cumsum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(rho))]
    )
    return np.interp(radii, rho, cumulative)


def _epsf(
    det: str, shape, useafter: str, elem: str | None, c: _C, science_shape=None,
    psf_sigma: float | None = None,
) -> dict:
    sigma = _element_sigma(elem, psf_sigma)
    stamp = gaussian_epsf(sigma)
    ny, nx = science_shape
    spectral = ["A0V", "G2V", "M6V"]
    n_grid = _EPSF_GRID * _EPSF_GRID
    psf = np.empty((1, len(spectral), n_grid, *stamp.shape), dtype=np.float32)
    psf[...] = stamp
    xs = np.linspace(0.0, nx - 1.0, _EPSF_GRID)
    ys = np.linspace(0.0, ny - 1.0, _EPSF_GRID)
    meta = _meta("epsf", det, useafter, optical_element=elem, constants=c)
    meta["description"] += (
        f" Circular Gaussian PSF of sigma {sigma:.4f} pixel integrated over the pixel"
        f" (the simulator's PSF, which includes its jitter); the jitter fields give"
        f" romancal's default image jitter so that no jitter is added."
    )
    meta.update(
        oversample=EPSF_OVERSAMPLE,
        spectral_type=spectral,
        defocus=[0],
        pixel_x=[float(x) for y in ys for x in xs],
        pixel_y=[float(y) for y in ys for x in xs],
        jitter_major=_DEFAULT_JITTER_MAS,
        jitter_minor=_DEFAULT_JITTER_MAS,
        jitter_position_angle=0.0,
    )
    return {"meta": meta, "psf": psf}


def _apcorr_entry(elem: str, psf_sigma: float | None) -> dict:
    if elem not in IMAGING_ELEMENTS:
        return {
            "ap_corrections": None,
            "ee_fractions": None,
            "ee_radii": None,
            "sky_background_rin": None,
            "sky_background_rout": None,
        }
    radii = np.array(APCORR_RADII_PX, dtype=np.float64)
    fractions = gaussian_encircled_energy(_element_sigma(elem, psf_sigma), radii)
    return {
        "ap_corrections": (1.0 / fractions).astype(np.float64),
        "ee_fractions": fractions.astype(np.float64),
        "ee_radii": radii,
        "sky_background_rin": _SKY_ANNULUS_ARCSEC[0] / _PIXEL_SCALE_ARCSEC,
        "sky_background_rout": _SKY_ANNULUS_ARCSEC[1] / _PIXEL_SCALE_ARCSEC,
    }


def _apcorr(
    det: str, shape, useafter: str, elem: str | None, c: _C, psf_sigma: float | None = None
) -> dict:
    meta = _meta("apcorr", det, useafter, constants=c)
    meta["description"] += (
        " Encircled energy of the simulator's pixel-integrated Gaussian PSF; radii in"
        " pixels."
    )
    return {"meta": meta, "data": {e: _apcorr_entry(e, psf_sigma) for e in OPTICAL_ELEMENTS}}


def dark_decay_values(detector: str) -> tuple[float, float]:
    """Return the built-in dark decay (amplitude in DN, time constant in s) of a detector.

    Plausible magnitudes (a few DN decaying over tens of seconds), different per
    detector so that a wrong entry shows; not measurements.

    Parameters
    ----------
    detector : str
        ``"WFI01"`` ... ``"WFI18"``.

    Returns
    -------
    tuple of float
        ``(amplitude, time_constant)``.
    """
    i = _det_index(detector)
    return 1.6 + 0.2 * ((7 * i) % 9), 18.0 + 1.5 * ((5 * i) % 11)


def _darkdecaysignal(det: str, shape, useafter: str, elem: str | None, c: _C) -> dict:
    meta = _meta("darkdecaysignal", "NOT_CONFIGURED", useafter, constants=c)
    meta["description"] = meta["description"].replace(
        " for NOT_CONFIGURED", " for every detector"
    )
    table = {}
    for name in DETECTORS:
        amplitude, time_constant = dark_decay_values(name)
        table[name] = {"amplitude": amplitude, "time_constant": time_constant}
    return {"meta": meta, "decay_table": table}


_BUILDERS: dict[str, Callable[..., dict]] = {
    "mask": _mask,
    "saturation": _saturation,
    "linearity": _linearity,
    "inverselinearity": _inverselinearity,
    "integralnonlinearity": _integralnonlinearity,
    "gain": _gain,
    "readnoise": _readnoise,
    "dark": _dark,
    "flat": _flat,
    "photom": _photom,
    "distortion": _distortion,
    "refpix": _refpix,
    "epsf": _epsf,
    "apcorr": _apcorr,
    "darkdecaysignal": _darkdecaysignal,
}


def build_reference(
    reftype: str,
    detector: str,
    full_shape: tuple[int, int],
    useafter: str,
    optical_element: str | None = None,
    constants: DetectorConstants | None = None,
    psf_sigma: float | None = None,
) -> TaggedDict:
    """Build the official-format ``roman`` node of a generated reference file.

    Parameters
    ----------
    reftype : str
        CRDS reference type (``"mask"``, ``"flat"``, ...).
    detector : str
        WFI detector, ``"WFI01"`` ... ``"WFI18"``.
    full_shape : tuple of int
        ``(ny, nx)`` of the full detector read-out the references describe.
    useafter : str
        ISO use-after date, ``"YYYY-MM-DDThh:mm:ss"``.
    optical_element : str, optional
        Optical element for the types selected by it (flat, distortion).
    constants : DetectorConstants, optional
        A simulator's detector constants to use instead of the built-in defaults.
    psf_sigma : float, optional
        EPSF and APCORR only: the Gaussian PSF sigma (pixels) instead of the
        simulator's default for the element, e.g. to write an ``override_epsf``
        for a simulation made with another ``psf_sigma``.

    Returns
    -------
    asdf.tagged.TaggedDict
        The node, tagged with the official rad tag.
    """
    spec = get_spec(reftype)
    shape = reference_shape(spec.reftype, full_shape)
    builder = _BUILDERS[spec.reftype]
    science = (full_shape[0] - 2 * BORDER, full_shape[1] - 2 * BORDER)
    if spec.reftype == "distortion":
        node = builder(detector, shape, useafter, optical_element, constants, science_shape=science)
    elif spec.reftype == "epsf":
        node = builder(detector, shape, useafter, optical_element, constants,
                       science_shape=science, psf_sigma=psf_sigma)
    elif spec.reftype == "apcorr":
        node = builder(detector, shape, useafter, optical_element, constants,
                       psf_sigma=psf_sigma)
    else:
        node = builder(detector, shape, useafter, optical_element, constants)
    return TaggedDict(node, spec.tag)


def write_reference(path: str | Path, node: TaggedDict) -> None:
    """Write a reference node to ``path`` atomically, as ``tree["roman"]``.

    Written through a temporary file and a rename
    (`romancal_lite.datamodels.write_asdf_atomic`, at once even while a run defers
    its outputs), so concurrent processes never see a partial file.  Arrays are
    stored uncompressed: decompressing zlib blocks costs seconds per full-size
    file on every read (measured: 4 s for LINEARITY, 9 s for REFPIX), far more
    than reading the raw bytes.

    Parameters
    ----------
    path : str or Path
        Destination file (a literal path).
    node : asdf.tagged.TaggedDict
        The node built by :func:`build_reference`.
    """
    from romancal_lite.datamodels import write_asdf_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_asdf_atomic(path, {"roman": node}, defer=False)
