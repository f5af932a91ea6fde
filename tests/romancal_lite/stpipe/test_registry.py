import pytest

from romancal_lite.errors import ConfigError
from romancal_lite.stpipe import registry


def test_resolve_alias_path_and_class_name(registered):
    fakes = registered
    assert registry.resolve("fake_saturation") is fakes.FakeSaturationStep
    assert registry.resolve("fake_elp") is fakes.FakePipeline
    assert registry.resolve(f"{fakes.MODULE_NAME}:FakeLinearityStep") is fakes.FakeLinearityStep
    assert registry.resolve(f"{fakes.MODULE_NAME}.FakeLinearityStep") is fakes.FakeLinearityStep
    assert registry.resolve("FakePipeline") is fakes.FakePipeline
    # the class path of a romancal parameter file maps to the registered class
    assert registry.resolve("romancal.pipeline.exposure_pipeline.FakePipeline") is (
        fakes.FakePipeline
    )


def test_resolve_errors(registered):
    with pytest.raises(ConfigError, match=r"unknown pipeline or step 'jump' \(known: fake_"):
        registry.resolve("jump")
    with pytest.raises(ConfigError, match="cannot import"):
        registry.resolve("no_such_module_xyz:Thing")
    with pytest.raises(ConfigError, match="not a romancal_lite Step"):
        registry.resolve("collections:OrderedDict")


def test_register(monkeypatch):
    monkeypatch.setattr(registry, "STEPS", {})
    monkeypatch.setattr(registry, "PIPELINES", {})
    registry.register("a_step", "pkg.mod:AStep")
    registry.register("a_step", "pkg.mod:AStep")  # idempotent
    registry.register("a_pipe", "pkg.mod:APipe", pipeline=True)
    assert registry.STEPS == {"a_step": "pkg.mod:AStep"}
    assert registry.PIPELINES == {"a_pipe": "pkg.mod:APipe"}
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a_step", "pkg.mod:Other")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a_pipe", "pkg.mod:APipe")
    with pytest.raises(ValueError, match="identifier"):
        registry.register("a-b", "pkg.mod:AStep")


def test_check_registry_in_sync(registered):
    fakes = registered
    classes = [
        fakes.FakeSaturationStep,
        fakes.FakeLinearityStep,
        fakes.FakePipeline,
        fakes.FakeNoDataStep,
        fakes.FakeBuggyStep,
    ]
    assert registry.check_registry(classes) == []


def test_check_registry_finds_problems(fakes):
    table = {
        "wrong_alias": f"{fakes.MODULE_NAME}:FakeSaturationStep",
        "gone": "no_such_module_xyz:Step",
    }
    problems = registry.check_registry([fakes.FakeLinearityStep], registry=table)
    assert len(problems) == 3
    assert "has class_alias 'fake_saturation'" in problems[0]
    assert problems[1].startswith("gone: cannot import")
    assert problems[2].endswith("FakeLinearityStep is not registered")


def test_real_registry_is_in_sync():
    """Every registered alias imports and names its class (the steps' sync test)."""
    assert registry.check_registry() == []


def test_romancal_is_never_imported(registered):
    import sys

    sys.modules.pop("romancal.pipeline.exposure_pipeline", None)
    with pytest.raises(ConfigError, match="does not run"):
        registry.resolve("romancal.pipeline.exposure_pipeline.ExposurePipeline")
    assert registry.resolve("romancal.pipeline.exposure_pipeline.FakePipeline")
    assert "romancal.pipeline.exposure_pipeline" not in sys.modules


def test_every_step_package_and_the_pipeline_are_registered():
    """Each sub-package of romancal_lite.steps exports one registered Step class."""
    import importlib
    import pkgutil

    import romancal_lite.steps
    from romancal_lite.pipeline import ExposurePipeline, HighLevelPipeline, MosaicPipeline
    from romancal_lite.stpipe import Step

    classes = [ExposurePipeline, MosaicPipeline, HighLevelPipeline]
    for info in pkgutil.iter_modules(romancal_lite.steps.__path__):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"romancal_lite.steps.{info.name}")
        found = [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, Step) and obj.class_alias == info.name
        ]
        assert len(found) == 1, info.name
        classes.extend(found)
    # one package per registered step (the count follows the registry as steps are added)
    assert len(classes) == len(registry.STEPS) + len(registry.PIPELINES)
    assert registry.check_registry(classes) == []
    assert list(ExposurePipeline.step_defs) == [
        "dq_init", "saturation", "refpix", "dark_decay", "wfi18_transient", "linearity",
        "ramp_fit",
        "dark_current", "assign_wcs", "photom", "flatfield", "source_catalog", "tweakreg",
    ]
