"""Parameter files (ASDF or YAML) and the merging of parameter sources.

A parameter file holds (seeds/000 section 1.13, "ASDF Parameter Files")::

    class: romancal_lite.pipelines.exposure:ExposurePipeline   # or an alias
    name: roman_elp                                             # optional
    parameters: {save_results: true}
    steps:                                                      # pipelines only
    - class: romancal_lite.steps.saturation:SaturationStep
      name: saturation
      parameters: {n_pix_grow_sat: 0}

``steps`` may also be a mapping ``{step name: {parameters}}``. A step's ``parameters``
may contain ``config_file``: a step parameter file (relative to the including file) that
is loaded first and overridden by the other entries.

Precedence (lowest first): class defaults < parameter files, in the order given <
keyword arguments / command line. `merge_configs` implements it on the normalized form
``{"parameters": {...}, "steps": {name: {...}}}``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from romancal_lite.errors import ConfigError, OutputError

__all__ = [
    "ParameterSet",
    "dump_parameter_file",
    "load_parameter_file",
    "merge_configs",
    "split_dotted",
]

#: Normalized parameters: ``{"class": str|None, "name": str|None,
#: "parameters": {...}, "steps": {step: {...}}}``.
ParameterSet = dict[str, Any]

_TOP_KEYS = {"class", "name", "parameters", "steps", "meta", "asdf_library", "history"}
_STEP_KEYS = {"class", "name", "parameters"}


def load_parameter_file(path: str | os.PathLike[str]) -> ParameterSet:
    """Read an ASDF or YAML parameter file into the normalized form.

    Parameters
    ----------
    path : str or path-like
        ``.asdf`` files are read with asdf, anything else as YAML.

    Returns
    -------
    dict
        ``{"class", "name", "parameters", "steps"}``; ``steps`` maps step names to
        parameter dicts (step entries given only by class keep the class under the key
        ``"class:<class>"``, resolved by the pipeline).

    Raises
    ------
    ConfigError
        If the file is missing, unreadable or not laid out as above.
    """
    path = Path(path)
    tree = _read_tree(path)
    if not isinstance(tree, Mapping):
        raise ConfigError(f"parameter file {path} does not hold a mapping")
    unknown = sorted(set(tree) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"parameter file {path}: unknown top-level key(s) {', '.join(unknown)}"
            " (step parameters go under 'parameters')"
        )
    parameters = _as_dict(tree.get("parameters"), path, "parameters")
    parameters = _expand_config_file(parameters, path)
    steps: dict[str, dict[str, Any]] = {}
    raw_steps = tree.get("steps") or {}
    if isinstance(raw_steps, Mapping):
        entries = [{"name": k, "parameters": v} for k, v in raw_steps.items()]
    elif isinstance(raw_steps, Sequence) and not isinstance(raw_steps, str):
        entries = list(raw_steps)
    else:
        raise ConfigError(f"parameter file {path}: 'steps' must be a list or a mapping")
    for entry in entries:
        if not isinstance(entry, Mapping) or set(entry) - _STEP_KEYS:
            raise ConfigError(
                f"parameter file {path}: each entry of 'steps' needs only "
                f"'class', 'name' and 'parameters', got {entry!r}"
            )
        key = entry.get("name") or (f"class:{entry['class']}" if entry.get("class") else None)
        if key is None:
            raise ConfigError(f"parameter file {path}: a step entry has neither name nor class")
        step_pars = _expand_config_file(_as_dict(entry.get("parameters"), path, key), path)
        steps[str(key)] = {**steps.get(str(key), {}), **step_pars}
    return {
        "class": tree.get("class"),
        "name": tree.get("name"),
        "parameters": parameters,
        "steps": steps,
    }


def _read_tree(path: Path) -> Any:
    """Read a parameter file's tree.

    ASDF parameter files are a YAML document with ASDF tags and no binary blocks, so
    they are read as YAML with the tags dropped: opening them with asdf loads every
    installed asdf extension, which takes seconds. Files with binary blocks (not
    parameter files in practice) go through asdf.
    """
    from romancal_lite.datamodels._files import open_regular_file, scan_asdf_tree
    from romancal_lite.errors import InputFileError

    if not os.path.lexists(path):
        raise ConfigError(f"parameter file not found: {path}")
    try:
        # a FIFO or device is refused by name (and never blocks the reader)
        with open_regular_file(path, ConfigError) as fh:
            raw = fh.read(_MAX_PARAMETER_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read parameter file {path}: {exc.strerror}") from exc
    except ConfigError as exc:
        raise ConfigError(f"parameter file {exc}") from None
    if len(raw) > _MAX_PARAMETER_FILE_BYTES:
        limit = _MAX_PARAMETER_FILE_BYTES >> 20
        raise ConfigError(f"parameter file {path} is larger than {limit} MiB: not a parameter file")
    is_asdf = raw.startswith(b"#ASDF")
    if path.suffix.lower() == ".asdf" and not is_asdf:
        raise ConfigError(f"cannot read parameter file {path}: not an ASDF file")
    yaml_part = raw.split(_ASDF_BLOCK_MAGIC, 1)[0]
    try:
        # no alias bomb, recursive tree or runaway nesting (before anything walks it)
        scan_asdf_tree(yaml_part, str(path))
    except InputFileError as exc:
        raise ConfigError(f"cannot read parameter file {exc}") from None
    if is_asdf and _ASDF_BLOCK_MAGIC in raw:
        return _read_asdf_with_blocks(path, raw)
    import yaml

    try:
        tree = yaml.load(raw.decode("utf-8"), Loader=_untagged_loader())  # noqa: S506
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        msg = " ".join(str(exc).split())
        raise ConfigError(f"cannot read parameter file {path}: {msg}") from exc
    return {} if tree is None else tree


_ASDF_BLOCK_MAGIC = b"\xd3BLK"
#: Parameter files are a few kB; a larger file is refused before it is held in memory.
_MAX_PARAMETER_FILE_BYTES = 16 << 20


def _read_asdf_with_blocks(path: Path, raw: bytes) -> Any:
    import io

    import asdf

    try:
        # the bytes already read, not the name: asdf reads "#" and "%" in a name as URI
        with asdf.open(io.BytesIO(raw), lazy_load=False, memmap=False) as af:
            return _plain(af.tree)
    except Exception as exc:
        raise ConfigError(f"cannot read parameter file {path}: {exc}") from exc


def _untagged_loader() -> type:
    """Return a yaml SafeLoader subclass that reads ASDF-tagged nodes as plain data."""
    import yaml

    class UntaggedLoader(yaml.SafeLoader):
        pass

    def construct_untagged(loader: yaml.SafeLoader, suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    UntaggedLoader.add_multi_constructor("!", construct_untagged)
    UntaggedLoader.add_multi_constructor("tag:", construct_untagged)
    return UntaggedLoader


def _plain(obj: Any) -> Any:
    """Turn an asdf tree into plain dicts/lists (asdf may return its own node types)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _as_dict(value: Any, path: Path, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"parameter file {path}: {where!r} must be a mapping, got {value!r}")
    return dict(value)


