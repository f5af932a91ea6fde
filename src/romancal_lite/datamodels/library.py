"""A library of exposures processed one at a time (romancal's ``ModelLibrary``).

Steps that combine many exposures (skymatch, outlier detection, resample) see them
through a `ModelLibrary`: members are *borrowed* one at a time inside a ``with``
block and *shelved* again, so that, on disk, only the borrowed models are in memory.
A model shelved with ``modify=True`` is written to the library's own temporary
directory (uncompressed) and later borrows read it from there; the input files are
never written.

Facts taken from romancal 1.1 (``romancal/datamodels/library.py``) and stpipe's
``AbstractModelLibrary``: the members are those of the association's first product;
a member's group (the exposure its detector image belongs to) is the association's
``group_id``, else ``meta.group_id``, else ``meta.observation.observation_id``; an
association member's ``tweakreg_catalog`` appears on the borrowed model as
``meta.source_catalog.tweakreg_catalog_name``. When ``observation_id`` is unknown the
group is built from the observation fields that name an exposure (program ...
exposure), as romancal 1.0's library did.
"""

from __future__ import annotations

import operator
import os
import tempfile
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..associations import Association, Member, is_association, load_asn
from ..errors import InputFileError, RomancalLiteError
from ..interrupts import remove_tree
from ._core import DataModel, open_asdf_file
from ._node import Node

__all__ = ["BorrowError", "ModelLibrary", "group_id_from_meta"]


class BorrowError(RomancalLiteError):
    """A library model borrowed or shelved wrongly (outside ``with``, twice, not returned)."""


#: ``meta.observation`` fields that together name one exposure (RAD ``observation``).
_EXPOSURE_FIELDS = (
    "program",
    "execution_plan",
    "pass",
    "segment",
    "observation",
    "visit",
    "visit_file_group",
    "visit_file_sequence",
    "visit_file_activity",
    "exposure",
)
_UNKNOWN = {"", "?", "None", "-999999", "NONE"}


def group_id_from_meta(meta: Any, default: str) -> str:
    """Return the exposure group of an image from its metadata.

    ``meta.group_id`` if set, else ``meta.observation.observation_id`` if known, else
    the observation fields that name an exposure joined by ``_``, else ``default``
    (romancal 1.1 ``ModelLibrary._model_to_group_id``; the field fallback as
    romancal 1.0).

    Parameters
    ----------
    meta : Mapping
        The ``meta`` tree (dict or `Node`).
    default : str
        Group of an image whose metadata names no exposure (its file name: a group
        of its own).

    Returns
    -------
    str
        The group id.
    """
    group = meta.get("group_id") if hasattr(meta, "get") else None
    if group is not None and str(group) not in _UNKNOWN:
        return str(group)
    observation = meta.get("observation") if hasattr(meta, "get") else None
    if not hasattr(observation, "get"):
        return default
    obs_id = observation.get("observation_id")
    if obs_id is not None and str(obs_id) not in _UNKNOWN:
        return str(obs_id)
    fields = [observation.get(key) for key in _EXPOSURE_FIELDS]
    if all(value is not None and str(value) not in _UNKNOWN for value in fields):
        return "_".join(str(value) for value in fields)
    return default


def _plain(meta: Any) -> Any:
    return meta._data if isinstance(meta, Node) else meta


def _copy_meta(meta: Any) -> dict:
    """Return a deep copy of a ``meta`` tree; the WCS object is shared (never modified)."""
    import copy

    meta = _plain(meta)
    out = copy.deepcopy({key: value for key, value in meta.items() if key != "wcs"})
    if "wcs" in meta:
        out["wcs"] = meta["wcs"]
    return out


