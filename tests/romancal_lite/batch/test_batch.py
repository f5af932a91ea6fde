"""``romancal-lite batch`` on a real Dask cluster (LocalCluster of 2 worker processes, and
a scheduler and worker started here with ``dask scheduler`` / ``dask worker``).

One simulated set (2 detectors x 2 dithered exposures, 128 x 256 pixels, sharing one
star field whose table is the reference catalog) gives two associations of two
exposure-detectors; a truncated copy of one exposure is a third, broken, input.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _compare import differences

from romancal_lite import cli
from romancal_lite.batch import Ledger, expand_inputs, parse_batch_args
from romancal_lite.errors import ConfigError
from romancal_lite.references import generate_cache
from romancal_lite.simulate import simulate_set

SHAPE = (128, 256)
VISIT = "r0000101001001001001"
FAST = {"decay_signals": False, "read_pattern": [[1], [2], [3, 4], [5, 6]]}
SRC = str(Path(__file__).resolve().parents[3] / "src")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The set, its reference catalog, and the environment the workers inherit."""
    tmp = tmp_path_factory.mktemp("batch")
    cache = generate_cache(tmp / "crds", full_shape=SHAPE)
    saved = dict(os.environ)
    for name in ("CRDS_PATH", "CRDS_SERVER_URL", "CRDS_MODE", "CRDS_CONTEXT"):
        os.environ.pop(name, None)
    os.environ["ROMANCAL_LITE_CRDS_CACHE"] = str(cache.root if hasattr(cache, "root") else cache)
    os.environ["PYTHONPATH"] = os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])
    inputs = tmp / "inputs"
    inputs.mkdir()
    result = simulate_set(inputs, detectors="WFI01,WFI02", dithers=2, shape=SHAPE, n_stars=60,
                          seed=3, **FAST)
    bad = inputs / f"{VISIT}_0003_wfi01_uncal.asdf"
    data = result.files[0].read_bytes()
    bad.write_bytes(data[: len(data) // 3])  # truncated: a data error, not retried
    try:
        yield {"tmp": tmp, "inputs": inputs, "files": result.files, "bad": bad,
               "refcat": str(result.stars)}
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _elp_args(env, out):
    # --builtin-references: roman_mos does not recognise _cal files of simulations as
    # such (roman_elp does, and its products are the same with or without the option)
    return ["--steps.tweakreg.abs_refcat", env["refcat"], "--output-dir", str(out),
            "--builtin-references"]


@pytest.fixture(scope="module")
def batch_run(env):
    """One batch of everything (2 local workers), with one transient fault injected."""
    out = env["tmp"] / "batch"
    counter = env["tmp"] / "faults.count"
    os.environ["ROMANCAL_LITE_BATCH_FAULTS"] = "_0002_wfi02:1"
    os.environ["ROMANCAL_LITE_BATCH_FAULTS_FILE"] = str(counter)
    try:
        status = cli.main(["batch", str(env["inputs"]), *_elp_args(env, out), "--workers", "2",
                           "--dashboard-address", "none", "--retries", "2", "--mosaic"])
    finally:
        del os.environ["ROMANCAL_LITE_BATCH_FAULTS"]
    return {"out": out, "status": status, "counter": counter}


@pytest.fixture(scope="module")
def serial(env):
    """``romancal-lite run roman_elp`` on each exposure's detectors, in this process."""
    out = env["tmp"] / "serial"
    for exposure in ("0001", "0002"):
        files = [str(f) for f in env["files"] if f"_{exposure}_" in f.name]
        assert cli.main(["run", "roman_elp", *files, *_elp_args(env, out)]) == 0
    return out


def test_outputs_equal_serial_run_and_bad_input_is_isolated(env, batch_run, serial):
    out = batch_run["out"]
    assert batch_run["status"] == 1  # the truncated exposure failed
    names = sorted(p.name for p in serial.iterdir())
    assert len(names) == 16  # 4 exposure-detectors x (_cal, _wcs, _cat, _segm)
    for name in names:
        assert differences(serial / name, out / name) == [], name
    # the comparison sees a difference where there is one
    assert differences(serial / names[0], serial / names[4])
    ledger = json.loads((out / "batch_ledger.json").read_text())
    tasks = ledger["tasks"]
    bad = tasks[f"elp:{VISIT}_0003_wfi01"]
    assert bad["status"] == "failed" and "0003_wfi01" in bad["error"]
    assert "Traceback" not in bad["error"] and "\n" not in bad["error"]
    assert not list(out.glob("*_0003_wfi*"))  # nothing written for it
    for exposure in ("_0001", "_0002"):
        assert tasks["align:" + VISIT + exposure]["status"] == "done"
        assert len(tasks["align:" + VISIT + exposure]["outputs"]) == 2  # aligned.pkl each
        for detector in ("_wfi01", "_wfi02"):  # each member's products: its own task
            write = tasks["write:" + VISIT + exposure + detector]
            assert write["status"] == "done" and len(write["outputs"]) == 4
            assert write["worker"] and write["time_s"] > 0
    assert not any(p.name.startswith(".") and p.name != ".romancal_lite-batch"
                   for p in out.iterdir())
    assert not (out / ".romancal_lite-batch" / "stage").exists() or not any(
        (out / ".romancal_lite-batch" / "stage").iterdir())
    # the transient fault was retried by Dask (once), the data error was not retried
    assert batch_run["counter"].read_text() == "1"
    logs = out / ".romancal_lite-batch" / "logs"
    assert (logs / f"{VISIT}_0002_wfi02.log").read_text().count("Task attempt") == 2
    assert (logs / f"{VISIT}_0003_wfi01.log").read_text().count("Task attempt") == 1
    # --mosaic: roman_mos on each association's _cal files, as run would make it
    assert tasks[f"mosaic:{VISIT}_0001"]["status"] == "done"
    assert tasks[f"mosaic:{VISIT}_0003"]["status"] == "skipped"  # no _cal to combine
    asn = out / f"{VISIT}_0001_mosaic_asn.json"
    mosaic = env["tmp"] / "serial_mosaic"
    assert cli.main(["run", "roman_mos", str(asn), "--output-dir", str(mosaic),
                     "--builtin-references"]) == 0
    for name in (f"{VISIT}_0001_coadd.asdf", f"{VISIT}_0001_cat.parquet"):
        assert differences(mosaic / name, out / name) == [], name
    for record in tasks.values():
        if record["kind"] == "calibrate":
            assert record["peak_memory_mb"] > 0 and record["time_s"] > 0
            assert record["metrics"]["sources"] > 5
            assert 0.3 < record["metrics"]["sky"] < 2.0  # DN/s of a 1 e/s sky


def test_second_batch_needs_resume_or_force(env, batch_run, capsys):
    status = cli.main(["batch", str(env["inputs"]), *_elp_args(env, batch_run["out"])])
    assert status == 1
    err = capsys.readouterr().err
    assert "--resume" in err and "Traceback" not in err


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_in_headless_chromium(env, batch_run, tmp_path):
    report = batch_run["out"] / "report.html"
    text = report.read_text()
    assert text.count("<tr class=") == 5 + 3  # 5 exposure-detectors, 3 mosaics
    thumbs = sorted((batch_run["out"] / "report_files").glob("*.png"))
    assert len(thumbs) == 4 + 2  # and the two mosaics made
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium found (chromium, chromium-browser, google-chrome): the "
                    "report is checked as text only; install Debian's chromium to run this")
    shot = tmp_path / "report.png"
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--allow-file-access-from-files", "--window-size=1400,900"]
    url = report.resolve().as_uri()
    subprocess.run([*flags, f"--screenshot={shot}", url], check=True, capture_output=True,
                   timeout=120)
    assert shot.stat().st_size > 10_000
    dom = subprocess.run([*flags, "--dump-dom", url], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    assert f"{VISIT}_0001_wfi01" in dom and "failed" in dom and "done" in dom
    assert dom.count("<img") == 6 and "Mosaics" in dom
    # the screenshot shows the thumbnails (decoded by the browser: not blank)
    import numpy as np

    Image = pytest.importorskip("PIL.Image", reason="Pillow reads the screenshot back")

    pixels = np.asarray(Image.open(shot).convert("L"), float)
    assert pixels.std() > 10


def _wait_for(predicate, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_interrupted_then_resumed_does_only_the_missing_work(env, tmp_path):
    out = tmp_path / "out"
    inputs = [str(f) for f in env["files"]]
    cmd = [sys.executable, "-m", "romancal_lite", "batch", *inputs, *_elp_args(env, out),
           "--workers", "2", "--dashboard-address", "none"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ledger_path = out / "batch_ledger.json"

    def some_done():
        try:
            tasks = json.loads(ledger_path.read_text())["tasks"]
        except (OSError, ValueError):
            return False
        return any(t.get("status") == "done" for t in tasks.values())

    assert _wait_for(some_done, 120), proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted by SIGINT" in err and "Traceback" not in err
    # no partial output: no temporary file, every product complete or absent
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    first = json.loads(ledger_path.read_text())["tasks"]
    done_before = {k: v for k, v in first.items() if v.get("status") == "done"}
    assert done_before and len(done_before) < len(first)
    assert any(v.get("status") == "interrupted" for v in first.values())

    assert cli.main(["batch", *inputs, *_elp_args(env, out), "--workers", "2",
                     "--dashboard-address", "none", "--resume"]) == 0
    second = json.loads(ledger_path.read_text())["tasks"]
    assert all(v["status"] == "done" for v in second.values())
    for task_id, record in done_before.items():  # not run again
        assert second[task_id]["finished"] == record["finished"]
    outputs = {p.name: p.stat().st_mtime_ns for p in out.glob(f"{VISIT}_*")}
    assert len(outputs) == 16

    assert cli.main(["batch", *inputs, *_elp_args(env, out), "--workers", "2",
                     "--dashboard-address", "none", "--resume"]) == 0
    third = json.loads(ledger_path.read_text())
    assert {k: v["finished"] for k, v in third["tasks"].items()} == {
        k: v["finished"] for k, v in second.items()}
    assert {p.name: p.stat().st_mtime_ns for p in out.glob(f"{VISIT}_*")} == outputs


def test_existing_scheduler_and_worker(env, batch_run, tmp_path):
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    sched_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0",
                                  "--dashboard-address", ":0", "--scheduler-file",
                                  str(sched_file)], stderr=subprocess.DEVNULL)
    worker = None
    try:
        assert _wait_for(sched_file.exists, 60)
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                                   "--scheduler-file", str(sched_file), "--nworkers", "1",
                                   "--nthreads", "1"], stderr=subprocess.DEVNULL)
        address = json.loads(sched_file.read_text())["address"]
        # the simulator runs its members on the same cluster: the same files
        from distributed import Client

        sims = tmp_path / "sims"
        sims.mkdir()
        with Client(address) as client:
            again = simulate_set(sims, detectors="WFI01,WFI02", dithers=2, shape=SHAPE,
                                 n_stars=60, seed=3, executor=client, **FAST)
            assert {w["host"] for w in client.scheduler_info()["workers"].values()}
        assert [f.name for f in again.files] == [f.name for f in env["files"]]
        for mine, theirs in zip(again.files, env["files"], strict=True):
            assert differences(mine, theirs) == [], mine.name
        files = [str(f) for f in env["files"] if "_0002_" in f.name]
        out = tmp_path / "out"
        assert cli.main(["batch", *files, *_elp_args(env, out), "--scheduler", address]) == 0
        ledger = json.loads((out / "batch_ledger.json").read_text())
        workers = {t["worker"] for t in ledger["tasks"].values()}
        assert len(workers) == 1 and None not in workers
        for name in sorted(p.name for p in out.glob(f"{VISIT}_0002_*")):
            assert differences(batch_run["out"] / name, out / name) == [], name
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)


