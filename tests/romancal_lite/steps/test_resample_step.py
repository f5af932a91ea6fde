"""resample: drizzle onto the footprint union; hand cases, flux conservation, romancal 1.1."""

import json
import math
import os
from pathlib import Path

import mosaic_data as md
import numpy as np
import pytest

from romancal_lite.associations import asn_from_list, write_asn
from romancal_lite.datamodels import ImageModel, MappedArray, ModelLibrary, MosaicModel
from romancal_lite.errors import ConfigError, InputFileError
from romancal_lite.steps.resample import (
    ResampleStep,
    calc_pixmap,
    fiducial_from_footprints,
    parse_fillval,
)
from romancal_lite.steps.resample import resample as resample_module

SHAPE = (96, 96)


def _bright_stars():
    return [(a, b, 20 * f) for a, b, f in md.stars_in(SHAPE, 10, 3)]


def _write(directory, *, var_rnoise=True, stars=None, levels=None, **kwargs):
    stars = _bright_stars() if stars is None else stars
    paths = []
    for e, dither in enumerate([(0.0, 0.0), (3.0, 2.0)], start=1):
        for det in (1, 2):
            level = None if levels is None else levels[e - 1]
            model = md.make_image(e, det, dither=dither, stars=stars, level=level, shape=SHAPE,
                                  **kwargs)
            if not var_rnoise:
                del model.var_rnoise
            paths.append(model.save(directory / model.meta.filename))
    asn = directory / "mos_asn.json"
    write_asn(asn_from_list(paths, "mos", relative_to=directory), asn)
    return paths, asn


def _star_positions(mosaic, stars, paths):
    """Mosaic pixel of each star that lies >= 10 pixels inside every input it touches."""
    field = md.build_wcs(md.distortion(1, SHAPE), md.Pointing(md.RA0, md.DEC0, md.ROLL, 0, 0),
                         SHAPE)  # fmt: skip
    wcss = []
    for p in paths:
        with ImageModel(p) as model:
            wcss.append(model.meta.wcs)
    found = []
    for dx, dy, flux in stars:
        ra, dec = field((SHAPE[1] - 1) / 2 + dx / md.SCALE, (SHAPE[0] - 1) / 2 + dy / md.SCALE)
        clean = True
        for wcs in wcss:
            x, y = wcs.invert(ra, dec, with_bounding_box=False)
            inside = -12 < x < SHAPE[1] + 12 and -12 < y < SHAPE[0] + 12
            deep = 10 < x < SHAPE[1] - 11 and 10 < y < SHAPE[0] - 11
            clean &= deep or not inside
        x, y = mosaic.meta.wcs.invert(ra, dec, with_bounding_box=False)
        if clean and 10 < x < mosaic.data.shape[1] - 10 and 10 < y < mosaic.data.shape[0] - 10:
            found.append((int(round(x)), int(round(y)), flux))
    return found


def _aperture(data, x, y, sky=0.5, half=8):
    return float(np.sum(np.asarray(data[y - half : y + half + 1, x - half : x + half + 1],
                                   float) - sky))  # fmt: skip


# ---------------------------------------------------------------- hand cases
def test_parse_fillval():
    assert math.isnan(parse_fillval("NAN")) and parse_fillval("INDEF") == 0.0
    assert parse_fillval("-1") == -1.0
    with pytest.raises(ConfigError, match="fillval"):
        parse_fillval("blue")


def test_fiducial_is_the_centre_of_the_corners():
    ra, dec = fiducial_from_footprints([np.array([[10.0, -1.0], [10.2, -1.0]]),
                                        np.array([[10.2, 1.0], [10.0, 1.0]])])  # fmt: skip
    assert ra == pytest.approx(10.1) and dec == pytest.approx(0.0, abs=1e-12)


def test_pixmap_interpolation_matches_the_exact_map():
    wcs = md.make_image(1, 1, shape=(100, 120)).meta.wcs
    other = md.make_image(2, 1, shape=(100, 120), dither=(3.0, 1.0)).meta.wcs
    exact = calc_pixmap(wcs, other, (100, 120), stepsize=1)
    spline = calc_pixmap(wcs, other, (100, 120), stepsize=10, order=3)
    assert np.nanmax(np.abs(exact - spline)) < 1e-6
    # a pure shift of (3.0", 1.0") is ~(27, 9) pixels in the rotated frame: a shift
    assert np.ptp(exact[..., 0] - np.arange(120)[None, :]) < 0.2


