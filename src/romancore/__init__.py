"""romancore: the compiled numerical core of romancal-lite.

Pure functions on NumPy arrays (no file I/O, no logging):

* :func:`read_pattern_metadata`: t̄, τ and N of each resultant;
* :func:`flag_saturation`: saturation / A-D floor flagging with resultant dilution;
* :func:`apply_linearity`: classic polynomial linearity correction;
* :func:`apply_read_level_linearity`: romancal 1.1's read-level linearity and
  integral non-linearity correction;
* :func:`convolve_separable_masked`: masked convolution (source detection image);
* :func:`to_float16`: float32 to float16, as NumPy's cast but without its slow path
* :func:`scale_float16`: a float16 array times a factor (in float32), as float16
  for values that underflow or overflow (the float16 arrays of a ``_cal``);
* :func:`sigma_clip_bounds`: astropy's median / mad_std sigma-clip bounds (background);
* :func:`sky_statistic`: stcal's clipped sky statistics (mode, median, mean, midpt);
* :func:`finish_ramp_fit`: a fit in electrons to DN/s images, DQ collapse, ``dumo``;
* :func:`fit_rate_images`: the fit and its finishing fused, from DN ramps;
* :func:`fit_ramps`: Casertano (2022) fit of uneven ramps with queue-based jump
  detection;
* :func:`fit_ramps_likely`: the likelihood fit of Brandt (2024) with chi^2 jump
  detection, or our step test (``jump_test='step'``, threshold from
  :func:`step_threshold_for`), optionally with a second pass on the neighbours of
  detected jumps (``neighbor_pass``, threshold from :func:`neighbor_threshold_for`);
* :mod:`romancore.drizzle`: drizzle's ``square``/``point``/``turbo`` kernels fused
  with the resample step's variances and coverage (``add_image``), drizzle's linear
  ``blot``, and the pixel maps' spline on a grid (``spline_grid``).

Cubes are C-contiguous ``[n_resultants, ny, nx]``: float32 data, uint8 group DQ,
uint32 pixel DQ.  Every kernel takes ``n_threads`` (default: all usable cores) and
gives the same result for any thread count.
"""

import os as _os

# Idle OpenMP threads sleep instead of spinning. GNU OpenMP's default keeps a thread
# that finished its share of a parallel region spinning for up to ~300000 iterations
# (milliseconds) in case another region starts; romancal-lite's regions are few and
# long, separated by Python and I/O, and that spinning took the cores from the threads
# doing the rest (3-4 of ~35 CPU-seconds of the mosaic pipeline). Read once, when the
# OpenMP runtime is loaded (the first compiled module below); a user's setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from romancore import dqflags, drizzle  # noqa: E402
from romancore._parallel import openmp_enabled
from romancore._threads import effective_n_threads
from romancore.convolve import convolve_separable_masked
from romancore.half import scale_float16, to_float16
from romancore.linearity import apply_linearity, apply_read_level_linearity
from romancore.ramp import (
    LikelyFitResult,
    RampFitResult,
    RateImages,
    finish_ramp_fit,
    fit_ramps,
    fit_ramps_likely,
    fit_rate_images,
    likely_thresholds,
    neighbor_false_positive_bound,
    neighbor_threshold_for,
    step_false_positive_bound,
    step_threshold_for,
)
from romancore.readpattern import ReadPatternMetadata, read_pattern_metadata
from romancore.saturation import ATOD_LIMIT, flag_saturation
from romancore.sigmaclip import clipped_stats_rows, sigma_clip_bounds, sigma_clip_bounds_rows
from romancore.skystats import SkyStatistic, sky_statistic

__version__ = "0.1.0"

__all__ = [
    "ATOD_LIMIT",
    "LikelyFitResult",
    "RampFitResult",
    "RateImages",
    "ReadPatternMetadata",
    "SkyStatistic",
    "apply_linearity",
    "apply_read_level_linearity",
    "clipped_stats_rows",
    "convolve_separable_masked",
    "dqflags",
    "drizzle",
    "effective_n_threads",
    "finish_ramp_fit",
    "fit_ramps",
    "fit_ramps_likely",
    "fit_rate_images",
    "flag_saturation",
    "likely_thresholds",
    "neighbor_false_positive_bound",
    "neighbor_threshold_for",
    "openmp_enabled",
    "read_pattern_metadata",
    "sigma_clip_bounds",
    "sigma_clip_bounds_rows",
    "sky_statistic",
    "step_false_positive_bound",
    "step_threshold_for",
    "scale_float16",
    "to_float16",
]
