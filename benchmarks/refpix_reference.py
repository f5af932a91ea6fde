"""Time and peak memory of the REFPIX-reference refpix: ours beside romancal 1.1's.

Run as a script::

    python benchmarks/refpix_reference.py [--rows 4096] [--resultants 9]
                                          [--coefficients random|builtin]
                                          [--only ours|romancal] [--workdir DIR]
                                          [--reuse]

It writes one synthetic ramp (integer DN around 6000 with a resultant-to-resultant
signal, a random walk in read time common to every channel and amp33, white noise),
``--rows`` x 4096 pixels (romancal needs the full width) by ``--resultants``, its amp33,
a border ``pixeldq`` and REFPIX coefficients (``random``: non-zero complex gamma, zeta
and alpha, as an official file; ``builtin``: romancal-lite's built-in file, alpha only)
to ``--workdir`` as ``.npy`` files. Each implementation then runs in its own fresh
interpreter, on the same arrays loaded from those files:

* ours: ``romancal_lite.steps.refpix.correct_with_refpix_reference`` (what
  ``RefPixStep`` runs), in place on the float32 cube;
* romancal 1.1: ``romancal.refpix.refpix.run_steps`` on a roman_datamodels
  ``RampModel`` holding the same arrays (what its ``RefPixStep`` runs).

Reported: wall time of the call, and the peak resident memory during the call above
the resident memory just before it (Linux: ``VmHWM`` reset through
``/proc/self/clear_refs``), then the largest difference of the two outputs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

NX = 4096
AMP33_WIDTH = 128
ROW_SAMPLES = 140


def _status(key: str) -> int:
    """Return a ``/proc/self/status`` memory field in bytes (0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def make_inputs(workdir: Path, rows: int, resultants: int, coefficients: str) -> None:
    """Write the ramp, amp33, pixeldq and coefficients as ``.npy`` files."""
    rng = np.random.default_rng(12)
    n_samples = rows * ROW_SAMPLES
    walk = np.cumsum(rng.normal(0, 0.1, (resultants, n_samples)), axis=1).astype(np.float32)
    walk = walk.reshape(resultants, rows, ROW_SAMPLES)
    data = np.empty((resultants, rows, NX), dtype=np.float32)
    level = rng.normal(6000, 20, (rows, NX)).astype(np.float32)
    j = np.arange(NX) % AMP33_WIDTH
    pos = np.where((np.arange(NX) // AMP33_WIDTH) % 2 == 1, AMP33_WIDTH - 1 - j, j)
    for k in range(resultants):
        plane = level + np.float32(40 * k) + rng.normal(0, 5, (rows, NX)).astype(np.float32)
        plane += walk[k][:, pos]
        data[k] = np.round(plane)
    amp33 = np.round(
        6100 + rng.normal(0, 5, (resultants, rows, AMP33_WIDTH)) + walk[:, :, :AMP33_WIDTH]
    ).astype(np.uint16)
    dq = np.zeros((rows, NX), dtype=np.uint32)
    dq[:4] = dq[-4:] = 2**31
    dq[:, :4] |= np.uint32(2**31)
    dq[:, -4:] |= np.uint32(2**31)
    m = n_samples // 2 + 1
    if coefficients == "builtin":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from romancal_lite.references import build_reference

        node = build_reference("refpix", "WFI02", (rows, NX), "2020-01-01T00:00:00")
        coeffs = {k: np.asarray(node[k]) for k in ("gamma", "zeta", "alpha")}
    else:
        coeffs = {
            k: (rng.normal(size=(32, m)) + 1j * rng.normal(size=(32, m))) * s
            for k, s in (("gamma", 1e-3), ("zeta", 1e-3), ("alpha", 1e-2))
        }
    np.save(workdir / "data.npy", data)
    np.save(workdir / "amp33.npy", amp33)
    np.save(workdir / "pixeldq.npy", dq)
    for k, v in coeffs.items():
        np.save(workdir / f"{k}.npy", v)


def run_one(which: str, workdir: Path) -> dict:
    """Run one implementation in this process; save its output; return the numbers."""
    data = np.load(workdir / "data.npy")
    amp33 = np.load(workdir / "amp33.npy")
    dq = np.load(workdir / "pixeldq.npy")
    # the coefficients are read into memory before the measurement (a memory-mapped
    # file would count its pages in the peak of whichever reads them)
    g, z, a = (np.load(workdir / f"{k}.npy") for k in ("gamma", "zeta", "alpha"))
    if which == "ours":
        from romancal_lite.steps.refpix import correct_with_refpix_reference

        before = _status("VmRSS")
        _reset_peak()
        start = time.perf_counter()
        correct_with_refpix_reference(data, dq, amp33, g, z, a)
        seconds = time.perf_counter() - start
        out = data
    else:
        from roman_datamodels import datamodels as rdm
        from romancal.refpix import refpix

        model = rdm.RampModel.create_fake_data(shape=(2, 2, 2))
        model.data = data
        model.amp33 = amp33
        model.pixeldq = dq
        ref = rdm.RefpixRefModel.create_fake_data({"gamma": g, "zeta": z, "alpha": a})
        del data
        before = _status("VmRSS")
        _reset_peak()
        start = time.perf_counter()
        refpix.run_steps(model, ref, True, True, True, True, True)
        seconds = time.perf_counter() - start
        out = model.data
    peak = _status("VmHWM")
    np.save(workdir / f"out_{which}.npy", out)
    return {"seconds": seconds, "extra_peak_mb": (peak - before) / 2**20,
            "rss_before_mb": before / 2**20}


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print a small table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--resultants", type=int, default=9)
    parser.add_argument("--coefficients", choices=("random", "builtin"), default="random")
    parser.add_argument("--only", choices=("ours", "romancal"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/refpix_bench"))
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the inputs already in --workdir")
    parser.add_argument("--child", choices=("ours", "romancal"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.child:
        print(json.dumps(run_one(args.child, args.workdir)))
        return 0
    if not args.reuse:
        make_inputs(args.workdir, args.rows, args.resultants, args.coefficients)
    results = {}
    for which in ("ours", "romancal"):
        if args.only and which != args.only:
            continue
        proc = subprocess.run(
            [sys.executable, __file__, "--workdir", str(args.workdir), "--child", which],
            check=True, capture_output=True, text=True,
        )
        results[which] = json.loads(proc.stdout.strip().splitlines()[-1])
    cube_mb = args.resultants * args.rows * NX * 4 / 2**20
    print(f"{args.rows} x {NX} x {args.resultants} resultants ({cube_mb:.0f} MB float32),"
          f" {args.coefficients} coefficients")
    for which, r in results.items():
        print(f"  {which:9s} {r['seconds']:8.2f} s   peak +{r['extra_peak_mb']:7.0f} MB")
    if len(results) == 2:
        rc, ours_r = results["romancal"], results["ours"]
        speed = rc["seconds"] / ours_r["seconds"]
        memory = rc["extra_peak_mb"] / max(ours_r["extra_peak_mb"], 1)
        print(f"  speed ratio {speed:.1f}x, memory ratio {memory:.1f}x")
        ours = np.load(args.workdir / "out_ours.npy", mmap_mode="r")
        theirs = np.load(args.workdir / "out_romancal.npy", mmap_mode="r")
        diff = max(float(np.abs(o - t).max()) for o, t in zip(ours, theirs, strict=True))
        print(f"  largest |ours - romancal| = {diff:.3g} DN")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
