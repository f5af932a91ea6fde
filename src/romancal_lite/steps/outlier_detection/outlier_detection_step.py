"""The ``outlier_detection`` step: flag pixels that disagree with the median of the exposures."""

from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from romancal_lite import datamodels
from romancal_lite.errors import ConfigError, InputFileError
from romancal_lite.stpipe import Param, Step

from .._library import SavesMembers, as_library, data_shape, product_name
from ..resample import KERNELS, Resampler, good_pixel_mask, parse_fillval
from ..resample.pixmap import member_pixmap, resample_range, row_extents
from ..resample.resample_step import ResampleStep, _member_pixmap, _number
from .outlier_detection import (
    OnDiskMedian,
    flag_blocks,
    flag_crs,
    weight_threshold,
)

__all__ = ["OutlierDetectionStep", "parse_two"]

#: Most input bytes per block of the on-disk median (stcal's default is one image's
#: size; the median of a pixel does not depend on the blocks)
MEDIAN_BUFFER_BYTES = 32 << 20


def _median_buffer(shape: tuple[int, ...]) -> int:
    """Input bytes per median block: one float32 image's, at most `MEDIAN_BUFFER_BYTES`."""
    return min(4 * int(shape[0]) * int(shape[1]), MEDIAN_BUFFER_BYTES)


def parse_two(value: str, name: str) -> tuple[float, float]:
    """Parse ``"5.0 4.0"`` (spaces or commas) into two floats.

    Parameters
    ----------
    value : str
        The parameter value.
    name : str
        Its name (messages).

    Returns
    -------
    tuple of float
        The two numbers.

    Raises
    ------
    ConfigError
        If it is not two finite numbers.
    """
    parts = [p for p in str(value).replace(",", " ").split() if p]
    try:
        if len(parts) != 2:
            raise ValueError
        first, second = float(parts[0]), float(parts[1])
    except ValueError:
        raise ConfigError(f"{name} must be two numbers, e.g. '5.0 4.0', not {value!r}") from None
    if not (math.isfinite(first) and math.isfinite(second)):
        raise ConfigError(f"{name} must be finite, not {value!r}")
    return first, second


def _sky_level(meta: Any) -> float | None:
    """Return the measured sky level still in the data (romancal: not ``subtracted``)."""
    background = meta.get("background") or {}
    if not background or background.get("subtracted", False):
        return None
    return _number(background, "level")


