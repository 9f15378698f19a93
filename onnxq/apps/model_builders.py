"""Small deterministic models the repository builds itself (no model hub): for tests, samples and benchmarks.

* ``qdq_matmul_model`` — one INT8 Q/DQ MatMul (optionally with bias), every knob exposed, for kernel/EP tests.
* ``mlp_model`` / ``tiny_encoder_model`` — FP32 sample models with seeded weights.
* ``int8_qdq_static`` — the library's INT8 quantizer (``onnxq.quantize``) with the simplest settings (MatMul
  weights per column, u8 activations, min/max), used to make the bundled INT8 samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 21
IR_VERSION = 10


def _model(graph: onnx.GraphProto, opset: int = OPSET) -> onnx.ModelProto:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="onnxq.model_builders")
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m, full_check=True)
    return m


def quantize_weight_per_column_s8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-column int8: w[k, n] ~= q[k, n] * scale[n], q in [-127, 127]."""
    amax = np.abs(w).max(axis=0).astype(np.float32)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def activation_params_u8(lo: float, hi: float) -> tuple[np.float32, np.uint8]:
    """Asymmetric u8 scale/zero point covering [min(lo, 0), max(hi, 0)] (0 is always exact)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    zp = int(np.clip(np.rint(-lo / scale), 0, 255))
    return np.float32(scale), np.uint8(zp)


def qdq_matmul_model(
    k: int,
    n: int,
    *,
    rank: int = 2,
    seed: int = 0,
    per_channel: bool = True,
    signed_activation: bool = False,
    bias: bool = True,
    activation_zero_point: int | None = None,
    weight_zero_point: bool = False,
    include_quantize: bool = True,
    shared_dq_consumers: int = 1,
) -> onnx.ModelProto:
    """x[?, (?,) K] -> Q -> DQ -> MatMul(DQ(w_s8)) [-> Add(bias)] -> y.

    ``include_quantize=False`` makes the model take the 8-bit tensor as its input; ``shared_dq_consumers > 1``
    feeds the activation DQ to that many MatMuls (each with its own weights), as quantizers do for Q/K/V.
    """
    rng = np.random.default_rng(seed)
    act_type = TensorProto.INT8 if signed_activation else TensorProto.UINT8
    if activation_zero_point is None:
        activation_zero_point = -3 if signed_activation else 121
    x_scale = np.float32(rng.uniform(0.01, 0.05))
    inits = [
        numpy_helper.from_array(np.array(x_scale, np.float32), "x_scale"),
        numpy_helper.from_array(
            np.array(activation_zero_point, np.int8 if signed_activation else np.uint8), "x_zp"
        ),
    ]
    batch_dims = ["batch"] if rank == 2 else (["batch", "seq"] if rank == 3 else [])
    nodes = []
    if include_quantize:
        x_in = helper.make_tensor_value_info("x", TensorProto.FLOAT, [*batch_dims, k])
        nodes.append(helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"], name="quant_x"))
    else:
        x_in = helper.make_tensor_value_info("x_q", act_type, [*batch_dims, k])
    nodes.append(helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"], name="dequant_x"))
    outputs = []
    for i in range(shared_dq_consumers):
        sfx = "" if shared_dq_consumers == 1 else f"_{i}"
        w = rng.standard_normal((k, n)).astype(np.float32) * 0.1
        if per_channel:
            wq, ws = quantize_weight_per_column_s8(w)
        else:
            ws = np.float32(np.abs(w).max() / 127.0)
            wq = np.clip(np.rint(w / ws), -127, 127).astype(np.int8)
        inits.append(numpy_helper.from_array(wq, f"w{sfx}"))
        inits.append(numpy_helper.from_array(np.asarray(ws, np.float32), f"w_scale{sfx}"))
        dq_inputs = [f"w{sfx}", f"w_scale{sfx}"]
        if weight_zero_point:
            wz = rng.integers(-4, 5, size=np.shape(ws)).astype(np.int8)
            inits.append(numpy_helper.from_array(wz, f"w_zp{sfx}"))
            dq_inputs.append(f"w_zp{sfx}")
        nodes.append(
            helper.make_node("DequantizeLinear", dq_inputs, [f"w_dq{sfx}"], name=f"dequant_w{sfx}", axis=1)
        )
        mm_out = f"mm{sfx}" if bias else f"y{sfx}"
        nodes.append(helper.make_node("MatMul", ["x_dq", f"w_dq{sfx}"], [mm_out], name=f"matmul{sfx}"))
        if bias:
            b = rng.standard_normal(n).astype(np.float32)
            inits.append(numpy_helper.from_array(b, f"b{sfx}"))
            nodes.append(helper.make_node("Add", [mm_out, f"b{sfx}"], [f"y{sfx}"], name=f"bias{sfx}"))
        outputs.append(helper.make_tensor_value_info(f"y{sfx}", TensorProto.FLOAT, [*batch_dims, n]))
    graph = helper.make_graph(nodes, "qdq_matmul", [x_in], outputs, initializer=inits)
    return _model(graph)


FP8_TYPES = {"e4m3fn": TensorProto.FLOAT8E4M3FN, "e5m2": TensorProto.FLOAT8E5M2}
FP8_MAX = {"e4m3fn": 448.0, "e5m2": 57344.0}


def _fp8_dtype(fmt: str):
    import ml_dtypes

    return {"e4m3fn": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}[fmt]


def fp8_tensor(arr: np.ndarray, name: str, fmt: str) -> onnx.TensorProto:
    """An FP8 initializer from values already representable in `fmt` (stored as raw bytes)."""
    q = np.asarray(arr).astype(_fp8_dtype(fmt))
    t = helper.make_tensor(name, FP8_TYPES[fmt], list(q.shape), q.view(np.uint8).tobytes(), raw=True)
    return t


def quantize_weight_per_column_fp8(w: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-column scale so each column's max maps to the format's max; returns (fp8 values as float32, scale)."""
    amax = np.abs(w).max(axis=0).astype(np.float32)
    scale = np.where(amax > 0, amax / FP8_MAX[fmt], 1.0).astype(np.float32)
    q = (w / scale).astype(_fp8_dtype(fmt)).astype(np.float32)
    return q, scale


