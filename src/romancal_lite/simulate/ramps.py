"""Up-the-ramp sampling: charge accumulation, detector response and read-out electronics.

For each science pixel with detected rate ``R`` (e/s: incident rate times flat plus
dark current) and each read ``k`` of the read pattern, at ``t_k = k * frame_time``:

1. charge ``S_k = S_{k'} + Poisson(R (t_k - t_{k'}))`` (``k'`` the previous read
   sampled; reads the pattern skips are merged into the next increment, which is
   exact for a Poisson process), plus the charge of every cosmic ray that hit in
   ``(t_{k'}, t_k]``;
2. full well: the pixel holds at most ``S_full = gain (L(D_full) - L(p))``
   electrons, ``D_full = (1 + margin) * saturation`` (the SATURATION reference
   threshold, raw DN), ``p`` the pixel's pedestal (raw DN, its level with no
   charge, the amplifier's bias included), ``L`` the LINEARITY polynomial;
3. detector response, in the convention of the official LINEARITY reference files:
   ``D_k = L^{-1}(L(p) + min(S_k, S_full) / gain)``, the polynomial acting on the
   pixel's own level (pedestal included), which is what the linearity correction
   sees after a reference-pixel correction that keeps that level (romancal 1.1's,
   and romancal_lite's); ``L^{-1}`` is the exact inverse of the pipeline's polynomial
   (closed form for a quadratic ``L``, Newton iterations seeded by the
   INVERSELINEARITY polynomial otherwise);
   then, with an INTEGRALNONLINEARITY reference, the raw read ``r_k`` whose
   INL-corrected value (``r + INL_channel(r)``, what the pipeline computes) is ``D_k``;
4. a resultant is the mean of the ``D_k`` (``r_k``) of its reads, plus the electronic offsets
   of that resultant (per amplifier and column parity, and a row drift common to
   all amplifiers: electronics, added after the detector response), plus read noise
   ``N(0, rn / sqrt(n_reads))`` (the mean of independent per-read noises), rounded
   to integer DN and clipped to 0..65535.

Reference pixels (the 4-pixel border and amp33) see no charge: only their
pedestal, the same electronic offsets and read noise.

The sampling itself is compiled (`romancore.simramps.simulate_ramp_block`, OpenMP over
rows): each row of the read-out draws its Poisson charges and read noise from its own
random stream, a function of the seed and the row only, so the exposure is the same
for any number of threads.  The per-pixel constants are prepared in blocks of
:data:`BLOCK_ROWS` rows (each block also draws its own cosmic rays), so memory
stays bounded: no array of the size of a cube besides the outputs.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from romancore.dqflags import group
from romancore.simramps import simulate_ramp_block

from ..references._content import ROW_DRIFT_RMS
from ..references._spec import BORDER
from ._refs import ATOD_LIMIT, DetectorReferences

__all__ = [
    "AMP33_WIDTH",
    "BLOCK_ROWS",
    "CHANNEL_WIDTH",
    "CosmicRayModel",
    "Electronics",
    "RampResult",
    "amplifier_channel",
    "make_electronics",
    "simulate_ramps",
]

#: Rows per processing block.
BLOCK_ROWS = 128
#: Columns read by one amplifier (output channel); the WFI has 32 of them.
CHANNEL_WIDTH = 128
#: Width of the amp33 reference-column array.
AMP33_WIDTH = 128

# Random streams (the second element of each generator's seed).
STREAM_BLOCK = 1
STREAM_CR = 2
STREAM_PEDESTAL = 3
STREAM_DRIFT = 4
STREAM_SCENE = 5

JUMP_DET = int(group.JUMP_DET)
SATURATED = int(group.SATURATED)


def amplifier_channel(nx: int) -> np.ndarray:
    """Return the amplifier (output channel) index of each column of the read-out.

    Parameters
    ----------
    nx : int
        Width of the full read-out (science plus border).

    Returns
    -------
    numpy.ndarray of int
        ``x // 128``; amp33 is channel ``ceil(nx / 128)``.
    """
    return np.arange(nx) // CHANNEL_WIDTH


@dataclass
class Electronics:
    """Pedestal and electronic offsets of an exposure (all in DN).

    Attributes
    ----------
    pedestal : numpy.ndarray of float32, (ny, nx)
        Raw level of each pixel with no charge (before offsets and noise).
    amp33_pedestal : numpy.ndarray of float32, (ny, 128)
        The same for amp33.
    reference_level : numpy.ndarray of float64, (n_channels + 1,)
        Level of each amplifier (last: amp33) about which its pixels' pedestals
        scatter (descriptive: the non-linearity acts on the pixel's whole level,
        pedestal included).
    channel_offsets : numpy.ndarray of float32, (n_resultants, n_channels + 1, 2)
        Offset of each amplifier channel (last: amp33) in each resultant, for even
        (``[..., 0]``) and odd (``[..., 1]``) detector columns.
    row_drift : numpy.ndarray of float32, (n_resultants, ny)
        The 1/f-like drift common to every amplifier, per row, averaged over the
        reads of each resultant.
    """

    pedestal: np.ndarray
    amp33_pedestal: np.ndarray
    reference_level: np.ndarray
    channel_offsets: np.ndarray
    row_drift: np.ndarray

    def offsets(self, resultant: int, r0: int, r1: int, amp33: bool = False) -> np.ndarray:
        """Return the electronic offset of rows ``r0:r1`` in a resultant.

        Parameters
        ----------
        resultant : int
            Resultant index.
        r0, r1 : int
            Row range.
        amp33 : bool, optional
            For the amp33 columns instead of the read-out.

        Returns
        -------
        numpy.ndarray of float64, (r1 - r0, nx or 128)
            ``channel_offsets[resultant, channel(x), x % 2] + row_drift[resultant, y]``.
        """
        offsets = self.channel_offsets[resultant].astype(np.float64)
        if amp33:
            columns = offsets[-1, np.arange(AMP33_WIDTH) % 2]
        else:
            nx = self.pedestal.shape[1]
            x = np.arange(nx)
            columns = offsets[amplifier_channel(nx), x % 2]
        return columns[None, :] + self.row_drift[resultant, r0:r1, None].astype(np.float64)


def _one_over_f(n: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``n`` samples of zero-mean, unit-rms noise with a 1/f power spectrum."""
    if n < 4:
        return rng.standard_normal(n)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    scale = np.zeros_like(f)
    scale[1:] = 1.0 / np.sqrt(f[1:])
    series = np.fft.irfft(spectrum * scale, n)
    rms = series.std()
    return series / rms if rms > 0 else series


