import json
import logging
import re
import sys
import types

import pytest

import romancal_lite
from romancal_lite.errors import InputFileError, OutputError, ReferenceFileError
from romancal_lite.stpipe import Param, Pipeline, Step
from romancal_lite.stpipe.naming import make_output_name, remove_suffix


@pytest.fixture
def sat_ref(refs):
    return {"override_saturation": refs["override_saturation"]}


def read(path):
    return json.loads(path.read_text())


def test_call_runs_and_records_status_and_provenance(fakes, sat_ref):
    model = fakes.FakeModel([1, 2])
    result = fakes.FakeSaturationStep.call(model, n_pix_grow_sat=1, **sat_ref)
    assert result.data == [2, 3]
    assert result.meta.cal_step.fake_saturation == "COMPLETE"
    assert result.meta.ref_file.saturation == sat_ref["override_saturation"]
    assert result.meta.calibration_software_version == romancal_lite.__version__


def test_run_instance_and_call_dunder(fakes, sat_ref):
    step = fakes.FakeSaturationStep(**sat_ref)
    step.n_pix_grow_sat = 4
    assert step(fakes.FakeModel([0])).data == [4]


def test_skip_records_skipped_and_returns_input(fakes, tmp_path):
    model = fakes.FakeModel([5])
    calls = fakes.FakeSaturationStep.calls
    result = fakes.FakeSaturationStep.call(
        model, skip=True, save_results=True, output_dir=str(tmp_path / "out")
    )
    assert result is model
    assert result.data == [5]
    assert model.meta.cal_step.fake_saturation == "SKIPPED"
    assert fakes.FakeSaturationStep.calls == calls
    assert not (tmp_path / "out").exists()


def test_timing_log_line_and_logger_tree(fakes, refs, caplog):
    caplog.set_level(logging.INFO, logger="romancal_lite")
    fakes.FakePipeline.call(fakes.FakeModel([1]), **refs)
    names = {r.name for r in caplog.records}
    assert "romancal_lite.step.fake_elp.fake_saturation" in names
    assert "romancal_lite.step.fake_elp" in names
    messages = [r.getMessage() for r in caplog.records]
    assert any(re.fullmatch(r"Step fake_saturation done in \d+\.\d\d s", m) for m in messages)
    assert any(re.fullmatch(r"Step fake_elp done in \d+\.\d\d s", m) for m in messages)


@pytest.mark.parametrize(
    ("base", "suffix", "expected"),
    [
        ("r0001_WFI01_uncal.asdf", "saturation", "r0001_WFI01_saturation.asdf"),
        ("/a/b/r0001_WFI01_uncal.asdf", "cal", "r0001_WFI01_cal.asdf"),
        ("r0001_WFI01_linearity.asdf", "dark_current", "r0001_WFI01_dark_current.asdf"),
        ("r0001_WFI01_dark_current", "rampfit", "r0001_WFI01_rampfit.asdf"),
        ("stage1_processed", "cal", "stage1_processed_cal.asdf"),
        ("exposure.v2.asdf", "cal", "exposure.v2_cal.asdf"),
        ("x_uncal.asdf", None, "x_uncal.asdf"),
    ],
)
def test_make_output_name(base, suffix, expected):
    assert make_output_name(base, suffix) == expected


def test_step_aliases_are_known_suffixes(fakes):
    assert remove_suffix("r1_fake_saturation") == "r1"
    assert remove_suffix("uncal") == "uncal"


def test_save_results_naming_and_output_dir(fakes, tmp_path, sat_ref):
    inp = fakes.write_input(tmp_path / "r0001_WFI01_uncal.asdf")
    out = tmp_path / "out"
    fakes.FakeSaturationStep.call(inp, save_results=True, output_dir=str(out), **sat_ref)
    saved = out / "r0001_WFI01_fake_saturation.asdf"
    assert read(saved)["cal_step"] == {"fake_saturation": "COMPLETE"}
    assert sorted(p.name for p in out.iterdir()) == [saved.name]


