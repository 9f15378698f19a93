"""Every compiled u8 x s8 GEMM variant usable at the ISA level under test against the scalar reference, bit for bit,
over awkward shapes: M, N, K not multiples of the tiles (4 x 24 for AVX2, 6 x 64 for VNNI), K = 1, M = 1, odd K,
zero points, 1 and 2 threads (the threaded split must not change a single bit), the values that saturate
onnxruntime's AVX2 kernel, K near QGEMM_MAX_K; and the activation quantizer's variants against its reference.

Variant lists are decided at test time (the ISA ceiling, ONNXQ_MAX_ISA, hides the vector kernels): every test runs
once per ISA level (every_isa) and checks the variants that level allows. The AVX2 kernel has three paths, all
covered here: the sign trick (fewer than 16 rows, no weight is -128), in-register widening (fewer than 4 rows with
a -128 weight) and the prefill tiles (the rest), so weights alternate between [-128, 127] and [-127, 127].
"""

from __future__ import annotations

import numpy as np
import pytest

from onnxq import _kernels
from onnxq.cpu import isa_at_least, isa_level

pytestmark = pytest.mark.every_isa

KNOWN_VARIANTS = ("avx2", "avx512vnni", "amx")
SHAPES = [
    (1, 1, 1), (1, 4, 16), (2, 3, 5), (5, 7, 63), (6, 64, 64), (7, 65, 65), (13, 130, 100), (1, 768, 129),
    (37, 33, 200), (12, 257, 24), (25, 1, 97), (64, 768, 64), (3, 4097, 17),
]
GRID_M = [1, 2, 3, 5, 7, 13, 64, 129]
GRID_K = [1, 2, 3, 4, 5, 31, 33, 768, 1023]
GRID_N = [1, 7, 23, 24, 25, 65, 100]


def _variants() -> list[str]:
    """The vector variants usable now (at test time: the ceiling is set per test)."""
    return [k for k in _kernels.qgemm_u8s8_kernels() if k != "ref"]


def _variants_or_skip() -> list[str]:
    variants = _variants()
    if not variants:
        pytest.skip(f"no vector u8 x s8 GEMM variant at ISA level {isa_level()} (only the reference)")
    return variants


