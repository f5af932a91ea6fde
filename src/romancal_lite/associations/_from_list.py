"""Making an association from a list of files (romancal's ``asn_from_list``)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from romancal_lite.errors import ConfigError

__all__ = ["asn_from_list", "catalog_name", "write_asn"]

#: Top-level keys and fixed values of romancal 1.1's ``asn_from_list`` output (rule
#: ``DMS_ELPP_Base``), in its order (downstream.md 2.6, checked by running it).
_HEADER: tuple[tuple[str, Any], ...] = (
    ("asn_type", "None"),
    ("asn_rule", "DMS_ELPP_Base"),
    ("code_version", "1.1.0"),
    ("degraded_status", "No known degraded exposures in association."),
    ("program", "noprogram"),
    ("data_release_id", "p"),
    ("version_id", None),
    ("target", None),
    ("constraints", "No constraints"),
    ("asn_id", "a3001"),
    ("asn_pool", "none"),
    ("skycell_wcs_info", "none"),
)


def catalog_name(expname: str) -> str:
    """Return the catalog of a calibrated image: ``x_cal.asdf`` -> ``x_cat.parquet``.

    Parameters
    ----------
    expname : str
        The image file (a path or a name).

    Returns
    -------
    str
        The catalog path, in the image's directory (romancal: ``replace_suffix(stem,
        "cat") + ".parquet"``).
    """
    from romancal_lite.datamodels.filenames import split_suffix

    root, _ = split_suffix(Path(expname).name)
    return str(Path(expname).with_name(f"{root}_cat.parquet"))


def asn_from_list(
    items: Sequence[str | os.PathLike[str]],
    product_name: str,
    *,
    target: str | None = None,
    data_release_id: str = "p",
    tweakreg_catalogs: bool | None = None,
    relative_to: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Return an association of the given files (the tree of romancal's ``asn_from_list``).

    Parameters
    ----------
    items : sequence of str or path-like
        The member files (science exposures), in order.
    product_name : str
        Name of the product (basename of the combined outputs, e.g. ``<name>_coadd``).
    target : str, optional
        ``target`` (a skycell name, or None).
    data_release_id : str, optional
        ``data_release_id`` (``"p"``).
    tweakreg_catalogs : bool, optional
        Give each member its ``tweakreg_catalog`` (``x_cal.asdf`` ->
        ``x_cat.parquet``): True always (romancal's ``_tweakreg_catalogs``), False
        never, None (default) when that catalog file exists.
    relative_to : str or path-like, optional
        Directory the association will be written in: member paths are written
        relative to it (an association's members are read relative to its directory).
        Default: as given.

    Returns
    -------
    dict
        The association tree (JSON-serialisable).

    Raises
    ------
    ConfigError
        If the product name is empty or no file is given.
    InputFileError
        If a member file does not exist or is not a regular file.
    """
    from romancal_lite.datamodels import check_regular_file

    if not isinstance(product_name, str) or not product_name.strip():
        raise ConfigError("an association needs a non-empty product name (--product-name)")
    if not items:
        raise ConfigError("an association needs at least one file")
    members = []
    for item in items:
        path = os.fspath(item)
        check_regular_file(path)
        expname = path
        if relative_to is not None:
            expname = os.path.relpath(os.path.abspath(path), os.path.abspath(relative_to))
        member: dict[str, Any] = {"expname": expname, "exptype": "science"}
        catalog = catalog_name(expname)
        on_disk = catalog_name(path)
        if tweakreg_catalogs or (tweakreg_catalogs is None and os.path.isfile(on_disk)):
            member["tweakreg_catalog"] = catalog
        members.append(member)
    tree = dict(_HEADER)
    tree["target"] = target
    tree["data_release_id"] = data_release_id
    tree["products"] = [{"name": product_name.strip(), "members": members}]
    return tree


def write_asn(tree: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write an association tree as romancal does (JSON, 4-space indent), atomically.

    Parameters
    ----------
    tree : dict
        From `asn_from_list`.
    path : str or path-like
        The ``*_asn.json`` file.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    OutputError
        If it cannot be written.
    """
    from romancal_lite.datamodels._files import atomic_write

    text = json.dumps(tree, indent=4).encode("utf-8")
    return atomic_write(Path(path), lambda fh: fh.write(text))
