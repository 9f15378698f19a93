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

if TYPE_CHECKING:  # analysis results, typed for readers; the modules import the context, not the reverse
    from onnxq.calibration.data import DataSource
    from onnxq.passes.calibrate import CalibrationResult
    from onnxq.passes.select_targets import QuantPlan
    from onnxq.passes.smooth import Smoothing

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
