"""romancore.to_float16: NumPy's float32 -> float16 cast, bit for bit, without its slow path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from romancore import to_float16


def _numpy_bits(values: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow to inf
        return values.astype(np.float16).view(np.uint16)


def _every_exponent_sample(rng: np.random.Generator, per_exponent: int) -> np.ndarray:
    """Bit patterns covering every sign and exponent, with tie and edge mantissas."""
    exponents = np.arange(256, dtype=np.uint32) << 23
    mantissas = [
        rng.integers(0, 1 << 23, size=per_exponent, dtype=np.uint32),
        # float16 keeps 10 of 23 mantissa bits: the 13 dropped bits at exactly one half
        # (ties), just below and just above it, with even and odd kept parts
        np.array([0x1000, 0x0FFF, 0x1001, 0x3000, 0x2FFF, 0x3001, 0x7FE000, 0x7FF000,
                  0x7FFFFF, 0x000001, 0x000000, 0x400000, 0x002000, 0x0007FF, 0x000800],
                 dtype=np.uint32),
    ]
    mant = np.concatenate(mantissas)
    bits = (exponents[:, None] | mant[None, :]).ravel()
    return np.concatenate([bits, bits | np.uint32(0x80000000)])


def test_matches_numpy_on_every_exponent() -> None:
    rng = np.random.default_rng(16)
    bits = _every_exponent_sample(rng, 2000)
    values = bits.view(np.float32)
    got = to_float16(values).view(np.uint16)
    expected = _numpy_bits(values)
    bad = np.flatnonzero(got != expected)
    assert bad.size == 0, [(hex(bits[i]), hex(got[i]), hex(expected[i])) for i in bad[:5]]


@pytest.mark.parametrize(
    ("bits", "half"),
    [
        (0x3F800000, 0x3C00),  # 1.0
        (0x477FE000, 0x7BFF),  # 65504, the largest half
        (0x477FF000, 0x7C00),  # 65520: rounds up to infinity
        (0x477FEFFF, 0x7BFF),  # just below the overflow tie
        (0x38800000, 0x0400),  # 2**-14, the smallest normal half
        (0x387FC000, 0x03FF),  # the largest subnormal half
        (0x33800000, 0x0001),  # 2**-24, the smallest subnormal half
        (0x33000000, 0x0000),  # 2**-25: a tie, to even (zero)
        (0x33000001, 0x0001),  # just above it
        (0x3F801000, 0x3C00),  # 1 + 2**-11: tie, stays on the even 1.0
        (0x3F803000, 0x3C02),  # 1 + 3 * 2**-11: tie, to the even 1 + 2**-9
        (0x80000000, 0x8000),  # -0
        (0xFF800000, 0xFC00),  # -inf
        (0x7FC00000, 0x7E00),  # quiet NaN
        (0x7F800001, 0x7C01),  # a NaN whose payload is only in the dropped bits
        (0xFFC00001, 0xFE00),  # negative NaN
    ],
)
def test_hand_computed(bits: int, half: int) -> None:
    value = np.array([bits], dtype=np.uint32).view(np.float32)
    assert to_float16(value).view(np.uint16)[0] == half
    assert _numpy_bits(value)[0] == half


def test_shape_layout_and_threads() -> None:
    rng = np.random.default_rng(3)
    cube = (rng.standard_normal((3, 70, 90)) * 1e-5).astype(np.float32)
    expected = _numpy_bits(cube)
    for n_threads in (1, 2, 3):
        out = to_float16(cube, n_threads=n_threads)
        assert out.shape == cube.shape and out.dtype == np.float16
        np.testing.assert_array_equal(out.view(np.uint16), expected)
    view = cube[:, 5:-5, ::2]  # not contiguous
    np.testing.assert_array_equal(to_float16(view).view(np.uint16), _numpy_bits(view))
    assert to_float16(np.empty((0, 4), np.float32)).shape == (0, 4)


def test_rejects_other_dtypes() -> None:
    with pytest.raises(ValueError, match="float32"):
        to_float16(np.zeros(4, np.float64))
    with pytest.raises(ValueError, match="numpy array"):
        to_float16([1.0, 2.0])


@pytest.mark.parametrize("n_threads", [1, 2])
def test_scale_float16_is_numpys_product_for_every_half(n_threads: int) -> None:
    """All 65536 float16 values (subnormals, infinities, NaNs with payloads) times
    factors that underflow, overflow, round, or are special: numpy's float32 product
    cast to float16, bit for bit."""
    from romancore import scale_float16

    values = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    with np.errstate(all="ignore"):
        for factor in (0.5, 3.7e-3, 1.0, -1.5, 1e5, 1e-9, 0.0, -0.0, np.inf, np.nan,
                       -np.nan, 65504.0, 1 / 3):
            want = np.multiply(values, np.float32(factor), dtype=np.float32).astype(np.float16)
            got = scale_float16(values.reshape(256, 256)[:, ::-1], factor, n_threads=n_threads)
            assert got.shape == (256, 256) and got.dtype == np.float16
            np.testing.assert_array_equal(
                got.view(np.uint16), want.reshape(256, 256)[:, ::-1].view(np.uint16))
    with pytest.raises(ValueError, match="float16"):
        scale_float16(np.zeros(3, np.float32), 2.0)
    assert scale_float16(np.zeros((0, 3), np.float16), 2.0).shape == (0, 3)


@pytest.mark.parametrize("factor", [1.0, 3.1e-3**2, 0.5, 1234.5, 7.7e-6, 2.0**-30, 65504.0,
                                    -0.37, 1e30, 0.0])  # fmt: skip
def test_widened_scale_float16_is_numpys_recipe_for_every_half(factor):
    """Every float16 (NaNs, infinities, subnormals, signed zeros) times a factor,
    rounded to float16 and widened: NumPy's three steps bit for bit."""
    from romancore.half import scale_float16

    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    values = halves.reshape(256, 256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow to inf
        expected = np.multiply(values, np.float32(factor), dtype=np.float32)
        expected = expected.astype(np.float16).astype(np.float32)
    for n_threads in (1, 2):
        got = scale_float16(values, factor, widen=True, n_threads=n_threads)
        assert got.dtype == np.float32 and got.shape == values.shape
        assert got.view(np.uint32).tobytes() == expected.view(np.uint32).tobytes()
    strided = scale_float16(values[:, ::3], factor, widen=True)  # copied first
    assert strided.view(np.uint32).tobytes() == expected[:, ::3].view(np.uint32).tobytes()
    flat = scale_float16(halves, factor, widen=True)  # any shape
    assert flat.view(np.uint32).tobytes() == expected.reshape(-1).view(np.uint32).tobytes()


def test_widened_scale_float16_refuses_other_dtypes():
    from romancore.half import scale_float16

    with pytest.raises(ValueError, match="float16"):
        scale_float16(np.zeros((2, 2), np.float32), 1.0, widen=True)
    with pytest.raises(ValueError, match="float16"):
        scale_float16(np.zeros((2, 2), ">f2"), 1.0, widen=True)
