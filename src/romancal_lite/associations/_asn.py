"""Reading romancal association files (``*_asn.json``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from romancal_lite.errors import InputFileError

__all__ = ["Association", "Member", "is_association", "load_asn"]

#: Largest association file read (a JSON list of thousands of members is ~1 MB).
_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Member:
    """One exposure of an association.

    Attributes
    ----------
    path : pathlib.Path
        The file (``expname`` resolved against the association's directory).
    exptype : str
        ``"science"``, ``"background"``... (lower case).
    group_id : str or None
        The exposure it belongs to, if the association says.
    tweakreg_catalog : str or None
        Its source catalog for tweakreg, if the association names one.
    """

    path: Path
    exptype: str = "science"
    group_id: str | None = None
    tweakreg_catalog: str | None = None


@dataclass(frozen=True)
class Association:
    """A loaded association (its first product).

    Attributes
    ----------
    path : pathlib.Path
        The association file.
    name : str
        The product name (basename of combined outputs).
    members : tuple of Member
        Every member of the product.
    asn_id : str
        ``asn_id`` (empty if absent).
    extra : dict
        The other top-level keys, as read.
    """

    path: Path
    name: str
    members: tuple[Member, ...]
    asn_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def science(self) -> list[Member]:
        """Return the members of type ``science``, in file order.

        Returns
        -------
        list of Member
            The science exposures.
        """
        return [m for m in self.members if m.exptype == "science"]


def is_association(path: Any) -> bool:
    """Return whether ``path`` names an association file (by its name: ``*.json``).

    Parameters
    ----------
    path : object
        Anything; only a str or path-like ending in ``.json`` is an association.

    Returns
    -------
    bool
        True for a ``.json`` file name.
    """
    return isinstance(path, str | os.PathLike) and os.fspath(path).lower().endswith(".json")


def _text(value: Any, what: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputFileError(f"{where}: {what} must be a non-empty string, not {value!r}")
    return value.strip()


def load_asn(path: str | os.PathLike[str]) -> Association:
    """Read an association file.

    Parameters
    ----------
    path : str or path-like
        The ``_asn.json`` file.

    Returns
    -------
    Association
        Its first product, members resolved against the file's directory.

    Raises
    ------
    InputFileError
        If the file is missing, not a regular file, not JSON, or not an association
        (no products, a product without members, a member without ``expname``), or a
        member file does not exist; one line naming the file.
    """
    from romancal_lite.datamodels import check_regular_file

    where = os.fspath(path)
    check_regular_file(where)
    size = os.path.getsize(where)
    if size > _MAX_BYTES:
        raise InputFileError(f"{where}: {size} bytes is too large for an association file")
    try:
        with open(where, "rb") as fh:
            tree = json.loads(fh.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{where}: not a JSON association file ({exc})") from None
    except OSError as exc:
        raise InputFileError(f"{where}: cannot read: {exc.strerror or exc}") from None
    if not isinstance(tree, dict):
        raise InputFileError(f"{where}: not an association (a JSON object is expected)")
    products = tree.get("products")
    if not isinstance(products, list) or not products or not isinstance(products[0], dict):
        raise InputFileError(f"{where}: not an association (no 'products' list)")
    product = products[0]
    raw_members = product.get("members")
    if not isinstance(raw_members, list) or not raw_members:
        raise InputFileError(f"{where}: the product has no members")
    base = Path(where).parent
    members = []
    for index, raw in enumerate(raw_members):
        here = f"{where}: member {index}"
        if not isinstance(raw, dict):
            raise InputFileError(f"{here}: a JSON object is expected")
        expname = _text(raw.get("expname"), "expname", here)
        member_path = Path(expname) if os.path.isabs(expname) else base / expname
        exptype = str(raw.get("exptype", "science")).strip().lower() or "science"
        group_id = raw.get("group_id")
        catalog = raw.get("tweakreg_catalog")
        if catalog is not None:
            catalog = _text(catalog, "tweakreg_catalog", here)
            if not os.path.isabs(catalog):
                catalog = os.fspath(base / catalog)
        members.append(
            Member(
                path=member_path,
                exptype=exptype,
                group_id=None if group_id is None else str(group_id),
                tweakreg_catalog=catalog,
            )
        )
    for member in members:
        if not member.path.exists():
            raise InputFileError(f"{where}: member file not found: {member.path}")
    name = product.get("name")
    if not isinstance(name, str) or not name.strip():
        name = Path(where).name.removesuffix(".json").removesuffix("_asn")
    extra = {k: v for k, v in tree.items() if k != "products"}
    return Association(
        path=Path(where),
        name=name.strip(),
        members=tuple(members),
        asn_id=str(tree.get("asn_id", "") or ""),
        extra=extra,
    )
