"""Per-token (ZeroQuant) dynamic activation quantization: standard ONNX that stock onnxruntime runs (opset 21
blocked Q/DQ, one block per row, the scale computed in the graph), no calibration, equal to a numpy reference of
the ONNX semantics, and better than one static scale when rows differ in magnitude."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxq
from onnxq.core.config import QuantConfig
from onnxq.core.formats import format_named
from onnxq.core.numerics import MIN_AMAX


def _mlp(k: int = 48, n: int = 40, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array((rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((n, 16)) / np.sqrt(n)).astype(np.float32), "w2")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", 16])], [w1, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]


def _per_token_qdq(x: np.ndarray, name: str) -> np.ndarray:
    """The ONNX semantics written out: scale = max(max|row|, MIN_AMAX) / max code, then Q (round half even,
    saturate) and DQ, per row."""
    fmt = format_named(name)
    amax = np.max(np.abs(x), axis=-1, keepdims=True).astype(np.float32)
    scale = (np.maximum(amax, np.float32(MIN_AMAX)) / np.float32(fmt.max_magnitude)).astype(np.float32)
    codes = fmt.encode(x, scale)
    return (codes.astype(np.float32) * scale).astype(np.float32)


@pytest.mark.parametrize("recipe,fmt", [("int8-per-token", "int8"), ("fp8-e4m3-per-token", "fp8-e4m3fn")])
def test_per_token_graph_is_standard_onnx_and_matches_the_reference(recipe, fmt):
    m = _mlp()
    r = onnxq.quantize(m, None, QuantConfig.from_recipe(recipe))  # no calibration data needed
    q = r.model
    onnx.checker.check_model(q, full_check=True)
    assert r.calibration_samples == 0 and r.activations_quantized == 2
    qs = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    assert len(qs) == 2
    for n in qs:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        assert attrs["axis"] == -1 and attrs["block_size"] in (48, 40) and len(n.input) == 2
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 5, 48)) * rng.uniform(0.01, 30, (2, 5, 1))).astype(np.float32)
    x[0, 1] = 0.0  # an all-zero row: the floored scale keeps it exactly 0, never NaN
    got = _run(q, {"x": x})
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    wfmt = QuantConfig.from_recipe(recipe).weight_format
    w1q, w2q = (wfmt.quantize_weight(numpy_helper.to_array(t), 1) for t in m.graph.initializer)
    assert np.array_equal(inits["w1_quantized"].view(np.uint8), w1q[0].view(np.uint8))
    w1 = w1q[0].astype(np.float32) * w1q[1]
    w2 = w2q[0].astype(np.float32) * w2q[1]
    h = np.maximum(_per_token_qdq(x, fmt) @ w1, 0)
    want = _per_token_qdq(h, fmt) @ w2
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_per_token_beats_one_static_scale_when_rows_differ():
    """ZeroQuant's point: tokens whose magnitudes differ by orders lose their small rows under one static scale."""
    m = _mlp(seed=1)
    rng = np.random.default_rng(4)
    mags = np.exp(rng.uniform(np.log(0.01), np.log(50), (4, 16, 1)))
    calib = [{"x": (rng.standard_normal((4, 16, 48)) * mags).astype(np.float32)} for _ in range(2)]
    test = {"x": (rng.standard_normal((4, 16, 48)) * mags).astype(np.float32)}
    ref = _run(m, test)

    def row_cos(out: np.ndarray) -> float:
        a, b = out.reshape(-1, 16), ref.reshape(-1, 16)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)  # a row quantized to all zeros: cosine 0
        return float(np.mean(np.where(norms > 0, np.sum(a * b, 1) / np.where(norms > 0, norms, 1), 0.0)))

    static = row_cos(_run(onnxq.quantize(m, None, QuantConfig.from_recipe("int8-conservative"), calib).model, test))
    token = row_cos(_run(onnxq.quantize(m, None, QuantConfig.from_recipe("int8-per-token")).model, test))
    assert token > 0.999 and token > static + 0.01, (token, static)


def test_per_token_needs_a_symmetric_format_and_validates():
    assert QuantConfig(format="int8", activation_granularity="per-token").activation_format.name == "int8"
    with pytest.raises(onnxq.core.errors.OnnxqError, match="activation_granularity"):
        QuantConfig(activation_granularity="per-row").validate()


def test_per_token_with_a_conv_input_asks_for_data_and_says_why():
    """Only weight MatMul / Gemm inputs are per-token; a Conv's input stays per-tensor and must be calibrated."""
    rng = np.random.default_rng(6)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "cw")
    g = helper.make_graph([helper.make_node("Conv", ["x", "cw"], ["y"], name="conv", pads=[1, 1, 1, 1])], "c",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    with pytest.raises(onnxq.core.errors.OnnxqError, match=r"stay per-tensor \(e.g. Conv 'conv'\)"):
        onnxq.quantize(m, None, QuantConfig.from_recipe("int8-per-token"))
    feeds = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}]
    r = onnxq.quantize(m, None, QuantConfig.from_recipe("int8-per-token"), feeds)
    assert r.calibration_samples == 1 and r.activations_quantized == 1
