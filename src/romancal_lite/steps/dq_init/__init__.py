"""``dq_init``: the raw exposure becomes a float32 ramp with the MASK in its pixel DQ."""

from .dq_init_step import DQInitStep
from .dq_initialization import GUIDE_STAR_TYPES, border_reference_arrays, to_ramp_arrays

__all__ = ["GUIDE_STAR_TYPES", "DQInitStep", "border_reference_arrays", "to_ramp_arrays"]
