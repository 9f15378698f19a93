"""Seed models for the EP fuzzer: small, valid, deterministic models of every pattern the onnxq EP claims.

    python tools/fuzz/seeds.py            # (re)writes tools/fuzz/corpus/*.onnx
    python tools/fuzz/seeds.py --check    # exit 1 if the committed corpus differs from what this script writes

Each seed is a few hundred bytes to a few KiB (K, N <= 24) so the fuzzer spends its time in session creation, not
in GEMMs. To add a new pattern (block-sparse models, say), write a function returning an ``onnx.ModelProto`` and
list it in ``SEEDS``; the mutator is generic (initializer dims / dtypes / values incl. out-of-range integer
indices, attributes, node inputs, op types and domains, graph I/O types and shapes, model-local functions), so a
custom-domain node and its function body are mutated like everything else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxq.apps.model_builders import (
    fp8_qdq_matmul_model,
    int8_qdq_static,
    mlp_model,
    qdq_act_matmul_model,
    qdq_matmul_model,
    quantize_weight_per_column_s8,
    sample_inputs,
)

CORPUS = Path(__file__).resolve().parent / "corpus"


def _model(nodes, inputs, outputs, inits, opset: int = 21) -> onnx.ModelProto:  # type: ignore[no-untyped-def]
    g = helper.make_graph(nodes, "seed", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="onnxq.fuzz")
    m.ir_version = 10
    onnx.checker.check_model(m, full_check=True)
    return m


def gemm_int8(trans_b: bool, dq_bias: bool) -> onnx.ModelProto:
    """Gemm(DQ(x), DQ(w)[, C]) with transB and a bias that is either float or DQ(int32) (onnxruntime's fusion)."""
    k, n = 12, 7
    rng = np.random.default_rng(11)
    wq, ws = quantize_weight_per_column_s8(rng.standard_normal((k, n)).astype(np.float32))
    if trans_b:
        wq = np.ascontiguousarray(wq.T)
    inits = [numpy_helper.from_array(np.array(0.03, np.float32), "x_scale"),
             numpy_helper.from_array(np.array(128, np.uint8), "x_zp"),
             numpy_helper.from_array(wq, "w"), numpy_helper.from_array(ws, "w_scale")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xdq"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["w", "w_scale"], ["wdq"], name="dq_w", axis=0 if trans_b else 1)]
    if dq_bias:
        inits += [numpy_helper.from_array(rng.integers(-500, 500, n).astype(np.int32), "b_q"),
                  numpy_helper.from_array((0.03 * ws).astype(np.float32), "b_scale")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_scale"], ["b"], name="dq_b", axis=0))
    else:
        inits.append(numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "b"))
    nodes.append(helper.make_node("Gemm", ["xdq", "wdq", "b"], ["y"], name="gemm", transB=int(trans_b)))
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])], inits)


def int8_mlp() -> onnx.ModelProto:
    """Two chained INT8 Q/DQ MatMul + Add layers with a Relu between (what int8_qdq_static writes)."""
    m = mlp_model(seed=3, sizes=(16, 24, 8))
    return int8_qdq_static(m, [sample_inputs(m, batch=4, seed=s) for s in range(2)])


def shared_activation() -> onnx.ModelProto:
    """One activation DQ feeding an INT8 weight MatMul and an activation x activation MatMul."""
    k = 8
    rng = np.random.default_rng(5)
    wq, ws = quantize_weight_per_column_s8(rng.standard_normal((k, k)).astype(np.float32))
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z"),
             numpy_helper.from_array(wq, "w"), numpy_helper.from_array(ws, "w_scale")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xdq"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["w", "w_scale"], ["wdq"], name="dq_w", axis=1),
             helper.make_node("MatMul", ["xdq", "wdq"], ["h"], name="proj"),
             helper.make_node("QuantizeLinear", ["h", "s", "z"], ["hq"], name="q_h"),
             helper.make_node("DequantizeLinear", ["hq", "s", "z"], ["hdq"], name="dq_h"),
             helper.make_node("Transpose", ["hdq"], ["hT"], name="t", perm=[0, 2, 1]),
             helper.make_node("QuantizeLinear", ["hT", "s", "z"], ["hTq"], name="q_t"),
             helper.make_node("DequantizeLinear", ["hTq", "s", "z"], ["hTdq"], name="dq_t"),
             helper.make_node("MatMul", ["xdq", "hTdq"], ["y"], name="scores")]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", k])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", "s"])], inits)


def residual_layernorm() -> onnx.ModelProto:
    """INT8 Q/DQ MatMul, then bias Add, residual Add and LayerNormalization (the EP's residual + LayerNorm group)."""
    m = qdq_matmul_model(16, 8, rank=3, bias=False)
    g = m.graph
    y = g.output[0]
    rng = np.random.default_rng(5)
    inits = list(g.initializer) + [
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "ln_bias_add"),
        numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(np.float32), "ln_gamma"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "ln_beta")]
    nodes = list(g.node) + [
        helper.make_node("Add", [y.name, "ln_bias_add"], ["biased"]),
        helper.make_node("Add", ["biased", "skip"], ["summed"]),
        helper.make_node("LayerNormalization", ["summed", "ln_gamma", "ln_beta"], ["out"], axis=-1, epsilon=1e-5)]
    skip = helper.make_tensor_value_info("skip", onnx.TensorProto.FLOAT, ["batch", "seq", 8])
    out = helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, ["batch", "seq", 8])
    return _model(nodes, list(g.input) + [skip], [out], inits)


