"""romancore.drizzle: hand cases, the drizzle package (2.2) on random pixel maps, threads."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from romancore import drizzle as rd

drizzle_resample = pytest.importorskip("drizzle.resample")


def _pixmap(shape, angle=0.0, scale=1.0, shift=(0.0, 0.0), warp=0.0, nan_box=None):
    """Rotation + scale + shift (+ a small quadratic warp) of pixel centres."""
    ny, nx = shape
    y, x = np.indices(shape, dtype=np.float64)
    a = math.radians(angle)
    xc, yc = x - nx / 2, y - ny / 2
    px = scale * (math.cos(a) * xc - math.sin(a) * yc) + nx / 2 + shift[0] + warp * xc * yc
    py = scale * (math.sin(a) * xc + math.cos(a) * yc) + ny / 2 + shift[1] + warp * xc * xc
    pixmap = np.ascontiguousarray(np.dstack([px, py]))
    if nan_box is not None:
        pixmap[nan_box] = np.nan
    return pixmap


def _inputs(rng, shape, *, nan_fraction=0.02, zero_fraction=0.1):
    data = rng.normal(10.0, 3.0, shape).astype(np.float32)
    weight = rng.uniform(0.5, 2.0, shape).astype(np.float32)
    weight[rng.random(shape) < zero_fraction] = 0
    nan = rng.random(shape) < nan_fraction
    data[nan] = np.nan
    weight[nan] = 0  # as the resample step's weights: a NaN datum is never used
    return data, weight


def _reference(images, out_shape, kernel, pixfrac, ratio, fillval=0.0):
    """The drizzle package: several add_image calls on one Drizzle."""
    driz = drizzle_resample.Drizzle(kernel=kernel, out_shape=out_shape, fillval=fillval)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for data, weight, pixmap in images:
            driz.add_image(data, exptime=1.0, pixmap=pixmap, weight_map=weight, pixfrac=pixfrac,
                           pixel_scale_ratio=ratio, iscale=1.0, in_units="cps")  # fmt: skip
    return driz


def _ours(images, out_shape, kernel, pixfrac, ratio, *, n_threads=None, band_rows=8):
    out = np.zeros(out_shape, np.float32)
    wht = np.zeros(out_shape, np.float32)
    ctx = np.zeros(out_shape, np.uint32)
    for bit, (data, weight, pixmap) in enumerate(images):
        rd.add_image(data, pixmap, out, wht, weight=weight, kernel=kernel, pixfrac=pixfrac,
                     pixel_scale_ratio=ratio, out_ctx=ctx, ctx_bit=bit, band_rows=band_rows,
                     n_threads=n_threads)  # fmt: skip
    return out, wht, ctx


CASES = [
    # angle, scale, shift, warp, out_shape: covering, partial, rotated + scaled, warped
    (0.0, 1.0, (0.3, -0.2), 0.0, (48, 52)),
    (7.0, 1.1, (3.3, -2.2), 1e-4, (64, 66)),
    (33.0, 0.8, (-9.0, 14.0), 0.0, (40, 45)),  # much of the input falls off the output
    (-20.0, 1.4, (25.0, -6.0), 3e-4, (70, 90)),
    (0.3, 1.0, (180.6, 140.2), 0.0, (230, 260)),  # far from the output's origin
]


@pytest.mark.parametrize("kernel", rd.KERNELS)
@pytest.mark.parametrize("pixfrac", [1.0, 0.6, 1.5])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_equals_drizzle_package(kernel, pixfrac, case):
    rng = np.random.default_rng(100 + case)
    angle, scale, shift, warp, out_shape = CASES[case]
    shape = (44, 50)
    images = []
    for k in range(3):  # three inputs onto one output: the running weighted mean
        data, weight = _inputs(rng, shape)
        nan_box = (slice(0, 6), slice(10, 20)) if k == 1 else None
        pixmap = _pixmap(shape, angle + 2 * k, scale, (shift[0] + 1.7 * k, shift[1] - 0.9 * k),
                         warp, nan_box)  # fmt: skip
        images.append((data, weight, pixmap))
    ref = _reference(images, out_shape, kernel, pixfrac, 1.0 / scale)
    out, wht, ctx = _ours(images, out_shape, kernel, pixfrac, 1.0 / scale)
    assert np.array_equal(wht != 0, ref.out_wht != 0)
    assert (ref.out_wht != 0).sum() > 100
    np.testing.assert_allclose(wht, ref.out_wht, rtol=2e-6, atol=1e-6)
    # the data: float32 rounding of a weighted mean of values ~10
    assert np.array_equal(np.isnan(out), np.isnan(ref.out_img))
    np.testing.assert_allclose(out, ref.out_img, rtol=0, atol=2e-5, equal_nan=True)
    assert np.array_equal(ctx, ref.out_ctx[0])


def test_box_limits_and_empty_overlap():
    rng = np.random.default_rng(5)
    shape = (30, 40)
    data, weight = _inputs(rng, shape)
    pixmap = _pixmap(shape, 12.0, 1.0, (4.0, 2.0))
    out_shape = (36, 46)
    driz = drizzle_resample.Drizzle(kernel="square", out_shape=out_shape, fillval=0.0)
    driz.add_image(data, exptime=1.0, pixmap=pixmap, weight_map=weight, xmin=5, xmax=30,
                   ymin=3, ymax=20)  # fmt: skip
    out = np.zeros(out_shape, np.float32)
    wht = np.zeros(out_shape, np.float32)
    assert rd.add_image(data, pixmap, out, wht, weight=weight, xmin=5, xmax=30, ymin=3, ymax=20)
    np.testing.assert_allclose(wht, driz.out_wht, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(out, driz.out_img, atol=2e-5)
    # entirely off the output: nothing lands, nothing changes
    far = _pixmap(shape, 0.0, 1.0, (500.0, 500.0))
    out2 = np.zeros(out_shape, np.float32)
    wht2 = np.zeros(out_shape, np.float32)
    assert not rd.add_image(data, far, out2, wht2, weight=weight)
    assert not wht2.any() and not out2.any()


def test_by_hand_shift_by_half_a_pixel():
    # a 4x4 image shifted by +0.5 in x onto a 4x5 grid: every output pixel of a row
    # gets half of two neighbours (the two ends half of one)
    data = np.arange(16, dtype=np.float32).reshape(4, 4)
    y, x = np.indices((4, 4), dtype=np.float64)
    pixmap = np.ascontiguousarray(np.dstack([x + 0.5, y]))
    out = np.zeros((4, 5), np.float32)
    wht = np.zeros((4, 5), np.float32)
    rd.add_image(data, pixmap, out, wht)
    np.testing.assert_allclose(wht[1], [0.5, 1, 1, 1, 0.5])
    np.testing.assert_allclose(out[1], [4, 4.5, 5.5, 6.5, 7])


def _numpy_variances(images, out_shape, pixfrac, weight_type, exptime):
    """The resample step's recipe with the drizzle package: sqrt(v) drizzled, squared,
    S += r w^2, W += w (ivm: w = 1/r_rnoise)."""
    s = [np.full(out_shape, np.nan, np.float32) for _ in range(2)]
    w_sum = [np.zeros(out_shape, np.float32) for _ in range(2)]
    for data, weight, pixmap, variances in images:
        rs = []
        for v in variances:
            with np.errstate(invalid="ignore"):
                root = np.sqrt(np.broadcast_to(np.float32(v), data.shape).astype(np.float32))
            driz = _reference([(np.ascontiguousarray(root), weight, pixmap)], out_shape,
                              "square", pixfrac, 1.0, fillval=np.nan)  # fmt: skip
            rs.append(np.square(driz.out_img))
        if weight_type == "ivm":
            vw = np.zeros(out_shape, np.float32)
            ok = (rs[0] > 0) & np.isfinite(rs[0])
            vw[ok] = np.reciprocal(rs[0][ok])
        else:
            vw = np.full(out_shape, np.float32(exptime))
        for k, r in enumerate(rs):
            with np.errstate(invalid="ignore"):
                ok = (r >= 0) & np.isfinite(r) & (vw > 0)
                c = r * vw * vw
            s[k] = np.where(ok, np.where(np.isnan(s[k]), c, s[k] + c), s[k])
            w_sum[k] += np.where(ok, vw, np.float32(0))
    return s, w_sum


@pytest.mark.parametrize("weight_type", ["ivm", "exptime"])
def test_variances_as_the_resample_step(weight_type):
    rng = np.random.default_rng(11)
    shape, out_shape = (40, 42), (50, 52)
    images = []
    for k in range(2):
        data, weight = _inputs(rng, shape, nan_fraction=0.0)
        rnoise = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        poisson = rng.uniform(0.0, 4.0, shape).astype(np.float32)
        poisson[rng.random(shape) < 0.01] = -1.0  # a negative variance: NaN, skipped
        pixmap = _pixmap(shape, 5.0 * k, 1.0, (3.0 + 2.2 * k, 4.0 - 1.3 * k))
        images.append((data, weight, pixmap, [rnoise, poisson] if k == 0 else [0.8, poisson]))
    s_ref, w_ref = _numpy_variances(images, out_shape, 0.8, weight_type, 50.0)
    out = np.zeros(out_shape, np.float32)
    wht = np.zeros(out_shape, np.float32)
    s = [np.full(out_shape, np.nan, np.float32) for _ in range(2)]
    w_sum = [np.zeros(out_shape, np.float32) for _ in range(2)]
    for data, weight, pixmap, variances in images:
        rd.add_image(data, pixmap, out, wht, weight=weight, pixfrac=0.8, variances=variances,
                     var_sum=s, var_weight=w_sum, var_weight_type=weight_type,
                     var_exptime=50.0, band_rows=7)  # fmt: skip
    for k in range(2):
        assert np.array_equal(np.isnan(s[k]), np.isnan(s_ref[k]))
        np.testing.assert_allclose(s[k], s_ref[k], rtol=3e-5, equal_nan=True)
        np.testing.assert_allclose(w_sum[k], w_ref[k], rtol=3e-5)
    assert np.isfinite(s[1]).sum() > 1000


@pytest.mark.parametrize("pixfrac", [1.0, 0.5])
def test_exposure_time_coverage(pixfrac):
    # romancal's exposure-time resampler: unit weights on the good pixels, pixfrac 1
    rng = np.random.default_rng(3)
    shape, out_shape = (30, 34), (40, 40)
    data, weight = _inputs(rng, shape, nan_fraction=0.0, zero_fraction=0.0)
    good = rng.random(shape) > 0.3
    pixmap = _pixmap(shape, 9.0, 1.0, (4.0, 3.0))
    unit = _reference([(np.ones(shape, np.float32), good.astype(np.float32), pixmap)],
                      out_shape, "square", 1.0, 1.0)  # fmt: skip
    exptime = np.zeros(out_shape, np.float32)
    rd.add_image(data, pixmap, np.zeros(out_shape, np.float32), np.zeros(out_shape, np.float32),
                 weight=weight * good, pixfrac=pixfrac, exptime_map=exptime, exptime=95.0,
                 coverage_mask=good)  # fmt: skip
    assert np.array_equal(exptime > 0, unit.out_wht > 0)
    assert set(np.unique(exptime)) == {0.0, 95.0}
    # without a mask: where the input's own weight lands
    exptime2 = np.zeros(out_shape, np.float32)
    wht = np.zeros(out_shape, np.float32)
    rd.add_image(data, pixmap, np.zeros(out_shape, np.float32), wht, weight=weight * good,
                 pixfrac=pixfrac, exptime_map=exptime2, exptime=95.0)  # fmt: skip
    assert np.array_equal(exptime2 > 0, wht != 0)
    if pixfrac < 1:
        assert not np.array_equal(exptime2 > 0, exptime > 0)


@pytest.mark.parametrize("kernel", rd.KERNELS)
def test_thread_and_band_invariance(kernel):
    rng = np.random.default_rng(8)
    shape, out_shape = (120, 110), (140, 150)
    images = []
    for k in range(2):
        data, weight = _inputs(rng, shape)
        images.append((data, weight, _pixmap(shape, 11.0 + 3 * k, 1.05, (9.0, 12.0 + k))))
    base = _ours(images, out_shape, kernel, 0.8, 1 / 1.05, n_threads=1, band_rows=64)
    for threads, rows in [(2, 64), (3, 5), (4, 1)]:
        other = _ours(images, out_shape, kernel, 0.8, 1 / 1.05, n_threads=threads,
                      band_rows=rows)  # fmt: skip
        for a, b in zip(base, other, strict=True):
            assert np.array_equal(a, b, equal_nan=True)


FAST_CASES = {
    # angle, scale, shear, warp, shift, pixfrac, NaN box in the map
    "near identity": (0.07, 1.0, 0.0, 0.0, (150.3, 120.8), 1.0, None),
    "rotated": (33.0, 1.0, 0.0, 0.0, (160.0, 170.0), 1.0, None),
    "sheared": (4.0, 1.0, 0.35, 0.0, (140.0, 150.0), 1.0, None),
    "warped, scaled": (-12.0, 0.7, 0.0, 2e-4, (170.0, 140.0), 1.0, None),
    "output pixels 2x smaller": (8.0, 2.1, 0.0, 0.0, (200.0, 220.0), 1.0, None),
    "pixfrac 0.6": (6.0, 1.0, 0.0, 0.0, (150.0, 160.0), 0.6, None),
    "pixfrac 1.7": (6.0, 1.0, 0.0, 0.0, (150.0, 160.0), 1.7, None),
    "NaN map": (2.0, 1.0, 0.0, 1e-4, (150.0, 160.0), 1.0, (slice(10, 25), slice(30, 41))),
    "over the output's edges": (21.0, 1.2, 0.0, 0.0, (-20.0, 3.0), 1.0, None),
}


@pytest.mark.parametrize("name", sorted(FAST_CASES))
def test_fast_square_kernel_bit_for_bit(name):
    """The square kernel's shared corners and block overlaps (`_boxer_grid`) give what
    every corner and every pixel's overlap computed on its own (drizzle's arithmetic)
    give, bit for bit: data, weight, context, coverage and resampled variances."""
    from romancore import _drizzle

    angle, scale, shear, warp, shift, pixfrac, nan_box = FAST_CASES[name]
    shape = (60, 70)
    out_shape = (int(shape[0] * scale * 1.5 + 260), int(shape[1] * scale * 1.5 + 260))
    runs = []
    for fast in (True, False):
        arrays = {
            "out": np.zeros(out_shape, np.float32),
            "wht": np.zeros(out_shape, np.float32),
            "ctx": np.zeros(out_shape, np.uint32),
            "exptime": np.zeros(out_shape, np.float32),
            "s0": np.full(out_shape, np.nan, np.float32),
            "s1": np.full(out_shape, np.nan, np.float32),
            "w0": np.zeros(out_shape, np.float32),
            "w1": np.zeros(out_shape, np.float32),
        }
        counts = []
        sub = np.random.default_rng(sorted(FAST_CASES).index(name))
        _drizzle.set_fast_square(fast)
        try:
            for k in range(2):
                data, weight = _inputs(sub, shape)
                pixmap = _pixmap(shape, angle + 3 * k, scale, (shift[0] + 1.3 * k, shift[1]),
                                 warp, nan_box)  # fmt: skip
                pixmap[..., 0] += shear * (pixmap[..., 1] - np.nanmean(pixmap[..., 1]))
                variances = [
                    sub.uniform(0.5, 2.0, shape).astype(np.float32),
                    sub.uniform(0.0, 3.0, shape).astype(np.float32),
                ]
                good = sub.random(shape) > 0.2 if k == 1 else None
                rd.add_image(data, pixmap, arrays["out"], arrays["wht"], weight=weight,
                             pixfrac=pixfrac, pixel_scale_ratio=1.0 / scale,
                             out_ctx=arrays["ctx"], ctx_bit=k, exptime_map=arrays["exptime"],
                             exptime=10.0 + k, coverage_mask=good, variances=variances,
                             var_sum=[arrays["s0"], arrays["s1"]],
                             var_weight=[arrays["w0"], arrays["w1"]], band_rows=13)  # fmt: skip
                counts.append(_drizzle.last_grid_count())
        finally:
            _drizzle.set_fast_square(True)
        runs.append((arrays, counts))
    (fast_arrays, fast_counts), (plain_arrays, plain_counts) = runs
    assert plain_counts == [0, 0]
    # the block overlaps served (nearly) every footprint
    assert min(fast_counts) > 0.8 * shape[0] * shape[1] * (0.3 if "edges" in name else 1)
    assert (fast_arrays["wht"] != 0).sum() > 1000
    for key, value in fast_arrays.items():
        other = plain_arrays[key]
        assert np.array_equal(value.view(np.uint32), other.view(np.uint32)), key


def test_blot_equals_drizzle_package():
    rng = np.random.default_rng(4)
    median = rng.normal(5.0, 2.0, (70, 80)).astype(np.float32)
    shape = (50, 60)
    pixmap = _pixmap(shape, 17.0, 1.2, (8.0, 10.0), 2e-4)
    pixmap[:5, :7] = -1.0  # outside (stcal maps NaN positions to -1)
    pixmap[-1, -1] = (79.0, 69.0)  # the last pixel: no interpolation
    pixmap[-2, -1] = (79.0, 30.25)  # last column: along y only
    pixmap[-3, -1] = (12.5, 69.0)  # last row: along x only
    ref = np.full(shape, np.nan, np.float32)
    drizzle_resample.blot_image(median, pixmap, out_img=ref, fillval=np.nan, iscale=1.0,
                                interp="linear")  # fmt: skip
    ours = rd.blot(median, pixmap, fillval=np.nan)
    assert np.isfinite(ref).sum() > 1000
    assert np.array_equal(ours, ref, equal_nan=True)  # bit for bit
    # NaN positions are outside
    pixmap[10, 10] = np.nan
    assert np.isnan(rd.blot(median, pixmap)[10, 10])
    for threads in (1, 3):
        assert np.array_equal(rd.blot(median, pixmap, n_threads=threads),
                              rd.blot(median, pixmap, n_threads=2), equal_nan=True)  # fmt: skip


def test_bad_arguments():
    data = np.zeros((5, 5), np.float32)
    pixmap = _pixmap((5, 5))
    out = np.zeros((5, 5), np.float32)
    with pytest.raises(ValueError, match="kernel"):
        rd.add_image(data, pixmap, out, out.copy(), kernel="gaussian")
    with pytest.raises(ValueError, match="pixmap"):
        rd.add_image(data, pixmap[:, :4], out, out.copy())
    with pytest.raises(ValueError, match="out_wht"):
        rd.add_image(data, pixmap, out, out.astype(np.float64))
    with pytest.raises(ValueError, match="var_sum"):
        rd.add_image(data, pixmap, out, out.copy(), variances=[data])


def test_spline_grid_pair_as_scipy_and_one_by_one():
    """Both components in one pass: the values of two `spline_grid` calls bit for bit,
    and of scipy's RectBivariateSpline to rounding; splines with other knots refused."""
    from scipy.interpolate import RectBivariateSpline

    rng = np.random.default_rng(12)
    yc = np.linspace(0.0, 57.0, 9)
    xc = np.linspace(3.0, 70.0, 11)
    gy, gx = np.meshgrid(yc, xc, indexing="ij")
    cx = 1.02 * gx - 0.03 * gy + 4e-4 * gx * gy + rng.normal(0, 1e-3, gx.shape)
    cy = 0.02 * gx + 0.99 * gy - 3e-4 * gx * gx + rng.normal(0, 1e-3, gx.shape)
    sx = RectBivariateSpline(yc, xc, cx, kx=3, ky=3)
    sy = RectBivariateSpline(yc, xc, cy, kx=3, ky=3)
    rows = np.arange(0.0, 58.0)
    cols = np.arange(3.0, 71.0)
    pair = np.full((60, 75, 2), np.nan)
    rd.spline_grid_pair(sx.tck, sy.tck, sx.degrees, rows, cols, pair, row0=1, col0=4)
    single = np.full((60, 75, 2), np.nan)
    rd.spline_grid(sx.tck, sx.degrees, rows, cols, single, 0, row0=1, col0=4)
    rd.spline_grid(sy.tck, sy.degrees, rows, cols, single, 1, row0=1, col0=4)
    assert np.array_equal(pair, single, equal_nan=True)
    assert np.isnan(pair[0]).all() and np.isnan(pair[:, :4]).all()
    np.testing.assert_allclose(pair[1:59, 4:72, 0], sx(rows, cols), rtol=0, atol=1e-9)
    np.testing.assert_allclose(pair[1:59, 4:72, 1], sy(rows, cols), rtol=0, atol=1e-9)
    other = RectBivariateSpline(yc[:-1], xc, cy[:-1], kx=3, ky=3)
    with pytest.raises(ValueError, match="knots"):
        rd.spline_grid_pair(sx.tck, other.tck, sx.degrees, rows, cols, pair)
    with pytest.raises(ValueError, match="knots"):
        rd.SplineGridPair(sx.tck, other.tck, sx.degrees, cols)
    # the columns' factor computed once, evaluated on blocks of rows: the same map
    evaluator = rd.SplineGridPair(sx.tck, sy.tck, sx.degrees, cols)
    blocks = np.full((60, 75, 2), np.nan)
    for r0 in range(0, len(rows), 7):
        evaluator.evaluate(rows[r0 : r0 + 7], blocks, row0=1 + r0, col0=4)
    assert np.array_equal(blocks, pair, equal_nan=True)
    with pytest.raises(ValueError, match="fit"):
        evaluator.evaluate(rows, blocks, row0=3, col0=4)


