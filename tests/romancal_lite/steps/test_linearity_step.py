"""Tests of the linearity step: romancal 1.1's read-level correction by default
(romancore.apply_read_level_linearity), the classic polynomial
(romancore.apply_linearity) when no INVERSELINEARITY reference applies."""

import numpy as np
import pytest
from astropy.time import Time

import romancore
from romancal_lite import datamodels
from romancal_lite.errors import ReferenceFileError
from romancal_lite.references import get_reference_file
from romancal_lite.steps.linearity import LinearityStep
from romancore.dqflags import group, pixel

SMALL_SHAPE = (40, 256)  # the full read-out of the builtin_refs cache (conftest)
READ_PATTERN = [[1], [2, 3], [4, 5, 6], [7], [8, 9]]
SHAPE = (len(READ_PATTERN), *SMALL_SHAPE)
LIN_C2 = 1.0e-7  # _content._LIN_C2: corrected = raw + 1e-7 raw**2


def make_ramp(seed=0):
    rng = np.random.default_rng(seed)
    ramp = datamodels.RampModel.create_fake_data(shape=SHAPE)
    meta = ramp.meta
    meta.instrument.detector = "WFI01"
    meta.instrument.optical_element = "F158"
    meta.exposure.start_time = Time("2026-05-01T00:00:00", format="isot", scale="utc")
    meta.exposure.read_pattern = READ_PATTERN
    meta.exposure.nresultants = len(READ_PATTERN)
    meta.exposure.frame_time = 3.16247
    ramp.data = np.sort(rng.uniform(0.0, 50000.0, SHAPE), axis=0).astype(np.float32)
    ramp.groupdq = np.zeros(SHAPE, np.uint8)
    ramp.groupdq[3:, 12, 34] = group.SATURATED
    ramp.pixeldq = np.zeros(SMALL_SHAPE, np.uint32)
    ramp.pixeldq[11, 11] = pixel.HOT
    return ramp


def direct(ramp, coeffs, coeffs_dq):
    data, gdq, pdq = ramp.data.copy(), ramp.groupdq.copy(), ramp.pixeldq.copy()
    romancore.apply_linearity(
        data, gdq, pdq, np.asarray(coeffs, np.float32), np.asarray(coeffs_dq, np.uint32)
    )
    return data, gdq, pdq


def write_linearity(path, coeffs, dq=None):
    ref = datamodels.LinearityRefModel.create_fake_data(shape=coeffs.shape)
    ref.coeffs = coeffs.astype(np.float32)
    if dq is not None:
        ref.dq = dq
    ref.save(str(path))
    return str(path)


CLASSIC = {"override_inverselinearity": "N/A"}


def test_builtin_reference_equals_romancore(builtin_refs):
    ramp = make_ramp()
    raw = ramp.data.copy()
    path = get_reference_file(ramp, "linearity")
    with datamodels.open(path) as ref:
        data, gdq, pdq = direct(ramp, ref.coeffs, ref.dq)
    result = LinearityStep.call(ramp, **CLASSIC)
    assert result is ramp
    np.testing.assert_array_equal(result.data, data)
    np.testing.assert_array_equal(result.groupdq, gdq)
    np.testing.assert_array_equal(result.pixeldq, pdq)
    # the built-in coefficients: raw + 1e-7 raw**2, saturated resultants untouched
    expected = raw + LIN_C2 * raw.astype(np.float64) ** 2
    expected[3:, 12, 34] = raw[3:, 12, 34]
    np.testing.assert_allclose(result.data, expected, rtol=2e-7, atol=1e-3)
    assert not np.array_equal(result.data, raw)
    assert result.pixeldq[11, 11] == pixel.HOT
    assert np.count_nonzero(result.pixeldq) == 1
    assert result.meta.cal_step.linearity == "COMPLETE"
    assert result.meta.ref_file.linearity == path