def fp8_qdq_matmul_model(
    k: int,
    n: int,
    *,
    weight_format: str = "e4m3fn",
    activation_format: str | None = None,
    rank: int = 2,
    seed: int = 0,
    bias: bool = True,
    per_channel: bool = True,
    with_zero_points: bool = True,
    include_quantize: bool = True,
) -> onnx.ModelProto:
    """FP8 Q/DQ MatMul: DQ(w_fp8) feeds MatMul; the activation is float (weight-only, ``activation_format=None``)
    or goes through QuantizeLinear -> DequantizeLinear in ``activation_format`` (``include_quantize=False``: the
    model takes the FP8 tensor itself)."""
    rng = np.random.default_rng(seed)
    batch_dims = ["batch"] if rank == 2 else ["batch", "seq"]
    w = rng.standard_normal((k, n)).astype(np.float32) * 0.1
    if per_channel:
        wq, ws = quantize_weight_per_column_fp8(w, weight_format)
    else:
        ws = np.float32(np.abs(w).max() / FP8_MAX[weight_format])
        wq = (w / ws).astype(_fp8_dtype(weight_format)).astype(np.float32)
    inits = [fp8_tensor(wq, "w", weight_format), numpy_helper.from_array(np.asarray(ws, np.float32), "w_scale")]
    dq_inputs = ["w", "w_scale"]
    if with_zero_points:
        inits.append(fp8_tensor(np.zeros(np.shape(ws), np.float32), "w_zp", weight_format))
        dq_inputs.append("w_zp")
    nodes = [helper.make_node("DequantizeLinear", dq_inputs, ["w_dq"], name="dequant_w", axis=1)]
    if activation_format is None:
        x_in = helper.make_tensor_value_info("x", TensorProto.FLOAT, [*batch_dims, k])
        mm_a = "x"
    else:
        inits.append(numpy_helper.from_array(np.array(rng.uniform(0.005, 0.02), np.float32), "x_scale"))
        q_inputs = ["x_scale"]
        if with_zero_points:
            inits.append(fp8_tensor(np.zeros((), np.float32), "x_zp", activation_format))
            q_inputs.append("x_zp")
        if include_quantize:
            x_in = helper.make_tensor_value_info("x", TensorProto.FLOAT, [*batch_dims, k])
            if with_zero_points:
                nodes.append(helper.make_node("QuantizeLinear", ["x", *q_inputs], ["x_q"], name="quant_x", saturate=1))
            else:  # without a zero point the output type comes from output_dtype
                nodes.append(helper.make_node("QuantizeLinear", ["x", *q_inputs], ["x_q"], name="quant_x",
                                              saturate=1, output_dtype=FP8_TYPES[activation_format]))
        else:
            x_in = helper.make_tensor_value_info("x_q", FP8_TYPES[activation_format], [*batch_dims, k])
        nodes.append(helper.make_node("DequantizeLinear", ["x_q", *q_inputs], ["x_dq"], name="dequant_x"))
        mm_a = "x_dq"
    mm_out = "mm" if bias else "y"
    nodes.append(helper.make_node("MatMul", [mm_a, "w_dq"], [mm_out], name="matmul"))
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "b"))
        nodes.append(helper.make_node("Add", [mm_out, "b"], ["y"], name="bias"))
    graph = helper.make_graph(nodes, "fp8_qdq_matmul", [x_in],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*batch_dims, n])],
                              initializer=inits)
    return _model(graph)


