"""Steps accept ramps whose arrays are strided or read-only (files other software wrote)."""

import os

import numpy as np

from romancal_lite import datamodels
from romancal_lite.steps._arrays import writable_contiguous
from romancal_lite.steps.linearity import LinearityStep
from romancal_lite.steps.ramp_fit import RampFitStep
from romancal_lite.steps.refpix import RefPixStep
from romancal_lite.steps.saturation import SaturationStep

SMALL_SHAPE = (40, 256)  # the read-out shape of the builtin_refs cache (conftest.py)


def _ramp():
    n = 5
    ramp = datamodels.RampModel.create_fake_data(shape=(n, *SMALL_SHAPE))
    ramp.meta.exposure.read_pattern = [[1], [2, 3], [4, 5, 6], [7], [8, 9]]
    ramp.meta.exposure.frame_time = 3.16247
    ramp.meta.exposure.start_time = "2026-06-01T00:00:00"
    ramp.meta.instrument.detector = "WFI01"
    ramp.meta.instrument.optical_element = "F158"
    t = np.array([1.0, 2.5, 5.0, 7.0, 8.5])[:, None, None]
    base = (1000.0 + 20.0 * t * np.ones(SMALL_SHAPE)).astype(np.float32)
    # strided (every other element of a bigger array) and read-only
    wide = np.zeros((n, SMALL_SHAPE[0], 2 * SMALL_SHAPE[1]), np.float32)
    wide[:, :, ::2] = base
    strided = wide[:, :, ::2]
    strided.flags.writeable = False
    ramp.data = strided
    ramp.amp33 = np.zeros((n, SMALL_SHAPE[0], 128), np.uint16)  # amp33 is 128 wide
    gdq = np.zeros((n, *SMALL_SHAPE), np.uint8)
    gdq.flags.writeable = False
    ramp.groupdq = gdq
    return ramp, base


def test_writable_contiguous_copies_only_when_needed():
    ramp, base = _ramp()
    good = np.zeros(SMALL_SHAPE, np.uint32)
    ramp.pixeldq = good
    writable_contiguous(ramp, "data", "groupdq", "pixeldq")
    assert ramp.pixeldq is good
    assert ramp.data.flags.c_contiguous and ramp.data.flags.writeable
    assert ramp.groupdq.flags.writeable
    np.testing.assert_array_equal(ramp.data, base)


def test_steps_run_on_strided_read_only_ramp(builtin_refs):
    ramp, _ = _ramp()
    for step in (SaturationStep, RefPixStep, LinearityStep):
        ramp = step.call(ramp)
    image = RampFitStep.call(ramp)
    assert image.meta.cal_step.ramp_fit == "COMPLETE"
    assert np.isfinite(image.data).all()


def test_releasable_rows_go_back_and_read_as_zeros():
    from romancal_lite.steps._arrays import empty_releasable, release_rows

    cube = empty_releasable((3, 64, 1024), np.float32)  # a row is one 4 KiB page
    assert not cube.any() and cube.flags.c_contiguous and cube.flags.writeable
    cube[...] = 7.0
    released = release_rows(cube, 10, 20)
    assert released == 3 * 10 * 1024 * 4
    assert not cube[:, 10:20].any()
    assert (cube[:, :10] == 7).all() and (cube[:, 20:] == 7).all()
    # an ordinary array is never touched
    plain = np.full((3, 64, 1024), 7.0, np.float32)
    assert release_rows(plain, 10, 20) == 0 and (plain == 7).all()


