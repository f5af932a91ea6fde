"""The ``source_catalog`` step: detect sources, measure them, write ``_cat`` and ``_segm``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from romancal_lite import datamodels
from romancal_lite.errors import InputFileError, OutputError
from romancal_lite.stpipe import Param, Step

from .catalog import CatalogResult, make_source_catalog, write_parquet

__all__ = ["SourceCatalogStep"]


def _meta_value(model: Any, dotted: str) -> Any:
    node = model.meta
    for part in dotted.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError, AttributeError):
            return None
    return node


class SourceCatalogStep(Step):
    """Build the source catalog and segmentation map of a calibrated (``_cal``) image.

    romancal 1.1's algorithm and parameters (see `make_source_catalog`): mask,
    2-D background, Gaussian-convolved detection image, segmentation above
    ``snr_threshold`` x RMS, photutils segment properties, circular-aperture and Kron
    photometry in nJy. The image is returned with ``meta.cal_step.source_catalog``
    set; the catalog and the map are kept as ``self.catalog`` (a `CatalogResult`) and
    ``self.segmentation_model`` and, when saving, written as
    ``<basename>_cat.parquet`` and ``<basename>_segm.asdf``, both or neither.

    PSF photometry (``fit_psf``) is not implemented yet: the parameter is accepted,
    one warning is logged and the PSF columns are left out.
    """

    class_alias = "source_catalog"
    model_type = datamodels.ImageModel
    suffix = Param(str, "cat", "Suffix of the catalog file name (the map gets 'segm')")

    bkg_boxsize = Param(int, 1000, "Background mesh box size in pixels", minimum=1)
    kernel_fwhm = Param(float, 2.0, "FWHM (pixels) of the Gaussian detection kernel",
                        minimum=0.01)
    snr_threshold = Param(float, 3.0, "Per-pixel SNR threshold above the background")
    npixels = Param(int, 25, "Minimum number of connected pixels of a source", minimum=1)
    deblend = Param(bool, False, "Deblend overlapping sources")
    fit_psf = Param(bool, True, "Fit PSFs (not implemented yet: a warning, no PSF columns)")

    catalog: CatalogResult | None = None
    segmentation_model: datamodels.SegmentationMapModel | None = None

    def process(self, model: Any) -> Any:
        """Detect and measure the sources of ``model``.

        Parameters
        ----------
        model : ImageModel
            Level 2 image in DN/s.

        Returns
        -------
        ImageModel
            The same model (arrays untouched).

        Raises
        ------
        InputFileError
            If the arrays do not fit together, or the image has neither a WCS nor a
            pixel area (no pixel scale for the arcsecond apertures).
        """
        if self.fit_psf:
            self.log.warning(
                "PSF photometry (fit_psf) is not implemented yet: the catalog has no PSF"
                " columns"
            )
        wcs = _meta_value(model, "wcs")
        try:
            result = make_source_catalog(
                model.data,
                model.err,
                getattr(model, "dq", None),
                wcs=wcs if callable(wcs) else None,
                conversion_megajanskys=_meta_value(model, "photometry.conversion_megajanskys"),
                pixel_area=_meta_value(model, "photometry.pixel_area"),
                bkg_boxsize=self.bkg_boxsize,
                kernel_fwhm=self.kernel_fwhm,
                snr_threshold=self.snr_threshold,
                npixels=self.npixels,
                deblend=self.deblend,
            )
        except ValueError as exc:
            raise InputFileError(f"source_catalog cannot measure this image: {exc}") from exc
        for note in result.notes:
            self.log.warning(note)
        if result.reason:
            self.log.warning("Empty source catalog: %s", result.reason)
        else:
            self.log.info("Detected %d sources", len(result.table))
        self.catalog = result
        self.segmentation_model = datamodels.SegmentationMapModel.from_model(
            model, data=result.segmentation
        )
        return model

    # ------------------------------------------------------------------ outputs

    def _output_paths(self) -> tuple[Path, Path]:
        cat = self.output_path()
        segm = cat.with_name(datamodels.filenames.replace_suffix(cat.name, "segm").name)
        return cat.with_suffix(".parquet"), segm

    def planned_outputs(self) -> list[Path]:
        """Return the catalog and segmentation-map paths when saving.

        Returns
        -------
        list of pathlib.Path
            ``<basename>_cat.parquet`` and ``<basename>_segm.asdf``, or nothing.
        """
        return list(self._output_paths()) if self.saves_result() else []

    def save(self, model: Any, path: Path) -> None:
        """Write the catalog (parquet) and the segmentation map (ASDF).

        Parameters
        ----------
        model : ImageModel
            The step's result (its metadata goes into the parquet schema metadata).
        path : pathlib.Path
            ``output_path()`` (``<basename>_cat.asdf``); the real names come from
            `planned_outputs`.

        Raises
        ------
        OutputError
            If nothing was computed or a file cannot be written.
        """
        if self.catalog is None or self.segmentation_model is None:
            raise OutputError(f"{self.name}: nothing to save (the step has not run)")
        cat_path, segm_path = self._output_paths()
        flat = {
            key: value
            for key, value in model.to_flat_dict(include_arrays=False).items()
            if key.startswith("roman.meta.") and not key.startswith("roman.meta.wcs")
        }
        try:
            write_parquet(self.catalog.table, cat_path, flat)
            self.segmentation_model.save(segm_path)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        self.log.info("Saved %s and %s", cat_path, segm_path)
