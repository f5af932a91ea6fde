"""The array work of ``source_catalog``: background, detection, segment properties, photometry.

Follows romancal 1.1's ``source_catalog`` (``_background.py``, ``_detection.py``,
``_segment.py``, ``_aperture.py``, ``_source_catalog.py``) with photutils:

1. mask = non-finite data or error, error <= 0, or ``DO_NOT_USE`` in ``dq``;
2. `photutils.background.Background2D` (median estimator, 3-sigma ``mad_std`` clip,
   3 x 3 filter) with boxes of ``bkg_boxsize`` clipped to the image, falling back to
   one box over the whole array (``exclude_percentile=100``) when the meshes fail;
3. detection image = background-subtracted data convolved with a normalized Gaussian
   of ``kernel_fwhm`` (kernel size the odd integer >= 3 x FWHM), masked pixels
   interpolated from their neighbours as ``astropy.convolution.convolve`` does;
4. segmentation above ``snr_threshold`` x background RMS with ``npixels`` connected
   pixels (8-connectivity): photutils' ``detect_sources`` computed by
   `romancore.segmentation.label_above_threshold` (the same map), deblended by
   `photutils.segmentation.SourceFinder` (``contrast=1e-4``) on request;
5. `photutils.segmentation.SourceCatalog`'s properties (``aperture_mask_method=
   "mask"``), computed for all sources at once by `.measure` (segment moments and
   sums, Kron, windowed centroids: the same numbers to rounding), circular apertures
   of 0.1/0.2/0.4/0.8/1.6" and a 2.4-2.8" annulus background;
6. DAOFind ``sharpness``/``roundness1`` (`daofind_measures`), ``is_extended`` from the
   APCORR encircled energy (`ee_spline`), ``dust_ebv`` (NaN: no dust map);
7. with an ePSF, PSF photometry of every source (`.psf.fit_psf_photometry`).

Unlike romancal 1.1, whose eight centroid-error columns are zero placeholders, the
errors here are propagated from ``err``: see `isophotal_centroid_errors` and
`windowed_centroid_errors`.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import astropy.units as u
import numpy as np
from astropy.stats import SigmaClip
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning
from scipy import ndimage

import romancore
from romancore import effective_n_threads

from .._arrays import is_file_map, release_rows, rows_in_file

__all__ = [
    "ANNULUS_RADII_ARCSEC",
    "CIRCLE_APERTURE_RADII_ARCSEC",
    "DEPENDENCIES",
    "CatalogResult",
    "RowSigmaClip",
    "ZoomedMesh",
    "aperture_colnames",
    "column_names",
    "convolve_masked",
    "daofind_kernel",
    "daofind_measures",
    "detection_kernel",
    "ee_spline",
    "estimate_background",
    "estimate_background_rows",
    "import_dependencies",
    "preload_dependencies",
    "zoom_mesh",
    "isophotal_centroid_errors",
    "make_source_catalog",
    "sigma_clip_values",
    "source_mask",
    "windowed_centroid_errors",
    "write_parquet",
]

#: Radii (arcsec) of the circular apertures (romancal 1.1 ``ApertureCatalog``).
CIRCLE_APERTURE_RADII_ARCSEC: tuple[float, ...] = (0.1, 0.2, 0.4, 0.8, 1.6)
#: Inner and outer radius (arcsec) of the local-background annulus.
ANNULUS_RADII_ARCSEC: tuple[float, float] = (2.4, 2.8)
#: Kron parameters (photutils' default, which romancal 1.1 uses).
KRON_PARAMS: tuple[float, float, float] = (2.5, 1.4, 0.0)
#: AB magnitude zero point of a flux in nJy.
_AB_ZEROPOINT_NJY = 31.4
#: romancal writes ``str(column.unit)``, i.e. "None", for columns without a unit.
NO_UNIT = "None"
_DO_NOT_USE = np.uint32(1)


def aperture_colnames() -> list[str]:
    """Return the circular-aperture flux column names (``aper01_flux`` ...).

    Returns
    -------
    list of str
        One name per radius, in tenths of an arcsecond.
    """
    return [f"aper{round(r / 0.1):02d}_flux" for r in CIRCLE_APERTURE_RADII_ARCSEC]


def column_names(fit_psf: bool = False) -> list[str]:
    """Return the ordered catalog columns of romancal 1.1's prompt (L2) catalog.

    Parameters
    ----------
    fit_psf : bool, optional
        Include the PSF-fitting columns (74 columns instead of 62).

    Returns
    -------
    list of str
        Column names in output order (romancal 1.1 ``CatalogSchema``).
    """
    aper = ["aper_bkg_flux", "aper_bkg_flux_err"]
    for name in aperture_colnames():
        aper += [name, f"{name}_err"]
    psf = fit_psf
    return [
        "label", "flagged_spatial_id",
        "x_centroid", "y_centroid", "x_centroid_err", "y_centroid_err",
        "x_centroid_win", "y_centroid_win", "x_centroid_win_err", "y_centroid_win_err",
        *(["x_psf", "x_psf_err", "y_psf", "y_psf_err"] if psf else []),
        "ra", "dec",
        "ra_centroid", "dec_centroid", "ra_centroid_err", "dec_centroid_err",
        "ra_centroid_win", "dec_centroid_win", "ra_centroid_win_err", "dec_centroid_win_err",
        *(["ra_psf", "dec_psf", "ra_psf_err", "dec_psf_err"] if psf else []),
        "bbox_xmin", "bbox_xmax", "bbox_ymin", "bbox_ymax", "segment_area",
        "semimajor", "semiminor", "fwhm", "ellipticity", "orientation_pix",
        "orientation_sky", "cxx", "cxy", "cyy", "kron_radius",
        "nn_label", "nn_distance",
        "sharpness", "roundness1", "is_extended", "fluxfrac_radius_50",
        *aper,
        *(["psf_flux", "psf_flux_err"] if psf else []),
        "segment_flux", "segment_flux_err", "kron_flux", "kron_flux_err",
        "kron_abmag", "kron_abmag_err",
        "warning_flags", "image_flags",
        *(["psf_flags", "psf_gof"] if psf else []),
        "dust_ebv",
    ]  # fmt: skip


#: Columns without a unit (romancal writes "None").
_UNITLESS = frozenset({
    "label", "flagged_spatial_id", "nn_label", "ellipticity", "warning_flags",
    "image_flags", "sharpness", "roundness1", "is_extended", "psf_flags", "psf_gof",
    "dust_ebv",
})  # fmt: skip
#: Integer columns (int32 unless listed in _INT64).
_INTEGER = frozenset({"label", "flagged_spatial_id", "nn_label", "warning_flags",
                      "image_flags", "psf_flags"})
_INT64 = frozenset({"flagged_spatial_id"})


def _column_units(flux_unit: u.UnitBase, fit_psf: bool = False) -> dict[str, u.UnitBase | None]:
    """Return the unit of every column (None: no unit), as romancal 1.1 writes them."""
    units: dict[str, u.UnitBase | None] = {}
    for name in column_names(fit_psf):
        if name in _UNITLESS or name.startswith("bbox_"):
            units[name] = None
        elif name.startswith(("x_", "y_")):
            units[name] = u.pix
        elif name in ("ra", "dec") or (name.startswith(("ra_", "dec_"))
                                       and not name.endswith("_err")):
            units[name] = u.deg
        elif name.startswith(("ra_", "dec_")):
            units[name] = u.arcsec
        elif name == "segment_area":
            units[name] = u.arcsec**2
        elif name in ("semimajor", "semiminor", "fwhm", "kron_radius", "nn_distance",
                      "fluxfrac_radius_50"):
            units[name] = u.arcsec
        elif name.startswith("orientation"):
            units[name] = u.deg
        elif name in ("cxx", "cxy", "cyy"):
            units[name] = u.arcsec**-2
        elif name.startswith("aper_bkg"):
            units[name] = flux_unit / u.arcsec**2
        elif name.startswith("kron_abmag"):
            units[name] = u.ABmag if flux_unit == u.nJy else u.mag
        else:  # fluxes
            units[name] = flux_unit
    return units


#: The modules the catalog imports when it first runs (photutils' segmentation alone
#: pulls in scipy.signal and scipy.stats: ~2 s), and its parquet writer's.
DEPENDENCIES = (
    "photutils.background",
    "photutils.segmentation",
    "photutils.utils.exceptions",
    "scipy.sparse.csgraph",
    "scipy.spatial",
    "pyarrow.parquet",
    # pyarrow imports pandas, when installed, at its first array conversion (~0.3-1 s)
    "pandas",
)


def import_dependencies(names: Iterable[str] = DEPENDENCIES) -> None:
    """Import modules a step will need (those of `make_source_catalog` by default).

    A pipeline calls it in a background thread while the detector steps run, so
    that the catalog and tweakreg do not wait seconds for their imports. A module
    that fails to import (or is not installed) is skipped: the step that needs it
    reports it.

    Parameters
    ----------
    names : iterable of str, optional
        Module names, imported in order.
    """
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - reported by the real import, in the step
            continue


_preloading: set[str] = set()
_preloading_lock = threading.Lock()


def preload_dependencies(names: Iterable[str] = DEPENDENCIES) -> None:
    """Import ``names`` in a background thread (`import_dependencies`), once each.

    A pipeline calls it as it starts: the imports (seconds of pure Python) then
    overlap its other steps, which spend their time in compiled code and I/O.
    Modules already asked for by an earlier call are not imported again.

    Parameters
    ----------
    names : iterable of str, optional
        Module names.
    """
    with _preloading_lock:
        todo = tuple(name for name in names if name not in _preloading)
        _preloading.update(todo)
    if todo:
        threading.Thread(target=import_dependencies, args=(todo,),
                         name="romancal_lite-catalog-imports", daemon=True).start()


# ---------------------------------------------------------------------- pieces


def source_mask(data: np.ndarray, err: np.ndarray, dq: np.ndarray | None) -> np.ndarray:
    """Return the mask of pixels excluded from every measurement.

    Parameters
    ----------
    data, err : numpy.ndarray
        Science and total-error arrays (same shape).
    dq : numpy.ndarray or None
        Pixel DQ; ``DO_NOT_USE`` pixels are masked.

    Returns
    -------
    numpy.ndarray of bool
        True where the pixel is not finite, its error is not finite or <= 0, or it is
        flagged ``DO_NOT_USE``.
    """
    with np.errstate(invalid="ignore"):
        mask = ~np.isfinite(data) | ~np.isfinite(err) | ~(err > 0)
    if dq is not None:
        mask |= (dq & _DO_NOT_USE) != 0
    return mask


def _compiled_inputs(data: np.ndarray, err: np.ndarray, dq: np.ndarray | None) -> bool:
    """Whether the arrays are a ``_cal`` image's, which the compiled passes read."""
    arrays = (data, err) if dq is None else (data, err, dq)
    return (data.dtype == np.float32 and err.dtype in (np.float16, np.float32)
            and (dq is None or dq.dtype == np.uint32)
            and all(arr.flags.c_contiguous for arr in arrays))