def test_single_image_with_unit_ratio_is_copied(tmp_path):
    """One image with a central star on a zero sky: the drizzled sum is its flux."""
    model = md.make_image(1, 1, stars=[(0.0, 0.0, 1000.0), (1.0, -0.8, 300.0)], sky=0.0)
    mosaic = ResampleStep.call(model)
    assert isinstance(mosaic, MosaicModel)
    good = np.isfinite(mosaic.data)
    assert np.nansum(mosaic.data) == pytest.approx(float(np.sum(model.data, dtype=float)),
                                                   rel=1e-5)  # fmt: skip
    assert float(np.sum(model.data, dtype=float)) == pytest.approx(1300.0, rel=1e-4)
    assert mosaic.context.shape == (1, *mosaic.data.shape)
    assert np.all(mosaic.context[0][good] == 1)
    assert mosaic.meta.cal_step.resample == "COMPLETE"
    assert mosaic.meta.coadd_info.max_exposure_time == pytest.approx(95.0)
    # fillval where nothing lands
    assert np.all(np.isnan(mosaic.data[~good])) and np.all(mosaic.weight[~good] == 0)


def test_sky_level_subtracted_when_not_subtracted(tmp_path):
    paths, asn = _write(tmp_path, levels=(0.3, 0.1), stars=[])
    mosaic = ResampleStep.call(asn)
    assert np.nanmedian(mosaic.data) == pytest.approx(0.5, abs=1e-5)
    off = ResampleStep.call(paths[:1])
    assert np.nanmedian(off.data) == pytest.approx(0.5, abs=1e-5)


# ---------------------------------------------------------------- flux conservation
@pytest.mark.parametrize("with_var_rnoise", [True, False])
def test_flux_of_stars_and_sky_conserved(tmp_path, with_var_rnoise):
    """Isolated stars within 0.2 %, the sky within 1e-5, with or without var_rnoise."""
    stars = _bright_stars()
    paths, asn = _write(tmp_path, var_rnoise=with_var_rnoise, stars=stars)
    mosaic = ResampleStep.call(asn)
    found = _star_positions(mosaic, stars, paths)
    assert len(found) >= 3
    for x, y, flux in found:
        assert _aperture(mosaic.data, x, y) == pytest.approx(flux, rel=2e-3)
    assert np.nanmedian(mosaic.data) == pytest.approx(0.5, abs=1e-5)


def test_flux_lost_without_the_robust_read_noise(tmp_path, monkeypatch):
    """With romancal's per-pixel err^2 - var_poisson weights the star fluxes are wrong."""
    stars = _bright_stars()
    paths, asn = _write(tmp_path, var_rnoise=False, stars=stars)

    def per_pixel(model, good):
        rest = np.square(np.asarray(model.err, np.float16)) - np.asarray(model.var_poisson)
        return rest.astype(np.float32), "per pixel"

    monkeypatch.setattr(resample_module, "read_noise_variance", per_pixel)
    mosaic = ResampleStep.call(asn, weight_type="ivm")
    ratios = [_aperture(mosaic.data, x, y) / f for x, y, f in _star_positions(mosaic, stars,
                                                                               paths)]  # fmt: skip
    assert ratios and any(not abs(r - 1) <= 0.05 for r in ratios)  # (NaN: flux lost too)


# ---------------------------------------------------------------- against romancal
def _romancal(asn, **kwargs):
    rc_library = pytest.importorskip("romancal.datamodels")
    from romancal.resample.resample import ResampleData

    library = rc_library.ModelLibrary(str(asn), on_disk=False)
    wcs_kwargs = {"pscale_ratio": 1.0, "pscale": None, "rotation": None, "shape": None,
                  "crpix": None, "crval": None, **kwargs.pop("wcs_kwargs", {})}  # fmt: skip
    resampler = ResampleData(
        library, None, kwargs.get("pixfrac", 1.0), kwargs.get("kernel", "square"), "NAN",
        kwargs.get("weight_type", "ivm"), "~DO_NOT_USE", True, True, "from_var", True, True,
        False, wcs_kwargs=wcs_kwargs, variance_array_names=["var_rnoise", "var_poisson"],
        pixmap_stepsize=10, pixmap_order=3,
    )  # fmt: skip
    return resampler.resample_group(range(len(library)))


