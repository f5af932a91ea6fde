import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from romancal_lite import cli
from romancal_lite.stpipe import registry

FAKES_NAME = "romancal_lite_stpipe_test_fakes"


def load_fakes():
    """Import stpipe/_fakes.py once under a fixed module name (registry paths point at it)."""
    if FAKES_NAME not in sys.modules:
        path = Path(__file__).parent / "stpipe" / "_fakes.py"
        spec = importlib.util.spec_from_file_location(FAKES_NAME, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[FAKES_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[FAKES_NAME]


@pytest.fixture
def fakes(monkeypatch):
    fakes = load_fakes()
    monkeypatch.setattr(registry, "STEPS", dict(fakes.REGISTRY["steps"]))
    monkeypatch.setattr(registry, "PIPELINES", dict(fakes.REGISTRY["pipelines"]))
    return fakes


@pytest.fixture
def work(tmp_path, monkeypatch, fakes):
    """A working directory with an input file and reference files."""
    monkeypatch.chdir(tmp_path)
    fakes.write_input(tmp_path / "r0001_WFI01_uncal.asdf", [1, 2])
    (tmp_path / "sat.asdf").write_text("sat")
    (tmp_path / "lin.asdf").write_text("lin")
    return tmp_path


REFS = ["--override-saturation", "sat.asdf", "--override_linearity=lin.asdf"]


def run(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def error_lines(err):
    return [line for line in err.splitlines() if line.startswith("romancal_lite: error:")]


def test_top_level_help(capsys, fakes):
    for argv in ([], ["--help"], ["-h"], ["run", "--help"]):
        status, out, _ = run(capsys, *argv)
        assert status == 0
        assert out.startswith("usage: romancal_lite")
        assert "fake_elp" in out and f"{FAKES_NAME}:FakePipeline" in out
        assert "fake_saturation" in out
        assert "--save_results BOOL" in out and "default: False" in out
        assert "--steps.<step>.<param>" in out
        assert "64 no science data" in out


def test_step_help_lists_every_parameter_with_default(capsys, fakes):
    status, out, _ = run(capsys, "run", "fake_saturation", "--help")
    assert status == 0
    assert out.startswith("usage: romancal_lite run fake_saturation <input>")
    for name in fakes.FakeSaturationStep.spec():
        assert f"--{name} " in out
    assert "Grow saturated pixels by this many pixels (int, >= 0; default: 0)" in out
    assert "(str, one of 'fast', 'slow'; default: 'fast')" in out


def test_pipeline_help_lists_step_parameters(capsys, fakes):
    status, out, _ = run(capsys, "run", "fake_elp", "-h")
    assert status == 0
    assert "--steps.fake_saturation.n_pix_grow_sat INT" in out
    assert "--steps.fake_linearity.scale FLOAT" in out
    assert "--override_linearity STR" in out
    assert "default: 'cal'" in out


def test_version(capsys):
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out.startswith("romancal_lite ")


def test_run_step_saves_result(capsys, work):
    status, _, err = run(
        capsys,
        "run",
        "fake_saturation",
        "r0001_WFI01_uncal.asdf",
        "--n-pix-grow-sat",
        "2",
        "--flag",
        *REFS[:2],
    )
    assert status == 0, err
    saved = json.loads((work / "r0001_WFI01_fake_saturation.asdf").read_text())
    assert saved["data"] == [3, 4]
    assert saved["cal_step"] == {"fake_saturation": "COMPLETE"}
    # the fake reference is not an ASDF file: its pedigree cannot be read
    assert saved["ref_file"] == {
        "saturation": "sat.asdf",
        "pedigree": {"saturation": "UNKNOWN"},
        "source": "the override files given for every reference type (none selected)",
    }
    assert "Step fake_saturation done in" in err


def test_run_pipeline_with_step_parameters_and_output_dir(capsys, work):
    status, _, err = run(
        capsys,
        "run",
        "fake_elp",
        "r0001_WFI01_uncal.asdf",
        "--steps.fake_saturation.n_pix_grow_sat",
        "1",
        "--steps.fake_linearity.scale=3",
        "--output-dir",
        "out",
        "--verbose",
        *REFS,
    )
    assert status == 0, err
    assert sorted(os.listdir(work / "out")) == ["r0001_WFI01_cal.asdf"]
    saved = json.loads((work / "out" / "r0001_WFI01_cal.asdf").read_text())
    assert saved["data"] == [6.0, 9.0]
    assert "DEBUG" in err  # --verbose


def test_precedence_config_files_then_command_line(capsys, work):
    asdf = pytest.importorskip("asdf")
    asdf.AsdfFile(
        {
            "class": "FakePipeline",
            "parameters": {"suffix": "a"},
            "steps": [{"name": "fake_linearity", "parameters": {"scale": 2.0, "suffix": "a"}}],
        }
    ).write_to("a.asdf")
    Path("b.yaml").write_text(
        yaml.safe_dump(
            {"steps": {"fake_linearity": {"scale": 5.0}, "fake_saturation": {"n_pix_grow_sat": 7}}}
        )
    )
    status, _, err = run(
        capsys,
        "run",
        "fake_elp",
        "r0001_WFI01_uncal.asdf",
        "--config",
        "a.asdf",
        "--config=b.yaml",
        "--steps.fake_saturation.n_pix_grow_sat",
        "0",
        *REFS,
    )
    assert status == 0, err
    saved = json.loads((work / "r0001_WFI01_a.asdf").read_text())
    assert saved["data"] == [5.0, 10.0]  # scale 5 from b.yaml, grow 0 from the command line


def test_parameter_file_as_target_and_save_parameters(capsys, work):
    Path("pars.yaml").write_text(
        yaml.safe_dump(
            {"class": "fake_saturation", "parameters": {"n_pix_grow_sat": 4, "suffix": "p"}}
        )
    )
    status, _, err = run(
        capsys,
        "run",
        "pars.yaml",
        "r0001_WFI01_uncal.asdf",
        "--save-parameters",
        "used.yaml",
        *REFS[:2],
    )
    assert status == 0, err
    assert json.loads((work / "r0001_WFI01_p.asdf").read_text())["data"] == [5, 6]
    used = yaml.safe_load(Path("used.yaml").read_text())
    assert used["parameters"]["n_pix_grow_sat"] == 4
    assert used["parameters"]["save_results"] is True


def test_save_results_false_writes_nothing(capsys, work):
    status, _, err = run(
        capsys,
        "run",
        "fake_saturation",
        "r0001_WFI01_uncal.asdf",
        "--save_results",
        "false",
        *REFS[:2],
    )
    assert status == 0, err
    assert not (work / "r0001_WFI01_fake_saturation.asdf").exists()


def test_invalid_parameters_one_line_exit_1(capsys, work):
    status, _, err = run(
        capsys,
        "run",
        "fake_saturation",
        "r0001_WFI01_uncal.asdf",
        "--n_pix_grow_sat",
        "many",
        "--mode",
        "medium",
        "--bogus",
        "1",
    )
    assert status == 1
    assert "Traceback" not in err
    [line] = error_lines(err)
    assert "n_pix_grow_sat: expected an integer, got 'many'" in line
    assert "mode: 'medium' is not one of" in line
    assert "bogus: unknown parameter" in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["run", "jump", "x.asdf"], "unknown pipeline or step 'jump'"),
        (["run", "fake_saturation"], "missing input file"),
        (["run", "fake_saturation", "a.asdf", "b.asdf"], "extra argument"),
        (["run", "fake_saturation", "missing.asdf"], "input file not found: missing.asdf"),
        (
            ["run", "fake_saturation", "r0001_WFI01_uncal.asdf", "--config", "nope.yaml"],
            "parameter file not found",
        ),
        (
            [
                "run",
                "fake_saturation",
                "r0001_WFI01_uncal.asdf",
                "--override-saturation",
                "gone.asdf",
            ],
            "override_saturation: gone.asdf: no such file",
        ),
        (["run", "fake_saturation", "r0001_WFI01_uncal.asdf", "-x"], "unknown option '-x'"),
        (["run", "fake_saturation", "r0001_WFI01_uncal.asdf", "--mode"], "needs a value"),
        (["run", "fake_saturation", "r0001_WFI01_uncal.asdf", "--steps.a.b", "1"], "has no steps"),
    ],
)
def test_expected_errors_exit_1_one_line(capsys, work, argv, message):
    status, _, err = run(capsys, *argv)
    assert status == 1
    assert "Traceback" not in err
    [line] = error_lines(err)
    assert message in line


