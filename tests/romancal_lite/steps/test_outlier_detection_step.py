"""outlier_detection: hand cases, a dithered set with cosmic rays, romancal 1.1, memory."""

import logging
import os
import tempfile
import tracemalloc

import mosaic_data as md
import numpy as np
import pytest

from romancal_lite.associations import asn_from_list, write_asn
from romancal_lite.datamodels import ImageModel, ModelLibrary
from romancal_lite.errors import ConfigError, InputFileError
from romancal_lite.steps.outlier_detection import (
    OnDiskMedian,
    OutlierDetectionStep,
    abs_derivative,
    flag_crs,
    flag_resampled_crs,
    mask_low_weight,
    nanmedian_axis0,
    weight_threshold,
)

SHAPE = (64, 64)
OUTLIER = 1 << 7
DO_NOT_USE = 1
#: small dithers (arcsec; 0.11"/pixel): the exposures overlap almost entirely
DITHERS = [(0.0, 0.0), (0.53, 0.31), (0.22, 0.64), (0.71, 0.13)]
CR = 5.0  # MJy/sr added by a cosmic ray: ~70 sigma on the sky


def _stars():
    return [(a, b, 20 * f) for a, b, f in md.stars_in(SHAPE, 8, 3)]


def _cr_positions(model, rng, level, n=8):
    """Sky pixels (no star within 6 pixels) away from the edges."""
    clean = model.data - (level or 0.0) < 0.6  # sky 0.5
    ny, nx = model.data.shape
    found = []
    while len(found) < n:
        y, x = (int(v) for v in rng.integers(6, ny - 6, 2))
        if clean[y - 6 : y + 7, x - 6 : x + 7].all() and (y, x) not in found:
            found.append((y, x))
    return tuple(np.array(v) for v in zip(*found, strict=True))


def _write(directory, dithers=DITHERS, *, crs=True, levels=None, seed=1, shape=SHAPE):
    """One exposure per dither (detector 1), cosmic rays on the sky of each."""
    rng = np.random.default_rng(seed)
    stars = _stars()
    paths, hits = [], []
    for e, dither in enumerate(dithers, start=1):
        level = None if levels is None else levels[e - 1]
        model = md.make_image(e, 1, dither=dither, stars=stars, level=level, shape=shape)
        if crs:
            y, x = _cr_positions(model, rng, level)
            model.data[y, x] += CR
            hits.append((y, x))
        paths.append(model.save(directory / model.meta.filename))
    asn = directory / "mos_asn.json"
    write_asn(asn_from_list(paths, "mos", relative_to=directory), asn)
    return paths, asn, hits


def _dq(library):
    out = []
    with library:
        for i in range(len(library)):
            model = library.borrow(i)
            out.append(np.array(model.dq))
            library.shelve(model, i)
    return out


# ---------------------------------------------------------------- hand cases
def test_abs_derivative_by_hand():
    image = np.array([[0, 1, 3], [4, np.nan, 2], [4, 4, 4]], np.float32)
    # (0,0): |0-1|, |0-4| -> 4;  (0,1): |1-0|, |1-3| (NaN below ignored) -> 2
    # (0,2): |3-1|, |3-2| -> 2;  (1,0): |4-0|, |4-4| (NaN right ignored) -> 4
    # (1,2): |2-3|, |2-4| -> 2;  (2,1): |4-4|, |4-4| (NaN above ignored) -> 0
    expected = np.array([[4, 2, 2], [4, np.nan, 2], [0, 0, 2]], np.float32)
    np.testing.assert_array_equal(abs_derivative(image), expected)


