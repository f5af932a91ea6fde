"""Pixel maps: where each input pixel lands on the output grid.

As stcal 1.20 ``resample/utils.py`` ``calc_pixmap`` with ``stepsize``/``order``
(romancal 1.1 uses ``pixmap_stepsize=10``, ``pixmap_order=3``): the two WCSs are
evaluated on a coarse grid (at most ``stepsize`` pixels apart, at least 10 points a
side) inside the input's bounding box, and a bicubic (or bilinear) spline fills in
every pixel. The per-pixel gwcs evaluation is what makes romancal's resample slow.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["calc_pixmap", "member_pixmap", "resample_range", "row_extents"]


def _bbox_limits(wcs: Any, shape: Sequence[int]) -> tuple[int, int, int, int]:
    ny, nx = shape
    bbox = getattr(wcs, "bounding_box", None)
    if bbox is None:
        return 0, nx - 1, 0, ny - 1
    try:
        (x0, x1), (y0, y1) = bbox.bounding_box(order="F")
    except AttributeError:
        (x0, x1), (y0, y1) = tuple(bbox)
    return (
        max(0, int(math.ceil(x0))),
        min(nx - 1, int(math.floor(x1))),
        max(0, int(math.ceil(y0))),
        min(ny - 1, int(math.floor(y1))),
    )


def resample_range(shape: Sequence[int], wcs: Any) -> tuple[int, int, int, int]:
    """Return ``xmin, xmax, ymin, ymax`` of the input pixels drizzled (stcal ``resample_range``).

    Parameters
    ----------
    shape : sequence of int
        ``(ny, nx)`` of the input.
    wcs : gwcs.WCS
        Its WCS (its bounding box limits the range).

    Returns
    -------
    tuple of int
        Inclusive pixel limits.
    """
    ny, nx = shape
    bbox = getattr(wcs, "bounding_box", None)
    if bbox is None:
        return 0, max(nx - 1, 0), 0, max(ny - 1, 0)
    try:
        (x1, x2), (y1, y2) = bbox.bounding_box(order="F")
    except AttributeError:
        (x1, x2), (y1, y2) = tuple(bbox)
    xmin = max(0, int(x1 + 0.5))
    ymin = max(0, int(y1 + 0.5))
    return xmin, max(xmin, min(nx - 1, int(x2 + 0.5))), ymin, max(ymin, min(ny - 1, int(y2 + 0.5)))


def _full(wcs_from: Any, wcs_to: Any, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.indices(shape, dtype=np.float64)
    return wcs_to.world_to_pixel_values(*wcs_from.pixel_to_world_values(x, y))


#: Rows of a pixel map in a file evaluated at a time (then handed back to the OS).
PIXMAP_ROWS = 512


def calc_pixmap(
    wcs_from: Any,
    wcs_to: Any,
    shape: Sequence[int],
    *,
    stepsize: int = 10,
    order: int = 3,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Return the output-grid coordinates of every input pixel.

    Parameters
    ----------
    wcs_from : gwcs.WCS
        The input's WCS (its bounding box limits the pixels mapped; outside: NaN).
    wcs_to : gwcs.WCS
        The output grid's WCS (its bounding box is ignored).
    shape : sequence of int
        ``(ny, nx)`` of the input.
    stepsize : int, optional
        Coarse-grid spacing; 1 evaluates the WCSs at every pixel.
    order : int, optional
        Spline order, 1 or 3.
    out : numpy.ndarray, optional
        ``(ny, nx, 2)`` float64 C-contiguous array receiving the map. When it lies in
        a shared file map (e.g. ``numpy.lib.format.open_memmap``) the spline is
        evaluated `PIXMAP_ROWS` rows at a time and each block's pages are handed back
        to the OS (the values of one evaluation of all rows: each pixel's value does
        not depend on the others), so the map does not count whole in memory.

    Returns
    -------
    numpy.ndarray
        ``(ny, nx, 2)`` float64: output x and y of each input pixel centre (``out``
        when given).

    Raises
    ------
    ValueError
        If ``order`` is not 1 or 3, or ``out`` does not fit.
    """
    from scipy.interpolate import RectBivariateSpline

    from .._arrays import is_file_map, release_rows

    if order not in (1, 3):
        raise ValueError(f"pixmap order must be 1 or 3, got {order}")
    shape = tuple(int(v) for v in shape)
    if out is not None and (out.shape != (*shape, 2) or out.dtype != np.float64
                            or not out.flags.c_contiguous or not out.flags.writeable):  # fmt: skip
        raise ValueError(f"out must be a writable C-contiguous float64 {(*shape, 2)} array")
    in_file = out is not None and is_file_map(out)
    blocks = [(0, shape[0])]
    if in_file:
        blocks = [(r0, min(shape[0], r0 + PIXMAP_ROWS)) for r0 in range(0, shape[0], PIXMAP_ROWS)]

    def handed_back(r0: int, r1: int) -> None:
        if in_file:
            release_rows(out.reshape(shape[0], -1), r0, r1)
    bbox_to = wcs_to.bounding_box
    xmin, xmax, ymin, ymax = _bbox_limits(wcs_from, shape)
    width, height = xmax - xmin + 1, ymax - ymin + 1
    wcs_to.bounding_box = None
    try:
        if stepsize <= 1 or max(width, height) <= 10:
            x, y = _full(wcs_from, wcs_to, shape)
        else:
            nx_c = max(int(math.ceil(width / stepsize)), min(10, width))
            ny_c = max(int(math.ceil(height / stepsize)), min(10, height))
            xc = np.linspace(xmin, xmax, nx_c)
            yc = np.linspace(ymin, ymax, ny_c)
            gx, gy = np.meshgrid(xc, yc)
            cx, cy = wcs_to.world_to_pixel_values(*wcs_from.pixel_to_world_values(gx, gy))
            if np.all(np.isfinite(cx)) and np.all(np.isfinite(cy)):
                # the spline through the coarse grid, evaluated at every pixel of the
                # box straight into the map (romancore: the values of
                # RectBivariateSpline(...)(ys, xs), in parallel)
                from romancore.drizzle import SplineGridPair, spline_grid

                k = order
                xs = np.arange(xmin, xmax + 1, dtype=np.float64)
                ys = np.arange(ymin, ymax + 1, dtype=np.float64)
                full = (xmin, ymin, xmax, ymax) == (0, 0, shape[1] - 1, shape[0] - 1)
                pixmap = np.empty((*shape, 2), dtype=np.float64) if out is None else out
                sx = RectBivariateSpline(yc, xc, cx, kx=k, ky=k)
                sy = RectBivariateSpline(yc, xc, cy, kx=k, ky=k)
                pair = all(np.array_equal(a, b) for a, b in zip(sx.tck[:2], sy.tck[:2],
                                                                 strict=True))  # fmt: skip
                # both components in one pass over the map (same knots: the
                # interpolating splines through one grid), the columns' factor of
                # the splines computed once for all the blocks
                evaluator = SplineGridPair(sx.tck, sy.tck, sx.degrees, xs) if pair else None
                for r0, r1 in blocks:
                    if not full:
                        pixmap[r0:r1] = np.nan
                    # the box's rows inside this block
                    b0, b1 = max(r0, ymin), min(r1, ymax + 1)
                    if b1 > b0:
                        rows = ys[b0 - ymin : b1 - ymin]
                        if evaluator is not None:
                            evaluator.evaluate(rows, pixmap, row0=b0, col0=xmin)
                        else:
                            for component, spline in enumerate((sx, sy)):
                                spline_grid(spline.tck, spline.degrees, rows, xs, pixmap,
                                            component, row0=b0, col0=xmin)  # fmt: skip
                    handed_back(r0, r1)
                return pixmap
            # the coarse grid leaves the WCS's domain: every pixel exactly
            x, y = _full(wcs_from, wcs_to, shape)
    finally:
        wcs_to.bounding_box = bbox_to
    pixmap = np.empty((*shape, 2), dtype=np.float64) if out is None else out
    pixmap[..., 0] = x
    pixmap[..., 1] = y
    handed_back(0, shape[0])
    return pixmap