# ---------------------------------------------------------------------- no cluster


def test_inputs_are_grouped_by_exposure(env):
    groups = expand_inputs([str(env["inputs"])])
    assert [g.name for g in groups] == [f"{VISIT}_0001", f"{VISIT}_0002", f"{VISIT}_0003"]
    assert [len(g.members) for g in groups] == [2, 2, 1]
    with pytest.raises(ConfigError, match="twice"):
        expand_inputs([str(env["inputs"]), str(env["files"][0])])
    with pytest.raises(ConfigError, match="no file matches"):
        expand_inputs([str(env["inputs"] / "*_9999_*.asdf")])


def test_batch_options():
    options, rest = parse_batch_args(["a.asdf", "--workers", "3", "--resume", "--x", "1"])
    assert options.workers == 3 and options.resume and rest == ["a.asdf", "--x", "1"]
    with pytest.raises(ConfigError, match="exclude"):
        parse_batch_args(["--resume", "--force"])
    with pytest.raises(ConfigError, match="integer"):
        parse_batch_args(["--workers", "0"])


def test_ledger_completeness_follows_the_outputs(tmp_path):
    product = tmp_path / "x_cal.asdf"
    product.write_bytes(b"1234")
    from romancal_lite.batch._tasks import file_record

    ledger = Ledger(tmp_path)
    ledger.set("elp:x", status="done", outputs=[file_record(product)])
    ledger.save()
    again = Ledger(tmp_path)
    again.load()
    assert again.complete("elp:x")
    product.write_bytes(b"12345")  # changed since: not complete
    assert not again.complete("elp:x")
    product.unlink()
    assert not again.complete("elp:x")
    again.set("elp:x", status="failed")
    assert not again.complete("elp:x")


