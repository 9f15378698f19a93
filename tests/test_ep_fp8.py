"""FP8 (E4M3FN / E5M2) Q/DQ MatMul in the onnxq EP, and the FP8 kernels against independent references.

The EP computes FP8 groups as bf16 x FP8 products accumulated in fp32:
* weight-only (float activations): activations are rounded to bf16 (relative error <= 2^-9 each), weights are exact;
* FP8 activations (Q -> DQ): activations are quantized exactly as ONNX QuantizeLinear(saturate=1) does, so both
  operands are the FP8-rounded values and every product is exact in fp32.
The reference is float64 math on exactly those rounded values; the only difference left is fp32 summation order,
bounded by (K + 2) * 2^-24 * sum_k |a_k w_k| (plus one rounding of the scale multiply and bias add).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _fp8_cases import SCALES, bf16_cases, quantize_cases
from onnx import numpy_helper

import onnxq.ep as ep
from onnxq import _kernels
from onnxq.apps.model_builders import fp8_qdq_matmul_model
from onnxq.cpu import isa_at_least

EP = ep.EP_NAME
DT = {"e4m3fn": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}
ONNX_FP8 = {"e4m3fn": onnx.TensorProto.FLOAT8E4M3FN, "e5m2": onnx.TensorProto.FLOAT8E5M2}
pytestmark = [pytest.mark.every_isa, pytest.mark.usefixtures("fp8_kernel_everywhere")]




# ------------------------------------------------------------------------------------------ conversions


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_fp8_decode_matches_ml_dtypes(fmt):
    allb = np.arange(256, dtype=np.uint8)
    ours, ref = _kernels.fp8_to_float(allb, fmt), allb.view(DT[fmt]).astype(np.float32)
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
    np.testing.assert_array_equal(ours[~np.isnan(ref)], ref[~np.isnan(ref)])


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_fp8_encode_saturates_and_rounds_like_ml_dtypes(fmt):
    rng = np.random.default_rng(0)
    mx = 448.0 if fmt == "e4m3fn" else 57344.0
    grid = np.arange(256, dtype=np.uint8).view(DT[fmt]).astype(np.float32)
    grid = grid[np.isfinite(grid)]
    mids = ((np.sort(grid)[1:] + np.sort(grid)[:-1]) / 2).astype(np.float32)  # exact ties between neighbours
    x = np.concatenate([rng.standard_normal(20000).astype(np.float32) * s for s in (1e-5, 1e-3, 1, 100, 1e5)]
                       + [mids, np.array([np.inf, -np.inf, 1e30, -1e30, 0.0, -0.0], np.float32)])
    want = np.clip(x, -mx, mx).astype(DT[fmt]).view(np.uint8)  # ONNX saturate=1: clamp, then round half to even
    np.testing.assert_array_equal(_kernels.float_to_fp8(x, fmt), want)
    nan = _kernels.float_to_fp8(np.array([np.nan], np.float32), fmt)
    assert np.isnan(nan.view(DT[fmt]).astype(np.float32)).all()


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_quantize_to_bf16_vector_equals_reference(fmt):
    rng = np.random.default_rng(1)
    for n in (1, 15, 16, 17, 999):
        x = np.concatenate([rng.standard_normal(n).astype(np.float32) * 30,
                            np.array([np.nan, np.inf, -np.inf, 1e-12, -3e-3], np.float32)])
        np.testing.assert_array_equal(_kernels.quantize_fp8_to_bf16(x, 0.25, fmt),
                                      _kernels.quantize_fp8_to_bf16(x, 0.25, fmt, "ref"))
        # and it is QuantizeLinear then an exact widening
        want = np.clip(x / np.float32(0.25), -1e30, 1e30)
        mx = 448.0 if fmt == "e4m3fn" else 57344.0
        want = np.clip(want, -mx, mx).astype(DT[fmt]).astype(ml_dtypes.bfloat16).view(np.uint16)
        finite = np.isfinite(x)
        np.testing.assert_array_equal(_kernels.quantize_fp8_to_bf16(x, 0.25, fmt)[finite], want[finite])


def test_bf16_conversion_matches_ml_dtypes_round_half_even():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal(5000).astype(np.float32),
                        (np.arange(1, 200, dtype=np.float32) + np.float32(2**-8)) * 2**-3])  # ties
    want = x.astype(ml_dtypes.bfloat16).view(np.uint16)
    np.testing.assert_array_equal(_kernels.to_bf16(x), want)
    np.testing.assert_array_equal(_kernels.to_bf16(x, "ref"), want)


def _assert_variants_equal_reference(fn, x, *args, kind):
    """Every variant usable under the ceiling equals 'ref' bit for bit, on the whole array and on short slices at
    odd offsets (the vector tails, unaligned starts)."""
    want = fn(x, *args, "ref")
    variants = _kernels.fp8_conversion_variants(kind)
    assert variants[-1] == "ref"
    for v in variants:
        np.testing.assert_array_equal(fn(x, *args, v), want, err_msg=f"{kind} {v}")
        for n in (*range(1, 34), 63, 65):
            np.testing.assert_array_equal(fn(x[3:3 + n], *args, v), want[3:3 + n], err_msg=f"{kind} {v} n={n}")


def test_bf16_conversion_every_variant_equals_reference_bit_for_bit():
    _assert_variants_equal_reference(_kernels.to_bf16, bf16_cases(), kind="to_bf16")


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
@pytest.mark.parametrize("scale", SCALES)
def test_quantize_to_bf16_every_variant_equals_reference_bit_for_bit(fmt, scale):
    _assert_variants_equal_reference(_kernels.quantize_fp8_to_bf16, quantize_cases(fmt, scale), scale, fmt,
                                     kind="quantize_fp8_to_bf16")


def test_conversion_variants_follow_the_isa_ceiling():
    for kind, fn, args in (("to_bf16", _kernels.to_bf16, ()),
                           ("quantize_fp8_to_bf16", _kernels.quantize_fp8_to_bf16, (0.5, "e4m3fn"))):
        # the AVX-512 float -> bf16 is vcvtneps2bf16 (AVX512-BF16); the others need AVX-512 F/BW/VL
        want = (["avx512"] if isa_at_least("avx512bf16" if kind == "to_bf16" else "avx512") else []) + (
            ["avx2"] if isa_at_least("avx2") else []) + ["ref"]
        assert _kernels.fp8_conversion_variants(kind) == want
        x = np.ones(3, np.float32)
        for v in ("avx2", "avx512"):
            if v not in want:
                with pytest.raises(ValueError, match="not available"):
                    fn(x, *args, v)
        with pytest.raises(ValueError, match="variant must be"):
            fn(x, *args, "sse9")


# ------------------------------------------------------------------------------------------ GEMM kernels

SHAPES = [(1, 1, 1), (1, 2, 64), (2, 3, 5), (5, 7, 63), (6, 64, 64), (7, 65, 65), (13, 130, 100), (1, 768, 129),
          (37, 33, 200), (25, 1, 97), (3, 301, 17)]


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_fp8_gemm_variants_against_float64(m, k, n, fmt):
    rng = np.random.default_rng(m * 7919 + k * 31 + n)
    w = (rng.standard_normal((k, n)) * 3).astype(DT[fmt])
    a = rng.standard_normal((m, k)).astype(ml_dtypes.bfloat16)
    scale = rng.uniform(0.5, 2, n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    prod = a.astype(np.float64) @ w.astype(np.float64)
    exact = prod * scale + bias
    bound = ((k + 2) * 2.0**-24 * (np.abs(a.astype(np.float64)) @ np.abs(w.astype(np.float64))) * scale
             + 2.0**-23 * (np.abs(prod * scale) + np.abs(exact)))
    for kernel in _kernels.fp8_gemm_kernels():
        for threads in (1, 2):
            got = _kernels.PackedGemmBf16Fp8(w.view(np.uint8), fmt, scale, bias, kernel, threads)(a.view(np.uint16))
            err = np.abs(got - exact)
            assert np.all(err <= bound), f"{kernel} t={threads}: worst err/bound {(err / bound).max():.3g}"


@pytest.mark.parametrize("m", [1, 2, 5, 6, 9])
@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_fp8_gemm_variants_every_code(m, fmt):
    # Every FP8 code as a weight — subnormals, the largest values, -0, E5M2 infinities and both formats' NaN codes —
    # spread over columns: NaN / inf reach exactly the outputs the reference gives them (the AVX2 kernel widens E4M3
    # through FP16 bits, where the E4M3 NaN code is a normal number, and restores NaN per column), finite outputs
    # agree within fp32 summation error. Columns 0..7 hold no non-finite code.
    rng = np.random.default_rng(m)
    k, n = 64, 40
    codes = np.arange(256, dtype=np.uint8)
    finite = np.isfinite(codes.view(DT[fmt]).astype(np.float32))
    w = rng.choice(codes[finite], (k, n))
    w[:, 8:] = rng.permutation(np.resize(codes, k * (n - 8))).reshape(k, n - 8)
    a = (rng.standard_normal((m, k)) * 0.01).astype(ml_dtypes.bfloat16)
    scale = rng.uniform(0.5, 2, n).astype(np.float32)
    want = _kernels.PackedGemmBf16Fp8(w, fmt, scale, None, "ref", 1)(a.view(np.uint16))
    wf = w.view(DT[fmt]).astype(np.float64)
    bound = (k + 2) * 2.0**-24 * (np.abs(a.astype(np.float64)) @ np.where(np.isfinite(wf), np.abs(wf), 0)) * scale
    for kernel in _kernels.fp8_gemm_kernels():
        got = _kernels.PackedGemmBf16Fp8(w, fmt, scale, None, kernel, 1)(a.view(np.uint16))
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=kernel)
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want), err_msg=kernel)
        ok = np.isfinite(want)
        assert np.all(np.abs(got[ok] - want[ok]) <= 2 * bound[ok] + 1e-30), kernel


# ------------------------------------------------------------------------------------------ EP


def _sessions(model):
    data = model.SerializeToString()
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]), ep.session(data)


def _claimed(sess):
    return sorted(n.split(":")[0] for n in ep.assigned_nodes(sess).get(EP, []))


def _inits(model):
    out = {}
    for t in model.graph.initializer:
        if t.data_type in (onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT8E5M2):
            fmt = "e4m3fn" if t.data_type == onnx.TensorProto.FLOAT8E4M3FN else "e5m2"
            out[t.name] = np.frombuffer(t.raw_data, np.uint8).reshape(t.dims).view(DT[fmt]).astype(np.float64)
        else:
            out[t.name] = numpy_helper.to_array(t).astype(np.float64)
    return out


def _expected(model, x, act_fmt):
    """float64 on the values the EP multiplies (bf16 activations for weight-only, FP8 ones otherwise)."""
    i = _inits(model)
    w = i["w"] * i["w_scale"]
    if act_fmt is None:
        xa = x.astype(ml_dtypes.bfloat16).astype(np.float64)
    else:
        xs = i["x_scale"]
        mx = 448.0 if act_fmt == "e4m3fn" else 57344.0
        xa = np.clip(x / np.float32(xs), -mx, mx).astype(DT[act_fmt]).astype(np.float64) * xs
    y = xa @ w + i.get("b", 0.0)
    bound = (w.shape[0] + 4) * 2.0**-24 * (np.abs(xa) @ np.abs(w)) + 2.0**-22 * np.abs(y)
    return y, bound, xa, w


CASES = [
    dict(),
    dict(weight_format="e5m2"),
    dict(rank=3),
    dict(per_channel=False, bias=False),
    dict(with_zero_points=False),
    dict(activation_format="e4m3fn"),
    dict(activation_format="e5m2", weight_format="e5m2", rank=3),
    dict(activation_format="e4m3fn", weight_format="e5m2", bias=False),
    dict(activation_format="e4m3fn", with_zero_points=False),
]


@pytest.mark.parametrize("kw", CASES, ids=[str(c) for c in CASES])
@pytest.mark.parametrize("k,n,m", [(37, 29, 5), (64, 70, 1), (1, 16, 3), (130, 200, 13)])
def test_ep_fp8_claims_and_matches(kw, k, n, m):
    model = fp8_qdq_matmul_model(k, n, **kw)
    cpu, fast = _sessions(model)
    claimed = _claimed(fast)
    assert ("MatMul" in claimed) or ("Gemm" in claimed), claimed
    shape = (m, k) if kw.get("rank", 2) == 2 else (2, m, k)
    x = (np.random.default_rng(k + n).standard_normal(shape) * 2).astype(np.float32)
    got = fast.run(None, {"x": x})[0]
    want, bound, xa, w = _expected(model, x.reshape(-1, k), kw.get("activation_format"))
    err = np.abs(got.reshape(-1, n) - want)
    assert np.all(err <= bound), f"worst err/bound {(err / bound).max():.3g}"
    # against stock onnxruntime (fp32 activations for weight-only): bf16 rounding of x is the only extra term
    ref = cpu.run(None, {"x": x})[0].reshape(-1, n)
    weight_only = kw.get("activation_format") is None
    extra = 2.0**-8 * (np.abs(x.reshape(-1, k).astype(np.float64)) @ np.abs(w)) if weight_only else 0
    assert np.all(np.abs(got.reshape(-1, n) - ref) <= bound + extra + 2.0**-22 * np.abs(ref))


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_ep_fp8_activation_tensor_input(fmt):
    """The model takes the FP8 tensor itself (Q outside the model)."""
    model = fp8_qdq_matmul_model(48, 40, activation_format=fmt, include_quantize=False)
    cpu, fast = _sessions(model)
    assert "MatMul" in _claimed(fast) or "Gemm" in _claimed(fast)
    xq = (np.random.default_rng(3).standard_normal((6, 48)) * 20).astype(DT[fmt])
    feed = {"x_q": ort.OrtValue.ortvalue_from_numpy_with_onnx_type(xq.view(np.uint8), ONNX_FP8[fmt])}
    got, ref = fast.run(None, feed)[0], cpu.run(None, feed)[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_fp8_nan_weight_propagates_like_onnxruntime():
    model = fp8_qdq_matmul_model(16, 8, rank=3)
    for t in model.graph.initializer:
        if t.name == "w":
            raw = bytearray(t.raw_data)
            raw[5 * 8 + 3] = 0x7F  # NaN in E4M3FN at w[5, 3]
            t.raw_data = bytes(raw)
    cpu, fast = _sessions(model)
    x = np.ones((1, 2, 16), np.float32)
    got, ref = fast.run(None, {"x": x})[0], cpu.run(None, {"x": x})[0]
    assert np.array_equal(np.isnan(got), np.isnan(ref)) and np.isnan(got[..., 3]).all()


def test_int8_weights_with_float_activations_are_not_claimed():
    """Weight-only is an FP8 mode; an int8 DQ weight meeting a float activation stays with onnxruntime."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    g = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["w", "s"], ["wd"], axis=1),
         helper.make_node("MatMul", ["x", "wd"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        initializer=[numpy_helper.from_array(rng.integers(-9, 9, (8, 4)).astype(np.int8), "w"),
                     numpy_helper.from_array(np.full(4, 0.1, np.float32), "s")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    _, fast = _sessions(m)
    assert _claimed(fast) == []