def _check(a, a_zp, b, b_zp, scale, bias, threads=(1,), err=""):  # type: ignore[no-untyped-def]
    want = _kernels.qgemm_u8s8(a, a_zp, b, b_zp, scale, bias, kernel="ref")
    for kernel in _variants():
        for t in threads:
            got = _kernels.qgemm_u8s8(a, a_zp, b, b_zp, scale, bias, kernel=kernel, threads=t)
            np.testing.assert_array_equal(got, want, err_msg=f"{kernel} threads={t} {err}")
    return want


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("zero_points", ["none", "per_column"])
def test_variant_equals_reference(m, k, n, zero_points):
    _variants_or_skip()
    rng = np.random.default_rng(hash((m, k, n)) % 2**32)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    b_zp = rng.integers(-7, 8, n).astype(np.int8) if zero_points == "per_column" else np.zeros(1, np.int8)
    scale = rng.uniform(1e-4, 1e-2, n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    a_zp = int(rng.integers(0, 256))
    _check(a, a_zp, b, b_zp, scale, bias, threads=(1, 2))
    _check(a, a_zp, b, b_zp, scale, None)


@pytest.mark.parametrize("m", GRID_M)
def test_variants_equal_reference_over_awkward_shapes(m):
    """Every (K, N) of the grid for this M, cycling the weight range (with and without -128), the zero points
    (none, per column, per tensor; weight zero points over the whole s8 range) and bias / no bias."""
    _variants_or_skip()
    rng = np.random.default_rng(1000 + m)
    case = 0
    for k in GRID_K:
        for n in GRID_N:
            lo = -128 if case % 2 == 0 else -127
            a = rng.integers(0, 256, (m, k), dtype=np.uint8)
            b = rng.integers(lo, 128, (k, n), dtype=np.int8)
            zp_kind = case % 3
            if zp_kind == 0:
                b_zp = np.zeros(1, np.int8)
            elif zp_kind == 1:
                b_zp = rng.integers(-128, 128, n).astype(np.int8)
            else:
                b_zp = np.array([rng.integers(-128, 128)], np.int8)
            scale = rng.uniform(1e-4, 1e-1, n).astype(np.float32)
            bias = rng.standard_normal(n).astype(np.float32) if case % 4 < 2 else None
            a_zp = int(rng.integers(0, 256))
            threads = (1, 2) if k * n >= 768 * 24 else (1,)
            _check(a, a_zp, b, b_zp, scale, bias, threads, err=f"m={m} k={k} n={n} lo={lo} zp={zp_kind}")
            case += 1


@pytest.mark.parametrize("m", [1, 2, 3, 5, 15, 16, 64])
@pytest.mark.parametrize("k", [768, 1023])
def test_saturating_values_are_exact(m, k):
    """The pairs that saturate vpmaddubsw's int16 sums (255 * 127 twice; 255 * -128 twice), and the sign trick's
    extremes (a = 0 is a - 128 = -128, |.| = 128, times -127 flipped to 127)."""
    _variants_or_skip()
    n = 65
    scale = np.ones(n, np.float32)
    zp0 = np.zeros(1, np.int8)
    for a_val, b_val in ((255, -128), (255, 127), (255, -127), (0, -127), (0, 127), (0, -128), (128, -128)):
        a = np.full((m, k), a_val, np.uint8)
        b = np.full((k, n), b_val, np.int8)
        want = _check(a, 0, b, zp0, scale, None, err=f"a={a_val} b={b_val}")
        assert want[0, 0] == np.float32(a_val * b_val * k)
    # alternating extremes along K: every pair of products has the same sign and the largest magnitude
    a = np.tile(np.array([255, 255, 0, 0], np.uint8), (m, k // 4 + 1))[:, :k]
    b = np.tile(np.array([[127], [127], [-128], [-128]], np.int8), (k // 4 + 1, n))[:k]
    _check(a, 0, b, zp0, scale, None, err="alternating")
    _check(a, 128, b, np.full(n, -128, np.int8), scale, None, err="alternating, zero points")
    b = np.tile(np.array([[127], [127], [-127], [-127]], np.int8), (k // 4 + 1, n))[:k]  # no -128: the sign trick
    _check(a, 0, b, zp0, scale, None, err="alternating, symmetric")
    _check(a, 255, b, np.full(n, 127, np.int8), scale, None, err="alternating, symmetric, zero points")


def test_variant_extremes():
    """Largest |acc| the family allows, with zero points on both sides (wrapping int32 must stay exact)."""
    _variants_or_skip()
    k = 4099
    a = np.full((7, k), 255, np.uint8)
    b = np.full((k, 70), -128, np.int8)
    b_zp = np.full(70, 127, np.int8)
    scale = np.ones(70, np.float32)
    want = _check(a, 0, b, b_zp, scale, None)
    assert want[0, 0] == np.float32(-255 * 255 * k)


@pytest.mark.parametrize("m", [1, 3, 5])
def test_k_near_the_int32_limit(m):
    """K = QGEMM_MAX_K - 2 (not a multiple of 4): the largest sums the family allows, then random full range."""
    _variants_or_skip()
    k, n = _kernels.QGEMM_MAX_K - 2, 29
    scale = np.ones(n, np.float32)
    a = np.full((m, k), 255, np.uint8)
    b = np.full((k, n), -128, np.int8)
    want = _check(a, 0, b, np.full(n, 127, np.int8), scale, None, err="extreme")
    assert want[0, 0] == np.float32(-255 * 255 * k)
    rng = np.random.default_rng(m)
    for lo in (-128, -127):
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
        b = rng.integers(lo, 128, (k, n), dtype=np.int8)
        _check(a, int(rng.integers(0, 256)), b, rng.integers(-128, 128, n).astype(np.int8), scale, None,
               err=f"random lo={lo}")


def test_packed_object_reuses_weights_across_calls():
    rng = np.random.default_rng(1)
    b = rng.integers(-128, 128, (100, 70), dtype=np.int8)
    scale = np.full(70, 0.01, np.float32)
    g = _kernels.PackedQGemmU8S8(b, np.zeros(1, np.int8), scale)
    assert g.kernel == _kernels.qgemm_u8s8_kernels()[0]
    for m in (1, 6, 11):
        a = rng.integers(0, 256, (m, 100), dtype=np.uint8)
        np.testing.assert_array_equal(g(a, 9), _kernels.qgemm_u8s8(a, 9, b, np.zeros(1, np.int8), scale, kernel="ref"))
    assert len(g.time(a, 9, 3)) == 3


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="not available"):
        _kernels.qgemm_u8s8(np.zeros((1, 4), np.uint8), 0, np.zeros((4, 4), np.int8), np.zeros(1, np.int8),
                            np.ones(4, np.float32), kernel="nope")


def test_variant_above_the_ceiling_is_a_clear_error():
    hidden = [k for k in KNOWN_VARIANTS if k not in _kernels.qgemm_u8s8_kernels()]
    if not hidden:
        pytest.skip(f"every variant is available at ISA level {isa_level()}")
    for kernel in hidden:
        with pytest.raises(ValueError, match="not available"):
            _kernels.qgemm_u8s8(np.zeros((1, 4), np.uint8), 0, np.zeros((4, 4), np.int8), np.zeros(1, np.int8),
                                np.ones(4, np.float32), kernel=kernel)


# ------------------------------------------------------------------------------------------ activation quantizer
def _skip_without_divide_variant() -> None:
    if not isa_at_least("avx2"):
        pytest.skip(f"no dividing vector quantizer at ISA level {isa_level()} (the reference is the only one)")


def _tie_probes(scale: float) -> np.ndarray:
    # x = (k + 1/2) * scale and its float neighbours for every k in the u8 range (where a wrong last bit of the
    # quotient would show), exact multiples, and specials
    s = np.float32(scale)
    k = np.arange(-300, 300, dtype=np.float32)
    centre = ((k + np.float32(0.5)) * s).astype(np.float32)
    up, down = [centre], [centre]
    for _ in range(3):
        up.append(np.nextafter(up[-1], np.float32(np.inf)))
        down.append(np.nextafter(down[-1], np.float32(-np.inf)))
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf], np.float32)
    return np.concatenate(up + down + [k * s, special]).astype(np.float32)


def _length_probes(n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(np.float32) * 5
    x[:: max(1, n // 7)] = np.float32(np.nan)  # NaN at block starts and in tails
    return np.concatenate([x, np.array([np.inf, -np.inf, 0.5, 1.5, -2.5], np.float32)])


LENGTHS = [1, 7, 8, 9, 15, 16, 17, 27, 31, 32, 33, 63, 64, 65, 1000]
SCALES = [0.02, 1 / 3, 0.1, 7.3e-3, 3.0, 1e-30, 1e-40, 2.0**-126, 1e30]
ZERO_POINTS = [(0.02, 0), (0.5, 128), (1 / 3, 200), (0.1, 255), (0.1, -3), (0.1, 300)]


@pytest.mark.parametrize("n", LENGTHS)
def test_quantize_best_variant_equals_reference(n):
    x = _length_probes(n)
    for scale, zp in ZERO_POINTS:
        np.testing.assert_array_equal(_kernels.quantize_linear_u8(x, scale, zp),
                                      _kernels.quantize_linear_u8_ref(x, scale, zp), err_msg=f"scale {scale} zp {zp}")


@pytest.mark.parametrize("n", LENGTHS)
def test_quantize_divide_variant_equals_reference(n):
    _skip_without_divide_variant()
    x = _length_probes(n)
    for scale, zp in ZERO_POINTS:
        np.testing.assert_array_equal(_kernels.quantize_linear_u8(x, scale, zp, "divide"),
                                      _kernels.quantize_linear_u8_ref(x, scale, zp), err_msg=f"scale {scale} zp {zp}")


@pytest.mark.parametrize("scale", SCALES)
def test_quantize_best_variant_equals_reference_at_rounding_ties(scale):
    # The fast variants have no divide (reciprocal, exact residual by FMA, one correction: correctly rounded by
    # Markstein's theorem) where the scale allows; odd scales (subnormal, huge) take the divide.
    x = _tie_probes(scale)
    for zp in (0, 128, 255):
        np.testing.assert_array_equal(_kernels.quantize_linear_u8(x, np.float32(scale), zp),
                                      _kernels.quantize_linear_u8_ref(x, np.float32(scale), zp),
                                      err_msg=f"scale {scale} zp {zp}")


@pytest.mark.parametrize("scale", SCALES)
def test_quantize_divide_variant_equals_reference_at_rounding_ties(scale):
    _skip_without_divide_variant()
    x = _tie_probes(scale)
    for zp in (0, 128, 255):
        np.testing.assert_array_equal(_kernels.quantize_linear_u8(x, np.float32(scale), zp, "divide"),
                                      _kernels.quantize_linear_u8_ref(x, np.float32(scale), zp),
                                      err_msg=f"divide variant, scale {scale} zp {zp}")


def test_quantize_divide_variant_missing_is_a_clear_error():
    if isa_at_least("avx2"):
        pytest.skip(f"ISA level {isa_level()} has a dividing vector quantizer")
    with pytest.raises(ValueError, match="'divide' is not available at ISA level 'scalar'"):
        _kernels.quantize_linear_u8(np.zeros(4, np.float32), 1.0, 0, "divide")


def test_quantize_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="variant"):
        _kernels.quantize_linear_u8(np.zeros(4, np.float32), 1.0, 0, "nope")
