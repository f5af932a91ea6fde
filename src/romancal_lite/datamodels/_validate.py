"""Checks of an exposure read from a user's file, before any step works on it.

The RAD schemas (``wfi_science_raw-2.1.0``, ``ramp-2.1.0``, ``wfi_image-2.1.0`` and
``meta/common-2.1.0``), reduced to what the pipeline relies on: the metadata it reads
must be there with the right type, the arrays of the model must have the schema's exact
data type (any byte order) and number of dimensions, and the secondary arrays must fit
the science array. Arrays are checked from their declared type and shape, without
reading them. Every problem is an `InputFileError` naming the file and the field;
an exposure with no science pixel at all is a `NoScienceDataError` (exit status 64).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.time import Time

from ..errors import InputFileError, NoScienceDataError
from ._core import DataModel
from ._models import ImageModel, RampModel, ScienceRawModel

__all__ = ["validate_exposure"]

_MAPPING = "a mapping"
_STRING = "a string"
_NUMBER = "a number"
_INTEGER = "an integer"
_LIST = "a list"
_TIME = "a time"

#: meta fields: dotted name -> (kind, required). Fields under an optional mapping are
#: checked only if it is present. Types and requirements follow meta/common-2.1.0 and
#: its sub-schemas (guidestar-2.1.0 requires the window; dq_init flags it).
_META_FIELDS: dict[str, tuple[str, bool]] = {
    "exposure": (_MAPPING, True),
    "exposure.type": (_STRING, True),
    "exposure.read_pattern": (_LIST, True),
    "exposure.frame_time": (_NUMBER, True),
    "exposure.start_time": (_TIME, False),
    "exposure.end_time": (_TIME, False),
    "exposure.nresultants": (_INTEGER, False),
    "instrument": (_MAPPING, True),
    "instrument.detector": (_STRING, True),
    "instrument.optical_element": (_STRING, False),
    "instrument.name": (_STRING, False),
    "instrument.data_encoding_offset": (_NUMBER, False),
    "guide_star": (_MAPPING, True),
    "guide_star.window_xstart": (_INTEGER, True),
    "guide_star.window_xstop": (_INTEGER, True),
    "guide_star.window_ystart": (_INTEGER, True),
    "guide_star.window_ystop": (_INTEGER, True),
    "wcsinfo": (_MAPPING, False),
    "pointing": (_MAPPING, False),
    "velocity_aberration": (_MAPPING, False),
    "velocity_aberration.scale_factor": (_NUMBER, False),
    "ephemeris": (_MAPPING, False),
    "observation": (_MAPPING, False),
    "program": (_MAPPING, False),
    "visit": (_MAPPING, False),
    "coordinates": (_MAPPING, False),
    "ref_file": (_MAPPING, False),
    "cal_step": (_MAPPING, False),
    "photometry": (_MAPPING, False),
    "filename": (_STRING, False),
}

#: arrays each model needs (beyond the schema's required ones that no step reads,
#: e.g. the border copies of a ramp, which are rebuilt if missing).
_NEEDED: dict[type[DataModel], tuple[str, ...]] = {
    ScienceRawModel: ("data", "amp33"),
    RampModel: ("data", "pixeldq", "groupdq"),
    ImageModel: ("data", "dq"),
}

#: array -> which axes of ``data`` (by index) its shape must repeat, in order.
_SHAPES: dict[type[DataModel], dict[str, tuple[int | None, ...]]] = {
    ScienceRawModel: {
        "amp33": (0, 1, None),
        "resultantdq": (0, 1, 2),
        "reference_read": (1, 2),
        "reference_amp33": (1, None),
    },
    RampModel: {"pixeldq": (1, 2), "groupdq": (0, 1, 2), "amp33": (0, 1, None)},
    ImageModel: {name: (0, 1) for name in ("dq", "err", "var_poisson", "var_rnoise", "var_flat")},
}


def _is_kind(value: Any, kind: str) -> bool:
    if kind == _MAPPING:
        return isinstance(value, Mapping)
    if kind == _STRING:
        return isinstance(value, str)
    if kind == _LIST:
        return isinstance(value, list | tuple)
    if kind == _TIME:
        return isinstance(value, Time | str)
    if isinstance(value, bool | np.bool_):
        return False
    if kind == _INTEGER:
        return isinstance(value, numbers.Integral)
    return isinstance(value, numbers.Real)


def _describe_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _declared(value: Any) -> tuple[tuple[int, ...], np.dtype] | None:
    """Return the declared (shape, dtype) of an array, loaded or not; None if not one."""
    if type(value).__name__ == "NDArrayType":  # asdf's lazy array: from the tree
        shape = getattr(value, "_shape", None)
        dtype = getattr(value, "_dtype", None)
        if shape is None or dtype is None or isinstance(shape, str):
            return None  # a streamed array ("*" shape): asdf knows it only when read
        return tuple(int(n) for n in shape), np.dtype(dtype)
    if isinstance(value, np.ndarray):
        return value.shape, value.dtype
    return None


def _check_storage(
    model: DataModel, where: str, name: str, value: Any, shape: tuple[int, ...], dtype: np.dtype
) -> None:
    """Refuse a lazy array stored elsewhere or declaring more bytes than its block holds."""
    if type(value).__name__ != "NDArrayType":
        return
    source = getattr(value, "_source", None)
    if isinstance(source, str):
        raise InputFileError(
            f"{where}: array {name!r} refers to another file ({source!r}); only arrays "
            "stored in the file itself are read"
        )
    if any(n < 0 for n in shape):
        raise InputFileError(f"{where}: array {name!r} declares a negative shape {shape}")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    try:
        block = model._asdf._blocks.blocks[source]  # asdf internals: the block's header
        available = int(block.header["data_size"]) - int(getattr(value, "_offset", 0) or 0)
    except Exception:  # noqa: BLE001 - no block (asdf reports it when read) or internals changed
        return
    if getattr(value, "_strides", None) is None and nbytes > available:
        raise InputFileError(
            f"{where}: array {name!r} declares shape {shape} ({nbytes:,} bytes) but its "
            f"binary block holds {available:,} bytes"
        )


def _check_meta(model: DataModel, where: str) -> None:
    meta = model._node._data.get("meta")
    if meta is None:
        raise InputFileError(f"{where}: no metadata (the 'meta' node is missing)")
    if not isinstance(meta, Mapping):
        raise InputFileError(f"{where}: meta must be a mapping, not {_describe_value(meta)}")
    for dotted, (kind, required) in _META_FIELDS.items():
        node: Any = meta
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping):
            continue  # the parent is absent (optional) or already reported
        # a null scalar is "not given" (RAD allows several); a null mapping is not one
        if leaf not in node or (node[leaf] is None and not required and kind != _MAPPING):
            if required:
                raise InputFileError(f"{where}: meta.{dotted} is missing")
            continue
        value = node[leaf]
        if not _is_kind(value, kind):
            raise InputFileError(
                f"{where}: meta.{dotted} must be {kind}, not {_describe_value(value)}"
            )
        if kind == _TIME and isinstance(value, str):
            try:
                Time(value)
            except ValueError:
                raise InputFileError(
                    f"{where}: meta.{dotted} is not a valid time ({_describe_value(value)})"
                ) from None


def _check_arrays(model: DataModel, where: str) -> None:
    cls = type(model)
    data = model._node._data
    specs = cls._array_specs
    for name in _NEEDED.get(cls, ()):
        if name not in data:
            raise InputFileError(f"{where}: the {name!r} array is missing")
    declared: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    for name, (dtype, ndim) in specs.items():
        if name not in data:
            continue
        found = _declared(data[name])
        if found is None:
            if name in _NEEDED.get(cls, ()) or data[name] is not None:
                what = _describe_value(data[name])
                raise InputFileError(f"{where}: {name!r} must be an array, not {what}")
            continue
        shape, found_dtype = found
        want = np.dtype(dtype)
        if found_dtype.newbyteorder("=") != want.newbyteorder("="):
            raise InputFileError(
                f"{where}: array {name!r} has data type {found_dtype.name}; the "
                f"{cls.__name__} schema requires {want.name}"
            )
        if len(shape) != ndim:
            raise InputFileError(
                f"{where}: array {name!r} must have {ndim} dimensions, got shape {shape}"
            )
        _check_storage(model, where, name, data[name], shape, found_dtype)
        declared[name] = shape, found_dtype
    if "data" not in declared:
        return
    shape = declared["data"][0]
    for name, axes in _SHAPES.get(cls, {}).items():
        if name not in declared:
            continue
        got = declared[name][0]
        want_shape = tuple(shape[a] if a is not None else got[i] for i, a in enumerate(axes))
        if got != want_shape:
            raise InputFileError(
                f"{where}: array {name!r} has shape {got}, which does not fit data "
                f"{shape} (expected {want_shape})"
            )
    _check_science_pixels(model, where, shape)


def _check_science_pixels(model: DataModel, where: str, shape: tuple[int, ...]) -> None:
    from romancal_lite.references._spec import BORDER
    from romancal_lite.steps.dq_init import GUIDE_STAR_TYPES

    if 0 in shape:
        raise NoScienceDataError(f"{where}: no science data (data has shape {shape})")
    exposure = model._node._data["meta"]["exposure"]
    if len(shape) == 3 and str(exposure["type"]) not in GUIDE_STAR_TYPES:
        if any(n <= 2 * BORDER for n in shape[-2:]):
            raise NoScienceDataError(
                f"{where}: no science data: data of shape {shape} is all reference "
                f"pixels (the reference border is {BORDER} pixels wide)"
            )


def validate_exposure(model: DataModel, where: str | None = None) -> None:
    """Check an exposure's metadata and arrays before it is processed.

    Parameters
    ----------
    model : DataModel
        A `ScienceRawModel`, `RampModel` or `ImageModel` (other models are not
        checked).
    where : str, optional
        Name for messages; default the model's file name.

    Raises
    ------
    InputFileError
        If metadata the pipeline reads is missing or of the wrong type, a needed
        array is missing, an array has a data type or number of dimensions the
        schema does not allow, or a secondary array does not fit ``data``.
    NoScienceDataError
        If ``data`` holds no science pixel (an axis of length 0, or a raw or ramp
        read-out with nothing inside the reference border; guide-star windows have
        no border).
    """
    if not isinstance(model, tuple(_NEEDED)):
        return
    where = where or model._describe()
    _check_meta(model, where)
    _check_arrays(model, where)
