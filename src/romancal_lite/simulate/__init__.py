"""Built-in demo data: simulated Level 1 (``_uncal``) WFI exposures with known truth.

The simulator writes the official Level 1 format (the ``WfiScienceRaw`` tree of
roman_datamodels, as the public simulator romanisim writes it) and takes every
detector constant from the reference files the pipeline will select for the
exposure, so that calibrating the file with the built-in references recovers the
injected truth.  See ``docs/simulate.md`` for the physics and every formula.

Public API
----------
simulate_exposure(**options) -> (ScienceRawModel, truth)
    Simulate in memory.
write_exposure(path, **options) -> Path
    Simulate and write ``path`` atomically: ``roman`` (the L1 model) plus
    ``romancal_lite_truth`` (the truth).
read_truth(path) -> dict
    Read the truth back.
PointingError, refcat_path_for
    A pointing error (``pointing_error=``); where the reference catalog of an
    exposure file is written (``<base>_refcat.ecsv``).
simulate_set(output_dir, **options) -> SetResult
    A set: the detectors of a pointing (all 18 by default) in dithered exposures,
    one sky scene, independent noise and cosmic rays, truth tables beside the files
    (`romancal_lite.simulate.sets`); ``simulate_set_member`` writes one member from
    plain arguments (for process pools / Dask).
READ_PATTERNS
    Named MA tables (``"ma4"``: 9 resultants, ``"ma6"``: 15, ``"ma109"``: 10).

``python -m romancal_lite.simulate OUTPUT [options]`` is the command line.
"""

from __future__ import annotations

from ._exposure import (
    DEFAULT_SEED,
    TRUTH_KEY,
    TRUTH_UNITS,
    read_truth,
    simulate_exposure,
    write_exposure,
)
from ._patterns import DEFAULT_READ_PATTERN, FRAME_TIME, READ_PATTERNS, MATable
from .astrometry import GAIA_MAG_LIMIT, GAIA_REF_EPOCH, PointingError, refcat_path_for
from .sets import SetResult, read_set_stars, simulate_set, simulate_set_member

__all__ = [
    "DEFAULT_READ_PATTERN",
    "DEFAULT_SEED",
    "FRAME_TIME",
    "GAIA_MAG_LIMIT",
    "GAIA_REF_EPOCH",
    "READ_PATTERNS",
    "TRUTH_KEY",
    "TRUTH_UNITS",
    "MATable",
    "PointingError",
    "SetResult",
    "read_set_stars",
    "read_truth",
    "refcat_path_for",
    "simulate_exposure",
    "simulate_set",
    "simulate_set_member",
    "write_exposure",
]
