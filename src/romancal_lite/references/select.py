"""Reference-file selection: overrides first, then CRDS.

Selection always goes through the crds client with the science model's CRDS
parameters (``model.get_crds_parameters()``, keys ``roman.meta.*``).  Where crds
looks is the run's :class:`~romancal_lite.references.ReferenceSource` (decided by
:func:`~romancal_lite.references.reference_source`, see ``docs/references.md``): the
user's CRDS if they configured one, else a generated cache (see
:mod:`romancal_lite.references._cache`) whose reference files are written on first
selection, but only for exposures it is right for or by explicit opt-in.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ReferenceFileError
from ._cache import BuiltinCache, open_builtin_cache
from ._crds import (
    USER_CRDS_VARS,
    crds_getrecommendations,
    crds_getreferences,
    user_configured,
)
from ._source import ReferenceSource, reference_source

__all__ = [
    "NOT_APPLICABLE",
    "active_cache",
    "builtin_cache",
    "check_override",
    "crds_parameters",
    "forced_cache",
    "get_reference_file",
    "get_reference_files",
    "use_builtin_cache",
]

#: Returned for a reference type CRDS says does not apply (as stpipe does).
NOT_APPLICABLE = "N/A"

_CACHE: list[BuiltinCache | None] = [None]
_FORCED: list[BuiltinCache | None] = [None]


def use_builtin_cache(cache: BuiltinCache | str | Path | None) -> BuiltinCache | None:
    """Select the built-in cache used when the user has not configured CRDS.

    Parameters
    ----------
    cache : BuiltinCache, str, Path or None
        A generated cache (or its directory); None restores the default
        (``$ROMANCAL_LITE_CRDS_CACHE`` or the user cache directory).

    Returns
    -------
    BuiltinCache or None
        The cache now in use (None when reset to the default, resolved lazily).
    """
    if cache is not None and not isinstance(cache, BuiltinCache):
        cache = open_builtin_cache(cache)
    _FORCED[0] = cache
    _CACHE[0] = None
    return cache


@contextlib.contextmanager
def builtin_cache(
    cache: BuiltinCache | str | Path, *, hide_user_crds: bool = False
) -> Iterator[BuiltinCache | None]:
    """Select from ``cache`` inside a ``with`` block, then restore the previous choice.

    Parameters
    ----------
    cache : BuiltinCache, str or Path
        A generated cache (or its directory).
    hide_user_crds : bool, optional
        Also remove the user's CRDS environment variables (``CRDS_PATH``...,
        ``CRDS_MODE``, ``CRDS_CONTEXT``) for the duration, so the built-in cache is
        used even where CRDS is configured (tests); they are put back afterwards.

    Yields
    ------
    BuiltinCache or None
        The cache selection now uses (None if the user's CRDS setup still wins).
    """
    hidden: dict[str, str] = {}
    if hide_user_crds:
        for name in (*USER_CRDS_VARS, "CRDS_MODE", "CRDS_CONTEXT"):
            if name in os.environ:
                hidden[name] = os.environ.pop(name)
    previous = _FORCED[0]
    try:
        use_builtin_cache(cache)
        yield active_cache()
    finally:
        _FORCED[0] = previous
        _CACHE[0] = None
        os.environ.update(hidden)


def forced_cache() -> BuiltinCache | None:
    """Return the cache a caller chose with `use_builtin_cache` / `builtin_cache`, if any.

    Returns
    -------
    BuiltinCache or None
        The chosen cache (even where the user's CRDS setup wins), else None.
    """
    return _FORCED[0]


def active_cache() -> BuiltinCache | None:
    """Return the built-in cache selection would use, or None for the user's CRDS.

    Returns
    -------
    BuiltinCache or None
        None when the environment configures CRDS (the user's setup wins).
    """
    if user_configured():
        return None
    if _FORCED[0] is not None:
        return _FORCED[0]
    cached = _CACHE[0]
    from ._cache import default_cache_dir

    if cached is None or cached.root != default_cache_dir():
        cached = open_builtin_cache()
        _CACHE[0] = cached
    return cached


def _simple(value: Any) -> Any:
    """Convert a metadata value to what crds accepts (str, int, float, bool) or None."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None).isoformat()
    isot = getattr(value, "isot", None)  # astropy Time
    if isinstance(isot, str):
        return isot
    return None


def _flatten(prefix: str, node: Any, out: dict[str, Any]) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            _flatten(f"{prefix}.{key}", value, out)
        return
    value = _simple(node)
    if value is not None:
        out[prefix] = value


def crds_parameters(model_or_params: Any) -> dict[str, Any]:
    """Return the CRDS selection parameters of a science model or parameter dict.

    Parameters
    ----------
    model_or_params : object
        A model with ``get_crds_parameters()``, a flat dict of ``roman.meta.*``
        parameters, or a nested dict holding ``meta`` (or ``roman.meta``).

    Returns
    -------
    dict
        Flat ``roman.meta.*`` keys (lower case) to str/int/float/bool values;
        times as ISO text without a trailing ``Z``; instrument name defaults to WFI.

    Raises
    ------
    ReferenceFileError
        If no parameters can be obtained.
    """
    if hasattr(model_or_params, "get_crds_parameters"):
        raw = dict(model_or_params.get_crds_parameters())
    elif isinstance(model_or_params, Mapping):
        if "roman" in model_or_params and isinstance(model_or_params["roman"], Mapping):
            model_or_params = model_or_params["roman"]
        if "meta" in model_or_params and isinstance(model_or_params["meta"], Mapping):
            raw = {}
            _flatten("roman.meta", model_or_params["meta"], raw)
        else:
            raw = dict(model_or_params)
    else:
        raise ReferenceFileError(
            f"cannot select reference files for a {type(model_or_params).__name__}: "
            "need a model with get_crds_parameters() or a dict of roman.meta.* parameters"
        )
    params: dict[str, Any] = {}
    for key, value in raw.items():
        key = str(key).lower()
        if key.startswith("meta."):
            key = "roman." + key
        value = _simple(value)
        if value is None:
            continue
        if isinstance(value, str) and key.endswith("_time") and value.endswith("Z"):
            value = value[:-1]
        params[key] = value
    params.setdefault("roman.meta.instrument.name", "WFI")
    return params


def _check_override(reftype: str, path: Any) -> str:
    text = os.fspath(path)
    if text.strip().upper() == NOT_APPLICABLE:
        return NOT_APPLICABLE
    check_override(reftype, text)
    return text


def check_override(reftype: str, path: str | os.PathLike[str]) -> None:
    """Raise unless an ``override_<reftype>`` names an existing regular file.

    Parameters
    ----------
    reftype : str
        The reference type overridden.
    path : str or path-like
        The override (a literal path; ``#`` and ``%`` are ordinary characters).

    Raises
    ------
    ReferenceFileError
        ``override_<reftype>: <path>: no such file`` or ``...: is a directory, not a
        regular file`` (a FIFO or device is named as such and never blocks).
    """
    from romancal_lite.datamodels import check_regular_file

    try:
        check_regular_file(path, ReferenceFileError)
    except ReferenceFileError as exc:
        raise ReferenceFileError(f"override_{reftype.lower()}: {exc}") from None


def _is_na(value: str) -> bool:
    return NOT_APPLICABLE in value.upper()


def get_reference_files(
    model_or_params: Any,
    reftypes: Sequence[str],
    overrides: Mapping[str, Any] | None = None,
    source: ReferenceSource | None = None,
) -> dict[str, str]:
    """Return the reference file path for each type.

    Parameters
    ----------
    model_or_params : object
        Science model (with ``get_crds_parameters()``) or CRDS parameter dict.
    reftypes : sequence of str
        Reference types, e.g. ``["gain", "readnoise"]`` (case-insensitive).
    overrides : mapping, optional
        Reftype to a path that wins over CRDS (``override_<reftype>``); a None
        value means "no override", ``"N/A"`` means "do not use a reference".
    source : ReferenceSource, optional
        Where to select from (decided once per run); default
        ``reference_source(model_or_params)``, needed only for types without an
        override.

    Returns
    -------
    dict
        Lower-case reftype to an existing local path, or ``"N/A"`` where the
        override or CRDS says the type does not apply.

    Raises
    ------
    ReferenceFileError
        If an override does not exist, there is no source of references for the
        exposure (see `reference_source`), crds cannot select a type, or the
        selected file is not available.
    """
    overrides = {k.lower(): v for k, v in (overrides or {}).items() if v is not None}
    wanted = [r.lower() for r in reftypes]
    result: dict[str, str] = {}
    for reftype in wanted:
        if reftype in overrides:
            result[reftype] = _check_override(reftype, overrides[reftype])
    todo = [r for r in wanted if r not in result]
    if not todo:
        return {r: result[r] for r in wanted}
    if source is None:
        source = reference_source(model_or_params)
    params = crds_parameters(model_or_params)
    cache = source.cache
    if cache is not None:
        chosen = crds_getrecommendations(params, todo, cache)
        for reftype in todo:
            name = chosen.get(reftype, "")
            if _is_na(name):
                result[reftype] = NOT_APPLICABLE
            elif cache.owns(name):
                cache.ensure_reference(name)
        todo = [r for r in todo if r not in result]
    if todo:
        paths = crds_getreferences(params, todo, cache)
        for reftype in todo:
            path = paths.get(reftype, NOT_APPLICABLE)
            if _is_na(path):
                result[reftype] = NOT_APPLICABLE
                continue
            if not Path(path).is_file():
                raise ReferenceFileError(
                    f"{Path(path).name}: selected {reftype.upper()} reference file "
                    f"is missing ({path})"
                )
            result[reftype] = str(path)
    return {r: result[r] for r in wanted}


def get_reference_file(
    model_or_params: Any,
    reftype: str,
    override: Any = None,
    source: ReferenceSource | None = None,
) -> str:
    """Return the path of one reference file (override first, else CRDS).

    Parameters
    ----------
    model_or_params : object
        Science model (with ``get_crds_parameters()``) or CRDS parameter dict.
    reftype : str
        Reference type, e.g. ``"flat"``.
    override : str or Path, optional
        Path that wins over CRDS (the step's ``override_<reftype>``).
    source : ReferenceSource, optional
        Where to select from; see `get_reference_files`.

    Returns
    -------
    str
        Local path, or ``"N/A"`` if the type does not apply.

    Raises
    ------
    ReferenceFileError
        If the override does not exist or no file can be selected.
    """
    overrides = {reftype: override} if override is not None else None
    return get_reference_files(model_or_params, [reftype], overrides, source)[reftype.lower()]