def _masked_inputs(data: np.ndarray, err: np.ndarray, dq: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Return `source_mask` and the data as float32 with NaN where masked.

    One compiled pass (`romancore.segmentation.detection_inputs`) for the arrays of a
    ``_cal`` image; NumPy otherwise. The same arrays either way.
    """
    if _compiled_inputs(data, err, dq):
        from romancore.segmentation import detection_inputs

        return detection_inputs(data, err, dq, int(_DO_NOT_USE))
    mask = source_mask(data, err, dq)
    return mask, np.where(mask, np.float32(np.nan), data).astype(np.float32, copy=False)


def _masked_error(err: np.ndarray, mask: np.ndarray, data: np.ndarray,
                  dq: np.ndarray | None) -> np.ndarray:
    """Return the error as float64 with NaN where masked (compiled for ``_cal`` arrays)."""
    if _compiled_inputs(data, err, dq):
        from romancore.segmentation import masked_error

        return masked_error(err, mask)
    return np.where(mask, np.nan, err).astype(np.float64, copy=False)


def zoom_mesh(mesh: np.ndarray, box_size: tuple[int, int], shape: tuple[int, int]
              ) -> np.ndarray:
    """Resize a `Background2D` mesh to the image as photutils does, in two matrix products.

    photutils resizes the low-resolution mesh with ``scipy.ndimage.zoom(mesh,
    box_size, order=3, mode="reflect", grid_mode=True)`` to the padded size, crops it
    to the image and clips it to the mesh's range. A spline zoom is separable, so it
    equals ``W_y @ mesh @ W_x.T`` with ``W`` the zoom of the identity along one axis:
    the same numbers (to ~1e-6 relative) in ~0.1 s instead of ~3.5 s for a 4088 x
    4088 image.

    Parameters
    ----------
    mesh : numpy.ndarray
        The low-resolution mesh.
    box_size : tuple of int
        Mesh box size (y, x).
    shape : tuple of int
        Image shape.

    Returns
    -------
    numpy.ndarray
        The full-size image.
    """
    return ZoomedMesh(mesh, box_size, shape).rows(0, shape[0])


class ZoomedMesh:
    """`zoom_mesh` computed a block of rows at a time, on request.

    Rows ``r0:r1`` are ``W_y[r0:r1] @ mesh @ W_x.T`` (see `zoom_mesh`): each row of
    the image depends only on its own row of ``W_y``, so an image that is never
    whole in memory (a mosaic's background) can be read a block at a time. Where
    ``fill_mask`` is given its pixels read ``fill_value`` (photutils' coverage mask).

    Parameters
    ----------
    mesh : numpy.ndarray
        The low-resolution mesh.
    box_size : tuple of int
        Mesh box size (y, x).
    shape : tuple of int
        Image shape.
    fill_mask : numpy.ndarray of bool, optional
        Pixels set to ``fill_value``.
    fill_value : float, optional
        Their value.
    """

    def __init__(self, mesh: np.ndarray, box_size: tuple[int, int], shape: tuple[int, int],
                 fill_mask: np.ndarray | None = None, fill_value: float = 0.0) -> None:
        mesh = np.asarray(getattr(mesh, "value", mesh))
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = mesh.dtype
        self.fill_mask = fill_mask
        self.fill_value = fill_value
        self._mesh = mesh
        self._constant = bool(np.ptp(mesh) == 0)
        if self._constant:
            return
        self._weights = [
            ndimage.zoom(np.eye(n), (int(b), 1), order=3, mode="reflect", grid_mode=True)[:size]
            for n, b, size in zip(mesh.shape, box_size, shape, strict=True)
        ]
        self._mesh64 = mesh.astype(np.float64)
        self._right = self._weights[1].T.astype(mesh.dtype)

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Return rows ``r0:r1`` of the zoomed image (a new array).

        Parameters
        ----------
        r0, r1 : int
            Row range, ``0 <= r0 <= r1 <= ny``.

        Returns
        -------
        numpy.ndarray, shape (r1 - r0, nx)
        """
        mesh = self._mesh
        if self._constant:
            result = np.full((r1 - r0, self.shape[1]), np.min(mesh), dtype=mesh.dtype)
        else:
            # (rows x my) @ (my x mx) in float64, then the product with the x weights
            # directly in the mesh's dtype (no float64 image and cast: ~1e-7 relative
            # for float32)
            left = (self._weights[0][r0:r1] @ self._mesh64).astype(mesh.dtype)
            result = left @ self._right
            np.clip(result, mesh.min(), mesh.max(), out=result)
        if self.fill_mask is not None:
            result[self.fill_mask[r0:r1]] = self.fill_value
        return result


class RowSigmaClip(SigmaClip):
    """astropy's median / ``mad_std`` `~astropy.stats.SigmaClip`, faster along the last axis.

    `photutils.background.Background2D` clips its boxes with
    ``sigma_clip(data, axis=-1, masked=False, copy=False)``. For that call (with
    ``cenfunc="median"``, ``stdfunc="mad_std"``, no ``grow``) the bounds of each row
    come from `romancore.sigma_clip_bounds_rows` (rows sorted once, several at a
    time), the same bounds bit for bit as astropy's compiled path, and the values
    outside them become NaN as astropy does; every other call is astropy's own.
    """

    def __call__(self, data: Any, axis: Any = None, masked: bool | None = True,
                 return_bounds: bool | None = False, copy: bool | None = True) -> Any:
        """Clip ``data`` as `astropy.stats.SigmaClip.__call__` does (same arguments)."""
        arr = data if isinstance(data, np.ndarray) else None
        fast = (
            arr is not None and type(arr) is np.ndarray and arr.dtype.kind == "f"
            and arr.ndim >= 1 and axis in (-1, arr.ndim - 1) and not masked
            and not return_bounds and self.cenfunc == "median"
            and self.stdfunc == "mad_std" and not self.grow
        )
        if not fast:
            return super().__call__(data, axis=axis, masked=masked,
                                    return_bounds=return_bounds, copy=copy)
        rows = arr.reshape(-1, arr.shape[-1])
        maxiters = None if np.isinf(self.maxiters) else int(self.maxiters)
        lower, upper = romancore.sigma_clip_bounds_rows(
            rows, float(self.sigma_lower), float(self.sigma_upper), maxiters)
        shape = (*arr.shape[:-1], 1)
        result = arr.copy() if copy else arr
        with np.errstate(invalid="ignore"):
            clipped = ~((arr >= lower.reshape(shape)) & (arr <= upper.reshape(shape)))
        result[clipped] = np.nan
        return result


def _background2d_class() -> type:
    """Return photutils' ``Background2D`` with box statistics from sorted values.

    For romancal's configuration (a `RowSigmaClip`, `MedianBackground`,
    `StdBackgroundRMS`) each box's clipped median, standard deviation and count of
    kept pixels come from `romancore.clipped_stats_rows` (each box sorted once for
    the clip; the statistics then need no second selection, copy or NaN-filled
    array): the median is photutils' bit for bit, the RMS equal to its float32
    NumPy reduction to a few units in the last place. Any other configuration (or
    call) is photutils' own. Everything around the box statistics (boxes, masks,
    the exclusion of boxes with too few pixels, interpolation, filtering) is
    photutils'.
    """
    global _BACKGROUND2D
    if _BACKGROUND2D is not None:
        return _BACKGROUND2D
    from photutils.background import Background2D, MedianBackground, StdBackgroundRMS

    class SortedBoxBackground2D(Background2D):
        def _compute_box_statistics(self, data: Any, *, axis: Any = None) -> Any:
            clip = self.sigma_clip
            fast = (
                type(clip) is RowSigmaClip and clip.cenfunc == "median"
                and clip.stdfunc == "mad_std" and not clip.grow
                and type(self.bkg_estimator) is MedianBackground
                and type(self.bkg_rms_estimator) is StdBackgroundRMS
                and type(data) is np.ndarray and data.dtype.kind == "f"
                and (axis is None or axis in (-1, data.ndim - 1))
            )
            if not fast:
                return super()._compute_box_statistics(data, axis=axis)
            rows = data.reshape(1, -1) if axis is None else data.reshape(-1, data.shape[-1])
            maxiters = None if np.isinf(clip.maxiters) else int(clip.maxiters)
            median, std, count = romancore.clipped_stats_rows(
                rows, float(clip.sigma_lower), float(clip.sigma_upper), maxiters)
            box_mask = count <= self._good_npixels_threshold
            median[box_mask] = np.nan
            std[box_mask] = np.nan
            if axis is None:  # the corner box: scalars, as photutils
                return median[0], std[0], count[0]
            shape = data.shape[:-1]
            return median.reshape(shape), std.reshape(shape), count.reshape(shape)

        def _calculate_stats(self) -> Any:
            rows = getattr(self, "_row_source", None)
            if rows is None:
                return super()._calculate_stats()
            return _band_statistics(self, rows)

    _BACKGROUND2D = SortedBoxBackground2D
    return _BACKGROUND2D


def _band_statistics(bkg: Any, rows: Callable[[int, int], np.ndarray]) -> Any:
    """Compute the box statistics of ``Background2D`` (photutils) a row of boxes at a time.

    ``rows(r0, r1)`` returns the image's rows ``r0:r1`` (float32, a new array);
    ``bkg.coverage_mask`` is the full-size mask. The boxes are cut and ordered as
    photutils cuts them (`astropy.nddata.reshape_as_blocks` of the core, the extra
    row, column and corner), each box's statistics are those of its own pixels, so
    the meshes are photutils' (the same numbers), without the full-size copy of the
    image photutils makes.
    """
    from astropy.nddata import reshape_as_blocks

    ny, nx = bkg._data_shape
    box = bkg.box_size
    by, bx = int(box[0]), int(box[1])
    bkg._box_npixels = np.prod(box)
    nby, nbx = ny // by, nx // bx
    y1, x1 = nby * by, nbx * bx
    any_good = False

    def band_of(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        nonlocal any_good
        band = rows(r0, r1)
        # photutils masks the non-finite values with the coverage mask
        band_mask = ~np.isfinite(band)
        band_mask |= bkg.coverage_mask[r0:r1]
        any_good = any_good or not band_mask.all()
        return band, band_mask

    core_stats = []
    col_pieces: list[tuple[np.ndarray, np.ndarray]] = []
    for j in range(nby):
        band, band_mask = band_of(j * by, (j + 1) * by)
        core = reshape_as_blocks(band[:, :x1].copy(), (by, bx)).reshape((1, nbx, -1))
        core_mask = reshape_as_blocks(band_mask[:, :x1], (by, bx)).reshape((1, nbx, -1))
        core[core_mask] = np.nan
        core_stats.append(bkg._compute_box_statistics(core, axis=-1))
        if x1 < nx:
            col_pieces.append((band[:, x1:].copy(), band_mask[:, x1:]))
        del band, band_mask, core, core_mask
    bkg_stats, rms_stats, ngood = (np.vstack([st[k] for st in core_stats]) for k in range(3))
    extra_row, extra_col = y1 < ny, x1 < nx
    if extra_row:
        row_band, row_mask = band_of(y1, ny)
    if extra_row or extra_col:
        if extra_row:
            row_data = row_band[:, :x1].copy()
            row_data[row_mask[:, :x1]] = np.nan
            row_data = np.moveaxis(reshape_as_blocks(row_data, (1, bx)), 0, -1)
            row_data = row_data.reshape((*row_data.shape[:-2], -1))
            row_bkg, row_rms, row_ngood = bkg._compute_box_statistics(row_data, axis=-1)
        if extra_col:
            col_data = np.vstack([piece for piece, _ in col_pieces])
            col_data[np.vstack([m for _, m in col_pieces])] = np.nan
            col_data = np.transpose(reshape_as_blocks(col_data, (by, 1)), (0, 3, 1, 2))
            col_data = col_data.reshape((*col_data.shape[:-2], -1))
            col_bkg, col_rms, col_ngood = bkg._compute_box_statistics(col_data, axis=-1)
        if extra_row and extra_col:
            corner = row_band[:, x1:].copy()
            corner[row_mask[:, x1:]] = np.nan
            crn = bkg._compute_box_statistics(corner, axis=None)
            col_bkg = np.vstack((col_bkg, crn[0]))
            col_rms = np.vstack((col_rms, crn[1]))
            col_ngood = np.vstack((col_ngood, crn[2]))
        if extra_row:
            bkg_stats = np.vstack([bkg_stats, row_bkg[:, 0]])
            rms_stats = np.vstack([rms_stats, row_rms[:, 0]])
            ngood = np.vstack([ngood, row_ngood[:, 0]])
        if extra_col:
            bkg_stats = np.hstack([bkg_stats, col_bkg])
            rms_stats = np.hstack([rms_stats, col_rms])
            ngood = np.hstack([ngood, col_ngood])
    if not any_good:
        raise ValueError("All input pixels are masked. Cannot compute a background.")
    if np.all(np.isnan(bkg_stats)):
        raise ValueError(f"All boxes contain <= {bkg._good_npixels_threshold} unmasked or "
                         "finite pixels")
    del bkg._data
    del bkg._mask
    return bkg_stats, rms_stats, ngood


_BACKGROUND2D: type | None = None


def estimate_background(
    data: np.ndarray, mask: np.ndarray, box_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Estimate the 2-D background and its RMS as romancal 1.1 does.

    Parameters
    ----------
    data : numpy.ndarray
        Image.
    mask : numpy.ndarray of bool
        Pixels without data (passed as photutils' ``coverage_mask``).
    box_size : int
        Mesh box edge in pixels, clipped to each image dimension.

    Returns
    -------
    background, background_rms : numpy.ndarray
        Same shape as ``data`` (zero where masked).
    """
    background, rms = _background_meshes(data, mask, box_size)
    return background.rows(0, data.shape[0]), rms.rows(0, data.shape[0])


def estimate_background_rows(
    rows: Callable[[int, int], np.ndarray], mask: np.ndarray, box_size: int
) -> tuple[ZoomedMesh, ZoomedMesh]:
    """`estimate_background` of an image read a row of boxes at a time.

    The same meshes and maps, bit for bit, as `estimate_background` of the whole
    image; neither the image nor the maps are ever whole in memory (the maps'
    rows are computed on request: `ZoomedMesh.rows`).

    Parameters
    ----------
    rows : callable
        ``rows(r0, r1)`` returns rows ``r0:r1`` of the image (float32, a new array).
    mask : numpy.ndarray of bool
        Pixels without data (photutils' ``coverage_mask``); its shape is the image's.
    box_size : int
        Mesh box edge in pixels, clipped to each image dimension.

    Returns
    -------
    background, background_rms : ZoomedMesh
        Their rows on request (zero where masked).
    """
    return _background_meshes(None, mask, box_size, rows)


def _background_meshes(
    data: np.ndarray | None, mask: np.ndarray, box_size: int,
    rows: Callable[[int, int], np.ndarray] | None = None,
) -> tuple[ZoomedMesh, ZoomedMesh]:
    from photutils.background import MedianBackground

    Background2D = _background2d_class()
    shape = mask.shape
    if data is None:
        # photutils reads the image in its constructor only to test that something is
        # finite; the boxes come from ``rows`` (``_band_statistics``)
        data = np.broadcast_to(np.float32(0.0), shape)
        Background2D = type("RowBackground2D", (Background2D,), {"_row_source": staticmethod(
            rows)})
    box = (min(int(box_size), shape[0]), min(int(box_size), shape[1]))
    options: dict[str, Any] = {
        "filter_size": (3, 3),
        "coverage_mask": mask,
        "sigma_clip": RowSigmaClip(sigma=3.0, stdfunc="mad_std"),
        "bkg_estimator": MedianBackground(),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        try:
            bkg = Background2D(data, box, **options)
        except ValueError:
            # too few good pixels in the meshes: one box over the whole array
            bkg = Background2D(data, shape, exclude_percentile=100.0, **options)
    # bkg.background / background_rms, without photutils' slow full-size spline zoom
    box = tuple(int(b) for b in np.broadcast_to(np.asarray(bkg.box_size), (2,)))
    meshes = (bkg.background_mesh, bkg.background_rms_mesh)
    # photutils' fill_value (0) on the coverage mask
    return (ZoomedMesh(np.asarray(meshes[0]), box, shape, fill_mask=mask),
            ZoomedMesh(np.asarray(meshes[1]), box, shape, fill_mask=mask))


def detection_kernel(kernel_fwhm: float) -> np.ndarray:
    """Return romancal's detection kernel: a normalized 2-D Gaussian of ``kernel_fwhm``.

    Parameters
    ----------
    kernel_fwhm : float
        FWHM in pixels.

    Returns
    -------
    numpy.ndarray
        Square kernel of odd size ``>= 3 * kernel_fwhm``, summing to 1.
    """
    from photutils.segmentation import make_2dgaussian_kernel

    size = math.ceil(kernel_fwhm * 3)
    size += 1 - size % 2
    return np.asarray(make_2dgaussian_kernel(kernel_fwhm, size=size).array)


def convolve_masked(data: np.ndarray, kernel: np.ndarray, mask: np.ndarray, *,
                    empty_value: float = np.nan) -> np.ndarray:
    """Convolve ``data`` with a normalized kernel, interpolating masked pixels.

    The result equals ``astropy.convolution.convolve(data, kernel, mask=mask)``
    (boundary filled with zeros, masked and non-finite pixels replaced by the
    kernel-weighted mean of their good neighbours). A separable kernel (romancal's
    circular Gaussian) goes through `romancore.convolve_separable_masked` (two 1-D
    passes per row, no full-size temporary); any other through two
    `scipy.ndimage.correlate` calls.

    Parameters
    ----------
    data : numpy.ndarray
        Image.
    kernel : numpy.ndarray
        Kernel (odd shape), summing to 1.
    mask : numpy.ndarray of bool
        Pixels to ignore.
    empty_value : float, optional
        The value where no unmasked pixel is within the kernel (astropy: NaN).

    Returns
    -------
    numpy.ndarray
        float64 convolved image; ``empty_value`` only where no unmasked pixel is
        within the kernel.
    """
    kern = np.asarray(kernel, dtype=np.float64)
    col, row = _separate(kern)
    if col is not None:
        return romancore.convolve_separable_masked(
            np.ascontiguousarray(data, dtype=np.float64),
            np.ascontiguousarray(mask, dtype=bool), col, row, empty_value=empty_value)
    good = ~mask & np.isfinite(data)
    values = np.where(good, data, 0.0).astype(np.float64)
    flipped = kern[::-1, ::-1]
    num = ndimage.correlate(values, flipped, mode="constant", cval=0.0)
    # out-of-image pixels count as valid zeros (astropy's boundary="fill")
    weight = ndimage.correlate(good.astype(np.float64), flipped, mode="constant", cval=1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / weight
    out[weight <= 1e-12 * kern.sum()] = empty_value
    return out


def convolve_masked_rows(data: np.ndarray, kernel: np.ndarray, mask: np.ndarray, *,
                         empty_value: float = np.nan, rows: int = 256,
                         scattered_reads: bool = False) -> np.ndarray:  # fmt: skip
    """`convolve_masked` a block of rows at a time, into a `file_array` (the same values).

    Each block is convolved with the kernel's half height of rows above and below it
    (or the image's edge, as the whole image has), so its rows see exactly the pixels
    they see in one call on the whole image; only the block's rows are kept. For an
    image that lives in a file: neither it nor the result is ever whole in memory.

    Parameters
    ----------
    data, kernel, mask, empty_value
        As `convolve_masked`.
    rows : int, optional
        Rows per block.
    scattered_reads : bool, optional
        The result will be read in small boxes (`.._arrays.file_array`).

    Returns
    -------
    numpy.ndarray
        float64 convolved image in a temporary file (its pages handed back).
    """
    half = np.shape(kernel)[0] // 2
    ny = data.shape[0]

    def block(r0: int, r1: int) -> np.ndarray:
        a, b = max(0, r0 - half), min(ny, r1 + half)
        out = convolve_masked(data[a:b], kernel, mask[a:b], empty_value=empty_value)
        release_rows(data, a, b)
        return out[r0 - a : r1 - a]

    return rows_in_file(data.shape, np.float64, block, rows, scattered_reads=scattered_reads)


def _separate(kernel: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Return ``(column, row)`` 1-D factors of a rank-1 kernel, or ``(None, None)``."""
    u, sv, vt = np.linalg.svd(kernel)
    if sv[0] <= 0 or (len(sv) > 1 and sv[1] > 1e-12 * sv[0]):
        return None, None
    col = u[:, 0] * np.sqrt(sv[0])
    row = vt[0] * np.sqrt(sv[0])
    if not np.allclose(np.outer(col, row), kernel, rtol=0, atol=1e-14 * np.abs(kernel).max()):
        return None, None
    return col, row


def isophotal_centroid_errors(
    conv: np.ndarray,
    segm: np.ndarray,
    mask: np.ndarray,
    err: np.ndarray,
    kernel: np.ndarray,
    labels: np.ndarray,
    slices: list[tuple[slice, slice]],
    xc: np.ndarray,
    yc: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Propagate ``err`` to photutils' isophotal centroid (first moments of ``conv``).

    The centroid ``x_c = sum_i c_i x_i / sum_i c_i`` runs over the unmasked pixels of
    the segment with a finite, non-negative convolved value ``c_i``; with
    ``c = K * d`` the noise of ``c`` is correlated, and to first order::

        var(x_c) = sum_k err_k**2 [ sum_i K(i - k) m_i (x_i - x_c) ]**2 / (sum_i c_i)**2

    (``m_i`` the indicator of the moment pixels), i.e. the error image weighted by the
    kernel-smeared lever arm. Masked pixels, whose convolved values are interpolated,
    contribute no variance.

    Parameters
    ----------
    conv : numpy.ndarray
        Convolved (detection) image.
    segm : numpy.ndarray
        Segmentation map.
    mask : numpy.ndarray of bool
        Excluded pixels.
    err : numpy.ndarray
        Per-pixel 1-sigma error of the background-subtracted data.
    kernel : numpy.ndarray
        The detection kernel.
    labels : numpy.ndarray
        Source labels.
    slices : list of tuple of slice
        Bounding-box slices (y, x) of each label.
    xc, yc : numpy.ndarray
        The isophotal centroids.

    Returns
    -------
    x_err, y_err : numpy.ndarray
        1-sigma errors in pixels (NaN where undefined).
    """
    from romancore import _srcmeasure

    half = kernel.shape[0] // 2
    ny, nx = conv.shape
    n = len(labels)
    x_err = np.full(n, np.nan)
    y_err = np.full(n, np.nan)
    if n == 0:
        return x_err, y_err
    # each segment's bounding box grown by the kernel's half-width (compiled, per source)
    y0 = np.array([max(sl[0].start - half, 0) for sl in slices], dtype=np.int64)
    y1 = np.array([min(sl[0].stop + half, ny) for sl in slices], dtype=np.int64)
    x0 = np.array([max(sl[1].start - half, 0) for sl in slices], dtype=np.int64)
    x1 = np.array([min(sl[1].stop + half, nx) for sl in slices], dtype=np.int64)
    kern = np.ascontiguousarray(np.asarray(kernel, dtype=np.float64)[::-1, ::-1])
    _srcmeasure.isophotal_errors(
        np.ascontiguousarray(conv, dtype=np.float64), np.ascontiguousarray(err, np.float64),
        np.ascontiguousarray(mask, dtype=bool).view(np.uint8),
        np.ascontiguousarray(segm, dtype=np.int32), kern,
        np.ascontiguousarray(labels, dtype=np.int32), y0, y1, x0, x1,
        np.ascontiguousarray(xc, dtype=np.float64), np.ascontiguousarray(yc, np.float64),
        x_err, y_err, effective_n_threads())
    return x_err, y_err


def windowed_centroid_errors(
    data: np.ndarray,
    segm: np.ndarray,
    mask: np.ndarray,
    err: np.ndarray,
    labels: np.ndarray,
    xw: np.ndarray,
    yw: np.ndarray,
    half_light_radius: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Propagate ``err`` to photutils' windowed centroid (SourceExtractor's XWIN).

    At convergence ``sum_i w_i d_i (x_i - x_w) = 0`` with the Gaussian window
    ``w_i = exp(-r_i**2 / 2 s**2)`` (``s = 2 r_hl / 2.3548``, ``r_hl >= 0.5``) inside
    ``r <= 4 s``; linearizing in the data and in the window position (the window moves
    with the centroid) gives::

        var(x_w) = sum_i w_i**2 err_i**2 (x_i - x_w)**2 / D**2,
        D = sum_i w_i d_i (1 - (x_i - x_w)**2 / s**2)

    which for a Gaussian source matched by the window is SourceExtractor's
    ``ERRX2WIN = 4 sum w**2 err**2 (x - x_w)**2 / (sum w d)**2``. Pixels of other
    segments and masked pixels are excluded, as photutils does with
    ``aperture_mask_method="mask"``.

    Parameters
    ----------
    data : numpy.ndarray
        Background-subtracted image.
    segm : numpy.ndarray
        Segmentation map.
    mask : numpy.ndarray of bool
        Excluded pixels.
    err : numpy.ndarray
        Per-pixel 1-sigma error.
    labels : numpy.ndarray
        Source labels.
    xw, yw : numpy.ndarray
        The windowed centroids.
    half_light_radius : numpy.ndarray
        photutils' ``flux_radius(0.5)`` in pixels.

    Returns
    -------
    x_err, y_err : numpy.ndarray
        1-sigma errors in pixels (NaN where undefined).
    """
    from romancore import _srcmeasure

    n = len(labels)
    x_err = np.full(n, np.nan)
    y_err = np.full(n, np.nan)
    if n == 0:
        return x_err, y_err
    _srcmeasure.windowed_errors(
        np.ascontiguousarray(data, dtype=np.float64), np.ascontiguousarray(err, np.float64),
        np.ascontiguousarray(mask, dtype=bool).view(np.uint8),
        np.ascontiguousarray(segm, dtype=np.int32),
        np.ascontiguousarray(labels, dtype=np.int32),
        np.ascontiguousarray(xw, dtype=np.float64), np.ascontiguousarray(yw, np.float64),
        np.ascontiguousarray(half_light_radius, dtype=np.float64), x_err, y_err,
        effective_n_threads())
    return x_err, y_err


# ---------------------------------------------------------------------- catalog


@dataclass
class CatalogResult:
    """Output of `make_source_catalog`.

    Attributes
    ----------
    table : astropy.table.Table
        The catalog (`column_names` order, units on the columns, ``meta`` as romancal's
        table meta).
    segmentation : numpy.ndarray
        uint32 segmentation map (0: background).
    n_masked : int
        Number of masked pixels.
    reason : str or None
        Why the catalog is empty ("all pixels are masked", "no sources detected").
    """

    table: Table
    segmentation: np.ndarray
    n_masked: int = 0
    reason: str | None = None
    notes: list[str] = field(default_factory=list)


def _pixel_scale_angle(
    wcs: Callable[..., Any] | None, shape: tuple[int, int]
) -> tuple[float, float] | None:
    """Pixel scale (arcsec) and angle of North from +x (deg) at the image centre."""
    if wcs is None:
        return None
    yc, xc = (shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0
    # without the bounding box: 1" can leave a narrow image (e.g. a few rows)
    ra0, dec0 = (float(v) for v in wcs(xc, yc, with_bounding_box=False))
    offset_deg = 1.0 / 3600.0
    try:
        x1, y1 = (
            float(v) for v in wcs.invert(ra0, dec0 + offset_deg, with_bounding_box=False)
        )
    except Exception:  # noqa: BLE001 - any inversion failure: no sky-derived scale
        return None
    dx, dy = x1 - xc, y1 - yc
    if not (math.isfinite(dx) and math.isfinite(dy)) or dx == dy == 0.0:
        return None
    scale = 1.0 / math.hypot(dx, dy)
    return scale, math.degrees(math.atan2(dy, dx))


def _sky(wcs: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ra, dec = wcs(x, y)
    return np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)


def _sky_unbounded(wcs: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``wcs(x, y)`` without the bounding box (half a pixel beyond the edge is fine)."""
    try:
        ra, dec = wcs(x, y, with_bounding_box=False)
    except TypeError:  # a plain callable
        ra, dec = wcs(x, y)
    return np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)


def _sky_errors(
    wcs: Any, x: np.ndarray, y: np.ndarray, x_err: np.ndarray, y_err: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Propagate pixel errors through the local WCS Jacobian to arcsec on the sky."""
    ok = np.isfinite(x) & np.isfinite(y)
    xs, ys = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
    # the Jacobian by central differences, also for positions at the image edge
    ra_px, dec_px = _sky_unbounded(wcs, xs + 0.5, ys)
    ra_mx, dec_mx = _sky_unbounded(wcs, xs - 0.5, ys)
    ra_py, dec_py = _sky_unbounded(wcs, xs, ys + 0.5)
    ra_my, dec_my = _sky_unbounded(wcs, xs, ys - 0.5)
    _, dec = _sky_unbounded(wcs, xs, ys)
    cosd = np.cos(np.radians(dec))
    dra_dx = ((ra_px - ra_mx + 180.0) % 360.0 - 180.0) * cosd
    dra_dy = ((ra_py - ra_my + 180.0) % 360.0 - 180.0) * cosd
    ddec_dx, ddec_dy = dec_px - dec_mx, dec_py - dec_my
    ra_err = 3600.0 * np.hypot(dra_dx * x_err, dra_dy * y_err)
    dec_err = 3600.0 * np.hypot(ddec_dx * x_err, ddec_dy * y_err)
    ra_err[~ok] = np.nan
    dec_err[~ok] = np.nan
    return ra_err, dec_err


def _empty_table(flux_unit: u.UnitBase, fit_psf: bool = False) -> Table:
    table = Table()
    for name, unit in _column_units(flux_unit, fit_psf).items():
        if name in _INT64:
            dtype: Any = np.int64
        elif name in _INTEGER or name.startswith("bbox_"):
            dtype = np.int32
        elif name == "is_extended":
            dtype = np.bool_
        elif name.startswith(("ra", "dec")) and not name.endswith("_err"):
            dtype = np.float64
        else:
            dtype = np.float32
        table[name] = np.zeros(0, dtype=dtype)
        table[name].unit = unit
    return table


def sigma_clip_values(values: np.ndarray, sigma: float = 3.0, maxiters: int = 5) -> np.ndarray:
    """Return the values kept by astropy's ``SigmaClip(sigma)`` (median centre, std).

    The same iteration as ``astropy.stats.SigmaClip(sigma=sigma, maxiters=maxiters)
    (values, masked=False)``: bounds ``median +- sigma * std`` of the values kept so
    far (inclusive), until nothing changes or ``maxiters``. The one-array form of the
    clip that the annulus background applies to all sources at once.

    Parameters
    ----------
    values : numpy.ndarray
        Finite 1-D values.
    sigma : float, optional
        Clipping limit in standard deviations.
    maxiters : int, optional
        Maximum number of iterations.

    Returns
    -------
    numpy.ndarray
        The kept values.
    """
    kept = np.asarray(values, dtype=np.float64).ravel()
    for _ in range(maxiters):
        if kept.size == 0:
            break
        centre = np.median(kept)
        std = kept.std()
        keep = (kept >= centre - sigma * std) & (kept <= centre + sigma * std)
        if keep.all():
            break
        kept = kept[keep]
    return kept


def daofind_kernel(kernel_fwhm: float) -> tuple[np.ndarray, np.ndarray]:
    """Return DAOFind's zero-sum Gaussian kernel and its circular mask (romancal 1.1).

    ``sigma = fwhm / 2.3548``; the kernel is ``2 * int(max(2, 1.5 sigma)) + 1`` pixels
    wide, the Gaussian sampled at pixel centres inside the radius ``max(2, 1.5 sigma)``,
    peak-normalized, then shifted and scaled to zero sum and unit "height"
    (``(g - mean g) / (sum g**2 - (sum g)**2 / n)``).

    Parameters
    ----------
    kernel_fwhm : float
        FWHM in pixels.

    Returns
    -------
    kernel : numpy.ndarray
        The zero-sum kernel (0 outside the mask).
    mask : numpy.ndarray of bool
        The pixels inside the radius.
    """
    if not kernel_fwhm > 0:
        raise ValueError(f"kernel_fwhm must be positive, got {kernel_fwhm}")
    sigma = kernel_fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    radius = max(2.0, 1.5 * sigma)
    half = int(radius)
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
    inside = np.hypot(xx, yy) <= radius
    gauss = np.where(inside, np.exp(-(xx * xx + yy * yy) / (2.0 * sigma * sigma)), 0.0)
    gauss /= gauss.max()
    n = inside.sum()
    denom = (gauss**2).sum() - gauss.sum() ** 2 / n
    return np.where(inside, (gauss - gauss.sum() / n) / denom, 0.0), inside


def daofind_measures(
    data: np.ndarray, x: np.ndarray, y: np.ndarray, kernel_fwhm: float,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return DAOFind's ``sharpness`` and ``roundness1`` at given positions (romancal 1.1).

    With ``K`` the `daofind_kernel`, ``C = data * K`` (zero outside the image), and
    the kernel-sized cutouts around each position (the pixel that contains it at
    the centre, zeros outside the image):

    * ``sharpness = (d_0 - mean of the other d inside the mask) / C_0``;
    * ``roundness1 = 2 (-q1 + q2 - q3 + q4) / sum |C|``, ``q`` the sums of ``C`` over
      the four quadrants (centre pixel excluded) as DAOFind defines them.

    Vectorized over sources: the convolution is only computed on the cutouts.

    Parameters
    ----------
    data : numpy.ndarray
        Background-subtracted image (non-finite values are used as 0).
    x, y : numpy.ndarray
        Positions (pixels); non-finite ones give NaN.
    kernel_fwhm : float
        FWHM of the DAOFind Gaussian (the detection kernel's).
    mask : numpy.ndarray of bool, optional
        Pixels used as 0 (as romancal zeroes the masked pixels of its image).

    Returns
    -------
    sharpness, roundness1 : numpy.ndarray of float32
    """
    kernel, inside = daofind_kernel(kernel_fwhm)
    size = kernel.shape[0]
    c = size // 2
    n = len(x)
    if n == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    ok = np.isfinite(x) & np.isfinite(y)
    ny, nx = data.shape
    # cutout of (size + 2c) around each position: the conv of its central size x size
    big = size + 2 * c
    x0 = np.ceil(np.where(ok, x, -1e6) - size / 2.0).astype(np.int64) - c
    y0 = np.ceil(np.where(ok, y, -1e6) - size / 2.0).astype(np.int64) - c
    off = np.arange(big)
    ix = x0[:, None] + off
    iy = y0[:, None] + off
    valid = ((iy >= 0) & (iy < ny))[:, :, None] & ((ix >= 0) & (ix < nx))[:, None, :]
    # gathered from the image (no full-size copy), then non-finite values as 0
    rows, columns = np.clip(iy, 0, ny - 1)[:, :, None], np.clip(ix, 0, nx - 1)[:, None, :]
    cut = data[rows, columns]
    usable = valid & np.isfinite(cut)
    if mask is not None:
        usable &= ~mask[rows, columns]
    cut = np.where(usable, cut, 0.0).astype(np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(cut, (size, size), axis=(1, 2))
    conv = np.einsum("nabij,ij->nab", windows, kernel[::-1, ::-1])
    # the convolved image, like the data, is zero outside the image
    conv = np.where(valid[:, c:c + size, c:c + size], conv, 0.0)
    dat = cut[:, c:c + size, c:c + size]
    peak = dat[:, c, c]
    conv_peak = conv[:, c, c]
    mean = ((dat * inside).sum(axis=(1, 2)) - peak) / (inside.sum() - 1)
    conv0 = conv.copy()
    conv0[:, c, c] = 0.0
    q1 = conv0[:, :c + 1, c + 1:].sum(axis=(1, 2))
    q2 = conv0[:, :c, :c + 1].sum(axis=(1, 2))
    q3 = conv0[:, c:, :c].sum(axis=(1, 2))
    q4 = conv0[:, c + 1:, c:].sum(axis=(1, 2))
    total = np.abs(conv0).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        sharpness = (peak - mean) / conv_peak
        roundness = 2.0 * (-q1 + q2 - q3 + q4) / np.where(total == 0, np.nan, total)
    sharpness[~ok] = np.nan
    roundness[~ok] = np.nan
    return sharpness.astype(np.float32), roundness.astype(np.float32)


def ee_spline(radii: np.ndarray, fractions: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Return the interpolating cubic spline of an APCORR encircled-energy table.

    romancal 1.1 fits astropy's ``SplineSplrepFitter`` (``scipy.interpolate.splrep``,
    cubic, no smoothing) to ``(ee_radii, ee_fractions)``.

    Parameters
    ----------
    radii, fractions : numpy.ndarray
        ``ee_radii`` (pixels) and ``ee_fractions`` of the image's optical element.

    Returns
    -------
    callable
        Radius in pixels -> encircled-energy fraction.
    """
    from scipy.interpolate import splev, splrep

    order = np.argsort(radii)
    tck = splrep(np.asarray(radii, float)[order], np.asarray(fractions, float)[order], k=3, s=0)
    return lambda r: np.asarray(splev(np.asarray(r, dtype=float), tck))


def _nearest_neighbours(
    labels: np.ndarray, xy: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import KDTree

    nn_label = np.full(len(labels), -1, dtype=np.int32)
    nn_dist = np.full(len(labels), np.nan, dtype=np.float32)
    ok = np.all(np.isfinite(xy), axis=1)
    if ok.sum() < 2:
        return nn_label, nn_dist
    tree = KDTree(xy[ok])
    dist, idx = tree.query(xy[ok], k=2)
    nn_label[ok] = labels[ok][idx[:, 1]]
    nn_dist[ok] = dist[:, 1] * scale
    return nn_label, nn_dist


def _kron_and_window(props: dict[str, np.ndarray], data: np.ndarray, err: np.ndarray,
                     mask: np.ndarray, segm: np.ndarray, labels: np.ndarray, xc: np.ndarray,
                     yc: np.ndarray, bad: np.ndarray | None = None,
                     between: Callable[[], None] | None = None, image: Any = None,
                     all_masked: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Return SourceCatalog's Kron, half-light radius and windowed-centroid columns.

    ``kron_radius``, ``kron_flux(_err)``, ``flux_radius(0.5)`` and ``centroid_win``
    from the moment shape of `.measure.segment_properties` (``props``), by `.measure`
    (all sources at once). ``bad``: the `.measure.excluded_pixels`, if known;
    ``between()`` is called after each measurement (to hand back pages); ``image``
    and ``all_masked``: the `.measure.prepare_image` of the arrays and
    `.measure.all_masked` of ``labels``, if known (a chunk of the sources).
    """
    between = between or (lambda: None)
    from . import measure

    a, b = props["semimajor_axis"], props["semiminor_axis"]
    cxx, cxy, cyy = props["ellipse_cxx"], props["ellipse_cxy"], props["ellipse_cyy"]
    theta = props["orientation"]
    if image is None:
        image = measure.prepare_image(data, mask, segm, err, bad=bad)
    if all_masked is None:
        all_masked = measure.all_masked(image, labels)
    kron_radius = measure.kron_radius(image, None, None, labels, xc, yc, a, b, theta, cxx,
                                      cxy, cyy, kron_params=KRON_PARAMS,
                                      all_masked=all_masked)
    between()
    flux, flux_err = measure.kron_photometry(image, None, None, None, labels, xc, yc, a, b,
                                             theta, kron_radius, kron_params=KRON_PARAMS,
                                             all_masked=all_masked)
    between()
    rhl = measure.flux_radius(image, None, None, labels, xc, yc, flux,
                              measure.max_flux_radius(a, kron_radius, KRON_PARAMS), 0.5)
    between()
    x_win, y_win = measure.windowed_centroids(image, None, None, labels, xc, yc, rhl, cxx,
                                              cxy, cyy)
    between()
    return {"kron_radius": kron_radius, "kron_flux": flux, "kron_flux_err": flux_err,
            "flux_radius": rhl, "x_win": x_win, "y_win": y_win}


def detect_segments(conv: np.ndarray, threshold: np.ndarray, mask: np.ndarray, npixels: int,
                    deblend: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the segmentation map, its labels and their boxes (romancal's detection).

    photutils' ``SourceFinder(npixels, deblend=deblend, contrast=1e-4)`` on ``conv``
    above ``threshold`` outside ``mask``: without deblending its ``detect_sources``
    map, computed by `romancore.segmentation.label_above_threshold`; with it,
    photutils' finder itself.

    Returns
    -------
    segm : numpy.ndarray of int32
        The map (0: no source).
    labels : numpy.ndarray of int32
        The labels in it, increasing (empty when nothing is detected).
    bbox : numpy.ndarray of int32, shape (n, 4)
        ``(ymin, ymax, xmin, xmax)`` of each, inclusive.
    """
    if not deblend:
        from romancore.segmentation import label_above_threshold

        found = label_above_threshold(conv, threshold, mask, npixels)
        return found.data, np.arange(1, found.n_labels + 1, dtype=np.int32), found.bbox
    from photutils.segmentation import SourceFinder
    from photutils.utils.exceptions import NoDetectionsWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        finder = SourceFinder(npixels, deblend=True, contrast=1e-4, progress_bar=False)
        found = finder(conv, threshold, mask=mask)
    if found is None or found.n_labels == 0:
        return (np.zeros(conv.shape, dtype=np.int32), np.zeros(0, dtype=np.int32),
                np.zeros((0, 4), dtype=np.int32))
    bbox = np.array([(s[0].start, s[0].stop - 1, s[1].start, s[1].stop - 1)
                     for s in found.slices], dtype=np.int32).reshape(-1, 4)
    return (np.ascontiguousarray(found.data, dtype=np.int32),
            np.asarray(found.labels, dtype=np.int32), bbox)


#: Rows per block where a mosaic's arrays are read or written a block at a time.
_BLOCK_ROWS = 256
#: Sources measured at a time where the work arrays live in files.
_SOURCES_PER_CHUNK = 16


def _concatenate(parts: list[Any], axis: int = 0) -> Any:
    """Join per-chunk results: arrays, tuples of arrays or dicts of arrays, along ``axis``."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if isinstance(first, dict):
        return {key: np.concatenate([p[key] for p in parts], axis=axis) for key in first}
    if isinstance(first, tuple):
        return tuple(np.concatenate([p[i] for p in parts], axis=axis)
                     for i in range(len(first)))
    return np.concatenate(parts, axis=axis)


def _masked_rows(data: np.ndarray, err: np.ndarray, dq: np.ndarray | None, r0: int, r1: int
                 ) -> np.ndarray:  # fmt: skip
    """Rows ``r0:r1`` of the masked float32 image (`_masked_inputs`), their pages handed back."""
    _, image = _masked_inputs(data[r0:r1], err[r0:r1], None if dq is None else dq[r0:r1])
    release_rows(data, r0, r1)
    release_rows(err, r0, r1)
    return image


def _mask_in_rows(data: np.ndarray, err: np.ndarray, dq: np.ndarray | None) -> np.ndarray:
    """`source_mask` a block of rows at a time, the pages of the arrays handed back."""
    mask = np.empty(data.shape, dtype=bool)
    for r0 in range(0, data.shape[0], _BLOCK_ROWS):
        r1 = min(data.shape[0], r0 + _BLOCK_ROWS)
        mask[r0:r1] = _masked_inputs(data[r0:r1], err[r0:r1],
                                     None if dq is None else dq[r0:r1])[0]
        release_rows(data, r0, r1)
        release_rows(err, r0, r1)
    return mask


def _detect_in_rows(
    image_rows: Callable[[int, int], np.ndarray], mask: np.ndarray, bkg_boxsize: int,
    kernel: np.ndarray, snr_threshold: float, npixels: int, deblend: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Background, work arrays and segmentation of an image read a block of rows at a time.

    The steps of `make_source_catalog` for an image in memory, with the same numbers:
    the background meshes from one row of boxes at a time
    (`estimate_background_rows`), the background-subtracted image and its convolution
    written to files a block of rows at a time, the source pixels (convolved image
    above ``snr_threshold`` x the background RMS, outside ``mask``) decided a block at
    a time into the map, then labelled in place
    (`romancore.segmentation.label_source_pixels`). Only the mask and the map are
    whole in memory.

    Returns
    -------
    work, conv : numpy.ndarray of float64
        Background-subtracted and convolved images (in files, read at random).
    segm, labels, bbox
        As `detect_segments`.
    """
    from romancore.segmentation import label_source_pixels

    shape = mask.shape
    background, rms = estimate_background_rows(image_rows, mask, bkg_boxsize)

    def difference(r0: int, r1: int) -> np.ndarray:
        return np.subtract(image_rows(r0, r1), background.rows(r0, r1), dtype=np.float64)

    work = rows_in_file(shape, np.float64, difference, _BLOCK_ROWS, scattered_reads=True)
    # zero (astropy: NaN) only where no good pixel is under the kernel: such pixels
    # are masked, and the finder and the catalog both want them zero
    conv = convolve_masked_rows(work, kernel, mask, empty_value=0.0, rows=_BLOCK_ROWS,
                                scattered_reads=True)
    release_rows(work, 0, shape[0])
    if deblend:  # photutils' finder: the whole threshold
        threshold = rms.rows(0, shape[0])
        threshold *= snr_threshold
        segm, labels, bbox = detect_segments(conv, threshold, mask, npixels, deblend)
        release_rows(conv, 0, shape[0])
        return work, conv, segm, labels, bbox
    segm = np.empty(shape, dtype=np.int32)
    for r0 in range(0, shape[0], _BLOCK_ROWS):
        r1 = min(shape[0], r0 + _BLOCK_ROWS)
        threshold = rms.rows(r0, r1)
        threshold *= snr_threshold  # (float32, as the whole map is scaled)
        # (a float32 threshold compares as float64, as label_above_threshold does)
        above = np.greater(conv[r0:r1], threshold)
        above &= ~mask[r0:r1]
        segm[r0:r1] = above
        release_rows(conv, r0, r1)
    found = label_source_pixels(segm, npixels)
    return (work, conv, found.data, np.arange(1, found.n_labels + 1, dtype=np.int32),
            found.bbox)


def make_source_catalog(
    data: np.ndarray,
    err: np.ndarray,
    dq: np.ndarray | None = None,
    *,
    wcs: Any = None,
    conversion_megajanskys: float | None = None,
    pixel_area: float | None = None,
    bkg_boxsize: int = 1000,
    kernel_fwhm: float = 2.0,
    snr_threshold: float = 3.0,
    npixels: int = 25,
    deblend: bool = False,
    psf: Any = None,
    encircled_energy: tuple[np.ndarray, np.ndarray] | None = None,
) -> CatalogResult:
    """Detect and measure the sources of a calibrated image (romancal 1.1's algorithm).

    Parameters
    ----------
    data : numpy.ndarray
        2-D image in DN/s (not modified).
    err : numpy.ndarray
        Its total 1-sigma error (DN/s).
    dq : numpy.ndarray, optional
        Pixel DQ; ``DO_NOT_USE`` pixels are masked.
    wcs : callable, optional
        gwcs-like ``wcs(x, y) -> (ra, dec)`` in degrees with ``invert``; without it the
        sky columns are NaN and the pixel scale comes from ``pixel_area``.
    conversion_megajanskys : float, optional
        MJy/sr per DN/s (``meta.photometry.conversion_megajanskys``); without it the
        fluxes stay in DN/s.
    pixel_area : float, optional
        Pixel solid angle in sr (``meta.photometry.pixel_area``); if missing or not
        positive it is the square of the WCS pixel scale.
    bkg_boxsize, kernel_fwhm, snr_threshold, npixels, deblend
        romancal 1.1's step parameters.
    psf : EPSFGrid, optional
        The ePSF (`romancal_lite.steps.source_catalog.psf.EPSFGrid`, from the EPSF
        reference); given, every source is PSF-fit (`fit_psf_photometry`) and the
        catalog has romancal's PSF columns (``fit_psf``); None: no PSF columns.
    encircled_energy : tuple of numpy.ndarray, optional
        ``(ee_radii, ee_fractions)`` of the APCORR reference for the image's
        element (radii in pixels): ``is_extended`` and the table meta
        ``ee_fractions``; None: ``is_extended`` is all False, with a note.

    Returns
    -------
    CatalogResult
        Catalog table, segmentation map and notes; empty catalog and zero map when
        every pixel is masked or nothing is detected.

    Raises
    ------
    ValueError
        If the arrays are not 2-D with equal shapes, or no pixel scale is available.
    """
    data = np.asarray(data)
    err = np.asarray(err)
    if data.ndim != 2 or err.shape != data.shape or (dq is not None and dq.shape != data.shape):
        raise ValueError("data, err and dq must be 2-D arrays of the same shape")
    notes: list[str] = []
    fit_psf = psf is not None
    calibrated = conversion_megajanskys is not None and conversion_megajanskys > 0
    flux_unit = u.nJy if calibrated else u.DN / u.s
    if not calibrated:
        notes.append("no photometric conversion: fluxes are in DN/s")
    # a mosaic's arrays live in shared maps of files (resample): they are read a block
    # of rows at a time and their pages handed back (the data stay in the files); the
    # full-size work arrays go to files too, and only the mask and the map stay whole
    # in memory (the same values either way)
    in_files = is_file_map(data) and is_file_map(err)
    if in_files:
        mask = _mask_in_rows(data, err, dq)
    else:
        mask, image32 = _masked_inputs(data, err, dq)
    n_masked = int(mask.sum())
    empty = np.zeros(data.shape, dtype=np.uint32)
    if mask.all():
        return CatalogResult(_empty_table(flux_unit, fit_psf), empty, n_masked,
                             "all pixels are masked", notes)
    del empty
    geometry = _pixel_scale_angle(wcs, data.shape)
    if pixel_area is not None and pixel_area > 0:
        area_sr = float(pixel_area)
    elif geometry is not None:
        area_sr = (geometry[0] * u.arcsec).to_value(u.rad) ** 2
    else:
        raise ValueError("no pixel scale: the image has neither a WCS nor a pixel area")
    pixel_scale = geometry[0] if geometry is not None else math.degrees(
        math.sqrt(area_sr)) * 3600.0
    to_flux = 1.0
    if calibrated:
        # DN/s -> MJy/sr -> nJy per pixel
        to_flux = float(conversion_megajanskys) * (1.0 * u.MJy / u.sr * area_sr * u.sr).to_value(
            u.nJy)

    kernel = detection_kernel(kernel_fwhm)
    if in_files:
        def image_rows(r0: int, r1: int) -> np.ndarray:
            return _masked_rows(data, err, dq, r0, r1)

        work, conv, segm, labels, bbox = _detect_in_rows(
            image_rows, mask, bkg_boxsize, kernel, snr_threshold, npixels, deblend)
        del image_rows
    else:
        # the background from the data's own float32, as romancal (faster than float64)
        background, rms = estimate_background(image32, mask, bkg_boxsize)
        work = np.subtract(image32, background, dtype=np.float64)
        del image32, background  # (memory: the full-size maps are not needed past their use)
        # zero (astropy: NaN) only where no good pixel is under the kernel: such pixels
        # are masked, and the finder and the catalog both want them zero
        conv = convolve_masked(work, kernel, mask, empty_value=0.0)
        threshold = rms
        threshold *= snr_threshold  # in place: rms is not used again
        del rms
        segm, labels, bbox = detect_segments(conv, threshold, mask, npixels, deblend)
        del threshold
    if len(labels) == 0:
        return CatalogResult(_empty_table(flux_unit, fit_psf),
                             np.zeros(data.shape, dtype=np.uint32), n_masked,
                             "no sources detected", notes)

    from romancore.segmentation import bbox_slices

    from . import measure
    from .measure import excluded_pixels, segment_properties

    if in_files:
        def error_rows(r0: int, r1: int) -> np.ndarray:
            out = _masked_error(err[r0:r1], mask[r0:r1], data[r0:r1],
                                None if dq is None else dq[r0:r1])
            release_rows(err, r0, r1)
            release_rows(data, r0, r1)
            return out

        err64 = rows_in_file(err.shape, np.float64, error_rows, scattered_reads=True)
        del error_rows
        # (the measurements read the work arrays in small boxes around the sources)
        bad = excluded_pixels(work, mask, rows=_BLOCK_ROWS)
    else:
        err64 = _masked_error(err, mask, data, dq)  # (here: after the background's peak)
        bad = excluded_pixels(work, mask)

    def hand_back() -> None:
        """Give back the work arrays' pages read by a measurement (the files keep them)."""
        if in_files:
            for arr in (work, conv, err64):
                release_rows(arr, 0, arr.shape[0])

    def by_sources(measure: Callable[[Any], Any], axis: int = 0) -> Any:
        """``measure(k)`` for all sources ``k``; with the arrays in files, a chunk at a time.

        Each source's numbers are its own (the same for any chunking); between
        chunks the pages read go back, so that the pages around only a few dozen
        sources are resident at once (each read maps its neighbours too).
        """
        n = len(labels)
        chunk = _SOURCES_PER_CHUNK if in_files else max(n, 1)
        parts = []
        for s0 in range(0, n, chunk):
            parts.append(measure(slice(s0, min(n, s0 + chunk))))
            hand_back()
        return _concatenate(parts, axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", AstropyUserWarning)
        # SourceCatalog's segment properties (centroids, shape, area, segment flux)
        props = by_sources(lambda k: segment_properties(conv, work, err64, mask, segm,
                                                         labels[k], bbox[k]))
        xc, yc = props["x_centroid"], props["y_centroid"]
        # SourceCatalog's Kron radius/photometry, flux_radius and windowed centroids,
        # computed for all sources at once (.measure; the same numbers to ~1e-15)
        kron_image = measure.prepare_image(work, mask, segm, err64, bad=bad)
        kron_masked = measure.all_masked(kron_image, labels)
        kron = by_sources(lambda k: _kron_and_window(
            {name: v[k] for name, v in props.items()}, work, err64, mask, segm, labels[k],
            xc[k], yc[k], between=hand_back, image=kron_image, all_masked=kron_masked[k]))
        xw, yw, rhl = kron["x_win"], kron["y_win"], kron["flux_radius"]
        cols: dict[str, Any] = {"label": labels.astype(np.int32)}
        cols["flagged_spatial_id"] = np.zeros(len(labels), dtype=np.int64)
        slices = bbox_slices(bbox)
        x_err, y_err = by_sources(lambda k: isophotal_centroid_errors(
            conv, segm, mask, err64, kernel, labels[k], slices[k], xc[k], yc[k]))
        xw_err, yw_err = by_sources(lambda k: windowed_centroid_errors(
            work, segm, mask, err64, labels[k], xw[k], yw[k], rhl[k]))
        # photutils falls back to the isophotal centroid: so does its error
        reset = (xw == xc) & (yw == yc)
        xw_err[reset], yw_err[reset] = x_err[reset], y_err[reset]
        cols.update(x_centroid=xc, y_centroid=yc, x_centroid_err=x_err, y_centroid_err=y_err,
                    x_centroid_win=xw, y_centroid_win=yw,
                    x_centroid_win_err=xw_err, y_centroid_win_err=yw_err)
        if wcs is not None:
            ra_c, dec_c = _sky(wcs, xc, yc)
            ra_w, dec_w = _sky(wcs, xw, yw)
            ra_ce, dec_ce = _sky_errors(wcs, xc, yc, x_err, y_err)
            ra_we, dec_we = _sky_errors(wcs, xw, yw, xw_err, yw_err)
        else:
            ra_c = dec_c = ra_w = dec_w = ra_ce = dec_ce = ra_we = dec_we = np.full(
                len(labels), np.nan)
            notes.append("the image has no WCS: sky coordinates are NaN")
        cols.update(ra=ra_c.copy(), dec=dec_c.copy(), ra_centroid=ra_c, dec_centroid=dec_c,
                    ra_centroid_err=ra_ce, dec_centroid_err=dec_ce,
                    ra_centroid_win=ra_w, dec_centroid_win=dec_w,
                    ra_centroid_win_err=ra_we, dec_centroid_win_err=dec_we)
        for i, side in enumerate(("ymin", "ymax", "xmin", "xmax")):
            cols[f"bbox_{side}"] = bbox[:, i].astype(np.int32)
        scale2 = pixel_scale**2
        cols["segment_area"] = props["area"] * scale2
        cols["semimajor"] = props["semimajor_axis"] * pixel_scale
        cols["semiminor"] = props["semiminor_axis"] * pixel_scale
        cols["fwhm"] = props["fwhm"] * pixel_scale
        cols["ellipticity"] = props["ellipticity"]
        orient = props["orientation"]
        cols["orientation_pix"] = orient
        wcs_angle = geometry[1] if geometry is not None else np.nan
        cols["orientation_sky"] = (180.0 - wcs_angle + orient) % 360.0
        cols["cxx"] = props["ellipse_cxx"] / scale2
        cols["cxy"] = props["ellipse_cxy"] / scale2
        cols["cyy"] = props["ellipse_cyy"] / scale2
        cols["kron_radius"] = kron["kron_radius"] * pixel_scale
        xy = np.transpose([xc, yc])
        cols["nn_label"], cols["nn_distance"] = _nearest_neighbours(labels, xy, pixel_scale)
        cols["fluxfrac_radius_50"] = rhl * pixel_scale

        # circular apertures and the annulus background (at the isophotal centroids)
        # (photutils' aperture_photometry with exact circular apertures)
        from .measure import annulus_background, circular_photometry

        xy_finite = np.where(np.isfinite(xy), xy, -1000.0)
        radii = np.array(CIRCLE_APERTURE_RADII_ARCSEC) / pixel_scale
        aper_sums, aper_errs = by_sources(lambda k: circular_photometry(
            work, err64, mask, xy_finite[k, 0], xy_finite[k, 1], radii), axis=1)
        r_in, r_out = (r / pixel_scale for r in ANNULUS_RADII_ARCSEC)
        bkg_med, bkg_sem = by_sources(lambda k: annulus_background(
            work, mask, xy_finite[k, 0], xy_finite[k, 1], r_in, r_out, bad=bad))
        pix_area_arcsec2 = scale2
        cols["aper_bkg_flux"] = bkg_med * to_flux / pix_area_arcsec2
        cols["aper_bkg_flux_err"] = bkg_sem * to_flux / pix_area_arcsec2
        for i, name in enumerate(aperture_colnames()):
            cols[name] = aper_sums[i] * to_flux
            cols[f"{name}_err"] = aper_errs[i] * to_flux
        cols["segment_flux"] = props["segment_flux"] * to_flux
        cols["segment_flux_err"] = props["segment_flux_err"] * to_flux
        kron_flux = kron["kron_flux"] * to_flux
        kron_err = kron["kron_flux_err"] * to_flux
        cols["kron_flux"], cols["kron_flux_err"] = kron_flux, kron_err
        with np.errstate(invalid="ignore", divide="ignore"):
            positive = kron_flux > 0
            abmag = np.where(positive, -2.5 * np.log10(np.where(positive, kron_flux, 1.0)), np.nan)
            if flux_unit == u.nJy:
                abmag += _AB_ZEROPOINT_NJY
            cols["kron_abmag"] = abmag
            cols["kron_abmag_err"] = np.where(positive, 2.5 * np.log10(1.0 + kron_err / kron_flux),
                                              np.nan)
    cols["warning_flags"] = _warning_flags(xc, yc, dq, mask)
    cols["image_flags"] = np.zeros(len(labels), dtype=np.int32)

    # DAOFind sharpness and roundness1 at the isophotal centroids
    cols["sharpness"], cols["roundness1"] = by_sources(lambda k: daofind_measures(
        work, xc[k], yc[k], kernel_fwhm, mask=mask))
    # is_extended: more flux in 0.4" than 1.2 x a point source's, from the 0.2" flux
    ee_fractions = None
    aper02, aper04 = (np.asarray(cols[name]) for name in aperture_colnames()[1:3])
    if encircled_energy is not None:
        ee_fractions = ee_spline(*encircled_energy)(radii)
        ratio = float(ee_fractions[2] / ee_fractions[1])
        with np.errstate(invalid="ignore"):
            cols["is_extended"] = aper04 > aper02 * 1.2 * ratio
    else:
        notes.append("no APCORR encircled energy: is_extended is False for every source")
        cols["is_extended"] = np.zeros(len(labels), dtype=bool)
    # romancal reads SFD dust maps through CRDS ("dustmap"); without them: NaN
    notes.append("no dust map: dust_ebv is NaN")
    cols["dust_ebv"] = np.full(len(labels), np.nan, dtype=np.float32)

    if fit_psf:
        from .psf import fit_psf_photometry

        fit = fit_psf_photometry(work, err64, mask, xc, yc, psf)
        hand_back()
        cols.update(x_psf=fit.x, y_psf=fit.y, x_psf_err=fit.x_err, y_psf_err=fit.y_err,
                    psf_flux=fit.flux * to_flux, psf_flux_err=fit.flux_err * to_flux,
                    psf_gof=fit.gof, psf_flags=fit.flags)
        if wcs is not None:
            cols["ra_psf"], cols["dec_psf"] = _sky(wcs, fit.x, fit.y)
            cols["ra_psf_err"], cols["dec_psf_err"] = _sky_errors(
                wcs, fit.x, fit.y, fit.x_err, fit.y_err)
        else:
            for name in ("ra_psf", "dec_psf", "ra_psf_err", "dec_psf_err"):
                cols[name] = np.full(len(labels), np.nan)

    table = _empty_table(flux_unit, fit_psf)
    filled = Table()
    for name in table.colnames:
        filled[name] = np.asarray(cols[name]).astype(table[name].dtype)
        filled[name].unit = table[name].unit
    filled.meta.update(_table_meta(pixel_scale, radii, r_in, r_out, ee_fractions))
    # the labels are >= 0: the map as uint32 without a copy
    return CatalogResult(filled, segm.view(np.uint32), n_masked, None, notes)


def _warning_flags(
    xc: np.ndarray, yc: np.ndarray, dq: np.ndarray | None, mask: np.ndarray
) -> np.ndarray:
    """DO_NOT_USE where the rounded centroid is not finite or its pixel is DO_NOT_USE."""
    flags = np.full(len(xc), int(_DO_NOT_USE), dtype=np.int32)
    ok = np.isfinite(xc) & np.isfinite(yc)
    ix = np.clip(np.round(xc[ok]).astype(int), 0, mask.shape[1] - 1)
    iy = np.clip(np.round(yc[ok]).astype(int), 0, mask.shape[0] - 1)
    if dq is not None:
        flags[ok] = (dq[iy, ix] & _DO_NOT_USE).astype(np.int32)
    else:
        flags[ok] = mask[iy, ix].astype(np.int32)
    return flags


def _table_meta(pixel_scale: float, radii_pix: np.ndarray, r_in: float, r_out: float,
                ee_fractions: np.ndarray | None = None) -> dict[str, Any]:
    import astropy
    import photutils
    import scipy
    from astropy.time import Time

    from romancal_lite import __version__

    return {
        "date": Time.now().isot,
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__,
                     "astropy": astropy.__version__, "photutils": photutils.__version__,
                     "romancal_lite": __version__},
        "aperture_mask_method": "mask",
        "kron_params": list(KRON_PARAMS),
        "aperture_radii": {
            "circle_pix": [float(r) for r in radii_pix],
            "annulus_pix": [float(r_in), float(r_out)],
            "circle_arcsec": list(CIRCLE_APERTURE_RADII_ARCSEC),
            "annulus_arcsec": list(ANNULUS_RADII_ARCSEC),
        },
        "pixel_scale_arcsec": float(pixel_scale),
    } | ({} if ee_fractions is None else {
        "ee_fractions": [float(v) for v in np.asarray(ee_fractions, dtype=np.float32)]})


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    else:
        out[prefix] = str(value)


def write_parquet(table: Table, path: Any, meta: dict[str, Any] | None = None) -> Any:
    """Write the catalog as romancal's ``_cat.parquet`` (atomically).

    Each field carries ``{"unit": str(unit)}`` in its metadata (``"None"`` for a column
    without a unit, as roman_datamodels writes it); the schema metadata holds the
    flattened table meta under ``source_catalog.*`` and ``meta`` (e.g. the image's
    flat ``roman.meta.*``) as strings.

    Parameters
    ----------
    table : astropy.table.Table
        The catalog.
    path : str or path-like
        Destination; written through a temporary file and a rename (deferred inside
        `romancal_lite.datamodels.deferred_outputs`).
    meta : dict, optional
        Extra string metadata.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from romancal_lite.datamodels._files import atomic_write

    flat: dict[str, str] = {k: str(v) for k, v in (meta or {}).items()}
    for key, value in table.meta.items():
        _flatten(f"source_catalog.{key}", value, flat)
    fields = []
    arrays = []
    for name in table.colnames:
        column = table[name]
        values = np.asarray(column)
        unit = NO_UNIT if column.unit is None else str(column.unit)
        fields.append(pa.field(name, pa.from_numpy_dtype(values.dtype),
                               metadata={"unit": unit}))
        arrays.append(pa.array(values))
    # astropy's parquet reader restores the units and the table meta from this key
    from astropy.table.meta import get_yaml_from_table

    flat["table_meta_yaml"] = "\n".join(get_yaml_from_table(table))
    schema = pa.schema(fields, metadata=flat)
    arrow = pa.Table.from_arrays(arrays, schema=schema)

    def write(fh: Any) -> None:
        pq.write_table(arrow, fh, compression=None)

    return atomic_write(path, write)