def test_transient_and_data_errors_are_told_apart():
    import errno

    from romancal_lite.batch._tasks import _is_transient
    from romancal_lite.errors import InputFileError

    assert _is_transient(OSError(errno.EIO, "I/O error"))
    assert _is_transient(OSError(errno.ESTALE, "stale file handle"))
    assert not _is_transient(OSError(errno.ENOENT, "no such file"))
    assert not _is_transient(InputFileError("x.asdf: truncated file"))
    assert not _is_transient(ValueError("a bug"))
    try:
        try:
            raise OSError(errno.EIO, "I/O error")
        except OSError as exc:
            raise InputFileError("x.asdf: cannot read") from exc
    except InputFileError as wrapped:
        assert _is_transient(wrapped)  # an expected error caused by a flaky read


def test_resume_of_an_association_redoes_only_what_is_missing(tmp_path):
    """calibrate -> align -> write per member: --resume plans only the missing part."""
    from romancal_lite.batch import runner
    from romancal_lite.batch._plan import Group, Member
    from romancal_lite.batch._tasks import ALIGNED_NAME, file_record

    out = tmp_path / "out"
    work = out / runner.WORK_DIR
    names = [f"{VISIT}_0001_wfi01", f"{VISIT}_0001_wfi02"]
    group = Group(f"{VISIT}_0001", [Member(str(tmp_path / f"{n}_uncal.asdf")) for n in names])
    ledger = Ledger(out)

    def done(task_id, *files):
        for f in files:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"x")
        ledger.set(task_id, status="done", outputs=[file_record(f) for f in files])

    stages = [work / "stage" / n for n in names]
    for name, stage in zip(names, stages, strict=True):
        done(f"calibrate:{name}", stage / "00000.asdf", stage / "products.pkl")
        done(f"write:{name}", out / f"{name}_cal.asdf")
    done(f"align:{group.name}", *(stage / ALIGNED_NAME for stage in stages))
    options = runner.BatchOptions(resume=True)

    def plan():
        plan = runner._submit(None, [group], ledger, {"output_dir": str(out)}, options, work)
        return sorted(plan.futures)

    assert plan() == []  # every member written: nothing to do
    (out / f"{names[1]}_cal.asdf").unlink()  # one member's products lost
    (stages[0] / ALIGNED_NAME).unlink()  # (what only the written member needed: not used)
    assert plan() == [f"write:{names[1]}"]  # alignment and calibrations reused
    (stages[1] / ALIGNED_NAME).unlink()  # and what the alignment left for it
    assert plan() == [f"align:{group.name}", f"write:{names[1]}"]
    (stages[0] / "products.pkl").unlink()  # and one member's calibration
    assert plan() == [f"align:{group.name}", f"calibrate:{names[0]}", f"write:{names[1]}"]
    options.resume = False  # --force: everything
    assert len(plan()) == 5


