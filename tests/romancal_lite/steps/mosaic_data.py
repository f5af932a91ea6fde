"""Small dithered sets of calibrated images for the mosaic-level tests.

Each image has a WFI-like gwcs (``assign_wcs.build_wcs``: detector -> V2V3 -> sky, a
linear 0.11"/pixel distortion with a small skew), a flat sky and isolated Gaussian
stars rendered at known sky positions (pixel-integrated, so that the sum of the
pixels times the pixel area is the flux), ``var_poisson`` proportional to the signal,
a read-noise ``var_rnoise`` and ``err = sqrt(var_poisson + var_rnoise)`` - all in
MJy/sr (flux applied).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from astropy.modeling import models
from scipy.special import erf

from romancal_lite.datamodels import ImageModel
from romancal_lite.steps.assign_wcs.assign_wcs import Pointing, build_wcs

SCALE = 0.11  # arcsec per pixel
RA0, DEC0, ROLL = 80.0, -30.0, 30.0
V3YANGLE, VPARITY = -60.0, -1


def distortion(detector: int, shape: tuple[int, int]) -> models.Model:
    """Detector (x, y) -> (V2, V3) arcsec.

    The detector axes are the ideal frame's (as on the WFI): ideal -> V2V3 is the
    rotation by ``v3yangle`` with parity ``vparity`` (``v2 = vparity xi cos a + yi sin a``,
    ``v3 = -vparity xi sin a + yi cos a``), so the mosaic grid (oriented by the same
    angles) is aligned with the detectors; detectors side by side along the ideal x
    with a 20-pixel gap, and a tiny skew.
    """
    ny, nx = shape
    xi_0 = (detector - 1) * (nx + 20) * SCALE
    a = math.radians(V3YANGLE)
    rotation = np.array([[VPARITY * math.cos(a), math.sin(a)],
                         [-VPARITY * math.sin(a), math.cos(a)]])  # fmt: skip
    ideal = np.array([[SCALE, 0.0003], [-0.0002, SCALE]])
    matrix = rotation @ ideal
    translation = rotation @ np.array([xi_0, 0.0])
    return (models.Shift(-(nx - 1) / 2) & models.Shift(-(ny - 1) / 2)) | (
        models.AffineTransformation2D(matrix=matrix, translation=translation)
    )


def stars_in(shape: tuple[int, int], n: int, seed: int) -> list[tuple[float, float, float]]:
    """Star (dx, dy, flux): offsets in arcsec from the field centre."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    stars = []
    while len(stars) < n:
        dx = rng.uniform(-0.3, 1.3) * nx * SCALE
        dy = rng.uniform(-0.3, 0.3) * ny * SCALE
        if all(math.hypot(dx - a, dy - b) > 12 * SCALE * 2 for a, b, _ in stars):
            stars.append((dx, dy, float(rng.uniform(50, 500))))
    return stars


def make_image(
    exposure: int,
    detector: int,
    *,
    shape: tuple[int, int] = (64, 64),
    dither: tuple[float, float] = (0.0, 0.0),
    stars: list[tuple[float, float, float]] | None = None,
    sky: float = 0.5,
    sigma: float = 1.3,
    rnoise: float = 0.02,
    poisson_gain: float = 0.01,
    level: float | None = None,
) -> ImageModel:
    """One calibrated image (MJy/sr) of the set."""
    ny, nx = shape
    ra_ref = RA0 + dither[0] / 3600 / math.cos(math.radians(DEC0))
    dec_ref = DEC0 + dither[1] / 3600
    wcs = build_wcs(distortion(detector, shape), Pointing(ra_ref, dec_ref, ROLL, 0.0, 0.0), shape)
    data = np.full(shape, sky, dtype=np.float64)
    if level is not None:
        data += level
    field_wcs = build_wcs(distortion(1, shape), Pointing(RA0, DEC0, ROLL, 0.0, 0.0), shape)
    for dx, dy, flux in stars or []:
        # the star's sky position: offsets measured on the undithered detector 1
        ra, dec = field_wcs((nx - 1) / 2 + dx / SCALE, (ny - 1) / 2 + dy / SCALE)
        x, y = wcs.invert(ra, dec, with_bounding_box=False)
        if not (-10 < x < nx + 10 and -10 < y < ny + 10):
            continue
        xe = np.arange(nx + 1) - 0.5
        ye = np.arange(ny + 1) - 0.5
        fx = np.diff(0.5 * (1 + erf((xe - x) / (math.sqrt(2) * sigma))))
        fy = np.diff(0.5 * (1 + erf((ye - y) / (math.sqrt(2) * sigma))))
        data += flux * np.outer(fy, fx)
    var_poisson = poisson_gain * np.clip(data - (level or 0.0), 0, None)
    var_rnoise = np.full(shape, rnoise**2)
    model = ImageModel.create_fake_data(shape=shape)
    model.data = data.astype(np.float32)
    model.var_poisson = var_poisson.astype(np.float16)
    model.var_rnoise = var_rnoise.astype(np.float16)
    model.err = np.sqrt(var_poisson + var_rnoise).astype(np.float16)
    model.dq = np.zeros(shape, np.uint32)
    meta = model.meta
    meta.wcs = wcs
    meta.wcsinfo.update({"ra_ref": ra_ref, "dec_ref": dec_ref, "roll_ref": ROLL,
                         "v2_ref": 0.0, "v3_ref": 0.0, "v3yangle": V3YANGLE,
                         "vparity": VPARITY})  # fmt: skip
    meta.instrument.detector = f"WFI{detector:02d}"
    meta.instrument.optical_element = "F158"
    meta.exposure.exposure_time = 100.0
    meta.exposure.effective_exposure_time = 95.0
    from astropy.time import Time

    meta.exposure.start_time = Time(60676.0 + exposure * 0.01, format="mjd")
    meta.exposure.start_time.format = "isot"
    meta.exposure.end_time = Time(60676.0 + exposure * 0.01 + 0.001, format="mjd")
    meta.exposure.end_time.format = "isot"
    meta.observation.observation_id = f"obs{exposure}"
    meta.photometry.conversion_megajanskys = 1.0
    meta.photometry.pixel_area = (SCALE / 3600 / 180 * math.pi) ** 2
    meta.cal_step.flux = "COMPLETE"
    meta.filename = f"e{exposure}_wfi{detector:02d}_cal.asdf"
    if level is not None:
        meta["background"] = {"level": level, "method": "local", "subtracted": False}
    return model


def write_set(directory: Path, *, var_rnoise: bool = True, n_stars: int = 8, seed: int = 3,
              levels: tuple[float, ...] | None = None, **kwargs) -> list[Path]:  # fmt: skip
    """Write 2 exposures x 2 detectors (a 5.3", 3.1" dither) to ``directory``."""
    shape = kwargs.get("shape", (64, 64))
    stars = stars_in(shape, n_stars, seed)
    paths = []
    for e, dither in enumerate([(0.0, 0.0), (5.3, 3.1)], start=1):
        for det in (1, 2):
            level = None if levels is None else levels[e - 1]
            model = make_image(e, det, dither=dither, stars=stars, level=level, **kwargs)
            if not var_rnoise:
                del model.var_rnoise
            paths.append(model.save(directory / model.meta.filename))
    return paths
