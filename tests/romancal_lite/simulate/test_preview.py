"""PNG previews: a valid file (chunks and CRCs checked here), stretch, masking, downsampling."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from romancal_lite.preview import write_png
from romancore.dqflags import pixel


def read_png(path):
    """Parse an 8-bit grayscale, filter-0 PNG; check every chunk's CRC; return the pixels."""
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos : pos + 4])
        kind = raw[pos + 4 : pos + 8]
        body = raw[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", raw[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(raw)
    kinds = [k for k, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height, depth, color, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, color, comp, filt, interlace) == (8, 0, 0, 0, 0)
    data = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    rows = np.frombuffer(data, np.uint8).reshape(height, width + 1)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:]


def test_png_is_valid_and_row_zero_is_at_the_bottom(tmp_path):
    image = np.tile(np.arange(10, dtype=float)[:, None], (1, 20))  # brighter upwards
    path = write_png(image, tmp_path / "p.png", stretch="linear", percentiles=(0, 100))
    assert path == tmp_path / "p.png"
    pixels = read_png(path)
    assert pixels.shape == (10, 20)
    assert (pixels[0] == 255).all() and (pixels[-1] == 0).all()
    assert (np.diff(pixels[:, 0].astype(int)) < 0).all()
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]  # no temporary file left


def test_nan_and_do_not_use_are_black(tmp_path):
    image = np.full((8, 8), 100.0)
    image[2, 3] = np.nan
    image[0, 0] = 1000.0
    dq = np.zeros((8, 8), np.uint32)
    dq[5, 6] = pixel.DO_NOT_USE | pixel.SATURATED
    dq[1, 1] = pixel.SATURATED  # other flags do not hide a pixel
    image[1, 1] = 1000.0
    pixels = read_png(write_png(image, tmp_path / "m.png", dq=dq, percentiles=(0, 100)))[::-1]
    assert pixels[2, 3] == 0 and pixels[5, 6] == 0
    assert pixels[0, 0] == 255 and pixels[1, 1] == 255
    assert pixels[4, 4] == 0  # the sky is the lower percentile
    empty = read_png(write_png(np.full((4, 4), np.nan), tmp_path / "e.png"))
    assert not empty.any()


def test_asinh_brightens_faint_levels(tmp_path):
    image = np.linspace(0.0, 1.0, 101)[None, :].repeat(3, axis=0)
    lin = read_png(write_png(image, tmp_path / "l.png", stretch="linear", percentiles=(0, 100)))
    ash = read_png(write_png(image, tmp_path / "a.png", percentiles=(0, 100)))
    assert lin[0, 10] == 26 and ash[0, 10] > 2 * lin[0, 10]
    assert lin[0, 0] == ash[0, 0] == 0 and lin[0, -1] == ash[0, -1] == 255


def test_large_images_are_block_averaged(tmp_path):
    image = np.zeros((3000, 2000))
    image[:1500] = 1.0
    image[0:2, 0:2] = np.nan  # a block keeps the mean of its valid pixels
    image[2997:, 1998:] = np.nan  # a partial edge block, all invalid: black
    pixels = read_png(write_png(image, tmp_path / "big.png", max_size=1080,
                                stretch="linear", percentiles=(0, 100)))[::-1]
    assert pixels.shape == (1000, 667)
    assert pixels[0, 0] == 255 and pixels[499, 5] == 255 and pixels[500, 5] == 0
    assert pixels[999, 666] == 0
    assert read_png(write_png(image, tmp_path / "s.png", max_size=300)).shape == (300, 200)


def test_pillow_reads_it_when_installed(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    path = write_png(np.random.default_rng(0).normal(size=(30, 40)), tmp_path / "r.png")
    with image_module.open(path) as im:
        assert im.size == (40, 30) and im.mode == "L"
        assert np.array_equal(np.asarray(im), read_png(path))


@pytest.mark.parametrize(
    ("image", "kwargs", "match"),
    [
        (np.zeros(5), {}, "2-D"),
        (np.zeros((0, 3)), {}, "2-D"),
        (np.zeros((4, 4)), {"dq": np.zeros((3, 3), np.uint32)}, "dq shape"),
        (np.zeros((4, 4)), {"stretch": "log"}, "stretch"),
        (np.zeros((4, 4)), {"percentiles": (50, 10)}, "percentiles"),
        (np.zeros((4, 4)), {"max_size": 0}, "max_size"),
    ],
)
def test_bad_preview_arguments(tmp_path, image, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_png(image, tmp_path / "x.png", **kwargs)
    assert not list(tmp_path.iterdir())
