"""The ``ramp_fit`` step (seeds/000:1152-1332, 1479-1505)."""

from __future__ import annotations

from typing import Any

import numpy as np

import romancore
from romancal_lite import datamodels
from romancal_lite.errors import ReferenceFileError
from romancal_lite.steps._arrays import writable_contiguous
from romancal_lite.stpipe import Param, Step

from .fitting import fit_exposure, fit_exposure_likely

__all__ = ["RampFitStep", "image_from_ramp"]


class RampFitStep(Step):
    """Fit a count rate to every pixel's ramp: a ``RampModel`` becomes an ``ImageModel``.

    The resultants are converted to electrons with the GAIN reference, fitted with the
    Casertano et al. (2022) optimal weights and the queue-based jump detection inside
    the fit (`romancore.fit_ramps`; read noise from the READNOISE reference), and
    converted back to DN/s. The image is the science array (4-pixel reference border
    trimmed, 4088 x 4088 for a full detector); ``err = sqrt(var_poisson + var_rnoise)``;
    see `fit_exposure` for the DQ. The reference border and ``amp33`` are carried over.

    With ``algorithm='likely'`` the fit is romancal 1.1's default, the likelihood fit of
    Brandt (2024) with its chi^2 jump detection (`romancore.fit_ramps_likely`, threshold
    ``rejection_threshold`` sigma; `fit_exposure_likely`); the image then also carries
    ``chisq``. The Casertano fit stays our default for now. ``jump_test='step'``
    replaces romancal's omission test by our step test (`romancore.fit_ramps_likely`,
    ``docs/romancore.md``: fewer false jumps, a threshold set per read pattern for
    1e-6 false positives per pixel). ``neighbor_pass`` adds a second search of the
    neighbours of detected jumps at their time and a lower threshold (either test).
    """

    class_alias = "ramp_fit"
    reference_file_types = ("readnoise", "gain")
    model_type = datamodels.RampModel
    suffix = Param(str, "rampfit", "Suffix of the output file name")
    algorithm = Param(
        str, "ols_cas22",
        "Ramp-fitting algorithm: 'ols_cas22' (Casertano 2022) or 'likely' (Brandt 2024)",
        choices=("ols_cas22", "likely"),
    )
    rejection_threshold = Param(
        float, 4.5, "Jump threshold in sigma of the likelihood fit ('likely' only)", minimum=0
    )
    jump_test = Param(
        str, "omission",
        "Jump test of the likelihood fit: 'omission' (romancal's chi^2 test) or 'step' "
        "(one-sided step test per read, set for 1e-6 false positives per pixel)",
        choices=("omission", "step"),
    )
    step_threshold = Param(
        float, None, "Threshold in sigma of the step test (None: from the read pattern)",
        minimum=0.1,
    )
    neighbor_pass = Param(
        bool, False,
        "Likelihood fit: search the 8 neighbours of every detected jump again, at its "
        "time and a lower threshold (set for 1e-5 false positives per searched pixel)",
    )
    neighbor_threshold = Param(
        float, None, "Threshold in sigma of the neighbour pass (None: from the read pattern)",
        minimum=0.1,
    )
    use_ramp_jump_detection = Param(bool, True, "Detect jumps inside the ramp fit")
    threshold_intercept = Param(
        float, None, "Intercept of the jump threshold (None: 5.5)"
    )
    threshold_constant = Param(
        float, None, "Slope of the jump threshold in log10(rate) (None: 1/3)"
    )
    block_rows = Param(int, 256, "Rows fitted at a time (bounds temporary memory)", minimum=1)

    #: Set by a pipeline that owns the ramp and drops it after this step: the cube's
    #: memory is then returned row block by row block as it is fitted (the input's
    #: ``data`` and ``groupdq`` read as zeros afterwards). Never set for a user's ramp.
    release_input: bool = False

    def process(self, model: Any) -> Any:
        """Fit ``model``'s ramps.

        Parameters
        ----------
        model : RampModel
            Ramp in DN (after saturation, refpix and linearity); JUMP_DET is set in its
            ``groupdq``.

        Returns
        -------
        ImageModel
            The count-rate image, DN/s.
        """
        shape = model.data.shape[1:]
        refs = {t: self.open_reference(model, t, shape) for t in ("readnoise", "gain")}
        missing = [t.upper() for t, ref in refs.items() if ref is None]
        if missing:
            for ref in refs.values():
                if ref is not None:
                    ref.close()
            raise ReferenceFileError(f"ramp_fit needs a {' and '.join(missing)} reference")
        with refs["readnoise"] as rn_ref, refs["gain"] as gain_ref:
            writable_contiguous(model, "groupdq")
            if self.algorithm == "likely":
                return self._fit_likely(model, rn_ref, gain_ref)
            intercept = 5.5 if self.threshold_intercept is None else self.threshold_intercept
            constant = 1.0 / 3.0 if self.threshold_constant is None else self.threshold_constant
            self.log.info(
                "Jump detection in the fit %s (threshold %g - %g log10(rate))",
                "on" if self.use_ramp_jump_detection else "off",
                intercept,
                constant,
            )
            arrays = fit_exposure(
                model.data,
                model.groupdq,
                model.pixeldq,
                gain_ref.data,
                rn_ref.data,
                datamodels.read_pattern(model),
                datamodels.frame_time(model),
                use_jump=self.use_ramp_jump_detection,
                threshold_intercept=intercept,
                threshold_constant=constant,
                block_rows=self.block_rows,
                release_input=self.release_input,
            )
        return image_from_ramp(model, arrays._asdict())

    def _fit_likely(self, model: Any, rn_ref: Any, gain_ref: Any) -> Any:
        """Fit with the likelihood algorithm (romancal 1.1's ``algorithm='likely'``)."""
        on = "on" if self.use_ramp_jump_detection else "off"
        pattern = datamodels.read_pattern(model)
        step_threshold = None
        if self.jump_test == "step":
            step_threshold = self.step_threshold
            if step_threshold is None:
                step_threshold = romancore.step_threshold_for(
                    pattern, datamodels.frame_time(model))
            self.log.info(
                "Likelihood ramp fit (Brandt 2024), jump detection %s "
                "(step test, threshold %.4g sigma)", on, step_threshold,
            )
        else:
            one, two = romancore.likely_thresholds(self.rejection_threshold)
            self.log.info(
                "Likelihood ramp fit (Brandt 2024), jump detection %s "
                "(chi^2 thresholds %.4g for one difference, %.4g for two)", on, one, two,
            )
        neighbor_threshold = None
        if self.neighbor_pass and self.use_ramp_jump_detection:
            neighbor_threshold = self.neighbor_threshold
            if neighbor_threshold is None:
                neighbor_threshold = romancore.neighbor_threshold_for(
                    pattern, datamodels.frame_time(model))
            self.log.info("Neighbour pass on, threshold %.4g sigma", neighbor_threshold)
        arrays = fit_exposure_likely(
            model.data,
            model.groupdq,
            model.pixeldq,
            gain_ref.data,
            rn_ref.data,
            pattern,
            datamodels.frame_time(model),
            use_jump=self.use_ramp_jump_detection,
            rejection_threshold=self.rejection_threshold,
            jump_test=self.jump_test,
            step_threshold=step_threshold,
            neighbor_pass=self.neighbor_pass,
            neighbor_threshold=neighbor_threshold,
            block_rows=self.block_rows,
            release_input=self.release_input,
        )
        return image_from_ramp(model, arrays)


