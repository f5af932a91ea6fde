"""The built-in CRDS cache: mappings generated up front, reference files on demand.

Layout (a standard CRDS cache, see ``docs/crds-offline.md``)::

    <root>/config/roman/server_config
    <root>/config/roman/ref_cache_subdir_mode        "instrument"
    <root>/mappings/roman/roman_lite_0001.pmap
    <root>/mappings/roman/roman_lite_wfi_0001.imap
    <root>/mappings/roman/roman_lite_wfi_<reftype>_0001.rmap
    <root>/references/roman/wfi/roman_lite_wfi_<reftype>_<det>[_<elem>]_<serial>.asdf
    <root>/romancal_lite_cache.json                  generator settings + file list

Mapping names carry the ``roman_lite`` prefix, so they can never clash with a
real Roman CRDS context (``roman_NNNN.pmap``).

Generation is lazy: :func:`generate_cache` writes only the small text mappings
(every rmap lists all 18 detectors and, where selected by it, every optical
element) and a manifest describing each reference file; a reference file is
written the first time it is selected (:meth:`BuiltinCache.ensure_reference`).
A pipeline run on one detector therefore creates only the dozen files it uses.
The generator also takes a detector ``full_shape`` so tests can build a cache
of tiny references.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ReferenceFileError
from ._content import DetectorConstants, build_reference, write_reference
from ._mappings import (
    format_imap,
    format_pmap,
    format_rmap,
    format_server_config,
    write_text_atomic,
)
from ._spec import DETECTORS, FULL_SHAPE, OPTICAL_ELEMENTS, REFTYPES, get_spec

__all__ = [
    "CACHE_ENV_VAR",
    "CONTEXT",
    "DEFAULT_USEAFTERS",
    "BuiltinCache",
    "default_cache_dir",
    "generate_cache",
    "matched_cache",
    "open_builtin_cache",
]

#: Environment variable overriding the location of the built-in cache.
CACHE_ENV_VAR = "ROMANCAL_LITE_CRDS_CACHE"

#: Version of the generator; a cache written by another version is regenerated.
#: 2: EPSF and APCORR added (a version-1 cache would answer "N/A" for them).
#: 3: INTEGRALNONLINEARITY added.
#: 4: DARKDECAYSIGNAL added (and INTEGRALNONLINEARITY again, for a cache written
#:    by a development version 3 that had only DARKDECAYSIGNAL).
GENERATOR_VERSION = 4
#: Reference types each generator version added to the default set, so that an
#: older cache is regenerated with its own settings plus these types.
_ADDED_TYPES: dict[int, tuple[str, ...]] = {
    2: ("epsf", "apcorr"),
    3: ("integralnonlinearity",),
    4: ("integralnonlinearity", "darkdecaysignal"),
}

#: The pipeline mapping (context) of the built-in cache.
CONTEXT = "roman_lite_0001.pmap"
_IMAP = "roman_lite_wfi_0001.imap"
_STAMP = "romancal_lite_cache.json"

#: Default use-after dates: one set of references valid for the whole mission.
DEFAULT_USEAFTERS: tuple[str, ...] = ("2020-01-01T00:00:00",)

#: Types a cache matched to another simulator's constants does not provide ("N/A"):
#: the built-in EPSF and APCORR describe romancal_lite.simulate's Gaussian PSF, not
#: that simulator's PSF; its DARKDECAYSIGNAL the decay romancal_lite.simulate injects.
NOT_MATCHED: tuple[str, ...] = ("epsf", "apcorr", "darkdecaysignal")

#: Reference types known to CRDS for WFI that the built-in cache answers "N/A".
_FALLBACK_NA_TYPES = (
    "abvegaoffset",
    "apcorr",
    "area",
    "darkdecaysignal",
    "detectorstatus",
    "epsf",
    "integralnonlinearity",
    "ipc",
    "matable",
    "pars-assignwcsstep",
    "pars-darkcurrentstep",
    "pars-dqinitstep",
    "pars-exposurepipeline",
    "pars-flatfieldstep",
    "pars-jumpstep",
    "pars-linearitystep",
    "pars-photomstep",
    "pars-rampfitstep",
    "pars-refpixstep",
    "pars-saturationstep",
    "superbias",
)


@contextlib.contextmanager
def _usable(root: Path) -> Iterator[None]:
    """Turn a failure to create or write the cache into one clear error."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = exc.filename or root
        raise ReferenceFileError(
            f"built-in reference cache {root} is not usable ({reason}: {where}); set "
            f"{CACHE_ENV_VAR} to a writable folder"
        ) from None


