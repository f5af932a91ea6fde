import os
import warnings

import pytest

import romancore
from romancore import effective_n_threads

CPUS = len(os.sched_getaffinity(0))
OMP = romancore.openmp_enabled()


def _expect(n):
    return n if OMP else 1


def test_openmp_enabled_is_bool():
    assert type(romancore.openmp_enabled()) is bool


def test_positive_taken_as_given():
    assert effective_n_threads(1) == 1
    assert effective_n_threads(2) == _expect(2)
    # oversubscription is the caller's choice: not capped at the number of cores
    assert effective_n_threads(CPUS + 5) == _expect(CPUS + 5)


def test_negative_counts_from_all_cores():
    assert effective_n_threads(-1) == _expect(CPUS)
    assert effective_n_threads(-2) == _expect(max(CPUS - 1, 1))
    assert effective_n_threads(-10_000) == 1


def test_none_uses_omp_num_threads_or_all_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert effective_n_threads(None) == _expect(3)
    assert effective_n_threads() == _expect(3)
    for bad in ("", "0", "two", "-2"):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        n = effective_n_threads(None)
        assert 1 <= n <= CPUS
    monkeypatch.delenv("OMP_NUM_THREADS")
    n = effective_n_threads(None)
    assert 1 <= n <= CPUS
    if OMP:
        from romancore._parallel import max_threads

        assert n == min(max_threads(), CPUS)


@pytest.mark.parametrize("bad", [0, True, False, 2.0, 1.5, "2", [2]])
def test_invalid(bad):
    with pytest.raises(ValueError):
        effective_n_threads(bad)


def test_result_is_int_at_least_one():
    for value in (None, 1, 2, -1, -3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n = effective_n_threads(value)
        assert type(n) is int and n >= 1


def _openmp_settings(env: dict[str, str]) -> dict[str, str]:
    """The OpenMP runtime's settings in a fresh interpreter that imports romancore."""
    import re
    import subprocess
    import sys

    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    run_env.update(env, OMP_DISPLAY_ENV="VERBOSE")
    code = "import numpy as np, romancore; romancore.to_float16(np.ones(4, np.float32))"
    done = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True,
                          text=True, check=True, timeout=120)  # fmt: skip
    return dict(re.findall(r"^\s*([A-Z_]+) = '?([^'\n]*)'?$", done.stderr, re.MULTILINE))


def test_idle_openmp_threads_sleep_unless_the_user_says_otherwise():
    # GNU OpenMP: OMP_WAIT_POLICY=passive is a spin count of 0 (its default spins
    # 300000 times before sleeping); the policy is read when the runtime is loaded
    from romancore import openmp_enabled

    if not openmp_enabled():
        pytest.skip("romancore was built without OpenMP")
    settings = _openmp_settings({})
    if "GOMP_SPINCOUNT" not in settings:
        pytest.skip("not the GNU OpenMP runtime")
    assert settings["GOMP_SPINCOUNT"] == "0"
    chosen = _openmp_settings({"OMP_WAIT_POLICY": "active"})
    assert chosen["OMP_WAIT_POLICY"] == "ACTIVE"
    assert chosen["GOMP_SPINCOUNT"] != "0"
