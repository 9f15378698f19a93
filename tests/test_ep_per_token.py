"""The EP on per-token INT8 groups (what `int8-per-token` writes): it claims Q(blocked) -> DQ(blocked) -> MatMul
(+ bias), quantizes each row with the scale the graph computed, and equals the exact integer reference
y = (acc * w_scale[n]) * s_m + bias[n] bit for bit at every ISA level; stock onnxruntime (float DQ -> MatMul)
agrees within float rounding."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxq
import onnxq.ep as ep
from onnxq.core.config import QuantConfig

pytestmark = pytest.mark.every_isa


def _model(k: int, n: int, *, bias: bool, gemm: bool, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    if gemm:  # 2-D input: Gemm(x, w, b)
        inputs = ["x", "w"] + (["b"] if bias else [])
        nodes = [helper.make_node("Gemm", inputs, ["y"], name="fc")]
        xs, ys = ["m", k], ["m", n]
    else:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["h" if bias else "y"], name="fc")]
        if bias:
            nodes.append(helper.make_node("Add", ["h", "b"], ["y"], name="bias"))
        xs, ys = ["b", "s", k], ["b", "s", n]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "b"))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ys)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


def _reference(q: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The exact integer route, in the EP's documented order of float operations."""
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    wq = next(v for k, v in inits.items() if k.endswith("_quantized")).astype(np.int64)
    ws = next(v for k, v in inits.items() if k.endswith("_scale") and v.ndim == 1).astype(np.float32)
    b = inits.get("b")
    s = (np.maximum(np.abs(x).max(axis=-1, keepdims=True), np.float32(1e-8)) / np.float32(127)).astype(np.float32)
    codes = np.clip(np.rint(x / s), -128, 127).astype(np.int64)
    acc = codes.reshape(-1, x.shape[-1]) @ wq
    y = (acc.astype(np.float32) * ws[None, :]).astype(np.float32) * s.reshape(-1, 1)
    if b is not None:
        y = (y + b[None, :]).astype(np.float32)
    return y.reshape(*x.shape[:-1], -1)


@pytest.mark.parametrize("k,n,bias,gemm", [(64, 48, True, False), (100, 33, False, False), (37, 130, True, True),
                                           (256, 96, False, True)])
