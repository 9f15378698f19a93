"""One-shot block pruning with weight reconstruction (OBS / SparseGPT-style) from calibration data.

ONNX MatMul computes y = x . W with W of shape [K, N]; the K rows of W are the layer's inputs. For every weight
that ``prune_blocks`` would prune (same eligibility rules, same per-layer block counts), this pass

1. streams the layer's input activations X (rows = tokens) over the calibration feeds into H = X^T X ([K, K],
   float64; only H is kept, never the activations),
2. damps H (``damp`` x mean of its diagonal added to the diagonal; inputs that were always 0 get a diagonal of 1
   and their weights are zeroed, so they are pruned first),
3. walks K in lazy batches of ``batch_rows`` rows (a multiple of the block's K): at the start of a batch it picks
   the batch's share of the layer's pruned blocks, lowest first by the OBS score sum(w^2 / [H_F^-1]_kk) over the
   block's elements (F: the rows not yet processed), then processes the batch's rows one at a time, zeroing the
   pruned entries of the row and spreading the error over the later rows with the row of the upper Cholesky factor
   of H^-1 (the optimal OBS update of the remaining weights); the batch's accumulated error is applied to the rows
   after the batch in one matrix product.

Sequential mode (the default) collects a layer's H from the model whose earlier layers are already pruned and
reconstructed, in waves: every weight whose input no longer depends on an unprocessed weight is handled in the
same pass over the data (Q, K and V of an attention block share one pass). Each wave runs only the part of the
graph its inputs need. With ``dense_target`` (the default) the layer is fitted to the dense model's outputs of
that layer, X_dense W0, rather than to X W0 on its own (pruned-model) inputs as SparseGPT does: the wave also
runs the dense model and accumulates C = X^T X_dense; the unconstrained fit W* = W0 + (H + lam I)^-1 (C - H) W0
(damped towards W0) is pruned with the same OBS procedure, since |X W' - X_dense W0|^2 = |X (W' - W*)|^2 + a
constant. So each layer also corrects the error of the layers before it. Non-sequential mode collects every H
from the dense model in one pass.

Only float (fp32 / fp16) weights are reconstructed; quantized weights are refused (reconstruct, then quantize).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from onnxq.calibration.data import load_feeds
from onnxq.calibration.runner import TensorRunner
from onnxq.core.errors import OnnxqError
from onnxq.passes.context import PassContext, ProgressFactory
from onnxq.passes.prune_blocks import (
    PruneConfig,
    PrunedWeight,
    PruneReport,
    _Target,
    check_config,
    find_targets,
    magnitude_keep,
    prune_config,
    require_pruned,
)


def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    cfg = ctx.sparse
    if cfg is None or cfg.sparsity <= 0:
        return model
    assert ctx.data is not None, "SparsifyConfig.validate requires data for reconstruction"
    feeds = load_feeds(model, ctx.data, cfg.calibration_max_samples)
    rcfg = ReconstructConfig(cfg.damp, cfg.sequential, cfg.batch_rows, cfg.calibration_memory_mb, cfg.dense_target)
    out, ctx.reports["prune"], ctx.reports["reconstruct"] = reconstruct_sparse(model, prune_config(cfg), rcfg, feeds,
                                                                               ctx.progress)
    require_pruned(ctx.reports["prune"])
    return out


@dataclass
class ReconstructConfig:
    damp: float = 0.01  # share of the mean diagonal of H added to its diagonal
    sequential: bool = True  # H from the model whose earlier layers are already pruned (SparseGPT-style)
    batch_rows: int = 128  # lazy batch along K; rounded down to a multiple of the block's K (at least one block)
    memory_mb: float = 1024.0  # activation bytes one onnxruntime run may return
    dense_target: bool = True  # sequential: fit the dense model's layer outputs, not W0 on the pruned inputs


@dataclass
class ReconstructedWeight:
    initializer: str
    shape: tuple[int, int]
    sparsity: float
    error_magnitude: float  # relative output error on the calibration data, magnitude pruning (no update)
    error: float  # the same after reconstruction: |X (W - W')|^2 / |X W|^2
    dead_inputs: int  # inputs that were 0 on every calibration row


@dataclass
class ReconstructReport:
    weights: list[ReconstructedWeight] = field(default_factory=list)
    samples: int = 0  # calibration feeds
    rows: int = 0  # activation rows (tokens) the first layer saw
    waves: int = 0  # passes over the calibration data
    seconds: float = 0.0


def _stored_kn(t: _Target, w_kn: np.ndarray) -> np.ndarray:
    return w_kn if t.kn_view else w_kn.T


def relative_error(w0: np.ndarray, w1: np.ndarray, h: np.ndarray) -> float:
    """|X (w0 - w1)|^2 / |X w0|^2 from H = X^T X alone."""
    d = w0 - w1
    den = float(np.sum(w0 * (h @ w0)))
    return float(np.sum(d * (h @ d))) / den if den > 0 else 0.0


def _upper_cholesky_of_inverse(h: np.ndarray) -> np.ndarray:
    try:
        lo = np.linalg.cholesky(h)
    except np.linalg.LinAlgError as e:
        raise OnnxqError("the layer's input Hessian X^T X is not positive definite even after damping; raise "
                         "--damp (for example 0.05) or give more calibration data") from e
    lo_inv = np.linalg.solve(lo, np.eye(h.shape[0]))  # lower triangular
    hinv = lo_inv.T @ lo_inv
    hinv = (hinv + hinv.T) * 0.5
    try:
        return np.linalg.cholesky(hinv).T  # hinv = U^T U, U upper
    except np.linalg.LinAlgError as e:
        raise OnnxqError("the inverse Hessian lost positive definiteness (badly conditioned inputs); raise --damp "
                         "(for example 0.05)") from e


def dense_fit(h: np.ndarray, c: np.ndarray, w0: np.ndarray, damp: float) -> np.ndarray:
    """argmin_W |X W - X_d W0|^2 + lam |W - W0|^2 from H = X^T X and C = X^T X_d: the damping pulls towards W0
    (not towards 0), so W* = W0 exactly when X = X_d. Dead inputs as in the pruning."""
    h = np.array(h, np.float64)
    diag = np.diag(h).copy()
    dead = diag <= 0
    if dead.all():
        return np.zeros_like(w0)
    r = (c - h) @ w0
    h[dead, dead] = 1.0
    if damp > 0:
        h[np.diag_indices(len(h))] += damp * float(np.mean(diag[~dead]))
    w = w0 + np.linalg.solve(h, r)
    w[dead] = 0.0
    return w


def sparsegpt_prune(w_kn: np.ndarray, h: np.ndarray, block: tuple[int, int], *, prune_blocks: int | None = None,
                    keep: np.ndarray | None = None, damp: float = 0.01, batch_rows: int = 128
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Prune ``prune_blocks`` bk x bn blocks of ``w_kn`` [K, N] (chosen by the OBS score, per lazy batch) or the
    blocks where ``keep`` [K/bk, N/bn] is False, and update the remaining weights to minimise |X W - X W'|^2 with
    H = X^T X [K, K]. Returns (W' as float64 with the pruned blocks exactly 0, keep)."""
    k, n = w_kn.shape
    bk, bn = block
    if k % bk or n % bn:
        raise OnnxqError(f"weight {k}x{n} is not a multiple of the {bk}x{bn} block")
    rows, cols = k // bk, n // bn
    if (keep is None) == (prune_blocks is None):
        raise OnnxqError("give exactly one of prune_blocks and keep")
    select = keep is None
    keep = np.ones((rows, cols), bool) if keep is None else np.asarray(keep, bool).copy()
    total = int(prune_blocks or 0)
    w = np.array(w_kn, np.float64)
    h = np.array(h, np.float64)
    diag = np.diag(h).copy()
    dead = diag <= 0
    if dead.all():
        h = np.eye(k)
    else:
        h[dead, dead] = 1.0
        if damp > 0:
            h[np.diag_indices(k)] += damp * float(np.mean(diag[~dead]))
    w[dead, :] = 0.0
    u = _upper_cholesky_of_inverse(h)
    step = max(bk, (batch_rows // bk) * bk)
    for i1 in range(0, k, step):
        i2 = min(i1 + step, k)
        r0, r1 = i1 // bk, i2 // bk
        w1 = w[i1:i2].copy()
        u1 = u[i1:i2, i1:i2]
        if select:
            here = (total * r1 * 2 + rows) // (2 * rows) - (total * r0 * 2 + rows) // (2 * rows)
            kb = np.ones((r1 - r0, cols), bool)
            if here > 0:
                d = np.diag(u1)
                score = (w1 ** 2 / (d[:, None] ** 2)).reshape(r1 - r0, bk, cols, bn).sum(axis=(1, 3)).ravel()
                kb.flat[np.argpartition(score, here - 1)[:here]] = False
            keep[r0:r1] = kb
        mask1 = np.repeat(np.repeat(keep[r0:r1], bk, axis=0), bn, axis=1)
        err1 = np.zeros_like(w1)
        for i in range(i2 - i1):
            row = w1[i]
            pruned = ~mask1[i]
            if not pruned.any():
                continue
            e = np.where(pruned, row, 0.0) / u1[i, i]
            w1[i:] -= np.outer(u1[i, i:], e)
            err1[i] = e
        w[i1:i2] = np.where(mask1, w1, 0.0)
        if i2 < k:
            w[i2:] -= u[i1:i2, i2:].T @ err1
    return w, keep


# ------------------------------------------------------------------------------------------------ graph side


@dataclass
class _Use:
    tensor: str  # the activation input of the consuming node
    trans_a: bool  # Gemm transA: the activation is [K, M]


def _weight_name(nd: onnx.NodeProto, inits: set[str], producers: Mapping[str, onnx.NodeProto]) -> str | None:
    """The initializer behind a node's second input: itself, or a DequantizeLinear's quantized input."""
    b = nd.input[1]
    if b in inits:
        return b
    p = producers.get(b)
    return p.input[0] if p is not None and p.op_type == "DequantizeLinear" and p.input else None


def _uses(model: onnx.ModelProto, targets: Mapping[str, _Target]) -> dict[str, list[_Use]]:
    inits = {t.name for t in model.graph.initializer}
    producers = {o: nd for nd in model.graph.node for o in nd.output}
    uses: dict[str, list[_Use]] = {name: [] for name in targets}
    by_label = {name: set(t.nodes) for name, t in targets.items()}
    for nd in model.graph.node:
        label = nd.name or nd.output[0]
        if nd.op_type not in ("MatMul", "Gemm") or len(nd.input) < 2:
            continue
        wname = _weight_name(nd, inits, producers)
        if wname in by_label and label in by_label[wname]:
            trans_a = nd.op_type == "Gemm" and any(a.name == "transA" and a.i for a in nd.attribute)
            uses[wname].append(_Use(nd.input[0], trans_a))
    return uses


def _upstream_targets(model: onnx.ModelProto, targets: Mapping[str, _Target]) -> dict[str, frozenset[str]]:
    """tensor -> the target weights whose consuming nodes it depends on."""
    inits = {t.name for t in model.graph.initializer}
    producers = {o: nd for nd in model.graph.node for o in nd.output}
    weight_of: dict[int, str] = {}
    for nd in model.graph.node:
        if len(nd.input) >= 2:
            wname = _weight_name(nd, inits, producers)
            if wname in targets and (nd.name or nd.output[0]) in targets[wname].nodes:
                weight_of[id(nd)] = wname
    up: dict[str, frozenset[str]] = {}
    empty: frozenset[str] = frozenset()
    for nd in model.graph.node:
        s: set[str] = set()
        for i in nd.input:
            s |= up.get(i, empty)
        if id(nd) in weight_of:
            s.add(weight_of[id(nd)])
        fs = frozenset(s)
        for o in nd.output:
            up[o] = fs
    return up


def _submodel(model: onnx.ModelProto, tensors: Sequence[str]) -> onnx.ModelProto:
    """The part of `model` that computes `tensors` (all graph inputs kept, so any feed fits)."""
    g = model.graph
    producers = {o: i for i, nd in enumerate(g.node) for o in nd.output}
    need: set[int] = set()
    stack = [t for t in tensors if t in producers]
    seen: set[str] = set()
    while stack:
        t = stack.pop()
        if t in seen or t not in producers:
            continue
        seen.add(t)
        i = producers[t]
        if i not in need:
            need.add(i)
            stack.extend(x for x in g.node[i].input if x)
    nodes = [g.node[i] for i in sorted(need)]
    has_subgraph = any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                       for nd in nodes for a in nd.attribute)
    used = {x for nd in nodes for x in nd.input}
    sub = onnx.ModelProto()
    sub.ir_version = model.ir_version
    sub.opset_import.extend(model.opset_import)
    sub.functions.extend(model.functions)
    sg = sub.graph
    sg.name = g.name or "graph"
    sg.node.extend(nodes)
    sg.initializer.extend(t for t in g.initializer if has_subgraph or t.name in used)
    sg.input.extend(g.input)
    produced = {o for nd in nodes for o in nd.output}
    sg.value_info.extend(v for v in g.value_info if v.name in produced)
    return sub


def _collect_hessians(model: onnx.ModelProto, uses: Sequence[_Use], feeds: Sequence[Mapping[str, np.ndarray]],
                      memory_mb: float, tick: Callable[[int], None] | None, dense: onnx.ModelProto | None = None
                      ) -> tuple[dict[tuple[str, bool], np.ndarray], dict[tuple[str, bool], np.ndarray],
                                 dict[tuple[str, bool], int]]:
    """H = X^T X per (activation, transA) of `model`; with `dense`, also C = X^T X_dense (the same rows of the
    dense model's activation), for the dense-output target."""
    keys = list(dict.fromkeys((u.tensor, u.trans_a) for u in uses))
    names = list(dict.fromkeys(t for t, _ in keys))
    graph_inputs = {i.name for i in model.graph.input}
    hs: dict[tuple[str, bool], np.ndarray] = {}
    cs: dict[tuple[str, bool], np.ndarray] = {}
    rows: dict[tuple[str, bool], int] = dict.fromkeys(keys, 0)

    def rows_of(name: str, value: np.ndarray, trans_a: bool) -> np.ndarray:
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.floating):
            raise OnnxqError(f"activation '{name}' is {arr.dtype}, not float")
        x = arr.T if trans_a else arr
        x = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
        if not np.all(np.isfinite(x)):
            raise OnnxqError(f"activation '{name}' holds NaN/infinite values on the calibration data; "
                             "reconstruction needs finite activations")
        return x

    def add(name: str, value: np.ndarray, ref: np.ndarray | None) -> None:
        for key in keys:
            if key[0] != name:
                continue
            x = rows_of(name, value, key[1])
            g = x.T @ x
            hs[key] = hs[key] + g if key in hs else g
            if ref is not None:
                c = x.T @ rows_of(name, ref, key[1])
                cs[key] = cs[key] + c if key in cs else c
            rows[key] += x.shape[0]

    consts = {t.name: t for t in model.graph.initializer if t.name in names and t.name not in graph_inputs}
    dense_consts = {t.name: t for t in dense.graph.initializer if t.name in consts} if dense is not None else {}
    run_names = [n for n in names if n not in graph_inputs and n not in consts]
    runner = TensorRunner(_submodel(model, run_names), run_names, memory_mb=memory_mb) if run_names else None
    ref_runner = (TensorRunner(_submodel(dense, run_names), run_names, memory_mb=memory_mb)
                  if run_names and dense is not None else None)
    try:
        for feed in feeds:
            for n in names:
                if n in graph_inputs:
                    add(n, feed[n], feed[n] if dense is not None else None)
                elif n in consts:  # a constant activation (rare: an initializer as the MatMul's first input)
                    add(n, numpy_helper.to_array(consts[n]),
                        numpy_helper.to_array(dense_consts[n]) if dense is not None else None)
            if runner is not None:
                for group in runner.groups(run_names, feed):
                    vals = runner.run(group, feed)
                    refs = ref_runner.run(group, feed) if ref_runner is not None else [None] * len(group)
                    for n, v, r in zip(group, vals, refs, strict=True):
                        add(n, v, r)
                    del vals, refs
            if tick:
                tick(1)
    finally:
        for r in (runner, ref_runner):
            if r is not None:
                r.close()
    return hs, cs, rows


