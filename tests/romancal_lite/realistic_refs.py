"""Realistic reference files for tests in which every calibration step must matter.

The built-in generated references (``romancal_lite.references``) are plausible but
gentle: a ``1e-7 x**2`` linearity (0.5 % at 50 000 DN), a flat within 1 %, a dark of
0.01 e/s, uniform gain and saturation.  With them, skipping ``linearity``,
``flatfield`` or ``dark_current`` hardly changes a calibrated image.  This module
writes, for one detector read-out shape, official-format files (through
``romancal_lite.datamodels``, so roman_datamodels reads them) whose effects are
large enough to see:

* LINEARITY ``x + c2 x**2 + c3 x**3`` (raw DN -> linear DN), ``c2 = 5e-7``,
  ``c3 = 6e-12`` times a per-pixel factor ``1 + N(0, 0.05)`` (clipped to 0.85..1.15)
  and a gentle gradient across the detector: +4.0 % at 50 000 DN, +5.9 % at 65 535 DN;
* INVERSELINEARITY: per-pixel least-squares polynomials (degree ``INVERSE_DEGREE``)
  of the inverse of that LINEARITY over raw 0..65 535 DN; after the float32 storage
  it inverts it to better than ``INVERSE_TOLERANCE_DN`` (checked on writing);
* FLAT (science shape) with +-5 % structure: a tilted plane (+-3 %), a vignetting-like
  quadratic (-2 %) and 1.5 % rms pixel-to-pixel, normalised to a mean of 1;
  ``err`` 0.005;
* DARK ``dark_slope`` 0.5..2 DN/s: 1 DN/s, a +-0.3 DN/s gradient, per-pixel
  log-normal scatter (0.15 dex) and a few warm pixels, clipped to 0.5..2 DN/s on the
  science array (0 on the reference border, which sees no charge);
  ``dark_slope_error`` 2 % of it;
* GAIN 1.8..2.2 e/DN (per amplifier and per pixel), READNOISE 5..7 DN (per pixel);
* SATURATION 50 000..58 000 DN (raw, per amplifier and per pixel);
* MASK: the reference border ``REFERENCE_PIXEL`` and about 0.05 % of the science
  pixels ``DEAD | DO_NOT_USE`` (``BAD_MASK``);
* PHOTOM, DISTORTION, REFPIX: the built-in content (REFPIX: non-zero amp33
  coefficients, the Wiener filter of the simulator's correlated row noise; PHOTOM and
  DISTORTION are metadata-only conversions, their realism does not matter here).

``write_realistic_references(directory, shape, detector, optical_element)`` returns
``{reftype: path}`` for all eleven types; ``simulator_references(refs)`` is the part
``simulate.write_exposure(..., references=...)`` takes, ``pipeline_overrides(refs)``
the ``steps`` argument of ``ExposurePipeline.call`` (``override_<reftype>`` of every
step).  The whole set takes about 1.5 s to write at 264 x 512.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from romancal_lite import datamodels
from romancal_lite.references import build_reference
from romancal_lite.references._spec import BORDER
from romancore.dqflags import pixel

__all__ = [
    "BAD_MASK",
    "DARK_RANGE",
    "FLAT_AMPLITUDE",
    "INVERSE_DEGREE",
    "INVERSE_TOLERANCE_DN",
    "LIN_C2",
    "LIN_C3",
    "REFTYPES",
    "SATURATION_RANGE",
    "inverse_error",
    "SIMULATOR_REFTYPES",
    "linearity_coeffs",
    "pipeline_overrides",
    "polyval",
    "realistic_arrays",
    "simulator_references",
    "write_realistic_references",
]

#: Quadratic and cubic LINEARITY coefficients (before the per-pixel factor).
LIN_C2 = 5.0e-7
LIN_C3 = 6.0e-12
#: Degree of the INVERSELINEARITY polynomial.
INVERSE_DEGREE = 6
#: Worst |INVERSE(LINEARITY(x)) - x| (DN) allowed over raw 0..65535 DN.
INVERSE_TOLERANCE_DN = 0.02
#: Range of the DARK slope on science pixels (DN/s).
DARK_RANGE = (0.5, 2.0)
#: Largest |flat - 1| of the structured flat (the gradient and vignetting reach about
#: 5 %; with the pixel-to-pixel scatter a few pixels go further, clipped here).
FLAT_AMPLITUDE = 0.08
#: Range of the SATURATION thresholds (raw DN).
SATURATION_RANGE = (50000.0, 58000.0)
#: MASK flags of the bad science pixels.
BAD_MASK = int(pixel.DEAD | pixel.DO_NOT_USE)
#: Every reference type written, in the order of the pipeline.
REFTYPES = ("mask", "saturation", "linearity", "inverselinearity", "gain", "readnoise",
            "dark", "flat", "photom", "distortion", "refpix")

#: The types ``romancal_lite.simulate`` takes its detector from (it refuses others).
SIMULATOR_REFTYPES = ("gain", "readnoise", "saturation", "linearity", "inverselinearity",
                      "dark", "flat")

_ATOD = 65535.0
_CHANNEL = 128
_USEAFTER = "2020-01-01T00:00:00"


def polyval(coeffs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Evaluate per-pixel polynomials ``sum_k coeffs[k] x**k`` (Horner, float64).

    Parameters
    ----------
    coeffs : numpy.ndarray, (ncoeff, ...)
        Coefficients, lowest order first (the LINEARITY layout).
    x : numpy.ndarray
        Values, broadcastable against ``coeffs[0]``.

    Returns
    -------
    numpy.ndarray
        The polynomials at ``x``.
    """
    c = np.asarray(coeffs, np.float64)
    out = np.zeros(np.broadcast_shapes(c.shape[1:], np.shape(x)))
    for k in range(c.shape[0] - 1, -1, -1):
        out = out * x + c[k]
    return out


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = shape
    y = np.linspace(-1.0, 1.0, ny)[:, None]
    x = np.linspace(-1.0, 1.0, nx)[None, :]
    return y, x


