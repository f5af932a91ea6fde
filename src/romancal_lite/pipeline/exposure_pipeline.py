"""The exposure-level pipeline ``roman_elp`` (seeds/002).

Order of the current page (seeds/002:23-47) plus romancal 1.1's two steps after refpix:
dq_init, saturation, refpix, dark_decay, wfi18_transient, linearity, ramp_fit,
dark_current, assign_wcs, photom, flatfield, source_catalog, tweakreg.
Routing (seeds/002:49, 85-93, and romancal 1.1):

* a fully saturated exposure gets an all-zero image and every step after saturation
  is recorded SKIPPED;
* WFI_SPECTRAL, WFI_FLAT, WFI_IM_DARK and WFI_SP_DARK stop after photom;
* WFI_WFSC stops after flatfield (no catalog, hence no alignment);
* guide-star exposures stop after dq_init (it is the only step defined for them).

Several exposures (an association file or a list of inputs) are calibrated one after
the other, then aligned together by one tweakreg run (relative, then absolute), as
romancal 1.1 does. Each exposure gives ``<name>_cal.asdf``, ``<name>_wcs.asdf``, and
for imaging ``<name>_cat.parquet`` and ``<name>_segm.asdf``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from romancal_lite import datamodels
from romancal_lite.errors import ConfigError
from romancal_lite.interrupts import remove_tree
from romancal_lite.references._spec import BORDER
from romancal_lite.steps.assign_wcs import AssignWcsStep
from romancal_lite.steps.dark_current import DarkCurrentStep
from romancal_lite.steps.dark_decay import DarkDecayStep
from romancal_lite.steps.dq_init import GUIDE_STAR_TYPES, DQInitStep
from romancal_lite.steps.flatfield import FlatFieldStep
from romancal_lite.steps.linearity import LinearityStep
from romancal_lite.steps.photom import PhotomStep
from romancal_lite.steps.ramp_fit import RampFitStep
from romancal_lite.steps.ramp_fit.ramp_fit_step import image_from_ramp
from romancal_lite.steps.refpix import RefPixStep
from romancal_lite.steps.saturation import SaturationStep
from romancal_lite.steps.source_catalog import SourceCatalogStep
from romancal_lite.steps.source_catalog import catalog as _catalog
from romancal_lite.steps.tweakreg import TweakRegStep, update_sky_columns
from romancal_lite.steps.tweakreg import tweakreg as _tweakreg
from romancal_lite.steps.wfi18_transient import WFI18TransientStep
from romancal_lite.stpipe import Param, Pipeline
from romancal_lite.stpipe.naming import make_output_name

__all__ = [
    "ALIGNED_KEYS",
    "CATALOG_TYPES",
    "FLATFIELD_TYPES",
    "RAMP_STEPS",
    "ExposurePipeline",
    "applied_ramp_steps",
    "detach_from_file",
    "fully_saturated",
    "read_products",
    "write_products",
    "zeroed_image",
]

#: Exposure types that go on to flatfield; the others stop after photom.
FLATFIELD_TYPES = frozenset({"WFI_IMAGE", "WFI_LOLO", "WFI_WFSC"})
#: Exposure types that get a source catalog (and so can be aligned).
CATALOG_TYPES = frozenset({"WFI_IMAGE", "WFI_LOLO"})

_SKIPPED = "SKIPPED"


class ExposurePipeline(Pipeline):
    """Calibrate one WFI exposure: raw ramps (``_uncal``) to a count-rate image (``_cal``).

    Every step is skippable (``--steps.<step>.skip``) and configurable
    (``--steps.<step>.<param>``); ``--steps.<step>.save_results`` also writes that
    step's output with its suffix. The image is in DN/s, as romancal 1.1 writes it;
    ``meta.photometry`` holds the conversion to MJy/sr.
    """

    class_alias = "roman_elp"
    suffix = Param(str, "cal", "Suffix of the output file name")
    step_defs = {
        "dq_init": DQInitStep,
        "saturation": SaturationStep,
        "refpix": RefPixStep,
        "dark_decay": DarkDecayStep,
        "wfi18_transient": WFI18TransientStep,
        "linearity": LinearityStep,
        "ramp_fit": RampFitStep,
        "dark_current": DarkCurrentStep,
        "assign_wcs": AssignWcsStep,
        "photom": PhotomStep,
        "flatfield": FlatFieldStep,
        "source_catalog": SourceCatalogStep,
        "tweakreg": TweakRegStep,
    }
    #: Several inputs (a list, or an association file) are one run.
    accepts_many = True

    #: The raw cube is only read (by dq_init): map it instead of copying it in.
    memmap_input = True
    _owns_input = False

    def open_input(self, input: Any) -> Any:  # noqa: A002
        """Open the input; remember whether the pipeline opened it (to free it early).

        Parameters
        ----------
        input : str, path-like or model
            The exposure.

        Returns
        -------
        DataModel
            The opened model.
        """
        self._owns_input = isinstance(input, str | os.PathLike)
        return super().open_input(input)

    def process(self, model: Any) -> Any:
        """Calibrate one exposure, make its catalog and align it (unless joint).

        Parameters
        ----------
        model : ScienceRawModel or RampModel
            The exposure.

        Returns
        -------
        ImageModel
            The calibrated image (or, for guide-star data, the dq_init result).
        """
        self._zeroed = False
        result = self._calibrate(model)
        del model
        self._products = _Products(result, zeroed=self._zeroed)
        self._make_catalog(self._products)
        if not self._joint:
            self._align([self._products])
        return result

    def _calibrate(self, model: Any) -> Any:
        """Run the detector steps (dq_init … flatfield), routing as the module says."""
        applied = applied_ramp_steps(model)
        if self.dq_init.skip and not isinstance(model, datamodels.RampModel):
            raise ConfigError(
                f"{type(model).__name__} input: dq_init cannot be skipped (it makes the ramp "
                "the other steps work on); skip it only for a ramp (RampModel) input"
            )
        result = self.dq_init.run(model)
        # a ramp made here, or read here from a file, is dropped after ramp_fit: its
        # memory can go back row block by row block as it is fitted
        self.ramp_fit.release_input = result is not model or self._owns_input
        if self._owns_input and result is not model:
            # the raw uint16 cube is no longer needed: free it before the next steps
            model.close()
            for name in ("data", "amp33", "resultantdq", "reference_read"):
                if name in model:
                    delattr(model, name)
        elif self._owns_input:
            # a ramp read from a file: the steps work on it in place, never in the file
            detach_from_file(result)
        del model
        exp_type = str(result.meta.exposure.type)
        if exp_type in GUIDE_STAR_TYPES:
            self.log.info("Guide-star exposure %s: nothing after dq_init", exp_type)
            return result
        result = self._run_ramp_step("saturation", result, applied)
        if fully_saturated(result):
            self.log.warning("Every science pixel is saturated: writing a zeroed image")
            self._zeroed = True
            return zeroed_image(result, [s.cal_step_key or s.class_alias for s in self._after(
                "saturation")])
        for name in ("refpix", "dark_decay", "wfi18_transient", "linearity"):
            result = self._run_ramp_step(name, result, applied)
        for name in ("ramp_fit", "dark_current", "assign_wcs", "photom"):
            result = self.steps[name].run(result)
        if exp_type not in FLATFIELD_TYPES:
            self.log.info("%s exposure: stopping after photom", exp_type)
            result.meta.cal_step[self.flatfield.cal_step_key or "flatfield"] = _SKIPPED
            return result
        return self.flatfield.run(result)

    # ------------------------------------------------------------ catalog and alignment

    _joint = False
    _zeroed = False
    _products: _Products | None = None

    def _make_catalog(self, products: _Products) -> None:
        """Run source_catalog on an imaging exposure; hand its sources to tweakreg."""
        image = products.image
        if not isinstance(image, datamodels.ImageModel):
            return
        exp_type = str(image.meta.exposure.type)
        if exp_type not in CATALOG_TYPES:
            for step in (self.source_catalog, self.tweakreg):
                step.record_status(image, _SKIPPED)
            if exp_type in FLATFIELD_TYPES:
                self.log.info("%s exposure: no source catalog, no alignment", exp_type)
            return
        if products.zeroed:
            return  # the all-zero image of a saturated exposure: recorded SKIPPED already
        self.source_catalog.run(image)
        if self.source_catalog.skip or self.source_catalog.catalog is None:
            return
        products.catalog = self.source_catalog.catalog
        products.segmentation = self.source_catalog.segmentation_model
        self.source_catalog.catalog = None
        self.source_catalog.segmentation_model = None
        if not self.tweakreg.skip:
            image.meta["source_catalog"] = {"tweakreg_catalog": products.catalog.table}

    def _align(self, exposures: list[_Products]) -> None:
        """Run tweakreg once on the images (jointly if several); update their catalogs."""
        images = [p.image for p in exposures if isinstance(p.image, datamodels.ImageModel)]
        if not images:
            return
        for products in exposures:
            image = products.image
            if products.catalog is not None and image.meta.get("wcs") is None:
                self.log.warning("%s has no WCS: not aligned", products.name or image)
                _forget_catalog(image)
                products.aligned = False
        with_catalog = [
            p for p in exposures if p.catalog is not None and p.aligned
        ]
        if self.tweakreg.skip or not with_catalog:
            for image in images:
                self.tweakreg.record_status(image, _SKIPPED)
                _forget_catalog(image)
            if not self.tweakreg.skip:
                self.log.info("No source catalog: tweakreg not run")
            return
        targets = [p.image for p in with_catalog]
        try:
            self.tweakreg.run(targets if len(targets) > 1 else targets[0])
        finally:
            for image in images:
                _forget_catalog(image)
        for products in with_catalog:
            image = products.image
            if str(image.meta.cal_step.get("tweakreg", "")) == "COMPLETE":
                updated = update_sky_columns(products.catalog.table, image.meta.wcs)
                self.log.debug("Catalog columns updated for the aligned WCS: %s", updated)
        for products in exposures:
            if (products.catalog is None or not products.aligned) and isinstance(
                products.image, datamodels.ImageModel
            ):
                self.tweakreg.record_status(products.image, _SKIPPED)

    # ------------------------------------------------------------ several exposures

    def run(self, input: Any) -> Any:  # noqa: A002
        """Run on one exposure, or on several (an association file or a list).

        Parameters
        ----------
        input : str, path-like, model, list of those, or ``*_asn.json`` path
            The exposure(s).

        Returns
        -------
        ImageModel or list of ImageModel
            One result per exposure (a list for several inputs). When saving several,
            the list holds the images' metadata only (their arrays are in the files).
        """
        self.tweakreg.check_reference_catalog()
        if not self.source_catalog.skip:
            _preload_catalog_imports()
        members = _many_inputs(input)
        if members is None:
            self._joint = False
            return super().run(input)
        return self._run_many(members)

    def _run_many(self, members: list[tuple[Any, str | None]]) -> list[Any]:
        """Calibrate each exposure, align them all together, then write everything."""
        self._joint = True
        names = [_name_for(member) for member, _ in members]
        for member, _ in members:
            if isinstance(member, str | os.PathLike):
                datamodels.check_regular_file(member)
        saving = self.saves_result()
        if saving:
            # every output of every exposure is checked before any work
            for (member, _), name in zip(members, names, strict=True):
                self._input_name = name
                self.check_outputs(member)
        scratch = None
        try:
            if saving:
                directory = self.output_path().parent
                scratch = Path(tempfile.mkdtemp(prefix=".romancal_lite-elp-", dir=directory))
            done: list[_Products] = []
            for index, ((member, group_id), name) in enumerate(
                zip(members, names, strict=True)
            ):
                self.log.info("Exposure %d of %d: %s", index + 1, len(members), name)
                done.append(self.calibrate_member(
                    member, group_id,
                    scratch=None if scratch is None else scratch / f"{index:05d}.asdf",
                ))
            return self.finish_members(done)
        finally:
            if scratch is not None:
                remove_tree(scratch)
            self._joint = False

    def calibrate_member(
        self, member: Any, group_id: str | None = None, *, scratch: Path | None = None
    ) -> _Products:
        """Calibrate one exposure of a joint run and make its catalog, without aligning it.

        The first half of a run on several exposures, exposure by exposure (the batch
        runner does it in separate processes, then `finish_members` on all of them).

        Parameters
        ----------
        member : str, path-like or model
            The exposure.
        group_id : str, optional
            Its association ``group_id`` (recorded in ``meta.group_id``).
        scratch : pathlib.Path, optional
            Where to write the calibrated image until it is aligned; the products then
            keep only its metadata. Without it, the whole image stays in memory.

        Returns
        -------
        _Products
            The image (or its metadata), catalog and segmentation map, for
            `finish_members`; picklable.
        """
        self._joint = True
        try:
            result = super().run(member)
        finally:
            self._joint = False
        products = self._products
        self._products = None
        products.name = _name_for(member)
        if group_id is not None and isinstance(result, datamodels.ImageModel):
            result.meta["group_id"] = group_id
        if scratch is not None:
            products.scratch = Path(scratch)
            # read back only by this run: no block checksums (~0.5 s per full frame)
            result.save(products.scratch, defer=False, checksums=False)
            products.image = _meta_only(result)
        return products

    def finish_members(self, done: list[_Products]) -> list[Any]:
        """Align calibrated exposures together (one tweakreg run) and write their outputs.

        The second half of a run on several exposures (see `calibrate_member`).

        Parameters
        ----------
        done : list of _Products
            What `calibrate_member` returned for each exposure, in order.

        Returns
        -------
        list of ImageModel
            The aligned images (metadata only for those written from a scratch file).
        """
        self.align_members(done)
        results = []
        for products in done:
            if products.scratch is not None:
                self.write_member(products)
            results.append(products.image)
        return results

    def align_members(self, done: list[_Products]) -> None:
        """Align calibrated exposures together (one tweakreg run), writing nothing.

        `finish_members` without the writing: the batch runner aligns in one task, then
        writes each exposure's outputs (`write_member`) in a task of its own.

        Parameters
        ----------
        done : list of _Products
            What `calibrate_member` returned for each exposure; updated in place (aligned
            metadata, catalog sky columns).
        """
        self._align(done)

    def write_member(self, products: _Products) -> None:
        """Write one aligned exposure's outputs from its scratch file.

        Parameters
        ----------
        products : _Products
            An exposure after `align_members` (or `read_products` of what
            ``write_products(..., aligned=True)`` wrote), its image in a scratch file.
        """
        if products.scratch is None:
            raise ValueError("write_member needs products whose image is in a scratch file")
        self._input_name = products.name
        self._finish_saved(products)

    def _finish_saved(self, products: _Products) -> None:
        """Write an exposure's outputs from its scratch file and its aligned metadata."""
        aligned = products.image
        with datamodels.open(products.scratch) as image:
            for key in ALIGNED_KEYS:
                if key in aligned.meta:
                    image.meta[key] = aligned.meta[key]
            products.image = image
            path = self.output_path()
            self._save_products(products, path)
            products.image = aligned
            aligned.meta["filename"] = path.name

    def save(self, model: Any, path: Path) -> None:
        """Write the exposure's products: ``_cal``, ``_wcs``, and ``_cat``/``_segm``.

        In a run of several exposures nothing is written here: each is kept in a
        scratch file until all are aligned.

        Parameters
        ----------
        model : ImageModel
            The result.
        path : pathlib.Path
            The ``_cal`` path.
        """
        if self._joint:
            return
        products = self._products if self._products is not None else _Products(model)
        products.image = model
        self._save_products(products, path)

    def _save_products(self, products: _Products, path: Path) -> None:
        image = products.image
        if products.catalog is not None:
            source_catalog = image.meta.get("source_catalog") or {}
            source_catalog = dict(source_catalog)
            source_catalog["tweakreg_catalog_name"] = self._catalog_paths()[0].name
            image.meta["source_catalog"] = source_catalog
        super().save(image, path)
        if isinstance(image, datamodels.ImageModel) and image.meta.get("wcs") is not None:
            wcs_path = path.with_name(make_output_name(self._input_name or path.name, "wcs"))
            super().save(datamodels.WfiWcsModel.from_model_with_wcs(image), wcs_path)
        if products.catalog is not None:
            step = self.source_catalog
            step.catalog, step.segmentation_model = products.catalog, products.segmentation
            try:
                step.save(image, step.output_path())
            finally:
                step.catalog = step.segmentation_model = None

    def _catalog_paths(self) -> tuple[Path, Path]:
        """Return the ``_cat.parquet`` and ``_segm.asdf`` paths of the current exposure."""
        cat = self.source_catalog.output_path()
        base = self._input_name or cat.name
        return cat.with_suffix(".parquet"), cat.with_name(make_output_name(base, "segm"))

    def planned_outputs(self) -> list[Path]:
        """Return the paths a run on the current input would write.

        Returns
        -------
        list of pathlib.Path
            Steps' outputs, ``_cal``, and when saving ``_wcs``, ``_cat.parquet`` and
            ``_segm.asdf``.
        """
        paths = super().planned_outputs()
        if self.saves_result():
            cal = self.output_path()
            paths.append(cal.with_name(make_output_name(self._input_name or cal.name, "wcs")))
            if not self.source_catalog.skip:
                paths.extend(self._catalog_paths())
        return paths

    def _run_ramp_step(self, name: str, ramp: Any, applied: frozenset[str]) -> Any:
        """Run a ramp step unless the input ramp records it COMPLETE already."""
        if name in applied:
            self.log.info(
                "Step %s already applied to the input ramp (meta.cal_step.%s = COMPLETE):"
                " not repeated",
                name,
                name,
            )
            return ramp
        return self.steps[name].run(ramp)

    def _after(self, name: str) -> list[Any]:
        names = list(self.steps)
        return [self.steps[n] for n in names[names.index(name) + 1 :]]


