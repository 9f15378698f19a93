"""Smooth (SmoothQuant, Xiao et al. 2023): move per-input-channel activation outliers into the weights.

For a float activation x[..., K] feeding weight MatMuls / Gemms (``x @ W``, W ``[K, N]``, or Gemm ``transB=1``
``[N, K]``): ``x @ W == (x / s) @ (diag(s) W)`` with ``s_k = max|x_k|^α / max|W_k|^(1-α)`` (the weight's max over
every smoothed consumer). ``x / s`` is a ``Mul`` by the constant ``1/s`` in front of the activation's
``QuantizeLinear``; the weights are scaled before they are quantized. Per-tensor INT8 activations then no
longer spend their range on a few outlier channels (BERT-style FFN inputs), at the cost of one elementwise
``Mul`` per smoothed tensor; the onnxq EP still claims the MatMul (its Q input is simply the Mul's output).

Analysis only: this pass decides ``s`` (``ctx.smoothing``) and the smoothed activations' ranges
(``ctx.smooth_ranges``) from calibration's per-channel extremes; ``insert_qdq`` applies them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from onnxq.passes.context import PassContext, Smoothing

_S_MIN, _S_MAX = 1e-4, 1e4


def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    config, calib = ctx.quant, ctx.calibration
    ctx.smoothing = Smoothing()
    if not config.smooth_alpha or calib is None or ctx.plan is None:
        return model
    candidates = ctx.plan.weight_matmul_inputs()
    if not candidates:
        return model
    inits = {t.name: t for t in model.graph.initializer}
    absmax = {t: np.maximum(np.abs(calib.channel_min[t]), np.abs(calib.channel_max[t]))
              for t in candidates if t in calib.channel_min}
    sm = smoothing_scales(candidates, absmax, lambda n: numpy_helper.to_array(inits[n]), float(config.smooth_alpha))
    symmetric = config.activation_format.symmetric
    for t in sm.scales:
        lo, hi = sm.range_of(t, calib.channel_min[t], calib.channel_max[t])
        if symmetric:
            lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
        ctx.smooth_ranges[t] = (lo, hi)
    if sm.scales:
        ctx.notes.append(f"smoothing (alpha {config.smooth_alpha}) on {len(sm.scales)} activation "
                         f"tensor(s) feeding {len(sm.consumers)} MatMul/Gemm")
    ctx.smoothing = sm
    return model


def smoothing_scales(candidates: Mapping[str, list[tuple[str, str, bool]]],
                     channel_absmax: Mapping[str, np.ndarray], weight_values: Callable[[str], np.ndarray],
                     alpha: float) -> Smoothing:
    sm = Smoothing()
    for tensor, consumers in candidates.items():
        a = channel_absmax.get(tensor)
        if a is None:
            continue
        wmax = None
        for _, wname, nk in consumers:
            w = np.abs(weight_values(wname))
            m = w.max(axis=0) if nk else w.max(axis=1)  # per input channel k
            if m.shape != a.shape:
                wmax = None
                break
            wmax = m if wmax is None else np.maximum(wmax, m)
        if wmax is None:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.power(a, alpha) / np.power(wmax, 1 - alpha)
        s = np.where(np.isfinite(s) & (s > 0), s, 1.0)
        sm.scales[tensor] = np.clip(s, _S_MIN, _S_MAX).astype(np.float32)
        sm.consumers.update(n for n, _, _ in consumers)
    return sm
