"""Run the official romancal 1.1 ``ExposurePipeline`` offline, with given reference files.

The official pipeline is the yardstick of ``benchmarks/pipeline.py`` and of the slow
cross-check ``tests/romancal_lite/integration/test_vs_romancal.py``.  It is run through
flatfield (or, with a local reference catalog, through tweakreg) on one Level 1
(``_uncal``) exposure or an ``_asn.json`` association, configured like romancal-lite's
``roman_elp``:

* ramp fitting with ``algorithm='ols_cas22'`` and jump detection on (romancal 1.1
  defaults to ``'likely'``);
* ``include_var_rnoise`` on (ramp fit), so that the ``_cal`` file has ``var_rnoise``
  as romancal-lite's does; ``include_var_flat`` (flatfield) stays at its default, off:
  romancal 1.1 cannot save the ``_cal`` file with it (``err`` turns float32);
* every reference type a running step reads is given as an ``override_<reftype>``, so
  the CRDS best-reference machinery is never asked for a file; ``integralnonlinearity``
  (an optional correction of the linearity step) is given when the references
  include it, else overridden with ``"N/A"`` (romancal-lite's run does the same);
* ``dark_decay`` and ``wfi18_transient`` are skipped (:data:`SKIPPED_STEPS` says why);
  ``source_catalog`` and ``tweakreg`` are skipped too, unless a local reference
  catalog is given (``abs_refcat``): then both run (PSF fitting on, romancal's
  default) with the EPSF and APCORR files given as overrides (:data:`CATALOG_REFTYPES`;
  romancal 1.1 reads EPSF without declaring it, so the run adds ``"epsf"`` to its
  ``SourceCatalogStep.reference_file_types``, which gives the step an
  ``override_epsf`` parameter) and tweakreg reads the catalog file (stcal 1.20's
  ``_parse_refcat`` reads an existing path with ``Table.read``; no Gaia query).

Instead of overrides, the references can come from a romancal-lite built-in CRDS
cache (``crds_cache``: its root and context, e.g. an lz4 copy of
``romancal_lite.references.generate_cache``'s): the crds client then selects them
per exposure (per detector) from that cache, offline, as for real CRDS files.  That
is how an association of several detectors is run (an override is one file for
every member).

CRDS is pointed at a cache directory holding nothing but ``config/roman/server_config``
(naming a context that does not exist), with a server URL containing "serverless"
(the crds client then never opens a connection) and step-parameter (``pars-*``)
lookups disabled.  Any real best-reference query would fail, which proves that the
overrides bypass it; in addition :func:`network_guard` refuses and records every
socket connection and name lookup made during the run.

romancal's ``refpix`` step works on the full 4096-column width (32 channels of 128
columns plus the 128-column ``amp33`` block); a narrower exposure makes its output
keep the ``amp33`` columns and the next step fails.  Any number of rows >= 9 (the
8 border rows plus one science row) works, so ``(n, 9, 4096)`` is the smallest input.

Command line (one run, meant for a subprocess; prints one JSON line)::

    python benchmarks/_romancal.py UNCAL OUTPUT_DIR --refs refs.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "NOT_APPLICABLE",
    "OFFLINE_CONTEXT",
    "PRODUCT_PARAMETERS",
    "RAMP_FIT_PARAMETERS",
    "CATALOG_REFTYPES",
    "CATALOG_STEPS",
    "SKIPPED_STEPS",
    "STEP_REFTYPES",
    "cal_path_for",
    "crds_cache_environment",
    "input_members",
    "network_guard",
    "output_names",
    "offline_crds_environment",
    "required_reftypes",
    "romancal_version",
    "run_romancal",
    "run_romancal_subprocess",
    "run_worker",
    "step_parameters",
    "step_timer",
    "strun_command",
    "warm_up",
]

#: Steps of romancal's ExposurePipeline that run (in order) and the reference types each
#: reads.  The keys are the pipeline's step names (``steps.<name>.<parameter>``).
STEP_REFTYPES: dict[str, tuple[str, ...]] = {
    "dq_init": ("mask",),
    "saturation": ("saturation",),
    "refpix": ("refpix",),
    "linearity": ("linearity", "inverselinearity", "integralnonlinearity"),
    "rampfit": ("readnoise", "gain"),
    "dark_current": ("dark",),
    "assign_wcs": ("distortion",),
    "photom": ("photom",),
    "flatfield": ("flat",),
}

#: Optional reference types (romancal treats them as such): the file when the
#: references include one, else overridden with "N/A". DARKDECAYSIGNAL: a built-in
#: cache matched to a simulator's constants has none (no decay was injected).
NOT_APPLICABLE: tuple[str, ...] = ("integralnonlinearity", "darkdecaysignal")

#: Steps of romancal's ExposurePipeline that are skipped, and why.
SKIPPED_STEPS: dict[str, str] = {
    "dark_decay": (
        "romancal 1.1's step handles only 4096-row frames (its read-time map is "
        "4096 x 4096) and crashes on an 'N/A' reference; the two implementations are "
        "compared on full frames by benchmarks/decay_steps.py and the step tests"
    ),
    "wfi18_transient": (
        "a first-read correction for detector WFI18 only (a no-op on other detectors); "
        "compared on full frames by benchmarks/decay_steps.py and the step tests"
    ),
}

#: Steps skipped when no local reference catalog is given (``abs_refcat=None``).
CATALOG_STEPS: dict[str, str] = {
    "source_catalog": "runs only with tweakreg (a local abs_refcat): through flatfield",
    "tweakreg": "its default reference catalog is a Gaia query over the network",
}

#: Reference types of the catalog steps, given as overrides when they run.  romancal
#: 1.1's SourceCatalogStep declares only ``apcorr`` but reads ``epsf`` when
#: ``fit_psf`` is on (its default).
CATALOG_REFTYPES: dict[str, tuple[str, ...]] = {"source_catalog": ("apcorr", "epsf")}

#: Ramp-fitting parameters matching romancal-lite's Casertano fit with jump detection.
RAMP_FIT_PARAMETERS: dict[str, Any] = {
    "algorithm": "ols_cas22",
    "use_ramp_jump_detection": True,
}

#: Make romancal write ``var_rnoise`` as romancal-lite does (off by default in romancal
#: 1.1).  ``flatfield.include_var_flat`` stays off: romancal 1.1 then makes ``err``
#: float32 and fails to save the ``_cal`` file (the schema wants float16), so its
#: ``err`` lacks the flat-field term romancal-lite's includes.
PRODUCT_PARAMETERS: dict[str, dict[str, Any]] = {
    "rampfit": {"include_var_rnoise": True},
}

#: The context named by the offline cache's server_config; no such mapping exists.
OFFLINE_CONTEXT = "roman_offline_9001.pmap"

#: Server URL given to crds: "serverless" makes the client skip the network entirely,
#: and the reserved ``.invalid`` domain could not be resolved anyway.
OFFLINE_SERVER_URL = "https://crds-serverless-mode.invalid"


def romancal_version() -> str | None:
    """Return the installed romancal version, or None if romancal is not installed.

    Returns
    -------
    str or None
        The version string.
    """
    from importlib import metadata

    try:
        return metadata.version("romancal")
    except metadata.PackageNotFoundError:
        return None


def required_reftypes(*, catalog: bool = False) -> list[str]:
    """Return the reference types that must be given as files (all but the N/A ones).

    Parameters
    ----------
    catalog : bool, optional
        Include the types of the catalog steps (:data:`CATALOG_REFTYPES`).

    Returns
    -------
    list of str
        Lower-case CRDS reference types.
    """
    table = {**STEP_REFTYPES, **(CATALOG_REFTYPES if catalog else {})}
    return [r for types in table.values() for r in types if r not in NOT_APPLICABLE]


def _check_refs(refs: Mapping[str, str | os.PathLike[str]], *, catalog: bool = False
                ) -> dict[str, str]:
    wanted = required_reftypes(catalog=catalog)
    missing = [r for r in wanted if r not in refs]
    if missing:
        raise ValueError(f"reference files missing for: {', '.join(missing)}")
    absent = [str(refs[r]) for r in wanted if not Path(refs[r]).is_file()]
    if absent:
        raise FileNotFoundError(f"reference files not found: {', '.join(absent)}")
    return {r: str(Path(refs[r]).resolve()) for r in wanted}


def step_parameters(
    refs: Mapping[str, str | os.PathLike[str]],
    *,
    abs_refcat: str | os.PathLike[str] | None = None,
    use_crds: bool = False,
    ramp_fit: str = "ols_cas22",
) -> dict[str, dict[str, Any]]:
    """Return the ``steps`` argument of ``ExposurePipeline.call`` for an offline run.

    Parameters
    ----------
    refs : mapping
        Reference type -> file, for every type of :func:`required_reftypes` (with
        ``catalog=True`` when ``abs_refcat`` is given); ignored with ``use_crds``.
    abs_refcat : path, optional
        A local reference catalog: source_catalog and tweakreg run (tweakreg reads this
        file).  None: both are skipped (through flatfield).
    use_crds : bool, optional
        The references come from a CRDS cache (:func:`crds_cache_environment`): only the
        N/A overrides are given.
    ramp_fit : {"ols_cas22", "likely"}, optional
        romancal's ramp-fit algorithm (default ``ols_cas22``, as romancal-lite's
        default; ``likely`` is romancal 1.1's own default).

    Returns
    -------
    dict
        Step name -> parameters: the overrides, the ramp-fit algorithm, the extra
        variance output and the skips.

    Raises
    ------
    ValueError
        If a reference type is missing.
    FileNotFoundError
        If a reference file (or ``abs_refcat``) does not exist.
    """
    catalog = abs_refcat is not None
    paths = {} if use_crds else _check_refs(refs, catalog=catalog)
    table = {**STEP_REFTYPES, **(CATALOG_REFTYPES if catalog else {})}
    steps: dict[str, dict[str, Any]] = {}
    for step, reftypes in table.items():
        pars: dict[str, Any] = {}
        for reftype in reftypes:
            if reftype in NOT_APPLICABLE:
                given = None if use_crds else refs.get(reftype)
                pars[f"override_{reftype}"] = (
                    str(Path(given).resolve()) if given and Path(given).is_file() else "N/A"
                )
            elif not use_crds:
                pars[f"override_{reftype}"] = paths[reftype]
        steps[step] = pars
    steps["rampfit"].update({**RAMP_FIT_PARAMETERS, "algorithm": ramp_fit})
    for step, pars in PRODUCT_PARAMETERS.items():
        steps[step].update(pars)
    for step in SKIPPED_STEPS:
        steps[step] = {"skip": True}
    if catalog:
        refcat = Path(abs_refcat)  # type: ignore[arg-type]
        if not refcat.is_file():
            raise FileNotFoundError(f"abs_refcat not found: {refcat}")
        steps["tweakreg"] = {"abs_refcat": str(refcat.resolve())}
    else:
        for step in CATALOG_STEPS:
            steps[step] = {"skip": True}
    return steps


def strun_command(
    uncal_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    refs: Mapping[str, str | os.PathLike[str]],
    *,
    abs_refcat: str | os.PathLike[str] | None = None,
    use_crds: bool = False,
    ramp_fit: str = "ols_cas22",
) -> list[str]:
    """Return the equivalent ``strun roman_elp`` command line (run it in the environment
    of :func:`offline_crds_environment` or :func:`crds_cache_environment`).

    The EPSF override of a catalog run needs the ``reference_file_types`` addition
    :func:`run_romancal` makes; ``strun`` alone would reject ``override_epsf``.

    Parameters
    ----------
    uncal_path : path
        The Level 1 input (or an ``_asn.json`` association).
    output_dir : path
        Where the products are written.
    refs : mapping
        Reference type -> file.
    abs_refcat, use_crds, ramp_fit :
        See :func:`step_parameters`.

    Returns
    -------
    list of str
        The argument vector.
    """
    argv = ["strun", "roman_elp", str(uncal_path), f"--output_dir={output_dir}",
            "--save_results=True"]
    for step, pars in step_parameters(refs, abs_refcat=abs_refcat, use_crds=use_crds,
                                      ramp_fit=ramp_fit).items():
        for name, value in pars.items():
            argv.append(f"--steps.{step}.{name}={value}")
    return argv


def offline_crds_environment(root: str | os.PathLike[str]) -> dict[str, str]:
    """Create an empty, offline CRDS cache in ``root`` and return its environment.

    The cache holds only ``config/roman/server_config`` (crds exits the process without
    it when stpipe records the context used); its context :data:`OFFLINE_CONTEXT` does
    not exist, so every best-reference query fails instead of finding something.

    Parameters
    ----------
    root : path
        Directory for the cache (created).

    Returns
    -------
    dict
        Environment variables to set before ``crds`` is imported.
    """
    root = Path(root)
    config = root / "config" / "roman"
    config.mkdir(parents=True, exist_ok=True)
    info = {
        "observatory": "roman",
        "bad_files_list": [],
        "bad_files": "",
        "last_synced": "2026-01-01 00:00:00",
        "force_remote_mode": 0,
        "latest_context": OFFLINE_CONTEXT,
        "operational_context": OFFLINE_CONTEXT,
        "edit_context": OFFLINE_CONTEXT,
        "connected": False,
        "reference_url": {},
        "mapping_url": {},
    }
    (config / "server_config").write_text(repr(info) + "\n", encoding="utf-8")
    return {
        "CRDS_PATH": str(root.resolve()),
        "CRDS_SERVER_URL": OFFLINE_SERVER_URL,
        "CRDS_MODE": "local",
        "CRDS_CLIENT_TIMEOUT_SECONDS": "5",
        "STPIPE_DISABLE_CRDS_STEPPARS": "true",
    }


def crds_cache_environment(root: str | os.PathLike[str], context: str) -> dict[str, str]:
    """Return the environment of an offline run selecting references from a CRDS cache.

    Parameters
    ----------
    root : path
        A complete CRDS cache (``config/roman/server_config``, ``mappings/roman``,
        ``references/roman/wfi``), e.g. a romancal-lite built-in cache.
    context : str
        Its pipeline mapping (``CRDS_CONTEXT``), e.g. ``roman_lite_0001.pmap``.

    Returns
    -------
    dict
        Environment variables to set before ``crds`` is imported: the cache, local
        mode, a "serverless" server URL (no connection is ever opened) and no
        step-parameter lookups.
    """
    return {
        "CRDS_PATH": str(Path(root).resolve()),
        "CRDS_CONTEXT": context,
        "CRDS_SERVER_URL": OFFLINE_SERVER_URL,
        "CRDS_MODE": "local",
        "CRDS_CLIENT_TIMEOUT_SECONDS": "5",
        "STPIPE_DISABLE_CRDS_STEPPARS": "true",
    }


def _apply_environment(env: Mapping[str, str]) -> None:
    os.environ.update(env)
    if "CRDS_CONTEXT" not in env:
        os.environ.pop("CRDS_CONTEXT", None)
    if "crds" in sys.modules:  # crds reads CRDS_SERVER_URL at import only
        from crds.client import api
        from crds.core import config, utils

        api.set_crds_server(env["CRDS_SERVER_URL"])
        utils.clear_function_caches()
        config.CRDS_REF_SUBDIR_MODE = "None"


@contextlib.contextmanager
def network_guard() -> Iterator[list[str]]:
    """Refuse, and record, every internet socket connection and host-name lookup.

    Yields
    ------
    list of str
        Descriptions of the refused attempts (empty if there were none).
    """
    attempts: list[str] = []
    originals = (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)

    def refuse(what: str) -> OSError:
        attempts.append(what)
        return OSError(f"network access refused during the offline romancal run: {what}")

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family == socket.AF_UNIX:
            return originals[0](sock, address)
        raise refuse(f"connect {address!r}")

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if sock.family == socket.AF_UNIX:
            return originals[1](sock, address)
        raise refuse(f"connect {address!r}")

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        raise refuse(f"getaddrinfo {host!r}")

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    try:
        yield attempts
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = originals


@contextlib.contextmanager
def step_timer(step_class: type) -> Iterator[dict[str, float]]:
    """Time every ``step_class.run`` call (wall clock), summed per step name.

    Works for stpipe steps (romancal) and romancal_lite.stpipe steps alike: both run a
    pipeline's steps through ``Step.run``.  Nested calls are timed separately, so a
    pipeline's own entry includes its steps.

    Parameters
    ----------
    step_class : type
        The step base class whose ``run`` is wrapped for the duration.

    Yields
    ------
    dict
        Step name -> seconds, filled as steps finish.
    """
    times: dict[str, float] = {}
    original = step_class.run

    @functools.wraps(original)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            name = str(getattr(self, "name", None) or type(self).__name__)
            times[name] = times.get(name, 0.0) + time.perf_counter() - start

    step_class.run = run
    try:
        yield times
    finally:
        step_class.run = original


def cal_path_for(uncal_path: str | os.PathLike[str], output_dir: str | os.PathLike[str]) -> Path:
    """Return the ``_cal`` file a pipeline writes for ``uncal_path`` in ``output_dir``.

    Parameters
    ----------
    uncal_path : path
        The input file (``<base>_uncal.asdf``).
    output_dir : path
        The output directory.

    Returns
    -------
    Path
        ``output_dir/<base>_cal.asdf``.
    """
    stem = Path(uncal_path).stem
    if stem.endswith("_uncal"):
        stem = stem[: -len("_uncal")]
    return Path(output_dir) / f"{stem}_cal.asdf"


def input_members(path: str | os.PathLike[str]) -> list[Path]:
    """Return the exposures of an input: itself, or an ``_asn.json``'s science members.

    Parameters
    ----------
    path : path
        A Level 1 file or a romancal association (its first product, as romancal's
        model library reads it).

    Returns
    -------
    list of Path
        The exposure files.
    """
    path = Path(path)
    if path.suffix != ".json":
        return [path]
    asn = json.loads(path.read_text())
    members = asn["products"][0]["members"]
    return [path.parent / m["expname"] for m in members
            if str(m.get("exptype", "science")).lower() == "science"]


def output_names(path: str | os.PathLike[str], output_dir: str | os.PathLike[str]
                 ) -> list[str]:
    """Return the base names (``<base>`` of ``<base>_cal.asdf``) an input's products get.

    Parameters
    ----------
    path : path
        A Level 1 file or an ``_asn.json`` association.
    output_dir : path
        The output directory.

    Returns
    -------
    list of str
        One name per exposure.
    """
    return [cal_path_for(m, output_dir).name[: -len("_cal.asdf")] for m in input_members(path)]


def run_romancal(
    uncal_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    refs: Mapping[str, str | os.PathLike[str]],
    *,
    crds_root: str | os.PathLike[str] | None = None,
    skip: tuple[str, ...] = (),
    abs_refcat: str | os.PathLike[str] | None = None,
    crds_cache: tuple[str, str] | None = None,
    ramp_fit: str = "ols_cas22",
) -> tuple[Path | list[Path], dict[str, float]]:
    """Run romancal's ExposurePipeline offline, through flatfield or through tweakreg.

    Meant to run in a fresh process (a subprocess): it sets the CRDS environment
    variables of :func:`offline_crds_environment` (or :func:`crds_cache_environment`)
    in ``os.environ`` and replaces ``stpipe.Step.run`` for the duration.  Sockets are
    refused while it runs; an attempt to use the network raises RuntimeError after the
    run.

    Parameters
    ----------
    uncal_path : path
        Level 1 input (``*_uncal.asdf``), or an ``_asn.json`` association of several.
    output_dir : path
        Output directory (created); receives ``<base>_cal.asdf`` and ``<base>_wcs.asdf``
        (and with ``abs_refcat`` ``<base>_cat.parquet``, ``<base>_segm.asdf``).
    refs : mapping
        Reference type -> file, for every type of :func:`required_reftypes` (catalog
        types included with ``abs_refcat``); ignored with ``crds_cache``.
    crds_root : path, optional
        Directory for the empty CRDS cache; default ``<output_dir>/crds_offline``.
    skip : tuple of str, optional
        Further steps of :data:`STEP_REFTYPES` to skip (e.g. ``("refpix",)``).
    abs_refcat : path, optional
        A local reference catalog: source_catalog (PSF fitting on) and tweakreg run.
    crds_cache : (root, context), optional
        Select the references from this CRDS cache instead of overrides.
    ramp_fit : {"ols_cas22", "likely"}, optional
        The ramp-fit algorithm (:func:`step_parameters`).

    Returns
    -------
    cal_path : Path or list of Path
        The ``_cal`` file written (a list for an association).
    per_step_seconds : dict
        Step name -> wall seconds of ``Step.run`` for the steps run (pipeline names,
        e.g. ``rampfit``; summed over the exposures of an association), plus
        ``"total"``: the whole ``ExposurePipeline.call`` (reading the input, the
        steps, writing the outputs).

    Raises
    ------
    RuntimeError
        If romancal tried to reach the network, or wrote no ``_cal`` file.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    steps = step_parameters(refs, abs_refcat=abs_refcat, use_crds=crds_cache is not None,
                            ramp_fit=ramp_fit)
    for name in skip:
        if name not in STEP_REFTYPES:
            raise ValueError(f"unknown romancal step {name!r}")
        steps[name]["skip"] = True
    if crds_cache is not None:
        env = crds_cache_environment(*crds_cache)
    else:
        env = offline_crds_environment(crds_root or output_dir / "crds_offline")
    _apply_environment(env)

    import stpipe
    from romancal.pipeline import ExposurePipeline
    from romancal.source_catalog import SourceCatalogStep

    if abs_refcat is not None and "epsf" not in SourceCatalogStep.reference_file_types:
        # romancal 1.1 reads EPSF (fit_psf) without declaring it: declare it, so that
        # the step has an ``override_epsf`` parameter and the pipeline fetches it
        SourceCatalogStep.reference_file_types = [
            *SourceCatalogStep.reference_file_types, "epsf"]
    with network_guard() as attempts, step_timer(stpipe.Step) as times:
        start = time.perf_counter()
        ExposurePipeline.call(
            str(uncal_path), output_dir=str(output_dir), save_results=True, steps=steps
        )
        total = time.perf_counter() - start
    if attempts:
        raise RuntimeError(f"romancal tried to use the network: {attempts}")
    cals = [cal_path_for(m, output_dir) for m in input_members(uncal_path)]
    for cal in cals:
        if not cal.is_file():
            raise RuntimeError(f"romancal wrote no {cal.name} in {output_dir}")
    names = [*STEP_REFTYPES, *(CATALOG_STEPS if abs_refcat is not None else ())]
    per_step = {name: times.get(name, 0.0) for name in names}
    per_step["total"] = total
    return (cals if Path(uncal_path).suffix == ".json" else cals[0]), per_step


