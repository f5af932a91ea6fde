"""``linearity``: read-level (romancal 1.1) or classical polynomial linearity correction.

`romancore.apply_read_level_linearity` with an INVERSELINEARITY reference,
`romancore.apply_linearity` without one.
"""

from .linearity_step import LinearityStep

__all__ = ["LinearityStep"]
