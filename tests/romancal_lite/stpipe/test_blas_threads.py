"""BLAS on one thread while a step runs (`romancal_lite.stpipe.threads`)."""

from __future__ import annotations

import numpy as np  # noqa: F401  (loads the BLAS library the tests limit)
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from romancal_lite.stpipe import Pipeline, Step
from romancal_lite.stpipe.threads import one_blas_thread


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture
def two_blas_threads():
    if not _blas_threads():
        pytest.skip("no BLAS library loaded")
    with threadpool_limits(limits=2, user_api="blas"):
        if max(_blas_threads()) < 2:
            pytest.skip("BLAS cannot use two threads here")
        yield


class _BlasProbe(Step):
    """Records the BLAS thread counts while it runs."""

    class_alias = "blas_probe"

    def process(self, model):
        self.seen = _blas_threads()
        return model


class _BlasPipeline(Pipeline):
    class_alias = "blas_probe_pipeline"
    step_defs = {"blas_probe": _BlasProbe}

    def process(self, model):
        self.seen = _blas_threads()
        return self.blas_probe.run(model)


def test_one_blas_thread_limits_and_restores(two_blas_threads):
    with one_blas_thread():
        assert set(_blas_threads()) == {1}
    assert max(_blas_threads()) == 2


def test_a_step_runs_with_one_blas_thread(two_blas_threads):
    probe = _BlasProbe()
    probe.run(object())
    assert probe.seen and set(probe.seen) == {1}
    assert max(_blas_threads()) == 2  # restored


def test_a_pipeline_and_its_steps_run_with_one_blas_thread(two_blas_threads):
    pipeline = _BlasPipeline()
    pipeline.run(object())
    assert set(pipeline.seen) == {1}
    assert set(pipeline.blas_probe.seen) == {1}
    assert max(_blas_threads()) == 2
