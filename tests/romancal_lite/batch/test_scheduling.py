"""How the batch hands its tasks to Dask: one queue in priority order, idle cores lent
to running tasks, and the timeline of a run (a LocalCluster of 2 worker processes)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from romancal_lite import interrupts
from romancal_lite.batch import Ledger, runner
from romancal_lite.batch._plan import Group, Member
from romancal_lite.batch._timeline import timeline

SRC = str(Path(__file__).resolve().parents[3] / "src")
VISIT = "r0000101001001001001"


@pytest.fixture(scope="module")
def cluster():
    """The batch's own local cluster (2 workers, 1 OpenMP thread per task), each worker
    held by a task that waits on an event (so nothing else can start)."""
    from distributed import Event

    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([SRC, saved or ""])
    try:
        client, local, threads = runner._start_cluster(
            runner.BatchOptions(workers=2, omp_threads=1, dashboard_address=None))
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved
    hold = Event("romancal-lite-test-hold", client=client)
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    holders = {w: client.submit(hold.wait, key=f"hold-{i}", workers=[w], pure=False)
               for i, w in enumerate(workers)}
    try:
        yield {"client": client, "workers": workers, "holders": holders, "threads": threads}
    finally:
        hold.set()
        client.close()
        local.close()


def _held(client, workers):
    def both_running():
        return all(len(keys) == 1 and str(keys[0]).startswith("hold-")
                   for keys in client.processing(workers).values())

    import time

    end = time.monotonic() + 60
    while not both_running():
        assert time.monotonic() < end, client.processing()
        time.sleep(0.1)


def test_tasks_wait_in_the_scheduler_queue_in_priority_order(cluster, tmp_path):
    """Every ready task stays in the scheduler's queue until a worker is free (none is
    handed to a busy worker ahead of time), and they leave it in the batch's order:
    associations in turn, an alignment first of all, writes after the next association's
    calibrations."""
    client, workers = cluster["client"], cluster["workers"]
    _held(client, workers)
    groups = [Group(f"{VISIT}_000{g}", [Member(str(tmp_path / f"{VISIT}_000{g}_wfi0{d}_uncal"
                                                    ".asdf")) for d in range(1, n + 1)])
              for g, n in ((1, 2), (2, 1), (3, 2), (4, 2))]
    out = tmp_path / "out"
    options = runner.BatchOptions(retries=0)
    plan = runner._submit(client, groups, Ledger(out), {"output_dir": str(out)}, options,
                          out / runner.WORK_DIR)
    try:
        def state(dask_scheduler):
            return {
                "queued": [str(ts.key) for ts in sorted(dask_scheduler.queued,
                                                       key=lambda ts: ts.priority)],
                "processing": {w: [str(ts.key) for ts in ws.processing]
                               for w, ws in dask_scheduler.workers.items()},
                "priority": {str(k): ts.priority for k, ts in dask_scheduler.tasks.items()},
            }

        import time

        end = time.monotonic() + 30
        while True:  # the graph reaches the scheduler on its own stream
            seen = client.run_on_scheduler(state)
            if all(str(f.key) in seen["priority"] for f in plan.futures):
                break
            assert time.monotonic() < end
            time.sleep(0.1)
        # the workers hold only their running task; the 7 ready tasks wait in the queue
        assert seen["processing"] == {w: [f.key] for w, f in cluster["holders"].items()}
        queued = [k.split("-", 2)[2] for k in seen["queued"]]
        assert sorted(queued) == [
            f"calibrate:{VISIT}_0001_wfi01", f"calibrate:{VISIT}_0001_wfi02",
            f"calibrate:{VISIT}_0003_wfi01", f"calibrate:{VISIT}_0003_wfi02",
            f"calibrate:{VISIT}_0004_wfi01", f"calibrate:{VISIT}_0004_wfi02",
            f"elp:{VISIT}_0002_wfi01"]
        exposures = [q.split("_")[1] for q in queued]  # association by association
        assert exposures == sorted(exposures), queued
        by_task = {plan.futures[f]: seen["priority"][str(f.key)][0] for f in plan.futures}
        first = min(by_task.values())
        assert by_task[f"align:{VISIT}_0003"] == first  # an alignment goes before all
        write = by_task[f"write:{VISIT}_0001_wfi01"]  # association 0's writes: after
        assert by_task[f"elp:{VISIT}_0002_wfi01"] < write  # the next one's calibration,
        assert write < by_task[f"calibrate:{VISIT}_0003_wfi01"]  # before the one after
        # each task waits for what it needs
        needs = {plan.futures[f]: sorted(plan.futures[d] for d in plan.needs[f])
                 for f in plan.futures}
        assert needs[f"align:{VISIT}_0001"] == [f"calibrate:{VISIT}_0001_wfi01",
                                                f"calibrate:{VISIT}_0001_wfi02"]
        assert needs[f"write:{VISIT}_0001_wfi02"] == [f"align:{VISIT}_0001"]
        assert needs[f"calibrate:{VISIT}_0001_wfi02"] == []
    finally:
        client.cancel(list(plan.futures), force=True)


def test_idle_cores_are_lent_to_the_running_task(cluster):
    """With a worker idle and no task ready, the running task gets its cores (its
    OpenMP threads in its worker process), and gives them back when a task is ready."""
    client, workers = cluster["client"], cluster["workers"]
    _held(client, workers)
    busy, idle = workers
    key = cluster["holders"][busy].key
    processing = {busy: [key], idle: []}  # as if the idle worker's task had ended

    def threads():
        return client.run(os.getenv, "OMP_NUM_THREADS", workers=[busy])[busy]

    assert threads() == "1"
    lender = runner._Lender(client, cluster["threads"])
    lender.update(processing, [])
    assert threads() == "2"
    lender.update(processing, [])  # no change: nothing sent
    assert lender.lent[busy] == (key, 2)

    class Ready:  # a ready task no worker has started
        key = "romancal_lite-00000000-calibrate:x"

    lender.update(processing, [Ready()])
    assert threads() == "1"
    # a task that is not running on the worker is left alone
    from romancal_lite.batch import _tasks

    assert client.run(_tasks.set_task_threads, "romancal_lite-00000000-elp:gone", 4,
                      workers=[busy])[busy] is False
    assert threads() == "1"


def test_lent_threads_per_machine():
    """Idle workers' threads go to the running tasks of their own machine, shared."""

    class Client:
        def scheduler_info(self, n_workers=-1):
            return {"workers": {"a1": {"host": "a"}, "a2": {"host": "a"}, "a3": {"host": "a"},
                                "b1": {"host": "b"}, "b2": {"host": "b"}}}

    lender = runner._Lender(Client(), 2)
    processing = {"a1": ["x"], "a2": [], "a3": [], "b1": ["y"], "b2": ["z"]}
    assert lender.targets(processing, ready=False) == {"a1": 6, "b1": 2, "b2": 2}
    assert lender.targets(processing, ready=True) == {"a1": 2, "b1": 2, "b2": 2}
    processing = {"a1": ["x"], "a2": ["w"], "a3": [], "b1": ["y", "v"], "b2": []}
    assert lender.targets(processing, ready=False) == {"a1": 3, "a2": 3}
    assert runner._Lender(Client(), None).targets(processing, ready=False) == {}