def default_cache_dir() -> Path:
    """Return the directory of the built-in CRDS cache.

    ``$ROMANCAL_LITE_CRDS_CACHE`` if set, else ``romancal_lite/crds`` in the
    platform's user cache directory (``$XDG_CACHE_HOME`` or ``~/.cache`` on
    Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows).

    Returns
    -------
    Path
        The cache root (not necessarily existing yet).
    """
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "darwin":
        base = home / "Library" / "Caches"
    elif sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache")
    return base / "romancal_lite" / "crds"


def _crds_na_types() -> list[str]:
    """Return the other WFI reftypes CRDS knows, from the crds client's rmap specs."""
    try:
        spec = importlib.util.find_spec("crds")  # locate without importing crds
        locations = list(spec.submodule_search_locations or []) if spec else []
    except (ImportError, ValueError):
        locations = []
    names = set(_FALLBACK_NA_TYPES)
    for location in locations:
        specs = Path(location) / "roman" / "specs"
        names.update(p.name[4:-5] for p in specs.glob("wfi_*.rmap"))
    return sorted(names - set(REFTYPES))


def _rmap_name(reftype: str) -> str:
    return f"roman_lite_wfi_{reftype}_0001.rmap"


def _ref_name(reftype: str, detector: str, element: str | None, serial: int) -> str:
    parts = ["roman_lite_wfi", reftype, detector.lower()]
    if element:
        parts.append(element.lower())
    return "_".join(parts) + f"_{serial:04d}.asdf"


def _crds_date(iso: str) -> str:
    """Convert ``YYYY-MM-DDThh:mm:ss[.fff]`` to the rmap form ``YYYY-MM-DD hh:mm:ss``."""
    return iso.replace("T", " ")[:19]


@dataclass
class BuiltinCache:
    """A generated CRDS cache of romancal-lite reference files.

    Attributes
    ----------
    root : Path
        The cache directory (``CRDS_PATH``).
    full_shape : tuple of int
        Full detector shape the references are generated for.
    useafters : tuple of str
        The use-after dates; each gets its own set of files (serial 1, 2, ...).
    detectors : tuple of str
        Detectors listed in the rmaps.
    reftypes : tuple of str
        Reference types with rmaps.
    files : dict
        Reference basename to its generation parameters.
    constants : DetectorConstants or None
        A simulator's detector constants the files are generated from (None: the
        built-in defaults).
    """

    root: Path
    full_shape: tuple[int, int]
    useafters: tuple[str, ...]
    detectors: tuple[str, ...]
    reftypes: tuple[str, ...]
    files: dict[str, dict] = field(default_factory=dict)
    constants: DetectorConstants | None = None

    context: str = CONTEXT

    @property
    def mapping_dir(self) -> Path:
        """Return the directory holding the mappings."""
        return self.root / "mappings" / "roman"

    @property
    def reference_dir(self) -> Path:
        """Return the directory holding the WFI reference files."""
        return self.root / "references" / "roman" / "wfi"

    def reference_path(self, basename: str) -> Path:
        """Return where reference ``basename`` lives (whether or not it exists yet).

        Parameters
        ----------
        basename : str
            Reference file name.

        Returns
        -------
        Path
            Its path in the cache.
        """
        return self.reference_dir / basename

    def owns(self, basename: str) -> bool:
        """Return whether ``basename`` is a reference this cache can generate.

        Parameters
        ----------
        basename : str
            Reference file name.

        Returns
        -------
        bool
            True for files listed in the manifest.
        """
        return basename in self.files

    def ensure_reference(self, basename: str) -> Path:
        """Write reference ``basename`` if it does not exist yet; return its path.

        Parameters
        ----------
        basename : str
            A file listed in the manifest.

        Returns
        -------
        Path
            The existing file.
        """
        path = self.reference_path(basename)
        if not path.exists():
            with _usable(self.root):
                self._write(basename, path)
        return path

    def _write(self, basename: str, path: Path) -> None:
        info = self.files[basename]
        node = build_reference(
            info["reftype"],
            info["detector"],
            self.full_shape,
            info["useafter"],
            info.get("optical_element"),
            constants=self.constants,
        )
        write_reference(path, node)

    def materialize(self, reftypes: Iterable[str] | None = None) -> list[Path]:
        """Write every (or every listed type's) reference file now.

        Parameters
        ----------
        reftypes : iterable of str, optional
            Restrict to these types.

        Returns
        -------
        list of Path
            The files.
        """
        wanted = None if reftypes is None else {r.lower() for r in reftypes}
        return [
            self.ensure_reference(name)
            for name, info in sorted(self.files.items())
            if wanted is None or info["reftype"] in wanted
        ]

    def _settings(self) -> dict:
        return {
            "generator_version": GENERATOR_VERSION,
            "context": self.context,
            "full_shape": list(self.full_shape),
            "useafters": list(self.useafters),
            "detectors": list(self.detectors),
            "reftypes": list(self.reftypes),
            "constants": None if self.constants is None else self.constants.to_dict(),
        }


