"""Accuracy target: keep the most sensitive layers in float until the output fidelity meets the target.

1. Measure the fully quantized model; done if it meets the target.
2. Sensitivity of every quantized layer = the output fidelity when *only that layer* is quantized.
3. Fall back layers worst-first: 1, 2, 4, ... until the target is met, then bisect for the smallest count.
Fidelity is measured against the float model's outputs on the kept calibration feeds (``accuracy_samples``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort

from onnxq.core.config import QuantConfig
from onnxq.core.errors import OnnxqError, onnxruntime_errors
from onnxq.core.metrics import TensorStats
from onnxq.passes.context import QuantPlan


@dataclass
class Fallback:
    layer: str
    op_type: str
    isolated_fidelity: float
    rank: int
    reason: str


class _Scorer:
    """Output fidelity of candidate models against the float model. Candidates run with the onnxq EP where it loads
    (``runtime`` says what measured them): stock onnxruntime's INT8 result depends on the CPU (its AVX2 kernel
    saturates), and that error would be charged to the layers."""

    def __init__(self, reference: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], metric: str) -> None:
        self.feeds, self.metric = list(feeds), metric
        sess = _session(reference, use_ep=False)
        self.names = [o.name for o in reference.graph.output]
        self.ref = [sess.run(self.names, dict(f)) for f in self.feeds]
        self.runtime = ""

    def __call__(self, model: onnx.ModelProto) -> float:
        sess = _session(model, use_ep=True)
        self.runtime = getattr(sess, "_onnxq_runtime", "")
        stats = [TensorStats() for _ in self.names]
        for f, ref in zip(self.feeds, self.ref, strict=True):
            for s, a, b in zip(stats, ref, sess.run(self.names, dict(f)), strict=True):
                s.update(a, b)
        if self.metric == "cosine":
            return float(np.mean([s.row_cosine for s in stats]))
        return float(min(s.sqnr_db for s in stats))


def _session(model: onnx.ModelProto, use_ep: bool) -> ort.InferenceSession:
    from onnxq.ep import measuring_session

    try:
        sess, runtime = measuring_session(model.SerializeToString(), use_ep=use_ep)
        sess._onnxq_runtime = runtime  # type: ignore[attr-defined]
        return sess
    except onnxruntime_errors() as e:
        raise OnnxqError(f"onnxruntime cannot load a candidate model: {str(e).splitlines()[0]}") from e


def accuracy_search(reference: onnx.ModelProto, plan: QuantPlan, build: Callable[[QuantPlan], onnx.ModelProto],
                    feeds: Sequence[Mapping[str, np.ndarray]], config: QuantConfig,
                    progress: Callable[[int], None] | None = None
                    ) -> tuple[QuantPlan, list[Fallback], float, float, str]:
    """Returns (the plan chosen, fallbacks, fidelity before, fidelity after, the runtime that measured the
    candidates). ``build`` turns a plan into a candidate model (the pipeline's build passes)."""
    target = float(config.accuracy_target)  # type: ignore[arg-type]
    score = _Scorer(reference, feeds, config.accuracy_metric)
    full = build(plan)
    before = score(full)
    if before >= target:
        return plan, [], before, before, score.runtime
    layers = plan.layers
    ops = {t.node: t.op_type for t in [*plan.weights, *plan.activations]}
    isolated = {}
    for name in layers:
        isolated[name] = score(build(plan.only({name})))
        if progress:
            progress(1)
    order = sorted(layers, key=lambda n: isolated[n])

    cache: dict[int, tuple[onnx.ModelProto, float]] = {}

    def attempt(k: int) -> tuple[onnx.ModelProto, float]:
        if k not in cache:
            m = build(plan.without(set(order[:k])))
            cache[k] = (m, score(m))
        return cache[k]

    k, lo = 1, 0
    while k < len(order) and attempt(k)[1] < target:
        lo, k = k, min(2 * k, len(order))
    k = min(k, len(order))
    if attempt(k)[1] >= target:
        hi = k
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if attempt(mid)[1] >= target:
                hi = mid
            else:
                lo = mid
        k = hi
    _, after = attempt(k)
    unit = "mean output cosine" if config.accuracy_metric == "cosine" else "output SQNR dB"
    fallbacks = [Fallback(n, ops.get(n, "?"), round(isolated[n], 6), i + 1,
                          f"quantizing only this layer gives {unit} {isolated[n]:.6g} (rank {i + 1} of "
                          f"{len(order)} most sensitive); needed to reach the target {target:g}")
                 for i, n in enumerate(order[:k])]
    return plan.without(set(order[:k])), fallbacks, before, after, score.runtime
