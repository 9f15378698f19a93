"""Tiny FP32 models with the shapes real exporters produce, for the quantizer tests (no torch, no hub)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make(nodes, inputs, outputs, inits, opset: int = 21, ir: int = 10) -> onnx.ModelProto:  # type: ignore[no-untyped-def]
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="test")
    m.ir_version = ir
    onnx.checker.check_model(m, full_check=True)
    return m


def vi(name: str, shape, dt=TensorProto.FLOAT):  # type: ignore[no-untyped-def]
    return helper.make_tensor_value_info(name, dt, shape)


def w(rng: np.random.Generator, *shape: int, scale: float = 0.2) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def matmul_chain(k: int = 32, n: int = 48, seed: int = 0) -> onnx.ModelProto:
    """x[b, s, k] -> MatMul(W1) + b1 -> Relu -> MatMul(W2) -> y."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(w(rng, k, n), "W1"), numpy_helper.from_array(w(rng, n, scale=0.05), "b1"),
             numpy_helper.from_array(w(rng, n, k), "W2")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h0"], name="mm1"),
             helper.make_node("Add", ["h0", "b1"], ["h1"], name="add1"),
             helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
             helper.make_node("MatMul", ["h2", "W2"], ["y"], name="mm2")]
    return make(nodes, [vi("x", ["b", "s", k])], [vi("y", ["b", "s", k])], inits)


def constant_node_weights(k: int = 16, n: int = 24, seed: int = 1) -> onnx.ModelProto:
    """The weight arrives as a Constant node (as torch's exporter writes some), then a MatMul."""
    rng = np.random.default_rng(seed)
    c = helper.make_node("Constant", [], ["Wc"], name="const_w", value=numpy_helper.from_array(w(rng, k, n), "v"))
    mm = helper.make_node("MatMul", ["x", "Wc"], ["y"], name="mm")
    return make([c, mm], [vi("x", ["b", k])], [vi("y", ["b", n])], [])


def transposed_weights(k: int = 16, n: int = 24, seed: int = 2) -> onnx.ModelProto:
    """Gemm(transB=1) with W[n, k], and MatMul(x, Transpose(Wt)) with Wt[n, k]."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(w(rng, n, k), "Wg"), numpy_helper.from_array(w(rng, n, scale=0.1), "bg"),
             numpy_helper.from_array(w(rng, n, n), "Wt")]
    nodes = [helper.make_node("Gemm", ["x", "Wg", "bg"], ["g"], name="gemm", transB=1),
             helper.make_node("Transpose", ["Wt"], ["WtT"], name="transpose_w", perm=[1, 0]),
             helper.make_node("MatMul", ["g", "WtT"], ["y"], name="mm")]
    return make(nodes, [vi("x", ["b", k])], [vi("y", ["b", n])], inits)


def shared_weights(k: int = 16, seed: int = 3) -> onnx.ModelProto:
    """One weight used by two MatMuls (tied layers)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(w(rng, k, k), "Wshared")]
    nodes = [helper.make_node("MatMul", ["x", "Wshared"], ["h"], name="mm_a"),
             helper.make_node("Tanh", ["h"], ["t"], name="tanh"),
             helper.make_node("MatMul", ["t", "Wshared"], ["y"], name="mm_b")]
    return make(nodes, [vi("x", ["b", k])], [vi("y", ["b", k])], inits)


def conv_model(seed: int = 4) -> onnx.ModelProto:
    """Conv -> Relu -> Conv (NCHW), BatchNorm already folded as exporters do."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(w(rng, 8, 3, 3, 3), "C1"), numpy_helper.from_array(w(rng, 8, scale=0.1), "c1b"),
             numpy_helper.from_array(w(rng, 4, 8, 1, 1), "C2")]
    nodes = [helper.make_node("Conv", ["x", "C1", "c1b"], ["h"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "C2"], ["y"], name="conv2")]
    return make(nodes, [vi("x", ["b", 3, 8, 8])], [vi("y", ["b", 4, 8, 8])], inits)


def attention_model(d: int = 32, seed: int = 5, opset: int = 21) -> onnx.ModelProto:
    """Embedding Gather -> Q/K/V MatMuls -> scores MatMul -> Softmax -> context MatMul -> out MatMul,
    plus a tensor that is constant 0 during calibration (a zero bias path)."""
    rng = np.random.default_rng(seed)
    vocab = 50
    inits = [numpy_helper.from_array(w(rng, vocab, d, scale=1.0), "emb"),
             numpy_helper.from_array(w(rng, d, d), "Wq"), numpy_helper.from_array(w(rng, d, d), "Wk"),
             numpy_helper.from_array(w(rng, d, d), "Wv"), numpy_helper.from_array(w(rng, d, d), "Wo"),
             numpy_helper.from_array(np.zeros((d, d), np.float32), "Wzero"),
             numpy_helper.from_array(w(rng, d, d), "Wz2")]
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["x"], name="embed"),
             helper.make_node("MatMul", ["x", "Wq"], ["q"], name="q_proj"),
             helper.make_node("MatMul", ["x", "Wk"], ["k"], name="k_proj"),
             helper.make_node("MatMul", ["x", "Wv"], ["v"], name="v_proj"),
             helper.make_node("Transpose", ["k"], ["kt"], name="k_t", perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
             helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["c"], name="context"),
             helper.make_node("MatMul", ["c", "Wo"], ["o"], name="o_proj"),
             helper.make_node("MatMul", ["x", "Wzero"], ["z"], name="zero_proj"),   # output always 0
             helper.make_node("MatMul", ["z", "Wz2"], ["z2"], name="after_zero"),   # input constant 0
             helper.make_node("Add", ["o", "z2"], ["y"], name="residual")]
    if opset < 13:
        raise ValueError("opset >= 13")
    return make(nodes, [vi("ids", ["b", "s"], TensorProto.INT64)], [vi("y", ["b", "s", d])], inits, opset=opset,
                ir=7 if opset < 15 else 10)


def attention_feeds(n: int = 4, b: int = 2, s: int = 7, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"ids": rng.integers(0, 50, (b, s)).astype(np.int64)} for _ in range(n)]


def float_feeds(model: onnx.ModelProto, n: int = 4, seed: int = 0, **dims: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        f = {}
        for i in model.graph.input:
            shape = [d.dim_value if d.HasField("dim_value") else dims.get(d.dim_param, 3)
                     for d in i.type.tensor_type.shape.dim]
            f[i.name] = rng.standard_normal(shape).astype(np.float32)
        out.append(f)
    return out
