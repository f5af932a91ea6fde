"""Output file names: ``<basename>_<suffix>.asdf``.

The basename is the input (or ``output_file``) name without directory, extension and
any *known* suffix; an unknown trailing ``_word`` is kept and the new suffix appended
(seeds/000 section 1.7.2, "Suffix Definitions").
"""

from __future__ import annotations

import os

from romancal_lite._suffixes import KNOWN_SUFFIXES as _SEED_SUFFIXES

__all__ = ["KNOWN_SUFFIXES", "add_known_suffix", "make_output_name", "remove_suffix"]

#: Suffixes replaced rather than appended to: the product and step suffixes of
#: `romancal_lite._suffixes` (the one table of the seed's suffixes) plus every
#: registered step alias (`add_known_suffix` is called by each Step subclass for its alias).
KNOWN_SUFFIXES: set[str] = set(_SEED_SUFFIXES)


def add_known_suffix(suffix: str) -> None:
    """Register a suffix that `remove_suffix` strips.

    Parameters
    ----------
    suffix : str
        Suffix without the leading underscore.
    """
    KNOWN_SUFFIXES.add(suffix.lower())


def remove_suffix(name: str) -> str:
    """Strip one known trailing ``_<suffix>`` from a basename.

    Parameters
    ----------
    name : str
        Basename without directory or extension.

    Returns
    -------
    str
        ``name`` without its known suffix; unchanged if the suffix is unknown. Longer
        suffixes are tried first, so ``x_dark_current`` becomes ``x``.
    """
    lower = name.lower()
    for suffix in sorted(KNOWN_SUFFIXES, key=len, reverse=True):
        tail = "_" + suffix
        if lower.endswith(tail) and len(name) > len(tail):
            return name[: -len(tail)]
    return name


def make_output_name(base: str, suffix: str | None, ext: str = ".asdf") -> str:
    """Compose an output file name from an input-like name and a suffix.

    Parameters
    ----------
    base : str
        Input path, model file name or ``output_file`` value; only its final component
        is used and its extension dropped.
    suffix : str or None
        Suffix to add after removing any known one; None keeps the basename as is.
    ext : str, optional
        Extension of the output.

    Returns
    -------
    str
        File name (no directory), e.g. ``"r0001_WFI01_saturation.asdf"``.
    """
    stem = os.path.basename(base)
    root, old_ext = os.path.splitext(stem)
    if old_ext.lower() in {".asdf", ".fits", ".json", ".yaml", ".yml"}:
        stem = root
    if suffix:
        stem = f"{remove_suffix(stem)}_{suffix}"
    return stem + ext
