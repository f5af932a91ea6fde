import importlib.util
import sys
from pathlib import Path

import pytest

from romancal_lite.stpipe import registry

FAKES_NAME = "romancal_lite_stpipe_test_fakes"


def load_fakes():
    """Import _fakes.py once under a fixed module name (registry paths point at it)."""
    if FAKES_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            FAKES_NAME, Path(__file__).with_name("_fakes.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[FAKES_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[FAKES_NAME]


@pytest.fixture
def fakes():
    return load_fakes()


@pytest.fixture
def registered(monkeypatch, fakes):
    """Register the fake steps and pipeline for the duration of a test."""
    monkeypatch.setattr(registry, "STEPS", dict(fakes.REGISTRY["steps"]))
    monkeypatch.setattr(registry, "PIPELINES", dict(fakes.REGISTRY["pipelines"]))
    return fakes


@pytest.fixture
def refs(tmp_path):
    """Reference files for the fake steps, as override parameters."""
    sat = tmp_path / "refs" / "sat_ref.asdf"
    lin = tmp_path / "refs" / "lin_ref.asdf"
    sat.parent.mkdir()
    sat.write_text("sat")
    lin.write_text("lin")
    return {"override_saturation": str(sat), "override_linearity": str(lin)}