def peak_rss_bytes() -> int:
    """Return the peak resident memory of this process so far, in bytes.

    Returns
    -------
    int
        ``VmHWM`` (Linux), else ``ru_maxrss`` (kB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def warm_up(which: str = "romancal") -> None:
    """Do the once-per-process work of each pipeline before timing starts.

    asdf discovers its extensions (entry points of asdf-astropy, gwcs,
    roman_datamodels, ...) on the first file it opens; importing romancal does it as a
    side effect.  romancal-lite opens its files in ``datamodels.asdf_context``, which
    discovers them once without roman_datamodels (asdf's global list is not loaded).
    Doing it here puts it in the process time of each, not in one pipeline call.

    Parameters
    ----------
    which : {"romancal", "ours"}, optional
        The pipeline this process runs.
    """
    if which == "ours":
        from romancal_lite.datamodels import asdf_context

        with asdf_context() as config:
            config.extensions  # noqa: B018
        return
    import asdf

    asdf.get_config().extensions  # noqa: B018


def run_worker(
    which: str, uncal: Path, output_dir: Path, refs: Mapping[str, str], runner: Any
) -> dict[str, Any]:
    """Run ``runner(uncal, output_dir, refs)`` and describe the run for the parent.

    Parameters
    ----------
    which : str
        Label (``"romancal"`` or ``"ours"``).
    uncal, output_dir : Path
        Input and output directory.
    refs : mapping
        Reference files.
    runner : callable
        ``runner(uncal, output_dir, refs) -> (cal_path, per_step_seconds)``.

    Returns
    -------
    dict
        ``which``, ``cal``, ``steps`` (seconds, without ``total``), ``total`` (seconds),
        ``peak_rss`` and ``rss_before`` (bytes; before: after imports and
        :func:`warm_up`, before the run).
    """
    warm_up(which)
    rss_before = peak_rss_bytes()
    cal, per_step = runner(uncal, output_dir, refs)
    total = per_step.pop("total")
    return {
        "which": which,
        "cal": str(cal) if isinstance(cal, str | os.PathLike) else [str(c) for c in cal],
        "steps": per_step,
        "total": total,
        "peak_rss": peak_rss_bytes(),
        "rss_before": rss_before,
    }


def run_script_subprocess(
    script: Path,
    args: list[str],
    output_dir: Path,
    refs: Mapping[str, str | os.PathLike[str]],
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run a worker script in a fresh interpreter; return the JSON it writes.

    Parameters
    ----------
    script : Path
        ``benchmarks/_romancal.py`` or ``benchmarks/pipeline.py``.
    args : list of str
        Arguments before ``--refs`` (input, output directory, ...).
    output_dir : Path
        Receives ``refs.json``, ``result.json`` and the process log ``run.log``.
    refs : mapping
        Reference files.
    timeout : float, optional
        Seconds before the worker is killed.
    env : mapping, optional
        Extra environment variables.

    Returns
    -------
    dict
        The worker's result (see :func:`run_worker`) plus ``wall`` (seconds of the
        whole process, interpreter start and imports included) and ``log`` (path).

    Raises
    ------
    RuntimeError
        If the worker fails; the message ends with the tail of its log.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    refs_json = output_dir / "refs.json"
    refs_json.write_text(json.dumps({k: str(v) for k, v in refs.items()}, indent=1))
    result_json = output_dir / "result.json"
    result_json.unlink(missing_ok=True)
    log = output_dir / "run.log"
    cmd = [sys.executable, str(script), *args, "--refs", str(refs_json),
           "--result", str(result_json)]
    start = time.perf_counter()
    with open(log, "w") as logf:
        proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, timeout=timeout,
                              env={**os.environ, **(env or {})}, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not result_json.is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"{script.name} {' '.join(args)} failed ({proc.returncode}):\n{tail}")
    result = json.loads(result_json.read_text())
    result["wall"] = wall
    result["log"] = str(log)
    return result


def run_romancal_subprocess(
    uncal_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    refs: Mapping[str, str | os.PathLike[str]],
    *,
    timeout: float | None = None,
    skip: tuple[str, ...] = (),
    abs_refcat: str | os.PathLike[str] | None = None,
    crds_cache: tuple[str, str] | None = None,
    ramp_fit: str = "ols_cas22",
) -> dict[str, Any]:
    """Run :func:`run_romancal` in a fresh interpreter (its own peak memory).

    Parameters
    ----------
    uncal_path : path
        Level 1 input (or an ``_asn.json`` association).
    output_dir : path
        Output directory (also receives ``run.log`` with romancal's log).
    refs : mapping
        Reference type -> file.
    timeout : float, optional
        Seconds before the run is killed.
    skip, abs_refcat, crds_cache, ramp_fit :
        See :func:`run_romancal`.

    Returns
    -------
    dict
        See :func:`run_script_subprocess`.
    """
    args = [str(uncal_path), str(output_dir), *(f"--skip={name}" for name in skip),
            f"--ramp-fit={ramp_fit}"]
    if abs_refcat is not None:
        args.append(f"--abs-refcat={abs_refcat}")
    if crds_cache is not None:
        args += [f"--crds-cache={crds_cache[0]}", f"--crds-context={crds_cache[1]}"]
    return run_script_subprocess(
        Path(__file__).resolve(), args, Path(output_dir), refs, timeout=timeout
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: run romancal once and write/print the result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("uncal", type=Path,
                        help="Level 1 input (_uncal.asdf) or association (_asn.json)")
    parser.add_argument("output_dir", type=Path, help="output directory")
    parser.add_argument("--refs", type=Path, required=True,
                        help="JSON file: reference type -> path")
    parser.add_argument("--result", type=Path, help="also write the result JSON here")
    parser.add_argument("--skip", action="append", default=[], choices=list(STEP_REFTYPES),
                        help="also skip this step (repeatable)")
    parser.add_argument("--abs-refcat", type=Path, default=None,
                        help="local reference catalog: run source_catalog and tweakreg too")
    parser.add_argument("--crds-cache", type=Path, default=None,
                        help="select references from this CRDS cache (no overrides)")
    parser.add_argument("--crds-context", default=None, help="the cache's context (.pmap)")
    parser.add_argument("--ramp-fit", choices=["ols_cas22", "likely"], default="ols_cas22",
                        help="ramp-fit algorithm")
    parser.add_argument("--print-strun", action="store_true",
                        help="print the equivalent strun command and exit")
    args = parser.parse_args(argv)
    refs = json.loads(args.refs.read_text())
    crds_cache = None
    if args.crds_cache is not None:
        if not args.crds_context:
            parser.error("--crds-cache needs --crds-context")
        crds_cache = (str(args.crds_cache), args.crds_context)
    if args.print_strun:
        print(" ".join(strun_command(args.uncal, args.output_dir, refs,
                                     abs_refcat=args.abs_refcat,
                                     use_crds=crds_cache is not None,
                                     ramp_fit=args.ramp_fit)))
        return 0
    # Import romancal (after pointing crds at the offline cache: crds reads its server
    # URL at import) so that ``rss_before`` includes the imports.
    if crds_cache is not None:
        _apply_environment(crds_cache_environment(*crds_cache))
    else:
        _apply_environment(offline_crds_environment(args.output_dir / "crds_offline"))
    import romancal.pipeline  # noqa: F401

    runner = functools.partial(run_romancal, skip=tuple(args.skip),
                               abs_refcat=args.abs_refcat, crds_cache=crds_cache,
                               ramp_fit=args.ramp_fit)
    result = run_worker("romancal", args.uncal, args.output_dir, refs, runner)
    result["romancal"] = romancal_version()
    text = json.dumps(result)
    if args.result:
        args.result.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
