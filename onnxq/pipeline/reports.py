"""What a run returns: ``QuantReport`` (quantize, with pruning and packing when asked) and
``SparsifyResult`` (sparsify), both read from the pass context after the recipe ran."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import onnx

from onnxq.core.config import QuantConfig
from onnxq.passes.context import PassContext
from onnxq.passes.pack_sparse import PackReport
from onnxq.passes.prune_blocks import PruneReport
from onnxq.passes.reconstruct_sparse import ReconstructReport


@dataclass
class QuantReport:
    format: str
    recipe: str | None
    calibration_method: str
    calibration_samples: int
    synthetic_calibration: bool
    layers_quantized: int
    weights_quantized: int
    activations_quantized: int
    skipped: dict[str, str]
    fallbacks: list[dict[str, Any]]
    accuracy_before: float | None
    accuracy_after: float | None
    weight_bytes_before: int
    weight_bytes_after: int
    warnings: list[str]
    notes: list[str]
    config: dict[str, Any]
    seconds: float
    output: str | None = None
    sparsity: dict[str, Any] | None = None  # pruned / packed weights when the run pruned or repacked
    model: onnx.ModelProto | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("model", None)
        return d


def initializer_bytes(model: onnx.ModelProto) -> int:
    total = 0
    for t in model.graph.initializer:
        n = 1
        for d in t.dims:
            n *= d
        total += n * _itemsize(t.data_type)
    return total


def _itemsize(dt: int) -> int:
    if dt in (onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT8E5M2, onnx.TensorProto.INT8,
              onnx.TensorProto.UINT8, onnx.TensorProto.BOOL, onnx.TensorProto.FLOAT8E4M3FNUZ,
              onnx.TensorProto.FLOAT8E5M2FNUZ):
        return 1
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(dt).itemsize
    except Exception:
        return 4




def quant_report(ctx: PassContext, config: QuantConfig, original: onnx.ModelProto, model: onnx.ModelProto,
                 seconds: float) -> QuantReport:
    plan = ctx.plan
    assert plan is not None
    acc = ctx.reports.get("accuracy") or {}
    calib = ctx.calibration
    sparsity = None
    if "prune" in ctx.reports or "pack" in ctx.reports:
        prune: PruneReport | None = ctx.reports.get("prune")
        pack: PackReport | None = ctx.reports.get("pack")
        sparsity = {"pruned_weights": len(prune.weights) if prune else 0,
                    "overall_sparsity": round(prune.overall_sparsity, 6) if prune else None,
                    "packed_weights": len(pack.packed) if pack else 0,
                    "packed_bytes_ratio": round(pack.bytes_ratio, 6) if pack else None}
    return QuantReport(
        format=config.format, recipe=config.recipe, calibration_method=config.calibration_method,
        calibration_samples=calib.samples if calib else 0, synthetic_calibration=ctx.synthetic_calibration,
        layers_quantized=len(plan.layers), weights_quantized=len({w.weight for w in plan.weights}),
        activations_quantized=len(plan.activations), skipped=plan.skipped, fallbacks=acc.get("fallbacks", []),
        accuracy_before=acc.get("before"), accuracy_after=acc.get("after"),
        weight_bytes_before=initializer_bytes(original), weight_bytes_after=initializer_bytes(model),
        warnings=list(ctx.warnings), notes=list(ctx.notes), config=config.to_dict(), seconds=round(seconds, 3),
        sparsity=sparsity, model=model)


@dataclass
class SparsifyResult:
    model: onnx.ModelProto
    prune: PruneReport = field(default_factory=PruneReport)
    pack: PackReport = field(default_factory=PackReport)
    reconstruct: ReconstructReport | None = None  # with reconstruct=True: per-layer calibration errors, time
    notes: list[str] = field(default_factory=list)
