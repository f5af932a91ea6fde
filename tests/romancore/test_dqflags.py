"""dqflags.py is the single source of truth; _dqflags.pxd mirrors some values for the
compiled kernels and must agree with it."""

import re
from pathlib import Path

import pytest

import romancore
from romancore import dqflags

PXD = Path(romancore.__file__).with_name("_dqflags.pxd")


def _pxd_enum():
    text = PXD.read_text()
    block = re.search(r"cdef\s+enum\s*:\s*\n((?:[ \t]+.*\n?)+)", text)
    assert block, "no cdef enum block in _dqflags.pxd"
    values = {}
    for line in block.group(1).splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"(DQ_\w+)\s*=\s*(\d+)", line)
        assert m, f"unexpected line in _dqflags.pxd enum: {line!r}"
        values[m.group(1)] = int(m.group(2))
    return values


def test_pxd_mirror_matches_dqflags():
    values = _pxd_enum()
    # every flag the kernels use is mirrored
    assert {"DQ_DO_NOT_USE", "DQ_SATURATED", "DQ_JUMP_DET", "DQ_AD_FLOOR",
            "DQ_NO_LIN_CORR", "DQ_NO_SAT_CHECK"} <= set(values)
    for name, value in values.items():
        flag = name.removeprefix("DQ_")
        assert value == dqflags.pixel[flag].value, name
        if value < 256:
            assert value == dqflags.group[flag].value, name


@pytest.mark.parametrize(
    ("name", "value"),
    [("DO_NOT_USE", 1), ("SATURATED", 2), ("JUMP_DET", 4), ("DROPOUT", 8),
     ("AD_FLOOR", 64), ("OUTLIER", 128), ("NO_LIN_CORR", 1048576),
     ("NO_SAT_CHECK", 2097152), ("REFERENCE_PIXEL", 2**31)],
)
def test_documented_values(name, value):
    # romancal "Data Quality Flags" table (seeds/000:5633+)
    assert dqflags.pixel[name] == value


def test_group_flags_are_first_eight_pixel_flags():
    assert {f.name: f.value for f in dqflags.group} == {
        f.name: f.value for f in dqflags.pixel if f.value < 256}
    assert max(f.value for f in dqflags.group) < 256
    # single bits, no duplicates
    values = [f.value for f in dqflags.pixel if f.value]
    assert len(set(values)) == len(values)
    assert all(v & (v - 1) == 0 for v in values)
