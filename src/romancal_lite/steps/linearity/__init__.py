"""``linearity``: the classical polynomial correction with `romancore.apply_linearity`."""

from .linearity_step import LinearityStep

__all__ = ["LinearityStep"]
