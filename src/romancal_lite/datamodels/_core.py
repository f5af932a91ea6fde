"""The ``DataModel`` base class, file opening and atomic saving."""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, ClassVar, Self

import asdf
import numpy as np
from astropy.time import Time

from romancore import effective_n_threads

from ..errors import InputFileError, OutputError
from ._blocks import (
    Lz4Chunks,
    deferred_block_data,
    fill_checksums,
    preload_lz4_block,
    released_while_written,
)
from ._converters import asdf_context, get_extension
from ._files import atomic_write, open_regular_file, read_yaml_part, scan_asdf_tree
from ._node import Node, TaggedNode, node_class_for_tag, unwrap, wrap
from ._tags import split_tag, tag_uri

__all__ = ["MODEL_REGISTRY", "DataModel", "MappedArray", "open"]

#: Roman tag name (e.g. ``"wfi_image"``) -> model class
MODEL_REGISTRY: dict[str, type[DataModel]] = {}

_ASDF_MAGIC = b"#ASDF "


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {first}"


def _is_lazy_array(value: Any) -> bool:
    return type(value).__name__ == "NDArrayType"


def _scale_array(array: np.ndarray, factor: float, spec: tuple | None) -> np.ndarray:
    """Return ``array * factor`` computed in float32, in the schema's dtype (``spec``).

    The product is what a model scaled in memory (float32) and then written with the
    schema's dtypes (e.g. ``err`` as float16) gives when read back.
    """
    if spec is not None and np.dtype(spec[0]) == np.float16:
        from romancore import scale_float16, to_float16

        # numpy's product and cast, bit for bit, several times faster (numpy's cast
        # is slow where values underflow float16): err and variances of a _cal file
        if isinstance(array, np.ndarray) and array.dtype == np.float16:
            return scale_float16(array, factor)
        return to_float16(np.multiply(array, np.float32(factor), dtype=np.float32))
    scaled = np.multiply(array, np.float32(factor), dtype=np.float32)
    if spec is not None and scaled.dtype != np.dtype(spec[0]):
        if np.dtype(spec[0]) == np.float16:
            # numpy's cast is slow where values underflow float16 (variances in
            # MJy^2/sr^2); romancore's gives the same bits
            from romancore import to_float16

            return to_float16(scaled)
        scaled = scaled.astype(spec[0])
    return scaled


def _quiet_open(fh: Any, memmap: bool, validate: bool = True) -> asdf.AsdfFile:
    with warnings.catch_warnings(), asdf_context() as config:
        if not validate:
            config.validate_on_read = False
        # unknown (non-Roman) tags and extensions recorded in the file's history
        # (roman_datamodels, romanisim) are expected: tags still round-trip.
        warnings.filterwarnings("ignore", category=asdf.exceptions.AsdfWarning)
        return asdf.open(
            fh,
            extensions=[get_extension()],
            memmap=memmap,
            lazy_load=True,
            lazy_tree=False,
        )


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 1 << 40


def _check_blocks(af: asdf.AsdfFile, path: str, size: int) -> None:
    """Raise ``InputFileError`` for a binary block that cannot be what it declares.

    A block must lie inside the file, use no more than it allocates, and (compressed)
    expand to no more than this machine's memory: asdf allocates the declared size
    before decompressing.
    """
    try:
        blocks = list(af._blocks.blocks)  # asdf internals: the blocks (headers read lazily)
    except Exception:  # pragma: no cover - asdf internals changed: skip the check
        return
    memory = _physical_memory()
    for index, block in enumerate(blocks):
        try:
            header = block.header
            end = block.data_offset + header["allocated_size"]
            used, data_size = header["used_size"], header["data_size"]
            compressed = header["compression"] not in (b"\0\0\0\0", b"", None)
        except (KeyError, TypeError, AttributeError):  # pragma: no cover
            continue
        except Exception as exc:
            raise InputFileError(
                f"{path}: truncated or corrupt file (binary block {index}: {_one_line(exc)})"
            ) from exc
        if end > size:
            raise InputFileError(
                f"{path}: truncated file (binary block {index} ends at byte {end}, "
                f"the file has {size} bytes)"
            )
        if used > header["allocated_size"] or (not compressed and data_size != used):
            raise InputFileError(
                f"{path}: corrupt binary block {index} (it declares {data_size} bytes of "
                f"data, {used} used of {header['allocated_size']} allocated)"
            )
        if compressed and data_size > memory:
            raise InputFileError(
                f"{path}: binary block {index} declares {data_size:,} bytes once "
                f"decompressed, more than this machine's memory ({memory:,} bytes)"
            )


