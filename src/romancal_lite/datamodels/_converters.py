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
Those files are opened and written inside `asdf_context`, which leaves out the
installed extensions of the packages in `NOT_LOADED`: their converters are for the
Roman tags this extension handles, and loading them (asdf imports every installed
extension package the first time it opens a file) costs ~0.7 s for roman_datamodels.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from typing import Any

import asdf
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
    "NOT_LOADED",
    "RomanConverter",
    "RomanLiteExtension",
    "asdf_context",
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


#: Distributions whose ``asdf.extensions`` entry points `asdf_context` leaves out:
#: roman_datamodels converts the Roman tags, as `RomanLiteExtension` does.  Without
#: them a file reads and writes the same whether or not they are installed.
NOT_LOADED: frozenset[str] = frozenset({"roman_datamodels"})

_ENTRY_POINT_GROUP = "asdf.extensions"


_RESOURCE_GROUP = "asdf.resource_mappings"

#: Distributions whose ``asdf.resource_mappings`` entry points `asdf_context` leaves
#: out: stpipe's are the schemas of its step-parameter files (which this package reads
#: without asdf: `romancal_lite.stpipe.config`), not of any data file, and loading
#: them imports all of stpipe and crds (~0.1 s of CPU at a process's first open).
NOT_LOADED_RESOURCES: frozenset[str] = frozenset({"stpipe"})


def _entry_points(group: str = _ENTRY_POINT_GROUP) -> list[Any]:
    try:  # asdf reads them with the backport on Python < 3.12 (no duplicates)
        from importlib_metadata import entry_points
    except ImportError:  # pragma: no cover - not installed
        from importlib.metadata import entry_points
    seen, points = set(), []
    for point in entry_points(group=group):
        key = (point.dist.name if point.dist else "", point.value)
        if key not in seen:
            seen.add(key)
            points.append(point)
    return points


def _in_asdf_order(group: str, left_out: frozenset[str]) -> list[Any]:
    """Return the entry points of ``group`` but ``left_out``'s, in asdf's order.

    asdf's own order: other packages sorted by name, then asdf's (which the others
    may override).
    """
    points = [p for p in _entry_points(group) if p.dist is None or p.dist.name not in left_out]
    own = [p for p in points if p.dist is not None and p.dist.name == "asdf"]
    others = sorted((p for p in points if p not in own),
                    key=lambda p: p.dist.name if p.dist else "")
    return others + own


@functools.cache
def _installed_extensions() -> tuple[ExtensionProxy, ...]:
    """Return the installed asdf extensions minus `NOT_LOADED`, in asdf's order.

    A plugin that fails to load is skipped with a warning, as asdf does.
    """
    result: list[ExtensionProxy] = []
    with _libyaml_manifests():
        for point in _in_asdf_order(_ENTRY_POINT_GROUP, NOT_LOADED):
            _load_point(point, result)
    return tuple(result)


@functools.cache
def _resource_manager() -> tuple[list[Any], Any]:
    """Return the installed resource mappings minus `NOT_LOADED_RESOURCES`, and their manager.

    Built once per process and shared by every `asdf_context` (asdf's global
    configuration shares its own manager between its copies the same way).
    """
    from asdf.resource import ResourceManager, ResourceMappingProxy

    mappings: list[Any] = []
    for point in _in_asdf_order(_RESOURCE_GROUP, NOT_LOADED_RESOURCES):
        _load_point(point, mappings, ResourceMappingProxy, _RESOURCE_GROUP)
    return mappings, ResourceManager(mappings)


@contextlib.contextmanager
def _libyaml_manifests() -> Iterator[None]:
    """Parse extension manifests with libyaml's safe loader while extensions load.

    asdf reads each manifest with ``yaml.safe_load`` (pure Python: ~0.25 s for the
    ~50 manifests of gwcs and asdf-astropy); libyaml's ``CSafeLoader`` is the same safe
    loader compiled (same resolver and constructor).  asdf's module is restored after.
    """
    import yaml

    try:
        from asdf.extension import _manifest
    except ImportError:  # pragma: no cover - asdf internals moved: keep asdf's loader
        yield
        return
    if not getattr(yaml, "__with_libyaml__", False) or getattr(_manifest, "yaml", None) is not yaml:
        yield
        return

    class _CYaml:
        def __getattr__(self, name: str) -> Any:
            return getattr(yaml, name)

        @staticmethod
        def safe_load(stream: Any) -> Any:
            return yaml.load(stream, Loader=yaml.CSafeLoader)  # noqa: S506 - the safe loader

    _manifest.yaml = _CYaml()
    try:
        yield
    finally:
        _manifest.yaml = yaml


def _load_point(point: Any, result: list[Any], proxy: type = ExtensionProxy,
                group: str = _ENTRY_POINT_GROUP) -> None:
    """Append the elements of one entry point (asdf's warning if it fails to load)."""
    name = point.dist.name if point.dist else "?"
    version = point.dist.version if point.dist else "?"
    try:
        with warnings.catch_warnings():
            elements = point.load()()
        if not isinstance(elements, list):
            elements = [elements]
        result.extend(proxy(element, package_name=name, package_version=version)
                      for element in elements)
    except Exception as exc:
        warnings.warn(f"{group} plugin from package {name}=={version} failed "
                      f"to load: {type(exc).__name__}: {exc}", asdf.exceptions.AsdfWarning,
                      stacklevel=3)


@functools.cache
def _keep_schema_documents_once() -> bool:
    """Keep asdf's parsed schema documents in this process (`keep_schema_documents`).

    Every file opened or written is validated, and asdf parses again every schema a
    ``$ref`` of the validation points to: ~430 YAML documents per full-frame pipeline
    call (input, references, products), most of them the same ones.
    """
    from ._core import keep_schema_documents

    return keep_schema_documents()


@contextlib.contextmanager
def asdf_context() -> Iterator[asdf.config.AsdfConfig]:
    """Open or write Roman files in this context: asdf without `NOT_LOADED`'s extensions.

    A copy of the current asdf configuration (``asdf.config_context``, this thread
    only) whose installed extensions leave out `NOT_LOADED`; asdf's global
    configuration, which other code in the process (roman_datamodels itself) uses, is
    untouched.

    Yields
    ------
    asdf.config.AsdfConfig
        The configuration in force inside the context.
    """
    _keep_schema_documents_once()
    # the schemas' resource manager is built once (on each copy, it would cost ~18 ms
    # per file): without `NOT_LOADED_RESOURCES`' mappings unless asdf's global
    # configuration has loaded its own already (then that one, as asdf would use)
    base = asdf.get_config()
    ours = getattr(base, "_resource_mappings", False) is None
    if not ours:
        base.resource_manager  # noqa: B018
    with asdf.config_context() as config:
        if ours:
            config._resource_mappings, config._resource_manager = _resource_manager()
        # asdf has no public setter for the list (None until it discovers them)
        if hasattr(config, "_extensions"):
            loaded = config._extensions
            config._extensions = (
                list(_installed_extensions()) if loaded is None
                else [e for e in loaded if e.package_name not in NOT_LOADED]
            )
        yield config
