"""Output file-name suffix conventions (seeds/000:4987-5037).

Each pipeline or step output is named ``<root>_<suffix>.asdf`` where ``<root>``
is the input file name with any *known* suffix removed (``..._uncal.asdf`` ->
``..._cal.asdf``); an unknown trailing ``_word`` is kept and the new suffix is
appended.
"""

from __future__ import annotations

from pathlib import Path, PurePath

__all__ = ["KNOWN_SUFFIXES", "replace_suffix", "split_suffix"]

from romancal_lite._suffixes import KNOWN_SUFFIXES


def split_suffix(name: str | PurePath) -> tuple[str, str | None]:
    """Split a file name into its root and known suffix.

    Parameters
    ----------
    name : str or Path
        A file name or path (the directory part is kept in the root).

    Returns
    -------
    tuple
        ``(root, suffix)``, where ``root`` has no extension and ``suffix`` is the
        known suffix removed (``None`` if there was none).
    """
    path = PurePath(name)
    stem = path.stem if path.suffix == ".asdf" else path.name
    base, sep, last = stem.rpartition("_")
    if sep and base and last in KNOWN_SUFFIXES:
        return str(path.with_name(base)), last
    return str(path.with_name(stem)), None


def replace_suffix(
    name: str | PurePath, suffix: str, output_dir: str | PurePath | None = None
) -> Path:
    """Return the output file name for ``suffix`` (``a_uncal.asdf`` -> ``a_<suffix>.asdf``).

    Parameters
    ----------
    name : str or Path
        Input file name.
    suffix : str
        New suffix, without the leading underscore (e.g. ``"cal"``).
    output_dir : str or Path, optional
        Directory of the result; default: the directory of ``name``.

    Returns
    -------
    Path
        The output path.
    """
    root, _ = split_suffix(name)
    result = Path(f"{root}_{suffix}.asdf")
    if output_dir is not None:
        result = Path(output_dir) / result.name
    return result
