"""Array work of ``dq_init``: raw DN to a float32 ramp, the MASK, the reference border.

seeds/000:377-392 (the step) and 678-700 (the border reference pixels). Kept apart from
the step class so it can be tested and reused on plain arrays.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from romancal_lite.references._spec import BORDER
from romancal_lite.steps._arrays import empty_releasable
from romancore import effective_n_threads
from romancore.dqflags import pixel

__all__ = [
    "BORDER",
    "GUIDE_STAR_TYPES",
    "border_reference_arrays",
    "flag_guide_window",
    "to_ramp_arrays",
]


#: Guide-star exposure types: the MASK goes into their ``dq``, not a ``pixeldq``
#: (seeds/000:388).
GUIDE_STAR_TYPES: frozenset[str] = frozenset(
    {"WFI_WIM_ACQ", "WFI_WIM_TRACK", "WFI_WSM_ACQ1", "WFI_WSM_ACQ2", "WFI_WSM_TRACK"}
)


def to_ramp_arrays(
    raw: np.ndarray,
    mask_dq: np.ndarray | None = None,
    *,
    resultantdq: np.ndarray | None = None,
    reference_read: np.ndarray | None = None,
    encoding_offset: float = 0.0,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert a raw resultant cube into the ramp arrays ``data``, ``pixeldq``, ``groupdq``.

    Parameters
    ----------
    raw : numpy.ndarray or romancal_lite.datamodels.Lz4Chunks, shape (n_resultants, ny, nx)
        Raw resultants (uint16 DN in a Level 1 file); an unread lz4 array
        (``DataModel.array_chunks``) is converted chunk by chunk as it decompresses,
        never held whole.
    mask_dq : numpy.ndarray of uint32, shape (ny, nx), optional
        The MASK reference ``dq``; OR-ed into ``pixeldq``.
    resultantdq : numpy.ndarray of uint8, shape of ``raw``, optional
        Resultant DQ delivered with the raw data; it becomes ``groupdq``.
    reference_read : numpy.ndarray, shape (ny, nx), optional
        A reference read subtracted on board; it is added back to every resultant.
    encoding_offset : float, optional
        A constant added when the data were encoded; it is subtracted.
    n_threads : int or None, optional
        Threads converting resultant planes (see `romancore.effective_n_threads`).

    Returns
    -------
    data : numpy.ndarray of float32, shape of ``raw``
        The resultants in DN (a new array; the only full-size allocation).
    pixeldq : numpy.ndarray of uint32, shape (ny, nx)
        The MASK flags (zeros without a mask).
    groupdq : numpy.ndarray of uint8, shape of ``raw``
        ``resultantdq`` or zeros.

    Raises
    ------
    ValueError
        If ``raw`` is not 3-D or another array does not match its shape.
    """
    if raw.ndim != 3:
        raise ValueError(f"raw data must be 3-D (resultants, rows, columns), got shape {raw.shape}")
    shape2 = raw.shape[1:]
    # releasable: ramp_fit in the pipeline hands the cube back row block by row block;
    # huge pages: the ramp and groupdq are fresh pages that dq_init and saturation
    # touch first (4 KiB faults cost saturation ~0.8 s of CPU on a full frame)
    data = empty_releasable(raw.shape, np.float32, huge_pages=True)
    if reference_read is not None and reference_read.shape != shape2:
        raise ValueError(f"reference_read has shape {reference_read.shape}, data {shape2}")

    def convert(k: int) -> None:  # one plane at a time: no float64 or extra temporaries
        np.copyto(data[k], raw[k], casting="unsafe")
        if reference_read is not None:
            data[k] += reference_read

    if isinstance(raw, np.ndarray):
        # numpy releases the GIL while casting: planes convert in parallel
        with ThreadPoolExecutor(effective_n_threads(n_threads)) as pool:
            list(pool.map(convert, range(raw.shape[0])))
    else:
        _convert_chunks(raw, data, reference_read, effective_n_threads(n_threads))
    if encoding_offset:
        data -= np.float32(encoding_offset)
    pixeldq = np.zeros(shape2, dtype=np.uint32)
    if mask_dq is not None:
        if mask_dq.shape != shape2:
            raise ValueError(f"MASK dq has shape {mask_dq.shape}, the data need {shape2}")
        pixeldq |= mask_dq.astype(np.uint32, copy=False)
    if resultantdq is not None:
        if resultantdq.shape != raw.shape:
            raise ValueError(f"resultantdq has shape {resultantdq.shape}, data {raw.shape}")
        groupdq = empty_releasable(raw.shape, np.uint8, huge_pages=True)
        np.copyto(groupdq, resultantdq, casting="unsafe")
    else:
        groupdq = empty_releasable(raw.shape, np.uint8, huge_pages=True)
    return data, pixeldq, groupdq


