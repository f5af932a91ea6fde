"""Jump-detection quality of the ramp fits: recall on injected jumps, false positives, bias.

Run as a script::

    python benchmarks/jump_quality.py [--pattern ma4 ma6 ma109] [--clean 16] [--jumps 50000]
                                      [--seed 1] [--threads N] [--markdown]
    python benchmarks/jump_quality.py --footprints [--footprint-mpix 4] [--control-mpix 2]
                                      [--cr-boost 10] [--pattern ...] [--seed 1]

Ramps are simulated here, read by read, independently of any fit's conventions: for a
pixel of rate ``R`` (e/s) the charge grows by ``Poisson(R * frame_time)`` at every read
of the exposure (skipped reads included: the detector integrates through them); a jump
of ``J`` electrons is added just before read ``k`` (``k`` uniform over reads 2 to the
last, so every read from the second on can be hit; a hit before the first read is a
pedestal and is not a jump); a resultant is the mean of its reads, each with Gaussian
read noise (``RN / sqrt(N)`` on the mean of ``N`` reads: the same distribution).
Electrons throughout (gain 1), float32 resultants.

Pixel classes (the real romanisim file's detector: gain 2 e/DN, read noise 5 DN = 10 e
per read, dark 0.01 e/s):

* sky: 0.5-1.5 e/s (uniform) plus dark;
* bright: 10-100 DN/s (log-uniform), i.e. 20-200 e/s.

For each read pattern and class: ``--jumps`` pixels per jump-size bin (20-40, 40-80,
80-160, 160-400 e, uniform in the bin) and ``--clean`` million clean pixels (the
no-jump control).  The fits, on the same resultants: ``fit_ramps`` (Casertano 2022 and
its jump test, romancal's ``ols_cas22``), ``fit_ramps_likely`` (Brandt 2024 and stcal's
chi^2 omission test, romancal 1.1's default) and ``fit_ramps_likely(jump_test='step')``
(our step test).  Reported: recall (fraction of jump pixels with any JUMP_DET flag),
false positives per clean pixel (fraction of clean pixels with any flag; with the
95 % Poisson upper limit when none), and the bias of the clean pixels' mean slope,
``mean(slope) / mean(truth) - 1``; and the recall bound of *any* per-pixel test at
1e-6 false positives (:func:`recall_bound`: the Neyman-Pearson test that knows the
jump's read, size and the rate; 2000 draws per bin).

With ``--footprints`` the jumps are cosmic rays with realistic footprints instead
(:func:`cr_events`: romanisim's tracks and energy losses, then its IPC kernel) on
64 x 1024 tiles, and the table gives the recall per pixel, binned by the charge the
pixel received, for the official tests and the step test, each with and without the
neighbour pass (``+nb``), plus the neighbour pass's false positives on clean pixels
it searches (a control of isolated single-pixel hits with no spread) and, from the
searched pixels per event at romanisim's cosmic-ray rate, its share of the false
positives per clean pixel.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import romancore

if __package__:
    from ._data import FRAME_TIME
else:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks._data import FRAME_TIME

#: Named read patterns (romancal_lite.simulate's presets: real Roman MA tables).
PATTERNS = ("ma4", "ma6", "ma109")
BINS = ((20.0, 40.0), (40.0, 80.0), (80.0, 160.0), (160.0, 400.0))
READ_NOISE = 10.0   # e per read (5 DN at 2 e/DN)
DARK = 0.01         # e/s
GAIN = 2.0          # e/DN, for the bright class's DN/s range
CLASSES = {"sky": (0.5, 1.5), "bright": (10.0 * GAIN, 100.0 * GAIN)}
CHUNK = 1 << 19     # pixels simulated at a time
DETECTORS = ("casertano", "likely", "step")
JUMP_DET = 4


def read_pattern(name: str) -> list[list[int]]:
    """Return the read pattern of a preset name (``ma4``, ``ma6``, ``ma109``)."""
    from romancal_lite.simulate._patterns import READ_PATTERNS
    return [list(r) for r in READ_PATTERNS[name].read_pattern]


def simulate(pattern: list[list[int]], rate: np.ndarray, jump_read: np.ndarray,
             jump_e: np.ndarray, rng: np.random.Generator,
             read_noise: float = READ_NOISE, frame_time: float = FRAME_TIME,
             events: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Simulate resultants (float32, electrons, shape ``(n, npix)``), read by read.

    ``rate`` in e/s; ``jump_read`` the 1-based read a jump first appears in (0: none)
    and ``jump_e`` its charge; ``events``, optional ``(pixel, read, charge)`` arrays,
    more jumps (any number per pixel).
    """
    npix = rate.size
    owner = {r: j for j, reads in enumerate(pattern) for r in reads}
    acc = np.zeros((len(pattern), npix))
    charge = np.zeros(npix)
    mean = rate * frame_time
    for k in range(1, pattern[-1][-1] + 1):
        charge += rng.poisson(mean)
        hit = jump_read == k
        if hit.any():
            charge[hit] += jump_e[hit]
        if events is not None:
            now = events[1] == k
            np.add.at(charge, events[0][now], events[2][now])
        if k in owner:
            acc[owner[k]] += charge
    out = np.empty((len(pattern), npix), np.float32)
    for j, reads in enumerate(pattern):
        n = len(reads)
        out[j] = acc[j] / n + rng.standard_normal(npix) * (read_noise / math.sqrt(n))
    return out


