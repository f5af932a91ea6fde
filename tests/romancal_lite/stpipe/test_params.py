import pytest

from romancal_lite.errors import ConfigError
from romancal_lite.stpipe import Param, Step
from romancal_lite.stpipe.params import coerce_value, validate_parameters


@pytest.mark.parametrize(
    ("value", "typ", "expected"),
    [
        ("true", bool, True),
        ("No", bool, False),
        (True, bool, True),
        ("3", int, 3),
        (4.0, int, 4),
        ("2.5", float, 2.5),
        (2, float, 2.0),
        ("x", str, "x"),
        (7, str, "7"),
        ("none", int, None),
        ("null", str, "null"),
    ],
)
def test_coerce_value(value, typ, expected):
    assert coerce_value(value, typ, nullable=True) == expected


@pytest.mark.parametrize(
    ("value", "typ"),
    [
        ("maybe", bool),
        (1, bool),
        ("1.5", int),
        (True, int),
        (2.5, int),
        ("abc", float),
        (False, float),
        ("nan", float),
        ([1], str),
        (None, int),
    ],
)
def test_coerce_value_rejects(value, typ):
    with pytest.raises(ValueError, match="expected"):
        coerce_value(value, typ, nullable=False)


def test_choices_and_bounds():
    p = Param(int, 1, "x", choices=(1, 2, 3), minimum=1)
    assert p.check("2") == (2, None)
    assert "not one of" in p.check(5)[1]
    q = Param(float, 0.5, "y", minimum=0.0, maximum=1.0)
    assert "minimum" in q.check(-1)[1]
    assert "maximum" in q.check("1.5")[1]
    assert q.describe() == "float, >= 0.0, <= 1.0"


def test_invalid_default_is_caught_at_class_definition():
    with pytest.raises((TypeError, RuntimeError)) as info:

        class Bad(Step):  # noqa: F841
            class_alias = "bad_default"
            n = Param(int, "zero", "no")

    # Python 3.11 wraps errors of __set_name__ in a RuntimeError
    assert "invalid default" in str(info.value) + str(info.value.__cause__)


def test_unsupported_type():
    with pytest.raises(TypeError):
        Param(list, [], "no")


def test_validate_reports_all_errors_at_once(fakes):
    with pytest.raises(ConfigError) as info:
        fakes.FakeSaturationStep(n_pix_grow_sat="x", mode="medium", bogus=1, threshold=-0.5)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("invalid parameters for step 'fake_saturation': ")
    assert "n_pix_grow_sat: expected an integer, got 'x'" in msg
    assert "mode: 'medium' is not one of 'fast', 'slow'" in msg
    assert "bogus: unknown parameter" in msg
    assert "threshold" not in msg  # -0.5 is a valid float


def test_validate_parameters_returns_converted(fakes):
    converted, errors = validate_parameters(fakes.FakeSaturationStep.spec(), {"flag": "yes"})
    assert converted == {"flag": True}
    assert errors == []


def test_descriptor_typed_access_and_assignment(fakes):
    step = fakes.FakeSaturationStep(n_pix_grow_sat="2")
    assert step.n_pix_grow_sat == 2
    step.n_pix_grow_sat = "5"
    assert step.n_pix_grow_sat == 5
    with pytest.raises(ConfigError, match="n_pix_grow_sat"):
        step.n_pix_grow_sat = -1
    assert isinstance(fakes.FakeSaturationStep.n_pix_grow_sat, Param)


def test_spec_has_common_and_override_parameters(fakes):
    spec = fakes.FakeSaturationStep.spec()
    for name in (
        "skip",
        "save_results",
        "output_dir",
        "output_file",
        "suffix",
        "n_pix_grow_sat",
        "override_saturation",
    ):
        assert name in spec
    assert spec["override_saturation"].default is None
    pipe_spec = fakes.FakePipeline.spec()
    assert {"override_saturation", "override_linearity"} <= set(pipe_spec)
    assert pipe_spec["suffix"].default == "cal"
    assert fakes.FakePipeline.reference_file_types == ("saturation", "linearity")