@pytest.mark.parametrize(
    ("ours_kwargs", "their_kwargs"),
    [
        ({"weight_type": "ivm"}, {}),  # romancal's default
        ({"weight_type": "exptime", "pixfrac": 0.8}, {"weight_type": "exptime", "pixfrac": 0.8}),
        ({"pixel_scale_ratio": 0.7, "rotation": 12.0},
         {"wcs_kwargs": {"pscale_ratio": 0.7, "rotation": 12.0}}),
    ],
)  # fmt: skip
def test_same_mosaic_as_romancal(tmp_path, ours_kwargs, their_kwargs):
    _, asn = _write(tmp_path)
    ours = ResampleStep.call(asn, **ours_kwargs)
    theirs = _romancal(asn, **their_kwargs)
    assert ours.data.shape == theirs.data.shape
    ys, xs = np.mgrid[0 : ours.data.shape[0] : 13, 0 : ours.data.shape[1] : 13]
    np.testing.assert_allclose(np.array(ours.meta.wcs(xs, ys)), np.array(theirs.meta.wcs(xs, ys)),
                               rtol=0, atol=1e-9)  # fmt: skip
    np.testing.assert_array_equal(ours.context, theirs.context)
    # romancal inverts the float16 var_rnoise in float16 (~1e-3): weights and
    # variances agree to that; the data (a weighted mean of equal weights) closely
    for name, rtol in (("data", 1e-5), ("weight", 1e-3), ("var_rnoise", 2e-3),
                       ("var_poisson", 2e-3), ("err", 2e-3)):  # fmt: skip
        a, b = np.asarray(ours[name], float), np.asarray(theirs[name], float)
        np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b), err_msg=name)
        ok = np.isfinite(a)
        np.testing.assert_allclose(a[ok], b[ok], rtol=rtol, atol=1e-7, err_msg=name)
    info, their_info = ours.meta.coadd_info, theirs.meta.coadd_info
    assert info.exposure_time == pytest.approx(their_info.exposure_time, rel=1e-6)
    assert info.max_exposure_time == pytest.approx(their_info.max_exposure_time, rel=1e-6)
    for key in ("ra_ref", "dec_ref", "x_ref", "y_ref", "pixel_scale", "orientation"):
        assert ours.meta.wcsinfo[key] == pytest.approx(theirs.meta.wcsinfo[key], rel=1e-9)
    assert ours.meta.resample.pointings == theirs.meta.resample.pointings == 2


def test_saved_mosaic_is_read_by_roman_datamodels(tmp_path):
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    _, asn = _write(tmp_path)
    os.chdir(tmp_path)
    mosaic = ResampleStep.call(str(asn), save_results=True)
    path = tmp_path / "mos_resample.asdf"
    assert path.exists() and mosaic.meta.filename.startswith("mos")
    with rdm.open(path) as theirs:
        theirs.validate()
        assert theirs.meta.resample.members == [f"e{e}_wfi0{d}_cal.asdf" for e in (1, 2)
                                                 for d in (1, 2)]  # fmt: skip


def test_streams_one_input_at_a_time(tmp_path, monkeypatch):
    _, asn = _write(tmp_path)
    peak = [0]
    real_add = resample_module.Resampler.add
    library = ModelLibrary(asn)

    def spy(self, model, index, **kwargs):
        peak[0] = max(peak[0], len(library._borrowed))
        return real_add(self, model, index, **kwargs)

    monkeypatch.setattr(resample_module.Resampler, "add", spy)
    ResampleStep.call(library)
    assert peak[0] == 1 and not library._borrowed


# ---------------------------------------------------------------- errors
def test_grid_too_large_is_refused_before_allocating(tmp_path, monkeypatch):
    _, asn = _write(tmp_path)
    monkeypatch.setattr(resample_module, "available_memory", lambda: 10_000)
    calls = []
    monkeypatch.setattr(resample_module, "file_array", lambda *a, **k: calls.append(1))
    with pytest.raises(ConfigError, match="GiB available"):
        ResampleStep.call(asn)
    assert calls == []


def test_bad_inputs(tmp_path):
    paths, asn = _write(tmp_path)
    other = md.make_image(3, 1)
    other.meta.instrument.optical_element = "F062"
    with pytest.raises(InputFileError, match="optical elements"):
        ResampleStep.call([md.make_image(1, 1), other])
    dn = md.make_image(3, 1)
    dn.meta.cal_step.flux = "INCOMPLETE"
    with pytest.raises(InputFileError, match="different units"):
        ResampleStep.call([md.make_image(1, 1), dn])
    nowcs = md.make_image(1, 1)
    nowcs.meta.wcs = None
    with pytest.raises(InputFileError, match="no WCS"):
        ResampleStep.call(nowcs)
    with pytest.raises(ConfigError, match="output_shape"):
        ResampleStep.call(asn, output_shape="10")
    with pytest.raises(ConfigError, match="propagate_dq"):
        ResampleStep.call(asn, propagate_dq=True)
    tree = json.loads(asn.read_text())
    tree["products"][0]["members"].append({"expname": "gone_cal.asdf", "exptype": "science"})
    asn.write_text(json.dumps(tree))
    with pytest.raises(InputFileError, match="gone_cal.asdf"):
        ResampleStep.call(asn)