def image_from_ramp(ramp: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Build the level-2 ``ImageModel`` of a ramp from science-array images.

    Parameters
    ----------
    ramp : RampModel
        Source of the metadata, ``amp33`` and the border reference arrays.
    arrays : dict
        ``slope`` (-> ``data``), ``dq``, ``err``, ``var_poisson``, ``var_rnoise`` and
        optionally ``dumo`` / ``chisq`` (zeros if absent), all of the trimmed shape.

    Returns
    -------
    ImageModel
        The image; ``meta.product_type = "l2"``.
    """
    data = arrays["slope"]
    zeros = np.zeros(data.shape, np.float32)
    image = datamodels.ImageModel.from_model(
        ramp,
        data=data,
        dq=arrays["dq"],
        err=arrays["err"],
        var_poisson=arrays["var_poisson"],
        var_rnoise=arrays["var_rnoise"],
        chisq=arrays.get("chisq", zeros),
        dumo=arrays.get("dumo", zeros),
        amp33=ramp.amp33,
        **{name: getattr(ramp, name) for name in _BORDER_NAMES if name in ramp},
    )
    image.meta.product_type = "l2"
    return image


_BORDER_NAMES = tuple(
    f"{prefix}border_ref_pix_{side}"
    for prefix in ("", "dq_")
    for side in ("left", "right", "top", "bottom")
)
