"""Untrusted files and all-or-nothing outputs (``datamodels._files``, ``_validate``)."""

import os
import signal
import time

import numpy as np
import pytest

from romancal_lite import datamodels
from romancal_lite.datamodels import _files
from romancal_lite.datamodels._files import atomic_write, deferred_outputs, scan_asdf_tree
from romancal_lite.errors import InputFileError, NoScienceDataError, OutputError

HEADER = b"#ASDF 1.0.0\n%YAML 1.1\n%TAG ! tag:stsci.edu:asdf/\n--- !core/asdf-1.1.0\n"


def laughs(levels: int) -> bytes:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return HEADER + "\n".join(lines).encode() + b"\n...\n"


def files_in(path):
    return sorted(p.name for p in path.iterdir())


# ---------------------------------------------------------------------- YAML guard


def test_alias_expansion_is_counted_exactly(monkeypatch):
    # a0 is 11 nodes, each *a0 alias adds 10 more: a1 adds 100 nodes through aliases
    monkeypatch.setattr(_files, "MAX_ALIAS_NODES", 100)
    scan_asdf_tree(laughs(1), "ok.asdf")
    monkeypatch.setattr(_files, "MAX_ALIAS_NODES", 99)
    with pytest.raises(InputFileError, match=r"^bomb.asdf: YAML aliases expand .* 99 nodes"):
        scan_asdf_tree(laughs(1), "bomb.asdf")


def test_a_bomb_of_ten_to_the_thirty_nodes_is_refused_at_once():
    start = time.monotonic()
    with pytest.raises(InputFileError, match="alias bomb"):
        scan_asdf_tree(laughs(30), "bomb.asdf")
    assert time.monotonic() - start < 1


def test_shared_nodes_written_by_asdf_are_fine():
    scan_asdf_tree(HEADER + b"a: &x {b: 1, c: [1, 2]}\nd: *x\ne: *x\n...\n", "shared.asdf")


@pytest.mark.parametrize(
    ("yaml", "match"),
    [
        (b"a: &r [1, *r]\n", "recursive"),
        (b"a: &r {b: {c: *r}}\n", "recursive"),
        (b"a: " + b"[" * 201 + b"]" * 201 + b"\n", "nests deeper than 200 levels"),
        (b"a: [unclosed\n", "not valid YAML"),
    ],
)
def test_recursive_deep_or_invalid_trees(yaml, match):
    with pytest.raises(InputFileError, match=match):
        scan_asdf_tree(HEADER + yaml + b"...\n", "x.asdf")


def test_depth_200_is_accepted():
    scan_asdf_tree(HEADER + b"a: " + b"[" * 199 + b"]" * 199 + b"\n...\n", "x.asdf")


def test_the_yaml_part_stops_at_the_first_block(tmp_path):
    path = tmp_path / "x.asdf"
    path.write_bytes(HEADER + b"a: 1\n" + _files._BLOCK_MAGIC + b"\x00\xff garbage")
    with open(path, "rb") as fh:
        assert _files.read_yaml_part(fh, "x") == HEADER + b"a: 1\n"


# ---------------------------------------------------------------------- regular files


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: os.mkfifo(p), "a FIFO"),
        (lambda p: p.mkdir(), "a directory"),
        (lambda p: p.symlink_to("/dev/null"), "a character device"),
    ],
    ids=["fifo", "directory", "device"],
)
def test_non_regular_files_are_named_and_never_block(make, kind, tmp_path):
    path = tmp_path / "x.asdf"
    make(path)
    start = time.monotonic()
    with pytest.raises(InputFileError, match=f"x.asdf: is {kind}"):
        datamodels.open(path)
    assert time.monotonic() - start < 5


def test_ctrl_c_as_the_file_object_is_made_stays_a_ctrl_c(tmp_path, monkeypatch):
    # Ctrl-C delivered just after fdopen has made the file object: the object
    # is dropped (closing the descriptor); the descriptor must not be closed a
    # second time (EBADF then replaced the KeyboardInterrupt: seen in CI).
    path = tmp_path / "x.asdf"
    path.write_bytes(b"#ASDF 1.0.0\n")
    real_fdopen = os.fdopen

    def fdopen_then_interrupt(fd, *args, **kwargs):
        real_fdopen(fd, *args, **kwargs).close()
        raise KeyboardInterrupt

    monkeypatch.setattr(_files.os, "fdopen", fdopen_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _files.open_regular_file(path)


def test_model_round_trip_through_hash_and_percent_names(tmp_path):
    folder = tmp_path / "out#1%20"
    folder.mkdir()
    (tmp_path / "out").write_bytes(b"precious")
    model = datamodels.ScienceRawModel.create_fake_data(shape=(2, 16, 16))
    model.data[...] = 7
    model.save(folder / "a%41#b_uncal.asdf")
    assert files_in(folder) == ["a%41#b_uncal.asdf"]
    assert (tmp_path / "out").read_bytes() == b"precious"
    with datamodels.open(folder / "a%41#b_uncal.asdf") as back:
        assert back.meta.filename == "a%41#b_uncal.asdf"
        assert np.all(back.data == 7)


# ---------------------------------------------------------------------- outputs


def _writer(text):
    return lambda fh: fh.write(text)


def test_deferred_outputs_appear_together_at_the_end(tmp_path):
    with deferred_outputs():
        atomic_write(tmp_path / "a", _writer(b"A"))
        atomic_write(tmp_path / "b", _writer(b"B"))
        assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert files_in(tmp_path) == ["a", "b"]


def test_a_failure_leaves_nothing_and_the_previous_output_intact(tmp_path):
    (tmp_path / "a").write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt), deferred_outputs():
        atomic_write(tmp_path / "a", _writer(b"new"))
        atomic_write(tmp_path / "b", _writer(b"B"))
        raise KeyboardInterrupt
    assert files_in(tmp_path) == ["a"]
    assert (tmp_path / "a").read_bytes() == b"previous"


