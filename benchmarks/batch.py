"""Many exposure-detectors through ``roman_elp``: the batch runner beside serial loops.

Run as a script::

    python benchmarks/batch.py [--size 4096x4096] [--detectors 8] [--workers 1x1,1x2,2x1]
                               [--exposure] [--romancal-detectors N] [--skip-romancal]
                               [--skip-serial] [--workdir DIR] [--json FILE]

Input: ``--detectors`` exposure-detectors of ``--size`` (default the full 4096 x 4096
frame; ``--size 256`` for a smoke test), 9 resultants: ``benchmarks/pipeline.py``'s
single-exposure case (detector WFI02, simulated, written in the official format, with
official-format reference files and the reference catalog of its stars; cached in
``--workdir``), hard-linked under N exposure numbers (``r..._000k_wfi02_uncal.asdf``:
N exposures of the same data, so every row does the same work, and no disk is spent
on copies; the shared machine's disk does not hold 8 distinct full-frame detectors
with their references). Every run is given the same reference files
(``--override-<reftype>``) and runs through tweakreg (``abs_refcat``: the catalog).
Each file is its own exposure, so the batch runs each through the whole ``roman_elp``
(the same work as ``run``).

Rows (wall time of the whole command, interpreter start-up included):

* ``run`` loop: ``python -m romancal_lite run roman_elp <file>`` once per detector, one
  after the other, each a fresh process (what a user's shell loop does);
* ``batch, N workers, T threads``: ``python -m romancal_lite batch <files> --workers N
  --omp-threads T`` (a LocalCluster of N workers; one task per file), one row per
  ``--workers`` layout (``NxT``; a plain ``N`` leaves the threads to the batch);
* with ``--exposure``: one whole WFI exposure, the input hard-linked under the 18
  detector names of one exposure: one association (18 ``calibrate`` tasks, one joint
  ``align``, 18 ``write`` tasks) on the widest layout;
* ``strun`` loop: romancal 1.1's ExposurePipeline once per detector, each a fresh
  process (``benchmarks/_romancal.py``); with ``--romancal-detectors K`` only K are
  run and the loop's time is extrapolated (marked).

Both romancal-lite rows use the same decompressed-reference cache, primed before the
timed runs. Reported per row: exposure-detectors per hour, CPU seconds per
exposure-detector (the command's and its workers' user + system time), the cores the
row obtained (CPU / wall), how busy the whole machine was meanwhile (every process's
CPU time, ``/proc/stat``: on a shared machine the other jobs' share is the rest), and
peak memory per process / per worker task (Linux ``VmHWM``). Then the scaling from 1
to 2 workers, the start-up cost a warm worker saves (a ``run`` process's wall time
minus the mean time of a batch task), and a projection for a day of Roman data, from
the wall time on this machine and from the CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _romancal  # noqa: E402
from benchmarks.pipeline import (  # noqa: E402
    POINTING_ERROR,
    STARS_PER_FULL_FRAME,
    _stars_for,
    default_workdir,
    parse_size,
    prepare_case,
    prime_reference_cache,
)

#: Roman's WFI: detectors per exposure, and a rough exposure cadence for the projection
#: (the High Latitude Wide Area Survey takes ~140 s exposures plus slews: ~500 per day).
DETECTORS_PER_EXPOSURE = 18
EXPOSURES_PER_DAY = 500


def _machine_cpu() -> tuple[float, float]:
    """Return the machine's (busy, total) CPU seconds so far, every core (``/proc/stat``)."""
    try:
        with open("/proc/stat") as fh:
            fields = [float(v) for v in fh.readline().split()[1:]]
    except OSError:  # pragma: no cover - not Linux
        return 0.0, 0.0
    tick = float(os.sysconf("SC_CLK_TCK"))
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])
    return (total - idle) / tick, total / tick


def _run_timed(cmd: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run a command; return its wall time, exit status, peak memory (its own), CPU time
    (its own and its waited-for descendants': the batch's workers) and the machine's
    busy CPU time meanwhile (everybody's: the other jobs of a shared machine too)."""
    busy0, total0 = _machine_cpu()
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, **env})
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    busy1, total1 = _machine_cpu()
    return {"wall": wall, "status": os.waitstatus_to_exitcode(status),
            "peak_mb": usage.ru_maxrss / 1024.0, "cpu": usage.ru_utime + usage.ru_stime,
            "machine_busy": busy1 - busy0, "machine_total": total1 - total0}