class ModelLibrary:
    """Exposures borrowed one at a time (romancal's ``ModelLibrary``).

    Parameters
    ----------
    init : str, path-like, Association, list of paths or list of ImageModel
        An ``*_asn.json`` file or a loaded `Association` (every member of its first
        product), a list of image files, or a list of models (kept in memory; then
        ``on_disk`` is ignored).
    on_disk : bool, optional
        Keep the members on disk: only borrowed models are in memory, and models
        shelved with ``modify=True`` are written to a temporary directory. False keeps
        every member in memory once borrowed.
    temp_directory : str or path-like, optional
        Where the temporary directory is made (default: the system's).

    Raises
    ------
    InputFileError
        If the association cannot be read, a member file does not exist, or the
        list is empty or holds something other than paths or image models.

    Examples
    --------
    >>> library = ModelLibrary("mosaic_asn.json")  # doctest: +SKIP
    >>> with library:  # doctest: +SKIP
    ...     for index in range(len(library)):
    ...         model = library.borrow(index)
    ...         model.data -= 1.0
    ...         library.shelve(model, index, modify=True)
    """

    def __init__(
        self,
        init: Any,
        *,
        on_disk: bool = True,
        temp_directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self._asn: Association | None = None
        self._models: list[DataModel | None]
        if isinstance(init, str | os.PathLike) and is_association(init):
            init = load_asn(init)
        if isinstance(init, Association):
            self._asn = init
            members = tuple(init.members)
            self._models = [None] * len(members)
            self._in_memory = False
        elif isinstance(init, str | os.PathLike):
            raise InputFileError(
                f"{os.fspath(init)}: a model library is made from an association "
                "(*_asn.json) or a list of files or models"
            )
        elif isinstance(init, Sequence) and not isinstance(init, str | bytes):
            items = list(init)
            if not items:
                raise InputFileError("a model library needs at least one member (empty list)")
            if all(isinstance(item, DataModel) for item in items):
                members = tuple(
                    Member(path=Path(str(m.meta.get("filename") or f"model{i}.asdf")))
                    for i, m in enumerate(items)
                )
                self._models = list(items)
                self._in_memory = True
            elif all(isinstance(item, str | os.PathLike) for item in items):
                members = tuple(Member(path=Path(os.fspath(item))) for item in items)
                for member in members:
                    if not member.path.is_file():
                        raise InputFileError(f"{member.path}: member file not found")
                self._models = [None] * len(members)
                self._in_memory = False
            else:
                kinds = sorted({type(item).__name__ for item in items})
                raise InputFileError(
                    "a model library is made from file names or models, not a list of "
                    + ", ".join(kinds)
                )
        else:
            raise InputFileError(f"cannot make a model library from a {type(init).__name__}")
        self._members: tuple[Member, ...] = members
        self._on_disk = bool(on_disk) and not self._in_memory
        self._temp_parent = None if temp_directory is None else os.fspath(temp_directory)
        self._temp_dir: str | None = None
        self._finalizer: weakref.finalize | None = None
        self._modified: dict[int, str] = {}
        #: files this library opened with asdf's schema validation, and what os.stat
        #: said of them then: an unchanged file is not validated again when reopened
        self._validated: dict[str, tuple[int, ...]] = {}
        # metadata shelved with modify="meta": applied to the member when read
        self._meta_patches: dict[int, dict] = {}
        # arrays of a member to multiply when read (a unit conversion recorded with
        # shelve(..., modify="meta", scale=...)): name -> factor
        self._array_scales: dict[int, dict[str, float]] = {}
        # arrays of a member shelved with modify="meta", arrays=(...): name -> .npy
        self._array_patches: dict[int, dict[str, str]] = {}
        self._meta_cache: dict[int, dict] = {}
        self._borrowed: dict[int, DataModel] = {}
        self._depth = 0
        self._groups: list[str] | None = None

    # description ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._members)

    def __repr__(self) -> str:
        where = "in memory" if not self._on_disk else "on disk"
        return f"<ModelLibrary of {len(self)} members, {where}>"

    @property
    def asn(self) -> Association | None:
        """Association or None: the association the library was made from."""
        return self._asn

    @property
    def members(self) -> tuple[Member, ...]:
        """Members (`Member`): path, exptype, group_id and tweakreg_catalog of each member."""
        return self._members

    @property
    def on_disk(self) -> bool:
        """Whether members are read from disk when borrowed."""
        return self._on_disk

    @property
    def scratch_parent(self) -> str | None:
        """Where the library's temporary files go (None: the system's temporary directory)."""
        return self._temp_parent

    @property
    def temp_directory(self) -> str | None:
        """The directory of modified members (None until one is written)."""
        return self._temp_dir

    def _member_group(self, index: int) -> str:
        member = self._members[index]
        if member.group_id is not None:
            return member.group_id
        default = member.path.name
        model = self._models[index]
        if model is not None:
            return group_id_from_meta(_plain(model._node._data.get("meta", {})), default)
        return group_id_from_meta(_plain(self.read_meta(index, wcs=False)), default)

    def _group_list(self) -> list[str]:
        if self._groups is None:
            self._groups = [self._member_group(i) for i in range(len(self))]
        return self._groups

    @property
    def group_names(self) -> list[str]:
        """The exposure groups, in order of first appearance."""
        return list(dict.fromkeys(self._group_list()))

    @property
    def group_indices(self) -> dict[str, list[int]]:
        """Group name -> indices of its members, groups in order of first appearance."""
        indices: dict[str, list[int]] = {}
        for index, group in enumerate(self._group_list()):
            indices.setdefault(group, []).append(index)
        return indices

    # reading metadata -------------------------------------------------------------
    def _source(self, index: int) -> str:
        return self._modified.get(index) or os.fspath(self._members[index].path)

    def read_meta(self, index: int, *, wcs: bool = True) -> Node:
        """Return a member's ``meta`` without reading its arrays.

        Parameters
        ----------
        index : int
            The member.
        wcs : bool, optional
            Include ``meta.wcs`` (deserialising a gwcs takes a few tens of ms).

        Returns
        -------
        Node
            The member's metadata (as last shelved with ``modify=True``); changing it
            does not change the member.

        Raises
        ------
        IndexError
            If ``index`` is not a member.
        InputFileError
            If the member's file cannot be read.
        """
        import copy

        index = self._check_index(index)
        model = self._models[index]
        if model is not None:
            source = _plain(model._node._data.get("meta", {}))
        elif index in self._meta_patches:
            source = self._meta_patches[index]
        elif index in self._meta_cache:
            source = self._meta_cache[index]
        else:
            source = self._meta_cache[index] = self._read_meta_file(self._source(index))
        # a copy (the WCS object is shared: it is not changed by reading it)
        meta = {key: value for key, value in source.items() if key != "wcs"}
        meta = copy.deepcopy(meta)
        if wcs and "wcs" in source:
            meta["wcs"] = source["wcs"]
        self._apply_member(meta, index)
        return Node(meta)

    @staticmethod
    def _read_meta_file(path: str) -> dict:
        import asdf

        # the arrays are not read; the schema validation (~0.5 s a file) is left to
        # borrow, which opens the file for use
        with asdf.config_context() as config:
            config.validate_on_read = False
            af = open_asdf_file(path)
        try:
            root = af.tree.get("roman")
            data = getattr(root, "_data", None)
            if not isinstance(data, dict) or not isinstance(data.get("meta"), dict):
                raise InputFileError(f"{path}: not a Roman data file (no 'roman.meta')")
            return dict(data["meta"])
        finally:
            af.close()

    def _apply_member(self, meta: dict, index: int) -> None:
        """Give a member's metadata what the association says about it (as romancal)."""
        member = self._members[index]
        if member.group_id is not None:
            meta["group_id"] = member.group_id
        if member.tweakreg_catalog is not None:
            catalog = dict(meta.get("source_catalog") or {})
            catalog["tweakreg_catalog_name"] = member.tweakreg_catalog
            meta["source_catalog"] = catalog

    # borrowing --------------------------------------------------------------------
    def __enter__(self) -> ModelLibrary:
        self._depth += 1
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._depth -= 1
        if self._depth > 0:
            return
        left = sorted(self._borrowed)
        for index in left:
            self._release(index)
        if left and exc_type is None:
            raise BorrowError(
                f"model library: member(s) {', '.join(map(str, left))} borrowed and not "
                "shelved before the end of the 'with' block"
            )

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool):
            raise TypeError("a library index is an int, not a bool")
        try:
            index = operator.index(index)
        except TypeError:
            raise TypeError(f"a library index is an int, not {type(index).__name__}") from None
        if not 0 <= index < len(self):
            raise IndexError(f"model library index {index} out of range (0..{len(self) - 1})")
        return index

    def borrow(self, index: int) -> DataModel:
        """Return member ``index`` (opened from disk when on disk); shelve it after use.

        Parameters
        ----------
        index : int
            The member.

        Returns
        -------
        DataModel
            The model, with the association's ``group_id`` and ``tweakreg_catalog``
            in its metadata.

        Raises
        ------
        BorrowError
            Outside a ``with library:`` block, or if the member is already borrowed.
        InputFileError
            If the member's file cannot be read.
        """
        index = self._check_index(index)
        if self._depth <= 0:
            raise BorrowError("model library: borrow only inside 'with library:'")
        if index in self._borrowed:
            raise BorrowError(f"model library: member {index} is already borrowed")
        model = self._models[index]
        if model is None:
            from ._core import open as open_model

            source = self._source(index)
            seen = _file_identity(source)
            # a file already validated by this library and unchanged since (same
            # device, inode, size and modification time) gives the same tree: its
            # schema validation, half of an open, is not repeated at each borrow
            again = seen is not None and self._validated.get(source) == seen
            model = open_model(source, validate=not again)
            if seen is not None:
                self._validated[source] = seen
            name = self._members[index].path.name
            meta = model._node._data.get("meta")
            if isinstance(meta, dict) and index in self._modified and "filename" in meta:
                meta["filename"] = name
            if index in self._meta_patches:
                model._node._data["meta"] = _copy_meta(self._meta_patches[index])
            if index in self._array_patches:
                import numpy as np

                for name, path in self._array_patches[index].items():
                    # copy-on-write map: a borrower may change it; the file is not
                    model._node._data[name] = np.load(path, mmap_mode="c").view(np.ndarray)
            if index in self._array_scales:
                model._set_array_scales(self._array_scales[index])
            if not self._on_disk:
                self._models[index] = model
        meta = model._node._data.setdefault("meta", {})
        if isinstance(meta, dict):
            self._apply_member(meta, index)
        self._borrowed[index] = model
        return model

    def shelve(self, model: DataModel, index: int | None = None,
               modify: bool | str = False, *, scale: dict[str, float] | None = None,
               arrays: Sequence[str] = ()) -> None:  # fmt: skip
        """Return a borrowed model to the library.

        Parameters
        ----------
        model : DataModel
            The model borrowed (or, with ``modify=True``, its replacement).
        index : int, optional
            Its member index (default: found from the model borrowed).
        modify : bool, optional
            Keep the changes: later borrows see them (on disk the model is written,
            uncompressed, to the library's temporary directory; the input file is
            never written). ``"meta"``: only the metadata changed (the arrays did
            not): on disk the metadata is kept in memory and applied when the member
            is read again, and nothing is written. Otherwise changes are dropped (on
            disk) and the model is closed.
        scale : dict, optional
            With ``modify="meta"``: arrays (name -> factor) that later borrows see
            multiplied by the factor (in float32, stored in the schema's dtype, as if
            the scaled model had been written and read back), e.g. a unit conversion
            recorded in the metadata. Nothing is read or written now; an array is
            scaled when a borrower first reads it.
        arrays : sequence of str, optional
            With ``modify="meta"``: arrays that changed too (e.g. ``("dq",)``); on disk
            only they are written (uncompressed ``.npy`` in the temporary directory,
            read back memory-mapped), not the whole member.

        Raises
        ------
        BorrowError
            Outside a ``with`` block, or if the member is not borrowed.
        """
        if self._depth <= 0:
            raise BorrowError("model library: shelve only inside 'with library:'")
        if index is None:
            found = [i for i, m in self._borrowed.items() if m is model]
            if not found:
                raise BorrowError("model library: this model was not borrowed from it")
            index = found[0]
        index = self._check_index(index)
        if index not in self._borrowed:
            raise BorrowError(f"model library: member {index} is not borrowed")
        borrowed = self._borrowed[index]
        if (scale or arrays) and modify != "meta":
            raise BorrowError("model library: scale= and arrays= are for modify='meta'")
        if modify == "meta" and self._on_disk:
            self._groups = None
            self._meta_cache.pop(index, None)
            self._meta_patches[index] = _copy_meta(model._node._data.get("meta", {}))
            if scale:
                pending = self._array_scales.setdefault(index, {})
                for name, factor in scale.items():
                    pending[name] = float(factor) * pending.get(name, 1.0)
            if arrays:
                self._write_arrays(model, index, arrays)
        elif modify:
            self._groups = None
            self._meta_cache.pop(index, None)
            self._meta_patches.pop(index, None)  # the file written has it
            if self._on_disk:
                path = self._temp_path(index)
                # a scratch copy only the library reads back: no block checksums (the
                # arrays still to be scaled are scaled as they are written)
                model.save(path, defer=False, checksums=False)
                self._modified[index] = os.fspath(path)
                self._array_scales.pop(index, None)
                for old in self._array_patches.pop(index, {}).values():
                    Path(old).unlink(missing_ok=True)
            else:
                if scale:
                    model._set_array_scales(scale)
                self._array_patches.pop(index, None)
                self._models[index] = model
        if self._on_disk:
            if model is not borrowed:
                model.close()
        elif modify and model is not borrowed:
            borrowed.close()
        self._release(index)

    def scratch_file(self, index: int, name: str) -> Path:
        """Return a path for a step's scratch data about a member (not created).

        The file lies in the member's folder of the library's temporary directory and
        goes with it (`close`); e.g. pixel maps reused by later steps.

        Parameters
        ----------
        index : int
            The member.
        name : str
            File name (no directory part).

        Returns
        -------
        pathlib.Path
            The path.
        """
        index = self._check_index(index)
        if not name or os.path.basename(name) != name or name.startswith("."):
            raise ValueError(f"a scratch file name, not {name!r}")
        return self._temp_path(index).parent / name

    def _write_arrays(self, model: DataModel, index: int, names: Sequence[str]) -> None:
        """Write a member's changed arrays (only them) to the temporary directory."""
        import numpy as np

        folder = self._temp_path(index).parent
        patches = self._array_patches.setdefault(index, {})
        pending = self._array_scales.get(index, {})
        for name in names:
            if name not in model:
                raise BorrowError(f"model library: member {index} has no array {name!r}")
            value = np.asarray(model[name])  # read (and scaled) if it was still lazy
            path = folder / f"{name}.npy"
            tmp = folder / f".{name}.npy.partial"
            with open(tmp, "wb") as fh:  # (np.save would add ".npy" to the name)
                np.save(fh, np.ascontiguousarray(value))
            os.replace(tmp, path)
            patches[name] = os.fspath(path)
            pending.pop(name, None)  # what was written is already scaled

    def _release(self, index: int) -> None:
        model = self._borrowed.pop(index)
        if self._on_disk:
            model.close()

    def _temp_path(self, index: int) -> Path:
        if self._temp_dir is None:
            self._temp_dir = tempfile.mkdtemp(
                prefix="romancal_lite_library_", dir=self._temp_parent
            )
            self._finalizer = weakref.finalize(
                self, remove_tree, self._temp_dir
            )
        # one directory per member, so the written file keeps the member's file name
        # (``save`` records the written name as ``meta.filename``)
        folder = Path(self._temp_dir) / f"{index:05d}"
        folder.mkdir(exist_ok=True)
        name = self._members[index].path.name
        if not name.endswith(".asdf"):
            name = f"{Path(name).stem}.asdf"
        return folder / name

    def map_function(
        self, function: Callable[[DataModel, int], Any], modify: bool = False
    ) -> Iterator[Any]:
        """Yield ``function(model, index)`` for each member, borrowing one at a time.

        Parameters
        ----------
        function : callable
            Called with the borrowed model and its index.
        modify : bool, optional
            Shelve each model with ``modify`` (keep the function's changes).

        Yields
        ------
        object
            The function's result for each member, in order.
        """
        with self:
            for index in range(len(self)):
                model = self.borrow(index)
                try:
                    result = function(model, index)
                except BaseException:
                    self.shelve(model, index, modify=False)
                    raise
                self.shelve(model, index, modify=modify)
                yield result

    def close(self) -> None:
        """Delete the temporary directory of modified members.

        The library is then back to its input files.
        """
        for index in list(self._borrowed):
            self._release(index)
        self._modified.clear()
        self._meta_patches.clear()
        self._array_scales.clear()
        self._array_patches.clear()
        self._meta_cache.clear()
        self._groups = None
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._temp_dir = None


def _file_identity(path: str) -> tuple[int, ...] | None:
    """``(device, inode, size, modification time in ns)`` of a file; None if unknown."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
