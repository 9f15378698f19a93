"""The one shape every pass has, and what passes share.

A pass is a module in ``onnxq.passes`` with a function ``run(model, ctx) -> model``: it takes an
``onnx.ModelProto`` and returns one (the same object when it only analyses). It never reads files, prints or
mutates the configs; what it finds or decides goes into the context (``notes``, ``warnings``, ``reports`` and
the typed fields later passes read). A recipe (``onnxq.pipeline.recipes``) is a list of pass names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from onnxq.core.config import QuantConfig, SparsifyConfig

if TYPE_CHECKING:
    from onnxq.calibration.data import DataSource
    from onnxq.calibration.histogram import StreamingHistogram

# ------------------------------------------------------------------ what passes hand to each other

@dataclass(frozen=True)
class WeightTarget:
    node: str
    op_type: str
    input_index: int
    weight: str
    axis: int  # the output-channel axis of the weight tensor (per-channel scales run along it)


@dataclass(frozen=True)
class ActivationTarget:
    node: str
    op_type: str
    input_index: int
    tensor: str
    fixed_range: tuple[float, float] | None = None
    per_token: int = 0  # > 0: dynamic per-token (per row) quantization over blocks of this K; no calibration


@dataclass
class QuantPlan:
    weights: list[WeightTarget] = field(default_factory=list)
    activations: list[ActivationTarget] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # node name -> why it stays float

    @property
    def layers(self) -> list[str]:
        """Names of the nodes that get any quantization, in graph order."""
        seen: dict[str, None] = {}
        for t in [*self.weights, *self.activations]:
            seen.setdefault(t.node, None)
        return list(seen)

    def activation_tensors(self) -> list[str]:
        return list(dict.fromkeys(a.tensor for a in self.activations if a.fixed_range is None and not a.per_token))

    def without(self, nodes: set[str]) -> QuantPlan:
        return QuantPlan([w for w in self.weights if w.node not in nodes],
                         [a for a in self.activations if a.node not in nodes],
                         {**self.skipped, **{n: "kept in float for accuracy" for n in nodes}})

    def only(self, nodes: set[str]) -> QuantPlan:
        return QuantPlan([w for w in self.weights if w.node in nodes],
                         [a for a in self.activations if a.node in nodes], dict(self.skipped))

    def weight_matmul_inputs(self) -> dict[str, list[tuple[str, str, bool]]]:
        """activation tensor -> [(node, weight, weight_is_NK)] for its weight MatMul / Gemm consumers (what
        SmoothQuant can smooth, and what calibration collects per-channel extremes for)."""
        weights = {w.node: w for w in self.weights if w.op_type in ("MatMul", "Gemm") and w.input_index == 1}
        out: dict[str, list[tuple[str, str, bool]]] = {}
        for a in self.activations:
            w = weights.get(a.node)
            if w is None or a.input_index != 0 or a.fixed_range is not None or a.per_token:
                continue
            out.setdefault(a.tensor, []).append((a.node, w.weight, w.op_type == "Gemm" and w.axis == 0))
        return out


@dataclass
class CalibrationResult:
    histograms: dict[str, StreamingHistogram]
    ranges: dict[str, tuple[float, float]]
    samples: int
    warnings: list[str] = field(default_factory=list)
    feeds: list[dict[str, np.ndarray]] = field(default_factory=list)  # the first few, kept for the accuracy search
    channel_min: dict[str, np.ndarray] = field(default_factory=dict)  # per last-axis channel, for smoothing
    channel_max: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Smoothing:
    scales: dict[str, np.ndarray] = field(default_factory=dict)  # activation tensor -> s[K]
    consumers: set[str] = field(default_factory=set)  # nodes whose weight is scaled and input smoothed

    def range_of(self, tensor: str, cmin: np.ndarray, cmax: np.ndarray) -> tuple[float, float]:
        s = self.scales[tensor]
        return float(np.min(cmin / s)), float(np.max(cmax / s))


#: progress(description, total) -> update(n): the applications pass a progress bar; passes only call it
ProgressFactory = Callable[[str, int | None], Callable[[int], None]]


@dataclass
class PassContext:
    # ------------------------------------------------------------------ inputs (read-only for passes)
    quant: QuantConfig = field(default_factory=QuantConfig)
    sparse: SparsifyConfig | None = None  # None: nothing is pruned (packed weights are kept packed)
    data: DataSource | None = None  # calibration data (a directory / .npz / feed dicts)
    synthetic_samples: int = 0  # > 0 with no data: random calibration inputs (speed work only)
    synthetic_dims: dict[str, int] | None = None
    progress: ProgressFactory | None = None
    # ------------------------------------------------------------------ written by passes
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reports: dict[str, Any] = field(default_factory=dict)  # per pass: "prune", "pack", "reconstruct", ...
    plan: QuantPlan | None = None  # select_targets: what gets quantized
    calibration: CalibrationResult | None = None  # calibrate: ranges, kept feeds, per-channel extremes
    synthetic_calibration: bool = False
    smoothing: Smoothing | None = None  # smooth: SmoothQuant scales
    smooth_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    packed_block: tuple[int, int] | None = None  # unpack_sparse: the input's packed weights are repacked so
    template: onnx.ModelProto | None = None  # preprocess: the model finalize copies metadata and functions from
    caches: dict[str, Any] = field(default_factory=dict)  # per pass, reused when the search rebuilds a model
    check: bool = True  # run onnx.checker (the accuracy search checks only the model it keeps)
    checked: onnx.ModelProto | None = None  # the last model onnx.checker passed (the check pass skips it)

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        return self.calibration.ranges if self.calibration is not None else {}

    @property
    def kept_feeds(self) -> list[dict[str, np.ndarray]]:
        return self.calibration.feeds if self.calibration is not None else []

    def tick(self, description: str, total: int | None) -> Callable[[int], None] | None:
        return self.progress(description, total) if self.progress else None
