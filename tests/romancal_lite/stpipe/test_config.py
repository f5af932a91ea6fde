import asdf
import pytest
import yaml

from romancal_lite.errors import ConfigError
from romancal_lite.stpipe.config import load_parameter_file, merge_configs, split_dotted


def write_asdf(path, tree):
    asdf.AsdfFile(tree).write_to(path)
    return path


def write_yaml(path, tree):
    path.write_text(yaml.safe_dump(tree))
    return path


def test_precedence_defaults_asdf_yaml_kwargs(tmp_path, fakes):
    a = write_asdf(
        tmp_path / "a.asdf",
        {
            "class": "romancal.saturation.saturation_step.FakeSaturationStep",
            "name": "fake_saturation",
            "parameters": {"n_pix_grow_sat": 1, "threshold": 1.0, "mode": "slow"},
        },
    )
    y = write_yaml(
        tmp_path / "b.yaml",
        {"class": "fake_saturation", "parameters": {"threshold": 2.0, "mode": "fast"}},
    )
    config = fakes.FakeSaturationStep.build_config([a, y], mode="slow")
    step = fakes.FakeSaturationStep.from_config(config)
    assert step.n_pix_grow_sat == 1  # asdf over default
    assert step.threshold == 2.0  # yaml over asdf
    assert step.mode == "slow"  # kwargs over yaml
    assert step.flag is False  # default


def test_call_with_config_file(tmp_path, fakes, refs):
    refs = {"override_saturation": refs["override_saturation"]}
    cfg = write_yaml(tmp_path / "c.yaml", {"parameters": {"n_pix_grow_sat": 10}})
    model = fakes.FakeModel([0, 1])
    result = fakes.FakeSaturationStep.call(model, config_file=cfg, **refs)
    assert result.data == [10, 11]
    result = fakes.FakeSaturationStep.call(
        fakes.FakeModel([0]), config_file=cfg, n_pix_grow_sat=3, **refs
    )
    assert result.data == [3]


def test_pipeline_file_steps_list_mapping_and_nested_config_file(tmp_path, fakes):
    write_yaml(
        tmp_path / "lin.yaml",
        {"class": "FakeLinearityStep", "parameters": {"scale": 4.0, "suffix": "x"}},
    )
    pipe_file = write_asdf(
        tmp_path / "pipe.asdf",
        {
            "class": "tests.FakePipeline",
            "name": "FakePipeline",
            "parameters": {"save_results": True},
            "steps": [
                {
                    "class": "romancal.saturation.saturation_step.FakeSaturationStep",
                    "parameters": {"n_pix_grow_sat": 2},
                },
                {
                    "name": "fake_linearity",
                    "parameters": {"config_file": "lin.yaml", "suffix": "y"},
                },
            ],
        },
    )
    over = write_yaml(
        tmp_path / "over.yaml", {"steps": {"fake_saturation": {"n_pix_grow_sat": 5, "skip": True}}}
    )
    config = fakes.FakePipeline.build_config(
        [pipe_file, over], steps={"fake_saturation": {"skip": False}}
    )
    pipe = fakes.FakePipeline.from_config(config)
    assert pipe.save_results is True
    assert pipe.fake_saturation.n_pix_grow_sat == 5
    assert pipe.fake_saturation.skip is False
    assert pipe.fake_linearity.scale == 4.0  # from the nested config_file
    assert pipe.fake_linearity.suffix == "y"  # local entries override the nested file


def test_pipeline_dotted_kwargs(fakes):
    config = fakes.FakePipeline.build_config(**{"steps.fake_linearity.scale": "2"})
    assert fakes.FakePipeline.from_config(config).fake_linearity.scale == 2.0


def test_pipeline_errors_all_at_once(fakes):
    with pytest.raises(ConfigError) as info:
        fakes.FakePipeline.build_config(
            skip="perhaps",
            steps={"fake_saturation": {"n_pix_grow_sat": -2, "nope": 1}, "dark": {}},
        )
    msg = str(info.value)
    assert msg.startswith("invalid parameters for pipeline 'fake_elp'")
    for part in (
        "skip: expected a boolean",
        "steps.fake_saturation.n_pix_grow_sat",
        "steps.fake_saturation.nope: unknown parameter",
        "steps.dark: unknown step",
    ):
        assert part in msg


def test_step_rejects_steps(fakes):
    with pytest.raises(ConfigError, match="has no steps"):
        fakes.FakeSaturationStep.build_config(**{"steps.a.b": 1})


