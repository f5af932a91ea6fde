"""The detector constants of a simulated exposure, read from its reference files.

The simulator takes every detector property the pipeline corrects for from the
reference files the pipeline will select for the exposure (same detector, optical
element, exposure type and start time), so that calibrating the simulated file
with those references recovers the injected truth:

* ``crds`` (default): selection through :func:`romancal_lite.references.get_reference_files`
  on the exposure's own metadata (the built-in generated cache, or the user's CRDS);
* ``builtin``: the same content built in memory with
  :func:`romancal_lite.references.build_reference` for the exposure's shape (no
  cache needed, e.g. for shapes no cache was generated for);
* a mapping ``{reftype: path}``: these files, the other types through CRDS.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from romancore.dqflags import pixel

from ..errors import ReferenceFileError
from ..references import (
    NOT_APPLICABLE,
    build_reference,
    get_reference_files,
    simulator_source,
)
from ..references._cache import DEFAULT_USEAFTERS
from ..references._spec import BORDER

__all__ = ["DetectorReferences", "load_references", "REFTYPES_USED"]

#: Reference types the simulator reads (in this order).
REFTYPES_USED: tuple[str, ...] = (
    "gain",
    "readnoise",
    "saturation",
    "linearity",
    "inverselinearity",
    "integralnonlinearity",
    "dark",
    "flat",
)
_REQUIRED = ("gain", "readnoise", "saturation")

#: A/D converter limit (DN); the saturation threshold of pixels without one.
ATOD_LIMIT = 65535.0


@dataclass
class DetectorReferences:
    """Reference arrays of one detector, possibly memory-mapped (slice per block).

    Attributes
    ----------
    full_shape : tuple of int
        ``(ny, nx)`` of the full read-out.
    gain : numpy.ndarray, (ny, nx)
        e/DN.
    read_noise : numpy.ndarray, (ny, nx)
        DN per read.
    saturation : numpy.ndarray, (ny, nx)
        Saturation threshold (DN).
    saturation_dq : numpy.ndarray or None, (ny, nx)
        DQ of the saturation reference (``NO_SAT_CHECK`` pixels use the A/D limit).
    dark_slope : numpy.ndarray or None, (ny, nx)
        Dark rate (DN/s); None where DARK is N/A.
    flat : numpy.ndarray or None, (ny - 8, nx - 8)
        Flat field of the science pixels; None where FLAT is N/A.
    linearity : numpy.ndarray or None, (ncoeffs, ny, nx)
        LINEARITY coefficients (corrected = sum c_k raw**k); None where N/A.
    linearity_dq : numpy.ndarray or None, (ny, nx)
        DQ of the linearity reference.
    inverse : numpy.ndarray or None, (ncoeffs, ny, nx)
        INVERSELINEARITY coefficients (raw = sum d_k corrected**k).
    sources : dict
        Reference type to the file used, ``"builtin"`` or ``"N/A"``.
    inl : tuple of numpy.ndarray or None
        INTEGRALNONLINEARITY table: abscissae ``(n_table,)`` and the correction of each
        128-column channel ``(n_channels, n_table)`` (DN, added by the pipeline to a
        raw read); None where N/A.
    """

    full_shape: tuple[int, int]
    gain: np.ndarray
    read_noise: np.ndarray
    saturation: np.ndarray
    saturation_dq: np.ndarray | None = None
    dark_slope: np.ndarray | None = None
    flat: np.ndarray | None = None
    linearity: np.ndarray | None = None
    linearity_dq: np.ndarray | None = None
    inverse: np.ndarray | None = None
    sources: dict[str, str] = field(default_factory=dict)
    inl: tuple[np.ndarray, np.ndarray] | None = None

    def block(self, r0: int, r1: int) -> dict[str, np.ndarray | None]:
        """Return float64 copies of the per-pixel constants of rows ``r0:r1``.

        Parameters
        ----------
        r0, r1 : int
            Row range of the full read-out.

        Returns
        -------
        dict
            ``gain``, ``read_noise``, ``saturation`` (threshold, NaN and
            ``NO_SAT_CHECK`` replaced by the A/D limit), ``dark_slope`` (zeros if
            N/A), ``linearity`` (``(ncoeffs, rows, nx)``, the identity where the
            pipeline does not correct a pixel, or None) and ``lin_ok`` (bool: the
            pipeline corrects the pixel's linearity).
        """
        out: dict[str, np.ndarray | None] = {}
        gain = np.asarray(self.gain[r0:r1], dtype=np.float64)
        bad = ~np.isfinite(gain) | (gain <= 0)
        if bad.any():
            good = np.asarray(self.gain, dtype=np.float64)
            good = good[np.isfinite(good) & (good > 0)]
            gain[bad] = float(np.median(good)) if good.size else 1.0
        out["gain"] = gain
        rn = np.asarray(self.read_noise[r0:r1], dtype=np.float64)
        out["read_noise"] = np.where(np.isfinite(rn) & (rn > 0), rn, 0.0)
        sat = np.asarray(self.saturation[r0:r1], dtype=np.float64)
        nosat = ~np.isfinite(sat)
        if self.saturation_dq is not None:
            nosat |= (np.asarray(self.saturation_dq[r0:r1]) & pixel.NO_SAT_CHECK) != 0
        out["saturation"] = np.where(nosat, ATOD_LIMIT, np.minimum(sat, ATOD_LIMIT))
        if self.dark_slope is None:
            out["dark_slope"] = np.zeros_like(gain)
        else:
            dark = np.asarray(self.dark_slope[r0:r1], dtype=np.float64)
            out["dark_slope"] = np.where(np.isfinite(dark), dark, 0.0)
        out["linearity"] = None
        out["lin_ok"] = None
        if self.linearity is not None:
            coeffs = np.asarray(self.linearity[:, r0:r1], dtype=np.float64)
            ok = np.all(np.isfinite(coeffs), axis=0) & (coeffs[1] != 0)
            if self.linearity_dq is not None:
                ok &= (np.asarray(self.linearity_dq[r0:r1]) & pixel.NO_LIN_CORR) == 0
            out["linearity"] = np.where(ok, coeffs, _identity(coeffs.shape))
            out["lin_ok"] = ok
        return out

    def inverse_block(self, r0: int, r1: int) -> np.ndarray | None:
        """Return the INVERSELINEARITY coefficients of rows ``r0:r1`` (float64) or None.

        Parameters
        ----------
        r0, r1 : int
            Row range of the full read-out.

        Returns
        -------
        numpy.ndarray or None
            ``(ncoeffs, rows, nx)``; pixels with a NaN coefficient get the identity.
        """
        if self.inverse is None:
            return None
        coeffs = np.asarray(self.inverse[:, r0:r1], dtype=np.float64)
        ok = np.all(np.isfinite(coeffs), axis=0)
        return np.where(ok, coeffs, _identity(coeffs.shape))


def _inl_tables(node: Any, nx: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the INL abscissae and per-channel corrections the pipeline will apply."""
    from ..steps.linearity.linearity_step import read_inl_tables

    values, corrections = read_inl_tables(node, nx, Path(source).name)
    return values.astype(np.float32).astype(np.float64), corrections


def _identity(shape: tuple[int, ...]) -> np.ndarray:
    coeffs = np.zeros(shape[:1] + (1,) * (len(shape) - 1), dtype=np.float64)
    coeffs[1] = 1.0
    return coeffs


def _check_shape(reftype: str, source: str, name: str, array: Any, want: tuple[int, ...]) -> None:
    got = tuple(int(n) for n in getattr(array, "shape", ()))
    if got[-2:] != want:
        hint = (
            "; simulate with references='builtin', or select from a cache generated "
            f"for this shape (romancal_lite.references.generate_cache(root, full_shape="
            f"{want if reftype != 'flat' else (want[0] + 2 * BORDER, want[1] + 2 * BORDER)}))"
        )
        raise ReferenceFileError(
            f"{Path(source).name}: {reftype.upper()} array '{name}' has shape {got}, "
            f"the simulated exposure needs {want}{hint}"
        )


def _node_arrays(reftype: str, node: Any) -> dict[str, Any]:
    """Return the arrays the simulator uses from a reference node or model."""

    def get(name: str) -> Any:
        if isinstance(node, Mapping):
            return node.get(name)
        try:
            return getattr(node, name)
        except AttributeError:
            return None

    names = {
        "gain": ("data",),
        "readnoise": ("data",),
        "saturation": ("data", "dq"),
        "linearity": ("coeffs", "dq"),
        "inverselinearity": ("coeffs",),
        "integralnonlinearity": ("value", "inl_table"),
        "dark": ("dark_slope",),
        "flat": ("data",),
    }[reftype]
    return {name: get(name) for name in names}


@contextlib.contextmanager
def load_references(
    model: Any,
    full_shape: tuple[int, int],
    references: str | Mapping[str, str | os.PathLike[str]] = "crds",
) -> Iterator[DetectorReferences]:
    """Load the reference arrays for the exposure described by ``model``.

    Parameters
    ----------
    model : ScienceRawModel
        The exposure (its metadata drives CRDS selection).
    full_shape : tuple of int
        ``(ny, nx)`` of the full read-out, the shape the arrays must have (the
        flat: the science shape ``(ny - 8, nx - 8)``).
    references : {"crds", "builtin"} or mapping
        Where the references come from (see the module docstring).

    Yields
    ------
    DetectorReferences
        Arrays valid inside the ``with`` block (files memory-mapped).

    Raises
    ------
    ReferenceFileError
        If a required type is N/A, a file cannot be read or has the wrong shape.
    ValueError
        For an unknown ``references`` mode.
    """
    from .. import datamodels

    ny, nx = full_shape
    science = (ny - 2 * BORDER, nx - 2 * BORDER)
    arrays: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    opened: list[Any] = []
    try:
        if isinstance(references, str) and references.lower() == "builtin":
            meta = model.meta
            det = str(meta.instrument.detector)
            elem = str(meta.instrument.optical_element)
            for reftype in REFTYPES_USED:
                node = build_reference(reftype, det, full_shape, DEFAULT_USEAFTERS[0], elem)
                if reftype == "integralnonlinearity":
                    arrays[reftype] = {"tables": _inl_tables(node, nx, "builtin")}
                    continue
                arrays[reftype] = _node_arrays(reftype, node)
                sources[reftype] = "builtin"
        elif (isinstance(references, str) and references.lower() == "crds") or isinstance(
            references, Mapping
        ):
            overrides = {} if isinstance(references, str) else dict(references)
            unknown = sorted(set(k.lower() for k in overrides) - set(REFTYPES_USED))
            if unknown:
                raise ValueError(
                    f"references: unknown reference type(s) {', '.join(unknown)}; "
                    f"the simulator uses {', '.join(REFTYPES_USED)}"
                )
            paths = get_reference_files(model, REFTYPES_USED, overrides, simulator_source())
            for reftype, path in paths.items():
                sources[reftype] = path
                if path == NOT_APPLICABLE:
                    continue
                if reftype == "integralnonlinearity":  # no datamodel: read its tables now
                    from ..references import open_reference_tree

                    with open_reference_tree(path) as node:
                        arrays[reftype] = {"tables": _inl_tables(node, nx, path)}
                    continue
                ref = datamodels.open(path, memmap=True)
                opened.append(ref)
                arrays[reftype] = _node_arrays(reftype, ref)
        else:
            raise ValueError(
                f"references must be 'crds', 'builtin' or a mapping of reftype to path, "
                f"not {references!r}"
            )
        for reftype in _REQUIRED:
            if reftype not in arrays:
                raise ReferenceFileError(
                    f"no {reftype.upper()} reference applies to this exposure (CRDS says N/A)"
                )
        for reftype, values in arrays.items():
            if reftype == "integralnonlinearity":
                continue
            want = science if reftype == "flat" else full_shape
            first = {"dark": "dark_slope", "linearity": "coeffs", "inverselinearity": "coeffs"}
            name = first.get(reftype, "data")
            if values.get(name) is None:
                raise ReferenceFileError(
                    f"{Path(sources[reftype]).name}: {reftype.upper()} reference lacks '{name}'"
                )
            _check_shape(reftype, sources[reftype], name, values[name], want)
        lin = arrays.get("linearity", {})
        inv = arrays.get("inverselinearity", {})
        yield DetectorReferences(
            full_shape=(ny, nx),
            gain=arrays["gain"]["data"],
            read_noise=arrays["readnoise"]["data"],
            saturation=arrays["saturation"]["data"],
            saturation_dq=arrays["saturation"].get("dq"),
            dark_slope=arrays.get("dark", {}).get("dark_slope"),
            flat=arrays.get("flat", {}).get("data"),
            linearity=lin.get("coeffs"),
            linearity_dq=lin.get("dq"),
            inverse=inv.get("coeffs"),
            sources=sources,
            inl=arrays.get("integralnonlinearity", {}).get("tables"),
        )
    finally:
        for ref in opened:
            ref.close()
