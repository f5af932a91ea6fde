"""Inputs of the steps that work on many exposures (flux, resample, ...): a `ModelLibrary`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from romancal_lite.errors import InputFileError

__all__ = ["SavesMembers", "as_library", "is_many", "product_name"]


def is_many(input: Any) -> bool:  # noqa: A002
    """Return whether ``input`` is several exposures (a library, list or association).

    Parameters
    ----------
    input : object
        A step's input.

    Returns
    -------
    bool
        True for a `ModelLibrary`, a list/tuple or an ``*.json`` association path.
    """
    from romancal_lite.associations import Association, is_association
    from romancal_lite.datamodels import ModelLibrary

    return isinstance(input, ModelLibrary | Association | list | tuple) or is_association(input)


def as_library(input: Any, *, on_disk: bool = True) -> Any:  # noqa: A002
    """Return ``input`` as a `ModelLibrary` (a library is returned as is).

    Parameters
    ----------
    input : ModelLibrary, Association, list, path or model
        An association file, a list of files or models, or one file or model.
    on_disk : bool, optional
        For files: only borrowed models are in memory.

    Returns
    -------
    ModelLibrary
        The library.

    Raises
    ------
    InputFileError
        If the input cannot be made a library (see `ModelLibrary`).
    """
    from romancal_lite.datamodels import DataModel, ModelLibrary

    if isinstance(input, ModelLibrary):
        return input
    if isinstance(input, DataModel):
        return ModelLibrary([input])
    if isinstance(input, str | os.PathLike) and not is_many(input):
        if not os.path.isfile(input):
            raise InputFileError(f"input file not found: {os.fspath(input)}")
        return ModelLibrary([input], on_disk=on_disk)
    return ModelLibrary(input, on_disk=on_disk)


def product_name(library: Any, default: str = "mosaic") -> str:
    """Return the name of a library's combined product (the association's product name).

    Parameters
    ----------
    library : ModelLibrary
        The library.
    default : str, optional
        Name when there is no association: the first member's name (without its
        suffix) if there is one, else this.

    Returns
    -------
    str
        The product name.
    """
    from romancal_lite.datamodels.filenames import split_suffix

    if library.asn is not None and library.asn.name:
        return library.asn.name
    if len(library):
        root, _ = split_suffix(library.members[0].path.name)
        return os.path.basename(root) or default
    return default


class SavesMembers:
    """Step mix-in: a `ModelLibrary` result is saved member by member.

    Each member is written as ``<output dir>/<member>_<suffix>.asdf`` by the step's own
    single-image ``save`` (borrowed one at a time, shelved unchanged); any other result
    is saved as usual. Put it before `Step` in the bases.
    """

    def save(self, model: Any, path: Any) -> None:
        """Save the image, or each image of a library as ``<member>_<suffix>.asdf``.

        Parameters
        ----------
        model : ImageModel or ModelLibrary
            The result.
        path : pathlib.Path
            Output of a single image (a library's members are named after themselves).
        """
        from romancal_lite.datamodels import ModelLibrary
        from romancal_lite.stpipe.naming import make_output_name

        save_one = super().save  # type: ignore[misc]
        if not isinstance(model, ModelLibrary):
            save_one(model, path)
            return
        suffix = self.suffix or self.class_alias  # type: ignore[attr-defined]
        with model:
            for index in range(len(model)):
                image = model.borrow(index)
                name = make_output_name(model.members[index].path.name, suffix)
                try:
                    save_one(image, Path(path).parent / name)
                finally:
                    model.shelve(image, index, modify=False)


def data_shape(model: Any) -> tuple[int, ...]:
    """Return the shape of ``model.data``, from the file's metadata when it is not loaded.

    Reading a member's array only for its shape would leave it in memory: the mosaic's
    drizzles then stage it to a file instead of reading its rows from the input
    (`DataModel.mapped_array`).

    Parameters
    ----------
    model : DataModel
        A model (an unloaded array is not read).

    Returns
    -------
    tuple of int
        The shape.
    """
    import numpy as np

    shape = getattr(model, "shape", None)
    if shape is None:
        shape = np.shape(model.data)
    return tuple(int(v) for v in shape)
