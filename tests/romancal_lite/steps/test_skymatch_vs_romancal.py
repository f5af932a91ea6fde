"""``skymatch`` against romancal 1.1's ``SkyMatchStep`` on the same four dithered images.

The inputs are ``test_skymatch_step.py``'s synthetic dither set (160 x 180 pixels,
0.11"/pixel, offsets of 4-10", injected skies 5.0, 7.5, 4.0, 6.0 with 0.05 noise and
40 stars each), written as ``_cal`` files that roman_datamodels reads; romancal runs
them offline in a subprocess (``benchmarks/_romancal.py``'s empty CRDS cache, sockets
refused), ours runs here; both get the models in memory (opening is not timed).

Expected agreement:

* ``local`` and ``global``: the same pixels and the same statistic
  (`romancore.skystats` reproduces stsci.imagestats), so the same levels to rounding.
* ``match`` and ``global+match``: the overlap polygons have the same vertices (the
  tangent-plane intersection is the spherical one), but the pixels filled inside them
  differ along the edges: romancal's ``gwcs.region.Polygon.scan`` rounds the vertices
  to whole pixels and fills each scan line end-inclusive (one more row and column),
  ours takes the pixels whose centres are inside. On these small images that is
  ~2% of an overlap's pixels; the measured level differences are a few thousandths
  of the noise-limited statistic's spread. ``MATCH_TOL`` bounds them.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

# the worker plumbing and the skip when romancal is missing (this directory is on sys.path)
from test_skymatch_step import DITHERS, NOISE, dither_set
from test_source_catalog_vs_romancal import (  # noqa: I001
    finish_romancal,
    pytestmark,  # noqa: F401 - the same skip (romancal missing) and filters
    send_job,
    start_romancal,
    stop_romancal,
)

from romancal_lite import datamodels
from romancal_lite.steps.skymatch import SkyMatchStep

#: Parameter sets run by both.
CASES = {
    f"{method}/{stat}": {"skymethod": method, "skystat": stat}
    for method, stats in (
        ("match", ("mode", "median")),
        ("local", ("mode", "median", "mean", "midpt")),
        ("global", ("mode",)),
        ("global+match", ("mode",)),
    )
    for stat in stats
}
CASES["match/mode/up"] = {"skymethod": "match", "match_down": False}
CASES["global+match/median/subtract"] = {"skymethod": "global+match", "skystat": "median",
                                          "subtract": True}
CASES["match/median/stepsize"] = {"skystat": "median", "stepsize": 50}
CASES["local/mode/limits"] = {"skymethod": "local", "lower": 4.5, "upper": 7.0, "nclip": 2}
#: Largest |ours - romancal| of a level, as a fraction of the noise (see the docstring).
MATCH_TOL = 0.1 * NOISE
EXACT_TOL = 1e-9

WORKER = textwrap.dedent('''
    import json, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from benchmarks._romancal import (
        _apply_environment, network_guard, offline_crds_environment)

    out = Path(sys.argv[2])
    _apply_environment(offline_crds_environment(out / "crds_offline"))
    import numpy as np
    import roman_datamodels.datamodels as rdm
    from romancal.skymatch import SkyMatchStep

    job = json.loads(sys.stdin.readline())
    result = {}
    for case, params in job["cases"].items():
        models = [rdm.open(p) for p in job["paths"]]
        start = time.perf_counter()
        with network_guard() as attempts:
            library = SkyMatchStep.call(models, **params)
        seconds = time.perf_counter() - start
        if attempts:
            raise RuntimeError(f"romancal tried to use the network: {attempts}")
        rows = []
        with library:
            for index in range(len(library)):
                model = library.borrow(index)
                rows.append({
                    "level": float(model.meta.background.level),
                    "status": str(model.meta.cal_step.skymatch),
                    "subtracted": bool(model.meta.background.subtracted),
                    "median": float(np.median(model.data)),
                })
                library.shelve(model, index, modify=False)
        result[case] = {"rows": rows, "seconds": seconds}
    (out / "result.json").write_text(json.dumps(result))
''')


def test_skymatch_against_romancal(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    proc = start_romancal(WORKER, tmp_path / "romancal")
    try:
        paths = []
        for model in dither_set():
            path = tmp_path / model.meta.filename
            model.save(str(path))
            paths.append(str(path))
    except BaseException:
        stop_romancal(proc)
        raise
    send_job(proc, {"paths": paths, "cases": CASES})
    ours = {}
    for case, params in CASES.items():
        # in memory, as romancal's side (the library path is tested in test_skymatch_step)
        models = [datamodels.open(p) for p in paths]
        start = time.perf_counter()
        result = SkyMatchStep(**params).run(models)
        seconds = time.perf_counter() - start
        rows = [{
            "level": float(model.meta.background.level),
            "status": str(model.meta.cal_step.skymatch),
            "subtracted": bool(model.meta.background.subtracted),
            "median": float(np.median(model.data)),
        } for model in result]
        ours[case] = {"rows": rows, "seconds": seconds}
    theirs = finish_romancal(proc, tmp_path / "romancal")

    injected = np.array([d[2] for d in DITHERS])
    worst = {}
    for case in CASES:
        mine, them = ours[case]["rows"], theirs[case]["rows"]
        assert [r["status"] for r in mine] == [r["status"] for r in them], case
        assert [r["subtracted"] for r in mine] == [r["subtracted"] for r in them], case
        diff = max(abs(a["level"] - b["level"]) for a, b in zip(mine, them, strict=True))
        data = max(abs(a["median"] - b["median"]) for a, b in zip(mine, them, strict=True))
        worst[case] = diff
        tol = MATCH_TOL if "match" in case else EXACT_TOL
        assert diff <= tol, f"{case}: levels differ by {diff:.3g} (> {tol:.3g})"
        assert data <= tol + 1e-6, f"{case}: data medians differ by {data:.3g}"
    with capsys.disabled():
        print("\nskymatch vs romancal 1.1: max |level difference| per case")
        for case, diff in worst.items():
            print(f"  {case:32s} {diff:.3g}   ours {ours[case]['seconds']:.2f} s,"
                  f" romancal {theirs[case]['seconds']:.2f} s")
        print(f"  injected {injected.tolist()}; romancal match/median:"
              f" {[round(r['level'], 4) for r in theirs['match/median']['rows']]}")