def test_no_science_data_exit_64(capsys, work):
    status, _, err = run(capsys, "run", "fake_nodata", "r0001_WFI01_uncal.asdf")
    assert status == 64
    assert error_lines(err) == ["romancal_lite: error: all pixels are saturated"]
    assert "Traceback" not in err


def test_unexpected_error_keeps_traceback_exit_1(capsys, work):
    status, _, err = run(capsys, "run", "fake_buggy", "r0001_WFI01_uncal.asdf")
    assert status == 1
    assert "Traceback" in err and "RuntimeError: boom" in err
    assert error_lines(err) == []


def test_unwritable_output_dir_exit_1_nothing_written_input_untouched(capsys, work, fakes):
    inp = work / "r0001_WFI01_uncal.asdf"
    before = (inp.read_bytes(), inp.stat().st_mtime_ns)
    (work / "blocker").write_text("")
    listing = sorted(os.listdir(work))
    calls = fakes.FakeSaturationStep.calls
    status, _, err = run(capsys, "run", "fake_elp", str(inp), "--output-dir", "blocker/out", *REFS)
    assert status == 1
    [line] = error_lines(err)
    assert "output directory" in line
    assert fakes.FakeSaturationStep.calls == calls
    assert sorted(os.listdir(work)) == listing
    assert (inp.read_bytes(), inp.stat().st_mtime_ns) == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_output_dir(capsys, work):
    ro = work / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        status, _, err = run(
            capsys,
            "run",
            "fake_saturation",
            "r0001_WFI01_uncal.asdf",
            "--output-dir",
            "ro",
            *REFS[:2],
        )
    finally:
        ro.chmod(0o755)
    assert status == 1
    assert "not writable" in error_lines(err)[0]
    assert os.listdir(ro) == []


