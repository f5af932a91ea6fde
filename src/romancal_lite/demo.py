"""The built-in demo: simulate a Roman exposure, calibrate it, preview and score it.

``romancal_lite demo`` (README's main command) writes into ``--output-dir``
(default ``romancal_lite_demo``):

* ``<name>_uncal.asdf``: a simulated Level 1 exposure with its truth
  (`romancal_lite.simulate`), made once and reused;
* ``<name>_cal.asdf``: the ``roman_elp`` result;
* ``<name>_cal.png``: a preview of the calibrated image;

and prints how well the calibrated image recovers the simulated truth.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEMO_NAME", "run_demo", "score"]

#: Basename of the demo exposure (an official-style exposure file name).
DEMO_NAME = "r0000101001001001001_0001_wfi01"


def score(image: Any, truth: dict[str, Any]) -> dict[str, float]:
    """Compare a calibrated image with the simulator's truth.

    Parameters
    ----------
    image : ImageModel
        The ``_cal`` image (DN/s, science array).
    truth : dict
        From `romancal_lite.simulate.read_truth`: ``rate`` (DN/s, science array),
        ``dq`` (per-resultant flags of the full read-out, JUMP_DET where a cosmic ray
        hit) and ``saturated_resultant`` (first saturated resultant or -1, science
        array).

    Returns
    -------
    dict
        ``sky_pull_median`` and ``sky_pull_std`` (``(data - rate) / err`` over
        unflagged sky pixels), ``cr_found`` (fraction of science pixels hit by a cosmic
        ray that carry JUMP_DET, among those not saturated), ``jump_false`` (fraction
        of pixels without a hit flagged JUMP_DET), ``saturated_flagged`` (fraction of
        truly saturated pixels flagged SATURATED).
    """
    from romancal_lite.references._spec import BORDER as b
    from romancore.dqflags import pixel

    data = np.asarray(image.data, np.float64)
    err = np.asarray(image.err, np.float64)
    dq = np.asarray(image.dq)
    rate = np.asarray(truth["rate"], np.float64)
    hits = (np.asarray(truth["dq"]) & pixel.JUMP_DET).any(axis=0)[b:-b, b:-b]
    first_sat = np.asarray(truth["saturated_resultant"])
    sat = first_sat >= 0
    jump = (dq & pixel.JUMP_DET) != 0
    bad = (dq & (pixel.DO_NOT_USE | pixel.SATURATED)) != 0
    sky = ~bad & ~hits & ~jump & ~sat & (rate <= np.percentile(rate, 50)) & (err > 0)
    pull = (data[sky] - rate[sky]) / err[sky]
    usable_hits = hits & ~sat
    return {
        "sky_pull_median": float(np.median(pull)) if pull.size else float("nan"),
        "sky_pull_std": float(np.std(pull)) if pull.size else float("nan"),
        "cr_found": float(jump[usable_hits].mean()) if usable_hits.any() else float("nan"),
        "jump_false": float(jump[~hits & ~sat].mean()),
        "saturated_flagged": float(((dq[sat] & pixel.SATURATED) != 0).mean())
        if sat.any()
        else float("nan"),
    }


def run_demo(
    output_dir: str | Path = "romancal_lite_demo",
    *,
    shape: tuple[int, int] = (4096, 4096),
    read_pattern: str | None = None,
    seed: int = 42,
    log: Any = print,
) -> dict[str, Any]:
    """Simulate (once), calibrate, preview and score the demo exposure.

    Parameters
    ----------
    output_dir : str or Path, optional
        Where the files go (created if needed).
    shape : tuple of int, optional
        Full read-out shape of the simulated detector (default a full 4096 x 4096).
    read_pattern : str, optional
        Named read pattern of `romancal_lite.simulate` (default: its default, "ma4",
        9 resultants).
    seed : int, optional
        Random seed of the simulation.
    log : callable, optional
        Receives one progress line at a time.

    Returns
    -------
    dict
        Paths (``uncal``, ``cal``, ``png``), timings (``simulate_s``, ``calibrate_s``)
        and the `score` figures.
    """
    from romancal_lite import references, simulate
    from romancal_lite.references._spec import FULL_SHAPE

    read_pattern = read_pattern or simulate.DEFAULT_READ_PATTERN
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    shape = (int(shape[0]), int(shape[1]))
    if shape == FULL_SHAPE or references.user_configured():
        return _run(out, shape, read_pattern, seed, log)
    # the default built-in cache describes full detectors: give this size its own
    cache_dir = out / f".crds_{shape[0]}x{shape[1]}"
    log(f"built-in references for a {shape[0]} x {shape[1]} detector in {cache_dir}")
    with references.builtin_cache(references.generate_cache(cache_dir, full_shape=shape)):
        return _run(out, shape, read_pattern, seed, log)


def _run(out: Path, shape: tuple[int, int], read_pattern: str, seed: int, log: Any) -> dict:
    from romancal_lite import datamodels, preview, simulate
    from romancal_lite.pipeline import ExposurePipeline

    tag = f"{shape[0]}x{shape[1]}_{read_pattern}_s{seed}"
    uncal = out / f"{DEMO_NAME}_uncal.asdf"
    stamp = out / ".demo_input"
    t0 = time.perf_counter()
    if not uncal.exists() or not stamp.exists() or stamp.read_text() != tag:
        log(f"simulating a {shape[0]} x {shape[1]} exposure ({read_pattern}) -> {uncal}")
        simulate.write_exposure(uncal, shape=shape, read_pattern=read_pattern, seed=seed)
        stamp.write_text(tag)
    else:
        log(f"reusing {uncal}")
    t1 = time.perf_counter()
    log("calibrating with roman_elp (the first run also generates the reference files)")
    ExposurePipeline.call(uncal, output_dir=str(out), save_results=True)
    t2 = time.perf_counter()
    cal = out / f"{DEMO_NAME}_cal.asdf"
    png = out / f"{DEMO_NAME}_cal.png"
    truth = simulate.read_truth(uncal)
    with datamodels.open(cal) as image:
        preview.write_png(image.data, png, dq=image.dq)
        figures = score(image, truth)
    log(f"wrote {cal} and {png}")
    log(
        "truth check: sky (data - truth)/err median {sky_pull_median:+.3f}, std"
        " {sky_pull_std:.3f}; cosmic rays flagged {cr_found:.1%} (false {jump_false:.3%});"
        " saturated pixels flagged {saturated_flagged:.1%}".format(**figures)
    )
    return {
        "uncal": uncal,
        "cal": cal,
        "png": png,
        "simulate_s": t1 - t0,
        "calibrate_s": t2 - t1,
        **figures,
    }
