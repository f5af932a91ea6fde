"""Checking a reference file against the science data it is applied to.

Works on official-format files (what a real CRDS cache holds, written by
roman_datamodels) and on the generated ones alike: the file is read with
romancal_lite's own reader (`romancal_lite.datamodels.open_asdf_file`), which needs no
roman_datamodels and refuses non-regular, truncated or hostile files before parsing.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import ReferenceFileError
from ._content import reference_shape
from ._spec import BORDER, DETECTORS, OPTICAL_ELEMENTS, REFTYPES, TAG_PREFIX, get_spec
from .select import crds_parameters

__all__ = [
    "check_reference",
    "open_checked_reference_tree",
    "open_reference_tree",
    "reference_pedigree",
]

@contextlib.contextmanager
def open_reference_tree(path: str | os.PathLike[str]) -> Iterator[Any]:
    """Open a reference file and yield its ``roman`` node.

    Read as `romancal_lite.datamodels.open_asdf_file` reads every file: the path is
    literal (``#`` and ``%`` are ordinary characters), only a regular file is opened,
    and the YAML tree and the binary blocks are checked before asdf parses them.
    Arrays are loaded lazily; the file is closed on exit.

    Parameters
    ----------
    path : str or path-like
        The reference file.

    Yields
    ------
    TaggedNode
        The tagged ``roman`` node.

    Raises
    ------
    ReferenceFileError
        If the file is missing, not a regular file, not ASDF, truncated or hostile,
        or has no ``roman`` node.
    """
    from romancal_lite import datamodels
    from romancal_lite.errors import InputFileError

    name = Path(path).name
    try:
        # a literal path, a regular file only, the YAML and blocks checked before parsing
        af = datamodels.open_asdf_file(path)
    except InputFileError as exc:
        text = str(exc)
        if text.startswith(os.fspath(path)):
            text = name + text[len(os.fspath(path)) :]
        raise ReferenceFileError(f"{text} (reference file {path})") from None
    with af, datamodels.asdf_context():  # the node's arrays load inside it
        if "roman" not in af.tree:
            raise ReferenceFileError(f"{name}: not a Roman reference file (no 'roman' node)")
        yield af.tree["roman"]


def reference_pedigree(path: str | os.PathLike[str]) -> str:
    """Return a reference file's ``meta.pedigree`` (GROUND, MODEL, DUMMY, SIMULATION).

    Parameters
    ----------
    path : str or path-like
        The reference file.

    Returns
    -------
    str
        The pedigree, or ``"UNKNOWN"`` if the file does not say (or cannot be read).
    """
    try:
        with open_reference_tree(path) as node:
            value = _get(_get(node, "meta"), "pedigree")
    except ReferenceFileError:
        return "UNKNOWN"
    return str(value) if value else "UNKNOWN"


def _get(node: Any, key: str) -> Any:
    """Return ``node[key]`` or ``node.key``; None if absent."""
    if node is None:
        return None
    if isinstance(node, Mapping):
        return node.get(key)
    # an opened romancal_lite model: its raw items, so that an array not read yet is
    # looked at (shape) without being read
    raw = getattr(getattr(node, "_node", None), "_data", None)
    if isinstance(raw, Mapping):
        return raw.get(key)
    try:
        return node[key]
    except (KeyError, TypeError, IndexError, AttributeError):
        pass
    try:
        return getattr(node, key)
    except Exception:  # noqa: BLE001 - stnode raises various errors for absent keys
        return None


def _has(node: Any, key: str) -> bool:
    if isinstance(node, Mapping):
        return key in node
    return _get(node, key) is not None


def _tag_name(node: Any) -> str | None:
    tag = getattr(node, "_tag", None) or getattr(node, "tag", None)
    if not isinstance(tag, str) or not tag.startswith(TAG_PREFIX):
        return None
    return tag[len(TAG_PREFIX) :].rsplit("-", 1)[0]


def _science_shape(science: Any) -> tuple[int, ...] | None:
    data = _get(science, "data") if not isinstance(science, Mapping) else None
    shape = getattr(data, "shape", None)
    if shape is None or len(shape) < 2:
        return None
    return tuple(int(n) for n in shape[-2:])


def _check_same(
    label: str, reftype: str, what: str, verb: str, known: Any, ref: Any, sci: Any
) -> None:
    """Raise if a reference made for one known ``what`` meets science data of another."""
    if (
        isinstance(ref, str)
        and ref.upper() in known
        and isinstance(sci, str)
        and sci.upper() != ref.upper()
    ):
        raise ReferenceFileError(
            f"{label}: {reftype} reference is for {what} {ref}, the science data {verb} {sci}"
        )


def _check_node(node: Any, label: str, spec: Any, params: dict, shape: Any) -> None:
    expected = spec.reftype.upper()
    tag_name = _tag_name(node)
    if tag_name is not None and tag_name != spec.tag_name:
        found = next((r for r, s in REFTYPES.items() if s.tag_name == tag_name), tag_name)
        raise ReferenceFileError(
            f"{label}: is a {found.upper()} reference file, expected {expected}"
        )
    cls = type(node).__name__
    allowed = {spec.model_class, f"{spec.reftype.capitalize()}RefModel"}
    if cls.endswith("RefModel") and cls not in allowed:
        raise ReferenceFileError(f"{label}: is a {cls}, expected {spec.model_class} ({expected})")
    meta = _get(node, "meta")
    if meta is None:
        raise ReferenceFileError(f"{label}: has no 'meta' (not a reference file)")
    reftype = _get(meta, "reftype")
    if reftype is None or str(reftype).upper() != expected:
        raise ReferenceFileError(f"{label}: has reftype {reftype!r}, expected {expected!r}")
    instrument = _get(meta, "instrument")
    if spec.match_keys:  # a type without match key has one file for every detector
        _check_same(label, expected, "detector", "is from", DETECTORS,
                    _get(instrument, "detector"), params.get("roman.meta.instrument.detector"))
    if spec.by_element:
        _check_same(label, expected, "optical element", "uses", OPTICAL_ELEMENTS,
                    _get(instrument, "optical_element"),
                    params.get("roman.meta.instrument.optical_element"))
    for name in spec.arrays:
        if not _has(node, name):
            raise ReferenceFileError(f"{label}: {expected} reference lacks the '{name}' array")
    if spec.reftype in ("linearity", "inverselinearity") and not _has(node, "coeffs"):
        raise ReferenceFileError(f"{label}: {expected} reference lacks the 'coeffs' array")
    if spec.reftype == "epsf":
        _check_epsf(node, label, meta)
    if spec.reftype == "integralnonlinearity":
        for name in ("value", "inl_table"):
            if not _has(node, name):
                raise ReferenceFileError(f"{label}: {expected} reference lacks '{name}'")
    if spec.reftype == "apcorr" and not _has(node, "data"):
        raise ReferenceFileError(f"{label}: APCORR reference lacks its 'data' table")
    if spec.reftype == "darkdecaysignal":
        _check_decay_table(node, label, params.get("roman.meta.instrument.detector"))
    if shape is None:
        return
    shape = tuple(int(n) for n in shape[-2:])
    if spec.shape_kind == "refpix":
        want = reference_shape("refpix", (shape[0], shape[1]))
        # a science-shaped (border-trimmed) shape: add the reference border back
        alt = reference_shape("refpix", (shape[0] + 2 * BORDER, shape[1] + 2 * BORDER))
        got = tuple(getattr(_get(node, "gamma"), "shape", ()))
        if got not in (want, alt):
            raise ReferenceFileError(
                f"{label}: REFPIX coefficients have shape {got}, expected {want} "
                f"for science data of shape {shape}"
            )
        return
    names = list(spec.arrays)
    if spec.reftype in ("linearity", "inverselinearity"):
        names.append("coeffs")
    for name in names:
        got = tuple(int(n) for n in getattr(_get(node, name), "shape", ())[-2:])
        if got != shape:
            raise ReferenceFileError(
                f"{label}: {expected} array '{name}' has shape {got}, "
                f"the science data needs {shape}"
            )


def _check_epsf(node: Any, label: str, meta: Any) -> None:
    """Raise unless an EPSF node has 5-D stamps, an oversampling and a position grid."""
    psf = _get(node, "psf")
    shape = tuple(getattr(psf, "shape", ()))
    if len(shape) != 5 or min(shape, default=0) < 1:
        raise ReferenceFileError(
            f"{label}: EPSF 'psf' must be a 5-D array (defocus, spectral type, grid, y, x),"
            f" not of shape {shape}"
        )
    oversample = _get(meta, "oversample")
    if not isinstance(oversample, int) or oversample < 1:
        raise ReferenceFileError(f"{label}: EPSF meta.oversample {oversample!r} is not >= 1")
    xs, ys = _get(meta, "pixel_x"), _get(meta, "pixel_y")
    if xs is None or ys is None or len(xs) != shape[2] or len(ys) != shape[2]:
        raise ReferenceFileError(
            f"{label}: EPSF meta.pixel_x/pixel_y must list the {shape[2]} grid positions"
        )


def _check_context(reftype: str, science: Any, expected_shape: tuple[int, ...] | None
                   ) -> tuple[Any, Any, tuple[int, ...] | None]:
    key = reftype.lower()
    if key not in REFTYPES:
        raise ReferenceFileError(f"unknown reference type {reftype!r}")
    if expected_shape is None:
        expected_shape = _science_shape(science)
    return get_spec(key), crds_parameters(science), expected_shape


@contextlib.contextmanager
def open_checked_reference_tree(
    path: str | os.PathLike[str],
    reftype: str,
    science_params_or_model: Any,
    expected_shape: tuple[int, ...] | None = None,
) -> Iterator[Any]:
    """Open a reference file, check it as `check_reference` does, and yield its node.

    One read of the file for both (for reference types without a datamodel, such
    as EPSF and APCORR); the file is closed on exit.

    Parameters
    ----------
    path : str or path-like
        The reference file.
    reftype, science_params_or_model, expected_shape
        As `check_reference`.

    Yields
    ------
    TaggedNode
        The checked ``roman`` node.

    Raises
    ------
    ReferenceFileError
        Naming the file and the problem.
    """
    spec, params, expected_shape = _check_context(reftype, science_params_or_model,
                                                  expected_shape)
    with open_reference_tree(path) as node:
        _check_node(node, Path(path).name, spec, params, expected_shape)
        yield node


def _check_decay_table(node: Any, label: str, detector: Any) -> None:
    """Raise unless a DARKDECAYSIGNAL node has a usable entry for ``detector``.

    Null values are allowed (the schema's "no value": the step skips); present
    ones must be finite numbers with a time constant > 0.
    """
    table = _get(node, "decay_table")
    if table is None:
        raise ReferenceFileError(f"{label}: DARKDECAYSIGNAL reference lacks its 'decay_table'")
    if not isinstance(detector, str) or detector.upper() not in DETECTORS:
        return
    entry = _get(table, detector.upper())
    if entry is None:
        raise ReferenceFileError(
            f"{label}: DARKDECAYSIGNAL decay_table has no entry for detector {detector}"
        )
    for key in ("amplitude", "time_constant"):
        if not _has(entry, key) and not (isinstance(entry, Mapping) and key in entry):
            raise ReferenceFileError(
                f"{label}: DARKDECAYSIGNAL decay_table.{detector} lacks '{key}'"
            )
        value = _get(entry, key)
        if value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if isinstance(value, bool) or not math.isfinite(number) or (
            key == "time_constant" and number <= 0
        ):
            raise ReferenceFileError(
                f"{label}: DARKDECAYSIGNAL decay_table.{detector}.{key} is {value!r}; "
                + ("a time constant must be a finite number > 0"
                   if key == "time_constant" else "an amplitude must be a finite number")
            )


def check_reference(
    ref_path_or_tree: Any,
    reftype: str,
    science_params_or_model: Any,
    expected_shape: tuple[int, ...] | None = None,
) -> None:
    """Check that a reference file fits the science data, or raise a one-line error.

    Checks: the file exists and is ASDF; its tag (official
    ``.../reference_files/<type>-x.y.z``), model class and ``meta.reftype`` are of
    ``reftype``; its detector (and, for types selected by it, optical element)
    equals the science data's; its image arrays exist and have
    ``expected_shape`` (default: the last two dimensions of the science model's
    ``data``, if it has one).

    Parameters
    ----------
    ref_path_or_tree : str, path-like, mapping or model
        The reference file path, an asdf tree (with or without the ``roman`` level)
        or an opened reference model.
    reftype : str
        Expected reference type (``"flat"``...).
    science_params_or_model : object
        The science model or its CRDS parameters.
    expected_shape : tuple of int, optional
        Shape the reference's 2-D arrays must have.  For REFPIX give the
        science (or full read-out) shape; the FFT length is derived from it.

    Raises
    ------
    ReferenceFileError
        Naming the file and the problem.
    """
    if isinstance(ref_path_or_tree, str | os.PathLike):
        with open_checked_reference_tree(ref_path_or_tree, reftype, science_params_or_model,
                                         expected_shape):
            return
    spec, params, expected_shape = _check_context(reftype, science_params_or_model,
                                                  expected_shape)
    node = ref_path_or_tree
    if isinstance(node, Mapping) and "roman" in node:
        node = node["roman"]
    label = f"{type(node).__name__} (in memory)"
    source = getattr(node, "_path", None) or _get(_get(node, "meta"), "filename")
    if isinstance(source, str | os.PathLike) and os.fspath(source):
        label = Path(source).name
    _check_node(node, label, spec, params, expected_shape)
