"""Running a recipe: each named pass in order, ``model = run(model, ctx)``; with an accuracy target, the search
(``onnxq.pipeline.accuracy``) drives the passes from ``SEARCH_FROM`` on."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace

import onnx

from onnxq.core.errors import OnnxqError
from onnxq.passes.context import PassContext
from onnxq.pipeline.recipes import SEARCH_FROM

Pass = Callable[[onnx.ModelProto, PassContext], onnx.ModelProto]


def load_pass(name: str) -> Pass:
    """``onnxq.passes.<name>.run``."""
    try:
        module = importlib.import_module(f"onnxq.passes.{name}")
    except ModuleNotFoundError as e:
        raise OnnxqError(f"unknown pass '{name}' (no module onnxq.passes.{name})") from e
    run = getattr(module, "run", None)
    if not callable(run):
        raise OnnxqError(f"onnxq.passes.{name} has no run(model, ctx) function")
    return run  # type: ignore[no-any-return]


def run_passes(model: onnx.ModelProto, names: Sequence[str], ctx: PassContext) -> onnx.ModelProto:
    for name in names:
        model = load_pass(name)(model, ctx)
    return model


def run_recipe(model: onnx.ModelProto, recipe: Sequence[str], ctx: PassContext) -> onnx.ModelProto:
    if ctx.quant.accuracy_target is None or SEARCH_FROM not in recipe:
        return run_passes(model, recipe, ctx)
    from onnxq.pipeline.accuracy import accuracy_search

    cut = list(recipe).index(SEARCH_FROM)
    analysed = run_passes(model, recipe[:cut], ctx)
    build = recipe[cut:]
    assert ctx.plan is not None, "the analysis passes of a quantize recipe include select_targets"

    def candidate(plan):  # type: ignore[no-untyped-def]
        # a throwaway context: the candidates share the analysis and the weight cache, not the reports
        return run_passes(analysed, build, replace(ctx, plan=plan, check=False, notes=[], warnings=[], reports={}))

    plan, fallbacks, before, after, runtime = accuracy_search(
        analysed, ctx.plan, candidate, ctx.kept_feeds, ctx.quant, ctx.tick("sensitivity", len(ctx.plan.layers)))
    ctx.notes.append(f"accuracy search measured candidates with {runtime}")
    ctx.reports["accuracy"] = {"before": before, "after": after, "fallbacks": [asdict(f) for f in fallbacks]}
    if after < float(ctx.quant.accuracy_target):
        ctx.warnings.append(f"accuracy target {ctx.quant.accuracy_target:g} not reached even with every quantized "
                            f"layer back in float ({after:.6g}); check the model and data")
    ctx.plan = plan
    return run_passes(analysed, build, ctx)  # the chosen candidate, rebuilt (same bytes), checked and reported
