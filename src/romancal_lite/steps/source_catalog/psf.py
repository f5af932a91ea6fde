"""Vectorized PSF photometry: romancal 1.1's ``PSFPhotometry`` fit without a per-source loop.

romancal 1.1 (``source_catalog/psf.py``) fits photutils' ``GriddedPSFModel``, built
from the EPSF reference, with ``PSFPhotometry(fit_shape=(5, 5),
grouper=SourceGrouper(min_separation=5), aperture_radius=5)`` started at the
isophotal centroids, on the background-subtracted image weighted by ``1 / err``,
without a local background. This module solves the same least-squares problem:

* each source is fit on the 5 x 5 pixels around its starting position (the cutout
  does not move during the fit), trimmed at the image edges, masked pixels left out;
* sources closer than ``min_separation`` (single linkage) form a group whose members
  are fit together, the group's pixels being the concatenation of its members'
  cutouts (a pixel shared by two cutouts counts twice, as in photutils);
* the model of a group at pixel ``p`` is ``sum_j F_j S(p - r_j)``, ``S`` the ePSF
  (the PSF integrated over a pixel) interpolated with a cubic B-spline through the
  oversampled samples and bilinearly between the reference's grid positions, as
  photutils' ``GriddedPSFModel`` does (``RectBivariateSpline(kx=ky=3, s=0)``);
* ``chi2 = sum_p ((d_p - M_p) / err_p)**2`` is minimized over ``(F_j, x_j, y_j)`` by
  Levenberg-Marquardt, all groups of a size at once in numpy arrays;
* the errors are the square roots of the diagonal of ``(J^T W J)^-1`` at the minimum
  (photutils' ``param_cov`` with weights: not rescaled by the reduced chi2), and
  ``psf_gof`` is each source's ``chi2 / (n_pix - 3)`` over its own cutout.

``psf_flags`` uses photutils' bits (`PSF_FLAGS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "PSF_FLAGS",
    "EPSFGrid",
    "PSFFitResult",
    "adjust_jitter",
    "fit_psf_photometry",
]


class PSF_FLAGS:  # noqa: N801 - named as photutils' constant class
    """photutils' ``PSFPhotometry`` flag bits, which romancal writes as ``psf_flags``."""

    #: fewer pixels fit than the full 5 x 5 cutout (edge or masked pixels)
    N_PIXELS_FIT_PARTIAL = 1
    #: fitted position outside the image
    OUTSIDE_BOUNDS = 2
    #: fitted flux <= 0
    NEGATIVE_FLUX = 4
    #: the fit did not converge
    NO_CONVERGENCE = 8
    #: no parameter covariance (singular normal matrix): NaN errors
    NO_COVARIANCE = 16
    #: near a position bound (romancal sets no bounds: never set)
    NEAR_BOUND = 32
    #: the cutout does not overlap the image
    NO_OVERLAP = 64
    #: every pixel of the cutout is masked
    FULLY_MASKED = 128
    #: fewer unmasked pixels than fitted parameters
    TOO_FEW_PIXELS = 256
    #: fitted position not finite
    NON_FINITE_POSITION = 512
    #: fitted flux not finite
    NON_FINITE_FLUX = 1024
    #: local background not finite (no local background is fit: never set)
    NON_FINITE_LOCALBKG = 2048


_N_PARAMS = 3
_PAD = 2  # zero spline coefficients around each stamp