# ------------------------------------------------------------- bands of output rows
def _all_outputs(shape):
    return {
        "out": np.zeros(shape, np.float32),
        "wht": np.zeros(shape, np.float32),
        "ctx": np.zeros(shape, np.uint32),
        "exptime": np.zeros(shape, np.float32),
        "s0": np.full(shape, np.nan, np.float32),
        "s1": np.full(shape, np.nan, np.float32),
        "w0": np.zeros(shape, np.float32),
        "w1": np.zeros(shape, np.float32),
    }


def _add_all(inputs, arrays, kernel, **kwargs):
    for k, (data, weight, pixmap, variances, good) in enumerate(inputs):
        rd.add_image(data, pixmap, arrays["out"], arrays["wht"], weight=weight, kernel=kernel,
                     pixfrac=0.9, pixel_scale_ratio=0.95, out_ctx=arrays["ctx"], ctx_bit=k,
                     exptime_map=arrays["exptime"], exptime=10.0 + k, coverage_mask=good,
                     variances=variances, var_sum=[arrays["s0"], arrays["s1"]],
                     var_weight=[arrays["w0"], arrays["w1"]], **kwargs)  # fmt: skip


def _band_inputs(rng, shape):
    inputs = []
    for k in range(3):
        data, weight = _inputs(rng, shape)
        # the last input hangs over the grid's top and bottom (drizzle clips it there)
        pixmap = _pixmap(shape, 17.0 + 9 * k, 1.05, (6.0 + 4 * k, 9.0 - 25.0 * (k == 2)))
        variances = [rng.uniform(0.5, 2.0, shape).astype(np.float32),
                     rng.uniform(0.0, 3.0, shape).astype(np.float32) if k else 0.7]
        good = rng.random(shape) > 0.2 if k == 1 else None
        inputs.append((data, weight, pixmap, variances, good))
    return inputs