def _write(t: _Target, w_kn: np.ndarray) -> None:
    arr = _stored_kn(t, w_kn)
    dtype = np.float16 if t.init.data_type == TensorProto.FLOAT16 else np.float32
    t.init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr.astype(dtype)), t.init.name))


def reconstruct_sparse(model: onnx.ModelProto, config: PruneConfig, rconfig: ReconstructConfig,
                       feeds: Sequence[Mapping[str, np.ndarray]], progress: ProgressFactory | None = None
                       ) -> tuple[onnx.ModelProto, PruneReport, ReconstructReport]:
    """Returns a pruned and reconstructed copy of `model` (the input is not modified). `feeds` are validated
    feed dicts; they are iterated once per wave (sequential) or once (non-sequential)."""
    check_config(config)
    if rconfig.damp < 0 or not np.isfinite(rconfig.damp):
        raise OnnxqError(f"damp must be a finite number >= 0, got {rconfig.damp}")
    if rconfig.batch_rows < 1:
        raise OnnxqError(f"batch_rows must be >= 1, got {rconfig.batch_rows}")
    if not feeds:
        raise OnnxqError("reconstruction needs calibration data: give at least one feed (an .npz keyed by input "
                         "name)")
    t0 = time.perf_counter()
    out = onnx.ModelProto()
    out.CopyFrom(model)
    targets, skipped = find_targets(out, config)
    quantized = [name for name, t in targets.items() if t.scale is not None]
    if quantized:
        raise OnnxqError(f"weight '{quantized[0]}' is already quantized (int8 / FP8 behind DequantizeLinear): "
                         "reconstruction works on float weights. Reconstruct the float model first "
                         "(onnxq sparsify float.onnx -o pruned.onnx --data calib.npz --reconstruct --no-pack), then "
                         "quantize pruned.onnx and pack it with `onnxq sparsify --pack-only`")
    decoded, keeps = magnitude_keep(targets, config)
    counts = {name: int((~keep).sum()) for name, keep in keeps.items()}
    uses = _uses(out, targets)
    up = _upstream_targets(out, targets)
    deps = {name: frozenset().union(*(up.get(u.tensor, frozenset()) for u in uses[name])) - {name}
            for name in targets}
    remaining = list(targets)
    waves: list[list[str]] = []
    while remaining:
        rest = set(remaining)
        wave = [nm for nm in remaining if not (deps[nm] & rest)] if rconfig.sequential else list(remaining)
        wave = wave or list(remaining)
        waves.append(wave)
        remaining = [nm for nm in remaining if nm not in set(wave)]
    tick = progress("reconstruct", len(waves) * len(feeds)) if progress else None
    bk, bn = config.block
    preport = PruneReport(skipped=skipped)
    rreport = ReconstructReport(samples=len(feeds), waves=len(waves))
    results: dict[str, tuple[PrunedWeight, ReconstructedWeight]] = {}
    dense = None
    if rconfig.dense_target and len(waves) > 1:
        dense = onnx.ModelProto()
        dense.CopyFrom(model)
    for wave in waves:  # non-sequential: one wave, every H collected before any weight changes
        hs, cs, rows = _collect_hessians(out, [u for nm in wave for u in uses[nm]], feeds, rconfig.memory_mb,
                                         tick, dense if rconfig.dense_target and len(waves) > 1 else None)
        if not rreport.rows and rows:
            rreport.rows = next(iter(rows.values()))
        for name in wave:
            t = targets[name]
            keys = list(dict.fromkeys((u.tensor, u.trans_a) for u in uses[name]))
            if not keys:
                raise OnnxqError(f"weight '{name}': no consuming MatMul / Gemm found for its activations (duplicate "
                                 "node names?); exclude it with --exclude or rename the nodes")
            h = sum(hs[key] for key in keys)
            w0 = np.asarray(decoded[name], np.float64)
            target = w0
            if cs:  # the dense layer's outputs: W* = argmin |X W - X_dense W0|, then prune W* on H
                target = dense_fit(h, sum(cs[key] for key in keys), w0, rconfig.damp)
            w1, keep = sparsegpt_prune(target, h, config.block, prune_blocks=counts[name], damp=rconfig.damp,
                                       batch_rows=rconfig.batch_rows)
            mag_mask = np.repeat(np.repeat(keeps[name], bk, axis=0), bn, axis=1)
            sparsity = float(1.0 - keep.mean())
            results[name] = (
                PrunedWeight(name, t.nodes, w0.shape, sparsity),
                ReconstructedWeight(name, w0.shape, sparsity,
                                    relative_error(target, np.where(mag_mask, w0, 0.0), h),
                                    relative_error(target, w1, h), int(np.sum(np.diag(h) <= 0))))
            _write(t, w1)
    for name in targets:  # report in graph order
        preport.weights.append(results[name][0])
        rreport.weights.append(results[name][1])
    rreport.seconds = time.perf_counter() - t0
    return out, preport, rreport