def test_elp_task_metrics_from_memory_equal_those_of_the_written_file(env, tmp_path):
    """elp_task measures the image it has in memory, not the file read back: same numbers."""
    from romancal_lite.batch import _tasks
    from romancal_lite.stpipe import registry

    out = tmp_path / "out"
    parsed = cli._parse_run_options(registry.resolve("roman_elp"), _elp_args(env, out))
    spec = {"inputs": [str(env["files"][0])], "output_dir": str(out), "config_files": [],
            "parameters": parsed["parameters"], "builtin_references": True,
            "thumbnail": str(tmp_path / "memory.png")}
    result = _tasks.elp_task(spec)
    assert result["status"] == "done", result["error"]
    assert result["cpu_s"] > 0
    cal = next(Path(o["path"]) for o in result["outputs"] if o["path"].endswith("_cal.asdf"))
    from_file = _tasks._cal_metrics(cal, str(tmp_path / "file.png"))
    memory = dict(result["metrics"])
    assert memory.pop("thumbnail") == spec["thumbnail"]
    from_file.pop("thumbnail")
    assert memory == from_file
    assert memory["sources"] > 5 and memory["tweakreg"] == "COMPLETE"
    assert (tmp_path / "memory.png").read_bytes() == (tmp_path / "file.png").read_bytes()


