"""The mosaic pipeline ``roman_mos`` (alias ``roman_hlp``): calibrated images to a mosaic.

romancal 1.1 ``MosaicPipeline`` (downstream.md 2.1): flux -> skymatch ->
outlier_detection -> resample -> source_catalog on the coadd; the products are
``<product>_coadd.asdf``, ``<product>_cat.parquet`` and ``<product>_segm.asdf``, named
after the association's product.

The inputs stay in a `ModelLibrary` on disk: each step borrows one image at a time.
"""

from __future__ import annotations

import math
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import numpy as np

from romancal_lite import datamodels
from romancal_lite.errors import InputFileError, ReferenceFileError
from romancal_lite.steps._library import as_library, data_shape, product_name
from romancal_lite.steps.flux import FluxStep
from romancal_lite.steps.outlier_detection import OutlierDetectionStep
from romancal_lite.steps.resample import ResampleStep
from romancal_lite.steps.skymatch import SkyMatchStep
from romancal_lite.steps.source_catalog import SourceCatalogStep
from romancal_lite.steps.source_catalog.catalog import preload_dependencies
from romancal_lite.stpipe import Param, Pipeline
from romancal_lite.stpipe.naming import make_output_name

__all__ = ["HighLevelPipeline", "MosaicPipeline", "footprint_coverage"]


def footprint_coverage(library: Any) -> tuple[float, float, list[str]]:
    """Return how much of the sky region the inputs span they actually cover.

    The footprints (pixel-edge corners through each WCS, read from the metadata) are
    projected onto the plane tangent at their mean direction; the coverage is the sum
    of their areas over the area of the box (east/north) that holds them all. One
    pointing's 18 detectors cover about half of their box; exposures that overlap, more.

    Parameters
    ----------
    library : ModelLibrary
        The inputs.

    Returns
    -------
    coverage : float
        Summed footprint area over the box's area (can exceed 1 where they overlap).
    extent : float
        The box's larger side (deg).
    names : list of str
        The members' file names.
    """
    from romancal_lite.steps.skymatch.skymatch import TangentPlane, footprint_radec
    from romancal_lite.steps.skymatch.skymatch_step import _box_shape

    polygons, names = [], []
    for index in range(len(library)):
        meta = library.read_meta(index)
        wcs = meta.get("wcs")
        names.append(str(meta.get("filename") or library.members[index].path.name))
        if wcs is None:
            raise InputFileError(f"{names[-1]}: no WCS (meta.wcs): it cannot be placed on a mosaic")
        shape = _box_shape(wcs)
        if shape is None:
            with library:
                model = library.borrow(index)
                try:
                    shape = data_shape(model)
                finally:
                    library.shelve(model, index)
        polygons.append(footprint_radec(wcs, shape))
    ra = np.concatenate([p[0] for p in polygons])
    dec = np.concatenate([p[1] for p in polygons])
    try:
        plane = TangentPlane.about(ra, dec)
        points = [plane.project(r, d) for r, d in polygons]
    except ValueError:
        return 0.0, 180.0, names
    area = 0.0
    for xy in points:
        x, y = xy[:, 0], xy[:, 1]
        area += 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    every = np.concatenate(points)
    if not np.isfinite(every).all():  # a footprint beyond the plane's hemisphere
        return 0.0, 180.0, names
    width, height = np.ptp(every[:, 0]), np.ptp(every[:, 1])
    return area / max(width * height, 1e-300), math.degrees(max(width, height)), names