def test_output_wcs_and_shape(tmp_path):
    import asdf

    _, asn = _write(tmp_path)
    first = ResampleStep.call(asn)
    path = tmp_path / "grid.asdf"
    asdf.AsdfFile({"wcs": first.meta.wcs}).write_to(path)
    again = ResampleStep.call(asn, output_wcs=str(path))
    np.testing.assert_allclose(again.data, first.data, rtol=1e-6, equal_nan=True)
    small = ResampleStep.call(asn, output_shape=[50, 40], crpix=[25, 20])
    assert small.data.shape == (40, 50)


def _signal_dependent_rnoise(directory, stars):
    """Inputs whose var_rnoise grows with the signal, as a ramp fit's does."""
    paths, asn = _write(directory, stars=stars)
    for path in paths:
        with ImageModel(path) as model:
            base = np.nanmedian(np.asarray(model.var_rnoise))
            data = np.clip(np.asarray(model.data, np.float32), 0, None)
            model.var_rnoise = (base * (1 + data / 2.0)).astype(np.float32)
            model.save(path)
    return paths, asn


def test_ivm_median_conserves_flux_where_ivm_loses_it(tmp_path):
    """The default one-weight-per-input ``ivm-median``: star fluxes right; romancal's
    per-pixel ``ivm`` on the same inputs: the stars lose flux."""
    stars = _bright_stars()
    paths, asn = _signal_dependent_rnoise(tmp_path, stars)
    default = ResampleStep.call(asn)
    assert default.meta.resample.weight_type == "ivm-median"
    found = _star_positions(default, stars, paths)
    assert len(found) >= 3
    for x, y, flux in found:
        assert _aperture(default.data, x, y) == pytest.approx(flux, rel=2e-3)
    ivm = ResampleStep.call(asn, weight_type="ivm")
    ratios = [_aperture(ivm.data, x, y) / f for x, y, f in found]
    assert max(ratios) < 0.98
    # the variances are still the per-pixel arrays, combined with the input weights
    assert np.nanmax(default.var_rnoise) > 2 * np.nanmedian(default.var_rnoise)


def test_pixel_maps_computed_once_per_member_and_grid(tmp_path, monkeypatch):
    """outlier_detection's drizzle and blot and resample share each member's map onto
    their common grid: computed once, the same values as calc_pixmap, the same
    mosaic; another grid gets its own map."""
    from romancal_lite.steps.outlier_detection import OutlierDetectionStep
    from romancal_lite.steps.resample import pixmap as pixmap_module

    paths, asn = _write(tmp_path)
    plain = ResampleStep.call(ModelLibrary(paths))  # each map computed where used
    calls = []
    real = pixmap_module.calc_pixmap

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pixmap_module, "calc_pixmap", counting)
    library = ModelLibrary(asn)
    OutlierDetectionStep.call(library)
    assert len(calls) == len(paths)  # drizzle and blot: one map per member
    kept = list(Path(library.temp_directory).rglob("pixmap_*.npy"))
    assert len([p for p in kept if ".extents_" not in p.name]) == len(paths)
    mosaic = ResampleStep.call(library)
    assert len(calls) == len(paths)  # resample: the same grid, the same maps
    # resample is their last use: the scratch files are gone
    assert list(Path(library.temp_directory).rglob("pixmap_*.npy")) == []
    np.testing.assert_array_equal(mosaic.data, plain.data)
    np.testing.assert_array_equal(mosaic.err, plain.err)
    with library:
        model = library.borrow(0)
        grid = mosaic.meta.wcs
        args = (library, 0, model.meta.wcs, grid, model.data.shape)
        pixmap_module.member_pixmap(*args)
        kept = pixmap_module.member_pixmap(*args)  # read back from its file
        np.testing.assert_array_equal(kept, real(model.meta.wcs, grid, model.data.shape))
        library.shelve(model, 0)
    assert len(calls) == len(paths) + 1
    ResampleStep.call(library, pixel_scale_ratio=0.8)  # another grid: new maps
    assert len(calls) == 2 * len(paths) + 1