#: Ramp steps that a ramp given as input may already have had; they are not repeated
#: (a second refpix, dark decay, transient or linearity correction would be wrong, a
#: second saturation growth would grow further).
RAMP_STEPS = ("saturation", "refpix", "dark_decay", "wfi18_transient", "linearity")


def _preload_catalog_imports() -> None:
    """Import source_catalog's and tweakreg's libraries in a background thread, once.

    The imports (~2 s, pure Python) then overlap the detector steps, which spend
    their time in compiled code and I/O.
    """
    _catalog.preload_dependencies((*_catalog.DEPENDENCIES, *_tweakreg.DEPENDENCIES))


def applied_ramp_steps(model: Any) -> frozenset[str]:
    """Return the ramp steps a ``RampModel`` input records as COMPLETE.

    Parameters
    ----------
    model : DataModel
        The pipeline's input.

    Returns
    -------
    frozenset of str
        Names among `RAMP_STEPS` with ``meta.cal_step.<name> == "COMPLETE"``; empty
        for a raw exposure (whatever its metadata says).
    """
    from romancal_lite import datamodels

    if not isinstance(model, datamodels.RampModel):
        return frozenset()
    try:
        cal_step = model.meta.cal_step
    except AttributeError:
        return frozenset()
    return frozenset(
        name for name in RAMP_STEPS if str(cal_step.get(name, "")).upper() == "COMPLETE"
    )


