"""Reference files: CRDS selection, the built-in generated cache, and checks.

Selection always goes through the ``crds`` client with the science model's
``get_crds_parameters()``:

* an explicit override (``override_<reftype>``) always wins;
* if the user configured CRDS (``CRDS_PATH``, ``CRDS_SERVER_URL``, ...), their
  cache/server and context are used and their environment is left alone;
* otherwise crds runs server-less against a cache romancal-lite generates in
  ``$ROMANCAL_LITE_CRDS_CACHE`` or ``~/.cache/romancal_lite/crds``: mappings
  (``roman_lite_0001.pmap`` ...) listing all 18 detectors, reference files in
  the official roman_datamodels format written lazily, on first selection; but
  only for exposures those references are right for (see `reference_source`):
  simulations by ``romancal_lite.simulate``, romanisim simulations with constant
  detector properties (a cache generated from its recorded constants), or any
  exposure when the caller opts in (`allow_builtin_references`,
  ``--builtin-references``), which is logged and recorded in the output.

Public API
----------
get_reference_file, get_reference_files
    Select reference file paths (``"N/A"`` where a type does not apply).
check_reference
    Check a reference against the science data (reftype, detector, shape).
generate_cache, open_builtin_cache, use_builtin_cache, default_cache_dir
    Create / choose the built-in cache (tests build tiny ones).
"""

from __future__ import annotations

from ._cache import (
    CACHE_ENV_VAR,
    CONTEXT,
    BuiltinCache,
    default_cache_dir,
    generate_cache,
    matched_cache,
    open_builtin_cache,
)
from ._content import (
    AB_ZEROPOINT,
    DetectorConstants,
    build_reference,
    gaussian_encircled_energy,
    gaussian_epsf,
    reference_shape,
    write_reference,
)
from ._crds import user_configured
from ._source import (
    OVERRIDES_ONLY,
    InputOrigin,
    ReferenceSource,
    allow_builtin_references,
    builtin_references_allowed,
    calibration_source,
    input_origin,
    reference_source,
    romanisim_constants,
    simulator_source,
)
from ._spec import DETECTORS, OPTICAL_ELEMENTS, REFTYPES, get_spec
from .check import (
    check_reference,
    open_checked_reference_tree,
    open_reference_tree,
    reference_pedigree,
)
from .select import (
    NOT_APPLICABLE,
    active_cache,
    builtin_cache,
    check_override,
    crds_parameters,
    forced_cache,
    get_reference_file,
    get_reference_files,
    use_builtin_cache,
)

__all__ = [
    "AB_ZEROPOINT",
    "CACHE_ENV_VAR",
    "CONTEXT",
    "DETECTORS",
    "NOT_APPLICABLE",
    "OPTICAL_ELEMENTS",
    "OVERRIDES_ONLY",
    "REFTYPES",
    "BuiltinCache",
    "DetectorConstants",
    "InputOrigin",
    "ReferenceSource",
    "active_cache",
    "allow_builtin_references",
    "build_reference",
    "builtin_cache",
    "builtin_references_allowed",
    "calibration_source",
    "check_override",
    "check_reference",
    "crds_parameters",
    "default_cache_dir",
    "forced_cache",
    "gaussian_encircled_energy",
    "gaussian_epsf",
    "generate_cache",
    "get_reference_file",
    "get_reference_files",
    "get_spec",
    "input_origin",
    "matched_cache",
    "open_builtin_cache",
    "open_checked_reference_tree",
    "open_reference_tree",
    "reference_pedigree",
    "reference_shape",
    "reference_source",
    "romanisim_constants",
    "simulator_source",
    "use_builtin_cache",
    "user_configured",
    "write_reference",
]
