"""Shared fixtures of the step tests: a small generated CRDS cache in use.

``SMALL_SHAPE`` is the full read-out (science plus the 4-pixel reference border) of
the small detectors the step tests use: 2 amplifiers of 128 columns wide, so the
per-amplifier logic is exercised, and short enough to run in milliseconds.
"""

import pytest

from romancal_lite.references import builtin_cache, generate_cache

SMALL_SHAPE = (40, 256)


@pytest.fixture(scope="session")
def small_cache(tmp_path_factory):
    """A generated cache of ``SMALL_SHAPE`` references for every detector."""
    return generate_cache(tmp_path_factory.mktemp("steps_crds"), full_shape=SMALL_SHAPE)


@pytest.fixture
def builtin_refs(small_cache):
    """Select references from `small_cache` (the user's CRDS setup is hidden)."""
    with builtin_cache(small_cache, hide_user_crds=True):
        yield small_cache