_SCHEMA_DOCUMENTS: dict[str, Any] = {}


def keep_schema_documents() -> bool:
    """Keep the schema documents asdf validation reads, for the rest of this process.

    asdf validates every tree it reads or writes against the Roman schemas, and each
    validation parses again every schema a ``$ref`` points to (about 500 YAML documents,
    ~0.3 s per ten files opened). A long-lived process (a batch worker, which opens the
    same reference files for every exposure) keeps the parsed documents instead: the
    validation itself, and so every result, is unchanged. The schemas are read-only
    resources of the installed packages; jsonschema does not modify them.

    Returns
    -------
    bool
        True if the documents are now kept (False when this asdf version does not build
        its validators' reference resolver as expected: then nothing is changed).
    """
    from asdf import schema as asdf_schema

    make = getattr(asdf_schema, "_make_jsonschema_refresolver", None)
    if make is None:
        return False
    if getattr(make, "_romancal_lite_keeps", False):
        return True
    probe = make()
    if not isinstance(getattr(probe, "handlers", None), dict):
        return False

    def keeping(handler: Callable[[str], Any]) -> Callable[[str], Any]:
        def get(uri: str) -> Any:
            document = _SCHEMA_DOCUMENTS.get(uri)
            if document is None:
                document = _SCHEMA_DOCUMENTS[uri] = handler(uri)
            return document

        return get

    def make_keeping() -> Any:
        resolver = make()
        resolver.handlers = {scheme: keeping(h) for scheme, h in resolver.handlers.items()}
        return resolver

    make_keeping._romancal_lite_keeps = True  # type: ignore[attr-defined]
    asdf_schema._make_jsonschema_refresolver = make_keeping
    return True


def open_asdf_file(
    path: str | PurePath, *, memmap: bool = False, validate: bool = True
) -> asdf.AsdfFile:
    """Open a Roman ASDF file with the romancal_lite extension.

    The path is literal (``#`` and ``%`` are ordinary characters: asdf is given the
    open file, never the name); only a regular file is opened (a FIFO does not block);
    the YAML tree is checked before asdf parses it (`scan_asdf_tree`: no alias bomb, no
    recursion, bounded nesting), and every binary block must fit in the file.

    Parameters
    ----------
    path : str or Path
        File to open.
    memmap : bool, optional
        Memory-map uncompressed array blocks (read-only).
    validate : bool, optional
        Validate the tree against its schemas (asdf's validation on read). False only
        for a file this package wrote from a validated tree (a cached uncompressed
        reference copy): the tree and block checks above still apply.

    Returns
    -------
    asdf.AsdfFile
        The open file; arrays are loaded lazily. Closing it closes the file.

    Raises
    ------
    InputFileError
        If the file does not exist, is not a regular file, is not ASDF, or is
        truncated, corrupt or hostile.
    """
    path = os.fspath(path)
    fh = open_regular_file(path)
    try:
        size = os.fstat(fh.fileno()).st_size
        try:
            magic = fh.read(len(_ASDF_MAGIC))
        except OSError as exc:
            raise InputFileError(f"{path}: cannot read file ({_one_line(exc)})") from exc
        if magic != _ASDF_MAGIC:
            raise InputFileError(f"{path}: not an ASDF file")
        fh.seek(0)
        scan_asdf_tree(read_yaml_part(fh, path), path)
        fh.seek(0)
        gf = asdf.generic_io.get_file(fh, mode="r", close=True)
    except BaseException:
        fh.close()
        raise
    try:
        af = _quiet_open(gf, memmap, validate)
    except Exception as exc:
        gf.close()
        raise InputFileError(f"{path}: cannot read ASDF file ({_one_line(exc)})") from exc
    except BaseException:
        gf.close()
        raise
    try:
        _check_blocks(af, path, size)
    except BaseException:
        af.close()
        raise
    return af