# ---------------------------------------------------------------- memory: bands, files
def _drizzle_set(paths, **kwargs):
    """Resampler products of ``paths`` on their footprint grid (all arrays copied)."""
    library = ModelLibrary([str(p) for p in paths])
    step = ResampleStep()
    metas = [library.read_meta(i) for i in range(len(library))]
    wcs, _, ratio = step._grid(library, metas)
    resampler = resample_module.Resampler(wcs, len(library), pixel_scale_ratio=ratio, **kwargs)
    with library:
        for i in range(len(library)):
            model = library.borrow(i)
            resampler.add(model, i, exposure_time=10.0, effective_time=9.5, level=None)
            library.shelve(model, i, modify=False)
    out = resampler.finalize()
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("weight_type", ["ivm-median", "ivm"])
def test_bands_give_the_whole_image_call(tmp_path, monkeypatch, weight_type):
    """Drizzled in bands of 7 output rows, the mosaic is bit for bit one call's."""
    paths, _ = _write(tmp_path)
    whole = _drizzle_set(paths, weight_type=weight_type)  # one band: one call per input
    monkeypatch.setattr(resample_module, "BAND_ROWS", 7)
    banded = _drizzle_set(paths, weight_type=weight_type)
    assert set(banded) == set(whole)
    # inside the grid's outer rows and columns (where drizzle clips its scan polygon)
    inner = (..., slice(2, -2), slice(2, -2))
    for name in ("data", "weight", "context", "err", "var_rnoise", "var_poisson"):
        a, b = whole[name][inner], banded[name][inner]
        assert np.array_equal(a, b, equal_nan=True), name
    assert banded["exposure_time"] == pytest.approx(whole["exposure_time"], rel=1e-6)
    assert banded["max_exposure_time"] == whole["max_exposure_time"]
    assert np.count_nonzero(whole["weight"]) > 0.5 * whole["weight"].size


@pytest.mark.parametrize("weight_type", ["ivm-median", "exptime"])
def test_one_weight_per_input_builds_no_weight_image(tmp_path, monkeypatch, weight_type):
    """With one weight per input, no full-size weight image is built (the good-pixel
    mask is staged); the products are those of the image built as before."""
    paths, _ = _write(tmp_path)
    real = resample_module.Resampler._add_fused
    seen = []

    def spy(self, model, index, data, weight, good, *args):
        seen.append(weight)
        return real(self, model, index, data, weight, good, *args)

    def built(self, model, index, data, weight, good, rnoise, source, pixmap, box,
              variance_weight, effective_time, offset=None):  # fmt: skip
        assert weight is None
        weight = np.where(good, np.float32(variance_weight), np.float32(0))
        return real(self, model, index, data, weight, good, rnoise, source, pixmap, box,
                    variance_weight, effective_time, offset)  # fmt: skip

    monkeypatch.setattr(resample_module.Resampler, "_add_fused", spy)
    lean = _drizzle_set(paths, weight_type=weight_type)
    assert len(seen) == len(paths) and all(w is None for w in seen)
    monkeypatch.setattr(resample_module.Resampler, "_add_fused", built)
    before = _drizzle_set(paths, weight_type=weight_type)
    assert set(lean) == set(before)
    for name, value in before.items():
        assert np.array_equal(lean[name], value, equal_nan=True), name
    assert np.count_nonzero(lean["weight"]) > 0.5 * lean["weight"].size


def test_products_are_written_by_rows(tmp_path):
    """`_RowFile`: row blocks written with pwrite, planes and all, read back as a map."""
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2**32, (3, 11, 7), dtype=np.uint32)
    rows = resample_module._RowFile(values.shape, np.uint32, str(tmp_path))
    for r0 in (8, 0, 4):  # any order, the last block short
        rows.write(r0, values[:, r0 : r0 + 4])
    array = rows.array()
    assert np.array_equal(array, values)
    from romancal_lite.steps._arrays import is_file_map

    assert is_file_map(array)


def test_bands_need_their_margins(tmp_path, monkeypatch):
    """Without the rows around a band, pixels whose footprints cross it are lost."""
    paths, _ = _write(tmp_path)
    whole = _drizzle_set(paths)
    monkeypatch.setattr(resample_module, "BAND_ROWS", 7)
    monkeypatch.setattr(resample_module.Resampler, "_band_margin", lambda self: -3)
    banded = _drizzle_set(paths)
    assert not np.array_equal(whole["weight"], banded["weight"])


