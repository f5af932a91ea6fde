"""The ASDF extension handling every Roman tag (RAD 1.x/2.x) without roman_datamodels.

One generic converter reads any known Roman tag into a :class:`~._node.TaggedNode`
(mappings), :class:`~._node.TaggedListNode` (sequences), :class:`~._node.TaggedStr`
or :class:`~._node.TaggedTime` (tagged scalars of RAD 1.x) and writes them back
with the tag they were read with.  Tags newer than the table in ``_tags`` are
not claimed: asdf itself returns them as ``asdf.tagged`` objects, which also
keep their tag on writing.

The extension is *not* installed globally: it is passed as ``extensions=`` to
each ``asdf.open``/``AsdfFile`` of this package, so it takes precedence there
while roman_datamodels (if installed) keeps its own converters everywhere else.
"""

from __future__ import annotations

import functools
from typing import Any

from asdf.extension import Converter, Extension, ExtensionProxy
from astropy.time import Time

from ._node import (
    NODE_CLASSES,
    TaggedListNode,
    TaggedNode,
    TaggedStr,
    TaggedTime,
    node_class_for_tag,
)
from ._tags import all_tag_uris

__all__ = [
    "EXTENSION_URI",
    "RomanConverter",
    "RomanLiteExtension",
    "get_extension",
    "get_extensions",
]

EXTENSION_URI = "asdf://romancal-lite.org/extensions/datamodels-1.0.0"


class RomanConverter(Converter):
    """Generic converter for all Roman tags: keeps the payload and the tag."""

    @property
    def tags(self) -> list[str]:
        """Every known Roman tag URI."""
        return all_tag_uris()

    @property
    def types(self) -> list[type]:
        """The node types this converter writes."""
        return [TaggedNode, TaggedListNode, TaggedStr, TaggedTime, *NODE_CLASSES.values()]

    def select_tag(self, obj: Any, tags: list[str], ctx: Any) -> str:
        """Return the tag the object was read or created with."""
        return obj.tag

    def to_yaml_tree(self, obj: Any, tag: str, ctx: Any) -> Any:
        """Return the untagged payload of a tagged node."""
        if isinstance(obj, TaggedNode):
            return obj._data
        if isinstance(obj, TaggedListNode):
            return list(obj._data)
        if isinstance(obj, TaggedTime):
            time_converter = ctx.extension_manager.get_converter_for_type(Time)
            return time_converter.to_yaml_tree(Time(obj), tag, ctx)
        return str(obj)

    def from_yaml_tree(self, node: Any, tag: str, ctx: Any) -> Any:
        """Wrap a tagged YAML payload into the node type that keeps its tag."""
        if isinstance(node, dict):
            return node_class_for_tag(tag)(node, tag)
        if isinstance(node, list):
            return TaggedListNode(node, tag)
        if tag.rsplit("/", 1)[-1].startswith("file_date-"):
            time_converter = ctx.extension_manager.get_converter_for_type(Time)
            value = TaggedTime(time_converter.from_yaml_tree(node, tag, ctx))
            value._roman_tag = tag
            return value
        if isinstance(node, str):
            return TaggedStr(node, tag)
        return node


class RomanLiteExtension(Extension):
    """ASDF extension of romancal_lite: the generic Roman converter."""

    extension_uri = EXTENSION_URI
    legacy_class_names: list[str] = []

    @property
    def tags(self) -> list[str]:
        """Every known Roman tag URI."""
        return all_tag_uris()

    @property
    def converters(self) -> list[Converter]:
        """List of Converter: The generic Roman converter."""
        return [RomanConverter()]


@functools.cache
@functools.cache
def get_extension() -> ExtensionProxy:
    """Return the (shared) romancal_lite ASDF extension, wrapped once for asdf.

    asdf wraps every extension it is given in an ``ExtensionProxy`` that indexes the
    ~400 tags against the converters; handing it the same proxy each time skips that
    work (0.05 -> 0.017 s per file open).

    Returns
    -------
    asdf.extension.ExtensionProxy
        The `RomanLiteExtension`; pass it as ``extensions=`` to ``asdf.open`` /
        ``asdf.AsdfFile``.
    """
    return ExtensionProxy(RomanLiteExtension())


def get_extensions() -> list[Extension | ExtensionProxy]:
    """Return the extensions for an ``asdf.extensions`` entry point.

    Returns
    -------
    list of Extension
        ``[get_extension()]``.
    """
    return [get_extension()]