class MappedArray:
    """An array of a model's file, mapped read-only; indexing reads (and scales) its values.

    ``mapped[key]`` is ``model.<name>[key]`` (the same values and dtype): the stored
    values, multiplied by a pending scale as `_scale_array` does when the model reads
    the array whole (the scaling is per element, so any part of the array gives the
    same values as that part of the whole). See `DataModel.mapped_array`.

    Attributes
    ----------
    raw : numpy.ndarray or Lz4Rows
        The stored values (a read-only map of the file, or an lz4 block's rows
        decompressed when indexed; byte order as stored).
    factor : float or None
        The scale applied when indexed (None: none).
    """

    def __init__(self, raw: np.ndarray, factor: float | None, spec: tuple | None) -> None:
        self.raw = raw
        self.factor = None if factor is None else float(factor)
        self._spec = spec

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape."""
        return self.raw.shape

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return self.raw.ndim

    @property
    def dtype(self) -> np.dtype:
        """The dtype of ``model.<name>`` (the stored one, or the scaled array's)."""
        if self.factor is None:
            return self.raw.dtype
        return np.dtype(self._spec[0]) if self._spec is not None else np.dtype(np.float32)

    def __getitem__(self, key: Any) -> np.ndarray:
        """Return ``model.<name>[key]`` (a new array when scaled; else a view of the map)."""
        values = self.raw[key]
        if self.factor is None:
            return values
        return _scale_array(values, self.factor, self._spec)


class DataModel:
    """Base class of the Roman data models (one subclass per Roman tag).

    Parameters
    ----------
    init : None, str, Path, Mapping, TaggedNode or DataModel, optional
        ``None`` gives an empty model; a path opens that file (which must hold
        this model type); a mapping becomes the model content (not copied); a
        model of the same class shares the other model's content.
    memmap : bool, optional
        With a path: memory-map uncompressed array blocks.
    """

    #: Roman tag name written for this model, e.g. ``"wfi_image"``
    _tag_name: ClassVar[str] = ""
    #: schema arrays: name -> (dtype, ndim)
    _array_specs: ClassVar[dict[str, tuple[str, int]]] = {}
    #: arrays required by the schema
    _required_arrays: ClassVar[tuple[str, ...]] = ()

    crds_observatory: ClassVar[str] = "roman"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls._tag_name and not cls.__name__.startswith("_"):
            MODEL_REGISTRY[cls._tag_name] = cls

    def __init__(self, init: Any = None, *, memmap: bool = False) -> None:
        object.__setattr__(self, "_asdf", None)
        object.__setattr__(self, "_path", None)
        object.__setattr__(self, "_iscopy", False)
        node: TaggedNode
        if init is None:
            node = self._new_node({"meta": {}})
        elif isinstance(init, DataModel):
            if not isinstance(init, type(self)):
                raise InputFileError(
                    f"{init._describe()}: is a {type(init).__name__}, not a {type(self).__name__}"
                )
            node = init._node
            object.__setattr__(self, "_iscopy", True)
            # a shallow copy shares the node, so also the scalings still pending
            object.__setattr__(self, "_array_scales", getattr(init, "_array_scales", None))
            object.__setattr__(self, "_path", init._path)
        elif isinstance(init, TaggedNode):
            self._check_tag(init.tag, "<node>")
            node = init
        elif isinstance(init, Node):
            node = self._new_node(init._data)
        elif isinstance(init, Mapping):
            node = self._new_node(dict(init))
        elif isinstance(init, str | PurePath):
            path = os.fspath(init)
            af = open_asdf_file(path, memmap=memmap)
            try:
                node = _root_node(af, path)
                self._check_tag(node.tag, path)
            except BaseException:
                af.close()
                raise
            _patch_filename(node, path)
            object.__setattr__(self, "_asdf", af)
            object.__setattr__(self, "_path", path)
        else:
            raise TypeError(f"cannot make a {type(self).__name__} from {type(init).__name__}")
        object.__setattr__(self, "_node", node)

    # construction helpers -------------------------------------------------------
    @classmethod
    def _new_node(cls, data: dict) -> TaggedNode:
        tag = tag_uri(cls._tag_name)
        return node_class_for_tag(tag)(data, tag)

    @classmethod
    def _check_tag(cls, tag: str, where: str) -> None:
        parts = split_tag(tag)
        if parts is None or parts[0] != cls._tag_name:
            found = MODEL_REGISTRY.get(parts[0]) if parts else None
            what = found.__name__ if found else f"tag {tag}"
            raise InputFileError(f"{where}: holds a {what}, not a {cls.__name__}")

    @classmethod
    def _default_meta(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def create_minimal(cls, defaults: Mapping[str, Any] | None = None) -> Self:
        """Return a model with complete default metadata (no arrays unless given).

        Parameters
        ----------
        defaults : Mapping, optional
            Content deep-merged over the defaults, e.g. ``{"data": array,
            "meta": {"exposure": {"frame_time": 3.04}}}``.

        Returns
        -------
        DataModel
            The new model.
        """
        from ._meta import deep_merge

        tree: dict[str, Any] = {"meta": cls._default_meta()}
        if defaults:
            deep_merge(tree, defaults)
        return cls(tree)

    @classmethod
    def create_fake_data(
        cls, defaults: Mapping[str, Any] | None = None, shape: tuple[int, ...] | None = None
    ) -> Self:
        """Return a minimal model plus zero-filled required arrays.

        Parameters
        ----------
        defaults : Mapping, optional
            As for :meth:`create_minimal` (given arrays are kept).
        shape : tuple of int, optional
            Shape of the primary (largest-ndim) arrays; arrays of fewer dimensions
            use the trailing axes.  Default ``(2, 8, 8)``.

        Returns
        -------
        DataModel
            The new model.
        """
        model = cls.create_minimal(defaults)
        shape = tuple(shape) if shape is not None else (2, 8, 8)
        for name in cls._required_arrays:
            if name in model._node._data:
                continue
            dtype, ndim = cls._array_specs[name]
            full = (2, *shape) if len(shape) < ndim else shape
            model._node._data[name] = np.zeros(full[len(full) - ndim :], dtype=dtype)
        return model

    @classmethod
    def from_model(cls, other: DataModel, **arrays: Any) -> Self:
        """Return a new model of this class carrying over ``other``'s metadata.

        Parameters
        ----------
        other : DataModel
            Source model; its whole ``meta`` tree is deep-copied.
        **arrays
            Arrays (or other top-level items) of the new model.

        Returns
        -------
        DataModel
            The new model; ``meta.model_type`` is set to this class's name.
        """
        meta = copy.deepcopy(other._node._data.get("meta", {}))
        model = cls({"meta": meta, **arrays})
        model._prepare_meta_from(other)
        return model

    def _prepare_meta_from(self, other: DataModel) -> None:
        meta = self._node._data["meta"]
        if "model_type" in meta or isinstance(meta, dict):
            meta["model_type"] = type(self).__name__

    # attribute access -----------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        data = self._node._data
        try:
            value = data[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}") from None
        if _is_lazy_array(value):
            value = self._load_array(name, value)
        return wrap(value)

    def _load_array(self, name: str, value: Any) -> np.ndarray:
        try:
            # an lz4 block (the official files): decompressed in parallel first
            preload_lz4_block(value, effective_n_threads())
            with asdf_context():  # a compressed block: asdf looks up its compressor
                array = value._make_array()
        except Exception as exc:
            raise InputFileError(
                f"{self._describe()}: cannot read array {name!r} ({_one_line(exc)})"
            ) from exc
        scales = getattr(self, "_array_scales", None)
        if scales and name in scales:
            array = _scale_array(array, scales.pop(name), self._array_specs.get(name))
        self._node._data[name] = array
        return array

    def array_chunks(self, name: str) -> Lz4Chunks | None:
        """Return an unread lz4-compressed array as chunks to convert one at a time.

        For a reader that turns the array into another one (dq_init: the uint16
        resultants into the float32 ramp) and never needs it whole: see `Lz4Chunks`.
        The array itself stays unread (``model.<name>`` still reads it whole).

        Parameters
        ----------
        name : str
            A top-level array of the model.

        Returns
        -------
        Lz4Chunks or None
            None if the array is already in memory, not an lz4 block of a local file
            (or one laid out otherwise than roman_datamodels writes them), or to be
            scaled when read: then read ``model.<name>``. Errors while reading the
            chunks are raised as ``InputFileError`` naming the file and the array.
        """
        value = self._node._data.get(name)
        if not _is_lazy_array(value) or name in (getattr(self, "_array_scales", None) or {}):
            return None
        chunks = Lz4Chunks.of(value)
        if chunks is not None:
            chunks.label = f"{self._describe()}: cannot read array {name!r}"
        return chunks

    def mapped_array(self, name: str) -> MappedArray | None:
        """Return an unread array as a read-only map of its file, read a block of rows at a time.

        For a reader that needs the array a block of rows at a time (the mosaic's
        resample): the rows are read from the file when indexed, with any scale still
        pending applied to them, without a copy of the whole array. An uncompressed
        block is memory-mapped; an lz4-compressed one (roman_datamodels' files)
        decompresses only the chunks holding the rows indexed (`Lz4Rows`).
        ``model.<name>`` still reads it whole.

        Parameters
        ----------
        name : str
            A top-level array of the model.

        Returns
        -------
        MappedArray or None
            None if the array is already in memory, compressed otherwise than with lz4
            (or small, or laid out otherwise than as one C-ordered block), not in a
            local file, laid out otherwise than contiguously, or asdf's internals
            changed.
        """
        value = self._node._data.get(name)
        if not _is_lazy_array(value):
            return None
        factor = (getattr(self, "_array_scales", None) or {}).get(name)
        chunks = Lz4Chunks.of(value)
        if chunks is not None:
            return MappedArray(chunks.detached(), factor, self._array_specs.get(name))
        try:
            if value._mask is not None or value._strides is not None or value._array is not None:
                return None
            callback = value._data_callback
            block = callback._read_blocks_ref()[callback._index]
            header = block.header
            if header["compression"] not in (b"\0\0\0\0", b"", None):
                return None
            dtype = np.dtype(value._dtype)
            shape = tuple(int(v) for v in value._shape)
            offset = int(block.data_offset) + int(value._offset or 0)
            if not shape or min(shape) <= 0 or (
                    math.prod(shape) * dtype.itemsize > int(header["data_size"])):
                return None
            fh = block._fd()._fd
            mapped = np.memmap(fh, dtype=dtype, mode="r", offset=offset, shape=shape)
        except Exception:  # asdf internals changed, or not a local file: read it whole
            return None
        return MappedArray(mapped.view(np.ndarray), factor, self._array_specs.get(name))

    def _set_array_scales(self, factors: Mapping[str, float]) -> None:
        """Multiply arrays by ``factors`` (name -> factor) when they are read.

        An array already in memory is scaled now; a lazily loaded one when it is first
        read (`_scale_array`: in float32, then in the schema's dtype, as if the scaled
        model had been written and read back). Used by `ModelLibrary` to apply a
        recorded unit conversion without rewriting the member.
        """
        pending = getattr(self, "_array_scales", None)
        if pending is None:
            pending = {}
            object.__setattr__(self, "_array_scales", pending)
        data = self._node._data
        for name, factor in factors.items():
            value = data.get(name)
            if value is None:
                continue
            if _is_lazy_array(value):
                pending[name] = float(factor) * pending.get(name, 1.0)
            else:
                data[name] = _scale_array(np.asarray(value), factor, self._array_specs.get(name))

    def _load_scaled_arrays(self) -> None:
        """Read now the arrays whose scaling is still pending (before writing)."""
        for name in list(getattr(self, "_array_scales", None) or ()):
            value = self._node._data.get(name)
            if _is_lazy_array(value):
                self._load_array(name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or hasattr(type(self), name):
            object.__setattr__(self, name, value)
        else:
            self._node._data[name] = unwrap(value)

    def __delattr__(self, name: str) -> None:
        try:
            del self._node._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key) if key in self._node._data else self.to_node()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._node._data[key] = unwrap(value)

    def __contains__(self, key: object) -> bool:
        return key in self._node._data

    def __iter__(self):
        return iter(self._node._data)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._node._data))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._describe()}>"

    def to_node(self) -> TaggedNode:
        """Return the tagged root node (the ``roman`` tree), not a copy.

        Returns
        -------
        TaggedNode
            The root node.
        """
        return self._node

    @property
    def tag(self) -> str:
        """str: The Roman tag URI this model is written with."""
        return self._node.tag

    @property
    def shape(self) -> tuple[int, ...] | None:
        """Shape of the ``data`` array, if any."""
        value = self._node._data.get("data")
        return None if value is None else tuple(value.shape)

    def file_node(self, key: str) -> Any:
        """Return a top-level node, other than ``roman``, of the file this model was read from.

        Simulators record their truth and settings there (``romanisim``,
        ``romancal_lite_truth``). Arrays in it are not loaded.

        Parameters
        ----------
        key : str
            Top-level key of the ASDF tree.

        Returns
        -------
        object or None
            The node, or None for an in-memory model or a file without it.
        """
        af = self._asdf
        if af is None or key == "roman":
            return None
        try:
            return af.tree.get(key)
        except (AttributeError, ValueError, OSError):
            return None

    @property
    def file_path(self) -> str | None:
        """The file the model was read from (None for a model made in memory).

        Returns
        -------
        str or None
            The path as given to `open`.
        """
        return os.fspath(self._path) if self._path else None

    def _describe(self) -> str:
        if self._path:
            return os.fspath(self._path)
        try:
            return str(self._node._data["meta"]["filename"])
        except (KeyError, TypeError):
            return f"<in-memory {type(self).__name__}>"

    # life cycle -----------------------------------------------------------------
    def close(self) -> None:
        """Close the underlying file (no-op for copies and in-memory models)."""
        if self._asdf is not None and not self._iscopy:
            self._asdf.close()
            object.__setattr__(self, "_asdf", None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def load_arrays(self) -> None:
        """Read every lazily loaded top-level array into memory now."""
        for name, value in list(self._node._data.items()):
            if _is_lazy_array(value):
                self._load_array(name, value)

    def copy(self, deepcopy: bool = True) -> Self:
        """Return a copy of the model.

        Parameters
        ----------
        deepcopy : bool, optional
            Copy arrays and metadata (default); otherwise the copy shares them.

        Returns
        -------
        DataModel
            The copy, independent of the original's file.
        """
        if not deepcopy:
            return type(self)(self)
        self.load_arrays()
        node = copy.deepcopy(self._node)
        new = type(self)(node)
        object.__setattr__(new, "_path", self._path)
        return new

    __copy__ = copy

    def __deepcopy__(self, memo: dict) -> Self:
        return self.copy(deepcopy=True)

    # saving ---------------------------------------------------------------------
    def _tree_for_writing(self, filename: str) -> TaggedNode:
        data = dict(self._node._data)
        meta = data.get("meta")
        if isinstance(meta, dict):
            meta = dict(meta)
            defaults = self._default_meta()
            if "filename" in meta or "filename" in defaults:
                meta["filename"] = filename
            if "file_date" in meta or "file_date" in defaults:
                meta["file_date"] = Time.now()
            data["meta"] = meta
        casts = []
        for name, (dtype, ndim) in self._array_specs.items():
            value = data.get(name)
            if value is None or not hasattr(value, "dtype"):
                continue
            if value.ndim != ndim:
                raise ValueError(
                    f"{type(self).__name__}.{name} must have {ndim} dimensions, "
                    f"got shape {tuple(value.shape)}"
                )
            if value.dtype != np.dtype(dtype):
                casts.append((name, dtype))
        if casts:
            # numpy releases the GIL while casting: arrays convert in parallel
            from concurrent.futures import ThreadPoolExecutor

            from romancore import effective_n_threads, to_float16

            def cast(item: tuple[str, str]) -> np.ndarray:
                value = np.asarray(data[item[0]])
                if value.dtype == np.float32 and np.dtype(item[1]) == np.float16:
                    # the float16 arrays of an image: numpy's cast takes ~1 s for a
                    # variance image whose values underflow float16; same bits, fast
                    return to_float16(value, n_threads=1)
                return value.astype(item[1])

            with ThreadPoolExecutor(min(effective_n_threads(), len(casts))) as pool:
                for (name, _), value in zip(casts, pool.map(cast, casts), strict=True):
                    data[name] = value
        return type(self._node)(data, self._node.tag)

    def save(
        self,
        path: str | PurePath | Callable[[str], str],
        dir_path: str | PurePath | None = None,
        *,
        all_array_compression: str | None = None,
        defer: bool = True,
        checksums: bool = True,
    ) -> Path:
        """Write the model to an ASDF file, atomically.

        The file is written to a temporary file in the target directory and
        renamed over ``path`` only when complete, so an error never leaves a
        half-written or destroyed output.  Arrays are written with the dtypes of
        the RAD schema (e.g. ``err`` as float16 in an ``ImageModel``), and
        ``meta.filename`` / ``meta.file_date`` are set in the written file.

        Parameters
        ----------
        path : str, Path or callable
            Output path, or a function of the current ``meta.filename`` returning it.
        dir_path : str or Path, optional
            Directory to write into (only the file name of ``path`` is used).
        all_array_compression : str, optional
            ASDF block compression (``"zlib"``, ``"lz4"``...); none by default.
        defer : bool, optional
            False for a file needed at once (a scratch file): in place now even inside
            `deferred_outputs`.
        checksums : bool, optional
            Write the blocks' MD5 checksums (False: a scratch file only this process
            reads back; hashing a full-frame model costs ~0.5 s).

        Returns
        -------
        Path
            The written file.

        Raises
        ------
        OutputError
            If the file cannot be written.
        """
        if callable(path):
            path = path(str(self._node._data.get("meta", {}).get("filename", "")))
        out = Path(path)
        if dir_path is not None:
            out = Path(dir_path) / out.name
        if out.suffix != ".asdf":
            raise OutputError(f"{out}: only .asdf output files are supported")
        self.load_arrays_if_closed()
        self._load_scaled_arrays()
        tree = self._tree_for_writing(out.name)
        write_asdf_atomic(
            out, {"roman": tree}, all_array_compression=all_array_compression, defer=defer,
            checksums=checksums,
        )
        return out

    def load_arrays_if_closed(self) -> None:
        """Load lazy arrays when the source file is already closed (needed to write them)."""
        if self._asdf is None and self._path is not None:
            self.load_arrays()

    # inspection -----------------------------------------------------------------
    def _asdf_view(self) -> asdf.AsdfFile:
        with asdf_context():
            af = asdf.AsdfFile(extensions=[get_extension()])
            af.tree = {"roman": self._node}
        return af

    def info(self, *args: Any, **kwargs: Any) -> None:
        """Print the tree (``asdf.AsdfFile.info``: ``max_rows``, ``max_cols``, ``show_values``).

        Parameters
        ----------
        *args, **kwargs
            Passed to :meth:`asdf.AsdfFile.info`.
        """
        return self._asdf_view().info(*args, **kwargs)

    def search(self, *args: Any, **kwargs: Any) -> Any:
        """Search the tree by key regex / type / value (``asdf.AsdfFile.search``).

        Parameters
        ----------
        *args, **kwargs
            Passed to :meth:`asdf.AsdfFile.search` (``key``, ``type_``, ``value``,
            ``filter_``).

        Returns
        -------
        asdf.search.AsdfSearchResult
            Printable result, indexable to narrow it down.
        """
        return self._asdf_view().search(*args, **kwargs)

    def items(self):
        """Iterate over all leaves as ``("meta.exposure.frame_time", value)`` pairs.

        Yields
        ------
        tuple of (str, object)
            Dot-separated key and value.
        """
        yield from Node(self._node._data).flat_items()

    def to_flat_dict(self, include_arrays: bool = True) -> dict[str, Any]:
        """Return ``{"roman.meta.a.b": value}`` for every leaf (``Time`` as ISO string).

        Parameters
        ----------
        include_arrays : bool, optional
            Keep array leaves.

        Returns
        -------
        dict
            Flat dictionary.
        """
        return {
            f"roman.{key}": value
            for key, value in Node(self._node._data).to_flat_dict(include_arrays).items()
        }

    def get_crds_parameters(self) -> dict[str, str | int | float | complex | bool]:
        """Return the ``roman.meta.*`` scalars CRDS selects reference files with.

        Same content as roman_datamodels' ``DataModel.get_crds_parameters``:
        every non-``None`` scalar leaf of ``meta`` (``Time`` as its ISO string),
        lists flattened with their index.

        Returns
        -------
        dict
            ``{"roman.meta.instrument.detector": "WFI02", ...}``.
        """
        meta = self._node._data.get("meta")
        if not isinstance(meta, dict):
            return {}
        return {
            f"roman.meta.{key}": value
            for key, value in Node(meta).to_flat_dict(include_arrays=False).items()
            if isinstance(value, str | int | float | complex | bool)
            and not isinstance(value, np.generic)
        }


def write_asdf_atomic(
    path: Path,
    tree: dict[str, Any],
    *,
    all_array_compression: str | None = None,
    compressed: Sequence[np.ndarray] = (),
    defer: bool = True,
    checksums: bool = True,
) -> Path:
    """Write an ASDF tree (with the romancal_lite extension) to ``path`` atomically.

    The file is written under a temporary name in the target directory, given the
    permissions a new file gets (umask), and renamed over ``path``; nothing is left
    behind on failure.

    Parameters
    ----------
    path : Path
        Destination.
    tree : dict
        Top-level nodes (``{"roman": ...}`` and any others).
    all_array_compression : str, optional
        Block compression of every array (``"zlib"``...); none by default.
    compressed : sequence of numpy.ndarray, optional
        Arrays of ``tree`` to zlib-compress individually.
    defer : bool, optional
        False for a file needed at once (a cached reference file): renamed into place
        now even inside `deferred_outputs` (see `atomic_write`).
    checksums : bool, optional
        Write the blocks' MD5 checksums.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputError
        If the file cannot be written.
    """
    with asdf_context():
        af = asdf.AsdfFile(extensions=[get_extension()])
        af.tree = tree
        for array in compressed:
            af.set_array_compression(array, "zlib")

    def write(fh: Any) -> None:
        with warnings.catch_warnings(), asdf_context():
            warnings.filterwarnings("ignore", category=asdf.exceptions.AsdfWarning)
            # an open file, never the name: asdf would read "#" and "%" in it as URI syntax
            n_threads = effective_n_threads()
            with released_while_written(tree):
                # asdf writes the tree and the block headers; the blocks' data are
                # written afterwards by every thread, each hashing what it writes
                with deferred_block_data(fh) as deferred:
                    af.write_to(fh, all_array_compression=all_array_compression,
                                write_checksums=False)
                fh.flush()
                digests = deferred.write(fh.fileno(), n_threads, checksums=checksums)
            if not checksums:
                return
            # the MD5s into the block headers (blocks asdf wrote itself are hashed here)
            if not fill_checksums(fh.fileno(), n_threads, known=digests):
                fh.seek(0)
                fh.truncate()
                af.write_to(fh, all_array_compression=all_array_compression,
                            write_checksums=True)

    return atomic_write(path, write, defer=defer)


def _patch_filename(node: TaggedNode, path: str) -> None:
    """Make ``meta.filename`` the name of the file read (as roman_datamodels does)."""
    meta = node._data.get("meta")
    if isinstance(meta, dict) and "filename" in meta:
        name = os.path.basename(path)
        if meta["filename"] != name:
            old = meta["filename"]
            # keep a tagged string's type (TaggedStr); anything else becomes a str
            meta["filename"] = type(old)(name) if isinstance(old, str) else name


def _root_node(af: asdf.AsdfFile, path: str) -> TaggedNode:
    if "roman" not in af.tree:
        raise InputFileError(f"{path}: not a Roman data file (no 'roman' node)")
    node = af.tree["roman"]
    if not isinstance(node, TaggedNode):
        tag = getattr(node, "_tag", None)
        what = f"unknown tag {tag}" if tag else "untagged node"
        raise InputFileError(f"{path}: 'roman' node is not a Roman data model ({what})")
    return node


def open(  # noqa: A001 - mirrors roman_datamodels.datamodels.open
    init: str | PurePath | DataModel,
    model_type: type[DataModel] | None = None,
    *,
    memmap: bool = False,
    validate: bool = True,
) -> DataModel:
    """Open a Roman ASDF file (or take a model) as the right model class.

    Parameters
    ----------
    init : str, Path or DataModel
        File to open, or a model (returned as a shallow copy sharing its data).
    model_type : type, optional
        Required model class; a different class raises ``InputFileError``.
    memmap : bool, optional
        Memory-map uncompressed array blocks (read-only).
    validate : bool, optional
        Validate the file's tree against its schemas (see `open_asdf_file`).

    Returns
    -------
    DataModel
        Instance of the class registered for the tag of the ``roman`` node.

    Raises
    ------
    InputFileError
        Missing, non-ASDF, truncated or non-Roman file, unknown model tag, or a
        model type other than ``model_type``.
    """
    if isinstance(init, DataModel):
        if model_type is not None and not isinstance(init, model_type):
            raise InputFileError(
                f"{init._describe()}: is a {type(init).__name__}, not a {model_type.__name__}"
            )
        return init.copy(deepcopy=False)
    if not isinstance(init, str | PurePath):
        raise InputFileError(f"{init!r}: not a file name or a data model")
    path = os.fspath(init)
    af = open_asdf_file(path, memmap=memmap, validate=validate)
    try:
        node = _root_node(af, path)
        parts = split_tag(node.tag)
        cls = MODEL_REGISTRY.get(parts[0]) if parts else None
        if cls is None:
            raise InputFileError(f"{path}: no romancal_lite model for tag {node.tag}")
        if model_type is not None and not issubclass(cls, model_type):
            raise InputFileError(f"{path}: holds a {cls.__name__}, not a {model_type.__name__}")
    except BaseException:
        af.close()
        raise
    _patch_filename(node, path)
    model = cls(node)
    object.__setattr__(model, "_asdf", af)
    object.__setattr__(model, "_path", path)
    return model
