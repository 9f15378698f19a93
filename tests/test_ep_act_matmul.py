"""Activation x activation Q/DQ MatMul (attention's Q.K^T and P.V) in the onnxq EP.

INT8: both operands quantized exactly as QuantizeLinear does; the integer product is exact and the EP's result is
float(sum (qa - za)(qb - zb)) * (sa * sb) — compared bit for bit with that formula in numpy. FP8: float64 on the
FP8-rounded operands, within fp32 summation error. Both are also compared with stock onnxruntime.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import onnxq.ep as ep
from onnxq import _kernels
from onnxq.apps.model_builders import qdq_act_matmul_model

EP = ep.EP_NAME
FP8 = {"e4m3fn": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}
MAX = {"e4m3fn": 448.0, "e5m2": 57344.0}


pytestmark = [pytest.mark.every_isa, pytest.mark.usefixtures("fp8_kernel_everywhere")]


def _params(model):
    t = {x.name: x for x in model.graph.initializer}
    out = {}
    for side in "ab":
        s = np.float32(numpy_helper.to_array(t[f"{side}_scale"]))
        z = t[f"{side}_zp"]
        zp = 0 if z.data_type in (onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT8E5M2) else int(
            numpy_helper.to_array(z))
        out[side] = (s, zp)
    return out


def _int8_reference(model, a, b, fmt):
    p = _params(model)
    signed = fmt == "s8"
    qa = _kernels.quantize_linear_u8_ref(a, p["a"][0], p["a"][1] + (128 if signed else 0)).astype(np.int64)
    qb = _kernels.quantize_linear_u8_ref(b, p["b"][0], p["b"][1] + (128 if signed else 0)).astype(np.int64)
    za, zb = p["a"][1] + (128 if signed else 0), p["b"][1] + (128 if signed else 0)
    acc = np.matmul(qa - za, qb - zb)
    return acc.astype(np.float32) * np.float32(p["a"][0] * p["b"][0])


def _fp8_reference(model, a, b, fmt):
    p = _params(model)
    qa = np.clip(a / p["a"][0], -MAX[fmt], MAX[fmt]).astype(FP8[fmt]).astype(np.float64)
    qb = np.clip(b / p["b"][0], -MAX[fmt], MAX[fmt]).astype(FP8[fmt]).astype(np.float64)
    exact = np.matmul(qa, qb) * (float(p["a"][0]) * float(p["b"][0]))
    k = a.shape[-1]
    bound = (k + 4) * 2.0**-24 * np.matmul(np.abs(qa), np.abs(qb)) * float(p["a"][0] * p["b"][0]) + 2.0**-22 * np.abs(
        exact)
    return exact, bound


SHAPES = [((4, 7), (7, 5)), ((2, 3, 17, 64), (2, 3, 64, 17)), ((1, 2, 33, 9), (1, 2, 9, 65)),
          ((2, 5, 8), (8, 3)), ((3, 1, 6, 12), (1, 4, 12, 6)), ((1, 12, 128, 64), (1, 12, 64, 128))]


@pytest.mark.parametrize("fmt", ["u8", "s8", "e4m3fn", "e5m2"])
@pytest.mark.parametrize("sa,sb", SHAPES, ids=[f"{a}x{b}" for a, b in SHAPES])
def test_act_matmul(fmt, sa, sb):
    model = qdq_act_matmul_model(sa, sb, fmt=fmt)
    data = model.SerializeToString()
    cpu = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    fast = ep.session(data)
    claimed = [n.split(":")[0] for n in ep.assigned_nodes(fast).get(EP, [])]
    assert "MatMul" in claimed, claimed
    rng = np.random.default_rng(len(sa) * 100 + sa[-1])
    a = (rng.standard_normal(sa) * 2).astype(np.float32)
    b = (rng.standard_normal(sb) * 2).astype(np.float32)
    got = fast.run(None, {"a": a, "b": b})[0]
    ref = cpu.run(None, {"a": a, "b": b})[0]
    assert got.shape == ref.shape
    if fmt in ("u8", "s8"):
        want = _int8_reference(model, a, b, fmt)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(ref).max()))
    else:
        exact, bound = _fp8_reference(model, a, b, fmt)
        assert np.all(np.abs(got - exact) <= bound)
        assert np.all(np.abs(got - ref) <= 2 * bound + 2.0**-22 * np.abs(ref))


def test_act_matmul_with_quantized_inputs():
    model = qdq_act_matmul_model((2, 4, 16), (2, 16, 8), fmt="u8", include_quantize=False)
    data = model.SerializeToString()
    cpu, fast = ort.InferenceSession(data, providers=["CPUExecutionProvider"]), ep.session(data)
    assert "MatMul" in [n.split(":")[0] for n in ep.assigned_nodes(fast).get(EP, [])]
    rng = np.random.default_rng(0)
    feeds = {"a_q": rng.integers(0, 256, (2, 4, 16)).astype(np.uint8),
             "b_q": rng.integers(0, 256, (2, 16, 8)).astype(np.uint8)}
    np.testing.assert_allclose(fast.run(None, feeds)[0], cpu.run(None, feeds)[0], rtol=1e-5, atol=1e-4)


def test_mismatched_inner_dimension_is_a_clear_runtime_error():
    model = qdq_act_matmul_model((2, 4, 16), (2, 16, 8), fmt="u8")
    # make the declared shapes symbolic so the session accepts other shapes
    for vi in model.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            d.dim_param = "d"
    fast = ep.session(model.SerializeToString())
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        fast.run(None, {"a": np.ones((2, 4, 16), np.float32), "b": np.ones((2, 15, 8), np.float32)})


@pytest.mark.parametrize("fmt", ["u8", "s8"])
def test_symbolic_k_is_claimed_and_a_k_past_the_int32_limit_is_exact(fmt):
    # attention's P x V has K = the sequence length, unknown when the EP claims the node; a run with K past
    # QGEMM_MAX_K (where an int32 sum could overflow) takes the exact int64 path instead of the kernels
    m = qdq_act_matmul_model(["m", "k"], ["k", 3], fmt=fmt)
    data = m.SerializeToString()
    fast = ep.session(data)
    assert "MatMul" in {n.split(":")[0] for n in ep.assigned_nodes(fast).get(EP, [])}
    cpu = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for k in (40, _kernels.QGEMM_MAX_K + 7):
        a = rng.standard_normal((2, k)).astype(np.float32)
        b = rng.standard_normal((k, 3)).astype(np.float32)
        got = fast.run(None, {"a": a, "b": b})[0]
        np.testing.assert_array_equal(got, _int8_reference(m, a, b, fmt))
        np.testing.assert_array_equal(got, cpu.run(None, {"a": a, "b": b})[0])  # no overflow with these values
