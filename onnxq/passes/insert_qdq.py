"""Insert Q/DQ (FP8 E4M3FN / E5M2 or INT8), in the layout the onnxq EP claims and stock onnxruntime runs.

Weights: stored pre-quantized (1 byte each) — FP8 initializer, or int8 symmetric in [-127, 127] — feeding a
``DequantizeLinear`` with per-output-channel float scales along the weight's output axis (MatMul ``[K, N]``:
axis 1; Gemm ``transB=1`` ``[N, K]``: axis 0; Conv: axis 0; Gather tables: per row, axis 0) and a zero point of
the weight's own type equal to 0. A weight shared by several nodes is quantized once (one initializer); every
consumer gets its own ``DequantizeLinear`` (the EP wants a weight DQ that feeds only its MatMul).

Activations: ``QuantizeLinear -> DequantizeLinear`` with one calibrated per-tensor scale; each consumer gets its
own pair so the EP can fold Q + DQ into its kernel. INT8: u8 with an asymmetric zero point (or s8 symmetric).
FP8: ``saturate=1`` and *no* zero point — the type comes from ``output_dtype`` (a zero point could only be 0
anyway). Reason: onnxruntime 1.32's ReluQuantFusion deletes a ``Relu`` in front of a ``QuantizeLinear`` whose
zero point is 0 as if the type were u8 — for a signed FP8 zero point that changes the results (measured: output
cosine 0.75 instead of 0.999 on a Relu MLP). Without a zero point it leaves the Relu alone; the onnxq EP
claims both forms.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxq.core.config import QuantConfig
from onnxq.core.formats import NumericFormat
from onnxq.core.numerics import MIN_AMAX
from onnxq.passes.context import ActivationTarget, PassContext, QuantPlan, Smoothing


class WeightCache:
    """Quantized weights by (name, axis, format, smoothing): reused across consumers and across the variants the
    accuracy search builds."""

    def __init__(self) -> None:
        self._d: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, key: tuple, make) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
        if key not in self._d:
            self._d[key] = make()
        return self._d[key]


def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    """Rewrite ``model`` by ``ctx.plan`` with the calibrated ranges and smoothing; unused tensors dropped, nodes
    sorted. The weight cache lives in the context, so the accuracy search's rebuilds quantize each weight once."""
    assert ctx.plan is not None, "insert_qdq runs after select_targets"
    cache = ctx.caches.setdefault("insert_qdq", WeightCache())
    graph = gs.import_onnx(model)
    insert_qdq(graph, ctx.quant, ctx.plan, ctx.ranges, cache, ctx.smoothing, ctx.smooth_ranges)
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    return gs.export_onnx(graph, do_type_check=False)