def test_timeline_of_a_run():
    """Per worker: time before its first task, gaps between tasks, time after its last."""
    t0 = 1000.0
    data = {
        "runs": [{"phases": {"process_start": t0, "cluster": t0 + 2.0, "end": t0 + 30.0},
                  "workers": ["w1", "w2", "w3"]}],
        "tasks": {
            "elp:a": {"kind": "elp", "worker": "w1", "started_unix": t0 + 3.0, "time_s": 10.0},
            "elp:b": {"kind": "elp", "worker": "w1", "started_unix": t0 + 15.0, "time_s": 12.0},
            "elp:c": {"kind": "elp", "worker": "w2", "started_unix": t0 + 4.0, "time_s": 20.0},
            "elp:old": {"kind": "elp", "worker": "w2", "started_unix": t0 - 99, "time_s": 5.0},
        },
    }
    line = timeline(data)
    assert line.wall == 30.0 and line.phases == {"process_start": 0.0, "cluster": 2.0,
                                                 "end": 30.0}
    w1, w2, w3 = line.workers
    assert (w1.head, w1.gaps, w1.tail, w1.busy) == (3.0, 2.0, 3.0, 22.0)
    assert (w2.head, w2.gaps, w2.tail, w2.busy) == (4.0, 0.0, 6.0, 20.0)  # not the old run's
    assert (w3.head, w3.busy) == (30.0, 0.0)
    assert line.idle == pytest.approx(8.0 + 10.0 + 30.0)
    text = line.table()
    assert "idle worker-seconds: 48.0 of 90.0" in text and text.count("|") >= 6


def test_a_closed_worker_process_ends_without_module_teardown(cluster):
    """The local cluster's workers end at their first exit handler (`_fast_exit`): it
    runs the pending clean-ups and flushes the logs; the handlers before it, and the
    module teardown, are skipped."""
    import subprocess
    import sys

    from romancal_lite.batch import _tasks

    client = cluster["client"]
    assert set(client.run(os.getenv, _tasks.FAST_EXIT_ENV).values()) == {"1"}
    script = (
        "import atexit, logging, sys, weakref\n"
        "atexit.register(print, 'teardown')\n"  # registered before: skipped
        "from romancal_lite.batch import _tasks\n"
        "sys.argv[1:] and _tasks.dask_setup(None)\n"
        "class Held: pass\n"
        "held = Held()\n"
        "weakref.finalize(held, print, 'cleaned')\n"
        "logging.basicConfig(stream=sys.stderr)\n"
        "logging.getLogger('x').warning('logged')\n"
        "print('worked', flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC, _tasks.FAST_EXIT_ENV: "1"}
    fast = subprocess.run([sys.executable, "-c", script, "setup"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert fast.returncode == 0, fast.stderr
    assert fast.stdout.split() == ["worked", "cleaned"] and "logged" in fast.stderr
    slow = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert sorted(slow.stdout.split()) == ["cleaned", "teardown", "worked"]  # without it


class _DroppedCtrlC:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs here: Python drops what it raises
            pass


def test_a_ctrl_c_python_drops_stops_the_wait_for_the_tasks(tmp_path, monkeypatch):
    """A KeyboardInterrupt raised in a ``__del__`` while the batch waits still stops it."""
    import distributed

    waits = []

    def wait(futures, timeout, return_when):
        waits.append(len(futures))
        if len(waits) == 1:
            _DroppedCtrlC()  # collected at once: the Ctrl-C is dropped
        if len(waits) > 3:
            raise RuntimeError("the batch went on waiting")
        raise TimeoutError

    class Client:
        def processing(self):
            return {"worker": ["task"]}

        def nthreads(self):
            return {"worker": 1}

    class Lender:
        def update(self, processing, ready):
            pass

    monkeypatch.setattr(distributed, "wait", wait)
    plan = runner._Plan(futures={"never done": "task"})
    ledger = Ledger(tmp_path)
    with interrupts.raising_signals({signal.SIGINT: lambda s: KeyboardInterrupt()}):
        with pytest.raises(KeyboardInterrupt):
            runner._follow(Client(), plan, ledger, Lender())
    assert waits == [1]