def test_output_file_implies_save_and_custom_suffix(fakes, tmp_path, sat_ref, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fakes.FakeSaturationStep.call(fakes.FakeModel([1]), output_file="mine", **sat_ref)
    assert (tmp_path / "mine_fake_saturation.asdf").is_file()
    fakes.FakeSaturationStep.call(
        fakes.FakeModel([1], filename="a_uncal.asdf"), save_results=True, suffix="sat", **sat_ref
    )
    assert (tmp_path / "a_sat.asdf").is_file()


def test_model_without_name_cannot_be_saved(fakes, sat_ref):
    with pytest.raises(OutputError, match="set output_file"):
        fakes.FakeSaturationStep.call(fakes.FakeModel([1]), save_results=True, **sat_ref)


def test_unwritable_output_dir_checked_before_running(fakes, tmp_path, sat_ref):
    inp = fakes.write_input(tmp_path / "r_uncal.asdf")
    before = inp.read_bytes()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    calls = fakes.FakeSaturationStep.calls
    with pytest.raises(OutputError, match="cannot create output directory"):
        fakes.FakeSaturationStep.call(
            inp, save_results=True, output_dir=str(blocker / "sub"), **sat_ref
        )
    assert fakes.FakeSaturationStep.calls == calls
    assert inp.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "r_uncal.asdf", "refs"]


def test_never_overwrites_input(fakes, tmp_path, sat_ref):
    inp = fakes.write_input(tmp_path / "x_fake_saturation.asdf")
    before = inp.read_bytes()
    with pytest.raises(OutputError, match="overwrite the input"):
        fakes.FakeSaturationStep.call(inp, save_results=True, output_dir=str(tmp_path), **sat_ref)
    assert inp.read_bytes() == before