def _expand_config_file(parameters: dict[str, Any], including: Path) -> dict[str, Any]:
    """Replace a ``config_file`` entry by the parameters of that file."""
    nested = parameters.pop("config_file", None)
    if nested is None:
        return parameters
    nested_path = Path(nested)
    if not nested_path.is_absolute():
        nested_path = including.parent / nested_path
    loaded = load_parameter_file(nested_path)
    return {**loaded["parameters"], **parameters}


def split_dotted(flat: Mapping[str, Any]) -> ParameterSet:
    """Turn ``{"steps.saturation.skip": v, "skip": w}`` into the normalized form.

    Parameters
    ----------
    flat : mapping
        Parameter names, possibly dotted ``steps.<step>.<param>``.

    Returns
    -------
    dict
        ``{"parameters": {...}, "steps": {...}}``.

    Raises
    ------
    ConfigError
        For dotted names not of the form ``steps.<step>.<param>``.
    """
    parameters: dict[str, Any] = {}
    steps: dict[str, dict[str, Any]] = {}
    bad = []
    for key, value in flat.items():
        if "." not in key:
            parameters[key] = value
            continue
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "steps" or not all(parts):
            bad.append(key)
            continue
        steps.setdefault(parts[1], {})[parts[2]] = value
    if bad:
        raise ConfigError(
            f"bad parameter name(s) {', '.join(bad)} (expected <param> or steps.<step>.<param>)"
        )
    return {"parameters": parameters, "steps": steps}


def merge_configs(*configs: Mapping[str, Any]) -> ParameterSet:
    """Merge normalized parameter sets, later ones taking precedence.

    Parameters
    ----------
    *configs : mapping
        Normalized parameter sets, lowest precedence first.

    Returns
    -------
    dict
        ``{"parameters": {...}, "steps": {...}}`` with per-parameter precedence.
    """
    parameters: dict[str, Any] = {}
    steps: dict[str, dict[str, Any]] = {}
    for config in configs:
        parameters.update(config.get("parameters") or {})
        for step, pars in (config.get("steps") or {}).items():
            steps.setdefault(step, {}).update(pars)
    return {"parameters": parameters, "steps": steps}


def dump_parameter_file(config: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a parameter file (ASDF for ``.asdf``, YAML otherwise).

    Parameters
    ----------
    config : mapping
        ``{"class", "name", "parameters"[, "steps": [{"class", "name", "parameters"}]]}``.
    path : str or path-like
        Destination.
    """
    import yaml

    path = Path(path)
    text = yaml.safe_dump(dict(config), sort_keys=False)
    if path.suffix.lower() == ".asdf":
        # An ASDF file without blocks is this YAML document with the ASDF header; writing
        # it directly avoids loading every asdf extension (seconds).
        text = _ASDF_HEADER + text + "...\n"
    from romancal_lite.datamodels._files import atomic_write

    try:
        # atomic, and part of the run's outputs (written with them, or not at all)
        atomic_write(path, lambda fh: fh.write(text.encode()))
    except OutputError as exc:
        raise OutputError(f"parameter file {exc}") from None


_ASDF_HEADER = (
    "#ASDF 1.0.0\n#ASDF_STANDARD 1.5.0\n%YAML 1.1\n%TAG ! tag:stsci.edu:asdf/\n"
    "--- !core/asdf-1.1.0\n"
)
