"""Select targets: which weights to quantize (with their per-channel axis) and which activation inputs get
Q -> DQ, and why anything was left out. Reads the graph only; the plan goes to ``ctx.plan``."""

from __future__ import annotations

import gc
import re

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxq.core.config import FIXED_RANGE_OPS, QuantConfig
from onnxq.core.errors import OnnxqError
from onnxq.passes.context import ActivationTarget, PassContext, QuantPlan, WeightTarget


def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    config = ctx.quant
    ctx.plan = plan = select_targets(gs.import_onnx(model), config)
    gc.collect()  # that graph (a reference cycle) holds every float weight as numpy: free it before calibrating
    if not plan.weights and not plan.activations:
        raise OnnxqError(f"nothing to quantize: no node of {', '.join(config.op_types)} with a constant float "
                         "weight (or a float activation) outside the exclusions"
                         + (f"; skipped: {next(iter(plan.skipped.items()))}" if plan.skipped else ""))
    return model


def _is_float(t: gs.Tensor) -> bool:
    dt = getattr(t, "dtype", None)
    return dt is None or dt == np.float32


def _is_float_const(t: gs.Tensor) -> bool:
    return isinstance(t, gs.Constant) and t.dtype == np.float32


def _is_activation(t: gs.Tensor) -> bool:
    return isinstance(t, gs.Variable) and _is_float(t)


def _finite(t: gs.Constant) -> bool:
    """No NaN / inf; a lazily loaded weight is read without caching it in the graph (one float copy at a time)."""
    lazy = getattr(t, "_values", None)
    return bool(np.all(np.isfinite(lazy.load() if isinstance(lazy, gs.ir.tensor.LazyValues) else t.values)))


def select_targets(graph: gs.Graph, config: QuantConfig) -> QuantPlan:
    plan = QuantPlan()
    patterns = [re.compile(p) for p in config.exclude]
    extra = set(config.extra_activation_op_types)

    def act(node: gs.Node, i: int, k: int = 0) -> None:
        """``k``: the reduction length when ``i`` is the activation input of a weight MatMul / Gemm (per-token
        quantization runs along it); 0 elsewhere (those stay per-tensor)."""
        t = node.inputs[i]
        if not config.quantize_activations or not _is_activation(t):
            return
        fixed = None
        if config.fixed_ranges and t.inputs and t.inputs[0].op in FIXED_RANGE_OPS:
            fixed = FIXED_RANGE_OPS[t.inputs[0].op]
        per_token = k if config.activation_granularity == "per-token" and k > 0 else 0
        plan.activations.append(ActivationTarget(node.name, node.op, i, t.name, None if per_token else fixed,
                                                 per_token))

    for node in graph.nodes:
        if node.domain not in ("", "ai.onnx", None):
            continue
        wanted = node.op in config.op_types or node.op in extra
        if not wanted:
            continue
        if node.op in config.exclude_op_types:
            plan.skipped[node.name] = f"op type {node.op} excluded"
            continue
        hit = next((p.pattern for p in patterns if p.fullmatch(node.name)), None)
        if hit is not None:
            plan.skipped[node.name] = f"excluded by pattern '{hit}'"
            continue
        if node.op not in config.op_types:  # wider coverage: activations only
            for i, t in enumerate(node.inputs):
                if isinstance(t, gs.Variable) and t.dtype == np.float32:
                    act(node, i)
            continue
        if node.op == "Gather" and not (node.inputs and _is_float_const(node.inputs[0])):
            continue  # index / shape gathers: not a table, nothing to say
        reason = _select_node(node, config, plan, act)
        if reason:
            plan.skipped[node.name] = reason
    return plan


def _select_node(node: gs.Node, config: QuantConfig, plan: QuantPlan, act) -> str | None:  # type: ignore[no-untyped-def]
    ins = node.inputs
    if node.op == "MatMul":
        if len(ins) != 2:
            return "unexpected MatMul arity"
        a, b = ins
        if _is_float_const(b):
            if len(b.shape) != 2:
                return f"constant MatMul operand is {len(b.shape)}-D (only 2-D weights are quantized)"
            if 0 in b.shape:  # onnxruntime's fused Q/DQ MatMul leaves a K = 0 output uninitialized
                return "weight is empty (a zero-size dim); left in float"
            if not _finite(b):
                return "weight holds NaN or infinity; left in float"
            plan.weights.append(WeightTarget(node.name, node.op, 1, b.name, 1))
            act(node, 0, int(b.shape[0]))
            return None
        if isinstance(a, gs.Constant):
            return "constant first operand (weight on the left) is not quantized"
        if not config.activation_matmuls:
            return "activation x activation MatMul (activation_matmuls=False)"
        if not config.quantize_activations:
            return "activation x activation MatMul in weight-only mode"
        act(node, 0)
        act(node, 1)
        return None
    if node.op == "Gemm":
        if len(ins) < 2 or not _is_float_const(ins[1]) or len(ins[1].shape) != 2:
            return "Gemm weight is not a constant 2-D float tensor"
        if 0 in ins[1].shape:
            return "weight is empty (a zero-size dim); left in float"
        act_ok = not node.attrs.get("transA", 0)
        if not _finite(ins[1]):
            return "weight holds NaN or infinity; left in float"
        trans_b = bool(node.attrs.get("transB", 0))
        plan.weights.append(WeightTarget(node.name, node.op, 1, ins[1].name, 0 if trans_b else 1))
        if act_ok:
            act(node, 0, int(ins[1].shape[1] if trans_b else ins[1].shape[0]))
        return None
    if node.op == "Conv":
        if len(ins) < 2 or not _is_float_const(ins[1]) or len(ins[1].shape) < 3:
            return "Conv weight is not a constant float tensor"
        if not _finite(ins[1]):
            return "weight holds NaN or infinity; left in float"
        plan.weights.append(WeightTarget(node.name, node.op, 1, ins[1].name, 0))
        act(node, 0)
        return None
    if node.op == "Gather":
        data = ins[0] if ins else None
        if data is None or not _is_float_const(data) or len(data.shape) != 2 or node.attrs.get("axis", 0) != 0:
            return "Gather of something other than a constant 2-D float table along axis 0"
        if not _finite(data):
            return "table holds NaN or infinity; left in float"
        plan.weights.append(WeightTarget(node.name, node.op, 0, data.name, 0))
        return None
    return f"op type {node.op} has no weight rule"
