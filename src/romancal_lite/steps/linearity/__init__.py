"""``linearity``: romancal 1.1's read-level correction (`romancore.apply_read_level_linearity`),
or the classical polynomial (`romancore.apply_linearity`) without an INVERSELINEARITY
reference."""

from .linearity_step import LinearityStep

__all__ = ["LinearityStep"]
