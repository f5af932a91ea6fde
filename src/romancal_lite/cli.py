"""Command-line runner: ``python -m romancal_lite run <pipeline|step> <input> [options]``.

Expected errors (`~romancal_lite.errors.RomancalLiteError`) are printed as one line
``romancal_lite: error: <message>`` and exit with the error's ``exit_status`` (1, or 64
for no science data); anything else is a bug and keeps its traceback (exit 1).
SIGINT (Ctrl-C) and SIGTERM end a run with one such line and exit status 130 or 143,
without a traceback. ``run`` writes its outputs all together at the end
(`romancal_lite.datamodels.deferred_outputs`): after an error or an interruption no
output, temporary or half-finished set of outputs is left, and a previous output is
intact.

Parameters are given as ``--<param> VALUE`` or ``--<param>=VALUE`` (``-`` and ``_`` are
interchangeable in names); pipeline steps' parameters as
``--steps.<step>.<param> VALUE``. A boolean parameter given without a value means true.
"""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from romancal_lite.errors import ConfigError, OutputError, RomancalLiteError
from romancal_lite.interrupts import raising_signals

if TYPE_CHECKING:
    from romancal_lite.stpipe.params import Param
    from romancal_lite.stpipe.step import Step

__all__ = ["main"]

PROG = "romancal_lite"
_PARAMETER_FILE_EXTENSIONS = {".asdf", ".yaml", ".yml"}
_BOOL_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0", "t", "f", "y", "n"}

_RUN_OPTIONS = """\
run options:
  --config FILE              parameter file (ASDF or YAML); repeat to layer files,
                             later files win; command-line values win over all files
  --<param> VALUE            set a parameter of the pipeline or step
  --steps.<step>.<param> VALUE
                             set a parameter of one step of a pipeline
  --override-<reftype> PATH  use this reference file instead of the selected one
  --builtin-references       allow romancal_lite's built-in, invented reference
                             files (pedigree DUMMY) for an exposure that is not
                             one of its simulations: NOT a calibration (warned
                             and recorded in the output); without CRDS and
                             without this option such a run stops
  --output-dir DIR           write outputs to DIR (default: current directory)
  --save-parameters FILE     write the parameters used to FILE (ASDF or YAML)
  -v, --verbose              show DEBUG log messages
  -h, --help                 after a pipeline or step name: list all its parameters

  The runner saves the final result (save_results true) unless given
  --save_results false; outputs are named <input basename>_<suffix>.asdf.
"""

_EXIT_STATUS = """\
exit status:
  0 success, 1 error, 64 no science data in the input,
  130 interrupted (SIGINT, Ctrl-C), 143 terminated (SIGTERM)
"""


class _Terminated(BaseException):
    """Raised by the SIGTERM handler so that clean-ups run as for Ctrl-C."""


