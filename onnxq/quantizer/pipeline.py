"""The one quantization pipeline the CLI and the Python API both call:

    preprocess -> select_targets -> calibrate -> insert_qdq -> finalize [-> accuracy search]
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import numpy_helper

from onnxq.calibration.data import DataSource, iter_feeds, model_inputs, synthetic_feeds
from onnxq.errors import OnnxqError
from onnxq.passes.calibrate import calibrate
from onnxq.passes.finalize import check_model, finalize
from onnxq.passes.insert_qdq import WeightCache, insert_qdq
from onnxq.passes.preprocess import preprocess
from onnxq.passes.select_targets import QuantPlan, select_targets
from onnxq.passes.smooth import Smoothing, smoothing_candidates, smoothing_scales
from onnxq.quantizer.accuracy import accuracy_search
from onnxq.quantizer.config import QuantConfig

ProgressFactory = Callable[[str, int | None], Callable[[int], None]]


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


def run_pipeline(model: onnx.ModelProto, config: QuantConfig, calibration_data: DataSource | None = None, *,
                 synthetic_samples: int = 0, synthetic_dims: dict[str, int] | None = None,
                 progress: ProgressFactory | None = None) -> QuantReport:
    t0 = time.perf_counter()
    config.validate()
    config.notes = []
    pre = preprocess(model, config)
    plan: QuantPlan = select_targets(gs.import_onnx(pre), config)
    gc.collect()  # that graph (a reference cycle) holds every float weight as numpy: free it before calibrating
    if not plan.weights and not plan.activations:
        raise OnnxqError(f"nothing to quantize: no node of {', '.join(config.op_types)} with a constant float "
                         "weight (or a float activation) outside the exclusions"
                         + (f"; skipped: {next(iter(plan.skipped.items()))}" if plan.skipped else ""))
    tensors = plan.activation_tensors()
    need_feeds = bool(tensors) or config.accuracy_target is not None
    synthetic = False
    ranges: dict[str, tuple[float, float]] = {}
    warnings: list[str] = []
    samples = 0
    kept: list = []
    smoothing = Smoothing()
    smooth_ranges: dict[str, tuple[float, float]] = {}
    if need_feeds:
        if calibration_data is None and synthetic_samples:
            calibration_data = synthetic_feeds(model_inputs(pre), synthetic_samples, synthetic_dims)
            synthetic = True
            warnings.append("SYNTHETIC calibration (random inputs): for speed work only; the ranges, and any "
                            "accuracy measured on them, say nothing about real data")
        if calibration_data is None:
            raise OnnxqError("this recipe quantizes activations, so it needs calibration data: give .npz files "
                             "(one feed per file, arrays keyed by input name) or an iterable of feed dicts; or use "
                             "a weight-only recipe (e.g. fp8-e4m3-weight-only)")
        keep = config.accuracy_samples if config.accuracy_target is not None else 0
        tick = progress("calibrating", config.calibration_max_samples) if progress else None
        candidates = smoothing_candidates(plan) if config.smooth_alpha else {}
        calib = calibrate(pre, tensors, iter_feeds(calibration_data), config, keep_feeds=keep,
                          channel_tensors=candidates, progress=tick)
        ranges, warnings, samples, kept = calib.ranges, warnings + calib.warnings, calib.samples, calib.feeds
        if candidates:
            inits = {t.name: t for t in pre.graph.initializer}
            absmax = {t: np.maximum(np.abs(calib.channel_min[t]), np.abs(calib.channel_max[t]))
                      for t in candidates if t in calib.channel_min}
            smoothing = smoothing_scales(candidates, absmax, lambda n: numpy_helper.to_array(inits[n]),
                                         float(config.smooth_alpha))  # type: ignore[arg-type]
            for t in smoothing.scales:
                lo, hi = smoothing.range_of(t, calib.channel_min[t], calib.channel_max[t])
                if config.activation_grid() != "uint8":
                    lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
                smooth_ranges[t] = (lo, hi)
            if smoothing.scales:
                config.notes.append(f"smoothing (alpha {config.smooth_alpha}) on {len(smoothing.scales)} activation "
                                    f"tensor(s) feeding {len(smoothing.consumers)} MatMul/Gemm")

    cache = WeightCache()

    def build(p: QuantPlan, check: bool = True) -> onnx.ModelProto:
        g = gs.import_onnx(pre)
        insert_qdq(g, config, p, ranges, cache, smoothing, smooth_ranges)
        return finalize(g, config, pre, check=check)

    fallbacks: list[dict[str, Any]] = []
    before = after = None
    if config.accuracy_target is not None:
        tick = progress("sensitivity", len(plan.layers)) if progress else None
        qmodel, fb, before, after, runtime = accuracy_search(pre, plan, lambda p: build(p, check=False), kept, config,
                                                             tick)
        config.notes.append(f"accuracy search measured candidates with {runtime}")
        check_model(qmodel)
        fallbacks = [asdict(f) for f in fb]
        if after < config.accuracy_target:
            warnings.append(f"accuracy target {config.accuracy_target:g} not reached even with every quantized "
                            f"layer back in float ({after:.6g}); check the model and data")
        final_plan = plan.without({f["layer"] for f in fallbacks})
    else:
        qmodel = build(plan)
        final_plan = plan
    return QuantReport(
        format=config.format, recipe=config.recipe, calibration_method=config.calibration_method,
        calibration_samples=samples, synthetic_calibration=synthetic, layers_quantized=len(final_plan.layers),
        weights_quantized=len({w.weight for w in final_plan.weights}),
        activations_quantized=len(final_plan.activations),
        skipped=final_plan.skipped, fallbacks=fallbacks, accuracy_before=before, accuracy_after=after,
        weight_bytes_before=initializer_bytes(model), weight_bytes_after=initializer_bytes(qmodel),
        warnings=warnings, notes=list(config.notes), config=config.to_dict(),
        seconds=round(time.perf_counter() - t0, 3), model=qmodel)