def test_released_rows_of_a_file_map_read_the_file_again(tmp_path):
    """A read-only map of a file (a reference through the uncompressed cache)."""
    import mmap

    from romancal_lite.steps._arrays import is_memory_mapped, release_rows

    values = np.arange(3 * 64 * 1024, dtype=np.float32).reshape(3, 64, 1024)
    path = tmp_path / "arrays.bin"
    header = 3 * mmap.PAGESIZE + 100  # the array does not start at the map's start
    path.write_bytes(b"\0" * header + values.tobytes())
    with open(path, "rb") as fh:
        mapped_file = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    cube = np.frombuffer(mapped_file, dtype=np.float32, offset=header).reshape(values.shape)
    assert is_memory_mapped(cube) and not is_memory_mapped(values)
    assert float(cube[:, 10:20].sum()) == float(values[:, 10:20].sum())  # touched
    released = release_rows(cube, 10, 20)
    # the rows are 4 KiB but not page-aligned here: 9 whole pages per plane
    assert released == 3 * 9 * mmap.PAGESIZE
    np.testing.assert_array_equal(cube, values)  # read again from the file
    image = cube[0]
    assert release_rows(image, 0, 64) > 0
    np.testing.assert_array_equal(image, values[0])


def _vm_flags(array):
    """The kernel's VmFlags of the mapping holding ``array`` (/proc/self/smaps)."""
    address = array.ctypes.data
    inside = False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                start, stop = (int(v, 16) for v in head.split("-"))
                inside = start <= address < stop
            elif inside and line.startswith("VmFlags:"):
                return set(line.split()[1:])
    return set()


def test_file_arrays_for_scattered_reads_are_advised_random():
    """scattered_reads: MADV_RANDOM on the file's map before anything is written ("rr")."""
    import os

    import pytest

    from romancal_lite.steps._arrays import (
        advise_scattered,
        file_array,
        release_rows,
        rows_in_file,
    )

    if not os.path.exists("/proc/self/smaps"):
        pytest.skip("needs Linux /proc/self/smaps")
    plain = file_array((64, 1024), np.float32)
    scattered = file_array((64, 1024), np.float32, scattered_reads=True)
    assert "rr" not in _vm_flags(plain) and "rr" in _vm_flags(scattered)
    filled = rows_in_file((40, 1024), np.float64, lambda a, b: np.full((b - a, 1024), a),
                          rows=16, scattered_reads=True)
    assert "rr" in _vm_flags(filled)
    release_rows(filled, 0, 40)
    np.testing.assert_array_equal(filled[:, 0], np.repeat([0.0, 16.0, 32.0], [16, 16, 8]))
    assert advise_scattered(plain) and "rr" in _vm_flags(plain)
    assert not advise_scattered(np.zeros(10))


_FREED_HEAP_SCRIPT = """
import sys
import numpy as np
from romancal_lite.steps._arrays import return_freed_memory


def rss_anon():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


big = np.ones(8 << 20, np.uint8)  # freed: glibc's mmap threshold grows to 8 MB
del big
arrays, keep = [], []
for _ in range(40):  # from the heap now, each followed by a small array kept
    arrays.append(np.ones(4 << 20, np.uint8))
    keep.append(np.ones(256 << 10, np.uint8))
held = rss_anon()
del arrays
before = rss_anon()
if not return_freed_memory():
    print("skip")
    sys.exit(0)
after = rss_anon()
print(held, before, after)
"""


def test_freed_heap_memory_goes_back_to_the_os():
    """`return_freed_memory`: arrays freed below glibc's grown mmap threshold stay with
    the process until it is called (resample calls it between staging and its bands).
    Run in a fresh interpreter: the heap of a process that ran other tests may already
    have grown thresholds or trimmed itself."""
    import subprocess
    import sys

    import pytest

    if not os.path.exists("/proc/self/status"):
        pytest.skip("no /proc/self/status")
    # glibc's thresholds fixed (its defaults move with what the process did): 4 MB
    # arrays from the heap, and free() never trims it by itself
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(32 << 20),
               MALLOC_TRIM_THRESHOLD_=str(1 << 32))
    out = subprocess.run([sys.executable, "-c", _FREED_HEAP_SCRIPT], capture_output=True,
                         text=True, check=True, env=env).stdout.split()
    if out == ["skip"]:
        pytest.skip("not glibc, or nothing to return")
    held, before, after = map(int, out)
    if held - before >= 80 << 20:
        # this glibc (or its tunables in the environment) gave the freed arrays back
        # at once: nothing is left for return_freed_memory to return
        pytest.skip(f"the heap was trimmed at free ({held} -> {before} bytes)")
    assert before - after > 80 << 20, (held, before, after)
