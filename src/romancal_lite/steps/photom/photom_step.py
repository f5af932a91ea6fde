"""The ``photom`` step: record the flux calibration of the exposure's optical element."""

from __future__ import annotations

from typing import Any

from romancal_lite import datamodels
from romancal_lite.errors import ReferenceFileError
from romancal_lite.stpipe import Step

from .photom import select_photometry

__all__ = ["PhotomStep"]


class PhotomStep(Step):
    """Fill ``meta.photometry`` from the PHOTOM reference; pixel values are unchanged.

    The entry of ``meta.instrument.optical_element`` in the reference's ``phot_table``
    gives ``conversion_megajanskys`` (MJy/sr per DN/s), its uncertainty and the nominal
    ``pixel_area`` (sr); see `select_photometry`. The data stay in DN/s. A PHOTOM
    reference of ``"N/A"``, or a table without the element, leaves ``meta.photometry``
    unchanged and records ``meta.cal_step.photom = "SKIPPED"``.
    """

    class_alias = "photom"
    reference_file_types = ("photom",)
    model_type = datamodels.ImageModel

    def process(self, model: Any) -> Any:
        """Copy the element's photometric calibration into ``meta.photometry``.

        Parameters
        ----------
        model : ImageModel
            Level 2 image.

        Returns
        -------
        ImageModel
            The same model with ``meta.photometry`` filled.

        Raises
        ------
        ReferenceFileError
            If the reference has no ``phot_table`` or a malformed entry.
        """
        ref = self.open_reference(model, "photom")
        if ref is None:
            self.mark_skipped("No PHOTOM reference file applies; photom not applied")
            return model
        element = model.meta.instrument.get("optical_element")
        with ref:
            table = getattr(ref, "phot_table", None)
            if table is None:
                raise ReferenceFileError(f"{ref!r}: PHOTOM reference has no phot_table")
            try:
                values = select_photometry(table, element)
            except ValueError as exc:
                raise ReferenceFileError(f"{ref!r}: {exc}") from None
        if values is None:
            self.mark_skipped(f"PHOTOM reference has no entry for optical element {element}")
            return model
        photometry = model.meta.get("photometry")
        if photometry is None:
            model.meta["photometry"] = photometry = {}
        for key, value in values.items():
            photometry[key] = value
        self.log.info(
            "Photometry for %s: %s MJy/sr per DN/s (+- %s), pixel area %s sr",
            element,
            values["conversion_megajanskys"],
            values["conversion_megajanskys_uncertainty"],
            values["pixel_area"],
        )
        return model