def test_mosaic_arrays_live_in_files(tmp_path):
    """The mosaic's full-size arrays are maps of temporary files, with their pages given back."""
    from romancal_lite.steps._arrays import is_memory_mapped

    _, asn = _write(tmp_path)
    mosaic = ResampleStep.call(asn)
    for name in ("data", "err", "context", "weight", "var_rnoise", "var_poisson"):
        assert is_memory_mapped(mosaic[name]), name
    # readable and written like any array
    path = mosaic.save(tmp_path / "mos_coadd.asdf")
    with MosaicModel(path) as again:
        assert np.array_equal(again.data, mosaic.data, equal_nan=True)
        assert np.array_equal(again.context, mosaic.context)


def test_grid_beyond_the_free_disk_is_refused(tmp_path, monkeypatch):
    _, asn = _write(tmp_path)
    monkeypatch.setattr(resample_module, "_free_disk", lambda directory: 10_000)
    calls = []
    monkeypatch.setattr(resample_module, "file_array", lambda *a, **k: calls.append(1))
    with pytest.raises(ConfigError, match="temporary files"):
        ResampleStep.call(asn)
    assert calls == []


@pytest.mark.parametrize("kernel", ["gaussian", "lanczos3"])
def test_drizzle_package_kernels_accumulate_in_files(tmp_path, kernel):
    """The drizzle package's kernels merge each cut-out into the file-backed mosaic."""
    from romancal_lite.steps._arrays import is_memory_mapped

    _, asn = _write(tmp_path)
    square = ResampleStep.call(asn)
    other = ResampleStep.call(asn, kernel=kernel)
    assert is_memory_mapped(other.data) and is_memory_mapped(other.weight)
    both = np.isfinite(square.data) & np.isfinite(other.data)
    assert both.sum() > 0.9 * np.isfinite(square.data).sum()
    total = float(np.sum(square.data[both], dtype=float))
    assert float(np.sum(other.data[both], dtype=float)) == pytest.approx(total, rel=0.02)
    assert np.array_equal(other.context[0] > 0, other.weight != 0)


def test_level_subtracted_as_staged(tmp_path, monkeypatch):
    """A sky level (fused kernels) comes off the data as they are staged, a band at a
    time: the products of the data minus the level, without a full-size copy in add."""
    import tracemalloc

    monkeypatch.setattr(resample_module, "BAND_ROWS", 8)  # bands of 8 of the 96 rows
    paths, _ = _write(tmp_path)
    step = ResampleStep()
    library = ModelLibrary([str(p) for p in paths])
    metas = [library.read_meta(i) for i in range(len(library))]
    wcs, _, ratio = step._grid(library, metas)
    level = 0.37
    results, peaks = [], []
    for subtract_first in (True, False):
        resampler = resample_module.Resampler(wcs, len(paths), pixel_scale_ratio=ratio)
        for i, p in enumerate(paths):
            with ImageModel(p) as model:
                model.data = np.array(model.data, np.float32)
                if subtract_first:
                    model.data = model.data - np.float32(level)
                model.var_rnoise = np.array(model.var_rnoise, np.float32)
                pixmap = calc_pixmap(model.meta.wcs, wcs, model.data.shape)
                tracemalloc.start()
                try:
                    resampler.add(model, i, exposure_time=10.0, effective_time=9.5,
                                  level=None if subtract_first else level, pixmap=pixmap)
                    peaks.append((subtract_first, tracemalloc.get_traced_memory()[1]))
                finally:
                    tracemalloc.stop()
        results.append({k: np.array(v) for k, v in resampler.finalize().items()})
    for name in ("data", "weight", "context", "err", "var_rnoise"):
        np.testing.assert_array_equal(results[0][name], results[1][name])
    data_bytes = SHAPE[0] * SHAPE[1] * 4
    before = max(p for s, p in peaks if s)
    after = max(p for s, p in peaks if not s)
    # one band's difference at most, not a second copy of the data
    assert after - before < data_bytes / 2, (before, after)


