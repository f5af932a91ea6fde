"""Array preparation shared by the steps that hand model arrays to romancore in place."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["writable_contiguous"]


def writable_contiguous(model: Any, *names: str) -> None:
    """Make the named arrays of ``model`` C-contiguous and writable, in place on the model.

    romancore's in-place kernels need both; arrays read from a file written by other
    software can be strided or read-only (memory-mapped). Arrays that already qualify
    are left alone (no copy).

    Parameters
    ----------
    model : DataModel
        The model whose arrays are checked.
    *names : str
        Array attribute names, e.g. ``"data", "groupdq", "pixeldq"``.
    """
    for name in names:
        array = getattr(model, name)
        if not (array.flags.c_contiguous and array.flags.writeable):
            setattr(model, name, np.array(array, order="C", copy=True))