def detach_from_file(model: Any) -> None:
    """Copy every array a model still reads from its file into memory, then close it.

    Arrays of a memory-mapped input are read-only views of the file: the steps, which
    work in place, must never write there, and the file is closed once nothing
    refers to it.

    Parameters
    ----------
    model : DataModel
        A model opened from a file (memory-mapped or not).
    """
    for name in list(model):
        value = getattr(model, name)
        if isinstance(value, np.ndarray) and not value.flags.writeable:
            setattr(model, name, np.array(value, order="C"))
    model.close()


def fully_saturated(ramp: Any) -> bool:
    """Return whether every science pixel of a ramp is saturated from its first resultant.

    Saturation propagates to later resultants, so this is the first resultant's
    SATURATED flag (or the pixel's) on the whole science array (the reference border,
    which sees no light, is not looked at).

    Parameters
    ----------
    ramp : RampModel
        After the saturation step.

    Returns
    -------
    bool
        True if there is no unsaturated science pixel.
    """
    from romancore.dqflags import group, pixel

    b = BORDER
    first = ramp.groupdq[0, b:-b, b:-b]
    pdq = ramp.pixeldq[b:-b, b:-b]
    if first.size == 0:
        return False
    # row by row: an exposure with light stops at its first row (no frame temporaries)
    gsat, psat = np.uint8(group.SATURATED), np.uint32(pixel.SATURATED)
    for y in range(first.shape[0]):
        sat = (first[y] & gsat) != 0
        sat |= (pdq[y] & psat) != 0
        if not sat.all():
            return False
    return True