def _layouts(text: str) -> list[tuple[int, int | None]]:
    """Parse ``--workers``: ``2`` (the batch's default threads) or ``2x1`` (workers x
    OpenMP threads per task)."""
    out = []
    for item in text.split(","):
        workers, _, threads = item.strip().partition("x")
        out.append((int(workers), int(threads) if threads else None))
    return out


def _show_timeline(name: str, ledger: dict[str, Any], full: bool) -> None:
    """Print where the row's workers were idle (the whole timeline with ``full``)."""
    from romancal_lite.batch._timeline import timeline

    try:
        line = timeline(ledger)
    except (KeyError, ValueError):
        return
    phases = ", ".join(f"{k} {v:.1f}" for k, v in line.phases.items())
    print(f"# {name}: idle worker-seconds {line.idle:.1f} of "
          f"{line.wall * len(line.workers):.1f} (start "
          f"{sum(w.head for w in line.workers):.1f}, gaps {sum(w.gaps for w in line.workers):.1f}"
          f", tail {sum(w.tail for w in line.workers):.1f}); phases: {phases}", flush=True)
    if full:
        print(line.table(), flush=True)


def _batch_row(name: str, r: dict[str, Any], ledger: dict[str, Any], n: int,
               workers: int) -> dict[str, Any]:
    tasks = ledger["tasks"].values()
    return {
        "name": name, "wall": r["wall"], "n": n, "workers": workers,
        "peak_mb": max(t.get("peak_memory_mb") or 0 for t in tasks),
        "cpu": r["cpu"], "task_cpu": sum(t.get("cpu_s") or 0 for t in tasks),
        "machine_busy": r["machine_busy"], "machine_total": r["machine_total"],
    }


