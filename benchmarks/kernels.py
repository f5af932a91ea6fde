"""Throughput of the romancore kernels beside stcal 1.20 on a synthetic full frame.

Run as a script::

    python benchmarks/kernels.py [--size 4096] [--rows NY] [--resultants 9 15]
                                 [--repeat 3] [--no-stcal] [--markdown]

For each number of resultants it builds one synthetic exposure (``benchmarks/_data.py``:
real uneven Roman MA tables, 1-10 e/s sky, saturating stars, ~1e-3 cosmic rays per
pixel, 10 e read noise) and times, wall clock:

* a plain NumPy copy of the cube (``np.copyto``, the memory-bandwidth baseline);
* ``flag_saturation`` on the raw cube;
* ``apply_linearity`` (cubic coefficients) on the raw cube with the saturation DQ;
* ``fit_ramps`` without and with jump detection on the linearized cube;
* ``fit_ramps_likely`` (with its jump detection) on the same cube, beside stcal's
  ``likely_ramp_fit`` (``--likely-only``: only this fit is compared with stcal), and
  with our step test (``jump_test='step'``, ours only).

Ours runs on 1 thread and on all usable cores (best of ``--repeat``, inputs restored
between runs outside the timing); stcal (single-threaded) runs once on the same arrays,
called as romancal 1.1 calls it.  Throughput is in million pixels (ny * nx) per second;
ratios > 1 mean romancore is faster.  Peak memory is the high-water mark of resident
memory during the call, above the resident memory just before it (Linux only).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

import romancore

if __package__:
    from ._data import FRAME_TIME, PeakRSS, dqflags_dict, make_frame, process_peak_rss
else:  # run as a script: python benchmarks/kernels.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks._data import FRAME_TIME, PeakRSS, dqflags_dict, make_frame, process_peak_rss

try:
    import stcal
    from stcal.linearity.linearity import linearity_correction
    from stcal.ramp_fitting.ols_cas22_fit import fit_ramps_casertano
    from stcal.saturation.saturation import flag_saturated_pixels
except ImportError:  # pragma: no cover - stcal is optional
    stcal = None
try:
    from stcal.ramp_fitting.likely_fit import likely_ramp_fit
except ImportError:  # pragma: no cover - stcal is optional
    likely_ramp_fit = None


def _timed(func, reset=None, repeat=1):
    """Best wall-clock time of ``func()`` over ``repeat`` runs, ``reset()`` untimed before each.

    Returns ``(best_seconds, peak_extra_bytes_of_the_first_run)``.
    """
    best, peak = float("inf"), None
    for i in range(repeat):
        if reset is not None:
            reset()
        gc.collect()
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            func()
            elapsed = time.perf_counter() - t0
        if i == 0:
            peak = mem.extra
        best = min(best, elapsed)
    return best, peak


class Row:
    """One line of the results table."""

    def __init__(self, kernel, n_res, n_pix):
        self.kernel, self.n_res, self.n_pix = kernel, n_res, n_pix
        self.t1 = self.tn = self.ts = None
        self.mem_ours = self.mem_stcal = None
        self.vs_copy = None  # (t1 / t_copy, tn / t_copy)

    def mpix(self, t):
        return None if t is None else self.n_pix / t / 1e6


def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def _mb(x):
    return "-" if x is None else f"{x / 2**20:.0f}"


def run(n_res, ny, nx, repeat, with_stcal, n_all, notes, likely_only=False):
    """Benchmark every kernel on one synthetic exposure; return the table rows.

    With ``likely_only`` stcal runs only for the likelihood fit and the Casertano fit
    rows are skipped (the other kernels still prepare the fit's input).
    """
    with_stcal_likely = with_stcal and likely_ramp_fit is not None
    with_stcal = with_stcal and not likely_only
    rows = []
    t0 = time.perf_counter()
    frame = make_frame(n_res, ny, nx)
    notes.append(
        f"{n_res} resultants: read pattern {[len(r) for r in frame.read_pattern]} reads, "
        f"exposure {frame.stats['exposure_time']:.1f} s, {frame.stats['n_stars']} stars, "
        f"{frame.stats['n_cosmic_rays']} cosmic rays; cube built in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    data, rp = frame.data, frame.read_pattern
    n_pix = ny * nx
    flags = dqflags_dict()

    # -- baseline: plain NumPy copy of the cube --------------------------------------
    work = np.empty_like(data)
    work.fill(0)  # fault the pages in now, not inside the first timed copy
    row = Row("NumPy copy of the cube", n_res, n_pix)
    row.t1, row.mem_ours = _timed(lambda: np.copyto(work, data), repeat=repeat)
    t_copy = row.t1
    rows.append(row)

    # -- saturation -------------------------------------------------------------------
    gdq = np.zeros(data.shape, dtype=np.uint8)
    pdq = np.zeros((ny, nx), dtype=np.uint32)

    def reset_sat():
        gdq.fill(0)
        pdq.fill(0)

    row = Row("saturation", n_res, n_pix)
    for threads in (1, n_all):
        t, mem = _timed(
            lambda threads=threads: romancore.flag_saturation(
                data, gdq, pdq, frame.sat_thresh, frame.sat_dq, rp, n_threads=threads
            ),
            reset_sat, repeat,
        )
        if threads == 1:
            row.t1 = t
        else:
            row.tn, row.mem_ours = t, mem
    if n_all == 1:
        row.tn = row.t1
    gdq_sat, pdq_sat = gdq, pdq
    if with_stcal:
        s_gdq = np.zeros(data.shape, dtype=np.uint8)
        s_pdq = np.zeros((ny, nx), dtype=np.uint32)
        thresh, sat_dq = frame.sat_thresh.copy(), frame.sat_dq.copy()
        out = {}

        def stcal_sat():
            out["r"] = flag_saturated_pixels(
                data[None], s_gdq[None], s_pdq, thresh, sat_dq, 65535.0, flags,
                n_pix_grow_sat=0, read_pattern=rp,
            )

        row.ts, row.mem_stcal = _timed(stcal_sat)
        s_gdq4 = out.pop("r")[0]
        bad = np.uint8(romancore.dqflags.group.SATURATED | romancore.dqflags.group.DO_NOT_USE)
        differ = np.count_nonzero(((gdq_sat & bad) != 0) != ((s_gdq4[0] & bad) != 0))
        notes.append(
            f"{n_res} resultants, saturation: 'SATURATED or DO_NOT_USE' differs from stcal "
            f"on {differ} of {gdq_sat.size} resultant-pixels (documented: stcal never "
            f"flags exactly 65535 DN on a no-check pixel)"
        )
        del s_gdq, s_pdq, s_gdq4, thresh, sat_dq
    row.vs_copy = (row.t1 / t_copy, row.tn / t_copy)
    rows.append(row)

    # -- linearity (on the raw cube, restored from `data` before each run) -------------
    pdq_w = np.empty_like(pdq_sat)

    def reset_lin():
        np.copyto(work, data)
        np.copyto(pdq_w, pdq_sat)

    row = Row("linearity (cubic)", n_res, n_pix)
    for threads in (1, n_all):
        t, mem = _timed(
            lambda threads=threads: romancore.apply_linearity(
                work, gdq_sat, pdq_w, frame.lin_coeffs, frame.lin_dq, n_threads=threads
            ),
            reset_lin, repeat,
        )
        if threads == 1:
            row.t1 = t
        else:
            row.tn, row.mem_ours = t, mem
    if n_all == 1:
        row.tn = row.t1
    linearized = work  # ours: the fit's input
    if with_stcal:
        coeffs, lin_dq, s_pdq = frame.lin_coeffs.copy(), frame.lin_dq.copy(), pdq_sat.copy()
        out = {}

        def stcal_lin():
            # In place on the raw cube, which is not needed afterwards.
            out["r"] = linearity_correction(data[None], gdq_sat[None], s_pdq, coeffs, lin_dq,
                                            flags)

        row.ts, row.mem_stcal = _timed(stcal_lin)
        s_data = out.pop("r")[0][0]
        diff = 0.0
        for ours_plane, stcal_plane in zip(linearized, s_data, strict=True):  # plane-wise
            rel = np.abs(ours_plane - stcal_plane) / np.maximum(np.abs(stcal_plane), 1)
            diff = max(diff, float(np.nanmax(rel)))
        notes.append(f"{n_res} resultants, linearity: max relative difference to stcal {diff:.2e}")
        del coeffs, lin_dq, s_pdq, s_data, rel
    row.vs_copy = (row.t1 / t_copy, row.tn / t_copy)
    rows.append(row)
    data = frame.data = None  # free the raw cube
    gc.collect()

    # -- ramp fit -----------------------------------------------------------------------
    gdq_fit = np.empty_like(gdq_sat)
    rn = frame.read_noise
    dq32 = gdq_sat.astype(np.int32) if with_stcal else None
    for use_jump in (() if likely_only else (False, True)):
        row = Row(f"fit_ramps ({'with' if use_jump else 'no'} jumps)", n_res, n_pix)
        ours = {}
        for threads in (1, n_all):

            def fit(threads=threads, use_jump=use_jump, ours=ours):
                ours["r"] = romancore.fit_ramps(linearized, gdq_fit, rn, rp, FRAME_TIME,
                                                use_jump=use_jump, n_threads=threads)

            def reset_fit(ours=ours):
                ours.clear()
                np.copyto(gdq_fit, gdq_sat)

            t, mem = _timed(fit, reset_fit, repeat)
            if threads == 1:
                row.t1 = t
            else:
                row.tn, row.mem_ours = t, mem
        if n_all == 1:
            row.tn = row.t1
        if with_stcal:
            out = {}

            def stcal_fit(use_jump=use_jump, out=out):
                out["r"] = fit_ramps_casertano(linearized, dq32, rn, FRAME_TIME, rp,
                                               use_jump=use_jump)

            row.ts, row.mem_stcal = _timed(stcal_fit)
            s_slope = out.pop("r").parameters[..., 1]
            slope = ours.pop("r").slope
            ok = np.isfinite(slope)
            close = np.isclose(slope[ok], s_slope[ok], rtol=1e-4, atol=1e-4)
            notes.append(
                f"{n_res} resultants, fit_ramps use_jump={use_jump}: slope differs from "
                f"stcal (rtol=atol=1e-4) on {ok.sum() - close.sum()} of {ok.sum()} "
                f"finite pixels; ours NaN on {np.count_nonzero(~ok)} (no usable segment), "
                f"where stcal gives 0 on {np.count_nonzero(s_slope[~ok] == 0)}"
            )
            del s_slope, slope, ok, close
        ours.clear()
        rows.append(row)

    # -- likelihood fit (Brandt 2024), with its chi^2 jump detection -------------------
    row = Row("fit_ramps_likely (with jumps)", n_res, n_pix)
    ours = {}
    for threads in (1, n_all):

        def fit_likely(threads=threads, ours=ours):
            ours["r"] = romancore.fit_ramps_likely(linearized, gdq_fit, rn, rp, FRAME_TIME,
                                                   n_threads=threads)

        def reset_likely(ours=ours):
            ours.clear()
            np.copyto(gdq_fit, gdq_sat)

        t, mem = _timed(fit_likely, reset_likely, repeat)
        if threads == 1:
            row.t1 = t
        else:
            row.tn, row.mem_ours = t, mem
    if n_all == 1:
        row.tn = row.t1
    if with_stcal_likely:
        out = {}
        ramp = SimpleNamespace(
            data=linearized[None], groupdq=gdq_sat[None].copy(),
            pixeldq=np.zeros((ny, nx), np.uint32), rejection_threshold=4.5,
            flags_jump_det=flags["JUMP_DET"], flags_saturated=flags["SATURATED"],
            flags_do_not_use=flags["DO_NOT_USE"],
            read_pattern=[list(np.array(r) * FRAME_TIME) for r in rp], zeroframe=None,
            average_dark_current=np.zeros((ny, nx)), nframes=1, groupgap=0,
            frame_time=FRAME_TIME)
        rn2d = np.broadcast_to(np.asarray(rn, np.float32), (ny, nx)) * np.sqrt(2)

        def stcal_likely(out=out):
            # as romancal 1.1 calls it (CDS read noise), in electrons: gain 1
            out["r"] = likely_ramp_fit(ramp, rn2d, np.ones((ny, nx)))[0]

        row.ts, row.mem_stcal = _timed(stcal_likely)
        s_slope = out.pop("r")["slope"]
        res = ours.pop("r")
        ok = np.isfinite(s_slope) & np.isfinite(res.slope)
        close = np.isclose(res.slope[ok], s_slope[ok], rtol=1e-4, atol=0)
        jumps_differ = np.count_nonzero(
            ((res.groupdq & flags["JUMP_DET"]) != 0).any(axis=0)
            != ((ramp.groupdq[0] & flags["JUMP_DET"]) != 0).any(axis=0))
        notes.append(
            f"{n_res} resultants, fit_ramps_likely: slope differs from stcal (rtol 1e-4) on "
            f"{ok.sum() - close.sum()} of {ok.sum()} pixels finite in both; jump flags on "
            f"{jumps_differ} of {n_pix} pixels (documented: omissions leaving one difference)"
        )
        del ramp, s_slope, res, ok, close
    ours.clear()
    rows.append(row)

    # -- the same fit with our step test (no stcal counterpart) -----------------------
    row = Row("fit_ramps_likely (step test)", n_res, n_pix)
    for threads in (1, n_all):

        def fit_step(threads=threads, ours=ours):
            ours["r"] = romancore.fit_ramps_likely(linearized, gdq_fit, rn, rp, FRAME_TIME,
                                                   jump_test="step", n_threads=threads)

        def reset_step(ours=ours):
            ours.clear()
            np.copyto(gdq_fit, gdq_sat)

        t, mem = _timed(fit_step, reset_step, repeat)
        if threads == 1:
            row.t1 = t
        else:
            row.tn, row.mem_ours = t, mem
    if n_all == 1:
        row.tn = row.t1
    ours.clear()
    rows.append(row)
    return rows


def format_table(rows, n_all, markdown):
    """Render the rows as an aligned text table or a Markdown table."""
    header = [
        "kernel", "n_res",
        "ours 1T Mpix/s", f"ours {n_all}T Mpix/s", "stcal Mpix/s",
        "1T/stcal", f"{n_all}T/stcal", f"scaling 1->{n_all}",
        f"time/copy 1T, {n_all}T",
        "peak MB ours", "peak MB stcal",
    ]
    lines = []
    for r in rows:
        def ratio(t, r=r):
            return None if t is None or r.ts is None else r.ts / t

        if r.kernel.startswith("NumPy"):
            cells = [r.kernel, str(r.n_res), _fmt(r.mpix(r.t1), ".0f"), "-", "-", "-", "-",
                     "-", "1", _mb(r.mem_ours), "-"]
        else:
            vs = "-" if r.vs_copy is None else f"{r.vs_copy[0]:.2f}, {r.vs_copy[1]:.2f}"
            scaling = None if r.tn is None else r.t1 / r.tn
            cells = [
                r.kernel, str(r.n_res),
                _fmt(r.mpix(r.t1), ".1f"), _fmt(r.mpix(r.tn), ".1f"), _fmt(r.mpix(r.ts), ".2f"),
                _fmt(ratio(r.t1), ".1f"), _fmt(ratio(r.tn), ".1f"), _fmt(scaling, ".2f"),
                vs, _mb(r.mem_ours), _mb(r.mem_stcal),
            ]
        lines.append(cells)
    if markdown:
        out = ["| " + " | ".join(header) + " |",
               "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
        out += ["| " + " | ".join(c) + " |" for c in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]

    def fmt_line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt_line(header), sep, *(fmt_line(c) for c in lines)])


def machine_info(n_all):
    """Describe the machine and the versions in use."""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "?"
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = float("nan")
    return (
        f"machine: {platform.node()} {platform.machine()}, {cpu}, "
        f"{os.cpu_count()} cores ({n_all} usable), {mem:.1f} GiB RAM\n"
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"romancore {romancore.__version__} (OpenMP: {romancore.openmp_enabled()}, "
        f"all threads = {n_all}), stcal {stcal.__version__ if stcal else 'not installed'}\n"
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}"
    )


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="frame is SIZE x SIZE")
    parser.add_argument("--rows", type=int, default=None, help="override the number of rows")
    parser.add_argument("--resultants", type=int, nargs="+", default=[9, 15])
    parser.add_argument("--repeat", type=int, default=3, help="best of N for romancore")
    parser.add_argument("--no-stcal", action="store_true", help="skip stcal")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--likely-only", action="store_true",
                        help="stcal only for the likelihood fit; no Casertano fit rows")
    args = parser.parse_args(argv)

    ny, nx = (args.rows or args.size), args.size
    n_all = romancore.effective_n_threads(-1)
    with_stcal = stcal is not None and not args.no_stcal
    if stcal is None and not args.no_stcal:
        print("stcal is not installed: its columns are left empty", file=sys.stderr)
    print(machine_info(n_all))
    print(f"frame: {ny} x {nx} pixels; ours best of {args.repeat}, stcal once\n", flush=True)

    rows, notes = [], []
    t0 = time.perf_counter()
    for n_res in args.resultants:
        rows += run(n_res, ny, nx, args.repeat, with_stcal, n_all, notes, args.likely_only)
        gc.collect()
        print(f"... {n_res} resultants done ({time.perf_counter() - t0:.0f} s)",
              file=sys.stderr, flush=True)
    print(format_table(rows, n_all, args.markdown))
    print()
    print("Mpix/s = ny * nx / 1e6 / wall-clock seconds; X/stcal = stcal time / our time "
          "(> 1: ours faster);\ntime/copy = kernel time / NumPy copy time of the same cube; "
          "peak MB = resident-memory high-water mark above the RSS before the call.")
    for note in notes:
        print("note: " + note)
    peak = process_peak_rss()
    if peak is not None:
        print(f"process peak RSS: {peak / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