def zeroed_image(ramp: Any, skipped_steps: list[str]) -> Any:
    """Return the all-zero image of a fully saturated exposure (seeds/002:85-93).

    Parameters
    ----------
    ramp : RampModel
        The saturated ramp.
    skipped_steps : list of str
        ``meta.cal_step`` keys to record as SKIPPED.

    Returns
    -------
    ImageModel
        Zero data, err and variances; dq = pixeldq | first-resultant flags | SATURATED.
    """
    from romancore.dqflags import pixel

    b = BORDER
    sl = (slice(b, -b), slice(b, -b))
    zeros = np.zeros(ramp.pixeldq[sl].shape, np.float32)
    dq = ramp.pixeldq[sl] | ramp.groupdq[0][sl].astype(np.uint32) | np.uint32(pixel.SATURATED)
    arrays = {
        "slope": zeros,
        "dq": dq,
        "err": zeros.copy(),
        "var_poisson": zeros.copy(),
        "var_rnoise": zeros.copy(),
        "dumo": zeros.copy(),
    }
    image = image_from_ramp(ramp, arrays)
    for key in skipped_steps:
        image.meta.cal_step[key] = _SKIPPED
    return image


@dataclass
class _Products:
    """What one exposure gives: the image, its catalog and map, where it waits."""

    image: Any
    catalog: Any = None
    segmentation: Any = None
    zeroed: bool = False
    aligned: bool = True
    name: str | None = None
    scratch: Path | None = None
    #: the file `segmentation` was read from (`read_products`): unchanged since
    segmentation_file: Path | None = None