def _fingerprint(wcs: Any, shape: Sequence[int]) -> bytes:
    """Sky coordinates of 9 pixels spread over ``shape`` (corners, edge middles, centre)."""
    ny, nx = (int(v) for v in shape)
    xs = np.array([0.0, (nx - 1) / 2, nx - 1.0])
    ys = np.array([0.0, (ny - 1) / 2, ny - 1.0])
    gx, gy = np.meshgrid(xs, ys)
    bbox = getattr(wcs, "bounding_box", None)
    world = wcs.pixel_to_world_values(gx.ravel(), gy.ravel())
    return repr((ny, nx, bbox is not None)).encode() + np.asarray(world, np.float64).tobytes()


def member_pixmap(library: Any, index: int, wcs_from: Any, wcs_to: Any,
                  shape: Sequence[int], *, stepsize: int = 10, order: int = 3,
                  keep: bool = True) -> np.ndarray:  # fmt: skip
    """Return `calc_pixmap` of a library member, computed once per grid and kept on disk.

    outlier_detection drizzles each member onto a grid and blots the median back
    through the same map, and resample's grid is the same one when its parameters
    agree: the map (``ny x nx x 2`` float64) is written to the library's scratch
    folder of the member (``.npy``) and read back memory-mapped (copy-on-write) by
    the later uses. The key is the parameters and the sky coordinates of 9 pixels
    through each WCS (both WCSs of a member do not change between these steps).

    Parameters
    ----------
    library : ModelLibrary or None
        The library (None: computed, not kept).
    index : int
        The member.
    wcs_from, wcs_to, shape, stepsize, order
        As `calc_pixmap`.
    keep : bool, optional
        Keep the map on disk for later uses; False (the last user, resample): a
        kept map is used and its file removed, and a new one is not written (the
        scratch space does not grow with the inputs past this use).

    Returns
    -------
    numpy.ndarray
        The map.
    """
    import hashlib
    import os

    if library is None or not getattr(library, "on_disk", False):
        return calc_pixmap(wcs_from, wcs_to, shape, stepsize=stepsize, order=order)
    to_shape = tuple(int(v) for v in wcs_to.array_shape)
    key = hashlib.sha1(
        _fingerprint(wcs_from, shape) + _fingerprint(wcs_to, to_shape)
        + repr((int(stepsize), int(order))).encode()
    ).hexdigest()[:16]  # fmt: skip
    path = library.scratch_file(index, f"pixmap_{key}.npy")
    if path.is_file():
        pixmap = _load_kept(path)
        if not keep:
            # the kept row extents go with the map (read into it first), and the map's
            # file is removed: it stays readable until it is released
            pixmap.kept_extents = _take_extents(path)
            pixmap.kept_path = None
            path.unlink()
        return pixmap
    if not keep:
        return calc_pixmap(wcs_from, wcs_to, shape, stepsize=stepsize, order=order)
    partial = path.with_name(f"{path.stem}.partial")
    # computed straight into its .npy file, a block of rows at a time (the pages of
    # each handed back), then used from that file: its pages are read where used and
    # handed back (the resample kernels' staging keeps a file map as it is), so the
    # 0.27 GB of a full-frame map are never held in memory
    ny, nx = (int(v) for v in shape)
    target = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float64, shape=(ny, nx, 2))
    try:
        # not flushed: the map is read back through the page cache (a scratch file
        # of this process; msync only waited for the disk, ~0.12 s a map)
        calc_pixmap(wcs_from, wcs_to, shape, stepsize=stepsize, order=order, out=target)
    except BaseException:
        del target
        partial.unlink(missing_ok=True)
        raise
    del target
    os.replace(partial, path)
    return _load_kept(path)