class _Names:
    def __init__(self, graph: gs.Graph) -> None:
        self.used = set(graph.tensors().keys()) | {n.name for n in graph.nodes}

    def __call__(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            name = f"{base}_{i}"
            i += 1
        self.used.add(name)
        return name


def _float_values(w: gs.Constant) -> np.ndarray:
    """The weight's values, read without caching them in the graph: the float copy is dropped right after it is
    quantized (graphsurgeon would otherwise keep every float weight of the model in memory until export)."""
    lazy = getattr(w, "_values", None)
    return lazy.load() if isinstance(lazy, gs.ir.tensor.LazyValues) else w.values


def insert_qdq(graph: gs.Graph, config: QuantConfig, plan: QuantPlan,
               ranges: Mapping[str, tuple[float, float]], cache: WeightCache | None = None,
               smoothing: Smoothing | None = None,
               smooth_ranges: Mapping[str, tuple[float, float]] | None = None) -> gs.Graph:
    """``smoothing`` (from the smooth pass): for its consumer nodes the weight is scaled by ``s`` along K before
    quantization and the activation goes through ``Mul(x, 1/s)`` before its QuantizeLinear, whose range is
    ``smooth_ranges[tensor]``."""
    cache = cache or WeightCache()
    smoothing = smoothing or Smoothing()
    smooth_ranges = smooth_ranges or {}
    names = _Names(graph)
    nodes = {n.name: n for n in graph.nodes}
    per_channel = config.weight_granularity == "per-channel"
    weight_consts: dict[tuple, tuple[gs.Constant, gs.Constant, gs.Constant]] = {}

    for t in plan.weights:
        node = nodes[t.node]
        w = node.inputs[t.input_index]
        axis = t.axis if per_channel else None
        sx = node.inputs[0].name if t.node in smoothing.consumers else None
        key = (t.weight, axis, config.weight_format.name, sx)
        if key not in weight_consts:
            def make(w=w, axis=axis, sx=sx, t=t):  # type: ignore[no-untyped-def]
                values = _float_values(w)
                if sx is not None:  # diag(s) @ W: rows of [K, N], columns of Gemm transB's [N, K]
                    sv = smoothing.scales[sx]
                    values = values * (sv[None, :] if (t.op_type == "Gemm" and t.axis == 0) else sv[:, None])
                return config.weight_format.quantize_weight(values, axis)

            q, s = cache.get(key, make)
            zp = np.zeros(s.shape, q.dtype)
            weight_consts[key] = (gs.Constant(names(f"{t.weight}_quantized"), q),
                                  gs.Constant(names(f"{t.weight}_scale"), s),
                                  gs.Constant(names(f"{t.weight}_zero_point"), zp))
        qc, sc, zc = weight_consts[key]
        out = gs.Variable(names(f"{t.weight}_dequantized/{t.node}"), dtype=np.float32, shape=list(w.shape))
        attrs = {"axis": int(axis)} if axis is not None else {}
        graph.nodes.append(gs.Node("DequantizeLinear", names(f"{t.node}/{t.weight}/DequantizeLinear"), attrs,
                                   inputs=[qc, sc, zc], outputs=[out]))
        node.inputs[t.input_index] = out

    afmt = config.activation_format
    token_scales: dict[str, gs.Variable] = {}
    act_consts: dict[tuple[str, bool], tuple[gs.Constant, gs.Constant | None]] = {}
    smoothed_inputs: dict[str, gs.Variable] = {}
    for a in plan.activations:
        node = nodes[a.node]
        x = node.inputs[a.input_index]
        smooth = a.node in smoothing.consumers and a.input_index == 0 and a.tensor in smoothing.scales
        if smooth:
            if a.tensor not in smoothed_inputs:
                xs = gs.Variable(names(f"{a.tensor}_smoothed"), dtype=np.float32, shape=x.shape)
                inv = gs.Constant(names(f"{a.tensor}_smooth_inv_scale"),
                                  (1.0 / smoothing.scales[a.tensor]).astype(np.float32))
                graph.nodes.append(gs.Node("Mul", names(f"{a.tensor}/SmoothMul"), {}, inputs=[x, inv], outputs=[xs]))
                smoothed_inputs[a.tensor] = xs
            x = smoothed_inputs[a.tensor]
        if a.per_token:
            _insert_per_token(graph, names, node, a, x, afmt, token_scales)
            continue
        ckey = (a.tensor, smooth)
        if ckey not in act_consts:
            if smooth:
                lo, hi = smooth_ranges.get(a.tensor, (0.0, 0.0))
            else:
                lo, hi = a.fixed_range if a.fixed_range is not None else ranges.get(a.tensor, (0.0, 0.0))
            s, z = afmt.activation_params(lo, hi)
            base = f"{a.tensor}_smoothed" if smooth else a.tensor
            act_consts[ckey] = (gs.Constant(names(f"{base}_scale"), s),
                                None if z is None else gs.Constant(names(f"{base}_zero_point"), z))
        sc, zc = act_consts[ckey]
        q_attrs = afmt.quantize_attributes()
        params = [sc] if zc is None else [sc, zc]
        qdtype = afmt.storage_dtype
        xq = gs.Variable(names(f"{a.tensor}_quantized/{a.node}/{a.input_index}"), dtype=qdtype, shape=x.shape)
        xdq = gs.Variable(names(f"{a.tensor}_dequantized/{a.node}/{a.input_index}"), dtype=np.float32, shape=x.shape)
        graph.nodes.append(gs.Node("QuantizeLinear", names(f"{a.node}/{a.tensor}/QuantizeLinear"), q_attrs,
                                   inputs=[x, *params], outputs=[xq]))
        graph.nodes.append(gs.Node("DequantizeLinear", names(f"{a.node}/{a.tensor}/DequantizeLinear"), {},
                                   inputs=[xq, *params], outputs=[xdq]))
        node.inputs[a.input_index] = xdq
    return graph


def _insert_per_token(graph: gs.Graph, names: _Names, node: gs.Node, a: ActivationTarget, x: gs.Tensor,
                      fmt: NumericFormat, token_scales: dict[str, gs.Variable]) -> None:
    """ZeroQuant's per-token quantization as standard ONNX (opset 21 blocked Q/DQ, one block per row):
    ``scale = Max(ReduceMax(Abs(x), axis -1), MIN_AMAX) / max_magnitude`` computed in the graph, once per tensor,
    then ``QuantizeLinear(x, scale, axis=-1, block_size=K)`` (symmetric: no zero point) and its DequantizeLinear."""
    if a.tensor not in token_scales:
        base = f"{a.tensor}_token"
        shape = list(x.shape[:-1]) + [1] if x.shape else None
        ax = gs.Variable(names(f"{base}_abs"), dtype=np.float32, shape=x.shape)
        amax = gs.Variable(names(f"{base}_amax"), dtype=np.float32, shape=shape)
        floor = gs.Variable(names(f"{base}_amax_floored"), dtype=np.float32, shape=shape)
        scale = gs.Variable(names(f"{base}_scale"), dtype=np.float32, shape=shape)
        graph.nodes += [
            gs.Node("Abs", names(f"{base}/Abs"), {}, inputs=[x], outputs=[ax]),
            gs.Node("ReduceMax", names(f"{base}/ReduceMax"), {"keepdims": 1},
                    inputs=[ax, gs.Constant(names(f"{base}_axes"), np.array([-1], np.int64))], outputs=[amax]),
            gs.Node("Max", names(f"{base}/Max"), {},
                    inputs=[amax, gs.Constant(names(f"{base}_min_amax"), np.array(MIN_AMAX, np.float32))],
                    outputs=[floor]),
            gs.Node("Div", names(f"{base}/Div"), {},
                    inputs=[floor, gs.Constant(names(f"{base}_max_code"), np.array(fmt.max_magnitude, np.float32))],
                    outputs=[scale]),
        ]
        token_scales[a.tensor] = scale
    scale = token_scales[a.tensor]
    blocked = {"axis": -1, "block_size": int(a.per_token)}
    xq = gs.Variable(names(f"{a.tensor}_quantized/{a.node}/{a.input_index}"), dtype=fmt.storage_dtype, shape=x.shape)
    xdq = gs.Variable(names(f"{a.tensor}_dequantized/{a.node}/{a.input_index}"), dtype=np.float32, shape=x.shape)
    graph.nodes.append(gs.Node("QuantizeLinear", names(f"{a.node}/{a.tensor}/QuantizeLinear"),
                               {**fmt.quantize_attributes(), "output_dtype": fmt.onnx_type, **blocked},
                               inputs=[x, scale], outputs=[xq]))
    graph.nodes.append(gs.Node("DequantizeLinear", names(f"{a.node}/{a.tensor}/DequantizeLinear"), blocked,
                               inputs=[xq, scale], outputs=[xdq]))
    node.inputs[a.input_index] = xdq
