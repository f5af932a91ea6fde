"""Named multi-accumulation (MA) table read patterns and read-pattern validation.

The presets are the read patterns of the public Roman simulator (romanisim 0.14,
``romanisim.models.parameters.read_pattern``) for MA tables 4 (9 resultants, 44
reads) and 6 (15 resultants, 93 reads), and the pattern of MA table 109 (10
uneven resultants, 44 reads with 4 reads skipped) stored in the real romanisim
Level 1 file ``shared/data/romanisim_l1_strip_wfi02_ma109.asdf``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from romancore.readpattern import validate_read_pattern

__all__ = [
    "DEFAULT_READ_PATTERN",
    "FRAME_TIME",
    "READ_PATTERNS",
    "MATable",
    "resolve_read_pattern",
]

#: Seconds between two reads of the WFI (romanisim ``parameters.read_time``; the
#: ``meta.exposure.frame_time`` of the real MA table 109 file).
FRAME_TIME = 3.16247


def _run(first: int, n: int) -> list[int]:
    return list(range(first, first + n))


def _contiguous(sizes: Sequence[int]) -> list[list[int]]:
    pattern, first = [], 1
    for n in sizes:
        pattern.append(_run(first, n))
        first += n
    return pattern


@dataclass(frozen=True)
class MATable:
    """A named read pattern.

    Attributes
    ----------
    number : int
        ``meta.exposure.ma_table_number``.
    read_pattern : tuple of tuple of int
        1-based read numbers of each resultant.
    description : str
        Where the table comes from.
    """

    number: int
    read_pattern: tuple[tuple[int, ...], ...]
    description: str

    @property
    def n_resultants(self) -> int:
        """int: Number of resultants."""
        return len(self.read_pattern)

    @property
    def n_reads(self) -> int:
        """int: Number of the last read (reads from reset to the end)."""
        return self.read_pattern[-1][-1]


def _table(number: int, pattern: list[list[int]], description: str) -> MATable:
    return MATable(number, tuple(tuple(r) for r in pattern), description)


#: Named read patterns: ``"ma4"`` (9 resultants), ``"ma6"`` (15), ``"ma109"`` (10).
READ_PATTERNS: dict[str, MATable] = {
    "ma4": _table(
        4,
        _contiguous((1, 1, 2, 5, 8, 8, 8, 10, 1)),
        "romanisim MA table 4 (C2A_IMG_HLWAS): 9 resultants, 44 contiguous reads",
    ),
    "ma6": _table(
        6,
        _contiguous((1, 1, 2, 6, 6, 6, 8, 8, 8, 8, 8, 10, 10, 10, 1)),
        "romanisim MA table 6: 15 resultants, 93 contiguous reads",
    ),
    "ma109": _table(
        109,
        [[1], [2, 3], [5, 6, 7], _run(10, 4), _run(15, 6), _run(21, 6), _run(27, 6),
         _run(33, 6), _run(39, 5), [44]],
        "MA table 109 of the real romanisim L1 file: 10 uneven resultants, "
        "44 reads (4, 8, 9 and 14 skipped)",
    ),
}

#: The preset used when no read pattern is given.
DEFAULT_READ_PATTERN = "ma4"


def resolve_read_pattern(
    read_pattern: str | Sequence[Sequence[int]], ma_table_number: int | None = None
) -> tuple[list[list[int]], int]:
    """Return an explicit read pattern and its MA table number.

    Parameters
    ----------
    read_pattern : str or sequence of sequences of int
        A preset name of :data:`READ_PATTERNS` (case-insensitive) or an explicit
        pattern: for each resultant the 1-based read numbers it averages, strictly
        increasing through the exposure (reads may be skipped between resultants).
    ma_table_number : int, optional
        MA table number to record; default the preset's, or -999999 (the schema
        placeholder) for an explicit pattern.

    Returns
    -------
    pattern : list of list of int
        The validated pattern.
    number : int
        The MA table number.

    Raises
    ------
    ValueError
        For an unknown preset name or an invalid pattern.
    """
    if isinstance(read_pattern, str):
        key = read_pattern.strip().lower()
        if key not in READ_PATTERNS:
            names = ", ".join(
                f"{k} ({t.n_resultants} resultants)" for k, t in READ_PATTERNS.items()
            )
            raise ValueError(
                f"unknown read pattern {read_pattern!r}: use one of {names} "
                "(names are MA table numbers) or an explicit list of lists of read numbers"
            )
        table = READ_PATTERNS[key]
        pattern = [list(r) for r in table.read_pattern]
        number = table.number if ma_table_number is None else int(ma_table_number)
        return pattern, number
    if isinstance(read_pattern, bytes) or not isinstance(read_pattern, Sequence):
        raise ValueError(
            f"read_pattern must be a preset name or a list of lists of read numbers, "
            f"not {type(read_pattern).__name__}"
        )
    for i, resultant in enumerate(read_pattern):
        if isinstance(resultant, str | bytes) or not isinstance(resultant, Sequence):
            raise ValueError(f"read_pattern resultant {i} is not a list of integers: {resultant!r}")
        if any(isinstance(read, bool | str | bytes) for read in resultant):
            raise ValueError(f"read_pattern resultant {i} is not a list of integers: {resultant!r}")
    pattern = validate_read_pattern(read_pattern)
    number = -999999 if ma_table_number is None else int(ma_table_number)
    return pattern, number