class MosaicPipeline(Pipeline):
    """Combine calibrated images into a mosaic and catalog it (romancal 1.1 ``roman_mos``).

    Input: an association (``*_asn.json``, see ``romancal-lite asn``), a list of
    ``_cal`` files, or a `ModelLibrary`. Steps: ``flux`` (DN/s -> MJy/sr),
    ``skymatch`` (sky levels, recorded), ``outlier_detection`` (cosmic rays and other
    outliers flagged in the inputs), ``resample`` (the ``_coadd`` mosaic) and
    ``source_catalog`` on the mosaic. Saved
    (``save_results``, default on the command line): ``<product>_coadd.asdf``,
    ``<product>_cat.parquet`` and ``<product>_segm.asdf``. Every step takes its
    parameters with ``--steps.<step>.<param>``; ``--steps.<step>.skip``.
    """

    class_alias = "roman_mos"
    suffix = Param(str, "coadd", "Suffix of the mosaic file name")
    min_coverage = Param(
        float, 0.01, "Refuse inputs whose footprints cover less than this fraction of the "
        "sky box they span (far-apart inputs: a huge, empty grid); 0: never", minimum=0.0,
    )
    step_defs = {
        "flux": FluxStep,
        "skymatch": SkyMatchStep,
        "outlier_detection": OutlierDetectionStep,
        "resample": ResampleStep,
        "source_catalog": SourceCatalogStep,
    }
    accepts_many = True

    def open_input(self, input: Any) -> Any:  # noqa: A002
        """Return the input as a `ModelLibrary` (on disk), named after its product.

        Parameters
        ----------
        input : path, association, list, model or ModelLibrary
            The calibrated images.

        Returns
        -------
        ModelLibrary
            The library.
        """
        library = as_library(input)
        if self.parent is None:
            self._input_name = product_name(library)
        return library

    def process(self, model: Any) -> Any:
        """Run flux, skymatch, outlier_detection, resample and source_catalog.

        Parameters
        ----------
        model : ModelLibrary
            The images.

        Returns
        -------
        MosaicModel
            The mosaic (its catalog is ``self.source_catalog.catalog``).
        """
        library = model
        if not self.source_catalog.skip:
            # the catalog's libraries are imported while the other steps run
            preload_dependencies()
        self.log.info("Mosaic of %d images: product %s", len(library), self._input_name)
        if self.min_coverage > 0 and len(library) > 1:
            self._check_coverage(library)
        library = self.flux.run(library)
        # outlier_detection's pixel maps are computed while skymatch runs
        pixel_maps = self.outlier_detection.start_pixel_maps(library)
        try:
            library = self.skymatch.run(library)
        except BaseException:
            for future in pixel_maps:  # those not started (the one running ends)
                future.cancel()
            raise
        finally:
            wait(pixel_maps)  # (an error of its own: the step computes the map)
        library = self.outlier_detection.run(library)
        mosaic = self.resample.run(library)
        mosaic.meta.filename = make_output_name(self._input_name or "mosaic", self.suffix)
        if not self.source_catalog.skip:
            self.source_catalog.run(mosaic)
        return mosaic

    def resolve_reference_source(self, model: Any) -> Any:
        """Decide where ``source_catalog``'s references come from: the first input's origin.

        The inputs are ``_cal`` images: their source is that of the first one (the
        user's CRDS, or the generated references it was calibrated with, see
        `romancal_lite.references.reference_source`). Only ``source_catalog`` selects
        references here, so the error says how to do without.

        Parameters
        ----------
        model : ModelLibrary or DataModel
            The inputs.

        Returns
        -------
        romancal_lite.references.ReferenceSource
            The source.

        Raises
        ------
        ReferenceFileError
            If no source applies.
        """
        if not isinstance(model, datamodels.ModelLibrary) or len(model) == 0:
            return super().resolve_reference_source(model)
        with model:
            first = model.borrow(0)  # the metadata and the file's records; no arrays
            try:
                return super().resolve_reference_source(first)
            except ReferenceFileError as exc:
                needed = [r for r in self.source_catalog.needed_reference_types()]
                raise ReferenceFileError(
                    f"{exc}; roman_mos needs them only for source_catalog "
                    f"({', '.join(needed)}): --steps.source_catalog.skip true combines the "
                    "images without a catalog"
                ) from None
            finally:
                model.shelve(first, 0)

    def _check_coverage(self, library: Any) -> None:
        """Refuse inputs spread so far apart that the mosaic grid would be nearly empty."""
        coverage, extent, names = footprint_coverage(library)
        if coverage >= self.min_coverage:
            return
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise InputFileError(
            f"the inputs ({shown}) do not overlap and lie far apart: they span"
            f" {extent:.3g} deg but cover {coverage:.2e} of that region, so the mosaic grid"
            f" would be almost empty; combine them separately (or lower min_coverage,"
            f" now {self.min_coverage:g})"
        )

    def record_status(self, model: Any, status: str) -> None:  # noqa: D102
        if isinstance(model, datamodels.ModelLibrary):
            return
        super().record_status(model, status)

    def _catalog_paths(self) -> tuple[Path, Path]:
        coadd = self.output_path()
        base = self._input_name or coadd.name
        return (
            coadd.with_name(make_output_name(base, "cat", ext=".parquet")),
            coadd.with_name(make_output_name(base, "segm")),
        )

    def planned_outputs(self) -> list[Path]:
        """Return ``_coadd.asdf`` and (unless source_catalog is skipped) ``_cat``/``_segm``.

        Returns
        -------
        list of pathlib.Path
            The paths written when saving (steps' own outputs first).
        """
        paths = super().planned_outputs()
        if self.saves_result() and not self.source_catalog.skip:
            paths.extend(self._catalog_paths())
        return paths

    def save(self, model: Any, path: Path) -> None:
        """Write the mosaic and its catalog and segmentation map.

        Parameters
        ----------
        model : MosaicModel
            The mosaic.
        path : pathlib.Path
            ``<product>_coadd.asdf``.
        """
        if isinstance(model, datamodels.ModelLibrary):  # skipped: nothing combined
            return
        super().save(model, path)
        step = self.source_catalog
        if step.skip or step.catalog is None:
            return
        cat_path, segm_path = self._catalog_paths()
        original = step._output_paths
        step._output_paths = lambda: (cat_path, segm_path)  # type: ignore[method-assign]
        try:
            step.save(model, cat_path)
        finally:
            step._output_paths = original  # type: ignore[method-assign]


class HighLevelPipeline(MosaicPipeline):
    """`MosaicPipeline` under the seeds' name ``roman_hlp``."""

    class_alias = "roman_hlp"
