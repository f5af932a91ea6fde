"""The work a batch hands to Dask workers: plain functions of plain arguments (paths).

Each task takes a `TaskSpec`-like dict (paths, parameters, options; never arrays),
runs one piece of the pipeline in the worker process, writes its files itself and
returns a small dict: status, time, peak memory, outputs, metrics, error message.

Errors are sorted in two kinds:

* a data or configuration error (`romancal_lite.errors.RomancalLiteError`: corrupt
  input, bad reference, bad parameter) or a bug is *returned* as ``status: failed``,
  so Dask does not retry it;
* a transient I/O error (an `OSError` that no romancal_lite code turned into an
  expected error, or an expected error caused by one with a transient ``errno``) is
  *raised* as `TransientIOError`, so that Dask's own ``retries`` run the task again.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "TransientIOError",
    "align_task",
    "calibrate_task",
    "cpu_seconds",
    "dask_setup",
    "elp_task",
    "file_record",
    "mosaic_task",
    "peak_rss_mb",
    "reset_peak_rss",
    "set_task_threads",
    "write_task",
]

#: errno values of I/O errors worth retrying (network file systems, busy devices).
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EIO, errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT,
        errno.ECONNRESET, errno.ECONNABORTED, errno.ENETDOWN, errno.ENETUNREACH,
        errno.EHOSTUNREACH, errno.ESTALE, errno.ENOLCK, errno.EREMOTEIO,
    }
)  # fmt: skip

#: Environment variable a test sets to make tasks on one input fail transiently
#: ``"<substring>:<count>"``: the first <count> attempts whose input path contains
#: <substring> raise EIO, counted in the file ``$ROMANCAL_LITE_BATCH_FAULTS.count``.
FAULTS_ENV = "ROMANCAL_LITE_BATCH_FAULTS"
#: Environment variable a test sets to make the tasks on inputs whose path contains its
#: value use ever more memory (up to `MEMORY_FAULT_CAP` bytes), so that Dask's memory
#: limit stops their worker.
MEMORY_FAULT_ENV = "ROMANCAL_LITE_BATCH_MEMORY_FAULT"
MEMORY_FAULT_CAP = 4 * 1024**3


class TransientIOError(OSError):
    """An I/O error that may go away: raised so that Dask retries the task."""


# ---------------------------------------------------------------------- the worker


#: The warm-up imports of a worker started with the preload (`dask_setup`).
_warm_up: threading.Thread | None = None


def dask_setup(worker: Any) -> None:
    """Warm a new worker process: Dask calls it when the module is a worker's preload.

    Starts, in a background thread, the imports every task needs (the pipeline and its
    steps, ~1 s of pure Python; then, in the pipeline's own background thread as in a
    task, the libraries of the source catalog and tweakreg), so that they run while the
    worker registers and the batch finishes its own start, instead of at the start of
    the worker's first task, which waits for them (`_measured`). Nothing else changes:
    a worker without the preload (an existing cluster) imports the same modules in its
    first task.

    Parameters
    ----------
    worker : distributed.Worker
        The worker (unused).
    """
    global _warm_up
    if os.environ.get(FAST_EXIT_ENV) == "1":
        import atexit

        atexit.register(_fast_exit)
    if _warm_up is None:
        _warm_up = threading.Thread(target=_import_pipeline, name="romancal_lite-batch-imports",
                                    daemon=True)
        _warm_up.start()


#: Set (to "1") in the local cluster's workers: a worker process, once closed, ends
#: without Python's module teardown (`_fast_exit`).
FAST_EXIT_ENV = "ROMANCAL_LITE_BATCH_FAST_EXIT"


def _fast_exit() -> None:
    """End a closed worker process now: skip the teardown of its ~2000 modules.

    Python's finalization of a worker that has run the pipeline (clearing every
    module's objects) takes 1.5-2 s, during which its nanny, and so the batch, waits
    for it to end: every batch's last seconds. By the time the exit handlers run the
    worker has closed (every task finished; each wrote, closed and renamed its files),
    so this handler, the first to run, flushes the logs, runs the pending
    ``weakref.finalize`` clean-ups (temporary directories) and ends the process.
    """
    import logging
    import sys
    import weakref

    try:
        logging.shutdown()
        getattr(weakref.finalize, "_exitfunc", lambda: None)()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    finally:
        os._exit(0)


def _import_pipeline() -> None:
    from romancal_lite.pipeline import exposure_pipeline

    exposure_pipeline._preload_catalog_imports()


def set_task_threads(key: Any, threads: int, dask_worker: Any = None) -> bool:
    """Set the OpenMP threads of the task ``key`` while it runs on this worker.

    The batch's client calls it (``Client.run``) to lend an idle worker's cores to a
    running task when no other task is ready (the end of a batch, an alignment), and
    to take them back. romancore reads ``OMP_NUM_THREADS`` at every kernel call, so
    the task's next kernels use the new count; the task's own setting is restored
    when it ends (`_environment`). Results do not depend on the thread count.

    Parameters
    ----------
    key : str
        The Dask key of the task.
    threads : int
        OpenMP threads, at least 1.
    dask_worker : distributed.Worker
        Given by ``Client.run``.

    Returns
    -------
    bool
        True if ``key`` is running here and the count was set; False otherwise (the
        task ended or has not started: nothing is changed).
    """
    state = getattr(dask_worker, "state", None)
    running = {ts.key for ts in getattr(state, "executing", ())}
    if key not in running:
        return False
    os.environ["OMP_NUM_THREADS"] = str(max(1, int(threads)))
    return True


# ---------------------------------------------------------------------- measuring


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory (Linux ``/proc/self/clear_refs``).

    Returns
    -------
    bool
        True if the kernel accepted the reset (peak memory is then the task's own).
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """Return this process's peak resident memory since the last reset, in MB.

    Returns
    -------
    float or None
        ``VmHWM`` of ``/proc/self/status`` (None where it does not exist).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def cpu_seconds() -> float:
    """Return the CPU time this process has used so far (user + system, every thread).

    A worker runs one task at a time, so the difference over a task is the task's CPU
    time (its OpenMP threads included), give or take Dask's own light threads.

    Returns
    -------
    float
        Seconds.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def file_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return what the ledger keeps of an output file: path, size, modification time.

    Parameters
    ----------
    path : str or path-like
        An existing file.

    Returns
    -------
    dict
        ``{"path", "size", "mtime_ns"}``.
    """
    st = os.stat(path)
    return {"path": os.fspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _is_transient(exc: BaseException) -> bool:
    from romancal_lite.errors import RomancalLiteError

    if isinstance(exc, TransientIOError):
        return True
    if isinstance(exc, RomancalLiteError):
        cause = exc.__cause__ or exc.__context__
        return isinstance(cause, OSError) and cause.errno in TRANSIENT_ERRNOS
    return isinstance(exc, OSError) and (exc.errno in TRANSIENT_ERRNOS or exc.errno is None)


def _inject_fault(paths: list[str]) -> None:
    """Inject the faults tests ask for through the environment.

    EIO for the inputs named in `FAULTS_ENV` (tests of the retries); ever more memory
    for an input named in `MEMORY_FAULT_ENV` (tests of the memory limit: the worker's
    nanny terminates the process at 95 % of its limit).
    """
    hog = os.environ.get(MEMORY_FAULT_ENV, "")
    if hog and any(hog in p for p in paths):
        held = []
        while len(held) * 2**26 < MEMORY_FAULT_CAP:
            held.append(np.ones(2**23))  # 64 MB, touched
            time.sleep(0.02)
        raise MemoryError(f"{MEMORY_FAULT_ENV}: {MEMORY_FAULT_CAP} bytes and still running")
    value = os.environ.get(FAULTS_ENV, "")
    if not value:
        return
    needle, _, count = value.rpartition(":")
    if not any(needle in p for p in paths):
        return
    counter = Path(os.environ.get(FAULTS_ENV + "_FILE", "/nonexistent"))
    seen = int(counter.read_text()) if counter.is_file() else 0
    if seen < int(count):
        counter.write_text(str(seen + 1))
        raise OSError(errno.EIO, "injected transient I/O error", paths[0])


@contextlib.contextmanager
def _task_log(path: str | None) -> Iterator[None]:
    """Send the romancal_lite log of the task to its own file."""
    if not path:
        yield
        return
    from romancal_lite.stpipe.log import LOG_FORMAT, ROOT_LOGGER

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(ROOT_LOGGER)
    handler = logging.FileHandler(path, mode="a")
    formatter = logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(previous)


@contextlib.contextmanager
def _environment(spec: Mapping[str, Any]) -> Iterator[None]:
    """Set the task's process environment: reference cache, OpenMP threads."""
    from romancal_lite.references.uncompressed import CACHE_ENV

    saved = {name: os.environ.get(name) for name in (CACHE_ENV, "OMP_NUM_THREADS")}
    cache = spec.get("reference_cache")
    if cache:
        os.environ[CACHE_ENV] = str(cache)
    else:
        os.environ.pop(CACHE_ENV, None)
    if spec.get("omp_threads"):
        os.environ["OMP_NUM_THREADS"] = str(int(spec["omp_threads"]))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _measured(spec: Mapping[str, Any], work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work`` in the task's environment; time it, measure its peak memory."""
    if _warm_up is not None:
        _warm_up.join()  # the worker's warm-up imports: never two threads importing at once
    from romancal_lite.errors import RomancalLiteError
    from romancal_lite.references import allow_builtin_references

    reset = reset_peak_rss()
    started = time.time()
    start = time.perf_counter()
    cpu_start = cpu_seconds()
    sys_start = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    result: dict[str, Any] = {"status": "done", "error": None, "outputs": [], "metrics": {}}
    try:
        with _environment(spec), _task_log(spec.get("log")):
            logging.getLogger("romancal_lite.batch").info(
                "Task attempt on %s", ", ".join(map(str, spec.get("inputs", [])))
            )
            _inject_fault([str(p) for p in spec.get("inputs", [])])
            with allow_builtin_references(bool(spec.get("builtin_references"))):
                result.update(work())
            # more than the task's own when idle workers' cores were lent to it
            result["omp_threads_end"] = os.environ.get("OMP_NUM_THREADS")
    except Exception as exc:
        if _is_transient(exc):
            raise TransientIOError(
                getattr(exc, "errno", None) or errno.EIO, f"{type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(exc, RomancalLiteError):
            message = " ".join(str(exc).split()) or type(exc).__name__
        else:
            lines = traceback.format_exception_only(type(exc), exc)
            message = "internal error: " + " ".join("".join(lines).split())
            logging.getLogger("romancal_lite.batch").error("%s", traceback.format_exc())
        result.update(status="failed", error=message)
    result["started_unix"] = started
    result["time_s"] = time.perf_counter() - start
    result["cpu_s"] = cpu_seconds() - cpu_start
    # of which in the kernel (page faults of fresh memory, file I/O)
    result["sys_s"] = resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys_start
    result["peak_memory_mb"] = peak_rss_mb() if reset else None
    try:
        from distributed import get_worker

        result["worker"] = get_worker().address
    except (ImportError, ValueError):
        result["worker"] = None
    return result


# ---------------------------------------------------------------------- pipelines


def _pipeline(spec: Mapping[str, Any], name: str = "roman_elp", **extra: Any) -> Any:
    """Build a pipeline from the run's parameters exactly as ``romancal-lite run`` does."""
    from romancal_lite.stpipe import registry

    cls = registry.resolve(name)
    if name == "roman_elp":
        files, parameters = spec.get("config_files", []), dict(spec.get("parameters", {}))
    else:
        files, parameters = spec.get("mosaic_config_files", []), {}
    parameters.update(extra)
    parameters["output_dir"] = spec["output_dir"]
    config = cls.build_config(list(files), base={"parameters": {"save_results": True}},
                              **parameters)
    return cls.from_config(config)


def _elp_outputs(cal: Path) -> list[Path]:
    from romancal_lite.stpipe.naming import make_output_name

    names = [cal]
    for suffix in ("wcs", "segm"):
        names.append(cal.with_name(make_output_name(cal.name, suffix)))
    names.append(cal.with_name(make_output_name(cal.name, "cat", ".parquet")))
    return [p for p in names if p.is_file()]


def _image_metrics(data: np.ndarray, dq: np.ndarray) -> dict[str, Any]:
    """Sky level (median of the good pixels) and the fraction of pixels with a jump."""
    from romancore.dqflags import pixel

    good = (dq & np.uint32(pixel.DO_NOT_USE)) == 0
    values = np.asarray(data)[good]
    values = values[np.isfinite(values)]
    sky = float(np.median(values[:: max(1, values.size // 1_000_000)])) if values.size else None
    jumps = float(np.mean((dq & np.uint32(pixel.JUMP_DET)) != 0)) if dq.size else None
    return {"sky": sky, "jump_fraction": jumps}


def _thumbnail(image: Any, path: str | None) -> str | None:
    if not path or image is None:
        return None
    from romancal_lite.preview import write_png

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(image.data)
    dq = np.asarray(image.dq) if "dq" in image else None
    write_png(data, path, dq=dq, stretch="asinh", percentiles=(50.0, 99.8), max_size=256)
    return str(path)


def _fit_metrics(meta: Any) -> dict[str, Any]:
    fit = meta.get("wcs_fit_results") if meta is not None else None
    status = str(meta.cal_step.get("tweakreg", "")) if "cal_step" in meta else ""
    out: dict[str, Any] = {"tweakreg": status or None}
    if fit:
        rmse = fit.get("rmse")
        out["fit_status"] = str(fit.get("status", "")) or None
        out["tweakreg_rms_mas"] = None if rmse is None else float(rmse) * 1000.0
        out["fit_matches"] = int(fit["nmatches"]) if "nmatches" in fit else None
    return out


def _has_image(model: Any) -> bool:
    """Whether a model holds a 2-D image with its dq (an ``ImageModel`` result)."""
    try:
        return np.ndim(model.data) == 2 and np.shape(model.dq) == np.shape(model.data)
    except (AttributeError, KeyError):
        return False


def _model_metrics(image: Any, thumbnail: str | None) -> dict[str, Any]:
    """Sky, jump fraction, thumbnail and alignment metrics of an image model."""
    metrics: dict[str, Any] = {}
    if "dq" in image and "data" in image:
        metrics.update(_image_metrics(np.asarray(image.data), np.asarray(image.dq)))
        metrics["thumbnail"] = _thumbnail(image, thumbnail)
    metrics.update(_fit_metrics(image.meta))
    return metrics


def _catalog_path(cal: Path) -> Path:
    from romancal_lite.stpipe.naming import make_output_name

    return cal.with_name(make_output_name(cal.name, "cat", ".parquet"))


def _cal_metrics(cal: Path, thumbnail: str | None) -> dict[str, Any]:
    """Metrics of a written ``_cal`` file (and of its catalog beside it)."""
    from romancal_lite import datamodels

    with datamodels.open(cal) as image:
        metrics = _model_metrics(image, thumbnail)
    metrics["sources"] = _parquet_rows(_catalog_path(cal))
    return metrics


def _parquet_rows(path: Path) -> int | None:
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def elp_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``roman_elp`` on one exposure-detector and write its products (as ``run``).

    Parameters
    ----------
    spec : dict
        ``inputs`` (one path), ``output_dir``, the run's ``config_files`` and
        ``parameters``, ``thumbnail``, ``log`` and the environment options.

    Returns
    -------
    dict
        Status, time, peak memory, outputs, metrics, error.
    """

    def work() -> dict[str, Any]:
        from romancal_lite.datamodels import deferred_outputs

        pipe = _pipeline(spec)
        with deferred_outputs():
            result = pipe.run(spec["inputs"][0])
        cal = pipe.output_path()
        outputs = _elp_outputs(cal)
        if _has_image(result):
            # the image just written is still in memory: its data and dq are the
            # file's (same dtypes), so reading the file back (~2 s) is not needed
            metrics = _model_metrics(result, spec.get("thumbnail"))
            metrics["sources"] = _parquet_rows(_catalog_path(cal))
        else:
            metrics = _cal_metrics(cal, spec.get("thumbnail"))
        return {"outputs": [file_record(p) for p in outputs], "metrics": metrics}

    return _measured(spec, work)


def calibrate_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Calibrate one exposure of an association (no alignment) into its stage directory.

    The image goes to ``<stage>/<index>.asdf``; its metadata, catalog and segmentation
    map (`ExposurePipeline.calibrate_member`'s products) to ``<stage>/products.pkl``,
    both written atomically; `align_task` finishes them.

    Parameters
    ----------
    spec : dict
        As `elp_task`, plus ``stage`` (a directory) and ``group_id``.

    Returns
    -------
    dict
        Status, time, peak memory, outputs (the stage files), metrics, error.
    """

    def work() -> dict[str, Any]:
        from romancal_lite.pipeline.exposure_pipeline import (
            _preload_catalog_imports,
            write_products,
        )

        stage = Path(spec["stage"])
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir(parents=True)
        pipe = _pipeline(spec)
        pipe.tweakreg.check_reference_catalog()
        if not pipe.source_catalog.skip:
            _preload_catalog_imports()
        # named as in one process's run of the association (the name is recorded in
        # the catalog's metadata)
        scratch = stage / f"{int(spec.get('index', 0)):05d}.asdf"
        products = pipe.calibrate_member(
            spec["inputs"][0], spec.get("group_id"), scratch=scratch
        )
        write_products(products, stage / "products.pkl")
        metrics: dict[str, Any] = {}
        from romancal_lite import datamodels

        with datamodels.open(scratch) as image:
            if "dq" in image and "data" in image:
                metrics.update(_image_metrics(np.asarray(image.data), np.asarray(image.dq)))
                metrics["thumbnail"] = _thumbnail(image, spec.get("thumbnail"))
        catalog = products.catalog
        metrics["sources"] = None if catalog is None else len(catalog.table)
        files = sorted(p for p in stage.iterdir() if not p.name.startswith("."))
        return {"outputs": [file_record(p) for p in files], "metrics": metrics}

    return _measured(spec, work)


#: What `align_task` leaves in a member's stage directory for its `write_task`.
ALIGNED_NAME = "aligned.pkl"


def align_task(spec: dict[str, Any], members: list[dict[str, Any]]) -> dict[str, Any]:
    """Align the calibrated members of an association together (one tweakreg fit).

    Each aligned member's products (aligned metadata, catalog with the aligned sky
    columns, segmentation map) are written to ``<stage>/aligned.pkl``; the members'
    outputs are written by their own `write_task`, in parallel.

    Parameters
    ----------
    spec : dict
        ``stages`` (one stage directory per member, in order), ``names``, and the run's
        options.
    members : list of dict
        The members' `calibrate_task` results (those not ``done`` are left out).

    Returns
    -------
    dict
        Status, outputs (the ``aligned.pkl`` files), per-member metrics (alignment), error.
    """

    def work() -> dict[str, Any]:
        from romancal_lite.pipeline.exposure_pipeline import read_products, write_products

        kept = [i for i, m in enumerate(members) if m.get("status") == "done"]
        if not kept:
            return {"status": "skipped", "error": "no member was calibrated"}
        pipe = _pipeline(spec)
        pipe.tweakreg.check_reference_catalog()
        done = [
            read_products(Path(spec["stages"][index]) / "products.pkl",
                          tweakreg_catalog=not pipe.tweakreg.skip)
            for index in kept
        ]
        pipe.align_members(done)
        outputs: list[dict[str, Any]] = []
        per_member: dict[str, Any] = {}
        for index, products in zip(kept, done, strict=True):
            path = Path(spec["stages"][index]) / ALIGNED_NAME
            write_products(products, path, aligned=True)
            outputs.append(file_record(path))
            per_member[spec["names"][index]] = _fit_metrics(products.image.meta)
        status = "done" if len(kept) == len(members) else "partial"
        return {"status": status, "outputs": outputs, "metrics": {"members": per_member}}

    return _measured(spec, work)


def write_task(spec: dict[str, Any], aligned: dict[str, Any]) -> dict[str, Any]:
    """Write one aligned member's products (``_cal``, ``_wcs``, ``_cat``, ``_segm``).

    Parameters
    ----------
    spec : dict
        ``stage`` (the member's stage directory), ``name``, and the run's options.
    aligned : dict
        The association's `align_task` result (a member it left out is skipped).

    Returns
    -------
    dict
        Status, outputs (the member's products), error.
    """

    def work() -> dict[str, Any]:
        from romancal_lite.datamodels import deferred_outputs
        from romancal_lite.pipeline.exposure_pipeline import read_products

        members = (aligned.get("metrics") or {}).get("members") or {}
        if aligned.get("status") not in {"done", "partial"} or spec["name"] not in members:
            return {"status": "skipped", "error": "not calibrated and aligned"}
        pipe = _pipeline(spec)
        products = read_products(Path(spec["stage"]) / ALIGNED_NAME)
        with deferred_outputs():
            pipe.write_member(products)
        cal = Path(spec["output_dir"]) / str(products.image.meta.filename)
        return {"outputs": [file_record(p) for p in _elp_outputs(cal)]}

    return _measured(spec, work)


def mosaic_task(spec: dict[str, Any], upstream: list[dict[str, Any]]) -> dict[str, Any]:
    """Run ``roman_mos`` on the calibrated images of an association.

    Parameters
    ----------
    spec : dict
        ``product`` (the mosaic's name), ``asn`` (the association file to write),
        and the run's options.
    upstream : list of dict
        Results of the tasks that wrote the ``_cal`` files.

    Returns
    -------
    dict
        Status, time, peak memory, outputs, metrics (inputs, sources, thumbnail).
    """

    def work() -> dict[str, Any]:
        from romancal_lite.associations import asn_from_list, write_asn
        from romancal_lite.datamodels import deferred_outputs
        from romancal_lite.stpipe.naming import make_output_name

        cals = [
            o["path"] for r in upstream if r.get("status") in {"done", "partial"}
            for o in r.get("outputs", []) if o["path"].endswith("_cal.asdf")
        ]  # fmt: skip
        if not cals:
            return {"status": "skipped", "error": "no calibrated image"}
        asn = Path(spec["asn"])
        tree = asn_from_list(cals, spec["product"], relative_to=asn.parent)
        pipe = _pipeline(spec, "roman_mos")
        write_asn(tree, asn)  # in place first: the pipeline reads it
        with deferred_outputs():
            pipe.run(str(asn))
        out = Path(spec["output_dir"])
        coadd = out / make_output_name(spec["product"], "coadd")
        cat = out / make_output_name(spec["product"], "cat", ".parquet")
        segm = out / make_output_name(spec["product"], "segm")
        outputs = [p for p in (asn, coadd, cat, segm) if p.is_file()]
        metrics: dict[str, Any] = {"inputs": len(cals)}
        from romancal_lite import datamodels

        with datamodels.open(coadd) as image:
            metrics["thumbnail"] = (
                _thumbnail(image, spec.get("thumbnail")) if "data" in image else None
            )
        metrics["sources"] = _parquet_rows(cat)
        return {"outputs": [file_record(p) for p in outputs], "metrics": metrics}

    return _measured(spec, work)