def test_override_reference_arrays_are_used(builtin_refs, tmp_path):
    rng = np.random.default_rng(2)
    coeffs = np.zeros((4, *SMALL_SHAPE), np.float32)
    coeffs[0] = rng.uniform(-5.0, 5.0, SMALL_SHAPE)
    coeffs[1] = rng.uniform(0.9, 1.1, SMALL_SHAPE)
    coeffs[2] = rng.uniform(0.0, 1e-6, SMALL_SHAPE)
    coeffs[3] = rng.uniform(-1e-12, 1e-12, SMALL_SHAPE)
    coeffs[2, 7, 8] = np.nan
    coeffs[1, 9, 10] = 0.0
    dq = np.zeros(SMALL_SHAPE, np.uint32)
    dq[20, 30] = pixel.NO_LIN_CORR
    dq[21, 31] = pixel.DEAD
    path = write_linearity(tmp_path / "lin.asdf", coeffs, dq)
    ramp = make_ramp(seed=2)
    raw = ramp.data.copy()
    data, gdq, pdq = direct(ramp, coeffs, dq)
    LinearityStep.call(ramp, override_linearity=path, **CLASSIC)
    np.testing.assert_array_equal(ramp.data, data)
    np.testing.assert_array_equal(ramp.groupdq, gdq)
    np.testing.assert_array_equal(ramp.pixeldq, pdq)
    for y, x in ((7, 8), (9, 10), (20, 30)):
        assert ramp.pixeldq[y, x] & pixel.NO_LIN_CORR
        np.testing.assert_array_equal(ramp.data[:, y, x], raw[:, y, x])
    assert ramp.pixeldq[21, 31] == pixel.DEAD
    assert ramp.meta.ref_file.linearity == path


def test_not_applicable_skips(builtin_refs):
    ramp = make_ramp()
    data, pdq = ramp.data.copy(), ramp.pixeldq.copy()
    result = LinearityStep.call(ramp, override_linearity="N/A")
    assert result.meta.cal_step.linearity == "SKIPPED"
    np.testing.assert_array_equal(result.data, data)
    np.testing.assert_array_equal(result.pixeldq, pdq)


def test_not_applicable_via_the_runner_one_warning(builtin_refs, run_cli):
    # every reference overridden: no built-in reference source (and its warning)
    run = run_cli("linearity", make_ramp(), "--override-linearity", "N/A",
                  "--override-inverselinearity", "N/A",
                  "--override-integralnonlinearity", "N/A")
    assert run.status == 0, run.err
    assert len(run.warnings) == 1 and "LINEARITY" in run.warnings[0], run.warnings
    (output,) = run.out.iterdir()
    with datamodels.open(output) as saved:
        assert saved.meta.cal_step.linearity == "SKIPPED"
        np.testing.assert_array_equal(saved.data, make_ramp().data)


def test_wrong_shape_rejected(builtin_refs, tmp_path):
    path = write_linearity(tmp_path / "lin.asdf", np.ones((2, 32, 248), np.float32))
    ramp = make_ramp()
    data = ramp.data.copy()
    with pytest.raises(ReferenceFileError, match="shape"):
        LinearityStep.call(ramp, override_linearity=path, **CLASSIC)
    np.testing.assert_array_equal(ramp.data, data)


# ---------------------------------------------------------------- read-level path
def _ref_arrays(ramp):
    """The built-in LINEARITY, INVERSELINEARITY and INL tables selected for ``ramp``."""
    from romancal_lite.references import open_reference_tree
    from romancal_lite.steps.linearity.linearity_step import read_inl_tables

    with datamodels.open(get_reference_file(ramp, "linearity")) as ref:
        lin, ldq = np.array(ref.coeffs), np.array(ref.dq)
    with datamodels.open(get_reference_file(ramp, "inverselinearity")) as ref:
        ilin = np.array(ref.coeffs)
    path = get_reference_file(ramp, "integralnonlinearity")
    with open_reference_tree(path) as node:
        values, corrections = read_inl_tables(node, SMALL_SHAPE[1], "inl")
    return lin, ldq, ilin, values, corrections