#: The metadata alignment changes: what an exposure's outputs take from the aligned image.
ALIGNED_KEYS = ("wcs", "wcs_fit_results", "cal_step", "wcsinfo", "source_catalog", "group_id")


def write_products(
    products: _Products, path: str | os.PathLike[str], *, aligned: bool = False
) -> Path:
    """Write what `ExposurePipeline.calibrate_member` returned, for another process.

    The image must be in its scratch file already (``scratch`` given to
    `calibrate_member`); the catalog, segmentation map and state are pickled (written
    atomically). `read_products` gives them back as they were.

    Parameters
    ----------
    products : _Products
        A member's products.
    path : str or path-like
        The file to write.
    aligned : bool, optional
        The products are aligned (`ExposurePipeline.align_members`): keep the aligned
        metadata too (`ALIGNED_KEYS`), which is not in the scratch file.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import pickle

    from romancal_lite.datamodels._files import atomic_write

    if products.scratch is None:
        raise ValueError("write_products needs products whose image is in a scratch file")
    state = dict(vars(products), image=None)
    if aligned:
        meta = products.image.meta
        state["aligned_meta"] = {key: meta[key] for key in ALIGNED_KEYS if key in meta}
    if products.segmentation is not None and products.segmentation_file is not None:
        state["segmentation"] = products.segmentation_file  # as read: not written again
    elif products.segmentation is not None:
        segm = Path(path).with_name(Path(path).stem + "_segm.asdf")
        # read back only by this run: no block checksums
        products.segmentation.save(segm, defer=False, checksums=False)
        state["segmentation"] = segm
    state["segmentation_file"] = None
    return atomic_write(path, lambda fh: pickle.dump(state, fh, protocol=5), defer=False)


def read_products(path: str | os.PathLike[str], tweakreg_catalog: bool = True) -> _Products:
    """Read products written by `write_products`, ready for `ExposurePipeline.finish_members`.

    The image's metadata is read from its scratch file; the catalog handed to tweakreg
    is the pickled table itself (not its copy in the file), as in one process. Products
    written ``aligned`` get their aligned metadata back instead, ready for
    `ExposurePipeline.write_member`.

    Parameters
    ----------
    path : str or path-like
        The file `write_products` wrote.
    tweakreg_catalog : bool, optional
        Give the catalog to tweakreg (false when tweakreg is skipped).

    Returns
    -------
    _Products
        The products.
    """
    import pickle

    with open(path, "rb") as fh:
        state = pickle.load(fh)
    aligned_meta = state.pop("aligned_meta", None)
    products = _Products(**state)
    if isinstance(products.segmentation, Path):
        products.segmentation_file = products.segmentation
        products.segmentation = datamodels.open(products.segmentation)
    with datamodels.open(products.scratch) as image:
        products.image = _meta_only(image)
    if aligned_meta is not None:
        for key in ALIGNED_KEYS:
            if key in aligned_meta:
                products.image.meta[key] = aligned_meta[key]
            elif key in products.image.meta:
                del products.image.meta[key]
        return products
    if tweakreg_catalog and products.catalog is not None and not products.zeroed:
        products.image.meta["source_catalog"] = {"tweakreg_catalog": products.catalog.table}
    return products


def _forget_catalog(image: Any) -> None:
    """Remove the in-memory catalog handed to tweakreg (it is not part of the file)."""
    source_catalog = image.meta.get("source_catalog")
    if source_catalog and "tweakreg_catalog" in source_catalog:
        del source_catalog["tweakreg_catalog"]
    if source_catalog is not None and not dict(source_catalog):
        del image.meta["source_catalog"]


def _meta_only(image: Any) -> Any:
    """Return a model holding only ``image``'s metadata (what tweakreg needs)."""
    return type(image).from_model(image)


def _name_for(member: Any) -> str | None:
    if isinstance(member, str | os.PathLike):
        return os.fspath(member)
    try:
        return str(member.meta.filename)
    except AttributeError:
        return None


def _many_inputs(input: Any) -> list[tuple[Any, str | None]] | None:  # noqa: A002
    """Return the exposures of a multi-exposure input (with group ids), or None.

    An association file gives its science members (with their ``group_id``); a list
    or tuple of paths or models gives its items. Anything else is one exposure.
    """
    from romancal_lite.associations import is_association, load_asn

    if is_association(input):
        asn = load_asn(input)
        members = asn.science()
        if not members:
            raise ConfigError(f"{os.fspath(input)}: the association has no science member")
        return [(os.fspath(m.path), m.group_id) for m in members]
    if isinstance(input, list | tuple):
        if not input:
            raise ConfigError("no input: the list of exposures is empty")
        return [(item, None) for item in input]
    return None