@pytest.mark.parametrize("kernel", rd.KERNELS)
def test_output_rows_are_the_whole_grid_rows(kernel):
    """Drizzled into arrays of a few grid rows (``out_row0``, ``out_ny``), each band of
    rows is, bit for bit, those rows of the whole grid's arrays (clipping included),
    with or without a workspace kept from call to call, for any number of threads."""
    rng = np.random.default_rng(21)
    shape, out_shape = (70, 64), (80, 90)
    inputs = _band_inputs(rng, shape)
    whole = _all_outputs(out_shape)
    _add_all(inputs, whole, kernel, band_rows=8)
    assert (whole["wht"] != 0).sum() > 2000
    workspace = rd.Workspace()
    for rows, threads, space in [(13, 1, None), (13, 2, workspace), (5, 3, workspace),
                                 (80, 2, workspace), (1, 2, workspace)]:  # fmt: skip
        for r0 in range(0, out_shape[0], rows):
            r1 = min(out_shape[0], r0 + rows)
            band = _all_outputs((r1 - r0, out_shape[1]))
            _add_all(inputs, band, kernel, band_rows=8, out_row0=r0, out_ny=out_shape[0],
                     workspace=space, n_threads=threads)  # fmt: skip
            for key, value in band.items():
                expected = whole[key][r0:r1]
                assert np.array_equal(value.view(np.uint32), expected.view(np.uint32)), (
                    key, rows, r0)
    assert workspace.nbytes > 0
    workspace.clear()
    assert workspace.nbytes == 0


