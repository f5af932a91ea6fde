"""Synthetic full-frame Roman WFI exposures, shared by ``kernels.py`` and the asv suite.

The scene is built to exercise the kernels the way a real exposure does:

* a sky of 1-10 e/s (a smooth gradient across the detector);
* stars with a Gaussian PSF (sigma 1.2 px) and log-uniform fluxes, about 5000 per
  4096 x 4096 frame, roughly half of which saturate in their cores;
* cosmic rays at ~1e-3 hits per pixel per exposure, at a uniformly random read, with
  log-normal energies (median 1000 e); a hit inside a multi-read resultant only adds
  to the reads after it;
* ~10 e read noise per read (scaled by 1 / sqrt(N) for a resultant of N reads), a
  5000 DN pedestal, a per-pixel saturation level ~58000 DN above which the pixel
  stops integrating, rounded to integer DN and clipped at the 16-bit A/D limit;
* reference data: saturation thresholds (a few NaN / NO_SAT_CHECK pixels) and cubic
  linearity coefficients (a few NaN / NO_LIN_CORR pixels).

Gain is 1, so DN are electrons and the same cube feeds every kernel.  Photon noise is
drawn as Gaussian increments between the mean times of consecutive resultants (not
read by read), which is enough for benchmarking.  The cube is generated in chunks of
rows so that the only large allocation is the cube itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from romancore import apply_linearity, dqflags, flag_saturation

__all__ = [
    "FRAME_TIME",
    "Frame",
    "PeakRSS",
    "bench_shape",
    "dqflags_dict",
    "make_frame",
    "prepared",
    "process_peak_rss",
    "read_pattern",
]

#: Seconds between reads of the Roman WFI (romanisim.models.parameters.read_time).
FRAME_TIME = 3.16247

#: Reads per resultant of the romanisim 0.14 MA tables with 9 and 15 resultants
#: (``romanisim.models.parameters.read_pattern[4]`` and ``[6]``), reads contiguous.
MA_TABLE_READS = {
    9: (4, (1, 1, 2, 5, 8, 8, 8, 10, 1)),
    15: (6, (1, 1, 2, 6, 6, 6, 8, 8, 8, 8, 8, 10, 10, 10, 1)),
}

PEDESTAL = 5000.0
ATOD_LIMIT = 65535.0
STARS_PER_FULL_FRAME = 5000
CR_RATE = 1e-3  # hits per pixel per exposure
READ_NOISE = 10.0  # e per read
DEFAULT_SEED = 20240601


def _reads_per_resultant(n_resultants: int) -> tuple[int, ...]:
    if n_resultants in MA_TABLE_READS:
        return MA_TABLE_READS[n_resultants][1]
    # Something shaped like the real tables: single reads first and last, growing groups.
    if n_resultants < 1:
        raise ValueError("n_resultants must be >= 1")
    if n_resultants <= 4:
        return {1: (1,), 2: (1, 1), 3: (1, 2, 1), 4: (1, 1, 2, 1)}[n_resultants]
    middle = np.rint(np.linspace(4, 10, n_resultants - 4)).astype(int)
    return (1, 1, 2, *middle.tolist(), 1)


def read_pattern(n_resultants: int) -> list[list[int]]:
    """Return an uneven Roman read pattern (1-based reads) with ``n_resultants`` resultants.

    9 and 15 resultants are the romanisim MA tables 4 and 6; other lengths are
    constructed in the same style (1, 1, 2, growing groups up to 10 reads, 1).
    """
    pattern, first = [], 1
    for n in _reads_per_resultant(n_resultants):
        pattern.append(list(range(first, first + n)))
        first += n
    return pattern


def dqflags_dict() -> dict[str, int]:
    """Pixel DQ flags as ``{name: value}`` (what stcal expects)."""
    return {name: int(flag.value) for name, flag in dqflags.pixel.__members__.items()}


def bench_shape(default: tuple[int, int] = (4096, 4096)) -> tuple[int, int]:
    """Frame shape for the asv suite.

    ``ROMANCORE_BENCH_SIZE`` is ``NY`` (rows of the full 4096-column width) or
    ``NYxNX``; otherwise ``ASV_SKIP_SLOW=1`` gives 1024 x 4096, else ``default``.
    """
    size = os.environ.get("ROMANCORE_BENCH_SIZE", "").strip().lower()
    if size:
        if "x" in size:
            ny, nx = (int(s) for s in size.split("x"))
        else:
            ny, nx = int(size), 4096
        return ny, nx
    if os.environ.get("ASV_SKIP_SLOW", "") not in ("", "0"):
        return 1024, 4096
    return default


@dataclass
class Frame:
    """One synthetic exposure and its reference data (see the module docstring)."""

    data: np.ndarray  # float32 (n, ny, nx), DN (= e), raw
    read_noise: np.ndarray  # float32 (ny, nx), e per read
    sat_thresh: np.ndarray  # float32 (ny, nx), DN
    sat_dq: np.ndarray  # uint32 (ny, nx)
    lin_coeffs: np.ndarray  # float32 (4, ny, nx)
    lin_dq: np.ndarray  # uint32 (ny, nx)
    read_pattern: list[list[int]]
    frame_time: float = FRAME_TIME
    stats: dict = field(default_factory=dict)

    @property
    def n_pixels(self) -> int:
        """Pixels per frame (ny * nx)."""
        return self.data.shape[1] * self.data.shape[2]


def _rate_map(rng: np.random.Generator, ny: int, nx: int) -> tuple[np.ndarray, int]:
    y = np.linspace(0.0, 1.0, ny, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, nx, dtype=np.float32)[None, :]
    rate = (1.0 + 4.5 * (x + y)).astype(np.float32)  # 1 .. 10 e/s
    n_stars = max(1, round(STARS_PER_FULL_FRAME * ny * nx / 4096**2))
    sy = rng.uniform(0, ny, n_stars)
    sx = rng.uniform(0, nx, n_stars)
    flux = 10 ** rng.uniform(np.log10(30.0), np.log10(3e5), n_stars)  # e/s
    iy, ix = np.floor(sy).astype(np.int64), np.floor(sx).astype(np.int64)
    fy, fx = sy - iy - 0.5, sx - ix - 0.5
    sigma, radius = 1.2, 5
    norm = flux / (2 * np.pi * sigma**2)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            yy, xx = iy + dy, ix + dx
            ok = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
            w = norm * np.exp(-((dy - fy) ** 2 + (dx - fx) ** 2) / (2 * sigma**2))
            np.add.at(rate, (yy[ok], xx[ok]), w[ok].astype(np.float32))
    return rate, n_stars


def make_frame(
    n_resultants: int,
    ny: int = 4096,
    nx: int = 4096,
    *,
    seed: int = DEFAULT_SEED,
    chunk_rows: int = 256,
) -> Frame:
    """Build a synthetic exposure (deterministic for a given seed and shape)."""
    rng = np.random.default_rng([seed, n_resultants, ny, nx])
    pattern = read_pattern(n_resultants)
    read_times = [np.asarray(r, dtype=np.float64) * FRAME_TIME for r in pattern]
    t_bar = np.array([t.mean() for t in read_times])
    n_reads = np.array([len(t) for t in read_times])
    dt = np.diff(t_bar, prepend=0.0).astype(np.float32)
    t_end = read_times[-1][-1]

    rate, n_stars = _rate_map(rng, ny, nx)

    read_noise = np.clip(rng.normal(READ_NOISE, 1.0, (ny, nx)), 3.0, None).astype(np.float32)
    sat_thresh = rng.normal(58000.0, 1500.0, (ny, nx)).astype(np.float32)
    sat_dq = np.zeros((ny, nx), dtype=np.uint32)
    bad = rng.random((ny, nx)) < 1e-4
    sat_thresh[bad] = np.nan
    sat_dq[rng.random((ny, nx)) < 1e-4] |= np.uint32(dqflags.pixel.NO_SAT_CHECK)
    # True saturation level of the pixel: it stops integrating a little above threshold.
    full_well = np.where(np.isnan(sat_thresh), ATOD_LIMIT, sat_thresh * 1.03).astype(np.float32)

    lin_coeffs = np.empty((4, ny, nx), dtype=np.float32)
    lin_coeffs[0] = rng.normal(0.0, 1.0, (ny, nx))
    lin_coeffs[1] = rng.normal(1.0, 0.01, (ny, nx))
    lin_coeffs[2] = rng.normal(1.2e-6, 1.2e-7, (ny, nx))
    lin_coeffs[3] = rng.normal(4e-12, 4e-13, (ny, nx))
    nan_pix = rng.random((ny, nx)) < 1e-5
    lin_coeffs[2][nan_pix] = np.nan
    lin_dq = np.zeros((ny, nx), dtype=np.uint32)
    lin_dq[rng.random((ny, nx)) < 1e-5] |= np.uint32(dqflags.pixel.NO_LIN_CORR)

    data = np.empty((n_resultants, ny, nx), dtype=np.float32)
    n_cr = 0
    for r0 in range(0, ny, chunk_rows):
        r1 = min(r0 + chunk_rows, ny)
        shape = (r1 - r0, nx)
        rate_c = rate[r0:r1]
        rn_c = read_noise[r0:r1]
        well_c = full_well[r0:r1]
        pedestal = (PEDESTAL + rng.normal(0.0, 100.0, shape)).astype(np.float32)
        signal = np.zeros(shape, dtype=np.float32)
        # Cosmic rays of this chunk (duplicates allowed: a pixel may be hit twice).
        hits = rng.poisson(CR_RATE * shape[0] * shape[1])
        n_cr += hits
        cr_pix = rng.integers(0, shape[0] * shape[1], hits)
        cr_time = rng.uniform(0.0, t_end, hits)
        cr_e = np.clip(rng.lognormal(np.log(1000.0), 1.0, hits), 50.0, 3e4)
        cr_signal = np.zeros(shape, dtype=np.float32)
        cr_flat = cr_signal.reshape(-1)
        for i in range(n_resultants):
            mean = rate_c * dt[i]
            signal += mean + np.sqrt(mean) * rng.standard_normal(shape, dtype=np.float32)
            # Charge of the hits up to this resultant: fraction of its reads after the hit.
            frac = (read_times[i][None, :] >= cr_time[:, None]).mean(axis=1)
            total = signal + cr_signal
            if hits:
                # cr_signal holds the full charge of hits before this resultant.
                partial = np.zeros(shape, dtype=np.float32).reshape(-1)
                np.add.at(partial, cr_pix, (cr_e * frac).astype(np.float32))
                total += partial.reshape(shape)
                done = read_times[i][-1] >= cr_time
                np.add.at(cr_flat, cr_pix[done], cr_e[done].astype(np.float32))
                cr_pix, cr_time, cr_e = cr_pix[~done], cr_time[~done], cr_e[~done]
                hits = len(cr_pix)
            np.minimum(total, well_c - pedestal, out=total)
            total += pedestal
            total += (rn_c / np.sqrt(n_reads[i])) * rng.standard_normal(shape, dtype=np.float32)
            np.rint(total, out=total)
            np.clip(total, 0.0, ATOD_LIMIT, out=total)
            data[i, r0:r1] = total
    del rate, full_well
    stats = {
        "n_stars": n_stars,
        "n_cosmic_rays": int(n_cr),
        "exposure_time": float(t_end),
        "saturated_last_fraction": float(np.mean(data[-1] >= np.nan_to_num(sat_thresh, nan=7e4))),
    }
    return Frame(data, read_noise, sat_thresh, sat_dq, lin_coeffs, lin_dq, pattern,
                 FRAME_TIME, stats)


@dataclass
class Prepared:
    """A frame plus the inputs of the later kernels and reusable work buffers."""

    frame: Frame
    gdq_sat: np.ndarray  # uint8 group DQ after saturation
    pdq_sat: np.ndarray  # uint32 pixel DQ after saturation
    linearized: np.ndarray  # float32 cube after saturation + linearity: the fit's input
    work_data: np.ndarray
    work_gdq: np.ndarray
    work_pdq: np.ndarray


_CACHE: dict[tuple, Prepared] = {}


def prepared(n_resultants: int, shape: tuple[int, int] | None = None) -> Prepared:
    """Return the (cached) frame with ``n_resultants`` run through saturation + linearity.

    Only the last frame is kept, so a process holds at most one cube set in memory.
    """
    shape = bench_shape() if shape is None else shape
    key = (n_resultants, *shape)
    if key not in _CACHE:
        _CACHE.clear()
        frame = make_frame(n_resultants, *shape)
        gdq = np.zeros(frame.data.shape, dtype=np.uint8)
        pdq = np.zeros(shape, dtype=np.uint32)
        flag_saturation(frame.data, gdq, pdq, frame.sat_thresh, frame.sat_dq,
                        frame.read_pattern)
        linearized = frame.data.copy()
        pdq_lin = pdq.copy()
        apply_linearity(linearized, gdq, pdq_lin, frame.lin_coeffs, frame.lin_dq)
        # Work buffers are filled now so that no page fault lands inside a timed call.
        work = [np.empty_like(a) for a in (frame.data, gdq, pdq)]
        for a in work:
            a.fill(0)
        _CACHE[key] = Prepared(frame, gdq, pdq, linearized, *work)
    return _CACHE[key]


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


_PROCESS_PEAK = 0


def process_peak_rss() -> int | None:
    """Peak resident memory of the process in bytes, despite :class:`PeakRSS` resets."""
    try:
        return max(_PROCESS_PEAK, _status_bytes("VmHWM"))
    except (OSError, KeyError):
        return None


class PeakRSS:
    """Context manager: peak resident memory above the RSS at entry (Linux only).

    Resets the kernel's high-water mark through ``/proc/self/clear_refs``; ``extra``
    is None where that is not possible.
    """

    def __init__(self) -> None:
        self.extra: int | None = None
        self._ok = False

    def __enter__(self) -> PeakRSS:
        global _PROCESS_PEAK
        try:
            _PROCESS_PEAK = max(_PROCESS_PEAK, _status_bytes("VmHWM"))
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._start = _status_bytes("VmRSS")
            self._ok = True
        except OSError:
            self._ok = False
        return self

    def __exit__(self, *exc) -> None:
        if self._ok:
            self.extra = max(_status_bytes("VmHWM") - self._start, 0)
