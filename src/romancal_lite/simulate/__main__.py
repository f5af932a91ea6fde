"""Command line: ``python -m romancal_lite.simulate OUTPUT [options]``.

Writes a simulated Level 1 exposure with its truth (as :func:`write_exposure` does);
with ``--detectors``, ``--dithers``, ``--dither-pattern`` or ``--sky-offsets``, OUTPUT is
a directory that receives a set (`romancal_lite.simulate.sets.simulate_set`): every
detector of every dithered exposure, and the set's truth tables.  Expected errors
(bad options, reference or output problems) print one line
``error: ...`` to stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import OutputError, RomancalLiteError
from ._exposure import DEFAULT_SEED, simulate_exposure, write_model_with_truth
from ._patterns import DEFAULT_READ_PATTERN, READ_PATTERNS
from .astrometry import GAIA_MAG_LIMIT, refcat_path_for
from .sets import DEFAULT_DITHER_STEP, DEFAULT_VISIT_ID, simulate_set

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 1 (argparse default: 2)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _read_pattern(text: str) -> str | list[list[int]]:
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise argparse.ArgumentTypeError(f"not a JSON list of lists: {text!r}") from None
    return text


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the command line.

    Returns
    -------
    argparse.ArgumentParser
        The parser.
    """
    presets = ", ".join(f"{k} ({t.n_resultants} resultants)" for k, t in READ_PATTERNS.items())
    p = _Parser(
        prog="python -m romancal_lite.simulate",
        description="Simulate a Roman WFI Level 1 (_uncal) exposure with known truth.",
    )
    p.add_argument("output", help="output ASDF file, e.g. demo_wfi01_uncal.asdf (a "
                   "directory for a set)")
    p.add_argument("--shape", nargs=2, type=int, metavar=("NY", "NX"), default=(4096, 4096),
                   help="full read-out size incl. the 4-pixel border (default 4096 4096)")
    p.add_argument("--read-pattern", type=_read_pattern, default=DEFAULT_READ_PATTERN,
                   help=f"MA table preset: {presets}; or a JSON list of lists of read numbers "
                   f"(default {DEFAULT_READ_PATTERN})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"(default {DEFAULT_SEED})")
    p.add_argument("--detector", default="WFI01", help="WFI01..WFI18 (default WFI01)")
    p.add_argument("--optical-element", "--filter", dest="optical_element", default="F158",
                   help="F062..F213, GRISM, PRISM, DARK (default F158)")
    p.add_argument("--exposure-type", default="WFI_IMAGE", help="(default WFI_IMAGE)")
    p.add_argument("--start-time", default="2026-01-01T00:00:00", help="UTC ISO time")
    p.add_argument("--n-stars", type=int, default=None,
                   help="number of stars (default 1500 per full frame, scaled by area)")
    p.add_argument("--sky", type=float, default=1.0, help="sky rate, e/s/pixel (default 1)")
    p.add_argument("--cr-rate", type=float, default=2.0e-5,
                   help="cosmic-ray hits per pixel per second (default 2e-5)")
    p.add_argument("--saturate-all", action="store_true",
                   help="every science pixel saturates before its first read")
    p.add_argument("--no-poisson", dest="poisson", action="store_false",
                   help="expected charge instead of Poisson draws")
    p.add_argument("--no-read-noise", dest="read_noise", action="store_false",
                   help="no read noise")
    p.add_argument("--references", default="crds",
                   help="crds (select like the pipeline; default) or builtin "
                   "(built-in content for this shape, no files)")
    p.add_argument("--pointing-error", nargs=3, type=float, default=None,
                   metavar=("DRA_ARCSEC", "DDEC_ARCSEC", "ROLL_ARCMIN"),
                   help="record meta.wcsinfo's reference point DRA arcsec east and DDEC north "
                   "of the true one and its roll ROLL arcmin larger (the stars stay where "
                   "they are; default: no error)")
    p.add_argument("--proper-motion", type=float, default=0.0,
                   help="rms stellar proper motion per axis, mas/yr (default 0)")
    p.add_argument("--parallax", type=float, default=0.0,
                   help="mean stellar parallax, mas (default 0)")
    p.add_argument("--refcat-mag-limit", type=float, default=GAIA_MAG_LIMIT,
                   help=f"faintest magnitude in the reference catalog (default {GAIA_MAG_LIMIT})")
    p.add_argument("--refcat-error-scale", type=float, default=1.0,
                   help="scale of the Gaia-like catalog position errors (0: exact; default 1)")
    p.add_argument("--no-refcat", dest="refcat", action="store_false",
                   help="do not write the <base>_refcat.ecsv reference catalog")
    p.add_argument("--preview", metavar="PNG", default=None,
                   help="also write a PNG of the truth rate image (what _cal should show)")
    g = p.add_argument_group(
        "sets", "any of these makes OUTPUT a directory receiving a set: "
        "r<VISIT_ID>_<exposure>_wfiNN_uncal.asdf per member, "
        "r<VISIT_ID>_set_stars.ecsv and r<VISIT_ID>_set_exposures.ecsv (truth)")
    g.add_argument("--detectors", default=None,
                   help="'all' (the 18 detectors of the pointing) or e.g. WFI01,WFI02 "
                   "(default for a set: WFI01)")
    g.add_argument("--dithers", type=int, default=None,
                   help="number of dithered exposures (default 1)")
    g.add_argument("--dither-step", type=float, default=DEFAULT_DITHER_STEP,
                   help=f"step of the default dither pattern, arcsec (default "
                   f"{DEFAULT_DITHER_STEP}; exposure k is offset k*step east, 0.6 k*step north)")
    g.add_argument("--dither-pattern", type=_pairs, default=None, metavar="DRA,DDEC;...",
                   help="explicit offsets of each exposure, arcsec east,north; "
                   "e.g. '0,0;1.5,0.9;3,1.8' (overrides --dithers)")
    g.add_argument("--sky-offsets", type=_floats, default=None, metavar="S1,S2,...",
                   help="sky added to --sky in each exposure, e/s/pixel (one per exposure)")
    g.add_argument("--workers", type=int, default=1,
                   help="processes simulating members at once (default 1)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="simulate the members on this Dask cluster (tcp://host:8786 or a "
                   "scheduler file; see docs/batch.md) instead of local processes")
    g.add_argument("--visit-id", default=DEFAULT_VISIT_ID,
                   help=f"19 digits of the file names (default {DEFAULT_VISIT_ID})")
    return p


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {text!r}"
        ) from None


def _pairs(text: str) -> list[tuple[float, float]]:
    pairs = []
    for item in text.split(";"):
        if not item.strip():
            continue
        values = _floats(item)
        if len(values) != 2:
            raise argparse.ArgumentTypeError(f"not a pair 'dra,ddec': {item!r}")
        pairs.append((values[0], values[1]))
    return pairs


def _set_mode(args: argparse.Namespace) -> bool:
    return any(v is not None for v in (args.detectors, args.dithers, args.dither_pattern,
                                       args.sky_offsets))


def _run_set(args: argparse.Namespace) -> str:
    """Simulate the set the options describe; return the summary line."""
    out = Path(args.output)
    unsupported = [name for name, used in (
        ("--pointing-error", args.pointing_error is not None),
        ("--proper-motion", args.proper_motion != 0.0),
        ("--parallax", args.parallax != 0.0),
        ("--preview", args.preview is not None),
        ("--no-refcat", not args.refcat),
        ("--detector (use --detectors)", args.detector != "WFI01"),
    ) if used]
    if unsupported:
        raise ValueError(f"not available for sets: {', '.join(unsupported)}")
    if out.suffix == ".asdf":
        raise ValueError(f"{out}: for a set, OUTPUT is a directory, not an .asdf file")
    if not out.is_dir():
        if not (out.parent if str(out.parent) else Path(".")).is_dir():
            raise ValueError(f"{out}: directory {out.parent} does not exist")
        out.mkdir()
    client = None
    if args.scheduler:
        from distributed import Client

        target = args.scheduler
        kwargs = {"scheduler_file": target} if os.path.isfile(target) else {"address": target}
        try:
            client = Client(**kwargs, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise OutputError(f"--scheduler {target}: cannot connect ({exc})") from None
    try:
        result = _simulate_set_with(out, args, client)
    finally:
        if client is not None:
            client.close()
    return (f"wrote {len(result.files)} exposures to {out} with {result.stars.name} and "
            f"{result.exposures.name}")


def _simulate_set_with(out: Any, args: argparse.Namespace, client: Any) -> Any:
    return simulate_set(
        out,
        executor=client,
        detectors=args.detectors if args.detectors else ["WFI01"],
        dithers=1 if args.dithers is None else args.dithers,
        dither_step=args.dither_step,
        dither_pattern=args.dither_pattern,
        sky=args.sky,
        sky_offsets=args.sky_offsets,
        shape=tuple(args.shape),
        n_stars=args.n_stars,
        seed=args.seed,
        visit_id=args.visit_id,
        workers=args.workers,
        read_pattern=args.read_pattern,
        optical_element=args.optical_element,
        exposure_type=args.exposure_type,
        start_time=args.start_time,
        cr_rate=args.cr_rate,
        saturate_all=args.saturate_all,
        poisson=args.poisson,
        read_noise=args.read_noise,
        references=args.references,
        refcat_mag_limit=args.refcat_mag_limit,
        refcat_error_scale=args.refcat_error_scale,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 1 for an expected error.
    """
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    if _set_mode(args):
        try:
            line = _run_set(args)
        except (ValueError, OSError, RomancalLiteError) as exc:
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 1
        print(f"{line} in {time.perf_counter() - start:.1f} s")
        return 0
    try:
        path = Path(args.output)
        if path.suffix != ".asdf":
            raise ValueError(f"{path}: the output file name must end in .asdf")
        if not (path.parent if str(path.parent) else Path(".")).is_dir():
            raise ValueError(f"{path}: directory {path.parent} does not exist")
        model, truth = simulate_exposure(
            shape=tuple(args.shape),
            read_pattern=args.read_pattern,
            seed=args.seed,
            detector=args.detector,
            optical_element=args.optical_element,
            exposure_type=args.exposure_type,
            start_time=args.start_time,
            n_stars=args.n_stars,
            sky=args.sky,
            cr_rate=args.cr_rate,
            saturate_all=args.saturate_all,
            poisson=args.poisson,
            read_noise=args.read_noise,
            references=args.references,
            pointing_error=args.pointing_error,
            proper_motion=args.proper_motion,
            parallax=args.parallax,
            refcat_mag_limit=args.refcat_mag_limit,
            refcat_error_scale=args.refcat_error_scale,
        )
        write_model_with_truth(model, truth, path, refcat=args.refcat)
        if args.preview:
            from ..preview import write_png

            write_png(truth["rate"], args.preview)
    except (ValueError, OSError, RomancalLiteError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    extra = f" and {refcat_path_for(path)}" if args.refcat else ""
    print(f"wrote {path}{extra} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
