"""Timing of the simulator: one full-frame exposure through the command line.

Runs ``python -m romancal_lite.simulate OUT_uncal.asdf`` (4096 x 4096, ``ma4``, default
options, references from the built-in CRDS cache) in a fresh process, as a user does,
and reports its wall time, CPU time (user + system of the child) and peak RSS, plus the
load average around the run: on a shared machine the CPU time is the comparable figure.
With ``--compare SRC`` the same is run with ``PYTHONPATH=SRC`` (e.g. another
worktree's ``src``) for a before/after ratio under the same conditions.

Run: ``PYTHONPATH=src python benchmarks/simulate.py [--shape NY NX] [--repeat N]
[--compare OTHER_SRC]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(src: str, shape: tuple[int, int], out_dir: Path) -> dict[str, float]:
    """Simulate one exposure in a child process; return its wall, CPU and peak RSS."""
    env = dict(os.environ, PYTHONPATH=src)
    out = out_dir / "bench_wfi01_uncal.asdf"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "romancal_lite.simulate", str(out), "--shape", str(shape[0]),
         str(shape[1])],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "rss_gb": after.ru_maxrss / 2**20,
            "load": (load + os.getloadavg()[0]) / 2.0}


def main() -> None:
    """Run the benchmark and print a table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", nargs=2, type=int, default=(4096, 4096))
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--compare", default=None, help="another src directory to time too")
    args = p.parse_args()
    here = str(Path(__file__).resolve().parents[1] / "src")
    sources = [("this branch", os.environ.get("PYTHONPATH", here))]
    if args.compare:
        sources.append(("compare", args.compare))
    print(f"shape {args.shape[0]} x {args.shape[1]}, ma4, default options")
    print("| version | wall (s) | CPU (s) | peak RSS (GB) | load average |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for name, src in sources:
                r = run_once(src, tuple(args.shape), Path(tmp))
                print(f"| {name} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rss_gb']:.2f} | "
                      f"{r['load']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
