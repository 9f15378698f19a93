"""Block magnitude pruning: zero whole bk x bn blocks of MatMul / Gemm weights (float, or int8 / FP8 behind a
DequantizeLinear) until the target sparsity is reached, globally or per layer. The graph keeps its dense shape;
``pack_sparse`` turns the zeros into the compact format afterwards, so pruning composes with quantization in
either order (quantizing a zero gives a zero with symmetric weights).

Block importance is the L1 norm of the block's dequantized values (|q| * scale[n] for quantized weights), so one
global threshold compares layers fairly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from onnxq.core.config import SparsifyConfig
from onnxq.core.errors import OnnxqError
from onnxq.passes.context import PassContext

_FP8 = {TensorProto.FLOAT8E4M3FN: "e4m3fn", TensorProto.FLOAT8E5M2: "e5m2"}


@dataclass
class PruneConfig:
    sparsity: float = 0.9
    block: tuple[int, int] = (4, 1)  # (along K, along N)
    scope: str = "per-layer"  # or "global"
    exclude: tuple[str, ...] = ()  # node names or regular expressions
    op_types: tuple[str, ...] = ("MatMul", "Gemm")
    min_elements: int = 4096  # smaller weights are left dense (pruning them saves nothing and costs accuracy)


@dataclass
class PrunedWeight:
    initializer: str
    nodes: list[str]
    shape: tuple[int, int]
    sparsity: float


@dataclass
class PruneReport:
    weights: list[PrunedWeight] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # node -> reason

    @property
    def overall_sparsity(self) -> float:
        total = sum(w.shape[0] * w.shape[1] for w in self.weights)
        zero = sum(w.shape[0] * w.shape[1] * w.sparsity for w in self.weights)
        return zero / total if total else 0.0


@dataclass
class _Target:
    init: onnx.TensorProto
    kn_view: bool  # True: stored [K, N]; False: stored [N, K] (Gemm transB)
    scale: np.ndarray | None  # per-column dequantization scale (N) or None for float weights
    nodes: list[str]


def _decode(t: onnx.TensorProto) -> np.ndarray:
    if t.data_type in _FP8:
        import ml_dtypes

        dt = ml_dtypes.float8_e4m3fn if t.data_type == TensorProto.FLOAT8E4M3FN else ml_dtypes.float8_e5m2
        return np.frombuffer(t.raw_data, np.uint8).reshape(tuple(t.dims)).view(dt).astype(np.float32)
    return numpy_helper.to_array(t).astype(np.float32)


def find_targets(model: onnx.ModelProto, config: PruneConfig) -> tuple[dict[str, _Target], dict[str, str]]:
    inits = {t.name: t for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    pats = [re.compile(p) for p in config.exclude]
    targets: dict[str, _Target] = {}
    skipped: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type not in config.op_types or len(node.input) < 2:
            continue
        label = node.name or node.output[0]
        if any(p.fullmatch(label) for p in pats):  # full match, as `onnxq quantize --exclude`
            skipped[label] = "excluded"
            continue
        trans_b = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
        b = node.input[1]
        scale = None
        if b in inits:
            init = inits[b]
            if init.data_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
                skipped[label] = "weight is not float"
                continue
        elif b in producers and producers[b].op_type == "DequantizeLinear" and producers[b].input[0] in inits:
            dq = producers[b]
            init = inits[dq.input[0]]
            if init.data_type not in (TensorProto.INT8, *_FP8):
                skipped[label] = "quantized weight is not int8 / FP8"
                continue
            if len(dq.input) > 2 and dq.input[2] in inits:
                zp = _decode(inits[dq.input[2]])
                if np.any(zp != 0):
                    skipped[label] = "asymmetric weights (a zero point) cannot be pruned to zero"
                    continue
            s = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32).reshape(-1)
            n = init.dims[0] if trans_b else init.dims[-1]
            scale = np.broadcast_to(s, (n,)).copy() if s.size in (1, n) else None
            if scale is None:
                skipped[label] = "weight scale is neither per-tensor nor per-column"
                continue
        else:
            skipped[label] = "weight is not a constant"
            continue
        if len(init.dims) != 2:
            skipped[label] = "weight is not 2-D"
            continue
        k, n = (init.dims[1], init.dims[0]) if trans_b else (init.dims[0], init.dims[1])
        bk, bn = config.block
        if k % bk or n % bn:
            skipped[label] = f"{k}x{n} is not a multiple of the {bk}x{bn} block"
            continue
        if k * n < config.min_elements:
            skipped[label] = f"small weight ({k * n} values)"
            continue
        if init.name in targets:
            targets[init.name].nodes.append(label)  # shared weight: pruned once
        else:
            targets[init.name] = _Target(init, not trans_b, scale, [label])
    return targets, skipped


def _block_scores(w_kn: np.ndarray, scale: np.ndarray | None, bk: int, bn: int) -> np.ndarray:
    k, n = w_kn.shape
    mag = np.abs(w_kn) * (scale[None, :] if scale is not None else 1.0)
    return mag.reshape(k // bk, bk, n // bn, bn).sum(axis=(1, 3))  # [K/bk, N/bn]


def magnitude_keep(targets: dict[str, _Target], config: PruneConfig
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each target's decoded weight as [K, N] and its kept blocks [K/bk, N/bn] under block magnitude pruning
    (per-layer quantiles or one global threshold)."""
    bk, bn = config.block
    decoded = {}
    scores = {}
    for name, t in targets.items():
        w = _decode(t.init)
        w_kn = w if t.kn_view else w.T
        decoded[name] = w_kn
        scores[name] = _block_scores(w_kn, t.scale, bk, bn)
    thresholds: dict[str, float] = {}
    if config.scope == "global" and scores:
        allv = np.concatenate([s.ravel() for s in scores.values()])
        cut = float(np.quantile(allv, config.sparsity)) if config.sparsity > 0 else -np.inf
        thresholds = {nm: cut for nm in scores}
    else:
        thresholds = {nm: (float(np.quantile(s, config.sparsity)) if config.sparsity > 0 else -np.inf)
                      for nm, s in scores.items()}
    return decoded, {name: scores[name] > thresholds[name] for name in targets}