def make_electronics(
    full_shape: tuple[int, int],
    read_pattern: list[list[int]],
    frame_time: float,
    seed: int,
    *,
    pedestal_level: float = 6000.0,
    drift_scale: float = 1.0,
) -> Electronics:
    """Draw the pedestal and the electronic offsets of an exposure.

    * pedestal: the channel's reference level (``pedestal_level`` + N(0, 150) DN per
      channel) + per-column N(0, 10) + per-pixel N(0, 20) DN (amp33 likewise, as
      one more channel);
    * channel offsets (times ``drift_scale``): per channel and parity a constant
      N(0, 10) DN (odd columns another N(0, 5) DN from even ones), a linear drift in
      time of N(0, 0.05) DN/s from the start of the exposure, and N(0, 1) DN of
      jitter per resultant;
    * row drift (times ``drift_scale``): per read, 1/f noise along the rows of rms
      1.5 DN, the same for every channel and amp33; a resultant gets the mean of
      its reads' drifts.

    Parameters
    ----------
    full_shape : tuple of int
        ``(ny, nx)`` of the read-out.
    read_pattern : list of list of int
        The read pattern.
    frame_time : float
        Seconds between reads.
    seed : int
        Base seed.
    pedestal_level : float, optional
        Mean pedestal (DN).
    drift_scale : float, optional
        Multiplies every offset and drift (0 disables them).

    Returns
    -------
    Electronics
        The drawn values.
    """
    ny, nx = full_shape
    n_channels = math.ceil(nx / CHANNEL_WIDTH)
    rng = np.random.default_rng([seed, STREAM_PEDESTAL])
    channel = rng.normal(0.0, 150.0, n_channels + 1)
    pedestal = np.empty((ny, nx), dtype=np.float32)
    pedestal[...] = pedestal_level + channel[amplifier_channel(nx)][None, :]
    pedestal += rng.normal(0.0, 10.0, nx).astype(np.float32)[None, :]
    pedestal += rng.normal(0.0, 20.0, (ny, nx)).astype(np.float32)
    amp33 = np.empty((ny, AMP33_WIDTH), dtype=np.float32)
    amp33[...] = pedestal_level + channel[-1]
    amp33 += rng.normal(0.0, 10.0, AMP33_WIDTH).astype(np.float32)[None, :]
    amp33 += rng.normal(0.0, 20.0, (ny, AMP33_WIDTH)).astype(np.float32)

    rng = np.random.default_rng([seed, STREAM_DRIFT])
    n_res = len(read_pattern)
    t_bar = np.array([np.mean(r) for r in read_pattern]) * frame_time
    base = rng.normal(0.0, 10.0, (n_channels + 1, 1)) + np.array([[0.0, 1.0]]) * rng.normal(
        0.0, 5.0, (n_channels + 1, 1)
    )
    trend = rng.normal(0.0, 0.05, (n_channels + 1, 1))
    jitter = rng.normal(0.0, 1.0, (n_res, n_channels + 1, 2))
    offsets = base[None] + trend[None] * t_bar[:, None, None] + jitter
    row_drift = np.zeros((n_res, ny))
    for i, reads in enumerate(read_pattern):
        for _ in reads:
            row_drift[i] += ROW_DRIFT_RMS * _one_over_f(ny, rng)
        row_drift[i] /= len(reads)
    return Electronics(
        pedestal=pedestal,
        amp33_pedestal=amp33,
        reference_level=pedestal_level + channel,
        channel_offsets=(drift_scale * offsets).astype(np.float32),
        row_drift=(drift_scale * row_drift).astype(np.float32),
    )


