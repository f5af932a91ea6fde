"""Aliases of the runnable pipelines and steps, as class paths in strings.

The command-line runner resolves ``romancal_lite run saturation ...`` through these
dicts, so listing names (``--help``) imports no step module (romancal's
``stpipe/integration.py`` does the same "to keep the CLI snappy"). A module that defines
a step adds one line to `STEPS`, e.g.::

    "saturation": "romancal_lite.steps.saturation:SaturationStep",

and the sync test (`check_registry`) keeps the strings, the classes and their
``class_alias`` in agreement.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from romancal_lite.errors import ConfigError

if TYPE_CHECKING:
    from romancal_lite.stpipe.step import Step

__all__ = [
    "PIPELINES",
    "STEPS",
    "check_registry",
    "import_class",
    "register",
    "resolve",
]

#: Packages whose classes are never imported (parameter files written for romancal name
#: them; their class names are matched against the registry instead).
_FOREIGN_PACKAGES = {"romancal", "stpipe", "roman_datamodels", "jwst"}

#: Pipeline alias -> ``"module:Class"``.
PIPELINES: dict[str, str] = {
    "roman_elp": "romancal_lite.pipeline:ExposurePipeline",
    "roman_mos": "romancal_lite.pipeline:MosaicPipeline",
    "roman_hlp": "romancal_lite.pipeline:HighLevelPipeline",
}

#: Step alias -> ``"module:Class"``.
STEPS: dict[str, str] = {
    "dq_init": "romancal_lite.steps.dq_init:DQInitStep",
    "saturation": "romancal_lite.steps.saturation:SaturationStep",
    "refpix": "romancal_lite.steps.refpix:RefPixStep",
    "dark_decay": "romancal_lite.steps.dark_decay:DarkDecayStep",
    "wfi18_transient": "romancal_lite.steps.wfi18_transient:WFI18TransientStep",
    "linearity": "romancal_lite.steps.linearity:LinearityStep",
    "ramp_fit": "romancal_lite.steps.ramp_fit:RampFitStep",
    "dark_current": "romancal_lite.steps.dark_current:DarkCurrentStep",
    "assign_wcs": "romancal_lite.steps.assign_wcs:AssignWcsStep",
    "photom": "romancal_lite.steps.photom:PhotomStep",
    "flatfield": "romancal_lite.steps.flatfield:FlatFieldStep",
    "source_catalog": "romancal_lite.steps.source_catalog:SourceCatalogStep",
    "tweakreg": "romancal_lite.steps.tweakreg:TweakRegStep",
    "skymatch": "romancal_lite.steps.skymatch:SkyMatchStep",
    "flux": "romancal_lite.steps.flux:FluxStep",
    "resample": "romancal_lite.steps.resample:ResampleStep",
    "outlier_detection": "romancal_lite.steps.outlier_detection:OutlierDetectionStep",
}


def register(alias: str, class_path: str, *, pipeline: bool = False) -> None:
    """Add an alias to `STEPS` (or `PIPELINES`).

    Parameters
    ----------
    alias : str
        The class's ``class_alias``.
    class_path : str
        ``"package.module:ClassName"`` (a final ``.ClassName`` is accepted too).
    pipeline : bool, optional
        Register in `PIPELINES` instead of `STEPS`.

    Raises
    ------
    ValueError
        If the alias is not an identifier or is already registered to another class.
    """
    if not alias.isidentifier():
        raise ValueError(f"alias must be an identifier, got {alias!r}")
    table = PIPELINES if pipeline else STEPS
    other = STEPS if pipeline else PIPELINES
    if table.get(alias, class_path) != class_path or alias in other:
        raise ValueError(f"alias {alias!r} is already registered")
    table[alias] = class_path


def import_class(class_path: str) -> type:
    """Import a class from ``"module:Class"`` or ``"module.Class"``.

    Parameters
    ----------
    class_path : str
        Where the class is.

    Returns
    -------
    type
        The class.

    Raises
    ------
    ConfigError
        If the module or the class cannot be found.
    """
    if ":" in class_path:
        module_name, _, attr = class_path.partition(":")
    else:
        module_name, _, attr = class_path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"not a class path: {class_path!r}")
    if module_name.split(".")[0] in _FOREIGN_PACKAGES:
        raise ConfigError(
            f"{class_path!r} belongs to {module_name.split('.')[0]}, which romancal_lite does"
            " not run; use a romancal_lite alias"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {class_path!r}: {exc}") from exc
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            msg = f"cannot import {class_path!r}: no {part!r} in {module_name}"
            raise ConfigError(msg) from None
    if not isinstance(obj, type):
        raise ConfigError(f"{class_path!r} is not a class")
    return obj


def resolve(name: str) -> type[Step]:
    """Find the Step or Pipeline class for an alias, a class path or a class name.

    Parameters
    ----------
    name : str
        A registered alias (``"saturation"``), a class path
        (``"romancal_lite.steps.saturation:SaturationStep"``) or the bare class name or
        trailing dotted path of a registered class (``"SaturationStep"``,
        ``"romancal.saturation.saturation_step.SaturationStep"`` as written in romancal
        parameter files; romancal itself is never imported).

    Returns
    -------
    type
        A subclass of `~romancal_lite.stpipe.Step`.

    Raises
    ------
    ConfigError
        If nothing matches or the match is not a Step.
    """
    from romancal_lite.stpipe.step import Step

    path = PIPELINES.get(name) or STEPS.get(name)
    if path is None:
        class_name = name.replace(":", ".").rsplit(".", 1)[-1]
        matches = [
            p
            for p in (*PIPELINES.values(), *STEPS.values())
            if p.replace(":", ".").rsplit(".", 1)[-1] == class_name
        ]
        if len(matches) == 1:
            path = matches[0]
        elif "." in name or ":" in name:
            path = name
        else:
            known = ", ".join(sorted([*PIPELINES, *STEPS])) or "none registered"
            raise ConfigError(f"unknown pipeline or step {name!r} (known: {known})")
    cls = import_class(path)
    if not issubclass(cls, Step):
        raise ConfigError(f"{path!r} is not a romancal_lite Step or Pipeline")
    return cls


def check_registry(
    classes: Iterable[type[Step]] = (),
    *,
    registry: Mapping[str, str] | None = None,
) -> list[str]:
    """Check that registered aliases and classes agree (for a sync test).

    Parameters
    ----------
    classes : iterable of type
        Classes that must be registered, e.g. everything exported by the steps package.
    registry : mapping of str to str, optional
        Alias -> class path table to check; defaults to `STEPS` and `PIPELINES` together.

    Returns
    -------
    list of str
        One message per problem (empty when in sync): unimportable paths, aliases that
        differ from the class's ``class_alias``, classes missing from the registry.
    """
    if registry is None:
        registry = {**STEPS, **PIPELINES}
    problems = []
    registered: set[type] = set()
    for alias, path in registry.items():
        try:
            cls = import_class(path)
        except ConfigError as exc:
            problems.append(f"{alias}: {exc}")
            continue
        registered.add(cls)
        if getattr(cls, "class_alias", None) != alias:
            problems.append(
                f"{alias}: {path} has class_alias {getattr(cls, 'class_alias', None)!r}"
            )
    for cls in classes:
        if cls not in registered:
            problems.append(f"{cls.__module__}.{cls.__qualname__} is not registered")
    return problems
