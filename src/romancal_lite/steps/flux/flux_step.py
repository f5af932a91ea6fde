"""The ``flux`` step: DN/s -> MJy/sr on one image or every image of a library."""

from __future__ import annotations

from typing import Any

from romancal_lite import datamodels
from romancal_lite.stpipe import Step

from .._library import SavesMembers, as_library, is_many, product_name
from .flux import apply_flux_correction

__all__ = ["FluxStep"]


class FluxStep(SavesMembers, Step):
    """Convert images from DN/s to MJy/sr (``data``, ``err`` and the variances).

    One image gives one image; an association, a list or a `ModelLibrary` gives the
    library, each member converted (shelved with ``modify=True``: on disk it is
    written to the library's temporary directory, never over the input file). An
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
                try:
                    changed = self._convert(image)
                except BaseException:
                    model.shelve(image, index, modify=False)
                    raise
                model.shelve(image, index, modify=changed)
        return model

    def _convert(self, image: Any) -> bool:
        name = image.meta.get("filename") or "image"
        if apply_flux_correction(image):
            factor = image.meta.photometry.conversion_megajanskys
            self.log.info("%s: DN/s -> MJy/sr (x %.6g)", name, factor)
            return True
        self.log.info("%s: already in MJy/sr (cal_step.flux COMPLETE); unchanged", name)
        return False
