"""Fake models and steps for the framework tests (no datamodels or references needed).

Test modules load this file with ``load_fakes`` (conftest.py, test_cli.py) under the
fixed name `MODULE_NAME`, so registry class paths can point at it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

from romancal_lite.errors import InputFileError, NoScienceDataError
from romancal_lite.stpipe import Param, Pipeline, Step

MODULE_NAME = "romancal_lite_stpipe_test_fakes"


class FakeModel:
    """A model with the duck-typed contract: meta, save, get_crds_parameters, copy."""

    crds_observatory = "roman"

    def __init__(self, data=(1, 2, 3), filename=None):
        self.data = list(data)
        self.meta = SimpleNamespace(
            filename=filename,
            cal_step=SimpleNamespace(),
            ref_file=SimpleNamespace(),
            calibration_software_version=None,
        )

    def save(self, path):
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict()))
        os.replace(tmp, path)
        return str(path)

    def to_dict(self):
        return {
            "data": self.data,
            "filename": self.meta.filename,
            "cal_step": vars(self.meta.cal_step),
            "ref_file": vars(self.meta.ref_file),
            "calibration_software_version": self.meta.calibration_software_version,
        }

    @classmethod
    def load(cls, path):
        try:
            tree = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise InputFileError(f"not a fake model file: {path}") from exc
        model = cls(tree["data"], filename=Path(path).name)
        model.meta.cal_step = SimpleNamespace(**tree.get("cal_step", {}))
        return model

    def get_crds_parameters(self):
        return {"roman.meta.instrument.name": "WFI"}

    def copy(self):
        new = FakeModel(self.data, self.meta.filename)
        new.meta.cal_step = SimpleNamespace(**vars(self.meta.cal_step))
        return new


def write_input(path, data=(1, 2, 3)):
    """Write a fake input file and return its path."""
    FakeModel(data).save(path)
    return Path(path)


class FakeBase(Step):
    """Opens fake JSON model files instead of calling romancal_lite.datamodels."""

    def open_input(self, input):  # noqa: A002
        if isinstance(input, str | os.PathLike):
            path = Path(input)
            if not path.is_file():
                raise InputFileError(f"input file not found: {input}")
            return FakeModel.load(path)
        return input


class FakeSaturationStep(FakeBase):
    """Add n_pix_grow_sat to every value (a stand-in for saturation)."""

    class_alias = "fake_saturation"
    reference_file_types = ("saturation",)

    n_pix_grow_sat = Param(int, 0, "Grow saturated pixels by this many pixels", minimum=0)
    threshold = Param(float, 1.5, "A float threshold")
    mode = Param(str, "fast", "Algorithm", choices=("fast", "slow"))
    flag = Param(bool, False, "A boolean switch")

    calls = 0

    def process(self, model):
        type(self).calls += 1
        self.get_reference_file(model, "saturation")
        model.data = [x + self.n_pix_grow_sat for x in model.data]
        return model


class FakeLinearityStep(FakeBase):
    """Multiply every value by scale."""

    class_alias = "fake_linearity"
    reference_file_types = ("linearity",)
    scale = Param(float, 1.0, "Multiplier")

    def process(self, model):
        self.get_reference_file(model, "linearity")
        model.data = [x * self.scale for x in model.data]
        return model


class FakePipeline(Pipeline, FakeBase):
    """Run the fake saturation and linearity steps."""

    class_alias = "fake_elp"
    suffix = Param(str, "cal", "Suffix of the output file name")
    step_defs = {"fake_saturation": FakeSaturationStep, "fake_linearity": FakeLinearityStep}


class FakeNoDataStep(FakeBase):
    """Raise NoScienceDataError."""

    class_alias = "fake_nodata"

    def process(self, model):
        raise NoScienceDataError("all pixels are saturated")


class FakeBuggyStep(FakeBase):
    """Raise an unexpected exception."""

    class_alias = "fake_buggy"

    def process(self, model):
        raise RuntimeError("boom")


REGISTRY = {
    "steps": {
        "fake_saturation": f"{MODULE_NAME}:FakeSaturationStep",
        "fake_linearity": f"{MODULE_NAME}:FakeLinearityStep",
        "fake_nodata": f"{MODULE_NAME}:FakeNoDataStep",
        "fake_buggy": f"{MODULE_NAME}:FakeBuggyStep",
    },
    "pipelines": {"fake_elp": f"{MODULE_NAME}:FakePipeline"},
}
