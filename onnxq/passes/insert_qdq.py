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

import ml_dtypes
import numpy as np
import onnx_graphsurgeon as gs

from onnxq.passes.select_targets import QuantPlan
from onnxq.passes.smooth import Smoothing
from onnxq.quantizer.config import QuantConfig
from onnxq.quantizer.numerics import (
    FP8,
    fp8_scale,
    int8_symmetric_scale,
    quantize_fp8,
    quantize_int,
    safe_amax,
    uint8_asymmetric_params,
)

_ML_FP8 = {"e4m3fn": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}


class WeightCache:
    """Quantized weights by (name, axis, granularity, format): reused across consumers and across the
    variants the accuracy search builds."""

    def __init__(self) -> None:
        self._d: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, key: tuple, make) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
        if key not in self._d:
            self._d[key] = make()
        return self._d[key]


def quantize_weight(w: np.ndarray, axis: int | None, config: QuantConfig) -> tuple[np.ndarray, np.ndarray]:
    """(quantized values in their storage dtype, float32 scale: 1-D along ``axis`` or a scalar)."""
    w = np.asarray(w, np.float32)
    if axis is None:
        amax = np.abs(w).max() if w.size else 0.0
        bshape: tuple[int, ...] = ()
    else:
        red = tuple(i for i in range(w.ndim) if i != axis)
        amax = np.abs(w).max(axis=red) if w.size else np.zeros(w.shape[axis])
        bshape = tuple(w.shape[axis] if i == axis else 1 for i in range(w.ndim))
    if config.is_fp8:
        spec = FP8[config.fp8_name]
        scale = fp8_scale(amax, spec)
        q = quantize_fp8(w, scale.reshape(bshape), spec).view(_ML_FP8[config.fp8_name])
    else:
        scale = int8_symmetric_scale(amax)
        q = quantize_int(w, scale.reshape(bshape), 0, -127, 127, np.int8)
    return q, np.asarray(scale, np.float32)


def activation_params(lo: float, hi: float, config: QuantConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """(scale, zero point or None for FP8) for a per-tensor activation range."""
    if config.is_fp8:  # no zero point: see the module docstring
        amax = max(abs(lo), abs(hi))
        return np.asarray(fp8_scale(amax, FP8[config.fp8_name]), np.float32), None
    if config.int8_symmetric_activations:
        scale = int8_symmetric_scale(float(safe_amax(max(abs(lo), abs(hi)))))
        return np.asarray(scale, np.float32), np.zeros((), np.int8)
    s, z = uint8_asymmetric_params(lo, hi)
    return np.asarray(s, np.float32), np.asarray(z, np.uint8)


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
        key = (t.weight, axis, config.format, sx)
        if key not in weight_consts:
            def make(w=w, axis=axis, sx=sx, t=t):  # type: ignore[no-untyped-def]
                values = _float_values(w)
                if sx is not None:  # diag(s) @ W: rows of [K, N], columns of Gemm transB's [N, K]
                    sv = smoothing.scales[sx]
                    values = values * (sv[None, :] if (t.op_type == "Gemm" and t.axis == 0) else sv[:, None])
                return quantize_weight(values, axis, config)

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
        ckey = (a.tensor, smooth)
        if ckey not in act_consts:
            if smooth:
                lo, hi = smooth_ranges.get(a.tensor, (0.0, 0.0))
            else:
                lo, hi = a.fixed_range if a.fixed_range is not None else ranges.get(a.tensor, (0.0, 0.0))
            s, z = activation_params(lo, hi, config)
            base = f"{a.tensor}_smoothed" if smooth else a.tensor
            act_consts[ckey] = (gs.Constant(names(f"{base}_scale"), s),
                                None if z is None else gs.Constant(names(f"{base}_zero_point"), z))
        sc, zc = act_consts[ckey]
        if zc is None:
            fp8 = FP8[config.fp8_name]
            q_attrs = {"saturate": 1, "output_dtype": fp8.onnx_type}
            qdtype = np.dtype(_ML_FP8[config.fp8_name])
            params = [sc]
        else:
            q_attrs, qdtype, params = {}, zc.values.dtype, [sc, zc]
        xq = gs.Variable(names(f"{a.tensor}_quantized/{a.node}/{a.input_index}"), dtype=qdtype, shape=x.shape)
        xdq = gs.Variable(names(f"{a.tensor}_dequantized/{a.node}/{a.input_index}"), dtype=np.float32, shape=x.shape)
        graph.nodes.append(gs.Node("QuantizeLinear", names(f"{a.node}/{a.tensor}/QuantizeLinear"), q_attrs,
                                   inputs=[x, *params], outputs=[xq]))
        graph.nodes.append(gs.Node("DequantizeLinear", names(f"{a.node}/{a.tensor}/DequantizeLinear"), {},
                                   inputs=[xq, *params], outputs=[xdq]))
        node.inputs[a.input_index] = xdq
    return graph