def _plan(cache: BuiltinCache) -> dict[str, dict[tuple[str, ...], dict[str, str]]]:
    """Fill ``cache.files`` and return the rmap entries per reftype."""
    entries: dict[str, dict[tuple[str, ...], dict[str, str]]] = {}
    for reftype in cache.reftypes:
        spec = get_spec(reftype)
        rows: dict[tuple[str, ...], dict[str, str]] = {}
        elements: Sequence[str | None] = OPTICAL_ELEMENTS if spec.by_element else (None,)
        # a type without a detector key (DARKDECAYSIGNAL) has one file for all detectors
        by_detector = any(key.endswith("DETECTOR") for key in spec.match_keys)
        for detector in cache.detectors if by_detector else ("ALL",):
            for element in elements:
                match = []
                for key in spec.match_keys:
                    if key.endswith("DETECTOR"):
                        match.append(detector)
                    elif key.endswith("OPTICAL_ELEMENT"):
                        match.append(element)
                    else:
                        match.append("N/A")
                by_date = {}
                for serial, useafter in enumerate(cache.useafters, start=1):
                    name = _ref_name(reftype, detector, element, serial)
                    info = {"reftype": reftype, "detector": detector, "useafter": useafter}
                    if element:
                        info["optical_element"] = element
                    cache.files[name] = info
                    by_date[_crds_date(useafter)] = name
                rows[tuple(match)] = by_date
        entries[reftype] = rows
    return entries


def generate_cache(
    root: str | Path | None = None,
    *,
    full_shape: tuple[int, int] = FULL_SHAPE,
    useafters: Sequence[str] = DEFAULT_USEAFTERS,
    detectors: Sequence[str] = DETECTORS,
    reftypes: Sequence[str] | None = None,
    materialize: bool = False,
    constants: DetectorConstants | None = None,
) -> BuiltinCache:
    """Create (or reuse) a built-in CRDS cache in ``root``.

    The mappings and configuration are written only if the directory does not
    already hold a cache generated with the same settings; a cache with other
    settings is rewritten and its previously generated reference files removed.

    Parameters
    ----------
    root : str or Path, optional
        Cache directory; default :func:`default_cache_dir`.
    full_shape : tuple of int, optional
        ``(ny, nx)`` of the full detector read-out (default 4096 x 4096).  The
        flat field gets the science shape (``ny - 8, nx - 8``).
    useafters : sequence of str, optional
        ISO use-after dates; more than one gives each selection a date history.
    detectors : sequence of str, optional
        Detectors to list in the rmaps (default all 18).
    reftypes : sequence of str, optional
        Reference types to provide (default all known types).
    materialize : bool, optional
        Write every reference file now instead of on first use.
    constants : DetectorConstants, optional
        Generate the files from these detector constants (a simulator's record)
        instead of the built-in defaults.

    Returns
    -------
    BuiltinCache
        The cache.
    """
    root = Path(root) if root is not None else default_cache_dir()
    cache = BuiltinCache(
        root=root,
        full_shape=(int(full_shape[0]), int(full_shape[1])),
        useafters=tuple(useafters),
        detectors=tuple(d.upper() for d in detectors),
        reftypes=tuple(r.lower() for r in (reftypes or REFTYPES)),
        constants=constants,
    )
    for reftype in cache.reftypes:
        get_spec(reftype)
    entries = _plan(cache)
    stamp_path = root / _STAMP
    previous = _read_stamp(stamp_path)
    if previous is None or previous.get("settings") != cache._settings() or not _complete(cache):
        with _usable(root):
            if previous is not None:
                for name in previous.get("files", {}):
                    cache.reference_path(name).unlink(missing_ok=True)
            _write_cache(cache, entries)
            write_text_atomic(
                stamp_path,
                json.dumps({"settings": cache._settings(), "files": cache.files}, indent=1),
            )
    if materialize:
        cache.materialize()
    return cache


