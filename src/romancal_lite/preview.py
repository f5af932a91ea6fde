"""Grayscale PNG previews of calibrated images, written with the standard library only."""

from __future__ import annotations

import math
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from romancore.dqflags import pixel

__all__ = ["write_png"]


def write_png(
    image: np.ndarray,
    path: str | os.PathLike[str],
    *,
    dq: np.ndarray | None = None,
    stretch: str = "asinh",
    percentiles: tuple[float, float] = (1.0, 99.5),
    max_size: int = 1080,
) -> Path:
    """Write an 8-bit grayscale PNG preview of a 2-D image (e.g. a ``_cal`` data array).

    Pixels that are NaN or flagged ``DO_NOT_USE`` in ``dq`` are excluded; images
    larger than ``max_size`` are block-averaged (over the valid pixels) by the
    smallest integer factor that fits; the display range is the ``percentiles``
    of the valid values, mapped linearly or by ``asinh(10 x) / asinh(10)``.  Blocks
    without valid pixels are black.  Row 0 is at the bottom, as in astronomical
    displays.  The file is written to a temporary file and renamed into place.

    Parameters
    ----------
    image : numpy.ndarray, 2-D
        The image.
    path : str or path-like
        Output PNG file.
    dq : numpy.ndarray, optional
        Pixel DQ of the same shape.
    stretch : {"asinh", "linear"}, optional
        Intensity mapping.
    percentiles : tuple of float, optional
        Lower and upper percentile of the valid values mapped to black and white.
    max_size : int, optional
        Largest side of the preview in pixels.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ValueError
        For a non-2-D image, a mismatched ``dq``, or bad options.
    """
    img = np.array(image, dtype=np.float64)
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"write_png needs a non-empty 2-D image, got shape {img.shape}")
    lo_pc, hi_pc = percentiles
    if stretch not in ("asinh", "linear") or max_size < 1 or not 0 <= lo_pc < hi_pc <= 100:
        raise ValueError(
            f"bad preview options: stretch={stretch!r}, percentiles={percentiles}, "
            f"max_size={max_size}"
        )
    img[~np.isfinite(img)] = np.nan
    if dq is not None:
        if np.shape(dq) != img.shape:
            raise ValueError(f"dq shape {np.shape(dq)} differs from image shape {img.shape}")
        img[(np.asarray(dq) & pixel.DO_NOT_USE) != 0] = np.nan
    f = math.ceil(max(img.shape) / max_size)
    if f > 1:  # block-average the valid pixels, padding with NaN
        ny, nx = (-(-n // f) * f for n in img.shape)
        img = np.pad(img, ((0, ny - img.shape[0]), (0, nx - img.shape[1])), constant_values=np.nan)
        blocks = img.reshape(ny // f, f, nx // f, f)
        n = np.isfinite(blocks).sum(axis=(1, 3))
        img = np.where(n > 0, np.nansum(blocks, axis=(1, 3)) / np.maximum(n, 1), np.nan)
    valid = np.isfinite(img)
    lo, hi = np.percentile(img[valid], [lo_pc, hi_pc]) if valid.any() else (0.0, 1.0)
    x = np.clip((np.where(valid, img, lo) - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    if stretch == "asinh":
        x = np.arcsinh(10.0 * x) / np.arcsinh(10.0)
    pixels = np.where(valid, np.rint(255.0 * x), 0).astype(np.uint8)[::-1]
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter type 0 per row

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], 8, 0, 0, 0, 0)  # 8-bit gray
    png = b"".join((b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", header),
                    chunk(b"IDAT", zlib.compress(raw, 6)), chunk(b"IEND", b"")))
    out = Path(path)
    folder = out.parent if str(out.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(png)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
