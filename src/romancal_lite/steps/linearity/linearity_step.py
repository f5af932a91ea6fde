"""The ``linearity`` step (seeds/000:710-760; romancal 1.1 read-level correction)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import romancore
from romancal_lite import datamodels
from romancal_lite.errors import ReferenceFileError
from romancal_lite.references import NOT_APPLICABLE
from romancal_lite.steps._arrays import is_memory_mapped, release_rows, writable_contiguous
from romancal_lite.stpipe import Step
from romancore.linearity import INL_CHANNEL_WIDTH, RESULTANT_CLIP

#: Rows corrected at once when the coefficients are memory maps (their pages are handed
#: back block by block).
LINEARITY_BLOCK_ROWS = 256

__all__ = ["LinearityStep", "read_inl_tables"]


def read_inl_tables(node: Any, nx: int, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the INTEGRALNONLINEARITY table of the channels ``nx`` columns span.

    As romancal 1.1: channel ``k`` (1-based, ``science_channel_kk``) covers columns
    ``(k - 1) * 128`` to ``k * 128 - 1`` and its ``correction`` is tabulated at the
    reference's ``value`` (DN).

    Parameters
    ----------
    node : mapping
        The ``roman`` node of the reference file.
    nx : int
        Number of columns of the science data.
    label : str
        File name used in error messages.

    Returns
    -------
    values : numpy.ndarray of float64, shape (n_table,)
        Table abscissae.
    corrections : numpy.ndarray of float64, shape (n_channels, n_table)
        Correction (DN, added) of each channel.

    Raises
    ------
    ReferenceFileError
        If a channel is missing or the tables are not usable 1-D arrays of one length.
    """
    try:
        values = np.asarray(node["value"])
        table = node["inl_table"]
        rows = []
        for k in range(-(-nx // INL_CHANNEL_WIDTH)):
            name = f"science_channel_{k + 1:02d}"
            if name not in table:
                raise ReferenceFileError(
                    f"{label}: INTEGRALNONLINEARITY reference lacks {name} "
                    f"(needed for {nx} columns)"
                )
            rows.append(np.asarray(table[name]["correction"], dtype=np.float64))
    except (KeyError, TypeError, ValueError) as exc:
        raise ReferenceFileError(
            f"{label}: unreadable INTEGRALNONLINEARITY reference: {exc}"
        ) from None
    if values.ndim != 1 or any(r.shape != values.shape for r in rows):
        raise ReferenceFileError(
            f"{label}: INTEGRALNONLINEARITY 'value' and every channel's 'correction' "
            f"must be 1-D tables of the same length"
        )
    return values, np.stack(rows)


class LinearityStep(Step):
    """Correct each resultant for the non-linear detector response, in place.

    With an INVERSELINEARITY reference (romancal 1.1's correction, the default): the
    reads of every resultant are reconstructed on the pixel's linearised ramp, made
    non-linear with the inverse polynomial, shifted to average to the measured
    resultant, corrected for integral non-linearity (INTEGRALNONLINEARITY, skipped
    when N/A), linearised with the LINEARITY polynomial and averaged again
    (`romancore.apply_read_level_linearity`); values beyond +-1e6 DN are clipped and
    flagged DO_NOT_USE, as romancal.  Without one: the classic per-resultant
    polynomial ``corrected = sum_k c_k raw**k`` (`romancore.apply_linearity`).

    Either way saturated resultants are left as they are; pixels with NaN
    coefficients, ``NO_LIN_CORR`` or a zero linear term are flagged ``NO_LIN_CORR``
    (and not linearised); the LINEARITY ``dq`` is OR-ed into ``pixeldq``.
    """

    class_alias = "linearity"
    reference_file_types = ("linearity", "inverselinearity", "integralnonlinearity")
    model_type = datamodels.RampModel

    def process(self, model: Any) -> Any:
        """Linearise ``model``'s resultants.

        Parameters
        ----------
        model : RampModel
            Ramp in DN, updated in place.

        Returns
        -------
        RampModel
            The same model.
        """
        ref = self.open_reference(model, "linearity")
        if ref is None:
            self.mark_skipped("no LINEARITY reference applies")
            return model
        with ref:
            inverse = self.open_reference(model, "inverselinearity")
            if inverse is None:
                self.log.info(
                    "Classic per-resultant linearity (no INVERSELINEARITY reference applies)"
                )
                self._classic(model, ref)
                return model
            with inverse:
                n_resultants = int(model.data.shape[0])
                if n_resultants < 2:
                    self.log.info(
                        "Classic per-resultant linearity (a single resultant: no reads "
                        "to reconstruct)"
                    )
                    self._classic(model, ref)
                    return model
                inl = self._inl(model)
                self.log.info(
                    "Read-level linearity (INVERSELINEARITY%s)",
                    " and INTEGRALNONLINEARITY" if inl else "; INTEGRALNONLINEARITY N/A",
                )
                read_pattern = datamodels.read_pattern(model)
                writable_contiguous(model, "data", "groupdq", "pixeldq")
                values, corrections = inl if inl else (None, None)
                coeffs = np.ascontiguousarray(ref.coeffs, dtype=np.float32)
                coeffs_dq = np.ascontiguousarray(ref.dq, dtype=np.uint32)
                inverse_coeffs = np.ascontiguousarray(inverse.coeffs, dtype=np.float32)
                # references mapped from the uncompressed cache: by row blocks, each
                # block's coefficient pages handed back once used (they stay in the
                # page cache), so the coefficients never all count in this process
                mapped = [a for a in (coeffs, coeffs_dq, inverse_coeffs) if is_memory_mapped(a)]
                ny = model.data.shape[1]
                step = LINEARITY_BLOCK_ROWS if mapped else ny
                try:
                    for r0 in range(0, ny, step):
                        r1 = min(r0 + step, ny)
                        romancore.apply_read_level_linearity(
                            model.data,
                            model.groupdq,
                            model.pixeldq,
                            coeffs,
                            coeffs_dq,
                            inverse_coeffs,
                            read_pattern,
                            inl_values=values,
                            inl_corrections=corrections,
                            clip=RESULTANT_CLIP,
                            rows=(r0, r1),
                        )
                        for array in mapped:
                            release_rows(array, r0, r1)
                except ValueError as exc:
                    raise ReferenceFileError(f"linearity references: {exc}") from None
        return model

    def _classic(self, model: Any, ref: Any) -> None:
        writable_contiguous(model, "data", "groupdq", "pixeldq")
        romancore.apply_linearity(
            model.data,
            model.groupdq,
            model.pixeldq,
            np.ascontiguousarray(ref.coeffs, dtype=np.float32),
            np.ascontiguousarray(ref.dq, dtype=np.uint32),
        )

    def _inl(self, model: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """Return the INL tables for ``model``, or None when the reference is N/A."""
        path = self.get_reference_file(model, "integralnonlinearity")
        if path == NOT_APPLICABLE:
            return None
        from romancal_lite.references import open_checked_reference_tree

        # checked as `check_reference` checks it, in the same read of the file
        with open_checked_reference_tree(path, "integralnonlinearity", model,
                                         expected_shape=None) as node:
            pedigree = node.get("meta", {}).get("pedigree")
            if pedigree:
                self._pedigrees[path] = str(pedigree)
            return read_inl_tables(node, int(model.data.shape[-1]), Path(path).name)