def test_ep_claims_per_token_and_equals_the_integer_reference(k, n, bias, gemm):
    q = onnxq.quantize(_model(k, n, bias=bias, gemm=gemm), None, QuantConfig.from_recipe("int8-per-token")).model
    sess = ep.session(q.SerializeToString(), provider_options={"num_threads": "2"})
    claimed = ep.assigned_nodes(sess).get(ep.EP_NAME, [])
    assert any(c.startswith(("MatMul:", "Gemm:")) for c in claimed) and any("QuantizeLinear" in c for c in claimed)
    assert any(c.startswith("ReduceMax:") for c in claimed)  # the row-scale reduction, fused too
    stock = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(k + n)
    for rows in (1, 3, 17, 70):
        shape = (rows, k) if gemm else (1, rows, k)
        x = (rng.standard_normal(shape) * rng.uniform(0.01, 20, (*shape[:-1], 1))).astype(np.float32)
        x[..., 0, :] = 0.0 if rows > 1 else x[..., 0, :]  # an all-zero row (floored scale) among the others
        got = sess.run(None, {"x": x})[0]
        np.testing.assert_array_equal(got, _reference(q, x), err_msg=f"rows={rows}")
        want = stock.run(None, {"x": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


def test_per_token_scale_with_the_wrong_row_count_is_an_error():
    """The fused node checks the scale it is handed against the activation's rows, never reads past it."""
    q = onnxq.quantize(_model(32, 16, bias=False, gemm=False), None, QuantConfig.from_recipe("int8-per-token")).model
    # feed the scale from a graph input instead of the in-graph reduction: rows of x and of s can disagree
    g = q.graph
    div = next(nd for nd in g.node if nd.op_type == "Div")
    scale = div.output[0]
    keep = [nd for nd in g.node if nd.op_type not in ("Abs", "ReduceMax", "Max", "Div")]
    del g.node[:]
    g.node.extend(keep)
    g.input.append(helper.make_tensor_value_info(scale, TensorProto.FLOAT, ["b", "r", 1]))
    sess = ep.session(q.SerializeToString())
    if not any(c.startswith("MatMul:") for c in ep.assigned_nodes(sess).get(ep.EP_NAME, [])):
        pytest.skip("the EP did not claim the rewritten group")
    x = np.ones((1, 4, 32), np.float32)
    ok = sess.run(None, {"x": x, scale: np.full((1, 4, 1), 1 / 127, np.float32)})[0]
    assert np.all(np.isfinite(ok))
    with pytest.raises(Exception, match="scale has 3 values for 4 rows"):
        sess.run(None, {"x": x, scale: np.full((1, 3, 1), 1 / 127, np.float32)})


@pytest.mark.parametrize("k", [1, 7, 64, 1000])
def test_fused_token_scale_equals_onnxruntime_bit_for_bit(k):
    """The scale reduction alone (Abs, ReduceMax, Max, Div) as the EP runs it equals stock onnxruntime's output."""
    q = onnxq.quantize(_model(k, 8, bias=False, gemm=False), None, QuantConfig.from_recipe("int8-per-token")).model
    div = next(nd for nd in q.graph.node if nd.op_type == "Div")
    keep = [nd for nd in q.graph.node if nd.op_type in ("Abs", "ReduceMax", "Max", "Div")]
    del q.graph.node[:]
    q.graph.node.extend(keep)
    del q.graph.output[:]
    q.graph.output.append(helper.make_tensor_value_info(div.output[0], TensorProto.FLOAT, ["b", "s", 1]))
    sess = ep.session(q.SerializeToString())
    assert any(c.startswith("ReduceMax:") for c in ep.assigned_nodes(sess).get(ep.EP_NAME, []))
    stock = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(k)
    x = (rng.standard_normal((2, 9, k)) * np.exp(rng.uniform(-30, 30, (2, 9, 1)))).astype(np.float32)
    x[0, 0] = 0.0
    x[0, 1] = -0.0
    x[1, 2, 0] = np.float32(1e-42)  # subnormal, below the floor
    x[1, 3] = -np.float32(3.4e38)
    got, want = sess.run(None, {"x": x})[0], stock.run(None, {"x": x})[0]
    assert got.shape == want.shape == (2, 9, 1)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_qkv_sharing_one_input_are_all_claimed_and_exact():
    """Q, K and V projections of one activation: onnxruntime merges their identical per-token Q nodes into one; the
    EP then takes the s8 tensor and the scale for each projection (the shared Q stays with onnxruntime)."""
    rng = np.random.default_rng(9)
    k, n = 48, 24
    inits, nodes, outs = [], [], []
    for name in ("q", "k", "v"):
        inits.append(numpy_helper.from_array((rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32), f"w{name}"))
        nodes.append(helper.make_node("MatMul", ["x", f"w{name}"], [name], name=f"proj_{name}"))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["b", "s", n]))
    g = helper.make_graph(nodes, "qkv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", k])], outs,
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    q = onnxq.quantize(m, None, QuantConfig.from_recipe("int8-per-token")).model
    sess = ep.session(q.SerializeToString())
    claimed = ep.assigned_nodes(sess).get(ep.EP_NAME, [])
    assert sum(c.startswith("MatMul:") for c in claimed) == 3, claimed
    x = (rng.standard_normal((2, 5, k)) * rng.uniform(0.1, 9, (2, 5, 1))).astype(np.float32)
    got = sess.run(None, {"x": x})
    inits_q = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    s = (np.maximum(np.abs(x).max(axis=-1, keepdims=True), np.float32(1e-8)) / np.float32(127)).astype(np.float32)
    codes = np.clip(np.rint(x / s), -128, 127).astype(np.int64).reshape(-1, k)
    for name, y in zip(("q", "k", "v"), got, strict=True):
        wq = inits_q[f"w{name}_quantized"].astype(np.int64)
        ws = inits_q[f"w{name}_scale"].astype(np.float32)
        want = ((codes @ wq).astype(np.float32) * ws[None, :]).astype(np.float32) * s.reshape(-1, 1)
        np.testing.assert_array_equal(y.reshape(-1, n), want, err_msg=name)
