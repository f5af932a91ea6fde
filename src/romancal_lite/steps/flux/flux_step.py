"""The ``flux`` step: DN/s -> MJy/sr on one image or every image of a library."""

from __future__ import annotations

from typing import Any

from romancal_lite import datamodels
from romancal_lite.stpipe import Step

from .._library import SavesMembers, as_library, is_many, product_name
from .flux import apply_flux_correction, flux_scales

__all__ = ["FluxStep"]


class FluxStep(SavesMembers, Step):
    """Convert images from DN/s to MJy/sr (``data``, ``err`` and the variances).

    One image gives one image; an association, a list or a `ModelLibrary` gives the
    library, each member converted: the conversion is recorded in the member's
    metadata (``cal_step.flux``) and the library multiplies the arrays when a later
    step or the save reads them (`ModelLibrary.shelve` ``scale=``), so nothing is
    rewritten and the input file is never written. An
    image already converted (``meta.cal_step.flux == "COMPLETE"``) is left alone.
    No parameters and no reference files (romancal 1.1 ``FluxStep``).
    """

    class_alias = "flux"
    model_type = datamodels.ImageModel
    accepts_many = True

    def open_input(self, input: Any) -> Any:  # noqa: A002
        """Open one image, or make a library of several.

        Parameters
        ----------
        input : str, path-like, model, list, Association or ModelLibrary
            The image(s).

        Returns
        -------
        ImageModel or ModelLibrary
            The opened input.
        """
        if is_many(input):
            library = as_library(input)
            if self.parent is None and not self._input_name:
                self._input_name = product_name(library)
            return library
        return super().open_input(input)

    def process(self, model: Any) -> Any:
        """Convert the image or every image of the library.

        Parameters
        ----------
        model : ImageModel or ModelLibrary
            The input.

        Returns
        -------
        ImageModel or ModelLibrary
            The same object, converted.
        """
        if not isinstance(model, datamodels.ModelLibrary):
            self._convert(model)
            return model
        with model:
            for index in range(len(model)):
                image = model.borrow(index)
                if not model.on_disk:  # models in memory: converted in place
                    try:
                        changed = self._convert(image)
                    except BaseException:
                        model.shelve(image, index, modify=False)
                        raise
                    model.shelve(image, index, modify=changed)
                    continue
                try:
                    scales = self._scales(image)
                except BaseException:
                    model.shelve(image, index, modify=False)
                    raise
                if not scales:
                    model.shelve(image, index, modify=False)
                    continue
                # recorded, not applied: the library multiplies the arrays as later
                # steps (or save) read them, so no member is rewritten here
                image.meta.cal_step["flux"] = "COMPLETE"
                model.shelve(image, index, modify="meta", scale=scales)
        return model

    def _scales(self, image: Any) -> dict[str, float]:
        name = image.meta.get("filename") or "image"
        scales = flux_scales(image)
        if scales:
            self.log.info("%s: DN/s -> MJy/sr (x %.6g)", name, scales["data"])
        else:
            self.log.info("%s: already in MJy/sr (cal_step.flux COMPLETE); unchanged", name)
        return scales

    def _convert(self, image: Any) -> bool:
        name = image.meta.get("filename") or "image"
        if apply_flux_correction(image):
            factor = image.meta.photometry.conversion_megajanskys
            self.log.info("%s: DN/s -> MJy/sr (x %.6g)", name, factor)
            return True
        self.log.info("%s: already in MJy/sr (cal_step.flux COMPLETE); unchanged", name)
        return False