def test_output_rows_must_lie_in_the_grid():
    rng = np.random.default_rng(2)
    data, weight = _inputs(rng, (20, 20))
    pixmap = _pixmap((20, 20))
    out = np.zeros((5, 20), np.float32)
    wht = np.zeros((5, 20), np.float32)
    with pytest.raises(ValueError, match="not inside a grid"):
        rd.add_image(data, pixmap, out, wht, out_row0=18, out_ny=20)
    with pytest.raises(ValueError, match="not inside a grid"):
        rd.add_image(data, pixmap, out, wht, out_row0=-1)
    with pytest.raises(ValueError, match="Workspace"):
        rd.add_image(data, pixmap, out, wht, workspace=object())
    # rows beyond the input's reach: nothing lands
    assert not rd.add_image(data, pixmap, out, wht, out_row0=40, out_ny=45)
    assert not wht.any()


def test_finish_rows_equals_numpy():
    """The band products in one compiled pass: the NumPy recipe's values, bit for bit."""
    rng = np.random.default_rng(4)
    shape = (37, 53)
    data = rng.normal(1.0, 1.0, shape).astype(np.float32)
    weight = rng.uniform(0.0, 2.0, shape).astype(np.float32)
    weight[rng.random(shape) < 0.2] = 0
    exptime = np.where(rng.random(shape) < 0.3, 0, rng.choice([139.8, 279.6], shape))
    exptime = exptime.astype(np.float32)
    sums, weights = [], []
    for _ in range(3):
        s = rng.uniform(0.0, 5.0, shape).astype(np.float32)
        s[rng.random(shape) < 0.2] = np.nan
        w = rng.uniform(0.0, 3.0, shape).astype(np.float32)
        w[rng.random(shape) < 0.1] = 0  # 0/0: NaN, x/0: inf
        sums.append(s)
        weights.append(w)
    scaling = np.float32(1.0 / 0.7**2)
    # the NumPy recipe (the resample step's before)
    d_ref = data.copy()
    d_ref[weight == 0] = np.float32(-5.0)
    v_ref = []
    e_ref = np.zeros(shape, np.float32)
    all_nan = np.ones(shape, bool)
    for s, w in zip(sums, weights, strict=True):
        v = s.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            v *= scaling
            v /= w
            v /= w
        v_ref.append(v)
        finite = ~np.isnan(v)
        e_ref[finite] += v[finite]
        all_nan &= ~finite
    np.sqrt(e_ref, out=e_ref)
    e_ref[all_nan] = np.nan
    assert all_nan.any() and np.isinf(np.concatenate(v_ref)).any()
    positive = exptime[exptime > 0]
    err = np.empty(shape, np.float32)
    got = rd.finish_rows(data, weight, fillval=-5.0, exptime=exptime, var_sum=sums,
                         var_weight=weights, scaling=scaling, err=err, n_threads=2)  # fmt: skip
    assert got == (float(positive.sum(dtype="f8")), positive.size, float(exptime.max()))
    assert np.array_equal(data.view(np.uint32), d_ref.view(np.uint32))
    for v, r in zip(sums, v_ref, strict=True):
        assert np.array_equal(v, r, equal_nan=True)
    assert np.array_equal(err, e_ref, equal_nan=True)
    # no exposure-time map, no variances
    assert rd.finish_rows(data, weight) == (0.0, 0, 0.0)
    with pytest.raises(ValueError, match="var_sum"):
        rd.finish_rows(data, weight, var_sum=sums[:1])


