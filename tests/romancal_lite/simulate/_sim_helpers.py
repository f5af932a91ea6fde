"""Helpers of the simulator tests: reference arrays and electronic offsets from the truth."""

from __future__ import annotations

import functools

import numpy as np

from romancal_lite import simulate
from romancal_lite.references import build_reference
from romancal_lite.references._cache import DEFAULT_USEAFTERS

SMALL = (40, 256)

#: The simulator with the built-in reference content (no files: fast); the tests of
#: CRDS selection check that the selected files give exactly the same exposure.
#: The decaying signals (dark decay, WFI18 transient) are left out of these physics
#: tests; tests/romancal_lite/steps/test_decay_truth.py checks them.
simulate_exposure = functools.partial(
    simulate.simulate_exposure, references="builtin", decay_signals=False
)


def refs(detector="WFI01", element="F158", shape=SMALL):
    """Return the built-in reference arrays (as float64 / raw) for a detector."""
    ua = DEFAULT_USEAFTERS[0]

    def node(reftype, elem=None):
        return build_reference(reftype, detector, shape, ua, elem)

    from romancal_lite.steps.linearity.linearity_step import read_inl_tables

    return {
        "inl": read_inl_tables(node("integralnonlinearity"), shape[1], "builtin"),
        "gain": np.asarray(node("gain")["data"], dtype=np.float64),
        "readnoise": np.asarray(node("readnoise")["data"], dtype=np.float64),
        "saturation": np.asarray(node("saturation")["data"]),
        "saturation_dq": np.asarray(node("saturation")["dq"]),
        "linearity": np.asarray(node("linearity")["coeffs"]),
        "linearity_dq": np.asarray(node("linearity")["dq"]),
        "inverselinearity": np.asarray(node("inverselinearity")["coeffs"]),
        "dark": np.asarray(node("dark")["dark_slope"], dtype=np.float64),
        "flat": np.asarray(node("flat", element)["data"], dtype=np.float64),
    }


def offsets(truth, shape=SMALL):
    """Electronic offsets of every resultant on the read-out, (n, ny, nx), from the truth."""
    nx = shape[1]
    drifts = truth["ref_drifts"]
    x = np.arange(nx)
    columns = drifts["channel_offsets"][:, x // 128, x % 2].astype(np.float64)
    return columns[:, None, :] + drifts["row_drift"][:, :, None].astype(np.float64)


def amp33_offsets(truth):
    """Electronic offsets of amp33, (n, ny, 128)."""
    drifts = truth["ref_drifts"]
    columns = drifts["channel_offsets"][:, -1, np.arange(128) % 2].astype(np.float64)
    return columns[:, None, :] + drifts["row_drift"][:, :, None].astype(np.float64)