def test_flag_resampled_crs_by_hand():
    blot = np.zeros((5, 5), np.float32)
    err = np.ones((5, 5), np.float32)
    sci = np.zeros((5, 5), np.float32)
    sci[2, 2] = 10.0  # > 5 sigma: first test; > 4 sigma: second
    sci[2, 3] = 4.5  # only the second test, next to a first-test pixel: flagged
    sci[0, 0] = 4.5  # only the second test, isolated: not flagged
    sci[4, 4] = 5.5  # both tests
    mask = flag_resampled_crs(sci, err, blot, 5.0, 4.0, 1.2, 0.7, 0.0)
    assert set(zip(*np.nonzero(mask), strict=True)) == {(2, 2), (2, 3), (4, 4)}
    # the derivative raises the threshold: a step of 10 in the blot next to the pixel
    blot2 = blot.copy()
    blot2[4, 3] = 10.0  # |deriv| at (4,4) = 10: 5.5 < 1.2*10 + 5 and < 0.7*10 + 4
    sci2 = sci.copy()
    sci2[4, 3] = 10.0
    assert not flag_resampled_crs(sci2, err, blot2, 5.0, 4.0, 1.2, 0.7, 0.0)[4, 4]
    # backg comes off the difference; a NaN error counts as 0; a NaN blot never flags
    assert flag_resampled_crs(sci + 3, err, blot, 5.0, 4.0, 1.2, 0.7, 3.0).sum() == 3
    err_nan = err.copy()
    err_nan[0, 0] = np.nan
    assert flag_resampled_crs(sci, err_nan, blot, 5.0, 4.0, 1.2, 0.7, 0.0)[0, 0]  # 4.5 > 0
    nan_blot = blot.copy()
    nan_blot[2, 2] = np.nan
    assert not flag_resampled_crs(sci, err, nan_blot, 5.0, 4.0, 1.2, 0.7, 0.0)[2, 2]


def test_flag_crs_by_hand():
    sci = np.array([[1.0, 7.0, 2.0]], np.float32)
    err = np.array([[1.0, 1.0, np.nan]], np.float32)
    median = np.array([[0.0, 1.0, 1.9]], np.float32)
    np.testing.assert_array_equal(flag_crs(sci, err, median, 5.0), [[False, True, True]])


def test_weight_threshold_by_hand():
    weight = np.array([[2.0, 2.0, 2.0, 2.0, 0.0, np.nan]])
    assert weight_threshold(weight, 0.7) == pytest.approx(1.4)
    # a single wild value is clipped away (3 sigma)
    weight = np.concatenate([np.full(50, 2.0), [1000.0]])
    assert weight_threshold(weight, 0.5) == pytest.approx(1.0)
    assert np.isnan(weight_threshold(np.zeros(4), 0.7))


