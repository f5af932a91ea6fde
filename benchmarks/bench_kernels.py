"""asv benchmarks of the romancore kernels, beside stcal 1.20 where installed.

The frame is a synthetic full-frame exposure (``benchmarks/_data.py``) of 4096 x 4096
pixels; ``ASV_SKIP_SLOW=1`` uses 1024 x 4096, ``ROMANCORE_BENCH_SIZE=NY`` (or
``NYxNX``) any size.  The frame is built once per benchmark process and cached; setup
restores the in-place-modified arrays before every timed call (outside the timing).

Run (offline, in the current environment)::

    asv machine --yes
    ASV_SKIP_SLOW=1 asv run --python=same --quick --show-stderr -b kernels
"""

from __future__ import annotations

import numpy as np

import romancore

from ._data import FRAME_TIME, PeakRSS, dqflags_dict, prepared

N_RESULTANTS = [9, 15]
THREADS = ["1", "all"]


def _n_threads(name: str) -> int:
    return 1 if name == "1" else -1


class _Base:
    """Common settings: one call per sample, no warm-up, long timeout."""

    number = 1
    warmup_time = 0.0
    repeat = (1, 5, 60.0)
    timeout = 1800.0


class TimeCopy(_Base):
    """Baseline: plain NumPy copy of the raw cube (the memory-bandwidth floor)."""

    params = [N_RESULTANTS]
    param_names = ["n_resultants"]

    def setup(self, n_resultants):
        self.p = prepared(n_resultants)

    def time_copy_cube(self, n_resultants):
        np.copyto(self.p.work_data, self.p.frame.data)


class Saturation(_Base):
    """``romancore.flag_saturation`` on the raw cube."""

    params = [N_RESULTANTS, THREADS]
    param_names = ["n_resultants", "n_threads"]

    def setup(self, n_resultants, n_threads):
        self.p = prepared(n_resultants)
        self.p.work_gdq.fill(0)
        self.p.work_pdq.fill(0)

    def time_flag_saturation(self, n_resultants, n_threads):
        p, f = self.p, self.p.frame
        romancore.flag_saturation(f.data, p.work_gdq, p.work_pdq, f.sat_thresh, f.sat_dq,
                                  f.read_pattern, n_threads=_n_threads(n_threads))


class Linearity(_Base):
    """``romancore.apply_linearity`` (cubic) on the raw cube with the saturation DQ."""

    params = [N_RESULTANTS, THREADS]
    param_names = ["n_resultants", "n_threads"]

    def setup(self, n_resultants, n_threads):
        self.p = prepared(n_resultants)
        np.copyto(self.p.work_data, self.p.frame.data)
        np.copyto(self.p.work_pdq, self.p.pdq_sat)

    def time_apply_linearity(self, n_resultants, n_threads):
        p, f = self.p, self.p.frame
        romancore.apply_linearity(p.work_data, p.gdq_sat, p.work_pdq, f.lin_coeffs, f.lin_dq,
                                  n_threads=_n_threads(n_threads))


class FitRamps(_Base):
    """``romancore.fit_ramps`` on the linearized cube, with and without jump detection."""

    params = [N_RESULTANTS, THREADS, [False, True]]
    param_names = ["n_resultants", "n_threads", "use_jump"]

    def setup(self, n_resultants, n_threads, use_jump):
        self.p = prepared(n_resultants)
        np.copyto(self.p.work_gdq, self.p.gdq_sat)

    def _fit(self, n_threads, use_jump):
        p = self.p
        return romancore.fit_ramps(p.linearized, p.work_gdq, p.frame.read_noise,
                                   p.frame.read_pattern, FRAME_TIME, use_jump=use_jump,
                                   n_threads=_n_threads(n_threads))

    def time_fit_ramps(self, n_resultants, n_threads, use_jump):
        self._fit(n_threads, use_jump)

    def peakmem_fit_ramps(self, n_resultants, n_threads, use_jump):
        # Whole-process peak: includes the cached input cubes.
        self._fit(n_threads, use_jump)

    def track_fit_ramps_extra_memory(self, n_resultants, n_threads, use_jump):
        """Resident-memory high-water mark of the call above the RSS before it, in MB."""
        with PeakRSS() as mem:
            self._fit(n_threads, use_jump)
        if mem.extra is None:
            raise NotImplementedError("needs Linux /proc/self/clear_refs")
        return mem.extra / 2**20

    track_fit_ramps_extra_memory.unit = "MB"


# -- stcal 1.20 on the same arrays (single-threaded; skipped when not installed) ---------


def _require_stcal():
    try:
        import stcal  # noqa: F401
    except ImportError as err:
        raise NotImplementedError("stcal is not installed") from err


class _Stcal(_Base):
    """stcal is slow on a full frame: one sample in one process."""

    repeat = 1
    rounds = 1


class StcalSaturation(_Stcal):
    """``stcal.saturation.saturation.flag_saturated_pixels`` as romancal 1.1 calls it."""

    params = [N_RESULTANTS]
    param_names = ["n_resultants"]

    def setup(self, n_resultants):
        _require_stcal()
        self.p = prepared(n_resultants)
        self.p.work_gdq.fill(0)
        self.p.work_pdq.fill(0)
        self.thresh = self.p.frame.sat_thresh.copy()
        self.sat_dq = self.p.frame.sat_dq.copy()
        self.flags = dqflags_dict()

    def time_flag_saturated_pixels(self, n_resultants):
        from stcal.saturation.saturation import flag_saturated_pixels

        p = self.p
        flag_saturated_pixels(p.frame.data[None], p.work_gdq[None], p.work_pdq, self.thresh,
                              self.sat_dq, 65535.0, self.flags, n_pix_grow_sat=0,
                              read_pattern=p.frame.read_pattern)


class StcalLinearity(_Stcal):
    """``stcal.linearity.linearity.linearity_correction`` (classic polynomial)."""

    params = [N_RESULTANTS]
    param_names = ["n_resultants"]

    def setup(self, n_resultants):
        _require_stcal()
        self.p = prepared(n_resultants)
        np.copyto(self.p.work_data, self.p.frame.data)
        self.pdq = self.p.pdq_sat.copy()
        self.coeffs = self.p.frame.lin_coeffs.copy()
        self.lin_dq = self.p.frame.lin_dq.copy()
        self.flags = dqflags_dict()

    def time_linearity_correction(self, n_resultants):
        from stcal.linearity.linearity import linearity_correction

        p = self.p
        linearity_correction(p.work_data[None], p.gdq_sat[None], self.pdq, self.coeffs,
                             self.lin_dq, self.flags)


class StcalFitRamps(_Stcal):
    """``stcal.ramp_fitting.ols_cas22_fit.fit_ramps_casertano``."""

    params = [N_RESULTANTS, [False, True]]
    param_names = ["n_resultants", "use_jump"]

    def setup(self, n_resultants, use_jump):
        _require_stcal()
        self.p = prepared(n_resultants)
        self.dq32 = self.p.gdq_sat.astype(np.int32)

    def teardown(self, n_resultants, use_jump):
        self.dq32 = None

    def time_fit_ramps_casertano(self, n_resultants, use_jump):
        from stcal.ramp_fitting.ols_cas22_fit import fit_ramps_casertano

        p = self.p
        fit_ramps_casertano(p.linearized, self.dq32, p.frame.read_noise, FRAME_TIME,
                            p.frame.read_pattern, use_jump=use_jump)
