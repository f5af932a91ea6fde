"""Fixtures of the simulator tests: a small generated CRDS cache, always in use.

Every test selects references from a cache of ``SMALL`` detectors (2 amplifiers of
128 columns, 32 x 248 science pixels), never from the user's default cache.
"""

from __future__ import annotations

import pytest
from _sim_helpers import SMALL

from romancal_lite.references import builtin_cache, generate_cache


@pytest.fixture(scope="session")
def sim_cache(tmp_path_factory):
    """A generated cache of ``SMALL`` references for every detector."""
    return generate_cache(tmp_path_factory.mktemp("simulate_crds"), full_shape=SMALL)


@pytest.fixture(autouse=True)
def small_refs(sim_cache):
    """Select references from `sim_cache` (the user's CRDS setup is hidden)."""
    with builtin_cache(sim_cache, hide_user_crds=True):
        yield sim_cache