def qdq_act_matmul_model(
    shape_a: Sequence[int],
    shape_b: Sequence[int],
    *,
    fmt: str = "u8",
    seed: int = 0,
    include_quantize: bool = True,
) -> onnx.ModelProto:
    """Activation x activation MatMul with both inputs through Q -> DQ (per-tensor): ``fmt`` is u8, s8, e4m3fn or
    e5m2. ``include_quantize=False`` makes the model take both quantized tensors as inputs."""
    rng = np.random.default_rng(seed)
    inits, nodes, inputs = [], [], []
    for side, shape in (("a", shape_a), ("b", shape_b)):
        inits.append(numpy_helper.from_array(np.array(rng.uniform(0.02, 0.06), np.float32), f"{side}_scale"))
        if fmt in FP8_TYPES:
            inits.append(fp8_tensor(np.zeros((), np.float32), f"{side}_zp", fmt))
            qtype = FP8_TYPES[fmt]
        else:
            zp = int(rng.integers(-10, 10)) if fmt == "s8" else int(rng.integers(100, 150))
            inits.append(numpy_helper.from_array(np.array(zp, np.int8 if fmt == "s8" else np.uint8), f"{side}_zp"))
            qtype = TensorProto.INT8 if fmt == "s8" else TensorProto.UINT8
        params = [f"{side}_scale", f"{side}_zp"]
        if include_quantize:
            inputs.append(helper.make_tensor_value_info(side, TensorProto.FLOAT, list(shape)))
            nodes.append(helper.make_node("QuantizeLinear", [side, *params], [f"{side}_q"], name=f"quant_{side}"))
        else:
            inputs.append(helper.make_tensor_value_info(f"{side}_q", qtype, list(shape)))
        nodes.append(
            helper.make_node("DequantizeLinear", [f"{side}_q", *params], [f"{side}_dq"], name=f"dequant_{side}")
        )
    nodes.append(helper.make_node("MatMul", ["a_dq", "b_dq"], ["y"], name="matmul"))
    out_rank = max(len(shape_a), len(shape_b))
    graph = helper.make_graph(nodes, "qdq_act_matmul", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * out_rank)],
                              initializer=inits)
    return _model(graph)


# ---------------------------------------------------------------------------------------------- FP32 samples


