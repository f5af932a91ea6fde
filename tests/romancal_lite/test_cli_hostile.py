"""The runner on hostile and malformed inputs, and interrupted (issue 8, item 5).

Each case builds a bad input in ``tmp_path`` from one small simulated exposure and runs
``romancal_lite run roman_elp`` on it, in-process (``cli.main``) or, where signals and
tracebacks matter, as ``python -m romancal_lite``. A refused input must end in exactly
one line ``romancal_lite: error: <message naming the file>``, exit 1 (64 for an input
without science data), no traceback, no new file anywhere under ``tmp_path`` (no
temporary either) and every existing file byte for byte unchanged. A legal input (a
``#`` in names, big-endian data) must give the same product as the plain one.
"""

import copy
import hashlib
import os
import re
import signal
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from romancal_lite import cli, datamodels, simulate
from romancal_lite.datamodels import write_asdf_atomic
from romancal_lite.references import builtin_cache, generate_cache, use_builtin_cache

SHAPE = (64, 128)  # the smallest read-out refpix accepts (one 128-column channel)
NAME = "r0000101001001001001_0001_wfi01"
ERROR = "romancal_lite: error:"
BLOCK_MAGIC = b"\xd3BLK"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return generate_cache(
        tmp_path_factory.mktemp("hostile_crds"), full_shape=SHAPE, detectors=("WFI01",)
    )


@pytest.fixture(autouse=True)
def builtin(cache):
    with builtin_cache(cache, hide_user_crds=True):
        yield cache


@pytest.fixture(scope="module")
def exposure(tmp_path_factory, cache):
    """A pristine simulated ``_uncal`` (9 resultants, a few stars)."""
    path = tmp_path_factory.mktemp("hostile_src") / f"{NAME}_uncal.asdf"
    with builtin_cache(cache, hide_user_crds=True):
        simulate.write_exposure(
            path, shape=SHAPE, detector="WFI01", read_pattern="ma4", seed=3, n_stars=3
        )
    return path


@pytest.fixture(scope="module")
def reference_cal(tmp_path_factory, exposure, cache):
    """The product of the pristine exposure (what legal variants must reproduce)."""
    out = tmp_path_factory.mktemp("hostile_ref")
    with builtin_cache(cache, hide_user_crds=True):
        assert cli.main(["run", "roman_elp", str(exposure), "--output-dir", str(out)]) == 0
    with datamodels.open(out / f"{NAME}_cal.asdf") as image:
        return np.array(image.data), np.array(image.dq)