def test_missing_input(fakes, tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        fakes.FakeSaturationStep.call(tmp_path / "nope.asdf")


def test_override_missing_file(fakes, tmp_path):
    with pytest.raises(ReferenceFileError, match="override_saturation"):
        fakes.FakeSaturationStep.call(
            fakes.FakeModel(), override_saturation=str(tmp_path / "gone.asdf")
        )


def test_reference_selection_is_delegated_lazily(fakes, monkeypatch):
    seen = []

    source = types.SimpleNamespace(
        kind="crds", description="the test's CRDS", context="roman_0042.pmap", invented=False
    )
    sources = []

    def reference_source(model):
        sources.append(model)
        return source

    def get_reference_file(model, reftype, source=None):
        seen.append((reftype, source))
        return f"/cache/roman_wfi_{reftype}_0001.asdf"

    fake_refs = types.ModuleType("romancal_lite.references")
    fake_refs.get_reference_file = get_reference_file
    fake_refs.reference_source = reference_source
    fake_refs.reference_pedigree = lambda path: "GROUND"
    monkeypatch.setitem(sys.modules, "romancal_lite.references", fake_refs)
    monkeypatch.setattr(romancal_lite, "references", fake_refs, raising=False)
    model = fakes.FakeModel([1])
    result = fakes.FakePipeline.call(model, override_linearity="N/A")
    assert seen == [("saturation", source)]  # decided once, before any step
    assert sources == [model]
    assert result.meta.ref_file.saturation == "/cache/roman_wfi_saturation_0001.asdf"
    assert result.meta.ref_file.linearity == "N/A"
    assert result.meta.ref_file.pedigree == {"saturation": "GROUND"}
    assert result.meta.ref_file.source == "the test's CRDS"


def test_pipeline_runs_steps_with_step_parameters(fakes, refs):
    result = fakes.FakePipeline.call(
        fakes.FakeModel([1, 2]),
        steps={"fake_saturation": {"n_pix_grow_sat": 1}, "fake_linearity": {"scale": 10}},
        **refs,
    )
    assert result.data == [20.0, 30.0]
    assert vars(result.meta.cal_step) == {
        "fake_saturation": "COMPLETE",
        "fake_linearity": "COMPLETE",
    }


def test_pipeline_attribute_access_and_skip(fakes, refs):
    pipe = fakes.FakePipeline(**refs)
    assert pipe.fake_saturation is pipe.steps["fake_saturation"]
    pipe.fake_linearity.skip = True
    pipe.fake_linearity.scale = 100.0
    result = pipe.run(fakes.FakeModel([1]))
    assert result.data == [1]
    assert result.meta.cal_step.fake_linearity == "SKIPPED"


def test_pipeline_saves_final_and_intermediate(fakes, tmp_path, refs):
    inp = fakes.write_input(tmp_path / "r0001_WFI01_uncal.asdf")
    out = tmp_path / "out"
    fakes.FakePipeline.call(
        inp,
        save_results=True,
        output_dir=str(out),
        steps={"fake_saturation": {"save_results": True}},
        **refs,
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "r0001_WFI01_cal.asdf",
        "r0001_WFI01_fake_saturation.asdf",
    ]
    assert read(out / "r0001_WFI01_fake_saturation.asdf")["cal_step"] == {
        "fake_saturation": "COMPLETE"
    }


def test_pipeline_checks_step_outputs_before_running(fakes, tmp_path, refs):
    inp = fakes.write_input(tmp_path / "r_uncal.asdf")
    (tmp_path / "blocker").write_text("")
    calls = fakes.FakeSaturationStep.calls
    with pytest.raises(OutputError):
        fakes.FakePipeline.call(
            inp,
            steps={
                "fake_linearity": {
                    "output_dir": str(tmp_path / "blocker" / "x"),
                    "save_results": True,
                }
            },
            **refs,
        )
    assert fakes.FakeSaturationStep.calls == calls


def test_pipeline_override_reaches_steps_and_step_override_wins(fakes, refs, tmp_path):
    other = tmp_path / "other_sat.asdf"
    other.write_text("x")
    pipe = fakes.FakePipeline(
        override_saturation=refs["override_saturation"],
        override_linearity=refs["override_linearity"],
        steps={"fake_saturation": {"override_saturation": str(other)}},
    )
    result = pipe.run(fakes.FakeModel([1]))
    assert result.meta.ref_file.saturation == str(other)
    assert result.meta.ref_file.linearity == refs["override_linearity"]


def test_pipeline_definition_checks():
    class S(Step):
        class_alias = "fake_s"
        reference_file_types = ("dark",)

    with pytest.raises(TypeError, match="class_alias"):

        class P1(Pipeline):  # noqa: F841
            step_defs = {"other_name": S}

    with pytest.raises(TypeError, match="clash"):

        class S2(Step):
            class_alias = "skip"

        class P2(Pipeline):  # noqa: F841
            step_defs = {"skip": S2}

    with pytest.raises(TypeError, match="identifier"):

        class S3(Step):  # noqa: F841
            class_alias = "not-valid"


def test_record_status_tolerates_models_without_cal_step(fakes, sat_ref, caplog):
    caplog.set_level(logging.DEBUG, logger="romancal_lite")
    model = fakes.FakeModel([1])
    del model.meta.cal_step  # like a raw (level 1) model
    result = fakes.FakeSaturationStep.call(model, **sat_ref)
    assert result.data == [1]
    assert "has no meta.cal_step" in caplog.text

    class Frozen:
        def __setattr__(self, name, value):
            raise AttributeError(f"cannot set {name}")

    model.meta.cal_step = Frozen()
    fakes.FakeSaturationStep.call(model, **sat_ref)
    assert "Cannot record COMPLETE status in meta.cal_step: cannot set" in caplog.text


def test_process_must_be_overridden():
    class Empty(Step):
        class_alias = "fake_empty"

    with pytest.raises(NotImplementedError):
        Empty().run(object())


def test_subclass_can_redeclare_default():
    class Base(Step):
        class_alias = "fake_base"
        level = Param(int, 1, "level")

    class Child(Base):
        class_alias = "fake_child"
        level = Param(int, 2, "level")

    assert Base().level == 1
    assert Child().level == 2
