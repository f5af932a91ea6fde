"""MosaicModel (``wfi_mosaic``): written by us, read and validated by roman_datamodels."""

import numpy as np
import pytest
from astropy import coordinates as coord
from astropy import units as u
from astropy.modeling import models

from romancal_lite import datamodels
from romancal_lite.datamodels import MosaicModel


def _wcs():
    from gwcs import coordinate_frames as cf
    from gwcs import wcs as gw

    transform = (
        (models.Shift(-5) & models.Shift(-5))
        | (models.Scale(3e-5) & models.Scale(3e-5))
        | models.Pix2Sky_TAN()
        | models.RotateNative2Celestial(30, 45, 180)
    )
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="icrs", unit=(u.deg, u.deg))
    return gw.WCS([(cf.Frame2D(name="detector"), transform), (sky, None)])


def _mosaic():
    rng = np.random.default_rng(1)
    model = MosaicModel.create_fake_data(
        {"meta": {"wcs": _wcs()}, "context": np.full((2, 10, 12), 5, np.uint32)}, shape=(10, 12)
    )
    model.data = rng.normal(size=(10, 12)).astype(np.float32)
    model.var_flat = np.ones((10, 12), np.float32)
    model.meta.cal_step.resample = "COMPLETE"
    model.meta.resample.members = ["a_cal.asdf", "b_cal.asdf"]
    return model


def test_defaults_and_arrays():
    model = _mosaic()
    assert model.meta.model_type == "MosaicModel"
    assert set(model.meta.cal_step) == {"flux", "outlier_detection", "skymatch", "resample"}
    assert model.context.dtype == np.uint32 and model.context.shape == (2, 10, 12)
    assert model.err.dtype == np.float32 and model.weight.shape == (10, 12)


def test_round_trip(tmp_path):
    model = _mosaic()
    path = model.save(tmp_path / "x_coadd.asdf")
    back = datamodels.open(path)
    assert isinstance(back, MosaicModel)
    np.testing.assert_array_equal(back.data, model.data)
    assert back.meta.resample.members == ["a_cal.asdf", "b_cal.asdf"]
    assert back.meta.wcs(5, 5) == pytest.approx((30, 45))


def test_roman_datamodels_reads_and_validates_it(tmp_path):
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    path = _mosaic().save(tmp_path / "x_coadd.asdf")
    with rdm.open(path) as theirs:
        assert type(theirs).__name__ == "MosaicModel"
        theirs.validate()
        assert theirs.context.shape == (2, 10, 12) and theirs.var_flat.dtype == np.float32
        assert theirs.meta.cal_step.resample == "COMPLETE"
    # and we read romancal's own minimal mosaic
    rdm.MosaicModel.create_fake_data(shape=(8, 8)).save(tmp_path / "theirs_coadd.asdf")
    ours = datamodels.open(tmp_path / "theirs_coadd.asdf")
    assert isinstance(ours, MosaicModel) and ours.data.shape == (8, 8)