# ---------------------------------------------------------------------- helpers


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` (hidden ones too), files with their hash."""
    files = {}
    for dirpath, dirnames, names in os.walk(root):
        files.update({str(Path(dirpath, d).relative_to(root)): "folder" for d in dirnames})
        for name in names:
            path = Path(dirpath, name)
            if path.is_file():
                files[str(path.relative_to(root))] = hashlib.md5(path.read_bytes()).hexdigest()
            else:
                files[str(path.relative_to(root))] = "special"
    return files


def mutate(src: Path, dest: Path, change: Callable[[dict], object]) -> Path:
    """Write ``src`` to ``dest`` with ``change`` applied to its ``roman`` tree.

    The other top-level nodes (the simulator's truth record) are kept, so the file is
    still recognised as a romancal_lite simulation.
    """
    with datamodels.open(src) as model:
        model.load_arrays()
        data = dict(model._node._data)
        data["meta"] = copy.deepcopy(data["meta"])
        change(data)
        tree = {
            key: value
            for key, value in model._asdf.tree.items()
            if key not in {"roman", "asdf_library", "history"}
        }
        tree["roman"] = type(model._node)(data, model._node.tag)
        write_asdf_atomic(dest, tree)
    return dest


def set_path(dotted: str, value) -> Callable[[dict], None]:
    """A change setting (or, with ``DELETE``, removing) ``roman.<dotted>``."""

    def change(tree: dict) -> None:
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[leaf]
        else:
            node[leaf] = value(node[leaf]) if callable(value) else value

    return change


DELETE = object()


def patch_block_header(raw: bytes, field_offset: int, value: int) -> bytes:
    """Overwrite one 8-byte field of the first binary block header."""
    at = raw.index(BLOCK_MAGIC) + 6 + field_offset
    return raw[:at] + struct.pack(">Q", value) + raw[at + 8 :]


ALLOCATED, USED, DATA_SIZE = 8, 16, 24  # offsets in the header, after flags+compression


class Hung(BaseException):
    """Raised by the watchdog of `run_inprocess` (passes through the runner's handlers)."""


def _hung(signum, frame):
    raise Hung("the runner did not finish in bounded time")


def run_inprocess(capsys, argv, limit: float = 30.0):
    """Run ``cli.main`` in-process; a watchdog fails the test if it takes over ``limit`` s."""
    previous = signal.signal(signal.SIGALRM, _hung)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        status = cli.main([str(a) for a in argv])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    out, err = capsys.readouterr()
    return status, err


def assert_refused(status, err, expected_status, filename, fragment, before, root):
    errors = [line for line in err.splitlines() if line.startswith(ERROR)]
    assert "Traceback" not in err, err
    assert status == expected_status, err
    assert len(errors) == 1, err
    assert filename in errors[0], errors[0]
    assert re.search(fragment, errors[0]), errors[0]
    assert snapshot(root) == before  # nothing written, nothing left, input unchanged


# ---------------------------------------------------------------------- the table


@dataclass
class Case:
    """A bad input: how to build it, and how the runner must refuse it."""

    id: str
    build: Callable[[Path, Path], Path]  # (pristine exposure, tmp dir) -> input path
    fragment: str  # regex the error line must match
    status: int = 1
    extra: list[str] = field(default_factory=list)  # more run options
    xfail: str | None = None


def meta_case(id, dotted, value, fragment, **kw):
    def build(src, tmp):
        return mutate(src, tmp / f"{id}_uncal.asdf", set_path(dotted, value))

    return Case(id, build, fragment, **kw)


def raw_case(id, transform, fragment, **kw):
    def build(src, tmp):
        path = tmp / f"{id}_uncal.asdf"
        path.write_bytes(transform(src.read_bytes()))
        return path

    return Case(id, build, fragment, **kw)


def text_case(id, yaml_body, fragment):
    header = (
        "#ASDF 1.0.0\n#ASDF_STANDARD 1.5.0\n%YAML 1.1\n%TAG ! tag:stsci.edu:asdf/\n"
        "--- !core/asdf-1.1.0\n"
    )

    def build(src, tmp):
        path = tmp / f"{id}_uncal.asdf"
        path.write_text(header + yaml_body + "\n...\n")
        return path

    return Case(id, build, fragment)


RAW_TAG = "roman: !<asdf://stsci.edu/datamodels/roman/tags/wfi_science_raw-2.1.0>"


def laughs(levels: int = 9) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines)


def zlib_exposure(src: Path, tmp: Path) -> bytes:
    with datamodels.open(src) as model:
        model.load_arrays()
        path = tmp / "zlib_source.asdf"
        tree = {k: v for k, v in model._asdf.tree.items() if k not in {"asdf_library", "history"}}
        write_asdf_atomic(path, tree, all_array_compression="zlib")
    raw = path.read_bytes()
    path.unlink()
    return raw


def decompression_bomb(src, tmp):
    path = tmp / "zbomb_uncal.asdf"
    path.write_bytes(patch_block_header(zlib_exposure(src, tmp), DATA_SIZE, 1 << 50))
    return path


def huge_shape(raw: bytes) -> bytes:
    start = raw.index(b"data: !core/ndarray-1.1.0")
    at = raw.index(b"shape: [9, 64, 128]", start)
    return raw[:at] + b"shape: [9000000000, 6400000, 128000]" + raw[at + 19 :]


def external_source(raw: bytes) -> bytes:
    """The science array read from another file (asdf would open any path or URL)."""
    start = raw.index(b"data: !core/ndarray-1.1.0")
    at = raw.index(b"source: 0", start)
    return raw[:at] + b"source: /etc/passwd" + raw[at + 9 :]


def strip_resultants(keep: int, rows: int | None = None):
    def change(tree):
        sl = (slice(0, keep), slice(0, rows))
        tree["data"] = tree["data"][sl]
        tree["amp33"] = tree["amp33"][sl]
        pattern = tree["meta"]["exposure"]["read_pattern"]
        tree["meta"]["exposure"]["read_pattern"] = pattern[: max(keep, 1)] if keep else pattern
        if keep == 0:
            tree["meta"]["exposure"]["read_pattern"] = []

    return change


def no_science(id, change, fragment):
    def build(src, tmp):
        return mutate(src, tmp / f"{id}_uncal.asdf", change)

    return Case(id, build, fragment, status=64)


def fifo(src, tmp):
    path = tmp / "pipe_uncal.asdf"
    os.mkfifo(path)
    return path


def directory(src, tmp):
    path = tmp / "dir_uncal.asdf"
    path.mkdir()
    return path


def device(src, tmp):
    return Path("/dev/zero")


def pristine_copy(src, tmp):
    path = tmp / f"{NAME}_uncal.asdf"
    path.write_bytes(src.read_bytes())
    return path


def _fifo_at(tmp):
    path = tmp / "mask_pipe.asdf"
    os.mkfifo(path)
    return path


def _dir_at(tmp):
    path = tmp / "mask_dir.asdf"
    path.mkdir()
    return path


def _reference(cache, reftype):
    """A reference file of the cache (written on first use: by the reference run)."""
    return next((cache.root / "references").rglob(f"*_{reftype}_wfi01_*.asdf"))


CASES = [
    # metadata missing or of the wrong type
    meta_case("nometa", "meta", DELETE, r"no metadata \(the 'meta' node is missing\)"),
    meta_case("metastr", "meta", "abc", r"meta must be a mapping, not 'abc'"),
    meta_case("noexposure", "meta.exposure", DELETE, r"meta\.exposure is missing"),
    meta_case("exposurestr", "meta.exposure", "abc", r"meta\.exposure must be a mapping"),
    meta_case("exptypeint", "meta.exposure.type", 5, r"meta\.exposure\.type must be a string"),
    meta_case("noexptype", "meta.exposure.type", DELETE, r"meta\.exposure\.type is missing"),
    meta_case(
        "frametime", "meta.exposure.frame_time", "abc", r"meta\.exposure\.frame_time must be"
    ),
    meta_case(
        "starttime", "meta.exposure.start_time", "abc", r"start_time is not a valid time"
    ),
    meta_case("instrumentstr", "meta.instrument", "abc", r"meta\.instrument must be a mapping"),
    meta_case(
        "detectorint", "meta.instrument.detector", 7, r"meta\.instrument\.detector must be"
    ),
    meta_case("guidestr", "meta.guide_star", "x", r"meta\.guide_star must be a mapping"),
    meta_case(
        "windowstr", "meta.guide_star.window_xstart", "abc", r"window_xstart must be an integer"
    ),
    meta_case(
        "offsetstr",
        "meta.instrument",
        lambda inst: {**inst, "data_encoding_offset": "abc"},
        r"data_encoding_offset must be a number",
    ),
    meta_case("wcsinfostr", "meta.wcsinfo", "abc", r"meta\.wcsinfo must be a mapping"),
    meta_case("noguidestar", "meta.guide_star", DELETE, r"meta\.guide_star is missing"),
    meta_case(
        "nowindow", "meta.guide_star.window_ystop", DELETE, r"guide_star\.window_ystop is missing"
    ),
    meta_case(
        "nullaberration",
        "meta.velocity_aberration",
        None,
        r"meta\.velocity_aberration must be a mapping, not None",
    ),
    meta_case("nodata", "data", DELETE, r"the 'data' array is missing"),
    meta_case("noamp33", "amp33", DELETE, r"the 'amp33' array is missing"),
    meta_case("datastr", "data", "abc", r"'data' must be an array"),
    meta_case("amp33rows", "amp33", lambda a: a[:, :10], r"'amp33' has shape .* does not fit"),
    meta_case(
        "resultantdq",
        "meta.exposure",
        lambda e: e,
        r"'resultantdq' has shape \(2, 3, 3\), which does not fit",
    ),
    # array data types the Level 1 schema does not allow (and dimensions)
    meta_case("float32", "data", lambda a: a.astype("f4"), r"data type float32; .* uint16"),
    meta_case("float64", "data", lambda a: a.astype("f8"), r"data type float64; .* uint16"),
    meta_case("complex", "data", lambda a: a.astype("c8"), r"data type complex64; .* uint16"),
    meta_case("int8", "data", lambda a: a.astype("i1"), r"data type int8; .* uint16"),
    meta_case("int16", "data", lambda a: a.astype("i2"), r"data type int16; .* uint16"),
    meta_case("amp33f", "amp33", lambda a: a.astype("f4"), r"'amp33' has data type float32"),
    meta_case("data2d", "data", lambda a: a[0], r"'data' must have 3 dimensions"),
    # files that are not regular files
    Case("fifo", fifo, r"is a FIFO \(named pipe\), not a regular file"),
    Case("directory", directory, r"is a directory"),
    Case("device", device, r"is a character device, not a regular file"),
    # YAML that expands without bound, absurd block sizes
    text_case("laughs", laughs(), r"aliases expand the metadata tree by more than"),
    text_case("recursive", RAW_TAG + "\n  meta: &m {exposure: *m}", r"recursive"),
    text_case(
        "deep", RAW_TAG + "\n  meta: " + "{a: " * 300 + "1" + "}" * 300, r"nests deeper than 200"
    ),
    raw_case(
        "allocated",
        lambda raw: patch_block_header(raw, ALLOCATED, 1 << 62),
        r"truncated (or corrupt )?file \(binary block 0",
    ),
    raw_case(
        "usedsize",
        lambda raw: patch_block_header(raw, USED, 1 << 40),
        r"corrupt binary block 0",
    ),
    Case("zbomb", decompression_bomb, r"once decompressed, more than this machine's memory"),
    raw_case("hugeshape", huge_shape, r"declares shape \(9000000000, .* but its binary block"),
    raw_case("external", external_source, r"'data' refers to another file \('/etc/passwd'\)"),
    # no science data at all: exit 64
    no_science("noresultant", strip_resultants(0), r"no science data \(data has shape \(0,"),
    no_science("allborder", strip_resultants(9, rows=8), r"no science data: .* reference"),
]

# the resultantdq case needs an array, not a meta change
CASES[[c.id for c in CASES].index("resultantdq")].build = lambda src, tmp: mutate(
    src,
    tmp / "resultantdq_uncal.asdf",
    lambda tree: tree.__setitem__("resultantdq", np.zeros((2, 3, 3), np.uint8)),
)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_in_one_line(case, exposure, tmp_path, capsys):
    bad = case.build(exposure, tmp_path)
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    status, err = run_inprocess(capsys, ["run", "roman_elp", bad, "--output-dir", out])
    assert_refused(status, err, case.status, bad.name, case.fragment, before, tmp_path)


# ---------------------------------------------------------------------- reference files


def _truncated(cache):
    def make(tmp):
        raw = _reference(cache, "mask").read_bytes()
        path = tmp / "mask_truncated.asdf"
        path.write_bytes(raw[: len(raw) - 100])
        return path

    return make


def _wrong_model(cache):
    def make(tmp):
        path = tmp / "gain_as_mask.asdf"
        path.write_bytes(_reference(cache, "gain").read_bytes())
        return path

    return make


OVERRIDES = [
    ("truncated", _truncated, r"mask_truncated\.asdf: truncated file", None),
    ("wrong_model", _wrong_model, r"gain_as_mask\.asdf: is a GAIN reference file, expected MASK",
     None),
    (
        "fifo",
        lambda cache: _fifo_at,
        r"mask_pipe\.asdf.*FIFO",
        None,
    ),
    (
        "directory",
        lambda cache: _dir_at,
        r"mask_dir\.asdf.*directory",
        None,
    ),
]


@pytest.mark.parametrize(
    ("kind", "make", "fragment", "xfail"), OVERRIDES, ids=[o[0] for o in OVERRIDES]
)
def test_bad_override_refused(
    kind, make, fragment, xfail, exposure, reference_cal, cache, tmp_path, capsys, request
):
    if xfail:
        request.applymarker(pytest.mark.xfail(strict=True, reason=xfail))
    good = pristine_copy(exposure, tmp_path)
    override = make(cache)(tmp_path)
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    status, err = run_inprocess(
        capsys, ["run", "roman_elp", good, "--output-dir", out, "--override-mask", override]
    )
    assert_refused(status, err, 1, override.name, fragment, before, tmp_path)


@pytest.mark.parametrize("where", ["file", "proc"])
def test_unusable_cache_location(where, exposure, tmp_path, capsys, monkeypatch):
    """ROMANCAL_LITE_CRDS_CACHE naming a file, or a folder nobody may write (/proc).

    The exposure is saved without the simulator's record (a simulated exposure finds
    the cache it was made with) and run with the opt-in to the built-in references,
    so the run needs the default cache location.
    """
    good = tmp_path / f"{NAME}_uncal.asdf"
    with datamodels.open(exposure) as model:
        model.save(good)
    if where == "file":
        location = tmp_path / "cache_is_a_file"
        location.write_text("x")
    else:
        location = Path("/proc/romancal_lite_cache")  # not writable even by root
    for name in [k for k in os.environ if k.startswith("CRDS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ROMANCAL_LITE_CRDS_CACHE", str(location))
    use_builtin_cache(None)  # the default location, as a user's run (the fixture restores)
    before = snapshot(tmp_path)
    status, err = run_inprocess(
        capsys,
        ["run", "roman_elp", good, "--output-dir", tmp_path / "out", "--builtin-references"],
    )
    assert_refused(status, err, 1, str(location), "cache", before, tmp_path)


# ---------------------------------------------------------------------- legal inputs


def test_hash_in_override_name_works(exposure, reference_cal, cache, tmp_path, capsys):
    good = pristine_copy(exposure, tmp_path)
    (tmp_path / "mask").write_bytes(b"a decoy that must not be read")
    override = tmp_path / "mask#1.asdf"
    override.write_bytes(_reference(cache, "mask").read_bytes())
    status, err = run_inprocess(
        capsys, ["run", "roman_elp", good, "--output-dir", tmp_path / "o", "--override-mask",
                 override],
    )
    assert status == 0, err


def test_hash_and_percent_in_names_work(exposure, reference_cal, tmp_path, capsys):
    """'#' and '%' are ordinary characters: no URI parsing, no write over 'out'."""
    source = tmp_path / "in#1%41_uncal.asdf"
    source.write_bytes(exposure.read_bytes())
    neighbour = tmp_path / "out"
    neighbour.write_bytes(b"precious")
    out = tmp_path / "out#1%20"
    status, err = run_inprocess(
        capsys,
        ["run", "roman_elp", source, "--output-dir", out, "--save-parameters",
         out / "pars#%.asdf"],
    )
    assert status == 0, err
    assert neighbour.read_bytes() == b"precious"
    assert sorted(p.name for p in out.iterdir()) == [
        "in#1%41_cal.asdf", "in#1%41_cat.parquet", "in#1%41_segm.asdf", "in#1%41_wcs.asdf",
        "pars#%.asdf",
    ]
    assert not (tmp_path / "in").exists() and not (tmp_path / "inA_uncal.asdf").exists()
    with datamodels.open(out / "in#1%41_cal.asdf") as image:
        assert image.meta.filename == "in#1%41_cal.asdf"
        np.testing.assert_array_equal(image.data, reference_cal[0])
        np.testing.assert_array_equal(image.dq, reference_cal[1])


def test_big_endian_uint16_is_legal(exposure, reference_cal, tmp_path, capsys):
    """The schema fixes the data type, not the byte order: same product."""
    big = mutate(
        exposure,
        tmp_path / f"{NAME}_uncal.asdf",
        lambda tree: tree.update(
            data=tree["data"].astype(">u2"), amp33=tree["amp33"].astype(">u2")
        ),
    )
    status, err = run_inprocess(capsys, ["run", "roman_elp", big, "--output-dir", tmp_path / "o"])
    assert status == 0, err
    with datamodels.open(tmp_path / "o" / f"{NAME}_cal.asdf") as image:
        np.testing.assert_array_equal(image.data, reference_cal[0])


@pytest.mark.parametrize(
    ("id", "change"),
    [
        ("one_resultant", strip_resultants(1)),
        ("all_zero", set_path("data", lambda a: np.zeros_like(a))),
    ],
)
def test_no_usable_pixel_is_said(id, change, exposure, tmp_path, capsys):
    """A legal exposure giving an image without any usable pixel: written, with a warning."""
    path = mutate(exposure, tmp_path / f"{id}_uncal.asdf", change)
    status, err = run_inprocess(capsys, ["run", "roman_elp", path, "--output-dir", tmp_path / "o"])
    assert status == 0, err
    warnings = [line for line in err.splitlines() if "no usable pixel" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and path.name in warnings[0], err
    with datamodels.open(tmp_path / "o" / f"{id}_cal.asdf") as image:
        assert not np.isfinite(image.data).any()


def test_usable_image_gives_no_such_warning(exposure, tmp_path, capsys):
    path = pristine_copy(exposure, tmp_path)
    status, err = run_inprocess(capsys, ["run", "roman_elp", path, "--output-dir", tmp_path / "o"])
    assert status == 0 and "no usable pixel" not in err


# ---------------------------------------------------------------------- interruptions


def _env(cache_root):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env["ROMANCAL_LITE_CRDS_CACHE"] = str(cache_root)
    return env


def _default_sigint():
    # a test runner started in the background may ignore SIGINT; Python then keeps
    # ignoring it in the child. Restore the default so Python installs its handler.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _previous_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    previous = out / f"{NAME}_cal.asdf"
    previous.write_bytes(b"previous product")
    return out


INTERRUPT_DURING_WRITE = """
import os, signal, sys
import asdf
from romancal_lite import cli

original = asdf.AsdfFile.write_to

def write_to(self, fd, **kwargs):
    if "wfi_image" in str(getattr(self.tree.get("roman"), "tag", "")):  # the product
        fd.write(b"half a file")
        fd.flush()
        os.kill(os.getpid(), signal.{sig})  # arrives while the product is being written
    original(self, fd, **kwargs)

asdf.AsdfFile.write_to = write_to
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize(("sig", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_signal_during_the_write(sig, status, exposure, reference_cal, cache, tmp_path):
    good = pristine_copy(exposure, tmp_path)
    out = _previous_output(tmp_path)
    before = snapshot(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(INTERRUPT_DURING_WRITE.format(sig=sig)),
         "run", "roman_elp", str(good), "--output-dir", str(out)],
        capture_output=True, text=True, env=_env(cache.root), timeout=120,
        preexec_fn=_default_sigint,
    )
    assert_refused(result.returncode, result.stderr, status, good.name, f"interrupted by {sig}",
                   before, tmp_path)


INTERRUPT_DURING_THE_RENAMES = """
import os, signal, sys
from romancal_lite import cli

original = os.replace

def replace(src, dst):
    if str(dst).endswith("_cal.asdf"):
        os.kill(os.getpid(), signal.SIGINT)  # held back until every output is in place
    original(src, dst)

os.replace = replace
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigint_while_the_outputs_are_renamed(exposure, reference_cal, cache, tmp_path):
    """The set of outputs appears whole, and the message does not deny it."""
    good = pristine_copy(exposure, tmp_path)
    out = _previous_output(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(INTERRUPT_DURING_THE_RENAMES), "run", "roman_elp",
         str(good), "--output-dir", str(out), "--steps.ramp_fit.save_results", "true"],
        capture_output=True, text=True, env=_env(cache.root), timeout=120,
        preexec_fn=_default_sigint,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith(ERROR)]
    assert "Traceback" not in result.stderr and result.returncode == 130, result.stderr
    assert len(errors) == 1 and "its outputs were complete and are kept" in errors[0]
    assert sorted(p.name for p in out.iterdir()) == [
        f"{NAME}_{s}" for s in ("cal.asdf", "cat.parquet", "rampfit.asdf", "segm.asdf", "wcs.asdf")
    ]
    with datamodels.open(out / f"{NAME}_cal.asdf") as image:  # the new, whole product
        assert image.meta.cal_step.flat_field == "COMPLETE"


def test_sigint_while_running(exposure, reference_cal, cache, tmp_path):
    """Ctrl-C at an arbitrary moment of the pipeline (once it runs): 130, clean."""
    good = pristine_copy(exposure, tmp_path)
    out = _previous_output(tmp_path)
    before = snapshot(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "romancal_lite", "run", "roman_elp", str(good), "--output-dir",
         str(out)],
        stderr=subprocess.PIPE, text=True, env=_env(cache.root), preexec_fn=_default_sigint,
    )
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "Step saturation running" in line:
            proc.send_signal(signal.SIGINT)
            break
    lines.extend(proc.stderr)
    proc.wait(timeout=60)
    assert_refused(proc.returncode, "".join(lines), 130, good.name, "interrupted by SIGINT",
                   before, tmp_path)


def test_ctrl_c_during_the_imports_is_one_line(tmp_path, capsys, monkeypatch):
    """Interrupted while the modules load: the report imports nothing half made again."""

    def interrupted_while_importing(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_dispatch", interrupted_while_importing)
    monkeypatch.delitem(sys.modules, "romancal_lite.datamodels._files")
    monkeypatch.setitem(sys.modules, "romancal_lite.datamodels", None)  # cannot be imported
    before = snapshot(tmp_path)
    status, err = run_inprocess(capsys, ["run", "roman_elp", tmp_path / "x_uncal.asdf"])
    assert err.strip() == f"{ERROR} interrupted by SIGINT; no output written"
    assert status == 130 and snapshot(tmp_path) == before


class _InterruptedWhileCollected:
    """Sends Ctrl-C from ``__del__``: Python drops the KeyboardInterrupt raised there."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs here, inside __del__
            pass


def test_ctrl_c_python_drops_in_a_del_still_ends_the_run(exposure, tmp_path, capsys,
                                                          monkeypatch):
    """A Ctrl-C raised inside ``__del__`` (dropped by Python): 130, nothing written."""
    from romancal_lite.steps.photom.photom_step import PhotomStep

    good = pristine_copy(exposure, tmp_path)
    out = _previous_output(tmp_path)
    before = snapshot(tmp_path)
    process = PhotomStep.process

    def process_then_drop_a_ctrl_c(self, model):
        result = process(self, model)
        _InterruptedWhileCollected()  # collected at once
        return result

    monkeypatch.setattr(PhotomStep, "process", process_then_drop_a_ctrl_c)
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(u.exc_type))
    status, err = run_inprocess(capsys, ["run", "roman_elp", good, "--output-dir", out])
    assert dropped == []  # Python dropped it, without printing "Exception ignored"
    assert "Step photom running" in err and "Step flatfield running" not in err  # photom's end
    assert_refused(status, err, 130, good.name, r"interrupted by SIGINT .*no output written",
                   before, tmp_path)


def test_failure_after_the_product_leaves_no_half_set(exposure, tmp_path, capsys):
    """--save-parameters into a missing folder: the product is not written either."""
    good = pristine_copy(exposure, tmp_path)
    out = _previous_output(tmp_path)
    before = snapshot(tmp_path)
    status, err = run_inprocess(
        capsys,
        ["run", "roman_elp", good, "--output-dir", out, "--steps.ramp_fit.save_results", "true",
         "--save-parameters", tmp_path / "missing" / "pars.asdf"],
    )
    assert_refused(status, err, 1, "pars.asdf", r"parameter file .* cannot write", before,
                   tmp_path)


def test_parameter_file_that_is_a_fifo_bomb_or_huge(exposure, tmp_path, capsys):
    good = pristine_copy(exposure, tmp_path)
    pipe = tmp_path / "pars_pipe.yaml"
    os.mkfifo(pipe)
    bomb = tmp_path / "pars_bomb.yaml"
    bomb.write_text(laughs() + "\nclass: roman_elp\n")
    huge = tmp_path / "pars_huge.yaml"
    with open(huge, "wb") as fh:
        fh.truncate(1 << 30)  # 1 GiB (sparse): refused before it is read into memory
    for config, fragment in ((pipe, "FIFO"), (bomb, "aliases expand"), (huge, "larger than")):
        before = snapshot(tmp_path)
        status, err = run_inprocess(
            capsys, ["run", "roman_elp", good, "--config", config, "--output-dir", tmp_path / "o"]
        )
        assert_refused(status, err, 1, config.name, fragment, before, tmp_path)