@dataclass
class CosmicRayModel:
    """Cosmic-ray hits: rate, charge distribution.

    Attributes
    ----------
    rate : float
        Hits per science pixel per second.
    median_charge : float
        Median deposited charge (e); log-normal.
    sigma : float
        Standard deviation of the natural log of the charge.
    charge_range : tuple of float
        Charges are clipped to this range (e).
    """

    rate: float = 2.0e-5
    median_charge: float = 1500.0
    sigma: float = 0.9
    charge_range: tuple[float, float] = (50.0, 1.0e5)


@dataclass
class RampResult:
    """Output of :func:`simulate_ramps`.

    Attributes
    ----------
    data : numpy.ndarray of uint16, (n_resultants, ny, nx)
    amp33 : numpy.ndarray of uint16, (n_resultants, ny, 128)
    rate : numpy.ndarray of float32, (ny - 8, nx - 8)
        Truth: incident rate / gain (DN/s), what the calibrated image should hold.
    saturated_resultant : numpy.ndarray of int16, (ny - 8, nx - 8)
        First resultant whose noise-free level reaches the saturation threshold, or -1.
    dq : numpy.ndarray of uint8, (n_resultants, ny, nx)
        JUMP_DET on the resultant where a cosmic ray first appears, SATURATED on
        saturated resultants.
    cosmic_rays : dict
        Columns ``y``, ``x`` (read-out pixels), ``time`` (s), ``read``,
        ``resultant`` and ``charge`` (e), one entry per hit.
    """

    data: np.ndarray
    amp33: np.ndarray
    rate: np.ndarray
    saturated_resultant: np.ndarray
    dq: np.ndarray
    cosmic_rays: dict[str, np.ndarray]


def _horner(coeffs: np.ndarray, x: np.ndarray) -> np.ndarray:
    out = np.array(coeffs[-1], dtype=np.float64, copy=True) * np.ones_like(x)
    for c in coeffs[-2::-1]:
        out *= x
        out += c
    return out


def _horner_derivative(coeffs: np.ndarray, x: np.ndarray) -> np.ndarray:
    n = coeffs.shape[0]
    out = np.full_like(x, 0.0) + (n - 1) * coeffs[-1]
    for k in range(n - 2, 0, -1):
        out *= x
        out += k * coeffs[k]
    return out


