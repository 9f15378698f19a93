"""Calibrate: when the plan quantizes activations (or the accuracy search needs reference feeds), run the float
model over the calibration feeds (stock onnxruntime, CPU provider, in memory) and
stream every observed activation into a fixed-size histogram; then pick each tensor's range with the
configured method, on the activation format's own grid. Memory is the histograms (128 KiB per tensor) plus one
group of activations at a time. The result goes to ``ctx.calibration``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import onnx

from onnxq.calibration.data import iter_feeds, model_inputs, synthetic_feeds, validate_feed
from onnxq.calibration.histogram import StreamingHistogram
from onnxq.calibration.methods import select_range
from onnxq.calibration.runner import TensorRunner
from onnxq.core.config import QuantConfig
from onnxq.core.errors import OnnxqError
from onnxq.passes.context import CalibrationResult, PassContext


def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    config, plan = ctx.quant, ctx.plan
    assert plan is not None, "calibrate runs after select_targets"
    tensors = plan.activation_tensors()
    if not tensors and config.accuracy_target is None:
        return model
    data = ctx.data
    if data is None and ctx.synthetic_samples:
        data = synthetic_feeds(model_inputs(model), ctx.synthetic_samples, ctx.synthetic_dims)
        ctx.synthetic_calibration = True
        ctx.warnings.append("SYNTHETIC calibration (random inputs): for speed work only; the ranges, and any "
                            "accuracy measured on them, say nothing about real data")
    if data is None and config.activation_granularity == "per-token" and tensors:
        static = [a for a in plan.activations if not a.per_token and a.fixed_range is None]
        first = f"{static[0].op_type} '{static[0].node}'"
        raise OnnxqError(f"per-token scales need no data, but {len(static)} activation input(s) are not inputs of a "
                         f"weight MatMul / Gemm and stay per-tensor (e.g. {first}): give calibration data, or "
                         "quantize only MatMul / Gemm (--op-types MatMul,Gemm)")
    if data is None:
        raise OnnxqError("this recipe quantizes activations, so it needs calibration data: give .npz files "
                         "(one feed per file, arrays keyed by input name) or an iterable of feed dicts; or use "
                         "a weight-only recipe (e.g. fp8-e4m3-weight-only)")
    keep = config.accuracy_samples if config.accuracy_target is not None else 0
    channels = plan.weight_matmul_inputs() if config.smooth_alpha else {}
    ctx.calibration = calibrate(model, tensors, iter_feeds(data), config, keep_feeds=keep, channel_tensors=channels,
                                progress=ctx.tick("calibrating", config.calibration_max_samples))
    ctx.warnings.extend(ctx.calibration.warnings)
    return model


def calibrate(model: onnx.ModelProto, tensors: list[str], feeds: Iterable[tuple[str, Mapping[str, Any]]],
              config: QuantConfig, *, keep_feeds: int = 0, channel_tensors: Iterable[str] = (),
              progress: Callable[[int], None] | None = None) -> CalibrationResult:
    inputs = model_inputs(model)
    hists = {t: StreamingHistogram() for t in tensors}
    per_channel = set(channel_tensors) & set(tensors)
    cmin: dict[str, np.ndarray] = {}
    cmax: dict[str, np.ndarray] = {}
    kept: list[dict[str, np.ndarray]] = []
    n = 0
    with TensorRunner(model, tensors, memory_mb=config.calibration_memory_mb) as runner:
        for label, raw in feeds:
            if config.calibration_max_samples is not None and n >= config.calibration_max_samples:
                break
            feed = validate_feed(label, raw, inputs)
            if len(kept) < keep_feeds:
                kept.append(feed)
            try:
                for name, value in runner.iterate(feed, tensors):
                    hists[name].update(value)
                    if name in per_channel and np.ndim(value) >= 1 and np.size(value):
                        v = np.asarray(value, np.float32).reshape(-1, np.shape(value)[-1])
                        v = np.where(np.isfinite(v), v, 0.0)
                        lo, hi = v.min(axis=0), v.max(axis=0)
                        if name in cmin and cmin[name].shape == lo.shape:
                            cmin[name], cmax[name] = np.minimum(cmin[name], lo), np.maximum(cmax[name], hi)
                        elif name not in cmin:
                            cmin[name], cmax[name] = lo, hi
            except OnnxqError as e:
                raise OnnxqError(f"{label}: {e}") from e
            n += 1
            if progress:
                progress(1)
    if n == 0:
        raise OnnxqError("calibration data is empty: give at least one feed (an .npz keyed by input name)")
    fmt = config.activation_format
    ranges: dict[str, tuple[float, float]] = {}
    warnings: list[str] = []
    for name, h in hists.items():
        if h.nonfinite:
            warnings.append(f"activation '{name}' had {h.nonfinite} NaN/infinite value(s) during calibration; "
                            "its range uses the finite values only")
        lo, hi = select_range(h, config.calibration_method, fmt, percentile=config.percentile)
        if h.n == 0 or max(abs(lo), abs(hi)) <= 1e-8:
            warnings.append(f"activation '{name}' was constant 0 during calibration; it gets a safe scale "
                            "(range +-1) instead of 0")
        ranges[name] = (lo, hi)
    return CalibrationResult(hists, ranges, n, warnings, kept, cmin, cmax)
