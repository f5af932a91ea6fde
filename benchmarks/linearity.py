"""Time and peak memory of the linearity step: romancal-lite beside romancal 1.1.

Run as a script::

    python benchmarks/linearity.py [--size 4096x4096] [--pattern ma4] [--threads N]
                                   [--only ours|romancal] [--workdir DIR]

Both steps get the SAME resultants and the SAME reference files as overrides
(LINEARITY, INVERSELINEARITY and INTEGRALNONLINEARITY of romancal-lite's built-in
cache for WFI02 at that shape, generated once in ``--workdir``):

* ours: ``romancal_lite.steps.linearity.LinearityStep`` on a romancal-lite
  ``RampModel`` (read-level path, ``romancore.apply_read_level_linearity``);
* romancal 1.1: ``romancal.linearity.LinearityStep`` on a roman_datamodels
  ``RampModel`` (stcal 1.20 ``linearity_correction`` with the inverse coefficients,
  the read pattern and romancal's ``numpy.interp`` INL callable).

The resultants are a synthetic ramp (float32, as after refpix): per pixel a
pedestal and a log-uniform count rate, every read made non-linear with the
INVERSELINEARITY polynomial and averaged per resultant of the read pattern, read
noise added, pixels above 55 000 DN flagged SATURATED from there on.

Each step runs in its own fresh interpreter; reported: the wall time of the step
call, the peak resident memory of the process (Linux ``VmHWM``) and its growth over
the resident memory just before the call (the step's own peak working memory: the
inputs are already loaded).  The asdf extensions (a one-time cost of any process
that opens an ASDF file, several seconds) are loaded before the clock starts.  Then
the two outputs are compared (largest absolute difference of the resultants, whether
groupdq and pixeldq are identical).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DETECTOR = "WFI02"
PATTERNS = {
    "ma4": [[1], [2], [3, 4], [5, 6, 7, 8, 9], list(range(10, 18)), list(range(18, 26)),
            list(range(26, 34)), list(range(34, 44)), [44]],
    "ma109": [[1], [2, 3], [5, 6, 7], list(range(10, 14)), list(range(15, 21)),
              list(range(21, 27)), list(range(27, 33)), list(range(33, 39)),
              list(range(39, 44)), [44]],
}
REFTYPES = ("linearity", "inverselinearity", "integralnonlinearity")


def _rss(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def prepare(workdir: Path, shape: tuple[int, int], pattern: str) -> dict[str, Any]:
    """Write the references (once) and the input arrays; return their paths."""
    from romancal_lite.references import generate_cache

    workdir.mkdir(parents=True, exist_ok=True)
    cache = generate_cache(workdir / f"crds_{shape[0]}x{shape[1]}", full_shape=shape,
                           detectors=[DETECTOR])
    refs = {}
    for name, info in sorted(cache.files.items()):
        if info["detector"] == DETECTOR and info["reftype"] in REFTYPES:
            refs[info["reftype"]] = str(cache.ensure_reference(name))
    inputs = workdir / f"input_{shape[0]}x{shape[1]}_{pattern}.npz"
    if not inputs.exists():
        import roman_datamodels.datamodels as rdm

        reads = PATTERNS[pattern]
        rng = np.random.default_rng(0)
        with rdm.open(refs["inverselinearity"]) as inv:
            ilin = np.asarray(inv.coeffs, dtype=np.float64)
        ped = rng.uniform(8000.0, 12000.0, shape)
        rate = np.exp(rng.uniform(np.log(1.0), np.log(3000.0), shape))
        data = np.empty((len(reads), *shape), np.float32)
        for i, group in enumerate(reads):
            acc = np.zeros(shape)
            for r in group:
                y = ped + rate * r
                acc += ((ilin[3] * y + ilin[2]) * y + ilin[1]) * y + ilin[0]
            data[i] = acc / len(group) + rng.normal(0, 5 / np.sqrt(len(group)), shape)
        gdq = np.zeros(data.shape, np.uint8)
        hit = np.maximum.accumulate(data >= 55000.0, axis=0)
        gdq[hit] = 2
        np.savez(inputs, data=data, groupdq=gdq)
    return {"refs": refs, "inputs": str(inputs), "pattern": pattern}


def _worker(which: str, case: dict[str, Any], out: str, threads: int | None) -> dict:
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    arrays = np.load(case["inputs"])
    data, gdq = arrays["data"], arrays["groupdq"]
    reads = PATTERNS[case["pattern"]]
    overrides = {f"override_{k}": v for k, v in case["refs"].items()}
    if which == "ours":
        from romancal_lite import datamodels
        from romancal_lite.steps.linearity import LinearityStep

        model = datamodels.RampModel.create_fake_data(shape=data.shape)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _romancal import offline_crds_environment

        # an empty offline CRDS cache: every reference is an override, no server
        os.environ.update(offline_crds_environment(Path(out).parent / "crds_offline"))
        import roman_datamodels.datamodels as rdm
        from romancal.linearity import LinearityStep

        model = rdm.RampModel.create_fake_data(shape=data.shape)
    model.meta.instrument.detector = DETECTOR
    model.meta.exposure.read_pattern = reads
    model.meta.exposure.nresultants = len(reads)
    model.data = data
    model.groupdq = gdq
    model.pixeldq = np.zeros(data.shape[1:], np.uint32)
    del arrays
    import asdf

    asdf.get_config().extensions  # noqa: B018 - load the asdf extensions before timing
    before = _rss("VmRSS")
    start = time.perf_counter()
    result = LinearityStep.call(model, **overrides)
    seconds = time.perf_counter() - start
    peak = _rss("VmHWM")
    np.savez(out, data=np.asarray(result.data), groupdq=np.asarray(result.groupdq),
             pixeldq=np.asarray(result.pixeldq))
    return {"which": which, "seconds": seconds, "peak_rss": peak,
            "step_peak": peak - before, "status": str(result.meta.cal_step.linearity)}


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print a table.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments.

    Returns
    -------
    int
        Exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4096x4096")
    parser.add_argument("--pattern", default="ma4", choices=sorted(PATTERNS))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", choices=("ours", "romancal"), default=None)
    parser.add_argument("--workdir", default=os.path.join(os.path.expanduser("~"), ".cache",
                                                          "romancal_lite_bench_linearity"))
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        which, case_json, out = args.worker
        print(json.dumps(_worker(which, json.loads(case_json), out, args.threads)))
        return 0
    ny, _, nx = args.size.partition("x")
    shape = (int(ny), int(nx or 4096))
    workdir = Path(args.workdir)
    case = prepare(workdir, shape, args.pattern)
    results = {}
    for which in ("ours", "romancal"):
        if args.only and which != args.only:
            continue
        out = str(workdir / f"out_{which}.npz")
        cmd = [sys.executable, __file__, "--worker", which, json.dumps(case), out]
        if args.threads:
            cmd[2:2] = ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        results[which] = json.loads(proc.stdout.strip().splitlines()[-1])
        results[which]["out"] = out
    print(f"linearity step, {shape[0]}x{shape[1]}, {args.pattern} "
          f"({len(PATTERNS[args.pattern])} resultants), INL on")
    print(f"{'':10s} {'time (s)':>10s} {'peak RSS (MB)':>14s} {'step peak (MB)':>15s}")
    for which, r in results.items():
        print(f"{which:10s} {r['seconds']:10.2f} {r['peak_rss'] / 2**20:14.0f} "
              f"{r['step_peak'] / 2**20:15.0f}")
    if len(results) == 2:
        o, t = np.load(results["ours"]["out"]), np.load(results["romancal"]["out"])
        ratio = results["romancal"]["seconds"] / results["ours"]["seconds"]
        diff = np.abs(o["data"].astype(np.float64) - t["data"])
        finite = np.isfinite(diff)
        print(f"speed-up {ratio:.1f}x; largest |ours - romancal| {diff[finite].max():.3g} DN "
              f"({np.count_nonzero(diff[finite])} values differ, "
              f"{np.count_nonzero(~finite)} non-finite); groupdq identical: "
              f"{np.array_equal(o['groupdq'], t['groupdq'])}; pixeldq identical: "
              f"{np.array_equal(o['pixeldq'], t['pixeldq'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