def _keyboard_interrupt(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt()


def _forget_unhandled_interrupt() -> None:
    """Keep CPython from re-killing the process with SIGINT after we handled Ctrl-C.

    A KeyboardInterrupt that leaves code run through ``PyRun_*`` (Cython module
    initialisation runs some, so an import interrupted there does) marks the interrupt
    "unhandled"; the interpreter then ends by killing itself with SIGINT, whatever exit
    status we return. Running an empty statement the same way clears the mark.
    """
    try:
        import ctypes

        ctypes.pythonapi.PyRun_SimpleString(b"")
    except (ImportError, AttributeError, OSError):  # pragma: no cover - not CPython
        pass


def _interrupted(signame: str, status: int, deferred: bool) -> int:
    _forget_unhandled_interrupt()

    # Modules are looked up, not imported: an interruption during the imports
    # leaves modules half made, and importing again would fail with some other
    # error in place of this line. A module not loaded has done nothing.
    step = sys.modules.get("romancal_lite.stpipe.step")
    name = step.active_input() if step is not None else None
    where = f" while processing {name}" if name else ""
    tail = ""
    if deferred:  # "run" writes its outputs only at the very end (deferred_outputs)
        files = sys.modules.get("romancal_lite.datamodels._files")
        done = files is not None and files.outputs_committed()
        tail = "; its outputs were complete and are kept" if done else "; no output written"
    print(f"{PROG}: error: interrupted by {signame}{where}{tail}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, the error's ``exit_status`` for expected errors, 1 otherwise.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    step = sys.modules.get("romancal_lite.stpipe.step")
    if step is not None:  # a previous call's input (in-process use)
        step._ACTIVE_INPUT[0] = None
    try:
        # SIGTERM unwinds like Ctrl-C (temporaries removed); a Ctrl-C Python drops
        # (raised in a ``__del__``) still ends the run at the next checkpoint
        with raising_signals({signal.SIGINT: _keyboard_interrupt, signal.SIGTERM: _Terminated}):
            return _dispatch(args)
    except RomancalLiteError as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return _interrupted("SIGINT", 130, args[:1] == ["run"])
    except _Terminated:
        return _interrupted("SIGTERM", 143, args[:1] == ["run"])
    except Exception:
        traceback.print_exc()
        return 1


def entry_point() -> int:
    """Run `main` as a program (``romancal-lite``, ``python -m romancal_lite``).

    Once `main` has returned the work is over (outputs complete, or cleaned up): an
    interruption while the interpreter shuts down changes nothing, so SIGINT and
    SIGTERM are ignored from then on (no traceback from the shutdown).

    Returns
    -------
    int
        The exit status.
    """
    try:
        status = main()
    except KeyboardInterrupt:  # in the instant after main returned
        status = 130
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return status


def _dispatch(args: list[str]) -> int:
    if not args or args[0] in {"-h", "--help"}:
        print(_top_help())
        return 0
    if args[0] == "--version":
        from romancal_lite import __version__

        print(f"{PROG} {__version__}")
        return 0
    if args[0] == "run":
        from romancal_lite.datamodels import deferred_outputs

        with deferred_outputs():  # every output appears at the end, or none
            return _run(args[1:])
    if args[0] == "demo":
        return _demo(args[1:])
    if args[0] == "asn":
        return _asn(args[1:])
    if args[0] == "batch":
        return _batch(args[1:])
    raise ConfigError(
        f"unknown command {args[0]!r} (commands: run, batch, demo, asn; see {PROG} --help)"
    )


def _batch(args: list[str]) -> int:
    from romancal_lite.batch.runner import BATCH_OPTIONS, parse_batch_args, run_batch
    from romancal_lite.stpipe import registry
    from romancal_lite.stpipe.log import log_to_stderr

    options, rest = parse_batch_args(list(args))
    cls = registry.resolve("roman_elp")
    parsed = _parse_run_options(cls, rest)
    if parsed["help"] or not args:
        print(_BATCH_USAGE + "\n" + BATCH_OPTIONS + "\n" + _RUN_OPTIONS + "\n" + _BATCH_STATUS)
        return 0
    if not parsed["positionals"]:
        raise ConfigError(f"missing input (usage: {PROG} batch <inputs>... [options])")
    if parsed["save_parameters"]:
        raise ConfigError("--save-parameters is for 'run'; a batch records its parameters "
                          "in batch_ledger.json")
    with log_to_stderr(verbose=parsed["verbose"]):
        return run_batch(
            parsed["positionals"], options, config_files=parsed["config"],
            parameters=parsed["parameters"], builtin_references=parsed["builtin_references"],
            command=[PROG, "batch", *args],
        )


_BATCH_USAGE = f"""\
usage: {PROG} batch <input>... [batch options] [run options]

Run roman_elp on every exposure-detector of the inputs (files, globs, directories of
*_uncal.asdf, association files) on a Dask cluster, align each association (the
detectors of one exposure, or an association file's members) with one tweakreg run,
and optionally make each association's mosaic (roman_mos). Pipeline and step
parameters are given as to 'run'. The output directory gets every product,
batch_ledger.json (the state of every task) and report.html.
"""

_BATCH_STATUS = """\
exit status:
  0 every task succeeded, 1 any failed (see the summary, the ledger and the report),
  130 interrupted (SIGINT, Ctrl-C), 143 terminated (SIGTERM): --resume finishes the run
"""


def _asn(args: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog=f"{PROG} asn",
        description="Write an association (romancal's asn_from_list format) of calibrated "
        "images, e.g. the input of roman_mos.",
    )
    parser.add_argument("-o", "--output-file", required=True, help="the *_asn.json to write")
    parser.add_argument("--product-name", required=True, help="name of the combined product")
    parser.add_argument(
        "-t", "--target", default="None", help="target (skycell) name (default: None)"
    )
    parser.add_argument("--data-release-id", default="p", help="data release id (default: p)")
    parser.add_argument(
        "--tweakreg-catalogs", "--_tweakreg-catalogs", action="store_true",
        dest="tweakreg_catalogs",
        help="name each member's <name>_cat.parquet catalog even if it does not exist "
        "(default: only those that exist)",
    )
    parser.add_argument("filelist", nargs="+", help="the member files")
    ns = parser.parse_args(args)
    from romancal_lite.associations import asn_from_list, write_asn

    out = Path(ns.output_file)
    tree = asn_from_list(
        ns.filelist,
        ns.product_name,
        target=ns.target,
        data_release_id=ns.data_release_id,
        tweakreg_catalogs=True if ns.tweakreg_catalogs else None,
        relative_to=out.parent if str(out.parent) else ".",
    )
    write_asn(tree, out)
    print(f"{out}: {len(tree['products'][0]['members'])} members")
    return 0


def _demo(args: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog=f"{PROG} demo",
        description="Simulate a Roman WFI exposure (once), calibrate it with roman_elp, "
        "write the _cal file and a PNG preview, and compare with the simulated truth. "
        "With --mosaic: simulate a dithered set of exposures, calibrate and align them, "
        "combine them with roman_mos, preview the mosaic and compare it with the truth.",
    )
    parser.add_argument(
        "--mosaic", action="store_true",
        help="the mosaic demo: a dithered set through roman_elp and roman_mos",
    )
    parser.add_argument(
        "--output-dir", default=None,
        help="output directory (default romancal_lite_demo, with --mosaic "
        "romancal_lite_mosaic_demo)",
    )
    parser.add_argument(
        "--shape", nargs=2, type=int, default=None, metavar=("NY", "NX"),
        help="full read-out shape of each exposure (default 4096 4096, with --mosaic "
        "2048 2048)",
    )
    parser.add_argument(
        "--read-pattern", default=None, help="named read pattern (ma4: 9 resultants, default;"
        " ma6: 15; ma109: 10)"
    )
    parser.add_argument("--seed", type=int, default=42, help="simulation seed")
    parser.add_argument(
        "--dithers", type=int, default=None,
        help="with --mosaic: number of dithered exposures, 2 to 8 (default 4)",
    )
    parser.add_argument(
        "--ramp-jumps", action="store_true",
        help="with --mosaic: keep roman_elp's in-ramp jump detection (default off, so that "
        "the cosmic rays reach the _cal images and outlier_detection removes them)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show DEBUG log messages")
    ns = parser.parse_args(args)
    from romancal_lite.stpipe.log import log_to_stderr

    if not ns.mosaic:
        if ns.dithers is not None or ns.ramp_jumps:
            raise ConfigError("--dithers and --ramp-jumps are options of demo --mosaic")
        from romancal_lite.demo import run_demo

        with log_to_stderr(verbose=ns.verbose):
            result = run_demo(
                ns.output_dir or "romancal_lite_demo",
                shape=tuple(ns.shape or (4096, 4096)),
                read_pattern=ns.read_pattern,
                seed=ns.seed,
            )
        print(
            f"simulated in {result['simulate_s']:.1f} s, calibrated in"
            f" {result['calibrate_s']:.1f} s"
        )
        return 0
    from romancal_lite.demo_mosaic import (
        MOSAIC_DITHERS,
        MOSAIC_SHAPE,
        check_mosaic_options,
        run_mosaic_demo,
    )

    dithers = MOSAIC_DITHERS if ns.dithers is None else ns.dithers
    try:
        shape = check_mosaic_options(ns.shape or MOSAIC_SHAPE, dithers)
    except ValueError as exc:
        raise ConfigError(f"demo --mosaic: {exc}") from None
    with log_to_stderr(verbose=ns.verbose):
        result = run_mosaic_demo(
            ns.output_dir or "romancal_lite_mosaic_demo",
            shape=shape,
            dithers=dithers,
            seed=ns.seed,
            ramp_jumps=ns.ramp_jumps,
            read_pattern=ns.read_pattern,
        )
    print(
        f"simulated in {result['simulate_s']:.1f} s, calibrated in"
        f" {result['calibrate_s']:.1f} s, combined in {result['mosaic_s']:.1f} s, scored in"
        f" {result['score_s']:.1f} s"
    )
    return 0


# ---------------------------------------------------------------------- help


def _top_help() -> str:
    from romancal_lite.stpipe import registry
    from romancal_lite.stpipe.step import Step

    lines = [
        f"usage: {PROG} [-h] [--version] run <pipeline|step|parameter-file> <input> [options]",
        "",
        "Calibrate Roman WFI exposures (romancal_lite).",
        "",
        "commands:",
        "  run    run a pipeline or a step on an input file and save the result",
        "  batch  run roman_elp (and roman_mos) on many exposures on a Dask cluster"
        " (see 'batch --help')",
        "  demo   simulate an exposure, calibrate it, write the _cal file and a PNG preview",
        "         (demo --mosaic: a dithered set through roman_elp and roman_mos)",
        "  asn    write an association of _cal files: asn -o x_asn.json --product-name NAME"
        " [-t TARGET] files...",
        "",
        _RUN_OPTIONS,
        "parameters of every pipeline and step (see 'run <name> --help' for all):",
        *_format_params(Step.spec(), ""),
        "",
        "pipelines:",
        *_format_registry(registry.PIPELINES),
        "",
        "steps:",
        *_format_registry(registry.STEPS),
        "",
        _EXIT_STATUS,
    ]
    return "\n".join(lines)


def _format_registry(table: dict[str, str]) -> list[str]:
    if not table:
        return ["  (none registered)"]
    width = max(len(alias) for alias in table)
    return [f"  {alias:<{width}}  {path}" for alias, path in sorted(table.items())]


def _format_params(spec: dict[str, Param], prefix: str) -> list[str]:
    lines = []
    for name, param in spec.items():
        lines.append(f"  --{prefix}{name} {param.type.__name__.upper()}")
        text = param.help or ""
        detail = f"({param.describe()}; default: {param.default!r})"
        lines.append(f"      {text} {detail}".rstrip() if text else f"      {detail}")
    return lines


def _class_help(cls: type[Step]) -> str:
    from romancal_lite.stpipe.pipeline import Pipeline

    name = cls.class_alias or cls.__name__
    doc = (cls.__doc__ or "").strip().splitlines()
    kind = "pipeline" if issubclass(cls, Pipeline) else "step"
    lines = [
        f"usage: {PROG} run {name} <input> [options]",
        "",
        f"{kind} {name} ({cls.class_path()})" + (f": {doc[0]}" if doc else ""),
        "",
        _RUN_OPTIONS,
        f"parameters of {name}:",
        *_format_params(cls.spec(), ""),
    ]
    if issubclass(cls, Pipeline):
        for step_name, step_cls in cls.step_defs.items():
            lines += ["", f"parameters of step {step_name} ({step_cls.class_path()}):"]
            lines += _format_params(step_cls.spec(), f"steps.{step_name}.")
    lines += ["", _EXIT_STATUS]
    return "\n".join(lines)


# ---------------------------------------------------------------------- run


def _run(args: list[str]) -> int:
    args = list(args)
    from romancal_lite.stpipe import registry

    leading = []
    while args and args[0] in {"-v", "--verbose"}:
        leading.append(args.pop(0))
    if not args or args[0] in {"-h", "--help"}:
        print(_top_help())
        return 0
    target, rest = args[0], [*args[1:], *leading]
    if target.startswith("-"):
        raise ConfigError(f"expected a pipeline or step name after 'run', got {target!r}")
    config_files: list[str] = []
    if Path(target).suffix.lower() in _PARAMETER_FILE_EXTENSIONS and Path(target).is_file():
        from romancal_lite.stpipe.config import load_parameter_file

        file_class = load_parameter_file(target).get("class")
        if not file_class:
            raise ConfigError(f"parameter file {target} has no 'class'")
        cls = registry.resolve(str(file_class))
        config_files.append(target)
    else:
        cls = registry.resolve(target)

    parsed = _parse_run_options(cls, rest)
    if parsed["help"]:
        print(_class_help(cls))
        return 0
    positionals = parsed["positionals"]
    if not positionals:
        raise ConfigError(f"missing input file (usage: {PROG} run {target} <input> [options])")
    if len(positionals) > 1 and not cls.accepts_many:
        extra = " ".join(positionals[1:])
        raise ConfigError(f"expected one input file, got extra argument(s): {extra}")

    from romancal_lite.stpipe.log import log_to_stderr

    with log_to_stderr(verbose=parsed["verbose"]):
        config = cls.build_config(
            [*config_files, *parsed["config"]],
            base={"parameters": {"save_results": True}},
            **parsed["parameters"],
        )
        step = cls.from_config(config)
        save_parameters = parsed["save_parameters"]
        if save_parameters and any(
            Path(save_parameters).resolve() == Path(p).resolve() for p in positionals
        ):
            raise OutputError(f"--save-parameters {save_parameters} would overwrite the input")
        from romancal_lite.references import allow_builtin_references

        with allow_builtin_references(parsed["builtin_references"]):
            step.run(positionals[0] if len(positionals) == 1 else positionals)
        if save_parameters:
            step.export_config(save_parameters)
    return 0


def _parse_run_options(cls: type[Step], tokens: list[str]) -> dict[str, Any]:
    """Split the tokens after ``run <name>`` into framework options, parameters, inputs."""
    result: dict[str, Any] = {
        "help": False,
        "verbose": False,
        "config": [],
        "save_parameters": None,
        "builtin_references": False,
        "parameters": {},
        "positionals": [],
    }
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token in {"-h", "--help"}:
            result["help"] = True
            continue
        if token in {"-v", "--verbose"}:
            result["verbose"] = True
            continue
        if not token.startswith("--") or token == "--":
            if token.startswith("-") and token != "-":
                raise ConfigError(f"unknown option {token!r}")
            result["positionals"].append(token)
            continue
        key, has_value, value = token[2:].partition("=")
        key = key.replace("-", "_")
        if key == "builtin_references" and not has_value:
            result["builtin_references"] = True
            continue
        if key in {"config", "save_parameters"}:
            if not has_value:
                if i >= len(tokens):
                    raise ConfigError(f"--{key.replace('_', '-')} needs a file name")
                value, i = tokens[i], i + 1
            if key == "config":
                result["config"].append(value)
            else:
                result["save_parameters"] = value
            continue
        if not has_value:
            if _is_bool(cls, key) and (i >= len(tokens) or tokens[i].lower() not in _BOOL_WORDS):
                value = "true"
            elif i >= len(tokens):
                raise ConfigError(f"option --{key} needs a value")
            else:
                value, i = tokens[i], i + 1
        result["parameters"][key] = value
    return result


def _is_bool(cls: type[Step], key: str) -> bool:
    parts = key.split(".")
    spec: dict[str, Param] | None = None
    if len(parts) == 1:
        spec = cls.spec()
    elif len(parts) == 3 and parts[0] == "steps":
        step_cls = getattr(cls, "step_defs", {}).get(parts[1])
        spec = step_cls.spec() if step_cls is not None else None
    param = (spec or {}).get(parts[-1])
    return param is not None and param.type is bool
