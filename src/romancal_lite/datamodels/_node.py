"""Attribute-dict views of the ASDF tree and the tagged Roman node types.

The tree under ``roman`` is kept as plain ``dict``/``list`` objects (plus tagged
nodes, ``Time`` objects and arrays) so that it serialises without any help;
:class:`Node` and :class:`ListNode` are thin *views* adding attribute access,
created on the fly, so assignments through them write into the underlying tree.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, MutableMapping, MutableSequence
from typing import Any

import numpy as np
from astropy.time import Time

from ._tags import TAG_VERSIONS, split_tag, tag_uri

__all__ = [
    "ListNode",
    "Node",
    "TaggedListNode",
    "TaggedNode",
    "TaggedStr",
    "TaggedTime",
    "node_class_for_tag",
    "unwrap",
    "wrap",
]


def wrap(value: Any) -> Any:
    """Return an attribute-access view of ``value`` if it is a dict or a list.

    Parameters
    ----------
    value : object
        A value of the tree.

    Returns
    -------
    object
        A :class:`Node` for a plain ``dict``, a :class:`ListNode` for a plain ``list``
        (views onto the same object), otherwise ``value`` itself.
    """
    if isinstance(value, Node | ListNode):
        return value
    if isinstance(value, dict):
        return Node(value)
    if isinstance(value, list):
        return ListNode(value)
    return value


def unwrap(value: Any) -> Any:
    """Return the tree object behind a view (inverse of :func:`wrap`).

    Parameters
    ----------
    value : object
        A view or any other value.

    Returns
    -------
    object
        The underlying ``dict``/``list`` of a plain view; tagged nodes unchanged.
    """
    if type(value) is Node:
        return value._data
    if type(value) is ListNode:
        return value._data
    return value


class Node(MutableMapping):
    """Dict view with attribute access (``node.exposure.read_pattern``).

    Parameters
    ----------
    data : dict, optional
        The mapping to view (not copied); a new empty dict when omitted.
    """

    __slots__ = ("_data",)

    def __init__(self, data: dict | None = None) -> None:
        if data is None:
            data = {}
        elif isinstance(data, Node):
            data = data._data
        elif not isinstance(data, dict):
            raise TypeError(f"Node needs a dict, not {type(data).__name__}")
        object.__setattr__(self, "_data", data)

    # attribute access
    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return wrap(self._data[key])
        except KeyError:
            raise AttributeError(f"no attribute {key!r} in {type(self).__name__}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        if key.startswith("_"):
            object.__setattr__(self, key, value)
        else:
            self._data[key] = unwrap(value)

    def __delattr__(self, key: str) -> None:
        try:
            del self._data[key]
        except KeyError:
            raise AttributeError(key) from None

    # mapping protocol
    def __getitem__(self, key: str) -> Any:
        if isinstance(key, str) and "." in key and key not in self._data:
            value: Any = self
            for part in key.split("."):
                value = value[part]
            return value
        return wrap(self._data[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = unwrap(value)

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {k for k in self._data if isinstance(k, str)})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Node):
            other = other._data
        return self._data == other

    __hash__ = None  # type: ignore[assignment]

    def __asdf_traverse__(self) -> dict:
        return self._data

    def __deepcopy__(self, memo: dict) -> Node:
        return type(self)(copy.deepcopy(self._data, memo))

    def to_dict(self) -> dict:
        """Return the underlying tree dict (not a copy).

        Returns
        -------
        dict
            The viewed mapping.
        """
        return self._data

    def flat_items(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """Iterate over the leaves as ``("a.b.0.c", value)`` pairs, skipping ``None``.

        Parameters
        ----------
        prefix : str, optional
            Prefix of the generated keys.

        Yields
        ------
        tuple of (str, object)
            Dot-separated key and leaf value.
        """
        yield from _flat_items(self._data, prefix)

    def to_flat_dict(self, include_arrays: bool = True) -> dict[str, Any]:
        """Return the leaves as a flat dict, ``Time`` values as ISO strings.

        Parameters
        ----------
        include_arrays : bool, optional
            Keep array leaves.

        Returns
        -------
        dict
            ``{"a.b.c": value}``.
        """
        out = {}
        for key, value in self.flat_items():
            if not include_arrays and _is_array(value):
                continue
            out[key] = str(value) if isinstance(value, Time) else value
        return out


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) or type(value).__name__ == "NDArrayType"


def _flat_items(tree: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(tree, Node | ListNode):
        tree = tree._data
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _flat_items(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(tree, list | tuple):
        for i, value in enumerate(tree):
            yield from _flat_items(value, f"{prefix}.{i}" if prefix else str(i))
    elif tree is not None:
        yield prefix, tree


class ListNode(MutableSequence):
    """List view whose dict/list items are returned as views.

    Parameters
    ----------
    data : list, optional
        The list to view (not copied).
    """

    __slots__ = ("_data",)

    def __init__(self, data: list | None = None) -> None:
        if data is None:
            data = []
        elif isinstance(data, ListNode):
            data = data._data
        self._data = data

    def __getitem__(self, index):  # noqa: D105
        if isinstance(index, slice):
            return [wrap(v) for v in self._data[index]]
        return wrap(self._data[index])

    def __setitem__(self, index, value) -> None:  # noqa: D105
        self._data[index] = unwrap(value)

    def __delitem__(self, index) -> None:  # noqa: D105
        del self._data[index]

    def __len__(self) -> int:
        return len(self._data)

    def insert(self, index: int, value: Any) -> None:
        """Insert ``value`` before ``index``.

        Parameters
        ----------
        index : int
            Position.
        value : object
            Item to insert.
        """
        self._data.insert(index, unwrap(value))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ListNode):
            other = other._data
        return list(self._data) == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    def __asdf_traverse__(self) -> list:
        return self._data

    def __deepcopy__(self, memo: dict) -> ListNode:
        return type(self)(copy.deepcopy(self._data, memo))

    def to_list(self) -> list:
        """Return the underlying list (not a copy).

        Returns
        -------
        list
            The viewed list.
        """
        return self._data


class TaggedNode(Node):
    """A Roman tagged object (``!<asdf://stsci.edu/datamodels/roman/tags/NAME-V>``).

    Used for the model roots (``roman:``) and for any tagged mapping inside
    them (older files tag every ``meta`` sub-node).  The tag read from a file is
    kept and written back unchanged.

    Parameters
    ----------
    data : dict, optional
        The node content (not copied).
    tag : str
        The full tag URI.
    """

    __slots__ = ("_roman_tag",)

    #: tag name (without prefix and version) of the subclass, ``None`` for generic
    _tag_name: str | None = None

    def __init__(self, data: dict | None = None, tag: str | None = None) -> None:
        super().__init__(data)
        if tag is None:
            if self._tag_name is None:
                raise TypeError("TaggedNode needs a tag")
            tag = tag_uri(self._tag_name)
        object.__setattr__(self, "_roman_tag", tag)

    @property
    def tag(self) -> str:
        """str: The full tag URI written for this node."""
        return self._roman_tag

    def __deepcopy__(self, memo: dict) -> TaggedNode:
        return type(self)(copy.deepcopy(self._data, memo), self._roman_tag)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tag={self._roman_tag!r}, {self._data!r})"


class TaggedListNode(ListNode):
    """A Roman tagged sequence, kept with its tag.

    Parameters
    ----------
    data : list
        The items (not copied).
    tag : str
        The full tag URI.
    """

    __slots__ = ("_roman_tag",)

    def __init__(self, data: list | None = None, tag: str = "") -> None:
        super().__init__(data)
        self._roman_tag = tag

    @property
    def tag(self) -> str:
        """str: The full tag URI written for this node."""
        return self._roman_tag

    def __deepcopy__(self, memo: dict) -> TaggedListNode:
        return type(self)(copy.deepcopy(self._data, memo), self._roman_tag)


class TaggedStr(str):
    """A Roman tagged string scalar (e.g. ``filename-1.0.0`` in RAD 1.x files).

    Parameters
    ----------
    value : str
        The string.
    tag : str
        The full tag URI.
    """

    _roman_tag: str

    def __new__(cls, value: str, tag: str = "") -> TaggedStr:  # noqa: D102
        obj = super().__new__(cls, value)
        obj._roman_tag = tag
        return obj

    @property
    def tag(self) -> str:
        """str: The full tag URI written for this scalar."""
        return self._roman_tag

    def __reduce__(self):  # noqa: D105
        return (type(self), (str(self), self._roman_tag))

    def __deepcopy__(self, memo: dict) -> TaggedStr:
        return self


class TaggedTime(Time):
    """A Roman tagged ``Time`` scalar (``file_date-1.0.0`` in RAD 1.x files)."""

    _roman_tag: str = ""

    @property
    def tag(self) -> str:
        """str: The full tag URI written for this scalar."""
        return self._roman_tag


def _camel(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    camel = "".join(part.capitalize() for part in base.split("_"))
    if name.startswith("reference_files/"):
        return camel + "Ref"
    if "/" in name:
        return name.split("/", 1)[0].capitalize() + camel
    return camel


#: one TaggedNode subclass per Roman tag name (so ``info()`` shows e.g. ``WfiScienceRaw``)
NODE_CLASSES: dict[str, type[TaggedNode]] = {
    name: type(_camel(name), (TaggedNode,), {"__slots__": (), "_tag_name": name})
    for name in TAG_VERSIONS
}


def node_class_for_tag(tag: str) -> type[TaggedNode]:
    """Return the :class:`TaggedNode` subclass used for a tag URI.

    Parameters
    ----------
    tag : str
        The full tag URI.

    Returns
    -------
    type
        The subclass for a known Roman tag name, else :class:`TaggedNode`.
    """
    parts = split_tag(tag)
    if parts is not None and parts[0] in NODE_CLASSES:
        return NODE_CLASSES[parts[0]]
    return TaggedNode
