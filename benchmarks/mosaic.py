"""End-to-end timing and peak memory of romancal-lite's ``roman_mos`` beside romancal 1.1.

Run as a script::

    python benchmarks/mosaic.py [--inputs 4] [--size 4088x4088] [--no-var-rnoise]
                                [--uncompressed-inputs]
                                [--only ours|romancal] [--stars 200] [--crs 3000]
                                [--workdir DIR] [--markdown] [--json FILE]

Inputs: ``--inputs`` calibrated images (``_cal.asdf``) in the official format: each is
built with romancal-lite's datamodels, then opened and saved again with
``roman_datamodels`` (``official_copy`` of ``benchmarks/pipeline.py``), as romancal 1.1
saves a ``_cal`` file: every array block lz4-compressed, so that both pipelines pay the
decompression a user pays.  ``--uncompressed-inputs`` gives both pipelines the files as
romancal-lite's datamodels wrote them (uncompressed blocks) instead.  The images:
two detectors side by side per exposure and one exposure per pair, dithered (the
geometry of ``tests/romancal_lite/steps/mosaic_data.py``: a WFI-like gwcs, 0.11"
pixels, detectors 20 pixels apart), each with a flat sky, ``--stars`` Gaussian stars
placed consistently on the sky, ``--crs`` cosmic-ray hits of its own, in DN/s with
``conversion_megajanskys`` 0.5 (the flux step converts), ``var_poisson``, ``err`` and,
unless ``--no-var-rnoise`` (romancal 1.1's ``_cal`` default), ``var_rnoise``.  One
``_asn.json`` (``asn_from_list``, product ``mosaic``) lists them.  The inputs and the
EPSF and APCORR reference files (romancal-lite's, detector WFI02, given to both
pipelines as overrides of ``source_catalog``) are written before anything is timed and
cached in ``--workdir`` (the official copies and their association in the ``official``
folder beside the uncompressed files).

Each pipeline runs in its own fresh interpreter on the same association with its
defaults (flux, skymatch, outlier_detection, resample, source_catalog; products
``mosaic_coadd.asdf``, ``mosaic_cat.parquet``, ``mosaic_segm.asdf``):

* ours: ``romancal_lite.pipeline.MosaicPipeline``;
* romancal 1.1: ``romancal.pipeline.MosaicPipeline``, offline (an empty CRDS cache, no
  step-parameter lookups, sockets refused; ``benchmarks/_romancal.py``); its
  ``SourceCatalogStep`` declares ``epsf`` so that it can be overridden, as in
  ``benchmarks/pipeline.py``; the skymap (a CRDS reference) is not available, so the
  catalog's ``flagged_spatial_id`` takes romancal's fallback for an unknown skycell
  (0), and outlier_detection and resample use the footprints (association target
  ``"None"``), as ours.

Reported: the wall time of each step's ``Step.run``, the pipeline call (reading,
steps, writing), the whole process (interpreter start and imports included), its CPU
time (user + system, all threads; what other jobs on the machine change least), the
peak resident memory of the process (Linux ``VmHWM``) and the ratios; below the
table, the mosaic shapes and how the two coadds agree where both have data.  With
more than 4 inputs only ours runs unless ``--only romancal`` or ``--romancal-too``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if __package__:
    from . import _romancal
    from .pipeline import official_copy
else:  # run as a script: python benchmarks/mosaic.py
    sys.path.insert(0, str(ROOT))
    from benchmarks import _romancal
    from benchmarks.pipeline import official_copy

#: The steps of both pipelines, in order.
STEPS = ("flux", "skymatch", "outlier_detection", "resample", "source_catalog")
#: Full-frame science area of a WFI detector.
FULL_SHAPE = (4088, 4088)
#: Product name of the association.
PRODUCT = "mosaic"
#: Reference files given to source_catalog (both pipelines).
CATALOG_REFTYPES = ("epsf", "apcorr")
#: DN/s -> MJy/sr of the inputs.
CONVERSION = 0.5


def _mosaic_data() -> Any:
    """The geometry of the mosaic tests (``tests/romancal_lite/steps/mosaic_data.py``)."""
    path = str(ROOT / "tests" / "romancal_lite" / "steps")
    if path not in sys.path:
        sys.path.insert(0, path)
    import mosaic_data

    return mosaic_data


def _dither(exposure: int) -> tuple[float, float]:
    """Arcsec offsets of exposure ``exposure`` (1-based): a small non-repeating pattern."""
    k = exposure - 1
    return (5.3 * k) % 17.0 + 0.37 * k, (3.1 * k) % 11.0 - 0.21 * k


def _add_star(data: np.ndarray, x: float, y: float, flux: float, sigma: float) -> None:
    from scipy.special import erf

    ny, nx = data.shape
    half = int(math.ceil(6 * sigma)) + 1
    x0, x1 = max(0, int(x) - half), min(nx, int(x) + half + 1)
    y0, y1 = max(0, int(y) - half), min(ny, int(y) + half + 1)
    if x1 <= x0 or y1 <= y0:
        return
    xe = np.arange(x0, x1 + 1) - 0.5
    ye = np.arange(y0, y1 + 1) - 0.5
    fx = np.diff(0.5 * (1 + erf((xe - x) / (math.sqrt(2) * sigma))))
    fy = np.diff(0.5 * (1 + erf((ye - y) / (math.sqrt(2) * sigma))))
    data[y0:y1, x0:x1] += flux * np.outer(fy, fx)


def write_inputs(directory: Path, n_inputs: int, shape: tuple[int, int], *, var_rnoise: bool,
                 n_stars: int, n_crs: int, seed: int = 3) -> list[Path]:  # fmt: skip
    """Write the ``_cal`` files that do not exist yet (each from its own random stream).

    Parameters
    ----------
    directory : Path
        Where.
    n_inputs : int
        Even number of images (2 detectors per exposure).
    shape : tuple of int
        Detector shape.
    var_rnoise : bool
        Write ``var_rnoise``.
    n_stars, n_crs : int
        Stars in the field, cosmic rays per image.
    seed : int, optional
        Random seed.

    Returns
    -------
    list of Path
        The files.
    """
    md = _mosaic_data()
    directory.mkdir(parents=True, exist_ok=True)
    n_exposures = max(1, n_inputs // 2)
    names = [f"e{e}_wfi{d:02d}_cal.asdf" for e in range(1, n_exposures + 1) for d in (1, 2)]
    paths = [directory / n for n in names[:n_inputs]]
    if all(p.is_file() for p in paths):
        return paths
    stars = md.stars_in(shape, n_stars, seed)
    ny, nx = shape
    field_wcs = md.build_wcs(md.distortion(1, shape), md.Pointing(md.RA0, md.DEC0, md.ROLL,
                                                                   0.0, 0.0), shape)  # fmt: skip
    star_sky = [field_wcs((nx - 1) / 2 + dx / md.SCALE, (ny - 1) / 2 + dy / md.SCALE)
                for dx, dy, _ in stars]  # fmt: skip
    rnoise, gain, sky, sigma = 0.02, 0.01, 0.5, 1.3
    for index, path in enumerate(paths):
        if path.is_file():  # each file has its own random stream: written once
            continue
        rng = np.random.default_rng([seed, index])
        exposure, detector = index // 2 + 1, index % 2 + 1
        model = md.make_image(exposure, detector, shape=shape, dither=_dither(exposure),
                              stars=None, sky=sky, rnoise=rnoise)  # fmt: skip
        data = np.full(shape, sky, dtype=np.float64)
        wcs = model.meta.wcs
        for (ra, dec), (_, _, flux) in zip(star_sky, stars, strict=True):
            x, y = wcs.invert(ra, dec, with_bounding_box=False)
            if -10 < x < nx + 10 and -10 < y < ny + 10:
                _add_star(data, float(x), float(y), 20 * flux, sigma)
        var_poisson = gain * np.clip(data, 0, None)
        noise = rng.normal(0.0, 1.0, shape) * np.sqrt(var_poisson + rnoise**2)
        data += noise
        hits = (rng.integers(0, ny, n_crs), rng.integers(0, nx, n_crs))
        data[hits] += rng.uniform(5.0, 200.0, n_crs)
        _reference_pixel_arrays(model)
        c = CONVERSION
        model.data = (data / c).astype(np.float32)
        model.var_poisson = (var_poisson / c**2).astype(np.float16)
        if var_rnoise:
            model.var_rnoise = np.full(shape, rnoise**2 / c**2, dtype=np.float16)
        else:
            del model.var_rnoise
        model.err = (np.sqrt(var_poisson + rnoise**2) / c).astype(np.float16)
        model.meta.photometry.conversion_megajanskys = c
        model.meta.cal_step.flux = "INCOMPLETE"
        model.meta.filename = path.name
        model.save(path)
        del model, data, var_poisson, noise
    return paths


def _reference_pixel_arrays(model: Any) -> None:
    """Give the reference-pixel arrays the shapes of a real ``_cal`` file.

    ``create_fake_data`` makes every array the science shape; a WFI ``_cal`` file has
    ``amp33`` (n, 4096, 128), ``border_ref_pix_left/right`` (n, 4096, 4),
    ``top/bottom`` (n, 4, 4096) and their DQ without the first axis.
    """
    n = int(np.shape(model.amp33)[0]) if "amp33" in model else 2
    model.amp33 = np.zeros((n, 4096, 128), np.uint16)
    for side, shape in (("left", (4096, 4)), ("right", (4096, 4)), ("top", (4, 4096)),
                        ("bottom", (4, 4096))):  # fmt: skip
        model[f"border_ref_pix_{side}"] = np.zeros((n, *shape), np.float32)
        model[f"dq_border_ref_pix_{side}"] = np.zeros(shape, np.uint32)


def write_association(directory: Path, paths: Sequence[Path]) -> Path:
    """Write ``mosaic_asn.json`` listing ``paths`` (romancal's ``asn_from_list`` form)."""
    from romancal_lite.associations import asn_from_list, write_asn

    asn = directory / f"{PRODUCT}_{len(paths)}_asn.json"
    # target "None" (a string) as romancal's asn_from_list CLI writes it: romancal 1.1 then
    # uses the footprints, not a skycell
    tree = asn_from_list([str(p) for p in paths], PRODUCT, target="None", relative_to=directory)
    write_asn(tree, asn)
    return asn


def official_inputs(paths: Sequence[Path], directory: Path) -> list[Path]:
    """Official (roman_datamodels, lz4) copies of ``paths`` in ``directory`` (cached).

    Parameters
    ----------
    paths : sequence of Path
        The ``_cal`` files written by :func:`write_inputs`.
    directory : Path
        Where the copies go (same names).

    Returns
    -------
    list of Path
        The copies.
    """
    return [official_copy(p, directory / p.name) for p in paths]


def prepare_inputs(workdir: Path, n_inputs: int, shape: tuple[int, int], *, var_rnoise: bool,
                   n_stars: int, n_crs: int, compressed: bool = True
                   ) -> tuple[list[Path], Path]:  # fmt: skip
    """Write (or reuse) the ``_cal`` inputs and their association in ``workdir``.

    Parameters
    ----------
    workdir : Path
        The benchmark's folder; the files go to ``inputs_<NY>x<NX>_<var|novar>_refpix``
        and, official copies, its ``official`` folder.
    n_inputs : int
        Even number of images.
    shape : tuple of int
        Detector shape.
    var_rnoise : bool
        Write ``var_rnoise``.
    n_stars, n_crs : int
        Stars in the field, cosmic rays per image.
    compressed : bool, optional
        The official copies (roman_datamodels, lz4 blocks; the default) rather than the
        uncompressed files romancal-lite wrote.

    Returns
    -------
    list of Path
        The inputs.
    Path
        Their association (``mosaic_<n>_asn.json`` beside them).
    """
    kind = "var" if var_rnoise else "novar"
    directory = workdir / f"inputs_{shape[0]}x{shape[1]}_{kind}_refpix"
    paths = write_inputs(directory, n_inputs, shape, var_rnoise=var_rnoise, n_stars=n_stars,
                         n_crs=n_crs)  # fmt: skip
    if compressed:
        directory = directory / "official"
        paths = official_inputs(paths, directory)
    return paths, write_association(directory, paths)


def catalog_references(cache_root: Path) -> dict[str, str]:
    """romancal-lite's EPSF and APCORR files for detector WFI02 (generated once)."""
    from romancal_lite.references import generate_cache

    cache = generate_cache(cache_root, full_shape=(4096, 4096), detectors=["WFI02"],
                           reftypes=CATALOG_REFTYPES)  # fmt: skip
    refs: dict[str, str] = {}
    for name, info in sorted(cache.files.items()):
        if info["reftype"] in CATALOG_REFTYPES and info["reftype"] not in refs:
            element = info.get("optical_element")
            if element in (None, "F158"):
                refs[info["reftype"]] = str(cache.ensure_reference(name))
    missing = set(CATALOG_REFTYPES) - set(refs)
    if missing:
        raise RuntimeError(f"no generated reference of type {sorted(missing)}")
    return refs


# ----------------------------------------------------------------------------- workers
def _catalog_overrides(refs: Mapping[str, str]) -> dict[str, Any]:
    return {"source_catalog": {f"override_{t}": str(refs[t]) for t in CATALOG_REFTYPES}}


def run_ours(asn: Path, output_dir: Path, refs: Mapping[str, str]
             ) -> tuple[list[Path], dict[str, float]]:  # fmt: skip
    """romancal-lite's ``roman_mos`` on ``asn``; per-step seconds and ``total``."""
    from romancal_lite import stpipe
    from romancal_lite.pipeline import MosaicPipeline

    output_dir.mkdir(parents=True, exist_ok=True)
    with _romancal.step_timer(stpipe.Step) as times:
        start = time.perf_counter()
        MosaicPipeline.call(str(asn), save_results=True, output_dir=str(output_dir),
                            steps=_catalog_overrides(refs))  # fmt: skip
        total = time.perf_counter() - start
    return _products(output_dir), _per_step(times, total)


def run_romancal(asn: Path, output_dir: Path, refs: Mapping[str, str]
                 ) -> tuple[list[Path], dict[str, float]]:  # fmt: skip
    """romancal 1.1's ``MosaicPipeline`` on ``asn``, offline."""
    output_dir.mkdir(parents=True, exist_ok=True)
    _romancal._apply_environment(_romancal.offline_crds_environment(output_dir / "crds"))
    import stpipe
    from romancal.pipeline import MosaicPipeline
    from romancal.skycell import skymap
    from romancal.source_catalog import SourceCatalogStep

    types = list(SourceCatalogStep.reference_file_types)
    if "epsf" not in types:
        SourceCatalogStep.reference_file_types = [*types, "epsf"]

    def no_skymap(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("the skymap is a CRDS reference: not available offline")

    # the catalog's flagged_spatial_id reads the skymap from CRDS; romancal's own
    # fallback for an unknown skycell (KeyError: the column is 0) is taken instead
    skymap.SkyCells.from_names = staticmethod(no_skymap)
    with _romancal.network_guard() as attempts, _romancal.step_timer(stpipe.Step) as times:
        start = time.perf_counter()
        MosaicPipeline.call(str(asn), save_results=True, output_dir=str(output_dir),
                            steps=_catalog_overrides(refs))  # fmt: skip
        total = time.perf_counter() - start
    if attempts:
        raise RuntimeError(f"romancal tried the network: {attempts}")
    return _products(output_dir), _per_step(times, total)


def _products(output_dir: Path) -> list[Path]:
    names = [f"{PRODUCT}_coadd.asdf", f"{PRODUCT}_cat.parquet", f"{PRODUCT}_segm.asdf"]
    paths = [output_dir / n for n in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise RuntimeError(f"no {', '.join(missing)} in {output_dir}")
    return paths


def _per_step(times: Mapping[str, float], total: float) -> dict[str, float]:
    per_step = {name: times[name] for name in STEPS if name in times}
    per_step["total"] = total
    return per_step


def _worker(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="mosaic.py --worker")
    parser.add_argument("which", choices=["ours", "romancal"])
    parser.add_argument("asn", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--refs", type=Path, required=True)
    parser.add_argument("--result", type=Path)
    args = parser.parse_args(argv)
    refs = json.loads(args.refs.read_text())
    if args.which == "ours":
        import romancal_lite.pipeline  # noqa: F401  (imports before the "before" RSS)

        runner = run_ours
    else:
        _romancal._apply_environment(
            _romancal.offline_crds_environment(args.output_dir / "crds")
        )
        import romancal.pipeline  # noqa: F401

        runner = run_romancal
    result = _romancal.run_worker(args.which, args.asn, args.output_dir, refs, runner)
    # CPU seconds of the process (all threads): less sensitive than wall time to other
    # jobs sharing the machine
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu"] = usage.ru_utime + usage.ru_stime
    if args.which == "ours":
        import romancore

        result["threads"] = romancore.effective_n_threads()
    text = json.dumps(result)
    if args.result:
        args.result.write_text(text)
    print(text)
    return 0


# ----------------------------------------------------------------------------- report
def compare_coadds(ours: Path, romancal: Path) -> dict[str, Any]:
    """Shapes of both mosaics and their agreement where both have data."""
    import asdf

    with asdf.open(ours, lazy_load=True, memmap=True) as a, \
            asdf.open(romancal, lazy_load=True, memmap=True) as b:  # fmt: skip
        da = np.asarray(a["roman"]["data"], dtype=np.float32)
        db = np.asarray(b["roman"]["data"], dtype=np.float32)
        out: dict[str, Any] = {"shape_ours": list(da.shape), "shape_romancal": list(db.shape)}
        if da.shape == db.shape:
            both = np.isfinite(da) & np.isfinite(db)
            diff = np.abs(da[both] - db[both])
            scale = np.abs(db[both])
            out["both"] = int(both.sum())
            out["median_abs_diff"] = float(np.median(diff)) if diff.size else None
            out["p99_abs_diff"] = float(np.percentile(diff, 99)) if diff.size else None
            out["median_level"] = float(np.median(scale)) if diff.size else None
    return out


def _fmt(value: float | None, spec: str = "8.1f") -> str:
    return "       -" if value is None else format(value, spec)


def _ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None or num <= 0:
        return "     -"
    return f"{den / num:5.1f}x"


def format_table(ours: Mapping[str, Any] | None, romancal: Mapping[str, Any] | None,
                 markdown: bool = False) -> str:  # fmt: skip
    """The per-step table (seconds; GB for memory; ratio = romancal / ours)."""
    rows: list[tuple[str, float | None, float | None]] = []
    for step in STEPS:
        rows.append((step, (ours or {}).get("steps", {}).get(step),
                     (romancal or {}).get("steps", {}).get(step)))  # fmt: skip
    rows.append(("pipeline call", (ours or {}).get("total"), (romancal or {}).get("total")))
    rows.append(("whole process", (ours or {}).get("wall"), (romancal or {}).get("wall")))
    rows.append(("process CPU", (ours or {}).get("cpu"), (romancal or {}).get("cpu")))
    gb = 2.0**30
    peak = [(r or {}).get("peak_rss") for r in (ours, romancal)]
    peak_gb = [None if p is None else p / gb for p in peak]
    lines = []
    if markdown:
        lines.append("| | romancal-lite | romancal 1.1 | ratio |")
        lines.append("|---|---|---|---|")
        for name, a, b in rows:
            lines.append(f"| {name} (s) | {_fmt(a).strip()} | {_fmt(b).strip()} | "
                         f"{_ratio(a, b).strip()} |")  # fmt: skip
        ratio = "-" if None in peak_gb else f"{peak_gb[0] / peak_gb[1]:.2f}"
        lines.append(f"| peak RSS (GB) | {_fmt(peak_gb[0], '.2f').strip()} | "
                     f"{_fmt(peak_gb[1], '.2f').strip()} | ours/romancal {ratio} |")  # fmt: skip
    else:
        lines.append(f"{'':22s} {'ours':>8s} {'romancal':>8s} {'ratio':>6s}")
        for name, a, b in rows:
            lines.append(f"{name + ' (s)':22s} {_fmt(a)} {_fmt(b)} {_ratio(a, b)}")
        lines.append(f"{'peak RSS (GB)':22s} {_fmt(peak_gb[0], '8.2f')} "
                     f"{_fmt(peak_gb[1], '8.2f')}")  # fmt: skip
    return "\n".join(lines)


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; see the module docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _worker(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=4, help="number of _cal inputs (even)")
    parser.add_argument("--size", default=None, help="NYxNX of each input (default 4088x4088)")
    parser.add_argument("--no-var-rnoise", action="store_true",
                        help="inputs without var_rnoise (romancal 1.1's _cal default)")
    parser.add_argument("--uncompressed-inputs", action="store_true",
                        help="give both pipelines the inputs as romancal-lite writes them "
                             "(uncompressed) instead of their roman_datamodels (lz4) copies")
    parser.add_argument("--stars", type=int, default=200)
    parser.add_argument("--crs", type=int, default=3000, help="cosmic rays per input")
    parser.add_argument("--only", choices=["ours", "romancal"], default=None)
    parser.add_argument("--romancal-too", action="store_true",
                        help="run romancal also with more than 4 inputs")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="inputs, references and outputs (default "
                             "$ROMANCAL_LITE_BENCH_DIR/mosaic or "
                             "~/.cache/romancal_lite/bench/mosaic)")
    parser.add_argument("--timeout", type=float, default=7200.0)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    args = parser.parse_args(argv)
    if args.inputs < 2 or args.inputs % 2:
        parser.error("--inputs must be an even number >= 2")
    shape = FULL_SHAPE
    if args.size:
        ny, _, nx = args.size.lower().partition("x")
        shape = (int(ny), int(nx or ny))
    base = Path(os.environ.get("ROMANCAL_LITE_BENCH_DIR", "")
                or Path.home() / ".cache" / "romancal_lite" / "bench")  # fmt: skip
    workdir = args.workdir or base / "mosaic"
    kind = "novar" if args.no_var_rnoise else "var"  # (real reference-pixel shapes)
    t0 = time.perf_counter()
    paths, asn = prepare_inputs(workdir, args.inputs, shape, var_rnoise=not args.no_var_rnoise,
                                n_stars=args.stars, n_crs=args.crs,
                                compressed=not args.uncompressed_inputs)  # fmt: skip
    compression = "uncompressed" if args.uncompressed_inputs else "lz4"
    refs = catalog_references(workdir / "crds")
    print(f"inputs ready in {time.perf_counter() - t0:.1f} s: {len(paths)} x {shape} "
          f"({'with' if not args.no_var_rnoise else 'without'} var_rnoise, {compression})",
          file=sys.stderr)  # fmt: skip
    which = [w for w in ("ours", "romancal") if args.only in (None, w)]
    if "romancal" in which and args.inputs > 4 and not (args.romancal_too or args.only):
        which.remove("romancal")
    results: dict[str, Any] = {}
    script = Path(__file__).resolve()
    for w in which:
        out = workdir / f"out_{w}_{args.inputs}_{kind}_refpix_{compression}"
        for old in out.glob(f"{PRODUCT}_*"):
            old.unlink()
        print(f"running {w} (load {_load()}) ...", file=sys.stderr)
        results[w] = _romancal.run_script_subprocess(
            script, ["--worker", w, str(asn), str(out)], out, refs, timeout=args.timeout
        )
        print(f"{w}: {results[w]['total']:.1f} s (load {_load()})", file=sys.stderr)
    comparison = None
    if "ours" in results and "romancal" in results:
        comparison = compare_coadds(Path(results["ours"]["cal"][0]),
                                    Path(results["romancal"]["cal"][0]))  # fmt: skip
    summary = {
        "inputs": args.inputs, "shape": list(shape), "var_rnoise": not args.no_var_rnoise,
        "compression": compression,
        "machine": {"cpus": os.cpu_count(), "load_after": _load(),
                    "python": platform.python_version()},
        "results": results, "comparison": comparison,
    }  # fmt: skip
    print(f"\nroman_mos, {args.inputs} inputs of {shape[0]} x {shape[1]} "
          f"({'with' if not args.no_var_rnoise else 'without'} var_rnoise, {compression} "
          f"blocks), load {_load()}")
    print(format_table(results.get("ours"), results.get("romancal"), args.markdown))
    if comparison:
        print(f"mosaic shape ours {comparison['shape_ours']}, romancal "
              f"{comparison['shape_romancal']}; where both have data: median |diff| "
              f"{_fmt(comparison.get('median_abs_diff'), '.3g')}, 99th percentile "
              f"{_fmt(comparison.get('p99_abs_diff'), '.3g')} (median level "
              f"{_fmt(comparison.get('median_level'), '.3g')} MJy/sr)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
