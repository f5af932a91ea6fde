"""The ``source_catalog`` step: detect sources, measure them, write ``_cat`` and ``_segm``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from romancal_lite import datamodels
from romancal_lite.errors import InputFileError, OutputError, ReferenceFileError
from romancal_lite.references import NOT_APPLICABLE
from romancal_lite.stpipe import Param, Step

from .catalog import CatalogResult, make_source_catalog, write_parquet
from .psf import EPSFGrid, adjust_jitter

__all__ = ["SourceCatalogStep", "catalog_file_meta"]


#: Guide-star jitter keys and romancal's defaults (mas, mas, deg).
_JITTER_DEFAULTS = (("jitter_major", 8.0), ("jitter_minor", 8.0),
                    ("jitter_position_angle", 0.0))


def _get(node: Any, key: str, default: Any) -> Any:
    """Return ``node[key]`` (mapping or attribute), or ``default`` if absent or None."""
    if node is None:
        return default
    try:
        value = node[key]
    except (KeyError, TypeError, AttributeError, IndexError):
        value = getattr(node, key, None)
    return default if value is None else value


def _is_mosaic(model: Any) -> bool:
    return isinstance(model, datamodels.MosaicModel)


def _segmentation_class(model: Any) -> type:
    """Return the ``_segm`` model class of an image (``segmentation_map``) or a mosaic."""
    if _is_mosaic(model):
        return datamodels.MosaicSegmentationMapModel
    return datamodels.SegmentationMapModel


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

    With ``fit_psf`` (the default) the EPSF reference of the detector and optical
    element is selected (``override_epsf`` wins; ``meta.ref_file.epsf`` records it)
    and every source is PSF-fit (`.psf.fit_psf_photometry`), adding romancal's
    ``x_psf ... psf_gof`` columns; an EPSF of "N/A" skips the fit with a warning.
    The APCORR reference (``override_apcorr``) gives ``is_extended``.
    """

    class_alias = "source_catalog"
    model_type = datamodels.ImageModel
    reference_file_types = ("epsf", "apcorr")
    # a dozen fresh full-size images: ordinary pages (1.2 s vs 2.0 s on a full frame)
    huge_pages = False
    suffix = Param(str, "cat", "Suffix of the catalog file name (the map gets 'segm')")

    bkg_boxsize = Param(int, 1000, "Background mesh box size in pixels", minimum=1)
    kernel_fwhm = Param(float, 2.0, "FWHM (pixels) of the Gaussian detection kernel",
                        minimum=0.01)
    snr_threshold = Param(float, 3.0, "Per-pixel SNR threshold above the background")
    npixels = Param(int, 25, "Minimum number of connected pixels of a source", minimum=1)
    deblend = Param(bool, False, "Deblend overlapping sources")
    fit_psf = Param(bool, True, "Fit the EPSF to every source (the PSF columns)")

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
        ReferenceFileError
            If a selected or overriding EPSF/APCORR file is unusable.
        """
        psf = self._epsf(model) if self.fit_psf else None
        encircled_energy = self._encircled_energy(model)
        wcs = _meta_value(model, "wcs")
        try:
            result = make_source_catalog(
                model.data,
                model.err,
                getattr(model, "dq", None),
                wcs=wcs if callable(wcs) else None,
                # a mosaic is already in MJy/sr (romancal: no conversion for L3)
                conversion_megajanskys=1.0 if _is_mosaic(model) else _meta_value(
                    model, "photometry.conversion_megajanskys"
                ),
                pixel_area=_meta_value(model, "photometry.pixel_area"),
                bkg_boxsize=self.bkg_boxsize,
                kernel_fwhm=self.kernel_fwhm,
                snr_threshold=self.snr_threshold,
                npixels=self.npixels,
                deblend=self.deblend,
                psf=psf,
                encircled_energy=encircled_energy,
            )
        except ValueError as exc:
            raise InputFileError(f"source_catalog cannot measure this image: {exc}") from exc
        for note in result.notes:
            self.log.warning(note)
        if result.reason:
            self.log.warning("Empty source catalog: %s", result.reason)
        else:
            self.log.info("Detected %d sources", len(result.table))
            if psf is not None:
                flags = result.table["psf_flags"]
                self.log.info("PSF fit: %d sources, %d with psf_flags != 0",
                              len(flags), int((flags != 0).sum()))
        self.catalog = result
        self.segmentation_model = _segmentation_class(model).from_model(
            model, data=result.segmentation
        )
        return model

    # ------------------------------------------------------------------ references

    def needed_reference_types(self) -> list[str]:
        """Return the reference types a run would select (not overridden).

        Returns
        -------
        list of str
            ``apcorr`` (``is_extended``) and, with ``fit_psf``, ``epsf``, unless given
            as ``override_<reftype>``.
        """
        types = [r for r in self.reference_file_types if r != "epsf" or self.fit_psf]
        return [r for r in types if self.get_override(r) is None]

    def selects_references(self) -> bool:
        """Return whether a run would select a reference file (see `needed_reference_types`).

        Returns
        -------
        bool
            True if not skipped and a needed type is not overridden.
        """
        return not self.skip and bool(self.needed_reference_types())

    def _reference_node(self, model: Any, reftype: str) -> tuple[str, Any] | None:
        """Select (or take the override of) ``reftype``; return (path, checked opener).

        romancal_lite.datamodels has no EPSF/APCORR model, so the file is read with
        `romancal_lite.references.open_checked_reference_tree` (the same safe reader
        and checks, one read of the file) instead of `open_reference`; selection,
        overrides and provenance are the Step's.
        """
        path = self.get_reference_file(model, reftype)
        if path == NOT_APPLICABLE:
            return None
        from romancal_lite.references import open_checked_reference_tree

        def opener(ref_path: str) -> Any:
            return open_checked_reference_tree(ref_path, reftype, model, expected_shape=None)

        return path, opener

    def _epsf(self, model: Any) -> EPSFGrid | None:
        """Return the ePSF of the EPSF reference (jitter adjusted as romancal), or None."""
        found = self._reference_node(model, "epsf")
        if found is None:
            self.log.warning("No EPSF reference applies: no PSF photometry, no PSF columns")
            return None
        path, opener = found
        with opener(path) as node:
            meta = node["meta"]
            psf = np.asarray(node["psf"][:1], dtype=np.float64)
            info = SimpleNamespace(
                oversample=int(meta["oversample"]),
                pixel_x=[float(v) for v in meta["pixel_x"]],
                pixel_y=[float(v) for v in meta["pixel_y"]],
            )
            ref_jitter = tuple(float(meta.get(k, d)) for k, d in _JITTER_DEFAULTS)
            if meta.get("pedigree"):
                self._pedigrees[path] = str(meta["pedigree"])
        guide = _meta_value(model, "guide_star")
        image_jitter = tuple(
            float(_get(guide, k, d)) for k, d in _JITTER_DEFAULTS
        )
        psf = adjust_jitter(psf, ref_jitter, image_jitter, info.oversample)
        try:
            return EPSFGrid.from_reference(SimpleNamespace(meta=info, psf=psf))
        except ValueError as exc:
            raise ReferenceFileError(f"{Path(path).name}: unusable EPSF: {exc}") from None

    def _encircled_energy(self, model: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """Return ``(ee_radii, ee_fractions)`` of the image's element from APCORR, or None."""
        found = self._reference_node(model, "apcorr")
        element = str(_meta_value(model, "instrument.optical_element"))
        if found is None:
            self.log.warning("No APCORR reference applies: is_extended is False")
            return None
        path, opener = found
        with opener(path) as node:
            entry = _get(node["data"], element, None)
            radii = _get(entry, "ee_radii", None)
            fractions = _get(entry, "ee_fractions", None)
            if node["meta"].get("pedigree"):
                self._pedigrees[path] = str(node["meta"]["pedigree"])
            if radii is None or fractions is None:
                self.log.warning("%s has no encircled energy for %s: is_extended is False",
                                 Path(path).name, element)
                return None
            radii = np.asarray(radii, dtype=np.float64)
            fractions = np.asarray(fractions, dtype=np.float64)
        if radii.shape != fractions.shape or radii.size < 4:
            raise ReferenceFileError(
                f"{Path(path).name}: {element} ee_radii and ee_fractions must be matching"
                " tables of at least 4 values"
            )
        return radii, fractions

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
        # the image's metadata as it is now (references used, an aligned WCS's S_REGION)
        self.segmentation_model = _segmentation_class(model).from_model(
            model, data=self.segmentation_model.data
        )
        flat = catalog_file_meta(self.segmentation_model, cat_path.name)
        if _is_mosaic(model):
            flat["roman.meta.model_type"] = "MosaicSourceCatalogModel"
        try:
            write_parquet(self.catalog.table, cat_path, flat)
            # lz4 (as roman_datamodels writes its files): the map is mostly zeros,
            # 67 MB -> 0.5 MB on a full frame, and faster to write than raw
            self.segmentation_model.save(segm_path, all_array_compression="lz4")
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        self.log.info("Saved %s and %s", cat_path, segm_path)


def catalog_file_meta(segmentation: Any, filename: str) -> dict[str, Any]:
    """Return the flat ``roman.meta.*`` metadata of a ``_cat.parquet`` file.

    As roman_datamodels' ``ImageSourceCatalogModel.to_parquet`` writes it: the RAD
    ``l2_catalog_common`` keys of the image and ``meta.image`` (the image's file name
    and date), which the segmentation map carries too, with the catalog's own
    ``filename``, ``file_date`` (now) and ``model_type``.

    Parameters
    ----------
    segmentation : SegmentationMapModel
        The map made from the image (its metadata is the catalog's).
    filename : str
        The catalog's file name.

    Returns
    -------
    dict
        ``roman.meta.<dotted key>`` -> value.
    """
    from astropy.time import Time

    flat = {
        key: value
        for key, value in segmentation.to_flat_dict(include_arrays=False).items()
        if key.startswith("roman.meta.")
    }
    flat["roman.meta.filename"] = filename
    flat["roman.meta.file_date"] = Time.now()
    flat["roman.meta.model_type"] = "ImageSourceCatalogModel"
    return flat