def test_weight_threshold_matches_astropy_over_several_passes():
    """Heavy tails: the clip takes several passes; the threshold is astropy's
    sigma_clip (sigma 3, 5 passes) mean times maskpt (stcal compute_weight_threshold)."""
    from astropy.stats import sigma_clip

    rng = np.random.default_rng(3)
    for size in (20001, 20000):
        weight = np.concatenate([rng.normal(100.0, 5.0, size),
                                 rng.standard_cauchy(size // 8) * 30 + 100]).astype(np.float32)
        weight[rng.random(weight.size) < 0.1] = 0
        values = weight[weight != 0]
        clipped = sigma_clip(values, sigma=3, maxiters=5, masked=True)
        expected = float(np.mean(values[~clipped.mask], dtype="f8")) * 0.7
        assert weight_threshold(weight, 0.7) == pytest.approx(expected, rel=1e-12)


def test_weight_threshold_compiled_gathering_same_bits():
    """float32 weights (the group images') are gathered by romancore.outlier: the same
    threshold, bit for bit, as the numpy gathering of the same values in float64."""
    rng = np.random.default_rng(5)
    weight = np.concatenate([rng.normal(100.0, 5.0, 40000),
                             rng.standard_cauchy(5000) * 30 + 100]).astype(np.float32)
    weight[rng.random(weight.size) < 0.1] = 0
    weight[rng.random(weight.size) < 0.02] = np.nan
    weight = weight[: 45000 - 45000 % 150].reshape(-1, 150)
    float32 = weight_threshold(weight, 0.7)
    # the same float32 values through the numpy path (non-contiguous rows)
    wide = np.zeros((weight.shape[0], 2 * weight.shape[1]), np.float32)
    wide[:, ::2] = weight
    assert weight_threshold(wide[:, ::2], 0.7) == float32
    assert np.isfinite(float32)


def test_nanmedian_matches_numpy():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4, 7):
        cube = rng.normal(size=(n, 9, 11)).astype(np.float32)
        cube[rng.random(cube.shape) < 0.3] = np.nan
        cube[:, 0, 0] = np.nan
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
            expected = np.nanmedian(cube, axis=0)
        np.testing.assert_array_equal(nanmedian_axis0(cube.copy()), expected)


def test_on_disk_median_blocks_and_cleanup(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.normal(size=(5, 37, 13)).astype(np.float32)
    images[rng.random(images.shape) < 0.2] = np.nan
    # a buffer of 3 rows of the 5 images: 1 row per block
    with OnDiskMedian((37, 13), 5, buffer_bytes=3 * 13 * 4 * 5 // 3, directory=tmp_path) as m:
        assert m.rows_per_block == 1
        for image in images:
            m.add(image)
        assert len(os.listdir(m.directory)) == 5
        got = m.median()
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(got, np.nanmedian(images, axis=0))
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError), OnDiskMedian((4, 4), 2, directory=tmp_path) as m:
        m.add(np.zeros((4, 4)))
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def _status_mb(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def test_on_disk_median_does_not_keep_the_images_resident(tmp_path):
    """The median's peak memory is its block and output, not the images on disk.

    Read through memory maps, the pages of every image read stayed resident until the
    maps were dropped (16 inputs: outlier_detection's peak 1.83 GB instead of 1.23 GB).
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pytest.skip("no resettable peak-memory counter (/proc/self/clear_refs)")
    shape, n = (2048, 2048), 8  # 16 MB per image, 128 MB of images
    with OnDiskMedian(shape, n, buffer_bytes=8 * 64 * 2048 * 4, directory=tmp_path) as m:
        for k in range(n):
            m.add(np.full(shape, float(k), dtype=np.float32))
        base = _status_mb("VmRSS")
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        got = m.median()
        growth = _status_mb("VmHWM") - base
    assert np.all(got == 3.5)
    # the output (16 MB) and one block (4 MB); the images would add 128 MB
    assert growth < 64, growth


# ---------------------------------------------------------------- against stcal
def test_flagging_functions_match_stcal():
    utils = pytest.importorskip("stcal.outlier_detection.utils")
    rng = np.random.default_rng(5)
    blot = rng.normal(10, 3, size=(40, 50)).astype(np.float32)
    blot[rng.random(blot.shape) < 0.05] = np.nan
    sci = (blot + rng.normal(0, 1, size=blot.shape)).astype(np.float32)
    sci[rng.random(blot.shape) < 0.05] += 30
    err = np.abs(rng.normal(1, 0.3, size=blot.shape)).astype(np.float32)
    err[rng.random(blot.shape) < 0.02] = np.nan
    np.testing.assert_array_equal(abs_derivative(blot), utils._abs_deriv(blot))
    for args in ((5.0, 4.0, 1.2, 0.7, 0.0), (3.0, 2.0, 0.5, 0.3, 0.4)):
        np.testing.assert_array_equal(
            flag_resampled_crs(sci, err, blot, *args),
            utils.flag_resampled_crs(sci, err, blot, *args),
        )
    np.testing.assert_array_equal(
        flag_crs(sci, err, blot, 4.0), utils.flag_crs(sci, err, blot, 4.0)
    )
    weight = rng.normal(5, 1, size=(30, 30))
    assert weight_threshold(weight, 0.7) == pytest.approx(
        utils.compute_weight_threshold(weight, 0.7), rel=1e-12
    )


# ---------------------------------------------------------------- a dithered set
def test_cosmic_rays_flagged_and_stars_not(tmp_path):
    paths, asn, hits = _write(tmp_path)
    result = OutlierDetectionStep.call(asn)
    dqs = _dq(result)
    for path, dq, (y, x) in zip(paths, dqs, hits, strict=True):
        flagged = (dq & OUTLIER) != 0
        assert flagged[y, x].all(), "every cosmic ray is flagged"
        assert ((dq[flagged] & DO_NOT_USE) != 0).all()
        with ImageModel(path) as original:
            star = original.data > 1.0  # star cores (the sky is 0.5)
            star[y, x] = False
            assert star.sum() > 30
            assert not flagged[star].any(), "no star pixel is flagged"
        # a cosmic ray and at most its 8 neighbours (the grown first test)
        assert flagged.sum() <= 9 * len(y)
    with result:
        for i in range(len(result)):
            model = result.borrow(i)
            assert model.meta.cal_step.outlier_detection == "COMPLETE"
            result.shelve(model, i)


def test_switched_off_flags_nothing(tmp_path):
    _, asn, _ = _write(tmp_path)
    result = OutlierDetectionStep.call(asn, skip=True)
    assert not any(((dq & OUTLIER) != 0).any() for dq in _dq(result))


def test_sky_level_added_to_the_blot(tmp_path):
    """Unsubtracted sky levels differ by exposure: compared as romancal (blot + level)."""
    paths, asn, hits = _write(tmp_path, levels=(0.3, 1.1, 0.0, 2.0))
    dqs = _dq(OutlierDetectionStep.call(asn))
    for dq, (y, x) in zip(dqs, hits, strict=True):
        flagged = (dq & OUTLIER) != 0
        assert flagged[y, x].all() and flagged.sum() <= 9 * len(y)


def test_without_resampling(tmp_path):
    _, asn, hits = _write(tmp_path, [(0.0, 0.0)] * 4)
    dqs = _dq(OutlierDetectionStep.call(asn, resample_data=False))
    for dq, (y, x) in zip(dqs, hits, strict=True):
        flagged = (dq & OUTLIER) != 0
        assert flagged[y, x].all() and flagged.sum() == len(y)


def test_single_exposure_skipped(tmp_path, caplog):
    paths, _, _ = _write(tmp_path, DITHERS[:1])
    with caplog.at_level(logging.INFO):
        result = OutlierDetectionStep.call(ModelLibrary(paths))
    lines = [r for r in caplog.records if "skipped" in r.getMessage().lower()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    with result:
        model = result.borrow(0)
        assert model.meta.cal_step.outlier_detection == "SKIPPED"
        assert not (np.asarray(model.dq) & OUTLIER).any()
        result.shelve(model, 0)


def test_temporary_files_removed_also_on_error(tmp_path, monkeypatch):
    _, asn, _ = _write(tmp_path)
    # a temporary directory of this test's own (other processes use the system's)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    made = []
    real_init = OnDiskMedian.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        made.append(self.directory)

    monkeypatch.setattr(OnDiskMedian, "__init__", spy)
    OutlierDetectionStep.call(asn)
    assert made and not any(os.path.exists(d) for d in made)

    def boom(self, image, weight, threshold):
        raise RuntimeError("disk full")

    # the step writes its group images with their low weights masked (add_masked)
    monkeypatch.setattr(OnDiskMedian, "add_masked", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        OutlierDetectionStep.call(asn)
    assert len(made) == 2 and not any(os.path.exists(d) for d in made)
    assert made[0].startswith(str(scratch)) and not list(scratch.iterdir())


def test_flag_pass_error_hands_back_every_member(tmp_path, monkeypatch):
    """An error while a member is flagged propagates as it is, and the borrowed member
    is handed back (the library can be borrowed from again)."""
    _, asn, _ = _write(tmp_path)
    real_flag, calls = OutlierDetectionStep._flag, []

    def flag_then_fail(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("flag failed")
        return real_flag(self, *args, **kwargs)

    monkeypatch.setattr(OutlierDetectionStep, "_flag", flag_then_fail)
    library = ModelLibrary(asn)
    with pytest.raises(RuntimeError, match="flag failed"):
        OutlierDetectionStep.call(library)
    with library:
        for i in range(len(library)):
            library.shelve(library.borrow(i), i, modify=False)


def test_bad_parameters_and_inputs(tmp_path):
    paths, asn, _ = _write(tmp_path, DITHERS[:2], crs=False)
    with pytest.raises(ConfigError, match="snr"):
        OutlierDetectionStep.call(asn, snr="5")
    with pytest.raises(ConfigError, match="scale"):
        OutlierDetectionStep.call(asn, scale="a b")
    with pytest.raises(ConfigError):
        OutlierDetectionStep.call(asn, kernel="box")
    model = ImageModel(paths[1])
    model.meta.wcs = None
    with pytest.raises(InputFileError, match="no WCS"):
        OutlierDetectionStep.call([ImageModel(paths[0]), model])


# ---------------------------------------------------------------- memory
def _median_memory(directory, dithers, monkeypatch):
    """Traced bytes kept across the group drizzles, and the median's own peak.

    ``kept``: traced memory when the median starts minus when its computer was made
    (what the drizzled groups leave behind); ``peak``: the median's peak above its start.
    """
    _, asn, _ = _write(directory, dithers, seed=2, shape=(256, 256))
    library = ModelLibrary(asn, on_disk=True)
    marks = {}
    real_init, real_median = OnDiskMedian.__init__, OnDiskMedian.median

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        marks["made"] = tracemalloc.get_traced_memory()[0]

    def median(self, **kwargs):
        marks["kept"] = tracemalloc.get_traced_memory()[0] - marks["made"]
        tracemalloc.reset_peak()
        begin = tracemalloc.get_traced_memory()[0]
        out = real_median(self, **kwargs)
        marks["peak"] = tracemalloc.get_traced_memory()[1] - begin
        return out

    monkeypatch.setattr(OnDiskMedian, "__init__", init)
    monkeypatch.setattr(OnDiskMedian, "median", median)
    tracemalloc.start()
    try:
        OutlierDetectionStep.call(library, in_memory=False)
    finally:
        tracemalloc.stop()
    return marks["kept"], marks["peak"]


def test_memory_does_not_grow_with_the_number_of_exposures(tmp_path, monkeypatch):
    """8 exposures between the 2 extreme dithers (same grid) need no more memory than 2."""
    ends = np.array([(0.0, 0.0), (0.77, 0.55)])
    eight = [tuple(ends[0] + t * (ends[1] - ends[0])) for t in np.linspace(0, 1, 8)]
    for name in ("warm", "two", "eight"):
        (tmp_path / name).mkdir()
    _median_memory(tmp_path / "warm", [tuple(v) for v in ends], monkeypatch)  # imports, caches
    kept2, peak2 = _median_memory(tmp_path / "two", [tuple(v) for v in ends], monkeypatch)
    kept8, peak8 = _median_memory(tmp_path / "eight", eight, monkeypatch)
    image = 4 * 262 * 262  # bytes of one drizzled float32 image (~262 x 262 grid)
    # the median reads blocks of rows of at most one image's bytes in all: an
    # in-memory cube would be 8 images here. (``kept`` grows by ~0.3 MB a member on
    # these small images: the borrowed members' ASDF caches in the library, not the
    # drizzled images, which go to disk; it is not asserted. It can be slightly
    # negative: objects made before the median's computer, such as the resampler's
    # reader pool, may be freed by the time the median starts.)
    assert min(kept2, kept8) > -(1 << 20)
    assert peak8 < peak2 * 1.1 + image / 4, (peak2, peak8)


# ---------------------------------------------------------------- against romancal
def _romancal(asn, resample_data=True):
    rc = pytest.importorskip("romancal.outlier_detection.outlier_detection")
    from romancal.datamodels import ModelLibrary as RomancalLibrary

    library = RomancalLibrary(str(asn), on_disk=False)
    rc.detect_outliers(library, "ivm", 1.0, "square", "NaN", 0.7, 5.0, 4.0, 1.2, 0.7, 0.0,
                       False, resample_data, "~DO_NOT_USE", False, None,
                       pixmap_stepsize=10, pixmap_order=3)  # fmt: skip
    return _dq(library)


@pytest.mark.parametrize(
    ("levels", "resample_data", "dithers"),
    [
        (None, True, DITHERS),
        ((0.3, 1.1, 0.0, 2.0), True, DITHERS),
        (None, True, [(0.0, 0.0), (2.3, 1.1), (0.9, 3.0)]),
        (None, False, [(0.0, 0.0)] * 3),
    ],
)
def test_same_outliers_as_romancal(tmp_path, levels, resample_data, dithers):
    _, asn, _ = _write(tmp_path, dithers, levels=levels)
    # more, fainter outliers too: 200 random pixels of 0.3-3 MJy/sr in each exposure
    rng = np.random.default_rng(9)
    for path in sorted(tmp_path.glob("*_cal.asdf")):
        with ImageModel(path) as model:
            y, x = rng.integers(0, 64, 200), rng.integers(0, 64, 200)
            model.data[y, x] += rng.uniform(0.3, 3.0, 200).astype(np.float32)
            model.save(path)
    ours = _dq(OutlierDetectionStep.call(asn, resample_data=resample_data))
    theirs = _romancal(asn, resample_data)
    a = np.array([(d & OUTLIER) != 0 for d in ours])
    b = np.array([(d & OUTLIER) != 0 for d in theirs])
    union = (a | b).sum()
    assert union > 100
    assert (a & b).sum() >= 0.99 * union, ((a & b).sum(), a.sum(), b.sum())


# ---------------------------------------------------------------- memory: row blocks
def _traced_peak(function, *args, **kwargs):
    """``function(*args, **kwargs)`` and the peak of the memory it allocated (tracemalloc)."""
    tracemalloc.start()
    try:
        begin = tracemalloc.get_traced_memory()[0]
        out = function(*args, **kwargs)
        peak = tracemalloc.get_traced_memory()[1] - begin
    finally:
        tracemalloc.stop()
    return out, peak


def _file_copy(array):
    from romancal_lite.steps._arrays import file_array

    out = file_array(array.shape, array.dtype)
    out[...] = array
    return out


def test_weight_threshold_of_a_file_by_blocks():
    """A weight map in a file (a drizzled group): the same threshold as the values in
    memory, gathered by blocks of rows without full-size masks or a second copy."""
    rng = np.random.default_rng(5)
    shape = (4096, 300)  # 8 blocks of BLOCK_ROWS rows
    weight = rng.normal(100.0, 5.0, shape).astype(np.float32)
    weight[rng.random(shape) < 0.1] = 0
    weight[rng.random(shape) < 0.01] = np.nan
    weight[:700] = 0  # rows without data
    weight[rng.random(shape) < 0.001] *= 40  # a tail the clip removes
    in_file = _file_copy(weight)
    expected = weight_threshold(weight.ravel(), 0.7)  # one block: the plain selection
    got, peak = _traced_peak(weight_threshold, in_file, 0.7)
    assert got == expected
    values = np.count_nonzero(np.isfinite(weight) & (weight != 0)) * 4
    # the values once (sorted in place, then the kept ones gathered again); the
    # plain form holds them twice (sorted copy) plus full-size masks
    assert peak < 1.5 * values, (peak, values)


def test_add_masked_is_add_of_mask_low_weight(tmp_path):
    rng = np.random.default_rng(6)
    shape = (1100, 70)  # three blocks, the last one short
    images = rng.normal(size=(3, *shape)).astype(np.float32)
    weights = rng.uniform(0, 2, (3, *shape)).astype(np.float32)
    weights[0, rng.random(shape) < 0.2] = np.nan
    weights[1] = 0  # no usable weight: threshold NaN, nothing masked
    images[2, :5] = np.nan
    with OnDiskMedian(shape, 3, directory=tmp_path) as plain, \
            OnDiskMedian(shape, 3, directory=tmp_path) as masked:  # fmt: skip
        for image, weight in zip(images, weights, strict=True):
            plain.add(mask_low_weight(image, weight, 0.7))
            masked.add_masked(_file_copy(image), _file_copy(weight),
                              weight_threshold(weight, 0.7))  # fmt: skip
        for a, b in zip(plain.paths, masked.paths, strict=True):
            with open(a, "rb") as fa, open(b, "rb") as fb:
                assert fa.read() == fb.read()
        with pytest.raises(ValueError, match="more than"):
            masked.add_masked(images[0], weights[0], 1.0)
    with OnDiskMedian(shape, 1, directory=tmp_path) as m:
        with pytest.raises(ValueError, match="shape"):
            m.add_masked(images[0], weights[0][:10], 1.0)


def test_add_masked_holds_blocks_only(tmp_path):
    rng = np.random.default_rng(7)
    shape = (4096, 300)
    image = _file_copy(rng.normal(size=shape).astype(np.float32))
    weight = _file_copy(rng.uniform(0, 2, shape).astype(np.float32))
    with OnDiskMedian(shape, 1, directory=tmp_path) as m:
        _, peak = _traced_peak(m.add_masked, image, weight, 0.7)
    # a masked copy of the image would be image.nbytes (4.9 MB)
    assert peak < image.nbytes / 3, (peak, image.nbytes)


def test_median_in_file(tmp_path):
    from romancal_lite.steps._arrays import is_file_map

    rng = np.random.default_rng(8)
    images = rng.normal(size=(3, 41, 17)).astype(np.float32)
    images[rng.random(images.shape) < 0.3] = np.nan
    with OnDiskMedian((41, 17), 3, buffer_bytes=3 * 17 * 4 * 4, directory=tmp_path) as m:
        for image in images:
            m.add(image)
        in_memory = m.median()
        in_file = m.median(in_file=True)
    assert is_file_map(in_file) and not is_file_map(in_memory)
    np.testing.assert_array_equal(in_file, in_memory)
    assert os.listdir(tmp_path) == []


def _flag_case(shape=(45, 31), grid=(52, 40), seed=10):
    rng = np.random.default_rng(seed)
    median = rng.normal(1.0, 0.1, grid).astype(np.float32)
    median[rng.random(grid) < 0.05] = np.nan
    median[20:24, 10:20] += 30  # a bright source: large derivatives
    y, x = np.indices(shape, dtype=np.float64)
    pixmap = np.stack([x + 3.3 + 0.01 * y, y + 2.7 - 0.02 * x], axis=-1)
    pixmap[rng.random(shape) < 0.03] = np.nan
    pixmap[:, -3:, 0] += 20  # outside the grid: fillval
    sci = rng.normal(1.0, 0.1, shape).astype(np.float32)
    sci[rng.random(shape) < 0.05] += 5  # outliers
    err = np.full(shape, 0.1, np.float32)
    err[rng.random(shape) < 0.05] = np.nan
    return sci, err, median, pixmap


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 8, 44, 45, 512])
@pytest.mark.parametrize("fillval", [np.nan, 0.0])
def test_flag_blocks_is_the_whole_image_test(rows, fillval):
    """Each block's blot has 2 rows of halo: the same mask as blotting the whole image."""
    from romancal_lite.steps.outlier_detection import blot_median, flag_blocks

    sci, err, median, pixmap = _flag_case()
    blot = blot_median(median, None, sci.shape, None, fillval=fillval, pixmap=pixmap)
    expected = flag_resampled_crs(sci, err, blot, 5.0, 4.0, 1.2, 0.7, 0.05)
    assert 10 < expected.sum() < expected.size // 4
    # float16 errors, as _cal files hold them: converted by the compiled test either way
    for e in (err, err.astype(np.float16)):
        if e.dtype == np.float16:
            expected = flag_resampled_crs(sci, e, blot, 5.0, 4.0, 1.2, 0.7, 0.05)
        got = flag_blocks(sci, e, median, pixmap, 5.0, 4.0, 1.2, 0.7, 0.05,
                          fillval=fillval, rows=rows)  # fmt: skip
        np.testing.assert_array_equal(got, expected)
    # in files (pages handed back after each block): the same
    got = flag_blocks(_file_copy(sci), _file_copy(err), _file_copy(median), _file_copy(pixmap),
                      5.0, 4.0, 1.2, 0.7, 0.05, fillval=fillval, rows=rows)  # fmt: skip
    np.testing.assert_array_equal(got, flag_resampled_crs(sci, err, blot, 5.0, 4.0, 1.2, 0.7,
                                                          0.05))  # fmt: skip


def test_flag_blocks_holds_no_full_size_float_arrays():
    from romancal_lite.steps.outlier_detection import flag_blocks

    sci, err, median, pixmap = _flag_case(shape=(4096, 300), grid=(4110, 330))
    got, peak = _traced_peak(flag_blocks, sci, err, median, pixmap, 5.0, 4.0, 1.2, 0.7, 0.0,
                             rows=256)  # fmt: skip
    # the boolean mask (1 byte a pixel) and one block; a full-size blot alone is 4
    assert peak < 2 * sci.size, (peak, sci.size)
    assert got.any()


def test_kept_pixel_map_is_its_file(tmp_path, monkeypatch):
    """The map kept for the later uses is computed into its file by blocks of rows and
    returned as that file's map (never held in memory), with the values of one
    in-memory evaluation; a kept map whose file vanished is a one-line InputFileError."""
    import copy

    from romancal_lite.steps._arrays import file_array, is_file_map
    from romancal_lite.steps.resample import ResampleStep, calc_pixmap
    from romancal_lite.steps.resample import pixmap as pixmap_module

    monkeypatch.setattr(pixmap_module, "PIXMAP_ROWS", 7)  # 10 blocks, the last short
    _, asn, _ = _write(tmp_path, DITHERS[:2], crs=False)
    library = ModelLibrary(asn, on_disk=True)
    metas = [library.read_meta(i) for i in range(len(library))]
    grid, _, _ = ResampleStep()._grid(library, metas)
    with library:
        model = library.borrow(1)
        shape = model.data.shape
        first = pixmap_module.member_pixmap(library, 1, model.meta.wcs, grid, shape)
        assert is_file_map(first, copy_on_write=True)
        np.testing.assert_array_equal(first, calc_pixmap(model.meta.wcs, grid, shape))
        # a bounding box inside the image (NaN around it), cubic and linear
        wcs = copy.deepcopy(model.meta.wcs)
        wcs.bounding_box = ((3.4, 50.2), (5.6, 40.1))
        for order in (1, 3):
            expected = calc_pixmap(wcs, grid, shape, order=order)
            assert np.isnan(expected[0, 0, 0]) and np.isfinite(expected[20, 20]).all()
            out = file_array((*shape, 2), np.float64)
            got = calc_pixmap(wcs, grid, shape, order=order, out=out)
            assert got is out
            np.testing.assert_array_equal(out, expected)
        with pytest.raises(ValueError, match="out must be"):
            calc_pixmap(wcs, grid, shape, out=np.zeros((*shape, 2), np.float32))
        library.shelve(model, 1)
    with pytest.raises(InputFileError, match="missing") as info:
        pixmap_module._load_kept(tmp_path / "pixmap_gone.npy")
    assert "\n" not in str(info.value)
