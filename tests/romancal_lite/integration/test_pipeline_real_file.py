"""``roman_elp`` end to end on the real romanisim Level 1 strip (../shared/data).

The strip is columns 0-127 of detector WFI02 (10 resultants, MA table 109). The
references are selected through crds from a cache generated from the constants romanisim
recorded in the file (gain 2 e/DN, read noise 5 DN, dark 0.01 e/s, saturation 55000 DN,
no non-linearity, flat 1), at the strip's read-out shape, except the MASK: the strip
has no right-hand border (its last four columns are science pixels), so the test gives a
MASK flagging only the left, top and bottom borders, as the detector's own MASK cut to
these columns would. The file's own truth (``romanisim.dq``: JUMP_DET on every resultant
that received a cosmic ray) says which pixels must be flagged, and its catalogue of
injected sources (``romanisim.simcatobj``: position, total counts) what their fluxes are.
Nothing here is tuned to romancal_lite's own simulator.
"""

import shutil
from pathlib import Path

import asdf
import numpy as np
import pytest

from romancal_lite import cli, datamodels
from romancal_lite.references import builtin_cache, generate_cache
from romancore.dqflags import pixel

REAL = Path(__file__).parents[3].parent / "shared" / "data" / (
    "romanisim_l1_strip_wfi02_ma109.asdf"
)
pytestmark = pytest.mark.skipif(not REAL.exists(), reason="../shared/data not present")
NAME = "r0000101001001001001_0001_wfi02"


@pytest.fixture(scope="module")
def strip_cache(tmp_path_factory):
    with asdf.open(REAL) as af:
        shape = tuple(af["roman"]["data"].shape[1:])
    return generate_cache(tmp_path_factory.mktemp("strip_crds"), full_shape=shape)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, strip_cache):
    tmp = tmp_path_factory.mktemp("strip_run")
    inp = tmp / f"{NAME}_uncal.asdf"
    shutil.copy(REAL, inp)
    with datamodels.open(inp) as raw:
        mask = datamodels.MaskRefModel.create_fake_data(shape=raw.data.shape[1:])
        mask.meta.instrument.detector = raw.meta.instrument.detector
    flag = np.uint32(pixel.REFERENCE_PIXEL)
    mask.dq[:4] = flag
    mask.dq[-4:] = flag
    mask.dq[:, :4] = flag
    mask.save(tmp / "strip_mask.asdf")
    with builtin_cache(strip_cache, hide_user_crds=True):
        status = cli.main(["run", "roman_elp", str(inp), "--output-dir", str(tmp / "out"),
                           "--override-mask", str(tmp / "strip_mask.asdf")])
    assert status == 0
    with asdf.open(REAL) as af:
        truth_dq = np.asarray(af["romanisim"]["dq"])
    return tmp / "out" / f"{NAME}_cal.asdf", truth_dq, inp


def test_cal_file_written_with_every_step(calibrated):
    cal, _, inp = calibrated
    base = cal.name.removesuffix("_cal.asdf")
    assert sorted(p.name for p in cal.parent.iterdir()) == sorted(
        f"{base}_{s}" for s in ("cal.asdf", "wcs.asdf", "cat.parquet", "segm.asdf")
    )
    with datamodels.open(cal) as image:
        assert isinstance(image, datamodels.ImageModel)
        assert image.data.shape == (4096 - 8, 128 - 8)
        steps = image.meta.cal_step
        for key in ("dq_init", "saturation", "refpix", "linearity", "ramp_fit", "dark",
                    "assign_wcs", "photom", "flat_field", "source_catalog"):
            assert steps[key] == "COMPLETE", key
        assert steps["tweakreg"] == "SKIPPED"  # no reference catalog given
        assert image.meta.photometry.conversion_megajanskys > 0
        assert str(image.meta.wcsinfo.s_region).startswith("POLYGON")


def test_rates_are_sensible(calibrated):
    cal, _, _ = calibrated
    with datamodels.open(cal) as image:
        data = np.asarray(image.data, np.float64)
        err = np.asarray(image.err, np.float64)
        good = (image.dq & pixel.DO_NOT_USE) == 0
    assert good.mean() > 0.99
    sky = np.median(data[good])
    # romanisim sky in F158 is a fraction of a DN/s; the noise of one pixel is ~0.05 DN/s
    assert 0.05 < sky < 2.0
    assert np.all(np.isfinite(data[good]))
    # sky pixels scatter as their error bars say
    faint = good & (np.abs(data - sky) < 5 * np.median(err[good]))
    pull = (data[faint] - sky) / err[faint]
    assert 0.8 < np.std(pull) < 1.25


def test_injected_cosmic_rays_are_found(calibrated):
    cal, truth_dq, _ = calibrated
    hit = (truth_dq & 4).any(axis=0)[4:-4, 4:-4]
    with datamodels.open(cal) as image:
        jump = (image.dq & pixel.JUMP_DET) != 0
        saturated = (image.dq & pixel.SATURATED) != 0
    hit &= ~saturated
    assert hit.sum() > 500
    assert jump[hit].mean() > 0.9
    assert jump[~hit].mean() < 1e-3


def test_references_match_the_simulation(calibrated):
    cal, _, _ = calibrated
    with datamodels.open(cal) as image:
        ref_file = image.meta.ref_file
        source = str(ref_file.source)
        pedigree = dict(ref_file.pedigree)
        gain_file = str(ref_file.gain)
    assert "romanisim 0.14.0" in source and "gain 2 e/DN" in source
    assert pedigree.pop("mask") != "SIMULATION"  # the test's own MASK
    assert set(pedigree.values()) == {"SIMULATION"}
    assert "/matched/" in gain_file


def test_injected_sources_are_recovered(calibrated):
    """Aperture fluxes of romanisim's injected sources against their total counts.

    The sources are faint galaxies (200-3000 e in the whole 139 s exposure), so each
    flux is uncertain by 15-50 %; their sum is compared (uncertainty ~10 %), and every
    source bright enough must stand out of the noise where romanisim put it.
    """
    cal, _, _ = calibrated
    with asdf.open(REAL) as af:
        catalog = np.asarray(af["romanisim"]["simcatobj"])
        exptime = float(af["roman"]["meta"]["exposure"]["exposure_time"])
        gain = float(af["romanisim"]["simulate_reffiles"]["gain"])
    with datamodels.open(cal) as image:
        data = np.asarray(image.data, np.float64)
        err = np.asarray(image.err, np.float64)
    yy, xx = np.indices(data.shape)
    measured = expected = 0.0
    used = 0
    for x, y, counts, _ in catalog:
        # simcatobj positions are 0-based science-pixel coordinates
        if not 25 <= x <= data.shape[1] - 25 or counts < 1000:
            continue
        r = np.hypot(xx - x, yy - y)
        background = np.median(data[(r > 25) & (r < 40)])
        snr = [
            (data[r < radius] - background).sum() / np.sqrt((err[r < radius] ** 2).sum())
            for radius in (5, 10)
        ]
        assert max(snr) > 3.5, (x, y, counts, snr)
        measured += (data[r < 20] - background).sum() * gain * exptime
        expected += counts
        used += 1
    assert used >= 4
    assert 0.85 < measured / expected < 1.2


def test_input_untouched(calibrated):
    _, _, inp = calibrated
    assert inp.read_bytes() == REAL.read_bytes()