def linearity_coeffs(shape: tuple[int, int], seed: int = 1) -> np.ndarray:
    """Return the float32 LINEARITY coefficients ``[4, ny, nx]`` (raw DN -> linear DN).

    Parameters
    ----------
    shape : tuple of int
        Full read-out shape.
    seed : int, optional
        Seed of the per-pixel factors.

    Returns
    -------
    numpy.ndarray
        ``0, 1, c2 f, c3 f`` with ``f`` the per-pixel factor.
    """
    rng = np.random.default_rng([seed, 11])
    y, x = _grid(shape)
    factor = np.clip(1.0 + rng.normal(0.0, 0.05, shape), 0.85, 1.15) * (1.0 + 0.05 * x * y)
    coeffs = np.zeros((4, *shape), np.float32)
    coeffs[1] = 1.0
    coeffs[2] = LIN_C2 * factor
    coeffs[3] = LIN_C3 * factor
    return coeffs


def _inverse_coeffs(lin: np.ndarray, degree: int = INVERSE_DEGREE) -> np.ndarray:
    """Least-squares inverse polynomials of ``lin`` over raw 0..65535 DN, per pixel.

    Every pixel's LINEARITY is ``x + f (c2 x**2 + c3 x**3)`` with its own factor
    ``f``: the inverse is fitted (float64, in the scaled variable ``y / 65535``, well
    conditioned) on a fine grid of ``f`` and each coefficient interpolated linearly in
    ``f`` (the inverse is smooth in ``f``: the interpolation error is ~1e-3 DN).
    """
    shape = lin.shape[1:]
    factor = lin[2].astype(np.float64) / LIN_C2
    grid = np.linspace(factor.min(), factor.max(), 128)
    raw = np.linspace(0.0, _ATOD, 257)
    powers = _ATOD ** (1.0 - np.arange(degree + 1))
    table = np.empty((grid.size, degree + 1))
    for i, f in enumerate(grid):
        y = raw + f * (LIN_C2 * raw**2 + LIN_C3 * raw**3)
        scaled = np.polynomial.polynomial.polyfit(y / _ATOD, raw / _ATOD, degree)
        table[i] = scaled * powers  # x = 65535 sum a_k (y / 65535)**k: coefficients of y
    inv = np.empty((degree + 1, *shape), np.float32)
    for k in range(degree + 1):
        inv[k] = np.interp(factor, grid, table[:, k])
    return inv


def inverse_error(lin: np.ndarray, inv: np.ndarray, n: int = 257) -> float:
    """Return ``max |inv(lin(x)) - x|`` (DN) over raw ``x`` in 0..65535, all pixels.

    Parameters
    ----------
    lin, inv : numpy.ndarray, (ncoeff, ny, nx)
        LINEARITY and INVERSELINEARITY coefficients.
    n : int, optional
        Number of raw samples.

    Returns
    -------
    float
        The worst round-trip error in DN.
    """
    worst = 0.0
    for x in np.linspace(0.0, _ATOD, n):
        worst = max(worst, float(np.abs(polyval(inv, polyval(lin, x)) - x).max()))
    return worst