def test_an_interrupted_write_leaves_no_temporary(tmp_path):
    def write(fh):
        fh.write(b"half")
        os.kill(os.getpid(), signal.SIGINT)
        fh.write(b" never")

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "a", write)
    assert files_in(tmp_path) == []


def test_ctrl_c_while_the_temporary_is_made_leaves_no_temporary(tmp_path, monkeypatch):
    # The signal arrives while mkstemp runs (held back there): it is delivered as
    # the held block ends, and the temporary just made must still be removed.
    real_mkstemp = _files.tempfile.mkstemp

    def mkstemp_then_signal(*args, **kwargs):
        made = real_mkstemp(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return made

    monkeypatch.setattr(_files.tempfile, "mkstemp", mkstemp_then_signal)
    written = []
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "a", written.append)
    assert files_in(tmp_path) == [] and written == []


def test_nested_blocks_commit_with_the_outermost(tmp_path):
    with pytest.raises(RuntimeError), deferred_outputs():
        with deferred_outputs():
            atomic_write(tmp_path / "inner", _writer(b"1"))
        assert "inner" not in files_in(tmp_path)  # waits for the outer block
        raise RuntimeError("later failure")
    assert files_in(tmp_path) == []


def test_written_twice_the_last_wins(tmp_path):
    with deferred_outputs():
        atomic_write(tmp_path / "a", _writer(b"first"))
        atomic_write(tmp_path / "a", _writer(b"second"))
    assert files_in(tmp_path) == ["a"] and (tmp_path / "a").read_bytes() == b"second"


def test_undeferred_write_is_immediate(tmp_path):
    with pytest.raises(RuntimeError), deferred_outputs():
        atomic_write(tmp_path / "cache", _writer(b"c"), defer=False)
        assert (tmp_path / "cache").read_bytes() == b"c"
        raise RuntimeError
    assert files_in(tmp_path) == ["cache"]


def test_directories_created_for_a_failed_run_are_removed(tmp_path):
    new = tmp_path / "x" / "y"
    with pytest.raises(RuntimeError), deferred_outputs():
        new.mkdir(parents=True)
        _files.created_directories([tmp_path / "x", new])
        raise RuntimeError
    assert files_in(tmp_path) == []


def test_unwritable_destination_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="missing/a: cannot write"):
        atomic_write(tmp_path / "missing" / "a", _writer(b"A"))


# ---------------------------------------------------------------------- validate_exposure


def _raw(**arrays):
    model = datamodels.ScienceRawModel.create_fake_data(shape=(3, 16, 16))
    model.meta.exposure.read_pattern = [[1], [2], [3]]
    model.meta.exposure.frame_time = 3.04
    for name, value in arrays.items():
        model[name] = value
    return model


def test_a_valid_raw_exposure_passes():
    datamodels.validate_exposure(_raw())
    datamodels.validate_exposure(_raw(data=np.zeros((3, 16, 16), ">u2")))  # any byte order


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"data": np.zeros((3, 16, 16), np.float32)}, "data type float32; the ScienceRawModel"),
        ({"data": np.zeros((3, 16, 16), np.int8)}, "data type int8"),
        ({"resultantdq": np.zeros((3, 16, 15), np.uint8)}, "'resultantdq' has shape"),
        ({"reference_read": np.zeros((16, 15), np.uint16)}, "'reference_read' has shape"),
    ],
)
def test_raw_arrays_the_schema_forbids(arrays, match):
    with pytest.raises(InputFileError, match=match):
        datamodels.validate_exposure(_raw(**arrays), "x_uncal.asdf")


def test_ramp_data_must_be_float32():
    ramp = datamodels.RampModel.create_fake_data(shape=(3, 16, 16))
    ramp.meta.exposure.read_pattern = [[1], [2], [3]]
    ramp.meta.exposure.frame_time = 3.04
    datamodels.validate_exposure(ramp)
    ramp.data = ramp.data.astype(np.float64)
    with pytest.raises(InputFileError, match="float64; the RampModel schema requires float32"):
        datamodels.validate_exposure(ramp)


@pytest.mark.parametrize("shape", [(0, 16, 16), (3, 8, 16), (3, 16, 8)])
def test_no_science_pixel_is_exit_64(shape):
    model = _raw(data=np.zeros(shape, np.uint16), amp33=np.zeros((*shape[:2], 128), np.uint16))
    with pytest.raises(NoScienceDataError) as info:
        datamodels.validate_exposure(model, "x_uncal.asdf")
    assert info.value.exit_status == 64


def test_a_guide_window_has_no_border():
    model = _raw(data=np.zeros((3, 8, 8), np.uint16), amp33=np.zeros((3, 8, 128), np.uint16))
    model.meta.exposure.type = "WFI_WIM_TRACK"
    datamodels.validate_exposure(model)


def test_a_huge_tree_is_refused_before_it_is_held(tmp_path, monkeypatch):
    monkeypatch.setattr(_files, "MAX_YAML_BYTES", 1 << 20)
    path = tmp_path / "big.asdf"
    with open(path, "wb") as fh:
        fh.write(HEADER + b"a: [")
        fh.write(b"0, " * (1 << 20))  # 3 MiB of tree, no end
    with pytest.raises(InputFileError, match=r"big.asdf: the metadata tree is larger than 1 MiB"):
        datamodels.open(path)