def test_output_would_overwrite_input(capsys, work, fakes):
    inp = fakes.write_input(work / "x_cal.asdf")
    before = inp.read_bytes()
    status, _, err = run(capsys, "run", "fake_elp", "x_cal.asdf", *REFS)
    assert status == 1
    assert "would overwrite the input" in error_lines(err)[0]
    assert inp.read_bytes() == before


def test_python_dash_m_help():
    proc = subprocess.run(
        [sys.executable, "-m", "romancal_lite", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: romancal_lite")
    assert "pipelines:" in proc.stdout and "steps:" in proc.stdout


def test_python_dash_m_error_exit_status(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "romancal_lite", "run", "no_such_step", "x.asdf"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("romancal_lite: error: unknown pipeline or step")
    assert proc.stderr.count("\n") == 1


def test_save_parameters_never_overwrites_input(capsys, work):
    inp = work / "r0001_WFI01_uncal.asdf"
    before = inp.read_bytes()
    status, _, err = run(
        capsys, "run", "fake_saturation", str(inp), "--save-parameters", str(inp), *REFS[:2]
    )
    assert status == 1
    assert "would overwrite the input" in error_lines(err)[0]
    assert inp.read_bytes() == before


def test_skipped_top_level_step_writes_nothing(capsys, work):
    listing = sorted(os.listdir(work))
    status, _, err = run(capsys, "run", "-v", "fake_saturation", "r0001_WFI01_uncal.asdf", "--skip")
    assert status == 0, err
    assert "Step fake_saturation skipped" in err
    assert sorted(os.listdir(work)) == listing


def test_the_program_ignores_signals_once_main_has_returned(monkeypatch):
    """``romancal-lite`` / ``python -m``: nothing to interrupt while Python shuts down."""
    import signal

    monkeypatch.setattr(cli, "main", lambda: 3)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert cli.entry_point() == 3
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_the_console_script_is_the_program_entry_point():
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="romancal-lite")
    assert script.value == "romancal_lite.cli:entry_point"
