"""The seed's file-name suffixes (seeds/000:4987-5037), in one dependency-free module.

Used by `romancal_lite.datamodels.filenames` and `romancal_lite.stpipe.naming`; kept
free of imports so the runner's ``--help`` stays fast.
"""

from __future__ import annotations

__all__ = ["KNOWN_SUFFIXES"]

#: suffixes known to the calibration code: the product table (seeds/000:5017-5033)
#: plus the step names used as default step-output suffixes (seeds/000:5003-5011)
KNOWN_SUFFIXES: frozenset[str] = frozenset(
    {
        "uncal",
        "dqinit",
        "dq_init",
        "saturation",
        "refpix",
        "dark_decay",
        "wfi18_transient",
        "linearity",
        "darkcurrent",
        "dark_current",
        "dark",
        "rampfit",
        "ramp_fit",
        "fitopt",
        "assignwcs",
        "assign_wcs",
        "flat",
        "flat_field",
        "flatfield",
        "photomstep",
        "photom",
        "sourcedetection",
        "source_detection",
        "sourcecatalog",
        "source_catalog",
        "tweakregstep",
        "tweakreg",
        "jump",
        "cal",
        "cat",
        "segm",
        "wcs",
        "rate",
        "ramp",
        "exposure_pipeline",
        "elp",
    }
)