@pytest.mark.parametrize("constant_rnoise", [False, True])
def test_inputs_read_from_their_files_by_rows(tmp_path, monkeypatch, constant_rnoise):
    """Fused kernels read an unread uncompressed input's data and variances from its
    file a band of rows at a time (scaled and sky-subtracted there), without staged
    copies: the products are bit for bit those of the arrays read whole and staged."""
    monkeypatch.setattr(resample_module, "BAND_ROWS", 8)  # bands of 8 of the 96 rows
    paths, _ = _write(tmp_path)
    rng = np.random.default_rng(5)
    for p in paths:
        with ImageModel(p) as model:
            model.var_rnoise = (np.full(SHAPE, 4.5e-4) if constant_rnoise else
                                rng.uniform(3e-4, 6e-4, SHAPE)).astype(np.float16)  # fmt: skip
            model.save(p)
    step = ResampleStep()
    library = ModelLibrary([str(p) for p in paths])
    metas = [library.read_meta(i) for i in range(len(library))]
    wcs, _, ratio = step._grid(library, metas)
    factor = 0.0123  # a pending unit conversion: float16 variances underflow
    results = []
    for whole in (True, False):
        resampler = resample_module.Resampler(wcs, len(paths), pixel_scale_ratio=ratio,
                                              weight_type="ivm-median")  # fmt: skip
        for i, p in enumerate(paths):
            with ImageModel(p) as model:
                model._set_array_scales({"data": factor, "var_poisson": factor**2,
                                         "var_rnoise": factor**2})  # fmt: skip
                if whole:
                    for name in ("data", "var_poisson", "var_rnoise"):
                        setattr(model, name, np.array(getattr(model, name)))
                pixmap = calc_pixmap(model.meta.wcs, wcs, SHAPE)
                resampler.add(model, i, exposure_time=10.0, effective_time=9.5,
                              level=0.37 * factor, pixmap=pixmap)  # fmt: skip
        staged = resampler._staged
        mapped = [isinstance(s.data, resample_module._DataRows) for s in staged]
        assert mapped == [not whole] * len(paths)
        if not whole:  # var_poisson (and a varying var_rnoise) read by rows too
            assert all(isinstance(v, MappedArray) for s in staged for v in s.values
                       if np.ndim(v) == 2)  # fmt: skip
            assert sum(np.ndim(v) == 2 for v in staged[0].values) == 2 - constant_rnoise
        results.append({k: np.array(v) for k, v in resampler.finalize().items()})
    assert set(results[0]) == set(results[1])
    for name, value in results[0].items():
        assert np.array_equal(results[1][name], value, equal_nan=True), name
    assert np.count_nonzero(results[0]["weight"]) > 0.5 * results[0]["weight"].size


def test_drizzles_read_unloaded_data_from_the_inputs(tmp_path):
    """Finding a member's shape for its pixel map does not read its data, so the
    drizzle reads the data's rows from the input (`mapped_array`) instead of staging a
    full-size copy to a temporary file."""
    from romancal_lite.steps.resample import resample as resample_module
    from romancal_lite.steps.resample.resample_step import _member_pixmap

    paths, asn = _write(tmp_path)
    library = ModelLibrary(asn)
    step = ResampleStep()
    metas = [library.read_meta(i) for i in range(len(library))]
    wcs, _, ratio = step._grid(library, metas)
    resampler = resample_module.Resampler(wcs, len(library), pixel_scale_ratio=ratio)
    with library:
        image = library.borrow(0)
        pixmap = _member_pixmap(library, 0, image, wcs, step)
        assert pixmap.shape[:2] == tuple(SHAPE)
        assert type(image._node._data["data"]).__name__ == "NDArrayType"  # not read
        resampler.add(image, 0, exposure_time=1.0, effective_time=1.0, level=None,
                      pixmap=pixmap)  # fmt: skip
        library.shelve(image, 0, modify=False)
    (staged,) = resampler._staged
    assert isinstance(staged.data, resample_module._DataRows)


