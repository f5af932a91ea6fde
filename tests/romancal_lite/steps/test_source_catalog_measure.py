"""The vectorized SourceCatalog photometry against photutils itself."""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
import pytest

from romancal_lite.steps.source_catalog import measure

photutils = pytest.importorskip("photutils")

KRON = (2.5, 1.4, 0.0)
RADII = (0.1 / 0.11, 0.2 / 0.11, 0.4 / 0.11, 0.8 / 0.11, 1.6 / 0.11)


def _scene(seed: int, shape: tuple[int, int] = (360, 400), n_stars: int = 260):
    """Stars (some blended, some at the edges), galaxies, noise and masked pixels."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    data = np.zeros(shape)
    x = rng.uniform(-2, nx + 1, n_stars)
    y = rng.uniform(-2, ny + 1, n_stars)
    # close pairs (blends) and sources straddling the edges
    x[:20] = x[20:40] + rng.uniform(2, 5, 20)
    y[:20] = y[20:40] + rng.uniform(-2, 2, 20)
    x[40:50] = rng.uniform(-1, 1.5, 10)
    y[50:60] = ny - 1 + rng.uniform(-1.5, 1, 10)
    flux = 10 ** rng.uniform(1.5, 4, n_stars)
    sig = rng.uniform(1.1, 1.5, n_stars)
    for xi, yi, fi, si in zip(x, y, flux, sig, strict=True):
        y0, y1 = max(int(yi) - 12, 0), min(int(yi) + 13, ny)
        x0, x1 = max(int(xi) - 12, 0), min(int(xi) + 13, nx)
        if y0 >= y1 or x0 >= x1:
            continue
        r2 = (xx[y0:y1, x0:x1] - xi) ** 2 + (yy[y0:y1, x0:x1] - yi) ** 2
        data[y0:y1, x0:x1] += fi / (2 * np.pi * si**2) * np.exp(-r2 / (2 * si**2))
    for _ in range(12):  # extended elliptical sources
        xi, yi = rng.uniform(20, nx - 20), rng.uniform(20, ny - 20)
        a, b, th = rng.uniform(3, 7), rng.uniform(1.5, 3), rng.uniform(0, np.pi)
        dx, dy = xx - xi, yy - yi
        u_ = dx * np.cos(th) + dy * np.sin(th)
        v_ = -dx * np.sin(th) + dy * np.cos(th)
        data += rng.uniform(5, 30) * np.exp(-0.5 * ((u_ / a) ** 2 + (v_ / b) ** 2))
    err = np.full(shape, 0.5) + 0.05 * np.sqrt(np.abs(data))
    data += rng.normal(0, 0.5, shape)
    mask = rng.random(shape) < 0.003
    mask[100:103, 50:90] = True  # a bad column segment through sources
    mask[:, nx - 1] |= rng.random(ny) < 0.3
    data[mask] = np.nan
    err[mask] = np.nan
    return data, err, mask


def _catalog(data, err, mask, threshold=1.5, n_pixels=9):
    from photutils.segmentation import SourceCatalog, SourceFinder, make_2dgaussian_kernel
    from scipy import ndimage

    kernel = make_2dgaussian_kernel(2.0, size=7).array
    conv = ndimage.convolve(np.where(mask, 0.0, data), kernel, mode="constant")
    segm = SourceFinder(n_pixels=n_pixels, deblend=True, contrast=1e-3, progress_bar=False)(
        conv, threshold, mask=mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cat = SourceCatalog(data, segm, convolved_data=conv, error=err, mask=mask,
                            aperture_mask_method="mask", kron_params=KRON)
    return cat, segm


#: (seed, detection threshold, n_pixels): two bright scenes, and one detected down in
#: the noise (many faint, negative-flux and noise segments: minimum Kron radii, no
#: flux_radius root, windowed centroids reset to the isophotal one).
SCENES = [(1, 1.5, 9), (2, 1.5, 9), (3, 0.18, 5)]


@pytest.fixture(scope="module", params=SCENES, ids=["bright1", "bright2", "noisy"])
def scene(request):
    seed, threshold, n_pixels = request.param
    data, err, mask = _scene(seed)
    cat, segm = _catalog(data, err, mask, threshold, n_pixels)
    shape = {
        "labels": np.asarray(cat.labels),
        "x": np.asarray(cat.x_centroid, float),
        "y": np.asarray(cat.y_centroid, float),
        "a": u.Quantity(cat.semimajor_axis).value,
        "b": u.Quantity(cat.semiminor_axis).value,
        "theta": u.Quantity(cat.orientation, u.deg).value,
        "cxx": u.Quantity(cat.ellipse_cxx).value,
        "cxy": u.Quantity(cat.ellipse_cxy).value,
        "cyy": u.Quantity(cat.ellipse_cyy).value,
        "noisy": threshold < 1,
    }
    return data, err, mask, cat, segm, shape


def _close(ours, ref, rtol, atol=0.0):
    ours = np.asarray(ours, float)
    ref = np.asarray(ref, float)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=rtol, atol=atol)


def _kron(data, err, mask, segm, s):
    image = measure.prepare_image(data, mask, segm.data, err)
    kr = measure.kron_radius(image, None, None, s["labels"], s["x"], s["y"], s["a"], s["b"],
                             s["theta"], s["cxx"], s["cxy"], s["cyy"], kron_params=KRON)
    flux, flux_err = measure.kron_photometry(image, None, None, None, s["labels"], s["x"],
                                             s["y"], s["a"], s["b"], s["theta"], kr,
                                             kron_params=KRON)
    return image, kr, flux, flux_err


def test_scene_is_realistic(scene):
    data, err, mask, cat, segm, s = scene
    assert len(s["labels"]) > 150
    x = s["x"]
    assert np.sum((x < 3) | (x > data.shape[1] - 4)) >= 3  # edge sources


def test_kron_radius_and_flux(scene):
    data, err, mask, cat, segm, s = scene
    _, kr, flux, flux_err = _kron(data, err, mask, segm, s)
    # the same sums in a different order: rounding only
    _close(kr, u.Quantity(cat.kron_radius).value, rtol=1e-12)
    # exact pixel overlaps computed by another formula: ~1e-15 per pixel
    _close(flux, np.asarray(cat.kron_flux), rtol=1e-10, atol=1e-9)
    _close(flux_err, np.asarray(cat.kron_flux_err), rtol=1e-10)


def test_flux_radius(scene):
    data, err, mask, cat, segm, s = scene
    image, kr, flux, _ = _kron(data, err, mask, segm, s)
    rmax = measure.max_flux_radius(s["a"], kr, KRON)
    ours = measure.flux_radius(image, None, None, s["labels"], s["x"], s["y"], flux, rmax,
                               0.5)
    ref = u.Quantity(cat.flux_radius(0.5)).value
    # Brent stops within 2e-12 pixel of the root
    _close(ours, ref, rtol=1e-9, atol=1e-9)
    assert np.isfinite(ref).sum() > 100


def test_windowed_centroids(scene):
    data, err, mask, cat, segm, s = scene
    rhl = u.Quantity(cat.flux_radius(0.5)).value
    xw, yw = measure.windowed_centroids(data, mask, segm.data, s["labels"], s["x"], s["y"],
                                        rhl, s["cxx"], s["cxy"], s["cyy"])
    _close(xw, np.asarray(cat.x_centroid_win), rtol=0, atol=1e-9)
    _close(yw, np.asarray(cat.y_centroid_win), rtol=0, atol=1e-9)
    if s["noisy"]:  # the fallbacks are exercised
        assert np.sum(np.asarray(cat.x_centroid_win) == s["x"]) > 50
        assert np.isnan(rhl).sum() >= 3
        assert np.sum(u.Quantity(cat.kron_radius).value == KRON[1]) > 500


def test_circular_photometry(scene):
    from photutils.aperture import CircularAperture, aperture_photometry

    data, err, mask, cat, segm, s = scene
    xy = np.transpose([s["x"], s["y"]])
    xy = np.where(np.isfinite(xy), xy, -1000.0)
    phot = aperture_photometry(data, [CircularAperture(xy, r) for r in RADII], error=err,
                               mask=mask)
    sums, errs = measure.circular_photometry(data, err, mask, xy[:, 0], xy[:, 1], RADII)
    for k in range(len(RADII)):
        _close(sums[k], phot[f"aperture_sum_{k}"], rtol=1e-10, atol=1e-9)
        _close(errs[k], phot[f"aperture_sum_err_{k}"], rtol=1e-10, atol=1e-9)


def test_circular_photometry_edges():
    from photutils.aperture import CircularAperture, aperture_photometry

    rng = np.random.default_rng(5)
    data = rng.normal(10, 1, (40, 50))
    err = np.full(data.shape, 0.7)
    mask = np.zeros(data.shape, bool)
    mask[18:23, 28:33] = True  # an all-masked small aperture
    x = np.array([0.0, -0.4, 49.3, 25.0, 30.0, 30.2, -30.0, np.nan, 12.5])
    y = np.array([0.0, 20.0, 39.6, 20.0, 20.0, 20.1, 10.0, 5.0, 40.49])
    radii = (0.5, 1.0, 3.3)
    sums, errs = measure.circular_photometry(data, err, mask, x, y, radii)
    xy = np.transpose([np.where(np.isfinite(x), x, -1000.0), y])
    phot = aperture_photometry(data, [CircularAperture(xy, r) for r in radii], error=err,
                               mask=mask)
    for k in range(len(radii)):
        _close(sums[k], phot[f"aperture_sum_{k}"], rtol=1e-12, atol=1e-12)
        _close(errs[k], phot[f"aperture_sum_err_{k}"], rtol=1e-12, atol=1e-12)
    assert sums[0, 4] == 0.0 and errs[0, 4] == 0.0  # all masked: photutils' empty sum
    assert np.isnan(sums[:, 6]).all() and np.isnan(sums[:, 7]).all()  # off image / NaN
    # the exact overlap sums to the circle's area inside the image
    ones, _ = measure.circular_photometry(np.ones((60, 60)), None, None, [30.3], [29.8],
                                          [7.25])
    np.testing.assert_allclose(ones[0, 0], np.pi * 7.25**2, rtol=1e-13)


def test_nan_positions_and_all_masked():
    rng = np.random.default_rng(3)
    data = rng.normal(0, 1, (30, 30))
    segm = np.zeros(data.shape, np.int32)
    segm[5:10, 5:10] = 1
    segm[15:25, 15:25] = 2
    mask = np.zeros(data.shape, bool)
    mask[5:10, 5:10] = True  # source 1 entirely masked
    labels = np.array([1, 2])
    x = np.array([7.0, np.nan])
    y = np.array([7.0, 20.0])
    ones = np.ones(2)
    kr = measure.kron_radius(data, mask, segm, labels, x, y, ones, ones, np.zeros(2),
                             ones, np.zeros(2), ones)
    assert np.isnan(kr).all()
    flux, flux_err = measure.kron_photometry(data, np.ones_like(data), mask, segm, labels,
                                             x, y, ones, ones, np.zeros(2), ones * 2)
    assert np.isnan(flux).all() and np.isnan(flux_err).all()
    # no Kron flux, or no position: NaN; a zero Kron flux: NaN
    r = measure.flux_radius(data, mask, segm, labels, x, y, np.array([np.nan, 1.0]),
                            ones * 5)
    assert np.isnan(r).all()
    r = measure.flux_radius(data, mask, segm, labels, y, y, np.array([0.0, 1.0]), ones * 5)
    assert np.isnan(r[0]) and np.isfinite(r[1])
    xw, yw = measure.windowed_centroids(data, mask, segm, labels, x, y, np.array([1.0, 2.0]),
                                        ones, np.zeros(2), ones)
    # a NaN position fails: photutils falls back to the (NaN) isophotal centroid
    assert np.isnan(xw[1]) and yw[1] == 20.0
    # source 1 has no usable pixel: zero weights -> back to the isophotal centroid
    assert (xw[0], yw[0]) == (7.0, 7.0)
    # NaN half-light radius -> NaN
    xw, _ = measure.windowed_centroids(data, mask, segm, labels, x, y,
                                       np.array([np.nan, 1.0]), ones, np.zeros(2), ones)
    assert np.isnan(xw).all()


def test_empty_and_invalid_inputs():
    data = np.zeros((10, 10))
    segm = np.zeros((10, 10), np.int32)
    empty = np.zeros(0)
    assert measure.kron_radius(data, None, segm, np.zeros(0, int), empty, empty, empty,
                               empty, empty, empty, empty, empty).shape == (0,)
    with pytest.raises(ValueError, match="shape"):
        measure.prepare_image(data, np.zeros((3, 3), bool), segm)
    with pytest.raises(ValueError, match="fraction"):
        measure.flux_radius(data, None, segm, [1], [1.0], [1.0], [1.0], [1.0], 0.0)
    with pytest.raises(ValueError, match="radii"):
        measure.circular_photometry(data, None, None, [1.0], [1.0], [0.0])


def test_segment_properties(scene):
    """Centroids, shape, area and segment fluxes equal SourceCatalog's (deblended maps)."""
    data, err, mask, cat, segm, s = scene
    from photutils.segmentation import make_2dgaussian_kernel
    from scipy import ndimage

    conv = ndimage.convolve(np.where(mask, 0.0, data),
                            make_2dgaussian_kernel(2.0, size=7).array, mode="constant")
    bbox = np.array([(sl[0].start, sl[0].stop - 1, sl[1].start, sl[1].stop - 1)
                     for sl in segm.slices])
    labels = np.asarray(segm.labels, dtype=np.int32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = measure.segment_properties(conv, data, err, mask,
                                          np.ascontiguousarray(segm.data, np.int32),
                                          labels, bbox)
        for name, value in ours.items():
            ref = np.asarray(u.Quantity(getattr(cat, name)).value, dtype=float)
            if name == "area":
                np.testing.assert_array_equal(value, ref, err_msg=name)
            elif name in ("segment_flux", "segment_flux_err"):
                # the same values summed in raster order (NumPy's reduceat may pair them)
                _close(value, ref, rtol=1e-13)
            else:
                # moments by loops instead of matrix products: rounding only
                # (near-zero off-diagonal terms carry the absolute error)
                _close(value, ref, rtol=1e-9, atol=1e-12)
    assert np.isfinite(ours["semimajor_axis"]).all()


def test_segment_properties_thin_sources():
    """A one-pixel-wide line and a single pixel: SourceExtractor's 1/12 increments."""
    from photutils.segmentation import SegmentationImage, SourceCatalog

    data = np.zeros((7, 9))
    segm = np.zeros((7, 9), dtype=np.int32)
    data[2, 1:7] = [1.0, 2.0, 4.0, 3.0, 1.0, 0.5]
    segm[2, 1:7] = 1
    data[5, 7] = 2.0
    segm[5, 7] = 2
    mask = np.zeros(data.shape, dtype=bool)
    ours = measure.segment_properties(data, data, np.ones_like(data), mask, segm,
                                      np.array([1, 2], np.int32),
                                      np.array([[2, 2, 1, 6], [5, 5, 7, 7]]))
    cat = SourceCatalog(data, SegmentationImage(segm), convolved_data=data,
                        error=np.ones_like(data), mask=mask)
    assert ours["covariance"][1, 0, 0] == pytest.approx(1 / 12)  # one increment
    assert ours["covariance"][0, 1, 1] == pytest.approx(1 / 12)
    for name, value in ours.items():
        _close(value, np.asarray(u.Quantity(getattr(cat, name)).value, dtype=float),
               rtol=1e-12, atol=1e-14)


def test_segment_properties_all_masked_segment():
    """A segment whose pixels are all masked: NaN centroid, area and fluxes."""
    segm = np.zeros((6, 6), dtype=np.int32)
    segm[1:3, 1:3] = 1
    segm[3:5, 3:6] = 2
    data = np.arange(36, dtype=float).reshape(6, 6)
    mask = np.zeros((6, 6), dtype=bool)
    mask[1:3, 1:3] = True
    props = measure.segment_properties(data, data, np.ones((6, 6)), mask, segm,
                                       np.array([1, 2], np.int32),
                                       np.array([[1, 2, 1, 2], [3, 4, 3, 5]]))
    for name in ("x_centroid", "area", "segment_flux", "segment_flux_err", "semimajor_axis"):
        assert np.isnan(props[name][0]), name
    assert props["area"][1] == 6
    assert props["segment_flux"][1] == data[3:5, 3:6].sum()
    np.testing.assert_allclose(props["segment_flux_err"][1], np.sqrt(6))


def test_excluded_pixels_in_row_blocks_and_given_bad():
    """excluded_pixels a block of rows at a time is the one pass; a given ``bad`` is used
    as is by prepare_image and annulus_background (the same numbers)."""
    from romancal_lite.steps._arrays import file_array
    from romancal_lite.steps.source_catalog import measure

    rng = np.random.default_rng(3)
    data = rng.normal(size=(70, 90))
    data[rng.random(data.shape) < 0.05] = np.nan
    data[5, 7] = np.inf
    mask = rng.random(data.shape) < 0.05
    in_file = file_array(data.shape, np.float64)
    in_file[...] = data
    whole = measure.excluded_pixels(data, mask)
    np.testing.assert_array_equal(whole, ~np.isfinite(data) | mask)
    np.testing.assert_array_equal(measure.excluded_pixels(in_file, mask, rows=16), whole)
    np.testing.assert_array_equal(measure.excluded_pixels(data, None, rows=9),
                                  ~np.isfinite(data))
    segm = np.zeros(data.shape, dtype=np.int32)
    segm[20:30, 20:30] = 1
    image = measure.prepare_image(data, None, segm, bad=whole)
    np.testing.assert_array_equal(image.bad.view(bool), whole)
    x, y = np.array([25.0, 60.0]), np.array([25.0, 40.0])
    np.testing.assert_array_equal(
        measure.annulus_background(data, mask, x, y, 3.0, 8.0),
        measure.annulus_background(data, np.zeros_like(mask), x, y, 3.0, 8.0, bad=whole))