def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    if ctx.sparse is None or ctx.sparse.sparsity <= 0:
        return model
    pruned, report = prune_blocks(model, prune_config(ctx.sparse))
    ctx.reports["prune"] = report
    require_pruned(report)
    return pruned


def prune_config(cfg: SparsifyConfig) -> PruneConfig:
    return PruneConfig(cfg.sparsity, cfg.block, cfg.scope, tuple(cfg.exclude), tuple(cfg.op_types), cfg.min_elements)


def require_pruned(report: PruneReport) -> None:
    if not report.weights:
        raise OnnxqError("no weight could be pruned: " + (
            "; ".join(f"{k}: {v}" for k, v in list(report.skipped.items())[:5]) or "no MatMul/Gemm weights"))


def check_config(config: PruneConfig) -> None:
    if not 0.0 <= config.sparsity < 1.0:
        raise OnnxqError(f"sparsity must be in [0, 1), got {config.sparsity}")
    if config.scope not in ("global", "per-layer"):
        raise OnnxqError(f"scope must be 'global' or 'per-layer', got '{config.scope}'")


def prune_blocks(model: onnx.ModelProto, config: PruneConfig) -> tuple[onnx.ModelProto, PruneReport]:
    """Returns a pruned copy of `model` (the input is not modified) and what was pruned."""
    check_config(config)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    targets, skipped = find_targets(out, config)
    bk, bn = config.block
    decoded, keeps = magnitude_keep(targets, config)
    report = PruneReport(skipped=skipped)
    for name, t in targets.items():
        keep = keeps[name]  # [K/bk, N/bn]
        mask_kn = np.repeat(np.repeat(keep, bk, axis=0), bn, axis=1)
        mask = mask_kn if t.kn_view else mask_kn.T
        _apply_mask(t.init, mask)
        report.weights.append(PrunedWeight(name, t.nodes, decoded[name].shape, float(1.0 - keep.mean())))
    return out, report


def _apply_mask(t: onnx.TensorProto, mask: np.ndarray) -> None:
    if t.data_type in _FP8:
        raw = np.frombuffer(t.raw_data, np.uint8).reshape(tuple(t.dims)).copy()
        raw[~mask] = 0  # +0.0 in both FP8 formats
        t.raw_data = raw.tobytes()
        return
    arr = numpy_helper.to_array(t).copy()
    arr[~mask] = 0
    t.CopyFrom(numpy_helper.from_array(arr, t.name))