def sparse(model: onnx.ModelProto, block: tuple[int, int] = (4, 1)) -> onnx.ModelProto:
    """Block-sparse: the weight becomes a com.onnxq BlockSparseExpand* node (values, block rows, column pointers)
    with a model-local function body; the EP claims the node with the DQ and MatMul."""
    from onnxq import SparsifyConfig, sparsify

    return sparsify(model, None, SparsifyConfig(sparsity=0.6, block=block, min_elements=0)).model


def per_token(k: int, n: int, rank3: bool) -> onnx.ModelProto:
    """Per-token INT8 (int8-per-token): the row-scale reduction (rule token-scale) and the blocked Q/DQ MatMul group
    whose scale input comes from it."""
    from onnxq import QuantConfig, quantize

    rng = np.random.default_rng(k * n)
    w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "b")
    shape = [1, "s", k] if rank3 else ["m", k]
    m = _model([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"), helper.make_node("Add", ["h", "b"], ["y"])],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*shape[:-1], n])], [w, b])
    return quantize(m, None, QuantConfig.from_recipe("int8-per-token")).model


SEEDS: dict[str, Callable[[], onnx.ModelProto]] = {
    "int8_matmul_bias": lambda: qdq_matmul_model(16, 8),
    "int8_matmul_rank3_s8": lambda: qdq_matmul_model(12, 10, rank=3, signed_activation=True, bias=False),
    "int8_matmul_per_tensor_wzp": lambda: qdq_matmul_model(9, 5, per_channel=False, weight_zero_point=True),
    "int8_matmul_quantized_input": lambda: qdq_matmul_model(8, 4, include_quantize=False),
    "int8_matmul_shared_dq": lambda: qdq_matmul_model(8, 6, rank=3, shared_dq_consumers=2),
    "int8_gemm": lambda: gemm_int8(False, False),
    "int8_gemm_transb_dqbias": lambda: gemm_int8(True, True),
    "int8_mlp": int8_mlp,
    "int8_matmul_residual_layernorm": residual_layernorm,
    "fp8_weight_only": lambda: fp8_qdq_matmul_model(16, 8),
    "fp8_e5m2_rank3": lambda: fp8_qdq_matmul_model(10, 6, weight_format="e5m2", rank=3, per_channel=False),
    "fp8_act_e4m3": lambda: fp8_qdq_matmul_model(12, 8, activation_format="e4m3fn"),
    "fp8_act_e5m2_input": lambda: fp8_qdq_matmul_model(8, 8, activation_format="e5m2", weight_format="e5m2",
                                                       include_quantize=False, bias=False),
    "act_matmul_u8": lambda: qdq_act_matmul_model([2, 3, 4, 8], [2, 3, 8, 5], fmt="u8"),
    "act_matmul_s8_broadcast": lambda: qdq_act_matmul_model([3, 1, 4, 6], [1, 2, 6, 4], fmt="s8"),
    "act_matmul_e4m3": lambda: qdq_act_matmul_model([2, 4, 8], [8, 3], fmt="e4m3fn"),
    "act_matmul_e5m2_inputs": lambda: qdq_act_matmul_model([4, 6], [6, 4], fmt="e5m2", include_quantize=False),
    "shared_activation": shared_activation,
    "sparse_int8_4x1": lambda: sparse(qdq_matmul_model(16, 8)),
    "sparse_int8_rank3_1x4": lambda: sparse(qdq_matmul_model(16, 8, rank=3, bias=False), (1, 4)),
    "sparse_fp8_weight_only": lambda: sparse(fp8_qdq_matmul_model(16, 8)),
    "sparse_fp8_act_e5m2": lambda: sparse(fp8_qdq_matmul_model(16, 8, weight_format="e5m2",
                                                               activation_format="e5m2")),
    "int8_per_token_rank3": lambda: per_token(16, 8, True),
    "int8_per_token_2d": lambda: per_token(12, 20, False),
}


def build_all() -> dict[str, bytes]:
    return {name: make().SerializeToString() for name, make in SEEDS.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed corpus instead of writing")
    ap.add_argument("--out", type=Path, default=CORPUS)
    args = ap.parse_args(argv)
    seeds = build_all()
    if args.check:
        stale = [n for n, b in seeds.items() if not (args.out / f"{n}.onnx").is_file()
                 or (args.out / f"{n}.onnx").read_bytes() != b]
        if stale:
            print(f"corpus out of date: {', '.join(stale)}; run python tools/fuzz/seeds.py", file=sys.stderr)
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (args.out / f"{name}.onnx").write_bytes(data)
    print(f"wrote {len(seeds)} seeds ({sum(map(len, seeds.values()))} bytes) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
