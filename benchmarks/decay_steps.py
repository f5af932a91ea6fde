"""Full-frame timing and memory of dark_decay and wfi18_transient, ours vs romancal 1.1.

Both implementations get the same 4096 x 4096 ramp (9 resultants, 27 reads: the
``ma4``-like pattern below) and the same decay constants; WFI18's ramp carries a
first-read transient. Times are wall-clock seconds of the array functions (the steps
add only the reference opening); memory is the peak of NumPy allocations above the
start of the call (``tracemalloc``), the input cube not counted. The outputs are
compared (max abs difference). Both sides' modules, and scipy.optimize (which
romancal's imports and ours imports at its first fit), are imported before timing.

Run: ``PYTHONPATH=src python benchmarks/decay_steps.py [--repeat N] [--threads N]``.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import numpy as np

PATTERN = [[1], [2], [3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [15, 16, 17, 18],
           [19, 20, 21, 22], [23, 24, 25, 26], [27]]
FRAME_TIME = 3.04
AMPLITUDE, TAU = 2.5, 20.0
SHAPE = (4096, 4096)


def measure(fn):
    """Return (seconds, peak MB of NumPy allocations) of ``fn()``."""
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 2**20


def make_ramp(seed=1):
    from romancal_lite.steps._readout import frame_read_times
    from romancal_lite.steps.wfi18_transient.wfi18_transient import (
        double_exponential,
        resultant_times,
    )

    rng = np.random.default_rng(seed)
    t = resultant_times(PATTERN, FRAME_TIME)
    rate = rng.gamma(1.0, 2.0, SHAPE).astype(np.float32)
    data = np.empty((len(PATTERN), *SHAPE), np.float32)
    for i in range(len(PATTERN)):
        data[i] = rate * np.float32(t[i]) + rng.normal(0, 3, SHAPE).astype(np.float32)
    data[0] += double_exponential(frame_read_times(FRAME_TIME, 18), 30.0, -3.0, 0.2,
                                  0.8).astype(np.float32)
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    import scipy.optimize  # noqa: F401  (romancal's module imports it; ours on first fit)
    from roman_datamodels import datamodels as rdm
    from romancal.dark_decay.dark_decay import subtract_dark_decay as rc_decay
    from romancal.wfi18_transient.wfi18_transient import correct_anomaly as rc_transient

    import romancore
    from romancal_lite.steps.dark_decay import subtract_dark_decay
    from romancal_lite.steps.wfi18_transient import correct_anomaly

    print(f"threads: {romancore.effective_n_threads(args.threads)}; "
          f"{len(PATTERN)} resultants, {sum(map(len, PATTERN))} reads, {SHAPE}")
    base = make_ramp()
    rows = []

    # dark_decay
    ours_t, theirs_t = [], []
    for _ in range(args.repeat):
        ours = base.copy()
        ours_t.append(measure(lambda d=ours: subtract_dark_decay(
            d, AMPLITUDE, TAU, FRAME_TIME, PATTERN, 2)))
        theirs = base.copy()
        theirs_t.append(measure(lambda d=theirs: rc_decay(
            d, AMPLITUDE, TAU, FRAME_TIME, PATTERN, 2)))
    diff = float(np.abs(ours - theirs).max())
    rows.append(("dark_decay", min(ours_t), min(theirs_t), diff))
    del ours, theirs

    # wfi18_transient
    ours_t, theirs_t = [], []
    for _ in range(args.repeat):
        ours = base.copy()
        gdq = np.zeros(ours.shape, np.uint8)
        ours_t.append(measure(lambda d=ours, g=gdq: correct_anomaly(
            d, g, FRAME_TIME, PATTERN)))
        model = rdm.RampModel.create_fake_data(shape=(len(PATTERN), 4, 4))
        model.meta.exposure.frame_time = FRAME_TIME
        model.meta.exposure.read_pattern = PATTERN
        model.data = base.copy()
        model.groupdq = np.zeros(base.shape, np.uint8)
        theirs_t.append(measure(lambda m=model: rc_transient(m)))
    diff = float(np.abs(ours - model.data).max())
    rows.append(("wfi18_transient", min(ours_t), min(theirs_t), diff))

    print("| step | ours s | romancal s | speed-up | ours peak MB | romancal peak MB "
          "| max abs diff (DN) |")
    print("|---|---|---|---|---|---|---|")
    for name, (ot, om), (tt, tm), d in rows:
        print(f"| {name} | {ot:.3f} | {tt:.3f} | {tt / ot:.1f}x | {om:.0f} | {tm:.0f} "
              f"| {d:.2g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
