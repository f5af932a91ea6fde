"""The ``assign_wcs`` step: attach the gwcs built from pointing and DISTORTION."""

from __future__ import annotations

from typing import Any

from astropy.modeling import Model

from romancal_lite import datamodels
from romancal_lite.errors import InputFileError, ReferenceFileError
from romancal_lite.stpipe import Param, Step

from .assign_wcs import build_wcs, compute_footprint, pointing_from_wcsinfo, s_region_polygon

__all__ = ["AssignWcsStep"]


class AssignWcsStep(Step):
    """Attach a gwcs (``detector`` -> ``v2v3`` -> ``v2v3vacorr`` -> ``world``) to an image.

    The DISTORTION reference gives ``detector`` -> ``v2v3``; ``meta.wcsinfo``
    (``ra_ref``, ``dec_ref``, ``roll_ref``, ``v2_ref``, ``v3_ref``) and
    ``meta.velocity_aberration.scale_factor`` give the rest (see `build_wcs`). The WCS
    is stored as ``meta.wcs`` and its footprint as ``meta.wcsinfo.s_region``. No
    fitting is done (seeds/000:1563). A DISTORTION reference of ``"N/A"`` leaves the
    model without a WCS and records ``meta.cal_step.assign_wcs = "SKIPPED"``.
    """

    class_alias = "assign_wcs"
    reference_file_types = ("distortion",)
    suffix = Param(str, "assignwcs", "Suffix of the output file name")
    model_type = datamodels.ImageModel

    def process(self, model: Any) -> Any:
        """Build the WCS and record it in the model's metadata.

        Parameters
        ----------
        model : ImageModel
            Level 2 image with ``meta.wcsinfo`` filled.

        Returns
        -------
        ImageModel
            The same model with ``meta.wcs`` and ``meta.wcsinfo.s_region`` set.

        Raises
        ------
        InputFileError
            If ``meta.wcsinfo`` lacks a valid reference point.
        ReferenceFileError
            If the DISTORTION reference does not fit or has no usable transform.
        """
        ref = self.open_reference(model, "distortion")
        if ref is None:
            # before the pointing is looked at: without a reference there is no WCS to build
            self.mark_skipped("No DISTORTION reference file applies; no WCS assigned")
            return model
        with ref:
            try:
                pointing = pointing_from_wcsinfo(model.meta.wcsinfo)
            except (AttributeError, ValueError) as exc:
                raise InputFileError(f"{model!r}: cannot build a WCS: {exc}") from None
            transform = getattr(ref, "coordinate_distortion_transform", None)
            usable = isinstance(transform, Model) and transform.n_inputs == transform.n_outputs == 2
            if not usable:
                raise ReferenceFileError(
                    f"{ref!r}: DISTORTION reference has no 2-D coordinate_distortion_transform"
                )
        va_scale = model.meta.get("velocity_aberration", {}).get("scale_factor")
        wcs = build_wcs(transform, pointing, model.data.shape, va_scale=va_scale)
        model.meta["wcs"] = wcs
        region = s_region_polygon(compute_footprint(wcs, model.data.shape))
        if region is None:
            self.log.warning("The footprint has non-finite corners; S_REGION not updated")
        else:
            model.meta.wcsinfo["s_region"] = region
            self.log.info("S_REGION: %s", region)
        return model

