"""Shared fixtures of the step tests: a small generated CRDS cache in use.

``SMALL_SHAPE`` is the full read-out (science plus the 4-pixel reference border) of
the small detectors the step tests use: 2 amplifiers of 128 columns wide, so the
per-amplifier logic is exercised, and short enough to run in milliseconds.
"""

import os
from types import SimpleNamespace

import pytest

from romancal_lite.references import builtin_cache, generate_cache

SMALL_SHAPE = (40, 256)


@pytest.fixture(scope="session")
def small_cache(tmp_path_factory):
    """A generated cache of ``SMALL_SHAPE`` references for every detector."""
    return generate_cache(tmp_path_factory.mktemp("steps_crds"), full_shape=SMALL_SHAPE)


@pytest.fixture
def builtin_refs(small_cache):
    """Select references from `small_cache` (the user's CRDS setup is hidden)."""
    with builtin_cache(small_cache, hide_user_crds=True):
        yield small_cache



@pytest.fixture
def run_cli(tmp_path, capsys):
    """Run ``python -m romancal_lite run <step> <input> [args]`` in-process.

    Returns a function ``(step, model_or_path, *args)``: a model is first saved to
    ``r0000101001001001001_0001_wfi01_uncal.asdf`` in a fresh folder; outputs go to
    ``<that folder>/out``. It returns a namespace with ``status`` (the exit status),
    ``err`` (stderr), ``warnings`` (the WARNING log lines), ``errors`` (the one-line
    ``romancal_lite: error:`` messages) and ``out`` (the output folder).
    """
    from romancal_lite import cli

    counter = iter(range(1000))

    def run(step, model, *args):
        folder = tmp_path / f"run{next(counter)}"
        folder.mkdir()
        if isinstance(model, str | os.PathLike):
            path = str(model)
        else:
            path = str(folder / "r0000101001001001001_0001_wfi01_uncal.asdf")
            model.save(path)
        out = folder / "out"
        capsys.readouterr()
        status = cli.main(["run", step, path, "--output-dir", str(out), *args])
        err = capsys.readouterr().err
        return SimpleNamespace(
            status=status,
            err=err,
            warnings=[line for line in err.splitlines() if " - WARNING - " in line],
            errors=[line for line in err.splitlines() if line.startswith("romancal_lite: error:")],
            out=out,
        )

    return run