def _read_stamp(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _complete(cache: BuiltinCache) -> bool:
    needed = [
        cache.root / "config" / "roman" / "server_config",
        cache.mapping_dir / cache.context,
        cache.mapping_dir / _IMAP,
    ] + [cache.mapping_dir / _rmap_name(r) for r in cache.reftypes]
    return all(p.exists() for p in needed)


def _write_cache(cache: BuiltinCache, entries: dict) -> None:
    config = cache.root / "config" / "roman"
    write_text_atomic(config / "server_config", format_server_config(cache.context))
    write_text_atomic(config / "ref_cache_subdir_mode", "instrument\n")
    # types crds knows but this cache does not provide: "N/A" (nothing applies)
    unprovided = set(_crds_na_types()) | (set(REFTYPES) - set(cache.reftypes))
    rmaps: dict[str, str] = dict.fromkeys(sorted(unprovided), "N/A")
    for reftype in cache.reftypes:
        name = _rmap_name(reftype)
        rmaps[reftype] = name
        text = format_rmap(name, get_spec(reftype), entries[reftype])
        write_text_atomic(cache.mapping_dir / name, text)
    write_text_atomic(cache.mapping_dir / _IMAP, format_imap(_IMAP, rmaps))
    write_text_atomic(cache.mapping_dir / cache.context, format_pmap(cache.context, {"WFI": _IMAP}))
    cache.reference_dir.mkdir(parents=True, exist_ok=True)


def open_builtin_cache(root: str | Path | None = None) -> BuiltinCache:
    """Return the built-in cache in ``root``, generating it with defaults if needed.

    A cache already generated in ``root`` (with any settings, e.g. small test
    detectors) is used as it is.

    Parameters
    ----------
    root : str or Path, optional
        Cache directory; default :func:`default_cache_dir`.

    Returns
    -------
    BuiltinCache
        The cache.
    """
    root = Path(root) if root is not None else default_cache_dir()
    stamp = _read_stamp(root / _STAMP)
    upgraded = _upgrade_settings(stamp)
    if upgraded is not None:
        # written by an older generator: regenerate with the same shape, dates,
        # detectors and constants, plus the types added since
        return generate_cache(root, **upgraded)
    if stamp and stamp.get("settings", {}).get("generator_version") == GENERATOR_VERSION:
        s = stamp["settings"]
        cache = BuiltinCache(
            root=root,
            full_shape=tuple(s["full_shape"]),
            useafters=tuple(s["useafters"]),
            detectors=tuple(s["detectors"]),
            reftypes=tuple(s["reftypes"]),
            files=stamp.get("files", {}),
            constants=DetectorConstants.from_dict(s.get("constants")),
        )
        if _complete(cache):
            return cache
        return generate_cache(
            root,
            full_shape=cache.full_shape,
            useafters=cache.useafters,
            detectors=cache.detectors,
            reftypes=cache.reftypes,
            constants=cache.constants,
        )
    return generate_cache(root)


def _upgrade_settings(stamp: dict | None) -> dict | None:
    """Return `generate_cache` arguments reproducing an older generator's cache.

    None if ``stamp`` is missing, current, or unreadable.
    """
    try:
        s = stamp["settings"]  # type: ignore[index]
        version = int(s["generator_version"])
        if version >= GENERATOR_VERSION:
            return None
        reftypes = list(s["reftypes"])
        for newer in range(version + 1, GENERATOR_VERSION + 1):
            reftypes += [r for r in _ADDED_TYPES.get(newer, ()) if r not in reftypes]
        return {
            "full_shape": tuple(int(n) for n in s["full_shape"]),
            "useafters": tuple(s["useafters"]),
            "detectors": tuple(s["detectors"]),
            "reftypes": tuple(reftypes),
            "constants": DetectorConstants.from_dict(s.get("constants")),
        }
    except (KeyError, TypeError, ValueError):
        return None


def matched_cache(
    constants: DetectorConstants,
    full_shape: tuple[int, int],
    base: str | Path | None = None,
) -> BuiltinCache:
    """Return (generating it if needed) a cache of references made from ``constants``.

    Every type except `NOT_MATCHED` (EPSF, APCORR: "N/A", since the constants say
    nothing about that simulator's PSF).

    Each set of constants and read-out shape gets its own directory,
    ``<base>/matched/<key>``, so caches for different simulations never replace
    each other.

    Parameters
    ----------
    constants : DetectorConstants
        The simulator's recorded detector constants.
    full_shape : tuple of int
        ``(ny, nx)`` of the exposure's read-out.
    base : str or Path, optional
        Directory under which matched caches live; default :func:`default_cache_dir`.

    Returns
    -------
    BuiltinCache
        The cache.
    """
    import hashlib

    shape = (int(full_shape[0]), int(full_shape[1]))
    text = json.dumps({"constants": constants.to_dict(), "shape": shape}, sort_keys=True)
    key = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]
    root = Path(base) if base is not None else default_cache_dir()
    reftypes = tuple(r for r in REFTYPES if r not in NOT_MATCHED)
    return generate_cache(root / "matched" / key, full_shape=shape, constants=constants,
                          reftypes=reftypes)


def remove_cache(root: str | Path) -> None:
    """Delete a built-in cache directory (only if it holds a romancal-lite stamp).

    Parameters
    ----------
    root : str or Path
        Cache directory.
    """
    root = Path(root)
    if (root / _STAMP).exists():
        shutil.rmtree(root)
