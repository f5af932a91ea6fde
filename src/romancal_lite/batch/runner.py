"""``romancal-lite batch``: many exposures through ``roman_elp`` on a Dask cluster.

The graph: for each association (`romancal_lite.batch._plan`), one task per
exposure-detector (``roman_elp`` up to the source catalog), one alignment task that
waits for them (the joint tweakreg), one task per exposure-detector writing its
products, and with ``--mosaic`` one ``roman_mos`` task after them. An association of
one exposure is one task, exactly ``romancal-lite run roman_elp <file>``. Tasks get
file paths and return small dicts; Dask schedules them (one graph, one queue, in the
batch's priorities: `KEY_PREFIX`, `LOCAL_SCHEDULER_CONFIG`, `_priority`), retries them
(transient I/O errors only: `romancal_lite.batch._tasks`), limits the workers' memory
and reports progress. The client keeps the ledger (`romancal_lite.batch._ledger`),
lends idle workers' cores to the running tasks (`_Lender`) and writes the report.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from romancal_lite.errors import ConfigError
from romancal_lite.interrupts import raise_lost_signal

from . import _tasks
from ._ledger import Ledger
from ._plan import Group, expand_inputs
from ._report import REPORT_NAME, summary_table, write_report

__all__ = ["BATCH_OPTIONS", "BatchOptions", "default_workers", "parse_batch_args", "run_batch"]

#: Work directory of a batch inside its output directory (stage files, task logs).
WORK_DIR = ".romancal_lite-batch"
#: Thumbnails of the report, beside it.
THUMBNAIL_DIR = "report_files"
#: Memory a worker needs for one full-frame exposure-detector (roman_elp's peak with
#: margin; sizes the default number of workers).
WORKER_MEMORY = 4 * 1024**3

BATCH_OPTIONS = """\
batch options:
  --workers N                local cluster: worker processes (default: the cores,
                             at most one per 4 GB of memory)
  --memory-limit SIZE        local cluster: memory limit per worker, e.g. 6GB
                             (default: the machine's memory / workers)
  --dashboard-address ADDR   local cluster: Dask dashboard (default :8787; 'none')
  --scheduler ADDRESS        run on an existing Dask cluster (tcp://host:8786 or a
                             scheduler file) instead of a local one
  --omp-threads N            OpenMP threads of each task (default: local cluster,
                             the cores / workers; --scheduler, the worker process's
                             setting: 1 under Dask's nanny)
  --retries N                retries of a task after a transient I/O error (default 2)
  --resume                   skip what the ledger records as finished (outputs
                             present and unchanged); do the rest
  --force                    redo everything, even with a ledger in the output dir
  --mosaic                   also run roman_mos on each association's _cal files
  --mosaic-config FILE       parameter file of roman_mos (repeatable)
  --reference-cache DIR      decompressed copies of compressed reference files
                             (default $ROMANCAL_LITE_REFERENCE_CACHE, else
                             ~/.cache/romancal_lite/uncompressed)
  --no-reference-cache       read compressed references in every task
  --no-report                no report.html
"""

_VALUED = {
    "workers", "memory_limit", "dashboard_address", "scheduler", "omp_threads",
    "retries", "mosaic_config", "reference_cache",
}  # fmt: skip
_FLAGS = {"resume", "force", "mosaic", "no_reference_cache", "no_report"}


@dataclass
class BatchOptions:
    """The batch's own options (the pipeline's are `run`'s)."""

    workers: int | None = None
    memory_limit: str | None = None
    dashboard_address: str | None = ":8787"
    scheduler: str | None = None
    omp_threads: int | None = None
    retries: int = 2
    resume: bool = False
    force: bool = False
    mosaic: bool = False
    mosaic_config: list[str] = field(default_factory=list)
    reference_cache: str | None = None
    no_reference_cache: bool = False
    no_report: bool = False


def _int(name: str, value: str, low: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if number < low:
        raise ConfigError(f"--{name.replace('_', '-')} needs an integer >= {low}, got {value!r}")
    return number


def parse_batch_args(tokens: list[str]) -> tuple[BatchOptions, list[str]]:
    """Take the batch's own options out of the command line; return them and the rest.

    Parameters
    ----------
    tokens : list of str
        The arguments after ``batch``.

    Returns
    -------
    BatchOptions, list of str
        The batch options and the remaining tokens (inputs and ``run`` options).

    Raises
    ------
    ConfigError
        For a missing or bad value, or ``--resume`` with ``--force``.
    """
    options = BatchOptions()
    rest: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        key, has_value, value = token[2:].partition("=") if token.startswith("--") else (
            "", False, "")
        key = key.replace("-", "_")
        if key in _FLAGS and not has_value:
            setattr(options, key, True)
        elif key in _VALUED:
            if not has_value:
                if i >= len(tokens):
                    raise ConfigError(f"--{key.replace('_', '-')} needs a value")
                value, i = tokens[i], i + 1
            if key in {"workers", "omp_threads"}:
                setattr(options, key, _int(key, value, 1))
            elif key == "retries":
                options.retries = _int(key, value, 0)
            elif key == "mosaic_config":
                options.mosaic_config.append(value)
            elif key == "dashboard_address":
                options.dashboard_address = None if value.lower() == "none" else value
            else:
                setattr(options, key, value)
        else:
            rest.append(token)
    if options.resume and options.force:
        raise ConfigError("--resume and --force exclude each other")
    if options.scheduler and (options.workers or options.memory_limit):
        raise ConfigError("--workers and --memory-limit are for the local cluster, not "
                          "with --scheduler")
    return options, rest


def default_workers() -> int:
    """Return the default number of local workers: the cores, at most one per 4 GB.

    Returns
    -------
    int
        At least 1.
    """
    import psutil

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    memory = psutil.virtual_memory().total
    return max(1, min(cores, int(memory // WORKER_MEMORY)))


def _reference_cache(options: BatchOptions) -> str | None:
    from romancal_lite.references.uncompressed import reference_cache_dir

    if options.no_reference_cache:
        return None
    if options.reference_cache:
        return str(Path(os.path.expanduser(options.reference_cache)).resolve())
    configured = reference_cache_dir()
    if configured is not None:
        return str(configured.resolve())
    return str(Path("~/.cache/romancal_lite/uncompressed").expanduser())


# ---------------------------------------------------------------------- cluster


#: Dask settings of the local cluster's scheduler. Every task waits in the scheduler's
#: queue, ordered by priority, until a worker has a free thread (a worker holds only
#: the task it runs): with Dask's defaults (1.1 tasks per thread; queuing only for
#: groups of tasks with few dependencies; here a group per task) a worker was handed
#: tasks ahead of time, and the other, once done with its own, stayed idle until work
#: stealing moved one (20 s of a 60 s run). ``rootish-taskgroup-dependencies``: the
#: batch's tasks are one group (`KEY_PREFIX`) that depends on itself (alignments on
#: calibrations, writes on alignments); their arguments are small dicts, so that
#: Dask's reason to keep such tasks out of the queue (moving data) does not apply.
LOCAL_SCHEDULER_CONFIG = {
    "distributed.scheduler.worker-saturation": 1.0,
    "distributed.scheduler.rootish-taskgroup-dependencies": 1_000_000,
}


def _start_cluster(options: BatchOptions) -> tuple[Any, Any, int | None]:
    """Return (client, local cluster or None, OpenMP threads per task)."""
    from distributed import Client, LocalCluster

    if options.scheduler:
        target = options.scheduler
        kwargs = {"scheduler_file": target} if os.path.isfile(target) else {"address": target}
        try:
            client = Client(**kwargs, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"--scheduler {target}: cannot connect ({exc})") from None
        return client, None, options.omp_threads
    workers = options.workers or default_workers()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    threads = options.omp_threads or max(1, cores // workers)
    import dask

    env = {"OMP_NUM_THREADS": str(threads), _tasks.FAST_EXIT_ENV: "1"}
    with dask.config.set({"distributed.worker.daemon": False, **LOCAL_SCHEDULER_CONFIG}):
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True,
            memory_limit=options.memory_limit or "auto",
            dashboard_address=options.dashboard_address or None,
            silence_logs=logging.ERROR, env=env, preload=[_tasks.__name__],
        )  # fmt: skip
    return Client(cluster), cluster, threads


class _ClusterStart:
    """The cluster, started in a thread while the batch checks its arguments and plans.

    Starting worker processes (and the imports of their first task, `_tasks`'s preload)
    takes a few seconds that the batch's own start (imports, parameter checks, the
    plan) can overlap. `result` waits for it; `discard` closes it after an error.
    """

    def __init__(self, options: BatchOptions):
        import threading

        self._value: tuple[Any, Any, int | None] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(options,),
                                        name="romancal-lite-batch-cluster", daemon=True)
        self._thread.start()

    def _run(self, options: BatchOptions) -> None:
        try:
            self._value = _start_cluster(options)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._error = exc

    def result(self) -> tuple[Any, Any, int | None]:
        """Wait for the cluster; return (client, local cluster or None, OpenMP threads)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value

    def discard(self) -> None:
        """Wait for the cluster and close it (the batch stopped before using it)."""
        self._thread.join()
        if self._value is not None:
            _close(self._value[0], self._value[1])
            self._value = None


# ---------------------------------------------------------------------- the run


def _abs(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


class _Progress:
    """One status line: done / failed / running of all, elapsed, estimated remaining."""

    def __init__(self, total: int, stream: Any = None):
        self.total = total
        self.start = time.monotonic()
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = ""

    def draw(self, done: int, failed: int, running: int, final: bool = False) -> None:
        elapsed = time.monotonic() - self.start
        finished = done + failed
        if finished and finished < self.total:
            eta = f", ~{_clock(elapsed / finished * (self.total - finished))} left"
        else:
            eta = ""
        frac = finished / self.total if self.total else 1.0
        bar = "#" * int(30 * frac)
        line = (f"[{bar:<30}] {finished}/{self.total} tasks: {done} done, {failed} failed, "
                f"{running} running | {_clock(elapsed)}{eta}")
        if self.tty:
            self.stream.write("\r\033[2K" + line + ("\n" if final else ""))
            self.stream.flush()
        elif line != self.last and (final or finished != self._finished_last()):
            self.stream.write(line + "\n")
            self.stream.flush()
        self.last = line

    def _finished_last(self) -> int:
        try:
            return int(self.last.split("] ")[1].split("/")[0])
        except (IndexError, ValueError):
            return -1


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _one_line(exc: BaseException) -> str:
    from distributed.client import FutureCancelledError

    name = type(exc).__name__
    if name == "KilledWorker":
        return ("the worker running it died repeatedly (memory limit exceeded or crash); "
                "see the worker logs")
    if isinstance(exc, FutureCancelledError):
        return "cancelled"
    if isinstance(exc, _tasks.TransientIOError):
        return f"I/O error, retries exhausted: {exc.strerror or exc}"
    return " ".join(f"{name}: {exc}".split())


def _sweep_partials(output_dir: Path, stages: list[Path]) -> None:
    """Remove the temporary files a killed worker may leave (atomic writes' temporaries)."""
    for directory in [output_dir, output_dir / THUMBNAIL_DIR]:
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            name = entry.name
            if name.startswith(".") and name.endswith(".tmp") and entry.is_file():
                entry.unlink(missing_ok=True)
            elif name.startswith(".romancal_lite-elp-") and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
    for stage in stages:
        shutil.rmtree(stage, ignore_errors=True)


def run_batch(
    inputs: list[str],
    options: BatchOptions,
    *,
    config_files: list[str],
    parameters: dict[str, Any],
    builtin_references: bool = False,
    command: list[str] | None = None,
) -> int:
    """Run a batch and return the exit status (0 all succeeded, 1 any failed).

    Parameters
    ----------
    inputs : list of str
        Files, globs, directories, association files.
    options : BatchOptions
        The batch's options.
    config_files : list of str
        ``roman_elp`` parameter files (as ``run --config``).
    parameters : dict
        ``roman_elp`` parameters (as ``run``), ``output_dir`` among them.
    builtin_references : bool, optional
        As ``run --builtin-references``.
    command : list of str, optional
        The command line (recorded in the ledger).

    Returns
    -------
    int
        0 or 1.

    Raises
    ------
    ConfigError
        Bad inputs or options, or a ledger in the way.
    """
    phases = {"process_start": _process_start()}
    output_dir = Path(_abs(str(parameters.get("output_dir") or ".")))
    parameters = {**parameters, "output_dir": str(output_dir)}
    config_files = [_abs(f) for f in config_files]
    mosaic_files = [_abs(f) for f in options.mosaic_config]
    # what needs no import of the pipeline is checked before the cluster starts: the
    # inputs, the ledger, what is left to do
    groups = expand_inputs(inputs)
    ledger = Ledger(output_dir)
    if ledger.exists() and not (options.resume or options.force):
        raise ConfigError(
            f"{ledger.path} exists (an earlier batch in this output directory): --resume to "
            "finish it, --force to redo everything"
        )
    if ledger.exists() and options.resume:
        ledger.load()
    settings = {
        "config_files": config_files,
        "parameters": {k: v for k, v in parameters.items() if k != "output_dir"},
        "builtin_references": builtin_references,
        "mosaic": options.mosaic,
        "mosaic_config_files": mosaic_files,
    }
    ledger.start_run(command or [], settings, options.resume)
    ledger.data["runs"][-1]["phases"] = phases
    work = output_dir / WORK_DIR
    base_spec = {
        "output_dir": str(output_dir),
        "config_files": config_files,
        "parameters": parameters,
        "mosaic_config_files": mosaic_files,
        "builtin_references": builtin_references,
    }
    start = time.monotonic()
    plan = _submit(None, groups, ledger, base_spec, options, work)
    if not plan.futures:
        _check_parameters(config_files, parameters, options.mosaic, mosaic_files)
        output_dir.mkdir(parents=True, exist_ok=True)
        print("romancal-lite batch: nothing to do (the ledger records every task finished, "
              "its outputs unchanged)", file=sys.stderr)
        return _finish(ledger, options, output_dir, work, time.monotonic() - start)
    # the cluster starts while the parameters are checked (the pipeline's imports)
    starting = _ClusterStart(options)
    try:
        base_spec["reference_cache"] = _reference_cache(options)
        _check_parameters(config_files, parameters, options.mosaic, mosaic_files)
        output_dir.mkdir(parents=True, exist_ok=True)
        phases["planned"] = time.time()
        client, cluster, threads = starting.result()
    except BaseException:
        starting.discard()
        raise
    phases["cluster"] = time.time()
    base_spec["omp_threads"] = threads
    plan = _Plan()
    try:
        info = client.scheduler_info(n_workers=-1).get("workers", {})
        ledger.data["runs"][-1]["workers"] = sorted(info)
        dashboard = getattr(client, "dashboard_link", None)
        where = options.scheduler or f"local cluster, {len(info)} workers"
        print(f"romancal-lite batch: {sum(len(g.members) for g in groups)} exposure-detectors "
              f"in {len(groups)} associations on {where}"
              + (f"; dashboard {dashboard}" if dashboard and options.dashboard_address else ""),
              file=sys.stderr)
        plan = _submit(client, groups, ledger, base_spec, options, work)
        phases["submitted"] = time.time()
        ledger.save()
        _follow(client, plan, ledger, _Lender(client, threads))
        phases["tasks_done"] = time.time()
    except BaseException:
        # Ctrl-C, SIGTERM or a lost scheduler: stop the work, keep a ledger that resumes
        for future, task_id in plan.futures.items():
            if not future.done():
                ledger.set(task_id, status="interrupted")
        try:
            client.cancel(list(plan.futures), force=True)
        except Exception:  # noqa: BLE001 - the scheduler may be gone already
            pass
        if cluster is not None:
            _close(client, cluster)
            client = cluster = None
            _sweep_partials(output_dir, [
                Path(ledger.tasks[t]["stage"]) for t in ledger.tasks
                if ledger.tasks[t].get("status") == "interrupted"
                and ledger.tasks[t].get("kind") == "calibrate"
            ])  # fmt: skip
        ledger.save()
        raise
    finally:
        if client is not None:
            _close(client, cluster)
    phases["closed"] = time.time()
    return _finish(ledger, options, output_dir, work, time.monotonic() - start)


def _check_parameters(config_files: list[str], parameters: dict[str, Any], mosaic: bool,
                      mosaic_files: list[str]) -> None:
    """Check the pipelines' parameters as ``run`` would (ConfigError if one is bad)."""
    from romancal_lite.stpipe import registry

    registry.resolve("roman_elp").build_config(
        config_files, base={"parameters": {"save_results": True}}, **parameters
    )
    if mosaic:
        registry.resolve("roman_mos").build_config(mosaic_files)


def _follow(client: Any, plan: _Plan, ledger: Ledger, lender: _Lender) -> None:
    """Wait on the tasks, record each as it ends, draw the progress, lend idle cores."""
    from distributed import wait

    progress = _Progress(len(plan.futures))
    done_n = failed_n = 0
    pending = set(plan.futures)
    progress.draw(0, 0, 0)
    while pending:
        raise_lost_signal()  # a Ctrl-C Python dropped (in a __del__) stops the batch here
        try:
            finished, pending_set = wait(list(pending), timeout=0.5,
                                         return_when="FIRST_COMPLETED")
        except TimeoutError:  # nothing finished within the timeout
            finished, pending_set = set(), pending
        pending = set(pending_set)
        for future in finished:
            task_id = plan.futures[future]
            status = _record(ledger, task_id, future)
            if status == "done" and ledger.tasks[task_id].get("kind") == "write":
                _drop_stages(ledger, ledger.tasks[task_id]["group"])
            if status in {"done", "partial"}:
                done_n += 1
            else:
                failed_n += 1
        if finished:
            ledger.save()
        running = 0
        if pending:
            processing = client.processing()
            running = _running(client, processing)
            if any(not keys for keys in processing.values()):  # a worker is idle
                lender.update(processing, [f for f in pending if plan.ready(f)])
            else:
                lender.update(processing, [])
        progress.draw(done_n, failed_n, running, final=not pending)


def _finish(ledger: Ledger, options: BatchOptions, output_dir: Path, work: Path,
            wall: float) -> int:
    """Record the run's end, print the summary, write the report; return the exit status."""
    ledger.data["runs"][-1]["wall_s"] = wall
    ledger.save()
    print(summary_table(ledger, wall))
    if not options.no_report:
        report = write_report(ledger, output_dir / REPORT_NAME)
        print(f"report: {report}")
    phases = ledger.data["runs"][-1].setdefault("phases", {})
    phases["end"] = time.time()
    ledger.save()
    failed = [t for t, r in ledger.tasks.items() if r.get("status") not in {"done"}]
    if not failed and work.is_dir():
        shutil.rmtree(work / "stage", ignore_errors=True)
    return 1 if failed else 0


def _process_start() -> float:
    """Return when this process started (Unix time; now where it is not known)."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - only a timeline mark
        return time.time()


def _drop_stages(ledger: Ledger, group: str) -> None:
    """Remove an association's stage directories once every member's products are written."""
    writes = [r for r in ledger.tasks.values() if r.get("kind") == "write"
              and r.get("group") == group]
    if writes and all(r.get("status") == "done" for r in writes):
        for record in writes:
            shutil.rmtree(record["stage"], ignore_errors=True)


def _running(client: Any, processing: dict[str, list[Any]]) -> int:
    """Return how many tasks execute now (a worker may also hold tasks it has not begun)."""
    threads = client.nthreads()
    return sum(min(len(keys), threads.get(worker, 1)) for worker, keys in processing.items())


class _Lender:
    """Lends the cores of idle workers to the tasks running on the same machine.

    When no task is ready to start (the end of a batch, an association's alignment
    before its writes), a worker with nothing to do leaves its cores idle while a task
    on another worker runs on its own share (``--omp-threads``). The lender gives each
    running task, besides its own threads, an equal part of the idle workers' threads
    on its machine (`_tasks.set_task_threads`), and takes them back as soon as a task
    is ready for an idle worker. Only when the tasks' threads are known (a local
    cluster, or ``--omp-threads``).

    Parameters
    ----------
    client : distributed.Client
        The batch's client.
    threads : int or None
        OpenMP threads of a task (None: no lending).
    """

    def __init__(self, client: Any, threads: int | None):
        self.client = client
        self.threads = threads
        self.hosts: dict[str, str] = {}
        self.lent: dict[str, tuple[Any, int]] = {}  # worker -> (task key, threads)

    def _host(self, worker: str) -> str:
        if worker not in self.hosts:
            info = self.client.scheduler_info(n_workers=-1).get("workers", {})
            self.hosts.update({w: str(i.get("host", w)) for w, i in info.items()})
        return self.hosts.get(worker, worker)

    def targets(self, processing: dict[str, list[Any]], ready: bool) -> dict[str, int]:
        """Return the threads each running task should have (worker -> threads).

        Parameters
        ----------
        processing : dict
            Worker -> keys of the tasks the scheduler gave it (`Client.processing`).
        ready : bool
            Whether a task is ready to start (then nothing is lent).

        Returns
        -------
        dict
            For each worker running exactly one task: its OpenMP threads.
        """
        if self.threads is None:
            return {}
        base = self.threads
        running = sorted(w for w, keys in processing.items() if len(keys) == 1)
        targets = {w: base for w in running}
        if ready:
            return targets
        idle: dict[str, int] = {}
        for worker, keys in processing.items():
            if not keys:
                host = self._host(worker)
                idle[host] = idle.get(host, 0) + 1
        for host, count in idle.items():
            here = [w for w in running if self._host(w) == host]
            spare = count * base
            for i, worker in enumerate(here):
                targets[worker] += spare // len(here) + (1 if i < spare % len(here) else 0)
        return targets

    def update(self, processing: dict[str, list[Any]], ready: list[Any]) -> None:
        """Lend or take back cores as the scheduler's state says.

        Parameters
        ----------
        processing : dict
            Worker -> keys of the tasks the scheduler gave it (`Client.processing`).
        ready : list
            Futures of tasks not finished whose inputs are all there.
        """
        if self.threads is None:
            return
        busy = {key for keys in processing.values() for key in keys}
        waiting = any(f.key not in busy for f in ready)
        for worker, threads in self.targets(processing, waiting).items():
            key = processing[worker][0]
            now = self.lent.get(worker)
            if now is None or now[0] != key:
                now = (key, self.threads)  # a new task starts with its own threads
            if now[1] == threads:
                self.lent[worker] = now
                continue
            try:
                done = self.client.run(_tasks.set_task_threads, key, threads,
                                       workers=[worker], on_error="return")
            except Exception:  # noqa: BLE001 - a worker that went away: nothing to lend
                continue
            if done.get(worker) is True:
                self.lent[worker] = (key, threads)


@dataclass
class _Plan:
    """The submitted tasks: future -> task id, and the futures each one waits for.

    When planning only (no client), the "futures" are the task ids themselves.
    """

    futures: dict[Any, str] = field(default_factory=dict)
    needs: dict[Any, list[Any]] = field(default_factory=dict)
    stages: list[Path] = field(default_factory=list)

    def ready(self, future: Any) -> bool:
        """Return whether every task ``future`` waits for has finished."""
        return all(d.done() for d in self.needs.get(future, []))


def _close(client: Any, cluster: Any) -> None:
    try:
        client.close(timeout=10)
    except Exception:  # noqa: BLE001 - closing after an interruption: best effort
        pass
    if cluster is not None:
        try:
            cluster.close(timeout=10)
        except Exception:  # noqa: BLE001
            pass


def _record(ledger: Ledger, task_id: str, future: Any) -> str:
    from ._ledger import _now

    if future.status == "finished":
        result = future.result()
        ledger.set(task_id, **result, finished=_now())
        return str(result.get("status"))
    try:
        exc = future.exception()
    except Exception as other:  # noqa: BLE001 - a cancelled future raises here
        exc = other
    ledger.set(task_id, status="failed", error=_one_line(exc), outputs=[], finished=_now())
    return "failed"


#: Dask key of a task: ``romancal_lite-<run>-<task id>``. Dask makes one task group of
#: the keys' common prefix, so that every task of the batch is "root-ish" (a group much
#: larger than the cluster, depending only on itself): such tasks wait in the
#: scheduler's queue, in priority order, until a worker has a free thread. With a group
#: per kind, a kind with few tasks (the alignments, or a handful of one-detector
#: exposures) would be handed to a busy worker ahead of time. The price: the dashboard
#: shows one colour for all (the task id is in the key). A batch of no more than twice
#: the cluster's threads is still handed out at once (Dask's rule for small groups).
KEY_PREFIX = "romancal_lite"

#: Order of the tasks when several are ready (Dask's priorities: higher first). Of an
#: association ``g`` (in the order of the plan), its calibrations (or its one-member
#: ``elp``) come at rank ``2 g``; its writes and its mosaic at ``2 g + 3``, after the
#: calibrations of the next association and before those of the one after: the long
#: tasks go first, and the short writes (and a mosaic) keep the cores busy while the
#: next association's alignment runs (and, at the end, while the last one's does),
#: with at most about two associations' members staged. An alignment, on the way to
#: its association's writes, goes before everything.
ALIGN_PRIORITY = 1 << 40


def _priority(kind: str, index: int) -> int:
    """Dask priority of a task of association ``index`` (see `ALIGN_PRIORITY`)."""
    if kind == "align":
        return ALIGN_PRIORITY
    rank = 2 * index + (3 if kind in {"write", "mosaic"} else 0)
    return -rank


def _submit(
    client: Any, groups: list[Group], ledger: Ledger, base: dict[str, Any],
    options: BatchOptions, work: Path,
) -> _Plan:
    """Put every task not already finished on the cluster (dependencies as futures).

    Without a client, only plan: the returned plan's "futures" are the task ids.
    """
    import dask
    from dask.delayed import Delayed

    run_id = uuid.uuid4().hex[:8]
    thumbs = Path(base["output_dir"]) / THUMBNAIL_DIR
    retries = options.retries
    plan = _Plan()
    graph: list[tuple[Any, str, list[Any]]] = []  # (delayed task, task id, its inputs)

    def reuse(task_id: str, paths: set[str] | None = None) -> bool:
        return options.resume and ledger.complete(task_id, paths)

    def submit(func: Any, task_id: str, index: int, spec: dict[str, Any], *deps: Any) -> Any:
        if client is None:  # planning only
            plan.futures[task_id] = task_id
            return {}
        kind = task_id.partition(":")[0]
        with dask.annotate(priority=_priority(kind, index), retries=retries):
            task = dask.delayed(func, pure=False)(spec, *deps,
                                                  dask_key_name=f"{KEY_PREFIX}-{run_id}-{task_id}")
        flat = [d for dep in deps for d in (dep if isinstance(dep, list) else [dep])]
        graph.append((task, task_id, [d for d in flat if isinstance(d, Delayed)]))
        return task

    for index, group in enumerate(groups):
        upstream: list[Any] = []
        if len(group.members) == 1:
            member = group.members[0]
            task_id = f"elp:{member.name}"
            ledger.set(task_id, kind="elp", name=member.name, inputs=[_abs(member.path)],
                       group=group.name)
            if reuse(task_id):
                upstream.append(ledger.tasks[task_id])
            else:
                ledger.set(task_id, status="pending", error=None)
                upstream.append(submit(_tasks.elp_task, task_id, index, {
                    **base, "inputs": [_abs(member.path)],
                    "thumbnail": str(thumbs / f"{member.name}.png"),
                    "log": str(work / "logs" / f"{member.name}.log"),
                }))
        else:
            upstream.extend(_submit_joint(group, index, ledger, base, work, thumbs, reuse,
                                          submit, plan.stages))
        if options.mosaic:
            mosaic_id = f"mosaic:{group.name}"
            ledger.set(mosaic_id, kind="mosaic", name=group.name)
            if reuse(mosaic_id):
                continue
            ledger.set(mosaic_id, status="pending", error=None)
            submit(_tasks.mosaic_task, mosaic_id, index, {
                **base, "product": group.name,
                "asn": str(Path(base["output_dir"]) / f"{group.name}_mosaic_asn.json"),
                "thumbnail": str(thumbs / f"{group.name}_coadd.png"),
                "log": str(work / "logs" / f"mosaic_{group.name}.log"),
            }, upstream)
    if client is not None and graph:
        # one graph: Dask sees every task at once (its groups' sizes decide the queuing)
        futures = client.compute([task for task, _, _ in graph], optimize_graph=False)
        by_key = {task.key: future for (task, _, _), future in zip(graph, futures, strict=True)}
        for (_, task_id, deps), future in zip(graph, futures, strict=True):
            plan.futures[future] = task_id
            plan.needs[future] = [by_key[d.key] for d in deps]
    return plan


def _submit_joint(
    group: Group, order: int, ledger: Ledger, base: dict[str, Any], work: Path, thumbs: Path,
    reuse: Any, submit: Any, stages: list[Path],
) -> list[Any]:
    """Submit an association of several members; return its write tasks (or records).

    Its graph: ``calibrate:<member>`` each, then one ``align:<association>`` (the joint
    tweakreg fit), then ``write:<member>`` each (the member's products), so that the
    writing, a good part of a member's time, runs on every worker instead of one.
    """
    align_id = f"align:{group.name}"
    names = [m.name for m in group.members]
    member_stages = [str(work / "stage" / name) for name in names]
    write_ids = [f"write:{name}" for name in names]
    for member, stage, write_id in zip(group.members, member_stages, write_ids, strict=True):
        ledger.set(f"calibrate:{member.name}", kind="calibrate", name=member.name,
                   align=align_id, write=write_id, inputs=[_abs(member.path)],
                   group=group.name, stage=stage)
        ledger.set(write_id, kind="write", name=member.name, align=align_id,
                   inputs=[_abs(member.path)], group=group.name, stage=stage)
    ledger.set(align_id, kind="align", name=group.name,
               inputs=[_abs(m.path) for m in group.members])
    written = [reuse(w) for w in write_ids]
    if all(written):
        return [ledger.tasks[w] for w in write_ids]
    # the alignment is reused when it finished and what the unwritten members need of
    # it (their aligned.pkl) is still there
    needed = {str(Path(s) / _tasks.ALIGNED_NAME)
              for s, w in zip(member_stages, written, strict=True) if not w}
    aligned = reuse(align_id, needed)
    results: list[Any] = []
    for index, member in enumerate(group.members):
        task_id = f"calibrate:{member.name}"
        if aligned or reuse(task_id):
            results.append(ledger.tasks[task_id])
            continue
        ledger.set(task_id, status="pending", error=None)
        stages.append(Path(member_stages[index]))
        results.append(submit(_tasks.calibrate_task, task_id, order, {
            **base, "inputs": [_abs(member.path)], "group_id": member.group_id,
            "index": index, "stage": member_stages[index],
            "thumbnail": str(thumbs / f"{member.name}.png"),
            "log": str(work / "logs" / f"{member.name}.log"),
        }))
    if aligned:
        alignment = ledger.tasks[align_id]
    else:
        ledger.set(align_id, status="pending", error=None)
        alignment = submit(_tasks.align_task, align_id, order, {
            **base, "stages": member_stages, "names": names,
            "inputs": [_abs(m.path) for m in group.members],
            "log": str(work / "logs" / f"align_{group.name}.log"),
        }, results)
    writes: list[Any] = []
    for member, stage, write_id, done in zip(group.members, member_stages, write_ids, written,
                                             strict=True):
        if done:
            writes.append(ledger.tasks[write_id])
            continue
        ledger.set(write_id, status="pending", error=None)
        writes.append(submit(_tasks.write_task, write_id, order, {
            **base, "inputs": [_abs(member.path)], "name": member.name, "stage": stage,
            "log": str(work / "logs" / f"write_{member.name}.log"),
        }, alignment))
    return writes