def _members(asn: Path) -> list[Path]:
    data = json.loads(asn.read_text())
    return [asn.parent / m["expname"] for m in data["products"][0]["members"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4096x4096")
    parser.add_argument("--detectors", type=int, default=8)
    parser.add_argument("--workers", default="1x1,1x2,2x1",
                        help="batch layouts: N (the batch's default OpenMP threads) or NxT "
                             "(N workers, T OpenMP threads per task), comma-separated")
    parser.add_argument("--exposure", action="store_true",
                        help="also one whole WFI exposure: the input under 18 detector "
                             "names of one exposure (one association: calibrate, one "
                             "joint alignment, write), with the widest layout")
    parser.add_argument("--skip-serial", action="store_true")
    parser.add_argument("--romancal-detectors", type=int, default=None)
    parser.add_argument("--skip-romancal", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment of the batch rows (their workers inherit it), "
                             "e.g. NUMPY_MADVISE_HUGEPAGE=0; repeatable")
    parser.add_argument("--timeline", action="store_true",
                        help="print each batch row's timeline per worker (from its ledger)")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory of the runs (default: in --workdir)")
    ns = parser.parse_args(argv)
    shape = parse_size(ns.size)
    workdir = (ns.workdir or default_workdir()).resolve()
    print(f"# preparing a {shape[0]} x {shape[1]} exposure in {workdir}", flush=True)
    case = prepare_case(workdir, shape, 9, n_stars=_stars_for(shape, STARS_PER_FULL_FRAME),
                        pointing_error=POINTING_ERROR)
    bench = (ns.out or workdir / f"batch_{shape[0]}x{shape[1]}").resolve()
    shutil.rmtree(bench, ignore_errors=True)
    (bench / "inputs").mkdir(parents=True)
    members = []
    for k in range(1, ns.detectors + 1):
        member = bench / "inputs" / f"r0000101001001001001_{k:04d}_wfi02_uncal.asdf"
        os.link(case.uncal, member)
        members.append(member)
    env: dict[str, str] = {}
    refcache = bench / "uncompressed_refs"
    elp = [sys.executable, "-m", "romancal_lite"]
    refcat = ["--steps.tweakreg.abs_refcat", str(case.refcat)]
    from romancal_lite.pipeline import ExposurePipeline

    for reftype in ExposurePipeline.reference_file_types:
        if reftype in case.refs:
            refcat += [f"--override-{reftype}", str(case.refs[reftype])]
        elif reftype in _romancal.NOT_APPLICABLE:
            refcat += [f"--override-{reftype}", "N/A"]
    # prime the decompressed-reference cache (not timed): what the first exposure of a
    # detector pays once per machine
    seconds = prime_reference_cache(case.refs, refcache)
    print(f"# reference cache primed in {seconds:.1f} s (not timed)", flush=True)
    env["ROMANCAL_LITE_REFERENCE_CACHE"] = str(refcache)
    batch_env = dict(env)
    for item in ns.env:
        name, _, value = item.partition("=")
        batch_env[name] = value
    detectors = members
    results: dict[str, Any] = {"shape": shape, "detectors": len(detectors), "rows": []}

    # the serial loop of run
    per_run = None
    if not ns.skip_serial:
        runs = []
        busy0, total0 = _machine_cpu()
        start = time.perf_counter()
        for member in members:
            r = _run_timed([*elp, "run", "roman_elp", str(member), *refcat, "--output-dir",
                            str(bench / "serial")], env, bench / f"serial_{member.stem}.log")
            if r["status"] != 0:
                raise RuntimeError(f"run failed on {member}: see {bench}")
            runs.append(r)
        serial_wall = time.perf_counter() - start
        busy1, total1 = _machine_cpu()
        shutil.rmtree(bench / "serial", ignore_errors=True)  # ~0.5 GB per full frame
        results["rows"].append({
            "name": "run loop (1 process at a time)", "wall": serial_wall,
            "peak_mb": max(r["peak_mb"] for r in runs), "n": len(members),
            "cpu": sum(r["cpu"] for r in runs), "machine_busy": busy1 - busy0,
            "machine_total": total1 - total0})
        per_run = serial_wall / len(members)

    task_means = {}
    for workers, threads in _layouts(ns.workers):
        tag = f"{workers}x{threads}" if threads else str(workers)
        out = bench / f"batch_{tag}"
        cmd = [*elp, "batch", *map(str, members), *refcat, "--output-dir", str(out),
               "--workers", str(workers), "--dashboard-address", "none",
               "--reference-cache", str(refcache)]
        if threads:
            cmd += ["--omp-threads", str(threads)]
        r = _run_timed(cmd, batch_env, bench / f"batch_{tag}.log")
        if r["status"] != 0:
            raise RuntimeError(f"batch failed: see {bench / f'batch_{tag}.log'}")
        ledger = json.loads((out / "batch_ledger.json").read_text())
        _show_timeline(f"batch {tag}", ledger, ns.timeline)
        tasks = [t for t in ledger["tasks"].values() if t.get("kind") in {"calibrate", "elp"}]
        task_means[tag] = sum(t["time_s"] for t in tasks) / len(tasks)
        for product in out.glob("r*_*.asdf"):  # keep the ledger, report and thumbnails
            product.unlink()
        threads_text = f", {threads} OpenMP thread{'s' if threads > 1 else ''}" if threads \
            else ""
        results["rows"].append(_batch_row(
            f"batch, {workers} worker{'s' if workers > 1 else ''}{threads_text}", r, ledger,
            len(members), workers))

    if ns.exposure:
        workers, threads = max(_layouts(ns.workers))
        expo = bench / "exposure_inputs"
        expo.mkdir()
        detectors = []
        for k in range(1, DETECTORS_PER_EXPOSURE + 1):
            member = expo / f"r0000101001001001001_0001_wfi{k:02d}_uncal.asdf"
            os.link(case.uncal, member)
            detectors.append(member)
        out = bench / "batch_exposure"
        cmd = [*elp, "batch", *map(str, detectors), *refcat, "--output-dir", str(out),
               "--workers", str(workers), "--dashboard-address", "none",
               "--reference-cache", str(refcache)]
        if threads:
            cmd += ["--omp-threads", str(threads)]
        r = _run_timed(cmd, batch_env, bench / "batch_exposure.log")
        if r["status"] != 0:
            raise RuntimeError(f"batch failed: see {bench / 'batch_exposure.log'}")
        ledger = json.loads((out / "batch_ledger.json").read_text())
        _show_timeline("batch exposure", ledger, ns.timeline)
        for product in out.glob("r*_*.asdf"):
            product.unlink()
        row = _batch_row(f"batch, one exposure of {DETECTORS_PER_EXPOSURE} detectors "
                         f"(joint alignment), {workers} workers", r, ledger,
                         DETECTORS_PER_EXPOSURE, workers)
        row["exposure"] = True
        row["align_s"] = sum(t.get("time_s") or 0 for t in ledger["tasks"].values()
                             if t.get("kind") == "align")
        results["rows"].append(row)

    if not ns.skip_romancal:
        k = min(ns.romancal_detectors or len(members), len(members))
        walls = []
        for member in members[:k]:
            r = _romancal.run_romancal_subprocess(
                member, bench / f"romancal_{member.stem}", case.refs, abs_refcat=case.refcat)
            walls.append(r)
            for product in (bench / f"romancal_{member.stem}").glob("*.asdf"):
                product.unlink()
        wall = sum(r["wall"] for r in walls) * len(members) / k
        results["rows"].append({
            "name": "romancal 1.1 strun loop" + (f" (extrapolated from {k})" if k < len(
                members) else ""),
            "wall": wall, "peak_mb": max(r["peak_rss"] for r in walls) / 2**20,
            "n": len(members)})

    load = os.getloadavg()
    print(f"\n{len(members)} exposure-detectors of {shape[0]} x {shape[1]}, 9 resultants, "
          f"through tweakreg; machine: {os.cpu_count()} cores, load {load[0]:.1f} "
          f"{load[1]:.1f} {load[2]:.1f}\n")
    cores = os.cpu_count() or 1
    print("| runner | wall (s) | exposure-detectors / hour | CPU s per exposure-detector "
          "| cores it got (CPU / wall) | machine busy (all jobs) | peak memory per "
          "process/worker task (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in results["rows"]:
        row["per_hour"] = 3600.0 * row["n"] / row["wall"]
        cpu = row.get("cpu")
        got = "-" if cpu is None else f"{cpu / row['wall']:.2f}"
        per = "-" if cpu is None else f"{cpu / row['n']:.1f}"
        busy = "-"
        if row.get("machine_total"):
            busy = f"{100.0 * row['machine_busy'] / row['machine_total']:.0f} %"
        print(f"| {row['name']} | {row['wall']:.1f} | {row['per_hour']:.0f} | {per} | {got} "
              f"| {busy} | {row['peak_mb']:.0f} |")
    print(f"\n(machine: {cores} cores; 'machine busy' is every process's CPU over the row's "
          "wall time x cores: other jobs' share = busy - ours)")
    walls = {row["name"]: row["wall"] for row in results["rows"] if row.get("workers")}
    one = [r for r in results["rows"] if r.get("workers") == 1 and not r.get("exposure")]
    two = [r for r in results["rows"] if r.get("workers") == 2 and not r.get("exposure")]
    if one and two:
        for base in one:
            scaling = base["wall"] / two[0]["wall"]
            results.setdefault("scaling", {})[base["name"]] = scaling
            print(f"scaling {base['name']} -> {two[0]['name']}: {scaling:.2f}x (wall); "
                  f"cores obtained {base['cpu'] / base['wall']:.2f} -> "
                  f"{two[0]['cpu'] / two[0]['wall']:.2f}; CPU per exposure-detector "
                  f"{base['cpu'] / base['n']:.1f} -> {two[0]['cpu'] / two[0]['n']:.1f} s")
    del walls
    if task_means and per_run is not None:
        mean_task = min(task_means.values())
        results["warm_saving_s"] = per_run - mean_task
        print(f"start-up a warm worker saves: {per_run:.1f} s per run process vs "
              f"{mean_task:.1f} s per batch task = {per_run - mean_task:.1f} s per "
              "exposure-detector")
    for row in results["rows"]:
        if row.get("exposure"):
            print(f"one whole exposure ({row['n']} detectors): {row['wall']:.1f} s "
                  f"(joint alignment task {row['align_s']:.1f} s)")
    best = max((r for r in results["rows"] if r.get("workers") and not r.get("exposure")),
               key=lambda r: r["per_hour"], default=None)
    if best is not None:
        # what the row achieved with the machine's cores (other jobs included), and what
        # its CPU time says a core does when it is the batch's alone
        per_core_hour = best["per_hour"] / cores
        per_cpu_hour = 3600.0 * best["n"] / best["cpu"]
        per_day = EXPOSURES_PER_DAY * DETECTORS_PER_EXPOSURE
        need = per_day / (24.0 * per_core_hour)
        need_cpu = per_day / (24.0 * per_cpu_hour)
        results["projection"] = {"per_core_hour": per_core_hour, "cores_for_a_day": need,
                                 "per_cpu_hour": per_cpu_hour, "cpu_cores_for_a_day": need_cpu}
        print(f"\nprojection: {per_day} exposure-detectors a day ({EXPOSURES_PER_DAY} "
              f"exposures x {DETECTORS_PER_EXPOSURE}), {shape[0]} x {shape[1]}; best batch row "
              f"({best['name']}): {per_core_hour:.0f} per core-hour of this shared machine -> "
              f"{need:.1f} cores all day; {per_cpu_hour:.0f} per CPU-hour of its own CPU "
              f"time (cores of its own) -> {need_cpu:.1f} cores all day")
    if ns.json:
        ns.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