def _rates(kind: str, npix: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi = CLASSES[kind]
    if kind == "sky":
        return rng.uniform(lo, hi, npix) + DARK
    return np.exp(rng.uniform(math.log(lo), math.log(hi), npix))


def _fit(det: str, res: np.ndarray, pattern, n_threads: int):
    """Run one detector on ``(n, 1, npix)`` resultants; return (slope, any-flag).

    ``det`` is ``casertano``, ``likely``, ``step`` or ``step@Z`` (the step test at
    threshold ``Z`` sigma); a ``+nb`` suffix adds the neighbour pass.
    """
    gdq = np.zeros(res.shape, np.uint8)
    if det == "casertano":
        out = romancore.fit_ramps(res, gdq, READ_NOISE, pattern, FRAME_TIME,
                                  n_threads=n_threads)
    elif det.startswith("likely"):
        out = romancore.fit_ramps_likely(res, gdq, READ_NOISE, pattern, FRAME_TIME,
                                         neighbor_pass=det.endswith("+nb"),
                                         n_threads=n_threads)
    else:
        base = det.removesuffix("+nb")
        z = float(base.split("@")[1]) if "@" in base else None
        out = romancore.fit_ramps_likely(res, gdq, READ_NOISE, pattern, FRAME_TIME,
                                         jump_test="step", step_threshold=z,
                                         neighbor_pass=det.endswith("+nb"),
                                         n_threads=n_threads)
    flagged = ((gdq & JUMP_DET) != 0).any(axis=0)
    return out.slope.ravel(), flagged.ravel()


def _chunk(task):
    """Simulate and fit one chunk: returns per-detector counts and sums."""
    pattern, kind, npix, jump_bin, seed, n_threads, detectors = task
    rng = np.random.default_rng(seed)
    rate = _rates(kind, npix, rng)
    if jump_bin is None:
        jread = np.zeros(npix, np.int64)
        jump = np.zeros(npix)
    else:
        lo, hi = jump_bin
        jread = rng.integers(2, pattern[-1][-1] + 1, npix)
        jump = rng.uniform(lo, hi, npix)
    res = simulate(pattern, rate, jread, jump, rng)[:, None, :]
    out = {}
    for det in detectors:
        slope, flagged = _fit(det, res, pattern, n_threads)
        ok = np.isfinite(slope)
        out[det] = (int(flagged.sum()), npix, float(slope[ok].sum(dtype=np.float64)),
                    float(rate[ok].sum()), int(ok.sum()))
    return out


def measure(pattern_name: str, kind: str, npix: int, jump_bin, seed: int,
            workers: int, detectors=DETECTORS) -> dict[str, tuple[int, int, float, float, int]]:
    """Totals over chunks of ``npix`` pixels (deterministic for any ``workers``)."""
    pattern = read_pattern(pattern_name)
    sizes = [CHUNK] * (npix // CHUNK) + ([npix % CHUNK] if npix % CHUNK else [])
    ss = np.random.SeedSequence([seed, PATTERNS.index(pattern_name), list(CLASSES).index(kind),
                                 0 if jump_bin is None else 1 + BINS.index(jump_bin)])
    seeds = ss.spawn(len(sizes))
    tasks = [(pattern, kind, s, jump_bin, sd, 1, detectors)
             for s, sd in zip(sizes, seeds, strict=True)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(_chunk, tasks))
    total = {}
    for det in detectors:
        cols = list(zip(*(p[det] for p in parts), strict=True))
        total[det] = (sum(cols[0]), sum(cols[1]), sum(cols[2]), sum(cols[3]), sum(cols[4]))
    return total


def _difference_covariance(pattern: list[list[int]], rate: float, read_noise: float,
                           frame_time: float = FRAME_TIME):
    """Covariance of the differences per unit time, built from the reads (no fit code).

    Returns the covariance, the matrix taking per-read charges to differences, and
    the number of reads.
    """
    nread = pattern[-1][-1]
    t = np.arange(1, nread + 1) * frame_time
    avg = np.zeros((len(pattern), nread))
    for j, reads in enumerate(pattern):
        avg[j, np.array(reads) - 1] = 1.0 / len(reads)
    cov_res = (avg @ (rate * np.minimum.outer(t, t)) @ avg.T
               + np.diag([read_noise**2 / len(r) for r in pattern]))
    dt = np.diff(avg @ t)
    diff = (np.eye(len(pattern))[1:] - np.eye(len(pattern))[:-1]) / dt[:, None]
    return diff @ cov_res @ diff.T, diff @ avg, nread


def recall_bound(pattern_name: str, kind: str, jump_bin, seed: int, npix: int = 2000,
                 false_positive_rate: float = 1e-6) -> float:
    """Upper bound of the recall of any per-pixel test at a false-positive rate.

    For a jump of known size ``J`` at a known read ``k`` on a ramp of known rate, the
    most powerful test at level ``alpha`` (Neyman-Pearson, Gaussian noise) is the
    one-sided z-test of the step template ``s``: power ``Q(z_alpha - J sqrt(s^T P s))``,
    ``P`` the GLS projector with the slope profiled out.  No detector with that
    false-positive rate does better on average over the injected ``(J, k, rate)``.
    """
    from scipy.special import ndtr, ndtri

    pattern = read_pattern(pattern_name)
    rng = np.random.default_rng([seed, 99, PATTERNS.index(pattern_name)])
    rate = _rates(kind, npix, rng)
    z_alpha = -ndtri(false_positive_rate)
    total = 0.0
    for r in rate:
        cov, to_diff, nread = _difference_covariance(pattern, float(r), READ_NOISE)
        cinv = np.linalg.inv(cov)
        one = cinv.sum(axis=1)
        proj = cinv - np.outer(one, one) / one.sum()
        k = int(rng.integers(2, nread + 1))
        step = to_diff @ (np.arange(1, nread + 1) >= k).astype(float)
        snr = math.sqrt(step @ proj @ step)
        jump = rng.uniform(*jump_bin)
        total += float(ndtr(jump * snr - z_alpha))
    return total / npix


#: Cosmic-ray footprint tiles: shape, and the bins of per-pixel charge of their table.
TILE = (64, 1024)
FOOT_BINS = BINS + ((400.0, math.inf),)
FOOT_DETECTORS = ("casertano", "likely", "likely+nb", "step", "step+nb")


def roman_cr_density(pattern: list[list[int]], frame_time: float = FRAME_TIME) -> float:
    """Cosmic rays per pixel in one exposure at romanisim's rate (8 /cm^2/s, 16.8 cm^2)."""
    from romanisim.models import parameters

    cr = parameters.cr
    return cr["flux"] * cr["area"] * pattern[-1][-1] * frame_time / 4096**2


def cr_events(shape: tuple[int, int], n_events: int, nread: int,
              rng: np.random.Generator, spread: bool = True):
    """Cosmic-ray jumps on a tile: romanisim's model, then its IPC kernel.

    Tracks as ``romanisim.cr.simulate_crs`` draws them (position, direction, power-law
    length, Moyal dE/dx, Poisson charge per traversed pixel from its chord through the
    pixel depth), each at one read drawn uniformly from 2 to ``nread``; then the charge
    of each event is convolved with romanisim's 3x3 interpixel-capacitance kernel
    (``romanisim.models.ipc.ipc_kernel``: 1.6-1.9 % to each side neighbour, 0.2 % to
    each corner), as romanisim applies it to the resultants.  Returns flat arrays
    ``(pixel, read, charge, event)``, one entry per event and pixel with charge > 0.
    """
    from romanisim import cr
    from romanisim.models import ipc, parameters

    par = parameters.cr
    ny, nx = shape
    i0, j0, phi, length, dedx = cr.sample_cr_params(n_events, N_i=ny, N_j=nx, rng=rng)
    length = length / par["pixel_size"]
    i1 = np.clip(i0 + length * np.cos(phi), -0.5, ny - 0.5)
    j1 = np.clip(j0 + length * np.sin(phi), -0.5, nx - 0.5)
    per_pix = dedx * par["pixel_size"] / par["conversion_factor"]
    kernel = ipc.ipc_kernel if spread else np.array([[0, 0, 0], [0, 1.0, 0], [0, 0, 0]])
    reads = rng.integers(2, nread + 1, n_events)
    pix, rd, ch, ev = [], [], [], []
    for e in range(n_events):
        ii, jj, l2 = cr.traverse([i0[e], j0[e]], [i1[e], j1[e]], N_i=ny, N_j=nx)
        if len(ii) == 0:
            continue
        l3 = np.sqrt((par["pixel_depth"] / par["pixel_size"]) ** 2 + l2**2)
        q = rng.poisson(per_pix[e] * l3).astype(np.float64)
        acc: dict[int, float] = {}
        for a, b, c in zip(ii, jj, q, strict=True):
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    y, x = a + di, b + dj
                    f = kernel[di + 1, dj + 1]
                    if f and 0 <= y < ny and 0 <= x < nx:
                        acc[y * nx + x] = acc.get(y * nx + x, 0.0) + c * f
        for k, v in acc.items():
            if v > 0:
                pix.append(k)
                rd.append(reads[e])
                ch.append(v)
                ev.append(e)
    return (np.array(pix, np.int64), np.array(rd, np.int64), np.array(ch), np.array(ev))


def _searched(flag: np.ndarray) -> np.ndarray:
    """Pixels the neighbour pass searches: no flag, a flagged 8-neighbour."""
    from scipy.ndimage import binary_dilation

    return binary_dilation(flag, np.ones((3, 3), bool)) & ~flag


def _footprint_chunk(task):
    """One tile of cosmic-ray footprints, or (``control``) of isolated single-pixel hits."""
    pattern, kind, seed, boost, detectors, control = task
    rng = np.random.default_rng(seed)
    ny, nx = TILE
    npix = ny * nx
    nread = pattern[-1][-1]
    rate = _rates(kind, npix, rng)
    if control:
        # a 1000-4000 e hit with no spread on every third pixel of every third row:
        # each other pixel is clean and has exactly one hit neighbour
        yy, xx = np.mgrid[1:ny - 1:3, 1:nx - 1:3]
        pix = (yy * nx + xx).ravel()
        events = (pix, rng.integers(2, nread + 1, pix.size),
                  rng.uniform(1000.0, 4000.0, pix.size), np.arange(pix.size))
    else:
        n_ev = rng.poisson(boost * roman_cr_density(pattern) * npix)
        events = cr_events(TILE, n_ev, nread, rng)
    zero = np.zeros(npix)
    res = simulate(pattern, rate, zero.astype(np.int64), zero, rng, events=events[:3])
    res = res.reshape(len(pattern), ny, nx)
    nev = np.bincount(events[0], minlength=npix)
    charge = np.bincount(events[0], weights=events[2], minlength=npix)
    out = {"events": len(np.unique(events[3]))}
    first = None
    for det in detectors:
        _, flagged = _fit(det, res, pattern, 1)
        flagged = flagged.reshape(ny, nx)
        if det == "step":
            first = flagged
        single = nev.reshape(ny, nx) == 1
        q = charge.reshape(ny, nx)
        rec = []
        for lo, hi in FOOT_BINS:
            sel = single & (q >= lo) & (q < hi)
            rec.append((int(flagged[sel].sum()), int(sel.sum())))
        out[det] = rec
        out[det + ":flags"] = flagged
    # clean pixels the pass searched (from the step test's first pass), and their flags
    clean = (nev.reshape(ny, nx) == 0)
    searched = _searched(first) & clean if first is not None else np.zeros((ny, nx), bool)
    out["searched"] = int(_searched(first).sum()) if first is not None else 0
    out["searched_clean"] = int(searched.sum())
    for det in detectors:
        flags = out.pop(det + ":flags")
        out[det + ":fp"] = int((flags & searched).sum())
    return out


def measure_footprints(pattern_name: str, kind: str, mpix: float, seed: int, workers: int,
                       boost: float, control: bool, detectors=FOOT_DETECTORS) -> dict:
    """Totals over tiles: recall per bin, events, searched pixels, their false positives."""
    pattern = read_pattern(pattern_name)
    ntile = max(1, int(round(mpix * 1e6 / (TILE[0] * TILE[1]))))
    ss = np.random.SeedSequence([seed, PATTERNS.index(pattern_name),
                                 list(CLASSES).index(kind), 7 if control else 8])
    tasks = [(pattern, kind, sd, boost, detectors, control) for sd in ss.spawn(ntile)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(_footprint_chunk, tasks))
    total: dict = {"pixels": ntile * TILE[0] * TILE[1]}
    for key in ("events", "searched", "searched_clean"):
        total[key] = sum(p[key] for p in parts)
    for det in detectors:
        total[det] = [tuple(sum(p[det][b][i] for p in parts) for i in (0, 1))
                      for b in range(len(FOOT_BINS))]
        total[det + ":fp"] = sum(p[det + ":fp"] for p in parts)
    return total


def footprint_table(names, classes, mpix: float, control_mpix: float, seed: int,
                    workers: int, boost: float) -> list[str]:
    """Rows of the cosmic-ray footprint table (markdown)."""
    rows = []
    for name in names:
        pattern = read_pattern(name)
        density = roman_cr_density(pattern)
        for kind in classes:
            t0 = time.perf_counter()
            cr = measure_footprints(name, kind, mpix, seed, workers, boost, False)
            ctl = measure_footprints(name, kind, control_mpix, seed, workers, boost, True)
            # searched pixels per event at `boost`, scaled to romanisim's rate
            frac = cr["searched"] / max(cr["events"], 1) * density
            for det in FOOT_DETECTORS:
                rec = " | ".join(f"{k / n:.3f} ({n})" if n else "-" for k, n in cr[det])
                fp_s = ctl[det + ":fp"] / max(ctl["searched_clean"], 1)
                fp_s_txt = (f"{fp_s:.2g} ({ctl[det + ':fp']})" if ctl[det + ":fp"]
                            else f"0 (< {_upper95(0, ctl['searched_clean']):.1g})")
                rows.append(f"| {name} | {kind} | {det} | {rec} | {fp_s_txt} | "
                            f"{ctl['searched_clean']} | {frac:.4f} | {fp_s * frac:.2g} |")
            print(f"# {name} {kind} footprints: {cr['events']} events, "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return rows


def _upper95(k: int, n: int) -> float:
    """95 % upper limit of a Poisson rate from ``k`` events in ``n`` trials (k small)."""
    # chi^2 quantile via the Wilson-Hilferty approximation, exact enough for a table
    nu = 2 * (k + 1)
    z = 1.6449
    q = nu * (1 - 2 / (9 * nu) + z * math.sqrt(2 / (9 * nu))) ** 3
    return q / 2 / n


def main(argv=None) -> None:
    """Command-line entry point: print the jump-quality table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pattern", nargs="+", default=["ma4"], choices=PATTERNS)
    parser.add_argument("--clean", type=float, default=16.0,
                        help="million clean pixels per pattern and class")
    parser.add_argument("--jumps", type=int, default=50_000,
                        help="jump pixels per pattern, class and size bin")
    parser.add_argument("--classes", nargs="+", default=list(CLASSES), choices=list(CLASSES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="chunks simulated and fitted in parallel")
    parser.add_argument("--step-thresholds", type=float, nargs="*", default=[],
                        help="also run the step test at these thresholds (sigma)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--footprints", action="store_true",
                        help="cosmic-ray footprints (romanisim's tracks and IPC) instead of "
                             "single-pixel jumps: recall with and without the neighbour pass")
    parser.add_argument("--footprint-mpix", type=float, default=4.0,
                        help="million pixels of cosmic-ray tiles per pattern and class")
    parser.add_argument("--control-mpix", type=float, default=2.0,
                        help="million pixels of the neighbour-pass control (isolated hits)")
    parser.add_argument("--cr-boost", type=float, default=10.0,
                        help="cosmic-ray density over romanisim's rate, for statistics")
    args = parser.parse_args(argv)
    if args.footprints:
        print(f"load average {os.getloadavg()}, {args.threads} worker threads, "
              f"read noise {READ_NOISE} e/read, frame time {FRAME_TIME} s, "
              f"cosmic rays x{args.cr_boost:g} romanisim's rate")
        print("| pattern | class | detector | " + " | ".join(
            f"recall {int(lo)}-{hi:g} e" if math.isfinite(hi) else f"recall > {int(lo)} e"
            for lo, hi in FOOT_BINS)
            + " | FP per searched clean pixel | searched clean pixels | searched fraction "
              "at romanisim's rate | added FP per clean pixel |")
        print("|" + "---|" * (len(FOOT_BINS) + 7))
        for row in footprint_table(args.pattern, args.classes, args.footprint_mpix,
                                   args.control_mpix, args.seed, args.threads,
                                   args.cr_boost):
            print(row, flush=True)
        return
    detectors = DETECTORS + tuple(f"step@{z:g}" for z in args.step_thresholds)
    print(f"load average {os.getloadavg()}, {args.threads} worker threads, "
          f"read noise {READ_NOISE} e/read, frame time {FRAME_TIME} s")
    header = ("| pattern | class | detector | " + " | ".join(
        f"recall {int(lo)}-{int(hi)} e" for lo, hi in BINS)
        + " | FP per clean pixel | clean pixels | bias (mean slope / truth - 1) |")
    rows = []
    for name in args.pattern:
        for kind in args.classes:
            t0 = time.perf_counter()
            rec = {det: [] for det in detectors}
            bound = [recall_bound(name, kind, jb, args.seed) for jb in BINS]
            for jb in BINS:
                tot = measure(name, kind, args.jumps, jb, args.seed, args.threads, detectors)
                for det in detectors:
                    rec[det].append(tot[det][0] / tot[det][1])
            clean = measure(name, kind, int(args.clean * 1e6), None, args.seed, args.threads,
                            detectors)
            for det in detectors:
                k, n, s_slope, s_rate, _ = clean[det]
                fp = f"{k / n:.2g} ({k})" if k else f"0 (< {_upper95(0, n):.1g})"
                rows.append(f"| {name} | {kind} | {det} | "
                            + " | ".join(f"{r:.3f}" for r in rec[det])
                            + f" | {fp} | {n} | {s_slope / s_rate - 1:+.5f} |")
            print(f"# {name} {kind}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            rows.append(f"| {name} | {kind} | bound, any test at 1e-6 | "
                        + " | ".join(f"{r:.3f}" for r in bound) + " | 1e-6 | - | - |")
            if not args.markdown:
                print("\n".join(rows[-len(detectors) - 1:]), flush=True)
    if args.markdown:
        print(header)
        print("|" + "---|" * (header.count("|") - 1))
        print("\n".join(rows))


if __name__ == "__main__":
    main()