def _load_kept(path: Any) -> np.ndarray:
    """Return a kept pixel map memory-mapped (copy-on-write) from its file.

    The map remembers its file (``kept_path``): `row_extents` keeps what it computes
    of the map beside it.

    Raises
    ------
    InputFileError
        If the file is gone (the library's scratch folder was removed meanwhile).
    """
    from romancal_lite.errors import InputFileError

    try:
        pixmap = np.load(path, mmap_mode="c")
        pixmap.kept_path = Path(path)
        return pixmap
    except FileNotFoundError:
        raise InputFileError(
            f"pixel map {path} is missing: the library's scratch folder was removed "
            "while the step ran"
        ) from None


def _extents_file(path: Path, box: tuple[int, int, int, int]) -> Path:
    """Return the file beside a kept map holding its rows' extents for ``box``."""
    return path.with_name(f"{path.stem}.extents_{'_'.join(str(int(v)) for v in box)}.npy")


def _take_extents(path: Path) -> dict[tuple[int, ...], np.ndarray]:
    """Read, and remove, the row extents kept beside a map's file (by box)."""
    found: dict[tuple[int, ...], np.ndarray] = {}
    for side in path.parent.glob(f"{path.stem}.extents_*.npy"):
        box = tuple(int(v) for v in side.stem.rsplit(".extents_", 1)[1].split("_"))
        try:
            found[box] = np.load(side)
        except (OSError, ValueError):
            pass
        side.unlink(missing_ok=True)
    return found