def test_file_for_another_class(tmp_path, fakes):
    f = write_yaml(tmp_path / "x.yaml", {"class": "jump", "parameters": {}})
    with pytest.raises(ConfigError, match="is for jump"):
        fakes.FakeSaturationStep.build_config(f)


def test_unknown_top_level_key(tmp_path):
    f = write_yaml(tmp_path / "x.yaml", {"n_pix_grow_sat": 1})
    with pytest.raises(ConfigError, match="unknown top-level key"):
        load_parameter_file(f)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_parameter_file(tmp_path / "nope.asdf")
    bad = tmp_path / "bad.yaml"
    bad.write_text("parameters: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_parameter_file(bad)
    bad_asdf = tmp_path / "bad.asdf"
    bad_asdf.write_text("not asdf at all")
    with pytest.raises(ConfigError, match="cannot read"):
        load_parameter_file(bad_asdf)


def test_step_entry_class_not_in_pipeline(tmp_path, fakes):
    f = write_yaml(tmp_path / "p.yaml", {"steps": [{"class": "x.JumpStep", "parameters": {}}]})
    with pytest.raises(ConfigError, match="not a step of"):
        fakes.FakePipeline.build_config(f)


def test_split_dotted_and_merge():
    flat = split_dotted({"a": 1, "steps.s.p": 2})
    assert flat == {"parameters": {"a": 1}, "steps": {"s": {"p": 2}}}
    with pytest.raises(ConfigError, match="bad parameter name"):
        split_dotted({"x.y": 1})
    merged = merge_configs(flat, {"parameters": {"a": 3}, "steps": {"s": {"q": 4}}})
    assert merged == {"parameters": {"a": 3}, "steps": {"s": {"p": 2, "q": 4}}}


@pytest.mark.parametrize("ext", [".asdf", ".yaml"])
def test_export_config_round_trip(tmp_path, fakes, ext):
    pipe = fakes.FakePipeline(steps={"fake_saturation": {"n_pix_grow_sat": 3}}, output_dir="o")
    path = tmp_path / f"pars{ext}"
    pipe.export_config(path)
    config = fakes.FakePipeline.build_config(path)
    again = fakes.FakePipeline.from_config(config)
    assert again.get_pars() == pipe.get_pars()
    assert again.fake_saturation.get_pars() == pipe.fake_saturation.get_pars()


SEED_STYLE_FILE = """\
#ASDF 1.0.0
#ASDF_STANDARD 1.5.0
%YAML 1.1
%TAG ! tag:stsci.edu:asdf/
--- !core/asdf-1.1.0
asdf_library: !core/software-1.0.0 {author: The ASDF Developers, homepage: 'http://github.com/asdf-format/asdf',
  name: asdf, version: 2.13.0}
history:
  extensions:
  - !core/extension_metadata-1.0.0
    extension_class: asdf.extension.BuiltinExtension
    software: !core/software-1.0.0 {name: asdf, version: 2.13.0}
  entries:
  - !core/history_entry-1.0.0 {description: Base values, time: !!timestamp '2019-10-29 21:20:50'}
class: romancal.pipeline.exposure_pipeline.FakePipeline
meta:
  author: <SPECIFY>
  date: '2022-09-15T13:59:54'
  instrument: {name: <SPECIFY>}
name: FakePipeline
parameters:
  output_dir: null
  save_results: true
  skip: false
  suffix: null
steps:
- class: romancal.saturation.saturation_step.FakeSaturationStep
  name: fake_saturation
  parameters:
    n_pix_grow_sat: 3
    output_dir: null
    skip: false
...
"""


def test_seed_style_asdf_file_is_read_without_asdf(tmp_path, fakes):
    path = tmp_path / "exp_pars.asdf"
    path.write_text(SEED_STYLE_FILE)
    config = fakes.FakePipeline.build_config(path)
    pipe = fakes.FakePipeline.from_config(config)
    assert pipe.save_results is True
    assert pipe.suffix is None  # null as stpipe writes it: the class default "cal" is used
    pipe.output_file = "x_uncal"
    assert pipe.output_path().name == "x_cal.asdf"
    assert pipe.fake_saturation.n_pix_grow_sat == 3


def test_asdf_extension_without_asdf_header(tmp_path):
    path = tmp_path / "plain.asdf"
    path.write_text("parameters: {}\n")
    with pytest.raises(ConfigError, match="not an ASDF file"):
        load_parameter_file(path)