def _per_amplifier(shape: tuple[int, int], rng: np.random.Generator, sigma: float) -> np.ndarray:
    nx = shape[1]
    n = -(-nx // _CHANNEL)
    values = rng.normal(0.0, sigma, n)
    return np.broadcast_to(values[np.arange(nx) // _CHANNEL][None, :], shape)


def _science(shape: tuple[int, int]) -> tuple[slice, slice]:
    return slice(BORDER, shape[0] - BORDER), slice(BORDER, shape[1] - BORDER)


def _flat(science_shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    y, x = _grid(science_shape)
    large = 1.0 + 0.02 * x - 0.01 * y - 0.02 * (x * x + y * y)
    small = rng.normal(0.0, 0.015, science_shape)
    flat = large * (1.0 + small)
    flat /= flat.mean()
    return np.clip(flat, 1.0 - FLAT_AMPLITUDE, 1.0 + FLAT_AMPLITUDE).astype(np.float32)


def _dark(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    y, x = _grid(shape)
    dark = (1.0 + 0.2 * x + 0.1 * y) * 10.0 ** rng.normal(0.0, 0.15, shape)
    warm = rng.random(shape) < 2e-3
    dark[warm] = 1.9
    dark = np.clip(dark, *DARK_RANGE)
    out = np.zeros(shape, np.float32)
    sci = _science(shape)
    out[sci] = dark[sci]
    return out


def _meta(reftype: str, detector: str, optical_element: str | None, exposure: bool) -> dict:
    from astropy.time import Time

    instrument = {"name": "WFI", "detector": detector}
    if optical_element is not None:
        instrument["optical_element"] = optical_element
    meta = {
        "reftype": reftype.upper(),
        "author": "romancal-lite tests (realistic_refs)",
        "description": f"Test-only realistic {reftype.upper()} for {detector}: every step "
        "must matter with it; not calibration data.",
        "pedigree": "DUMMY",
        "useafter": Time(_USEAFTER, format="isot", scale="utc"),
        "telescope": "ROMAN",
        "origin": "romancal-lite tests",
        "instrument": instrument,
    }
    if exposure:
        meta["exposure"] = {"type": "WFI_IMAGE",
                            "p_exptype": "WFI_IMAGE|WFI_SPECTRAL|WFI_IM_DARK|WFI_SP_DARK|"
                                         "WFI_FLAT|WFI_LOLO|WFI_WFSC|"}
    return meta


_MODELS = {
    "mask": datamodels.MaskRefModel,
    "saturation": datamodels.SaturationRefModel,
    "linearity": datamodels.LinearityRefModel,
    "inverselinearity": datamodels.InverselinearityRefModel,
    "gain": datamodels.GainRefModel,
    "readnoise": datamodels.ReadnoiseRefModel,
    "dark": datamodels.DarkRefModel,
    "flat": datamodels.FlatRefModel,
    "photom": datamodels.PhotomRefModel,
    "distortion": datamodels.DistortionRefModel,
    "refpix": datamodels.RefpixRefModel,
}


def realistic_arrays(shape: tuple[int, int], seed: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """Return the arrays of the realistic files, ``{reftype: {name: array}}``.

    Parameters
    ----------
    shape : tuple of int
        Full read-out shape ``(ny, nx)`` (science pixels plus the 4-pixel border).
    seed : int, optional
        Seed of every random structure.

    Returns
    -------
    dict
        Arrays of mask, saturation, linearity, inverselinearity, gain, readnoise,
        dark and flat.
    """
    shape = (int(shape[0]), int(shape[1]))
    science_shape = (shape[0] - 2 * BORDER, shape[1] - 2 * BORDER)
    rng = np.random.default_rng([seed, 3])
    sci = _science(shape)

    mask = np.zeros(shape, np.uint32)
    mask[:] = pixel.REFERENCE_PIXEL
    mask[sci] = 0
    bad = np.zeros(shape, bool)
    bad[sci] = rng.random(science_shape) < 5e-4
    mask[bad] |= np.uint32(BAD_MASK)

    lo, hi = SATURATION_RANGE
    saturation = (54000.0 + _per_amplifier(shape, rng, 1000.0)
                  + rng.normal(0.0, 800.0, shape))
    saturation = np.clip(saturation, lo, hi).astype(np.float32)

    lin = linearity_coeffs(shape, seed)
    inv = _inverse_coeffs(lin)
    err = inverse_error(lin, inv, n=65)
    if err > INVERSE_TOLERANCE_DN:
        raise AssertionError(f"INVERSELINEARITY inverts LINEARITY to {err} DN only")

    gain = np.clip(2.0 + _per_amplifier(shape, rng, 0.06) + rng.normal(0.0, 0.04, shape),
                   1.8, 2.2).astype(np.float32)
    readnoise = np.clip(6.0 + rng.normal(0.0, 0.3, shape), 5.0, 7.0).astype(np.float32)
    dark = _dark(shape, rng)
    flat = _flat(science_shape, rng)
    zeros = np.zeros(shape, np.uint32)
    return {
        "mask": {"dq": mask},
        "saturation": {"data": saturation, "dq": zeros.copy()},
        "linearity": {"coeffs": lin, "dq": zeros.copy()},
        "inverselinearity": {"coeffs": inv, "dq": zeros.copy()},
        "gain": {"data": gain},
        "readnoise": {"data": readnoise},
        "dark": {"dark_slope": dark, "dark_slope_error": (0.02 * dark).astype(np.float32),
                 "dq": zeros.copy()},
        "flat": {"data": flat, "dq": np.zeros(science_shape, np.uint32),
                 "err": np.full(science_shape, 0.005, np.float32)},
    }


def write_realistic_references(
    directory: str | Path,
    shape: tuple[int, int] = (264, 512),
    *,
    detector: str = "WFI03",
    optical_element: str = "F158",
    seed: int = 1,
) -> dict[str, str]:
    """Write the realistic reference files of one detector; return ``{reftype: path}``.

    Parameters
    ----------
    directory : str or Path
        Where the files go (created if needed); names are
        ``realistic_<detector>_<reftype>.asdf``.
    shape : tuple of int, optional
        Full read-out shape (the FLAT has the science shape, 8 pixels smaller).
    detector, optical_element : str, optional
        ``meta.instrument`` of the files (the FLAT, DISTORTION and DARK carry an
        optical element: the exposure's for the first two, ``DARK`` for the dark).
    seed : int, optional
        Seed of the random structures.

    Returns
    -------
    dict
        Every type of ``REFTYPES`` -> the file's path (str).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = realistic_arrays(shape, seed)
    paths: dict[str, str] = {}
    for reftype in REFTYPES:
        model_class = _MODELS[reftype]
        if reftype in arrays:
            element = {"dark": "DARK", "flat": optical_element}.get(reftype)
            exposure = reftype in ("dark", "readnoise")
            tree = {"meta": _meta(reftype, detector, element, exposure), **arrays[reftype]}
        else:
            node = build_reference(reftype, detector, shape, _USEAFTER, optical_element)
            tree = {k: v for k, v in node.items() if k != "meta"}
            element = optical_element if reftype == "distortion" else None
            tree["meta"] = _meta(reftype, detector, element, False)
        model = model_class.create_minimal(tree)
        path = directory / f"realistic_{detector.lower()}_{reftype}.asdf"
        model.save(path)
        paths[reftype] = str(path)
    return paths


def simulator_references(refs: dict[str, str]) -> dict[str, str]:
    """Return the part of ``refs`` for ``simulate.write_exposure(references=...)``.

    Parameters
    ----------
    refs : dict
        From :func:`write_realistic_references`.

    Returns
    -------
    dict
        ``{reftype: path}`` of the types the simulator reads.
    """
    return {k: refs[k] for k in SIMULATOR_REFTYPES if k in refs}


def pipeline_overrides(refs: dict[str, str]) -> dict[str, dict[str, str]]:
    """Return ``roman_elp``'s ``steps`` overrides using ``refs`` for every reference.

    Each step gets ``override_<reftype>`` for the types it declares
    (``reference_file_types``), so a step that starts using another type (e.g.
    INVERSELINEARITY) gets it too.

    Parameters
    ----------
    refs : dict
        From :func:`write_realistic_references`.

    Returns
    -------
    dict
        ``{step: {"override_<reftype>": path}}`` for ``ExposurePipeline.call(...,
        steps=...)`` (a fresh dict: add ``"skip": True`` to one step freely).
    """
    from romancal_lite.pipeline import ExposurePipeline

    steps: dict[str, dict[str, str]] = {}
    for name, step in ExposurePipeline.step_defs.items():
        types = getattr(step, "reference_file_types", ()) or ()
        steps[name] = {f"override_{t}": refs[t] for t in types if t in refs}
    return steps
