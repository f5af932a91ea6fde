"""The Pipeline base class: a Step that runs other steps.

A pipeline declares its steps, each under its one name (the step's ``class_alias``)::

    class ExposurePipeline(Pipeline):
        class_alias = "roman_elp"
        suffix = Param(str, "cal", "Suffix of the output file name")
        step_defs = {"dq_init": DQInitStep, "saturation": SaturationStep, ...}

Each step becomes an attribute (``pipe.saturation``) configured from the pipeline's
``steps`` parameters (``steps={"saturation": {"n_pix_grow_sat": 1}}``, parameter-file
``steps`` entries, or ``--steps.saturation.n_pix_grow_sat 1`` on the command line).
The default `Pipeline.process` runs the steps in ``step_defs`` order; pipelines that
route or short-circuit override it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from romancal_lite.errors import ConfigError
from romancal_lite.stpipe.config import ParameterSet
from romancal_lite.stpipe.params import format_errors, validate_parameters
from romancal_lite.stpipe.step import Step

__all__ = ["Pipeline"]


class Pipeline(Step):
    """Base class of pipelines.

    Parameters
    ----------
    name : str, optional
        Instance name; defaults to ``class_alias``.
    parent : Step, optional
        Enclosing pipeline, if nested.
    steps : mapping, optional
        Step name -> parameters of that step.
    **parameters
        The pipeline's own parameters.

    Raises
    ------
    ConfigError
        Listing every invalid parameter of the pipeline and of its steps, and unknown
        step names.
    """

    #: Step name (== the step class's ``class_alias``) -> Step class, in run order.
    step_defs: ClassVar[dict[str, type[Step]]] = {}
    record_cal_step: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        for key, step_cls in cls.step_defs.items():
            if not (isinstance(step_cls, type) and issubclass(step_cls, Step)):
                raise TypeError(f"{cls.__name__}.step_defs[{key!r}] is not a Step class")
            if key != step_cls.class_alias:
                raise TypeError(
                    f"{cls.__name__}.step_defs key {key!r} must equal "
                    f"{step_cls.__name__}.class_alias {step_cls.class_alias!r}"
                )
        reftypes = dict.fromkeys(cls.__dict__.get("reference_file_types", ()))
        for step_cls in cls.step_defs.values():
            reftypes.update(dict.fromkeys(step_cls.reference_file_types))
        cls.reference_file_types = tuple(reftypes)
        super().__init_subclass__(**kwargs)
        reserved = set(cls._params) | set(dir(cls)) | {"steps", "name", "parent", "log"}
        clashes = sorted(set(cls.step_defs) & reserved)
        if clashes:
            raise TypeError(f"{cls.__name__}: step names clash with attributes: {clashes}")

    def __init__(
        self,
        name: str | None = None,
        parent: Step | None = None,
        steps: Mapping[str, Mapping[str, Any]] | None = None,
        **parameters: Any,
    ):
        steps = dict(steps or {})
        errors = self.config_errors({"parameters": parameters, "steps": steps})
        if errors:
            label = name or self.class_alias or type(self).__name__
            raise ConfigError(format_errors(f"pipeline {label!r}", errors))
        super().__init__(name=name, parent=parent, **parameters)
        self.steps: dict[str, Step] = {}
        for step_name, step_cls in self.step_defs.items():
            pars = dict(steps.get(step_name) or {})
            step = step_cls.from_config(
                {"parameters": pars, "steps": pars.pop("steps", None) or {}},
                name=step_name,
                parent=self,
            )
            self.steps[step_name] = step
            setattr(self, step_name, step)

    @classmethod
    def _kind(cls) -> str:
        return "pipeline"

    @classmethod
    def config_errors(cls, config: Mapping[str, Any], prefix: str = "") -> list[str]:
        """List every problem of a parameter set for this pipeline and its steps.

        Parameters
        ----------
        config : mapping
            ``{"parameters": {...}, "steps": {step: {...}}}``.
        prefix : str, optional
            Prepended to names in the messages.

        Returns
        -------
        list of str
            Problems, with step parameters named ``steps.<step>.<param>``.
        """
        errors = validate_parameters(cls._params, config.get("parameters") or {}, prefix)[1]
        for step_name, pars in (config.get("steps") or {}).items():
            step_cls = cls.step_defs.get(step_name)
            if step_cls is None:
                known = ", ".join(cls.step_defs) or "none"
                errors.append(f"{prefix}steps.{step_name}: unknown step (steps: {known})")
                continue
            if not isinstance(pars, Mapping):
                errors.append(f"{prefix}steps.{step_name}: expected a mapping, got {pars!r}")
                continue
            pars = dict(pars)
            sub = {"parameters": pars, "steps": pars.pop("steps", None) or {}}
            errors.extend(step_cls.config_errors(sub, f"{prefix}steps.{step_name}."))
        return errors

    @classmethod
    def _normalize_steps(cls, loaded: ParameterSet, path: Any) -> ParameterSet:
        """Name step entries of a parameter file that give only a class."""
        steps: dict[str, dict[str, Any]] = {}
        for key, pars in loaded["steps"].items():
            if key.startswith("class:"):
                tail = key[len("class:") :].replace(":", ".").rsplit(".", 1)[-1]
                found = [n for n, c in cls.step_defs.items() if tail in {c.__name__, n}]
                if len(found) != 1:
                    raise ConfigError(
                        f"parameter file {path}: step class {key[6:]} is not a step of "
                        f"{cls.__name__}"
                    )
                key = found[0]
            steps.setdefault(key, {}).update(pars)
        return {**loaded, "steps": steps}

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], name: str | None = None, parent: Step | None = None
    ) -> Pipeline:
        """Instantiate from ``{"parameters": {...}, "steps": {...}}``.

        Parameters
        ----------
        config : mapping
            Normalized parameter set.
        name : str, optional
            Instance name.
        parent : Step, optional
            Enclosing pipeline.

        Returns
        -------
        Pipeline
            The configured pipeline with its steps.
        """
        return cls(
            name=name,
            parent=parent,
            steps=config.get("steps") or {},
            **(config.get("parameters") or {}),
        )

    def process(self, model: Any) -> Any:
        """Run every step in ``step_defs`` order, each on the previous result.

        Parameters
        ----------
        model : object
            The opened input.

        Returns
        -------
        object
            The last step's result.
        """
        for step in self.steps.values():
            model = step.run(model)
        return model

    def selects_references(self) -> bool:
        """Return whether any step of the run would select a reference file.

        Returns
        -------
        bool
            True if the pipeline is not skipped and one of its steps is not skipped
            and has a reference type without an override.
        """
        return not self.skip and any(s.selects_references() for s in self.steps.values())

    def planned_outputs(self) -> list[Path]:
        """Return the paths the pipeline and its steps would write.

        Returns
        -------
        list of pathlib.Path
            Output paths, steps first.
        """
        paths: list[Path] = []
        if not self.skip:
            for step in self.steps.values():
                paths.extend(step.planned_outputs())
        return paths + super().planned_outputs()

    def _export_tree(self) -> dict[str, Any]:
        tree = super()._export_tree()
        tree["steps"] = [step._export_tree() for step in self.steps.values()]
        return tree
