"""Q/DQ numerics of the quantizer against independent references: ml_dtypes for FP8 (saturation, NaN, ties,
subnormals), numpy's round-half-even for INT8, and stock onnxruntime running the emitted Q/DQ nodes."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxq.core.config import QuantConfig
from onnxq.core.numerics import (
    E4M3FN,
    E5M2,
    FP8,
    fp8_decode_table,
    fp8_encode,
    fp8_round,
    quantize_int,
    uint8_asymmetric_params,
)

ML = {"e4m3fn": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}


def _grid(fmt: str) -> np.ndarray:
    g = np.arange(256, dtype=np.uint8).view(ML[fmt]).astype(np.float32)
    return np.unique(g[np.isfinite(g)])


def _cases(fmt: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    g = _grid(fmt)
    ties = ((g[1:] + g[:-1]) / 2).astype(np.float32)  # exactly halfway between neighbours (all representable)
    near = np.concatenate([np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, np.float32(-np.inf))])
    mx = FP8[fmt].max
    big = np.array([mx, np.nextafter(np.float32(mx), np.float32(np.inf)), mx * 1.03, mx * 1.07, 1e30, np.inf,
                    -np.inf, -mx * 1.5, 0.0, -0.0, 1e-30, -1e-30, 2.0**-10, 2.0**-17, 2.0**-16 * 1.5], np.float32)
    rnd = np.concatenate([rng.standard_normal(50000).astype(np.float32) * s for s in (1e-5, 1e-2, 1, 30, 1e4)])
    return np.concatenate([g, -g, ties, -ties, near, big, rnd])


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_fp8_encode_equals_ml_dtypes_with_saturation(fmt):
    x = _cases(fmt)
    spec = FP8[fmt]
    want = np.clip(x, -spec.max, spec.max).astype(ML[fmt]).view(np.uint8)  # saturate=1: clamp, then RNE
    got = fp8_encode(x, spec)
    bad = np.nonzero(got != want)[0]
    assert bad.size == 0, f"{bad.size} mismatches, first x={x[bad[:5]]} got={got[bad[:5]]} want={want[bad[:5]]}"
    np.testing.assert_array_equal(fp8_round(x, spec), got.view(ML[fmt]).astype(np.float32))


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_fp8_ties_round_to_even(fmt):
    g = _grid(fmt)
    g = g[(g > 0) & (g < FP8[fmt].max)]
    ties = ((g[1:] + g[:-1]) / 2).astype(np.float32)
    r = fp8_round(ties, FP8[fmt])
    bits = fp8_encode(ties, FP8[fmt])
    assert np.all((r == g[1:]) | (r == g[:-1]))
    assert np.all(bits % 2 == 0), "a tie must round to the even mantissa"


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_fp8_nan_and_decode_table(fmt):
    spec = FP8[fmt]
    nan_bits = fp8_encode(np.array([np.nan, -np.nan], np.float32), spec)
    assert np.isnan(nan_bits.view(ML[fmt]).astype(np.float32)).all()
    assert np.isnan(fp8_round(np.array([np.nan], np.float32), spec)).all()
    table = fp8_decode_table(spec)
    ref = np.arange(256, dtype=np.uint8).view(ML[fmt]).astype(np.float32)
    np.testing.assert_array_equal(np.isnan(table), np.isnan(ref))
    np.testing.assert_array_equal(table[~np.isnan(ref)], ref[~np.isnan(ref)])


def test_int8_round_half_even_and_saturation():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, 300, -300, np.inf, -np.inf, np.nan], np.float32)
    got = quantize_int(x, np.float32(1.0), 0, -127, 127, np.int8)
    np.testing.assert_array_equal(got, [0, 2, 2, 0, -2, -2, 126, 127, 127, -127, 127, -127, 0])
    u = quantize_int(x, np.float32(1.0), 128, 0, 255, np.uint8)
    np.testing.assert_array_equal(u[:6], [128, 130, 130, 128, 126, 126])
    assert u[8] == 255 and u[9] == 0


def test_uint8_params_cover_range_and_zero():
    s, z = uint8_asymmetric_params(-1.0, 3.0)
    assert np.isclose(s, 4 / 255) and z == np.uint8(64)
    s, z = uint8_asymmetric_params(0.0, 0.0)  # a constant tensor: a safe scale, never 0
    assert s > 0 and np.isfinite(s)
    s, z = uint8_asymmetric_params(2.0, 5.0)  # 0 always representable
    assert z == 0 and np.isclose(s, 5 / 255)


def _ort_qdq(x: np.ndarray, scale: float, fmt: str) -> np.ndarray:
    zp = helper.make_tensor("zp", FP8[fmt].onnx_type, [], np.zeros(1, np.uint8).tobytes(), raw=True)
    g = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], saturate=1),
         helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        [numpy_helper.from_array(np.array(scale, np.float32), "s"), zp])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_onnxruntime_quantizelinear_matches_our_rounding(fmt):
    x = _cases(fmt)
    x = x[np.isfinite(x)]
    scale = 0.37
    got = _ort_qdq(x, scale, fmt)
    want = fp8_round(x / np.float32(scale), FP8[fmt]) * np.float32(scale)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fmt,spec", [("fp8-e4m3", E4M3FN), ("fp8-e5m2", E5M2)])
def test_weight_per_channel_fp8(fmt, spec):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 10)).astype(np.float32) * np.logspace(-3, 2, 10).astype(np.float32)
    w[:, 3] = 0.0  # an all-zero column: a safe scale, zeros stay zeros, never NaN
    q, s = QuantConfig(format=fmt).weight_format.quantize_weight(w, 1)
    assert q.dtype == ML[spec.name] and q.nbytes == w.size and s.shape == (10,)
    deq = q.astype(np.float32) * s
    assert np.all(np.isfinite(deq)) and np.all(s > 0)
    np.testing.assert_array_equal(deq[:, 3], 0)
    amax = np.abs(w).max(0)
    np.testing.assert_allclose(np.abs(q.astype(np.float32)).max(0)[amax > 0], spec.max)  # max maps to max
    np.testing.assert_array_equal(q.view(np.uint8), np.clip(w / s, -spec.max, spec.max).astype(ML[spec.name])
                                  .view(np.uint8))
    rel = np.abs(deq - w) / np.maximum(np.abs(w), 1e-30)
    assert np.all(rel[np.abs(w) > amax * 2.0**-6] <= 2.0 ** -(spec.man_bits + 1) + 1e-6)


def test_weight_int8_symmetric_per_channel_and_axis0():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 20)).astype(np.float32)  # Gemm transB layout [N, K]: channels on axis 0
    q, s = QuantConfig(format="int8").weight_format.quantize_weight(w, 0)
    assert q.dtype == np.int8 and s.shape == (6,)
    assert q.min() >= -127 and np.all(np.abs(q).max(1) == 127)
    np.testing.assert_array_equal(q, np.clip(np.rint(w / s[:, None]), -127, 127).astype(np.int8))
    q2, s2 = QuantConfig(format="int8").weight_format.quantize_weight(w, None)
    assert s2.shape == () and np.abs(q2).max() == 127