class _IntegralNonlinearity:
    """The integral non-linearity of the science columns ``c0:c1`` of a block.

    The pipeline (romancal 1.1) adds ``INL(r)`` to a raw read ``r``, ``INL`` the
    piecewise linear table of the read's 128-column channel, constant beyond it.  The
    simulator therefore records, for a level ``D``, the raw read ``r`` with
    ``r + INL(r) = D``: two fixed-point steps ``r = D - INL(D - INL(D))`` (the table
    varies slowly, so the residual is ``INL'^2 INL``, far below a micro-DN).
    """

    def __init__(self, tables: tuple[np.ndarray, np.ndarray], c0: int, c1: int) -> None:
        self.x, corr = tables
        self.y = corr
        with np.errstate(all="ignore"):
            self.s = np.diff(corr, axis=1) / np.diff(self.x)
        self.channel = (np.arange(c0, c1) // 128)[None, :]

    def correction(self, u: np.ndarray) -> np.ndarray:
        """Return ``INL(u)`` for levels ``u`` of shape ``(rows, c1 - c0)``."""
        x = self.x
        u = np.clip(u, x[0], x[-1])
        j = np.searchsorted(x, u, side="right") - 1
        np.clip(j, 0, x.size - 2, out=j)
        return self.y[self.channel, j] + self.s[self.channel, j] * (u - x[j])

    def raw(self, level: np.ndarray) -> np.ndarray:
        """Return the raw read whose INL-corrected value is ``level``."""
        return level - self.correction(level - self.correction(level))


class _Response:
    """The detector response ``D = L^{-1}(y)`` of the pixels of one block."""

    def __init__(
        self,
        mode: str,
        linearity: np.ndarray | None,
        inverse: np.ndarray | None,
    ) -> None:
        self.mode = mode
        self.lin = linearity if mode != "none" else None
        self.inv = inverse
        self.quadratic = False
        if mode == "linearity" and self.lin is not None:
            if self.lin.shape[0] <= 3 or not np.any(self.lin[3:]):
                self.quadratic = True
                c = self.lin
                self.c0 = c[0].copy()
                self.c1 = c[1].copy()
                self.c1sq = c[1] * c[1]
                self.c2x4 = 4.0 * c[2] if c.shape[0] > 2 else np.zeros_like(c[1])

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return the linearity correction ``L(x)`` (identity without LINEARITY)."""
        if self.mode == "none" or self.lin is None:
            return np.array(x, dtype=np.float64, copy=True)
        return _horner(self.lin, x)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """Return the response ``L^{-1}(y)``: raw DN for linearized DN ``y``."""
        if self.mode == "none":
            return y.copy()
        if self.mode == "inverselinearity":
            return y.copy() if self.inv is None else _horner(self.inv, y)
        if self.lin is None:
            return y.copy()
        if self.quadratic:
            d = y - self.c0
            t = self.c2x4 * d
            t += self.c1sq
            np.maximum(t, 0.0, out=t)
            np.sqrt(t, out=t)
            t += self.c1
            d *= 2.0
            d /= t
            return d
        x = _horner(self.inv, y) if self.inv is not None else y.copy()
        for _ in range(50):
            step = (_horner(self.lin, x) - y) / _horner_derivative(self.lin, x)
            x -= step
            if not np.any(np.abs(step) > 1e-9 * np.maximum(np.abs(x), 1.0)):
                break
        return x


def _sampled_reads(read_pattern: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    reads = np.array([r for res in read_pattern for r in res], dtype=np.int64)
    owner = np.array([i for i, res in enumerate(read_pattern) for _ in res], dtype=np.int64)
    return reads, owner


def default_threads() -> int:
    """Return the default number of simulation threads.

    ``ROMANCAL_LITE_SIM_THREADS`` if set, else the CPUs this process may use, at most 4.

    Returns
    -------
    int
        At least 1.
    """
    text = os.environ.get("ROMANCAL_LITE_SIM_THREADS", "").strip()
    if text:
        try:
            return max(1, int(text))
        except ValueError:
            pass
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def simulate_ramps(
    rate_e: np.ndarray,
    refs: DetectorReferences,
    electronics: Electronics,
    read_pattern: list[list[int]],
    frame_time: float,
    seed: int,
    *,
    cosmic_rays: CosmicRayModel | None = None,
    poisson: bool = True,
    read_noise: bool = True,
    nonlinearity: str = "linearity",
    full_well_margin: float = 0.02,
    saturate_all: bool = False,
    threads: int | None = None,
    decay: np.ndarray | None = None,
) -> RampResult:
    """Sample the ramps of every pixel and return the resultants and their truth.

    Parameters
    ----------
    rate_e : numpy.ndarray, (ny - 8, nx - 8)
        Incident astrophysical rate (e/s) on the science pixels, before the flat.
    refs : DetectorReferences
        Gain, read noise, saturation, linearity, dark and flat of the detector.
    electronics : Electronics
        Pedestal and electronic offsets.
    read_pattern : list of list of int
        Reads of each resultant.
    frame_time : float
        Seconds between reads.
    seed : int
        Base seed of the random streams.
    cosmic_rays : CosmicRayModel, optional
        None for no cosmic rays.
    poisson : bool, optional
        Draw Poisson charge (else the expected charge ``R t``).
    read_noise : bool, optional
        Add read noise.
    nonlinearity : {"linearity", "inverselinearity", "none"}, optional
        Detector response: the exact inverse of LINEARITY, the INVERSELINEARITY
        polynomial, or linear.
    full_well_margin : float, optional
        The well is full at ``(1 + margin)`` times the saturation threshold.
    saturate_all : bool, optional
        Give every science pixel twice its full well by the first read.
    threads : int, optional
        Threads (default: `default_threads`); the result is the same for any number.
    decay : numpy.ndarray, optional
        Decaying signals added to the rounded science resultants, ``(n_resultants, ny,
        256)`` DN (`romancal_lite.simulate._decay.decay_signal_periods`).

    Returns
    -------
    RampResult
        The resultants and their truth.
    """
    ny, nx = refs.full_shape
    b = BORDER
    n_res = len(read_pattern)
    reads, _ = _sampled_reads(read_pattern)
    times = reads.astype(np.float64) * frame_time
    n_per = np.array([len(r) for r in read_pattern], dtype=np.float64)
    threads = default_threads() if threads is None else max(1, int(threads))

    data = np.empty((n_res, ny, nx), dtype=np.uint16)
    amp33 = np.empty((n_res, ny, AMP33_WIDTH), dtype=np.uint16)
    truth_rate = np.zeros((ny - 2 * b, nx - 2 * b), dtype=np.float32)
    sat_res = np.full((ny - 2 * b, nx - 2 * b), -1, dtype=np.int16)
    dq = np.zeros((n_res, ny, nx), dtype=np.uint8)
    channel_offsets = electronics.channel_offsets.astype(np.float64)
    row_drift = electronics.row_drift.astype(np.float64)
    crs: dict[str, list[np.ndarray]] = {k: [] for k in ("y", "x", "time", "read", "charge")}
    cr_owner: list[np.ndarray] = []
    _, owner = _sampled_reads(read_pattern)

    def prepare(block: int, r0: int) -> dict:
        """Return the per-pixel constants of rows ``r0:r0 + BLOCK_ROWS`` (float64, NumPy)."""
        r1 = min(r0 + BLOCK_ROWS, ny)
        const = refs.block(r0, r1)
        ped = electronics.pedestal[r0:r1].astype(np.float64)
        s0, s1 = max(r0, b), min(r1, ny - b)
        args: dict = {
            "rows": (r0, r1),
            "pedestal": ped,
            "amp33_pedestal": electronics.amp33_pedestal[r0:r1],
            "read_noise_dn": const["read_noise"],
            # amp33 has no read-noise reference: the median of the block's pixels
            "amp33_read_noise_dn": float(np.median(const["read_noise"])),
            "science_rows": (s0, max(s1, s0)),
            "cosmic_rays": None,
            "hits": None,
        }
        if s1 <= s0:
            args.update(detected=None, inverse_gain=None, zero_level=None, full_well=None,
                        threshold=None, response="none", linearity=None, inverse=None)
            return args
        rows = slice(s0 - r0, s1 - r0)
        cols = slice(b, nx - b)
        lin = const["linearity"][:, rows, cols] if const["linearity"] is not None else None
        quadratic = lin is not None and (lin.shape[0] <= 3 or not np.any(lin[3:]))
        inv = None
        if nonlinearity == "inverselinearity" or (lin is not None and not quadratic):
            inv = refs.inverse_block(r0, r1)  # the response's seed, or the response
            inv = None if inv is None else inv[:, rows, cols]
        response = _Response(nonlinearity, lin, inv)
        gain = const["gain"][rows, cols]
        # the official convention: L acts on the pixel's own level, pedestal included
        q0 = response.forward(ped[rows, cols])
        threshold = const["saturation"][rows, cols]
        s_full = np.maximum(
            (response.forward(threshold * (1.0 + full_well_margin)) - q0) * gain, 0.0
        )
        incident = rate_e[s0 - b : s1 - b].astype(np.float64)
        if saturate_all:
            incident = 2.0 * s_full / times[0] + incident
        flat = 1.0 if refs.flat is None else refs.flat[s0 - b : s1 - b].astype(np.float64)
        detected = incident * flat + const["dark_slope"][rows, cols] * gain
        truth_rate[s0 - b : s1 - b] = incident / gain
        if nonlinearity == "none" or lin is None and nonlinearity == "linearity":
            mode = "none"
        elif nonlinearity == "inverselinearity":
            mode = "inverselinearity"
        else:
            mode = "quadratic" if quadratic else "newton"
        if mode == "quadratic":
            lin = lin[:3]
        hits = _cosmic_rays(cosmic_rays, seed, block, (s1 - s0, nx - 2 * b), times)
        if hits is not None:
            hy, hx = np.unravel_index(hits[0], detected.shape)
            args["hits"] = (
                {"y": hy + s0, "x": hx + b, "time": hits[1], "read": reads[hits[2]],
                 "charge": hits[3]},
                owner[hits[2]],
            )
            args["cosmic_rays"] = (hy + s0 - b, hx, hits[2], hits[3])
        args.update(detected=detected, inverse_gain=1.0 / gain, zero_level=q0,
                    full_well=s_full, threshold=threshold, response=mode,
                    linearity=lin if mode in ("quadratic", "newton") else None,
                    inverse=inv if mode in ("inverselinearity", "newton") else None)
        return args

    starts = list(range(0, ny, BLOCK_ROWS))
    inl = None if refs.inl is None or nonlinearity == "none" else refs.inl
    # the constants of the next block are prepared (NumPy, mostly without the GIL)
    # while the compiled kernel simulates the current one on every thread
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(prepare, 0, starts[0])
        for block in range(len(starts)):
            args = pending.result()
            if block + 1 < len(starts):
                pending = pool.submit(prepare, block + 1, starts[block + 1])
            found = args.pop("hits")
            simulate_ramp_block(
                data, dq, amp33, sat_res, border=b, inl=inl, read_pattern=read_pattern,
                frame_time=frame_time, poisson=poisson, read_noise=read_noise,
                channel_offsets=channel_offsets, row_drift=row_drift, seed=seed,
                stream=STREAM_BLOCK, decay=decay, channel_width=CHANNEL_WIDTH,
                n_threads=threads,
                **args,
            )
            if found is not None:
                for name in crs:
                    crs[name].append(found[0][name])
                cr_owner.append(found[1])
    del n_per

    cat = {
        name: (np.concatenate(v) if v else np.zeros(0))
        for name, v in crs.items()
    }
    cat["resultant"] = np.concatenate(cr_owner) if cr_owner else np.zeros(0, dtype=np.int64)
    cosmic = {
        "y": cat["y"].astype(np.int32),
        "x": cat["x"].astype(np.int32),
        "time": cat["time"].astype(np.float64),
        "read": cat["read"].astype(np.int32),
        "resultant": cat["resultant"].astype(np.int32),
        "charge": cat["charge"].astype(np.float32),
    }
    return RampResult(data, amp33, truth_rate, sat_res, dq, cosmic)


def _to_uint16(level: np.ndarray) -> np.ndarray:
    np.rint(level, out=level)
    np.clip(level, 0.0, ATOD_LIMIT, out=level)
    return level.astype(np.uint16)


def _cosmic_rays(
    model: CosmicRayModel | None,
    seed: int,
    block: int,
    shape: tuple[int, int],
    times: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Draw the hits of one block: (flat pixel index, time, first read index, charge)."""
    if model is None or model.rate <= 0:
        return None
    rng = np.random.default_rng([seed, STREAM_CR, block])
    n_pix = shape[0] * shape[1]
    n = int(rng.poisson(model.rate * n_pix * times[-1]))
    if n == 0:
        return None
    index = rng.integers(0, n_pix, n)
    when = rng.uniform(0.0, times[-1], n)
    lo, hi = model.charge_range
    charge = np.clip(rng.lognormal(math.log(model.median_charge), model.sigma, n), lo, hi)
    first = np.searchsorted(times, when, side="left")
    return index, when, first, charge
