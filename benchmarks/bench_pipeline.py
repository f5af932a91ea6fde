"""asv benchmarks of romancal-lite's end-to-end ``roman_elp`` (dq_init ... flatfield).

Each sample is one ``ExposurePipeline.call`` on a synthetic Level 1 exposure with the
built-in reference files given as overrides: reading the input, the nine steps and
writing the ``_cal`` file.  The exposure and the references are written once, before
any timing, into ``$ROMANCAL_LITE_BENCH_DIR`` (default ``~/.cache/romancal_lite/bench``)
and reused by later runs.

Size: ``ROMANCAL_LITE_BENCH_SIZE=NY`` (rows of the 4096-column width) or ``NYxNX``;
otherwise 1024 x 4096, or 256 x 4096 with ``ASV_SKIP_SLOW=1``.  The full-frame
comparison with romancal 1.1 is ``benchmarks/pipeline.py``.

Run (offline, in the current environment)::

    asv machine --yes
    ASV_SKIP_SLOW=1 asv run --python=same --quick --show-stderr -b bench_pipeline
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ._romancal import cal_path_for, warm_up
from .pipeline import bench_size, default_workdir, prepare_case, run_ours

N_RESULTANTS = [9, 15]


def pipeline_shape() -> tuple[int, int]:
    """Return the exposure shape of this suite (see the module docstring).

    Returns
    -------
    tuple of int
        ``(ny, nx)``.
    """
    if os.environ.get("ASV_SKIP_SLOW", "") not in ("", "0"):
        return bench_size((256, 4096))
    return bench_size((1024, 4096))


def _require_pipeline() -> None:
    try:
        import romancal_lite.pipeline  # noqa: F401
    except ImportError as err:
        raise NotImplementedError("romancal_lite.pipeline is not available") from err


class ExposurePipeline:
    """``romancal_lite.pipeline.ExposurePipeline`` through flatfield."""

    params = [N_RESULTANTS]
    param_names = ["n_resultants"]
    number = 1
    warmup_time = 0.0
    repeat = (1, 3, 300.0)
    rounds = 1
    timeout = 1800.0

    def setup_cache(self) -> dict[int, tuple[str, dict[str, str]]]:
        """Write the inputs and references of every parameter (untimed, cached on disk)."""
        shape = pipeline_shape()
        cases = {}
        for n in N_RESULTANTS:
            case = prepare_case(default_workdir(), shape, n)
            cases[n] = (str(case.uncal), case.refs)
        return cases

    def setup(self, cases, n_resultants):
        _require_pipeline()
        warm_up("ours")
        self.uncal, self.refs = cases[n_resultants]
        self.out = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))

    def teardown(self, cases, n_resultants):
        shutil.rmtree(self.out, ignore_errors=True)

    def _run(self):
        run_ours(self.uncal, self.out, self.refs)
        cal_path_for(self.uncal, self.out).unlink()

    def time_exposure_pipeline(self, cases, n_resultants):
        self._run()

    def peakmem_exposure_pipeline(self, cases, n_resultants):
        # Whole-process peak (asv): the pipeline plus the interpreter and imports.
        self._run()
