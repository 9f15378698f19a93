"""Smooth (SmoothQuant, Xiao et al. 2023): move per-input-channel activation outliers into the weights.

For a float activation x[..., K] feeding weight MatMuls / Gemms (``x @ W``, W ``[K, N]``, or Gemm ``transB=1``
``[N, K]``): ``x @ W == (x / s) @ (diag(s) W)`` with ``s_k = max|x_k|^α / max|W_k|^(1-α)`` (the weight's max over
every smoothed consumer). ``x / s`` is a ``Mul`` by the constant ``1/s`` in front of the activation's
``QuantizeLinear``; the weights are scaled before they are quantized. Per-tensor INT8 activations then no
longer spend their range on a few outlier channels (BERT-style FFN inputs), at the cost of one elementwise
``Mul`` per smoothed tensor; the onnxq EP still claims the MatMul (its Q input is simply the Mul's output).

Analysis only: this module decides ``s``; ``insert_qdq`` applies it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from onnxq.passes.select_targets import QuantPlan

_S_MIN, _S_MAX = 1e-4, 1e4


@dataclass
class Smoothing:
    scales: dict[str, np.ndarray] = field(default_factory=dict)  # activation tensor -> s[K]
    consumers: set[str] = field(default_factory=set)  # nodes whose weight is scaled and input smoothed

    def range_of(self, tensor: str, cmin: np.ndarray, cmax: np.ndarray) -> tuple[float, float]:
        s = self.scales[tensor]
        return float(np.min(cmin / s)), float(np.max(cmax / s))


def smoothing_candidates(plan: QuantPlan) -> dict[str, list[tuple[str, str, bool]]]:
    """activation tensor -> [(node, weight, weight_is_NK)] for weight MatMul / Gemm consumers."""
    weights = {(w.node): w for w in plan.weights if w.op_type in ("MatMul", "Gemm") and w.input_index == 1}
    out: dict[str, list[tuple[str, str, bool]]] = {}
    for a in plan.activations:
        w = weights.get(a.node)
        if w is None or a.input_index != 0 or a.fixed_range is not None:
            continue
        out.setdefault(a.tensor, []).append((a.node, w.weight, w.op_type == "Gemm" and w.axis == 0))
    return out


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