def row_extents(pixmap: np.ndarray, box: tuple[int, int, int, int]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Return, per input row, the extent of its mapped pixels on the output.

    Parameters
    ----------
    pixmap : numpy.ndarray
        ``(ny, nx, 2)`` pixel map (`calc_pixmap`, `member_pixmap`).
    box : tuple of int
        ``xmin, xmax, ymin, ymax`` (inclusive): only these pixels count
        (`resample_range`).

    Returns
    -------
    tuple of numpy.ndarray
        ``(lowest y, highest y, lowest x, highest x)`` of each row (float64, ``ny``
        each); rows outside ``box`` or without a finite map get ``+inf`` and ``-inf``
        (`romancore.drizzle.row_extents`).

    Notes
    -----
    A memory-mapped map is read in row blocks, each handed back to the OS once read
    (a full frame's map is 268 MB). For a map kept by `member_pixmap` the result is
    kept beside the map's file (``<map>.extents_<box>.npy``, 130 kB a full frame) and
    read from there by the next use with the same box: outlier_detection's drizzle
    and resample's read the map once between them, not twice. The kept map's name
    is a digest of both WCSs and the map's parameters, so a kept result belongs to
    that map's values; the last use (``member_pixmap(keep=False)``) takes the kept
    results into the map it returns and removes their files with the map's.
    """
    from romancore.drizzle import row_extents as compiled

    from .._arrays import release_rows

    xmin, xmax, ymin, ymax = box = tuple(int(v) for v in box)
    kept = getattr(pixmap, "kept_path", None)
    side = None if kept is None else _extents_file(kept, box)
    values = getattr(pixmap, "kept_extents", {}).get(box)
    if values is None and side is not None:
        try:
            values = np.load(side)
        except (OSError, ValueError):
            values = None
    if values is not None and values.shape == (4, pixmap.shape[0]):
        return values[0].copy(), values[1].copy(), values[2].copy(), values[3].copy()
    ny = pixmap.shape[0]
    extents = np.empty((ny, 4))
    extents[:] = (np.inf, -np.inf, np.inf, -np.inf)
    flat = pixmap.reshape(ny, -1)
    step = 256
    for r0 in range(max(0, ymin), min(ny, ymax + 1), step):
        r1 = min(ymax + 1, r0 + step)
        extents[r0:r1] = compiled(pixmap[r0:r1], xmin, xmax)
        release_rows(flat, r0, r1)
    result = extents[:, 0].copy(), extents[:, 1].copy(), extents[:, 2].copy(), extents[:, 3].copy()
    if side is not None:
        # written whole, then renamed: a reader sees all of it or nothing
        partial = side.with_name(f"{side.stem}.partial")
        try:
            with open(partial, "wb") as fh:
                np.save(fh, np.stack(result))
            os.replace(partial, side)
        except OSError:  # the scratch folder gone or full: only a saving is lost
            partial.unlink(missing_ok=True)
    return result