class OutlierDetectionStep(SavesMembers, Step):
    """Flag outliers (cosmic rays, bad pixels) of each exposure (romancal 1.1).

    With ``resample_data`` (default) every exposure group of the library
    (``group_indices``: the exposures of one pointing) is drizzled onto the grid the
    ``resample`` step would make (footprint union, pixel scale ratio 1), pixels whose
    weight is below ``maskpt`` x the clipped mean weight are set NaN, and the median
    over groups is blotted back onto each exposure; pixels differing from it by more
    than the two derivative-and-noise thresholds (``snr``, ``scale``) get
    ``DO_NOT_USE | OUTLIER`` in their ``dq``. A measured sky level not yet subtracted
    (``meta.background``) is taken out before drizzling and added to the blot, as
    romancal. Without ``resample_data`` the median of the exposures themselves is used
    and ``|sci - median| > snr1 * err`` is flagged. The median is computed from
    temporary files by blocks of rows (`OnDiskMedian`), so memory does not grow with the
    number of exposures. Fewer than two exposures: SKIPPED. Each exposure's new ``dq``
    and metadata are shelved (`ModelLibrary.shelve` ``arrays=("dq",)``: on disk only
    they are written); the result is the library.

    ``weight_type`` is honoured here; romancal 1.1 always drizzles with ``ivm``
    weights (the default). ``in_memory`` only decides whether a library opened from
    files keeps its members in memory.
    """

    class_alias = "outlier_detection"
    model_type = datamodels.ImageModel
    accepts_many = True

    weight_type = Param(str, "ivm", "Drizzle weights of the median images",
                        choices=("ivm", "exptime"))  # fmt: skip
    pixfrac = Param(float, 1.0, "Drizzle pixfrac of the median images", minimum=0.0)
    kernel = Param(str, "square", "Drizzle kernel of the median images", choices=KERNELS)
    fillval = Param(str, "NaN", "Value of pixels without data ('INDEF': 0)")
    maskpt = Param(float, 0.7, "Pixels below this fraction of the mean weight are not in "
                   "the median", minimum=0.0)  # fmt: skip
    snr = Param(str, "5.0 4.0", "Signal-to-noise thresholds of the two tests")
    scale = Param(str, "1.2 0.7", "Derivative multipliers of the two tests")
    backg = Param(float, 0.0, "Background to subtract from the data in the comparison")
    save_intermediate_results = Param(bool, False, "Write the drizzled group images and "
                                      "the median")  # fmt: skip
    resample_data = Param(bool, True, "Drizzle the exposures before the median")
    resample_on_skycell = Param(bool, True, "Use the association's skycell grid "
                                "(needs the skymap: falls back to the footprints)")  # fmt: skip
    good_bits = Param(str, "~DO_NOT_USE", "DQ bits that do not exclude a pixel")
    in_memory = Param(bool, True, "Keep a library opened from files in memory")
    pixmap_stepsize = Param(int, 10, "Evaluate the WCSs every this many pixels", minimum=1)
    pixmap_order = Param(int, 3, "Pixel-map spline order", choices=(1, 3))

    # ------------------------------------------------------------------ input
    def open_input(self, input: Any) -> Any:  # noqa: A002
        """Return the input as a `ModelLibrary`.

        Parameters
        ----------
        input : path, association, list, model or ModelLibrary
            The exposures.

        Returns
        -------
        ModelLibrary
            The library.
        """
        library = as_library(input, on_disk=not self.in_memory)
        if self.parent is None and not self._input_name:
            self._input_name = product_name(library)
        return library

    def record_status(self, model: Any, status: str) -> None:  # noqa: D102
        if isinstance(model, datamodels.ModelLibrary):
            if status != "COMPLETE":  # COMPLETE is written by process, member by member
                _set_status(model, status)
            return
        super().record_status(model, status)

    # ------------------------------------------------------------------ run
    def process(self, model: Any) -> Any:
        """Flag the outliers of every exposure of the library.

        Parameters
        ----------
        model : ModelLibrary
            The exposures.

        Returns
        -------
        ModelLibrary
            The same library, members' ``dq`` updated.

        Raises
        ------
        ConfigError
            Bad ``snr``, ``scale`` or ``fillval``.
        InputFileError
            Exposures without WCS, of different units or filters, or shapes.
        """
        library = model
        snr1, snr2 = parse_two(self.snr, "snr")
        scale1, scale2 = parse_two(self.scale, "scale")
        fillval = parse_fillval(self.fillval)
        if len(library) < 2:
            self.mark_skipped("at least two exposures are needed")
            return library
        start = time.perf_counter()
        if self.resample_data:
            median, median_wcs = self._median_resampled(library, fillval)
        else:
            median, median_wcs = self._median_direct(library), None
        self.log.info("Median of %d %s in %.2f s", len(library.group_indices) if
                      self.resample_data else len(library),
                      "exposure groups" if self.resample_data else "exposures",
                      time.perf_counter() - start)  # fmt: skip
        if self.save_intermediate_results:
            self._save(median, median_wcs, "median", product_name(library))
        with library:
            for index in range(len(library)):
                image = library.borrow(index)
                try:
                    pixmap = None if median_wcs is None else _member_pixmap(
                        library, index, image, median_wcs, self)  # fmt: skip (kept: resample)
                    mask = self._flag(image, median, median_wcs, fillval,
                                      snr1, snr2, scale1, scale2, pixmap)  # fmt: skip
                    del pixmap
                except BaseException:
                    library.shelve(image, index, modify=False)
                    raise
                # dq | (DO_NOT_USE | OUTLIER) where flagged, in place (no full-size
                # temporaries) unless dq is not a writable uint32 array
                dq = np.asarray(image.dq)
                if dq.dtype != np.uint32 or not dq.flags.writeable:
                    dq = dq.astype(np.uint32)
                np.bitwise_or(dq, np.uint32(_dq_flags()), out=dq, where=mask)
                image.dq = dq
                del dq
                image.meta.cal_step["outlier_detection"] = "COMPLETE"
                name = library.members[index].path.name
                self.log.info("%s: %d pixels flagged as outliers", name, np.count_nonzero(mask))
                del mask
                # only dq and the metadata changed: the library keeps just them
                library.shelve(image, index, modify="meta", arrays=("dq",))
                del image  # not held while the next member is read
        return library

    def _flag(self, image: Any, median: np.ndarray, median_wcs: Any, fillval: float,
              snr1: float, snr2: float, scale1: float, scale2: float,
              pixmap: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        if median_wcs is None:
            data = np.asarray(image.data, dtype=np.float32)
            err = np.asarray(image.err, dtype=np.float32)
            return flag_crs(data, err, median, snr1)
        # the data and error as they are (float16 errors: converted a block at a time)
        data, err = np.asarray(image.data), np.asarray(image.err)
        if pixmap is None:
            from ..resample import calc_pixmap

            pixmap = calc_pixmap(image.meta.wcs, median_wcs, data.shape,
                                 stepsize=self.pixmap_stepsize,
                                 order=self.pixmap_order)  # fmt: skip
        # romancal _flag_resampled_model_crs: an unsubtracted sky level replaces backg
        # (the median was made from sky-subtracted images)
        level = _sky_level(image.meta)
        backg = self.backg if level is None else level
        # the blot of the median and the two-threshold test by blocks of rows
        # (flag_resampled_crs against blot_median, bit for bit)
        return flag_blocks(data, err, median, pixmap, snr1, snr2, scale1, scale2, backg,
                           fillval=fillval)  # fmt: skip

    def median_grid(self, library: Any, metas: list[Any]) -> tuple[Any, float]:
        """Return the grid the exposure groups are drizzled onto, and its pixel-scale ratio.

        The resample step's checks of the inputs and its grid, with this step's
        parameters.

        Parameters
        ----------
        library : ModelLibrary
            The exposures.
        metas : list
            Their metadata (`ModelLibrary.read_meta`).

        Returns
        -------
        tuple
            ``(wcs, pixel_scale_ratio)``.

        Raises
        ------
        InputFileError
            Exposures without WCS, of different units or filters.
        """
        grid_step = ResampleStep(
            parent=self, kernel=self.kernel, pixfrac=self.pixfrac,
            resample_on_skycell=self.resample_on_skycell, good_bits=self.good_bits,
            pixmap_stepsize=self.pixmap_stepsize, pixmap_order=self.pixmap_order,
        )  # fmt: skip
        grid_step._check_inputs(library, metas)  # noqa: SLF001 (the resample step's checks)
        wcs, _, ratio = grid_step._grid(library, metas)  # noqa: SLF001 (and its grid)
        return wcs, ratio

    def start_pixel_maps(self, library: Any) -> list[Future]:
        """Start computing the members' pixel maps onto the median's grid in a helper thread.

        For a pipeline, to run while earlier steps (skymatch) run: each map is kept in
        the library's scratch folder (`member_pixmap`), where this step and resample
        find it, with its rows' extents (`row_extents`). A member's WCS and shape are
        read here; the maps are computed in the order the groups are drizzled. Nothing
        is started when the step would not drizzle, or when that reading fails (the
        step itself then reports it); an error of the helper is left to the step too
        (it computes what is missing).

        Parameters
        ----------
        library : ModelLibrary
            The exposures (kept on disk).

        Returns
        -------
        list of concurrent.futures.Future
            One per map, done when it is kept: wait for them before the step runs (or
            cancel those not started, e.g. after an error); empty when nothing was
            started.
        """
        if self.skip or not self.resample_data or len(library) < 2 \
                or not getattr(library, "on_disk", False):  # fmt: skip
            return []
        try:
            metas = [library.read_meta(i) for i in range(len(library))]
            grid, _ = self.median_grid(library, metas)
            jobs = []
            with library:
                for indices in library.group_indices.values():
                    for index in indices:
                        image = library.borrow(index)
                        try:
                            wcs, shape = image.meta.get("wcs"), data_shape(image)
                        finally:
                            library.shelve(image, index, modify=False)
                        if wcs is not None and len(shape) == 2:
                            jobs.append((index, wcs, shape))
                            # the library's scratch folders made here, not by two
                            # threads at once
                            library.scratch_file(index, "pixmap.npy")
        except Exception:  # noqa: BLE001 (the step reports what is wrong)
            return []
        stepsize, order = self.pixmap_stepsize, self.pixmap_order

        def compute(index: int, wcs: Any, shape: tuple[int, ...]) -> None:
            pixmap = member_pixmap(library, index, wcs, grid, shape, stepsize=stepsize,
                                   order=order)  # fmt: skip
            # and the rows' extents the drizzles need (kept beside the map)
            row_extents(pixmap, resample_range(shape, wcs))

        executor = ThreadPoolExecutor(1, "outlier-pixmaps")
        try:
            return [executor.submit(compute, *job) for job in jobs]
        finally:
            executor.shutdown(wait=False)

    def _median_resampled(self, library: Any, fillval: float) -> tuple[np.ndarray, Any]:
        """Drizzle each exposure group, mask low weights, median on disk."""
        metas = [library.read_meta(i) for i in range(len(library))]
        wcs, ratio = self.median_grid(library, metas)
        shape = tuple(int(v) for v in wcs.array_shape)
        groups = list(library.group_indices.items())
        self.log.info("Median grid %d x %d (ratio %.4g) for %d groups", shape[1], shape[0],
                      ratio, len(groups))  # fmt: skip
        # each group's weight threshold and masked image (a sort and mostly one thread)
        # are made by a helper thread while the next group is drizzled; one at a time,
        # in the groups' order
        with OnDiskMedian(shape, len(groups), buffer_bytes=_median_buffer(shape)) as computer, \
                ThreadPoolExecutor(1, "outlier-median") as masker:  # fmt: skip
            masked: Future | None = None
            for name, indices in groups:
                resampler = Resampler(
                    wcs, len(indices), pixel_scale_ratio=ratio, kernel=self.kernel,
                    pixfrac=self.pixfrac, fillval=fillval, weight_type=self.weight_type,
                    good_bits=self.good_bits, variances=(),
                    pixmap_stepsize=self.pixmap_stepsize, pixmap_order=self.pixmap_order,
                    maps=False,  # the median needs the data and the weight only
                )  # fmt: skip
                with library:
                    for k, index in enumerate(indices):
                        image = library.borrow(index)
                        try:
                            meta = image.meta
                            exptime = _number(meta, "exposure", "exposure_time", default=1.0)
                            level = _sky_level(meta)
                            pixmap = _member_pixmap(library, index, image, wcs, self)
                            resampler.add(image, k, exposure_time=exptime,
                                          effective_time=exptime, level=level,
                                          pixmap=pixmap)  # fmt: skip
                            del pixmap
                        finally:
                            library.shelve(image, index, modify=False)
                            del image  # its arrays are not held past its drizzle
                arrays = resampler.finalize()
                del resampler
                if self.save_intermediate_results:
                    self._save(arrays["data"], wcs, "outlier_coadd",
                               library.members[indices[0]].path.name)  # fmt: skip
                if masked is not None:
                    masked.result()
                masked = masker.submit(_add_masked_group, computer, arrays, self.maskpt)
                del arrays
                self.log.debug("group %s drizzled", name)
            if masked is not None:
                masked.result()
            # in a temporary file: the flag pass reads the rows each block blots from
            median = computer.median(in_file=True)
        return median, wcs

    def _median_direct(self, library: Any) -> np.ndarray:
        """Median of the exposures themselves (romancal ``_median_without_resampling``)."""
        computer = None
        try:
            with library:
                for index in range(len(library)):
                    image = library.borrow(index)
                    try:
                        data = np.asarray(image.data, dtype=np.float32)
                        if computer is None:
                            computer = OnDiskMedian(data.shape, len(library),
                                                    buffer_bytes=_median_buffer(data.shape))
                        elif data.shape != computer.shape:
                            raise InputFileError(
                                f"{library.members[index].path.name}: shape {data.shape} differs"
                                f" from the first exposure's {computer.shape}; without "
                                "resample_data all exposures must have one shape"
                            )
                        dq = np.asarray(image.dq) if "dq" in image else None
                        good = good_pixel_mask(dq, self.good_bits, data.shape)
                        # stcal build_driz_weight "ivm" (romancal always uses it here):
                        # 1 / var_rnoise on good pixels, 1 without var_rnoise
                        if "var_rnoise" in image:
                            with np.errstate(divide="ignore"):
                                weight = np.reciprocal(np.asarray(image.var_rnoise, np.float32))
                            weight[~np.isfinite(weight)] = 0
                        else:
                            weight = np.ones(data.shape, np.float32)
                        weight *= good
                        threshold = weight_threshold(weight, self.maskpt)
                        computer.add_masked(data, weight, threshold)
                        del weight, good, data
                    finally:
                        library.shelve(image, index, modify=False)
                        del image
            return computer.median()
        finally:
            if computer is not None:
                computer.close()

    def _save(self, data: np.ndarray, wcs: Any, suffix: str, base: str) -> None:
        """Write an intermediate product ``{"data", "wcs"}`` (romancal ``_fileio``)."""
        import asdf

        from romancal_lite.stpipe.naming import make_output_name

        directory = self._search("output_dir") or "."
        path = f"{directory}/{make_output_name(base, suffix)}"
        tree = {"data": np.asarray(data, np.float32)}
        if wcs is not None:
            tree["wcs"] = wcs
        asdf.AsdfFile(tree).write_to(path)
        self.log.info("Saved intermediate product %s", path)


def _add_masked_group(computer: OnDiskMedian, arrays: dict[str, Any], maskpt: float) -> None:
    """Add a drizzled group's image to the median, weights below the threshold masked.

    The weights below ``maskpt`` x their clipped mean are masked as the group image is
    written, a block of rows at a time (no full-size copies).
    """
    threshold = weight_threshold(arrays["weight"], maskpt)
    computer.add_masked(arrays["data"], arrays["weight"], threshold)


def _dq_flags() -> int:
    from romancore.dqflags import pixel

    return int(pixel.DO_NOT_USE) | int(pixel.OUTLIER)


def _set_status(library: Any, status: str) -> None:
    """Write ``meta.cal_step.outlier_detection`` on every member not already COMPLETE."""
    with library:
        for index in range(len(library)):
            image = library.borrow(index)
            changed = image.meta.cal_step.get("outlier_detection") != status
            if changed:
                image.meta.cal_step["outlier_detection"] = status
            library.shelve(image, index, modify="meta" if changed else False)