def _read_level(ramp, inl=True):
    lin, ldq, ilin, values, corrections = _ref_arrays(ramp)
    data, gdq, pdq = ramp.data.copy(), ramp.groupdq.copy(), ramp.pixeldq.copy()
    kw = {"inl_values": values, "inl_corrections": corrections} if inl else {}
    romancore.apply_read_level_linearity(data, gdq, pdq, lin, ldq, ilin, READ_PATTERN,
                                         clip=1.0e6, **kw)
    return data, gdq, pdq


def test_read_level_is_the_default(builtin_refs, caplog):
    ramp = make_ramp()
    raw = ramp.data.copy()
    data, gdq, pdq = _read_level(ramp)
    with caplog.at_level("INFO"):
        result = LinearityStep.call(ramp)
    np.testing.assert_array_equal(result.data, data)
    np.testing.assert_array_equal(result.groupdq, gdq)
    np.testing.assert_array_equal(result.pixeldq, pdq)
    assert any("Read-level linearity (INVERSELINEARITY and INTEGRALNONLINEARITY)" in r.message
               for r in caplog.records)
    # not the classic polynomial: the multi-read resultants differ (Jensen + INL)
    classic, _, _ = direct(make_ramp(), *_ref_arrays(ramp)[:2])
    assert np.abs(result.data - classic).max() > 0.5
    assert result.data[3, 12, 34] == raw[3, 12, 34]  # saturated: untouched
    assert result.meta.cal_step.linearity == "COMPLETE"
    for reftype in ("linearity", "inverselinearity", "integralnonlinearity"):
        assert result.meta.ref_file[reftype] == get_reference_file(ramp, reftype)


def test_inl_not_applicable_is_skipped(builtin_refs, caplog):
    ramp = make_ramp()
    data, gdq, pdq = _read_level(ramp, inl=False)
    with caplog.at_level("INFO"):
        LinearityStep.call(ramp, override_integralnonlinearity="N/A")
    np.testing.assert_array_equal(ramp.data, data)
    np.testing.assert_array_equal(ramp.pixeldq, pdq)
    assert any("INTEGRALNONLINEARITY N/A" in r.message for r in caplog.records)
    with_inl, _, _ = _read_level(make_ramp())
    assert 0.05 < np.abs(with_inl - data).max() < 5.0


def test_classic_without_inverse_says_so(builtin_refs, caplog):
    ramp = make_ramp()
    with caplog.at_level("INFO"):
        LinearityStep.call(ramp, **CLASSIC)
    assert any("Classic per-resultant linearity" in r.message for r in caplog.records)


def test_single_resultant_falls_back_to_classic(builtin_refs, caplog):
    ramp = datamodels.RampModel.create_fake_data(shape=(1, *SMALL_SHAPE))
    full = make_ramp()
    ramp.meta = full.meta
    ramp.meta.exposure.read_pattern = [[1, 2]]
    ramp.meta.exposure.nresultants = 1
    ramp.data = full.data[:1].copy()
    ramp.groupdq = np.zeros((1, *SMALL_SHAPE), np.uint8)
    ramp.pixeldq = np.zeros(SMALL_SHAPE, np.uint32)
    with datamodels.open(get_reference_file(ramp, "linearity")) as ref:
        data, _, _ = direct(ramp, ref.coeffs, ref.dq)
    with caplog.at_level("INFO"):
        LinearityStep.call(ramp)
    np.testing.assert_array_equal(ramp.data, data)
    assert any("single resultant" in r.message for r in caplog.records)


