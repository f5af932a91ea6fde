"""Where a run's reference files come from, decided once per run, and stated.

The rule (``docs/references.md``):

1. The user configured CRDS (``CRDS_PATH``, ``CRDS_SERVER_URL``, ...): their CRDS.
2. The exposure was written by ``romancal_lite.simulate`` (its file holds the
   ``romancal_lite_truth`` record): the built-in cache, whose references are the
   ones the simulator used.
3. The exposure was written by romanisim with constant detector properties (its
   ``romanisim.simulate_reffiles`` record holds numbers, not files): a cache of
   references generated from exactly those constants (pedigree ``SIMULATION``).
4. An image already calibrated with generated references (its ``meta.ref_file`` paths
   all lie in one generated cache that still exists, e.g. ``roman_elp``'s ``_cal`` of
   simulated exposures): that cache (`calibration_source`), so ``roman_mos`` on them
   needs no option; invented ones stay marked as such.
5. Anything else: refused with one message saying how to point at CRDS or give
   override files, unless the caller opted in to the built-in, invented references
   (``--builtin-references``, :func:`allow_builtin_references`, or a cache chosen
   with :func:`~romancal_lite.references.builtin_cache`), which is logged as a
   warning and recorded in the output.

Explicit ``override_<reftype>`` files always win and need no source at all.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

from ..errors import ReferenceFileError
from ._cache import BuiltinCache, matched_cache
from ._content import DetectorConstants
from ._crds import user_configured

__all__ = [
    "OVERRIDES_ONLY",
    "InputOrigin",
    "ReferenceSource",
    "allow_builtin_references",
    "builtin_references_allowed",
    "calibration_source",
    "input_origin",
    "reference_source",
    "romanisim_constants",
    "simulator_source",
]

#: Top-level key under which ``romancal_lite.simulate`` writes its truth.
SIMULATOR_KEY = "romancal_lite_truth"
#: Top-level key under which romanisim writes its own record.
ROMANISIM_KEY = "romanisim"

_ALLOW: list[bool] = [False]

#: The reference kinds of romanisim's record that must be constants (or absent).
_ROMANISIM_NUMBERS = ("gain", "readnoise", "dark", "saturation")
#: The kinds romanisim applies only when given a file; None means "not applied".
_ROMANISIM_ABSENT = ("linearity", "inverselinearity", "integralnonlinearity", "flat",
                     "darkdecaysignal")


@dataclass(frozen=True)
class InputOrigin:
    """What wrote an exposure, as far as its file tells.

    Attributes
    ----------
    kind : str
        ``"romancal_lite.simulate"``, ``"romanisim"`` or ``"unknown"``.
    constants : DetectorConstants or None
        For romanisim files: the constant detector properties it recorded, or None
        when it used reference files (then no built-in references can match).
    detail : str
        Why the constants could not be matched (empty otherwise).
    """

    kind: str
    constants: DetectorConstants | None = None
    detail: str = ""


@dataclass(frozen=True)
class ReferenceSource:
    """Where the references of one run are selected from.

    Attributes
    ----------
    kind : str
        ``"crds"`` (the user's CRDS), ``"simulator"`` (the built-in cache, for
        ``romancal_lite.simulate`` exposures), ``"romanisim"`` (references matched
        to romanisim's recorded constants), ``"builtin"`` (the built-in invented
        references, by explicit opt-in: not a calibration) or ``"overrides"``
        (every reference given as an override: nothing is selected).
    cache : BuiltinCache or None
        The generated cache crds is pointed at (None for the user's CRDS).
    description : str
        One sentence for the log and the output's ``meta.ref_file.source``.
    """

    kind: str
    cache: BuiltinCache | None
    description: str

    @property
    def invented(self) -> bool:
        """bool: True when the references are invented values, not a calibration."""
        return self.kind == "builtin"

    @property
    def context(self) -> str | None:
        """Str or None: the CRDS context of the generated cache (None for the user's)."""
        return None if self.cache is None else self.cache.context


#: The source of a run whose every reference type is overridden.
OVERRIDES_ONLY = ReferenceSource(
    "overrides", None, "the override files given for every reference type (none selected)"
)


@contextlib.contextmanager
def allow_builtin_references(allow: bool = True) -> Iterator[None]:
    """Allow (inside the block) calibrating any exposure with the built-in references.

    The built-in references are invented (pedigree DUMMY); a run that uses them on
    an exposure they were not made for logs a warning and marks its output.

    Parameters
    ----------
    allow : bool, optional
        Whether to allow them (False restores the refusal inside the block).

    Yields
    ------
    None
    """
    previous = _ALLOW[0]
    _ALLOW[0] = bool(allow)
    try:
        yield
    finally:
        _ALLOW[0] = previous


def builtin_references_allowed() -> bool:
    """Return whether the caller opted in to the built-in references.

    Returns
    -------
    bool
        True inside :func:`allow_builtin_references`.
    """
    return _ALLOW[0]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() == "none")


def romanisim_constants(record: Any) -> tuple[DetectorConstants | None, str]:
    """Read the detector constants of a romanisim record (``tree["romanisim"]``).

    romanisim writes the reference data it simulated with under
    ``simulate_reffiles``: a number for a constant property (gain in e/DN, read
    noise in DN, dark current in e/s, saturation in DN), None for a property it did
    not apply (no non-linearity, flat 1), or a file name when it used a reference
    file (then CRDS, not built-in references, can reproduce it).

    Parameters
    ----------
    record : mapping
        The ``romanisim`` node.

    Returns
    -------
    constants : DetectorConstants or None
        The constants, or None if they cannot be matched.
    detail : str
        Why not (empty when matched).
    """
    if not isinstance(record, Mapping):
        return None, "its romanisim record is not a mapping"
    refs = record.get("simulate_reffiles")
    if not isinstance(refs, Mapping):
        return None, "its romanisim record has no simulate_reffiles"
    values: dict[str, float] = {}
    files = []
    for name in _ROMANISIM_NUMBERS:
        number = _number(refs.get(name))
        if number is None:
            files.append(name)
        else:
            values[name] = number
    for name in _ROMANISIM_ABSENT:
        if not _is_none(refs.get(name)):
            files.append(name)
    if record.get("usecrds") and files:
        files.append("(usecrds)")
    if files:
        return None, (
            "romanisim simulated it with reference files, not constants, for "
            + ", ".join(files)
        )
    if values["gain"] <= 0 or values["readnoise"] < 0 or values["saturation"] <= 0:
        return None, f"its romanisim constants are not physical: {values}"
    version = record.get("version")
    source = "romanisim" + (f" {version}" if isinstance(version, str) else "")
    return DetectorConstants(
        gain=values["gain"],
        readnoise=values["readnoise"],
        dark=values["dark"],
        saturation=values["saturation"],
        linear=True,
        flat=1.0,
        source=source,
    ), ""


def input_origin(model: Any) -> InputOrigin:
    """Return what wrote ``model``'s file, from the records simulators leave in it.

    Parameters
    ----------
    model : DataModel or object
        The exposure; only models read from a file carry a record.

    Returns
    -------
    InputOrigin
        The origin (``"unknown"`` for in-memory models and other files).
    """
    getter = getattr(model, "file_node", None)
    if getter is None:
        return InputOrigin("unknown")
    if getter(SIMULATOR_KEY) is not None:
        return InputOrigin("romancal_lite.simulate")
    record = getter(ROMANISIM_KEY)
    if record is not None:
        constants, detail = romanisim_constants(record)
        return InputOrigin("romanisim", constants, detail)
    return InputOrigin("unknown")


def _name(model: Any) -> str:
    try:
        name = model.meta.filename
    except (AttributeError, KeyError, TypeError):
        name = None
    return Path(str(name)).name if name else "the input"


def _full_shape(model: Any) -> tuple[int, int] | None:
    shape = getattr(model, "shape", None)
    if shape is None or len(shape) < 2:
        return None
    return int(shape[-2]), int(shape[-1])


def simulator_source() -> ReferenceSource:
    """Return where ``romancal_lite.simulate`` (and the exposures it writes) select from.

    Returns
    -------
    ReferenceSource
        The user's CRDS if configured, else the built-in cache.
    """
    from .select import active_cache

    if user_configured():
        where = os.environ.get("CRDS_PATH") or os.environ.get("CRDS_SERVER_URL") or "CRDS"
        return ReferenceSource("crds", None, f"CRDS ({where})")
    return _simulator(active_cache())


def _simulator(cache: BuiltinCache) -> ReferenceSource:
    return ReferenceSource(
        "simulator",
        cache,
        f"built-in references ({cache.root}), the ones romancal_lite.simulate "
        "made this exposure with",
    )


def _simulation_cache(model: Any) -> BuiltinCache | None:
    """Return the generated cache a simulated exposure's truth says it was made with.

    The truth lists the reference files the simulator read; when they all lie in one
    generated cache that still exists (e.g. a small-detector cache of a test or the
    demo), that cache is the exposure's own, whatever the default cache is.
    """
    truth = model.file_node(SIMULATOR_KEY)
    refs = truth.get("references") if isinstance(truth, Mapping) else None
    if not isinstance(refs, Mapping):
        return None
    return _cache_of(refs.values(), strict=True)


def _cache_of(paths: Any, *, strict: bool) -> BuiltinCache | None:
    """Return the one generated cache (still on disk) the reference ``paths`` lie in.

    ``strict``: a path outside every generated cache means None; otherwise such paths
    (``N/A``, an override file elsewhere) are passed over.
    """
    from ._cache import _STAMP, open_builtin_cache

    roots = set()
    for path in paths:
        if not isinstance(path, str) or not path:
            continue
        parent = Path(path).parent  # <root>/references/roman/wfi
        if parent.parts[-3:] != ("references", "roman", "wfi"):
            if strict:
                return None
            continue
        roots.add(parent.parents[2])
    if len(roots) != 1:
        return None
    root = roots.pop()
    if not (root / _STAMP).is_file():
        return None
    return open_builtin_cache(root)


def calibration_source(model: Any) -> ReferenceSource | None:
    """Return the generated references an already calibrated image was calibrated with.

    A ``_cal`` image records its references in ``meta.ref_file`` (paths) and where they
    came from in ``meta.ref_file.source``. When the paths all lie in one generated
    cache that still exists (e.g. the exposures of a simulated set calibrated by
    ``roman_elp``), the later steps of the same data (``roman_mos``'s
    ``source_catalog``) select from that cache too. References recorded as invented
    stay so (``kind`` ``"builtin"``: warned about), but need no new opt-in: the
    image is already a product of them.

    Parameters
    ----------
    model : DataModel
        The image.

    Returns
    -------
    ReferenceSource or None
        The source, or None (no such record, or the cache is gone).
    """
    try:
        ref_file = model.meta.get("ref_file")
    except (AttributeError, KeyError, TypeError):
        return None
    if not hasattr(ref_file, "items"):
        return None
    paths = [value for key, value in ref_file.items() if key not in ("source", "crds")]
    cache = _cache_of(paths, strict=False)
    if cache is None:
        return None
    invented = "INVENTED" in str(ref_file.get("source", ""))
    what = "BUILT-IN INVENTED references" if invented else "built-in references"
    return ReferenceSource(
        "builtin" if invented else "simulator",
        cache,
        f"{what} ({cache.root}) that {_name(model)} was calibrated with"
        + (" (pedigree DUMMY): not a calibration" if invented else ""),
    )


def reference_source(model: Any) -> ReferenceSource:
    """Decide where the references for ``model`` come from (the rule of this module).

    Parameters
    ----------
    model : DataModel
        The exposure as given to the run (its file's records tell its origin).

    Returns
    -------
    ReferenceSource
        The source.

    Raises
    ------
    ReferenceFileError
        If CRDS is not configured, the exposure is not a simulation whose
        references can be matched, and the caller did not opt in to the built-in
        references.
    """
    from .select import active_cache, forced_cache

    origin = input_origin(model)
    forced = forced_cache()
    if origin.kind == "romancal_lite.simulate" and not user_configured() and forced is None:
        cache = _simulation_cache(model)
        if cache is not None:
            return _simulator(cache)
    if user_configured() or origin.kind == "romancal_lite.simulate":
        return simulator_source()
    if origin.kind == "romanisim" and origin.constants is not None:
        shape = _full_shape(model)
        if shape is not None:
            base = forced.root if forced is not None else None
            cache = matched_cache(origin.constants, shape, base)
            c = origin.constants
            return ReferenceSource(
                "romanisim",
                cache,
                f"references generated from the constants {c.source} recorded "
                f"(gain {c.gain:g} e/DN, read noise {c.readnoise:g} DN, dark {c.dark:g} e/s, "
                f"saturation {c.saturation:g} DN, linear, flat 1; {cache.root})",
            )
    if forced is None and not user_configured():
        calibrated = calibration_source(model)
        if calibrated is not None:
            return calibrated
    if forced is not None or builtin_references_allowed():
        cache = forced if forced is not None else active_cache()
        return ReferenceSource(
            "builtin",
            cache,
            f"BUILT-IN INVENTED references ({cache.root}, pedigree DUMMY): "
            "not a calibration of this exposure",
        )
    why = ""
    if origin.kind == "romanisim":
        why = f" ({origin.detail})"
    raise ReferenceFileError(
        f"{_name(model)}: no reference files: CRDS is not configured and the exposure is not "
        f"a simulation whose references romancal_lite can reproduce{why}; set CRDS_PATH "
        "(and CRDS_SERVER_URL) to a Roman CRDS cache, give --override-<reftype> files, "
        "or pass --builtin-references to use invented references (not a calibration)"
    )