def test_a_worker_over_its_memory_limit_is_recorded_and_the_run_goes_on(env, tmp_path):
    """Dask's nanny terminates a worker past its memory limit and starts a new one; the
    task that did it is recorded failed after Dask's allowed failures, the others finish."""
    import dask

    from romancal_lite.batch._tasks import MEMORY_FAULT_ENV

    out = tmp_path / "out"
    # one detector of each exposure: two associations of one member (elp tasks)
    files = [str(f) for f in env["files"] if f.name.endswith("_wfi01_uncal.asdf")]
    assert len(files) == 2
    os.environ[MEMORY_FAULT_ENV] = "_0001_wfi01"
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
            status = cli.main(["batch", *files, *_elp_args(env, out), "--workers", "2",
                               "--memory-limit", "2GB", "--retries", "0",
                               "--dashboard-address", "none"])
    finally:
        del os.environ[MEMORY_FAULT_ENV]
    assert status == 1
    tasks = json.loads((out / "batch_ledger.json").read_text())["tasks"]
    hog = tasks[f"elp:{VISIT}_0001_wfi01"]
    assert hog["status"] == "failed" and "died repeatedly" in hog["error"], hog
    assert tasks[f"elp:{VISIT}_0002_wfi01"]["status"] == "done"
    assert sorted(p.name for p in out.glob(f"{VISIT}_*")) == [
        f"{VISIT}_0002_wfi01_{s}" for s in ("cal.asdf", "cat.parquet", "segm.asdf",
                                            "wcs.asdf")]