def _convert_chunks(raw: Any, data: np.ndarray, reference_read: np.ndarray | None,
                    n_threads: int) -> None:
    """Fill ``data`` from the chunks of an unread array (`to_ramp_arrays`), in threads.

    Each chunk is cast into its place of the flat ramp (the same float32 values as the
    cast of the whole plane); the reference read is added to the part of each plane
    the chunk covers.
    """
    flat = data.reshape(-1)
    plane = data.shape[1] * data.shape[2]
    read = None if reference_read is None else reference_read.reshape(-1)

    def work(first: int, values: np.ndarray) -> None:
        out = flat[first : first + values.size]
        np.copyto(out, values, casting="unsafe")
        if read is None:
            return
        done = 0
        while done < values.size:  # the chunk's pieces of each plane
            at = (first + done) % plane
            n = min(plane - at, values.size - done)
            out[done : done + n] += read[at : at + n]
            done += n

    raw.each(work, n_threads)


def flag_guide_window(
    pixeldq: np.ndarray, window: tuple[int, int, int, int], expand: int = 0
) -> bool:
    """Flag the pixels read by the guide window ``GW_AFFECTED_DATA | DO_NOT_USE``.

    Parameters
    ----------
    pixeldq : numpy.ndarray of uint32, shape (ny, nx)
        Pixel DQ, updated in place.
    window : tuple of int
        ``(xstart, xstop, ystart, ystop)`` of ``meta.guide_star`` (stop exclusive).
    expand : int, optional
        Grow the window by this many pixels on every side.

    Returns
    -------
    bool
        Whether the window lies on the array (and was flagged).
    """
    xstart, xstop, ystart, ystop = (int(v) for v in window)
    ny, nx = pixeldq.shape
    if not (0 <= xstart < nx and 0 <= ystart < ny and xstop > xstart and ystop > ystart):
        return False
    xstart, ystart = max(xstart - expand, 0), max(ystart - expand, 0)
    xstop, ystop = min(xstop + expand, nx), min(ystop + expand, ny)
    pixeldq[ystart:ystop, xstart:xstop] |= np.uint32(pixel.GW_AFFECTED_DATA | pixel.DO_NOT_USE)
    return True


def border_reference_arrays(data: np.ndarray, pixeldq: np.ndarray) -> dict[str, np.ndarray]:
    """Copy the 4-pixel reference border aside, as the ramp model keeps it.

    Parameters
    ----------
    data : numpy.ndarray of float32, shape (n, ny, nx)
        Ramp resultants.
    pixeldq : numpy.ndarray of uint32, shape (ny, nx)
        Pixel DQ.

    Returns
    -------
    dict
        ``border_ref_pix_{left,right,top,bottom}`` (float32, ``[n, ny, 4]`` /
        ``[n, 4, nx]``) and ``dq_border_ref_pix_*`` (uint32, 2-D), copies.
    """
    b = BORDER
    return {
        "border_ref_pix_left": data[:, :, :b].copy(),
        "border_ref_pix_right": data[:, :, -b:].copy(),
        "border_ref_pix_top": data[:, :b, :].copy(),
        "border_ref_pix_bottom": data[:, -b:, :].copy(),
        "dq_border_ref_pix_left": pixeldq[:, :b].copy(),
        "dq_border_ref_pix_right": pixeldq[:, -b:].copy(),
        "dq_border_ref_pix_top": pixeldq[:b, :].copy(),
        "dq_border_ref_pix_bottom": pixeldq[-b:, :].copy(),
    }