def test_bad_inl_reference_one_error(builtin_refs, tmp_path):
    import asdf

    path = get_reference_file(make_ramp(), "integralnonlinearity")
    with asdf.open(path, lazy_load=False, memmap=False) as af:
        tree = {"roman": af.tree["roman"]}
        del tree["roman"]["inl_table"]["science_channel_02"]
        bad = tmp_path / "inl_missing_channel.asdf"
        asdf.AsdfFile(tree).write_to(bad)
    ramp = make_ramp()
    raw = ramp.data.copy()
    with pytest.raises(ReferenceFileError, match="science_channel_02"):
        LinearityStep.call(ramp, override_integralnonlinearity=str(bad))
    np.testing.assert_array_equal(ramp.data, raw)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_matches_romancal_step(builtin_refs):
    """romancal 1.1's LinearityStep on the same resultants and reference files."""
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    official = pytest.importorskip("romancal.linearity")
    ramp = make_ramp(seed=5)
    ramp.data[1:, 20, 100] = 3.0e6  # beyond romancal's +-1e6 clip
    theirs = rdm.RampModel.create_fake_data(shape=SHAPE)
    theirs.meta.exposure.read_pattern = READ_PATTERN
    theirs.data = ramp.data.copy()
    theirs.groupdq = ramp.groupdq.copy()
    theirs.pixeldq = ramp.pixeldq.copy()
    overrides = {f"override_{t}": get_reference_file(ramp, t)
                 for t in ("linearity", "inverselinearity", "integralnonlinearity")}
    theirs = official.LinearityStep.call(theirs, **overrides)
    LinearityStep.call(ramp, **overrides)
    np.testing.assert_array_equal(ramp.data, theirs.data)  # tolerance: none
    np.testing.assert_array_equal(ramp.groupdq, theirs.groupdq)
    np.testing.assert_array_equal(ramp.pixeldq, theirs.pixeldq)
    assert ramp.groupdq[1, 20, 100] & group.DO_NOT_USE


def test_mapped_references_by_row_blocks_same_result(builtin_refs, monkeypatch):
    """Memory-mapped references (the built-in files are uncompressed): the correction runs
    by row blocks and hands each block's coefficient pages back, with the same result."""
    from romancal_lite.steps.linearity import linearity_step

    ramp = make_ramp()
    data, gdq, pdq = _read_level(ramp)
    released = []
    real = linearity_step.release_rows
    monkeypatch.setattr(linearity_step, "LINEARITY_BLOCK_ROWS", 7)
    monkeypatch.setattr(linearity_step, "release_rows",
                        lambda a, r0, r1: released.append((a.shape, r0, r1)) or real(a, r0, r1))
    result = LinearityStep.call(ramp)
    np.testing.assert_array_equal(result.data, data)
    np.testing.assert_array_equal(result.groupdq, gdq)
    np.testing.assert_array_equal(result.pixeldq, pdq)
    ny = ramp.data.shape[1]
    blocks = sorted({(r0, r1) for _, r0, r1 in released})
    assert blocks == [(r0, min(r0 + 7, ny)) for r0 in range(0, ny, 7)]
    assert len(released) == 3 * len(blocks)  # coefficients, their dq, inverse coefficients


def test_inl_reference_opened_once(builtin_refs, monkeypatch):
    # checked and read in one open of the file (one parse and validation of its tree)
    from romancal_lite import datamodels as dm
    from romancal_lite.datamodels import _core

    ramp = make_ramp()
    inl = get_reference_file(ramp, "integralnonlinearity")
    opened = []
    real = _core.open_asdf_file

    def counting(path, **kwargs):
        opened.append(str(path))
        return real(path, **kwargs)

    monkeypatch.setattr(_core, "open_asdf_file", counting)
    monkeypatch.setattr(dm, "open_asdf_file", counting)
    want, _, _ = _read_level(make_ramp())
    opened.clear()
    result = LinearityStep.call(ramp)
    np.testing.assert_array_equal(result.data, want)
    assert opened.count(str(inl)) == 1