def _bspline_weights(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cubic B-spline weights of the 4 samples ``floor(u) - 1 ... + 2`` and their slopes."""
    t2 = t * t
    t3 = t2 * t
    s = 1.0 - t
    w = np.stack([s * s * s / 6.0, (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0,
                  (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0, t3 / 6.0])
    dw = np.stack([-0.5 * s * s, 1.5 * t2 - 2.0 * t, -1.5 * t2 + t + 0.5, 0.5 * t2])
    return w, dw


@dataclass
class EPSFGrid:
    """An ePSF reference ready for vectorized evaluation.

    Attributes
    ----------
    stamps : numpy.ndarray
        ``(K, ny, nx)`` oversampled ePSFs (each sums to ``oversample**2``).
    grid_x, grid_y : numpy.ndarray
        Detector position (pixels) of each stamp.
    oversample : int
        Samples per native pixel.
    """

    stamps: np.ndarray
    grid_x: np.ndarray
    grid_y: np.ndarray
    oversample: int

    def __post_init__(self) -> None:
        stamps = np.asarray(self.stamps, dtype=np.float64)
        if stamps.ndim == 2:
            stamps = stamps[np.newaxis]
        if (stamps.ndim != 3 or stamps.shape[0] != len(self.grid_x)
                or len(self.grid_x) != len(self.grid_y)):
            raise ValueError("stamps must be (K, ny, nx) with K grid positions")
        if min(stamps.shape[1:]) < 4:
            raise ValueError("ePSF stamps must be at least 4 x 4 samples")
        if not np.all(np.isfinite(stamps)):
            raise ValueError("ePSF stamps must be finite")
        self.grid_x = np.asarray(self.grid_x, dtype=np.float64)
        self.grid_y = np.asarray(self.grid_y, dtype=np.float64)
        if len(stamps) > 1 and all(np.array_equal(stamps[0], s) for s in stamps[1:]):
            # one PSF everywhere: no interpolation between grid positions
            stamps = stamps[:1]
            self.grid_x, self.grid_y = self.grid_x[:1], self.grid_y[:1]
        self.stamps = stamps
        self._xs = np.unique(self.grid_x)
        self._ys = np.unique(self.grid_y)
        if len(stamps) > 1 and len(self._xs) * len(self._ys) != len(stamps):
            raise ValueError("ePSF grid positions must form a rectangular grid")
        # interpolating cubic B-spline coefficients, zero-padded
        coeffs = [ndimage.spline_filter(s, order=3, mode="mirror") for s in stamps]
        self._coeffs = np.pad(np.array(coeffs), ((0, 0), (_PAD, _PAD), (_PAD, _PAD)))
        self._flat = self._coeffs.ravel()
        self._index = {(x, y): k for k, (x, y) in enumerate(zip(self.grid_x, self.grid_y,
                                                                    strict=True))}

    @classmethod
    def from_reference(cls, ref: Any, psf: np.ndarray | None = None) -> EPSFGrid:
        """Build the grid romancal 1.1 uses from an EPSF reference model.

        In focus (defocus index 0) and the G2V spectral type (index 1, or 0 if the
        file has one), as romancal's ``get_gridded_psf_model``; "old style" stamps
        (not integrated over the pixel, summing to about 1) are integrated with a
        box of one native pixel as romancal does.

        Parameters
        ----------
        ref : EpsfRefModel-like
            With ``psf`` (5-D) and ``meta.oversample``, ``meta.pixel_x``, ``meta.pixel_y``.
        psf : numpy.ndarray, optional
            Stamps to use instead of ``ref.psf`` (e.g. after `adjust_jitter`).

        Returns
        -------
        EPSFGrid
            The grid.
        """
        meta = ref.meta
        oversample = int(meta.oversample)
        stamps = np.asarray(ref.psf if psf is None else psf, dtype=np.float64)
        spectral = 1 if stamps.shape[1] > 1 else 0
        stamps = stamps[0, spectral].copy()
        if np.median(stamps.sum(axis=(-1, -2))) < oversample**2 / 2.0:
            box = np.ones((oversample, oversample))
            stamps = np.array([ndimage.convolve(s, box, mode="constant") for s in stamps])
        return cls(stamps, np.asarray(meta.pixel_x, float), np.asarray(meta.pixel_y, float),
                   oversample)

    # ------------------------------------------------------------ evaluation

    def _corners(self, x0: np.ndarray, y0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grid indices (n, 4) and bilinear weights (n, 4) at source positions."""
        n = len(x0)
        if len(self.stamps) == 1:
            return np.zeros((n, 1), dtype=np.intp), np.ones((n, 1))
        xs, ys = self._xs, self._ys
        ix = np.clip(np.searchsorted(xs, x0) - 1, 0, len(xs) - 2)
        iy = np.clip(np.searchsorted(ys, y0) - 1, 0, len(ys) - 2)
        xa, xb, ya, yb = xs[ix], xs[ix + 1], ys[iy], ys[iy + 1]
        xc = np.clip(x0, xa, xb)
        yc = np.clip(y0, ya, yb)
        norm = (xb - xa) * (yb - ya)
        weights = np.stack([(xb - xc) * (yb - yc), (xc - xa) * (yb - yc),
                            (xb - xc) * (yc - ya), (xc - xa) * (yc - ya)], axis=1) / norm[:, None]
        lookup = np.vectorize(lambda x, y: self._index[(x, y)], otypes=[np.intp])
        corners = np.stack([lookup(xa, ya), lookup(xb, ya), lookup(xa, yb), lookup(xb, yb)],
                           axis=1)
        return corners, weights

    def evaluate(
        self, dx: np.ndarray, dy: np.ndarray, x0: np.ndarray, y0: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the ePSF and its derivatives at pixel offsets from sources.

        Parameters
        ----------
        dx, dy : numpy.ndarray
            Pixel centre minus source position (native pixels), shape ``(n, m)``.
        x0, y0 : numpy.ndarray
            Source positions, shape ``(n,)`` (select the grid interpolation).

        Returns
        -------
        value, d_dx, d_dy : numpy.ndarray
            ``S(dx, dy)`` (fraction of the flux in the pixel) and its derivatives
            with respect to ``dx`` and ``dy``; zero outside the stamp.
        """
        os_ = self.oversample
        _, ny, nx = self.stamps.shape
        u = dx * os_ + (nx - 1) / 2.0
        v = dy * os_ + (ny - 1) / 2.0
        inside = (u >= 0) & (u <= nx - 1) & (v >= 0) & (v <= ny - 1)
        u = np.where(inside, u, 0.0)
        v = np.where(inside, v, 0.0)
        iu = np.minimum(np.floor(u).astype(np.intp), nx - 2)
        iv = np.minimum(np.floor(v).astype(np.intp), ny - 2)
        wu, dwu = _bspline_weights(u - iu)
        wv, dwv = _bspline_weights(v - iv)
        nyp, nxp = self._coeffs.shape[1:]
        offsets = (np.arange(4)[:, None] * nxp + np.arange(4)[None, :]).ravel()
        base = (iv + _PAD - 1) * nxp + (iu + _PAD - 1)
        corners, weights = self._corners(np.asarray(x0, float), np.asarray(y0, float))
        value = np.zeros(u.shape)
        d_u = np.zeros(u.shape)
        d_v = np.zeros(u.shape)
        wu, dwu = np.moveaxis(wu, 0, -1)[..., None, :], np.moveaxis(dwu, 0, -1)[..., None, :]
        wv, dwv = np.moveaxis(wv, 0, -1), np.moveaxis(dwv, 0, -1)
        for c in range(corners.shape[1]):
            start = corners[:, c] * (nyp * nxp)
            idx = (start[:, None] + base)[..., None] + offsets
            coef = self._flat[idx].reshape(*u.shape, 4, 4)  # [..., row (v), col (u)]
            w = weights[:, c][:, None]
            row_u = (coef * wu).sum(axis=-1)
            row_du = (coef * dwu).sum(axis=-1)
            value += w * (row_u * wv).sum(axis=-1)
            d_u += w * (row_du * wv).sum(axis=-1)
            d_v += w * (row_u * dwv).sum(axis=-1)
        value[~inside] = 0.0
        d_u[~inside] = 0.0
        d_v[~inside] = 0.0
        return value, d_u * os_, d_v * os_


def adjust_jitter(
    psf: np.ndarray,
    ref_jitter: tuple[float, float, float],
    image_jitter: tuple[float, float, float],
    oversample: int,
    pixel_scale: float = 0.11,
) -> np.ndarray:
    """Replace the reference's guiding jitter by the image's, as romancal's ``add_jitter``.

    The stamps are multiplied in Fourier space by ``G_image(k) / G_ref(k)``, ``G``
    the analytic transform of an elliptical Gaussian jitter kernel (major and minor
    rms in mas, position angle of the major axis from +y towards +x in degrees), so
    that a jitter far below the sample spacing is still applied exactly.

    Parameters
    ----------
    psf : numpy.ndarray
        Stamps, the last two axes ``(y, x)``.
    ref_jitter, image_jitter : tuple of float
        ``(major, minor, position_angle)`` of the reference and of the image.
    oversample : int
        Stamp samples per native pixel.
    pixel_scale : float, optional
        Native pixel scale (arcsec).

    Returns
    -------
    numpy.ndarray
        The stamps (the input itself when both jitters are equal).
    """
    if tuple(map(float, ref_jitter)) == tuple(map(float, image_jitter)):
        return psf
    shape = psf.shape[-2:]
    step = pixel_scale / oversample  # arcsec per sample
    ku = np.fft.rfftfreq(shape[1], d=step)[None, :]
    kv = np.fft.fftfreq(shape[0], d=step)[:, None]

    def transform(jitter: tuple[float, float, float]) -> np.ndarray:
        major, minor, angle = (float(v) for v in jitter)
        theta = math.pi / 2.0 - math.radians(angle)
        c, s = math.cos(theta), math.sin(theta)
        a2, b2 = (major / 1000.0) ** 2, (minor / 1000.0) ** 2
        cxx = a2 * c * c + b2 * s * s
        cyy = a2 * s * s + b2 * c * c
        cxy = (a2 - b2) * c * s
        quad = cxx * ku * ku + 2.0 * cxy * ku * kv + cyy * kv * kv
        return np.exp(-2.0 * math.pi**2 * quad)

    ratio = transform(image_jitter) / transform(ref_jitter)
    spectrum = np.fft.rfft2(psf, axes=(-2, -1))
    return np.fft.irfft2(spectrum * ratio, s=shape, axes=(-2, -1))


@dataclass
class PSFFitResult:
    """Per-source results of `fit_psf_photometry` (arrays of the input length).

    Attributes
    ----------
    x, y, flux : numpy.ndarray
        Fitted position (pixels) and flux (image units x pixel); NaN if not fit.
    x_err, y_err, flux_err : numpy.ndarray
        1-sigma errors from the fit covariance; NaN without covariance.
    gof : numpy.ndarray
        Reduced chi-square over the source's own cutout (photutils' ``reduced_chi2``).
    flags : numpy.ndarray
        int32 `PSF_FLAGS` bits.
    n_pix : numpy.ndarray
        Pixels fit in the source's own cutout.
    group_size : numpy.ndarray
        Sources fit together with this one (itself included).
    iterations : int
        Levenberg-Marquardt iterations of the slowest group.
    """

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    x_err: np.ndarray
    y_err: np.ndarray
    flux_err: np.ndarray
    gof: np.ndarray
    flags: np.ndarray
    n_pix: np.ndarray
    group_size: np.ndarray
    iterations: int = 0


def _groups(x: np.ndarray, y: np.ndarray, valid: np.ndarray, min_separation: float
            ) -> np.ndarray:
    """Group id of each valid source: single-linkage clusters within ``min_separation``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    gid = np.full(len(x), -1, dtype=np.intp)
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return gid
    pts = np.column_stack([x[idx], y[idx]])
    pairs = cKDTree(pts).query_pairs(min_separation, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                       shape=(idx.size, idx.size)) if len(pairs) else coo_matrix(
                           (idx.size, idx.size))
    _, labels = connected_components(graph, directed=False)
    gid[idx] = labels
    return gid


def fit_psf_photometry(
    data: np.ndarray,
    err: np.ndarray,
    mask: np.ndarray | None,
    x_init: np.ndarray,
    y_init: np.ndarray,
    grid: EPSFGrid,
    *,
    fit_shape: int = 5,
    min_separation: float = 5.0,
    max_iter: int = 50,
    chunk: int = 20000,
) -> PSFFitResult:
    """Fit ``flux, x, y`` of every source at once (romancal 1.1's PSF photometry).

    Parameters
    ----------
    data : numpy.ndarray
        Background-subtracted image.
    err : numpy.ndarray
        Its 1-sigma error (pixels with a non-finite or non-positive error are left out).
    mask : numpy.ndarray of bool or None
        Pixels left out of the fit.
    x_init, y_init : numpy.ndarray
        Starting positions (e.g. the isophotal centroids); NaN: not fit.
    grid : EPSFGrid
        The ePSF.
    fit_shape : int, optional
        Side of the square cutout fit around each starting position (odd).
    min_separation : float, optional
        Sources closer than this (pixels) are fit together.
    max_iter : int, optional
        Levenberg-Marquardt iteration limit (``NO_CONVERGENCE`` beyond it).
    chunk : int, optional
        Groups processed at a time (bounds the memory).

    Returns
    -------
    PSFFitResult
        Per-source values, flags and errors.
    """
    if fit_shape < 1 or fit_shape % 2 == 0:
        raise ValueError(f"fit_shape must be a positive odd integer, got {fit_shape}")
    ny, nx = data.shape
    x_init = np.asarray(x_init, dtype=np.float64)
    y_init = np.asarray(y_init, dtype=np.float64)
    n = len(x_init)
    out = PSFFitResult(*(np.full(n, np.nan) for _ in range(7)),
                       flags=np.zeros(n, dtype=np.int32), n_pix=np.zeros(n, dtype=np.int32),
                       group_size=np.zeros(n, dtype=np.int32))
    if n == 0:
        return out
    # the fixed cutouts: fit_shape x fit_shape pixels centred on the starting pixel
    half = fit_shape // 2
    finite = np.isfinite(x_init) & np.isfinite(y_init)
    xs = np.where(finite, x_init, -1e6)
    ys = np.where(finite, y_init, -1e6)
    # photutils (overlap_slices) starts the cutout at ceil(position - shape / 2)
    x0 = np.ceil(xs - fit_shape / 2.0).astype(np.int64)
    y0 = np.ceil(ys - fit_shape / 2.0).astype(np.int64)
    off = np.arange(fit_shape)
    px = np.broadcast_to((x0[:, None] + off)[:, None, :], (n, fit_shape, fit_shape))
    py = np.broadcast_to((y0[:, None] + off)[:, :, None], (n, fit_shape, fit_shape))
    px = px.reshape(n, -1)
    py = py.reshape(n, -1)
    in_image = (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
    pxc = np.clip(px, 0, nx - 1)
    pyc = np.clip(py, 0, ny - 1)
    # the usable-pixel test at the cutouts only (no full-size mask: a mosaic's work
    # arrays live in files, and only the pages around the sources are read)
    cut_d = data[pyc, pxc]
    cut_e = err[pyc, pxc]
    with np.errstate(invalid="ignore"):
        use = in_image & np.isfinite(cut_d) & np.isfinite(cut_e) & (cut_e > 0)
    if mask is not None:
        use &= ~mask[pyc, pxc]
    pix_d = np.where(use, cut_d, 0.0).astype(np.float64)
    pix_w = np.where(use, 1.0 / np.where(use, cut_e, 1.0).astype(np.float64) ** 2, 0.0)
    n_in = in_image.sum(axis=1)
    n_use = use.sum(axis=1)
    out.n_pix[:] = n_use

    flags = out.flags
    clear = half + 1
    no_overlap = finite & ((xs < -clear) | (ys < -clear) | (xs >= nx + clear)
                           | (ys >= ny + clear) | (n_in == 0))
    flags[no_overlap] |= PSF_FLAGS.NO_OVERLAP
    fully_masked = finite & ~no_overlap & (n_use == 0)
    flags[fully_masked] |= PSF_FLAGS.FULLY_MASKED
    too_few = finite & ~no_overlap & (n_use > 0) & (n_use < _N_PARAMS)
    flags[too_few] |= PSF_FLAGS.TOO_FEW_PIXELS
    valid = finite & ~no_overlap & (n_use >= _N_PARAMS)
    flags[~valid] |= PSF_FLAGS.NO_COVARIANCE

    gid = _groups(xs, ys, valid, min_separation)
    order = np.argsort(gid, kind="stable")
    order = order[gid[order] >= 0]
    if order.size:
        bounds = np.flatnonzero(np.diff(gid[order])) + 1
        members = np.split(order, bounds)
        sizes = np.array([len(m) for m in members])
        for k in np.unique(sizes):
            groups = np.array([m for m, s in zip(members, sizes, strict=True) if s == k])
            for start in range(0, len(groups), chunk):
                its = _fit_groups(groups[start:start + chunk], pix_d, pix_w, px, py,
                                  xs, ys, grid, out, max_iter)
                out.iterations = max(out.iterations, its)
        out.group_size[order] = np.repeat(sizes, sizes)

    flags[(out.n_pix < fit_shape * fit_shape)] |= PSF_FLAGS.N_PIXELS_FIT_PARTIAL
    with np.errstate(invalid="ignore"):
        flags[(out.x < -0.5) | (out.y < -0.5) | (out.x > nx - 0.5) | (out.y > ny - 0.5)] |= (
            PSF_FLAGS.OUTSIDE_BOUNDS)
        flags[out.flux <= 0] |= PSF_FLAGS.NEGATIVE_FLUX
    flags[~np.isfinite(out.x) | ~np.isfinite(out.y)] |= PSF_FLAGS.NON_FINITE_POSITION
    flags[~np.isfinite(out.flux)] |= PSF_FLAGS.NON_FINITE_FLUX
    return out


def _fit_groups(
    groups: np.ndarray,
    pix_d: np.ndarray,
    pix_w: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    x_init: np.ndarray,
    y_init: np.ndarray,
    grid: EPSFGrid,
    out: PSFFitResult,
    max_iter: int,
) -> int:
    """Levenberg-Marquardt on ``ng`` groups of ``k`` sources; fills ``out`` in place."""
    ng, k = groups.shape
    m = pix_d.shape[1]
    # the group's pixels: its members' cutouts, concatenated -> (ng, k*m)
    d = pix_d[groups].reshape(ng, k * m)
    w = pix_w[groups].reshape(ng, k * m)
    gx = px[groups].reshape(ng, 1, k * m).astype(np.float64)
    gy = py[groups].reshape(ng, 1, k * m).astype(np.float64)
    xs = x_init[groups].copy()
    ys = y_init[groups].copy()
    n_par = 3 * k

    # starting fluxes: linear least squares with the positions fixed
    _, jac0 = _group_model(grid, gx, gy, np.ones((ng, k)), xs, ys)
    basis = jac0[:, 0::3, :]  # (ng, k, k*m): the unit-flux models
    normal = np.einsum("gip,gp,gjp->gij", basis, w, basis)
    rhs = np.einsum("gip,gp,gp->gi", basis, w, d)
    normal += np.eye(k) * (1e-12 * np.abs(np.diagonal(normal, axis1=1, axis2=2)).max(
        axis=1, initial=0.0)[:, None, None] + 1e-300)
    with np.errstate(all="ignore"):
        flux = np.linalg.solve(normal, rhs[..., None])[..., 0]
    flux = np.where(np.isfinite(flux), flux, 0.0)

    mod, jac = _group_model(grid, gx, gy, flux, xs, ys)
    chi2 = (w * (d - mod) ** 2).sum(axis=1)
    lam = np.full(ng, 1e-3)
    active = np.ones(ng, dtype=bool)
    converged = np.zeros(ng, dtype=bool)
    iterations = 0
    eye = np.eye(n_par)
    for iterations in range(1, max_iter + 1):  # noqa: B007 - used after the loop
        a_idx = np.flatnonzero(active)
        if a_idx.size == 0:
            break
        ja = jac[a_idx]
        wa = w[a_idx]
        ra = d[a_idx] - mod[a_idx]
        alpha = np.einsum("gip,gp,gjp->gij", ja, wa, ja)
        beta = np.einsum("gip,gp,gp->gi", ja, wa, ra)
        diag = np.diagonal(alpha, axis1=1, axis2=2)
        scale = np.maximum(diag, 1e-12 * diag.max(axis=1, keepdims=True) + 1e-300)
        damped = alpha + lam[a_idx, None, None] * scale[:, :, None] * eye
        with np.errstate(all="ignore"):
            step = np.linalg.solve(damped, beta[..., None])[..., 0]
        step = np.where(np.isfinite(step), step, 0.0)
        # at most one pixel per iteration in position
        dpos = np.abs(step.reshape(-1, k, 3)[:, :, 1:]).max(axis=(1, 2))
        step *= np.minimum(1.0, 1.0 / np.maximum(dpos, 1e-300))[:, None]
        st = step.reshape(-1, k, 3)
        f_t = flux[a_idx] + st[:, :, 0]
        x_t = xs[a_idx] + st[:, :, 1]
        y_t = ys[a_idx] + st[:, :, 2]
        # evaluate the trial on the active groups only
        mod_t, jac_t = _group_model(grid, gx[a_idx], gy[a_idx], f_t, x_t, y_t)
        chi2_t = (wa * (d[a_idx] - mod_t) ** 2).sum(axis=1)
        better = chi2_t <= chi2[a_idx]
        acc = a_idx[better]
        flux[acc], xs[acc], ys[acc] = f_t[better], x_t[better], y_t[better]
        mod[acc], jac[acc] = mod_t[better], jac_t[better]
        old_chi2 = chi2[acc]
        chi2[acc] = chi2_t[better]
        lam[acc] = np.maximum(lam[acc] / 10.0, 1e-9)
        lam[a_idx[~better]] *= 10.0
        small = (np.abs(st[:, :, 1:]).max(axis=(1, 2)) < 1e-5) & (
            np.abs(st[:, :, 0]) <= 1e-7 * np.abs(f_t) + 1e-300).all(axis=1)
        flat = (old_chi2 - chi2[acc]) <= 1e-10 * np.maximum(old_chi2, 1e-300)
        done = np.zeros(a_idx.size, dtype=bool)
        done[better] = small[better] | flat
        # a rejected step that is already negligible: at the minimum
        done[~better] |= small[~better] | (lam[a_idx[~better]] > 1e10)
        converged[a_idx[done]] = True
        active[a_idx[done]] = False

    # covariance: the undamped normal matrix at the minimum
    alpha = np.einsum("gip,gp,gjp->gij", jac, w, jac)
    with np.errstate(all="ignore"):
        try:
            cov = np.linalg.inv(alpha)
        except np.linalg.LinAlgError:
            cov = np.stack([_safe_inv(a) for a in alpha])
        var = np.diagonal(cov, axis1=1, axis2=2).reshape(ng, k, 3)
    cond_ok = np.all(np.isfinite(var), axis=(1, 2)) & np.all(var > 0, axis=(1, 2))
    sig = np.where(cond_ok[:, None, None], np.sqrt(np.where(var > 0, var, np.nan)), np.nan)

    resid = (w * (d - mod) ** 2).reshape(ng, k, m).sum(axis=2)
    src = groups.ravel()
    out.flux[src] = flux.ravel()
    out.x[src] = xs.ravel()
    out.y[src] = ys.ravel()
    out.flux_err[src] = sig[:, :, 0].ravel()
    out.x_err[src] = sig[:, :, 1].ravel()
    out.y_err[src] = sig[:, :, 2].ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = out.n_pix[src].astype(np.float64) - _N_PARAMS
        out.gof[src] = np.where(dof > 0, resid.ravel() / dof, np.nan)
    out.flags[src[~np.repeat(cond_ok, k)]] |= PSF_FLAGS.NO_COVARIANCE
    out.flags[src[~np.repeat(converged, k)]] |= PSF_FLAGS.NO_CONVERGENCE
    return iterations


def _safe_inv(a: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.inv(a)
    except np.linalg.LinAlgError:
        return np.full(a.shape, np.nan)


def _group_model(grid: EPSFGrid, gx: np.ndarray, gy: np.ndarray, flux: np.ndarray,
                 x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model ``(ng, P)`` of groups of ``k`` sources at their pixels and its Jacobian.

    ``gx, gy`` are ``(ng, 1, P)`` pixel coordinates, ``flux, x, y`` ``(ng, k)``;
    the Jacobian is ``(ng, 3k, P)`` with the columns ``F, x, y`` of each source.
    """
    ng, k = flux.shape
    npix = gx.shape[-1]
    s, sx, sy = grid.evaluate((gx - x[:, :, None]).reshape(ng * k, npix),
                              (gy - y[:, :, None]).reshape(ng * k, npix),
                              x.ravel(), y.ravel())
    s = s.reshape(ng, k, npix)
    f = flux[:, :, None]
    jac = np.stack([s, -f * sx.reshape(ng, k, npix), -f * sy.reshape(ng, k, npix)],
                   axis=2).reshape(ng, 3 * k, npix)
    return (f * s).sum(axis=1), jac
