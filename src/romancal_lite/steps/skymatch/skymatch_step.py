"""The ``skymatch`` step: sky levels of overlapping images (romancal 1.1's SkyMatchStep)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from astropy.nddata.bitmask import interpret_bit_flags

from romancal_lite.errors import ConfigError, InputFileError, OutputError
from romancal_lite.stpipe import Param, Step
from romancal_lite.stpipe.naming import make_output_name
from romancal_lite.stpipe.step import COMPLETE, SKIPPED

from .._library import data_shape
from .skymatch import (
    SKY_METHODS,
    SkyParameters,
    SkySolution,
    footprint_radec,
    good_pixel_mask,
    image_sky_statistics,
    overlap_polygons,
    solve_sky,
)

__all__ = ["SkyMatchStep", "bad_bits_from_dqbits"]


def bad_bits_from_dqbits(dqbits: str | None) -> int | None:
    """Return the DQ flags that exclude a pixel, from romancal's ``dqbits`` string.

    ``dqbits`` lists the "good" flags (ignored), as astropy's ``interpret_bit_flags``
    reads them: names or numbers joined by ``+`` or ``,``; a leading ``~`` means "all
    flags except these". A pixel is used when it has no flag outside the good ones
    (astropy's ``bitfield_to_boolean_mask`` with ``good_mask_value=True``).

    Parameters
    ----------
    dqbits : str or None
        E.g. ``"~DO_NOT_USE"`` (romancal's default: only DO_NOT_USE excludes), ``"0"``
        (any flag excludes), or None / ``""`` (flags are not looked at).

    Returns
    -------
    int or None
        The excluding flags (a 32-bit mask), or None when flags are not used.

    Raises
    ------
    ConfigError
        If the string cannot be read.
    """
    from romancore.dqflags import pixel

    names = {flag.name: int(flag.value) for flag in pixel}
    try:
        good = interpret_bit_flags(dqbits, flag_name_map=names)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"dqbits {dqbits!r} cannot be read: {exc}") from None
    if good is None:
        return None
    return int(~np.uint32(int(good) & 0xFFFFFFFF))


class _Members:
    """One way to reach the images of a list of models or of a model library.

    ``borrow``/``shelve`` are the library's (a list's models are simply returned);
    ``changed=True`` keeps a borrowed model's changes (in a library: shelved with
    ``modify=True``).
    """

    def __init__(self, items: Any) -> None:
        self.library = None if isinstance(items, list) else items
        self.models = items if isinstance(items, list) else None

    def __len__(self) -> int:
        return len(self.models) if self.models is not None else len(self.library)

    def __enter__(self) -> _Members:
        if self.library is not None:
            self.library.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.library is not None:
            self.library.__exit__(*exc)

    def borrow(self, index: int) -> Any:
        if self.models is not None:
            return self.models[index]
        return self.library.borrow(index)

    def shelve(self, model: Any, index: int, changed: bool | str) -> None:
        if self.library is not None:
            self.library.shelve(model, index, modify=changed)

    def meta_and_shape(self, index: int) -> tuple[Any, tuple[int, int]]:
        """Return an image's metadata (with its WCS) and ``(ny, nx)``.

        A library's member is not opened when its WCS has a bounding box (the image's
        pixel edges, as assign_wcs sets it): the shape is read from the box.
        """
        if self.library is not None and hasattr(self.library, "read_meta"):
            meta = self.library.read_meta(index)
            box = _box_shape(meta.get("wcs"))
            if box is not None:
                return meta, box
        with self:
            model = self.borrow(index)
            try:
                shape = data_shape(model)  # not read
                meta = model.meta
            finally:
                self.shelve(model, index, changed=False)
        if len(shape) != 2:
            raise InputFileError(f"{_name(meta, index)}: data is not a 2-D image")
        return meta, (int(shape[0]), int(shape[1]))


def _box_shape(wcs: Any) -> tuple[int, int] | None:
    """``(ny, nx)`` of a WCS bounding box ``((-0.5, nx - 0.5), (-0.5, ny - 0.5))``."""
    try:
        box = wcs.bounding_box
        (x0, x1), (y0, y1) = (tuple(map(float, b)) for b in box.bounding_box(order="F"))
    except Exception:  # noqa: BLE001 - no (usable) box: open the image instead
        return None
    if x0 != -0.5 or y0 != -0.5 or x1 % 1 != 0.5 or y1 % 1 != 0.5:
        return None
    return int(y1 + 0.5), int(x1 + 0.5)


def _name(meta: Any, index: int) -> str:
    try:
        name = meta.get("filename")
    except AttributeError:
        name = None
    return str(name or f"image {index}")


class SkyMatchStep(Step):
    """Sky background of overlapping images: measured, matched, optionally subtracted.

    romancal 1.1's ``SkyMatchStep`` (stcal 1.20's ``skymatch``): each image's sky
    statistic (``skystat`` of its good pixels, ``dqbits``, after ``nclip``
    sigma-clipping iterations) over the whole image (``local``; ``global``: the
    minimum over the images) or in the overlaps of every pair of images, where the
    differences are solved for relative offsets (``match``; ``global+match`` adds the
    global minimum after matching). The result goes to ``meta.background``:
    ``level`` (the sky), ``method`` and ``subtracted``; the data change only with
    ``subtract=True`` (otherwise resample subtracts ``level``, as romancal's).
    ``meta.cal_step.skymatch`` is COMPLETE, or SKIPPED for an image whose sky could
    not be computed.

    Each model is its own sky image, as in romancal 1.1 (its step makes one
    ``SkyImage`` per model and no ``SkyGroup``, so exposure groups are not used).
    Images are used one at a time: a model library is borrowed once to read the
    footprints (WCS and shape), once to measure the statistics, and once to record
    the result; only footprints and statistics are kept between passes.
    """

    class_alias = "skymatch"
    suffix = Param(str, "skymatch", "Suffix of the output file names")

    skymethod = Param(str, "match", "Sky computation method", choices=SKY_METHODS)
    match_down = Param(bool, True, "Match sky to the lowest (True) or highest value")
    subtract = Param(bool, False, "Subtract the computed sky from the data")
    stepsize = Param(int, None, "Largest footprint vertex spacing (pixels); None: corners",
                     minimum=1)
    skystat = Param(str, "mode", "Sky statistic", choices=("median", "midpt", "mean", "mode"))
    dqbits = Param(str, "~DO_NOT_USE", "Good DQ flags (astropy bit-flag syntax)")
    lower = Param(float, None, "Lower limit of usable pixel values")
    upper = Param(float, None, "Upper limit of usable pixel values")
    nclip = Param(int, 5, "Number of sigma-clipping iterations", minimum=0)
    lsigma = Param(float, 4.0, "Lower clipping limit, in sigma", minimum=0.0)
    usigma = Param(float, 4.0, "Upper clipping limit, in sigma", minimum=0.0)
    binwidth = Param(float, 0.1, "Histogram bin width for mode and midpt, in sigma",
                     minimum=0.0)

    accepts_many = True

    _statuses: dict[int, str]
    _many: list[Any] | None = None
    _library: Any = None

    # ------------------------------------------------------------------ input

    def open_input(self, input: Any) -> Any:  # noqa: A002
        """Open one image, a list of images or paths, an association, or take a library.

        Parameters
        ----------
        input : str, path-like, model, list of those, ``*_asn.json`` or ModelLibrary
            The images.

        Returns
        -------
        object
            A model, a list of models, or the model library (used as given).
        """
        from romancal_lite.associations import is_association

        self._library = None
        if hasattr(input, "borrow") and hasattr(input, "shelve"):
            self._many = None
            self._library = input
            return input
        if isinstance(input, str | os.PathLike) and is_association(input):
            return self._open_library(input)
        if isinstance(input, list | tuple):
            if input and all(isinstance(item, str | os.PathLike) for item in input):
                return self._open_library(list(input))
            opened = []
            for item in input:  # (zero-argument super() does not work in a comprehension)
                opened.append(super().open_input(item))
            self._many = opened
            return opened
        self._many = None
        return super().open_input(input)

    def _open_library(self, source: Any) -> Any:
        try:
            from romancal_lite.datamodels import ModelLibrary
        except ImportError:  # pragma: no cover - before the model library exists
            return self._open_models(source)
        self._many = None
        self._library = ModelLibrary(source, on_disk=True)
        return self._library

    def _open_models(self, source: Any) -> list[Any]:  # pragma: no cover - fallback
        from romancal_lite.associations import is_association, load_asn

        if isinstance(source, list):
            paths = source
        elif is_association(source):
            paths = [m.path for m in load_asn(source).science()]
        else:
            paths = [source]
        opened = []
        for path in paths:
            opened.append(super().open_input(os.fspath(path)))
        self._many = opened
        return opened

    # ------------------------------------------------------------------ work

    def process(self, model: Any) -> Any:
        """Compute each image's sky and record it in ``meta.background``.

        Parameters
        ----------
        model : ImageModel, list of ImageModel or ModelLibrary
            Calibrated images with ``meta.wcs``.

        Returns
        -------
        object
            The input, each image's ``meta.background`` set (and data changed when
            ``subtract=True``).

        Raises
        ------
        InputFileError
            If an image has no WCS or no 2-D data, or its background metadata is
            inconsistent with ``subtract`` (romancal's two checks).
        ConfigError
            If ``dqbits`` cannot be read.
        """
        single = not isinstance(model, list) and not hasattr(model, "borrow")
        members = _Members([model] if single else model)
        self._statuses = {}
        bad_bits = bad_bits_from_dqbits(self.dqbits)
        params = SkyParameters(
            skystat=self.skystat, lower=self.lower, upper=self.upper, nclip=self.nclip,
            lsigma=self.lsigma, usigma=self.usigma, binwidth=self.binwidth,
        )
        n = len(members)
        do_match = "match" in self.skymethod
        need_whole = self.skymethod != "match"

        # pass 1 (match methods): footprints from the metadata, and romancal's checks
        footprints: list[tuple[np.ndarray, np.ndarray]] = []
        initial: list[float] = [0.0] * n
        if do_match:
            for index in range(n):
                meta, shape = members.meta_and_shape(index)
                initial[index] = self._check_background(meta, index)
                wcs = meta.get("wcs")
                if wcs is None:
                    raise InputFileError(
                        f"{_name(meta, index)}: no WCS (meta.wcs); run assign_wcs first"
                    )
                footprints.append(footprint_radec(wcs, shape, self.stepsize))
        overlaps = {}
        if do_match and n > 1:
            try:
                overlaps = overlap_polygons(footprints)
            except ValueError as exc:
                raise InputFileError(f"skymatch: {exc}") from None
        self.log.info("%d image(s), %d overlapping pair(s)", n, len(overlaps))

        # pass 2: statistics, one image at a time
        whole: list[Any] = []
        pair_stats: dict[tuple[int, int], list[Any]] = {
            key: [None, None] for key in overlaps
        }
        with members:
            for index in range(n):
                image = members.borrow(index)
                try:
                    if not do_match:
                        initial[index] = self._check_background(image.meta, index)
                    mine = {}
                    for (i, j), (ra, dec, _area) in overlaps.items():
                        if index in (i, j):
                            mine[j if index == i else i] = (ra, dec)
                    inverse = _inverse(image.meta["wcs"]) if mine else None
                    data = np.asarray(image.data)
                    if data.dtype != np.float32:
                        data = data.astype(np.float32)
                    good = good_pixel_mask(data, _dq(image, data.shape), bad_bits)
                    full, pairs = image_sky_statistics(
                        data, good, inverse, mine, params, whole=need_whole
                    )
                finally:
                    members.shelve(image, index, changed=False)
                whole.append(full)
                for other, stat in pairs.items():
                    key = (min(index, other), max(index, other))
                    pair_stats[key][0 if index < other else 1] = stat

        solution = solve_sky(
            n, self.skymethod, match_down=self.match_down, whole=whole,
            pairs={k: (v[0], v[1]) for k, v in pair_stats.items()},
            initial=initial,
        )
        if solution.rank_deficient and do_match:
            self.log.warning(
                "The overlaps do not link every image: sky offsets are matched only"
                " within each linked set of images"
            )

        # pass 3: record (and subtract)
        with members:
            for index in range(n):
                image = members.borrow(index)
                self._record(image, index, solution)
                if members.library is not None:
                    super().record_status(image, self._statuses[index])
                    super().finalize_result(image)
                # only the metadata changes unless the sky is subtracted: a library
                # keeps it without rewriting the exposure
                members.shelve(image, index, changed=True if self.subtract else "meta")
        if all(s == SKIPPED for s in self._statuses.values()):
            self.mark_skipped(
                "no sky value could be computed"
                + (" (no two images overlap)" if do_match and not overlaps else "")
            )
        return model

    def _check_background(self, meta: Any, index: int) -> float:
        """Romancal's checks of ``meta.background``; return the starting sky."""
        background = meta.get("background") or {}
        level = background.get("level")
        subtracted = background.get("subtracted")
        if subtracted and level is None:
            raise InputFileError(
                f"{_name(meta, index)}: meta.background.subtracted is set but"
                " meta.background.level is undefined"
            )
        if subtracted and self.subtract:
            raise InputFileError(
                f"{_name(meta, index)}: its sky was already subtracted"
                " (meta.background.subtracted); run skymatch with subtract=False"
            )
        return float(level) if (self.subtract and level is not None) else 0.0

    def _record(self, image: Any, index: int, solution: SkySolution) -> None:
        valid = solution.valid[index]
        status = COMPLETE if valid else SKIPPED
        self._statuses[index] = status
        if image.meta.get("background") is None:
            image.meta["background"] = {}
        image.meta.background["method"] = str(self.skymethod)
        image.meta.background["subtracted"] = bool(self.subtract)
        image.meta.background["level"] = float(solution.level[index])
        amount = solution.subtract[index]
        if self.subtract and amount != 0.0:
            # romancal changes the data in place (the SkyImage holds model.data)
            image.data[...] = image.data - np.float32(amount)
        self.log.info(
            "%s: sky %s%s", _name(image.meta, index),
            f"{solution.level[index]:.6g}",
            "" if valid else " (not computed: SKIPPED)",
        )

    # ------------------------------------------------------------------ bookkeeping

    def record_status(self, model: Any, status: str) -> None:
        """Record each image's own status (COMPLETE or SKIPPED).

        Parameters
        ----------
        model : ImageModel, list of ImageModel or ModelLibrary
            The result (a library's statuses are written in `process`, or here when
            the step is skipped).
        status : str
            The run's status (used for images without one of their own).
        """
        statuses = getattr(self, "_statuses", {})
        if hasattr(model, "borrow"):
            if statuses and status != SKIPPED:
                return
            if status == SKIPPED and not statuses:
                members = _Members(model)
                with members:
                    for index in range(len(members)):
                        image = members.borrow(index)
                        super().record_status(image, SKIPPED)
                        members.shelve(image, index, changed=True)
            return
        images = model if isinstance(model, list | tuple) else [model]
        for index, image in enumerate(images):
            super().record_status(image, statuses.get(index, status))

    def finalize_result(self, model: Any) -> None:
        """Record provenance on each image (see `Step.finalize_result`).

        Parameters
        ----------
        model : ImageModel, list of ImageModel or ModelLibrary
            The result (a library's images are finalized in `process`).
        """
        if hasattr(model, "borrow"):
            return
        for image in model if isinstance(model, list | tuple) else [model]:
            super().finalize_result(image)

    def planned_outputs(self) -> list[Path]:
        """Return ``<name>_skymatch.asdf`` of each image when saving.

        Returns
        -------
        list of pathlib.Path
            Output paths (none unless saving).
        """
        if not self.saves_result():
            return []
        if self._many is None and self._library is None:
            return [self.output_path()]
        return [self._path_for(base) for base in self._output_bases()]

    def _output_bases(self) -> list[str]:
        if self._library is not None:
            members = getattr(self._library, "members", None)
            if members is not None:
                return [m.path.name for m in members]
            return [f"image{i}" for i in range(len(self._library))]
        return [str(m.file_path or m.meta.get("filename") or "") for m in self._many or []]

    def _path_for(self, base: str) -> Path:
        if not base:
            raise OutputError(f"cannot name the output of {self.name}: an input has no name")
        directory = self._search("output_dir") or ""
        suffix = self.suffix or "skymatch"
        return Path(os.path.expanduser(directory)) / make_output_name(base, suffix)

    def save(self, model: Any, path: Path) -> None:
        """Write each image as ``<name>_skymatch.asdf``.

        Parameters
        ----------
        model : ImageModel, list of ImageModel or ModelLibrary
            The result.
        path : pathlib.Path
            The output path of a single image.
        """
        if hasattr(model, "borrow"):
            members = _Members(model)
            with members:
                for index, base in enumerate(self._output_bases()):
                    image = members.borrow(index)
                    try:
                        super().save(image, self._path_for(base))
                    finally:
                        members.shelve(image, index, changed=False)
            return
        if isinstance(model, list | tuple):
            for image, base in zip(model, self._output_bases(), strict=True):
                super().save(image, self._path_for(base))
            return
        super().save(model, path)


def _inverse(wcs: Any) -> Any:
    """Return the WCS's world-to-pixel transform (its backward transform, as stcal)."""
    try:
        return wcs.backward_transform
    except (NotImplementedError, AttributeError):
        return wcs.invert


def _dq(image: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        dq = image.dq
    except (AttributeError, KeyError):
        return None
    dq = np.asarray(dq)
    return dq if dq.shape == shape else None
