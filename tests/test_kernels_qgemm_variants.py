"""Every compiled u8 x s8 GEMM variant against the scalar reference, bit for bit, over awkward shapes:
M, N, K not multiples of the tiles (6 x 64 for VNNI, 4 x 24 for AVX2), K = 1, M = 1, odd K, zero points, and
1 and 2 threads (the threaded split must not change a single bit)."""

from __future__ import annotations

import numpy as np
import pytest

from onnxq import _kernels

VARIANTS = [k for k in _kernels.qgemm_u8s8_kernels() if k != "ref"]
SHAPES = [
    (1, 1, 1), (1, 4, 16), (2, 3, 5), (5, 7, 63), (6, 64, 64), (7, 65, 65), (13, 130, 100), (1, 768, 129),
    (37, 33, 200), (12, 257, 24), (25, 1, 97), (64, 768, 64), (3, 4097, 17),
]


@pytest.mark.parametrize("kernel", VARIANTS)
@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("zero_points", ["none", "per_column"])
def test_variant_equals_reference(kernel, m, k, n, zero_points):
    rng = np.random.default_rng(hash((m, k, n)) % 2**32)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    b_zp = rng.integers(-7, 8, n).astype(np.int8) if zero_points == "per_column" else np.zeros(1, np.int8)
    scale = rng.uniform(1e-4, 1e-2, n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    a_zp = int(rng.integers(0, 256))
    want = _kernels.qgemm_u8s8(a, a_zp, b, b_zp, scale, bias, kernel="ref")
    for threads in (1, 2):
        got = _kernels.qgemm_u8s8(a, a_zp, b, b_zp, scale, bias, kernel=kernel, threads=threads)
        np.testing.assert_array_equal(got, want, err_msg=f"{kernel} threads={threads}")
    got_nb = _kernels.qgemm_u8s8(a, a_zp, b, b_zp, scale, None, kernel=kernel)
    np.testing.assert_array_equal(got_nb, _kernels.qgemm_u8s8(a, a_zp, b, b_zp, scale, None, kernel="ref"))


@pytest.mark.parametrize("kernel", VARIANTS)
def test_variant_extremes(kernel):
    """Largest |acc| the family allows, with zero points on both sides (wrapping int32 must stay exact)."""
    k = 4099
    a = np.full((7, k), 255, np.uint8)
    b = np.full((k, 70), -128, np.int8)
    b_zp = np.full(70, 127, np.int8)
    scale = np.ones(70, np.float32)
    want = _kernels.qgemm_u8s8(a, 0, b, b_zp, scale, kernel="ref")
    assert want[0, 0] == np.float32(-255 * 255 * k)
    np.testing.assert_array_equal(_kernels.qgemm_u8s8(a, 0, b, b_zp, scale, kernel=kernel), want)


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


@pytest.mark.parametrize("n", [1, 15, 16, 17, 1000])
def test_quantize_fast_variant_equals_reference(n):
    rng = np.random.default_rng(n)
    x = np.concatenate([rng.standard_normal(n).astype(np.float32) * 5,
                        np.array([np.nan, np.inf, -np.inf, 0.5, 1.5, -2.5], np.float32)])
    for scale, zp in ((0.02, 0), (0.5, 128), (1 / 3, 200)):
        np.testing.assert_array_equal(_kernels.quantize_linear_u8(x, scale, zp),
                                      _kernels.quantize_linear_u8_ref(x, scale, zp))


@pytest.mark.parametrize("scale", [0.02, 1 / 3, 0.1, 7.3e-3, 3.0, 1e-30, 1e-40, 2.0**-126, 1e30])
def test_quantize_fast_variant_equals_reference_at_rounding_ties(scale):
    # The fast variant has no divide (reciprocal, exact residual by FMA, one correction: correctly rounded by
    # Markstein's theorem) where the scale allows: probe where a wrong last bit would show — x = (k + 1/2) * scale
    # and its float neighbours, for every k in the u8 range — and odd scales (subnormal, huge) that take the
    # divide.
    s = np.float32(scale)
    k = np.arange(-300, 300, dtype=np.float32)
    centre = ((k + np.float32(0.5)) * s).astype(np.float32)
    up, down = [centre], [centre]
    for _ in range(3):
        up.append(np.nextafter(up[-1], np.float32(np.inf)))
        down.append(np.nextafter(down[-1], np.float32(-np.inf)))
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf], np.float32)
    x = np.concatenate(up + down + [k * s, special]).astype(np.float32)
    for zp in (0, 128, 255):
        ref = _kernels.quantize_linear_u8_ref(x, s, zp)
        np.testing.assert_array_equal(_kernels.quantize_linear_u8(x, s, zp), ref, err_msg=f"scale {scale} zp {zp}")
        np.testing.assert_array_equal(_kernels.quantize_linear_u8(x, s, zp, "divide"), ref,
                                      err_msg=f"divide variant, scale {scale} zp {zp}")


def test_quantize_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="variant"):
        _kernels.quantize_linear_u8(np.zeros(4, np.float32), 1.0, 0, "nope")