@pytest.mark.parametrize("kernel", rd.KERNELS)
def test_mask_weight_is_the_weight_image(kernel):
    """A boolean weight with ``weight_value``: the weight image ``np.where(mask, value,
    0)`` gives the same products, bit for bit (it is never built)."""
    rng = np.random.default_rng(31)
    shape, out_shape = (50, 46), (60, 64)
    data, _ = _inputs(rng, shape, nan_fraction=0.0)
    mask = rng.random(shape) > 0.25
    value = 0.37
    pixmap = _pixmap(shape, 13.0, 1.02, (5.0, 6.0))
    variances = [rng.uniform(0.5, 2.0, shape).astype(np.float32)]
    runs = []
    for weight in (np.where(mask, np.float32(value), np.float32(0)), mask):
        arrays = _all_outputs(out_shape)
        rd.add_image(data, pixmap, arrays["out"], arrays["wht"], weight=weight,
                     weight_value=value, kernel=kernel, pixfrac=0.8, weight_scale=1.5,
                     out_ctx=arrays["ctx"], exptime_map=arrays["exptime"], exptime=3.0,
                     variances=variances, var_sum=[arrays["s0"]], var_weight=[arrays["w0"]])
        runs.append(arrays)
    assert (runs[0]["wht"] != 0).sum() > 1000
    for key, value_ in runs[0].items():
        assert np.array_equal(value_.view(np.uint32), runs[1][key].view(np.uint32)), key
    # the value matters: a mask with weight_value 1 is another weighting
    other = _all_outputs(out_shape)
    rd.add_image(data, pixmap, other["out"], other["wht"], weight=mask, kernel=kernel,
                 pixfrac=0.8, weight_scale=1.5)  # fmt: skip
    assert not np.array_equal(other["wht"], runs[1]["wht"])


@pytest.mark.parametrize("n_threads", [1, 3])
def test_row_extents_match_numpy(n_threads):
    from romancore.drizzle import row_extents

    rng = np.random.default_rng(11)
    pixmap = rng.uniform(-50, 50, (23, 31, 2))
    pixmap[rng.random((23, 31)) < 0.2] = np.nan
    pixmap[4, :, 0] = np.nan  # a row with no pixel
    pixmap[rng.random((23, 31)) < 0.05, 1] = np.nan  # one coordinate NaN: skipped
    for xmin, xmax in ((0, 30), (3, 17), (9, 9)):
        got = row_extents(pixmap, xmin, xmax, n_threads=n_threads)
        part = pixmap[:, xmin : xmax + 1].copy()
        part[np.isnan(part).any(axis=2)] = np.nan
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = np.stack([np.nanmin(part[..., 1], 1), np.nanmax(part[..., 1], 1),
                                 np.nanmin(part[..., 0], 1), np.nanmax(part[..., 0], 1)], 1)
        empty = np.isnan(expected).all(axis=1)
        expected[empty] = (np.inf, -np.inf, np.inf, -np.inf)
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="columns"):
        row_extents(pixmap, 5, 31)