def mlp_model(seed: int = 0, sizes: Sequence[int] = (64, 128, 96, 10)) -> onnx.ModelProto:
    """x[batch, 64] -> (MatMul + Add + Relu) x 2 -> MatMul + Add -> logits[batch, 10]."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    cur = "x"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = (rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"fc{i}.weight"), numpy_helper.from_array(
            (rng.standard_normal(b) * 0.05).astype(np.float32), f"fc{i}.bias")]
        nodes.append(helper.make_node("MatMul", [cur, f"fc{i}.weight"], [f"fc{i}.mm"], name=f"fc{i}/MatMul"))
        last = i == len(sizes) - 2
        out = "logits" if last else f"fc{i}.out"
        nodes.append(helper.make_node("Add", [f"fc{i}.mm", f"fc{i}.bias"], [out], name=f"fc{i}/Add"))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"fc{i}.relu"], name=f"fc{i}/Relu"))
            cur = f"fc{i}.relu"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", sizes[-1]])],
        initializer=inits,
    )
    return _model(graph)


def tiny_encoder_model(seed: int = 0, d: int = 64, heads: int = 2, ffn: int = 128) -> onnx.ModelProto:
    """One pre-LN transformer encoder block: x[batch, seq, d] -> y[batch, seq, d]."""
    rng = np.random.default_rng(seed)
    dh = d // heads
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def init(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op: str, ins: list[str], out: str, **attrs: object) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def linear(x: str, a: int, b: int, name: str) -> str:
        w = init(f"{name}.weight", (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32))
        bias = init(f"{name}.bias", (rng.standard_normal(b) * 0.02).astype(np.float32))
        return node("Add", [node("MatMul", [x, w], f"{name}/MatMul"), bias], f"{name}/Add")

    def layer_norm(x: str, name: str) -> str:
        g = init(f"{name}.gamma", (1 + 0.1 * rng.standard_normal(d)).astype(np.float32))
        b = init(f"{name}.beta", (0.1 * rng.standard_normal(d)).astype(np.float32))
        return node("LayerNormalization", [x, g, b], f"{name}/LayerNorm", axis=-1, epsilon=1e-5)

    split_shape = init("shape.split_heads", np.array([0, 0, heads, dh], np.int64))
    merge_shape = init("shape.merge_heads", np.array([0, 0, d], np.int64))
    inv_sqrt = init("attn.scale", np.array(1.0 / np.sqrt(dh), np.float32))

    h = layer_norm("x", "ln1")
    q, k, v = (linear(h, d, d, f"attn.{p}") for p in "qkv")

    def heads_first(t: str, perm: list[int]) -> str:
        r = node("Reshape", [t, split_shape], f"{t}/split")
        return node("Transpose", [r], f"{t}/transpose", perm=perm)

    qh, kh, vh = heads_first(q, [0, 2, 1, 3]), heads_first(k, [0, 2, 3, 1]), heads_first(v, [0, 2, 1, 3])
    scores = node("Mul", [node("MatMul", [qh, kh], "attn/scores"), inv_sqrt], "attn/scaled")
    probs = node("Softmax", [scores], "attn/softmax", axis=-1)
    ctx = node("MatMul", [probs, vh], "attn/context")
    ctx = node("Reshape", [node("Transpose", [ctx], "attn/merge_t", perm=[0, 2, 1, 3]), merge_shape], "attn/merge")
    x1 = node("Add", ["x", linear(ctx, d, d, "attn.out")], "residual1")
    h2 = layer_norm(x1, "ln2")
    f = linear(h2, d, ffn, "ffn.up")
    f = node("Gelu", [f], "ffn/gelu") if OPSET >= 20 else node("Relu", [f], "ffn/relu")
    y = node("Add", [x1, linear(f, ffn, d, "ffn.down")], "y")
    graph = helper.make_graph(
        nodes,
        "tiny_encoder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", d])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["batch", "seq", d])],
        initializer=inits,
    )
    return _model(graph)


def sample_inputs(model: onnx.ModelProto, batch: int = 4, seq: int = 16, seed: int = 1) -> dict[str, np.ndarray]:
    """Seeded random float inputs for a model with symbolic batch/seq dims."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in model.graph.input:
        dims = []
        for i, dim in enumerate(inp.type.tensor_type.shape.dim):
            if dim.HasField("dim_value"):
                dims.append(dim.dim_value)
            else:
                dims.append(batch if i == 0 else seq)
        feeds[inp.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds


# ------------------------------------------------------------------------------ INT8 models, by the library


def int8_qdq_static(model: onnx.ModelProto, calibration: Sequence[Mapping[str, np.ndarray]]) -> onnx.ModelProto:
    """The library's INT8 quantizer with the simplest settings: every MatMul with a constant float weight gets s8
    per-column weights and u8 per-tensor activations, min/max ranges over ``calibration``, no smoothing."""
    from onnxq.core.config import QuantConfig
    from onnxq.pipeline.api import quantize

    cfg = QuantConfig(format="int8", op_types=("MatMul",), activation_matmuls=False, calibration_method="minmax")
    return quantize(model, None, cfg, list(calibration)).model  # type: ignore[return-value]