@pytest.mark.parametrize("maps", [False, True])
def test_ivm_weights_are_computed_from_the_mapped_read_noise(tmp_path, maps):
    """With ``weight_type="ivm"`` the weights (1 / var_rnoise on good pixels, 0 where
    not finite) are computed from the input's var_rnoise a block of rows at a time as
    it is read (`_IvmRows`), not built full-size and staged: the products are the same
    bit for bit as from the full-size weight of an input whose var_rnoise is in memory,
    including zero, negative, infinite and NaN variances and bad pixels."""
    model = md.make_image(1, 1, shape=SHAPE, stars=_bright_stars())
    rnoise = np.asarray(model.var_rnoise, np.float32).copy()
    rnoise[3, :5] = [0.0, -1.0, np.inf, np.nan, 1e-30]
    rnoise[40:44, 10:20] *= 7.5
    model.var_rnoise = rnoise
    dq = np.asarray(model.dq).copy()
    dq[50:52, 30:60] = 1  # DO_NOT_USE
    model.dq = dq
    path = model.save(tmp_path / model.meta.filename)
    step = ResampleStep()
    library = ModelLibrary([path])
    metas = [library.read_meta(0)]
    wcs, _, ratio = step._grid(library, metas)

    def drizzle(load: bool):
        resampler = resample_module.Resampler(wcs, 1, pixel_scale_ratio=ratio, weight_type="ivm",
                                              maps=maps)  # fmt: skip
        with ImageModel(path) as image:
            if load:
                np.asarray(image.var_rnoise)  # in memory: no mapped rows
            resampler.add(image, 0, exposure_time=1.0, effective_time=1.0, level=None)
            (staged,) = resampler._staged
            weight = staged.weight
            coverage = None if staged.coverage is None else np.array(staged.coverage)
            if not load:
                assert isinstance(weight, resample_module._IvmRows)
                assert type(image._node._data["var_rnoise"]).__name__ == "NDArrayType"
                rows = np.concatenate([weight[r:r + 7] for r in range(0, SHAPE[0], 7)])
            else:
                assert not isinstance(weight, resample_module._IvmRows)
                rows = np.asarray(weight)
            products = resampler.finalize()
        return rows, products, coverage

    mapped_rows, mapped, mapped_coverage = drizzle(load=False)
    full_rows, full, full_coverage = drizzle(load=True)
    assert np.array_equal(mapped_rows.view(np.uint32), full_rows.view(np.uint32))
    # the exposure-time map's good-pixel mask (the weights differ from it where the
    # variance is not usable on a good pixel)
    if maps:
        assert full_coverage is not None and np.array_equal(mapped_coverage, full_coverage)
    else:
        assert mapped_coverage is None and full_coverage is None
    assert (full_rows == 0).sum() >= 60 + 4
    for name, value in full.items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(np.asarray(mapped[name]).view(np.uint8),
                                  value.view(np.uint8)), name  # fmt: skip
        else:
            assert mapped[name] == value or (value != value and mapped[name] != mapped[name])


def test_row_extents_of_a_kept_map_are_kept_beside_it(tmp_path, monkeypatch):
    """The rows' extents of a map kept by `member_pixmap` are computed once per box and
    read back by the next use (outlier_detection's drizzle, then resample's), also
    after the last use removed the map's file; a map that is not kept keeps nothing."""
    import romancore.drizzle
    from romancal_lite.steps.resample import pixmap as pixmap_module

    paths, asn = _write(tmp_path)
    library = ModelLibrary(asn)
    step = ResampleStep()
    metas = [library.read_meta(i) for i in range(len(library))]
    wcs, _, _ = step._grid(library, metas)
    calls = []
    real = romancore.drizzle.row_extents
    monkeypatch.setattr(romancore.drizzle, "row_extents",
                        lambda *a, **k: calls.append(1) or real(*a, **k))  # fmt: skip
    with library:
        image = library.borrow(0)
        shape, image_wcs = tuple(image.shape), image.meta.wcs
        library.shelve(image, 0, modify=False)
    kept = pixmap_module.member_pixmap(library, 0, image_wcs, wcs, shape)
    box = pixmap_module.resample_range(shape, image_wcs)
    first = pixmap_module.row_extents(kept, box)
    n = len(calls)
    assert n > 0
    assert len(list(kept.kept_path.parent.glob("*.extents_*.npy"))) == 1
    assert len(calls) == n and pixmap_module.row_extents(kept, box)[0] is not first[0]
    path = kept.kept_path
    last = pixmap_module.member_pixmap(library, 0, image_wcs, wcs, shape, keep=False)
    # the last use removed the map's file and the kept extents', holding them
    assert not path.exists() and not list(path.parent.glob("*.extents_*.npy"))
    again = pixmap_module.row_extents(last, box)
    assert len(calls) == n  # read back, not computed
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a, b)
    # another box is computed (and equals the plain computation)
    other = (box[0] + 3, box[1] - 5, box[2] + 2, box[3] - 7)
    plain = np.array(last)  # not a kept map: nothing kept
    assert getattr(plain, "kept_path", None) is None
    for a, b in zip(pixmap_module.row_extents(last, other),
                    pixmap_module.row_extents(plain, other), strict=True):  # fmt: skip
        assert np.array_equal(a, b)
    assert not list(path.parent.glob("*.extents_*.npy"))  # nothing kept after the last use
    assert np.isinf(pixmap_module.row_extents(plain, other)[0][: other[2]]).all()
