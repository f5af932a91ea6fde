"""`RefPixStep`: remove the read-out electronics signal measured by the reference pixels."""

from __future__ import annotations

from typing import Any

import numpy as np

from romancal_lite import datamodels
from romancal_lite.errors import InputFileError, ReferenceFileError
from romancal_lite.references._spec import BORDER
from romancal_lite.steps._arrays import writable_contiguous
from romancal_lite.steps.refpix.correction import correct_reference_pixels
from romancal_lite.steps.refpix.reference_correction import (
    CHANNEL_WIDTH,
    CoefficientError,
    correct_with_refpix_reference,
)
from romancal_lite.stpipe import Step
from romancal_lite.stpipe.params import Param

__all__ = ["ALGORITHMS", "RefPixStep"]

#: Values of the ``algorithm`` parameter.
ALGORITHMS = ("refpix_reference", "border")


class RefPixStep(Step):
    """Reference-pixel correction of a `~romancal_lite.datamodels.RampModel`, in place.

    Two algorithms (``algorithm``, see ``docs/steps/refpix.md``):

    ``"refpix_reference"`` (default, romancal 1.1's): with the REFPIX reference file,
    `correct_with_refpix_reference` removes each pixel's offset over the resultants,
    each channel's linear trend in time fitted to its top/bottom reference rows, and
    the correlated read noise the REFPIX Fourier coefficients predict from the left and
    right reference columns and amp33; the offset is restored. Parameters
    ``remove_offset``, ``remove_trends``, ``cosine_interpolate`` and
    ``fft_interpolate`` are romancal's. If no REFPIX reference applies (N/A), or the
    read-out is not made of whole 128-column channels, the ``"border"`` algorithm is
    used instead, with a warning.

    ``"border"`` (needs no reference file): per resultant, optional amp33 row common
    mode, per-channel offsets from the top and bottom reference rows (odd and even
    columns apart by default), then the smoothed row signal of the side reference
    columns that ``pixeldq`` flags; only the change of these estimates from
    resultant to resultant is subtracted (`correct_reference_pixels`). Its
    parameters are ``odd_even_columns``, ``use_side_ref_pixels``,
    ``side_smoothing_length``, ``side_gain`` and ``use_amp33``.
    """

    class_alias = "refpix"
    reference_file_types = ("refpix",)
    model_type = datamodels.RampModel

    algorithm = Param(
        str,
        "refpix_reference",
        "refpix_reference: romancal 1.1's correction with the REFPIX reference (the"
        " border algorithm if none applies); border: the reference-free algorithm",
        choices=ALGORITHMS,
    )
    remove_offset = Param(
        bool, True, "refpix_reference: remove each pixel's offset first, restore it after"
    )
    remove_trends = Param(
        bool, True, "refpix_reference: remove each channel's linear trend in time"
    )
    cosine_interpolate = Param(
        bool, True, "refpix_reference: cosine-interpolate the missing amp33 samples"
    )
    fft_interpolate = Param(
        bool, True, "refpix_reference: FFT-interpolate the amp33 line-pause samples"
    )
    odd_even_columns = Param(
        bool, True, "border: estimate the channel offsets separately for odd and even columns"
    )
    use_side_ref_pixels = Param(
        bool, True, "border: remove the row-correlated signal of the left/right reference columns"
    )
    side_smoothing_length = Param(
        int, 11, "border: height in rows of the running median of the side reference signal",
        minimum=1,
    )
    side_gain = Param(
        float, 1.0, "border: factor applied to the side reference signal before it is subtracted",
        minimum=0.0,
    )
    use_amp33 = Param(
        bool, False, "border: remove the row common mode measured by the amp33 reference output"
    )

    def selects_references(self) -> bool:
        """Return whether a run selects a reference (not with ``algorithm="border"``).

        Returns
        -------
        bool
            False for the border algorithm, which reads no reference file.
        """
        if self.algorithm == "border":
            return False
        return super().selects_references()

    def process(self, model: Any) -> Any:
        """Correct ``model.data`` in place and return the model.

        Parameters
        ----------
        model : RampModel
            Ramp with ``data``, ``pixeldq`` (REFERENCE_PIXEL / BAD_REF_PIXEL flags set
            by ``dq_init``) and ``amp33``.

        Returns
        -------
        RampModel
            The same model, corrected.

        Raises
        ------
        InputFileError
            If the model has no ``data``/``pixeldq`` or their shapes do not fit.
        ReferenceFileError
            If the REFPIX reference does not fit the data.
        """
        try:
            writable_contiguous(model, "data")
            data = model.data
            pixeldq = model.pixeldq
        except (AttributeError, KeyError) as exc:
            raise InputFileError(
                f"refpix needs a ramp with data and pixeldq, got {type(model).__name__}"
            ) from exc
        if self.algorithm == "refpix_reference":
            if data.ndim == 3 and data.shape[-1] % CHANNEL_WIDTH:
                self.log.warning(
                    "The read-out is %d columns wide, not whole %d-column channels: the"
                    " REFPIX reference cannot apply, the border algorithm is used",
                    data.shape[-1], CHANNEL_WIDTH,
                )
            else:
                ref = self.open_reference(model, "refpix", expected_shape=data.shape[-2:])
                if ref is not None:
                    with ref:
                        self._correct_with_reference(model, ref)
                    return model
                self.log.warning(
                    "No REFPIX reference applies: the border algorithm (no reference"
                    " file) is used instead"
                )
        return self._correct_border(model, data, pixeldq)

    def _correct_with_reference(self, model: Any, ref: Any) -> None:
        """Run `correct_with_refpix_reference` and write amp33 / side columns back."""
        try:
            writable_contiguous(model, "amp33")
            amp33 = model.amp33
        except (AttributeError, KeyError) as exc:
            raise InputFileError("refpix needs the ramp's amp33 array") from exc
        try:
            # amp33 is rewritten in place as the correction leaves it, as romancal 1.1
            # does (StandardView.update: its absolute value in its integer type)
            _, report = correct_with_refpix_reference(
                model.data,
                model.pixeldq,
                amp33,
                ref.gamma,
                ref.zeta,
                ref.alpha,
                remove_offset=self.remove_offset,
                remove_trends=self.remove_trends,
                cosine_interpolate=self.cosine_interpolate,
                fft_interpolate=self.fft_interpolate,
                amp33_out=amp33 if isinstance(amp33, np.ndarray) else None,
            )
        except CoefficientError as exc:
            raise ReferenceFileError(f"refpix: the REFPIX reference does not fit: {exc}") from exc
        except ValueError as exc:
            raise InputFileError(f"refpix cannot correct this ramp: {exc}") from exc
        # and the corrected side reference columns
        model.border_ref_pix_left = model.data[:, :, :BORDER].copy()
        model.border_ref_pix_right = model.data[:, :, -BORDER:].copy()

        if report.bad_reference_pixels:
            self.log.info(
                "%d BAD_REF_PIXEL pixels set to 0 before the correction",
                report.bad_reference_pixels,
            )
        if report.trends_not_fitted:
            self.log.warning(
                "%d (resultant, channel) pairs have no non-zero top/bottom reference"
                " sample: no trend removed there",
                report.trends_not_fitted,
            )
        if report.coefficients_used:
            self.log.info(
                "REFPIX correction with %s coefficients", "/".join(report.coefficients_used)
            )
        else:
            self.log.warning(
                "The REFPIX coefficients are all zero: only offsets and trends were"
                " processed, no correlated noise removed"
            )

    def _correct_border(self, model: Any, data: np.ndarray, pixeldq: np.ndarray) -> Any:
        """Run the reference-free algorithm, `correct_reference_pixels`."""
        amp33 = model.amp33 if self.use_amp33 else None
        try:
            report = correct_reference_pixels(
                data,
                pixeldq,
                amp33,
                odd_even_columns=self.odd_even_columns,
                use_side_ref_pixels=self.use_side_ref_pixels,
                side_smoothing_length=self.side_smoothing_length,
                side_gain=self.side_gain,
                use_amp33=self.use_amp33,
            )
        except ValueError as exc:
            raise InputFileError(f"refpix cannot correct this ramp: {exc}") from exc

        if data.shape[0] < 2:
            self.log.info(
                "One resultant: no change between resultants to remove; data unchanged"
            )
        if report.uncorrected:
            channels = sorted({c for _, c in report.uncorrected})
            self.log.warning(
                "No usable top/bottom reference pixels in %d (resultant, channel) pairs;"
                " channels %s left without an offset correction there",
                len(report.uncorrected),
                channels,
            )
        if self.use_side_ref_pixels:
            if report.sides:
                self.log.info("Side reference columns used: %s", ", ".join(report.sides))
            else:
                self.log.info(
                    "No usable side reference columns in pixeldq; row-correlated"
                    " correction skipped"
                )
        if self.use_amp33 and not report.amp33_used:
            self.log.warning("amp33 holds only zeros; amp33 correction skipped")
        return model
