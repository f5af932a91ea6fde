"""Reference files: CRDS selection, the built-in generated cache, and checks.

Selection always goes through the ``crds`` client with the science model's
``get_crds_parameters()``:

* an explicit override (``override_<reftype>``) always wins;
* if the user configured CRDS (``CRDS_PATH``, ``CRDS_SERVER_URL``, ...), their
  cache/server and context are used and their environment is left alone;
* otherwise crds runs server-less against a cache romancal-lite generates in
  ``$ROMANCAL_LITE_CRDS_CACHE`` or ``~/.cache/romancal_lite/crds``: mappings
  (``roman_lite_0001.pmap`` ...) listing all 18 detectors, reference files in
  the official roman_datamodels format written lazily, on first selection.

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
    open_builtin_cache,
)
from ._content import build_reference, reference_shape, write_reference
from ._crds import user_configured
from ._spec import DETECTORS, OPTICAL_ELEMENTS, REFTYPES, get_spec
from .check import check_reference, open_reference_tree
from .select import (
    NOT_APPLICABLE,
    active_cache,
    builtin_cache,
    crds_parameters,
    get_reference_file,
    get_reference_files,
    use_builtin_cache,
)

__all__ = [
    "CACHE_ENV_VAR",
    "CONTEXT",
    "DETECTORS",
    "NOT_APPLICABLE",
    "OPTICAL_ELEMENTS",
    "REFTYPES",
    "BuiltinCache",
    "active_cache",
    "build_reference",
    "builtin_cache",
    "check_reference",
    "crds_parameters",
    "default_cache_dir",
    "generate_cache",
    "get_reference_file",
    "get_reference_files",
    "get_spec",
    "open_builtin_cache",
    "open_reference_tree",
    "reference_shape",
    "use_builtin_cache",
    "user_configured",
    "write_reference",
]
